//! The maps shared with the controller. The controller owns every entry; the program only
//! reads them, except for the per-CPU counters it adds to.
//!
//! Sizes here are defaults: the controller may resize the maps at load time.

use aya_ebpf::{
    btf_maps::{self, ArrayOfMaps},
    macros::{btf_map, map},
    maps::{Array, HashMap, LpmTrie, LruHashMap, PerCpuArray},
};
use lvs_common::{
    Counter, DEFAULT_FLOW_TABLE_SIZE, DEFAULT_PERSIST_TABLE_SIZE, DenyAddress, DenyAddress6,
    DenyEntry, DirectorEntry, Ipv6Bytes, LOOKUP_TABLE_SIZE, MAX_DENY_PREFIXES, MAX_REAL_SERVERS,
    MAX_SERVICES, RealServerEntry, ServiceEntry, ServiceKey, ServiceKey6, TrafficStats,
    flow::{PersistEntry, PersistKey, PersistKey6, Settings},
    flow_table::{FLOW_TABLE_MAP_FLAGS, FlowBucket, FlowBucket6, bucket_count},
    service_table::{SERVICE_TABLE_SLOTS, ServiceSlot},
};

use crate::packet::Flow;

/// Virtual services by (VIP, port, protocol).
#[map]
pub static SERVICES: HashMap<ServiceKey, ServiceEntry> = HashMap::with_max_entries(MAX_SERVICES, 0);

/// One family's service table (`lvs_common::service_table`): what frames look their service
/// up in, an array the verifier inlines rather than a hash map's helper call.
pub type ServiceTable<A> = btf_maps::Array<ServiceSlot<A>, { SERVICE_TABLE_SLOTS as usize }>;

/// Slot 0: the IPv4 service table. The controller swaps a whole new table in on every change
/// to the services, so a frame never sees one half written; while the slot is empty (a fresh
/// load, or services the table cannot place) frames look up `SERVICES` instead. Not pinned: a
/// restarted controller builds it again from `SERVICES`.
#[btf_map]
pub static SERVICE_TABLE: ArrayOfMaps<ServiceTable<lvs_common::Ipv4Bytes>, 1> = ArrayOfMaps::new();

/// Slot 0: the IPv6 service table, as `SERVICE_TABLE` is the IPv4 one.
#[btf_map]
pub static SERVICE_TABLE6: ArrayOfMaps<ServiceTable<Ipv6Bytes>, 1> = ArrayOfMaps::new();

/// IPv6 virtual services by (VIP, port, protocol). Their indices share one space with the
/// IPv4 services' (lookup tables, cursors, counters).
#[map]
pub static SERVICES6: HashMap<ServiceKey6, ServiceEntry> =
    HashMap::with_max_entries(MAX_SERVICES, 0);

/// Every service's lookup table, one after another: slot `index * LOOKUP_TABLE_SIZE + n` holds
/// a real-server id or `NO_REAL_SERVER`. For hash schedulers slot `n` serves flows that hash to
/// `n`; for ring schedulers the first `ring_len` slots are the schedule new flows walk.
#[map]
pub static LOOKUP: Array<u32> = Array::with_max_entries(MAX_SERVICES * LOOKUP_TABLE_SIZE, 0);

/// Real servers by id.
#[map]
pub static REAL_SERVERS: Array<RealServerEntry> = Array::with_max_entries(MAX_REAL_SERVERS, 0);

/// Connections: the real server each one was scheduled to, its TCP state and when it was last
/// seen, in buckets of four (`lvs_common::flow_table` has the rules). Under a flood of new
/// flows, connections that sent one packet and the stalest go first, and flows that keep
/// sending stay. The controller sets the number of buckets at load, and maps the array into
/// its own memory (`FLOW_TABLE_MAP_FLAGS`).
#[map]
pub static FLOWS: Array<FlowBucket> =
    Array::with_max_entries(bucket_count(DEFAULT_FLOW_TABLE_SIZE), FLOW_TABLE_MAP_FLAGS);

/// IPv6 connections, as `FLOWS` holds IPv4 ones (as many buckets, set by the controller).
#[map]
pub static FLOWS6: Array<FlowBucket6> =
    Array::with_max_entries(bucket_count(DEFAULT_FLOW_TABLE_SIZE), FLOW_TABLE_MAP_FLAGS);

/// IPv6 persistence templates, as `PERSIST` holds IPv4 ones.
#[map]
pub static PERSIST6: LruHashMap<PersistKey6, PersistEntry> =
    LruHashMap::with_max_entries(DEFAULT_PERSIST_TABLE_SIZE, 0);

/// Persistence templates: the real server of a client network for a persistent service.
#[map]
pub static PERSIST: LruHashMap<PersistKey, PersistEntry> =
    LruHashMap::with_max_entries(DEFAULT_PERSIST_TABLE_SIZE, 0);

/// Slot 0: timeouts and policy, written by the controller before attaching.
#[map]
pub static SETTINGS: Array<Settings> = Array::with_max_entries(1, 0);

/// Each CPU's position in each ring-scheduled service's schedule, by service index.
#[map]
pub static CURSORS: PerCpuArray<u32> = PerCpuArray::with_max_entries(MAX_SERVICES, 0);

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

/// The deny list: source prefixes whose frames are dropped before any other work, longest
/// prefix first. Read only while `SETTINGS_DENY_LIST` is set.
#[map]
pub static DENY: LpmTrie<DenyAddress, DenyEntry> = LpmTrie::with_max_entries(MAX_DENY_PREFIXES, 0);

/// The deny list's IPv6 prefixes, as `DENY` holds the IPv4 ones. Read only while
/// `SETTINGS_DENY_LIST` is set.
#[map]
pub static DENY6: LpmTrie<DenyAddress6, DenyEntry> =
    LpmTrie::with_max_entries(MAX_DENY_PREFIXES, 0);

/// Packets and bytes dropped per deny-list prefix of either family, by `DenyEntry::index`.
#[map]
pub static DENY_STATS: PerCpuArray<TrafficStats> =
    PerCpuArray::with_max_entries(MAX_DENY_PREFIXES, 0);

/// Each CPU's scratch space for the IPv6 frame it is forwarding (`packet::parse_flow6` says
/// why it is not on the stack). The controller never reads it, and it is not pinned.
#[map]
pub static FLOW6: PerCpuArray<Flow<Ipv6Bytes>> = PerCpuArray::with_max_entries(1, 0);

/// Slot 0: the layout version of these maps (`lvs_common::MAP_LAYOUT_VERSION`), written by
/// the controller. The program never reads it; it travels with the pinned maps so that a
/// restarted controller can tell whether it understands them.
#[map]
pub static LAYOUT: Array<u32> = Array::with_max_entries(1, 0);

/// Adds one to a verdict counter. Per-CPU slots need no atomics.
#[inline(always)]
pub fn count(counter: Counter) {
    if let Some(slot) = COUNTERS.get_ptr_mut(counter as u32) {
        // SAFETY: the pointer comes from a successful lookup in this CPU's slot of the map.
        unsafe { *slot += 1 };
    }
}

/// Adds one packet of `bytes`, and `connections` new connections, to a per-CPU traffic slot.
#[inline(always)]
pub fn add_traffic(map: &PerCpuArray<TrafficStats>, index: u32, bytes: u64, connections: u64) {
    if let Some(stats) = map.get_ptr_mut(index) {
        // SAFETY: as in `count`.
        unsafe {
            (*stats).connections += connections;
            (*stats).packets += 1;
            (*stats).bytes += bytes;
        }
    }
}
