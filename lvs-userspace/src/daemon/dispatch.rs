//! The daemon's answers to control requests: the status, the connection list, `lvsadm`'s
//! changes and listings, and a reload of the config file.

use std::{collections::HashMap, net::Ipv4Addr};

use anyhow::{Context as _, Result};
use tracing::{info, warn};

use super::{Director, HealthChecks, settings};
use crate::{
    api, config, conntrack,
    control::{Request, Response},
    dataplane::DataPlane,
    netlink::DirectorNetlink,
    runtime,
    status::Status,
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
        let needs_restart = restart_only_changes(&self.config.director, &new.director);
        self.model
            .apply(&new.services)
            .context("the new configuration does not fit; nothing changed")?;
        self.dataplane.set_settings(settings(&new.director))?;
        let services = new.services.len();
        self.config.services = new.services;
        self.config.director.timeouts = new.director.timeouts;
        self.config.director.expire_nodest_conn = new.director.expire_nodest_conn;
        // Unchanged checks keep their state and timers; the supervisor re-sends every status.
        health.reload(&self.config).await;
        self.after_change().await?;
        let mut message = format!("reloaded {}: {services} services", path.display());
        if !needs_restart.is_empty() {
            message.push_str(&format!(
                "; these take effect only after a restart: {}",
                needs_restart.join(", ")
            ));
        }
        Ok(message)
    }

    /// Persistence timeouts in ns by service (VIP, port, protocol) as the templates key them.
    pub(super) fn template_timeouts(&self) -> HashMap<([u8; 4], [u8; 2], u8), u64> {
        self.config
            .services
            .iter()
            .filter_map(|s| {
                let timeout = u64::from(s.persistence?.timeout) * 1_000_000_000;
                Some((
                    (
                        s.address.octets(),
                        s.port.to_be_bytes(),
                        s.protocol.number(),
                    ),
                    timeout,
                ))
            })
            .collect()
    }

    fn connections(&self) -> Result<Vec<conntrack::Connection>> {
        let flows = self.dataplane.flows()?;
        let templates = self.dataplane.templates()?;
        let timeouts = self.template_timeouts();
        let generations = self.model.generations();
        let destinations: HashMap<(u32, u32), (Ipv4Addr, u16)> = self
            .model
            .services()
            .flat_map(|view| {
                let port = view.service.port;
                view.real_servers
                    .iter()
                    .map(|rs| ((rs.id, generations[&rs.id]), (rs.address, port)))
                    .collect::<Vec<_>>()
            })
            .collect();
        Ok(conntrack::connections(
            &flows,
            &templates,
            conntrack::monotonic_ns(),
            &settings(&self.config.director),
            |id, generation| destinations.get(&(id, generation)).copied(),
            |key| timeouts.get(&(key.vip, key.vport, key.protocol)).copied(),
        ))
    }

    /// Applies `lvsadm`'s changes to the wanted services: all of them, or none.
    async fn apply_changes<C: HealthChecks>(
        &mut self,
        changes: &[api::Change],
        health: &C,
    ) -> Response {
        let refuse = |message: String, change: Option<usize>| Response::Error { message, change };
        let current = runtime::rules(&self.config.services, self.config.director.timeouts);
        let next = match current.apply_all(changes) {
            Ok(next) => next,
            Err((index, error)) => return refuse(error.to_string(), Some(index)),
        };
        let services = match runtime::services(&next, &self.config.services) {
            Ok(services) => services,
            Err(error) => return refuse(error.to_string(), None),
        };
        if let Err(error) = self.model.apply(&services) {
            return refuse(error.to_string(), None);
        }
        self.config.services = services;
        self.config.director.timeouts = next.timeouts;
        health.reload(&self.config).await;
        let result = async {
            self.dataplane
                .set_settings(settings(&self.config.director))?;
            self.after_change().await?;
            for change in changes {
                if let api::Change::Zero { service } = change {
                    self.zero(service.as_ref())?;
                }
            }
            anyhow::Ok(())
        }
        .await;
        match result {
            Ok(()) => {
                info!(changes = changes.len(), "applied lvsadm changes");
                Response::Ok
            }
            Err(error) => refuse(format!("{error:#}"), None),
        }
    }

    /// Zeroes the counters (and rates) of one service and its real servers, or of all.
    fn zero(&mut self, service: Option<&api::ServiceKey>) -> Result<()> {
        let targets: Vec<(u32, Vec<u32>)> = self
            .model
            .services()
            .filter(|view| {
                service.is_none_or(|key| {
                    view.service.address == key.address
                        && view.service.port == key.port
                        && view.service.protocol == key.protocol
                })
            })
            .map(|view| {
                (
                    view.index,
                    view.real_servers.iter().map(|rs| rs.id).collect(),
                )
            })
            .collect();
        for (index, ids) in targets {
            self.dataplane.zero_service_stats(index)?;
            for id in ids {
                self.dataplane.zero_real_server_stats(id)?;
            }
        }
        self.rates.reset();
        Ok(())
    }

    fn snapshot(&self, with_connections: bool) -> Result<api::Snapshot> {
        let status = Status::collect(
            &self.model,
            &self.dataplane,
            &self.rates,
            self.config.director.timeouts,
            &self.interface,
            self.mode,
        )?;
        let connections = if with_connections {
            self.connections()?
        } else {
            Vec::new()
        };
        Ok(runtime::snapshot(
            &status,
            &self.config.services,
            &connections,
            self.config.director.flow_table_size,
        ))
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
            Request::Status {} => match Status::collect(
                &self.model,
                &self.dataplane,
                &self.rates,
                self.config.director.timeouts,
                &self.interface,
                self.mode,
            ) {
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
        }
    }
}

/// Director settings a reload cannot change while running, by name, when they differ.
fn restart_only_changes(old: &config::Director, new: &config::Director) -> Vec<&'static str> {
    let mut names = Vec::new();
    if old.interface != new.interface {
        names.push("interface");
    }
    if old.xdp_mode != new.xdp_mode {
        names.push("xdp_mode");
    }
    if old.manage_vips != new.manage_vips {
        names.push("manage_vips");
    }
    if old.control_socket != new.control_socket {
        names.push("control_socket");
    }
    if old.trace_packets != new.trace_packets {
        names.push("trace_packets");
    }
    if old.flow_table_size != new.flow_table_size {
        names.push("flow_table_size");
    }
    names
}
