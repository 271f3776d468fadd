//! From the raw command line to a typed [`Command`], checked the way ipvsadm checks it: one
//! command, each option at most once, ipvsadm's table of which options each command takes,
//! then the values. Errors carry ipvsadm's own wording.

use std::net::IpAddr;

use super::{
    UsageError,
    args::Args,
    names::Resolver,
    values::{self, AddressError},
};
use crate::base::values::{Port, UnicastAddress, Weight};
use crate::logic::api::{
    Change, ForwardMethod, Granularity, Persistence, Protocol, RealServerConfig, ServiceConfig,
    ServiceKey, Timeouts,
};
use crate::logic::sync::{SyncDaemon, SyncRole};
use daemon::{SyncOptions, role};

mod daemon;

/// What lvsadm was asked to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    /// A change to the rule table (`-A -E -D -C -a -e -d -Z --set`).
    Change(Change),
    /// `-L`/`-l`.
    List(List),
    /// `-S`.
    Save { numeric: bool },
    /// `-R`: rules follow on standard input.
    Restore,
    /// `--reload` (lvsadm's own): the daemon reads its config file again.
    Reload,
    /// `--start-daemon master|backup` with its options, ipvsadm's defaults for the rest.
    StartDaemon(SyncDaemon),
    /// `--stop-daemon master|backup`.
    StopDaemon(SyncRole),
    /// `-L --daemon`: the sync daemons, one line each (as JSON with `--json`). Addresses are
    /// numbers already, so `-n` changes nothing and is taken, as ipvsadm takes it.
    ListDaemons { json: bool },
}

/// A listing: what to show and how.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct List {
    pub target: ListTarget,
    pub format: ListFormat,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ListTarget {
    /// Every service, with the version header.
    All,
    /// One service (`-L -t ...`), without the header.
    Service(ServiceKey),
    /// The connection table (`-c`).
    Connections,
    /// The timeouts (`--timeout`).
    Timeouts,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ListFormat {
    /// Addresses and ports as numbers (`-n`) rather than names.
    pub numeric: bool,
    pub layout: Layout,
    /// Exact counters (`--exact`) rather than K, M, G.
    pub exact: bool,
    /// Sorted by protocol, address, port (not `--nosort`).
    pub sort: bool,
    /// JSON instead of ipvsadm's layout (`--json`).
    pub json: bool,
}

impl Default for ListFormat {
    fn default() -> Self {
        ListFormat {
            numeric: false,
            layout: Layout::Default,
            exact: false,
            sort: true,
            json: false,
        }
    }
}

/// The columns of a service listing. When several are asked for, ipvsadm shows the first of
/// stats, rate, thresholds, persistent-conn.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Layout {
    #[default]
    Default,
    Stats,
    Rate,
    Thresholds,
    PersistentConn,
}

