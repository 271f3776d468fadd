//! A flood: one million new flows (TCP SYNs from random sources, each with right checksums)
//! at the live-frames generator's rate, from a host on the lab's switch, to the service that
//! long-lived connections talk through; then a million flows that send two SYNs each. None
//! of those connections may break or move to another real server, no new connection made
//! meanwhile may fail, the control socket must answer every poll, and the health checks
//! (TCP_CHECK and HTTP_GET, every second) must keep every real server up. What was measured
//! is printed.
//!
//! The flow table has room for `flow_table_size` connections (262,144 by default, in twice as
//! many slots), so a million new flows turn it over several times: the long-lived connections'
//! entries survive because they have sent more packets than the flood's connections (whose
//! SYNs count once however many they send), which give way to each other first
//! (`lvs_common::flow_table`).
//!
//! The flood offers the lab more frames than its veth rings carry on two cores, so the lab
//! drops some of every flow's frames while it lasts: frames from the switch to the director
//! when the director's receive ring is full, and frames the director forwards when the
//! switch port's ring is full (a real director's NIC drops the same way when offered more
//! than it takes). Both are counted and printed. TCP sends a lost frame again, so a new
//! connection may take `NEW_CONNECTION_TIMEOUT` (its SYN sent four times) before it counts as
//! failed; a connection the director breaks fails at once, reset by a server that does not
//! know it.
//!
//! `LVS_FLOOD_FLOW_TABLE_SIZE=N` runs the test with another table size. Even the smallest
//! (1,024 connections, which the flood turns over every few milliseconds) breaks nothing,
//! because the flood's entries give way to each other; with that table, an eviction rule that
//! ordered connections by their last packet alone broke all 16 long-lived connections and
//! reset 9 new ones, and the test failed.
//!
//! Needs root (namespaces, XDP, BPF_PROG_RUN); ignored by a plain `cargo test`, run by
//! `cargo xtask test` or
//! `cargo test -p lvs-userspace --test flood -- --ignored --test-threads=1 --nocapture`.

use std::{
    collections::{BTreeMap, BTreeSet},
    path::{Path, PathBuf},
    thread::sleep,
    time::{Duration, Instant},
};

use lvs_test_support::{
    lab::{self, Lab, Shape, VIP},
    live::{self, Budget, Generator, Port},
    load::{Clients, Load, PING_PORT, line_service_toml, start_line_servers},
    rawbpf::Sources,
};

fn repo() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

fn lvs() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_lvs"))
}

fn lvsadm() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_lvsadm"))
}

const REAL_SERVERS: u8 = 3;

/// New flows the director must take from the flood.
const FLOWS: u64 = 1_000_000;

/// The flood stops at `FLOWS` new connections counted, or after this long, or after
/// `MAX_FRAMES` frames, whichever comes first.
const FLOOD_LIMIT: Duration = Duration::from_secs(25);
const MAX_FRAMES: u64 = 100_000_000;

/// The clients talk this long before the flood and after it.
const CALM: Duration = Duration::from_secs(3);

/// Long-lived connections: each sends a line every 100 ms, and one that waits longer than
/// `STALL` for an answer counts as broken.
const LONG_LIVED: usize = 16;
const STALL: Duration = Duration::from_secs(5);

/// How long a new connection may take to connect and to be answered: a lost SYN is sent again
/// after 1, 3 and 7 s, so its fourth outlasts a flood of a few seconds.
const NEW_CONNECTION_TIMEOUT: Duration = Duration::from_secs(8);

/// How often the control socket is asked during the flood, and how long it may take.
const POLL: Duration = Duration::from_millis(250);
const ANSWER_LIMIT: Duration = Duration::from_secs(5);

/// The generator's CPU (the rest of the lab runs wherever the scheduler puts it).
const GENERATOR_CPU: usize = 0;

