//! The command line as clap reads it: every ipvsadm flag with its short and long name, kept
//! raw (strings and counts) so that `command` can check them the way ipvsadm does and say
//! what ipvsadm says. The man page and shell completions are generated from this too.

use std::path::PathBuf;

use clap::{ArgAction, Parser};

use crate::logic::config::DEFAULT_CONTROL_SOCKET;

const COMMANDS: &str = "Commands";
const SERVICE: &str = "Virtual service";
const OPTIONS: &str = "Options";
const LIST: &str = "List options";
const LVSADM: &str = "lvsadm only";
const SYNC: &str = "Connection sync daemon options";

/// Every flag, as given. Commands and flags are counts and values are lists, so that a flag
/// given twice is reported as ipvsadm reports it rather than by clap.
#[derive(Parser, Debug, Default, Clone)]
#[command(
    name = "lvsadm",
    version,
    disable_version_flag = true,
    about = "Administer the lvs director's virtual services, the ipvsadm way",
    long_about = "lvsadm takes ipvsadm's commands and options and prints ipvsadm's layouts, \
                  so existing habits and scripts keep working against the lvs daemon. \
                  Without arguments it lists the table.\n\n\
                  lvs forwards by direct routing only, to IPv4 services: -i, -m, -f and -6 \
                  give a \"not supported\" error.",
    after_help = "A service-address is host[:port]; host is an address or a name, port a \
                  number or a service name."
)]
pub struct Args {
    // Commands.
    /// Add a virtual service.
    #[arg(short = 'A', long = "add-service", action = ArgAction::Count, help_heading = COMMANDS)]
    pub add_service: u8,
    /// Edit a virtual service (every setting not given returns to its default).
    #[arg(short = 'E', long = "edit-service", action = ArgAction::Count, help_heading = COMMANDS)]
    pub edit_service: u8,
    /// Delete a virtual service and its real servers.
    #[arg(short = 'D', long = "delete-service", action = ArgAction::Count, help_heading = COMMANDS)]
    pub delete_service: u8,
    /// Clear the whole table.
    #[arg(short = 'C', long = "clear", action = ArgAction::Count, help_heading = COMMANDS)]
    pub clear: u8,
    /// Restore rules from standard input (what -S writes); all lines or none.
    #[arg(short = 'R', long = "restore", action = ArgAction::Count, help_heading = COMMANDS)]
    pub restore: u8,
    /// Save rules to standard output, in a form -R restores.
    #[arg(short = 'S', long = "save", action = ArgAction::Count, help_heading = COMMANDS)]
    pub save: u8,
    /// Add a real server to a virtual service.
    #[arg(short = 'a', long = "add-server", action = ArgAction::Count, help_heading = COMMANDS)]
    pub add_server: u8,
    /// Edit a real server (every setting not given returns to its default).
    #[arg(short = 'e', long = "edit-server", action = ArgAction::Count, help_heading = COMMANDS)]
    pub edit_server: u8,
    /// Delete a real server.
    #[arg(short = 'd', long = "delete-server", action = ArgAction::Count, help_heading = COMMANDS)]
    pub delete_server: u8,
    /// List the table, one service, the connections (-c) or the timeouts (--timeout).
    #[arg(short = 'L', long = "list", short_alias = 'l', action = ArgAction::Count, help_heading = COMMANDS)]
    pub list: u8,
    /// Zero the counters of one service, or of all.
    #[arg(short = 'Z', long = "zero", action = ArgAction::Count, help_heading = COMMANDS)]
    pub zero: u8,
    /// `--set TCP TCPFIN UDP`: set the connection timeouts in seconds (0 keeps a value).
    /// As in ipvsadm, the three values are the command's arguments.
    #[arg(long = "set", action = ArgAction::Count, help_heading = COMMANDS)]
    pub set: u8,
    /// Print the version.
    #[arg(short = 'v', long = "version", action = ArgAction::Version, help_heading = COMMANDS)]
    pub version: Option<bool>,

