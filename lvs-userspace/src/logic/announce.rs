//! Which VIPs this director announces to the routers (issue 15: active/active behind ECMP).
//!
//! A VIP is announced only while the data plane forwards and one of its services has its
//! quorum (keepalived's `quorum`, as health checking decides it). A VIP with several services
//! (ports, protocols) is announced while any of them has its quorum: a route carries the
//! address, not the port, and withdrawing it would take down the services that still work.
//! The routers then spread flows over the directors that announce it; a director that stops
//! announcing gets no new flows once the routers withdraw it.
//!
//! lvs announces by putting a route for each announced VIP in a routing table of its own
//! (`[bgp] route_table`), marked with its own route protocol; the BGP daemon (BIRD) reads that
//! table and announces what it finds (see `bird` for the snippet). The decision is here, pure;
//! the routes are written by `io::netlink` and the daemon keeps the two in line.

use std::{collections::BTreeSet, net::Ipv4Addr};

use serde::{Deserialize, Serialize};

use crate::base::values::{HoldTime, RouteTable};

/// The route protocol number (`ip route ... proto 245`) that marks lvs's routes, so that the
/// daemon finds its own routes after a restart and BIRD's filter takes only them. Unassigned
/// in `/etc/iproute2/rt_protos` (BIRD itself uses 12).
pub const ROUTE_PROTOCOL: u8 = 245;

/// The `[bgp]` section: where the announced routes go, and the hold time the generated BIRD
/// snippet asks for. Which routers to peer with and the AS numbers are BIRD's business.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BgpConfig {
    pub route_table: RouteTable,
    pub hold_time: HoldTime,
}

impl Default for BgpConfig {
    fn default() -> Self {
        Self {
            route_table: RouteTable::DEFAULT,
            hold_time: HoldTime::DEFAULT,
        }
    }
}

/// The VIPs to announce: none unless the data plane `forwards`; otherwise every VIP of
/// `services` (each a VIP and whether that service has its quorum) that has at least one
/// service with its quorum.
pub fn wanted(
    forwards: bool,
    services: impl IntoIterator<Item = (Ipv4Addr, bool)>,
) -> BTreeSet<Ipv4Addr> {
    if !forwards {
        return BTreeSet::new();
    }
    services
        .into_iter()
        .filter(|&(_, quorum)| quorum)
        .map(|(vip, _)| vip)
        .collect()
}

/// What to change to go from the routes `announced` to the `wanted` ones.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Changes {
    pub announce: Vec<Ipv4Addr>,
    pub withdraw: Vec<Ipv4Addr>,
}

impl Changes {
    pub fn between(announced: &BTreeSet<Ipv4Addr>, wanted: &BTreeSet<Ipv4Addr>) -> Self {
        Self {
            announce: wanted.difference(announced).copied().collect(),
            withdraw: announced.difference(wanted).copied().collect(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.announce.is_empty() && self.withdraw.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 10);
    const B: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 11);

    fn set(vips: &[Ipv4Addr]) -> BTreeSet<Ipv4Addr> {
        vips.iter().copied().collect()
    }

    #[test]
    fn a_vip_is_announced_while_the_data_plane_forwards_and_a_service_has_its_quorum() {
        /// Whether the data plane forwards, each service's VIP and quorum, what is announced.
        type Case<'a> = (bool, &'a [(Ipv4Addr, bool)], &'a [Ipv4Addr]);
        let cases: &[Case<'_>] = &[
            (true, &[(A, true), (B, true)], &[A, B]),
            (true, &[(A, true), (B, false)], &[A]),
            (true, &[(A, false), (B, false)], &[]),
            (false, &[(A, true), (B, true)], &[]),
            (true, &[], &[]),
            // Several services on one VIP: announced while any has its quorum.
            (true, &[(A, false), (A, true)], &[A]),
            (true, &[(A, true), (A, false)], &[A]),
            (true, &[(A, false), (A, false)], &[]),
        ];
        for &(forwards, services, announced) in cases {
            assert_eq!(
                wanted(forwards, services.iter().copied()),
                set(announced),
                "forwards {forwards}, services {services:?}"
            );
        }
    }

    #[test]
    fn changes_announce_what_is_missing_and_withdraw_what_is_not_wanted() {
        let changes = Changes::between(&set(&[A]), &set(&[B]));
        assert_eq!(changes.announce, vec![B]);
        assert_eq!(changes.withdraw, vec![A]);
        assert!(Changes::between(&set(&[A, B]), &set(&[B, A])).is_empty());
        assert_eq!(
            Changes::between(&set(&[]), &set(&[A, B])).announce,
            vec![A, B]
        );
    }
}
