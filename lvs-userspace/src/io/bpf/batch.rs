//! Batched map operations (`BPF_MAP_*_BATCH`), which aya does not wrap, and the element
//! operations on a map of maps that aya 0.14 leaves out (emptying a slot) or ties to typed
//! handles this crate does not keep.
//!
//! The flow table can hold millions of entries and a service's schedule tens of thousands of
//! slots; reading or writing them one syscall per element would cost seconds. A batch moves
//! thousands of elements per syscall.

use std::{
    io,
    os::fd::{AsFd, AsRawFd},
};

use aya::Pod;

// Commands of bpf(2), from the kernel's `enum bpf_cmd`.
const BPF_MAP_LOOKUP_ELEM: libc::c_long = 1;
const BPF_MAP_UPDATE_ELEM: libc::c_long = 2;
const BPF_MAP_DELETE_ELEM: libc::c_long = 3;
const BPF_MAP_LOOKUP_BATCH: libc::c_long = 24;
const BPF_MAP_UPDATE_BATCH: libc::c_long = 26;
const BPF_MAP_DELETE_BATCH: libc::c_long = 27;

/// How many elements one lookup syscall asks for. A hash bucket must fit whole, which it
/// always does at this size.
const LOOKUP_CHUNK: usize = 8192;

/// The `batch` member of `union bpf_attr`.
#[repr(C)]
#[derive(Default)]
struct BatchAttr {
    in_batch: u64,
    out_batch: u64,
    keys: u64,
    values: u64,
    count: u32,
    map_fd: u32,
    elem_flags: u64,
    flags: u64,
}

fn bpf(command: libc::c_long, attr: &mut BatchAttr) -> io::Result<()> {
    // SAFETY: `attr` is a valid `bpf_attr` prefix for the batch commands, and every pointer in
    // it refers to a live buffer of the size `count` promises.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            command,
            attr as *mut BatchAttr,
            size_of::<BatchAttr>(),
        )
    };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// Every element of a hash map (plain or LRU, such as the templates'), a chunk at a time.
/// Elements added or removed while this runs may or may not be seen, as with any iteration of
/// a live map.
pub fn lookup_all<K: Pod + Default, V: Pod + Default>(map: &impl AsFd) -> io::Result<Vec<(K, V)>> {
    let mut all = Vec::new();
    let mut keys = vec![K::default(); LOOKUP_CHUNK];
    let mut values = vec![V::default(); LOOKUP_CHUNK];
    // For hash maps the batch position is a bucket number.
    let mut position: u32 = 0;
    let mut first = true;
    loop {
        let mut next: u32 = 0;
        let mut attr = BatchAttr {
            in_batch: if first {
                0
            } else {
                &position as *const u32 as u64
            },
            out_batch: &mut next as *mut u32 as u64,
            keys: keys.as_mut_ptr() as u64,
            values: values.as_mut_ptr() as u64,
            count: LOOKUP_CHUNK as u32,
            map_fd: map.as_fd().as_raw_fd() as u32,
            ..BatchAttr::default()
        };
        let result = bpf(BPF_MAP_LOOKUP_BATCH, &mut attr);
        let got = attr.count as usize;
        all.extend(
            keys[..got]
                .iter()
                .copied()
                .zip(values[..got].iter().copied()),
        );
        match result {
            Ok(()) => {}
            // ENOENT: the walk reached the end (possibly with a last partial chunk).
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => return Ok(all),
            Err(e) => return Err(e),
        }
        position = next;
        first = false;
    }
}

/// `count` consecutive values of an array map from index `start`, a chunk at a time; `zero`
/// fills the buffer the kernel writes into.
pub fn lookup_range<V: Pod>(
    map: &impl AsFd,
    start: u32,
    count: u32,
    zero: V,
) -> io::Result<Vec<V>> {
    lookup_range_of(map, start, count, 1, zero)
}

/// `lookup_range` of a per-CPU array: `cpus` values for each index (one per possible CPU, as
/// the kernel lays them out), index after index.
pub fn lookup_range_per_cpu<V: Pod>(
    map: &impl AsFd,
    start: u32,
    count: u32,
    cpus: usize,
    zero: V,
) -> io::Result<Vec<V>> {
    lookup_range_of(map, start, count, cpus.max(1), zero)
}

