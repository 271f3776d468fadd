//! What a backup does with a decoded entry: find its own service and real server for it.
//!
//! Directors number their services and real servers independently, so an entry names them
//! by address and port, and the backup looks them up in its model. An entry that names a
//! service or a real server the backup does not have (the two directors' configs differ, or
//! a reload is under way on one of them) is ignored and counted: the backup schedules such a
//! connection itself if it ever sees it, and never forwards to a server it was not told to
//! use.

use std::{
    collections::HashMap,
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
};

use lvs_common::{
    address::Address as _,
    flow::{FLOW_PERSISTENT, FlowEntry, PersistEntry, Settings, seen_bits_of_state},
    keys::{FlowMapKey, ServiceMapKey, TemplateMapKey},
};

use super::wire::{Entry, ServiceAddress};
use crate::logic::{config::Persistence, model::Model};

/// Where the backup's own data plane has the entry's service and real server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Placement {
    /// The service's index in the backup's data plane.
    pub service_index: u32,
    /// The real server's id in the backup's data plane.
    pub real_server_id: u32,
    /// That real server's generation, which the backup's flows carry.
    pub generation: u32,
    /// The backup's persistence for the service, if it is persistent.
    pub persistence: Option<Persistence>,
}

/// Why an entry has no place on this director; counted, never forwarded.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Unknown {
    #[error("unknown service {0}")]
    Service(ServiceAddress),
    #[error("unknown real server {real_server} of service {service}")]
    RealServer {
        service: ServiceAddress,
        real_server: SocketAddr,
    },
    /// A persistence template for a service that is not persistent here: the backup would
    /// only expire it.
    #[error("a persistence template for {0}, which is not persistent here")]
    NotPersistent(ServiceAddress),
}

impl Unknown {
    /// The counter's name.
    pub const fn name(&self) -> &'static str {
        match self {
            Unknown::Service(_) => "unknown_service",
            Unknown::RealServer { .. } => "unknown_real_server",
            Unknown::NotPersistent(_) => "not_persistent",
        }
    }

    /// Every counter's name, so that each is shown from the start.
    pub const NAMES: [&'static str; 3] =
        ["unknown_service", "unknown_real_server", "not_persistent"];
}

/// Finds the backup's service and real server for `entry`. Under direct routing a real
/// server listens on the service port, so one on another port is not the same server.
pub fn place(entry: &Entry, model: &Model) -> Result<Placement, Unknown> {
    Places::of(model).place(entry)
}

/// The backup's services and real servers by address, built once for a message so that
/// placing each of its entries is a lookup, not a walk of the model.
#[derive(Clone, Debug, Default)]
pub struct Places {
    services: HashMap<ServiceAddress, PlacedService>,
}

#[derive(Clone, Debug)]
struct PlacedService {
    index: u32,
    persistence: Option<Persistence>,
    /// Id and generation by address.
    real_servers: HashMap<IpAddr, (u32, u32)>,
}

impl Places {
    pub fn of(model: &Model) -> Self {
        let generations = model.generations();
        let mut services = HashMap::new();
        for view in model.services() {
            let address = ServiceAddress {
                address: view.service.address,
                port: view.service.port,
                protocol: view.service.protocol,
            };
            let mut real_servers = HashMap::new();
            for rs in &view.real_servers {
                if let Some(&generation) = generations.get(&rs.id) {
                    real_servers
                        .entry(rs.address)
                        .or_insert((rs.id, generation));
                }
            }
            services.entry(address).or_insert(PlacedService {
                index: view.index,
                persistence: view.service.persistence,
                real_servers,
            });
        }
        Places { services }
    }

