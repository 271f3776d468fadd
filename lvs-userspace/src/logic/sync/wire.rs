//! The connection-sync message: its entries, the encoder a master uses and the decoder a
//! backup uses. The layout is in the module above ([`super`]).

use std::{
    fmt,
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    ops::Range,
};

use hmac::{Hmac, Mac};
use lvs_common::flow::FlowState;
use sha2::Sha256;

use super::window::ReplayWindow;
use crate::{
    base::values::{Port, SyncId, SyncMaxLen, Timeout, UnicastAddress},
    logic::config::Protocol,
};

/// The first bytes of every message.
pub const MAGIC: [u8; 4] = *b"LVSY";
/// The version this module writes and reads.
pub const VERSION: u8 = 1;
pub const HEADER_LEN: usize = 20;
/// An IPv4 entry.
pub const ENTRY_LEN: usize = 28;
/// An IPv6 entry: an IPv4 entry's fields in the same order, its three addresses 16 bytes.
pub const ENTRY6_LEN: usize = 64;
/// HMAC-SHA256.
pub const MAC_LEN: usize = 32;
/// The smallest message that holds an IPv6 entry, 116 bytes: a `--sync-maxlen` below it (80
/// is the least, which holds one IPv4 entry) carries IPv4 entries only.
pub const IPV6_LEAST_MAX_LEN: usize = HEADER_LEN + ENTRY6_LEN + MAC_LEN;
/// The longest remaining timeout an entry may carry: the longest timeout lvs can hold.
pub const MAX_REMAINING_MS: u32 = Timeout::MAX * 1000;

const KIND_NEW: u8 = 1;
const KIND_STATE_CHANGE: u8 = 2;
const KIND_TEMPLATE: u8 = 3;
/// Set in an entry's kind byte when its addresses are IPv6 (IPVS's `STYPE_F_INET6`), so that
/// a reader knows the entry's length from its first byte.
const KIND_IPV6: u8 = 0x80;

type HmacSha256 = Hmac<Sha256>;

/// The key shared by the directors of one sync id. At least 16 bytes, so that it cannot be
/// guessed; its bytes are never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct SyncKey(Vec<u8>);

impl SyncKey {
    pub const MIN_LEN: usize = 16;

    pub fn new(bytes: Vec<u8>) -> Result<Self, KeyError> {
        if bytes.len() < Self::MIN_LEN {
            return Err(KeyError::TooShort(bytes.len()));
        }
        Ok(SyncKey(bytes))
    }

    fn mac(&self) -> HmacSha256 {
        // HMAC takes a key of any length; `new` has checked ours is long enough.
        <HmacSha256 as Mac>::new_from_slice(&self.0).expect("HMAC accepts keys of any length")
    }

    /// The HMAC that follows `signed` (a message's header and entries) on the wire. The
    /// encoder signs with it; the fuzz target signs arbitrary bytes with it to reach the
    /// checks that only an authentic message gets to.
    pub fn tag(&self, signed: &[u8]) -> [u8; MAC_LEN] {
        let mut mac = self.mac();
        mac.update(signed);
        mac.finalize().into_bytes().into()
    }
}

impl fmt::Debug for SyncKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SyncKey({} bytes)", self.0.len())
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("the sync key has {0} bytes; it needs at least {min}", min = SyncKey::MIN_LEN)]
    TooShort(usize),
}

/// A virtual service as directors name it to each other: VIP, port and protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ServiceAddress {
    pub address: IpAddr,
    pub port: u16,
    pub protocol: Protocol,
}

impl fmt::Display for ServiceAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // As a socket address, so that an IPv6 VIP is bracketed apart from its port.
        let socket = SocketAddr::new(self.address, self.port);
        write!(f, "{} {socket}", self.protocol.name())
    }
}

/// What happened to a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Change {
    New,
    StateChange,
}

/// A connection as the master has it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Connection {
    pub service: ServiceAddress,
    pub client: SocketAddr,
    pub real_server: SocketAddr,
    pub state: FlowState,
    pub remaining_ms: u32,
}

/// A persistence template: a client network's real server for a persistent service.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Template {
    pub service: ServiceAddress,
    /// The client address masked by the service's persistence granularity.
    pub client_network: IpAddr,
    pub real_server: SocketAddr,
    pub remaining_ms: u32,
}

