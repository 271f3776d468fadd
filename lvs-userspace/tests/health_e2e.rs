//! Health checking end to end in network namespaces: real HTTP servers that stop and start,
//! HTTP_GET checks from the director, and real clients through the VIP. Meanwhile a headless
//! Chromium in the director's namespace keeps the status page open and the test reads what it
//! shows, and scrapes `/metrics` against the status document.
//!
//! `LVS_STATUS_PAGE_SCREENSHOT=path.png` saves a picture of the page (the README's is one).
//!
//! Needs root (namespaces, XDP); ignored by a plain `cargo test`, run by `cargo xtask test`.

use lvs_test_support::{
    browser::Browser,
    lab::{self, Shape},
};

use std::{collections::BTreeMap, path::Path, time::Duration};

use lab::{Lab, SORRY_SERVER, is_forwarding, real_server_of};

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

/// The status listener, on the director namespace's loopback.
const STATUS_LISTEN: &str = "127.0.0.1:9100";

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
        "[director]\ninterface = \"eth0\"\nxdp_mode = \"native\"\ncontrol_socket = \"{}\"\n\
         metrics_listen = \"{STATUS_LISTEN}\"\n\n\
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
    let shape = Shape {
        real_servers: 3,
        sorry_server: true,
        ..Shape::default()
    };
    let mut lab = Lab::up_with(repo(), "lvsh5", shape).unwrap_or_else(|e| panic!("{e}"));
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

    // The status page, open in a real browser from here on: it shows the service and every
    // real server up, and /metrics agrees with the status document.
    let mut page = Browser::launch(&lab.namespace("dir"), &lab.state_dir().join("chromium"))
        .unwrap_or_else(|e| panic!("{e}"));
    page.open(&format!("http://{STATUS_LISTEN}/"))
        .unwrap_or_else(|e| panic!("{e}"));
    for i in 1..=3 {
        wait_until_shown(&mut page, &real_server(i), "up");
    }
    let title = page.evaluate("document.getElementById('title').textContent");
    assert_eq!(
        title.unwrap_or_else(|e| panic!("{e}")),
        "lvs director on eth0 (native XDP)"
    );
    let service = format!("TCP {}:80", lab::VIP);
    let heading = page.evaluate(&format!(
        "document.querySelector('section[data-service=\"{service}\"] h2').textContent"
    ));
    assert!(
        heading
            .unwrap_or_else(|e| panic!("{e}"))
            .as_str()
            .is_some_and(|h| h.starts_with(&service) && h.contains("rr")),
        "the service is shown with its scheduler"
    );
    assert!(shown(&mut page, SORRY_SERVER, "health").starts_with("sorry server, standby"));
    page.evaluate("window.lvsTestMark = 'not reloaded'")
        .unwrap_or_else(|e| panic!("{e}"));
    let published = page
        .evaluate("fetch('/status.json').then(r => r.json())")
        .unwrap_or_else(|e| panic!("{e}"));
    let from_socket = lab.status(lvs()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        without_moving_parts(&published),
        without_moving_parts(&from_socket),
        "/status.json is lvs status --json's document"
    );
    assert_metrics_match(&scrape(&mut page), &published);

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
    // The page shows it by itself, with the check's result.
    wait_until_shown(&mut page, &real_server(2), "down, removed");
    let check = shown(&mut page, &real_server(2), "check");
    assert!(check.starts_with("failed: connection refused"), "{check}");
    assert_eq!(shown(&mut page, &real_server(2), "weight"), "–");
    assert_same_page(&mut page);
    let samples = scrape(&mut page);
    let published = page
        .evaluate("fetch('/status.json').then(r => r.json())")
        .unwrap_or_else(|e| panic!("{e}"));
    assert_metrics_match(&samples, &published);
    assert!(!by_server(&samples, "node_ipvs_backend_weight").contains_key(&real_server(2)));
    assert_eq!(
        by_server(&samples, "lvs_real_server_health_state").get(&real_server(2)),
        Some(&1.0),
        "rs2's state is down"
    );
    assert_eq!(
        by_server(&samples, "lvs_real_server_last_check_passed").get(&real_server(2)),
        Some(&0.0)
    );
    let connections_before = shown(&mut page, &real_server(1), "connections");

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

    // The numbers move on the page without a reload.
    let expression = format!(
        "document.querySelector('tr[data-rs=\"{}:80\"] [data-field=\"connections\"]')\
         .textContent !== '{connections_before}'",
        real_server(1)
    );
    page.wait_for(&expression, PATIENCE)
        .unwrap_or_else(|e| panic!("rs1's connections never moved on the page: {e}"));
    assert_same_page(&mut page);

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
    wait_until_shown(&mut page, &real_server(2), "up");
    assert_same_page(&mut page);
    status_page_screenshot(&mut page, "");
    // On a phone the page fits the screen's width: wide tables scroll inside their box.
    page.viewport(390, 844, true)
        .unwrap_or_else(|e| panic!("{e}"));
    let fits = page
        .wait_for(
            "document.documentElement.scrollWidth <= window.innerWidth",
            Duration::from_secs(2),
        )
        .is_ok();
    assert!(fits, "the page is wider than a phone's screen");
    status_page_screenshot(&mut page, "-phone");
    drop(page);

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

