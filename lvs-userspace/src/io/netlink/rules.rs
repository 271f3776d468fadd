//! The pure rules of neighbours, for IPv4 (ARP) and IPv6 (NDP) alike: which entry a
//! kernel message is about, what an entry means for forwarding, how a real server's state
//! moves on, and which addresses are on the interface's link. Tested without root.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use netlink_packet_route::neighbour::{
    NeighbourAddress, NeighbourAttribute, NeighbourMessage, NeighbourState,
};

use super::NeighbourEntry;
use crate::{base::mac::MacAddr, logic::model::Neighbour};

/// The prefix length of a host address of this family: 32 or 128.
pub fn host_prefix(address: IpAddr) -> u8 {
    match address {
        IpAddr::V4(_) => 32,
        IpAddr::V6(_) => 128,
    }
}

/// The entry a neighbour message is about, for the IPv4 and IPv6 tables; None for other
/// tables (such as a bridge's forwarding database) and for messages without an address.
pub fn neighbour_entry(message: &NeighbourMessage) -> Option<NeighbourEntry> {
    let mut address = None;
    let mut mac = None;
    for attribute in &message.attributes {
        match attribute {
            NeighbourAttribute::Destination(NeighbourAddress::Inet(v4)) => {
                address = Some(IpAddr::V4(*v4));
            }
            NeighbourAttribute::Destination(NeighbourAddress::Inet6(v6)) => {
                address = Some(IpAddr::V6(*v6));
            }
            NeighbourAttribute::LinkLayerAddress(bytes) => {
                mac = <[u8; 6]>::try_from(bytes.as_slice()).ok();
            }
            _ => {}
        }
    }
    Some(NeighbourEntry {
        address: address?,
        if_index: message.header.ifindex,
        state: message.header.state,
        mac,
    })
}

/// Whether lvs may ask the kernel to resolve an address again (NTF_USE, which can rewrite the
/// entry). Never for an entry the kernel does not manage: PERMANENT and NOARP entries are
/// static, set by an operator or another tool, and are used as they are; only entries the
/// kernel resolves and ages (or none yet) are refreshed.
pub fn may_refresh(entry: Option<&NeighbourEntry>) -> bool {
    !entry.is_some_and(|e| matches!(e.state, NeighbourState::Permanent | NeighbourState::Noarp))
}

/// What a neighbour entry means for forwarding, the same for ARP and NDP entries. Entries
/// that hold a MAC the kernel itself would use (reachable, stale, being re-probed, static)
/// are usable; an entry the kernel gave up on, or one still waiting for its first answer, is
/// not.
pub fn classify(entry: Option<&NeighbourEntry>) -> Neighbour {
    let Some(entry) = entry else {
        return Neighbour::Unresolved {
            reason: "no neighbour entry yet".into(),
        };
    };
    let usable = matches!(
        entry.state,
        NeighbourState::Reachable
            | NeighbourState::Stale
            | NeighbourState::Delay
            | NeighbourState::Probe
            | NeighbourState::Permanent
            | NeighbourState::Noarp
    );
    // The protocol that resolves the address, in the words an operator looks for.
    let reply = match entry.address {
        IpAddr::V4(_) => "ARP reply",
        IpAddr::V6(_) => "neighbour advertisement",
    };
    match (usable, entry.mac) {
        (true, Some(mac)) if mac != [0; 6] => Neighbour::Resolved { mac: MacAddr(mac) },
        _ => Neighbour::Unresolved {
            reason: match entry.state {
                NeighbourState::Failed => format!("no {reply} (neighbour FAILED)"),
                NeighbourState::Incomplete => format!("waiting for a {reply}"),
                other => format!("neighbour state {other:?}"),
            },
        },
    }
}

/// The next state of a real server's neighbour, given the previous one and the kernel's
/// entry now. A known MAC is kept while the kernel is merely re-resolving (the entry was
/// garbage-collected, or is waiting for a reply): frames the data plane sends never refresh
/// the kernel's entries, so they age and vanish even while the server is fine. Only the
/// kernel giving up (FAILED) takes a server out.
pub fn next_neighbour(
    previous: &Neighbour,
    entry: Option<&NeighbourEntry>,
    on_link: bool,
) -> Neighbour {
    if !on_link {
        return Neighbour::OffLink;
    }
    let fresh = classify(entry);
    let kernel_gave_up = entry.is_some_and(|e| e.state == NeighbourState::Failed);
    match (&fresh, previous) {
        (Neighbour::Unresolved { .. }, Neighbour::Resolved { .. }) if !kernel_gave_up => {
            previous.clone()
        }
        _ => fresh,
    }
}

