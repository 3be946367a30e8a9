//! A tenant's VLAN tags stay inside the tunnel.
//!
//! A container that sends an 802.1Q frame has its (outermost) tag moved
//! into `skb->vlan_tci` by the kernel before TC ingress on the port. Left
//! there, the uplink would put it on the *outer* header when the frame
//! leaves encapsulated: the tenant would choose the underlay VLAN. The
//! kernel's vxlan pushes it back inside (`vlan_hwaccel_push_inside`); so
//! does this: the accelerated tag (and a second one, QinQ, that the kernel
//! moves up when the first is popped) is cleared and its bytes go into the
//! inner frame after the MAC addresses. Frames switched between local
//! ports keep their tag where it is.

use aya_ebpf::{
    helpers::{bpf_skb_change_head, bpf_skb_vlan_pop},
    programs::TcContext,
};
use vxlan_common::Counter;

use crate::pkt::ptr_at_mut;

/// Tags moved back into a frame at most: 802.1ad + 802.1Q.
const MAX_TAGS: usize = 2;
const TAG_LEN: usize = 4;

/// Whether the frame carries an accelerated tag. A subprogram: inlined
/// at several places of one function, LLVM keeps `&skb->vlan_present` in
/// a register, and the verifier refuses a context pointer with an offset
/// ("dereference of modified ctx ptr").
#[inline(never)]
pub fn present(ctx: &TcContext) -> bool {
    // SAFETY: reading a field of our skb context.
    unsafe { (*ctx.skb.skb).vlan_present != 0 }
}

/// Moves the accelerated tag(s) into the frame; returns how many bytes the
/// inner Ethernet header grew by (0, 4 or 8). `tagged` is what
/// [`present`] said (the caller asked already: one subprogram call less
/// per frame).
#[inline(always)]
pub fn push_inside(ctx: &TcContext, tagged: bool) -> Result<usize, Counter> {
    if !tagged {
        return Ok(0);
    }
    let skb = ctx.skb.skb;
    let mut tags = [[0u8; TAG_LEN]; MAX_TAGS];
    let mut n = 0;
    for tag in tags.iter_mut() {
        // SAFETY: reading fields of our skb context; helper call on it.
        unsafe {
            if (*skb).vlan_present == 0 {
                break;
            }
            // vlan_proto is the wire value (network order), vlan_tci the
            // host-order TCI.
            let proto = ((*skb).vlan_proto as u16).to_ne_bytes();
            let tci = ((*skb).vlan_tci as u16).to_be_bytes();
            *tag = [proto[0], proto[1], tci[0], tci[1]];
            if bpf_skb_vlan_pop(skb) != 0 {
                return Err(Counter::DropTxVlan);
            }
        }
        n += 1;
    }
    if present(ctx) {
        return Err(Counter::DropTxVlan);
    }
    match n {
        1 => insert::<TAG_LEN>(ctx, &tags)?,
        _ => insert::<{ 2 * TAG_LEN }>(ctx, &tags)?,
    }
    Ok(n * TAG_LEN)
}

/// Makes room for `N` bytes of tags in front and writes them after the
/// MAC addresses, before the ethertype.
#[inline(always)]
fn insert<const N: usize>(
    ctx: &TcContext,
    tags: &[[u8; TAG_LEN]; MAX_TAGS],
) -> Result<(), Counter> {
    // SAFETY: helper call on our own skb.
    if unsafe { bpf_skb_change_head(ctx.skb.skb, N as u32, 0) } != 0 {
        return Err(Counter::DropTxVlan);
    }
    // SAFETY: bounds checked by ptr_at_mut; no helper call in between. The
    // MAC addresses move N bytes to the front (through a copy: the ranges
    // overlap).
    unsafe {
        // The old MAC addresses, now N bytes in; checking that they fit
        // covers the whole range written.
        let old = ptr_at_mut::<_, [u8; 12]>(ctx, N).ok_or(Counter::DropTxVlan)? as *mut u8;
        let p = old.sub(N);
        let mut macs = [0u8; 12];
        core::ptr::copy_nonoverlapping(old, macs.as_mut_ptr(), 12);
        core::ptr::copy_nonoverlapping(macs.as_ptr(), p, 12);
        let mut i = 0;
        while i < N / TAG_LEN {
            core::ptr::copy_nonoverlapping(tags[i].as_ptr(), p.add(12 + i * TAG_LEN), TAG_LEN);
            i += 1;
        }
    }
    Ok(())
}
