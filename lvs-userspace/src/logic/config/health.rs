//! Health-checking configuration in keepalived's words, and its validation.
//!
//! The keys sit where keepalived.conf puts them, as TOML:
//!
//! ```toml
//! [[virtual_server]]
//! address = "192.0.2.10"
//! port = 80
//! delay_loop = 6                  # seconds between checks (keepalived's default: 60)
//! quorum = 1                      # total weight of live servers needed (default 1)
//! hysteresis = 0                  # flap damper around the quorum (default 0)
//! quorum_up = "/etc/lvs/quorum.sh up"
//! quorum_down = ["/etc/lvs/quorum.sh", "down"]
//! sorry_server = { address = "192.0.2.99", port = 80 }
//! alpha = false                   # start every real server down until a check passes
//! omega = false                   # run down notifiers at shutdown
//! inhibit_on_failure = false      # default for the real servers
//!
//! [[virtual_server.real_server]]
//! address = "192.0.2.21"
//! inhibit_on_failure = true       # weight 0 on failure instead of removal
//! notify_up = "/etc/lvs/notify.sh up"
//! notify_down = "/etc/lvs/notify.sh down"
//!
//! [virtual_server.real_server.HTTP_GET]   # or SSL_GET, TCP_CHECK, MISC_CHECK,
//!                                         # UDP_CHECK, DNS_CHECK, PING_CHECK
//! connect_timeout = 3
//! retry = 2                       # alias nb_get_retry
//! delay_before_retry = 1
//! http_protocol = "1.0C"          # or "1.0" (default), "1.0K", "1.1"
//! [[virtual_server.real_server.HTTP_GET.url]]
//! path = "/health"
//! status_code = [200, "300-399"]
//! digest = "9b3a0c85a887a256d6939da88aabd8cd"
//! regex = "status: ok"            # regex_no_match, regex_options, regex_{min,max}_offset
//! ```
//!
//! The datagram checkers (`datagram`) take keepalived's keys too:
//!
//! ```toml
//! [virtual_server.real_server.UDP_CHECK]
//! payload = "00 01 02 03"         # keepalived's HEX_STR; a random datagram otherwise
//! require_reply = "00 xx"         # or true: a reply must come (x: any nibble)
//! min_reply_length = 2            # with require_reply (default 0)
//! max_reply_length = 512          # with require_reply (default 255)
//! [virtual_server.real_server.DNS_CHECK]
//! type = "A"                      # A, NS, CNAME, SOA (default), MX, TXT, AAAA
//! name = "example.com"            # default "."
//! [virtual_server.real_server.PING_CHECK]   # connect_ip, bindto and the timing keys only
//! ```
//!
//! The timing keys (`delay_loop`, `connect_timeout`, `retry`, `delay_before_retry`,
//! `warmup`, `alpha`) and `virtualhost` may also be written on the service and the real
//! server; a checker takes each from the nearest level that sets it (`timing`).
//!
//! Scripts (`misc_path`, `notify_*`, `quorum_*`) are run directly, never through a shell: a
//! string is split into words like a shell would split it (quotes honoured, nothing
//! expanded), an array is the argv itself. To use a shell, say so: `["/bin/sh", "-c", "..."]`.
//!
//! Everything here is pure, except that `MISC_CHECK`'s `user` is looked up in the system's
//! user and group databases (`run_as`). This file holds the validated values; `validate` holds the raw
//! serde shapes the main config embeds, and turns them into these values, reporting problems
//! as `file:line: field: message` through the main config's locator.

use std::{
    collections::BTreeMap,
    fmt,
    net::{IpAddr, SocketAddr},
    path::PathBuf,
    time::Duration,
};

mod body_regex;
pub mod datagram;
pub(crate) mod run_as;
mod timing;
mod validate;

pub use body_regex::{BodyRegex, MAX_BODY_MATCHED};
pub use datagram::{DnsProbe, DnsType, HexPattern, PingProbe, ReplyRule, UdpProbe};
pub use run_as::RunAs;
pub use timing::RawTiming;
pub(crate) use timing::with_timing_keys;
pub(crate) use validate::{
    Inherited, Sink, command_words, is_request_path, validate_real_server, validate_service,
};
pub use validate::{
    RawCheck, RawRealServerHealth, RawScript, RawServiceHealth, RawSorryServer, RawStatusCodes,
    RawStatusItem, RawUrl,
};

/// keepalived's default `delay_loop`.
pub const DEFAULT_DELAY_LOOP: Duration = Duration::from_secs(60);
/// keepalived's default `connect_timeout`.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// keepalived's default `delay_before_retry` for network checkers.
pub const DEFAULT_DELAY_BEFORE_RETRY: Duration = Duration::from_secs(1);
/// The longest interval or timeout accepted: a day. Anything longer is a typo.
pub(crate) const MAX_SECONDS: f64 = 86_400.0;

