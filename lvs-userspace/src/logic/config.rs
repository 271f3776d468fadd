//! The TOML configuration: parsed and validated completely before anything touches the kernel.
//!
//! The vocabulary follows keepalived where it fits (`virtual_server`, `real_server`, `lb_algo`,
//! `lb_kind`, `weight`), so an operator can read a keepalived.conf and write this file:
//!
//! ```toml
//! [director]
//! interface = "eth0"
//!
//! [[virtual_server]]
//! address = "192.0.2.10"
//! port = 80
//! protocol = "TCP"
//! lb_algo = "wlc"
//! persistence_timeout = 300
//!
//! [[virtual_server.real_server]]
//! address = "192.0.2.21"
//! weight = 1
//! ```
//!
//! Every problem is reported with the file, line and field, and all problems are reported at
//! once rather than one per run. The health-checking keywords (`HTTP_GET`, `TCP_CHECK`, the
//! timing keys...) are parsed and validated in `health`; the checkers that run them are in the `health` layer.
//! The `[sync]` section (connection sync, ipvsadm's `--start-daemon` and its options) is
//! validated in `sync`; the `[bgp]` section (announcing the VIPs to the routers) in `bgp`;
//! the `[deny]` section (source prefixes dropped before any other work) in `deny`.

mod bgp;
mod deny;
pub mod health;
mod sync;

use std::{
    collections::HashSet,
    fmt,
    net::{Ipv4Addr, SocketAddr},
    ops::Range,
    path::{Path, PathBuf},
};

use lvs_common::keys::ServiceMapKey;
use serde::Deserialize;
use toml::Spanned;

pub use crate::base::diagnostics::Problem;
use crate::base::{
    diagnostics::Locator,
    values::{
        Netmask, Port, SourcePrefix, Threshold, Thresholds, Timeout, UnicastAddress, ValueError,
        Weight, same_port,
    },
};
pub use crate::logic::schedule::{SchedFlags, Scheduler};
use crate::logic::{announce::BgpConfig, sync::SyncConfig};
use health::{RawCheck, RawScript, RawSorryServer, ServiceHealth, with_timing_keys};
use lvs_common::flow::{DEFAULT_TCP_TIMEOUT_S, DEFAULT_TCPFIN_TIMEOUT_S, DEFAULT_UDP_TIMEOUT_S};

/// The default location of the control socket.
pub const DEFAULT_CONTROL_SOCKET: &str = "/run/lvs/lvs.sock";

/// A validated configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    pub director: Director,
    pub services: Vec<Service>,
    /// The `[sync]` section: connection sync with other directors, when present.
    pub sync: Option<SyncConfig>,
    /// The `[bgp]` section: announcing the VIPs to the routers, when present.
    pub bgp: Option<BgpConfig>,
    /// The `[deny]` section's source prefixes, in the file's order (none without it).
    pub deny: Vec<SourcePrefix>,
}

/// The director itself: where the data plane runs and how.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Director {
    /// The interface that receives traffic for the VIPs and sends it on to the real servers.
    pub interface: String,
    pub xdp_mode: XdpMode,
    /// Whether the controller puts the VIPs on the interface (and takes them off at exit).
    /// Turn it off when another system, such as keepalived's VRRP, owns the VIPs.
    pub manage_vips: bool,
    pub control_socket: PathBuf,
    /// Log every forwarding decision from the data plane. Costs about 125 ns per packet.
    pub trace_packets: bool,
    /// How many connections the flow table tracks at once.
    pub flow_table_size: u32,
    /// Idle timeouts, as `ipvsadm --set tcp tcpfin udp` sets them.
    pub timeouts: Timeouts,
    /// What happens to a connection whose real server is removed: `true` (the default)
    /// schedules its next packet anew, so a TCP client gets a reset from the new server at once;
    /// `false` drops its packets until it expires, as IPVS does with `expire_nodest_conn = 0`.
    pub expire_nodest_conn: bool,
    /// Where the status listener serves `/metrics`, `/status.json` and the status page; off
    /// unless set, so nothing is reachable from the network unless the operator asks for it.
    pub metrics_listen: Option<SocketAddr>,
}

/// Idle timeouts in seconds (`ipvsadm --set tcp tcpfin udp`). In an `lvsadm --set` change,
/// 0 leaves that timeout as it is, as in ipvsadm.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Timeouts {
    /// ESTABLISHED TCP connections.
    pub tcp: u32,
    /// TCP connections after a FIN (IPVS's FIN_WAIT).
    pub tcp_fin: u32,
    pub udp: u32,
}

impl Timeouts {
    /// IPVS's timeouts before any `--set`: TCP 15 minutes, TCP after FIN 2 minutes, UDP 5.
    pub const DEFAULT: Timeouts = Timeouts {
        tcp: DEFAULT_TCP_TIMEOUT_S,
        tcp_fin: DEFAULT_TCPFIN_TIMEOUT_S,
        udp: DEFAULT_UDP_TIMEOUT_S,
    };
}

