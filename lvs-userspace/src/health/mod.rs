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
pub mod misc;
pub mod script;
pub mod tcp;
pub mod http;
pub mod plan;
pub mod supervisor;
