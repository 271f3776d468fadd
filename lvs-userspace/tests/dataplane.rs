//! Data-plane tests: the real XDP object, its maps programmed by the real director model, and
//! frames run through BPF_PROG_TEST_RUN. Each fixture is: a description, an input frame, the
//! expected verdict, the counter that must grow, and the expected output frame.
//!
//! They need root (loading BPF programs), so they are ignored by a plain `cargo test`;
//! `cargo xtask test` runs them as root, one at a time. IPv6's are in `ipv6`.

#[path = "dataplane/ipv6.rs"]
mod ipv6;

use lvs_test_support::fixture;

use etherparse::{
    ArpHardwareId, ArpOperation, ArpPacket, EtherType, Icmpv4Type, IpHeaders, PacketBuilder,
    PacketBuilderStep, VlanHeader, VlanId,
    icmpv4::{DestUnreachableHeader, TimeExceededCode},
};
use fixture::*;
use lvs_common::{
    Counter, IPPROTO_TCP, LOOKUP_TABLE_SIZE, MAX_REAL_SERVERS, SERVICE_HASH_SOURCE_PORT,
    ServiceKey, TrafficStats,
    flow::schedule_hash,
    keys::ServiceMapKey,
    service_table::{SERVICE_TABLE_PROBES, home_slot},
};
use lvs_userspace::{
    io::bpf::{BpfDataPlane, test_run},
    logic::dataplane::{DataPlane, FakeDataPlane, Family, ServiceLookup},
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

/// A TCP SYN behind one 802.1Q tag (`inner`) or two (`outer` too), its IP header written by
/// `ip` (either family's).
fn vlan_syn_over(
    outer: Option<u16>,
    inner: u16,
    ip: impl FnOnce(PacketBuilderStep<VlanHeader>) -> PacketBuilderStep<IpHeaders>,
) -> Vec<u8> {
    let mut frame = Vec::new();
    let eth = PacketBuilder::ethernet2(CLIENT_MAC, DIRECTOR_MAC);
    let vlan = match outer {
        None => eth.single_vlan(VlanId::try_new(inner).unwrap()),
        Some(outer) => eth.double_vlan(
            VlanId::try_new(outer).unwrap(),
            VlanId::try_new(inner).unwrap(),
        ),
    };
    ip(vlan)
        .tcp(40000, 80, 1, 64240)
        .syn()
        .write(&mut frame, &[])
        .expect("build frame");
    frame
}

fn vlan_syn(outer: Option<u16>, inner: u16) -> Vec<u8> {
    vlan_syn_over(outer, inner, |vlan| vlan.ipv4(CLIENT, VIP, 64))
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

/// A router on the way to the client.
const ROUTER: [u8; 4] = [198, 51, 100, 1];

/// What an ICMP error quotes: the IPv4 header and first 8 bytes of a segment the real server
/// sent for the connection `CLIENT:client_port` <-> `VIP:service_port`, from the VIP.
fn quote(service_port: u16, client_port: u16) -> Vec<u8> {
    quoted_segment(
        PacketBuilder::ipv4(VIP, CLIENT, 64),
        service_port,
        client_port,
        20 + 8,
    )
}

/// A segment from the VIP's `service_port` to the client's `client_port` over the IP header
/// `ip` (either family), cut after `keep` bytes: what an ICMP error quotes of it.
fn quoted_segment(
    ip: PacketBuilderStep<IpHeaders>,
    service_port: u16,
    client_port: u16,
    keep: usize,
) -> Vec<u8> {
    let mut segment = Vec::new();
    ip.tcp(service_port, client_port, 7, 64240)
        .ack(1)
        .write(&mut segment, &[0x55; 100])
        .expect("build the quoted segment");
    segment.truncate(keep);
    segment
}

/// An ICMP error from a router to the VIP, quoting `quoted`.
fn icmp_error(kind: Icmpv4Type, quoted: &[u8]) -> Vec<u8> {
    let mut frame = Vec::new();
    PacketBuilder::ethernet2(CLIENT_MAC, DIRECTOR_MAC)
        .ipv4(ROUTER, VIP, 64)
        .icmpv4(kind)
        .write(&mut frame, quoted)
        .expect("build the ICMP error");
    frame
}

fn fragmentation_needed(quoted: &[u8]) -> Vec<u8> {
    icmp_error(
        Icmpv4Type::DestinationUnreachable(DestUnreachableHeader::FragmentationNeeded {
            next_hop_mtu: 1400,
        }),
        quoted,
    )
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
            Counter::PassNotIp,
        ),
        pass(
            "an IPv4 packet under IPv6's EtherType",
            with(tcp_syn(VIP, 80), |f| {
                f[12..14].copy_from_slice(&[0x86, 0xdd])
            }),
            Counter::PassMalformed,
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
        // ICMP errors about balanced flows go to the flow's real server (the SYN fixture above
        // made the flow CLIENT:40000 -> VIP:80, on RS1); the quote is read, never trusted.
        Fixture {
            description: "fragmentation needed about a known connection goes to its real server",
            frame: fragmentation_needed(&quote(80, 40000)),
            action: XDP_TX,
            counter: Counter::TxIcmpError,
            output: Some(rewritten(&fragmentation_needed(&quote(80, 40000)), RS1_MAC)),
        },
        Fixture {
            description: "time exceeded about a known connection goes to its real server",
            frame: icmp_error(
                Icmpv4Type::TimeExceeded(TimeExceededCode::TtlExceededInTransit),
                &quote(80, 40000),
            ),
            action: XDP_TX,
            counter: Counter::TxIcmpError,
            output: Some(rewritten(
                &icmp_error(
                    Icmpv4Type::TimeExceeded(TimeExceededCode::TtlExceededInTransit),
                    &quote(80, 40000),
                ),
                RS1_MAC,
            )),
        },
        pass(
            "fragmentation needed about a connection the table does not hold",
            fragmentation_needed(&quote(80, 40999)),
            Counter::PassIcmpUnknownFlow,
        ),
        pass(
            "fragmentation needed about a port that is not a service",
            fragmentation_needed(&quote(443, 40000)),
            Counter::PassNotService,
        ),
        pass(
            "ICMP echo to the VIP stays the director's",
            {
                let mut frame = Vec::new();
                PacketBuilder::ethernet2(CLIENT_MAC, DIRECTOR_MAC)
                    .ipv4(CLIENT, VIP, 64)
                    .icmpv4_echo_request(1, 1)
                    .write(&mut frame, b"ping")
                    .unwrap();
                frame
            },
            Counter::PassNotTcpUdp,
        ),
        pass(
            "a quote cut inside its IPv4 header",
            fragmentation_needed(&quote(80, 40000)[..12]),
            Counter::PassTruncated,
        ),
        pass(
            "a quote cut inside its ports",
            fragmentation_needed(&quote(80, 40000)[..22]),
            Counter::PassTruncated,
        ),
        pass(
            "a quote that lies: IP version 6",
            fragmentation_needed(&with(quote(80, 40000), |q| q[0] = 0x65)),
            Counter::PassMalformed,
        ),
        pass(
            "a quote that lies: an IHL under 5",
            fragmentation_needed(&with(quote(80, 40000), |q| q[0] = 0x44)),
            Counter::PassMalformed,
        ),
        pass(
            "a quote that lies: an IHL past the quote",
            fragmentation_needed(&with(quote(80, 40000), |q| q[0] = 0x4f)),
            Counter::PassTruncated,
        ),
        pass(
            "a quote of a packet from another address than the VIP",
            fragmentation_needed(&with(quote(80, 40000), |q| q[15] = 7)),
            Counter::PassNotService,
        ),
        pass(
            "a quote of another VIP's packet, sent to this VIP",
            fragmentation_needed(&with(quote(80, 40000), |q| q[15] = 101)),
            Counter::PassMalformed,
        ),
        pass(
            "a quote about ICMP",
            fragmentation_needed(&with(quote(80, 40000), |q| q[9] = 1)),
            Counter::PassNotTcpUdp,
        ),
        pass(
            "an IPv4 total length that leaves the quoted ports out",
            with_ip(fragmentation_needed(&quote(80, 40000)), |f| {
                let total = u16::from_be_bytes([f[16], f[17]]) - 4;
                f[16..18].copy_from_slice(&total.to_be_bytes());
                f.truncate(f.len() - 4);
                f.extend_from_slice(&[0; 4]);
            }),
            Counter::PassMalformed,
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
    check_fixtures(&mut loaded(), fixtures());
}

/// Runs each fixture in order (a fixture may rely on the flows the ones before it made) and
/// fails with every fixture whose verdict, counter or output frame is not as expected.
fn check_fixtures(dataplane: &mut BpfDataPlane, fixtures: Vec<Fixture>) {
    let mut failures = Vec::new();
    for fixture in fixtures {
        let before = counter(dataplane, fixture.counter);
        let outcome = test_run::run(dataplane, &fixture.frame, 1).expect("test run");
        let after = counter(dataplane, fixture.counter);
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

/// A SYN from the client's `source_port` to the VIP's port 8080 (a service of two real
/// servers).
fn syn_to_8080(source_port: u16) -> Vec<u8> {
    build(
        PacketBuilder::ethernet2(CLIENT_MAC, DIRECTOR_MAC)
            .ipv4(CLIENT, VIP, 64)
            .tcp(source_port, 8080, 1, 64240)
            .syn(),
        &[],
    )
}

/// Counters are read together, in one batch over the range of ids they span, or one id at a
/// time when they are few and far apart; either way what is read is what reading each id
/// gives, in the order asked, repeats and all, and an id past the array fails.
#[test]
#[ignore = "needs root: loads BPF programs"]
fn counters_read_together_equal_counters_read_one_by_one() {
    let mut dataplane = loaded();
    for port in 40000u16..40064 {
        let frame = syn_to_8080(port);
        test_run::run(&mut dataplane, &frame, 1).expect("test run");
    }
    let ids: Vec<u32> = (0..40).chain([2, 0, 2]).collect();
    let together = dataplane
        .real_server_stats_of(&ids)
        .expect("stats together");
    let one_by_one: Vec<TrafficStats> = ids
        .iter()
        .map(|&id| dataplane.real_server_stats(id).expect("stats of one"))
        .collect();
    assert_eq!(together, one_by_one);
    assert!(
        together.iter().filter(|stats| stats.packets > 0).count() >= 2,
        "the frames reached at least two real servers: {together:?}"
    );
    let last = MAX_REAL_SERVERS - 1;
    let far_apart = dataplane
        .real_server_stats_of(&[2, last, 0])
        .expect("stats far apart");
    let last_alone = dataplane.real_server_stats(last).expect("stats of one");
    assert_eq!(far_apart, [one_by_one[2], last_alone, one_by_one[0]]);
    let past_far = [0, MAX_REAL_SERVERS];
    assert!(dataplane.real_server_stats_of(&past_far).is_err());
    let past_near: Vec<u32> = (MAX_REAL_SERVERS - 20..=MAX_REAL_SERVERS).collect();
    assert!(dataplane.real_server_stats_of(&past_near).is_err());
}

/// Frames find their services in the service table; services the table cannot place (keys
/// chosen to share one home slot, one more than the probes reach) are found in the
/// `SERVICES` hash map instead, and the table comes back once they fit again.
#[test]
#[ignore = "needs root: loads BPF programs"]
fn services_come_from_the_service_table_or_else_from_the_hash_map() {
    let mut dataplane = loaded();
    for family in Family::ALL {
        assert_eq!(
            dataplane.service_lookup(family).expect("read"),
            ServiceLookup::Table
        );
    }
    let forwarded = |dataplane: &mut BpfDataPlane, port: u16| {
        let outcome = test_run::run(dataplane, &tcp_syn(VIP, port), 1).expect("test run");
        outcome.action == XDP_TX
    };
    assert!(forwarded(&mut dataplane, 80));
    assert!(!forwarded(&mut dataplane, 81), "not a service");

    let home = |port: u16| home_slot(&VIP, port.to_be_bytes(), IPPROTO_TCP);
    let crowded: Vec<u16> = (1000..=u16::MAX)
        .filter(|&port| home(port) == home(1000))
        .take(SERVICE_TABLE_PROBES as usize + 1)
        .collect();
    let services: String = crowded
        .iter()
        .map(|port| {
            format!(
                "[[virtual_server]]\naddress = \"10.0.0.100\"\nport = {port}\n\
                 [[virtual_server.real_server]]\naddress = \"10.0.0.11\"\n"
            )
        })
        .collect();
    let mut dataplane = BpfDataPlane::load(false).expect("load");
    program_config(
        &mut dataplane,
        &format!("[director]\ninterface = \"test0\"\n{services}"),
    );
    assert_eq!(
        dataplane.service_lookup(Family::V4).expect("read"),
        ServiceLookup::HashMap,
        "{} services sharing a home slot cannot be placed",
        crowded.len()
    );
    for &port in &crowded {
        assert!(
            forwarded(&mut dataplane, port),
            "port {port} from the hash map"
        );
    }
    assert!(!forwarded(&mut dataplane, 81), "not a service");

    let removed = crowded[0];
    let key = ServiceMapKey::from(ServiceKey {
        addr: VIP,
        port: removed.to_be_bytes(),
        protocol: IPPROTO_TCP,
        _pad: 0,
    });
    dataplane.remove_service(&key).expect("remove");
    assert_eq!(
        dataplane.service_lookup(Family::V4).expect("read"),
        ServiceLookup::Table
    );
    assert!(!forwarded(&mut dataplane, removed), "a removed service");
    for &port in &crowded[1..] {
        assert!(
            forwarded(&mut dataplane, port),
            "port {port} from the table"
        );
    }
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
        let frame = syn_to_8080(port);
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

/// The deny list drops every IPv4 frame from a listed source before any other work, counts
/// it against the longest prefix that holds it, and never makes a flow; it is read only
/// while the settings say it is in use, and lifting a prefix lets its sources through again.
#[test]
#[ignore = "needs root: loads BPF programs"]
fn the_deny_list_drops_listed_sources_by_longest_prefix_before_any_other_work() {
    use lvs_userspace::logic::deny::DenyList;

    let mut dataplane = loaded();
    let mut deny = DenyList::default();
    let prefix = |text: &str| text.parse().unwrap();
    deny.set_config(&[prefix("192.0.2.0/24"), prefix("192.0.2.7/32")])
        .unwrap();
    deny.sync(&mut dataplane).unwrap();
    let from = |last: u8, port: u16| tcp_from([192, 0, 2, last], port, VIP, 80, TcpKind::Syn);

    // Written but not in use: the program does not look the list up.
    let outcome = test_run::run(&mut dataplane, &from(7, 41000), 1).unwrap();
    assert_eq!(
        outcome.action, XDP_TX,
        "the list is not read while it is off"
    );
    let flows_before = dataplane.flows().unwrap().len();

    let mut settings = default_settings();
    settings.flags |= lvs_common::flow::SETTINGS_DENY_LIST;
    dataplane.set_settings(settings).unwrap();
    let dropped_before = counter(&dataplane, Counter::DropDenied);
    let icmp_echo = build_icmp_echo([192, 0, 2, 9]);
    let fragment = with_ip(from(9, 41003), |frame| frame[20] = 0x20); // more fragments
    let frames = [
        (from(7, 41001), "a SYN from the /32"),
        (from(9, 41002), "a SYN from the /24"),
        (icmp_echo, "ICMP echo from the /24"),
        (fragment, "a fragment from the /24"),
        (
            tcp_from([192, 0, 2, 9], 41004, [10, 9, 9, 9], 22, TcpKind::Syn),
            "TCP to no service from the /24",
        ),
    ];
    for (frame, what) in &frames {
        let outcome = test_run::run(&mut dataplane, frame, 1).unwrap();
        assert_eq!(outcome.action, XDP_DROP, "{what}");
        assert_eq!(&outcome.frame, frame, "{what}: untouched");
    }
    assert_eq!(
        counter(&dataplane, Counter::DropDenied) - dropped_before,
        frames.len() as u64
    );
    assert_eq!(
        dataplane.flows().unwrap().len(),
        flows_before,
        "a denied frame makes no flow"
    );
    let listing = deny.listing(&dataplane).unwrap();
    let counts: Vec<(String, u64, u64)> = listing
        .iter()
        .map(|d| (d.prefix.to_string(), d.packets, d.bytes))
        .collect();
    let ip_bytes = |frame: &[u8]| (frame.len() - 14) as u64;
    let slash24_bytes: u64 = frames[1..].iter().map(|(f, _)| ip_bytes(f)).sum();
    assert_eq!(
        counts,
        [
            ("192.0.2.0/24".to_owned(), 4, slash24_bytes),
            ("192.0.2.7/32".to_owned(), 1, ip_bytes(&frames[0].0)),
        ]
    );

    // A source outside the list, and a frame that is not IPv4, go on as before.
    let outside = tcp_from([198, 51, 100, 1], 41005, VIP, 80, TcpKind::Syn);
    assert_eq!(
        test_run::run(&mut dataplane, &outside, 1).unwrap().action,
        XDP_TX
    );
    assert_eq!(
        test_run::run(&mut dataplane, &arp_request_for_vip(), 1)
            .unwrap()
            .action,
        XDP_PASS
    );

    // Lifting the /32 leaves its address under the /24; lifting both lets it through.
    deny.set_config(&[prefix("192.0.2.0/24")]).unwrap();
    deny.sync(&mut dataplane).unwrap();
    assert_eq!(
        test_run::run(&mut dataplane, &from(7, 41006), 1)
            .unwrap()
            .action,
        XDP_DROP
    );
    deny.set_config(&[]).unwrap();
    deny.sync(&mut dataplane).unwrap();
    assert_eq!(
        test_run::run(&mut dataplane, &from(7, 41007), 1)
            .unwrap()
            .action,
        XDP_TX
    );
}

/// An ICMP echo request from `source` to the VIP.
fn build_icmp_echo(source: [u8; 4]) -> Vec<u8> {
    let mut frame = Vec::new();
    PacketBuilder::ethernet2(CLIENT_MAC, DIRECTOR_MAC)
        .ipv4(source, VIP, 64)
        .icmpv4_echo_request(1, 1)
        .write(&mut frame, b"ping")
        .unwrap();
    frame
}