/// ipvsadm's commands, with the names its messages use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    AddService,
    EditService,
    DeleteService,
    Flush,
    List,
    AddServer,
    DeleteServer,
    EditServer,
    Set,
    Restore,
    Save,
    Zero,
    Reload,
    StartDaemon,
    StopDaemon,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::AddService => "add-service",
            Kind::EditService => "edit-service",
            Kind::DeleteService => "delete-service",
            Kind::Flush => "flush",
            Kind::List => "list",
            Kind::AddServer => "add-server",
            Kind::DeleteServer => "delete-server",
            Kind::EditServer => "edit-server",
            Kind::Set => "set",
            Kind::Restore => "restore",
            Kind::Save => "save",
            Kind::Zero => "zero",
            Kind::Reload => "reload",
            Kind::StartDaemon => "start-daemon",
            Kind::StopDaemon => "stop-daemon",
        }
    }

    /// ipvsadm's table of legal options for this command, one character per entry of
    /// [`OPTION_NAMES`]: `+` required, `x` illegal, `1` at most one of the `1`s, ` ` optional.
    /// The last column, `json`, is lvsadm's. Where ipvsadm takes `--syncid` and does nothing
    /// with it (with `-L` and `--stop-daemon`), lvsadm refuses it, so that no option is
    /// silently ignored.
    fn rules(self) -> &'static [u8; OPTION_COUNT] {
        //            n c svc s p M r fwd w x y mc tot dmn st rt thr pc srt sid ex b grp port ttl size json
        match self {
            Kind::AddService | Kind::EditService => b"xx+   xxxxxxxxxxxxxxx xxxxx",
            Kind::DeleteService => b"xx+xxxxxxxxxxxxxxxxxxxxxxxx",
            Kind::List => b" 11xxxxxxxxx11     x xxxxx ",
            Kind::AddServer | Kind::EditServer => b"xx+xxx+    xxxxxxxxxxxxxxxx",
            Kind::DeleteServer => b"xx+xxx+xxxxxxxxxxxxxxxxxxxx",
            Kind::Save => b" xxxxxxxxxxxxxxxxxxxxxxxxxx",
            Kind::Zero => b"xx xxxxxxxxxxxxxxxxxxxxxxxx",
            Kind::StartDaemon => b"xxxxxxxxxxx xxxxxxx xx    x",
            Kind::Flush | Kind::Set | Kind::Restore | Kind::Reload | Kind::StopDaemon => {
                b"xxxxxxxxxxxxxxxxxxxxxxxxxxx"
            }
        }
    }
}

const OPTION_COUNT: usize = 27;

/// The options in ipvsadm's order, with the names its messages use.
const OPTION_NAMES: [&str; OPTION_COUNT] = [
    "numeric",
    "connection",
    "service-address",
    "scheduler",
    "persistent",
    "netmask",
    "real-server",
    "forwarding-method",
    "weight",
    "u-threshold",
    "l-threshold",
    "mcast-interface",
    "timeout",
    "daemon",
    "stats",
    "rate",
    "thresholds",
    "persistent-conn",
    "nosort",
    "syncid",
    "exact",
    "sched-flags",
    "mcast-group",
    "mcast-port",
    "mcast-ttl",
    "sync-maxlen",
    "json",
];

// Indices into OPTION_NAMES for the options the code looks at by name.
const CONNECTION: usize = 1;
const TIMEOUT: usize = 12;
const DAEMON: usize = 13;
const STATS: usize = 14;
const RATE: usize = 15;
const THRESHOLDS: usize = 16;
const PERSISTENT_CONN: usize = 17;
const NOSORT: usize = 18;
const EXACT: usize = 20;

/// Which options were given: one bit per entry of [`OPTION_NAMES`].
#[derive(Clone, Copy, Debug, Default)]
struct Given(u32);

impl Given {
    fn has(self, index: usize) -> bool {
        self.0 & (1 << index) != 0
    }
}

impl Command {
    /// Checks and types a command line. `names` resolves host and service names in
    /// addresses.
    pub fn from_args(args: &Args, names: &dyn Resolver) -> Result<Command, UsageError> {
        reject_unsupported(args)?;
        let given = given_options(args)?;
        let Some(kind) = command_kind(args)? else {
            // Only `lvsadm` (or `lvsadm --json`) lists without a command, as `ipvsadm` alone.
            if given.0 & !(1 << (OPTION_COUNT - 1)) != 0 || !args.arguments.is_empty() {
                return Err(UsageError::TryHelp);
            }
            return Ok(Command::List(List {
                target: ListTarget::All,
                format: ListFormat {
                    json: args.json > 0,
                    ..ListFormat::default()
                },
            }));
        };
        let values = Values::parse(args, kind, names)?;
        check_rules(kind, given)?;
        build(kind, given, &values, args, names)
    }
}

