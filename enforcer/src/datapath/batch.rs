//! Batched map operations (`BPF_MAP_UPDATE_BATCH`, `BPF_MAP_DELETE_BATCH`, `BPF_MAP_LOOKUP_BATCH`,
//! Linux 5.6+), which aya 0.14 does not wrap. A 100,000-device policy is some 340,000 entries: one
//! syscall each costs about half a second, a few hundred batches a fraction of that. Writes go to
//! hash maps (LPM tries have no batch operations; they hold few entries); reads come from arrays
//! (`DEVICE_STATS`' rows of many devices) and hash maps (every key, for a scan).

use std::{
    io,
    os::fd::{AsFd as _, AsRawFd as _, RawFd},
};

use aya::maps::Map;

/// Entries per syscall: large enough to amortise the call, small enough to bound the kernel's
/// temporary copy of keys and values.
const CHUNK: usize = 8192;

const BPF_MAP_LOOKUP_BATCH: libc::c_long = 24;
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

/// The fd of an array map.
pub(super) fn array_fd(map: &Map) -> Option<RawFd> {
    match map {
        Map::Array(m) => Some(m.fd().as_fd().as_raw_fd()),
        _ => None,
    }
}

/// A count or fd that does not fit the `bpf_attr` field it goes in.
fn invalid<E>(_: E) -> io::Error {
    io::Error::from(io::ErrorKind::InvalidInput)
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

/// Inserts (or replaces) every `(keys[i], values[i])`, the keys distinct.
///
/// `K` and `V` must be exactly the map's key and value types (`repr(C)`, no implicit padding:
/// the types of `enforcer-common`). The chunks go to the kernel from one thread per CPU: an insert
/// into a hash map without preallocation is mostly the kernel's allocation and bucket lock, which
/// CPUs do side by side (a 100,000-device policy is some 340,000 inserts, a quarter of a second on
/// one CPU). Distinct keys make the order of the chunks irrelevant.
pub(super) fn update<K: aya::Pod + Sync, V: aya::Pod + Sync>(
    fd: RawFd,
    keys: &[K],
    values: &[V],
) -> io::Result<()> {
    debug_assert_eq!(keys.len(), values.len());
    let fd = u32::try_from(fd).map_err(invalid)?;
    let chunks: Vec<(&[K], &[V])> = keys.chunks(CHUNK).zip(values.chunks(CHUNK)).collect();
    on_every_cpu(&chunks, |(k, v)| {
        let mut attr = BatchAttr {
            keys: k.as_ptr() as u64,
            values: v.as_ptr() as u64,
            count: u32::try_from(k.len()).map_err(invalid)?,
            map_fd: fd,
            ..BatchAttr::default()
        };
        call(BPF_MAP_UPDATE_BATCH, &mut attr)
    })
}

/// Runs `work` on every item, spread over one thread per CPU; the first error any thread met, if
/// one did. A single item runs on the calling thread.
fn on_every_cpu<T: Sync>(
    items: &[T],
    work: impl Fn(&T) -> io::Result<()> + Sync,
) -> io::Result<()> {
    crate::parallel::in_runs(items, |_| 1, |run| run.iter().try_for_each(&work))
        .into_iter()
        .collect()
}

/// Deletes every key; keys already absent are skipped. Chunks go out from one thread per CPU, as
/// in [`update`].
pub(super) fn delete<K: aya::Pod + Sync>(fd: RawFd, keys: &[K]) -> io::Result<()> {
    let fd = u32::try_from(fd).map_err(invalid)?;
    let chunks: Vec<&[K]> = keys.chunks(CHUNK).collect();
    on_every_cpu(&chunks, |chunk| {
        let mut rest = *chunk;
        while !rest.is_empty() {
            let mut attr = BatchAttr {
                keys: rest.as_ptr() as u64,
                count: u32::try_from(rest.len()).map_err(invalid)?,
                map_fd: fd,
                ..BatchAttr::default()
            };
            match call(BPF_MAP_DELETE_BATCH, &mut attr) {
                Ok(()) => rest = &[],
                // The batch stops at the first missing key, having deleted `count` before it.
                Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
                    let done = usize::try_from(attr.count).unwrap_or(0).min(rest.len());
                    rest = &rest[(done + 1).min(rest.len())..];
                }
                Err(e) => return Err(e),
            }
        }
        Ok(())
    })
}

