//! The director set-up shared by the data-plane tests and the data-plane benchmark: the
//! addresses, a configuration, the maps programmed through the real director model, and
//! frame builders. Behind the `fixture` feature, as it needs lvs-userspace.

use std::net::Ipv4Addr;

use etherparse::{IpHeaders, PacketBuilder, PacketBuilderStep};
use lvs_common::flow::Settings;
use lvs_userspace::{
    base::mac::MacAddr,
    io::bpf::BpfDataPlane,
    logic::{
        config,
        dataplane::DataPlane,
        model::{Model, Neighbour},
    },
};

pub const XDP_DROP: u32 = 1;
pub const XDP_PASS: u32 = 2;
pub const XDP_TX: u32 = 3;

pub const DIRECTOR_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
pub const CLIENT_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0xaa];
pub const RS1_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x11];
pub const RS2_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x12];
pub const RS4_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x14];
pub const CLIENT: [u8; 4] = [192, 0, 2, 7];
pub const VIP: [u8; 4] = [10, 0, 0, 100];

pub const CONFIG: &str = r#"
[director]
interface = "test0"

[[virtual_server]]
address = "10.0.0.100"
port = 80
[[virtual_server.real_server]]
address = "10.0.0.11"

[[virtual_server]]
address = "10.0.0.100"
port = 53
protocol = "UDP"
[[virtual_server.real_server]]
address = "10.0.0.11"

# Maglev over client address and port: flows of one client spread over both servers.
[[virtual_server]]
address = "10.0.0.100"
port = 8080
lb_algo = "mh"
sched_flags = ["mh-port"]
[[virtual_server.real_server]]
address = "10.0.0.11"
[[virtual_server.real_server]]
address = "10.0.0.12"

# A service whose only real server never answered ARP.
[[virtual_server]]
address = "10.0.0.101"
port = 80
[[virtual_server.real_server]]
address = "10.0.0.13"
"#;

/// The data plane's settings with IPVS's default timeouts.
pub fn default_settings() -> Settings {
    Settings::with_timeouts(900, 120, 300, 0)
}

/// Programs `dataplane` through the director model, as the daemon does; returns the model.
pub fn program(dataplane: &mut dyn DataPlane) -> Model {
    program_config(dataplane, CONFIG)
}

/// Programs `dataplane` with the services of `config_text`, all three real servers resolved
/// and 10.0.0.13 unresolved.
pub fn program_config(dataplane: &mut dyn DataPlane, config_text: &str) -> Model {
    let config = config::parse(config_text, "fixture.toml").expect("the fixture config is valid");
    let mut model = Model::new(&config.services).expect("the fixture fits the maps");
    model.set_neighbour(
        Ipv4Addr::new(10, 0, 0, 11),
        Neighbour::Resolved {
            mac: MacAddr(RS1_MAC),
        },
    );
    model.set_neighbour(
        Ipv4Addr::new(10, 0, 0, 12),
        Neighbour::Resolved {
            mac: MacAddr(RS2_MAC),
        },
    );
    model.set_neighbour(
        Ipv4Addr::new(10, 0, 0, 13),
        Neighbour::Unresolved {
            reason: "no ARP reply".into(),
        },
    );
    model.set_neighbour(
        Ipv4Addr::new(10, 0, 0, 14),
        Neighbour::Resolved {
            mac: MacAddr(RS4_MAC),
        },
    );
    dataplane
        .set_director(DIRECTOR_MAC)
        .expect("director entry");
    dataplane
        .set_settings(default_settings())
        .expect("settings");
    model.sync(dataplane).expect("sync");
    model
}

pub fn loaded() -> BpfDataPlane {
    let mut dataplane = BpfDataPlane::load(false).expect("load the XDP object (are you root?)");
    program(&mut dataplane);
    dataplane
}

pub fn build(builder: PacketBuilderStep<etherparse::TcpHeader>, payload: &[u8]) -> Vec<u8> {
    let mut frame = Vec::new();
    builder.write(&mut frame, payload).expect("build frame");
    frame
}

pub fn tcp_syn(dst: [u8; 4], dst_port: u16) -> Vec<u8> {
    tcp_from(CLIENT, 40000, dst, dst_port, TcpKind::Syn)
}

/// The TCP segments the director's state machine tells apart.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TcpKind {
    Syn,
    Ack,
    Fin,
    Rst,
}

