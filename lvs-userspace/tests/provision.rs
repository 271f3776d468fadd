//! Provisioning and the doctor, in network namespaces this test creates (prefix `lvsp6`):
//! real-server up/down/up with the binary and with the script (IPv4 and IPv6 VIPs), the
//! director's host settings and pinned maps, a misconfigured real server found by
//! `lvs doctor`, a real server's MAC change followed while traffic runs; and for IPv6, on a
//! namespace pair: a VIP on `lo` not advertised on the facing interface (one on it is, and
//! is judged a failure), and a neighbour resolved through netlink and its change followed.
//!
//! Needs root (namespaces, sysctls, XDP); ignored by a plain `cargo test`, run by
//! `cargo xtask test` or `cargo test --test provision -- --ignored --test-threads=1`.

use lvs_test_support::lab;

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    process::{Command, Output},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread::sleep,
    time::{Duration, Instant},
};

use lab::{Lab, VIP, counter};
use lvs_common::map_names;
use lvs_userspace::io::{bpf::BpfDataPlane, provision::bpffs::Pins};

fn repo() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

fn lvs() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_lvs"))
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// Runs a command, panicking with its output unless it exits 0.
fn must(command: &mut Command) -> Output {
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("{command:?}: {e}"));
    assert!(
        output.status.success(),
        "{command:?} failed:\n{}",
        text(&output)
    );
    output
}

/// A network namespace with `lo` up and a veth pair (eth0 with 10.9.0.2/24, eth1) inside it;
/// deleted on drop, even after a panic.
struct Namespace {
    name: String,
}

impl Namespace {
    fn new(name: &str) -> Self {
        let _ = Command::new("ip").args(["netns", "del", name]).output();
        must(Command::new("ip").args(["netns", "add", name]));
        let namespace = Self {
            name: name.to_owned(),
        };
        for args in [
            &["link", "set", "lo", "up"][..],
            &[
                "link", "add", "eth0", "type", "veth", "peer", "name", "eth1",
            ],
            &["addr", "add", "10.9.0.2/24", "dev", "eth0"],
            &["link", "set", "eth0", "up"],
        ] {
            must(Command::new("ip").args(["-n", name]).args(args));
        }
        namespace
    }

    fn exec(&self) -> Command {
        let mut command = Command::new("ip");
        command.args(["netns", "exec", &self.name]);
        command
    }

    fn sysctl(&self, path: &str) -> String {
        let output = must(self.exec().arg("cat").arg(format!("/proc/sys/{path}")));
        String::from_utf8_lossy(&output.stdout).trim().to_owned()
    }

    fn set_sysctl(&self, path: &str, value: &str) {
        must(
            self.exec()
                .args(["sh", "-c", &format!("echo {value} > /proc/sys/{path}")]),
        );
    }

    /// The addresses on lo, as `ip -o addr` prints them ("inet 10.9.9.9/32").
    fn lo_addresses(&self) -> Vec<String> {
        let output =
            must(Command::new("ip").args(["-n", &self.name, "-o", "addr", "show", "dev", "lo"]));
        let mut addresses: Vec<String> = String::from_utf8_lossy(&output.stdout)
            .lines()
            .filter_map(|line| {
                let mut words = line.split_whitespace().skip(2);
                Some(format!("{} {}", words.next()?, words.next()?))
            })
            .collect();
        addresses.sort();
        addresses
    }
}

impl Drop for Namespace {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
    }
}

/// A state directory for one test, removed on drop.
struct StateDir(PathBuf);

