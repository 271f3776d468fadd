//! The director daemon: sets the data plane up from a validated config, keeps it in line with
//! the kernel's neighbour table, answers the control socket, and undoes what it did at exit.
//!
//! One task owns the model and the data plane; the neighbour watcher, the timers, signals and
//! the control server only send it events. So no lock guards the maps, and every change to
//! them goes through `Model::sync`. Once a second it sweeps the flow table (expiry and
//! connection counts) and every two seconds it samples the rate estimators; SIGHUP or a
//! `reload` request applies an edited config file whole, or not at all.
//!
//! The daemon is written against traits for everything it does to the host: the data plane
//! (`DataPlane`), routing netlink (`DirectorNetlink`), health checking (`HealthChecks`), the
//! host's settings and pins (`Host`); the control listener, the status listener, SIGHUP and
//! the shutdown signal are passed in. The status listener (`io::web`, when `metrics_listen`
//! is set) reads only what the loop publishes on a watch channel, so it never holds the loop
//! up. [`run`] wires the real ones; tests drive [`serve`] with in-memory stand-ins.
//!
//! - `event_loop`: the event sources and what each event does.
//! - `dispatch`: the answers to control requests (status, `lvsadm` changes, reload).
//! - `neighbours`: resolving real servers and following the kernel's neighbour table.
//! - `vips`: the VIPs the daemon puts on the interface and takes off again.
//! - `announce`: the routes that announce the VIPs to a BGP daemon (`[bgp]`).
//! - `attach`: attaching in the configured XDP mode.
//! - `checks`, `host`: the health-checking and host seams, with their real implementations.
//! - `packet_log`: the program's per-packet log, when `trace_packets` is on.
//! - `sync`: the connection-sync daemons (master and backup), over a `SyncTransport`.
//! - `tests`: all of it driven with in-memory parts (`tests/fakes.rs`), without root.

mod announce;
mod attach;
mod checks;
mod dispatch;
mod event_loop;
mod host;
mod neighbours;
mod packet_log;
mod sync;
#[cfg(test)]
mod tests;
mod vips;

use std::{
    future::Future,
    net::IpAddr,
    path::{Path, PathBuf},
    sync::Arc,
};

use anyhow::{Context as _, Result};
use futures::{StreamExt as _, future::OptionFuture, stream::BoxStream};
use lvs_common::flow::{SETTINGS_DENY_LIST, SETTINGS_DENY_LIST6, SETTINGS_DROP_NODEST, Settings};
use tokio::{
    net::{TcpListener, UnixListener},
    signal::unix::{SignalKind, signal},
    sync::{mpsc, watch},
};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

pub use checks::HealthChecks;
pub use host::Host;

use crate::{
    health::{self, HealthUpdate},
    io::{
        bpf::{BpfDataPlane, Inheritance, LoadOptions},
        control::{self, Accept},
        netlink::{DirectorNetlink, LinkInfo, Netlink},
        provision::{
            bpffs,
            director::{self, DirectorHost},
        },
        sync::{Multicast, SyncTransport},
        web,
    },
    logic::{
        config::{self, Config},
        dataplane::DataPlane,
        deny::DenyList,
        model::Model,
        rates::{self, RateBook},
        status::Status,
    },
};

