//! The director's model of what the data plane should hold, and the writes that get it there.
//!
//! The model is pure: it knows the wanted services (from the config file, a reload or the
//! control API), which real servers have a resolved MAC, their connection counts, and a shadow
//! copy of every map entry it wrote. `apply` replaces the wanted services; `sync` compares the
//! wanted state with the shadow and writes only the difference, in an order that never lets
//! the data plane send a frame to a real server that is not ready:
//!
//! 1. services that were deleted are removed first, and their real servers made unusable;
//! 2. real-server entries that became usable (or changed MAC) are written;
//! 3. then the lookup-table slots that changed, and the service entry (whose `ring_len` bounds
//!    the ring: slots are written before a ring grows, and it shrinks before its old servers
//!    go away);
//! 4. then real-server entries that became unusable (no slot names them any more);
//! 5. last, the ids of real servers removed from a service are freed. A freed id given to
//!    another server gets a new generation, so flows of the old one never reach the new one.

mod adopt;

use std::{collections::HashMap, net::IpAddr};

use lvs_common::{
    MAX_REAL_SERVERS, MAX_SERVICES, REAL_SERVER_USABLE, RealServerEntry, ServiceEntry,
    TrafficStats,
    keys::{ServiceMapKey, real_server_address_bytes},
};
use serde::Serialize;

use crate::{
    base::{
        health::{HealthRecord, HealthStatus},
        mac::MacAddr,
        values::Granularity,
    },
    logic::{
        config::{RealServer, Service},
        dataplane::{DataPlane, DataPlaneError},
        schedule::{self, Candidate},
    },
};

/// What the controller knows about a real server's link-layer address.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum Neighbour {
    /// Not looked up yet.
    Unknown,
    /// The kernel's neighbour table has a usable MAC for it.
    Resolved { mac: MacAddr },
    /// The address is on the interface's segment but has no MAC (yet): no ARP reply.
    Unresolved { reason: String },
    /// The address is not on any subnet of the director's interface, so it cannot be reached
    /// by rewriting the Ethernet destination.
    OffLink,
}

impl Neighbour {
    fn mac(&self) -> Option<[u8; 6]> {
        match self {
            Neighbour::Resolved { mac } => Some(mac.0),
            _ => None,
        }
    }
}

/// A real server's connections, as `ipvsadm -L` shows them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ConnectionCounts {
    pub active: u32,
    pub inactive: u32,
    /// Persistence templates naming the server (`ipvsadm -L --persistent-conn`).
    pub persistent: u32,
}

impl ConnectionCounts {
    fn total(self) -> u32 {
        self.active.saturating_add(self.inactive)
    }
}

/// Why `apply` refused a set of services; nothing was changed.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum ModelError {
    #[error("too many services: at most {MAX_SERVICES}")]
    TooManyServices,
    #[error("too many real servers: at most {MAX_REAL_SERVERS} over all services")]
    TooManyRealServers,
}

/// Hands out small integer ids (map slots), each with a generation that changes on reuse.
#[derive(Debug)]
struct IdPool {
    limit: u32,
    next: u32,
    free: Vec<u32>,
    generations: HashMap<u32, u32>,
}

impl IdPool {
    fn new(limit: u32) -> Self {
        Self {
            limit,
            next: 0,
            free: Vec::new(),
            generations: HashMap::new(),
        }
    }

    fn available(&self) -> usize {
        (self.limit - self.next) as usize + self.free.len()
    }

    /// The lowest free id and its new generation (never 0, which a zeroed map entry holds).
    fn allocate(&mut self) -> (u32, u32) {
        let id = match self.free.iter().enumerate().min_by_key(|(_, id)| **id) {
            Some((at, _)) => self.free.swap_remove(at),
            None => {
                self.next += 1;
                self.next - 1
            }
        };
        let generation = self.generations.entry(id).or_insert(0);
        *generation = generation.wrapping_add(1).max(1);
        (id, *generation)
    }

    fn release(&mut self, id: u32) {
        self.free.push(id);
    }

    /// Takes a given id with a given generation, as a previous director left it; false
    /// when the id is beyond the limit or already taken.
    fn claim(&mut self, id: u32, generation: u32) -> bool {
        if id >= self.limit {
            return false;
        }
        if id >= self.next {
            self.free.extend(self.next..id);
            self.next = id + 1;
        } else if let Some(at) = self.free.iter().position(|&free| free == id) {
            self.free.swap_remove(at);
        } else {
            return false;
        }
        self.generations.insert(id, generation);
        true
    }
}

/// One real server of one service, with its data-plane id.
#[derive(Debug)]
struct RealServerState {
    config: RealServer,
    id: u32,
    generation: u32,
    /// The entry last written to the data plane.
    written: Option<RealServerEntry>,
    /// Over its upper connection threshold: takes no new connections until under the lower.
    overloaded: bool,
    /// Its counters still hold a previous owner's numbers.
    stats_stale: bool,
    /// The service's sorry server: it gets flows only when health checking admits it.
    sorry: bool,
    /// What health checking last said; none for a server it does not check.
    health: Option<HealthStatus>,
}

