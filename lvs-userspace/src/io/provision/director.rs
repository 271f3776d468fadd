//! What the director's host must be like, set up by the controller at start and undone at
//! stop (the VIPs themselves are handled by the daemon, see `manage_vips`):
//!
//! - `net.ipv4.conf.{all,<if>}.drop_gratuitous_arp = 0`. The director follows a real server's
//!   MAC change by the gratuitous ARP the real server sends (`arp_notify=1` there); the kernel
//!   applies it to the existing neighbour entry at once, overriding `locktime`, and notifies
//!   the daemon. With the setting at 1 (on either, the kernel ORs them) every gratuitous ARP
//!   is dropped and a moved real server is only found again after its entry fails, tens of
//!   seconds of lost flows later.
//! - `net.ipv4.conf.<if>.arp_ignore <= 1`. The director must answer ARP for the VIP on its
//!   interface. The VIP is a /32 there, so `arp_ignore=2` (answer only senders on the
//!   address's own subnet) would silence it for every client, and 3 or 8 would too. Higher
//!   values are lowered to 1, which keeps the operator's intent of not answering for addresses
//!   of other interfaces. The kernel uses the higher of `all` and the interface, but `all` is
//!   not changed (it would loosen every other interface): a value above 1 there is reported.
//!
//! Not set, on purpose: `ip_forward` (the XDP program forwards; the kernel never routes VIP
//! traffic, unlike IPVS), `rp_filter` (forwarded frames never reach the kernel's IP layer),
//! and the neighbour timers (the daemon re-confirms its real servers every 5 s itself).
//!
//! The changes are recorded in a state file per network namespace and interface, so that a
//! director killed without clean-up is restored correctly by the next one's stop.

use std::path::{Path, PathBuf};

use tracing::{info, warn};

use super::{
    state::{StateError, StateFile, network_namespace_id},
    sysctl::{
        ApplyStep, RestoreStep, Setting, SysctlError, SysctlKey, Sysctls, Want, plan_apply,
        plan_restore, record_change,
    },
};

/// Where the director records the settings it changed.
pub const DIRECTOR_STATE_DIR: &str = "/run/lvs/director";

/// Errors of preparing the director's host.
#[derive(Debug, thiserror::Error)]
pub enum DirectorHostError {
    #[error(transparent)]
    Sysctl(#[from] SysctlError),
    #[error(transparent)]
    State(#[from] StateError),
    #[error(
        "another director is running on {interface} (it holds {path}): two directors never \
         drive one interface; stop it first (a restart takes over its data plane)"
    )]
    AnotherDirector { interface: String, path: PathBuf },
    #[error("locking {path} failed")]
    Lock {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// The name of the director's state files for `interface` in this network namespace.
pub fn state_name(interface: &str) -> Result<String, DirectorHostError> {
    Ok(format!("netns-{}-{interface}", network_namespace_id()?))
}

/// The one director of an interface in a network namespace: held for the daemon's life, and
/// released by the kernel however it ends (a crash included), so the next one can start.
#[derive(Debug)]
pub struct DirectorLock {
    file: std::fs::File,
}

impl DirectorLock {
    /// Marks the director alive now: the lock file's modification time is its last sign of
    /// life, which `lvs status` shows when the data plane runs without a daemon.
    pub fn heartbeat(&self) -> std::io::Result<()> {
        self.file.set_modified(std::time::SystemTime::now())
    }
}

/// A data plane that keeps forwarding with no director: its program's link is pinned, and no
/// daemon holds its interface's lock.
#[derive(Debug, PartialEq, Eq)]
pub struct Unattended {
    pub interface: String,
    /// The pin directory.
    pub pins: PathBuf,
    /// The last sign of life of the director that left it.
    pub since: std::time::SystemTime,
}

/// The data planes of this network namespace that run without a director.
pub fn unattended(state_dir: &Path, bpffs_root: &Path) -> Vec<Unattended> {
    use std::os::fd::AsRawFd as _;
    let Ok(namespace) = network_namespace_id() else {
        return Vec::new();
    };
    let prefix = format!("netns-{namespace}-");
    let Ok(entries) = std::fs::read_dir(state_dir) else {
        return Vec::new();
    };
    let mut found = Vec::new();
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(interface) = name
            .strip_prefix(&prefix)
            .and_then(|rest| rest.strip_suffix(".lock"))
        else {
            continue;
        };
        let pins = super::bpffs::pin_dir_in(bpffs_root, namespace, interface);
        if !pins.join(crate::io::bpf::pins::LINK_PIN).exists() {
            continue;
        }
        let Ok(file) = std::fs::File::open(entry.path()) else {
            continue;
        };
        // SAFETY: flock only reads the descriptor number, which `file` keeps open. The lock
        // is released when `file` is dropped, at the end of this iteration.
        let free = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_SH | libc::LOCK_NB) } == 0;
        let since = file.metadata().and_then(|m| m.modified());
        if let (true, Ok(since)) = (free, since) {
            found.push(Unattended {
                interface: interface.to_owned(),
                pins,
                since,
            });
        }
    }
    found
}

