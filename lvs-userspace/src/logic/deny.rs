//! The deny list: source prefixes whose frames the data plane drops before any other work,
//! as HAProxy users write `block if blacklist`.
//!
//! Prefixes come from two places. The config file's `[deny]` section owns its prefixes: a
//! reload replaces them with the file's. `lvs deny add` adds prefixes at runtime; those stay
//! across reloads (an operator who blocked an attack does not want a config edit to lift the
//! block) and across restarts and upgrades (the data plane's pinned map keeps each prefix's
//! origin), until `lvs deny del` or a stop for good. Every change is all or nothing: a
//! batch with one prefix that cannot be added or deleted changes nothing.
//!
//! [`DenyList`] holds what is wanted and what was written, and `sync` writes only the
//! difference through the [`DataPlane`], as the model does for services.

use std::collections::{BTreeMap, BTreeSet};

use lvs_common::{DENY_FROM_CONFIG, DENY_FROM_RUNTIME, DenyEntry, MAX_DENY_PREFIXES};
use serde::{Deserialize, Serialize};

use crate::{
    base::values::SourcePrefix,
    logic::dataplane::{DataPlane, DataPlaneError},
};

/// Where a prefix of the deny list came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Origin {
    /// The config file's `[deny]` section; a reload sets these.
    Config,
    /// `lvs deny add`; kept across reloads and restarts until `lvs deny del`.
    Runtime,
}

impl Origin {
    pub const fn name(self) -> &'static str {
        match self {
            Origin::Config => "config",
            Origin::Runtime => "runtime",
        }
    }

    const fn wire(self) -> u32 {
        match self {
            Origin::Config => DENY_FROM_CONFIG,
            Origin::Runtime => DENY_FROM_RUNTIME,
        }
    }

    /// An origin as the map keeps it; anything but "config" is a runtime prefix, which a
    /// reload leaves alone (the safer reading of a value this controller did not write).
    const fn from_wire(value: u32) -> Self {
        if value == DENY_FROM_CONFIG {
            Origin::Config
        } else {
            Origin::Runtime
        }
    }
}

/// Why a change to the deny list changed nothing.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DenyError {
    #[error("{0} is already in the deny list")]
    AlreadyDenied(SourcePrefix),
    #[error("{0} is not in the deny list")]
    NotDenied(SourcePrefix),
    #[error("{0} comes from the config file: remove it there and reload")]
    FromConfig(SourcePrefix),
    #[error("{0} is named twice")]
    Repeated(SourcePrefix),
    #[error("no prefix given")]
    Empty,
    #[error(
        "the deny list would hold {0} prefixes; it holds at most {max}",
        max = MAX_DENY_PREFIXES
    )]
    Full(usize),
}

/// One prefix of the deny list as `lvs deny list` and the status show it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Denied {
    pub prefix: SourcePrefix,
    pub origin: Origin,
    /// Frames dropped since the prefix was added.
    pub packets: u64,
    /// Their bytes (IPv4 total length, or IPv6's 40-byte header and payload).
    pub bytes: u64,
}

/// A prefix as written to the data plane: its counter slot and origin.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Written {
    index: u32,
    origin: Origin,
}

/// The deny list the director wants, and what it last wrote to the data plane.
#[derive(Clone, Debug, Default)]
pub struct DenyList {
    wanted: BTreeMap<SourcePrefix, Origin>,
    written: BTreeMap<SourcePrefix, Written>,
}

impl DenyList {
    /// A deny list that takes over what a previous director left in the data plane: the
    /// prefixes, their counter slots (so that their counts go on) and their origins.
    pub fn adopt(previous: &[(SourcePrefix, DenyEntry)]) -> Self {
        let mut list = DenyList::default();
        for &(prefix, entry) in previous {
            let origin = Origin::from_wire(entry.origin);
            list.wanted.insert(prefix, origin);
            list.written.insert(
                prefix,
                Written {
                    index: entry.index,
                    origin,
                },
            );
        }
        list
    }

    /// Whether any prefix is wanted.
    pub fn in_use(&self) -> bool {
        !self.wanted.is_empty()
    }

    /// Whether a prefix of the family of `ipv6` is wanted: the data plane looks that
    /// family's trie up only then.
    pub fn in_use_for(&self, ipv6: bool) -> bool {
        self.wanted
            .keys()
            .any(|prefix| prefix.address().is_ipv6() == ipv6)
    }

