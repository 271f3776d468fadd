//! The health keywords in a config file: values, defaults, inheritance, and errors reported
//! as `file:line: field: message`.

use std::net::{Ipv4Addr, SocketAddrV4};

use super::*;
use crate::logic::config::{self, Config};

const FULL: &str = r#"
[director]
interface = "eth0"

[[virtual_server]]
address = "10.0.0.100"
port = 80
delay_loop = 6
quorum = 2
hysteresis = 1
quorum_up = "/etc/lvs/quorum.sh 'up now'"
quorum_down = ["/etc/lvs/quorum.sh", "down"]
sorry_server = { address = "10.0.0.99", port = 80 }
alpha = true
omega = true
inhibit_on_failure = true

[[virtual_server.real_server]]
address = "10.0.0.11"
notify_up = "/etc/lvs/notify.sh up"
notify_down = "/etc/lvs/notify.sh down"
[virtual_server.real_server.HTTP_GET]
connect_timeout = 3
nb_get_retry = 2
delay_before_retry = 0.5
warmup = 4
http_protocol = "1.1"
virtualhost = "www.example.test"
connect_port = 8080
bindto = "10.0.0.1"
[[virtual_server.real_server.HTTP_GET.url]]
path = "/health"
status_code = [200, "300-399"]
digest = "9b3a0c85a887a256d6939da88aabd8cd"
[[virtual_server.real_server.HTTP_GET.url]]
path = "/other"
virtualhost = "other.test"

[[virtual_server.real_server]]
address = "10.0.0.12"
inhibit_on_failure = false
alpha = false
[virtual_server.real_server.SSL_GET]
enable_sni = true
sni_name = "tls.example.test"
verify_certificate = true
ca_file = "/etc/lvs/ca.pem"
[[virtual_server.real_server.SSL_GET.url]]
path = "/"

[[virtual_server.real_server]]
address = "10.0.0.13"
[virtual_server.real_server.TCP_CHECK]
connect_ip = "10.0.1.13"

[[virtual_server.real_server]]
address = "10.0.0.14"
[virtual_server.real_server.MISC_CHECK]
misc_path = "/usr/local/bin/check --host '10.0.0.14'"
misc_timeout = 2
misc_dynamic = true

[[virtual_server.real_server]]
address = "10.0.0.15"
"#;

