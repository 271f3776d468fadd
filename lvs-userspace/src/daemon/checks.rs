//! Health checking as the daemon sees it: batches of updates to apply, a new configuration
//! to follow, and a shutdown. The real one is the health `Supervisor`; tests send updates by
//! hand.

use std::future::Future;

use crate::{
    health::{HealthUpdate, Quorums, Supervisor},
    logic::config::Config,
};

/// The running health checks.
pub trait HealthChecks {
    /// The next batch of updates; `None` once checking has stopped.
    fn updates(&mut self) -> impl Future<Output = Option<Vec<HealthUpdate>>> + Send;
    /// Follows a new configuration: unchanged checks keep their state and timers.
    fn reload(&self, config: &Config) -> impl Future<Output = ()> + Send;
    /// Stops checking (running `omega` notifiers first).
    fn shutdown(self) -> impl Future<Output = ()> + Send;
    /// Whether each checked service has its quorum, as of the last batch of updates.
    fn quorums(&self) -> Quorums;
}

impl HealthChecks for Supervisor {
    async fn updates(&mut self) -> Option<Vec<HealthUpdate>> {
        Supervisor::updates(self).await
    }

    async fn reload(&self, config: &Config) {
        Supervisor::reload(self, config).await;
    }

    async fn shutdown(self) {
        Supervisor::shutdown(self).await;
    }

    fn quorums(&self) -> Quorums {
        Supervisor::quorums(self)
    }
}
