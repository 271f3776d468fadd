//! The real data plane: the embedded XDP object, loaded with aya.

use std::{
    net::IpAddr,
    path::{Path, PathBuf},
};

use aya::{
    Ebpf, EbpfLoader, Pod,
    maps::{
        Array, HashMap, IterableMap as _, Map, MapData, MapError, PerCpuArray, PerCpuValues,
        lpm_trie::{Key as LpmKey, LpmTrie},
    },
    programs::{
        Xdp, XdpMode,
        links::{FdLink, PinnedLink},
        xdp::{XdpLink, XdpLinkId},
    },
    sys::SyscallError,
    util::nr_cpus,
};
use lvs_common::{
    Counter, DEFAULT_FLOW_TABLE_SIZE, DenyAddress, DenyAddress6, DenyEntry, DirectorEntry,
    Ipv4Bytes, Ipv6Bytes, LOOKUP_TABLE_SIZE, MAP_LAYOUT_VERSION, PROGRAM_NAME, RealServerEntry,
    SERVICE_RING, ServiceEntry, ServiceKey, ServiceKey6, TrafficStats,
    flow::{FlowEntry, PersistEntry, PersistKey, PersistKey6, Settings},
    flow_table::bucket_count,
    keys::{FlowMapKey, ServiceMapKey, TemplateMapKey},
    map_names,
    mapped::MappedFlowTable,
    service_table::{SERVICE_TABLE_SLOTS, ServiceSlot},
};

mod batch;
pub mod pins;
pub mod test_run;

pub use pins::Inheritance;

use crate::{
    base::values::SourcePrefix,
    logic::{
        dataplane::{
            AttachMode, Attachment, DataPlane, DataPlaneError, Family, FlowPosition, FlowSlice,
            Previous, ServiceLookup,
        },
        service_table,
    },
};

/// How the object is loaded.
#[derive(Clone, Debug)]
pub struct LoadOptions {
    /// Turns on the program's per-packet debug log (see the eBPF crate).
    pub trace_packets: bool,
    /// Capacity of the flow table.
    pub flow_table_size: u32,
    /// Where the link and the maps are pinned (`pins`), so that the data plane outlives
    /// this process; none for a data plane that lives and dies with it (tests, benchmarks).
    pub pin_dir: Option<PathBuf>,
}

impl Default for LoadOptions {
    fn default() -> Self {
        Self {
            trace_packets: false,
            flow_table_size: DEFAULT_FLOW_TABLE_SIZE,
            pin_dir: None,
        }
    }
}

/// The eBPF object built by `build.rs`, aligned as the ELF parser needs it.
pub fn object_bytes() -> &'static [u8] {
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/lvs"))
}

/// The loaded program and typed handles to its maps.
pub struct BpfDataPlane {
    ebpf: Ebpf,
    services: HashMap<MapData, ServiceKey, ServiceEntry>,
    services6: HashMap<MapData, ServiceKey6, ServiceEntry>,
    /// Each family's map of maps whose slot 0 holds its service table.
    service_table: MapData,
    service_table6: MapData,
    lookup: MapData,
    flows: MapData,
    flows6: MapData,
    /// The flow tables mapped into this process (`MappedFlowTable`).
    flow_table: MappedFlowTable<Ipv4Bytes>,
    flow_table6: MappedFlowTable<Ipv6Bytes>,
    templates: MapData,
    templates6: MapData,
    settings: Array<MapData, Settings>,
    cursors: PerCpuArray<MapData, u32>,
    real_servers: Array<MapData, RealServerEntry>,
    director: Array<MapData, DirectorEntry>,
    counters: PerCpuArray<MapData, u64>,
    service_stats: PerCpuArray<MapData, TrafficStats>,
    real_server_stats: PerCpuArray<MapData, TrafficStats>,
    layout: Array<MapData, u32>,
    deny: LpmTrie<MapData, DenyAddress, DenyEntry>,
    deny6: LpmTrie<MapData, DenyAddress6, DenyEntry>,
    deny_stats: PerCpuArray<MapData, TrafficStats>,
    /// The attachment while the program manages it (no pin directory).
    attached: Option<XdpLinkId>,
    /// The attachment as a link of its own, pinned in `pin_dir`.
    link: Option<FdLink>,
    pin_dir: Option<PathBuf>,
    inheritance: Inheritance,
}

