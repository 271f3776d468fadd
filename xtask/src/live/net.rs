//! The live bench's network: two namespaces joined by a veth pair, and the knobs it needs
//! (threaded NAPI pinned to a core, the veth's XDP counters).

use std::{
    collections::HashMap,
    fs::File,
    os::fd::AsRawFd,
    process::{Command, Output},
};

use anyhow::{Context as _, Result, bail, ensure};

/// Runs a command and returns its output, failing with its stderr when it fails.
pub fn run(program: &str, args: &[&str]) -> Result<Output> {
    let output = Command::new(program)
        .args(args)
        .output()
        .with_context(|| format!("running {program} {}", args.join(" ")))?;
    ensure!(
        output.status.success(),
        "{program} {} failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&output.stderr).trim()
    );
    Ok(output)
}

/// `ip -n NS ARGS...`.
pub fn ip(namespace: &str, args: &[&str]) -> Result<()> {
    let mut all = vec!["-n", namespace];
    all.extend_from_slice(args);
    run("ip", &all).map(drop)
}

/// Runs `f` on a thread inside the network namespace `namespace` (by its /run/netns name);
/// interface indices, BPF_LINK_CREATE and live-frames runs resolve interfaces there.
pub fn in_namespace<T: Send>(namespace: &str, f: impl FnOnce() -> Result<T> + Send) -> Result<T> {
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                enter(namespace)?;
                f()
            })
            .join()
            .map_err(|_| anyhow::anyhow!("a thread in namespace {namespace} panicked"))?
    })
}

/// Moves the calling thread into the network namespace `namespace`.
pub fn enter(namespace: &str) -> Result<()> {
    let path = format!("/run/netns/{namespace}");
    let file = File::open(&path).with_context(|| format!("opening {path}"))?;
    // SAFETY: a valid namespace fd; CLONE_NEWNET moves only this thread.
    let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
    ensure!(
        rc == 0,
        "entering {namespace}: {}",
        std::io::Error::last_os_error()
    );
    Ok(())
}

/// The interface's index, in the calling thread's namespace.
pub fn if_index(name: &str) -> Result<u32> {
    let c_name = std::ffi::CString::new(name)?;
    // SAFETY: a valid NUL-terminated name.
    let index = unsafe { libc::if_nametoindex(c_name.as_ptr()) };
    ensure!(index != 0, "no interface {name}");
    Ok(index)
}

/// The interface's MAC address, from `ip -j link show`.
pub fn mac(namespace: &str, interface: &str) -> Result<[u8; 6]> {
    let output = run("ip", &["-n", namespace, "-j", "link", "show", interface])?;
    let links: serde_json::Value = serde_json::from_slice(&output.stdout)?;
    let text = links[0]["address"]
        .as_str()
        .context("ip -j link show: no address")?;
    let mut mac = [0u8; 6];
    let parts: Vec<&str> = text.split(':').collect();
    ensure!(parts.len() == 6, "a MAC address: {text}");
    for (byte, part) in mac.iter_mut().zip(parts) {
        *byte = u8::from_str_radix(part, 16)?;
    }
    Ok(mac)
}

/// `ethtool -S` of an interface in a namespace, by counter name.
pub fn ethtool_stats(namespace: &str, interface: &str) -> Result<HashMap<String, u64>> {
    let output = run(
        "ip",
        &["netns", "exec", namespace, "ethtool", "-S", interface],
    )?;
    Ok(String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| {
            let (name, value) = line.split_once(':')?;
            Some((name.trim().to_owned(), value.trim().parse().ok()?))
        })
        .collect())
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

/// Pins a task (0: the calling thread) to one CPU.
pub fn pin(pid: i32, cpu: usize) -> Result<()> {
    // SAFETY: a zeroed cpu_set_t is valid; the calls only read and write it.
    let rc = unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(pid, size_of::<libc::cpu_set_t>(), &set)
    };
    ensure!(
        rc == 0,
        "sched_setaffinity({pid}, CPU {cpu}): {}",
        std::io::Error::last_os_error()
    );
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
