//! `lvsadm -R` files: any text gives changes or every bad line with its number, never a panic.
//! Changes that apply to an empty table make rules that `lvsadm -Sn` saves and `-R` reads back
//! to the very same table: save and restore are one another's inverse.
#![no_main]

use libfuzzer_sys::fuzz_target;
use lvs_userspace::logic::ipvsadm::{names::NumericOnly, restore, rules::RuleSet, save};

/// The table a rules file makes from nothing, if it applies.
fn restored(text: &str) -> Option<RuleSet> {
    let rules = restore::parse(text, &NumericOnly).ok()?;
    let changes: Vec<_> = rules.iter().map(|rule| rule.change).collect();
    RuleSet::default().apply_all(&changes).ok()
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
    assert_eq!(
        again.to_snapshot(4096),
        table.to_snapshot(4096),
        "saving and restoring changed the table:\n{saved}"
    );
});
