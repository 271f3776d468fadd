//! The flow table: its key and value, the TCP state machine IPVS follows in direct routing, and
//! the timeouts of each state.
//!
//! The state machine is shared so that the data plane, the controller's connection counts and
//! the tests agree on every transition. It is IPVS's "input only" table (`ip_vs_proto_tcp.c`),
//! the one IPVS uses when it sees only the client-to-server half of a connection, as a DR
//! director does.

use crate::{Ipv4Bytes, Ipv6Bytes};

/// Key of the `FLOWS` map (IPv4, the default `A`) and of `FLOWS6` (IPv6): one connection as
/// the director sees it (client to VIP).
///
/// Aligned to 8 so that the data plane copies it onto its stack as words rather than single
/// bytes (its fields are byte arrays, which alone would give it alignment 1).
#[repr(C, align(8))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FlowKey<A = Ipv4Bytes> {
    /// Client address, network byte order.
    pub src_addr: A,
    /// Virtual address, network byte order.
    pub dst_addr: A,
    pub src_port: [u8; 2],
    pub dst_port: [u8; 2],
    pub protocol: u8,
    pub _pad: [u8; 3],
}

/// The key of the `FLOWS6` map.
pub type FlowKey6 = FlowKey<Ipv6Bytes>;

/// A connection's entry, in its slot of `FLOWS` or `FLOWS6` (`flow_table::FlowSlot`). Written
/// whole by the data plane when a connection is scheduled; `last_seen_ns`, `state` and the
/// packets seen in `flags` are then updated in place by its packets.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FlowEntry {
    /// `CLOCK_MONOTONIC` time of the last packet, in nanoseconds (`bpf_ktime_get_coarse_ns`).
    pub last_seen_ns: u64,
    /// The real server the connection was scheduled to.
    pub real_server_id: u32,
    /// That real server's generation at scheduling time; a mismatch means the id was reused
    /// for another server, so the flow no longer has its destination.
    pub generation: u32,
    /// A `FlowState` value.
    pub state: u8,
    /// `FLOW_PERSISTENT` when the connection belongs to a persistent service.
    pub flags: u8,
    pub _pad: [u8; 6],
}

/// The flow's service is persistent: its packets keep the client's template alive.
pub const FLOW_PERSISTENT: u8 = 1;
/// Bits 1 and 2 of `flags`: the packets the connection has sent since it was scheduled, less
/// one, up to `FLOW_SEEN_MAX` (four packets or more). When both of a new connection's buckets
/// are full, the connection that sent fewest packets gives way first (`flow_table::occupant`):
/// a flood's SYNs and lone datagrams before a flood of two-packet connections, and those
/// before real connections, which have sent more (a handshake's ACK, then data). The data
/// plane writes them on a connection's second to fourth packets only, and a TCP SYN does not
/// count (`counts_as_seen`).
pub const FLOW_SEEN_SHIFT: u8 = 1;
/// The most `FLOW_SEEN_SHIFT`'s count holds.
pub const FLOW_SEEN_MAX: u8 = 3;

/// The packets a connection with `flags` has sent since it was scheduled, less one, up to
/// `FLOW_SEEN_MAX`.
#[inline(always)]
pub const fn packets_seen(flags: u8) -> u8 {
    (flags >> FLOW_SEEN_SHIFT) & FLOW_SEEN_MAX
}

/// Whether a packet of a known connection counts among its packets seen. A TCP SYN does not:
/// a connection that has sent only SYNs (a retransmission, or a flood's connections that each
/// send two) is still a connection in its handshake, and must not outrank a real client's
/// that is waiting for its first answer. Measured before this rule: under a flood of
/// two-SYN connections that turned the table over, 2 of 1,236 new connections through the
/// director failed, their entries given up between their SYN and their ACK.
#[inline(always)]
pub const fn counts_as_seen(protocol: u8, tcp_flags: u8) -> bool {
    protocol != crate::IPPROTO_TCP || tcp_flags & TCP_SYN == 0
}

/// The `FLOW_SEEN_SHIFT` bits of a connection that another director tells this one about
/// (connection sync), which says its state but not its packets: a TCP connection that has
/// moved past SYN_RECV (ESTABLISHED, FIN_WAIT, TIME_WAIT) sent at least what opened it and
/// what moved it on, two packets. Without them a backup that takes over under a flood would
/// give up the connections it was told about, idle since, before the flood's fresher SYNs.
#[inline(always)]
pub const fn seen_bits_of_state(state: u8) -> u8 {
    match FlowState::from_u8(state) {
        Some(FlowState::Established | FlowState::FinWait | FlowState::TimeWait) => {
            1 << FLOW_SEEN_SHIFT
        }
        _ => 0,
    }
}

