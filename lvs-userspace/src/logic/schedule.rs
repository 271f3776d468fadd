//! IPVS's schedulers, as the tables the data plane walks or hashes into.
//!
//! The data plane makes one O(1) choice per new connection, whatever the scheduler and however
//! many real servers there are: it either takes the next entry of a service's *schedule* (a
//! ring of real-server ids, walked by per-CPU cursors) or the slot of a *hash table* its hash
//! names. Everything that depends on the servers, their weights and their connection counts is
//! worked out here, in userspace, and only the slots that change are written.
//!
//! - `rr`, `wrr`: the ring is IPVS's exact selection sequence.
//! - `lc`, `wlc`, `sed`, `nq`: the ring is the sequence IPVS would choose for the next
//!   connections given the current connection counts, each choice counting as one more active
//!   connection (as it will be once its handshake completes). The controller rebuilds it from
//!   fresh counts every second, so the choices follow the real load with a delay of at most a
//!   second plus the time the ring takes to be consumed.
//! - `sh`, `dh`: a hash table filled the way IPVS fills its buckets; `mh`: a weighted Maglev
//!   table (see `maglev`).
//!
//! Real servers that cannot take new connections (weight 0, overloaded, or not usable) are never
//! in a table. That makes IPVS's `sh-fallback`/`mh-fallback` behaviour the only one: a client
//! whose server is unavailable always gets another, never a dropped packet.

use std::{cmp::Ordering, collections::BinaryHeap, fmt, str::FromStr};

use lvs_common::{
    LOOKUP_TABLE_SIZE, NO_REAL_SERVER, SERVICE_HASH_DESTINATION, SERVICE_HASH_SOURCE_PORT,
    SERVICE_RING,
};

use crate::logic::maglev::{self, Backend};

/// The most entries a service's schedule ring may hold: the slots of its lookup table.
pub const RING_CAPACITY: usize = LOOKUP_TABLE_SIZE as usize - 1;

/// A scheduler, named as ipvsadm's `-s` names it (in the config, the control API and
/// listings alike).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize,
)]
pub enum Scheduler {
    #[serde(rename = "rr")]
    RoundRobin,
    #[serde(rename = "wrr")]
    WeightedRoundRobin,
    #[serde(rename = "lc")]
    LeastConnection,
    /// The default, as in ipvsadm.
    #[default]
    #[serde(rename = "wlc")]
    WeightedLeastConnection,
    #[serde(rename = "sed")]
    ShortestExpectedDelay,
    #[serde(rename = "nq")]
    NeverQueue,
    #[serde(rename = "sh")]
    SourceHashing,
    #[serde(rename = "dh")]
    DestinationHashing,
    #[serde(rename = "mh")]
    MaglevHashing,
}

/// ipvsadm's schedulers that lvs does not implement.
const UNSUPPORTED: [&str; 5] = ["lblc", "lblcr", "fo", "ovf", "twos"];

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum SchedulerError {
    #[error("scheduler {0:?} is not supported by lvs (supported: rr wrr lc wlc sed nq sh dh mh)")]
    Unsupported(String),
    #[error("unknown scheduler {0:?}")]
    Unknown(String),
    #[error("unknown scheduler flag {0:?}")]
    UnknownFlag(String),
    #[error("scheduler flag {flag:?} does not apply to scheduler {scheduler}")]
    FlagNotForScheduler { flag: String, scheduler: Scheduler },
}

impl Scheduler {
    pub const ALL: [Scheduler; 9] = [
        Scheduler::RoundRobin,
        Scheduler::WeightedRoundRobin,
        Scheduler::LeastConnection,
        Scheduler::WeightedLeastConnection,
        Scheduler::ShortestExpectedDelay,
        Scheduler::NeverQueue,
        Scheduler::SourceHashing,
        Scheduler::DestinationHashing,
        Scheduler::MaglevHashing,
    ];

    /// ipvsadm's default when `-s` is not given.
    pub const DEFAULT: Scheduler = Scheduler::WeightedLeastConnection;

