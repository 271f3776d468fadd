//! Types shared by the lvs XDP data plane (`lvs-ebpf`) and its controller (`lvs-userspace`).
//!
//! Everything here is `#[repr(C)]`, has explicit padding, holds no `bool`, and says the byte
//! order of every multi-byte field. The userspace side gets `aya::Pod` impls behind the `user`
//! feature. Addresses and ports are kept as raw wire bytes (`[u8; N]`), so a key built from a
//! packet header and a key built from a config line are byte-for-byte the same without any
//! byte swapping on either side.
#![no_std]

#[cfg(feature = "mapped")]
extern crate std;

pub mod address;
pub mod flow;
pub mod flow_table;
pub mod hash;
pub mod keys;
#[cfg(feature = "mapped")]
pub mod mapped;
pub mod service_table;

pub use address::{Address, Ipv4Bytes, Ipv6Bytes};

/// Name of the XDP program inside the object file.
pub const PROGRAM_NAME: &str = "lvs";

/// Map names, as the eBPF crate declares them and the controller looks them up.
pub mod map_names {
    pub const SERVICES: &str = "SERVICES";
    pub const REAL_SERVERS: &str = "REAL_SERVERS";
    pub const LOOKUP: &str = "LOOKUP";
    pub const DIRECTOR: &str = "DIRECTOR";
    pub const COUNTERS: &str = "COUNTERS";
    pub const SERVICE_STATS: &str = "SERVICE_STATS";
    pub const REAL_SERVER_STATS: &str = "REAL_SERVER_STATS";
    pub const FLOWS: &str = "FLOWS";
    pub const PERSIST: &str = "PERSIST";
    pub const SETTINGS: &str = "SETTINGS";
    pub const CURSORS: &str = "CURSORS";
    pub const LAYOUT: &str = "LAYOUT";
    pub const DENY: &str = "DENY";
    pub const DENY6: &str = "DENY6";
    pub const DENY_STATS: &str = "DENY_STATS";
    pub const SERVICES6: &str = "SERVICES6";
    pub const FLOWS6: &str = "FLOWS6";
    pub const PERSIST6: &str = "PERSIST6";
    pub const SERVICE_TABLE: &str = "SERVICE_TABLE";
    pub const SERVICE_TABLE6: &str = "SERVICE_TABLE6";
}

/// The version of the maps' layout (names, key and value types, sizes), kept in slot 0 of the
/// `LAYOUT` map. A restarted or upgraded controller adopts the maps a running program uses
/// only when this matches its own, so a change to any shared type or map definition must
/// raise it: the controller then starts with fresh maps instead of misreading old ones.
pub const MAP_LAYOUT_VERSION: u32 = 6;

/// Default capacity of the service map; the controller may size the maps differently at load.
pub const MAX_SERVICES: u32 = 64;
/// Default capacity of the real-server map (real servers of all services together).
pub const MAX_REAL_SERVERS: u32 = 4096;
/// Slots in each service's lookup table. A prime, so Maglev's permutations cover every slot.
pub const LOOKUP_TABLE_SIZE: u32 = 65537;
/// Default capacity of the flow table (connections tracked at once); `flow_table_size` in the
/// config changes it at load.
pub const DEFAULT_FLOW_TABLE_SIZE: u32 = 262_144;
/// Default capacity of the persistence-template table.
pub const DEFAULT_PERSIST_TABLE_SIZE: u32 = 65_536;
/// Capacity of the deny list: source prefixes of both families together (each trie can hold
/// them all, and they share `DENY_STATS`), dropped before any other work.
pub const MAX_DENY_PREFIXES: u32 = 16_384;
/// A lookup-table slot that names no real server (the service has none usable).
pub const NO_REAL_SERVER: u32 = u32::MAX;

/// IP protocol numbers as they appear in the IPv4 header and IPv6's next-header fields.
pub const IPPROTO_TCP: u8 = 6;
pub const IPPROTO_UDP: u8 = 17;
pub const IPPROTO_ICMP: u8 = 1;
pub const IPPROTO_ICMPV6: u8 = 58;

