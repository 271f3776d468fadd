//! Data-plane tests: the real XDP object, its maps programmed by the real director model, and
//! frames run through BPF_PROG_TEST_RUN. Each fixture is: a description, an input frame, the
//! expected verdict, the counter that must grow, and the expected output frame.
//!
//! They need root (loading BPF programs), so they are ignored by a plain `cargo test`;
//! `cargo xtask test` runs them as root, one at a time.

use lvs_test_support::fixture;

use etherparse::{ArpHardwareId, ArpOperation, ArpPacket, EtherType, PacketBuilder, VlanId};
use fixture::*;
use lvs_common::{Counter, LOOKUP_TABLE_SIZE, SERVICE_HASH_SOURCE_PORT, flow::schedule_hash};
use lvs_userspace::{
    io::bpf::{BpfDataPlane, test_run},
    logic::dataplane::{DataPlane, FakeDataPlane},
};

fn udp(dst_port: u16) -> Vec<u8> {
    let mut frame = Vec::new();
    PacketBuilder::ethernet2(CLIENT_MAC, DIRECTOR_MAC)
        .ipv4(CLIENT, VIP, 64)
        .udp(5353, dst_port)
        .write(&mut frame, b"query")
        .expect("build frame");
    frame
}

fn vlan_syn(outer: Option<u16>, inner: u16) -> Vec<u8> {
    let mut frame = Vec::new();
    let eth = PacketBuilder::ethernet2(CLIENT_MAC, DIRECTOR_MAC);
    let with_ip = match outer {
        None => eth
            .single_vlan(VlanId::try_new(inner).unwrap())
            .ipv4(CLIENT, VIP, 64),
        Some(outer) => eth
            .double_vlan(
                VlanId::try_new(outer).unwrap(),
                VlanId::try_new(inner).unwrap(),
            )
            .ipv4(CLIENT, VIP, 64),
    };
    with_ip
        .tcp(40000, 80, 1, 64240)
        .syn()
        .write(&mut frame, &[])
        .expect("build frame");
    frame
}

fn arp_request_for_vip() -> Vec<u8> {
    let mut frame = Vec::new();
    PacketBuilder::ethernet2(CLIENT_MAC, [0xff; 6])
        .arp(
            ArpPacket::new(
                ArpHardwareId::ETHERNET,
                EtherType::IPV4,
                ArpOperation::REQUEST,
                &CLIENT_MAC,
                &CLIENT,
                &[0; 6],
                &VIP,
            )
            .expect("arp packet"),
        )
        .write(&mut frame)
        .expect("build frame");
    frame
}

/// A SYN to the service whose IPv4 header carries `option_words` words of options (NOPs).
fn syn_with_ip_options(option_words: usize) -> Vec<u8> {
    let mut frame = tcp_syn(VIP, 80);
    let ip_start = 14;
    let options = vec![1u8; option_words * 4];
    frame.splice(ip_start + 20..ip_start + 20, options);
    let header_len = 20 + option_words * 4;
    frame[ip_start] = 0x40 | (header_len / 4) as u8;
    let total = u16::from_be_bytes([frame[ip_start + 2], frame[ip_start + 3]]) as usize;
    frame[ip_start + 2..ip_start + 4]
        .copy_from_slice(&((total + option_words * 4) as u16).to_be_bytes());
    fix_ipv4_checksum(&mut frame[ip_start..ip_start + header_len]);
    frame
}

fn fix_ipv4_checksum(header: &mut [u8]) {
    header[10] = 0;
    header[11] = 0;
    let mut sum: u32 = header
        .chunks(2)
        .map(|pair| u32::from(u16::from_be_bytes([pair[0], pair[1]])))
        .sum();
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    header[10..12].copy_from_slice(&(!(sum as u16)).to_be_bytes());
}

/// `frame` (a 20-byte IPv4 header after an untagged Ethernet header) with `edit` made and
/// the header checksum right again, so that only the edited rule can reject it.
fn with_ip(mut frame: Vec<u8>, edit: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
    edit(&mut frame);
    fix_ipv4_checksum(&mut frame[14..34]);
    frame
}

fn with(mut frame: Vec<u8>, edit: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
    edit(&mut frame);
    frame
}