fn parse(text: &str) -> Config {
    config::parse(text, "lvs.toml").unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn every_keyword_is_read() {
    let config = parse(FULL);
    let health = &config.services[0].health;
    assert_eq!(health.delay_loop, Duration::from_secs(6));
    assert_eq!((health.quorum, health.hysteresis), (2, 1));
    assert_eq!(
        health.quorum_up.as_ref().unwrap().argv,
        ["/etc/lvs/quorum.sh", "up now"]
    );
    assert_eq!(
        health.quorum_down.as_ref().unwrap().argv,
        ["/etc/lvs/quorum.sh", "down"]
    );
    assert_eq!(
        health.sorry_server,
        Some(Into::into(Ipv4Addr::new(10, 0, 0, 99)))
    );
    assert!(health.alpha && health.omega);

    let rs = |last| &health.real_servers[&IpAddr::from(Ipv4Addr::new(10, 0, 0, last))];
    let http = rs(11);
    assert!(http.inhibit_on_failure, "inherited from the service");
    assert_eq!(
        http.notify_down.as_ref().unwrap().argv,
        ["/etc/lvs/notify.sh", "down"]
    );
    let check = http.check.as_ref().unwrap();
    assert_eq!(
        check.timing,
        Timing {
            delay_loop: Duration::from_secs(6),
            connect_timeout: Duration::from_secs(3),
            retry: 2,
            delay_before_retry: Duration::from_millis(500),
            warmup: Duration::from_secs(4),
            alpha: true,
        }
    );
    let Probe::Http(probe) = &check.probe else {
        panic!("{check:?}")
    };
    assert_eq!(
        probe.endpoint,
        Endpoint {
            connect: SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 11), 8080).into(),
            bind: Some(Ipv4Addr::new(10, 0, 0, 1).into()),
        }
    );
    assert_eq!(probe.version, HttpVersion::Http11);
    assert_eq!(probe.tls, None);
    assert_eq!(
        probe.urls[0].status,
        StatusCodes(vec![(200, 200), (300, 399)])
    );
    assert_eq!(probe.urls[0].digest.unwrap()[..2], [0x9b, 0x3a]);
    assert_eq!(
        probe.urls[0].virtualhost.as_deref(),
        Some("www.example.test")
    );
    assert_eq!(probe.urls[1].virtualhost.as_deref(), Some("other.test"));
    assert_eq!(probe.urls[1].status, StatusCodes::default());
    assert_eq!(
        check.to_string(),
        "HTTP_GET http://10.0.0.11:8080/health,/other"
    );

    let ssl = rs(12);
    assert!(!ssl.inhibit_on_failure);
    let ssl_check = ssl.check.as_ref().unwrap();
    assert!(!ssl_check.timing.alpha, "the real server's alpha wins");
    assert_eq!(ssl_check.timing.retry, 1, "keepalived's default");
    let Probe::Http(ssl_probe) = &ssl_check.probe else {
        panic!()
    };
    assert_eq!(
        ssl_probe.tls,
        Some(TlsOptions {
            sni: Some("tls.example.test".into()),
            verify: true,
            ca_file: Some("/etc/lvs/ca.pem".into()),
        })
    );
    assert_eq!(
        ssl_probe.version,
        HttpVersion::Http10,
        "keepalived's default"
    );
    assert_eq!(ssl_probe.endpoint.connect.port(), 80);

    let tcp = rs(13).check.as_ref().unwrap();
    assert_eq!(tcp.to_string(), "TCP_CHECK 10.0.1.13:80");
    assert_eq!(tcp.timing.connect_timeout, DEFAULT_CONNECT_TIMEOUT);

    let misc = rs(14).check.as_ref().unwrap();
    let Probe::Misc(probe) = &misc.probe else {
        panic!()
    };
    assert_eq!(
        probe.command.argv,
        ["/usr/local/bin/check", "--host", "10.0.0.14"]
    );
    assert_eq!(probe.timeout, Duration::from_secs(2));
    assert!(probe.dynamic);
    assert_eq!(misc.timing.retry, 0, "scripts are not retried by default");

    assert_eq!(rs(15).check, None);
    assert!(health.is_checked());
}

#[test]
fn defaults_are_keepalived_s() {
    let config = parse(
        "[director]\ninterface = \"eth0\"\n[[virtual_server]]\naddress = \"10.0.0.1\"\nport = 443\n\
         [[virtual_server.real_server]]\naddress = \"10.0.0.2\"\n\
         [virtual_server.real_server.MISC_CHECK]\nmisc_path = [\"/bin/true\"]\n",
    );
    let health = &config.services[0].health;
    assert_eq!(health.delay_loop, DEFAULT_DELAY_LOOP);
    assert_eq!((health.quorum, health.hysteresis), (1, 0));
    let check = health.real_servers[&IpAddr::from(Ipv4Addr::new(10, 0, 0, 2))]
        .check
        .as_ref()
        .unwrap();
    let Probe::Misc(misc) = &check.probe else {
        panic!()
    };
    assert_eq!(
        misc.timeout, DEFAULT_DELAY_LOOP,
        "misc_timeout defaults to delay_loop"
    );
    assert!(!config.services[0].health.alpha);
}

/// Replaces `from` in the full file and returns the error text.
fn error_of(from: &str, to: &str) -> String {
    assert!(FULL.contains(from), "fixture does not contain {from:?}");
    match config::parse(&FULL.replacen(from, to, 1), "lvs.toml") {
        Ok(_) => panic!("accepted {to:?}"),
        Err(error) => error.to_string(),
    }
}

