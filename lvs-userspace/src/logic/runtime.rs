//! What the running director does with its wanted services, decided in pure functions: an
//! `lvsadm` batch applied to them (with ipvsadm's answers), a reloaded file taken in, and the
//! counters a `-Z` zeroes. The model ([`Model`]) is the one place that holds the wanted
//! services; these functions change it all or not at all. `snapshot` builds what `lvsadm -L`
//! shows from the model's views.

pub mod snapshot;

use std::path::Path;

use crate::logic::{
    api::{Change, Response, ServiceKey, Timeouts},
    config::{self, Config},
    deny::{DenyError, DenyList},
    ipvsadm::rules::RuleSet,
    model::{Model, ModelError},
};

/// Why an `apply` changed nothing, as the control socket answers it.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct Refusal {
    pub message: String,
    /// The index of the change that does not fit, when one change is to blame.
    pub change: Option<usize>,
}

impl From<Refusal> for Response {
    fn from(refusal: Refusal) -> Self {
        Response::Error {
            message: refusal.message,
            change: refusal.change,
        }
    }
}

/// What an applied batch asks of the director besides the new wanted services, which are
/// already in the model.
#[derive(Debug, PartialEq, Eq)]
pub struct Applied {
    /// The timeouts in force afterwards (`--set` changes them).
    pub timeouts: Timeouts,
    /// Each `-Z` of the batch, in order: one service, or all of them.
    pub zeroed: Vec<Option<ServiceKey>>,
}

/// Applies `lvsadm`'s changes to the model's wanted services, all or none: the whole batch is
/// checked on a copy (ipvsadm's answers, the values the wire leaves open) and must fit the
/// maps before the model changes. The data plane follows at the model's next `sync`.
pub fn apply_changes(
    model: &mut Model,
    timeouts: Timeouts,
    changes: &[Change],
) -> Result<Applied, Refusal> {
    let current = RuleSet {
        services: model.wanted(),
        timeouts,
    };
    let next = current
        .apply_all(changes)
        .map_err(|(index, error)| Refusal {
            message: error.to_string(),
            change: Some(index),
        })?;
    model.apply(&next.services).map_err(|error| Refusal {
        message: error.to_string(),
        change: None,
    })?;
    let zeroed = changes
        .iter()
        .filter_map(|change| match change {
            Change::Zero { service } => Some(*service),
            _ => None,
        })
        .collect();
    Ok(Applied {
        timeouts: next.timeouts,
        zeroed,
    })
}

/// A reloaded file that does not fit the maps; nothing changed.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum DoesNotFit {
    #[error("the new configuration does not fit; nothing changed")]
    Services(#[source] ModelError),
    #[error("the new deny list does not fit beside the runtime prefixes; nothing changed")]
    Deny(#[source] DenyError),
}

/// Takes in a reloaded, validated file: its services replace the model's wanted services,
/// its `[deny]` prefixes the file's part of the deny list (runtime prefixes stay), and the
/// director settings a running director can change replace those in `settings`. Returns
/// what to tell the operator, naming the settings that only a restart applies.
pub fn reload(
    model: &mut Model,
    deny: &mut DenyList,
    settings: &mut config::Director,
    new: Config,
    path: &Path,
) -> Result<String, DoesNotFit> {
    let needs_restart = restart_only_changes(settings, &new.director);
    let mut next_deny = deny.clone();
    next_deny.set_config(&new.deny).map_err(DoesNotFit::Deny)?;
    model.apply(&new.services).map_err(DoesNotFit::Services)?;
    *deny = next_deny;
    settings.timeouts = new.director.timeouts;
    settings.expire_nodest_conn = new.director.expire_nodest_conn;
    let mut message = format!(
        "reloaded {}: {} services",
        path.display(),
        new.services.len()
    );
    if !needs_restart.is_empty() {
        message.push_str(&format!(
            "; these take effect only after a restart: {}",
            needs_restart.join(", ")
        ));
    }
    Ok(message)
}

/// Director settings a reload cannot change while running, by name, when they differ.
fn restart_only_changes(old: &config::Director, new: &config::Director) -> Vec<&'static str> {
    let mut names = Vec::new();
    if old.interface != new.interface {
        names.push("interface");
    }
    if old.xdp_mode != new.xdp_mode {
        names.push("xdp_mode");
    }
    if old.manage_vips != new.manage_vips {
        names.push("manage_vips");
    }
    if old.control_socket != new.control_socket {
        names.push("control_socket");
    }
    if old.trace_packets != new.trace_packets {
        names.push("trace_packets");
    }
    if old.flow_table_size != new.flow_table_size {
        names.push("flow_table_size");
    }
    if old.metrics_listen != new.metrics_listen {
        names.push("metrics_listen");
    }
    names
}