/// Takes a map out of the object and converts it to its typed handle.
fn take<T>(ebpf: &mut Ebpf, name: &'static str) -> Result<T, DataPlaneError>
where
    T: TryFrom<Map, Error = MapError>,
{
    let map = ebpf
        .take_map(name)
        .ok_or(DataPlaneError::MissingMap { name })?;
    T::try_from(map).map_err(|source| DataPlaneError::MapType { name, source })
}

/// Takes a map out of the object as untyped data, for the batch operations.
fn take_data(ebpf: &mut Ebpf, name: &'static str) -> Result<MapData, DataPlaneError> {
    match ebpf.take_map(name) {
        Some(
            Map::Array(data) | Map::HashMap(data) | Map::LruHashMap(data) | Map::ArrayOfMaps(data),
        ) => Ok(data),
        Some(_) => Err(DataPlaneError::MapType {
            name,
            source: MapError::InvalidMapType { map_type: 0 },
        }),
        None => Err(DataPlaneError::MissingMap { name }),
    }
}

impl BpfDataPlane {
    /// Loads the object and the program into the kernel, without attaching it anywhere.
    /// `trace_packets` turns on the program's per-packet debug log (see the eBPF crate).
    pub fn load(trace_packets: bool) -> Result<Self, DataPlaneError> {
        Self::load_with(LoadOptions {
            trace_packets,
            ..LoadOptions::default()
        })
    }

    /// Loads with explicit options. With a pin directory, maps pinned there by a previous
    /// director are adopted when their layout is this build's (`pins::examine`), and unpinned
    /// (fresh ones made) when it is not; `inheritance` says which.
    pub fn load_with(options: LoadOptions) -> Result<Self, DataPlaneError> {
        let trace: u8 = options.trace_packets.into();
        let inheritance = match &options.pin_dir {
            Some(dir) => {
                let found = pins::examine(dir, object_bytes(), options.flow_table_size);
                if matches!(found, Inheritance::StartedClean { .. }) {
                    pins::remove_map_pins(dir)
                        .map_err(pin_error("removing the old map pins", dir))?;
                }
                pins::create_dir(dir).map_err(pin_error("creating the pin directory", dir))?;
                found
            }
            None => Inheritance::Fresh,
        };
        let mut loader = EbpfLoader::new();
        loader
            .override_global("TRACE_PACKETS", &trace, true)
            .map_max_entries(map_names::FLOWS, bucket_count(options.flow_table_size))
            .map_max_entries(map_names::FLOWS6, bucket_count(options.flow_table_size));
        if let Some(dir) = &options.pin_dir {
            for name in pins::PINNED_MAPS {
                loader.map_pin_path(name, dir.join(name));
            }
        }
        let mut ebpf = loader.load(object_bytes()).map_err(DataPlaneError::Load)?;
        let program = xdp_program(&mut ebpf)?;
        program.load().map_err(|source| DataPlaneError::Program {
            action: "loading",
            source,
        })?;
        let flows = take_data(&mut ebpf, map_names::FLOWS)?;
        let flows6 = take_data(&mut ebpf, map_names::FLOWS6)?;
        let settings: Array<MapData, Settings> = take(&mut ebpf, map_names::SETTINGS)?;
        let previous_settings = settings
            .get(&0, 0)
            .map_err(read_error(map_names::SETTINGS))?;
        // Adopted tables keep the seed their connections were placed by; new ones get their
        // own.
        let seed = match inheritance {
            Inheritance::Adopted => previous_settings.flow_hash_seed,
            _ => random_seed(),
        };
        let buckets = bucket_count(options.flow_table_size);
        let flow_table =
            MappedFlowTable::map(flows.fd(), buckets, seed).map_err(map_error(map_names::FLOWS))?;
        let flow_table6 = MappedFlowTable::map(flows6.fd(), buckets, seed)
            .map_err(map_error(map_names::FLOWS6))?;
        Ok(Self {
            services: take(&mut ebpf, map_names::SERVICES)?,
            services6: take(&mut ebpf, map_names::SERVICES6)?,
            service_table: take_data(&mut ebpf, map_names::SERVICE_TABLE)?,
            service_table6: take_data(&mut ebpf, map_names::SERVICE_TABLE6)?,
            lookup: take_data(&mut ebpf, map_names::LOOKUP)?,
            flows,
            flows6,
            flow_table,
            flow_table6,
            templates: take_data(&mut ebpf, map_names::PERSIST)?,
            templates6: take_data(&mut ebpf, map_names::PERSIST6)?,
            settings,
            cursors: take(&mut ebpf, map_names::CURSORS)?,
            real_servers: take(&mut ebpf, map_names::REAL_SERVERS)?,
            director: take(&mut ebpf, map_names::DIRECTOR)?,
            counters: take(&mut ebpf, map_names::COUNTERS)?,
            service_stats: take(&mut ebpf, map_names::SERVICE_STATS)?,
            real_server_stats: take(&mut ebpf, map_names::REAL_SERVER_STATS)?,
            layout: take(&mut ebpf, map_names::LAYOUT)?,
            deny: take(&mut ebpf, map_names::DENY)?,
            deny6: take(&mut ebpf, map_names::DENY6)?,
            deny_stats: take(&mut ebpf, map_names::DENY_STATS)?,
            ebpf,
            attached: None,
            link: None,
            pin_dir: options.pin_dir,
            inheritance,
        })
        .and_then(|mut dataplane| {
            dataplane
                .layout
                .set(0, MAP_LAYOUT_VERSION, 0)
                .map_err(write_error(map_names::LAYOUT))?;
            // The flow tables' seed is pinned with them from the start, so that a director
            // adopting them places connections as this one did, even should this one end
            // before it writes its settings.
            dataplane.set_settings(previous_settings)?;
            // The services a previous director left (none in fresh maps) get their tables
            // before the program is attached anywhere.
            dataplane.publish_service_table(Family::V4)?;
            dataplane.publish_service_table(Family::V6)?;
            Ok(dataplane)
        })
    }

    /// What the data plane found in its pin directory at load.
    pub fn inheritance(&self) -> &Inheritance {
        &self.inheritance
    }

    /// Where the link and maps are pinned, if they are.
    pub fn pin_dir(&self) -> Option<&Path> {
        self.pin_dir.as_deref()
    }

    /// Replaces the program on the link pinned at `path` with this one, keeping the link
    /// (and so its interface and mode) and the maps.
    fn replace_on(&mut self, path: &Path) -> Result<(), DataPlaneError> {
        let pinned = PinnedLink::from_pin(path).map_err(|source| DataPlaneError::Pin {
            action: format!("opening the pinned link {}", path.display()),
            source: std::io::Error::other(source),
        })?;
        let link =
            XdpLink::try_from(FdLink::from(pinned)).map_err(|source| DataPlaneError::Pin {
                action: format!("taking {} as an XDP link", path.display()),
                source: std::io::Error::other(source),
            })?;
        let program = xdp_program(&mut self.ebpf)?;
        let id = program
            .attach_to_link(link)
            .map_err(|source| DataPlaneError::Program {
                action: "replacing on the pinned link",
                source,
            })?;
        let link = program
            .take_link(id)
            .map_err(|source| DataPlaneError::Program {
                action: "taking the link of",
                source,
            })?;
        let link = FdLink::try_from(link).map_err(|source| DataPlaneError::Pin {
            action: "holding the replaced link".to_owned(),
            source: std::io::Error::other(source),
        })?;
        tracing::info!(
            link = %path.display(),
            "program replaced on the pinned link: forwarding went on throughout"
        );
        self.link = Some(link);
        Ok(())
    }

    /// Attaches anew and pins the link at `path`. A link that cannot be pinned (or a kernel
    /// without XDP links) still forwards, but only while this process lives.
    fn attach_pinned(
        &mut self,
        if_index: u32,
        flags: XdpMode,
        path: &Path,
    ) -> Result<(), DataPlaneError> {
        let program = xdp_program(&mut self.ebpf)?;
        let id = program
            .attach_to_if_index(if_index, flags)
            .map_err(|source| DataPlaneError::Program {
                action: "attaching",
                source,
            })?;
        let link = program
            .take_link(id)
            .map_err(|source| DataPlaneError::Program {
                action: "taking the link of",
                source,
            })?;
        let pinned = FdLink::try_from(link)
            .map_err(|error| error.to_string())
            .and_then(|link| link.pin(path).map_err(|error| error.to_string()));
        match pinned {
            Ok(pinned) => {
                tracing::info!(
                    directory = %path.parent().unwrap_or(path).display(),
                    "program link and maps pinned: the data plane outlives this process"
                );
                self.link = Some(FdLink::from(pinned));
            }
            Err(error) => {
                tracing::warn!(
                    %error,
                    path = %path.display(),
                    "pinning the XDP link failed (or this kernel attached through netlink); the \
                     program stops forwarding when this process ends"
                );
                // The link went with the failed pin, which detached the program: attach it
                // again, held by this process only.
                let program = xdp_program(&mut self.ebpf)?;
                let id = program
                    .attach_to_if_index(if_index, flags)
                    .map_err(|source| DataPlaneError::Program {
                        action: "attaching",
                        source,
                    })?;
                self.attached = Some(id);
            }
        }
        Ok(())
    }

    fn read_previous(&self) -> Result<Previous, DataPlaneError> {
        let services: Vec<(ServiceMapKey, ServiceEntry)> = either_family(
            read_services(&self.services, map_names::SERVICES)?,
            read_services(&self.services6, map_names::SERVICES6)?,
        );
        let real_servers: Vec<(u32, RealServerEntry)> = batch::lookup_range(
            self.real_servers.map().fd(),
            0,
            lvs_common::MAX_REAL_SERVERS,
            RealServerEntry {
                addr: [0; 16],
                mac: [0; 6],
                flags: 0,
                generation: 0,
            },
        )
        .map_err(batch_error(map_names::REAL_SERVERS))?
        .into_iter()
        .zip(0u32..)
        .filter(|(entry, _): &(RealServerEntry, u32)| entry.generation != 0)
        .map(|(entry, id)| (id, entry))
        .collect();
        let mut tables = std::collections::HashMap::new();
        for (_, entry) in &services {
            let len = if entry.flags & SERVICE_RING != 0 {
                entry.ring_len
            } else {
                LOOKUP_TABLE_SIZE
            };
            let table =
                batch::lookup_range(self.lookup.fd(), entry.index * LOOKUP_TABLE_SIZE, len, 0u32)
                    .map_err(batch_error(map_names::LOOKUP))?;
            tables.insert(entry.index, table);
        }
        let mut deny = Vec::new();
        for item in self.deny.iter() {
            let (key, entry) = item.map_err(read_error(map_names::DENY))?;
            // A prefix this controller would not write is not adopted: the model writes
            // the file's list and the runtime additions again.
            let address = std::net::Ipv4Addr::from(key.data());
            if let Ok(prefix) = SourcePrefix::new(address, i64::from(key.prefix_len())) {
                deny.push((prefix, entry));
            }
        }
        for item in self.deny6.iter() {
            let (key, entry) = item.map_err(read_error(map_names::DENY6))?;
            let address = std::net::Ipv6Addr::from(key.data());
            if let Ok(prefix) = SourcePrefix::new(address, i64::from(key.prefix_len())) {
                deny.push((prefix, entry));
            }
        }
        Ok(Previous {
            services,
            real_servers,
            tables,
            deny,
        })
    }

    /// The loaded program, for BPF_PROG_TEST_RUN.
    pub fn program(&mut self) -> Result<&mut Xdp, DataPlaneError> {
        xdp_program(&mut self.ebpf)
    }

    /// The object's loader, for the program's aya-log output when tracing is on.
    pub fn ebpf_mut(&mut self) -> &mut Ebpf {
        &mut self.ebpf
    }

    /// Builds the family's service table from its `SERVICES` map and swaps it in whole (see
    /// `lvs_common::service_table`). When the services cannot be placed, the table is taken
    /// out instead, and the program looks services up in `SERVICES`.
    fn publish_service_table(&mut self, family: Family) -> Result<(), DataPlaneError> {
        match family {
            Family::V4 => {
                let services = read_services(&self.services, map_names::SERVICES)?;
                publish(&self.service_table, &services, map_names::SERVICE_TABLE)
            }
            Family::V6 => {
                let services = read_services(&self.services6, map_names::SERVICES6)?;
                publish(&self.service_table6, &services, map_names::SERVICE_TABLE6)
            }
        }
    }

    /// Publishes the table of each family that one of `keys` belongs to, once.
    fn publish_service_tables<'a>(
        &mut self,
        keys: impl Iterator<Item = &'a ServiceMapKey>,
    ) -> Result<(), DataPlaneError> {
        let touched: Vec<Family> = keys.map(family_of).collect();
        Family::ALL
            .into_iter()
            .filter(|family| touched.contains(family))
            .try_for_each(|family| self.publish_service_table(family))
    }

    /// Every map by its name, for pinning in bpffs (`provision::bpffs`). A new map belongs
    /// here too, so that bpftool can find it.
    pub fn maps(&self) -> Vec<(&'static str, &MapData)> {
        vec![
            (map_names::SERVICES, self.services.map()),
            (map_names::SERVICES6, self.services6.map()),
            (map_names::SERVICE_TABLE, &self.service_table),
            (map_names::SERVICE_TABLE6, &self.service_table6),
            (map_names::LOOKUP, &self.lookup),
            (map_names::FLOWS, &self.flows),
            (map_names::FLOWS6, &self.flows6),
            (map_names::PERSIST, &self.templates),
            (map_names::PERSIST6, &self.templates6),
            (map_names::SETTINGS, self.settings.map()),
            (map_names::CURSORS, self.cursors.map()),
            (map_names::REAL_SERVERS, self.real_servers.map()),
            (map_names::DIRECTOR, self.director.map()),
            (map_names::COUNTERS, self.counters.map()),
            (map_names::SERVICE_STATS, self.service_stats.map()),
            (map_names::REAL_SERVER_STATS, self.real_server_stats.map()),
            (map_names::LAYOUT, self.layout.map()),
            (map_names::DENY, self.deny.map()),
            (map_names::DENY6, self.deny6.map()),
            (map_names::DENY_STATS, self.deny_stats.map()),
        ]
    }
}

