//! Drives the demo lab (`scripts/lab.sh`) and a director running in it.
//!
//! Shared by the end-to-end tests and `cargo xtask run`, so the demo shows exactly what the
//! tests check. Only std and serde_json are used, and everything it starts is stopped and
//! removed on drop, even after a panic.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    thread::sleep,
    time::{Duration, Instant},
};

/// The lab's VIP, as `scripts/lab.sh` sets it up.
pub const VIP: &str = "10.77.0.100";
/// The IPv6 VIP of a lab built with `Shape::ipv6`.
pub const VIP6: &str = "fd77::100";
/// The client's IPv6 address, in a lab built with `Shape::ipv6`.
pub const CLIENT6: &str = "fd77::2";
/// The lab client's address.
pub const CLIENT: &str = "10.77.0.2";

/// A running lab; dropping it stops the director and removes the namespaces.
pub struct Lab {
    repo: PathBuf,
    prefix: String,
    state_dir: PathBuf,
    director: Option<Child>,
    keep: bool,
}

/// A request held open by `Lab::held_request`.
pub struct HeldRequest {
    child: Child,
    stdout: std::io::BufReader<std::process::ChildStdout>,
}

impl HeldRequest {
    /// Completes the request; returns the HTTP status and the body's size.
    pub fn finish(mut self) -> Result<(u16, usize), String> {
        use std::io::{BufRead as _, Write as _};
        let mut stdin = self.child.stdin.take().ok_or("no stdin")?;
        stdin
            .write_all(b"go\n")
            .map_err(|e| format!("finishing the held request: {e}"))?;
        drop(stdin);
        let mut line = String::new();
        self.stdout
            .read_line(&mut line)
            .map_err(|e| format!("reading the answer: {e}"))?;
        let output = self.child.wait_with_output().map_err(|e| e.to_string())?;
        let mut fields = line.split_whitespace();
        match (
            fields.next().and_then(|f| f.parse().ok()),
            fields.next().and_then(|f| f.parse().ok()),
        ) {
            (Some(status), Some(size)) => Ok((status, size)),
            _ => Err(format!(
                "the held request failed: {line:?} {}",
                String::from_utf8_lossy(&output.stderr)
            )),
        }
    }
}

/// What a batch of client requests saw.
#[derive(Debug, Default)]
pub struct Requests {
    /// Answers by body (each real server names itself).
    pub answers: BTreeMap<String, usize>,
    pub failures: Vec<String>,
}

impl Lab {
    /// Builds the lab with `real_servers` real servers under namespace prefix `prefix`.
    pub fn up(repo: &Path, prefix: &str, real_servers: u8) -> Result<Self, String> {
        Self::up_with(
            repo,
            prefix,
            Shape {
                real_servers,
                ..Shape::default()
            },
        )
    }

    /// Builds the lab in the given shape: a sorry server (`SORRY_SERVER`, answering "sorry"),
    /// a second director (host "dir2", `DIRECTOR2`), a flooder (host "flood", whose switch
    /// port takes a live-frames generator's XDP_TX frames), or any of them.
    pub fn up_with(repo: &Path, prefix: &str, shape: Shape) -> Result<Self, String> {
        let lab = Self {
            repo: repo.to_owned(),
            prefix: prefix.to_owned(),
            state_dir: PathBuf::from("/run/lvs-lab").join(prefix),
            director: None,
            keep: false,
        };
        let count = shape.real_servers.to_string();
        let directors = shape.directors.to_string();
        let mut args = vec![
            "up",
            "--prefix",
            prefix,
            "--real-servers",
            &count,
            "--directors",
            &directors,
        ];
        if shape.sorry_server {
            args.push("--sorry-server");
        }
        if shape.flooder {
            args.push("--flooder");
        }
        if shape.ipv6 {
            args.push("--ipv6");
        }
        lab.script(&args)?;
        Ok(lab)
    }

