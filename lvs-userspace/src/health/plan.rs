//! Which checks run, and who follows each: the pure part of the supervisor.
//!
//! A check is identified by its whole definition (what it probes, where, and its timing),
//! so real servers of different services with the same address and the same checker follow
//! one check that runs once. Services without any checker and without a sorry server are
//! left out: health checking changes nothing for them.

use std::{
    collections::HashMap,
    hash::{Hash as _, Hasher as _},
    net::Ipv4Addr,
    sync::Arc,
    time::Duration,
};

use lvs_common::keys::ServiceMapKey;

use crate::logic::{
    config::Config,
    config::health::{Check, Script},
};

/// The checks and the services that follow them.
#[derive(Debug, Default)]
pub struct Plan {
    pub services: Vec<ServicePlan>,
    /// Every distinct check, with the real servers that follow it.
    pub checks: HashMap<Arc<Check>, Vec<MemberRef>>,
}

/// A real server of a planned service: `services[service].members[member]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct MemberRef {
    pub service: usize,
    pub member: usize,
}

/// A service under health checking.
#[derive(Debug)]
pub struct ServicePlan {
    pub key: ServiceMapKey,
    /// As the log shows it: "TCP 192.0.2.10:80".
    pub name: String,
    pub quorum: u32,
    pub hysteresis: u32,
    pub sorry_server: Option<Ipv4Addr>,
    pub quorum_up: Option<Script>,
    pub quorum_down: Option<Script>,
    pub omega: bool,
    pub members: Vec<MemberPlan>,
}

/// A real server of a planned service.
#[derive(Debug)]
pub struct MemberPlan {
    pub address: Ipv4Addr,
    pub weight: u32,
    pub inhibit_on_failure: bool,
    pub notify_up: Option<Script>,
    pub notify_down: Option<Script>,
    /// None: not checked, always up.
    pub check: Option<Arc<Check>>,
}

/// Plans the checks of a configuration.
pub fn plan(config: &Config) -> Plan {
    let mut plan = Plan::default();
    // One Arc per distinct check, so followers share it.
    let mut interned: HashMap<Check, Arc<Check>> = HashMap::new();
    for service in &config.services {
        let health = &service.health;
        if !health.is_checked() && health.sorry_server.is_none() {
            continue;
        }
        let index = plan.services.len();
        let mut members = Vec::with_capacity(service.real_servers.len());
        for rs in &service.real_servers {
            let settings = health
                .real_servers
                .get(&rs.address)
                .cloned()
                .unwrap_or_default();
            let check = settings.check.map(|check| {
                interned
                    .entry(check.clone())
                    .or_insert_with(|| Arc::new(check))
                    .clone()
            });
            if let Some(check) = &check {
                plan.checks
                    .entry(check.clone())
                    .or_default()
                    .push(MemberRef {
                        service: index,
                        member: members.len(),
                    });
            }
            members.push(MemberPlan {
                address: rs.address,
                weight: rs.weight,
                inhibit_on_failure: settings.inhibit_on_failure,
                notify_up: settings.notify_up,
                notify_down: settings.notify_down,
                check,
            });
        }
        plan.services.push(ServicePlan {
            key: service.key(),
            name: service.to_string(),
            quorum: health.quorum,
            hysteresis: health.hysteresis,
            sorry_server: health.sorry_server,
            quorum_up: health.quorum_up.clone(),
            quorum_down: health.quorum_down.clone(),
            omega: health.omega,
            members,
        });
    }
    plan
}

/// The delay before a check's first attempt: spread over `0..warmup` by the check's own
/// hash, so that many checks configured together start at different instants, and a given
/// check always gets the same offset.
pub fn first_delay(check: &Check) -> Duration {
    let warmup = check.timing.warmup.as_millis() as u64;
    if warmup == 0 {
        return Duration::ZERO;
    }
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    check.hash(&mut hasher);
    Duration::from_millis(hasher.finish() % warmup)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logic::config;

    const SHARED: &str = r#"
[director]
interface = "eth0"

[[virtual_server]]
address = "10.0.0.100"
port = 80
delay_loop = 2

[[virtual_server.real_server]]
address = "10.0.0.11"
[virtual_server.real_server.TCP_CHECK]
connect_timeout = 1

[[virtual_server.real_server]]
address = "10.0.0.12"
weight = 3
inhibit_on_failure = true
[virtual_server.real_server.TCP_CHECK]
connect_timeout = 1

[[virtual_server]]
address = "10.0.0.101"
port = 80
delay_loop = 2

[[virtual_server.real_server]]
address = "10.0.0.11"
[virtual_server.real_server.TCP_CHECK]
connect_timeout = 1

[[virtual_server.real_server]]
address = "10.0.0.12"
[virtual_server.real_server.TCP_CHECK]
connect_timeout = 2

[[virtual_server]]
address = "10.0.0.102"
port = 80

[[virtual_server.real_server]]
address = "10.0.0.11"
"#;

    #[test]
    fn identical_checks_of_several_services_are_planned_once() {
        let plan = plan(&config::parse(SHARED, "t.toml").unwrap());
        // 10.0.0.11's check is the same in both services; 10.0.0.12's differs by its
        // timeout; the third service has no checks and no sorry server.
        assert_eq!(plan.services.len(), 2);
        assert_eq!(plan.checks.len(), 3);
        let shared = plan.services[0].members[0].check.clone().unwrap();
        assert!(Arc::ptr_eq(
            &shared,
            plan.services[1].members[0].check.as_ref().unwrap()
        ));
        assert_eq!(
            plan.checks[&shared],
            vec![
                MemberRef {
                    service: 0,
                    member: 0
                },
                MemberRef {
                    service: 1,
                    member: 0
                }
            ]
        );
        let member = &plan.services[0].members[1];
        assert_eq!((member.weight, member.inhibit_on_failure), (3, true));
        assert_eq!(plan.services[0].name, "TCP 10.0.0.100:80");
    }

    #[test]
    fn warmup_spreads_first_checks_within_its_window() {
        let config = config::parse(
            &SHARED.replace("connect_timeout = 1\n", "connect_timeout = 1\nwarmup = 5\n"),
            "t.toml",
        )
        .unwrap();
        let planned = plan(&config);
        for check in planned.checks.keys() {
            let delay = first_delay(check);
            assert!(delay < Duration::from_secs(5) || check.timing.warmup.is_zero());
            assert_eq!(delay, first_delay(check), "stable");
        }
        let no_warmup = plan(&config::parse(SHARED, "t.toml").unwrap());
        assert!(no_warmup.checks.keys().all(|c| first_delay(c).is_zero()));
    }
}