/// The rule for a timing key in seconds: finite, more than 0 (`delay_loop`,
/// `connect_timeout`) or 0 or more (`delay_before_retry`, `warmup`) as `positive` says, and
/// at most [`MAX_SECONDS`]. The config file and the keepalived import both check with it.
pub fn seconds(value: f64, positive: bool) -> Result<Duration, String> {
    let low_ok = if positive { value > 0.0 } else { value >= 0.0 };
    if !value.is_finite() || !low_ok || value > MAX_SECONDS {
        let range = if positive { "more than 0" } else { "0 or more" };
        return Err(format!(
            "{value} is not a number of seconds {range} and at most {MAX_SECONDS}"
        ));
    }
    Ok(Duration::from_secs_f64(value))
}

/// A service's health settings and its real servers' checks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceHealth {
    pub delay_loop: Duration,
    /// Gets the traffic while the service has no quorum (by default: while no real server
    /// is up). In direct routing it listens on the service port.
    pub sorry_server: Option<IpAddr>,
    pub quorum: u32,
    pub hysteresis: u32,
    pub quorum_up: Option<Script>,
    pub quorum_down: Option<Script>,
    pub alpha: bool,
    pub omega: bool,
    /// The settings of each real server, by address (addresses are unique in a service).
    pub real_servers: BTreeMap<IpAddr, RealServerHealth>,
}

impl Default for ServiceHealth {
    fn default() -> Self {
        Self {
            delay_loop: DEFAULT_DELAY_LOOP,
            sorry_server: None,
            quorum: 1,
            hysteresis: 0,
            quorum_up: None,
            quorum_down: None,
            alpha: false,
            omega: false,
            real_servers: BTreeMap::new(),
        }
    }
}

impl ServiceHealth {
    /// Whether any real server of the service is checked: without checks, every real
    /// server counts as up and the health settings change nothing.
    pub fn is_checked(&self) -> bool {
        self.real_servers.values().any(|rs| rs.check.is_some())
    }
}

/// One real server's health settings.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RealServerHealth {
    /// Weight 0 instead of removal when the check fails.
    pub inhibit_on_failure: bool,
    pub notify_up: Option<Script>,
    pub notify_down: Option<Script>,
    /// The one checker of this real server; without one it is always up.
    pub check: Option<Check>,
}

/// A check: what is probed, and when. Two real servers (of any services) with equal checks
/// share one: it runs once and both follow its result.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Check {
    pub probe: Probe,
    pub timing: Timing,
}

impl fmt::Display for Check {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.probe.fmt(f)
    }
}

/// When a check runs and how its results count.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Timing {
    /// Between the end of one check and the start of the next, while results are steady.
    pub delay_loop: Duration,
    /// How long one attempt may take, connection and answer included.
    pub connect_timeout: Duration,
    /// Retries after a first failure before the server is taken down, as keepalived counts:
    /// a server goes down after `retry + 1` consecutive failures.
    pub retry: u32,
    pub delay_before_retry: Duration,
    /// The first check starts after a delay spread over `0..warmup`, so that many checks
    /// configured at once do not all start in the same instant.
    pub warmup: Duration,
    /// Start down, and come up on the first success (keepalived's alpha mode).
    pub alpha: bool,
}

/// What a check probes.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Probe {
    /// `HTTP_GET`, or `SSL_GET` when `tls` is set.
    Http(HttpProbe),
    /// `TCP_CHECK`: a connection is accepted.
    Tcp(Endpoint),
    /// `MISC_CHECK`: a program exits 0.
    Misc(MiscProbe),
    /// `UDP_CHECK`: a datagram gets no ICMP error (or, with `require_reply`, a fitting reply).
    Udp(UdpProbe),
    /// `DNS_CHECK`: a query over UDP gets an answer without error.
    Dns(DnsProbe),
    /// `PING_CHECK`: an ICMP echo request gets its reply.
    Ping(PingProbe),
}

impl Probe {
    /// keepalived's name for the checker.
    pub fn kind(&self) -> &'static str {
        match self {
            Probe::Http(http) if http.tls.is_some() => "SSL_GET",
            Probe::Http(_) => "HTTP_GET",
            Probe::Tcp(_) => "TCP_CHECK",
            Probe::Misc(_) => "MISC_CHECK",
            Probe::Udp(_) => "UDP_CHECK",
            Probe::Dns(_) => "DNS_CHECK",
            Probe::Ping(_) => "PING_CHECK",
        }
    }
}

