//! Announcing the VIPs (`[bgp]`): routes follow forwarding and quorum, move with the table at
//! a reload, stay across a restart and go at a stop for good.

use std::{net::Ipv4Addr, time::Duration};

use futures::StreamExt as _;
use tokio::sync::oneshot;

use super::fakes::{
    FakeHealth, FakeHost, FakeNetlink, IF_INDEX, MAC1, MemoryNetwork, OTHER_VIP, RS1, RS2, VIP,
    config_text, link,
};
use super::{Event, Parts, Rig, Stop, rig_of};
use crate::{
    io::control::{self, Request, Response},
    logic::{
        config::{self, Config},
        dataplane::{AttachMode, FakeDataPlane},
        model::Model,
    },
};

const TABLE: u32 = 245;

/// The fakes' config with a `[bgp]` section and, with `other_port`, a second service on the
/// same VIP (port 443, real server RS2).
fn text(socket: &std::path::Path, other_port: bool, bgp: &str) -> String {
    let mut text = config_text(socket, VIP, &[RS1]);
    if other_port {
        text.push_str(&format!(
            "\n[[virtual_server]]\naddress = \"{VIP}\"\nport = 443\nlb_algo = \"rr\"\n\
             \n[[virtual_server.real_server]]\naddress = \"{RS2}\"\nweight = 1\n"
        ));
    }
    text.push_str(bgp);
    text
}

async fn bgp_rig(other_port: bool) -> Rig {
    rig_of(
        |socket| text(socket, other_port, "\n[bgp]\n"),
        MemoryNetwork::default().transport(Ipv4Addr::new(10, 0, 0, 2)),
    )
    .await
}

impl Rig {
    /// Sets a service's quorum (by port) as health checking would, and hands the loop the
    /// batch of updates that goes with it.
    async fn set_quorum(&mut self, port: u16, quorum: bool) {
        let key = self
            .director
            .model
            .wanted()
            .iter()
            .find(|s| s.port == port)
            .map(config::Service::key)
            .unwrap();
        self.health.quorums.lock().unwrap().insert(key, quorum);
        self.handle(Event::Health(Vec::new())).await;
    }
}

#[tokio::test]
async fn a_vip_is_announced_while_a_service_has_its_quorum_and_withdrawn_when_none_has() {
    let mut rig = bgp_rig(true).await;
    rig.handle(Event::Sweep).await;
    assert_eq!(rig.netlink.routes(), [(TABLE, VIP)]);

    rig.set_quorum(80, false).await;
    assert_eq!(
        rig.netlink.routes(),
        [(TABLE, VIP)],
        "port 443 still has its quorum"
    );
    rig.set_quorum(443, false).await;
    assert_eq!(
        rig.netlink.routes(),
        [],
        "no service of the VIP has its quorum"
    );
    let status = rig.director.status().unwrap();
    let bgp = status.bgp.expect("the status shows the announcements");
    assert_eq!((bgp.route_table, bgp.hold_time), (TABLE, 3));
    assert_eq!(bgp.vips.len(), 1);
    assert!(!bgp.vips[0].announced);
    assert!(status_text(&rig).contains("10.0.0.100      withdrawn"));

    rig.set_quorum(443, true).await;
    assert_eq!(rig.netlink.routes(), [(TABLE, VIP)], "back with its quorum");
    assert!(status_text(&rig).contains("10.0.0.100      announced"));
    assert_eq!(
        rig.netlink.kernel().route_log,
        [
            "announce 245 10.0.0.100",
            "withdraw 245 10.0.0.100",
            "announce 245 10.0.0.100"
        ]
    );
}

fn status_text(rig: &Rig) -> String {
    rig.director.status().unwrap().render()
}

