//! The controller's cost of health checking: CPU time and memory to check 1,000 and 10,000
//! real servers at a 1 s `delay_loop`, with TCP_CHECK and with HTTP_GET.
//!
//! Run: `cargo bench -p lvs-userspace --bench health` (no root needed; `cargo xtask bench`
//! runs it after the data-plane bench).
//!
//! The real servers are local responders, each on an address of its own in 127.1.0.0/16 and
//! all on one port, as real servers have addresses of their own and the service's port,
//! served by one tokio listener task each in a child process (this same binary, started again with
//! `LVS_HEALTH_BENCH_RESPONDERS` set), so that getrusage(RUSAGE_SELF) in this process counts
//! the controller's work only: the supervisor, the checkers, and a consumer that takes the
//! updates as the director does. Each size runs for a bounded number of delay loops; the
//! table shows how many checks were done against how many were due, the CPU time per check,
//! and the memory the supervisor added.
//!
//! Each checker also gets a `kernel floor` row: the same connections made one after another
//! by a plain blocking loop on this thread (socket, `SO_LINGER` 0, connect, for HTTP_GET a
//! request and the answer read to its end, close with a reset), with no runtime, timer or
//! bookkeeping. On the loopback the kernel charges the connecting process for both ends of
//! the handshake, so that row is what a check costs before the controller does anything, and
//! the distance to it is what the controller adds. A `paced floor` row runs the same loop at
//! the checkers' pace, each round spread over the 1 s `delay_loop` and woken once a
//! millisecond for the connections due by then (as a timer wheel fires them): the real
//! servers then sleep between connections and each must be woken, which the loopback also
//! charges to the connecting process, so that row is the floor the checkers compare with.
//!
//! Under `cargo test --benches` (no `--bench` argument) it runs a small smoke pass instead.
//! Arguments other than flags pick rows, each a checker or a size that a row must have:
//! `cargo bench -p lvs-userspace --bench health -- TCP_CHECK 10000` runs that row alone.

use std::{
    io::{BufRead as _, BufReader, Write as _},
    net::{Ipv4Addr, SocketAddrV4},
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
    /// Checkers and sizes a row must have to run (none: every row runs).
    only: Vec<String>,
}