/// Key of the `SERVICES` hash map (IPv4, the default `A`) and of `SERVICES6` (IPv6): a
/// virtual service as ipvsadm names it (`-t VIP:port`, `-t [VIP6]:port`). Each family has its
/// own maps, so that an IPv4 packet hashes and compares keys no longer than its addresses.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ServiceKey<A = Ipv4Bytes> {
    /// The virtual address, network byte order (as on the wire).
    pub addr: A,
    /// The virtual port, network byte order (as on the wire).
    pub port: [u8; 2],
    /// `IPPROTO_TCP` or `IPPROTO_UDP`.
    pub protocol: u8,
    pub _pad: u8,
}

/// Value of the `SERVICES` map.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ServiceEntry {
    /// Index of this service's lookup table in `LOOKUP` (slot `index * LOOKUP_TABLE_SIZE + n`),
    /// of its cursor in `CURSORS` and of its counters in `SERVICE_STATS`. Host byte order.
    pub index: u32,
    /// `SERVICE_*` flags: how a new connection picks its slot. Host byte order.
    pub flags: u32,
    /// With `SERVICE_RING`: how many slots of the table hold the schedule.
    pub ring_len: u32,
    /// Persistence timeout in seconds (`ipvsadm -p`); 0 when the service is not persistent.
    pub persist_timeout_s: u32,
    /// Persistence netmask, network byte order: for IPv4 `ipvsadm -M` in the first four
    /// bytes (the rest zero), for IPv6 the mask of `-M`'s prefix length over all sixteen.
    pub persist_mask: Ipv6Bytes,
}

/// The key of the `SERVICES6` map.
pub type ServiceKey6 = ServiceKey<Ipv6Bytes>;

/// New connections take the next slot of the service's schedule (a ring walked by per-CPU
/// cursors): `rr`, `wrr`, `lc`, `wlc`, `sed`, `nq`. Without it, the slot is chosen by hash:
/// `sh`, `dh`, `mh`.
pub const SERVICE_RING: u32 = 1;
/// The hash includes the client's port (`sh-port`, `mh-port`).
pub const SERVICE_HASH_SOURCE_PORT: u32 = 2;
/// The hash is of the destination address (`dh`).
pub const SERVICE_HASH_DESTINATION: u32 = 4;

/// Value of the `REAL_SERVERS` array, indexed by real-server id (host byte order).
///
/// A real server of one service is one entry; the same address in two services is two entries,
/// so that counters are per service and per real server, as `ipvsadm -L --stats` shows them.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RealServerEntry {
    /// The real server's address, network byte order: an IPv6 address, or an IPv4 one in its
    /// IPv4-mapped form (`::ffff:a.b.c.d`). The program never reads it; a restarted
    /// controller recognises its real servers by it.
    pub addr: Ipv6Bytes,
    /// The real server's MAC address, the new Ethernet destination of forwarded frames.
    pub mac: [u8; 6],
    /// `REAL_SERVER_USABLE` when the entry may be forwarded to. Host byte order.
    pub flags: u16,
    /// Changes whenever the id is given to another real server, so flows and persistence
    /// templates made for the old one are recognised as having lost their destination.
    pub generation: u32,
}

/// The entry holds a resolved MAC and may be forwarded to.
pub const REAL_SERVER_USABLE: u16 = 1;

/// Value of the one-slot `DIRECTOR` array: facts about the interface the program runs on.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DirectorEntry {
    /// MAC address of the director's interface, the new Ethernet source of forwarded frames.
    pub mac: [u8; 6],
    pub _pad: [u8; 2],
}

/// Key of the `DENY` longest-prefix-match trie: an IPv4 source address, network byte order,
/// as the trie's key data (its prefix length travels beside it in the trie's key).
pub type DenyAddress = [u8; 4];