/// A TCP segment from `client:client_port` to `dst:dst_port`.
pub fn tcp_from(
    client: [u8; 4],
    client_port: u16,
    dst: [u8; 4],
    dst_port: u16,
    kind: TcpKind,
) -> Vec<u8> {
    let ip = PacketBuilder::ethernet2(CLIENT_MAC, DIRECTOR_MAC).ipv4(client, dst, 64);
    tcp_over(ip, client_port, dst_port, kind)
}

/// A TCP segment of `kind` over the Ethernet and IP headers `ip` (either family).
fn tcp_over(
    ip: PacketBuilderStep<IpHeaders>,
    client_port: u16,
    dst_port: u16,
    kind: TcpKind,
) -> Vec<u8> {
    let base = ip.tcp(client_port, dst_port, 1, 64240);
    match kind {
        TcpKind::Syn => build(base.syn(), &[]),
        TcpKind::Ack => build(base.ack(1), b"data"),
        TcpKind::Fin => build(base.fin().ack(1), &[]),
        TcpKind::Rst => build(base.rst(), &[]),
    }
}

/// An ACK carrying a request, from port 40000 to `dst_port`, over the headers `ip`.
fn request_over(ip: PacketBuilderStep<IpHeaders>, dst_port: u16) -> Vec<u8> {
    build(
        ip.tcp(40000, dst_port, 2, 64240).ack(1),
        b"GET / HTTP/1.1\r\n\r\n",
    )
}

pub fn tcp_ack(dst_port: u16) -> Vec<u8> {
    request_over(
        PacketBuilder::ethernet2(CLIENT_MAC, DIRECTOR_MAC).ipv4(CLIENT, VIP, 64),
        dst_port,
    )
}

/// IPv6: a client, the VIP and its services, programmed straight through `DataPlane` (the
/// config does not take IPv6 addresses yet). Their service indices and real-server ids lie
/// above the IPv4 model's, so both families share the maps as the daemon's would.
pub const CLIENT6: [u8; 16] = [0x20, 0x01, 0x0d, 0xb8, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 7];
pub const VIP6: [u8; 16] = [
    0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
];
/// A second IPv6 VIP whose only service has no usable real server.
pub const VIP6_DOWN: [u8; 16] = [
    0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x11,
];

/// `[2001:db8::10]:80` TCP, round robin over one real server (RS1).
pub const SERVICE6_TCP: u32 = 10;
/// `[2001:db8::10]:53` UDP, round robin over one real server (RS1).
pub const SERVICE6_UDP: u32 = 11;
/// `[2001:db8::10]:443` TCP, `sh` over RS1 and RS2 by slot parity, persistent for 300 s per
/// client /64.
pub const SERVICE6_PERSISTENT: u32 = 12;
/// `[2001:db8::10]:8080` TCP, `sh` over RS1 and RS2 by slot parity.
pub const SERVICE6_SH: u32 = 13;
/// `[2001:db8::11]:80` TCP, whose table names no real server.
pub const SERVICE6_DOWN: u32 = 14;

/// The real-server ids of the IPv6 services: RS1 for the two rings, RS1 and RS2 for each
/// hashed service.
pub const RS6_TCP: u32 = 100;
pub const RS6_UDP: u32 = 101;
pub const RS6_PERSISTENT: [u32; 2] = [102, 103];
pub const RS6_SH: [u32; 2] = [104, 105];

/// The real server a hashed IPv6 service's slot names: slot parity picks RS1 or RS2.
pub fn ipv6_slot_mac(slot: u32) -> [u8; 6] {
    if slot.is_multiple_of(2) {
        RS1_MAC
    } else {
        RS2_MAC
    }
}

/// Programs `dataplane` as `program` does, then adds the IPv6 services above.
pub fn program_ipv6(dataplane: &mut dyn DataPlane) -> Model {
    let model = program(dataplane);
    write_ipv6_services(dataplane).expect("program the IPv6 services");
    model
}

