//! Taking over the maps a previous director left running (a restart, a crash, an upgrade).
//!
//! The flow table and the persistence templates name real servers by id and generation, and
//! the per-CPU counters are kept by service index and real-server id. So a director that
//! adopts running maps must give every service it still wants the index it had, and every
//! real server the id and generation it had; otherwise established connections would be
//! scheduled anew, or meet another server's entry. What it finds and no longer wants is
//! retired, exactly as if it had been removed from the config: `sync` then clears it in its
//! safe order. What was written is the shadow the first `sync` compares with, so a restart
//! with the same config and the same neighbours writes nothing that changes forwarding.

use std::{
    collections::{HashMap, HashSet},
    net::{IpAddr, Ipv4Addr},
};

use lvs_common::{
    RealServerEntry, ServiceEntry,
    keys::{ServiceMapKey, real_server_address},
};

use super::{Model, ModelError, Retired, sorry_server};
use crate::logic::{config::Service, dataplane::Previous};

/// The indices, ids and entries a previous director left, for the wanted services.
#[derive(Debug, Default)]
pub(super) struct Claims {
    /// A service's previous entry (its index inside) and table.
    pub(super) services: HashMap<ServiceMapKey, (ServiceEntry, Vec<u32>)>,
    /// A real server's previous id and entry, by service and address.
    pub(super) real_servers: HashMap<(ServiceMapKey, Ipv4Addr), (u32, RealServerEntry)>,
}

/// How an adoption went, for the log.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Adoption {
    pub services_kept: usize,
    pub real_servers_kept: usize,
    /// Found in the maps but not wanted any more: cleared by the next `sync`.
    pub services_retired: usize,
    pub real_servers_retired: usize,
}

impl Model {
    /// A model of `services` that takes over what a previous director left in the maps:
    /// services keep their index and table, real servers (matched by service and address)
    /// their id and generation, and the previous entries are the shadow `sync` compares
    /// with. Whatever the maps hold that is not wanted is retired, for `sync` to clear.
    pub fn adopt(
        services: &[Service],
        previous: &Previous,
    ) -> Result<(Self, Adoption), ModelError> {
        let mut model = Self::new(&[])?;
        let mut adoption = Adoption::default();

        let mut old_services = Vec::new();
        for &(key, entry) in &previous.services {
            if model.service_indices.claim(entry.index, 1) {
                old_services.push((key, entry));
            }
        }
        let mut unmatched: Vec<(u32, RealServerEntry)> = Vec::new();
        for &(id, entry) in &previous.real_servers {
            if entry.generation != 0 && model.real_server_ids.claim(id, entry.generation) {
                unmatched.push((id, entry));
            }
        }

        let wanted: HashSet<ServiceMapKey> = services.iter().map(Service::key).collect();
        let mut claims = Claims::default();
        for &(key, entry) in &old_services {
            if wanted.contains(&key) {
                let table = previous
                    .tables
                    .get(&entry.index)
                    .cloned()
                    .unwrap_or_default();
                claims.services.insert(key, (entry, table));
            } else {
                model.retired_services.push((key, Some(entry), entry.index));
                adoption.services_retired += 1;
            }
        }

        // Two services may share a real server's address, each with its own id. An id that
        // a service's table names is that service's; only then are the rest matched by
        // address alone (a server out of the tables, such as one quiesced or down).
        let wanted_servers: Vec<(ServiceMapKey, Ipv4Addr)> = services
            .iter()
            .flat_map(|service| {
                let key = service.key();
                service
                    .real_servers
                    .iter()
                    .map(|rs| rs.address)
                    .chain(sorry_server(service).map(|sorry| sorry.address))
                    .map(move |address| (key, address))
            })
            .collect();
        let named: HashMap<ServiceMapKey, HashSet<u32>> = claims
            .services
            .iter()
            .map(|(key, (_, table))| (*key, table.iter().copied().collect()))
            .collect();
        for by_table in [true, false] {
            for &(key, address) in &wanted_servers {
                if claims.real_servers.contains_key(&(key, address)) {
                    continue;
                }
                let found = unmatched.iter().position(|(id, entry)| {
                    real_server_address(entry.addr) == IpAddr::V4(address)
                        && (!by_table || named.get(&key).is_some_and(|ids| ids.contains(id)))
                });
                if let Some(at) = found {
                    let (id, entry) = unmatched.swap_remove(at);
                    claims.real_servers.insert((key, address), (id, entry));
                }
            }
        }
        adoption.services_kept = claims.services.len();
        adoption.real_servers_kept = claims.real_servers.len();
        adoption.real_servers_retired = unmatched.len();
        model
            .retired_real_servers
            .extend(unmatched.into_iter().map(|(id, entry)| Retired {
                id,
                written: Some(entry),
            }));

        model.claims = claims;
        let applied = model.apply(services);
        model.claims = Claims::default();
        applied?;
        Ok((model, adoption))
    }
}

