//! Restarts, crashes and upgrades of the director, in the lab under load: the data plane
//! outlives the daemon (a pinned link and pinned maps), the next daemon adopts it, and no
//! client notices. A stop for good removes everything and the next start is clean.
//!
//! Needs root (namespaces, XDP, bpffs); ignored by a plain `cargo test`, run by
//! `cargo xtask test`.

use std::{
    path::{Path, PathBuf},
    process::Command,
    thread::sleep,
    time::{Duration, Instant},
};

use lvs_test_support::{
    lab::{Lab, VIP},
    load::{line_service_toml, start_line_servers, under_load},
};

fn repo() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

fn lvs() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_lvs"))
}

/// The lab's config with a second service on the line servers' port with the same real
/// servers, plus `extra` director settings.
fn write_config(lab: &Lab, name: &str, extra: &str, real_servers: u8) -> PathBuf {
    let mut text = std::fs::read_to_string(lab.config_path()).unwrap();
    if !extra.is_empty() {
        text = text.replacen("[director]\n", &format!("[director]\n{extra}\n"), 1);
    }
    text += &line_service_toml(real_servers);
    let path = lab.config_path().with_file_name(name);
    std::fs::write(&path, text).unwrap();
    path
}

/// The id of the XDP program attached to the director's interface, if one is.
fn attached_program(lab: &Lab) -> Option<String> {
    let output = Command::new("ip")
        .args(["netns", "exec", &lab.namespace("dir")])
        .args(["ip", "-d", "link", "show", "eth0"])
        .output()
        .expect("ip link");
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    let after = text.split("prog/xdp id ").nth(1)?;
    after.split_whitespace().next().map(str::to_owned)
}

/// Connections the services counted, summed (`lvsadm -Ln --stats`' Conns).
fn connections(status: &serde_json::Value) -> u64 {
    status["services"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| s["connections"].as_u64())
        .sum()
}

fn xdp_attached(lab: &Lab) -> bool {
    attached_program(lab).is_some()
}

fn vip_on_interface(lab: &Lab) -> bool {
    let output = Command::new("ip")
        .args(["netns", "exec", &lab.namespace("dir")])
        .args(["ip", "-4", "addr", "show", "eth0"])
        .output()
        .expect("ip addr");
    String::from_utf8_lossy(&output.stdout).contains(&format!("{VIP}/32"))
}

/// Waits until the director's log (appended to by every start) holds `needle` `times` times.
fn wait_for_log(lab: &Lab, needle: &str, times: usize, timeout: Duration) -> bool {
    let started = Instant::now();
    while started.elapsed() < timeout {
        if lab.log().matches(needle).count() >= times {
            return true;
        }
        sleep(Duration::from_millis(100));
    }
    false
}