/// `count` consecutive indices of an array map from `start`, each with `per_index` values.
fn lookup_range_of<V: Pod>(
    map: &impl AsFd,
    start: u32,
    count: u32,
    per_index: usize,
    zero: V,
) -> io::Result<Vec<V>> {
    let mut all = Vec::with_capacity(count as usize * per_index);
    let mut keys = vec![0u32; LOOKUP_CHUNK];
    let mut values = vec![zero; LOOKUP_CHUNK * per_index];
    // The batch position is the last key already read (the walk goes on after it), and no
    // position at all starts from index 0.
    let mut position: Option<u32> = start.checked_sub(1);
    let mut read = 0;
    while read < count as usize {
        let wanted = (count as usize - read).min(LOOKUP_CHUNK);
        let mut next: u32 = 0;
        let mut attr = BatchAttr {
            in_batch: position.as_ref().map_or(0, |p| p as *const u32 as u64),
            out_batch: &mut next as *mut u32 as u64,
            keys: keys.as_mut_ptr() as u64,
            values: values.as_mut_ptr() as u64,
            count: wanted as u32,
            map_fd: map.as_fd().as_raw_fd() as u32,
            ..BatchAttr::default()
        };
        let result = bpf(BPF_MAP_LOOKUP_BATCH, &mut attr);
        let got = (attr.count as usize).min(wanted);
        all.extend_from_slice(&values[..got * per_index]);
        read += got;
        match result {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => break,
            Err(e) => return Err(e),
        }
        if got == 0 {
            break;
        }
        position = Some(next);
    }
    Ok(all)
}

/// Writes `keys[i] = values[i]` for every i in one syscall per chunk.
pub fn update<K: Pod, V: Pod>(map: &impl AsFd, keys: &[K], values: &[V]) -> io::Result<()> {
    assert_eq!(keys.len(), values.len(), "one value per key");
    for (keys, values) in keys.chunks(LOOKUP_CHUNK).zip(values.chunks(LOOKUP_CHUNK)) {
        let mut attr = BatchAttr {
            keys: keys.as_ptr() as u64,
            values: values.as_ptr() as u64,
            count: keys.len() as u32,
            map_fd: map.as_fd().as_raw_fd() as u32,
            ..BatchAttr::default()
        };
        bpf(BPF_MAP_UPDATE_BATCH, &mut attr)?;
    }
    Ok(())
}

/// Deletes the keys; keys already gone (evicted or deleted meanwhile) are not an error.
pub fn delete<K: Pod>(map: &impl AsFd, keys: &[K]) -> io::Result<()> {
    for chunk in keys.chunks(LOOKUP_CHUNK) {
        let mut attr = BatchAttr {
            keys: chunk.as_ptr() as u64,
            count: chunk.len() as u32,
            map_fd: map.as_fd().as_raw_fd() as u32,
            ..BatchAttr::default()
        };
        match bpf(BPF_MAP_DELETE_BATCH, &mut attr) {
            Ok(()) => {}
            // A batch delete stops at the first missing key: delete the rest one by one
            // through the same call, skipping the missing one.
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
                let done = attr.count as usize;
                if done + 1 < chunk.len() {
                    delete(map, &chunk[done + 1..])?;
                }
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// The element members of `union bpf_attr`.
#[repr(C)]
#[derive(Default)]
struct ElementAttr {
    map_fd: u32,
    _pad: u32,
    key: u64,
    value: u64,
    flags: u64,
}

fn element<K: Pod, V: Pod>(
    command: libc::c_long,
    map: &impl AsFd,
    key: &K,
    value: Option<&mut V>,
) -> io::Result<()> {
    let mut attr = ElementAttr {
        map_fd: map.as_fd().as_raw_fd() as u32,
        key: key as *const K as u64,
        value: value.map_or(0, |value| value as *mut V as u64),
        ..ElementAttr::default()
    };
    // SAFETY: `attr` is a valid `bpf_attr` prefix for the element commands; `key` and `value`
    // point at live buffers of the map's key and value sizes (the caller's types).
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            command,
            &mut attr as *mut ElementAttr,
            size_of::<ElementAttr>(),
        )
    };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// Puts the map `inner` into slot `slot` of the map of maps `outer`, in one step: a program
/// sees the map the slot held before or this one. The kernel frees the one it replaces once no
/// running program can hold it.
pub fn set_inner_map(outer: &impl AsFd, slot: u32, inner: &impl AsFd) -> io::Result<()> {
    let mut fd = inner.as_fd().as_raw_fd() as u32;
    element(BPF_MAP_UPDATE_ELEM, outer, &slot, Some(&mut fd))
}

/// Empties slot `slot` of the map of maps `outer`; an empty slot stays empty.
pub fn clear_inner_map(outer: &impl AsFd, slot: u32) -> io::Result<()> {
    match element::<u32, u32>(BPF_MAP_DELETE_ELEM, outer, &slot, None) {
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(()),
        result => result,
    }
}

/// Whether slot `slot` of the map of maps `outer` holds a map.
pub fn has_inner_map(outer: &impl AsFd, slot: u32) -> io::Result<bool> {
    let mut id = 0u32;
    match element(BPF_MAP_LOOKUP_ELEM, outer, &slot, Some(&mut id)) {
        Ok(()) => Ok(true),
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(false),
        Err(e) => Err(e),
    }
}