/// Every service of one family's `SERVICES` map.
fn read_services<A>(
    services: &HashMap<MapData, ServiceKey<A>, ServiceEntry>,
    name: &'static str,
) -> Result<Vec<(ServiceKey<A>, ServiceEntry)>, DataPlaneError>
where
    ServiceKey<A>: Pod,
{
    services
        .iter()
        .map(|item| item.map_err(read_error(name)))
        .collect()
}

/// Fills a new service table with `services` and swaps it into slot 0 of `tables`, or empties
/// that slot when they cannot be placed. The old table is freed by the kernel once no running
/// program can hold it.
fn publish<A>(
    tables: &MapData,
    services: &[(ServiceKey<A>, ServiceEntry)],
    name: &'static str,
) -> Result<(), DataPlaneError>
where
    A: lvs_common::Address + Copy + Ord + Pod,
    ServiceSlot<A>: Pod,
{
    let placed = match service_table::place(services) {
        Ok(placed) => placed,
        Err(crowded) => {
            tracing::warn!(
                %crowded,
                services = services.len(),
                "services looked up in their hash map instead of the service table"
            );
            return batch::clear_inner_map(tables.fd(), 0).map_err(batch_error(name));
        }
    };
    let swapped = Array::<MapData, ServiceSlot<A>>::create(SERVICE_TABLE_SLOTS, 0)
        .map_err(write_error(name))
        .and_then(|table| {
            let (slots, values): (Vec<u32>, Vec<ServiceSlot<A>>) = placed.into_iter().unzip();
            if !slots.is_empty() {
                batch::update(table.map().fd(), &slots, &values).map_err(batch_error(name))?;
            }
            batch::set_inner_map(tables.fd(), 0, table.map().fd()).map_err(batch_error(name))
        });
    if swapped.is_err() {
        // The table in place no longer matches `SERVICES`: take it out, so that frames find
        // their services in `SERVICES` until a later change publishes a table again.
        let _ = batch::clear_inner_map(tables.fd(), 0);
    }
    swapped
}

