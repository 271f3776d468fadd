//! The director's model of what the data plane should hold, and the writes that get it there.
//!
//! The model is pure: it knows the configured services, which real servers have a resolved
//! MAC, and a shadow copy of every map entry it wrote. `sync` compares the wanted state with
//! the shadow and writes only the difference, in an order that never lets the data plane send
//! a frame to a real server that is not ready:
//!
//! 1. real-server entries that became usable (or changed MAC) are written first;
//! 2. then the lookup-table slots that changed;
//! 3. then real-server entries that became unusable (no slot names them any more);
//! 4. and last the service entry, so a service appears only once its table is complete.

use std::{collections::HashMap, fmt, net::Ipv4Addr};

use lvs_common::{LOOKUP_TABLE_SIZE, REAL_SERVER_USABLE, RealServerEntry, ServiceEntry};
use serde::Serialize;

use crate::{
    config::{Config, Service},
    dataplane::{DataPlane, DataPlaneError},
    health::HealthStatus,
    maglev::{self, Backend},
};

/// What the controller knows about a real server's link-layer address.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum Neighbour {
    /// Not looked up yet.
    Unknown,
    /// The kernel's neighbour table has a usable MAC for it.
    Resolved { mac: MacAddr },
    /// The address is on the interface's segment but has no MAC (yet): no ARP reply.
    Unresolved { reason: String },
    /// The address is not on any subnet of the director's interface, so it cannot be reached
    /// by rewriting the Ethernet destination.
    OffLink,
}

impl Neighbour {
    fn mac(&self) -> Option<[u8; 6]> {
        match self {
            Neighbour::Resolved { mac } => Some(mac.0),
            _ => None,
        }
    }
}

/// A MAC address that prints and serializes as `aa:bb:cc:dd:ee:ff`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct MacAddr(pub [u8; 6]);

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [a, b, c, d, e, g] = self.0;
        write!(f, "{a:02x}:{b:02x}:{c:02x}:{d:02x}:{e:02x}:{g:02x}")
    }
}

impl Serialize for MacAddr {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// One real server of one service, with its data-plane id.
#[derive(Debug)]
struct RealServerState {
    address: Ipv4Addr,
    weight: u32,
    id: u32,
    /// The entry last written to the data plane.
    written: Option<RealServerEntry>,
    /// The service's sorry server: it gets flows only when health checking admits it.
    sorry: bool,
    /// What health checking last said; none for a server it does not check.
    health: Option<HealthStatus>,
}

impl RealServerState {
    /// The weight it gets in the service's scheduling, or none when it is out of it: the
    /// configured weight, unless health checking decided otherwise.
    fn admitted_weight(&self) -> Option<u32> {
        match &self.health {
            Some(health) => health.admission.weight(),
            None if self.sorry => None,
            None => Some(self.weight),
        }
    }
}

/// One service with its data-plane index and the table last written for it.
#[derive(Debug)]
struct ServiceState {
    service: Service,
    index: u32,
    real_servers: Vec<RealServerState>,
    /// Shadow of the service's lookup table; empty until first written.
    table: Vec<u32>,
    installed: bool,
}

/// The director's wanted data-plane state and a shadow of what was written.
#[derive(Debug)]
pub struct Model {
    services: Vec<ServiceState>,
    neighbours: HashMap<Ipv4Addr, Neighbour>,
}

/// How much one `sync` wrote.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct SyncReport {
    pub real_servers_written: usize,
    pub slots_written: usize,
    pub services_installed: usize,
}

