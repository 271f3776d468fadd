//! Builds the eBPF crate for bpfel-unknown-none and leaves the object in OUT_DIR, where
//! `src/dataplane/object.rs` embeds it.
//!
//! The nested build needs `-Z build-std=core`. aya-build adds it on a nightly toolchain, or on
//! any toolchain when RUSTC_BOOTSTRAP=1 is set; we build with the toolchain that builds us
//! (stable by default) and set RUSTC_BOOTSTRAP for that nested build only, so no nightly is
//! needed. `scripts/bootstrap.sh` installs rust-src and bpf-linker for it.
use anyhow::{Context as _, anyhow};
use aya_build::{Package, Toolchain};

fn main() -> anyhow::Result<()> {
    let toolchain = std::env::var("RUSTUP_TOOLCHAIN").unwrap_or_else(|_| "stable".to_owned());
    // SAFETY: build scripts are single-threaded at this point.
    unsafe { std::env::set_var("RUSTC_BOOTSTRAP", "1") };

    let metadata = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .ok_or_else(|| anyhow!("lvs-userspace has no parent directory"))?
        .join("lvs-ebpf");
    let root_dir = metadata
        .to_str()
        .context("the path of lvs-ebpf is not UTF-8")?;
    aya_build::build_ebpf(
        [Package {
            name: "lvs-ebpf",
            root_dir,
            ..Default::default()
        }],
        Toolchain::Custom(&toolchain),
    )
    .context("building the eBPF object (is bpf-linker installed? run scripts/bootstrap.sh)")
}
