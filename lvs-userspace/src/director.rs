//! The director daemon: sets the data plane up from a validated config, keeps it in line with
//! the kernel's neighbour table, answers the control socket, and undoes what it did at exit.
//!
//! One task owns the model and the data plane; the neighbour watcher, the timers, signals and
//! the control server only send it events. So no lock guards the maps, and every change to
//! them goes through `Model::sync`. Once a second it sweeps the flow table (expiry and
//! connection counts) and every two seconds it samples the rate estimators; SIGHUP or a
//! `reload` request applies an edited config file whole, or not at all.

use std::{
    collections::HashMap,
    future::Future,
    net::Ipv4Addr,
    path::PathBuf,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result};
use aya::programs::XdpMode as AyaXdpMode;
use futures::StreamExt as _;
use lvs_common::flow::{SETTINGS_DROP_NODEST, Settings};
use tokio::{
    signal::unix::{SignalKind, signal},
    sync::mpsc,
    time::MissedTickBehavior,
};
use tracing::{info, warn};

use crate::{
    api,
    config::{self, Config, XdpMode},
    conntrack,
    control::{self, Envelope, Request, Response},
    dataplane::{BpfDataPlane, DataPlane as _, LoadOptions},
    health::{self, Supervisor},
    model::{Model, Neighbour},
    netlink::{self, LinkInfo, NeighbourEvent, Netlink},
    provision::director::DirectorHost,
    rates::{self, RateBook},
    runtime,
    status::Status,
};

/// How often the neighbour table is read again even without a notification.
const NEIGHBOUR_RESYNC: Duration = Duration::from_secs(1);
/// How often resolved real servers are re-confirmed (see `Netlink::request_resolution`).
const NEIGHBOUR_REFRESH: Duration = Duration::from_secs(5);

/// How often the sweep takes a step: a slice of the flow table (expired connections deleted),
/// and at the end of a pass the counts refreshed (see `conntrack::Sweeper`).
const SWEEP_INTERVAL: Duration = Duration::from_millis(conntrack::SWEEP_STEP_INTERVAL_MS);

/// Runs the director until `shutdown` completes, then detaches and cleans up. `config_path`
/// is where a reload (SIGHUP or the control API) reads the configuration again.
pub async fn run(
    config: Config,
    config_path: Option<PathBuf>,
    shutdown: impl Future<Output = ()>,
) -> Result<()> {
    let netlink = Netlink::connect()?;
    let interface = config.director.interface.clone();
    let link = netlink
        .link(&interface)
        .await
        .with_context(|| format!("looking up the director interface {interface}"))?;
    let mut dataplane = BpfDataPlane::load_with(LoadOptions {
        trace_packets: config.director.trace_packets,
        flow_table_size: config.director.flow_table_size,
    })
    .context("loading the XDP program")?;
    if config.director.trace_packets {
        start_packet_log(&mut dataplane)?;
    }
    dataplane.set_director(link.mac)?;
    dataplane.set_settings(settings(&config.director))?;

    let model = Model::new(&config.services).context("building the data-plane model")?;
    let mut host = DirectorHost::default();
    let mut director = Director {
        netlink,
        link,
        interface,
        mode: "detached",
        model,
        dataplane,
        rates: RateBook::default(),
        sweeper: conntrack::Sweeper::default(),
        config,
        config_path,
        added_vips: Vec::new(),
    };
    let result = async {
        director.add_vips().await?;
        let listener = control::bind(&director.config.director.control_socket).await?;
        // Health checking starts before the first write, so that alpha servers are never
        // offered flows before their first check passes.
        let (mut health, initial) = health::start(&director.config);
        health::apply(&mut director.model, initial);
        resolve_initially(&director.netlink, &director.link, &mut director.model).await?;
        director.model.sync(&mut director.dataplane)?;
        director.mode = attach(
            &mut director.dataplane,
            director.link.index,
            director.config.director.xdp_mode,
        )?;
        host.set_up(&director.interface, &director.dataplane.maps())?;
        info!(
            interface = %director.interface,
            mode = director.mode,
            services = director.config.services.len(),
            "director running"
        );
        let (requests, requests_rx) = mpsc::channel(16);
        let server = tokio::spawn(control::serve(listener, requests));
        let outcome = director.serve(&mut health, requests_rx, shutdown).await;
        server.abort();
        health.shutdown().await;
        outcome
    }
    .await;

    // Clean-up runs whatever happened above, and reports its own failures without hiding the
    // original error.
    if let Err(error) = director.dataplane.detach() {
        warn!(%error, "detaching the XDP program failed");
    }
    for vip in std::mem::take(&mut director.added_vips) {
        director.remove_vip(vip).await;
    }
    host.tear_down();
    let _ = std::fs::remove_file(&director.config.director.control_socket);
    info!("director stopped");
    result
}

