//! Active/active directors behind ECMP, announced over BGP (issue 15), in namespaces: a
//! router running BIRD spreads the clients' flows over three directors by their L4 hash; each
//! director runs BIRD with `lvs bgp-config`'s snippet and `lvs director` with `[bgp]` and a
//! `[sync]` mesh (both sync daemons, one syncid), so each installs the other's connections.
//!
//! Under load (long-lived connections sending a line every 100 ms, and a loop of new
//! connections) a director dies: the router withdraws it within the BGP hold time, no
//! long-lived connection breaks or moves to another real server, and new connections fail
//! only inside that window; it comes back with no connection broken. A director whose real
//! servers' checks fail loses its quorum and withdraws its VIP while the other keeps serving.
//! The numbers are printed.
//!
//! The load is `lvs_test_support::load`'s, as the restart and two-director tests use. Needs root (namespaces, XDP, bpffs)
//! and BIRD; ignored by a plain `cargo test`, run by `cargo xtask test`.

#[path = "scale_out/ecmp.rs"]
mod ecmp;

use std::{
    net::Ipv4Addr,
    path::Path,
    process::Command,
    thread::sleep,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use ecmp::{EcmpLab, HOLD_TIME, VIP, director_address, server_address};
use lvs_test_support::load::{Clients, LINE_SERVER, Load, NEW_CONNECTION_TIMEOUT, PING_PORT, Seen};

fn lvs() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_lvs"))
}

const DIRECTORS: u8 = 3;
const SERVERS: u8 = 3;
const LONG_LIVED: usize = 24;
const HTTP_PORT: u16 = 80;
fn unix_now() -> f64 {
    unix(SystemTime::now())
}

/// A director's config: both services over every real server, each checked with a
/// TCP_CHECK on `check_port` (its own port when `None`), the sync mesh and `[bgp]`. The
/// long-lived connections' service is `rr`, so that only connection sync keeps them on their
/// servers when they move to another director; the new connections' service is `mh`, which
/// every director builds alike, so that a connection younger than sync's delay (up to a
/// sweep pass, a second here) keeps its server too when the ECMP set changes under it (with
/// `rr` one in about a thousand was reset when a director came back). The real servers are
/// `inhibit_on_failure`, as "Scaling out" advises: when a director's own checks fail (its
/// quorum test here), its servers keep their connections at weight 0 until the routers move
/// them, instead of being removed one check at a time, which would reschedule the first
/// one's connections to a server still up on that director and reset them.
fn director_config(lab: &EcmpLab, n: u8, check_port: Option<u16>) -> String {
    let mut text = format!(
        "[director]\ninterface = \"eth0\"\nxdp_mode = \"generic\"\nmanage_vips = false\n\
         control_socket = \"{}\"\n\n\
         [sync]\nsyncid = 7\nkey_file = \"{}\"\n\n\
         [bgp]\nhold_time = {HOLD_TIME}\n",
        lab.control_socket(n).display(),
        lab.state.join("sync.key").display(),
    );
    for (port, scheduler) in [(HTTP_PORT, "mh"), (PING_PORT, "rr")] {
        text += &format!(
            "\n[[virtual_server]]\naddress = \"{VIP}\"\nport = {port}\nprotocol = \"TCP\"\n\
             lb_algo = \"{scheduler}\"\nlb_kind = \"DR\"\ndelay_loop = 1\n"
        );
        for s in 1..=SERVERS {
            text += &format!(
                "\n[[virtual_server.real_server]]\naddress = \"{}\"\nweight = 1\n\
                 inhibit_on_failure = true\n\
                 [virtual_server.real_server.TCP_CHECK]\nconnect_timeout = 1\nretry = 1\n\
                 delay_before_retry = 1\nconnect_port = {}\n",
                server_address(s),
                check_port.unwrap_or(port)
            );
        }
    }
    text
}

fn write_config(lab: &EcmpLab, n: u8, check_port: Option<u16>) {
    std::fs::write(lab.config_path(n), director_config(lab, n, check_port)).unwrap();
}

/// Every director's address, except director `except`'s (0: none).
fn directors_but(except: u8) -> Vec<Ipv4Addr> {
    (1..=DIRECTORS)
        .filter(|&n| n != except)
        .map(director_address)
        .collect()
}

