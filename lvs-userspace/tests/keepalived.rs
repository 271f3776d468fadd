//! `lvs import-keepalived --vrrp-out` on the two-director tutorial's keepalived.conf, with the
//! binaries: the TOML passes `lvs check`, and keepalived itself accepts the VRRP part
//! (`keepalived -t`, which only reads the file and starts nothing).
//!
//! The keepalived test needs root and the Debian package `keepalived` (scripts/bootstrap.sh
//! installs it): `keepalived -t` checks that the interfaces exist, so it runs in a network
//! namespace of its own (`unshare -n`) holding the tutorial's eth0 and eth1, and gone when it
//! exits. Ignored by a plain `cargo test`, run by `cargo xtask test` or
//! `cargo test --test keepalived -- --ignored`.

use std::{
    path::{Path, PathBuf},
    process::{Command, Output},
};

const TUTORIAL: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/src/logic/keepalived/testdata/tutorial.conf"
);

fn lvs(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_lvs"))
        .args(args)
        .output()
        .expect("lvs runs")
}

/// Imports the tutorial into `dir` and returns the TOML's and the VRRP file's paths.
fn import_tutorial(dir: &Path) -> (PathBuf, PathBuf) {
    let vrrp = dir.join("VRRP.conf");
    let output = lvs(&[
        "import-keepalived",
        TUTORIAL,
        "--vrrp-out",
        vrrp.to_str().unwrap(),
    ]);
    assert!(
        output.status.success(),
        "import failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let toml = dir.join("lvs.toml");
    std::fs::write(&toml, &output.stdout).unwrap();
    (toml, vrrp)
}

#[test]
fn the_tutorial_imports_to_a_config_lvs_check_accepts() {
    let dir = tempfile::tempdir().unwrap();
    let (toml, vrrp) = import_tutorial(dir.path());
    let check = lvs(&["check", "--config", toml.to_str().unwrap()]);
    assert!(
        check.status.success(),
        "lvs check rejected the import: {}{}",
        String::from_utf8_lossy(&check.stdout),
        String::from_utf8_lossy(&check.stderr)
    );
    let vrrp = std::fs::read_to_string(vrrp).unwrap();
    assert!(vrrp.contains("vrrp_instance VI_1 {"), "{vrrp}");
    assert!(
        !vrrp
            .lines()
            .any(|line| line.trim_start().starts_with("virtual_server")),
        "{vrrp}"
    );
    // lvs syncs the connections: keepalived must not start the kernel's sync daemon too.
    assert!(
        !vrrp
            .lines()
            .any(|line| line.trim_start().starts_with("lvs_sync_daemon")),
        "{vrrp}"
    );
    let toml = std::fs::read_to_string(toml).unwrap();
    assert!(toml.contains("[sync]\n"), "{toml}");
    assert!(toml.contains("syncid = 51\n"), "{toml}");
}

/// `keepalived -t -f FILE` in a namespace with the tutorial's interfaces.
fn keepalived_test(file: &Path) -> Output {
    Command::new("unshare")
        .args(["-n", "sh", "-c"])
        .arg(r#"ip link add eth0 type veth peer name eth1 && exec keepalived -t -f "$1""#)
        .arg("sh")
        .arg(file)
        .output()
        .expect("unshare runs (util-linux)")
}

#[test]
#[ignore = "needs root (a network namespace) and keepalived"]
fn keepalived_accepts_the_vrrp_part_and_not_the_whole() {
    let dir = tempfile::tempdir().unwrap();
    let (_, vrrp) = import_tutorial(dir.path());
    let output = keepalived_test(&vrrp);
    assert!(
        output.status.success(),
        "keepalived -t rejected the VRRP part ({}): {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    // The tutorial itself is rejected by keepalived 2 (nat_mask is gone, persistence_timeout
    // 0 is out of its range): the split is what makes keepalived's file clean, and this shows
    // that the check above can fail.
    let whole = keepalived_test(Path::new(TUTORIAL));
    assert!(
        !whole.status.success(),
        "keepalived -t took the whole tutorial"
    );
    let stderr = String::from_utf8_lossy(&whole.stderr);
    assert!(stderr.contains("nat_mask"), "{stderr}");
}