/// One family's keys and values, as a batch operation on its map takes them.
struct Batch<K, V> {
    keys: Vec<K>,
    values: Vec<V>,
}

impl<K, V> Default for Batch<K, V> {
    fn default() -> Self {
        Batch {
            keys: Vec::new(),
            values: Vec::new(),
        }
    }
}

/// Splits family-wide entries into the IPv4 map's batch and the IPv6 map's (`Ok` is IPv4).
fn by_family<W, K4, K6, V>(
    entries: impl Iterator<Item = (W, V)>,
    split: impl Fn(W) -> Result<K4, K6>,
) -> (Batch<K4, V>, Batch<K6, V>) {
    let (mut v4, mut v6) = (Batch::default(), Batch::default());
    for (key, value) in entries {
        match split(key) {
            Ok(key) => {
                v4.keys.push(key);
                v4.values.push(value);
            }
            Err(key) => {
                v6.keys.push(key);
                v6.values.push(value);
            }
        }
    }
    (v4, v6)
}

/// Both families' entries as family-wide ones, IPv4's first.
fn either_family<K4: Into<W>, K6: Into<W>, W, V>(
    v4: Vec<(K4, V)>,
    v6: Vec<(K6, V)>,
) -> Vec<(W, V)> {
    let v4 = v4.into_iter().map(|(key, value)| (key.into(), value));
    v4.chain(v6.into_iter().map(|(key, value)| (key.into(), value)))
        .collect()
}