    // The virtual service.
    /// A TCP virtual service.
    #[arg(short = 't', long = "tcp-service", value_name = "SERVICE-ADDRESS", action = ArgAction::Append, allow_hyphen_values = true, help_heading = SERVICE)]
    pub tcp_service: Vec<String>,
    /// A UDP virtual service.
    #[arg(short = 'u', long = "udp-service", value_name = "SERVICE-ADDRESS", action = ArgAction::Append, allow_hyphen_values = true, help_heading = SERVICE)]
    pub udp_service: Vec<String>,
    /// A firewall-mark service (not supported by lvs).
    #[arg(short = 'f', long = "fwmark-service", value_name = "FWMARK", action = ArgAction::Append, allow_hyphen_values = true, help_heading = SERVICE)]
    pub fwmark_service: Vec<String>,
    /// An SCTP service (not supported by lvs).
    #[arg(long = "sctp-service", value_name = "SERVICE-ADDRESS", action = ArgAction::Append, hide = true)]
    pub sctp_service: Vec<String>,

    // Options.
    /// Scheduler: rr wrr lc wlc sed nq sh dh mh (default wlc).
    #[arg(short = 's', long = "scheduler", value_name = "SCHEDULER", action = ArgAction::Append, allow_hyphen_values = true, help_heading = OPTIONS)]
    pub scheduler: Vec<String>,
    /// Scheduler flags for sh and mh, comma-separated: sh-fallback, sh-port, mh-fallback,
    /// mh-port (or IPVS's generic flag-1 for fallback, flag-2 for port).
    #[arg(short = 'b', long = "sched-flags", value_name = "FLAGS", action = ArgAction::Append, allow_hyphen_values = true, help_heading = OPTIONS)]
    pub sched_flags: Vec<String>,
    /// Persistent service, with a timeout in seconds (default 300).
    #[arg(short = 'p', long = "persistent", value_name = "TIMEOUT", num_args = 0..=1, default_missing_value = "300", action = ArgAction::Append, help_heading = OPTIONS)]
    pub persistent: Vec<String>,
    /// Persistence granularity mask (default 255.255.255.255).
    #[arg(short = 'M', long = "netmask", value_name = "NETMASK", action = ArgAction::Append, allow_hyphen_values = true, help_heading = OPTIONS)]
    pub netmask: Vec<String>,
    /// A real server: host[:port] (direct routing uses the service's port).
    #[arg(short = 'r', long = "real-server", value_name = "SERVER-ADDRESS", action = ArgAction::Append, allow_hyphen_values = true, help_heading = OPTIONS)]
    pub real_server: Vec<String>,
    /// Gatewaying: direct routing (the default, and the only method lvs has).
    #[arg(short = 'g', long = "gatewaying", action = ArgAction::Count, help_heading = OPTIONS)]
    pub gatewaying: u8,
    /// IPIP tunnelling (not supported by lvs).
    #[arg(short = 'i', long = "ipip", action = ArgAction::Count, help_heading = OPTIONS)]
    pub ipip: u8,
    /// Masquerading, NAT (not supported by lvs).
    #[arg(short = 'm', long = "masquerading", action = ArgAction::Count, help_heading = OPTIONS)]
    pub masquerading: u8,
    /// Weight of the real server, 0 to 65535 (default 1; 0 quiesces it).
    #[arg(short = 'w', long = "weight", value_name = "WEIGHT", action = ArgAction::Append, allow_hyphen_values = true, help_heading = OPTIONS)]
    pub weight: Vec<String>,
    /// Upper connection threshold (0: none).
    #[arg(short = 'x', long = "u-threshold", value_name = "UTHRESHOLD", action = ArgAction::Append, allow_hyphen_values = true, help_heading = OPTIONS)]
    pub u_threshold: Vec<String>,
    /// Lower connection threshold (0: none).
    #[arg(short = 'y', long = "l-threshold", value_name = "LTHRESHOLD", action = ArgAction::Append, allow_hyphen_values = true, help_heading = OPTIONS)]
    pub l_threshold: Vec<String>,
    /// IPv6 firewall-mark service (not supported by lvs).
    #[arg(short = '6', long = "ipv6", action = ArgAction::Count, help_heading = OPTIONS)]
    pub ipv6: u8,
    /// One-packet scheduling (not supported by lvs).
    #[arg(short = 'o', long = "ops", action = ArgAction::Count, hide = true)]
    pub ops: u8,
    /// An alternative persistence engine (not supported by lvs).
    #[arg(long = "pe", value_name = "ENGINE", action = ArgAction::Append, hide = true)]
    pub persistence_engine: Vec<String>,
    /// Tunnel options (not supported by lvs).
    #[arg(long = "tun-type", value_name = "TYPE", action = ArgAction::Append, hide = true)]
    pub tun_type: Vec<String>,
    #[arg(long = "tun-port", value_name = "PORT", action = ArgAction::Append, hide = true)]
    pub tun_port: Vec<String>,
    #[arg(long = "tun-nocsum", action = ArgAction::Count, hide = true)]
    pub tun_nocsum: u8,
    #[arg(long = "tun-csum", action = ArgAction::Count, hide = true)]
    pub tun_csum: u8,
    #[arg(long = "tun-remcsum", action = ArgAction::Count, hide = true)]
    pub tun_remcsum: u8,
    #[arg(long = "tun-info", action = ArgAction::Count, hide = true)]
    pub tun_info: u8,

