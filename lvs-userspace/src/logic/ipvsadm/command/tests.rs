use clap::Parser as _;
use std::net::Ipv4Addr;

use super::*;
use crate::logic::{
    api::{Persistence, SchedFlags, Scheduler},
    ipvsadm::names::{NumericOnly, Table},
};

fn parse(line: &str) -> Result<Command, String> {
    let args = Args::try_parse_from(std::iter::once("lvsadm").chain(line.split_whitespace()))
        .map_err(|e| e.to_string())?;
    Command::from_args(&args, &Table::example()).map_err(|e| e.to_string())
}

fn web() -> ServiceKey {
    ServiceKey {
        protocol: Protocol::Tcp,
        address: Ipv4Addr::new(10, 0, 0, 1).into(),
        port: 80,
    }
}

fn change(line: &str) -> Change {
    match parse(line) {
        Ok(Command::Change(change)) => change,
        other => panic!("{line}: {other:?}"),
    }
}

fn listing(line: &str) -> List {
    match parse(line) {
        Ok(Command::List(list)) => list,
        other => panic!("{line}: {other:?}"),
    }
}

#[test]
fn services_get_ipvsadm_defaults() {
    assert_eq!(
        change("-A -t 10.0.0.1:80"),
        Change::AddService {
            service: web(),
            config: ServiceConfig {
                scheduler: Scheduler::WeightedLeastConnection,
                sched_flags: SchedFlags::default(),
                persistence: None,
            },
        }
    );
    assert_eq!(
        change("-E -t web.example.com:http -s sh -b sh-port -p -M 255.255.0.0"),
        Change::EditService {
            service: web(),
            config: ServiceConfig {
                scheduler: Scheduler::SourceHashing,
                sched_flags: SchedFlags {
                    port: true,
                    ..SchedFlags::default()
                },
                persistence: Some(Persistence {
                    timeout: 300,
                    netmask: Granularity::Netmask(
                        crate::base::values::Netmask::new(Ipv4Addr::new(255, 255, 0, 0)).unwrap()
                    ),
                }),
            },
        }
    );
    assert_eq!(
        change("--add-service --udp-service 10.0.0.2:domain --scheduler mh --persistent 60"),
        Change::AddService {
            service: ServiceKey {
                protocol: Protocol::Udp,
                address: Ipv4Addr::new(10, 0, 0, 2).into(),
                port: 53,
            },
            config: ServiceConfig {
                scheduler: Scheduler::MaglevHashing,
                sched_flags: SchedFlags::default(),
                persistence: Some(Persistence {
                    timeout: 60,
                    netmask: Granularity::Netmask(
                        crate::base::values::Netmask::new(Ipv4Addr::BROADCAST).unwrap()
                    ),
                }),
            },
        }
    );
}

#[test]
fn ipv6_services_and_real_servers_are_bracketed_and_persist_by_prefix_length() {
    let vip: IpAddr = "2001:db8::1".parse().unwrap();
    let service = ServiceKey {
        protocol: Protocol::Tcp,
        address: vip,
        port: 80,
    };
    assert_eq!(
        change("-A -t [2001:db8::1]:80 -s rr -p 600 -M 64 -6"),
        Change::AddService {
            service,
            config: ServiceConfig {
                scheduler: Scheduler::RoundRobin,
                sched_flags: SchedFlags::default(),
                persistence: Some(Persistence {
                    timeout: 600,
                    netmask: Granularity::PrefixLength(
                        crate::base::values::PrefixLength::new(64).unwrap()
                    ),
                }),
            },
        }
    );
    assert_eq!(
        change("-A -t [2001:db8::1]:80 -p"),
        Change::AddService {
            service,
            config: ServiceConfig {
                scheduler: Scheduler::WeightedLeastConnection,
                sched_flags: SchedFlags::default(),
                persistence: Some(Persistence {
                    timeout: 300,
                    netmask: Granularity::PrefixLength(crate::base::values::PrefixLength::HOST),
                }),
            },
        }
    );
    assert_eq!(
        change("-a -t [2001:db8::1]:80 -r [2001:db8::11]:80 -w 3"),
        Change::AddServer {
            service,
            server: RealServerConfig {
                address: "2001:db8::11".parse().unwrap(),
                forward: ForwardMethod::Route,
                weight: 3,
                u_threshold: 0,
                l_threshold: 0,
            },
        }
    );
    assert_eq!(
        change("-d -t [2001:db8::1]:80 -r [2001:db8::11]"),
        Change::DeleteServer {
            service,
            address: "2001:db8::11".parse().unwrap(),
        }
    );
}

