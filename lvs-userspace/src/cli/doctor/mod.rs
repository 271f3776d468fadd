//! `lvs doctor`: checks from the director what can be checked from there, for every real
//! server in the configuration: it is on the director interface's L2 segment, it answers ARP
//! for its own address, it does NOT answer ARP for the VIP (with `arp_ignore` left at 0 a real
//! server answers, and clients that learn its MAC for the VIP bypass the director: the classic
//! LVS-DR mistake), and its health-check target accepts connections. Also the one director
//! setting the daemon deliberately does not change (`all.arp_ignore`).
//!
//! IPv6 addresses get the same checks through neighbour discovery: a solicitation for the
//! real server's own address must be advertised, one for the VIP must not be (Linux
//! advertises only addresses of the interface asked, so an answer means the VIP is on the
//! real server's facing interface, or proxied), and health checks connect over IPv6.
//!
//! The plan (what to check) and the judgement (what it means, how to fix it) are pure
//! (`plan`, `report`); only `probe` touches the network.

pub mod plan;
pub mod probe;
pub mod report;

pub use plan::{Observations, Plan, evaluate};
pub use report::{Check, Finding, Report, Status};

use std::collections::BTreeMap;

use crate::{
    io::{
        arp::ArpSocket,
        ndisc::NdiscSocket,
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
    #[error("opening a raw {protocol} socket on {interface} failed (it needs root or CAP_NET_RAW)")]
    Socket {
        protocol: &'static str,
        interface: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{protocol} probing on {interface} failed")]
    Probe {
        protocol: &'static str,
        interface: String,
        #[source]
        source: std::io::Error,
    },
}

/// Examines the cluster a configuration describes; takes about a second for the ARP and
/// neighbour discovery probes and at most `probe::CONNECT_TIMEOUT` for the connections,
/// which all run at the same time.
pub async fn run(config: &Config) -> Result<Report, DoctorError> {
    let plan = Plan::from_config(config);
    let interface = plan.interface.clone();
    let netlink = Netlink::connect()?;
    let link = netlink.link(&interface).await?;
    let arp_ignore_all = Sysctls::default().read(&SysctlKey::ipv4_conf("all", "arp_ignore"))?;
    let socket_error = |protocol| {
        let interface = interface.clone();
        move |source| DoctorError::Socket {
            protocol,
            interface,
            source,
        }
    };
    let probe_error = |protocol| {
        let interface = interface.clone();
        move |source| DoctorError::Probe {
            protocol,
            interface,
            source,
        }
    };
    let arp_requests = probe::arp_requests(&plan, &link.networks);
    let ndp_requests = probe::ndp_requests(&plan, &link.networks6);
    let arp_socket = ArpSocket::open(link.index).map_err(socket_error("ARP"))?;
    // A socket for every IPv6 frame is opened only when there is something to solicit.
    let ndp_socket = match ndp_requests.is_empty() {
        true => None,
        false => Some(NdiscSocket::open(link.index).map_err(socket_error("NDP"))?),
    };
    let ndp_probe = async {
        match &ndp_socket {
            Some(socket) => probe::ndp_answers(socket, link.mac, &ndp_requests).await,
            None => Ok(BTreeMap::new()),
        }
    };
    let (arp_answers, ndp_answers, health) = tokio::join!(
        probe::arp_answers(&arp_socket, link.mac, &arp_requests),
        ndp_probe,
        probe::health(&plan, link.index)
    );
    let mut answers = arp_answers.map_err(probe_error("ARP"))?;
    answers.extend(ndp_answers.map_err(probe_error("NDP"))?);
    let seen = Observations {
        networks: link.networks,
        networks6: link.networks6,
        arp_ignore_all,
        answers,
        probe_window: probe::ARP_ROUND * probe::ARP_ROUNDS,
        connect_timeout: probe::CONNECT_TIMEOUT,
        health,
    };
    Ok(evaluate(&plan, &seen))
}