/// Runs the director until `shutdown` completes, then detaches and cleans up. `config_path`
/// is where a reload (SIGHUP or the control API) reads the configuration again; `listener`
/// is the control socket, bound by the caller (`control::bind`) so that a second daemon is
/// refused before it touches anything.
pub async fn run(
    config: Config,
    config_path: Option<PathBuf>,
    listener: UnixListener,
    shutdown: impl Future<Output = Stop>,
) -> Result<()> {
    let socket = config.director.control_socket.clone();
    let parts = async {
        // SIGHUP is caught from the start: one that arrives while the daemon sets up is a
        // reload once the loop runs, not the default action (exit).
        let hangups = hangups()?;
        let netlink = Netlink::connect()?;
        let interface = &config.director.interface;
        // Held until this function returns: a second director on this interface is refused
        // before it touches anything.
        let lock = director::lock_interface(Path::new(director::DIRECTOR_STATE_DIR), interface)?;
        let lock = Arc::new(lock);
        // The lock file's time is the daemon's last sign of life, which `lvs status` shows
        // when the data plane is left running without a daemon.
        let heartbeat = {
            let lock = lock.clone();
            tokio::spawn(async move {
                let mut every = tokio::time::interval(std::time::Duration::from_secs(1));
                loop {
                    every.tick().await;
                    if let Err(error) = lock.heartbeat() {
                        warn!(%error, "marking the director alive failed");
                    }
                }
            })
        };
        let lock = (lock, AbortOnDrop(heartbeat));
        // Bound before the interface or the pins are touched, so that a port in use stops the
        // daemon before it changes anything.
        let status_listener = match config.director.metrics_listen {
            Some(address) => Some(
                TcpListener::bind(address)
                    .await
                    .with_context(|| format!("binding the status listener on {address}"))?,
            ),
            None => None,
        };
        let link = netlink
            .link(interface)
            .await
            .with_context(|| format!("looking up the director interface {interface}"))?;
        let pin_dir = bpffs::director_pin_dir(Path::new(bpffs::BPFFS_ROOT), interface)
            .context("preparing the BPF filesystem for the director's pins")?;
        let dataplane = BpfDataPlane::load_with(LoadOptions {
            trace_packets: config.director.trace_packets,
            flow_table_size: config.director.flow_table_size,
            pin_dir: Some(pin_dir),
        })
        .context("loading the XDP program")?;
        match dataplane.inheritance() {
            Inheritance::Fresh => info!("no data plane was running here: starting with fresh maps"),
            Inheritance::Adopted => info!(
                directory = %dataplane.pin_dir().map(Path::display).map(|d| d.to_string()).unwrap_or_default(),
                "a data plane is running here: adopting its maps"
            ),
            Inheritance::StartedClean { reason } => warn!(
                %reason,
                "a data plane is running here with maps this version cannot read: starting \
                 clean, its connections will be scheduled anew"
            ),
        }
        let mut dataplane = dataplane;
        // Health checking keeps its states beside the director's other state; a director
        // that adopts a running data plane starts from them.
        let adopted = matches!(dataplane.inheritance(), Inheritance::Adopted);
        let state_name = director::state_name(interface)?;
        let memory = health::memory::path(Path::new(director::DIRECTOR_STATE_DIR), &state_name);
        let kept_rates = Path::new(director::DIRECTOR_STATE_DIR).join(format!("{state_name}.rates"));
        if config.director.trace_packets {
            packet_log::start(&mut dataplane)?;
        }
        let parts = Parts {
            dataplane,
            netlink,
            link,
            host: DirectorHost::default(),
            start_health: move |config: &Config| {
                health::start_remembering(config, memory, adopted)
            },
            hangups,
            status_listener,
            kept_rates: Some(kept_rates),
            sync_transport: Arc::new(Multicast),
        };
        anyhow::Ok((parts, lock))
    }
    .await;
    match parts {
        Ok((parts, _lock)) => serve(config, config_path, parts, listener, shutdown).await,
        Err(error) => {
            // The socket was bound for this daemon; it goes with it.
            let _ = std::fs::remove_file(&socket);
            Err(error)
        }
    }
}

/// Ends a task when dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// SIGHUP as a stream of events.
fn hangups() -> Result<BoxStream<'static, ()>> {
    let hangup = signal(SignalKind::hangup()).context("installing the SIGHUP handler")?;
    Ok(futures::stream::unfold(hangup, |mut hangup| async move {
        hangup.recv().await.map(|()| ((), hangup))
    })
    .boxed())
}

/// What the daemon runs with, ready before it changes anything.
pub struct Parts<D, N, H, S> {
    /// The loaded data plane, not attached yet.
    pub dataplane: D,
    pub netlink: N,
    /// The director interface.
    pub link: LinkInfo,
    /// The host's settings and pins, set up after attaching and torn down at exit.
    pub host: H,
    /// Starts health checking for a configuration: the running checks and the initial
    /// health of the checked real servers.
    pub start_health: S,
    /// Each item is a reload request, as SIGHUP makes.
    pub hangups: BoxStream<'static, ()>,
    /// Where `/metrics`, `/status.json` and the status page are served, if anywhere.
    pub status_listener: Option<TcpListener>,
    /// Where the rate estimates are kept for the next director (rewritten every sample,
    /// taken over when the data plane is adopted, removed at a stop for good); none to keep
    /// them nowhere.
    pub kept_rates: Option<PathBuf>,
    /// Opens the sync daemons' sockets.
    pub sync_transport: Arc<dyn SyncTransport>,
}

