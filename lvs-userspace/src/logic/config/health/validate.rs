//! The raw serde shapes of the health keywords, and their validation into `super`'s types.
//! Problems are reported as `file:line: field: message` through the main config's locator.

use std::{
    net::{IpAddr, SocketAddr},
    path::PathBuf,
    time::Duration,
};

use serde::Deserialize;
use toml::Spanned;

mod datagram;
use datagram::RawRequireReply;

use super::{
    Check, DEFAULT_DELAY_LOOP, Endpoint, HttpProbe, HttpVersion, MiscProbe, Probe,
    RealServerHealth, Script, ServiceHealth, StatusCodes, TlsOptions, UrlCheck,
    body_regex::{self, RawRegex, RawWords},
    run_as,
    timing::{CheckerKind, RawTiming, TimingLevel, with_timing_keys},
};
use crate::base::{
    diagnostics::{Locator, Problem},
    values::{Count, Port, StatusCode, UnicastAddress, same_port},
};

/// A script: a command line (split into words, no shell) or an argv array.
#[derive(Deserialize, Debug)]
#[serde(untagged)]
pub enum RawScript {
    Line(String),
    Argv(Vec<String>),
}

/// `sorry_server = { address = "...", port = 80 }`.
#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct RawSorryServer {
    address: Spanned<String>,
    #[serde(default)]
    port: Option<Spanned<i64>>,
}

