//! Rate estimation as IPVS does it (`ip_vs_est.c`): every two seconds the counters' increase
//! is turned into a per-second rate and folded into a smoothed average with weight 1/4, so a
//! rate reflects roughly the last eight seconds. Each service also keeps its last minutes of
//! estimates, for the status page's graphs.

use std::collections::{HashMap, VecDeque};

use lvs_common::TrafficStats;
use serde::{Deserialize, Serialize};

use crate::logic::{
    dataplane::{DataPlane, DataPlaneError},
    model::Model,
};

/// How often the estimators take a sample, as in IPVS.
pub const SAMPLE_INTERVAL_S: f64 = 2.0;

/// How many samples of each service's estimates are kept: five minutes. Only services keep
/// them; real servers can be thousands.
pub const HISTORY_SAMPLES: usize = 150;

/// Smoothed rates, per second. Outbound rates are always zero in direct routing (replies do
/// not pass the director), so only inbound ones are kept.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Rates {
    pub connections: f64,
    pub packets: f64,
    pub bytes: f64,
}

/// One counter set's estimator.
#[derive(Clone, Copy, Debug, Default)]
pub struct Estimator {
    last: Option<TrafficStats>,
    rates: Rates,
}

/// An estimator as a restarted director takes it over: the counters of its last sample and
/// its rates.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeptEstimator {
    /// The service's index or the real server's id.
    pub key: u32,
    pub connections: u64,
    pub packets: u64,
    pub bytes: u64,
    pub rates: Rates,
}

/// A rate book kept across a restart, and when its last sample was taken.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeptRates {
    pub at_unix_ms: u64,
    pub services: Vec<KeptEstimator>,
    pub real_servers: Vec<KeptEstimator>,
}

impl Estimator {
    /// Takes a sample of the counters, `elapsed_s` seconds after the previous one. Counters
    /// that went down (zeroed with `-Z`, or a reused slot) restart the estimate from zero.
    pub fn sample(&mut self, stats: TrafficStats, elapsed_s: f64) {
        let Some(last) = self.last.replace(stats) else {
            return;
        };
        if elapsed_s <= 0.0 {
            return;
        }
        if stats.connections < last.connections
            || stats.packets < last.packets
            || stats.bytes < last.bytes
        {
            self.rates = Rates::default();
            return;
        }
        let rate = |now: u64, then: u64| (now - then) as f64 / elapsed_s;
        let smooth = |average: &mut f64, rate: f64| *average += (rate - *average) / 4.0;
        smooth(
            &mut self.rates.connections,
            rate(stats.connections, last.connections),
        );
        smooth(&mut self.rates.packets, rate(stats.packets, last.packets));
        smooth(&mut self.rates.bytes, rate(stats.bytes, last.bytes));
    }

    pub fn rates(&self) -> Rates {
        self.rates
    }

    /// Forgets everything, as `ipvsadm -Z` does for the rates too.
    pub fn reset(&mut self) {
        *self = Self::default();
    }
}

/// The estimators of every service (by index) and real server (by id).
#[derive(Debug, Default)]
pub struct RateBook {
    services: HashMap<u32, Estimator>,
    real_servers: HashMap<u32, Estimator>,
    /// Each service's estimates after its last samples, oldest first.
    service_history: HashMap<u32, VecDeque<Rates>>,
    /// Seconds between the kept book's last sample and the restart, added to the first
    /// sample's interval, so that it measures the counters' increase over the whole gap.
    gap_s: f64,
}

fn keep(estimators: &HashMap<u32, Estimator>) -> Vec<KeptEstimator> {
    let mut kept: Vec<KeptEstimator> = estimators
        .iter()
        .filter_map(|(&key, estimator)| {
            let last = estimator.last?;
            Some(KeptEstimator {
                key,
                connections: last.connections,
                packets: last.packets,
                bytes: last.bytes,
                rates: estimator.rates,
            })
        })
        .collect();
    kept.sort_by_key(|e| e.key);
    kept
}

fn take_back(kept: &[KeptEstimator]) -> HashMap<u32, Estimator> {
    kept.iter()
        .map(|e| {
            let last = TrafficStats {
                connections: e.connections,
                packets: e.packets,
                bytes: e.bytes,
            };
            (
                e.key,
                Estimator {
                    last: Some(last),
                    rates: e.rates,
                },
            )
        })
        .collect()
}

impl RateBook {
    /// The book as a restarted director takes it over (`restored`), sampled at `at_unix_ms`.
    pub fn kept(&self, at_unix_ms: u64) -> KeptRates {
        KeptRates {
            at_unix_ms,
            services: keep(&self.services),
            real_servers: keep(&self.real_servers),
        }
    }

    /// A book that goes on from a kept one, `now_unix_ms` being the time of the restart: the
    /// rates carry on, and the first sample measures over the gap since the kept sample.
    /// Valid only with the same indices and ids, as an adopted data plane keeps them.
    pub fn restored(kept: &KeptRates, now_unix_ms: u64) -> Self {
        Self {
            services: take_back(&kept.services),
            real_servers: take_back(&kept.real_servers),
            // The page's graphs start anew: only the last estimates are kept.
            service_history: HashMap::new(),
            gap_s: now_unix_ms.saturating_sub(kept.at_unix_ms) as f64 / 1000.0,
        }
    }

