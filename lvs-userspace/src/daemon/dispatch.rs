//! The daemon's answers to control requests: the status, the connection list, `lvsadm`'s
//! changes and listings, and a reload of the config file.

use anyhow::{Context as _, Result};
use tracing::{info, warn};

use super::{Director, HealthChecks, settings};
use crate::{
    io::{
        control::{Request, Response},
        netlink::DirectorNetlink,
    },
    logic::{
        api, config, conntrack,
        dataplane::{DataPlane, DataPlaneError},
        deny::{DenyError, DenyList},
        runtime,
        status::{FlowTable, Status},
    },
};

impl<D: DataPlane, N: DirectorNetlink> Director<D, N> {
    /// Reads the config file again and applies it whole, or not at all.
    pub(super) async fn reload<C: HealthChecks>(&mut self, health: &C) -> Result<String> {
        let path = self
            .config_path
            .clone()
            .context("the director was started without a config file")?;
        let new = config::load(&path).map_err(|error| match error {
            config::ConfigError::Invalid { problems } => anyhow::anyhow!(
                "{} is not valid, nothing changed:\n{}",
                path.display(),
                problems
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("\n")
            ),
            other => anyhow::anyhow!("{other}; nothing changed"),
        })?;
        // The new sync daemons' key file and sockets, before anything changes: a bad key
        // refuses the whole reload.
        let prepared = self
            .sync
            .prepare(new.sync.as_ref(), &self.netlink, conntrack::monotonic_ns())
            .await
            .map_err(|error| anyhow::anyhow!("{error:#}; nothing changed"))?;
        let sync_config = new.sync.clone();
        let bgp = new.bgp;
        let message = runtime::reload(
            &mut self.model,
            &mut self.deny,
            &mut self.settings,
            new,
            &path,
        )?;
        // A reload sets the sync daemons to the file's, as it sets the services.
        self.sync.apply(prepared);
        self.sync_config = sync_config;
        // A table that changes takes its routes with it; the end of the event announces
        // anew.
        self.reconfigure_bgp(bgp).await;
        self.deny.sync(&mut self.dataplane)?;
        self.dataplane
            .set_settings(settings(&self.settings, &self.deny))?;
        // Unchanged checks keep their state and timers; the supervisor re-sends every status.
        health.reload(&self.config()).await;
        self.after_change().await?;
        Ok(message)
    }

    /// The status document: what `lvs status` shows and the status listener serves.
    pub(super) fn status(&self) -> Result<Status, DataPlaneError> {
        let mut status = Status::collect(
            &self.model,
            &self.dataplane,
            &self.rates,
            self.settings.timeouts,
            &self.interface,
            self.mode,
            FlowTable {
                size: self.settings.flow_table_size,
                entries: self.flows_in_table,
            },
        )?;
        status.sync = Box::new(self.sync.status(conntrack::monotonic_ns()));
        status.bgp = self.bgp_status();
        status.deny = self.deny.listing(&self.dataplane)?;
        Ok(status)
    }

    fn connections(&self) -> Result<Vec<conntrack::Connection>> {
        let flows = self.dataplane.flows()?;
        let templates = self.dataplane.templates()?;
        Ok(conntrack::list(
            &self.model,
            &flows,
            &templates,
            conntrack::monotonic_ns(),
            &settings(&self.settings, &self.deny),
        ))
    }

    /// Applies `lvsadm`'s changes to the wanted services: all of them, or none.
    async fn apply_changes<C: HealthChecks>(
        &mut self,
        changes: &[api::Change],
        health: &C,
    ) -> Response {
        let applied = match runtime::apply_changes(&mut self.model, self.settings.timeouts, changes)
        {
            Ok(applied) => applied,
            Err(refusal) => return refusal.into(),
        };
        self.settings.timeouts = applied.timeouts;
        health.reload(&self.config()).await;
        let result = async {
            self.dataplane
                .set_settings(settings(&self.settings, &self.deny))?;
            self.after_change().await?;
            for service in &applied.zeroed {
                self.zero(service.as_ref())?;
            }
            anyhow::Ok(())
        }
        .await;
        match result {
            Ok(()) => {
                info!(changes = changes.len(), "applied lvsadm changes");
                Response::Ok
            }
            Err(error) => Response::Error {
                message: format!("{error:#}"),
                change: None,
            },
        }
    }