with_timing_keys! {
    /// One checker block (`HTTP_GET`, `SSL_GET`, `TCP_CHECK`, `MISC_CHECK`, `UDP_CHECK`,
    /// `DNS_CHECK`, `PING_CHECK`). They share one shape
    /// so that the common keywords are read once; keys that do not belong to the block's kind
    /// are reported by `validate_check`. The timing keys come with `with_timing_keys`.
    #[derive(Deserialize, Debug)]
    #[serde(deny_unknown_fields)]
    pub struct RawCheck {
        #[serde(default)]
        connect_ip: Option<Spanned<String>>,
        #[serde(default)]
        connect_port: Option<Spanned<i64>>,
        #[serde(default)]
        bindto: Option<Spanned<String>>,
        // HTTP_GET / SSL_GET
        #[serde(default)]
        url: Vec<Spanned<RawUrl>>,
        #[serde(default)]
        http_protocol: Option<Spanned<String>>,
        #[serde(default)]
        virtualhost: Option<Spanned<String>>,
        // SSL_GET
        #[serde(default)]
        enable_sni: Option<Spanned<bool>>,
        #[serde(default)]
        sni_name: Option<Spanned<String>>,
        #[serde(default)]
        verify_certificate: Option<Spanned<bool>>,
        #[serde(default)]
        ca_file: Option<Spanned<PathBuf>>,
        // MISC_CHECK
        #[serde(default)]
        misc_path: Option<Spanned<RawScript>>,
        #[serde(default)]
        misc_timeout: Option<Spanned<f64>>,
        #[serde(default)]
        misc_dynamic: Option<Spanned<bool>>,
        #[serde(default)]
        user: Option<Spanned<String>>,
        // UDP_CHECK
        #[serde(default)]
        payload: Option<Spanned<String>>,
        #[serde(default)]
        require_reply: Option<Spanned<RawRequireReply>>,
        #[serde(default)]
        min_reply_length: Option<Spanned<i64>>,
        #[serde(default)]
        max_reply_length: Option<Spanned<i64>>,
        // DNS_CHECK
        #[serde(default, rename = "type")]
        query_type: Option<Spanned<String>>,
        #[serde(default)]
        name: Option<Spanned<String>>,
    }
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct RawUrl {
    path: Spanned<String>,
    #[serde(default)]
    status_code: Option<Spanned<RawStatusCodes>>,
    #[serde(default)]
    digest: Option<Spanned<String>>,
    #[serde(default)]
    virtualhost: Option<Spanned<String>>,
    #[serde(default)]
    regex: Option<Spanned<String>>,
    #[serde(default)]
    regex_no_match: Option<Spanned<bool>>,
    #[serde(default)]
    regex_options: Option<Spanned<RawWords>>,
    #[serde(default)]
    regex_min_offset: Option<Spanned<i64>>,
    #[serde(default)]
    regex_max_offset: Option<Spanned<i64>>,
}

/// `status_code = 200`, `"200-299"`, or a list of either.
#[derive(Deserialize, Debug)]
#[serde(untagged)]
pub enum RawStatusCodes {
    One(RawStatusItem),
    List(Vec<RawStatusItem>),
}

#[derive(Deserialize, Debug)]
#[serde(untagged)]
pub enum RawStatusItem {
    Code(i64),
    Text(String),
}

/// The service-level keys, gathered by the main config. The timing keys and `virtualhost`
/// are defaults for the real servers' checkers.
#[derive(Default)]
pub struct RawServiceHealth {
    pub timing: RawTiming,
    pub virtualhost: Option<Spanned<String>>,
    pub sorry_server: Option<Spanned<RawSorryServer>>,
    pub quorum: Option<Spanned<i64>>,
    pub hysteresis: Option<Spanned<i64>>,
    pub quorum_up: Option<Spanned<RawScript>>,
    pub quorum_down: Option<Spanned<RawScript>>,
    pub omega: Option<bool>,
    pub inhibit_on_failure: Option<bool>,
}

/// The real-server-level keys, gathered by the main config. The timing keys and
/// `virtualhost` are defaults for the real server's checker, and take their own defaults
/// from the service.
#[derive(Default)]
pub struct RawRealServerHealth {
    /// The real server's block, where problems of a checker as a whole are reported.
    pub span: std::ops::Range<usize>,
    pub http_get: Option<RawCheck>,
    pub ssl_get: Option<RawCheck>,
    pub tcp_check: Option<RawCheck>,
    pub misc_check: Option<RawCheck>,
    pub udp_check: Option<RawCheck>,
    pub dns_check: Option<RawCheck>,
    pub ping_check: Option<RawCheck>,
    pub inhibit_on_failure: Option<bool>,
    pub notify_up: Option<Spanned<RawScript>>,
    pub notify_down: Option<Spanned<RawScript>>,
    pub timing: RawTiming,
    pub virtualhost: Option<Spanned<String>>,
}

/// Where problems go: the locator, the problem list and the field path of the service.
pub(crate) struct Sink<'a, 'b> {
    pub at: &'a Locator<'b>,
    pub problems: &'a mut Vec<Problem>,
}

impl Sink<'_, '_> {
    pub(super) fn report(
        &mut self,
        span: &std::ops::Range<usize>,
        field: &str,
        message: impl Into<String>,
    ) {
        self.problems.push(self.at.problem(span, field, message));
    }
}

/// What the real servers of a service take from it, where they do not set their own.
#[derive(Clone, Debug, Default)]
pub(crate) struct ServiceDefaults {
    pub timing: TimingLevel,
    pub inhibit_on_failure: bool,
    pub virtualhost: Option<String>,
}

/// Validates the service-level keys. `real_servers` is filled later, one real server at a
/// time, by `validate_real_server`. Returns the service defaults the real servers inherit.
pub(crate) fn validate_service(
    raw: RawServiceHealth,
    service_port: Option<u16>,
    field: &str,
    sink: &mut Sink<'_, '_>,
) -> (ServiceHealth, ServiceDefaults) {
    let mut health = ServiceHealth::default();
    let timing = TimingLevel::validate(&raw.timing, field, sink);
    health.delay_loop = timing.delay_loop.unwrap_or(DEFAULT_DELAY_LOOP);
    health.alpha = timing.alpha.unwrap_or(false);
    let virtualhost = raw
        .virtualhost
        .as_ref()
        .and_then(|host| host_name(host, &format!("{field}.virtualhost"), sink));
    if let Some(sorry) = raw.sorry_server {
        let span = sorry.span();
        let sorry = sorry.into_inner();
        health.sorry_server = address(&sorry.address, &format!("{field}.sorry_server"), sink);
        if let (Some(port), Some(service_port)) = (sorry.port.as_ref(), service_port)
            && let Err(error) = same_port("sorry server", service_port, *port.get_ref())
        {
            sink.report(
                &span,
                &format!("{field}.sorry_server.port"),
                error.to_string(),
            );
        }
    }
    if let Some(quorum) = count(&raw.quorum, &format!("{field}.quorum"), sink) {
        if quorum == 0 {
            let span = raw.quorum.as_ref().map(Spanned::span).unwrap_or_default();
            sink.report(
                &span,
                &format!("{field}.quorum"),
                "quorum must be at least 1",
            );
        } else {
            health.quorum = quorum;
        }
    }
    if let Some(hysteresis) = count(&raw.hysteresis, &format!("{field}.hysteresis"), sink) {
        health.hysteresis = hysteresis;
    }
    health.quorum_up = script(raw.quorum_up, &format!("{field}.quorum_up"), sink);
    health.quorum_down = script(raw.quorum_down, &format!("{field}.quorum_down"), sink);
    health.omega = raw.omega.unwrap_or(false);
    let defaults = ServiceDefaults {
        timing,
        inhibit_on_failure: raw.inhibit_on_failure.unwrap_or(false),
        virtualhost,
    };
    (health, defaults)
}

/// What a real server inherits from its service, and what its checker needs to know of it.
pub(crate) struct Inherited<'a> {
    pub service: &'a ServiceDefaults,
    pub service_port: Option<u16>,
    pub address: Option<IpAddr>,
}