impl RealServerState {
    /// The weight it gets in the service's scheduling, or none when it is out of it: the
    /// configured weight, unless health checking decided otherwise.
    fn admitted_weight(&self) -> Option<u32> {
        match &self.health {
            Some(health) => health.admission.weight(),
            None if self.sorry => None,
            None => Some(self.config.weight),
        }
    }
}

/// A service's sorry server as a real server of weight 1 (`sorry_server` in the config).
fn sorry_server(service: &Service) -> Option<RealServer> {
    service.health.sorry_server.map(|address| RealServer {
        address,
        weight: 1,
        upper_threshold: 0,
        lower_threshold: 0,
    })
}

/// One service with its data-plane index and the table last written for it.
#[derive(Debug)]
struct ServiceState {
    service: Service,
    index: u32,
    /// In the order of `service.real_servers`.
    real_servers: Vec<RealServerState>,
    /// Shadow of the service's table (a ring or a hash table); empty until first written.
    table: Vec<u32>,
    /// What the table was built from, and the `SERVICE_*` flags and ring length it gave: a
    /// sync with the same inputs (most of them, as the sweep syncs every second) skips the
    /// build, which for a Maglev table takes milliseconds.
    planned: Option<(PlanInputs, u32, u32)>,
    /// The service entry last written.
    entry: Option<ServiceEntry>,
    stats_stale: bool,
}

/// Everything a service's table depends on.
#[derive(Debug, PartialEq, Eq)]
struct PlanInputs {
    scheduler: schedule::Scheduler,
    sched_flags: schedule::SchedFlags,
    candidates: Vec<Candidate>,
}

/// A service or real server taken out of the wanted state, whose entries `sync` must clear.
#[derive(Debug)]
struct Retired {
    id: u32,
    written: Option<RealServerEntry>,
}

/// The director's wanted data-plane state and a shadow of what was written.
#[derive(Debug)]
pub struct Model {
    services: Vec<ServiceState>,
    neighbours: HashMap<IpAddr, Neighbour>,
    counts: HashMap<u32, ConnectionCounts>,
    service_indices: IdPool,
    real_server_ids: IdPool,
    retired_services: Vec<(ServiceMapKey, Option<ServiceEntry>, u32)>,
    retired_real_servers: Vec<Retired>,
    /// While adopting a previous director's maps: the indices, ids and entries it left,
    /// which `new_service` and `new_real_server` take instead of fresh ones.
    claims: adopt::Claims,
}

/// How much one `sync` wrote.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct SyncReport {
    pub real_servers_written: usize,
    pub slots_written: usize,
    pub services_installed: usize,
    pub services_removed: usize,
}

/// Health checking records its verdicts through this, without naming the model.
impl HealthRecord<ServiceMapKey> for Model {
    fn set_health(
        &mut self,
        service: ServiceMapKey,
        address: IpAddr,
        status: HealthStatus,
    ) -> bool {
        Model::set_health(self, service, address, status)
    }
}

impl Model {
    /// A model of the given services (in order: indices and ids are handed out in it).
    pub fn new(services: &[Service]) -> Result<Self, ModelError> {
        let mut model = Self {
            services: Vec::new(),
            neighbours: HashMap::new(),
            counts: HashMap::new(),
            service_indices: IdPool::new(MAX_SERVICES),
            real_server_ids: IdPool::new(MAX_REAL_SERVERS),
            retired_services: Vec::new(),
            retired_real_servers: Vec::new(),
            claims: adopt::Claims::default(),
        };
        model.apply(services)?;
        Ok(model)
    }

    /// The wanted services, as they were last applied. The model is the director's only copy
    /// of them: an `lvsadm` batch starts from these (`runtime::apply_changes`) and health
    /// checking is handed these.
    pub fn wanted(&self) -> Vec<Service> {
        self.services.iter().map(|s| s.service.clone()).collect()
    }

    /// Replaces the wanted services. Services and real servers that stay keep their index,
    /// id and table, so their flows are not disturbed; the data plane changes at the next
    /// `sync`. Fails without changing anything when the maps cannot hold the result.
    pub fn apply(&mut self, services: &[Service]) -> Result<(), ModelError> {
        self.check_capacity(services)?;
        let mut old: HashMap<ServiceMapKey, ServiceState> = self
            .services
            .drain(..)
            .map(|s| (s.service.key(), s))
            .collect();
        for service in services {
            let state = match old.remove(&service.key()) {
                Some(existing) => self.update_service(existing, service),
                None => self.new_service(service),
            };
            self.services.push(state);
        }
        for (key, state) in old {
            self.retired_services.push((key, state.entry, state.index));
            self.retired_real_servers
                .extend(state.real_servers.into_iter().map(|rs| Retired {
                    id: rs.id,
                    written: rs.written,
                }));
        }
        Ok(())
    }

