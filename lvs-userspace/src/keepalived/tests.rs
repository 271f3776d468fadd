use super::*;
use crate::golden;

const REALISTIC: &str = include_str!("testdata/keepalived.conf");

#[test]
fn a_realistic_file_imports_to_its_golden_toml() {
    let imported = import(REALISTIC, None).unwrap();
    golden::check(
        "src/keepalived/testdata/keepalived.toml",
        &imported.to_toml().unwrap(),
    );
}

#[test]
fn what_is_not_imported_is_reported_with_its_line() {
    let imported = import(REALISTIC, None).unwrap();
    let got: Vec<String> = imported.problems.iter().map(ToString::to_string).collect();
    let expected = [
        "line 61: direct routing cannot change the port: the real server must listen on the service port 80, not 8080; the server is not imported",
        "line 71: mh-port only applies to the mh scheduler",
        "line 82: SMTP_CHECK is not supported by lvs",
        "line 92: one-packet scheduling (ops) is not supported by lvs",
        "line 99: user in MISC_CHECK is not imported",
        "line 106: lb_kind NAT is not supported (lvs does direct routing, DR); the service is not imported",
        "line 112: firewall-mark services are not supported by lvs",
        "line 116: IPv6 services are not supported by lvs (IPv4 only)",
        "line 120: virtual_server_group is not supported by lvs; write its members as virtual_server blocks",
        "line 125: scheduler lblc is not supported by lvs (it has rr wrr lc wlc sed nq sh dh mh); lvs's default applies",
        "line 126: frobnicate is not imported",
        "line 128: weight 70000 is out of range 0..=65535",
        "line 132: include /etc/keepalived/conf.d/*.conf is not followed; import that file on its own",
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
    assert_eq!(ports, [80, 443, 53, 25]);
    let web = &services[0];
    assert_eq!(web["lb_algo"].as_str(), Some("wlc"));
    let checker = &web["real_server"][0]["HTTP_GET"];
    assert_eq!(checker["retry"].as_integer(), Some(3));
    assert_eq!(checker["url"][1]["status_code"].as_integer(), Some(200));
    // The service-level retry stays at the service level, where lvs inherits it...
    assert_eq!(web["retry"].as_integer(), Some(3));
    assert!(web["real_server"][1]["TCP_CHECK"].get("retry").is_none());
    // And the director accepts it as its configuration, health checks included.
    let config = crate::config::parse(&text, "imported.toml")
        .unwrap_or_else(|e| panic!("the import is not a valid lvs config: {e}"));
    assert_eq!(config.services.len(), 4);
    // ...so the TCP_CHECK that sets none still retries 3 times, as under keepalived.
    let tcp = config.services[0].health.real_servers[&"192.0.2.22".parse().unwrap()]
        .check
        .as_ref()
        .unwrap();
    assert_eq!(tcp.timing.retry, 3);
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
