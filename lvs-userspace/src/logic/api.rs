//! The control socket's one wire: the typed requests that `lvsadm`, `lvs status` and `lvs
//! reload` send to the daemon, and the daemon's answers.
//!
//! The encoding is the control socket's (newline-delimited JSON, see `control`): one
//! [`Request`] per line, one [`Response`] per line. The daemon decodes exactly the types its
//! clients encode, so the two sides cannot drift apart. Every mutating ipvsadm command becomes a
//! [`Change`]; a request carries a list of them that the daemon applies in order, all or
//! none, so that `lvsadm -R` restores a whole file or nothing. The values here are already
//! validated by their types (an IPv4 address, a port, a scheduler name), but the daemon still
//! checks every change against its state (does the service exist, is the server already
//! there) before anything touches the data plane.

use std::{fmt, net::IpAddr};

use serde::{Deserialize, Serialize};

pub mod snapshot;

pub use snapshot::Snapshot;

use crate::base::values::SourcePrefix;
use crate::logic::{
    config, conntrack,
    deny::Denied,
    status::Status,
    sync::{SyncDaemon, SyncRole},
};

/// The longest timeout ipvsadm accepts: 31 days, in seconds.
pub const MAX_TIMEOUT: u32 = 86400 * 31;

pub use crate::base::values::{Granularity, Netmask, PrefixLength};
pub use crate::logic::{
    config::{DEFAULT_PERSISTENCE_TIMEOUT, Persistence, Protocol, Timeouts},
    schedule::{SchedFlags, Scheduler},
};

/// What identifies a virtual service: protocol, VIP and port. The derived order (protocol,
/// then address, then port) is the order ipvsadm lists services in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceKey {
    pub protocol: Protocol,
    pub address: IpAddr,
    pub port: u16,
}

impl ServiceKey {
    /// The key of one of the director's services.
    pub fn of(service: &config::Service) -> Self {
        ServiceKey {
            protocol: service.protocol,
            address: service.address,
            port: service.port,
        }
    }
}

impl fmt::Display for ServiceKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // An IPv6 address is bracketed before its port, as ipvsadm writes it.
        let at = std::net::SocketAddr::new(self.address, self.port);
        write!(f, "{} {at}", self.protocol.name())
    }
}

/// Everything about a virtual service that `-A` sets and `-E` replaces.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceConfig {
    pub scheduler: Scheduler,
    #[serde(default)]
    pub sched_flags: SchedFlags,
    #[serde(default)]
    pub persistence: Option<Persistence>,
}

impl ServiceConfig {
    /// What `-A` would have set for one of the director's services.
    pub fn of(service: &config::Service) -> Self {
        ServiceConfig {
            scheduler: service.scheduler,
            sched_flags: service.sched_flags,
            persistence: service.persistence,
        }
    }
}

/// How packets reach a real server. lvs does direct routing only (ipvsadm's `-g`, shown as
/// "Route").
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ForwardMethod {
    #[default]
    Route,
}

impl ForwardMethod {
    /// The name in listings.
    pub const fn name(self) -> &'static str {
        match self {
            ForwardMethod::Route => "Route",
        }
    }

    /// The ipvsadm option.
    pub const fn option(self) -> &'static str {
        match self {
            ForwardMethod::Route => "-g",
        }
    }
}

/// Everything about a real server that `-a` sets and `-e` replaces. In direct routing the
/// real server listens on the service's port, so a real server is named by its address.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RealServerConfig {
    pub address: IpAddr,
    pub forward: ForwardMethod,
    /// 0..=65535; 0 quiesces the server (no new connections).
    pub weight: u32,
    /// Upper connection threshold (`-x`); 0 means none.
    pub u_threshold: u32,
    /// Lower connection threshold (`-y`); 0 means none.
    pub l_threshold: u32,
}

impl RealServerConfig {
    /// What `-a` would have set for one of the director's real servers.
    pub fn of(server: &config::RealServer) -> Self {
        RealServerConfig {
            address: server.address,
            forward: ForwardMethod::Route,
            weight: server.weight,
            u_threshold: server.upper_threshold,
            l_threshold: server.lower_threshold,
        }
    }
}

