//! Health checking end to end in network namespaces: real HTTP servers that stop and start,
//! HTTP_GET checks from the director, and real clients through the VIP.
//!
//! Needs root (namespaces, XDP); ignored by a plain `cargo test`, run by `cargo xtask test`.

use lvs_test_support::lab;

use std::{path::Path, time::Duration};

use lab::{Lab, SORRY_SERVER, is_forwarding};

/// The checks' timing: a server whose HTTP server stops must be out of the pool within
/// delay_loop * (retry + 1) + connect_timeout.
const DELAY_LOOP: u64 = 1;
const RETRY: u64 = 1;
const CONNECT_TIMEOUT: u64 = 1;

/// What detection may take on top of the checks: the test polls the status every 100 ms, and
/// the director applies the result on its next loop turn. A margin, not a speed claim.
const OBSERVATION_MARGIN: Duration = Duration::from_millis(1500);

/// How long the test waits for anything at most, so a broken build fails instead of hanging.
const PATIENCE: Duration = Duration::from_secs(20);

fn repo() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

fn lvs() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_lvs"))
}

fn lvsadm() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_lvsadm"))
}

fn real_server(i: u8) -> String {
    format!("10.77.0.{}", 10 + i)
}

/// The lab's service with an HTTP_GET check on each real server and the sorry server.
fn config(lab: &Lab) -> String {
    let mut text = format!(
        "[director]\ninterface = \"eth0\"\nxdp_mode = \"generic\"\ncontrol_socket = \"{}\"\n\n\
         [[virtual_server]]\naddress = \"{}\"\nport = 80\nprotocol = \"TCP\"\nlb_algo = \"rr\"\n\
         lb_kind = \"DR\"\ndelay_loop = {DELAY_LOOP}\n\
         sorry_server = {{ address = \"{SORRY_SERVER}\", port = 80 }}\n",
        lab.control_socket().display(),
        lab::VIP
    );
    for i in 1..=3 {
        text += &format!(
            "\n[[virtual_server.real_server]]\naddress = \"{}\"\nweight = 1\n\
             [virtual_server.real_server.HTTP_GET]\nconnect_timeout = {CONNECT_TIMEOUT}\n\
             retry = {RETRY}\ndelay_before_retry = {DELAY_LOOP}\n\
             [[virtual_server.real_server.HTTP_GET.url]]\npath = \"/\"\nstatus_code = 200\n",
            real_server(i)
        );
    }
    text
}

