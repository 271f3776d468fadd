//! `cargo xtask bench http`: HTTP through lvs beside the load balancers an operator would
//! otherwise use, in one run, on the demo lab's network.
//!
//! The lab (scripts/lab.sh: a bridge, a client, a director and one real server, each a
//! network namespace) carries every case. The real server runs nginx; wrk in the client asks
//! for a two-byte page, for a bounded time, with keep-alive and then with one connection per
//! request. The cases: straight to the real server; through lvs's VIP (the real daemon in
//! native XDP, direct routing); and through the director's namespace by nftables DNAT,
//! HAProxy in TCP mode and nginx `stream`. The three proxies also rewrite the source (the
//! client and the real server share the segment, so without it the real server's answers
//! would skip the proxy); direct routing needs no such thing, which is its point.
//!
//! Every daemon it starts (nginx twice, HAProxy) has its own configuration, pid file and
//! prefix in a temporary directory, runs in the foreground as a child and is stopped on drop,
//! so on every exit path; the lab, with the director, is removed the same way.

use std::{
    net::{SocketAddr, TcpStream},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail, ensure};
use lvs_test_support::lab::{self, Lab};

use crate::live::net;

const PREFIX: &str = "lvshttp";
/// Addresses scripts/lab.sh gives its hosts.
const DIRECTOR: &str = "10.77.0.1";
const REAL_SERVER: &str = "10.77.0.11";
const NFT_PORT: u16 = 8080;
const HAPROXY_PORT: u16 = 8081;
const NGINX_STREAM_PORT: u16 = 8082;
const NGINX_STREAM_MODULE: &str = "/usr/lib/nginx/modules/ngx_stream_module.so";

/// How each wrk run is shaped.
#[derive(Clone, Copy)]
pub struct Load {
    /// Length of each run.
    pub seconds: u32,
    /// Connections wrk keeps open (one thread drives them all).
    pub connections: u32,
}

/// One case's two figures, in requests per second.
struct Figures {
    keep_alive: f64,
    new_connection: f64,
}

pub fn run(repo: &Path, lvs: &Path, load: Load) -> Result<()> {
    install_packages()?;
    let temp = TempDir::new()?;
    println!(
        "http bench: wrk -t1 -c{} -d{}s in the lab's client namespace, nginx (one worker) on \
         the real server; keep-alive, then one connection per request (Connection: close)",
        load.connections, load.seconds
    );
    let mut lab = Lab::up(repo, PREFIX, 1).map_err(anyhow::Error::msg)?;
    let client = lab.namespace("client");
    let director = lab.namespace("dir");
    let real_server = lab.namespace("rs1");
    for namespace in [&client, &director, &real_server] {
        tune_namespace(namespace)?;
    }
    // The lab's own small HTTP server gives way to nginx on the same port.
    lab.stop_http("rs1").map_err(anyhow::Error::msg)?;
    let _backend = Daemon::start(
        "nginx (real server)",
        &real_server,
        &temp.path,
        "backend",
        nginx_command,
        &backend_config(&temp.path),
    )?;
    wait_for_listener(&client, REAL_SERVER, 80)?;

    let mut results: Vec<(&str, Figures)> = Vec::new();
    let direct = format!("http://{REAL_SERVER}/");
    results.push((
        "direct to the real server",
        both(&client, &direct, load, None)?,
    ));

    results.push((
        "lvs VIP (native XDP, DR)",
        through_lvs(&mut lab, lvs, load)?,
    ));

    results.push((
        "nftables DNAT + masquerade",
        through_nftables(&client, &director, load)?,
    ));

    {
        let _haproxy = Daemon::start(
            "haproxy",
            &director,
            &temp.path,
            "haproxy",
            haproxy_command,
            &haproxy_config(&temp.path),
        )?;
        wait_for_listener(&client, DIRECTOR, HAPROXY_PORT)?;
        let url = format!("http://{DIRECTOR}:{HAPROXY_PORT}/");
        results.push(("HAProxy (mode tcp)", both(&client, &url, load, None)?));
    }
    {
        let _stream = Daemon::start(
            "nginx stream",
            &director,
            &temp.path,
            "stream",
            nginx_command,
            &stream_config(&temp.path),
        )?;
        wait_for_listener(&client, DIRECTOR, NGINX_STREAM_PORT)?;
        let url = format!("http://{DIRECTOR}:{NGINX_STREAM_PORT}/");
        results.push(("nginx stream", both(&client, &url, load, None)?));
    }

    print_table(&results);
    Ok(())
}