/// The data plane's settings from the director's config.
fn settings(director: &config::Director) -> Settings {
    let timeouts = director.timeouts;
    let flags = if director.expire_nodest_conn {
        0
    } else {
        SETTINGS_DROP_NODEST
    };
    Settings::with_timeouts(timeouts.tcp, timeouts.tcp_fin, timeouts.udp, flags)
}

/// The running director's state, owned by the one task that changes the data plane.
struct Director {
    netlink: Netlink,
    link: LinkInfo,
    interface: String,
    mode: &'static str,
    model: Model,
    dataplane: BpfDataPlane,
    rates: RateBook,
    /// The flow-table sweep, which reads the table a slice at a time.
    sweeper: conntrack::Sweeper,
    /// The configuration in force (its services as last applied).
    config: Config,
    config_path: Option<PathBuf>,
    /// VIPs this director put on the interface, and must take off.
    added_vips: Vec<Ipv4Addr>,
}

impl Director {
    /// Puts every service's VIP on the interface, unless another system owns them.
    async fn add_vips(&mut self) -> Result<()> {
        if !self.config.director.manage_vips {
            return Ok(());
        }
        for vip in self.model.virtual_addresses() {
            if self.added_vips.contains(&vip) {
                continue;
            }
            if self.netlink.add_address(self.link.index, vip, 32).await? {
                info!(%vip, interface = %self.interface, "VIP added");
                self.added_vips.push(vip);
            }
        }
        Ok(())
    }

    /// Takes off the VIPs this director added that no service uses any more.
    async fn remove_unused_vips(&mut self) {
        let used = self.model.virtual_addresses();
        let (keep, unused): (Vec<Ipv4Addr>, Vec<Ipv4Addr>) = std::mem::take(&mut self.added_vips)
            .into_iter()
            .partition(|vip| used.contains(vip));
        self.added_vips = keep;
        for vip in unused {
            self.remove_vip(vip).await;
        }
    }

    async fn remove_vip(&self, vip: Ipv4Addr) {
        match self.netlink.remove_address(self.link.index, vip, 32).await {
            Ok(()) => info!(%vip, "VIP removed"),
            Err(error) => warn!(%vip, %error, "removing the VIP failed"),
        }
    }

    /// Reads the config file again and applies it whole, or not at all.
    async fn reload(&mut self, health: &Supervisor) -> Result<String> {
        let path = self
            .config_path
            .clone()
            .context("the director was started without a config file")?;
        let new = config::load(&path).map_err(|error| match error {
            config::ConfigError::Invalid { problems } => anyhow::anyhow!(
                "{} is not valid, nothing changed:\n{}",
                path.display(),
                problems
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("\n")
            ),
            other => anyhow::anyhow!("{other}; nothing changed"),
        })?;
        let needs_restart = restart_only_changes(&self.config.director, &new.director);
        self.model
            .apply(&new.services)
            .context("the new configuration does not fit; nothing changed")?;
        self.dataplane.set_settings(settings(&new.director))?;
        let services = new.services.len();
        self.config.services = new.services;
        self.config.director.timeouts = new.director.timeouts;
        self.config.director.expire_nodest_conn = new.director.expire_nodest_conn;
        // Unchanged checks keep their state and timers; the supervisor re-sends every status.
        health.reload(&self.config).await;
        self.after_change().await?;
        let mut message = format!("reloaded {}: {services} services", path.display());
        if !needs_restart.is_empty() {
            message.push_str(&format!(
                "; these take effect only after a restart: {}",
                needs_restart.join(", ")
            ));
        }
        Ok(message)
    }

    /// Brings VIPs, neighbours and the data plane in line after the wanted services changed.
    async fn after_change(&mut self) -> Result<()> {
        self.add_vips().await?;
        request_resolutions(&self.netlink, &self.link, &self.model, false).await;
        refresh_neighbours(&self.netlink, &self.link, &mut self.model).await?;
        let report = self.model.sync(&mut self.dataplane)?;
        info!(?report, "data plane updated");
        self.remove_unused_vips().await;
        Ok(())
    }