    fn check_capacity(&self, services: &[Service]) -> Result<(), ModelError> {
        let known: HashMap<ServiceMapKey, &ServiceState> =
            self.services.iter().map(|s| (s.service.key(), s)).collect();
        let mut new_services = 0;
        let mut new_real_servers = 0;
        for service in services {
            match known.get(&service.key()) {
                Some(state) => {
                    new_real_servers += service
                        .real_servers
                        .iter()
                        .filter(|rs| {
                            !state
                                .real_servers
                                .iter()
                                .any(|known| known.config.address == rs.address)
                        })
                        .count();
                }
                None => {
                    new_services += 1;
                    new_real_servers += service.real_servers.len();
                    new_real_servers += usize::from(service.health.sorry_server.is_some());
                }
            }
        }
        if new_services > self.service_indices.available() {
            return Err(ModelError::TooManyServices);
        }
        if new_real_servers > self.real_server_ids.available() {
            return Err(ModelError::TooManyRealServers);
        }
        Ok(())
    }

    fn new_service(&mut self, service: &Service) -> ServiceState {
        let key = service.key();
        // An adopted service keeps its index, entry and table, and its counters go on.
        let (index, entry, table) = match self.claims.services.remove(&key) {
            Some((entry, table)) => (entry.index, Some(entry), table),
            None => (self.service_indices.allocate().0, None, Vec::new()),
        };
        let mut real_servers: Vec<RealServerState> = service
            .real_servers
            .iter()
            .map(|rs| self.new_real_server(key, rs))
            .collect();
        if let Some(sorry) = sorry_server(service) {
            let mut state = self.new_real_server(key, &sorry);
            state.sorry = true;
            real_servers.push(state);
        }
        ServiceState {
            index,
            real_servers,
            service: service.clone(),
            table,
            planned: None,
            stats_stale: entry.is_none(),
            entry,
        }
    }

    fn new_real_server(&mut self, service: ServiceMapKey, config: &RealServer) -> RealServerState {
        // An adopted real server keeps its id and generation, so its flows stay with it, and
        // the entry the previous director wrote is the shadow `sync` compares with.
        let (id, generation, written) =
            match self.claims.real_servers.remove(&(service, config.address)) {
                Some((id, entry)) => (id, entry.generation, Some(entry)),
                None => {
                    let (id, generation) = self.real_server_ids.allocate();
                    (id, generation, None)
                }
            };
        RealServerState {
            config: config.clone(),
            id,
            generation,
            written,
            overloaded: false,
            stats_stale: written.is_none(),
            sorry: false,
            health: None,
        }
    }

    fn update_service(&mut self, mut state: ServiceState, service: &Service) -> ServiceState {
        let mut old: Vec<RealServerState> = std::mem::take(&mut state.real_servers);
        for rs in &service.real_servers {
            let kept = old
                .iter()
                .position(|known| !known.sorry && known.config.address == rs.address)
                .map(|at| old.swap_remove(at));
            state.real_servers.push(match kept {
                Some(mut known) => {
                    known.config = rs.clone();
                    known
                }
                None => self.new_real_server(service.key(), rs),
            });
        }
        if let Some(sorry) = sorry_server(service) {
            let kept = old
                .iter()
                .position(|known| known.sorry && known.config.address == sorry.address)
                .map(|at| old.swap_remove(at));
            state.real_servers.push(kept.unwrap_or_else(|| {
                let mut fresh = self.new_real_server(service.key(), &sorry);
                fresh.sorry = true;
                fresh
            }));
        }
        self.retired_real_servers
            .extend(old.into_iter().map(|rs| Retired {
                id: rs.id,
                written: rs.written,
            }));
        state.service = service.clone();
        state
    }

    /// Every distinct real-server address, whose MAC the controller must track.
    pub fn real_server_addresses(&self) -> Vec<IpAddr> {
        let mut addresses: Vec<IpAddr> = self
            .services
            .iter()
            .flat_map(|s| s.real_servers.iter().map(|rs| rs.config.address))
            .collect();
        addresses.sort();
        addresses.dedup();
        addresses
    }

    /// The VIPs of all services, each once.
    /// The wanted services, borrowed (`wanted` copies them).
    pub fn wanted_services(&self) -> impl Iterator<Item = &Service> {
        self.services.iter().map(|s| &s.service)
    }

    pub fn virtual_addresses(&self) -> Vec<IpAddr> {
        let mut addresses: Vec<IpAddr> = self.services.iter().map(|s| s.service.address).collect();
        addresses.sort();
        addresses.dedup();
        addresses
    }

    pub fn neighbour(&self, address: impl Into<IpAddr>) -> &Neighbour {
        self.neighbours
            .get(&address.into())
            .unwrap_or(&Neighbour::Unknown)
    }

