//! A load on the lab's VIP that shows whether a change to the directors disturbed anyone:
//! long-lived connections that must stay on their real server and keep answering, and a loop
//! of new connections that must not fail. Shared by the restart test, the two-director test,
//! the scale-out test (on its own ECMP lab, through [`Load::start_in`]) and `cargo xtask run
//! --ha`, so the demo measures what the tests assert.
//!
//! Each real server runs a line server on `PING_PORT` that answers every line with its own
//! name, so a connection that moved to another server shows it; the clients are one Python
//! process in the client's namespace that prints one JSON document at the end.

use std::{
    process::{Child, Command, Stdio},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use crate::lab::{Lab, VIP};

/// The port of the long-lived connections' service.
pub const PING_PORT: u16 = 8080;

/// How many long-lived connections a load holds.
pub const LONG_LIVED: usize = 8;

/// Each real server's line server, on every address (the VIP is on its `lo`). A client that
/// goes away mid-line is its own business: the server says nothing about it, so a test's
/// output stays readable.
pub const LINE_SERVER: &str = r#"
import socket, sys, threading
name = sys.argv[1].encode() + b"\n"
listener = socket.socket()
listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
listener.bind(("0.0.0.0", int(sys.argv[2])))
listener.listen(128)
def serve(conn):
    try:
        with conn, conn.makefile("rb") as lines:
            for _ in lines:
                conn.sendall(name)
    except OSError:
        pass
while True:
    conn, _ = listener.accept()
    threading.Thread(target=serve, args=(conn,), daemon=True).start()
"#;

/// The clients, bounded in time: `count` long-lived connections that each send a line every
/// 100 ms and note which server answers, the longest wait between answers (an answer that
/// takes longer than `stall` seconds is an error) and when the first and last came, and loops
/// of new connections (one HTTP request each, each step of which may take `timeout` seconds)
/// that note when each failed one started and ended, and how long the slowest one that
/// succeeded took. Prints one JSON document.
const CLIENTS: &str = r#"
import json, socket, sys, threading, time, urllib.request
vip, port, duration, count, stall, loops, timeout = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5]), int(sys.argv[6]), float(sys.argv[7])
end = time.time() + duration
long_lived = []
def hold():
    seen = {"servers": [], "replies": 0, "max_gap_ms": 0.0, "errors": [], "first_at": None, "last_at": None}
    try:
        conn = socket.create_connection((vip, port), timeout=stall)
        lines = conn.makefile("rb")
        last = None
        while time.time() < end:
            conn.sendall(b"ping\n")
            line = lines.readline()
            if not line:
                seen["errors"].append("closed by the server")
                break
            now = time.time()
            name = line.strip().decode()
            if name not in seen["servers"]:
                seen["servers"].append(name)
            if last is not None:
                seen["max_gap_ms"] = max(seen["max_gap_ms"], (now - last) * 1000)
            else:
                seen["first_at"] = now
            last = now
            seen["last_at"] = now
            seen["replies"] += 1
            time.sleep(0.1)
        conn.close()
    except Exception as error:
        seen["errors"].append(repr(error))
    long_lived.append(seen)
new = {"ok": 0, "failed": 0, "errors": [], "failed_at": [], "slowest_ok_ms": 0.0}
def connect():
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    while time.time() < end:
        started = time.time()
        try:
            with opener.open("http://%s/" % vip, timeout=timeout) as answer:
                answer.read()
            new["ok"] += 1
            new["slowest_ok_ms"] = max(new["slowest_ok_ms"], (time.time() - started) * 1000)
        except Exception as error:
            new["failed"] += 1
            new["errors"].append(repr(error))
            new["failed_at"].append([started, time.time()])
        time.sleep(0.02)
threads = [threading.Thread(target=hold) for _ in range(count)]
threads += [threading.Thread(target=connect) for _ in range(loops)]
for thread in threads:
    thread.start()
for thread in threads:
    thread.join()
print(json.dumps({"long_lived": long_lived, "new": new}))
"#;

/// Kills the processes it holds when dropped, so a failing test leaves no server running.
pub struct Processes(Vec<Child>);