/// One `BPF_MAP_LOOKUP_BATCH` call: up to `keys.capacity()` entries (at most `want`) copied into
/// the spare capacity of `keys` and `values` (both empty, `values` at least as large), resuming
/// after `cursor` (`None`: from the map's start); the next cursor is left in `next`. Returns how
/// many entries it copied (their lengths set) and whether the map ended there.
///
/// `K` and `V` must be exactly the map's key and value types (a cursor is a `u32` for the arrays
/// and hash maps read here: an index, a bucket).
fn lookup_batch<K: aya::Pod, V: aya::Pod>(
    fd: u32,
    cursor: Option<u32>,
    next: &mut u32,
    want: usize,
    keys: &mut Vec<K>,
    values: &mut Vec<V>,
) -> io::Result<(usize, bool)> {
    let want = want.min(keys.capacity()).min(values.capacity());
    let mut before = cursor.unwrap_or(0);
    let mut attr = BatchAttr {
        in_batch: if cursor.is_some() {
            std::ptr::from_mut(&mut before) as u64
        } else {
            0
        },
        out_batch: std::ptr::from_mut(next) as u64,
        keys: keys.as_mut_ptr() as u64,
        values: values.as_mut_ptr() as u64,
        count: u32::try_from(want).map_err(invalid)?,
        map_fd: fd,
        ..BatchAttr::default()
    };
    let (done, end) = match call(BPF_MAP_LOOKUP_BATCH, &mut attr) {
        Ok(()) => (attr.count, false),
        // The end of the map: what was copied before it is valid.
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => (attr.count, true),
        Err(e) => return Err(e),
    };
    let done = usize::try_from(done).map_err(invalid)?.min(want);
    // SAFETY: the kernel wrote `done` whole keys and values of the map's sizes (= `K`'s and `V`'s,
    // which any bit pattern makes valid: `Pod`) at the start of the buffers' capacity.
    unsafe {
        keys.set_len(done);
        values.set_len(done);
    }
    Ok((done, end))
}

/// Rows `start .. start + count` of an array map whose values are `V` (exactly the map's value
/// type), in CHUNK-row syscalls: for reading many rows, one copy each instead of one call each.
pub(super) fn lookup_rows<V: aya::Pod>(fd: RawFd, start: u32, count: u32) -> io::Result<Vec<V>> {
    let fd = u32::try_from(fd).map_err(invalid)?;
    let total = usize::try_from(count).map_err(invalid)?;
    let mut values: Vec<V> = Vec::with_capacity(total);
    let mut keys: Vec<u32> = Vec::with_capacity(CHUNK.min(total));
    let mut buf: Vec<V> = Vec::with_capacity(CHUNK.min(total));
    let mut next = start;
    while values.len() < total {
        let want = total - values.len();
        // The batch resumes after the key given (an array's next key is the index plus one); the
        // first row of the map has no key before it.
        let cursor = (next != 0).then(|| next.wrapping_sub(1));
        let mut after = 0;
        let (done, _) = lookup_batch(fd, cursor, &mut after, want, &mut keys, &mut buf)?;
        if done == 0 {
            return Err(io::Error::from(io::ErrorKind::UnexpectedEof));
        }
        values.append(&mut buf);
        keys.clear();
        next = next.wrapping_add(u32::try_from(done).map_err(invalid)?);
    }
    Ok(values)
}

/// Every key of a hash map whose keys are `K` and values `V` (exactly the map's types), in
/// CHUNK-entry syscalls: a scan of 340,000 keys in some 40 calls instead of one call per key.
/// Entries added or removed while it runs may or may not be seen, as with any walk of a live map.
pub(super) fn hash_keys<K: aya::Pod, V: aya::Pod>(fd: RawFd) -> io::Result<Vec<K>> {
    let fd = u32::try_from(fd).map_err(invalid)?;
    let mut out: Vec<K> = Vec::new();
    let mut keys: Vec<K> = Vec::with_capacity(CHUNK);
    let mut values: Vec<V> = Vec::with_capacity(CHUNK);
    // A hash map's batch cursor is a bucket number, opaque here; none before the first call.
    let mut cursor = None;
    loop {
        let mut next = 0;
        let (_, end) = lookup_batch(fd, cursor, &mut next, CHUNK, &mut keys, &mut values)?;
        out.append(&mut keys);
        values.clear();
        if end {
            return Ok(out);
        }
        cursor = Some(next);
    }
}

#[cfg(test)]
mod tests {
    use std::{
        io,
        sync::atomic::{AtomicU32, Ordering},
    };

    use super::on_every_cpu;

    #[test]
    fn every_item_is_worked_on_exactly_once_whatever_the_threads() {
        let items: Vec<usize> = (0..37).collect();
        let seen: Vec<AtomicU32> = items.iter().map(|_| AtomicU32::new(0)).collect();
        on_every_cpu(&items, |&i| {
            seen[i].fetch_add(1, Ordering::Relaxed);
            Ok(())
        })
        .expect("no item fails");
        assert!(seen.iter().all(|n| n.load(Ordering::Relaxed) == 1));
    }

    #[test]
    fn an_items_error_comes_back_and_one_item_runs_on_the_caller() {
        let items = [1, 2, 3, 4, 5];
        let e = on_every_cpu(&items, |&i| {
            if i == 4 {
                Err(io::Error::from_raw_os_error(libc::E2BIG))
            } else {
                Ok(())
            }
        })
        .expect_err("item 4 fails");
        assert_eq!(e.raw_os_error(), Some(libc::E2BIG));
        let caller = std::thread::current().id();
        on_every_cpu(&[0], |_| {
            assert_eq!(std::thread::current().id(), caller);
            Ok(())
        })
        .expect("one item");
    }
}
