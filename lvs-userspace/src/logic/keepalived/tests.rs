use std::time::Duration;

use super::*;
use crate::logic::{
    config::health::{HttpVersion, Probe, Timing},
    golden,
};

const REALISTIC: &str = include_str!("testdata/keepalived.conf");

#[test]
fn a_realistic_file_imports_to_its_golden_toml() {
    let imported = import(REALISTIC, None).unwrap();
    golden::check(
        "src/logic/keepalived/testdata/keepalived.toml",
        &imported.to_toml().unwrap(),
    );
}

#[test]
fn what_is_not_imported_is_reported_with_its_line() {
    let imported = import(REALISTIC, None).unwrap();
    let got: Vec<String> = imported.problems.iter().map(ToString::to_string).collect();
    let expected = [
        "line 55: regex_stack in url is not imported: lvs's regex engine does not backtrack and needs no stack",
        "line 72: direct routing cannot change the port: the real server must listen on the service port 80, not 8080; the server is not imported",
        "line 82: mh-port only applies to the mh scheduler",
        "line 96: SMTP_CHECK is not supported by lvs",
        "line 106: one-packet scheduling (ops) is not supported by lvs",
        "line 139: lb_kind NAT is not supported (lvs does direct routing, DR); the service is not imported",
        "line 145: firewall-mark services are not supported by lvs",
        "line 153: virtual_server_group is not supported by lvs; write its members as virtual_server blocks",
        "line 158: scheduler lblc is not supported by lvs (it has rr wrr lc wlc sed nq sh dh mh); lvs's default applies",
        "line 159: frobnicate is not imported",
        "line 161: weight 70000 is out of range 0..=65535",
        "line 165: include /etc/keepalived/conf.d/*.conf is not followed; import that file on its own",
    ];
    assert_eq!(got, expected);
}

#[test]
fn the_output_is_valid_toml_with_the_keys_lvs_reads() {
    let imported = import(REALISTIC, Some("bond0")).unwrap();
    let text = imported.to_toml().unwrap();
    let value: toml::Value = toml::from_str(&text).unwrap();
    assert_eq!(value["director"]["interface"].as_str(), Some("bond0"));
    assert_eq!(value["director"]["manage_vips"].as_bool(), Some(false));
    let services = value["virtual_server"].as_array().unwrap();
    let ports: Vec<i64> = services
        .iter()
        .map(|s| s["port"].as_integer().unwrap())
        .collect();
    assert_eq!(ports, [80, 443, 53, 80, 25]);
    let web = &services[0];
    assert_eq!(web["lb_algo"].as_str(), Some("wlc"));
    let checker = &web["real_server"][0]["HTTP_GET"];
    assert_eq!(checker["retry"].as_integer(), Some(3));
    assert_eq!(checker["url"][1]["status_code"].as_integer(), Some(200));
    // The service-level retry stays at the service level, where lvs inherits it...
    assert_eq!(web["retry"].as_integer(), Some(3));
    assert!(web["real_server"][1]["TCP_CHECK"].get("retry").is_none());
    // And the director accepts it as its configuration, health checks included.
    let config = crate::logic::config::parse(&text, "imported.toml")
        .unwrap_or_else(|e| panic!("the import is not a valid lvs config: {e}"));
    assert_eq!(config.services.len(), 5);
    // ...so each checker gets, key by key, the value of the nearest level that sets it, as
    // under keepalived.
    let health = &config.services[0].health;
    let server = |address: &str| &health.real_servers[&address.parse().unwrap()];
    let http = server("192.0.2.21");
    assert!(http.inhibit_on_failure, "from the service");
    let check = http.check.as_ref().unwrap();
    assert_eq!(
        check.timing,
        Timing {
            delay_loop: Duration::from_secs(6),
            connect_timeout: Duration::from_secs(3),
            retry: 3,
            delay_before_retry: Duration::from_secs(2),
            warmup: Duration::from_secs(2),
            alpha: true,
        }
    );
    let Probe::Http(probe) = &check.probe else {
        panic!("{check:?}")
    };
    assert_eq!(probe.version, HttpVersion::Http10Close);
    assert_eq!(
        probe.urls[0].virtualhost.as_deref(),
        Some("www.example.com"),
        "from the real server"
    );
    let regex = probe.urls[1].regex.as_ref().unwrap();
    assert!(regex.finds(b"<TITLE>welcome"), "regex_options caseless");
    let tcp = server("192.0.2.22");
    assert!(!tcp.inhibit_on_failure, "the real server's own");
    let tcp = tcp.check.as_ref().unwrap();
    assert_eq!(tcp.timing.retry, 2, "from the real server");
    assert_eq!(tcp.timing.connect_timeout, Duration::from_secs(5));
    assert_eq!(tcp.timing.delay_before_retry, Duration::from_millis(1500));
    let misc = config.services[2].health.real_servers[&"192.0.2.31".parse().unwrap()]
        .check
        .as_ref()
        .unwrap();
    let Probe::Misc(misc) = &misc.probe else {
        panic!("{misc:?}")
    };
    assert_eq!(
        misc.run_as
            .as_ref()
            .map(|who| (who.user.as_str(), who.group.as_deref())),
        Some(("nobody", Some("nogroup")))
    );
}

