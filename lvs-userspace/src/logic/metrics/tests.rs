//! The exposition read back with a parser of the text format (`prometheus-parse`), and
//! checked against the status document it came from and against node_exporter's names.

use std::collections::{BTreeMap, BTreeSet};

use prometheus_parse::{Sample, Scrape, Value};

use super::*;

/// node_exporter's IPVS metrics (collector/ipvs_linux.go) and their label names.
const NODE_EXPORTER: &[(&str, &[&str])] = &[
    ("node_ipvs_connections_total", &[]),
    ("node_ipvs_incoming_packets_total", &[]),
    ("node_ipvs_outgoing_packets_total", &[]),
    ("node_ipvs_incoming_bytes_total", &[]),
    ("node_ipvs_outgoing_bytes_total", &[]),
    ("node_ipvs_backend_connections_active", BACKEND),
    ("node_ipvs_backend_connections_inactive", BACKEND),
    ("node_ipvs_backend_weight", BACKEND),
];

const BACKEND: &[&str] = &[
    "local_address",
    "local_port",
    "remote_address",
    "remote_port",
    "proto",
    "local_mark",
];

/// A director with one service of three real servers: .11 up, .12 removed by health
/// checking (its last check failed), .13 unchecked; and a sorry server on standby.
fn status() -> Status {
    let mut sorry = server(
        "10.0.0.99",
        1,
        false,
        0,
        0,
        0,
        serde_json::json!({
            "state": "sorry_standby", "admission": "removed", "checker": null,
            "last_result": null
        }),
    );
    sorry["sorry_server"] = true.into();
    serde_json::from_value(serde_json::json!({
        "interface": "eth0",
        "xdp_mode": "native",
        "timeouts": {"tcp": 900, "tcp_fin": 120, "udp": 300},
        "counters": [
            {"name": "tx_forwarded", "value": 1234},
            {"name": "pass_not_ip", "value": 7}
        ],
        "flow_table": {"size": 262144, "entries": 42},
        "service_lookup": [{"family": "IPv4", "table": true}, {"family": "IPv6", "table": false}],
        "sync": {
            "daemons": [
                {"role": "master", "interface": "eth0", "sync_id": 51, "group": "224.0.0.81",
                 "port": 8848, "ttl": 1, "max_len": 1472},
                {"role": "backup", "interface": "eth0", "sync_id": 51, "group": "224.0.0.81",
                 "port": 8848, "ttl": 1, "max_len": 1472}
            ],
            "messages_sent": 120, "entries_sent": 3000, "entries_deferred": 4,
            "send_errors": 1, "full_resends": 2, "messages_received": 80,
            "entries_received": 1500, "entries_installed": 1490,
            "rejected": {"truncated": 1, "malformed": 2, "forged": 3, "other_sync_id": 4,
                         "replayed": 5},
            "unknown": {"unknown_service": 6, "unknown_real_server": 4, "not_persistent": 0},
            "receive_errors": 0,
            "peers": [{"address": "10.0.0.3", "last_message_seconds_ago": 0.5}]
        },
        "deny": [{"prefix": "203.0.113.0/24", "origin": "config", "packets": 12, "bytes": 720},
                 {"prefix": "2001:db8::/32", "origin": "runtime", "packets": 0, "bytes": 0}],
        "bgp": {
            "route_table": 245, "hold_time": 3,
            "vips": [{"address": "10.0.0.100", "announced": true},
                     {"address": "10.0.0.101", "announced": false}]
        },
        "services": [{
            "protocol": "TCP", "address": "10.0.0.100", "port": 80, "scheduler": "wlc",
            "sched_flags": [], "persistence_timeout": null, "persistence_netmask": null,
            "connections": 30, "packets": 1200, "bytes": 96000,
            "rates": {"connections": 1.5, "packets": 60.0, "bytes": 4800.0},
            "real_servers": [
                server("10.0.0.11", 2, true, 5, 1, 20, serde_json::json!({
                    "state": "up", "admission": {"weight": 2}, "checker": "TCP_CHECK 10.0.0.11:80",
                    "last_result": {"passed": true, "detail": "connected",
                                    "at_unix_ms": 1_700_000_000_000_u64, "duration_ms": 12}
                })),
                server("10.0.0.12", 1, false, 3, 4, 10, serde_json::json!({
                    "state": "down", "admission": "removed", "checker": "TCP_CHECK 10.0.0.12:80",
                    "last_result": {"passed": false, "detail": "connection refused",
                                    "at_unix_ms": 1_700_000_001_000_u64, "duration_ms": 1500}
                })),
                server("10.0.0.13", 1, true, 0, 2, 0, serde_json::Value::Null),
                sorry,
            ]
        }]
    }))
    .expect("a valid status document")
}

