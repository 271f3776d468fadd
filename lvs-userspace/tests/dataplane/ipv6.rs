//! The data plane's IPv6 path: the same fixtures as IPv4's (forwarded frames byte for byte,
//! every pass reason, the validation rule), and IPv6's own: extension headers, fragment
//! headers, ICMPv6 errors and neighbour discovery. The IPv6 services are the fixture's
//! (`fixture::program_ipv6`), written straight through `DataPlane`.

use etherparse::{
    Icmpv6Type,
    icmpv6::{DestUnreachableCode, TimeExceededCode},
};
use lvs_common::{
    Address, IPPROTO_TCP,
    flow::{FlowState, SETTINGS_DENY_LIST, SETTINGS_DENY_LIST6},
    keys::{FlowMapKey, TemplateMapKey},
};

use super::*;

/// Where the IPv6 header starts in an untagged frame, and where what follows it starts.
const IP: usize = 14;
const L4: usize = IP + 40;

/// A router on the way to the client.
const ROUTER6: [u8; 16] = [
    0x20, 0x01, 0x0d, 0xb8, 0xff, 0xff, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1,
];

/// IPv6 next-header values.
const HOP_BY_HOP: u8 = 0;
const ROUTING: u8 = 43;
const FRAGMENT: u8 = 44;
const DESTINATION_OPTIONS: u8 = 60;
const NO_NEXT_HEADER: u8 = 59;
const ESP: u8 = 50;

/// An extension header to insert: its next-header value and its length in 8-byte units beyond
/// the first (a fragment header's "length" is its fragment offset in 8-byte units instead).
#[derive(Clone, Copy)]
struct Extension(u8, u8);

/// `frame` (an IPv6 packet whose header starts at `ip`) with `extensions` inserted after its
/// header, in order, their next-header fields chained and the payload length grown to match.
/// Options are Pad1 bytes (zero), a routing header is of type 0 with no segments left.
fn with_extensions_at(mut frame: Vec<u8>, ip: usize, extensions: &[Extension]) -> Vec<u8> {
    let mut inserted = Vec::new();
    let mut kinds: Vec<u8> = extensions.iter().map(|e| e.0).collect();
    kinds.push(frame[ip + 6]);
    for (index, &Extension(kind, units)) in extensions.iter().enumerate() {
        let next = kinds[index + 1];
        if kind == FRAGMENT {
            let offset = u16::from(units) << 3;
            inserted.extend_from_slice(&[next, 0]);
            inserted.extend_from_slice(&offset.to_be_bytes());
            inserted.extend_from_slice(&[0, 0, 0x12, 0x34]);
        } else {
            let mut header = vec![0u8; (usize::from(units) + 1) * 8];
            header[0] = next;
            header[1] = units;
            inserted.extend_from_slice(&header);
        }
    }
    frame[ip + 6] = kinds[0];
    let payload = u16::from_be_bytes([frame[ip + 4], frame[ip + 5]]) as usize + inserted.len();
    frame[ip + 4..ip + 6].copy_from_slice(&(payload as u16).to_be_bytes());
    frame.splice(ip + 40..ip + 40, inserted);
    frame
}

fn with_extensions(frame: Vec<u8>, extensions: &[Extension]) -> Vec<u8> {
    with_extensions_at(frame, IP, extensions)
}

/// Where the transport header starts after `extensions`.
fn l4_after(extensions: &[Extension]) -> usize {
    L4 + extensions
        .iter()
        .map(|&Extension(kind, units)| {
            if kind == FRAGMENT {
                8
            } else {
                (usize::from(units) + 1) * 8
            }
        })
        .sum::<usize>()
}

fn vlan6_syn(outer: Option<u16>, inner: u16) -> Vec<u8> {
    vlan_syn_over(outer, inner, |vlan| vlan.ipv6(CLIENT6, VIP6, 64))
}

/// What an ICMPv6 error quotes: a segment the real server sent for the connection
/// `CLIENT6:client_port` <-> `VIP6:service_port`, from the VIP, cut after `keep` bytes of
/// TCP (ICMPv6 quotes as much as fits; 8 is the least that names the connection).
fn quote6(service_port: u16, client_port: u16, keep: usize) -> Vec<u8> {
    quoted_segment(
        PacketBuilder::ipv6(VIP6, CLIENT6, 64),
        service_port,
        client_port,
        40 + keep,
    )
}