impl Mode {
    fn runs(&self, checker: &str, size: usize) -> bool {
        self.only
            .iter()
            .all(|wanted| wanted == checker || *wanted == size.to_string())
    }
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
    let only: Vec<String> = std::env::args()
        .skip(1)
        .filter(|arg| !arg.starts_with('-'))
        .collect();
    let mode = if std::env::args().any(|arg| arg == "--bench") {
        Mode {
            sizes: &[1_000, 10_000],
            rounds: 5,
            only,
        }
    } else {
        Mode {
            sizes: &[50],
            rounds: 2,
            only: Vec::new(),
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
        "Health checking: controller cost per check (local responders, each on its own \
         address, delay_loop {} s, {} rounds; target: every check on time, <= \
         {TCP_TARGET_US} us per TCP_CHECK, <= {HTTP_TARGET_US} us per HTTP_GET)",
        DELAY_LOOP.as_secs(),
        mode.rounds
    );
    println!(
        "{:<10} {:>7} {:<11} {:>8} {:>8} {:>9} {:>10} {:>9} {:>11} {:>7}",
        "checker",
        "servers",
        "runs on",
        "checks",
        "due",
        "cpu ms",
        "us/check",
        "RSS MiB",
        "KiB/server",
        "target"
    );
    for &size in mode.sizes {
        let checkers: Vec<&str> = ["TCP_CHECK", "HTTP_GET"]
            .into_iter()
            .filter(|checker| mode.runs(checker, size))
            .collect();
        if checkers.is_empty() {
            continue;
        }
        let responders = Responders::start(size)?;
        for checker in checkers {
            let target = if checker == "TCP_CHECK" {
                TCP_TARGET_US
            } else {
                HTTP_TARGET_US
            };
            // Side by side in one run: where the director runs its checks (a thread of their
            // own), and a task on the director's multi-threaded runtime, as it did before.
            let mut per_check = Vec::new();
            for placement in [Placement::OwnThread, Placement::SharedRuntime] {
                let row = measure(checker, &responders.endpoints, mode.rounds, placement)?;
                ensure!(row.checks > 0, "no check completed");
                let us = row.cpu.as_secs_f64() * 1e6 / row.checks as f64;
                per_check.push(us);
                let verdict = match placement {
                    Placement::OwnThread if us <= target && row.on_time() => "met",
                    Placement::OwnThread => "missed",
                    Placement::SharedRuntime => "",
                };
                println!(
                    "{:<10} {:>7} {:<11} {:>8} {:>8} {:>9.0} {:>10.1} {:>9.1} {:>11.2} {:>7}",
                    checker,
                    size,
                    placement.name(),
                    row.checks,
                    row.due,
                    row.cpu.as_secs_f64() * 1e3,
                    us,
                    row.rss_growth as f64 / (1024.0 * 1024.0),
                    row.rss_growth as f64 / 1024.0 / size as f64,
                    verdict,
                );
            }
            for (name, pace) in [("floor", None), ("paced floor", Some(DELAY_LOOP))] {
                let row = floor(checker, &responders.endpoints, mode.rounds, pace)?;
                ensure!(row.checks > 0, "no connection of the {name} completed");
                println!(
                    "{:<10} {:>7} {:<11} {:>8} {:>8} {:>9.0} {:>10.1} {:>9} {:>11} {:>7}",
                    checker,
                    size,
                    name,
                    row.checks,
                    row.due,
                    row.cpu.as_secs_f64() * 1e3,
                    row.cpu.as_secs_f64() * 1e6 / row.checks as f64,
                    "",
                    "",
                    "",
                );
            }
            println!(
                "{:<10} {:>7} own thread / shared runtime, CPU per check: {:.2}",
                "",
                "",
                per_check[0] / per_check[1]
            );
        }
    }
    println!(
        "checks: completed in the measured window (on time: at least 99.5% of due); due: \
         servers x rounds. cpu: user + system time of this process (supervisor, checkers, \
         update consumer), which includes the kernel's work for the loopback's other end. \
         floor: the same connections by a blocking loop, the thread's CPU (the kernel's share \
         of a check), back to back and paced as the checks are. RSS: growth from before the \
         supervisor started to the end."
    );
    Ok(())
}

/// The checks' `delay_loop` in the generated config.
const DELAY_LOOP: Duration = Duration::from_secs(1);

const TCP_TARGET_US: f64 = 30.0;
const HTTP_TARGET_US: f64 = 60.0;

/// Where the supervisor runs.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Placement {
    /// A thread of its own with a single-threaded runtime: what the director does.
    OwnThread,
    /// A task on the director's multi-threaded runtime.
    SharedRuntime,
}

impl Placement {
    fn name(self) -> &'static str {
        match self {
            Placement::OwnThread => "own thread",
            Placement::SharedRuntime => "shared rt",
        }
    }
}

struct Row {
    checks: u64,
    due: u64,
    cpu: Duration,
    rss_growth: u64,
}

impl Row {
    /// At least 99.5% of the checks due in the window completed in it.
    fn on_time(&self) -> bool {
        self.checks * 1000 >= self.due * 995
    }
}

fn measure(
    checker: &str,
    endpoints: &[SocketAddrV4],
    rounds: u32,
    placement: Placement,
) -> Result<Row> {
    let text = config_text(checker, endpoints);
    let config = config::parse(&text, "bench.toml").map_err(|e| anyhow::anyhow!("{e}"))?;
    // The director's runtime: multi-threaded, a worker per core.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let rss_before = rss_bytes()?;
        let cpu_before = cpu_time();
        let (mut supervisor, _initial) = match placement {
            Placement::OwnThread => Supervisor::start_on_own_thread(
                &config,
                Arc::new(Checkers::default()),
                Options::default(),
            ),
            Placement::SharedRuntime => {
                Supervisor::start(&config, Arc::new(Checkers::default()), Options::default())
            }
        };
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
            due: endpoints.len() as u64 * u64::from(rounds),
            cpu,
            rss_growth,
        })
    })
}