/// One entry of a message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Entry {
    Connection(Change, Connection),
    Template(Template),
}

impl Entry {
    pub fn service(&self) -> ServiceAddress {
        match self {
            Entry::Connection(_, connection) => connection.service,
            Entry::Template(template) => template.service,
        }
    }

    pub fn real_server(&self) -> SocketAddr {
        match self {
            Entry::Connection(_, connection) => connection.real_server,
            Entry::Template(template) => template.real_server,
        }
    }

    /// The client's address, or a template's client network.
    pub fn client(&self) -> IpAddr {
        match self {
            Entry::Connection(_, connection) => connection.client.ip(),
            Entry::Template(template) => template.client_network,
        }
    }

    /// Whether the entry is an IPv6 one: its service's family, which [`check`](Self::check)
    /// makes every address of the entry share.
    pub fn is_ipv6(&self) -> bool {
        self.service().address.is_ipv6()
    }

    /// Its length on the wire: [`ENTRY_LEN`] or [`ENTRY6_LEN`].
    pub fn wire_len(&self) -> usize {
        if self.is_ipv6() {
            ENTRY6_LEN
        } else {
            ENTRY_LEN
        }
    }

    /// The rules an entry keeps, on both sides of the wire. A master checks each entry it
    /// builds from its flow table, so that one odd flow cannot stop a whole batch.
    pub fn check(&self) -> Result<(), EntryError> {
        let service = self.service();
        let real_server = self.real_server();
        let addresses = [service.address, self.client(), real_server.ip()];
        // An IPv4 connection always travels as an IPv4 entry, so that one connection has one
        // name on the wire and in either family's table; a mapped address would be a second.
        let mapped = addresses.iter().find_map(|address| match address {
            IpAddr::V6(v6) if v6.to_ipv4_mapped().is_some() => Some(*v6),
            _ => None,
        });
        if let Some(mapped) = mapped {
            return Err(EntryError::Mapped(mapped));
        }
        // Under direct routing the real server gets the client's packet as sent, to the VIP,
        // so the client, the VIP and the real server are of one family.
        if addresses
            .iter()
            .any(|address| address.is_ipv6() != service.address.is_ipv6())
        {
            return Err(EntryError::Families {
                service,
                client: self.client(),
                real_server,
            });
        }
        UnicastAddress::new(service.address).map_err(|_| EntryError::Service(service))?;
        Port::new(i64::from(service.port)).map_err(|_| EntryError::Service(service))?;
        UnicastAddress::new(real_server.ip()).map_err(|_| EntryError::RealServer(real_server))?;
        Port::new(i64::from(real_server.port()))
            .map_err(|_| EntryError::RealServer(real_server))?;
        let remaining_ms = match self {
            Entry::Connection(_, connection) => {
                let fits = match service.protocol {
                    Protocol::Tcp => connection.state != FlowState::Udp,
                    Protocol::Udp => connection.state == FlowState::Udp,
                };
                if !fits {
                    return Err(EntryError::StateForProtocol {
                        state: connection.state,
                        protocol: service.protocol,
                    });
                }
                connection.remaining_ms
            }
            Entry::Template(template) => template.remaining_ms,
        };
        if !(1..=MAX_REMAINING_MS).contains(&remaining_ms) {
            return Err(EntryError::Remaining(remaining_ms));
        }
        Ok(())
    }

    /// Writes a checked entry: every address of it is of one family.
    fn write(&self, out: &mut Vec<u8>) {
        let service = self.service();
        let (kind, state, client_port, remaining_ms) = match self {
            Entry::Connection(change, connection) => (
                match change {
                    Change::New => KIND_NEW,
                    Change::StateChange => KIND_STATE_CHANGE,
                },
                state_code(connection.state),
                connection.client.port(),
                connection.remaining_ms,
            ),
            Entry::Template(template) => (KIND_TEMPLATE, 0, 0, template.remaining_ms),
        };
        let family = if self.is_ipv6() { KIND_IPV6 } else { 0 };
        let address = |out: &mut Vec<u8>, address: IpAddr| match address {
            IpAddr::V4(v4) => out.extend_from_slice(&v4.octets()),
            IpAddr::V6(v6) => out.extend_from_slice(&v6.octets()),
        };
        let real_server = self.real_server();
        out.extend_from_slice(&[kind | family, service.protocol.number(), state, 0]);
        address(out, self.client());
        out.extend_from_slice(&client_port.to_be_bytes());
        out.extend_from_slice(&service.port.to_be_bytes());
        address(out, service.address);
        address(out, real_server.ip());
        out.extend_from_slice(&real_server.port().to_be_bytes());
        out.extend_from_slice(&[0, 0]);
        out.extend_from_slice(&remaining_ms.to_be_bytes());
    }