impl Default for Timeouts {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// How the XDP program is attached.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum XdpMode {
    /// Native (driver) mode, falling back to generic mode with a warning.
    Auto,
    /// Native mode only; fail if the driver cannot do it.
    Native,
    /// Generic (skb) mode: works on every interface, slower.
    Generic,
}

/// The transport protocol of a virtual service (`-t` or `-u` in ipvsadm). Its derived order
/// (TCP before UDP) is the order ipvsadm lists services in; the control API names it in
/// lower case.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    Tcp,
    Udp,
}

impl Protocol {
    /// The IP protocol number.
    pub const fn number(self) -> u8 {
        match self {
            Protocol::Tcp => lvs_common::IPPROTO_TCP,
            Protocol::Udp => lvs_common::IPPROTO_UDP,
        }
    }

    /// The name ipvsadm prints in listings.
    pub const fn name(self) -> &'static str {
        match self {
            Protocol::Tcp => "TCP",
            Protocol::Udp => "UDP",
        }
    }

    /// The ipvsadm option that names a service of this protocol.
    pub const fn option(self) -> &'static str {
        match self {
            Protocol::Tcp => "-t",
            Protocol::Udp => "-u",
        }
    }
}

/// A virtual service and its real servers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Service {
    pub address: Ipv4Addr,
    pub port: u16,
    pub protocol: Protocol,
    pub scheduler: Scheduler,
    /// ipvsadm's `-b` (keepalived's `sh-port`, `mh-fallback`, ...).
    pub sched_flags: SchedFlags,
    /// Persistence (`-p`, keepalived's `persistence_timeout`), when the service has it.
    pub persistence: Option<Persistence>,
    pub real_servers: Vec<RealServer>,
    /// Health checking: the checkers of the real servers, quorum, sorry server.
    pub health: ServiceHealth,
}

/// A persistent service keeps a client (network) on one real server across connections
/// (`-p` and `-M`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Persistence {
    /// Seconds a client's template outlives its last connection (ipvsadm's default is 300).
    pub timeout: u32,
    /// Clients in the same network of this mask share a template (`-M`,
    /// keepalived's `persistence_granularity`); 255.255.255.255 by default.
    pub netmask: Ipv4Addr,
}

/// ipvsadm's default persistence timeout, when `-p` is given without a value.
pub const DEFAULT_PERSISTENCE_TIMEOUT: u32 = 300;

/// The persistence granularity when `-M` is not given: one client address.
pub const DEFAULT_NETMASK: Ipv4Addr = Netmask::HOST.get();

impl Service {
    /// The data plane's key for this service (in its family's map).
    pub fn key(&self) -> ServiceMapKey {
        ServiceMapKey::new(self.address.into(), self.port, self.protocol.number())
    }
}

impl fmt::Display for Service {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}:{}", self.protocol.name(), self.address, self.port)
    }
}

/// A real server of a service. In direct routing its port is the service's port.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RealServer {
    pub address: Ipv4Addr,
    /// Relative share of new flows; 0 takes the server out of rotation (quiesce).
    pub weight: u32,
    /// Connections (active + inactive) at which the server stops taking new ones (`-x`,
    /// keepalived's `uthreshold`); 0 for no limit.
    pub upper_threshold: u32,
    /// Connections under which an overloaded server takes new ones again (`-y`,
    /// `lthreshold`); 0 means three quarters of the upper threshold, as in IPVS.
    pub lower_threshold: u32,
}

/// Everything wrong with a configuration file.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}", .problems.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))]
    Invalid { problems: Vec<Problem> },
}

/// Reads and validates a configuration file.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    parse(&text, &path.display().to_string())
}

/// Parses and validates configuration text; `file` names it in error messages.
pub fn parse(text: &str, file: &str) -> Result<Config, ConfigError> {
    let locate = Locator::new(text, file);
    let raw: RawConfig = toml::from_str(text).map_err(|error| ConfigError::Invalid {
        problems: vec![toml_problem(&locate, &error)],
    })?;
    let mut problems = Vec::new();
    let config = validate(raw, &locate, &mut problems);
    if problems.is_empty() {
        Ok(config)
    } else {
        Err(ConfigError::Invalid { problems })
    }
}

