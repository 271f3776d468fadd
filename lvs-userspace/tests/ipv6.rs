//! IPv6 end to end in network namespaces: the demo lab with `--ipv6`, the director balancing
//! TCP and UDP on `[fd77::100]:80` over the real servers' IPv6 addresses, with direct return;
//! a real server's MAC change followed over NDP; and an ICMPv6 "packet too big" about a
//! balanced connection relayed to that connection's real server, whose stack lowers its path
//! MTU to the client.
//!
//! Needs root (namespaces, XDP); ignored by a plain `cargo test`, run by `cargo xtask test`.

use std::{
    path::Path,
    process::{Command, Stdio},
    thread::sleep,
    time::{Duration, Instant},
};

use lvs_test_support::lab::{CLIENT6, Lab, Shape, VIP6, counter, real_server_of};

const REQUESTS: usize = 40;

fn repo() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

fn lvs() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_lvs"))
}

/// Runs a command that must succeed, and returns its standard output.
fn must(command: &mut Command) -> String {
    let output = command.output().expect("the command runs");
    assert!(
        output.status.success(),
        "{command:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Opens a TCP connection from the client to `[VIP6]:80` and keeps it open without sending,
/// while it reads the server's SYN-ACK from the client's own interface: the client's port and
/// the real server's next sequence number, which a "packet too big" must quote for the real
/// server's TCP to believe it. Prints `PORT SEQ`, then holds the connection until stdin
/// closes.
const HOLD_AND_LEARN: &str = r#"
import socket, struct, sys
raw = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x86dd))
raw.bind(("eth0", 0))
raw.settimeout(3)
tcp = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
tcp.settimeout(3)
tcp.connect((sys.argv[1], 80))
port = tcp.getsockname()[1]
vip = socket.inet_pton(socket.AF_INET6, sys.argv[1])
while True:
    frame = raw.recv(2048)
    ip = frame[14:]
    if len(ip) < 60 or ip[6] != 6 or ip[8:24] != vip:
        continue
    src_port, dst_port, seq = struct.unpack("!HHI", ip[40:48])
    flags = ip[53]
    if src_port == 80 and dst_port == port and flags & 0x12 == 0x12:
        print(port, (seq + 1) % 2**32, flush=True)
        break
sys.stdin.read()
tcp.close()
"#;

/// Sends the VIP an ICMPv6 "packet too big" (MTU 1280) quoting the packet the real server
/// sent the client: IPv6 from the VIP to the client, TCP from port 80 to the client's port,
/// with the real server's next sequence number. The kernel fills the ICMPv6 checksum.
const PACKET_TOO_BIG: &str = r#"
import socket, struct, sys
vip, client, port, seq = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
tcp = struct.pack("!HHIIBBHHH", 80, port, seq, 0, 5 << 4, 0x10, 65535, 0, 0)
quoted = struct.pack("!IHBB", 6 << 28, len(tcp), 6, 64)
quoted += socket.inet_pton(socket.AF_INET6, vip) + socket.inet_pton(socket.AF_INET6, client)
message = struct.pack("!BBHI", 2, 0, 0, 1280) + quoted + tcp
s = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)
s.sendto(message, (vip, 0))
"#;