/// An ICMPv6 error from a router to the VIP, quoting `quoted`.
fn icmp6_error(kind: Icmpv6Type, quoted: &[u8]) -> Vec<u8> {
    let mut frame = Vec::new();
    PacketBuilder::ethernet2(CLIENT_MAC, DIRECTOR_MAC)
        .ipv6(ROUTER6, VIP6, 64)
        .icmpv6(kind)
        .write(&mut frame, quoted)
        .expect("build the ICMPv6 error");
    frame
}

fn packet_too_big(quoted: &[u8]) -> Vec<u8> {
    icmp6_error(Icmpv6Type::PacketTooBig { mtu: 1280 }, quoted)
}

/// A neighbour solicitation for the VIP, to its solicited-node multicast address.
fn neighbour_solicitation() -> Vec<u8> {
    let solicited: [u8; 16] = [0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0xff, 0, 0, 0x10];
    let mut body = VIP6.to_vec();
    body.extend_from_slice(&[1, 1]); // source link-layer address option
    body.extend_from_slice(&CLIENT_MAC);
    let mut frame = Vec::new();
    PacketBuilder::ethernet2(CLIENT_MAC, [0x33, 0x33, 0xff, 0, 0, 0x10])
        .ipv6(CLIENT6, solicited, 255)
        .icmpv6_raw(135, 0, [0; 4])
        .write(&mut frame, &body)
        .expect("build the neighbour solicitation");
    frame
}

fn echo_request6() -> Vec<u8> {
    let mut frame = Vec::new();
    PacketBuilder::ethernet2(CLIENT_MAC, DIRECTOR_MAC)
        .ipv6(CLIENT6, VIP6, 64)
        .icmpv6_echo_request(1, 1)
        .write(&mut frame, b"ping")
        .expect("build the echo request");
    frame
}

/// `frame` with its IPv6 source replaced.
fn from6(frame: Vec<u8>, source: [u8; 16]) -> Vec<u8> {
    with(frame, |f| f[IP + 8..IP + 24].copy_from_slice(&source))
}

/// `frame` with its IPv6 payload length set to `length`.
fn payload_length(frame: Vec<u8>, length: usize) -> Vec<u8> {
    with(frame, |f| {
        f[IP + 4..IP + 6].copy_from_slice(&(length as u16).to_be_bytes())
    })
}

