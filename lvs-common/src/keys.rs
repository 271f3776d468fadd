//! The keys of either family's maps, as the controller handles them: one type per kind of
//! map, whichever family's map the entry lives in. The data plane never sees these; it has
//! each family's own key types (`ServiceKey`/`ServiceKey6`, ...).

use core::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use crate::{
    ServiceKey, ServiceKey6,
    flow::{FlowKey, FlowKey6, PersistKey, PersistKey6},
};

/// A virtual service's key in `SERVICES` or `SERVICES6`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ServiceMapKey {
    V4(ServiceKey),
    V6(ServiceKey6),
}

impl ServiceMapKey {
    /// The key of a service at (address, port, protocol), in its family's map.
    pub const fn new(address: IpAddr, port: u16, protocol: u8) -> Self {
        match address {
            IpAddr::V4(v4) => ServiceMapKey::V4(ServiceKey {
                addr: v4.octets(),
                port: port.to_be_bytes(),
                protocol,
                _pad: 0,
            }),
            IpAddr::V6(v6) => ServiceMapKey::V6(ServiceKey6 {
                addr: v6.octets(),
                port: port.to_be_bytes(),
                protocol,
                _pad: 0,
            }),
        }
    }

    pub fn address(&self) -> IpAddr {
        match self {
            ServiceMapKey::V4(key) => IpAddr::V4(Ipv4Addr::from(key.addr)),
            ServiceMapKey::V6(key) => IpAddr::V6(Ipv6Addr::from(key.addr)),
        }
    }

    pub const fn port(&self) -> u16 {
        match self {
            ServiceMapKey::V4(key) => u16::from_be_bytes(key.port),
            ServiceMapKey::V6(key) => u16::from_be_bytes(key.port),
        }
    }

    pub const fn protocol(&self) -> u8 {
        match self {
            ServiceMapKey::V4(key) => key.protocol,
            ServiceMapKey::V6(key) => key.protocol,
        }
    }

    pub fn socket(&self) -> SocketAddr {
        SocketAddr::new(self.address(), self.port())
    }
}

impl From<ServiceKey> for ServiceMapKey {
    fn from(key: ServiceKey) -> Self {
        ServiceMapKey::V4(key)
    }
}

impl From<ServiceKey6> for ServiceMapKey {
    fn from(key: ServiceKey6) -> Self {
        ServiceMapKey::V6(key)
    }
}

/// A connection's key in `FLOWS` or `FLOWS6`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FlowMapKey {
    V4(FlowKey),
    V6(FlowKey6),
}

impl FlowMapKey {
    /// The key of a connection from `client` to `virtual_address`; `None` when the two are
    /// of different families, which no packet can be.
    pub fn new(client: SocketAddr, virtual_address: SocketAddr, protocol: u8) -> Option<Self> {
        Some(match (client.ip(), virtual_address.ip()) {
            (IpAddr::V4(src), IpAddr::V4(dst)) => FlowMapKey::V4(FlowKey {
                src_addr: src.octets(),
                dst_addr: dst.octets(),
                src_port: client.port().to_be_bytes(),
                dst_port: virtual_address.port().to_be_bytes(),
                protocol,
                _pad: [0; 3],
            }),
            (IpAddr::V6(src), IpAddr::V6(dst)) => FlowMapKey::V6(FlowKey6 {
                src_addr: src.octets(),
                dst_addr: dst.octets(),
                src_port: client.port().to_be_bytes(),
                dst_port: virtual_address.port().to_be_bytes(),
                protocol,
                _pad: [0; 3],
            }),
            _ => return None,
        })
    }

    /// The client's address and port.
    pub fn client(&self) -> SocketAddr {
        match self {
            FlowMapKey::V4(key) => SocketAddr::new(
                Ipv4Addr::from(key.src_addr).into(),
                u16::from_be_bytes(key.src_port),
            ),
            FlowMapKey::V6(key) => SocketAddr::new(
                Ipv6Addr::from(key.src_addr).into(),
                u16::from_be_bytes(key.src_port),
            ),
        }
    }

    /// The virtual service's address and port the client connected to.
    pub fn virtual_address(&self) -> SocketAddr {
        match self {
            FlowMapKey::V4(key) => SocketAddr::new(
                Ipv4Addr::from(key.dst_addr).into(),
                u16::from_be_bytes(key.dst_port),
            ),
            FlowMapKey::V6(key) => SocketAddr::new(
                Ipv6Addr::from(key.dst_addr).into(),
                u16::from_be_bytes(key.dst_port),
            ),
        }
    }

    pub const fn protocol(&self) -> u8 {
        match self {
            FlowMapKey::V4(key) => key.protocol,
            FlowMapKey::V6(key) => key.protocol,
        }
    }

