//! Port TC ingress: learn local MACs, switch local-to-local, encapsulate to
//! remote VTEPs, flood broadcast and unknown frames. A tenant's VLAN tag
//! goes inside the tunnel (see `vlan`); a bad source MAC is refused.

use core::intrinsics::{AtomicOrdering, atomic_xadd};

use aya_ebpf::{
    bindings::{
        BPF_F_ADJ_ROOM_ENCAP_L2_ETH, BPF_F_ADJ_ROOM_ENCAP_L3_IPV4, BPF_F_ADJ_ROOM_ENCAP_L4_UDP,
        BPF_F_ADJ_ROOM_FIXED_GSO, TC_ACT_SHOT, TC_ACT_UNSPEC, bpf_adj_room_mode::BPF_ADJ_ROOM_MAC,
    },
    helpers::{
        bpf_get_hash_recalc, bpf_get_prandom_u32, bpf_ktime_get_coarse_ns, bpf_redirect,
        bpf_redirect_neigh, bpf_skb_change_head,
    },
    programs::TcContext,
};
use network_types::eth::EthHdr;
use vxlan_common::{
    BumWindow, CFG_F_ARP_SUPPRESS, CFG_F_LEARNING, CFG_F_PORT_LEARN, CFG_F_SNOOP, Config, Counter,
    MAX_PORTS, MAX_REMOTES, VTEP_NONE, VtepAddr, vtep_as_v4, vtep_is_none,
    wire::{
        ENCAP_LEN, ETH_HLEN, ETH_P_IP, ETH_P_IPV6, Outer, OuterHdr, ecn_encap, flow_src_port,
        is_multicast_mac, is_zero_mac, multicast_mac, outer_hdr,
    },
};

use crate::{
    arp,
    deliver::redirect_port,
    fdb,
    maps::{BUM, NEIGH, PORTS, VNIS, config},
    pkt::ptr_at_mut,
    pmtu,
    stats::count,
    vlan,
};

/// `bpf_skb_adjust_room` flags for VXLAN encapsulation, without the inner
/// MAC header length (`BPF_F_ADJ_ROOM_ENCAP_L2(len)`, see [`push`]).
const ENCAP_FLAGS: u64 = BPF_F_ADJ_ROOM_FIXED_GSO as u64
    | BPF_F_ADJ_ROOM_ENCAP_L3_IPV4 as u64
    | BPF_F_ADJ_ROOM_ENCAP_L4_UDP as u64
    | BPF_F_ADJ_ROOM_ENCAP_L2_ETH as u64;

pub fn run(ctx: &TcContext) -> Result<i32, Counter> {
    // SAFETY: reading a field of our skb context.
    let ifindex = unsafe { (*ctx.skb.skb).ifindex };
    // SAFETY: copied out at once.
    let Some(port) = (unsafe { PORTS.get(ifindex) }).copied() else {
        return Ok(TC_ACT_UNSPEC);
    };
    let Some(cfg) = config() else {
        return Ok(TC_ACT_UNSPEC);
    };
    let vni = port.vni;
    let eth: EthHdr = ctx.load(0).map_err(|_| Counter::DropTxTruncated)?;
    // A bridge refuses these sources; they must never be learned.
    if is_multicast_mac(&eth.src_addr) || is_zero_mac(&eth.src_addr) {
        return Err(Counter::DropBadSrcMac);
    }

    let wrote = cfg.flags & (CFG_F_LEARNING | CFG_F_PORT_LEARN) != 0
        && fdb::learn(cfg, vni, &eth.src_addr, &VTEP_NONE, ifindex, port.flags)?;
    if cfg.flags & (CFG_F_SNOOP | CFG_F_ARP_SUPPRESS) != 0 && !vlan::present(ctx) {
        let proto = u16::from_be(eth.ether_type);
        // IPv4 sources at most once a second per MAC (when learning
        // refreshed the entry); ARP every time.
        if cfg.flags & CFG_F_SNOOP != 0 && (wrote || proto == arp::ETH_P_ARP) {
            arp::snoop(ctx, vni, &eth.src_addr, proto);
        }
        if cfg.flags & CFG_F_ARP_SUPPRESS != 0
            && proto == arp::ETH_P_ARP
            && let Some(action) = arp::suppress(ctx, vni, ifindex)
        {
            return Ok(action);
        }
    }

    if is_multicast_mac(&eth.dst_addr) {
        bum_budget(ifindex, port.bum_pps)?;
        return flood(ctx, cfg, vni, ifindex);
    }
    match fdb::lookup(vni, &eth.dst_addr) {
        Some(e) if e.is_local() => {
            if e.ifindex == ifindex {
                return Err(Counter::DropTxHairpin);
            }
            count(Counter::LocalSwitch);
            Ok(redirect_port(e.ifindex, fdb::port_flags(&e)))
        }
        Some(e) => unicast(ctx, cfg, vni, e.remote, ifindex),
        None => {
            bum_budget(ifindex, port.bum_pps)?;
            flood(ctx, cfg, vni, ifindex)
        }
    }
}

