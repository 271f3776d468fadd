//! What the controller asks of the kernel's routing netlink: the director interface, its
//! addresses (to bring VIPs up and to know its subnets), the neighbour table (real
//! servers' MACs), and the routes that announce the VIPs to a BGP daemon (`routes`). Pure interpretation of the answers (`rules`: `classify`, `on_link`, ...) is
//! kept apart from the requests so it is tested without root.

use std::{
    future::Future,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
};

use futures::{Stream, StreamExt as _, TryStreamExt as _, stream::BoxStream};
use netlink_packet_route::{
    AddressFamily, RouteNetlinkMessage,
    address::{AddressAttribute, AddressFlags, AddressHeaderFlags, AddressMessage},
    link::{LinkAttribute, LinkFlags, LinkMessage},
    neighbour::{NeighbourFlags, NeighbourMessage, NeighbourState},
};
use rtnetlink::{Handle, MulticastGroup, packet_core::NetlinkPayload};

mod routes;
mod rules;

pub use rules::{
    classify, host_prefix, may_refresh, neighbour_entry, next_neighbour, on_link, on_link_of_family,
};

/// Errors of netlink requests, with what was being done.
#[derive(Debug, thiserror::Error)]
pub enum NetlinkError {
    #[error("opening a netlink socket failed")]
    Socket(#[source] std::io::Error),
    #[error("no interface named {name:?}")]
    NoSuchInterface { name: String },
    #[error("interface {name:?} has no Ethernet address")]
    NoMac { name: String },
    #[error("{what} is not supported here")]
    Unsupported { what: String },
    #[error("{action} failed")]
    Request {
        action: String,
        #[source]
        source: rtnetlink::Error,
    },
}

/// The director's interface as the controller needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkInfo {
    pub index: u32,
    pub mac: [u8; 6],
    /// The IPv4 networks on the interface: (address, prefix length).
    pub networks: Vec<(Ipv4Addr, u8)>,
    /// The IPv6 networks on the interface, its link-local fe80::/64 among them.
    pub networks6: Vec<(Ipv6Addr, u8)>,
}

impl LinkInfo {
    /// Whether `address`, of either family, is reachable by L2 on this interface: on one of
    /// its networks of that family, or (IPv6) link-local while the interface has IPv6 at all.
    pub fn on_link(&self, address: impl Into<IpAddr>) -> bool {
        on_link_of_family(address.into(), &self.networks, &self.networks6)
    }
}

/// One entry of the kernel's neighbour table, IPv4 (ARP) or IPv6 (NDP).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NeighbourEntry {
    pub address: IpAddr,
    pub if_index: u32,
    pub state: NeighbourState,
    pub mac: Option<[u8; 6]>,
}

/// A change reported by the kernel's neighbour notifications.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NeighbourEvent {
    Changed(NeighbourEntry),
    Deleted { address: IpAddr, if_index: u32 },
}

/// An interface of this network namespace, as the kernel lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InterfaceSummary {
    pub index: u32,
    pub name: String,
    pub loopback: bool,
}

/// An IPv4 or IPv6 address on an interface.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InterfaceAddress {
    pub if_index: u32,
    pub address: IpAddr,
    pub prefix: u8,
}

/// A connection to routing netlink.
#[derive(Clone)]
pub struct Netlink {
    handle: Handle,
}

fn request(action: impl Into<String>) -> impl FnOnce(rtnetlink::Error) -> NetlinkError {
    let action = action.into();
    move |source| NetlinkError::Request { action, source }
}

/// Whether a netlink error is the kernel's answer `errno` (such as EEXIST).
fn is_errno(error: &rtnetlink::Error, errno: i32) -> bool {
    matches!(error, rtnetlink::Error::NetlinkError(e) if e.raw_code() == -errno)
}

impl Netlink {
    /// Opens a connection; its driver runs as a task on the current tokio runtime.
    pub fn connect() -> Result<Self, NetlinkError> {
        let (connection, handle, _) = rtnetlink::new_connection().map_err(NetlinkError::Socket)?;
        tokio::spawn(connection);
        Ok(Self { handle })
    }