/// A removal that found no entry (ENOENT) as a removal done.
fn already_gone_is_removed(removal: Result<(), MapError>) -> Result<(), MapError> {
    match removal {
        Err(MapError::SyscallError(SyscallError { io_error, .. }))
            if io_error.raw_os_error() == Some(libc::ENOENT) =>
        {
            Ok(())
        }
        other => other,
    }
}

fn family_of(key: &ServiceMapKey) -> Family {
    match key {
        ServiceMapKey::V4(_) => Family::V4,
        ServiceMapKey::V6(_) => Family::V6,
    }
}

fn xdp_program(ebpf: &mut Ebpf) -> Result<&mut Xdp, DataPlaneError> {
    let name = PROGRAM_NAME;
    let program = ebpf
        .program_mut(name)
        .ok_or(DataPlaneError::MissingProgram { name: "lvs" })?;
    program
        .try_into()
        .map_err(|source| DataPlaneError::Program {
            action: "finding",
            source,
        })
}

fn write_error(name: &'static str) -> impl FnOnce(MapError) -> DataPlaneError {
    move |source| DataPlaneError::Write { name, source }
}

fn read_error(name: &'static str) -> impl FnOnce(MapError) -> DataPlaneError {
    move |source| DataPlaneError::Read { name, source }
}

fn pin_error(action: &'static str, dir: &Path) -> impl FnOnce(std::io::Error) -> DataPlaneError {
    let action = format!("{action} {}", dir.display());
    move |source| DataPlaneError::Pin { action, source }
}

fn batch_error(name: &'static str) -> impl FnOnce(std::io::Error) -> DataPlaneError {
    move |source| DataPlaneError::Batch { name, source }
}

fn map_error(name: &'static str) -> impl FnOnce(std::io::Error) -> DataPlaneError {
    move |source| DataPlaneError::Mapping { name, source }
}

/// A seed for new flow tables, from the kernel's random source.
fn random_seed() -> u64 {
    let mut seed = [0u8; 8];
    // SAFETY: writes at most `seed.len()` bytes into `seed`.
    let read = unsafe { libc::getrandom(seed.as_mut_ptr().cast(), seed.len(), 0) };
    if read != seed.len() as isize {
        // Without the random source (it never fails for 8 bytes once the kernel's pool is
        // ready), the clock still makes the seed differ between tables.
        return crate::logic::conntrack::monotonic_ns().rotate_left(29) ^ 0x5bd1_e995;
    }
    u64::from_ne_bytes(seed)
}

/// A deny-list prefix's key in its family's trie: its length, and its address as on the
/// wire.
enum DenyKey {
    V4(LpmKey<DenyAddress>),
    V6(LpmKey<DenyAddress6>),
}

fn deny_key(prefix: SourcePrefix) -> DenyKey {
    let length = u32::from(prefix.length());
    match prefix.address() {
        IpAddr::V4(address) => DenyKey::V4(LpmKey::new(length, address.octets())),
        IpAddr::V6(address) => DenyKey::V6(LpmKey::new(length, address.octets())),
    }
}

fn sum_stats(values: &[TrafficStats]) -> TrafficStats {
    values
        .iter()
        .fold(TrafficStats::default(), |acc, cpu| TrafficStats {
            connections: acc.connections + cpu.connections,
            packets: acc.packets + cpu.packets,
            bytes: acc.bytes + cpu.bytes,
        })
}

/// One value per possible CPU, each computed from the CPU's number.
fn per_cpu<T: Pod>(value: impl Fn(u32) -> T) -> Result<PerCpuValues<T>, DataPlaneError> {
    let cpus = nr_cpus().map_err(|(_, source)| DataPlaneError::Batch {
        name: "possible CPUs",
        source,
    })?;
    PerCpuValues::try_from((0..cpus as u32).map(value).collect::<Vec<T>>()).map_err(|source| {
        DataPlaneError::Batch {
            name: "possible CPUs",
            source,
        }
    })
}

/// The number of possible CPUs, which per-CPU maps have a slot for.
pub fn possible_cpus() -> u32 {
    nr_cpus().map_or(1, |n| n as u32)
}