#[test]
fn bad_values_are_reported_with_file_line_and_field() {
    let vs = "virtual_server[0]";
    let cases = [
        (
            "delay_loop = 6",
            "delay_loop = 0",
            format!("lvs.toml:8: {vs}.delay_loop: 0 is not a number of seconds more than 0"),
        ),
        (
            "quorum = 2",
            "quorum = 0",
            format!("lvs.toml:9: {vs}.quorum: quorum must be at least 1"),
        ),
        (
            "hysteresis = 1",
            "hysteresis = -1",
            format!("lvs.toml:10: {vs}.hysteresis: -1 is out of range"),
        ),
        (
            "quorum_up = \"/etc/lvs/quorum.sh 'up now'\"",
            "quorum_up = \"/x 'unclosed\"",
            format!("lvs.toml:11: {vs}.quorum_up: cannot split"),
        ),
        (
            "quorum_down = [\"/etc/lvs/quorum.sh\", \"down\"]",
            "quorum_down = []",
            format!("lvs.toml:12: {vs}.quorum_down: no program given"),
        ),
        (
            "port = 80 }",
            "port = 81 }",
            format!("lvs.toml:13: {vs}.sorry_server.port: direct routing cannot change the port"),
        ),
        (
            "address = \"10.0.0.99\"",
            "address = \"10.0.0.11\"",
            format!("{vs}.real_server[0]: 10.0.0.11 is also the sorry server"),
        ),
        (
            "nb_get_retry = 2",
            "nb_get_retry = -2",
            format!("lvs.toml:24: {vs}.real_server[0].HTTP_GET.retry: -2 is out of range"),
        ),
        (
            "http_protocol = \"1.1\"",
            "http_protocol = \"2\"",
            format!(
                "lvs.toml:27: {vs}.real_server[0].HTTP_GET.http_protocol: unknown HTTP version \"2\""
            ),
        ),
        (
            "connect_port = 8080",
            "connect_port = 0",
            format!(
                "lvs.toml:29: {vs}.real_server[0].HTTP_GET.connect_port: port 0 is out of range"
            ),
        ),
        (
            "bindto = \"10.0.0.1\"",
            "bindto = \"nowhere\"",
            format!(
                "lvs.toml:30: {vs}.real_server[0].HTTP_GET.bindto: \"nowhere\" is not a usable IP address"
            ),
        ),
        (
            "path = \"/health\"",
            "path = \"health\"",
            format!(
                "lvs.toml:32: {vs}.real_server[0].HTTP_GET.url[0].path: \"health\" is not a request path"
            ),
        ),
        (
            "status_code = [200, \"300-399\"]",
            "status_code = [200, \"399-300\"]",
            format!(
                "lvs.toml:33: {vs}.real_server[0].HTTP_GET.url[0].status_code: \"399-300\" is not a status code"
            ),
        ),
        (
            "status_code = [200, \"300-399\"]",
            "status_code = 700",
            format!(
                "lvs.toml:33: {vs}.real_server[0].HTTP_GET.url[0].status_code: 700 is not a status code"
            ),
        ),
        (
            "digest = \"9b3a0c85a887a256d6939da88aabd8cd\"",
            "digest = \"xyz\"",
            format!(
                "lvs.toml:34: {vs}.real_server[0].HTTP_GET.url[0].digest: \"xyz\" is not an MD5 digest"
            ),
        ),
        (
            "connect_timeout = 3",
            "connect_timeout = 3\nmisc_dynamic = true",
            format!(
                "lvs.toml:24: {vs}.real_server[0].HTTP_GET.misc_dynamic: not a HTTP_GET keyword (it belongs to MISC_CHECK)"
            ),
        ),
        (
            "connect_ip = \"10.0.1.13\"",
            "connect_ip = \"10.0.1.13\"\n[[virtual_server.real_server.TCP_CHECK.url]]\npath = \"/\"",
            format!(
                "{vs}.real_server[2].TCP_CHECK.url: not a TCP_CHECK keyword (it belongs to HTTP_GET and SSL_GET)"
            ),
        ),
        (
            "misc_timeout = 2",
            "misc_timeout = 2\nconnect_port = 1",
            format!("{vs}.real_server[3].MISC_CHECK.connect_port: not a MISC_CHECK keyword"),
        ),
        (
            "sni_name = \"tls.example.test\"",
            "",
            format!("{vs}.real_server[1].SSL_GET.enable_sni: SNI needs a name"),
        ),
        (
            "verify_certificate = true",
            "verify_certificate = false",
            format!(
                "{vs}.real_server[1].SSL_GET.ca_file: ca_file is only used with verify_certificate = true"
            ),
        ),
        (
            "misc_path = \"/usr/local/bin/check --host '10.0.0.14'\"",
            "",
            format!("{vs}.real_server[3].MISC_CHECK.misc_path: MISC_CHECK needs misc_path"),
        ),
        (
            "[[virtual_server.real_server.HTTP_GET.url]]\npath = \"/health\"",
            "[virtual_server.real_server.TCP_CHECK]\n[[virtual_server.real_server.HTTP_GET.url]]\npath = \"/health\"",
            format!(
                "{vs}.real_server[0].TCP_CHECK: a real server has one checker; HTTP_GET is already set"
            ),
        ),
        (
            "nb_get_retry = 2",
            "nb_get_retry = 2\nretry = 3",
            "duplicate field `retry`".to_owned(),
        ),
        (
            "warmup = 4",
            "warmup = 4\nfall = 3",
            "lvs.toml:27: toml: unknown field `fall`".to_owned(),
        ),
    ];
    for (from, to, expected) in cases {
        let error = error_of(from, to);
        assert!(
            error.contains(&expected),
            "for {to:?}:\n got: {error}\nwant: {expected}"
        );
    }
}