#[test]
fn without_vrrp_the_interface_is_a_named_placeholder() {
    let imported = import("virtual_server 192.0.2.10 80 {\n lb_algo mh\n}\n", None).unwrap();
    assert_eq!(imported.config.director.interface, "eth0");
    assert_eq!(imported.config.director.manage_vips, None);
    assert!(imported.problems.is_empty());
    assert!(
        imported.notes[0].contains("placeholder"),
        "{:?}",
        imported.notes
    );
}

#[test]
fn syntax_errors_fail_the_import() {
    let error = import("virtual_server 192.0.2.10 80 {\n", None).unwrap_err();
    assert_eq!(error.to_string(), "line 1: `{` is never closed");
}

#[test]
fn new_keywords_are_checked_as_they_are_imported() {
    let text = "virtual_server 192.0.2.10 80 {\n\
                 delay_before_retry -1\n\
                 alpha maybe\n\
                 ha_suspend\n\
                 virtualhost www.example.com\n\
                 real_server 192.0.2.21 80 {\n\
                  MISC_CHECK {\n\
                   misc_path /bin/true\n\
                   user a b c\n\
                   connect_timeout 3\n\
                  }\n\
                 }\n\
                 real_server 192.0.2.22 80 {\n\
                  HTTP_GET {\n\
                   http_protocol 2.0\n\
                   url {\n\
                    path /\n\
                    regex_options\n\
                   }\n\
                  }\n\
                 }\n\
                }\n";
    let imported = import(text, None).unwrap();
    // What is imported is a valid lvs config, service-level virtualhost included.
    crate::logic::config::parse(&imported.to_toml().unwrap(), "imported.toml").unwrap();
    let got: Vec<String> = imported.problems.iter().map(ToString::to_string).collect();
    assert_eq!(
        got,
        [
            "line 2: delay_before_retry: \"-1\" is not a number of seconds",
            "line 3: alpha: \"maybe\" is not one of on|off|true|false|yes|no",
            "line 4: ha_suspend is not supported by lvs (it checks real servers whether or not the VIP is up)",
            "line 9: user takes a user name and optionally a group name",
            "line 10: connect_timeout in MISC_CHECK is not imported (misc_timeout bounds the program)",
            "line 15: http_protocol 2.0 is not one of 1.0, 1.0C, 1.0K and 1.1",
            "line 18: regex_options takes one or more options",
        ]
    );
    let user = |spec: &str| {
        let text = format!(
            "virtual_server 192.0.2.10 80 {{\n real_server 192.0.2.21 80 {{\n  \
             MISC_CHECK {{\n   misc_path /bin/true\n   user {spec}\n  }}\n }}\n}}\n"
        );
        let imported = import(&text, None).unwrap();
        assert!(imported.problems.is_empty(), "{:?}", imported.problems);
        imported.config.virtual_server[0].real_server[0]
            .misc_check
            .as_ref()
            .unwrap()
            .user
            .clone()
    };
    assert_eq!(user("nobody").as_deref(), Some("nobody"));
    assert_eq!(user("nobody nogroup").as_deref(), Some("nobody:nogroup"));
    assert_eq!(user("nobody :nogroup").as_deref(), Some("nobody:nogroup"));
}