/// How the daemon is told to stop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stop {
    /// For good (`systemctl stop`, SIGINT): detach the program, remove its pins, take the
    /// VIPs off and put the host's settings back.
    ForGood,
    /// For a restart or an upgrade (`systemctl restart`, SIGTERM): the program keeps
    /// forwarding with its maps, VIPs and settings as they are, for the next director to
    /// adopt. A crash leaves the same state.
    Restart,
}

/// Sets the director up with `parts`, runs the event loop until `shutdown` completes, and
/// cleans up as `shutdown` says: for good (detaches, removes the VIPs it added, tears the host
/// down) or for a restart (leaves the data plane forwarding); either way it removes the
/// control socket. An error stops for good, unless the data plane was adopted running, which
/// is then left running (a daemon that cannot start must not take forwarding down).
pub async fn serve<D, N, H, C, S>(
    config: Config,
    config_path: Option<PathBuf>,
    parts: Parts<D, N, H, S>,
    listener: impl Accept + Send + 'static,
    shutdown: impl Future<Output = Stop>,
) -> Result<()>
where
    D: DataPlane,
    N: DirectorNetlink,
    H: Host<D>,
    C: HealthChecks,
    S: FnOnce(&Config) -> (C, Vec<HealthUpdate>),
{
    let Parts {
        dataplane,
        netlink,
        link,
        mut host,
        start_health,
        hangups,
        status_listener,
        kept_rates,
        sync_transport,
    } = parts;
    let socket = config.director.control_socket.clone();
    let (model, deny, adopted) = match adopt_or_build(&config, &dataplane) {
        Ok(built) => built,
        Err(error) => {
            let _ = std::fs::remove_file(&socket);
            return Err(error);
        }
    };
    // The rates go on from the previous director's estimates, over the gap since its last
    // sample, when its data plane (and so its indices and ids) was adopted.
    let rates = match kept_rates
        .as_deref()
        .filter(|_| adopted)
        .map(std::fs::read_to_string)
    {
        Some(Ok(text)) => match serde_json::from_str::<rates::KeptRates>(&text) {
            Ok(kept) => RateBook::restored(&kept, unix_ms()),
            Err(error) => {
                warn!(%error, "the kept rate estimates are unreadable; rates start from zero");
                RateBook::default()
            }
        },
        _ => RateBook::default(),
    };
    let (sync_datagrams, sync_received) = mpsc::channel(SYNC_QUEUE);
    let sync_config = config.sync.clone();
    let mut director = Director {
        sync: sync::SyncDaemons::new(sync_transport, sync_datagrams),
        sync_config: None,
        bgp_config: config.bgp,
        announced: Default::default(),
        settling: Default::default(),
        interface: config.director.interface.clone(),
        netlink,
        link,
        mode: "detached",
        model,
        deny,
        dataplane,
        rates,
        kept_rates: kept_rates.clone(),
        sweeper: crate::logic::conntrack::Sweeper::default(),
        settings: config.director,
        config_path,
        added_vips: Vec::new(),
        adopted,
        flows_in_table: 0,
        published: None,
    };
    let result = async {
        // The sync daemons' key file and sockets are checked before anything changes.
        let prepared = director
            .sync
            .prepare(
                sync_config.as_ref(),
                &director.netlink,
                crate::logic::conntrack::monotonic_ns(),
            )
            .await
            .context("starting the sync daemons")?;
        director.sync.apply(prepared);
        director.sync_config = sync_config;
        director.find_announced().await?;
        director.dataplane.set_director(director.link.mac)?;
        // The deny list is in place before the program is attached.
        director.deny.sync(&mut director.dataplane)?;
        director
            .dataplane
            .set_settings(settings(&director.settings, &director.deny))?;
        director.add_vips().await?;
        // Health checking starts before the first write, so that alpha servers are never
        // offered flows before their first check passes.
        let (mut health, initial) = start_health(&director.config());
        health::apply(&mut director.model, initial);
        let outcome = async {
            neighbours::resolve_initially(&director.netlink, &director.link, &mut director.model)
                .await?;
            director.model.sync(&mut director.dataplane)?;
            director.mode = attach::attach(
                &mut director.dataplane,
                director.link.index,
                director.settings.xdp_mode,
            )?;
            host.set_up(&director.interface, &director.dataplane)?;
            // Forwarding now: announce what has its quorum (and withdraw what a previous
            // director announced that has not).
            director.announce_vips(&health.quorums()).await;
            info!(
                interface = %director.interface,
                mode = director.mode,
                services = director.model.services().count(),
                "director running"
            );
            // The status listener's first document is collected before any server task
            // starts, since nothing may fail once they run.
            let status_listener = match status_listener {
                Some(listener) => {
                    let (publish, status) = watch::channel(Arc::new(director.status()?));
                    director.published = Some(publish);
                    Some((listener, status))
                }
                None => None,
            };
            let (requests, requests_rx) = mpsc::channel(16);
            let sources = event_loop::Sources::new(
                director.netlink.neighbour_events()?,
                hangups,
                requests_rx,
                sync_received,
            );
            // Nothing fails between starting the control server and stopping it below, so
            // its task never outlives this function.
            let stop_server = CancellationToken::new();
            let server = tokio::spawn(control::serve(listener, requests, stop_server.clone()));
            let web = status_listener.map(|(listener, status)| {
                if let Ok(address) = listener.local_addr() {
                    info!(%address, "serving /metrics, /status.json and the status page");
                }
                tokio::spawn(web::serve(listener, status, stop_server.clone()))
            });
            let outcome = director.event_loop(&mut health, sources, shutdown).await;
            // Every connection task ends before the daemon's state goes away.
            stop_server.cancel();
            if let Err(error) = server.await {
                warn!(%error, "the control server failed");
            }
            if let Some(Err(error)) = OptionFuture::from(web).await {
                warn!(%error, "the status listener failed");
            }
            outcome
        }
        .await;
        health.shutdown().await;
        outcome
    }
    .await;

    // Clean-up runs whatever happened above, and reports its own failures without hiding the
    // original error.
    let stop = match &result {
        Ok(stop) => *stop,
        Err(_) if director.adopted => Stop::Restart,
        Err(_) => Stop::ForGood,
    };
    let left = stop == Stop::Restart
        && match director.dataplane.leave() {
            Ok(()) => true,
            Err(error) => {
                warn!(%error, "the data plane cannot be left running; stopping for good");
                false
            }
        };
    if left {
        info!(
            interface = %director.interface,
            "director stopped for a restart: the data plane keeps forwarding"
        );
    } else {
        // The routers stop sending here before the program stops forwarding.
        director.withdraw_all().await;
        if let Err(error) = director.dataplane.detach() {
            warn!(%error, "detaching the XDP program failed");
        }
        director.remove_all_vips().await;
        host.tear_down();
        if let Some(path) = &kept_rates {
            let _ = std::fs::remove_file(path);
        }
        info!("director stopped for good");
    }
    let _ = std::fs::remove_file(&socket);
    result.map(|_| ())
}