/// Whether `address` is on one of an interface's networks, i.e. reachable by L2. Networks of
/// the other family never match, and a host address (/32, /128: a VIP) is no segment
/// anything else lives on. An IPv6 link-local address (fe80::/10) is on-link on any
/// interface with IPv6: every such interface has its link-local network, and the address is
/// only meaningful on the link it is used on.
pub fn on_link<N: Into<IpAddr> + Copy>(address: impl Into<IpAddr>, networks: &[(N, u8)]) -> bool {
    let address = address.into();
    let networks = networks
        .iter()
        .map(|&(network, prefix)| (network.into(), prefix));
    if let IpAddr::V6(v6) = address {
        if v6.is_unicast_link_local() {
            return networks
                .clone()
                .any(|(network, _): (IpAddr, u8)| network.is_ipv6());
        }
    }
    networks
        .clone()
        .any(|(network, prefix)| same_network(address, network, prefix))
}

/// `on_link` against the interface's networks of `address`'s own family.
pub fn on_link_of_family(
    address: IpAddr,
    networks: &[(Ipv4Addr, u8)],
    networks6: &[(Ipv6Addr, u8)],
) -> bool {
    match address {
        IpAddr::V4(_) => on_link(address, networks),
        IpAddr::V6(_) => on_link(address, networks6),
    }
}

