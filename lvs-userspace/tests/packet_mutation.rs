//! Packet mutation: valid frames for the director's services, mutated (bit flips, truncation at
//! any offset, length fields, IHL and data offsets, VLAN stacks, IP options, flags, martian
//! sources, padding, destination MACs), run through the real XDP object with BPF_PROG_TEST_RUN. Each one is
//! judged by a validator written here from the kernel's rules, independently of the program's
//! code, and the program must agree:
//!
//! - no frame ever gets XDP_ABORTED;
//! - no frame the validator calls invalid is forwarded;
//! - every frame it calls valid, for a service with a resolved real server, is forwarded (so
//!   the rule rejects nothing the kernel would take); a well-formed ICMP error about a
//!   service's connection is forwarded or passed, as the flow table says;
//! - invalid frames go to a data plane of their own, where the unmutated seeds established
//!   their connections first; at the end its flow table and persistence templates must hold
//!   exactly those entries, unchanged, and nothing else.
//!
//! `LVS_PACKET_MUTATIONS` sets how many frames (10,000,000 by default, what CI runs);
//! `cargo xtask fuzz packets --count N` runs more in a release build. `LVS_PACKET_SECONDS` bounds
//! the time (600 s by default). Needs root; ignored by a plain `cargo test`.

use std::time::{Duration, Instant};

use etherparse::{Icmpv4Type, PacketBuilder, VlanId, icmpv4::DestUnreachableHeader};
use lvs_common::Counter;
use lvs_test_support::fixture::{
    CLIENT, CLIENT_MAC, DIRECTOR_MAC, VIP, XDP_DROP, XDP_PASS, XDP_TX, program_config,
};
use lvs_userspace::{
    io::bpf::{BpfDataPlane, test_run},
    logic::dataplane::DataPlane,
};

/// The fixture's services, with persistence on port 80 so that a template could be made.
const CONFIG: &str = r#"
[director]
interface = "test0"

[[virtual_server]]
address = "10.0.0.100"
port = 80
persistence_timeout = 300
[[virtual_server.real_server]]
address = "10.0.0.11"
[[virtual_server.real_server]]
address = "10.0.0.12"

[[virtual_server]]
address = "10.0.0.100"
port = 53
protocol = "UDP"
[[virtual_server.real_server]]
address = "10.0.0.11"

[[virtual_server]]
address = "10.0.0.100"
port = 8080
lb_algo = "mh"
[[virtual_server.real_server]]
address = "10.0.0.11"
[[virtual_server.real_server]]
address = "10.0.0.12"

[[virtual_server]]
address = "10.0.0.101"
port = 80
[[virtual_server.real_server]]
address = "10.0.0.13"
"#;

const TCP: u8 = 6;
const UDP: u8 = 17;
const ICMP: u8 = 1;

/// What the kernel's rules make of a frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Judgement {
    /// Not TCP or UDP over IPv4, or a fragment: the kernel's business, never forwarded.
    NotForwardable,
    /// TCP or UDP over IPv4 that a stack would reject, or an ICMP error whose quote lies.
    Invalid,
    /// A well-formed ICMP error quoting a packet from the VIP it is sent to: forwarded if the
    /// flow table knows the connection (which the validator cannot see), passed if not.
    ValidIcmpError,
    /// A frame a stack would take, for this destination.
    Valid {
        dst: [u8; 4],
        port: u16,
        protocol: u8,
        /// Sent to the director's MAC address (a host drops frames for other MACs).
        for_director: bool,
    },
}

