//! FDB learning, shared by both directions.

use core::intrinsics::{AtomicOrdering, atomic_xadd};

use aya_ebpf::{
    bindings::{BPF_ANY, BPF_NOEXIST},
    helpers::{bpf_jiffies64, bpf_ktime_get_coarse_ns},
};
use vxlan_common::{
    Config, Counter, EV_LEARN, EV_MOVE, FDB_F_PORT_KNOWN, FDB_PORT_FLAGS_SHIFT, FdbEntry, FdbEvent,
    FdbKey, LEARN_CHECK_JIFFIES, LEARN_REFRESH_NS, VtepAddr, learned_key_port, learned_key_vni,
    wire::{is_multicast_mac, is_zero_mac},
};

use crate::{
    maps::{EVENTS, FDB, LEARNED, LEARNED_BY, PORTS, VNIS},
    stats::count,
};

/// Learns that `mac` in `vni` lives behind `remote` (remote VTEP) or on
/// local port `ifindex` (whose `PORT_F_*` flags are `port_flags`, kept in
/// the entry). Static entries are never touched; an unchanged entry is
/// refreshed in place at most every [`LEARN_REFRESH_NS`]; a moved entry is
/// rewritten at once; a new one only below the learning cap.
///
/// The clock is read only when an entry is written or a refresh may be
/// due: an entry seen again within [`LEARN_CHECK_JIFFIES`] costs one read
/// of `jiffies` (inlined by the verifier), not a helper call.
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
    remote: &VtepAddr,
    ifindex: u32,
    port_flags: u32,
) -> Result<bool, Counter> {
    if is_multicast_mac(mac) || is_zero_mac(mac) {
        return Ok(false);
    }
    let key = FdbKey::new(vni, *mac);
    // SAFETY: a plain helper call (inlined by the verifier on 64-bit JITs).
    let jiffies = unsafe { bpf_jiffies64() } as u32;
    let flags = if ifindex != 0 {
        FDB_F_PORT_KNOWN | (port_flags << FDB_PORT_FLAGS_SHIFT)
    } else {
        0
    };
    if let Some(e) = FDB.get_ptr_mut(&key) {
        // SAFETY: a valid map value pointer for the duration of the program.
        let e = unsafe { &mut *e };
        let same = e.remote == *remote && e.ifindex == ifindex;
        if e.is_static() {
            return if same {
                Ok(false)
            } else {
                Err(Counter::DropStaticConflict)
            };
        }
        if e.is_extern() {
            // The control plane's word stands against the wire; a frame on
            // a local port means the endpoint moved here: learned anew.
            if ifindex == 0 || FDB.remove(&key).is_err() {
                return Ok(false);
            }
            return learn_new(cfg, vni, key, &new_entry(remote, ifindex, flags, jiffies));
        }
        if same {
            if e.flags != flags {
                // The port's flags changed, or an entry written by
                // userspace (restored) without them.
                e.flags = flags;
            }
            if jiffies.wrapping_sub(e.seen_jiffies) < LEARN_CHECK_JIFFIES {
                return Ok(false);
            }
            e.seen_jiffies = jiffies;
            // SAFETY: a plain helper call.
            let now = unsafe { bpf_ktime_get_coarse_ns() };
            if now.wrapping_sub(e.last_seen_ns) >= LEARN_REFRESH_NS {
                e.last_seen_ns = now;
                return Ok(true);
            }
            return Ok(false);
        }
        // MAC move: at once.
        let entry = new_entry(remote, ifindex, flags, jiffies);
        if FDB.insert(&key, &entry, BPF_ANY as u64).is_ok() {
            count(Counter::Learn);
            event(EV_MOVE, &key, &entry);
            return Ok(true);
        }
        return Ok(false);
    }
    learn_new(cfg, vni, key, &new_entry(remote, ifindex, flags, jiffies))
}