    /// Looks up an interface by name: its index, MAC and IPv4 and IPv6 networks.
    pub async fn link(&self, name: &str) -> Result<LinkInfo, NetlinkError> {
        let mut links = self
            .handle
            .link()
            .get()
            .match_name(name.to_owned())
            .execute();
        let no_such_interface = || NetlinkError::NoSuchInterface {
            name: name.to_owned(),
        };
        let link = match links.try_next().await {
            Ok(Some(link)) => link,
            // The kernel answers ENODEV for an unknown name; other errors are reported as such.
            Ok(None) => return Err(no_such_interface()),
            Err(error) if is_errno(&error, libc::ENODEV) => return Err(no_such_interface()),
            Err(source) => return Err(request(format!("looking up {name}"))(source)),
        };
        let mac = link
            .attributes
            .iter()
            .find_map(|attribute| match attribute {
                LinkAttribute::Address(bytes) => <[u8; 6]>::try_from(bytes.as_slice()).ok(),
                _ => None,
            })
            .ok_or_else(|| NetlinkError::NoMac {
                name: name.to_owned(),
            })?;
        let index = link.header.index;
        let (mut networks, mut networks6) = (Vec::new(), Vec::new());
        for message in self.address_messages(Some(index)).await? {
            match own_address(&message) {
                Some(IpAddr::V4(address)) => networks.push((address, message.header.prefix_len)),
                Some(IpAddr::V6(address)) => networks6.push((address, message.header.prefix_len)),
                None => {}
            }
        }
        Ok(LinkInfo {
            index,
            mac,
            networks,
            networks6,
        })
    }

    /// The kernel's address messages, of one interface or of all.
    async fn address_messages(
        &self,
        index: Option<u32>,
    ) -> Result<Vec<AddressMessage>, NetlinkError> {
        let mut request_builder = self.handle.address().get();
        if let Some(index) = index {
            request_builder = request_builder.set_link_index_filter(index);
        }
        let messages: Vec<AddressMessage> = request_builder
            .execute()
            .try_collect()
            .await
            .map_err(request("listing addresses"))?;
        Ok(messages
            .into_iter()
            .filter(|m| index.is_none_or(|index| m.header.index == index))
            .collect())
    }

    /// Adds `address/prefix` to an interface. Returns false when it was already there, so the
    /// caller knows not to remove it at exit.
    pub async fn add_address(
        &self,
        index: u32,
        address: Ipv4Addr,
        prefix: u8,
    ) -> Result<bool, NetlinkError> {
        self.add_ip(index, IpAddr::V4(address), prefix).await
    }

    /// Removes `address/prefix` from an interface, if it is there.
    pub async fn remove_address(
        &self,
        index: u32,
        address: Ipv4Addr,
        prefix: u8,
    ) -> Result<(), NetlinkError> {
        self.remove_ip(index, IpAddr::V4(address), prefix)
            .await
            .map(|_| ())
    }

    /// Puts a VIP on an interface as a host address: IPv4 as /32; IPv6 as /128 with
    /// IFA_F_NODAD, so it is usable at once (no tentative second) and duplicate address
    /// detection cannot fail it when a second director holds the same VIP on the segment.
    /// Returns false when it was already there, so the caller knows not to remove it later.
    pub async fn add_vip(&self, index: u32, vip: IpAddr) -> Result<bool, NetlinkError> {
        self.add_host_address(index, vip).await
    }

    /// Takes a VIP added by `add_vip` off the interface, if it is there; returns whether it was.
    pub async fn remove_vip(&self, index: u32, vip: IpAddr) -> Result<bool, NetlinkError> {
        self.remove_ip(index, vip, host_prefix(vip)).await
    }

    /// Adds a host address (/32 or /128) to an interface, IPv6 without DAD (see `add_vip`).
    /// Returns false when it was already there.
    pub async fn add_host_address(
        &self,
        index: u32,
        address: IpAddr,
    ) -> Result<bool, NetlinkError> {
        let prefix = host_prefix(address);
        let mut add = self.handle.address().add(index, address, prefix);
        if address.is_ipv6() {
            let message = add.message_mut();
            message.header.flags |= AddressHeaderFlags::Nodad;
            message
                .attributes
                .push(AddressAttribute::Flags(AddressFlags::Nodad));
        }
        match add.execute().await {
            Ok(()) => Ok(true),
            Err(error) if is_errno(&error, libc::EEXIST) => Ok(false),
            Err(source) => Err(request(format!("adding {address}/{prefix}"))(source)),
        }
    }

    /// Every interface of this network namespace.
    pub async fn interfaces(&self) -> Result<Vec<InterfaceSummary>, NetlinkError> {
        let links: Vec<LinkMessage> = self
            .handle
            .link()
            .get()
            .execute()
            .try_collect()
            .await
            .map_err(request("listing interfaces"))?;
        Ok(links
            .iter()
            .filter_map(|link| {
                let name = link.attributes.iter().find_map(|a| match a {
                    LinkAttribute::IfName(name) => Some(name.clone()),
                    _ => None,
                })?;
                Some(InterfaceSummary {
                    index: link.header.index,
                    name,
                    loopback: link.header.flags.contains(LinkFlags::Loopback),
                })
            })
            .collect())
    }