    /// Stops the HTTP server of one server ("rs1".., or "sorry"); its host stays up.
    pub fn stop_http(&self, server: &str) -> Result<(), String> {
        self.script(&["http-stop", "--prefix", &self.prefix, "--server", server])
    }

    /// Starts the HTTP server of one server again.
    pub fn start_http(&self, server: &str) -> Result<(), String> {
        self.script(&["http-start", "--prefix", &self.prefix, "--server", server])
    }

    /// Stops the UDP responder of one server ("rs1".., or "sorry"); its host stays up.
    pub fn stop_udp(&self, server: &str) -> Result<(), String> {
        self.script(&["udp-stop", "--prefix", &self.prefix, "--server", server])
    }

    /// Starts the UDP responder of one server again.
    pub fn start_udp(&self, server: &str) -> Result<(), String> {
        self.script(&["udp-start", "--prefix", &self.prefix, "--server", server])
    }

    /// Polls the status until `wanted` holds for it, or `timeout` passes; returns the status
    /// and how long it took.
    pub fn wait_for_status(
        &mut self,
        lvs: &Path,
        timeout: Duration,
        what: &str,
        wanted: impl Fn(&serde_json::Value) -> bool,
    ) -> Result<(serde_json::Value, Duration), String> {
        let started = Instant::now();
        let mut last = String::from("no answer yet");
        while started.elapsed() < timeout {
            if let Some(child) = self.director.as_mut() {
                if let Ok(Some(exit)) = child.try_wait() {
                    return Err(format!("the director exited ({exit}):\n{}", self.log()));
                }
            }
            match self.status(lvs) {
                Ok(status) if wanted(&status) => return Ok((status, started.elapsed())),
                Ok(status) => last = status.to_string(),
                Err(error) => last = error,
            }
            sleep(Duration::from_millis(100));
        }
        Err(format!(
            "not true within {timeout:?}: {what}; last status: {last}\nlog:\n{}",
            self.log()
        ))
    }

    /// Leaves the lab and the director running when this value is dropped.
    pub fn keep(&mut self) {
        self.keep = true;
    }

    pub fn namespace(&self, host: &str) -> String {
        format!("{}-{host}", self.prefix)
    }

    pub fn config_path(&self) -> PathBuf {
        self.state_dir.join("lvs.toml")
    }

    pub fn control_socket(&self) -> PathBuf {
        self.state_dir.join("lvs.sock")
    }

    pub fn director_log(&self) -> PathBuf {
        self.state_dir.join("director.log")
    }

    fn script(&self, args: &[&str]) -> Result<(), String> {
        let script = self.repo.join("scripts/lab.sh");
        let output = Command::new("bash")
            .arg(&script)
            .args(args)
            .output()
            .map_err(|e| format!("running {}: {e}", script.display()))?;
        if output.status.success() {
            Ok(())
        } else {
            Err(format!(
                "scripts/lab.sh {} failed:\n{}{}",
                args.join(" "),
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            ))
        }
    }

    /// Starts `lvs director` with the lab's config in the director namespace, logging to
    /// `director_log()`.
    pub fn start_director(&mut self, lvs: &Path) -> Result<(), String> {
        self.start_director_with(lvs, &self.config_path())
    }

    /// Starts `lvs director` with another config (for example the lab's with additions), as
    /// `spawn_director` does. The log is appended to, so that a restarted director's lines
    /// follow the previous one's.
    pub fn start_director_with(&mut self, lvs: &Path, config: &Path) -> Result<(), String> {
        let child = spawn_director(lvs, &self.namespace("dir"), config, &self.director_log())?;
        self.director = Some(child);
        Ok(())
    }

    /// The director's status document, as `lvs status --json` prints it.
    pub fn status(&self, lvs: &Path) -> Result<serde_json::Value, String> {
        status_at(lvs, &self.control_socket())
    }

