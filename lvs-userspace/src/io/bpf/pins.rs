//! The data plane pinned in bpffs, so that it outlives the daemon.
//!
//! The program is attached through a BPF link pinned at `<dir>/link`, and every map is pinned
//! beside it under its own name. While the pins exist the kernel keeps the program attached
//! and the maps alive, whatever happens to the process that made them: a crash, a `kill -9`
//! or a restart leave forwarding untouched. The next director loads its object with the
//! pinned maps in place of fresh ones (after checking that it understands them), and
//! replaces the program on the pinned link in one atomic step, so no frame meets a detached
//! interface or an empty flow table. A stop for good removes the pins, which detaches the
//! program and frees the maps.

use std::{
    os::unix::fs::DirBuilderExt as _,
    path::{Path, PathBuf},
};

use aya::maps::{Array, Map, MapData, MapInfo};
use lvs_common::{MAP_LAYOUT_VERSION, map_names};

/// The name of the link's pin in the pin directory.
pub const LINK_PIN: &str = "link";

/// Every map the controller pins, by name.
pub const PINNED_MAPS: [&str; 18] = [
    map_names::SERVICES,
    map_names::SERVICES6,
    map_names::FLOWS6,
    map_names::PERSIST6,
    map_names::LOOKUP,
    map_names::REAL_SERVERS,
    map_names::FLOWS,
    map_names::PERSIST,
    map_names::SETTINGS,
    map_names::CURSORS,
    map_names::DIRECTOR,
    map_names::COUNTERS,
    map_names::SERVICE_STATS,
    map_names::REAL_SERVER_STATS,
    map_names::LAYOUT,
    map_names::DENY,
    map_names::DENY6,
    map_names::DENY_STATS,
];

/// What a starting data plane found in its pin directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Inheritance {
    /// Nothing pinned: fresh maps.
    Fresh,
    /// A previous director's maps, of this layout: adopted with their contents.
    Adopted,
    /// A previous director's maps that this one does not understand; they were unpinned and
    /// fresh maps made, so its connections are scheduled anew.
    StartedClean { reason: String },
}

/// Whether the maps pinned in `dir` can be adopted by a data plane loading `object` with a
/// flow table of `flow_table_size`: the layout version they carry must be this build's, and
/// every map's key size, value size and capacity must be the object's.
pub fn examine(dir: &Path, object: &[u8], flow_table_size: u32) -> Inheritance {
    if !PINNED_MAPS.iter().any(|name| dir.join(name).exists()) {
        return Inheritance::Fresh;
    }
    match mismatch(dir, object, flow_table_size) {
        None => Inheritance::Adopted,
        Some(reason) => Inheritance::StartedClean { reason },
    }
}

/// Why the pinned maps cannot be adopted, if they cannot.
fn mismatch(dir: &Path, object: &[u8], flow_table_size: u32) -> Option<String> {
    match layout_version(&dir.join(map_names::LAYOUT)) {
        Ok(version) if version == MAP_LAYOUT_VERSION => {}
        Ok(version) => {
            return Some(format!(
                "the pinned maps have layout version {version}, this lvs uses {MAP_LAYOUT_VERSION}"
            ));
        }
        Err(error) => return Some(format!("the pinned maps carry no layout version: {error}")),
    }
    let parsed = match aya_obj::Object::parse(object) {
        Ok(parsed) => parsed,
        Err(error) => return Some(format!("the embedded object does not parse: {error}")),
    };
    for name in PINNED_MAPS {
        let Some(definition) = parsed.maps.get(name) else {
            return Some(format!("this lvs has no map {name}"));
        };
        let pinned = match MapInfo::from_pin(dir.join(name)) {
            Ok(info) => info,
            Err(error) => return Some(format!("the pinned map {name} cannot be read: {error}")),
        };
        let capacity = if name == map_names::FLOWS || name == map_names::FLOWS6 {
            lvs_common::flow_table::bucket_count(flow_table_size)
        } else {
            definition.max_entries()
        };
        let wanted = (definition.key_size(), definition.value_size(), capacity);
        let found = (pinned.key_size(), pinned.value_size(), pinned.max_entries());
        if wanted != found {
            return Some(format!(
                "the pinned map {name} has (key size, value size, entries) {found:?}, this lvs \
                 wants {wanted:?}"
            ));
        }
    }
    None
}

