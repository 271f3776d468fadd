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

use std::{
    collections::{BTreeMap, BTreeSet},
    net::IpAddr,
};

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
    services: impl IntoIterator<Item = (IpAddr, bool)>,
) -> BTreeSet<IpAddr> {
    if !forwards {
        return BTreeSet::new();
    }
    services
        .into_iter()
        .filter(|&(_, quorum)| quorum)
        .map(|(vip, _)| vip)
        .collect()
}

/// How long a director that runs a sync backup waits, once a VIP is wanted, before it
/// announces it: long enough for its peers to hear its heartbeat (every second) and send it
/// their whole connection tables (at their next sweep pass, every second for tables up to
/// 256k flows). A director that (re)joins the routers before it knows its peers' connections
/// would send the ones the rehash brings it to a real server of its own choosing, and the
/// real server would reset them.
pub const SYNC_SETTLE_NS: u64 = 3_000_000_000;

/// Holds back new announcements until they have been wanted for a while (see
/// [`SYNC_SETTLE_NS`]); a withdrawal, or a VIP already announced, is never held.
#[derive(Clone, Debug, Default)]
pub struct Settling {
    /// When each wanted VIP not yet announced was first wanted.
    since: BTreeMap<IpAddr, u64>,
}

impl Settling {
    /// Of the `wanted` VIPs, those to announce now: the `announced` ones, and the others once
    /// they have been wanted for `settle_ns`.
    pub fn ready(
        &mut self,
        wanted: &BTreeSet<IpAddr>,
        announced: &BTreeSet<IpAddr>,
        now_ns: u64,
        settle_ns: u64,
    ) -> BTreeSet<IpAddr> {
        self.since
            .retain(|vip, _| wanted.contains(vip) && !announced.contains(vip));
        let ready: BTreeSet<IpAddr> = wanted
            .iter()
            .copied()
            .filter(|vip| {
                if announced.contains(vip) {
                    return true;
                }
                let since = *self.since.entry(*vip).or_insert(now_ns);
                now_ns.saturating_sub(since) >= settle_ns
            })
            .collect();
        self.since.retain(|vip, _| !ready.contains(vip));
        ready
    }

    /// Whether a VIP waits to be announced.
    pub fn is_waiting(&self) -> bool {
        !self.since.is_empty()
    }

    /// Whether this VIP waits to be announced.
    pub fn waits(&self, vip: IpAddr) -> bool {
        self.since.contains_key(&vip)
    }
}

/// What to change to go from the routes `announced` to the `wanted` ones.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Changes {
    pub announce: Vec<IpAddr>,
    pub withdraw: Vec<IpAddr>,
}

impl Changes {
    pub fn between(announced: &BTreeSet<IpAddr>, wanted: &BTreeSet<IpAddr>) -> Self {
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
    use std::net::Ipv4Addr;

    use super::*;

    const A: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 10));
    const B: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 11));

    fn set(vips: &[IpAddr]) -> BTreeSet<IpAddr> {
        vips.iter().copied().collect()
    }

    #[test]
    fn a_vip_is_announced_while_the_data_plane_forwards_and_a_service_has_its_quorum() {
        /// Whether the data plane forwards, each service's VIP and quorum, what is announced.
        type Case<'a> = (bool, &'a [(IpAddr, bool)], &'a [IpAddr]);
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
    fn a_new_announcement_waits_to_be_wanted_for_the_settle_time_and_a_kept_one_does_not() {
        const SETTLE: u64 = 3_000;
        let mut settling = Settling::default();
        let none = set(&[]);
        assert_eq!(settling.ready(&set(&[A]), &none, 1_000, SETTLE), none);
        assert!(settling.is_waiting());
        assert_eq!(settling.ready(&set(&[A]), &none, 3_999, SETTLE), none);
        assert_eq!(settling.ready(&set(&[A]), &none, 4_000, SETTLE), set(&[A]));
        // Announced: kept whatever the time; B, wanted later, waits its own time.
        assert_eq!(
            settling.ready(&set(&[A, B]), &set(&[A]), 4_000, SETTLE),
            set(&[A])
        );
        // No longer wanted resets the wait.
        assert_eq!(
            settling.ready(&set(&[A]), &set(&[A]), 5_000, SETTLE),
            set(&[A])
        );
        assert_eq!(
            settling.ready(&set(&[A, B]), &set(&[A]), 6_000, SETTLE),
            set(&[A])
        );
        assert_eq!(
            settling.ready(&set(&[A, B]), &set(&[A]), 9_000, SETTLE),
            set(&[A, B])
        );
        // Without a settle time nothing waits.
        let mut settling = Settling::default();
        assert_eq!(settling.ready(&set(&[A]), &none, 0, 0), set(&[A]));
        assert!(!settling.is_waiting());
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