    /// Records what is known of an address; returns whether anything changed.
    pub fn set_neighbour(&mut self, address: impl Into<IpAddr>, neighbour: Neighbour) -> bool {
        self.neighbours.insert(address.into(), neighbour.clone()) != Some(neighbour)
    }

    /// The generation of every configured real server by id: a flow or template whose id and
    /// generation are not in here has lost its real server.
    pub fn generations(&self) -> HashMap<u32, u32> {
        self.services
            .iter()
            .flat_map(|s| s.real_servers.iter().map(|rs| (rs.id, rs.generation)))
            .collect()
    }

    /// Takes in fresh connection counts by real-server id, and marks servers overloaded or not
    /// by their thresholds, with IPVS's hysteresis: overloaded at `uthreshold` connections,
    /// and back once at or under `lthreshold` (three quarters of `uthreshold` when unset).
    pub fn set_connection_counts(&mut self, counts: HashMap<u32, ConnectionCounts>) {
        for service in &mut self.services {
            for rs in &mut service.real_servers {
                let total = counts.get(&rs.id).copied().unwrap_or_default().total();
                let upper = rs.config.upper_threshold;
                let lower = match rs.config.lower_threshold {
                    0 => upper / 4 * 3,
                    lower => lower,
                };
                rs.overloaded = if upper == 0 {
                    false
                } else if rs.overloaded {
                    total > lower
                } else {
                    total >= upper
                };
            }
        }
        self.counts = counts;
    }

    /// Records what health checking says about a real server (or the sorry server) of a
    /// service; returns whether its admission changed, so that a `sync` is needed.
    pub fn set_health(
        &mut self,
        service: ServiceMapKey,
        address: IpAddr,
        status: HealthStatus,
    ) -> bool {
        let Some(rs) = self
            .services
            .iter_mut()
            .find(|s| s.service.key() == service)
            .and_then(|s| {
                s.real_servers
                    .iter_mut()
                    .find(|rs| rs.config.address == address)
            })
        else {
            return false;
        };
        let before = rs.admitted_weight();
        rs.health = Some(status);
        rs.admitted_weight() != before
    }

    /// Writes whatever differs between the wanted state and what was written before.
    pub fn sync(&mut self, dataplane: &mut dyn DataPlane) -> Result<SyncReport, DataPlaneError> {
        let mut report = SyncReport::default();
        self.remove_retired_services(dataplane, &mut report)?;
        // New services are installed together once the others are synced: one publish of
        // the service table for all of them (see `DataPlane::set_services`), where a director
        // starting with 64 services would otherwise wait for 64 swaps.
        let mut new_services = Vec::new();
        let mut synced = Ok(());
        for (position, service) in self.services.iter_mut().enumerate() {
            match sync_service(
                service,
                &self.neighbours,
                &self.counts,
                dataplane,
                &mut report,
            ) {
                Ok(Some(entry)) => new_services.push((position, entry)),
                Ok(None) => {}
                Err(error) => {
                    synced = Err(error);
                    break;
                }
            }
        }
        // Those synced before a failure are installed all the same: they are ready to
        // forward, and the others are tried again at the next sync.
        if !new_services.is_empty() {
            let writes: Vec<(ServiceMapKey, ServiceEntry)> = new_services
                .iter()
                .map(|&(position, entry)| (self.services[position].service.key(), entry))
                .collect();
            dataplane.set_services(&writes)?;
            report.services_installed += new_services.len();
            for (position, entry) in new_services {
                self.services[position].entry = Some(entry);
            }
        }
        synced?;
        while let Some(retired) = self.retired_real_servers.pop() {
            if let Err(error) = clear_real_server(&retired, dataplane, &mut report) {
                self.retired_real_servers.push(retired);
                return Err(error);
            }
            self.real_server_ids.release(retired.id);
        }
        Ok(report)
    }

    /// Removes the retired services, with one publish of the service table for all (see
    /// `DataPlane::remove_services`), and only then frees their indices: a new service must
    /// not take an index that a published table still gives a removed one.
    fn remove_retired_services(
        &mut self,
        dataplane: &mut dyn DataPlane,
        report: &mut SyncReport,
    ) -> Result<(), DataPlaneError> {
        let installed: Vec<ServiceMapKey> = self
            .retired_services
            .iter()
            .filter(|(_, entry, _)| entry.is_some())
            .map(|(key, _, _)| *key)
            .collect();
        if !installed.is_empty() {
            // On failure every retired service stays retired, to be removed again.
            dataplane.remove_services(&installed)?;
        }
        report.services_removed += installed.len();
        for (_, _, index) in self.retired_services.drain(..) {
            self.service_indices.release(index);
        }
        Ok(())
    }

