//! The in-memory stand-ins the daemon's tests run on: a small world of one interface, two
//! real servers and a VIP, routing netlink, health checking, the host, and a multicast
//! segment for connection sync.

use std::{
    net::{IpAddr, Ipv4Addr},
    path::Path,
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
};

use futures::{StreamExt as _, channel::mpsc::UnboundedSender, stream::BoxStream};
use netlink_packet_route::neighbour::NeighbourState;
use tokio::sync::mpsc;

use crate::{
    daemon::{HealthChecks, Host},
    health::HealthUpdate,
    io::{
        netlink::{DirectorNetlink, LinkInfo, NeighbourEntry, NeighbourEvent, NetlinkError},
        provision::director::DirectorHostError,
        sync::{Datagram, Datagrams, SyncInterface, SyncSender, SyncSocketError, SyncTransport},
    },
    logic::{config::Config, dataplane::FakeDataPlane, sync::SyncDaemon},
};

pub(super) const IF_INDEX: u32 = 2;
pub(super) const VIP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 100);
pub(super) const OTHER_VIP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 101);
pub(super) const RS1: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 11);
pub(super) const RS2: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 12);
pub(super) const MAC1: [u8; 6] = [2, 0, 0, 0, 0, 0x11];
pub(super) const MAC2: [u8; 6] = [2, 0, 0, 0, 0, 0x12];

/// The config file: one `rr` service with the given VIP and real servers.
pub(super) fn config_text(socket: &Path, vip: Ipv4Addr, servers: &[Ipv4Addr]) -> String {
    let mut text = format!(
        "[director]\ninterface = \"eth0\"\ncontrol_socket = \"{}\"\n\n\
         [[virtual_server]]\naddress = \"{vip}\"\nport = 80\nlb_algo = \"rr\"\n",
        socket.display()
    );
    for server in servers {
        text.push_str(&format!(
            "\n[[virtual_server.real_server]]\naddress = \"{server}\"\nweight = 1\n"
        ));
    }
    text
}

pub(super) fn link() -> LinkInfo {
    LinkInfo {
        index: IF_INDEX,
        mac: [2, 0, 0, 0, 0, 1],
        networks: vec![(Ipv4Addr::new(10, 0, 0, 1), 24)],
        networks6: Vec::new(),
    }
}

pub(super) fn reachable(address: Ipv4Addr, mac: [u8; 6]) -> NeighbourEntry {
    NeighbourEntry {
        address: address.into(),
        if_index: IF_INDEX,
        state: NeighbourState::Reachable,
        mac: Some(mac),
    }
}

/// The kernel as netlink shows it: addresses on the interface and its neighbour table.
#[derive(Default)]
pub(super) struct Kernel {
    pub(super) addresses: Vec<IpAddr>,
    pub(super) neighbours: Vec<NeighbourEntry>,
    pub(super) resolutions: Vec<IpAddr>,
    /// The routes that announce VIPs: (table, VIP).
    pub(super) routes: std::collections::BTreeSet<(u32, IpAddr)>,
    /// Every route change, in order: "announce 245 10.0.0.100", "withdraw ...".
    pub(super) route_log: Vec<String>,
    events: Option<futures::channel::mpsc::UnboundedReceiver<NeighbourEvent>>,
}

/// Routing netlink in memory; clones share one kernel, so a test can look and change it.
#[derive(Clone, Default)]
pub(super) struct FakeNetlink(Arc<Mutex<Kernel>>);

impl FakeNetlink {
    /// A kernel that knows both real servers; also returns the sender of neighbour events.
    pub(super) fn new() -> (Self, UnboundedSender<NeighbourEvent>) {
        let (events, receiver) = futures::channel::mpsc::unbounded();
        let netlink = Self::default();
        {
            let mut kernel = netlink.kernel();
            kernel.neighbours = vec![reachable(RS1, MAC1), reachable(RS2, MAC2)];
            kernel.events = Some(receiver);
        }
        (netlink, events)
    }

