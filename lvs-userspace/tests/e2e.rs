//! End to end in network namespaces: a client, the director and real servers on one bridge,
//! real HTTP requests to the VIP, answered by the real servers directly (LVS-DR).
//!
//! Needs root (namespaces, XDP); ignored by a plain `cargo test`, run by `cargo xtask test`.

#[path = "support/lab.rs"]
#[allow(
    dead_code,
    reason = "shared with xtask, which uses the parts this test does not"
)]
mod lab;

use std::{path::Path, time::Duration};

use lab::{Lab, counter, forwarding_count};

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