#[test]
fn a_checker_without_url_is_an_error() {
    let text = "[director]\ninterface = \"eth0\"\n[[virtual_server]]\naddress = \"10.0.0.1\"\nport = 80\n\
         [[virtual_server.real_server]]\naddress = \"10.0.0.2\"\n[virtual_server.real_server.HTTP_GET]\n";
    let error = config::parse(text, "x.toml").unwrap_err().to_string();
    assert!(
        error.contains("x.toml:6: virtual_server[0].real_server[0].HTTP_GET.url: at least one url"),
        "{error}"
    );
}

const LEVELS: &str = r#"
[director]
interface = "eth0"

[[virtual_server]]
address = "10.0.0.100"
port = 80
delay_loop = 6
connect_timeout = 4
retry = 3
delay_before_retry = 2
warmup = 5
virtualhost = "service.test"

[[virtual_server.real_server]]
address = "10.0.0.11"
[virtual_server.real_server.TCP_CHECK]

[[virtual_server.real_server]]
address = "10.0.0.12"
delay_loop = 7
nb_get_retry = 2
warmup = 0
virtualhost = "server.test"
[virtual_server.real_server.HTTP_GET]
connect_timeout = 1
[[virtual_server.real_server.HTTP_GET.url]]
path = "/"

[[virtual_server.real_server]]
address = "10.0.0.13"
connect_timeout = 9
[virtual_server.real_server.MISC_CHECK]
misc_path = "/bin/true"

[[virtual_server.real_server]]
address = "10.0.0.14"
[virtual_server.real_server.HTTP_GET]
virtualhost = "checker.test"
[[virtual_server.real_server.HTTP_GET.url]]
path = "/a"
[[virtual_server.real_server.HTTP_GET.url]]
path = "/b"
virtualhost = "url.test"
"#;

fn check_of(config: &Config, last: u8) -> &Check {
    config.services[0].health.real_servers[&IpAddr::from(Ipv4Addr::new(10, 0, 0, last))]
        .check
        .as_ref()
        .unwrap()
}

fn hosts_of(check: &Check) -> Vec<Option<&str>> {
    let Probe::Http(probe) = &check.probe else {
        panic!("{check:?}")
    };
    probe
        .urls
        .iter()
        .map(|url| url.virtualhost.as_deref())
        .collect()
}

#[test]
fn checkers_inherit_timing_from_the_real_server_then_the_service() {
    let config = parse(LEVELS);
    let from_service = check_of(&config, 11).timing;
    assert_eq!(
        from_service,
        Timing {
            delay_loop: Duration::from_secs(6),
            connect_timeout: Duration::from_secs(4),
            retry: 3,
            delay_before_retry: Duration::from_secs(2),
            warmup: Duration::from_secs(5),
            alpha: false,
        },
        "every value from the service"
    );
    let mixed = check_of(&config, 12).timing;
    assert_eq!(
        mixed,
        Timing {
            delay_loop: Duration::from_secs(7),
            connect_timeout: Duration::from_secs(1),
            retry: 2,
            delay_before_retry: Duration::from_secs(2),
            warmup: Duration::ZERO,
            alpha: false,
        },
        "checker over real server over service"
    );
    let program = check_of(&config, 13);
    assert_eq!(program.timing.retry, 3, "retry is inherited by scripts too");
    assert_eq!(
        program.timing.connect_timeout, DEFAULT_CONNECT_TIMEOUT,
        "a script has no connection to time out"
    );
    let Probe::Misc(misc) = &program.probe else {
        panic!()
    };
    assert_eq!(
        misc.timeout,
        Duration::from_secs(6),
        "misc_timeout defaults to the inherited delay_loop"
    );
}