fn server(
    address: &str,
    weight: u32,
    in_effect: bool,
    active: u32,
    inactive: u32,
    connections: u64,
    health: serde_json::Value,
) -> serde_json::Value {
    serde_json::json!({
        "address": address, "port": 80, "weight": weight, "in_effect": in_effect,
        "upper_threshold": 0, "lower_threshold": 0, "overloaded": false,
        "active_connections": active, "inactive_connections": inactive,
        "persistent_connections": 0, "neighbour": "resolved", "mac": "02:00:00:00:00:01",
        "reason": null, "forwarding": in_effect, "connections": connections,
        "packets": connections * 10, "bytes": connections * 800,
        "rates": {"connections": 0.5, "packets": 5.0, "bytes": 400.0},
        "sorry_server": false, "health": health
    })
}

fn scrape(status: &Status) -> Vec<Sample> {
    let text = render(status).expect("renders");
    assert!(
        text.ends_with("# EOF\n"),
        "a complete OpenMetrics exposition"
    );
    Scrape::parse(text.lines().map(|line| Ok(line.to_owned())))
        .expect("parses")
        .samples
}

fn number(value: &Value) -> f64 {
    match value {
        Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => *v,
        other => panic!("not a single number: {other:?}"),
    }
}

/// The samples of one metric, by the value of one label (or "" without it).
fn by_label(samples: &[Sample], metric: &str, label: &str) -> BTreeMap<String, f64> {
    samples
        .iter()
        .filter(|s| s.metric == metric)
        .map(|s| {
            (
                s.labels.get(label).unwrap_or_default().to_owned(),
                number(&s.value),
            )
        })
        .collect()
}

fn single(samples: &[Sample], metric: &str) -> f64 {
    let found: Vec<_> = samples.iter().filter(|s| s.metric == metric).collect();
    assert_eq!(found.len(), 1, "{metric}: {found:?}");
    number(&found[0].value)
}

#[test]
fn node_exporter_metrics_have_its_names_labels_and_the_status_values() {
    let status = status();
    let samples = scrape(&status);
    let mut seen = BTreeSet::new();
    for sample in samples.iter().filter(|s| s.metric.starts_with("node_")) {
        let (_, labels) = NODE_EXPORTER
            .iter()
            .find(|(name, _)| *name == sample.metric)
            .unwrap_or_else(|| panic!("{} is not one of node_exporter's", sample.metric));
        let keys: BTreeSet<&str> = sample.labels.keys().map(String::as_str).collect();
        assert_eq!(keys, labels.iter().copied().collect(), "{}", sample.metric);
        if sample.metric.starts_with("node_ipvs_backend") {
            assert!(
                matches!(sample.value, Value::Gauge(_)),
                "{} is a gauge",
                sample.metric
            );
            assert_eq!(sample.labels.get("proto"), Some("TCP"));
            assert_eq!(sample.labels.get("local_address"), Some("10.0.0.100"));
            assert_eq!(sample.labels.get("local_port"), Some("80"));
            assert_eq!(sample.labels.get("local_mark"), Some(""));
        }
        seen.insert(sample.metric.clone());
    }
    let every: BTreeSet<String> = NODE_EXPORTER.iter().map(|(n, _)| n.to_string()).collect();
    assert_eq!(seen, every, "every node_exporter metric is exported");

    let service = &status.services[0];
    assert_eq!(
        single(&samples, "node_ipvs_connections_total"),
        service.connections as f64
    );
    assert_eq!(
        single(&samples, "node_ipvs_incoming_packets_total"),
        service.packets as f64
    );
    assert_eq!(
        single(&samples, "node_ipvs_incoming_bytes_total"),
        service.bytes as f64
    );
    assert_eq!(single(&samples, "node_ipvs_outgoing_bytes_total"), 0.0);

    // Backends are what is in effect, with the weight in effect: .12 (removed) and the sorry
    // server on standby are absent, as from /proc/net/ip_vs.
    let in_effect: BTreeMap<String, f64> = service
        .real_servers
        .iter()
        .filter_map(|rs| Some((rs.address.clone(), f64::from(rs.weight_in_effect()?))))
        .collect();
    assert_eq!(
        by_label(&samples, "node_ipvs_backend_weight", "remote_address"),
        in_effect
    );
    assert_eq!(in_effect.len(), 2);
    let active: BTreeMap<String, f64> = service
        .real_servers
        .iter()
        .filter(|rs| rs.in_effect)
        .map(|rs| (rs.address.clone(), f64::from(rs.active_connections)))
        .collect();
    assert_eq!(
        by_label(
            &samples,
            "node_ipvs_backend_connections_active",
            "remote_address"
        ),
        active
    );
    assert_eq!(
        by_label(
            &samples,
            "node_ipvs_backend_connections_inactive",
            "remote_address"
        )["10.0.0.13"],
        2.0
    );
}

