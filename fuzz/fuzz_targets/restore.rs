//! `lvsadm -R` files: any text gives changes or every bad line with its number, never a panic.
//! Changes that apply to an empty table make rules that `lvsadm -Sn` saves and `-R` reads back
//! to the very same table: save and restore are one another's inverse. `-S` lists in sorted
//! order, as ipvsadm's does, so the order in which services and real servers were added is
//! not kept; the tables are compared in that sorted order.
#![no_main]

use libfuzzer_sys::fuzz_target;
use lvs_userspace::logic::{
    api::Snapshot,
    ipvsadm::{list, names::NumericOnly, restore, rules::RuleSet, save},
};

/// The table a rules file makes from nothing, if it applies.
fn restored(text: &str) -> Option<RuleSet> {
    let rules = restore::parse(text, &NumericOnly).ok()?;
    let changes: Vec<_> = rules.iter().map(|rule| rule.change).collect();
    RuleSet::default().apply_all(&changes).ok()
}

/// The table's services and each one's real servers, in `-S`'s sorted order.
fn sorted(snapshot: &Snapshot) -> Vec<String> {
    list::sorted_services(snapshot, true)
        .into_iter()
        .map(|service| {
            let servers = list::sorted_real_servers(service, true);
            format!("{:?} {:?} {servers:?}", service.service, service.config)
        })
        .collect()
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Some(table) = restored(text) else {
        return;
    };
    let saved = save::render(&table.to_snapshot(4096), true, &NumericOnly);
    let again =
        restored(&saved).unwrap_or_else(|| panic!("lvsadm -R refuses what -Sn saved:\n{saved}"));
    let (again, table) = (again.to_snapshot(4096), table.to_snapshot(4096));
    assert_eq!(
        (sorted(&again), again.timeouts),
        (sorted(&table), table.timeouts),
        "saving and restoring changed the table:\n{saved}"
    );
});
