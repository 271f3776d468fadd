//! Health checking in keepalived's manner: checkers probe the real servers, a pure state
//! machine turns results into up and down, and a supervisor runs it all on tokio and tells the
//! director which real servers get new flows.
//!
//! - `config`: the keepalived keywords in the TOML config, validated.
//! - `state`: the pure state machines (retry, alpha, inhibit, quorum, hysteresis, sorry server).
//! - `http`, `tcp`, `misc`: the checkers (`HTTP_GET`/`SSL_GET`, `TCP_CHECK`, `MISC_CHECK`).
//! - `script`: running notify and check programs without a shell, bounded in time.
//! - `plan`: which checks run, shared between services when they are the same check.
//! - `supervisor`: the task that schedules checks and publishes results.

pub mod config;
pub mod outcome;
pub mod state;

pub use outcome::{Admission, CheckResult, Failure, HealthState, HealthStatus, Outcome};
pub use supervisor::{Checkers, HealthUpdate, Options, Prober, Supervisor};

use std::sync::Arc;

use crate::{config::Config, model::Model};

/// Starts health checking for a configuration with the real checkers: the supervisor and
/// the initial health of the checked real servers.
pub fn start(config: &Config) -> (Supervisor, Vec<HealthUpdate>) {
    Supervisor::start(config, Arc::new(Checkers::default()), Options::default())
}

/// Gives the model what health checking said; returns whether an admission changed (then
/// the data plane needs a `sync`).
///
/// The model does not know health checking: it takes one `base::health::HealthStatus` at a
/// time through `Model::set_health`, so the two are tested apart. This loop belongs to the
/// daemon, which owns both; it stays here, with its signature, until the director calls
/// `set_health` itself, and it is the only place health checking names the model.
pub fn apply(model: &mut Model, updates: Vec<HealthUpdate>) -> bool {
    let mut changed = false;
    for update in updates {
        changed |= model.set_health(update.service, update.address, update.status);
    }
    changed
}
pub mod http;
pub mod misc;
pub mod plan;
pub mod script;
pub mod supervisor;
pub mod tcp;
