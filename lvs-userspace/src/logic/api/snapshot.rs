//! The daemon's state as `lvsadm -L` shows it: services, real servers, counters, rates,
//! connections and timeouts. The daemon sends this; `lvsadm --json` prints it.

use std::{fmt, net::SocketAddr};

use lvs_common::flow::FlowState;
use serde::{Deserialize, Serialize};

use super::{Protocol, RealServerConfig, ServiceConfig, ServiceKey, Timeouts};

/// Everything a listing needs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    /// The number of connection-table buckets, shown in the header as `size=`.
    pub connection_table_size: u32,
    pub timeouts: Timeouts,
    pub services: Vec<ServiceEntry>,
    /// Only filled when the request asked for connections.
    #[serde(default)]
    pub connections: Vec<Connection>,
}

impl Snapshot {
    pub fn service(&self, key: &ServiceKey) -> Option<&ServiceEntry> {
        self.services.iter().find(|entry| entry.service == *key)
    }
}

/// A virtual service with its configuration, counters and real servers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceEntry {
    pub service: ServiceKey,
    pub config: ServiceConfig,
    pub stats: Stats,
    pub rates: Rates,
    pub real_servers: Vec<RealServerEntry>,
}

/// A real server with its configuration, connection counts and counters.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RealServerEntry {
    pub server: RealServerConfig,
    /// The port connections are sent to (the service's port, in direct routing).
    pub port: u16,
    /// Connections in the ESTABLISHED state (TCP), as IPVS counts them.
    pub active_conns: u32,
    /// Every other connection entry, UDP included.
    pub inactive_conns: u32,
    /// Persistence templates pointing at this server.
    pub persistent_conns: u32,
    pub stats: Stats,
    pub rates: Rates,
}

/// Totals since the service or server was added (or last zeroed).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stats {
    pub conns: u64,
    pub inpkts: u64,
    pub outpkts: u64,
    pub inbytes: u64,
    pub outbytes: u64,
}

/// Recent rates, per second.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rates {
    pub cps: u64,
    pub inpps: u64,
    pub outpps: u64,
    pub inbps: u64,
    pub outbps: u64,
}

/// One entry of the connection table (`-Lc`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Connection {
    pub protocol: Protocol,
    /// Seconds until the entry expires.
    pub expires: u32,
    pub state: ConnectionState,
    pub source: SocketAddr,
    pub virtual_service: SocketAddr,
    pub destination: SocketAddr,
}

/// The state of a connection entry, with the names IPVS prints.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ConnectionState {
    None,
    Established,
    SynSent,
    SynRecv,
    FinWait,
    TimeWait,
    Close,
    CloseWait,
    LastAck,
    Listen,
    Synack,
    /// Every UDP entry.
    Udp,
}

impl ConnectionState {
    pub const fn name(self) -> &'static str {
        match self {
            ConnectionState::None => "NONE",
            ConnectionState::Established => "ESTABLISHED",
            ConnectionState::SynSent => "SYN_SENT",
            ConnectionState::SynRecv => "SYN_RECV",
            ConnectionState::FinWait => "FIN_WAIT",
            ConnectionState::TimeWait => "TIME_WAIT",
            ConnectionState::Close => "CLOSE",
            ConnectionState::CloseWait => "CLOSE_WAIT",
            ConnectionState::LastAck => "LAST_ACK",
            ConnectionState::Listen => "LISTEN",
            ConnectionState::Synack => "SYNACK",
            ConnectionState::Udp => "UDP",
        }
    }
}

impl From<FlowState> for ConnectionState {
    /// The data plane's states are IPVS's input-only subset.
    fn from(state: FlowState) -> Self {
        match state {
            FlowState::None => ConnectionState::None,
            FlowState::Established => ConnectionState::Established,
            FlowState::SynRecv => ConnectionState::SynRecv,
            FlowState::FinWait => ConnectionState::FinWait,
            FlowState::TimeWait => ConnectionState::TimeWait,
            FlowState::Close => ConnectionState::Close,
            FlowState::Udp => ConnectionState::Udp,
        }
    }
}

impl fmt::Display for ConnectionState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_names_match_their_json_names() {
        for state in [
            ConnectionState::None,
            ConnectionState::Established,
            ConnectionState::SynSent,
            ConnectionState::SynRecv,
            ConnectionState::FinWait,
            ConnectionState::TimeWait,
            ConnectionState::Close,
            ConnectionState::CloseWait,
            ConnectionState::LastAck,
            ConnectionState::Listen,
            ConnectionState::Synack,
            ConnectionState::Udp,
        ] {
            let json = serde_json::to_string(&state).unwrap();
            assert_eq!(json, format!("\"{}\"", state.name()));
        }
    }

    #[test]
    fn the_data_planes_states_keep_their_names() {
        for value in 0..=u8::MAX {
            if let Some(state) = FlowState::from_u8(value) {
                assert_eq!(ConnectionState::from(state).name(), state.name());
            }
        }
    }
}
