//! The rule table as ipvsadm changes it: services with their settings and real servers, and
//! the timeouts, with the kernel's answers ("Service already exists", "No such
//! destination", ...) for changes that do not fit.
//!
//! The table holds the director's own services (`config::Service`), so the daemon applies a
//! batch of `lvsadm` changes to a copy of its wanted services ([`RuleSet::apply_all`]) and
//! hands the result to the model as it is, with no other representation in between. The
//! tests use it to prove that `-S` then `-R` rebuilds the same table.

use std::net::IpAddr;

use crate::{
    base::values::{Port, Thresholds, Timeout, UnicastAddress, ValueError, Weight},
    logic::{
        api::{
            Change, RealServerConfig, ServiceConfig, ServiceKey, Timeouts,
            snapshot::{RealServerEntry, ServiceEntry, Snapshot},
        },
        config::{RealServer, Service},
    },
};

/// The services and timeouts, without counters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RuleSet {
    /// In the order they were added (what `--nosort` shows); each one's real servers too.
    pub services: Vec<Service>,
    pub timeouts: Timeouts,
}

impl Default for RuleSet {
    fn default() -> Self {
        RuleSet {
            services: Vec::new(),
            timeouts: Timeouts::DEFAULT,
        }
    }
}

/// Why a change does not fit the table, in the kernel's words as ipvsadm prints them.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ApplyError {
    #[error("Service already exists")]
    ServiceExists,
    #[error("No such service")]
    NoSuchService,
    /// What adding, editing or deleting a real server of a missing service says.
    #[error("Service not defined")]
    ServiceNotDefined,
    #[error("Destination already exists")]
    DestinationExists,
    #[error("No such destination")]
    NoSuchDestination,
    /// A value that lvsadm never sends but a raw socket client could: an address that is not
    /// unicast, port 0, a weight out of range, a scheduler flag for a scheduler it means
    /// nothing to.
    #[error("{0}")]
    Invalid(String),
}

impl RuleSet {
    /// The rules of a snapshot (counters dropped; no health checking).
    pub fn from_snapshot(snapshot: &Snapshot) -> RuleSet {
        RuleSet {
            services: snapshot
                .services
                .iter()
                .map(|entry| Service {
                    address: entry.service.address,
                    port: entry.service.port,
                    protocol: entry.service.protocol,
                    scheduler: entry.config.scheduler,
                    sched_flags: entry.config.sched_flags,
                    persistence: entry.config.persistence,
                    real_servers: entry
                        .real_servers
                        .iter()
                        .map(|rs| real_server(&rs.server))
                        .collect(),
                    health: Default::default(),
                })
                .collect(),
            timeouts: snapshot.timeouts,
        }
    }

    /// A snapshot of these rules with every counter at zero and no connections.
    pub fn to_snapshot(&self, connection_table_size: u32) -> Snapshot {
        Snapshot {
            connection_table_size,
            timeouts: self.timeouts,
            services: self
                .services
                .iter()
                .map(|service| ServiceEntry {
                    service: ServiceKey::of(service),
                    config: ServiceConfig::of(service),
                    stats: Default::default(),
                    rates: Default::default(),
                    real_servers: service
                        .real_servers
                        .iter()
                        .map(|server| RealServerEntry {
                            server: RealServerConfig::of(server),
                            port: service.port,
                            active_conns: 0,
                            inactive_conns: 0,
                            persistent_conns: 0,
                            stats: Default::default(),
                            rates: Default::default(),
                        })
                        .collect(),
                })
                .collect(),
            connections: Vec::new(),
        }
    }

    /// Applies `changes` in order to a copy and returns it, or the index of the first change
    /// that does not fit and why; `self` is never changed.
    ///
    /// Health checking is not part of the rule table: a service that was in `self` keeps its
    /// checks (even when the batch deleted and added it again), less those of real servers it
    /// no longer has.
    pub fn apply_all(&self, changes: &[Change]) -> Result<RuleSet, (usize, ApplyError)> {
        let mut next = self.clone();
        for (index, change) in changes.iter().enumerate() {
            next.apply(change).map_err(|error| (index, error))?;
        }
        for service in &mut next.services {
            let key = ServiceKey::of(service);
            if let Some(known) = self.services.iter().find(|s| ServiceKey::of(s) == key) {
                service.health = known.health.clone();
            }
            let servers = &service.real_servers;
            service
                .health
                .real_servers
                .retain(|address, _| servers.iter().any(|rs| rs.address == *address));
        }
        Ok(next)
    }

