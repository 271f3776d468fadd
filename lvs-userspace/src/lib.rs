//! The lvs controller: it loads the XDP data plane, keeps its maps in line with the
//! configuration and the kernel's neighbour table, and answers on a control socket.
//!
//! Pure logic (`config`, `maglev`, `model`, `status`) is separate from I/O (`dataplane`,
//! `netlink`, `control`, `director`), so most of it is tested without root.

pub mod config;
pub mod control;
pub mod dataplane;
pub mod director;
pub mod health;
pub mod maglev;
pub mod model;
pub mod netlink;
pub mod status;
