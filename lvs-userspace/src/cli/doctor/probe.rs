//! The doctor's probes: ARP requests (IPv4) and neighbour solicitations (IPv6) on the
//! director interface, and TCP connections to the health-check targets of either family,
//! each bounded in time.

use std::{
    collections::{BTreeMap, BTreeSet},
    future::Future,
    io,
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV6},
    time::Duration,
};

use tokio::{net::TcpStream, time::Instant};

use super::plan::{HealthResult, HealthTarget, Plan};
use crate::{
    base::mac::MacAddr,
    io::{
        arp::{ArpSocket, request_frame},
        ndisc::{NdiscSocket, solicitation_frame},
        netlink::on_link,
    },
    logic::config::Protocol,
};

/// ARP requests and neighbour solicitations go out this many times, and answers are
/// collected in between, so a single lost frame does not make a real server look silent.
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

/// The ARP requests to send: every on-link IPv4 real server's own address, and every IPv4
/// VIP (asked from the address facing the real servers).
pub fn arp_requests(plan: &Plan, networks: &[(Ipv4Addr, u8)]) -> Vec<(Ipv4Addr, Ipv4Addr)> {
    let ipv4 = |address: IpAddr| match address {
        IpAddr::V4(v4) => Some(v4),
        IpAddr::V6(_) => None,
    };
    let real_servers = plan
        .real_servers
        .iter()
        .filter_map(|p| ipv4(p.address))
        .filter(|&address| on_link(address, networks));
    let vips = plan.vips().into_iter().filter_map(ipv4).map(|vip| {
        let facing = plan
            .real_servers
            .iter()
            .filter_map(|p| Some((ipv4(p.address)?, p)))
            .find(|(address, p)| p.vips.contains(&IpAddr::V4(vip)) && on_link(*address, networks))
            .map_or(vip, |(address, _)| address);
        (sender_for(facing, networks), vip)
    });
    real_servers
        .map(|address| (sender_for(address, networks), address))
        .chain(vips)
        .collect()
}

/// The address the director solicits from: its link-local address, which every IPv6
/// interface has and every host on the link can answer, else its first address on a
/// segment, else the unspecified address (a duplicate address detection probe, which hosts
/// answer to all nodes).
pub fn solicitation_source(networks6: &[(Ipv6Addr, u8)]) -> Ipv6Addr {
    networks6
        .iter()
        .find(|(address, _)| address.is_unicast_link_local())
        .or_else(|| networks6.iter().find(|&&(_, prefix)| prefix < 128))
        .map_or(Ipv6Addr::UNSPECIFIED, |&(address, _)| address)
}

/// The neighbour solicitations to send, as (source, target): every on-link IPv6 real
/// server's own address, and every IPv6 VIP.
pub fn ndp_requests(plan: &Plan, networks6: &[(Ipv6Addr, u8)]) -> Vec<(Ipv6Addr, Ipv6Addr)> {
    let ipv6 = |address: IpAddr| match address {
        IpAddr::V6(v6) => Some(v6),
        IpAddr::V4(_) => None,
    };
    let source = solicitation_source(networks6);
    let real_servers = plan
        .real_servers
        .iter()
        .filter_map(|p| ipv6(p.address))
        .filter(|&address| on_link(address, networks6));
    let vips = plan.vips().into_iter().filter_map(ipv6);
    real_servers
        .chain(vips)
        .map(|target| (source, target))
        .collect()
}

/// Sends the ARP requests (sender, target) from `mac` in rounds, and returns every MAC that
/// answered for each target.
pub async fn arp_answers(
    socket: &ArpSocket,
    mac: [u8; 6],
    requests: &[(Ipv4Addr, Ipv4Addr)],
) -> io::Result<BTreeMap<IpAddr, Vec<MacAddr>>> {
    let frames = requests
        .iter()
        .map(|&(sender, target)| (IpAddr::V4(target), request_frame(mac, sender, target)));
    let receive = || async {
        let reply = socket.recv_reply().await?;
        Ok((IpAddr::V4(reply.sender_ip), reply.sender_mac))
    };
    answers(frames.collect(), |frame| socket.send(frame), receive).await
}