/// A learned entry as written now.
#[inline(always)]
fn new_entry(remote: &VtepAddr, ifindex: u32, flags: u32, jiffies: u32) -> FdbEntry {
    FdbEntry {
        remote: *remote,
        ifindex,
        flags,
        seen_jiffies: jiffies,
        _pad: 0,
        // SAFETY: a plain helper call.
        last_seen_ns: unsafe { bpf_ktime_get_coarse_ns() },
    }
}

/// A new learned entry, below the learning caps.
#[inline(always)]
fn learn_new(cfg: &Config, vni: u32, key: FdbKey, entry: &FdbEntry) -> Result<bool, Counter> {
    let ifindex = entry.ifindex;
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
    if FDB.insert(&key, entry, BPF_NOEXIST as u64).is_err() {
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
    // The VNI's and the port's own caps, if any (looked up for new
    // entries only: no cost per frame).
    // SAFETY: copied out at once.
    let vni_cap = unsafe { VNIS.get(vni) }.map_or(0, |v| v.max_learned);
    // SAFETY: copied out at once.
    let port_cap = match ifindex {
        0 => 0,
        i => unsafe { PORTS.get(i) }.map_or(0, |p| p.max_learned),
    };
    let vni_ok = vni_cap == 0 || take_slot(learned_key_vni(vni), vni_cap);
    let port_ok = vni_ok && (port_cap == 0 || take_slot(learned_key_port(ifindex), port_cap));
    if !port_ok {
        if vni_ok && vni_cap != 0 {
            give_slot(learned_key_vni(vni));
        }
        let _ = FDB.remove(&key);
        // SAFETY: as above; adding 2^64 - 1 subtracts one.
        unsafe { atomic_xadd::<u64, u64, { AtomicOrdering::Relaxed }>(learned, u64::MAX) };
        count(Counter::LearnRefusedScope);
        return Ok(false);
    }
    count(Counter::Learn);
    event(EV_LEARN, &key, entry);
    Ok(true)
}

/// Takes one of `cap` slots of a `LEARNED_BY` count, atomically (another
/// CPU may take the last one at the same time: whoever ends above the cap
/// gives it back). False when the cap is reached.
#[inline(always)]
fn take_slot(key: u64, cap: u32) -> bool {
    if LEARNED_BY.get_ptr_mut(&key).is_none() {
        let _ = LEARNED_BY.insert(&key, &0, BPF_NOEXIST as u64);
    }
    let Some(n) = LEARNED_BY.get_ptr_mut(&key) else {
        return false;
    };
    // SAFETY: a valid, aligned map value shared by all CPUs, hence atomic.
    unsafe {
        if core::ptr::read_volatile(n) >= u64::from(cap) {
            return false;
        }
        atomic_xadd::<u64, u64, { AtomicOrdering::Relaxed }>(n, 1);
        if core::ptr::read_volatile(n) > u64::from(cap) {
            atomic_xadd::<u64, u64, { AtomicOrdering::Relaxed }>(n, u64::MAX);
            return false;
        }
    }
    true
}

/// Gives back a slot [`take_slot`] took.
#[inline(always)]
fn give_slot(key: u64) {
    if let Some(n) = LEARNED_BY.get_ptr_mut(&key) {
        // SAFETY: as in `take_slot`; adding 2^64 - 1 subtracts one.
        unsafe { atomic_xadd::<u64, u64, { AtomicOrdering::Relaxed }>(n, u64::MAX) };
    }
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

/// The `PORT_F_*` flags of a local entry's port: from the entry when it
/// carries them, else from `PORTS`.
#[inline(always)]
pub fn port_flags(e: &FdbEntry) -> u32 {
    match e.port_flags() {
        Some(f) => f,
        // SAFETY: copied out at once.
        None => unsafe { PORTS.get(e.ifindex) }.map_or(0, |p| p.flags),
    }
}

/// Looks a destination up. `None` for unknown (flood).
#[inline(always)]
pub fn lookup(vni: u32, mac: &[u8; 6]) -> Option<FdbEntry> {
    // SAFETY: the value is copied out at once.
    unsafe { FDB.get(&FdbKey::new(vni, *mac)).copied() }
}
