//! The director's status as the control API returns it, and its text rendering.

use std::{collections::BTreeMap, fmt::Write as _};

use serde::{Deserialize, Serialize};

use crate::{
    base::health::{Admission, HealthState, HealthStatus},
    logic::{
        config::Timeouts,
        dataplane::{DataPlane, DataPlaneError, Family, ServiceLookup},
        deny::{self, Denied},
        model::{Model, Neighbour},
        rates::{RateBook, Rates},
        sync::SyncDaemon,
    },
};

/// Everything `lvs status` shows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Status {
    pub interface: String,
    /// How the program is attached: "native" or "generic".
    pub xdp_mode: String,
    pub timeouts: Timeouts,
    pub counters: Vec<CounterValue>,
    /// How full the flow table was at the last sweep.
    #[serde(default)]
    pub flow_table: FlowTable,
    pub services: Vec<ServiceStatus>,
    /// Connection sync: the sync daemons running and what they sent and received. Boxed, so
    /// that the control socket's answers stay small whichever they are.
    #[serde(default)]
    pub sync: Box<SyncStatus>,
    /// What the director announces to the routers, with a `[bgp]` section.
    #[serde(default)]
    pub bgp: Option<BgpStatus>,
    /// The deny list, in address order, with what each prefix dropped.
    #[serde(default)]
    pub deny: Vec<Denied>,
    /// Where the program finds each family's services, IPv4 first.
    #[serde(default)]
    pub service_lookup: Vec<FamilyLookup>,
}

/// Where the program finds one family's services (`ServiceLookup`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FamilyLookup {
    /// "IPv4" or "IPv6".
    pub family: String,
    /// Whether in the service table (the fast path); otherwise in the family's hash map.
    pub table: bool,
}

/// The announcements' part of the status (`status.bgp`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BgpStatus {
    /// The routing table the BGP daemon reads.
    pub route_table: u32,
    /// The hold time of the `[bgp]` section, in seconds.
    pub hold_time: u16,
    /// Every VIP, in address order, and whether it is announced.
    pub vips: Vec<VipAnnouncement>,
}

/// A VIP and whether the director announces it: it does while its data plane forwards and
/// one of the VIP's services has its quorum.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VipAnnouncement {
    pub address: String,
    pub announced: bool,
    /// Wanted, but waiting for the sync peers' connections before it is announced.
    #[serde(default)]
    pub settling: bool,
}

impl BgpStatus {
    /// The announcements, after connection sync.
    fn render(&self, out: &mut String) {
        let _ = writeln!(
            out,
            "BGP announcements (routing table {}, hold time {} s):",
            self.route_table, self.hold_time
        );
        for vip in &self.vips {
            let state = match (vip.announced, vip.settling) {
                (true, _) => "announced",
                (false, true) => {
                    "withdrawn, to be announced once the sync peers' connections are in"
                }
                (false, false) => "withdrawn (not forwarding, or no service with its quorum)",
            };
            let _ = writeln!(out, "  {:<15} {state}", vip.address);
        }
    }
}

/// Connection sync's part of the status (`status.sync` in `lvs status --json` and
/// `/status.json`). Counters count since the director started; they are not reset when the
/// sync daemons are stopped or replaced.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SyncStatus {
    /// The sync daemons running, master first, with their parameters.
    pub daemons: Vec<SyncDaemon>,
    /// Messages a master sent, heartbeats included, and the entries they carried.
    pub messages_sent: u64,
    pub entries_sent: u64,
    /// Entries that were due but over `max_rate`; they went at a later pass.
    pub entries_deferred: u64,
    /// Datagrams the socket refused to send (lost; the entries go again when next due).
    pub send_errors: u64,
    /// Times a master was asked to send its whole table again (a peer appeared).
    pub full_resends: u64,
    /// Messages a backup took (authenticated, in sequence), and the entries they carried.
    pub messages_received: u64,
    pub entries_received: u64,
    /// Entries written into the flow table or the templates.
    pub entries_installed: u64,
    /// Datagrams a backup dropped, by reason: `truncated`, `malformed`, `forged`,
    /// `other_sync_id`, `replayed`. Every reason is listed, from 0.
    pub rejected: BTreeMap<String, u64>,
    /// Entries a backup ignored, by what it lacks: `unknown_service`,
    /// `unknown_real_server`, `not_persistent`. Every kind is listed, from 0.
    pub unknown: BTreeMap<String, u64>,
    /// Failures reading the backup's socket.
    pub receive_errors: u64,
    /// The masters a backup heard, by address.
    pub peers: Vec<SyncPeer>,
}