/// Sends the neighbour solicitations (source, target) from `mac` in rounds, and returns
/// every MAC that advertised each target.
pub async fn ndp_answers(
    socket: &NdiscSocket,
    mac: [u8; 6],
    requests: &[(Ipv6Addr, Ipv6Addr)],
) -> io::Result<BTreeMap<IpAddr, Vec<MacAddr>>> {
    let frames = requests
        .iter()
        .map(|&(source, target)| (IpAddr::V6(target), solicitation_frame(mac, source, target)));
    let receive = || async {
        let advertisement = socket.recv_advertisement().await?;
        Ok((IpAddr::V6(advertisement.target), advertisement.sender_mac))
    };
    answers(frames.collect(), |frame| socket.send(frame), receive).await
}

/// The rounds of either protocol: every frame sent, then answers (address, MAC) collected
/// until the round ends; an answer for an address nobody asked about is ignored.
async fn answers<F: Future<Output = io::Result<(IpAddr, MacAddr)>>>(
    frames: Vec<(IpAddr, Vec<u8>)>,
    send: impl Fn(&[u8]) -> io::Result<()>,
    mut receive: impl FnMut() -> F,
) -> io::Result<BTreeMap<IpAddr, Vec<MacAddr>>> {
    let mut answers: BTreeMap<IpAddr, Vec<MacAddr>> = frames
        .iter()
        .map(|&(target, _)| (target, Vec::new()))
        .collect();
    if frames.is_empty() {
        return Ok(answers);
    }
    for _ in 0..ARP_ROUNDS {
        for (_, frame) in &frames {
            send(frame)?;
        }
        let deadline = Instant::now() + ARP_ROUND;
        while let Ok(answer) = tokio::time::timeout_at(deadline, receive()).await {
            let (address, mac) = answer?;
            if let Some(macs) = answers.get_mut(&address) {
                if !macs.contains(&mac) {
                    macs.push(mac);
                }
            }
        }
    }
    Ok(answers)
}

/// The socket address a health check connects to. An IPv6 link-local address means nothing
/// without its link, so it is scoped to the director interface (`if_index`), the one link
/// the doctor examines.
pub fn connect_address(target: &HealthTarget, if_index: u32) -> SocketAddr {
    match target.address {
        IpAddr::V6(v6) if v6.is_unicast_link_local() => {
            SocketAddr::V6(SocketAddrV6::new(v6, target.port, 0, if_index))
        }
        address => SocketAddr::new(address, target.port),
    }
}

