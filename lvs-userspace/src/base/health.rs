//! Health checking's vocabulary. What one check attempt found (`Outcome`, `Failure`), and
//! what health checking publishes about a real server: whether it is in its service's
//! scheduling and with which weight, its state and its last result. The model keeps it and
//! the status shows it; health checking produces it; the health config names a failure (a
//! body that does not match its regex). It lives here, apart from all three, so that none
//! imports another.

use std::{fmt, net::IpAddr, time::Duration};

use serde::{Deserialize, Serialize};

/// What keeps health checking's verdicts: the director's model. Health checking hands its
/// updates to one without knowing what it is, so it does not import the model, and either
/// can be tested without the other. `Service` is what names a service (the data plane's
/// key).
pub trait HealthRecord<Service> {
    /// Records the status of a real server (or the sorry server) of a service; returns
    /// whether its admission changed, so that the data plane needs a `sync`.
    fn set_health(&mut self, service: Service, address: IpAddr, status: HealthStatus) -> bool;
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
    /// How long the attempt took, from its start (once it had its turn among the checks
    /// running at once) to its result, in milliseconds.
    #[serde(default)]
    pub duration_ms: Option<u64>,
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

/// The result of one check attempt.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The check passed. `detail` says what was seen ("status 200", "connected"); `weight`
    /// is a weight the check itself asked for (`misc_dynamic`).
    Pass { detail: String, weight: Option<u32> },
    /// The check failed, and why.
    Fail(Failure),
}

impl Outcome {
    pub fn pass(detail: impl Into<String>) -> Self {
        Outcome::Pass {
            detail: detail.into(),
            weight: None,
        }
    }

    pub fn passed(&self) -> bool {
        matches!(self, Outcome::Pass { .. })
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Outcome::Pass { detail, .. } => f.write_str(detail),
            Outcome::Fail(failure) => failure.fmt(f),
        }
    }
}

/// Why a check failed, in the words an operator reads in the log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Failure {
    /// No complete answer within the timeout.
    Timeout(Duration),
    /// The connection was refused (nothing listens on the port).
    Refused,
    /// Another connection failure (no route, reset, unreachable...).
    Connect(String),
    /// The TLS handshake failed (including certificate verification, when asked for).
    Tls(String),
    /// The answer was not valid HTTP, or the connection ended before it was complete.
    Http(String),
    /// The status code is not one of the accepted ones.
    Status(u16),
    /// The body's MD5 is not the expected one.
    DigestMismatch { expected: String, got: String },
    /// The body does not match the url's regex, or (`regex_no_match`) it does.
    Regex { pattern: String, matched: bool },
    /// The program exited with a failing code.
    Exit(i32),
    /// The program was killed by a signal.
    Signal(i32),
    /// The program could not be started.
    Spawn(String),
    /// A datagram checker's reply was not the one wanted (UDP_CHECK's `require_reply`
    /// refused it, or a DNS answer carried an error code).
    Reply(String),
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Timeout(after) => write!(f, "timeout after {after:?}"),
            Failure::Refused => f.write_str("connection refused"),
            Failure::Connect(error) => write!(f, "connection failed: {error}"),
            Failure::Tls(error) => write!(f, "TLS failed: {error}"),
            Failure::Http(error) => write!(f, "bad HTTP answer: {error}"),
            Failure::Status(code) => write!(f, "status {code}"),
            Failure::DigestMismatch { expected, got } => {
                write!(f, "digest mismatch: expected {expected}, got {got}")
            }
            Failure::Regex {
                pattern,
                matched: false,
            } => write!(f, "body does not match regex {pattern:?}"),
            Failure::Regex {
                pattern,
                matched: true,
            } => write!(f, "body matches regex {pattern:?} (regex_no_match)"),
            Failure::Exit(code) => write!(f, "exit code {code}"),
            Failure::Signal(signal) => write!(f, "killed by signal {signal}"),
            Failure::Spawn(error) => write!(f, "cannot start: {error}"),
            Failure::Reply(error) => write!(f, "bad reply: {error}"),
        }
    }
}