/// The data-plane counters of one service, and of its real servers.
#[derive(Debug, PartialEq, Eq)]
pub struct Counters {
    pub service_index: u32,
    pub real_server_ids: Vec<u32>,
}

/// The counters `-Z` zeroes: those of one service and its real servers (sorry server
/// included), or of every service with `None`.
pub fn counters_to_zero(model: &Model, service: Option<&ServiceKey>) -> Vec<Counters> {
    model
        .services()
        .filter(|view| service.is_none_or(|key| ServiceKey::of(view.service) == *key))
        .map(|view| Counters {
            service_index: view.index,
            real_server_ids: view.real_servers.iter().map(|rs| rs.id).collect(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;
    use crate::logic::{
        api::{ForwardMethod, Protocol, RealServerConfig, ServiceConfig},
        config::Service,
        schedule::{SchedFlags, Scheduler},
    };

    const CONFIG: &str = r#"
[director]
interface = "eth0"

[[virtual_server]]
address = "10.0.0.100"
port = 80
lb_algo = "mh"
sched_flags = ["mh-port"]
persistence_timeout = 60

[[virtual_server.real_server]]
address = "10.0.0.11"
weight = 2
uthreshold = 100
"#;

    fn wanted() -> Vec<Service> {
        config::parse(CONFIG, "t.toml").unwrap().services
    }

    fn server(last: u8, weight: u32) -> RealServerConfig {
        RealServerConfig {
            address: Ipv4Addr::new(10, 0, 0, last).into(),
            forward: ForwardMethod::Route,
            weight,
            u_threshold: 0,
            l_threshold: 0,
        }
    }

    #[test]
    fn the_models_services_are_the_rule_table() {
        let services = wanted();
        let config = ServiceConfig::of(&services[0]);
        assert_eq!(config.scheduler, Scheduler::MaglevHashing);
        assert!(config.sched_flags.port);
        assert_eq!(
            RealServerConfig::of(&services[0].real_servers[0]).u_threshold,
            100
        );
        let mut model = Model::new(&services).unwrap();
        let applied = apply_changes(&mut model, Timeouts::default(), &[]).unwrap();
        assert_eq!(model.wanted(), services);
        assert_eq!(applied.timeouts, Timeouts::default());
        assert!(applied.zeroed.is_empty());
    }

    #[test]
    fn changes_become_services() {
        let services = wanted();
        let mut model = Model::new(&services).unwrap();
        let key = table_key();
        let applied = apply_changes(
            &mut model,
            Timeouts::default(),
            &[
                Change::AddServer {
                    service: key,
                    server: server(12, 0),
                },
                Change::EditService {
                    service: key,
                    config: ServiceConfig {
                        scheduler: Scheduler::RoundRobin,
                        sched_flags: SchedFlags::default(),
                        persistence: None,
                    },
                },
                Change::Zero { service: Some(key) },
                Change::SetTimeouts {
                    timeouts: Timeouts {
                        tcp: 0,
                        tcp_fin: 30,
                        udp: 0,
                    },
                },
            ],
        )
        .unwrap();
        let next = model.wanted();
        assert_eq!(next[0].scheduler, Scheduler::RoundRobin);
        assert_eq!(next[0].persistence, None);
        assert_eq!(next[0].real_servers.len(), 2);
        assert_eq!(next[0].real_servers[1].weight, 0);
        assert_eq!(applied.zeroed, [Some(key)]);
        assert_eq!(applied.timeouts.tcp_fin, 30);
        assert_eq!(applied.timeouts.tcp, Timeouts::default().tcp);
    }

    #[test]
    fn bad_rules_are_refused_with_a_reason_and_change_nothing() {
        let services = wanted();
        let mut model = Model::new(&services).unwrap();
        let refuse = |model: &mut Model, changes: &[Change]| {
            let refusal = apply_changes(model, Timeouts::default(), changes).unwrap_err();
            assert_eq!(model.wanted(), services, "{changes:?} changed the services");
            refusal
        };
        // The service's mh-port flag, sent over the socket for a scheduler it means nothing to.
        let rr = ServiceConfig {
            scheduler: Scheduler::RoundRobin,
            ..ServiceConfig::of(&services[0])
        };
        let refusal = refuse(
            &mut model,
            &[
                Change::DeleteServer {
                    service: table_key(),
                    address: Ipv4Addr::new(10, 0, 0, 11).into(),
                },
                Change::EditService {
                    service: table_key(),
                    config: rr,
                },
            ],
        );
        assert_eq!(
            refusal,
            Refusal {
                message:
                    "TCP 10.0.0.100:80: scheduler flag \"flag-2\" does not apply to scheduler rr"
                        .into(),
                change: Some(1),
            }
        );
        let refusal = refuse(
            &mut model,
            &[Change::AddServer {
                service: table_key(),
                server: RealServerConfig {
                    address: Ipv4Addr::BROADCAST.into(),
                    ..server(12, 1)
                },
            }],
        );
        assert!(
            refusal
                .message
                .contains("cannot be a service or server address"),
            "{refusal}"
        );
        let refusal = refuse(
            &mut model,
            &[Change::DeleteService {
                service: ServiceKey {
                    port: 81,
                    ..table_key()
                },
            }],
        );
        assert_eq!(refusal.message, "No such service");
        assert_eq!(
            Response::from(refusal),
            Response::Error {
                message: "No such service".into(),
                change: Some(0),
            }
        );
    }

    #[test]
    fn a_batch_that_does_not_fit_the_maps_changes_nothing() {
        let services = wanted();
        let mut model = Model::new(&services).unwrap();
        let changes: Vec<Change> = (1..=lvs_common::MAX_SERVICES)
            .map(|port| Change::AddService {
                service: ServiceKey {
                    port: 1000 + port as u16,
                    ..table_key()
                },
                config: ServiceConfig::of(&services[0]),
            })
            .collect();
        let refusal = apply_changes(&mut model, Timeouts::default(), &changes).unwrap_err();
        assert_eq!(
            refusal,
            Refusal {
                message: format!("too many services: at most {}", lvs_common::MAX_SERVICES),
                change: None,
            }
        );
        assert_eq!(model.wanted(), services);
    }

    #[test]
    fn health_checks_stay_with_the_services_and_servers_that_stay() {
        let text = CONFIG.to_owned()
            + "TCP_CHECK = {}\n[[virtual_server.real_server]]\naddress = \"10.0.0.12\"\n\
               TCP_CHECK = {}\n";
        let services = config::parse(&text, "t.toml").unwrap().services;
        assert_eq!(services[0].health.real_servers.len(), 2);
        let mut model = Model::new(&services).unwrap();
        let key = table_key();
        apply_changes(
            &mut model,
            Timeouts::default(),
            &[
                Change::EditServer {
                    service: key,
                    server: RealServerConfig {
                        u_threshold: 0,
                        ..server(11, 5)
                    },
                },
                Change::DeleteServer {
                    service: key,
                    address: Ipv4Addr::new(10, 0, 0, 12).into(),
                },
            ],
        )
        .unwrap();
        let next = model.wanted();
        assert_eq!(next[0].real_servers[0].weight, 5);
        assert_eq!(
            next[0].health.real_servers.keys().collect::<Vec<_>>(),
            [&std::net::IpAddr::from(Ipv4Addr::new(10, 0, 0, 11))],
            "the deleted server's check goes with it"
        );

        // Deleted and added again in one batch (a rules file after -C): the checks stay.
        apply_changes(
            &mut model,
            Timeouts::default(),
            &[
                Change::Clear {},
                Change::AddService {
                    service: key,
                    config: ServiceConfig::of(&next[0]),
                },
                Change::AddServer {
                    service: key,
                    server: server(11, 5),
                },
            ],
        )
        .unwrap();
        assert_eq!(model.wanted()[0].health, next[0].health);
    }

    #[test]
    fn a_reload_replaces_the_services_and_names_what_needs_a_restart() {
        let mut model = Model::new(&wanted()).unwrap();
        let mut settings = config::parse(CONFIG, "t.toml").unwrap().director;
        let edited = CONFIG
            .replace(
                "interface = \"eth0\"",
                "interface = \"eth1\"\ntimeout_tcp = 60\nmetrics_listen = \"127.0.0.1:9100\"",
            )
            .replace("weight = 2", "weight = 7");
        let new = config::parse(&edited, "t.toml").unwrap();
        let mut deny = DenyList::default();
        let message = reload(
            &mut model,
            &mut deny,
            &mut settings,
            new,
            Path::new("/etc/lvs/lvs.toml"),
        )
        .unwrap();
        assert_eq!(
            message,
            "reloaded /etc/lvs/lvs.toml: 1 services; these take effect only after a restart: \
             interface, metrics_listen"
        );
        assert_eq!(model.wanted()[0].real_servers[0].weight, 7);
        assert_eq!(settings.timeouts.tcp, 60);
        assert_eq!(settings.interface, "eth0", "the running interface stays");
        assert_eq!(settings.metrics_listen, None, "so does the status listener");
    }

    #[test]
    fn a_reload_sets_the_files_deny_prefixes_and_one_that_does_not_fit_changes_nothing() {
        let mut model = Model::new(&wanted()).unwrap();
        let mut settings = config::parse(CONFIG, "t.toml").unwrap().director;
        let mut deny = DenyList::default();
        deny.add(&["192.0.2.1".parse().unwrap()]).unwrap();
        let with_deny = format!("{CONFIG}\n[deny]\nprefixes = [\"203.0.113.0/24\"]\n");
        let new = config::parse(&with_deny, "t.toml").unwrap();
        reload(
            &mut model,
            &mut deny,
            &mut settings,
            new,
            Path::new("t.toml"),
        )
        .unwrap();
        let listed: Vec<String> = deny
            .wanted()
            .map(|(prefix, origin)| format!("{prefix} {}", origin.name()))
            .collect();
        assert_eq!(listed, ["192.0.2.1/32 runtime", "203.0.113.0/24 config"]);

        // A file whose list fills the map leaves no room for the runtime prefix.
        let many: Vec<String> = (0..lvs_common::MAX_DENY_PREFIXES)
            .map(|n| format!("\"{}\"", Ipv4Addr::from(0x0a00_0000 + n)))
            .collect();
        let full = format!(
            "{}\n[deny]\nprefixes = [{}]\n",
            CONFIG.replace("weight = 2", "weight = 9"),
            many.join(",")
        );
        let new = config::parse(&full, "t.toml").unwrap();
        let error = reload(
            &mut model,
            &mut deny,
            &mut settings,
            new,
            Path::new("t.toml"),
        )
        .unwrap_err();
        assert!(matches!(error, DoesNotFit::Deny(_)), "{error}");
        assert_eq!(
            deny.wanted()
                .map(|(_, origin)| origin.name())
                .collect::<Vec<_>>(),
            ["runtime", "config"]
        );
        assert_eq!(
            model.wanted()[0].real_servers[0].weight,
            2,
            "the services stay too"
        );
    }

    #[test]
    fn zero_names_one_service_or_all() {
        let text = CONFIG.to_owned()
            + "[[virtual_server]]\naddress = \"10.0.0.101\"\nport = 53\nprotocol = \"UDP\"\n\
               [[virtual_server.real_server]]\naddress = \"10.0.0.21\"\n\
               [[virtual_server.real_server]]\naddress = \"10.0.0.22\"\n";
        let services = config::parse(&text, "t.toml").unwrap().services;
        let model = Model::new(&services).unwrap();
        let dns = ServiceKey {
            protocol: Protocol::Udp,
            address: Ipv4Addr::new(10, 0, 0, 101).into(),
            port: 53,
        };
        assert_eq!(
            counters_to_zero(&model, Some(&dns)),
            [Counters {
                service_index: 1,
                real_server_ids: vec![1, 2],
            }]
        );
        assert_eq!(counters_to_zero(&model, None).len(), 2);
        let missing = ServiceKey { port: 54, ..dns };
        assert!(counters_to_zero(&model, Some(&missing)).is_empty());
    }

    #[test]
    fn the_listing_shows_what_health_checking_left_in_effect() {
        use crate::{
            base::health::{Admission, HealthState, HealthStatus},
            logic::{dataplane::FakeDataPlane, model::Model, rates::RateBook},
        };
        let text = CONFIG.replacen(
            "persistence_timeout = 60\n",
            "persistence_timeout = 60\nsorry_server = { address = \"10.0.0.9\" }\n",
            1,
        ) + "[[virtual_server.real_server]]\naddress = \"10.0.0.12\"\nweight = 3\n\
             [[virtual_server.real_server]]\naddress = \"10.0.0.13\"\nweight = 4\n";
        let services = config::parse(&text, "t.toml").unwrap().services;
        let mut model = Model::new(&services).unwrap();
        let service = services[0].key();
        let health = |state, admission| HealthStatus {
            state,
            admission,
            checker: None,
            last_result: None,
        };
        let listed = |model: &Model| {
            snapshot::collect(
                model,
                &FakeDataPlane::default(),
                &RateBook::default(),
                Timeouts::default(),
                &[],
                4096,
            )
            .unwrap()
            .services[0]
                .real_servers
                .iter()
                .map(|rs| (rs.server.address.to_string(), rs.server.weight))
                .collect::<Vec<_>>()
        };
        let listing = |entries: &[(&str, u32)]| {
            entries
                .iter()
                .map(|(address, weight)| ((*address).to_owned(), *weight))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            listed(&model),
            listing(&[("10.0.0.11", 2), ("10.0.0.12", 3), ("10.0.0.13", 4)]),
            "unchecked servers are listed as configured; the sorry server waits unlisted"
        );

        let address = |last| Ipv4Addr::new(10, 0, 0, last);
        model.set_health(
            service,
            address(11).into(),
            health(HealthState::Down, Admission::Removed),
        );
        model.set_health(
            service,
            address(12).into(),
            health(HealthState::Down, Admission::Weight(0)),
        );
        model.set_health(
            service,
            address(13).into(),
            health(HealthState::Up, Admission::Weight(4)),
        );
        model.set_health(
            service,
            address(9).into(),
            health(HealthState::SorryActive, Admission::Weight(1)),
        );
        assert_eq!(
            listed(&model),
            listing(&[("10.0.0.12", 0), ("10.0.0.13", 4), ("10.0.0.9", 1)]),
            "removed: absent; inhibited: weight 0; the active sorry server is listed"
        );

        model.set_health(
            service,
            address(9).into(),
            health(HealthState::SorryStandby, Admission::Removed),
        );
        assert_eq!(
            listed(&model),
            listing(&[("10.0.0.12", 0), ("10.0.0.13", 4)])
        );
    }

    fn table_key() -> ServiceKey {
        ServiceKey {
            protocol: Protocol::Tcp,
            address: Ipv4Addr::new(10, 0, 0, 100).into(),
            port: 80,
        }
    }
}
