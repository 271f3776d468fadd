//! Errors of the command line, worded as ipvsadm words them (lvs's own refusals excepted).

use std::net::IpAddr;

/// A command line (or restore line) that cannot be carried out. The messages are ipvsadm's,
/// so scripts and operators that know them keep recognising them.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum UsageError {
    #[error("Try `lvsadm -h' or 'lvsadm --help' for more information.")]
    TryHelp,
    #[error("multiple commands specified")]
    MultipleCommands,
    #[error("multiple '{0}' options specified")]
    MultipleOptions(&'static str),
    #[error("You need to supply the '{option}' option for the '{command}' command")]
    MissingOption {
        option: &'static str,
        command: &'static str,
    },
    #[error("Illegal '{option}' option with the '{command}' command")]
    IllegalOption {
        option: &'static str,
        command: &'static str,
    },
    #[error("The option '{option}' conflicts with the '{other}' option in the '{command}' command")]
    ConflictingOptions {
        option: &'static str,
        other: &'static str,
        command: &'static str,
    },
    #[error("options conflicts in the list command")]
    ListConflict,
    #[error("illegal virtual server address[:port] specified")]
    IllegalService,
    #[error("illegal real server address[:port] specified")]
    IllegalRealServer,
    #[error("illegal virtual server persistent mask specified")]
    IllegalNetmask,
    #[error("illegal weight specified")]
    IllegalWeight,
    #[error("illegal u_threshold specified")]
    IllegalUThreshold,
    #[error("illegal l_threshold specified")]
    IllegalLThreshold,
    #[error("invalid timeout value `{0}' specified")]
    InvalidTimeout(String),
    #[error("--set option requires 3 timeout values")]
    SetNeedsThreeValues,
    #[error("unexpected argument {0}")]
    UnexpectedArgument(String),
    #[error("Zero port specified for non-persistent service")]
    ZeroPort,
    #[error("invalid scheduler flag `{0}'")]
    InvalidSchedFlag(String),
    #[error("incompatible scheduler flag `{0}'")]
    IncompatibleSchedFlag(String),
    /// ipvsadm hears this from the kernel; lvsadm knows the list and says it before asking.
    #[error("Scheduler or persistence engine not found")]
    UnknownScheduler,
    #[error("illegal start-daemon parameter specified")]
    IllegalStartDaemon,
    /// ipvsadm says "illegal start_daemon specified" here, by a slip; lvsadm names the
    /// command that was given.
    #[error("illegal stop-daemon parameter specified")]
    IllegalStopDaemon,
    #[error("illegal syncid specified")]
    IllegalSyncId,
    #[error("invalid IPv4 mcast-group `{0}'")]
    InvalidMcastGroup(String),
    #[error("illegal mcast-port specified")]
    IllegalMcastPort,
    #[error("illegal mcast-ttl specified")]
    IllegalMcastTtl,
    #[error("illegal sync-maxlen specified (lvs takes 80 to 65507 bytes)")]
    IllegalSyncMaxLen,

    // lvs's own refusals: things ipvsadm does that lvs does not.
    #[error("scheduler `{0}' is not supported by lvs (it has rr wrr lc wlc sed nq sh dh mh)")]
    UnsupportedScheduler(String),
    #[error("{0}")]
    Unsupported(&'static str),
    #[error(
        "scheduler flag `{flag}' has no meaning for scheduler {scheduler}: lvs takes \
         sh-fallback, sh-port, mh-fallback and mh-port"
    )]
    MeaninglessSchedFlag {
        flag: String,
        scheduler: crate::logic::api::Scheduler,
    },
    #[error("an IPv6 address goes in brackets: [2001:db8::10]:80")]
    Unbracketed,
    #[error("{address} cannot be a {role} address: it is not a unicast address")]
    NotUnicast { address: IpAddr, role: &'static str },
    #[error(
        "the real server {server} and the virtual service {service} are of different address \
         families: direct routing forwards a frame as it came"
    )]
    MixedFamilies { service: IpAddr, server: IpAddr },
    #[error("-6 names an IPv6 service, and {0} is IPv4")]
    Ipv6FlagWithIpv4(IpAddr),
    #[error("a persistent service on every port (port 0) is not supported by lvs")]
    AllPorts,
    #[error("the persistence netmask (-M) needs a persistent service (-p)")]
    NetmaskWithoutPersistence,
    #[error("illegal mcast-interface `{0}': not an interface name")]
    IllegalMcastInterface(String),
    /// Holds `GroupError::Ipv6`'s words.
    #[error("illegal mcast-group: {0}")]
    Ipv6McastGroup(String),
}