/// The two-director tutorial's keepalived.conf (the MASTER's), split into lvs's TOML and
/// keepalived's VRRP part.
const TUTORIAL: &str = include_str!("testdata/tutorial.conf");

#[test]
fn the_tutorial_splits_into_its_golden_toml_and_vrrp_conf() {
    let imported = import(TUTORIAL, None).unwrap();
    assert!(imported.problems.is_empty(), "{:?}", imported.problems);
    golden::check(
        "src/logic/keepalived/testdata/tutorial.toml",
        &imported.to_toml().unwrap(),
    );
    golden::check(
        "src/logic/keepalived/testdata/tutorial.vrrp.conf",
        &vrrp_only(TUTORIAL, "tutorial.conf").unwrap(),
    );
}

#[test]
fn the_tutorial_imports_to_a_config_lvs_accepts() {
    let imported = import(TUTORIAL, None).unwrap();
    assert_eq!(imported.config.director.manage_vips, Some(false));
    assert_eq!(imported.config.director.interface, "eth0");
    let config = crate::logic::config::parse(&imported.to_toml().unwrap(), "tutorial.toml")
        .unwrap_or_else(|e| panic!("the tutorial is not a valid lvs config: {e}"));
    let [service] = config.services.as_slice() else {
        panic!("{:?}", config.services)
    };
    assert_eq!(service.persistence, None, "persistence_timeout 0 is none");
    assert_eq!(service.health.real_servers.len(), 3);
    // Every value the tutorial gives keepalived, checked where lvs keeps it.
    for server in service.health.real_servers.values() {
        let check = server.check.as_ref().unwrap();
        assert_eq!(
            check.timing,
            Timing {
                delay_loop: Duration::from_secs(6),
                connect_timeout: Duration::from_secs(3),
                retry: 3,
                delay_before_retry: Duration::from_secs(3),
                ..check.timing
            }
        );
        let Probe::Http(probe) = &check.probe else {
            panic!("{check:?}")
        };
        assert_eq!(probe.urls[0].path, "/");
        assert_eq!(probe.urls[0].status.0, [(200, 200)]);
    }
    // What keepalived takes and lvs leaves out is said with its line.
    assert!(
        imported.notes.contains(
            &"line 74: nat_mask is not written: it only applied to NAT, and lvs does direct \
              routing (keepalived 2 no longer reads it)"
                .to_owned()
        ),
        "{:?}",
        imported.notes
    );
    assert!(
        imported.notes.contains(
            &"line 75: persistence_timeout 0 is no persistence, lvs's default; not written"
                .to_owned()
        ),
        "{:?}",
        imported.notes
    );
}

#[test]
fn values_keepalived_takes_import_or_are_reported_with_their_line() {
    let service = |line: &str| {
        format!(
            "virtual_server 192.0.2.10 80 {{\n {line}\n real_server 192.0.2.21 80 {{\n }}\n}}\n"
        )
    };
    // Imported, and lvs check accepts the result.
    for line in [
        "persistence_timeout 0",
        "nat_mask 255.255.255.0",
        "ip_family inet",
        "persistence_timeout 2678400",
        "persistence_granularity 255.255.255.0",
        "delay_before_retry 0",
        "warmup 0",
        "delay_loop 0.5",
        "quorum 1",
        "sorry_server 192.0.2.99 8080",
    ] {
        let imported = import(&service(line), None).unwrap();
        assert!(
            imported.problems.is_empty(),
            "{line}: {:?}",
            imported.problems
        );
        crate::logic::config::parse(&imported.to_toml().unwrap(), "imported.toml")
            .unwrap_or_else(|e| panic!("{line}: {e}"));
    }
    // Reported, with the line.
    let cases = [
        (
            "nat_mask 255.0.255.0",
            "line 2: \"255.0.255.0\" is not an IPv4 netmask",
        ),
        (
            "ip_family inet6",
            "line 2: ip_family inet6 does not match the service address 192.0.2.10; the service \
             is not imported",
        ),
        (
            "persistence_timeout -5",
            "line 2: persistence_timeout: \"-5\" is not a whole number",
        ),
        ("smtp_alert", "line 2: smtp_alert is not imported"),
        // keepalived ignores these as invalid, or corrects them; lvs's config would refuse
        // them, so the import says so rather than write them.
        (
            "delay_loop 0",
            "line 2: delay_loop: 0 is not a number of seconds more than 0 and at most 86400",
        ),
        (
            "connect_timeout 0",
            "line 2: connect_timeout: 0 is not a number of seconds more than 0 and at most 86400",
        ),
        (
            "delay_loop 100000",
            "line 2: delay_loop: 100000 is not a number of seconds more than 0 and at most 86400",
        ),
        (
            "quorum 0",
            "line 2: quorum must be at least 1 (keepalived sets 0 to 1; write 1)",
        ),
        (
            "retry 2000000",
            "line 2: retry: 2000000 is out of range 0..=1000000",
        ),
    ];
    for (line, expected) in cases {
        let imported = import(&service(line), None).unwrap();
        let got: Vec<String> = imported.problems.iter().map(ToString::to_string).collect();
        assert_eq!(got, [expected], "{line}");
    }
}

