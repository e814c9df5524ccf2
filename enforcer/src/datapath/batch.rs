//! Batched map writes (`BPF_MAP_UPDATE_BATCH`, `BPF_MAP_DELETE_BATCH`, Linux 5.6+), which aya 0.14
//! does not wrap. A 100,000-device policy is some 340,000 entries: one syscall each costs about half
//! a second, a few hundred batches a fraction of that. Hash maps only (LPM tries have no batch
//! operations; they hold few entries).

use std::{
    io,
    os::fd::{AsFd as _, AsRawFd as _, RawFd},
};

use aya::maps::Map;

/// Entries per syscall: large enough to amortise the call, small enough to bound the kernel's
/// temporary copy of keys and values.
const CHUNK: usize = 8192;

const BPF_MAP_UPDATE_BATCH: libc::c_long = 26;
const BPF_MAP_DELETE_BATCH: libc::c_long = 27;

/// The `batch` member of `union bpf_attr` (include/uapi/linux/bpf.h).
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

/// The fd of a hash map.
pub(super) fn hash_fd(map: &Map) -> Option<RawFd> {
    match map {
        Map::HashMap(m) | Map::LruHashMap(m) => Some(m.fd().as_fd().as_raw_fd()),
        _ => None,
    }
}

fn call(cmd: libc::c_long, attr: &mut BatchAttr) -> io::Result<()> {
    // SAFETY: `attr` is a valid, initialised `bpf_attr` batch member of the size we pass; the
    // pointers in it refer to live buffers of `count` keys (and values) of the map's sizes.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            std::ptr::from_mut(attr).cast::<libc::c_void>(),
            size_of::<BatchAttr>(),
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Inserts (or replaces) every `(keys[i], values[i])`.
///
/// `K` and `V` must be exactly the map's key and value types (`repr(C)`, no implicit padding:
/// the types of `enforcer-common`).
pub(super) fn update<K: aya::Pod, V: aya::Pod>(
    fd: RawFd,
    keys: &[K],
    values: &[V],
) -> io::Result<()> {
    debug_assert_eq!(keys.len(), values.len());
    let fd = u32::try_from(fd).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    for (k, v) in keys.chunks(CHUNK).zip(values.chunks(CHUNK)) {
        let mut attr = BatchAttr {
            keys: k.as_ptr() as u64,
            values: v.as_ptr() as u64,
            count: u32::try_from(k.len())
                .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?,
            map_fd: fd,
            ..BatchAttr::default()
        };
        call(BPF_MAP_UPDATE_BATCH, &mut attr)?;
    }
    Ok(())
}

/// Deletes every key; keys already absent are skipped.
pub(super) fn delete<K: aya::Pod>(fd: RawFd, keys: &[K]) -> io::Result<()> {
    let fd_u = u32::try_from(fd).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    let mut rest = keys;
    while !rest.is_empty() {
        let n = rest.len().min(CHUNK);
        let mut attr = BatchAttr {
            keys: rest.as_ptr() as u64,
            count: u32::try_from(n).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?,
            map_fd: fd_u,
            ..BatchAttr::default()
        };
        match call(BPF_MAP_DELETE_BATCH, &mut attr) {
            Ok(()) => rest = &rest[n..],
            // The batch stops at the first missing key, having deleted `count` before it.
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
                let done = usize::try_from(attr.count).unwrap_or(0).min(n);
                rest = &rest[(done + 1).min(rest.len())..];
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