/// The layout version kept in the pinned `LAYOUT` map.
fn layout_version(path: &Path) -> Result<u32, String> {
    let data = MapData::from_pin(path).map_err(|e| e.to_string())?;
    let array: Array<MapData, u32> =
        Array::try_from(Map::Array(data)).map_err(|e| e.to_string())?;
    array.get(&0, 0).map_err(|e| e.to_string())
}

/// Creates the pin directory (0700) and the ones above it.
pub fn create_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

/// Removes the map pins in `dir`, keeping the link's: the previous program keeps forwarding
/// with its maps until the new one replaces it.
pub fn remove_map_pins(dir: &Path) -> std::io::Result<()> {
    for name in PINNED_MAPS {
        match std::fs::remove_file(dir.join(name)) {
            Err(error) if error.kind() != std::io::ErrorKind::NotFound => return Err(error),
            _ => {}
        }
    }
    Ok(())
}

/// Removes every pin in `dir`, then `dir` and the directories above it up to `root` when they
/// are empty (someone else's pins stay where they are). Returns what could not be removed.
pub fn remove_all(dir: &Path, root: &Path) -> Vec<String> {
    let mut problems = Vec::new();
    for name in PINNED_MAPS.iter().chain([&LINK_PIN]) {
        let path = dir.join(name);
        if let Err(error) = std::fs::remove_file(&path)
            && error.kind() != std::io::ErrorKind::NotFound
        {
            problems.push(format!("removing {}: {error}", path.display()));
        }
    }
    let mut current: Option<PathBuf> = Some(dir.to_owned());
    while let Some(path) = current {
        if path == root || !path.starts_with(root) || std::fs::remove_dir(&path).is_err() {
            break;
        }
        current = path.parent().map(Path::to_owned);
    }
    problems
}

/// The index of the interface the XDP link pinned at `path` is attached to; 0 when the link
/// outlived its interface (the interface was deleted, or its namespace), which leaves it
/// attached nowhere.
pub fn link_interface(path: &Path) -> std::io::Result<u32> {
    use std::os::{
        fd::{FromRawFd as _, OwnedFd},
        unix::ffi::OsStrExt as _,
    };
    const BPF_OBJ_GET: libc::c_long = 7;
    const BPF_OBJ_GET_INFO_BY_FD: libc::c_long = 15;
    let path = std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidInput, "NUL in path"))?;
    // `union bpf_attr` for BPF_OBJ_GET: pathname, bpf_fd, file_flags.
    let mut get = [0u64; 2];
    get[0] = path.as_ptr() as u64;
    // SAFETY: the attribute is a valid BPF_OBJ_GET prefix whose path outlives the call.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_OBJ_GET,
            get.as_mut_ptr(),
            size_of_val(&get),
        )
    };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: the kernel returned a new descriptor, owned from here on.
    let fd = unsafe { OwnedFd::from_raw_fd(fd as i32) };
    // `struct bpf_link_info`: type, id, prog_id, then the per-type union at offset 16, whose
    // `xdp.ifindex` is its first field. The buffer is larger than any kernel's struct and
    // zeroed, as the kernel requires of the part it does not know.
    let mut info = [0u8; 256];
    let mut attr = [0u64; 2];
    attr[0] = u64::from(std::os::fd::AsRawFd::as_raw_fd(&fd) as u32)
        | (u64::from(info.len() as u32) << 32);
    attr[1] = info.as_mut_ptr() as u64;
    // SAFETY: the attribute is a valid BPF_OBJ_GET_INFO_BY_FD prefix (bpf_fd, info_len,
    // info) and `info` is writable for `info_len` bytes for the call.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_OBJ_GET_INFO_BY_FD,
            attr.as_mut_ptr(),
            size_of_val(&attr),
        )
    };
    if rc < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(u32::from_ne_bytes([info[16], info[17], info[18], info[19]]))
}
