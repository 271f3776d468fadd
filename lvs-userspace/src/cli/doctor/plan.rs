//! What the doctor checks (from the config) and what it concludes (from what it observed).
//! Pure: the probes live in `probe.rs`. Addresses of either family are judged by the same
//! rules; only the protocol that resolves them differs (ARP for IPv4, neighbour discovery
//! for IPv6), and with it the words and fixes.

use std::{
    collections::{BTreeMap, BTreeSet},
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    time::Duration,
};

use super::report::{Check, Finding, Report, Status};
use crate::{
    base::mac::MacAddr,
    io::{netlink::on_link, provision::director::arp_ignore_all_problem},
    logic::config::{Config, Protocol, RealServer, Service},
};

/// An address and port a health check connects to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct HealthTarget {
    pub protocol: Protocol,
    pub address: IpAddr,
    pub port: u16,
}

/// The health-check target of a real server in a service: in direct routing the real server
/// serves the service's port on its own address too. (When checkers get their own
/// `connect_ip`/`connect_port`, this is where they apply.)
pub fn health_target(service: &Service, real_server: &RealServer) -> HealthTarget {
    HealthTarget {
        protocol: service.protocol,
        address: real_server.address.into(),
        port: service.port,
    }
}

/// What is checked for one real server, gathered over every service it belongs to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RealServerPlan {
    pub address: IpAddr,
    pub vips: BTreeSet<IpAddr>,
    pub targets: BTreeSet<HealthTarget>,
}

/// Everything the doctor checks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    pub interface: String,
    pub real_servers: Vec<RealServerPlan>,
}

impl Plan {
    /// Each real server once (in the order they first appear), with all its VIPs and targets.
    pub fn from_config(config: &Config) -> Self {
        let mut real_servers: Vec<RealServerPlan> = Vec::new();
        for service in &config.services {
            for real_server in &service.real_servers {
                let address: IpAddr = real_server.address.into();
                let index = match real_servers.iter().position(|p| p.address == address) {
                    Some(index) => index,
                    None => {
                        real_servers.push(RealServerPlan {
                            address,
                            vips: BTreeSet::new(),
                            targets: BTreeSet::new(),
                        });
                        real_servers.len() - 1
                    }
                };
                let plan = &mut real_servers[index];
                plan.vips.insert(service.address.into());
                plan.targets.insert(health_target(service, real_server));
            }
        }
        Self {
            interface: config.director.interface.clone(),
            real_servers,
        }
    }

    /// Every VIP any real server serves.
    pub fn vips(&self) -> BTreeSet<IpAddr> {
        self.real_servers
            .iter()
            .flat_map(|p| p.vips.iter().copied())
            .collect()
    }
}

/// How a connection attempt to a health-check target went.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HealthResult {
    Connected,
    Refused,
    TimedOut,
    Failed(String),
}

/// What the probes saw.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Observations {
    /// The director interface's IPv4 networks.
    pub networks: Vec<(Ipv4Addr, u8)>,
    /// The director interface's IPv6 networks.
    pub networks6: Vec<(Ipv6Addr, u8)>,
    /// `net.ipv4.conf.all.arp_ignore` on the director.
    pub arp_ignore_all: Option<String>,
    /// For each address asked for, the MACs that answered for it: ARP replies for an IPv4
    /// address, neighbour advertisements for an IPv6 one.
    pub answers: BTreeMap<IpAddr, Vec<MacAddr>>,
    /// How long the ARP and neighbour discovery probes listened.
    pub probe_window: Duration,
    /// How long a connection attempt could take.
    pub connect_timeout: Duration,
    /// The outcome for each TCP target.
    pub health: BTreeMap<HealthTarget, HealthResult>,
}

impl Observations {
    fn answers_for(&self, address: IpAddr) -> &[MacAddr] {
        self.answers.get(&address).map_or(&[], Vec::as_slice)
    }

    /// Whether `address` is on the director interface's segment (`netlink::on_link`).
    fn on_link(&self, address: IpAddr) -> bool {
        match address {
            IpAddr::V4(_) => on_link(address, &self.networks),
            IpAddr::V6(_) => on_link(address, &self.networks6),
        }
    }