impl StateDir {
    fn new(tag: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("lvsp6-state-{tag}"));
        let _ = std::fs::remove_dir_all(&dir);
        Self(dir)
    }

    /// Files left in it (state of any namespace).
    fn files(&self) -> Vec<String> {
        std::fs::read_dir(&self.0)
            .map(|entries| {
                entries
                    .flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default()
    }
}

impl Drop for StateDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The two ways to provision a real server, with the same semantics.
#[derive(Clone, Copy, Debug)]
enum Provisioner {
    Binary,
    Script,
}

impl Provisioner {
    /// `up`/`down`/`status` (the script calls them start/stop/status) for the VIPs on eth0.
    fn run(self, namespace: &Namespace, state: &StateDir, action: &str, vips: &[&str]) -> Output {
        let mut command = namespace.exec();
        match self {
            Provisioner::Binary => {
                command
                    .arg(lvs())
                    .args(["realserver", action])
                    .args(vips)
                    .args(["--dev", "eth0", "--state-dir"])
                    .arg(&state.0);
            }
            Provisioner::Script => {
                let action = match action {
                    "up" => "start",
                    "down" => "stop",
                    other => other,
                };
                command
                    .arg("env")
                    .arg(format!("LVS_STATE_DIR={}", state.0.display()))
                    .arg("bash")
                    .arg(repo().join("scripts/realserver.sh"))
                    .arg(action)
                    .args(vips)
                    .args(["--dev", "eth0"]);
            }
        }
        command.output().expect("running the provisioner")
    }
}

/// Every setting a real server's provisioning may touch, plus one it must not (eth1, which
/// `--dev eth0` excludes).
const WATCHED: [(&str, &str); 9] = [
    ("net/ipv4/conf/all/arp_ignore", "1"),
    ("net/ipv4/conf/all/arp_announce", "2"),
    ("net/ipv4/conf/all/arp_notify", "1"),
    ("net/ipv4/conf/eth0/arp_ignore", "1"),
    ("net/ipv4/conf/eth0/arp_announce", "2"),
    ("net/ipv4/conf/eth0/arp_notify", "1"),
    ("net/ipv6/conf/all/ndisc_notify", "1"),
    ("net/ipv6/conf/eth0/ndisc_notify", "1"),
    ("net/ipv4/conf/eth1/arp_ignore", "3"),
];

#[derive(Debug, PartialEq, Eq)]
struct Snapshot {
    sysctls: BTreeMap<String, String>,
    lo: Vec<String>,
}

fn snapshot(namespace: &Namespace) -> Snapshot {
    Snapshot {
        sysctls: WATCHED
            .iter()
            .map(|(path, _)| ((*path).to_owned(), namespace.sysctl(path)))
            .collect(),
        lo: namespace.lo_addresses(),
    }
}

fn up_down_up_restores_exactly(provisioner: Provisioner, tag: &str) {
    let namespace = Namespace::new(&format!("lvsp6-{tag}"));
    let state = StateDir::new(tag);
    // Distinct starting values, so that restoring to a default would be caught. eth1 holds
    // 3 so that it would show if it were touched.
    for (path, value) in [
        ("net/ipv4/conf/all/arp_ignore", "0"),
        ("net/ipv4/conf/all/arp_announce", "1"),
        ("net/ipv4/conf/eth0/arp_ignore", "2"),
        ("net/ipv4/conf/eth1/arp_ignore", "3"),
    ] {
        namespace.set_sysctl(path, value);
    }
    // A VIP somebody else put on lo: up finds it, down must leave it.
    must(Command::new("ip").args([
        "-n",
        &namespace.name,
        "addr",
        "add",
        "10.9.9.9/32",
        "dev",
        "lo",
    ]));
    let vips = ["10.77.0.100", "10.9.9.9", "2001:db8::100"];
    let before = snapshot(&namespace);

    let up = provisioner.run(&namespace, &state, "up", &vips);
    assert!(up.status.success(), "{provisioner:?} up:\n{}", text(&up));
    let after_up = snapshot(&namespace);
    for (path, want) in &WATCHED[..8] {
        assert_eq!(after_up.sysctls[*path], *want, "{path} after up");
    }
    assert_eq!(after_up.sysctls[WATCHED[8].0], "3", "eth1 is not touched");
    for vip in [
        "inet 10.77.0.100/32",
        "inet 10.9.9.9/32",
        "inet6 2001:db8::100/128",
    ] {
        assert!(
            after_up.lo.iter().any(|a| a == vip),
            "{vip} on lo: {:?}",
            after_up.lo
        );
    }

    // The IPv6 VIP goes on without duplicate address detection, by either provisioner.
    let lo6 =
        must(Command::new("ip").args(["-n", &namespace.name, "-6", "addr", "show", "dev", "lo"]));
    let lo6 = String::from_utf8_lossy(&lo6.stdout);
    assert!(
        lo6.lines()
            .any(|l| l.contains("2001:db8::100/128") && l.contains("nodad")),
        "{provisioner:?}: the IPv6 VIP with nodad:\n{lo6}"
    );

    // Idempotent: a second up changes nothing and says so.
    let again = provisioner.run(&namespace, &state, "up", &vips);
    assert!(again.status.success(), "{}", text(&again));
    assert_eq!(snapshot(&namespace), after_up);
    let again_text = text(&again);
    assert!(
        !again_text.contains("set ") && !again_text.contains("added "),
        "a repeated up made changes:\n{again_text}"
    );
    let status = provisioner.run(&namespace, &state, "status", &vips);
    assert!(
        status.status.success(),
        "status after up:\n{}",
        text(&status)
    );

    let down = provisioner.run(&namespace, &state, "down", &vips);
    assert!(down.status.success(), "{}", text(&down));
    assert_eq!(
        snapshot(&namespace),
        before,
        "down restores exactly:\n{}",
        text(&down)
    );
    assert!(
        text(&down).contains("10.9.9.9 was not added by"),
        "{}",
        text(&down)
    );
    assert!(
        state.files().iter().all(|f| !f.starts_with("netns-")),
        "{:?}",
        state.files()
    );
    let status = provisioner.run(&namespace, &state, "status", &vips);
    assert_eq!(
        status.status.code(),
        Some(1),
        "status after down:\n{}",
        text(&status)
    );

    let down_again = provisioner.run(&namespace, &state, "down", &vips);
    assert!(down_again.status.success(), "{}", text(&down_again));
    assert!(
        text(&down_again).contains("nothing to undo"),
        "{}",
        text(&down_again)
    );

    let up = provisioner.run(&namespace, &state, "up", &vips);
    assert!(up.status.success(), "{}", text(&up));
    assert_eq!(
        snapshot(&namespace),
        after_up,
        "a second cycle provisions the same"
    );
    let down = provisioner.run(&namespace, &state, "down", &[]);
    assert!(down.status.success(), "down without VIPs:\n{}", text(&down));
    assert_eq!(snapshot(&namespace), before, "{}", text(&down));
}

#[test]
#[ignore = "needs root: network namespaces and sysctls"]
fn binary_realserver_up_down_up_is_idempotent_and_restores_exactly() {
    up_down_up_restores_exactly(Provisioner::Binary, "bin");
}

#[test]
#[ignore = "needs root: network namespaces and sysctls"]
fn script_realserver_start_stop_start_is_idempotent_and_restores_exactly() {
    up_down_up_restores_exactly(Provisioner::Script, "sh");
}

#[test]
#[ignore = "needs root: network namespaces and sysctls"]
fn binary_and_script_refuse_to_undo_each_other() {
    let namespace = Namespace::new("lvsp6-mix");
    let state = StateDir::new("mix");
    let up = Provisioner::Binary.run(&namespace, &state, "up", &["10.77.0.100"]);
    assert!(up.status.success(), "{}", text(&up));
    let script = Provisioner::Script.run(&namespace, &state, "down", &["10.77.0.100"]);
    assert!(!script.status.success(), "{}", text(&script));
    assert!(
        text(&script).contains("lvs realserver"),
        "{}",
        text(&script)
    );
    let look = Provisioner::Script.run(&namespace, &state, "status", &["10.77.0.100"]);
    assert!(look.status.success(), "status is allowed:\n{}", text(&look));
    let down = Provisioner::Binary.run(&namespace, &state, "down", &[]);
    assert!(down.status.success(), "{}", text(&down));

    let start = Provisioner::Script.run(&namespace, &state, "up", &["10.77.0.100"]);
    assert!(start.status.success(), "{}", text(&start));
    let binary = Provisioner::Binary.run(&namespace, &state, "down", &[]);
    assert!(!binary.status.success(), "{}", text(&binary));
    assert!(
        text(&binary).contains("scripts/realserver.sh"),
        "{}",
        text(&binary)
    );
    let look = Provisioner::Binary.run(&namespace, &state, "status", &["10.77.0.100"]);
    assert!(look.status.success(), "status is allowed:\n{}", text(&look));
    let stop = Provisioner::Script.run(&namespace, &state, "down", &[]);
    assert!(stop.status.success(), "{}", text(&stop));
}

/// Unmounts a test's bpffs mount on drop if it is still mounted (after a failed assertion).
struct MountGuard(PathBuf);

impl Drop for MountGuard {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).output();
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
#[ignore = "needs root: loads BPF maps and mounts bpffs"]
fn maps_are_pinned_for_bpftool_and_removed_with_the_mount() {
    let root = std::env::temp_dir().join("lvsp6-bpffs");
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(&root).unwrap();
    let guard = MountGuard(root.clone());
    let dataplane = BpfDataPlane::load(false).expect("loading the XDP object");
    let pins = Pins::create(&root, "eth0", &dataplane.maps()).expect("pinning");
    let services = root.join("lvs/eth0").join(map_names::SERVICES);
    let shown = must(
        Command::new("bpftool")
            .args(["map", "show", "pinned"])
            .arg(&services),
    );
    assert!(
        text(&shown).contains(map_names::SERVICES),
        "{}",
        text(&shown)
    );
    let problems = pins.remove();
    assert!(problems.is_empty(), "{problems:?}");
    assert!(!services.exists());
    assert!(
        !lvs_userspace::io::provision::bpffs::is_bpffs(&root).unwrap(),
        "the bpffs mounted for the pins is unmounted again"
    );
    drop(guard);
}

/// The status document's entry for a real server.
fn real_server<'a>(status: &'a serde_json::Value, address: &str) -> &'a serde_json::Value {
    status["services"][0]["real_servers"]
        .as_array()
        .and_then(|list| list.iter().find(|rs| rs["address"] == address))
        .unwrap_or_else(|| panic!("{address} not in status {status}"))
}

