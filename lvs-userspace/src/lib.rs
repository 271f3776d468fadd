//! The lvs controller: it loads the XDP data plane, keeps its maps in line with the
//! configuration and the kernel's neighbour table, and answers on a control socket.
//!
//! Pure logic (`config`, `schedule`, `maglev`, `model`, `conntrack`, `rates`, `status`) is separate from I/O (`dataplane`,
//! `netlink`, `control`, `director`), so most of it is tested without root.

pub mod api;
pub mod config;
pub mod conntrack;
pub mod control;
pub mod dataplane;
pub mod director;
#[cfg(test)]
mod golden;
pub mod ipvsadm;
pub mod keepalived;
pub mod lvsadm;
pub mod maglev;
pub mod model;
pub mod netlink;
pub mod rates;
pub mod runtime;
pub mod schedule;
pub mod status;