#[cfg(test)]
mod tests {
    use lvs_common::REAL_SERVER_USABLE;

    use super::*;
    use crate::{
        base::mac::MacAddr,
        logic::{
            config,
            dataplane::{DataPlane as _, FakeDataPlane},
            model::Neighbour,
        },
    };

    fn services(text: &str) -> Vec<Service> {
        config::parse(text, "test.toml")
            .expect("valid config")
            .services
    }

    const TWO: &str = r#"
[director]
interface = "eth0"

[[virtual_server]]
address = "10.0.0.100"
port = 80
lb_algo = "mh"

[[virtual_server.real_server]]
address = "10.0.0.11"

[[virtual_server.real_server]]
address = "10.0.0.12"

[[virtual_server]]
address = "10.0.0.100"
port = 443
lb_algo = "rr"

[[virtual_server.real_server]]
address = "10.0.0.12"
"#;

    fn resolve_all(model: &mut Model) {
        for (n, address) in model.real_server_addresses().into_iter().enumerate() {
            let mac = MacAddr([2, 0, 0, 0, 0, n as u8 + 1]);
            model.set_neighbour(address, Neighbour::Resolved { mac });
        }
    }

    /// A first director's data plane after a reload that freed and reused ids, so that a
    /// fresh model of the same config would hand out different ids and generations.
    fn running_after_changes() -> (FakeDataPlane, HashMap<u32, u32>) {
        let mut dataplane = FakeDataPlane::default();
        let reordered = TWO.replacen("10.0.0.11", "10.0.0.13", 1);
        let mut first = Model::new(&services(&reordered)).unwrap();
        resolve_all(&mut first);
        first.sync(&mut dataplane).unwrap();
        first.apply(&services(TWO)).unwrap();
        resolve_all(&mut first);
        first.sync(&mut dataplane).unwrap();
        (dataplane, first.generations())
    }

    #[test]
    fn a_restart_with_the_same_config_keeps_ids_and_generations_and_writes_nothing() {
        let (mut dataplane, generations) = running_after_changes();
        dataplane.adopted = true;
        let previous = dataplane.previous().unwrap().unwrap();
        let slot_writes = dataplane.slot_writes;
        let before = (dataplane.services.clone(), dataplane.real_servers.clone());

        let (mut second, adoption) = Model::adopt(&services(TWO), &previous).unwrap();
        resolve_all(&mut second);
        assert_eq!(second.generations(), generations);
        assert_eq!(adoption.services_kept, 2);
        assert_eq!(adoption.real_servers_kept, 3);
        // The first director cleared the server it removed; that entry is retired again,
        // which writes nothing since it is already unusable.
        assert_eq!(adoption.real_servers_retired, 1);
        let report = second.sync(&mut dataplane).unwrap();
        assert_eq!(report.real_servers_written, 0, "{report:?}");
        assert_eq!(report.services_installed, 0);
        assert_eq!(dataplane.slot_writes, slot_writes, "no slot rewritten");
        assert_eq!(
            (dataplane.services.clone(), dataplane.real_servers.clone()),
            before
        );
        assert!(
            dataplane.zeroed_services.len() == 2,
            "counters are not zeroed again"
        );
    }

    #[test]
    fn what_the_new_config_drops_is_cleared_and_new_servers_get_fresh_id_generations() {
        let (mut dataplane, generations) = running_after_changes();
        dataplane.adopted = true;
        let previous = dataplane.previous().unwrap().unwrap();
        let http_only = TWO
            .split("[[virtual_server]]\naddress = \"10.0.0.100\"\nport = 443")
            .next()
            .unwrap();
        let config =
            format!("{http_only}\n[[virtual_server.real_server]]\naddress = \"10.0.0.14\"\n");

        let (mut second, adoption) = Model::adopt(&services(&config), &previous).unwrap();
        resolve_all(&mut second);
        assert_eq!(adoption.services_retired, 1);
        assert_eq!(adoption.real_servers_kept, 2);
        second.sync(&mut dataplane).unwrap();
        assert_eq!(
            dataplane.services.len(),
            1,
            "the dropped service is removed"
        );
        for (id, generation) in second.generations() {
            let address = real_server_address(dataplane.real_servers[&id].addr);
            if address == Ipv4Addr::new(10, 0, 0, 14) {
                assert_ne!(
                    generations.get(&id),
                    Some(&generation),
                    "no old flow can reach it"
                );
            } else {
                assert_eq!(generations.get(&id), Some(&generation), "{address} kept");
            }
        }
        let mut usable: Vec<IpAddr> = dataplane
            .real_servers
            .values()
            .filter(|e| e.flags & REAL_SERVER_USABLE != 0)
            .map(|e| real_server_address(e.addr))
            .collect();
        usable.sort();
        let expected: Vec<Ipv4Addr> = [11, 12, 14].map(|n| Ipv4Addr::new(10, 0, 0, n)).into();
        assert_eq!(usable, expected, "the dropped service's server is cleared");
    }
}
