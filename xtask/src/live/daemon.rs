//! The `lvs director` daemon under test: starting and stopping it, its resource use, and its
//! maps (the flow table's memory, and filling it before the large pattern's round).

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail, ensure};

use lvs_test_support::{lab, rawbpf};

use super::{DIR_IF, DIR_NS, REAL_SERVER, STATE_DIR, VIP, VIP_PORT, net};

/// The `lvs director` daemon in the director's namespace; stopped on drop.
pub(super) struct Daemon {
    child: Option<Child>,
    lvs: PathBuf,
    socket: PathBuf,
}

impl Daemon {
    pub(super) fn start(lvs: &Path, flows: u32) -> Result<Self> {
        std::fs::create_dir_all(STATE_DIR)?;
        let socket = Path::new(STATE_DIR).join("lvs.sock");
        let config = Path::new(STATE_DIR).join("lvs.toml");
        let table = flow_table_size(flows);
        std::fs::write(
            &config,
            format!(
                "[director]\ninterface = \"{DIR_IF}\"\nxdp_mode = \"native\"\n\
                 control_socket = \"{}\"\nflow_table_size = {table}\n\n\
                 [[virtual_server]]\naddress = \"{}\"\nport = {VIP_PORT}\nprotocol = \"UDP\"\n\
                 lb_algo = \"wlc\"\n[[virtual_server.real_server]]\naddress = \"{REAL_SERVER}\"\n",
                socket.display(),
                std::net::Ipv4Addr::from(VIP),
            ),
        )?;
        let log = std::fs::File::create(Path::new(STATE_DIR).join("director.log"))?;
        let child = Command::new("ip")
            .args(["netns", "exec", DIR_NS])
            .arg(lvs)
            .args(["director", "--config"])
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {}", lvs.display()))?;
        Ok(Self {
            child: Some(child),
            lvs: lvs.to_owned(),
            socket,
        })
    }

    /// `ip netns exec` execs the daemon, so the child's pid is the daemon's.
    pub(super) fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    pub(super) fn wait_until_forwarding(&mut self, limit: Duration) -> Result<()> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                bail!(
                    "the director exited ({status}); its log is {STATE_DIR}/director.log:\n{}",
                    std::fs::read_to_string(Path::new(STATE_DIR).join("director.log"))
                        .unwrap_or_default()
                );
            }
            let output = Command::new(&self.lvs)
                .args(["status", "--json", "--socket"])
                .arg(&self.socket)
                .output()?;
            if output.status.success()
                && let Ok(status) = serde_json::from_slice(&output.stdout)
                && lab::forwarding_count(&status) >= 1
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("the director was not forwarding within {limit:?}");
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    pub(super) fn stop(&mut self) -> Result<()> {
        let Some(mut child) = self.child.take() else {
            return Ok(());
        };
        // SAFETY: signalling our own child by its pid.
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if child.try_wait()?.is_some() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        child.kill()?;
        child.wait()?;
        bail!("the director did not stop within 10 s of SIGTERM; killed")
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Err(error) = self.stop() {
            eprintln!("stopping the director: {error:#}");
        }
    }
}

/// User plus system CPU seconds of a process so far.
pub(super) fn cpu_seconds(pid: u32) -> Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the command name (which is in parentheses and may hold spaces).
    let rest = stat.rsplit_once(')').context("/proc/PID/stat")?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of stat, 12 and 13 after the name and state.
    let ticks: u64 = fields[11].parse::<u64>()? + fields[12].parse::<u64>()?;
    // SAFETY: sysconf has no preconditions.
    let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    Ok(ticks as f64 / per_second)
}

/// A field of /proc/PID/status in KiB (`VmRSS`, `RssAnon`, ...).
pub(super) fn status_kib(pid: u32, field: &str) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
        .with_context(|| format!("{field} in /proc/PID/status"))
}

/// The daemon's maps by name, from the program attached to the director's interface.
fn daemon_maps() -> Result<Vec<serde_json::Value>> {
    let link = net::run("ip", &["-n", DIR_NS, "-j", "link", "show", DIR_IF])?;
    let link: serde_json::Value = serde_json::from_slice(&link.stdout)?;
    let prog_id = link[0]["xdp"]["prog"]["id"]
        .as_u64()
        .context("no XDP program on the director's interface")?;
    let prog = net::run(
        "bpftool",
        &["-j", "prog", "show", "id", &prog_id.to_string()],
    )?;
    let prog: serde_json::Value = serde_json::from_slice(&prog.stdout)?;
    prog["map_ids"]
        .as_array()
        .context("map_ids")?
        .iter()
        .map(|id| {
            let id = id.as_u64().context("a map id")?;
            let map = net::run("bpftool", &["-j", "map", "show", "id", &id.to_string()])?;
            Ok(serde_json::from_slice(&map.stdout)?)
        })
        .collect()
}

