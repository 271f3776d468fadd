//! The event loop: the sources of events (neighbour notifications, timers, health checking,
//! SIGHUP, control requests) and what the daemon does for each.
//!
//! A new source is a field of [`Sources`], a branch of [`Sources::next`] and a variant of
//! [`Event`]; its handling is one arm of [`Director::handle`], which tests call directly.

use std::{
    future::Future,
    pin::Pin,
    time::{Duration, Instant},
};

use anyhow::Result;
use futures::{StreamExt as _, stream::BoxStream};
use tokio::{
    sync::mpsc,
    time::{Interval, MissedTickBehavior},
};
use tracing::{info, warn};

use super::{Director, HealthChecks, Stop, neighbours, settings, sync::Received};
use crate::{
    health::{self, HealthUpdate},
    io::{
        control::{Envelope, Request},
        netlink::{DirectorNetlink, NeighbourEvent},
    },
    logic::{conntrack, dataplane::DataPlane, rates},
};

/// How often the neighbour table is read again even without a notification.
const NEIGHBOUR_RESYNC: Duration = Duration::from_secs(1);
/// How often resolved real servers are re-confirmed (see `Netlink::resolve`).
const NEIGHBOUR_REFRESH: Duration = Duration::from_secs(5);
/// How often the sweep takes a step: a slice of the flow table (expired connections deleted),
/// and at the end of a pass the counts refreshed (see `conntrack::Sweeper`).
const SWEEP_INTERVAL: Duration = Duration::from_millis(conntrack::SWEEP_STEP_INTERVAL_MS);

/// Something the daemon acts on.
pub(super) enum Event {
    /// The kernel changed a neighbour entry.
    Neighbour(NeighbourEvent),
    /// Time to read the neighbour table again and ask for unresolved servers.
    ResyncNeighbours,
    /// Time to re-confirm every resolved real server.
    RefreshNeighbours,
    /// Time to sweep the flow table.
    Sweep,
    /// Health checking changed some real servers' admissions.
    Health(Vec<HealthUpdate>),
    /// Time to sample the rate estimators; `elapsed` seconds since the last sample.
    SampleRates { elapsed: f64 },
    /// SIGHUP: read the config file again.
    Hangup,
    /// A control request and where its answer goes.
    Request(Envelope),
    /// A datagram the sync backup received.
    SyncDatagram(Received),
}

/// Where events come from, apart from health checking, which the loop holds separately
/// because a reload talks to it too.
pub(super) struct Sources {
    neighbour_events: BoxStream<'static, NeighbourEvent>,
    hangups: BoxStream<'static, ()>,
    requests: mpsc::Receiver<Envelope>,
    sync_datagrams: mpsc::Receiver<Received>,
    resync: Interval,
    refresh: Interval,
    sweep: Interval,
    rate_tick: Interval,
    last_rate_sample: Instant,
}

impl Sources {
    pub(super) fn new(
        neighbour_events: BoxStream<'static, NeighbourEvent>,
        hangups: BoxStream<'static, ()>,
        requests: mpsc::Receiver<Envelope>,
        sync_datagrams: mpsc::Receiver<Received>,
    ) -> Self {
        let timer = |period| {
            let mut timer = tokio::time::interval(period);
            timer.set_missed_tick_behavior(MissedTickBehavior::Delay);
            timer
        };
        Self {
            neighbour_events,
            hangups,
            requests,
            sync_datagrams,
            resync: timer(NEIGHBOUR_RESYNC),
            refresh: timer(NEIGHBOUR_REFRESH),
            sweep: timer(SWEEP_INTERVAL),
            rate_tick: timer(Duration::from_secs_f64(rates::SAMPLE_INTERVAL_S)),
            last_rate_sample: Instant::now(),
        }
    }

    /// The next event, or how to stop once `shutdown` completes. A source that has ended (a
    /// stream, health checking) is simply not waited on any more.
    pub(super) async fn next(
        &mut self,
        health: &mut impl HealthChecks,
        shutdown: Pin<&mut impl Future<Output = Stop>>,
    ) -> Result<Event, Stop> {
        let event = tokio::select! {
            stop = shutdown => return Err(stop),
            Some(event) = self.neighbour_events.next() => Event::Neighbour(event),
            _ = self.resync.tick() => Event::ResyncNeighbours,
            _ = self.refresh.tick() => Event::RefreshNeighbours,
            _ = self.sweep.tick() => Event::Sweep,
            Some(updates) = health.updates() => Event::Health(updates),
            _ = self.rate_tick.tick() => {
                let elapsed = self.last_rate_sample.elapsed().as_secs_f64();
                self.last_rate_sample = Instant::now();
                Event::SampleRates { elapsed }
            }
            Some(()) = self.hangups.next() => Event::Hangup,
            Some(envelope) = self.requests.recv() => Event::Request(envelope),
            Some(received) = self.sync_datagrams.recv() => Event::SyncDatagram(received),
        };
        Ok(event)
    }
}