/// The frame as the director should send it on: new destination and source MACs, nothing else.
fn rewritten(frame: &[u8], real_server_mac: [u8; 6]) -> Vec<u8> {
    let mut out = frame.to_vec();
    out[0..6].copy_from_slice(&real_server_mac);
    out[6..12].copy_from_slice(&DIRECTOR_MAC);
    out
}

struct Fixture {
    description: &'static str,
    frame: Vec<u8>,
    action: u32,
    counter: Counter,
    /// `None`: the frame must come out unchanged.
    output: Option<Vec<u8>>,
}

fn fixtures() -> Vec<Fixture> {
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
    vec![
        forward("TCP SYN to a service", tcp_syn(VIP, 80)),
        forward("TCP ACK with data to a service", tcp_ack(80)),
        forward("UDP to a service", udp(53)),
        forward("802.1Q-tagged SYN keeps its tag", vlan_syn(None, 42)),
        forward("QinQ-tagged SYN keeps both tags", vlan_syn(Some(100), 42)),
        forward(
            "IPv4 with options: ports read after them",
            syn_with_ip_options(3),
        ),
        forward(
            "IPv4 with the longest options (IHL 15)",
            syn_with_ip_options(10),
        ),
        pass(
            "TCP to a VIP port that is not a service",
            tcp_syn(VIP, 443),
            Counter::PassNotService,
        ),
        pass(
            "UDP to a port that is only a TCP service",
            udp(80),
            Counter::PassNotService,
        ),
        pass(
            "TCP to an address that is not a VIP",
            tcp_syn([10, 0, 0, 50], 80),
            Counter::PassNotService,
        ),
        pass(
            "ARP request for the VIP",
            arp_request_for_vip(),
            Counter::PassNotIpv4,
        ),
        pass(
            "IPv6",
            with(tcp_syn(VIP, 80), |f| {
                f[12..14].copy_from_slice(&[0x86, 0xdd])
            }),
            Counter::PassNotIpv4,
        ),
        pass(
            "ICMP to the VIP",
            with(tcp_syn(VIP, 80), |f| {
                f[14 + 9] = 1;
                fix_ipv4_checksum(&mut f[14..34]);
            }),
            Counter::PassNotTcpUdp,
        ),
        pass(
            "a first fragment (MF set) to a service",
            with(tcp_syn(VIP, 80), |f| {
                f[14 + 6] = 0x20;
                fix_ipv4_checksum(&mut f[14..34]);
            }),
            Counter::PassFragment,
        ),
        pass(
            "a later fragment (offset set) to a service",
            with(tcp_syn(VIP, 80), |f| {
                f[14 + 7] = 0x10;
                fix_ipv4_checksum(&mut f[14..34]);
            }),
            Counter::PassFragment,
        ),
        // BPF_PROG_TEST_RUN refuses frames shorter than an Ethernet header, so the shortest
        // truncation testable is a frame that ends right after it.
        pass(
            "truncated Ethernet: VLAN ethertype, no tag",
            with(vlan_syn(None, 42), |f| f.truncate(14)),
            Counter::PassTruncated,
        ),
        pass(
            "truncated IPv4: Ethernet header only",
            with(tcp_syn(VIP, 80), |f| f.truncate(14)),
            Counter::PassTruncated,
        ),
        pass(
            "truncated IPv4: half a header",
            with(tcp_syn(VIP, 80), |f| f.truncate(14 + 10)),
            Counter::PassTruncated,
        ),
        pass(
            "truncated TCP header",
            with(tcp_syn(VIP, 80), |f| f.truncate(14 + 20 + 10)),
            Counter::PassTruncated,
        ),
        pass(
            "truncated UDP header",
            with(udp(53), |f| f.truncate(14 + 20 + 4)),
            Counter::PassTruncated,
        ),
        pass(
            "IPv4 options that run past the end of the frame",
            with(syn_with_ip_options(10), |f| f.truncate(14 + 60 + 4)),
            Counter::PassTruncated,
        ),
        pass(
            "IPv4 header length below 20 bytes",
            with(tcp_syn(VIP, 80), |f| f[14] = 0x44),
            Counter::PassMalformed,
        ),
        pass(
            "IP version 6 inside an IPv4 ethertype",
            with(tcp_syn(VIP, 80), |f| f[14] = 0x65),
            Counter::PassMalformed,
        ),
        pass(
            "three VLAN tags",
            with(vlan_syn(Some(100), 42), |f| {
                f.splice(12..12, [0x81, 0x00, 0x00, 0x07]);
            }),
            Counter::PassMalformed,
        ),
        // The validation rule (`packet::check_valid`): what the kernel's stack would reject
        // is passed to it, never forwarded.
        pass(
            "a wrong IPv4 header checksum",
            with(tcp_syn(VIP, 80), |f| f[14 + 10] ^= 0x01),
            Counter::PassMalformed,
        ),
        pass(
            "IPv4 options with a wrong checksum",
            with(syn_with_ip_options(3), |f| f[14 + 20] = 0),
            Counter::PassMalformed,
        ),
        pass(
            "an IPv4 total length shorter than the header",
            with_ip(tcp_syn(VIP, 80), |f| {
                f[14 + 2..14 + 4].copy_from_slice(&[0, 19])
            }),
            Counter::PassMalformed,
        ),
        pass(
            "an IPv4 total length longer than the frame",
            with_ip(tcp_ack(80), |f| {
                let total = u16::from_be_bytes([f[16], f[17]]) + 1;
                f[16..18].copy_from_slice(&total.to_be_bytes());
            }),
            Counter::PassTruncated,
        ),
        pass(
            "a source in 0.0.0.0/8",
            with_ip(tcp_syn(VIP, 80), |f| f[26] = 0),
            Counter::PassMalformed,
        ),
        pass(
            "a loopback source",
            with_ip(tcp_syn(VIP, 80), |f| f[26] = 127),
            Counter::PassMalformed,
        ),
        pass(
            "a multicast source",
            with_ip(tcp_syn(VIP, 80), |f| f[26] = 224),
            Counter::PassMalformed,
        ),
        pass(
            "the limited broadcast as source",
            with_ip(tcp_syn(VIP, 80), |f| f[26..30].copy_from_slice(&[255; 4])),
            Counter::PassMalformed,
        ),
        pass(
            "the VIP as its own source (LAND)",
            with_ip(tcp_syn(VIP, 80), |f| f[26..30].copy_from_slice(&VIP)),
            Counter::PassMalformed,
        ),
        pass(
            "a group address as source MAC",
            with(tcp_syn(VIP, 80), |f| f[6] |= 0x01),
            Counter::PassMalformed,
        ),
        pass(
            "a TCP data offset under 5 words",
            with(tcp_syn(VIP, 80), |f| f[14 + 20 + 12] = 0x40),
            Counter::PassMalformed,
        ),
        pass(
            "a TCP header longer than the IP packet",
            with(tcp_syn(VIP, 80), |f| f[14 + 20 + 12] = 0xf0),
            Counter::PassMalformed,
        ),
        pass(
            "SYN with FIN",
            with(tcp_syn(VIP, 80), |f| f[14 + 20 + 13] |= 0x01),
            Counter::PassMalformed,
        ),
        pass(
            "SYN with RST",
            with(tcp_syn(VIP, 80), |f| f[14 + 20 + 13] |= 0x04),
            Counter::PassMalformed,
        ),
        pass(
            "a UDP length under 8",
            with(udp(53), |f| {
                f[14 + 20 + 4..14 + 20 + 6].copy_from_slice(&[0, 7])
            }),
            Counter::PassMalformed,
        ),
        pass(
            "a UDP length beyond the IP packet",
            with(udp(53), |f| {
                f[14 + 20 + 4..14 + 20 + 6].copy_from_slice(&[0, 14])
            }),
            Counter::PassMalformed,
        ),
        pass(
            "a service's frame sent to another host's MAC address",
            with(tcp_syn(VIP, 80), |f| f[5] ^= 0x40),
            Counter::PassOtherHost,
        ),
        forward(
            "Ethernet padding after the IP packet is allowed",
            with(tcp_syn(VIP, 80), |f| f.extend_from_slice(&[0; 6])),
        ),
        Fixture {
            description: "a service whose real servers are all unresolved",
            frame: tcp_syn([10, 0, 0, 101], 80),
            action: XDP_DROP,
            counter: Counter::DropNoRealServer,
            output: None,
        },
    ]
}

