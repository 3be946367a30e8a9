//! ECN on decapsulation (RFC 6040), as the kernel's vxlan does it
//! (`vxlan_ecn_decapsulate`, `INET_ECN_decapsulate`): see
//! [`vxlan_common::wire::ecn_decap`]. The decision is taken in `rx` (a
//! drop must come before the frame is delivered); the inner header is
//! rewritten here, in the buffer where it lies before the outer headers
//! go: in place in XDP, with `bpf_skb_store_bytes` in TC (which keeps a
//! `CHECKSUM_COMPLETE` sum right).

use aya_ebpf::{
    bindings::BPF_F_RECOMPUTE_CSUM,
    programs::{TcContext, XdpContext},
};
use vxlan_common::{
    Counter,
    wire::{ETH_HLEN, ETH_P_IP, ETH_P_IPV6, EcnDecap, csum_replace16, ecn_decap},
    wire6::ENCAP6_LEN,
};

use crate::pkt::{Frame, ptr_at, ptr_at_mut};

/// What to do to the inner packet: a new ECN codepoint to write, if any.
/// Only untagged IPv4 and IPv6 inner frames carry ECN as far as this is
/// concerned (the kernel reads a tagged one's header at the wrong offset).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Ecn {
    pub proto: u16,
    pub set: Option<u8>,
    /// Offset of the inner network header while the outer headers are
    /// still there.
    pub off: usize,
}

/// Decides from the outer TOS and the inner header; the inner frame is at
/// `inner` (50 or 70).
#[inline(always)]
pub fn decide<F: Frame>(
    f: &F,
    inner: usize,
    outer_tos: u8,
    inner_proto: u16,
) -> Result<Ecn, Counter> {
    // Two constants, so that packet offsets stay constant for the verifier.
    let off = if inner == ENCAP6_LEN {
        ENCAP6_LEN + ETH_HLEN
    } else {
        vxlan_common::wire::ENCAP_LEN + ETH_HLEN
    };
    // SAFETY (reads): bounds checked by ptr_at.
    let inner_ds = match inner_proto {
        ETH_P_IP => {
            let p = unsafe { ptr_at::<_, [u8; 2]>(f, off) }.ok_or(Counter::DropDecapFailed)?;
            unsafe { (*p)[1] }
        }
        ETH_P_IPV6 => {
            let p = unsafe { ptr_at::<_, [u8; 2]>(f, off) }.ok_or(Counter::DropDecapFailed)?;
            let b = unsafe { *p };
            (b[0] << 4) | (b[1] >> 4)
        }
        _ => {
            return Ok(Ecn {
                proto: 0,
                set: None,
                off,
            });
        }
    };
    match ecn_decap(outer_tos, inner_ds) {
        EcnDecap::Keep => Ok(Ecn {
            proto: inner_proto,
            set: None,
            off,
        }),
        EcnDecap::Set(e) => Ok(Ecn {
            proto: inner_proto,
            set: Some(e),
            off,
        }),
        EcnDecap::Drop => Err(Counter::DropEcn),
    }
}

/// The inner header's first 16-bit word with ECN `e`, and for IPv4 the
/// header checksum updated for it.
#[inline(always)]
fn rewrite(proto: u16, w: [u8; 2], check: [u8; 2], e: u8) -> ([u8; 2], [u8; 2]) {
    if proto == ETH_P_IP {
        let new = [w[0], (w[1] & !3) | e];
        let c = csum_replace16(
            u16::from_be_bytes(check),
            u16::from_be_bytes(w),
            u16::from_be_bytes(new),
        );
        (new, c.to_be_bytes())
    } else {
        ([w[0], (w[1] & 0xcf) | (e << 4)], check)
    }
}

/// Writes the decision into the inner header, in XDP (in place).
#[inline(always)]
pub fn apply_xdp(ctx: &XdpContext, ecn: Ecn) -> Result<(), Counter> {
    let Some(e) = ecn.set else { return Ok(()) };
    // SAFETY: bounds checked by ptr_at_mut; no helper call in between.
    unsafe {
        let h = ptr_at_mut::<_, [u8; 12]>(ctx, ecn.off).ok_or(Counter::DropDecapFailed)?;
        let h = &mut *h;
        let (w, c) = rewrite(ecn.proto, [h[0], h[1]], [h[10], h[11]], e);
        h[0] = w[0];
        h[1] = w[1];
        if ecn.proto == ETH_P_IP {
            h[10] = c[0];
            h[11] = c[1];
        }
    }
    crate::stats::count(Counter::RxEcnMarked);
    Ok(())
}

/// Writes the decision into the inner header, in TC.
#[inline(always)]
pub fn apply_tc(ctx: &TcContext, ecn: Ecn) -> Result<(), Counter> {
    let Some(e) = ecn.set else { return Ok(()) };
    let h: [u8; 12] = ctx.load(ecn.off).map_err(|_| Counter::DropDecapFailed)?;
    let (w, c) = rewrite(ecn.proto, [h[0], h[1]], [h[10], h[11]], e);
    let flags = BPF_F_RECOMPUTE_CSUM as u64;
    ctx.store(ecn.off, &w, flags)
        .map_err(|_| Counter::DropDecapFailed)?;
    if ecn.proto == ETH_P_IP {
        ctx.store(ecn.off + 10, &c, flags)
            .map_err(|_| Counter::DropDecapFailed)?;
    }
    crate::stats::count(Counter::RxEcnMarked);
    Ok(())
}