/// Puts the generator's first `count` flows into the daemon's flow table, as established
/// flows of the real server the 1k round's flows went to. Sent live, a million first packets
/// would be spread over several seconds (most frames are dropped at the veth's ring while the
/// director inserts), so the round would measure new flows rather than established ones.
pub(super) fn prefill_flows(count: u32) -> Result<()> {
    use lvs_common::{
        Ipv4Bytes,
        flow::{FlowEntry, FlowState, Settings},
        mapped::MappedFlowTable,
    };

    let maps = daemon_maps()?;
    let find = |name: &str| {
        maps.iter()
            .find(|map| map["name"] == name)
            .with_context(|| format!("the daemon has no {name} map"))
    };
    let flows = find("FLOWS")?;
    let id = flows["id"].as_u64().context("the FLOWS map's id")?;
    let buckets = flows["max_entries"]
        .as_u64()
        .context("the FLOWS map's size")?;
    let settings_id = find("SETTINGS")?["id"]
        .as_u64()
        .context("the SETTINGS map's id")?;
    let (_, settings) =
        rawbpf::first_entry::<u32, Settings>(&rawbpf::map_by_id(u32::try_from(settings_id)?)?)?
            .context("the daemon has no settings")?;
    let flows = rawbpf::map_by_id(u32::try_from(id)?)?;
    let buckets = u32::try_from(buckets)?;
    let mapped = MappedFlowTable::<Ipv4Bytes>::map(&flows, buckets, settings.flow_hash_seed)
        .context("mapping the daemon's flow table")?;
    let table = mapped.table();
    let mut template = None;
    table.read_from(0, 1, |_, entry| template = Some(entry));
    let template =
        template.context("the flow table is empty: the 1k round should have filled it")?;
    let now = net::coarse_monotonic_ns();
    let value = FlowEntry {
        last_seen_ns: now,
        state: FlowState::Udp as u8,
        ..template
    };
    let placed = flow_keys(count)
        .iter()
        .filter(|key| table.insert(key, &value, now, &settings))
        .count();
    ensure!(
        placed == count as usize,
        "only {placed} of {count} flows were placed"
    );
    Ok(())
}

/// The daemon's `flow_table_size` for a run with `flows` established flows in its large
/// pattern: the connections it holds, which its array keeps in twice as many slots, so that
/// established flows do not compete for room (a few in a hundred thousand find both their
/// buckets full at this size).
pub(super) fn flow_table_size(flows: u32) -> u32 {
    flows.max(262_144)
}

/// The LRU flow-table floor's size for the same run: room for every flow twice over, as an
/// LRU map needs (it starts evicting before it is full, from each CPU's share of free
/// entries).
pub(super) fn lru_table_size(flows: u32) -> u32 {
    flows.saturating_mul(2).max(262_144)
}

/// The flow-table keys of the generator's first `count` flows (`Sources::Cycle`).
pub(super) fn flow_keys(count: u32) -> Vec<lvs_common::flow::FlowKey> {
    (0..count)
        .map(|n| {
            let (src_addr, src_port) = rawbpf::flow_source(n);
            lvs_common::flow::FlowKey {
                src_addr,
                dst_addr: VIP,
                src_port,
                dst_port: VIP_PORT.to_be_bytes(),
                protocol: 17,
                _pad: [0; 3],
            }
        })
        .collect()
}

/// The kernel memory of the daemon's maps, from bpftool: the IPv4 flow table's in total and
/// per slot and per live flow, and all maps together.
pub(super) fn flow_map_memory(flows: u32) -> Result<Vec<String>> {
    let mut lines = Vec::new();
    let mut total = 0u64;
    for map in daemon_maps()? {
        let bytes = map["bytes_memlock"].as_u64().unwrap_or(0);
        total += bytes;
        if map["name"] == "FLOWS" {
            let buckets = map["max_entries"].as_u64().unwrap_or(1).max(1);
            let slots = buckets * lvs_common::flow_table::FLOW_BUCKET_WAYS as u64;
            lines.push(format!(
                "IPv4 flow table: {:.1} MiB of kernel memory for {slots} slots ({buckets} \
                 buckets): {} bytes per slot, {} per live flow with {flows} live",
                bytes as f64 / (1 << 20) as f64,
                bytes / slots,
                bytes / u64::from(flows.max(1)),
            ));
        }
    }
    lines.push(format!(
        "all maps of the program: {:.1} MiB",
        total as f64 / (1 << 20) as f64
    ));
    Ok(lines)
}
