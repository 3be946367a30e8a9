//! Path MTU: frames that would not fit the uplink once encapsulated are
//! dropped and counted; for an IPv4 sender that set DF, an ICMP
//! "fragmentation needed" goes back with the overlay MTU (uplink − 50, or
//! − 70 over an IPv6 underlay), and
//! for an IPv6 sender an ICMPv6 "Packet Too Big", as the kernel's vxlan does
//! (`skb_tunnel_check_pmtu`), so its path MTU discovery converges.

use aya_ebpf::{
    bindings::bpf_adj_room_mode::BPF_ADJ_ROOM_MAC,
    helpers::{bpf_redirect, bpf_skb_change_tail},
    programs::TcContext,
};
use vxlan_common::{
    Config, Counter, VNI_F_IPV6,
    wire::{
        ETH_HLEN, ETH_P_IP, ETH_P_IPV6, ICMP_FRAG_LEN, IPV4_HLEN, OVERHEAD, icmp_error_allowed,
        icmp_frag_needed,
    },
    wire6::{
        ICMP6_PACKET_TOO_BIG, IPPROTO_ICMPV6, IPV6_HLEN, IPV6_MIN_MTU, OVERHEAD6, PTB_HDR_LEN,
        PTB_PAYLOAD_LEN, PTB_QUOTE, icmp6_error_allowed,
    },
};

use crate::{
    csum,
    maps::{PORTS, VNIS, config},
    stats::count,
};

const IPPROTO_TCP: u8 = 6;
const IPPROTO_UDP: u8 = 17;