#[test]
fn lvs_metrics_carry_verdicts_health_checks_and_the_flow_table() {
    let status = status();
    let samples = scrape(&status);
    let verdicts = by_label(&samples, "lvs_verdicts_total", "verdict");
    let expected: BTreeMap<String, f64> = status
        .counters
        .iter()
        .map(|c| (c.name.clone(), c.value as f64))
        .collect();
    assert_eq!(verdicts, expected);
    assert_eq!(single(&samples, "lvs_flow_table_size"), 262144.0);
    assert_eq!(single(&samples, "lvs_flow_table_entries"), 42.0);
    let service_table = by_label(&samples, "lvs_service_table", "family");
    assert_eq!(service_table["IPv4"], 1.0);
    assert_eq!(service_table["IPv6"], 0.0, "this family is on its hash map");

    // Every configured real server, in effect or not.
    let connections = by_label(
        &samples,
        "lvs_real_server_connections_total",
        "remote_address",
    );
    assert_eq!(
        connections.keys().collect::<Vec<_>>(),
        ["10.0.0.11", "10.0.0.12", "10.0.0.13", "10.0.0.99"]
    );
    assert_eq!(connections["10.0.0.12"], 10.0);
    let in_effect = by_label(&samples, "lvs_real_server_in_effect", "remote_address");
    assert_eq!(in_effect["10.0.0.11"], 1.0);
    assert_eq!(in_effect["10.0.0.12"], 0.0);
    assert_eq!(
        by_label(&samples, "lvs_real_server_sorry_server", "remote_address")["10.0.0.99"],
        1.0
    );

    // The health state is one-hot, and only checked servers have one.
    let states: BTreeMap<(String, String), f64> = samples
        .iter()
        .filter(|s| s.metric == "lvs_real_server_health_state")
        .map(|s| {
            (
                (
                    s.labels.get("remote_address").unwrap().to_owned(),
                    s.labels.get("state").unwrap().to_owned(),
                ),
                number(&s.value),
            )
        })
        .collect();
    let on: Vec<_> = states
        .iter()
        .filter(|(_, v)| **v == 1.0)
        .map(|((a, s), _)| format!("{a} {s}"))
        .collect();
    assert_eq!(
        on,
        ["10.0.0.11 up", "10.0.0.12 down", "10.0.0.99 sorry_standby"]
    );
    assert_eq!(states.len(), 3 * 4, "four states for each checked server");

    let passed = by_label(
        &samples,
        "lvs_real_server_last_check_passed",
        "remote_address",
    );
    assert_eq!(passed.len(), 2);
    assert_eq!(passed["10.0.0.11"], 1.0);
    assert_eq!(passed["10.0.0.12"], 0.0);
    let took = by_label(
        &samples,
        "lvs_real_server_last_check_duration_seconds",
        "remote_address",
    );
    assert_eq!(took["10.0.0.12"], 1.5);
    let at = by_label(
        &samples,
        "lvs_real_server_last_check_timestamp_seconds",
        "remote_address",
    );
    assert_eq!(at["10.0.0.11"], 1_700_000_000.0);

    let rate = by_label(
        &samples,
        "lvs_service_connections_per_second",
        "local_address",
    );
    assert_eq!(rate["10.0.0.100"], 1.5);
}