fn ipv6_fixtures() -> Vec<Fixture> {
    let forward = |description, frame: Vec<u8>| Fixture {
        description,
        output: Some(rewritten(&frame, RS1_MAC)),
        frame,
        action: XDP_TX,
        counter: Counter::TxForwarded,
    };
    let pass = |description, frame, counter| Fixture {
        description,
        frame,
        action: XDP_PASS,
        counter,
        output: None,
    };
    let relay = |description, frame: Vec<u8>| Fixture {
        description,
        output: Some(rewritten(&frame, RS1_MAC)),
        frame,
        action: XDP_TX,
        counter: Counter::TxIcmpError,
    };
    let syn = || tcp6_syn(VIP6, 80);
    let hop = Extension(HOP_BY_HOP, 0);
    let routing = Extension(ROUTING, 2);
    let options = Extension(DESTINATION_OPTIONS, 1);
    let four = [hop, routing, options, Extension(DESTINATION_OPTIONS, 0)];
    let five = [hop, routing, options, options, options];
    let known = || quote6(80, 40000, 20);
    vec![
        forward("IPv6 TCP SYN to a service", syn()),
        forward("IPv6 TCP ACK with data to a service", tcp6_ack(80)),
        forward("IPv6 UDP to a service", udp6(53)),
        forward("802.1Q-tagged IPv6 SYN keeps its tag", vlan6_syn(None, 42)),
        forward(
            "QinQ-tagged IPv6 SYN keeps both tags",
            vlan6_syn(Some(100), 42),
        ),
        forward(
            "Ethernet padding after the IPv6 packet is allowed",
            with(syn(), |f| f.extend_from_slice(&[0; 6])),
        ),
        // Extension headers are walked to the ports, up to MAX_EXTENSION_HEADERS (4).
        forward(
            "a hop-by-hop options header",
            with_extensions(syn(), &[hop]),
        ),
        forward("a routing header", with_extensions(syn(), &[routing])),
        forward(
            "a destination options header",
            with_extensions(syn(), &[options]),
        ),
        forward(
            "UDP after a hop-by-hop and a routing header",
            with_extensions(udp6(53), &[hop, routing]),
        ),
        forward(
            "the longest chain walked: four extension headers",
            with_extensions(syn(), &four),
        ),
        forward(
            "the longest extension header (2048 bytes)",
            with_extensions(syn(), &[Extension(DESTINATION_OPTIONS, 255)]),
        ),
        pass(
            "one extension header more than the walk takes",
            with_extensions(syn(), &five),
            Counter::PassExtensionHeaders,
        ),
        pass(
            "a hop-by-hop header after another extension header",
            with_extensions(syn(), &[options, hop]),
            Counter::PassMalformed,
        ),
        pass(
            "a hop-by-hop header fifth, past the walk",
            with_extensions(syn(), &[hop, routing, options, options, hop]),
            Counter::PassMalformed,
        ),
        pass(
            "a fragment header first",
            with_extensions(syn(), &[Extension(FRAGMENT, 0)]),
            Counter::PassFragment,
        ),
        pass(
            "a later fragment after a hop-by-hop header",
            with_extensions(syn(), &[hop, Extension(FRAGMENT, 10)]),
            Counter::PassFragment,
        ),
        pass(
            "a fragment header after four extension headers",
            with_extensions(
                syn(),
                &[hop, routing, options, options, Extension(FRAGMENT, 0)],
            ),
            Counter::PassFragment,
        ),
        pass(
            "no next header",
            with(syn(), |f| f[IP + 6] = NO_NEXT_HEADER),
            Counter::PassNotTcpUdp,
        ),
        pass(
            "ESP after a destination options header",
            with_extensions(with(syn(), |f| f[IP + 6] = ESP), &[options]),
            Counter::PassNotTcpUdp,
        ),
        pass(
            "IPv6 TCP to a VIP port that is not a service",
            tcp6_syn(VIP6, 444),
            Counter::PassNotService,
        ),
        pass(
            "IPv6 UDP to a port that is only a TCP service",
            udp6(80),
            Counter::PassNotService,
        ),
        pass(
            "IPv6 TCP to an address that is not a VIP",
            tcp6_syn(ROUTER6, 80),
            Counter::PassNotService,
        ),
        pass(
            "IPv6 TCP to the IPv4 VIP's address, IPv4-mapped",
            tcp6_syn(
                [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 10, 0, 0, 100],
                80,
            ),
            Counter::PassNotService,
        ),
        pass(
            "IP version 4 inside IPv6's EtherType",
            with(syn(), |f| f[IP] = 0x40),
            Counter::PassMalformed,
        ),
        // Truncation at every header boundary, and inside each header.
        pass(
            "truncated IPv6: Ethernet header only",
            with(syn(), |f| f.truncate(IP)),
            Counter::PassTruncated,
        ),
        pass(
            "truncated IPv6: a VLAN tag and no IPv6 header",
            with(vlan6_syn(None, 42), |f| f.truncate(IP + 4)),
            Counter::PassTruncated,
        ),
        pass(
            "truncated IPv6: half a header",
            with(syn(), |f| f.truncate(IP + 20)),
            Counter::PassTruncated,
        ),
        pass(
            "truncated IPv6: the header and nothing after it",
            with(syn(), |f| f.truncate(L4)),
            Counter::PassTruncated,
        ),
        pass(
            "truncated hop-by-hop header: one byte of it",
            with(with_extensions(syn(), &[hop]), |f| f.truncate(L4 + 1)),
            Counter::PassTruncated,
        ),
        pass(
            "truncated routing header: cut inside its length",
            with(with_extensions(syn(), &[routing]), |f| f.truncate(L4 + 20)),
            Counter::PassTruncated,
        ),
        pass(
            "truncated destination options after a whole hop-by-hop header",
            with(with_extensions(syn(), &[hop, options]), |f| {
                f.truncate(L4 + 8 + 15)
            }),
            Counter::PassTruncated,
        ),
        pass(
            "truncated fourth extension header",
            with(with_extensions(syn(), &four), |f| {
                f.truncate(l4_after(&four) - 1)
            }),
            Counter::PassTruncated,
        ),
        pass(
            "extension headers whole, TCP header missing",
            with(with_extensions(syn(), &four), |f| {
                f.truncate(l4_after(&four))
            }),
            Counter::PassTruncated,
        ),
        pass(
            "truncated IPv6 TCP header",
            with(syn(), |f| f.truncate(L4 + 10)),
            Counter::PassTruncated,
        ),
        pass(
            "truncated IPv6 UDP header",
            with(udp6(53), |f| f.truncate(L4 + 4)),
            Counter::PassTruncated,
        ),
        pass(
            "truncated TCP header after an extension header",
            with(with_extensions(syn(), &[options]), |f| {
                f.truncate(L4 + 16 + 19)
            }),
            Counter::PassTruncated,
        ),
        // The validation rule, IPv6's version of it.
        pass(
            "an IPv6 payload length longer than the frame",
            with(tcp6_ack(80), |f| {
                let length = u16::from_be_bytes([f[IP + 4], f[IP + 5]]) + 1;
                f[IP + 4..IP + 6].copy_from_slice(&length.to_be_bytes());
            }),
            Counter::PassTruncated,
        ),
        pass(
            "an IPv6 payload length shorter than the extension headers",
            payload_length(with_extensions(syn(), &[options]), 8),
            Counter::PassMalformed,
        ),
        pass(
            "an IPv6 payload length of zero",
            payload_length(syn(), 0),
            Counter::PassMalformed,
        ),
        pass(
            "a multicast IPv6 source",
            from6(
                syn(),
                [0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1],
            ),
            Counter::PassMalformed,
        ),
        pass(
            "the unspecified address as source",
            from6(syn(), [0; 16]),
            Counter::PassMalformed,
        ),
        pass(
            "the loopback address as source",
            from6(syn(), [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]),
            Counter::PassMalformed,
        ),
        pass(
            "an IPv4-mapped source",
            from6(
                syn(),
                [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 192, 0, 2, 7],
            ),
            Counter::PassMalformed,
        ),
        pass(
            "the IPv6 VIP as its own source (LAND)",
            from6(syn(), VIP6),
            Counter::PassMalformed,
        ),
        pass(
            "a group address as source MAC, over IPv6",
            with(syn(), |f| f[6] |= 0x01),
            Counter::PassMalformed,
        ),
        pass(
            "a TCP data offset under 5 words, over IPv6",
            with(syn(), |f| f[L4 + 12] = 0x40),
            Counter::PassMalformed,
        ),
        pass(
            "a TCP header longer than the IPv6 packet",
            with(syn(), |f| f[L4 + 12] = 0xf0),
            Counter::PassMalformed,
        ),
        pass(
            "SYN with FIN, over IPv6",
            with(syn(), |f| f[L4 + 13] |= 0x01),
            Counter::PassMalformed,
        ),
        pass(
            "SYN with RST, over IPv6",
            with(syn(), |f| f[L4 + 13] |= 0x04),
            Counter::PassMalformed,
        ),
        pass(
            "a UDP length under 8, over IPv6",
            with(udp6(53), |f| f[L4 + 4..L4 + 6].copy_from_slice(&[0, 7])),
            Counter::PassMalformed,
        ),
        pass(
            "a UDP length beyond the IPv6 packet",
            with(udp6(53), |f| f[L4 + 4..L4 + 6].copy_from_slice(&[0, 14])),
            Counter::PassMalformed,
        ),
        pass(
            "a UDP checksum of zero, which IPv6 forbids",
            with(udp6(53), |f| f[L4 + 6..L4 + 8].copy_from_slice(&[0, 0])),
            Counter::PassMalformed,
        ),
        pass(
            "an IPv6 service's frame sent to another host's MAC address",
            with(syn(), |f| f[5] ^= 0x40),
            Counter::PassOtherHost,
        ),
        // ICMPv6: neighbour discovery and echo are the kernel's; errors about a known
        // connection (the SYN above made CLIENT6:40000 -> VIP6:80, on RS1) go to its server.
        pass(
            "a neighbour solicitation for the VIP",
            neighbour_solicitation(),
            Counter::PassNotTcpUdp,
        ),
        pass(
            "ICMPv6 echo to the VIP stays the director's",
            echo_request6(),
            Counter::PassNotTcpUdp,
        ),
        relay(
            "packet too big about a known connection goes to its real server",
            packet_too_big(&known()),
        ),
        relay(
            "packet too big quoting only 8 bytes of TCP",
            packet_too_big(&quote6(80, 40000, 8)),
        ),
        relay(
            "destination unreachable about a known connection",
            icmp6_error(
                Icmpv6Type::DestinationUnreachable(DestUnreachableCode::Address),
                &known(),
            ),
        ),
        relay(
            "time exceeded about a known connection",
            icmp6_error(
                Icmpv6Type::TimeExceeded(TimeExceededCode::HopLimitExceeded),
                &known(),
            ),
        ),
        relay(
            "packet too big quoting a packet with a destination options header",
            packet_too_big(&with_extensions_at(known(), 0, &[options])),
        ),
        relay(
            "packet too big quoting a first fragment",
            packet_too_big(&with_extensions_at(known(), 0, &[Extension(FRAGMENT, 0)])),
        ),
        relay(
            "ICMPv6 error after a hop-by-hop header",
            with_extensions(packet_too_big(&known()), &[hop]),
        ),
        pass(
            "packet too big about a connection the table does not hold",
            packet_too_big(&quote6(80, 40999, 20)),
            Counter::PassIcmpUnknownFlow,
        ),
        pass(
            "packet too big about a port that is not a service",
            packet_too_big(&quote6(444, 40000, 20)),
            Counter::PassNotService,
        ),
        pass(
            "a quote cut inside its IPv6 header",
            packet_too_big(&known()[..30]),
            Counter::PassTruncated,
        ),
        pass(
            "a quote cut inside its ports",
            packet_too_big(&known()[..40 + 6]),
            Counter::PassTruncated,
        ),
        pass(
            "a quote cut inside its extension header",
            packet_too_big(&with_extensions_at(known(), 0, &[options])[..40 + 10]),
            Counter::PassTruncated,
        ),
        pass(
            "an ICMPv6 header cut short",
            with(packet_too_big(&known()), |f| f.truncate(L4 + 4)),
            Counter::PassTruncated,
        ),
        pass(
            "a quote that lies: IP version 4",
            packet_too_big(&with(known(), |q| q[0] = 0x40)),
            Counter::PassMalformed,
        ),
        pass(
            "a quote that lies: a hop-by-hop header not first",
            packet_too_big(&with_extensions_at(known(), 0, &[options, hop])),
            Counter::PassMalformed,
        ),
        pass(
            "a quote of a later fragment",
            packet_too_big(&with_extensions_at(known(), 0, &[Extension(FRAGMENT, 3)])),
            Counter::PassFragment,
        ),
        pass(
            "a quote of a packet from another address than the VIP",
            packet_too_big(&with(known(), |q| q[8 + 15] = 0x99)),
            Counter::PassNotService,
        ),
        pass(
            "a quote of another VIP's packet, sent to this VIP",
            packet_too_big(&with(known(), |q| q[8..24].copy_from_slice(&VIP6_DOWN))),
            Counter::PassMalformed,
        ),
        pass(
            "a quote about ICMPv6",
            packet_too_big(&with(known(), |q| q[6] = 58)),
            Counter::PassNotTcpUdp,
        ),
        pass(
            "an IPv6 payload length that leaves the quoted ports out",
            payload_length(packet_too_big(&quote6(80, 40000, 8)), 8 + 40 + 4),
            Counter::PassMalformed,
        ),
        Fixture {
            description: "an IPv6 service whose table names no real server",
            frame: tcp6_syn(VIP6_DOWN, 80),
            action: XDP_DROP,
            counter: Counter::DropNoRealServer,
            output: None,
        },
    ]
}

