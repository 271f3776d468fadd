//! The sync daemons inside the director: at most one master and one backup, started from
//! the config's `[sync]` section, replaced at a reload, started and stopped by `lvsadm
//! --start-daemon/--stop-daemon`.
//!
//! The master rides on the sweep: each slice of the flow table the sweep reads goes through
//! its outbox (`logic::sync::master`), and what is due goes out on its socket; at the end of
//! a pass, the templates. It sends a heartbeat after a second of silence. The backup's socket
//! is read by a task that only forwards datagrams to the loop, tagged with the backup's
//! instance so that a datagram of a backup since stopped is dropped; the loop decodes,
//! places, converts and installs them, and counts everything it refuses. When it hears a
//! master it had not heard for [`PEER_SILENCE_NS`], it asks its own master to send the whole
//! table again, so that a director coming back learns every connection before keepalived
//! moves the VIP back to it.

use std::{
    collections::{BTreeMap, HashMap},
    io,
    net::{Ipv4Addr, SocketAddr, SocketAddrV4},
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use anyhow::{Context as _, Result, bail};
use futures::StreamExt as _;
use lvs_common::{
    flow::{FlowEntry, FlowKey, PersistEntry, PersistKey, Settings},
    keys::{FlowMapKey, TemplateMapKey},
};
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

use super::AbortOnDrop;
use crate::{
    io::{
        netlink::DirectorNetlink,
        sync::{Datagram, SyncInterface, SyncSender, SyncTransport},
    },
    logic::{
        conntrack::{self, Step},
        dataplane::{DataPlane, DataPlaneError},
        model::Model,
        status::{SyncPeer, SyncStatus},
        sync::{
            Encoder, Install, Master, Places, Reason, ReplayWindow, SyncConfig, SyncDaemon,
            SyncKey, SyncRole, Unknown, decode, install,
        },
    },
};

/// A master not heard for this long that speaks again has come back (or is new): it gets
/// the whole table.
pub(super) const PEER_SILENCE_NS: u64 = 3_000_000_000;
/// How long the receiving task waits after a failed read, so that a broken socket cannot
/// spin the loop.
const RECEIVE_ERROR_PAUSE: Duration = Duration::from_millis(100);

/// A datagram for the loop, from the backup of the given instance.
pub(super) type Received = (u64, io::Result<Datagram>);

/// What every sync daemon of the director shares, from `[sync]`: the key (read from
/// `key_file`) and the master's rate.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Shared {
    key_file: PathBuf,
    key: SyncKey,
    max_rate: u32,
}

/// Reads the shared key: the file's bytes, a trailing newline ignored (as `echo` or an
/// editor leaves it), at least [`SyncKey::MIN_LEN`] of them.
pub(super) fn read_key(path: &Path) -> Result<SyncKey> {
    let mut bytes = std::fs::read(path)
        .with_context(|| format!("reading the sync key file {}", path.display()))?;
    if bytes.last() == Some(&b'\n') {
        bytes.pop();
        if bytes.last() == Some(&b'\r') {
            bytes.pop();
        }
    }
    SyncKey::new(bytes).with_context(|| format!("the sync key file {}", path.display()))
}

struct RunningMaster {
    daemon: SyncDaemon,
    max_rate: u32,
    key: SyncKey,
    sender: Box<dyn SyncSender>,
    master: Master,
}

struct RunningBackup {
    daemon: SyncDaemon,
    key: SyncKey,
    instance: u64,
    /// The task reading the socket; ends with this value.
    _reader: AbortOnDrop,
    /// One replay window per master, created for a master's first message that decoded.
    windows: HashMap<Ipv4Addr, ReplayWindow>,
}

/// A daemon ready to run: its socket is open.
enum Opened {
    Master(RunningMaster),
    Backup(RunningBackup),
}

