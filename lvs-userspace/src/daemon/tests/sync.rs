//! Connection sync between two directors on the in-memory parts, joined by an in-memory
//! multicast segment: what a master's sweep sends, a backup installs with its own ids; what
//! it does not have, or cannot trust, it counts and leaves out.

use std::{net::SocketAddr, path::Path};

use lvs_common::{
    flow::{FlowEntry, FlowKey, FlowState},
    keys::{FlowMapKey, TemplateMapKey},
};

use super::*;
use crate::{
    base::values::{SyncId, SyncMaxLen},
    logic::{
        config::Protocol,
        conntrack::monotonic_ns,
        status::SyncStatus,
        sync::{
            Change, Connection, Encoder, Entry, ServiceAddress, SyncConfig, SyncDaemon, SyncKey,
            SyncRole, Template,
            wire::{HEADER_LEN, MAC_LEN},
        },
    },
};

const KEY: &[u8] = b"the directors' shared sync key\n";
const SYNC_ID: i64 = 51;
/// The two directors' addresses on the segment.
const A: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);
const B: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 3);
const GROUP: Ipv4Addr = Ipv4Addr::new(224, 0, 0, 81);
const PORT: u16 = 8848;
const S: u64 = 1_000_000_000;

/// A `[sync]` section running `roles`, its key file written in `dir`.
fn sync_config(dir: &Path, roles: &[SyncRole]) -> SyncConfig {
    let key_file = dir.join("sync.key");
    std::fs::write(&key_file, KEY).unwrap();
    SyncConfig {
        daemons: roles
            .iter()
            .map(|&role| SyncDaemon {
                sync_id: SyncId::new(SYNC_ID).unwrap(),
                ..SyncDaemon::with_defaults(role, "eth0")
            })
            .collect(),
        key_file,
        max_rate: SyncConfig::DEFAULT_MAX_RATE,
    }
}

/// An encoder as a master with the shared key (or another) writes.
fn encoder(key: &[u8], sync_id: i64, first_sequence: u64) -> Encoder {
    Encoder::new(
        SyncId::new(sync_id).unwrap(),
        SyncKey::new(key.to_vec()).unwrap(),
        SyncMaxLen::DEFAULT,
        first_sequence,
    )
}

fn web(vip: Ipv4Addr) -> ServiceAddress {
    ServiceAddress {
        address: vip.into(),
        port: 80,
        protocol: Protocol::Tcp,
    }
}

fn connection(vip: Ipv4Addr, client_port: u16, real_server: Ipv4Addr) -> Entry {
    Entry::Connection(
        Change::New,
        Connection {
            service: web(vip),
            client: SocketAddr::new(Ipv4Addr::new(198, 51, 100, 7).into(), client_port),
            real_server: SocketAddr::new(real_server.into(), 80),
            state: FlowState::Established,
            remaining_ms: 600_000,
        },
    )
}

fn flow_key(client_port: u16) -> FlowMapKey {
    FlowMapKey::V4(FlowKey {
        src_addr: [198, 51, 100, 7],
        dst_addr: VIP.octets(),
        src_port: client_port.to_be_bytes(),
        dst_port: 80u16.to_be_bytes(),
        protocol: lvs_common::IPPROTO_TCP,
        _pad: [0; 3],
    })
}

impl Rig {
    /// Runs the sync daemons of `roles`, as a `[sync]` section at start does.
    async fn start_sync(&mut self, roles: &[SyncRole]) {
        let config = sync_config(self._dir.path(), roles);
        let prepared = self
            .director
            .sync
            .prepare(Some(&config), &self.netlink, monotonic_ns())
            .await
            .unwrap();
        self.director.sync.apply(prepared);
        self.director.sync_config = Some(config);
    }

    /// The next datagram the backup's socket received, if one comes soon.
    async fn next_received(&mut self) -> Option<super::super::sync::Received> {
        tokio::time::timeout(Duration::from_millis(50), self.sync_received.recv())
            .await
            .ok()
            .flatten()
    }

    /// Hands the loop every datagram the backup received; returns how many.
    async fn deliver(&mut self) -> usize {
        let mut delivered = 0;
        while let Some(received) = self.next_received().await {
            self.handle(Event::SyncDatagram(received)).await;
            delivered += 1;
        }
        delivered
    }

    fn sync_status(&self) -> SyncStatus {
        *self.director.status().unwrap().sync
    }

    /// A connection to `real_server`, as this director's data plane scheduled it just now.
    fn scheduled(&self, real_server: Ipv4Addr) -> FlowEntry {
        let id = self.id(real_server);
        FlowEntry {
            last_seen_ns: monotonic_ns(),
            real_server_id: id,
            generation: self.director.model.generations()[&id],
            state: FlowState::Established as u8,
            ..FlowEntry::default()
        }
    }
}