/// The kernel's floor: each endpoint checked `rounds` times by a blocking loop on this thread,
/// counted with this thread's own CPU time; back to back, or with each round spread over
/// `pace` and the loop woken at the first millisecond boundary after a connection falls due.
fn floor(
    checker: &str,
    endpoints: &[SocketAddrV4],
    rounds: u32,
    pace: Option<Duration>,
) -> Result<Row> {
    use socket2::{Domain, Socket, Type};
    const REQUEST: &[u8] = b"GET / HTTP/1.0\r\nHost: bench\r\nUser-Agent: floor\r\n\r\n";
    let http = checker == "HTTP_GET";
    let mut checks = 0;
    let mut answer = [0u8; 512];
    let before = thread_cpu_time();
    let started = Instant::now();
    for round in 0..rounds {
        for (index, endpoint) in endpoints.iter().enumerate() {
            if let Some(pace) = pace {
                let due = pace * round + pace.mul_f64(index as f64 / endpoints.len() as f64);
                let now = started.elapsed();
                if due > now {
                    let wake_ms = due.as_millis() as u64 + 1;
                    std::thread::sleep(Duration::from_millis(wake_ms) - now);
                }
            }
            let socket = Socket::new(Domain::IPV4, Type::STREAM, None)?;
            socket.set_linger(Some(Duration::ZERO))?;
            socket.set_read_timeout(Some(Duration::from_secs(2)))?;
            if socket.connect(&(*endpoint).into()).is_err() {
                continue;
            }
            if http {
                let mut stream = std::net::TcpStream::from(socket);
                stream.set_nodelay(true)?;
                stream.write_all(REQUEST)?;
                let mut got = 0;
                loop {
                    match std::io::Read::read(&mut stream, &mut answer) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => got += n,
                    }
                }
                if got == 0 {
                    continue;
                }
            }
            checks += 1;
        }
    }
    Ok(Row {
        checks,
        due: endpoints.len() as u64 * u64::from(rounds),
        cpu: thread_cpu_time() - before,
        rss_growth: 0,
    })
}

/// One service per thousand real servers; real server i checks endpoints[i].
fn config_text(checker: &str, endpoints: &[SocketAddrV4]) -> String {
    let mut text = String::from("[director]\ninterface = \"lo\"\n");
    for (chunk_index, chunk) in endpoints.chunks(SERVERS_PER_SERVICE).enumerate() {
        text += &format!(
            "\n[[virtual_server]]\naddress = \"10.250.0.{}\"\nport = 80\ndelay_loop = {}\n",
            chunk_index + 1,
            DELAY_LOOP.as_secs(),
        );
        for (i, endpoint) in chunk.iter().enumerate() {
            let n = chunk_index * SERVERS_PER_SERVICE + i;
            text += &format!(
                "[[virtual_server.real_server]]\naddress = \"10.251.{}.{}\"\n\
                 [virtual_server.real_server.{checker}]\nconnect_ip = \"{ip}\"\n\
                 connect_port = {port}\nconnect_timeout = 2\nwarmup = 1\n",
                n / 250,
                n % 250 + 1,
                ip = endpoint.ip(),
                port = endpoint.port(),
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
    endpoints: Vec<SocketAddrV4>,
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
        let endpoints: Vec<SocketAddrV4> = line
            .trim()
            .split(',')
            .filter(|p| !p.is_empty())
            .map(str::parse)
            .collect::<Result<_, _>>()
            .with_context(|| format!("responders said {line:?}"))?;
        if endpoints.len() != count {
            let _ = child.kill();
            bail!("{} responders started, {count} wanted", endpoints.len());
        }
        Ok(Self { child, endpoints })
    }
}

impl Drop for Responders {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The child: `count` listeners, each answering any request with a small 200, until its
/// parent closes stdin (or kills it). Listener i has the address 127.1.(i / 250).(i % 250 + 1)
/// (the whole of 127.0.0.0/8 is the loopback's) and all share the port the first one got.
fn respond(count: usize) -> Result<()> {
    raise_fd_limit()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let mut endpoints = Vec::with_capacity(count);
        let mut port = 0;
        for i in 0..count {
            let address = Ipv4Addr::new(127, 1, (i / 250) as u8, (i % 250 + 1) as u8);
            let listener = TcpListener::bind(SocketAddrV4::new(address, port))
                .await
                .with_context(|| format!("listening on {address}:{port}"))?;
            port = listener.local_addr()?.port();
            endpoints.push(SocketAddrV4::new(address, port));
            tokio::spawn(serve(listener));
        }
        let line: Vec<String> = endpoints.iter().map(ToString::to_string).collect();
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
    rusage(libc::RUSAGE_SELF)
}

/// User plus system CPU time of the calling thread so far.
fn thread_cpu_time() -> Duration {
    rusage(libc::RUSAGE_THREAD)
}

fn rusage(who: libc::c_int) -> Duration {
    // SAFETY: getrusage writes into the struct we pass and has no other effect.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        libc::getrusage(who, &mut usage);
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
