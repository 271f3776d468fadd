use super::*;
use crate::logic::golden;
use crate::logic::ipvsadm::{
    fixture,
    names::{NumericOnly, Table},
};
use std::net::Ipv4Addr;

fn list(target: ListTarget, layout: Layout) -> List {
    List {
        target,
        format: ListFormat {
            numeric: true,
            layout,
            ..ListFormat::default()
        },
    }
}

fn numeric(list: &List) -> String {
    render(&fixture::snapshot(), list, &NumericOnly).unwrap()
}

fn web() -> ServiceKey {
    ServiceKey {
        protocol: Protocol::Tcp,
        address: Ipv4Addr::new(10, 0, 0, 1).into(),
        port: 80,
    }
}

#[test]
fn every_layout_matches_its_golden_file() {
    let cases = [
        ("Ln.txt", list(ListTarget::All, Layout::Default)),
        ("Ln-stats.txt", list(ListTarget::All, Layout::Stats)),
        ("Ln-rate.txt", list(ListTarget::All, Layout::Rate)),
        (
            "Ln-thresholds.txt",
            list(ListTarget::All, Layout::Thresholds),
        ),
        (
            "Ln-persistent-conn.txt",
            list(ListTarget::All, Layout::PersistentConn),
        ),
        (
            "Ln-service.txt",
            list(ListTarget::Service(web()), Layout::Default),
        ),
        ("Lnc.txt", list(ListTarget::Connections, Layout::Default)),
        (
            "Lnc-persistent-conn.txt",
            list(ListTarget::Connections, Layout::PersistentConn),
        ),
        ("timeout.txt", list(ListTarget::Timeouts, Layout::Default)),
    ];
    for (name, list) in cases {
        golden::check(&format!("src/logic/ipvsadm/golden/{name}"), &numeric(&list));
    }
    let mut exact = list(ListTarget::All, Layout::Stats);
    exact.format.exact = true;
    golden::check(
        "src/logic/ipvsadm/golden/Ln-stats-exact.txt",
        &numeric(&exact),
    );
    let mut unsorted = list(ListTarget::All, Layout::Default);
    unsorted.format.sort = false;
    golden::check(
        "src/logic/ipvsadm/golden/Ln-nosort.txt",
        &numeric(&unsorted),
    );
}

#[test]
fn names_are_used_without_numeric_and_cut_to_the_column() {
    let names = Table::example();
    let mut all = list(ListTarget::All, Layout::Default);
    all.format.numeric = false;
    golden::check(
        "src/logic/ipvsadm/golden/L.txt",
        &render(&fixture::snapshot(), &all, &names).unwrap(),
    );
    let mut connections = list(ListTarget::Connections, Layout::Default);
    connections.format.numeric = false;
    golden::check(
        "src/logic/ipvsadm/golden/Lc.txt",
        &render(&fixture::snapshot(), &connections, &names).unwrap(),
    );
}

#[test]
fn json_listings_match_their_golden_files() {
    let cases = [
        ("L.json", ListTarget::All),
        ("L-service.json", ListTarget::Service(web())),
        ("Lc.json", ListTarget::Connections),
        ("timeout.json", ListTarget::Timeouts),
    ];
    for (name, target) in cases {
        let mut list = list(target, Layout::Default);
        list.format.json = true;
        golden::check(&format!("src/logic/ipvsadm/golden/{name}"), &numeric(&list));
    }
}

#[test]
fn json_of_all_parses_back_to_the_services() {
    let mut all = list(ListTarget::All, Layout::Default);
    all.format.json = true;
    let value: serde_json::Value = serde_json::from_str(&numeric(&all)).unwrap();
    let services: Vec<ServiceEntry> = serde_json::from_value(value["services"].clone()).unwrap();
    assert_eq!(services.len(), fixture::snapshot().services.len());
}

#[test]
fn a_missing_service_is_no_such_service() {
    let missing = ServiceKey {
        port: 8080,
        ..web()
    };
    for json in [false, true] {
        let mut one = list(ListTarget::Service(missing), Layout::Default);
        one.format.json = json;
        let error = render(&fixture::snapshot(), &one, &NumericOnly).unwrap_err();
        assert_eq!(error.to_string(), "No such service");
    }
}