// The raw shape of the file, as serde reads it. Fields that need a location in error messages
// are `Spanned`.

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    director: Spanned<RawDirector>,
    #[serde(default)]
    virtual_server: Vec<Spanned<RawService>>,
    #[serde(default)]
    sync: Option<Spanned<sync::RawSync>>,
    #[serde(default)]
    bgp: Option<Spanned<bgp::RawBgp>>,
    #[serde(default)]
    deny: Option<Spanned<deny::RawDeny>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDirector {
    interface: Spanned<String>,
    #[serde(default)]
    xdp_mode: Option<Spanned<String>>,
    #[serde(default = "default_true")]
    manage_vips: bool,
    #[serde(default)]
    control_socket: Option<PathBuf>,
    #[serde(default)]
    trace_packets: bool,
    #[serde(default)]
    flow_table_size: Option<Spanned<i64>>,
    #[serde(default)]
    timeout_tcp: Option<Spanned<i64>>,
    #[serde(default)]
    timeout_tcpfin: Option<Spanned<i64>>,
    #[serde(default)]
    timeout_udp: Option<Spanned<i64>>,
    #[serde(default = "default_true")]
    expire_nodest_conn: bool,
    #[serde(default)]
    metrics_listen: Option<Spanned<String>>,
}

fn default_true() -> bool {
    true
}

with_timing_keys! {
    /// A `[[virtual_server]]`. Its timing keys (`with_timing_keys`) are defaults for its real
    /// servers' checkers, as in keepalived.
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct RawService {
        address: Spanned<String>,
        port: Spanned<i64>,
        #[serde(default)]
        protocol: Option<Spanned<String>>,
        #[serde(default, alias = "lvs_sched")]
        lb_algo: Option<Spanned<String>>,
        #[serde(default)]
        lb_kind: Option<Spanned<String>>,
        #[serde(default)]
        sched_flags: Option<Spanned<Vec<String>>>,
        #[serde(default)]
        persistence_timeout: Option<Spanned<i64>>,
        #[serde(default)]
        persistence_granularity: Option<Spanned<String>>,
        #[serde(default)]
        real_server: Vec<Spanned<RawRealServer>>,
        // Health checking, in keepalived's words; validated by `health::config`.
        #[serde(default)]
        sorry_server: Option<Spanned<RawSorryServer>>,
        #[serde(default)]
        quorum: Option<Spanned<i64>>,
        #[serde(default)]
        hysteresis: Option<Spanned<i64>>,
        #[serde(default)]
        quorum_up: Option<Spanned<RawScript>>,
        #[serde(default)]
        quorum_down: Option<Spanned<RawScript>>,
        #[serde(default)]
        omega: Option<bool>,
        #[serde(default)]
        inhibit_on_failure: Option<bool>,
        #[serde(default)]
        virtualhost: Option<Spanned<String>>,
    }
}

with_timing_keys! {
    /// A `[[virtual_server.real_server]]`. Its timing keys (`with_timing_keys`) are defaults for
    /// its checker, as in keepalived.
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct RawRealServer {
        address: Spanned<String>,
        #[serde(default)]
        port: Option<Spanned<i64>>,
        #[serde(default)]
        weight: Option<Spanned<i64>>,
        #[serde(default)]
        uthreshold: Option<Spanned<i64>>,
        #[serde(default)]
        lthreshold: Option<Spanned<i64>>,
        // Health checking, in keepalived's words; validated by `health::config`. The checker
        // tables are not `Spanned`: toml cannot give the span of a table that is only implied
        // by its `[[...HTTP_GET.url]]` sub-tables, and fails on such a file.
        #[serde(default, rename = "HTTP_GET")]
        http_get: Option<RawCheck>,
        #[serde(default, rename = "SSL_GET")]
        ssl_get: Option<RawCheck>,
        #[serde(default, rename = "TCP_CHECK")]
        tcp_check: Option<RawCheck>,
        #[serde(default, rename = "MISC_CHECK")]
        misc_check: Option<RawCheck>,
        #[serde(default, rename = "UDP_CHECK")]
        udp_check: Option<RawCheck>,
        #[serde(default, rename = "DNS_CHECK")]
        dns_check: Option<RawCheck>,
        #[serde(default, rename = "PING_CHECK")]
        ping_check: Option<RawCheck>,
        #[serde(default)]
        inhibit_on_failure: Option<bool>,
        #[serde(default)]
        notify_up: Option<Spanned<RawScript>>,
        #[serde(default)]
        notify_down: Option<Spanned<RawScript>>,
        #[serde(default)]
        virtualhost: Option<Spanned<String>>,
    }
}

/// A TOML syntax or shape error as a problem. toml's message repeats the location and the
/// source line; its first line is the point.
fn toml_problem(at: &Locator<'_>, error: &toml::de::Error) -> Problem {
    let span = error.span().unwrap_or(0..0);
    let message = error.message().lines().next().unwrap_or("invalid TOML");
    at.problem(&span, "toml", message)
}

