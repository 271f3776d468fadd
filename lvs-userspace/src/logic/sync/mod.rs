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
//! One UDP datagram is one message: a header, `count` entries of fixed size, and an
//! HMAC-SHA256 of everything before it. All integers are big-endian (network order).
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
//! entry (28 bytes each)
//!   0  1  kind: 1 new connection, 2 state change, 3 persistence template
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
//! HMAC (32 bytes)
//!      HMAC-SHA256, keyed with the shared sync key, of the header and the entries
//! ```
//!
//! A message is at most `--sync-maxlen` bytes ([`SyncMaxLen`](crate::base::values::SyncMaxLen),
//! 1472 by default so that it fits a 1500-byte MTU unfragmented); a sender splits a batch into
//! as many messages as it needs. Loss is tolerated as IPVS tolerates it: each entry is the
//! whole truth about its connection, so a lost one is mended by the next that names it, and
//! a backup that missed a connection schedules it afresh as it would without sync.
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
//! Not kept: firewall-mark services, IPv6 and TCP sequence-offset data (lvs has none of
//! them), and IPVS's version 0 format.

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
