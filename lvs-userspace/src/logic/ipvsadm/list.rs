//! `-L`: ipvsadm's listing layouts, column for column, or JSON.
//!
//! The widths, paddings (trailing spaces included) and number scaling are ipvsadm's: a
//! script that cuts columns out of `ipvsadm -Ln` cuts the same out of `lvsadm -Ln`. Two
//! deliberate differences: addresses sort by their numeric value (ipvsadm's comparison
//! overflows for addresses 128 or more apart in the first byte), and connections are listed
//! in the order the daemon gives them, as ipvsadm lists `/proc` order.

use std::{
    fmt::Write as _,
    net::{Ipv4Addr, SocketAddr},
};

use serde::Serialize;

use super::{
    command::{Layout, List, ListFormat, ListTarget},
    names::Resolver,
};
use crate::logic::api::{
    Protocol, ServiceKey, Timeouts,
    snapshot::{Connection, RealServerEntry, ServiceEntry, Snapshot},
};
use crate::logic::{api::Daemons, sync::SyncDaemon};

/// The IPVS version ipvsadm users see in the header; lvs keeps IPVS's layouts.
pub const IPVS_VERSION: &str = "1.2.1";

/// Why a listing cannot be shown.
#[derive(Debug, thiserror::Error)]
pub enum ListError {
    /// What ipvsadm says when `-L -t` names a service that does not exist.
    #[error("No such service")]
    NoSuchService,
    #[error("cannot encode the listing as JSON: {0}")]
    Json(#[from] serde_json::Error),
}

/// Renders a listing of `snapshot`. `names` is used unless the format is numeric.
pub fn render(snapshot: &Snapshot, list: &List, names: &dyn Resolver) -> Result<String, ListError> {
    if list.format.json {
        return render_json(snapshot, list);
    }
    let view = View {
        format: list.format,
        names,
    };
    let mut out = String::new();
    match list.target {
        ListTarget::All => {
            let _ = writeln!(
                out,
                "IP Virtual Server version {IPVS_VERSION} (size={})",
                snapshot.connection_table_size
            );
            out.push_str(&title(list.format.layout));
            for entry in sorted_services(snapshot, list.format.sort) {
                view.service(&mut out, entry);
            }
        }
        ListTarget::Service(key) => {
            let entry = snapshot.service(&key).ok_or(ListError::NoSuchService)?;
            out.push_str(&title(list.format.layout));
            view.service(&mut out, entry);
        }
        ListTarget::Connections => view.connections(&mut out, &snapshot.connections),
        ListTarget::Timeouts => out.push_str(&timeouts_line(&snapshot.timeouts)),
    }
    Ok(out)
}

/// `--timeout`'s one line.
pub fn timeouts_line(timeouts: &Timeouts) -> String {
    format!(
        "Timeout (tcp tcpfin udp): {} {} {}\n",
        timeouts.tcp, timeouts.tcp_fin, timeouts.udp
    )
}

/// `-L --daemon`: one line per sync daemon, master first, as ipvsadm 1.29 and later print
/// them (they add maxlen, group, port and ttl to the older `mcast=..., syncid=...`). IPVS
/// leaves out a value the kernel does not report; lvs always has all of them. Then, with a
/// `[bgp]` section, a line per VIP saying whether it is announced; before those, a line per
/// master the backup hears (ipvsadm has neither). With `json`, what the control socket gives, daemons in the same order.
pub fn render_daemons(list: &Daemons, json: bool) -> Result<String, ListError> {
    let mut daemons: Vec<&SyncDaemon> = list.sync_daemons.iter().collect();
    daemons.sort_by_key(|daemon| daemon.role);
    if json {
        let sorted = Daemons {
            sync_daemons: daemons.into_iter().cloned().collect(),
            sync_peers: list.sync_peers.clone(),
            bgp: list.bgp.clone(),
        };
        return Ok(serde_json::to_string_pretty(&sorted)? + "\n");
    }
    let mut out = String::new();
    for daemon in daemons {
        let _ = writeln!(
            out,
            "{} sync daemon (mcast={}, syncid={}, maxlen={}, group={}, port={}, ttl={})",
            daemon.role,
            daemon.interface,
            daemon.sync_id,
            daemon.max_len,
            daemon.group,
            daemon.port,
            daemon.ttl
        );
    }
    for peer in &list.sync_peers {
        let _ = writeln!(
            out,
            "sync peer {} (last message {:.1} s ago)",
            peer.address, peer.last_message_seconds_ago
        );
    }
    if let Some(bgp) = &list.bgp {
        for vip in &bgp.vips {
            let _ = writeln!(
                out,
                "bgp {} {} (table={}, hold_time={})",
                if vip.announced {
                    "announces"
                } else {
                    "withdraws"
                },
                vip.address,
                bgp.route_table,
                bgp.hold_time
            );
        }
    }
    Ok(out)
}

/// Services in listing order: by protocol, address, port unless `sort` is off.
pub fn sorted_services(snapshot: &Snapshot, sort: bool) -> Vec<&ServiceEntry> {
    let mut services: Vec<&ServiceEntry> = snapshot.services.iter().collect();
    if sort {
        services.sort_by_key(|entry| entry.service);
    }
    services
}

/// Real servers in listing order: by address, port unless `sort` is off.
pub fn sorted_real_servers(entry: &ServiceEntry, sort: bool) -> Vec<&RealServerEntry> {
    let mut servers: Vec<&RealServerEntry> = entry.real_servers.iter().collect();
    if sort {
        servers.sort_by_key(|rs| (rs.server.address, rs.port));
    }
    servers
}

/// `address:port`, with names unless `numeric` (ipvsadm's `addrport_to_anyname`).
pub fn address_port(
    address: Ipv4Addr,
    port: u16,
    protocol: Protocol,
    numeric: bool,
    names: &dyn Resolver,
) -> String {
    if numeric {
        return format!("{address}:{port}");
    }
    let host = names
        .host_name(address)
        .unwrap_or_else(|| address.to_string());
    let service = names
        .service_name(port, protocol)
        .unwrap_or_else(|| port.to_string());
    format!("{host}:{service}")
}

/// The two title lines of a service listing (ipvsadm's `print_title`).
fn title(layout: Layout) -> String {
    const LOCAL: &str = "Prot LocalAddress:Port";
    const REMOTE: &str = "  -> RemoteAddress:Port";
    let numbers = |names: [&str; 5]| {
        let [a, b, c, d, e] = names;
        format!("{LOCAL:<33} {a:>8} {b:>8} {c:>8} {d:>8} {e:>8}\n{REMOTE}\n")
    };
    match layout {
        Layout::Default => format!(
            "{LOCAL} Scheduler Flags\n{REMOTE}           Forward Weight ActiveConn InActConn\n"
        ),
        Layout::Stats => numbers(["Conns", "InPkts", "OutPkts", "InBytes", "OutBytes"]),
        Layout::Rate => numbers(["CPS", "InPPS", "OutPPS", "InBPS", "OutBPS"]),
        Layout::Thresholds => format!(
            "{LOCAL:<33} {:<10} {:<10} {:<10} {:<10}\n{REMOTE}\n",
            "Uthreshold", "Lthreshold", "ActiveConn", "InActConn"
        ),
        Layout::PersistentConn => format!(
            "{LOCAL:<33} {:<9} {:<11} {:<10} {:<10}\n{REMOTE}\n",
            "Weight", "PersistConn", "ActiveConn", "InActConn"
        ),
    }
}

/// Renders rows in one format.
struct View<'a> {
    format: ListFormat,
    names: &'a dyn Resolver,
}

