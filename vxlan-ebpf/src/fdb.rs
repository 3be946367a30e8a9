//! FDB learning, shared by both directions.

use core::intrinsics::{AtomicOrdering, atomic_xadd};

use aya_ebpf::bindings::{BPF_ANY, BPF_NOEXIST};
use vxlan_common::{
    Config, Counter, EV_LEARN, EV_MOVE, FdbEntry, FdbEvent, FdbKey, LEARN_REFRESH_NS,
    wire::{is_multicast_mac, is_zero_mac},
};

use crate::{
    maps::{EVENTS, FDB, LEARNED},
    stats::count,
};

/// Learns that `mac` in `vni` lives behind `remote` (remote VTEP) or on
/// local port `ifindex`. Static entries are never touched; an unchanged
/// entry is refreshed in place at most every [`LEARN_REFRESH_NS`]; a moved
/// entry is rewritten at once; a new one only below the learning cap.
///
/// `Ok(true)` when the entry was written (new, moved or refreshed): at
/// most about once a second per MAC, so callers hang per-sender work on
/// it. A static entry for `mac` that points elsewhere refuses the frame
/// (`DropStaticConflict`), as the kernel's `vxlan_snoop` does: a pinned
/// MAC showing up somewhere else is spoofed.
#[inline(always)]
pub fn learn(
    cfg: &Config,
    vni: u32,
    mac: &[u8; 6],
    remote: [u8; 4],
    ifindex: u32,
    now: u64,
) -> Result<bool, Counter> {
    if is_multicast_mac(mac) || is_zero_mac(mac) {
        return Ok(false);
    }
    let key = FdbKey::new(vni, *mac);
    let entry = FdbEntry {
        remote,
        ifindex,
        flags: 0,
        _pad: 0,
        last_seen_ns: now,
    };
    if let Some(e) = FDB.get_ptr_mut(&key) {
        // SAFETY: a valid map value pointer for the duration of the program.
        let e = unsafe { &mut *e };
        let same = e.remote == remote && e.ifindex == ifindex;
        if e.is_static() {
            return if same {
                Ok(false)
            } else {
                Err(Counter::DropStaticConflict)
            };
        }
        if same {
            if now.wrapping_sub(e.last_seen_ns) >= LEARN_REFRESH_NS {
                e.last_seen_ns = now;
                return Ok(true);
            }
            return Ok(false);
        }
        // MAC move: at once.
        if FDB.insert(&key, &entry, BPF_ANY as u64).is_ok() {
            count(Counter::Learn);
            event(EV_MOVE, &key, &entry);
            return Ok(true);
        }
        return Ok(false);
    }
    let Some(learned) = LEARNED.get_ptr_mut(0) else {
        return Ok(false);
    };
    // SAFETY: a valid, aligned map value, shared by all CPUs, hence atomic
    // (the bpf target has no `AtomicU64::fetch_add`; the intrinsic becomes
    // BPF_ATOMIC_ADD).
    let n = unsafe { core::ptr::read_volatile(learned) };
    if n >= u64::from(cfg.max_learned) {
        count(Counter::LearnRefused);
        return Ok(false);
    }
    if FDB.insert(&key, &entry, BPF_NOEXIST as u64).is_err() {
        count(Counter::LearnRefused);
        return Ok(false);
    }
    // SAFETY: as above.
    unsafe { atomic_xadd::<u64, u64, { AtomicOrdering::Relaxed }>(learned, 1) };
    // Another CPU may have crossed the cap at the same time: whoever sees
    // the count above the cap after adding backs out, so the cap holds.
    // SAFETY: as above.
    if unsafe { core::ptr::read_volatile(learned) } > u64::from(cfg.max_learned) {
        let _ = FDB.remove(&key);
        // SAFETY: as above; adding 2^64 - 1 subtracts one.
        unsafe { atomic_xadd::<u64, u64, { AtomicOrdering::Relaxed }>(learned, u64::MAX) };
        count(Counter::LearnRefused);
        return Ok(false);
    }
    count(Counter::Learn);
    event(EV_LEARN, &key, &entry);
    Ok(true)
}

#[inline(always)]
fn event(kind: u32, key: &FdbKey, e: &FdbEntry) {
    let ev = FdbEvent {
        kind,
        vni: key.vni,
        mac: key.mac,
        _pad: [0; 2],
        remote: e.remote,
        ifindex: e.ifindex,
    };
    if EVENTS.output::<FdbEvent>(&ev, 0).is_err() {
        count(Counter::EventsLost);
    }
}

/// Looks a destination up. `None` for unknown (flood).
#[inline(always)]
pub fn lookup(vni: u32, mac: &[u8; 6]) -> Option<FdbEntry> {
    // SAFETY: the value is copied out at once.
    unsafe { FDB.get(&FdbKey::new(vni, *mac)).copied() }
}
