//! A snapshot with a bit of everything, shared by the layout, save and restore tests.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4};

use crate::logic::api::{
    ForwardMethod, Persistence, Protocol, RealServerConfig, SchedFlags, Scheduler, ServiceConfig,
    ServiceKey, Timeouts,
    snapshot::{
        Connection, ConnectionState, Rates, RealServerEntry, ServiceEntry, Snapshot, Stats,
    },
};

fn ip(a: u8, b: u8, c: u8, d: u8) -> Ipv4Addr {
    Ipv4Addr::new(a, b, c, d)
}

fn v6(text: &str) -> Ipv6Addr {
    text.parse().expect("an IPv6 address")
}

fn server(address: impl Into<IpAddr>, port: u16, weight: u32) -> RealServerEntry {
    RealServerEntry {
        server: RealServerConfig {
            address: address.into(),
            forward: ForwardMethod::Route,
            weight,
            u_threshold: 0,
            l_threshold: 0,
        },
        port,
        active_conns: 0,
        inactive_conns: 0,
        persistent_conns: 0,
        stats: Stats::default(),
        rates: Rates::default(),
    }
}

fn service(
    protocol: Protocol,
    address: impl Into<IpAddr>,
    port: u16,
    scheduler: Scheduler,
) -> ServiceEntry {
    ServiceEntry {
        service: ServiceKey {
            protocol,
            address: address.into(),
            port,
        },
        config: ServiceConfig {
            scheduler,
            sched_flags: SchedFlags::default(),
            persistence: None,
        },
        stats: Stats::default(),
        rates: Rates::default(),
        real_servers: Vec::new(),
    }
}

/// Services and servers deliberately out of order, counters that hit every scaling step,
/// persistence with and without a mask, scheduler flags, thresholds, a name long enough to
/// be cut, and an IPv6 service (persistent by a /64, with a name longer than IPv4's columns,
/// which ipvsadm prints whole).
pub fn snapshot() -> Snapshot {
    let mut dns = service(Protocol::Udp, ip(10, 0, 0, 2), 53, Scheduler::RoundRobin);
    let mut dns_server = server(ip(10, 0, 0, 21), 53, 1);
    dns_server.server.u_threshold = 100;
    dns_server.server.l_threshold = 50;
    dns_server.inactive_conns = 7;
    dns.real_servers.push(dns_server);

    let mut web = service(
        Protocol::Tcp,
        ip(10, 0, 0, 1),
        80,
        Scheduler::WeightedLeastConnection,
    );
    let mut second = server(ip(10, 0, 0, 12), 80, 2);
    second.active_conns = 1234;
    second.inactive_conns = 56;
    second.persistent_conns = 3;
    second.stats = Stats {
        conns: 99_999_999,
        inpkts: 999_999_999,
        outpkts: 99_999_999_999,
        inbytes: 99_999_999_999_999,
        outbytes: 123_456_789_012_345_678,
    };
    second.rates = Rates {
        cps: 12,
        inpps: 345,
        outpps: 0,
        inbps: 123_456_789,
        outbps: 42,
    };
    web.real_servers.push(second);
    web.real_servers.push(server(ip(10, 0, 0, 11), 80, 1));
    web.stats = Stats {
        conns: 1500,
        inpkts: 100_000_000,
        outpkts: 0,
        inbytes: 1_000_000_000,
        outbytes: 100_000_000_000_000,
    };
    web.rates = Rates {
        cps: 3,
        inpps: 40,
        outpps: 0,
        inbps: 5000,
        outbps: 0,
    };

    let mut tls = service(
        Protocol::Tcp,
        ip(10, 0, 0, 1),
        443,
        Scheduler::SourceHashing,
    );
    tls.config.sched_flags = SchedFlags {
        fallback: true,
        port: true,
    };
    tls.config.persistence = Some(Persistence {
        timeout: 300,
        netmask: crate::base::values::Granularity::Netmask(
            crate::base::values::Netmask::new(ip(255, 255, 255, 0)).unwrap(),
        ),
    });
    tls.real_servers.push(server(ip(10, 0, 0, 11), 443, 0));

    let mut maglev = service(
        Protocol::Tcp,
        ip(192, 168, 100, 200),
        65535,
        Scheduler::MaglevHashing,
    );
    maglev.config.sched_flags.port = true;
    maglev.config.persistence = Some(Persistence {
        timeout: 3600,
        netmask: crate::base::values::Granularity::Netmask(
            crate::base::values::Netmask::new(Ipv4Addr::BROADCAST).unwrap(),
        ),
    });
    maglev
        .real_servers
        .push(server(ip(192, 168, 100, 201), 65535, 65535));

    let mut ipv6 = service(
        Protocol::Tcp,
        v6("2001:db8:ffff:100::10"),
        443,
        Scheduler::WeightedLeastConnection,
    );
    ipv6.config.persistence = Some(Persistence {
        timeout: 600,
        netmask: crate::base::values::Granularity::PrefixLength(
            crate::base::values::PrefixLength::new(64).unwrap(),
        ),
    });
    ipv6.real_servers
        .push(server(v6("2001:db8:ffff:100::12"), 443, 2));
    ipv6.real_servers
        .push(server(v6("2001:db8:ffff:100::11"), 443, 1));
    ipv6.real_servers[1].active_conns = 1;

    Snapshot {
        connection_table_size: 4096,
        timeouts: Timeouts {
            tcp: 900,
            tcp_fin: 120,
            udp: 300,
        },
        services: vec![dns, web, tls, ipv6, maglev],
        connections: vec![
            Connection {
                protocol: Protocol::Tcp,
                expires: 899,
                state: ConnectionState::Established,
                source: SocketAddrV4::new(ip(198, 51, 100, 7), 51234).into(),
                virtual_service: SocketAddrV4::new(ip(10, 0, 0, 1), 80).into(),
                destination: SocketAddrV4::new(ip(10, 0, 0, 11), 80).into(),
            },
            Connection {
                protocol: Protocol::Udp,
                expires: 5,
                state: ConnectionState::Udp,
                source: SocketAddrV4::new(ip(198, 51, 100, 8), 40000).into(),
                virtual_service: SocketAddrV4::new(ip(10, 0, 0, 2), 53).into(),
                destination: SocketAddrV4::new(ip(10, 0, 0, 21), 53).into(),
            },
            Connection {
                protocol: Protocol::Tcp,
                expires: 42,
                state: ConnectionState::Established,
                source: SocketAddr::new(v6("2001:db8:1::7").into(), 40001),
                virtual_service: SocketAddr::new(v6("2001:db8:ffff:100::10").into(), 443),
                destination: SocketAddr::new(v6("2001:db8:ffff:100::11").into(), 443),
            },
            Connection {
                protocol: Protocol::Tcp,
                expires: 7200,
                state: ConnectionState::None,
                source: SocketAddrV4::new(ip(198, 51, 100, 0), 0).into(),
                virtual_service: SocketAddrV4::new(ip(10, 0, 0, 1), 443).into(),
                destination: SocketAddrV4::new(ip(10, 0, 0, 12), 443).into(),
            },
        ],
    }
}
