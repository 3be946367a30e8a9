//! FDB learning, shared by both directions.

use vxlan_common::{
    Counter, FdbEntry, FdbKey, LEARN_REFRESH_NS,
    wire::{is_multicast_mac, is_zero_mac},
};

use crate::{maps::FDB, stats::count};

/// Learns that `mac` in `vni` lives behind `remote` (remote VTEP) or on
/// local port `ifindex`. Static entries are never touched; an unchanged
/// entry is refreshed in place at most every [`LEARN_REFRESH_NS`]; a moved
/// or new one is written at once.
#[inline(always)]
pub fn learn(vni: u32, mac: &[u8; 6], remote: [u8; 4], ifindex: u32, now: u64) {
    if is_multicast_mac(mac) || is_zero_mac(mac) {
        return;
    }
    let key = FdbKey::new(vni, *mac);
    if let Some(e) = FDB.get_ptr_mut(key) {
        // SAFETY: a valid map value pointer for the duration of the program.
        let e = unsafe { &mut *e };
        if e.is_static() {
            return;
        }
        if e.remote == remote && e.ifindex == ifindex {
            if now.wrapping_sub(e.last_seen_ns) >= LEARN_REFRESH_NS {
                e.last_seen_ns = now;
            }
            return;
        }
    }
    let entry = FdbEntry {
        remote,
        ifindex,
        flags: 0,
        _pad: 0,
        last_seen_ns: now,
    };
    match FDB.insert(key, entry, 0) {
        Ok(()) => count(Counter::Learn),
        Err(_) => count(Counter::LearnRefused),
    }
}

/// Looks a destination up. `None` for unknown (flood).
#[inline(always)]
pub fn lookup(vni: u32, mac: &[u8; 6]) -> Option<FdbEntry> {
    // SAFETY: the value is copied out at once.
    unsafe { FDB.get(FdbKey::new(vni, *mac)).copied() }
}
