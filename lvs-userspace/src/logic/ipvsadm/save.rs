//! `-S`: the table as rules that `-R` (ours or ipvsadm's) restores, as `ipvsadm -S [-n]`
//! writes them:
//!
//! ```text
//! -A -t 10.0.0.1:80 -s wlc
//! -a -t 10.0.0.1:80 -r 10.0.0.11:80 -g -w 1
//! ```
//!
//! One addition: ipvsadm does not save connection thresholds, so a restore loses them;
//! lvsadm appends `-x`/`-y` to a real server's line when they are set (ipvsadm's `-R`
//! accepts them), so that a save and restore gives back the same table.

use std::fmt::Write as _;

use super::{
    list::{address_port, sorted_real_servers, sorted_services},
    names::Resolver,
};
use crate::logic::api::snapshot::Snapshot;

/// The rules of `snapshot`, services and servers sorted as ipvsadm sorts them.
pub fn render(snapshot: &Snapshot, numeric: bool, names: &dyn Resolver) -> String {
    let mut out = String::new();
    for entry in sorted_services(snapshot, true) {
        let service = &entry.service;
        let name = format!(
            "{} {}",
            service.protocol.option(),
            address_port(
                service.address,
                service.port,
                service.protocol,
                numeric,
                names
            )
        );
        let config = &entry.config;
        let _ = write!(out, "-A {name} -s {}", config.scheduler);
        if let Some(persistence) = &config.persistence {
            let _ = write!(out, " -p {}", persistence.timeout);
            if !persistence.netmask.is_host() {
                let _ = write!(out, " -M {}", persistence.netmask);
            }
        }
        let flags = config.sched_flags.names(config.scheduler);
        if !flags.is_empty() {
            let _ = write!(out, " -b {}", flags.join(","));
        }
        out.push('\n');
        for rs in sorted_real_servers(entry, true) {
            let server = &rs.server;
            let _ = write!(
                out,
                "-a {name} -r {} {} -w {}",
                address_port(server.address, rs.port, service.protocol, numeric, names),
                server.forward.option(),
                server.weight
            );
            if server.u_threshold != 0 {
                let _ = write!(out, " -x {}", server.u_threshold);
            }
            if server.l_threshold != 0 {
                let _ = write!(out, " -y {}", server.l_threshold);
            }
            out.push('\n');
        }
    }
    out
}
