//! The scale-out lab: a router namespace running BIRD with ECMP, directors peering with it
//! over BGP (each running BIRD with `lvs bgp-config`'s snippet, and `lvs director`), real
//! servers on the directors' segment, and a client behind the router.
//!
//! ```text
//!  client 10.78.1.2 ── eth1 router 10.78.1.1 / 10.78.0.1 (BIRD, ECMP, L4 hash)
//!                                  │ eth0
//!                  ┌───────── bridge in P-sw ─────────┐
//!           d1 10.78.0.11 … dN         s1 10.78.0.21 … sN (VIP on lo)
//! ```
//!
//! The real servers reply to the client directly, through the router (their default route).
//! The bridge floods unknown unicast to every port, as a switch does: frames for a director
//! that died reach the others, whose program passes frames for another MAC to the kernel
//! (`pass_other_host`), which drops them.
//! Every namespace is `P-<host>`; state (configs, logs, BIRD's sockets and pid files) lives in
//! `/run/lvs-ecmp/P/`. Dropping the lab stops every process it started (BIRDs by their pid
//! files, directors and servers by their child handles), removes the directors' pins and
//! deletes the namespaces, whatever state a failing test left.
//!
//! This is a module of the scale-out test alone; the coordinator may merge it with the
//! two-director lab of `lvs-test-support` later.

use std::{
    net::Ipv4Addr,
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    thread::sleep,
    time::{Duration, Instant},
};

pub const VIP: Ipv4Addr = Ipv4Addr::new(10, 78, 9, 100);
pub const ROUTER: Ipv4Addr = Ipv4Addr::new(10, 78, 0, 1);
pub const CLIENT: Ipv4Addr = Ipv4Addr::new(10, 78, 1, 2);
pub const HOLD_TIME: u16 = 3;
const ROUTER_AS: u32 = 65000;
const DIRECTOR_AS: u32 = 65001;

pub fn director_address(n: u8) -> Ipv4Addr {
    Ipv4Addr::new(10, 78, 0, 10 + n)
}

pub fn server_address(n: u8) -> Ipv4Addr {
    Ipv4Addr::new(10, 78, 0, 20 + n)
}

pub struct EcmpLab {
    prefix: String,
    pub state: PathBuf,
    directors: u8,
    servers: u8,
    namespaces: Vec<String>,
    /// `lvs director` of each director, by number (index n-1).
    lvs: Vec<Option<Child>>,
    /// The real servers' programs.
    programs: Vec<Child>,
    /// BIRDs' pid files.
    birds: Vec<PathBuf>,
}

/// Runs a command; its output, or why it failed.
fn run(program: &str, args: &[&str]) -> Result<Output, String> {
    let output = Command::new(program)
        .args(args)
        .output()
        .map_err(|e| format!("{program} {}: {e}", args.join(" ")))?;
    if output.status.success() {
        Ok(output)
    } else {
        Err(format!(
            "{program} {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr)
        ))
    }
}

impl EcmpLab {
    /// Builds the lab: namespaces, links, addresses, routes, sysctls. Nothing runs yet.
    pub fn up(prefix: &str, directors: u8, servers: u8) -> Result<Self, String> {
        let state = PathBuf::from("/run/lvs-ecmp").join(prefix);
        let mut lab = Self {
            prefix: prefix.to_owned(),
            state: state.clone(),
            directors,
            servers,
            namespaces: Vec::new(),
            lvs: (0..directors).map(|_| None).collect(),
            programs: Vec::new(),
            birds: Vec::new(),
        };
        // Leftovers of an earlier run with this prefix go first.
        lab.namespaces = lab.hosts().iter().map(|h| lab.ns(h)).collect();
        lab.namespaces.push(lab.ns("sw"));
        for ns in &lab.namespaces {
            let _ = run("ip", &["netns", "del", ns]);
        }
        let _ = std::fs::remove_dir_all(&state);
        std::fs::create_dir_all(&state).map_err(|e| format!("{}: {e}", state.display()))?;
        lab.build()?;
        Ok(lab)
    }