    /// [`place`], against the model these places were built from.
    pub fn place(&self, entry: &Entry) -> Result<Placement, Unknown> {
        let wanted = entry.service();
        let service = self.services.get(&wanted).ok_or(Unknown::Service(wanted))?;
        let real_server = entry.real_server();
        let unknown = Unknown::RealServer {
            service: wanted,
            real_server,
        };
        if real_server.port() != wanted.port {
            return Err(unknown);
        }
        let &(real_server_id, generation) =
            service.real_servers.get(&real_server.ip()).ok_or(unknown)?;
        Ok(Placement {
            service_index: service.index,
            real_server_id,
            generation,
            persistence: service.persistence,
        })
    }
}

/// What the backup writes for an entry: a connection or a template, in its family's map.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Install {
    Flow(FlowMapKey, FlowEntry),
    Template(TemplateMapKey, PersistEntry),
}

/// The flow-table entry for a placed entry, as the backup's data plane would have made it:
/// its own real-server id and generation, and a last packet so long ago that the entry
/// expires when the master's would (`now_ns` less the part of the backup's timeout that the
/// master has used up). A remaining time longer than the backup's own timeout (the directors'
/// timeouts differ) is cut to it, so that nothing outlives what this director allows.
pub fn install(
    entry: &Entry,
    placement: &Placement,
    settings: &Settings,
    now_ns: u64,
) -> Result<Install, Unknown> {
    let last_seen = |timeout_ns: u64, remaining_ms: u32| {
        let remaining_ns = (u64::from(remaining_ms) * 1_000_000).min(timeout_ns);
        now_ns.saturating_sub(timeout_ns - remaining_ns)
    };
    match entry {
        Entry::Connection(_, connection) => {
            let state = connection.state as u8;
            let service = connection.service;
            // An entry mixing families (which the decoder refuses) is no connection this
            // director can have.
            let key = FlowMapKey::new(
                connection.client,
                SocketAddr::new(service.address, service.port),
                service.protocol.number(),
            )
            .ok_or(Unknown::Service(service))?;
            let flow = FlowEntry {
                last_seen_ns: last_seen(settings.timeout_ns(state), connection.remaining_ms),
                real_server_id: placement.real_server_id,
                generation: placement.generation,
                state,
                flags: seen_bits_of_state(state)
                    | if placement.persistence.is_some() {
                        FLOW_PERSISTENT
                    } else {
                        0
                    },
                _pad: [0; 6],
            };
            Ok(Install::Flow(key, flow))
        }
        Entry::Template(template) => {
            let service = template.service;
            let persistence = placement
                .persistence
                .ok_or(Unknown::NotPersistent(service))?;
            // The backup's granularity decides which clients share the template here.
            let key = TemplateMapKey::new(
                client_network(template.client_network, &persistence),
                ServiceMapKey::new(service.address, service.port, service.protocol.number()),
            )
            .ok_or(Unknown::Service(service))?;
            let timeout_ns = u64::from(persistence.timeout) * 1_000_000_000;
            let entry = PersistEntry {
                last_seen_ns: last_seen(timeout_ns, template.remaining_ms),
                real_server_id: placement.real_server_id,
                generation: placement.generation,
            };
            Ok(Install::Template(key, entry))
        }
    }
}

/// The template's client network on this director: `client` masked as this director's data
/// plane masks a client's address, with the mask the model writes as the service's
/// `persist_mask` (`Granularity::mask_bytes`) through
/// [`Address::masked`](lvs_common::address::Address::masked), so that the data plane finds
/// the template for the client's next connection.
fn client_network(client: IpAddr, persistence: &Persistence) -> IpAddr {
    let mask = persistence.netmask.mask_bytes();
    match client {
        IpAddr::V4(v4) => Ipv4Addr::from(v4.octets().masked(&mask)).into(),
        IpAddr::V6(v6) => Ipv6Addr::from(v6.octets().masked(&mask)).into(),
    }
}

#[cfg(test)]
mod tests {
    use lvs_common::flow::{
        FLOW_SEEN_SHIFT, FlowKey, FlowKey6, FlowState, PersistKey, PersistKey6, packets_seen,
    };