/// The model: a previous director's maps adopted when the data plane found some it
/// understands (with their indices, ids and generations), built fresh otherwise. Returns
/// whether it adopted.
fn adopt_or_build(config: &Config, dataplane: &impl DataPlane) -> Result<(Model, DenyList, bool)> {
    let previous = dataplane
        .previous()
        .context("reading what the previous director left")?;
    // The previous director's runtime prefixes stay; the file's part is this file's.
    let mut deny = DenyList::adopt(previous.as_ref().map_or(&[], |p| p.deny.as_slice()));
    deny.set_config(&config.deny)
        .context("the deny list does not fit beside the runtime prefixes kept in the data plane")?;
    match previous {
        Some(previous) => {
            let (model, adoption) = Model::adopt(&config.services, &previous)
                .context("building the data-plane model")?;
            info!(
                services_kept = adoption.services_kept,
                real_servers_kept = adoption.real_servers_kept,
                services_retired = adoption.services_retired,
                real_servers_retired = adoption.real_servers_retired,
                "adopted the running data plane: flows, templates and counters carry on"
            );
            Ok((model, deny, true))
        }
        None => Ok((
            Model::new(&config.services).context("building the data-plane model")?,
            deny,
            false,
        )),
    }
}

/// Milliseconds since the Unix epoch, as the kept rate estimates are timed.
fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The data plane's settings from the director's config and whether the deny list is in
/// use.
fn settings(director: &config::Director, deny: &DenyList) -> Settings {
    let timeouts = director.timeouts;
    let mut flags = 0;
    if !director.expire_nodest_conn {
        flags |= SETTINGS_DROP_NODEST;
    }
    if deny.in_use_for(false) {
        flags |= SETTINGS_DENY_LIST;
    }
    if deny.in_use_for(true) {
        flags |= SETTINGS_DENY_LIST6;
    }
    Settings::with_timeouts(timeouts.tcp, timeouts.tcp_fin, timeouts.udp, flags)
}

