//! Kernel settings under `/proc/sys` (the kernel's own interface for them): reading and
//! writing, and the pure plans that decide what to change and what to put back.
//!
//! A change is always recorded before it is made, with the value found and the value set, so
//! that undoing it can tell "still ours" (put the original back) from "changed by someone
//! since" (leave it, and say so).

use std::{
    collections::BTreeMap,
    fmt,
    path::{Path, PathBuf},
};

use serde::{Deserialize, Serialize};

/// Where the kernel exposes its settings.
pub const PROC_SYS: &str = "/proc/sys";

/// Errors of reading, writing or planning settings.
#[derive(Debug, thiserror::Error)]
pub enum SysctlError {
    #[error("reading {key} failed")]
    Read {
        key: SysctlKey,
        #[source]
        source: std::io::Error,
    },
    #[error("writing {key}={value} failed")]
    Write {
        key: SysctlKey,
        value: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{key} does not exist (is the interface there, and the protocol enabled?)")]
    Missing { key: SysctlKey },
    #[error("{key} holds {value:?}, not a whole number")]
    NotANumber { key: SysctlKey, value: String },
}

/// A setting, named by its path under `/proc/sys` (`net/ipv4/conf/eth0/arp_ignore`).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SysctlKey(String);

impl SysctlKey {
    /// `net.ipv4.conf.<interface>.<name>`; `interface` may be `all` or `default`.
    pub fn ipv4_conf(interface: &str, name: &str) -> Self {
        Self(format!("net/ipv4/conf/{interface}/{name}"))
    }

    /// `net.ipv6.conf.<interface>.<name>`.
    pub fn ipv6_conf(interface: &str, name: &str) -> Self {
        Self(format!("net/ipv6/conf/{interface}/{name}"))
    }

    /// The path below `/proc/sys`.
    pub fn path(&self) -> &str {
        &self.0
    }
}

/// Shown as `sysctl` shows it: dots between components, and a dot inside a component (as in
/// the interface `eth0.100`) written as a slash.
impl fmt::Display for SysctlKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let dotted: Vec<String> = self.0.split('/').map(|c| c.replace('.', "/")).collect();
        f.write_str(&dotted.join("."))
    }
}

/// What value a setting must have.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Want {
    /// Exactly this value.
    Exactly(u32),
    /// This value or lower; a higher one is lowered to it.
    AtMost(u32),
}

impl Want {
    pub fn accepts(self, value: u32) -> bool {
        match self {
            Want::Exactly(want) => value == want,
            Want::AtMost(limit) => value <= limit,
        }
    }

    /// The value written when the current one is not accepted.
    pub fn target(self) -> u32 {
        match self {
            Want::Exactly(value) | Want::AtMost(value) => value,
        }
    }
}

impl fmt::Display for Want {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Want::Exactly(value) => write!(f, "{value}"),
            Want::AtMost(limit) => write!(f, "at most {limit}"),
        }
    }
}

/// A setting and the value it must have.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Setting {
    pub key: SysctlKey,
    pub want: Want,
}

impl Setting {
    pub fn new(key: SysctlKey, want: Want) -> Self {
        Self { key, want }
    }
}

/// A change that was made: the value found before it, and the value written.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SysctlRecord {
    pub key: SysctlKey,
    pub original: String,
    pub set: String,
}

/// One step of bringing settings to what is wanted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ApplyStep {
    /// Already acceptable; nothing to do.
    Keep { key: SysctlKey, value: String },
    /// Must be written.
    Change {
        key: SysctlKey,
        from: String,
        to: String,
    },
}

/// Decides, setting by setting, what to change. `current` holds every setting's value now.
pub fn plan_apply(
    settings: &[Setting],
    current: &BTreeMap<SysctlKey, String>,
) -> Result<Vec<ApplyStep>, SysctlError> {
    settings
        .iter()
        .map(|setting| {
            let key = setting.key.clone();
            let value = current
                .get(&key)
                .ok_or_else(|| SysctlError::Missing { key: key.clone() })?;
            let number = parse_number(&key, value)?;
            Ok(if setting.want.accepts(number) {
                ApplyStep::Keep {
                    key,
                    value: value.clone(),
                }
            } else {
                ApplyStep::Change {
                    key,
                    from: value.clone(),
                    to: setting.want.target().to_string(),
                }
            })
        })
        .collect()
}

/// Records a change about to be made. Only the first change of a setting keeps its original,
/// so the value from before the first `up` survives any number of repeats.
pub fn record_change(records: &mut Vec<SysctlRecord>, key: &SysctlKey, from: &str, to: &str) {
    match records.iter_mut().find(|r| &r.key == key) {
        Some(record) => record.set = to.to_owned(),
        None => records.push(SysctlRecord {
            key: key.clone(),
            original: from.to_owned(),
            set: to.to_owned(),
        }),
    }
}

