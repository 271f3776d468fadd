//! A flow table mapped into a process's memory (its array is `BPF_F_MMAPABLE`): the
//! controller's sweep reads it, and connection sync writes it, in place and under each slot's
//! sequence word (`SharedTable`); the live bench fills the daemon's through it. No syscall
//! copies a bucket, and no write of the controller's can undo one of the data plane's. Behind
//! the `mapped` feature: it needs the standard library, which the data plane has not.

use core::ptr::NonNull;
use std::os::fd::{AsFd, AsRawFd as _};

use crate::flow_table::{FlowBucket, SharedTable};

/// One family's flow table, mapped.
pub struct MappedFlowTable<A> {
    base: NonNull<FlowBucket<A>>,
    len: usize,
    table: SharedTable<A>,
}

// SAFETY: the mapping is shared memory that every access reaches through the sequence-word
// protocol, from any thread; the handle only owns the mapping.
unsafe impl<A> Send for MappedFlowTable<A> {}
// SAFETY: as above; no method hands out a reference into the mapping.
unsafe impl<A> Sync for MappedFlowTable<A> {}

impl<A: Copy + PartialEq + Default> MappedFlowTable<A> {
    /// Maps the array of `buckets` buckets behind `map` (a `FLOWS` or `FLOWS6` map), whose
    /// connections hash with `seed`.
    pub fn map(map: &impl AsFd, buckets: u32, seed: u64) -> std::io::Result<Self> {
        let len = buckets as usize * size_of::<FlowBucket<A>>();
        // SAFETY: a shared mapping of the map's file descriptor, of at most its array's size
        // (the kernel checks), which nothing else in this process maps.
        let base = unsafe {
            libc::mmap(
                core::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                map.as_fd().as_raw_fd(),
                0,
            )
        };
        if base == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error());
        }
        let base: NonNull<FlowBucket<A>> =
            NonNull::new(base.cast()).ok_or_else(|| std::io::Error::other("null mapping"))?;
        // SAFETY: the mapping holds the whole array and lives as long as this handle.
        let table = unsafe { SharedTable::new(base.as_ptr(), buckets, seed) };
        Ok(Self { base, len, table })
    }

    /// The table, to read and write by the flow table's rules.
    pub fn table(&self) -> &SharedTable<A> {
        &self.table
    }
}

impl<A> Drop for MappedFlowTable<A> {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `map`, unmapped once.
        unsafe { libc::munmap(self.base.as_ptr().cast(), self.len) };
    }
}