/// The `[sync]` section of an import of `text`, checked by lvs's config as `lvs check` would.
fn imported_sync(text: &str) -> (crate::logic::sync::SyncConfig, Imported) {
    let imported = import(text, None).unwrap();
    assert!(imported.problems.is_empty(), "{:?}", imported.problems);
    let config = crate::logic::config::parse(&imported.to_toml().unwrap(), "imported.toml")
        .unwrap_or_else(|e| panic!("lvs check would refuse the import: {e}"));
    (config.sync.expect("a [sync] section"), imported)
}

#[test]
fn the_sync_daemon_imports_to_both_daemons_with_a_key_file() {
    use crate::logic::sync::{SyncDaemon, SyncRole};

    let text = "global_defs {\n lvs_sync_daemon eth1 VI_1 id 51 maxlen 1400 port 9000 ttl 2 \
                group 239.0.0.9\n}\nvrrp_instance VI_1 {\n interface eth0\n virtual_router_id 7\n}\n";
    let (sync, imported) = imported_sync(text);
    assert_eq!(sync.key_file, std::path::PathBuf::from("/etc/lvs/sync.key"));
    let mut master = SyncDaemon::with_defaults(SyncRole::Master, "eth1");
    master.sync_id = crate::base::values::SyncId::new(51).unwrap();
    master.max_len = crate::base::values::SyncMaxLen::new(1400).unwrap();
    master.port = crate::base::values::Port::new(9000).unwrap();
    master.ttl = crate::base::values::MulticastTtl::new(2).unwrap();
    master.group = crate::base::values::MulticastGroup::new("239.0.0.9".parse().unwrap()).unwrap();
    let backup = SyncDaemon {
        role: SyncRole::Backup,
        ..master.clone()
    };
    assert_eq!(sync.daemons, [master, backup]);
    let notes = imported.notes.join("\n");
    for expected in [
        "line 2: lvs_sync_daemon imports to [sync] with both daemons: keepalived runs one, \
         master or backup by the VRRP state; lvs runs both at once",
        "line 2: lvs_sync_daemon is cut from the --vrrp-out file: keepalived would start the \
         kernel's IPVS sync daemon beside lvs's.",
        "line 2: sync.key_file /etc/lvs/sync.key signs the sync messages: create it once (head \
         -c 32 /dev/urandom > /etc/lvs/sync.key; chmod 600 /etc/lvs/sync.key) and copy the same \
         file to the other director.",
    ] {
        assert!(notes.contains(expected), "{notes}");
    }
}