    // Connection sync.
    /// `--start-daemon master|backup`: start a connection sync daemon. Both may run at once:
    /// each director the master for its own connections and a backup for its peer's.
    #[arg(long = "start-daemon", value_name = "STATE", action = ArgAction::Append, allow_hyphen_values = true, help_heading = COMMANDS)]
    pub start_daemon: Vec<String>,
    /// `--stop-daemon master|backup`: stop a connection sync daemon.
    #[arg(long = "stop-daemon", value_name = "STATE", action = ArgAction::Append, allow_hyphen_values = true, help_heading = COMMANDS)]
    pub stop_daemon: Vec<String>,
    /// The interface sync messages are sent or received on (default eth0, as in ipvsadm).
    #[arg(long = "mcast-interface", value_name = "INTERFACE", action = ArgAction::Append, allow_hyphen_values = true, help_heading = SYNC)]
    pub mcast_interface: Vec<String>,
    /// The sync id, 0 to 255 (default 0): directors exchange connections only within one id.
    #[arg(long = "syncid", value_name = "SID", action = ArgAction::Append, allow_hyphen_values = true, help_heading = SYNC)]
    pub syncid: Vec<String>,
    /// The IPv4 multicast group (default 224.0.0.81).
    #[arg(long = "mcast-group", value_name = "ADDRESS", action = ArgAction::Append, allow_hyphen_values = true, help_heading = SYNC)]
    pub mcast_group: Vec<String>,
    /// The UDP port (default 8848).
    #[arg(long = "mcast-port", value_name = "PORT", action = ArgAction::Append, allow_hyphen_values = true, help_heading = SYNC)]
    pub mcast_port: Vec<String>,
    /// The multicast TTL, 1 to 255 (default 1: the directors' own segment).
    #[arg(long = "mcast-ttl", value_name = "TTL", action = ArgAction::Append, allow_hyphen_values = true, help_heading = SYNC)]
    pub mcast_ttl: Vec<String>,
    /// The largest sync message in bytes of UDP payload, 80 to 65507 (default 1472).
    #[arg(long = "sync-maxlen", value_name = "LENGTH", action = ArgAction::Append, allow_hyphen_values = true, help_heading = SYNC)]
    pub sync_maxlen: Vec<String>,

    // List options.
    /// Numeric output of addresses and ports.
    #[arg(short = 'n', long = "numeric", action = ArgAction::Count, help_heading = LIST)]
    pub numeric: u8,
    /// List the connection table.
    #[arg(short = 'c', long = "connection", action = ArgAction::Count, help_heading = LIST)]
    pub connection: u8,
    /// List the timeouts (tcp tcpfin udp).
    #[arg(long = "timeout", action = ArgAction::Count, help_heading = LIST)]
    pub timeout: u8,
    /// List counters.
    #[arg(long = "stats", action = ArgAction::Count, help_heading = LIST)]
    pub stats: u8,
    /// List the connection sync daemons (with -L).
    #[arg(long = "daemon", action = ArgAction::Count, help_heading = LIST)]
    pub daemon: u8,
    /// List rates.
    #[arg(long = "rate", action = ArgAction::Count, help_heading = LIST)]
    pub rate: u8,
    /// Exact numbers instead of K, M, G.
    #[arg(short = 'X', long = "exact", action = ArgAction::Count, help_heading = LIST)]
    pub exact: u8,
    /// List connection thresholds.
    #[arg(long = "thresholds", action = ArgAction::Count, help_heading = LIST)]
    pub thresholds: u8,
    /// List persistent connection counts.
    #[arg(long = "persistent-conn", action = ArgAction::Count, help_heading = LIST)]
    pub persistent_conn: u8,
    /// Sort services and servers (the default; kept for compatibility).
    #[arg(long = "sort", action = ArgAction::Count, help_heading = LIST)]
    pub sort: u8,
    /// Do not sort services and servers.
    #[arg(long = "nosort", action = ArgAction::Count, help_heading = LIST)]
    pub nosort: u8,