impl Model {
    /// Gives every service an index and every real server an id, in config order.
    pub fn new(config: &Config) -> Self {
        let mut next_id = 0u32;
        let services = config
            .services
            .iter()
            .zip(0u32..)
            .map(|(service, index)| ServiceState {
                index,
                real_servers: service
                    .real_servers
                    .iter()
                    .map(|rs| (rs.address, rs.weight, false))
                    .chain(service.health.sorry_server.map(|sorry| (sorry, 1, true)))
                    .map(|(address, weight, sorry)| {
                        let id = next_id;
                        next_id += 1;
                        RealServerState {
                            address,
                            weight,
                            id,
                            written: None,
                            sorry,
                            health: None,
                        }
                    })
                    .collect(),
                service: service.clone(),
                table: Vec::new(),
                installed: false,
            })
            .collect();
        Self {
            services,
            neighbours: HashMap::new(),
        }
    }

    /// Every distinct real-server address, whose MAC the controller must track.
    pub fn real_server_addresses(&self) -> Vec<Ipv4Addr> {
        let mut addresses: Vec<Ipv4Addr> = self
            .services
            .iter()
            .flat_map(|s| s.real_servers.iter().map(|rs| rs.address))
            .collect();
        addresses.sort();
        addresses.dedup();
        addresses
    }

    /// The VIPs of all services, each once.
    pub fn virtual_addresses(&self) -> Vec<Ipv4Addr> {
        let mut addresses: Vec<Ipv4Addr> =
            self.services.iter().map(|s| s.service.address).collect();
        addresses.sort();
        addresses.dedup();
        addresses
    }

    pub fn neighbour(&self, address: Ipv4Addr) -> &Neighbour {
        self.neighbours.get(&address).unwrap_or(&Neighbour::Unknown)
    }

    /// Records what is known of an address; returns whether anything changed.
    pub fn set_neighbour(&mut self, address: Ipv4Addr, neighbour: Neighbour) -> bool {
        self.neighbours.insert(address, neighbour.clone()) != Some(neighbour)
    }

    /// Records what health checking says about a real server (or the sorry server) of a
    /// service; returns whether its admission changed, so that a `sync` is needed.
    pub fn set_health(
        &mut self,
        service: lvs_common::ServiceKey,
        address: Ipv4Addr,
        status: HealthStatus,
    ) -> bool {
        let Some(rs) = self
            .services
            .iter_mut()
            .find(|s| s.service.key() == service)
            .and_then(|s| s.real_servers.iter_mut().find(|rs| rs.address == address))
        else {
            return false;
        };
        let before = rs.admitted_weight();
        rs.health = Some(status);
        rs.admitted_weight() != before
    }

    /// Writes whatever differs between the wanted state and what was written before.
    pub fn sync(&mut self, dataplane: &mut dyn DataPlane) -> Result<SyncReport, DataPlaneError> {
        let mut report = SyncReport::default();
        for service in &mut self.services {
            let wanted: Vec<RealServerEntry> = service
                .real_servers
                .iter()
                .map(|rs| wanted_entry(rs.address, self.neighbours.get(&rs.address)))
                .collect();

            for (rs, entry) in service.real_servers.iter_mut().zip(&wanted) {
                if entry.flags & REAL_SERVER_USABLE != 0 && rs.written != Some(*entry) {
                    dataplane.set_real_server(rs.id, *entry)?;
                    rs.written = Some(*entry);
                    report.real_servers_written += 1;
                }
            }

            let backends: Vec<Backend> = service
                .real_servers
                .iter()
                .zip(&wanted)
                .filter(|(_, entry)| entry.flags & REAL_SERVER_USABLE != 0)
                .filter_map(|(rs, _)| {
                    Some(Backend {
                        id: rs.id,
                        identity: identity(rs.address, service.service.port),
                        weight: rs.admitted_weight()?,
                    })
                })
                .collect();
            let table = maglev::build_table(&backends, LOOKUP_TABLE_SIZE);
            let changed = changed_slots(&service.table, &table);
            if !changed.is_empty() {
                dataplane.set_lookup_slots(service.index, &changed)?;
                report.slots_written += changed.len();
            }
            service.table = table;

            for (rs, entry) in service.real_servers.iter_mut().zip(&wanted) {
                if entry.flags & REAL_SERVER_USABLE == 0 && rs.written != Some(*entry) {
                    dataplane.set_real_server(rs.id, *entry)?;
                    rs.written = Some(*entry);
                    report.real_servers_written += 1;
                }
            }

            if !service.installed {
                let entry = ServiceEntry {
                    index: service.index,
                    flags: 0,
                };
                dataplane.set_service(service.service.key(), entry)?;
                service.installed = true;
                report.services_installed += 1;
            }
        }
        Ok(report)
    }

