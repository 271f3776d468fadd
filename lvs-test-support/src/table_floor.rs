//! The flow-table floor the benchmarks measure the director against beside the empty program:
//! a MAC swap and XDP_TX after one lookup of the frame's connection in an LRU hash map keyed as
//! the director's flow table of the frame's IP version, inserting on a miss
//! (`rawbpf::mac_swap_with_flow_lookup`). It is the least a director that keeps its
//! connections in the kernel's LRU map does per frame (lvs kept them there before its flow
//! table became an array of buckets), so the director's rate against it shows what the array
//! gains, on top of all its own work.

use std::os::fd::OwnedFd;

use anyhow::{Context, Result, ensure};

pub use crate::rawbpf::IpVersion;
use crate::{empty_program::Run, rawbpf};

/// The program and its flow table; both close when it drops.
pub struct FlowTableFloor {
    version: IpVersion,
    table: OwnedFd,
    program: OwnedFd,
}

impl FlowTableFloor {
    /// A floor for frames of `version`, whose table holds up to `max_entries` connections,
    /// empty.
    pub fn load(version: IpVersion, max_entries: u32) -> Result<Self> {
        let table = rawbpf::flow_table(version, max_entries)?;
        let program = rawbpf::load_xdp(
            "bench_table",
            &rawbpf::mac_swap_with_flow_lookup(&table, version),
        )
        .context("loading the flow-table floor")?;
        Ok(Self {
            version,
            table,
            program,
        })
    }

    /// Puts connections into the table, each with a zeroed entry. `K` must be the director's
    /// flow key of the floor's IP version (`lvs_common::flow::FlowKey` or `FlowKey6`, plain
    /// data).
    pub fn fill<K: Copy>(&self, keys: &[K]) -> Result<()> {
        self.check_key::<K>()?;
        rawbpf::update_batch(
            &self.table,
            keys,
            &vec![[0u8; rawbpf::FLOW_ENTRY_SIZE]; keys.len()],
        )
    }

    /// Whether the table holds `key`: after a frame's run, whether the program keyed the frame
    /// as the director does.
    pub fn contains<K: Copy>(&self, key: &K) -> Result<bool> {
        self.check_key::<K>()?;
        rawbpf::contains(&self.table, key)
    }

    fn check_key<K>(&self) -> Result<()> {
        ensure!(
            size_of::<K>() == self.version.flow_key_size(),
            "an {:?} flow key is {} bytes",
            self.version,
            self.version.flow_key_size()
        );
        Ok(())
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