    pub const fn name(self) -> &'static str {
        match self {
            Scheduler::RoundRobin => "rr",
            Scheduler::WeightedRoundRobin => "wrr",
            Scheduler::LeastConnection => "lc",
            Scheduler::WeightedLeastConnection => "wlc",
            Scheduler::ShortestExpectedDelay => "sed",
            Scheduler::NeverQueue => "nq",
            Scheduler::SourceHashing => "sh",
            Scheduler::DestinationHashing => "dh",
            Scheduler::MaglevHashing => "mh",
        }
    }

    /// Whether `-b` flags mean something for it: the source-hashing schedulers'.
    pub const fn takes_flags(self) -> bool {
        matches!(self, Scheduler::SourceHashing | Scheduler::MaglevHashing)
    }

    /// Whether new connections walk a ring (as opposed to hashing into a table).
    pub const fn is_ring(self) -> bool {
        !matches!(
            self,
            Scheduler::SourceHashing | Scheduler::DestinationHashing | Scheduler::MaglevHashing
        )
    }

    /// Whether the choice depends on connection counts, so the ring must be rebuilt as they
    /// change.
    pub const fn follows_connections(self) -> bool {
        matches!(
            self,
            Scheduler::LeastConnection
                | Scheduler::WeightedLeastConnection
                | Scheduler::ShortestExpectedDelay
                | Scheduler::NeverQueue
        )
    }
}

impl fmt::Display for Scheduler {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Scheduler {
    type Err = SchedulerError;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        if let Some(found) = Scheduler::ALL.into_iter().find(|s| s.name() == name) {
            return Ok(found);
        }
        if UNSUPPORTED.contains(&name) {
            return Err(SchedulerError::Unsupported(name.to_owned()));
        }
        Err(SchedulerError::Unknown(name.to_owned()))
    }
}

/// ipvsadm's `-b` scheduler flags. They mean something only for `sh` and `mh` (IPVS's
/// generic `flag-1` and `flag-2` are their fallback and port flags; `flag-3` means nothing
/// to either), so lvs refuses them for every other scheduler rather than ignore them.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(default, deny_unknown_fields)]
pub struct SchedFlags {
    /// `sh-fallback`/`mh-fallback` (`flag-1`): another server when the hashed one is
    /// unavailable. Always the behaviour of lvs (see the module comment); kept to be listed
    /// and saved as given.
    pub fallback: bool,
    /// `sh-port`/`mh-port` (`flag-2`): hash the client's port as well as its address.
    pub port: bool,
}

impl SchedFlags {
    /// Parses ipvsadm's comma-separated flag names for a scheduler.
    pub fn parse<'a>(
        scheduler: Scheduler,
        names: impl IntoIterator<Item = &'a str>,
    ) -> Result<Self, SchedulerError> {
        let mut flags = SchedFlags::default();
        for name in names {
            let name = name.trim();
            let (prefix, which) = match name {
                "flag-1" => (None, 1),
                "flag-2" => (None, 2),
                "flag-3" => (None, 3),
                "sh-fallback" => (Some(Scheduler::SourceHashing), 1),
                "sh-port" => (Some(Scheduler::SourceHashing), 2),
                "mh-fallback" => (Some(Scheduler::MaglevHashing), 1),
                "mh-port" => (Some(Scheduler::MaglevHashing), 2),
                _ => return Err(SchedulerError::UnknownFlag(name.to_owned())),
            };
            if prefix.is_some_and(|p| p != scheduler) || !scheduler.takes_flags() || which == 3 {
                return Err(SchedulerError::FlagNotForScheduler {
                    flag: name.to_owned(),
                    scheduler,
                });
            }
            match which {
                1 => flags.fallback = true,
                _ => flags.port = true,
            }
        }
        Ok(flags)
    }

    pub const fn is_empty(self) -> bool {
        !(self.fallback || self.port)
    }

    /// Refuses flags that mean nothing for `scheduler`, as [`SchedFlags::parse`] does; for
    /// flags that arrive already typed (the control API).
    pub fn check(self, scheduler: Scheduler) -> Result<(), SchedulerError> {
        match self.names(scheduler).into_iter().next() {
            Some(flag) if !scheduler.takes_flags() => {
                Err(SchedulerError::FlagNotForScheduler { flag, scheduler })
            }
            _ => Ok(()),
        }
    }

    /// The flags as ipvsadm lists them for `scheduler` (`sh-fallback,sh-port`; `flag-1` and
    /// `flag-2` for a scheduler that takes none, which [`SchedFlags::check`] refuses).
    pub fn names(self, scheduler: Scheduler) -> Vec<String> {
        let (fallback, port) = if scheduler.takes_flags() {
            let prefix = scheduler.name();
            (format!("{prefix}-fallback"), format!("{prefix}-port"))
        } else {
            ("flag-1".to_owned(), "flag-2".to_owned())
        };
        [(self.fallback, fallback), (self.port, port)]
            .into_iter()
            .filter_map(|(set, name)| set.then_some(name))
            .collect()
    }
}

