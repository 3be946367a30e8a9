//! Counters.

use vxlan_common::Counter;

use crate::maps::COUNTERS;

#[inline(always)]
pub fn count(c: Counter) {
    add(c, 1);
}

#[inline(always)]
pub fn add(c: Counter, n: u64) {
    if let Some(p) = COUNTERS.get_ptr_mut(c as u32) {
        // SAFETY: per-CPU slot, only this CPU writes it while we run.
        unsafe { *p += n };
    }
}