impl DataPlane for BpfDataPlane {
    fn attach(&mut self, if_index: u32, mode: AttachMode) -> Result<Attachment, DataPlaneError> {
        let flags = match mode {
            AttachMode::Native => XdpMode::Driver,
            AttachMode::Generic => XdpMode::Skb,
        };
        if let Some(dir) = self.pin_dir.clone() {
            let path = dir.join(pins::LINK_PIN);
            if path.exists() {
                match pins::link_interface(&path) {
                    Ok(attached) if attached == if_index => {
                        self.replace_on(&path)?;
                        return Ok(Attachment::Replaced);
                    }
                    // A link that outlived its interface (re-created since) forwards nothing:
                    // it goes, and the program is attached anew, keeping the maps.
                    Ok(attached) => {
                        tracing::warn!(
                            link = %path.display(),
                            attached,
                            if_index,
                            "the pinned link is not attached to this interface (0: its interface \
                             is gone); attaching anew"
                        );
                        std::fs::remove_file(&path)
                            .map_err(pin_error("removing the stale link pin", &path))?;
                    }
                    Err(source) => {
                        return Err(DataPlaneError::Pin {
                            action: format!("examining the pinned link {}", path.display()),
                            source,
                        });
                    }
                }
            }
            self.attach_pinned(if_index, flags, &path)?;
            return Ok(Attachment::New(mode));
        }
        let program = xdp_program(&mut self.ebpf)?;
        let link = program
            .attach_to_if_index(if_index, flags)
            .map_err(|source| DataPlaneError::Program {
                action: "attaching",
                source,
            })?;
        self.attached = Some(link);
        Ok(Attachment::New(mode))
    }

    fn leave(&mut self) -> Result<(), DataPlaneError> {
        match (&self.link, &self.pin_dir) {
            (Some(_), Some(_)) => Ok(()),
            _ => Err(DataPlaneError::NotPinned),
        }
    }

    fn previous(&self) -> Result<Option<Previous>, DataPlaneError> {
        match self.inheritance {
            Inheritance::Adopted => self.read_previous().map(Some),
            _ => Ok(None),
        }
    }

    fn detach(&mut self) -> Result<(), DataPlaneError> {
        // Removing the pins and closing the link's last descriptor detaches the program; the
        // maps go with this process.
        if let Some(dir) = &self.pin_dir {
            let root = dir
                .ancestors()
                .find(|a| a.file_name().is_some_and(|n| n == "lvs"))
                .and_then(Path::parent)
                .unwrap_or(dir);
            for problem in pins::remove_all(dir, root) {
                tracing::warn!("{problem}");
            }
        }
        self.link = None;
        if let Some(link) = self.attached.take() {
            xdp_program(&mut self.ebpf)?
                .detach(link)
                .map_err(|source| DataPlaneError::Program {
                    action: "detaching",
                    source,
                })?;
        }
        Ok(())
    }

    fn set_director(&mut self, mac: [u8; 6]) -> Result<(), DataPlaneError> {
        let entry = DirectorEntry { mac, _pad: [0; 2] };
        self.director
            .set(0, entry, 0)
            .map_err(write_error(map_names::DIRECTOR))
    }

    fn set_real_server(&mut self, id: u32, entry: RealServerEntry) -> Result<(), DataPlaneError> {
        self.real_servers
            .set(id, entry, 0)
            .map_err(write_error(map_names::REAL_SERVERS))
    }

    fn set_settings(&mut self, settings: Settings) -> Result<(), DataPlaneError> {
        // The flow tables' shape is this data plane's own, whatever the caller wrote.
        let settings = Settings {
            flow_table_mask: self.flow_table.table().buckets() - 1,
            flow_hash_seed: self.flow_table.table().seed(),
            ..settings
        };
        self.settings
            .set(0, settings, 0)
            .map_err(write_error(map_names::SETTINGS))
    }

    fn set_lookup_slots(
        &mut self,
        service_index: u32,
        slots: &[(u32, u32)],
    ) -> Result<(), DataPlaneError> {
        let base = service_index * LOOKUP_TABLE_SIZE;
        let (keys, ids): (Vec<u32>, Vec<u32>) =
            slots.iter().map(|&(slot, id)| (base + slot, id)).unzip();
        batch::update(self.lookup.fd(), &keys, &ids).map_err(batch_error(map_names::LOOKUP))
    }

    fn set_services(
        &mut self,
        services: &[(ServiceMapKey, ServiceEntry)],
    ) -> Result<(), DataPlaneError> {
        // Every family touched is published, even when a write failed part way, so that the
        // table never leaves out a service that its hash map already has.
        let written = services.iter().try_for_each(|&(key, entry)| match key {
            ServiceMapKey::V4(key) => self
                .services
                .insert(key, entry, 0)
                .map_err(write_error(map_names::SERVICES)),
            ServiceMapKey::V6(key) => self
                .services6
                .insert(key, entry, 0)
                .map_err(write_error(map_names::SERVICES6)),
        });
        let published = self.publish_service_tables(services.iter().map(|(key, _)| key));
        written.and(published)
    }

    fn remove_services(&mut self, keys: &[ServiceMapKey]) -> Result<(), DataPlaneError> {
        // A service already gone counts as removed: after a removal failed part way, the
        // caller asks for all of them again.
        let removed = keys.iter().try_for_each(|key| match key {
            ServiceMapKey::V4(key) => already_gone_is_removed(self.services.remove(key))
                .map_err(write_error(map_names::SERVICES)),
            ServiceMapKey::V6(key) => already_gone_is_removed(self.services6.remove(key))
                .map_err(write_error(map_names::SERVICES6)),
        });
        let published = self.publish_service_tables(keys.iter());
        removed.and(published)
    }

