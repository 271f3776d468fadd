//! The controller's side of the flow table: the once-a-second sweep that expires idle
//! connections and templates and counts what is left, as IPVS's connection timers would.
//!
//! The data plane never deletes a flow; it reschedules one it finds expired, and a new
//! connection takes an expired one's slot. The sweep empties expired slots (so that listings and
//! counts of the table show live flows only) and produces the active
//! and inactive connection counts per real server that `ipvsadm -L` shows and that the
//! connection-count schedulers (`lc`, `wlc`, `sed`, `nq`) follow. Counts are therefore at most
//! one sweep old.

use std::{collections::HashMap, net::SocketAddr};

use lvs_common::{
    IPPROTO_TCP,
    flow::{FlowEntry, FlowState, PersistEntry, Settings},
    keys::{FlowMapKey, ServiceMapKey, TemplateMapKey},
};
use serde::{Deserialize, Serialize};

use crate::logic::{
    api::snapshot::ConnectionState,
    config::Protocol,
    dataplane::{DataPlane, DataPlaneError, FlowPosition},
    model::{ConnectionCounts, Model},
};

/// How many flows one step of the sweep reads (whole buckets, so a few more). Reading the
/// mapped flow table costs about 25 ns a slot, empty or not: a fifth of a second for a table
/// of a million buckets of each family. Read whole, a large table would take that time in one
/// burst every second, from whichever core the controller runs on, the data plane's
/// included. In slices of this size, taken every `SWEEP_STEP_INTERVAL_MS`, the controller
/// reads about 256k flows a second, in bursts of a few milliseconds; a table of up to that
/// many is still swept whole every second, a larger one over several.
pub const SWEEP_SLICE: usize = 32_768;
/// How often the sweep takes a step (while a pass is under way).
pub const SWEEP_STEP_INTERVAL_MS: u64 = 125;
/// A pass starts at most this often: the sweep's period when the table fits in a few slices.
pub const SWEEP_PERIOD_NS: u64 = 1_000_000_000;

/// The sweep, a slice of the flow table at a time. Each step expires the idle flows of its
/// slice; when a pass over the whole table is done, it also expires templates and hands back
/// the counts of the whole pass, exactly what `sweep` computes over the whole table at once.
#[derive(Debug, Default)]
pub struct Sweeper {
    /// Where the pass under way continues; `None` with `started_ns` set: at the start.
    position: Option<FlowPosition>,
    /// When the pass under way started (`None`: no pass under way).
    started_ns: Option<u64>,
    /// When the last pass started.
    last_start_ns: Option<u64>,
    /// The flows' counts so far in this pass.
    counts: HashMap<u32, ConnectionCounts>,
    /// The flows this pass left in the table so far.
    live_flows: u64,
}

/// What a whole pass of the sweep found.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Pass {
    /// Connection counts per real-server id, as `sweep` gives them.
    pub counts: HashMap<u32, ConnectionCounts>,
    /// The flows left in the table (read and not expired), whether or not their real server
    /// still exists: how full the table is.
    pub live_flows: u64,
}

impl Sweeper {
    /// Takes one step if a pass is due or under way: reads a slice, deletes its expired
    /// flows, and at the end of a pass expires templates and returns the pass's counts.
    pub fn step(
        &mut self,
        dataplane: &mut dyn DataPlane,
        now_ns: u64,
        settings: &Settings,
        generations: &HashMap<u32, u32>,
        template_timeout_ns: impl Fn(&TemplateMapKey) -> Option<u64>,
    ) -> Result<Option<Pass>, DataPlaneError> {
        let step = self.step_reading(
            dataplane,
            now_ns,
            settings,
            generations,
            template_timeout_ns,
        )?;
        Ok(step.and_then(|step| step.pass))
    }