    /// The length of the entry whose first byte is `kind`.
    const fn len_of(kind: u8) -> usize {
        if kind & KIND_IPV6 == 0 {
            ENTRY_LEN
        } else {
            ENTRY6_LEN
        }
    }

    /// Reads one entry of exactly [`Entry::len_of`] its first byte.
    fn read(bytes: &[u8]) -> Result<Entry, EntryError> {
        // Both layouts have the same fields in the same order (`mod.rs`), so every offset
        // after the client address follows from the addresses' width.
        let width = if bytes[0] & KIND_IPV6 == 0 { 4 } else { 16 };
        debug_assert_eq!(bytes.len(), 16 + 3 * width);
        let u16_at = |at: usize| u16::from_be_bytes([bytes[at], bytes[at + 1]]);
        let address_at = |at: usize| -> IpAddr {
            if width == 4 {
                Ipv4Addr::new(bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]).into()
            } else {
                let mut octets = [0; 16];
                octets.copy_from_slice(&bytes[at..at + 16]);
                Ipv6Addr::from(octets).into()
            }
        };
        let (client_at, service_at, real_server_at) = (4, 8 + width, 8 + 2 * width);
        let (reserved_at, remaining_at) = (10 + 3 * width, 12 + 3 * width);
        if bytes[3] != 0 || bytes[reserved_at] != 0 || bytes[reserved_at + 1] != 0 {
            return Err(EntryError::Reserved);
        }
        let protocol = match bytes[1] {
            lvs_common::IPPROTO_TCP => Protocol::Tcp,
            lvs_common::IPPROTO_UDP => Protocol::Udp,
            other => return Err(EntryError::Protocol(other)),
        };
        let service = ServiceAddress {
            address: address_at(service_at),
            port: u16_at(client_at + width + 2),
            protocol,
        };
        let client = address_at(client_at);
        let client_port = u16_at(client_at + width);
        let real_server =
            SocketAddr::new(address_at(real_server_at), u16_at(real_server_at + width));
        let remaining_ms = u32::from_be_bytes([
            bytes[remaining_at],
            bytes[remaining_at + 1],
            bytes[remaining_at + 2],
            bytes[remaining_at + 3],
        ]);
        let kind = bytes[0] & !KIND_IPV6;
        let entry = match kind {
            KIND_NEW | KIND_STATE_CHANGE => Entry::Connection(
                if kind == KIND_NEW {
                    Change::New
                } else {
                    Change::StateChange
                },
                Connection {
                    service,
                    client: SocketAddr::new(client, client_port),
                    real_server,
                    state: state_from_code(bytes[2]).ok_or(EntryError::State(bytes[2]))?,
                    remaining_ms,
                },
            ),
            KIND_TEMPLATE => {
                if bytes[2] != 0 || client_port != 0 {
                    return Err(EntryError::TemplateWithConnection);
                }
                Entry::Template(Template {
                    service,
                    client_network: client,
                    real_server,
                    remaining_ms,
                })
            }
            other => return Err(EntryError::Kind(other)),
        };
        entry.check()?;
        Ok(entry)
    }
}

/// The wire's state codes, written out here so that the format does not change if the flow
/// table's numbering does.
const fn state_code(state: FlowState) -> u8 {
    match state {
        FlowState::None => 0,
        FlowState::Established => 1,
        FlowState::SynRecv => 2,
        FlowState::FinWait => 3,
        FlowState::TimeWait => 4,
        FlowState::Close => 5,
        FlowState::Udp => 6,
    }
}

