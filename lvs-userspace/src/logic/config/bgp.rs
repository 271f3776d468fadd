//! The `[bgp]` section: announcing the VIPs to the routers through a BGP daemon (BIRD).
//!
//! ```toml
//! [bgp]
//! route_table = 245   # the routing table lvs writes the announced VIPs' routes to
//! hold_time = 3       # the BGP hold time `lvs bgp-config` writes into BIRD's snippet
//! ```
//!
//! With the section, the daemon announces each VIP while it forwards and one of the VIP's
//! services has its quorum (see `logic::announce`). The peers and AS numbers are BIRD's
//! business, in the snippet `lvs bgp-config` prints. Every value goes through its
//! `base::values` rule.

use serde::Deserialize;
use toml::Spanned;

use super::checked;
use crate::base::{
    diagnostics::{Locator, Problem},
    values::{HoldTime, RouteTable},
};
use crate::logic::announce::BgpConfig;

/// The section as serde reads it.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawBgp {
    #[serde(default)]
    route_table: Option<Spanned<i64>>,
    #[serde(default)]
    hold_time: Option<Spanned<i64>>,
}

/// Validates the section; `None` when a problem was reported.
pub(super) fn validate(
    section: Spanned<RawBgp>,
    at: &Locator<'_>,
    problems: &mut Vec<Problem>,
) -> Option<BgpConfig> {
    let raw = section.into_inner();
    let before = problems.len();
    let route_table = checked(
        raw.route_table.as_ref(),
        "bgp.route_table",
        RouteTable::new,
        at,
        problems,
    );
    let hold_time = checked(
        raw.hold_time.as_ref(),
        "bgp.hold_time",
        HoldTime::new,
        at,
        problems,
    );
    if problems.len() != before {
        return None;
    }
    let defaults = BgpConfig::default();
    Some(BgpConfig {
        route_table: route_table.unwrap_or(defaults.route_table),
        hold_time: hold_time.unwrap_or(defaults.hold_time),
    })
}

#[cfg(test)]
mod tests {
    use super::super::section_tests::{config_with, errors_of};
    use super::*;

    fn bgp_of(section: &str) -> Option<BgpConfig> {
        config_with(section).bgp
    }

    #[test]
    fn no_section_announces_nothing_and_an_empty_one_takes_the_defaults() {
        assert_eq!(bgp_of(""), None);
        assert_eq!(bgp_of("[bgp]\n"), Some(BgpConfig::default()));
        assert_eq!(BgpConfig::default().route_table.get(), 245);
        assert_eq!(BgpConfig::default().hold_time.get(), 3);
    }

    #[test]
    fn every_key_is_taken() {
        let bgp = bgp_of("[bgp]\nroute_table = 100\nhold_time = 9\n").expect("a section");
        assert_eq!(bgp.route_table.get(), 100);
        assert_eq!(bgp.hold_time.get(), 9);
    }

    #[test]
    fn bad_values_are_reported_with_file_line_and_field_all_at_once() {
        let cases = [
            (
                "route_table = 254",
                "lvs.toml:5: bgp.route_table: routing table 254 is out of range",
            ),
            (
                "route_table = 0",
                "lvs.toml:5: bgp.route_table: routing table 0 is out of range",
            ),
            (
                "hold_time = 2",
                "lvs.toml:5: bgp.hold_time: BGP hold time 2 is out of range 3..=65535",
            ),
            (
                "local_as = 65001",
                "lvs.toml:5: toml: unknown field `local_as`",
            ),
            ("hold_time = \"3\"", "lvs.toml:5: toml: invalid type"),
        ];
        for (line, expected) in cases {
            let errors = errors_of(&format!("[bgp]\n{line}\n"));
            assert!(
                errors.contains(expected),
                "for {line:?}:\n got: {errors}\nwant: {expected}"
            );
        }
        let errors = errors_of("[bgp]\nroute_table = 255\nhold_time = 1\n");
        assert_eq!(errors.lines().count(), 2, "{errors}");
    }
}
