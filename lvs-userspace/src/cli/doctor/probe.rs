//! The doctor's probes: ARP requests on the director interface and TCP connections to the
//! health-check targets, each bounded in time.

use std::{
    collections::{BTreeMap, BTreeSet},
    io,
    net::Ipv4Addr,
    time::Duration,
};

use tokio::{net::TcpStream, time::Instant};

use super::plan::{HealthResult, HealthTarget, Plan};
use crate::{
    base::mac::MacAddr,
    io::{
        arp::{ArpSocket, request_frame},
        netlink::on_link,
    },
    logic::config::Protocol,
};

/// ARP requests go out this many times, and answers are collected in between, so a single
/// lost frame does not make a real server look silent.
pub const ARP_ROUNDS: u32 = 3;
pub const ARP_ROUND: Duration = Duration::from_millis(333);
/// How long a health-check connection may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// The address the director says it is when asking for `target`: its own address on the
/// target's subnet, else its first address, else 0.0.0.0 (an RFC 5227 probe, which hosts
/// answer as well).
pub fn sender_for(target: Ipv4Addr, networks: &[(Ipv4Addr, u8)]) -> Ipv4Addr {
    networks
        .iter()
        .find(|&&network| on_link(target, &[network]))
        .or_else(|| networks.first())
        .map_or(Ipv4Addr::UNSPECIFIED, |&(address, _)| address)
}

/// The ARP requests to send: every on-link real server's own address, and every VIP (asked
/// from the address facing the real servers).
pub fn arp_requests(plan: &Plan, networks: &[(Ipv4Addr, u8)]) -> Vec<(Ipv4Addr, Ipv4Addr)> {
    let real_servers = plan
        .real_servers
        .iter()
        .map(|p| p.address)
        .filter(|&address| on_link(address, networks));
    let vips = plan.vips().into_iter().map(|vip| {
        let facing = plan
            .real_servers
            .iter()
            .find(|p| p.vips.contains(&vip) && on_link(p.address, networks))
            .map_or(vip, |p| p.address);
        (sender_for(facing, networks), vip)
    });
    real_servers
        .map(|address| (sender_for(address, networks), address))
        .chain(vips)
        .collect()
}

/// Sends the requests (sender, target) from `mac` in rounds, and returns every MAC that
/// answered for each target.
pub async fn arp_answers(
    socket: &ArpSocket,
    mac: [u8; 6],
    requests: &[(Ipv4Addr, Ipv4Addr)],
) -> io::Result<BTreeMap<Ipv4Addr, Vec<MacAddr>>> {
    let targets: BTreeSet<Ipv4Addr> = requests.iter().map(|&(_, target)| target).collect();
    let mut answers: BTreeMap<Ipv4Addr, Vec<MacAddr>> =
        targets.iter().map(|&t| (t, Vec::new())).collect();
    for _ in 0..ARP_ROUNDS {
        for &(sender, target) in requests {
            socket.send(&request_frame(mac, sender, target))?;
        }
        let deadline = Instant::now() + ARP_ROUND;
        while let Ok(reply) = tokio::time::timeout_at(deadline, socket.recv_reply()).await {
            let reply = reply?;
            if let Some(macs) = answers.get_mut(&reply.sender_ip) {
                if !macs.contains(&reply.sender_mac) {
                    macs.push(reply.sender_mac);
                }
            }
        }
    }
    Ok(answers)
}

/// Connects to every TCP target at once, each within `CONNECT_TIMEOUT`.
pub async fn health(plan: &Plan) -> BTreeMap<HealthTarget, HealthResult> {
    let targets: BTreeSet<HealthTarget> = plan
        .real_servers
        .iter()
        .flat_map(|p| p.targets.iter().copied())
        .filter(|t| t.protocol == Protocol::Tcp)
        .collect();
    let attempts = targets.into_iter().map(|target| async move {
        let outcome = tokio::time::timeout(
            CONNECT_TIMEOUT,
            TcpStream::connect((target.address, target.port)),
        )
        .await;
        let result = match outcome {
            Err(_) => HealthResult::TimedOut,
            Ok(Ok(_stream)) => HealthResult::Connected,
            Ok(Err(error)) if error.kind() == io::ErrorKind::ConnectionRefused => {
                HealthResult::Refused
            }
            Ok(Err(error)) => HealthResult::Failed(error.to_string()),
        };
        (target, result)
    });
    futures::future::join_all(attempts)
        .await
        .into_iter()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> Ipv4Addr {
        text.parse().unwrap()
    }

    #[test]
    fn the_director_asks_from_its_address_on_the_target_subnet() {
        let networks = [(ip("192.0.2.1"), 24), (ip("10.77.0.1"), 24)];
        assert_eq!(sender_for(ip("10.77.0.11"), &networks), ip("10.77.0.1"));
        assert_eq!(sender_for(ip("198.51.100.7"), &networks), ip("192.0.2.1"));
        assert_eq!(sender_for(ip("10.77.0.11"), &[]), Ipv4Addr::UNSPECIFIED);
    }

    #[test]
    fn on_link_servers_and_every_vip_are_asked_for() {
        let config = crate::logic::config::parse(
            r#"
[director]
interface = "eth0"
[[virtual_server]]
address = "192.0.2.100"
port = 80
[[virtual_server.real_server]]
address = "10.77.0.11"
[[virtual_server.real_server]]
address = "10.20.0.5"
"#,
            "t.toml",
        )
        .unwrap();
        let plan = Plan::from_config(&config);
        let networks = [(ip("10.77.0.1"), 24)];
        assert_eq!(
            arp_requests(&plan, &networks),
            [
                (ip("10.77.0.1"), ip("10.77.0.11")),
                (ip("10.77.0.1"), ip("192.0.2.100")),
            ]
        );
    }

    #[tokio::test]
    async fn health_checks_tell_accepting_from_refusing() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let open = listener.local_addr().unwrap().port();
        // A port that was just free: bind, note it, close it.
        let closed = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let target = |port| HealthTarget {
            protocol: Protocol::Tcp,
            address: Ipv4Addr::LOCALHOST,
            port,
        };
        let plan = Plan {
            interface: "lo".into(),
            real_servers: vec![super::super::plan::RealServerPlan {
                address: Ipv4Addr::LOCALHOST,
                vips: BTreeSet::new(),
                targets: [target(open), target(closed)].into_iter().collect(),
            }],
        };
        let results = health(&plan).await;
        assert_eq!(results[&target(open)], HealthResult::Connected);
        assert_eq!(results[&target(closed)], HealthResult::Refused);
    }
}