const fn state_from_code(code: u8) -> Option<FlowState> {
    Some(match code {
        0 => FlowState::None,
        1 => FlowState::Established,
        2 => FlowState::SynRecv,
        3 => FlowState::FinWait,
        4 => FlowState::TimeWait,
        5 => FlowState::Close,
        6 => FlowState::Udp,
        _ => return None,
    })
}

/// Why an entry is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EntryError {
    #[error("kind {0} is not 1 (new connection), 2 (state change) or 3 (persistence template)")]
    Kind(u8),
    #[error("protocol {0} is not TCP (6) or UDP (17)")]
    Protocol(u8),
    #[error("state {0} is not a connection state (0 to 6)")]
    State(u8),
    #[error("state {} does not belong to a {} connection", .state.name(), .protocol.name())]
    StateForProtocol {
        state: FlowState,
        protocol: Protocol,
    },
    #[error("a persistence template has a state or a client port")]
    TemplateWithConnection,
    #[error("the service {0} is not a unicast address and a port")]
    Service(ServiceAddress),
    #[error("the real server {0} is not a unicast address and a port")]
    RealServer(SocketAddr),
    #[error("remaining timeout {0} ms is out of range 1..={MAX_REMAINING_MS}")]
    Remaining(u32),
    #[error("a reserved byte is not zero")]
    Reserved,
    #[error(
        "the client {client}, the service {service} and the real server {real_server} are not \
         of one family"
    )]
    Families {
        service: ServiceAddress,
        client: IpAddr,
        real_server: SocketAddr,
    },
    #[error("{0} is an IPv4-mapped IPv6 address; an IPv4 connection travels as an IPv4 entry")]
    Mapped(Ipv6Addr),
    /// Only the encoder: an IPv6 entry needs a `--sync-maxlen` of at least
    /// [`IPV6_LEAST_MAX_LEN`].
    #[error("an entry of {length} bytes does not fit a message of at most {max_len} bytes")]
    TooLong { length: usize, max_len: u16 },
}

/// Writes a master's messages: batches entries into messages of at most `max_len` bytes,
/// numbers them and signs them.
#[derive(Debug)]
pub struct Encoder {
    sync_id: SyncId,
    key: SyncKey,
    max_len: SyncMaxLen,
    next_sequence: u64,
}

impl Encoder {
    /// `first_sequence` is the number of the first message; the daemon gives the wall-clock
    /// time in microseconds, so that a restarted master continues above its old numbers.
    pub fn new(sync_id: SyncId, key: SyncKey, max_len: SyncMaxLen, first_sequence: u64) -> Self {
        Encoder {
            sync_id,
            key,
            max_len,
            next_sequence: first_sequence,
        }
    }

    /// How many IPv4 entries one message holds under `max_len`: at least one, since the
    /// smallest `--sync-maxlen` (80) is a header, one IPv4 entry and the HMAC.
    pub fn entries_per_message(max_len: SyncMaxLen) -> usize {
        Self::room(max_len) / ENTRY_LEN
    }

    /// How many IPv6 entries one message holds under `max_len`: none below
    /// [`IPV6_LEAST_MAX_LEN`].
    pub fn ipv6_entries_per_message(max_len: SyncMaxLen) -> usize {
        Self::room(max_len) / ENTRY6_LEN
    }

    /// The bytes a message of at most `max_len` has for its entries.
    fn room(max_len: SyncMaxLen) -> usize {
        usize::from(max_len.get()) - HEADER_LEN - MAC_LEN
    }

    /// Whether a message of at most `max_len` bytes can hold `entry`: an IPv6 entry needs
    /// [`IPV6_LEAST_MAX_LEN`]; an entry is never split between messages.
    pub fn fits(max_len: SyncMaxLen, entry: &Entry) -> bool {
        entry.wire_len() <= Self::room(max_len)
    }