/// Counts by name, as `status.sync` lists them.
fn counted(counts: &std::collections::BTreeMap<String, u64>, name: &str) -> u64 {
    *counts
        .get(name)
        .unwrap_or_else(|| panic!("{name} is not listed: {counts:?}"))
}

#[tokio::test]
async fn a_masters_connection_lands_in_the_backup_with_the_backups_real_server_id() {
    let network = MemoryNetwork::default();
    let mut master = rig_on(&[RS1, RS2], network.transport(A)).await;
    // The backup lists its real servers the other way round, so its ids differ.
    let mut backup = rig_on(&[RS2, RS1], network.transport(B)).await;
    assert_ne!(master.id(RS1), backup.id(RS1));
    master.start_sync(&[SyncRole::Master]).await;
    backup
        .start_sync(&[SyncRole::Master, SyncRole::Backup])
        .await;

    let key = flow_key(40000);
    let flow = master.scheduled(RS1);
    master.director.dataplane.flows.insert(key, flow);
    master.handle(Event::Sweep).await;
    assert!(backup.deliver().await >= 1);

    let installed = backup.director.dataplane.flows[&key];
    assert_eq!(installed.real_server_id, backup.id(RS1));
    assert_eq!(
        installed.generation,
        backup.director.model.generations()[&backup.id(RS1)]
    );
    assert_eq!(installed.state, FlowState::Established as u8);
    let status = backup.sync_status();
    assert_eq!(status.entries_installed, 1);
    assert_eq!(status.entries_received, 1);
    assert_eq!(status.peers.len(), 1);
    assert_eq!(status.peers[0].address, A.to_string());
    assert_eq!(
        status.full_resends, 1,
        "a master heard for the first time gets the backup's whole table"
    );
    let sent = master.sync_status();
    assert_eq!((sent.entries_sent, sent.messages_sent), (1, 1));

    // The backup's own master does not send the connection back: it was received, and sees
    // no traffic here. Only a heartbeat goes out.
    backup.handle(Event::Sweep).await;
    let echoed = backup.sync_status();
    assert_eq!(echoed.entries_sent, 0);
    assert_eq!(echoed.messages_sent, 1, "a heartbeat");
    // Nothing new on the master's side: the next sweep sends nothing, not even a heartbeat
    // (the last message is not a second old).
    master.handle(Event::Sweep).await;
    assert_eq!(master.sync_status().messages_sent, 1);
}

#[tokio::test]
async fn what_the_backup_does_not_have_is_counted_and_not_installed() {
    let network = MemoryNetwork::default();
    let mut backup = rig_on(&[RS1], network.transport(B)).await;
    backup.start_sync(&[SyncRole::Backup]).await;
    let template = Entry::Template(Template {
        service: web(VIP),
        client_network: Ipv4Addr::new(198, 51, 100, 0).into(),
        real_server: SocketAddr::new(RS1.into(), 80),
        remaining_ms: 100_000,
    });
    let messages = encoder(KEY.trim_ascii_end(), SYNC_ID, 1)
        .encode(&[
            connection(VIP, 1, RS1),
            connection(VIP, 2, RS2),
            connection(OTHER_VIP, 3, RS1),
            template,
        ])
        .unwrap();
    network.inject(A, GROUP, PORT, &messages[0]);
    assert_eq!(backup.deliver().await, 1);

    let dataplane = &backup.director.dataplane;
    assert_eq!(
        dataplane.flows.keys().copied().collect::<Vec<_>>(),
        [flow_key(1)]
    );
    assert!(dataplane.templates.is_empty());
    assert_eq!(dataplane.flow_inserts, 1);
    let status = backup.sync_status();
    assert_eq!((status.entries_received, status.entries_installed), (4, 1));
    assert_eq!(counted(&status.unknown, "unknown_real_server"), 1);
    assert_eq!(counted(&status.unknown, "unknown_service"), 1);
    assert_eq!(counted(&status.unknown, "not_persistent"), 1);
}

/// An IPv6 connection to the web service's port on 2001:db8::100.
fn connection6(client_port: u16) -> Entry {
    let Entry::Connection(change, connection) = connection(VIP, client_port, RS1) else {
        unreachable!()
    };
    Entry::Connection(
        change,
        Connection {
            service: ServiceAddress {
                address: "2001:db8::100".parse().unwrap(),
                ..connection.service
            },
            client: SocketAddr::new("2001:db8:cafe::7".parse().unwrap(), client_port),
            real_server: "[2001:db8::11]:80".parse().unwrap(),
            ..connection
        },
    )
}