    /// The services with their real servers, for status output.
    pub fn services(&self) -> impl Iterator<Item = ServiceView<'_>> {
        self.services.iter().map(|s| ServiceView {
            service: &s.service,
            index: s.index,
            real_servers: s
                .real_servers
                .iter()
                .map(|rs| RealServerView {
                    address: rs.address,
                    weight: rs.weight,
                    id: rs.id,
                    neighbour: self.neighbour(rs.address),
                    forwarding: rs
                        .written
                        .is_some_and(|e| e.flags & REAL_SERVER_USABLE != 0)
                        && rs.admitted_weight().is_some_and(|w| w > 0),
                    sorry: rs.sorry,
                    health: rs.health.as_ref(),
                })
                .collect(),
        })
    }
}

/// A read-only view of a service for status output.
pub struct ServiceView<'a> {
    pub service: &'a Service,
    pub index: u32,
    pub real_servers: Vec<RealServerView<'a>>,
}

/// A read-only view of a real server for status output.
pub struct RealServerView<'a> {
    pub address: Ipv4Addr,
    pub weight: u32,
    pub id: u32,
    pub neighbour: &'a Neighbour,
    /// Whether new flows can be sent to it.
    pub forwarding: bool,
    /// Whether it is the service's sorry server.
    pub sorry: bool,
    /// What health checking last said about it.
    pub health: Option<&'a HealthStatus>,
}

/// The entry a real server should have: usable only with a resolved MAC.
fn wanted_entry(address: Ipv4Addr, neighbour: Option<&Neighbour>) -> RealServerEntry {
    match neighbour.and_then(Neighbour::mac) {
        Some(mac) => RealServerEntry {
            addr: address.octets(),
            mac,
            flags: REAL_SERVER_USABLE,
        },
        None => RealServerEntry {
            addr: address.octets(),
            mac: [0; 6],
            flags: 0,
        },
    }
}

/// What a real server's Maglev permutation is derived from: its address and port, the same on
/// every director.
fn identity(address: Ipv4Addr, port: u16) -> Vec<u8> {
    let mut bytes = address.octets().to_vec();
    bytes.extend_from_slice(&port.to_be_bytes());
    bytes
}

