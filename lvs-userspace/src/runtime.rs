//! The bridge between `lvsadm`'s rule-table API (`api`, `ipvsadm::rules`) and the director's
//! own description of its services (`config::Service`): the daemon turns its wanted services
//! into a `RuleSet`, lets the `RuleSet` apply an `apply` request (with ipvsadm's errors), and
//! turns the result back into services for `Model::apply`. Pure.

use std::net::{Ipv4Addr, SocketAddrV4};

use crate::{
    api::{
        self, ForwardMethod, RealServerConfig, ServiceConfig, ServiceKey,
        snapshot::{Connection, ConnectionState, RealServerEntry, ServiceEntry, Snapshot, Stats},
    },
    config::{self, Protocol, RealServer, Service, Timeouts},
    conntrack,
    ipvsadm::rules::{RuleSet, ServiceRules},
    rates::Rates,
    status::{RealServerStatus, Status},
};

/// Why a rule table cannot become the director's services.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct RuntimeError(pub String);

/// The wanted services and timeouts as ipvsadm's rule table.
pub fn rules(services: &[Service], timeouts: Timeouts) -> RuleSet {
    RuleSet {
        services: services.iter().map(service_rules).collect(),
        timeouts,
    }
}

fn service_rules(service: &Service) -> ServiceRules {
    ServiceRules {
        service: service_key(service),
        config: ServiceConfig {
            scheduler: service.scheduler,
            sched_flags: service.sched_flags,
            persistence: service.persistence,
        },
        real_servers: service
            .real_servers
            .iter()
            .map(|rs| RealServerConfig {
                address: rs.address,
                forward: ForwardMethod::Route,
                weight: rs.weight,
                u_threshold: rs.upper_threshold,
                l_threshold: rs.lower_threshold,
            })
            .collect(),
    }
}

fn service_key(service: &Service) -> ServiceKey {
    ServiceKey {
        protocol: service.protocol,
        address: service.address,
        port: service.port,
    }
}

/// The services a rule table describes. Services and real servers that were already wanted
/// keep what the rule table does not describe (health checks, for one) from `previous`.
pub fn services(rules: &RuleSet, previous: &[Service]) -> Result<Vec<Service>, RuntimeError> {
    if rules.services.len() > lvs_common::MAX_SERVICES as usize {
        return Err(RuntimeError(format!(
            "too many services: at most {}",
            lvs_common::MAX_SERVICES
        )));
    }
    rules
        .services
        .iter()
        .map(|wanted| {
            let known = previous.iter().find(|s| service_key(s) == wanted.service);
            service(wanted, known)
        })
        .collect()
}

fn service(rules: &ServiceRules, known: Option<&Service>) -> Result<Service, RuntimeError> {
    let key = rules.service;
    unicast(key.address)?;
    if key.port == 0 {
        return Err(RuntimeError(format!(
            "{key}: port 0 services are not supported"
        )));
    }
    let ServiceConfig {
        scheduler,
        sched_flags,
        ..
    } = rules.config;
    sched_flags
        .check(scheduler)
        .map_err(|e| RuntimeError(format!("{key}: {e}")))?;
    let persistence = match rules.config.persistence {
        Some(p) if p.timeout == 0 || !config::is_netmask(p.netmask) => {
            return Err(RuntimeError(format!(
                "{key}: persistence needs a timeout and a contiguous netmask"
            )));
        }
        other => other,
    };
    let real_servers = rules
        .real_servers
        .iter()
        .map(|rs| real_server(rs, known))
        .collect::<Result<Vec<_>, _>>()?;
    let mut service = known.cloned().unwrap_or_else(|| Service {
        address: key.address,
        port: key.port,
        protocol: key.protocol,
        scheduler,
        sched_flags,
        persistence,
        real_servers: Vec::new(),
        health: Default::default(),
    });
    service.scheduler = scheduler;
    service.sched_flags = sched_flags;
    service.persistence = persistence;
    // Health settings of real servers that left the service go with them.
    service
        .health
        .real_servers
        .retain(|address, _| real_servers.iter().any(|rs| rs.address == *address));
    service.real_servers = real_servers;
    Ok(service)
}