/// A master a backup hears.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SyncPeer {
    pub address: String,
    /// Seconds since its last message was taken.
    pub last_message_seconds_ago: f64,
}

/// The flow table's fill: its size (`flow_table_size`) and the entries the last sweep found
/// alive (connections and persistence templates are in separate maps; this is connections).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FlowTable {
    pub size: u32,
    pub entries: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CounterValue {
    pub name: String,
    pub value: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServiceStatus {
    pub protocol: String,
    pub address: String,
    pub port: u16,
    pub scheduler: String,
    /// ipvsadm's `-b` flags, as it names them.
    pub sched_flags: Vec<String>,
    /// Seconds, when the service is persistent.
    pub persistence_timeout: Option<u32>,
    pub persistence_netmask: Option<String>,
    /// Connections scheduled since the start (or the last zeroing).
    pub connections: u64,
    pub packets: u64,
    pub bytes: u64,
    pub rates: Rates,
    /// The rate estimates after each of the last samples (every 2 s, up to five minutes),
    /// oldest first: the status page draws them.
    #[serde(default)]
    pub recent_rates: Vec<Rates>,
    pub real_servers: Vec<RealServerStatus>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RealServerStatus {
    pub address: String,
    pub port: u16,
    /// The weight in effect, or the configured one while it is out of the service.
    pub weight: u32,
    /// Whether it is in the service's scheduling: not removed by health checking, and not a
    /// sorry server on standby.
    pub in_effect: bool,
    pub upper_threshold: u32,
    pub lower_threshold: u32,
    /// Over its upper threshold: takes no new connections.
    pub overloaded: bool,
    pub active_connections: u32,
    pub inactive_connections: u32,
    pub persistent_connections: u32,
    /// "resolved", "unresolved", "off_link" or "unknown".
    pub neighbour: String,
    pub mac: Option<String>,
    /// Why the MAC is not known, when it is not.
    pub reason: Option<String>,
    /// Whether new flows go to it.
    pub forwarding: bool,
    pub connections: u64,
    pub packets: u64,
    pub bytes: u64,
    pub rates: Rates,
    /// Whether it is the service's sorry server.
    #[serde(default)]
    pub sorry_server: bool,
    /// Health checking's state, admission and last check result (with its time).
    #[serde(default)]
    pub health: Option<HealthStatus>,
}

impl RealServerStatus {
    /// The weight it has in the service's scheduling, or none when it is out of it.
    pub fn weight_in_effect(&self) -> Option<u32> {
        self.in_effect.then_some(self.weight)
    }
}

impl Status {
    /// Reads the counters from the data plane and combines them with the model.
    pub fn collect(
        model: &Model,
        dataplane: &dyn DataPlane,
        rates: &RateBook,
        timeouts: Timeouts,
        interface: &str,
        xdp_mode: &str,
        flow_table: FlowTable,
    ) -> Result<Self, DataPlaneError> {
        let counters = dataplane
            .counters()?
            .into_iter()
            .map(|(counter, value)| CounterValue {
                name: counter.name().to_owned(),
                value,
            })
            .collect();
        let service_lookup = Family::ALL
            .into_iter()
            .map(|family| {
                Ok(FamilyLookup {
                    family: family.name().to_owned(),
                    table: dataplane.service_lookup(family)? == ServiceLookup::Table,
                })
            })
            .collect::<Result<_, DataPlaneError>>()?;
        let real_server_stats = model.real_server_stats(dataplane)?;
        let mut services = Vec::new();
        for view in model.services() {
            let stats = dataplane.service_stats(view.index)?;
            let mut real_servers = Vec::new();
            for rs in &view.real_servers {
                let rs_stats = real_server_stats.of(rs.id);
                let (neighbour, mac, reason) = match rs.neighbour {
                    Neighbour::Unknown => ("unknown", None, None),
                    Neighbour::Resolved { mac } => ("resolved", Some(mac.to_string()), None),
                    Neighbour::Unresolved { reason } => ("unresolved", None, Some(reason.clone())),
                    Neighbour::OffLink => (
                        "off_link",
                        None,
                        Some(format!("not on a subnet of {interface}")),
                    ),
                };
                real_servers.push(RealServerStatus {
                    address: rs.address.to_string(),
                    port: view.service.port,
                    // As ipvsadm shows what IPVS holds: the weight in effect.
                    weight: rs.admitted_weight.unwrap_or(rs.weight),
                    in_effect: rs.admitted_weight.is_some(),
                    upper_threshold: rs.config.upper_threshold,
                    lower_threshold: rs.config.lower_threshold,
                    overloaded: rs.overloaded,
                    active_connections: rs.connections.active,
                    inactive_connections: rs.connections.inactive,
                    persistent_connections: rs.connections.persistent,
                    neighbour: neighbour.to_owned(),
                    mac,
                    reason,
                    forwarding: rs.forwarding,
                    connections: rs_stats.connections,
                    packets: rs_stats.packets,
                    bytes: rs_stats.bytes,
                    rates: rates.real_server(rs.id),
                    sorry_server: rs.sorry,
                    health: rs.health.cloned(),
                });
            }
            let service = view.service;
            services.push(ServiceStatus {
                protocol: service.protocol.name().to_owned(),
                address: service.address.to_string(),
                port: service.port,
                scheduler: service.scheduler.name().to_owned(),
                sched_flags: service.sched_flags.names(service.scheduler),
                persistence_timeout: service.persistence.map(|p| p.timeout),
                persistence_netmask: service.persistence.map(|p| p.netmask.to_string()),
                connections: stats.connections,
                packets: stats.packets,
                bytes: stats.bytes,
                rates: rates.service(view.index),
                recent_rates: rates.service_history(view.index),
                real_servers,
            });
        }
        Ok(Self {
            interface: interface.to_owned(),
            xdp_mode: xdp_mode.to_owned(),
            timeouts,
            counters,
            flow_table,
            services,
            sync: Box::default(),
            bgp: None,
            deny: Vec::new(),
            service_lookup,
        })
    }

    /// The value of a verdict counter by name.
    pub fn counter(&self, name: &str) -> Option<u64> {
        self.counters
            .iter()
            .find(|c| c.name == name)
            .map(|c| c.value)
    }

    /// A table in the spirit of `ipvsadm -Ln --stats`, plus the verdict counters.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "lvs director on {} ({} XDP)",
            self.interface, self.xdp_mode
        );
        let _ = writeln!(out, "Prot LocalAddress:Port Scheduler");
        let _ = writeln!(
            out,
            "  -> {:<28} {:<7} {:<6} {:>10} {:>9} {:<17} {:>10} {:>10}",
            "RemoteAddress:Port",
            "Forward",
            "Weight",
            "ActiveConn",
            "InActConn",
            "Neighbour",
            "Packets",
            "Bytes"
        );
        for service in &self.services {
            let mut scheduler = service.scheduler.clone();
            if !service.sched_flags.is_empty() {
                scheduler = format!("{scheduler} ({})", service.sched_flags.join(","));
            }
            if let Some(timeout) = service.persistence_timeout {
                scheduler = format!("{scheduler} persistent {timeout}");
            }
            let _ = writeln!(
                out,
                "{:<4} {:<28} {:<53} {:>10} {:>10}",
                service.protocol,
                host_port(&service.address, service.port),
                scheduler,
                service.packets,
                service.bytes
            );
            for rs in &service.real_servers {
                let neighbour = rs.mac.clone().unwrap_or_else(|| rs.neighbour.clone());
                let note = match (&rs.reason, rs.forwarding, health_note(rs)) {
                    (_, _, Some(health)) => format!("  ({health})"),
                    (Some(reason), _, None) => format!("  ({reason})"),
                    (None, false, None) => "  (not forwarding)".to_owned(),
                    (None, true, None) => String::new(),
                };
                let _ = writeln!(
                    out,
                    "  -> {:<28} {:<7} {:<6} {:>10} {:>9} {:<17} {:>10} {:>10}{note}",
                    host_port(&rs.address, rs.port),
                    "Route",
                    rs.weight,
                    rs.active_connections,
                    rs.inactive_connections,
                    neighbour,
                    rs.packets,
                    rs.bytes
                );
            }
        }
        let _ = writeln!(out, "Verdicts:");
        for counter in &self.counters {
            let _ = writeln!(out, "  {:<22} {:>12}", counter.name, counter.value);
        }
        // Said only when a family has left the fast path, which no ordinary set of services
        // makes it do.
        for lookup in self.service_lookup.iter().filter(|lookup| !lookup.table) {
            let _ = writeln!(
                out,
                "Note: {} frames find their services in the SERVICES hash map, not the service \
                 table (the services collide in it, or a table could not be made; see the \
                 daemon's log): about 20 ns more per frame",
                lookup.family
            );
        }
        self.sync.render(&mut out);
        if let Some(bgp) = &self.bgp {
            bgp.render(&mut out);
        }
        if !self.deny.is_empty() {
            let _ = writeln!(out, "Deny list:");
            deny::render(&self.deny, &mut out);
        }
        out
    }
}