    /// Every IPv4 and IPv6 address of this network namespace.
    pub async fn addresses(&self) -> Result<Vec<InterfaceAddress>, NetlinkError> {
        Ok(self
            .address_messages(None)
            .await?
            .iter()
            .filter_map(|m| {
                Some(InterfaceAddress {
                    if_index: m.header.index,
                    address: own_address(m)?,
                    prefix: m.header.prefix_len,
                })
            })
            .collect())
    }

    /// Adds an IPv4 or IPv6 `address/prefix` to an interface. Returns false when it was
    /// already there, so the caller knows it is not its own to remove later.
    pub async fn add_ip(
        &self,
        index: u32,
        address: IpAddr,
        prefix: u8,
    ) -> Result<bool, NetlinkError> {
        match self
            .handle
            .address()
            .add(index, address, prefix)
            .execute()
            .await
        {
            Ok(()) => Ok(true),
            Err(error) if is_errno(&error, libc::EEXIST) => Ok(false),
            Err(source) => Err(request(format!("adding {address}/{prefix}"))(source)),
        }
    }

    /// Removes an IPv4 or IPv6 `address/prefix` from an interface; returns whether it was
    /// there.
    pub async fn remove_ip(
        &self,
        index: u32,
        address: IpAddr,
        prefix: u8,
    ) -> Result<bool, NetlinkError> {
        let mut removed = false;
        for message in self.address_messages(Some(index)).await? {
            if message.header.prefix_len == prefix && own_address(&message) == Some(address) {
                self.handle
                    .address()
                    .del(message)
                    .execute()
                    .await
                    .map_err(request(format!("removing {address}/{prefix}")))?;
                removed = true;
            }
        }
        Ok(removed)
    }

    /// The neighbour entries of an interface, IPv4 (ARP) and IPv6 (NDP) alike.
    pub async fn neighbours(&self, index: u32) -> Result<Vec<NeighbourEntry>, NetlinkError> {
        let mut entries = Vec::new();
        // One dump per family: the kernel's AF_UNSPEC dump would also walk tables lvs has no
        // use for (such as the multicast router's), and the two tables are all it needs.
        for family in [AddressFamily::Inet, AddressFamily::Inet6] {
            let messages: Vec<NeighbourMessage> = self
                .handle
                .neighbours()
                .get()
                .set_address_family(family)
                .execute()
                .try_collect()
                .await
                .map_err(request("listing neighbours"))?;
            entries.extend(
                messages
                    .iter()
                    .filter_map(neighbour_entry)
                    .filter(|entry| entry.if_index == index),
            );
        }
        Ok(entries)
    }

    /// The IPv6 proxy neighbour entries of this namespace (`ip -6 neigh show proxy`): the
    /// addresses it advertises for others where proxy NDP is on, as (interface, address).
    pub async fn proxied(&self) -> Result<Vec<(u32, IpAddr)>, NetlinkError> {
        let messages: Vec<NeighbourMessage> = self
            .handle
            .neighbours()
            .get()
            .proxies()
            .set_address_family(AddressFamily::Inet6)
            .execute()
            .try_collect()
            .await
            .map_err(request("listing proxy neighbours"))?;
        Ok(messages
            .iter()
            .filter_map(neighbour_entry)
            .map(|entry| (entry.if_index, entry.address))
            .collect())
    }

    /// Asks the kernel to resolve (or re-confirm) a neighbour, as if a packet were waiting
    /// for it (NTF_USE): an ARP request (IPv4) or a neighbour solicitation (IPv6) goes out
    /// and the answer lands in the neighbour table. This also keeps entries fresh, since
    /// frames the data plane sends never pass the kernel's neighbour code.
    pub async fn resolve(&self, index: u32, address: IpAddr) -> Result<(), NetlinkError> {
        self.handle
            .neighbours()
            .add(index, address)
            .state(NeighbourState::None)
            .flags(NeighbourFlags::Use)
            .replace()
            .execute()
            .await
            .map_err(request(format!("resolving {address}")))
    }
}