/// A port's budget of broadcast, multicast and unknown unicast frames:
/// `pps` per one-second window (0: no limit). Across CPUs the count is
/// atomic; a window that two CPUs restart at once may let a few more by.
#[inline(always)]
fn bum_budget(ifindex: u32, pps: u32) -> Result<(), Counter> {
    if pps == 0 {
        return Ok(());
    }
    // SAFETY: a plain helper call.
    let now = unsafe { bpf_ktime_get_coarse_ns() };
    let Some(w) = BUM.get_ptr_mut(&ifindex) else {
        let w = BumWindow {
            start_ns: now,
            count: 1,
        };
        let _ = BUM.insert(&ifindex, &w, 0);
        return Ok(());
    };
    // SAFETY: a valid map value; `count` is updated atomically.
    unsafe {
        if now.wrapping_sub((*w).start_ns) >= 1_000_000_000 {
            (*w).start_ns = now;
            (*w).count = 1;
            return Ok(());
        }
        let n = core::ptr::addr_of_mut!((*w).count);
        if core::ptr::read_volatile(n) >= u64::from(pps) {
            return Err(Counter::DropBumRate);
        }
        atomic_xadd::<u64, u64, { AtomicOrdering::Relaxed }>(n, 1);
    }
    Ok(())
}

/// Outer header fields for this frame, destination still unset.
#[inline(always)]
fn outer_for(ctx: &TcContext, cfg: &Config, vni: u32, proto: u16) -> Outer {
    // SAFETY: helper calls on our own skb.
    let hash = unsafe { bpf_get_hash_recalc(ctx.skb.skb) };
    let ds = match proto {
        ETH_P_IP => ctx.load::<u8>(ETH_HLEN + 1).unwrap_or(0),
        ETH_P_IPV6 => {
            let b: [u8; 2] = ctx.load(ETH_HLEN).unwrap_or([0; 2]);
            (b[0] << 4) | (b[1] >> 4)
        }
        _ => 0,
    };
    Outer {
        src_ip: cfg.local_ip,
        src_port: flow_src_port(hash, cfg.port_lo, cfg.port_hi),
        dst_port: cfg.dstport,
        vni,
        ttl: cfg.ttl,
        tos: ecn_encap(ds),
        ip_id: unsafe { bpf_get_prandom_u32() } as u16,
        ..Outer::default()
    }
}

/// Inserts room for the outer headers and writes them; `tags` bytes of
/// VLAN tags are in the inner Ethernet header (see `vlan`). IP frames use
/// `bpf_skb_adjust_room` with the encap flags, so GSO/TSO segments the
/// tunnel correctly; other frames (ARP...) cannot, and use
/// `bpf_skb_change_head` (they are never GSO).
#[inline(always)]
fn push_outer(ctx: &TcContext, is_ip: bool, tags: usize, hdr: &OuterHdr) -> Result<(), Counter> {
    let hdr = hdr.bytes();
    if is_ip {
        match tags {
            0 => push::<ETH_HLEN>(ctx, hdr),
            4 => push::<{ ETH_HLEN + 4 }>(ctx, hdr),
            _ => push::<{ ETH_HLEN + 8 }>(ctx, hdr),
        }?;
    } else {
        // SAFETY: helper call on our own skb.
        if unsafe { bpf_skb_change_head(ctx.skb.skb, ENCAP_LEN as u32, 0) } != 0 {
            return Err(Counter::DropEncapFailed);
        }
        ctx.store(0, hdr, 0).map_err(|_| Counter::DropEncapFailed)?;
    }
    Ok(())
}