/// Runs `lvs doctor --json` in the director namespace; returns its exit code and report.
fn doctor(lab: &Lab) -> (Option<i32>, serde_json::Value) {
    let output = Command::new("ip")
        .args(["netns", "exec", &lab.namespace("dir")])
        .arg(lvs())
        .args(["doctor", "--json", "--config"])
        .arg(lab.config_path())
        .output()
        .expect("running lvs doctor");
    let report = serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|e| panic!("doctor --json: {e}\n{}", text(&output)));
    (output.status.code(), report)
}

fn finding<'a>(report: &'a serde_json::Value, subject: &str, check: &str) -> &'a serde_json::Value {
    report["findings"]
        .as_array()
        .and_then(|all| {
            all.iter()
                .find(|f| f["subject"] == subject && f["check"] == check)
        })
        .unwrap_or_else(|| panic!("no {check} finding for {subject} in {report:#}"))
}

#[test]
#[ignore = "needs root: network namespaces and XDP"]
fn doctor_finds_a_real_server_answering_arp_for_the_vip_and_traffic_flows_after_the_fix() {
    let mut lab = Lab::up(repo(), "lvsp6d", 2).unwrap_or_else(|e| panic!("{e}"));
    let rs1 = lab.namespace("rs1");
    // The classic mistake: arp_ignore left at 0 on the first real server.
    for path in ["all", "eth0"] {
        must(
            Command::new("ip")
                .args(["netns", "exec", &rs1, "sysctl", "-qw"])
                .arg(format!("net.ipv4.conf.{path}.arp_ignore=0")),
        );
    }
    lab.start_director(lvs()).unwrap_or_else(|e| panic!("{e}"));
    lab.wait_until_forwarding(lvs(), 2, Duration::from_secs(15))
        .unwrap_or_else(|e| panic!("{e}"));

    let (code, report) = doctor(&lab);
    assert_eq!(code, Some(1), "{report:#}");
    assert_eq!(report["ok"], false);
    let wrong = finding(&report, "real server 10.77.0.11", "arp_vip");
    assert_eq!(wrong["status"], "fail", "{wrong}");
    assert!(
        wrong["fix"]
            .as_str()
            .unwrap()
            .contains("lvs realserver up 10.77.0.100"),
        "{wrong}"
    );
    for subject in ["real server 10.77.0.11", "real server 10.77.0.12"] {
        for check in ["on_link", "arp_own_address", "health_check"] {
            assert_eq!(
                finding(&report, subject, check)["status"],
                "ok",
                "{subject} {check}"
            );
        }
    }
    assert_eq!(
        finding(&report, "real server 10.77.0.12", "arp_vip")["status"],
        "ok"
    );

    // The fix, with the binary; its state goes with the lab's.
    let state = lab.config_path().with_file_name("rs1-binary-state");
    must(
        Command::new("ip")
            .args(["netns", "exec", &rs1])
            .arg(lvs())
            .args(["realserver", "up", VIP, "--dev", "eth0", "--state-dir"])
            .arg(&state),
    );
    let (code, report) = doctor(&lab);
    assert_eq!(code, Some(0), "{report:#}");
    assert_eq!(
        finding(&report, "real server 10.77.0.11", "arp_vip")["status"],
        "ok"
    );

    let before = lab.status(lvs()).unwrap_or_else(|e| panic!("{e}"));
    let segments_before = lab.director_tcp_in_segments().unwrap();
    let seen = lab.requests(30);
    let after = lab.status(lvs()).unwrap_or_else(|e| panic!("{e}"));
    assert!(
        seen.failures.is_empty(),
        "{:?}\n{}",
        seen.failures,
        lab.log()
    );
    assert_eq!(
        seen.answers.len(),
        2,
        "both real servers answer: {:?}",
        seen.answers
    );
    let forwarded = counter(&after, "tx_forwarded") - counter(&before, "tx_forwarded");
    assert!(
        forwarded >= 90,
        "only {forwarded} frames went through the director"
    );
    assert_eq!(
        lab.director_tcp_in_segments().unwrap(),
        segments_before,
        "replies bypassed the director"
    );
}