/// With a sync backup running, a VIP waits `SYNC_SETTLE_NS` before it is announced, so that
/// the peers' connections arrive first; a withdrawal does not wait.
#[tokio::test]
async fn with_a_sync_backup_a_new_announcement_waits_for_the_peers_connections() {
    let mut rig = rig_of(
        |socket| {
            let key = socket.with_file_name("sync.key");
            std::fs::write(&key, "a key of at least sixteen bytes").unwrap();
            text(
                socket,
                false,
                &format!("\n[bgp]\n\n[sync]\nkey_file = \"{}\"\n", key.display()),
            )
        },
        MemoryNetwork::default().transport(Ipv4Addr::new(10, 0, 0, 2)),
    )
    .await;
    // The rig does not start the file's sync daemons; a reload does.
    rig.handle(Event::Hangup).await;
    assert!(rig.director.sync.has_backup());
    rig.handle(Event::Sweep).await;
    assert_eq!(rig.netlink.routes(), [], "held back at first");
    let bgp = rig.director.status().unwrap().bgp.unwrap();
    assert!(!bgp.vips[0].announced && bgp.vips[0].settling, "{bgp:?}");
    assert!(
        status_text(&rig).contains("withdrawn, to be announced once the sync peers'"),
        "{}",
        status_text(&rig)
    );
    let waited = std::time::Instant::now();
    while rig.netlink.routes().is_empty() {
        assert!(waited.elapsed() < Duration::from_secs(5), "never announced");
        tokio::time::sleep(Duration::from_millis(100)).await;
        rig.handle(Event::Sweep).await;
    }
    let waited = waited.elapsed();
    assert!(!rig.director.status().unwrap().bgp.unwrap().vips[0].settling);
    assert!(
        waited >= Duration::from_millis(2_900),
        "announced after {waited:?}, before the settle time"
    );
    rig.set_quorum(80, false).await;
    assert_eq!(rig.netlink.routes(), [], "a withdrawal is at once");
}

#[tokio::test]
async fn nothing_is_announced_while_the_data_plane_does_not_forward_or_without_a_section() {
    let mut rig = bgp_rig(false).await;
    rig.director.mode = "detached";
    rig.handle(Event::Sweep).await;
    assert_eq!(rig.netlink.routes(), []);

    let mut rig = rig_of(
        |socket| text(socket, false, ""),
        MemoryNetwork::default().transport(Ipv4Addr::new(10, 0, 0, 2)),
    )
    .await;
    rig.handle(Event::Sweep).await;
    assert_eq!(rig.netlink.routes(), []);
    assert_eq!(rig.director.status().unwrap().bgp, None);
}

#[tokio::test]
async fn a_reload_moves_the_routes_to_a_new_table_and_a_section_removed_withdraws_them() {
    let mut rig = bgp_rig(false).await;
    rig.handle(Event::Sweep).await;
    let socket = rig.director.settings.control_socket.clone();
    std::fs::write(
        &rig.file,
        text(&socket, false, "\n[bgp]\nroute_table = 100\n"),
    )
    .unwrap();
    rig.handle(Event::Hangup).await;
    assert_eq!(rig.netlink.routes(), [(100, VIP)]);

    // A service on another VIP: announced too, after the same reload.
    let mut edited = config_text(&socket, OTHER_VIP, &[RS1]);
    edited.push_str("\n[bgp]\nroute_table = 100\n");
    std::fs::write(&rig.file, edited).unwrap();
    rig.handle(Event::Hangup).await;
    assert_eq!(rig.netlink.routes(), [(100, OTHER_VIP)], "the old VIP went");

    std::fs::write(&rig.file, text(&socket, false, "")).unwrap();
    rig.handle(Event::Hangup).await;
    assert_eq!(rig.netlink.routes(), []);
}

/// A daemon run through `serve` on the fakes, stopped as `stop` says; returns the routes
/// it left.
struct Daemon {
    socket: std::path::PathBuf,
    stop: oneshot::Sender<Stop>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
    _dir: tempfile::TempDir,
}

