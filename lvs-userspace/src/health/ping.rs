//! `PING_CHECK`: an ICMP (or ICMPv6) echo request gets its reply within `connect_timeout`
//! (`echo` builds and judges the messages).
//!
//! The socket is an unprivileged ICMP datagram socket (`SOCK_DGRAM`, `IPPROTO_ICMP` or
//! `IPPROTO_ICMPV6`) where
//! the system allows one (`net.ipv4.ping_group_range` names the director's group): the kernel
//! then picks the identifier and hands over only the replies to it. Where it does not (the
//! default range, "1 0", allows nobody, root included), a raw ICMP socket, which the
//! director, running as root, may open; it reads every ICMP message from the address, so
//! the identifier is checked here. keepalived widens `ping_group_range` instead; lvs leaves
//! the host's settings alone.

use std::{
    io,
    net::{IpAddr, SocketAddr},
    time::Duration,
};

use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::UdpSocket;

use crate::health::{
    Failure, Outcome,
    udp::{io_failure, random_bytes},
};
use crate::logic::config::health::PingProbe;

pub mod echo;

/// The payload's length: as ping's, 56 bytes.
const PAYLOAD: usize = 56;

/// Pings once and waits for the reply.
pub async fn probe(ping: &PingProbe, timeout: Duration) -> Outcome {
    match tokio::time::timeout(timeout, exchange(ping)).await {
        Ok(Ok(outcome)) => outcome,
        Ok(Err(failure)) => Outcome::Fail(failure),
        Err(_) => Outcome::Fail(Failure::Timeout(timeout)),
    }
}

async fn exchange(ping: &PingProbe) -> Result<Outcome, Failure> {
    let (socket, raw) = open(ping)?;
    let family = match ping.address {
        IpAddr::V4(_) => echo::Family::V4,
        IpAddr::V6(_) => echo::Family::V6,
    };
    let random = random_bytes(4 + PAYLOAD);
    let (ident, sequence) = (
        u16::from_be_bytes([random[0], random[1]]),
        u16::from_be_bytes([random[2], random[3]]),
    );
    let payload = &random[4..];
    let request = echo::request(family, ident, sequence, payload);
    socket.send(&request).await.map_err(io_failure)?;
    let expected = echo::Expected {
        family,
        ident: raw.then_some(ident),
        sequence,
        payload,
        ip_header: raw && family == echo::Family::V4,
    };
    let mut buffer = vec![0u8; 65_536];
    loop {
        let length = socket.recv(&mut buffer).await.map_err(io_failure)?;
        match echo::judge(&buffer[..length], &expected) {
            Ok(()) => return Ok(Outcome::pass("echo reply")),
            Err(why) => {
                tracing::debug!("PING_CHECK {}: a message passed over: {why}", ping.address)
            }
        }
    }
}

/// An ICMP socket connected to the address (so that only its messages are read), and
/// whether it is raw (its reads start with the IP header).
fn open(ping: &PingProbe) -> Result<(UdpSocket, bool), Failure> {
    let fail = |what: &str, e: io::Error| Failure::Connect(format!("{what}: {e}"));
    let (domain, protocol) = match ping.address {
        IpAddr::V4(_) => (Domain::IPV4, Protocol::ICMPV4),
        IpAddr::V6(_) => (Domain::IPV6, Protocol::ICMPV6),
    };
    let icmp = |kind: Type| Socket::new(domain, kind.nonblocking().cloexec(), Some(protocol));
    let (socket, raw) = match icmp(Type::DGRAM) {
        Ok(socket) => (socket, false),
        Err(error) if error.kind() == io::ErrorKind::PermissionDenied => {
            let socket = icmp(Type::RAW).map_err(|e| {
                fail(
                    "an ICMP socket needs root or a group in net.ipv4.ping_group_range",
                    e,
                )
            })?;
            (socket, true)
        }
        Err(error) => return Err(fail("creating an ICMP socket", error)),
    };
    if let Some(bind) = ping.bind {
        socket
            .bind(&SocketAddr::new(bind, 0).into())
            .map_err(|e| fail(&format!("binding to {bind}"), e))?;
    }
    socket
        .connect(&SocketAddr::new(ping.address, 0).into())
        .map_err(io_failure)?;
    let socket = UdpSocket::from_std(std::net::UdpSocket::from(socket))
        .map_err(|e| fail("registering the socket", e))?;
    Ok((socket, raw))
}

/// Whether this process may open an ICMP socket of either kind (tests need one).
#[cfg(test)]
fn permitted() -> bool {
    [Type::DGRAM, Type::RAW]
        .into_iter()
        .any(|kind| Socket::new(Domain::IPV4, kind, Some(Protocol::ICMPV4)).is_ok())
}

/// Whether this host has IPv6 loopback (a container may not).
#[cfg(test)]
fn has_ipv6_loopback() -> bool {
    std::net::UdpSocket::bind("[::1]:0").is_ok()
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;

    const TIMEOUT: Duration = Duration::from_secs(2);

    #[tokio::test]
    async fn loopback_answers() {
        if !permitted() {
            // Neither socket is open to this user (not root, and not in ping_group_range):
            // the root tests ping instead. Everything else here is in `echo`'s tests.
            eprintln!("no ICMP socket allowed to this user; skipped");
            return;
        }
        let ping = PingProbe {
            address: Ipv4Addr::LOCALHOST.into(),
            bind: None,
        };
        assert_eq!(probe(&ping, TIMEOUT).await, Outcome::pass("echo reply"));
        let from_another = PingProbe {
            bind: Some(Ipv4Addr::new(127, 0, 0, 3).into()),
            ..ping
        };
        assert_eq!(
            probe(&from_another, TIMEOUT).await,
            Outcome::pass("echo reply")
        );
    }

    #[tokio::test]
    async fn ipv6_loopback_answers() {
        if !permitted() || !has_ipv6_loopback() {
            eprintln!("no ICMP socket allowed to this user, or no ::1; skipped");
            return;
        }
        let ping = PingProbe {
            address: std::net::Ipv6Addr::LOCALHOST.into(),
            bind: None,
        };
        assert_eq!(probe(&ping, TIMEOUT).await, Outcome::pass("echo reply"));
    }

    #[tokio::test]
    async fn an_address_that_is_not_local_cannot_be_bound() {
        if !permitted() {
            eprintln!("no ICMP socket allowed to this user; skipped");
            return;
        }
        let ping = PingProbe {
            address: Ipv4Addr::LOCALHOST.into(),
            bind: Some(Ipv4Addr::new(192, 0, 2, 1).into()),
        };
        let outcome = probe(&ping, TIMEOUT).await;
        let Outcome::Fail(Failure::Connect(reason)) = &outcome else {
            panic!("{outcome:?}");
        };
        assert!(reason.contains("binding to 192.0.2.1"), "{reason}");
    }
}
