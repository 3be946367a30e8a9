//! Whole-map reads and bulk deletes of BPF hash maps in few syscalls.
//!
//! aya's `HashMap::iter` costs two syscalls per entry (`BPF_MAP_GET_NEXT_KEY`
//! then `BPF_MAP_LOOKUP_ELEM`): with a million FDB entries, every walk is
//! two million syscalls. `BPF_MAP_LOOKUP_BATCH` (Linux 5.6) copies whole
//! hash buckets, thousands of entries per call, and `BPF_MAP_DELETE_BATCH`
//! deletes a list of keys in one call. When the kernel has no batch
//! operations (it answers `EINVAL` or `ENOTSUPP`) both fall back to the
//! per-entry syscalls, once per process.
//!
//! A batched read is not a snapshot, no more than aya's iteration is: an
//! entry added or deleted while the read runs may or may not be seen. It
//! does not see an entry twice (a key never changes bucket), which
//! `BPF_MAP_GET_NEXT_KEY` iteration can do when the current key is deleted
//! under it (the kernel then restarts from the first bucket).
//!
//! Only for maps whose values are one `V` per key (`BPF_MAP_TYPE_HASH`,
//! `BPF_MAP_TYPE_LRU_HASH`, the map types aya's `HashMap` accepts), not the
//! per-CPU ones.

use std::{
    borrow::{Borrow, BorrowMut},
    io,
    os::fd::{AsFd as _, AsRawFd as _, BorrowedFd},
    sync::atomic::{AtomicBool, Ordering},
};

use anyhow::{Context as _, Result};
use aya::{
    Pod,
    maps::{HashMap, IterableMap as _, MapData, MapError},
};
use aya_obj::generated::bpf_attr__bindgen_ty_3;
use log::warn;

use crate::sys_bpf::{bpf, bpf_cmd, zeroed_attr};

/// The kernel's internal "operation not supported" (not in libc), which
/// bpf(2) returns for a map type without batch operations.
const ENOTSUPP: i32 = 524;

/// Entries asked for per `BPF_MAP_LOOKUP_BATCH` (and keys per
/// `BPF_MAP_DELETE_BATCH`): 8192 FDB entries are 288 KiB of buffers.
pub const CHUNK: usize = 8192;
/// A bucket is copied whole or not at all; a chunk is doubled (up to this)
/// when a bucket does not fit (`ENOSPC`).
const MAX_CHUNK: usize = 1 << 22;
/// Retries of a call that failed transiently (`EINTR`, `EAGAIN`, `EBUSY`:
/// a bucket lock held by a BPF program on the same CPU).
const RETRIES: u32 = 16;

/// The `batch` member of the kernel's `union bpf_attr`, used by the
/// `BPF_MAP_*_BATCH` commands.
type BatchAttr = bpf_attr__bindgen_ty_3;

/// The kernel said it has no batch lookups (or deletes) for this map.
static NO_LOOKUP_BATCH: AtomicBool = AtomicBool::new(false);
static NO_DELETE_BATCH: AtomicBool = AtomicBool::new(false);

/// bpf(2) with a batch attr: `Ok(())` or the errno. On return
/// `batch.count` says how many entries the kernel copied (or deleted).
fn sys_bpf(cmd: bpf_cmd, batch: &mut BatchAttr) -> Result<(), i32> {
    let mut attr = zeroed_attr();
    attr.batch = *batch;
    // SAFETY: the callers make the pointers of `batch` valid for `count`
    // keys and values and for a resume token of at least the kernel's size.
    let rc = unsafe { bpf(cmd, &mut attr) };
    // SAFETY: the member just written, which the kernel updates in place.
    *batch = unsafe { attr.batch };
    rc.map(drop)
        .map_err(|e| e.raw_os_error().unwrap_or(libc::EIO))
}

fn unsupported(errno: i32) -> bool {
    matches!(errno, libc::EINVAL | ENOTSUPP | libc::EOPNOTSUPP)
}

fn transient(errno: i32) -> bool {
    matches!(
        errno,
        libc::EINTR | libc::EAGAIN | libc::EBUSY | libc::EDEADLK | libc::ETIMEDOUT
    )
}

/// Why a batched operation stopped.
#[derive(Debug)]
enum BatchError {
    /// The kernel has no batch operation for this map; nothing was done.
    Unsupported(i32),
    Failed(io::Error),
}

