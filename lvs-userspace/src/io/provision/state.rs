//! What provisioning changed, kept in a file so that undoing it later (from another process,
//! or after a crash) puts back exactly what was there and nothing more.
//!
//! Network namespaces share the filesystem, so a state file is named after the namespace it
//! describes (the inode of `/proc/self/ns/net`); otherwise undoing in one namespace would
//! touch what was done in another. A lock on the state directory itself serialises runs (two
//! systemd units for two VIPs starting at once, or the binary and the shell script, which
//! takes the same lock); holders keep it only for a moment, and it leaves no files behind.

use std::{
    collections::BTreeSet,
    fs::File,
    io::Write as _,
    net::IpAddr,
    os::{fd::AsRawFd as _, unix::fs::DirBuilderExt as _},
    path::{Path, PathBuf},
    time::Duration,
};

use serde::{Deserialize, Serialize};

use super::sysctl::SysctlRecord;

/// The format written; a file of another version is refused rather than misread.
pub const STATE_VERSION: u32 = 1;

/// How long to wait for another run holding the lock before giving up.
const LOCK_WAIT: Duration = Duration::from_secs(10);
const LOCK_RETRY: Duration = Duration::from_millis(100);

/// Errors of the state file.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("finding this process's network namespace failed")]
    Namespace(#[source] std::io::Error),
    #[error("{action} {path} failed")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is held by another run for more than {LOCK_WAIT:?}")]
    Busy { path: PathBuf },
    #[error("{path} is not a state file this version understands: {reason}")]
    Unreadable { path: PathBuf, reason: String },
}

/// Everything a provisioning run changed and must be able to undo.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct State {
    pub version: u32,
    /// Addresses this tool added (a real server's VIPs on `lo`); ones it found are not here.
    #[serde(default)]
    pub added_addresses: BTreeSet<IpAddr>,
    /// Settings this tool changed, in the order it changed them.
    #[serde(default)]
    pub sysctls: Vec<SysctlRecord>,
}

impl State {
    pub fn new() -> Self {
        Self {
            version: STATE_VERSION,
            ..Self::default()
        }
    }

    /// Nothing left to undo.
    pub fn is_empty(&self) -> bool {
        self.added_addresses.is_empty() && self.sysctls.is_empty()
    }

    pub fn to_json(&self) -> String {
        // A struct of strings, sets and vectors always serialises.
        serde_json::to_string_pretty(self).unwrap_or_default() + "\n"
    }

    /// Parses a state file's text; `Err` carries the reason it cannot be used.
    pub fn from_json(text: &str) -> Result<Self, String> {
        let state: State = serde_json::from_str(text).map_err(|e| e.to_string())?;
        if state.version != STATE_VERSION {
            return Err(format!(
                "version {} (this program writes {STATE_VERSION})",
                state.version
            ));
        }
        Ok(state)
    }
}

/// The network namespace this process runs in, as a number that names it on this boot.
pub fn network_namespace_id() -> Result<u64, StateError> {
    use std::os::unix::fs::MetadataExt as _;
    std::fs::metadata("/proc/self/ns/net")
        .map(|m| m.ino())
        .map_err(StateError::Namespace)
}

/// A state file, locked for as long as this value lives.
#[derive(Debug)]
pub struct StateFile {
    path: PathBuf,
    _lock: File,
}

impl StateFile {
    /// Locks the directory and opens the state `<dir>/<name>.json` (creating `dir`, mode
    /// 0700, if needed). Waits up to 10 s for another run that holds the lock.
    pub fn lock(dir: &Path, name: &str) -> Result<Self, StateError> {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(io_error("creating", dir))?;
        let lock_path = dir.to_owned();
        let lock = File::open(dir).map_err(io_error("opening", dir))?;
        let deadline = std::time::Instant::now() + LOCK_WAIT;
        loop {
            // SAFETY: flock only reads the descriptor number, which `lock` keeps open.
            if unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
                break;
            }
            let error = std::io::Error::last_os_error();
            if error.kind() != std::io::ErrorKind::WouldBlock {
                return Err(io_error("locking", &lock_path)(error));
            }
            if std::time::Instant::now() >= deadline {
                return Err(StateError::Busy { path: lock_path });
            }
            std::thread::sleep(LOCK_RETRY);
        }
        Ok(Self {
            path: dir.join(format!("{name}.json")),
            _lock: lock,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The recorded state; an empty one when there is no file.
    pub fn load(&self) -> Result<State, StateError> {
        match std::fs::read_to_string(&self.path) {
            Ok(text) => State::from_json(&text).map_err(|reason| StateError::Unreadable {
                path: self.path.clone(),
                reason,
            }),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(State::new()),
            Err(source) => Err(io_error("reading", &self.path)(source)),
        }
    }

    /// Writes the state (atomically: a crash leaves the old file or the new one, never half
    /// of one); an empty state removes the file.
    pub fn save(&self, state: &State) -> Result<(), StateError> {
        if state.is_empty() {
            return match std::fs::remove_file(&self.path) {
                Ok(()) => Ok(()),
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(()),
                Err(source) => Err(io_error("removing", &self.path)(source)),
            };
        }
        let temporary = self.path.with_extension("json.tmp");
        let mut file = File::create(&temporary).map_err(io_error("creating", &temporary))?;
        file.write_all(state.to_json().as_bytes())
            .and_then(|()| file.sync_all())
            .map_err(io_error("writing", &temporary))?;
        std::fs::rename(&temporary, &self.path).map_err(io_error("replacing", &self.path))
    }
}

fn io_error(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> StateError {
    let path = path.to_owned();
    move |source| StateError::Io {
        action,
        path,
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::provision::sysctl::SysctlKey;

    fn sample() -> State {
        let mut state = State::new();
        state.added_addresses.insert("10.77.0.100".parse().unwrap());
        state
            .added_addresses
            .insert("2001:db8::100".parse().unwrap());
        state.sysctls.push(SysctlRecord {
            key: SysctlKey::ipv4_conf("all", "arp_ignore"),
            original: "0".into(),
            set: "1".into(),
        });
        state
    }

    fn temporary_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("lvs-state-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn state_round_trips_through_json() {
        let state = sample();
        assert_eq!(State::from_json(&state.to_json()), Ok(state));
    }

    #[test]
    fn foreign_versions_and_fields_are_refused() {
        let text = sample()
            .to_json()
            .replace("\"version\": 1", "\"version\": 2");
        assert!(State::from_json(&text).unwrap_err().contains("version 2"));
        let text = sample()
            .to_json()
            .replace("\"version\": 1", "\"version\": 1, \"extra\": 0");
        assert!(State::from_json(&text).is_err());
        assert!(State::from_json("not json").is_err());
    }

    #[test]
    fn a_state_file_is_saved_loaded_and_removed_when_empty() {
        let dir = temporary_dir("file");
        let file = StateFile::lock(&dir, "netns-1").unwrap();
        assert_eq!(
            file.load().unwrap(),
            State::new(),
            "no file is an empty state"
        );
        file.save(&sample()).unwrap();
        assert_eq!(file.load().unwrap(), sample());
        file.save(&State::new()).unwrap();
        assert!(!file.path().exists());
        std::fs::write(file.path(), "{").unwrap();
        assert!(matches!(file.load(), Err(StateError::Unreadable { .. })));
        drop(file);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_namespace_has_an_id() {
        assert!(network_namespace_id().unwrap() > 0);
    }
}