/// Key of the `PERSIST` map (IPv4) and of `PERSIST6` (IPv6): a persistence template as IPVS
/// keeps it (client network, service).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PersistKey<A = Ipv4Bytes> {
    /// The client address masked with the service's persistence netmask (`-M`).
    pub client: A,
    pub vip: A,
    pub vport: [u8; 2],
    pub protocol: u8,
    pub _pad: u8,
}

/// The key of the `PERSIST6` map.
pub type PersistKey6 = PersistKey<Ipv6Bytes>;

/// Value of the `PERSIST` and `PERSIST6` maps.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PersistEntry {
    /// `CLOCK_MONOTONIC` ns of the last time a connection of this client used the template.
    pub last_seen_ns: u64,
    pub real_server_id: u32,
    pub generation: u32,
}

/// Connection states. TCP follows IPVS's names; UDP has a single state, as in IPVS.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FlowState {
    None = 0,
    Established = 1,
    SynRecv = 2,
    FinWait = 3,
    TimeWait = 4,
    Close = 5,
    Udp = 6,
}

/// Number of slots in `Settings::timeouts_s`, one per `FlowState`.
pub const FLOW_STATES: usize = 8;

impl FlowState {
    pub const fn from_u8(value: u8) -> Option<Self> {
        Some(match value {
            0 => Self::None,
            1 => Self::Established,
            2 => Self::SynRecv,
            3 => Self::FinWait,
            4 => Self::TimeWait,
            5 => Self::Close,
            6 => Self::Udp,
            _ => return None,
        })
    }

    /// The name `ipvsadm -Lc` prints for the state.
    pub const fn name(self) -> &'static str {
        match self {
            Self::None => "NONE",
            Self::Established => "ESTABLISHED",
            Self::SynRecv => "SYN_RECV",
            Self::FinWait => "FIN_WAIT",
            Self::TimeWait => "TIME_WAIT",
            Self::Close => "CLOSE",
            Self::Udp => "UDP",
        }
    }

    /// IPVS counts a connection as active only while it is established; every other state
    /// (including every UDP "connection") is inactive.
    pub const fn is_active(self) -> bool {
        matches!(self, Self::Established)
    }
}

/// TCP flag bits as they sit in byte 13 of the TCP header.
pub const TCP_FIN: u8 = 0x01;
pub const TCP_SYN: u8 = 0x02;
pub const TCP_RST: u8 = 0x04;
pub const TCP_ACK: u8 = 0x10;

/// The state a new connection starts in.
///
/// IPVS creates TCP connections only on a SYN. lvs also schedules a connection it first sees
/// mid-stream (after a director restart, or a flow-table eviction), and counts it established
/// when its packet is a plain ACK: that is what it almost certainly is, and a 10 s CLOSE
/// timeout would make a healthy long-lived connection expire whenever it idles.
#[inline(always)]
pub const fn initial_state(protocol: u8, tcp_flags: u8) -> FlowState {
    if protocol != crate::IPPROTO_TCP {
        return FlowState::Udp;
    }
    if tcp_flags & TCP_RST != 0 {
        FlowState::Close
    } else if tcp_flags & TCP_SYN != 0 {
        FlowState::SynRecv
    } else if tcp_flags & TCP_FIN != 0 {
        FlowState::Close
    } else if tcp_flags & TCP_ACK != 0 {
        FlowState::Established
    } else {
        FlowState::Close
    }
}

/// The next TCP state after a client-to-server segment with `tcp_flags`, from IPVS's
/// input-only table. RST wins over SYN, SYN over FIN, FIN over ACK, as in IPVS; a segment with
/// none of them moves the connection to CLOSE.
#[inline(always)]
pub const fn next_tcp_state(state: FlowState, tcp_flags: u8) -> FlowState {
    use FlowState::*;
    if tcp_flags & TCP_RST != 0 {
        match state {
            SynRecv => SynRecv,
            _ => Close,
        }
    } else if tcp_flags & TCP_SYN != 0 {
        match state {
            Established => Established,
            _ => SynRecv,
        }
    } else if tcp_flags & TCP_FIN != 0 {
        match state {
            Established | FinWait => FinWait,
            SynRecv | TimeWait => TimeWait,
            _ => Close,
        }
    } else if tcp_flags & TCP_ACK != 0 {
        match state {
            Established | SynRecv => Established,
            FinWait => FinWait,
            TimeWait => TimeWait,
            _ => Close,
        }
    } else {
        Close
    }
}