    /// Samples every configured service and real server; forgets those no longer configured.
    pub fn sample(
        &mut self,
        model: &Model,
        dataplane: &dyn DataPlane,
        elapsed_s: f64,
    ) -> Result<(), DataPlaneError> {
        let elapsed_s = elapsed_s + std::mem::take(&mut self.gap_s);
        let mut services = HashMap::new();
        let mut real_servers = HashMap::new();
        let mut service_history = HashMap::new();
        let real_server_stats = model.real_server_stats(dataplane)?;
        for view in model.services() {
            let mut estimator = self.services.remove(&view.index).unwrap_or_default();
            estimator.sample(dataplane.service_stats(view.index)?, elapsed_s);
            let mut history = self.service_history.remove(&view.index).unwrap_or_default();
            if history.len() == HISTORY_SAMPLES {
                history.pop_front();
            }
            history.push_back(estimator.rates());
            service_history.insert(view.index, history);
            services.insert(view.index, estimator);
            for rs in &view.real_servers {
                let mut estimator = self.real_servers.remove(&rs.id).unwrap_or_default();
                let stats = real_server_stats.of(rs.id);
                estimator.sample(stats, elapsed_s);
                real_servers.insert(rs.id, estimator);
            }
        }
        self.services = services;
        self.real_servers = real_servers;
        self.service_history = service_history;
        Ok(())
    }

    /// A service's estimates after each of its last samples (up to [`HISTORY_SAMPLES`]),
    /// oldest first.
    pub fn service_history(&self, index: u32) -> Vec<Rates> {
        self.service_history
            .get(&index)
            .map(|history| history.iter().copied().collect())
            .unwrap_or_default()
    }

    pub fn service(&self, index: u32) -> Rates {
        self.services
            .get(&index)
            .map(Estimator::rates)
            .unwrap_or_default()
    }

    pub fn real_server(&self, id: u32) -> Rates {
        self.real_servers
            .get(&id)
            .map(Estimator::rates)
            .unwrap_or_default()
    }

    /// Forgets every estimate, for `ipvsadm -Z`.
    pub fn reset(&mut self) {
        self.services.values_mut().for_each(Estimator::reset);
        self.real_servers.values_mut().for_each(Estimator::reset);
        self.service_history.values_mut().for_each(VecDeque::clear);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_kept_book_goes_on_over_the_gap_of_a_restart() {
        let mut before = Estimator::default();
        before.sample(stats(0, 0, 0), 2.0);
        before.sample(stats(200, 2000, 200_000), 2.0);
        let book = RateBook {
            services: HashMap::from([(3, before)]),
            ..RateBook::default()
        };
        let kept = book.kept(10_000);
        let text = serde_json::to_string(&kept).unwrap();
        let kept: KeptRates = serde_json::from_str(&text).unwrap();
        // Restarted 8 s later; the first sample 2 s after that sees 10 s of traffic at the
        // same pace (100 connections a second), so the rate stays where it was.
        let mut after = RateBook::restored(&kept, 18_000);
        assert_eq!(after.service(3), before.rates(), "the rates carry on");
        assert_eq!(after.gap_s, 8.0);
        let gap = after.gap_s;
        let estimator = after.services.get_mut(&3).unwrap();
        estimator.sample(stats(1200, 12_000, 1_200_000), 2.0 + gap);
        let expected = before.rates().connections + (100.0 - before.rates().connections) / 4.0;
        assert_eq!(after.service(3).connections, expected);
    }

    fn stats(connections: u64, packets: u64, bytes: u64) -> TrafficStats {
        TrafficStats {
            connections,
            packets,
            bytes,
        }
    }

    #[test]
    fn a_steady_rate_is_approached_by_quarters() {
        let mut e = Estimator::default();
        e.sample(stats(0, 0, 0), 2.0);
        assert_eq!(e.rates(), Rates::default(), "one sample has no rate");
        e.sample(stats(20, 200, 20_000), 2.0);
        assert_eq!(e.rates().connections, 2.5, "a quarter of 10/s");
        for i in 2..40u64 {
            e.sample(stats(20 * i, 200 * i, 20_000 * i), 2.0);
        }
        assert!((e.rates().connections - 10.0).abs() < 0.01);
        assert!((e.rates().packets - 100.0).abs() < 0.1);
        assert!((e.rates().bytes - 10_000.0).abs() < 10.0);
    }

    /// A service keeps its last minutes of estimates, and forgets them when it goes or the
    /// rates are zeroed.
    #[test]
    fn services_keep_their_recent_estimates() {
        use crate::logic::{config, dataplane::FakeDataPlane};

        let services = |text: &str| config::parse(text, "t.toml").unwrap().services;
        let one = "[director]\ninterface = \"eth0\"\n[[virtual_server]]\n\
                   address = \"10.0.0.100\"\nport = 80\n";
        let mut model = Model::new(&services(one)).unwrap();
        let dataplane = FakeDataPlane::default();
        let mut book = RateBook::default();
        for _ in 0..HISTORY_SAMPLES + 10 {
            book.sample(&model, &dataplane, 2.0).unwrap();
        }
        assert_eq!(book.service_history(0).len(), HISTORY_SAMPLES);
        book.reset();
        assert!(book.service_history(0).is_empty());
        book.sample(&model, &dataplane, 2.0).unwrap();
        assert_eq!(book.service_history(0).len(), 1);
        model.apply(&[]).unwrap();
        book.sample(&model, &dataplane, 2.0).unwrap();
        assert!(
            book.service_history(0).is_empty(),
            "a removed service's history goes"
        );
    }

    #[test]
    fn zeroed_counters_restart_the_estimate() {
        let mut e = Estimator::default();
        e.sample(stats(0, 0, 0), 2.0);
        e.sample(stats(100, 100, 100), 2.0);
        e.sample(stats(0, 0, 0), 2.0);
        assert_eq!(e.rates(), Rates::default());
        e.sample(stats(8, 8, 8), 2.0);
        assert_eq!(e.rates().connections, 1.0);
    }
}