#[test]
#[ignore = "needs root: loads BPF programs"]
fn ipv6_fixtures_give_the_expected_verdict_counter_and_bytes() {
    check_fixtures(&mut loaded_ipv6(), ipv6_fixtures());
}

/// The IPv4 fixtures give the same verdicts with IPv6 services beside them.
#[test]
#[ignore = "needs root: loads BPF programs"]
fn ipv4_fixtures_are_unchanged_beside_ipv6_services() {
    check_fixtures(&mut loaded_ipv6(), fixtures());
}

/// An established IPv6 connection follows its flow entry, not its service's table: after
/// the table is rewritten to name the other real server, the connection's next packets still
/// go where its first went, and its TCP state moves on as IPv4's does.
#[test]
#[ignore = "needs root: loads BPF programs"]
fn ipv6_established_packets_follow_their_flow() {
    let mut dataplane = loaded_ipv6();
    let syn = tcp6_from(CLIENT6, 41000, VIP6, 8080, TcpKind::Syn);
    let first = test_run::run(&mut dataplane, &syn, 1).unwrap();
    assert_eq!(first.action, XDP_TX);
    let mac: [u8; 6] = first.frame[0..6].try_into().unwrap();
    let other = if mac == RS1_MAC { RS6_SH[1] } else { RS6_SH[0] };
    // Every slot now names the other server: only the flow entry keeps the connection.
    let slots: Vec<(u32, u32)> = (0..LOOKUP_TABLE_SIZE).map(|slot| (slot, other)).collect();
    dataplane.set_lookup_slots(SERVICE6_SH, &slots).unwrap();

    let key = FlowMapKey::new(
        "[2001:db8:1::7]:41000".parse().unwrap(),
        "[2001:db8::10]:8080".parse().unwrap(),
        IPPROTO_TCP,
    )
    .unwrap();
    let state = |dataplane: &BpfDataPlane| {
        let flows = dataplane.flows().unwrap();
        let entry = flows.iter().find(|(k, _)| *k == key).expect("the flow").1;
        FlowState::from_u8(entry.state).unwrap()
    };
    assert_eq!(state(&dataplane), FlowState::SynRecv);
    for (kind, after) in [
        (TcpKind::Ack, FlowState::Established),
        (TcpKind::Fin, FlowState::FinWait),
    ] {
        let frame = tcp6_from(CLIENT6, 41000, VIP6, 8080, kind);
        let outcome = test_run::run(&mut dataplane, &frame, 1).unwrap();
        assert_eq!(outcome.action, XDP_TX, "{kind:?}");
        assert_eq!(outcome.frame, rewritten(&frame, mac), "{kind:?}");
        assert_eq!(state(&dataplane), after, "{kind:?}");
    }
    // A new connection of the same client takes the rewritten table.
    let other_mac = if mac == RS1_MAC { RS2_MAC } else { RS1_MAC };
    let new = tcp6_from(CLIENT6, 41001, VIP6, 8080, TcpKind::Syn);
    let outcome = test_run::run(&mut dataplane, &new, 1).unwrap();
    assert_eq!(outcome.frame[0..6], other_mac);
}