/// The validator, from the kernel's checks (`ip_rcv_core`, the martian source checks of
/// `ip_route_input`, `tcp_v4_rcv`, `__udp4_lib_rcv`, and TCP's LISTEN state for SYN with FIN
/// or RST), written without looking at the program.
fn judge(frame: &[u8]) -> Judgement {
    use Judgement::*;
    if frame.len() < 14 {
        return NotForwardable;
    }
    let mut offset = 12;
    let mut tags = 0;
    let ether_type = loop {
        if frame.len() < offset + 2 {
            return Invalid;
        }
        let ether_type = u16::from_be_bytes([frame[offset], frame[offset + 1]]);
        if ether_type == 0x8100 || ether_type == 0x88a8 {
            tags += 1;
            if tags > 2 {
                return Invalid;
            }
            offset += 4;
        } else {
            break ether_type;
        }
    };
    if ether_type != 0x0800 {
        return NotForwardable;
    }
    let ip = offset + 2;
    if frame.len() < ip + 20 {
        return Invalid;
    }
    let version = frame[ip] >> 4;
    let header_len = usize::from(frame[ip] & 0x0f) * 4;
    if version != 4 || header_len < 20 {
        return Invalid;
    }
    let protocol = frame[ip + 9];
    if protocol != TCP && protocol != UDP && protocol != ICMP {
        return NotForwardable;
    }
    if u16::from_be_bytes([frame[ip + 6], frame[ip + 7]]) & 0x3fff != 0 {
        return NotForwardable;
    }
    if frame[6] & 1 != 0 {
        return Invalid;
    }
    let total = usize::from(u16::from_be_bytes([frame[ip + 2], frame[ip + 3]]));
    if total < header_len || ip + total > frame.len() {
        return Invalid;
    }
    if ones_complement_sum(&frame[ip..ip + header_len]) != 0xffff {
        return Invalid;
    }
    let source: [u8; 4] = frame[ip + 12..ip + 16].try_into().unwrap();
    let dst: [u8; 4] = frame[ip + 16..ip + 20].try_into().unwrap();
    let martian = source[0] == 0
        || source[0] == 127
        || (224..240).contains(&source[0])
        || source == [255; 4]
        || source == dst;
    if martian {
        return Invalid;
    }
    let l4 = ip + header_len;
    let l4_len = total - header_len;
    if protocol == ICMP {
        return judge_icmp(frame, l4, ip + total, dst);
    }
    if protocol == TCP {
        if l4_len < 20 {
            return Invalid;
        }
        let data_offset = usize::from(frame[l4 + 12] >> 4) * 4;
        if data_offset < 20 || data_offset > l4_len {
            return Invalid;
        }
        let flags = frame[l4 + 13];
        if flags & 0x02 != 0 && flags & 0x05 != 0 {
            return Invalid;
        }
    } else {
        if l4_len < 8 {
            return Invalid;
        }
        let length = usize::from(u16::from_be_bytes([frame[l4 + 4], frame[l4 + 5]]));
        if !(8..=l4_len).contains(&length) {
            return Invalid;
        }
    }
    Valid {
        dst,
        port: u16::from_be_bytes([frame[l4 + 2], frame[l4 + 3]]),
        protocol,
        for_director: frame[..6] == DIRECTOR_MAC,
    }
}

/// An ICMP message at `icmp` in an IPv4 packet ending at `end`, sent to `dst`: only
/// destination unreachable and time exceeded are errors the director relays, and only when
/// they quote a whole IPv4 header and 8 bytes of TCP or UDP from `dst`.
fn judge_icmp(frame: &[u8], icmp: usize, end: usize, dst: [u8; 4]) -> Judgement {
    use Judgement::*;
    if frame.len() < icmp + 8 || !matches!(frame[icmp], 3 | 11) {
        return NotForwardable;
    }
    let quoted = icmp + 8;
    if frame.len() < quoted + 20 {
        return Invalid;
    }
    let header_len = usize::from(frame[quoted] & 0x0f) * 4;
    if frame[quoted] >> 4 != 4 || header_len < 20 {
        return Invalid;
    }
    if !matches!(frame[quoted + 9], TCP | UDP)
        || u16::from_be_bytes([frame[quoted + 6], frame[quoted + 7]]) & 0x1fff != 0
    {
        return NotForwardable;
    }
    let quote_end = quoted + header_len + 8;
    if quote_end > end || frame[quoted + 12..quoted + 16] != dst {
        return Invalid;
    }
    ValidIcmpError
}

/// The verdict the program must give a valid frame for this destination, from `CONFIG`.
fn verdict_for(dst: [u8; 4], port: u16, protocol: u8, for_director: bool) -> u32 {
    if !for_director {
        return XDP_PASS;
    }
    match (dst, port, protocol) {
        (VIP, 80 | 8080, TCP) | (VIP, 53, UDP) => XDP_TX,
        ([10, 0, 0, 101], 80, TCP) => XDP_DROP,
        _ => XDP_PASS,
    }
}

/// xorshift64*: a seeded generator, so that a failure names a seed that reproduces it.
struct Random(u64);

impl Random {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, bound: usize) -> usize {
        (self.next() % bound as u64) as usize
    }

    fn byte(&mut self) -> u8 {
        self.next() as u8
    }
}