/// How many received sync datagrams wait for the loop at most; more are dropped by the
/// reading task's wait, as a full socket buffer would drop them.
const SYNC_QUEUE: usize = 1024;

/// The running director's state, owned by the one task that changes the data plane.
struct Director<D, N> {
    /// The connection-sync daemons.
    sync: sync::SyncDaemons,
    /// The `[sync]` section in force (the sync daemons running may differ, after `lvsadm
    /// --start-daemon` or `--stop-daemon`, until the next reload).
    sync_config: Option<crate::logic::sync::SyncConfig>,
    /// The `[bgp]` section in force: whether and where the VIPs are announced.
    bgp_config: Option<crate::logic::announce::BgpConfig>,
    /// The VIPs whose routes are in the `[bgp]` table: this director's, or its
    /// predecessor's that it took over.
    announced: std::collections::BTreeSet<IpAddr>,
    /// The VIPs wanted but not announced yet, and since when.
    settling: crate::logic::announce::Settling,
    netlink: N,
    link: LinkInfo,
    interface: String,
    mode: &'static str,
    model: Model,
    dataplane: D,
    rates: RateBook,
    /// The flow-table sweep, which reads the table a slice at a time.
    sweeper: crate::logic::conntrack::Sweeper,
    /// The deny list: the file's prefixes and the runtime ones.
    deny: DenyList,
    /// The director settings in force. The wanted services are the model's alone.
    settings: config::Director,
    config_path: Option<PathBuf>,
    /// VIPs this director put on the interface, and must take off.
    added_vips: Vec<IpAddr>,
    /// Connections in the flow table at the last sweep.
    flows_in_table: u64,
    /// Where the status listener reads the status document, when there is one.
    published: Option<watch::Sender<Arc<Status>>>,
    /// The data plane was a previous director's, adopted running: the VIPs it finds are
    /// that director's, so its own to take off at a stop for good.
    adopted: bool,
    /// Where the rate estimates are kept for the next director.
    kept_rates: Option<PathBuf>,
}

impl<D: DataPlane, N: DirectorNetlink> Director<D, N> {
    /// The configuration in force, as health checking takes it: the settings and the model's
    /// wanted services.
    fn config(&self) -> Config {
        Config {
            director: self.settings.clone(),
            services: self.model.wanted(),
            sync: self.sync_config.clone(),
            bgp: self.bgp_config,
            deny: self.deny.config_prefixes(),
        }
    }

    /// Hands the status listener a fresh status document. Collecting it reads the counters
    /// from the data plane; a failure is logged and the listener keeps the previous one.
    fn publish_status(&self) {
        let Some(publish) = &self.published else {
            return;
        };
        match self.status() {
            Ok(status) => {
                publish.send_replace(Arc::new(status));
            }
            Err(error) => warn!(%error, "collecting the status for the status listener"),
        }
    }

    /// Brings VIPs, neighbours and the data plane in line after the wanted services changed.
    async fn after_change(&mut self) -> Result<()> {
        self.add_vips().await?;
        neighbours::request_resolutions(&self.netlink, &self.link, &self.model, false).await;
        neighbours::refresh(&self.netlink, &self.link, &mut self.model).await?;
        let report = self.model.sync(&mut self.dataplane)?;
        info!(?report, "data plane updated");
        self.remove_unused_vips().await;
        Ok(())
    }
}
