//! The status document as Prometheus metrics, for `/metrics` on the status listener.
//!
//! What node_exporter's IPVS collector exports is exported under its names and labels
//! (`node_ipvs_*`), so dashboards built for IPVS directors work unchanged; the totals are the
//! sums over the services, as `/proc/net/ip_vs_stats` holds them, and the backends are the
//! real servers in effect, as `/proc/net/ip_vs` lists them (one that health checking removed
//! is absent, an inhibited one has weight 0). What only lvs knows is exported as `lvs_*`:
//! every verdict counter, per-service and per-real-server traffic and rates, each real
//! server's health, neighbour and last check, the flow table's fill, and connection sync
//! (`lvs_sync_*`: the daemons running, what they sent and received, what was refused), and
//! with a `[bgp]` section which VIPs are announced (`lvs_bgp_announced`), and what each
//! prefix of the deny list dropped (`lvs_deny_dropped_*`).
//!
//! The exposition is written by `prometheus-client` (the OpenMetrics text format, which
//! Prometheus reads when it is the announced content type). A scrape renders a fresh
//! registry from one status document, so the numbers of a scrape are consistent with each
//! other and with `/status.json` of the same moment.

use std::{fmt, sync::atomic::AtomicU64};

use prometheus_client::{
    encoding::text::encode,
    metrics::{counter::Counter, family::Family, gauge::Gauge},
    registry::Registry,
};

use crate::{
    base::health::HealthState,
    logic::status::{RealServerStatus, ServiceStatus, Status, SyncStatus},
};

