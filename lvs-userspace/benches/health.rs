//! The controller's cost of health checking: CPU time and memory to check 1,000 and 10,000
//! real servers at a 1 s `delay_loop`, with TCP_CHECK and with HTTP_GET.
//!
//! Run: `cargo bench -p lvs-userspace --bench health` (no root needed; `cargo xtask bench`
//! runs it after the data-plane bench).
//!
//! The real servers are local responders on 127.0.0.1, one port each, served by one tokio
//! listener task per port in a child process (this same binary, started again with
//! `LVS_HEALTH_BENCH_RESPONDERS` set), so that getrusage(RUSAGE_SELF) in this process counts
//! the controller's work only: the supervisor, the checkers, and a consumer that takes the
//! updates as the director does. Each size runs for a bounded number of delay loops; the
//! table shows how many checks were done against how many were due, the CPU time per check,
//! and the memory the supervisor added.
//!
//! Under `cargo test --benches` (no `--bench` argument) it runs a small smoke pass instead.

use std::{
    io::{BufRead as _, BufReader, Write as _},
    process::{Child, Command, ExitCode, Stdio},
    sync::{Arc, atomic::Ordering},
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail, ensure};
use lvs_userspace::{
    health::{Checkers, Options, Supervisor},
    logic::config,
};
use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::TcpListener,
};

/// Set in the child process: how many responders to run.
const RESPONDERS_VAR: &str = "LVS_HEALTH_BENCH_RESPONDERS";
/// Real servers per virtual service in the generated config.
const SERVERS_PER_SERVICE: usize = 1_000;

struct Mode {
    sizes: &'static [usize],
    /// Delay loops measured per size and checker.
    rounds: u32,
}

fn main() -> ExitCode {
    if let Ok(count) = std::env::var(RESPONDERS_VAR) {
        return match count.parse().map_err(anyhow::Error::from).and_then(respond) {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                eprintln!("responders: {error:#}");
                ExitCode::FAILURE
            }
        };
    }
    let mode = if std::env::args().any(|arg| arg == "--bench") {
        Mode {
            sizes: &[1_000, 10_000],
            rounds: 5,
        }
    } else {
        Mode {
            sizes: &[50],
            rounds: 2,
        }
    };
    match run(&mode) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("health bench: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(mode: &Mode) -> Result<()> {
    raise_fd_limit()?;
    println!(
        "Health checking: controller cost per check (local responders on 127.0.0.1, \
         delay_loop 1 s, {} rounds)",
        mode.rounds
    );
    println!(
        "{:<10} {:>7} {:>8} {:>8} {:>9} {:>10} {:>9} {:>11}",
        "checker", "servers", "checks", "due", "cpu ms", "us/check", "RSS MiB", "KiB/server"
    );
    for &size in mode.sizes {
        let responders = Responders::start(size)?;
        for checker in ["TCP_CHECK", "HTTP_GET"] {
            let row = measure(checker, &responders.ports, mode.rounds)?;
            println!(
                "{:<10} {:>7} {:>8} {:>8} {:>9.0} {:>10.1} {:>9.1} {:>11.2}",
                checker,
                size,
                row.checks,
                row.due,
                row.cpu.as_secs_f64() * 1e3,
                row.cpu.as_secs_f64() * 1e6 / row.checks.max(1) as f64,
                row.rss_growth as f64 / (1024.0 * 1024.0),
                row.rss_growth as f64 / 1024.0 / size as f64,
            );
            ensure!(row.checks > 0, "no check completed");
        }
    }
    println!(
        "checks: completed in the measured window; due: servers x rounds. cpu: user + system \
         time of this process (supervisor, checkers, update consumer). RSS: growth from \
         before the supervisor started to the end."
    );
    Ok(())
}

struct Row {
    checks: u64,
    due: u64,
    cpu: Duration,
    rss_growth: u64,
}

fn measure(checker: &str, ports: &[u16], rounds: u32) -> Result<Row> {
    let text = config_text(checker, ports);
    let config = config::parse(&text, "bench.toml").map_err(|e| anyhow::anyhow!("{e}"))?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let rss_before = rss_bytes()?;
        let cpu_before = cpu_time();
        let (mut supervisor, _initial) =
            Supervisor::start(&config, Arc::new(Checkers::default()), Options::default());
        // The first checks are spread over the first second (warmup); measure whole rounds
        // after that.
        let warmup = Duration::from_secs(1);
        let window = Duration::from_secs(u64::from(rounds));
        let started = Instant::now();
        let mut updates = 0usize;
        let mut counted_from = None;
        while started.elapsed() < warmup + window {
            if counted_from.is_none() && started.elapsed() >= warmup {
                counted_from = Some(supervisor.stats().checks_completed.load(Ordering::Relaxed));
            }
            let tick = Duration::from_millis(50);
            if let Ok(Some(batch)) = tokio::time::timeout(tick, supervisor.updates()).await {
                updates += batch.len();
            }
        }
        let total = supervisor.stats().checks_completed.load(Ordering::Relaxed);
        let checks = total - counted_from.unwrap_or(0);
        let cpu = cpu_time() - cpu_before;
        let rss_growth = rss_bytes()?.saturating_sub(rss_before);
        supervisor.shutdown().await;
        ensure!(updates > 0, "no update reached the consumer");
        // CPU is counted from the start (warmup included), so scale to the measured share.
        let cpu = cpu.mul_f64(checks as f64 / total.max(1) as f64);
        Ok(Row {
            checks,
            due: ports.len() as u64 * u64::from(rounds),
            cpu,
            rss_growth,
        })
    })
}