#[test]
fn sync_metrics_carry_the_daemons_counters_and_peers() {
    let samples = scrape(&status());
    let roles = by_label(&samples, "lvs_sync_daemon_info", "role");
    assert_eq!(roles.keys().collect::<Vec<_>>(), ["backup", "master"]);
    let daemon = samples
        .iter()
        .find(|s| s.metric == "lvs_sync_daemon_info")
        .unwrap();
    for (label, value) in [
        ("interface", "eth0"),
        ("sync_id", "51"),
        ("group", "224.0.0.81"),
        ("port", "8848"),
    ] {
        assert_eq!(daemon.labels.get(label), Some(value), "{label}");
    }
    for (metric, value) in [
        ("lvs_sync_messages_sent_total", 120.0),
        ("lvs_sync_entries_sent_total", 3000.0),
        ("lvs_sync_entries_deferred_total", 4.0),
        ("lvs_sync_send_errors_total", 1.0),
        ("lvs_sync_full_resends_total", 2.0),
        ("lvs_sync_messages_received_total", 80.0),
        ("lvs_sync_entries_received_total", 1500.0),
        ("lvs_sync_entries_installed_total", 1490.0),
        ("lvs_sync_receive_errors_total", 0.0),
    ] {
        assert_eq!(single(&samples, metric), value, "{metric}");
    }
    let rejected = by_label(&samples, "lvs_sync_rejected_total", "reason");
    assert_eq!(rejected["forged"], 3.0);
    assert_eq!(rejected["other_sync_id"], 4.0);
    assert_eq!(rejected.len(), 5);
    let unknown = by_label(&samples, "lvs_sync_unknown_total", "kind");
    assert_eq!(unknown["unknown_service"], 6.0);
    assert_eq!(unknown["not_persistent"], 0.0);
    let peers = by_label(&samples, "lvs_sync_peer_last_message_seconds", "address");
    assert_eq!(peers["10.0.0.3"], 0.5);

    // Without sync, the totals are still there, at 0.
    let mut quiet = status();
    *quiet.sync = SyncStatus::default();
    let samples = scrape(&quiet);
    assert_eq!(single(&samples, "lvs_sync_messages_received_total"), 0.0);
    assert!(!samples.iter().any(|s| s.metric == "lvs_sync_daemon_info"));
}

#[test]
fn each_vip_says_whether_it_is_announced_and_only_with_a_bgp_section() {
    let samples = scrape(&status());
    let announced = by_label(&samples, "lvs_bgp_announced", "vip");
    assert_eq!(
        announced,
        BTreeMap::from([
            ("10.0.0.100".to_owned(), 1.0),
            ("10.0.0.101".to_owned(), 0.0)
        ])
    );
    let mut without = status();
    without.bgp = None;
    let samples = scrape(&without);
    assert!(!samples.iter().any(|s| s.metric == "lvs_bgp_announced"));
}

#[test]
fn each_denied_prefix_says_what_it_dropped() {
    let samples = scrape(&status());
    assert_eq!(
        by_label(&samples, "lvs_deny_dropped_packets_total", "prefix"),
        BTreeMap::from([
            ("2001:db8::/32".to_owned(), 0.0),
            ("203.0.113.0/24".to_owned(), 12.0)
        ])
    );
    assert_eq!(
        by_label(&samples, "lvs_deny_dropped_bytes_total", "origin"),
        BTreeMap::from([("config".to_owned(), 720.0), ("runtime".to_owned(), 0.0)])
    );
}

#[test]
fn an_empty_director_still_exports_the_totals() {
    let mut status = status();
    status.services.clear();
    let samples = scrape(&status);
    assert_eq!(single(&samples, "node_ipvs_connections_total"), 0.0);
    assert!(
        !samples
            .iter()
            .any(|s| s.metric.starts_with("node_ipvs_backend"))
    );
}

/// Every metric name the exported samples have.
fn exported_names() -> BTreeSet<String> {
    scrape(&status()).into_iter().map(|s| s.metric).collect()
}

/// The Grafana dashboard in docs/ queries only metrics that exist.
#[test]
fn the_grafana_dashboard_queries_exported_metrics() {
    let dashboard: serde_json::Value =
        serde_json::from_str(include_str!("../../../../docs/grafana-dashboard.json"))
            .expect("the dashboard is JSON");
    let names = regex::Regex::new(r"\b(?:node_ipvs|lvs)_[a-z_]+").unwrap();
    let exported = exported_names();
    let mut queried = 0;
    for panel in dashboard["panels"].as_array().expect("panels") {
        for target in panel["targets"].as_array().expect("targets") {
            let expr = target["expr"].as_str().expect("an expression");
            for name in names.find_iter(expr) {
                assert!(
                    exported.contains(name.as_str()),
                    "panel {:?} queries {}, which is not exported",
                    panel["title"],
                    name.as_str()
                );
                queried += 1;
            }
        }
    }
    assert!(queried >= 10, "the dashboard queries the metrics");
}

/// The README's tables list every metric name, and no other.
#[test]
fn the_readme_lists_every_metric() {
    let readme = include_str!("../../../../README.md");
    let listed: BTreeSet<String> = readme
        .lines()
        .filter_map(|line| line.strip_prefix("| `"))
        .filter_map(|rest| rest.split_once('`').map(|(name, _)| name.to_owned()))
        .filter(|name| name.starts_with("node_ipvs_") || name.starts_with("lvs_"))
        .collect();
    assert_eq!(listed, exported_names());
}
