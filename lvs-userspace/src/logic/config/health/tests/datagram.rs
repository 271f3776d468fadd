//! `UDP_CHECK`, `DNS_CHECK` and `PING_CHECK` in a config file: every key, keepalived's
//! defaults, and errors reported as `file:line: field: message`.

use std::{
    net::{Ipv4Addr, SocketAddrV4},
    time::Duration,
};

use super::super::*;
use crate::logic::config;

const DATAGRAM: &str = r#"
[director]
interface = "eth0"

[[virtual_server]]
address = "10.0.0.100"
port = 53
protocol = "udp"
delay_loop = 4

[[virtual_server.real_server]]
address = "10.0.0.11"
[virtual_server.real_server.UDP_CHECK]
payload = "00 01 0203"
require_reply = "00 0x"
min_reply_length = 2
max_reply_length = 512
connect_port = 5353
bindto = "10.0.0.1"

[[virtual_server.real_server]]
address = "10.0.0.12"
[virtual_server.real_server.DNS_CHECK]
type = "mx"
name = "example.test."
connect_timeout = 2

[[virtual_server.real_server]]
address = "10.0.0.13"
[virtual_server.real_server.PING_CHECK]
connect_ip = "10.0.1.13"
retry = 4

[[virtual_server.real_server]]
address = "10.0.0.14"
[virtual_server.real_server.UDP_CHECK]

[[virtual_server.real_server]]
address = "10.0.0.15"
[virtual_server.real_server.DNS_CHECK]
"#;

fn checks_of(text: &str) -> Vec<Check> {
    let config = config::parse(text, "lvs.toml").unwrap_or_else(|e| panic!("{e}"));
    config.services[0]
        .health
        .real_servers
        .values()
        .map(|rs| rs.check.clone().expect("a checker"))
        .collect()
}

#[test]
fn every_datagram_key_is_read() {
    let checks = checks_of(DATAGRAM);
    let Probe::Udp(udp) = &checks[0].probe else {
        panic!("{:?}", checks[0])
    };
    assert_eq!(
        udp.endpoint,
        Endpoint {
            connect: SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 11), 5353).into(),
            bind: Some(Ipv4Addr::new(10, 0, 0, 1).into()),
        }
    );
    assert_eq!(udp.payload.as_deref(), Some(&[0, 1, 2, 3][..]));
    let reply = udp.reply.as_ref().unwrap();
    assert_eq!((reply.min_length, reply.max_length), (2, 512));
    let pattern = reply.pattern.as_ref().unwrap();
    assert_eq!(
        (&pattern.bytes[..], &pattern.ignored[..]),
        (&[0, 0][..], &[0, 0x0f][..])
    );
    assert_eq!(checks[0].to_string(), "UDP_CHECK 10.0.0.11:5353");

    let Probe::Dns(dns) = &checks[1].probe else {
        panic!("{:?}", checks[1])
    };
    assert_eq!(
        (dns.query_type, dns.name.as_str()),
        (DnsType::Mx, "example.test.")
    );
    assert_eq!(dns.endpoint.connect.port(), 53, "the service port");
    assert_eq!(checks[1].timing.connect_timeout, Duration::from_secs(2));
    assert_eq!(
        checks[1].to_string(),
        "DNS_CHECK 10.0.0.12:53 MX example.test."
    );

    assert_eq!(
        checks[2].probe,
        Probe::Ping(PingProbe {
            address: Ipv4Addr::new(10, 0, 1, 13).into(),
            bind: None,
        })
    );
    assert_eq!(checks[2].timing.retry, 4);
    assert_eq!(checks[2].to_string(), "PING_CHECK 10.0.1.13");
}

#[test]
fn datagram_defaults_are_keepalived_s() {
    let checks = checks_of(DATAGRAM);
    let Probe::Udp(udp) = &checks[3].probe else {
        panic!("{:?}", checks[3])
    };
    assert_eq!((udp.payload.as_ref(), udp.reply.as_ref()), (None, None));
    assert_eq!(udp.endpoint.connect.port(), 53);
    assert_eq!(checks[3].timing.retry, 1);
    assert_eq!(
        checks[3].timing.delay_before_retry,
        DEFAULT_DELAY_BEFORE_RETRY
    );

    let Probe::Dns(dns) = &checks[4].probe else {
        panic!("{:?}", checks[4])
    };
    assert_eq!((dns.query_type, dns.name.as_str()), (DnsType::Soa, "."));
    assert_eq!(checks[4].timing.retry, 3, "DNS_CHECK retries 3 times");
    assert_eq!(
        checks[4].timing.delay_before_retry,
        Duration::from_secs(4),
        "and waits delay_loop before a retry"
    );

    let bare = DATAGRAM.replace("payload = \"00 01 0203\"\nrequire_reply = \"00 0x\"\nmin_reply_length = 2\nmax_reply_length = 512\n", "require_reply = true\n");
    let Probe::Udp(udp) = &checks_of(&bare)[0].probe else {
        panic!()
    };
    let reply = udp.reply.as_ref().unwrap();
    assert_eq!(
        (reply.pattern.as_ref(), reply.min_length, reply.max_length),
        (None, 0, 255)
    );
}

