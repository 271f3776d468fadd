//! Pure logic: every decision the controller makes, as functions of values, tested without
//! root. Nothing here touches the kernel or the network; the data plane is reached through
//! the `dataplane::DataPlane` trait, which the I/O layer implements.

pub mod announce;
pub mod api;
pub mod bird;
pub mod config;
pub mod conntrack;
pub mod dataplane;
pub mod deny;
#[cfg(test)]
pub(crate) mod golden;
pub mod ipvsadm;
pub mod keepalived;
pub mod maglev;
pub mod metrics;
pub mod model;
pub mod rates;
pub mod runtime;
pub mod schedule;
pub mod service_table;
pub mod status;
pub mod sync;
pub mod web;