    /// The interface's subnets of `address`'s family, for messages; host addresses (such as
    /// the VIP) are no segment.
    fn networks_text(&self, address: IpAddr) -> String {
        let (list, family): (Vec<String>, _) = match address {
            IpAddr::V4(_) => (
                self.networks
                    .iter()
                    .filter(|&&(_, prefix)| prefix < 32)
                    .map(|(a, p)| format!("{a}/{p}"))
                    .collect(),
                "IPv4",
            ),
            IpAddr::V6(_) => (
                self.networks6
                    .iter()
                    .filter(|&&(_, prefix)| prefix < 128)
                    .map(|(a, p)| format!("{a}/{p}"))
                    .collect(),
                "IPv6",
            ),
        };
        if list.is_empty() {
            return format!("no {family} subnet");
        }
        list.join(", ")
    }
}

/// How an address of one family is resolved, in the words and checks the findings use.
struct Resolution {
    /// "ARP" or "NDP".
    protocol: &'static str,
    own_address: Check,
    vip: Check,
}

fn resolution(address: IpAddr) -> Resolution {
    match address {
        IpAddr::V4(_) => Resolution {
            protocol: "ARP",
            own_address: Check::ArpOwnAddress,
            vip: Check::ArpVip,
        },
        IpAddr::V6(_) => Resolution {
            protocol: "NDP",
            own_address: Check::NdpOwnAddress,
            vip: Check::NdpVip,
        },
    }
}

/// What makes a real server stop answering for a VIP, by the VIP's family.
fn vip_answer_fix(rs: IpAddr, vip: IpAddr) -> String {
    match vip {
        IpAddr::V4(_) => format!(
            "on {rs} run `lvs realserver up {vip}` (or scripts/realserver.sh start {vip}): \
             arp_ignore=1 and arp_announce=2 on all and the facing interface, the VIP on lo \
             only"
        ),
        // Linux answers a neighbour solicitation only for addresses of the interface it
        // arrived on, so an IPv6 answer means the VIP is on that interface, or proxied.
        IpAddr::V6(_) => format!(
            "on {rs} run `lvs realserver up {vip}` (or scripts/realserver.sh start {vip}) and \
             remove {vip} from every interface but lo (`ip -6 addr`), and keep proxy_ndp at 0 \
             (`ip -6 neigh show proxy` lists proxied addresses)"
        ),
    }
}

/// Turns what was observed into findings, with fixes.
pub fn evaluate(plan: &Plan, seen: &Observations) -> Report {
    // The director's arp_ignore matters to IPv4 VIPs only; a cluster of IPv6 VIPs alone is
    // not told about it (one without VIPs is, as before: nothing says which it will be).
    let vips = plan.vips();
    let mut findings = Vec::new();
    if vips.is_empty() || vips.iter().any(IpAddr::is_ipv4) {
        findings.push(judge_director(&plan.interface, seen));
    }
    for real_server in &plan.real_servers {
        findings.extend(judge_real_server(&plan.interface, real_server, seen));
    }
    findings.extend(judge_vip_answerers(plan, seen));
    Report::new(findings)
}

fn judge_director(interface: &str, seen: &Observations) -> Finding {
    let subject = format!("director {interface}");
    let value = seen.arp_ignore_all.as_deref().unwrap_or("?");
    match seen
        .arp_ignore_all
        .as_deref()
        .and_then(arp_ignore_all_problem)
    {
        Some(problem) => Finding::new(subject, Check::DirectorArpIgnore, Status::Fail, problem)
            .with_fix("sysctl -w net.ipv4.conf.all.arp_ignore=1".into()),
        None => Finding::new(
            subject,
            Check::DirectorArpIgnore,
            Status::Ok,
            format!(
                "net.ipv4.conf.all.arp_ignore = {value}: the director can answer ARP for its VIPs"
            ),
        ),
    }
}

