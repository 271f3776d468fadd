//! What the controller asks of the kernel's routing netlink: the director interface, its
//! addresses (to bring VIPs up and to know its subnets), the neighbour table (real
//! servers' MACs), and the routes that announce the VIPs to a BGP daemon (`routes`). Pure interpretation of the answers (`classify`, `on_link`) is kept apart
//! from the requests so it is tested without root.

use std::{
    future::Future,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
};

use futures::{Stream, StreamExt as _, TryStreamExt as _, stream::BoxStream};
use netlink_packet_route::{
    AddressFamily, RouteNetlinkMessage,
    address::{AddressAttribute, AddressFlags, AddressHeaderFlags, AddressMessage},
    link::{LinkAttribute, LinkFlags, LinkMessage},
    neighbour::{
        NeighbourAddress, NeighbourAttribute, NeighbourFlags, NeighbourMessage, NeighbourState,
    },
};
use rtnetlink::{Handle, MulticastGroup, packet_core::NetlinkPayload};

use crate::{base::mac::MacAddr, logic::model::Neighbour};

mod routes;

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
        match address.into() {
            IpAddr::V4(v4) => on_link(v4, &self.networks),
            IpAddr::V6(v6) => on_link(v6, &self.networks6),
        }
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

    /// `resolve` for an IPv4 address; kept for the daemon's IPv4 path.
    pub async fn request_resolution(
        &self,
        index: u32,
        address: Ipv4Addr,
    ) -> Result<(), NetlinkError> {
        self.resolve(index, IpAddr::V4(address)).await
    }
}

/// The prefix length of a host address of this family: 32 or 128.
pub fn host_prefix(address: IpAddr) -> u8 {
    match address {
        IpAddr::V4(_) => 32,
        IpAddr::V6(_) => 128,
    }
}

/// What the director daemon asks of routing netlink: its interface, the VIPs it adds and
/// removes, and the real servers' neighbour entries. The daemon is written against this
/// trait, so its logic runs against an in-memory stand-in in tests, without root.
///
/// `add_vip`, `remove_vip` and `resolve` take either family (anything that converts into an
/// `IpAddr`, so callers holding `Ipv4Addr` or `IpAddr` call them alike); `add_address`,
/// `remove_address` and `request_resolution` are their IPv4 forms, which the daemon used
/// before IPv6. The family-wide methods fall back on the IPv4 forms by default (and refuse
/// IPv6), so a stand-in written for IPv4 keeps working until it implements them.
pub trait DirectorNetlink: Sync {
    /// Looks up an interface by name: its index, MAC and IPv4 and IPv6 networks.
    fn link(&self, name: &str) -> impl Future<Output = Result<LinkInfo, NetlinkError>> + Send;
    /// Adds `address/prefix`; false when it was already there (then it is not ours to remove).
    fn add_address(
        &self,
        index: u32,
        address: Ipv4Addr,
        prefix: u8,
    ) -> impl Future<Output = Result<bool, NetlinkError>> + Send;
    /// Removes `address/prefix`, if it is there.
    fn remove_address(
        &self,
        index: u32,
        address: Ipv4Addr,
        prefix: u8,
    ) -> impl Future<Output = Result<(), NetlinkError>> + Send;
    /// Puts a VIP on the interface (IPv4 /32; IPv6 /128 without DAD); false when it was
    /// already there (then it is not ours to remove).
    fn add_vip(
        &self,
        index: u32,
        vip: impl Into<IpAddr> + Send,
    ) -> impl Future<Output = Result<bool, NetlinkError>> + Send {
        let vip = vip.into();
        async move {
            match vip {
                IpAddr::V4(v4) => self.add_address(index, v4, 32).await,
                IpAddr::V6(_) => Err(NetlinkError::Unsupported {
                    what: format!("adding the IPv6 VIP {vip}"),
                }),
            }
        }
    }
    /// Takes a VIP off the interface, if it is there.
    fn remove_vip(
        &self,
        index: u32,
        vip: impl Into<IpAddr> + Send,
    ) -> impl Future<Output = Result<(), NetlinkError>> + Send {
        let vip = vip.into();
        async move {
            match vip {
                IpAddr::V4(v4) => self.remove_address(index, v4, 32).await,
                IpAddr::V6(_) => Err(NetlinkError::Unsupported {
                    what: format!("removing the IPv6 VIP {vip}"),
                }),
            }
        }
    }
    /// Asks the kernel to resolve or re-confirm a neighbour of either family (NTF_USE).
    fn resolve(
        &self,
        index: u32,
        address: impl Into<IpAddr> + Send,
    ) -> impl Future<Output = Result<(), NetlinkError>> + Send {
        let address = address.into();
        async move {
            match address {
                IpAddr::V4(v4) => self.request_resolution(index, v4).await,
                IpAddr::V6(_) => Err(NetlinkError::Unsupported {
                    what: format!("resolving the IPv6 neighbour {address}"),
                }),
            }
        }
    }
    /// The neighbour entries of an interface, both families.
    fn neighbours(
        &self,
        index: u32,
    ) -> impl Future<Output = Result<Vec<NeighbourEntry>, NetlinkError>> + Send;
    /// Asks the kernel to resolve or re-confirm a neighbour (NTF_USE).
    fn request_resolution(
        &self,
        index: u32,
        address: Ipv4Addr,
    ) -> impl Future<Output = Result<(), NetlinkError>> + Send;
    /// The kernel's neighbour-table changes, from now on.
    fn neighbour_events(&self) -> Result<BoxStream<'static, NeighbourEvent>, NetlinkError>;
    /// The VIPs announced, in any routing table, as (table, VIP) (see `routes`).
    fn announced(&self) -> impl Future<Output = Result<Vec<(u32, Ipv4Addr)>, NetlinkError>> + Send;
    /// Announces `vip` through routing table `table`.
    fn announce(
        &self,
        table: u32,
        vip: Ipv4Addr,
    ) -> impl Future<Output = Result<(), NetlinkError>> + Send;
    /// Withdraws `vip` from routing table `table`, if it is announced there.
    fn withdraw(
        &self,
        table: u32,
        vip: Ipv4Addr,
    ) -> impl Future<Output = Result<(), NetlinkError>> + Send;
}