fn print_table(results: &[(&str, Figures)]) {
    let direct = &results[0].1;
    println!();
    println!(
        "{:<30} {:>16} {:>6} {:>20} {:>6}",
        "case", "keep-alive req/s", "ratio", "new-connection req/s", "ratio"
    );
    for (case, figures) in results {
        println!(
            "{:<30} {:>16.0} {:>6.2} {:>20.0} {:>6.2}",
            case,
            figures.keep_alive,
            figures.keep_alive / direct.keep_alive,
            figures.new_connection,
            figures.new_connection / direct.new_connection,
        );
    }
    println!(
        "ratio = to direct. Client, proxies and real server share this machine's CPUs (and \
         other work on it), so the figures tell load balancers apart less well than packets \
         per second do; compare ratios within one run."
    );
}

/// The lvs case: the real daemon in native XDP on the director's interface, the lab's
/// service (VIP port 80, direct routing to the real server). It is stopped afterwards, so
/// the proxies' traffic does not pass its program.
fn through_lvs(lab: &mut Lab, lvs: &Path, load: Load) -> Result<Figures> {
    // The lab runs the director in native XDP and gives the director's bridge port the no-op
    // program native XDP_TX on a veth needs (scripts/lab.sh), as the demo and the tests do.
    lab.start_director(lvs).map_err(anyhow::Error::msg)?;
    lab.wait_until_forwarding(lvs, 1, Duration::from_secs(20))
        .map_err(anyhow::Error::msg)?;
    let url = format!("http://{}/", lab::VIP);
    let figures = both(&lab.namespace("client"), &url, load, None);
    lab.stop_director().map_err(anyhow::Error::msg)?;
    figures
}

/// The nftables case: DNAT from the director's port to the real server, and masquerade so
/// the answers come back through it. The table exists only for this case, and the connection
/// tracking table is flushed before each run so one run's entries do not weigh on the next.
fn through_nftables(client: &str, director: &str, load: Load) -> Result<Figures> {
    let rules = format!(
        "table ip lvs_bench_http {{\n\
         \tchain prerouting {{\n\
         \t\ttype nat hook prerouting priority dstnat;\n\
         \t\tip daddr {DIRECTOR} tcp dport {NFT_PORT} dnat to {REAL_SERVER}:80\n\
         \t}}\n\
         \tchain postrouting {{\n\
         \t\ttype nat hook postrouting priority srcnat;\n\
         \t\tip daddr {REAL_SERVER} tcp dport 80 masquerade\n\
         \t}}\n\
         }}\n"
    );
    // The director's namespace forwards only for this case.
    net::run(
        "ip",
        &[
            "netns",
            "exec",
            director,
            "sysctl",
            "-q",
            "-w",
            "net.ipv4.ip_forward=1",
        ],
    )?;
    let mut nft = Command::new("ip")
        .args(["netns", "exec", director, "nft", "-f", "-"])
        .stdin(Stdio::piped())
        .spawn()
        .context("running nft")?;
    {
        use std::io::Write as _;
        let mut stdin = nft.stdin.take().context("nft's stdin")?;
        stdin.write_all(rules.as_bytes())?;
    }
    ensure!(nft.wait()?.success(), "nft -f refused the bench's rules");
    let url = format!("http://{DIRECTOR}:{NFT_PORT}/");
    let figures = both(client, &url, load, Some(director));
    let removed = net::run(
        "ip",
        &[
            "netns",
            "exec",
            director,
            "nft",
            "delete",
            "table",
            "ip",
            "lvs_bench_http",
        ],
    );
    let forwarding_off = net::run(
        "ip",
        &[
            "netns",
            "exec",
            director,
            "sysctl",
            "-q",
            "-w",
            "net.ipv4.ip_forward=0",
        ],
    );
    let figures = figures?;
    removed?;
    forwarding_off?;
    Ok(figures)
}