fn tcp(dst: [u8; 4], port: u16, syn: bool, payload: &[u8]) -> Vec<u8> {
    let mut frame = Vec::new();
    let builder = PacketBuilder::ethernet2(CLIENT_MAC, DIRECTOR_MAC)
        .ipv4(CLIENT, dst, 64)
        .tcp(40000, port, 1, 64240);
    let builder = if syn { builder.syn() } else { builder.ack(1) };
    builder.write(&mut frame, payload).unwrap();
    frame
}

fn seeds() -> Vec<Vec<u8>> {
    let mut udp = Vec::new();
    PacketBuilder::ethernet2(CLIENT_MAC, DIRECTOR_MAC)
        .ipv4(CLIENT, VIP, 64)
        .udp(5353, 53)
        .write(&mut udp, b"a query")
        .unwrap();
    let mut tagged = Vec::new();
    PacketBuilder::ethernet2(CLIENT_MAC, DIRECTOR_MAC)
        .double_vlan(VlanId::try_new(100).unwrap(), VlanId::try_new(42).unwrap())
        .ipv4(CLIENT, VIP, 64)
        .tcp(40001, 80, 1, 64240)
        .syn()
        .write(&mut tagged, &[])
        .unwrap();
    let mut with_options = tcp(VIP, 8080, true, &[]);
    add_ip_options(&mut with_options, 14, 3);
    fix_checksum(&mut with_options, 14);
    // Fragmentation needed from a router, about the first seed's connection.
    let mut quoted = Vec::new();
    PacketBuilder::ipv4(VIP, CLIENT, 64)
        .tcp(80, 40000, 7, 64240)
        .ack(1)
        .write(&mut quoted, &[0; 64])
        .unwrap();
    quoted.truncate(28);
    let mut icmp_error = Vec::new();
    PacketBuilder::ethernet2(CLIENT_MAC, DIRECTOR_MAC)
        .ipv4([198, 51, 100, 1], VIP, 64)
        .icmpv4(Icmpv4Type::DestinationUnreachable(
            DestUnreachableHeader::FragmentationNeeded { next_hop_mtu: 1400 },
        ))
        .write(&mut icmp_error, &quoted)
        .unwrap();
    vec![
        icmp_error,
        tcp(VIP, 80, true, &[]),
        tcp(VIP, 80, false, b"GET / HTTP/1.1\r\n\r\n"),
        tcp(VIP, 8080, false, b"ping\n"),
        tcp([10, 0, 0, 101], 80, true, &[]),
        udp,
        tagged,
        with_options,
    ]
}

/// Where the IPv4 header starts, after up to three VLAN tags, if the frame is long enough to say.
fn ip_offset(frame: &[u8]) -> Option<usize> {
    let mut offset = 12;
    for _ in 0..3 {
        let ether_type = u16::from_be_bytes([*frame.get(offset)?, *frame.get(offset + 1)?]);
        if ether_type == 0x8100 || ether_type == 0x88a8 {
            offset += 4;
        } else {
            return Some(offset + 2);
        }
    }
    None
}

fn add_ip_options(frame: &mut Vec<u8>, ip: usize, words: usize) {
    let header_len = usize::from(frame[ip] & 0x0f) * 4;
    if header_len + words * 4 > 60 || frame.len() < ip + header_len {
        return;
    }
    frame.splice(ip + header_len..ip + header_len, vec![1u8; words * 4]);
    frame[ip] = 0x40 | ((header_len + words * 4) / 4) as u8;
    let total = u16::from_be_bytes([frame[ip + 2], frame[ip + 3]]);
    let total = total.wrapping_add((words * 4) as u16);
    frame[ip + 2..ip + 4].copy_from_slice(&total.to_be_bytes());
}

fn fix_checksum(frame: &mut [u8], ip: usize) {
    let Some(&first) = frame.get(ip) else { return };
    let header_len = usize::from(first & 0x0f) * 4;
    if header_len < 20 || frame.len() < ip + header_len {
        return;
    }
    frame[ip + 10..ip + 12].copy_from_slice(&[0, 0]);
    let sum = ones_complement_sum(&frame[ip..ip + header_len]);
    frame[ip + 10..ip + 12].copy_from_slice(&(!sum).to_be_bytes());
}

