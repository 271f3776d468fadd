//! The daemon driven without root: an in-memory data plane, netlink, health checking and
//! host, a control socket in a temporary directory, and SIGHUP as a channel.

mod announce;
mod fakes;
mod sync;

use std::{
    net::Ipv4Addr,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use futures::StreamExt as _;
use netlink_packet_route::neighbour::NeighbourState;
use tokio::sync::oneshot;

use self::fakes::{
    FakeHealth, FakeHost, FakeNetlink, IF_INDEX, MAC1, MAC2, MemoryNetwork, OTHER_VIP, RS1, RS2,
    VIP, config_text, link, reachable,
};
use super::{Director, Parts, Stop, event_loop::Event};
use crate::{
    health::{Admission, HealthState, HealthStatus, HealthUpdate},
    io::{
        control::{self, Request, Response},
        netlink::{NeighbourEntry, NeighbourEvent},
    },
    logic::{
        config::{self, Config, XdpMode},
        dataplane::{AttachMode, FakeDataPlane},
        deny::DenyList,
        model::Model,
        rates::RateBook,
    },
};

/// A director on the in-memory parts, its config file in `dir`, brought in line with the
/// config as the daemon's start does.
struct Rig {
    director: Director<FakeDataPlane, FakeNetlink>,
    netlink: FakeNetlink,
    /// What the sync backup received, for the test to hand to the loop.
    sync_received: tokio::sync::mpsc::Receiver<super::sync::Received>,
    health: FakeHealth,
    reloads: Arc<AtomicUsize>,
    file: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

async fn rig(servers: &[Ipv4Addr]) -> Rig {
    rig_on(
        servers,
        MemoryNetwork::default().transport(Ipv4Addr::new(10, 0, 0, 2)),
    )
    .await
}

/// A rig whose sync daemons use `transport`.
async fn rig_on(servers: &[Ipv4Addr], transport: Arc<dyn crate::io::sync::SyncTransport>) -> Rig {
    rig_of(|socket| config_text(socket, VIP, servers), transport).await
}

/// A rig whose config file is `text` of its control socket's path.
async fn rig_of(
    text: impl FnOnce(&std::path::Path) -> String,
    transport: Arc<dyn crate::io::sync::SyncTransport>,
) -> Rig {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("lvs.toml");
    std::fs::write(&file, text(&dir.path().join("lvs.sock"))).unwrap();
    let config = config::load(&file).unwrap();
    let (netlink, _) = FakeNetlink::new();
    let (health, _, reloads) = FakeHealth::new();
    let (sync_datagrams, sync_received) = tokio::sync::mpsc::channel(64);
    let mut director = Director {
        sync: super::sync::SyncDaemons::new(transport, sync_datagrams),
        sync_config: None,
        bgp_config: config.bgp,
        announced: Default::default(),
        settling: Default::default(),
        netlink: netlink.clone(),
        link: link(),
        interface: "eth0".into(),
        mode: "native",
        model: Model::new(&config.services).unwrap(),
        deny: {
            let mut deny = DenyList::default();
            deny.set_config(&config.deny).unwrap();
            deny
        },
        dataplane: FakeDataPlane::default(),
        rates: RateBook::default(),
        sweeper: crate::logic::conntrack::Sweeper::default(),
        settings: config.director,
        config_path: Some(file.clone()),
        added_vips: Vec::new(),
        flows_in_table: 0,
        published: None,
        adopted: false,
        kept_rates: None,
    };
    director.after_change().await.unwrap();
    director.deny.sync(&mut director.dataplane).unwrap();
    let settings = super::settings(&director.settings, &director.deny);
    crate::logic::dataplane::DataPlane::set_settings(&mut director.dataplane, settings).unwrap();
    Rig {
        director,
        netlink,
        sync_received,
        health,
        reloads,
        file,
        _dir: dir,
    }
}

impl Rig {
    async fn handle(&mut self, event: Event) {
        self.director.handle(event, &self.health).await.unwrap();
    }

    /// Sends a control request through the loop's handler and returns the answer.
    async fn request(&mut self, request: Request) -> Response {
        let (reply, answer) = oneshot::channel();
        self.handle(Event::Request((request, reply))).await;
        answer.await.unwrap()
    }

    fn id(&self, address: Ipv4Addr) -> u32 {
        self.director
            .model
            .services()
            .flat_map(|view| view.real_servers)
            .find(|rs| rs.address == address)
            .map(|rs| rs.id)
            .unwrap()
    }

    /// The real-server ids in the ring of the service on `vip`, as the kernel walks it.
    fn ring(&self, vip: Ipv4Addr) -> Vec<u32> {
        let key = config::Service::key(
            self.director
                .model
                .wanted()
                .iter()
                .find(|s| s.address == vip)
                .unwrap(),
        );
        let entry = self.director.dataplane.services[&key];
        (0..entry.ring_len)
            .map(|slot| self.director.dataplane.slot(entry.index, slot))
            .collect()
    }

    fn usable_mac(&self, address: Ipv4Addr) -> Option<[u8; 6]> {
        let entry = self.director.dataplane.real_servers[&self.id(address)];
        (entry.flags & lvs_common::REAL_SERVER_USABLE != 0).then_some(entry.mac)
    }

    /// Everything the data plane holds, in a stable order, to compare before and after.
    fn data_plane(&self) -> Vec<String> {
        let dataplane = &self.director.dataplane;
        let mut state: Vec<String> = dataplane
            .services
            .iter()
            .map(|entry| format!("{entry:?}"))
            .chain(dataplane.real_servers.iter().map(|e| format!("{e:?}")))
            .chain(
                dataplane
                    .lookup
                    .iter()
                    .flat_map(|(i, t)| t.iter().map(move |e| format!("{i} {e:?}"))),
            )
            .collect();
        state.push(format!("{:?}", dataplane.settings));
        state.push(format!("slot writes {}", dataplane.slot_writes));
        state.sort();
        state
    }
}

#[tokio::test]
async fn a_reload_applies_the_edited_file_and_moves_the_vips() {
    let mut rig = rig(&[RS1]).await;
    assert_eq!(rig.netlink.addresses(), [VIP]);
    assert_eq!(rig.ring(VIP), [rig.id(RS1)]);
    let socket = rig.director.settings.control_socket.clone();
    std::fs::write(&rig.file, config_text(&socket, OTHER_VIP, &[RS1, RS2])).unwrap();

    rig.handle(Event::Hangup).await;

    let services = &rig.director.dataplane.services;
    assert_eq!(services.len(), 1, "{services:?}");
    assert_eq!(rig.ring(OTHER_VIP), [rig.id(RS1), rig.id(RS2)]);
    assert_eq!(rig.usable_mac(RS2), Some(MAC2));
    assert_eq!(
        rig.netlink.addresses(),
        [OTHER_VIP],
        "the old VIP goes, the new comes"
    );
    assert_eq!(
        rig.reloads.load(Ordering::SeqCst),
        1,
        "health follows the reload"
    );
}

#[tokio::test]
async fn a_bad_reload_changes_nothing_and_says_why() {
    let mut rig = rig(&[RS1]).await;
    let before = rig.data_plane();
    let config = rig.director.config();
    std::fs::write(
        &rig.file,
        "[director]\ninterface = \"eth0\"\n[[virtual_server]]\naddress = \"10.0.0.300\"\n",
    )
    .unwrap();

    let answer = rig.request(Request::Reload {}).await;
    let Response::Error { message, .. } = answer else {
        panic!("a bad file was accepted: {answer:?}");
    };
    assert!(
        message.contains("is not valid, nothing changed"),
        "{message}"
    );
    // SIGHUP is refused the same way, with only a log line.
    rig.handle(Event::Hangup).await;

    assert_eq!(rig.data_plane(), before);
    assert_eq!(rig.director.config(), config);
    assert_eq!(rig.netlink.addresses(), [VIP]);
    assert_eq!(rig.reloads.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn an_lvsadm_change_is_applied_and_a_refused_batch_changes_nothing() {
    let mut rig = rig(&[RS1]).await;
    let apply = |changes: &str| -> Request {
        serde_json::from_str(&format!(
            "{{\"command\":\"apply\",\"changes\":[{changes}]}}"
        ))
        .unwrap()
    };
    let add_rs2 = format!(
        "{{\"op\":\"add_server\",\"service\":{{\"protocol\":\"tcp\",\"address\":\"{VIP}\",\
         \"port\":80}},\"server\":{{\"address\":\"{RS2}\",\"forward\":\"route\",\"weight\":1,\
         \"u_threshold\":0,\"l_threshold\":0}}}}"
    );

    assert_eq!(rig.request(apply(&add_rs2)).await, Response::Ok);
    assert_eq!(rig.ring(VIP), [rig.id(RS1), rig.id(RS2)]);
    assert_eq!(rig.usable_mac(RS2), Some(MAC2));
    assert_eq!(rig.reloads.load(Ordering::SeqCst), 1);

    // The same server again: the whole batch is refused, the first change too.
    let before = rig.data_plane();
    let delete_rs1 = format!(
        "{{\"op\":\"delete_server\",\"service\":{{\"protocol\":\"tcp\",\"address\":\"{VIP}\",\
         \"port\":80}},\"address\":\"{RS1}\"}}"
    );
    let answer = rig.request(apply(&format!("{delete_rs1},{add_rs2}"))).await;
    assert_eq!(
        answer,
        Response::Error {
            message: "Destination already exists".into(),
            change: Some(1),
        }
    );
    assert_eq!(rig.data_plane(), before);
}

#[tokio::test]
async fn the_deny_list_changes_whole_or_not_at_all_and_runtime_prefixes_outlive_a_reload() {
    let with_deny = |socket: &std::path::Path, prefixes: &str| {
        format!(
            "{}\n[deny]\nprefixes = [{prefixes}]\n",
            config_text(socket, VIP, &[RS1])
        )
    };
    let mut rig = rig_of(
        |socket| with_deny(socket, "\"203.0.113.0/24\""),
        MemoryNetwork::default().transport(Ipv4Addr::new(10, 0, 0, 2)),
    )
    .await;
    let denied = |rig: &Rig| -> Vec<String> {
        rig.director
            .dataplane
            .deny
            .iter()
            .map(|(prefix, entry)| format!("{prefix} slot {} origin {}", entry.index, entry.origin))
            .collect()
    };
    // Whether the data plane looks the IPv4 list up; `deny6_flag`, the IPv6 one.
    let deny_flag = |rig: &Rig| {
        rig.director.dataplane.settings.unwrap().flags & lvs_common::flow::SETTINGS_DENY_LIST != 0
    };
    let deny6_flag = |rig: &Rig| {
        rig.director.dataplane.settings.unwrap().flags & lvs_common::flow::SETTINGS_DENY_LIST6 != 0
    };
    assert_eq!(denied(&rig), ["203.0.113.0/24 slot 0 origin 0"]);
    assert!(deny_flag(&rig));
    let prefixes = |list: &[&str]| list.iter().map(|p| p.parse().unwrap()).collect::<Vec<_>>();

    let answer = rig
        .request(Request::DenyAdd {
            prefixes: prefixes(&["192.0.2.0/24", "2001:db8::/32"]),
        })
        .await;
    assert_eq!(answer, Response::Ok);
    let before = denied(&rig);
    assert_eq!(
        before,
        [
            "192.0.2.0/24 slot 1 origin 1",
            "203.0.113.0/24 slot 0 origin 0",
            "2001:db8::/32 slot 2 origin 1"
        ]
    );
    let refusals = [
        (
            Request::DenyAdd {
                prefixes: prefixes(&["10.0.0.0/8", "192.0.2.0/24"]),
            },
            "192.0.2.0/24 is already in the deny list",
        ),
        (
            Request::DenyDelete {
                prefixes: prefixes(&["192.0.2.0/24", "203.0.113.0/24"]),
            },
            "203.0.113.0/24 comes from the config file: remove it there and reload",
        ),
        (
            Request::DenyDelete {
                prefixes: prefixes(&["192.0.2.0/24", "10.0.0.0/8"]),
            },
            "10.0.0.0/8 is not in the deny list",
        ),
    ];
    for (request, expected) in refusals {
        let answer = rig.request(request).await;
        assert_eq!(
            answer,
            Response::Error {
                message: expected.into(),
                change: None
            }
        );
        assert_eq!(denied(&rig), before, "a refused change changes nothing");
    }

    // A reload whose file has no [deny] section keeps the runtime prefix only.
    let socket = rig.director.settings.control_socket.clone();
    std::fs::write(&rig.file, config_text(&socket, VIP, &[RS1])).unwrap();
    rig.handle(Event::Hangup).await;
    assert_eq!(
        denied(&rig),
        [
            "192.0.2.0/24 slot 1 origin 1",
            "2001:db8::/32 slot 2 origin 1"
        ]
    );
    assert!(deny_flag(&rig));

    rig.director.dataplane.deny_stats.insert(
        1,
        lvs_common::TrafficStats {
            connections: 0,
            packets: 3,
            bytes: 180,
        },
    );
    let Response::Denied(list) = rig.request(Request::DenyList {}).await else {
        panic!("no list");
    };
    assert_eq!(
        serde_json::to_string(&list).unwrap(),
        r#"[{"prefix":"192.0.2.0/24","origin":"runtime","packets":3,"bytes":180},{"prefix":"2001:db8::/32","origin":"runtime","packets":0,"bytes":0}]"#
    );
    let Response::Status(status) = rig.request(Request::Status {}).await else {
        panic!("no status");
    };
    assert_eq!(status.deny, list);
    assert!(
        status.render().contains("Deny list:\n  Prefix"),
        "{}",
        status.render()
    );

    let answer = rig
        .request(Request::DenyDelete {
            prefixes: prefixes(&["192.0.2.0/24"]),
        })
        .await;
    assert_eq!(answer, Response::Ok);
    assert!(
        !deny_flag(&rig) && deny6_flag(&rig),
        "an IPv6 prefix alone keeps the IPv6 list in use, and only that one"
    );
    let answer = rig
        .request(Request::DenyDelete {
            prefixes: prefixes(&["2001:db8::/32"]),
        })
        .await;
    assert_eq!(answer, Response::Ok);
    assert!(denied(&rig).is_empty());
    assert!(
        !deny_flag(&rig) && !deny6_flag(&rig),
        "an empty list costs the program no lookup"
    );
}

#[tokio::test]
async fn a_health_change_takes_a_server_out_and_back_in() {
    let mut rig = rig(&[RS1, RS2]).await;
    let service = rig.director.model.wanted()[0].key();
    let update = |admission| HealthUpdate {
        service,
        address: RS2.into(),
        status: HealthStatus {
            state: HealthState::Down,
            admission,
            checker: Some("TCP_CHECK 10.0.0.12:80".into()),
            last_result: None,
        },
    };

    rig.handle(Event::Health(vec![update(Admission::Removed)]))
        .await;
    assert_eq!(rig.ring(VIP), [rig.id(RS1)]);

    rig.handle(Event::Health(vec![update(Admission::Weight(1))]))
        .await;
    assert_eq!(rig.ring(VIP), [rig.id(RS1), rig.id(RS2)]);
}

/// A check's new last result alone does not make the loop collect a status document (each
/// reads every counter from the data plane, and with thousands of checked servers such
/// updates come many times a second): the rate tick publishes it. A change of admission is
/// published at once.
#[tokio::test]
async fn only_health_updates_that_change_an_admission_publish_the_status_at_once() {
    let mut rig = rig(&[RS1, RS2]).await;
    let (publish, mut published) =
        tokio::sync::watch::channel(Arc::new(rig.director.status().unwrap()));
    rig.director.published = Some(publish);
    published.mark_unchanged();
    let service = rig.director.model.wanted()[0].key();
    let update = |state, admission, detail: &str| HealthUpdate {
        service,
        address: RS2.into(),
        status: HealthStatus {
            state,
            admission,
            checker: Some("TCP_CHECK 10.0.0.12:80".into()),
            last_result: Some(crate::base::health::CheckResult {
                passed: state == HealthState::Up,
                detail: detail.into(),
                at_unix_ms: 1,
                duration_ms: Some(1),
            }),
        },
    };

    rig.handle(Event::Health(vec![update(
        HealthState::Up,
        Admission::Weight(1),
        "connected",
    )]))
    .await;
    assert!(
        !published.has_changed().unwrap(),
        "published for a last result"
    );

    rig.handle(Event::Health(vec![update(
        HealthState::Down,
        Admission::Removed,
        "connection refused",
    )]))
    .await;
    assert!(
        published.has_changed().unwrap(),
        "a removal was not published"
    );
    published.mark_unchanged();

    rig.handle(Event::SampleRates { elapsed: 2.0 }).await;
    assert!(
        published.has_changed().unwrap(),
        "the rate tick did not publish"
    );
}

#[tokio::test]
async fn a_neighbour_change_on_the_interface_rewrites_the_real_servers_mac() {
    let mut rig = rig(&[RS1]).await;
    assert_eq!(rig.usable_mac(RS1), Some(MAC1));
    let moved = [2, 0, 0, 0, 0, 0x99];
    rig.netlink.kernel().neighbours = vec![reachable(RS1, moved)];

    // A notification about another interface does not make the daemon read the table.
    let elsewhere = NeighbourEntry {
        if_index: IF_INDEX + 1,
        ..reachable(RS1, moved)
    };
    rig.handle(Event::Neighbour(NeighbourEvent::Changed(elsewhere)))
        .await;
    assert_eq!(rig.usable_mac(RS1), Some(MAC1));

    rig.handle(Event::Neighbour(NeighbourEvent::Changed(reachable(
        RS1, moved,
    ))))
    .await;
    assert_eq!(rig.usable_mac(RS1), Some(moved));

    // The kernel giving up takes the server out.
    rig.netlink.kernel().neighbours = vec![NeighbourEntry {
        state: NeighbourState::Failed,
        mac: None,
        ..reachable(RS1, moved)
    }];
    rig.handle(Event::ResyncNeighbours).await;
    assert_eq!(rig.usable_mac(RS1), None);
    assert!(rig.netlink.kernel().resolutions.contains(&RS1.into()));
}

/// Static neighbour entries (PERMANENT, NOARP), as some sites configure for their real
/// servers, are used as they are and never asked for again: a resolution request could turn
/// them into kernel-managed entries that then fail. Entries the kernel manages are refreshed.
#[tokio::test]
async fn static_neighbour_entries_are_used_and_never_refreshed() {
    let mut rig = rig(&[RS1, RS2]).await;
    rig.netlink.kernel().neighbours = vec![
        NeighbourEntry {
            state: NeighbourState::Permanent,
            ..reachable(RS1, MAC1)
        },
        NeighbourEntry {
            state: NeighbourState::Noarp,
            ..reachable(RS2, MAC2)
        },
    ];
    rig.netlink.kernel().resolutions.clear();
    rig.handle(Event::ResyncNeighbours).await;
    rig.handle(Event::RefreshNeighbours).await;
    assert_eq!(rig.usable_mac(RS1), Some(MAC1));
    assert_eq!(rig.usable_mac(RS2), Some(MAC2));
    assert_eq!(
        rig.netlink.kernel().resolutions,
        [] as [Ipv4Addr; 0],
        "no resolution asked for a static entry"
    );

    rig.netlink.kernel().neighbours = vec![reachable(RS1, MAC1)];
    rig.handle(Event::RefreshNeighbours).await;
    assert!(
        rig.netlink.kernel().resolutions.contains(&RS1.into()),
        "an entry the kernel manages is re-confirmed"
    );
}

#[test]
fn auto_mode_falls_back_to_generic_where_native_is_refused() {
    let mut dataplane = FakeDataPlane::default();
    assert_eq!(
        super::attach::attach(&mut dataplane, 7, XdpMode::Auto).unwrap(),
        "native"
    );
    assert_eq!(dataplane.attached, Some((7, AttachMode::Native)));

    let mut dataplane = FakeDataPlane {
        refuse_native: true,
        ..FakeDataPlane::default()
    };
    assert_eq!(
        super::attach::attach(&mut dataplane, 7, XdpMode::Auto).unwrap(),
        "generic"
    );
    assert_eq!(dataplane.attached, Some((7, AttachMode::Generic)));
    let error = super::attach::attach(&mut dataplane, 7, XdpMode::Native).unwrap_err();
    assert_eq!(error.to_string(), "attaching in native mode");
}

/// The whole daemon on injected parts: it answers on the socket it was given, reloads on the
/// injected SIGHUP, and at shutdown ends the control server, takes its VIPs off, tears the
/// host down and removes its socket.
#[tokio::test]
async fn the_daemon_runs_on_injected_parts_and_cleans_up_at_shutdown() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("run/lvs.sock");
    let file = dir.path().join("lvs.toml");
    std::fs::write(&file, config_text(&socket, VIP, &[RS1])).unwrap();
    let config = config::load(&file).unwrap();
    let listener = control::bind(&socket).await.unwrap();
    let (netlink, neighbour_events) = FakeNetlink::new();
    let (health, health_updates, reloads) = FakeHealth::new();
    let host = FakeHost::default();
    let (hangup, hangups) = futures::channel::mpsc::unbounded::<()>();
    let (stop, stopped) = oneshot::channel::<Stop>();
    let web_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let web = web_listener.local_addr().unwrap();
    let parts = Parts {
        dataplane: FakeDataPlane::default(),
        netlink: netlink.clone(),
        link: link(),
        host: host.clone(),
        start_health: move |_: &Config| (health, Vec::new()),
        hangups: hangups.boxed(),
        status_listener: Some(web_listener),
        kept_rates: None,
        sync_transport: MemoryNetwork::default().transport(Ipv4Addr::new(10, 0, 0, 2)),
    };
    let daemon = tokio::spawn(super::serve(
        config,
        Some(file.clone()),
        parts,
        listener,
        async move { stopped.await.unwrap_or(Stop::ForGood) },
    ));

    let status = |socket: std::path::PathBuf| async move {
        match control::call(&socket, &Request::Status {}).await.unwrap() {
            Response::Status(status) => status,
            other => panic!("status answered {other:?}"),
        }
    };
    let running = status(socket.clone()).await;
    assert_eq!(running.xdp_mode, "native");
    assert_eq!(running.services.len(), 1);
    assert_eq!(netlink.addresses(), [VIP]);
    assert_eq!(*host.0.lock().unwrap(), ["set up"]);

    // SIGHUP, injected: the edited file is applied.
    std::fs::write(&file, config_text(&socket, OTHER_VIP, &[RS1, RS2])).unwrap();
    hangup.unbounded_send(()).unwrap();
    let reloaded = tokio::time::timeout(Duration::from_secs(5), async {
        while netlink.addresses() != [OTHER_VIP] {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    assert!(reloaded.is_ok(), "the reload never happened");
    assert_eq!(reloads.load(Ordering::SeqCst), 1);
    assert_eq!(
        status(socket.clone()).await.services[0].real_servers.len(),
        2
    );

    // Clients of the status listener that take every connection slot, or never finish a
    // request, hold nothing up: the updates below still arrive in time.
    let mut stuck = Vec::new();
    for _ in 0..=crate::io::web::MAX_CONNECTIONS {
        let mut client = tokio::net::TcpStream::connect(web).await.unwrap();
        use tokio::io::AsyncWriteExt as _;
        let _ = client
            .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")
            .await;
        stuck.push(client);
    }

    // Health checking's updates reach the loop.
    let service = config::Service::key(&config::load(&file).unwrap().services[0]);
    let down = HealthUpdate {
        service,
        address: RS2.into(),
        status: HealthStatus {
            state: HealthState::Down,
            admission: Admission::Removed,
            checker: Some("TCP_CHECK 10.0.0.12:80".into()),
            last_result: None,
        },
    };
    health_updates.send(vec![down]).await.unwrap();
    let server = |status: &crate::logic::status::Status, address: Ipv4Addr| {
        status.services[0]
            .real_servers
            .iter()
            .find(|rs| rs.address == address.to_string())
            .cloned()
            .unwrap()
    };
    let taken_out = tokio::time::timeout(Duration::from_secs(5), async {
        while server(&status(socket.clone()).await, RS2).in_effect {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    assert!(taken_out.is_ok(), "the health update never arrived");

    // So do the kernel's neighbour notifications. The table is also read once a second; a
    // change seen well within that second came through the notification.
    let moved = [2, 0, 0, 0, 0, 0x99];
    netlink.kernel().neighbours = vec![reachable(RS1, moved), reachable(RS2, MAC2)];
    neighbour_events
        .unbounded_send(NeighbourEvent::Changed(reachable(RS1, moved)))
        .unwrap();
    let moved_mac = Some(crate::base::mac::MacAddr(moved).to_string());
    let followed = tokio::time::timeout(Duration::from_millis(500), async {
        while server(&status(socket.clone()).await, RS1).mac != moved_mac {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    assert!(
        followed.is_ok(),
        "the neighbour notification was not followed"
    );

    drop(stuck);
    tokio::time::sleep(Duration::from_millis(100)).await;

    // The status listener serves the document the loop published after that change: the same
    // as the control socket's, and the metrics agree with it.
    let published: crate::logic::status::Status =
        serde_json::from_str(&http_get(web, "/status.json").await).unwrap();
    assert_eq!(published, status(socket.clone()).await);
    let metrics = http_get(web, "/metrics").await;
    let scrape =
        prometheus_parse::Scrape::parse(metrics.lines().map(|l| Ok(l.to_owned()))).unwrap();
    let backends: Vec<&str> = scrape
        .samples
        .iter()
        .filter(|s| s.metric == "node_ipvs_backend_weight")
        .filter_map(|s| s.labels.get("remote_address"))
        .collect();
    assert_eq!(
        backends,
        [RS1.to_string()],
        "RS2 was removed by health checking"
    );

    // An idle control connection must not hold the shutdown up, nor an idle status one.
    let _idle = tokio::net::UnixStream::connect(&socket).await.unwrap();
    let _idle_web = tokio::net::TcpStream::connect(web).await.unwrap();
    stop.send(Stop::ForGood).unwrap();
    tokio::time::timeout(Duration::from_secs(5), daemon)
        .await
        .expect("the daemon stopped")
        .unwrap()
        .unwrap();
    assert_eq!(
        netlink.addresses(),
        [] as [Ipv4Addr; 0],
        "its VIPs are taken off"
    );
    assert_eq!(*host.0.lock().unwrap(), ["set up", "torn down"]);
    assert!(
        tokio::net::TcpStream::connect(web).await.is_err(),
        "the status listener is closed"
    );
    assert!(!socket.exists(), "the socket is removed");
}

/// The body of a GET on the status listener.
async fn http_get(address: std::net::SocketAddr, path: &str) -> String {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: lvs\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = String::new();
    tokio::time::timeout(Duration::from_secs(5), stream.read_to_string(&mut answer))
        .await
        .expect("an answer")
        .unwrap();
    let (head, body) = answer.split_once("\r\n\r\n").expect("a head and a body");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    body.to_owned()
}

/// A stop for a restart (SIGTERM, `systemctl restart`) leaves the data plane forwarding: the
/// VIPs stay on the interface and the host's settings stay as the director needs them, for
/// the next director to adopt; only the control socket goes.
#[tokio::test]
async fn a_stop_for_a_restart_leaves_the_vips_and_the_host_as_they_are() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("run/lvs.sock");
    let file = dir.path().join("lvs.toml");
    std::fs::write(&file, config_text(&socket, VIP, &[RS1])).unwrap();
    let config = config::load(&file).unwrap();
    let listener = control::bind(&socket).await.unwrap();
    let (netlink, _neighbour_events) = FakeNetlink::new();
    let (health, _health_updates, _reloads) = FakeHealth::new();
    let host = FakeHost::default();
    let (_hangup, hangups) = futures::channel::mpsc::unbounded::<()>();
    let parts = Parts {
        dataplane: FakeDataPlane::default(),
        netlink: netlink.clone(),
        link: link(),
        host: host.clone(),
        start_health: move |_: &Config| (health, Vec::new()),
        hangups: hangups.boxed(),
        status_listener: None,
        kept_rates: None,
        sync_transport: MemoryNetwork::default().transport(Ipv4Addr::new(10, 0, 0, 2)),
    };
    let (stop, stopped) = oneshot::channel::<Stop>();
    let daemon = tokio::spawn(super::serve(
        config,
        Some(file.clone()),
        parts,
        listener,
        async move { stopped.await.unwrap_or(Stop::ForGood) },
    ));
    let running = tokio::time::timeout(Duration::from_secs(5), async {
        while control::call(&socket, &Request::Status {}).await.is_err() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    assert!(running.is_ok(), "the daemon never answered");

    stop.send(Stop::Restart).unwrap();
    tokio::time::timeout(Duration::from_secs(5), daemon)
        .await
        .expect("the daemon stopped")
        .unwrap()
        .unwrap();
    assert_eq!(
        netlink.addresses(),
        [VIP],
        "the VIP stays for the next director"
    );
    assert_eq!(
        *host.0.lock().unwrap(),
        ["set up"],
        "the host is not torn down"
    );
    assert!(!socket.exists(), "the socket is removed");
}

/// A director that adopts a running data plane replaces the program on its attachment (the
/// status says "adopted") and takes the VIPs it finds for its own, since the director before
/// it put them there: a stop for good then takes them off.
#[tokio::test]
async fn an_adopted_data_plane_is_kept_and_its_vips_are_the_adopters_to_remove() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("run/lvs.sock");
    let file = dir.path().join("lvs.toml");
    std::fs::write(&file, config_text(&socket, VIP, &[RS1])).unwrap();
    let config = config::load(&file).unwrap();

    // What the previous director left: its maps, its attachment, its VIP.
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
    let (netlink, _neighbour_events) = FakeNetlink::new();
    netlink.kernel().addresses = vec![VIP.into()];

    let listener = control::bind(&socket).await.unwrap();
    let (health, _health_updates, _reloads) = FakeHealth::new();
    let host = FakeHost::default();
    let (_hangup, hangups) = futures::channel::mpsc::unbounded::<()>();
    let parts = Parts {
        dataplane,
        netlink: netlink.clone(),
        link: link(),
        host: host.clone(),
        start_health: move |_: &Config| (health, Vec::new()),
        hangups: hangups.boxed(),
        status_listener: None,
        kept_rates: None,
        sync_transport: MemoryNetwork::default().transport(Ipv4Addr::new(10, 0, 0, 2)),
    };
    let (stop, stopped) = oneshot::channel::<Stop>();
    let daemon = tokio::spawn(super::serve(
        config,
        Some(file.clone()),
        parts,
        listener,
        async move { stopped.await.unwrap_or(Stop::ForGood) },
    ));
    let status = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            if let Ok(Response::Status(status)) = control::call(&socket, &Request::Status {}).await
            {
                return status;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the daemon answered");
    assert_eq!(status.xdp_mode, "adopted");
    assert!(status.services[0].real_servers[0].forwarding);

    stop.send(Stop::ForGood).unwrap();
    tokio::time::timeout(Duration::from_secs(5), daemon)
        .await
        .expect("the daemon stopped")
        .unwrap()
        .unwrap();
    assert_eq!(
        netlink.addresses(),
        [] as [Ipv4Addr; 0],
        "the adopted VIP is taken off at a stop for good"
    );
    assert_eq!(*host.0.lock().unwrap(), ["set up", "torn down"]);
}