#[test]
#[ignore = "needs root: network namespaces, XDP and bpffs"]
fn a_killed_director_is_restarted_without_a_failed_request_and_a_stop_for_good_is_clean() {
    let mut lab = Lab::up(repo(), "lvsrst", 2).unwrap_or_else(|e| panic!("{e}"));
    let _servers = start_line_servers(&lab, 2).unwrap_or_else(|e| panic!("{e}"));
    let config = write_config(&lab, "lvs-restart.toml", "", 2);
    lab.start_director_with(lvs(), &config)
        .unwrap_or_else(|e| panic!("{e}"));
    lab.wait_until_forwarding(lvs(), 4, Duration::from_secs(20))
        .unwrap_or_else(|e| panic!("{e}"));
    let pins = lab.pin_dir().unwrap();
    assert!(
        pins.join("link").exists(),
        "the link is pinned at {}",
        pins.display()
    );

    // kill -9 under load, at least 5 s without a daemon, then a new one adopts the data plane.
    let mut counted_before_kill = 0;
    let seen = under_load(&mut lab, Duration::from_secs(16), |lab| {
        sleep(Duration::from_secs(3));
        let status = lab.status(lvs()).unwrap_or_else(|e| panic!("{e}"));
        counted_before_kill = connections(&status);
        lab.kill_director().unwrap_or_else(|e| panic!("{e}"));
        sleep(Duration::from_secs(6));
        assert!(
            xdp_attached(lab),
            "the program stays attached without a daemon; pins: {:?}; log:\n{}",
            std::fs::read_dir(lab.pin_dir().unwrap()).map(|d| d.count()),
            lab.log()
        );
        let status = Command::new("nsenter")
            .arg(format!("--net=/run/netns/{}", lab.namespace("dir")))
            .arg(lvs())
            .args(["status", "--socket"])
            .arg(lab.control_socket())
            .output()
            .expect("lvs status");
        let said = String::from_utf8_lossy(&status.stdout);
        assert_eq!(status.status.code(), Some(3), "{said}");
        assert!(
            said.contains("the data plane on eth0 keeps forwarding without a daemon, for"),
            "lvs status says the data plane runs without a daemon: {said}"
        );
        lab.start_director_with(lvs(), &config)
            .unwrap_or_else(|e| panic!("{e}"));
        let status = lab
            .wait_until_forwarding(lvs(), 4, Duration::from_secs(10))
            .unwrap_or_else(|e| panic!("{e}"));
        // The rates go on from the previous director's estimates, not from zero.
        let rate = status["services"][0]["rates"]["connections"]
            .as_f64()
            .unwrap_or(0.0);
        assert!(rate > 1.0, "the connection rate carries on: {status}");
    });
    println!(
        "kill -9 test: {} failed requests of {}; longest gap a long-lived connection saw: {:.0} ms",
        seen.failed_requests(),
        seen.json["new"]["ok"].as_u64().unwrap_or(0) + seen.failed_requests(),
        seen.longest_gap_ms()
    );
    println!("director log:\n{}", lab.log());
    seen.assert_undisturbed("kill -9 and restart");
    let status = lab.status(lvs()).unwrap_or_else(|e| panic!("{e}"));
    assert!(
        counted_before_kill > 0,
        "connections were counted before the kill"
    );
    assert!(
        connections(&status) > counted_before_kill,
        "the counters went on across the restart: {} before the kill, {} after",
        counted_before_kill,
        connections(&status)
    );
    assert!(
        lab.log().contains("adopted the running data plane"),
        "the new director adopted:\n{}",
        lab.log()
    );

    // A restart into a program that differs (packet tracing on) replaces it on the same link.
    let before = attached_program(&lab).expect("a program is attached");
    let traced = write_config(&lab, "lvs-restart-traced.toml", "trace_packets = true", 2);
    let seen = under_load(&mut lab, Duration::from_secs(10), |lab| {
        sleep(Duration::from_secs(2));
        lab.stop_director_for_restart()
            .unwrap_or_else(|e| panic!("{e}"));
        sleep(Duration::from_secs(1));
        lab.start_director_with(lvs(), &traced)
            .unwrap_or_else(|e| panic!("{e}"));
        lab.wait_until_forwarding(lvs(), 4, Duration::from_secs(10))
            .unwrap_or_else(|e| panic!("{e}"));
    });
    println!(
        "upgrade test: {} failed requests; longest gap: {:.0} ms",
        seen.failed_requests(),
        seen.longest_gap_ms()
    );
    seen.assert_undisturbed("restart into a program with tracing on");
    let status = lab.status(lvs()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(status["xdp_mode"], "adopted", "{status}");
    let after = attached_program(&lab).expect("a program is attached");
    assert_ne!(before, after, "the traced program replaced the first one");

    // A stop for good takes everything away; the next start is clean.
    lab.stop_director().unwrap_or_else(|e| panic!("{e}"));
    assert!(!xdp_attached(&lab), "the program is detached");
    assert!(!pins.exists(), "the pins are removed: {}", pins.display());
    assert!(!vip_on_interface(&lab), "the VIP is taken off");
    lab.start_director_with(lvs(), &config)
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        wait_for_log(&lab, "starting with fresh maps", 2, Duration::from_secs(10)),
        "the start after a stop for good is clean:\n{}",
        lab.log()
    );
    lab.wait_until_forwarding(lvs(), 4, Duration::from_secs(20))
        .unwrap_or_else(|e| panic!("{e}"));
    lab.stop_director().unwrap_or_else(|e| panic!("{e}"));
}

