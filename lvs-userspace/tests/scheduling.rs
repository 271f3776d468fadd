//! Data-plane tests of scheduling and connection tracking: the real XDP object, programmed by
//! the real director model, and frames run through BPF_PROG_TEST_RUN.
//!
//! BPF_PROG_TEST_RUN runs the program on the calling CPU, and each CPU walks a ring schedule
//! from its own starting point, so every test pins itself to CPU 0 first: the sequences are
//! then exactly the rings userspace built.
//!
//! They need root, so they are ignored by a plain `cargo test`; `cargo xtask test` runs them.

use lvs_test_support::fixture;

use std::{collections::HashMap, net::Ipv4Addr};

use fixture::*;
use lvs_common::{
    Counter,
    flow::{FLOW_SEEN_MAX, FLOW_SEEN_SHIFT, FlowEntry, FlowKey, FlowState, Settings, packets_seen},
    flow_table::{FLOW_BUCKET_WAYS, bucket_count},
    keys::FlowMapKey,
};
use lvs_userspace::{
    io::bpf::{BpfDataPlane, LoadOptions, test_run},
    logic::{
        config,
        conntrack::{self, monotonic_ns},
        dataplane::DataPlane,
        model::{ConnectionCounts, Model},
    },
};

const CONFIG: &str = r#"
[director]
interface = "test0"

[[virtual_server]]
address = "10.0.0.100"
port = 1
lb_algo = "rr"
[[virtual_server.real_server]]
address = "10.0.0.11"
[[virtual_server.real_server]]
address = "10.0.0.12"

[[virtual_server]]
address = "10.0.0.100"
port = 2
lb_algo = "wrr"
[[virtual_server.real_server]]
address = "10.0.0.11"
weight = 3
[[virtual_server.real_server]]
address = "10.0.0.12"
weight = 1

[[virtual_server]]
address = "10.0.0.100"
port = 3
lb_algo = "wlc"
[[virtual_server.real_server]]
address = "10.0.0.11"
[[virtual_server.real_server]]
address = "10.0.0.12"

[[virtual_server]]
address = "10.0.0.100"
port = 4
lb_algo = "sh"
[[virtual_server.real_server]]
address = "10.0.0.11"
[[virtual_server.real_server]]
address = "10.0.0.12"

[[virtual_server]]
address = "10.0.0.100"
port = 5
lb_algo = "dh"
[[virtual_server.real_server]]
address = "10.0.0.11"
[[virtual_server.real_server]]
address = "10.0.0.12"

[[virtual_server]]
address = "10.0.0.100"
port = 6
lb_algo = "mh"
[[virtual_server.real_server]]
address = "10.0.0.11"
[[virtual_server.real_server]]
address = "10.0.0.12"

[[virtual_server]]
address = "10.0.0.100"
port = 7
lb_algo = "rr"
persistence_timeout = 300
persistence_granularity = "255.255.255.0"
[[virtual_server.real_server]]
address = "10.0.0.11"
[[virtual_server.real_server]]
address = "10.0.0.12"

[[virtual_server]]
address = "10.0.0.100"
port = 8
lb_algo = "lc"
[[virtual_server.real_server]]
address = "10.0.0.11"
[[virtual_server.real_server]]
address = "10.0.0.12"

[[virtual_server]]
address = "10.0.0.100"
port = 9
lb_algo = "sed"
[[virtual_server.real_server]]
address = "10.0.0.11"
weight = 10
[[virtual_server.real_server]]
address = "10.0.0.12"

[[virtual_server]]
address = "10.0.0.100"
port = 10
lb_algo = "nq"
[[virtual_server.real_server]]
address = "10.0.0.11"
weight = 10
[[virtual_server.real_server]]
address = "10.0.0.12"
"#;

/// The last byte of each real server's MAC, which names it in assertions.
const RS1: u8 = 0x11;
const RS2: u8 = 0x12;
const RS4: u8 = 0x14;

fn pin_to_cpu_zero() {
    // SAFETY: a zeroed cpu_set_t is valid, and the calls only read and write it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(0, &mut set);
        assert_eq!(
            libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &set),
            0,
            "pinning the test thread to CPU 0"
        );
    }
}

struct Bench {
    dataplane: BpfDataPlane,
    model: Model,
}

impl Bench {
    fn new() -> Self {
        Self::with_table(lvs_common::DEFAULT_FLOW_TABLE_SIZE)
    }