/// What the status page shows in one field of a real server's row ("" when the row is not
/// there).
fn shown(page: &mut Browser, address: &str, field: &str) -> String {
    let expression = format!(
        "document.querySelector('tr[data-rs=\"{address}:80\"] [data-field=\"{field}\"]')\
         ?.textContent ?? ''"
    );
    match page.evaluate(&expression) {
        Ok(value) => value.as_str().unwrap_or_default().to_owned(),
        Err(error) => panic!("{error}"),
    }
}

/// Waits until the page shows `health` for the real server at `address`, by itself.
fn wait_until_shown(page: &mut Browser, address: &str, health: &str) {
    let expression = format!(
        "document.querySelector('tr[data-rs=\"{address}:80\"] [data-field=\"health\"]')\
         ?.textContent === '{health}'"
    );
    if let Err(error) = page.wait_for(&expression, PATIENCE) {
        let text = page.evaluate("document.body.innerText").unwrap_or_default();
        panic!("the page never showed {address} {health}: {error}\n{text}");
    }
}

/// The page has not been reloaded since the mark was set: it refreshed itself.
fn assert_same_page(page: &mut Browser) {
    assert_eq!(
        page.evaluate("window.lvsTestMark")
            .unwrap_or_else(|e| panic!("{e}")),
        "not reloaded",
        "the page was reloaded"
    );
}

/// `/metrics` as the page's origin serves it, parsed as Prometheus does.
fn scrape(page: &mut Browser) -> Vec<prometheus_parse::Sample> {
    let text = page
        .evaluate("fetch('/metrics').then(r => r.text())")
        .unwrap_or_else(|e| panic!("{e}"));
    let text = text.as_str().expect("text");
    prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_owned())))
        .expect("the exposition parses")
        .samples
}

/// One metric's values by remote address (real server).
fn by_server(samples: &[prometheus_parse::Sample], metric: &str) -> BTreeMap<String, f64> {
    samples
        .iter()
        .filter(|s| s.metric == metric && s.labels.get("state").is_none_or(|s| s == "down"))
        .filter_map(|s| {
            let value = match s.value {
                prometheus_parse::Value::Gauge(v)
                | prometheus_parse::Value::Counter(v)
                | prometheus_parse::Value::Untyped(v) => v,
                _ => return None,
            };
            Some((s.labels.get("remote_address")?.to_owned(), value))
        })
        .collect()
}