fn validate(raw: RawConfig, at: &Locator<'_>, problems: &mut Vec<Problem>) -> Config {
    let director = validate_director(raw.director.into_inner(), at, problems);
    let mut services: Vec<Service> = Vec::new();
    let mut seen = HashSet::new();
    for (index, raw_service) in raw.virtual_server.into_iter().enumerate() {
        let span = raw_service.span();
        let field = format!("virtual_server[{index}]");
        if let Some(service) = validate_service(raw_service.into_inner(), &field, at, problems) {
            if !seen.insert(service.key()) {
                problems.push(at.problem(&span, &field, format!("{service} is defined twice")));
                continue;
            }
            services.push(service);
        }
    }
    let limit = lvs_common::MAX_SERVICES as usize;
    if services.len() > limit {
        problems.push(at.problem(
            &(0..0),
            "virtual_server",
            format!("at most {limit} services"),
        ));
    }
    let sync = raw
        .sync
        .and_then(|section| sync::validate(section, &director.interface, at, problems));
    let bgp = raw
        .bgp
        .and_then(|section| bgp::validate(section, at, problems));
    let deny = raw
        .deny
        .map(|section| deny::validate(section, at, problems))
        .unwrap_or_default();
    Config {
        director,
        services,
        sync,
        bgp,
        deny,
    }
}

/// Whether `name` can name a network interface, by the kernel's rule (`dev_valid_name`): not
/// empty, shorter than `IFNAMSIZ`, not `.` or `..`, and no `/`, `:` or white space; so that a
/// bad name is refused here rather than when the daemon asks for the interface. The
/// director's interface, the `[sync]` section's and `lvsadm --mcast-interface` are checked by
/// it.
pub fn is_interface_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() < libc::IFNAMSIZ
        && name != "."
        && name != ".."
        && !name
            .chars()
            .any(|c| c == '/' || c == ':' || c.is_ascii_whitespace())
}

fn validate_director(raw: RawDirector, at: &Locator<'_>, problems: &mut Vec<Problem>) -> Director {
    let interface = raw.interface.get_ref().trim().to_owned();
    if !is_interface_name(&interface) {
        problems.push(at.problem(
            &raw.interface.span(),
            "director.interface",
            format!("{:?} is not an interface name", raw.interface.get_ref()),
        ));
    }
    let xdp_mode = match raw.xdp_mode.as_ref().map(|m| m.get_ref().as_str()) {
        None | Some("auto") => XdpMode::Auto,
        Some("native") => XdpMode::Native,
        Some("generic") => XdpMode::Generic,
        Some(other) => {
            let span = raw.xdp_mode.as_ref().map(Spanned::span).unwrap_or_default();
            problems.push(at.problem(
                &span,
                "director.xdp_mode",
                format!("unknown mode {other:?} (expected \"auto\", \"native\" or \"generic\")"),
            ));
            XdpMode::Auto
        }
    };
    let defaults = Timeouts::default();
    let mut timeout = |raw: &Option<Spanned<i64>>, name: &str, default: u32| {
        checked(
            raw.as_ref(),
            &format!("director.{name}"),
            Timeout::new,
            at,
            problems,
        )
        .map_or(default, Timeout::get)
    };
    let timeouts = Timeouts {
        tcp: timeout(&raw.timeout_tcp, "timeout_tcp", defaults.tcp),
        tcp_fin: timeout(&raw.timeout_tcpfin, "timeout_tcpfin", defaults.tcp_fin),
        udp: timeout(&raw.timeout_udp, "timeout_udp", defaults.udp),
    };
    let flow_table_size = number_in(
        &raw.flow_table_size,
        "director.flow_table_size",
        1024..=(1 << 26),
        at,
        problems,
    )
    .unwrap_or(lvs_common::DEFAULT_FLOW_TABLE_SIZE);
    let metrics_listen = raw.metrics_listen.as_ref().and_then(|listen| {
        let parsed = listen.get_ref().parse::<SocketAddr>();
        if parsed.is_err() {
            problems.push(at.problem(
                &listen.span(),
                "director.metrics_listen",
                format!(
                    "{:?} is not an address and port (such as \"127.0.0.1:9100\")",
                    listen.get_ref()
                ),
            ));
        }
        parsed.ok()
    });
    Director {
        interface,
        xdp_mode,
        manage_vips: raw.manage_vips,
        control_socket: raw
            .control_socket
            .unwrap_or_else(|| PathBuf::from(DEFAULT_CONTROL_SOCKET)),
        trace_packets: raw.trace_packets,
        flow_table_size,
        timeouts,
        expire_nodest_conn: raw.expire_nodest_conn,
        metrics_listen,
    }
}

