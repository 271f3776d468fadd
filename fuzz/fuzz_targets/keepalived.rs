//! keepalived.conf (`lvs import-keepalived`): any text imports or gives a syntax error with
//! its line, never a panic. An import that reports nothing left out writes a TOML that
//! `lvs check` accepts (the promise: every value keepalived accepts imports to a
//! config lvs accepts, or is reported with its line). The VRRP split (`--vrrp-out`) reads
//! the same text.
#![no_main]

use libfuzzer_sys::fuzz_target;
use lvs_userspace::logic::{
    config,
    keepalived::{import::import, vrrp::vrrp_only},
};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = vrrp_only(text, "fuzz.conf");
    let Ok(imported) = import(text, Some("eth0")) else {
        return;
    };
    let toml = imported
        .to_toml()
        .unwrap_or_else(|error| panic!("an import that cannot be written as TOML: {error}"));
    if !imported.problems.is_empty() {
        return;
    }
    if let Err(error) = config::parse(&toml, "imported.toml") {
        panic!(
            "a complete import that lvs check rejects: {error}\n--- keepalived.conf\n{text}\n--- TOML\n{toml}"
        );
    }
});
