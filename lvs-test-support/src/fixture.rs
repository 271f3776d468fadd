//! The director set-up shared by the data-plane tests and the data-plane benchmark: the
//! addresses, a configuration, the maps programmed through the real director model, and
//! frame builders. Behind the `fixture` feature, as it needs lvs-userspace.

use std::net::Ipv4Addr;

use etherparse::PacketBuilder;
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

pub fn build(
    builder: etherparse::PacketBuilderStep<etherparse::TcpHeader>,
    payload: &[u8],
) -> Vec<u8> {
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
    let base = PacketBuilder::ethernet2(CLIENT_MAC, DIRECTOR_MAC)
        .ipv4(client, dst, 64)
        .tcp(client_port, dst_port, 1, 64240);
    match kind {
        TcpKind::Syn => build(base.syn(), &[]),
        TcpKind::Ack => build(base.ack(1), b"data"),
        TcpKind::Fin => build(base.fin().ack(1), &[]),
        TcpKind::Rst => build(base.rst(), &[]),
    }
}

pub fn tcp_ack(dst_port: u16) -> Vec<u8> {
    build(
        PacketBuilder::ethernet2(CLIENT_MAC, DIRECTOR_MAC)
            .ipv4(CLIENT, VIP, 64)
            .tcp(40000, dst_port, 2, 64240)
            .ack(1),
        b"GET / HTTP/1.1\r\n\r\n",
    )
}
