//! Two directors in the lab, as the LVS-DR tutorial runs them: keepalived's VRRP moving the
//! VIP between a MASTER (host "dir", priority 100) and a BACKUP (host "dir2", priority 50),
//! and lvs balancing on both, with connection sync both ways. Shared by the two-director test
//! and `cargo xtask run --ha`.
//!
//! It goes the operator's way: each director gets a keepalived.conf of the tutorial's shape
//! (`vrrp_instance` plus the `virtual_server` blocks and `lvs_sync_daemon`), `lvs
//! import-keepalived FILE --vrrp-out VRRP.conf` splits it into lvs's TOML (`manage_vips =
//! false`, `[sync]` with both daemons) and the VRRP part keepalived keeps running, and the
//! only edits are the ones the import's header asks for: the shared key file, and here a
//! control socket per director. Both lvs run with their XDP program attached, so a takeover
//! is only the VIP moving. Everything started is stopped, and every file removed, on drop.

use std::{
    fmt::Write as _,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    thread::sleep,
    time::{Duration, Instant},
};

use crate::{
    lab::{self, DIRECTOR2, Lab, Shape, VIP},
    load::{PING_PORT, Processes, start_line_servers},
};

/// keepalived's `advert_int`: VRRP's timers are multiples of it.
pub const ADVERT_INT: Duration = Duration::from_secs(1);

/// The VRRP instance's `virtual_router_id`, which the import also takes as the sync id.
pub const VIRTUAL_ROUTER_ID: u8 = 51;

/// One of the two directors, by its place in the tutorial.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Director {
    /// `state MASTER`, priority 100: host "dir", 10.77.0.1.
    Master,
    /// `state BACKUP`, priority 50: host "dir2", `DIRECTOR2`.
    Backup,
}

impl Director {
    pub const BOTH: [Director; 2] = [Director::Master, Director::Backup];

    /// The lab host it runs on.
    pub const fn host(self) -> &'static str {
        match self {
            Director::Master => "dir",
            Director::Backup => "dir2",
        }
    }

    pub const fn address(self) -> &'static str {
        match self {
            Director::Master => "10.77.0.1",
            Director::Backup => DIRECTOR2,
        }
    }

    const fn state(self) -> &'static str {
        match self {
            Director::Master => "MASTER",
            Director::Backup => "BACKUP",
        }
    }

    const fn priority(self) -> u8 {
        match self {
            Director::Master => 100,
            Director::Backup => 50,
        }
    }

    const fn index(self) -> usize {
        match self {
            Director::Master => 0,
            Director::Backup => 1,
        }
    }
}

/// What runs on one director, and its files.
struct Node {
    director: Director,
    namespace: String,
    dir: PathBuf,
    lvs: Option<Child>,
    keepalived: Option<Child>,
}

impl Node {
    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }
}

/// The two directors of a lab with keepalived and lvs running on each.
pub struct Pair {
    lvs: PathBuf,
    nodes: [Node; 2],
    // Dropped after `Drop::drop` stopped the directors, and before the lab goes.
    _line_servers: Processes,
    lab: Lab,
}

impl Pair {
    /// Builds a lab of two directors and `real_servers` real servers under `prefix`, starts
    /// the line servers (`load`) on the real servers, and lvs and then keepalived on both
    /// directors; returns once both forward to every real server of both services and the
    /// MASTER holds the VIP.
    pub fn up(repo: &Path, lvs: &Path, prefix: &str, real_servers: u8) -> Result<Self, String> {
        let shape = Shape {
            real_servers,
            directors: 2,
            ..Shape::default()
        };
        let lab = Lab::up_with(repo, prefix, shape)?;
        let node = |director: Director| Node {
            director,
            namespace: lab.namespace(director.host()),
            dir: lab.state_dir().join("pair").join(director.host()),
            lvs: None,
            keepalived: None,
        };
        let nodes = [node(Director::Master), node(Director::Backup)];
        // The line servers answer before the directors start, so their checks pass at once.
        let line_servers = start_line_servers(&lab, real_servers)?;
        let mut pair = Self {
            lvs: lvs.to_owned(),
            nodes,
            _line_servers: line_servers,
            lab,
        };
        pair.configure(real_servers)?;
        for director in Director::BOTH {
            pair.start_lvs(director)?;
        }
        for director in Director::BOTH {
            pair.wait_until_forwarding(
                director,
                2 * usize::from(real_servers),
                Duration::from_secs(20),
            )?;
        }
        for director in Director::BOTH {
            pair.start_keepalived(director)?;
        }
        pair.wait_for_vip(Director::Master, Duration::from_secs(10))?;
        Ok(pair)
    }