    fn reset_cursors(&mut self, service_index: u32, ring_len: u32) -> Result<(), DataPlaneError> {
        // Each CPU walks the whole ring from its own starting point, so CPUs do not all send
        // their first new connection to the same server.
        let cpus = possible_cpus().max(1);
        let len = u64::from(ring_len.max(1));
        let values = per_cpu(|cpu| (u64::from(cpu) * len / u64::from(cpus)) as u32)?;
        self.cursors
            .set(service_index, values, 0)
            .map_err(write_error(map_names::CURSORS))
    }

    fn zero_service_stats(&mut self, index: u32) -> Result<(), DataPlaneError> {
        self.service_stats
            .set(index, per_cpu(|_| TrafficStats::default())?, 0)
            .map_err(write_error(map_names::SERVICE_STATS))
    }

    fn zero_real_server_stats(&mut self, id: u32) -> Result<(), DataPlaneError> {
        self.real_server_stats
            .set(id, per_cpu(|_| TrafficStats::default())?, 0)
            .map_err(write_error(map_names::REAL_SERVER_STATS))
    }

    fn set_deny(&mut self, prefix: SourcePrefix, entry: DenyEntry) -> Result<(), DataPlaneError> {
        match deny_key(prefix) {
            DenyKey::V4(key) => self
                .deny
                .insert(&key, entry, 0)
                .map_err(write_error(map_names::DENY)),
            DenyKey::V6(key) => self
                .deny6
                .insert(&key, entry, 0)
                .map_err(write_error(map_names::DENY6)),
        }
    }

    fn remove_deny(&mut self, prefix: SourcePrefix) -> Result<(), DataPlaneError> {
        match deny_key(prefix) {
            DenyKey::V4(key) => self.deny.remove(&key).map_err(write_error(map_names::DENY)),
            DenyKey::V6(key) => self
                .deny6
                .remove(&key)
                .map_err(write_error(map_names::DENY6)),
        }
    }

    fn deny_stats(&self, index: u32) -> Result<TrafficStats, DataPlaneError> {
        stats_at(&self.deny_stats, map_names::DENY_STATS, index)
    }

    fn zero_deny_stats(&mut self, index: u32) -> Result<(), DataPlaneError> {
        self.deny_stats
            .set(index, per_cpu(|_| TrafficStats::default())?, 0)
            .map_err(write_error(map_names::DENY_STATS))
    }

    fn flows(&self) -> Result<Vec<(FlowMapKey, FlowEntry)>, DataPlaneError> {
        let mut v4 = Vec::new();
        self.flow_table
            .table()
            .read_from(0, usize::MAX, |k, e| v4.push((k, e)));
        let mut v6 = Vec::new();
        self.flow_table6
            .table()
            .read_from(0, usize::MAX, |k, e| v6.push((k, e)));
        Ok(either_family(v4, v6))
    }

    fn flows_slice(
        &self,
        from: Option<FlowPosition>,
        max: usize,
    ) -> Result<FlowSlice, DataPlaneError> {
        // The IPv4 table first, then the IPv6 one; a slice never spans both, so a position
        // is always one table's bucket.
        match from.unwrap_or(FlowPosition::Ipv4(0)) {
            FlowPosition::Ipv4(bucket) => {
                let mut flows = Vec::new();
                let next = self
                    .flow_table
                    .table()
                    .read_from(bucket, max, |k, e| flows.push((k.into(), e)));
                let next = Some(next.map_or(FlowPosition::Ipv6(0), FlowPosition::Ipv4));
                Ok((flows, next))
            }
            FlowPosition::Ipv6(bucket) => {
                let mut flows = Vec::new();
                let next = self
                    .flow_table6
                    .table()
                    .read_from(bucket, max, |k, e| flows.push((k.into(), e)));
                Ok((flows, next.map(FlowPosition::Ipv6)))
            }
        }
    }

    /// A slot written by the data plane since the sweep read it keeps what it holds.
    fn remove_flows(&mut self, keys: &[FlowMapKey]) -> Result<(), DataPlaneError> {
        for key in keys {
            match key {
                FlowMapKey::V4(key) => self.flow_table.table().remove(key),
                FlowMapKey::V6(key) => self.flow_table6.table().remove(key),
            };
        }
        Ok(())
    }

    fn templates(&self) -> Result<Vec<(TemplateMapKey, PersistEntry)>, DataPlaneError> {
        let v4: Vec<(PersistKey, PersistEntry)> =
            batch::lookup_all(self.templates.fd()).map_err(batch_error(map_names::PERSIST))?;
        let v6: Vec<(PersistKey6, PersistEntry)> =
            batch::lookup_all(self.templates6.fd()).map_err(batch_error(map_names::PERSIST6))?;
        Ok(either_family(v4, v6))
    }

    fn remove_templates(&mut self, keys: &[TemplateMapKey]) -> Result<(), DataPlaneError> {
        let (v4, v6) = by_family(keys.iter().map(|key| (*key, ())), |key| match key {
            TemplateMapKey::V4(key) => Ok(key),
            TemplateMapKey::V6(key) => Err(key),
        });
        batch::delete(self.templates.fd(), &v4.keys).map_err(batch_error(map_names::PERSIST))?;
        batch::delete(self.templates6.fd(), &v6.keys).map_err(batch_error(map_names::PERSIST6))
    }