/// A real server as a scheduler sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Candidate {
    /// The id written into the table.
    pub id: u32,
    /// Stable across directors (address and port): what hash tables are derived from.
    pub identity: Vec<u8>,
    pub weight: u32,
    pub active: u32,
    pub inactive: u32,
}

/// What a service's lookup table should hold.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    /// `SERVICE_*` flags for the service entry.
    pub flags: u32,
    /// The slots: a ring (`ring_len` entries) or a full hash table.
    pub table: Vec<u32>,
    /// Entries of the ring; 0 for hash tables.
    pub ring_len: u32,
}

/// Builds a service's table from the candidates that may take new connections (the caller
/// leaves out servers of weight 0, overloaded or not usable), in configuration order.
pub fn plan(scheduler: Scheduler, flags: SchedFlags, candidates: &[Candidate]) -> Plan {
    let ring = |ids: Vec<u32>| Plan {
        flags: SERVICE_RING,
        ring_len: ids.len() as u32,
        table: ids,
    };
    let candidates: Vec<&Candidate> = candidates.iter().filter(|c| c.weight > 0).collect();
    match scheduler {
        Scheduler::RoundRobin => ring(candidates.iter().map(|c| c.id).collect()),
        Scheduler::WeightedRoundRobin => ring(weighted_round_robin(&candidates, RING_CAPACITY)),
        Scheduler::LeastConnection
        | Scheduler::WeightedLeastConnection
        | Scheduler::ShortestExpectedDelay
        | Scheduler::NeverQueue => {
            let len = (candidates.len() * 16).clamp(256, RING_CAPACITY);
            ring(simulate(scheduler, &candidates, len))
        }
        Scheduler::SourceHashing | Scheduler::DestinationHashing => {
            let weighted = scheduler == Scheduler::SourceHashing;
            let mut hash_flags = if weighted {
                0
            } else {
                SERVICE_HASH_DESTINATION
            };
            if weighted && flags.port {
                hash_flags |= SERVICE_HASH_SOURCE_PORT;
            }
            Plan {
                flags: hash_flags,
                table: bucket_table(&candidates, weighted, LOOKUP_TABLE_SIZE as usize),
                ring_len: 0,
            }
        }
        Scheduler::MaglevHashing => {
            let backends: Vec<Backend> = candidates
                .iter()
                .map(|c| Backend {
                    id: c.id,
                    identity: c.identity.clone(),
                    weight: c.weight,
                })
                .collect();
            Plan {
                flags: if flags.port {
                    SERVICE_HASH_SOURCE_PORT
                } else {
                    0
                },
                table: maglev::build_table(&backends, LOOKUP_TABLE_SIZE),
                ring_len: 0,
            }
        }
    }
}

fn gcd(a: u32, b: u32) -> u32 {
    if b == 0 { a } else { gcd(b, a % b) }
}

/// IPVS's weighted round-robin sequence: the current weight starts at the largest weight and
/// drops by the weights' greatest common divisor each time the list wraps; each pass selects
/// the servers whose weight is at least the current weight. One full period is
/// `sum(weight) / gcd` entries. When that does not fit in `capacity`, the weights are scaled
/// down in proportion first (at least 1 each), so every server keeps its place in the ring.
fn weighted_round_robin(candidates: &[&Candidate], capacity: usize) -> Vec<u32> {
    if candidates.is_empty() {
        return Vec::new();
    }
    let mut weights: Vec<u64> = candidates.iter().map(|c| u64::from(c.weight)).collect();
    let g = weights.iter().fold(0u32, |g, &w| gcd(g, w as u32));
    weights.iter_mut().for_each(|w| *w /= u64::from(g.max(1)));
    let total: u64 = weights.iter().sum();
    if total > capacity as u64 {
        let cap = capacity as u64;
        weights
            .iter_mut()
            .for_each(|w| *w = (*w * cap / total).max(1));
        // Rounding up the smallest can push the sum over again; trim the largest.
        while weights.iter().sum::<u64>() > cap {
            if let Some(max) = weights.iter_mut().max() {
                *max -= 1;
            }
        }
        let g = weights.iter().fold(0u32, |g, &w| gcd(g, w as u32));
        weights.iter_mut().for_each(|w| *w /= u64::from(g.max(1)));
    }
    let period: u64 = weights.iter().sum();
    let max = weights.iter().copied().max().unwrap_or(0);
    let mut sequence = Vec::with_capacity(period as usize);
    let mut current = max;
    while current > 0 {
        for (candidate, &weight) in candidates.iter().zip(&weights) {
            if weight >= current {
                sequence.push(candidate.id);
            }
        }
        current -= 1;
    }
    sequence
}