/// The lab with everything running and the router sending to every director.
fn lab_running() -> EcmpLab {
    let mut lab = EcmpLab::up("lvsbgp", DIRECTORS, SERVERS).unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(
        lab.state.join("sync.key"),
        "a key both directors share, 32+ bytes",
    )
    .unwrap();
    for s in 1..=SERVERS {
        let host = format!("s{s}");
        let root = lab.state.join(&host);
        std::fs::create_dir_all(&root).unwrap();
        std::fs::write(root.join("index.html"), &host).unwrap();
        let root = root.to_str().unwrap().to_owned();
        lab.spawn(
            &host,
            &["python3", "-m", "http.server", "80", "--directory", &root],
        )
        .unwrap();
        lab.spawn(
            &host,
            &["python3", "-c", LINE_SERVER, &host, &PING_PORT.to_string()],
        )
        .unwrap();
    }
    lab.start_router().unwrap();
    for n in 1..=DIRECTORS {
        write_config(&lab, n, None);
        lab.start_director_bird(lvs(), n).unwrap();
        lab.start_lvs(lvs(), n).unwrap();
    }
    if lab
        .wait_for_next_hops(&directors_but(0), Duration::from_secs(30))
        .is_none()
    {
        let logs: Vec<String> = (1..=DIRECTORS)
            .map(|n| format!("d{n}:\n{}", lab.log(n)))
            .collect();
        panic!(
            "the router never sent to every director: {:?}\n{}",
            lab.next_hops(),
            logs.join("\n")
        );
    }
    lab
}

/// Long-lived connections that failed or never reported, and those that changed servers.
fn broken_and_moved(seen: &Seen) -> (usize, usize) {
    (seen.broken(), seen.moved())
}

fn unix(at: SystemTime) -> f64 {
    at.duration_since(UNIX_EPOCH).unwrap().as_secs_f64()
}

/// Checks that no long-lived connection broke or moved, and that every failed new
/// connection started inside `window` (Unix seconds).
fn assert_only_inside(seen: &Seen, what: &str, window: (f64, f64)) {
    assert_eq!(
        broken_and_moved(seen),
        (0, 0),
        "{what}: long-lived connections broken, moved: {}",
        seen.json
    );
    for (start, end) in seen.failed_at() {
        let (start, end) = (unix(start), unix(end));
        assert!(
            start >= window.0 - 0.05 && start <= window.1 + 0.05,
            "{what}: a new connection started at {start:.3} (ended {end:.3}) failed outside \
             the window {window:?}: {}",
            seen.json["new"]
        );
    }
    assert!(
        seen.ok_requests() > 100,
        "{what}: too few new connections to mean anything: {}",
        seen.json["new"]
    );
}

/// Runs the clients (in the namespace `client`) for `duration` while `action` runs; what
/// they saw. Two loops of new connections, so that each director gets its share of them.
fn under_load(client: &str, duration: Duration, action: impl FnOnce()) -> Seen {
    let clients = Clients {
        long_lived: LONG_LIVED,
        stall: Duration::from_secs(8),
        new_connection_loops: 2,
        new_connection_timeout: NEW_CONNECTION_TIMEOUT,
    };
    let load = Load::start_in(client, &VIP.to_string(), PING_PORT, duration, clients)
        .unwrap_or_else(|e| panic!("{e}"));
    // The long-lived connections are made at once; let them settle before acting.
    sleep(Duration::from_secs(2));
    action();
    load.finish().unwrap_or_else(|e| panic!("{e}"))
}

/// Connections director `n` scheduled on the long-lived service.
fn scheduled(lab: &EcmpLab, n: u8) -> u64 {
    let status = lab.status(lvs(), n).unwrap_or_else(|e| panic!("{e}"));
    status["services"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["port"] == PING_PORT)
        .and_then(|s| s["connections"].as_u64())
        .unwrap_or(0)
}

fn announced(lab: &EcmpLab, n: u8) -> bool {
    let status = lab.status(lvs(), n).unwrap_or_else(|e| panic!("{e}"));
    status["bgp"]["vips"][0]["announced"] == true
}