    /// Applies one change; on an error nothing is changed.
    pub fn apply(&mut self, change: &Change) -> Result<(), ApplyError> {
        match *change {
            Change::AddService { service, config } => {
                check_service(service, config)?;
                if self.find(&service).is_some() {
                    return Err(ApplyError::ServiceExists);
                }
                self.services.push(Service {
                    address: service.address,
                    port: service.port,
                    protocol: service.protocol,
                    scheduler: config.scheduler,
                    sched_flags: config.sched_flags,
                    persistence: config.persistence,
                    real_servers: Vec::new(),
                    health: Default::default(),
                });
            }
            Change::EditService { service, config } => {
                check_service(service, config)?;
                let known = self.service_mut(&service, ApplyError::NoSuchService)?;
                known.scheduler = config.scheduler;
                known.sched_flags = config.sched_flags;
                known.persistence = config.persistence;
            }
            Change::DeleteService { service } => {
                let index = self.find(&service).ok_or(ApplyError::NoSuchService)?;
                self.services.remove(index);
            }
            Change::Clear {} => self.services.clear(),
            Change::AddServer { service, server } => {
                check_server(&server)?;
                let known = self.service_mut(&service, ApplyError::ServiceNotDefined)?;
                if position(known, server.address).is_some() {
                    return Err(ApplyError::DestinationExists);
                }
                known.real_servers.push(real_server(&server));
            }
            Change::EditServer { service, server } => {
                check_server(&server)?;
                let known = self.service_mut(&service, ApplyError::ServiceNotDefined)?;
                let index = position(known, server.address).ok_or(ApplyError::NoSuchDestination)?;
                known.real_servers[index] = real_server(&server);
            }
            Change::DeleteServer { service, address } => {
                let known = self.service_mut(&service, ApplyError::ServiceNotDefined)?;
                let index = position(known, address).ok_or(ApplyError::NoSuchDestination)?;
                known.real_servers.remove(index);
            }
            Change::Zero { service } => {
                if let Some(service) = service {
                    self.find(&service).ok_or(ApplyError::NoSuchService)?;
                }
            }
            Change::SetTimeouts { timeouts } => {
                // As in IPVS, a zero leaves that timeout as it was.
                let keep = |new: u32, old: u32| if new == 0 { old } else { new };
                self.timeouts = Timeouts {
                    tcp: keep(timeouts.tcp, self.timeouts.tcp),
                    tcp_fin: keep(timeouts.tcp_fin, self.timeouts.tcp_fin),
                    udp: keep(timeouts.udp, self.timeouts.udp),
                };
            }
        }
        Ok(())
    }

    fn find(&self, service: &ServiceKey) -> Option<usize> {
        self.services
            .iter()
            .position(|s| ServiceKey::of(s) == *service)
    }

    fn service_mut(
        &mut self,
        service: &ServiceKey,
        missing: ApplyError,
    ) -> Result<&mut Service, ApplyError> {
        let index = self.find(service).ok_or(missing)?;
        Ok(&mut self.services[index])
    }
}

fn position(service: &Service, address: IpAddr) -> Option<usize> {
    service
        .real_servers
        .iter()
        .position(|rs| rs.address == address)
}

fn real_server(server: &RealServerConfig) -> RealServer {
    RealServer {
        address: server.address,
        weight: server.weight,
        upper_threshold: server.u_threshold,
        lower_threshold: server.l_threshold,
    }
}