/// One server's load as a connection-count scheduler compares it: `overhead / weight`, compared
/// by cross-multiplication as IPVS does, ties going to the server listed first.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Load {
    overhead: u64,
    weight: u64,
    position: usize,
}

impl Ord for Load {
    fn cmp(&self, other: &Self) -> Ordering {
        let mine = u128::from(self.overhead) * u128::from(other.weight);
        let theirs = u128::from(other.overhead) * u128::from(self.weight);
        mine.cmp(&theirs)
            .then(self.position.cmp(&other.position))
            // A max-heap pops the greatest: reverse, so the least loaded comes out first.
            .reverse()
    }
}

impl PartialOrd for Load {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// The overhead IPVS compares for a scheduler: `lc`/`wlc` weigh an active connection as 256
/// inactive ones; `sed`/`nq` count active connections plus the one being scheduled.
fn overhead(scheduler: Scheduler, active: u64, inactive: u64) -> u64 {
    match scheduler {
        Scheduler::ShortestExpectedDelay | Scheduler::NeverQueue => active + 1,
        _ => (active << 8) + inactive,
    }
}

/// The next `len` choices of a connection-count scheduler, each counted as one more active
/// connection of the chosen server. `nq` first serves, in order, the servers with no active
/// connection, then behaves as `sed`; `lc` ignores weights (all count as 1).
fn simulate(scheduler: Scheduler, candidates: &[&Candidate], len: usize) -> Vec<u32> {
    if candidates.is_empty() {
        return Vec::new();
    }
    let mut active: Vec<u64> = candidates.iter().map(|c| u64::from(c.active)).collect();
    let inactive: Vec<u64> = candidates.iter().map(|c| u64::from(c.inactive)).collect();
    let weight = |i: usize| match scheduler {
        Scheduler::LeastConnection => 1,
        _ => u64::from(candidates[i].weight),
    };
    let mut sequence = Vec::with_capacity(len);
    if scheduler == Scheduler::NeverQueue {
        for (i, candidate) in candidates.iter().enumerate() {
            if active[i] == 0 && sequence.len() < len {
                sequence.push(candidate.id);
                active[i] = 1;
            }
        }
    }
    let mut heap: BinaryHeap<Load> = (0..candidates.len())
        .map(|i| Load {
            overhead: overhead(scheduler, active[i], inactive[i]),
            weight: weight(i),
            position: i,
        })
        .collect();
    while sequence.len() < len {
        let Some(least) = heap.pop() else { break };
        let i = least.position;
        sequence.push(candidates[i].id);
        active[i] += 1;
        heap.push(Load {
            overhead: overhead(scheduler, active[i], inactive[i]),
            ..least
        });
    }
    sequence
}

/// A hash table filled as IPVS fills `sh`'s buckets: servers in turn, each taking as many
/// consecutive buckets as its weight (`weighted`), or one each (`dh`, which ignores weights).
fn bucket_table(candidates: &[&Candidate], weighted: bool, size: usize) -> Vec<u32> {
    if candidates.is_empty() {
        return vec![NO_REAL_SERVER; size];
    }
    let mut table = Vec::with_capacity(size);
    'fill: loop {
        for candidate in candidates {
            let repeat = if weighted { candidate.weight } else { 1 };
            for _ in 0..repeat {
                if table.len() == size {
                    break 'fill;
                }
                table.push(candidate.id);
            }
        }
    }
    table
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn candidate(id: u32, weight: u32, active: u32, inactive: u32) -> Candidate {
        Candidate {
            id,
            identity: vec![10, 0, 0, id as u8, 0, 80],
            weight,
            active,
            inactive,
        }
    }

    fn counts(ids: &[u32]) -> HashMap<u32, usize> {
        let mut counts = HashMap::new();
        for &id in ids {
            *counts.entry(id).or_default() += 1;
        }
        counts
    }