#[test]
fn real_servers_get_ipvsadm_defaults_and_the_service_port() {
    let server = |weight, u, l| RealServerConfig {
        address: Ipv4Addr::new(10, 0, 0, 11).into(),
        forward: ForwardMethod::Route,
        weight,
        u_threshold: u,
        l_threshold: l,
    };
    assert_eq!(
        change("-a -t 10.0.0.1:80 -r 10.0.0.11"),
        Change::AddServer {
            service: web(),
            server: server(1, 0, 0)
        }
    );
    // Direct routing sends to the service port whatever -r says, as ipvsadm does.
    assert_eq!(
        change("-e -t 10.0.0.1:80 -r rs1.example.com:8080 -g -w 0 -x 100 -y 50"),
        Change::EditServer {
            service: web(),
            server: server(0, 100, 50)
        }
    );
    assert_eq!(
        change("-d -t 10.0.0.1:80 -r 10.0.0.11:80"),
        Change::DeleteServer {
            service: web(),
            address: Ipv4Addr::new(10, 0, 0, 11).into()
        }
    );
}

#[test]
fn other_changes() {
    assert_eq!(
        change("-D -t 10.0.0.1:80"),
        Change::DeleteService { service: web() }
    );
    assert_eq!(change("-C"), Change::Clear {});
    assert_eq!(change("-Z"), Change::Zero { service: None });
    assert_eq!(
        change("-Z -t 10.0.0.1:80"),
        Change::Zero {
            service: Some(web())
        }
    );
    assert_eq!(
        change("--set 900 0 300"),
        Change::SetTimeouts {
            timeouts: Timeouts {
                tcp: 900,
                tcp_fin: 0,
                udp: 300
            }
        }
    );
    assert_eq!(parse("-S -n"), Ok(Command::Save { numeric: true }));
    assert_eq!(parse("-R"), Ok(Command::Restore));
    assert_eq!(parse("--reload"), Ok(Command::Reload));
}

#[test]
fn list_options() {
    assert_eq!(
        parse(""),
        Ok(Command::List(List {
            target: ListTarget::All,
            format: ListFormat::default()
        }))
    );
    assert!(listing("--json").format.json);
    let list = listing("-Ln");
    assert_eq!(list.target, ListTarget::All);
    assert!(list.format.numeric && list.format.sort && !list.format.json);
    assert_eq!(
        listing("-L -t 10.0.0.1:80").target,
        ListTarget::Service(web())
    );
    assert_eq!(listing("-Lnc").target, ListTarget::Connections);
    assert_eq!(listing("-L --timeout").target, ListTarget::Timeouts);
    let list = listing("-l --stats --rate --exact --nosort --json");
    assert_eq!(list.format.layout, Layout::Stats);
    assert!(list.format.exact && !list.format.sort && list.format.json);
    assert_eq!(
        listing("-L --rate --thresholds").format.layout,
        Layout::Rate
    );
    assert_eq!(
        listing("-Lc --persistent-conn").format.layout,
        Layout::PersistentConn
    );
    assert!(listing("-L --sort").format.sort);
}