/// One change to the rule table: every mutating ipvsadm command.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum Change {
    /// `-A`: fails with "Service already exists".
    AddService {
        service: ServiceKey,
        config: ServiceConfig,
    },
    /// `-E`: replaces the whole configuration; fails with "No such service".
    EditService {
        service: ServiceKey,
        config: ServiceConfig,
    },
    /// `-D`: fails with "No such service".
    DeleteService { service: ServiceKey },
    /// `-C`: removes every service.
    Clear {},
    /// `-a`: fails with "Service not defined" or "Destination already exists".
    AddServer {
        service: ServiceKey,
        server: RealServerConfig,
    },
    /// `-e`: replaces the server's settings; fails with "Service not defined" or "No such
    /// destination".
    EditServer {
        service: ServiceKey,
        server: RealServerConfig,
    },
    /// `-d`: fails with "Service not defined" or "No such destination".
    DeleteServer {
        service: ServiceKey,
        address: IpAddr,
    },
    /// `-Z`: zeroes the counters of one service, or of all with `None`; fails with "No such
    /// service".
    Zero { service: Option<ServiceKey> },
    /// `--set`.
    SetTimeouts { timeouts: Timeouts },
}

/// A request to the daemon. Variants without data are struct variants (not unit ones) so that
/// `deny_unknown_fields` rejects stray fields.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "command", rename_all = "snake_case", deny_unknown_fields)]
pub enum Request {
    /// `lvs status`: the services, real servers, neighbour states and counters.
    Status {},
    /// Every live connection and persistence template in the daemon's own listing
    /// (`conntrack::Connection`); `lvsadm -Lc` asks for a [`Request::Snapshot`] instead.
    Connections {},
    /// Applies the changes in order, all or none: if one fails, the state is as before and
    /// the answer names the failing change.
    Apply { changes: Vec<Change> },
    /// The rule table, counters and timeouts; with `connections`, the connection table too
    /// (it can be large, so only `-c` asks for it).
    Snapshot { connections: bool },
    /// Reads the daemon's config file again and applies the difference, as SIGHUP does.
    Reload {},
    /// `lvsadm --start-daemon`: starts a connection-sync daemon with the key of the config's
    /// `[sync]` section. Fails, changing nothing, when a daemon of that role runs already
    /// or no key is configured.
    StartSyncDaemon { daemon: SyncDaemon },
    /// `lvsadm --stop-daemon master|backup`. Fails when no daemon of that role runs.
    StopSyncDaemon { role: SyncRole },
    /// `lvsadm -L --daemon`: the sync daemons running, in ipvsadm's order (master first),
    /// and the VIPs announced over BGP.
    SyncDaemons {},
    /// `lvs deny add`: denies every prefix, or none when one cannot be added.
    DenyAdd { prefixes: Vec<SourcePrefix> },
    /// `lvs deny del`: lifts every prefix (each one added at runtime), or none.
    DenyDelete { prefixes: Vec<SourcePrefix> },
    /// `lvs deny list`: the deny list with what each prefix dropped.
    DenyList {},
}

/// The daemon's answer to a [`Request`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Response {
    /// The answer to [`Request::Status`].
    Status(Status),
    /// The answer to [`Request::Connections`].
    Connections(Vec<conntrack::Connection>),
    /// Every change was applied.
    Ok,
    /// Nothing was changed. `message` reads like ipvsadm's ("No such service"); `change` is
    /// the index of the change that failed in an `Apply`, when one did.
    Error {
        message: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        change: Option<usize>,
    },
    Snapshot(Snapshot),
    /// A reload was applied; `message` says what it changed.
    Done {
        message: String,
    },
    /// The answer to [`Request::SyncDaemons`].
    Daemons(Daemons),
    /// The answer to [`Request::DenyList`].
    Denied(Vec<Denied>),
}

