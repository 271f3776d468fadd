//! `cargo xtask bench live`: the real daemon forwarding live traffic, side by side with the
//! floor, in one run.
//!
//! A live-frames generator (BPF_PROG_RUN with BPF_F_TEST_XDP_LIVE_FRAMES) on CPU 0 sends
//! 60-byte UDP frames out of a veth in one namespace; the other end, in the director's
//! namespace, runs either the floor (an XDP program that swaps the MACs and returns XDP_TX:
//! the least a DR director can do) or the real `lvs director` daemon in native XDP, its NAPI
//! threaded and pinned to CPU 1. What the director sends back is counted by the generator
//! side's veth (`ethtool -S`, its XDP counters; an XDP_DROP program there receives it, which
//! native XDP_TX on a veth needs). Floor rounds come before and after the daemon's, and each
//! ratio is to their mean, so drift over the run hits both alike.
//!
//! Between them runs a second reference, the flow-table floor: the floor plus one lookup of
//! each frame's connection in an LRU hash map keyed and filled as the daemon's flow table
//! (inserting on a miss). It is the least any director that keeps its connections in the
//! kernel's LRU map pays per frame (lvs did, before its flow table became an array of
//! buckets), so lvs's rate against it shows what the array gains on top of all lvs's own
//! work.
//!
//! While it runs, the CPU latency limit (PM QoS) is held at 0 so idle CPUs poll rather than
//! halt: waking a halted vCPU costs tens of microseconds, long enough to overflow the veth's
//! ring. Every round is bounded in time, and the namespaces (and the daemon) are removed on
//! every exit path, an error or a panic included.

mod daemon;
pub(crate) mod net;

use std::{
    path::Path,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, ensure};
use daemon::Daemon;
use lvs_test_support::{
    live::{self, Budget, Generator, Port},
    rawbpf::{self, Sources},
    table_floor::{FlowTableFloor, IpVersion},
};
use net::Pair;

const GEN_NS: &str = "lvsbench-gen";
const DIR_NS: &str = "lvsbench-dir";
const GEN_IF: &str = "lbg0";
const DIR_IF: &str = "lbd0";
const GEN_CPU: usize = 0;
const DIRECTOR_CPU: usize = 1;
const DIRECTOR_ADDR: &str = "10.200.0.1/24";
const REAL_SERVER: &str = "10.200.0.2";
const VIP: [u8; 4] = [10, 200, 0, 100];
const VIP_PORT: u16 = 9;
const STATE_DIR: &str = "/run/lvs-bench-live";

/// How long each round runs.
#[derive(Clone, Copy)]
pub struct Timing {
    /// Traffic before counting (flows get into the table, caches warm).
    pub warmup: Duration,
    /// Traffic counted.
    pub window: Duration,
}

/// One traffic pattern and its target (the least fraction of the floor lvs must forward).
struct Pattern {
    name: &'static str,
    sources: Sources,
    target: f64,
}

fn patterns(flows: u32) -> [Pattern; 3] {
    [
        Pattern {
            name: "1k established flows",
            sources: Sources::Cycle { count: 1000 },
            target: 0.95,
        },
        Pattern {
            name: if flows == 1_000_000 {
                "1M established flows"
            } else {
                "many established flows"
            },
            sources: Sources::Cycle { count: flows },
            target: 0.85,
        },
        Pattern {
            name: "flood of new flows (random sources)",
            sources: Sources::Random,
            target: 0.75,
        },
    ]
}

/// What one round measured.
#[derive(Clone, Copy, Default)]
struct Rate {
    /// Frames per second the director's XDP program sent back (XDP_TX, the director's
    /// interface's `xdp_tx` counter): what it forwarded.
    forwarded: f64,
    /// Frames per second that reached the generator's side (its receive queue's XDP count);
    /// lower than `forwarded` when that side's ring overflows.
    delivered: f64,
    /// Frames per second the generator sent (some are dropped at a full veth ring).
    generated: f64,
}

/// The daemon's resource use over a round.
struct DaemonUse {
    rss_kib: u64,
    /// The part of it that is the daemon's own memory, without the pages of the flow tables
    /// it maps (kernel memory, counted below with the maps).
    anon_kib: u64,
    cpu_per_second: f64,
}