async fn start(
    netlink: &FakeNetlink,
    dataplane: FakeDataPlane,
    health: FakeHealth,
    bgp: &str,
) -> Daemon {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("run/lvs.sock");
    let file = dir.path().join("lvs.toml");
    std::fs::write(&file, text(&socket, false, bgp)).unwrap();
    let config = config::load(&file).unwrap();
    let listener = control::bind(&socket).await.unwrap();
    let (_hangup, hangups) = futures::channel::mpsc::unbounded::<()>();
    let parts = Parts {
        dataplane,
        netlink: netlink.clone(),
        link: link(),
        host: FakeHost::default(),
        start_health: move |_: &Config| (health, Vec::new()),
        hangups: hangups.boxed(),
        status_listener: None,
        kept_rates: None,
        sync_transport: MemoryNetwork::default().transport(Ipv4Addr::new(10, 0, 0, 2)),
    };
    let (stop, stopped) = oneshot::channel::<Stop>();
    let task = tokio::spawn(super::super::serve(
        config,
        Some(file),
        parts,
        listener,
        async move { stopped.await.unwrap_or(Stop::ForGood) },
    ));
    let daemon = Daemon {
        socket,
        stop,
        task,
        _dir: dir,
    };
    daemon.status().await;
    daemon
}

impl Daemon {
    async fn status(&self) -> crate::logic::status::Status {
        tokio::time::timeout(Duration::from_secs(5), async {
            loop {
                if let Ok(Response::Status(status)) =
                    control::call(&self.socket, &Request::Status {}).await
                {
                    return status;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await
        .expect("the daemon answered")
    }

    async fn stop(self, how: Stop) {
        self.stop.send(how).unwrap();
        tokio::time::timeout(Duration::from_secs(5), self.task)
            .await
            .expect("the daemon stopped")
            .unwrap()
            .unwrap();
    }
}

/// What a director that stopped for a restart left: its maps, attached.
fn left_running(netlink: &FakeNetlink) -> FakeDataPlane {
    let config = config::parse(&text(std::path::Path::new("/x"), false, ""), "t").unwrap();
    let mut previous = Model::new(&config.services).unwrap();
    previous.set_neighbour(
        RS1,
        crate::logic::model::Neighbour::Resolved {
            mac: crate::base::mac::MacAddr(MAC1),
        },
    );
    let mut dataplane = FakeDataPlane::default();
    previous.sync(&mut dataplane).unwrap();
    dataplane.attached = Some((IF_INDEX, AttachMode::Native));
    dataplane.adopted = true;
    netlink.kernel().addresses = vec![VIP.into()];
    dataplane
}

#[tokio::test]
async fn the_routes_stay_across_a_restart_are_adopted_without_a_flap_and_go_at_a_stop_for_good() {
    let (netlink, _events) = FakeNetlink::new();
    let (health, _updates, _reloads) = FakeHealth::new();
    let daemon = start(&netlink, FakeDataPlane::default(), health, "\n[bgp]\n").await;
    assert_eq!(
        netlink.routes(),
        [(TABLE, VIP)],
        "announced once forwarding"
    );
    let bgp = daemon.status().await.bgp.unwrap();
    assert!(bgp.vips[0].announced);
    daemon.stop(Stop::Restart).await;
    assert_eq!(
        netlink.routes(),
        [(TABLE, VIP)],
        "kept while the daemon restarts"
    );

    // The next director adopts the running data plane and the route, and writes nothing.
    let (next_netlink, _next_events) = FakeNetlink::new();
    next_netlink.kernel().routes = netlink.kernel().routes.clone();
    let (health, _updates, _reloads) = FakeHealth::new();
    let dataplane = left_running(&next_netlink);
    let daemon = start(&next_netlink, dataplane, health, "\n[bgp]\n").await;
    assert!(daemon.status().await.bgp.unwrap().vips[0].announced);
    assert_eq!(
        next_netlink.kernel().route_log,
        [] as [String; 0],
        "the route is taken over as it is, never withdrawn meanwhile"
    );
    daemon.stop(Stop::ForGood).await;
    assert_eq!(next_netlink.routes(), [], "withdrawn at a stop for good");
    assert_eq!(next_netlink.kernel().route_log, ["withdraw 245 10.0.0.100"]);
}

/// Routes of lvs's protocol in a table that is not the `[bgp]` table (an earlier config's),
/// or with no `[bgp]` section at all, are withdrawn at start: BIRD would announce them for
/// ever.
#[tokio::test]
async fn routes_left_in_another_table_are_withdrawn_at_start() {
    for (bgp, left) in [("\n[bgp]\n", vec![(TABLE, VIP)]), ("", vec![])] {
        let (netlink, _events) = FakeNetlink::new();
        netlink.kernel().routes.insert((100, VIP.into()));
        netlink.kernel().routes.insert((100, OTHER_VIP.into()));
        let (health, _updates, _reloads) = FakeHealth::new();
        let daemon = start(&netlink, FakeDataPlane::default(), health, bgp).await;
        assert_eq!(netlink.routes(), left, "with {bgp:?}");
        daemon.stop(Stop::Restart).await;
    }
}

#[tokio::test]
async fn a_director_that_starts_without_quorum_withdraws_what_its_predecessor_announced() {
    let (netlink, _events) = FakeNetlink::new();
    netlink.kernel().routes.insert((TABLE, VIP.into()));
    let (health, _updates, _reloads) = FakeHealth::new();
    let config = config::parse(&text(std::path::Path::new("/x"), false, ""), "t").unwrap();
    health
        .quorums
        .lock()
        .unwrap()
        .insert(config.services[0].key(), false);
    let dataplane = left_running(&netlink);
    let daemon = start(&netlink, dataplane, health, "\n[bgp]\n").await;
    assert_eq!(netlink.routes(), []);
    assert!(!daemon.status().await.bgp.unwrap().vips[0].announced);
    daemon.stop(Stop::Restart).await;
}

/// Directors behind ECMP share flows: with `mh`, every director builds the same Maglev table
/// from the same config, whatever its history (here one started with a single real server and
/// was reloaded), so a flow an ECMP change moves finds the same real server even before sync
/// tells the new director about it.
#[tokio::test]
async fn maglev_builds_the_same_table_on_two_directors_with_different_histories() {
    let mh = |servers: &[Ipv4Addr]| {
        let servers = servers.to_vec();
        move |socket: &std::path::Path| {
            config_text(socket, VIP, &servers).replace("lb_algo = \"rr\"", "lb_algo = \"mh\"")
        }
    };
    let transport = || MemoryNetwork::default().transport(Ipv4Addr::new(10, 0, 0, 2));
    let first = rig_of(mh(&[RS1, RS2]), transport()).await;
    let mut second = rig_of(mh(&[RS2]), transport()).await;
    let socket = second.director.settings.control_socket.clone();
    std::fs::write(&second.file, mh(&[RS1, RS2])(&socket)).unwrap();
    second.handle(Event::Hangup).await;
    assert_ne!(
        first.id(RS1),
        second.id(RS1),
        "the histories differ: so do the real servers' ids"
    );
    let by_address = |rig: &Rig| -> Vec<Ipv4Addr> {
        let address = |id: u32| {
            [RS1, RS2]
                .into_iter()
                .find(|&a| rig.id(a) == id)
                .unwrap_or_else(|| panic!("no real server {id}"))
        };
        // A hash table is every slot of the service's lookup table, by slot number.
        let index = rig
            .director
            .dataplane
            .services
            .values()
            .next()
            .unwrap()
            .index;
        let table = &rig.director.dataplane.lookup[&index];
        let mut slots: Vec<(&u32, &u32)> = table.iter().collect();
        slots.sort();
        slots.into_iter().map(|(_, &id)| address(id)).collect()
    };
    let table = by_address(&first);
    assert!(table.len() > 1000, "a Maglev table: {} slots", table.len());
    assert!(table.contains(&RS1) && table.contains(&RS2));
    assert_eq!(table, by_address(&second));
}