/// The RFC 1071 sum of `bytes` (an even count) as 16-bit words: 0xffff over a whole IPv4
/// header whose checksum is right.
fn ones_complement_sum(bytes: &[u8]) -> u16 {
    let mut sum: u32 = bytes
        .chunks(2)
        .map(|pair| u32::from(u16::from_be_bytes([pair[0], pair[1]])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum as u16
}

/// One to three mutations, then, half of the time, a right IPv4 checksum, so that the checks
/// behind the checksum are reached as often as the checksum itself.
fn mutate(random: &mut Random, frame: &mut Vec<u8>) {
    for _ in 0..1 + random.below(3) {
        let ip = ip_offset(frame);
        let l4 = ip.and_then(|ip| {
            frame
                .get(ip)
                .map(|&first| ip + usize::from(first & 0x0f) * 4)
        });
        match random.below(11) {
            0 => {
                for _ in 0..1 + random.below(4) {
                    let at = random.below(frame.len());
                    frame[at] ^= 1 << random.below(8);
                }
            }
            1 => {
                let keep = 14 + random.below(frame.len() - 13);
                frame.truncate(keep);
            }
            2 => {
                if let Some(ip) = ip.filter(|ip| frame.len() >= ip + 4) {
                    let actual = frame.len() - ip;
                    let total = [0, 19, 20, 39, 40, actual - 1, actual, actual + 1, 0xffff]
                        [random.below(9)] as u16;
                    frame[ip + 2..ip + 4].copy_from_slice(&total.to_be_bytes());
                }
            }
            3 => {
                if let Some(ip) = ip.filter(|&ip| ip < frame.len()) {
                    frame[ip] = 0x40 | random.below(16) as u8;
                }
            }
            4 => {
                if let Some(l4) = l4.filter(|l4| frame.len() >= l4 + 14) {
                    if random.below(2) == 0 {
                        frame[l4 + 12] = (random.below(16) as u8) << 4;
                    } else {
                        let length = [0u16, 7, 8, 9, 13, 15, 0xffff][random.below(7)];
                        frame[l4 + 4..l4 + 6].copy_from_slice(&length.to_be_bytes());
                    }
                }
            }
            5 => {
                let tag: [u8; 4] = if random.below(2) == 0 {
                    [0x81, 0x00, 0x00, random.byte()]
                } else {
                    [0x88, 0xa8, 0x00, random.byte()]
                };
                frame.splice(12..12, tag);
            }
            6 => {
                if let Some(ip) = ip.filter(|&ip| ip < frame.len()) {
                    add_ip_options(frame, ip, 1 + random.below(10));
                }
            }
            7 => {
                let at = random.below(frame.len().min(80));
                frame[at] = random.byte();
            }
            8 => {
                if let Some(l4) = l4.filter(|l4| frame.len() > l4 + 13) {
                    frame[l4 + 13] = random.byte();
                }
            }
            9 => {
                if let Some(ip) = ip.filter(|ip| frame.len() >= ip + 16) {
                    let sources: [[u8; 4]; 6] = [
                        [0, 1, 2, 3],
                        [127, 0, 0, 1],
                        [224, 0, 0, 5],
                        [255; 4],
                        VIP,
                        [198, 51, 100, 9],
                    ];
                    frame[ip + 12..ip + 16].copy_from_slice(&sources[random.below(6)]);
                }
            }
            _ => {
                let padding = random.below(64);
                frame.extend((0..padding).map(|_| random.byte()));
            }
        }
    }
    if random.below(2) == 0 {
        if let Some(ip) = ip_offset(frame) {
            fix_checksum(frame, ip);
        }
    }
}

fn setting(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .map(|value| {
            value
                .parse()
                .unwrap_or_else(|_| panic!("{name}: not a number"))
        })
        .unwrap_or(default)
}

fn loaded() -> BpfDataPlane {
    let mut dataplane = BpfDataPlane::load(false).expect("load the XDP object (are you root?)");
    program_config(&mut dataplane, CONFIG);
    dataplane
}

fn counter(dataplane: &BpfDataPlane, which: Counter) -> u64 {
    dataplane
        .counters()
        .unwrap()
        .into_iter()
        .find(|(counter, _)| *counter == which)
        .map_or(0, |(_, count)| count)
}

#[test]
#[ignore = "needs root: loads BPF programs"]
fn mutated_frames_are_never_forwarded_when_invalid_nor_refused_when_valid() {
    let count = setting("LVS_PACKET_MUTATIONS", 10_000_000);
    let limit = Duration::from_secs(setting("LVS_PACKET_SECONDS", 600));
    let seed = setting("LVS_PACKET_SEED", 0x5eed_1e55_c0ff_ee00);
    let mut random = Random(seed | 1);
    let seeds = seeds();
    for frame in &seeds {
        assert!(
            matches!(
                judge(frame),
                Judgement::Valid { .. } | Judgement::ValidIcmpError
            ),
            "the validator calls a seed invalid: {frame:02x?}"
        );
    }
    let mut for_valid = loaded();
    let mut for_invalid = loaded();
    // The seeds' connections (and the persistent service's template) are established on the
    // invalid frames' data plane first, so that a mutated frame of a known connection meets
    // its flow there: it must not be forwarded, nor touch the table, through the flow either.
    for frame in &seeds {
        test_run::run(&mut for_invalid, frame, 1).expect("BPF_PROG_TEST_RUN");
    }
    let established = for_invalid.flows().unwrap();
    let templates_before = for_invalid.templates().unwrap();
    let forwarded_before = counter(&for_invalid, Counter::TxForwarded);
    assert!(
        !established.is_empty() && !templates_before.is_empty(),
        "the seeds establish flows and a template"
    );

    let started = Instant::now();
    let (mut run, mut invalid, mut not_forwardable, mut valid) = (0u64, 0u64, 0u64, 0u64);
    let mut icmp_errors = 0u64;
    let mut verdicts = [0u64; 5];
    let mut failures = Vec::new();
    while run < count && started.elapsed() < limit {
        let mut frame = seeds[random.below(seeds.len())].clone();
        mutate(&mut random, &mut frame);
        run += 1;
        let judgement = judge(&frame);
        let dataplane = match judgement {
            Judgement::Valid { .. } | Judgement::ValidIcmpError => &mut for_valid,
            _ => &mut for_invalid,
        };
        let action = test_run::run(dataplane, &frame, 1)
            .expect("BPF_PROG_TEST_RUN")
            .action;
        verdicts[(action as usize).min(4)] += 1;
        let wrong = match judgement {
            Judgement::Invalid => {
                invalid += 1;
                action == XDP_TX || action == 0
            }
            Judgement::NotForwardable => {
                not_forwardable += 1;
                action == XDP_TX || action == 0
            }
            Judgement::ValidIcmpError => {
                icmp_errors += 1;
                action != XDP_TX && action != XDP_PASS
            }
            Judgement::Valid {
                dst,
                port,
                protocol,
                for_director,
            } => {
                valid += 1;
                action != verdict_for(dst, port, protocol, for_director)
            }
        };
        if wrong && failures.len() < 20 {
            failures.push(format!("{judgement:?} got action {action}: {frame:02x?}"));
        }
    }
    // Entries in the table after the run that were not there before: flows made, or changed
    // (a state or a last-seen stamp moved), by invalid frames.
    let flows = for_invalid
        .flows()
        .unwrap()
        .into_iter()
        .filter(|entry| !established.contains(entry))
        .count();
    let templates = for_invalid
        .templates()
        .unwrap()
        .into_iter()
        .filter(|entry| !templates_before.contains(entry))
        .count();
    let forwarded_invalid = counter(&for_invalid, Counter::TxForwarded) - forwarded_before
        + counter(&for_invalid, Counter::TxIcmpError);
    let relayed = counter(&for_valid, Counter::TxIcmpError);
    let aborted = counter(&for_valid, Counter::Aborted) + counter(&for_invalid, Counter::Aborted);
    eprintln!(
        "packet mutation (seed {seed:#x}): {run} frames in {:.1} s; {invalid} invalid, \
         {not_forwardable} not TCP/UDP over IPv4 or fragments, {valid} valid, {icmp_errors} ICMP \
         errors to relay ({relayed} relayed); verdicts: \
         aborted {}, drop {}, pass {}, tx {}; forwarded invalid {forwarded_invalid}, \
         flow entries made or changed by invalid frames {flows}, templates {templates} (of {} \
         flows and {} templates established), aborts counted {aborted}",
        started.elapsed().as_secs_f64(),
        verdicts[0],
        verdicts[1],
        verdicts[2],
        verdicts[3],
        established.len(),
        templates_before.len(),
    );
    assert!(
        failures.is_empty(),
        "the program and the validator disagree:\n{}",
        failures.join("\n")
    );
    assert_eq!(verdicts[0], 0, "frames aborted");
    assert_eq!(aborted, 0, "aborts counted");
    assert_eq!(forwarded_invalid, 0, "invalid frames forwarded");
    assert_eq!(
        (flows, templates),
        (0, 0),
        "invalid frames made flow entries"
    );
    assert!(
        relayed > 0,
        "no ICMP error was relayed: the path went untested"
    );
    assert!(
        invalid > run / 10 && valid > run / 10,
        "the mutations must make both kinds in numbers: {invalid} invalid, {valid} valid"
    );
}