    /// The services with their real servers, for status output.
    pub fn services(&self) -> impl Iterator<Item = ServiceView<'_>> {
        self.services.iter().map(|s| ServiceView {
            service: &s.service,
            index: s.index,
            real_servers: s
                .real_servers
                .iter()
                .map(|rs| RealServerView {
                    config: &rs.config,
                    address: rs.config.address,
                    weight: rs.config.weight,
                    admitted_weight: rs.admitted_weight(),
                    id: rs.id,
                    neighbour: self.neighbour(rs.config.address),
                    connections: self.counts.get(&rs.id).copied().unwrap_or_default(),
                    overloaded: rs.overloaded,
                    forwarding: rs
                        .written
                        .is_some_and(|e| e.flags & REAL_SERVER_USABLE != 0)
                        && rs.admitted_weight().is_some_and(|w| w > 0)
                        && !rs.overloaded,
                    sorry: rs.sorry,
                    health: rs.health.as_ref(),
                })
                .collect(),
        })
    }

    /// Every real server's counters, read from the data plane together (one read per server
    /// would cost a syscall each, thousands for a large director).
    pub fn real_server_stats(
        &self,
        dataplane: &dyn DataPlane,
    ) -> Result<RealServerStats, DataPlaneError> {
        let ids: Vec<u32> = self
            .services
            .iter()
            .flat_map(|service| service.real_servers.iter().map(|rs| rs.id))
            .collect();
        let stats = dataplane.real_server_stats_of(&ids)?;
        Ok(RealServerStats(ids.into_iter().zip(stats).collect()))
    }
}

/// The counters of every real server of the model, as read at one moment.
pub struct RealServerStats(HashMap<u32, TrafficStats>);

impl RealServerStats {
    /// The counters of real server `id`; zero for an id the model did not have when they were
    /// read (none of its views can show one).
    pub fn of(&self, id: u32) -> TrafficStats {
        self.0.get(&id).copied().unwrap_or_default()
    }
}

/// Brings one service's entries, table and real servers in line with what is wanted. A
/// service not installed yet is not written: its entry is returned, for the caller to
/// install with the other new ones.
fn sync_service(
    service: &mut ServiceState,
    neighbours: &HashMap<IpAddr, Neighbour>,
    counts: &HashMap<u32, ConnectionCounts>,
    dataplane: &mut dyn DataPlane,
    report: &mut SyncReport,
) -> Result<Option<ServiceEntry>, DataPlaneError> {
    if service.stats_stale {
        dataplane.zero_service_stats(service.index)?;
        service.stats_stale = false;
    }
    let wanted: Vec<RealServerEntry> = service
        .real_servers
        .iter()
        .map(|rs| wanted_entry(rs, neighbours.get(&rs.config.address)))
        .collect();

    for (rs, entry) in service.real_servers.iter_mut().zip(&wanted) {
        if entry.flags & REAL_SERVER_USABLE != 0 && rs.written != Some(*entry) {
            if rs.stats_stale {
                dataplane.zero_real_server_stats(rs.id)?;
                rs.stats_stale = false;
            }
            dataplane.set_real_server(rs.id, *entry)?;
            rs.written = Some(*entry);
            report.real_servers_written += 1;
        }
    }

    let scheduler = service.service.scheduler;
    // Only the connection-count schedulers look at counts; leaving them out for the others
    // keeps their inputs unchanged from one sweep to the next.
    let follows_connections = scheduler.follows_connections();
    let candidates: Vec<Candidate> = service
        .real_servers
        .iter()
        .zip(&wanted)
        .filter(|(rs, entry)| entry.flags & REAL_SERVER_USABLE != 0 && !rs.overloaded)
        .filter_map(|(rs, _)| Some((rs, rs.admitted_weight()?)))
        .map(|(rs, weight)| {
            let connections = counts
                .get(&rs.id)
                .copied()
                .filter(|_| follows_connections)
                .unwrap_or_default();
            Candidate {
                id: rs.id,
                identity: identity(rs.config.address, service.service.port),
                weight,
                active: connections.active,
                inactive: connections.inactive,
            }
        })
        .collect();
    let inputs = PlanInputs {
        scheduler,
        sched_flags: service.service.sched_flags,
        candidates,
    };
    let mut changed = Vec::new();
    let (flags, ring_len) = match &service.planned {
        Some((known, flags, ring_len)) if *known == inputs => (*flags, *ring_len),
        _ => {
            let plan = schedule::plan(inputs.scheduler, inputs.sched_flags, &inputs.candidates);
            changed = changed_slots(&service.table, &plan.table);
            if !changed.is_empty() {
                dataplane.set_lookup_slots(service.index, &changed)?;
                report.slots_written += changed.len();
            }
            service.table = plan.table;
            service.planned = Some((inputs, plan.flags, plan.ring_len));
            (plan.flags, plan.ring_len)
        }
    };
    let entry = ServiceEntry {
        index: service.index,
        flags,
        ring_len,
        persist_timeout_s: service.service.persistence.map_or(0, |p| p.timeout),
        persist_mask: service
            .service
            .persistence
            .map_or(Granularity::host(service.service.address), |p| p.netmask)
            .mask_bytes(),
    };
    if ring_len > 0 && (!changed.is_empty() || service.entry != Some(entry)) {
        dataplane.reset_cursors(service.index, ring_len)?;
    }
    // A changed service is written in its turn: after its new lookup slots, before its
    // servers that stop forwarding are marked so (below), as its frames need. A new one
    // forwards nothing yet, so its servers can be written before it.
    let install = match service.entry {
        None => Some(entry),
        Some(written) if written != entry => {
            dataplane.set_service(service.service.key(), entry)?;
            service.entry = Some(entry);
            None
        }
        Some(_) => None,
    };

    for (rs, entry) in service.real_servers.iter_mut().zip(&wanted) {
        if entry.flags & REAL_SERVER_USABLE == 0 && rs.written != Some(*entry) {
            dataplane.set_real_server(rs.id, *entry)?;
            rs.written = Some(*entry);
            report.real_servers_written += 1;
        }
    }
    Ok(install)
}