    /// Runs `lvsadm` (the binary at `lvsadm`) against the director's control socket.
    pub fn lvsadm(&self, lvsadm: &Path, args: &[&str]) -> std::process::Output {
        Command::new(lvsadm)
            .arg("--socket")
            .arg(self.control_socket())
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("running lvsadm {args:?}: {e}"))
    }

    /// Runs `lvsadm` and returns what it printed; it must succeed.
    pub fn lvsadm_ok(&self, lvsadm: &Path, args: &[&str]) -> String {
        let output = self.lvsadm(lvsadm, args);
        assert!(
            output.status.success(),
            "lvsadm {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// `lvs status` as a table, for people.
    pub fn status_table(&self, lvs: &Path) -> String {
        Command::new(lvs)
            .args(["status", "--socket"])
            .arg(self.control_socket())
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default()
    }

    /// Waits until the director forwards to `real_servers` real servers, or `timeout` passes.
    pub fn wait_until_forwarding(
        &mut self,
        lvs: &Path,
        real_servers: usize,
        timeout: Duration,
    ) -> Result<serde_json::Value, String> {
        let deadline = Instant::now() + timeout;
        let mut last = String::from("no answer yet");
        while Instant::now() < deadline {
            if let Some(child) = self.director.as_mut() {
                if let Ok(Some(exit)) = child.try_wait() {
                    return Err(format!("the director exited ({exit}):\n{}", self.log()));
                }
            }
            match self.status(lvs) {
                Ok(status) if forwarding_count(&status) >= real_servers => return Ok(status),
                Ok(status) => last = status.to_string(),
                Err(error) => last = error,
            }
            sleep(Duration::from_millis(200));
        }
        Err(format!(
            "the director was not forwarding to {real_servers} real servers in time; last status: {last}\nlog:\n{}",
            self.log()
        ))
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.director_log()).unwrap_or_default()
    }

    /// TCP segments the director's own kernel stack received (`Tcp: InSegs`).
    pub fn director_tcp_in_segments(&self) -> Result<u64, String> {
        let output = Command::new("ip")
            .args([
                "netns",
                "exec",
                &self.namespace("dir"),
                "cat",
                "/proc/net/snmp",
            ])
            .output()
            .map_err(|e| format!("reading /proc/net/snmp: {e}"))?;
        let text = String::from_utf8_lossy(&output.stdout);
        let mut tcp_lines = text.lines().filter(|l| l.starts_with("Tcp:"));
        let (Some(names), Some(values)) = (tcp_lines.next(), tcp_lines.next()) else {
            return Err("no Tcp lines in /proc/net/snmp".into());
        };
        names
            .split_whitespace()
            .zip(values.split_whitespace())
            .find(|(name, _)| *name == "InSegs")
            .and_then(|(_, value)| value.parse().ok())
            .ok_or_else(|| "no Tcp InSegs in /proc/net/snmp".into())
    }

    /// Sends `count` HTTP requests to the VIP from the client, one connection each (so each
    /// is a new flow with a new source port), each bounded by a 2 s timeout.
    pub fn requests(&self, count: usize) -> Requests {
        self.requests_to(VIP, count)
    }

    /// `requests` to another VIP of the lab (`VIP6` too: an IPv6 address is bracketed).
    pub fn requests_to(&self, vip: &str, count: usize) -> Requests {
        let url = if vip.contains(':') {
            format!("http://[{vip}]/")
        } else {
            format!("http://{vip}/")
        };
        let mut seen = Requests::default();
        for _ in 0..count {
            let output = Command::new("ip")
                .args(["netns", "exec", &self.namespace("client")])
                .args(["curl", "--silent", "--show-error", "--max-time", "2"])
                .arg(&url)
                .output();
            match output {
                Ok(o) if o.status.success() => {
                    let body = String::from_utf8_lossy(&o.stdout).trim().to_owned();
                    *seen.answers.entry(body).or_default() += 1;
                }
                Ok(o) => seen
                    .failures
                    .push(String::from_utf8_lossy(&o.stderr).trim().to_owned()),
                Err(e) => seen.failures.push(e.to_string()),
            }
        }
        seen
    }

    /// Sends `count` datagrams to the VIP's UDP port 80 from the client, each from a socket
    /// of its own (a new flow), each waiting 1 s at most for the real server's name.
    pub fn udp_requests(&self, count: usize) -> Requests {
        self.udp_requests_to(VIP, count)
    }

    /// `udp_requests` to another VIP of the lab (`VIP6` too).
    pub fn udp_requests_to(&self, vip: &str, count: usize) -> Requests {
        const ASK: &str = "import socket, sys\n\
            family = socket.AF_INET6 if ':' in sys.argv[1] else socket.AF_INET\n\
            for _ in range(int(sys.argv[2])):\n\
            \x20   s = socket.socket(family, socket.SOCK_DGRAM)\n\
            \x20   s.settimeout(1)\n\
            \x20   s.sendto(b'?', (sys.argv[1], 80))\n\
            \x20   try:\n\
            \x20       print(s.recv(2048).decode().strip())\n\
            \x20   except OSError as e:\n\
            \x20       print('failed:', e)\n\
            \x20   s.close()\n";
        let mut seen = Requests::default();
        let output = Command::new("ip")
            .args(["netns", "exec", &self.namespace("client")])
            .args(["python3", "-c", ASK, vip, &count.to_string()])
            .output();
        match output {
            Ok(o) if o.status.success() => {
                for line in String::from_utf8_lossy(&o.stdout).lines() {
                    match line.strip_prefix("failed: ") {
                        Some(error) => seen.failures.push(error.to_owned()),
                        None => *seen.answers.entry(line.to_owned()).or_default() += 1,
                    }
                }
            }
            Ok(o) => seen
                .failures
                .push(String::from_utf8_lossy(&o.stderr).trim().to_owned()),
            Err(e) => seen.failures.push(e.to_string()),
        }
        seen
    }

    /// The directory the lab keeps its state in (config, logs, the servers' web roots).
    pub fn state_dir(&self) -> &Path {
        &self.state_dir
    }

    /// Asks the running director to read its config file again (SIGHUP, as an operator would).
    pub fn reload(&self) -> Result<(), String> {
        let child = self
            .director
            .as_ref()
            .ok_or("the director is not running")?;
        let status = Command::new("kill")
            .args(["-HUP", &child.id().to_string()])
            .status()
            .map_err(|e| format!("kill -HUP: {e}"))?;
        if status.success() {
            Ok(())
        } else {
            Err(format!("kill -HUP exited with {status}"))
        }
    }

    /// Opens a connection to the VIP and sends the start of a request for `path`, then holds
    /// it open, established and idle, until `HeldRequest::finish`, which completes the request
    /// and returns the size of the body received. It gives up after 60 s.
    pub fn held_request(&self, path: &str) -> Result<HeldRequest, String> {
        // The server (Python's http.server) waits for the blank line that ends the headers.
        let script = format!(
            "import socket, sys\n\
             s = socket.create_connection(('{VIP}', 80), timeout=60)\n\
             s.sendall(b'GET /{path} HTTP/1.0\\r\\nHost: lab\\r\\n')\n\
             print('open', flush=True)\n\
             sys.stdin.readline()\n\
             s.sendall(b'\\r\\n')\n\
             data = b''\n\
             while True:\n\
             \x20   chunk = s.recv(65536)\n\
             \x20   if not chunk: break\n\
             \x20   data += chunk\n\
             head, _, body = data.partition(b'\\r\\n\\r\\n')\n\
             print(head.split(b' ')[1].decode(), len(body), flush=True)\n"
        );
        let mut child = Command::new("ip")
            .args(["netns", "exec", &self.namespace("client")])
            .args(["python3", "-c", &script])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("starting the held request: {e}"))?;
        let mut stdout = std::io::BufReader::new(child.stdout.take().ok_or("no stdout")?);
        let mut line = String::new();
        std::io::BufRead::read_line(&mut stdout, &mut line)
            .map_err(|e| format!("reading the held request: {e}"))?;
        if line.trim() != "open" {
            let _ = child.kill();
            let output = child.wait_with_output().map_err(|e| e.to_string())?;
            return Err(format!(
                "the held request did not connect: {}",
                String::from_utf8_lossy(&output.stderr)
            ));
        }
        Ok(HeldRequest { child, stdout })
    }

    /// Stops the director for good with SIGINT (as `systemctl stop` does through the unit's
    /// `ExecStop`, or Ctrl-C) and waits for it to exit.
    pub fn stop_director(&mut self) -> Result<(), String> {
        self.signal_director("-INT")
    }

    /// Stops the director for a restart with SIGTERM (as `systemctl restart` does): the data
    /// plane keeps forwarding.
    pub fn stop_director_for_restart(&mut self) -> Result<(), String> {
        self.signal_director("-TERM")
    }

    /// Kills the director (SIGKILL, as a crash): nothing of its clean-up runs.
    pub fn kill_director(&mut self) -> Result<(), String> {
        let Some(mut child) = self.director.take() else {
            return Err("the director is not running".into());
        };
        child.kill().map_err(|e| format!("kill -9: {e}"))?;
        child
            .wait()
            .map_err(|e| format!("waiting for the killed director: {e}"))?;
        Ok(())
    }

    /// The director's process id, while it runs.
    pub fn director_pid(&self) -> Option<u32> {
        self.director.as_ref().map(Child::id)
    }

    /// Where the director in this lab pins its program and maps: `lvs/netns-<inode>/eth0`
    /// under the host's bpffs, the inode naming the director's network namespace.
    pub fn pin_dir(&self) -> Result<PathBuf, String> {
        pin_dir_in(&self.namespace("dir"))
    }

    fn signal_director(&mut self, signal: &str) -> Result<(), String> {
        let Some(mut child) = self.director.take() else {
            return Ok(());
        };
        // `nsenter` execs the command, so the child's pid is the director's.
        let _ = Command::new("kill")
            .args([signal, &child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = child.try_wait() {
                return if status.success() {
                    Ok(())
                } else {
                    Err(format!(
                        "the director exited with {status}:\n{}",
                        self.log()
                    ))
                };
            }
            sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
        Err(format!(
            "the director did not stop within 5 s of kill {signal}"
        ))
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if self.keep {
            return;
        }
        let _ = self.stop_director();
        // A director killed and not started again leaves its program and maps pinned in the
        // host's bpffs; they go with the lab.
        if let Ok(dir) = self.pin_dir() {
            if let Some(netns_dir) = dir.parent() {
                let _ = std::fs::remove_dir_all(netns_dir);
            }
        }
        if let Err(error) = self.script(&["down", "--prefix", &self.prefix]) {
            eprintln!("{error}");
        }
    }
}

/// What `Lab::up_with` builds: how many real servers (1 to 8) and directors (1 or 2), and
/// whether a sorry server and a flooder.
#[derive(Debug, Clone, Copy)]
pub struct Shape {
    pub real_servers: u8,
    pub sorry_server: bool,
    pub directors: u8,
    /// Host "flood" on the switch, its switch port with a no-op XDP program like a
    /// director's, so that frames a live-frames generator sends from it reach the bridge.
    pub flooder: bool,
    /// Every host also on `fd77::/64`, the real servers holding `VIP6` on lo, and the
    /// config balancing TCP and UDP on `[VIP6]:80` over the real servers' IPv6 addresses.
    pub ipv6: bool,
}

impl Default for Shape {
    fn default() -> Self {
        Self {
            real_servers: 2,
            sorry_server: false,
            directors: 1,
            flooder: false,
            ipv6: false,
        }
    }
}

/// The second director's address (host "dir2"), in a lab of two directors.
pub const DIRECTOR2: &str = "10.77.0.3";

/// Starts `lvs director --config CONFIG` in network namespace `namespace`, its output
/// appended to `log`.
///
/// It runs in the namespace's network only (`nsenter --net`), not in a mount namespace of
/// its own as `ip netns exec` would make: that one's private /sys, and the BPF filesystem
/// mounted in it, would end with the process, and with them the pinned program and maps that
/// must outlive it. `nsenter` execs the command, so the child's pid is the director's.
pub fn spawn_director(
    lvs: &Path,
    namespace: &str,
    config: &Path,
    log: &Path,
) -> Result<Child, String> {
    let out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .map_err(|e| format!("director log {}: {e}", log.display()))?;
    let err = out
        .try_clone()
        .map_err(|e| format!("director log {}: {e}", log.display()))?;
    Command::new("nsenter")
        .arg(format!("--net=/run/netns/{namespace}"))
        .arg(lvs)
        .arg("director")
        .arg("--config")
        .arg(config)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .map_err(|e| format!("starting {}: {e}", lvs.display()))
}

/// The status document of the director behind control socket `socket`, as `lvs status
/// --json` prints it.
pub fn status_at(lvs: &Path, socket: &Path) -> Result<serde_json::Value, String> {
    let output = Command::new(lvs)
        .args(["status", "--json", "--socket"])
        .arg(socket)
        .output()
        .map_err(|e| format!("running lvs status: {e}"))?;
    if !output.status.success() {
        return Err(String::from_utf8_lossy(&output.stderr).into_owned());
    }
    serde_json::from_slice(&output.stdout).map_err(|e| format!("lvs status --json: {e}"))
}

/// Where a director in network namespace `namespace` pins its program and maps for eth0:
/// `lvs/netns-<inode>/eth0` under the host's bpffs, the inode naming the namespace.
pub fn pin_dir_in(namespace: &str) -> Result<PathBuf, String> {
    use std::os::unix::fs::MetadataExt as _;
    let path = PathBuf::from("/run/netns").join(namespace);
    let inode = std::fs::metadata(&path)
        .map_err(|e| format!("{}: {e}", path.display()))?
        .ino();
    Ok(PathBuf::from(format!("/sys/fs/bpf/lvs/netns-{inode}/eth0")))
}

/// How many real servers the status document says are forwarding.
pub fn forwarding_count(status: &serde_json::Value) -> usize {
    status["services"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|s| s["real_servers"].as_array().into_iter().flatten())
        .filter(|rs| rs["forwarding"].as_bool() == Some(true))
        .count()
}

/// The address of the lab's sorry server (`up_with(.., true)`).
pub const SORRY_SERVER: &str = "10.77.0.30";

/// Whether the status document says new flows go to the real server at `address`.
pub fn is_forwarding(status: &serde_json::Value, address: &str) -> bool {
    status["services"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|s| s["real_servers"].as_array().into_iter().flatten())
        .any(|rs| rs["address"] == address && rs["forwarding"].as_bool() == Some(true))
}

/// A verdict counter from the status document.
pub fn counter(status: &serde_json::Value, name: &str) -> u64 {
    status["counters"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["name"] == name)
        .and_then(|c| c["value"].as_u64())
        .unwrap_or(0)
}

/// The real server at `address` of the service of `protocol`, in a status document.
pub fn real_server_of<'a>(
    status: &'a serde_json::Value,
    protocol: &str,
    address: &str,
) -> &'a serde_json::Value {
    status["services"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|s| {
            s["protocol"]
                .as_str()
                .is_some_and(|p| p.eq_ignore_ascii_case(protocol))
        })
        .flat_map(|s| s["real_servers"].as_array().into_iter().flatten())
        .find(|rs| rs["address"] == address)
        .unwrap_or_else(|| panic!("no {protocol} real server {address} in {status}"))
}