/// The content type of [`render`]'s output.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The labels of one family's member.
type Labels = Vec<(&'static str, String)>;

type CounterFamily = Family<Labels, Counter>;
type GaugeFamily = Family<Labels, Gauge>;
type RateFamily = Family<Labels, Gauge<f64, AtomicU64>>;

/// Health states as the `state` label of `lvs_real_server_health_state` names them.
const HEALTH_STATES: [(HealthState, &str); 4] = [
    (HealthState::Up, "up"),
    (HealthState::Down, "down"),
    (HealthState::SorryActive, "sorry_active"),
    (HealthState::SorryStandby, "sorry_standby"),
];

/// node_exporter's labels of a service (`local_mark` is a firewall mark, which lvs services
/// never have, so it is empty as node_exporter leaves it for address services).
fn service_labels(service: &ServiceStatus) -> Labels {
    vec![
        ("local_address", service.address.clone()),
        ("local_port", service.port.to_string()),
        ("proto", service.protocol.clone()),
    ]
}

/// node_exporter's labels of a backend, in its order.
fn backend_labels(service: &ServiceStatus, rs: &RealServerStatus) -> Labels {
    vec![
        ("local_address", service.address.clone()),
        ("local_port", service.port.to_string()),
        ("remote_address", rs.address.clone()),
        ("remote_port", rs.port.to_string()),
        ("proto", service.protocol.clone()),
        ("local_mark", String::new()),
    ]
}

/// The families, registered once per scrape. prometheus-client ends each help text with a
/// full stop itself, so the texts here are written without one.
struct Families {
    registry: Registry,
}

impl Families {
    fn counter(&mut self, name: &str, help: &str) -> CounterFamily {
        let family = CounterFamily::default();
        self.registry
            .register(name, help.trim_end_matches('.'), family.clone());
        family
    }

    fn gauge(&mut self, name: &str, help: &str) -> GaugeFamily {
        let family = GaugeFamily::default();
        self.registry
            .register(name, help.trim_end_matches('.'), family.clone());
        family
    }

    fn rate(&mut self, name: &str, help: &str) -> RateFamily {
        let family = RateFamily::default();
        self.registry
            .register(name, help.trim_end_matches('.'), family.clone());
        family
    }
}

/// Counters are monotonic to Prometheus; the data plane's are u64, as is the exposition's.
fn count(family: &CounterFamily, labels: Labels, value: u64) {
    family.get_or_create(&labels).inc_by(value);
}

/// A gauge's value; counts and weights fit an i64 with room to spare.
fn set(family: &GaugeFamily, labels: Labels, value: u64) {
    family
        .get_or_create(&labels)
        .set(i64::try_from(value).unwrap_or(i64::MAX));
}

fn flag(family: &GaugeFamily, labels: Labels, on: bool) {
    set(family, labels, u64::from(on));
}

/// The exposition of one status document.
pub fn render(status: &Status) -> Result<String, fmt::Error> {
    let mut f = Families {
        registry: Registry::default(),
    };

    // node_exporter's IPVS collector.
    let connections = f.counter(
        "node_ipvs_connections",
        "The total number of connections made.",
    );
    let in_packets = f.counter(
        "node_ipvs_incoming_packets",
        "The total number of incoming packets.",
    );
    let out_packets = f.counter(
        "node_ipvs_outgoing_packets",
        "The total number of outgoing packets (always 0 in direct routing: replies do not pass the director).",
    );
    let in_bytes = f.counter(
        "node_ipvs_incoming_bytes",
        "The total amount of incoming data.",
    );
    let out_bytes = f.counter(
        "node_ipvs_outgoing_bytes",
        "The total amount of outgoing data (always 0 in direct routing).",
    );
    let backend_active = f.gauge(
        "node_ipvs_backend_connections_active",
        "The current active connections by local and remote address.",
    );
    let backend_inactive = f.gauge(
        "node_ipvs_backend_connections_inactive",
        "The current inactive connections by local and remote address.",
    );
    let backend_weight = f.gauge(
        "node_ipvs_backend_weight",
        "The current backend weight by local and remote address.",
    );
    let sum = |value: fn(&ServiceStatus) -> u64| status.services.iter().map(value).sum::<u64>();
    count(&connections, Labels::new(), sum(|s| s.connections));
    count(&in_packets, Labels::new(), sum(|s| s.packets));
    count(&in_bytes, Labels::new(), sum(|s| s.bytes));
    count(&out_packets, Labels::new(), 0);
    count(&out_bytes, Labels::new(), 0);

    // What only lvs has.
    let info = f.gauge(
        "lvs_director_info",
        "The director's interface and XDP attach mode; the value is 1.",
    );
    let verdicts = f.counter(
        "lvs_verdicts",
        "Packets by the data plane's verdict (lvs status lists the same counters).",
    );
    let flow_size = f.gauge(
        "lvs_flow_table_size",
        "Connections the flow table can track at once (flow_table_size).",
    );
    let flow_entries = f.gauge(
        "lvs_flow_table_entries",
        "Connections in the flow table at the last sweep.",
    );
    set(
        &info,
        vec![
            ("interface", status.interface.clone()),
            ("xdp_mode", status.xdp_mode.clone()),
        ],
        1,
    );
    for counter in &status.counters {
        count(
            &verdicts,
            vec![("verdict", counter.name.clone())],
            counter.value,
        );
    }
    set(&flow_size, Labels::new(), u64::from(status.flow_table.size));
    set(&flow_entries, Labels::new(), status.flow_table.entries);
    let service_table = f.gauge(
        "lvs_service_table",
        "1 while the data plane finds the family's services in its service table, 0 while in \
         the slower SERVICES hash map (services that collide, or a table not made).",
    );
    for lookup in &status.service_lookup {
        flag(
            &service_table,
            vec![("family", lookup.family.clone())],
            lookup.table,
        );
    }

    let service_connections = f.counter(
        "lvs_service_connections",
        "Connections scheduled to a service since the start or the last zeroing (-Z).",
    );
    let service_packets = f.counter(
        "lvs_service_incoming_packets",
        "Packets forwarded for a service.",
    );
    let service_bytes = f.counter(
        "lvs_service_incoming_bytes",
        "Bytes forwarded for a service.",
    );
    let service_cps = f.rate(
        "lvs_service_connections_per_second",
        "A service's connection rate, as IPVS estimates it (2 s samples, smoothed).",
    );
    let service_pps = f.rate(
        "lvs_service_incoming_packets_per_second",
        "A service's packet rate, as IPVS estimates it.",
    );
    let service_bps = f.rate(
        "lvs_service_incoming_bytes_per_second",
        "A service's byte rate, as IPVS estimates it.",
    );

    let rs_connections = f.counter(
        "lvs_real_server_connections",
        "Connections scheduled to a real server.",
    );
    let rs_packets = f.counter(
        "lvs_real_server_incoming_packets",
        "Packets forwarded to a real server.",
    );
    let rs_bytes = f.counter(
        "lvs_real_server_incoming_bytes",
        "Bytes forwarded to a real server.",
    );
    let rs_cps = f.rate(
        "lvs_real_server_connections_per_second",
        "A real server's connection rate, as IPVS estimates it.",
    );
    let rs_active = f.gauge(
        "lvs_real_server_connections_active",
        "Established connections of every configured real server, in effect or not.",
    );
    let rs_inactive = f.gauge(
        "lvs_real_server_connections_inactive",
        "Connections in other states (and UDP flows) of every configured real server.",
    );
    let rs_persistent = f.gauge(
        "lvs_real_server_connections_persistent",
        "Persistence templates pointing at a real server.",
    );
    let rs_weight = f.gauge(
        "lvs_real_server_weight",
        "The weight in effect, or the configured one while the real server is out of scheduling.",
    );
    let rs_in_effect = f.gauge(
        "lvs_real_server_in_effect",
        "1 when the real server is in its service's scheduling (not removed by health checking, not a sorry server on standby).",
    );
    let rs_forwarding = f.gauge(
        "lvs_real_server_forwarding",
        "1 when new connections can go to the real server.",
    );
    let rs_overloaded = f.gauge(
        "lvs_real_server_overloaded",
        "1 when the real server is over its upper threshold.",
    );
    let rs_resolved = f.gauge(
        "lvs_real_server_neighbour_resolved",
        "1 when the real server's MAC address is known.",
    );
    let rs_sorry = f.gauge(
        "lvs_real_server_sorry_server",
        "1 for a service's sorry server.",
    );
    let rs_health = f.gauge(
        "lvs_real_server_health_state",
        "Health checking's state of a checked real server: 1 for the state it is in, 0 for the others.",
    );
    let rs_check_passed = f.gauge(
        "lvs_real_server_last_check_passed",
        "1 when the last health check passed.",
    );
    let rs_check_duration = f.rate(
        "lvs_real_server_last_check_duration_seconds",
        "How long the last health check took.",
    );
    let rs_check_time = f.rate(
        "lvs_real_server_last_check_timestamp_seconds",
        "When the last health check ended, in seconds since the Unix epoch.",
    );

    for service in &status.services {
        let labels = service_labels(service);
        count(&service_connections, labels.clone(), service.connections);
        count(&service_packets, labels.clone(), service.packets);
        count(&service_bytes, labels.clone(), service.bytes);
        service_cps
            .get_or_create(&labels)
            .set(service.rates.connections);
        service_pps
            .get_or_create(&labels)
            .set(service.rates.packets);
        service_bps.get_or_create(&labels).set(service.rates.bytes);

        for rs in &service.real_servers {
            let labels = backend_labels(service, rs);
            // As /proc/net/ip_vs lists what IPVS holds: only real servers in effect.
            if let Some(weight) = rs.weight_in_effect() {
                set(
                    &backend_active,
                    labels.clone(),
                    rs.active_connections.into(),
                );
                set(
                    &backend_inactive,
                    labels.clone(),
                    rs.inactive_connections.into(),
                );
                set(&backend_weight, labels.clone(), weight.into());
            }
            count(&rs_connections, labels.clone(), rs.connections);
            count(&rs_packets, labels.clone(), rs.packets);
            count(&rs_bytes, labels.clone(), rs.bytes);
            rs_cps.get_or_create(&labels).set(rs.rates.connections);
            set(&rs_active, labels.clone(), rs.active_connections.into());
            set(&rs_inactive, labels.clone(), rs.inactive_connections.into());
            set(
                &rs_persistent,
                labels.clone(),
                rs.persistent_connections.into(),
            );
            set(&rs_weight, labels.clone(), rs.weight.into());
            flag(&rs_in_effect, labels.clone(), rs.in_effect);
            flag(&rs_forwarding, labels.clone(), rs.forwarding);
            flag(&rs_overloaded, labels.clone(), rs.overloaded);
            flag(&rs_resolved, labels.clone(), rs.neighbour == "resolved");
            flag(&rs_sorry, labels.clone(), rs.sorry_server);
            let Some(health) = &rs.health else {
                continue;
            };
            for (state, name) in HEALTH_STATES {
                let mut labels = labels.clone();
                labels.push(("state", name.to_owned()));
                flag(&rs_health, labels, health.state == state);
            }
            if let Some(last) = &health.last_result {
                flag(&rs_check_passed, labels.clone(), last.passed);
                if let Some(ms) = last.duration_ms {
                    rs_check_duration
                        .get_or_create(&labels)
                        .set(ms as f64 / 1000.0);
                }
                rs_check_time
                    .get_or_create(&labels)
                    .set(last.at_unix_ms as f64 / 1000.0);
            }
        }
    }

    sync_metrics(&mut f, &status.sync);
    if let Some(bgp) = &status.bgp {
        let announced = f.gauge(
            "lvs_bgp_announced",
            "1 while the director announces the VIP to the routers, 0 while it withdraws it (label vip).",
        );
        for vip in &bgp.vips {
            flag(
                &announced,
                vec![("vip", vip.address.clone())],
                vip.announced,
            );
        }
    }

    let denied_packets = f.counter(
        "lvs_deny_dropped_packets",
        "Frames dropped because their source is in the deny list (labels prefix, origin).",
    );
    let denied_bytes = f.counter(
        "lvs_deny_dropped_bytes",
        "Bytes (IPv4 total length) of the frames the deny list dropped (labels prefix, origin).",
    );
    for denied in &status.deny {
        let labels = || {
            vec![
                ("prefix", denied.prefix.to_string()),
                ("origin", denied.origin.name().to_owned()),
            ]
        };
        count(&denied_packets, labels(), denied.packets);
        count(&denied_bytes, labels(), denied.bytes);
    }

    let mut text = String::new();
    encode(&mut text, &f.registry)?;
    Ok(text)
}

/// Connection sync's metrics, from `status.sync`. The totals and the counts by reason and
/// kind are exported from 0 even with no sync daemon running, so that an alert on them
/// needs no `absent()`.
fn sync_metrics(f: &mut Families, sync: &SyncStatus) {
    let daemon = f.gauge(
        "lvs_sync_daemon_info",
        "A sync daemon running; the value is 1 (labels role, interface, sync_id, group, port).",
    );
    for running in &sync.daemons {
        set(
            &daemon,
            vec![
                ("role", running.role.name().to_owned()),
                ("interface", running.interface.clone()),
                ("sync_id", running.sync_id.get().to_string()),
                ("group", running.group.get().to_string()),
                ("port", running.port.get().to_string()),
            ],
            1,
        );
    }
    let totals = [
        (
            "lvs_sync_messages_sent",
            "Sync messages a master sent, heartbeats included.",
            sync.messages_sent,
        ),
        (
            "lvs_sync_entries_sent",
            "Connections and templates a master sent.",
            sync.entries_sent,
        ),
        (
            "lvs_sync_entries_deferred",
            "Entries due but over max_rate, sent at a later pass.",
            sync.entries_deferred,
        ),
        (
            "lvs_sync_send_errors",
            "Sync messages the socket refused (lost).",
            sync.send_errors,
        ),
        (
            "lvs_sync_full_resends",
            "Times a master sent its whole table again because a peer appeared.",
            sync.full_resends,
        ),
        (
            "lvs_sync_messages_received",
            "Sync messages a backup took (authenticated, in sequence).",
            sync.messages_received,
        ),
        (
            "lvs_sync_entries_received",
            "Entries in the messages a backup took.",
            sync.entries_received,
        ),
        (
            "lvs_sync_entries_installed",
            "Connections and templates a backup wrote into its tables.",
            sync.entries_installed,
        ),
        (
            "lvs_sync_receive_errors",
            "Failures reading the backup's socket.",
            sync.receive_errors,
        ),
    ];
    for (name, help, value) in totals {
        let family = f.counter(name, help);
        count(&family, Labels::new(), value);
    }
    let rejected = f.counter(
        "lvs_sync_rejected",
        "Sync datagrams a backup dropped, by reason (truncated, malformed, forged, other_sync_id, replayed).",
    );
    for (reason, &value) in &sync.rejected {
        count(&rejected, vec![("reason", reason.clone())], value);
    }
    let unknown = f.counter(
        "lvs_sync_unknown",
        "Sync entries a backup ignored, by what it lacks (unknown_service, unknown_real_server, not_persistent).",
    );
    for (kind, &value) in &sync.unknown {
        count(&unknown, vec![("kind", kind.clone())], value);
    }
    let peers = f.rate(
        "lvs_sync_peer_last_message_seconds",
        "Seconds since a master's last sync message was taken, by its address.",
    );
    for peer in &sync.peers {
        peers
            .get_or_create(&vec![("address", peer.address.clone())])
            .set(peer.last_message_seconds_ago);
    }
}

#[cfg(test)]
mod tests;