fn real_server(rs: &RealServerConfig, known: Option<&Service>) -> Result<RealServer, RuntimeError> {
    unicast(rs.address)?;
    if rs.weight > 65535 {
        return Err(RuntimeError(format!(
            "weight {} is out of range 0..=65535",
            rs.weight
        )));
    }
    if rs.u_threshold != 0 && rs.l_threshold > rs.u_threshold {
        return Err(RuntimeError(format!(
            "lower threshold {} is above upper threshold {}",
            rs.l_threshold, rs.u_threshold
        )));
    }
    let mut server = known
        .and_then(|s| s.real_servers.iter().find(|k| k.address == rs.address))
        .cloned()
        .unwrap_or(RealServer {
            address: rs.address,
            weight: rs.weight,
            upper_threshold: rs.u_threshold,
            lower_threshold: rs.l_threshold,
        });
    server.weight = rs.weight;
    server.upper_threshold = rs.u_threshold;
    server.lower_threshold = rs.l_threshold;
    Ok(server)
}

fn unicast(address: Ipv4Addr) -> Result<(), RuntimeError> {
    if address.is_unspecified() || address.is_broadcast() || address.is_multicast() {
        return Err(RuntimeError(format!(
            "{address} cannot be a service or server address"
        )));
    }
    Ok(())
}

/// `lvsadm -L`'s snapshot from the director's status and connection list.
///
/// Real servers are listed as ipvsadm lists IPVS under keepalived: what is in effect, not what
/// is configured. A server that health checking removed is left out, an inhibited one shows
/// weight 0, and a sorry server appears only while it takes the traffic.
pub fn snapshot(
    status: &Status,
    services: &[Service],
    connections: &[conntrack::Connection],
    connection_table_size: u32,
) -> Snapshot {
    let rules = rules(services, status.timeouts);
    let entries = rules
        .services
        .iter()
        .map(|service_rules| service_entry(service_rules, status))
        .collect();
    Snapshot {
        connection_table_size,
        timeouts: rules.timeouts,
        services: entries,
        connections: connections.iter().filter_map(connection).collect(),
    }
}

fn service_entry(service_rules: &ServiceRules, status: &Status) -> ServiceEntry {
    let key = service_rules.service;
    let shown = status.services.iter().find(|s| {
        s.address == key.address.to_string()
            && s.port == key.port
            && s.protocol == key.protocol.name()
    });
    let shown_servers = shown.map_or(&[][..], |s| &s.real_servers[..]);
    let configured = service_rules.real_servers.iter().filter_map(|server| {
        let rs = shown_servers
            .iter()
            .find(|rs| !rs.sorry_server && rs.address == server.address.to_string());
        match rs {
            Some(rs) => Some(real_server_entry(
                RealServerConfig {
                    weight: rs.weight_in_effect()?,
                    ..*server
                },
                key.port,
                Some(rs),
            )),
            // Not in the director's state yet: shown as configured, with nothing counted.
            None => Some(real_server_entry(*server, key.port, None)),
        }
    });
    let sorry = shown_servers
        .iter()
        .filter(|rs| rs.sorry_server)
        .filter_map(|rs| {
            let server = RealServerConfig {
                address: rs.address.parse().ok()?,
                forward: ForwardMethod::Route,
                weight: rs.weight_in_effect()?,
                u_threshold: rs.upper_threshold,
                l_threshold: rs.lower_threshold,
            };
            Some(real_server_entry(server, key.port, Some(rs)))
        });
    ServiceEntry {
        service: key,
        config: service_rules.config,
        stats: shown.map_or_else(Stats::default, |s| stats(s.connections, s.packets, s.bytes)),
        rates: shown.map_or_else(api::snapshot::Rates::default, |s| rates(s.rates)),
        real_servers: configured.chain(sorry).collect(),
    }
}