fn validate_service(
    raw: RawService,
    field: &str,
    at: &Locator<'_>,
    problems: &mut Vec<Problem>,
) -> Option<Service> {
    let before = problems.len();
    let address = parse_ipv4(&raw.address, &format!("{field}.address"), at, problems);
    let port = parse_port(&raw.port, &format!("{field}.port"), at, problems);
    let protocol = match raw.protocol.as_ref() {
        None => Some(Protocol::Tcp),
        Some(p) => match p.get_ref().to_ascii_uppercase().as_str() {
            "TCP" => Some(Protocol::Tcp),
            "UDP" => Some(Protocol::Udp),
            other => {
                problems.push(at.problem(
                    &p.span(),
                    &format!("{field}.protocol"),
                    format!("unknown protocol {other:?} (expected \"TCP\" or \"UDP\")"),
                ));
                None
            }
        },
    };
    let scheduler = match raw.lb_algo.as_ref() {
        None => Some(Scheduler::default()),
        Some(algo) => match algo.get_ref().parse::<Scheduler>() {
            Ok(scheduler) => Some(scheduler),
            Err(error) => {
                problems.push(at.problem(
                    &algo.span(),
                    &format!("{field}.lb_algo"),
                    error.to_string(),
                ));
                None
            }
        },
    };
    let sched_flags = match (scheduler, raw.sched_flags.as_ref()) {
        (_, None) => Some(SchedFlags::default()),
        (None, Some(_)) => None,
        (Some(scheduler), Some(flags)) => {
            match SchedFlags::parse(scheduler, flags.get_ref().iter().map(String::as_str)) {
                Ok(flags) => Some(flags),
                Err(error) => {
                    problems.push(at.problem(
                        &flags.span(),
                        &format!("{field}.sched_flags"),
                        error.to_string(),
                    ));
                    None
                }
            }
        }
    };
    let persistence = validate_persistence(&raw, field, at, problems);
    if let Some(kind) = raw.lb_kind.as_ref() {
        if !kind.get_ref().eq_ignore_ascii_case("DR") {
            problems.push(at.problem(
                &kind.span(),
                &format!("{field}.lb_kind"),
                format!(
                    "forwarding method {:?} is not supported (lvs does direct routing: \"DR\")",
                    kind.get_ref()
                ),
            ));
        }
    }

    let raw_health = health::RawServiceHealth {
        timing: raw.timing(),
        sorry_server: raw.sorry_server,
        quorum: raw.quorum,
        hysteresis: raw.hysteresis,
        quorum_up: raw.quorum_up,
        quorum_down: raw.quorum_down,
        omega: raw.omega,
        inhibit_on_failure: raw.inhibit_on_failure,
        virtualhost: raw.virtualhost,
    };
    let mut sink = health::Sink { at, problems };
    let (mut health, service_defaults) =
        health::validate_service(raw_health, port, field, &mut sink);

    let mut real_servers: Vec<RealServer> = Vec::new();
    for (index, raw_rs) in raw.real_server.into_iter().enumerate() {
        let rs_field = format!("{field}.real_server[{index}]");
        let span = raw_rs.span();
        let mut raw_rs = raw_rs.into_inner();
        let raw_rs_health = raw_rs.take_health(span.clone());
        let rs = validate_real_server(raw_rs, port, &rs_field, at, problems);
        let inherited = health::Inherited {
            service: &service_defaults,
            service_port: port,
            address: rs.as_ref().map(|rs| rs.address),
        };
        let mut sink = health::Sink { at, problems };
        let rs_health =
            health::validate_real_server(raw_rs_health, &inherited, &rs_field, &mut sink);
        if let Some(rs) = rs {
            if real_servers.iter().any(|known| known.address == rs.address) {
                problems.push(at.problem(
                    &span,
                    &rs_field,
                    format!("real server {} is listed twice", rs.address),
                ));
                continue;
            }
            if health.sorry_server == Some(rs.address) {
                problems.push(at.problem(
                    &span,
                    &rs_field,
                    format!("{} is also the sorry server", rs.address),
                ));
            }
            health.real_servers.insert(rs.address, rs_health);
            real_servers.push(rs);
        }
    }

    if problems.len() != before {
        return None;
    }
    Some(Service {
        address: address?,
        port: port?,
        protocol: protocol?,
        scheduler: scheduler?,
        sched_flags: sched_flags?,
        persistence,
        real_servers,
        health,
    })
}

/// `persistence_timeout` makes a service persistent; `persistence_granularity` needs it.
fn validate_persistence(
    raw: &RawService,
    field: &str,
    at: &Locator<'_>,
    problems: &mut Vec<Problem>,
) -> Option<Persistence> {
    let timeout = checked(
        raw.persistence_timeout.as_ref(),
        &format!("{field}.persistence_timeout"),
        Timeout::new,
        at,
        problems,
    );
    let netmask = raw.persistence_granularity.as_ref().and_then(|mask| {
        let parsed = mask
            .get_ref()
            .parse::<Ipv4Addr>()
            .ok()
            .and_then(|m| Netmask::new(m).ok())
            .map(Netmask::get);
        if parsed.is_none() {
            problems.push(at.problem(
                &mask.span(),
                &format!("{field}.persistence_granularity"),
                format!("{:?} is not an IPv4 netmask", mask.get_ref()),
            ));
        } else if raw.persistence_timeout.is_none() {
            problems.push(at.problem(
                &mask.span(),
                &format!("{field}.persistence_granularity"),
                "needs persistence_timeout",
            ));
        }
        parsed
    });
    timeout.map(|timeout| Persistence {
        timeout: timeout.get(),
        netmask: netmask.unwrap_or(DEFAULT_NETMASK),
    })
}

