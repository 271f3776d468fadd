//! Two directors, as the LVS-DR tutorial runs them: keepalived's VRRP moves the VIP from the
//! MASTER to the BACKUP when the master's cable is pulled, and back when it is plugged in
//! again (preempting), while lvs on both keeps every established connection on its real
//! server through connection sync. And a running backup given forged, foreign, truncated,
//! garbage and replayed sync messages installs nothing, counts each, and goes on.
//!
//! Needs root (namespaces, XDP, keepalived); ignored by a plain `cargo test`, run by
//! `cargo xtask test` or
//! `cargo test -p lvs-userspace --test ha -- --ignored --test-threads=1 --nocapture`
//! (the takeover times and failure counts are printed).

use std::{
    path::Path,
    process::Command,
    thread::sleep,
    time::{Duration, SystemTime},
};

use lvs_test_support::{
    lab::{Lab, VIP},
    load::{LONG_LIVED, Load, Seen},
    pair::{ADVERT_INT, Director, Pair, VIRTUAL_ROUTER_ID},
};

fn repo() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

fn lvs() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_lvs"))
}

const REAL_SERVERS: u8 = 3;

/// How long the failover's load runs: the takeover comes 3 s in and takes up to 4 s, and a
/// long-lived connection's segment lost in it is sent again by TCP's backoff up to about 6 s
/// after the cable was pulled, all well inside.
const FAILOVER: Duration = Duration::from_secs(14);

/// How long the failback's load runs: the master comes back 3 s in; its health checks pass
/// again within a `delay_loop` (6 s), `chk_lvs` rises 2 s later, and VRRP preempts after
/// 3 x advert_int and a bit.
const FAILBACK: Duration = Duration::from_secs(24);

/// The longest the master may take to be ready again and take the VIP back.
const FAILBACK_LIMIT: Duration = Duration::from_secs(18);

/// How long a long-lived connection may wait for an answer before it counts as broken: the
/// takeover and TCP's retransmission backoff stall it for some seconds, which breaks nothing.
const STALL: Duration = Duration::from_secs(10);

/// After the VIP moved, the client still needs the gratuitous ARP and a retransmitted SYN.
const GRACE: Duration = Duration::from_secs(1);

fn sync_counter(status: &serde_json::Value, name: &str) -> u64 {
    status["sync"][name].as_u64().unwrap_or(0)
}

/// The new connections that failed outside `[from, to + GRACE]`.
fn failed_outside(seen: &Seen, from: SystemTime, to: SystemTime) -> Vec<(SystemTime, SystemTime)> {
    seen.failed_at()
        .into_iter()
        .filter(|&(started, ended)| ended < from || started > to + GRACE)
        .collect()
}

fn report(what: &str, moved: Duration, seen: &Seen) {
    eprintln!(
        "{what}: VIP moved in {:.2} s; new connections: {}/{} failed; long-lived: {}/{LONG_LIVED} \
         broken, {}/{LONG_LIVED} moved to another server; longest wait for an answer {:.0} ms",
        moved.as_secs_f64(),
        seen.failed_requests(),
        seen.failed_requests() + seen.ok_requests(),
        seen.broken(),
        seen.moved(),
        seen.longest_gap_ms(),
    );
    for error in seen.json["new"]["errors"].as_array().into_iter().flatten() {
        eprintln!("  a failed new connection: {error}");
    }
}

