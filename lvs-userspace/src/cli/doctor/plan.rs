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
    io::{netlink::on_link_of_family, provision::director::arp_ignore_all_problem},
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
        address: real_server.address,
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
                let address = real_server.address;
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
                plan.vips.insert(service.address);
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
        on_link_of_family(address, &self.networks, &self.networks6)
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
    // As a socket address, so that an IPv6 address is bracketed apart from its port.
    let name = format!(
        "{} {}",
        protocol.name(),
        std::net::SocketAddr::new(address, port)
    );
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
mod tests;