    fn hosts(&self) -> Vec<String> {
        let mut hosts = vec!["router".to_owned(), "client".to_owned()];
        hosts.extend((1..=self.directors).map(|n| format!("d{n}")));
        hosts.extend((1..=self.servers).map(|n| format!("s{n}")));
        hosts
    }

    pub fn ns(&self, host: &str) -> String {
        format!("{}-{host}", self.prefix)
    }

    /// Runs a command in a host's namespace.
    pub fn exec(&self, host: &str, args: &[&str]) -> Result<Output, String> {
        let ns = self.ns(host);
        let mut all = vec!["netns", "exec", ns.as_str()];
        all.extend_from_slice(args);
        run("ip", &all)
    }

    fn ip(&self, host: &str, args: &str) -> Result<(), String> {
        let ns = self.ns(host);
        let mut all = vec!["-n", ns.as_str()];
        all.extend(args.split_whitespace());
        run("ip", &all).map(|_| ())
    }

    fn sysctl(&self, host: &str, settings: &[&str]) -> Result<(), String> {
        let mut args = vec!["sysctl", "-qw"];
        args.extend_from_slice(settings);
        self.exec(host, &args).map(|_| ())
    }

    fn build(&self) -> Result<(), String> {
        for ns in &self.namespaces {
            run("ip", &["netns", "add", ns])?;
        }
        for host in self.hosts().iter().chain(std::iter::once(&"sw".to_owned())) {
            self.ip(host, "link set lo up")?;
            self.sysctl(
                host,
                &[
                    "net.ipv4.conf.all.rp_filter=0",
                    "net.ipv4.conf.default.rp_filter=0",
                ],
            )?;
        }
        self.ip("sw", "link add br0 type bridge")?;
        self.ip("sw", "link set br0 up")?;
        let mut on_segment = vec![("router".to_owned(), ROUTER)];
        on_segment.extend((1..=self.directors).map(|n| (format!("d{n}"), director_address(n))));
        on_segment.extend((1..=self.servers).map(|n| (format!("s{n}"), server_address(n))));
        for (host, address) in &on_segment {
            let ns = self.ns(host);
            self.ip(
                "sw",
                &format!("link add {host} type veth peer name eth0 netns {ns}"),
            )?;
            self.ip("sw", &format!("link set {host} master br0 up"))?;
            self.ip(host, "link set eth0 up")?;
            self.ip(host, &format!("addr add {address}/24 dev eth0"))?;
            // Generic XDP and partial checksums do not mix on veth; real NICs fill them in.
            self.exec(host, &["ethtool", "-K", "eth0", "tx", "off"])?;
        }
        let client_ns = self.ns("client");
        self.ip(
            "router",
            &format!("link add eth1 type veth peer name eth0 netns {client_ns}"),
        )?;
        self.ip("router", "link set eth1 up")?;
        self.ip("router", "addr add 10.78.1.1/24 dev eth1")?;
        self.ip("client", "link set eth0 up")?;
        self.ip("client", &format!("addr add {CLIENT}/24 dev eth0"))?;
        self.ip("client", "route add default via 10.78.1.1")?;
        self.exec("client", &["ethtool", "-K", "eth0", "tx", "off"])?;
        // The router spreads flows over the directors by their L4 hash.
        self.sysctl(
            "router",
            &[
                "net.ipv4.ip_forward=1",
                "net.ipv4.fib_multipath_hash_policy=1",
            ],
        )?;
        for n in 1..=self.servers {
            let host = format!("s{n}");
            self.ip(&host, &format!("addr add {VIP}/32 dev lo"))?;
            self.sysctl(
                &host,
                &[
                    "net.ipv4.conf.all.arp_ignore=1",
                    "net.ipv4.conf.all.arp_announce=2",
                ],
            )?;
            self.ip(&host, &format!("route add default via {ROUTER}"))?;
        }
        for n in 1..=self.directors {
            // The health checks and sync stay on the segment; the client is behind the router.
            self.ip(
                &format!("d{n}"),
                &format!("route add 10.78.1.0/24 via {ROUTER}"),
            )?;
        }
        Ok(())
    }