/// What a reload or a start will run: opened before anything changes, so that a bad key
/// file or interface leaves the running daemons as they are.
pub(super) struct Prepared {
    shared: Option<Shared>,
    /// The daemons to start; a role that runs already with the same parameters and key is
    /// kept as it is (its outbox and windows too) and is not in here.
    open: Vec<Opened>,
    /// The roles that stop (or are replaced).
    stop: Vec<SyncRole>,
}

/// The counters behind `status.sync`.
#[derive(Debug, Default)]
struct Counters {
    messages_sent: u64,
    entries_sent: u64,
    entries_deferred: u64,
    send_errors: u64,
    full_resends: u64,
    messages_received: u64,
    entries_received: u64,
    entries_installed: u64,
    rejected: HashMap<Reason, u64>,
    unknown: HashMap<&'static str, u64>,
    receive_errors: u64,
}

/// The director's sync daemons.
pub(super) struct SyncDaemons {
    transport: Arc<dyn SyncTransport>,
    shared: Option<Shared>,
    master: Option<RunningMaster>,
    backup: Option<RunningBackup>,
    counters: Counters,
    /// When each master was last heard (monotonic ns).
    peers: HashMap<Ipv4Addr, u64>,
    /// Where the backups' reading tasks send their datagrams.
    datagrams: mpsc::Sender<Received>,
    next_instance: u64,
}

impl SyncDaemons {
    pub(super) fn new(
        transport: Arc<dyn SyncTransport>,
        datagrams: mpsc::Sender<Received>,
    ) -> Self {
        SyncDaemons {
            transport,
            shared: None,
            master: None,
            backup: None,
            counters: Counters::default(),
            peers: HashMap::new(),
            datagrams,
            next_instance: 0,
        }
    }

    /// The daemons running, master first.
    pub(super) fn running(&self) -> Vec<SyncDaemon> {
        let master = self.master.as_ref().map(|m| m.daemon.clone());
        let backup = self.backup.as_ref().map(|b| b.daemon.clone());
        master.into_iter().chain(backup).collect()
    }

    /// Whether a backup runs: this director installs its peers' connections.
    pub(super) fn has_backup(&self) -> bool {
        self.backup.is_some()
    }

    /// Opens what `config` asks for (reading its key file), without changing what runs.
    pub(super) async fn prepare(
        &mut self,
        config: Option<&SyncConfig>,
        netlink: &impl DirectorNetlink,
        now_ns: u64,
    ) -> Result<Prepared> {
        let Some(config) = config else {
            return Ok(Prepared {
                shared: None,
                open: Vec::new(),
                stop: SyncRole::ALL.to_vec(),
            });
        };
        let shared = Shared {
            key_file: config.key_file.clone(),
            key: read_key(&config.key_file)?,
            max_rate: config.max_rate,
        };
        let mut open = Vec::new();
        let mut stop = Vec::new();
        for role in SyncRole::ALL {
            let wanted = config.daemons.iter().find(|d| d.role == role);
            let same = match (role, wanted) {
                (SyncRole::Master, Some(daemon)) => self.master.as_ref().is_some_and(|m| {
                    m.daemon == *daemon && m.key == shared.key && m.max_rate == shared.max_rate
                }),
                (SyncRole::Backup, Some(daemon)) => self
                    .backup
                    .as_ref()
                    .is_some_and(|b| b.daemon == *daemon && b.key == shared.key),
                (_, None) => false,
            };
            if same {
                continue;
            }
            stop.push(role);
            if let Some(daemon) = wanted {
                open.push(self.open(daemon, &shared, netlink, now_ns).await?);
            }
        }
        Ok(Prepared {
            shared: Some(shared),
            open,
            stop,
        })
    }

    /// Runs what [`prepare`](Self::prepare) opened: the roles it replaces or drops stop.
    pub(super) fn apply(&mut self, prepared: Prepared) {
        self.shared = prepared.shared;
        for role in prepared.stop {
            self.stop(role);
        }
        for opened in prepared.open {
            self.run(opened);
        }
    }