#[test]
fn bad_command_lines_get_ipvsadm_messages() {
    let cases = [
        ("-A -E -t 10.0.0.1:80", "multiple commands specified"),
        ("-Ln -L", "multiple commands specified"),
        ("--reload -C", "multiple commands specified"),
        (
            "--reload -t 10.0.0.1:80",
            "Illegal 'service-address' option with the 'reload' command",
        ),
        (
            "-n",
            "Try `lvsadm -h' or 'lvsadm --help' for more information.",
        ),
        (
            "-t 10.0.0.1:80",
            "Try `lvsadm -h' or 'lvsadm --help' for more information.",
        ),
        (
            "-A",
            "You need to supply the 'service-address' option for the 'add-service' command",
        ),
        (
            "-a -t 10.0.0.1:80",
            "You need to supply the 'real-server' option for the 'add-server' command",
        ),
        (
            "-A -t 10.0.0.1:80 -w 3",
            "Illegal 'weight' option with the 'add-service' command",
        ),
        (
            "-a -t 10.0.0.1:80 -r 10.0.0.11 -s rr",
            "Illegal 'scheduler' option with the 'add-server' command",
        ),
        (
            "-d -t 10.0.0.1:80 -r 10.0.0.11 -w 1",
            "Illegal 'weight' option with the 'delete-server' command",
        ),
        (
            "-C -t 10.0.0.1:80",
            "Illegal 'service-address' option with the 'flush' command",
        ),
        ("-S --json", "Illegal 'json' option with the 'save' command"),
        (
            "-A -t 10.0.0.1:80 --json",
            "Illegal 'json' option with the 'add-service' command",
        ),
        (
            "-L -s rr",
            "Illegal 'scheduler' option with the 'list' command",
        ),
        (
            "-Lc -t 10.0.0.1:80",
            "The option 'service-address' conflicts with the 'connection' option in the 'list' command",
        ),
        (
            "-L --timeout -c",
            "The option 'timeout' conflicts with the 'connection' option in the 'list' command",
        ),
        (
            "-L --timeout --stats",
            "options conflicts in the list command",
        ),
        ("-Lc --rate", "options conflicts in the list command"),
        (
            "-L --timeout --persistent-conn",
            "options conflicts in the list command",
        ),
        (
            "-A -t 10.0.0.1:80 -t 10.0.0.1:81",
            "multiple 'service-address' options specified",
        ),
        (
            "-A -t 10.0.0.1:80 -u 10.0.0.1:81",
            "multiple 'service-address' options specified",
        ),
        (
            "-a -t 10.0.0.1:80 -r 10.0.0.11 -w 1 -w 2",
            "multiple 'weight' options specified",
        ),
        (
            "-a -t 10.0.0.1:80 -r 10.0.0.11 -g -g",
            "multiple 'forwarding-method' options specified",
        ),
        (
            "-A -t 10.0.0.1:80 -p -p 5",
            "multiple 'persistent' options specified",
        ),
        (
            "-A -t 10.0.0.300:80",
            "illegal virtual server address[:port] specified",
        ),
        (
            "-A -t 10.0.0.1:65536",
            "illegal virtual server address[:port] specified",
        ),
        (
            "-A -t 10.0.0.1:gopher",
            "illegal virtual server address[:port] specified",
        ),
        (
            "-A -t nowhere.example.com:80",
            "illegal virtual server address[:port] specified",
        ),
        (
            "-A -t 80",
            "illegal virtual server address[:port] specified",
        ),
        (
            "-a -t 10.0.0.1:80 -r 10.0.0.",
            "illegal real server address[:port] specified",
        ),
        (
            "-a -t 10.0.0.1:80 -r 10.0.0.11 -w 65536",
            "illegal weight specified",
        ),
        (
            "-a -t 10.0.0.1:80 -r 10.0.0.11 -w -1",
            "illegal weight specified",
        ),
        (
            "-a -t 10.0.0.1:80 -r 10.0.0.11 -w heavy",
            "illegal weight specified",
        ),
        (
            "-a -t 10.0.0.1:80 -r 10.0.0.11 -x 2147483648",
            "illegal u_threshold specified",
        ),
        (
            "-a -t 10.0.0.1:80 -r 10.0.0.11 -y -5",
            "illegal l_threshold specified",
        ),
        (
            "-A -t 10.0.0.1:80 -p 0",
            "invalid timeout value `0' specified",
        ),
        (
            "-A -t 10.0.0.1:80 -p 2678401",
            "invalid timeout value `2678401' specified",
        ),
        (
            "-A -t 10.0.0.1:80 -p soon",
            "invalid timeout value `soon' specified",
        ),
        ("--set 900 120", "--set option requires 3 timeout values"),
        ("--set 900 120 x", "invalid timeout value `x' specified"),
        ("--set 1 2 3 4", "unexpected argument 4"),
        (
            "-A -t 10.0.0.1:80 -p -M 255.0.255.0",
            "illegal virtual server persistent mask specified",
        ),
        (
            "-A -t 10.0.0.1:80 -M 255.255.255.0",
            "the persistence netmask (-M) needs a persistent service (-p)",
        ),
        (
            "-A -t 10.0.0.1",
            "Zero port specified for non-persistent service",
        ),
        (
            "-A -t 10.0.0.1:0",
            "Zero port specified for non-persistent service",
        ),
        (
            "-A -t 10.0.0.1 -p",
            "a persistent service on every port (port 0) is not supported by lvs",
        ),
        (
            "-A -t 10.0.0.1:80 -s fastest",
            "Scheduler or persistence engine not found",
        ),
        (
            "-A -t 10.0.0.1:80 -s lblcr",
            "scheduler `lblcr' is not supported by lvs (it has rr wrr lc wlc sed nq sh dh mh)",
        ),
        (
            "-A -t 10.0.0.1:80 -b sh-port",
            "incompatible scheduler flag `sh-port'",
        ),
        (
            "-A -t 10.0.0.1:80 -s mh -b mh-port,fast",
            "invalid scheduler flag `fast'",
        ),
        (
            "-A -t 10.0.0.1:80 -s rr -b flag-1",
            "scheduler flag `flag-1' has no meaning for scheduler rr: lvs takes sh-fallback, \
             sh-port, mh-fallback and mh-port",
        ),
        (
            "-A -t 0.0.0.0:80",
            "0.0.0.0 cannot be a virtual service address: it is not a unicast address",
        ),
        (
            "-a -t 10.0.0.1:80 -r 224.0.0.1",
            "224.0.0.1 cannot be a real server address: it is not a unicast address",
        ),
        (
            "-A -t 2001:db8::1",
            "an IPv6 address goes in brackets: [2001:db8::10]:80",
        ),
        (
            "-a -t [2001:db8::1]:80 -r 2001:db8::11",
            "an IPv6 address goes in brackets: [2001:db8::10]:80",
        ),
        (
            "-A -t [2001:db8::1]:80 -6 -p -M 255.255.255.0",
            "illegal virtual server persistent mask specified",
        ),
        (
            "-A -t [2001:db8::1]:80 -p -M 129",
            "illegal virtual server persistent mask specified",
        ),
        (
            "-A -t 10.0.0.1:80 -p -M 64",
            "illegal virtual server persistent mask specified",
        ),
        (
            "-A -t 10.0.0.1:80 -6",
            "-6 names an IPv6 service, and 10.0.0.1 is IPv4",
        ),
        (
            "-L -n -6",
            "-6 applies to firewall-mark services (-f), which lvs does not support",
        ),
        (
            "-a -t [2001:db8::1]:80 -r 10.0.0.11",
            "the real server 10.0.0.11 and the virtual service 2001:db8::1 are of different \
             address families: direct routing forwards a frame as it came",
        ),
        (
            "-a -t 10.0.0.1:80 -r [2001:db8::11]",
            "the real server 2001:db8::11 and the virtual service 10.0.0.1 are of different \
             address families: direct routing forwards a frame as it came",
        ),
        (
            "-A -t [ff02::1]:80",
            "ff02::1 cannot be a virtual service address: it is not a unicast address",
        ),
        (
            "-A -t [::ffff:10.0.0.1]:80",
            "::ffff:10.0.0.1 cannot be a virtual service address: it is not a unicast address",
        ),
        (
            "-A -f 1",
            "firewall-mark services (-f) are not supported by lvs",
        ),
        (
            "-A -f 1 -6",
            "firewall-mark services (-f) are not supported by lvs",
        ),
        (
            "-L -6",
            "-6 applies to firewall-mark services (-f), which lvs does not support",
        ),
        (
            "-a -t 10.0.0.1:80 -r 10.0.0.11 -m",
            "masquerading (-m) is not supported: lvs forwards by direct routing (-g)",
        ),
        (
            "-a -t 10.0.0.1:80 -r 10.0.0.11 -i",
            "tunnelling (-i) is not supported: lvs forwards by direct routing (-g)",
        ),
        (
            "-A --sctp-service 10.0.0.1:80",
            "SCTP services (--sctp-service) are not supported by lvs",
        ),
        (
            "--start-daemon primary",
            "illegal start-daemon parameter specified",
        ),
        (
            "--stop-daemon primary",
            "illegal stop-daemon parameter specified",
        ),
        (
            "--start-daemon master --start-daemon backup",
            "multiple commands specified",
        ),
        ("--start-daemon master -L", "multiple commands specified"),
        (
            "--start-daemon master --syncid 1 --syncid 2",
            "multiple 'syncid' options specified",
        ),
        (
            "--start-daemon master --syncid 256",
            "illegal syncid specified",
        ),
        (
            "--start-daemon master --syncid -1",
            "illegal syncid specified",
        ),
        (
            "--start-daemon master --syncid one",
            "illegal syncid specified",
        ),
        (
            "--start-daemon master --mcast-port 0",
            "illegal mcast-port specified",
        ),
        (
            "--start-daemon master --mcast-port 65536",
            "illegal mcast-port specified",
        ),
        (
            "--start-daemon master --mcast-ttl 0",
            "illegal mcast-ttl specified",
        ),
        (
            "--start-daemon master --mcast-ttl 256",
            "illegal mcast-ttl specified",
        ),
        (
            "--start-daemon master --sync-maxlen 79",
            "illegal sync-maxlen specified (lvs takes 80 to 65507 bytes)",
        ),
        (
            "--start-daemon master --sync-maxlen 65508",
            "illegal sync-maxlen specified (lvs takes 80 to 65507 bytes)",
        ),
        (
            "--start-daemon master --mcast-group 10.0.0.1",
            "invalid IPv4 mcast-group `10.0.0.1'",
        ),
        (
            "--start-daemon master --mcast-group 224.0.0.300",
            "invalid IPv4 mcast-group `224.0.0.300'",
        ),
        (
            "--start-daemon master --mcast-group ff02::81",
            "illegal mcast-group: ff02::81 is an IPv6 group: connection sync runs over IPv4 \
             multicast (IPv6 connections are synced over it too)",
        ),
        (
            "--start-daemon master --mcast-interface a-very-long-interface",
            "illegal mcast-interface `a-very-long-interface': not an interface name",
        ),
        (
            "--start-daemon master -t 10.0.0.1:80",
            "Illegal 'service-address' option with the 'start-daemon' command",
        ),
        (
            "--start-daemon master --daemon",
            "Illegal 'daemon' option with the 'start-daemon' command",
        ),
        (
            "--start-daemon master --json",
            "Illegal 'json' option with the 'start-daemon' command",
        ),
        (
            "--stop-daemon master --mcast-interface eth0",
            "Illegal 'mcast-interface' option with the 'stop-daemon' command",
        ),
        (
            "--stop-daemon master --syncid 1",
            "Illegal 'syncid' option with the 'stop-daemon' command",
        ),
        (
            "-A -t 10.0.0.1:80 --syncid 1",
            "Illegal 'syncid' option with the 'add-service' command",
        ),
        (
            "-L --mcast-group 224.0.0.81",
            "Illegal 'mcast-group' option with the 'list' command",
        ),
        (
            "-L --syncid 1",
            "Illegal 'syncid' option with the 'list' command",
        ),
        (
            "-L --daemon --timeout",
            "The option 'daemon' conflicts with the 'timeout' option in the 'list' command",
        ),
        (
            "-L --daemon -c",
            "The option 'daemon' conflicts with the 'connection' option in the 'list' command",
        ),
        (
            "-L --daemon --stats",
            "options conflicts in the list command",
        ),
        (
            "-L --daemon --exact",
            "options conflicts in the list command",
        ),
        (
            "-L --daemon --nosort",
            "options conflicts in the list command",
        ),
        (
            "--daemon",
            "Try `lvsadm -h' or 'lvsadm --help' for more information.",
        ),
        ("-L extra", "unexpected argument extra"),
    ];
    for (line, expected) in cases {
        match parse(line) {
            Err(message) => assert_eq!(message, expected, "{line}"),
            Ok(command) => panic!("{line}: accepted as {command:?}"),
        }
    }
}