    /// The messages `entries` make, each as the range of `entries` it holds, in order. A
    /// message is filled until the next entry would take it past `max_len`, or is of the
    /// other family: messages of one family each, so that a backup of an earlier lvs, which
    /// reads 28-byte entries only and refuses a message with any other, still takes every
    /// IPv4 message (it has no IPv6 service for the others anyway). Every entry must
    /// [`fit`](Self::fits).
    pub fn batches(max_len: SyncMaxLen, entries: &[Entry]) -> Vec<Range<usize>> {
        let room = Self::room(max_len);
        let mut batches = Vec::new();
        let mut start = 0;
        let mut used = 0;
        for (at, entry) in entries.iter().enumerate() {
            let other_family = at > start && entry.is_ipv6() != entries[start].is_ipv6();
            if at > start && (other_family || used + entry.wire_len() > room) {
                batches.push(start..at);
                start = at;
                used = 0;
            }
            used += entry.wire_len();
        }
        if start < entries.len() {
            batches.push(start..entries.len());
        }
        batches
    }

    /// The messages for `entries`, in order, each a datagram's payload (see
    /// [`batches`](Self::batches)). An entry that breaks the format's rules (a UDP state on a
    /// TCP connection, no time left, an IPv6 entry under a `max_len` too small for it, ...)
    /// is an error and nothing is written.
    pub fn encode(&mut self, entries: &[Entry]) -> Result<Vec<Vec<u8>>, EntryError> {
        for entry in entries {
            entry.check()?;
            if !Self::fits(self.max_len, entry) {
                return Err(EntryError::TooLong {
                    length: entry.wire_len(),
                    max_len: self.max_len.get(),
                });
            }
        }
        Ok(Self::batches(self.max_len, entries)
            .into_iter()
            .map(|batch| {
                let sequence = self.next_sequence;
                self.next_sequence = self.next_sequence.wrapping_add(1);
                self.message(sequence, &entries[batch])
            })
            .collect())
    }

    /// A message without entries: a master's heartbeat, which tells its backups that it is
    /// alive when it has nothing else to say.
    pub fn heartbeat(&mut self) -> Vec<u8> {
        let sequence = self.next_sequence;
        self.next_sequence = self.next_sequence.wrapping_add(1);
        self.message(sequence, &[])
    }

    fn message(&self, sequence: u64, batch: &[Entry]) -> Vec<u8> {
        let length = HEADER_LEN + batch.iter().map(Entry::wire_len).sum::<usize>() + MAC_LEN;
        // `batches` keeps both within a u16: max_len is one.
        let (count, length_field) = (batch.len() as u16, length as u16);
        let mut out = Vec::with_capacity(length);
        out.extend_from_slice(&MAGIC);
        out.extend_from_slice(&[VERSION, self.sync_id.get()]);
        out.extend_from_slice(&count.to_be_bytes());
        out.extend_from_slice(&length_field.to_be_bytes());
        out.extend_from_slice(&[0, 0]);
        out.extend_from_slice(&sequence.to_be_bytes());
        for entry in batch {
            entry.write(&mut out);
        }
        let tag = self.key.tag(&out);
        out.extend_from_slice(&tag);
        out
    }
}

/// A message a backup took.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    pub sync_id: SyncId,
    pub sequence: u64,
    pub entries: Vec<Entry>,
}

/// Why a message was dropped. Each has a [`Reason`] to count it under.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    #[error("{received} bytes, shorter than the {expected} a message needs")]
    Truncated { received: usize, expected: usize },
    #[error("not an lvs sync message")]
    NotSync,
    #[error("sync protocol version {0}; this director speaks version {VERSION}")]
    Version(u8),
    #[error("{received} bytes arrived for a message of {header}")]
    Length { header: usize, received: usize },
    #[error("sync id {got}; this director's is {want}")]
    OtherSyncId { got: u8, want: u8 },
    #[error("the HMAC does not match: another key, or a forged or damaged message")]
    Forged,
    #[error("a reserved byte of the header is not zero")]
    Reserved,
    #[error("{count} entries do not fill a message of {length} bytes")]
    Count { count: usize, length: usize },
    #[error("entry {index}: {error}")]
    Entry { index: usize, error: EntryError },
    #[error("sequence {0} was taken already, or is older than the replay window")]
    Replayed(u64),
}

/// What a rejection is counted as.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Reason {
    Truncated,
    Malformed,
    Forged,
    OtherSyncId,
    Replayed,
}

impl Reason {
    pub const ALL: [Reason; 5] = [
        Reason::Truncated,
        Reason::Malformed,
        Reason::Forged,
        Reason::OtherSyncId,
        Reason::Replayed,
    ];