    /// `lvsadm --start-daemon`: reads the key file again, opens the socket and runs the
    /// daemon; a role that runs already is refused, as ipvsadm refuses it.
    pub(super) async fn start(
        &mut self,
        daemon: SyncDaemon,
        config_path: Option<&Path>,
        netlink: &impl DirectorNetlink,
        now_ns: u64,
    ) -> Result<()> {
        let running = match daemon.role {
            SyncRole::Master => self.master.is_some(),
            SyncRole::Backup => self.backup.is_some(),
        };
        if running {
            bail!("Daemon has already run");
        }
        let Some(shared) = &self.shared else {
            let file = config_path.map_or_else(
                || "the daemon's config".to_owned(),
                |path| path.display().to_string(),
            );
            bail!(
                "no [sync] key_file in {file}: connection sync needs the key both directors share"
            );
        };
        let shared = Shared {
            key: read_key(&shared.key_file)?,
            ..shared.clone()
        };
        let opened = self.open(&daemon, &shared, netlink, now_ns).await?;
        self.shared = Some(shared);
        self.run(opened);
        Ok(())
    }

    /// `lvsadm --stop-daemon`.
    pub(super) fn stop_role(&mut self, role: SyncRole) -> Result<()> {
        let running = match role {
            SyncRole::Master => self.master.is_some(),
            SyncRole::Backup => self.backup.is_some(),
        };
        if !running {
            bail!("No daemon is running");
        }
        self.stop(role);
        Ok(())
    }

    fn stop(&mut self, role: SyncRole) {
        let stopped = match role {
            SyncRole::Master => self.master.take().map(|m| m.daemon),
            SyncRole::Backup => self.backup.take().map(|b| b.daemon),
        };
        if let Some(daemon) = stopped {
            info!(role = %daemon.role, interface = %daemon.interface, "sync daemon stopped");
        }
    }