/// The scrape agrees with the status document: node_exporter's backends are the real
/// servers in effect with their weight and connection counts.
fn assert_metrics_match(samples: &[prometheus_parse::Sample], status: &serde_json::Value) {
    let servers = status["services"][0]["real_servers"].as_array().unwrap();
    let in_effect = |field: &str| -> BTreeMap<String, f64> {
        servers
            .iter()
            .filter(|rs| rs["in_effect"] == true)
            .map(|rs| {
                (
                    rs["address"].as_str().unwrap().to_owned(),
                    rs[field].as_f64().unwrap(),
                )
            })
            .collect()
    };
    assert_eq!(
        by_server(samples, "node_ipvs_backend_weight"),
        in_effect("weight")
    );
    for sample in samples
        .iter()
        .filter(|s| s.metric.starts_with("node_ipvs_backend"))
    {
        assert_eq!(sample.labels.get("local_address"), Some(lab::VIP));
        assert_eq!(sample.labels.get("proto"), Some("TCP"));
        assert_eq!(sample.labels.get("local_mark"), Some(""));
    }
}

/// Saves the page as a PNG where `LVS_STATUS_PAGE_SCREENSHOT` says (with `suffix` before
/// the extension), after some traffic so the graphs have something to show.
fn status_page_screenshot(page: &mut Browser, suffix: &str) {
    let Some(path) = std::env::var_os("LVS_STATUS_PAGE_SCREENSHOT") else {
        return;
    };
    let path = Path::new(&path);
    let path = path.with_file_name(format!(
        "{}{suffix}.png",
        path.file_stem().unwrap_or_default().to_string_lossy()
    ));
    let png = page.screenshot(true).unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(&path, png).unwrap_or_else(|e| panic!("writing {path:?}: {e}"));
}

/// A status document without what moves between two reads (counters, rates, connection
/// counts, the last check's time), to compare two reads of the same director.
fn without_moving_parts(status: &serde_json::Value) -> serde_json::Value {
    let mut status = status.clone();
    status["counters"] = serde_json::Value::Null;
    status["flow_table"]["entries"] = serde_json::Value::Null;
    for service in status["services"].as_array_mut().into_iter().flatten() {
        for field in ["connections", "packets", "bytes", "rates", "recent_rates"] {
            service[field] = serde_json::Value::Null;
        }
        for rs in service["real_servers"].as_array_mut().into_iter().flatten() {
            for field in [
                "connections",
                "packets",
                "bytes",
                "rates",
                "active_connections",
                "inactive_connections",
            ] {
                rs[field] = serde_json::Value::Null;
            }
            rs["health"]["last_result"] = serde_json::Value::Null;
        }
    }
    status
}

/// The lab's two real servers behind a UDP service on port 80, each checked by UDP_CHECK
/// (the lab's UDP responder answers "?" with the server's name), and behind a TCP service
/// checked by PING_CHECK.
fn datagram_config(lab: &Lab) -> String {
    let mut text = format!(
        "[director]\ninterface = \"eth0\"\nxdp_mode = \"native\"\ncontrol_socket = \"{}\"\n",
        lab.control_socket().display()
    );
    for (protocol, checker) in [
        (
            "UDP",
            "UDP_CHECK]\npayload = \"3f\"\nrequire_reply = \"72 73\"\nmin_reply_length = 3\n",
        ),
        ("TCP", "PING_CHECK]\n"),
    ] {
        text += &format!(
            "\n[[virtual_server]]\naddress = \"{}\"\nport = 80\nprotocol = \"{protocol}\"\n\
             lb_algo = \"rr\"\nlb_kind = \"DR\"\ndelay_loop = {DELAY_LOOP}\n",
            lab::VIP
        );
        for i in 1..=2 {
            text += &format!(
                "\n[[virtual_server.real_server]]\naddress = \"{}\"\nweight = 1\n\
                 [virtual_server.real_server.{checker}connect_timeout = {CONNECT_TIMEOUT}\n\
                 retry = {RETRY}\ndelay_before_retry = {DELAY_LOOP}\n",
                real_server(i)
            );
        }
    }
    text
}

fn udp_forwarding(status: &serde_json::Value, address: &str) -> bool {
    real_server_of(status, "UDP", address)["forwarding"] == true
}