impl DirectorNetlink for Netlink {
    async fn link(&self, name: &str) -> Result<LinkInfo, NetlinkError> {
        Netlink::link(self, name).await
    }

    async fn add_address(
        &self,
        index: u32,
        address: Ipv4Addr,
        prefix: u8,
    ) -> Result<bool, NetlinkError> {
        Netlink::add_address(self, index, address, prefix).await
    }

    async fn remove_address(
        &self,
        index: u32,
        address: Ipv4Addr,
        prefix: u8,
    ) -> Result<(), NetlinkError> {
        Netlink::remove_address(self, index, address, prefix).await
    }

    async fn add_vip(
        &self,
        index: u32,
        vip: impl Into<IpAddr> + Send,
    ) -> Result<bool, NetlinkError> {
        Netlink::add_vip(self, index, vip.into()).await
    }

    async fn remove_vip(
        &self,
        index: u32,
        vip: impl Into<IpAddr> + Send,
    ) -> Result<(), NetlinkError> {
        Netlink::remove_vip(self, index, vip.into())
            .await
            .map(|_| ())
    }

    async fn resolve(
        &self,
        index: u32,
        address: impl Into<IpAddr> + Send,
    ) -> Result<(), NetlinkError> {
        Netlink::resolve(self, index, address.into()).await
    }

    async fn neighbours(&self, index: u32) -> Result<Vec<NeighbourEntry>, NetlinkError> {
        Netlink::neighbours(self, index).await
    }

    async fn request_resolution(&self, index: u32, address: Ipv4Addr) -> Result<(), NetlinkError> {
        Netlink::request_resolution(self, index, address).await
    }

    fn neighbour_events(&self) -> Result<BoxStream<'static, NeighbourEvent>, NetlinkError> {
        Ok(neighbour_events()?.boxed())
    }

    async fn announced(&self) -> Result<Vec<(u32, Ipv4Addr)>, NetlinkError> {
        Netlink::announced(self).await
    }

    async fn announce(&self, table: u32, vip: Ipv4Addr) -> Result<(), NetlinkError> {
        Netlink::announce(self, table, vip).await
    }

    async fn withdraw(&self, table: u32, vip: Ipv4Addr) -> Result<(), NetlinkError> {
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
    use super::*;

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
