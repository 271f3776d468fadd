//! The `[sync]` section: connection sync with the other director, in ipvsadm's terms.
//!
//! ```toml
//! [sync]
//! daemons = ["master", "backup"]   # ipvsadm --start-daemon; both by default
//! interface = "eth0"               # --mcast-interface; the [director] interface by default
//! syncid = 51                      # --syncid; 0 by default
//! group = "224.0.0.81"             # --mcast-group
//! port = 8848                      # --mcast-port
//! ttl = 1                          # --mcast-ttl
//! sync_maxlen = 1472               # --sync-maxlen
//! key_file = "/etc/lvs/sync.key"   # required: the key both directors share
//! max_rate = 4000                  # messages per second a master sends at most
//! ```
//!
//! Every value goes through its `base::values` rule, as lvsadm's flags do, so the file and
//! the command line cannot disagree on what is valid. The key file is read by the daemon,
//! not here: `lvs check` may run where the key is not (a build host, a CI job).

use std::{collections::HashSet, path::PathBuf};

use serde::Deserialize;
use toml::Spanned;

use super::{checked, is_interface_name, number_in};
use crate::base::{
    diagnostics::{Locator, Problem},
    values::{MulticastGroup, MulticastTtl, Port, SyncId, SyncMaxLen},
};
use crate::logic::sync::{SyncConfig, SyncDaemon, SyncRole};

/// The section as serde reads it; every key optional here, so that a missing `key_file` is
/// reported with the section's line like every other problem.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSync {
    #[serde(default)]
    daemons: Option<Spanned<Vec<Spanned<String>>>>,
    #[serde(default)]
    interface: Option<Spanned<String>>,
    #[serde(default)]
    syncid: Option<Spanned<i64>>,
    #[serde(default)]
    group: Option<Spanned<String>>,
    #[serde(default)]
    port: Option<Spanned<i64>>,
    #[serde(default)]
    ttl: Option<Spanned<i64>>,
    #[serde(default)]
    sync_maxlen: Option<Spanned<i64>>,
    #[serde(default)]
    key_file: Option<Spanned<String>>,
    #[serde(default)]
    max_rate: Option<Spanned<i64>>,
}

/// Validates the section; `director_interface` is the default interface. `None` when a
/// problem was reported.
pub(super) fn validate(
    section: Spanned<RawSync>,
    director_interface: &str,
    at: &Locator<'_>,
    problems: &mut Vec<Problem>,
) -> Option<SyncConfig> {
    let span = section.span();
    let raw = section.into_inner();
    let before = problems.len();

    let roles = roles(raw.daemons.as_ref(), at, problems);
    let interface = match raw.interface.as_ref() {
        None => director_interface.to_owned(),
        Some(name) => {
            let trimmed = name.get_ref().trim();
            if !is_interface_name(trimmed) {
                problems.push(at.problem(
                    &name.span(),
                    "sync.interface",
                    format!("{:?} is not an interface name", name.get_ref()),
                ));
            }
            trimmed.to_owned()
        }
    };
    let sync_id = checked(
        raw.syncid.as_ref(),
        "sync.syncid",
        SyncId::new,
        at,
        problems,
    );
    let group = raw.group.as_ref().and_then(|group| {
        MulticastGroup::parse(group.get_ref())
            .map_err(|error| {
                problems.push(at.problem(&group.span(), "sync.group", error.to_string()));
            })
            .ok()
    });
    let port = checked(raw.port.as_ref(), "sync.port", Port::new, at, problems);
    let ttl = checked(
        raw.ttl.as_ref(),
        "sync.ttl",
        MulticastTtl::new,
        at,
        problems,
    );
    let max_len = checked(
        raw.sync_maxlen.as_ref(),
        "sync.sync_maxlen",
        SyncMaxLen::new,
        at,
        problems,
    );
    let max_rate = number_in(
        &raw.max_rate,
        "sync.max_rate",
        1..=i64::from(u32::MAX),
        at,
        problems,
    )
    .unwrap_or(SyncConfig::DEFAULT_MAX_RATE);
    let key_file = match raw.key_file.as_ref() {
        None => {
            problems.push(at.problem(
                &span,
                "sync.key_file",
                "missing: the file holding the key both directors share (such as \
                 \"/etc/lvs/sync.key\", made with `head -c 32 /dev/urandom`)",
            ));
            None
        }
        Some(path) if path.get_ref().trim().is_empty() => {
            problems.push(at.problem(&path.span(), "sync.key_file", "is empty"));
            None
        }
        Some(path) => Some(PathBuf::from(path.get_ref())),
    };

    if problems.len() != before {
        return None;
    }
    let daemons = roles
        .into_iter()
        .map(|role| {
            let mut daemon = SyncDaemon::with_defaults(role, interface.clone());
            daemon.sync_id = sync_id.unwrap_or(daemon.sync_id);
            daemon.group = group.unwrap_or(daemon.group);
            daemon.port = port.unwrap_or(daemon.port);
            daemon.ttl = ttl.unwrap_or(daemon.ttl);
            daemon.max_len = max_len.unwrap_or(daemon.max_len);
            daemon
        })
        .collect();
    Some(SyncConfig {
        daemons,
        key_file: key_file?,
        max_rate,
    })
}