    fn with_table(flow_table_size: u32) -> Self {
        pin_to_cpu_zero();
        let mut dataplane = BpfDataPlane::load_with(LoadOptions {
            trace_packets: false,
            flow_table_size,
            pin_dir: None,
        })
        .expect("load the XDP object (are you root?)");
        let model = program_config(&mut dataplane, CONFIG);
        Self { dataplane, model }
    }

    /// Sends a segment and returns the XDP action and the real server it went to (0 if none).
    fn send_raw(
        &mut self,
        client: [u8; 4],
        client_port: u16,
        port: u16,
        kind: TcpKind,
    ) -> (u32, u8) {
        let frame = tcp_from(client, client_port, VIP, port, kind);
        let outcome = test_run::run(&mut self.dataplane, &frame, 1).expect("test run");
        let server = if outcome.action == XDP_TX {
            outcome.frame[5]
        } else {
            0
        };
        (outcome.action, server)
    }

    /// Sends a segment that must be forwarded; returns the real server.
    fn send(&mut self, client_port: u16, port: u16, kind: TcpKind) -> u8 {
        self.send_from(CLIENT, client_port, port, kind)
    }

    fn send_from(&mut self, client: [u8; 4], client_port: u16, port: u16, kind: TcpKind) -> u8 {
        let (action, server) = self.send_raw(client, client_port, port, kind);
        assert_eq!(
            action, XDP_TX,
            "{kind:?} from port {client_port} to :{port}"
        );
        server
    }

    /// New connections from successive client ports to a service.
    fn new_connections(&mut self, port: u16, first_client_port: u16, count: u16) -> Vec<u8> {
        (first_client_port..first_client_port + count)
            .map(|p| self.send(p, port, TcpKind::Syn))
            .collect()
    }

    /// Replaces the services with an edited config, as a reload does.
    fn apply(&mut self, config_text: &str) {
        let config = config::parse(config_text, "edited.toml").expect("valid edit");
        self.model.apply(&config.services).expect("fits");
        self.model.sync(&mut self.dataplane).expect("sync");
    }

    fn flow(&self, client_port: u16, port: u16) -> Option<FlowEntry> {
        let key = FlowKey {
            src_addr: CLIENT,
            dst_addr: VIP,
            src_port: client_port.to_be_bytes(),
            dst_port: port.to_be_bytes(),
            protocol: 6,
            _pad: [0; 3],
        };
        self.dataplane
            .flows()
            .expect("read flows")
            .into_iter()
            .find(|(k, _)| *k == FlowMapKey::V4(key))
            .map(|(_, v)| v)
    }

    fn counter(&self, which: Counter) -> u64 {
        self.dataplane
            .counters()
            .expect("counters")
            .into_iter()
            .find(|(c, _)| *c == which)
            .map_or(0, |(_, n)| n)
    }

    /// Runs the controller's sweep and feeds the counts back, as the daemon does each second.
    fn sweep(&mut self) -> HashMap<u32, ConnectionCounts> {
        let flows = self.dataplane.flows().expect("flows");
        let found = conntrack::sweep(
            &flows,
            &[],
            monotonic_ns(),
            &default_settings(),
            &self.model.generations(),
            |_| None,
        );
        self.model.set_connection_counts(found.counts.clone());
        self.model.sync(&mut self.dataplane).expect("sync");
        found.counts
    }

    fn real_server_id(&self, port: u16, address: [u8; 4]) -> u32 {
        self.model
            .services()
            .find(|s| s.service.port == port)
            .and_then(|s| {
                s.real_servers
                    .iter()
                    .find(|rs| rs.address == Ipv4Addr::from(address))
                    .map(|rs| rs.id)
            })
            .expect("configured")
    }
}

/// `CONFIG` with one service's section edited.
fn edited(from: &str, to: &str) -> String {
    assert!(CONFIG.contains(from), "{from}");
    CONFIG.replacen(from, to, 1)
}

#[test]
#[ignore = "needs root: loads BPF programs"]
fn rr_and_wrr_follow_ipvs_sequences() {
    let mut bench = Bench::new();
    assert_eq!(bench.new_connections(1, 1000, 4), [RS1, RS2, RS1, RS2]);
    assert_eq!(
        bench.new_connections(2, 1000, 8),
        [RS1, RS1, RS1, RS2, RS1, RS1, RS1, RS2],
        "weights 3:1 give A A A B, over and over"
    );
}