/// What runs beside the data plane, as `lvsadm -L --daemon` lists it: the sync daemons, the
/// masters the backup hears (the sync peers) and, with a `[bgp]` section, the announcements.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Daemons {
    pub sync_daemons: Vec<SyncDaemon>,
    #[serde(default)]
    pub sync_peers: Vec<crate::logic::status::SyncPeer>,
    #[serde(default)]
    pub bgp: Option<crate::logic::status::BgpStatus>,
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;

    #[test]
    fn an_ipv6_change_decodes_with_its_prefix_length_and_reads_back_as_itself() {
        let json = include_str!("../../../fuzz/seeds/control_request/apply6.json");
        let request: Request = serde_json::from_str(json).expect("decodes");
        let Request::Apply { changes } = &request else {
            panic!("{request:?}");
        };
        let Change::AddService { service, config } = &changes[0] else {
            panic!("{changes:?}");
        };
        assert_eq!(service.to_string(), "TCP [2001:db8::10]:443");
        assert_eq!(
            config.persistence.map(|p| p.netmask),
            Some(Granularity::PrefixLength(PrefixLength::new(64).unwrap()))
        );
        let again: Request =
            serde_json::from_str(&serde_json::to_string(&request).unwrap()).expect("reads back");
        assert_eq!(again, request);
        // A prefix length past 128, or a netmask that is not one, does not even decode.
        for bad in ["129", "\"255.0.255.0\""] {
            let text = json.replace("\"netmask\":64", &format!("\"netmask\":{bad}"));
            assert!(serde_json::from_str::<Request>(&text).is_err(), "{text}");
        }
    }

    fn web() -> ServiceKey {
        ServiceKey {
            protocol: Protocol::Tcp,
            address: Ipv4Addr::new(10, 0, 0, 1).into(),
            port: 80,
        }
    }

    #[test]
    fn requests_have_a_stable_json_shape() {
        let request = Request::Apply {
            changes: vec![
                Change::AddService {
                    service: web(),
                    config: ServiceConfig {
                        scheduler: Scheduler::WeightedLeastConnection,
                        sched_flags: SchedFlags::default(),
                        persistence: Some(Persistence {
                            timeout: 300,
                            netmask: Granularity::Netmask(Netmask::HOST),
                        }),
                    },
                },
                Change::DeleteServer {
                    service: web(),
                    address: Ipv4Addr::new(10, 0, 0, 11).into(),
                },
                Change::Clear {},
            ],
        };
        let json = serde_json::to_string(&request).unwrap();
        assert_eq!(
            json,
            r#"{"command":"apply","changes":[{"op":"add_service","service":{"protocol":"tcp","address":"10.0.0.1","port":80},"config":{"scheduler":"wlc","sched_flags":{"fallback":false,"port":false},"persistence":{"timeout":300,"netmask":"255.255.255.255"}}},{"op":"delete_server","service":{"protocol":"tcp","address":"10.0.0.1","port":80},"address":"10.0.0.11"},{"op":"clear"}]}"#
        );
        assert_eq!(serde_json::from_str::<Request>(&json).unwrap(), request);
    }

    #[test]
    fn malformed_requests_are_rejected_by_the_decoder() {
        let cases = [
            (
                r#"{"command":"apply","changes":[{"op":"add_service","service":{"protocol":"sctp","address":"10.0.0.1","port":80},"config":{"scheduler":"wlc"}}]}"#,
                "unknown variant `sctp`",
            ),
            (
                r#"{"command":"apply","changes":[{"op":"add_service","service":{"protocol":"tcp","address":"10.0.0.1","port":80},"config":{"scheduler":"lblc"}}]}"#,
                "unknown variant `lblc`",
            ),
            (
                r#"{"command":"apply","changes":[{"op":"delete_service","service":{"protocol":"tcp","address":"10.0.0.300","port":80}}]}"#,
                "invalid IP address syntax",
            ),
            (
                r#"{"command":"apply","changes":[{"op":"delete_service","service":{"protocol":"tcp","address":"10.0.0.1","port":65536}}]}"#,
                "invalid value: integer `65536`",
            ),
            (
                r#"{"command":"apply","changes":[{"op":"clear","everything":true}]}"#,
                "unknown field `everything`",
            ),
            (r#"{"command":"snapshot"}"#, "missing field `connections`"),
        ];
        for (json, expected) in cases {
            let error = serde_json::from_str::<Request>(json)
                .unwrap_err()
                .to_string();
            assert!(error.contains(expected), "{json}: {error}");
        }
    }

    #[test]
    fn responses_round_trip() {
        for response in [
            Response::Ok,
            Response::Error {
                message: "No such service".into(),
                change: Some(3),
            },
            Response::Error {
                message: "No such service".into(),
                change: None,
            },
        ] {
            let json = serde_json::to_string(&response).unwrap();
            assert_eq!(serde_json::from_str::<Response>(&json).unwrap(), response);
        }
        assert_eq!(serde_json::to_string(&Response::Ok).unwrap(), r#""ok""#);
    }
}
