//! The sync daemons' multicast sockets, behind [`SyncTransport`] so that the daemon's loop is
//! tested with an in-memory one.
//!
//! A master sends from a UDP socket bound to the sync interface (`SO_BINDTODEVICE`, and its
//! address as the source), with the multicast interface, TTL (`--mcast-ttl`) and loopback
//! off set, to group:port. A backup receives on a socket bound to group:port with
//! `SO_REUSEADDR` (so that a second listener, a packet capture or a restarting daemon, can
//! share it), joined to the group on the interface by index and bound to that interface, and
//! reports each datagram with its source address. Loopback off keeps a director that runs
//! both roles from hearing its own master; the daemon also ignores its own addresses.

use std::{io, net::Ipv4Addr};

use futures::{StreamExt as _, stream::BoxStream};
use socket2::{Domain, InterfaceIndexOrAddress, Protocol, SockAddr, Socket, Type};
use tokio::net::UdpSocket;

use crate::logic::sync::SyncDaemon;

/// The largest datagram a backup reads: the largest UDP payload, so that nothing is cut.
const RECEIVE_BUFFER: usize = 65_536;

/// One datagram a backup received.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Datagram {
    pub source: Ipv4Addr,
    pub bytes: Vec<u8>,
}

/// The sync interface as the daemon resolved it (through netlink).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SyncInterface {
    pub name: String,
    pub index: u32,
    /// Its first IPv4 address: the source of a master's messages.
    pub address: Ipv4Addr,
}

#[derive(Debug, thiserror::Error)]
#[error("{action} for the sync {role} daemon on {interface}")]
pub struct SyncSocketError {
    pub action: &'static str,
    pub role: crate::logic::sync::SyncRole,
    pub interface: String,
    #[source]
    pub source: io::Error,
}

/// A master's way out: sends one datagram to its group, without waiting. A datagram the
/// socket cannot take now is an error, and lost: sync tolerates loss.
pub trait SyncSender: Send + Sync {
    fn send(&mut self, datagram: &[u8]) -> io::Result<()>;
}

/// The datagrams a backup receives, each with its source.
pub type Datagrams = BoxStream<'static, io::Result<Datagram>>;

/// Opens the sync daemons' sockets.
pub trait SyncTransport: Send + Sync {
    fn sender(
        &self,
        daemon: &SyncDaemon,
        interface: &SyncInterface,
    ) -> Result<Box<dyn SyncSender>, SyncSocketError>;
    fn receiver(
        &self,
        daemon: &SyncDaemon,
        interface: &SyncInterface,
    ) -> Result<Datagrams, SyncSocketError>;
}

/// The real sockets.
#[derive(Clone, Copy, Debug, Default)]
pub struct Multicast;

struct MulticastSender {
    socket: Socket,
    to: SockAddr,
}

impl SyncSender for MulticastSender {
    fn send(&mut self, datagram: &[u8]) -> io::Result<()> {
        self.socket.send_to(datagram, &self.to).map(|_| ())
    }
}

impl SyncTransport for Multicast {
    fn sender(
        &self,
        daemon: &SyncDaemon,
        interface: &SyncInterface,
    ) -> Result<Box<dyn SyncSender>, SyncSocketError> {
        let fail = |action| {
            let role = daemon.role;
            let name = interface.name.clone();
            move |source| SyncSocketError {
                action,
                role,
                interface: name,
                source,
            }
        };
        let socket = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))
            .map_err(fail("opening a UDP socket"))?;
        socket
            .bind_device(Some(interface.name.as_bytes()))
            .map_err(fail("binding the socket to the interface"))?;
        socket
            .set_multicast_if_v4(&interface.address)
            .map_err(fail("choosing the multicast interface"))?;
        socket
            .set_multicast_ttl_v4(daemon.ttl.get().into())
            .map_err(fail("setting the multicast TTL"))?;
        socket
            .set_multicast_loop_v4(false)
            .map_err(fail("turning multicast loopback off"))?;
        socket
            .bind(&std::net::SocketAddrV4::new(interface.address, 0).into())
            .map_err(fail("binding to the interface's address"))?;
        socket
            .set_nonblocking(true)
            .map_err(fail("making the socket non-blocking"))?;
        let to = std::net::SocketAddrV4::new(daemon.group.get(), daemon.port.get()).into();
        Ok(Box::new(MulticastSender { socket, to }))
    }

    fn receiver(
        &self,
        daemon: &SyncDaemon,
        interface: &SyncInterface,
    ) -> Result<Datagrams, SyncSocketError> {
        let fail = |action| {
            let role = daemon.role;
            let name = interface.name.clone();
            move |source| SyncSocketError {
                action,
                role,
                interface: name,
                source,
            }
        };
        let group = daemon.group.get();
        let socket = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))
            .map_err(fail("opening a UDP socket"))?;
        socket
            .set_reuse_address(true)
            .map_err(fail("setting SO_REUSEADDR"))?;
        socket
            .bind_device(Some(interface.name.as_bytes()))
            .map_err(fail("binding the socket to the interface"))?;
        // Bound to the group, the socket gets only the group's datagrams.
        socket
            .bind(&std::net::SocketAddrV4::new(group, daemon.port.get()).into())
            .map_err(fail("binding to the multicast group and port"))?;
        socket
            .join_multicast_v4_n(&group, &InterfaceIndexOrAddress::Index(interface.index))
            .map_err(fail("joining the multicast group"))?;
        socket
            .set_multicast_loop_v4(false)
            .map_err(fail("turning multicast loopback off"))?;
        socket
            .set_nonblocking(true)
            .map_err(fail("making the socket non-blocking"))?;
        let socket = UdpSocket::from_std(socket.into())
            .map_err(fail("handing the socket to the runtime"))?;
        // One buffer for every read; each datagram is copied out at its own length.
        let state = (socket, vec![0; RECEIVE_BUFFER]);
        Ok(
            futures::stream::unfold(state, |(socket, mut buffer)| async move {
                let received = match socket.recv_from(&mut buffer).await {
                    Ok((length, std::net::SocketAddr::V4(source))) => Ok(Datagram {
                        source: *source.ip(),
                        bytes: buffer[..length].to_vec(),
                    }),
                    Ok((_, source)) => Err(io::Error::other(format!(
                        "a datagram from {source}, not an IPv4 address"
                    ))),
                    Err(error) => Err(error),
                };
                Some((received, (socket, buffer)))
            })
            .boxed(),
        )
    }
}