#[test]
#[ignore = "needs root: loads BPF programs"]
fn connection_count_schedulers_follow_the_counts() {
    let mut bench = Bench::new();
    // Give 10.0.0.11 three established connections on the wlc service.
    for p in 1000..1003 {
        bench.send(p, 3, TcpKind::Syn);
        bench.send(p, 3, TcpKind::Ack);
    }
    let counts = bench.sweep();
    let rs1 = bench.real_server_id(3, [10, 0, 0, 11]);
    let rs2 = bench.real_server_id(3, [10, 0, 0, 12]);
    let on_rs1 = counts[&rs1].active + counts.get(&rs2).map_or(0, |c| c.active);
    assert_eq!(on_rs1, 3, "three established connections in all");
    let (busy, idle) = if counts.get(&rs1).is_some_and(|c| c.active >= 2) {
        (RS1, RS2)
    } else {
        (RS2, RS1)
    };
    let busy_count = counts[&if busy == RS1 { rs1 } else { rs2 }].active;
    let idle_count = 3 - busy_count;
    let next = bench.new_connections(3, 2000, (busy_count - idle_count) as u16);
    assert!(
        next.iter().all(|&s| s == idle),
        "the less loaded server first: {next:?}"
    );

    // sed prefers the weight-10 server while its (active+1)/weight is lower; nq takes an idle
    // server at once.
    assert_eq!(bench.new_connections(9, 1000, 1), [RS1]);
    assert_eq!(bench.new_connections(10, 1000, 2), [RS1, RS2]);
    // lc with no connections alternates, first listed first.
    assert_eq!(bench.new_connections(8, 1000, 2), [RS1, RS2]);
}

#[test]
#[ignore = "needs root: loads BPF programs"]
fn hash_schedulers_keep_a_client_on_one_server() {
    let mut bench = Bench::new();
    let sh = bench.new_connections(4, 1000, 20);
    assert!(
        sh.iter().all(|&s| s == sh[0]),
        "sh: one client, one server: {sh:?}"
    );
    let mh = bench.new_connections(6, 1000, 20);
    assert!(
        mh.iter().all(|&s| s == mh[0]),
        "mh: one client, one server: {mh:?}"
    );
    let mut seen = std::collections::BTreeSet::new();
    for last in 1..=40u8 {
        seen.insert(bench.send_from([192, 0, 2, last], 1000, 6, TcpKind::Syn));
    }
    assert_eq!(seen.len(), 2, "mh: many clients use both servers");
    let mut dh = std::collections::BTreeSet::new();
    for last in 1..=40u8 {
        dh.insert(bench.send_from([192, 0, 2, last], 1000, 5, TcpKind::Syn));
    }
    assert_eq!(dh.len(), 1, "dh: one VIP, one server for everybody");
}

#[test]
#[ignore = "needs root: loads BPF programs"]
fn flows_stick_across_server_changes_and_new_flows_follow_the_new_weights() {
    let mut bench = Bench::new();
    let first = bench.send(1000, 1, TcpKind::Syn);
    let second = bench.send(1001, 1, TcpKind::Syn);
    assert_ne!(first, second);

    // Add a third server: the ring changes, established flows do not move.
    bench.apply(&edited(
        "port = 1\nlb_algo = \"rr\"\n[[virtual_server.real_server]]\naddress = \"10.0.0.11\"",
        "port = 1\nlb_algo = \"rr\"\n[[virtual_server.real_server]]\naddress = \"10.0.0.14\"\n\
         [[virtual_server.real_server]]\naddress = \"10.0.0.11\"",
    ));
    assert_eq!(bench.send(1000, 1, TcpKind::Ack), first);
    assert_eq!(bench.send(1001, 1, TcpKind::Ack), second);
    let new: std::collections::BTreeSet<u8> =
        bench.new_connections(1, 2000, 6).into_iter().collect();
    assert_eq!(new, [RS1, RS2, RS4].into_iter().collect());

    // Quiesce 10.0.0.11 (weight 0): its flow carries on, it gets no new flow.
    let rs1_flow = if first == RS1 { 1000 } else { 1001 };
    bench.apply(&edited(
        "port = 1\nlb_algo = \"rr\"\n[[virtual_server.real_server]]\naddress = \"10.0.0.11\"",
        "port = 1\nlb_algo = \"rr\"\n[[virtual_server.real_server]]\naddress = \"10.0.0.14\"\n\
         [[virtual_server.real_server]]\naddress = \"10.0.0.11\"\nweight = 0",
    ));
    assert_eq!(bench.send(rs1_flow, 1, TcpKind::Ack), RS1);
    let new = bench.new_connections(1, 3000, 20);
    assert!(
        !new.contains(&RS1),
        "a quiesced server got a new flow: {new:?}"
    );
}