fn judge_real_server(interface: &str, plan: &RealServerPlan, seen: &Observations) -> Vec<Finding> {
    let rs = plan.address;
    let subject = format!("real server {rs}");
    let finding = |check, status, detail| Finding::new(subject.clone(), check, status, detail);
    let mut findings = Vec::new();
    let reachable = seen.on_link(rs);
    let networks = seen.networks_text(rs);
    let Resolution {
        protocol,
        own_address,
        ..
    } = resolution(rs);
    if reachable {
        findings.push(finding(
            Check::OnLink,
            Status::Ok,
            format!("on the segment of {interface} ({networks})"),
        ));
    } else {
        findings.push(
            finding(
                Check::OnLink,
                Status::Fail,
                format!(
                    "not on a subnet of {interface} ({networks}): direct routing only rewrites \
                     the MAC, so the director never forwards to it"
                ),
            )
            .with_fix(format!(
                "put {rs} on the segment of {interface}, give {interface} an address on its \
                 subnet, or remove it from the configuration"
            )),
        );
    }

    let own_macs = seen.answers_for(rs);
    let window = seen.probe_window;
    let own_mac = if !reachable {
        findings.push(finding(
            own_address,
            Status::Skip,
            format!("{protocol} not checked: not on the segment"),
        ));
        None
    } else {
        match own_macs {
            [] => {
                let setting = match rs {
                    IpAddr::V4(_) => "that its arp_ignore is 1, not 8",
                    IpAddr::V6(_) => "that IPv6 is enabled on its facing interface",
                };
                findings.push(
                    finding(
                        own_address,
                        Status::Fail,
                        format!("no {protocol} answer for {rs} within {window:?}"),
                    )
                    .with_fix(format!(
                        "check that {rs} is up and on the same L2 segment (VLAN) as \
                         {interface}, and {setting}"
                    )),
                );
                None
            }
            [mac] => {
                findings.push(finding(
                    own_address,
                    Status::Ok,
                    format!("answers {protocol} for {rs} from {mac}"),
                ));
                Some(*mac)
            }
            several => {
                findings.push(
                    finding(
                        own_address,
                        Status::Fail,
                        format!(
                            "several hosts answer {protocol} for {rs} ({}): an address conflict",
                            join_macs(several)
                        ),
                    )
                    .with_fix(format!(
                        "give each of these hosts its own address; only one may be {rs}"
                    )),
                );
                None
            }
        }
    };

    for &vip in &plan.vips {
        let Resolution {
            protocol,
            vip: check,
            ..
        } = resolution(vip);
        findings.push(match own_mac {
            None => finding(
                check,
                Status::Skip,
                format!(
                    "cannot tell whether it answers {protocol} for the VIP {vip}: its MAC is \
                     unknown"
                ),
            ),
            Some(mac) if seen.answers_for(vip).contains(&mac) => finding(
                check,
                Status::Fail,
                format!(
                    "answers {protocol} for the VIP {vip} (from {mac}): clients and routers \
                     that ask for the VIP can learn its MAC and bypass the director"
                ),
            )
            .with_fix(vip_answer_fix(rs, vip)),
            Some(_) => finding(
                check,
                Status::Ok,
                format!("does not answer {protocol} for the VIP {vip}"),
            ),
        });
    }

    for target in &plan.targets {
        findings.push(judge_health(&subject, target, seen));
    }
    findings
}

fn judge_health(subject: &str, target: &HealthTarget, seen: &Observations) -> Finding {
    let HealthTarget {
        protocol,
        address,
        port,
    } = *target;
    let name = format!("{} {address}:{port}", protocol.name());
    let finding = |status, detail| Finding::new(subject, Check::HealthCheck, status, detail);
    let fix = format!(
        "start the service on {address} port {port} (listening on the VIP and on its own \
         address), or open its firewall to the director"
    );
    match (protocol, seen.health.get(target)) {
        (Protocol::Udp, _) => finding(
            Status::Skip,
            format!("{name}: UDP has no connection to try; not checked"),
        ),
        (Protocol::Tcp, Some(HealthResult::Connected)) => {
            finding(Status::Ok, format!("{name} accepts connections"))
        }
        (Protocol::Tcp, Some(HealthResult::Refused)) => {
            finding(Status::Fail, format!("{name} refused the connection")).with_fix(fix)
        }
        (Protocol::Tcp, Some(HealthResult::TimedOut)) => finding(
            Status::Fail,
            format!("{name} did not answer within {:?}", seen.connect_timeout),
        )
        .with_fix(fix),
        (Protocol::Tcp, Some(HealthResult::Failed(error))) => {
            finding(Status::Fail, format!("{name}: {error}")).with_fix(fix)
        }
        (Protocol::Tcp, None) => finding(Status::Skip, format!("{name}: not checked")),
    }
}