    use super::*;
    use crate::logic::{
        config::{self, Protocol},
        sync::wire::{Change, Connection, Template},
    };

    const CONFIG: &str = r#"
[director]
interface = "eth0"

[[virtual_server]]
address = "192.0.2.10"
port = 80
protocol = "TCP"
real_server = [{ address = "192.0.2.21", port = 80 }, { address = "192.0.2.22", port = 80 }]

[[virtual_server]]
address = "192.0.2.10"
port = 53
protocol = "UDP"
real_server = [{ address = "192.0.2.22", port = 53 }]

[[virtual_server]]
address = "192.0.2.10"
port = 443
protocol = "TCP"
persistence_timeout = 300
persistence_granularity = "255.255.255.0"
real_server = [{ address = "192.0.2.23", port = 443 }]
"#;

    fn model() -> Model {
        let config = config::parse(CONFIG, "lvs.toml").unwrap();
        Model::new(&config.services).unwrap()
    }

    fn service(port: u16, protocol: Protocol) -> ServiceAddress {
        ServiceAddress {
            address: Ipv4Addr::new(192, 0, 2, 10).into(),
            port,
            protocol,
        }
    }

    fn connection(service: ServiceAddress, real_server: &str) -> Entry {
        Entry::Connection(
            Change::New,
            Connection {
                service,
                client: "198.51.100.7:40000".parse().unwrap(),
                real_server: real_server.parse().unwrap(),
                state: if service.protocol == Protocol::Tcp {
                    FlowState::Established
                } else {
                    FlowState::Udp
                },
                remaining_ms: 900_000,
            },
        )
    }

    /// The ids the model gave, by service port and real-server address.
    fn ids(model: &Model, port: u16, address: &str) -> Placement {
        let view = model.services().find(|v| v.service.port == port).unwrap();
        let server = view
            .real_servers
            .iter()
            .find(|rs| rs.address.to_string() == address)
            .unwrap();
        Placement {
            service_index: view.index,
            real_server_id: server.id,
            generation: model.generations()[&server.id],
            persistence: view.service.persistence,
        }
    }

    const S: u64 = 1_000_000_000;

    fn settings() -> Settings {
        Settings::with_timeouts(900, 120, 300, 0)
    }

    fn installed(entry: &Entry, model: &Model, now_ns: u64) -> Result<Install, Unknown> {
        let placement = Placement {
            generation: 7,
            ..place(entry, model)?
        };
        install(entry, &placement, &settings(), now_ns)
    }

    #[test]
    fn a_connection_becomes_the_backups_flow_expiring_when_the_masters_would() {
        let model = model();
        let web = service(80, Protocol::Tcp);
        let now = 10_000 * S;
        let placement = ids(&model, 80, "192.0.2.22");
        let Install::Flow(key, flow) =
            installed(&connection(web, "192.0.2.22:80"), &model, now).unwrap()
        else {
            panic!("a connection is a flow");
        };
        assert_eq!(
            key,
            FlowMapKey::V4(FlowKey {
                src_addr: [198, 51, 100, 7],
                dst_addr: [192, 0, 2, 10],
                src_port: 40000u16.to_be_bytes(),
                dst_port: 80u16.to_be_bytes(),
                protocol: lvs_common::IPPROTO_TCP,
                _pad: [0; 3],
            })
        );
        assert_eq!(
            flow,
            FlowEntry {
                // 900 s of ESTABLISHED, 900 s left on the master: as if seen just now.
                last_seen_ns: now,
                real_server_id: placement.real_server_id,
                generation: 7,
                state: FlowState::Established as u8,
                // Established: it sent its SYN and what moved it on.
                flags: 1 << FLOW_SEEN_SHIFT,
                _pad: [0; 6],
            }
        );

        // 100 s left of UDP's 300: seen 200 s ago, so that the sweep expires it in 100.
        let dns = Entry::Connection(
            Change::StateChange,
            Connection {
                remaining_ms: 100_000,
                ..match connection(service(53, Protocol::Udp), "192.0.2.22:53") {
                    Entry::Connection(_, c) => c,
                    Entry::Template(_) => unreachable!(),
                }
            },
        );
        let Install::Flow(_, flow) = installed(&dns, &model, now).unwrap() else {
            panic!("a connection is a flow");
        };
        assert_eq!(flow.last_seen_ns, now - 200 * S);
        assert_eq!(flow.state, FlowState::Udp as u8);
        assert_eq!(flow.flags, 0, "a datagram's count is not known");
    }

