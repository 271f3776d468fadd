//! Builds the eBPF crate (`lvs-ebpf`) for bpfel-unknown-none and leaves its object in OUT_DIR
//! as `lvs`, where `src/io/bpf.rs` embeds it.
//!
//! This is the nested build aya-build does, done here for two reasons a newcomer notices:
//! - It is quiet. aya-build relays every line of the nested cargo as a `cargo:warning`, some
//!   330 of them on a clean build; here the nested output is shown only when it fails.
//! - It happens once. Cargo runs this script again for every profile and tool (debug,
//!   release, bench, clippy), each time in a new OUT_DIR, and aya-build keeps its nested
//!   target directory inside OUT_DIR, so each of them compiled `core` and the program from
//!   scratch. Here every run shares `target/ebpf`, where cargo finds the object up to date.
//!   The object is always built in release, so every profile embeds the same program.
//!
//! The nested build needs `-Z build-std=core`, which stable cargo accepts with
//! RUSTC_BOOTSTRAP=1. It is set for the nested build only, so no nightly toolchain is needed.
//! `scripts/bootstrap.sh` installs rust-src and bpf-linker for it.
use std::{
    env,
    ffi::OsString,
    fs,
    io::Write as _,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, Result, anyhow, bail};

/// The eBPF package, a sibling of this one in the workspace.
const PACKAGE: &str = "lvs-ebpf";
/// Its binary target, the object `src/io/bpf.rs` embeds.
const PROGRAM: &str = "lvs";

fn main() -> Result<()> {
    let manifest_dir = PathBuf::from(env_var("CARGO_MANIFEST_DIR")?);
    let package_dir = manifest_dir
        .parent()
        .ok_or_else(|| anyhow!("lvs-userspace has no parent directory"))?
        .join(PACKAGE);
    // The build-dependency on lvs-ebpf makes cargo run this script again when its library or
    // lvs-common change; the program is its binary target, which that does not cover.
    println!("cargo:rerun-if-changed={}", package_dir.display());

    let out_dir = PathBuf::from(env_var("OUT_DIR")?);
    let target = bpf_target()?;
    let target_dir = shared_target_dir(&out_dir)
        .unwrap_or_else(|| out_dir.clone())
        .join("ebpf");

    let mut cargo = Command::new(env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    cargo
        .current_dir(&package_dir)
        .args(["build", "--package", PACKAGE, "--bins", "--release"])
        .args(["--target", &target, "-Z", "build-std=core", "--target-dir"])
        .arg(&target_dir)
        .env("RUSTC_BOOTSTRAP", "1")
        .env("CARGO_ENCODED_RUSTFLAGS", rustflags()?)
        // `cargo clippy` wraps our compiler in clippy-driver; the eBPF crate has its own clippy
        // pass (`cargo xtask lint`), and a wrapped nested build would not be the one cached.
        .env_remove("RUSTC_WORKSPACE_WRAPPER");
    let output = cargo
        .output()
        .with_context(|| format!("running {cargo:?}"))?;
    if !output.status.success() {
        // Cargo shows a failed build script's output, so this is where the nested build's
        // own error messages reach the reader.
        std::io::stderr().write_all(&output.stderr)?;
        std::io::stderr().write_all(&output.stdout)?;
        bail!(
            "building the eBPF object failed ({}), its messages are above (when they name \
             bpf-linker or rust-src, run scripts/bootstrap.sh):\n{cargo:?}",
            output.status
        );
    }

    let object = target_dir.join(&target).join("release").join(PROGRAM);
    let embedded = out_dir.join(PROGRAM);
    fs::copy(&object, &embedded).with_context(|| {
        format!(
            "copying the eBPF object {} to {}",
            object.display(),
            embedded.display()
        )
    })?;
    Ok(())
}

fn env_var(name: &str) -> Result<OsString> {
    env::var_os(name).ok_or_else(|| anyhow!("cargo did not set {name}"))
}

/// The BPF target of the host's byte order, which is the machine the program runs on.
fn bpf_target() -> Result<String> {
    let endian = env_var("CARGO_CFG_TARGET_ENDIAN")?;
    let target = match endian.to_str() {
        Some("little") => "bpfel-unknown-none",
        Some("big") => "bpfeb-unknown-none",
        _ => bail!("unsupported byte order {}", endian.display()),
    };
    Ok(target.to_owned())
}

/// The flags aya-build passes: the host architecture as `bpf_target_arch` (aya-ebpf chooses
/// its register layouts by it), debug information and BTF for the loader.
fn rustflags() -> Result<String> {
    let arch = env_var("CARGO_CFG_TARGET_ARCH")?;
    let arch = arch
        .to_str()
        .ok_or_else(|| anyhow!("the target architecture {} is not UTF-8", arch.display()))?;
    // aya-ebpf knows one riscv64, whatever the extensions in the target's name.
    let arch = if arch.starts_with("riscv64") {
        "riscv64"
    } else {
        arch
    };
    Ok([
        format!("--cfg=bpf_target_arch=\"{arch}\""),
        "-Cdebuginfo=2".to_owned(),
        "-Clink-arg=--btf".to_owned(),
    ]
    .join("\x1f"))
}

/// The workspace's target directory, found as the nearest ancestor of OUT_DIR that cargo
/// marked with CACHEDIR.TAG; that holds whatever the profile, the target triple or a
/// `--target-dir`. None when there is no such mark, and the caller builds in OUT_DIR instead.
fn shared_target_dir(out_dir: &Path) -> Option<PathBuf> {
    out_dir
        .ancestors()
        .skip(1)
        .find(|dir| dir.join("CACHEDIR.TAG").is_file())
        .map(Path::to_owned)
}