/// Takes the interface for this director, or says which lock another one holds.
pub fn lock_interface(
    state_dir: &Path,
    interface: &str,
) -> Result<DirectorLock, DirectorHostError> {
    use std::os::{fd::AsRawFd as _, unix::fs::DirBuilderExt as _};
    let lock_error = |path: &Path| {
        let path = path.to_owned();
        move |source| DirectorHostError::Lock { path, source }
    };
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(state_dir)
        .map_err(lock_error(state_dir))?;
    let path = state_dir.join(format!(
        "netns-{}-{interface}.lock",
        network_namespace_id()?
    ));
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(lock_error(&path))?;
    // SAFETY: flock only reads the descriptor number, which `file` keeps open.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        let error = std::io::Error::last_os_error();
        return Err(if error.kind() == std::io::ErrorKind::WouldBlock {
            DirectorHostError::AnotherDirector {
                interface: interface.to_owned(),
                path,
            }
        } else {
            lock_error(&path)(error)
        });
    }
    Ok(DirectorLock { file })
}

/// The settings the director relies on, for its interface.
pub fn director_settings(interface: &str) -> Vec<Setting> {
    vec![
        Setting::new(
            SysctlKey::ipv4_conf("all", "drop_gratuitous_arp"),
            Want::Exactly(0),
        ),
        Setting::new(
            SysctlKey::ipv4_conf(interface, "drop_gratuitous_arp"),
            Want::Exactly(0),
        ),
        Setting::new(
            SysctlKey::ipv4_conf(interface, "arp_ignore"),
            Want::AtMost(1),
        ),
    ]
}

/// What is wrong with `net.ipv4.conf.all.arp_ignore`, which the director does not change.
pub fn arp_ignore_all_problem(value: &str) -> Option<String> {
    let number: u32 = value.trim().parse().ok()?;
    (number > 1).then(|| {
        format!(
            "net.ipv4.conf.all.arp_ignore = {number}: above 1 the director does not answer ARP \
             for a /32 VIP, so clients cannot reach it; set it to 1 or 0"
        )
    })
}

/// The director's changes to its host, undone by `tear_down`.
#[derive(Debug)]
pub struct DirectorHost {
    sysctls: Sysctls,
    state_dir: PathBuf,
    /// The name of the state file, once settings were applied.
    state: Option<String>,
}

impl Default for DirectorHost {
    fn default() -> Self {
        Self::new(Sysctls::default(), DIRECTOR_STATE_DIR)
    }
}

impl DirectorHost {
    pub fn new(sysctls: Sysctls, state_dir: impl AsRef<Path>) -> Self {
        Self {
            sysctls,
            state_dir: state_dir.as_ref().to_owned(),
            state: None,
        }
    }

    /// Applies the settings the director relies on. (The maps and the program's link are
    /// pinned by the data plane itself, `io::bpf::pins`, since they must outlive the daemon.)
    pub fn set_up(&mut self, interface: &str) -> Result<(), DirectorHostError> {
        self.apply_settings(interface)
    }

    fn apply_settings(&mut self, interface: &str) -> Result<(), DirectorHostError> {
        let name = state_name(interface)?;
        let file = StateFile::lock(&self.state_dir, &name)?;
        self.state = Some(name);
        // A state left by a director that was killed holds the true originals; its records
        // are kept, and the values now (ours) are not mistaken for them.
        let mut state = file.load()?;
        let settings = director_settings(interface);
        let current = self.sysctls.read_all(settings.iter().map(|s| &s.key))?;
        let plan = plan_apply(&settings, &current)?;
        for step in &plan {
            if let ApplyStep::Change { key, from, to } = step {
                record_change(&mut state.sysctls, key, from, to);
            }
        }
        file.save(&state)?;
        drop(file);
        for step in plan {
            if let ApplyStep::Change { key, from, to } = step {
                self.sysctls.write(&key, &to)?;
                info!(setting = %key, value = %to, was = %from, "director setting changed");
            }
        }
        let all = SysctlKey::ipv4_conf("all", "arp_ignore");
        if let Some(problem) = self
            .sysctls
            .read(&all)?
            .as_deref()
            .and_then(arp_ignore_all_problem)
        {
            warn!("{problem}");
        }
        Ok(())
    }

    /// Puts back the settings that still hold the values set here, and forgets the health
    /// states kept for a restart. Failures are logged, never returned: clean-up goes as far
    /// as it can.
    pub fn tear_down(&mut self) {
        let Some(name) = self.state.take() else {
            return;
        };
        let health = self.state_dir.join(format!("{name}.health"));
        if let Err(error) = std::fs::remove_file(&health)
            && error.kind() != std::io::ErrorKind::NotFound
        {
            warn!(%error, path = %health.display(), "removing the kept health states failed");
        }
        if let Err(error) = self.restore(&name) {
            warn!(error = %anyhow::Error::from(error), "restoring the director's settings failed");
        }
    }