    /// Takes a step of the sweep: deletes the expired connections of a slice of the flow
    /// table and, when a pass over the table is done, expired templates, and takes in the
    /// pass's connection counts.
    fn sweep(&mut self) -> Result<()> {
        let timeouts = self.template_timeouts();
        let counts = self.sweeper.step(
            &mut self.dataplane,
            conntrack::monotonic_ns(),
            &settings(&self.config.director),
            &self.model.generations(),
            |key| timeouts.get(&(key.vip, key.vport, key.protocol)).copied(),
        )?;
        if let Some(counts) = counts {
            self.model.set_connection_counts(counts);
            self.model.sync(&mut self.dataplane)?;
        }
        Ok(())
    }

    /// Persistence timeouts in ns by service (VIP, port, protocol) as the templates key them.
    fn template_timeouts(&self) -> HashMap<([u8; 4], [u8; 2], u8), u64> {
        self.config
            .services
            .iter()
            .filter_map(|s| {
                let timeout = u64::from(s.persistence?.timeout) * 1_000_000_000;
                Some((
                    (
                        s.address.octets(),
                        s.port.to_be_bytes(),
                        s.protocol.number(),
                    ),
                    timeout,
                ))
            })
            .collect()
    }

    fn connections(&self) -> Result<Vec<conntrack::Connection>> {
        let flows = self.dataplane.flows()?;
        let templates = self.dataplane.templates()?;
        let timeouts = self.template_timeouts();
        let generations = self.model.generations();
        let destinations: HashMap<(u32, u32), (Ipv4Addr, u16)> = self
            .model
            .services()
            .flat_map(|view| {
                let port = view.service.port;
                view.real_servers
                    .iter()
                    .map(|rs| ((rs.id, generations[&rs.id]), (rs.address, port)))
                    .collect::<Vec<_>>()
            })
            .collect();
        Ok(conntrack::connections(
            &flows,
            &templates,
            conntrack::monotonic_ns(),
            &settings(&self.config.director),
            |id, generation| destinations.get(&(id, generation)).copied(),
            |key| timeouts.get(&(key.vip, key.vport, key.protocol)).copied(),
        ))
    }

    /// Applies `lvsadm`'s changes to the wanted services: all of them, or none.
    async fn apply_changes(&mut self, changes: &[api::Change], health: &Supervisor) -> Response {
        let refuse = |message: String, change: Option<usize>| Response::Error { message, change };
        let current = runtime::rules(&self.config.services, self.config.director.timeouts);
        let next = match current.apply_all(changes) {
            Ok(next) => next,
            Err((index, error)) => return refuse(error.to_string(), Some(index)),
        };
        let services = match runtime::services(&next, &self.config.services) {
            Ok(services) => services,
            Err(error) => return refuse(error.to_string(), None),
        };
        if let Err(error) = self.model.apply(&services) {
            return refuse(error.to_string(), None);
        }
        self.config.services = services;
        self.config.director.timeouts = next.timeouts;
        health.reload(&self.config).await;
        let result = async {
            self.dataplane
                .set_settings(settings(&self.config.director))?;
            self.after_change().await?;
            for change in changes {
                if let api::Change::Zero { service } = change {
                    self.zero(service.as_ref())?;
                }
            }
            anyhow::Ok(())
        }
        .await;
        match result {
            Ok(()) => {
                info!(changes = changes.len(), "applied lvsadm changes");
                Response::Ok
            }
            Err(error) => refuse(format!("{error:#}"), None),
        }
    }

    /// Zeroes the counters (and rates) of one service and its real servers, or of all.
    fn zero(&mut self, service: Option<&api::ServiceKey>) -> Result<()> {
        let targets: Vec<(u32, Vec<u32>)> = self
            .model
            .services()
            .filter(|view| {
                service.is_none_or(|key| {
                    view.service.address == key.address
                        && view.service.port == key.port
                        && view.service.protocol == key.protocol
                })
            })
            .map(|view| {
                (
                    view.index,
                    view.real_servers.iter().map(|rs| rs.id).collect(),
                )
            })
            .collect();
        for (index, ids) in targets {
            self.dataplane.zero_service_stats(index)?;
            for id in ids {
                self.dataplane.zero_real_server_stats(id)?;
            }
        }
        self.rates.reset();
        Ok(())
    }

    fn snapshot(&self, with_connections: bool) -> Result<api::Snapshot> {
        let status = Status::collect(
            &self.model,
            &self.dataplane,
            &self.rates,
            self.config.director.timeouts,
            &self.interface,
            self.mode,
        )?;
        let connections = if with_connections {
            self.connections()?
        } else {
            Vec::new()
        };
        Ok(runtime::snapshot(
            &status,
            &self.config.services,
            &connections,
            self.config.director.flow_table_size,
        ))
    }