/// The flow hash of an IPv6 client: its address folded to 32 bits as IPVS's sh folds it.
fn hash6(flags: u32, client: [u8; 16], port: u16) -> u32 {
    schedule_hash(flags, client.fold(), VIP6.fold(), port.to_be_bytes()) % LOOKUP_TABLE_SIZE
}

/// `sh` over IPv6 hashes the folded client address: every client lands on the server its
/// hash's slot names, and clients spread over both.
#[test]
#[ignore = "needs root: loads BPF programs"]
fn ipv6_sh_hashes_the_folded_client_address() {
    let mut dataplane = loaded_ipv6();
    let mut per_server = [0usize; 2];
    for n in 0..400u16 {
        let mut client = CLIENT6;
        client[8..10].copy_from_slice(&n.to_be_bytes());
        client[14..16].copy_from_slice(&(n * 7).to_be_bytes());
        let frame = tcp6_from(client, 42000 + n, VIP6, 8080, TcpKind::Syn);
        let outcome = test_run::run(&mut dataplane, &frame, 1).unwrap();
        assert_eq!(outcome.action, XDP_TX, "client {n}");
        let want = ipv6_slot_mac(hash6(0, client, 0));
        assert_eq!(outcome.frame, rewritten(&frame, want), "client {n}");
        per_server[usize::from(want == RS2_MAC)] += 1;
    }
    for count in per_server {
        assert!(
            (120..=280).contains(&count),
            "uneven spread over two servers: {per_server:?}"
        );
    }
}