/// The lab's config with health checks: HTTP_GET on the lab's HTTP service, TCP_CHECK on the
/// line servers' service (the flooded one), every second.
fn write_config(lab: &Lab) -> PathBuf {
    let mut text = std::fs::read_to_string(lab.config_path()).unwrap();
    if let Ok(size) = std::env::var("LVS_FLOOD_FLOW_TABLE_SIZE") {
        let size: u32 = size.parse().expect("LVS_FLOOD_FLOW_TABLE_SIZE is a number");
        text = text.replacen(
            "[director]\n",
            &format!("[director]\nflow_table_size = {size}\n"),
            1,
        );
    }
    let check = |kind: &str, extra: &str| {
        format!(
            "[virtual_server.real_server.{kind}]\nconnect_timeout = 2\nretry = 2\n\
             delay_before_retry = 1\n{extra}"
        )
    };
    let http_get = check(
        "HTTP_GET",
        "[[virtual_server.real_server.HTTP_GET.url]]\npath = \"/\"\nstatus_code = 200\n",
    );
    text = text.replacen(
        "lb_kind = \"DR\"\n",
        "lb_kind = \"DR\"\ndelay_loop = 1\n",
        1,
    );
    text = text.replace("weight = 1\n", &format!("weight = 1\n{http_get}"));
    let line_service = line_service_toml(REAL_SERVERS)
        .replacen(
            "lb_kind = \"DR\"\n",
            "lb_kind = \"DR\"\ndelay_loop = 1\n",
            1,
        )
        .replace(
            "weight = 1\n",
            &format!("weight = 1\n{}", check("TCP_CHECK", "")),
        );
    text += &line_service;
    let path = lab.config_path().with_file_name("lvs-flood.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// Every checked real server by "address:port" with its health state and the time of its
/// last check's result.
fn health(status: &serde_json::Value) -> BTreeMap<String, (String, u64)> {
    let mut servers = BTreeMap::new();
    for service in status["services"].as_array().into_iter().flatten() {
        for server in service["real_servers"].as_array().into_iter().flatten() {
            let name = format!(
                "{}:{}",
                server["address"].as_str().unwrap_or("?"),
                service["port"]
            );
            let state = server["health"]["state"].as_str().unwrap_or("unchecked");
            let at = server["health"]["last_result"]["at_unix_ms"]
                .as_u64()
                .unwrap_or(0);
            servers.insert(name, (state.to_owned(), at));
        }
    }
    servers
}

fn all_up(status: &serde_json::Value) -> bool {
    let servers = health(status);
    servers.len() == 2 * usize::from(REAL_SERVERS)
        && servers.values().all(|(state, at)| state == "up" && *at > 0)
}

/// The new connections the flooded service (the line servers') has counted.
fn flooded_connections(status: &serde_json::Value) -> u64 {
    status["services"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|s| s["port"] == PING_PORT)
        .and_then(|s| s["connections"].as_u64())
        .unwrap_or(0)
}

/// Every verdict counter that moved between two status documents.
fn counter_deltas(before: &serde_json::Value, after: &serde_json::Value) -> Vec<(String, u64)> {
    after["counters"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| {
            let name = c["name"].as_str()?;
            let delta = lab::counter(after, name).saturating_sub(lab::counter(before, name));
            (delta > 0).then(|| (name.to_owned(), delta))
        })
        .collect()
}

/// The frames the lab's veth rings dropped so far between the switch and the director: those
/// the switch could not hand to the director (its receive ring full) and those the director
/// forwarded that the switch could not take (the switch port's ring full).
#[derive(Clone, Copy, Debug)]
struct LabDrops {
    into_director: u64,
    forwarded: u64,
}

impl LabDrops {
    fn read(lab: &Lab) -> Self {
        let switch = lab.namespace("sw");
        let output = live::run(
            "ip",
            &[
                "netns",
                "exec",
                &switch,
                "cat",
                "/sys/class/net/dir/statistics/tx_dropped",
            ],
        )
        .unwrap_or_else(|e| panic!("{e:#}"));
        let into_director = String::from_utf8_lossy(&output.stdout)
            .trim()
            .parse()
            .expect("a count of dropped frames");
        let forwarded = live::rx_queue_sum(&lab.namespace("dir"), "eth0", "_xdp_tx_errors")
            .unwrap_or_else(|e| panic!("{e:#}"));
        Self {
            into_director,
            forwarded,
        }
    }

    fn since(self, before: Self) -> Self {
        Self {
            into_director: self.into_director - before.into_director,
            forwarded: self.forwarded - before.forwarded,
        }
    }
}

/// What polling the control socket found during the flood.
#[derive(Default)]
struct Polls {
    status: Vec<Duration>,
    lvsadm: Vec<Duration>,
    failures: Vec<String>,
    /// Polls in which some checked real server was not up, with what was seen.
    not_up: Vec<String>,
    /// The distinct check results seen per server during the flood.
    checks: BTreeMap<String, BTreeSet<u64>>,
}

impl Polls {
    /// Asks the director once with `lvs status --json` and once with `lvsadm -Ln`, and notes
    /// how long each took and what the status says of health; returns the status.
    fn poll(&mut self, lab: &Lab) -> Option<serde_json::Value> {
        let started = Instant::now();
        let status = lab.status(lvs());
        self.status.push(started.elapsed());
        let started = Instant::now();
        let listing = lab.lvsadm(lvsadm(), &["-Ln"]);
        self.lvsadm.push(started.elapsed());
        if !listing.status.success() || !String::from_utf8_lossy(&listing.stdout).contains(VIP) {
            self.failures.push(format!(
                "lvsadm -Ln: {}",
                String::from_utf8_lossy(&listing.stderr)
            ));
        }
        let status = match status {
            Ok(status) => status,
            Err(error) => {
                self.failures.push(format!("lvs status: {error}"));
                return None;
            }
        };
        let servers = health(&status);
        if !all_up(&status) {
            self.not_up.push(format!("{servers:?}"));
        }
        for (name, (_, at)) in servers {
            self.checks.entry(name).or_default().insert(at);
        }
        Some(status)
    }

    /// The checks seen completing per server since the first poll (whose results are older).
    fn checks_seen(&self) -> BTreeMap<String, usize> {
        self.checks
            .iter()
            .map(|(server, results)| (server.clone(), results.len().saturating_sub(1)))
            .collect()
    }

    fn worst(times: &[Duration]) -> Duration {
        times.iter().copied().max().unwrap_or_default()
    }
}

#[test]
#[ignore = "needs root: network namespaces, XDP and BPF_PROG_RUN"]
fn a_flood_of_a_million_new_flows_breaks_no_connection_and_the_director_keeps_answering() {
    flood(Sources::Random, "lvsfld", "a flood of new flows");
}

/// The same flood, each new flow sending two SYNs: a SYN sent again is not counted
/// (`counts_as_seen`), so the flood's connections rank with a real one in its handshake, and
/// give way to each other before the long-lived ones, which have sent more.
#[test]
#[ignore = "needs root: network namespaces, XDP and BPF_PROG_RUN"]
fn a_flood_of_a_million_two_packet_flows_breaks_no_connection() {
    flood(Sources::Pairs, "lvsfl2", "a flood of two-packet flows");
}

/// Floods the lab's flooded service with `FLOWS` new flows from `sources`, in a lab whose
/// namespaces are named from `lab_name`, and checks what the module's docs promise.
fn flood(sources: Sources, lab_name: &str, what: &str) {
    let shape = Shape {
        real_servers: REAL_SERVERS,
        flooder: true,
        ..Shape::default()
    };
    let mut lab = Lab::up_with(repo(), lab_name, shape).unwrap_or_else(|e| panic!("{e}"));
    let _servers = start_line_servers(&lab, REAL_SERVERS).unwrap_or_else(|e| panic!("{e}"));
    let config = write_config(&lab);
    lab.start_director_with(lvs(), &config)
        .unwrap_or_else(|e| panic!("{e}"));
    let real_servers = 2 * usize::from(REAL_SERVERS);
    lab.wait_until_forwarding(lvs(), real_servers, Duration::from_secs(20))
        .unwrap_or_else(|e| panic!("{e}"));
    lab.wait_for_status(
        lvs(),
        Duration::from_secs(20),
        "every real server checked and up",
        all_up,
    )
    .unwrap_or_else(|e| panic!("{e}"));

    // The flood's frames: SYNs to the line servers' service, to the director's MAC.
    let flooder = lab.namespace("flood");
    let director_mac = live::mac(&lab.namespace("dir"), "eth0").unwrap();
    let flooder_mac = live::mac(&flooder, "eth0").unwrap();
    let vip: std::net::Ipv4Addr = VIP.parse().unwrap();
    let frame = live::tcp_syn_frame(director_mac, flooder_mac, vip.octets(), PING_PORT);

    let clients = Clients {
        long_lived: LONG_LIVED,
        stall: STALL,
        new_connection_loops: 1,
        new_connection_timeout: NEW_CONNECTION_TIMEOUT,
    };
    let duration = CALM + FLOOD_LIMIT + CALM;
    let load = Load::start_in(&lab.namespace("client"), VIP, PING_PORT, duration, clients)
        .unwrap_or_else(|e| panic!("{e}"));
    let load_started = Instant::now();
    sleep(CALM);

    let mut polls = Polls::default();
    let before = polls.poll(&lab).expect("the status before the flood");
    polls = Polls {
        checks: polls.checks,
        ..Polls::default()
    };
    let director_frames_before =
        live::rx_queue_sum(&lab.namespace("dir"), "eth0", "_xdp_packets").unwrap();
    let drops_before = LabDrops::read(&lab);
    let port = Port {
        namespace: flooder.clone(),
        interface: "eth0".into(),
        cpu: GENERATOR_CPU,
    };
    let budget = Budget {
        frames: MAX_FRAMES,
        deadline: Instant::now() + FLOOD_LIMIT,
    };
    let flood_started = Instant::now();
    let generator = Generator::start(port, frame, sources, budget)
        .unwrap_or_else(|e| panic!("starting the generator: {e:#}"));
    while !generator.is_finished() {
        sleep(POLL);
        if let Some(status) = polls.poll(&lab)
            && flooded_connections(&status) - flooded_connections(&before) >= FLOWS
        {
            break;
        }
    }
    let sent = generator
        .stop()
        .unwrap_or_else(|e| panic!("the generator: {e:#}"));
    let flood = flood_started.elapsed();
    let during = polls.poll(&lab).expect("the status at the flood's end");
    let checks_in_flood = polls.checks_seen();
    let taken = flooded_connections(&during) - flooded_connections(&before);
    let director_frames = live::rx_queue_sum(&lab.namespace("dir"), "eth0", "_xdp_packets")
        .unwrap()
        - director_frames_before;

    // The clients go on talking for a while after the flood, then report.
    let after_flood = Instant::now();
    while after_flood.elapsed() < CALM {
        sleep(POLL);
        polls.poll(&lab);
    }
    let seen = load.finish().unwrap_or_else(|e| panic!("{e}"));
    let drops = LabDrops::read(&lab).since(drops_before);
    let load_time = load_started.elapsed();
    let after = lab.status(lvs()).unwrap_or_else(|e| panic!("{e}"));

    println!(
        "{what}: {} SYN frames sent by the live-frames generator in {:.2} s ({:.2} Mpps); the \
         director's XDP saw {} frames ({:.2} Mpps through the bridge); {taken} new flows taken \
         ({:.0} per second)",
        sent.frames,
        sent.seconds,
        sent.rate() / 1e6,
        director_frames,
        director_frames as f64 / flood.as_secs_f64() / 1e6,
        taken as f64 / flood.as_secs_f64(),
    );
    println!(
        "frames the lab's veth rings dropped over the flood and the calm after it: {} on their \
         way into the director, {} the director forwarded",
        drops.into_director, drops.forwarded
    );
    println!(
        "director counters over the flood and the calm after it: {:?}",
        counter_deltas(&before, &after)
    );
    println!(
        "flow table: {} of {} entries before the flood, {} at its end, {} after",
        before["flow_table"]["entries"],
        before["flow_table"]["size"],
        during["flow_table"]["entries"],
        after["flow_table"]["entries"]
    );
    println!(
        "long-lived connections: {} of {LONG_LIVED} broken, {} moved to another real server; \
         longest wait for an answer {:.0} ms",
        seen.broken(),
        seen.moved(),
        seen.longest_gap_ms()
    );
    println!(
        "new connections (one HTTP request each, over {:.1} s): {} ok (the slowest in {:.0} \
         ms), {} failed {:?}",
        load_time.as_secs_f64(),
        seen.ok_requests(),
        seen.json["new"]["slowest_ok_ms"].as_f64().unwrap_or(0.0),
        seen.failed_requests(),
        seen.json["new"]["errors"]
    );
    println!(
        "control socket: {} polls of `lvs status --json` (worst {:.0} ms) and of `lvsadm -Ln` \
         (worst {:.0} ms) during and after the flood, {} failed",
        polls.status.len(),
        Polls::worst(&polls.status).as_secs_f64() * 1e3,
        Polls::worst(&polls.lvsadm).as_secs_f64() * 1e3,
        polls.failures.len()
    );
    let checks = polls.checks_seen();
    println!(
        "health checks seen completing during the flood, per real server: {checks_in_flood:?}; \
         during and after it: {checks:?}; polls with a real server not up: {}",
        polls.not_up.len()
    );

    assert!(
        taken >= FLOWS,
        "the flood made {taken} new flows, fewer than {FLOWS}, within {FLOOD_LIMIT:?}"
    );
    assert_eq!(
        lab::counter(&after, "pass_malformed") - lab::counter(&before, "pass_malformed"),
        0,
        "the generator's frames are valid (checksums)"
    );
    assert!(polls.failures.is_empty(), "{:?}", polls.failures);
    for (name, times) in [("lvs status", &polls.status), ("lvsadm -Ln", &polls.lvsadm)] {
        assert!(
            Polls::worst(times) < ANSWER_LIMIT,
            "{name} took {:?}",
            Polls::worst(times)
        );
    }
    assert!(polls.not_up.is_empty(), "{:?}", polls.not_up);
    assert!(
        checks_in_flood.len() == real_servers && checks_in_flood.values().all(|&n| n >= 1),
        "every real server was checked during the flood: {checks_in_flood:?}"
    );
    seen.assert_long_lived_undisturbed(what);
    // A new connection's entry may be given up only between its SYN and its ACK, when it has
    // sent no more than the flood's connections; it is younger than them, which go first. Its
    // frames the lab drops are sent again within its timeout.
    assert_eq!(
        seen.failed_requests(),
        0,
        "new connections failed during {what}: {:?}",
        seen.json["new"]["errors"]
    );
}