    #[test]
    fn names_parse_as_ipvsadm_spells_them() {
        for s in Scheduler::ALL {
            assert_eq!(s.name().parse::<Scheduler>(), Ok(s));
        }
        assert_eq!(Scheduler::default(), Scheduler::WeightedLeastConnection);
        assert_eq!(
            "lblc".parse::<Scheduler>(),
            Err(SchedulerError::Unsupported("lblc".into()))
        );
        assert_eq!(
            "fastest".parse::<Scheduler>(),
            Err(SchedulerError::Unknown("fastest".into()))
        );
    }

    #[test]
    fn sched_flags_follow_ipvsadm() {
        let sh = Scheduler::SourceHashing;
        let mh = Scheduler::MaglevHashing;
        assert_eq!(
            SchedFlags::parse(sh, ["sh-fallback", "sh-port"]),
            Ok(SchedFlags {
                fallback: true,
                port: true
            })
        );
        assert_eq!(
            SchedFlags::parse(mh, ["flag-2"]),
            Ok(SchedFlags {
                fallback: false,
                port: true
            })
        );
        assert!(matches!(
            SchedFlags::parse(mh, ["sh-port"]),
            Err(SchedulerError::FlagNotForScheduler { .. })
        ));
        assert!(matches!(
            SchedFlags::parse(Scheduler::RoundRobin, ["flag-1"]),
            Err(SchedulerError::FlagNotForScheduler { .. })
        ));
        assert!(matches!(
            SchedFlags::parse(sh, ["sh-everything"]),
            Err(SchedulerError::UnknownFlag(_))
        ));
        let both = SchedFlags {
            fallback: true,
            port: true,
        };
        assert_eq!(both.names(mh), ["mh-fallback", "mh-port"]);
    }

    #[test]
    fn rr_takes_each_server_once_in_order_and_skips_weight_zero() {
        let cs = [
            candidate(1, 1, 0, 0),
            candidate(2, 0, 0, 0),
            candidate(3, 7, 0, 0),
        ];
        let p = plan(Scheduler::RoundRobin, SchedFlags::default(), &cs);
        assert_eq!(p.table, [1, 3]);
        assert_eq!(p.ring_len, 2);
        assert_eq!(p.flags, SERVICE_RING);
    }

    #[test]
    fn wrr_is_ipvs_sequence() {
        // IPVS's documented example: weights 4, 3, 2 give A A B A B C A B C over a period.
        let cs = [
            candidate(1, 4, 0, 0),
            candidate(2, 3, 0, 0),
            candidate(3, 2, 0, 0),
        ];
        let p = plan(Scheduler::WeightedRoundRobin, SchedFlags::default(), &cs);
        assert_eq!(p.table, [1, 1, 2, 1, 2, 3, 1, 2, 3]);
    }

    #[test]
    fn wrr_divides_by_the_gcd() {
        let cs = [candidate(1, 200, 0, 0), candidate(2, 100, 0, 0)];
        let p = plan(Scheduler::WeightedRoundRobin, SchedFlags::default(), &cs);
        assert_eq!(p.table, [1, 1, 2]);
    }

    #[test]
    fn wrr_scales_weights_that_do_not_fit_and_keeps_every_server() {
        let cs: Vec<_> = (0..100)
            .map(|i| candidate(i, if i == 0 { 65535 } else { 60000 - i }, 0, 0))
            .collect();
        let p = plan(Scheduler::WeightedRoundRobin, SchedFlags::default(), &cs);
        assert!(p.table.len() <= RING_CAPACITY);
        let c = counts(&p.table);
        assert_eq!(c.len(), 100, "every server keeps a place");
        let total: f64 = cs.iter().map(|c| f64::from(c.weight)).sum();
        for cand in &cs {
            let want = f64::from(cand.weight) / total;
            let got = c[&cand.id] as f64 / p.table.len() as f64;
            assert!((got - want).abs() / want < 0.02, "server {}", cand.id);
        }
    }

    #[test]
    fn wlc_fills_the_least_loaded_first_then_follows_weights() {
        // Server 1 already has 10 active connections; server 2 none.
        let cs = [candidate(1, 1, 10, 0), candidate(2, 1, 0, 0)];
        let p = plan(
            Scheduler::WeightedLeastConnection,
            SchedFlags::default(),
            &cs,
        );
        assert!(p.table[..10].iter().all(|&id| id == 2));
        let c = counts(&p.table);
        // Over the whole ring both end up with the same total.
        assert_eq!(c[&2] - c[&1], 10);
    }