/// Replaces `from` in the datagram file and returns the error text.
fn error_of(from: &str, to: &str) -> String {
    assert!(DATAGRAM.contains(from), "fixture does not contain {from:?}");
    match config::parse(&DATAGRAM.replacen(from, to, 1), "lvs.toml") {
        Ok(_) => panic!("accepted {to:?}"),
        Err(error) => error.to_string(),
    }
}

#[test]
fn bad_datagram_values_are_reported_with_file_line_and_field() {
    let rs = |n: usize, kind: &str| format!("virtual_server[0].real_server[{n}].{kind}");
    let cases = [
        (
            "payload = \"00 01 0203\"",
            "payload = \"00 0g\"",
            format!(
                "lvs.toml:14: {}.payload: \"00 0g\" is not a hex string (hex digits, spaces between)",
                rs(0, "UDP_CHECK")
            ),
        ),
        (
            "payload = \"00 01 0203\"",
            "payload = \"0x\"",
            format!(
                "lvs.toml:14: {}.payload: \"0x\" is not a hex string",
                rs(0, "UDP_CHECK")
            ),
        ),
        (
            "require_reply = \"00 0x\"",
            "require_reply = \"\"",
            format!(
                "lvs.toml:15: {}.require_reply: an empty hex string",
                rs(0, "UDP_CHECK")
            ),
        ),
        (
            "min_reply_length = 2",
            "min_reply_length = 600",
            format!(
                "lvs.toml:16: {}.min_reply_length: min_reply_length 600 is more than \
                 max_reply_length 512: every reply would fail",
                rs(0, "UDP_CHECK")
            ),
        ),
        (
            "max_reply_length = 512",
            "max_reply_length = 65536",
            format!(
                "lvs.toml:17: {}.max_reply_length: 65536 is not a length in bytes (0 to 65535)",
                rs(0, "UDP_CHECK")
            ),
        ),
        (
            "require_reply = \"00 0x\"",
            "require_reply = false",
            format!(
                "lvs.toml:16: {}.min_reply_length: min_reply_length is only used with require_reply",
                rs(0, "UDP_CHECK")
            ),
        ),
        (
            "type = \"mx\"",
            "type = \"SRV\"",
            format!(
                "lvs.toml:24: {}.type: \"SRV\" is not a DNS_CHECK type (A, NS, CNAME, SOA, MX, TXT or AAAA)",
                rs(1, "DNS_CHECK")
            ),
        ),
        (
            "name = \"example.test.\"",
            "name = \"example..test\"",
            format!(
                "lvs.toml:25: {}.name: \"example..test\" is not a DNS name",
                rs(1, "DNS_CHECK")
            ),
        ),
        (
            "connect_ip = \"10.0.1.13\"",
            "connect_port = 7",
            format!(
                "lvs.toml:31: {}.connect_port: not a PING_CHECK keyword (it belongs to HTTP_GET, \
                 SSL_GET, TCP_CHECK, UDP_CHECK and DNS_CHECK)",
                rs(2, "PING_CHECK")
            ),
        ),
        (
            "connect_ip = \"10.0.1.13\"",
            "connect_ip = \"10.0.1.255x\"",
            format!(
                "lvs.toml:31: {}.connect_ip: \"10.0.1.255x\" is not a usable IP address",
                rs(2, "PING_CHECK")
            ),
        ),
        (
            "type = \"mx\"",
            "payload = \"00\"",
            format!(
                "lvs.toml:24: {}.payload: not a DNS_CHECK keyword (it belongs to UDP_CHECK)",
                rs(1, "DNS_CHECK")
            ),
        ),
        (
            "payload = \"00 01 0203\"",
            "name = \"x\"",
            format!(
                "lvs.toml:14: {}.name: not a UDP_CHECK keyword (it belongs to DNS_CHECK)",
                rs(0, "UDP_CHECK")
            ),
        ),
        (
            "[virtual_server.real_server.PING_CHECK]",
            "[virtual_server.real_server.PING_CHECK]\nrequire_reply = true",
            format!(
                "lvs.toml:31: {}.require_reply: not a PING_CHECK keyword (it belongs to UDP_CHECK)",
                rs(2, "PING_CHECK")
            ),
        ),
        (
            "[virtual_server.real_server.PING_CHECK]",
            "[virtual_server.real_server.TCP_CHECK]\n[virtual_server.real_server.PING_CHECK]",
            format!(
                "{}: a real server has one checker; TCP_CHECK is already set",
                rs(2, "PING_CHECK")
            ),
        ),
    ];
    for (from, to, expected) in cases {
        let error = error_of(from, to);
        assert!(
            error.contains(&expected),
            "{to:?}:\n{error}\nexpected: {expected}"
        );
    }
}
