//! An in-memory data plane that records the map contents, for tests of the director model.

use std::collections::{BTreeMap, HashMap};

use lvs_common::{
    Counter, DenyEntry, NO_REAL_SERVER, RealServerEntry, ServiceEntry, TrafficStats,
    flow::{FlowEntry, PersistEntry, Settings},
    keys::{FlowMapKey, ServiceMapKey, TemplateMapKey},
};

use super::{AttachMode, Attachment, DataPlane, DataPlaneError, Family, Previous, ServiceLookup};
use crate::{base::values::SourcePrefix, logic::service_table};

/// The maps' contents as the fake holds them, plus how many slot writes it received.
#[derive(Debug, Default)]
pub struct FakeDataPlane {
    pub director_mac: Option<[u8; 6]>,
    pub services: HashMap<ServiceMapKey, ServiceEntry>,
    pub real_servers: HashMap<u32, RealServerEntry>,
    pub lookup: HashMap<u32, HashMap<u32, u32>>,
    pub slot_writes: usize,
    pub settings: Option<Settings>,
    /// Ring length each service's cursors were last reset for.
    pub cursor_resets: HashMap<u32, u32>,
    pub zeroed_services: Vec<u32>,
    pub zeroed_real_servers: Vec<u32>,
    pub flows: HashMap<FlowMapKey, FlowEntry>,
    pub templates: HashMap<TemplateMapKey, PersistEntry>,
    /// How many flows and templates were written with `insert_flows` and `insert_templates`
    /// (a sync backup's installs), so that a test can tell "nothing installed" from "the
    /// same entry written again".
    pub flow_inserts: usize,
    pub template_inserts: usize,
    /// How many services each write of services carried (`set_service` and `remove_service`
    /// count as writes of one), in order: each write publishes a table in the real data
    /// plane, so a test can tell one publish for many services from one each.
    pub service_writes: Vec<usize>,
    /// The interface and mode the program is attached with, if it is.
    pub attached: Option<(u32, AttachMode)>,
    /// Refuses native mode, as an interface whose driver has no XDP support does.
    pub refuse_native: bool,
    /// The maps are a previous director's, adopted: `previous` reads them and `attach`
    /// replaces the program on the attachment it left.
    pub adopted: bool,
    /// The daemon let go without detaching (`leave`).
    pub left: bool,
    pub deny: BTreeMap<SourcePrefix, DenyEntry>,
    /// What each deny-list slot dropped, as a test sets it.
    pub deny_stats: HashMap<u32, TrafficStats>,
    pub zeroed_deny: Vec<u32>,
}

impl FakeDataPlane {
    /// The real server a service's table slot names, as the data plane would read it.
    pub fn slot(&self, service_index: u32, slot: u32) -> u32 {
        self.lookup
            .get(&service_index)
            .and_then(|table| table.get(&slot))
            .copied()
            .unwrap_or(NO_REAL_SERVER)
    }
}

impl DataPlane for FakeDataPlane {
    fn attach(&mut self, if_index: u32, mode: AttachMode) -> Result<Attachment, DataPlaneError> {
        if self.adopted && self.attached.is_some() {
            self.left = false;
            return Ok(Attachment::Replaced);
        }
        if self.refuse_native && mode == AttachMode::Native {
            return Err(DataPlaneError::Program {
                action: "attaching",
                source: aya::programs::ProgramError::NotLoaded,
            });
        }
        self.attached = Some((if_index, mode));
        Ok(Attachment::New(mode))
    }

    fn detach(&mut self) -> Result<(), DataPlaneError> {
        self.attached = None;
        Ok(())
    }

    fn leave(&mut self) -> Result<(), DataPlaneError> {
        self.left = true;
        Ok(())
    }

    fn previous(&self) -> Result<Option<Previous>, DataPlaneError> {
        if !self.adopted {
            return Ok(None);
        }
        let tables = self
            .services
            .values()
            .map(|entry| {
                let len = if entry.ring_len > 0 {
                    entry.ring_len
                } else {
                    lvs_common::LOOKUP_TABLE_SIZE
                };
                let table = (0..len).map(|slot| self.slot(entry.index, slot)).collect();
                (entry.index, table)
            })
            .collect();
        Ok(Some(Previous {
            services: self.services.iter().map(|(k, e)| (*k, *e)).collect(),
            real_servers: self
                .real_servers
                .iter()
                .filter(|(_, e)| e.generation != 0)
                .map(|(id, e)| (*id, *e))
                .collect(),
            tables,
            deny: self.deny.iter().map(|(p, e)| (*p, *e)).collect(),
        }))
    }

    fn set_director(&mut self, mac: [u8; 6]) -> Result<(), DataPlaneError> {
        self.director_mac = Some(mac);
        Ok(())
    }

    fn set_settings(&mut self, settings: Settings) -> Result<(), DataPlaneError> {
        self.settings = Some(settings);
        Ok(())
    }