/// What a checker inherits: the timing and `virtualhost` its real server (or else its
/// service) sets.
struct CheckerDefaults {
    timing: TimingLevel,
    virtualhost: Option<String>,
    /// The real server's block: where a problem of the checker as a whole (a missing key)
    /// is reported.
    block: std::ops::Range<usize>,
}

/// Validates one real server's keys and its checker.
pub(crate) fn validate_real_server(
    raw: RawRealServerHealth,
    inherited: &Inherited<'_>,
    field: &str,
    sink: &mut Sink<'_, '_>,
) -> RealServerHealth {
    let timing = TimingLevel::validate(&raw.timing, field, sink).or(inherited.service.timing);
    let virtualhost = match raw.virtualhost.as_ref() {
        Some(host) => host_name(host, &format!("{field}.virtualhost"), sink),
        None => inherited.service.virtualhost.clone(),
    };
    let defaults = CheckerDefaults {
        timing,
        virtualhost,
        block: raw.span.clone(),
    };
    let checkers = [
        ("HTTP_GET", raw.http_get),
        ("SSL_GET", raw.ssl_get),
        ("TCP_CHECK", raw.tcp_check),
        ("MISC_CHECK", raw.misc_check),
        ("UDP_CHECK", raw.udp_check),
        ("DNS_CHECK", raw.dns_check),
        ("PING_CHECK", raw.ping_check),
    ];
    let mut check = None;
    let mut seen: Option<&str> = None;
    for (kind, raw_check) in checkers {
        let Some(raw_check) = raw_check else { continue };
        let check_field = format!("{field}.{kind}");
        if let Some(first) = seen {
            sink.report(
                &raw.span,
                &check_field,
                format!("a real server has one checker; {first} is already set"),
            );
            continue;
        }
        seen = Some(kind);
        check = validate_check(kind, raw_check, inherited, &defaults, &check_field, sink);
    }
    RealServerHealth {
        inhibit_on_failure: raw
            .inhibit_on_failure
            .unwrap_or(inherited.service.inhibit_on_failure),
        notify_up: script(raw.notify_up, &format!("{field}.notify_up"), sink),
        notify_down: script(raw.notify_down, &format!("{field}.notify_down"), sink),
        check,
    }
}

fn validate_check(
    kind: &str,
    raw: RawCheck,
    inherited: &Inherited<'_>,
    defaults: &CheckerDefaults,
    field: &str,
    sink: &mut Sink<'_, '_>,
) -> Option<Check> {
    let before = sink.problems.len();
    reject_foreign_keys(kind, &raw, field, sink);
    let checker_kind = match kind {
        "MISC_CHECK" => CheckerKind::Program,
        "DNS_CHECK" => CheckerKind::Dns,
        _ => CheckerKind::Network,
    };
    let timing = TimingLevel::validate(&raw.timing(), field, sink)
        .or(defaults.timing)
        .resolve(checker_kind);
    let probe = match kind {
        "MISC_CHECK" => validate_misc(
            &raw,
            inherited,
            &defaults.block,
            timing.delay_loop,
            field,
            sink,
        )
        .map(Probe::Misc),
        "TCP_CHECK" => endpoint(&raw, inherited, field, sink).map(Probe::Tcp),
        "UDP_CHECK" => datagram::validate_udp(&raw, inherited, field, sink).map(Probe::Udp),
        "DNS_CHECK" => datagram::validate_dns(&raw, inherited, field, sink).map(Probe::Dns),
        "PING_CHECK" => datagram::validate_ping(&raw, inherited, field, sink).map(Probe::Ping),
        _ => {
            validate_http(kind == "SSL_GET", raw, inherited, defaults, field, sink).map(Probe::Http)
        }
    };
    if sink.problems.len() != before {
        return None;
    }
    Some(Check {
        probe: probe?,
        timing,
    })
}

