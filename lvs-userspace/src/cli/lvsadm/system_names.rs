//! Names through the system's resolver (getaddrinfo, getnameinfo: `/etc/hosts`, DNS,
//! `/etc/services`, whatever NSS is configured with), as ipvsadm looks them up.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4};

use dns_lookup::{AddrInfoHints, getaddrinfo, getnameinfo};

use crate::logic::{api::Protocol, ipvsadm::names::Resolver};

/// The system's resolver.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemNames;

fn socket_type(protocol: Protocol) -> i32 {
    match protocol {
        Protocol::Tcp => libc::SOCK_STREAM,
        Protocol::Udp => libc::SOCK_DGRAM,
    }
}

impl Resolver for SystemNames {
    fn host_address(&self, name: &str) -> Option<Ipv4Addr> {
        let hints = AddrInfoHints {
            address: libc::AF_INET,
            socktype: libc::SOCK_STREAM,
            ..AddrInfoHints::default()
        };
        getaddrinfo(Some(name), None, Some(hints))
            .ok()?
            .filter_map(Result::ok)
            .find_map(|info| match info.sockaddr.ip() {
                IpAddr::V4(address) => Some(address),
                IpAddr::V6(_) => None,
            })
    }

    fn service_port(&self, name: &str, protocol: Protocol) -> Option<u16> {
        let hints = AddrInfoHints {
            address: libc::AF_INET,
            socktype: socket_type(protocol),
            ..AddrInfoHints::default()
        };
        // With no host, getaddrinfo resolves the service alone (on the loopback address).
        getaddrinfo(None, Some(name), Some(hints))
            .ok()?
            .filter_map(Result::ok)
            .map(|info| info.sockaddr.port())
            .next()
    }

    fn host_name(&self, address: IpAddr) -> Option<String> {
        let socket = SocketAddr::new(address, 0);
        getnameinfo(&socket, libc::NI_NAMEREQD | libc::NI_NUMERICSERV)
            .ok()
            .map(|(host, _)| host)
    }

    fn service_name(&self, port: u16, protocol: Protocol) -> Option<String> {
        let socket = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, port));
        let datagram = match protocol {
            Protocol::Tcp => 0,
            Protocol::Udp => libc::NI_DGRAM,
        };
        let (_, service) = getnameinfo(&socket, libc::NI_NUMERICHOST | datagram).ok()?;
        // getnameinfo falls back to the number; ipvsadm's caller does that itself.
        (service != port.to_string()).then_some(service)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The loopback names every system has; /etc/services may be missing in a container,
    /// so service names are checked only when the system knows `http`.
    #[test]
    fn resolves_through_the_system() {
        let names = SystemNames;
        assert_eq!(names.host_address("localhost"), Some(Ipv4Addr::LOCALHOST));
        assert_eq!(names.host_address("no-such-host.invalid"), None);
        assert_eq!(names.service_port("no-such-service", Protocol::Tcp), None);
        if let Some(port) = names.service_port("http", Protocol::Tcp) {
            assert_eq!(port, 80);
            assert_eq!(
                names.service_name(80, Protocol::Tcp).as_deref(),
                Some("http")
            );
        }
        assert_eq!(
            names.service_name(1, Protocol::Udp).filter(|s| s == "1"),
            None
        );
    }
}