/// Reads every entry of `fd` (a hash map of `K` to `V`) with
/// `BPF_MAP_LOOKUP_BATCH`, `chunk` entries per call at most, and calls
/// `f` on each. Returns how many.
fn lookup_batch<K: Pod, V: Pod>(
    fd: BorrowedFd<'_>,
    chunk: usize,
    f: &mut impl FnMut(&K, &V),
) -> Result<usize, BatchError> {
    // Resume tokens: for hash maps the kernel reads and writes a u32 bucket
    // index, for other maps a key; room for either.
    let words = size_of::<K>().max(8).div_ceil(8);
    let (mut in_tok, mut out_tok) = (vec![0u64; words], vec![0u64; words]);
    let mut started = false;
    let mut cap = chunk.clamp(1, MAX_CHUNK);
    let mut keys: Vec<K> = Vec::with_capacity(cap);
    let mut values: Vec<V> = Vec::with_capacity(cap);
    let (mut total, mut retries) = (0, 0);
    loop {
        let mut attr = BatchAttr {
            in_batch: if started { in_tok.as_ptr() as u64 } else { 0 },
            out_batch: out_tok.as_mut_ptr() as u64,
            keys: keys.as_mut_ptr() as u64,
            values: values.as_mut_ptr() as u64,
            count: cap as u32,
            map_fd: fd.as_raw_fd() as u32,
            elem_flags: 0,
            flags: 0,
        };
        let end = match sys_bpf(bpf_cmd::BPF_MAP_LOOKUP_BATCH, &mut attr) {
            Ok(()) => false,
            // The last buckets; the entries copied with it count.
            Err(libc::ENOENT) => true,
            // A bucket larger than the room left: nothing was copied.
            Err(libc::ENOSPC) if cap < MAX_CHUNK => {
                cap = (cap * 2).min(MAX_CHUNK);
                keys = Vec::with_capacity(cap);
                values = Vec::with_capacity(cap);
                continue;
            }
            // Whatever was copied is dropped; `in_tok` still says where
            // this call started.
            Err(e) if transient(e) && retries < RETRIES => {
                retries += 1;
                continue;
            }
            Err(e) if unsupported(e) && !started => return Err(BatchError::Unsupported(e)),
            Err(e) => {
                return Err(BatchError::Failed(io::Error::from_raw_os_error(e)));
            }
        };
        let n = (attr.count as usize).min(cap);
        // SAFETY: the kernel wrote `n` packed keys and values of the map's
        // key and value sizes, which are `size_of::<K>()` and
        // `size_of::<V>()` (aya's `HashMap` checks), and any bytes are a
        // valid `Pod`.
        unsafe {
            keys.set_len(n);
            values.set_len(n);
        }
        for (k, v) in keys.iter().zip(&values) {
            f(k, v);
        }
        total += n;
        if end {
            return Ok(total);
        }
        keys.clear();
        values.clear();
        std::mem::swap(&mut in_tok, &mut out_tok);
        (started, retries) = (true, 0);
    }
}

/// Calls `f` on every entry of `map`, read `CHUNK` entries per syscall
/// (one syscall per entry on a kernel without batch lookups). Returns how
/// many entries there were.
pub fn for_each<T, K, V>(map: &HashMap<T, K, V>, mut f: impl FnMut(&K, &V)) -> Result<usize>
where
    T: Borrow<MapData>,
    K: Pod,
    V: Pod,
{
    for_each_chunked(map, CHUNK, &mut f)
}

fn for_each_chunked<T, K, V>(
    map: &HashMap<T, K, V>,
    chunk: usize,
    f: &mut impl FnMut(&K, &V),
) -> Result<usize>
where
    T: Borrow<MapData>,
    K: Pod,
    V: Pod,
{
    let batched = batched(&NO_LOOKUP_BATCH, "BPF_MAP_LOOKUP_BATCH", || {
        lookup_batch(map.map().fd().as_fd(), chunk, f)
    })?;
    match batched {
        Some(n) => Ok(n),
        None => for_each_per_entry(map, f),
    }
}

