//! The TOML that an import writes: lvs's config shape, in keepalived's words.
//!
//! Health checks keep keepalived's names: a real server's checkers are tables named
//! `HTTP_GET`, `SSL_GET`, `TCP_CHECK` and `MISC_CHECK` with keepalived's keys
//! (`connect_timeout`, `retry`, `delay_before_retry`, `url` with `path`, `status_code`,
//! `digest`, ...), and a service keeps `delay_loop`, `sorry_server`, `quorum`,
//! `hysteresis`, `alpha`, `omega`. Absent values are left out, so lvs's defaults apply.

use serde::Serialize;

#[derive(Serialize, Debug, Clone, PartialEq)]
pub struct Config {
    pub director: Director,
    pub virtual_server: Vec<VirtualServer>,
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
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delay_loop: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub quorum: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hysteresis: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub quorum_up: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub quorum_down: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub alpha: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub omega: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ha_suspend: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub virtualhost: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sorry_server_inhibit: Option<bool>,
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
    #[serde(rename = "HTTP_GET", skip_serializing_if = "Option::is_none")]
    pub http_get: Option<Checker>,
    #[serde(rename = "SSL_GET", skip_serializing_if = "Option::is_none")]
    pub ssl_get: Option<Checker>,
    #[serde(rename = "TCP_CHECK", skip_serializing_if = "Option::is_none")]
    pub tcp_check: Option<Checker>,
    #[serde(rename = "MISC_CHECK", skip_serializing_if = "Option::is_none")]
    pub misc_check: Option<Checker>,
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
    #[serde(skip_serializing_if = "Option::is_none")]
    pub connect_timeout: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delay_before_retry: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub warmup: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub virtualhost: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub misc_path: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub misc_timeout: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub misc_dynamic: Option<bool>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub url: Vec<Url>,
}

#[derive(Serialize, Debug, Clone, PartialEq, Default)]
pub struct Url {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status_code: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub virtualhost: Option<String>,
}