/// What one request of the traffic loop saw.
struct Answer {
    after_change: bool,
    result: Result<String, String>,
}

#[test]
#[ignore = "needs root: network namespaces and XDP"]
fn a_real_servers_mac_change_is_followed_while_traffic_runs() {
    const NEW_MAC: &str = "02:00:00:6c:00:11";
    const REQUESTS_AFTER: usize = 30;
    const MAX_REQUESTS: usize = 1000;
    let mut lab = Lab::up(repo(), "lvsp6m", 2).unwrap_or_else(|e| panic!("{e}"));
    let director = lab.namespace("dir");
    let director_sysctl = |path: &str| {
        let output = must(
            Command::new("ip")
                .args(["netns", "exec", &director, "cat"])
                .arg(format!("/proc/sys/net/ipv4/conf/{path}")),
        );
        String::from_utf8_lossy(&output.stdout).trim().to_owned()
    };
    // Settings that would keep the director from following: it must fix them while it runs
    // and put them back when it stops.
    for (setting, value) in [
        ("all.drop_gratuitous_arp", "1"),
        ("eth0.drop_gratuitous_arp", "1"),
        ("eth0.arp_ignore", "2"),
    ] {
        must(
            Command::new("ip")
                .args(["netns", "exec", &director, "sysctl", "-qw"])
                .arg(format!("net.ipv4.conf.{setting}={value}")),
        );
    }
    lab.start_director(lvs()).unwrap_or_else(|e| panic!("{e}"));
    lab.wait_until_forwarding(lvs(), 2, Duration::from_secs(15))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(director_sysctl("all/drop_gratuitous_arp"), "0");
    assert_eq!(director_sysctl("eth0/drop_gratuitous_arp"), "0");
    assert_eq!(director_sysctl("eth0/arp_ignore"), "1");

    // The maps are pinned where bpftool finds them: in the host's bpffs (the director runs in
    // the lab's network namespace only, so that its pins outlive it), under that namespace's
    // directory.
    let pins = lab.pin_dir().unwrap_or_else(|e| panic!("{e}"));
    let shown = must(
        Command::new("bpftool")
            .args(["map", "show", "pinned"])
            .arg(pins.join(map_names::REAL_SERVERS)),
    );
    assert!(
        text(&shown).contains(map_names::REAL_SERVERS),
        "{}",
        text(&shown)
    );

    // Traffic from the client while the MAC changes: it goes on until REQUESTS_AFTER requests
    // were sent after the change, bounded by MAX_REQUESTS in all, by 30 s, and by curl's
    // timeout each.
    // (A fixed count could all be sent before the change on a fast machine.)
    let changed = Arc::new(AtomicBool::new(false));
    let client = lab.namespace("client");
    let traffic = {
        let changed = Arc::clone(&changed);
        std::thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(30);
            let mut answers = Vec::new();
            while answers.len() < MAX_REQUESTS
                && Instant::now() < deadline
                && answers.iter().filter(|a: &&Answer| a.after_change).count() < REQUESTS_AFTER
            {
                let after_change = changed.load(Ordering::SeqCst);
                let output = Command::new("ip")
                    .args(["netns", "exec", &client])
                    .args(["curl", "--silent", "--show-error", "--max-time", "3"])
                    .arg(format!("http://{VIP}/"))
                    .output();
                let result = match output {
                    Ok(o) if o.status.success() => {
                        Ok(String::from_utf8_lossy(&o.stdout).trim().to_owned())
                    }
                    Ok(o) => Err(String::from_utf8_lossy(&o.stderr).trim().to_owned()),
                    Err(e) => Err(e.to_string()),
                };
                answers.push(Answer {
                    after_change,
                    result,
                });
            }
            answers
        })
    };
    sleep(Duration::from_millis(500));
    must(Command::new("ip").args([
        "-n",
        &lab.namespace("rs1"),
        "link",
        "set",
        "eth0",
        "address",
        NEW_MAC,
    ]));
    let started = Instant::now();
    changed.store(true, Ordering::SeqCst);
    let mut followed = None;
    while started.elapsed() < Duration::from_secs(5) {
        let status = lab.status(lvs()).unwrap_or_else(|e| panic!("{e}"));
        if real_server(&status, "10.77.0.11")["mac"] == NEW_MAC {
            followed = Some(started.elapsed());
            break;
        }
        sleep(Duration::from_millis(20));
    }
    let answers = traffic.join().expect("the traffic thread");
    let followed = followed.unwrap_or_else(|| {
        panic!(
            "the director still had the old MAC 5 s after the change:\n{}",
            lab.log()
        )
    });
    eprintln!("the director followed the MAC change after {followed:?}");

    let failures: Vec<&String> = answers
        .iter()
        .filter_map(|a| a.result.as_ref().err())
        .collect();
    assert!(
        failures.is_empty(),
        "failed requests: {failures:?}\n{}",
        lab.log()
    );
    let rs1_after = answers
        .iter()
        .filter(|a| a.after_change && a.result.as_deref() == Ok("rs1"))
        .count();
    assert!(
        rs1_after > 0,
        "rs1 answered no request after its MAC changed"
    );
    let status = lab.status(lvs()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(real_server(&status, "10.77.0.11")["forwarding"], true);

    // At stop, the settings are put back.
    lab.stop_director().unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(director_sysctl("all/drop_gratuitous_arp"), "1");
    assert_eq!(director_sysctl("eth0/drop_gratuitous_arp"), "1");
    assert_eq!(director_sysctl("eth0/arp_ignore"), "2");
    assert!(lab.log().contains("maps pinned"), "{}", lab.log());
}