    #[test]
    fn a_synced_connection_counts_the_packets_its_state_implies() {
        let model = model();
        let now = 10_000 * S;
        let seen = |state: FlowState| {
            let mut entry = connection(service(80, Protocol::Tcp), "192.0.2.21:80");
            if let Entry::Connection(_, connection) = &mut entry {
                connection.state = state;
            }
            match installed(&entry, &model, now).unwrap() {
                Install::Flow(_, flow) => packets_seen(flow.flags),
                Install::Template(..) => panic!("a connection is a flow"),
            }
        };
        // Under a flood, a synced connection that has idled since gives way after the
        // flood's SYNs, which count none.
        assert_eq!(seen(FlowState::Established), 1);
        assert_eq!(seen(FlowState::FinWait), 1);
        assert_eq!(seen(FlowState::TimeWait), 1);
        assert_eq!(seen(FlowState::SynRecv), 0, "a SYN, maybe a flood's");
        assert_eq!(seen(FlowState::Close), 0);
    }

    #[test]
    fn a_remaining_time_longer_than_the_backups_timeout_is_cut_to_it() {
        let model = model();
        let mut entry = connection(service(80, Protocol::Tcp), "192.0.2.21:80");
        if let Entry::Connection(_, connection) = &mut entry {
            // The master runs with `timeout_tcp = 3600`.
            connection.remaining_ms = 3_000_000;
        }
        let Install::Flow(_, flow) = installed(&entry, &model, 5000 * S).unwrap() else {
            panic!("a connection is a flow");
        };
        assert_eq!(flow.last_seen_ns, 5000 * S, "900 s left here, not 3000");
        // A backup whose clock is younger than the time used up does not wrap around.
        if let Entry::Connection(_, connection) = &mut entry {
            connection.remaining_ms = 1;
        }
        let Install::Flow(_, flow) = installed(&entry, &model, 5 * S).unwrap() else {
            panic!("a connection is a flow");
        };
        assert_eq!(flow.last_seen_ns, 0);
    }

    #[test]
    fn a_persistent_services_flows_and_templates_carry_its_persistence() {
        let model = model();
        let tls = service(443, Protocol::Tcp);
        let now = 10_000 * S;
        let Install::Flow(_, flow) =
            installed(&connection(tls, "192.0.2.23:443"), &model, now).unwrap()
        else {
            panic!("a connection is a flow");
        };
        assert_eq!(
            flow.flags,
            FLOW_PERSISTENT | 1 << FLOW_SEEN_SHIFT,
            "its packets keep the template alive (and, established, it sent two)"
        );

        // The master's granularity was /32; the backup's /24 decides here.
        let template = Entry::Template(Template {
            service: tls,
            client_network: Ipv4Addr::new(198, 51, 100, 77).into(),
            real_server: "192.0.2.23:443".parse().unwrap(),
            remaining_ms: 100_000,
        });
        let placement = ids(&model, 443, "192.0.2.23");
        assert_eq!(
            installed(&template, &model, now),
            Ok(Install::Template(
                TemplateMapKey::V4(PersistKey {
                    client: [198, 51, 100, 0],
                    vip: [192, 0, 2, 10],
                    vport: 443u16.to_be_bytes(),
                    protocol: lvs_common::IPPROTO_TCP,
                    _pad: 0,
                }),
                PersistEntry {
                    last_seen_ns: now - 200 * S,
                    real_server_id: placement.real_server_id,
                    generation: 7,
                }
            ))
        );

        // A template for a service that is not persistent here would only be expired.
        let web = Entry::Template(Template {
            service: service(80, Protocol::Tcp),
            real_server: "192.0.2.21:80".parse().unwrap(),
            ..match template {
                Entry::Template(t) => t,
                Entry::Connection(..) => unreachable!(),
            }
        });
        let refused = installed(&web, &model, now).unwrap_err();
        assert_eq!(refused.name(), "not_persistent");
        assert!(Unknown::NAMES.contains(&refused.name()));
        assert_eq!(
            refused.to_string(),
            "a persistence template for TCP 192.0.2.10:80, which is not persistent here"
        );
    }