    /// Starts a program in a host's namespace; it is stopped with the lab.
    pub fn spawn(&mut self, host: &str, args: &[&str]) -> Result<(), String> {
        let child = Command::new("ip")
            .args(["netns", "exec", &self.ns(host)])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("starting {args:?} on {host}: {e}"))?;
        self.programs.push(child);
        Ok(())
    }

    /// BIRD on `host` with `config`, its control socket and pid file in the state directory.
    fn start_bird(&mut self, host: &str, config: &str) -> Result<(), String> {
        let conf = self.state.join(format!("{host}.bird.conf"));
        std::fs::write(&conf, config).map_err(|e| format!("{}: {e}", conf.display()))?;
        let socket = self.state.join(format!("{host}.bird.ctl"));
        let pid = self.state.join(format!("{host}.bird.pid"));
        self.exec(
            host,
            &[
                "bird",
                "-c",
                conf.to_str().unwrap(),
                "-s",
                socket.to_str().unwrap(),
                "-P",
                pid.to_str().unwrap(),
            ],
        )?;
        self.birds.push(pid);
        Ok(())
    }

    /// The router's BIRD: a BGP session with each director, the best paths merged into
    /// one multipath route in the kernel.
    pub fn start_router(&mut self) -> Result<(), String> {
        let mut config = format!(
            "router id {ROUTER};\n\
             protocol device {{ scan time 10; }}\n\
             protocol kernel {{\n    merge paths on;\n    ipv4 {{ import none; export all; }};\n}}\n"
        );
        for n in 1..=self.directors {
            config += &format!(
                "protocol bgp d{n} {{\n    local {ROUTER} as {ROUTER_AS};\n    \
                 neighbor {} as {DIRECTOR_AS};\n    hold time {HOLD_TIME};\n    \
                 keepalive time 1;\n    connect retry time 2;\n    error wait time 1, 10;\n    \
                 ipv4 {{ import all; export none; }};\n}}\n",
                director_address(n)
            );
        }
        self.start_bird("router", &config)
    }

    /// A director's BIRD, from `lvs bgp-config`.
    pub fn start_director_bird(&mut self, lvs: &Path, n: u8) -> Result<(), String> {
        let output = run(
            lvs.to_str().unwrap(),
            &[
                "bgp-config",
                "--local-as",
                &DIRECTOR_AS.to_string(),
                "--neighbor",
                &ROUTER.to_string(),
                "--neighbor-as",
                &ROUTER_AS.to_string(),
                "--router-id",
                &director_address(n).to_string(),
                "--hold-time",
                &HOLD_TIME.to_string(),
            ],
        )?;
        self.start_bird(&format!("d{n}"), &String::from_utf8_lossy(&output.stdout))
    }

    pub fn control_socket(&self, n: u8) -> PathBuf {
        self.state.join(format!("d{n}.sock"))
    }

    pub fn config_path(&self, n: u8) -> PathBuf {
        self.state.join(format!("d{n}.toml"))
    }

    pub fn log_path(&self, n: u8) -> PathBuf {
        self.state.join(format!("d{n}.log"))
    }

    /// Starts `lvs director` on director `n` with its config file (`config_path`); in its
    /// network namespace only (`nsenter --net`), as the demo lab starts it.
    pub fn start_lvs(&mut self, lvs: &Path, n: u8) -> Result<(), String> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path(n))
            .map_err(|e| format!("director log: {e}"))?;
        let log_err = log.try_clone().map_err(|e| format!("director log: {e}"))?;
        let child = Command::new("nsenter")
            .arg(format!("--net=/run/netns/{}", self.ns(&format!("d{n}"))))
            .arg(lvs)
            .args(["director", "--config"])
            .arg(self.config_path(n))
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            .spawn()
            .map_err(|e| format!("starting lvs on d{n}: {e}"))?;
        self.lvs[usize::from(n - 1)] = Some(child);
        Ok(())
    }

    /// Stops director `n`'s lvs with `signal` (-INT for good, -TERM for a restart) and waits.
    pub fn stop_lvs(&mut self, n: u8, signal: &str) -> Result<(), String> {
        let Some(mut child) = self.lvs[usize::from(n - 1)].take() else {
            return Ok(());
        };
        let _ = Command::new("kill")
            .args([signal, &child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return Ok(());
            }
            sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
        Err(format!("lvs on d{n} did not stop within 5 s"))
    }

    /// The directors the router sends the VIP to now.
    pub fn next_hops(&self) -> Vec<Ipv4Addr> {
        let Ok(output) = self.exec("router", &["ip", "route", "show", &VIP.to_string()]) else {
            return Vec::new();
        };
        let text = String::from_utf8_lossy(&output.stdout);
        let mut hops: Vec<Ipv4Addr> = text
            .split_whitespace()
            .collect::<Vec<_>>()
            .windows(2)
            .filter(|w| w[0] == "via")
            .filter_map(|w| w[1].parse().ok())
            .collect();
        hops.sort();
        hops
    }

    /// Waits until the router's next hops are `want`; how long it took, or `None` after
    /// `timeout`.
    pub fn wait_for_next_hops(&self, want: &[Ipv4Addr], timeout: Duration) -> Option<Duration> {
        let start = Instant::now();
        while start.elapsed() < timeout {
            if self.next_hops() == want {
                return Some(start.elapsed());
            }
            sleep(Duration::from_millis(10));
        }
        None
    }

    /// Director `n`'s status document.
    pub fn status(&self, lvs: &Path, n: u8) -> Result<serde_json::Value, String> {
        let socket = self.control_socket(n);
        let output = run(
            lvs.to_str().unwrap(),
            &["status", "--json", "--socket", socket.to_str().unwrap()],
        )?;
        serde_json::from_slice(&output.stdout).map_err(|e| format!("status: {e}"))
    }

    /// Director `n`'s log, for failure messages.
    pub fn log(&self, n: u8) -> String {
        std::fs::read_to_string(self.log_path(n)).unwrap_or_default()
    }

    /// The pin directory of director `n`'s data plane in the host's bpffs.
    fn pin_dir(&self, n: u8) -> Option<PathBuf> {
        use std::os::unix::fs::MetadataExt as _;
        let namespace = PathBuf::from("/run/netns").join(self.ns(&format!("d{n}")));
        let inode = std::fs::metadata(namespace).ok()?.ino();
        Some(PathBuf::from(format!("/sys/fs/bpf/lvs/netns-{inode}")))
    }
}

impl Drop for EcmpLab {
    fn drop(&mut self) {
        for n in 1..=self.directors {
            let _ = self.stop_lvs(n, "-INT");
        }
        for pid_file in &self.birds {
            if let Ok(pid) = std::fs::read_to_string(pid_file) {
                let pid = pid.trim();
                // Only a BIRD: the pid file is ours, but a pid can be reused.
                let is_bird = std::fs::read_to_string(format!("/proc/{pid}/comm"))
                    .is_ok_and(|comm| comm.trim() == "bird");
                if is_bird {
                    let _ = Command::new("kill").args(["-TERM", pid]).status();
                }
            }
        }
        for child in &mut self.programs {
            let _ = child.kill();
            let _ = child.wait();
        }
        for n in 1..=self.directors {
            if let Some(dir) = self.pin_dir(n) {
                let _ = std::fs::remove_dir_all(dir);
            }
        }
        // BIRD exits at once on SIGTERM; give it a moment before its namespace goes.
        sleep(Duration::from_millis(200));
        for ns in &self.namespaces {
            let _ = run("ip", &["netns", "del", ns]);
        }
        let _ = std::fs::remove_dir_all(&self.state);
    }
}