/// Hosts that answer ARP for a VIP and are no configured real server.
fn judge_vip_answerers(plan: &Plan, seen: &Observations) -> Vec<Finding> {
    let real_server_macs: Vec<MacAddr> = plan
        .real_servers
        .iter()
        .flat_map(|p| seen.answers_for(p.address).iter().copied())
        .collect();
    plan.vips()
        .into_iter()
        .filter_map(|vip| {
            let Resolution { protocol, .. } = resolution(vip);
            let how_to_stop = match vip {
                IpAddr::V4(_) => "set its arp_ignore=1",
                IpAddr::V6(_) => "move it to lo",
            };
            let strangers: Vec<MacAddr> = seen
                .answers_for(vip)
                .iter()
                .copied()
                .filter(|mac| !real_server_macs.contains(mac))
                .collect();
            (!strangers.is_empty()).then(|| {
                Finding::new(
                    format!("VIP {vip}"),
                    Check::VipAnswerers,
                    Status::Warn,
                    format!(
                        "{protocol} for the VIP is answered by {}, which is no configured real \
                         server: right if that is a director holding the VIP (a VRRP peer), \
                         otherwise that host takes the VIP's traffic",
                        join_macs(&strangers)
                    ),
                )
                .with_fix(format!(
                    "find the host by its MAC (`ip neigh`, the switch's MAC table) and remove \
                     {vip} from it or {how_to_stop}"
                ))
            })
        })
        .collect()
}

