//! Connection sync between directors, as IPVS's sync daemon (`ipvsadm --start-daemon`) does
//! it: the master tells its backups about new connections, state changes and persistence
//! templates, so that a backup that takes the VIP over sends every established connection to
//! the real server it already has. This module is the pure part: the wire format
//! ([`wire`]), the replay window a backup keeps per master ([`window`]), what a master sends
//! and when ([`master`]), the decisions a backup makes about a decoded entry ([`backup`]),
//! and the sync daemons' parameters as every front end gives them ([`settings`]). Sockets,
//! timers and the flow-table writes belong to the daemon (`daemon::sync`, `io::sync`).
//!
//! # The wire format, version 1
//!
//! One UDP datagram is one message: a header, `count` entries, and an HMAC-SHA256 of
//! everything before it. An entry is IPv4 (28 bytes) or IPv6 (64 bytes), as its first byte
//! says. All integers are big-endian (network order).
//!
//! ```text
//! header (20 bytes)
//!   0  4  magic "LVSY"
//!   4  1  version, 1
//!   5  1  sync id (ipvsadm's --syncid)
//!   6  2  count: the number of entries
//!   8  2  length: the whole message in bytes, HMAC included
//!  10  2  reserved, 0
//!  12  8  sequence: one more than the sender's previous message
//! IPv4 entry (28 bytes)
//!   0  1  kind: 1 new connection, 2 state change, 3 persistence template; the high bit
//!           (0x80) clear
//!   1  1  protocol: 6 TCP, 17 UDP
//!   2  1  state: 0 NONE, 1 ESTABLISHED, 2 SYN_RECV, 3 FIN_WAIT, 4 TIME_WAIT, 5 CLOSE,
//!           6 UDP (a template has 0)
//!   3  1  reserved, 0
//!   4  4  client address (a template: the client's network, masked by the granularity)
//!   8  2  client port (a template: 0)
//!  10  2  service port
//!  12  4  service address (the VIP)
//!  16  4  real server address
//!  20  2  real server port
//!  22  2  reserved, 0
//!  24  4  remaining timeout in milliseconds, at least 1
//! IPv6 entry (64 bytes): the same fields in the same order, each address 16 bytes
//!   0  1  kind, as above, with the high bit (0x80) set: 0x81, 0x82 or 0x83
//!   1  1  protocol
//!   2  1  state
//!   3  1  reserved, 0
//!   4 16  client address (a template: the client's network)
//!  20  2  client port (a template: 0)
//!  22  2  service port
//!  24 16  service address (the VIP)
//!  40 16  real server address
//!  56  2  real server port
//!  58  2  reserved, 0
//!  60  4  remaining timeout in milliseconds, at least 1
//! HMAC (32 bytes)
//!      HMAC-SHA256, keyed with the shared sync key, of the header and the entries
//! ```
//!
//! An entry's addresses are all of one family: under direct routing the real server gets the
//! client's packet to the VIP as sent. An IPv6 entry never holds an IPv4-mapped address (an
//! IPv4 connection travels as an IPv4 entry, so that it has one name on the wire); a decoder
//! refuses such an entry, and with it the message.
//!
//! A message is at most `--sync-maxlen` bytes ([`SyncMaxLen`](crate::base::values::SyncMaxLen),
//! 1472 by default so that it fits a 1500-byte MTU unfragmented); a sender splits a batch into
//! as many messages as it needs, never an entry: 50 IPv4 or 22 IPv6 entries at 1472 bytes. An
//! IPv6 entry needs a maxlen of at least 116 bytes
//! ([`IPV6_LEAST_MAX_LEN`](wire::IPV6_LEAST_MAX_LEN)); below it a master sends IPv4 entries
//! only, and says so once in its log. Loss is tolerated as IPVS tolerates it: each entry is
//! the whole truth about its connection, so a lost one is mended by the next that names it,
//! and a backup that missed a connection schedules it afresh as it would without sync.
//!
//! # Why IPv6 is a bit of the kind, not a new version
//!
//! IPv6 entries came after version 1 was in use, and were added as entry kinds, the version
//! kept at 1. The IPv4 entries are unchanged, byte for byte, so a director of this release and
//! one of the release before still sync IPv4 connections with each other. A new version would
//! have made each refuse every message of the other. The reader learns an entry's length
//! from its first byte, before reading the entry, as IPVS's does from the `STYPE_F_INET6`
//! bit of its type byte. A writer puts one family in each message, although the format
//! allows both: a reader of the release before, which knows only 28-byte entries, refuses
//! a message with an IPv6 entry whole (its entries do not fill the length), so a mixed
//! message would cost it the IPv4 connections beside the IPv6 ones. With one family a
//! message, it loses only IPv6 entries, which it has no service for anyway. That costs at
//! most one message more for each change of family in a batch, and the sweep reads the IPv4
//! table before the IPv6 one, so a batch changes family about once.
//!
//! # What we keep from IPVS, and what we do better
//!
//! Kept (from `net/netfilter/ipvs/ip_vs_sync.c`, version 1 of its protocol): one datagram per
//! batch of connection entries behind a small header that carries the sync id; a version in
//! the header; entries that carry the protocol, the client, the virtual service and the real
//! server by address and port (never by an id, which differs between directors), the
//! connection's state and its remaining timeout; persistence templates sent like
//! connections; a bound on the message length (`--sync-maxlen`).
//!
//! Better:
//! - **Authenticated.** IPVS accepts any datagram that reaches its port with the right sync
//!   id, so anyone on the segment can plant connections in a backup. Every message here ends
//!   in an HMAC-SHA256 over a shared key, checked (in constant time) before any entry is
//!   read; a message without the right key is dropped and counted as forged.
//! - **Replay-proof.** IPVS has no sequence number. Here each message has one, and a backup
//!   keeps a window of the last 64 per master: a message seen already or older than the
//!   window is dropped and counted, so a recorded message cannot be played back to revive
//!   connections. A sender starts its sequence at the wall-clock time in microseconds, so a
//!   restarted master continues above the numbers it used before.
//! - **Strict.** IPVS skips what it cannot parse and carries optional parameters of variable
//!   length. Here every entry has one size and every reserved byte must be zero, so a
//!   message either decodes whole or is refused whole, with a typed reason
//!   ([`wire::Reason`]) for the counters; the decoder never panics on any input.
//! - **Exact sync id.** An IPVS backup with sync id 0 takes messages of every id; here a
//!   backup takes only its own id.
//! - **Never a forward to a stranger.** An IPVS backup that does not know the real server
//!   still creates the connection. Here an entry that names a service or real server the
//!   backup does not have is ignored and counted ([`backup::Unknown`]).
//!
//! Kept too: IPv6 entries as IPVS's are, the IPv4 layout with 16-byte addresses, told
//! apart by a bit of the entry's first byte. Not kept: the entry's own length field and
//! optional parameters (the length follows from the family, and there is nothing optional),
//! firewall-mark services and TCP sequence-offset data (lvs has none of them), and IPVS's
//! version 0 format.

pub mod backup;
pub mod master;
pub mod settings;
pub mod window;
pub mod wire;

pub use backup::{Install, Placement, Places, Unknown, install, place};
pub use master::{Master, Outgoing};
pub use settings::{SyncConfig, SyncDaemon, SyncRole};
pub use window::ReplayWindow;
pub use wire::{
    Change, Connection, Encoder, Entry, EntryError, Message, Reason, Rejection, ServiceAddress,
    SyncKey, Template, decode,
};
