//! UDP_CHECK, DNS_CHECK and PING_CHECK imported with their keywords; what keepalived takes
//! and lvs's config would refuse reported with its line, what means nothing noted.

use super::*;
use crate::logic::config::{
    self,
    health::{DnsType, Probe},
};

/// A UDP service on port 53 whose one real server has `checker`.
fn service(checker: &str) -> String {
    format!(
        "virtual_server 192.0.2.10 53 {{\n\
         \x20   protocol UDP\n\
         \x20   real_server 192.0.2.21 53 {{\n\
         {checker}\n\
         \x20   }}\n\
         }}\n"
    )
}

/// Imports `text`, which must import whole, and checks the TOML as `lvs check` would.
fn imported_probe(text: &str) -> (String, Probe) {
    let imported = import(text, Some("eth0")).unwrap();
    assert!(imported.problems.is_empty(), "{:?}", imported.problems);
    let toml = imported.to_toml().unwrap();
    let config = config::parse(&toml, "imported.toml").unwrap_or_else(|e| panic!("{e}\n{toml}"));
    let check = config.services[0]
        .health
        .real_servers
        .values()
        .next()
        .unwrap();
    (toml, check.check.clone().unwrap().probe)
}

#[test]
fn the_datagram_checkers_import_with_their_keywords() {
    let (toml, probe) = imported_probe(&service(
        "UDP_CHECK {\n connect_port 5353\n payload 00 01 0203\n require_reply 00 0x\n \
         min_reply_length 2\n max_reply_length 512\n connect_timeout 2\n}",
    ));
    assert!(
        toml.contains(
            "[virtual_server.real_server.UDP_CHECK]\nconnect_port = 5353\nconnect_timeout = 2\n\
             payload = \"00 01 0203\"\nrequire_reply = \"00 0x\"\nmin_reply_length = 2\n\
             max_reply_length = 512\n"
        ),
        "{toml}"
    );
    let Probe::Udp(udp) = probe else {
        panic!("{probe:?}")
    };
    assert_eq!(udp.payload, Some(vec![0, 1, 2, 3]));
    assert_eq!(
        udp.reply.map(|r| (r.min_length, r.max_length)),
        Some((2, 512))
    );

    let (toml, probe) = imported_probe(&service("UDP_CHECK {\n require_reply\n}"));
    assert!(toml.contains("require_reply = true"), "{toml}");
    let Probe::Udp(udp) = probe else {
        panic!("{probe:?}")
    };
    assert!(udp.reply.is_some_and(|r| r.pattern.is_none()));

    let (toml, probe) = imported_probe(&service(
        "DNS_CHECK {\n type aaaa\n name example.test\n retry 2\n}",
    ));
    assert!(
        toml.contains("[virtual_server.real_server.DNS_CHECK]\nretry = 2\ntype = \"AAAA\"\nname = \"example.test\"\n"),
        "{toml}"
    );
    let Probe::Dns(dns) = probe else {
        panic!("{probe:?}")
    };
    assert_eq!(
        (dns.query_type, dns.name.as_str()),
        (DnsType::Aaaa, "example.test")
    );

    let (toml, probe) = imported_probe(&service(
        "PING_CHECK {\n connect_ip 192.0.2.31\n bindto 192.0.2.2\n}",
    ));
    assert!(toml.contains("[virtual_server.real_server.PING_CHECK]\nconnect_ip = \"192.0.2.31\"\nbindto = \"192.0.2.2\"\n"), "{toml}");
    assert_eq!(probe.to_string(), "PING_CHECK 192.0.2.31");
}

#[test]
fn what_means_nothing_is_noted_and_left_out() {
    let cases = [
        (
            "PING_CHECK {\n connect_port 53\n}",
            "line 5: connect_port in PING_CHECK is left out: ICMP has no port",
        ),
        (
            "UDP_CHECK {\n min_reply_length 4\n}",
            "line 5: min_reply_length is left out: keepalived checks reply lengths only with require_reply",
        ),
    ];
    for (checker, note) in cases {
        let text = service(checker);
        let imported = import(&text, Some("eth0")).unwrap();
        assert!(
            imported.notes.contains(&note.to_owned()),
            "{checker}: {:?}",
            imported.notes
        );
        imported_probe(&text);
    }
}

#[test]
fn bad_datagram_values_are_reported_with_their_line() {
    let cases = [
        (
            "UDP_CHECK {\n payload 0g\n}",
            "line 5: payload: \"0g\" is not a hex string (hex digits, spaces between)",
        ),
        (
            "UDP_CHECK {\n payload\n}",
            "line 5: payload: an empty hex string",
        ),
        (
            "UDP_CHECK {\n payload 1x\n}",
            "line 5: payload: \"1x\" is not a hex string (hex digits, spaces between)",
        ),
        (
            "UDP_CHECK {\n require_reply 0z\n}",
            "line 5: require_reply: \"0z\" is not a hex string (hex digits and x, spaces between)",
        ),
        (
            "UDP_CHECK {\n require_reply\n max_reply_length 70000\n}",
            "line 6: max_reply_length: 70000 is not a length in bytes (0 to 65535)",
        ),
        (
            "UDP_CHECK {\n require_reply\n min_reply_length 300\n}",
            "line 6: min_reply_length 300 is more than max_reply_length 255: every reply would fail",
        ),
        (
            "UDP_CHECK {\n virtualhost x\n}",
            "line 5: virtualhost in UDP_CHECK is not imported",
        ),
        (
            "DNS_CHECK {\n type SRV\n}",
            "line 5: \"SRV\" is not a DNS_CHECK type (A, NS, CNAME, SOA, MX, TXT or AAAA)",
        ),
        (
            "DNS_CHECK {\n name a..b\n}",
            "line 5: \"a..b\" is not a DNS name (labels of 1 to 63 printable characters, 253 characters in all, or \".\")",
        ),
        (
            "DNS_CHECK {\n name a\n name b\n}",
            "line 6: a second name in DNS_CHECK is not imported",
        ),
        (
            "DNS_CHECK {\n payload 00\n}",
            "line 5: payload in DNS_CHECK is not imported",
        ),
        // keepalived takes them; lvs's config does not (found by this test, for every checker).
        (
            "PING_CHECK {\n connect_ip 0.0.0.0\n}",
            "line 5: connect_ip: 0.0.0.0 cannot be a service or server address",
        ),
        (
            "TCP_CHECK {\n bindto 224.0.0.1\n}",
            "line 5: bindto: 224.0.0.1 cannot be a service or server address",
        ),
        (
            "PING_CHECK {\n require_reply\n}",
            "line 5: require_reply in PING_CHECK is not imported",
        ),
        (
            "PING_CHECK {\n connect_ip ff02::1\n}",
            "line 5: connect_ip: ff02::1 cannot be a service or server address",
        ),
    ];
    // A service whose checker lost a value lvs needs is left out whole, with a line of its
    // own; every TOML written is one `lvs check` takes.
    let left_out = "line 1: this service is not imported: without what is left out below, lvs \
                    check would refuse it";
    for (checker, expected) in cases {
        let imported = import(&service(checker), Some("eth0")).unwrap();
        let got: Vec<String> = imported.problems.iter().map(ToString::to_string).collect();
        let got: Vec<&str> = got
            .iter()
            .map(String::as_str)
            .filter(|p| *p != left_out)
            .collect();
        assert_eq!(got, [expected], "{checker}");
        let toml = imported.to_toml().unwrap();
        config::parse(&toml, "imported.toml")
            .unwrap_or_else(|error| panic!("{checker}: {error}\n{toml}"));
    }
}