fn real_server_entry(
    server: RealServerConfig,
    port: u16,
    rs: Option<&RealServerStatus>,
) -> RealServerEntry {
    RealServerEntry {
        server,
        port,
        active_conns: rs.map_or(0, |rs| rs.active_connections),
        inactive_conns: rs.map_or(0, |rs| rs.inactive_connections),
        persistent_conns: rs.map_or(0, |rs| rs.persistent_connections),
        stats: rs.map_or_else(Stats::default, |rs| {
            stats(rs.connections, rs.packets, rs.bytes)
        }),
        rates: rs.map_or_else(api::snapshot::Rates::default, |rs| rates(rs.rates)),
    }
}

/// In direct routing replies never pass the director: outbound counters stay zero.
fn stats(connections: u64, packets: u64, bytes: u64) -> Stats {
    Stats {
        conns: connections,
        inpkts: packets,
        outpkts: 0,
        inbytes: bytes,
        outbytes: 0,
    }
}

fn rates(rates: Rates) -> api::snapshot::Rates {
    api::snapshot::Rates {
        cps: rates.connections.round() as u64,
        inpps: rates.packets.round() as u64,
        outpps: 0,
        inbps: rates.bytes.round() as u64,
        outbps: 0,
    }
}

fn connection(c: &conntrack::Connection) -> Option<Connection> {
    let state = match c.state.as_str() {
        "ESTABLISHED" => ConnectionState::Established,
        "SYN_RECV" => ConnectionState::SynRecv,
        "FIN_WAIT" => ConnectionState::FinWait,
        "TIME_WAIT" => ConnectionState::TimeWait,
        "CLOSE" => ConnectionState::Close,
        "UDP" => ConnectionState::Udp,
        _ => ConnectionState::None,
    };
    Some(Connection {
        protocol: if c.protocol == "TCP" {
            Protocol::Tcp
        } else {
            Protocol::Udp
        },
        expires: u32::try_from(c.expires_s).unwrap_or(u32::MAX),
        state,
        source: c.source.parse::<SocketAddrV4>().ok()?,
        virtual_service: c.virtual_address.parse().ok()?,
        destination: c.destination.parse().ok()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::Change;
    use crate::schedule::{SchedFlags, Scheduler};

    const CONFIG: &str = r#"
[director]
interface = "eth0"

[[virtual_server]]
address = "10.0.0.100"
port = 80
lb_algo = "mh"
sched_flags = ["mh-port"]
persistence_timeout = 60

[[virtual_server.real_server]]
address = "10.0.0.11"
weight = 2
uthreshold = 100
"#;

    fn wanted() -> Vec<Service> {
        config::parse(CONFIG, "t.toml").unwrap().services
    }

    #[test]
    fn services_round_trip_through_the_rule_table() {
        let services = wanted();
        let table = rules(&services, Timeouts::default());
        assert_eq!(table.services[0].config.scheduler, Scheduler::MaglevHashing);
        assert!(table.services[0].config.sched_flags.port);
        assert_eq!(table.services[0].real_servers[0].u_threshold, 100);
        assert_eq!(self::services(&table, &services).unwrap(), services);
    }

    #[test]
    fn changes_become_services() {
        let services = wanted();
        let key = table_key();
        let table = rules(&services, Timeouts::default())
            .apply_all(&[
                Change::AddServer {
                    service: key,
                    server: RealServerConfig {
                        address: Ipv4Addr::new(10, 0, 0, 12),
                        forward: ForwardMethod::Route,
                        weight: 0,
                        u_threshold: 0,
                        l_threshold: 0,
                    },
                },
                Change::EditService {
                    service: key,
                    config: ServiceConfig {
                        scheduler: Scheduler::RoundRobin,
                        sched_flags: SchedFlags::default(),
                        persistence: None,
                    },
                },
            ])
            .unwrap();
        let next = self::services(&table, &services).unwrap();
        assert_eq!(next[0].scheduler, Scheduler::RoundRobin);
        assert_eq!(next[0].persistence, None);
        assert_eq!(next[0].real_servers.len(), 2);
        assert_eq!(next[0].real_servers[1].weight, 0);
    }

    #[test]
    fn bad_rules_are_refused_with_a_reason() {
        let services = wanted();
        let mut table = rules(&services, Timeouts::default());
        // The service's mh-port flag, sent over the socket for a scheduler it means nothing to.
        table.services[0].config.scheduler = Scheduler::RoundRobin;
        assert_eq!(
            self::services(&table, &services).unwrap_err().0,
            "TCP 10.0.0.100:80: scheduler flag \"flag-2\" does not apply to scheduler rr"
        );
        let mut table = rules(&services, Timeouts::default());
        table.services[0].real_servers[0].address = Ipv4Addr::BROADCAST;
        assert!(
            self::services(&table, &services)
                .unwrap_err()
                .0
                .contains("cannot be a service or server address")
        );
    }

    #[test]
    fn the_listing_shows_what_health_checking_left_in_effect() {
        use crate::{
            dataplane::FakeDataPlane,
            health::{Admission, HealthState, HealthStatus},
            model::Model,
            rates::RateBook,
        };
        let text = CONFIG.replacen(
            "persistence_timeout = 60\n",
            "persistence_timeout = 60\nsorry_server = { address = \"10.0.0.9\" }\n",
            1,
        ) + "[[virtual_server.real_server]]\naddress = \"10.0.0.12\"\nweight = 3\n\
             [[virtual_server.real_server]]\naddress = \"10.0.0.13\"\nweight = 4\n";
        let services = config::parse(&text, "t.toml").unwrap().services;
        let mut model = Model::new(&services).unwrap();
        let service = services[0].key();
        let health = |state, admission| HealthStatus {
            state,
            admission,
            checker: None,
            last_result: None,
        };
        let listed = |model: &Model| {
            let status = Status::collect(
                model,
                &FakeDataPlane::default(),
                &RateBook::default(),
                Timeouts::default(),
                "eth0",
                "native",
            )
            .unwrap();
            snapshot(&status, &services, &[], 4096).services[0]
                .real_servers
                .iter()
                .map(|rs| (rs.server.address.to_string(), rs.server.weight))
                .collect::<Vec<_>>()
        };
        let listing = |entries: &[(&str, u32)]| {
            entries
                .iter()
                .map(|(address, weight)| ((*address).to_owned(), *weight))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            listed(&model),
            listing(&[("10.0.0.11", 2), ("10.0.0.12", 3), ("10.0.0.13", 4)]),
            "unchecked servers are listed as configured; the sorry server waits unlisted"
        );

        let address = |last| Ipv4Addr::new(10, 0, 0, last);
        model.set_health(
            service,
            address(11),
            health(HealthState::Down, Admission::Removed),
        );
        model.set_health(
            service,
            address(12),
            health(HealthState::Down, Admission::Weight(0)),
        );
        model.set_health(
            service,
            address(13),
            health(HealthState::Up, Admission::Weight(4)),
        );
        model.set_health(
            service,
            address(9),
            health(HealthState::SorryActive, Admission::Weight(1)),
        );
        assert_eq!(
            listed(&model),
            listing(&[("10.0.0.12", 0), ("10.0.0.13", 4), ("10.0.0.9", 1)]),
            "removed: absent; inhibited: weight 0; the active sorry server is listed"
        );

        model.set_health(
            service,
            address(9),
            health(HealthState::SorryStandby, Admission::Removed),
        );
        assert_eq!(
            listed(&model),
            listing(&[("10.0.0.12", 0), ("10.0.0.13", 4)])
        );
    }

    fn table_key() -> ServiceKey {
        ServiceKey {
            protocol: Protocol::Tcp,
            address: Ipv4Addr::new(10, 0, 0, 100),
            port: 80,
        }
    }
}