    async fn answer(&mut self, request: Request, health: &Supervisor) -> Response {
        let error = |error: anyhow::Error| Response::Error {
            message: format!("{error:#}"),
            change: None,
        };
        match request {
            Request::Status {} => match Status::collect(
                &self.model,
                &self.dataplane,
                &self.rates,
                self.config.director.timeouts,
                &self.interface,
                self.mode,
            ) {
                Ok(status) => Response::Status(status),
                Err(e) => error(e.into()),
            },
            Request::Connections {} => match self.connections() {
                Ok(list) => Response::Connections(list),
                Err(e) => error(e),
            },
            Request::Apply { changes } => self.apply_changes(&changes, health).await,
            Request::Snapshot { connections } => match self.snapshot(connections) {
                Ok(snapshot) => Response::Snapshot(snapshot),
                Err(e) => error(e),
            },
            Request::Reload {} => match self.reload(health).await {
                Ok(message) => {
                    info!("{message}");
                    Response::Done { message }
                }
                Err(e) => {
                    warn!("reload refused: {e:#}");
                    error(e)
                }
            },
        }
    }

    /// The event loop: neighbour notifications, timers, signals and control requests, until
    /// shutdown.
    async fn serve(
        &mut self,
        health: &mut Supervisor,
        mut requests: mpsc::Receiver<Envelope>,
        shutdown: impl Future<Output = ()>,
    ) -> Result<()> {
        let events = netlink::neighbour_events()?;
        tokio::pin!(events);
        tokio::pin!(shutdown);
        let mut hangup = signal(SignalKind::hangup()).context("installing the SIGHUP handler")?;
        let mut resync = tokio::time::interval(NEIGHBOUR_RESYNC);
        let mut refresh = tokio::time::interval(NEIGHBOUR_REFRESH);
        let mut sweep = tokio::time::interval(SWEEP_INTERVAL);
        let rate_period = Duration::from_secs_f64(rates::SAMPLE_INTERVAL_S);
        let mut rate_tick = tokio::time::interval(rate_period);
        for timer in [&mut resync, &mut refresh, &mut sweep, &mut rate_tick] {
            timer.set_missed_tick_behavior(MissedTickBehavior::Delay);
        }
        let mut last_rate_sample = Instant::now();

        loop {
            let mut neighbours_changed = false;
            let mut health_changed = false;
            tokio::select! {
                () = &mut shutdown => return Ok(()),
                Some(event) = events.next() => {
                    let (address, if_index) = match &event {
                        NeighbourEvent::Changed(e) => (e.address, e.if_index),
                        NeighbourEvent::Deleted { address, if_index } => (*address, *if_index),
                    };
                    if if_index == self.link.index
                        && self.model.real_server_addresses().contains(&address)
                    {
                        neighbours_changed =
                            refresh_neighbours(&self.netlink, &self.link, &mut self.model).await?;
                    }
                }
                _ = resync.tick() => {
                    request_resolutions(&self.netlink, &self.link, &self.model, false).await;
                    neighbours_changed =
                        refresh_neighbours(&self.netlink, &self.link, &mut self.model).await?;
                }
                _ = refresh.tick() => {
                    request_resolutions(&self.netlink, &self.link, &self.model, true).await;
                }
                _ = sweep.tick() => self.sweep()?,
                Some(updates) = health.updates() => {
                    health_changed = health::apply(&mut self.model, updates);
                }
                _ = rate_tick.tick() => {
                    let elapsed = last_rate_sample.elapsed().as_secs_f64();
                    last_rate_sample = Instant::now();
                    self.rates.sample(&self.model, &self.dataplane, elapsed)?;
                }
                _ = hangup.recv() => {
                    match self.reload(health).await {
                        Ok(message) => info!("SIGHUP: {message}"),
                        Err(error) => warn!("SIGHUP: reload refused: {error:#}"),
                    }
                }
                Some((request, reply)) = requests.recv() => {
                    let response = self.answer(request, health).await;
                    let _ = reply.send(response);
                }
            }
            if neighbours_changed || health_changed {
                let report = self.model.sync(&mut self.dataplane)?;
                info!(?report, "data plane updated");
            }
        }
    }
}

/// Director settings a reload cannot change while running, by name, when they differ.
fn restart_only_changes(old: &config::Director, new: &config::Director) -> Vec<&'static str> {
    let mut names = Vec::new();
    if old.interface != new.interface {
        names.push("interface");
    }
    if old.xdp_mode != new.xdp_mode {
        names.push("xdp_mode");
    }
    if old.manage_vips != new.manage_vips {
        names.push("manage_vips");
    }
    if old.control_socket != new.control_socket {
        names.push("control_socket");
    }
    if old.trace_packets != new.trace_packets {
        names.push("trace_packets");
    }
    if old.flow_table_size != new.flow_table_size {
        names.push("flow_table_size");
    }
    names
}