/// Whether the address is a netmask: ones followed by zeros (the rule of `base::values::Netmask`).
pub fn is_netmask(mask: Ipv4Addr) -> bool {
    Netmask::new(mask).is_ok()
}

/// An optional field that must pass `rule`; reports the rule's error at the value otherwise.
fn checked<T>(
    raw: Option<&Spanned<i64>>,
    field: &str,
    rule: impl Fn(i64) -> Result<T, ValueError>,
    at: &Locator<'_>,
    problems: &mut Vec<Problem>,
) -> Option<T> {
    let raw = raw?;
    rule(*raw.get_ref())
        .map_err(|error| problems.push(at.problem(&raw.span(), field, error.to_string())))
        .ok()
}

/// An optional integer field that must lie in `range`; reports the problem otherwise.
fn number_in(
    raw: &Option<Spanned<i64>>,
    field: &str,
    range: std::ops::RangeInclusive<i64>,
    at: &Locator<'_>,
    problems: &mut Vec<Problem>,
) -> Option<u32> {
    let raw = raw.as_ref()?;
    let value = *raw.get_ref();
    if range.contains(&value) {
        u32::try_from(value).ok()
    } else {
        problems.push(at.problem(
            &raw.span(),
            field,
            format!(
                "{value} is out of range {}..={}",
                range.start(),
                range.end()
            ),
        ));
        None
    }
}

impl RawRealServer {
    /// Takes the health-checking keys out, for `health::config` to validate; `span` is the
    /// real server's block.
    fn take_health(&mut self, span: Range<usize>) -> health::RawRealServerHealth {
        health::RawRealServerHealth {
            span,
            http_get: self.http_get.take(),
            ssl_get: self.ssl_get.take(),
            tcp_check: self.tcp_check.take(),
            misc_check: self.misc_check.take(),
            udp_check: self.udp_check.take(),
            dns_check: self.dns_check.take(),
            ping_check: self.ping_check.take(),
            inhibit_on_failure: self.inhibit_on_failure.take(),
            notify_up: self.notify_up.take(),
            notify_down: self.notify_down.take(),
            timing: self.timing(),
            virtualhost: self.virtualhost.take(),
        }
    }
}

fn validate_real_server(
    raw: RawRealServer,
    service_port: Option<u16>,
    field: &str,
    at: &Locator<'_>,
    problems: &mut Vec<Problem>,
) -> Option<RealServer> {
    let address = parse_ipv4(&raw.address, &format!("{field}.address"), at, problems);
    if let Some(raw_port) = raw.port.as_ref() {
        let port = parse_port(raw_port, &format!("{field}.port"), at, problems);
        if let (Some(port), Some(service_port)) = (port, service_port)
            && let Err(error) = same_port("real server", service_port, i64::from(port))
        {
            problems.push(at.problem(
                &raw_port.span(),
                &format!("{field}.port"),
                error.to_string(),
            ));
        }
    }
    let weight = match raw.weight.as_ref() {
        None => Some(Weight::DEFAULT),
        weight => checked(
            weight,
            &format!("{field}.weight"),
            Weight::new,
            at,
            problems,
        ),
    };
    let upper_threshold = checked(
        raw.uthreshold.as_ref(),
        &format!("{field}.uthreshold"),
        Threshold::new,
        at,
        problems,
    );
    let lower_threshold = checked(
        raw.lthreshold.as_ref(),
        &format!("{field}.lthreshold"),
        Threshold::new,
        at,
        problems,
    );
    let upper = upper_threshold.unwrap_or_default().get();
    let lower = lower_threshold.unwrap_or_default().get();
    if let (Err(ValueError::LowerAboveUpper { upper, lower }), Some(raw_lower)) =
        (Thresholds::new(upper, lower), raw.lthreshold.as_ref())
    {
        // keepalived's keywords name the thresholds in this file.
        problems.push(at.problem(
            &raw_lower.span(),
            &format!("{field}.lthreshold"),
            format!("lthreshold {lower} is above uthreshold {upper}"),
        ));
    }
    Some(RealServer {
        address: address?,
        weight: weight?.get(),
        upper_threshold: upper,
        lower_threshold: lower,
    })
}

/// A service or real server address: a unicast IPv4 address.
fn parse_ipv4(
    raw: &Spanned<String>,
    field: &str,
    at: &Locator<'_>,
    problems: &mut Vec<Problem>,
) -> Option<Ipv4Addr> {
    let message = match raw.get_ref().parse::<Ipv4Addr>() {
        Ok(address) => match UnicastAddress::new(address) {
            Ok(address) => return Some(address.get()),
            Err(error) => error.to_string(),
        },
        Err(_) => format!("{:?} is not an IPv4 address", raw.get_ref()),
    };
    problems.push(at.problem(&raw.span(), field, message));
    None
}