/// Two network namespaces joined by a veth pair, each end named eth0: a director side and a
/// real server side on 2001:db8:77::/64, with known MACs. Duplicate address detection is off
/// on both ends (and the addresses are added with nodad), so every address works at once;
/// both namespaces are deleted on drop, even after a panic.
struct Ipv6Pair {
    director: String,
    real_server: String,
}

const DIRECTOR_MAC: &str = "02:00:00:77:00:01";
const RS_MAC: [u8; 6] = [0x02, 0, 0, 0x77, 0, 0x11];
const DIRECTOR6: &str = "2001:db8:77::1";
const RS6: &str = "2001:db8:77::11";
const VIP6: &str = "2001:db8:77::100";

impl Ipv6Pair {
    fn new(tag: &str) -> Self {
        let pair = Self {
            director: format!("lvsp6-{tag}-d"),
            real_server: format!("lvsp6-{tag}-r"),
        };
        for name in [&pair.director, &pair.real_server] {
            let _ = Command::new("ip").args(["netns", "del", name]).output();
            must(Command::new("ip").args(["netns", "add", name]));
        }
        let (d, r) = (format!("{tag}-d0"), format!("{tag}-r0"));
        must(Command::new("ip").args(["link", "add", &d, "type", "veth", "peer", "name", &r]));
        for (device, namespace, mac, address) in [
            (&d, &pair.director, DIRECTOR_MAC, DIRECTOR6),
            (&r, &pair.real_server, "02:00:00:77:00:11", RS6),
        ] {
            must(Command::new("ip").args(["link", "set", device, "netns", namespace]));
            let ip = |args: &[&str]| must(Command::new("ip").args(["-n", namespace]).args(args));
            ip(&["link", "set", device, "name", "eth0"]);
            ip(&["link", "set", "eth0", "address", mac]);
            must(Command::new("ip").args([
                "netns",
                "exec",
                namespace,
                "sysctl",
                "-qw",
                "net.ipv6.conf.eth0.accept_dad=0",
            ]));
            ip(&[
                "addr",
                "add",
                &format!("{address}/64"),
                "dev",
                "eth0",
                "nodad",
            ]);
            ip(&["link", "set", "lo", "up"]);
            ip(&["link", "set", "eth0", "up"]);
        }
        pair
    }