pub fn run(lvs: &Path, flows: u32, timing: Timing, repetitions: u32) -> Result<()> {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    ensure!(
        cpus >= 2,
        "the live bench needs two CPUs (generator and director)"
    );
    println!(
        "live bench: 60-byte UDP frames, generator on CPU {GEN_CPU}, director NAPI threaded on \
         CPU {DIRECTOR_CPU}; each round {:.1} s warm-up + {:.1} s counted",
        timing.warmup.as_secs_f64(),
        timing.window.as_secs_f64()
    );
    let _awake = KeepCpusAwake::new()?;
    let pair = Pair::up([GEN_NS, DIR_NS], [GEN_IF, DIR_IF])?;
    net::ip(DIR_NS, &["addr", "add", DIRECTOR_ADDR, "dev", DIR_IF])?;
    let gen_mac = net::mac(GEN_NS, GEN_IF)?;
    let dir_mac = net::mac(DIR_NS, DIR_IF)?;
    // The real server is the generator's interface: it answers the daemon's ARP requests (the
    // receiver program passes ARP to its stack) and receives what the director forwards.
    net::ip(
        GEN_NS,
        &["addr", "add", &format!("{REAL_SERVER}/24"), "dev", GEN_IF],
    )?;
    let receiver = rawbpf::load_xdp("bench_receive", &rawbpf::receiver())?;
    let _receiver_link = net::in_namespace(GEN_NS, || {
        rawbpf::attach_native(&receiver, net::if_index(GEN_IF)?)
    })?;
    // The generator side's NAPI (which receives what the director sends back) gets a thread
    // on the generator's core, so the director's core does the director's work only.
    net::thread_napi(GEN_NS, GEN_IF, GEN_CPU, false)?;
    // 60-byte UDP frames to the VIP; the generator rewrites the source (and the IPv4
    // checksum, which the director checks) of every frame.
    let frame = live::udp_frame(dir_mac, gen_mac, VIP, VIP_PORT);
    let patterns = patterns(flows);

    // Repetitions of floor, lvs, floor: the machine's rate drifts between rounds (other work,
    // the hypervisor), so each repetition's ratio compares rounds taken close together, and
    // the table shows the median of the repetitions.
    let mut ratios = vec![Vec::new(); patterns.len()];
    let mut floors = vec![Vec::new(); patterns.len()];
    let mut table_floors = vec![Vec::new(); patterns.len()];
    let mut lvs_rates = vec![Vec::new(); patterns.len()];
    let mut daemon_use = None;
    let mut map_memory = Vec::new();
    for repetition in 1..=repetitions {
        println!("repetition {repetition} of {repetitions}");
        let before = floor_rounds(&frame, &patterns, timing)?;
        let table_floor = flow_table_floor_rounds(&frame, &patterns, flows, timing)?;
        let (rates, usage, memory) = lvs_rounds(lvs, &frame, &patterns, flows, timing)?;
        let after = floor_rounds(&frame, &patterns, timing)?;
        for i in 0..patterns.len() {
            let floor = (before[i].forwarded + after[i].forwarded) / 2.0;
            floors[i].push(floor);
            table_floors[i].push(table_floor[i].forwarded);
            ratios[i].push(rates[i].forwarded / floor);
            lvs_rates[i].push(rates[i]);
        }
        daemon_use = daemon_use.or(usage);
        if map_memory.is_empty() {
            map_memory = memory;
        }
    }
    drop(pair);

    println!();
    println!(
        "{:<38} {:>10} {:>10} {:>9} {:>9} {:>6} {:>7} {:>8} {:>9}  ratios",
        "traffic",
        "floor Mpps",
        "table Mpps",
        "lvs Mpps",
        "delivered",
        "sent",
        "ratio",
        "target",
        "lvs/table"
    );
    for (i, pattern) in patterns.iter().enumerate() {
        let ratio = median(&ratios[i]);
        let pick = |f: fn(&Rate) -> f64| median(&lvs_rates[i].iter().map(f).collect::<Vec<_>>());
        let table = median(&table_floors[i]);
        println!(
            "{:<38} {:>10.2} {:>10.2} {:>9.2} {:>9.2} {:>6.2} {:>7.2} {:>8} {:>9.2}  {}{}",
            pattern.name,
            median(&floors[i]) / 1e6,
            table / 1e6,
            pick(|r| r.forwarded) / 1e6,
            pick(|r| r.delivered) / 1e6,
            pick(|r| r.generated) / 1e6,
            ratio,
            format!(">={:.2}", pattern.target),
            pick(|r| r.forwarded) / table,
            ratios[i]
                .iter()
                .map(|r| format!("{r:.2}"))
                .collect::<Vec<_>>()
                .join(" "),
            if ratio >= pattern.target {
                ""
            } else {
                "  (not met)"
            }
        );
    }
    println!(
        "medians of {repetitions} repetitions (ratios: each repetition's). floor = an XDP program \
         that swaps the MACs and returns XDP_TX, mean of a round before and one after lvs's; \
         table = the floor plus one lookup (an insert on a miss) in an LRU hash map keyed and \
         filled as lvs's flow table, the least a director keeping connections in one does; \
         Mpps forwarded = the director's XDP_TX count; delivered = what reached the \
         generator's side; sent = what the generator sent (the rest overflowed the veth's ring)"
    );
    if let Some(daemon) = daemon_use {
        println!(
            "daemon with {flows} live flows: RSS {:.1} MiB ({:.1} MiB its own, the rest the \
             flow tables' pages it maps), CPU {:.1} ms per second ({:.1}% of a core)",
            daemon.rss_kib as f64 / 1024.0,
            daemon.anon_kib as f64 / 1024.0,
            daemon.cpu_per_second * 1e3,
            daemon.cpu_per_second * 100.0
        );
    }
    for line in map_memory {
        println!("{line}");
    }
    Ok(())
}

