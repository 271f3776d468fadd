//! Health checking in keepalived's manner: checkers probe the real servers, a pure state
//! machine turns results into up and down, and a supervisor runs it all on tokio and tells the
//! director which real servers get new flows.
//!
//! - `config`: the keepalived keywords in the TOML config, validated.
//! - `state`: the pure state machines (retry, alpha, inhibit, quorum, hysteresis, sorry server).
//! - `http`, `tcp`, `misc`: the checkers (`HTTP_GET`/`SSL_GET`, `TCP_CHECK`, `MISC_CHECK`);
//!   `udp`, `dns`, `ping`: the datagram checkers (`UDP_CHECK`, `DNS_CHECK`, `PING_CHECK`),
//!   with the DNS and ICMP messages built and judged apart from the sockets
//!   (`dns::message`, `ping::echo`).
//! - `script`: running notify and check programs without a shell, bounded in time.
//! - `plan`: which checks run, shared between services when they are the same check.
//! - `supervisor`: the task that schedules checks and publishes results.

pub mod state;

pub use crate::base::health::{
    Admission, CheckResult, Failure, HealthState, HealthStatus, Outcome,
};
pub use supervisor::{Checkers, HealthUpdate, Options, Prober, Quorums, Supervisor};

use std::sync::Arc;

use lvs_common::keys::ServiceMapKey;

use crate::{base::health::HealthRecord, logic::config::Config};

/// Starts health checking for a configuration with the real checkers: the supervisor and
/// the initial health of the checked real servers.
pub fn start(config: &Config) -> (Supervisor, Vec<HealthUpdate>) {
    Supervisor::start_on_own_thread(config, Arc::new(Checkers::default()), Options::default())
}

/// Starts health checking that keeps its states in `memory`, starting from the states kept
/// there when `remember` (a director adopting a running data plane), and as each check's
/// configuration says otherwise.
pub fn start_remembering(
    config: &Config,
    memory: std::path::PathBuf,
    remember: bool,
) -> (Supervisor, Vec<HealthUpdate>) {
    let remembered = if remember {
        memory::read(&memory)
    } else {
        Default::default()
    };
    let options = Options {
        memory: Some(memory),
        remembered,
        ..Options::default()
    };
    Supervisor::start_on_own_thread(config, Arc::new(Checkers::default()), options)
}

/// Gives the model (any `HealthRecord`) what health checking said; returns whether an
/// admission changed (then the data plane needs a `sync`).
pub fn apply(model: &mut impl HealthRecord<ServiceMapKey>, updates: Vec<HealthUpdate>) -> bool {
    let mut changed = false;
    for update in updates {
        changed |= model.set_health(update.service, update.address, update.status);
    }
    changed
}
pub mod dns;
pub mod http;
pub mod memory;
pub mod misc;
pub mod ping;
pub mod plan;
pub mod script;
pub mod supervisor;
pub mod tcp;
pub mod udp;

#[cfg(test)]
mod tests {
    use std::{collections::HashMap, net::Ipv4Addr};

    use super::*;

    /// A record that keeps each server's admission, as the model does.
    #[derive(Default)]
    struct Record(HashMap<(ServiceMapKey, Ipv4Addr), Admission>);

    impl HealthRecord<ServiceMapKey> for Record {
        fn set_health(
            &mut self,
            service: ServiceMapKey,
            address: Ipv4Addr,
            status: HealthStatus,
        ) -> bool {
            self.0.insert((service, address), status.admission) != Some(status.admission)
        }
    }

    #[test]
    fn apply_hands_every_update_over_and_says_whether_an_admission_changed() {
        let service = ServiceMapKey::new(
            Ipv4Addr::from([10, 0, 0, 1]).into(),
            80u16,
            lvs_common::IPPROTO_TCP,
        );
        let update = |last, admission| HealthUpdate {
            service,
            address: Ipv4Addr::new(10, 0, 0, last),
            status: HealthStatus {
                state: HealthState::Up,
                admission,
                checker: None,
                last_result: None,
            },
        };
        let mut record = Record::default();
        let both = vec![
            update(11, Admission::Weight(1)),
            update(12, Admission::Removed),
        ];
        assert!(apply(&mut record, both));
        assert_eq!(record.0.len(), 2);
        assert!(!apply(&mut record, vec![update(11, Admission::Weight(1))]));
        assert!(!apply(&mut record, Vec::new()));
        let one_changes = vec![
            update(11, Admission::Weight(1)),
            update(12, Admission::Weight(0)),
        ];
        assert!(apply(&mut record, one_changes));
    }
}
