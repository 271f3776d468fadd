//! The kernel and the network: the BPF data plane (aya), rtnetlink, ARP and IPv6 neighbour
//! discovery on raw packet sockets, the control socket, the status listener (HTTP: metrics
//! and the status page), the host settings lvs changes and puts back, and the sync daemons'
//! multicast sockets. Each piece is small and sits behind a seam the pure logic or the daemon
//! defines, so the logic is tested without it.

pub mod arp;
pub mod bpf;
pub mod control;
pub mod ndisc;
pub mod netlink;
pub mod packet_socket;
pub mod provision;
pub mod sync;
pub mod web;