#[test]
fn virtualhost_is_inherited_down_to_each_url() {
    let config = parse(LEVELS);
    assert_eq!(hosts_of(check_of(&config, 12)), [Some("server.test")]);
    assert_eq!(
        hosts_of(check_of(&config, 14)),
        [Some("checker.test"), Some("url.test")]
    );
    let only_service = LEVELS.replace("virtualhost = \"checker.test\"\n", "");
    assert_eq!(
        hosts_of(check_of(&parse(&only_service), 14)),
        [Some("service.test"), Some("url.test")]
    );
}

#[test]
fn bad_inherited_values_name_their_own_level() {
    let vs = "virtual_server[0]";
    let cases = [
        (
            "connect_timeout = 4",
            "connect_timeout = 0",
            format!("lvs.toml:9: {vs}.connect_timeout: 0 is not a number of seconds more than 0"),
        ),
        (
            "retry = 3",
            "retry = -1",
            format!("lvs.toml:10: {vs}.retry: -1 is out of range 0..=1000000"),
        ),
        (
            "delay_before_retry = 2",
            "delay_before_retry = -2",
            format!(
                "lvs.toml:11: {vs}.delay_before_retry: -2 is not a number of seconds 0 or more"
            ),
        ),
        (
            "warmup = 5",
            "warmup = 100000",
            format!("lvs.toml:12: {vs}.warmup: 100000 is not a number of seconds"),
        ),
        (
            "virtualhost = \"service.test\"",
            "virtualhost = \"two words\"",
            format!("lvs.toml:13: {vs}.virtualhost: \"two words\" is not a host name"),
        ),
        (
            "delay_loop = 7",
            "delay_loop = -7",
            format!("lvs.toml:21: {vs}.real_server[1].delay_loop: -7 is not a number of seconds"),
        ),
        (
            "nb_get_retry = 2",
            "nb_get_retry = 2.5",
            "lvs.toml:22: toml: invalid type: floating point `2.5`, expected i64".to_owned(),
        ),
        (
            "connect_timeout = 9",
            "connect_timeout = \"9\"",
            "lvs.toml:32: toml: invalid type: string \"9\", expected f64".to_owned(),
        ),
    ];
    for (from, to, expected) in cases {
        assert!(LEVELS.contains(from), "fixture does not contain {from:?}");
        let error = match config::parse(&LEVELS.replacen(from, to, 1), "lvs.toml") {
            Ok(_) => panic!("accepted {to:?}"),
            Err(error) => error.to_string(),
        };
        assert!(
            error.contains(&expected),
            "for {to:?}:\n got: {error}\nwant: {expected}"
        );
    }
}

#[test]
fn http_protocol_takes_keepalived_s_spellings() {
    let cases = [
        ("1.0", HttpVersion::Http10),
        ("1.0C", HttpVersion::Http10Close),
        ("1.0c", HttpVersion::Http10Close),
        ("1.0K", HttpVersion::Http10KeepAlive),
        ("1.1", HttpVersion::Http11),
    ];
    for (text, expected) in cases {
        let config = parse(&FULL.replace(
            "http_protocol = \"1.1\"",
            &format!("http_protocol = \"{text}\""),
        ));
        let check = config.services[0].health.real_servers
            [&IpAddr::from(Ipv4Addr::new(10, 0, 0, 11))]
            .check
            .as_ref()
            .unwrap();
        let Probe::Http(probe) = &check.probe else {
            panic!()
        };
        assert_eq!(probe.version, expected, "{text}");
    }
    let error = error_of("http_protocol = \"1.1\"", "http_protocol = \"1.1K\"");
    assert!(
        error.contains(
            "lvs.toml:27: virtual_server[0].real_server[0].HTTP_GET.http_protocol: unknown HTTP \
             version \"1.1K\" (expected \"1.0\", \"1.0C\", \"1.0K\" or \"1.1\")"
        ),
        "{error}"
    );
}