#[test]
#[ignore = "needs root: network namespaces, XDP and keepalived"]
fn the_backup_takes_over_and_gives_back_without_breaking_a_connection() {
    let pair = Pair::up(repo(), lvs(), "lvsha", REAL_SERVERS).unwrap_or_else(|e| panic!("{e}"));
    assert!(
        !pair.holds_vip(Director::Backup),
        "only the master holds the VIP"
    );

    // Failover: the master's cable is pulled under load.
    let load = Load::start(pair.lab(), FAILOVER, STALL).unwrap_or_else(|e| panic!("{e}"));
    sleep(Duration::from_secs(3));
    let pulled = SystemTime::now();
    pair.pull_cable(Director::Master)
        .unwrap_or_else(|e| panic!("{e}"));
    let takeover = pair
        .wait_for_vip(Director::Backup, 3 * 4 * ADVERT_INT)
        .unwrap_or_else(|e| panic!("{e}"));
    let moved = SystemTime::now();
    let seen = load.finish().unwrap_or_else(|e| panic!("{e}"));
    report("failover (master's cable pulled)", takeover, &seen);
    let backup = pair
        .status(Director::Backup)
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        sync_counter(&backup, "entries_installed") > 0,
        "the backup installed the master's connections: {}",
        backup["sync"]
    );
    seen.assert_long_lived_undisturbed("failover");
    assert_eq!(
        seen.spanning(pulled, moved),
        LONG_LIVED,
        "failover: every long-lived connection was answered before the cable was pulled and \
         after the VIP moved: {}",
        seen.json
    );
    assert!(
        takeover <= 4 * ADVERT_INT,
        "the VIP moved within 4 x advert_int, not {takeover:?}\n{}",
        pair.logs()
    );
    let outside = failed_outside(&seen, pulled, moved);
    assert!(
        outside.is_empty(),
        "failover: new connections failed outside the takeover window: {outside:?}; {}",
        seen.json["new"]
    );

    // Failback: the master's cable is plugged in again and it takes the VIP back
    // (preempting), with connections it only knows from the backup's sync.
    let installed = sync_counter(
        &pair
            .status(Director::Master)
            .unwrap_or_else(|e| panic!("{e}")),
        "entries_installed",
    );
    let load = Load::start(pair.lab(), FAILBACK, STALL).unwrap_or_else(|e| panic!("{e}"));
    sleep(Duration::from_secs(3));
    let plugged = SystemTime::now();
    pair.plug_cable(Director::Master)
        .unwrap_or_else(|e| panic!("{e}"));
    let failback = pair
        .wait_for_vip(Director::Master, FAILBACK_LIMIT)
        .unwrap_or_else(|e| panic!("{e}"));
    let back = SystemTime::now();
    let seen = load.finish().unwrap_or_else(|e| panic!("{e}"));
    report("failback (master's cable plugged in)", failback, &seen);
    let master = pair
        .status(Director::Master)
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        sync_counter(&master, "entries_installed") > installed,
        "the master installed the backup's connections when it came back: {}",
        master["sync"]
    );
    assert!(
        !pair.holds_vip(Director::Backup),
        "the backup gave the VIP up"
    );
    seen.assert_long_lived_undisturbed("failback");
    assert_eq!(
        seen.spanning(plugged, back),
        LONG_LIVED,
        "failback: every long-lived connection was answered before the cable was plugged in \
         and after the VIP moved back: {}",
        seen.json
    );
    let outside = failed_outside(&seen, plugged, back);
    assert!(
        outside.is_empty(),
        "failback: new connections failed outside the takeover window: {outside:?}; {}",
        seen.json["new"]
    );
}

/// An encoder of sync messages written from the wire format's documentation
/// (`logic/sync/mod.rs`), independent of lvs's own: Python's struct and hmac. It sends one
/// message of the kind its first argument names to the sync group from the client.
const SEND: &str = r#"
import hashlib, hmac, os, socket, struct, sys, time
case, key_file, sync_id, source, vip, saved = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5], sys.argv[6]
key = open(key_file, "rb").read()
if key.endswith(b"\n"):
    key = key[:-1]
def entry(real_server):
    # A new, established connection from the client's port 40001 to the VIP's port 80.
    return struct.pack("!BBBB4sHH4s4sHHI", 1, 6, 1, 0, socket.inet_aton(source), 40001, 80,
                       socket.inet_aton(vip), socket.inet_aton(real_server), 80, 0, 60000)
def message(entries, sync_id=sync_id, key=key):
    body = b"".join(entries)
    sequence = time.time_ns() // 1000
    header = struct.pack("!4sBBHHHQ", b"LVSY", 1, sync_id, len(entries), 20 + len(body) + 32, 0, sequence)
    return header + body + hmac.new(key, header + body, hashlib.sha256).digest()
if case == "forged":
    data = message([entry("10.77.0.11")], key=b"not the shared key, not at all!!")
elif case == "other_sync_id":
    data = message([entry("10.77.0.11")], sync_id=sync_id + 1)
elif case == "truncated":
    data = message([entry("10.77.0.11")])[:-10]
elif case == "garbage":
    data = b"JUNK" + os.urandom(76)
elif case == "unknown_real_server":
    data = message([entry("10.77.0.19")])
