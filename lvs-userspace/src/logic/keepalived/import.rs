//! From keepalived's `virtual_server` blocks to lvs's TOML config.
//!
//! What lvs cannot do (NAT and tunnelling, firewall-mark and IPv6 services, server groups,
//! SMTP_CHECK, FILE_CHECK and BFD_CHECK, `include`) is reported
//! with its line and left out, never approximated: a service that would forward differently
//! is left out whole. The rest of the file (global_defs, VRRP) stays keepalived's business
//! (`--vrrp-out` writes it, see [`super::vrrp`]) and is skipped here, except that a VRRP
//! instance's interface is taken as the director's and tells lvs to leave the VIPs to
//! keepalived, and that `lvs_sync_daemon` becomes the `[sync]` section (see [`super::sync`]).
//!
//! A value keepalived takes and that means nothing to lvs (`persistence_timeout 0`, which is
//! no persistence; `nat_mask`, which only NAT ever used) is checked and left out with a note
//! that names its line, so that the TOML says what it would have meant.

use std::{
    collections::HashSet,
    fmt,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
};

use crate::{
    base::values::{
        Count, Netmask, Port, StatusCode, Thresholds, Timeout, UnicastAddress, Weight, same_port,
    },
    logic::{
        config::{
            self, granularity,
            health::{self, HttpVersion, run_as},
        },
        schedule::Scheduler,
    },
};

use super::{
    output::{
        Checker, Config, Director, Endpoint, RealServer, Seconds, Timing, Url, VirtualServer,
    },
    syntax::{self, Statement, SyntaxError},
};

mod datagram;

/// The interface written when neither the command line nor a VRRP instance names one.
const PLACEHOLDER_INTERFACE: &str = "eth0";

/// Something in the file that was not imported, and where.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    pub line: usize,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.message)
    }
}

/// The result of an import.
#[derive(Clone, Debug, PartialEq)]
pub struct Imported {
    pub config: Config,
    /// Everything left out; empty when the import is complete.
    pub problems: Vec<Problem>,
    /// Notes for the reader of the TOML (where the interface came from, ...).
    pub notes: Vec<String>,
}

impl Imported {
    /// The TOML text, with a header that lists the notes and what was left out.
    pub fn to_toml(&self) -> Result<String, toml::ser::Error> {
        let mut text =
            String::from("# Imported from keepalived.conf by `lvs import-keepalived`.\n");
        for note in &self.notes {
            text.push_str(&format!("# {note}\n"));
        }
        if !self.problems.is_empty() {
            text.push_str("# Not imported:\n");
            for problem in &self.problems {
                text.push_str(&format!("#   {problem}\n"));
            }
        }
        text.push('\n');
        text.push_str(&toml::to_string_pretty(&self.config)?);
        Ok(text)
    }
}

