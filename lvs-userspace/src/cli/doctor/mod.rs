//! `lvs doctor`: checks from the director what can be checked from there, for every real
//! server in the configuration: it is on the director interface's L2 segment, it answers ARP
//! for its own address, it does NOT answer ARP for the VIP (with `arp_ignore` left at 0 a real
//! server answers, and clients that learn its MAC for the VIP bypass the director: the classic
//! LVS-DR mistake), and its health-check target accepts connections. Also the one director
//! setting the daemon deliberately does not change (`all.arp_ignore`).
//!
//! The plan (what to check) and the judgement (what it means, how to fix it) are pure
//! (`plan`, `report`); only `probe` touches the network.

pub mod plan;
pub mod probe;
pub mod report;

pub use plan::{Observations, Plan, evaluate};
pub use report::{Check, Finding, Report, Status};

use crate::{
    io::{
        arp::ArpSocket,
        netlink::{Netlink, NetlinkError},
        provision::sysctl::{SysctlError, SysctlKey, Sysctls},
    },
    logic::config::Config,
};

/// Errors that keep the doctor from examining anything.
#[derive(Debug, thiserror::Error)]
pub enum DoctorError {
    #[error(transparent)]
    Netlink(#[from] NetlinkError),
    #[error(transparent)]
    Sysctl(#[from] SysctlError),
    #[error("opening a raw ARP socket on {interface} failed (it needs root or CAP_NET_RAW)")]
    Socket {
        interface: String,
        #[source]
        source: std::io::Error,
    },
    #[error("ARP probing on {interface} failed")]
    Probe {
        interface: String,
        #[source]
        source: std::io::Error,
    },
}

/// Examines the cluster a configuration describes; takes about a second for the ARP probes
/// and at most `probe::CONNECT_TIMEOUT` for the connections, which run at the same time.
pub async fn run(config: &Config) -> Result<Report, DoctorError> {
    let plan = Plan::from_config(config);
    let interface = plan.interface.clone();
    let netlink = Netlink::connect()?;
    let link = netlink.link(&interface).await?;
    let arp_ignore_all = Sysctls::default().read(&SysctlKey::ipv4_conf("all", "arp_ignore"))?;
    let socket = ArpSocket::open(link.index).map_err(|source| DoctorError::Socket {
        interface: interface.clone(),
        source,
    })?;
    let requests = probe::arp_requests(&plan, &link.networks);
    let (arp_answers, health) = tokio::join!(
        probe::arp_answers(&socket, link.mac, &requests),
        probe::health(&plan)
    );
    let seen = Observations {
        networks: link.networks,
        arp_ignore_all,
        arp_answers: arp_answers.map_err(|source| DoctorError::Probe {
            interface: interface.clone(),
            source,
        })?,
        arp_window: probe::ARP_ROUND * probe::ARP_ROUNDS,
        connect_timeout: probe::CONNECT_TIMEOUT,
        health,
    };
    Ok(evaluate(&plan, &seen))
}