/// One step of putting recorded settings back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RestoreStep {
    /// Still the value we set: write the original back.
    Restore {
        key: SysctlKey,
        from: String,
        to: String,
    },
    /// Already holds the original (the change never happened, or was undone by hand).
    AlreadyOriginal { key: SysctlKey, value: String },
    /// Someone changed it after us; their value is left alone.
    ChangedSince {
        key: SysctlKey,
        now: String,
        set: String,
        original: String,
    },
    /// The setting no longer exists (its interface went away).
    Gone { key: SysctlKey },
}

/// Decides, record by record, how to put settings back. `current` maps each recorded key to
/// its value now, or None when it no longer exists. The steps come in reverse order of the
/// changes, as an undo should.
pub fn plan_restore(
    records: &[SysctlRecord],
    current: &BTreeMap<SysctlKey, Option<String>>,
) -> Vec<RestoreStep> {
    records
        .iter()
        .rev()
        .map(|record| {
            let key = record.key.clone();
            match current.get(&key).cloned().flatten() {
                None => RestoreStep::Gone { key },
                Some(now) if same_value(&now, &record.set) => RestoreStep::Restore {
                    key,
                    from: now,
                    to: record.original.clone(),
                },
                Some(now) if same_value(&now, &record.original) => {
                    RestoreStep::AlreadyOriginal { key, value: now }
                }
                Some(now) => RestoreStep::ChangedSince {
                    key,
                    now,
                    set: record.set.clone(),
                    original: record.original.clone(),
                },
            }
        })
        .collect()
}

/// Two values read from `/proc/sys` are the same setting (whitespace does not count).
fn same_value(a: &str, b: &str) -> bool {
    a.trim() == b.trim()
}

fn parse_number(key: &SysctlKey, value: &str) -> Result<u32, SysctlError> {
    value.trim().parse().map_err(|_| SysctlError::NotANumber {
        key: key.clone(),
        value: value.to_owned(),
    })
}

/// The settings tree of this network namespace (`/proc/sys`, or a directory standing in for
/// it in tests).
#[derive(Clone, Debug)]
pub struct Sysctls {
    root: PathBuf,
}

impl Default for Sysctls {
    fn default() -> Self {
        Self::at(PROC_SYS)
    }
}

impl Sysctls {
    pub fn at(root: impl AsRef<Path>) -> Self {
        Self {
            root: root.as_ref().to_owned(),
        }
    }

    fn file(&self, key: &SysctlKey) -> PathBuf {
        self.root.join(key.path())
    }

    /// The value of a setting, without its newline; None when it does not exist.
    pub fn read(&self, key: &SysctlKey) -> Result<Option<String>, SysctlError> {
        match std::fs::read_to_string(self.file(key)) {
            Ok(text) => Ok(Some(text.trim().to_owned())),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(SysctlError::Read {
                key: key.clone(),
                source,
            }),
        }
    }

    /// The value of a setting that must exist.
    pub fn read_existing(&self, key: &SysctlKey) -> Result<String, SysctlError> {
        self.read(key)?
            .ok_or_else(|| SysctlError::Missing { key: key.clone() })
    }

    /// Writes a setting. The file is opened without creating it: a missing setting is an
    /// error, never a new file.
    pub fn write(&self, key: &SysctlKey, value: &str) -> Result<(), SysctlError> {
        use std::io::Write as _;
        let error = |source| SysctlError::Write {
            key: key.clone(),
            value: value.to_owned(),
            source,
        };
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .truncate(true)
            .open(self.file(key))
            .map_err(error)?;
        file.write_all(format!("{value}\n").as_bytes())
            .map_err(error)
    }