    fn restore(&self, name: &str) -> Result<(), DirectorHostError> {
        let file = StateFile::lock(&self.state_dir, name)?;
        let mut state = file.load()?;
        let mut current = std::collections::BTreeMap::new();
        for record in &state.sysctls {
            current.insert(record.key.clone(), self.sysctls.read(&record.key)?);
        }
        for step in plan_restore(&state.sysctls, &current) {
            match step {
                RestoreStep::Restore { key, to, .. } => {
                    self.sysctls.write(&key, &to)?;
                    info!(setting = %key, value = %to, "director setting restored");
                }
                RestoreStep::ChangedSince { key, now, set, .. } => {
                    warn!(setting = %key, %now, %set, "changed by someone else since start; left as is");
                }
                RestoreStep::AlreadyOriginal { .. } | RestoreStep::Gone { .. } => {}
            }
        }
        state.sysctls.clear();
        file.save(&state)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_director_on_an_interface_is_refused_until_the_first_ends() {
        let dir = tempfile::tempdir().unwrap();
        let first = lock_interface(dir.path(), "eth0").unwrap();
        let error = lock_interface(dir.path(), "eth0").unwrap_err();
        assert!(
            error
                .to_string()
                .starts_with("another director is running on eth0"),
            "{error}"
        );
        lock_interface(dir.path(), "eth1").expect("another interface is free");
        drop(first);
        lock_interface(dir.path(), "eth0").expect("free again once the first ends");
    }

    #[test]
    fn the_director_needs_gratuitous_arp_and_arp_answers_for_the_vip() {
        let settings = director_settings("eth0");
        let named: Vec<(String, Want)> = settings
            .iter()
            .map(|s| (s.key.to_string(), s.want))
            .collect();
        assert_eq!(
            named,
            [
                (
                    "net.ipv4.conf.all.drop_gratuitous_arp".into(),
                    Want::Exactly(0)
                ),
                (
                    "net.ipv4.conf.eth0.drop_gratuitous_arp".into(),
                    Want::Exactly(0)
                ),
                ("net.ipv4.conf.eth0.arp_ignore".into(), Want::AtMost(1)),
            ]
        );
        assert_eq!(arp_ignore_all_problem("1"), None);
        assert_eq!(arp_ignore_all_problem("0\n"), None);
        assert!(arp_ignore_all_problem("2").unwrap().contains("= 2"));
    }

    /// The whole set-up and tear-down against a directory standing in for /proc/sys: what
    /// was changed is put back, what was already right is untouched, and a value changed by
    /// someone else meanwhile is left alone.
    #[test]
    fn settings_are_applied_recorded_and_restored() {
        let base = std::env::temp_dir().join(format!("lvs-director-host-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        let proc_sys = base.join("proc");
        for (interface, drop, ignore) in [("all", "1", "0"), ("eth0", "0", "2")] {
            let dir = proc_sys.join("net/ipv4/conf").join(interface);
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(dir.join("drop_gratuitous_arp"), format!("{drop}\n")).unwrap();
            std::fs::write(dir.join("arp_ignore"), format!("{ignore}\n")).unwrap();
        }
        let sysctls = Sysctls::at(&proc_sys);
        let read = |interface: &str, name: &str| {
            sysctls
                .read_existing(&SysctlKey::ipv4_conf(interface, name))
                .unwrap()
        };
        let mut host = DirectorHost::new(sysctls.clone(), base.join("state"));
        host.apply_settings("eth0").unwrap();
        assert_eq!(read("all", "drop_gratuitous_arp"), "0");
        assert_eq!(read("eth0", "arp_ignore"), "1");
        assert_eq!(read("all", "arp_ignore"), "0", "all is never changed");

        // A second director start after a crash keeps the first originals.
        let mut again = DirectorHost::new(sysctls.clone(), base.join("state"));
        host.state.take();
        again.apply_settings("eth0").unwrap();
        sysctls
            .write(&SysctlKey::ipv4_conf("all", "drop_gratuitous_arp"), "0")
            .unwrap();
        sysctls
            .write(&SysctlKey::ipv4_conf("eth0", "arp_ignore"), "0")
            .unwrap();
        again.tear_down();
        assert_eq!(
            read("all", "drop_gratuitous_arp"),
            "1",
            "restored to the value before the first start"
        );
        assert_eq!(
            read("eth0", "arp_ignore"),
            "0",
            "changed by someone else: kept"
        );
        assert_eq!(read("eth0", "drop_gratuitous_arp"), "0", "never touched");
        let leftovers: Vec<_> = std::fs::read_dir(base.join("state"))
            .unwrap()
            .flatten()
            .collect();
        assert!(
            leftovers.is_empty(),
            "the state file is removed: {leftovers:?}"
        );
        std::fs::remove_dir_all(&base).unwrap();
    }
}