impl SyncStatus {
    /// The sync daemons and their counters, after the verdicts; nothing when no sync daemon
    /// runs and none ever did anything.
    fn render(&self, out: &mut String) {
        let idle = self.daemons.is_empty()
            && self.messages_sent == 0
            && self.messages_received == 0
            && self.rejected.values().all(|&n| n == 0);
        if idle {
            return;
        }
        let _ = writeln!(out, "Connection sync:");
        for daemon in &self.daemons {
            let _ = writeln!(
                out,
                "  {} on {}, syncid {}, group {}:{}, ttl {}, maxlen {}",
                daemon.role,
                daemon.interface,
                daemon.sync_id.get(),
                daemon.group.get(),
                daemon.port.get(),
                daemon.ttl.get(),
                daemon.max_len.get()
            );
        }
        let lines = [
            ("messages_sent", self.messages_sent),
            ("entries_sent", self.entries_sent),
            ("entries_deferred", self.entries_deferred),
            ("send_errors", self.send_errors),
            ("full_resends", self.full_resends),
            ("messages_received", self.messages_received),
            ("entries_received", self.entries_received),
            ("entries_installed", self.entries_installed),
            ("receive_errors", self.receive_errors),
        ];
        for (name, value) in lines {
            let _ = writeln!(out, "  {name:<28} {value:>12}");
        }
        for (reason, value) in &self.rejected {
            let _ = writeln!(out, "  {:<28} {value:>12}", format!("rejected {reason}"));
        }
        for (kind, value) in &self.unknown {
            let _ = writeln!(out, "  {:<28} {value:>12}", format!("ignored {kind}"));
        }
        for peer in &self.peers {
            let _ = writeln!(
                out,
                "  peer {} heard {:.1} s ago",
                peer.address, peer.last_message_seconds_ago
            );
        }
    }
}

