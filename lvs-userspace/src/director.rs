//! The director daemon: sets the data plane up from a validated config, keeps it in line with
//! the kernel's neighbour table, answers the control socket, and undoes what it did at exit.
//!
//! One task owns the model and the data plane; the neighbour watcher, the timers and the
//! control server only send it events. So no lock guards the maps, and every change to them
//! goes through `Model::sync`.

use std::{future::Future, net::Ipv4Addr, time::Duration};

use anyhow::{Context as _, Result};
use aya::programs::XdpMode as AyaXdpMode;
use futures::StreamExt as _;
use tokio::{sync::mpsc, time::MissedTickBehavior};
use tracing::{info, warn};

use crate::{
    config::{Config, XdpMode},
    control::{self, Envelope, Request, Response},
    dataplane::{BpfDataPlane, DataPlane as _},
    health::{self, Supervisor},
    model::{Model, Neighbour},
    netlink::{self, LinkInfo, NeighbourEvent, Netlink},
    status::Status,
};

/// How often the neighbour table is read again even without a notification.
const NEIGHBOUR_RESYNC: Duration = Duration::from_secs(1);
/// How often resolved real servers are re-confirmed (see `Netlink::request_resolution`).
const NEIGHBOUR_REFRESH: Duration = Duration::from_secs(5);

/// Runs the director until `shutdown` completes, then detaches and cleans up.
pub async fn run(config: Config, shutdown: impl Future<Output = ()>) -> Result<()> {
    let netlink = Netlink::connect()?;
    let interface = &config.director.interface;
    let link = netlink
        .link(interface)
        .await
        .with_context(|| format!("looking up the director interface {interface}"))?;
    let mut dataplane =
        BpfDataPlane::load(config.director.trace_packets).context("loading the XDP program")?;
    if config.director.trace_packets {
        start_packet_log(&mut dataplane)?;
    }
    dataplane.set_director(link.mac)?;

    let mut model = Model::new(&config);
    let mut added_vips = Vec::new();
    let result = async {
        if config.director.manage_vips {
            for vip in model.virtual_addresses() {
                if netlink.add_address(link.index, vip, 32).await? {
                    info!(%vip, %interface, "VIP added");
                    added_vips.push(vip);
                }
            }
        }
        let listener = control::bind(&config.director.control_socket).await?;
        // Health checking starts before the first write, so that alpha servers are never
        // offered flows before their first check passes.
        let (mut health, initial) = health::start(&config);
        health::apply(&mut model, initial);
        resolve_initially(&netlink, &link, &mut model).await?;
        model.sync(&mut dataplane)?;
        let mode = attach(&mut dataplane, link.index, config.director.xdp_mode)?;
        info!(%interface, mode, services = config.services.len(), "director running");
        let (requests, requests_rx) = mpsc::channel(16);
        let server = tokio::spawn(control::serve(listener, requests));
        let outcome = serve(
            &netlink,
            &link,
            interface,
            mode,
            &mut model,
            &mut dataplane,
            &mut health,
            requests_rx,
            shutdown,
        )
        .await;
        server.abort();
        health.shutdown().await;
        outcome
    }
    .await;

    // Clean-up runs whatever happened above, and reports its own failures without hiding the
    // original error.
    if let Err(error) = dataplane.detach() {
        warn!(%error, "detaching the XDP program failed");
    }
    for vip in added_vips {
        match netlink.remove_address(link.index, vip, 32).await {
            Ok(()) => info!(%vip, "VIP removed"),
            Err(error) => warn!(%vip, %error, "removing the VIP failed"),
        }
    }
    let _ = std::fs::remove_file(&config.director.control_socket);
    info!("director stopped");
    result
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

/// The event loop: neighbour notifications, timers and control requests, until shutdown.
#[expect(
    clippy::too_many_arguments,
    reason = "the loop's inputs, each used once"
)]
async fn serve(
    netlink: &Netlink,
    link: &LinkInfo,
    interface: &str,
    mode: &str,
    model: &mut Model,
    dataplane: &mut BpfDataPlane,
    health: &mut Supervisor,
    mut requests: mpsc::Receiver<Envelope>,
    shutdown: impl Future<Output = ()>,
) -> Result<()> {
    let events = netlink::neighbour_events()?;
    tokio::pin!(events);
    tokio::pin!(shutdown);
    let mut resync = tokio::time::interval(NEIGHBOUR_RESYNC);
    let mut refresh = tokio::time::interval(NEIGHBOUR_REFRESH);
    resync.set_missed_tick_behavior(MissedTickBehavior::Delay);
    refresh.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let watched = model.real_server_addresses();

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
                if if_index == link.index && watched.contains(&address) {
                    neighbours_changed = refresh_neighbours(netlink, link, model).await?;
                }
            }
            _ = resync.tick() => {
                request_resolutions(netlink, link, model, false).await;
                neighbours_changed = refresh_neighbours(netlink, link, model).await?;
            }
            _ = refresh.tick() => request_resolutions(netlink, link, model, true).await,
            Some(updates) = health.updates() => health_changed = health::apply(model, updates),
            Some((request, reply)) = requests.recv() => {
                let response = match request {
                    Request::Status {} => match Status::collect(model, dataplane, interface, mode) {
                        Ok(status) => Response::Status(status),
                        Err(error) => Response::Error { message: format!("{error:#}") },
                    },
                };
                let _ = reply.send(response);
            }
        }
        if neighbours_changed || health_changed {
            let report = model.sync(dataplane)?;
            info!(?report, "data plane updated");
        }
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
