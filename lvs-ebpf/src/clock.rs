//! The time flows are stamped with, read cheaply.
//!
//! `bpf_ktime_get_coarse_ns` is a helper call, and a call costs about 15 ns per packet on this
//! machine kind (measured: a fifth of the established path). The coarse clock only moves on a
//! timer tick, when `jiffies` moves too, and the verifier inlines `bpf_jiffies64` into a single
//! load. So each CPU keeps the last coarse reading with the jiffies it was taken at, and calls
//! the helper only when jiffies moved: at most once per tick per CPU instead of per packet.
//! The value is the coarse clock as of the first packet of the tick on this CPU, which is
//! what the helper would have returned then (the coarse clock moves only on ticks; a reading
//! that races the tick's update may lag by one tick, a few milliseconds).

use aya_ebpf::{
    helpers::{bpf_jiffies64, bpf_ktime_get_coarse_ns},
    macros::map,
    maps::PerCpuArray,
};

/// One CPU's cached coarse clock.
#[repr(C)]
pub struct CpuClock {
    /// `jiffies` when `ns` was read.
    jiffies: u64,
    /// `CLOCK_MONOTONIC_COARSE` in ns, read at `jiffies`.
    ns: u64,
}

/// Slot 0: this CPU's cached clock. Private to the program; the controller never reads it.
#[map]
static CLOCK: PerCpuArray<CpuClock> = PerCpuArray::with_max_entries(1, 0);

/// `CLOCK_MONOTONIC_COARSE` in nanoseconds, the clock `FlowEntry::last_seen_ns` is in.
#[inline(always)]
pub fn coarse_now_ns() -> u64 {
    // SAFETY: helpers without arguments.
    let jiffies = unsafe { bpf_jiffies64() };
    match CLOCK.get_ptr_mut(0) {
        // SAFETY: this CPU's own slot; nothing else runs this program on this CPU meanwhile.
        Some(clock) => unsafe {
            if (*clock).jiffies != jiffies {
                (*clock).jiffies = jiffies;
                (*clock).ns = bpf_ktime_get_coarse_ns();
            }
            (*clock).ns
        },
        // SAFETY: as above.
        None => unsafe { bpf_ktime_get_coarse_ns() },
    }
}