#[test]
fn without_an_id_the_sync_id_is_the_vrrp_instances_as_in_keepalived() {
    let instance = "vrrp_instance VI_1 {\n interface eth0\n virtual_router_id 7\n}\n";
    for statement in [
        "global_defs {\n lvs_sync_daemon eth0 VI_1\n}\n",
        "global_defs {\n lvs_sync_daemon eth0 inst VI_1\n}\n",
    ] {
        let (sync, imported) = imported_sync(&format!("{statement}{instance}"));
        assert_eq!(sync.daemons[0].sync_id.get(), 7, "{statement}");
        assert!(
            imported.notes.contains(
                &"line 2: sync.syncid 7 is VRRP instance VI_1's virtual_router_id, keepalived's \
                  default."
                    .to_owned()
            ),
            "{:?}",
            imported.notes
        );
    }
    // keepalived's older form: the sync id after the instance, without `id`.
    let (sync, _) = imported_sync(&format!(
        "global_defs {{\n lvs_sync_daemon eth0 VI_1 9\n}}\n{instance}"
    ));
    assert_eq!(sync.daemons[0].sync_id.get(), 9);
    // keepalived 1's form, in the instance it belongs to.
    let (sync, _) = imported_sync(
        "vrrp_instance VI_1 {\n interface eth0\n virtual_router_id 8\n \
         lvs_sync_daemon_interface eth1\n}\n",
    );
    assert_eq!(sync.daemons[0].interface, "eth1");
    assert_eq!(sync.daemons[0].sync_id.get(), 8);
}

#[test]
fn a_bad_sync_daemon_value_is_reported_with_its_line_and_nothing_imported() {
    let instance = "vrrp_instance VI_1 {\n interface eth0\n virtual_router_id 7\n}\n";
    let cases = [
        (
            "lvs_sync_daemon",
            "line 2: lvs_sync_daemon needs an interface",
        ),
        (
            "lvs_sync_daemon eth0 VI_1 id 256",
            "line 2: lvs_sync_daemon id: sync id 256 is out of range 0..=255",
        ),
        (
            "lvs_sync_daemon eth0 VI_1 id x",
            "line 2: lvs_sync_daemon id: \"x\" is not a whole number",
        ),
        (
            "lvs_sync_daemon eth0 VI_1 maxlen 40",
            "line 2: lvs_sync_daemon maxlen: sync message length 40 is out of range 80..=65507",
        ),
        (
            "lvs_sync_daemon eth0 VI_1 port 0",
            "line 2: lvs_sync_daemon port: port 0 is out of range 1..=65535",
        ),
        (
            "lvs_sync_daemon eth0 VI_1 ttl 0",
            "line 2: lvs_sync_daemon ttl: multicast TTL 0 is out of range 1..=255",
        ),
        (
            "lvs_sync_daemon eth0 VI_1 group 192.0.2.1",
            "line 2: lvs_sync_daemon group: 192.0.2.1 is not a multicast group (224.0.0.0 to \
             239.255.255.255)",
        ),
        (
            "lvs_sync_daemon eth0 VI_1 group ff02::81",
            "line 2: lvs_sync_daemon group: ff02::81 is an IPv6 group: connection sync runs over \
             IPv4 multicast (IPv6 connections are synced over it too)",
        ),
        (
            "lvs_sync_daemon eth0 VI_1 ttl",
            "line 2: lvs_sync_daemon ttl needs a value",
        ),
        (
            "lvs_sync_daemon eth0 VI_1 id 1 fast",
            "line 2: unknown option fast of lvs_sync_daemon",
        ),
        (
            "lvs_sync_daemon a-very-long-interface VI_1",
            "line 2: lvs_sync_daemon: \"a-very-long-interface\" is not an interface name",
        ),
        (
            "lvs_sync_daemon eth0 VI_9",
            "line 2: lvs_sync_daemon names VRRP instance VI_9, which the file does not have \
             (keepalived then ignores it)",
        ),
        (
            "lvs_sync_daemon eth0",
            "line 2: lvs_sync_daemon needs a sync id: give `id N`, or name a VRRP instance with \
             a virtual_router_id",
        ),
    ];
    for (statement, expected) in cases {
        let text = format!("global_defs {{\n {statement}\n}}\n{instance}");
        let imported = import(&text, None).unwrap();
        let got: Vec<String> = imported.problems.iter().map(ToString::to_string).collect();
        assert_eq!(got, [expected], "{statement}");
        assert_eq!(imported.config.sync, None, "{statement}");
        crate::logic::config::parse(&imported.to_toml().unwrap(), "imported.toml")
            .unwrap_or_else(|e| panic!("{statement}: {e}"));
    }
    // keepalived takes the first and ignores the rest; the import says so.
    let text = format!(
        "global_defs {{\n lvs_sync_daemon eth0 VI_1 id 1\n}}\n{instance}\
         vrrp_instance VI_2 {{\n lvs_sync_daemon_interface eth1\n}}\n"
    );
    let imported = import(&text, None).unwrap();
    let got: Vec<String> = imported.problems.iter().map(ToString::to_string).collect();
    assert_eq!(
        got,
        [
            "line 9: lvs_sync_daemon_interface is given again (first on line 2); keepalived \
          ignores this one, and so does the import"
        ]
    );
    assert_eq!(imported.config.sync.map(|sync| sync.syncid), Some(1));
}