const REGEX: &str = r#"
[director]
interface = "eth0"
[[virtual_server]]
address = "10.0.0.100"
port = 80
[[virtual_server.real_server]]
address = "10.0.0.11"
[virtual_server.real_server.HTTP_GET]
[[virtual_server.real_server.HTTP_GET.url]]
path = "/health"
regex = "status: (ok|degraded)"
regex_no_match = false
regex_options = "caseless multiline"
regex_min_offset = 2
regex_max_offset = 100
[[virtual_server.real_server.HTTP_GET.url]]
path = "/errors"
regex = "error"
regex_no_match = true
regex_options = ["caseless"]
"#;

fn regexes(config: &Config) -> Vec<&BodyRegex> {
    let check = config.services[0].health.real_servers[&IpAddr::from(Ipv4Addr::new(10, 0, 0, 11))]
        .check
        .as_ref()
        .unwrap();
    let Probe::Http(probe) = &check.probe else {
        panic!()
    };
    probe
        .urls
        .iter()
        .map(|url| url.regex.as_ref().unwrap())
        .collect()
}

#[test]
fn url_regex_keys_are_read() {
    let config = parse(REGEX);
    let [health, errors] = regexes(&config)[..] else {
        panic!()
    };
    assert_eq!(
        health,
        &BodyRegex::new(
            "status: (ok|degraded)",
            &["multiline".into(), "caseless".into()],
            false,
            2,
            Some(100)
        )
        .unwrap()
    );
    assert!(health.finds(b"--STATUS: OK"));
    assert!(
        !health.finds(b"STATUS: OK"),
        "starts before regex_min_offset"
    );
    assert_eq!(errors.pattern(), "error");
    assert!(errors.judge(b"no ERROR here").is_err());
    assert!(errors.judge(b"fine").is_ok());
}

#[test]
fn bad_regex_keys_are_reported_with_file_line_and_field() {
    let url = "virtual_server[0].real_server[0].HTTP_GET.url";
    let cases = [
        (
            "regex = \"status: (ok|degraded)\"",
            "regex = \"status: (ok\"",
            format!("x.toml:12: {url}[0].regex: invalid regex \"status: (ok\": unclosed group"),
        ),
        (
            "regex = \"error\"",
            "regex = \"(e)\\\\1\"",
            format!("x.toml:19: {url}[1].regex: invalid regex"),
        ),
        (
            "regex_options = \"caseless multiline\"",
            "regex_options = \"caseless alt_bsux\"",
            format!(
                "x.toml:14: {url}[0].regex_options: \"alt_bsux\" is not a regex option lvs supports"
            ),
        ),
        (
            "regex_min_offset = 2",
            "regex_min_offset = 200",
            format!(
                "x.toml:15: {url}[0].regex_min_offset: regex_min_offset 200 is past regex_max_offset 100"
            ),
        ),
        (
            "regex_max_offset = 100",
            "regex_max_offset = -1",
            format!("x.toml:16: {url}[0].regex_max_offset: -1 is not an offset (0 or more)"),
        ),
        (
            "regex = \"error\"\n",
            "",
            format!("x.toml:19: {url}[1].regex_no_match: needs regex"),
        ),
    ];
    for (from, to, expected) in cases {
        assert!(REGEX.contains(from), "fixture does not contain {from:?}");
        let error = match config::parse(&REGEX.replacen(from, to, 1), "x.toml") {
            Ok(_) => panic!("accepted {to:?}"),
            Err(error) => error.to_string(),
        };
        assert!(
            error.contains(&expected),
            "for {to:?}:\n got: {error}\nwant: {expected}"
        );
    }
}

const MISC_USER: &str = r#"
[director]
interface = "eth0"
[[virtual_server]]
address = "10.0.0.100"
port = 80
[[virtual_server.real_server]]
address = "10.0.0.11"
[virtual_server.real_server.MISC_CHECK]
misc_path = "/usr/local/bin/check"
user = "root"
"#;

fn run_as_in(text: &str) -> Option<RunAs> {
    let config = parse(text);
    let check = config.services[0].health.real_servers[&IpAddr::from(Ipv4Addr::new(10, 0, 0, 11))]
        .check
        .clone()
        .unwrap();
    let Probe::Misc(misc) = check.probe else {
        panic!()
    };
    misc.run_as
}