#[test]
#[ignore = "needs root: network namespaces and XDP"]
fn a_udp_real_server_whose_responder_stops_leaves_the_pool_and_comes_back() {
    let shape = Shape {
        real_servers: 2,
        ..Shape::default()
    };
    let mut lab = Lab::up_with(repo(), "lvsu5", shape).unwrap_or_else(|e| panic!("{e}"));
    let config_path = lab.config_path().with_file_name("lvs-udp.toml");
    std::fs::write(&config_path, datagram_config(&lab)).unwrap();
    lab.start_director_with(lvs(), &config_path)
        .unwrap_or_else(|e| panic!("{e}"));
    lab.wait_until_forwarding(lvs(), 4, PATIENCE)
        .unwrap_or_else(|e| panic!("{e}"));
    let (status, _) = lab
        .wait_for_status(lvs(), PATIENCE, "every real server checked", |s| {
            ["UDP", "TCP"].iter().all(|protocol| {
                (1..=2).all(|i| {
                    real_server_of(s, protocol, &real_server(i))["health"]["last_result"]["passed"]
                        == true
                })
            })
        })
        .unwrap_or_else(|e| panic!("{e}"));
    let pinged = real_server_of(&status, "TCP", &real_server(1));
    assert_eq!(
        pinged["health"]["last_result"]["detail"], "echo reply",
        "{pinged}"
    );
    assert_eq!(
        pinged["health"]["checker"],
        format!("PING_CHECK {}", real_server(1))
    );
    let checked = real_server_of(&status, "UDP", &real_server(2));
    assert_eq!(
        checked["health"]["last_result"]["detail"], "reply of 4 bytes",
        "{checked}"
    );
    let seen = lab.udp_requests(20);
    assert!(seen.failures.is_empty(), "{:?}", seen.failures);
    assert_eq!(
        seen.answers.len(),
        2,
        "both real servers answer: {:?}",
        seen.answers
    );

    // rs2's UDP responder stops: the kernel answers port unreachable, and rs2 leaves the UDP
    // service within the bound, while its TCP service (pinged) keeps it.
    lab.stop_udp("rs2").unwrap_or_else(|e| panic!("{e}"));
    let bound = Duration::from_secs(DELAY_LOOP * (RETRY + 1) + CONNECT_TIMEOUT);
    let (status, took) = lab
        .wait_for_status(lvs(), PATIENCE, "rs2 out of the UDP service", |s| {
            !udp_forwarding(s, &real_server(2))
        })
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        took <= bound + OBSERVATION_MARGIN,
        "rs2 left the pool after {took:?}, the bound is {bound:?} (+{OBSERVATION_MARGIN:?} to observe it)"
    );
    let rs2 = real_server_of(&status, "UDP", &real_server(2));
    assert_eq!(rs2["health"]["state"], "down", "{rs2}");
    assert_eq!(rs2["health"]["admission"], "removed", "{rs2}");
    assert_eq!(
        rs2["health"]["last_result"]["detail"], "connection refused",
        "{rs2}"
    );
    assert_eq!(
        real_server_of(&status, "TCP", &real_server(2))["forwarding"],
        true,
        "the pinged TCP service keeps rs2"
    );
    let table = lab.status_table(lvs());
    assert!(
        table.contains("down, removed: connection refused"),
        "{table}"
    );
    let seen = lab.udp_requests(20);
    assert!(seen.failures.is_empty(), "{:?}", seen.failures);
    assert_eq!(
        seen.answers.get("rs1"),
        Some(&20),
        "only rs1 answers: {:?}",
        seen.answers
    );

    // It starts again: back in the pool, and answering.
    lab.start_udp("rs2").unwrap_or_else(|e| panic!("{e}"));
    lab.wait_for_status(lvs(), PATIENCE, "rs2 back in the UDP service", |s| {
        udp_forwarding(s, &real_server(2))
    })
    .unwrap_or_else(|e| panic!("{e}"));
    let seen = lab.udp_requests(20);
    assert!(seen.failures.is_empty(), "{:?}", seen.failures);
    assert!(seen.answers.contains_key("rs2"), "{:?}", seen.answers);

    lab.stop_director().unwrap_or_else(|e| panic!("{e}"));
}