/// A persistent IPv6 service with a /64 mask sends every client of one /64 to the server
/// its first connection got, even a client whose own hash names the other server; its
/// template is keyed by the /64.
#[test]
#[ignore = "needs root: loads BPF programs"]
fn ipv6_persistence_keeps_a_client_64_on_one_server() {
    let mut dataplane = loaded_ipv6();
    let in_64 = |last: u16| {
        let mut client = [
            0x20, 0x01, 0x0d, 0xb8, 0, 0x0a, 0, 0x0b, 0, 0, 0, 0, 0, 0, 0, 0,
        ];
        client[14..16].copy_from_slice(&last.to_be_bytes());
        client
    };
    let first = in_64(1);
    let frame = tcp6_from(first, 43000, VIP6, 443, TcpKind::Syn);
    let outcome = test_run::run(&mut dataplane, &frame, 1).unwrap();
    let mac = ipv6_slot_mac(hash6(0, first, 0));
    assert_eq!(
        outcome.frame,
        rewritten(&frame, mac),
        "the first client, by its hash"
    );

    let neighbour = (2..1000)
        .map(in_64)
        .find(|client| ipv6_slot_mac(hash6(0, *client, 0)) != mac)
        .expect("a client of the /64 whose hash names the other server");
    let frame = tcp6_from(neighbour, 43001, VIP6, 443, TcpKind::Syn);
    let outcome = test_run::run(&mut dataplane, &frame, 1).unwrap();
    assert_eq!(
        outcome.frame,
        rewritten(&frame, mac),
        "a client of the same /64 follows the template"
    );

    let mut elsewhere = neighbour;
    elsewhere[7] ^= 0x01; // another /64
    let frame = tcp6_from(elsewhere, 43002, VIP6, 443, TcpKind::Syn);
    let outcome = test_run::run(&mut dataplane, &frame, 1).unwrap();
    assert_eq!(
        outcome.frame,
        rewritten(&frame, ipv6_slot_mac(hash6(0, elsewhere, 0))),
        "a client of another /64 is scheduled by its own hash"
    );

    let templates = dataplane.templates().unwrap();
    let clients: Vec<[u8; 16]> = templates
        .iter()
        .filter_map(|(key, _)| match key {
            TemplateMapKey::V6(key) => Some(key.client),
            TemplateMapKey::V4(_) => None,
        })
        .collect();
    let mut network = first;
    network[8..].fill(0);
    let mut other_network = elsewhere;
    other_network[8..].fill(0);
    assert_eq!(clients.len(), 2, "one template per /64: {clients:02x?}");
    assert!(clients.contains(&network) && clients.contains(&other_network));
}