/// Makes a removed real server's entry unusable, if it was ever written usable.
fn clear_real_server(
    retired: &Retired,
    dataplane: &mut dyn DataPlane,
    report: &mut SyncReport,
) -> Result<(), DataPlaneError> {
    if let Some(entry) = retired.written
        && entry.flags & REAL_SERVER_USABLE != 0
    {
        let cleared = RealServerEntry {
            flags: 0,
            mac: [0; 6],
            ..entry
        };
        dataplane.set_real_server(retired.id, cleared)?;
        report.real_servers_written += 1;
    }
    Ok(())
}

/// A read-only view of a service for status output.
pub struct ServiceView<'a> {
    pub service: &'a Service,
    pub index: u32,
    pub real_servers: Vec<RealServerView<'a>>,
}

/// A read-only view of a real server for status output.
pub struct RealServerView<'a> {
    pub config: &'a RealServer,
    pub address: IpAddr,
    /// The configured weight.
    pub weight: u32,
    /// The weight it has in the service's scheduling, or none when health checking took it
    /// out (or it is a sorry server on standby).
    pub admitted_weight: Option<u32>,
    pub id: u32,
    pub neighbour: &'a Neighbour,
    pub connections: ConnectionCounts,
    pub overloaded: bool,
    /// Whether new flows can be sent to it.
    pub forwarding: bool,
    /// Whether it is the service's sorry server.
    pub sorry: bool,
    /// What health checking last said about it.
    pub health: Option<&'a HealthStatus>,
}

/// The entry a real server should have: usable only with a resolved MAC.
///
/// A server that health checking took out of the service (down, or a sorry server on standby)
/// is unusable too, as keepalived deletes it from IPVS: its existing flows then follow the
/// director's `expire_nodest_conn` rule (scheduled anew, or dropped until they expire). A
/// server kept at weight 0 (`inhibit_on_failure`) stays usable: its flows carry on.
fn wanted_entry(rs: &RealServerState, neighbour: Option<&Neighbour>) -> RealServerEntry {
    let mac = neighbour
        .and_then(Neighbour::mac)
        .filter(|_| rs.admitted_weight().is_some());
    RealServerEntry {
        addr: real_server_address_bytes(rs.config.address),
        mac: mac.unwrap_or([0; 6]),
        flags: if mac.is_some() { REAL_SERVER_USABLE } else { 0 },
        generation: rs.generation,
    }
}

/// What a real server's Maglev permutation is derived from: its address and port, the same on
/// every director.
fn identity(address: IpAddr, port: u16) -> Vec<u8> {
    let mut bytes = match address {
        IpAddr::V4(v4) => v4.octets().to_vec(),
        IpAddr::V6(v6) => v6.octets().to_vec(),
    };
    bytes.extend_from_slice(&port.to_be_bytes());
    bytes
}