/// What the wire's types leave open about a service: lvsadm checks all of it before it sends,
/// but the socket takes requests from any root process. The rules are `base::values`'s; the
/// words are the daemon's.
fn check_service(key: ServiceKey, config: ServiceConfig) -> Result<(), ApplyError> {
    let invalid = |reason: String| ApplyError::Invalid(format!("{key}: {reason}"));
    unicast(key.address)?;
    Port::new(key.port.into()).map_err(|_| invalid("port 0 services are not supported".into()))?;
    config
        .sched_flags
        .check(config.scheduler)
        .map_err(|e| invalid(e.to_string()))?;
    if let Some(p) = config.persistence
        && (Timeout::new(p.timeout.into()).is_err() || !p.netmask.fits(key.address))
    {
        return Err(invalid(
            "persistence needs a timeout and a granularity of the service's family (a \
             netmask for IPv4, a prefix length for IPv6)"
                .into(),
        ));
    }
    Ok(())
}

/// What the wire's types leave open about a real server.
fn check_server(server: &RealServerConfig) -> Result<(), ApplyError> {
    let invalid = |error: ValueError| ApplyError::Invalid(error.to_string());
    unicast(server.address)?;
    Weight::try_from(server.weight).map_err(invalid)?;
    Thresholds::new(server.u_threshold, server.l_threshold).map_err(invalid)?;
    Ok(())
}

