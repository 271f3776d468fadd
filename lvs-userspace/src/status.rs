//! The director's status as the control API returns it, and its text rendering.

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use crate::{
    dataplane::{DataPlane, DataPlaneError},
    health::{Admission, HealthState, HealthStatus},
    model::{Model, Neighbour},
};

/// Everything `lvs status` shows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    pub interface: String,
    /// How the program is attached: "native" or "generic".
    pub xdp_mode: String,
    pub counters: Vec<CounterValue>,
    pub services: Vec<ServiceStatus>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CounterValue {
    pub name: String,
    pub value: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceStatus {
    pub protocol: String,
    pub address: String,
    pub port: u16,
    pub scheduler: String,
    pub packets: u64,
    pub bytes: u64,
    pub real_servers: Vec<RealServerStatus>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RealServerStatus {
    pub address: String,
    pub weight: u32,
    /// "resolved", "unresolved", "off_link" or "unknown".
    pub neighbour: String,
    pub mac: Option<String>,
    /// Why the MAC is not known, when it is not.
    pub reason: Option<String>,
    /// Whether new flows go to it.
    pub forwarding: bool,
    pub packets: u64,
    pub bytes: u64,
    /// Whether it is the service's sorry server.
    #[serde(default)]
    pub sorry_server: bool,
    /// Health checking's state, admission and last check result (with its time).
    #[serde(default)]
    pub health: Option<HealthStatus>,
}

impl Status {
    /// Reads the counters from the data plane and combines them with the model.
    pub fn collect(
        model: &Model,
        dataplane: &dyn DataPlane,
        interface: &str,
        xdp_mode: &str,
    ) -> Result<Self, DataPlaneError> {
        let counters = dataplane
            .counters()?
            .into_iter()
            .map(|(counter, value)| CounterValue {
                name: counter.name().to_owned(),
                value,
            })
            .collect();
        let mut services = Vec::new();
        for view in model.services() {
            let stats = dataplane.service_stats(view.index)?;
            let mut real_servers = Vec::new();
            for rs in &view.real_servers {
                let rs_stats = dataplane.real_server_stats(rs.id)?;
                let (neighbour, mac, reason) = match rs.neighbour {
                    Neighbour::Unknown => ("unknown", None, None),
                    Neighbour::Resolved { mac } => ("resolved", Some(mac.to_string()), None),
                    Neighbour::Unresolved { reason } => ("unresolved", None, Some(reason.clone())),
                    Neighbour::OffLink => (
                        "off_link",
                        None,
                        Some(format!("not on a subnet of {interface}")),
                    ),
                };
                real_servers.push(RealServerStatus {
                    address: rs.address.to_string(),
                    weight: rs.weight,
                    neighbour: neighbour.to_owned(),
                    mac,
                    reason,
                    forwarding: rs.forwarding,
                    packets: rs_stats.packets,
                    bytes: rs_stats.bytes,
                    sorry_server: rs.sorry,
                    health: rs.health.cloned(),
                });
            }
            services.push(ServiceStatus {
                protocol: view.service.protocol.name().to_owned(),
                address: view.service.address.to_string(),
                port: view.service.port,
                scheduler: view.service.scheduler.name().to_owned(),
                packets: stats.packets,
                bytes: stats.bytes,
                real_servers,
            });
        }
        Ok(Self {
            interface: interface.to_owned(),
            xdp_mode: xdp_mode.to_owned(),
            counters,
            services,
        })
    }

    /// The value of a verdict counter by name.
    pub fn counter(&self, name: &str) -> Option<u64> {
        self.counters
            .iter()
            .find(|c| c.name == name)
            .map(|c| c.value)
    }

    /// A table in the spirit of `ipvsadm -Ln --stats`, plus the verdict counters.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "lvs director on {} ({} XDP)",
            self.interface, self.xdp_mode
        );
        let _ = writeln!(out, "Prot LocalAddress:Port Scheduler");
        let _ = writeln!(
            out,
            "  -> {:<28} {:<7} {:<6} {:<17} {:>10} {:>10}",
            "RemoteAddress:Port", "Forward", "Weight", "Neighbour", "Packets", "Bytes"
        );
        for service in &self.services {
            let _ = writeln!(
                out,
                "{:<4} {:<28} {:<32} {:>10} {:>10}",
                service.protocol,
                format!("{}:{}", service.address, service.port),
                service.scheduler,
                service.packets,
                service.bytes
            );
            for rs in &service.real_servers {
                let neighbour = rs.mac.clone().unwrap_or_else(|| rs.neighbour.clone());
                let note = match (&rs.reason, rs.forwarding, health_note(rs)) {
                    (_, _, Some(health)) => format!("  ({health})"),
                    (Some(reason), _, None) => format!("  ({reason})"),
                    (None, false, None) => "  (not forwarding)".to_owned(),
                    (None, true, None) => String::new(),
                };
                // As ipvsadm shows what IPVS holds: the weight in effect.
                let weight = rs
                    .health
                    .as_ref()
                    .and_then(|h| h.admission.weight())
                    .unwrap_or(rs.weight);
                let _ = writeln!(
                    out,
                    "  -> {:<28} {:<7} {:<6} {:<17} {:>10} {:>10}{note}",
                    format!("{}:{}", rs.address, service.port),
                    "Route",
                    weight,
                    neighbour,
                    rs.packets,
                    rs.bytes
                );
            }
        }
        let _ = writeln!(out, "Verdicts:");
        for counter in &self.counters {
            let _ = writeln!(out, "  {:<22} {:>12}", counter.name, counter.value);
        }
        out
    }
}