fn write_ipv6_services(
    dataplane: &mut dyn DataPlane,
) -> Result<(), lvs_userspace::logic::dataplane::DataPlaneError> {
    use lvs_common::{
        IPPROTO_TCP, IPPROTO_UDP, LOOKUP_TABLE_SIZE, NO_REAL_SERVER, REAL_SERVER_USABLE,
        RealServerEntry, SERVICE_RING, ServiceEntry, ServiceKey6, address::ipv6_prefix_mask,
        keys::ServiceMapKey,
    };
    let real_server = |mac: [u8; 6], last: u8| RealServerEntry {
        addr: [
            0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, last,
        ],
        mac,
        flags: REAL_SERVER_USABLE,
        generation: 1,
    };
    let service = |addr: [u8; 16], port: u16, protocol: u8| {
        ServiceMapKey::V6(ServiceKey6 {
            addr,
            port: port.to_be_bytes(),
            protocol,
            _pad: 0,
        })
    };
    let entry = |index, flags, ring_len, persist_timeout_s, persist_mask| ServiceEntry {
        index,
        flags,
        ring_len,
        persist_timeout_s,
        persist_mask,
    };
    let hashed = |ids: [u32; 2]| -> Vec<(u32, u32)> {
        (0..LOOKUP_TABLE_SIZE)
            .map(|slot| (slot, ids[(slot % 2) as usize]))
            .collect()
    };
    dataplane.set_real_server(RS6_TCP, real_server(RS1_MAC, 0x21))?;
    dataplane.set_real_server(RS6_UDP, real_server(RS1_MAC, 0x21))?;
    for ids in [RS6_PERSISTENT, RS6_SH] {
        dataplane.set_real_server(ids[0], real_server(RS1_MAC, 0x21))?;
        dataplane.set_real_server(ids[1], real_server(RS2_MAC, 0x22))?;
    }
    dataplane.set_lookup_slots(SERVICE6_TCP, &[(0, RS6_TCP)])?;
    dataplane.set_lookup_slots(SERVICE6_UDP, &[(0, RS6_UDP)])?;
    dataplane.set_lookup_slots(SERVICE6_PERSISTENT, &hashed(RS6_PERSISTENT))?;
    dataplane.set_lookup_slots(SERVICE6_SH, &hashed(RS6_SH))?;
    dataplane.set_lookup_slots(SERVICE6_DOWN, &[(0, NO_REAL_SERVER)])?;
    for index in [SERVICE6_TCP, SERVICE6_UDP, SERVICE6_DOWN] {
        dataplane.reset_cursors(index, 1)?;
    }
    let no_mask = [0; 16];
    dataplane.set_service(
        service(VIP6, 80, IPPROTO_TCP),
        entry(SERVICE6_TCP, SERVICE_RING, 1, 0, no_mask),
    )?;
    dataplane.set_service(
        service(VIP6, 53, IPPROTO_UDP),
        entry(SERVICE6_UDP, SERVICE_RING, 1, 0, no_mask),
    )?;
    dataplane.set_service(
        service(VIP6, 443, IPPROTO_TCP),
        entry(SERVICE6_PERSISTENT, 0, 0, 300, ipv6_prefix_mask(64)),
    )?;
    dataplane.set_service(
        service(VIP6, 8080, IPPROTO_TCP),
        entry(SERVICE6_SH, 0, 0, 0, no_mask),
    )?;
    dataplane.set_service(
        service(VIP6_DOWN, 80, IPPROTO_TCP),
        entry(SERVICE6_DOWN, SERVICE_RING, 1, 0, no_mask),
    )?;
    Ok(())
}

/// A director loaded and programmed with both families' services.
pub fn loaded_ipv6() -> BpfDataPlane {
    let mut dataplane = BpfDataPlane::load(false).expect("load the XDP object (are you root?)");
    program_ipv6(&mut dataplane);
    dataplane
}

/// A TCP segment over IPv6 from `client:client_port` to `dst:dst_port`.
pub fn tcp6_from(
    client: [u8; 16],
    client_port: u16,
    dst: [u8; 16],
    dst_port: u16,
    kind: TcpKind,
) -> Vec<u8> {
    let ip = PacketBuilder::ethernet2(CLIENT_MAC, DIRECTOR_MAC).ipv6(client, dst, 64);
    tcp_over(ip, client_port, dst_port, kind)
}

/// A TCP SYN from the IPv6 client, port 40000.
pub fn tcp6_syn(dst: [u8; 16], dst_port: u16) -> Vec<u8> {
    tcp6_from(CLIENT6, 40000, dst, dst_port, TcpKind::Syn)
}

/// An ACK with a request from the IPv6 client, port 40000, to the VIP.
pub fn tcp6_ack(dst_port: u16) -> Vec<u8> {
    request_over(
        PacketBuilder::ethernet2(CLIENT_MAC, DIRECTOR_MAC).ipv6(CLIENT6, VIP6, 64),
        dst_port,
    )
}

/// A UDP datagram over IPv6 from the client, port 5353, to the VIP.
pub fn udp6(dst_port: u16) -> Vec<u8> {
    let mut frame = Vec::new();
    PacketBuilder::ethernet2(CLIENT_MAC, DIRECTOR_MAC)
        .ipv6(CLIENT6, VIP6, 64)
        .udp(5353, dst_port)
        .write(&mut frame, b"query")
        .expect("build frame");
    frame
}
