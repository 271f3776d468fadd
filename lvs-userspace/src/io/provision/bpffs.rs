//! The director's maps pinned in the BPF filesystem, so that tools such as
//! `bpftool map dump pinned /sys/fs/bpf/lvs/eth0/SERVICES` can inspect a running director.
//!
//! The pins live in `<bpffs>/lvs/<interface>/<map name>`, one directory per director
//! interface. They are removed at stop: a pin keeps a map alive after its program is gone, and
//! stale maps would mislead whoever looks. If the BPF filesystem is not mounted (as inside
//! `ip netns exec`, which mounts a fresh sysfs), it is mounted, and unmounted again at stop if
//! nothing else was pinned there meanwhile.

use std::{
    ffi::CString,
    os::unix::{ffi::OsStrExt as _, fs::DirBuilderExt as _},
    path::{Path, PathBuf},
};

use aya::maps::MapData;

/// Where the BPF filesystem is conventionally mounted.
pub const BPFFS_ROOT: &str = "/sys/fs/bpf";

/// Errors of pinning.
#[derive(Debug, thiserror::Error)]
pub enum BpffsError {
    #[error("{action} {path} failed")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("pinning map {name} at {path} failed")]
    Pin {
        name: String,
        path: PathBuf,
        #[source]
        source: aya::pin::PinError,
    },
}

/// The directory that holds an interface's pins under a bpffs mount point.
pub fn pin_dir(root: &Path, interface: &str) -> PathBuf {
    root.join("lvs").join(interface)
}

/// The directory for the pins of the director on `interface` in this process's network
/// namespace, with bpffs mounted at `root` if it was not. In the host's namespace it is
/// `pin_dir` (`/sys/fs/bpf/lvs/eth0`); in another one `lvs/netns-<inode>/<interface>`, since
/// a bpffs is shared by every namespace and their interfaces' names repeat.
///
/// A bpffs this mounts lives in this process's mount namespace: in a private one (as `ip netns
/// exec` makes) the pins, and so the data plane, end with the process; that is logged.
pub fn director_pin_dir(root: &Path, interface: &str) -> Result<PathBuf, BpffsError> {
    if mount_if_absent(root)? {
        tracing::info!(root = %root.display(), "mounted the BPF filesystem");
        if namespace_inode("mnt", "self") != namespace_inode("mnt", "1") {
            tracing::warn!(
                "this process has a mount namespace of its own (as `ip netns exec` gives): the \
                 BPF filesystem mounted in it, and the pinned data plane, may end with it; use \
                 `nsenter --net=...` to keep the data plane across restarts"
            );
        }
    }
    let own = namespace_inode("net", "self").ok_or_else(|| BpffsError::Io {
        action: "finding the network namespace of",
        path: PathBuf::from("/proc/self/ns/net"),
        source: std::io::Error::last_os_error(),
    })?;
    Ok(pin_dir_in(root, own, interface))
}

/// The pin directory of a director on `interface` in the network namespace `namespace` (its
/// inode): `pin_dir` in the host's namespace, `lvs/netns-<inode>/<interface>` in another.
pub fn pin_dir_in(root: &Path, namespace: u64, interface: &str) -> PathBuf {
    if namespace_inode("net", "1") == Some(namespace) {
        pin_dir(root, interface)
    } else {
        root.join("lvs")
            .join(format!("netns-{namespace}"))
            .join(interface)
    }
}

/// The inode of a process's namespace of a kind, which names it.
fn namespace_inode(kind: &str, pid: &str) -> Option<u64> {
    use std::os::unix::fs::MetadataExt as _;
    std::fs::metadata(format!("/proc/{pid}/ns/{kind}"))
        .ok()
        .map(|m| m.ino())
}

/// Pinned maps, removed by `remove`.
#[derive(Debug)]
pub struct Pins {
    root: PathBuf,
    dir: PathBuf,
    files: Vec<PathBuf>,
    mounted: bool,
}

impl Pins {
    /// Pins `maps` (name, map) under `pin_dir(root, interface)`, mounting bpffs at `root`
    /// first if it is not there. Leftovers of a director that did not stop cleanly are
    /// replaced. On failure, whatever was pinned is removed again.
    pub fn create(
        root: &Path,
        interface: &str,
        maps: &[(&str, &MapData)],
    ) -> Result<Self, BpffsError> {
        let mounted = mount_if_absent(root)?;
        let dir = pin_dir(root, interface);
        let mut pins = Self {
            root: root.to_owned(),
            dir: dir.clone(),
            files: Vec::new(),
            mounted,
        };
        if let Err(error) = pins.pin_all(maps) {
            pins.remove();
            return Err(error);
        }
        Ok(pins)
    }