#[tokio::test]
async fn ipv6_entries_travel_between_the_directors_and_need_an_ipv6_service_to_land() {
    // This backup has no IPv6 service: an IPv6 entry is taken (authentic, well formed) and
    // counted as naming no service here, like any entry the backup does not have; the IPv4
    // connection beside it in the batch lands. (With the service, it lands too: the test
    // after this one.)
    let network = MemoryNetwork::default();
    let mut backup = rig_on(&[RS1], network.transport(B)).await;
    backup.start_sync(&[SyncRole::Backup]).await;
    let messages = encoder(KEY.trim_ascii_end(), SYNC_ID, 1)
        .encode(&[connection6(1), connection(VIP, 2, RS1), connection6(3)])
        .unwrap();
    assert_eq!(messages.len(), 3, "one family a message");
    for message in &messages {
        network.inject(A, GROUP, PORT, message);
    }
    assert_eq!(backup.deliver().await, 3);
    let status = backup.sync_status();
    assert_eq!((status.messages_received, status.entries_received), (3, 3));
    assert_eq!(status.entries_installed, 1);
    assert_eq!(counted(&status.unknown, "unknown_service"), 2);
    assert_eq!(counted(&status.rejected, "malformed"), 0);
    assert_eq!(
        backup
            .director
            .dataplane
            .flows
            .keys()
            .copied()
            .collect::<Vec<_>>(),
        [flow_key(2)]
    );

    // An IPv6 entry that hides an IPv4 address (mapped) is refused whole and counted.
    let mut mapped = encoder(KEY.trim_ascii_end(), SYNC_ID, 10)
        .encode(&[connection6(4)])
        .unwrap()
        .remove(0);
    let client = HEADER_LEN + 4;
    mapped[client..client + 16]
        .copy_from_slice(&Ipv4Addr::new(198, 51, 100, 7).to_ipv6_mapped().octets());
    let end = mapped.len() - MAC_LEN;
    let tag = SyncKey::new(KEY.trim_ascii_end().to_vec())
        .unwrap()
        .tag(&mapped[..end]);
    mapped[end..].copy_from_slice(&tag);
    network.inject(A, GROUP, PORT, &mapped);
    assert_eq!(backup.deliver().await, 1);
    let status = backup.sync_status();
    assert_eq!(counted(&status.rejected, "malformed"), 1);
    assert_eq!(status.entries_received, 3);
}

#[tokio::test]
async fn an_ipv6_connection_lands_on_a_backup_with_the_ipv6_service() {
    let network = MemoryNetwork::default();
    let mut backup = rig_of(
        |socket| {
            config_text(socket, VIP, &[RS1])
                + "\n[[virtual_server]]\naddress = \"2001:db8::100\"\nport = 80\n\
                   lb_algo = \"rr\"\n\n[[virtual_server.real_server]]\n\
                   address = \"2001:db8::11\"\n"
        },
        network.transport(B),
    )
    .await;
    backup.start_sync(&[SyncRole::Backup]).await;
    let messages = encoder(KEY.trim_ascii_end(), SYNC_ID, 1)
        .encode(&[connection6(7), connection(VIP, 8, RS1)])
        .unwrap();
    for message in &messages {
        network.inject(A, GROUP, PORT, message);
    }
    assert_eq!(backup.deliver().await, messages.len());
    let status = backup.sync_status();
    assert_eq!(status.entries_installed, 2, "{status:?}");
    let ipv6: Vec<FlowMapKey> = backup
        .director
        .dataplane
        .flows
        .keys()
        .copied()
        .filter(|key| matches!(key, FlowMapKey::V6(_)))
        .collect();
    assert_eq!(ipv6.len(), 1);
    assert_eq!(
        ipv6[0].client(),
        "[2001:db8:cafe::7]:7".parse::<SocketAddr>().unwrap()
    );
    let flow = backup.director.dataplane.flows[&ipv6[0]];
    let ids: Vec<u32> = backup
        .director
        .model
        .services()
        .filter(|view| view.service.address.is_ipv6())
        .flat_map(|view| view.real_servers.iter().map(|rs| rs.id).collect::<Vec<_>>())
        .collect();
    assert_eq!(
        ids,
        [flow.real_server_id],
        "the backup's own id for 2001:db8::11"
    );
}