/// Whether `path` is what an HTTP_GET or SSL_GET `url` may ask for: an absolute request path
/// (and query) that HTTP can carry. The config and the keepalived import both ask this.
pub(crate) fn is_request_path(path: &str) -> bool {
    path.starts_with('/')
        && path
            .parse::<hyper::Uri>()
            .is_ok_and(|uri| uri.path_and_query().is_some())
}

/// The checkers that connect somewhere (all but `MISC_CHECK`).
const NETWORK: &[&str] = &[
    "HTTP_GET",
    "SSL_GET",
    "TCP_CHECK",
    "UDP_CHECK",
    "DNS_CHECK",
    "PING_CHECK",
];
/// The checkers that connect to a port (ICMP has none).
const PORTED: &[&str] = &["HTTP_GET", "SSL_GET", "TCP_CHECK", "UDP_CHECK", "DNS_CHECK"];
const HTTP: &[&str] = &["HTTP_GET", "SSL_GET"];

/// A checker key: its name, where it is written (if it is), and the checkers it belongs to.
type Key<'a> = (&'a str, Option<std::ops::Range<usize>>, &'a [&'a str]);

/// Reports keys that belong to another kind of checker, naming the kinds they belong to.
fn reject_foreign_keys(kind: &str, raw: &RawCheck, field: &str, sink: &mut Sink<'_, '_>) {
    fn at<T>(value: &Option<Spanned<T>>) -> Option<std::ops::Range<usize>> {
        value.as_ref().map(Spanned::span)
    }
    let keys: [Key<'_>; 21] = [
        ("connect_ip", at(&raw.connect_ip), NETWORK),
        ("connect_port", at(&raw.connect_port), PORTED),
        ("bindto", at(&raw.bindto), NETWORK),
        ("connect_timeout", at(&raw.connect_timeout), NETWORK),
        ("url", raw.url.first().map(Spanned::span), HTTP),
        ("http_protocol", at(&raw.http_protocol), HTTP),
        ("virtualhost", at(&raw.virtualhost), HTTP),
        ("enable_sni", at(&raw.enable_sni), &["SSL_GET"]),
        ("sni_name", at(&raw.sni_name), &["SSL_GET"]),
        (
            "verify_certificate",
            at(&raw.verify_certificate),
            &["SSL_GET"],
        ),
        ("ca_file", at(&raw.ca_file), &["SSL_GET"]),
        ("misc_path", at(&raw.misc_path), &["MISC_CHECK"]),
        ("misc_timeout", at(&raw.misc_timeout), &["MISC_CHECK"]),
        ("misc_dynamic", at(&raw.misc_dynamic), &["MISC_CHECK"]),
        ("user", at(&raw.user), &["MISC_CHECK"]),
        ("payload", at(&raw.payload), &["UDP_CHECK"]),
        ("require_reply", at(&raw.require_reply), &["UDP_CHECK"]),
        (
            "min_reply_length",
            at(&raw.min_reply_length),
            &["UDP_CHECK"],
        ),
        (
            "max_reply_length",
            at(&raw.max_reply_length),
            &["UDP_CHECK"],
        ),
        ("type", at(&raw.query_type), &["DNS_CHECK"]),
        ("name", at(&raw.name), &["DNS_CHECK"]),
    ];
    for (name, span, owners) in keys {
        let Some(span) = span else { continue };
        if owners.contains(&kind) {
            continue;
        }
        sink.report(
            &span,
            &format!("{field}.{name}"),
            format!("not a {kind} keyword (it belongs to {})", join_and(owners)),
        );
    }
}