    pub fn lab(&self) -> &Lab {
        &self.lab
    }

    /// The shared sync key's file.
    fn key_file(&self) -> PathBuf {
        self.lab.state_dir().join("pair").join("sync.key")
    }

    pub fn control_socket(&self, director: Director) -> PathBuf {
        self.node(director).path("lvs.sock")
    }

    fn node(&self, director: Director) -> &Node {
        &self.nodes[director.index()]
    }

    fn node_mut(&mut self, director: Director) -> &mut Node {
        &mut self.nodes[director.index()]
    }

    /// Writes each director's keepalived.conf, imports it, and writes the shared key.
    fn configure(&self, real_servers: u8) -> Result<(), String> {
        // 32 random bytes, as the README's `head -c 32 /dev/urandom` makes them.
        let mut bytes = [0u8; 32];
        {
            use std::io::Read as _;
            std::fs::File::open("/dev/urandom")
                .and_then(|mut f| f.read_exact(&mut bytes))
                .map_err(|e| format!("reading /dev/urandom: {e}"))?;
        }
        let key_file = self.key_file();
        std::fs::create_dir_all(key_file.parent().expect("a parent"))
            .map_err(|e| format!("{}: {e}", key_file.display()))?;
        write_file(&key_file, &bytes, 0o600)?;
        for node in &self.nodes {
            std::fs::create_dir_all(&node.dir)
                .map_err(|e| format!("{}: {e}", node.dir.display()))?;
            let check = node.path("chk_lvs.sh");
            write_file(
                &check,
                &check_script(&self.lvs, &node.path("lvs.sock")),
                0o755,
            )?;
            let before = node.path("keepalived.conf");
            std::fs::write(
                &before,
                keepalived_conf(node.director, real_servers, &check),
            )
            .map_err(|e| format!("{}: {e}", before.display()))?;
            let vrrp = node.path("keepalived.vrrp.conf");
            let import = Command::new(&self.lvs)
                .arg("import-keepalived")
                .arg(&before)
                .arg("--vrrp-out")
                .arg(&vrrp)
                .output()
                .map_err(|e| format!("running lvs import-keepalived: {e}"))?;
            if !import.status.success() {
                return Err(format!(
                    "lvs import-keepalived {} failed: {}",
                    before.display(),
                    String::from_utf8_lossy(&import.stderr)
                ));
            }
            let toml = String::from_utf8_lossy(&import.stdout).into_owned();
            let toml = adapt_import(&toml, &node.path("lvs.sock"), &key_file)?;
            let config = node.path("lvs.toml");
            std::fs::write(&config, toml).map_err(|e| format!("{}: {e}", config.display()))?;
        }
        Ok(())
    }

    /// Starts lvs on a director.
    fn start_lvs(&mut self, director: Director) -> Result<(), String> {
        let lvs = self.lvs.clone();
        let node = self.node_mut(director);
        let child = lab::spawn_director(
            &lvs,
            &node.namespace,
            &node.path("lvs.toml"),
            &node.path("lvs.log"),
        )?;
        node.lvs = Some(child);
        Ok(())
    }