    #[test]
    fn an_entry_finds_its_service_and_real_server_by_address() {
        let model = model();
        let web = service(80, Protocol::Tcp);
        let dns = service(53, Protocol::Udp);
        assert_eq!(
            place(&connection(web, "192.0.2.22:80"), &model),
            Ok(ids(&model, 80, "192.0.2.22"))
        );
        assert_eq!(
            place(&connection(dns, "192.0.2.22:53"), &model),
            Ok(ids(&model, 53, "192.0.2.22"))
        );
        assert_ne!(ids(&model, 80, "192.0.2.22"), ids(&model, 53, "192.0.2.22"));
        let template = Entry::Template(Template {
            service: web,
            client_network: Ipv4Addr::new(198, 51, 100, 0).into(),
            real_server: "192.0.2.21:80".parse().unwrap(),
            remaining_ms: 300_000,
        });
        assert_eq!(place(&template, &model), Ok(ids(&model, 80, "192.0.2.21")));
    }

    #[test]
    fn what_the_backup_does_not_have_is_unknown() {
        let model = model();
        let web = service(80, Protocol::Tcp);
        let cases = [
            // Another port, protocol or VIP is another service.
            (
                connection(service(8080, Protocol::Tcp), "192.0.2.21:8080"),
                "unknown service TCP 192.0.2.10:8080",
                "unknown_service",
            ),
            (
                connection(service(80, Protocol::Udp), "192.0.2.21:80"),
                "unknown service UDP 192.0.2.10:80",
                "unknown_service",
            ),
            (
                connection(
                    ServiceAddress {
                        address: Ipv4Addr::new(192, 0, 2, 11).into(),
                        ..web
                    },
                    "192.0.2.21:80",
                ),
                "unknown service TCP 192.0.2.11:80",
                "unknown_service",
            ),
            // A server of another service, or on another port, is not this service's.
            (
                connection(service(53, Protocol::Udp), "192.0.2.21:53"),
                "unknown real server 192.0.2.21:53 of service UDP 192.0.2.10:53",
                "unknown_real_server",
            ),
            (
                connection(web, "192.0.2.21:8080"),
                "unknown real server 192.0.2.21:8080 of service TCP 192.0.2.10:80",
                "unknown_real_server",
            ),
            (
                connection(web, "192.0.2.99:80"),
                "unknown real server 192.0.2.99:80 of service TCP 192.0.2.10:80",
                "unknown_real_server",
            ),
            // An IPv6 service is another service, even with the same port.
            (
                connection6(web.port, "[2001:db8::21]:80"),
                "unknown service TCP [2001:db8::10]:80",
                "unknown_service",
            ),
        ];
        for (entry, message, counter) in cases {
            let unknown = place(&entry, &model).unwrap_err();
            assert_eq!(unknown.to_string(), message);
            assert_eq!(unknown.name(), counter, "{message}");
        }
    }