/// Runs the batched operation `op` (named `what`) unless the kernel said
/// before that it has none (`missing`); `Ok(None)`: fall back to the
/// per-entry syscalls. The first refusal is logged and remembered.
fn batched<R>(
    missing: &AtomicBool,
    what: &str,
    op: impl FnOnce() -> Result<R, BatchError>,
) -> Result<Option<R>> {
    if missing.load(Ordering::Relaxed) {
        return Ok(None);
    }
    match op() {
        Ok(r) => Ok(Some(r)),
        Err(BatchError::Unsupported(e)) => {
            if !missing.swap(true, Ordering::Relaxed) {
                warn!(
                    "the kernel has no {what} ({}): falling back to one syscall per entry",
                    io::Error::from_raw_os_error(e)
                );
            }
            Ok(None)
        }
        Err(BatchError::Failed(e)) => Err(e).context(what.to_owned()),
    }
}

/// aya's iteration: two syscalls per entry.
fn for_each_per_entry<T, K, V>(map: &HashMap<T, K, V>, f: &mut impl FnMut(&K, &V)) -> Result<usize>
where
    T: Borrow<MapData>,
    K: Pod,
    V: Pod,
{
    let mut n = 0;
    for item in map.iter() {
        let (k, v) = item.context("walking a map")?;
        f(&k, &v);
        n += 1;
    }
    Ok(n)
}

/// Every entry of `map`, in the map's (bucket) order.
pub fn read_all<T, K, V>(map: &HashMap<T, K, V>) -> Result<Vec<(K, V)>>
where
    T: Borrow<MapData>,
    K: Pod,
    V: Pod,
{
    let mut out = Vec::new();
    for_each(map, |k, v| out.push((*k, *v)))?;
    Ok(out)
}

/// Deletes `keys` from `map`, `CHUNK` per syscall (one syscall per key on
/// a kernel without batch deletes). Returns, for each key, whether this
/// call deleted it: false for a key that was not (or no longer) there.
pub fn delete<T, K, V>(map: &mut HashMap<T, K, V>, keys: &[K]) -> Result<Vec<bool>>
where
    T: BorrowMut<MapData>,
    K: Pod,
    V: Pod,
{
    delete_chunked(map, keys, CHUNK)
}

fn delete_chunked<T, K, V>(
    map: &mut HashMap<T, K, V>,
    keys: &[K],
    chunk: usize,
) -> Result<Vec<bool>>
where
    T: BorrowMut<MapData>,
    K: Pod,
    V: Pod,
{
    let mut deleted = vec![false; keys.len()];
    let batched = batched(&NO_DELETE_BATCH, "BPF_MAP_DELETE_BATCH", || {
        delete_batch(map.map().fd().as_fd(), keys, chunk, &mut deleted)
    })?;
    if batched.is_some() {
        return Ok(deleted);
    }
    for (k, d) in keys.iter().zip(&mut deleted) {
        *d = match map.remove(k) {
            Ok(()) => true,
            Err(MapError::SyscallError(e)) if e.io_error.raw_os_error() == Some(libc::ENOENT) => {
                false
            }
            Err(e) => return Err(e).context("deleting a map entry"),
        };
    }
    Ok(deleted)
}