    fn pin_all(&mut self, maps: &[(&str, &MapData)]) -> Result<(), BpffsError> {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.dir)
            .map_err(io_error("creating", &self.dir))?;
        let leftovers = std::fs::read_dir(&self.dir).map_err(io_error("reading", &self.dir))?;
        for entry in leftovers.flatten() {
            let path = entry.path();
            std::fs::remove_file(&path).map_err(io_error("removing the stale pin", &path))?;
        }
        for &(name, map) in maps {
            let path = self.dir.join(name);
            map.pin(&path).map_err(|source| BpffsError::Pin {
                name: name.to_owned(),
                path: path.clone(),
                source,
            })?;
            self.files.push(path);
        }
        Ok(())
    }

    /// The directory holding the pins.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Removes the pins, their directories when empty, and the mount if this created it and
    /// nothing else is in it. Returns what could not be removed, for the caller to report.
    pub fn remove(self) -> Vec<String> {
        let mut problems = Vec::new();
        for file in &self.files {
            if let Err(error) = std::fs::remove_file(file) {
                if error.kind() != std::io::ErrorKind::NotFound {
                    problems.push(format!("removing {}: {error}", file.display()));
                }
            }
        }
        // Directories are removed only when empty: someone else's pins stay where they are.
        let _ = std::fs::remove_dir(&self.dir);
        let _ = std::fs::remove_dir(self.root.join("lvs"));
        if self.mounted && holds_nothing_pinned(&self.root) {
            if let Err(error) = unmount(&self.root) {
                problems.push(format!("unmounting {}: {error}", self.root.display()));
            }
        }
        problems
    }
}

/// Files a fresh bpffs already holds when the kernel has BPF preload (its debug iterators).
const PRELOADED: [&str; 2] = ["maps.debug", "progs.debug"];

/// Whether a bpffs mount holds nothing but what the kernel put there at mount time.
fn holds_nothing_pinned(root: &Path) -> bool {
    std::fs::read_dir(root).is_ok_and(|entries| {
        entries
            .flatten()
            .all(|entry| PRELOADED.iter().any(|name| entry.file_name() == *name))
    })
}

fn c_path(path: &Path) -> std::io::Result<CString> {
    CString::new(path.as_os_str().as_bytes())
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidInput, "NUL in path"))
}

/// Whether a BPF filesystem is mounted at `path`.
pub fn is_bpffs(path: &Path) -> std::io::Result<bool> {
    let c = c_path(path)?;
    // SAFETY: statfs writes only into the zeroed struct it is given, and reads the
    // NUL-terminated path that `c` keeps alive for the call.
    let mut stat: libc::statfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statfs(c.as_ptr(), &mut stat) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(stat.f_type == libc::BPF_FS_MAGIC)
}

/// Mounts bpffs at `root` unless one is there; returns whether it mounted one.
fn mount_if_absent(root: &Path) -> Result<bool, BpffsError> {
    if is_bpffs(root).map_err(io_error("examining", root))? {
        return Ok(false);
    }
    let target = c_path(root).map_err(io_error("mounting bpffs at", root))?;
    let (source, fstype, options) = (c"bpf", c"bpf", c"mode=0700");
    // SAFETY: every pointer is a NUL-terminated string that outlives the call.
    let rc = unsafe {
        libc::mount(
            source.as_ptr(),
            target.as_ptr(),
            fstype.as_ptr(),
            0,
            options.as_ptr().cast(),
        )
    };
    if rc != 0 {
        return Err(io_error("mounting bpffs at", root)(
            std::io::Error::last_os_error(),
        ));
    }
    Ok(true)
}

fn unmount(root: &Path) -> std::io::Result<()> {
    let target = c_path(root)?;
    // SAFETY: `target` is a NUL-terminated path that outlives the call.
    if unsafe { libc::umount(target.as_ptr()) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

fn io_error(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> BpffsError {
    let path = path.to_owned();
    move |source| BpffsError::Io {
        action,
        path,
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pins_go_under_lvs_and_the_interface() {
        assert_eq!(
            pin_dir(Path::new(BPFFS_ROOT), "eth0"),
            Path::new("/sys/fs/bpf/lvs/eth0")
        );
    }

    #[test]
    fn a_plain_directory_is_not_bpffs() {
        assert!(!is_bpffs(&std::env::temp_dir()).unwrap());
        assert!(is_bpffs(Path::new("/nonexistent/lvs")).is_err());
    }
}
