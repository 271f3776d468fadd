//! The real data plane: the embedded XDP object, loaded with aya.

use aya::{
    Ebpf, EbpfLoader,
    maps::{Array, HashMap, IterableMap as _, MapData, PerCpuArray},
    programs::{Xdp, XdpMode, xdp::XdpLinkId},
};
use lvs_common::{
    Counter, DirectorEntry, LOOKUP_TABLE_SIZE, PROGRAM_NAME, RealServerEntry, ServiceEntry,
    ServiceKey, TrafficStats, map_names,
};

use super::{DataPlane, DataPlaneError};

/// The eBPF object built by `build.rs`, aligned as the ELF parser needs it.
pub fn object_bytes() -> &'static [u8] {
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/lvs"))
}

/// The loaded program and typed handles to its maps.
pub struct BpfDataPlane {
    ebpf: Ebpf,
    services: HashMap<MapData, ServiceKey, ServiceEntry>,
    lookup: Array<MapData, u32>,
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
    T: TryFrom<aya::maps::Map, Error = aya::maps::MapError>,
{
    let map = ebpf
        .take_map(name)
        .ok_or(DataPlaneError::MissingMap { name })?;
    T::try_from(map).map_err(|source| DataPlaneError::MapType { name, source })
}

impl BpfDataPlane {
    /// Loads the object and the program into the kernel, without attaching it anywhere.
    /// `trace_packets` turns on the program's per-packet debug log (see the eBPF crate).
    pub fn load(trace_packets: bool) -> Result<Self, DataPlaneError> {
        let trace: u8 = trace_packets.into();
        let mut ebpf = EbpfLoader::new()
            .override_global("TRACE_PACKETS", &trace, true)
            .load(object_bytes())
            .map_err(DataPlaneError::Load)?;
        let program = xdp_program(&mut ebpf)?;
        program.load().map_err(|source| DataPlaneError::Program {
            action: "loading",
            source,
        })?;
        Ok(Self {
            services: take(&mut ebpf, map_names::SERVICES)?,
            lookup: take(&mut ebpf, map_names::LOOKUP)?,
            real_servers: take(&mut ebpf, map_names::REAL_SERVERS)?,
            director: take(&mut ebpf, map_names::DIRECTOR)?,
            counters: take(&mut ebpf, map_names::COUNTERS)?,
            service_stats: take(&mut ebpf, map_names::SERVICE_STATS)?,
            real_server_stats: take(&mut ebpf, map_names::REAL_SERVER_STATS)?,
            ebpf,
            attached: None,
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

    /// Every map by its name, for pinning in bpffs (`provision::bpffs`). A new map belongs
    /// here too, so that bpftool can find it.
    pub fn maps(&self) -> Vec<(&'static str, &MapData)> {
        vec![
            (map_names::SERVICES, self.services.map()),
            (map_names::LOOKUP, self.lookup.map()),
            (map_names::REAL_SERVERS, self.real_servers.map()),
            (map_names::DIRECTOR, self.director.map()),
            (map_names::COUNTERS, self.counters.map()),
            (map_names::SERVICE_STATS, self.service_stats.map()),
            (map_names::REAL_SERVER_STATS, self.real_server_stats.map()),
        ]
    }

    /// Attaches the program to an interface by index.
    pub fn attach(&mut self, if_index: u32, mode: XdpMode) -> Result<(), DataPlaneError> {
        let program = xdp_program(&mut self.ebpf)?;
        let link = program
            .attach_to_if_index(if_index, mode)
            .map_err(|source| DataPlaneError::Program {
                action: "attaching",
                source,
            })?;
        self.attached = Some(link);
        Ok(())
    }

    /// Detaches the program; traffic flows through the kernel as if lvs were not there.
    pub fn detach(&mut self) -> Result<(), DataPlaneError> {
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

fn sum_stats(values: &aya::maps::PerCpuValues<TrafficStats>) -> TrafficStats {
    values
        .iter()
        .fold(TrafficStats::default(), |acc, cpu| TrafficStats {
            packets: acc.packets + cpu.packets,
            bytes: acc.bytes + cpu.bytes,
        })
}

impl DataPlane for BpfDataPlane {
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

    fn set_lookup_slots(
        &mut self,
        service_index: u32,
        slots: &[(u32, u32)],
    ) -> Result<(), DataPlaneError> {
        let base = service_index * LOOKUP_TABLE_SIZE;
        for &(slot, id) in slots {
            self.lookup
                .set(base + slot, id, 0)
                .map_err(write_error(map_names::LOOKUP))?;
        }
        Ok(())
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
