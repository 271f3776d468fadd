//! Host and service names, as ipvsadm accepts and prints them.
//!
//! ipvsadm takes `web.example.com:http` as well as `192.0.2.10:80`, and without `-n` prints
//! names where the system has them. The lookups themselves are I/O, so the pure code here
//! asks a [`Resolver`]; `lvsadm` passes one backed by the system's resolver, tests pass a
//! table, and [`NumericOnly`] resolves nothing.

use std::net::{IpAddr, Ipv4Addr};

use crate::logic::api::Protocol;

/// Looks names up in both directions.
pub trait Resolver {
    /// The IPv4 address of a host name.
    fn host_address(&self, name: &str) -> Option<Ipv4Addr>;
    /// The port of a service name for a protocol (`http` → 80).
    fn service_port(&self, name: &str, protocol: Protocol) -> Option<u16>;
    /// The host name of an address, if it has one.
    fn host_name(&self, address: IpAddr) -> Option<String>;
    /// The service name of a port for a protocol, if it has one.
    fn service_name(&self, port: u16, protocol: Protocol) -> Option<String>;
}

/// A resolver that knows no names: addresses and ports stay numeric.
#[derive(Clone, Copy, Debug, Default)]
pub struct NumericOnly;

impl Resolver for NumericOnly {
    fn host_address(&self, _: &str) -> Option<Ipv4Addr> {
        None
    }
    fn service_port(&self, _: &str, _: Protocol) -> Option<u16> {
        None
    }
    fn host_name(&self, _: IpAddr) -> Option<String> {
        None
    }
    fn service_name(&self, _: u16, _: Protocol) -> Option<String> {
        None
    }
}

/// A fixed table of names, for tests.
#[cfg(test)]
#[derive(Default)]
pub struct Table {
    pub hosts: Vec<(&'static str, Ipv4Addr)>,
    pub services: Vec<(&'static str, u16, Protocol)>,
}

#[cfg(test)]
impl Table {
    /// A few hosts and the services the tests use.
    pub fn example() -> Self {
        Table {
            hosts: vec![
                ("web.example.com", Ipv4Addr::new(10, 0, 0, 1)),
                ("rs1.example.com", Ipv4Addr::new(10, 0, 0, 11)),
                (
                    "a-real-server-with-a-very-long-name.example.com",
                    Ipv4Addr::new(10, 0, 0, 12),
                ),
            ],
            services: vec![
                ("http", 80, Protocol::Tcp),
                ("https", 443, Protocol::Tcp),
                ("domain", 53, Protocol::Tcp),
                ("domain", 53, Protocol::Udp),
            ],
        }
    }
}

#[cfg(test)]
impl Resolver for Table {
    fn host_address(&self, name: &str) -> Option<Ipv4Addr> {
        self.hosts.iter().find(|(n, _)| *n == name).map(|(_, a)| *a)
    }
    fn service_port(&self, name: &str, protocol: Protocol) -> Option<u16> {
        self.services
            .iter()
            .find(|(n, _, p)| *n == name && *p == protocol)
            .map(|(_, port, _)| *port)
    }
    fn host_name(&self, address: IpAddr) -> Option<String> {
        self.hosts
            .iter()
            .find(|(_, a)| IpAddr::V4(*a) == address)
            .map(|(n, _)| (*n).to_owned())
    }
    fn service_name(&self, port: u16, protocol: Protocol) -> Option<String> {
        self.services
            .iter()
            .find(|(_, p, proto)| *p == port && *proto == protocol)
            .map(|(n, _, _)| (*n).to_owned())
    }
}