    fn ip(&self, namespace: &str, args: &[&str]) -> Output {
        must(Command::new("ip").args(["-n", namespace]).args(args))
    }
}

impl Drop for Ipv6Pair {
    fn drop(&mut self) {
        for name in [&self.director, &self.real_server] {
            let _ = Command::new("ip").args(["netns", "del", name]).output();
        }
    }
}

/// Runs `f` with a current-thread runtime on a thread inside `namespace`, so the netlink and
/// packet sockets it opens are that namespace's.
fn in_namespace<T: Send>(
    namespace: &str,
    f: impl FnOnce() -> std::pin::Pin<Box<dyn Future<Output = T>>> + Send,
) -> T {
    lvs_test_support::live::in_namespace(namespace, || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        Ok(runtime.block_on(f()))
    })
    .unwrap_or_else(|error| panic!("in {namespace}: {error:#}"))
}

fn ip6(text: &str) -> std::net::Ipv6Addr {
    text.parse().unwrap()
}

/// Solicits the real server's own address and the VIP from the director side, as the
/// doctor does: every MAC that advertised each.
fn solicit(pair: &Ipv6Pair) -> BTreeMap<std::net::IpAddr, Vec<[u8; 6]>> {
    use lvs_userspace::{cli::doctor::probe, io::ndisc::NdiscSocket, io::netlink::Netlink};
    in_namespace(&pair.director, || {
        Box::pin(async {
            let netlink = Netlink::connect().unwrap();
            let link = netlink.link("eth0").await.unwrap();
            let source = probe::solicitation_source(&link.networks6);
            assert!(source.is_unicast_link_local(), "{:?}", link.networks6);
            let socket = NdiscSocket::open(link.index).unwrap();
            let requests = [(source, ip6(RS6)), (source, ip6(VIP6))];
            let answers = probe::ndp_answers(&socket, link.mac, &requests)
                .await
                .unwrap();
            answers
                .into_iter()
                .map(|(address, macs)| (address, macs.iter().map(|m| m.0).collect()))
                .collect()
        })
    })
}