    pub(super) fn kernel(&self) -> std::sync::MutexGuard<'_, Kernel> {
        self.0.lock().unwrap()
    }

    /// The announced IPv4 VIPs, as (table, VIP).
    pub(super) fn routes(&self) -> Vec<(u32, Ipv4Addr)> {
        self.kernel()
            .routes
            .iter()
            .filter_map(|&(table, vip)| match vip {
                IpAddr::V4(vip) => Some((table, vip)),
                IpAddr::V6(_) => None,
            })
            .collect()
    }

    /// The VIPs on the interface, sorted.
    pub(super) fn addresses(&self) -> Vec<IpAddr> {
        let mut addresses = self.kernel().addresses.clone();
        addresses.sort();
        addresses
    }
}

impl DirectorNetlink for FakeNetlink {
    async fn link(&self, name: &str) -> Result<LinkInfo, NetlinkError> {
        match name {
            "eth0" => Ok(link()),
            _ => Err(NetlinkError::NoSuchInterface { name: name.into() }),
        }
    }

    async fn add_vip(&self, index: u32, address: IpAddr) -> Result<bool, NetlinkError> {
        assert_eq!(index, IF_INDEX);
        let mut kernel = self.kernel();
        if kernel.addresses.contains(&address) {
            return Ok(false);
        }
        kernel.addresses.push(address);
        Ok(true)
    }

    async fn remove_vip(&self, index: u32, address: IpAddr) -> Result<(), NetlinkError> {
        assert_eq!(index, IF_INDEX);
        self.kernel().addresses.retain(|&a| a != address);
        Ok(())
    }

    async fn neighbours(&self, index: u32) -> Result<Vec<NeighbourEntry>, NetlinkError> {
        let kernel = self.kernel();
        Ok(kernel
            .neighbours
            .iter()
            .filter(|e| e.if_index == index)
            .cloned()
            .collect())
    }

    async fn resolve(&self, _: u32, address: IpAddr) -> Result<(), NetlinkError> {
        self.kernel().resolutions.push(address);
        Ok(())
    }

    fn neighbour_events(&self) -> Result<BoxStream<'static, NeighbourEvent>, NetlinkError> {
        let events = self.kernel().events.take().ok_or_else(|| {
            NetlinkError::Socket(std::io::Error::other("the events were taken already"))
        })?;
        Ok(events.boxed())
    }

    async fn announced(&self) -> Result<Vec<(u32, IpAddr)>, NetlinkError> {
        Ok(self.kernel().routes.iter().copied().collect())
    }

    async fn announce(&self, table: u32, vip: IpAddr) -> Result<(), NetlinkError> {
        let mut kernel = self.kernel();
        kernel.routes.insert((table, vip));
        kernel.route_log.push(format!("announce {table} {vip}"));
        Ok(())
    }

    async fn withdraw(&self, table: u32, vip: IpAddr) -> Result<(), NetlinkError> {
        let mut kernel = self.kernel();
        kernel.routes.remove(&(table, vip));
        kernel.route_log.push(format!("withdraw {table} {vip}"));
        Ok(())
    }
}

/// Health checking by hand: the test sends the updates; reloads are counted.
pub(super) struct FakeHealth {
    updates: mpsc::Receiver<Vec<HealthUpdate>>,
    reloads: Arc<AtomicUsize>,
    /// Each service's quorum, as the test sets it (a service not in it has its quorum).
    pub(super) quorums: Arc<Mutex<crate::health::Quorums>>,
}

impl FakeHealth {
    pub(super) fn new() -> (Self, mpsc::Sender<Vec<HealthUpdate>>, Arc<AtomicUsize>) {
        let (sender, updates) = mpsc::channel(4);
        let reloads = Arc::new(AtomicUsize::new(0));
        let health = Self {
            updates,
            reloads: reloads.clone(),
            quorums: Arc::default(),
        };
        (health, sender, reloads)
    }
}

impl HealthChecks for FakeHealth {
    async fn updates(&mut self) -> Option<Vec<HealthUpdate>> {
        self.updates.recv().await
    }