    /// Starts keepalived on a director, in the foreground of its own process (so this value
    /// owns it), logging to the console and so to its log file, with its own pid files.
    fn start_keepalived(&mut self, director: Director) -> Result<(), String> {
        let node = self.node_mut(director);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(node.path("keepalived.log"))
            .map_err(|e| format!("keepalived log: {e}"))?;
        let log_err = log
            .try_clone()
            .map_err(|e| format!("keepalived log: {e}"))?;
        let child = Command::new("ip")
            .args(["netns", "exec", &node.namespace, "keepalived"])
            .args([
                "--dont-fork",
                "--log-console",
                "--log-detail",
                "--no-syslog",
            ])
            .arg("--use-file")
            .arg(node.path("keepalived.vrrp.conf"))
            .arg("--pid")
            .arg(node.path("keepalived.pid"))
            .arg("--vrrp_pid")
            .arg(node.path("keepalived-vrrp.pid"))
            .arg("--checkers_pid")
            .arg(node.path("keepalived-checkers.pid"))
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            .spawn()
            .map_err(|e| format!("starting keepalived: {e}"))?;
        node.keepalived = Some(child);
        Ok(())
    }

    /// Stops keepalived on a director (SIGTERM: it gives the VIP up and tells its peer).
    fn stop_keepalived(&mut self, director: Director) {
        let node = self.node_mut(director);
        if let Some(child) = node.keepalived.take() {
            stop(child, "-TERM");
        }
        // Its VRRP child, should the parent have gone without it.
        if let Ok(pid) = std::fs::read_to_string(node.path("keepalived-vrrp.pid")) {
            let pid = pid.trim();
            let is_keepalived = std::fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|c| String::from_utf8_lossy(&c).contains("keepalived"));
            if is_keepalived {
                let _ = Command::new("kill").args(["-KILL", pid]).status();
            }
        }
    }

    /// Stops lvs on a director for good (SIGINT): it detaches and removes its pins.
    fn stop_lvs(&mut self, director: Director) {
        if let Some(child) = self.node_mut(director).lvs.take() {
            stop(child, "-INT");
        }
    }

    /// Takes a director off the segment, as a pulled cable does: its eth0 goes down.
    pub fn pull_cable(&self, director: Director) -> Result<(), String> {
        self.link(director, "down")
    }

    /// Puts a director back on the segment.
    pub fn plug_cable(&self, director: Director) -> Result<(), String> {
        self.link(director, "up")
    }

    fn link(&self, director: Director, state: &str) -> Result<(), String> {
        let status = Command::new("ip")
            .args(["-n", &self.node(director).namespace])
            .args(["link", "set", "eth0", state])
            .status()
            .map_err(|e| format!("ip link set eth0 {state}: {e}"))?;
        if status.success() {
            Ok(())
        } else {
            Err(format!("ip link set eth0 {state} failed ({status})"))
        }
    }

    /// Whether a director's eth0 holds the VIP (keepalived put it there).
    pub fn holds_vip(&self, director: Director) -> bool {
        Command::new("ip")
            .args(["-n", &self.node(director).namespace])
            .args(["-4", "-o", "addr", "show", "dev", "eth0"])
            .output()
            .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains(&format!(" {VIP}/32 ")))
    }

    /// Polls every 20 ms until a director holds the VIP; returns how long that took.
    pub fn wait_for_vip(&self, director: Director, timeout: Duration) -> Result<Duration, String> {
        let started = Instant::now();
        while started.elapsed() < timeout {
            if self.holds_vip(director) {
                return Ok(started.elapsed());
            }
            sleep(Duration::from_millis(20));
        }
        Err(format!(
            "the {director:?} ({}) did not hold the VIP within {timeout:?}\n{}",
            director.host(),
            self.logs()
        ))
    }

    /// A director's status document.
    pub fn status(&self, director: Director) -> Result<serde_json::Value, String> {
        lab::status_at(&self.lvs, &self.control_socket(director))
    }

    /// Polls a director's status until `wanted` holds, or `timeout` passes.
    pub fn wait_for_status(
        &mut self,
        director: Director,
        timeout: Duration,
        what: &str,
        wanted: impl Fn(&serde_json::Value) -> bool,
    ) -> Result<serde_json::Value, String> {
        let started = Instant::now();
        let mut last = String::from("no answer yet");
        while started.elapsed() < timeout {
            if let Some(child) = self.node_mut(director).lvs.as_mut() {
                if let Ok(Some(exit)) = child.try_wait() {
                    return Err(format!(
                        "lvs on {} exited ({exit}):\n{}",
                        director.host(),
                        self.logs()
                    ));
                }
            }
            match self.status(director) {
                Ok(status) if wanted(&status) => return Ok(status),
                Ok(status) => last = status.to_string(),
                Err(error) => last = error,
            }
            sleep(Duration::from_millis(100));
        }
        Err(format!(
            "not true on {} within {timeout:?}: {what}; last status: {last}\n{}",
            director.host(),
            self.logs()
        ))
    }

    /// Waits until a director forwards to `real_servers` real servers (over all services).
    pub fn wait_until_forwarding(
        &mut self,
        director: Director,
        real_servers: usize,
        timeout: Duration,
    ) -> Result<serde_json::Value, String> {
        self.wait_for_status(
            director,
            timeout,
            &format!("forwarding to {real_servers} real servers"),
            |s| lab::forwarding_count(s) >= real_servers,
        )
    }

    /// The logs of lvs and keepalived on both directors, for a failure's message.
    pub fn logs(&self) -> String {
        let mut out = String::new();
        for node in &self.nodes {
            for name in ["lvs.log", "keepalived.log"] {
                let text = std::fs::read_to_string(node.path(name)).unwrap_or_default();
                let _ = writeln!(out, "--- {} {name}:\n{text}", node.director.host());
            }
        }
        out
    }
}

