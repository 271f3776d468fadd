use super::*;
use crate::logic::golden;
use crate::logic::ipvsadm::{
    fixture,
    names::{NumericOnly, Table},
    rules::RuleSet,
    save,
};

/// What restoring `text` into an empty table gives.
fn restored(text: &str, names: &dyn Resolver) -> RuleSet {
    let rules = parse(text, names).unwrap_or_else(|errors| panic!("{errors:?}"));
    let changes: Vec<Change> = rules.iter().map(|rule| rule.change).collect();
    RuleSet::default()
        .apply_all(&changes)
        .unwrap_or_else(|(index, error)| panic!("change {index}: {error}"))
}

/// The fixture's rules, in the order a save lists them.
fn saved_order(rules: RuleSet) -> RuleSet {
    let snapshot = rules.to_snapshot(4096);
    let mut sorted = RuleSet::from_snapshot(&snapshot);
    sorted
        .services
        .sort_by_key(crate::logic::api::ServiceKey::of);
    for service in &mut sorted.services {
        service.real_servers.sort_by_key(|rs| rs.address);
    }
    sorted
}

#[test]
fn save_matches_its_golden_files() {
    golden::check(
        "src/logic/ipvsadm/golden/Sn.txt",
        &save::render(&fixture::snapshot(), true, &NumericOnly),
    );
    golden::check(
        "src/logic/ipvsadm/golden/S.txt",
        &save::render(&fixture::snapshot(), false, &Table::example()),
    );
}

#[test]
fn save_then_restore_gives_the_same_table() {
    let snapshot = fixture::snapshot();
    let expected = saved_order(RuleSet::from_snapshot(&snapshot));
    let mut expected_without_timeouts = expected.clone();
    expected_without_timeouts.timeouts = crate::logic::api::Timeouts::DEFAULT;

    let numeric = save::render(&snapshot, true, &NumericOnly);
    assert_eq!(restored(&numeric, &NumericOnly), expected_without_timeouts);

    // ipvsadm-save writes names; they resolve back to the same table.
    let names = Table::example();
    let named = save::render(&snapshot, false, &names);
    assert!(named.contains("web.example.com:http"), "{named}");
    assert_eq!(restored(&named, &names), expected_without_timeouts);

    // And saving the restored table writes the same text again.
    let again = restored(&numeric, &NumericOnly).to_snapshot(4096);
    assert_eq!(save::render(&again, true, &NumericOnly), numeric);
}

#[test]
fn what_ipvsadm_save_writes_restores() {
    // Written the way ipvsadm -S and hand-made rule files write them.
    let text = "\
# saved by ipvsadm-save
-A -t 10.0.0.1:80 -s wlc
-a -t 10.0.0.1:80 -r 10.0.0.11:80 -g -w 1
-a -t 10.0.0.1:80 -r 10.0.0.12:80 -g -w 2

ipvsadm -A -u 10.0.0.2:53 -s rr -p   # persistent, default timeout
ipvsadm -a -u 10.0.0.2:53 -r 10.0.0.21 -w 0
-A -t 10.0.0.1:443 -s sh -p 600 -M 255.255.255.0 -b sh-fallback,sh-port
--set 900 120 300
-Z
";
    let rules = parse(text, &NumericOnly).unwrap();
    let lines: Vec<usize> = rules.iter().map(|r| r.line).collect();
    assert_eq!(lines, [2, 3, 4, 6, 7, 8, 9, 10]);
    let table = restored(text, &NumericOnly);
    assert_eq!(table.services.len(), 3);
    let dns = &table.services[1];
    assert_eq!(dns.persistence.map(|p| p.timeout), Some(300));
    assert_eq!(dns.real_servers[0].weight, 0);
}

#[test]
fn every_bad_line_is_reported_and_nothing_is_returned() {
    let text = "\
-A -t 10.0.0.1:80 -s wlc
-A -f 1 -s rr
-a -f 1 -r 10.0.0.11:0 -m
-a -t 10.0.0.1:80 -r 10.0.0.11:80 -i -w 1
-a -t 10.0.0.1:80 -r 10.0.0.11:80 -g -w 70000
-A -t 10.0.0.1:81 -s lblc
-A -t 10.0.0.1:82 -s fastest
-A -t 10.0.0.999:80
-a -t 10.0.0.1:80 -r 10.0.0.11:80 --bogus
-L -n
-A -t 10.0.0.1:83 -o
-a -t 10.0.0.1:80
-R
-h
-A -u 2001:db8::1
--set 1 2
-A -t 10.0.0.1:84 extra
--reload
--start-daemon master --syncid 1
";
    let errors = parse(text, &NumericOnly).unwrap_err();
    let got: Vec<String> = errors.iter().map(ToString::to_string).collect();
    let expected = [
        "line 2: firewall-mark services (-f) are not supported by lvs",
        "line 3: firewall-mark services (-f) are not supported by lvs",
        "line 4: tunnelling (-i) is not supported: lvs forwards by direct routing (-g)",
        "line 5: illegal weight specified",
        "line 6: scheduler `lblc' is not supported by lvs (it has rr wrr lc wlc sed nq sh dh mh)",
        "line 7: Scheduler or persistence engine not found",
        "line 8: illegal virtual server address[:port] specified",
        "line 9: unexpected argument '--bogus' found",
        "line 10: only commands that change the table (-A -E -D -C -a -e -d -Z --set) can be restored",
        "line 11: one-packet scheduling (-o) is not supported by lvs",
        "line 12: You need to supply the 'real-server' option for the 'add-server' command",
        "line 13: only commands that change the table (-A -E -D -C -a -e -d -Z --set) can be restored",
        "line 14: -h and -v cannot be restored",
        "line 15: an IPv6 address goes in brackets: [2001:db8::10]:80",
        "line 16: --set option requires 3 timeout values",
        "line 17: unexpected argument extra",
        "line 18: only commands that change the table (-A -E -D -C -a -e -d -Z --set) can be restored",
        "line 19: the sync daemon commands cannot be restored: run them on their own, or use the \
         config's [sync] section",
    ];
    assert_eq!(got, expected);
}

#[test]
fn comments_blank_lines_and_the_program_name_are_skipped() {
    assert_eq!(words("  # only a comment"), Vec::<&str>::new());
    assert_eq!(words(""), Vec::<&str>::new());
    assert_eq!(
        words("ipvsadm -A -t 10.0.0.1:80 # web"),
        ["-A", "-t", "10.0.0.1:80"]
    );
    assert_eq!(words("lvsadm -C"), ["-C"]);
    assert!(parse("\n# nothing\n\n", &NumericOnly).unwrap().is_empty());
}