/// Connects to every TCP target at once, each within `CONNECT_TIMEOUT`; `if_index` is the
/// director interface's, for link-local targets.
pub async fn health(plan: &Plan, if_index: u32) -> BTreeMap<HealthTarget, HealthResult> {
    let targets: BTreeSet<HealthTarget> = plan
        .real_servers
        .iter()
        .flat_map(|p| p.targets.iter().copied())
        .filter(|t| t.protocol == Protocol::Tcp)
        .collect();
    let attempts = targets.into_iter().map(|target| async move {
        let outcome = tokio::time::timeout(
            CONNECT_TIMEOUT,
            TcpStream::connect(connect_address(&target, if_index)),
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

    fn ip6(text: &str) -> Ipv6Addr {
        text.parse().unwrap()
    }

    #[test]
    fn solicitations_go_from_the_link_local_address() {
        let networks6 = [
            (ip6("2001:db8:77::100"), 128),
            (ip6("2001:db8:77::1"), 64),
            (ip6("fe80::1"), 64),
        ];
        assert_eq!(solicitation_source(&networks6), ip6("fe80::1"));
        assert_eq!(solicitation_source(&networks6[..2]), ip6("2001:db8:77::1"));
        assert_eq!(solicitation_source(&networks6[..1]), Ipv6Addr::UNSPECIFIED);
    }

    #[test]
    fn on_link_ipv6_servers_and_every_ipv6_vip_are_solicited() {
        let plan = Plan {
            interface: "eth0".into(),
            real_servers: vec![
                super::super::plan::RealServerPlan {
                    address: "2001:db8:77::11".parse().unwrap(),
                    vips: ["2001:db8:77::100".parse().unwrap()].into_iter().collect(),
                    targets: BTreeSet::new(),
                },
                super::super::plan::RealServerPlan {
                    address: "2001:db8:99::5".parse().unwrap(),
                    vips: ["2001:db8:77::100".parse().unwrap()].into_iter().collect(),
                    targets: BTreeSet::new(),
                },
                super::super::plan::RealServerPlan {
                    address: "10.77.0.11".parse().unwrap(),
                    vips: ["10.77.0.100".parse().unwrap()].into_iter().collect(),
                    targets: BTreeSet::new(),
                },
            ],
        };
        let networks6 = [(ip6("2001:db8:77::1"), 64), (ip6("fe80::1"), 64)];
        assert_eq!(
            ndp_requests(&plan, &networks6),
            [
                (ip6("fe80::1"), ip6("2001:db8:77::11")),
                (ip6("fe80::1"), ip6("2001:db8:77::100")),
            ]
        );
        assert_eq!(
            arp_requests(&plan, &[(ip("10.77.0.1"), 24)]),
            [
                (ip("10.77.0.1"), ip("10.77.0.11")),
                (ip("10.77.0.1"), ip("10.77.0.100")),
            ],
            "each family asked by its own protocol"
        );
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
            address: Ipv4Addr::LOCALHOST.into(),
            port,
        };
        let plan = Plan {
            interface: "lo".into(),
            real_servers: vec![super::super::plan::RealServerPlan {
                address: Ipv4Addr::LOCALHOST.into(),
                vips: BTreeSet::new(),
                targets: [target(open), target(closed)].into_iter().collect(),
            }],
        };
        let results = health(&plan, 1).await;
        assert_eq!(results[&target(open)], HealthResult::Connected);
        assert_eq!(results[&target(closed)], HealthResult::Refused);
    }

    #[tokio::test]
    async fn health_checks_connect_over_ipv6() {
        // ::1 exists wherever IPv6 is enabled on lo, as in every test namespace.
        let Ok(listener) = tokio::net::TcpListener::bind("[::1]:0").await else {
            panic!("binding [::1]:0 failed: this test needs IPv6 on lo");
        };
        let open = listener.local_addr().unwrap().port();
        let target = HealthTarget {
            protocol: Protocol::Tcp,
            address: Ipv6Addr::LOCALHOST.into(),
            port: open,
        };
        let plan = Plan {
            interface: "lo".into(),
            real_servers: vec![super::super::plan::RealServerPlan {
                address: Ipv6Addr::LOCALHOST.into(),
                vips: BTreeSet::new(),
                targets: [target].into_iter().collect(),
            }],
        };
        assert_eq!(health(&plan, 1).await[&target], HealthResult::Connected);
    }

    #[test]
    fn link_local_targets_are_scoped_to_the_director_interface() {
        let target = |address: &str| HealthTarget {
            protocol: Protocol::Tcp,
            address: address.parse().unwrap(),
            port: 80,
        };
        assert_eq!(
            connect_address(&target("fe80::11"), 7),
            "[fe80::11%7]:80".parse().unwrap()
        );
        assert_eq!(
            connect_address(&target("2001:db8::11"), 7),
            "[2001:db8::11]:80".parse().unwrap()
        );
        assert_eq!(
            connect_address(&target("10.77.0.11"), 7),
            "10.77.0.11:80".parse().unwrap()
        );
    }
}
