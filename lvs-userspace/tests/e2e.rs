//! End to end in network namespaces: a client, the director and real servers on one bridge,
//! real HTTP requests to the VIP, answered by the real servers directly (LVS-DR).
//!
//! Needs root (namespaces, XDP); ignored by a plain `cargo test`, run by `cargo xtask test`.

use lvs_test_support::lab;

use std::{path::Path, time::Duration};

use lab::{Lab, counter, forwarding_count, is_forwarding};
use lvs_test_support::browser::Browser;

/// Where the deny test's director serves its status page, inside its namespace.
const STATUS_LISTEN: &str = "127.0.0.1:9100";

const REQUESTS: usize = 60;

fn repo() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

fn lvs() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_lvs"))
}

#[test]
#[ignore = "needs root: network namespaces and XDP"]
fn requests_through_the_vip_are_balanced_and_answered_directly() {
    let mut lab = Lab::up(repo(), "lvse2e", 3).unwrap_or_else(|e| panic!("{e}"));
    // Two real servers that must never get traffic: one on the segment that nobody answers
    // ARP for, and one off the director's subnets.
    let config = std::fs::read_to_string(lab.config_path()).unwrap()
        + "\n[[virtual_server.real_server]]\naddress = \"10.77.0.50\"\n\
           \n[[virtual_server.real_server]]\naddress = \"10.20.0.5\"\n";
    let config_path = lab.config_path().with_file_name("lvs-e2e.toml");
    std::fs::write(&config_path, config).unwrap();
    lab.start_director_with(lvs(), &config_path)
        .unwrap_or_else(|e| panic!("{e}"));
    let before = lab
        .wait_until_forwarding(lvs(), 3, Duration::from_secs(15))
        .unwrap_or_else(|e| panic!("{e}"));
    let kernel_segments_before = lab.director_tcp_in_segments().unwrap();

    let seen = lab.requests(REQUESTS);

    let after = lab.status(lvs()).unwrap_or_else(|e| panic!("{e}"));
    let kernel_segments_after = lab.director_tcp_in_segments().unwrap();
    assert!(
        seen.failures.is_empty(),
        "failed requests: {:?}\nlog:\n{}",
        seen.failures,
        lab.log()
    );
    let answered_by: Vec<_> = seen.answers.keys().collect();
    assert!(
        seen.answers.len() >= 2 && seen.answers.keys().all(|body| body.starts_with("rs")),
        "requests must be answered by at least two real servers, got {:?}",
        seen.answers
    );
    assert_eq!(
        seen.answers.values().sum::<usize>(),
        REQUESTS,
        "{answered_by:?}"
    );

    // Direct routing: every client packet of every request went out again through XDP_TX
    // (at least SYN, ACK and the request itself), and the director's own TCP stack saw none.
    let forwarded = counter(&after, "tx_forwarded") - counter(&before, "tx_forwarded");
    assert!(
        forwarded >= 3 * REQUESTS as u64,
        "only {forwarded} frames were forwarded for {REQUESTS} requests"
    );
    assert_eq!(
        kernel_segments_after, kernel_segments_before,
        "the director's kernel received TCP segments: traffic did not bypass it"
    );
    // The real servers counted what the director forwarded to them.
    let per_server: u64 = after["services"][0]["real_servers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|rs| rs["packets"].as_u64().unwrap())
        .sum();
    assert_eq!(
        per_server,
        after["services"][0]["packets"].as_u64().unwrap()
    );
    assert_eq!(forwarding_count(&after), 3);
    let silent = &after["services"][0]["real_servers"][3];
    assert_eq!(silent["address"], "10.77.0.50");
    assert_eq!(silent["neighbour"], "unresolved", "{silent}");
    assert_eq!(
        (silent["forwarding"].as_bool(), silent["packets"].as_u64()),
        (Some(false), Some(0))
    );
    let far = &after["services"][0]["real_servers"][4];
    assert_eq!(far["address"], "10.20.0.5");
    assert_eq!(far["neighbour"], "off_link", "{far}");
    assert_eq!(
        (far["forwarding"].as_bool(), far["packets"].as_u64()),
        (Some(false), Some(0))
    );
    assert!(
        lab.log().contains("10.20.0.5"),
        "the off-link server is reported:\n{}",
        lab.log()
    );

    lab.stop_director().unwrap_or_else(|e| panic!("{e}"));
    // After a clean stop the VIP is gone from the director and traffic no longer flows.
    let vip_left = std::process::Command::new("ip")
        .args([
            "netns",
            "exec",
            &lab.namespace("dir"),
            "ip",
            "-4",
            "addr",
            "show",
            "dev",
            "eth0",
        ])
        .output()
        .unwrap();
    let addresses = String::from_utf8_lossy(&vip_left.stdout);
    assert!(
        !addresses.contains(lab::VIP),
        "the VIP was left on the director:\n{addresses}"
    );
    let xdp = std::process::Command::new("ip")
        .args([
            "netns",
            "exec",
            &lab.namespace("dir"),
            "ip",
            "link",
            "show",
            "dev",
            "eth0",
        ])
        .output()
        .unwrap();
    let link = String::from_utf8_lossy(&xdp.stdout);
    assert!(
        !link.contains("xdp"),
        "the XDP program was left attached:\n{link}"
    );
}

/// The real servers' share of requests in the status JSON, by address.
fn connections_by_server(status: &serde_json::Value) -> std::collections::BTreeMap<String, u64> {
    status["services"][0]["real_servers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|rs| {
            (
                rs["address"].as_str().unwrap().to_owned(),
                rs["connections"].as_u64().unwrap(),
            )
        })
        .collect()
}