impl<D: DataPlane, N: DirectorNetlink> Director<D, N> {
    /// Writes the rate estimates for the next director (atomically: a crash leaves the old
    /// file or the new one).
    fn keep_rates(&self) {
        let Some(path) = &self.kept_rates else {
            return;
        };
        let kept = self.rates.kept(super::unix_ms());
        let partial = path.with_extension("rates.partial");
        let written = serde_json::to_vec(&kept)
            .map_err(std::io::Error::other)
            .and_then(|bytes| std::fs::write(&partial, bytes))
            .and_then(|()| std::fs::rename(&partial, path));
        if let Err(error) = written {
            warn!(%error, path = %path.display(), "keeping the rate estimates failed");
        }
    }

    /// Handles events until `shutdown` completes, and returns how it said to stop. An error
    /// (the data plane or netlink failing) ends the loop and so the daemon.
    pub(super) async fn event_loop<C: HealthChecks>(
        &mut self,
        health: &mut C,
        mut sources: Sources,
        shutdown: impl Future<Output = Stop>,
    ) -> Result<Stop> {
        tokio::pin!(shutdown);
        loop {
            match sources.next(health, shutdown.as_mut()).await {
                Ok(event) => self.handle(event, health).await?,
                Err(stop) => return Ok(stop),
            }
        }
    }

    /// Does what one event asks.
    pub(super) async fn handle<C: HealthChecks>(&mut self, event: Event, health: &C) -> Result<()> {
        let mut neighbours_changed = false;
        let mut health_changed = false;
        // The status listener's document is refreshed on the rate tick (the rates change)
        // and after anything that changes what it shows, not on every timer. Health updates
        // that change no admission (a check's last result) wait for the tick: with thousands
        // of checked servers they arrive many times a second, and each document reads every
        // counter from the data plane.
        let publish = matches!(
            event,
            Event::SampleRates { .. }
                | Event::Hangup
                | Event::Request((
                    Request::Apply { .. }
                        | Request::Reload {}
                        | Request::StartSyncDaemon { .. }
                        | Request::StopSyncDaemon { .. },
                    _
                ))
        );
        let announcements_may_change = matches!(
            event,
            Event::Health(_) | Event::Sweep | Event::Hangup | Event::Request(_)
        );
        match event {
            Event::Neighbour(event) => {
                let (address, if_index) = match &event {
                    NeighbourEvent::Changed(e) => (e.address, e.if_index),
                    NeighbourEvent::Deleted { address, if_index } => (*address, *if_index),
                };
                if if_index == self.link.index
                    && self.model.real_server_addresses().contains(&address)
                {
                    neighbours_changed =
                        neighbours::refresh(&self.netlink, &self.link, &mut self.model).await?;
                }
            }
            Event::ResyncNeighbours => {
                neighbours::request_resolutions(&self.netlink, &self.link, &self.model, false)
                    .await;
                neighbours_changed =
                    neighbours::refresh(&self.netlink, &self.link, &mut self.model).await?;
            }
            Event::RefreshNeighbours => {
                neighbours::request_resolutions(&self.netlink, &self.link, &self.model, true).await;
            }
            Event::Sweep => self.sweep()?,
            Event::Health(updates) => health_changed = health::apply(&mut self.model, updates),
            Event::SampleRates { elapsed } => {
                self.rates.sample(&self.model, &self.dataplane, elapsed)?;
                self.keep_rates();
            }
            Event::Hangup => match self.reload(health).await {
                Ok(message) => info!("SIGHUP: {message}"),
                Err(error) => warn!("SIGHUP: reload refused: {error:#}"),
            },
            Event::Request((request, reply)) => {
                let response = self.answer(request, health).await;
                let _ = reply.send(response);
            }
            Event::SyncDatagram(received) => {
                let own: Vec<_> = self
                    .link
                    .networks
                    .iter()
                    .map(|&(address, _)| address)
                    .collect();
                self.sync.received(
                    received,
                    &self.model,
                    &mut self.dataplane,
                    &settings(&self.settings, &self.deny),
                    &own,
                    conntrack::monotonic_ns(),
                )?;
            }
        }
        if neighbours_changed || health_changed {
            let report = self.model.sync(&mut self.dataplane)?;
            info!(?report, "data plane updated");
        }
        // The announcements follow the quorums and the services at once; the sweep's tick
        // retries a route that could not be written. Neither reads more than the model.
        if announcements_may_change {
            self.announce_vips(&health.quorums()).await;
        }
        if publish || neighbours_changed || health_changed {
            self.publish_status();
        }
        Ok(())
    }

    /// Takes a step of the sweep: deletes the expired connections of a slice of the flow
    /// table and, when a pass over the table is done, expired templates, and takes in the
    /// pass's connection counts and how full the table is.
    /// The sync master sees the same slice, and sends what is due in it.
    fn sweep(&mut self) -> Result<()> {
        let timeouts = conntrack::TemplateTimeouts::of(&self.model);
        let now_ns = conntrack::monotonic_ns();
        let settings = settings(&self.settings, &self.deny);
        let step = self.sweeper.step_reading(
            &mut self.dataplane,
            now_ns,
            &settings,
            &self.model.generations(),
            |key| timeouts.get(key),
        )?;
        self.sync
            .after_sweep(step.as_ref(), &self.model, &settings, now_ns);
        if let Some(pass) = step.and_then(|step| step.pass) {
            self.model.set_connection_counts(pass.counts);
            self.flows_in_table = pass.live_flows;
            self.model.sync(&mut self.dataplane)?;
        }
        Ok(())
    }
}