/// "A", "A and B", "A, B and C".
fn join_and(items: &[&str]) -> String {
    match items {
        [] => String::new(),
        [one] => (*one).to_owned(),
        [init @ .., last] => format!("{} and {last}", init.join(", ")),
    }
}

fn endpoint(
    raw: &RawCheck,
    inherited: &Inherited<'_>,
    field: &str,
    sink: &mut Sink<'_, '_>,
) -> Option<Endpoint> {
    let ip = match raw.connect_ip.as_ref() {
        Some(ip) => address(ip, &format!("{field}.connect_ip"), sink)?,
        None => inherited.address?,
    };
    let port = match raw.connect_port.as_ref() {
        Some(port) => port_number(port, &format!("{field}.connect_port"), sink)?,
        None => inherited.service_port?,
    };
    let bind = match raw.bindto.as_ref() {
        Some(bind) => Some(address(bind, &format!("{field}.bindto"), sink)?),
        None => None,
    };
    Some(Endpoint {
        connect: SocketAddr::new(ip, port),
        bind,
    })
}

fn validate_http(
    tls: bool,
    raw: RawCheck,
    inherited: &Inherited<'_>,
    defaults: &CheckerDefaults,
    field: &str,
    sink: &mut Sink<'_, '_>,
) -> Option<HttpProbe> {
    let endpoint = endpoint(&raw, inherited, field, sink);
    let version = match raw.http_protocol.as_ref() {
        None => HttpVersion::Http10,
        Some(text) => HttpVersion::parse(text.get_ref()).unwrap_or_else(|| {
            sink.report(
                &text.span(),
                &format!("{field}.http_protocol"),
                format!(
                    "unknown HTTP version {:?} (expected \"1.0\", \"1.0C\", \"1.0K\" or \"1.1\")",
                    text.get_ref()
                ),
            );
            HttpVersion::Http10
        }),
    };
    let checker_host = match raw.virtualhost.as_ref() {
        Some(host) => host_name(host, &format!("{field}.virtualhost"), sink),
        None => defaults.virtualhost.clone(),
    };
    if raw.url.is_empty() {
        sink.report(
            &defaults.block,
            &format!("{field}.url"),
            "at least one url { path = \"...\" } is needed",
        );
    }
    let mut urls = Vec::new();
    for (index, url) in raw.url.into_iter().enumerate() {
        let url_field = format!("{field}.url[{index}]");
        if let Some(url) = validate_url(url.into_inner(), &checker_host, &url_field, sink) {
            urls.push(url);
        }
    }
    let tls = tls.then(|| {
        let enable_sni = raw.enable_sni.as_ref().is_some_and(|e| *e.get_ref());
        let sni_name = raw
            .sni_name
            .as_ref()
            .and_then(|n| host_name(n, &format!("{field}.sni_name"), sink));
        let sni = if enable_sni {
            let name = sni_name.or_else(|| checker_host.clone());
            if name.is_none() {
                let span = raw
                    .enable_sni
                    .as_ref()
                    .map(Spanned::span)
                    .unwrap_or_default();
                sink.report(
                    &span,
                    &format!("{field}.enable_sni"),
                    "SNI needs a name: set sni_name or virtualhost",
                );
            }
            name
        } else {
            if let Some(name) = raw.sni_name.as_ref() {
                sink.report(
                    &name.span(),
                    &format!("{field}.sni_name"),
                    "sni_name is only sent with enable_sni = true",
                );
            }
            None
        };
        let verify = raw
            .verify_certificate
            .as_ref()
            .is_some_and(|v| *v.get_ref());
        if let (Some(ca), false) = (raw.ca_file.as_ref(), verify) {
            sink.report(
                &ca.span(),
                &format!("{field}.ca_file"),
                "ca_file is only used with verify_certificate = true",
            );
        }
        TlsOptions {
            sni,
            verify,
            ca_file: raw.ca_file.map(Spanned::into_inner),
        }
    });
    Some(HttpProbe {
        endpoint: endpoint?,
        tls,
        version,
        urls,
    })
}