impl View<'_> {
    fn name(&self, address: Ipv4Addr, port: u16, protocol: Protocol) -> String {
        address_port(address, port, protocol, self.format.numeric, self.names)
    }

    fn service(&self, out: &mut String, entry: &ServiceEntry) {
        let ServiceKey {
            protocol,
            address,
            port,
        } = entry.service;
        // ipvsadm builds "PROT name" in a buffer it cuts at 33 characters.
        let name = truncate(
            format!(
                "{:<4} {}",
                protocol.name(),
                self.name(address, port, protocol)
            ),
            33,
        );
        let exact = self.format.exact;
        match self.format.layout {
            Layout::Stats => {
                let s = &entry.stats;
                let _ = write!(out, "{name:<33}");
                for value in [s.conns, s.inpkts, s.outpkts, s.inbytes, s.outbytes] {
                    large_number(out, value, exact);
                }
            }
            Layout::Rate => {
                let r = &entry.rates;
                let _ = write!(out, "{name:<33}");
                for value in [r.cps, r.inpps, r.outpps, r.inbps, r.outbps] {
                    large_number(out, value, exact);
                }
            }
            Layout::Default | Layout::Thresholds | Layout::PersistentConn => {
                let config = &entry.config;
                let _ = write!(out, "{name} {}", config.scheduler);
                let flags = config.sched_flags.names(config.scheduler);
                if !flags.is_empty() {
                    let _ = write!(out, " ({})", flags.join(","));
                }
                if let Some(persistence) = &config.persistence {
                    let _ = write!(out, " persistent {}", persistence.timeout);
                    if persistence.netmask != Ipv4Addr::BROADCAST {
                        let _ = write!(out, " mask {}", persistence.netmask);
                    }
                }
            }
        }
        out.push('\n');
        for rs in sorted_real_servers(entry, self.format.sort) {
            self.real_server(out, rs, protocol);
        }
    }

    fn real_server(&self, out: &mut String, rs: &RealServerEntry, protocol: Protocol) {
        let name = truncate(self.name(rs.server.address, rs.port, protocol), 28);
        let exact = self.format.exact;
        match self.format.layout {
            Layout::Stats => {
                let s = &rs.stats;
                let _ = write!(out, "  -> {name:<28}");
                for value in [s.conns, s.inpkts, s.outpkts, s.inbytes, s.outbytes] {
                    large_number(out, value, exact);
                }
                out.push('\n');
            }
            Layout::Rate => {
                let r = &rs.rates;
                // ipvsadm prints a server's three small rates plainly, the byte rates scaled.
                let _ = write!(
                    out,
                    "  -> {name:<28} {:>8} {:>8} {:>8}",
                    r.cps, r.inpps, r.outpps
                );
                large_number(out, r.inbps, exact);
                large_number(out, r.outbps, exact);
                out.push('\n');
            }
            Layout::Thresholds => {
                let _ = writeln!(
                    out,
                    "  -> {name:<28} {:<10} {:<10} {:<10} {:<10}",
                    rs.server.u_threshold,
                    rs.server.l_threshold,
                    rs.active_conns,
                    rs.inactive_conns
                );
            }
            Layout::PersistentConn => {
                let _ = writeln!(
                    out,
                    "  -> {name:<28} {:<9} {:<11} {:<10} {:<10}",
                    rs.server.weight, rs.persistent_conns, rs.active_conns, rs.inactive_conns
                );
            }
            Layout::Default => {
                let _ = writeln!(
                    out,
                    "  -> {name:<28} {:<7} {:<6} {:<10} {:<10}",
                    rs.server.forward.name(),
                    rs.server.weight,
                    rs.active_conns,
                    rs.inactive_conns
                );
            }
        }
    }

    fn connections(&self, out: &mut String, connections: &[Connection]) {
        out.push_str("IPVS connection entries\n");
        if self.format.layout == Layout::PersistentConn {
            // lvs has no persistence engines, so no row has their two extra columns; the
            // header still names them, as ipvsadm's does.
            let _ = writeln!(
                out,
                "pro expire {:<11} {:<18} {:<18} {:<18} {:<16} pe_data",
                "state", "source", "virtual", "destination", "pe name"
            );
        } else {
            let _ = writeln!(
                out,
                "pro expire {:<11} {:<18} {:<18} destination",
                "state", "source", "virtual"
            );
        }
        for connection in connections {
            // IPv6 connections are printed as ipvsadm prints them, bracketed and numeric.
            let name = |at: SocketAddr| match at {
                SocketAddr::V4(at) => self.name(*at.ip(), at.port(), connection.protocol),
                SocketAddr::V6(at) => format!("[{}]:{}", at.ip(), at.port()),
            };
            let expire = format!(
                "{:02}:{:02}",
                connection.expires / 60,
                connection.expires % 60
            );
            let _ = writeln!(
                out,
                "{:<3} {:<6} {:<11} {:<18} {:<18} {}",
                connection.protocol.name(),
                expire,
                connection.state.name(),
                name(connection.source),
                name(connection.virtual_service),
                name(connection.destination)
            );
        }
    }
}

