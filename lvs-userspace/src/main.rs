//! `lvs`: the director daemon, its status client, the keepalived.conf import, real-server
//! provisioning and the doctor.

use std::{net::IpAddr, path::PathBuf, process::ExitCode};

use anyhow::{Context as _, Result};
use clap::{Parser, Subcommand};
use lvs_userspace::{
    base::values::{AsNumber, HoldTime, SourcePrefix},
    cli::doctor,
    daemon,
    io::{
        control::{self, Request, Response},
        netlink::Netlink,
        provision::{
            realserver::{DEFAULT_STATE_DIR, RealServer, RealServerError},
            sysctl::Sysctls,
        },
    },
    logic::{
        bird,
        config::{self, ConfigError, DEFAULT_CONTROL_SOCKET},
        deny, keepalived,
    },
};
use tracing_subscriber::EnvFilter;

/// The exit code for a configuration or usage error (EX_USAGE, as linkerd and sysexits use).
const EX_USAGE: u8 = 64;

#[derive(Parser)]
#[command(
    name = "lvs",
    version,
    about = "An XDP layer-4 load balancer in the LVS direct-routing tradition"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the director: attach the XDP program and balance the configured services.
    Director {
        /// The TOML configuration file.
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Check a configuration file and exit.
    Check {
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Turn the virtual_server blocks of a keepalived.conf into an lvs config (on stdout);
    /// what cannot be imported is listed on stderr with its line, and the exit status is 1.
    ImportKeepalived {
        /// The keepalived.conf to read.
        file: PathBuf,
        /// The director's interface (default: the first VRRP instance's).
        #[arg(long)]
        interface: Option<String>,
        /// Also write the keepalived.conf that keepalived keeps running beside lvs: the
        /// file without its virtual_server and virtual_server_group blocks (global_defs,
        /// VRRP, scripts and notify kept as written).
        #[arg(long, value_name = "VRRP.conf")]
        vrrp_out: Option<PathBuf>,
    },
    /// Show the running director's services, real servers and counters.
    Status {
        /// The daemon's control socket.
        #[arg(long, default_value = DEFAULT_CONTROL_SOCKET)]
        socket: PathBuf,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Make the running director read its config file again (as SIGHUP does).
    Reload {
        /// The daemon's control socket.
        #[arg(long, default_value = DEFAULT_CONTROL_SOCKET)]
        socket: PathBuf,
    },
    /// Provision this host as a direct-routing real server: VIPs on lo, ARP kept quiet.
    Realserver {
        #[command(subcommand)]
        action: RealserverAction,
    },
    /// Print the BIRD 2 configuration that announces this director's VIPs over BGP: a kernel
    /// protocol reading the routes lvs keeps in its routing table, and a BGP session to
    /// each router.
    BgpConfig {
        /// The director's config file, for its [bgp] section (defaults without one).
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// This director's AS number.
        #[arg(long)]
        local_as: AsNumber,
        /// A router to peer with (repeat for several).
        #[arg(long = "neighbor", required = true)]
        neighbors: Vec<std::net::Ipv4Addr>,
        /// The routers' AS number.
        #[arg(long)]
        neighbor_as: AsNumber,
        /// BIRD's router id (by default BIRD takes an address of the host).
        #[arg(long)]
        router_id: Option<std::net::Ipv4Addr>,
        /// The BGP hold time in seconds (default: the [bgp] section's, 3 without one).
        #[arg(long)]
        hold_time: Option<HoldTime>,
    },
    /// The deny list: source prefixes whose frames the director drops before any other
    /// work. Changes are all or nothing; runtime prefixes last across reloads and restarts,
    /// the config file's [deny] prefixes change with the file.
    Deny {
        #[command(subcommand)]
        action: DenyAction,
        /// The daemon's control socket.
        #[arg(long, global = true, default_value = DEFAULT_CONTROL_SOCKET)]
        socket: PathBuf,
    },
    /// Check, from the director, that every real server is set up for direct routing.
    Doctor {
        /// The director's TOML configuration file.
        #[arg(long, short, default_value = "/etc/lvs/lvs.toml")]
        config: PathBuf,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum DenyAction {
    /// Deny these source prefixes (a.b.c.d/length or 2001:db8::/length, or an address for a
    /// /32 or a /128).
    Add {
        #[arg(required = true)]
        prefixes: Vec<SourcePrefix>,
    },
    /// Lift these runtime prefixes.
    #[command(alias = "delete")]
    Del {
        #[arg(required = true)]
        prefixes: Vec<SourcePrefix>,
    },
    /// List the prefixes, where each came from and what it dropped.
    List {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum RealserverAction {
    /// Add the VIPs to lo and set arp_ignore=1, arp_announce=2, arp_notify=1 (idempotent).
    Up {
        #[arg(required = true)]
        vips: Vec<IpAddr>,
        #[command(flatten)]
        options: RealserverOptions,
    },
    /// Undo `up` for these VIPs (all it added when none are given), restoring the settings.
    Down {
        vips: Vec<IpAddr>,
        #[command(flatten)]
        options: RealserverOptions,
    },
    /// Show what is provisioned and what is wrong; exit 1 if anything is wrong.
    Status {
        vips: Vec<IpAddr>,
        #[command(flatten)]
        options: RealserverOptions,
    },
}

#[derive(clap::Args)]
struct RealserverOptions {
    /// The interface facing the director (default: every interface except loopback ones).
    #[arg(long)]
    dev: Option<String>,
    /// Where `up` records what it changed, per network namespace.
    #[arg(long, default_value = DEFAULT_STATE_DIR)]
    state_dir: PathBuf,
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    match run(cli.command) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("lvs: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(command: Command) -> Result<ExitCode> {
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    match command {
        Command::Director { config: path } => {
            let Some(config) = load_config(&path) else {
                return Ok(ExitCode::from(EX_USAGE));
            };
            runtime.block_on(async {
                // Bound before anything else, so that a second daemon on the same socket is
                // refused before it touches the interface.
                let listener = control::bind(&config.director.control_socket).await?;
                daemon::run(config, Some(path), listener, shutdown_signal()).await
            })?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Check { config } => Ok(match load_config(&config) {
            Some(_) => {
                println!("{}: OK", config.display());
                ExitCode::SUCCESS
            }
            None => ExitCode::from(EX_USAGE),
        }),
        Command::Status { socket, json } => runtime.block_on(status(&socket, json)),
        Command::Reload { socket } => runtime.block_on(reload(&socket)),
        Command::Deny { action, socket } => runtime.block_on(deny(&socket, action)),
        Command::ImportKeepalived {
            file,
            interface,
            vrrp_out,
        } => import_keepalived(&file, interface.as_deref(), vrrp_out.as_deref()),
        Command::Realserver { action } => runtime.block_on(realserver(action)),
        Command::BgpConfig {
            config,
            local_as,
            neighbors,
            neighbor_as,
            router_id,
            hold_time,
        } => {
            let bgp = match &config {
                Some(path) => match load_config(path) {
                    Some(config) => config.bgp.unwrap_or_else(|| {
                        eprintln!(
                            "lvs: {} has no [bgp] section: the director announces nothing \
                             until it has one (this configuration uses its defaults)",
                            path.display()
                        );
                        Default::default()
                    }),
                    None => return Ok(ExitCode::from(EX_USAGE)),
                },
                None => Default::default(),
            };
            let peering = bird::Peering {
                local_as,
                neighbors,
                neighbor_as,
                router_id,
                hold_time,
            };
            print!("{}", bird::snippet(&bgp, &peering));
            Ok(ExitCode::SUCCESS)
        }
        Command::Doctor { config, json } => {
            let Some(config) = load_config(&config) else {
                return Ok(ExitCode::from(EX_USAGE));
            };
            let report = runtime.block_on(doctor::run(&config))?;
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                print!("{}", report.render());
            }
            Ok(if report.ok() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
    }
}

async fn realserver(action: RealserverAction) -> Result<ExitCode> {
    let options = match &action {
        RealserverAction::Up { options, .. }
        | RealserverAction::Down { options, .. }
        | RealserverAction::Status { options, .. } => options,
    };
    let provisioning = RealServer::new(
        Netlink::connect()?,
        Sysctls::default(),
        options.state_dir.clone(),
    );
    let dev = options.dev.as_deref();
    let mut out = std::io::stdout();
    let outcome = match &action {
        RealserverAction::Up { vips, .. } => {
            provisioning.up(vips, dev, &mut out).await.map(|()| true)
        }
        RealserverAction::Down { vips, .. } => {
            provisioning.down(vips, &mut out).await.map(|()| true)
        }
        RealserverAction::Status { vips, .. } => provisioning.status(vips, dev, &mut out).await,
    };
    match outcome {
        Ok(true) => Ok(ExitCode::SUCCESS),
        Ok(false) => Ok(ExitCode::FAILURE),
        Err(RealServerError::Usage(message)) => {
            eprintln!("lvs: {message}");
            Ok(ExitCode::from(EX_USAGE))
        }
        Err(error) => Err(error.into()),
    }
}

/// Loads and validates the config; on failure prints every problem and returns None.
fn load_config(path: &std::path::Path) -> Option<config::Config> {
    match config::load(path) {
        Ok(config) => Some(config),
        Err(ConfigError::Invalid { problems }) => {
            for problem in problems {
                eprintln!("{problem}");
            }
            None
        }
        Err(error) => {
            eprintln!("lvs: {error}");
            None
        }
    }
}

async fn status(socket: &std::path::Path, json: bool) -> Result<ExitCode> {
    let answer = match control::call(socket, &Request::Status {}).await {
        Ok(answer) => answer,
        Err(error) => {
            // No daemon answers: say so, and whether a data plane is forwarding without one.
            let unattended = lvs_userspace::io::provision::director::unattended(
                std::path::Path::new(lvs_userspace::io::provision::director::DIRECTOR_STATE_DIR),
                std::path::Path::new(lvs_userspace::io::provision::bpffs::BPFFS_ROOT),
            );
            if unattended.is_empty() {
                return Err(error.into());
            }
            eprintln!("lvs: no director answers on {}: {error}", socket.display());
            for plane in unattended {
                let ago = plane.since.elapsed().unwrap_or_default().as_secs();
                let unix = plane
                    .since
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap_or_default()
                    .as_secs();
                println!(
                    "the data plane on {} keeps forwarding without a daemon, for {ago} s (the \
                     director's last sign of life: unix time {unix}); pinned at {}; start the \
                     director to adopt it, or stop it for good",
                    plane.interface,
                    plane.pins.display()
                );
            }
            return Ok(ExitCode::from(3));
        }
    };
    match answer {
        Response::Status(status) if json => {
            println!("{}", serde_json::to_string_pretty(&status)?);
        }
        Response::Status(status) => print!("{}", status.render()),
        Response::Error { message, .. } => {
            eprintln!("lvs: {message}");
            return Ok(ExitCode::FAILURE);
        }
        other => anyhow::bail!("the daemon gave an unexpected answer: {other:?}"),
    }
    Ok(ExitCode::SUCCESS)
}

async fn reload(socket: &std::path::Path) -> Result<ExitCode> {
    match control::call(socket, &Request::Reload {}).await? {
        Response::Done { message } => {
            println!("{message}");
            Ok(ExitCode::SUCCESS)
        }
        Response::Error { message, .. } => {
            eprintln!("lvs: {message}");
            Ok(ExitCode::FAILURE)
        }
        other => anyhow::bail!("the daemon gave an unexpected answer: {other:?}"),
    }
}

async fn deny(socket: &std::path::Path, action: DenyAction) -> Result<ExitCode> {
    let (request, json) = match action {
        DenyAction::Add { prefixes } => (Request::DenyAdd { prefixes }, false),
        DenyAction::Del { prefixes } => (Request::DenyDelete { prefixes }, false),
        DenyAction::List { json } => (Request::DenyList {}, json),
    };
    match control::call(socket, &request).await? {
        Response::Ok => Ok(ExitCode::SUCCESS),
        Response::Denied(list) if json => {
            println!("{}", serde_json::to_string_pretty(&list)?);
            Ok(ExitCode::SUCCESS)
        }
        Response::Denied(list) => {
            let mut out = String::new();
            deny::render(&list, &mut out);
            print!("{out}");
            Ok(ExitCode::SUCCESS)
        }
        Response::Error { message, .. } => {
            eprintln!("lvs: {message}");
            Ok(ExitCode::FAILURE)
        }
        other => anyhow::bail!("the daemon gave an unexpected answer: {other:?}"),
    }
}

/// Prints the TOML for a keepalived.conf, and on stderr everything left out; with
/// `vrrp_out`, also writes keepalived's part of the file there.
fn import_keepalived(
    file: &std::path::Path,
    interface: Option<&str>,
    vrrp_out: Option<&std::path::Path>,
) -> Result<ExitCode> {
    let text =
        std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
    let imported = match keepalived::import(&text, interface) {
        Ok(imported) => imported,
        Err(error) => {
            eprintln!("{}:{}: {}", file.display(), error.line, error.message);
            return Ok(ExitCode::from(EX_USAGE));
        }
    };
    let toml = imported.to_toml().context("writing the TOML")?;
    // Both halves are made before either is written, so a file that cannot be split
    // leaves nothing half done.
    if let Some(out) = vrrp_out {
        let vrrp = match keepalived::vrrp_only(&text, &file.display().to_string()) {
            Ok(vrrp) => vrrp,
            Err(error) => {
                let (line, message) = match &error {
                    keepalived::SplitError::Syntax(e) => (e.line, &e.message),
                    keepalived::SplitError::SharedLine(p) => (p.line, &p.message),
                };
                eprintln!("{}:{line}: {message}", file.display());
                return Ok(ExitCode::from(EX_USAGE));
            }
        };
        std::fs::write(out, vrrp).with_context(|| format!("cannot write {}", out.display()))?;
    }
    print!("{toml}");
    for problem in &imported.problems {
        eprintln!("{}:{}: {}", file.display(), problem.line, problem.message);
    }
    Ok(if imported.problems.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Completes on SIGINT (stop for good: Ctrl-C, or the unit's `ExecStop` on `systemctl stop`)
/// or SIGTERM (stop for a restart: `systemctl restart`, an upgrade; the data plane keeps
/// forwarding for the next director, as it does after a crash).
async fn shutdown_signal() -> daemon::Stop {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut interrupt), Ok(mut terminate)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) else {
        tracing::error!("cannot install signal handlers; stop the director with SIGKILL");
        return std::future::pending().await;
    };
    tokio::select! {
        _ = interrupt.recv() => {
            tracing::info!("SIGINT: stopping for good");
            daemon::Stop::ForGood
        }
        _ = terminate.recv() => {
            tracing::info!("SIGTERM: stopping for a restart, the data plane keeps forwarding");
            daemon::Stop::Restart
        }
    }
}