fn validate_url(
    raw: RawUrl,
    checker_host: &Option<String>,
    field: &str,
    sink: &mut Sink<'_, '_>,
) -> Option<UrlCheck> {
    let path = raw.path.get_ref();
    let path_ok = is_request_path(path);
    if !path_ok {
        sink.report(
            &raw.path.span(),
            &format!("{field}.path"),
            format!("{path:?} is not a request path (it starts with '/')"),
        );
    }
    let status = match raw.status_code.as_ref() {
        None => Some(StatusCodes::default()),
        Some(codes) => status_codes(codes, &format!("{field}.status_code"), sink),
    };
    let digest = match raw.digest.as_ref() {
        None => Some(None),
        Some(digest) => match parse_md5(digest.get_ref()) {
            Some(bytes) => Some(Some(bytes)),
            None => {
                sink.report(
                    &digest.span(),
                    &format!("{field}.digest"),
                    format!(
                        "{:?} is not an MD5 digest (32 hex digits)",
                        digest.get_ref()
                    ),
                );
                None
            }
        },
    };
    let virtualhost = match raw.virtualhost.as_ref() {
        Some(host) => host_name(host, &format!("{field}.virtualhost"), sink),
        None => checker_host.clone(),
    };
    let regex = body_regex::validate(
        RawRegex {
            regex: raw.regex.as_ref(),
            no_match: raw.regex_no_match.as_ref(),
            options: raw.regex_options.as_ref(),
            min_offset: raw.regex_min_offset.as_ref(),
            max_offset: raw.regex_max_offset.as_ref(),
        },
        field,
        sink,
    );
    if !path_ok {
        return None;
    }
    Some(UrlCheck {
        path: raw.path.into_inner(),
        status: status?,
        digest: digest?,
        virtualhost,
        regex: regex.ok()?,
    })
}

fn validate_misc(
    raw: &RawCheck,
    inherited: &Inherited<'_>,
    block: &std::ops::Range<usize>,
    delay_loop: Duration,
    field: &str,
    sink: &mut Sink<'_, '_>,
) -> Option<MiscProbe> {
    let Some(path) = raw.misc_path.as_ref() else {
        sink.report(
            block,
            &format!("{field}.misc_path"),
            "MISC_CHECK needs misc_path",
        );
        return None;
    };
    let command = script_of(
        path.get_ref(),
        &path.span(),
        &format!("{field}.misc_path"),
        sink,
    )?;
    let timeout = seconds(
        &raw.misc_timeout,
        &format!("{field}.misc_timeout"),
        true,
        sink,
    )
    .unwrap_or(delay_loop);
    let run_as = match raw.user.as_ref() {
        Some(user) => Some(run_as::validate(user, &format!("{field}.user"), sink)?),
        None => None,
    };
    Some(MiscProbe {
        command,
        timeout,
        dynamic: raw.misc_dynamic.as_ref().is_some_and(|d| *d.get_ref()),
        real_server: inherited.address?,
        run_as,
    })
}

fn status_codes(
    raw: &Spanned<RawStatusCodes>,
    field: &str,
    sink: &mut Sink<'_, '_>,
) -> Option<StatusCodes> {
    let items: Vec<&RawStatusItem> = match raw.get_ref() {
        RawStatusCodes::One(item) => vec![item],
        RawStatusCodes::List(items) => items.iter().collect(),
    };
    let mut ranges = Vec::new();
    for item in items {
        match parse_status_item(item) {
            Some(range) => ranges.push(range),
            None => {
                let shown = match item {
                    RawStatusItem::Code(code) => code.to_string(),
                    RawStatusItem::Text(text) => format!("{text:?}"),
                };
                sink.report(
                    &raw.span(),
                    field,
                    format!("{shown} is not a status code (100-599) or a range like \"200-299\""),
                );
                return None;
            }
        }
    }
    if ranges.is_empty() {
        sink.report(&raw.span(), field, "no status code given");
        return None;
    }
    Some(StatusCodes(ranges))
}