/// `BPF_MAP_DELETE_BATCH` over `keys`, marking in `deleted` what it
/// deleted. The kernel deletes in order and stops at the first key it
/// cannot delete, reporting how many it did: a missing key is skipped and
/// the rest sent again.
fn delete_batch<K: Pod>(
    fd: BorrowedFd<'_>,
    keys: &[K],
    chunk: usize,
    deleted: &mut [bool],
) -> Result<(), BatchError> {
    let chunk = chunk.clamp(1, u32::MAX as usize);
    let (mut pos, mut retries) = (0, 0);
    while pos < keys.len() {
        let n = (keys.len() - pos).min(chunk);
        let mut attr = BatchAttr {
            in_batch: 0,
            out_batch: 0,
            keys: keys[pos..].as_ptr() as u64,
            values: 0,
            count: n as u32,
            map_fd: fd.as_raw_fd() as u32,
            elem_flags: 0,
            flags: 0,
        };
        let res = sys_bpf(bpf_cmd::BPF_MAP_DELETE_BATCH, &mut attr);
        // Once the kernel started deleting, `count` is the keys deleted
        // (before the one that failed).
        let done = match res {
            Ok(()) => n,
            Err(_) => (attr.count as usize).min(n),
        };
        match res {
            // Refused before any key (`count` may be left as it was).
            Err(e) if unsupported(e) && pos == 0 => return Err(BatchError::Unsupported(e)),
            Ok(()) | Err(libc::ENOENT) => {}
            Err(e) if transient(e) && retries < RETRIES => retries += 1,
            Err(e) => return Err(BatchError::Failed(io::Error::from_raw_os_error(e))),
        }
        deleted[pos..pos + done].fill(true);
        pos += done;
        if res == Err(libc::ENOENT) {
            // keys[pos] is not in the map.
            pos += 1;
            retries = 0;
        } else if res.is_ok() || done > 0 {
            retries = 0;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::{
        collections::HashMap as StdHashMap,
        os::fd::{FromRawFd as _, OwnedFd},
        time::Instant,
    };

    use vxlan_common::{FdbEntry, FdbKey};

    use super::*;

    #[test]
    fn attr_matches_the_kernel() {
        // `struct { __aligned_u64 in_batch, out_batch, keys, values;
        // __u32 count, map_fd; __u64 elem_flags, flags; } batch;`
        assert_eq!(size_of::<BatchAttr>(), 56);
        assert_eq!(align_of::<BatchAttr>(), 8);
        assert_eq!(std::mem::offset_of!(BatchAttr, in_batch), 0);
        assert_eq!(std::mem::offset_of!(BatchAttr, out_batch), 8);
        assert_eq!(std::mem::offset_of!(BatchAttr, keys), 16);
        assert_eq!(std::mem::offset_of!(BatchAttr, values), 24);
        assert_eq!(std::mem::offset_of!(BatchAttr, count), 32);
        assert_eq!(std::mem::offset_of!(BatchAttr, map_fd), 36);
        assert_eq!(std::mem::offset_of!(BatchAttr, elem_flags), 40);
        assert_eq!(std::mem::offset_of!(BatchAttr, flags), 48);
    }

    #[test]
    fn errno_classes() {
        assert!(unsupported(libc::EINVAL) && unsupported(ENOTSUPP));
        assert!(!unsupported(libc::ENOENT) && !unsupported(libc::ENOSPC));
        assert!(transient(libc::EINTR) && transient(libc::EAGAIN) && transient(libc::EBUSY));
        assert!(!transient(libc::ENOENT) && !transient(libc::EPERM));
    }

    fn key(i: u32) -> FdbKey {
        let b = i.to_be_bytes();
        FdbKey::new(i % 4096 + 1, [2, 0, b[0], b[1], b[2], b[3]])
    }

    fn entry(i: u32) -> FdbEntry {
        FdbEntry {
            remote: vxlan_common::vtep_v4((0x0a00_0000 | i).to_be_bytes()),
            ifindex: i % 7,
            flags: i % 2,
            last_seen_ns: u64::from(i) * 1000,
            ..Default::default()
        }
    }

    /// An FDB-shaped hash map holding entries `0..n`, or None (with a
    /// message) where BPF maps cannot be created (not root).
    fn fdb_map(cap: u32, n: u32) -> Option<HashMap<MapData, FdbKey, FdbEntry>> {
        let mut map = match HashMap::<MapData, FdbKey, FdbEntry>::create(cap, 0) {
            Ok(m) => m,
            Err(e) => {
                eprintln!("skipped: cannot create a BPF hash map here (needs root): {e}");
                return None;
            }
        };
        for i in 0..n {
            map.insert(key(i), entry(i), 0).expect("insert");
        }
        Some(map)
    }

    fn check_all(got: &[(FdbKey, FdbEntry)], n: u32) {
        assert_eq!(got.len(), n as usize, "entry count");
        let got: StdHashMap<FdbKey, FdbEntry> = got.iter().copied().collect();
        assert_eq!(got.len(), n as usize, "no entry twice");
        for i in 0..n {
            assert_eq!(got.get(&key(i)), Some(&entry(i)), "entry {i}");
        }
    }

    /// Read with `BPF_MAP_LOOKUP_BATCH` only (no fallback).
    fn read_chunked(
        map: &HashMap<MapData, FdbKey, FdbEntry>,
        chunk: usize,
    ) -> Vec<(FdbKey, FdbEntry)> {
        let mut out = Vec::new();
        let n = lookup_batch(map.map().fd().as_fd(), chunk, &mut |k, v| {
            out.push((*k, *v))
        })
        .expect("BPF_MAP_LOOKUP_BATCH");
        assert_eq!(n, out.len());
        out
    }

    const BPF_MAP_TYPE_QUEUE: u32 = 22;

    /// bpf(BPF_MAP_CREATE) of a map aya gives no fd of.
    fn raw_map_create(map_type: u32, key_size: u32, value_size: u32, max: u32) -> OwnedFd {
        let mut attr = zeroed_attr();
        // SAFETY: writing the `BPF_MAP_CREATE` member of a zeroed union.
        let create = unsafe { &mut attr.__bindgen_anon_1 };
        create.map_type = map_type;
        create.key_size = key_size;
        create.value_size = value_size;
        create.max_entries = max;
        // SAFETY: no pointers in this member.
        let fd = unsafe { bpf(bpf_cmd::BPF_MAP_CREATE, &mut attr) }
            .unwrap_or_else(|e| panic!("BPF_MAP_CREATE: {e}"));
        // SAFETY: a new fd, owned by nobody else.
        unsafe { OwnedFd::from_raw_fd(fd as i32) }
    }

    /// Batched reads and deletes against a real BPF hash map (root only).
    #[test]
    fn real_map() {
        let Some(empty) = fdb_map(16, 0) else { return };
        assert!(read_chunked(&empty, CHUNK).is_empty());
        assert!(read_all(&empty).unwrap().is_empty());

        const N: u32 = 100_000;
        let Some(mut map) = fdb_map(N + 4096, N) else {
            return;
        };
        check_all(&read_all(&map).unwrap(), N);
        // Small chunks: many calls, resumed from the kernel's token; a
        // chunk of 1 is smaller than many buckets (ENOSPC, then doubled).
        for chunk in [1, 3, 1000, CHUNK] {
            check_all(&read_chunked(&map, chunk), N);
        }
        let mut slow = Vec::new();
        for_each_per_entry(&map, &mut |k, v| slow.push((*k, *v))).unwrap();
        check_all(&slow, N);

        // Deleting: present keys, absent keys, a key twice.
        let mut doomed: Vec<FdbKey> = (0..2000).map(key).collect();
        doomed.insert(10, key(N + 1));
        doomed.insert(500, key(3));
        doomed.push(key(N + 2));
        let mut done = vec![false; doomed.len()];
        delete_batch(map.map().fd().as_fd(), &doomed, 64, &mut done).expect("BPF_MAP_DELETE_BATCH");
        assert_eq!(done.iter().filter(|d| **d).count(), 2000);
        assert!(!done[10] && !done[500] && !done[doomed.len() - 1]);
        assert!(done[3] && done[11] && done[501]);
        let left = read_all(&map).unwrap();
        assert_eq!(left.len(), (N - 2000) as usize);
        assert!(left.iter().all(|(k, _)| !doomed.contains(k)));
        // Nothing left to delete among those.
        assert!(delete(&mut map, &doomed).unwrap().iter().all(|d| !d));

        // A map type without batch operations (the kernel's ENOTSUPP):
        // reported as such, for the fallback.
        let queue = raw_map_create(BPF_MAP_TYPE_QUEUE, 0, 4, 16);
        let fd = queue.as_fd();
        let r = lookup_batch::<u32, u32>(fd, CHUNK, &mut |_, _| {});
        assert!(matches!(r, Err(BatchError::Unsupported(ENOTSUPP))), "{r:?}");
        let r = delete_batch(fd, &[0u32], CHUNK, &mut [false]);
        assert!(matches!(r, Err(BatchError::Unsupported(ENOTSUPP))), "{r:?}");
    }

    /// Times reading 1M FDB entries batched and entry by entry:
    /// `cargo test -p vxlan-user --release batch::tests::timing -- --ignored --nocapture`
    #[test]
    #[ignore = "slow: fills a 1M-entry BPF map (root only)"]
    fn timing() {
        const N: u32 = 1_000_000;
        let Some(map) = fdb_map(N + 4096, N) else {
            return;
        };
        for _ in 0..3 {
            let t = Instant::now();
            let batched = read_all(&map).unwrap();
            let batch_t = t.elapsed();
            let t = Instant::now();
            let mut n = 0;
            for_each(&map, |_, e| n += usize::from(e.is_static())).unwrap();
            let visit_t = t.elapsed();
            let t = Instant::now();
            let slow: Vec<_> = map.iter().map(Result::unwrap).collect();
            let slow_t = t.elapsed();
            assert_eq!(batched.len(), N as usize);
            assert_eq!(slow.len(), N as usize);
            println!(
                "{N} entries: batched read_all {batch_t:?}, batched for_each {visit_t:?}, \
                 aya iter {slow_t:?} ({n} static)"
            );
        }
    }
}
