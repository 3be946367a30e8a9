//! Taking over a running datapath: a previous instance died (SIGKILL, a
//! crash) and left its programs attached, still forwarding. Its live maps
//! are newer than any saved table: their FDB entries, next hops and
//! counters are copied into ours, filtered against what runs now (the
//! configuration is the truth: entries of VNIs that are gone, and local
//! entries of interfaces that are not a port of that VNI now, are left
//! behind). Its VNIs, ports and default remotes are not copied: the
//! configuration and the runtime journal say what they are.

use std::collections::HashMap as StdHashMap;

use anyhow::Result;
use vxlan_common::{FdbEntry, FdbKey, counters::NUM_COUNTERS};

use crate::{batch, fdb, maps::Maps};

/// Whether an old entry may be copied: its VNI runs here, and a local
/// entry's port is a port of that VNI now (`ports`: ifindex to VNI).
fn keep(k: &FdbKey, e: &FdbEntry, maps: &Maps, ports: &StdHashMap<u32, u32>) -> bool {
    if maps.vnis.get(&k.vni, 0).is_err() {
        return false;
    }
    !e.is_local() || ports.get(&e.ifindex) == Some(&k.vni)
}

/// Copies the old datapath's state into freshly loaded maps: the FDB (see
/// [`copy_fdb`]), the next hops and the counters. Returns the number of
/// FDB entries copied.
pub fn copy_state(old: &Maps, new: &mut Maps, ports: &StdHashMap<u32, u32>) -> Result<usize> {
    let n = copy_fdb(old, new, ports, true)?;
    for (k, v) in old.neigh.iter().filter_map(Result::ok) {
        new.neigh.insert(k, v, 0)?;
    }
    for c in 0..NUM_COUNTERS {
        if let Ok(values) = old.counters.get(&c, 0) {
            new.counters.set(c, values, 0)?;
        }
    }
    Ok(n)
}

/// Copies FDB entries that [`keep`] allows (all of them, or only those the
/// new map lacks: entries the old programs learned while we started).
pub fn copy_fdb(
    old: &Maps,
    new: &mut Maps,
    ports: &StdHashMap<u32, u32>,
    overwrite: bool,
) -> Result<usize> {
    /// Insert only if absent: the check and the insert are one step, so an
    /// entry the new datapath learned meanwhile is kept.
    const BPF_NOEXIST: u64 = 1;
    let flags = if overwrite { 0 } else { BPF_NOEXIST };
    let mut n = 0;
    for (k, e) in batch::read_all(&old.fdb)? {
        if !keep(&k, &e, new, ports) {
            continue;
        }
        match new.fdb.insert(k, e, flags) {
            Ok(()) => n += 1,
            Err(aya::maps::MapError::SyscallError(err))
                if !overwrite && err.io_error.raw_os_error() == Some(libc::EEXIST) => {}
            Err(err) => return Err(err.into()),
        }
    }
    fdb::recount_learned(new)?;
    Ok(n)
}