/// What Linux needs for direct routing with an IPv6 VIP, checked on the wire: the VIP on
/// `lo` is not advertised on eth0 (no arp_ignore counterpart is needed), the real server's
/// own address is, a VIP wrongly put on eth0 is advertised, which the doctor reports, and so
/// is a proxied one, which `lvs realserver status` reports.
#[test]
#[ignore = "needs root: network namespaces"]
fn an_ipv6_vip_on_lo_is_not_advertised_on_the_facing_interface() {
    use lvs_userspace::cli::doctor::{
        Check, Observations, Plan, Status, evaluate,
        plan::{HealthTarget, RealServerPlan},
    };
    let pair = Ipv6Pair::new("ndp");
    let state = StateDir::new("ndp");
    let rs = &pair.real_server;
    let up = must(
        Command::new("ip")
            .args(["netns", "exec", rs])
            .arg(lvs())
            .args(["realserver", "up", VIP6, "--dev", "eth0", "--state-dir"])
            .arg(&state.0),
    );
    let lo = String::from_utf8_lossy(&pair.ip(rs, &["-6", "addr", "show", "dev", "lo"]).stdout)
        .into_owned();
    assert!(
        lo.lines()
            .any(|l| l.contains(&format!("{VIP6}/128")) && l.contains("nodad")),
        "the VIP on lo as a /128 without DAD:\n{lo}\n{}",
        text(&up)
    );

    let answers = solicit(&pair);
    assert_eq!(
        answers[&RS6.parse().unwrap()],
        [RS_MAC],
        "own address advertised"
    );
    assert_eq!(
        answers[&VIP6.parse().unwrap()],
        Vec::<[u8; 6]>::new(),
        "the VIP on lo is not advertised on eth0"
    );

    // The classic mistake, in IPv6: the VIP on the facing interface is advertised there,
    // and the doctor's judgement of what the probe saw fails that real server.
    pair.ip(
        rs,
        &[
            "addr",
            "add",
            &format!("{VIP6}/128"),
            "dev",
            "eth0",
            "nodad",
        ],
    );
    let answers = solicit(&pair);
    assert_eq!(answers[&VIP6.parse().unwrap()], [RS_MAC]);
    let plan = Plan {
        interface: "eth0".into(),
        real_servers: vec![RealServerPlan {
            address: RS6.parse().unwrap(),
            vips: [VIP6.parse().unwrap()].into_iter().collect(),
            targets: std::collections::BTreeSet::<HealthTarget>::new(),
        }],
    };
    let seen = Observations {
        networks6: vec![(ip6(DIRECTOR6), 64)],
        answers: answers
            .into_iter()
            .map(|(a, macs)| {
                let macs = macs
                    .into_iter()
                    .map(lvs_userspace::base::mac::MacAddr)
                    .collect();
                (a, macs)
            })
            .collect(),
        ..Observations::default()
    };
    let report = evaluate(&plan, &seen);
    let vip_check = report
        .findings
        .iter()
        .find(|f| f.check == Check::NdpVip)
        .expect("an NDP VIP finding");
    assert_eq!(vip_check.status, Status::Fail, "{vip_check:?}");
    pair.ip(rs, &["addr", "del", &format!("{VIP6}/128"), "dev", "eth0"]);

    // The one exception the kernel makes, proxy NDP: with forwarding and proxy_ndp on the
    // facing interface, a proxy entry for the VIP is advertised; `status` finds the entry.
    for setting in ["forwarding", "proxy_ndp"] {
        must(
            Command::new("ip")
                .args(["netns", "exec", rs, "sysctl", "-qw"])
                .arg(format!("net.ipv6.conf.eth0.{setting}=1")),
        );
    }
    pair.ip(rs, &["-6", "neigh", "add", "proxy", VIP6, "dev", "eth0"]);
    assert_eq!(
        solicit(&pair)[&VIP6.parse().unwrap()],
        [RS_MAC],
        "a proxied VIP is advertised"
    );
    let status = Command::new("ip")
        .args(["netns", "exec", rs])
        .arg(lvs())
        .args(["realserver", "status", VIP6, "--dev", "eth0", "--state-dir"])
        .arg(&state.0)
        .output()
        .unwrap();
    assert_eq!(status.status.code(), Some(1), "{}", text(&status));
    assert!(
        text(&status).contains("proxy neighbour entry on eth0"),
        "{}",
        text(&status)
    );
    let script = Command::new("ip")
        .args(["netns", "exec", rs, "env"])
        .arg(format!("LVS_STATE_DIR={}", state.0.display()))
        .arg("bash")
        .arg(repo().join("scripts/realserver.sh"))
        .args(["status", VIP6, "--dev", "eth0"])
        .output()
        .unwrap();
    assert_eq!(script.status.code(), Some(1), "{}", text(&script));
    assert!(
        text(&script).contains(&format!("{VIP6} proxied on eth0: WRONG")),
        "{}",
        text(&script)
    );
    pair.ip(rs, &["-6", "neigh", "del", "proxy", VIP6, "dev", "eth0"]);

    let down = must(
        Command::new("ip")
            .args(["netns", "exec", rs])
            .arg(lvs())
            .args(["realserver", "down", "--state-dir"])
            .arg(&state.0),
    );
    let lo = String::from_utf8_lossy(&pair.ip(rs, &["-6", "addr", "show", "dev", "lo"]).stdout)
        .into_owned();
    assert!(
        !lo.contains(VIP6),
        "down removes the VIP:\n{lo}\n{}",
        text(&down)
    );
}

/// Waits up to 5 s for the kernel's notification that `address` is at `mac`.
async fn notified(
    events: &mut futures::stream::BoxStream<'static, lvs_userspace::io::netlink::NeighbourEvent>,
    address: std::net::IpAddr,
    mac: [u8; 6],
) -> lvs_userspace::io::netlink::NeighbourEntry {
    use futures::StreamExt as _;
    use lvs_userspace::io::netlink::NeighbourEvent;
    let found = tokio::time::timeout(Duration::from_secs(5), async {
        while let Some(event) = events.next().await {
            if let NeighbourEvent::Changed(entry) = event {
                if entry.address == address && entry.mac == Some(mac) {
                    return entry;
                }
            }
        }
        panic!("the neighbour notifications ended");
    })
    .await;
    found.unwrap_or_else(|_| panic!("no notification of {address} at {mac:02x?}"))
}

