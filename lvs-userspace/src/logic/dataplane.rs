//! The data plane as the controller sees it: a few typed writes and reads of the BPF maps.
//!
//! `DataPlane` is the seam between pure logic and the kernel: the director model programs any
//! implementation, `io::bpf::BpfDataPlane` is the real one, and `FakeDataPlane` records
//! writes in memory so the model and the daemon are tested without root. The trait lives with
//! the logic that drives it, so that nothing pure imports the I/O layer.

mod fake;

use std::collections::HashMap;

pub use fake::FakeDataPlane;

use crate::base::values::SourcePrefix;
use lvs_common::{
    Counter, DenyEntry, RealServerEntry, ServiceEntry, TrafficStats,
    flow::{FlowEntry, PersistEntry, Settings},
    keys::{FlowMapKey, ServiceMapKey, TemplateMapKey},
};

/// Errors of the data plane.
#[derive(Debug, thiserror::Error)]
pub enum DataPlaneError {
    #[error("loading the XDP object failed")]
    Load(#[source] aya::EbpfError),
    #[error("the XDP object has no map {name}")]
    MissingMap { name: &'static str },
    #[error("the map {name} has an unexpected type")]
    MapType {
        name: &'static str,
        #[source]
        source: aya::maps::MapError,
    },
    #[error("writing map {name} failed")]
    Write {
        name: &'static str,
        #[source]
        source: aya::maps::MapError,
    },
    #[error("reading map {name} failed")]
    Read {
        name: &'static str,
        #[source]
        source: aya::maps::MapError,
    },
    #[error("batch operation on map {name} failed")]
    Batch {
        name: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("the XDP object has no program {name}")]
    MissingProgram { name: &'static str },
    #[error("the data plane is not pinned, so it cannot outlive this process")]
    NotPinned,
    #[error("{action} failed")]
    Pin {
        action: String,
        #[source]
        source: std::io::Error,
    },
    #[error("mapping the flow table {name} into memory failed")]
    Mapping {
        name: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("{action} the XDP program failed")]
    Program {
        action: &'static str,
        #[source]
        source: aya::programs::ProgramError,
    },
}

/// A slice of the flow tables and the position after it (`None`: the end).
pub type FlowSlice = (Vec<(FlowMapKey, FlowEntry)>, Option<FlowPosition>);

/// Where a walk of the flow tables stands: the IPv4 table is walked first, then the IPv6
/// one, each by its own batch position (a hash bucket).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FlowPosition {
    Ipv4(u32),
    Ipv6(u32),
}

/// How the program is attached to an interface.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttachMode {
    /// In the driver (XDP_FLAGS_DRV_MODE): fastest, needs driver support.
    Native,
    /// In the kernel's generic hook (XDP_FLAGS_SKB_MODE): works on any interface, slower.
    Generic,
}

impl AttachMode {
    /// The mode's name as the status shows it.
    pub fn name(self) -> &'static str {
        match self {
            AttachMode::Native => "native",
            AttachMode::Generic => "generic",
        }
    }
}

/// An address family, where the data plane keeps one map of each kind per family.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    V4,
    V6,
}

impl Family {
    pub const ALL: [Family; 2] = [Family::V4, Family::V6];

    /// The family's name as the status and the metrics show it.
    pub fn name(self) -> &'static str {
        match self {
            Family::V4 => "IPv4",
            Family::V6 => "IPv6",
        }
    }
}

/// Where the program finds a frame's virtual service, for one family.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ServiceLookup {
    /// In the family's service table: an array read (`lvs_common::service_table`).
    Table,
    /// In the family's `SERVICES` hash map, about 20 ns more per frame: the services cannot
    /// be placed in the table (only keys chosen to collide do that), or the last table could
    /// not be made.
    HashMap,
}

/// How `attach` put the program on the interface.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Attachment {
    /// A new attachment in the given mode.
    New(AttachMode),
    /// The program replaced, atomically, the one a previous director left attached; the
    /// attachment (and its mode) is the previous one's.
    Replaced,
}

/// What a previous director left in the maps a starting data plane adopted: enough for the
/// model to keep every service's index and every real server's id and generation, so that
/// the flows in the flow table keep their real servers.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Previous {
    pub services: Vec<(ServiceMapKey, ServiceEntry)>,
    /// Every real-server entry ever written (its generation is not 0), by id.
    pub real_servers: Vec<(u32, RealServerEntry)>,
    /// Each previous service's table by service index: its ring (`ring_len` slots) or its
    /// whole hash table.
    pub tables: HashMap<u32, Vec<u32>>,
    /// The deny list's prefixes, with their counter slots and origins.
    pub deny: Vec<(SourcePrefix, DenyEntry)>,
}

/// Writes and reads of the data plane's maps, and attaching the program to an interface.
/// Every write is of a whole entry.
pub trait DataPlane {
    /// Attaches the program to an interface by index, or, when a previous director left one
    /// attached there, replaces that program on its attachment (`mode` is then the previous
    /// one's).
    fn attach(&mut self, if_index: u32, mode: AttachMode) -> Result<Attachment, DataPlaneError>;
    /// Stops for good: detaches the program if it is attached and removes what keeps it and
    /// its maps alive after this process; traffic then flows through the kernel as if lvs
    /// were not there.
    fn detach(&mut self) -> Result<(), DataPlaneError>;
    /// Lets go of the data plane without detaching it: the program keeps forwarding with the
    /// maps as they are, for the next director to adopt.
    fn leave(&mut self) -> Result<(), DataPlaneError>;
    /// What a previous director left, when this data plane adopted its maps; `None` when it
    /// started with fresh maps.
    fn previous(&self) -> Result<Option<Previous>, DataPlaneError>;

