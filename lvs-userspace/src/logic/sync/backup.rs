//! What a backup does with a decoded entry: find its own service and real server for it.
//!
//! Directors number their services and real servers independently, so an entry names them
//! by address and port, and the backup looks them up in its model. An entry that names a
//! service or a real server the backup does not have (the two directors' configs differ, or
//! a reload is under way on one of them) is ignored and counted: the backup schedules such a
//! connection itself if it ever sees it, and never forwards to a server it was not told to
//! use.

use std::net::SocketAddrV4;

use super::wire::{Entry, ServiceAddress};
use crate::logic::model::Model;

/// Where the backup's own data plane has the entry's service and real server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Placement {
    /// The service's index in the backup's data plane.
    pub service_index: u32,
    /// The real server's id in the backup's data plane.
    pub real_server_id: u32,
}

/// Why an entry has no place on this director; counted, never forwarded.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Unknown {
    #[error("unknown service {0}")]
    Service(ServiceAddress),
    #[error("unknown real server {real_server} of service {service}")]
    RealServer {
        service: ServiceAddress,
        real_server: SocketAddrV4,
    },
}

impl Unknown {
    /// The counter's name.
    pub const fn name(&self) -> &'static str {
        match self {
            Unknown::Service(_) => "unknown_service",
            Unknown::RealServer { .. } => "unknown_real_server",
        }
    }
}

/// Finds the backup's service and real server for `entry`. Under direct routing a real
/// server listens on the service port, so one on another port is not the same server.
pub fn place(entry: &Entry, model: &Model) -> Result<Placement, Unknown> {
    let wanted = entry.service();
    let service = model
        .services()
        .find(|view| {
            view.service.address == wanted.address
                && view.service.port == wanted.port
                && view.service.protocol == wanted.protocol
        })
        .ok_or(Unknown::Service(wanted))?;
    let real_server = entry.real_server();
    let unknown = Unknown::RealServer {
        service: wanted,
        real_server,
    };
    if real_server.port() != wanted.port {
        return Err(unknown);
    }
    service
        .real_servers
        .iter()
        .find(|view| view.address == *real_server.ip())
        .map(|view| Placement {
            service_index: service.index,
            real_server_id: view.id,
        })
        .ok_or(unknown)
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use lvs_common::flow::FlowState;

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
"#;

    fn model() -> Model {
        let config = config::parse(CONFIG, "lvs.toml").unwrap();
        Model::new(&config.services).unwrap()
    }

    fn service(port: u16, protocol: Protocol) -> ServiceAddress {
        ServiceAddress {
            address: Ipv4Addr::new(192, 0, 2, 10),
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
        }
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
            client_network: Ipv4Addr::new(198, 51, 100, 0),
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
                        address: Ipv4Addr::new(192, 0, 2, 11),
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
        ];
        for (entry, message, counter) in cases {
            let unknown = place(&entry, &model).unwrap_err();
            assert_eq!(unknown.to_string(), message);
            assert_eq!(unknown.name(), counter, "{message}");
        }
    }
}
