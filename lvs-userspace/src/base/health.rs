//! What health checking publishes about a real server: whether it is in its service's
//! scheduling and with which weight, its state and its last result. The model keeps it and
//! the status shows it; health checking produces it. It lives here, apart from both, so that
//! neither imports the other.

use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

/// What keeps health checking's verdicts: the director's model. Health checking hands its
/// updates to one without knowing what it is, so it does not import the model, and either
/// can be tested without the other. `Service` is what names a service (the data plane's
/// key).
pub trait HealthRecord<Service> {
    /// Records the status of a real server (or the sorry server) of a service; returns
    /// whether its admission changed, so that the data plane needs a `sync`.
    fn set_health(&mut self, service: Service, address: Ipv4Addr, status: HealthStatus) -> bool;
}

/// What health checking lets a real server of a service have.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Admission {
    /// In the service's scheduling with this weight (0: quiesced, as `inhibit_on_failure`).
    Weight(u32),
    /// Out of the service's scheduling, as keepalived removes it from IPVS.
    Removed,
}

impl Admission {
    pub fn weight(self) -> Option<u32> {
        match self {
            Admission::Weight(weight) => Some(weight),
            Admission::Removed => None,
        }
    }
}

/// The health state of a real server, or of a service's sorry server.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HealthState {
    Up,
    Down,
    /// A sorry server that gets the traffic: the service lost its quorum.
    SorryActive,
    /// A sorry server waiting: the service has its quorum.
    SorryStandby,
}

impl HealthState {
    pub fn name(self) -> &'static str {
        match self {
            HealthState::Up => "up",
            HealthState::Down => "down",
            HealthState::SorryActive => "sorry server, active",
            HealthState::SorryStandby => "sorry server, standby",
        }
    }
}

/// The last result of a check, for status output.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckResult {
    pub passed: bool,
    /// What was seen: "status 200", "connection refused", "exit code 1"...
    pub detail: String,
    /// When the attempt ended, in milliseconds since the Unix epoch.
    pub at_unix_ms: u64,
}

/// What health checking publishes about one real server (or sorry server) of one service.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthStatus {
    pub state: HealthState,
    pub admission: Admission,
    /// The checker, as "HTTP_GET http://10.0.0.1:80/health"; none for an unchecked server.
    pub checker: Option<String>,
    pub last_result: Option<CheckResult>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_admission_has_a_weight_unless_removed() {
        assert_eq!(Admission::Weight(3).weight(), Some(3));
        assert_eq!(Admission::Weight(0).weight(), Some(0));
        assert_eq!(Admission::Removed.weight(), None);
    }

    #[test]
    fn states_and_admissions_keep_their_wire_names() {
        let check = |value: serde_json::Value, expected: &str| {
            assert_eq!(value.to_string(), expected);
        };
        check(
            serde_json::json!(HealthState::SorryActive),
            "\"sorry_active\"",
        );
        check(serde_json::json!(Admission::Removed), "\"removed\"");
        check(serde_json::json!(Admission::Weight(2)), "{\"weight\":2}");
        assert_eq!(HealthState::SorryStandby.name(), "sorry server, standby");
    }
}