/// Imports keepalived.conf text. `interface` is the director's interface when the caller
/// knows it. Only a syntax error fails the import; everything else is a problem.
pub fn import(text: &str, interface: Option<&str>) -> Result<Imported, SyntaxError> {
    let statements = syntax::parse(text)?;
    let mut importer = Importer::default();
    let mut services: Vec<VirtualServer> = Vec::new();
    // The line of each imported service's statement.
    let mut service_lines: Vec<usize> = Vec::new();
    let mut seen = HashSet::new();
    let mut vrrp_interface: Option<String> = None;
    importer.report_beyond_services(&statements);
    let sync = super::sync::import(&statements);
    importer.problems.extend(sync.problems);
    importer.notes.extend(sync.notes);
    for statement in &statements {
        match statement.keyword.as_str() {
            "virtual_server" => {
                if let Some(service) = importer.virtual_server(statement) {
                    let key = (service.address.clone(), service.port, service.protocol.clone());
                    if !seen.insert(key) {
                        importer.problem(statement, "this service is defined twice; the second is not imported");
                        continue;
                    }
                    let refused = super::check::service(&service, statement, PLACEHOLDER_INTERFACE);
                    let reported = importer.problems.iter().any(|problem| {
                        (statement.line..=statement.end_line).contains(&problem.line)
                    });
                    if refused.is_empty() {
                        service_lines.push(statement.line);
                        services.push(service);
                    } else if reported {
                        // What was left out, already reported, is what the config misses.
                        importer.problem(
                            statement,
                            "this service is not imported: without what is left out below, lvs check would refuse it",
                        );
                    } else {
                        importer.problems.extend(refused.into_iter().map(|problem| Problem {
                            line: problem.line,
                            message: format!("{}; the service is not imported", problem.message),
                        }));
                    }
                }
            }
            "virtual_server_group" => importer.problem(
                statement,
                "virtual_server_group is not supported by lvs; write its members as virtual_server blocks",
            ),
            "vrrp_instance" if vrrp_interface.is_none() => {
                let found = find(statement, "interface");
                vrrp_interface = found.and_then(|s| s.args.first().cloned());
                if let (Some(at), Some(name)) = (found, &vrrp_interface)
                    && !config::is_interface_name(name)
                {
                    importer.problem(
                        at,
                        format!("{name:?} is not an interface name; director.interface is left a placeholder"),
                    );
                }
            }
            _ => {}
        }
    }
    let limit = lvs_common::MAX_SERVICES as usize;
    if let Some(&line) = service_lines.get(limit) {
        importer.problems.push(Problem {
            line,
            message: format!(
                "lvs takes at most {limit} services; this one and those after it are not imported"
            ),
        });
        services.truncate(limit);
    }
    // Reported in the order of the file, whichever pass found them.
    importer.problems.sort_by_key(|problem| problem.line);
    let mut notes = Vec::new();
    let interface = match (interface, &vrrp_interface) {
        (Some(given), _) => given.to_owned(),
        (None, Some(vrrp)) if config::is_interface_name(vrrp) => {
            notes.push(format!(
                "director.interface is the VRRP instance's interface ({vrrp})."
            ));
            vrrp.clone()
        }
        (None, _) => {
            notes.push(format!(
                "director.interface is a placeholder ({PLACEHOLDER_INTERFACE}): set it, or import with --interface."
            ));
            PLACEHOLDER_INTERFACE.to_owned()
        }
    };
    let manage_vips = vrrp_interface.as_ref().map(|_| {
        notes.push("manage_vips is off: keepalived's VRRP owns the VIPs.".to_owned());
        false
    });
    importer.notes.sort_by_key(|note| note.line);
    notes.extend(importer.notes.iter().map(ToString::to_string));
    Ok(Imported {
        config: Config {
            director: Director {
                interface,
                manage_vips,
            },
            sync: sync.section,
            virtual_server: services,
        },
        problems: importer.problems,
        notes,
    })
}

fn find<'a>(statement: &'a Statement, keyword: &str) -> Option<&'a Statement> {
    statement
        .block
        .as_deref()
        .unwrap_or_default()
        .iter()
        .find(|s| s.keyword == keyword)
}

/// keepalived's checkers that lvs has no equivalent for yet.
const UNSUPPORTED_CHECKERS: [&str; 3] = ["SMTP_CHECK", "FILE_CHECK", "BFD_CHECK"];

#[derive(Default)]
struct Importer {
    problems: Vec<Problem>,
    /// Values taken as keepalived takes them but not written, each with why.
    notes: Vec<Problem>,
}

impl Importer {
    fn problem(&mut self, at: &Statement, message: impl Into<String>) {
        self.problems.push(Problem {
            line: at.line,
            message: message.into(),
        });
    }

    fn note(&mut self, at: &Statement, message: impl Into<String>) {
        self.notes.push(Problem {
            line: at.line,
            message: message.into(),
        });
    }