/// What the director daemon asks of routing netlink: its interface, the VIPs it adds and
/// removes, and the real servers' neighbour entries. The daemon is written against this
/// trait, so its logic runs against an in-memory stand-in in tests, without root.
///
pub trait DirectorNetlink: Sync {
    /// Looks up an interface by name: its index, MAC and IPv4 and IPv6 networks.
    fn link(&self, name: &str) -> impl Future<Output = Result<LinkInfo, NetlinkError>> + Send;
    /// Puts a VIP on the interface (IPv4 /32; IPv6 /128 without DAD); false when it was
    /// already there (then it is not ours to remove).
    fn add_vip(
        &self,
        index: u32,
        vip: IpAddr,
    ) -> impl Future<Output = Result<bool, NetlinkError>> + Send;
    /// Takes a VIP off the interface, if it is there.
    fn remove_vip(
        &self,
        index: u32,
        vip: IpAddr,
    ) -> impl Future<Output = Result<(), NetlinkError>> + Send;
    /// Asks the kernel to resolve or re-confirm a neighbour of either family (NTF_USE).
    fn resolve(
        &self,
        index: u32,
        address: IpAddr,
    ) -> impl Future<Output = Result<(), NetlinkError>> + Send;
    /// The neighbour entries of an interface, both families.
    fn neighbours(
        &self,
        index: u32,
    ) -> impl Future<Output = Result<Vec<NeighbourEntry>, NetlinkError>> + Send;
    /// The kernel's neighbour-table changes, from now on.
    fn neighbour_events(&self) -> Result<BoxStream<'static, NeighbourEvent>, NetlinkError>;
    /// The VIPs announced, in any routing table, as (table, VIP) (see `routes`).
    fn announced(&self) -> impl Future<Output = Result<Vec<(u32, IpAddr)>, NetlinkError>> + Send;
    /// Announces `vip` through routing table `table`.
    fn announce(
        &self,
        table: u32,
        vip: IpAddr,
    ) -> impl Future<Output = Result<(), NetlinkError>> + Send;
    /// Withdraws `vip` from routing table `table`, if it is announced there.
    fn withdraw(
        &self,
        table: u32,
        vip: IpAddr,
    ) -> impl Future<Output = Result<(), NetlinkError>> + Send;
}

impl DirectorNetlink for Netlink {
    async fn link(&self, name: &str) -> Result<LinkInfo, NetlinkError> {
        Netlink::link(self, name).await
    }

    async fn add_vip(&self, index: u32, vip: IpAddr) -> Result<bool, NetlinkError> {
        Netlink::add_vip(self, index, vip).await
    }

    async fn remove_vip(&self, index: u32, vip: IpAddr) -> Result<(), NetlinkError> {
        Netlink::remove_vip(self, index, vip).await.map(|_| ())
    }

    async fn resolve(&self, index: u32, address: IpAddr) -> Result<(), NetlinkError> {
        Netlink::resolve(self, index, address).await
    }

    async fn neighbours(&self, index: u32) -> Result<Vec<NeighbourEntry>, NetlinkError> {
        Netlink::neighbours(self, index).await
    }

    fn neighbour_events(&self) -> Result<BoxStream<'static, NeighbourEvent>, NetlinkError> {
        Ok(neighbour_events()?.boxed())
    }

    async fn announced(&self) -> Result<Vec<(u32, IpAddr)>, NetlinkError> {
        Netlink::announced(self).await
    }

    async fn announce(&self, table: u32, vip: IpAddr) -> Result<(), NetlinkError> {
        Netlink::announce(self, table, vip).await
    }

    async fn withdraw(&self, table: u32, vip: IpAddr) -> Result<(), NetlinkError> {
        Netlink::withdraw(self, table, vip).await
    }
}

/// A stream of neighbour-table changes from the kernel (RTNLGRP_NEIGH, which carries the
/// IPv4 and the IPv6 table's changes alike).
pub fn neighbour_events() -> Result<impl Stream<Item = NeighbourEvent>, NetlinkError> {
    let (connection, _handle, messages) =
        rtnetlink::new_multicast_connection(&[MulticastGroup::Neigh])
            .map_err(NetlinkError::Socket)?;
    tokio::spawn(connection);
    Ok(messages.filter_map(|(message, _)| async move {
        match message.payload {
            NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewNeighbour(m)) => {
                neighbour_entry(&m).map(NeighbourEvent::Changed)
            }
            NetlinkPayload::InnerMessage(RouteNetlinkMessage::DelNeighbour(m)) => {
                neighbour_entry(&m).map(|entry| NeighbourEvent::Deleted {
                    address: entry.address,
                    if_index: entry.if_index,
                })
            }
            _ => None,
        }
    }))
}

/// The address an address message is about: IFA_LOCAL when present (IPv4; on a
/// point-to-point link IFA_ADDRESS is the peer), else IFA_ADDRESS (IPv6).
fn own_address(message: &AddressMessage) -> Option<IpAddr> {
    let find = |local: bool| {
        message.attributes.iter().find_map(|a| match a {
            AddressAttribute::Local(address) if local => Some(*address),
            AddressAttribute::Address(address) if !local => Some(*address),
            _ => None,
        })
    };
    find(true).or_else(|| find(false))
}