/// IPv6 traffic is counted per service and real server as IPVS counts it: the IP packet's
/// length, its 40-byte header and its payload.
#[test]
#[ignore = "needs root: loads BPF programs"]
fn ipv6_traffic_is_counted_by_ip_packet_length() {
    let mut dataplane = loaded_ipv6();
    let frame = tcp6_ack(80);
    for _ in 0..3 {
        test_run::run(&mut dataplane, &frame, 1).unwrap();
    }
    let ip_bytes = (frame.len() - IP) as u64;
    let service = dataplane.service_stats(SERVICE6_TCP).unwrap();
    assert_eq!(
        (service.connections, service.packets, service.bytes),
        (1, 3, 3 * ip_bytes)
    );
    let real_server = dataplane.real_server_stats(RS6_TCP).unwrap();
    assert_eq!(
        (
            real_server.connections,
            real_server.packets,
            real_server.bytes
        ),
        (1, 3, 3 * ip_bytes)
    );
}

/// The deny list drops an IPv6 frame from a listed source right after its IPv6 header:
/// counted against the longest IPv6 prefix that holds it, by IP packet length, before any
/// extension header is walked or any service looked up, and never making a flow. It is read
/// only while the settings say the list is in use, and the IPv4 prefixes beside it keep
/// their own counts in the same counter array.
#[test]
#[ignore = "needs root: loads BPF programs"]
fn the_deny_list_drops_ipv6_sources_by_longest_prefix_before_any_other_work() {
    use lvs_userspace::logic::deny::DenyList;

    let mut dataplane = loaded_ipv6();
    let mut deny = DenyList::default();
    let prefix = |text: &str| text.parse().unwrap();
    deny.set_config(&[
        prefix("2001:db8::/32"),
        prefix("2001:db8:1::7/128"),
        prefix("192.0.2.0/24"),
    ])
    .unwrap();
    deny.sync(&mut dataplane).unwrap();
    let host = |last: u16| std::net::Ipv6Addr::new(0x2001, 0xdb8, 5, 0, 0, 0, 0, last).octets();

    // Written but not in use: the program does not look the list up.
    let outcome = test_run::run(&mut dataplane, &tcp6_syn(VIP6, 80), 1).unwrap();
    assert_eq!(
        outcome.action, XDP_TX,
        "the list is not read while it is off"
    );
    let flows_before = dataplane.flows().unwrap().len();

    // The IPv4 list's flag alone leaves IPv6 frames unlooked-up: a list of IPv4 prefixes
    // costs IPv6 traffic nothing.
    let mut settings = default_settings();
    settings.flags |= SETTINGS_DENY_LIST;
    dataplane.set_settings(settings).unwrap();
    let outcome = test_run::run(&mut dataplane, &tcp6_syn(VIP6, 80), 1).unwrap();
    assert_eq!(
        outcome.action, XDP_TX,
        "IPv6 frames read only the IPv6 flag"
    );

    settings.flags |= SETTINGS_DENY_LIST6;
    dataplane.set_settings(settings).unwrap();
    let dropped_before = counter(&dataplane, Counter::DropDenied);
    let from_32 = |port: u16| tcp6_from(host(9), port, VIP6, 80, TcpKind::Syn);
    let frames = [
        (tcp6_syn(VIP6, 80), "a SYN from the /128"),
        (from_32(41001), "a SYN from the /32"),
        (
            with_extensions(from_32(41002), &[Extension(FRAGMENT, 1)]),
            "a later fragment from the /32",
        ),
        (
            with_extensions(from_32(41003), &[Extension(DESTINATION_OPTIONS, 0); 12]),
            "a chain of extension headers longer than the program walks, from the /32",
        ),
        (
            tcp6_from(host(9), 41004, VIP6_DOWN, 22, TcpKind::Syn),
            "TCP to no service from the /32",
        ),
    ];
    for (frame, what) in &frames {
        let outcome = test_run::run(&mut dataplane, frame, 1).unwrap();
        assert_eq!(outcome.action, XDP_DROP, "{what}");
        assert_eq!(&outcome.frame, frame, "{what}: untouched");
    }
    // An IPv4 frame from the IPv4 prefix beside them.
    let ipv4 = tcp_from([192, 0, 2, 9], 41005, VIP, 80, TcpKind::Syn);
    assert_eq!(
        test_run::run(&mut dataplane, &ipv4, 1).unwrap().action,
        XDP_DROP
    );
    assert_eq!(
        counter(&dataplane, Counter::DropDenied) - dropped_before,
        frames.len() as u64 + 1
    );
    assert_eq!(
        dataplane.flows().unwrap().len(),
        flows_before,
        "a denied frame makes no flow"
    );
    let counts: Vec<(String, u64, u64)> = deny
        .listing(&dataplane)
        .unwrap()
        .iter()
        .map(|d| (d.prefix.to_string(), d.packets, d.bytes))
        .collect();
    let ip_bytes = |frame: &[u8]| (frame.len() - IP) as u64;
    let slash32_bytes: u64 = frames[1..].iter().map(|(f, _)| ip_bytes(f)).sum();
    assert_eq!(
        counts,
        [
            ("192.0.2.0/24".to_owned(), 1, ip_bytes(&ipv4)),
            ("2001:db8::/32".to_owned(), 4, slash32_bytes),
            ("2001:db8:1::7/128".to_owned(), 1, ip_bytes(&frames[0].0)),
        ]
    );

    // A source outside the IPv6 prefixes goes on as before.
    let outside = tcp6_from(
        std::net::Ipv6Addr::new(0x2001, 0xdb9, 0, 0, 0, 0, 0, 1).octets(),
        41006,
        VIP6,
        80,
        TcpKind::Syn,
    );
    assert_eq!(
        test_run::run(&mut dataplane, &outside, 1).unwrap().action,
        XDP_TX
    );

    // Lifting the /128 leaves its address under the /32; an IPv4-only list lets it through.
    deny.set_config(&[prefix("2001:db8::/32"), prefix("192.0.2.0/24")])
        .unwrap();
    deny.sync(&mut dataplane).unwrap();
    let again = tcp6_from(CLIENT6, 41007, VIP6, 80, TcpKind::Syn);
    assert_eq!(
        test_run::run(&mut dataplane, &again, 1).unwrap().action,
        XDP_DROP
    );
    deny.set_config(&[prefix("192.0.2.0/24")]).unwrap();
    deny.sync(&mut dataplane).unwrap();
    let through = tcp6_from(CLIENT6, 41008, VIP6, 80, TcpKind::Syn);
    assert_eq!(
        test_run::run(&mut dataplane, &through, 1).unwrap().action,
        XDP_TX
    );
    assert_eq!(
        test_run::run(&mut dataplane, &ipv4, 1).unwrap().action,
        XDP_DROP,
        "the IPv4 client is still denied"
    );
}