/// `daemons`: a non-empty list of distinct roles, both by default; returned in ipvsadm's
/// order (master first), whatever the file's order.
fn roles(
    raw: Option<&Spanned<Vec<Spanned<String>>>>,
    at: &Locator<'_>,
    problems: &mut Vec<Problem>,
) -> Vec<SyncRole> {
    let Some(raw) = raw else {
        return SyncRole::ALL.to_vec();
    };
    if raw.get_ref().is_empty() {
        problems.push(at.problem(
            &raw.span(),
            "sync.daemons",
            "is empty: name \"master\", \"backup\" or both (leave the [sync] section out for \
             no sync)",
        ));
        return Vec::new();
    }
    let mut seen = HashSet::new();
    for name in raw.get_ref() {
        let role = match name.get_ref().as_str() {
            "master" => SyncRole::Master,
            "backup" => SyncRole::Backup,
            other => {
                problems.push(at.problem(
                    &name.span(),
                    "sync.daemons",
                    format!("unknown sync daemon {other:?} (expected \"master\" or \"backup\")"),
                ));
                continue;
            }
        };
        if !seen.insert(role) {
            problems.push(at.problem(
                &name.span(),
                "sync.daemons",
                format!("{:?} is listed twice", role.name()),
            ));
        }
    }
    SyncRole::ALL
        .into_iter()
        .filter(|role| seen.contains(role))
        .collect()
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::super::section_tests::{config_with, errors_of};
    use super::*;

    fn sync_of(section: &str) -> Option<SyncConfig> {
        config_with(section).sync
    }

    #[test]
    fn no_section_is_no_sync() {
        assert_eq!(sync_of(""), None);
    }

    #[test]
    fn a_section_with_only_the_key_has_ipvsadms_defaults_and_both_daemons() {
        let sync = sync_of("[sync]\nkey_file = \"/etc/lvs/sync.key\"\n").expect("a section");
        assert_eq!(sync.key_file, PathBuf::from("/etc/lvs/sync.key"));
        assert_eq!(sync.max_rate, SyncConfig::DEFAULT_MAX_RATE);
        assert_eq!(
            sync.daemons,
            vec![
                SyncDaemon::with_defaults(SyncRole::Master, "eth1"),
                SyncDaemon::with_defaults(SyncRole::Backup, "eth1"),
            ],
            "the interface defaults to the director's"
        );
    }

    #[test]
    fn every_key_is_taken() {
        let sync = sync_of(
            "[sync]\n\
             daemons = [\"backup\"]\n\
             interface = \"eth0\"\n\
             syncid = 51\n\
             group = \"239.1.2.3\"\n\
             port = 9000\n\
             ttl = 2\n\
             sync_maxlen = 1400\n\
             key_file = \"/k\"\n\
             max_rate = 100\n",
        )
        .expect("a section");
        assert_eq!(sync.max_rate, 100);
        assert_eq!(sync.key_file, PathBuf::from("/k"));
        let [daemon] = sync.daemons.as_slice() else {
            panic!("{:?}", sync.daemons);
        };
        assert_eq!(daemon.role, SyncRole::Backup);
        assert_eq!(daemon.interface, "eth0");
        assert_eq!(daemon.sync_id.get(), 51);
        assert_eq!(daemon.group.get(), Ipv4Addr::new(239, 1, 2, 3));
        assert_eq!(daemon.port.get(), 9000);
        assert_eq!(daemon.ttl.get(), 2);
        assert_eq!(daemon.max_len.get(), 1400);
    }

    #[test]
    fn daemons_are_kept_in_ipvsadms_order() {
        let sync = sync_of("[sync]\ndaemons = [\"backup\", \"master\"]\nkey_file = \"/k\"\n")
            .expect("a section");
        let roles: Vec<_> = sync.daemons.iter().map(|d| d.role).collect();
        assert_eq!(roles, [SyncRole::Master, SyncRole::Backup]);
    }

    #[test]
    fn bad_values_are_reported_with_file_line_and_field() {
        let cases = [
            (
                "daemons = []",
                "lvs.toml:5: sync.daemons: is empty: name \"master\", \"backup\" or both",
            ),
            (
                "daemons = [\"primary\"]",
                "lvs.toml:5: sync.daemons: unknown sync daemon \"primary\" (expected \"master\" \
                 or \"backup\")",
            ),
            (
                "daemons = [\"master\", \"master\"]",
                "lvs.toml:5: sync.daemons: \"master\" is listed twice",
            ),
            (
                "interface = \"\"",
                "lvs.toml:5: sync.interface: \"\" is not an interface name",
            ),
            (
                "interface = \"a-very-long-interface\"",
                "lvs.toml:5: sync.interface: \"a-very-long-interface\" is not an interface name",
            ),
            (
                "syncid = 256",
                "lvs.toml:5: sync.syncid: sync id 256 is out of range 0..=255",
            ),
            (
                "syncid = -1",
                "lvs.toml:5: sync.syncid: sync id -1 is out of range 0..=255",
            ),
            (
                "group = \"192.0.2.1\"",
                "lvs.toml:5: sync.group: 192.0.2.1 is not a multicast group",
            ),
            (
                "group = \"ff02::1\"",
                "lvs.toml:5: sync.group: ff02::1 is an IPv6 group: connection sync runs over IPv4 \
                 multicast (IPv6 connections are synced over it too)",
            ),
            (
                "port = 0",
                "lvs.toml:5: sync.port: port 0 is out of range 1..=65535",
            ),
            (
                "ttl = 0",
                "lvs.toml:5: sync.ttl: multicast TTL 0 is out of range 1..=255",
            ),
            (
                "ttl = 256",
                "lvs.toml:5: sync.ttl: multicast TTL 256 is out of range 1..=255",
            ),
            (
                "sync_maxlen = 79",
                "lvs.toml:5: sync.sync_maxlen: sync message length 79 is out of range 80..=65507",
            ),
            (
                "sync_maxlen = 65508",
                "lvs.toml:5: sync.sync_maxlen: sync message length 65508 is out of range",
            ),
            (
                "max_rate = 0",
                "lvs.toml:5: sync.max_rate: 0 is out of range 1..=4294967295",
            ),
            ("key_file = \"\"", "lvs.toml:5: sync.key_file: is empty"),
            (
                "mcast_group = \"224.0.0.81\"",
                "lvs.toml:5: toml: unknown field `mcast_group`",
            ),
            ("syncid = \"1\"", "lvs.toml:5: toml: invalid type"),
        ];
        for (line, expected) in cases {
            // The bad line first, so that its line number is 5 whatever it is.
            let key = if line.starts_with("key_file") {
                ""
            } else {
                "key_file = \"/k\"\n"
            };
            let errors = errors_of(&format!("[sync]\n{line}\n{key}"));
            assert!(
                errors.contains(expected),
                "for {line:?}:\n got: {errors}\nwant: {expected}"
            );
        }
    }

    #[test]
    fn the_key_file_is_required() {
        assert_eq!(
            errors_of("[sync]\nsyncid = 1\n"),
            "lvs.toml:4: sync.key_file: missing: the file holding the key both directors share \
             (such as \"/etc/lvs/sync.key\", made with `head -c 32 /dev/urandom`)"
        );
    }

    #[test]
    fn every_problem_of_the_section_is_reported_at_once() {
        let errors = errors_of("[sync]\nsyncid = 300\nttl = 0\nport = 70000\n");
        assert_eq!(errors.lines().count(), 4, "{errors}");
    }
}
