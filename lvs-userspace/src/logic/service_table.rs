//! Where each service goes in its family's service table (`lvs_common::service_table` has the
//! table's rules and why the data plane reads it): pure placement, written to the map by
//! `io::bpf`.

use lvs_common::{
    Address, ServiceEntry, ServiceKey,
    service_table::{SERVICE_TABLE_PROBES, ServiceSlot, home_slot, is_empty, probe_slot},
};
use thiserror::Error;

/// The services could not all be placed within `SERVICE_TABLE_PROBES` slots of their homes.
/// Only keys chosen to collide do this; the data plane then looks services up in its hash map.
#[derive(Clone, Copy, Debug, Error, PartialEq, Eq)]
#[error("a service found no free slot of the service table within {probes} slots of its home")]
pub struct Crowded {
    pub probes: u32,
}

/// The occupied slots of a table holding `services`: `(slot, what it holds)`, every other slot
/// empty. Services are placed in key order, each at the first empty slot from its home, so the
/// same services always make the same table, and no empty slot lies between a service's home
/// and its slot (a reader stops at the first empty one).
pub fn place<A: Address + Copy + Ord>(
    services: &[(ServiceKey<A>, ServiceEntry)],
) -> Result<Vec<(u32, ServiceSlot<A>)>, Crowded> {
    let mut sorted: Vec<&(ServiceKey<A>, ServiceEntry)> = services.iter().collect();
    sorted.sort_by_key(|(key, _)| *key);
    let mut placed: Vec<(u32, ServiceSlot<A>)> = Vec::with_capacity(services.len());
    for &&(key, entry) in &sorted {
        let home = home_slot(&key.addr, key.port, key.protocol);
        let free = (0..SERVICE_TABLE_PROBES)
            .map(|probe| probe_slot(home, probe))
            .find(|slot| placed.iter().all(|(taken, _)| taken != slot))
            .ok_or(Crowded {
                probes: SERVICE_TABLE_PROBES,
            })?;
        placed.push((free, ServiceSlot { key, entry }));
    }
    placed.sort_by_key(|(slot, _)| *slot);
    Ok(placed)
}

/// What the data plane finds for a frame to `key` in a table of `placed` slots: the reading
/// `lvs-ebpf`'s `find_service` does, for tests of the placement.
pub fn find<A: Address + Copy + PartialEq>(
    placed: &[(u32, ServiceSlot<A>)],
    key: &ServiceKey<A>,
) -> Option<ServiceEntry> {
    let home = home_slot(&key.addr, key.port, key.protocol);
    for probe in 0..SERVICE_TABLE_PROBES {
        let wanted = probe_slot(home, probe);
        let slot = placed
            .iter()
            .find(|(at, _)| *at == wanted)
            .map(|(_, s)| s)?;
        if is_empty(slot) {
            return None;
        }
        if slot.key == *key {
            return Some(slot.entry);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use lvs_common::{IPPROTO_TCP, IPPROTO_UDP, Ipv6Bytes, MAX_SERVICES};

    use super::*;

    fn entry(index: u32) -> ServiceEntry {
        ServiceEntry {
            index,
            flags: 0,
            ring_len: 0,
            persist_timeout_s: 0,
            persist_mask: [0xff; 16],
        }
    }

    fn key4(vip: [u8; 4], port: u16, protocol: u8) -> ServiceKey {
        ServiceKey {
            addr: vip,
            port: port.to_be_bytes(),
            protocol,
            _pad: 0,
        }
    }

    #[test]
    fn every_service_is_found_and_nothing_else() {
        // As many services as the data plane takes, many on neighbouring ports and VIPs.
        let services: Vec<(ServiceKey, ServiceEntry)> = (0..MAX_SERVICES)
            .map(|i| {
                let protocol = if i % 2 == 0 { IPPROTO_TCP } else { IPPROTO_UDP };
                let vip = [10, 0, 0, 100 + (i % 4) as u8];
                (key4(vip, 80 + (i / 4) as u16, protocol), entry(i))
            })
            .collect();
        let placed = place(&services).unwrap();
        assert_eq!(placed.len(), services.len());
        for (key, wanted) in &services {
            assert_eq!(find(&placed, key), Some(*wanted), "{key:?}");
        }
        for port in 1000..3000 {
            assert_eq!(
                find(&placed, &key4([10, 0, 0, 100], port, IPPROTO_TCP)),
                None
            );
        }
        assert_eq!(find(&placed, &key4([10, 0, 0, 100], 80, 0)), None);
    }

    #[test]
    fn the_same_services_make_the_same_table_in_any_order() {
        let mut services: Vec<(ServiceKey, ServiceEntry)> = (0..20)
            .map(|i| (key4([192, 0, 2, i as u8], 443, IPPROTO_TCP), entry(i)))
            .collect();
        let first = place(&services).unwrap();
        services.reverse();
        assert_eq!(place(&services).unwrap(), first);
    }

    #[test]
    fn services_sharing_a_home_take_the_next_slots_up_to_the_probes() {
        // Ports of one VIP whose home slots are all the same: keys chosen to collide.
        let vip = [10, 0, 0, 100];
        let home = |port: u16| home_slot(&vip, port.to_be_bytes(), IPPROTO_TCP);
        let target = home(80);
        let colliding: Vec<u16> = (80..=u16::MAX)
            .filter(|&port| home(port) == target)
            .take(SERVICE_TABLE_PROBES as usize + 1)
            .collect();
        assert_eq!(colliding.len(), SERVICE_TABLE_PROBES as usize + 1);
        let services: Vec<(ServiceKey, ServiceEntry)> = colliding
            .iter()
            .zip(0..)
            .map(|(&port, i)| (key4(vip, port, IPPROTO_TCP), entry(i)))
            .collect();

        let fitting = &services[..SERVICE_TABLE_PROBES as usize];
        let placed = place(fitting).unwrap();
        let slots: Vec<u32> = placed.iter().map(|(slot, _)| *slot).collect();
        let wanted: Vec<u32> = (0..SERVICE_TABLE_PROBES)
            .map(|probe| probe_slot(target, probe))
            .collect();
        let mut sorted_wanted = wanted.clone();
        sorted_wanted.sort_unstable();
        assert_eq!(slots, sorted_wanted);
        for (key, wanted) in fitting {
            assert_eq!(find(&placed, key), Some(*wanted));
        }

        assert_eq!(
            place(&services),
            Err(Crowded {
                probes: SERVICE_TABLE_PROBES,
            })
        );
    }

    #[test]
    fn ipv6_services_are_placed_by_their_folded_address() {
        let key6 = |last: u8, port: u16| ServiceKey::<Ipv6Bytes> {
            addr: [
                0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, last,
            ],
            port: port.to_be_bytes(),
            protocol: IPPROTO_TCP,
            _pad: 0,
        };
        let services: Vec<_> = (0..32u32)
            .map(|i| (key6(0x10 + i as u8, 80), entry(i)))
            .collect();
        let placed = place(&services).unwrap();
        for (key, wanted) in &services {
            assert_eq!(find(&placed, key), Some(*wanted));
        }
        assert_eq!(find(&placed, &key6(0x10, 81)), None);
    }
}