/// Holds the PM QoS CPU latency limit at 0 while it lives, so idle CPUs poll instead of
/// halting. A halted vCPU takes tens of microseconds to wake, during which the generator fills
/// the director's veth ring and frames are lost: without this, the director's rate (the
/// floor's too) measures wake-up latency rather than forwarding. Closing the file restores
/// the system's limit.
struct KeepCpusAwake {
    _file: std::fs::File,
}

impl KeepCpusAwake {
    fn new() -> Result<Self> {
        use std::io::Write as _;
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .open("/dev/cpu_dma_latency")
            .context("opening /dev/cpu_dma_latency")?;
        file.write_all(&0i32.to_ne_bytes())
            .context("setting the CPU latency limit to 0")?;
        Ok(Self { _file: file })
    }
}

/// The floor's rounds: the floor program attached once, every pattern in turn, detached.
fn floor_rounds(frame: &[u8], patterns: &[Pattern], timing: Timing) -> Result<Vec<Rate>> {
    let floor = rawbpf::load_xdp("bench_floor", &rawbpf::mac_swap())?;
    let link = net::in_namespace(DIR_NS, || {
        rawbpf::attach_native(&floor, net::if_index(DIR_IF)?)
    })?;
    net::thread_napi(DIR_NS, DIR_IF, DIRECTOR_CPU, true)?;
    let rates = reference_rounds("floor", frame, patterns, timing, |_| Ok(()))?;
    drop(link);
    Ok(rates)
}

/// A reference program's rounds, once it is attached: every pattern in turn, after
/// `prepare` for it, each of which must forward something.
fn reference_rounds(
    label: &str,
    frame: &[u8],
    patterns: &[Pattern],
    timing: Timing,
    mut prepare: impl FnMut(&Pattern) -> Result<()>,
) -> Result<Vec<Rate>> {
    let mut rates = Vec::new();
    for pattern in patterns {
        prepare(pattern)?;
        let rate = measure(frame, pattern, timing, None)?.0;
        ensure!(
            rate.forwarded > 0.0,
            "the {label} forwarded nothing for {}",
            pattern.name
        );
        println!(
            "  {label:<5}, {:<36} {:>6.2} Mpps (generator {:.2})",
            pattern.name,
            rate.forwarded / 1e6,
            rate.generated / 1e6
        );
        rates.push(rate);
    }
    Ok(rates)
}

/// The flow-table floor's rounds: a table keyed as the daemon's and sized as an LRU map needs,
/// empty for the first pattern and filled with the large pattern's flows before it, as the
/// daemon's is.
fn flow_table_floor_rounds(
    frame: &[u8],
    patterns: &[Pattern],
    flows: u32,
    timing: Timing,
) -> Result<Vec<Rate>> {
    let floor = FlowTableFloor::load(IpVersion::V4, daemon::lru_table_size(flows))?;
    let link = net::in_namespace(DIR_NS, || {
        rawbpf::attach_native(floor.program(), net::if_index(DIR_IF)?)
    })?;
    net::thread_napi(DIR_NS, DIR_IF, DIRECTOR_CPU, true)?;
    let rates = reference_rounds("table", frame, patterns, timing, |pattern| {
        match pattern.sources {
            Sources::Cycle { count } if count > 1000 => floor.fill(&daemon::flow_keys(count)),
            _ => Ok(()),
        }
    })?;
    drop(link);
    Ok(rates)
}

fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    match sorted.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => sorted[n / 2],
        n => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
    }
}

type LvsResults = (Vec<Rate>, Option<DaemonUse>, Vec<String>);

/// The daemon's rounds: started once, every pattern in turn, stopped.
fn lvs_rounds(
    lvs: &Path,
    frame: &[u8],
    patterns: &[Pattern],
    flows: u32,
    timing: Timing,
) -> Result<LvsResults> {
    let mut daemon = Daemon::start(lvs, flows)?;
    daemon.wait_until_forwarding(Duration::from_secs(20))?;
    net::thread_napi(DIR_NS, DIR_IF, DIRECTOR_CPU, true)?;
    let mut rates = Vec::new();
    let mut daemon_use = None;
    let mut map_memory = Vec::new();
    for (i, pattern) in patterns.iter().enumerate() {
        if let Sources::Cycle { count } = pattern.sources
            && count > 1000
        {
            let start = Instant::now();
            daemon::prefill_flows(count)?;
            println!(
                "  put {count} flows into the daemon's flow table in {:.1} s",
                start.elapsed().as_secs_f64()
            );
        }
        let watch = (i == 1).then_some(daemon.pid());
        let (rate, usage) = measure(frame, pattern, timing, watch)?;
        println!(
            "  lvs,   {:<36} {:>6.2} Mpps (generator {:.2})",
            pattern.name,
            rate.forwarded / 1e6,
            rate.generated / 1e6
        );
        if i == 1 {
            daemon_use = usage;
            map_memory = daemon::flow_map_memory(flows)
                .unwrap_or_else(|error| vec![format!("map memory: could not read it: {error:#}")]);
        }
        rates.push(rate);
    }
    daemon.stop()?;
    Ok((rates, daemon_use, map_memory))
}

/// Runs the generator with `pattern` for the warm-up and the window, counting the window.
/// With `watch`, also the CPU and memory of that process over the window.
fn measure(
    frame: &[u8],
    pattern: &Pattern,
    timing: Timing,
    watch: Option<u32>,
) -> Result<(Rate, Option<DaemonUse>)> {
    let port = Port {
        namespace: GEN_NS.to_owned(),
        interface: GEN_IF.to_owned(),
        cpu: GEN_CPU,
    };
    let budget = Budget {
        frames: u64::MAX,
        deadline: Instant::now() + timing.warmup + timing.window + Duration::from_secs(10),
    };
    let generator = Generator::start(port, frame.to_vec(), pattern.sources, budget)?;
    std::thread::sleep(timing.warmup);
    let start = Instant::now();
    let before = (
        xdp_tx(DIR_NS, DIR_IF)?,
        xdp_packets(GEN_NS, GEN_IF)?,
        watch.map(daemon::cpu_seconds).transpose()?,
    );
    std::thread::sleep(timing.window);
    let after = (
        xdp_tx(DIR_NS, DIR_IF)?,
        xdp_packets(GEN_NS, GEN_IF)?,
        watch.map(daemon::cpu_seconds).transpose()?,
    );
    let elapsed = start.elapsed().as_secs_f64();
    let usage = match (watch, before.2, after.2) {
        (Some(pid), Some(cpu_before), Some(cpu_after)) => Some(DaemonUse {
            rss_kib: daemon::status_kib(pid, "VmRSS")?,
            anon_kib: daemon::status_kib(pid, "RssAnon")?,
            cpu_per_second: (cpu_after - cpu_before) / elapsed,
        }),
        _ => None,
    };
    let generated = generator.stop()?.rate();
    Ok((
        Rate {
            forwarded: (after.0 - before.0) as f64 / elapsed,
            delivered: (after.1 - before.1) as f64 / elapsed,
            generated,
        },
        usage,
    ))
}

/// Frames XDP saw on an interface's receive queues.
fn xdp_packets(namespace: &str, interface: &str) -> Result<u64> {
    live::rx_queue_sum(namespace, interface, "_xdp_packets")
}

/// Frames an interface's XDP program returned XDP_TX for, on all its receive queues.
fn xdp_tx(namespace: &str, interface: &str) -> Result<u64> {
    live::rx_queue_sum(namespace, interface, "_xdp_tx")
}