    async fn reload(&self, _: &Config) {
        self.reloads.fetch_add(1, Ordering::SeqCst);
    }

    async fn shutdown(self) {}

    fn quorums(&self) -> crate::health::Quorums {
        self.quorums.lock().unwrap().clone()
    }
}

/// The host's set-up, recorded.
#[derive(Clone, Default)]
pub(super) struct FakeHost(pub(super) Arc<Mutex<Vec<&'static str>>>);

impl Host<FakeDataPlane> for FakeHost {
    fn set_up(&mut self, interface: &str, _: &FakeDataPlane) -> Result<(), DirectorHostError> {
        assert_eq!(interface, "eth0");
        self.0.lock().unwrap().push("set up");
        Ok(())
    }

    fn tear_down(&mut self) {
        self.0.lock().unwrap().push("torn down");
    }
}

/// A multicast segment in memory: what a sync master sends reaches every backup socket open
/// on the same group and port, with the sender's address as its source.
#[derive(Clone, Default)]
pub(super) struct MemoryNetwork(Arc<Mutex<Vec<Listener>>>);

struct Listener {
    group: Ipv4Addr,
    port: u16,
    deliver: UnboundedSender<std::io::Result<Datagram>>,
}

impl MemoryNetwork {
    /// Puts a datagram on the segment, as any host on it could.
    pub(super) fn inject(&self, source: Ipv4Addr, group: Ipv4Addr, port: u16, bytes: &[u8]) {
        let mut listeners = self.0.lock().unwrap();
        // A backup that stopped has dropped its end; it leaves the group.
        listeners.retain(|listener| !listener.deliver.is_closed());
        for listener in listeners.iter() {
            if listener.group == group && listener.port == port {
                let _ = listener.deliver.unbounded_send(Ok(Datagram {
                    source,
                    bytes: bytes.to_vec(),
                }));
            }
        }
    }

    /// Makes every open backup socket fail one read.
    pub(super) fn inject_error(&self) {
        for listener in self.0.lock().unwrap().iter() {
            let _ = listener
                .deliver
                .unbounded_send(Err(std::io::Error::other("the socket failed")));
        }
    }

    /// How many backup sockets are open.
    pub(super) fn listeners(&self) -> usize {
        let mut listeners = self.0.lock().unwrap();
        listeners.retain(|listener| !listener.deliver.is_closed());
        listeners.len()
    }

    /// A director's way onto the segment, sending from `source`.
    pub(super) fn transport(&self, source: Ipv4Addr) -> Arc<dyn SyncTransport> {
        Arc::new(MemoryTransport {
            network: self.clone(),
            source,
        })
    }
}

struct MemoryTransport {
    network: MemoryNetwork,
    source: Ipv4Addr,
}

struct MemorySender {
    network: MemoryNetwork,
    source: Ipv4Addr,
    group: Ipv4Addr,
    port: u16,
}

impl SyncSender for MemorySender {
    fn send(&mut self, datagram: &[u8]) -> std::io::Result<()> {
        self.network
            .inject(self.source, self.group, self.port, datagram);
        Ok(())
    }
}

impl SyncTransport for MemoryTransport {
    fn sender(
        &self,
        daemon: &SyncDaemon,
        interface: &SyncInterface,
    ) -> Result<Box<dyn SyncSender>, SyncSocketError> {
        assert_eq!(interface.index, IF_INDEX);
        Ok(Box::new(MemorySender {
            network: self.network.clone(),
            source: self.source,
            group: daemon.group.get(),
            port: daemon.port.get(),
        }))
    }

    fn receiver(
        &self,
        daemon: &SyncDaemon,
        interface: &SyncInterface,
    ) -> Result<Datagrams, SyncSocketError> {
        assert_eq!(interface.index, IF_INDEX);
        let (deliver, datagrams) = futures::channel::mpsc::unbounded();
        self.network.0.lock().unwrap().push(Listener {
            group: daemon.group.get(),
            port: daemon.port.get(),
            deliver,
        });
        Ok(datagrams.boxed())
    }
}