fn unicast(address: IpAddr) -> Result<(), ApplyError> {
    UnicastAddress::new(address)
        .map(|_| ())
        .map_err(|error| ApplyError::Invalid(error.to_string()))
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;
    use crate::base::values::{Granularity, Netmask, PrefixLength};
    use crate::logic::api::{ForwardMethod, Protocol, Scheduler};

    fn web() -> ServiceKey {
        ServiceKey {
            protocol: Protocol::Tcp,
            address: Ipv4Addr::new(10, 0, 0, 1).into(),
            port: 80,
        }
    }

    fn config() -> ServiceConfig {
        ServiceConfig {
            scheduler: Scheduler::WeightedLeastConnection,
            sched_flags: Default::default(),
            persistence: None,
        }
    }

    fn server(last: u8, weight: u32) -> RealServerConfig {
        RealServerConfig {
            address: Ipv4Addr::new(10, 0, 0, last).into(),
            forward: ForwardMethod::Route,
            weight,
            u_threshold: 0,
            l_threshold: 0,
        }
    }

    #[test]
    fn changes_that_do_not_fit_say_what_ipvsadm_says_and_change_nothing() {
        let mut rules = RuleSet::default();
        rules
            .apply(&Change::AddService {
                service: web(),
                config: config(),
            })
            .unwrap();
        rules
            .apply(&Change::AddServer {
                service: web(),
                server: server(11, 1),
            })
            .unwrap();
        let other = ServiceKey { port: 81, ..web() };
        let cases = [
            (
                Change::AddService {
                    service: web(),
                    config: config(),
                },
                "Service already exists",
            ),
            (
                Change::EditService {
                    service: other,
                    config: config(),
                },
                "No such service",
            ),
            (Change::DeleteService { service: other }, "No such service"),
            (
                Change::Zero {
                    service: Some(other),
                },
                "No such service",
            ),
            (
                Change::AddServer {
                    service: other,
                    server: server(12, 1),
                },
                "Service not defined",
            ),
            (
                Change::AddServer {
                    service: web(),
                    server: server(11, 5),
                },
                "Destination already exists",
            ),
            (
                Change::EditServer {
                    service: web(),
                    server: server(12, 1),
                },
                "No such destination",
            ),
            (
                Change::DeleteServer {
                    service: other,
                    address: Ipv4Addr::new(10, 0, 0, 11).into(),
                },
                "Service not defined",
            ),
            (
                Change::DeleteServer {
                    service: web(),
                    address: Ipv4Addr::new(10, 0, 0, 12).into(),
                },
                "No such destination",
            ),
        ];
        for (change, expected) in cases {
            let before = rules.clone();
            let error = rules.apply(&change).unwrap_err();
            assert_eq!(error.to_string(), expected, "{change:?}");
            assert_eq!(rules, before, "{change:?} changed the table");
        }
    }

    #[test]
    fn a_batch_is_all_or_nothing() {
        let rules = RuleSet::default();
        let changes = [
            Change::AddService {
                service: web(),
                config: config(),
            },
            Change::AddServer {
                service: web(),
                server: server(11, 1),
            },
            Change::AddServer {
                service: web(),
                server: server(11, 2),
            },
        ];
        assert_eq!(
            rules.apply_all(&changes),
            Err((2, ApplyError::DestinationExists))
        );
        assert_eq!(rules, RuleSet::default());
        let applied = rules.apply_all(&changes[..2]).unwrap();
        assert_eq!(
            applied.services[0].real_servers,
            [real_server(&server(11, 1))]
        );
    }

    #[test]
    fn edits_replace_and_zero_timeouts_keep_their_value() {
        let mut rules = RuleSet::default();
        let changes = [
            Change::AddService {
                service: web(),
                config: config(),
            },
            Change::AddServer {
                service: web(),
                server: server(11, 1),
            },
            Change::EditServer {
                service: web(),
                server: server(11, 0),
            },
            Change::EditService {
                service: web(),
                config: ServiceConfig {
                    scheduler: Scheduler::RoundRobin,
                    ..config()
                },
            },
            Change::SetTimeouts {
                timeouts: Timeouts {
                    tcp: 0,
                    tcp_fin: 60,
                    udp: 0,
                },
            },
        ];
        for change in &changes {
            rules.apply(change).unwrap();
        }
        assert_eq!(
            rules.services[0].real_servers,
            [real_server(&server(11, 0))]
        );
        assert_eq!(rules.services[0].scheduler, Scheduler::RoundRobin);
        assert_eq!(
            rules.timeouts,
            Timeouts {
                tcp: 900,
                tcp_fin: 60,
                udp: 300
            }
        );
        let snapshot = rules.to_snapshot(4096);
        assert_eq!(RuleSet::from_snapshot(&snapshot), rules);
        rules.apply(&Change::Clear {}).unwrap();
        assert!(rules.services.is_empty());
    }

    /// Values a raw socket client can send that lvsadm never would: refused by
    /// `base::values`'s rules, with the daemon's words, and the table unchanged.
    #[test]
    fn values_out_of_range_are_refused_with_a_reason() {
        let mut rules = RuleSet::default();
        rules
            .apply(&Change::AddService {
                service: web(),
                config: config(),
            })
            .unwrap();
        let persistent = |timeout, netmask| ServiceConfig {
            persistence: Some(crate::logic::api::Persistence { timeout, netmask }),
            ..config()
        };
        let cases = [
            (
                Change::AddService {
                    service: ServiceKey { port: 0, ..web() },
                    config: config(),
                },
                "TCP 10.0.0.1:0: port 0 services are not supported",
            ),
            (
                Change::AddService {
                    service: ServiceKey {
                        address: Ipv4Addr::new(224, 0, 0, 1).into(),
                        ..web()
                    },
                    config: config(),
                },
                "224.0.0.1 cannot be a service or server address",
            ),
            (
                Change::EditService {
                    service: web(),
                    config: persistent(0, Granularity::Netmask(Netmask::HOST)),
                },
                "TCP 10.0.0.1:80: persistence needs a timeout and a granularity of the \
                 service's family (a netmask for IPv4, a prefix length for IPv6)",
            ),
            (
                Change::EditService {
                    service: web(),
                    config: persistent(300, Granularity::PrefixLength(PrefixLength::HOST)),
                },
                "TCP 10.0.0.1:80: persistence needs a timeout and a granularity of the \
                 service's family (a netmask for IPv4, a prefix length for IPv6)",
            ),
            (
                Change::AddServer {
                    service: web(),
                    server: server(11, 65536),
                },
                "weight 65536 is out of range 0..=65535",
            ),
            (
                Change::AddServer {
                    service: web(),
                    server: RealServerConfig {
                        u_threshold: 10,
                        l_threshold: 11,
                        ..server(11, 1)
                    },
                },
                "lower threshold 11 is above upper threshold 10",
            ),
            (
                Change::EditServer {
                    service: web(),
                    server: RealServerConfig {
                        address: Ipv4Addr::UNSPECIFIED.into(),
                        ..server(11, 1)
                    },
                },
                "0.0.0.0 cannot be a service or server address",
            ),
        ];
        for (change, expected) in cases {
            let before = rules.clone();
            let error = rules.apply(&change).unwrap_err();
            assert_eq!(error.to_string(), expected, "{change:?}");
            assert_eq!(rules, before, "{change:?} changed the table");
        }
    }
}