    /// An IPv6 connection to port `port` of 2001:db8::10.
    fn connection6(port: u16, real_server: &str) -> Entry {
        let Entry::Connection(change, connection) =
            connection(service(port, Protocol::Tcp), "192.0.2.21:80")
        else {
            unreachable!()
        };
        Entry::Connection(
            change,
            Connection {
                service: ServiceAddress {
                    address: "2001:db8::10".parse().unwrap(),
                    ..connection.service
                },
                client: "[2001:db8:cafe::7]:40000".parse().unwrap(),
                real_server: real_server.parse().unwrap(),
                ..connection
            },
        )
    }

    /// The model's services as its data plane has them.
    fn written(model: &mut Model) -> crate::logic::dataplane::FakeDataPlane {
        let mut dataplane = crate::logic::dataplane::FakeDataPlane::default();
        model.sync(&mut dataplane).unwrap();
        dataplane
    }

    #[test]
    fn the_template_mask_is_the_data_planes() {
        // A backup's template is found only if its client network is masked as the data
        // plane masks a client: with the mask the model writes for the service.
        let mut model = model();
        let dataplane = written(&mut model);
        let mut persistent = 0;
        for view in model.services() {
            let Some(persistence) = view.service.persistence else {
                continue;
            };
            persistent += 1;
            assert_eq!(
                persistence.netmask.mask_bytes(),
                dataplane.services[&view.service.key()].persist_mask,
                "{}",
                view.service
            );
        }
        assert_eq!(persistent, 1);
    }

    #[test]
    fn an_ipv6_entry_installs_in_the_ipv6_maps() {
        // The placement is given: an IPv6 service's ids as `place` would find them (the
        // daemon's two-director test places one through a model that has the service).
        let mut model = model();
        let placement = Placement {
            generation: 7,
            ..ids(&model, 443, "192.0.2.23")
        };
        let now = 10_000 * S;
        let entry = connection6(443, "[2001:db8::23]:443");
        let Ok(Install::Flow(key, flow)) = install(&entry, &placement, &settings(), now) else {
            panic!("a connection is a flow");
        };
        assert_eq!(
            key,
            FlowMapKey::V6(FlowKey6 {
                src_addr: "2001:db8:cafe::7".parse::<Ipv6Addr>().unwrap().octets(),
                dst_addr: "2001:db8::10".parse::<Ipv6Addr>().unwrap().octets(),
                src_port: 40000u16.to_be_bytes(),
                dst_port: 443u16.to_be_bytes(),
                protocol: lvs_common::IPPROTO_TCP,
                _pad: [0; 3],
            })
        );
        assert_eq!(
            flow,
            FlowEntry {
                last_seen_ns: now,
                real_server_id: placement.real_server_id,
                generation: 7,
                state: FlowState::Established as u8,
                flags: FLOW_PERSISTENT | 1 << FLOW_SEEN_SHIFT,
                _pad: [0; 6],
            }
        );

        let client: Ipv6Addr = "2001:db8:cafe:1:2:3:4:5".parse().unwrap();
        let template = Entry::Template(Template {
            service: entry.service(),
            client_network: client.into(),
            real_server: "[2001:db8::23]:443".parse().unwrap(),
            remaining_ms: 100_000,
        });
        let dataplane = written(&mut model);
        let mask = dataplane.services[&ServiceMapKey::new(
            Ipv4Addr::new(192, 0, 2, 10).into(),
            443,
            lvs_common::IPPROTO_TCP,
        )]
            .persist_mask;
        assert_eq!(
            install(&template, &placement, &settings(), now),
            Ok(Install::Template(
                TemplateMapKey::V6(PersistKey6 {
                    client: client.octets().masked(&mask),
                    vip: "2001:db8::10".parse::<Ipv6Addr>().unwrap().octets(),
                    vport: 443u16.to_be_bytes(),
                    protocol: lvs_common::IPPROTO_TCP,
                    _pad: 0,
                }),
                PersistEntry {
                    last_seen_ns: now - 200 * S,
                    real_server_id: placement.real_server_id,
                    generation: 7,
                }
            ))
        );
    }
}