/// What health checking adds to a real server's line, when it has something to say.
fn health_note(rs: &RealServerStatus) -> Option<String> {
    let health = rs.health.as_ref()?;
    let last = health.last_result.as_ref().map(|r| r.detail.as_str());
    match (health.state, health.admission, last) {
        (HealthState::SorryActive | HealthState::SorryStandby, _, _) => {
            Some(health.state.name().to_owned())
        }
        (HealthState::Down, Admission::Weight(_), Some(last)) => {
            Some(format!("down, inhibited: {last}"))
        }
        (HealthState::Down, _, Some(last)) => Some(format!("down, removed: {last}")),
        (HealthState::Down, _, None) => Some("down until a check passes".into()),
        (HealthState::Up, Admission::Removed, _) => {
            Some("up, out while the sorry server serves".into())
        }
        (HealthState::Up, _, _) => None,
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;
    use crate::{config, dataplane::FakeDataPlane, model::MacAddr};

    #[test]
    fn health_shows_in_the_weight_and_a_note() {
        use crate::health::{Admission, CheckResult, HealthState, HealthStatus};
        let config = config::parse(
            "[director]\ninterface = \"eth0\"\n[[virtual_server]]\naddress = \"10.0.0.100\"\n\
             port = 80\nsorry_server = { address = \"10.0.0.9\" }\n\
             [[virtual_server.real_server]]\naddress = \"10.0.0.11\"\nweight = 3\n\
             [[virtual_server.real_server]]\naddress = \"10.0.0.12\"\n",
            "t.toml",
        )
        .unwrap();
        let mut model = Model::new(&config);
        let key = config.services[0].key();
        let down = |admission| HealthStatus {
            state: HealthState::Down,
            admission,
            checker: Some("HTTP_GET http://10.0.0.11:80/".into()),
            last_result: Some(CheckResult {
                passed: false,
                detail: "status 503".into(),
                at_unix_ms: 1,
            }),
        };
        model.set_health(key, Ipv4Addr::new(10, 0, 0, 11), down(Admission::Weight(0)));
        model.set_health(key, Ipv4Addr::new(10, 0, 0, 12), down(Admission::Removed));
        let sorry = HealthStatus {
            state: HealthState::SorryActive,
            admission: Admission::Weight(1),
            checker: None,
            last_result: None,
        };
        model.set_health(key, Ipv4Addr::new(10, 0, 0, 9), sorry);
        let mut dataplane = FakeDataPlane::default();
        model.sync(&mut dataplane).unwrap();
        let status = Status::collect(&model, &dataplane, "eth0", "native").unwrap();
        let text = status.render();
        assert!(
            text.contains("  -> 10.0.0.11:80                 Route   0      unknown")
                && text.contains("(down, inhibited: status 503)"),
            "{text}"
        );
        assert!(text.contains("(down, removed: status 503)"), "{text}");
        assert!(
            text.contains("  -> 10.0.0.9:80 ") && text.contains("(sorry server, active)"),
            "{text}"
        );
        let json = serde_json::to_value(&status).unwrap();
        let rs = &json["services"][0]["real_servers"][0];
        assert_eq!(rs["health"]["last_result"]["detail"], "status 503");
        assert_eq!(rs["health"]["admission"], serde_json::json!({"weight": 0}));
        assert_eq!(json["services"][0]["real_servers"][2]["sorry_server"], true);
    }

    #[test]
    fn renders_services_real_servers_and_counters() {
        let config = config::parse(
            "[director]\ninterface = \"eth0\"\n[[virtual_server]]\naddress = \"10.0.0.100\"\n\
             port = 80\n[[virtual_server.real_server]]\naddress = \"10.0.0.11\"\n\
             [[virtual_server.real_server]]\naddress = \"10.0.0.12\"\nweight = 2\n",
            "t.toml",
        )
        .unwrap();
        let mut model = Model::new(&config);
        let mut dataplane = FakeDataPlane::default();
        model.set_neighbour(
            Ipv4Addr::new(10, 0, 0, 11),
            Neighbour::Resolved {
                mac: MacAddr([2, 0, 0, 0, 0, 0x11]),
            },
        );
        model.set_neighbour(
            Ipv4Addr::new(10, 0, 0, 12),
            Neighbour::Unresolved {
                reason: "waiting for an ARP reply".into(),
            },
        );
        model.sync(&mut dataplane).unwrap();
        let status = Status::collect(&model, &dataplane, "eth0", "native").unwrap();
        let text = status.render();
        let expected = "\
lvs director on eth0 (native XDP)
Prot LocalAddress:Port Scheduler
  -> RemoteAddress:Port           Forward Weight Neighbour            Packets      Bytes
TCP  10.0.0.100:80                mh                                        0          0
  -> 10.0.0.11:80                 Route   1      02:00:00:00:00:11          0          0
  -> 10.0.0.12:80                 Route   2      unresolved                 0          0  (waiting for an ARP reply)
";
        assert!(text.starts_with(expected), "got:\n{text}");
        assert!(
            text.contains("  tx_forwarded                      0\n"),
            "got:\n{text}"
        );
        assert_eq!(status.counter("tx_forwarded"), Some(0));
        assert_eq!(status.counter("nonexistent"), None);
    }
}