#[tokio::test]
async fn forged_foreign_damaged_and_replayed_datagrams_are_counted_and_install_nothing() {
    let network = MemoryNetwork::default();
    let mut backup = rig_on(&[RS1], network.transport(B)).await;
    backup.start_sync(&[SyncRole::Backup]).await;
    let entry = [connection(VIP, 1, RS1)];
    let good = encoder(KEY.trim_ascii_end(), SYNC_ID, 100)
        .encode(&entry)
        .unwrap()
        .remove(0);
    let forged = encoder(b"a key the directors do not share", SYNC_ID, 100)
        .encode(&entry)
        .unwrap()
        .remove(0);
    let foreign = encoder(KEY.trim_ascii_end(), SYNC_ID + 1, 100)
        .encode(&entry)
        .unwrap()
        .remove(0);
    let mut garbage = b"GET / HTTP/1.0\r\n\r\n".to_vec();
    garbage.resize(good.len(), b'x');
    for bytes in [
        &forged,
        &foreign,
        &good[..30].to_vec(),
        &garbage,
        &good[..good.len() - 1].to_vec(),
    ] {
        network.inject(A, GROUP, PORT, bytes);
    }
    assert_eq!(
        backup.deliver().await,
        5,
        "the daemon takes every one and goes on"
    );
    assert!(backup.director.dataplane.flows.is_empty());
    assert_eq!(backup.director.dataplane.flow_inserts, 0);
    let status = backup.sync_status();
    assert_eq!(counted(&status.rejected, "forged"), 1);
    assert_eq!(counted(&status.rejected, "other_sync_id"), 1);
    assert_eq!(counted(&status.rejected, "truncated"), 2);
    assert_eq!(counted(&status.rejected, "malformed"), 1);
    assert_eq!(status.messages_received, 0);
    assert!(status.peers.is_empty(), "no one was heard");

    // The real one is taken once; played back, it is refused.
    network.inject(A, GROUP, PORT, &good);
    network.inject(A, GROUP, PORT, &good);
    assert_eq!(backup.deliver().await, 2);
    assert_eq!(backup.director.dataplane.flow_inserts, 1);
    let status = backup.sync_status();
    assert_eq!(counted(&status.rejected, "replayed"), 1);
    assert_eq!(status.messages_received, 1);
    // The director's own address is not a peer: its messages are ignored (multicast loopback
    // is off; this is for a segment that loops them back all the same).
    let own = encoder(KEY.trim_ascii_end(), SYNC_ID, 500)
        .encode(&[connection(VIP, 2, RS1)])
        .unwrap()
        .remove(0);
    network.inject(Ipv4Addr::new(10, 0, 0, 1), GROUP, PORT, &own);
    assert_eq!(backup.deliver().await, 1);
    assert_eq!(backup.director.dataplane.flow_inserts, 1);
}

/// A master heard again after more than 3 s of silence has come back: the backup's own
/// master sends it the whole table, so that it knows every connection before it takes the
/// VIP back.
#[tokio::test]
async fn a_master_that_comes_back_gets_the_whole_table() {
    let network = MemoryNetwork::default();
    let mut backup = rig_on(&[RS1], network.transport(B)).await;
    backup
        .start_sync(&[SyncRole::Master, SyncRole::Backup])
        .await;
    let mut peer = encoder(KEY.trim_ascii_end(), SYNC_ID, 1);
    let mut hear = async |rig: &mut Rig, now_ns: u64| {
        network.inject(A, GROUP, PORT, &peer.heartbeat());
        let received = rig.next_received().await.expect("a datagram");
        let director = &mut rig.director;
        director
            .sync
            .received(
                received,
                &director.model,
                &mut director.dataplane,
                &super::super::settings(&director.settings, &director.deny),
                &[],
                now_ns,
            )
            .unwrap();
        rig.sync_status().full_resends
    };
    assert_eq!(hear(&mut backup, 1000 * S).await, 1, "a new master");
    assert_eq!(hear(&mut backup, 1001 * S).await, 1, "heard a second ago");
    assert_eq!(
        hear(&mut backup, 1003 * S).await,
        1,
        "two seconds of silence"
    );
    assert_eq!(hear(&mut backup, 1006 * S).await, 2, "three: it came back");
}