/// `CONFIG` with the rr service (port 1) reduced to the one server that did not get `first`.
fn without_server_of(first: u8) -> String {
    let remaining = if first == RS1 {
        "10.0.0.12"
    } else {
        "10.0.0.11"
    };
    edited(
        "port = 1\nlb_algo = \"rr\"\n[[virtual_server.real_server]]\naddress = \"10.0.0.11\"\n\
         [[virtual_server.real_server]]\naddress = \"10.0.0.12\"",
        &format!(
            "port = 1\nlb_algo = \"rr\"\n[[virtual_server.real_server]]\naddress = \"{remaining}\""
        ),
    )
}

#[test]
#[ignore = "needs root: loads BPF programs"]
fn a_removed_server_gets_no_more_packets() {
    let mut bench = Bench::new();
    let first = bench.send(1000, 1, TcpKind::Syn);
    bench.apply(&without_server_of(first));
    // By default (expire_nodest_conn on) the flow is scheduled anew at once.
    let now = bench.send(1000, 1, TcpKind::Ack);
    assert_ne!(now, first, "a packet went to a removed server");
    let flow = bench.flow(1000, 1).expect("the flow is tracked again");
    assert_eq!(flow.state, FlowState::Established as u8);

    // With IPVS's default (drop until expiry), a flow whose server went away is dropped.
    let mut bench = Bench::new();
    bench
        .dataplane
        .set_settings(Settings::with_timeouts(
            900,
            120,
            300,
            lvs_common::flow::SETTINGS_DROP_NODEST,
        ))
        .expect("settings");
    let first = bench.send(1000, 1, TcpKind::Syn);
    bench.apply(&without_server_of(first));
    let before = bench.counter(Counter::DropRealServerGone);
    let (action, _) = bench.send_raw(CLIENT, 1000, 1, TcpKind::Ack);
    assert_eq!(action, XDP_DROP);
    assert_eq!(bench.counter(Counter::DropRealServerGone), before + 1);
}

#[test]
#[ignore = "needs root: loads BPF programs"]
fn persistence_keeps_a_client_network_on_its_server() {
    let mut bench = Bench::new();
    let client_a = [192, 0, 2, 7];
    let neighbour_of_a = [192, 0, 2, 99];
    let client_b = [198, 51, 100, 1];
    let first = bench.send_from(client_a, 1000, 7, TcpKind::Syn);
    for port in 1001..1010 {
        assert_eq!(bench.send_from(client_a, port, 7, TcpKind::Syn), first);
    }
    assert_eq!(
        bench.send_from(neighbour_of_a, 1000, 7, TcpKind::Syn),
        first,
        "same /24, same template"
    );
    let other = bench.send_from(client_b, 1000, 7, TcpKind::Syn);
    assert_ne!(
        other, first,
        "round robin gives the next network the next server"
    );

    // Quiesce the first server: the existing client keeps it (as IPVS does by default), a new
    // client network never gets it.
    let quiesced = if first == RS1 {
        "10.0.0.11"
    } else {
        "10.0.0.12"
    };
    let section = "port = 7\nlb_algo = \"rr\"\npersistence_timeout = 300\n\
                   persistence_granularity = \"255.255.255.0\"\n[[virtual_server.real_server]]\n\
                   address = \"10.0.0.11\"\n[[virtual_server.real_server]]\naddress = \"10.0.0.12\"";
    bench.apply(&edited(
        section,
        &section.replace(
            &format!("address = \"{quiesced}\""),
            &format!("address = \"{quiesced}\"\nweight = 0"),
        ),
    ));
    assert_eq!(bench.send_from(client_a, 2000, 7, TcpKind::Syn), first);
    for last in 1..=10u8 {
        let server = bench.send_from([203, 0, 113, last * 20], 1000, 7, TcpKind::Syn);
        assert_ne!(server, first, "a new client got the quiesced server");
    }
}