/// Value of the one-slot `SETTINGS` array: what the controller tells the data plane about
/// time and policy, and the flow table's shape.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Settings {
    /// Idle timeout of each `FlowState`, in seconds, indexed by the state's value.
    pub timeouts_s: [u32; FLOW_STATES],
    /// `SETTINGS_DROP_NODEST` and `SETTINGS_DENY_LIST`, or 0.
    pub flags: u32,
    /// The flow tables' buckets less one (`flow_table::bucket_count`, a power of two), which
    /// masks a connection's hash into a bucket. Filled in by the loader of the data plane
    /// that owns the tables, whatever the caller wrote.
    pub flow_table_mask: u32,
    /// The flow tables' hash seed (`flow_table::flow_hash`), random for each new table and
    /// kept by a director that adopts the tables. Filled in by the loader, as the mask.
    pub flow_hash_seed: u64,
}

/// When a flow's real server is gone, drop its packets until the flow expires (IPVS's
/// `expire_nodest_conn = 0`) instead of scheduling it anew at once.
pub const SETTINGS_DROP_NODEST: u32 = 1;
/// The deny list holds at least one IPv4 prefix. Without it the program skips the `DENY`
/// trie's lookup, a helper call the verifier does not inline, so an empty list costs IPv4
/// frames nothing.
pub const SETTINGS_DENY_LIST: u32 = 2;
/// The deny list holds at least one IPv6 prefix: IPv6 frames look `DENY6` up only then, so
/// a list of IPv4 prefixes alone costs IPv6 traffic nothing (the lookup of a 128-bit key
/// costs about 20 ns even in an empty trie).
pub const SETTINGS_DENY_LIST6: u32 = 4;

/// IPVS's default timeouts: `ipvsadm --set` changes the first three.
pub const DEFAULT_TCP_TIMEOUT_S: u32 = 900;
pub const DEFAULT_TCPFIN_TIMEOUT_S: u32 = 120;
pub const DEFAULT_UDP_TIMEOUT_S: u32 = 300;

impl Settings {
    /// Timeouts as IPVS has them: `tcp` for ESTABLISHED, `tcpfin` for FIN_WAIT, `udp` for UDP,
    /// and IPVS's fixed values for the other states.
    pub const fn with_timeouts(tcp: u32, tcpfin: u32, udp: u32, flags: u32) -> Self {
        let mut timeouts_s = [0u32; FLOW_STATES];
        timeouts_s[FlowState::None as usize] = 2;
        timeouts_s[FlowState::Established as usize] = tcp;
        timeouts_s[FlowState::SynRecv as usize] = 60;
        timeouts_s[FlowState::FinWait as usize] = tcpfin;
        timeouts_s[FlowState::TimeWait as usize] = 120;
        timeouts_s[FlowState::Close as usize] = 10;
        timeouts_s[FlowState::Udp as usize] = udp;
        Self {
            timeouts_s,
            flags,
            flow_table_mask: 0,
            flow_hash_seed: 0,
        }
    }

    /// The idle timeout of `state`, in nanoseconds.
    #[inline(always)]
    pub const fn timeout_ns(&self, state: u8) -> u64 {
        let index = state as usize;
        if index < FLOW_STATES {
            self.timeouts_s[index] as u64 * 1_000_000_000
        } else {
            0
        }
    }
}

/// The hash a service's lookup table is indexed by, per scheduler: `sh` and `mh` hash the client
/// address (and its port with `sh-port`/`mh-port`), `dh` the destination address, as IPVS does.
/// Fields a scheduler does not use are zero, so the kernel and the controller compute the same
/// value from the same flow.
#[inline(always)]
pub const fn schedule_hash(
    service_flags: u32,
    src_addr: [u8; 4],
    dst_addr: [u8; 4],
    src_port: [u8; 2],
) -> u32 {
    if service_flags & crate::SERVICE_HASH_DESTINATION != 0 {
        crate::hash::flow_hash([0; 4], dst_addr, [0; 2], [0; 2], 0)
    } else if service_flags & crate::SERVICE_HASH_SOURCE_PORT != 0 {
        crate::hash::flow_hash(src_addr, [0; 4], src_port, [0; 2], 0)
    } else {
        crate::hash::flow_hash(src_addr, [0; 4], [0; 2], [0; 2], 0)
    }
}