/// Whether two addresses of one family share their first `prefix` bits, for a prefix that
/// makes a segment (not 0, shorter than a host address).
fn same_network(address: IpAddr, network: IpAddr, prefix: u8) -> bool {
    match (address, network) {
        (IpAddr::V4(address), IpAddr::V4(network)) if (1..32).contains(&prefix) => {
            let mask = u32::MAX << (32 - u32::from(prefix));
            u32::from(network) & mask == u32::from(address) & mask
        }
        (IpAddr::V6(address), IpAddr::V6(network)) if (1..128).contains(&prefix) => {
            let mask = u128::MAX << (128 - u32::from(prefix));
            u128::from(network) & mask == u128::from(address) & mask
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, Ipv6Addr};

    use netlink_packet_route::AddressFamily;

    use super::*;
    use crate::io::netlink::LinkInfo;

    fn entry(state: NeighbourState, mac: Option<[u8; 6]>) -> NeighbourEntry {
        NeighbourEntry {
            address: Ipv4Addr::new(10, 0, 0, 11).into(),
            if_index: 2,
            state,
            mac,
        }
    }

    fn entry6(state: NeighbourState, mac: Option<[u8; 6]>) -> NeighbourEntry {
        NeighbourEntry {
            address: ip("2001:db8::11"),
            ..entry(state, mac)
        }
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    /// A neighbour message as the kernel sends it (RTM_NEWNEIGH), for one address.
    fn message(address: NeighbourAddress, state: NeighbourState, mac: &[u8]) -> NeighbourMessage {
        let mut message = NeighbourMessage::default();
        message.header.family = match address {
            NeighbourAddress::Inet6(_) => AddressFamily::Inet6,
            _ => AddressFamily::Inet,
        };
        message.header.ifindex = 2;
        message.header.state = state;
        message
            .attributes
            .push(NeighbourAttribute::Destination(address));
        message
            .attributes
            .push(NeighbourAttribute::LinkLayerAddress(mac.to_vec()));
        message
    }

    #[test]
    fn ipv6_neighbour_messages_decode_like_ipv4_ones() {
        let mac = [2, 0, 0, 0, 0, 0x11];
        let v6 = message(
            NeighbourAddress::Inet6("2001:db8::11".parse().unwrap()),
            NeighbourState::Reachable,
            &mac,
        );
        assert_eq!(
            neighbour_entry(&v6),
            Some(entry6(NeighbourState::Reachable, Some(mac)))
        );
        let v4 = message(
            NeighbourAddress::Inet(Ipv4Addr::new(10, 0, 0, 11)),
            NeighbourState::Stale,
            &mac,
        );
        assert_eq!(
            neighbour_entry(&v4),
            Some(entry(NeighbourState::Stale, Some(mac)))
        );
        // An entry without a usable link-layer address (a FAILED one has none) still
        // decodes, so its failure is seen; one without a destination does not.
        let failed = message(
            NeighbourAddress::Inet6("fe80::11".parse().unwrap()),
            NeighbourState::Failed,
            &[],
        );
        assert_eq!(
            neighbour_entry(&failed).map(|e| (e.address, e.mac)),
            Some((ip("fe80::11"), None))
        );
        assert_eq!(neighbour_entry(&NeighbourMessage::default()), None);
    }

    #[test]
    fn ipv6_entries_are_classified_by_the_same_rules() {
        let mac = [2, 0, 0, 0, 0, 0x11];
        for state in [
            NeighbourState::Reachable,
            NeighbourState::Stale,
            NeighbourState::Delay,
            NeighbourState::Probe,
            NeighbourState::Permanent,
            NeighbourState::Noarp,
        ] {
            assert_eq!(
                classify(Some(&entry6(state, Some(mac)))),
                Neighbour::Resolved { mac: MacAddr(mac) },
                "{state:?}"
            );
        }
        assert!(matches!(
            classify(Some(&entry6(NeighbourState::Failed, None))),
            Neighbour::Unresolved { reason } if reason == "no neighbour advertisement (neighbour FAILED)"
        ));
        assert!(matches!(
            classify(Some(&entry6(NeighbourState::Incomplete, None))),
            Neighbour::Unresolved { reason } if reason.contains("neighbour advertisement")
        ));
        let known = Neighbour::Resolved { mac: MacAddr(mac) };
        assert_eq!(next_neighbour(&known, None, true), known);
        assert_eq!(
            next_neighbour(
                &known,
                Some(&entry6(NeighbourState::Incomplete, None)),
                true
            ),
            known
        );
        assert!(matches!(
            next_neighbour(&known, Some(&entry6(NeighbourState::Failed, None)), true),
            Neighbour::Unresolved { .. }
        ));
        assert!(!may_refresh(Some(&entry6(
            NeighbourState::Permanent,
            Some(mac)
        ))));
        assert!(may_refresh(Some(&entry6(NeighbourState::Stale, Some(mac)))));
    }

    #[test]
    fn ipv6_on_link_follows_the_prefixes_and_link_local_is_always_on_link() {
        let networks: [(Ipv6Addr, u8); 3] = [
            ("2001:db8:77::1".parse().unwrap(), 64),
            ("2001:db8:77::100".parse().unwrap(), 128),
            ("fe80::1".parse().unwrap(), 64),
        ];
        assert!(on_link(ip("2001:db8:77::11"), &networks));
        assert!(!on_link(ip("2001:db8:78::11"), &networks));
        assert!(on_link(ip("fe80::11"), &networks));
        assert!(
            on_link(ip("fe80:0:0:1::11"), &networks),
            "link-local beyond fe80::/64 is still on the link"
        );
        assert!(
            !on_link(ip("2001:db8:77::11"), &networks[1..2]),
            "a /128 VIP is no segment"
        );
        assert!(
            !on_link(ip("fe80::11"), &[(Ipv4Addr::new(10, 0, 0, 1), 24)]),
            "an interface without IPv6 has no link-local network"
        );
        assert!(!on_link(ip("10.0.0.11"), &networks), "families never mix");
        assert!(
            !on_link(ip("::ffff:10.0.0.11"), &[(Ipv4Addr::new(10, 0, 0, 1), 24)]),
            "an IPv4-mapped address is IPv6, not on an IPv4 network"
        );
        let link = LinkInfo {
            index: 2,
            mac: [2, 0, 0, 0, 0, 1],
            networks: vec![(Ipv4Addr::new(10, 0, 0, 1), 24)],
            networks6: networks.to_vec(),
        };
        assert!(link.on_link(ip("10.0.0.11")));
        assert!(link.on_link(Ipv4Addr::new(10, 0, 0, 11)));
        assert!(link.on_link(ip("2001:db8:77::11")));
        assert!(link.on_link(ip("fe80::11")));
        assert!(!link.on_link(ip("2001:db8:78::11")));
        assert!(!link.on_link(ip("10.0.1.11")));
    }

    #[test]
    fn host_prefixes_follow_the_family() {
        assert_eq!(host_prefix(ip("10.0.0.1")), 32);
        assert_eq!(host_prefix(ip("2001:db8::1")), 128);
    }

    #[test]
    fn static_entries_are_never_refreshed() {
        assert!(may_refresh(None), "no entry yet: ask for one");
        for state in [
            NeighbourState::Reachable,
            NeighbourState::Stale,
            NeighbourState::Delay,
            NeighbourState::Probe,
            NeighbourState::Failed,
            NeighbourState::Incomplete,
        ] {
            assert!(may_refresh(Some(&entry(state, None))), "{state:?}");
        }
        for state in [NeighbourState::Permanent, NeighbourState::Noarp] {
            let mac = Some([2, 0, 0, 0, 0, 0x11]);
            assert!(!may_refresh(Some(&entry(state, mac))), "{state:?}");
        }
    }

    #[test]
    fn usable_states_with_a_mac_resolve() {
        let mac = [2, 0, 0, 0, 0, 0x11];
        for state in [
            NeighbourState::Reachable,
            NeighbourState::Stale,
            NeighbourState::Delay,
            NeighbourState::Probe,
            NeighbourState::Permanent,
        ] {
            assert_eq!(
                classify(Some(&entry(state, Some(mac)))),
                Neighbour::Resolved { mac: MacAddr(mac) },
                "{state:?}"
            );
        }
    }

    #[test]
    fn failed_incomplete_and_missing_entries_do_not_resolve() {
        assert!(matches!(
            classify(Some(&entry(NeighbourState::Failed, None))),
            Neighbour::Unresolved { reason } if reason.contains("FAILED")
        ));
        assert!(matches!(
            classify(Some(&entry(NeighbourState::Incomplete, None))),
            Neighbour::Unresolved { .. }
        ));
        assert!(matches!(classify(None), Neighbour::Unresolved { .. }));
        // A usable state without an address is still unusable.
        assert!(matches!(
            classify(Some(&entry(NeighbourState::Reachable, None))),
            Neighbour::Unresolved { .. }
        ));
    }

    #[test]
    fn a_known_mac_survives_re_resolution_but_not_failure() {
        let mac = [2, 0, 0, 0, 0, 0x11];
        let known = Neighbour::Resolved { mac: MacAddr(mac) };
        assert_eq!(
            next_neighbour(&known, None, true),
            known,
            "entry garbage-collected"
        );
        assert_eq!(
            next_neighbour(&known, Some(&entry(NeighbourState::Incomplete, None)), true),
            known
        );
        assert!(matches!(
            next_neighbour(&known, Some(&entry(NeighbourState::Failed, None)), true),
            Neighbour::Unresolved { .. }
        ));
        let moved = [2, 0, 0, 0, 0, 0x99];
        assert_eq!(
            next_neighbour(
                &known,
                Some(&entry(NeighbourState::Reachable, Some(moved))),
                true
            ),
            Neighbour::Resolved {
                mac: MacAddr(moved)
            },
            "a new MAC is followed"
        );
        assert_eq!(next_neighbour(&known, None, false), Neighbour::OffLink);
        assert!(matches!(
            next_neighbour(&Neighbour::Unknown, None, true),
            Neighbour::Unresolved { .. }
        ));
    }

    #[test]
    fn on_link_follows_the_interface_networks_and_ignores_host_routes() {
        let networks = [
            (Ipv4Addr::new(10, 0, 0, 1), 24),
            (Ipv4Addr::new(10, 0, 0, 100), 32),
        ];
        assert!(on_link(Ipv4Addr::new(10, 0, 0, 11), &networks));
        assert!(!on_link(Ipv4Addr::new(10, 0, 1, 11), &networks));
        assert!(!on_link(Ipv4Addr::new(192, 0, 2, 1), &networks));
        assert!(!on_link(
            Ipv4Addr::new(10, 0, 0, 11),
            &[(Ipv4Addr::new(10, 0, 0, 100), 32)]
        ));
    }
}