/// [`push_outer`] for an IP frame whose inner Ethernet header (with its
/// tags) is `L2` bytes long.
#[inline(always)]
fn push<const L2: usize>(ctx: &TcContext, hdr: &[u8; ENCAP_LEN]) -> Result<(), Counter> {
    // The room goes in after the inner Ethernet header (the skb's MAC
    // header length, which `vlan::push_inside` keeps right): the header
    // then moves behind it and the outer headers take its place, written
    // in place (the linear part holds the room and the header after
    // adjust_room; helpers if it ever does not).
    let flags = ENCAP_FLAGS | ((L2 as u64 & 0xff) << 56);
    ctx.adjust_room(ENCAP_LEN as i32, BPF_ADJ_ROOM_MAC, flags)
        .map_err(|_| Counter::DropEncapFailed)?;
    // SAFETY: bounds checked by ptr_at_mut (the check on the inner
    // header's new place covers everything before it); the ranges do not
    // overlap; no helper call in between.
    match unsafe { ptr_at_mut::<_, [u8; L2]>(ctx, ENCAP_LEN) } {
        Some(q) => unsafe {
            let q = q as *mut u8;
            let p = q.sub(ENCAP_LEN);
            core::ptr::copy_nonoverlapping(p, q, L2);
            core::ptr::copy_nonoverlapping(hdr.as_ptr(), p, ENCAP_LEN);
        },
        None => {
            let inner_eth: [u8; L2] = ctx.load(0).map_err(|_| Counter::DropEncapFailed)?;
            ctx.store(0, hdr, 0).map_err(|_| Counter::DropEncapFailed)?;
            ctx.store(ENCAP_LEN, &inner_eth, 0)
                .map_err(|_| Counter::DropEncapFailed)?;
        }
    }
    Ok(())
}

#[inline(always)]
fn skb_proto(ctx: &TcContext) -> u16 {
    // SAFETY: reading a field of our skb context.
    u16::from_be(unsafe { (*ctx.skb.skb).protocol } as u16)
}

/// Whether the outer IPv4 total length (inner frame + 36, + `tag` bytes of
/// VLAN tag still to go in) would exceed 16 bits: only a BIG TCP
/// super-packet can be that long.
#[inline(always)]
fn outer_len_overflows(ctx: &TcContext, tag: usize) -> bool {
    ctx.len() as usize + tag + ENCAP_LEN - ETH_HLEN > 0xffff
}

/// Encapsulates to one remote VTEP and sends it out of the uplink.
#[inline(always)]
fn unicast(
    ctx: &TcContext,
    cfg: &Config,
    vni: u32,
    remote: VtepAddr,
    in_ifindex: u32,
) -> Result<i32, Counter> {
    let proto = skb_proto(ctx);
    let tag = if vlan::present(ctx) { 4 } else { 0 };
    if pmtu::too_big(ctx, cfg, proto, tag) {
        return pmtu::reject(ctx, cfg, proto, in_ifindex);
    }
    // A super-packet (BIG TCP) whose outer lengths would not fit 16 bits.
    if outer_len_overflows(ctx, tag) {
        return Err(Counter::DropTooBig);
    }
    let is_ip = proto == ETH_P_IP || proto == ETH_P_IPV6;
    // SAFETY: copied out at once.
    let nh = unsafe { NEIGH.get(&remote) }.copied();
    if nh.is_none() && !is_ip {
        return Err(Counter::DropNoNeigh);
    }
    let mut o = outer_for(ctx, cfg, vni, proto);
    o.dst_ip = vtep_as_v4(&remote).ok_or(Counter::DropFamily)?;
    if let Some(nh) = nh {
        o.src_mac = nh.smac;
        o.dst_mac = nh.dmac;
    }
    let tags = vlan::push_inside(ctx)?;
    let inner_len = ctx.len() as u16;
    push_outer(ctx, is_ip, tags, &outer_hdr(&o, inner_len))?;
    count(Counter::TxEncap);
    // SAFETY: plain helper calls.
    let rc = unsafe {
        match nh {
            Some(nh) => bpf_redirect(nh.ifindex, 0),
            // Not known yet: the kernel routes, resolves and queues (IP
            // frames only: it needs skb->protocol IPv4, which the outer
            // header now is).
            None => bpf_redirect_neigh(cfg.uplink_ifindex, core::ptr::null_mut(), 0, 0),
        }
    };
    Ok(rc as i32)
}