/// Both runs against one URL. With `flush_conntrack`, that namespace's connection tracking
/// table is emptied before each.
fn both(client: &str, url: &str, load: Load, flush_conntrack: Option<&str>) -> Result<Figures> {
    let run = |close: bool| -> Result<f64> {
        if let Some(namespace) = flush_conntrack {
            flush(namespace)?;
        }
        let rate = wrk(client, url, load, close)?;
        println!(
            "  {url:<28} {:<15} {rate:>9.0} req/s",
            if close {
                "new connection"
            } else {
                "keep-alive"
            }
        );
        Ok(rate)
    };
    Ok(Figures {
        keep_alive: run(false)?,
        new_connection: run(true)?,
    })
}

fn flush(namespace: &str) -> Result<()> {
    let output = Command::new("ip")
        .args(["netns", "exec", namespace, "conntrack", "-F"])
        .output()
        .context("running conntrack -F")?;
    // conntrack -F succeeds on an empty table; only a real failure is one.
    ensure!(
        output.status.success(),
        "conntrack -F in {namespace} failed: {}",
        String::from_utf8_lossy(&output.stderr).trim()
    );
    Ok(())
}

/// One wrk run from the client's namespace, bounded by `timeout` as well as by its own
/// duration. Fails when wrk reports errors or non-2xx answers: a rate of failures is no rate.
fn wrk(client: &str, url: &str, load: Load, close: bool) -> Result<f64> {
    let duration = format!("{}s", load.seconds);
    let limit = (load.seconds + 15).to_string();
    let connections = load.connections.to_string();
    let mut args = vec![
        "netns",
        "exec",
        client,
        "timeout",
        "-k",
        "5",
        &limit,
        "wrk",
        "-t1",
        "-c",
        &connections,
        "-d",
        &duration,
    ];
    if close {
        args.extend(["-H", "Connection: close"]);
    }
    args.push(url);
    let output = Command::new("ip")
        .args(&args)
        .output()
        .context("running wrk")?;
    let text = String::from_utf8_lossy(&output.stdout);
    ensure!(
        output.status.success(),
        "wrk {url} failed ({}; 124 is the time limit): {}{text}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    parse_wrk(&text).with_context(|| format!("wrk {url} said:\n{text}"))
}

/// Requests per second from wrk's report, refusing a run that saw errors.
fn parse_wrk(report: &str) -> Result<f64> {
    for marker in ["Non-2xx or 3xx responses", "Socket errors"] {
        if let Some(line) = report.lines().find(|line| line.contains(marker)) {
            bail!("wrk saw failures: {}", line.trim());
        }
    }
    let rate = report
        .lines()
        .find_map(|line| line.trim().strip_prefix("Requests/sec:"))
        .context("no Requests/sec line in wrk's report")?
        .trim()
        .parse::<f64>()
        .context("wrk's Requests/sec is not a number")?;
    ensure!(rate > 0.0, "wrk completed no requests");
    Ok(rate)
}

/// Room for tens of thousands of short connections a second: every local port, and ports in
/// TIME_WAIT reused for new outgoing connections (the client's and the proxies').
fn tune_namespace(namespace: &str) -> Result<()> {
    for setting in [
        "net.ipv4.ip_local_port_range=1024 65535",
        "net.ipv4.tcp_tw_reuse=1",
        "net.core.somaxconn=4096",
    ] {
        net::run(
            "ip",
            &["netns", "exec", namespace, "sysctl", "-q", "-w", setting],
        )?;
    }
    Ok(())
}

/// Waits until something accepts TCP on `address:port`, connecting from `namespace`.
fn wait_for_listener(namespace: &str, address: &str, port: u16) -> Result<()> {
    let target: SocketAddr = format!("{address}:{port}").parse()?;
    net::in_namespace(namespace, || {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if TcpStream::connect_timeout(&target, Duration::from_millis(500)).is_ok() {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("nothing listens on {target} after 10 s");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    })
}

/// Debian packages the bench uses, by the file that shows each is there.
const PACKAGES: [(&str, &str); 6] = [
    ("/usr/bin/wrk", "wrk"),
    ("/usr/sbin/nginx", "nginx"),
    (NGINX_STREAM_MODULE, "libnginx-mod-stream"),
    ("/usr/sbin/haproxy", "haproxy"),
    ("/usr/sbin/nft", "nftables"),
    ("/usr/sbin/conntrack", "conntrack"),
];

/// Installs what is missing and says so. nginx and HAProxy packages start a system service;
/// the bench runs its own instances, so a service a package just started is stopped and
/// disabled again at once (the bench never leaves one running or enabled).
fn install_packages() -> Result<()> {
    let missing: Vec<&str> = PACKAGES
        .iter()
        .filter(|(file, _)| !Path::new(file).exists())
        .map(|(_, package)| *package)
        .collect();
    if missing.is_empty() {
        println!("[bench http] Debian packages: wrk, nginx, HAProxy, nftables, conntrack present");
        return Ok(());
    }
    println!(
        "[bench http] installing Debian packages: {}",
        missing.join(" ")
    );
    net::run("apt-get", &["update", "-qq"])?;
    let mut args = vec!["install", "-y", "-qq"];
    args.extend(&missing);
    let status = Command::new("apt-get")
        .args(&args)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .stdout(Stdio::null())
        .status()
        .context("running apt-get install")?;
    ensure!(
        status.success(),
        "apt-get install {} failed",
        missing.join(" ")
    );
    for service in ["nginx", "haproxy"] {
        if missing.contains(&service) {
            stop_and_disable(service)?;
        }
    }
    Ok(())
}

fn stop_and_disable(service: &str) -> Result<()> {
    if Path::new("/run/systemd/system").exists() {
        net::run("systemctl", &["disable", "--now", service])?;
    } else {
        // Without systemd the package starts the service through its init script (when the
        // policy allows it); stopping one that is not running fails harmlessly.
        let _ = Command::new("invoke-rc.d").args([service, "stop"]).output();
        net::run("update-rc.d", &[service, "disable"])?;
    }
    println!(
        "[bench http] stopped (if running) and disabled the {service} service the package installed"
    );
    Ok(())
}

/// A daemon in the foreground in a namespace, with its files under the temporary directory;
/// stopped (SIGTERM, then SIGKILL) on drop.
struct Daemon {
    name: &'static str,
    child: Child,
}

impl Daemon {
    fn start(
        name: &'static str,
        namespace: &str,
        dir: &Path,
        stem: &str,
        command: fn(&Path) -> Vec<String>,
        config: &str,
    ) -> Result<Self> {
        let config_path = dir.join(format!("{stem}.conf"));
        std::fs::write(&config_path, config)?;
        let log = std::fs::File::create(dir.join(format!("{stem}.out")))?;
        let child = Command::new("ip")
            .args(["netns", "exec", namespace])
            .args(command(&config_path))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {name}"))?;
        let mut daemon = Self { name, child };
        std::thread::sleep(Duration::from_millis(200));
        if let Some(status) = daemon.child.try_wait()? {
            bail!(
                "{name} exited at once ({status}):\n{}",
                std::fs::read_to_string(dir.join(format!("{stem}.out"))).unwrap_or_default()
            );
        }
        Ok(daemon)
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        // `ip netns exec` execs the daemon, so the child's pid is the daemon's own.
        // SAFETY: signalling our own child by its pid.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        eprintln!(
            "{} did not stop within 5 s of SIGTERM; killing it",
            self.name
        );
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn nginx_command(config: &Path) -> Vec<String> {
    let dir = config.parent().unwrap_or(Path::new("/"));
    vec![
        "nginx".into(),
        "-p".into(),
        dir.display().to_string(),
        "-e".into(),
        dir.join("nginx-startup.log").display().to_string(),
        "-c".into(),
        config.display().to_string(),
    ]
}

fn haproxy_command(config: &Path) -> Vec<String> {
    // -db: in the foreground, so the bench holds it as a child.
    vec![
        "haproxy".into(),
        "-db".into(),
        "-f".into(),
        config.display().to_string(),
    ]
}

/// The real server's nginx: one worker, a two-byte answer, no log, keep-alive without a
/// request limit (so keep-alive runs never reconnect).
fn backend_config(dir: &Path) -> String {
    let d = dir.display();
    format!(
        "daemon off;\nworker_processes 1;\npid {d}/backend.pid;\nerror_log {d}/backend.err;\n\
         events {{ worker_connections 4096; }}\n\
         http {{\n  access_log off;\n  keepalive_requests 10000000;\n\
         \x20 client_body_temp_path {d}/body;\n  proxy_temp_path {d}/proxy;\n\
         \x20 fastcgi_temp_path {d}/fastcgi;\n  uwsgi_temp_path {d}/uwsgi;\n\
         \x20 scgi_temp_path {d}/scgi;\n\
         \x20 server {{\n    listen 80 reuseport backlog=4096;\n\
         \x20   location / {{ return 200 \"ok\"; }}\n  }}\n}}\n"
    )
}

/// nginx `stream` on the director: one worker, TCP to the real server.
fn stream_config(dir: &Path) -> String {
    let d = dir.display();
    format!(
        "load_module {NGINX_STREAM_MODULE};\ndaemon off;\nworker_processes 1;\n\
         pid {d}/stream.pid;\nerror_log {d}/stream.err;\n\
         events {{ worker_connections 4096; }}\n\
         stream {{\n  server {{\n    listen {DIRECTOR}:{NGINX_STREAM_PORT} backlog=4096;\n\
         \x20   proxy_pass {REAL_SERVER}:80;\n  }}\n}}\n"
    )
}

/// HAProxy in TCP mode on the director: one thread, like the nginx proxy's one worker.
fn haproxy_config(dir: &Path) -> String {
    let d = dir.display();
    format!(
        "global\n  nbthread 1\n  maxconn 8192\n  pidfile {d}/haproxy.pid\n\
         defaults\n  mode tcp\n  timeout connect 5s\n  timeout client 30s\n  timeout server 30s\n\
         frontend bench\n  bind {DIRECTOR}:{HAPROXY_PORT}\n  default_backend real_servers\n\
         backend real_servers\n  server rs1 {REAL_SERVER}:80\n"
    )
}

/// A directory of the bench's own under /run, removed on drop.
struct TempDir {
    path: PathBuf,
}

impl TempDir {
    fn new() -> Result<Self> {
        let path = PathBuf::from(format!("/run/lvs-bench-http.{}", std::process::id()));
        std::fs::create_dir(&path).with_context(|| format!("creating {}", path.display()))?;
        Ok(Self { path })
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if let Err(error) = std::fs::remove_dir_all(&self.path) {
            eprintln!("removing {}: {error}", self.path.display());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::parse_wrk;

    const REPORT: &str = "Running 5s test @ http://10.77.0.11/\n  1 threads and 64 connections\n\
        \x20 Thread Stats   Avg      Stdev     Max   +/- Stdev\n\
        \x20   Latency     1.90ms  403.44us   9.35ms   83.12%\n\
        \x20 168921 requests in 5.00s, 26.42MB read\n\
        Requests/sec:  33776.10\nTransfer/sec:      5.28MB\n";

    #[test]
    fn reads_the_rate() {
        assert_eq!(parse_wrk(REPORT).unwrap(), 33776.10);
    }

    #[test]
    fn refuses_a_run_with_errors() {
        let failed = REPORT.replace(
            "Requests/sec",
            "  Socket errors: connect 0, read 12, write 0, timeout 0\nRequests/sec",
        );
        assert!(parse_wrk(&failed).is_err());
        let non_2xx = REPORT.replace(
            "Requests/sec",
            "  Non-2xx or 3xx responses: 7\nRequests/sec",
        );
        assert!(parse_wrk(&non_2xx).is_err());
    }

    #[test]
    fn refuses_a_report_without_a_rate() {
        assert!(parse_wrk("Running 5s test @ http://x/\n").is_err());
        assert!(parse_wrk(&REPORT.replace("33776.10", "0.00")).is_err());
    }
}
