//! `cargo xtask`: what cargo alone cannot do. Installing the toolchain parts, running as
//! root, the demo lab, the root tests, the benchmarks and fuzzing.
//!
//! Every command first runs `scripts/bootstrap.sh`, which installs what is missing (and says
//! so) and skips what is there, so each command works on a fresh machine.

mod fuzz;
mod ha;
mod http;
mod live;

use std::{
    ffi::OsString,
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use anyhow::{Context as _, Result, bail, ensure};
use clap::{Parser, Subcommand};
use lvs_test_support::lab;

#[derive(Parser)]
#[command(name = "cargo xtask")]
struct Cli {
    #[command(subcommand)]
    command: Task,
}

#[derive(Subcommand)]
enum BenchKind {
    /// The real daemon in native XDP forwarding frames from a live-frames generator through a
    /// veth, side by side with a MAC-swapping XDP_TX floor, at 1k and many established flows
    /// and under a flood of new flows; Mpps, ratios, the daemon's RSS and CPU.
    Live {
        /// Established flows in the large pattern.
        #[arg(long, default_value_t = 1_000_000)]
        flows: u32,
        /// Seconds of traffic before each round is counted.
        #[arg(long, default_value_t = 1.0)]
        warmup: f64,
        /// Seconds of traffic counted per round.
        #[arg(long, default_value_t = 2.0)]
        seconds: f64,
        /// Repetitions of floor, lvs, floor; the table shows their medians.
        #[arg(long, default_value_t = 3)]
        repetitions: u32,
    },
    /// HTTP through the demo lab: wrk against an nginx real server directly, through lvs's
    /// VIP (native XDP), nftables DNAT, HAProxy (TCP) and nginx `stream`; keep-alive and one
    /// connection per request, requests/s and the ratio to direct. Installs wrk, nginx,
    /// HAProxy, nftables and conntrack (Debian) if missing.
    Http {
        /// Seconds each wrk run lasts.
        #[arg(long, default_value_t = 5)]
        seconds: u32,
        /// Connections wrk keeps open.
        #[arg(long, default_value_t = 64)]
        connections: u32,
    },
}

#[derive(Subcommand)]
enum Task {
    /// Run the director. With --config, on this node's interfaces; without, on a demo lab of
    /// network namespaces (client, director, real servers) that it builds and tears down.
    Run {
        /// The director's TOML configuration.
        #[arg(long)]
        config: Option<PathBuf>,
        /// Demo only: leave the lab and the director running at the end.
        #[arg(long)]
        keep: bool,
        /// Demo only: how many requests the client sends.
        #[arg(long, default_value_t = 120)]
        requests: usize,
        /// Demo only: how many real servers the lab has (1 to 8).
        #[arg(long, default_value_t = 3)]
        real_servers: u8,
        /// The two-director demo: keepalived's VRRP and lvs with connection sync on a MASTER
        /// and a BACKUP, under load; the master's cable is pulled midway, and the takeover
        /// time and what the clients noticed are printed.
        #[arg(long, conflicts_with_all = ["config", "keep", "requests"])]
        ha: bool,
    },
    /// Run every test: unit tests, then the root tests (data plane and end to end) serially.
    Test,
    /// cargo fmt --check, and clippy on the host crates and on the eBPF crate.
    Lint,
    /// Benchmarks. Without a subcommand: the data plane's per-packet cost against an empty XDP
    /// program (BPF_PROG_TEST_RUN), its scaling with servers and flows, Maglev, and the
    /// controller's cost of health checking. `live`: the daemon forwarding live traffic
    /// against the XDP floor. `http`: HTTP req/s through lvs and its peers.
    Bench {
        #[command(subcommand)]
        what: Option<BenchKind>,
    },
    /// Fuzz every parser of outside input (config, keepalived.conf, lvsadm's command line and
    /// -R files, control-socket requests, sync messages) with libFuzzer on the nightly
    /// toolchain, each target for a bounded time. Installs the nightly parts and cargo-fuzz.
    /// The target `packets` (only when named) runs mutated frames through the real XDP
    /// object as root for the whole time instead.
    Fuzz {
        /// The targets to run; all of them when none is given.
        targets: Vec<String>,
        /// Seconds each target runs (CI runs 30).
        #[arg(long, default_value_t = 300)]
        seconds: u32,
    },
    /// Build or remove the demo lab by hand (`up` or `down`), see scripts/lab.sh.
    Lab {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    let repo = repo_root();
    std::env::set_current_dir(&repo).context("entering the repository")?;
    match cli.command {
        Task::Run {
            config: Some(config),
            ..
        } => {
            bootstrap()?;
            let built = build(Profile::Release)?;
            as_root(
                Command::new(&built.lvs)
                    .arg("director")
                    .arg("--config")
                    .arg(config),
            )
        }
        Task::Run {
            config: None,
            keep,
            requests,
            real_servers,
            ha,
        } => {
            bootstrap()?;
            let built = build(Profile::SharedWithTests)?;
            ensure_root_or_reexec()?;
            if ha {
                ha::run(&repo, &built.lvs, real_servers)
            } else {
                demo(&repo, &built, keep, requests, real_servers)
            }
        }
        Task::Test => {
            bootstrap()?;
            say("unit tests (no root)");
            run(cargo().args(["test", "--workspace"]))?;
            say(
                "root tests: data plane and scheduling (BPF_PROG_TEST_RUN), end to end, provisioning, \
                 keepalived's check of the import, restarts, the sync sockets, two directors with \
                 keepalived and three behind ECMP with BIRD (namespaces), ten million mutated frames \
                 through the program, a flood of a million new flows through the lab, one at a \
                 time",
            );
            let mut root_tests = cargo();
            root_tests.args([
                "test",
                "-p",
                "lvs-userspace",
                "--test",
                "dataplane",
                "--test",
                "scheduling",
                "--test",
                "e2e",
                "--test",
                "provision",
                "--test",
                "health_e2e",
                "--test",
                "keepalived",
                "--test",
                "restart",
                "--test",
                "sync_sockets",
                "--test",
                "ha",
                "--test",
                "packet_mutation",
                "--test",
                "scale_out",
                "--test",
                "flood",
                "--test",
                "ipv6",
                "--",
                "--ignored",
                "--test-threads=1",
            ]);
            as_root(&mut root_tests)
        }
        Task::Lint => {
            bootstrap()?;
            lint()
        }
        Task::Bench {
            what:
                Some(BenchKind::Live {
                    flows,
                    warmup,
                    seconds,
                    repetitions,
                }),
        } => {
            ensure!(
                (1..=4_000_000).contains(&flows),
                "--flows must be between 1 and 4000000 (the generator's source space)"
            );
            ensure!(
                (0.1..=30.0).contains(&warmup) && (0.1..=30.0).contains(&seconds),
                "--warmup and --seconds must be between 0.1 and 30"
            );
            ensure!(
                (1..=20).contains(&repetitions),
                "--repetitions must be between 1 and 20"
            );
            bootstrap()?;
            let lvs = build(Profile::Release)?.lvs;
            ensure_root_or_reexec()?;
            live::run(
                &lvs,
                flows,
                live::Timing {
                    warmup: Duration::from_secs_f64(warmup),
                    window: Duration::from_secs_f64(seconds),
                },
                repetitions,
            )
        }
        Task::Bench {
            what:
                Some(BenchKind::Http {
                    seconds,
                    connections,
                }),
        } => {
            ensure!(
                (1..=60).contains(&seconds),
                "--seconds must be between 1 and 60"
            );
            ensure!(
                (1..=1000).contains(&connections),
                "--connections must be between 1 and 1000"
            );
            bootstrap()?;
            let lvs = build(Profile::Release)?.lvs;
            ensure_root_or_reexec()?;
            http::run(
                &repo,
                &lvs,
                http::Load {
                    seconds,
                    connections,
                },
            )
        }
        Task::Bench { what: None } => {
            bootstrap()?;
            let mut bench = cargo();
            bench.args(["bench", "-p", "lvs-userspace", "--bench", "dataplane"]);
            bench.args(["--bench", "scaling"]);
            bench.args(["--bench", "health"]);
            as_root(&mut bench)
        }
        Task::Fuzz { targets, seconds } => {
            ensure!(
                (1..=86_400).contains(&seconds),
                "--seconds must be between 1 and 86400"
            );
            run(Command::new("bash").args(["scripts/bootstrap.sh", "--fuzz"]))?;
            fuzz::run(&repo, &targets, seconds)
        }
        Task::Lab { args } => {
            let mut lab = Command::new("bash");
            lab.arg("scripts/lab.sh").args(args);
            as_root(&mut lab)
        }
    }
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the repository")
        .to_owned()
}

fn say(what: &str) {
    eprintln!("[xtask] {what}");
}

fn run(command: &mut Command) -> Result<()> {
    let status = command
        .status()
        .with_context(|| format!("running {command:?}"))?;
    ensure!(status.success(), "{command:?} failed ({status})");
    Ok(())
}

/// A `cargo` command without the variables `cargo run` set for xtask itself.
///
/// Cargo gives the binary it runs the package's CARGO_MANIFEST_DIR, CARGO_PKG_NAME and the
/// like. Passed on, they reach build scripts that watch them: ring's reruns when
/// CARGO_MANIFEST_DIR changes, and with it rustls, the controller and both binaries were
/// rebuilt whenever a build alternated between xtask and a plain `cargo`.
fn cargo() -> Command {
    let mut cargo = Command::new("cargo");
    strip_cargo_variables(&mut cargo);
    cargo
}

/// Removes from `command`'s environment what `cargo run` set for xtask (see [`cargo`]).
fn strip_cargo_variables(command: &mut Command) {
    for (name, _) in std::env::vars_os() {
        let Some(name) = name.to_str() else { continue };
        if name.starts_with("CARGO_PKG_")
            || [
                "CARGO_MANIFEST_DIR",
                "CARGO_MANIFEST_PATH",
                "CARGO_CRATE_NAME",
                "CARGO_BIN_NAME",
                "CARGO_PRIMARY_PACKAGE",
            ]
            .contains(&name)
        {
            command.env_remove(name);
        }
    }
}

fn bootstrap() -> Result<()> {
    run(Command::new("bash").arg("scripts/bootstrap.sh"))
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// Runs a command as root: directly when we are root, through sudo otherwise (keeping PATH,
/// so the same cargo and toolchain are used).
fn as_root(command: &mut Command) -> Result<()> {
    if is_root() {
        return run(command);
    }
    say("this needs root; running it through sudo");
    run(&mut sudo(command.get_program(), command.get_args()))
}

/// `sudo` running `program args`, keeping PATH and the rustup/cargo variables so the same
/// toolchain is used as root.
fn sudo<'a>(
    program: impl AsRef<std::ffi::OsStr>,
    args: impl IntoIterator<Item = &'a std::ffi::OsStr>,
) -> Command {
    let mut sudo = Command::new("sudo");
    sudo.arg("--preserve-env=PATH,RUSTUP_HOME,CARGO_HOME,RUSTUP_TOOLCHAIN")
        .arg(program)
        .args(args);
    sudo
}

/// Re-executes this xtask under sudo when not root (for tasks that do root work inline).
fn ensure_root_or_reexec() -> Result<()> {
    if is_root() {
        return Ok(());
    }
    let me = std::env::current_exe().context("finding the xtask binary")?;
    let args: Vec<OsString> = std::env::args_os().skip(1).collect();
    say("this needs root; running again through sudo");
    run(&mut sudo(me, args.iter().map(OsString::as_os_str)))?;
    std::process::exit(0);
}

/// The two binaries `cargo xtask run` built: the director and its ipvsadm-like client.
struct Built {
    lvs: PathBuf,
    lvsadm: PathBuf,
}

/// How `cargo xtask run` builds the binaries.
#[derive(Clone, Copy)]
enum Profile {
    /// The demo's: the build `cargo xtask test` uses, so that running the demo and then the
    /// tests compiles the workspace once. It is debug: the controller's speed does not matter
    /// for the demo, and the data plane is the eBPF object, which is always built in release.
    SharedWithTests,
    /// A director on this node's interfaces: release, the build the README installs.
    Release,
}

/// Builds `lvs` and `lvsadm` (the README's examples use both) and returns their paths.
fn build(profile: Profile) -> Result<Built> {
    let mut command = cargo();
    command.args([
        "build",
        "-p",
        "lvs-userspace",
        "--bin",
        "lvs",
        "--bin",
        "lvsadm",
    ]);
    let dir = match profile {
        Profile::SharedWithTests => {
            say("building lvs and lvsadm (debug, the build `cargo xtask test` uses)");
            // The tests' dev-dependencies turn on features of shared dependencies (tokio's
            // `test-util` among them). Cargo unifies those only when a selected target uses
            // the dev-dependencies, so the smallest integration test (`lvsadm`) is built with
            // the binaries; without it, `cargo xtask test` would recompile tokio and
            // everything above it, the controller included.
            command.args(["--test", "lvsadm"]);
            "target/debug"
        }
        Profile::Release => {
            say("building lvs and lvsadm (release)");
            command.arg("--release");
            "target/release"
        }
    };
    run(&mut command)?;
    let dir = repo_root().join(dir);
    Ok(Built {
        lvs: dir.join("lvs"),
        lvsadm: dir.join("lvsadm"),
    })
}

fn lint() -> Result<()> {
    say("cargo fmt --check");
    run(cargo().args(["fmt", "--all", "--", "--check"]))?;
    say("clippy: host crates, tests and benches");
    run(cargo().args([
        "clippy",
        "--workspace",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ]))?;
    say("clippy: the eBPF crate for bpfel-unknown-none");
    run(cargo().env("RUSTC_BOOTSTRAP", "1").args([
        "clippy",
        "-p",
        "lvs-ebpf",
        "--release",
        "--target",
        "bpfel-unknown-none",
        "-Z",
        "build-std=core",
        "--target-dir",
        "target/ebpf-clippy",
        "--",
        "-D",
        "warnings",
    ]))?;
    // The fuzz targets are a workspace of their own (cargo-fuzz builds them with nightly's
    // sanitizers); checking them needs neither, so the stable toolchain lints them here.
    say("rustfmt and clippy: the fuzz targets");
    run(cargo().args([
        "fmt",
        "--manifest-path",
        "fuzz/Cargo.toml",
        "--all",
        "--",
        "--check",
    ]))?;
    run(cargo().args([
        "clippy",
        "--manifest-path",
        "fuzz/Cargo.toml",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ]))
}

/// The demo: a lab of namespaces, the director in it, requests from the client, and what
/// happened, in numbers.
fn demo(repo: &Path, built: &Built, keep: bool, requests: usize, real_servers: u8) -> Result<()> {
    let lvs = built.lvs.as_path();
    if !(1..=8).contains(&real_servers) {
        bail!("--real-servers must be between 1 and 8");
    }
    say(&format!(
        "building the demo lab: a client, the director and {real_servers} real servers, on \
         IPv4 and IPv6"
    ));
    let mut lab = lab::Lab::up_with(
        repo,
        "lvsdemo",
        lab::Shape {
            real_servers,
            ipv6: true,
            ..lab::Shape::default()
        },
    )
    .map_err(anyhow::Error::msg)?;
    say("starting the director in the lab");
    lab.start_director(lvs).map_err(anyhow::Error::msg)?;
    // Each real server is in three services: TCP on the IPv4 VIP, TCP and UDP on the IPv6 one.
    let before = lab
        .wait_until_forwarding(lvs, 3 * usize::from(real_servers), Duration::from_secs(20))
        .map_err(anyhow::Error::msg)?;
    let kernel_before = lab.director_tcp_in_segments().map_err(anyhow::Error::msg)?;
    // The mode is read back from the director rather than from the lab's config, so the
    // demo reports what the kernel actually runs.
    let mode = before["xdp_mode"]
        .as_str()
        .context("the director's status has no xdp_mode")?;
    say(&format!(
        "the director runs its XDP program in {mode} mode on {}",
        before["interface"].as_str().unwrap_or("its interface")
    ));

    let mut failures = 0;
    let mut rounds = Vec::new();
    for (what, vip) in [("HTTP", lab::VIP), ("HTTP", lab::VIP6), ("UDP", lab::VIP6)] {
        say(&format!(
            "sending {requests} {what} requests from the client to {vip}"
        ));
        let seen = if what == "UDP" {
            lab.udp_requests_to(vip, requests)
        } else {
            lab.requests_to(vip, requests)
        };
        failures += seen.failures.len();
        rounds.push((what, vip, seen));
    }
    let after = lab.status(lvs).map_err(anyhow::Error::msg)?;
    let kernel_after = lab.director_tcp_in_segments().map_err(anyhow::Error::msg)?;

    for (what, vip, seen) in &rounds {
        println!(
            "\nAnswers by real server ({requests} {what} requests to {vip}, one connection or \
             socket each):"
        );
        for (server, count) in &seen.answers {
            println!(
                "  {server:<6} {count:>5}  {}",
                "#".repeat(count * 50 / requests.max(1))
            );
        }
        if !seen.failures.is_empty() {
            println!(
                "  failed  {:>5}  first error: {}",
                seen.failures.len(),
                seen.failures[0]
            );
        }
    }
    let forwarded = lab::counter(&after, "tx_forwarded") - lab::counter(&before, "tx_forwarded");
    println!(
        "\nDirect routing: the director forwarded {forwarded} client frames with XDP_TX; its own \
         TCP stack received {} segments meanwhile (replies went from the real servers straight \
         to the client).\n",
        kernel_after - kernel_before
    );
    println!("{}", lab.status_table(lvs));

    if keep {
        lab.keep();
        println!(
            "The lab is still up. Try:\n  ip netns exec {client} curl http://{vip}/\n  \
             ip netns exec {client} curl 'http://[{vip6}]/'\n  {lvs} status --socket {socket}\n  \
             {lvsadm} --socket {socket} -Ln\n\
             Stop it with:\n  cargo xtask lab down --prefix lvsdemo   (this also stops the director)",
            client = lab.namespace("client"),
            vip = lab::VIP,
            vip6 = lab::VIP6,
            lvs = lvs.display(),
            lvsadm = built.lvsadm.display(),
            socket = lab.control_socket().display(),
        );
        return Ok(());
    }
    say("stopping the director and removing the lab");
    lab.stop_director().map_err(anyhow::Error::msg)?;
    drop(lab);
    ensure!(failures == 0, "{failures} requests failed");
    Ok(())
}