    /// The wanted prefixes with their origins, in address order.
    pub fn wanted(&self) -> impl Iterator<Item = (SourcePrefix, Origin)> + '_ {
        self.wanted
            .iter()
            .map(|(prefix, origin)| (*prefix, *origin))
    }

    /// The config file's part of the list, in address order.
    pub fn config_prefixes(&self) -> Vec<SourcePrefix> {
        self.wanted()
            .filter(|(_, origin)| *origin == Origin::Config)
            .map(|(prefix, _)| prefix)
            .collect()
    }

    /// Takes the config file's prefixes (validated, no repeats): they replace the previous
    /// file's, and runtime prefixes stay. A runtime prefix the file now names becomes the
    /// file's. Refused whole when the list would not fit.
    pub fn set_config(&mut self, prefixes: &[SourcePrefix]) -> Result<(), DenyError> {
        let mut next: BTreeMap<SourcePrefix, Origin> = self
            .wanted
            .iter()
            .filter(|(_, origin)| **origin == Origin::Runtime)
            .map(|(prefix, origin)| (*prefix, *origin))
            .collect();
        next.extend(prefixes.iter().map(|prefix| (*prefix, Origin::Config)));
        fits(next.len())?;
        self.wanted = next;
        Ok(())
    }

    /// `lvs deny add`: every prefix must be new; all are added or none.
    pub fn add(&mut self, prefixes: &[SourcePrefix]) -> Result<(), DenyError> {
        let batch = distinct(prefixes)?;
        if let Some(prefix) = batch.iter().find(|p| self.wanted.contains_key(p)) {
            return Err(DenyError::AlreadyDenied(*prefix));
        }
        fits(self.wanted.len() + batch.len())?;
        self.wanted
            .extend(batch.into_iter().map(|prefix| (prefix, Origin::Runtime)));
        Ok(())
    }

    /// `lvs deny del`: every prefix must be a runtime one; all are deleted or none. The
    /// file's prefixes change only with the file.
    pub fn delete(&mut self, prefixes: &[SourcePrefix]) -> Result<(), DenyError> {
        let batch = distinct(prefixes)?;
        for prefix in &batch {
            match self.wanted.get(prefix) {
                None => return Err(DenyError::NotDenied(*prefix)),
                Some(Origin::Config) => return Err(DenyError::FromConfig(*prefix)),
                Some(Origin::Runtime) => {}
            }
        }
        for prefix in &batch {
            self.wanted.remove(prefix);
        }
        Ok(())
    }

    /// Writes what changed since the last sync: removed prefixes first (freeing their
    /// slots), then new ones, each on the lowest free slot with its counters zeroed first,
    /// then changed origins. The shadow follows each write, so a failed sync is retried
    /// from where it stopped.
    pub fn sync(&mut self, dataplane: &mut impl DataPlane) -> Result<(), DataPlaneError> {
        let gone: Vec<SourcePrefix> = self
            .written
            .keys()
            .filter(|prefix| !self.wanted.contains_key(prefix))
            .copied()
            .collect();
        for prefix in gone {
            dataplane.remove_deny(prefix)?;
            self.written.remove(&prefix);
        }
        let wanted: Vec<(SourcePrefix, Origin)> = self.wanted().collect();
        let mut free = self.free_slots();
        for (prefix, origin) in wanted {
            let index = match self.written.get(&prefix) {
                Some(written) if written.origin == origin => continue,
                Some(written) => written.index,
                None => {
                    // There is always one: `add` and `set_config` keep the wanted list within
                    // the map, and the removals above freed their slots.
                    let index = free.next().unwrap_or(MAX_DENY_PREFIXES - 1);
                    dataplane.zero_deny_stats(index)?;
                    index
                }
            };
            let entry = DenyEntry {
                index,
                origin: origin.wire(),
            };
            dataplane.set_deny(prefix, entry)?;
            self.written.insert(prefix, Written { index, origin });
        }
        Ok(())
    }

    /// The list with what each prefix dropped, in address order.
    pub fn listing(&self, dataplane: &impl DataPlane) -> Result<Vec<Denied>, DataPlaneError> {
        let indices: Vec<u32> = self.written.values().map(|written| written.index).collect();
        let stats = dataplane.deny_stats_of(&indices)?;
        Ok(self
            .written
            .iter()
            .zip(stats)
            .map(|((prefix, written), stats)| Denied {
                prefix: *prefix,
                origin: written.origin,
                packets: stats.packets,
                bytes: stats.bytes,
            })
            .collect())
    }

    /// The counter slots no written prefix holds, lowest first. Gathered once per sync, so
    /// that writing n new prefixes costs n log n rather than a scan of every slot for each.
    fn free_slots(&self) -> impl Iterator<Item = u32> + use<> {
        let used: BTreeSet<u32> = self.written.values().map(|w| w.index).collect();
        (0..MAX_DENY_PREFIXES).filter(move |index| !used.contains(index))
    }
}