#[tokio::test]
async fn a_reload_without_sync_stops_the_sync_daemons() {
    let network = MemoryNetwork::default();
    let mut rig = rig_on(&[RS1], network.transport(B)).await;
    rig.start_sync(&[SyncRole::Master, SyncRole::Backup]).await;
    assert_eq!(rig.sync_status().daemons.len(), 2);
    assert_eq!(network.listeners(), 1);

    // The file has no [sync] section: a reload sets the daemons to none.
    rig.handle(Event::Hangup).await;
    assert_eq!(rig.sync_status().daemons, []);
    assert_eq!(rig.director.config().sync, None);
    let closed = tokio::time::timeout(Duration::from_secs(1), async {
        while network.listeners() > 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    assert!(closed.is_ok(), "the backup's socket is closed");
}

/// A `[sync]` section whose key file is missing or short is refused before anything changes:
/// the daemons running go on as they were.
#[tokio::test]
async fn a_bad_key_file_changes_nothing() {
    let mut rig = rig(&[RS1]).await;
    rig.start_sync(&[SyncRole::Backup]).await;
    let running = rig.sync_status().daemons;
    let mut config = sync_config(rig._dir.path(), &[SyncRole::Master]);
    for (key, message) in [
        (None, "reading the sync key file"),
        (
            Some(&b"fifteen bytes!!\n"[..]),
            "the sync key has 15 bytes; it needs at least 16",
        ),
    ] {
        config.key_file = rig._dir.path().join("other.key");
        if let Some(key) = key {
            std::fs::write(&config.key_file, key).unwrap();
        }
        let refused = rig
            .director
            .sync
            .prepare(Some(&config), &rig.netlink, monotonic_ns())
            .await
            .err()
            .expect("a bad key is refused");
        assert!(format!("{refused:#}").contains(message), "{refused:#}");
        assert_eq!(rig.sync_status().daemons, running);
    }
}

#[tokio::test]
async fn lvsadm_starts_stops_and_lists_sync_daemons_as_ipvsadm_does() {
    let network = MemoryNetwork::default();
    let mut rig = rig_on(&[RS1], network.transport(B)).await;
    let master = SyncDaemon {
        sync_id: SyncId::new(SYNC_ID).unwrap(),
        ..SyncDaemon::with_defaults(SyncRole::Master, "eth0")
    };
    let error = |response: Response| match response {
        Response::Error { message, .. } => message,
        other => panic!("not refused: {other:?}"),
    };

    // Without a [sync] key_file, there is no key to sign with.
    let refused = error(
        rig.request(Request::StartSyncDaemon {
            daemon: master.clone(),
        })
        .await,
    );
    assert!(refused.starts_with("no [sync] key_file in "), "{refused}");
    assert!(refused.ends_with("lvs.toml: connection sync needs the key both directors share"));

    rig.start_sync(&[]).await;
    assert_eq!(
        rig.request(Request::SyncDaemons {}).await,
        Response::Daemons(crate::logic::api::Daemons {
            sync_daemons: vec![],
            sync_peers: vec![],
            bgp: None,
        })
    );
    assert_eq!(
        rig.request(Request::StartSyncDaemon {
            daemon: master.clone()
        })
        .await,
        Response::Ok
    );
    assert_eq!(
        error(
            rig.request(Request::StartSyncDaemon {
                daemon: master.clone()
            })
            .await
        ),
        "Daemon has already run"
    );
    let backup = SyncDaemon {
        role: SyncRole::Backup,
        ..master.clone()
    };
    assert_eq!(
        error(
            rig.request(Request::StopSyncDaemon {
                role: SyncRole::Backup
            })
            .await
        ),
        "No daemon is running"
    );
    assert_eq!(
        rig.request(Request::StartSyncDaemon {
            daemon: backup.clone()
        })
        .await,
        Response::Ok
    );
    assert_eq!(
        rig.request(Request::SyncDaemons {}).await,
        Response::Daemons(crate::logic::api::Daemons {
            sync_daemons: vec![master.clone(), backup.clone()],
            sync_peers: vec![],
            bgp: None,
        })
    );
    assert_eq!(
        rig.request(Request::StopSyncDaemon {
            role: SyncRole::Master
        })
        .await,
        Response::Ok
    );
    // An interface the director does not have is refused, and changes nothing.
    let elsewhere = SyncDaemon {
        interface: "eth9".into(),
        ..master.clone()
    };
    let refused = error(
        rig.request(Request::StartSyncDaemon { daemon: elsewhere })
            .await,
    );
    assert!(refused.contains("interface eth9"), "{refused}");
    assert_eq!(
        rig.request(Request::SyncDaemons {}).await,
        Response::Daemons(crate::logic::api::Daemons {
            sync_daemons: vec![backup.clone()],
            sync_peers: vec![],
            bgp: None,
        })
    );

    // The key file is read again at each start: a key cut short since is refused.
    std::fs::write(rig._dir.path().join("sync.key"), b"short\n").unwrap();
    let refused = error(
        rig.request(Request::StartSyncDaemon { daemon: master })
            .await,
    );
    assert!(refused.contains("the sync key has 5 bytes"), "{refused}");
    assert_eq!(
        rig.request(Request::StopSyncDaemon {
            role: SyncRole::Backup
        })
        .await,
        Response::Ok
    );
    assert_eq!(
        rig.request(Request::SyncDaemons {}).await,
        Response::Daemons(crate::logic::api::Daemons {
            sync_daemons: vec![],
            sync_peers: vec![],
            bgp: None,
        })
    );
}

/// A daemon whose `[sync]` key file cannot be read does not start, and says why.
#[tokio::test]
async fn the_daemon_does_not_start_without_its_sync_key() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("run/lvs.sock");
    let file = dir.path().join("lvs.toml");
    std::fs::write(&file, config_text(&socket, VIP, &[RS1])).unwrap();
    let mut config = config::load(&file).unwrap();
    let mut sync = sync_config(dir.path(), &[SyncRole::Master]);
    sync.key_file = dir.path().join("missing.key");
    config.sync = Some(sync);
    let listener = control::bind(&socket).await.unwrap();
    let (netlink, _neighbour_events) = FakeNetlink::new();
    let (health, _health_updates, _reloads) = FakeHealth::new();
    let (_hangup, hangups) = futures::channel::mpsc::unbounded::<()>();
    let parts = Parts {
        dataplane: FakeDataPlane::default(),
        netlink: netlink.clone(),
        link: link(),
        host: FakeHost::default(),
        start_health: move |_: &Config| (health, Vec::new()),
        hangups: hangups.boxed(),
        status_listener: None,
        kept_rates: None,
        sync_transport: MemoryNetwork::default().transport(A),
    };
    let error = tokio::time::timeout(
        Duration::from_secs(5),
        super::super::serve(config, Some(file), parts, listener, async {
            std::future::pending::<Stop>().await
        }),
    )
    .await
    .expect("the daemon gave up")
    .unwrap_err();
    let message = format!("{error:#}");
    assert!(
        message.starts_with("starting the sync daemons: reading the sync key file"),
        "{message}"
    );
    assert_eq!(netlink.addresses(), [] as [Ipv4Addr; 0], "no VIP was added");
    assert!(!socket.exists(), "the socket is removed");
}

/// The rig's service made persistent, clients of a /24 sharing a template.
fn persistent(socket: &Path, servers: &[Ipv4Addr]) -> String {
    config_text(socket, VIP, servers).replace(
        "lb_algo = \"rr\"\n",
        "lb_algo = \"rr\"\npersistence_timeout = 300\npersistence_granularity = \"255.255.255.0\"\n",
    )
}

#[tokio::test]
async fn a_persistence_template_follows_its_connection_to_the_backup() {
    let network = MemoryNetwork::default();
    let mut master = rig_of(|s| persistent(s, &[RS1, RS2]), network.transport(A)).await;
    let mut backup = rig_of(|s| persistent(s, &[RS2, RS1]), network.transport(B)).await;
    master.start_sync(&[SyncRole::Master]).await;
    backup.start_sync(&[SyncRole::Backup]).await;

    let template_key = TemplateMapKey::V4(lvs_common::flow::PersistKey {
        client: [198, 51, 100, 0],
        vip: VIP.octets(),
        vport: 80u16.to_be_bytes(),
        protocol: lvs_common::IPPROTO_TCP,
        _pad: 0,
    });
    let flow = FlowEntry {
        flags: lvs_common::flow::FLOW_PERSISTENT,
        ..master.scheduled(RS2)
    };
    let template = lvs_common::flow::PersistEntry {
        last_seen_ns: flow.last_seen_ns,
        real_server_id: flow.real_server_id,
        generation: flow.generation,
    };
    master
        .director
        .dataplane
        .flows
        .insert(flow_key(40000), flow);
    master
        .director
        .dataplane
        .templates
        .insert(template_key, template);
    // The table is one slice: the pass ends at once, templates included.
    master.handle(Event::Sweep).await;
    assert!(backup.deliver().await >= 1);

    let installed = backup.director.dataplane.templates[&template_key];
    assert_eq!(installed.real_server_id, backup.id(RS2));
    let flow = backup.director.dataplane.flows[&flow_key(40000)];
    assert_eq!(flow.real_server_id, backup.id(RS2));
    assert_eq!(
        flow.flags,
        lvs_common::flow::FLOW_PERSISTENT | lvs_common::flow::seen_bits_of_state(flow.state),
        "persistent, and the packets its state implies"
    );
    assert_eq!(backup.sync_status().entries_installed, 2);
    assert_eq!(master.sync_status().entries_sent, 2);
}

/// A failing socket is counted, and the backup goes on with the next datagram.
#[tokio::test]
async fn a_read_error_is_counted_and_the_backup_goes_on() {
    let network = MemoryNetwork::default();
    let mut backup = rig_on(&[RS1], network.transport(B)).await;
    backup.start_sync(&[SyncRole::Backup]).await;
    network.inject_error();
    let good = encoder(KEY.trim_ascii_end(), SYNC_ID, 1)
        .encode(&[connection(VIP, 1, RS1)])
        .unwrap()
        .remove(0);
    network.inject(A, GROUP, PORT, &good);
    assert_eq!(backup.deliver().await, 1, "the error");
    // The reading task pauses after an error, so that a broken socket cannot spin the loop.
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert_eq!(backup.deliver().await, 1, "the datagram after it");
    let status = backup.sync_status();
    assert_eq!(status.receive_errors, 1);
    assert_eq!(status.entries_installed, 1);
}

/// A reload that leaves a daemon's parameters and key as they were keeps it running as it is
/// (its socket, replay windows and outbox); a changed one is replaced.
#[tokio::test]
async fn an_unchanged_sync_daemon_is_kept_across_a_reload_and_a_changed_one_replaced() {
    let network = MemoryNetwork::default();
    let mut rig = rig_on(&[RS1], network.transport(B)).await;
    rig.start_sync(&[SyncRole::Master, SyncRole::Backup]).await;
    let good = encoder(KEY.trim_ascii_end(), SYNC_ID, 1)
        .encode(&[connection(VIP, 1, RS1)])
        .unwrap()
        .remove(0);
    network.inject(A, GROUP, PORT, &good);
    assert_eq!(rig.deliver().await, 1);

    rig.start_sync(&[SyncRole::Master, SyncRole::Backup]).await;
    // The same backup, with its replay window: the message played back is still refused.
    network.inject(A, GROUP, PORT, &good);
    assert_eq!(rig.deliver().await, 1);
    assert_eq!(counted(&rig.sync_status().rejected, "replayed"), 1);
    assert_eq!(network.listeners(), 1);

    // Another port: a new backup, listening there; the old socket is closed.
    let mut config = sync_config(rig._dir.path(), &[SyncRole::Master, SyncRole::Backup]);
    config.daemons[1].port = crate::base::values::Port::new(8849).unwrap();
    let prepared = rig
        .director
        .sync
        .prepare(Some(&config), &rig.netlink, monotonic_ns())
        .await
        .unwrap();
    rig.director.sync.apply(prepared);
    assert_eq!(rig.sync_status().daemons, config.daemons);
    let moved = tokio::time::timeout(Duration::from_secs(1), async {
        while network.listeners() != 1 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    assert!(moved.is_ok(), "one backup socket, on the new port");
    network.inject(A, GROUP, 8849, &good);
    assert_eq!(rig.deliver().await, 1);
    assert_eq!(
        rig.sync_status().messages_received,
        2,
        "a new backup has a new window: the message is new to it"
    );
}

/// The key is the file's bytes, one trailing newline (or CRLF) left out, as `echo` or an
/// editor leaves it; at least 16 bytes remain, or the key is refused.
#[test]
fn the_key_file_is_its_bytes_without_a_trailing_newline() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("sync.key");
    let read = |bytes: &[u8]| {
        std::fs::write(&file, bytes).unwrap();
        super::super::sync::read_key(&file).map_err(|error| format!("{error:#}"))
    };
    let sixteen = b"0123456789abcdef";
    let key = |bytes: &[u8]| SyncKey::new(bytes.to_vec()).unwrap();
    assert_eq!(read(sixteen), Ok(key(sixteen)));
    assert_eq!(read(b"0123456789abcdef\n"), Ok(key(sixteen)));
    assert_eq!(read(b"0123456789abcdef\r\n"), Ok(key(sixteen)));
    assert_eq!(
        read(b"0123456789abcdef\n\n"),
        Ok(key(b"0123456789abcdef\n")),
        "only one newline is the editor's"
    );
    let binary: Vec<u8> = (0..32).collect();
    assert_eq!(
        read(&binary),
        Ok(key(&binary)),
        "any bytes, as head -c 32 /dev/urandom"
    );
    let short = read(b"0123456789abcde\n").unwrap_err();
    assert_eq!(
        short,
        format!(
            "the sync key file {}: the sync key has 15 bytes; it needs at least 16",
            file.display()
        )
    );
    std::fs::remove_file(&file).unwrap();
    let missing = super::super::sync::read_key(&file).unwrap_err();
    assert!(
        format!("{missing:#}")
            .starts_with(&format!("reading the sync key file {}: ", file.display())),
        "{missing:#}"
    );
}

/// The rig's config with a `[sync]` section running both daemons with `key_file`.
fn with_sync(socket: &Path, servers: &[Ipv4Addr], key_file: &Path) -> String {
    format!(
        "{}\n[sync]\nsyncid = {SYNC_ID}\nkey_file = \"{}\"\n",
        config_text(socket, VIP, servers),
        key_file.display()
    )
}

/// A reload reads `[sync]` from the file: it starts what the section asks for; a key file
/// gone bad since refuses the whole reload, services included, and the daemons run on.
#[tokio::test]
async fn a_reload_starts_the_files_sync_daemons_and_a_bad_key_refuses_it_whole() {
    let network = MemoryNetwork::default();
    let mut rig = rig_on(&[RS1], network.transport(B)).await;
    let key_file = rig._dir.path().join("sync.key");
    std::fs::write(&key_file, KEY).unwrap();
    let socket = rig.director.settings.control_socket.clone();
    std::fs::write(&rig.file, with_sync(&socket, &[RS1], &key_file)).unwrap();

    let answer = rig.request(Request::Reload {}).await;
    assert!(matches!(answer, Response::Done { .. }), "{answer:?}");
    let daemons = rig.sync_status().daemons;
    assert_eq!(
        daemons.iter().map(|d| d.role).collect::<Vec<_>>(),
        [SyncRole::Master, SyncRole::Backup],
        "both roles by default"
    );
    assert!(
        daemons
            .iter()
            .all(|d| d.interface == "eth0" && d.sync_id.get() == 51)
    );
    assert_eq!(network.listeners(), 1);

    // The key is cut short, and a server is added in the same edit: nothing changes.
    std::fs::write(&key_file, b"short\n").unwrap();
    std::fs::write(&rig.file, with_sync(&socket, &[RS1, RS2], &key_file)).unwrap();
    let before = rig.data_plane();
    let Response::Error { message, .. } = rig.request(Request::Reload {}).await else {
        panic!("a bad key file was accepted");
    };
    assert!(message.contains("the sync key has 5 bytes"), "{message}");
    assert!(message.ends_with("nothing changed"), "{message}");
    assert_eq!(rig.data_plane(), before);
    assert_eq!(rig.ring(VIP), [rig.id(RS1)]);
    assert_eq!(rig.sync_status().daemons, daemons);
}

/// `lvs director` with a `[sync]` section runs its daemons from the start, and `lvs status`
/// shows them.
#[tokio::test]
async fn the_daemon_runs_the_sync_daemons_of_its_file() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("run/lvs.sock");
    let file = dir.path().join("lvs.toml");
    let key_file = dir.path().join("sync.key");
    std::fs::write(&key_file, KEY).unwrap();
    std::fs::write(&file, with_sync(&socket, &[RS1], &key_file)).unwrap();
    let config = config::load(&file).unwrap();
    let listener = control::bind(&socket).await.unwrap();
    let (netlink, _neighbour_events) = FakeNetlink::new();
    let (health, _health_updates, _reloads) = FakeHealth::new();
    let (_hangup, hangups) = futures::channel::mpsc::unbounded::<()>();
    let network = MemoryNetwork::default();
    let parts = Parts {
        dataplane: FakeDataPlane::default(),
        netlink: netlink.clone(),
        link: link(),
        host: FakeHost::default(),
        start_health: move |_: &Config| (health, Vec::new()),
        hangups: hangups.boxed(),
        status_listener: None,
        kept_rates: None,
        sync_transport: network.transport(A),
    };
    let (stop, stopped) = oneshot::channel::<Stop>();
    let daemon = tokio::spawn(super::super::serve(
        config,
        Some(file),
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
    assert_eq!(status.sync.daemons.len(), 2);
    assert_eq!(network.listeners(), 1, "the backup listens");
    // Its master beats within a second of silence: a peer on the segment would hear it.
    let heard = tokio::time::timeout(Duration::from_secs(3), async {
        loop {
            if let Ok(Response::Status(status)) = control::call(&socket, &Request::Status {}).await
                && status.sync.messages_sent > 0
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(heard.is_ok(), "the master sent nothing");

    stop.send(Stop::ForGood).unwrap();
    tokio::time::timeout(Duration::from_secs(5), daemon)
        .await
        .expect("the daemon stopped")
        .unwrap()
        .unwrap();
    let closed = tokio::time::timeout(Duration::from_secs(1), async {
        while network.listeners() > 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    assert!(closed.is_ok(), "the backup's socket closes with the daemon");
}