    /// The key of the connection's service.
    pub fn service(&self) -> ServiceMapKey {
        let virtual_address = self.virtual_address();
        ServiceMapKey::new(
            virtual_address.ip(),
            virtual_address.port(),
            self.protocol(),
        )
    }
}

impl From<FlowKey> for FlowMapKey {
    fn from(key: FlowKey) -> Self {
        FlowMapKey::V4(key)
    }
}

impl From<FlowKey6> for FlowMapKey {
    fn from(key: FlowKey6) -> Self {
        FlowMapKey::V6(key)
    }
}

/// A persistence template's key in `PERSIST` or `PERSIST6`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TemplateMapKey {
    V4(PersistKey),
    V6(PersistKey6),
}

impl TemplateMapKey {
    /// The key of the template of a client network (already masked) for a service; `None`
    /// when the two are of different families.
    pub fn new(client: IpAddr, service: ServiceMapKey) -> Option<Self> {
        Some(match (client, service) {
            (IpAddr::V4(client), ServiceMapKey::V4(service)) => TemplateMapKey::V4(PersistKey {
                client: client.octets(),
                vip: service.addr,
                vport: service.port,
                protocol: service.protocol,
                _pad: 0,
            }),
            (IpAddr::V6(client), ServiceMapKey::V6(service)) => TemplateMapKey::V6(PersistKey6 {
                client: client.octets(),
                vip: service.addr,
                vport: service.port,
                protocol: service.protocol,
                _pad: 0,
            }),
            _ => return None,
        })
    }

    /// The client network, as masked by the service's persistence mask.
    pub fn client(&self) -> IpAddr {
        match self {
            TemplateMapKey::V4(key) => Ipv4Addr::from(key.client).into(),
            TemplateMapKey::V6(key) => Ipv6Addr::from(key.client).into(),
        }
    }

    /// The key of the template's service.
    pub fn service(&self) -> ServiceMapKey {
        match self {
            TemplateMapKey::V4(key) => ServiceMapKey::V4(ServiceKey {
                addr: key.vip,
                port: key.vport,
                protocol: key.protocol,
                _pad: 0,
            }),
            TemplateMapKey::V6(key) => ServiceMapKey::V6(ServiceKey6 {
                addr: key.vip,
                port: key.vport,
                protocol: key.protocol,
                _pad: 0,
            }),
        }
    }
}

impl From<PersistKey> for TemplateMapKey {
    fn from(key: PersistKey) -> Self {
        TemplateMapKey::V4(key)
    }
}

impl From<PersistKey6> for TemplateMapKey {
    fn from(key: PersistKey6) -> Self {
        TemplateMapKey::V6(key)
    }
}

/// A real server's address as `RealServerEntry::addr` holds it: IPv6 as is, IPv4 mapped.
pub const fn real_server_address_bytes(address: IpAddr) -> crate::Ipv6Bytes {
    match address {
        IpAddr::V4(v4) => v4.to_ipv6_mapped().octets(),
        IpAddr::V6(v6) => v6.octets(),
    }
}

/// The address `RealServerEntry::addr` holds.
pub fn real_server_address(bytes: crate::Ipv6Bytes) -> IpAddr {
    Ipv6Addr::from(bytes).to_canonical()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_read_back_as_built() {
        let v6: IpAddr = "2001:db8::10".parse().unwrap();
        let key = ServiceMapKey::new(v6, 80, crate::IPPROTO_TCP);
        assert!(matches!(key, ServiceMapKey::V6(_)));
        assert_eq!((key.address(), key.port(), key.protocol()), (v6, 80, 6));
        let v4: IpAddr = "10.0.0.100".parse().unwrap();
        assert!(matches!(
            ServiceMapKey::new(v4, 80, 6),
            ServiceMapKey::V4(_)
        ));

        let client: SocketAddr = "[2001:db8::1]:40000".parse().unwrap();
        let flow = FlowMapKey::new(client, SocketAddr::new(v6, 80), 17).unwrap();
        assert_eq!(flow.client(), client);
        assert_eq!(flow.service(), ServiceMapKey::new(v6, 80, 17));
        assert!(FlowMapKey::new(client, SocketAddr::new(v4, 80), 17).is_none());

        let template = TemplateMapKey::new("2001:db8::".parse().unwrap(), key).unwrap();
        assert_eq!(template.service(), key);
        assert!(TemplateMapKey::new(v4, key).is_none());

        assert_eq!(real_server_address(real_server_address_bytes(v4)), v4);
        assert_eq!(real_server_address(real_server_address_bytes(v6)), v6);
    }
}