    async fn open(
        &mut self,
        daemon: &SyncDaemon,
        shared: &Shared,
        netlink: &impl DirectorNetlink,
        now_ns: u64,
    ) -> Result<Opened> {
        let link = netlink.link(&daemon.interface).await.with_context(|| {
            format!(
                "looking up the sync {} daemon's interface {}",
                daemon.role, daemon.interface
            )
        })?;
        let Some(&(address, _)) = link.networks.first() else {
            bail!(
                "the sync {} daemon's interface {} has no IPv4 address",
                daemon.role,
                daemon.interface
            );
        };
        let interface = SyncInterface {
            name: daemon.interface.clone(),
            index: link.index,
            address,
        };
        match daemon.role {
            SyncRole::Master => {
                let sender = self.transport.sender(daemon, &interface)?;
                // A restarted master numbers its messages above the ones it sent before.
                let first_sequence = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_micros() as u64);
                let encoder = Encoder::new(
                    daemon.sync_id,
                    shared.key.clone(),
                    daemon.max_len,
                    first_sequence,
                );
                Ok(Opened::Master(RunningMaster {
                    daemon: daemon.clone(),
                    max_rate: shared.max_rate,
                    key: shared.key.clone(),
                    sender,
                    master: Master::new(encoder, daemon.max_len, shared.max_rate, now_ns),
                }))
            }
            SyncRole::Backup => {
                let mut datagrams = self.transport.receiver(daemon, &interface)?;
                let instance = self.next_instance;
                self.next_instance += 1;
                let forward = self.datagrams.clone();
                let reader = tokio::spawn(async move {
                    while let Some(received) = datagrams.next().await {
                        let failed = received.is_err();
                        if forward.send((instance, received)).await.is_err() {
                            return;
                        }
                        if failed {
                            tokio::time::sleep(RECEIVE_ERROR_PAUSE).await;
                        }
                    }
                });
                Ok(Opened::Backup(RunningBackup {
                    daemon: daemon.clone(),
                    key: shared.key.clone(),
                    instance,
                    _reader: AbortOnDrop(reader),
                    windows: HashMap::new(),
                }))
            }
        }
    }

    fn run(&mut self, opened: Opened) {
        let daemon = match opened {
            Opened::Master(master) => {
                // Its outbox starts empty: its first pass sends every connection it forwards.
                let daemon = master.daemon.clone();
                self.master = Some(master);
                daemon
            }
            Opened::Backup(backup) => {
                let daemon = backup.daemon.clone();
                self.backup = Some(backup);
                daemon
            }
        };
        info!(
            role = %daemon.role,
            interface = %daemon.interface,
            sync_id = daemon.sync_id.get(),
            group = %daemon.group.get(),
            port = daemon.port.get(),
            "sync daemon started"
        );
    }

    /// The master's part of a sweep step: the slice's due flows, and at the end of a pass
    /// the templates; then a heartbeat if it has been silent for a second.
    pub(super) fn after_sweep(
        &mut self,
        step: Option<&Step>,
        model: &Model,
        settings: &Settings,
        now_ns: u64,
    ) {
        let Some(running) = &mut self.master else {
            return;
        };
        let counters = &mut self.counters;
        if let Some(step) = step {
            // The sync wire names IPv4 connections only, so far: IPv6 ones are not sent.
            let destinations: HashMap<(u32, u32), SocketAddrV4> = conntrack::destinations(model)
                .into_iter()
                .filter_map(|(at, destination)| match destination {
                    SocketAddr::V4(destination) => Some((at, destination)),
                    SocketAddr::V6(_) => None,
                })
                .collect();
            let flows: Vec<(FlowKey, FlowEntry)> = step
                .flows
                .iter()
                .filter_map(|(key, entry)| match key {
                    FlowMapKey::V4(key) => Some((*key, *entry)),
                    FlowMapKey::V6(_) => None,
                })
                .collect();
            let mut outgoing = vec![
                running
                    .master
                    .flows(&flows, now_ns, settings, &destinations),
            ];
            if let Some(templates) = &step.templates {
                let timeouts = conntrack::TemplateTimeouts::of(model);
                let templates: Vec<(PersistKey, PersistEntry)> = templates
                    .iter()
                    .filter_map(|(key, entry)| match key {
                        TemplateMapKey::V4(key) => Some((*key, *entry)),
                        TemplateMapKey::V6(_) => None,
                    })
                    .collect();
                outgoing.push(
                    running
                        .master
                        .templates(&templates, now_ns, &destinations, |key| {
                            timeouts.get(&TemplateMapKey::V4(*key))
                        }),
                );
                running.master.end_pass();
            }
            for out in outgoing {
                counters.entries_sent += out.entries as u64;
                counters.entries_deferred += out.deferred as u64;
                for message in &out.messages {
                    send(running.sender.as_mut(), message, counters);
                }
            }
        }
        if let Some(beat) = running.master.heartbeat(now_ns) {
            send(running.sender.as_mut(), &beat, counters);
        }
    }

    /// A datagram a backup's socket received: decoded, placed and installed, or counted.
    /// `own` are this director's addresses, whose messages it ignores. Only a data-plane
    /// failure is an error.
    pub(super) fn received(
        &mut self,
        (instance, received): Received,
        model: &Model,
        dataplane: &mut impl DataPlane,
        settings: &Settings,
        own: &[Ipv4Addr],
        now_ns: u64,
    ) -> Result<(), DataPlaneError> {
        let Some(backup) = self.backup.as_mut().filter(|b| b.instance == instance) else {
            // From a backup stopped since: not this one's to take.
            return Ok(());
        };
        let datagram = match received {
            Ok(datagram) => datagram,
            Err(error) => {
                self.counters.receive_errors += 1;
                warn!(%error, "reading the sync backup's socket");
                return Ok(());
            }
        };
        if own.contains(&datagram.source) {
            return Ok(());
        }
        let mut window = backup
            .windows
            .get(&datagram.source)
            .copied()
            .unwrap_or_default();
        let message = match decode(
            &datagram.bytes,
            backup.daemon.sync_id,
            &backup.key,
            &mut window,
        ) {
            Ok(message) => message,
            Err(rejection) => {
                *self
                    .counters
                    .rejected
                    .entry(rejection.reason())
                    .or_default() += 1;
                debug!(source = %datagram.source, %rejection, "sync message dropped");
                return Ok(());
            }
        };
        backup.windows.insert(datagram.source, window);
        self.counters.messages_received += 1;
        self.counters.entries_received += message.entries.len() as u64;
        let heard = self.peers.insert(datagram.source, now_ns);
        let back = heard.is_none_or(|last| now_ns.saturating_sub(last) >= PEER_SILENCE_NS);
        if back {
            info!(peer = %datagram.source, "sync: a master is heard (new, or back after silence)");
            if let Some(master) = &mut self.master {
                master.master.resend_all();
                self.counters.full_resends += 1;
            }
        }
        if message.entries.is_empty() {
            return Ok(());
        }
        let places = Places::of(model);
        let mut flows: Vec<(FlowMapKey, FlowEntry)> = Vec::new();
        let mut templates: Vec<(TemplateMapKey, PersistEntry)> = Vec::new();
        for entry in &message.entries {
            let installed = places
                .place(entry)
                .and_then(|placement| install(entry, &placement, settings, now_ns));
            match installed {
                Ok(Install::Flow(key, flow)) => flows.push((key.into(), flow)),
                Ok(Install::Template(key, template)) => templates.push((key.into(), template)),
                Err(unknown) => {
                    *self.counters.unknown.entry(unknown.name()).or_default() += 1;
                    debug!(source = %datagram.source, %unknown, "sync entry ignored");
                }
            }
        }
        dataplane.insert_flows(&flows)?;
        dataplane.insert_templates(&templates)?;
        self.counters.entries_installed += (flows.len() + templates.len()) as u64;
        if let Some(master) = &mut self.master {
            // What a backup installs came over the wire, which names IPv4 entries only.
            for (key, flow) in &flows {
                if let FlowMapKey::V4(key) = key {
                    master.master.received_flow(*key, flow, now_ns);
                }
            }
            for (key, template) in &templates {
                if let TemplateMapKey::V4(key) = key {
                    master.master.received_template(*key, template, now_ns);
                }
            }
        }
        Ok(())
    }

    /// `status.sync`.
    pub(super) fn status(&self, now_ns: u64) -> SyncStatus {
        let c = &self.counters;
        let mut peers: Vec<SyncPeer> = self
            .peers
            .iter()
            .map(|(address, &last)| SyncPeer {
                address: address.to_string(),
                last_message_seconds_ago: now_ns.saturating_sub(last) as f64 / 1e9,
            })
            .collect();
        peers.sort_by(|a, b| a.address.cmp(&b.address));
        SyncStatus {
            daemons: self.running(),
            messages_sent: c.messages_sent,
            entries_sent: c.entries_sent,
            entries_deferred: c.entries_deferred,
            send_errors: c.send_errors,
            full_resends: c.full_resends,
            messages_received: c.messages_received,
            entries_received: c.entries_received,
            entries_installed: c.entries_installed,
            rejected: Reason::ALL
                .iter()
                .map(|r| (r.name().to_owned(), c.rejected.get(r).copied().unwrap_or(0)))
                .collect::<BTreeMap<_, _>>(),
            unknown: Unknown::NAMES
                .iter()
                .map(|&k| (k.to_owned(), c.unknown.get(k).copied().unwrap_or(0)))
                .collect(),
            receive_errors: c.receive_errors,
            peers,
        }
    }
}

fn send(sender: &mut dyn SyncSender, message: &[u8], counters: &mut Counters) {
    match sender.send(message) {
        Ok(()) => counters.messages_sent += 1,
        Err(error) => {
            counters.send_errors += 1;
            debug!(%error, "a sync message was not sent");
        }
    }
}
