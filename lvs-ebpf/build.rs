//! The eBPF crate is linked by `bpf-linker`, a binary cargo knows nothing about. Rebuild when
//! that binary changes (for example after `scripts/bootstrap.sh` rebuilt it for a new
//! toolchain), so a stale object is never embedded in the controller.
use which::which;

fn main() {
    if let Ok(bpf_linker) = which("bpf-linker") {
        println!("cargo:rerun-if-changed={}", bpf_linker.display());
    }
}
