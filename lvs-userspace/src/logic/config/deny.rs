//! The `[deny]` section: source prefixes whose frames the data plane drops before any other
//! work (see `logic::deny`).
//!
//! ```toml
//! [deny]
//! prefixes = ["203.0.113.0/24", "198.51.100.7"]
//! ```
//!
//! Each prefix goes through `base::values::SourcePrefix`'s rule; a prefix named twice and a
//! list longer than the data plane's map are refused.

use std::collections::HashSet;

use serde::Deserialize;
use toml::Spanned;

use crate::base::{
    diagnostics::{Locator, Problem},
    values::SourcePrefix,
};

/// The section as serde reads it.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDeny {
    #[serde(default)]
    prefixes: Vec<Spanned<String>>,
}

/// Validates the section: the prefixes, in the file's order, or problems.
pub(super) fn validate(
    section: Spanned<RawDeny>,
    at: &Locator<'_>,
    problems: &mut Vec<Problem>,
) -> Vec<SourcePrefix> {
    let raw = section.into_inner();
    let mut prefixes = Vec::new();
    let mut seen = HashSet::new();
    for (index, text) in raw.prefixes.iter().enumerate() {
        let field = format!("deny.prefixes[{index}]");
        match text.get_ref().parse::<SourcePrefix>() {
            Ok(prefix) if !seen.insert(prefix) => {
                problems.push(at.problem(&text.span(), &field, format!("{prefix} is listed twice")))
            }
            Ok(prefix) => prefixes.push(prefix),
            Err(error) => problems.push(at.problem(
                &text.span(),
                &field,
                format!("{:?}: {error}", text.get_ref()),
            )),
        }
    }
    let limit = lvs_common::MAX_DENY_PREFIXES as usize;
    if prefixes.len() > limit {
        problems.push(at.problem(
            &(0..0),
            "deny.prefixes",
            format!(
                "{} prefixes; the deny list holds at most {limit}",
                prefixes.len()
            ),
        ));
    }
    prefixes
}

#[cfg(test)]
mod tests {
    use super::super::section_tests::{config_with, errors_of};

    #[test]
    fn prefixes_are_read_in_order() {
        let config = config_with(
            "[deny]\nprefixes = [\"203.0.113.0/24\", \"2001:db8::/32\", \"198.51.100.7\", \"2001:db8:1::7\"]\n",
        );
        let prefixes: Vec<String> = config.deny.iter().map(ToString::to_string).collect();
        assert_eq!(
            prefixes,
            [
                "203.0.113.0/24",
                "2001:db8::/32",
                "198.51.100.7/32",
                "2001:db8:1::7/128"
            ]
        );
        assert!(config_with("").deny.is_empty());
        assert!(config_with("[deny]\n").deny.is_empty());
    }

    #[test]
    fn bad_prefixes_are_reported_with_their_line() {
        let errors = errors_of(
            "[deny]\nprefixes = [\n  \"203.0.113.1/24\",\n  \"0.0.0.0/0\",\n  \"nonsense\",\n  \"192.0.2.1\",\n  \"192.0.2.1/32\",\n  \"2001:db8::1/32\",\n  \"::/0\",\n  \"::ffff:10.0.0.0/104\",\n  \"2001:db8::7\",\n  \"2001:db8::7/128\",\n]\n",
        );
        let lines: Vec<&str> = errors.lines().collect();
        assert_eq!(
            lines,
            [
                "lvs.toml:6: deny.prefixes[0]: \"203.0.113.1/24\": 203.0.113.1/24 has host bits set: the network is 203.0.113.0/24",
                "lvs.toml:7: deny.prefixes[1]: \"0.0.0.0/0\": prefix length /0 is out of range 1..=32 (a /0 would drop every frame: stop the director instead)",
                "lvs.toml:8: deny.prefixes[2]: \"nonsense\": not an address or prefix (a.b.c.d, a.b.c.d/length, an IPv6 address or 2001:db8::/length)",
                "lvs.toml:10: deny.prefixes[4]: 192.0.2.1/32 is listed twice",
                "lvs.toml:11: deny.prefixes[5]: \"2001:db8::1/32\": 2001:db8::1/32 has host bits set: the network is 2001:db8::/32",
                "lvs.toml:12: deny.prefixes[6]: \"::/0\": prefix length /0 is out of range 1..=128 (a /0 would drop every frame: stop the director instead)",
                "lvs.toml:13: deny.prefixes[7]: \"::ffff:10.0.0.0/104\": ::ffff:10.0.0.0/104 is an IPv4-mapped IPv6 prefix, which no IPv6 frame comes from: deny the IPv4 prefix instead",
                "lvs.toml:15: deny.prefixes[9]: 2001:db8::7/128 is listed twice",
            ]
        );
        assert!(errors_of("[deny]\nprefix = []\n").contains("unknown field `prefix`"));
    }
}
