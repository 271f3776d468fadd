//! The lvs controller: it loads the XDP data plane, keeps its maps in line with the
//! configuration and the kernel's neighbour table, and answers on a control socket.
//!
//! Pure logic (`config`, `schedule`, `maglev`, `model`, `conntrack`, `rates`, `runtime`,
//! `status`) is separate from I/O (`dataplane`, `netlink`, `control`, `daemon`), so most of
//! it is tested without root. `provision` sets up real servers and the director's host
//! reversibly; `doctor` (with `arp`) checks a cluster from the director.

pub mod api;
pub mod arp;
pub mod base;
pub mod config;
pub mod conntrack;
pub mod control;
pub mod daemon;
pub mod dataplane;
pub mod doctor;
#[cfg(test)]
mod golden;
pub mod health;
pub mod ipvsadm;
pub mod keepalived;
pub mod lvsadm;
pub mod maglev;
pub mod model;
pub mod netlink;
pub mod provision;
pub mod rates;
pub mod runtime;
pub mod schedule;
pub mod status;