/// ipvsadm's `print_largenum`: nine columns; above 10^8, scaled to K, M, G or T (powers of
/// 1000) unless exact, where wider numbers widen the column.
fn large_number(out: &mut String, value: u64, exact: bool) {
    let _ = if exact {
        let digits = value.to_string().len();
        let width = if digits <= 8 { 9 } else { digits + 1 };
        write!(out, "{value:>width$}")
    } else if value < 100_000_000 {
        write!(out, "{value:>9}")
    } else if value < 1_000_000_000 {
        write!(out, "{:>8}K", value / 1_000)
    } else if value < 100_000_000_000 {
        write!(out, "{:>8}M", value / 1_000_000)
    } else if value < 100_000_000_000_000 {
        write!(out, "{:>8}G", value / 1_000_000_000)
    } else {
        write!(out, "{:>8}T", value / 1_000_000_000_000)
    };
}

fn truncate(mut text: String, width: usize) -> String {
    if let Some((cut, _)) = text.char_indices().nth(width) {
        text.truncate(cut);
    }
    text
}

/// The JSON forms: the same data as the layouts, always numeric.
fn render_json(snapshot: &Snapshot, list: &List) -> Result<String, ListError> {
    #[derive(Serialize)]
    struct All<'a> {
        version: &'a str,
        connection_table_size: u32,
        services: Vec<ServiceEntry>,
    }
    #[derive(Serialize)]
    struct Connections<'a> {
        connections: &'a [Connection],
    }
    let sorted = |entry: &ServiceEntry| ServiceEntry {
        real_servers: sorted_real_servers(entry, list.format.sort)
            .into_iter()
            .cloned()
            .collect(),
        ..entry.clone()
    };
    let json = match list.target {
        ListTarget::All => serde_json::to_string_pretty(&All {
            version: IPVS_VERSION,
            connection_table_size: snapshot.connection_table_size,
            services: sorted_services(snapshot, list.format.sort)
                .into_iter()
                .map(sorted)
                .collect(),
        }),
        ListTarget::Service(key) => serde_json::to_string_pretty(&sorted(
            snapshot.service(&key).ok_or(ListError::NoSuchService)?,
        )),
        ListTarget::Connections => serde_json::to_string_pretty(&Connections {
            connections: &snapshot.connections,
        }),
        ListTarget::Timeouts => serde_json::to_string_pretty(&snapshot.timeouts),
    }?;
    Ok(json + "\n")
}

#[cfg(test)]
mod tests;