fn join_macs(macs: &[MacAddr]) -> String {
    let list: Vec<String> = macs.iter().map(ToString::to_string).collect();
    list.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logic::config;

    const CONFIG: &str = r#"
[director]
interface = "eth0"

[[virtual_server]]
address = "10.77.0.100"
port = 80
protocol = "TCP"

[[virtual_server.real_server]]
address = "10.77.0.11"

[[virtual_server.real_server]]
address = "10.77.0.12"

[[virtual_server]]
address = "10.77.0.100"
port = 53
protocol = "UDP"

[[virtual_server.real_server]]
address = "10.77.0.11"

[[virtual_server.real_server]]
address = "10.20.0.5"
"#;

    const RS1: MacAddr = MacAddr([2, 0, 0, 0, 0, 0x11]);
    const RS2: MacAddr = MacAddr([2, 0, 0, 0, 0, 0x12]);
    const PEER: MacAddr = MacAddr([2, 0, 0, 0, 0, 0x99]);

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    fn v4(text: &str) -> Ipv4Addr {
        text.parse().unwrap()
    }

    fn plan() -> Plan {
        Plan::from_config(&config::parse(CONFIG, "test.toml").unwrap())
    }

    fn tcp(address: &str) -> HealthTarget {
        HealthTarget {
            protocol: Protocol::Tcp,
            address: ip(address),
            port: 80,
        }
    }

    fn healthy() -> Observations {
        Observations {
            networks: vec![(v4("10.77.0.1"), 24), (v4("10.77.0.100"), 32)],
            networks6: Vec::new(),
            arp_ignore_all: Some("0".into()),
            answers: [(ip("10.77.0.11"), vec![RS1]), (ip("10.77.0.12"), vec![RS2])]
                .into_iter()
                .collect(),
            probe_window: Duration::from_secs(1),
            connect_timeout: Duration::from_secs(2),
            health: [
                (tcp("10.77.0.11"), HealthResult::Connected),
                (tcp("10.77.0.12"), HealthResult::Connected),
                (tcp("10.20.0.5"), HealthResult::Connected),
            ]
            .into_iter()
            .collect(),
        }
    }

    /// (subject, check, status) of every finding, for compact comparisons.
    fn outcome(report: &Report) -> Vec<(String, Check, Status)> {
        report
            .findings
            .iter()
            .map(|f| (f.subject.clone(), f.check, f.status))
            .collect()
    }

    fn status_of(report: &Report, subject: &str, check: Check) -> Vec<Status> {
        report
            .findings
            .iter()
            .filter(|f| f.subject == subject && f.check == check)
            .map(|f| f.status)
            .collect()
    }

    #[test]
    fn each_real_server_is_planned_once_with_all_its_vips_and_targets() {
        let plan = plan();
        let addresses: Vec<_> = plan.real_servers.iter().map(|p| p.address).collect();
        assert_eq!(
            addresses,
            [ip("10.77.0.11"), ip("10.77.0.12"), ip("10.20.0.5")]
        );
        assert_eq!(plan.real_servers[0].targets.len(), 2, "TCP 80 and UDP 53");
        assert_eq!(plan.vips(), [ip("10.77.0.100")].into_iter().collect());
    }

    #[test]
    fn a_healthy_cluster_only_fails_its_off_link_server() {
        let report = evaluate(&plan(), &healthy());
        let failures: Vec<_> = outcome(&report)
            .into_iter()
            .filter(|(_, _, s)| *s == Status::Fail)
            .collect();
        assert_eq!(
            failures,
            [(
                "real server 10.20.0.5".to_owned(),
                Check::OnLink,
                Status::Fail
            )]
        );
        assert_eq!(
            status_of(&report, "real server 10.77.0.11", Check::HealthCheck),
            [Status::Ok, Status::Skip],
            "TCP checked, UDP not"
        );
        assert_eq!(
            status_of(&report, "real server 10.20.0.5", Check::ArpVip),
            [Status::Skip]
        );
        assert!(!report.ok());
        let on_link = &report.findings[1];
        assert_eq!(on_link.detail, "on the segment of eth0 (10.77.0.1/24)");
    }

    #[test]
    fn a_real_server_answering_for_the_vip_is_the_classic_mistake() {
        let mut seen = healthy();
        seen.answers.insert(ip("10.77.0.100"), vec![RS2, PEER]);
        let report = evaluate(&plan(), &seen);
        assert_eq!(
            status_of(&report, "real server 10.77.0.12", Check::ArpVip),
            [Status::Fail]
        );
        assert_eq!(
            status_of(&report, "real server 10.77.0.11", Check::ArpVip),
            [Status::Ok],
            "one line per VIP, however many services share it"
        );
        let fail = report
            .findings
            .iter()
            .find(|f| f.check == Check::ArpVip && f.status == Status::Fail)
            .unwrap();
        assert!(fail.detail.contains("02:00:00:00:00:12"), "{}", fail.detail);
        assert!(
            fail.fix
                .as_deref()
                .unwrap()
                .contains("lvs realserver up 10.77.0.100")
        );
        assert_eq!(
            status_of(&report, "VIP 10.77.0.100", Check::VipAnswerers),
            [Status::Warn],
            "the unknown MAC is reported, the real server's is not repeated"
        );
    }

    #[test]
    fn silent_conflicting_and_closed_servers_fail_with_fixes() {
        let mut seen = healthy();
        seen.answers.insert(ip("10.77.0.11"), vec![]);
        seen.answers.insert(ip("10.77.0.12"), vec![RS2, PEER]);
        seen.health.insert(tcp("10.77.0.12"), HealthResult::Refused);
        seen.health
            .insert(tcp("10.77.0.11"), HealthResult::TimedOut);
        seen.arp_ignore_all = Some("2".into());
        let report = evaluate(&plan(), &seen);
        for (subject, check) in [
            ("director eth0", Check::DirectorArpIgnore),
            ("real server 10.77.0.11", Check::ArpOwnAddress),
            ("real server 10.77.0.12", Check::ArpOwnAddress),
        ] {
            assert_eq!(
                status_of(&report, subject, check),
                [Status::Fail],
                "{subject}"
            );
        }
        assert_eq!(
            status_of(&report, "real server 10.77.0.11", Check::ArpVip),
            [Status::Skip],
            "without its MAC the VIP answer cannot be attributed"
        );
        let health: Vec<_> = report
            .findings
            .iter()
            .filter(|f| f.check == Check::HealthCheck && f.status == Status::Fail)
            .map(|f| (f.detail.as_str(), f.fix.is_some()))
            .collect();
        assert_eq!(
            health,
            [
                ("TCP 10.77.0.11:80 did not answer within 2s", true),
                ("TCP 10.77.0.12:80 refused the connection", true),
            ]
        );
        assert!(
            report
                .findings
                .iter()
                .all(|f| f.status != Status::Fail || f.fix.is_some())
        );
    }

    /// Observations of an IPv6 cluster: two real servers on 2001:db8:77::/64 serving the VIP
    /// 2001:db8:77::100, both advertising their own address.
    fn ipv6_cluster() -> (Plan, Observations) {
        let target = |address: &str| HealthTarget {
            protocol: Protocol::Tcp,
            address: ip(address),
            port: 80,
        };
        let server = |address: &str| RealServerPlan {
            address: ip(address),
            vips: [ip("2001:db8:77::100")].into_iter().collect(),
            targets: [target(address)].into_iter().collect(),
        };
        let plan = Plan {
            interface: "eth0".into(),
            real_servers: vec![server("2001:db8:77::11"), server("2001:db8:77::12")],
        };
        let seen = Observations {
            networks6: vec![
                ("2001:db8:77::1".parse().unwrap(), 64),
                ("fe80::1".parse().unwrap(), 64),
            ],
            answers: [
                (ip("2001:db8:77::11"), vec![RS1]),
                (ip("2001:db8:77::12"), vec![RS2]),
                (ip("2001:db8:77::100"), vec![]),
            ]
            .into_iter()
            .collect(),
            probe_window: Duration::from_secs(1),
            connect_timeout: Duration::from_secs(2),
            health: [
                (target("2001:db8:77::11"), HealthResult::Connected),
                (target("2001:db8:77::12"), HealthResult::Refused),
            ]
            .into_iter()
            .collect(),
            ..Observations::default()
        };
        (plan, seen)
    }

    #[test]
    fn ipv6_real_servers_are_judged_by_neighbour_discovery() {
        let (plan, seen) = ipv6_cluster();
        let report = evaluate(&plan, &seen);
        assert_eq!(
            status_of(&report, "director eth0", Check::DirectorArpIgnore),
            [],
            "arp_ignore means nothing to IPv6 VIPs"
        );
        let rs1 = "real server 2001:db8:77::11";
        assert_eq!(status_of(&report, rs1, Check::OnLink), [Status::Ok]);
        assert_eq!(status_of(&report, rs1, Check::NdpOwnAddress), [Status::Ok]);
        assert_eq!(status_of(&report, rs1, Check::NdpVip), [Status::Ok]);
        assert_eq!(status_of(&report, rs1, Check::ArpVip), []);
        let detail = |subject: &str, check| {
            report
                .findings
                .iter()
                .find(|f| f.subject == subject && f.check == check)
                .map(|f| f.detail.clone())
                .unwrap()
        };
        assert_eq!(
            detail(rs1, Check::OnLink),
            "on the segment of eth0 (2001:db8:77::1/64, fe80::1/64)"
        );
        assert_eq!(
            detail(rs1, Check::NdpVip),
            "does not answer NDP for the VIP 2001:db8:77::100"
        );
        assert_eq!(
            status_of(&report, "real server 2001:db8:77::12", Check::HealthCheck),
            [Status::Fail],
            "TCP over IPv6 judged as over IPv4"
        );
    }

    #[test]
    fn an_ipv6_real_server_advertising_the_vip_fails_with_the_ipv6_fix() {
        let (plan, mut seen) = ipv6_cluster();
        seen.answers.insert(ip("2001:db8:77::100"), vec![RS2, PEER]);
        let report = evaluate(&plan, &seen);
        let rs2 = "real server 2001:db8:77::12";
        assert_eq!(status_of(&report, rs2, Check::NdpVip), [Status::Fail]);
        let fail = report
            .findings
            .iter()
            .find(|f| f.subject == rs2 && f.check == Check::NdpVip)
            .unwrap();
        assert!(
            fail.detail.starts_with("answers NDP for the VIP"),
            "{}",
            fail.detail
        );
        let fix = fail.fix.as_deref().unwrap();
        assert!(fix.contains("lvs realserver up 2001:db8:77::100"), "{fix}");
        assert!(fix.contains("every interface but lo"), "{fix}");
        assert!(!fix.contains("arp_ignore"), "{fix}");
        assert_eq!(
            status_of(&report, "VIP 2001:db8:77::100", Check::VipAnswerers),
            [Status::Warn]
        );
        assert_eq!(
            status_of(&report, "real server 2001:db8:77::11", Check::NdpVip),
            [Status::Ok]
        );
    }

    #[test]
    fn silent_and_off_link_ipv6_servers_fail_or_skip() {
        let (mut plan, mut seen) = ipv6_cluster();
        seen.answers.insert(ip("2001:db8:77::11"), vec![]);
        plan.real_servers[1].address = ip("2001:db8:99::12");
        let report = evaluate(&plan, &seen);
        let silent = "real server 2001:db8:77::11";
        assert_eq!(
            status_of(&report, silent, Check::NdpOwnAddress),
            [Status::Fail]
        );
        assert_eq!(
            status_of(&report, silent, Check::NdpVip),
            [Status::Skip],
            "without its MAC the VIP answer cannot be attributed"
        );
        let off = "real server 2001:db8:99::12";
        assert_eq!(status_of(&report, off, Check::OnLink), [Status::Fail]);
        assert_eq!(
            status_of(&report, off, Check::NdpOwnAddress),
            [Status::Skip]
        );
        // A link-local real server is on the link whatever the interface's global prefixes.
        plan.real_servers[1].address = ip("fe80::12");
        let report = evaluate(&plan, &seen);
        assert_eq!(
            status_of(&report, "real server fe80::12", Check::OnLink),
            [Status::Ok]
        );
    }
}