/// The list as `lvs deny list` and `lvs status` print it: a header and a line a prefix.
pub fn render(list: &[Denied], out: &mut String) {
    use std::fmt::Write as _;
    // As wide as IPv4's longest prefix, or wider for a long IPv6 one.
    let width = list
        .iter()
        .map(|denied| denied.prefix.to_string().len())
        .fold(18, usize::max);
    let _ = writeln!(
        out,
        "  {:<width$} {:<8} {:>12} {:>14}",
        "Prefix", "Origin", "Packets", "Bytes"
    );
    for denied in list {
        let _ = writeln!(
            out,
            "  {:<width$} {:<8} {:>12} {:>14}",
            denied.prefix.to_string(),
            denied.origin.name(),
            denied.packets,
            denied.bytes
        );
    }
}

/// A batch's prefixes, refused when empty or when one is named twice.
fn distinct(prefixes: &[SourcePrefix]) -> Result<BTreeSet<SourcePrefix>, DenyError> {
    if prefixes.is_empty() {
        return Err(DenyError::Empty);
    }
    let mut batch = BTreeSet::new();
    for prefix in prefixes {
        if !batch.insert(*prefix) {
            return Err(DenyError::Repeated(*prefix));
        }
    }
    Ok(batch)
}

fn fits(count: usize) -> Result<(), DenyError> {
    if count > MAX_DENY_PREFIXES as usize {
        Err(DenyError::Full(count))
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use lvs_common::TrafficStats;

    use super::*;
    use crate::logic::dataplane::FakeDataPlane;

    fn p(text: &str) -> SourcePrefix {
        text.parse().unwrap()
    }

    fn written(dataplane: &FakeDataPlane) -> Vec<(String, u32, u32)> {
        dataplane
            .deny
            .iter()
            .map(|(prefix, entry)| (prefix.to_string(), entry.index, entry.origin))
            .collect()
    }

    #[test]
    fn the_file_owns_its_prefixes_and_runtime_ones_survive_a_reload() {
        let mut list = DenyList::default();
        let mut dataplane = FakeDataPlane::default();
        list.set_config(&[p("203.0.113.0/24"), p("198.51.100.7")])
            .unwrap();
        list.add(&[p("192.0.2.0/25")]).unwrap();
        list.sync(&mut dataplane).unwrap();
        assert_eq!(
            written(&dataplane),
            [
                ("192.0.2.0/25".into(), 0, DENY_FROM_RUNTIME),
                ("198.51.100.7/32".into(), 1, DENY_FROM_CONFIG),
                ("203.0.113.0/24".into(), 2, DENY_FROM_CONFIG),
            ]
        );
        assert_eq!(dataplane.zeroed_deny, [0, 1, 2]);

        // A reload whose file drops one prefix and names the runtime one.
        list.set_config(&[p("203.0.113.0/24"), p("192.0.2.0/25")])
            .unwrap();
        list.sync(&mut dataplane).unwrap();
        assert_eq!(
            written(&dataplane),
            [
                ("192.0.2.0/25".into(), 0, DENY_FROM_CONFIG),
                ("203.0.113.0/24".into(), 2, DENY_FROM_CONFIG),
            ]
        );
        // A new prefix takes the freed slot, zeroed first.
        list.add(&[p("10.0.0.0/8")]).unwrap();
        list.sync(&mut dataplane).unwrap();
        assert_eq!(dataplane.deny[&p("10.0.0.0/8")].index, 1);
        assert_eq!(dataplane.zeroed_deny, [0, 1, 2, 1]);
        // An empty file leaves only the runtime prefix.
        list.set_config(&[]).unwrap();
        list.sync(&mut dataplane).unwrap();
        assert_eq!(
            written(&dataplane),
            [("10.0.0.0/8".into(), 1, DENY_FROM_RUNTIME)]
        );
        assert!(list.in_use());
        list.delete(&[p("10.0.0.0/8")]).unwrap();
        list.sync(&mut dataplane).unwrap();
        assert!(dataplane.deny.is_empty());
        assert!(!list.in_use());
    }

    #[test]
    fn changes_are_all_or_nothing() {
        let mut list = DenyList::default();
        list.set_config(&[p("203.0.113.0/24")]).unwrap();
        list.add(&[p("192.0.2.1")]).unwrap();
        let before: Vec<_> = list.wanted().collect();
        let refusals = [
            (
                list.add(&[p("10.0.0.0/8"), p("192.0.2.1")]),
                "192.0.2.1/32 is already in the deny list",
            ),
            (
                list.add(&[p("10.0.0.0/8"), p("10.0.0.0/8")]),
                "10.0.0.0/8 is named twice",
            ),
            (list.add(&[]), "no prefix given"),
            (
                list.delete(&[p("192.0.2.1"), p("10.0.0.0/8")]),
                "10.0.0.0/8 is not in the deny list",
            ),
            (
                list.delete(&[p("192.0.2.1"), p("203.0.113.0/24")]),
                "203.0.113.0/24 comes from the config file: remove it there and reload",
            ),
        ];
        for (result, message) in refusals {
            assert_eq!(result.unwrap_err().to_string(), message);
        }
        assert_eq!(list.wanted().collect::<Vec<_>>(), before);
    }

    #[test]
    fn the_list_never_outgrows_its_map() {
        let mut list = DenyList::default();
        let many: Vec<SourcePrefix> = (0..MAX_DENY_PREFIXES)
            .map(|n| SourcePrefix::new(std::net::Ipv4Addr::from(0x0a00_0000 + n), 32).unwrap())
            .collect();
        list.add(&many).unwrap();
        assert_eq!(
            list.add(&[p("192.0.2.1")]).unwrap_err().to_string(),
            "the deny list would hold 16385 prefixes; it holds at most 16384"
        );
        assert!(list.set_config(&[p("192.0.2.1")]).is_err());
        assert_eq!(list.wanted().count(), MAX_DENY_PREFIXES as usize);
    }

    #[test]
    fn a_restarted_director_keeps_slots_origins_and_counts() {
        let mut dataplane = FakeDataPlane::default();
        let mut first = DenyList::default();
        first.set_config(&[p("203.0.113.0/24")]).unwrap();
        first.add(&[p("192.0.2.1")]).unwrap();
        first.sync(&mut dataplane).unwrap();
        dataplane.deny_stats.insert(
            1,
            TrafficStats {
                connections: 0,
                packets: 7,
                bytes: 420,
            },
        );
        let zeroed = dataplane.zeroed_deny.len();

        let previous: Vec<_> = dataplane.deny.iter().map(|(p, e)| (*p, *e)).collect();
        let mut second = DenyList::adopt(&previous);
        second.set_config(&[p("203.0.113.0/24")]).unwrap();
        second.sync(&mut dataplane).unwrap();
        assert_eq!(dataplane.zeroed_deny.len(), zeroed, "nothing rewritten");
        let listing = second.listing(&dataplane).unwrap();
        assert_eq!(
            listing,
            [
                Denied {
                    prefix: p("192.0.2.1"),
                    origin: Origin::Runtime,
                    packets: 0,
                    bytes: 0,
                },
                Denied {
                    prefix: p("203.0.113.0/24"),
                    origin: Origin::Config,
                    packets: 7,
                    bytes: 420,
                },
            ]
        );
    }

    #[test]
    fn ipv6_prefixes_share_the_slots_and_the_capacity() {
        let mut list = DenyList::default();
        let mut dataplane = FakeDataPlane::default();
        list.set_config(&[p("2001:db8::/32"), p("203.0.113.0/24")])
            .unwrap();
        list.add(&[p("2001:db8:1::7"), p("192.0.2.0/25")]).unwrap();
        list.sync(&mut dataplane).unwrap();
        // Address order puts IPv4 first; each prefix has its own slot of the one array.
        assert_eq!(
            written(&dataplane),
            [
                ("192.0.2.0/25".into(), 0, DENY_FROM_RUNTIME),
                ("203.0.113.0/24".into(), 1, DENY_FROM_CONFIG),
                ("2001:db8::/32".into(), 2, DENY_FROM_CONFIG),
                ("2001:db8:1::7/128".into(), 3, DENY_FROM_RUNTIME),
            ]
        );
        // A freed IPv4 slot goes to the next prefix, whatever its family.
        list.delete(&[p("192.0.2.0/25")]).unwrap();
        list.add(&[p("2001:db8:2::/48")]).unwrap();
        list.sync(&mut dataplane).unwrap();
        assert_eq!(dataplane.deny[&p("2001:db8:2::/48")].index, 0);
        assert_eq!(
            list.delete(&[p("2001:db8::/32")]).unwrap_err().to_string(),
            "2001:db8::/32 comes from the config file: remove it there and reload"
        );
        let mut rendered = String::new();
        render(&list.listing(&dataplane).unwrap(), &mut rendered);
        assert!(
            rendered.contains("  2001:db8:1::7/128  runtime "),
            "{rendered}"
        );

        // Both families count against the one capacity.
        let mut full = DenyList::default();
        let half = MAX_DENY_PREFIXES / 2;
        let v4: Vec<SourcePrefix> = (0..half)
            .map(|n| SourcePrefix::new(std::net::Ipv4Addr::from(0x0a00_0000 + n), 32).unwrap())
            .collect();
        let v6: Vec<SourcePrefix> = (0..half)
            .map(|n| {
                let address = std::net::Ipv6Addr::from(0x2001_0db8_u128 << 96 | u128::from(n));
                SourcePrefix::new(address, 128).unwrap()
            })
            .collect();
        full.add(&v4).unwrap();
        full.add(&v6).unwrap();
        assert_eq!(
            full.add(&[p("2001:db8:ffff::/48")]).unwrap_err(),
            DenyError::Full(MAX_DENY_PREFIXES as usize + 1)
        );
    }
}