impl Drop for Pair {
    fn drop(&mut self) {
        for director in Director::BOTH {
            self.stop_keepalived(director);
            self.stop_lvs(director);
            // A director killed without its stop leaves its program and maps pinned.
            if let Ok(dir) = lab::pin_dir_in(&self.node(director).namespace) {
                if let Some(netns_dir) = dir.parent() {
                    let _ = std::fs::remove_dir_all(netns_dir);
                }
            }
        }
        let _ = std::fs::remove_dir_all(self.lab.state_dir().join("pair"));
        // The lab goes next, when its field is dropped.
    }
}

/// Sends `signal` to a child and waits up to 5 s for it, then kills it.
fn stop(mut child: Child, signal: &str) {
    let _ = Command::new("kill")
        .args([signal, &child.id().to_string()])
        .status();
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// Writes a file with the given mode (0o600 for a key file; 0o755 for a script).
fn write_file(path: &Path, bytes: &[u8], mode: u32) -> Result<(), String> {
    use std::{io::Write as _, os::unix::fs::OpenOptionsExt as _};
    std::fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .mode(mode)
        .open(path)
        .and_then(|mut f| f.write_all(bytes))
        .map_err(|e| format!("{}: {e}", path.display()))
}

/// keepalived's `chk_lvs` for a director: it succeeds when lvs answers on `socket` and every
/// real server of every service is forwarding (checked healthy and its MAC known), so that a
/// director is only ready for the VIP when it can forward every connection its peer synced.
fn check_script(lvs: &Path, socket: &Path) -> Vec<u8> {
    const SCRIPT: &str = r#"#!/bin/sh
# keepalived's chk_lvs: ready when lvs forwards to every real server.
'LVS' status --json --socket 'SOCKET' | python3 -c '
import json, sys
services = json.load(sys.stdin)["services"]
ready = services and all(rs["forwarding"] for s in services for rs in s["real_servers"])
sys.exit(0 if ready else 1)'
"#;
    SCRIPT
        .replace("LVS", &lvs.display().to_string())
        .replace("SOCKET", &socket.display().to_string())
        .into_bytes()
}

/// The edits the import's header asks the operator for: the key file both directors share,
/// and (two directors on one host) a control socket each.
fn adapt_import(toml: &str, socket: &Path, key_file: &Path) -> Result<String, String> {
    let imported_key = "key_file = \"/etc/lvs/sync.key\"";
    if !toml.contains(imported_key) || !toml.contains("[director]\n") {
        return Err(format!(
            "the import has no [director] or no {imported_key}:\n{toml}"
        ));
    }
    Ok(toml
        .replacen(
            "[director]\n",
            &format!("[director]\ncontrol_socket = \"{}\"\n", socket.display()),
            1,
        )
        .replace(
            imported_key,
            &format!("key_file = \"{}\"", key_file.display()),
        ))
}

/// What a failing `chk_lvs` takes off a director's priority: the MASTER's 100 goes under the
/// BACKUP's 50, so a master that is not ready does not take the VIP back.
pub const CHECK_WEIGHT: u8 = 60;

/// A director's keepalived.conf in the shape of the LVS-DR tutorial: the VRRP instance
/// (priority 100 or 50, `virtual_router_id 51`, `advert_int 1`, PASS authentication) tracking
/// `chk_lvs` (the script `check`), the connection sync daemon, and the `virtual_server`
/// blocks (rr, DR, HTTP_GET on `/` for the web service; a TCP check for the line servers'
/// service).
pub fn keepalived_conf(director: Director, real_servers: u8, check: &Path) -> String {
    let mut text = format!(
        "! The {state} director of the lab's LVS-DR pair. The {other}'s file is the same but for\n\
         ! `state` and `priority`.\n\
         global_defs {{\n\
         \x20  router_id lvs_{host}\n\
         \x20  enable_script_security\n\
         \x20  script_user root\n\
         \x20  lvs_sync_daemon eth0 VI_1 id {id}\n\
         }}\n\n\
         ! Lower the priority under the peer's while lvs does not forward to every real server\n\
         ! (starting, or back from a fault and its checks not yet passed again).\n\
         vrrp_script chk_lvs {{\n\
         \x20   script \"{check}\"\n\
         \x20   interval 1\n\
         \x20   fall 2\n\
         \x20   rise 2\n\
         \x20   weight -{CHECK_WEIGHT}\n\
         }}\n\n\
         vrrp_instance VI_1 {{\n\
         \x20   state {state}\n\
         \x20   interface eth0\n\
         \x20   virtual_router_id {id}\n\
         \x20   priority {priority}\n\
         \x20   advert_int {advert}\n\
         \x20   authentication {{\n\
         \x20       auth_type PASS\n\
         \x20       auth_pass 1111\n\
         \x20   }}\n\
         \x20   virtual_ipaddress {{\n\
         \x20       {VIP}\n\
         \x20   }}\n\
         \x20   track_script {{\n\
         \x20       chk_lvs\n\
         \x20   }}\n\
         }}\n\n\
         virtual_server {VIP} 80 {{\n\
         \x20   delay_loop 6\n\
         \x20   lb_algo rr\n\
         \x20   lb_kind DR\n\
         \x20   nat_mask 255.255.255.0\n\
         \x20   persistence_timeout 0\n\
         \x20   protocol TCP\n",
        state = director.state(),
        other = match director {
            Director::Master => "BACKUP",
            Director::Backup => "MASTER",
        },
        host = director.host(),
        id = VIRTUAL_ROUTER_ID,
        priority = director.priority(),
        advert = ADVERT_INT.as_secs(),
        check = check.display(),
    );
    for n in 1..=real_servers {
        let _ = write!(
            text,
            "\n    real_server 10.77.0.{} 80 {{\n\
             \x20       weight 1\n\
             \x20       HTTP_GET {{\n\
             \x20           url {{\n\
             \x20             path /\n\
             \x20             status_code 200\n\
             \x20           }}\n\
             \x20           connect_timeout 3\n\
             \x20           nb_get_retry 3\n\
             \x20           delay_before_retry 3\n\
             \x20       }}\n\
             \x20   }}\n",
            10 + n
        );
    }
    let _ = write!(
        text,
        "}}\n\n\
         virtual_server {VIP} {PING_PORT} {{\n\
         \x20   delay_loop 6\n\
         \x20   lb_algo rr\n\
         \x20   lb_kind DR\n\
         \x20   protocol TCP\n"
    );
    for n in 1..=real_servers {
        let _ = write!(
            text,
            "\n    real_server 10.77.0.{} {PING_PORT} {{\n\
             \x20       weight 1\n\
             \x20       TCP_CHECK {{\n\
             \x20           connect_timeout 3\n\
             \x20       }}\n\
             \x20   }}\n",
            10 + n
        );
    }
    text.push_str("}\n");
    text
}