/// Key of the `DENY6` longest-prefix-match trie: an IPv6 source address, network byte order.
pub type DenyAddress6 = [u8; 16];

/// Value of the `DENY` and `DENY6` tries: one denied source prefix. Both tries share
/// `DENY_STATS`'s slots, so a slot belongs to one prefix of either family.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DenyEntry {
    /// Slot of this prefix's counters in `DENY_STATS` (packets and bytes dropped; its
    /// `connections` stays 0). Host byte order.
    pub index: u32,
    /// `DENY_FROM_CONFIG` or `DENY_FROM_RUNTIME`: where the prefix came from, kept in the map
    /// so that a restarted controller knows which prefixes the file owns. The program never
    /// reads it. Host byte order.
    pub origin: u32,
}

/// The prefix is in the config file's `[deny]` section.
pub const DENY_FROM_CONFIG: u32 = 0;
/// The prefix was added at runtime (`lvs deny add`).
pub const DENY_FROM_RUNTIME: u32 = 1;

/// Packets and bytes, one slot per CPU in the per-CPU stats arrays (host byte order).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TrafficStats {
    /// Connections scheduled (new flows), as `ipvsadm --stats` counts them.
    pub connections: u64,
    pub packets: u64,
    /// Bytes of the IP packets (their IPv4 total length), as IPVS counts them.
    pub bytes: u64,
}

/// Why the program returned what it did. Each is a slot of the per-CPU `COUNTERS` array.
///
/// The rule for packets the program cannot fully parse is: never forward them. They are passed
/// to the kernel, whose own stack validates them (and drops what is broken), and counted here.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Counter {
    /// XDP_TX: forwarded to a real server.
    TxForwarded = 0,
    /// XDP_DROP: the packet was for a service that has no usable real server.
    DropNoRealServer,
    /// XDP_DROP: the packet belongs to a connection whose real server was removed, and the
    /// director is set to drop such packets until the connection expires.
    DropRealServerGone,
    /// XDP_PASS: neither IPv4 nor IPv6 (ARP, LLDP, ...).
    PassNotIp,
    /// XDP_PASS: IPv4 or IPv6 but neither TCP nor UDP (ICMP to the VIP, for example).
    PassNotTcpUdp,
    /// XDP_PASS: TCP or UDP whose (address, port, protocol) is not a virtual service.
    PassNotService,
    /// XDP_PASS: an IPv4 fragment or an IPv6 packet with a fragment header, whose ports are
    /// not all in this packet.
    PassFragment,
    /// XDP_PASS: the frame ended inside a header the program needed.
    PassTruncated,
    /// XDP_PASS: a header with impossible values (IPv4 version or IHL, too many VLAN tags).
    PassMalformed,
    /// XDP_ABORTED: an internal error, such as the director entry missing.
    Aborted,
    /// XDP_PASS: for a service, but sent to another host's MAC address (a bridge flooding an
    /// unknown destination, a port in promiscuous mode, the other director's frames during a
    /// failover): the kernel drops it as PACKET_OTHERHOST, and no director must forward it.
    PassOtherHost,
    /// XDP_TX: an ICMP error (destination unreachable, "fragmentation needed" among them, or
    /// time exceeded) about a connection the director forwards, sent on to that connection's
    /// real server, whose stack acts on it (path MTU discovery needs it under DR).
    TxIcmpError,
    /// XDP_PASS: an ICMP error quoting a service's connection that the flow table does not
    /// hold (or whose real server is gone): the director's kernel has it.
    PassIcmpUnknownFlow,
    /// XDP_DROP: a frame (IPv4 or IPv6) from a source in the deny list, dropped before any
    /// other work.
    DropDenied,
    /// XDP_PASS: an IPv6 packet whose chain of extension headers is longer than the program
    /// walks (`packet::MAX_EXTENSION_HEADERS`): the kernel finds its transport header.
    PassExtensionHeaders,
}