#[test]
#[ignore = "needs root, namespaces, XDP and BIRD; run by `cargo xtask test`"]
fn a_director_that_dies_is_withdrawn_within_the_hold_time_and_no_connection_breaks() {
    let lab = lab_running();
    let client = lab.ns("client");
    let mut numbers = Vec::new();

    // A director dies: its link goes, with its BGP session and its sync.
    let mut window = (0.0, 0.0);
    let mut withdrawn = None;
    let seen = under_load(&client, Duration::from_secs(14), || {
        let spread: Vec<u64> = (1..=DIRECTORS).map(|n| scheduled(&lab, n)).collect();
        assert!(
            spread.iter().all(|&n| n > 0),
            "ECMP spreads the long-lived connections over every director: {spread:?}"
        );
        numbers.push(format!(
            "long-lived connections scheduled by each director: {spread:?}"
        ));
        window.0 = unix_now();
        lab.exec("d2", &["ip", "link", "set", "eth0", "down"])
            .unwrap();
        withdrawn = lab.wait_for_next_hops(&directors_but(2), Duration::from_secs(10));
        window.1 = unix_now();
    });
    let withdrawn = withdrawn.expect("the router withdraws the dead director");
    numbers.push(format!(
        "d2 died: the router withdrew it after {:.2} s (hold time {HOLD_TIME} s); \
         long-lived connections broken, moved: {:?}, longest gap {:.0} ms; new connections \
         {} ok, {} failed",
        withdrawn.as_secs_f64(),
        broken_and_moved(&seen),
        seen.longest_gap_ms(),
        seen.ok_requests(),
        seen.failed_at().len()
    ));
    assert!(
        withdrawn <= Duration::from_millis(u64::from(HOLD_TIME) * 1000 + 300),
        "withdrawn after {withdrawn:?}, beyond the hold time of {HOLD_TIME} s"
    );
    assert_only_inside(&seen, "a director dies", window);

    // It comes back: its BIRD peers again, its lvs announces, the router sends to it again.
    let mut back = None;
    let seen = under_load(&client, Duration::from_secs(14), || {
        let up = unix_now();
        lab.exec("d2", &["ip", "link", "set", "eth0", "up"])
            .unwrap();
        back = lab.wait_for_next_hops(&directors_but(0), Duration::from_secs(20));
        println!("link up at {up:.3}, back at {:.3}", unix_now());
    });
    let back = back.expect("the router sends to d2 again");
    numbers.push(format!(
        "d2 came back: the router sent to it again after {:.2} s; long-lived connections \
         broken, moved: {:?}, longest gap {:.0} ms; new connections {} ok, {} failed",
        back.as_secs_f64(),
        broken_and_moved(&seen),
        seen.longest_gap_ms(),
        seen.ok_requests(),
        seen.failed_at().len()
    ));
    for line in &numbers {
        println!("scale-out: {line}");
    }
    if broken_and_moved(&seen) != (0, 0) {
        for n in 1..=DIRECTORS {
            let log = lab.log(n);
            let interesting: Vec<&str> = log
                .lines()
                .filter(|l| l.contains("sync") || l.contains("neighbour") || l.contains("VIP"))
                .collect();
            println!("d{n}:\n{}", interesting.join("\n"));
        }
    }
    assert_only_inside(&seen, "a director comes back", (0.0, 0.0));
}

#[test]
#[ignore = "needs root, namespaces, XDP and BIRD; run by `cargo xtask test`"]
fn a_director_stopped_for_good_is_withdrawn_at_once_started_again_learns_every_connection_and_a_restart_keeps_its_route()
 {
    let mut lab = lab_running();
    let client = lab.ns("client");
    // Stopped for good (SIGINT): it withdraws before it detaches, so the router takes it
    // out at once; its flow table goes with its pins.
    let mut window = (0.0, 0.0);
    let mut withdrawn = None;
    let seen = under_load(&client, Duration::from_secs(10), || {
        window.0 = unix_now();
        lab.stop_lvs(2, "-INT").unwrap();
        withdrawn = lab.wait_for_next_hops(&directors_but(2), Duration::from_secs(10));
        window.1 = unix_now();
    });
    withdrawn.expect("the router takes the stopped director out");
    let withdrawn = Duration::from_secs_f64(window.1 - window.0);
    println!(
        "scale-out: d2 stopped for good: the router took it out {:.3} s after the signal; \
         long-lived connections broken, moved: {:?}, longest gap {:.0} ms; new connections {} \
         ok, {} failed",
        withdrawn.as_secs_f64(),
        broken_and_moved(&seen),
        seen.longest_gap_ms(),
        seen.ok_requests(),
        seen.failed_at().len()
    );
    assert!(
        withdrawn < Duration::from_secs(1),
        "a stop for good withdraws at once, not after the hold time: {withdrawn:?}"
    );
    assert_only_inside(&seen, "a director stopped for good", window);

    // Started again with an empty flow table: its peers send it every connection before
    // it announces, so the connections the router brings back to it keep their servers.
    let mut back = None;
    let seen = under_load(&client, Duration::from_secs(12), || {
        lab.start_lvs(lvs(), 2).unwrap();
        back = lab.wait_for_next_hops(&directors_but(0), Duration::from_secs(20));
    });
    let back = back.unwrap_or_else(|| panic!("d2 announces again:\n{}", lab.log(2)));
    println!(
        "scale-out: d2 started again: routed to {:.2} s after its start; long-lived connections \
         broken, moved: {:?}, longest gap {:.0} ms; new connections {} ok, {} failed",
        back.as_secs_f64(),
        broken_and_moved(&seen),
        seen.longest_gap_ms(),
        seen.ok_requests(),
        seen.failed_at().len()
    );
    assert_only_inside(&seen, "a director started again", (0.0, 0.0));

    // Restarted (SIGTERM, then a new daemon): the data plane forwards meanwhile and the
    // route stays, so the router never takes the director out.
    let mut next_hops_seen = Vec::new();
    let seen = under_load(&client, Duration::from_secs(8), || {
        lab.stop_lvs(2, "-TERM").unwrap();
        let route = lab
            .exec(
                "d2",
                &["ip", "route", "show", "table", "245", "proto", "245"],
            )
            .unwrap();
        assert!(
            String::from_utf8_lossy(&route.stdout).contains(&format!("blackhole {VIP}")),
            "the route stays while the daemon is away: {route:?}"
        );
        lab.start_lvs(lvs(), 2).unwrap();
        let until = Instant::now() + Duration::from_secs(4);
        while Instant::now() < until {
            next_hops_seen.push(lab.next_hops());
            sleep(Duration::from_millis(20));
        }
    });
    assert!(
        next_hops_seen.iter().all(|hops| *hops == directors_but(0)),
        "the router kept every director through the restart: {next_hops_seen:?}"
    );
    assert!(
        announced(&lab, 2),
        "the new daemon took the route over:\n{}",
        lab.log(2)
    );
    println!(
        "scale-out: d2 restarted: the router kept it throughout; long-lived connections \
         broken, moved: {:?}; new connections {} ok, {} failed",
        broken_and_moved(&seen),
        seen.ok_requests(),
        seen.failed_at().len()
    );
    assert_only_inside(&seen, "a director restarted", (0.0, 0.0));
}