#[test]
#[ignore = "needs root: loads BPF programs"]
fn fin_and_rst_move_connections_from_active_to_inactive() {
    let mut bench = Bench::new();
    let server = bench.send(1000, 1, TcpKind::Syn);
    assert_eq!(bench.flow(1000, 1).unwrap().state, FlowState::SynRecv as u8);
    bench.send(1000, 1, TcpKind::Ack);
    bench.send(1001, 1, TcpKind::Syn);
    bench.send(1001, 1, TcpKind::Ack);
    assert_eq!(
        bench.flow(1000, 1).unwrap().state,
        FlowState::Established as u8
    );
    let counts = bench.sweep();
    let total: u32 = counts.values().map(|c| c.active).sum();
    assert_eq!(total, 2);

    bench.send(1000, 1, TcpKind::Fin);
    assert_eq!(bench.flow(1000, 1).unwrap().state, FlowState::FinWait as u8);
    bench.send(1001, 1, TcpKind::Rst);
    assert_eq!(bench.flow(1001, 1).unwrap().state, FlowState::Close as u8);
    let counts = bench.sweep();
    let active: u32 = counts.values().map(|c| c.active).sum();
    let inactive: u32 = counts.values().map(|c| c.inactive).sum();
    assert_eq!((active, inactive), (0, 2));
    assert_eq!(
        bench.send(1000, 1, TcpKind::Ack),
        server,
        "a closing flow stays put"
    );
}

#[test]
#[ignore = "needs root: loads BPF programs"]
fn an_expired_flow_is_a_new_connection() {
    let mut bench = Bench::new();
    bench.send(1000, 3, TcpKind::Syn);
    bench.send(1000, 3, TcpKind::Ack);
    let before = bench.dataplane.service_stats(2).unwrap().connections;
    // Age the entry past a 1 s timeout.
    bench
        .dataplane
        .set_settings(Settings::with_timeouts(1, 1, 1, 0))
        .unwrap();
    let mut entry = bench.flow(1000, 3).unwrap();
    entry.last_seen_ns = monotonic_ns().saturating_sub(5_000_000_000);
    let key = FlowKey {
        src_addr: CLIENT,
        dst_addr: VIP,
        src_port: 1000u16.to_be_bytes(),
        dst_port: 3u16.to_be_bytes(),
        protocol: 6,
        _pad: [0; 3],
    };
    bench
        .dataplane
        .insert_flows(&[(key.into(), entry)])
        .unwrap();
    bench.send(1000, 3, TcpKind::Ack);
    assert_eq!(
        bench.dataplane.service_stats(2).unwrap().connections,
        before + 1,
        "scheduled again"
    );
    let swept = conntrack::sweep(
        &bench.dataplane.flows().unwrap(),
        &[],
        monotonic_ns() + 10_000_000_000,
        &Settings::with_timeouts(1, 1, 1, 0),
        &bench.model.generations(),
        |_| None,
    );
    assert_eq!(
        swept.expired_flows.len(),
        1,
        "and the sweep expires it when idle"
    );
}

/// Under a flood of new flows bigger than the table, new flows that sent one packet take each
/// other's places; established flows that keep sending keep their entries (and so their
/// server).
#[test]
#[ignore = "needs root: loads BPF programs"]
fn a_flood_of_new_flows_does_not_evict_flows_that_keep_sending() {
    const TABLE: u32 = 1024;
    let mut bench = Bench::with_table(TABLE);
    let established: Vec<(u16, u8)> = (100..110)
        .map(|p| {
            let server = bench.send(p, 1, TcpKind::Syn);
            bench.send(p, 1, TcpKind::Ack);
            (p, server)
        })
        .collect();
    let service_index = 0;
    let before = bench
        .dataplane
        .service_stats(service_index)
        .unwrap()
        .connections;
    let flood = 4 * TABLE;
    for i in 0..flood {
        let client = [198, 18, (i >> 8) as u8, i as u8];
        bench.send_from(client, 5000, 1, TcpKind::Syn);
        if i % 64 == 0 {
            for &(p, server) in &established {
                assert_eq!(bench.send(p, 1, TcpKind::Ack), server, "flow {p} moved");
            }
        }
    }
    for &(p, server) in &established {
        assert_eq!(bench.send(p, 1, TcpKind::Ack), server);
        let flow = bench.flow(p, 1).expect("still tracked");
        assert_eq!(flow.state, FlowState::Established as u8);
    }
    let after = bench
        .dataplane
        .service_stats(service_index)
        .unwrap()
        .connections;
    assert_eq!(
        after - before,
        u64::from(flood),
        "no established flow was ever scheduled again"
    );
    let slots = bucket_count(TABLE) as usize * FLOW_BUCKET_WAYS;
    assert!(bench.dataplane.flows().unwrap().len() <= slots);
}

