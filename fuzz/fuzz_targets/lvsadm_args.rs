//! lvsadm's command line: any words give a command or ipvsadm's usage error, never a panic;
//! and a change it accepts is applied to a table (the daemon's rule set) or refused in the
//! kernel's words, never a panic.
#![no_main]

use clap::Parser as _;
use libfuzzer_sys::fuzz_target;
use lvs_userspace::logic::ipvsadm::{Args, Command, names::NumericOnly, rules::RuleSet};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // One word per line, so that a word may hold spaces, as a shell would pass it.
    let words = std::iter::once("lvsadm").chain(text.lines());
    let Ok(args) = Args::try_parse_from(words) else {
        return;
    };
    if let Ok(Command::Change(change)) = Command::from_args(&args, &NumericOnly) {
        let _ = RuleSet::default().apply(&change);
    }
});