#[test]
#[ignore = "needs root: network namespaces and XDP"]
fn ipv6_tcp_and_udp_are_balanced_with_direct_return_follow_a_mac_change_and_relay_packet_too_big() {
    let mut lab = Lab::up_with(
        repo(),
        "lvsv6",
        Shape {
            real_servers: 2,
            ipv6: true,
            ..Shape::default()
        },
    )
    .unwrap_or_else(|e| panic!("{e}"));
    lab.start_director(lvs()).unwrap_or_else(|e| panic!("{e}"));
    // Two real servers in each of three services: IPv4 TCP, IPv6 TCP and IPv6 UDP.
    let before = lab
        .wait_until_forwarding(lvs(), 6, Duration::from_secs(20))
        .unwrap_or_else(|e| panic!("{e}"));
    let kernel_segments_before = lab.director_tcp_in_segments().unwrap();

    // TCP and UDP over IPv6, each spread over both real servers.
    let seen = lab.requests_to(VIP6, REQUESTS);
    assert!(
        seen.failures.is_empty(),
        "failed IPv6 requests: {:?}\n{}",
        seen.failures,
        lab.log()
    );
    assert_eq!(
        seen.answers.keys().collect::<Vec<_>>(),
        ["rs1", "rs2"],
        "{:?}",
        seen.answers
    );
    let datagrams = lab.udp_requests_to(VIP6, REQUESTS);
    assert!(
        datagrams.failures.is_empty(),
        "unanswered IPv6 datagrams: {:?}\n{}",
        datagrams.failures,
        lab.log()
    );
    assert_eq!(
        datagrams.answers.keys().collect::<Vec<_>>(),
        ["rs1", "rs2"],
        "{:?}",
        datagrams.answers
    );
    // IPv4 goes on beside it.
    let seen4 = lab.requests(10);
    assert!(seen4.failures.is_empty(), "{:?}", seen4.failures);

    // Direct return: the director forwarded every client packet with XDP_TX, and its own TCP
    // stack (whose counters IPv4 and IPv6 share) received none of them.
    let after = lab.status(lvs()).unwrap_or_else(|e| panic!("{e}"));
    let forwarded = counter(&after, "tx_forwarded") - counter(&before, "tx_forwarded");
    assert!(
        forwarded >= 3 * REQUESTS as u64 + REQUESTS as u64,
        "only {forwarded} frames forwarded"
    );
    assert_eq!(
        lab.director_tcp_in_segments().unwrap(),
        kernel_segments_before,
        "the director's kernel received TCP segments: traffic did not bypass it"
    );
    let v6_packets: u64 = after["services"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["address"] == VIP6)
        .map(|s| s["packets"].as_u64().unwrap())
        .sum();
    assert!(v6_packets >= 4 * REQUESTS as u64, "{v6_packets}");
    let listing = lab.lvsadm_ok(Path::new(env!("CARGO_BIN_EXE_lvsadm")), &["-Ln"]);
    assert!(
        listing.contains("TCP  [fd77::100]:80 wlc")
            && listing.contains("UDP  [fd77::100]:80 wlc")
            && listing.contains("  -> [fd77::11]:80"),
        "{listing}"
    );

    // A real server's new MAC is followed over NDP: its unsolicited neighbour advertisement
    // (ndisc_notify, which the real-server provisioning sets) updates the director's
    // neighbour table, and lvs follows the table.
    const NEW_MAC: &str = "02:00:00:66:00:11";
    must(Command::new("ip").args([
        "-n",
        &lab.namespace("rs1"),
        "link",
        "set",
        "eth0",
        "address",
        NEW_MAC,
    ]));
    let (_, followed) = lab
        .wait_for_status(lvs(), Duration::from_secs(5), "rs1's new MAC", |status| {
            real_server_of(status, "TCP", "fd77::11")["mac"] == NEW_MAC
        })
        .unwrap_or_else(|e| panic!("{e}"));
    eprintln!("the director followed rs1's IPv6 MAC change after {followed:?}");
    let after_change = lab.requests_to(VIP6, REQUESTS);
    assert!(
        after_change.failures.is_empty() && after_change.answers.contains_key("rs1"),
        "after the MAC change: {:?}",
        after_change
    );

    // Packet too big: a held connection, its real server found from the director's
    // connection list, and the error about it sent to the VIP.
    let mut holder = Command::new("ip")
        .args(["netns", "exec", &lab.namespace("client")])
        .args(["python3", "-c", HOLD_AND_LEARN, VIP6])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(holder.stdout.as_mut().unwrap()),
        &mut line,
    )
    .unwrap();
    let mut fields = line.split_whitespace();
    let (port, seq) = (
        fields.next().expect("the client's port").to_owned(),
        fields.next().expect("the server's sequence").to_owned(),
    );
    let connections = lab.lvsadm_ok(Path::new(env!("CARGO_BIN_EXE_lvsadm")), &["-Lnc"]);
    let flow = connections
        .lines()
        .find(|l| l.contains(&format!("[{CLIENT6}]:{port}")))
        .unwrap_or_else(|| panic!("the held connection is not listed:\n{connections}"));
    let destination = flow.split_whitespace().last().unwrap().to_owned();
    let (holder_rs, other_rs) = if destination.starts_with("[fd77::11]") {
        ("rs1", "rs2")
    } else {
        ("rs2", "rs1")
    };
    let route_mtu = |server: &str| {
        must(Command::new("ip").args([
            "-n",
            &lab.namespace(server),
            "-6",
            "route",
            "get",
            CLIENT6,
            "from",
            VIP6,
        ]))
    };
    assert!(!route_mtu(holder_rs).contains("mtu 1280"));
    let relayed_before = counter(&lab.status(lvs()).unwrap(), "tx_icmp_error");
    must(
        Command::new("ip")
            .args(["netns", "exec", &lab.namespace("client")])
            .args(["python3", "-c", PACKET_TOO_BIG, VIP6, CLIENT6, &port, &seq]),
    );
    let sent = Instant::now();
    let mut lowered = false;
    while sent.elapsed() < Duration::from_secs(3) {
        if route_mtu(holder_rs).contains("mtu 1280") {
            lowered = true;
            break;
        }
        sleep(Duration::from_millis(20));
    }
    let relayed = counter(&lab.status(lvs()).unwrap(), "tx_icmp_error") - relayed_before;
    drop(holder.stdin.take());
    let _ = holder.wait();
    assert_eq!(relayed, 1, "the director relayed the error once");
    assert!(
        lowered,
        "{holder_rs}, which holds the connection, did not lower its path MTU to the client: {}",
        route_mtu(holder_rs)
    );
    assert!(
        !route_mtu(other_rs).contains("mtu 1280"),
        "{other_rs} got the error too"
    );

    lab.stop_director().unwrap_or_else(|e| panic!("{e}"));
    let addresses = must(Command::new("ip").args([
        "-n",
        &lab.namespace("dir"),
        "-6",
        "addr",
        "show",
        "dev",
        "eth0",
    ]));
    assert!(
        !addresses.contains(VIP6),
        "the IPv6 VIP was left on the director:\n{addresses}"
    );
}