/// Broadcast, multicast or unknown unicast: a copy to every other local
/// port of the VNI and one encapsulated copy to every default remote.
#[inline(always)]
fn flood(ctx: &TcContext, cfg: &Config, vni: u32, in_ifindex: u32) -> Result<i32, Counter> {
    // SAFETY: map value read in place.
    let Some(v) = (unsafe { VNIS.get(vni) }) else {
        return Err(Counter::DropNoFloodTarget);
    };
    let n_ports = v.n_ports as usize;
    let n_remotes = v.n_remotes as usize;
    let group = v.group;
    let has_group = !vtep_is_none(&group);
    // Other local ports: the ingress port is one of the VNI's ports.
    if n_ports <= 1 && n_remotes == 0 && !has_group {
        return Err(Counter::DropNoFloodTarget);
    }
    // No state is carried from one iteration to the next (counters are
    // bumped in place), so the verifier prunes each iteration's paths.
    for i in 0..MAX_PORTS {
        if i >= n_ports {
            break;
        }
        let p = v.ports[i];
        if p != in_ifindex && ctx.clone_redirect(p, 0).is_ok() {
            count(Counter::TxLocalFloodCopy);
        }
    }
    if n_remotes == 0 && !has_group {
        return Ok(TC_ACT_SHOT);
    }
    let proto = skb_proto(ctx);
    let tag = if vlan::present(ctx) { 4 } else { 0 };
    if pmtu::too_big(ctx, cfg, proto, tag) || outer_len_overflows(ctx, tag) {
        // Local copies went out; the encapsulated ones cannot.
        count(Counter::DropTooBig);
        return Ok(TC_ACT_SHOT);
    }
    let is_ip = proto == ETH_P_IP || proto == ETH_P_IPV6;
    let mut o = outer_for(ctx, cfg, vni, proto);
    let tags = vlan::push_inside(ctx)?;
    let inner_len = ctx.len() as u16;
    push_outer(ctx, is_ip, tags, &outer_hdr(&o, inner_len))?;

    // Group mode: one copy to the group, as the kernel's vxlan does.
    if has_group {
        let mut g = o;
        g.dst_ip = vtep_as_v4(&group).unwrap_or_default();
        g.dst_mac = multicast_mac(&g.dst_ip);
        g.src_mac = cfg.uplink_mac;
        g.ttl = cfg.mcast_ttl;
        if ctx.store(0, outer_hdr(&g, inner_len).bytes(), 0).is_ok()
            && ctx.clone_redirect(cfg.uplink_ifindex, 0).is_ok()
        {
            count(Counter::TxGroupCopy);
        }
    }

    for i in 0..MAX_REMOTES {
        if i >= n_remotes {
            break;
        }
        let dst = v.remotes[i];
        // SAFETY: copied out at once.
        let Some(nh) = (unsafe { NEIGH.get(&dst) }).copied() else {
            count(Counter::DropNoNeigh);
            continue;
        };
        // Rebuilt, not patched: nothing on the stack carries over to the
        // next iteration, so the verifier can prune.
        o.dst_ip = vtep_as_v4(&dst).unwrap_or_default();
        o.src_mac = nh.smac;
        o.dst_mac = nh.dmac;
        if ctx.store(0, outer_hdr(&o, inner_len).bytes(), 0).is_err() {
            count(Counter::DropEncapFailed);
            continue;
        }
        if ctx.clone_redirect(nh.ifindex, 0).is_ok() {
            count(Counter::TxFloodCopy);
        }
    }
    Ok(TC_ACT_SHOT)
}