fn counter(dataplane: &BpfDataPlane, which: Counter) -> u64 {
    dataplane
        .counters()
        .expect("read counters")
        .into_iter()
        .find(|(c, _)| *c == which)
        .map(|(_, n)| n)
        .expect("every counter is reported")
}

#[test]
#[ignore = "needs root: loads BPF programs"]
fn fixtures_give_the_expected_verdict_counter_and_bytes() {
    let mut dataplane = loaded();
    let mut failures = Vec::new();
    for fixture in fixtures() {
        let before = counter(&dataplane, fixture.counter);
        let outcome = test_run::run(&mut dataplane, &fixture.frame, 1).expect("test run");
        let after = counter(&dataplane, fixture.counter);
        let expected_output = fixture
            .output
            .clone()
            .unwrap_or_else(|| fixture.frame.clone());
        if outcome.action != fixture.action {
            failures.push(format!(
                "{}: action {} (want {})",
                fixture.description, outcome.action, fixture.action
            ));
        }
        if after != before + 1 {
            failures.push(format!(
                "{}: counter {} went {before} -> {after}",
                fixture.description,
                fixture.counter.name()
            ));
        }
        if outcome.frame != expected_output {
            failures.push(format!(
                "{}: output frame differs\n  got  {:02x?}\n  want {:02x?}",
                fixture.description, outcome.frame, expected_output
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} fixture failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
#[ignore = "needs root: loads BPF programs"]
fn per_service_and_per_real_server_traffic_is_counted() {
    let mut dataplane = loaded();
    let frame = tcp_ack(80);
    for _ in 0..3 {
        test_run::run(&mut dataplane, &frame, 1).expect("test run");
    }
    let ip_bytes = (frame.len() - 14) as u64;
    let service = dataplane.service_stats(0).expect("service stats");
    assert_eq!((service.packets, service.bytes), (3, 3 * ip_bytes));
    assert_eq!(service.connections, 1, "one flow, one connection");
    let real_server = dataplane.real_server_stats(0).expect("real server stats");
    assert_eq!((real_server.packets, real_server.bytes), (3, 3 * ip_bytes));
    assert_eq!(real_server.connections, 1);
    let untouched = dataplane.service_stats(1).expect("service stats");
    assert_eq!(untouched.packets, 0);
}

/// The kernel's choice of real server must be the one userspace predicts from the same hash
/// and table: tooling (and the later schedulers) rely on that agreement.
#[test]
#[ignore = "needs root: loads BPF programs"]
fn flows_spread_over_real_servers_exactly_as_userspace_predicts() {
    let mut dataplane = loaded();
    let mut shadow = FakeDataPlane::default();
    program(&mut shadow);
    let service_index = 2; // TCP 10.0.0.100:8080
    let mut per_server = [0usize; 2];
    for port in (32768u16..32768 + 2000).step_by(2) {
        let frame = build(
            PacketBuilder::ethernet2(CLIENT_MAC, DIRECTOR_MAC)
                .ipv4(CLIENT, VIP, 64)
                .tcp(port, 8080, 1, 64240)
                .syn(),
            &[],
        );
        let outcome = test_run::run(&mut dataplane, &frame, 1).expect("test run");
        assert_eq!(outcome.action, XDP_TX, "source port {port}");
        let hash = schedule_hash(SERVICE_HASH_SOURCE_PORT, CLIENT, VIP, port.to_be_bytes());
        let predicted = shadow.slot(service_index, hash % LOOKUP_TABLE_SIZE);
        let predicted_mac = shadow.real_servers[&predicted].mac;
        assert_eq!(outcome.frame[0..6], predicted_mac, "source port {port}");
        per_server[usize::from(outcome.frame[5] == RS2_MAC[5])] += 1;
    }
    for count in per_server {
        assert!(
            (400..=600).contains(&count),
            "uneven spread over two servers: {per_server:?}"
        );
    }
}