#[test]
#[ignore = "needs root, namespaces, XDP and BIRD; run by `cargo xtask test`"]
fn a_director_that_loses_its_quorum_withdraws_its_vip_and_the_others_serve() {
    let lab = lab_running();
    let client = lab.ns("client");
    assert!((1..=DIRECTORS).all(|n| announced(&lab, n)));

    // d2's checks now probe a port nothing listens on: its real servers go down, its
    // services lose their quorum, it withdraws the VIP; the others serve everything.
    let mut window = (0.0, 0.0);
    let mut withdrawn = None;
    let seen = under_load(&client, Duration::from_secs(12), || {
        write_config(&lab, 2, Some(9));
        window.0 = unix_now();
        let socket = lab.control_socket(2);
        let reload = Command::new(lvs())
            .args(["reload", "--socket", socket.to_str().unwrap()])
            .output()
            .unwrap();
        assert!(reload.status.success(), "{reload:?}");
        withdrawn = lab.wait_for_next_hops(&directors_but(2), Duration::from_secs(10));
        window.1 = unix_now();
    });
    let withdrawn = withdrawn.unwrap_or_else(|| panic!("d2 withdraws its VIP:\n{}", lab.log(2)));
    assert!(!announced(&lab, 2), "d2's status says withdrawn");
    let socket = lab.control_socket(2);
    let listed = Command::new(env!("CARGO_BIN_EXE_lvsadm"))
        .args(["-L", "--daemon", "--socket", socket.to_str().unwrap()])
        .output()
        .unwrap();
    let listed = String::from_utf8_lossy(&listed.stdout);
    assert!(
        listed.contains(&format!(
            "bgp withdraws {VIP} (table=245, hold_time={HOLD_TIME})"
        )),
        "{listed}"
    );
    for n in [1, 3] {
        assert!(
            listed.contains(&format!("sync peer {} (last message", director_address(n))),
            "d2 hears the other masters: {listed}"
        );
    }
    assert!(
        announced(&lab, 1) && announced(&lab, 3),
        "the others keep announcing"
    );
    println!(
        "scale-out: d2 lost its quorum: withdrawn {:.2} s after its reload (checks every 1 s, \
         one retry); long-lived connections broken, moved: {:?}, longest gap {:.0} ms; new \
         connections {} ok, {} failed",
        withdrawn.as_secs_f64(),
        broken_and_moved(&seen),
        seen.longest_gap_ms(),
        seen.ok_requests(),
        seen.failed_at().len()
    );
    assert_only_inside(&seen, "a director loses its quorum", window);

    // Its checks pass again: quorum, announcement, traffic.
    write_config(&lab, 2, None);
    let socket = lab.control_socket(2);
    let started = Instant::now();
    let reload = Command::new(lvs())
        .args(["reload", "--socket", socket.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(reload.status.success(), "{reload:?}");
    let back = lab.wait_for_next_hops(&directors_but(0), Duration::from_secs(15));
    assert!(back.is_some(), "d2 announces again:\n{}", lab.log(2));
    println!(
        "scale-out: d2 has its quorum again: announced {:.2} s after its reload",
        started.elapsed().as_secs_f64()
    );
}