/// An established packet writes its flow entry only when its state changes or its stamp is
/// old (up to a second, or a sixteenth of the state's timeout), so a busy flow's entry is not
/// written on every packet; an old stamp is renewed.
#[test]
#[ignore = "needs root: loads BPF programs"]
fn an_established_flow_is_stamped_only_when_its_stamp_is_old_or_its_state_changes() {
    let mut bench = Bench::new();
    bench.send(1000, 1, TcpKind::Syn);
    // A SYN sent again (a retransmission, or a flood's second SYN) is not counted.
    bench.send(1000, 1, TcpKind::Syn);
    let opened = bench.flow(1000, 1).unwrap();
    // Backdate the stamp by half a second: younger than the stamp interval for ESTABLISHED
    // (900 s / 16 is more than 1 s), so the ACK below must leave it alone, state aside.
    let key = FlowKey {
        src_addr: CLIENT,
        dst_addr: VIP,
        src_port: 1000u16.to_be_bytes(),
        dst_port: 1u16.to_be_bytes(),
        protocol: 6,
        _pad: [0; 3],
    };
    bench.send(1000, 1, TcpKind::Ack);
    let established = bench.flow(1000, 1).unwrap();
    assert_eq!(established.state, FlowState::Established as u8);
    assert!(
        established.last_seen_ns >= opened.last_seen_ns,
        "a state change stamps the entry"
    );
    assert_eq!(
        (packets_seen(opened.flags), packets_seen(established.flags)),
        (0, 1),
        "the second packet is counted"
    );
    // Counted up to the fourth packet: past that, nothing but the stamp and the state is
    // written.
    let half_a_second_ago = FlowEntry {
        last_seen_ns: monotonic_ns() - 500_000_000,
        flags: established.flags | FLOW_SEEN_MAX << FLOW_SEEN_SHIFT,
        ..established
    };
    bench
        .dataplane
        .insert_flows(&[(key.into(), half_a_second_ago)])
        .unwrap();
    bench.send(1000, 1, TcpKind::Ack);
    assert_eq!(
        bench.flow(1000, 1).unwrap(),
        half_a_second_ago,
        "an ACK within the stamp interval does not write the entry"
    );

    let two_seconds_ago = FlowEntry {
        last_seen_ns: monotonic_ns() - 2_000_000_000,
        ..half_a_second_ago
    };
    bench
        .dataplane
        .insert_flows(&[(key.into(), two_seconds_ago)])
        .unwrap();
    bench.send(1000, 1, TcpKind::Ack);
    let renewed = bench.flow(1000, 1).unwrap();
    assert!(
        renewed.last_seen_ns > two_seconds_ago.last_seen_ns + 1_500_000_000,
        "an old stamp is renewed: {} -> {}",
        two_seconds_ago.last_seen_ns,
        renewed.last_seen_ns
    );
    assert_eq!(renewed.state, FlowState::Established as u8);
}