/// An IPv6 service written as the daemon writes it: from the config file, through the model,
/// its real server's MAC from a neighbour entry. Its first SYN is forwarded to that MAC.
#[test]
#[ignore = "needs root: loads BPF programs"]
fn an_ipv6_service_from_the_config_is_forwarded() {
    use lvs_userspace::{base::mac::MacAddr, logic::model::Neighbour};

    let mut dataplane = BpfDataPlane::load(false).expect("load the XDP object (are you root?)");
    let config = format!(
        "{CONFIG}\n[[virtual_server]]\naddress = \"2001:db8::10\"\nport = 80\n\
         [[virtual_server.real_server]]\naddress = \"2001:db8::21\"\n"
    );
    let mut model = program_config(&mut dataplane, &config);
    model.set_neighbour(
        "2001:db8::21".parse::<std::net::Ipv6Addr>().unwrap(),
        Neighbour::Resolved {
            mac: MacAddr(RS4_MAC),
        },
    );
    model.sync(&mut dataplane).expect("sync");
    let frame = tcp6_syn(VIP6, 80);
    let outcome = test_run::run(&mut dataplane, &frame, 1).unwrap();
    assert_eq!(outcome.action, XDP_TX);
    assert_eq!(outcome.frame, rewritten(&frame, RS4_MAC));
    let flows = dataplane.flows().unwrap();
    assert!(
        flows
            .iter()
            .any(|(key, _)| matches!(key, FlowMapKey::V6(_))),
        "the connection is in FLOWS6"
    );
}