    /// Each connection goes where the data plane would put it, taking the place of an
    /// expired one (by the timeouts the data plane has now) or, with both its buckets full,
    /// of the one least worth keeping. One the data plane is writing at that very moment is
    /// left to it.
    fn insert_flows(&mut self, flows: &[(FlowMapKey, FlowEntry)]) -> Result<(), DataPlaneError> {
        if flows.is_empty() {
            return Ok(());
        }
        let settings = self
            .settings
            .get(&0, 0)
            .map_err(read_error(map_names::SETTINGS))?;
        let now = crate::logic::conntrack::monotonic_ns();
        for (key, entry) in flows {
            match key {
                FlowMapKey::V4(key) => self.flow_table.table().insert(key, entry, now, &settings),
                FlowMapKey::V6(key) => self.flow_table6.table().insert(key, entry, now, &settings),
            };
        }
        Ok(())
    }

    fn insert_templates(
        &mut self,
        templates: &[(TemplateMapKey, PersistEntry)],
    ) -> Result<(), DataPlaneError> {
        let (v4, v6) = by_family(templates.iter().copied(), |key| match key {
            TemplateMapKey::V4(key) => Ok(key),
            TemplateMapKey::V6(key) => Err(key),
        });
        batch::update(self.templates.fd(), &v4.keys, &v4.values)
            .map_err(batch_error(map_names::PERSIST))?;
        batch::update(self.templates6.fd(), &v6.keys, &v6.values)
            .map_err(batch_error(map_names::PERSIST6))
    }

    /// Read from the map of maps itself: a family has a table in it, or the program falls
    /// back on `SERVICES` (`publish` takes the table out when it cannot build one).
    fn service_lookup(&self, family: Family) -> Result<ServiceLookup, DataPlaneError> {
        let (tables, name) = match family {
            Family::V4 => (&self.service_table, map_names::SERVICE_TABLE),
            Family::V6 => (&self.service_table6, map_names::SERVICE_TABLE6),
        };
        let has_table = batch::has_inner_map(tables.fd(), 0).map_err(batch_error(name))?;
        Ok(if has_table {
            ServiceLookup::Table
        } else {
            ServiceLookup::HashMap
        })
    }

    fn counters(&self) -> Result<Vec<(Counter, u64)>, DataPlaneError> {
        Counter::ALL
            .iter()
            .map(|&counter| {
                let values = self
                    .counters
                    .get(&(counter as u32), 0)
                    .map_err(read_error(map_names::COUNTERS))?;
                Ok((counter, values.iter().sum()))
            })
            .collect()
    }

    fn service_stats(&self, index: u32) -> Result<TrafficStats, DataPlaneError> {
        stats_at(&self.service_stats, map_names::SERVICE_STATS, index)
    }

    fn real_server_stats(&self, id: u32) -> Result<TrafficStats, DataPlaneError> {
        stats_at(&self.real_server_stats, map_names::REAL_SERVER_STATS, id)
    }

    fn real_server_stats_of(&self, ids: &[u32]) -> Result<Vec<TrafficStats>, DataPlaneError> {
        stats_of(&self.real_server_stats, map_names::REAL_SERVER_STATS, ids)
    }

    fn deny_stats_of(&self, indices: &[u32]) -> Result<Vec<TrafficStats>, DataPlaneError> {
        stats_of(&self.deny_stats, map_names::DENY_STATS, indices)
    }
}

/// An index read in a batch costs about a quarter of one read with a syscall of its own
/// (0.6 against 2.4 µs with two CPUs): `stats_of` reads the whole range the indices span in
/// one batch when it holds at most this many indices for each one asked, and each index on
/// its own otherwise (a few indices far apart).
const STATS_BATCH_SPAN_PER_INDEX: usize = 4;

/// The stats at `index` of a per-CPU stats array, summed over CPUs, read with a syscall.
fn stats_at(
    map: &PerCpuArray<MapData, TrafficStats>,
    name: &'static str,
    index: u32,
) -> Result<TrafficStats, DataPlaneError> {
    let values = map.get(&index, 0).map_err(read_error(name))?;
    Ok(sum_stats(&values))
}

/// The stats at each of `indices` of a per-CPU stats array, summed over CPUs, in their order.
fn stats_of(
    map: &PerCpuArray<MapData, TrafficStats>,
    name: &'static str,
    indices: &[u32],
) -> Result<Vec<TrafficStats>, DataPlaneError> {
    let (Some(&low), Some(&high)) = (indices.iter().min(), indices.iter().max()) else {
        return Ok(Vec::new());
    };
    let span = (high - low) as usize + 1;
    if span > indices.len() * STATS_BATCH_SPAN_PER_INDEX {
        return indices
            .iter()
            .map(|&index| stats_at(map, name, index))
            .collect();
    }
    let cpus = possible_cpus() as usize;
    let values = batch::lookup_range_per_cpu(
        map.map().fd(),
        low,
        span as u32,
        cpus,
        TrafficStats::default(),
    )
    .map_err(batch_error(name))?;
    indices
        .iter()
        .map(|&index| {
            let at = (index - low) as usize * cpus;
            let per_cpu = values
                .get(at..at + cpus)
                .ok_or_else(|| DataPlaneError::Batch {
                    name,
                    source: std::io::Error::from_raw_os_error(libc::ENOENT),
                })?;
            Ok(sum_stats(per_cpu))
        })
        .collect()
}
