//! What one check attempt found, and what health checking publishes about a real server.
//!
//! What is published (admission, state, last result) is the project's vocabulary in
//! `base::health`, so the model keeps it without importing health checking; it is re-exported
//! here under its old names.

use std::{fmt, time::Duration};

pub use crate::base::health::{Admission, CheckResult, HealthState, HealthStatus};

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
        }
    }
}
