//! Uplink TC ingress: deliver decapsulated frames to their local port(s).
//!
//! Two ways in:
//! - with XDP on the uplink, XDP has decapsulated the frame and put an
//!   [`XdpMeta`] in front of it (XDP cannot hand a frame to a veth whose
//!   peer does not accept XDP frames, the default): only delivery is left;
//! - without XDP (`CFG_F_TC_DECAP`, the default on veth uplinks), or when
//!   XDP could not confirm the outer UDP checksum (`META_MAGIC_TC_DECAP`: a
//!   checksum left for offload by a sender on the same host), the frame
//!   is decapsulated here: [`rx::classify`], then `bpf_skb_adjust_room`,
//!   which keeps a GSO super-packet whole (skb-mode XDP would copy it into
//!   one linear buffer first).
//!
//! Delivery is straight into a container's namespace with
//! `bpf_redirect_peer`, or out of a port with `bpf_redirect` /
//! `bpf_clone_redirect`.

use core::mem::size_of;

use aya_ebpf::{
    bindings::{
        BPF_CSUM_LEVEL_DEC, BPF_F_ADJ_ROOM_DECAP_L3_IPV4, BPF_F_ADJ_ROOM_DECAP_L3_IPV6,
        BPF_F_ADJ_ROOM_FIXED_GSO, TC_ACT_REDIRECT, TC_ACT_UNSPEC,
        bpf_adj_room_mode::BPF_ADJ_ROOM_MAC,
    },
    helpers::{bpf_csum_level, bpf_redirect, bpf_redirect_peer, bpf_skb_change_tail},
    programs::TcContext,
};
use vxlan_common::{
    CFG_F_TC_DECAP, Config, Counter, MAX_PORTS, META_MAGIC, META_MAGIC_TC_DECAP, PORT_F_PEER,
    XdpMeta,
    wire::{ENCAP_LEN, ETH_HLEN, ETH_P_IP, ETH_P_IPV6, IPV4_HLEN},
    wire6::{ENCAP6_LEN, IPV6_HLEN},
};

use crate::{
    ecn,
    maps::{VNIS, config},
    pkt::ptr_at,
    rx,
    stats::count,
};

/// Hands the frame to local port `ifindex`: into its peer's ingress when the
/// port is a veth whose peer lives in another namespace, else out of it.
#[inline(always)]
pub fn redirect_port(ifindex: u32, flags: u32) -> i32 {
    // SAFETY: plain helper calls.
    let rc = unsafe {
        if flags & PORT_F_PEER != 0 {
            bpf_redirect_peer(ifindex, 0)
        } else {
            bpf_redirect(ifindex, 0)
        }
    };
    rc as i32
}

pub fn run(ctx: &TcContext) -> Result<i32, Counter> {
    let Some(cfg) = config() else {
        return Ok(TC_ACT_UNSPEC);
    };
    // SAFETY: reading fields of the skb context the program was given.
    let (meta, data) = unsafe {
        (
            (*ctx.skb.skb).data_meta as usize,
            (*ctx.skb.skb).data as usize,
        )
    };
    let mut handed_over = false;
    if meta + size_of::<XdpMeta>() <= data {
        // SAFETY: bounds checked just above.
        let m = unsafe { *(meta as *const XdpMeta) };
        // Metadata without our key was not written by our XDP program
        // (another program's, or forged): the frame is treated as if it
        // had none.
        if m.key == cfg.meta_key {
            if m.magic == META_MAGIC {
                return deliver(ctx, m.vni, m.ifindex, m.flags);
            }
            handed_over = m.magic == META_MAGIC_TC_DECAP;
        }
    }
    // One call site: `decap` (and `rx::classify` in it) stays inlined, a
    // subprogram returning Rust enums would give the kernel BTF it refuses.
    if handed_over || cfg.flags & CFG_F_TC_DECAP != 0 {
        decap(ctx, cfg)
    } else {
        Ok(TC_ACT_UNSPEC)
    }
}

/// `BPF_F_ADJ_ROOM_DECAP_L4_UDP` (1 << 10): newer than the bindings.
const ADJ_ROOM_DECAP_L4_UDP: u64 = 1 << 10;