    /// Reports, wherever they are, the `include` statements, which reach beyond the file.
    fn report_beyond_services(&mut self, statements: &[Statement]) {
        for statement in statements {
            if statement.keyword == "include" {
                self.problem(
                    statement,
                    format!(
                        "include {} is not followed; import that file on its own",
                        statement.args.join(" ")
                    ),
                );
            }
            if let Some(block) = &statement.block {
                self.report_beyond_services(block);
            }
        }
    }

    /// The one value of a `keyword value` statement.
    fn value<'a>(&mut self, at: &'a Statement) -> Option<&'a str> {
        match at.args.as_slice() {
            [value] => Some(value),
            _ => {
                self.problem(at, format!("{} takes one value", at.keyword));
                None
            }
        }
    }

    fn text(&mut self, at: &Statement) -> Option<String> {
        self.value(at).map(str::to_owned)
    }

    /// A script's command line (`misc_path`, `notify_up`, `quorum_up`, ...), by the config's
    /// rule for scripts, so that what is written is a script `lvs check` takes.
    fn command(&mut self, at: &Statement) -> Option<String> {
        let line = self.text(at)?;
        match health::command_words(&line) {
            Ok(_) => Some(line),
            Err(message) => {
                self.problem(at, format!("{}: {message}", at.keyword));
                None
            }
        }
    }

    fn number(&mut self, at: &Statement) -> Option<u32> {
        let value = self.value(at)?;
        let parsed = value.parse().ok();
        if parsed.is_none() {
            self.problem(
                at,
                format!("{}: {value:?} is not a whole number", at.keyword),
            );
        }
        parsed
    }

    fn port(&mut self, at: &Statement, text: &str) -> Option<u16> {
        let port = text.parse().ok().and_then(|n| Port::new(n).ok());
        if port.is_none() {
            self.problem(at, format!("{text:?} is not a port (1 to 65535)"));
        }
        port.map(Port::get)
    }

    /// A keepalived `<TIMER>`: seconds, fractions allowed, in the range lvs's config takes
    /// for the key (`positive`: more than 0). keepalived ignores a 0 `delay_loop` or
    /// `connect_timeout` as invalid; the import reports it.
    fn timer(&mut self, at: &Statement, positive: bool) -> Option<Seconds> {
        let value = self.value(at)?;
        let Some(seconds) = value
            .parse::<f64>()
            .ok()
            .filter(|seconds| seconds.is_finite() && *seconds >= 0.0)
        else {
            self.problem(
                at,
                format!("{}: {value:?} is not a number of seconds", at.keyword),
            );
            return None;
        };
        match health::seconds(seconds, positive) {
            Ok(_) => Some(Seconds(seconds)),
            Err(message) => {
                self.problem(at, format!("{}: {message}", at.keyword));
                None
            }
        }
    }

    /// A count (`retry`, `quorum`, `hysteresis`) in the range lvs's config takes.
    fn count(&mut self, at: &Statement) -> Option<u32> {
        match Count::new(i64::from(self.number(at)?)) {
            Ok(count) => Some(count.get()),
            Err(error) => {
                self.problem(at, format!("{}: {error}", at.keyword));
                None
            }
        }
    }

    /// Reads a timing keyword (`delay_loop`, `connect_timeout`, `retry`, `nb_get_retry`,
    /// `delay_before_retry`, `warmup`, `alpha`) into `timing`; false for other keywords.
    fn timing(&mut self, at: &Statement, timing: &mut Timing) -> bool {
        match at.keyword.as_str() {
            "delay_loop" => timing.delay_loop = self.timer(at, true),
            "connect_timeout" => timing.connect_timeout = self.timer(at, true),
            "retry" | "nb_get_retry" => timing.retry = self.count(at),
            "delay_before_retry" => timing.delay_before_retry = self.timer(at, false),
            "warmup" => timing.warmup = self.timer(at, false),
            "alpha" => timing.alpha = self.boolean(at),
            _ => return false,
        }
        true
    }

    /// A keepalived `[<BOOL>]`: the keyword alone is true, or one of on|off|true|false|yes|no.
    fn boolean(&mut self, at: &Statement) -> Option<bool> {
        match at.args.as_slice() {
            [] => Some(true),
            [value] => match value.to_ascii_lowercase().as_str() {
                "on" | "true" | "yes" => Some(true),
                "off" | "false" | "no" => Some(false),
                _ => {
                    self.problem(
                        at,
                        format!(
                            "{}: {value:?} is not one of on|off|true|false|yes|no",
                            at.keyword
                        ),
                    );
                    None
                }
            },
            _ => {
                self.problem(at, format!("{} takes at most one value", at.keyword));
                None
            }
        }
    }

    /// A keyword without a value, such as `omega`.
    fn flag(&mut self, at: &Statement) -> Option<bool> {
        if !at.args.is_empty() {
            self.problem(at, format!("{} takes no value", at.keyword));
            return None;
        }
        Some(true)
    }

    fn address(&mut self, at: &Statement, text: &str) -> Option<IpAddr> {
        match text.parse::<IpAddr>() {
            Ok(address) => Some(address),
            Err(_) => {
                self.problem(at, format!("{text:?} is not an IP address"));
                None
            }
        }
    }

    /// A checker's `connect_ip` or `bindto`: a unicast address, by the rule lvs's config
    /// checks it with (keepalived takes 0.0.0.0 or a multicast address too).
    fn checker_address(&mut self, at: &Statement) -> Option<String> {
        let text = self.value(at)?;
        let address = self.address(at, text)?;
        match UnicastAddress::new(address) {
            Ok(address) => Some(address.get().to_string()),
            Err(error) => {
                self.problem(at, format!("{}: {error}", at.keyword));
                None
            }
        }
    }

    /// `address port`, as virtual_server, real_server and sorry_server give them.
    fn endpoint(&mut self, at: &Statement) -> Option<Endpoint> {
        let [address, port] = at.args.as_slice() else {
            self.problem(at, format!("{} takes an address and a port", at.keyword));
            return None;
        };
        let address = self.address(at, address)?;
        let port = self.port(at, port)?;
        Some(Endpoint {
            address: address.to_string(),
            port,
        })
    }

    fn virtual_server(&mut self, at: &Statement) -> Option<VirtualServer> {
        match at.args.first().map(String::as_str) {
            Some("fwmark") => {
                self.problem(at, "firewall-mark services are not supported by lvs");
                return None;
            }
            Some("group") => {
                self.problem(at, "virtual_server group is not supported by lvs");
                return None;
            }
            _ => {}
        }
        let Endpoint { address, port } = self.endpoint(at)?;
        let family_v6 = address.contains(':');
        let mut service = VirtualServer {
            address,
            port,
            protocol: "TCP".into(),
            ..VirtualServer::default()
        };
        let mut forwards_elsewhere = false;
        let mut sched_flags: Vec<&Statement> = Vec::new();
        let mut granularity_at: Option<&Statement> = None;
        for statement in at.block.as_deref().unwrap_or_default() {
            let s = statement;
            match s.keyword.as_str() {
                "lb_algo" | "lvs_sched" => service.lb_algo = self.scheduler(s),
                "lb_kind" | "lvs_method" => match self.value(s) {
                    Some(kind) if kind.eq_ignore_ascii_case("DR") => {
                        service.lb_kind = Some("DR".into());
                    }
                    Some(kind) => {
                        forwards_elsewhere = true;
                        self.problem(
                            s,
                            format!(
                                "lb_kind {kind} is not supported (lvs does direct routing, DR); \
                                 the service is not imported"
                            ),
                        );
                    }
                    None => forwards_elsewhere = true,
                },
                "protocol" => match self.value(s).map(str::to_ascii_uppercase).as_deref() {
                    Some(protocol @ ("TCP" | "UDP")) => service.protocol = protocol.into(),
                    Some(other) => {
                        forwards_elsewhere = true;
                        self.problem(
                            s,
                            format!("protocol {other} is not supported by lvs; the service is not imported"),
                        );
                    }
                    None => forwards_elsewhere = true,
                },
                "persistence_timeout" => {
                    service.persistence_timeout = self.persistence_timeout(s);
                }
                "persistence_granularity" => {
                    service.persistence_granularity = self.granularity(s, family_v6);
                    granularity_at = Some(s);
                }
                "nat_mask" => {
                    if self.netmask(s).is_some() {
                        self.note(
                            s,
                            "nat_mask is not written: it only applied to NAT, and lvs does \
                             direct routing (keepalived 2 no longer reads it)",
                        );
                    }
                }
                // keepalived takes the family from the address; ip_family must agree with it.
                "ip_family" => match self.value(s) {
                    Some(family @ ("inet" | "inet6")) if (family == "inet6") != family_v6 => {
                        forwards_elsewhere = true;
                        self.problem(
                            s,
                            format!(
                                "ip_family {family} does not match the service address \
                                     {}; the service is not imported",
                                service.address
                            ),
                        );
                    }
                    Some("inet" | "inet6") => {}
                    Some(other) => {
                        self.problem(s, format!("ip_family {other:?} is not inet or inet6"));
                    }
                    None => {}
                },
                "sh-port" | "sh-fallback" | "mh-port" | "mh-fallback" => {
                    if self.flag(s).is_some() {
                        sched_flags.push(s);
                    }
                }
                _ if self.timing(s, &mut service.timing) => {}
                "quorum" => match self.count(s) {
                    Some(0) => self.problem(
                        s,
                        "quorum must be at least 1 (keepalived sets 0 to 1; write 1)",
                    ),
                    quorum => service.quorum = quorum,
                },
                "hysteresis" => service.hysteresis = self.count(s),
                "quorum_up" => service.quorum_up = self.command(s),
                "quorum_down" => service.quorum_down = self.command(s),
                "omega" => service.omega = self.flag(s),
                "ha_suspend" => self.problem(
                    s,
                    "ha_suspend is not supported by lvs (it checks real servers whether or not \
                     the VIP is up)",
                ),
                "virtualhost" => service.virtualhost = self.text(s),
                "sorry_server" => {
                    service.sorry_server = self.endpoint(s).map(|sorry| {
                        // keepalived resets a sorry server's port to the service's ("ports
                        // don't match - resetting"), as direct routing cannot change it.
                        if sorry.port != port {
                            self.note(
                                s,
                                format!(
                                    "sorry_server port {} is the service port {port}, as \
                                     keepalived resets it",
                                    sorry.port
                                ),
                            );
                        }
                        Endpoint { port, ..sorry }
                    });
                }
                "sorry_server_inhibit" => {
                    self.problem(s, "sorry_server_inhibit is not supported by lvs");
                }
                "inhibit_on_failure" => service.inhibit_on_failure = self.boolean(s),
                "real_server" => {
                    if let Some(server) = self.real_server(s, port) {
                        if service
                            .real_server
                            .iter()
                            .any(|rs| rs.address == server.address)
                        {
                            self.problem(
                                s,
                                "this real server is listed twice; the second is not imported",
                            );
                        } else {
                            service.real_server.push(server);
                        }
                    }
                }
                "ops" => self.problem(s, "one-packet scheduling (ops) is not supported by lvs"),
                "persistence_engine" => {
                    self.problem(s, "persistence engines are not supported by lvs");
                }
                "include" => {}
                other => self.problem(s, format!("{other} is not imported")),
            }
        }
        let block = at.block.as_deref().unwrap_or_default();
        if !forwards_elsewhere && !block.iter().any(|s| s.keyword == "protocol") {
            self.note(
                at,
                "no protocol: TCP is written; keepalived 2.2 reports the omission and uses UDP, \
                 so write `protocol` to say which",
            );
        }
        service.sched_flags = self.sched_flags(&sched_flags, service.lb_algo.as_deref());
        // keepalived ignores a granularity without persistence; lvs's config says it is a
        // mistake, so it is left out with a note.
        if let (Some(at), None, Some(_)) = (
            granularity_at,
            service.persistence_timeout,
            &service.persistence_granularity,
        ) {
            service.persistence_granularity = None;
            self.note(
                at,
                "persistence_granularity is not written: the service is not persistent",
            );
        }
        (!forwards_elsewhere).then_some(service)
    }

    /// keepalived's `persistence_timeout`: 0 is no persistence (keepalived 2 reports it
    /// invalid and runs without persistence), otherwise a timeout lvs can hold.
    fn persistence_timeout(&mut self, at: &Statement) -> Option<u32> {
        match self.number(at)? {
            0 => {
                self.note(
                    at,
                    "persistence_timeout 0 is no persistence, lvs's default; not written",
                );
                None
            }
            seconds => match Timeout::new(i64::from(seconds)) {
                Ok(timeout) => Some(timeout.get()),
                Err(error) => {
                    self.problem(at, format!("persistence_timeout: {error}"));
                    None
                }
            },
        }
    }

    fn scheduler(&mut self, at: &Statement) -> Option<String> {
        let name = self.value(at)?;
        // keepalived names the schedulers as ipvsadm does, so lvs's own list decides.
        if Scheduler::ALL
            .iter()
            .any(|scheduler| scheduler.name() == name)
        {
            Some(name.to_owned())
        } else {
            self.problem(
                at,
                format!(
                    "scheduler {name} is not supported by lvs (it has {}); lvs's default applies",
                    Scheduler::ALL.map(Scheduler::name).join(" ")
                ),
            );
            None
        }
    }

    /// A `persistence_granularity`: a netmask for an IPv4 service, a prefix length for an
    /// IPv6 one, by the config's rule.
    fn granularity(&mut self, at: &Statement, family_v6: bool) -> Option<String> {
        let text = self.value(at)?;
        let service: IpAddr = if family_v6 {
            Ipv6Addr::UNSPECIFIED.into()
        } else {
            Ipv4Addr::UNSPECIFIED.into()
        };
        match granularity(text, service) {
            Ok(granularity) => Some(granularity.to_string()),
            Err(message) => {
                self.problem(at, message);
                None
            }
        }
    }

    fn netmask(&mut self, at: &Statement) -> Option<String> {
        let text = self.value(at)?;
        let mask = text
            .parse::<Ipv4Addr>()
            .ok()
            .and_then(|mask| Netmask::new(mask).ok());
        if mask.is_none() {
            self.problem(at, format!("{text:?} is not an IPv4 netmask"));
        }
        mask.map(|mask| mask.to_string())
    }

    /// The flags that fit the scheduler. keepalived ignores a flag of another scheduler,
    /// with a log line; the import says so.
    fn sched_flags(&mut self, flags: &[&Statement], scheduler: Option<&str>) -> Vec<String> {
        let mut kept = Vec::new();
        for flag in flags {
            // The flags are named after their scheduler: "sh-port" needs "sh".
            let needs = &flag.keyword[..2];
            if scheduler == Some(needs) {
                kept.push(flag.keyword.clone());
            } else {
                self.problem(
                    flag,
                    format!("{} only applies to the {needs} scheduler", flag.keyword),
                );
            }
        }
        kept
    }

    fn real_server(&mut self, at: &Statement, service_port: u16) -> Option<RealServer> {
        let Endpoint { address, port } = self.endpoint(at)?;
        if let Err(error) = same_port("real server", service_port, i64::from(port)) {
            self.problem(at, format!("{error}; the server is not imported"));
            return None;
        }
        let mut server = RealServer {
            line: at.line,
            address,
            port,
            ..RealServer::default()
        };
        let mut lthreshold_at: Option<&Statement> = None;
        for s in at.block.as_deref().unwrap_or_default() {
            match s.keyword.as_str() {
                "weight" => server.weight = self.weight(s),
                "inhibit_on_failure" => server.inhibit_on_failure = self.boolean(s),
                "virtualhost" => server.virtualhost = self.text(s),
                _ if self.timing(s, &mut server.timing) => {}
                "uthreshold" => server.uthreshold = self.number(s),
                "lthreshold" => {
                    server.lthreshold = self.number(s);
                    lthreshold_at = Some(s);
                }
                "notify_up" => server.notify_up = self.command(s),
                "notify_down" => server.notify_down = self.command(s),
                "HTTP_GET" => self.set_checker(s, &mut server.http_get),
                "SSL_GET" => self.set_checker(s, &mut server.ssl_get),
                "TCP_CHECK" => self.set_checker(s, &mut server.tcp_check),
                "MISC_CHECK" => self.set_checker(s, &mut server.misc_check),
                "UDP_CHECK" => self.set_checker(s, &mut server.udp_check),
                "DNS_CHECK" => self.set_checker(s, &mut server.dns_check),
                "PING_CHECK" => self.set_checker(s, &mut server.ping_check),
                checker if UNSUPPORTED_CHECKERS.contains(&checker) => {
                    self.problem(s, format!("{checker} is not supported by lvs"));
                }
                "include" => {}
                other => self.problem(s, format!("{other} is not imported")),
            }
        }
        if let (Some(at), Some(lower)) = (lthreshold_at, server.lthreshold) {
            if let Err(error) = Thresholds::new(server.uthreshold.unwrap_or(0), lower) {
                self.problem(at, error.to_string());
                server.lthreshold = None;
            }
        }
        Some(server)
    }

    fn weight(&mut self, at: &Statement) -> Option<u32> {
        match Weight::try_from(self.number(at)?) {
            Ok(weight) => Some(weight.get()),
            Err(error) => {
                self.problem(at, error.to_string());
                None
            }
        }
    }

    fn set_checker(&mut self, at: &Statement, slot: &mut Option<Checker>) {
        if slot.is_some() {
            self.problem(
                at,
                format!(
                    "a second {} for one real server is not imported",
                    at.keyword
                ),
            );
            return;
        }
        *slot = Some(self.checker(at));
    }

    fn checker(&mut self, at: &Statement) -> Checker {
        let http = matches!(at.keyword.as_str(), "HTTP_GET" | "SSL_GET");
        let misc = at.keyword == "MISC_CHECK";
        let ping = at.keyword == "PING_CHECK";
        let mut checker = Checker::default();
        for s in at.block.as_deref().unwrap_or_default() {
            match s.keyword.as_str() {
                "connect_ip" if !misc => {
                    checker.connect_ip = self.checker_address(s);
                }
                // keepalived takes it in PING_CHECK, and does nothing with it.
                "connect_port" if ping => {
                    self.note(
                        s,
                        "connect_port in PING_CHECK is left out: ICMP has no port",
                    );
                }
                "connect_port" if !misc => {
                    checker.connect_port = self.value(s).and_then(|port| self.port(s, port));
                }
                "bindto" if !misc => {
                    checker.bindto = self.checker_address(s);
                }
                // A program has no connection: misc_timeout bounds it.
                "connect_timeout" if misc => {
                    self.problem(s, "connect_timeout in MISC_CHECK is not imported (misc_timeout bounds the program)");
                }
                _ if self.timing(s, &mut checker.timing) => {}
                "virtualhost" if http => checker.virtualhost = self.text(s),
                "http_protocol" if http => checker.http_protocol = self.http_protocol(s),
                "url" if http => checker.url.push(self.url(s)),
                "misc_path" if misc => checker.misc_path = self.command(s),
                "misc_timeout" if misc => checker.misc_timeout = self.number(s),
                "misc_dynamic" if misc => checker.misc_dynamic = self.flag(s),
                "user" if misc => checker.user = self.user(s),
                _ if self.datagram_key(s, &at.keyword, &mut checker) => {}
                other => self.problem(s, format!("{other} in {} is not imported", at.keyword)),
            }
        }
        if at.keyword == "UDP_CHECK" {
            self.reply_lengths(at, &mut checker);
        }
        // keepalived disables an HTTP_GET or SSL_GET without a url; lvs's config refuses one.
        if http && checker.url.is_empty() {
            self.problem(
                at,
                format!(
                    "{} has no url: keepalived does not run it, and lvs needs at least one",
                    at.keyword
                ),
            );
        }
        checker
    }

    /// MISC_CHECK's `user USERNAME [[:]GROUPNAME]`, as lvs writes it: "user" or "user:group".
    /// The names are not looked up here: this machine may not be the director.
    fn user(&mut self, at: &Statement) -> Option<String> {
        match run_as::parse_spec(&at.args.join(" ")) {
            Ok((user, None)) => Some(user.to_owned()),
            Ok((user, Some(group))) => Some(format!("{user}:{group}")),
            Err(_) => {
                self.problem(at, "user takes a user name and optionally a group name");
                None
            }
        }
    }

    /// `http_protocol`, in lvs's spelling (keepalived takes "1.0c" for "1.0C").
    fn http_protocol(&mut self, at: &Statement) -> Option<String> {
        let text = self.value(at)?;
        if HttpVersion::parse(text).is_none() {
            self.problem(
                at,
                format!("http_protocol {text} is not one of 1.0, 1.0C, 1.0K and 1.1"),
            );
            return None;
        }
        Some(text.to_ascii_uppercase())
    }

    fn url(&mut self, at: &Statement) -> Url {
        let mut url = Url {
            line: at.line,
            ..Url::default()
        };
        for s in at.block.as_deref().unwrap_or_default() {
            match s.keyword.as_str() {
                "path" => {
                    url.path = self.text(s);
                    if let Some(path) = url.path.as_deref().filter(|p| !health::is_request_path(p))
                    {
                        self.problem(
                            s,
                            format!("{path:?} is not a request path (it starts with '/')"),
                        );
                    }
                }
                "digest" => url.digest = self.text(s),
                "virtualhost" => url.virtualhost = self.text(s),
                "regex" => url.regex = self.text(s),
                "regex_no_match" => url.regex_no_match = self.flag(s),
                "regex_options" => {
                    if s.args.is_empty() {
                        self.problem(s, "regex_options takes one or more options");
                    }
                    url.regex_options = s.args.clone();
                }
                "regex_min_offset" => url.regex_min_offset = self.number(s),
                "regex_max_offset" => url.regex_max_offset = self.number(s),
                "regex_stack" => self.problem(
                    s,
                    "regex_stack in url is not imported: lvs's regex engine does not backtrack \
                     and needs no stack",
                ),
                "status_code" => {
                    url.status_code = self.value(s).and_then(|code| {
                        match code.parse().ok().and_then(|n| StatusCode::new(n).ok()) {
                            Some(code) => Some(code.get()),
                            None => {
                                self.problem(s, format!("{code:?} is not an HTTP status code"));
                                None
                            }
                        }
                    });
                }
                other => self.problem(s, format!("{other} in url is not imported")),
            }
        }
        // keepalived drops a url without a path ("Url path missing"); lvs's config needs one.
        if url.path.is_none()
            && !at
                .block
                .as_deref()
                .unwrap_or_default()
                .iter()
                .any(|s| s.keyword == "path")
        {
            self.problem(
                at,
                "url has no path: keepalived ignores it, and lvs needs one",
            );
        }
        url
    }
}