impl fmt::Display for Probe {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Probe::Http(http) => {
                let scheme = if http.tls.is_some() { "https" } else { "http" };
                let paths: Vec<&str> = http.urls.iter().map(|u| u.path.as_str()).collect();
                write!(
                    f,
                    "{} {scheme}://{}{}",
                    self.kind(),
                    http.endpoint.connect,
                    paths.join(",")
                )
            }
            Probe::Tcp(endpoint) => write!(f, "TCP_CHECK {}", endpoint.connect),
            Probe::Misc(misc) => write!(f, "MISC_CHECK {}", misc.command),
            Probe::Udp(udp) => write!(f, "UDP_CHECK {}", udp.endpoint.connect),
            Probe::Dns(dns) => write!(
                f,
                "DNS_CHECK {} {} {}",
                dns.endpoint.connect, dns.query_type, dns.name
            ),
            Probe::Ping(ping) => write!(f, "PING_CHECK {}", ping.address),
        }
    }
}

/// Where a network check connects, and from where.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Endpoint {
    /// `connect_ip`:`connect_port`, by default the real server's address and the service port.
    pub connect: SocketAddr,
    /// `bindto`: the local source address.
    pub bind: Option<IpAddr>,
}

/// `HTTP_GET` and `SSL_GET`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct HttpProbe {
    pub endpoint: Endpoint,
    pub tls: Option<TlsOptions>,
    pub version: HttpVersion,
    /// Every URL must pass for the check to pass.
    pub urls: Vec<UrlCheck>,
}

/// `http_protocol`: the request's version and `Connection` header, as keepalived sends them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum HttpVersion {
    /// "1.0" (the default): HTTP/1.0 without a `Connection` header.
    Http10,
    /// "1.0C": HTTP/1.0 with `Connection: close`.
    Http10Close,
    /// "1.0K": HTTP/1.0 with `Connection: keep-alive` (keepalived's genhash offers it to
    /// test servers that keep connections open).
    Http10KeepAlive,
    /// "1.1": HTTP/1.1 with `Connection: close`.
    Http11,
}

impl HttpVersion {
    /// Reads keepalived's spelling ("1.0C" and "1.0c" alike).
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "1.0" => Some(Self::Http10),
            "1.0C" | "1.0c" => Some(Self::Http10Close),
            "1.0K" | "1.0k" => Some(Self::Http10KeepAlive),
            "1.1" => Some(Self::Http11),
            _ => None,
        }
    }

    /// The `Connection` header the request carries, if any.
    pub fn connection(self) -> Option<&'static str> {
        match self {
            Self::Http10 => None,
            Self::Http10Close | Self::Http11 => Some("close"),
            Self::Http10KeepAlive => Some("keep-alive"),
        }
    }
}

/// One `url` block.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct UrlCheck {
    pub path: String,
    pub status: StatusCodes,
    /// The MD5 of the body that the answer must have.
    pub digest: Option<[u8; 16]>,
    /// The Host header (the url's own, else the checker's); the connect address otherwise.
    pub virtualhost: Option<String>,
    /// What the body must (or must not) match.
    pub regex: Option<BodyRegex>,
}

/// Accepted status codes: single codes and ranges.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StatusCodes(pub Vec<(u16, u16)>);

impl Default for StatusCodes {
    fn default() -> Self {
        Self(vec![(200, 299)])
    }
}

impl StatusCodes {
    pub fn accepts(&self, code: u16) -> bool {
        self.0
            .iter()
            .any(|&(low, high)| (low..=high).contains(&code))
    }
}

/// `SSL_GET`'s TLS settings. Certificates are not verified unless asked, as keepalived does:
/// a health check asks "does it answer", and real servers often carry certificates for the
/// VIP's name, not their own address.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TlsOptions {
    /// The SNI name sent (`enable_sni`, with `sni_name` or else the virtualhost).
    pub sni: Option<String>,
    /// Verify the certificate chain and name (`verify_certificate`).
    pub verify: bool,
    /// PEM file of trusted CAs for verification (`ca_file`); the system's roots otherwise.
    pub ca_file: Option<PathBuf>,
}

/// `MISC_CHECK`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MiscProbe {
    pub command: Script,
    /// `misc_timeout`, by default the delay loop.
    pub timeout: Duration,
    /// `misc_dynamic`: exit codes 2-255 mean up with weight code-2.
    pub dynamic: bool,
    /// The real server it stands for, so that one script for two servers is two checks.
    pub real_server: IpAddr,
    /// `user`: who the program runs as, instead of the director's own user.
    pub run_as: Option<RunAs>,
}

/// A program and its arguments, run without a shell.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Script {
    pub argv: Vec<String>,
}

impl fmt::Display for Script {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&shell_words::join(&self.argv))
    }
}

#[cfg(test)]
mod tests;