    /// The values of these settings now, each of which must exist.
    pub fn read_all<'a>(
        &self,
        keys: impl IntoIterator<Item = &'a SysctlKey>,
    ) -> Result<BTreeMap<SysctlKey, String>, SysctlError> {
        keys.into_iter()
            .map(|key| Ok((key.clone(), self.read_existing(key)?)))
            .collect()
    }

    /// Whether `/proc/sys/net/ipv4/conf/<interface>` exists, i.e. the kernel has IPv4
    /// settings for an interface of that name in this namespace.
    pub fn has_ipv4_conf(&self, interface: &str) -> bool {
        self.root.join("net/ipv4/conf").join(interface).is_dir()
    }

    /// Whether the kernel has IPv6 settings for the interface (it has none when IPv6 is
    /// absent, or for a link that cannot carry it).
    pub fn has_ipv6_conf(&self, interface: &str) -> bool {
        self.root.join("net/ipv6/conf").join(interface).is_dir()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(name: &str) -> SysctlKey {
        SysctlKey::ipv4_conf("eth0", name)
    }

    fn current(pairs: &[(&SysctlKey, &str)]) -> BTreeMap<SysctlKey, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).clone(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn keys_print_as_sysctl_names() {
        assert_eq!(
            SysctlKey::ipv4_conf("all", "arp_ignore").to_string(),
            "net.ipv4.conf.all.arp_ignore"
        );
        assert_eq!(
            SysctlKey::ipv4_conf("eth0.100", "arp_announce").to_string(),
            "net.ipv4.conf.eth0/100.arp_announce"
        );
        assert_eq!(
            SysctlKey::ipv6_conf("eth0", "ndisc_notify").path(),
            "net/ipv6/conf/eth0/ndisc_notify"
        );
    }

    #[test]
    fn apply_changes_only_what_is_not_accepted() {
        let (ignore, announce, drop) = (key("arp_ignore"), key("arp_announce"), key("drop"));
        let settings = [
            Setting::new(ignore.clone(), Want::Exactly(1)),
            Setting::new(announce.clone(), Want::Exactly(2)),
            Setting::new(drop.clone(), Want::AtMost(1)),
        ];
        let plan = plan_apply(
            &settings,
            &current(&[(&ignore, "0"), (&announce, "2"), (&drop, "3")]),
        )
        .unwrap();
        assert_eq!(
            plan,
            [
                ApplyStep::Change {
                    key: ignore.clone(),
                    from: "0".into(),
                    to: "1".into()
                },
                ApplyStep::Keep {
                    key: announce.clone(),
                    value: "2".into()
                },
                ApplyStep::Change {
                    key: drop.clone(),
                    from: "3".into(),
                    to: "1".into()
                },
            ]
        );
        let plan = plan_apply(&settings[2..], &current(&[(&drop, "0")])).unwrap();
        assert!(matches!(plan[0], ApplyStep::Keep { .. }), "0 is at most 1");
    }

    #[test]
    fn apply_refuses_missing_and_garbled_settings() {
        let ignore = key("arp_ignore");
        let settings = [Setting::new(ignore.clone(), Want::Exactly(1))];
        assert!(matches!(
            plan_apply(&settings, &BTreeMap::new()),
            Err(SysctlError::Missing { .. })
        ));
        assert!(matches!(
            plan_apply(&settings, &current(&[(&ignore, "one")])),
            Err(SysctlError::NotANumber { .. })
        ));
    }

    #[test]
    fn the_first_original_survives_repeated_changes() {
        let ignore = key("arp_ignore");
        let mut records = Vec::new();
        record_change(&mut records, &ignore, "0", "1");
        record_change(&mut records, &ignore, "5", "1");
        assert_eq!(
            records,
            [SysctlRecord {
                key: ignore,
                original: "0".into(),
                set: "1".into()
            }]
        );
    }

    #[test]
    fn restore_puts_back_only_what_is_still_ours() {
        let record = |name: &str, original: &str, set: &str| SysctlRecord {
            key: key(name),
            original: original.into(),
            set: set.into(),
        };
        let records = [
            record("ours", "0", "1"),
            record("undone", "0", "1"),
            record("theirs", "0", "1"),
            record("gone", "0", "1"),
        ];
        let now: BTreeMap<_, _> = [
            (key("ours"), Some("1".to_owned())),
            (key("undone"), Some("0".to_owned())),
            (key("theirs"), Some("2".to_owned())),
            (key("gone"), None),
        ]
        .into_iter()
        .collect();
        assert_eq!(
            plan_restore(&records, &now),
            [
                RestoreStep::Gone { key: key("gone") },
                RestoreStep::ChangedSince {
                    key: key("theirs"),
                    now: "2".into(),
                    set: "1".into(),
                    original: "0".into()
                },
                RestoreStep::AlreadyOriginal {
                    key: key("undone"),
                    value: "0".into()
                },
                RestoreStep::Restore {
                    key: key("ours"),
                    from: "1".into(),
                    to: "0".into()
                },
            ]
        );
    }

    #[test]
    fn files_are_read_and_written_but_never_created() {
        let dir = std::env::temp_dir().join(format!("lvs-sysctl-{}", std::process::id()));
        let conf = dir.join("net/ipv4/conf/eth0");
        std::fs::create_dir_all(&conf).unwrap();
        std::fs::write(conf.join("arp_ignore"), "0\n").unwrap();
        let sysctls = Sysctls::at(&dir);
        let ignore = key("arp_ignore");
        assert_eq!(sysctls.read(&ignore).unwrap().as_deref(), Some("0"));
        sysctls.write(&ignore, "1").unwrap();
        assert_eq!(sysctls.read_existing(&ignore).unwrap(), "1");
        assert!(sysctls.has_ipv4_conf("eth0"));
        assert!(!sysctls.has_ipv4_conf("eth1"));
        let missing = SysctlKey::ipv4_conf("eth1", "arp_ignore");
        assert_eq!(sysctls.read(&missing).unwrap(), None);
        assert!(sysctls.write(&missing, "1").is_err());
        assert!(!dir.join(missing.path()).exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