/// What health checking adds to a real server's line, when it has something to say.
fn health_note(rs: &RealServerStatus) -> Option<String> {
    let health = rs.health.as_ref()?;
    let last = health.last_result.as_ref().map(|r| r.detail.as_str());
    match (health.state, health.admission, last) {
        (HealthState::SorryActive | HealthState::SorryStandby, _, _) => {
            Some(health.state.name().to_owned())
        }
        (HealthState::Down, Admission::Weight(_), Some(last)) => {
            Some(format!("down, inhibited: {last}"))
        }
        (HealthState::Down, _, Some(last)) => Some(format!("down, removed: {last}")),
        (HealthState::Down, _, None) => Some("down until a check passes".into()),
        (HealthState::Up, Admission::Removed, _) => {
            Some("up, out while the sorry server serves".into())
        }
        (HealthState::Up, _, _) => None,
    }
}

/// `address:port`, with an IPv6 address in brackets, as ipvsadm writes it.
fn host_port(address: &str, port: u16) -> String {
    if address.contains(':') {
        format!("[{address}]:{port}")
    } else {
        format!("{address}:{port}")
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;
    use crate::{
        base::mac::MacAddr,
        logic::{config, dataplane::FakeDataPlane},
    };

    /// The status of a director on eth0 in native mode, with no rates and an empty flow table.
    fn collect(model: &Model, dataplane: &FakeDataPlane) -> Status {
        Status::collect(
            model,
            dataplane,
            &RateBook::default(),
            Timeouts::default(),
            "eth0",
            "native",
            FlowTable::default(),
        )
        .unwrap()
    }

    /// Each family, and whether it finds its services in the service table.
    fn on_table(status: &Status) -> Vec<(&str, bool)> {
        status
            .service_lookup
            .iter()
            .map(|lookup| (lookup.family.as_str(), lookup.table))
            .collect()
    }

    #[test]
    fn renders_services_real_servers_and_counters() {
        let config = config::parse(
            "[director]\ninterface = \"eth0\"\n[[virtual_server]]\naddress = \"10.0.0.100\"\n\
             port = 80\n[[virtual_server.real_server]]\naddress = \"10.0.0.11\"\n\
             [[virtual_server.real_server]]\naddress = \"10.0.0.12\"\nweight = 2\n",
            "t.toml",
        )
        .unwrap();
        let mut model = Model::new(&config.services).unwrap();
        let mut dataplane = FakeDataPlane::default();
        model.set_neighbour(
            Ipv4Addr::new(10, 0, 0, 11),
            Neighbour::Resolved {
                mac: MacAddr([2, 0, 0, 0, 0, 0x11]),
            },
        );
        model.set_neighbour(
            Ipv4Addr::new(10, 0, 0, 12),
            Neighbour::Unresolved {
                reason: "waiting for an ARP reply".into(),
            },
        );
        model.sync(&mut dataplane).unwrap();
        let status = collect(&model, &dataplane);
        let text = status.render();
        let expected = "\
lvs director on eth0 (native XDP)
Prot LocalAddress:Port Scheduler
  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn Neighbour            Packets      Bytes
TCP  10.0.0.100:80                wlc                                                            0          0
  -> 10.0.0.11:80                 Route   1               0         0 02:00:00:00:00:11          0          0
  -> 10.0.0.12:80                 Route   2               0         0 unresolved                 0          0  (waiting for an ARP reply)
";
        assert!(text.starts_with(expected), "got:\n{text}");
        assert!(
            text.contains("  tx_forwarded                      0\n"),
            "got:\n{text}"
        );
        assert_eq!(status.counter("tx_forwarded"), Some(0));
        assert_eq!(status.counter("nonexistent"), None);
        assert!(!text.contains("Connection sync"), "no sync, no section");
        assert_eq!(on_table(&status), [("IPv4", true), ("IPv6", true)]);
        assert!(!text.contains("hash map"), "the fast path goes unsaid");
    }

    /// Services whose keys share one home slot, one more than the probes reach, leave the
    /// family on its hash map, and the status says so.
    #[test]
    fn says_when_a_family_finds_its_services_in_the_hash_map() {
        use lvs_common::{
            IPPROTO_TCP,
            service_table::{SERVICE_TABLE_PROBES, home_slot},
        };
        let vip = [10, 0, 0, 100];
        let home = |port: u16| home_slot(&vip, port.to_be_bytes(), IPPROTO_TCP);
        let services: String = (1000..=u16::MAX)
            .filter(|&port| home(port) == home(1000))
            .take(SERVICE_TABLE_PROBES as usize + 1)
            .map(|port| {
                format!(
                    "[[virtual_server]]\naddress = \"10.0.0.100\"\nport = {port}\n\
                     [[virtual_server.real_server]]\naddress = \"10.0.0.11\"\n"
                )
            })
            .collect();
        let config = config::parse(
            &format!("[director]\ninterface = \"eth0\"\n{services}"),
            "t.toml",
        )
        .unwrap();
        let mut model = Model::new(&config.services).unwrap();
        let mut dataplane = FakeDataPlane::default();
        model.sync(&mut dataplane).unwrap();
        let status = collect(&model, &dataplane);
        assert_eq!(on_table(&status), [("IPv4", false), ("IPv6", true)]);
        let text = status.render();
        assert!(
            text.contains(
                "Note: IPv4 frames find their services in the SERVICES hash map, not the \
                 service table"
            ),
            "got:\n{text}"
        );
        assert!(!text.contains("IPv6 frames"), "got:\n{text}");
    }

    #[test]
    fn renders_the_sync_daemons_and_their_counters() {
        use crate::logic::sync::{SyncDaemon, SyncRole};
        let sync = SyncStatus {
            daemons: vec![SyncDaemon::with_defaults(SyncRole::Backup, "eth1")],
            messages_received: 12,
            entries_installed: 30,
            rejected: BTreeMap::from([("forged".to_owned(), 2)]),
            unknown: BTreeMap::from([("unknown_service".to_owned(), 1)]),
            peers: vec![SyncPeer {
                address: "10.0.0.3".into(),
                last_message_seconds_ago: 0.25,
            }],
            ..SyncStatus::default()
        };
        let mut text = String::new();
        sync.render(&mut text);
        for line in [
            "Connection sync:\n",
            "  backup on eth1, syncid 0, group 224.0.0.81:8848, ttl 1, maxlen 1472\n",
            "  messages_received                      12\n",
            "  entries_installed                      30\n",
            "  rejected forged                         2\n",
            "  ignored unknown_service                 1\n",
            "  peer 10.0.0.3 heard 0.2 s ago\n",
        ] {
            assert!(text.contains(line), "{line:?} in:\n{text}");
        }
        // The document's JSON names, which tests and tools read (`status.sync.*`).
        let json = serde_json::to_value(&sync).unwrap();
        assert_eq!(json["rejected"]["forged"], 2);
        assert_eq!(json["entries_installed"], 30);
        assert_eq!(json["daemons"][0]["role"], "backup");
        assert_eq!(json["peers"][0]["last_message_seconds_ago"], 0.25);
    }
}