/// Options ipvsadm has and lvs does not: a clear refusal rather than a silent difference.
fn reject_unsupported(args: &Args) -> Result<(), UsageError> {
    let refusals: [(bool, &'static str); 7] = [
        (
            !args.fwmark_service.is_empty(),
            "firewall-mark services (-f) are not supported by lvs",
        ),
        (
            args.ipip > 0,
            "tunnelling (-i) is not supported: lvs forwards by direct routing (-g)",
        ),
        (
            args.masquerading > 0,
            "masquerading (-m) is not supported: lvs forwards by direct routing (-g)",
        ),
        (
            !args.sctp_service.is_empty(),
            "SCTP services (--sctp-service) are not supported by lvs",
        ),
        (
            args.ops > 0,
            "one-packet scheduling (-o) is not supported by lvs",
        ),
        (
            !args.persistence_engine.is_empty(),
            "persistence engines (--pe) are not supported by lvs",
        ),
        (
            !args.tun_type.is_empty()
                || !args.tun_port.is_empty()
                || args.tun_nocsum + args.tun_csum + args.tun_remcsum + args.tun_info > 0,
            "tunnel options (--tun-*) are not supported: lvs forwards by direct routing (-g)",
        ),
    ];
    match refusals.into_iter().find(|(given, _)| *given) {
        Some((_, message)) => Err(UsageError::Unsupported(message)),
        None => Ok(()),
    }
}

fn command_kind(args: &Args) -> Result<Option<Kind>, UsageError> {
    // ipvsadm counts a repeated --start-daemon as a second command, as it does -A -A.
    let daemon_count = |list: &[String]| u8::try_from(list.len()).unwrap_or(u8::MAX);
    let counts = [
        (args.add_service, Kind::AddService),
        (args.edit_service, Kind::EditService),
        (args.delete_service, Kind::DeleteService),
        (args.clear, Kind::Flush),
        (args.list, Kind::List),
        (args.add_server, Kind::AddServer),
        (args.delete_server, Kind::DeleteServer),
        (args.edit_server, Kind::EditServer),
        (args.set, Kind::Set),
        (args.restore, Kind::Restore),
        (args.save, Kind::Save),
        (args.zero, Kind::Zero),
        (args.reload, Kind::Reload),
        (daemon_count(&args.start_daemon), Kind::StartDaemon),
        (daemon_count(&args.stop_daemon), Kind::StopDaemon),
    ];
    let total: u32 = counts.iter().map(|(n, _)| u32::from(*n)).sum();
    if total > 1 {
        return Err(UsageError::MultipleCommands);
    }
    Ok(counts.into_iter().find(|(n, _)| *n > 0).map(|(_, k)| k))
}

fn given_options(args: &Args) -> Result<Given, UsageError> {
    let counts: [usize; OPTION_COUNT] = [
        args.numeric.into(),
        args.connection.into(),
        args.tcp_service.len() + args.udp_service.len(),
        args.scheduler.len(),
        args.persistent.len(),
        args.netmask.len(),
        args.real_server.len(),
        args.gatewaying.into(),
        args.weight.len(),
        args.u_threshold.len(),
        args.l_threshold.len(),
        args.mcast_interface.len(),
        args.timeout.into(),
        args.daemon.into(),
        args.stats.into(),
        args.rate.into(),
        args.thresholds.into(),
        args.persistent_conn.into(),
        args.nosort.into(),
        args.syncid.len(),
        args.exact.into(),
        args.sched_flags.len(),
        args.mcast_group.len(),
        args.mcast_port.len(),
        args.mcast_ttl.len(),
        args.sync_maxlen.len(),
        args.json.into(),
    ];
    let mut given = Given::default();
    for (index, count) in counts.into_iter().enumerate() {
        if count > 1 {
            return Err(UsageError::MultipleOptions(OPTION_NAMES[index]));
        }
        if count == 1 {
            given.0 |= 1 << index;
        }
    }
    Ok(given)
}

/// ipvsadm's `generic_opt_check`: the first offending option, in table order, is reported.
fn check_rules(kind: Kind, given: Given) -> Result<(), UsageError> {
    let mut exclusive: Option<usize> = None;
    for (index, rule) in kind.rules().iter().enumerate() {
        let option = OPTION_NAMES[index];
        match (given.has(index), rule) {
            (false, b'+') => {
                return Err(UsageError::MissingOption {
                    option,
                    command: kind.name(),
                });
            }
            (true, b'x') => {
                return Err(UsageError::IllegalOption {
                    option,
                    command: kind.name(),
                });
            }
            (true, b'1') => match exclusive {
                None => exclusive = Some(index),
                Some(first) => {
                    return Err(UsageError::ConflictingOptions {
                        option,
                        other: OPTION_NAMES[first],
                        command: kind.name(),
                    });
                }
            },
            _ => {}
        }
    }
    Ok(())
}

/// The option values, parsed; `None` where the option was not given.
#[derive(Default)]
struct Values {
    service: Option<(Protocol, values::AddressPort)>,
    scheduler: Option<String>,
    persistence_timeout: Option<u32>,
    /// `-M` as given: a netmask or a prefix length, depending on the service's family.
    netmask: Option<String>,
    real_server: Option<values::AddressPort>,
    weight: Option<u32>,
    u_threshold: Option<u32>,
    l_threshold: Option<u32>,
    timeouts: Option<Timeouts>,
    /// The role of `--start-daemon` or `--stop-daemon`.
    role: Option<SyncRole>,
    sync: SyncOptions,
}

impl Values {
    fn parse(args: &Args, kind: Kind, names: &dyn Resolver) -> Result<Values, UsageError> {
        // ipvsadm reads the command, and so the daemon's role, before any option.
        let mut values = Values {
            role: role(args)?,
            sync: SyncOptions::parse(args)?,
            ..Values::default()
        };
        let service = args
            .tcp_service
            .first()
            .map(|s| (Protocol::Tcp, s))
            .or_else(|| args.udp_service.first().map(|s| (Protocol::Udp, s)));
        if let Some((protocol, text)) = service {
            let address = values::address_port(text, protocol, names).map_err(|e| match e {
                AddressError::Illegal => UsageError::IllegalService,
                AddressError::Unbracketed => UsageError::Unbracketed,
            })?;
            values.service = Some((protocol, address));
        }
        values.scheduler = args.scheduler.first().cloned();
        if let Some(text) = args.persistent.first() {
            values.persistence_timeout = Some(values::timeout(text, 1)?);
        }
        values.netmask = args.netmask.first().cloned();
        if let Some(text) = args.real_server.first() {
            let protocol = service.map_or(Protocol::Tcp, |(p, _)| p);
            let address = values::address_port(text, protocol, names).map_err(|e| match e {
                AddressError::Illegal => UsageError::IllegalRealServer,
                AddressError::Unbracketed => UsageError::Unbracketed,
            })?;
            values.real_server = Some(address);
        }
        let limited = |list: &[String], max: i64, error: UsageError| {
            list.first()
                .map(|text| values::number(text, 0, max).ok_or(error))
                .transpose()
        };
        values.weight = args
            .weight
            .first()
            .map(|text| {
                values::integer(text)
                    .and_then(|n| Weight::new(n).ok())
                    .map(Weight::get)
                    .ok_or(UsageError::IllegalWeight)
            })
            .transpose()?;
        // ipvsadm reads the thresholds as C ints.
        let int_max = i64::from(i32::MAX);
        values.u_threshold = limited(&args.u_threshold, int_max, UsageError::IllegalUThreshold)?;
        values.l_threshold = limited(&args.l_threshold, int_max, UsageError::IllegalLThreshold)?;
        let mut arguments = args.arguments.iter();
        if kind == Kind::Set {
            let (Some(tcp), Some(tcp_fin), Some(udp)) =
                (arguments.next(), arguments.next(), arguments.next())
            else {
                return Err(UsageError::SetNeedsThreeValues);
            };
            values.timeouts = Some(Timeouts {
                tcp: values::timeout(tcp, 0)?,
                tcp_fin: values::timeout(tcp_fin, 0)?,
                udp: values::timeout(udp, 0)?,
            });
        }
        if let Some(extra) = arguments.next() {
            return Err(UsageError::UnexpectedArgument(extra.clone()));
        }
        Ok(values)
    }

    fn service_key(&self) -> Option<ServiceKey> {
        self.service.map(|(protocol, at)| ServiceKey {
            protocol,
            address: at.address,
            port: at.port.unwrap_or(0),
        })
    }
}

fn build(
    kind: Kind,
    given: Given,
    values: &Values,
    args: &Args,
    names: &dyn Resolver,
) -> Result<Command, UsageError> {
    // ipvsadm's -6 says that a firewall-mark service is IPv6; lvs has no such services, and
    // an address says its own family, so -6 is taken beside an IPv6 service and refused
    // beside an IPv4 one rather than ignored.
    if args.ipv6 > 0 {
        match values.service_key() {
            Some(service) if service.address.is_ipv4() => {
                return Err(UsageError::Ipv6FlagWithIpv4(service.address));
            }
            Some(_) => {}
            None => {
                return Err(UsageError::Unsupported(
                    "-6 applies to firewall-mark services (-f), which lvs does not support",
                ));
            }
        }
    }
    if let (Some(service), Some(server)) = (values.service_key(), values.real_server) {
        if service.address.is_ipv4() != server.address.is_ipv4() {
            return Err(UsageError::MixedFamilies {
                service: service.address,
                server: server.address,
            });
        }
    }
    // The table guarantees a service where the command needs one.
    let service = || values.service_key().ok_or(UsageError::TryHelp);
    let change = match kind {
        Kind::AddService => {
            let service = service()?;
            unicast(service.address, "virtual service")?;
            Change::AddService {
                config: service_config(service, values, args, names)?,
                service,
            }
        }
        Kind::EditService => {
            let service = service()?;
            Change::EditService {
                config: service_config(service, values, args, names)?,
                service,
            }
        }
        Kind::DeleteService => Change::DeleteService {
            service: service()?,
        },
        Kind::Flush => Change::Clear {},
        Kind::AddServer | Kind::EditServer => {
            let server = real_server(values)?;
            let service = service()?;
            if kind == Kind::AddServer {
                Change::AddServer { service, server }
            } else {
                Change::EditServer { service, server }
            }
        }
        Kind::DeleteServer => Change::DeleteServer {
            service: service()?,
            address: values.real_server.ok_or(UsageError::TryHelp)?.address,
        },
        Kind::Zero => Change::Zero {
            service: values.service_key(),
        },
        Kind::Set => Change::SetTimeouts {
            timeouts: values.timeouts.ok_or(UsageError::SetNeedsThreeValues)?,
        },
        Kind::List if given.has(DAEMON) => return list_daemons(given, args),
        Kind::List => return list(given, values, args).map(Command::List),
        Kind::Save => {
            return Ok(Command::Save {
                numeric: args.numeric > 0,
            });
        }
        Kind::Restore => return Ok(Command::Restore),
        Kind::Reload => return Ok(Command::Reload),
        Kind::StartDaemon => {
            let role = values.role.ok_or(UsageError::TryHelp)?;
            return Ok(Command::StartDaemon(values.sync.daemon(role)));
        }
        Kind::StopDaemon => {
            return Ok(Command::StopDaemon(values.role.ok_or(UsageError::TryHelp)?));
        }
    };
    Ok(Command::Change(change))
}

/// The settings of `-A`/`-E`, with ipvsadm's defaults for what is not given.
fn service_config(
    service: ServiceKey,
    values: &Values,
    args: &Args,
    names: &dyn Resolver,
) -> Result<ServiceConfig, UsageError> {
    let persistence = match (values.persistence_timeout, &values.netmask) {
        (Some(timeout), netmask) => Some(Persistence {
            timeout,
            netmask: match netmask {
                Some(text) => values::netmask(text, service.address, names)?,
                None => Granularity::host(service.address),
            },
        }),
        (None, Some(_)) => return Err(UsageError::NetmaskWithoutPersistence),
        (None, None) => None,
    };
    // Port 0 is ipvsadm's "every port" of a persistent service, which lvs does not serve.
    if Port::new(i64::from(service.port)).is_err() {
        return Err(match persistence {
            None => UsageError::ZeroPort,
            Some(_) => UsageError::AllPorts,
        });
    }
    let scheduler = match &values.scheduler {
        Some(name) => values::scheduler(name)?,
        None => crate::logic::api::Scheduler::DEFAULT,
    };
    let sched_flags = match args.sched_flags.first() {
        Some(text) => values::sched_flags(text, scheduler)?,
        None => Default::default(),
    };
    Ok(ServiceConfig {
        scheduler,
        sched_flags,
        persistence,
    })
}

/// The settings of `-a`/`-e`, with ipvsadm's defaults: weight 1, no thresholds. In direct
/// routing the server's port is the service's, so a port in `-r` is ignored, as ipvsadm does.
fn real_server(values: &Values) -> Result<RealServerConfig, UsageError> {
    let address = values.real_server.ok_or(UsageError::TryHelp)?.address;
    unicast(address, "real server")?;
    Ok(RealServerConfig {
        address,
        forward: ForwardMethod::Route,
        weight: values.weight.unwrap_or(1),
        u_threshold: values.u_threshold.unwrap_or(0),
        l_threshold: values.l_threshold.unwrap_or(0),
    })
}

fn unicast(address: IpAddr, role: &'static str) -> Result<(), UsageError> {
    UnicastAddress::new(address)
        .map(drop)
        .map_err(|_| UsageError::NotUnicast { address, role })
}

/// `-L --daemon`. ipvsadm ignores the service layouts, `--exact` and `--nosort` here;
/// lvsadm refuses them, as it refuses them with `--timeout`, so that no option is silently
/// ignored.
fn list_daemons(given: Given, args: &Args) -> Result<Command, UsageError> {
    let service_formats = [STATS, RATE, THRESHOLDS, PERSISTENT_CONN, NOSORT, EXACT];
    if service_formats.into_iter().any(|index| given.has(index)) {
        return Err(UsageError::ListConflict);
    }
    Ok(Command::ListDaemons {
        json: args.json > 0,
    })
}

fn list(given: Given, values: &Values, args: &Args) -> Result<List, UsageError> {
    let layouts = given.has(STATS) || given.has(RATE) || given.has(THRESHOLDS);
    if ((given.has(CONNECTION) || given.has(TIMEOUT)) && layouts)
        || (given.has(TIMEOUT) && given.has(PERSISTENT_CONN))
    {
        return Err(UsageError::ListConflict);
    }
    let target = if given.has(CONNECTION) {
        ListTarget::Connections
    } else if let Some(service) = values.service_key() {
        ListTarget::Service(service)
    } else if given.has(TIMEOUT) {
        ListTarget::Timeouts
    } else {
        ListTarget::All
    };
    let layout = [
        (STATS, Layout::Stats),
        (RATE, Layout::Rate),
        (THRESHOLDS, Layout::Thresholds),
        (PERSISTENT_CONN, Layout::PersistentConn),
    ]
    .into_iter()
    .find(|(index, _)| given.has(*index))
    .map_or(Layout::Default, |(_, layout)| layout);
    Ok(List {
        target,
        format: ListFormat {
            numeric: args.numeric > 0,
            layout,
            exact: args.exact > 0,
            sort: args.nosort == 0,
            json: args.json > 0,
        },
    })
}

#[cfg(test)]
mod tests;
