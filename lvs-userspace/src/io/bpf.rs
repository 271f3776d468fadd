//! The real data plane: the embedded XDP object, loaded with aya.

use aya::{
    Ebpf, EbpfLoader,
    maps::{Array, HashMap, IterableMap as _, Map, MapData, PerCpuArray, PerCpuValues},
    programs::{Xdp, XdpMode, xdp::XdpLinkId},
    util::nr_cpus,
};
use lvs_common::{
    Counter, DEFAULT_FLOW_TABLE_SIZE, DirectorEntry, LOOKUP_TABLE_SIZE, PROGRAM_NAME,
    RealServerEntry, ServiceEntry, ServiceKey, TrafficStats,
    flow::{FlowEntry, FlowKey, PersistEntry, PersistKey, Settings},
    map_names,
};

mod batch;
pub mod test_run;

use crate::logic::dataplane::{AttachMode, DataPlane, DataPlaneError, FlowSlice};

/// How the object is loaded.
#[derive(Clone, Copy, Debug)]
pub struct LoadOptions {
    /// Turns on the program's per-packet debug log (see the eBPF crate).
    pub trace_packets: bool,
    /// Capacity of the flow table.
    pub flow_table_size: u32,
}

impl Default for LoadOptions {
    fn default() -> Self {
        Self {
            trace_packets: false,
            flow_table_size: DEFAULT_FLOW_TABLE_SIZE,
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
    lookup: MapData,
    flows: MapData,
    templates: MapData,
    settings: Array<MapData, Settings>,
    cursors: PerCpuArray<MapData, u32>,
    real_servers: Array<MapData, RealServerEntry>,
    director: Array<MapData, DirectorEntry>,
    counters: PerCpuArray<MapData, u64>,
    service_stats: PerCpuArray<MapData, TrafficStats>,
    real_server_stats: PerCpuArray<MapData, TrafficStats>,
    attached: Option<XdpLinkId>,
}

/// Takes a map out of the object and converts it to its typed handle.
fn take<T>(ebpf: &mut Ebpf, name: &'static str) -> Result<T, DataPlaneError>
where
    T: TryFrom<Map, Error = aya::maps::MapError>,
{
    let map = ebpf
        .take_map(name)
        .ok_or(DataPlaneError::MissingMap { name })?;
    T::try_from(map).map_err(|source| DataPlaneError::MapType { name, source })
}

/// Takes a map out of the object as untyped data, for the batch operations.
fn take_data(ebpf: &mut Ebpf, name: &'static str) -> Result<MapData, DataPlaneError> {
    match ebpf.take_map(name) {
        Some(Map::Array(data) | Map::HashMap(data) | Map::LruHashMap(data)) => Ok(data),
        Some(_) => Err(DataPlaneError::MapType {
            name,
            source: aya::maps::MapError::InvalidMapType { map_type: 0 },
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

    /// Loads with explicit options.
    pub fn load_with(options: LoadOptions) -> Result<Self, DataPlaneError> {
        let trace: u8 = options.trace_packets.into();
        let mut ebpf = EbpfLoader::new()
            .override_global("TRACE_PACKETS", &trace, true)
            .map_max_entries(map_names::FLOWS, options.flow_table_size)
            .load(object_bytes())
            .map_err(DataPlaneError::Load)?;
        let program = xdp_program(&mut ebpf)?;
        program.load().map_err(|source| DataPlaneError::Program {
            action: "loading",
            source,
        })?;
        Ok(Self {
            services: take(&mut ebpf, map_names::SERVICES)?,
            lookup: take_data(&mut ebpf, map_names::LOOKUP)?,
            flows: take_data(&mut ebpf, map_names::FLOWS)?,
            templates: take_data(&mut ebpf, map_names::PERSIST)?,
            settings: take(&mut ebpf, map_names::SETTINGS)?,
            cursors: take(&mut ebpf, map_names::CURSORS)?,
            real_servers: take(&mut ebpf, map_names::REAL_SERVERS)?,
            director: take(&mut ebpf, map_names::DIRECTOR)?,
            counters: take(&mut ebpf, map_names::COUNTERS)?,
            service_stats: take(&mut ebpf, map_names::SERVICE_STATS)?,
            real_server_stats: take(&mut ebpf, map_names::REAL_SERVER_STATS)?,
            ebpf,
            attached: None,
        })
    }

    /// Writes connections straight into the flow table: for tests and benchmarks that need a
    /// table in a given state.
    pub fn insert_flows(&mut self, flows: &[(FlowKey, FlowEntry)]) -> Result<(), DataPlaneError> {
        let (keys, values): (Vec<FlowKey>, Vec<FlowEntry>) = flows.iter().copied().unzip();
        batch::update(self.flows.fd(), &keys, &values).map_err(batch_error(map_names::FLOWS))
    }

    /// Writes persistence templates straight into their table, for tests.
    pub fn insert_templates(
        &mut self,
        templates: &[(PersistKey, PersistEntry)],
    ) -> Result<(), DataPlaneError> {
        let (keys, values): (Vec<PersistKey>, Vec<PersistEntry>) =
            templates.iter().copied().unzip();
        batch::update(self.templates.fd(), &keys, &values).map_err(batch_error(map_names::PERSIST))
    }

    /// The loaded program, for BPF_PROG_TEST_RUN.
    pub fn program(&mut self) -> Result<&mut Xdp, DataPlaneError> {
        xdp_program(&mut self.ebpf)
    }

    /// The object's loader, for the program's aya-log output when tracing is on.
    pub fn ebpf_mut(&mut self) -> &mut Ebpf {
        &mut self.ebpf
    }

    /// Every map by its name, for pinning in bpffs (`provision::bpffs`). A new map belongs
    /// here too, so that bpftool can find it.
    pub fn maps(&self) -> Vec<(&'static str, &MapData)> {
        vec![
            (map_names::SERVICES, self.services.map()),
            (map_names::LOOKUP, &self.lookup),
            (map_names::FLOWS, &self.flows),
            (map_names::PERSIST, &self.templates),
            (map_names::SETTINGS, self.settings.map()),
            (map_names::CURSORS, self.cursors.map()),
            (map_names::REAL_SERVERS, self.real_servers.map()),
            (map_names::DIRECTOR, self.director.map()),
            (map_names::COUNTERS, self.counters.map()),
            (map_names::SERVICE_STATS, self.service_stats.map()),
            (map_names::REAL_SERVER_STATS, self.real_server_stats.map()),
        ]
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

fn write_error(name: &'static str) -> impl FnOnce(aya::maps::MapError) -> DataPlaneError {
    move |source| DataPlaneError::Write { name, source }
}

fn read_error(name: &'static str) -> impl FnOnce(aya::maps::MapError) -> DataPlaneError {
    move |source| DataPlaneError::Read { name, source }
}

fn batch_error(name: &'static str) -> impl FnOnce(std::io::Error) -> DataPlaneError {
    move |source| DataPlaneError::Batch { name, source }
}

fn sum_stats(values: &PerCpuValues<TrafficStats>) -> TrafficStats {
    values
        .iter()
        .fold(TrafficStats::default(), |acc, cpu| TrafficStats {
            connections: acc.connections + cpu.connections,
            packets: acc.packets + cpu.packets,
            bytes: acc.bytes + cpu.bytes,
        })
}

/// One value per possible CPU, each computed from the CPU's number.
fn per_cpu<T: aya::Pod>(value: impl Fn(u32) -> T) -> Result<PerCpuValues<T>, DataPlaneError> {
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
    fn attach(&mut self, if_index: u32, mode: AttachMode) -> Result<(), DataPlaneError> {
        let flags = match mode {
            AttachMode::Native => XdpMode::Driver,
            AttachMode::Generic => XdpMode::Skb,
        };
        let program = xdp_program(&mut self.ebpf)?;
        let link = program
            .attach_to_if_index(if_index, flags)
            .map_err(|source| DataPlaneError::Program {
                action: "attaching",
                source,
            })?;
        self.attached = Some(link);
        Ok(())
    }

    fn detach(&mut self) -> Result<(), DataPlaneError> {
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

    fn set_service(&mut self, key: ServiceKey, entry: ServiceEntry) -> Result<(), DataPlaneError> {
        self.services
            .insert(key, entry, 0)
            .map_err(write_error(map_names::SERVICES))
    }

    fn remove_service(&mut self, key: &ServiceKey) -> Result<(), DataPlaneError> {
        self.services
            .remove(key)
            .map_err(write_error(map_names::SERVICES))
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

    fn flows(&self) -> Result<Vec<(FlowKey, FlowEntry)>, DataPlaneError> {
        batch::lookup_all(self.flows.fd()).map_err(batch_error(map_names::FLOWS))
    }

    fn flows_slice(&self, from: Option<u32>, max: usize) -> Result<FlowSlice, DataPlaneError> {
        batch::lookup_slice(self.flows.fd(), from, max).map_err(batch_error(map_names::FLOWS))
    }

    fn remove_flows(&mut self, keys: &[FlowKey]) -> Result<(), DataPlaneError> {
        batch::delete(self.flows.fd(), keys).map_err(batch_error(map_names::FLOWS))
    }

    fn templates(&self) -> Result<Vec<(PersistKey, PersistEntry)>, DataPlaneError> {
        batch::lookup_all(self.templates.fd()).map_err(batch_error(map_names::PERSIST))
    }

    fn remove_templates(&mut self, keys: &[PersistKey]) -> Result<(), DataPlaneError> {
        batch::delete(self.templates.fd(), keys).map_err(batch_error(map_names::PERSIST))
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
        let values = self
            .service_stats
            .get(&index, 0)
            .map_err(read_error(map_names::SERVICE_STATS))?;
        Ok(sum_stats(&values))
    }

    fn real_server_stats(&self, id: u32) -> Result<TrafficStats, DataPlaneError> {
        let values = self
            .real_server_stats
            .get(&id, 0)
            .map_err(read_error(map_names::REAL_SERVER_STATS))?;
        Ok(sum_stats(&values))
    }
}