/// The controller's sweep reads the flow table a slice at a time; a pass over the real map
/// must count and expire exactly what one sweep of the whole table does.
#[test]
#[ignore = "needs root: loads BPF programs"]
fn a_sweep_in_slices_computes_what_a_whole_sweep_does() {
    const FLOWS: usize = 3 * conntrack::SWEEP_SLICE + 1234;
    let mut bench = Bench::with_table(2 * FLOWS as u32);
    let generations = bench.model.generations();
    let ids: Vec<(u32, u32)> = generations.iter().map(|(&id, &g)| (id, g)).collect();
    let now = monotonic_ns();
    let flows: Vec<(FlowMapKey, FlowEntry)> = (0..FLOWS)
        .map(|i| {
            let (id, generation) = ids[i % ids.len()];
            let key = FlowKey {
                src_addr: [100, 64, (i >> 8) as u8, i as u8],
                dst_addr: VIP,
                src_port: ((i >> 16) as u16).to_be_bytes(),
                dst_port: 1u16.to_be_bytes(),
                protocol: 6,
                _pad: [0; 3],
            };
            // Every seventh flow idle for longer than ESTABLISHED's 900 s, every fifth closing.
            let idle_s = if i % 7 == 0 { 1000 } else { 5 };
            let state = if i % 5 == 0 {
                FlowState::FinWait
            } else {
                FlowState::Established
            };
            let entry = FlowEntry {
                last_seen_ns: now.saturating_sub(idle_s * 1_000_000_000),
                real_server_id: id,
                generation,
                state: state as u8,
                ..FlowEntry::default()
            };
            (key.into(), entry)
        })
        .collect();
    bench.dataplane.insert_flows(&flows).unwrap();
    // An expired flow's slot is free to take, so a later flow may have taken it already.
    let before = bench.dataplane.flows().unwrap();
    assert!(
        before.len() > FLOWS - FLOWS / 7 - 100,
        "{} flows of {FLOWS}",
        before.len()
    );
    let whole = conntrack::sweep(&before, &[], now, &default_settings(), &generations, |_| {
        None
    });

    let mut sweeper = conntrack::Sweeper::default();
    let mut steps = 0;
    let pass = loop {
        steps += 1;
        assert!(steps < 100, "the pass never ended");
        if let Some(pass) = sweeper
            .step(
                &mut bench.dataplane,
                now,
                &default_settings(),
                &generations,
                |_| None,
            )
            .unwrap()
        {
            break pass;
        }
    };
    assert!(steps >= 4, "{FLOWS} flows took only {steps} steps");
    assert_eq!(pass.counts, whole.counts);
    let left = bench.dataplane.flows().unwrap();
    assert_eq!(left.len(), before.len() - whole.expired_flows.len());
    assert_eq!(pass.live_flows, left.len() as u64);
    assert!(
        left.iter()
            .all(|(key, _)| !whole.expired_flows.contains(key)),
        "every expired flow was deleted"
    );
}

/// A connection a sync backup learned from its master is followed by the real data plane: a
/// mid-stream segment goes to the master's real server (matched by address, with this
/// director's own id and generation), not to the server the ring would give a new
/// connection, and the ring goes on undisturbed. This is what keeps a connection on its real
/// server when the VIP moves to the backup.
#[test]
#[ignore = "needs root: loads BPF programs"]
fn a_connection_learned_by_sync_keeps_its_real_server() {
    use lvs_userspace::logic::{
        config::Protocol,
        sync::{Change, Connection, Entry, Install, ServiceAddress, install, place},
    };
    let mut bench = Bench::new();
    let first = bench.send(2000, 1, TcpKind::Syn);
    let address = |server: u8| match server {
        0x11 => Ipv4Addr::new(10, 0, 0, 11),
        0x12 => Ipv4Addr::new(10, 0, 0, 12),
        other => panic!("no real server has MAC byte {other:#x}"),
    };
    // The master had the connection on the server that the ring has just given; a new
    // connection would now get the other one.
    let entry = Entry::Connection(
        Change::New,
        Connection {
            service: ServiceAddress {
                address: Ipv4Addr::from(VIP).into(),
                port: 1,
                protocol: Protocol::Tcp,
            },
            client: std::net::SocketAddr::new(Ipv4Addr::from(CLIENT).into(), 3000),
            real_server: std::net::SocketAddr::new(address(first).into(), 1),
            state: FlowState::Established,
            remaining_ms: 600_000,
        },
    );
    let placement = place(&entry, &bench.model).expect("the backup has the service and server");
    let Install::Flow(key, flow) =
        install(&entry, &placement, &default_settings(), monotonic_ns()).expect("installable")
    else {
        panic!("a connection is a flow");
    };
    bench.dataplane.insert_flows(&[(key, flow)]).unwrap();
    assert_eq!(
        bench.send(3000, 1, TcpKind::Ack),
        first,
        "the synced connection stays on the master's real server"
    );
    assert_eq!(
        bench.flow(3000, 1).unwrap().real_server_id,
        placement.real_server_id
    );
    let next = bench.send(4000, 1, TcpKind::Syn);
    assert_ne!(
        next, first,
        "the ring was not moved by the synced connection"
    );
}