    #[test]
    fn wlc_shares_follow_weights() {
        let cs = [candidate(1, 1, 0, 0), candidate(2, 3, 0, 0)];
        let p = plan(
            Scheduler::WeightedLeastConnection,
            SchedFlags::default(),
            &cs,
        );
        let c = counts(&p.table);
        assert_eq!(c[&2], 3 * c[&1]);
    }

    #[test]
    fn lc_ignores_weights_and_counts_inactive_as_a_256th() {
        let cs = [candidate(1, 1, 0, 300), candidate(2, 100, 1, 0)];
        let p = plan(Scheduler::LeastConnection, SchedFlags::default(), &cs);
        // Overheads: 300 against 256: server 2 is less loaded despite its active connection.
        assert_eq!(p.table[0], 2);
        let c = counts(&p.table);
        assert!((c[&1] as i64 - c[&2] as i64).abs() <= 2);
    }

    #[test]
    fn wlc_ties_go_to_the_first_listed() {
        let cs = [candidate(5, 1, 0, 0), candidate(6, 1, 0, 0)];
        let p = plan(
            Scheduler::WeightedLeastConnection,
            SchedFlags::default(),
            &cs,
        );
        assert_eq!(&p.table[..4], [5, 6, 5, 6]);
    }

    #[test]
    fn sed_and_nq_differ_on_idle_servers() {
        // A fast server (weight 10) with 5 active connections and an idle slow one (weight 1).
        let cs = [candidate(1, 10, 5, 0), candidate(2, 1, 0, 0)];
        let sed = plan(Scheduler::ShortestExpectedDelay, SchedFlags::default(), &cs);
        // sed: (5+1)/10 = 0.6 against (0+1)/1 = 1: the fast one.
        assert_eq!(sed.table[0], 1);
        let nq = plan(Scheduler::NeverQueue, SchedFlags::default(), &cs);
        // nq: an idle server is taken at once.
        assert_eq!(nq.table[0], 2);
        assert_eq!(nq.table[1], 1);
    }

    #[test]
    fn no_candidate_gives_an_empty_plan() {
        for s in Scheduler::ALL {
            let p = plan(s, SchedFlags::default(), &[candidate(1, 0, 0, 0)]);
            assert!(
                p.table.iter().all(|&id| id == NO_REAL_SERVER),
                "{s}: {:?}",
                &p.table[..p.table.len().min(4)]
            );
            if s.is_ring() {
                assert_eq!(p.ring_len, 0, "{s}");
            }
        }
    }

    #[test]
    fn sh_buckets_follow_weights_and_dh_ignores_them() {
        let cs = [candidate(1, 1, 0, 0), candidate(2, 3, 0, 0)];
        let sh = plan(Scheduler::SourceHashing, SchedFlags::default(), &cs);
        assert_eq!(sh.table.len(), LOOKUP_TABLE_SIZE as usize);
        assert_eq!(&sh.table[..8], [1, 2, 2, 2, 1, 2, 2, 2]);
        assert_eq!(sh.flags, 0);
        let port = SchedFlags {
            fallback: false,
            port: true,
        };
        assert_eq!(
            plan(Scheduler::SourceHashing, port, &cs).flags,
            SERVICE_HASH_SOURCE_PORT
        );
        let dh = plan(Scheduler::DestinationHashing, SchedFlags::default(), &cs);
        assert_eq!(&dh.table[..4], [1, 2, 1, 2]);
        assert_eq!(dh.flags, SERVICE_HASH_DESTINATION);
    }

    #[test]
    fn mh_is_maglev_and_takes_the_port_flag() {
        let cs = [candidate(1, 1, 0, 0), candidate(2, 1, 0, 0)];
        let p = plan(Scheduler::MaglevHashing, SchedFlags::default(), &cs);
        assert_eq!(p.ring_len, 0);
        let c = counts(&p.table);
        assert!((c[&1] as i64 - c[&2] as i64).abs() < 700);
        let port = SchedFlags {
            fallback: true,
            port: true,
        };
        assert_eq!(
            plan(Scheduler::MaglevHashing, port, &cs).flags,
            SERVICE_HASH_SOURCE_PORT
        );
    }
}