    fn set_director(&mut self, mac: [u8; 6]) -> Result<(), DataPlaneError>;
    fn set_settings(&mut self, settings: Settings) -> Result<(), DataPlaneError>;
    fn set_real_server(&mut self, id: u32, entry: RealServerEntry) -> Result<(), DataPlaneError>;
    /// Writes `(slot, real-server id)` pairs into a service's lookup table.
    fn set_lookup_slots(
        &mut self,
        service_index: u32,
        slots: &[(u32, u32)],
    ) -> Result<(), DataPlaneError>;
    /// Writes services into their family's map (`SERVICES` or `SERVICES6`), and publishes
    /// each family's service table once for all of them: swapping a table in waits for the
    /// programs that may still read the old one (an RCU grace period, 6-15 ms here), so a
    /// director starting with 64 services would wait most of a second if each were published
    /// on its own.
    fn set_services(
        &mut self,
        services: &[(ServiceMapKey, ServiceEntry)],
    ) -> Result<(), DataPlaneError>;
    /// Removes services, publishing each family's table once (see `set_services`).
    fn remove_services(&mut self, keys: &[ServiceMapKey]) -> Result<(), DataPlaneError>;
    /// Writes one service (`set_services` of one).
    fn set_service(
        &mut self,
        key: ServiceMapKey,
        entry: ServiceEntry,
    ) -> Result<(), DataPlaneError> {
        self.set_services(&[(key, entry)])
    }
    /// Removes one service (`remove_services` of one).
    fn remove_service(&mut self, key: &ServiceMapKey) -> Result<(), DataPlaneError> {
        self.remove_services(std::slice::from_ref(key))
    }
    /// Restarts a ring-scheduled service's schedule: CPU `c` of `n` starts at entry
    /// `c * ring_len / n` and walks on from there.
    fn reset_cursors(&mut self, service_index: u32, ring_len: u32) -> Result<(), DataPlaneError>;
    fn zero_service_stats(&mut self, index: u32) -> Result<(), DataPlaneError>;
    fn zero_real_server_stats(&mut self, id: u32) -> Result<(), DataPlaneError>;

    /// Writes one prefix of the deny list (a whole entry), replacing any for the same prefix.
    fn set_deny(&mut self, prefix: SourcePrefix, entry: DenyEntry) -> Result<(), DataPlaneError>;
    fn remove_deny(&mut self, prefix: SourcePrefix) -> Result<(), DataPlaneError>;
    /// What a deny-list prefix dropped: packets and bytes (`connections` is 0).
    fn deny_stats(&self, index: u32) -> Result<TrafficStats, DataPlaneError>;
    fn zero_deny_stats(&mut self, index: u32) -> Result<(), DataPlaneError>;

    /// Every connection in the flow tables (both families).
    fn flows(&self) -> Result<Vec<(FlowMapKey, FlowEntry)>, DataPlaneError>;
    /// About `max` connections of the flow tables from position `from` (`None`: the start),
    /// and the position to continue from (`None`: that was the end), so that a large table
    /// can be read a slice at a time. Entries added or removed meanwhile may or may not be
    /// seen, as with any walk of a live table. By default the whole table is one slice.
    fn flows_slice(
        &self,
        from: Option<FlowPosition>,
        max: usize,
    ) -> Result<FlowSlice, DataPlaneError> {
        let _ = (from, max);
        Ok((self.flows()?, None))
    }
    fn remove_flows(&mut self, keys: &[FlowMapKey]) -> Result<(), DataPlaneError>;
    /// Writes whole connections into their family's flow table, replacing any with the same
    /// key: what a sync backup learns from its master (and what tests and benchmarks start
    /// from).
    fn insert_flows(&mut self, flows: &[(FlowMapKey, FlowEntry)]) -> Result<(), DataPlaneError>;
    /// Every persistence template (both families).
    fn templates(&self) -> Result<Vec<(TemplateMapKey, PersistEntry)>, DataPlaneError>;
    fn remove_templates(&mut self, keys: &[TemplateMapKey]) -> Result<(), DataPlaneError>;
    /// Writes whole persistence templates, replacing any with the same key.
    fn insert_templates(
        &mut self,
        templates: &[(TemplateMapKey, PersistEntry)],
    ) -> Result<(), DataPlaneError>;

    /// Where the program finds the family's services now.
    fn service_lookup(&self, family: Family) -> Result<ServiceLookup, DataPlaneError>;

    /// Each verdict counter, summed over CPUs, in `Counter::ALL` order.
    fn counters(&self) -> Result<Vec<(Counter, u64)>, DataPlaneError>;
    fn service_stats(&self, index: u32) -> Result<TrafficStats, DataPlaneError>;
    fn real_server_stats(&self, id: u32) -> Result<TrafficStats, DataPlaneError>;
    /// `real_server_stats` of each of `ids`, in their order. A data plane may read many
    /// together: one read each costs a syscall each, thousands of them for a status or a rate
    /// sample of a director with thousands of real servers.
    fn real_server_stats_of(&self, ids: &[u32]) -> Result<Vec<TrafficStats>, DataPlaneError> {
        ids.iter().map(|&id| self.real_server_stats(id)).collect()
    }
    /// `deny_stats` of each of `indices`, in their order, read together as
    /// `real_server_stats_of` reads real servers'.
    fn deny_stats_of(&self, indices: &[u32]) -> Result<Vec<TrafficStats>, DataPlaneError> {
        indices
            .iter()
            .map(|&index| self.deny_stats(index))
            .collect()
    }
}