/// The director's netlink side for an IPv6 real server: its prefix and link-local network
/// seen on the interface, resolution asked for with NTF_USE, the MAC found in the IPv6
/// neighbour table and announced by a notification, and a new MAC (the real server's
/// `ndisc_notify` advertisement) followed.
#[test]
#[ignore = "needs root: network namespaces"]
fn an_ipv6_neighbour_is_resolved_and_its_change_followed() {
    use futures::StreamExt as _;
    use lvs_userspace::{
        base::mac::MacAddr,
        io::netlink::{self, Netlink},
        logic::model::Neighbour,
    };
    let pair = Ipv6Pair::new("nl6");
    must(Command::new("ip").args([
        "netns",
        "exec",
        &pair.real_server,
        "sysctl",
        "-qw",
        "net.ipv6.conf.eth0.ndisc_notify=1",
    ]));
    let real_server = pair.real_server.clone();
    in_namespace(&pair.director, move || {
        Box::pin(async move {
            let rs: std::net::IpAddr = RS6.parse().unwrap();
            let netlink = Netlink::connect().unwrap();
            let link = netlink.link("eth0").await.unwrap();
            assert!(
                link.networks6.contains(&(ip6(DIRECTOR6), 64)),
                "{:?}",
                link.networks6
            );
            assert!(link.on_link(rs));
            assert!(
                link.on_link(ip6("fe80::ff:fe77:11")),
                "link-local is on-link"
            );
            assert!(!link.on_link(ip6("2001:db8:78::11")));

            let mut events = netlink::neighbour_events().unwrap().boxed();
            let entry_of = |entries: Vec<netlink::NeighbourEntry>| {
                entries.into_iter().find(|e| e.address == rs)
            };
            assert_eq!(
                entry_of(netlink.neighbours(link.index).await.unwrap()),
                None,
                "nothing known before resolution"
            );
            netlink.resolve(link.index, rs).await.unwrap();
            let announced = notified(&mut events, rs, RS_MAC).await;
            assert_eq!(
                netlink::classify(Some(&announced)),
                Neighbour::Resolved {
                    mac: MacAddr(RS_MAC)
                }
            );
            let entry = entry_of(netlink.neighbours(link.index).await.unwrap());
            let known = netlink::next_neighbour(&Neighbour::Unknown, entry.as_ref(), true);
            assert_eq!(
                known,
                Neighbour::Resolved {
                    mac: MacAddr(RS_MAC)
                },
                "{entry:?}"
            );

            // The real server's NIC changes: its unsolicited advertisement reaches the
            // director's table, and the change is followed.
            let moved = [0x02, 0, 0, 0x77, 0, 0x99];
            must(Command::new("ip").args([
                "-n",
                &real_server,
                "link",
                "set",
                "eth0",
                "address",
                "02:00:00:77:00:99",
            ]));
            notified(&mut events, rs, moved).await;
            let entry = entry_of(netlink.neighbours(link.index).await.unwrap());
            assert_eq!(
                netlink::next_neighbour(&known, entry.as_ref(), true),
                Neighbour::Resolved {
                    mac: MacAddr(moved)
                },
                "{entry:?}"
            );
        })
    });
}

/// The director's VIPs through netlink: an IPv6 VIP goes on as a /128 without duplicate
/// address detection (usable at once, never tentative, though the interface runs DAD), an
/// IPv4 one as a /32 as before; adding again reports that it was there, and removing takes
/// off exactly that address.
#[test]
#[ignore = "needs root: network namespaces"]
fn the_director_puts_vips_on_without_dad_and_takes_them_off() {
    use lvs_userspace::io::netlink::Netlink;
    let pair = Ipv6Pair::new("vip6");
    must(Command::new("ip").args([
        "netns",
        "exec",
        &pair.director,
        "sysctl",
        "-qw",
        "net.ipv6.conf.eth0.accept_dad=1",
    ]));
    let director = pair.director.clone();
    let addresses = move || {
        let output =
            must(Command::new("ip").args(["-n", &director, "addr", "show", "dev", "eth0"]));
        String::from_utf8_lossy(&output.stdout).into_owned()
    };
    in_namespace(&pair.director, move || {
        Box::pin(async move {
            let netlink = Netlink::connect().unwrap();
            let index = netlink.link("eth0").await.unwrap().index;
            let vip6: std::net::IpAddr = VIP6.parse().unwrap();
            let vip4: std::net::IpAddr = "10.77.0.100".parse().unwrap();
            assert!(netlink.add_vip(index, vip6).await.unwrap());
            assert!(netlink.add_vip(index, vip4).await.unwrap());
            let shown = addresses();
            let line6 = shown
                .lines()
                .find(|l| l.contains(&format!("{VIP6}/128")))
                .unwrap_or_else(|| panic!("no {VIP6}/128:\n{shown}"));
            assert!(line6.contains("nodad"), "{line6}");
            assert!(!line6.contains("tentative"), "usable at once: {line6}");
            assert!(shown.contains("inet 10.77.0.100/32"), "{shown}");
            assert!(
                !netlink.add_vip(index, vip6).await.unwrap(),
                "already there: not ours to remove"
            );
            assert!(netlink.remove_vip(index, vip6).await.unwrap());
            assert!(netlink.remove_vip(index, vip4).await.unwrap());
            assert!(!netlink.remove_vip(index, vip6).await.unwrap(), "gone");
            let shown = addresses();
            assert!(
                !shown.contains(VIP6) && !shown.contains("10.77.0.100"),
                "{shown}"
            );
            assert!(
                shown.contains(&format!("{DIRECTOR6}/64")),
                "the rest stays: {shown}"
            );
        })
    });
}