/// What is pulled into the linear part: the outer headers (the longer,
/// IPv6 ones), the inner Ethernet header and the start of the inner
/// network header (its ECN field; every inner frame decapsulated has these
/// 20 bytes). A shorter frame is pulled whole.
const PULL: usize = ENCAP6_LEN + ETH_HLEN + 20;

/// Moves the inner Ethernet header, `INNER` bytes into the frame, to the
/// front (over the outer one).
///
/// With `bpf_skb_store_bytes`, not in place: a program that writes packet
/// data in place gets a prologue that makes a cloned skb's data private
/// before it starts (`bpf_unclone_prologue`), and the XDP metadata does not
/// survive that: with a plain packet socket on the uplink (`ETH_P_ALL`, no
/// ring), for which the kernel clones every frame, TC would never see the
/// [`XdpMeta`] of a frame XDP decapsulated. The helper unclones only when
/// it is called, after the metadata was read.
#[inline(always)]
fn inner_eth_to_front<const INNER: usize>(ctx: &TcContext) -> Result<(), Counter> {
    // SAFETY: bounds checked by ptr_at (the inner header lies within the
    // checked range); read before any helper call.
    let eth = unsafe { *ptr_at::<_, [u8; ETH_HLEN]>(ctx, INNER).ok_or(Counter::DropDecapFailed)? };
    ctx.store(0, &eth, 0).map_err(|_| Counter::DropDecapFailed)
}

/// Decapsulates in TC (no XDP on the uplink).
#[inline(always)]
fn decap(ctx: &TcContext, cfg: &Config) -> Result<i32, Counter> {
    // SAFETY: reading a field of our skb context.
    if unsafe { (*ctx.skb.skb).vlan_present } != 0 {
        // Tagged on the underlay: for a VLAN device, not for this uplink
        // (the kernel drops it as PACKET_OTHERHOST without one).
        count(Counter::RxPass);
        return Ok(TC_ACT_UNSPEC);
    }
    let pull = (ctx.len() as usize).min(PULL);
    if ctx.data() + pull > ctx.data_end() {
        let _ = ctx.pull_data(pull as u32);
    }
    // SAFETY: reading a field of our skb context.
    let ifindex = unsafe { (*ctx.skb.skb).ifindex };
    let Some(rx) = rx::classify(ctx, cfg, ifindex)? else {
        count(Counter::RxPass);
        return Ok(TC_ACT_UNSPEC);
    };
    ecn::apply_tc(ctx, rx.ecn)?;
    // SAFETY: reading a field of our skb context.
    let gso = unsafe { (*ctx.skb.skb).gso_size } != 0;
    if rx.pad > 0 {
        // A super-packet is never padded: its IPv4 length is wrong (BIG
        // TCP's 0, say); trimming it to that length would lose data.
        if gso {
            return Err(Counter::DropIpLength);
        }
        let len = ctx.len() - rx.pad as u32;
        // SAFETY: helper call on our own skb.
        if unsafe { bpf_skb_change_tail(ctx.skb.skb, len, 0) } != 0 {
            return Err(Counter::DropDecapFailed);
        }
    }
    // The inner Ethernet header goes where the outer one is; then the 50
    // or 70 bytes after it (outer IP, UDP, VXLAN, the inner header's old
    // copy) are removed. The inner headers keep their offsets in the
    // buffer.
    let v6 = rx.encap_len == ENCAP6_LEN;
    if v6 {
        inner_eth_to_front::<ENCAP6_LEN>(ctx)?;
    } else {
        inner_eth_to_front::<ENCAP_LEN>(ctx)?;
    }
    let encap = if v6 { ENCAP6_LEN } else { ENCAP_LEN };
    // FIXED_GSO: gso_size is the inner MSS already. DECAP_L3 sets
    // skb->protocol to the inner frame's; the kernel refuses it when what
    // is left is shorter than that protocol's header (an IPv6 frame with
    // fewer than 40 bytes after its Ethernet header): such a frame goes as
    // a non-IP one, as XDP delivers it, and the receiver's IPv6 drops it.
    let inner_l3_len = ctx.len() as usize - encap - ETH_HLEN;
    let l3 = match rx.inner_proto {
        ETH_P_IP => BPF_F_ADJ_ROOM_DECAP_L3_IPV4 as u64,
        ETH_P_IPV6 if inner_l3_len >= 40 => BPF_F_ADJ_ROOM_DECAP_L3_IPV6 as u64,
        _ => 0,
    };
    let adj = BPF_F_ADJ_ROOM_FIXED_GSO as u64 | l3;
    // A GSO super-packet still carries the tunnel's GSO type (UDP_TUNNEL)
    // and skb->encapsulation. Kernels with BPF_F_ADJ_ROOM_DECAP_L4_UDP
    // (bpf-next, 2026) clear them here, as the kernel's own tunnel devices
    // do on decapsulation; older ones refuse the flag with nothing changed,
    // and the state stays (harmless for local delivery).
    let cleared = gso
        && ctx
            .adjust_room(
                -(encap as i32),
                BPF_ADJ_ROOM_MAC,
                adj | ADJ_ROOM_DECAP_L4_UDP,
            )
            .is_ok();
    if !cleared {
        // Without an inner L3 flag the kernel wants what is left after
        // the outer Ethernet header to hold an outer network header (20
        // bytes, 40 over IPv6): a shorter inner frame (ARP: 28, over
        // IPv6) is padded for the shrink and cut back after it.
        let base = if v6 { IPV6_HLEN } else { IPV4_HLEN };
        let short = if l3 == 0 && inner_l3_len < base {
            base - inner_l3_len
        } else {
            0
        };
        let len = ctx.len();
        // SAFETY (both): helper calls on our own skb (not GSO: short).
        if short > 0 && unsafe { bpf_skb_change_tail(ctx.skb.skb, len + short as u32, 0) } != 0 {
            return Err(Counter::DropDecapFailed);
        }
        ctx.adjust_room(-(encap as i32), BPF_ADJ_ROOM_MAC, adj)
            .map_err(|_| Counter::DropDecapFailed)?;
        if short > 0 && unsafe { bpf_skb_change_tail(ctx.skb.skb, len - encap as u32, 0) } != 0 {
            return Err(Counter::DropDecapFailed);
        }
    }
    count(Counter::RxDecap);
    if v6 {
        count(Counter::RxDecap6);
    }
    // skb->protocol is only right for IPv4/IPv6: any other frame goes out
    // of the port, and the peer parses it on receive.
    let flags = if l3 != 0 {
        rx.port_flags
    } else {
        rx.port_flags & !PORT_F_PEER
    };
    deliver(ctx, rx.vni, rx.ifindex, flags)
}