    // lvsadm's own.
    /// Have the daemon read its config file again and apply the difference, as SIGHUP does.
    /// Unchanged services keep their flows; a bad file is refused whole and nothing changes.
    #[arg(long = "reload", action = ArgAction::Count, help_heading = LVSADM)]
    pub reload: u8,
    /// Print the listing as JSON.
    #[arg(long = "json", action = ArgAction::Count, help_heading = LVSADM)]
    pub json: u8,
    /// The lvs daemon's control socket.
    #[arg(long = "socket", value_name = "PATH", default_value = DEFAULT_CONTROL_SOCKET, help_heading = LVSADM)]
    pub socket: PathBuf,
    /// Print lvsadm's man page (roff) and exit.
    #[arg(long = "generate-man", help_heading = LVSADM)]
    pub generate_man: bool,
    /// Print a completion script for a shell and exit.
    #[arg(long = "generate-completions", value_name = "SHELL", help_heading = LVSADM)]
    pub generate_completions: Option<clap_complete::Shell>,

    /// The arguments that are not options: the three timeouts of `--set`, and anything
    /// else, which is an error.
    #[arg(value_name = "ARG", hide = true)]
    pub arguments: Vec<String>,
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory as _;

    use super::*;

    #[test]
    fn the_definition_is_consistent() {
        Args::command().debug_assert();
    }

    fn parse(line: &str) -> Args {
        Args::try_parse_from(std::iter::once("lvsadm").chain(line.split_whitespace()))
            .unwrap_or_else(|e| panic!("{line}: {e}"))
    }

    #[test]
    fn short_flags_cluster_like_ipvsadm() {
        let args = parse("-Ln");
        assert_eq!((args.list, args.numeric), (1, 1));
        let args = parse("-At 10.0.0.1:80 -s rr");
        assert_eq!(args.add_service, 1);
        assert_eq!(args.tcp_service, ["10.0.0.1:80"]);
        let args = parse("-l");
        assert_eq!(args.list, 1);
    }

    #[test]
    fn persistent_takes_an_optional_value() {
        assert_eq!(parse("-A -t 10.0.0.1:80 -p").persistent, ["300"]);
        assert_eq!(parse("-A -t 10.0.0.1:80 -p 600").persistent, ["600"]);
        let args = parse("-A -t 10.0.0.1:80 -p -M 255.255.255.0");
        assert_eq!(args.persistent, ["300"]);
        assert_eq!(args.netmask, ["255.255.255.0"]);
    }

    #[test]
    fn values_may_look_like_flags_as_in_ipvsadm() {
        assert_eq!(parse("-a -t 10.0.0.1:80 -r 10.0.0.2 -w -1").weight, ["-1"]);
    }

    #[test]
    fn set_takes_its_values_as_arguments_and_repeats_are_counted() {
        let args = parse("--set 900 120 300");
        assert_eq!(
            (args.set, args.arguments),
            (1, vec!["900".into(), "120".into(), "300".into()])
        );
        assert_eq!(parse("--set 1 --set 2").set, 2);
    }

    #[test]
    fn the_sync_daemon_options_take_values() {
        let args = parse(
            "--start-daemon master --mcast-interface eth1 --syncid 51 --mcast-group 239.0.0.1 \
             --mcast-port 9000 --mcast-ttl 2 --sync-maxlen 1400",
        );
        assert_eq!(args.start_daemon, ["master"]);
        assert_eq!(args.mcast_interface, ["eth1"]);
        assert_eq!(args.syncid, ["51"]);
        assert_eq!(args.mcast_group, ["239.0.0.1"]);
        assert_eq!(args.mcast_port, ["9000"]);
        assert_eq!(args.mcast_ttl, ["2"]);
        assert_eq!(args.sync_maxlen, ["1400"]);
        assert_eq!(parse("--stop-daemon backup").stop_daemon, ["backup"]);
        assert_eq!(parse("-L --daemon").daemon, 1);
    }
}