#[test]
fn misc_check_user_names_a_user_and_maybe_a_group() {
    let root = RunAs {
        user: "root".into(),
        group: None,
        uid: 0,
        gid: 0,
    };
    assert_eq!(run_as_in(MISC_USER), Some(root.clone()));
    assert_eq!(
        run_as_in(&MISC_USER.replace("\"root\"", "\"root:root\"")),
        Some(RunAs {
            group: Some("root".into()),
            ..root
        })
    );
    assert_eq!(run_as_in(&MISC_USER.replace("user = \"root\"\n", "")), None);

    let field = "virtual_server[0].real_server[0]";
    let cases = [
        (
            "\"lvs-no-such-user\"",
            format!(
                "x.toml:11: {field}.MISC_CHECK.user: there is no user \"lvs-no-such-user\" on this system"
            ),
        ),
        (
            "\"root lvs-no-such-group\"",
            format!(
                "x.toml:11: {field}.MISC_CHECK.user: there is no group \"lvs-no-such-group\" on this system"
            ),
        ),
        (
            "\"a b c\"",
            format!("x.toml:11: {field}.MISC_CHECK.user: \"a b c\" is not a user name"),
        ),
    ];
    for (to, expected) in cases {
        let text = MISC_USER.replace("\"root\"", to);
        let error = config::parse(&text, "x.toml").unwrap_err().to_string();
        assert!(error.contains(&expected), "got: {error}\nwant: {expected}");
    }
    let on_http = FULL.replace(
        "connect_timeout = 3\n",
        "connect_timeout = 3\nuser = \"root\"\n",
    );
    let error = config::parse(&on_http, "lvs.toml").unwrap_err().to_string();
    assert!(
        error.contains(
            "lvs.toml:24: virtual_server[0].real_server[0].HTTP_GET.user: not a HTTP_GET keyword \
             (it belongs to MISC_CHECK)"
        ),
        "{error}"
    );
}

#[test]
fn a_checker_table_implied_by_its_urls_is_read() {
    let text = "[director]\ninterface = \"eth0\"\n[[virtual_server]]\naddress = \"10.0.0.1\"\n\
                port = 80\nretry = 2\n[[virtual_server.real_server]]\naddress = \"10.0.0.2\"\n\
                [[virtual_server.real_server.HTTP_GET.url]]\npath = \"/\"\n";
    let config = parse(text);
    let check = config.services[0].health.real_servers[&IpAddr::from(Ipv4Addr::new(10, 0, 0, 2))]
        .check
        .as_ref()
        .unwrap();
    assert_eq!(check.to_string(), "HTTP_GET http://10.0.0.2:80/");
    assert_eq!(check.timing.retry, 2);
}

#[test]
fn every_level_takes_every_timing_key() {
    // The six keys, with `nb_get_retry` for `retry`, written at one level only: the checker
    // gets them from whichever level wrote them.
    let keys = "delay_loop = 7\nconnect_timeout = 2\nnb_get_retry = 4\n\
                delay_before_retry = 1.5\nwarmup = 3\nalpha = true\n";
    let expected = Timing {
        delay_loop: Duration::from_secs(7),
        connect_timeout: Duration::from_secs(2),
        retry: 4,
        delay_before_retry: Duration::from_millis(1500),
        warmup: Duration::from_secs(3),
        alpha: true,
    };
    let check = |service: &str, real_server: &str, checker: &str| {
        let text = format!(
            "[director]\ninterface = \"eth0\"\n\
             [[virtual_server]]\naddress = \"10.0.0.1\"\nport = 80\n{service}\
             [[virtual_server.real_server]]\naddress = \"10.0.0.2\"\n{real_server}\
             [virtual_server.real_server.TCP_CHECK]\n{checker}"
        );
        let config = config::parse(&text, "x.toml").expect("valid");
        let health =
            &config.services[0].health.real_servers[&IpAddr::from(Ipv4Addr::new(10, 0, 0, 2))];
        let timing = health.check.as_ref().expect("a checker").timing;
        assert_eq!(timing, expected, "{text}");
    };
    check(keys, "", "");
    check("", keys, "");
    check("", "", keys);
}

mod datagram;
