//! The routes through which the director announces its VIPs (see `logic::announce`): a
//! `blackhole` route for each announced VIP/32 (IPv6: /128), in lvs's routing table, marked with lvs's
//! route protocol. The BGP daemon's kernel protocol reads that table and announces each
//! route's prefix. A blackhole route in a table no rule points to changes nothing in how the
//! director itself forwards; its only reader is the BGP daemon.
//!
//! The routes live in the kernel, not in the daemon: they stay while the daemon restarts
//! (the data plane forwards meanwhile), and the next daemon finds them by their protocol.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use futures::TryStreamExt as _;
use netlink_packet_route::{
    AddressFamily,
    route::{RouteAddress, RouteAttribute, RouteMessage, RouteProtocol, RouteScope, RouteType},
};
use rtnetlink::RouteMessageBuilder;

use super::{Netlink, NetlinkError, is_errno, request};
use crate::logic::announce::ROUTE_PROTOCOL;

impl Netlink {
    /// The VIPs announced, in any table: every lvs route of either family, as (table, VIP).
    pub async fn announced(&self) -> Result<Vec<(u32, IpAddr)>, NetlinkError> {
        let mut routes: Vec<RouteMessage> = Vec::new();
        for query in [
            RouteMessageBuilder::<Ipv4Addr>::new().build(),
            RouteMessageBuilder::<Ipv6Addr>::new().build(),
        ] {
            let found: Vec<RouteMessage> = self
                .handle
                .route()
                .get(query)
                .execute()
                .try_collect()
                .await
                .map_err(request("listing routes"))?;
            routes.extend(found);
        }
        let mut vips: Vec<(u32, IpAddr)> = routes.iter().filter_map(announced_vip).collect();
        vips.sort_unstable();
        vips.dedup();
        Ok(vips)
    }

    /// Announces `vip`: puts its route in `table` (replacing one that is there).
    pub async fn announce(&self, table: u32, vip: IpAddr) -> Result<(), NetlinkError> {
        self.handle
            .route()
            .add(route(table, vip))
            .replace()
            .execute()
            .await
            .map_err(request(format!("announcing {vip} (table {table})")))
    }

    /// Withdraws `vip`: takes its route out of `table`, if it is there.
    pub async fn withdraw(&self, table: u32, vip: IpAddr) -> Result<(), NetlinkError> {
        match self.handle.route().del(route(table, vip)).execute().await {
            Ok(()) => Ok(()),
            Err(error) if is_errno(&error, libc::ESRCH) => Ok(()),
            Err(source) => Err(request(format!("withdrawing {vip} (table {table})"))(
                source,
            )),
        }
    }
}

/// The route that announces `vip` in `table`: the VIP's host route (/32 or /128).
fn route(table: u32, vip: IpAddr) -> RouteMessage {
    match vip {
        IpAddr::V4(vip) => RouteMessageBuilder::<Ipv4Addr>::new()
            .destination_prefix(vip, 32)
            .table_id(table)
            .protocol(RouteProtocol::Other(ROUTE_PROTOCOL))
            .scope(RouteScope::Universe)
            .kind(RouteType::BlackHole)
            .build(),
        IpAddr::V6(vip) => RouteMessageBuilder::<Ipv6Addr>::new()
            .destination_prefix(vip, 128)
            .table_id(table)
            .protocol(RouteProtocol::Other(ROUTE_PROTOCOL))
            .scope(RouteScope::Universe)
            .kind(RouteType::BlackHole)
            .build(),
    }
}

/// The table and VIP of a route, when it is an lvs route: a host route (/32 or /128) of
/// lvs's protocol (a table above 255 is only in the `RTA_TABLE` attribute).
fn announced_vip(route: &RouteMessage) -> Option<(u32, IpAddr)> {
    let header = &route.header;
    let host_length = match header.address_family {
        AddressFamily::Inet => 32,
        AddressFamily::Inet6 => 128,
        _ => return None,
    };
    if header.destination_prefix_length != host_length
        || header.protocol != RouteProtocol::Other(ROUTE_PROTOCOL)
    {
        return None;
    }
    let mut route_table = u32::from(header.table);
    let mut destination = None;
    for attribute in &route.attributes {
        match attribute {
            RouteAttribute::Table(id) => route_table = *id,
            RouteAttribute::Destination(RouteAddress::Inet(address)) => {
                destination = Some(IpAddr::V4(*address));
            }
            RouteAttribute::Destination(RouteAddress::Inet6(address)) => {
                destination = Some(IpAddr::V6(*address));
            }
            _ => {}
        }
    }
    destination.map(|vip| (route_table, vip))
}

#[cfg(test)]
mod tests {
    use super::*;

    const VIP: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 10));

    #[test]
    fn an_announcing_route_is_read_back_as_its_table_and_vip() {
        let vip6 = IpAddr::V6("2001:db8::10".parse().unwrap());
        for vip in [VIP, vip6] {
            for table in [1, 245, 256, 100_000] {
                let message = route(table, vip);
                assert_eq!(message.header.kind, RouteType::BlackHole);
                assert_eq!(announced_vip(&message), Some((table, vip)), "table {table}");
            }
        }
        let mut wider = route(245, vip6);
        wider.header.destination_prefix_length = 64;
        assert_eq!(announced_vip(&wider), None);
    }

    #[test]
    fn routes_of_other_protocols_or_prefixes_are_not_lvss() {
        let mut other = route(245, VIP);
        other.header.protocol = RouteProtocol::Bird;
        assert_eq!(announced_vip(&other), None);
        let mut wider = route(245, VIP);
        wider.header.destination_prefix_length = 24;
        assert_eq!(announced_vip(&wider), None);
    }
}