/// The `(slot, id)` pairs where `new` differs from `old`. An empty `old` means the table was
/// never written: the BPF array may hold zeros or a previous service's slots, so every slot of
/// `new` is written.
fn changed_slots(old: &[u32], new: &[u32]) -> Vec<(u32, u32)> {
    new.iter()
        .zip(0u32..)
        .filter(|&(id, slot)| old.get(slot as usize) != Some(id))
        .map(|(&id, slot)| (slot, id))
        .collect()
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;
    use lvs_common::{LOOKUP_TABLE_SIZE, NO_REAL_SERVER};

    use crate::logic::{config, dataplane::FakeDataPlane};

    const CONFIG: &str = r#"
[director]
interface = "eth0"

[[virtual_server]]
address = "10.0.0.100"
port = 80
lb_algo = "mh"

[[virtual_server.real_server]]
address = "10.0.0.11"

[[virtual_server.real_server]]
address = "10.0.0.12"

[[virtual_server]]
address = "10.0.0.100"
port = 53
protocol = "UDP"
lb_algo = "mh"

[[virtual_server.real_server]]
address = "10.0.0.12"
weight = 0
"#;

    fn model() -> Model {
        Model::new(&config::parse(CONFIG, "test.toml").unwrap().services).unwrap()
    }

    fn resolved(last: u8) -> Neighbour {
        Neighbour::Resolved {
            mac: MacAddr([2, 0, 0, 0, 0, last]),
        }
    }

    fn ids_in_table(dp: &FakeDataPlane, index: u32) -> std::collections::BTreeSet<u32> {
        (0..LOOKUP_TABLE_SIZE)
            .map(|slot| dp.slot(index, slot))
            .collect()
    }

    #[test]
    fn addresses_are_listed_once() {
        let m = model();
        assert_eq!(
            m.real_server_addresses(),
            vec![Ipv4Addr::new(10, 0, 0, 11), Ipv4Addr::new(10, 0, 0, 12)]
        );
        assert_eq!(m.virtual_addresses(), vec![Ipv4Addr::new(10, 0, 0, 100)]);
    }

    #[test]
    fn unresolved_servers_get_no_slots_and_services_are_still_installed() {
        let mut m = model();
        let mut dp = FakeDataPlane::default();
        m.sync(&mut dp).unwrap();
        assert_eq!(dp.services.len(), 2);
        assert_eq!(
            ids_in_table(&dp, 0),
            [NO_REAL_SERVER].into_iter().collect(),
            "nothing is resolved, so every slot is empty"
        );
        assert!(
            dp.real_servers
                .values()
                .all(|e| e.flags & REAL_SERVER_USABLE == 0)
        );
    }

    #[test]
    fn resolved_servers_share_the_table_and_weight_zero_gets_none() {
        let mut m = model();
        let mut dp = FakeDataPlane::default();
        m.set_neighbour(Ipv4Addr::new(10, 0, 0, 11), resolved(11));
        m.set_neighbour(Ipv4Addr::new(10, 0, 0, 12), resolved(12));
        m.sync(&mut dp).unwrap();
        assert_eq!(ids_in_table(&dp, 0), [0, 1].into_iter().collect());
        assert_eq!(dp.real_servers[&0].mac, [2, 0, 0, 0, 0, 11]);
        assert_eq!(dp.real_servers[&0].flags, REAL_SERVER_USABLE);
        // The UDP service's only server has weight 0: quiesced, no slots.
        assert_eq!(ids_in_table(&dp, 1), [NO_REAL_SERVER].into_iter().collect());
    }

    #[test]
    fn new_and_retired_services_are_written_in_one_batch_each() {
        let mut m = model();
        let mut dp = FakeDataPlane::default();
        let report = m.sync(&mut dp).unwrap();
        assert_eq!(report.services_installed, 2);
        assert_eq!(dp.service_writes, [2], "both services in one write");

        // The UDP service goes, two TCP services come.
        let udp_at = CONFIG
            .find("[[virtual_server]]\naddress = \"10.0.0.100\"\nport = 53")
            .unwrap();
        let mut text = CONFIG[..udp_at].to_owned();
        for port in [443, 8080] {
            text += &format!(
                "[[virtual_server]]\naddress = \"10.0.0.100\"\nport = {port}\n\
                 [[virtual_server.real_server]]\naddress = \"10.0.0.11\"\n"
            );
        }
        m.apply(&config::parse(&text, "test.toml").unwrap().services)
            .unwrap();
        let report = m.sync(&mut dp).unwrap();
        assert_eq!((report.services_removed, report.services_installed), (1, 2));
        assert_eq!(dp.service_writes, [2, 1, 2]);
        assert_eq!(dp.services.len(), 3);
        let indices: std::collections::BTreeSet<u32> =
            dp.services.values().map(|entry| entry.index).collect();
        assert_eq!(indices.len(), 3, "each service its own index");
        assert_eq!(m.sync(&mut dp).unwrap(), SyncReport::default());
        assert_eq!(dp.service_writes.len(), 3, "nothing written again");
    }

    #[test]
    fn a_second_sync_without_changes_writes_nothing() {
        let mut m = model();
        let mut dp = FakeDataPlane::default();
        m.set_neighbour(Ipv4Addr::new(10, 0, 0, 11), resolved(11));
        m.sync(&mut dp).unwrap();
        assert_eq!(m.sync(&mut dp).unwrap(), SyncReport::default());
    }

    #[test]
    fn losing_a_neighbour_moves_only_its_slots() {
        let mut m = model();
        let mut dp = FakeDataPlane::default();
        m.set_neighbour(Ipv4Addr::new(10, 0, 0, 11), resolved(11));
        m.set_neighbour(Ipv4Addr::new(10, 0, 0, 12), resolved(12));
        m.sync(&mut dp).unwrap();
        let owned_by_11 = (0..LOOKUP_TABLE_SIZE)
            .filter(|&s| dp.slot(0, s) == 0)
            .count();

        let changed = m.set_neighbour(
            Ipv4Addr::new(10, 0, 0, 11),
            Neighbour::Unresolved {
                reason: "FAILED".into(),
            },
        );
        assert!(changed);
        let report = m.sync(&mut dp).unwrap();
        assert_eq!(report.slots_written, owned_by_11);
        assert_eq!(ids_in_table(&dp, 0), [1].into_iter().collect());
        assert_eq!(dp.real_servers[&0].flags, 0);
    }

    #[test]
    fn a_mac_change_rewrites_the_entry_but_no_slot() {
        let mut m = model();
        let mut dp = FakeDataPlane::default();
        m.set_neighbour(Ipv4Addr::new(10, 0, 0, 11), resolved(11));
        m.sync(&mut dp).unwrap();
        m.set_neighbour(Ipv4Addr::new(10, 0, 0, 11), resolved(99));
        let report = m.sync(&mut dp).unwrap();
        assert_eq!(report.real_servers_written, 1);
        assert_eq!(report.slots_written, 0);
        assert_eq!(dp.real_servers[&0].mac, [2, 0, 0, 0, 0, 99]);
    }

    #[test]
    fn status_views_say_which_servers_forward() {
        let mut m = model();
        let mut dp = FakeDataPlane::default();
        m.set_neighbour(Ipv4Addr::new(10, 0, 0, 12), resolved(12));
        m.set_neighbour(Ipv4Addr::new(10, 0, 0, 11), Neighbour::OffLink);
        m.sync(&mut dp).unwrap();
        let views: Vec<_> = m.services().collect();
        let web = &views[0].real_servers;
        assert!(!web[0].forwarding);
        assert_eq!(web[0].neighbour, &Neighbour::OffLink);
        assert!(web[1].forwarding);
        assert!(
            !views[1].real_servers[0].forwarding,
            "weight 0 does not forward"
        );
    }

    #[test]
    fn mac_addresses_print_like_ip_link() {
        assert_eq!(
            MacAddr([0x02, 0xab, 0, 1, 0x10, 0xff]).to_string(),
            "02:ab:00:01:10:ff"
        );
    }

    #[test]
    fn health_removes_inhibits_and_brings_in_the_sorry_server() {
        use crate::base::health::{Admission, HealthState};
        let text = CONFIG.replacen(
            "port = 80\n",
            "port = 80\nsorry_server = { address = \"10.0.0.9\" }\n",
            1,
        );
        let mut m = Model::new(&config::parse(&text, "test.toml").unwrap().services).unwrap();
        let mut dp = FakeDataPlane::default();
        for (last, mac) in [(11, 11), (12, 12), (9, 9)] {
            m.set_neighbour(Ipv4Addr::new(10, 0, 0, last), resolved(mac));
        }
        m.sync(&mut dp).unwrap();
        // The sorry server (id 2, after the two real servers) gets nothing by default.
        assert_eq!(ids_in_table(&dp, 0), [0, 1].into_iter().collect());

        let web = ServiceMapKey::new(
            Ipv4Addr::from([10, 0, 0, 100]).into(),
            80u16,
            lvs_common::IPPROTO_TCP,
        );
        let status = |admission| HealthStatus {
            state: HealthState::Down,
            admission,
            checker: None,
            last_result: None,
        };
        let eleven = Ipv4Addr::new(10, 0, 0, 11);
        assert!(m.set_health(web, eleven.into(), status(Admission::Removed)));
        assert!(!m.set_health(web, eleven.into(), status(Admission::Removed)));
        m.sync(&mut dp).unwrap();
        assert_eq!(ids_in_table(&dp, 0), [1].into_iter().collect());
        assert_eq!(
            dp.real_servers[&0].flags, 0,
            "removed: its flows follow expire_nodest_conn"
        );
        assert!(m.set_health(web, eleven.into(), status(Admission::Weight(0))));
        m.sync(&mut dp).unwrap();
        assert_eq!(
            ids_in_table(&dp, 0),
            [1].into_iter().collect(),
            "weight 0 gets no new flows"
        );
        assert_eq!(
            dp.real_servers[&0].flags, REAL_SERVER_USABLE,
            "inhibited: its flows carry on"
        );
        assert!(m.set_health(
            web,
            Ipv4Addr::new(10, 0, 0, 12).into(),
            status(Admission::Removed)
        ));
        assert!(m.set_health(
            web,
            Ipv4Addr::new(10, 0, 0, 9).into(),
            status(Admission::Weight(1))
        ));
        m.sync(&mut dp).unwrap();
        assert_eq!(
            ids_in_table(&dp, 0),
            [2].into_iter().collect(),
            "only the sorry server is left"
        );
        let views: Vec<_> = m.services().collect();
        let sorry = &views[0].real_servers[2];
        assert!(sorry.sorry && sorry.forwarding);
        assert!(!views[0].real_servers[0].forwarding);
        // An unknown service or address changes nothing.
        assert!(!m.set_health(
            web,
            Ipv4Addr::new(10, 0, 0, 77).into(),
            status(Admission::Removed)
        ));
    }
}