#[test]
fn keepalived_corrections_are_noted_and_contradictions_reported() {
    let text = "virtual_server 192.0.2.10 80 {\n\
                 sorry_server 192.0.2.99 8080\n\
                 real_server 192.0.2.21 80 {\n\
                  uthreshold 3\n\
                  lthreshold 5\n\
                 }\n\
                }\n";
    let imported = import(text, None).unwrap();
    let problems: Vec<String> = imported.problems.iter().map(ToString::to_string).collect();
    assert_eq!(
        problems,
        ["line 5: lower threshold 5 is above upper threshold 3"]
    );
    assert!(
        imported.notes.contains(
            &"line 2: sorry_server port 8080 is the service port 80, as keepalived resets it"
                .to_owned()
        ),
        "{:?}",
        imported.notes
    );
    let service = &imported.config.virtual_server[0];
    assert_eq!(service.sorry_server.as_ref().map(|s| s.port), Some(80));
    assert_eq!(service.real_server[0].lthreshold, None);
    crate::logic::config::parse(&imported.to_toml().unwrap(), "imported.toml").unwrap();
}

/// keepalived takes any text as an HTTP_GET path; lvs's config takes only a request path, so
/// the import reports another with its line rather than write a TOML `lvs check` refuses (a
/// case the keepalived fuzz target found).
#[test]
fn a_url_path_that_is_not_a_request_path_is_reported_with_its_line() {
    let text = "virtual_server 10.0.0.1 80 {\n\
                \x20   lb_algo rr\n\
                \x20   lb_kind DR\n\
                \x20   real_server 10.0.0.11 80 {\n\
                \x20       HTTP_GET {\n\
                \x20           url {\n\
                \x20               path 8\n\
                \x20           }\n\
                \x20       }\n\
                \x20   }\n\
                }\n";
    let imported = import(text, Some("eth0")).unwrap();
    let got: Vec<String> = imported.problems.iter().map(ToString::to_string).collect();
    assert_eq!(
        got,
        [
            "line 1: this service is not imported: without what is left out below, lvs check would refuse it",
            "line 7: \"8\" is not a request path (it starts with '/')",
        ]
    );
}

/// An HTTP_GET without a url is reported with its line, not written to a TOML `lvs check`
/// refuses (found by the keepalived fuzz target in CI).
#[test]
fn an_http_get_without_a_url_is_reported_with_its_line() {
    let text = "virtual_server 10.0.0.1 80 {\n\
                \x20   lb_algo rr\n\
                \x20   lb_kind DR\n\
                \x20   real_server 10.0.0.11 80 {\n\
                \x20       HTTP_GET {\n\
                \x20           connect_timeout 3\n\
                \x20       }\n\
                \x20   }\n\
                }\n";
    let imported = import(text, Some("eth0")).unwrap();
    let got: Vec<String> = imported.problems.iter().map(ToString::to_string).collect();
    assert_eq!(
        got,
        [
            "line 1: this service is not imported: without what is left out below, lvs check would refuse it",
            "line 5: HTTP_GET has no url: keepalived does not run it, and lvs needs at least one",
        ]
    );
}

