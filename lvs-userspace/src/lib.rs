//! The lvs controller: it loads the XDP data plane, keeps its maps in line with the
//! configuration and the kernel's neighbour table, checks the real servers' health, and
//! answers on a control socket; and the command-line tools around it.
//!
//! The folders are layers, and a layer imports only the layers below it (a test,
//! `tests/layers.rs`, keeps it so):
//!
//! - `base`: the vocabulary every layer speaks (validated values, MAC addresses, config
//!   diagnostics, what health checking publishes). Imports nothing of the project.
//! - `logic`: pure decisions, tested without root: the config, the director's model and its
//!   schedules, the flow-table sweep, rates, status, the control API's wire types, and the
//!   operators' languages (ipvsadm, keepalived.conf).
//! - `io`: the kernel and the network: the BPF data plane, rtnetlink, ARP, the control
//!   socket, host provisioning.
//! - `health`: keepalived-style health checking: pure state machines and plans, and the
//!   checkers that connect, fetch and run programs.
//! - `cli`: what the command-line tools do beyond parsing: `lvsadm`'s client, `lvs doctor`.
//! - `daemon`: `lvs director`, which puts it all together around one event loop.

pub mod base;
pub mod cli;
pub mod daemon;
pub mod health;
pub mod io;
pub mod logic;