/// Delivers to local port `ifindex` (with its `PORT_F_*` flags), or with
/// `ifindex` 0 floods to every local port of the VNI.
#[inline(always)]
fn deliver(ctx: &TcContext, vni: u32, ifindex: u32, flags: u32) -> Result<i32, Counter> {
    // The outer UDP header is gone without the kernel's UDP input having
    // seen it: consume its level of a NIC's CHECKSUM_UNNECESSARY, as
    // `__skb_checksum_validate` would, so the inner checksums are not
    // taken as verified when only the outer one was. (No-op for other
    // ip_summed values: veths deliver CHECKSUM_PARTIAL.)
    // SAFETY: helper call on our own skb.
    unsafe { bpf_csum_level(ctx.skb.skb, BPF_CSUM_LEVEL_DEC as u64) };
    if ifindex != 0 {
        count(Counter::RxDeliver);
        return Ok(redirect_port(ifindex, flags));
    }

    // Broadcast, multicast or unknown unicast: every local port of the VNI.
    // SAFETY: map value read in place, no concurrent writer frees it.
    let Some(v) = (unsafe { VNIS.get(vni) }) else {
        return Err(Counter::DropUnknownVni);
    };
    let n = v.n_ports as usize;
    if n == 0 || n > MAX_PORTS {
        return Err(Counter::DropNoLocalPort);
    }
    for i in 0..MAX_PORTS - 1 {
        if i + 1 >= n {
            break;
        }
        if ctx.clone_redirect(v.ports[i], 0).is_ok() {
            count(Counter::RxFloodCopy);
        }
    }
    // The last copy takes the original.
    // SAFETY: plain helper call.
    let rc = unsafe { bpf_redirect(v.ports[(n - 1) & (MAX_PORTS - 1)], 0) } as i32;
    if rc == TC_ACT_REDIRECT {
        count(Counter::RxFloodCopy);
    }
    Ok(rc)
}