/// One service per thousand real servers; real server i checks 127.0.0.1:ports[i].
fn config_text(checker: &str, ports: &[u16]) -> String {
    let mut text = String::from("[director]\ninterface = \"lo\"\n");
    for (chunk_index, chunk) in ports.chunks(SERVERS_PER_SERVICE).enumerate() {
        text += &format!(
            "\n[[virtual_server]]\naddress = \"10.250.0.{}\"\nport = 80\ndelay_loop = 1\n",
            chunk_index + 1
        );
        for (i, port) in chunk.iter().enumerate() {
            let n = chunk_index * SERVERS_PER_SERVICE + i;
            text += &format!(
                "[[virtual_server.real_server]]\naddress = \"10.251.{}.{}\"\n\
                 [virtual_server.real_server.{checker}]\nconnect_ip = \"127.0.0.1\"\n\
                 connect_port = {port}\nconnect_timeout = 2\nwarmup = 1\n",
                n / 250,
                n % 250 + 1
            );
            if checker == "HTTP_GET" {
                text += "[[virtual_server.real_server.HTTP_GET.url]]\npath = \"/\"\n";
            }
        }
    }
    text
}

/// The child process with the responders; killed on drop.
struct Responders {
    child: Child,
    ports: Vec<u16>,
}

impl Responders {
    fn start(count: usize) -> Result<Self> {
        let mut child = Command::new(std::env::current_exe()?)
            .env(RESPONDERS_VAR, count.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .context("starting the responders")?;
        let stdout = child.stdout.take().context("responders' stdout")?;
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line)?;
        let ports: Vec<u16> = line
            .trim()
            .split(',')
            .filter(|p| !p.is_empty())
            .map(str::parse)
            .collect::<Result<_, _>>()
            .with_context(|| format!("responders said {line:?}"))?;
        if ports.len() != count {
            let _ = child.kill();
            bail!("{} responders started, {count} wanted", ports.len());
        }
        Ok(Self { child, ports })
    }
}

impl Drop for Responders {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The child: `count` listeners on 127.0.0.1, each answering any request with a small 200,
/// until its parent closes stdin (or kills it).
fn respond(count: usize) -> Result<()> {
    raise_fd_limit()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let mut ports = Vec::with_capacity(count);
        for _ in 0..count {
            let listener = TcpListener::bind("127.0.0.1:0").await?;
            ports.push(listener.local_addr()?.port());
            tokio::spawn(serve(listener));
        }
        let line: Vec<String> = ports.iter().map(u16::to_string).collect();
        let mut stdout = std::io::stdout();
        writeln!(stdout, "{}", line.join(","))?;
        stdout.flush()?;
        // Stops when the parent goes away (its end of our stdin closes).
        std::thread::spawn(|| {
            let mut sink = [0u8; 64];
            while std::io::Read::read(&mut std::io::stdin(), &mut sink).is_ok_and(|n| n > 0) {}
            std::process::exit(0);
        });
        std::future::pending::<()>().await;
        Ok(())
    })
}

async fn serve(listener: TcpListener) {
    const ANSWER: &[u8] = b"HTTP/1.0 200 OK\r\nContent-Length: 3\r\nConnection: close\r\n\r\nok\n";
    while let Ok((mut stream, _)) = listener.accept().await {
        tokio::spawn(async move {
            let mut head = Vec::with_capacity(256);
            let mut buf = [0u8; 512];
            // A TCP_CHECK closes at once (read returns 0); an HTTP_GET sends a request head.
            while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                match stream.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => head.extend_from_slice(&buf[..n]),
                }
                if head.len() > 16 * 1024 {
                    return;
                }
            }
            let _ = stream.write_all(ANSWER).await;
        });
    }
}

/// User plus system CPU time of this process so far.
fn cpu_time() -> Duration {
    // SAFETY: getrusage writes into the struct we pass and has no other effect.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut usage);
        usage
    };
    let time = |t: libc::timeval| {
        Duration::from_secs(t.tv_sec as u64) + Duration::from_micros(t.tv_usec as u64)
    };
    time(usage.ru_utime) + time(usage.ru_stime)
}

/// The resident set size of this process now.
fn rss_bytes() -> Result<u64> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .context("no VmRSS in /proc/self/status")?;
    Ok(kib * 1024)
}

/// Raises the open-file limit to its hard limit: each responder and each check in flight is
/// a descriptor.
fn raise_fd_limit() -> Result<()> {
    // SAFETY: getrlimit/setrlimit read and write the struct we pass.
    unsafe {
        let mut limit: libc::rlimit = std::mem::zeroed();
        ensure!(
            libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0,
            "getrlimit failed"
        );
        limit.rlim_cur = limit.rlim_max;
        ensure!(
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit) == 0,
            "setrlimit failed"
        );
    }
    Ok(())
}
