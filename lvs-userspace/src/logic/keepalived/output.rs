//! The TOML that an import writes: lvs's config shape, in keepalived's words.
//!
//! Health checks keep keepalived's names: a real server's checkers are tables named
//! `HTTP_GET`, `SSL_GET`, `TCP_CHECK`, `MISC_CHECK`, `UDP_CHECK`, `DNS_CHECK` and
//! `PING_CHECK` with keepalived's keys (`connect_timeout`, `retry`, `delay_before_retry`,
//! `url` with `path`, `status_code`, `digest`, `payload`, `require_reply`, `type`, ...), and a service keeps `delay_loop`, `sorry_server`, `quorum`,
//! `hysteresis`, `alpha`, `omega`. The timing keys stay at the level keepalived.conf wrote
//! them (service, real server or checker), since lvs inherits them the same way. Absent
//! values are left out, so lvs's defaults apply.

use serde::{Serialize, Serializer};

/// A keepalived `<TIMER>`: seconds, fractions allowed. Written as an integer when whole, so
/// `delay_loop 6` stays `delay_loop = 6`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Seconds(pub f64);

impl Serialize for Seconds {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let whole = self.0.fract() == 0.0 && (0.0..=u32::MAX as f64).contains(&self.0);
        if whole {
            serializer.serialize_u32(self.0 as u32)
        } else {
            serializer.serialize_f64(self.0)
        }
    }
}

/// The timing keys, which keepalived takes at the service, real-server and checker levels.
#[derive(Serialize, Debug, Clone, PartialEq, Default)]
pub struct Timing {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delay_loop: Option<Seconds>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub connect_timeout: Option<Seconds>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delay_before_retry: Option<Seconds>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub warmup: Option<Seconds>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub alpha: Option<bool>,
}

#[derive(Serialize, Debug, Clone, PartialEq)]
pub struct Config {
    pub director: Director,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sync: Option<Sync>,
    pub virtual_server: Vec<VirtualServer>,
}

/// The `[sync]` section, from `lvs_sync_daemon`: what keepalived was given is written, the
/// rest left to lvs's defaults (which are IPVS's, as keepalived's are). The sync id is always
/// written, since keepalived's default (the VRRP instance's id) is not lvs's.
#[derive(Serialize, Debug, Clone, PartialEq)]
pub struct Sync {
    pub daemons: Vec<String>,
    pub interface: String,
    pub syncid: u8,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ttl: Option<u8>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sync_maxlen: Option<u16>,
    pub key_file: String,
}

#[derive(Serialize, Debug, Clone, PartialEq)]
pub struct Director {
    pub interface: String,
    /// False when keepalived's VRRP owns the VIPs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub manage_vips: Option<bool>,
}

#[derive(Serialize, Debug, Clone, PartialEq, Default)]
pub struct VirtualServer {
    pub address: String,
    pub port: u16,
    pub protocol: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lb_algo: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lb_kind: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub sched_flags: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub persistence_timeout: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub persistence_granularity: Option<String>,
    #[serde(flatten)]
    pub timing: Timing,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub inhibit_on_failure: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub quorum: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hysteresis: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub quorum_up: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub quorum_down: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub omega: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub virtualhost: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sorry_server: Option<Endpoint>,
    pub real_server: Vec<RealServer>,
}

#[derive(Serialize, Debug, Clone, PartialEq)]
pub struct Endpoint {
    pub address: String,
    pub port: u16,
}

#[derive(Serialize, Debug, Clone, PartialEq, Default)]
pub struct RealServer {
    /// The line of the keepalived statement it came from (not written).
    #[serde(skip)]
    pub line: usize,
    pub address: String,
    pub port: u16,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub weight: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub inhibit_on_failure: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uthreshold: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lthreshold: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub notify_up: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub notify_down: Option<String>,
    #[serde(flatten)]
    pub timing: Timing,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub virtualhost: Option<String>,
    #[serde(rename = "HTTP_GET", skip_serializing_if = "Option::is_none")]
    pub http_get: Option<Checker>,
    #[serde(rename = "SSL_GET", skip_serializing_if = "Option::is_none")]
    pub ssl_get: Option<Checker>,
    #[serde(rename = "TCP_CHECK", skip_serializing_if = "Option::is_none")]
    pub tcp_check: Option<Checker>,
    #[serde(rename = "MISC_CHECK", skip_serializing_if = "Option::is_none")]
    pub misc_check: Option<Checker>,
    #[serde(rename = "UDP_CHECK", skip_serializing_if = "Option::is_none")]
    pub udp_check: Option<Checker>,
    #[serde(rename = "DNS_CHECK", skip_serializing_if = "Option::is_none")]
    pub dns_check: Option<Checker>,
    #[serde(rename = "PING_CHECK", skip_serializing_if = "Option::is_none")]
    pub ping_check: Option<Checker>,
}

/// One checker's settings; which keys apply depends on its kind, as in keepalived.
#[derive(Serialize, Debug, Clone, PartialEq, Default)]
pub struct Checker {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub connect_ip: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub connect_port: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bindto: Option<String>,
    #[serde(flatten)]
    pub timing: Timing,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http_protocol: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub virtualhost: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub misc_path: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub misc_timeout: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub misc_dynamic: Option<bool>,
    /// `user[:group]` the program runs as.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// UDP_CHECK's HEX_STR payload, as keepalived.conf wrote it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub payload: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub require_reply: Option<RequireReply>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min_reply_length: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_reply_length: Option<u16>,
    /// DNS_CHECK's query type and name.
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    pub query_type: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub url: Vec<Url>,
}

/// UDP_CHECK's `require_reply`: alone (`true`: a reply must come) or with a HEX_STR the
/// reply must start with.
#[derive(Serialize, Debug, Clone, PartialEq)]
#[serde(untagged)]
pub enum RequireReply {
    Any(bool),
    Pattern(String),
}

#[derive(Serialize, Debug, Clone, PartialEq, Default)]
pub struct Url {
    /// The line of the keepalived statement it came from (not written).
    #[serde(skip)]
    pub line: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status_code: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub virtualhost: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub regex: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub regex_no_match: Option<bool>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub regex_options: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub regex_min_offset: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub regex_max_offset: Option<u32>,
}