impl Counter {
    /// Every counter, in slot order.
    pub const ALL: [Counter; 15] = [
        Counter::TxForwarded,
        Counter::DropNoRealServer,
        Counter::DropRealServerGone,
        Counter::PassNotIp,
        Counter::PassNotTcpUdp,
        Counter::PassNotService,
        Counter::PassFragment,
        Counter::PassTruncated,
        Counter::PassMalformed,
        Counter::Aborted,
        Counter::PassOtherHost,
        Counter::TxIcmpError,
        Counter::PassIcmpUnknownFlow,
        Counter::DropDenied,
        Counter::PassExtensionHeaders,
    ];

    /// Number of slots in the `COUNTERS` array.
    pub const COUNT: u32 = Self::ALL.len() as u32;

    /// A stable, operator-facing name (used in status output and JSON).
    pub const fn name(self) -> &'static str {
        match self {
            Counter::TxForwarded => "tx_forwarded",
            Counter::DropNoRealServer => "drop_no_real_server",
            Counter::DropRealServerGone => "drop_real_server_gone",
            Counter::PassNotIp => "pass_not_ip",
            Counter::PassNotTcpUdp => "pass_not_tcp_udp",
            Counter::PassNotService => "pass_not_service",
            Counter::PassFragment => "pass_fragment",
            Counter::PassTruncated => "pass_truncated",
            Counter::PassMalformed => "pass_malformed",
            Counter::Aborted => "aborted",
            Counter::PassOtherHost => "pass_other_host",
            Counter::TxIcmpError => "tx_icmp_error",
            Counter::PassIcmpUnknownFlow => "pass_icmp_unknown_flow",
            Counter::DropDenied => "drop_denied",
            Counter::PassExtensionHeaders => "pass_extension_headers",
        }
    }
}

const _: () = {
    assert!(size_of::<ServiceKey>() == 8);
    assert!(size_of::<ServiceKey6>() == 20);
    assert!(size_of::<ServiceEntry>() == 32);
    assert!(size_of::<RealServerEntry>() == 28);
    assert!(size_of::<DirectorEntry>() == 8);
    assert!(size_of::<TrafficStats>() == 24);
    assert!(size_of::<DenyEntry>() == 8);
    assert!(size_of::<flow::FlowKey>() == 16);
    assert!(size_of::<flow::FlowEntry>() == 24);
    assert!(size_of::<flow::PersistKey>() == 12);
    assert!(size_of::<flow::FlowKey6>() == 40);
    assert!(size_of::<flow::PersistKey6>() == 36);
    assert!(size_of::<flow::PersistEntry>() == 16);
    assert!(size_of::<flow::Settings>() == 48);
};

#[cfg(feature = "user")]
mod pod {
    // SAFETY: every type here is `repr(C)`, `Copy`, made only of integers and byte arrays, and
    // has its padding spelled out as fields, so any bit pattern is a valid value.
    unsafe impl aya::Pod for super::ServiceKey {}
    unsafe impl aya::Pod for super::ServiceKey6 {}
    unsafe impl aya::Pod for super::flow::FlowKey6 {}
    unsafe impl aya::Pod for super::flow::PersistKey6 {}
    unsafe impl aya::Pod for super::ServiceEntry {}
    unsafe impl aya::Pod for super::service_table::ServiceSlot {}
    unsafe impl aya::Pod for super::service_table::ServiceSlot6 {}
    unsafe impl aya::Pod for super::RealServerEntry {}
    unsafe impl aya::Pod for super::DirectorEntry {}
    unsafe impl aya::Pod for super::TrafficStats {}
    unsafe impl aya::Pod for super::DenyEntry {}
    unsafe impl aya::Pod for super::flow::FlowKey {}
    unsafe impl aya::Pod for super::flow::FlowEntry {}
    unsafe impl aya::Pod for super::flow::PersistKey {}
    unsafe impl aya::Pod for super::flow::PersistEntry {}
    unsafe impl aya::Pod for super::flow::Settings {}
}