#[test]
fn large_numbers_scale_as_ipvsadm_does() {
    let cases: [(u64, bool, &str); 12] = [
        (0, false, "        0"),
        (99_999_999, false, " 99999999"),
        (100_000_000, false, "  100000K"),
        (999_999_999, false, "  999999K"),
        (1_000_000_000, false, "    1000M"),
        (99_999_999_999, false, "   99999M"),
        (100_000_000_000, false, "     100G"),
        (99_999_999_999_999, false, "   99999G"),
        (100_000_000_000_000, false, "     100T"),
        (12_345_678, true, " 12345678"),
        (123_456_789, true, " 123456789"),
        (u64::MAX, true, " 18446744073709551615"),
    ];
    for (value, exact, expected) in cases {
        let mut out = String::new();
        large_number(&mut out, value, exact);
        assert_eq!(out, expected, "{value} exact={exact}");
    }
}

#[test]
fn rows_follow_ipvsadm_column_widths() {
    // Spelled out from ipvsadm's printf formats, so the golden files are not the only check.
    let text = numeric(&list(ListTarget::All, Layout::Default));
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "IP Virtual Server version 1.2.1 (size=4096)");
    assert_eq!(lines[1], "Prot LocalAddress:Port Scheduler Flags");
    assert_eq!(
        lines[2],
        "  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn"
    );
    assert_eq!(lines[3], "TCP  10.0.0.1:80 wlc");
    assert_eq!(
        lines[4],
        format!(
            "  -> 10.0.0.11:80{}Route{}1{}0{}0{}",
            " ".repeat(28 - 12 + 1),
            " ".repeat(7 - 5 + 1),
            " ".repeat(6 - 1 + 1),
            " ".repeat(10 - 1 + 1),
            " ".repeat(10 - 1)
        )
    );
    assert_eq!(
        lines[6],
        "TCP  10.0.0.1:443 sh (sh-fallback,sh-port) persistent 300 mask 255.255.255.0"
    );
}

#[test]
fn the_sync_daemons_are_listed_in_ipvsadms_lines_master_first() {
    use crate::logic::sync::{SyncDaemon, SyncRole};

    let mut backup = SyncDaemon::with_defaults(SyncRole::Backup, "eth1");
    backup.sync_id = crate::base::values::SyncId::new(51).unwrap();
    let master = SyncDaemon::with_defaults(SyncRole::Master, "eth0");
    let list = |daemons: &[SyncDaemon]| Daemons {
        sync_daemons: daemons.to_vec(),
        sync_peers: Vec::new(),
        bgp: None,
    };
    assert_eq!(
        render_daemons(&list(&[backup.clone(), master.clone()]), false).unwrap(),
        "master sync daemon (mcast=eth0, syncid=0, maxlen=1472, group=224.0.0.81, port=8848, ttl=1)\n\
         backup sync daemon (mcast=eth1, syncid=51, maxlen=1472, group=224.0.0.81, port=8848, ttl=1)\n"
    );
    assert_eq!(
        render_daemons(&list(&[]), false).unwrap(),
        "",
        "none running: nothing, as ipvsadm"
    );
    let json: serde_json::Value =
        serde_json::from_str(&render_daemons(&list(&[backup, master]), true).unwrap()).unwrap();
    let json = &json["sync_daemons"];
    assert_eq!(json[0]["role"], "master");
    assert_eq!(json[1]["sync_id"], 51);
    assert_eq!(json[1]["interface"], "eth1");
}

#[test]
fn the_sync_peers_and_the_announced_vips_follow_the_sync_daemons() {
    use crate::logic::status::{BgpStatus, VipAnnouncement};

    let list = Daemons {
        sync_daemons: Vec::new(),
        sync_peers: vec![crate::logic::status::SyncPeer {
            address: "10.0.0.3".into(),
            last_message_seconds_ago: 0.42,
        }],
        bgp: Some(BgpStatus {
            route_table: 245,
            hold_time: 3,
            vips: vec![
                VipAnnouncement {
                    address: "10.0.0.100".into(),
                    announced: true,
                    settling: false,
                },
                VipAnnouncement {
                    address: "10.0.0.101".into(),
                    announced: false,
                    settling: false,
                },
            ],
        }),
    };
    assert_eq!(
        render_daemons(&list, false).unwrap(),
        "sync peer 10.0.0.3 (last message 0.4 s ago)\n\
         bgp announces 10.0.0.100 (table=245, hold_time=3)\n\
         bgp withdraws 10.0.0.101 (table=245, hold_time=3)\n"
    );
    let json: serde_json::Value =
        serde_json::from_str(&render_daemons(&list, true).unwrap()).unwrap();
    assert_eq!(json["bgp"]["vips"][0]["announced"], true);
}
