//! The live bench's network: two namespaces joined by a veth pair, and the knobs it needs
//! (threaded NAPI pinned to a core). The helpers it shares with the flood test
//! (namespaces, interfaces, pinning) are `lvs_test_support::live`'s, re-exported here.

use std::process::Command;

use anyhow::{Context as _, Result, bail, ensure};
pub use lvs_test_support::live::{if_index, in_namespace, mac, pin, run};

/// `ip -n NS ARGS...`.
pub fn ip(namespace: &str, args: &[&str]) -> Result<()> {
    let mut all = vec!["-n", namespace];
    all.extend_from_slice(args);
    run("ip", &all).map(drop)
}

/// Makes the interface's NAPI run in its own kernel thread and pins that thread to `cpu`, so
/// the generator and the device under test do not share one softirq. Call it after an XDP
/// program is attached: a veth creates its NAPI instance only then.
///
/// With `realtime`, the thread also runs SCHED_FIFO, so other work that lands on its core
/// (builds, the daemon itself) waits for it, as on a core dedicated to forwarding; the kernel's
/// real-time throttling still leaves that other work 5% of the core.
pub fn thread_napi(namespace: &str, interface: &str, cpu: usize, realtime: bool) -> Result<()> {
    run(
        "ip",
        &[
            "netns",
            "exec",
            namespace,
            "sh",
            "-c",
            &format!("echo 1 > /sys/class/net/{interface}/threaded"),
        ],
    )?;
    let prefix = format!("napi/{interface}-");
    let mut pinned = 0;
    for entry in std::fs::read_dir("/proc")? {
        let entry = entry?;
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(comm) = std::fs::read_to_string(entry.path().join("comm")) else {
            continue;
        };
        if comm.trim_end().starts_with(&prefix) {
            pin(pid, cpu).with_context(|| format!("pinning {}", comm.trim_end()))?;
            if realtime {
                realtime_priority(pid)
                    .with_context(|| format!("making {} SCHED_FIFO", comm.trim_end()))?;
            }
            pinned += 1;
        }
    }
    if pinned == 0 {
        bail!("no NAPI thread {prefix}* found after enabling threaded NAPI");
    }
    Ok(())
}

/// Makes a task SCHED_FIFO at the lowest real-time priority.
fn realtime_priority(pid: i32) -> Result<()> {
    let param = libc::sched_param { sched_priority: 1 };
    // SAFETY: a valid sched_param for SCHED_FIFO.
    let rc = unsafe { libc::sched_setscheduler(pid, libc::SCHED_FIFO, &param) };
    ensure!(rc == 0, "{}", std::io::Error::last_os_error());
    Ok(())
}

/// Two namespaces joined by a veth pair; both go away on drop, whatever happened.
pub struct Pair {
    pub namespaces: [String; 2],
}

impl Pair {
    /// Creates `namespaces[0]` with `interfaces[0]` and `namespaces[1]` with `interfaces[1]`,
    /// the two ends of one veth, both up. Leftovers of an interrupted run are removed first.
    pub fn up(namespaces: [&str; 2], interfaces: [&str; 2]) -> Result<Self> {
        for namespace in namespaces {
            let _ = Command::new("ip")
                .args(["netns", "del", namespace])
                .output();
        }
        let pair = Self {
            namespaces: namespaces.map(str::to_owned),
        };
        for namespace in namespaces {
            run("ip", &["netns", "add", namespace])?;
        }
        ip(
            namespaces[0],
            &[
                "link",
                "add",
                interfaces[0],
                "type",
                "veth",
                "peer",
                "name",
                interfaces[1],
                "netns",
                namespaces[1],
            ],
        )?;
        for (namespace, interface) in namespaces.iter().zip(interfaces) {
            ip(namespace, &["link", "set", interface, "up"])?;
            ip(namespace, &["link", "set", "lo", "up"])?;
        }
        Ok(pair)
    }
}

impl Drop for Pair {
    fn drop(&mut self) {
        for namespace in &self.namespaces {
            if let Err(error) = run("ip", &["netns", "del", namespace]) {
                eprintln!("removing namespace {namespace}: {error:#}");
            }
        }
    }
}

/// `CLOCK_MONOTONIC_COARSE` in ns: the clock the data plane stamps flows with.
pub fn coarse_monotonic_ns() -> u64 {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `now` is a valid timespec to write into; the clock always exists.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC_COARSE, &mut now) };
    now.tv_sec as u64 * 1_000_000_000 + now.tv_nsec as u64
}
