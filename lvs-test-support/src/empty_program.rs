//! An empty XDP program (it only returns a verdict) that the benchmarks measure the director
//! against. Test programs do not belong in the production object, so it is two raw
//! instructions, loaded and run through `rawbpf`.

use std::os::fd::OwnedFd;

use anyhow::{Context, Result};

use crate::rawbpf;

/// What one BPF_PROG_TEST_RUN call gave back.
pub struct Run {
    pub action: u32,
    pub frame: Vec<u8>,
    /// The kernel's average per repetition, in whole nanoseconds.
    pub nanos: u64,
}

/// An XDP program of two instructions, `r0 = verdict; exit`: the floor any XDP program
/// pays under BPF_PROG_TEST_RUN. The file descriptor closes when it drops.
pub struct EmptyProgram {
    fd: OwnedFd,
}

impl EmptyProgram {
    pub fn load(verdict: u32) -> Result<Self> {
        let insns = rawbpf::verdict_only(i32::try_from(verdict)?);
        let fd = rawbpf::load_xdp("bench_empty", &insns)
            .with_context(|| format!("loading an empty XDP program returning {verdict}"))?;
        Ok(Self { fd })
    }

    pub fn run(&self, frame: &[u8], repeat: u32) -> Result<Run> {
        let run =
            rawbpf::test_run(&self.fd, frame, repeat).context("test-running the empty program")?;
        Ok(Run {
            action: run.retval,
            frame: run.frame,
            nanos: u64::from(run.duration_ns),
        })
    }
}
