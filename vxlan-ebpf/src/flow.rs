//! The flow hash of a frame going into the tunnel: it picks the outer UDP
//! source port (and, over IPv6, the flow label), so that the underlay's
//! ECMP and RSS spread the tunnel's flows as they would spread the flows
//! themselves.
//!
//! `bpf_get_hash_recalc` gives the skb's hash, running the kernel's flow
//! dissector when the skb has none yet: a frame from a container's
//! unconnected UDP socket (and every BPF_PROG_TEST_RUN frame) has none,
//! and the dissector costs more than the rest of the encapsulation's
//! parsing. So a hash already on the skb is used as it is, and otherwise
//! the hash of an IPv4 or IPv6 frame is computed here from its addresses,
//! protocol and ports (addresses and protocol alone for a fragment, as
//! the dissector does). It is not stored on the skb (one helper call
//! less): what needs a hash after us (a multi-queue uplink's queue
//! choice) hashes the outer headers, whose source port is per flow too.
//! Any other frame (ARP...) still asks the kernel.

use aya_ebpf::{helpers::bpf_get_hash_recalc, programs::TcContext};
use vxlan_common::wire::{ETH_P_IP, ETH_P_IPV6};

use crate::pkt::ptr_at;

const IPPROTO_TCP: u8 = 6;
const IPPROTO_UDP: u8 = 17;
const IPPROTO_SCTP: u8 = 132;

/// The flow hash of the frame, whose network header (protocol `proto`,
/// the skb's) is at offset `l3`.
#[inline(always)]
pub fn hash(ctx: &TcContext, l3: usize, proto: u16) -> u32 {
    let skb = ctx.skb.skb;
    // SAFETY: reading a field of our skb context.
    let h = unsafe { (*skb).hash };
    if h != 0 {
        return h;
    }
    let l3 = l3 & 0x1f;
    let ours = match proto {
        ETH_P_IP => v4(ctx, l3),
        ETH_P_IPV6 => v6(ctx, l3),
        _ => None,
    };
    match ours {
        Some(h) => h,
        // SAFETY: a helper call on our own skb.
        None => unsafe { bpf_get_hash_recalc(skb) },
    }
}

/// The ports of a TCP, UDP or SCTP header at `off`, as one word (0 for
/// other protocols, or if not in the linear data).
#[inline(always)]
fn ports(ctx: &TcContext, off: usize, proto: u8) -> u32 {
    if !matches!(proto, IPPROTO_TCP | IPPROTO_UDP | IPPROTO_SCTP) {
        return 0;
    }
    // SAFETY: bounds checked by ptr_at; read at once.
    match unsafe { ptr_at::<_, [u8; 4]>(ctx, off) } {
        Some(p) => u32::from_ne_bytes(unsafe { *p }),
        None => 0,
    }
}

#[inline(always)]
fn v4(ctx: &TcContext, l3: usize) -> Option<u32> {
    // SAFETY: bounds checked by ptr_at; copied out at once.
    let h = unsafe { *ptr_at::<_, [u8; 20]>(ctx, l3)? };
    let ihl = usize::from(h[0] & 0x0f) * 4;
    // A fragment (MF or an offset) has no ports, or not in every piece.
    let frag = u16::from_be_bytes([h[6], h[7]]) & 0x3fff != 0;
    let p = if frag || ihl < 20 {
        0
    } else {
        ports(ctx, l3 + ihl, h[9])
    };
    let mut s = mix(
        0x5bd1_e995,
        u32::from_ne_bytes([h[12], h[13], h[14], h[15]]),
    );
    s = mix(s, u32::from_ne_bytes([h[16], h[17], h[18], h[19]]));
    s = mix(s, u32::from(h[9]));
    s = mix(s, p);
    Some(finish(s))
}

#[inline(always)]
fn v6(ctx: &TcContext, l3: usize) -> Option<u32> {
    // SAFETY: bounds checked by ptr_at; read in place before any helper
    // call.
    let h = unsafe { &*ptr_at::<_, [u8; 40]>(ctx, l3)? };
    let next = h[6];
    // Extension headers (a fragment header among them): addresses only.
    let p = ports(ctx, l3 + 40, next);
    let mut s = 0x5bd1_e995;
    let mut i = 8;
    while i < 40 {
        s = mix(s, u32::from_ne_bytes([h[i], h[i + 1], h[i + 2], h[i + 3]]));
        i += 4;
    }
    s = mix(s, u32::from(next));
    s = mix(s, p);
    Some(finish(s))
}

/// One step of MurmurHash3's 32-bit body.
#[inline(always)]
fn mix(h: u32, k: u32) -> u32 {
    let k = k
        .wrapping_mul(0xcc9e_2d51)
        .rotate_left(15)
        .wrapping_mul(0x1b87_3593);
    (h ^ k)
        .rotate_left(13)
        .wrapping_mul(5)
        .wrapping_add(0xe654_6b64)
}

/// MurmurHash3's finaliser: every input bit reaches every output bit, so
/// the source port's range (the hash's high bits) and the flow label (its
/// low 20) both vary with every field.
#[inline(always)]
fn finish(mut h: u32) -> u32 {
    h ^= h >> 16;
    h = h.wrapping_mul(0x85eb_ca6b);
    h ^= h >> 13;
    h = h.wrapping_mul(0xc2b2_ae35);
    h ^ (h >> 16)
}
