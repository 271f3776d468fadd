//! Provisioning the hosts of an LVS-DR cluster, reversibly: a real server (`realserver`: VIPs
//! on `lo`, ARP settings) and the director's host (`director`: the settings it relies on, its
//! maps pinned in bpffs).
//!
//! Every change is recorded (`state`) before it is made, so that undoing it puts back exactly
//! what was there. Settings are plain files under `/proc/sys` (`sysctl`); addresses go through
//! rtnetlink (`crate::io::netlink`). The plans of what to change and what to restore are pure and
//! tested without root.

pub mod bpffs;
pub mod director;
pub mod realserver;
pub mod state;
pub mod sysctl;