#[test]
fn unknown_options_are_clap_errors() {
    let error = parse("-A -t 10.0.0.1:80 --frobnicate").unwrap_err();
    assert!(
        error.contains("unexpected argument '--frobnicate'"),
        "{error}"
    );
}

#[test]
fn names_need_a_resolver() {
    let args = Args::try_parse_from(["lvsadm", "-A", "-t", "web.example.com:http"]).unwrap();
    assert_eq!(
        Command::from_args(&args, &NumericOnly),
        Err(UsageError::IllegalService)
    );
}

#[test]
fn sync_daemons_get_ipvsadm_defaults() {
    use crate::logic::sync::{SyncDaemon, SyncRole};

    assert_eq!(
        parse("--start-daemon master"),
        Ok(Command::StartDaemon(SyncDaemon::with_defaults(
            SyncRole::Master,
            "eth0"
        ))),
        "ipvsadm's interface when none is given is eth0"
    );
    let Ok(Command::StartDaemon(daemon)) = parse(
        "--start-daemon backup --mcast-interface eth1 --syncid 51 --mcast-group 239.1.2.3 \
         --mcast-port 9000 --mcast-ttl 2 --sync-maxlen 1400",
    ) else {
        panic!("not a start");
    };
    assert_eq!(daemon.role, SyncRole::Backup);
    assert_eq!(daemon.interface, "eth1");
    assert_eq!(daemon.sync_id.get(), 51);
    assert_eq!(daemon.group.get(), Ipv4Addr::new(239, 1, 2, 3));
    assert_eq!(daemon.port.get(), 9000);
    assert_eq!(daemon.ttl.get(), 2);
    assert_eq!(daemon.max_len.get(), 1400);
    assert_eq!(
        parse("--stop-daemon backup"),
        Ok(Command::StopDaemon(SyncRole::Backup))
    );
    assert_eq!(
        parse("-L --daemon"),
        Ok(Command::ListDaemons { json: false })
    );
    assert_eq!(
        parse("-Ln --daemon --json"),
        Ok(Command::ListDaemons { json: true })
    );
}

#[test]
fn the_option_indices_name_their_options() {
    for (index, name) in [
        (CONNECTION, "connection"),
        (TIMEOUT, "timeout"),
        (DAEMON, "daemon"),
        (STATS, "stats"),
        (RATE, "rate"),
        (THRESHOLDS, "thresholds"),
        (PERSISTENT_CONN, "persistent-conn"),
        (NOSORT, "nosort"),
        (EXACT, "exact"),
        (OPTION_COUNT - 1, "json"),
    ] {
        assert_eq!(OPTION_NAMES[index], name);
    }
}