fn parse_status_item(item: &RawStatusItem) -> Option<(u16, u16)> {
    let valid = |code: u16| StatusCode::new(i64::from(code)).is_ok();
    let (low, high) = match item {
        RawStatusItem::Code(code) => {
            let code = u16::try_from(*code).ok()?;
            (code, code)
        }
        RawStatusItem::Text(text) => match text.split_once('-') {
            Some((low, high)) => (low.trim().parse().ok()?, high.trim().parse().ok()?),
            None => {
                let code = text.trim().parse().ok()?;
                (code, code)
            }
        },
    };
    (valid(low) && valid(high) && low <= high).then_some((low, high))
}

fn parse_md5(text: &str) -> Option<[u8; 16]> {
    let text = text.trim();
    if text.len() != 32 {
        return None;
    }
    let mut bytes = [0u8; 16];
    for (i, byte) in bytes.iter_mut().enumerate() {
        *byte = u8::from_str_radix(text.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(bytes)
}

/// A Host header value or SNI name: printable, no spaces, not empty.
fn host_name(raw: &Spanned<String>, field: &str, sink: &mut Sink<'_, '_>) -> Option<String> {
    let name = raw.get_ref();
    if name.is_empty() || !name.bytes().all(|b| b.is_ascii_graphic()) {
        sink.report(&raw.span(), field, format!("{name:?} is not a host name"));
        return None;
    }
    Some(name.clone())
}

fn script(raw: Option<Spanned<RawScript>>, field: &str, sink: &mut Sink<'_, '_>) -> Option<Script> {
    let raw = raw?;
    script_of(raw.get_ref(), &raw.span(), field, sink)
}

fn script_of(
    raw: &RawScript,
    span: &std::ops::Range<usize>,
    field: &str,
    sink: &mut Sink<'_, '_>,
) -> Option<Script> {
    let argv = match raw {
        RawScript::Argv(argv) if argv.first().is_none_or(|program| program.is_empty()) => {
            Err(NO_PROGRAM.to_owned())
        }
        RawScript::Argv(argv) => Ok(argv.clone()),
        RawScript::Line(line) => command_words(line),
    };
    match argv {
        Ok(argv) => Some(Script { argv }),
        Err(message) => {
            sink.report(span, field, message);
            None
        }
    }
}

const NO_PROGRAM: &str = "no program given";

/// A script's command line as lvs runs it: split into words as a shell would (quotes
/// honoured, nothing expanded), a program first. The one rule for the config's scripts and
/// for the keepalived import's.
pub fn command_words(line: &str) -> Result<Vec<String>, String> {
    let words = shell_words::split(line)
        .map_err(|error| format!("cannot split {line:?} into words: {error}"))?;
    if words.first().is_none_or(|program| program.is_empty()) {
        return Err(NO_PROGRAM.to_owned());
    }
    Ok(words)
}

pub(super) fn seconds(
    raw: &Option<Spanned<f64>>,
    field: &str,
    positive: bool,
    sink: &mut Sink<'_, '_>,
) -> Option<Duration> {
    let raw = raw.as_ref()?;
    match super::seconds(*raw.get_ref(), positive) {
        Ok(duration) => Some(duration),
        Err(message) => {
            sink.report(&raw.span(), field, message);
            None
        }
    }
}

pub(super) fn count(
    raw: &Option<Spanned<i64>>,
    field: &str,
    sink: &mut Sink<'_, '_>,
) -> Option<u32> {
    let raw = raw.as_ref()?;
    match Count::new(*raw.get_ref()) {
        Ok(count) => Some(count.get()),
        Err(error) => {
            sink.report(&raw.span(), field, error.to_string());
            None
        }
    }
}

fn address(raw: &Spanned<String>, field: &str, sink: &mut Sink<'_, '_>) -> Option<IpAddr> {
    let unicast = raw
        .get_ref()
        .parse::<IpAddr>()
        .ok()
        .and_then(|addr| UnicastAddress::new(addr).ok());
    match unicast {
        Some(addr) => Some(addr.get()),
        None => {
            sink.report(
                &raw.span(),
                field,
                format!("{:?} is not a usable IP address", raw.get_ref()),
            );
            None
        }
    }
}

fn port_number(raw: &Spanned<i64>, field: &str, sink: &mut Sink<'_, '_>) -> Option<u16> {
    match Port::new(*raw.get_ref()) {
        Ok(port) => Some(port.get()),
        Err(error) => {
            sink.report(&raw.span(), field, error.to_string());
            None
        }
    }
}