/// The `(slot, id)` pairs where `new` differs from `old`. An empty `old` means the table was
/// never written: the BPF array then holds zeros, which name real server 0, so every slot of
/// `new` is written.
fn changed_slots(old: &[u32], new: &[u32]) -> Vec<(u32, u32)> {
    new.iter()
        .zip(0u32..)
        .filter(|&(id, slot)| old.get(slot as usize) != Some(id))
        .map(|(&id, slot)| (slot, id))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use lvs_common::{NO_REAL_SERVER, ServiceKey};

    use crate::health::Admission;

    use crate::{config, dataplane::FakeDataPlane};

    const CONFIG: &str = r#"
[director]
interface = "eth0"

[[virtual_server]]
address = "10.0.0.100"
port = 80

[[virtual_server.real_server]]
address = "10.0.0.11"

[[virtual_server.real_server]]
address = "10.0.0.12"

[[virtual_server]]
address = "10.0.0.100"
port = 53
protocol = "UDP"

[[virtual_server.real_server]]
address = "10.0.0.12"
weight = 0
"#;

    fn model() -> Model {
        Model::new(&config::parse(CONFIG, "test.toml").unwrap())
    }

    fn resolved(last: u8) -> Neighbour {
        Neighbour::Resolved {
            mac: MacAddr([2, 0, 0, 0, 0, last]),
        }
    }

    fn ids_in_table(dp: &FakeDataPlane, index: u32) -> std::collections::BTreeSet<u32> {
        (0..LOOKUP_TABLE_SIZE)
            .map(|slot| dp.slot(index, slot))
            .collect()
    }

    #[test]
    fn addresses_are_listed_once() {
        let m = model();
        assert_eq!(
            m.real_server_addresses(),
            vec![Ipv4Addr::new(10, 0, 0, 11), Ipv4Addr::new(10, 0, 0, 12)]
        );
        assert_eq!(m.virtual_addresses(), vec![Ipv4Addr::new(10, 0, 0, 100)]);
    }

    #[test]
    fn unresolved_servers_get_no_slots_and_services_are_still_installed() {
        let mut m = model();
        let mut dp = FakeDataPlane::default();
        m.sync(&mut dp).unwrap();
        assert_eq!(dp.services.len(), 2);
        assert_eq!(
            ids_in_table(&dp, 0),
            [NO_REAL_SERVER].into_iter().collect(),
            "nothing is resolved, so every slot is empty"
        );
        assert!(
            dp.real_servers
                .values()
                .all(|e| e.flags & REAL_SERVER_USABLE == 0)
        );
    }

    #[test]
    fn resolved_servers_share_the_table_and_weight_zero_gets_none() {
        let mut m = model();
        let mut dp = FakeDataPlane::default();
        m.set_neighbour(Ipv4Addr::new(10, 0, 0, 11), resolved(11));
        m.set_neighbour(Ipv4Addr::new(10, 0, 0, 12), resolved(12));
        m.sync(&mut dp).unwrap();
        assert_eq!(ids_in_table(&dp, 0), [0, 1].into_iter().collect());
        assert_eq!(dp.real_servers[&0].mac, [2, 0, 0, 0, 0, 11]);
        assert_eq!(dp.real_servers[&0].flags, REAL_SERVER_USABLE);
        // The UDP service's only server has weight 0: quiesced, no slots.
        assert_eq!(ids_in_table(&dp, 1), [NO_REAL_SERVER].into_iter().collect());
    }

    #[test]
    fn a_second_sync_without_changes_writes_nothing() {
        let mut m = model();
        let mut dp = FakeDataPlane::default();
        m.set_neighbour(Ipv4Addr::new(10, 0, 0, 11), resolved(11));
        m.sync(&mut dp).unwrap();
        assert_eq!(m.sync(&mut dp).unwrap(), SyncReport::default());
    }

    #[test]
    fn losing_a_neighbour_moves_only_its_slots() {
        let mut m = model();
        let mut dp = FakeDataPlane::default();
        m.set_neighbour(Ipv4Addr::new(10, 0, 0, 11), resolved(11));
        m.set_neighbour(Ipv4Addr::new(10, 0, 0, 12), resolved(12));
        m.sync(&mut dp).unwrap();
        let owned_by_11 = (0..LOOKUP_TABLE_SIZE)
            .filter(|&s| dp.slot(0, s) == 0)
            .count();

        let changed = m.set_neighbour(
            Ipv4Addr::new(10, 0, 0, 11),
            Neighbour::Unresolved {
                reason: "FAILED".into(),
            },
        );
        assert!(changed);
        let report = m.sync(&mut dp).unwrap();
        assert_eq!(report.slots_written, owned_by_11);
        assert_eq!(ids_in_table(&dp, 0), [1].into_iter().collect());
        assert_eq!(dp.real_servers[&0].flags, 0);
    }

    #[test]
    fn a_mac_change_rewrites_the_entry_but_no_slot() {
        let mut m = model();
        let mut dp = FakeDataPlane::default();
        m.set_neighbour(Ipv4Addr::new(10, 0, 0, 11), resolved(11));
        m.sync(&mut dp).unwrap();
        m.set_neighbour(Ipv4Addr::new(10, 0, 0, 11), resolved(99));
        let report = m.sync(&mut dp).unwrap();
        assert_eq!(report.real_servers_written, 1);
        assert_eq!(report.slots_written, 0);
        assert_eq!(dp.real_servers[&0].mac, [2, 0, 0, 0, 0, 99]);
    }

    #[test]
    fn status_views_say_which_servers_forward() {
        let mut m = model();
        let mut dp = FakeDataPlane::default();
        m.set_neighbour(Ipv4Addr::new(10, 0, 0, 12), resolved(12));
        m.set_neighbour(Ipv4Addr::new(10, 0, 0, 11), Neighbour::OffLink);
        m.sync(&mut dp).unwrap();
        let views: Vec<_> = m.services().collect();
        let web = &views[0].real_servers;
        assert!(!web[0].forwarding);
        assert_eq!(web[0].neighbour, &Neighbour::OffLink);
        assert!(web[1].forwarding);
        assert!(
            !views[1].real_servers[0].forwarding,
            "weight 0 does not forward"
        );
    }

    #[test]
    fn health_removes_inhibits_and_brings_in_the_sorry_server() {
        let text = CONFIG.replacen(
            "port = 80\n",
            "port = 80\nsorry_server = { address = \"10.0.0.9\" }\n",
            1,
        );
        let mut m = Model::new(&config::parse(&text, "test.toml").unwrap());
        let mut dp = FakeDataPlane::default();
        for (last, mac) in [(11, 11), (12, 12), (9, 9)] {
            m.set_neighbour(Ipv4Addr::new(10, 0, 0, last), resolved(mac));
        }
        m.sync(&mut dp).unwrap();
        // The sorry server (id 2, after the two real servers) gets nothing by default.
        assert_eq!(ids_in_table(&dp, 0), [0, 1].into_iter().collect());

        let web = ServiceKey {
            addr: [10, 0, 0, 100],
            port: 80u16.to_be_bytes(),
            protocol: lvs_common::IPPROTO_TCP,
            _pad: 0,
        };
        let status = |admission| HealthStatus {
            state: crate::health::HealthState::Down,
            admission,
            checker: None,
            last_result: None,
        };
        let eleven = Ipv4Addr::new(10, 0, 0, 11);
        assert!(m.set_health(web, eleven, status(Admission::Removed)));
        assert!(!m.set_health(web, eleven, status(Admission::Removed)));
        m.sync(&mut dp).unwrap();
        assert_eq!(ids_in_table(&dp, 0), [1].into_iter().collect());
        assert!(m.set_health(web, eleven, status(Admission::Weight(0))));
        m.sync(&mut dp).unwrap();
        assert_eq!(
            ids_in_table(&dp, 0),
            [1].into_iter().collect(),
            "weight 0 gets no new flows"
        );
        assert!(m.set_health(web, Ipv4Addr::new(10, 0, 0, 12), status(Admission::Removed)));
        assert!(m.set_health(
            web,
            Ipv4Addr::new(10, 0, 0, 9),
            status(Admission::Weight(1))
        ));
        m.sync(&mut dp).unwrap();
        assert_eq!(ids_in_table(&dp, 0), [2].into_iter().collect());
        let views: Vec<_> = m.services().collect();
        let sorry = &views[0].real_servers[2];
        assert!(sorry.sorry && sorry.forwarding);
        assert!(!views[0].real_servers[0].forwarding);
        // An unknown service or address changes nothing.
        assert!(!m.set_health(web, Ipv4Addr::new(10, 0, 0, 77), status(Admission::Removed)));
    }

    #[test]
    fn mac_addresses_print_like_ip_link() {
        assert_eq!(
            MacAddr([0x02, 0xab, 0, 1, 0x10, 0xff]).to_string(),
            "02:ab:00:01:10:ff"
        );
    }
}