/// A url without a path is reported with its line, not written to a TOML `lvs check` refuses
/// (found by the keepalived fuzz target in CI).
#[test]
fn a_url_without_a_path_is_reported_with_its_line() {
    let text = "virtual_server 10.0.0.1 80 {\n\
                \x20   lb_algo rr\n\
                \x20   lb_kind DR\n\
                \x20   real_server 10.0.0.11 80 {\n\
                \x20       HTTP_GET {\n\
                \x20           url {\n\
                \x20               status_code 200\n\
                \x20           }\n\
                \x20       }\n\
                \x20   }\n\
                }\n";
    let imported = import(text, Some("eth0")).unwrap();
    let got: Vec<String> = imported.problems.iter().map(ToString::to_string).collect();
    assert_eq!(
        got,
        [
            "line 1: this service is not imported: without what is left out below, lvs check would refuse it",
            "line 6: url has no path: keepalived ignores it, and lvs needs one",
        ]
    );
}

/// A script line that cannot be split into words is reported with its line, by the config's
/// rule for scripts, not written to a TOML `lvs check` refuses (found by the keepalived fuzz
/// target).
#[test]
fn a_script_that_cannot_be_split_into_words_is_reported_with_its_line() {
    let text = "virtual_server 10.0.0.1 80 {\n\
                \x20   lb_algo rr\n\
                \x20   lb_kind DR\n\
                \x20   quorum_up \"/bin/up 'unclosed\"\n\
                \x20   real_server 10.0.0.11 80 {\n\
                \x20       notify_down \"\"\n\
                \x20       MISC_CHECK {\n\
                \x20           misc_path \"/usr/local/bin/check \\\"unclosed\"\n\
                \x20       }\n\
                \x20   }\n\
                }\n";
    let imported = import(text, Some("eth0")).unwrap();
    let got: Vec<String> = imported.problems.iter().map(ToString::to_string).collect();
    assert_eq!(
        got,
        [
            "line 1: this service is not imported: without what is left out below, lvs check would refuse it",
            "line 4: quorum_up: cannot split \"/bin/up 'unclosed\" into words: missing closing quote",
            "line 6: notify_down: no program given",
            "line 8: misc_path: cannot split \"/usr/local/bin/check \\\"unclosed\" into words: missing closing quote",
        ]
    );
}

/// Every rule of the config that the import does not spell out itself is still applied to
/// each imported service, and what it refuses is reported at the keepalived statement it came
/// from; the service is left out whole, the others are imported.
#[test]
fn what_the_config_refuses_is_reported_at_its_statement_and_leaves_the_service_out() {
    let url = |extra: &str| {
        format!(
            "virtual_server 10.0.0.1 80 {{\n\
             \x20   lb_algo rr\n\
             \x20   real_server 10.0.0.11 80 {{\n\
             \x20       HTTP_GET {{\n\
             \x20           url {{\n\
             \x20               path /\n\
             {extra}\
             \x20           }}\n\
             \x20       }}\n\
             \x20   }}\n\
             }}\n\
             virtual_server 10.0.0.2 80 {{\n\
             \x20   real_server 10.0.0.12 80\n\
             }}\n"
        )
    };
    let cases = [
        (
            "                digest zz\n",
            "line 7: digest: \"zz\" is not an MD5 digest (32 hex digits); the service is not imported",
        ),
        (
            "                regex \"a(b\"\n",
            "line 7: regex: invalid regex \"a(b\": unclosed group; the service is not imported",
        ),
        (
            "                regex ab\n                regex_min_offset 10\n                regex_max_offset 2\n",
            "line 8: regex_min_offset: regex_min_offset 10 is past regex_max_offset 2; the service is not imported",
        ),
        (
            "                virtualhost \"\"\n",
            "line 7: virtualhost: \"\" is not a host name; the service is not imported",
        ),
    ];
    for (extra, expected) in cases {
        let imported = import(&url(extra), Some("eth0")).unwrap();
        let got: Vec<String> = imported.problems.iter().map(ToString::to_string).collect();
        assert_eq!(got, [expected], "{extra}");
        let services: Vec<&str> = imported
            .config
            .virtual_server
            .iter()
            .map(|s| s.address.as_str())
            .collect();
        assert_eq!(services, ["10.0.0.2"], "{extra}");
        let toml = imported.to_toml().unwrap();
        crate::logic::config::parse(&toml, "imported.toml").unwrap();
    }

    let misc = "virtual_server 10.0.0.1 80 {\n\
                \x20   real_server 10.0.0.11 80 {\n\
                \x20       MISC_CHECK {\n\
                \x20           misc_path /bin/true\n\
                \x20           user nosuchuser-lvs-test\n\
                \x20       }\n\
                \x20   }\n\
                }\n";
    let imported = import(misc, Some("eth0")).unwrap();
    let got: Vec<String> = imported.problems.iter().map(ToString::to_string).collect();
    assert_eq!(
        got,
        [
            "line 5: user: there is no user \"nosuchuser-lvs-test\" on this system; the service is not imported"
        ]
    );
}

