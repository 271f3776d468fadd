//! The flow-table floor the benchmarks measure the director against beside the empty program:
//! a MAC swap and XDP_TX after one lookup of the frame's connection in an LRU hash map keyed as
//! the director's IPv4 flow table, inserting on a miss (`rawbpf::mac_swap_with_flow_lookup`).
//! It is the least a director that keeps its connections in the kernel's LRU map does per
//! frame (lvs kept them there before its flow table became an array of buckets), so the
//! director's rate against it shows what the array gains, on top of all its own work.

use std::os::fd::OwnedFd;

use anyhow::{Context, Result, ensure};

use crate::{empty_program::Run, rawbpf};

/// The program and its flow table; both close when it drops.
pub struct FlowTableFloor {
    table: OwnedFd,
    program: OwnedFd,
}

impl FlowTableFloor {
    /// A floor whose table holds up to `max_entries` connections, empty.
    pub fn load(max_entries: u32) -> Result<Self> {
        let table = rawbpf::flow_table(max_entries)?;
        let program = rawbpf::load_xdp("bench_table", &rawbpf::mac_swap_with_flow_lookup(&table))
            .context("loading the flow-table floor")?;
        Ok(Self { table, program })
    }

    /// Puts connections into the table, each with a zeroed entry. `K` must be the director's
    /// IPv4 flow key (`lvs_common::flow::FlowKey`, 16 bytes of plain data).
    pub fn fill<K: Copy>(&self, keys: &[K]) -> Result<()> {
        ensure!(size_of::<K>() == 16, "a flow key is 16 bytes");
        rawbpf::update_batch(&self.table, keys, &vec![[0u8; 24]; keys.len()])
    }

    /// BPF_PROG_TEST_RUN on `frame`, `repeat` times.
    pub fn run(&self, frame: &[u8], repeat: u32) -> Result<Run> {
        let run = rawbpf::test_run(&self.program, frame, repeat)
            .context("test-running the flow-table floor")?;
        Ok(Run {
            action: run.retval,
            frame: run.frame,
            nanos: u64::from(run.duration_ns),
        })
    }

    /// The program, to attach to an interface.
    pub fn program(&self) -> &OwnedFd {
        &self.program
    }
}
