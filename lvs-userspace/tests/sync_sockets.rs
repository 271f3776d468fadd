//! The sync daemons' real multicast sockets (`io::sync::Multicast`) between two network
//! namespaces joined by a veth pair: a master's message reaches a backup on the other side
//! with the master's address as its source, and never its own side (loopback is off).
//!
//! Needs root (namespaces, `SO_BINDTODEVICE`). Ignored by a plain `cargo test`; run with
//! `cargo test -p lvs-userspace --test sync_sockets -- --ignored`. The namespaces are removed
//! on drop, even when the test fails.

use std::{
    ffi::CString,
    fs::File,
    net::Ipv4Addr,
    os::fd::AsRawFd as _,
    process::Command,
    sync::mpsc,
    thread,
    time::{Duration, Instant},
};

use futures::StreamExt as _;
use lvs_userspace::{
    io::sync::{Datagram, Multicast, SyncInterface, SyncTransport},
    logic::sync::{SyncDaemon, SyncRole},
};

const MASTER: Ipv4Addr = Ipv4Addr::new(10, 99, 0, 1);
const BACKUP: Ipv4Addr = Ipv4Addr::new(10, 99, 0, 2);

fn ip(args: &[&str]) {
    let status = Command::new("ip").args(args).status().expect("ip runs");
    assert!(status.success(), "ip {}", args.join(" "));
}

/// Two namespaces, `<name>-m` holding `vm` (10.99.0.1) and `<name>-b` holding `vb`
/// (10.99.0.2), joined by a veth pair; removed on drop.
struct Segment {
    master: String,
    backup: String,
}

impl Segment {
    fn new() -> Self {
        let name = format!("lvs-sync-{}", std::process::id());
        let segment = Segment {
            master: format!("{name}-m"),
            backup: format!("{name}-b"),
        };
        ip(&["netns", "add", &segment.master]);
        ip(&["netns", "add", &segment.backup]);
        ip(&[
            "-n",
            &segment.master,
            "link",
            "add",
            "vm",
            "type",
            "veth",
            "peer",
            "name",
            "vb",
            "netns",
            &segment.backup,
        ]);
        for (ns, link, address) in [
            (&segment.master, "vm", MASTER),
            (&segment.backup, "vb", BACKUP),
        ] {
            ip(&[
                "-n",
                ns,
                "addr",
                "add",
                &format!("{address}/24"),
                "dev",
                link,
            ]);
            ip(&["-n", ns, "link", "set", link, "up"]);
            ip(&["-n", ns, "link", "set", "lo", "up"]);
        }
        segment
    }
}

impl Drop for Segment {
    fn drop(&mut self) {
        for ns in [&self.master, &self.backup] {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

/// Moves the calling thread into a named network namespace; sockets it opens stay there.
fn enter(ns: &str) {
    let file = File::open(format!("/run/netns/{ns}")).expect("the namespace exists");
    // SAFETY: setns on a valid namespace descriptor changes only this thread's namespace.
    let done = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
    assert_eq!(done, 0, "setns: {}", std::io::Error::last_os_error());
}

fn interface(name: &str, address: Ipv4Addr) -> SyncInterface {
    let c_name = CString::new(name).unwrap();
    // SAFETY: a valid NUL-terminated name; the call only reads it.
    let index = unsafe { libc::if_nametoindex(c_name.as_ptr()) };
    assert_ne!(index, 0, "{name} exists in this namespace");
    SyncInterface {
        name: name.into(),
        index,
        address,
    }
}

/// Listens as a backup on `link` in namespace `ns` and reports what arrives within `wait`.
fn listen(
    ns: String,
    link: &'static str,
    address: Ipv4Addr,
    wait: Duration,
) -> mpsc::Receiver<Vec<Datagram>> {
    let (ready, heard) = mpsc::channel();
    thread::spawn(move || {
        enter(&ns);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let daemon = SyncDaemon::with_defaults(SyncRole::Backup, link);
            let mut datagrams = Multicast
                .receiver(&daemon, &interface(link, address))
                .expect("the backup's socket opens");
            // An empty list says the socket is ready.
            ready.send(Vec::new()).unwrap();
            let mut got = Vec::new();
            let deadline = tokio::time::sleep(wait);
            tokio::pin!(deadline);
            loop {
                tokio::select! {
                    () = &mut deadline => break,
                    Some(datagram) = datagrams.next() => got.push(datagram.expect("a datagram")),
                }
            }
            ready.send(got).unwrap();
        });
    });
    heard
}

#[test]
#[ignore = "needs root: network namespaces and SO_BINDTODEVICE"]
fn a_masters_message_reaches_the_backup_on_the_other_side_and_not_its_own() {
    let segment = Segment::new();
    let wait = Duration::from_secs(2);
    let backup = listen(segment.backup.clone(), "vb", BACKUP, wait);
    let own_side = listen(segment.master.clone(), "vm", MASTER, wait);
    for listener in [&backup, &own_side] {
        assert_eq!(listener.recv_timeout(Duration::from_secs(5)).unwrap(), []);
    }

    let master_ns = segment.master.clone();
    let sent = thread::spawn(move || {
        enter(&master_ns);
        let daemon = SyncDaemon::with_defaults(SyncRole::Master, "vm");
        let mut sender = Multicast
            .sender(&daemon, &interface("vm", MASTER))
            .expect("the master's socket opens");
        // A few, spaced, in case the group join is still settling; bounded in count and time.
        let started = Instant::now();
        for n in 0..5u8 {
            sender.send(&[b'L', b'V', b'S', b'Y', n]).expect("sent");
            thread::sleep(Duration::from_millis(100));
        }
        started.elapsed()
    });
    assert!(sent.join().unwrap() < wait);

    let heard = backup.recv_timeout(wait * 2).expect("the backup reports");
    assert!(!heard.is_empty(), "the backup heard nothing");
    for datagram in &heard {
        assert_eq!(datagram.source, MASTER);
        assert_eq!(&datagram.bytes[..4], b"LVSY");
    }
    let own = own_side
        .recv_timeout(wait * 2)
        .expect("the master's side reports");
    assert_eq!(
        own,
        [],
        "multicast loopback is off: a master never hears itself"
    );
}