    /// [`step`](Self::step), handing back what it read as well, so that connection sync can
    /// look at the same slice without reading the table a second time. `None` when no pass
    /// is due.
    pub fn step_reading(
        &mut self,
        dataplane: &mut dyn DataPlane,
        now_ns: u64,
        settings: &Settings,
        generations: &HashMap<u32, u32>,
        template_timeout_ns: impl Fn(&TemplateMapKey) -> Option<u64>,
    ) -> Result<Option<Step>, DataPlaneError> {
        if self.started_ns.is_none() {
            let due = self
                .last_start_ns
                .is_none_or(|last| now_ns.saturating_sub(last) >= SWEEP_PERIOD_NS);
            if !due {
                return Ok(None);
            }
            self.started_ns = Some(now_ns);
            self.last_start_ns = Some(now_ns);
            self.position = None;
            self.counts.clear();
            self.live_flows = 0;
        }
        let (flows, next) = dataplane.flows_slice(self.position, SWEEP_SLICE)?;
        let found = sweep(&flows, &[], now_ns, settings, generations, |_| None);
        dataplane.remove_flows(&found.expired_flows)?;
        self.live_flows += (flows.len() - found.expired_flows.len()) as u64;
        add_counts(&mut self.counts, found.counts);
        if next.is_some() {
            self.position = next;
            return Ok(Some(Step {
                flows,
                templates: None,
                pass: None,
            }));
        }
        let templates = dataplane.templates()?;
        let found = sweep(
            &[],
            &templates,
            now_ns,
            settings,
            generations,
            template_timeout_ns,
        );
        dataplane.remove_templates(&found.expired_templates)?;
        add_counts(&mut self.counts, found.counts);
        self.started_ns = None;
        self.position = None;
        Ok(Some(Step {
            flows,
            templates: Some(templates),
            pass: Some(Pass {
                counts: std::mem::take(&mut self.counts),
                live_flows: std::mem::take(&mut self.live_flows),
            }),
        }))
    }
}

/// What one step of the sweep read, expired entries included (they are already deleted).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Step {
    /// The slice of the flow table.
    pub flows: Vec<(FlowMapKey, FlowEntry)>,
    /// Every template, read at the end of a pass.
    pub templates: Option<Vec<(TemplateMapKey, PersistEntry)>>,
    /// The whole pass's counts, at its end.
    pub pass: Option<Pass>,
}

fn add_counts(into: &mut HashMap<u32, ConnectionCounts>, from: HashMap<u32, ConnectionCounts>) {
    for (id, counts) in from {
        let total = into.entry(id).or_default();
        total.active += counts.active;
        total.inactive += counts.inactive;
        total.persistent += counts.persistent;
    }
}

/// What one sweep found.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Sweep {
    /// Counts of live connections and templates per real-server id.
    pub counts: HashMap<u32, ConnectionCounts>,
    pub expired_flows: Vec<FlowMapKey>,
    pub expired_templates: Vec<TemplateMapKey>,
}

/// Sorts every flow and template into live (counted against its real server, if that server
/// is still the one it was scheduled to) or expired. `template_timeout_ns` gives the
/// persistence timeout of a template's service, or `None` when the service is gone or no
/// longer persistent (its templates then expire).
pub fn sweep(
    flows: &[(FlowMapKey, FlowEntry)],
    templates: &[(TemplateMapKey, PersistEntry)],
    now_ns: u64,
    settings: &Settings,
    generations: &HashMap<u32, u32>,
    template_timeout_ns: impl Fn(&TemplateMapKey) -> Option<u64>,
) -> Sweep {
    let mut result = Sweep::default();
    let current = |id: u32, generation: u32| generations.get(&id) == Some(&generation);
    for (key, entry) in flows {
        if now_ns.saturating_sub(entry.last_seen_ns) > settings.timeout_ns(entry.state) {
            result.expired_flows.push(*key);
            continue;
        }
        if !current(entry.real_server_id, entry.generation) {
            continue;
        }
        let counts = result.counts.entry(entry.real_server_id).or_default();
        if FlowState::from_u8(entry.state).is_some_and(FlowState::is_active) {
            counts.active += 1;
        } else {
            counts.inactive += 1;
        }
    }
    for (key, entry) in templates {
        let live = template_timeout_ns(key)
            .is_some_and(|timeout| now_ns.saturating_sub(entry.last_seen_ns) <= timeout);
        if !live {
            result.expired_templates.push(*key);
        } else if current(entry.real_server_id, entry.generation) {
            result
                .counts
                .entry(entry.real_server_id)
                .or_default()
                .persistent += 1;
        }
    }
    result
}

/// The persistence timeouts of the persistent services, in ns, by service.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct TemplateTimeouts(HashMap<ServiceMapKey, u64>);

impl TemplateTimeouts {
    /// The timeouts of the model's wanted services.
    pub fn of(model: &Model) -> Self {
        Self(
            model
                .services()
                .filter_map(|view| {
                    let service = view.service;
                    let timeout = u64::from(service.persistence?.timeout) * 1_000_000_000;
                    Some((service.key(), timeout))
                })
                .collect(),
        )
    }