/// Writes the lab's config with the given (address, weight) real servers.
fn write_config(lab: &Lab, base: &str, servers: &[(&str, u32)]) {
    let mut config = base.to_owned();
    for (address, weight) in servers {
        config.push_str(&format!(
            "\n[[virtual_server.real_server]]\naddress = \"{address}\"\nweight = {weight}\n"
        ));
    }
    std::fs::write(lab.config_path(), config).unwrap();
}

/// Rewrites the config and makes the running director reload it.
fn reconfigure(lab: &Lab, base: &str, servers: &[(&str, u32)]) {
    write_config(lab, base, servers);
    lab.reload().unwrap_or_else(|e| panic!("{e}"));
}

/// Waits until the status shows exactly the real servers at `addresses` forwarding. A count
/// alone is not enough: a reload is applied after `lab.reload` returns, and the old
/// configuration can have as many forwarding servers as the new one.
fn wait_for_forwarding(lab: &Lab, addresses: &[&str]) -> serde_json::Value {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let status = lab.status(lvs()).unwrap_or_else(|e| panic!("{e}"));
        if forwarding_count(&status) == addresses.len()
            && addresses.iter().all(|a| is_forwarding(&status, a))
        {
            return status;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "never forwarding to exactly {addresses:?}:\n{}",
            lab.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
#[ignore = "needs root: network namespaces and XDP"]
fn long_lived_connections_survive_server_changes_and_new_ones_follow_the_weights() {
    const BIG: usize = 1 << 20;
    let mut lab = Lab::up(repo(), "lvse2f", 3).unwrap_or_else(|e| panic!("{e}"));
    for rs in 1..=3 {
        let root = lab.state_dir().join(format!("www/rs{rs}"));
        std::fs::write(root.join("big"), vec![b'x'; BIG]).unwrap();
    }
    // The generated config lists all three servers; keep its head and choose the servers.
    let generated = std::fs::read_to_string(lab.config_path()).unwrap();
    let base = generated
        .split("\n[[virtual_server.real_server]]")
        .next()
        .unwrap()
        .to_owned();
    write_config(&lab, &base, &[("10.77.0.11", 1), ("10.77.0.12", 1)]);
    lab.start_director(lvs()).unwrap_or_else(|e| panic!("{e}"));
    lab.wait_until_forwarding(lvs(), 2, Duration::from_secs(15))
        .unwrap_or_else(|e| panic!("{e}"));

    // Four requests held open: each keeps its connection established until finished.
    let downloads: Vec<_> = (0..4)
        .map(|_| lab.held_request("big").unwrap_or_else(|e| panic!("{e}")))
        .collect();
    std::thread::sleep(Duration::from_millis(500));

    // Add rs3 with weight 3 and quiesce rs2: rs2's downloads carry on, new connections avoid
    // it, and rs3 takes about three times what rs1 takes.
    reconfigure(
        &lab,
        &base,
        &[("10.77.0.11", 1), ("10.77.0.12", 0), ("10.77.0.13", 3)],
    );
    let before = wait_for_forwarding(&lab, &["10.77.0.11", "10.77.0.13"]);
    let seen = lab.requests(40);
    assert!(seen.failures.is_empty(), "{:?}", seen.failures);
    let after = lab.status(lvs()).unwrap_or_else(|e| panic!("{e}"));
    let (b, a) = (
        connections_by_server(&before),
        connections_by_server(&after),
    );
    let new = |address: &str| a[address] - b[address];
    assert_eq!(
        new("10.77.0.12"),
        0,
        "the quiesced server got new connections"
    );
    assert!(
        new("10.77.0.13") >= 2 * new("10.77.0.11"),
        "weights 3:1 not followed: {:?}",
        seen.answers
    );

    // Remove rs3 (which holds no long connection): the downloads still carry on, and new
    // connections now all go to rs1.
    reconfigure(&lab, &base, &[("10.77.0.11", 1), ("10.77.0.12", 0)]);
    wait_for_forwarding(&lab, &["10.77.0.11"]);
    let seen = lab.requests(10);
    assert_eq!(
        seen.answers.get("rs1").copied(),
        Some(10),
        "{:?} {:?}",
        seen.answers,
        seen.failures
    );

    for download in downloads {
        let answer = download
            .finish()
            .unwrap_or_else(|e| panic!("a long-lived connection broke: {e}\n{}", lab.log()));
        assert_eq!(answer, (200, BIG));
    }
    lab.stop_director().unwrap_or_else(|e| panic!("{e}"));
}

fn lvsadm(lab: &Lab, args: &[&str]) -> std::process::Output {
    lab.lvsadm(Path::new(env!("CARGO_BIN_EXE_lvsadm")), args)
}

fn lvsadm_ok(lab: &Lab, args: &[&str]) -> String {
    lab.lvsadm_ok(Path::new(env!("CARGO_BIN_EXE_lvsadm")), args)
}

#[test]
#[ignore = "needs root: network namespaces and XDP"]
fn lvsadm_changes_take_effect_at_once_and_list_live_connections() {
    let mut lab = Lab::up(repo(), "lvse2g", 3).unwrap_or_else(|e| panic!("{e}"));
    let generated = std::fs::read_to_string(lab.config_path()).unwrap();
    let base = generated
        .split("\n[[virtual_server.real_server]]")
        .next()
        .unwrap()
        .to_owned();
    write_config(&lab, &base, &[("10.77.0.11", 1)]);
    lab.start_director(lvs()).unwrap_or_else(|e| panic!("{e}"));
    lab.wait_until_forwarding(lvs(), 1, Duration::from_secs(15))
        .unwrap_or_else(|e| panic!("{e}"));
    let vip = format!("{}:80", lab::VIP);

    // A request held open keeps one connection established while the table changes.
    std::fs::write(lab.state_dir().join("www/rs1/big"), vec![b'x'; 2 << 20]).unwrap();
    let download = lab.held_request("big").unwrap_or_else(|e| panic!("{e}"));

    // -Lnc lists the download's connection, established, to rs1.
    let connections = lvsadm_ok(&lab, &["-Lnc"]);
    assert!(
        connections
            .lines()
            .any(|l| l.contains("ESTABLISHED") && l.contains("10.77.0.100:80     10.77.0.11:80")),
        "{connections}"
    );

    // Add two servers with lvsadm; they take new connections at once.
    lvsadm_ok(
        &lab,
        &["-a", "-t", &vip, "-r", "10.77.0.12", "-g", "-w", "1"],
    );
    lvsadm_ok(
        &lab,
        &["-a", "-t", &vip, "-r", "10.77.0.13", "-g", "-w", "1"],
    );
    let refused = lvsadm(&lab, &["-a", "-t", &vip, "-r", "10.77.0.13"]);
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("Destination already exists"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
    wait_for_forwarding(&lab, &["10.77.0.11", "10.77.0.12", "10.77.0.13"]);
    let seen = lab.requests(30);
    assert!(seen.failures.is_empty(), "{:?}", seen.failures);
    assert_eq!(
        seen.answers.len(),
        3,
        "all three servers answer: {:?}",
        seen.answers
    );

    // The listing shows the servers.
    let listing = lvsadm_ok(&lab, &["-Ln"]);
    assert!(listing.contains("TCP  10.77.0.100:80 wlc"), "{listing}");
    assert!(listing.contains("  -> 10.77.0.13:80"), "{listing}");

    // -S, -C, -R: the same table comes back.
    let saved = lvsadm_ok(&lab, &["-Sn"]);
    assert!(
        saved.contains(&format!("-a -t {vip} -r 10.77.0.13:80 -g -w 1")),
        "{saved}"
    );
    let restore_file = lab.state_dir().join("rules");
    std::fs::write(&restore_file, &saved).unwrap();
    lvsadm_ok(&lab, &["-d", "-t", &vip, "-r", "10.77.0.13"]);
    wait_for_forwarding(&lab, &["10.77.0.11", "10.77.0.12"]);
    let restore = std::process::Command::new(env!("CARGO_BIN_EXE_lvsadm"))
        .arg("--socket")
        .arg(lab.control_socket())
        .arg("-R")
        .stdin(std::fs::File::open(&restore_file).unwrap())
        .output()
        .unwrap();
    // The restore adds a service that exists: refused whole, nothing changed.
    assert!(!restore.status.success());
    assert_eq!(
        lvsadm_ok(&lab, &["-Sn"]).lines().count(),
        saved.lines().count() - 1
    );

    // `lvsadm --reload` applies the edited file: what lvsadm changed gives way to it, as
    // with keepalived, and the held connection to rs1 carries on.
    write_config(&lab, &base, &[("10.77.0.11", 1), ("10.77.0.12", 2)]);
    let reloaded = lvsadm_ok(&lab, &["--reload"]);
    assert!(reloaded.starts_with("reloaded "), "{reloaded}");
    let listing = lvsadm_ok(&lab, &["-Ln"]);
    assert!(
        listing
            .lines()
            .any(|l| l.starts_with("  -> 10.77.0.12:80") && l.contains("Route   2 ")),
        "{listing}"
    );
    assert!(!listing.contains("10.77.0.13"), "{listing}");

    // A bad file is refused whole, with its line, and nothing changes.
    std::fs::write(
        lab.config_path(),
        format!("{base}\n[[virtual_server.real_server]]\naddress = \"10.77.0.11\"\nweight = -1\n"),
    )
    .unwrap();
    let refused = lvsadm(&lab, &["--reload"]);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success());
    assert!(
        stderr.contains(&lab.config_path().display().to_string()) && stderr.contains("weight"),
        "{stderr}"
    );
    assert_eq!(lvsadm_ok(&lab, &["-Ln"]), listing);

    let answer = download
        .finish()
        .unwrap_or_else(|e| panic!("the held connection broke: {e}"));
    assert_eq!(answer, (200, 2 << 20));
    lab.stop_director().unwrap_or_else(|e| panic!("{e}"));
}

/// `lvs deny` as an operator uses it: the client is denied and its requests go unanswered
/// while everything else works; the drops are counted per prefix; the runtime prefix stays
/// across a reload and a restart (an IPv6 prefix beside it too), the file's prefix cannot be
/// lifted at runtime, and lifting the runtime one lets the client in again.
#[test]
#[ignore = "needs root: network namespaces and XDP"]
fn a_denied_client_is_dropped_until_lifted_and_the_block_outlives_reloads_and_restarts() {
    let mut lab = Lab::up(repo(), "lvsdeny", 2).unwrap_or_else(|e| panic!("{e}"));
    let config = std::fs::read_to_string(lab.config_path()).unwrap().replace(
        "[director]\n",
        &format!("[director]\nmetrics_listen = \"{STATUS_LISTEN}\"\n"),
    ) + "\n[deny]\nprefixes = [\"198.51.100.0/24\"]\n";
    std::fs::write(lab.config_path(), config).unwrap();
    lab.start_director(lvs()).unwrap_or_else(|e| panic!("{e}"));
    lab.wait_until_forwarding(lvs(), 2, Duration::from_secs(15))
        .unwrap_or_else(|e| panic!("{e}"));
    let socket = lab.control_socket();
    let deny = |args: &[&str]| lvs_deny(&socket, args);
    let listed = || {
        let (ok, out, err) = deny(&["list", "--json"]);
        assert!(ok, "{err}");
        serde_json::from_str::<serde_json::Value>(&out).unwrap()
    };
    assert!(lab.requests(3).failures.is_empty(), "before the block");

    let (ok, _, err) = deny(&["add", lab::CLIENT]);
    assert!(ok, "{err}");
    let seen = lab.requests(2);
    assert_eq!(
        seen.failures.len(),
        2,
        "a denied client is not answered: {seen:?}"
    );
    let status = lab.status(lvs()).unwrap_or_else(|e| panic!("{e}"));
    let dropped = counter(&status, "drop_denied");
    assert!(
        dropped >= 2,
        "every SYN and retransmission is dropped: {dropped}"
    );
    let list = listed();
    assert_eq!(list[0]["prefix"], "10.77.0.2/32");
    assert_eq!(list[0]["origin"], "runtime");
    assert_eq!(list[0]["packets"].as_u64(), Some(dropped));
    assert_eq!(list[1]["prefix"], "198.51.100.0/24");
    assert_eq!(list[1]["origin"], "config");
    // An IPv6 prefix beside them, kept in its own trie.
    let (ok, _, err) = deny(&["add", "2001:db8:dead::/48"]);
    assert!(ok, "{err}");

    // The status page shows the list with what it dropped.
    let mut page = Browser::launch(&lab.namespace("dir"), &lab.state_dir().join("chromium"))
        .unwrap_or_else(|e| panic!("{e}"));
    page.open(&format!("http://{STATUS_LISTEN}/"))
        .unwrap_or_else(|e| panic!("{e}"));
    let shown = page
        .wait_for(
            "document.querySelector('tr[data-deny=\"10.77.0.2/32\"] [data-field=packets]')?.textContent",
            Duration::from_secs(10),
        )
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        shown.as_str().unwrap().parse::<u64>().unwrap() >= 2,
        "{shown}"
    );
    drop(page);

    // Refused changes say why and change nothing.
    let (ok, _, err) = deny(&["del", "198.51.100.0/24"]);
    assert!(!ok);
    assert!(err.contains("comes from the config file"), "{err}");
    let (ok, _, err) = deny(&["add", "192.0.2.0/24", lab::CLIENT]);
    assert!(!ok);
    assert!(
        err.contains("10.77.0.2/32 is already in the deny list"),
        "{err}"
    );
    assert_eq!(listed().as_array().unwrap().len(), 3);

    // A reload and a restart keep the runtime block, and its count.
    lab.reload().unwrap();
    std::thread::sleep(Duration::from_millis(500));
    lab.stop_director_for_restart().unwrap();
    lab.start_director(lvs()).unwrap_or_else(|e| panic!("{e}"));
    lab.wait_until_forwarding(lvs(), 2, Duration::from_secs(15))
        .unwrap_or_else(|e| panic!("{e}"));
    let list = listed();
    assert_eq!(list[0]["prefix"], "10.77.0.2/32", "{list}");
    assert!(list[0]["packets"].as_u64().unwrap() >= dropped, "{list}");
    assert_eq!(list[2]["prefix"], "2001:db8:dead::/48", "{list}");
    assert_eq!(list[2]["origin"], "runtime", "adopted from DENY6: {list}");
    assert_eq!(
        lab.requests(1).failures.len(),
        1,
        "still denied after the restart"
    );

    let (ok, _, err) = deny(&["del", lab::CLIENT]);
    assert!(ok, "{err}");
    let seen = lab.requests(5);
    assert!(seen.failures.is_empty(), "lifted: {seen:?}");
    let (ok, table, _) = deny(&["list"]);
    assert!(ok);
    assert!(table.contains("198.51.100.0/24    config"), "{table}");
    assert!(table.contains("2001:db8:dead::/48 runtime"), "{table}");
}

/// `lvs deny ARGS` against the daemon on `socket`: whether it succeeded, stdout, stderr.
fn lvs_deny(socket: &Path, args: &[&str]) -> (bool, String, String) {
    let output = std::process::Command::new(lvs())
        .arg("deny")
        .args(args)
        .arg("--socket")
        .arg(socket)
        .output()
        .unwrap();
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}