/// Attaches in the configured mode; in `auto`, native first and generic as a fallback.
fn attach(dataplane: &mut BpfDataPlane, if_index: u32, mode: XdpMode) -> Result<&'static str> {
    match mode {
        XdpMode::Native => dataplane
            .attach(if_index, AyaXdpMode::Driver)
            .context("attaching in native mode")
            .map(|()| "native"),
        XdpMode::Generic => dataplane
            .attach(if_index, AyaXdpMode::Skb)
            .context("attaching in generic mode")
            .map(|()| "generic"),
        XdpMode::Auto => match dataplane.attach(if_index, AyaXdpMode::Driver) {
            Ok(()) => Ok("native"),
            Err(error) => {
                warn!(%error, "native XDP is not available here; falling back to generic mode");
                dataplane
                    .attach(if_index, AyaXdpMode::Skb)
                    .context("attaching in generic mode")
                    .map(|()| "generic")
            }
        },
    }
}

/// Asks the kernel to resolve every real server, then waits up to a second for answers, so
/// the first sync already forwards to the servers that answer ARP promptly.
async fn resolve_initially(netlink: &Netlink, link: &LinkInfo, model: &mut Model) -> Result<()> {
    request_resolutions(netlink, link, model, true).await;
    for _ in 0..10 {
        refresh_neighbours(netlink, link, model).await?;
        let all_known = model.real_server_addresses().iter().all(|&a| {
            matches!(
                model.neighbour(a),
                Neighbour::Resolved { .. } | Neighbour::OffLink
            )
        });
        if all_known {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(())
}

/// Requests resolution of unresolved on-link real servers, and of resolved ones too when
/// `all`. Off-link servers are never asked for: ARP cannot reach them.
async fn request_resolutions(netlink: &Netlink, link: &LinkInfo, model: &Model, all: bool) {
    for address in model.real_server_addresses() {
        let wanted = match model.neighbour(address) {
            Neighbour::Resolved { .. } => all,
            _ => true,
        };
        if wanted && netlink::on_link(address, &link.networks) {
            if let Err(error) = netlink.request_resolution(link.index, address).await {
                warn!(%address, %error, "requesting neighbour resolution failed");
            }
        }
    }
}

/// Reads the neighbour table and updates the model; returns whether anything changed.
async fn refresh_neighbours(netlink: &Netlink, link: &LinkInfo, model: &mut Model) -> Result<bool> {
    let entries = netlink.neighbours(link.index).await?;
    let mut changed = false;
    for address in model.real_server_addresses() {
        let entry = entries.iter().find(|e| e.address == address);
        let on_link = netlink::on_link(address, &link.networks);
        let next = netlink::next_neighbour(model.neighbour(address), entry, on_link);
        if model.set_neighbour(address, next.clone()) {
            log_neighbour_change(address, &next);
            changed = true;
        }
    }
    Ok(changed)
}

fn log_neighbour_change(address: Ipv4Addr, next: &Neighbour) {
    match next {
        Neighbour::Resolved { mac } => info!(real_server = %address, %mac, "real server resolved"),
        Neighbour::Unresolved { reason } => {
            warn!(real_server = %address, reason, "real server unresolved: not forwarding to it")
        }
        Neighbour::OffLink => warn!(
            real_server = %address,
            "real server is not on the director interface's subnets: not forwarding to it"
        ),
        Neighbour::Unknown => {}
    }
}

/// Forwards the program's aya-log records (only produced with `trace_packets`) to tracing.
fn start_packet_log(dataplane: &mut BpfDataPlane) -> Result<()> {
    let logger = aya_log::EbpfLogger::init(dataplane.ebpf_mut())
        .context("starting the data plane's packet log")?;
    // SAFETY: the logger owns its ring-buffer descriptor for its whole life and always
    // reports the same one, and the AsyncFd owns the logger.
    let mut logger = unsafe {
        tokio::io::unix::AsyncFd::register_with_interest(logger, tokio::io::Interest::READABLE)
    }
    .map_err(|error| error.into_parts().1)
    .context("watching the packet log")?;
    tokio::spawn(async move {
        loop {
            let Ok(mut guard) = logger.readable_mut().await else {
                return;
            };
            guard.get_inner_mut().flush();
            guard.clear_ready();
        }
    });
    Ok(())
}