#[cfg(test)]
mod tests {
    use super::{FlowState::*, *};

    #[test]
    fn a_clean_connection_goes_through_ipvs_states() {
        let mut state = initial_state(crate::IPPROTO_TCP, TCP_SYN);
        assert_eq!(state, SynRecv);
        state = next_tcp_state(state, TCP_ACK);
        assert_eq!(state, Established);
        state = next_tcp_state(state, TCP_ACK | 0x08);
        assert_eq!(state, Established, "PSH does not matter");
        state = next_tcp_state(state, TCP_FIN | TCP_ACK);
        assert_eq!(state, FinWait);
        state = next_tcp_state(state, TCP_ACK);
        assert_eq!(state, FinWait);
    }

    #[test]
    fn a_syn_is_not_counted_as_a_packet_seen() {
        use crate::IPPROTO_TCP;
        assert!(!counts_as_seen(IPPROTO_TCP, TCP_SYN));
        assert!(counts_as_seen(IPPROTO_TCP, TCP_ACK));
        assert!(counts_as_seen(IPPROTO_TCP, TCP_FIN | TCP_ACK));
        assert!(
            counts_as_seen(17, TCP_SYN),
            "UDP has no flags: the bits are not read"
        );
    }

    #[test]
    fn rst_closes_except_in_syn_recv() {
        assert_eq!(next_tcp_state(Established, TCP_RST | TCP_ACK), Close);
        assert_eq!(next_tcp_state(FinWait, TCP_RST), Close);
        assert_eq!(next_tcp_state(SynRecv, TCP_RST), SynRecv);
    }

    #[test]
    fn a_new_syn_reopens_a_closed_connection() {
        assert_eq!(next_tcp_state(Close, TCP_SYN), SynRecv);
        assert_eq!(next_tcp_state(TimeWait, TCP_SYN), SynRecv);
        assert_eq!(next_tcp_state(Established, TCP_SYN), Established);
    }

    #[test]
    fn first_packets_pick_a_state() {
        assert_eq!(initial_state(crate::IPPROTO_UDP, 0), Udp);
        assert_eq!(initial_state(crate::IPPROTO_TCP, TCP_ACK), Established);
        assert_eq!(initial_state(crate::IPPROTO_TCP, TCP_RST | TCP_ACK), Close);
        assert_eq!(initial_state(crate::IPPROTO_TCP, TCP_FIN | TCP_ACK), Close);
    }

    #[test]
    fn only_established_is_active() {
        for state in [None, SynRecv, FinWait, TimeWait, Close, Udp] {
            assert!(!state.is_active(), "{state:?}");
        }
        assert!(Established.is_active());
    }

    #[test]
    fn default_timeouts_are_ipvs_defaults() {
        let s = Settings::with_timeouts(900, 120, 300, 0);
        assert_eq!(s.timeout_ns(Established as u8), 900_000_000_000);
        assert_eq!(s.timeout_ns(FinWait as u8), 120_000_000_000);
        assert_eq!(s.timeout_ns(Udp as u8), 300_000_000_000);
        assert_eq!(s.timeout_ns(SynRecv as u8), 60_000_000_000);
        assert_eq!(s.timeout_ns(200), 0);
    }

    #[test]
    fn state_values_round_trip() {
        for value in 0..=6 {
            assert_eq!(FlowState::from_u8(value).unwrap() as u8, value);
        }
        assert_eq!(FlowState::from_u8(7), Option::None);
    }

    #[test]
    fn schedule_hash_ignores_what_the_scheduler_does_not_use() {
        let a = schedule_hash(0, [10, 0, 0, 1], [10, 0, 0, 100], [0x12, 0x34]);
        let b = schedule_hash(0, [10, 0, 0, 1], [10, 0, 0, 200], [0x56, 0x78]);
        assert_eq!(a, b, "sh/mh without the port flag hash only the client");
        let c = schedule_hash(
            crate::SERVICE_HASH_SOURCE_PORT,
            [10, 0, 0, 1],
            [0; 4],
            [0x12, 0x34],
        );
        assert_ne!(a, c);
        let d = schedule_hash(
            crate::SERVICE_HASH_DESTINATION,
            [10, 0, 0, 1],
            [10, 0, 0, 100],
            [0; 2],
        );
        let e = schedule_hash(
            crate::SERVICE_HASH_DESTINATION,
            [10, 0, 0, 9],
            [10, 0, 0, 100],
            [9; 2],
        );
        assert_eq!(d, e, "dh hashes only the destination");
    }
}