elif case == "valid":
    data = message([entry("10.77.0.11")])
    open(saved, "wb").write(data)
elif case == "replayed":
    data = open(saved, "rb").read()
else:
    sys.exit("unknown case " + case)
sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton(source))
sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, 1)
sock.sendto(data, ("224.0.0.81", 8848))
"#;

#[test]
#[ignore = "needs root: network namespaces and XDP"]
fn a_backup_installs_nothing_from_bad_sync_messages_counts_each_and_keeps_running() {
    let mut lab = Lab::up(repo(), "lvshab", 2).unwrap_or_else(|e| panic!("{e}"));
    let key_file = lab.state_dir().join("sync.key");
    std::fs::write(&key_file, "a key of at least sixteen bytes\n").unwrap();
    let saved = lab.state_dir().join("valid.msg");
    let mut text = std::fs::read_to_string(lab.config_path()).unwrap();
    text += &format!(
        "\n[sync]\ndaemons = [\"backup\"]\nsyncid = {VIRTUAL_ROUTER_ID}\nkey_file = \"{}\"\n",
        key_file.display()
    );
    let config = lab.config_path().with_file_name("lvs-sync-backup.toml");
    std::fs::write(&config, text).unwrap();
    lab.start_director_with(lvs(), &config)
        .unwrap_or_else(|e| panic!("{e}"));
    lab.wait_until_forwarding(lvs(), 2, Duration::from_secs(20))
        .unwrap_or_else(|e| panic!("{e}"));

    let client = lab.namespace("client");
    let send = |case: &str| {
        let status = Command::new("ip")
            .args(["netns", "exec", &client])
            .args(["python3", "-c", SEND, case])
            .arg(&key_file)
            .arg(VIRTUAL_ROUTER_ID.to_string())
            .arg("10.77.0.2")
            .arg(VIP)
            .arg(&saved)
            .status()
            .expect("python3 runs");
        assert!(status.success(), "sending the {case} message");
    };
    // Each bad message in turn: it is counted under its reason, and nothing is installed.
    for (case, reason) in [
        ("forged", "forged"),
        ("other_sync_id", "other_sync_id"),
        ("truncated", "truncated"),
        ("garbage", "malformed"),
    ] {
        send(case);
        let status = lab
            .wait_for_status(lvs(), Duration::from_secs(5), case, |s| {
                s["sync"]["rejected"][reason].as_u64() == Some(1)
            })
            .unwrap_or_else(|e| panic!("{e}"))
            .0;
        assert_eq!(sync_counter(&status, "messages_received"), 0, "{case}");
        assert_eq!(sync_counter(&status, "entries_installed"), 0, "{case}");
    }

    // A message naming a real server this director does not have is taken, and its entry
    // ignored and counted, never turned into a forward.
    send("unknown_real_server");
    let status = lab
        .wait_for_status(lvs(), Duration::from_secs(5), "unknown real server", |s| {
            s["sync"]["unknown"]["unknown_real_server"].as_u64() == Some(1)
        })
        .unwrap_or_else(|e| panic!("{e}"))
        .0;
    assert_eq!(sync_counter(&status, "entries_installed"), 0);

    // The same encoder's valid message is installed: the refusals above were the messages'
    // faults, not the encoder's. Played back, it is refused as a replay.
    send("valid");
    lab.wait_for_status(lvs(), Duration::from_secs(5), "valid installed", |s| {
        sync_counter(s, "entries_installed") == 1
    })
    .unwrap_or_else(|e| panic!("{e}"));
    send("replayed");
    let status = lab
        .wait_for_status(lvs(), Duration::from_secs(5), "replayed", |s| {
            s["sync"]["rejected"]["replayed"].as_u64() == Some(1)
        })
        .unwrap_or_else(|e| panic!("{e}"))
        .0;
    assert_eq!(
        sync_counter(&status, "entries_installed"),
        1,
        "{}",
        status["sync"]
    );
    assert_eq!(
        sync_counter(&status, "messages_received"),
        2,
        "{}",
        status["sync"]
    );

    // It goes on: still answering, still forwarding.
    let seen = lab.requests(10);
    assert!(seen.failures.is_empty(), "{:?}", seen.failures);
    lab.stop_director().unwrap_or_else(|e| panic!("{e}"));
}