/// Whether the frame (or each segment of a GSO frame) would exceed the
/// uplink MTU with `encap` bytes of encapsulation (50 or 70) and `extra`
/// bytes that are not in the frame yet (an accelerated VLAN tag that goes
/// inside).
#[inline(always)]
pub fn too_big(ctx: &TcContext, cfg: &Config, proto: u16, extra: usize, encap: usize) -> bool {
    let mtu = (cfg.uplink_mtu as usize).saturating_sub(extra);
    // The outer IP packet: the inner frame (its Ethernet header too) and
    // the outer IP, UDP and VXLAN headers, i.e. `encap` bytes more than
    // the inner network packet.
    let overhead = encap;
    // SAFETY: reading a field of our skb context.
    let gso = unsafe { (*ctx.skb.skb).gso_size } as usize;
    if gso == 0 {
        return ctx.len() as usize - ETH_HLEN + overhead > mtu;
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
    l3 + l4 + gso + overhead > mtu
}

/// What the port program returns for a frame too big for the tunnel: a
/// signal for its entry point, which then calls [`reject4`] or [`reject6`]
/// (their frames are not on the encapsulation's call chain, whose stack
/// the verifier limits to 512 bytes), or a plain drop for a frame no ICMP
/// error is sent about.
#[inline(always)]
pub fn too_big_signal(proto: u16) -> Counter {
    match proto {
        ETH_P_IP => Counter::TxIcmpFragNeeded,
        ETH_P_IPV6 => Counter::TxIcmp6TooBig,
        _ => Counter::DropTooBig,
    }
}

/// The overlay MTU of port `ifindex`: the uplink's less the overhead of
/// its VNI's underlay family.
#[inline(always)]
fn overlay_mtu(cfg: &Config, ifindex: u32) -> u32 {
    // SAFETY: copied out at once.
    let vni = unsafe { PORTS.get(ifindex) }.map_or(0, |p| p.vni);
    // SAFETY: a field read in place.
    let v6 = unsafe { VNIS.get(vni) }.is_some_and(|v| v.flags & VNI_F_IPV6 != 0);
    cfg.uplink_mtu
        .saturating_sub(if v6 { OVERHEAD6 } else { OVERHEAD })
}

/// Drops a too-big IPv4 frame; with DF (and no IP options), turns it
/// into the ICMP "fragmentation needed" with the overlay MTU and sends
/// that back out of the port it came from.
#[inline(never)]
pub fn reject4(ctx: &TcContext) -> Result<i32, Counter> {
    let cfg = config().ok_or(Counter::DropTooBig)?;
    // SAFETY: reading a field of our skb context.
    let in_ifindex = unsafe { (*ctx.skb.skb).ifindex };
    let orig: [u8; ETH_HLEN + IPV4_HLEN + 8] = ctx.load(0).map_err(|_| Counter::DropTooBig)?;
    let df = orig[ETH_HLEN + 6] & 0x40 != 0;
    let mut ip = [0u8; IPV4_HLEN + 8];
    ip.copy_from_slice(&orig[ETH_HLEN..]);
    if orig[ETH_HLEN] != 0x45 || !df || !icmp_error_allowed(&ip) {
        return Err(Counter::DropTooBig);
    }
    let mtu = overlay_mtu(cfg, in_ifindex) as u16;
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

/// The IPv6 counterpart of [`reject4`], called by the port program's entry
/// point when asked (`Err(Counter::TxIcmp6TooBig)`): the frame
/// is cut to the quote (its first 1232 bytes of IPv6: what fits the minimum
/// MTU with the new headers), 48 bytes of room are opened after its
/// Ethernet header for the new IPv6 and ICMPv6 headers, and the checksum
/// is summed over the message in place. Back to the sender's MAC from the
/// MAC it sent to, hop limit of the original, as the kernel's
/// `iptunnel_pmtud_build_icmpv6`. Not sent when the overlay MTU is
/// below the IPv6 minimum (the sender could not use it), as the kernel's
/// `iptunnel_pmtud_check_icmpv6`. Sent back out of the port it came from.
#[inline(never)]
pub fn reject6(ctx: &TcContext) -> Result<i32, Counter> {
    let cfg = config().ok_or(Counter::DropTooBig)?;
    // SAFETY: reading a field of our skb context.
    let in_ifindex = unsafe { (*ctx.skb.skb).ifindex };
    let mtu = overlay_mtu(cfg, in_ifindex);
    if mtu < IPV6_MIN_MTU || (ctx.len() as usize) < ETH_HLEN + PTB_QUOTE {
        return Err(Counter::DropTooBig);
    }
    let orig: [u8; ETH_HLEN + IPV6_HLEN] = ctx.load(0).map_err(|_| Counter::DropTooBig)?;
    let next: [u8; 8] = ctx
        .load(ETH_HLEN + IPV6_HLEN)
        .map_err(|_| Counter::DropTooBig)?;
    if !icmp6_error_allowed(&orig, &next) {
        return Err(Counter::DropTooBig);
    }
    let hop = orig[ETH_HLEN + 7];
    // SAFETY: helper calls on our own skb; they also drop GSO state (the
    // reply is one small packet).
    if unsafe { bpf_skb_change_tail(ctx.skb.skb, (ETH_HLEN + PTB_QUOTE) as u32, 0) } != 0 {
        return Err(Counter::DropTooBig);
    }
    ctx.adjust_room((PTB_HDR_LEN - ETH_HLEN) as i32, BPF_ADJ_ROOM_MAC, 0)
        .map_err(|_| Counter::DropTooBig)?;
    // Written field by field from the packet (the original headers are
    // still in front of the quote): whole header arrays on the stack would
    // not fit the program's 512 bytes along this call chain.
    let e = |_| Counter::DropTooBig;
    let (to, from): ([u8; 6], [u8; 6]) = (ctx.load(0).map_err(e)?, ctx.load(6).map_err(e)?);
    ctx.store(0, &from, 0).map_err(e)?;
    ctx.store(6, &to, 0).map_err(e)?;
    let quote = PTB_HDR_LEN;
    let (src, dst): ([u8; 16], [u8; 16]) = (
        ctx.load(quote + 8).map_err(e)?,
        ctx.load(quote + 24).map_err(e)?,
    );
    let ip = ETH_HLEN;
    let len = (PTB_PAYLOAD_LEN as u16).to_be_bytes();
    ctx.store(
        ip,
        &[0x60u8, 0, 0, 0, len[0], len[1], IPPROTO_ICMPV6, hop],
        0,
    )
    .map_err(e)?;
    // From the original destination (so the sender's socket takes it) to the
    // original source.
    ctx.store(ip + 8, &dst, 0).map_err(e)?;
    ctx.store(ip + 24, &src, 0).map_err(e)?;
    let icmp = ip + IPV6_HLEN;
    let m = mtu.to_be_bytes();
    ctx.store(
        icmp,
        &[ICMP6_PACKET_TOO_BIG, 0, 0, 0, m[0], m[1], m[2], m[3]],
        0,
    )
    .map_err(e)?;
    let c = csum::icmp6(ctx, icmp, PTB_PAYLOAD_LEN, &src, &dst).ok_or(Counter::DropTooBig)?;
    ctx.store(icmp + 2, &c, 0).map_err(e)?;
    count(Counter::DropTooBig);
    count(Counter::TxIcmp6TooBig);
    // SAFETY: plain helper call.
    Ok(unsafe { bpf_redirect(in_ifindex, 0) } as i32)
}