impl Drop for Processes {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Starts the line server on each of the lab's real servers rs1 .. rs`real_servers`.
pub fn start_line_servers(lab: &Lab, real_servers: u8) -> Result<Processes, String> {
    let mut children = Processes(Vec::new());
    for n in 1..=real_servers {
        let host = format!("rs{n}");
        let child = Command::new("ip")
            .args(["netns", "exec", &lab.namespace(&host)])
            .args(["python3", "-c", LINE_SERVER, &host, &PING_PORT.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("starting the line server on {host}: {e}"))?;
        children.0.push(child);
    }
    Ok(children)
}

/// The `[[virtual_server]]` TOML of the line servers' service on the VIP, scheduler rr, with
/// real servers rs1 .. rs`real_servers`.
pub fn line_service_toml(real_servers: u8) -> String {
    let mut text = format!(
        "\n[[virtual_server]]\naddress = \"{VIP}\"\nport = {PING_PORT}\nprotocol = \"TCP\"\n\
         lb_algo = \"rr\"\nlb_kind = \"DR\"\n"
    );
    for n in 1..=real_servers {
        text += &format!(
            "\n[[virtual_server.real_server]]\naddress = \"10.77.0.{}\"\nweight = 1\n",
            10 + n
        );
    }
    text
}

/// How many clients a load runs.
#[derive(Clone, Copy, Debug)]
pub struct Clients {
    /// Long-lived connections, each sending a line every 100 ms.
    pub long_lived: usize,
    /// A long-lived connection that waits longer than this for an answer counts as broken.
    pub stall: Duration,
    /// Loops of new connections (one HTTP request each to port 80), side by side.
    pub new_connection_loops: usize,
    /// How long a new connection may take to connect, and then to be answered, before it
    /// counts as failed.
    pub new_connection_timeout: Duration,
}

/// A new connection's timeout in most tests: a lost SYN is sent again after a second, so a
/// connection fails if its SYN is lost twice, or it waits on a director or a failover.
pub const NEW_CONNECTION_TIMEOUT: Duration = Duration::from_secs(2);

/// The clients of one load, running in a client namespace until `finish`.
pub struct Load {
    clients: Processes,
    long_lived: usize,
}

impl Load {
    /// Starts `LONG_LIVED` long-lived connections and the loop of new ones on the lab's VIP,
    /// for `duration`. A long-lived connection that waits longer than `stall` for an answer
    /// counts as broken.
    pub fn start(lab: &Lab, duration: Duration, stall: Duration) -> Result<Self, String> {
        let clients = Clients {
            long_lived: LONG_LIVED,
            stall,
            new_connection_loops: 1,
            new_connection_timeout: NEW_CONNECTION_TIMEOUT,
        };
        Self::start_in(&lab.namespace("client"), VIP, PING_PORT, duration, clients)
    }

    /// Starts `clients` in `namespace` against `vip`: the long-lived connections to `port`
    /// (where the line servers listen), the new ones to port 80, for `duration`.
    pub fn start_in(
        namespace: &str,
        vip: &str,
        port: u16,
        duration: Duration,
        clients: Clients,
    ) -> Result<Self, String> {
        let client = Command::new("ip")
            .args(["netns", "exec", namespace])
            .args(["python3", "-c", CLIENTS, vip, &port.to_string()])
            .arg(duration.as_secs_f64().to_string())
            .arg(clients.long_lived.to_string())
            .arg(clients.stall.as_secs_f64().to_string())
            .arg(clients.new_connection_loops.to_string())
            .arg(clients.new_connection_timeout.as_secs_f64().to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("starting the clients: {e}"))?;
        Ok(Self {
            clients: Processes(vec![client]),
            long_lived: clients.long_lived,
        })
    }

    /// Waits for the clients to end and returns what they saw.
    pub fn finish(mut self) -> Result<Seen, String> {
        let client = self.clients.0.pop().ok_or("the clients are gone")?;
        let output = client
            .wait_with_output()
            .map_err(|e| format!("the clients' output: {e}"))?;
        if !output.status.success() {
            return Err(format!(
                "the clients failed: {}",
                String::from_utf8_lossy(&output.stderr)
            ));
        }
        let json = serde_json::from_slice(&output.stdout).map_err(|e| {
            format!(
                "the clients' output: {e}: {}",
                String::from_utf8_lossy(&output.stdout)
            )
        })?;
        Ok(Seen {
            json,
            long_lived: self.long_lived,
        })
    }
}

/// Runs the clients for `duration` (a stall of 5 s breaks a long-lived connection) while
/// `action` runs (from its start); returns what they saw. It panics on a failure, for tests.
pub fn under_load(lab: &mut Lab, duration: Duration, action: impl FnOnce(&mut Lab)) -> Seen {
    let load = Load::start(lab, duration, Duration::from_secs(5)).unwrap_or_else(|e| panic!("{e}"));
    action(lab);
    load.finish().unwrap_or_else(|e| panic!("{e}"))
}

/// What the clients saw.
pub struct Seen {
    pub json: serde_json::Value,
    /// How many long-lived connections were started.
    long_lived: usize,
}

impl Seen {
    pub fn failed_requests(&self) -> u64 {
        self.json["new"]["failed"].as_u64().unwrap_or(u64::MAX)
    }

    pub fn ok_requests(&self) -> u64 {
        self.json["new"]["ok"].as_u64().unwrap_or(0)
    }

    /// When each failed new connection started and gave up.
    pub fn failed_at(&self) -> Vec<(SystemTime, SystemTime)> {
        let at = |v: &serde_json::Value| -> Option<SystemTime> {
            Some(UNIX_EPOCH + Duration::from_secs_f64(v.as_f64()?.max(0.0)))
        };
        self.json["new"]["failed_at"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|pair| Some((at(&pair[0])?, at(&pair[1])?)))
            .collect()
    }

    pub fn longest_gap_ms(&self) -> f64 {
        self.long_lived()
            .iter()
            .filter_map(|c| c["max_gap_ms"].as_f64())
            .fold(0.0, f64::max)
    }

    pub fn long_lived(&self) -> Vec<serde_json::Value> {
        self.json["long_lived"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// Long-lived connections that were answered both before `before` and after `after`: the
    /// ones that lived through what happened in between.
    pub fn spanning(&self, before: SystemTime, after: SystemTime) -> usize {
        let at = |v: &serde_json::Value| -> Option<SystemTime> {
            Some(UNIX_EPOCH + Duration::from_secs_f64(v.as_f64()?.max(0.0)))
        };
        self.long_lived()
            .iter()
            .filter(|c| {
                at(&c["first_at"]).is_some_and(|first| first < before)
                    && at(&c["last_at"]).is_some_and(|last| last > after)
            })
            .count()
    }

    /// Long-lived connections that failed (an error, a close or a stall), or never reported.
    pub fn broken(&self) -> usize {
        let held = self.long_lived();
        let failed = held
            .iter()
            .filter(|c| c["errors"].as_array().is_none_or(|e| !e.is_empty()))
            .count();
        failed + self.long_lived.saturating_sub(held.len())
    }

    /// Long-lived connections answered by more than one real server.
    pub fn moved(&self) -> usize {
        self.long_lived()
            .iter()
            .filter(|c| c["servers"].as_array().is_none_or(|s| s.len() != 1))
            .count()
    }

    /// Checks that no request failed and every long-lived connection stayed on its server
    /// and kept answering.
    pub fn assert_undisturbed(&self, what: &str) {
        assert_eq!(
            self.failed_requests(),
            0,
            "{what}: new connections failed: {}",
            self.json["new"]
        );
        self.assert_long_lived_undisturbed(what);
    }

    /// Checks that every long-lived connection stayed on its server and kept answering, and
    /// that enough new connections were made to mean anything (whether some failed is the
    /// caller's question).
    pub fn assert_long_lived_undisturbed(&self, what: &str) {
        let held = self.long_lived();
        assert_eq!(held.len(), self.long_lived, "{what}: {}", self.json);
        for connection in &held {
            assert_eq!(
                connection["errors"].as_array().map(Vec::len),
                Some(0),
                "{what}: a long-lived connection failed: {connection}"
            );
            assert_eq!(
                connection["servers"].as_array().map(Vec::len),
                Some(1),
                "{what}: a long-lived connection changed servers: {connection}"
            );
        }
        assert!(
            self.ok_requests() > 50,
            "{what}: too few new connections to mean anything: {}",
            self.json["new"]
        );
    }
}