    /// The counter's name.
    pub const fn name(self) -> &'static str {
        match self {
            Reason::Truncated => "truncated",
            Reason::Malformed => "malformed",
            Reason::Forged => "forged",
            Reason::OtherSyncId => "other_sync_id",
            Reason::Replayed => "replayed",
        }
    }
}

impl Rejection {
    pub const fn reason(&self) -> Reason {
        match self {
            Rejection::Truncated { .. } => Reason::Truncated,
            Rejection::NotSync
            | Rejection::Version(_)
            | Rejection::Length { .. }
            | Rejection::Reserved
            | Rejection::Count { .. }
            | Rejection::Entry { .. } => Reason::Malformed,
            Rejection::Forged => Reason::Forged,
            Rejection::OtherSyncId { .. } => Reason::OtherSyncId,
            Rejection::Replayed(_) => Reason::Replayed,
        }
    }
}

/// Reads a message from a master and records its sequence in that master's `window`. The
/// message is taken whole or not at all: on any rejection the window is unchanged.
///
/// The checks run from the cheapest to the dearest, and none reads past what the one before
/// it established: the length, the magic and version, the header's length against the
/// datagram's, the sync id (in the clear, as in IPVS, so that a neighbouring pair with its
/// own id and key counts as another sync id, not as forged), the HMAC, and only then the
/// entries and the sequence.
pub fn decode(
    bytes: &[u8],
    sync_id: SyncId,
    key: &SyncKey,
    window: &mut ReplayWindow,
) -> Result<Message, Rejection> {
    let least = HEADER_LEN + MAC_LEN;
    if bytes.len() < least {
        return Err(Rejection::Truncated {
            received: bytes.len(),
            expected: least,
        });
    }
    let u16_at = |at: usize| usize::from(u16::from_be_bytes([bytes[at], bytes[at + 1]]));
    if bytes[..4] != MAGIC {
        return Err(Rejection::NotSync);
    }
    if bytes[4] != VERSION {
        return Err(Rejection::Version(bytes[4]));
    }
    let length = u16_at(8);
    if bytes.len() < length {
        return Err(Rejection::Truncated {
            received: bytes.len(),
            expected: length,
        });
    }
    if bytes.len() > length {
        return Err(Rejection::Length {
            header: length,
            received: bytes.len(),
        });
    }
    if bytes[5] != sync_id.get() {
        return Err(Rejection::OtherSyncId {
            got: bytes[5],
            want: sync_id.get(),
        });
    }
    // `length` is at least `least` here (it equals bytes.len()), so the split is in range.
    let (signed, tag) = bytes.split_at(length - MAC_LEN);
    let mut mac = key.mac();
    mac.update(signed);
    mac.verify_slice(tag).map_err(|_| Rejection::Forged)?;
    if bytes[10..12] != [0, 0] {
        return Err(Rejection::Reserved);
    }
    let count = u16_at(6);
    let body = &signed[HEADER_LEN..];
    // Each entry's first byte gives its length: the entries must fill the body exactly.
    let mut chunks = Vec::with_capacity(count.min(body.len() / ENTRY_LEN));
    let mut at = 0;
    for _ in 0..count {
        let Some(&kind) = body.get(at) else {
            return Err(Rejection::Count { count, length });
        };
        let Some(chunk) = body.get(at..at + Entry::len_of(kind)) else {
            return Err(Rejection::Count { count, length });
        };
        chunks.push(chunk);
        at += chunk.len();
    }
    if at != body.len() {
        return Err(Rejection::Count { count, length });
    }
    let mut sequence = [0; 8];
    sequence.copy_from_slice(&bytes[12..20]);
    let sequence = u64::from_be_bytes(sequence);
    if !window.is_new(sequence) {
        return Err(Rejection::Replayed(sequence));
    }
    let entries = chunks
        .into_iter()
        .enumerate()
        .map(|(index, chunk)| Entry::read(chunk).map_err(|error| Rejection::Entry { index, error }))
        .collect::<Result<Vec<Entry>, Rejection>>()?;
    window.record(sequence);
    Ok(Message {
        sync_id,
        sequence,
        entries,
    })
}

#[cfg(test)]
mod tests;