    fn set_real_server(&mut self, id: u32, entry: RealServerEntry) -> Result<(), DataPlaneError> {
        self.real_servers.insert(id, entry);
        Ok(())
    }

    fn set_lookup_slots(
        &mut self,
        service_index: u32,
        slots: &[(u32, u32)],
    ) -> Result<(), DataPlaneError> {
        let table = self.lookup.entry(service_index).or_default();
        for &(slot, id) in slots {
            table.insert(slot, id);
        }
        self.slot_writes += slots.len();
        Ok(())
    }

    fn set_services(
        &mut self,
        services: &[(ServiceMapKey, ServiceEntry)],
    ) -> Result<(), DataPlaneError> {
        self.services.extend(services.iter().copied());
        self.service_writes.push(services.len());
        Ok(())
    }

    fn remove_services(&mut self, keys: &[ServiceMapKey]) -> Result<(), DataPlaneError> {
        for key in keys {
            self.services.remove(key);
        }
        self.service_writes.push(keys.len());
        Ok(())
    }

    fn reset_cursors(&mut self, service_index: u32, ring_len: u32) -> Result<(), DataPlaneError> {
        self.cursor_resets.insert(service_index, ring_len);
        Ok(())
    }

    fn zero_service_stats(&mut self, index: u32) -> Result<(), DataPlaneError> {
        self.zeroed_services.push(index);
        Ok(())
    }

    fn zero_real_server_stats(&mut self, id: u32) -> Result<(), DataPlaneError> {
        self.zeroed_real_servers.push(id);
        Ok(())
    }

    fn set_deny(&mut self, prefix: SourcePrefix, entry: DenyEntry) -> Result<(), DataPlaneError> {
        self.deny.insert(prefix, entry);
        Ok(())
    }

    fn remove_deny(&mut self, prefix: SourcePrefix) -> Result<(), DataPlaneError> {
        self.deny.remove(&prefix);
        Ok(())
    }

    fn deny_stats(&self, index: u32) -> Result<TrafficStats, DataPlaneError> {
        Ok(self.deny_stats.get(&index).copied().unwrap_or_default())
    }

    fn zero_deny_stats(&mut self, index: u32) -> Result<(), DataPlaneError> {
        self.zeroed_deny.push(index);
        self.deny_stats.remove(&index);
        Ok(())
    }

    fn flows(&self) -> Result<Vec<(FlowMapKey, FlowEntry)>, DataPlaneError> {
        Ok(self.flows.iter().map(|(k, v)| (*k, *v)).collect())
    }

    fn remove_flows(&mut self, keys: &[FlowMapKey]) -> Result<(), DataPlaneError> {
        for key in keys {
            self.flows.remove(key);
        }
        Ok(())
    }

    fn insert_flows(&mut self, flows: &[(FlowMapKey, FlowEntry)]) -> Result<(), DataPlaneError> {
        self.flows.extend(flows.iter().copied());
        self.flow_inserts += flows.len();
        Ok(())
    }

    fn templates(&self) -> Result<Vec<(TemplateMapKey, PersistEntry)>, DataPlaneError> {
        Ok(self.templates.iter().map(|(k, v)| (*k, *v)).collect())
    }

    fn remove_templates(&mut self, keys: &[TemplateMapKey]) -> Result<(), DataPlaneError> {
        for key in keys {
            self.templates.remove(key);
        }
        Ok(())
    }

    fn insert_templates(
        &mut self,
        templates: &[(TemplateMapKey, PersistEntry)],
    ) -> Result<(), DataPlaneError> {
        self.templates.extend(templates.iter().copied());
        self.template_inserts += templates.len();
        Ok(())
    }

    /// By the real data plane's rule: a table while the family's services can be placed.
    fn service_lookup(&self, family: Family) -> Result<ServiceLookup, DataPlaneError> {
        let (mut v4, mut v6) = (Vec::new(), Vec::new());
        for (key, entry) in &self.services {
            match key {
                ServiceMapKey::V4(key) => v4.push((*key, *entry)),
                ServiceMapKey::V6(key) => v6.push((*key, *entry)),
            }
        }
        let placed = match family {
            Family::V4 => service_table::place(&v4).is_ok(),
            Family::V6 => service_table::place(&v6).is_ok(),
        };
        Ok(if placed {
            ServiceLookup::Table
        } else {
            ServiceLookup::HashMap
        })
    }

    fn counters(&self) -> Result<Vec<(Counter, u64)>, DataPlaneError> {
        Ok(Counter::ALL.iter().map(|&c| (c, 0)).collect())
    }

    fn service_stats(&self, _index: u32) -> Result<TrafficStats, DataPlaneError> {
        Ok(TrafficStats::default())
    }

    fn real_server_stats(&self, _id: u32) -> Result<TrafficStats, DataPlaneError> {
        Ok(TrafficStats::default())
    }
}