/// The neighbour entry the director's kernel has for `address`, as `ip neigh` shows it.
fn neighbour_entry(lab: &Lab, address: &str) -> String {
    let output = Command::new("ip")
        .args(["netns", "exec", &lab.namespace("dir")])
        .args(["ip", "neigh", "show", address, "dev", "eth0", "nud", "all"])
        .output()
        .expect("ip neigh");
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

/// A real server's MAC, read in its own namespace.
fn mac_of(lab: &Lab, host: &str) -> String {
    let output = Command::new("ip")
        .args(["netns", "exec", &lab.namespace(host)])
        .args(["cat", "/sys/class/net/eth0/address"])
        .output()
        .expect("reading a MAC");
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

#[test]
#[ignore = "needs root: network namespaces and XDP"]
fn static_neighbour_entries_of_real_servers_are_used_and_left_as_they_are() {
    let mut lab = Lab::up(repo(), "lvsnud", 2).unwrap_or_else(|e| panic!("{e}"));
    for (host, address, nud) in [
        ("rs1", "10.77.0.11", "permanent"),
        ("rs2", "10.77.0.12", "noarp"),
    ] {
        let mac = mac_of(&lab, host);
        let set = Command::new("ip")
            .args(["netns", "exec", &lab.namespace("dir")])
            .args([
                "ip", "neigh", "replace", address, "lladdr", &mac, "dev", "eth0",
            ])
            .args(["nud", nud])
            .status()
            .expect("ip neigh replace");
        assert!(set.success(), "setting a {nud} entry for {address}");
    }
    lab.start_director(lvs()).unwrap_or_else(|e| panic!("{e}"));
    lab.wait_until_forwarding(lvs(), 2, Duration::from_secs(20))
        .unwrap_or_else(|e| panic!("{e}"));
    // Two and more refresh periods (5 s): each would have asked the kernel to resolve them.
    sleep(Duration::from_secs(12));
    let permanent = neighbour_entry(&lab, "10.77.0.11");
    let noarp = neighbour_entry(&lab, "10.77.0.12");
    assert!(
        permanent.ends_with("PERMANENT"),
        "rs1's entry is untouched: {permanent}"
    );
    assert!(
        noarp.ends_with("NOARP"),
        "rs2's entry is untouched: {noarp}"
    );
    let status = lab.status(lvs()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        lvs_test_support::lab::forwarding_count(&status),
        2,
        "{status}"
    );
    let seen = lab.requests(20);
    assert!(seen.failures.is_empty(), "{:?}", seen.failures);
    assert_eq!(
        seen.answers.len(),
        2,
        "both real servers answer: {:?}",
        seen.answers
    );
    lab.stop_director().unwrap_or_else(|e| panic!("{e}"));
}

/// Unmounts a test's bpffs on drop, even after a failed assertion.
struct BpffsMount(PathBuf);

impl BpffsMount {
    fn new(name: &str) -> Self {
        let root = std::env::temp_dir().join(name);
        let _ = Command::new("umount").arg("-l").arg(&root).output();
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(&root).unwrap();
        let mounted = Command::new("mount")
            .args(["-t", "bpf", "bpf"])
            .arg(&root)
            .status()
            .expect("mount");
        assert!(mounted.success(), "mounting bpffs at {}", root.display());
        Self(root)
    }
}

impl Drop for BpffsMount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).output();
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
#[ignore = "needs root: loads BPF maps and mounts bpffs"]
fn pinned_maps_of_another_layout_are_detected_and_replaced_by_fresh_ones() {
    use aya::maps::{Array, Map, MapData};
    use lvs_common::{
        DEFAULT_FLOW_TABLE_SIZE, MAP_LAYOUT_VERSION,
        flow::{FlowEntry, FlowKey, FlowState, Settings},
        keys::FlowMapKey,
        map_names,
    };
    use lvs_userspace::{
        io::bpf::{BpfDataPlane, Inheritance, LoadOptions},
        logic::{conntrack::monotonic_ns, dataplane::DataPlane as _},
    };

    let mount = BpffsMount::new("lvs-layout-test");
    let dir = mount.0.join("lvs/eth0");
    let load = |flow_table_size: u32| {
        BpfDataPlane::load_with(LoadOptions {
            trace_packets: false,
            flow_table_size,
            pin_dir: Some(dir.clone()),
        })
        .expect("loading the XDP object")
    };
    let set_layout = |version: u32| {
        let data = MapData::from_pin(dir.join(map_names::LAYOUT)).expect("the pinned LAYOUT");
        let mut layout: Array<MapData, u32> = Array::try_from(Map::Array(data)).unwrap();
        layout.set(0, version, 0).unwrap();
    };

    let mut first = load(DEFAULT_FLOW_TABLE_SIZE);
    assert_eq!(first.inheritance(), &Inheritance::Fresh);
    assert!(dir.join(map_names::FLOWS).exists(), "the maps are pinned");
    let settings = Settings::with_timeouts(900, 120, 300, 0);
    first.set_settings(settings).unwrap();
    let key = FlowMapKey::from(FlowKey {
        src_addr: [192, 0, 2, 7],
        dst_addr: [10, 0, 0, 100],
        src_port: 40000u16.to_be_bytes(),
        dst_port: 80u16.to_be_bytes(),
        protocol: 6,
        _pad: [0; 3],
    });
    let entry = |real_server_id| FlowEntry {
        last_seen_ns: monotonic_ns(),
        real_server_id,
        generation: 1,
        state: FlowState::Established as u8,
        ..FlowEntry::default()
    };
    first.insert_flows(&[(key, entry(1))]).unwrap();
    drop(first);

    let mut same = load(DEFAULT_FLOW_TABLE_SIZE);
    assert_eq!(
        same.inheritance(),
        &Inheritance::Adopted,
        "same layout: adopted"
    );
    assert!(same.previous().unwrap().is_some());
    // The adopted table keeps its hash seed: the connection is found where it was placed,
    // and written there again rather than beside it.
    same.set_settings(settings).unwrap();
    same.insert_flows(&[(key, entry(2))]).unwrap();
    let found: Vec<u32> = same
        .flows()
        .unwrap()
        .iter()
        .filter(|(k, _)| *k == key)
        .map(|(_, e)| e.real_server_id)
        .collect();
    assert_eq!(found, [2], "one entry for the connection, the new one");
    drop(same);

    set_layout(MAP_LAYOUT_VERSION + 1);
    let other = load(DEFAULT_FLOW_TABLE_SIZE);
    match other.inheritance() {
        Inheritance::StartedClean { reason } => assert!(
            reason.contains(&format!(
                "layout version {}, this lvs uses {MAP_LAYOUT_VERSION}",
                MAP_LAYOUT_VERSION + 1
            )),
            "{reason}"
        ),
        found => panic!("a layout version mismatch went unnoticed: {found:?}"),
    }
    assert!(other.previous().unwrap().is_none(), "nothing adopted");
    drop(other);
    let data = MapData::from_pin(dir.join(map_names::LAYOUT)).unwrap();
    let layout: Array<MapData, u32> = Array::try_from(Map::Array(data)).unwrap();
    assert_eq!(
        layout.get(&0, 0).unwrap(),
        MAP_LAYOUT_VERSION,
        "fresh maps, this layout"
    );

    // A flow table of another size is another layout too.
    let resized = load(DEFAULT_FLOW_TABLE_SIZE / 2);
    assert!(
        matches!(resized.inheritance(), Inheritance::StartedClean { reason } if reason.contains("FLOWS")),
        "{:?}",
        resized.inheritance()
    );

    // A stop for good removes every pin.
    let mut resized = resized;
    resized.detach().unwrap();
    assert!(!dir.exists(), "the pin directory is removed");
    drop(mount);
}

#[test]
#[ignore = "needs root: network namespaces and XDP"]
fn a_real_server_down_before_a_restart_gets_no_connection_until_its_check_passes() {
    let mut lab = Lab::up(repo(), "lvshst", 2).unwrap_or_else(|e| panic!("{e}"));
    // Every real server checked over HTTP each second; down after two failures.
    let mut text = std::fs::read_to_string(lab.config_path()).unwrap();
    text = text.replace("lb_kind = \"DR\"\n", "lb_kind = \"DR\"\ndelay_loop = 1\n");
    text = text.replace(
        "weight = 1\n",
        "weight = 1\n[virtual_server.real_server.HTTP_GET]\nconnect_timeout = 1\nretry = 1\n\
         delay_before_retry = 1\n[[virtual_server.real_server.HTTP_GET.url]]\npath = \"/\"\n\
         status_code = 200\n",
    );
    let config = lab.config_path().with_file_name("lvs-health-restart.toml");
    std::fs::write(&config, text).unwrap();
    lab.start_director_with(lvs(), &config)
        .unwrap_or_else(|e| panic!("{e}"));
    lab.wait_until_forwarding(lvs(), 2, Duration::from_secs(20))
        .unwrap_or_else(|e| panic!("{e}"));

    lab.stop_http("rs2").unwrap_or_else(|e| panic!("{e}"));
    lab.wait_for_status(lvs(), Duration::from_secs(20), "rs2 out", |s| {
        !lvs_test_support::lab::is_forwarding(s, "10.77.0.12")
    })
    .unwrap_or_else(|e| panic!("{e}"));

    // A restart: rs2's check failed before it, so it stays out after it, although a check
    // without a memory starts up (and would take connections until it failed twice more).
    lab.stop_director_for_restart()
        .unwrap_or_else(|e| panic!("{e}"));
    lab.start_director_with(lvs(), &config)
        .unwrap_or_else(|e| panic!("{e}"));
    lab.wait_until_forwarding(lvs(), 1, Duration::from_secs(20))
        .unwrap_or_else(|e| panic!("{e}"));
    let status = lab.status(lvs()).unwrap_or_else(|e| panic!("{e}"));
    assert!(
        !lvs_test_support::lab::is_forwarding(&status, "10.77.0.12"),
        "rs2 is out at once after the restart: {status}"
    );
    let seen = lab.requests(20);
    assert!(
        seen.failures.is_empty(),
        "no connection went to rs2 after the restart: {:?}",
        seen.failures
    );
    assert_eq!(
        seen.answers.keys().collect::<Vec<_>>(),
        ["rs1"],
        "{:?}",
        seen.answers
    );

    // Once its check passes, it is back.
    lab.start_http("rs2").unwrap_or_else(|e| panic!("{e}"));
    lab.wait_for_status(lvs(), Duration::from_secs(20), "rs2 back", |s| {
        lvs_test_support::lab::is_forwarding(s, "10.77.0.12")
    })
    .unwrap_or_else(|e| panic!("{e}"));
    lab.stop_director().unwrap_or_else(|e| panic!("{e}"));
}
