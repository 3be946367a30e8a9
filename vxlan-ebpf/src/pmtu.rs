//! Path MTU: frames that would not fit the uplink once encapsulated are
//! dropped and counted; for an IPv4 sender that set DF, an ICMP
//! "fragmentation needed" goes back with the overlay MTU (uplink − 50), as
//! the kernel's vxlan does, so its path MTU discovery converges.

use aya_ebpf::{
    helpers::{bpf_redirect, bpf_skb_change_tail},
    programs::TcContext,
};
use vxlan_common::{
    Config, Counter,
    wire::{
        ETH_HLEN, ETH_P_IP, ETH_P_IPV6, ICMP_FRAG_LEN, IPV4_HLEN, OVERHEAD, icmp_error_allowed,
        icmp_frag_needed,
    },
};

use crate::stats::count;

const IPPROTO_TCP: u8 = 6;
const IPPROTO_UDP: u8 = 17;

/// Whether the frame (or each segment of a GSO frame) would exceed the
/// uplink MTU with 50 bytes of encapsulation and `extra` bytes that are
/// not in the frame yet (an accelerated VLAN tag that goes inside).
#[inline(always)]
pub fn too_big(ctx: &TcContext, cfg: &Config, proto: u16, extra: usize) -> bool {
    let mtu = (cfg.uplink_mtu as usize).saturating_sub(extra);
    // SAFETY: reading a field of our skb context.
    let gso = unsafe { (*ctx.skb.skb).gso_size } as usize;
    if gso == 0 {
        return ctx.len() as usize - ETH_HLEN + OVERHEAD as usize > mtu;
    }
    // GSO: the largest segment is the L3 and L4 headers plus gso_size.
    let (l3, l4proto) = match proto {
        ETH_P_IP => {
            let Ok(b) = ctx.load::<[u8; 10]>(ETH_HLEN) else {
                return false;
            };
            (usize::from(b[0] & 0x0f) * 4, b[9])
        }
        ETH_P_IPV6 => {
            let Ok(b) = ctx.load::<[u8; 7]>(ETH_HLEN) else {
                return false;
            };
            (40, b[6])
        }
        _ => return false,
    };
    let l4 = match l4proto {
        IPPROTO_TCP => match ctx.load::<u8>(ETH_HLEN + (l3 & 0x3f) + 12) {
            Ok(doff) => usize::from(doff >> 4) * 4,
            Err(_) => return false,
        },
        IPPROTO_UDP => 8,
        _ => return false,
    };
    l3 + l4 + gso + OVERHEAD as usize > mtu
}

/// Drops a too-big frame; for IPv4 with DF (and no IP options), turns it
/// into the ICMP "fragmentation needed" and sends that back out of the
/// port it came from.
#[inline(always)]
pub fn reject(ctx: &TcContext, cfg: &Config, proto: u16, in_ifindex: u32) -> Result<i32, Counter> {
    if proto != ETH_P_IP {
        return Err(Counter::DropTooBig);
    }
    let orig: [u8; ETH_HLEN + IPV4_HLEN + 8] = ctx.load(0).map_err(|_| Counter::DropTooBig)?;
    let df = orig[ETH_HLEN + 6] & 0x40 != 0;
    let mut ip = [0u8; IPV4_HLEN + 8];
    ip.copy_from_slice(&orig[ETH_HLEN..]);
    if orig[ETH_HLEN] != 0x45 || !df || !icmp_error_allowed(&ip) {
        return Err(Counter::DropTooBig);
    }
    let mtu = cfg.uplink_mtu.saturating_sub(OVERHEAD) as u16;
    let icmp = icmp_frag_needed(&orig, mtu, cfg.ttl);
    // SAFETY: helper call on our own skb.
    if unsafe { bpf_skb_change_tail(ctx.skb.skb, ICMP_FRAG_LEN as u32, 0) } != 0 {
        return Err(Counter::DropTooBig);
    }
    ctx.store(0, &icmp, 0).map_err(|_| Counter::DropTooBig)?;
    count(Counter::DropTooBig);
    count(Counter::TxIcmpFragNeeded);
    // SAFETY: plain helper call.
    Ok(unsafe { bpf_redirect(in_ifindex, 0) } as i32)
}
