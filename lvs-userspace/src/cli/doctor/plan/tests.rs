//! The doctor's judgement, on observations made up for each case.

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
