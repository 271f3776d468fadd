//! The TOML config (`lvs check`, `lvs director --config`, a reload): any text gives a config
//! or line-numbered problems, never a panic; and a config `lvs check` accepts is one the
//! director can build its model from, so that a file that passes the check never fails the
//! start.
#![no_main]

use libfuzzer_sys::fuzz_target;
use lvs_userspace::logic::{config, model::Model};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match config::parse(text, "fuzz.toml") {
        Ok(config) => {
            if let Err(error) = Model::new(&config.services) {
                panic!("lvs check accepts a config the director cannot model: {error}\n{text}");
            }
        }
        // The problems' text is what the operator reads: rendering it (lines, columns,
        // excerpts of the offending line) must not panic either.
        Err(error) => drop(error.to_string()),
    }
});