#[test]
#[ignore = "needs root: network namespaces and XDP"]
fn dead_real_servers_leave_the_pool_come_back_and_the_sorry_server_answers_when_all_are_down() {
    let mut lab = Lab::up_with(repo(), "lvsh5", 3, true).unwrap_or_else(|e| panic!("{e}"));
    let config_path = lab.config_path().with_file_name("lvs-health.toml");
    std::fs::write(&config_path, config(&lab)).unwrap();
    lab.start_director_with(lvs(), &config_path)
        .unwrap_or_else(|e| panic!("{e}"));
    lab.wait_until_forwarding(lvs(), 3, PATIENCE)
        .unwrap_or_else(|e| panic!("{e}"));
    let (status, _) = lab
        .wait_for_status(lvs(), PATIENCE, "every real server checked", |s| {
            s["services"][0]["real_servers"]
                .as_array()
                .is_some_and(|servers| {
                    servers
                        .iter()
                        .take(3)
                        .all(|rs| rs["health"]["last_result"]["passed"] == true)
                })
        })
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        !is_forwarding(&status, SORRY_SERVER),
        "the sorry server stands by"
    );

    // One real server's HTTP server stops: it leaves the pool within the bound.
    lab.stop_http("rs2").unwrap_or_else(|e| panic!("{e}"));
    let bound = Duration::from_secs(DELAY_LOOP * (RETRY + 1) + CONNECT_TIMEOUT);
    let (status, took) = lab
        .wait_for_status(lvs(), PATIENCE, "rs2 out of the pool", |s| {
            !is_forwarding(s, &real_server(2))
        })
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        took <= bound + OBSERVATION_MARGIN,
        "rs2 left the pool after {took:?}, the bound is {bound:?} (+{OBSERVATION_MARGIN:?} to observe it)"
    );
    let rs2 = &status["services"][0]["real_servers"][1];
    assert_eq!(rs2["health"]["state"], "down", "{rs2}");
    assert_eq!(rs2["health"]["admission"], "removed", "{rs2}");
    assert_eq!(
        rs2["health"]["last_result"]["detail"], "connection refused",
        "{rs2}"
    );
    assert!(rs2["health"]["last_result"]["at_unix_ms"].as_u64().unwrap() > 0);
    // As ipvsadm shows IPVS under keepalived: the removed server is not listed.
    let listing = lab.lvsadm_ok(lvsadm(), &["-Ln"]);
    assert!(
        !listing.contains(&format!("-> {}:80", real_server(2)))
            && listing.contains(&format!("-> {}:80", real_server(1))),
        "{listing}"
    );
    let log = lab.log();
    assert!(
        log.contains("real server down") && log.contains("connection refused"),
        "the transition is logged with its reason:\n{log}"
    );

    let seen = lab.requests(40);
    assert!(
        seen.failures.is_empty(),
        "requests failed with rs2 out of the pool: {:?}",
        seen.failures
    );
    assert!(
        !seen.answers.contains_key("rs2") && seen.answers.len() == 2,
        "{:?}\n{}",
        seen.answers,
        lab.status_table(lvs())
    );

    // It starts again: it is back in the pool and gets traffic.
    lab.start_http("rs2").unwrap_or_else(|e| panic!("{e}"));
    lab.wait_for_status(lvs(), PATIENCE, "rs2 back in the pool", |s| {
        is_forwarding(s, &real_server(2))
    })
    .unwrap_or_else(|e| panic!("{e}"));
    let mut answered_by_rs2 = false;
    for _ in 0..6 {
        let seen = lab.requests(10);
        assert!(seen.failures.is_empty(), "{:?}", seen.failures);
        if seen.answers.contains_key("rs2") {
            answered_by_rs2 = true;
            break;
        }
    }
    assert!(
        answered_by_rs2,
        "rs2 got no request in 60 after coming back"
    );

    // Every real server stops: the sorry server answers.
    for server in ["rs1", "rs2", "rs3"] {
        lab.stop_http(server).unwrap_or_else(|e| panic!("{e}"));
    }
    let (status, _) = lab
        .wait_for_status(lvs(), PATIENCE, "the sorry server in", |s| {
            is_forwarding(s, SORRY_SERVER)
        })
        .unwrap_or_else(|e| panic!("{e}"));
    assert!((1..=3).all(|i| !is_forwarding(&status, &real_server(i))));
    let seen = lab.requests(20);
    assert!(seen.failures.is_empty(), "{:?}", seen.failures);
    assert_eq!(seen.answers.get("sorry"), Some(&20), "{:?}", seen.answers);
    let table = lab.status_table(lvs());
    assert!(
        table.contains("sorry server, active") && table.contains("down, removed"),
        "{table}"
    );
    let listing = lab.lvsadm_ok(lvsadm(), &["-Ln"]);
    let listed: Vec<&str> = listing.lines().filter(|l| l.starts_with("  -> ")).collect();
    assert!(
        listed.len() == 2 && listed[1].starts_with(&format!("  -> {SORRY_SERVER}:80")),
        "only the sorry server is listed:\n{listing}"
    );

    // One comes back: the sorry server steps aside.
    lab.start_http("rs3").unwrap_or_else(|e| panic!("{e}"));
    lab.wait_for_status(lvs(), PATIENCE, "rs3 back, sorry server out", |s| {
        is_forwarding(s, &real_server(3)) && !is_forwarding(s, SORRY_SERVER)
    })
    .unwrap_or_else(|e| panic!("{e}"));
    let seen = lab.requests(10);
    assert_eq!(seen.answers.get("rs3"), Some(&10), "{:?}", seen.answers);

    lab.stop_director().unwrap_or_else(|e| panic!("{e}"));
}