    /// The timeout of a template's service, or none when the service is gone or no longer
    /// persistent (its templates then expire).
    pub fn get(&self, key: &TemplateMapKey) -> Option<u64> {
        self.0.get(&key.service()).copied()
    }
}

/// One connection as `ipvsadm -Lnc` lists it. Its JSON (the control socket's `connections`
/// answer) names the protocol as ipvsadm prints it ("TCP") and addresses as `a.b.c.d:port`
/// or `[v6]:port`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Connection {
    #[serde(with = "protocol_name")]
    pub protocol: Protocol,
    /// Seconds until the connection expires if idle.
    pub expires_s: u64,
    /// IPVS's state (`NONE` for templates).
    pub state: ConnectionState,
    pub source: SocketAddr,
    pub virtual_address: SocketAddr,
    pub destination: SocketAddr,
    /// A persistence template rather than a connection.
    pub template: bool,
}

/// A protocol by the name ipvsadm prints ("TCP", "UDP").
mod protocol_name {
    use serde::{Deserialize as _, Deserializer, Serializer, de::Error as _};

    use crate::logic::config::Protocol;

    pub fn serialize<S: Serializer>(protocol: &Protocol, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(protocol.name())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Protocol, D::Error> {
        let name = String::deserialize(deserializer)?;
        [Protocol::Tcp, Protocol::Udp]
            .into_iter()
            .find(|protocol| protocol.name() == name)
            .ok_or_else(|| D::Error::custom(format!("unknown protocol {name:?}")))
    }
}

/// Each real server's address and port by its id and generation: what a flow or template
/// stamped with that id and generation is forwarded to.
pub fn destinations(model: &Model) -> HashMap<(u32, u32), SocketAddr> {
    let generations = model.generations();
    model
        .services()
        .flat_map(|view| {
            let port = view.service.port;
            view.real_servers
                .iter()
                .filter_map(|rs| {
                    let generation = *generations.get(&rs.id)?;
                    Some(((rs.id, generation), SocketAddr::new(rs.address, port)))
                })
                .collect::<Vec<_>>()
        })
        .collect()
}

/// The live connections and templates of the model's services, with their destinations (the
/// real server each was scheduled to, while it is still that server).
pub fn list(
    model: &Model,
    flows: &[(FlowMapKey, FlowEntry)],
    templates: &[(TemplateMapKey, PersistEntry)],
    now_ns: u64,
    settings: &Settings,
) -> Vec<Connection> {
    let destinations = destinations(model);
    let timeouts = TemplateTimeouts::of(model);
    connections(
        flows,
        templates,
        now_ns,
        settings,
        |id, generation| destinations.get(&(id, generation)).copied(),
        |key| timeouts.get(key),
    )
}

/// The live connections and templates, with their destinations resolved through
/// `destination` (real-server id and generation to address and port).
pub fn connections(
    flows: &[(FlowMapKey, FlowEntry)],
    templates: &[(TemplateMapKey, PersistEntry)],
    now_ns: u64,
    settings: &Settings,
    destination: impl Fn(u32, u32) -> Option<SocketAddr>,
    template_timeout_ns: impl Fn(&TemplateMapKey) -> Option<u64>,
) -> Vec<Connection> {
    let protocol = |number: u8| {
        if number == IPPROTO_TCP {
            Protocol::Tcp
        } else {
            Protocol::Udp
        }
    };
    let remaining = |last_seen: u64, timeout: u64| {
        timeout.saturating_sub(now_ns.saturating_sub(last_seen)) / 1_000_000_000
    };
    let mut list = Vec::new();
    for (key, entry) in flows {
        let timeout = settings.timeout_ns(entry.state);
        if now_ns.saturating_sub(entry.last_seen_ns) > timeout {
            continue;
        }
        let Some(destination) = destination(entry.real_server_id, entry.generation) else {
            continue;
        };
        let state = FlowState::from_u8(entry.state).map_or(ConnectionState::None, Into::into);
        list.push(Connection {
            protocol: protocol(key.protocol()),
            expires_s: remaining(entry.last_seen_ns, timeout),
            state,
            source: key.client(),
            virtual_address: key.virtual_address(),
            destination,
            template: false,
        });
    }
    for (key, entry) in templates {
        let Some(timeout) = template_timeout_ns(key) else {
            continue;
        };
        if now_ns.saturating_sub(entry.last_seen_ns) > timeout {
            continue;
        }
        let Some(destination) = destination(entry.real_server_id, entry.generation) else {
            continue;
        };
        // IPVS lists a template with the client's port as 0.
        list.push(Connection {
            protocol: protocol(key.service().protocol()),
            expires_s: remaining(entry.last_seen_ns, timeout),
            state: ConnectionState::None,
            source: SocketAddr::new(key.client(), 0),
            virtual_address: key.service().socket(),
            destination,
            template: true,
        });
    }
    // Connections first, then templates; each by service and client, so the list is stable.
    list.sort_by_key(|c| (c.template, c.virtual_address, c.source));
    list
}

/// `CLOCK_MONOTONIC` in nanoseconds: the clock the data plane stamps flows with
/// (`bpf_ktime_get_coarse_ns` reads its coarse variant, which differs by a few milliseconds).
pub fn monotonic_ns() -> u64 {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `now` is a valid timespec to write into; CLOCK_MONOTONIC always exists.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut now) };
    now.tv_sec as u64 * 1_000_000_000 + now.tv_nsec as u64
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, SocketAddrV4};

    use lvs_common::{
        IPPROTO_UDP,
        flow::{FlowKey, FlowState::*, PersistKey},
    };

    use super::*;

    const S: u64 = 1_000_000_000;

    fn flow(port: u16, protocol: u8) -> FlowMapKey {
        FlowMapKey::V4(FlowKey {
            src_addr: [10, 0, 0, 2],
            dst_addr: [10, 0, 0, 100],
            src_port: port.to_be_bytes(),
            dst_port: 80u16.to_be_bytes(),
            protocol,
            _pad: [0; 3],
        })
    }

    fn entry(id: u32, generation: u32, state: FlowState, last_seen_s: u64) -> FlowEntry {
        FlowEntry {
            last_seen_ns: last_seen_s * S,
            real_server_id: id,
            generation,
            state: state as u8,
            ..FlowEntry::default()
        }
    }

    fn template(id: u32, last_seen_s: u64) -> (TemplateMapKey, PersistEntry) {
        (
            TemplateMapKey::V4(PersistKey {
                client: [10, 0, 0, 0],
                vip: [10, 0, 0, 100],
                vport: 80u16.to_be_bytes(),
                protocol: IPPROTO_TCP,
                _pad: 0,
            }),
            PersistEntry {
                last_seen_ns: last_seen_s * S,
                real_server_id: id,
                generation: 1,
            },
        )
    }

    fn settings() -> Settings {
        Settings::with_timeouts(900, 120, 300, 0)
    }

    #[test]
    fn counts_active_and_inactive_and_expires_by_state() {
        let now = 10_000 * S;
        let flows = [
            (flow(1, IPPROTO_TCP), entry(0, 1, Established, 10_000 - 899)),
            (flow(2, IPPROTO_TCP), entry(0, 1, Established, 10_000 - 901)),
            (flow(3, IPPROTO_TCP), entry(0, 1, FinWait, 10_000 - 100)),
            (flow(4, IPPROTO_TCP), entry(0, 1, FinWait, 10_000 - 121)),
            (flow(5, IPPROTO_TCP), entry(1, 1, SynRecv, 10_000 - 59)),
            (flow(6, IPPROTO_UDP), entry(1, 1, Udp, 10_000 - 299)),
        ];
        let generations = HashMap::from([(0, 1), (1, 1)]);
        let result = sweep(
            &flows,
            &[],
            now,
            &settings(),
            &generations,
            |_: &TemplateMapKey| Option::None,
        );
        assert_eq!(
            result.counts[&0],
            ConnectionCounts {
                active: 1,
                inactive: 1,
                persistent: 0
            }
        );
        assert_eq!(
            result.counts[&1].inactive, 2,
            "SYN_RECV and UDP are inactive"
        );
        let mut expired = result.expired_flows.clone();
        expired.sort();
        assert_eq!(expired, [flow(2, IPPROTO_TCP), flow(4, IPPROTO_TCP)]);
    }

    #[test]
    fn flows_of_a_replaced_server_are_not_counted() {
        let flows = [(flow(1, IPPROTO_TCP), entry(0, 1, Established, 100))];
        let generations = HashMap::from([(0, 2)]);
        let result = sweep(
            &flows,
            &[],
            100 * S,
            &settings(),
            &generations,
            |_: &TemplateMapKey| Option::None,
        );
        assert!(result.counts.is_empty());
        assert!(
            result.expired_flows.is_empty(),
            "it expires on its own time"
        );
    }

    #[test]
    fn templates_count_as_persistent_and_expire_with_their_service() {
        let generations = HashMap::from([(3, 1)]);
        let templates = [template(3, 1000)];
        let live = sweep(&[], &templates, 1200 * S, &settings(), &generations, |_| {
            Some(300 * S)
        });
        assert_eq!(live.counts[&3].persistent, 1);
        let old = sweep(&[], &templates, 1301 * S, &settings(), &generations, |_| {
            Some(300 * S)
        });
        assert_eq!(old.expired_templates.len(), 1);
        let gone = sweep(
            &[],
            &templates,
            1001 * S,
            &settings(),
            &generations,
            |_: &TemplateMapKey| Option::None,
        );
        assert_eq!(
            gone.expired_templates.len(),
            1,
            "service no longer persistent"
        );
    }

    #[test]
    fn a_sweeper_pass_counts_expires_and_waits_for_its_period() {
        let mut dataplane = crate::logic::dataplane::FakeDataPlane::default();
        let now = 10_000 * S;
        dataplane.flows.extend([
            (flow(1, IPPROTO_TCP), entry(0, 1, Established, 10_000 - 10)),
            (flow(2, IPPROTO_TCP), entry(0, 1, Established, 10_000 - 901)),
            (flow(3, IPPROTO_UDP), entry(1, 1, Udp, 10_000 - 1)),
        ]);
        let (key, template) = template(1, 10_000 - 400);
        dataplane.templates.insert(key, template);
        let generations = HashMap::from([(0, 1), (1, 1)]);
        let mut sweeper = Sweeper::default();
        let pass = sweeper
            .step(&mut dataplane, now, &settings(), &generations, |_| {
                Some(300 * S)
            })
            .unwrap()
            .expect("a small table is swept in one step");
        assert_eq!(pass.counts[&0].active, 1);
        assert_eq!(pass.counts[&1].inactive, 1);
        assert_eq!(pass.counts[&1].persistent, 0, "the template expired");
        assert_eq!(pass.live_flows, 2);
        assert_eq!(dataplane.flows.len(), 2, "the idle flow was deleted");
        assert!(dataplane.templates.is_empty());

        // The next pass waits for the period; then it counts again from zero.
        let soon = sweeper
            .step(
                &mut dataplane,
                now + S / 2,
                &settings(),
                &generations,
                |_| Option::None,
            )
            .unwrap();
        assert_eq!(soon, Option::None);
        let again = sweeper
            .step(&mut dataplane, now + S, &settings(), &generations, |_| {
                Option::None
            })
            .unwrap()
            .expect("a pass a second later");
        assert_eq!(
            again.counts[&0].active, 1,
            "not added to the last pass's counts"
        );
        assert_eq!(again.live_flows, 2, "not added to the last pass's either");
    }

    /// A step hands back what it read, so that connection sync sees the same slice: the
    /// flows (expired ones included, already deleted) and, at the end of a pass, the
    /// templates.
    #[test]
    fn a_step_hands_back_the_slice_and_templates_it_read() {
        let mut dataplane = crate::logic::dataplane::FakeDataPlane::default();
        let now = 10_000 * S;
        let flows = [
            (flow(1, IPPROTO_TCP), entry(0, 1, Established, 10_000 - 10)),
            (flow(2, IPPROTO_TCP), entry(0, 1, Established, 10_000 - 901)),
        ];
        dataplane.insert_flows(&flows).unwrap();
        let (key, template) = template(0, 10_000 - 10);
        dataplane.insert_templates(&[(key, template)]).unwrap();
        let generations = HashMap::from([(0, 1)]);
        let mut sweeper = Sweeper::default();
        let mut step = sweeper
            .step_reading(&mut dataplane, now, &settings(), &generations, |_| {
                Some(300 * S)
            })
            .unwrap()
            .expect("a pass is due");
        step.flows.sort_by_key(|(key, _)| *key);
        assert_eq!(step.flows, flows);
        assert_eq!(step.templates, Some(vec![(key, template)]));
        assert_eq!(step.pass.expect("a small table is one step").live_flows, 1);
        assert_eq!(
            dataplane.flows.len(),
            1,
            "the expired flow is deleted all the same"
        );
        assert_eq!(
            sweeper
                .step_reading(&mut dataplane, now + 1, &settings(), &generations, |_| {
                    Option::None
                })
                .unwrap(),
            Option::None,
            "no pass due"
        );
    }

    #[test]
    fn connections_list_like_ipvsadm() {
        let flows = [(flow(40000, IPPROTO_TCP), entry(0, 1, Established, 1000))];
        let templates = [template(0, 1000)];
        let list = connections(
            &flows,
            &templates,
            1010 * S,
            &settings(),
            |id, generation| {
                (id == 0 && generation == 1)
                    .then_some(SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 11), 80).into())
            },
            |_| Some(300 * S),
        );
        assert_eq!(
            list,
            [
                Connection {
                    protocol: Protocol::Tcp,
                    expires_s: 890,
                    state: ConnectionState::Established,
                    source: "10.0.0.2:40000".parse().unwrap(),
                    virtual_address: "10.0.0.100:80".parse().unwrap(),
                    destination: "10.0.0.11:80".parse().unwrap(),
                    template: false,
                },
                Connection {
                    protocol: Protocol::Tcp,
                    expires_s: 290,
                    state: ConnectionState::None,
                    source: "10.0.0.0:0".parse().unwrap(),
                    virtual_address: "10.0.0.100:80".parse().unwrap(),
                    destination: "10.0.0.11:80".parse().unwrap(),
                    template: true,
                },
            ]
        );
    }

    /// The `connections` answer keeps the JSON it had when these fields were strings.
    #[test]
    fn a_connection_lists_in_ipvsadm_words_on_the_wire() {
        let connection = Connection {
            protocol: Protocol::Udp,
            expires_s: 290,
            state: ConnectionState::Udp,
            source: "10.0.0.2:5353".parse().unwrap(),
            virtual_address: "10.0.0.100:53".parse().unwrap(),
            destination: "10.0.0.11:53".parse().unwrap(),
            template: false,
        };
        let json = serde_json::to_string(&connection).unwrap();
        assert_eq!(
            json,
            r#"{"protocol":"UDP","expires_s":290,"state":"UDP","source":"10.0.0.2:5353","virtual_address":"10.0.0.100:53","destination":"10.0.0.11:53","template":false}"#
        );
        assert_eq!(
            serde_json::from_str::<Connection>(&json).unwrap(),
            connection
        );
        let error =
            serde_json::from_str::<Connection>(&json.replace("\"UDP\",\"exp", "\"SCTP\",\"exp"))
                .unwrap_err();
        assert!(
            error.to_string().contains("unknown protocol \"SCTP\""),
            "{error}"
        );
    }

    #[test]
    fn the_list_follows_the_models_real_servers_and_persistent_services() {
        use crate::logic::config;
        let services = config::parse(
            "[director]\ninterface = \"eth0\"\n[[virtual_server]]\naddress = \"10.0.0.100\"\n\
             port = 80\npersistence_timeout = 300\n[[virtual_server.real_server]]\n\
             address = \"10.0.0.11\"\n[[virtual_server.real_server]]\naddress = \"10.0.0.12\"\n",
            "t.toml",
        )
        .unwrap()
        .services;
        let model = Model::new(&services).unwrap();
        let timeouts = TemplateTimeouts::of(&model);
        let (key, _) = template(0, 0);
        assert_eq!(timeouts.get(&key), Some(300 * S));
        let TemplateMapKey::V4(key) = key else {
            unreachable!("an IPv4 template")
        };
        let other = TemplateMapKey::V4(PersistKey {
            vport: 81u16.to_be_bytes(),
            ..key
        });
        assert_eq!(
            timeouts.get(&other),
            Option::None,
            "not a persistent service"
        );

        // Ids are handed out in order: 10.0.0.11 is 0 and 10.0.0.12 is 1, both generation 1.
        let flows = [
            (flow(40000, IPPROTO_TCP), entry(1, 1, Established, 1000)),
            (flow(40001, IPPROTO_TCP), entry(0, 1, SynRecv, 1000)),
            (flow(40002, IPPROTO_TCP), entry(0, 2, Established, 1000)),
        ];
        let templates = [template(0, 1000)];
        let listed = list(&model, &flows, &templates, 1010 * S, &settings())
            .into_iter()
            .map(|c| {
                (
                    c.source.port(),
                    c.destination.to_string(),
                    c.state,
                    c.template,
                )
            })
            .collect::<Vec<_>>();
        assert_eq!(
            listed,
            [
                (
                    40000,
                    "10.0.0.12:80".to_owned(),
                    ConnectionState::Established,
                    false
                ),
                (
                    40001,
                    "10.0.0.11:80".to_owned(),
                    ConnectionState::SynRecv,
                    false
                ),
                (0, "10.0.0.11:80".to_owned(), ConnectionState::None, true),
            ],
            "a flow of a replaced generation is not listed"
        );
    }
}