/// A VRRP interface name the kernel would refuse is reported, and the director's interface is
/// left a placeholder.
#[test]
fn a_vrrp_interface_that_is_no_interface_name_is_reported() {
    let text =
        "vrrp_instance VI_1 {\n    interface \"eth 0\"\n}\nvirtual_server 10.0.0.1 80 {\n}\n";
    let imported = import(text, None).unwrap();
    let got: Vec<String> = imported.problems.iter().map(ToString::to_string).collect();
    assert_eq!(
        got,
        ["line 2: \"eth 0\" is not an interface name; director.interface is left a placeholder"]
    );
    assert_eq!(imported.config.director.interface, "eth0");
    assert_eq!(imported.config.director.manage_vips, Some(false));
}

mod datagram;

#[test]
fn an_ipv6_virtual_server_imports_with_its_prefix_length_and_checks() {
    let text = "virtual_server 2001:db8::10 443 {
    ip_family inet6
    lb_algo sh
    protocol TCP
    persistence_timeout 600
    persistence_granularity 64
    real_server 2001:db8::11 443 {
        weight 2
        TCP_CHECK {
            connect_timeout 3
        }
    }
    real_server 2001:db8::12 443 {
        PING_CHECK {
        }
    }
}
";
    let imported = import(text, Some("eth0")).unwrap();
    assert!(imported.problems.is_empty(), "{:?}", imported.problems);
    let toml = imported.to_toml().unwrap();
    let config = crate::logic::config::parse(&toml, "imported.toml")
        .unwrap_or_else(|e| panic!("the import is not a valid lvs config: {e}\n{toml}"));
    let service = &config.services[0];
    assert_eq!(
        service.address,
        "2001:db8::10".parse::<std::net::IpAddr>().unwrap()
    );
    assert_eq!(
        service.persistence.map(|p| p.netmask.to_string()),
        Some("64".to_owned())
    );
    let servers: Vec<String> = service
        .real_servers
        .iter()
        .map(|rs| rs.address.to_string())
        .collect();
    assert_eq!(servers, ["2001:db8::11", "2001:db8::12"]);

    // What keepalived would refuse or lvs cannot forward is reported at its line.
    let cases = [
        (
            "virtual_server 2001:db8::10 80 {\n    persistence_timeout 60\n    persistence_granularity 255.255.255.0\n}\n",
            "line 3: \"255.255.255.0\" is not an IPv6 prefix length (0 to 128), as an IPv6 service needs",
        ),
        (
            "virtual_server 192.0.2.10 80 {\n    persistence_timeout 60\n    persistence_granularity 64\n}\n",
            "line 3: \"64\" is not an IPv4 netmask",
        ),
        (
            "virtual_server 2001:db8::10 80 {\n    ip_family inet\n}\n",
            "line 2: ip_family inet does not match the service address 2001:db8::10; the service \
             is not imported",
        ),
    ];
    for (text, expected) in cases {
        let imported = import(text, Some("eth0")).unwrap();
        let got: Vec<String> = imported.problems.iter().map(ToString::to_string).collect();
        assert!(got.iter().any(|p| p == expected), "{text}: {got:?}");
    }

    // A real server of the other family is left out by the config's own rule, at its line.
    let mixed = "virtual_server 2001:db8::10 80 {\n    real_server 192.0.2.11 80 {\n    }\n}\n";
    let imported = import(mixed, Some("eth0")).unwrap();
    let got: Vec<String> = imported.problems.iter().map(ToString::to_string).collect();
    assert!(
        got.iter()
            .any(|p| p.starts_with("line 2:") && p.contains("not in the service's family")),
        "{got:?}"
    );
    let toml = imported.to_toml().unwrap();
    crate::logic::config::parse(&toml, "imported.toml").expect("what is imported passes lvs check");
}
