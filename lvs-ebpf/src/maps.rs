//! The maps shared with the controller. The controller owns every entry; the program only
//! reads them, except for the per-CPU counters it adds to.
//!
//! Sizes here are defaults: the controller may resize the maps at load time.

use aya_ebpf::{
    macros::map,
    maps::{Array, HashMap, PerCpuArray},
};
use lvs_common::{
    Counter, DirectorEntry, LOOKUP_TABLE_SIZE, MAX_REAL_SERVERS, MAX_SERVICES, RealServerEntry,
    ServiceEntry, ServiceKey, TrafficStats,
};

/// Virtual services by (VIP, port, protocol).
#[map]
pub static SERVICES: HashMap<ServiceKey, ServiceEntry> = HashMap::with_max_entries(MAX_SERVICES, 0);

/// Every service's lookup table, one after another: slot `index * LOOKUP_TABLE_SIZE + n` holds
/// the real-server id for flows that hash to `n`, or `NO_REAL_SERVER`.
#[map]
pub static LOOKUP: Array<u32> = Array::with_max_entries(MAX_SERVICES * LOOKUP_TABLE_SIZE, 0);

/// Real servers by id.
#[map]
pub static REAL_SERVERS: Array<RealServerEntry> = Array::with_max_entries(MAX_REAL_SERVERS, 0);

/// Slot 0: the director's own interface.
#[map]
pub static DIRECTOR: Array<DirectorEntry> = Array::with_max_entries(1, 0);

/// One counter per verdict and reason (`lvs_common::Counter`).
#[map]
pub static COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(Counter::COUNT, 0);

/// Forwarded traffic per service, by `ServiceEntry::index`.
#[map]
pub static SERVICE_STATS: PerCpuArray<TrafficStats> =
    PerCpuArray::with_max_entries(MAX_SERVICES, 0);

/// Forwarded traffic per real server, by real-server id.
#[map]
pub static REAL_SERVER_STATS: PerCpuArray<TrafficStats> =
    PerCpuArray::with_max_entries(MAX_REAL_SERVERS, 0);

/// Adds one to a verdict counter. Per-CPU slots need no atomics.
#[inline(always)]
pub fn count(counter: Counter) {
    if let Some(slot) = COUNTERS.get_ptr_mut(counter as u32) {
        // SAFETY: the pointer comes from a successful lookup in this CPU's slot of the map.
        unsafe { *slot += 1 };
    }
}

/// Adds one packet of `bytes` to a per-CPU traffic slot.
#[inline(always)]
pub fn add_traffic(map: &PerCpuArray<TrafficStats>, index: u32, bytes: u64) {
    if let Some(stats) = map.get_ptr_mut(index) {
        // SAFETY: as in `count`.
        unsafe {
            (*stats).packets += 1;
            (*stats).bytes += bytes;
        }
    }
}
