//! The kernel and the network: the BPF data plane (aya), rtnetlink, ARP on a raw socket, the
//! control socket, the status listener (HTTP: metrics and the status page), and the host
//! settings lvs changes and puts back, and the sync daemons' multicast sockets. Each piece is small and sits behind a seam the pure logic or the daemon defines, so the logic is tested without it.

pub mod arp;
pub mod bpf;
pub mod control;
pub mod netlink;
pub mod provision;
pub mod sync;
pub mod web;