fn parse_port(
    raw: &Spanned<i64>,
    field: &str,
    at: &Locator<'_>,
    problems: &mut Vec<Problem>,
) -> Option<u16> {
    checked(Some(raw), field, Port::new, at, problems).map(Port::get)
}

/// What the sections' tests share: a file of one `[director]` and the section under test.
#[cfg(test)]
mod section_tests {
    use super::{Config, ConfigError, parse};

    const DIRECTOR: &str = "[director]\ninterface = \"eth1\"\n\n";

    /// The config of a file with this section after the director.
    pub(super) fn config_with(section: &str) -> Config {
        parse(&format!("{DIRECTOR}{section}"), "lvs.toml")
            .unwrap_or_else(|error| panic!("{section}: {error}"))
    }

    /// The problems of a file with this section after the director, one a line.
    pub(super) fn errors_of(section: &str) -> String {
        match parse(&format!("{DIRECTOR}{section}"), "lvs.toml") {
            Ok(_) => panic!("accepted {section:?}"),
            Err(ConfigError::Invalid { problems }) => problems
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("\n"),
            Err(other) => panic!("{other}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
[director]
interface = "eth0"

[[virtual_server]]
address = "192.0.2.10"
port = 80
protocol = "TCP"
lb_algo = "mh"
lb_kind = "DR"

[[virtual_server.real_server]]
address = "192.0.2.21"
weight = 3

[[virtual_server.real_server]]
address = "192.0.2.22"
port = 80

[[virtual_server]]
address = "192.0.2.10"
port = 53
protocol = "udp"
"#;

    #[test]
    fn parses_a_good_file_with_defaults() {
        let config = parse(GOOD, "lvs.toml").expect("valid");
        assert_eq!(config.director.interface, "eth0");
        assert_eq!(config.director.xdp_mode, XdpMode::Auto);
        assert!(config.director.manage_vips);
        assert_eq!(config.director.metrics_listen, None, "off unless set");
        assert_eq!(
            config.director.control_socket,
            PathBuf::from(DEFAULT_CONTROL_SOCKET)
        );
        assert_eq!(config.services.len(), 2);
        let web = &config.services[0];
        assert_eq!(web.to_string(), "TCP 192.0.2.10:80");
        assert_eq!(
            web.real_servers,
            vec![
                RealServer {
                    address: "192.0.2.21".parse().unwrap(),
                    weight: 3,
                    upper_threshold: 0,
                    lower_threshold: 0,
                },
                RealServer {
                    address: "192.0.2.22".parse().unwrap(),
                    weight: 1,
                    upper_threshold: 0,
                    lower_threshold: 0,
                },
            ]
        );
        assert_eq!(config.services[1].protocol, Protocol::Udp);
        assert_eq!(web.scheduler, Scheduler::MaglevHashing);
        assert_eq!(
            config.services[1].scheduler,
            Scheduler::WeightedLeastConnection
        );
        assert_eq!(web.persistence, None);
        assert_eq!(config.director.timeouts, Timeouts::default());
        assert!(config.director.expire_nodest_conn);
        assert_eq!(config.services[1].key().port(), 53);
    }

    /// Replaces the first occurrence of `from` in the good file and returns the error text.
    fn error_of(from: &str, to: &str) -> String {
        assert!(GOOD.contains(from), "fixture does not contain {from:?}");
        let text = GOOD.replacen(from, to, 1);
        match parse(&text, "lvs.toml") {
            Ok(_) => panic!("accepted a bad file with {to:?}"),
            Err(error) => error.to_string(),
        }
    }

    #[test]
    fn bad_values_are_reported_with_file_line_and_field() {
        let cases = [
            (
                "address = \"192.0.2.10\"",
                "address = \"192.0.2.300\"",
                "lvs.toml:6: virtual_server[0].address: \"192.0.2.300\" is not an IPv4 address",
            ),
            (
                "port = 80\nprotocol",
                "port = 0\nprotocol",
                "lvs.toml:7: virtual_server[0].port: port 0 is out of range 1..=65535",
            ),
            (
                "port = 80\nprotocol",
                "port = 65536\nprotocol",
                "lvs.toml:7: virtual_server[0].port: port 65536 is out of range 1..=65535",
            ),
            (
                "protocol = \"TCP\"",
                "protocol = \"SCTP\"",
                "lvs.toml:8: virtual_server[0].protocol: unknown protocol \"SCTP\"",
            ),
            (
                "lb_algo = \"mh\"",
                "lb_algo = \"fastest\"",
                "lvs.toml:9: virtual_server[0].lb_algo: unknown scheduler \"fastest\"",
            ),
            (
                "lb_algo = \"mh\"",
                "lb_algo = \"lblc\"",
                "lvs.toml:9: virtual_server[0].lb_algo: scheduler \"lblc\" is not supported by lvs",
            ),
            (
                "lb_kind = \"DR\"",
                "sched_flags = [\"sh-port\"]",
                "lvs.toml:10: virtual_server[0].sched_flags: scheduler flag \"sh-port\" does not \
                 apply to scheduler mh",
            ),
            (
                "lb_kind = \"DR\"",
                "persistence_timeout = 0",
                "lvs.toml:10: virtual_server[0].persistence_timeout: 0 is out of range",
            ),
            (
                "lb_kind = \"DR\"",
                "persistence_granularity = \"255.0.255.0\"",
                "lvs.toml:10: virtual_server[0].persistence_granularity: \"255.0.255.0\" is not \
                 an IPv4 netmask",
            ),
            (
                "weight = 3",
                "uthreshold = 10\nlthreshold = 20",
                "lvs.toml:15: virtual_server[0].real_server[0].lthreshold: lthreshold 20 is above \
                 uthreshold 10",
            ),
            (
                "interface = \"eth0\"",
                "interface = \"eth0\"\ntimeout_tcp = 0",
                "lvs.toml:4: director.timeout_tcp: 0 is out of range",
            ),
            (
                "interface = \"eth0\"",
                "interface = \"eth0\"\nmetrics_listen = \"localhost\"",
                "lvs.toml:4: director.metrics_listen: \"localhost\" is not an address and port",
            ),
            (
                "lb_kind = \"DR\"",
                "lb_kind = \"NAT\"",
                "lvs.toml:10: virtual_server[0].lb_kind: forwarding method \"NAT\" is not supported",
            ),
            (
                "weight = 3",
                "weight = 70000",
                "lvs.toml:14: virtual_server[0].real_server[0].weight: weight 70000 is out of range 0..=65535",
            ),
            (
                "weight = 3",
                "weight = -1",
                "lvs.toml:14: virtual_server[0].real_server[0].weight: weight -1 is out of range",
            ),
            (
                "port = 80\n\n[[virtual_server]]",
                "port = 8080\n\n[[virtual_server]]",
                "lvs.toml:18: virtual_server[0].real_server[1].port: direct routing cannot change the port",
            ),
            (
                "address = \"192.0.2.22\"",
                "address = \"192.0.2.21\"",
                "virtual_server[0].real_server[1]: real server 192.0.2.21 is listed twice",
            ),
            (
                "interface = \"eth0\"",
                "interface = \"\"",
                "lvs.toml:3: director.interface: \"\" is not an interface name",
            ),
            (
                "interface = \"eth0\"",
                "interface = \"eth0\"\nxdp_mode = \"fast\"",
                "lvs.toml:4: director.xdp_mode: unknown mode \"fast\"",
            ),
            (
                "interface = \"eth0\"",
                "interface = \"eth0\"\nlisten = 1",
                "lvs.toml:4: toml: unknown field `listen`",
            ),
            (
                "address = \"192.0.2.10\"",
                "address = \"224.0.0.1\"",
                "224.0.0.1 cannot be a service or server address",
            ),
            ("[director]", "[director", "lvs.toml:2: toml:"),
        ];
        for (from, to, expected) in cases {
            let error = error_of(from, to);
            assert!(
                error.contains(expected),
                "for {to:?}:\n got: {error}\nwant: {expected}"
            );
        }
    }

    #[test]
    fn interface_names_follow_the_kernels_rule() {
        for good in ["eth0", "enp0s31f6", "br-lan.100", "a23456789012345"] {
            assert!(is_interface_name(good), "{good}");
        }
        for bad in ["", ".", "..", "a/b", "eth0:1", "eth 0", "a234567890123456"] {
            assert!(!is_interface_name(bad), "{bad:?}");
        }
    }

    #[test]
    fn duplicate_services_are_rejected() {
        let text = GOOD.replace(
            "port = 53\nprotocol = \"udp\"",
            "port = 80\nprotocol = \"tcp\"",
        );
        let error = parse(&text, "x.toml").unwrap_err().to_string();
        assert!(
            error.contains("x.toml:20: virtual_server[1]: TCP 192.0.2.10:80 is defined twice"),
            "{error}"
        );
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let text = GOOD
            .replace("192.0.2.21", "nope")
            .replace("weight = 3", "weight = 99999");
        let ConfigError::Invalid { problems } = parse(&text, "x.toml").unwrap_err() else {
            panic!("expected an invalid-config error");
        };
        assert_eq!(problems.len(), 2, "{problems:?}");
    }

    #[test]
    fn missing_director_is_an_error() {
        let error = parse(
            "[[virtual_server]]\naddress = \"192.0.2.1\"\nport = 1\n",
            "x.toml",
        )
        .unwrap_err()
        .to_string();
        assert!(error.contains("missing field `director`"), "{error}");
    }
}
