//! Live traffic from a live-frames generator (`BPF_PROG_RUN` with
//! `BPF_F_TEST_XDP_LIVE_FRAMES`, the programs of [`crate::rawbpf`]): its frame templates, the
//! thread that runs it from a namespace on a pinned CPU, bounded in frames and time, and the
//! namespace and interface helpers it needs. Shared by `cargo xtask bench live` and the flood
//! test.

use std::{
    collections::HashMap,
    fs::File,
    os::fd::{AsRawFd, OwnedFd},
    process::{Command, Output},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    thread::JoinHandle,
    time::Instant,
};

use anyhow::{Context as _, Result, ensure};

use crate::rawbpf::{self, Sources};

/// Frames per live-frames syscall at most: tens of milliseconds of traffic, so the syscall's
/// own cost (milliseconds) is spread thin and a stop request is honoured quickly.
const FRAMES_PER_CALL: u32 = 1 << 18;

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

/// The sum of an interface's per-receive-queue `ethtool -S` counters ending in `suffix`
/// (`_xdp_packets`: frames its XDP program saw; `_xdp_tx`: frames it sent back).
pub fn rx_queue_sum(namespace: &str, interface: &str, suffix: &str) -> Result<u64> {
    let stats = ethtool_stats(namespace, interface)?;
    Ok(stats
        .iter()
        .filter(|(name, _)| name.starts_with("rx_queue_") && name.ends_with(suffix))
        .map(|(_, value)| value)
        .sum())
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

/// The IPv4 header checksum (RFC 1071) of `header`, whose checksum field is zero.
pub fn ipv4_checksum(header: &[u8]) -> u16 {
    let mut sum: u32 = header
        .chunks(2)
        .map(|pair| u32::from(u16::from_be_bytes([pair[0], pair[1]])))
        .sum();
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// Ethernet to `dst_mac` from `src_mac`, IPv4 to `vip` carrying `l4` (protocol `protocol`),
/// padded to 60 bytes. The source address is the generator's (it rewrites it per frame).
fn frame(dst_mac: [u8; 6], src_mac: [u8; 6], vip: [u8; 4], protocol: u8, l4: &[u8]) -> Vec<u8> {
    let mut frame = Vec::with_capacity(60);
    frame.extend_from_slice(&dst_mac);
    frame.extend_from_slice(&src_mac);
    frame.extend_from_slice(&[0x08, 0x00]);
    let ip_len = 20 + l4.len() as u16;
    let mut ip = vec![0x45, 0]; // version, IHL, DSCP
    ip.extend_from_slice(&ip_len.to_be_bytes());
    ip.extend_from_slice(&[0, 0, 0x40, 0, 64, protocol, 0, 0]); // id, DF, TTL, protocol
    ip.extend_from_slice(&[198, 18, 0, 0]);
    ip.extend_from_slice(&vip);
    let checksum = ipv4_checksum(&ip);
    ip[10..12].copy_from_slice(&checksum.to_be_bytes());
    frame.extend_from_slice(&ip);
    frame.extend_from_slice(l4);
    frame.resize(60, 0);
    frame
}

/// A 60-byte UDP frame to `vip`:`port` with 18 bytes of payload and no UDP checksum; the
/// generator writes the source and the IPv4 checksum of every frame.
pub fn udp_frame(dst_mac: [u8; 6], src_mac: [u8; 6], vip: [u8; 4], port: u16) -> Vec<u8> {
    let payload = 18u16;
    let mut udp = Vec::new();
    udp.extend_from_slice(&1024u16.to_be_bytes());
    udp.extend_from_slice(&port.to_be_bytes());
    udp.extend_from_slice(&(8 + payload).to_be_bytes());
    udp.extend_from_slice(&[0, 0]); // no UDP checksum
    udp.resize(usize::from(8 + payload), 0);
    frame(dst_mac, src_mac, vip, 17, &udp)
}

/// A TCP SYN to `vip`:`port` (a 20-byte header, window 64240, sequence number 1), padded to
/// 60 bytes; the generator writes the source and both checksums of every frame, so each is a
/// SYN a real server's stack takes.
pub fn tcp_syn_frame(dst_mac: [u8; 6], src_mac: [u8; 6], vip: [u8; 4], port: u16) -> Vec<u8> {
    let mut tcp = Vec::new();
    tcp.extend_from_slice(&1024u16.to_be_bytes());
    tcp.extend_from_slice(&port.to_be_bytes());
    tcp.extend_from_slice(&1u32.to_be_bytes()); // sequence number
    tcp.extend_from_slice(&0u32.to_be_bytes()); // acknowledgment number
    tcp.extend_from_slice(&[5 << 4, 0x02]); // data offset 5 words, SYN
    tcp.extend_from_slice(&64240u16.to_be_bytes()); // window
    tcp.extend_from_slice(&[0, 0, 0, 0]); // checksum (the generator's), urgent pointer
    frame(dst_mac, src_mac, vip, 6, &tcp)
}

/// Where a generator sends from: an interface of a namespace, the thread pinned to a CPU.
#[derive(Clone, Debug)]
pub struct Port {
    pub namespace: String,
    pub interface: String,
    pub cpu: usize,
}

/// When a generator stops on its own: after `frames` frames or at `deadline`, whichever
/// comes first (and at `Generator::stop` before either).
#[derive(Clone, Copy, Debug)]
pub struct Budget {
    pub frames: u64,
    pub deadline: Instant,
}

/// What a generator sent: frames handed to the interface (some may be dropped at a full
/// veth ring beyond it), over how long.
#[derive(Clone, Copy, Debug)]
pub struct Sent {
    pub frames: u64,
    pub seconds: f64,
}

impl Sent {
    pub fn rate(&self) -> f64 {
        self.frames as f64 / self.seconds.max(1e-9)
    }
}

/// A live-frames generator sending `frame` with `sources` out of a port, on a thread of its
/// own, until stopped or its budget is spent.
pub struct Generator {
    stop: Arc<AtomicBool>,
    sent: Arc<AtomicU64>,
    thread: Option<JoinHandle<Result<Sent>>>,
}

impl Generator {
    pub fn start(port: Port, frame: Vec<u8>, sources: Sources, budget: Budget) -> Result<Self> {
        let counter = rawbpf::per_cpu_counter()?;
        let program: OwnedFd = rawbpf::load_xdp(
            "live_generator",
            &rawbpf::generator(sources, &counter, &frame)?,
        )?;
        let stop = Arc::new(AtomicBool::new(false));
        let sent = Arc::new(AtomicU64::new(0));
        let (flag, count) = (Arc::clone(&stop), Arc::clone(&sent));
        let thread = std::thread::spawn(move || -> Result<Sent> {
            let _counter = counter;
            pin(0, port.cpu)?;
            enter(&port.namespace)?;
            let if_index = if_index(&port.interface)?;
            let start = Instant::now();
            let mut frames = 0u64;
            while !flag.load(Ordering::Relaxed)
                && frames < budget.frames
                && Instant::now() < budget.deadline
            {
                let repeat = u32::try_from((budget.frames - frames).min(FRAMES_PER_CALL.into()))?;
                rawbpf::send_live(&program, &frame, repeat, if_index)?;
                frames += u64::from(repeat);
                count.store(frames, Ordering::Relaxed);
            }
            Ok(Sent {
                frames,
                seconds: start.elapsed().as_secs_f64(),
            })
        });
        Ok(Self {
            stop,
            sent,
            thread: Some(thread),
        })
    }

    /// Frames sent so far.
    pub fn sent(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }

    /// Whether it has stopped (its budget spent, or an error).
    pub fn is_finished(&self) -> bool {
        self.thread.as_ref().is_none_or(JoinHandle::is_finished)
    }

    /// Stops it (after the syscall under way) and returns what it sent.
    pub fn stop(mut self) -> Result<Sent> {
        self.stop.store(true, Ordering::Relaxed);
        self.thread
            .take()
            .context("the generator was stopped already")?
            .join()
            .map_err(|_| anyhow::anyhow!("the generator thread panicked"))?
    }
}

impl Drop for Generator {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