    /// `lvs deny add` and `lvs deny del`: the list changes whole or not at all, then the
    /// data plane follows (prefixes first, so the program never looks up a list that is
    /// not there yet).
    fn change_deny_list(
        &mut self,
        change: impl FnOnce(&mut DenyList) -> Result<(), DenyError>,
    ) -> Response {
        let mut next = self.deny.clone();
        if let Err(error) = change(&mut next) {
            return Response::Error {
                message: error.to_string(),
                change: None,
            };
        }
        self.deny = next;
        let written = self.deny.sync(&mut self.dataplane).and_then(|()| {
            self.dataplane
                .set_settings(settings(&self.settings, &self.deny))
        });
        match written {
            Ok(()) => {
                info!(prefixes = self.deny.wanted().count(), "deny list changed");
                Response::Ok
            }
            Err(error) => Response::Error {
                message: format!("{:#}", anyhow::Error::from(error)),
                change: None,
            },
        }
    }

    /// Zeroes the counters (and rates) of one service and its real servers, or of all.
    fn zero(&mut self, service: Option<&api::ServiceKey>) -> Result<()> {
        for counters in runtime::counters_to_zero(&self.model, service) {
            self.dataplane.zero_service_stats(counters.service_index)?;
            for id in counters.real_server_ids {
                self.dataplane.zero_real_server_stats(id)?;
            }
        }
        self.rates.reset();
        Ok(())
    }

    fn snapshot(&self, with_connections: bool) -> Result<api::Snapshot> {
        let connections = if with_connections {
            self.connections()?
        } else {
            Vec::new()
        };
        Ok(runtime::snapshot::collect(
            &self.model,
            &self.dataplane,
            &self.rates,
            self.settings.timeouts,
            &connections,
            self.settings.flow_table_size,
        )?)
    }

    pub(super) async fn answer<C: HealthChecks>(
        &mut self,
        request: Request,
        health: &C,
    ) -> Response {
        let error = |error: anyhow::Error| Response::Error {
            message: format!("{error:#}"),
            change: None,
        };
        match request {
            Request::Status {} => match self.status() {
                Ok(status) => Response::Status(status),
                Err(e) => error(e.into()),
            },
            Request::Connections {} => match self.connections() {
                Ok(list) => Response::Connections(list),
                Err(e) => error(e),
            },
            Request::Apply { changes } => self.apply_changes(&changes, health).await,
            Request::Snapshot { connections } => match self.snapshot(connections) {
                Ok(snapshot) => Response::Snapshot(snapshot),
                Err(e) => error(e),
            },
            Request::Reload {} => match self.reload(health).await {
                Ok(message) => {
                    info!("{message}");
                    Response::Done { message }
                }
                Err(e) => {
                    warn!("reload refused: {e:#}");
                    error(e)
                }
            },
            Request::StartSyncDaemon { daemon } => {
                let started = self
                    .sync
                    .start(
                        daemon,
                        self.config_path.as_deref(),
                        &self.netlink,
                        conntrack::monotonic_ns(),
                    )
                    .await;
                match started {
                    Ok(()) => Response::Ok,
                    Err(e) => error(e),
                }
            }
            Request::StopSyncDaemon { role } => match self.sync.stop_role(role) {
                Ok(()) => Response::Ok,
                Err(e) => error(e),
            },
            Request::SyncDaemons {} => Response::Daemons(api::Daemons {
                sync_daemons: self.sync.running(),
                sync_peers: self.sync.status(conntrack::monotonic_ns()).peers,
                bgp: self.bgp_status(),
            }),
            Request::DenyAdd { prefixes } => self.change_deny_list(|list| list.add(&prefixes)),
            Request::DenyDelete { prefixes } => {
                self.change_deny_list(|list| list.delete(&prefixes))
            }
            Request::DenyList {} => match self.deny.listing(&self.dataplane) {
                Ok(list) => Response::Denied(list),
                Err(e) => error(e.into()),
            },
        }
    }
}
