//! Port TC ingress: learn local MACs, switch local-to-local, encapsulate to
//! remote VTEPs, flood broadcast and unknown frames. A tenant's VLAN tag
//! goes inside the tunnel (see `vlan`); a bad source MAC is refused.
//!
//! Over IPv4 the outer UDP checksum is zero, as the kernel's vxlan sends
//! by default. Over IPv6 it is mandatory, and summed here over the frame
//! as it will be on the wire ([`csum::wire_sum`]); GSO super-packets
//! cannot have it (BPF cannot ask GSO for outer UDP checksums), so ports
//! of IPv6 VNIs get the loader's segmentation guard and a super-packet
//! that still arrives is dropped (`drop_gso_ipv6`).
//!
//! [`unicast`] and [`flood`] are BPF subprograms: each has its own stack
//! frame below [`run`]'s, so the call chain stays within the verifier's
//! 512 bytes.

use core::intrinsics::{AtomicOrdering, atomic_xadd};

use aya_ebpf::{
    bindings::{
        BPF_F_ADJ_ROOM_ENCAP_L2_ETH, BPF_F_ADJ_ROOM_ENCAP_L3_IPV4, BPF_F_ADJ_ROOM_ENCAP_L3_IPV6,
        BPF_F_ADJ_ROOM_ENCAP_L4_UDP, BPF_F_ADJ_ROOM_FIXED_GSO, TC_ACT_SHOT, TC_ACT_UNSPEC,
        bpf_adj_room_mode::BPF_ADJ_ROOM_MAC,
    },
    helpers::{
        bpf_get_prandom_u32, bpf_ktime_get_coarse_ns, bpf_redirect, bpf_redirect_neigh,
        bpf_skb_change_head,
    },
    programs::TcContext,
};
use network_types::eth::EthHdr;
use vxlan_common::{
    BumWindow, CFG_F_ARP_SUPPRESS, CFG_F_LEARNING, CFG_F_PORT_LEARN, CFG_F_SNOOP, Config, Counter,
    MAX_PORTS, MAX_REMOTES, VNI_F_IPV6, VTEP_NONE, VtepAddr, vtep_as_v4, vtep_is_none, vtep_is_v4,
    wire::{
        ENCAP_LEN, ETH_HLEN, ETH_P_IP, ETH_P_IPV6, IPPROTO_UDP, Outer, ecn_encap, flow_src_port,
        is_multicast_mac, is_zero_mac, multicast_mac, outer_hdr,
    },
    wire6::{ENCAP6_LEN, flow_label, multicast_mac6},
};

use crate::{
    arp, csum,
    deliver::redirect_port,
    fdb, flow,
    maps::{BUM, NEIGH, OUTER, OuterBuf, PORTS, VNIS, config},
    pkt::{ptr_at, ptr_at_mut},
    pmtu,
    stats::count,
    vlan,
};

/// `bpf_skb_adjust_room` flags for VXLAN encapsulation, without the outer
/// L3 family and the inner MAC header length
/// (`BPF_F_ADJ_ROOM_ENCAP_L2(len)`, see [`push`]).
const ENCAP_FLAGS: u64 = BPF_F_ADJ_ROOM_FIXED_GSO as u64
    | BPF_F_ADJ_ROOM_ENCAP_L4_UDP as u64
    | BPF_F_ADJ_ROOM_ENCAP_L2_ETH as u64;

/// The port program. A subprogram of its own (not inlined into the entry
/// point): the ICMP replies the entry point builds when it asks for them
/// (see `pmtu`) are then its siblings, not nested below its frame.
#[inline(never)]
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
    // In place when the linear data holds it (it always should).
    // SAFETY: bounds checked by ptr_at; copied out at once.
    let eth: EthHdr = match unsafe { ptr_at::<_, EthHdr>(ctx, 0) } {
        Some(p) => unsafe { *p },
        None => ctx.load(0).map_err(|_| Counter::DropTxTruncated)?,
    };
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
        Some(e) => {
            let remote = e.remote;
            let job = prepare(ctx, cfg, vni, !vtep_is_v4(&remote))?;
            unicast(ctx, &job, &remote)
        }
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

/// Outer header fields for a frame of `job`, destination still unset
/// (its network header is after the inner Ethernet header and tags), and
/// the frame's flow hash (for an IPv6 flow label: from the same hash as
/// the source port).
#[inline(always)]
fn outer_for(ctx: &TcContext, cfg: &Config, job: &Job, buf: &mut OuterBuf) -> (Outer, u32) {
    let l3 = ETH_HLEN + (job.tags as usize & 0xf);
    let hash = flow::hash(ctx, l3, job.proto);
    // The DS field, in place when the linear data holds it.
    // SAFETY: bounds checked by ptr_at; copied out at once.
    let w = match unsafe { ptr_at::<_, [u8; 2]>(ctx, l3) } {
        Some(p) => unsafe { *p },
        None => ctx.load::<[u8; 2]>(l3).unwrap_or([0; 2]),
    };
    let ds = match job.proto {
        ETH_P_IP => w[1],
        ETH_P_IPV6 => (w[0] << 4) | (w[1] >> 4),
        _ => 0,
    };
    let o = Outer {
        src_ip: cfg.local_ip,
        src_port: flow_src_port(hash, cfg.port_lo, cfg.port_hi),
        dst_port: cfg.dstport,
        vni: job.vni,
        ttl: if job.v6 && cfg.hop_limit != 0 {
            cfg.hop_limit
        } else {
            cfg.ttl
        },
        tos: ecn_encap(ds),
        ip_id: next_ip_id(buf),
        ..Outer::default()
    };
    (o, hash)
}

/// The outer IPv4 identification of the next frame from this CPU. The
/// outer header does not set DF, so the identification must differ
/// between frames in flight to one receiver (RFC 6864): a per-CPU
/// counter does, and costs no helper call per frame (a random number
/// did). It starts at a random value, so that the CPUs' sequences do not
/// coincide.
#[inline(always)]
fn next_ip_id(buf: &mut OuterBuf) -> u16 {
    let mut n = buf.ip_id;
    if n >> 16 == 0 {
        // SAFETY: a plain helper call (once per CPU).
        n = unsafe { bpf_get_prandom_u32() };
    }
    let id = n as u16;
    buf.ip_id = 0x1_0000 | u32::from(id.wrapping_add(1));
    id
}

/// Inserts room for the `N` bytes of outer headers (IPv4: 50, IPv6: 70)
/// and writes them; `tags` bytes of VLAN tags are in the inner Ethernet
/// header (see `vlan`). IP frames use `bpf_skb_adjust_room` with the encap
/// flags, so GSO/TSO segments the tunnel correctly; other frames (ARP...)
/// cannot, and use `bpf_skb_change_head` (they are never GSO).
#[inline(always)]
fn push_outer<const N: usize>(
    ctx: &TcContext,
    is_ip: bool,
    tags: usize,
    hdr: &[u8; N],
) -> Result<(), Counter> {
    if is_ip {
        match tags {
            0 => push::<ETH_HLEN, N>(ctx, hdr),
            4 => push::<{ ETH_HLEN + 4 }, N>(ctx, hdr),
            _ => push::<{ ETH_HLEN + 8 }, N>(ctx, hdr),
        }?;
    } else {
        // SAFETY: helper call on our own skb.
        if unsafe { bpf_skb_change_head(ctx.skb.skb, N as u32, 0) } != 0 {
            return Err(Counter::DropEncapFailed);
        }
        ctx.store(0, hdr, 0).map_err(|_| Counter::DropEncapFailed)?;
    }
    Ok(())
}

/// [`push_outer`] for an IP frame whose inner Ethernet header (with its
/// tags) is `L2` bytes long.
#[inline(always)]
fn push<const L2: usize, const N: usize>(ctx: &TcContext, hdr: &[u8; N]) -> Result<(), Counter> {
    // The room goes in after the inner Ethernet header (the skb's MAC
    // header length, which `vlan::push_inside` keeps right): the header
    // then moves behind it and the outer headers take its place, written
    // in place (the linear part holds the room and the header after
    // adjust_room; helpers if it ever does not).
    let l3 = if N == ENCAP6_LEN {
        BPF_F_ADJ_ROOM_ENCAP_L3_IPV6
    } else {
        BPF_F_ADJ_ROOM_ENCAP_L3_IPV4
    };
    let flags = ENCAP_FLAGS | l3 as u64 | ((L2 as u64 & 0xff) << 56);
    ctx.adjust_room(N as i32, BPF_ADJ_ROOM_MAC, flags)
        .map_err(|_| Counter::DropEncapFailed)?;
    // SAFETY: bounds checked by ptr_at_mut (the check on the inner
    // header's new place covers everything before it); the ranges do not
    // overlap; no helper call in between.
    match unsafe { ptr_at_mut::<_, [u8; L2]>(ctx, N) } {
        Some(q) => unsafe {
            let q = q as *mut u8;
            let p = q.sub(N);
            core::ptr::copy_nonoverlapping(p, q, L2);
            core::ptr::copy_nonoverlapping(hdr.as_ptr(), p, N);
        },
        None => {
            let inner_eth: [u8; L2] = ctx.load(0).map_err(|_| Counter::DropEncapFailed)?;
            ctx.store(0, hdr, 0).map_err(|_| Counter::DropEncapFailed)?;
            ctx.store(N, &inner_eth, 0)
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

/// Whether the frame is a GSO super-packet.
#[inline(always)]
fn is_gso(ctx: &TcContext) -> bool {
    // SAFETY: reading a field of our skb context.
    unsafe { (*ctx.skb.skb).gso_size != 0 }
}

/// A frame ready for its outer headers, as [`prepare`] leaves it for
/// [`unicast`] and [`flood_remotes`] (passed by reference: a BPF call
/// takes at most five arguments, a returned `Result`'s pointer among
/// them).
#[repr(C)]
struct Job {
    vni: u32,
    /// Bytes of VLAN tags now in the inner Ethernet header.
    tags: u32,
    /// Ethertype of the frame before encapsulation.
    proto: u16,
    /// Over IPv6: the sum of the inner frame for the outer UDP checksum
    /// (network order, folded).
    inner_sum: u16,
    v6: bool,
}

/// Checks that the frame can go through the tunnel of family `v6`, then
/// moves its VLAN tags inside and, over IPv6, sums it. A frame too big
/// for the tunnel is refused with the signal of `pmtu::too_big_signal`.
///
/// Inlined into [`run`]: its subprogram call (the checksum) is a sibling
/// of [`unicast`] and [`flood_remotes`] below `run`'s frame, never nested
/// in theirs, so no call chain exceeds the verifier's 512 bytes of stack.
#[inline(always)]
fn prepare(ctx: &TcContext, cfg: &Config, vni: u32, v6: bool) -> Result<Job, Counter> {
    if v6 && is_gso(ctx) {
        return Err(Counter::DropGso6);
    }
    let proto = skb_proto(ctx);
    let tagged = vlan::present(ctx);
    let tag = if tagged { 4 } else { 0 };
    let encap = if v6 { ENCAP6_LEN } else { ENCAP_LEN };
    if pmtu::too_big(ctx, cfg, proto, tag, encap) {
        return Err(pmtu::too_big_signal(proto));
    }
    // A super-packet (BIG TCP) whose outer lengths would not fit 16 bits.
    if outer_len_overflows(ctx, tag) {
        return Err(Counter::DropTooBig);
    }
    let tags = vlan::push_inside(ctx, tagged)?;
    let inner_sum = if v6 {
        let s = csum::wire_sum(ctx, (ETH_HLEN + tags) as u32);
        if s < 0 {
            return Err(Counter::DropEncapFailed);
        }
        (s as u16).swap_bytes()
    } else {
        0
    };
    Ok(Job {
        vni,
        tags: tags as u32,
        proto,
        inner_sum,
        v6,
    })
}

/// Encapsulates to one remote VTEP and sends it out of the uplink. The
/// remote's family is the VNI's (userspace keeps them one).
#[inline(never)]
fn unicast(ctx: &TcContext, job: &Job, remote: &VtepAddr) -> Result<i32, Counter> {
    let cfg = config().ok_or(Counter::DropEncapFailed)?;
    let remote = *remote;
    let is_ip = job.proto == ETH_P_IP || job.proto == ETH_P_IPV6;
    // SAFETY: copied out at once.
    let nh = unsafe { NEIGH.get(&remote) }.copied();
    if nh.is_none() && !is_ip {
        return Err(Counter::DropNoNeigh);
    }
    let buf = OUTER.get_ptr_mut(0).ok_or(Counter::DropEncapFailed)?;
    // SAFETY: this CPU's scratch buffer, a valid map value; nothing else
    // runs on this CPU while the program does.
    let buf = unsafe { &mut *buf };
    let (mut o, hash) = outer_for(ctx, cfg, job, buf);
    if let Some(nh) = nh {
        o.src_mac = nh.smac;
        o.dst_mac = nh.dmac;
    }
    let tags = job.tags as usize;
    let inner_len = ctx.len() as u16;
    if job.v6 {
        let sum = buf.v6.fill(
            &o,
            &cfg.local_ip6,
            flow_label(hash),
            inner_len,
            job.inner_sum,
        );
        buf.v6.set_dst(&o.dst_mac, &remote, sum);
        push_outer(ctx, is_ip, tags, buf.v6.bytes())?;
        count(Counter::TxEncap6);
    } else {
        o.dst_ip = vtep_as_v4(&remote).ok_or(Counter::DropFamily)?;
        buf.v4 = outer_hdr(&o, inner_len);
        push_outer(ctx, is_ip, tags, buf.v4.bytes())?;
    }
    count(Counter::TxEncap);
    // SAFETY: plain helper calls.
    let rc = unsafe {
        match nh {
            Some(nh) => bpf_redirect(nh.ifindex, 0),
            // Not known yet: the kernel routes, resolves (ARP or ND) and
            // queues (IP frames only: it needs skb->protocol IPv4 or IPv6,
            // which the outer header now is).
            None => bpf_redirect_neigh(cfg.uplink_ifindex, core::ptr::null_mut(), 0, 0),
        }
    };
    Ok(rc as i32)
}

/// Broadcast, multicast or unknown unicast: a copy to every other local
/// port of the VNI and one encapsulated copy to every default remote (or
/// one to the VNI's group).
#[inline(always)]
fn flood(ctx: &TcContext, cfg: &Config, vni: u32, in_ifindex: u32) -> Result<i32, Counter> {
    // SAFETY: map value read in place.
    let Some(v) = (unsafe { VNIS.get(vni) }) else {
        return Err(Counter::DropNoFloodTarget);
    };
    let n_ports = v.n_ports as usize;
    let n_remotes = v.n_remotes as usize;
    let has_group = !vtep_is_none(&v.group);
    let v6 = v.flags & VNI_F_IPV6 != 0;
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
    // Local copies went out; the encapsulated ones may not.
    let job = match prepare(ctx, cfg, vni, v6) {
        Ok(job) => job,
        // Too big: no ICMP error for a flood, as the kernel's vxlan.
        Err(Counter::TxIcmpFragNeeded | Counter::TxIcmp6TooBig) => {
            count(Counter::DropTooBig);
            return Ok(TC_ACT_SHOT);
        }
        Err(c) => {
            count(c);
            return Ok(TC_ACT_SHOT);
        }
    };
    flood_remotes(ctx, &job)
}

/// The encapsulated copies of a flood: one to the VNI's group, if it has
/// one, and one to each default remote.
#[inline(always)]
fn flood_remotes(ctx: &TcContext, job: &Job) -> Result<i32, Counter> {
    if job.v6 {
        flood_remotes6(ctx, job)
    } else {
        flood_remotes4(ctx, job)
    }
}

/// [`flood_remotes`] over IPv4.
#[inline(never)]
fn flood_remotes4(ctx: &TcContext, job: &Job) -> Result<i32, Counter> {
    let cfg = config().ok_or(Counter::DropEncapFailed)?;
    // SAFETY: map value read in place.
    let Some(v) = (unsafe { VNIS.get(job.vni) }) else {
        return Err(Counter::DropNoFloodTarget);
    };
    let is_ip = job.proto == ETH_P_IP || job.proto == ETH_P_IPV6;
    let buf = OUTER.get_ptr_mut(0).ok_or(Counter::DropEncapFailed)?;
    // SAFETY: as in `unicast`.
    let buf = unsafe { &mut *buf };
    let (mut o, _) = outer_for(ctx, cfg, job, buf);
    let inner_len = ctx.len() as u16;
    buf.v4 = outer_hdr(&o, inner_len);
    push_outer(ctx, is_ip, job.tags as usize, buf.v4.bytes())?;

    // Group mode: one copy to the group, as the kernel's vxlan does.
    if let Some(group) = vtep_as_v4(&v.group)
        && group != [0; 4]
    {
        let mut g = o;
        g.dst_ip = group;
        g.dst_mac = multicast_mac(&group);
        g.src_mac = cfg.uplink_mac;
        g.ttl = cfg.mcast_ttl;
        buf.v4 = outer_hdr(&g, inner_len);
        if ctx.store(0, buf.v4.bytes(), 0).is_ok()
            && ctx.clone_redirect(cfg.uplink_ifindex, 0).is_ok()
        {
            count(Counter::TxGroupCopy);
        }
    }

    let n_remotes = v.n_remotes as usize;
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
        buf.v4 = outer_hdr(&o, inner_len);
        if ctx.store(0, buf.v4.bytes(), 0).is_err() {
            count(Counter::DropEncapFailed);
            continue;
        }
        if ctx.clone_redirect(nh.ifindex, 0).is_ok() {
            count(Counter::TxFloodCopy);
        }
    }
    Ok(TC_ACT_SHOT)
}

/// [`flood_remotes`] over IPv6: the inner frame was summed once
/// ([`Job::inner_sum`]); each copy's checksum adds its own pseudo-header.
#[inline(never)]
fn flood_remotes6(ctx: &TcContext, job: &Job) -> Result<i32, Counter> {
    let cfg = config().ok_or(Counter::DropEncapFailed)?;
    // SAFETY: map value read in place.
    let Some(v) = (unsafe { VNIS.get(job.vni) }) else {
        return Err(Counter::DropNoFloodTarget);
    };
    let is_ip = job.proto == ETH_P_IP || job.proto == ETH_P_IPV6;
    let buf = OUTER.get_ptr_mut(0).ok_or(Counter::DropEncapFailed)?;
    // SAFETY: as in `unicast`.
    let buf = unsafe { &mut *buf };
    let (mut o, hash) = outer_for(ctx, cfg, job, buf);
    let inner_len = ctx.len() as u16;

    // The room, with the group's copy in it (or a first header that every
    // remote's copy overwrites).
    let has_group = !vtep_is_none(&v.group);
    o.src_mac = cfg.uplink_mac;
    let ttl = o.ttl;
    o.ttl = cfg.mcast_ttl;
    let sum = buf.v6.fill(
        &o,
        &cfg.local_ip6,
        flow_label(hash),
        inner_len,
        job.inner_sum,
    );
    buf.v6.set_dst(&multicast_mac6(&v.group), &v.group, sum);
    push_outer(ctx, is_ip, job.tags as usize, buf.v6.bytes())?;
    if has_group && ctx.clone_redirect(cfg.uplink_ifindex, 0).is_ok() {
        count(Counter::TxGroupCopy);
        count(Counter::TxEncap6);
    }
    // Unicast copies: the hop limit for unicast, each copy's source MAC,
    // destination and checksum.
    buf.v6.ip_nh_hop = ((u16::from(IPPROTO_UDP) << 8) | u16::from(ttl)).to_be();

    let n_remotes = v.n_remotes as usize;
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
        buf.v6.eth_src = nh.smac;
        buf.v6.set_dst(&nh.dmac, &dst, sum);
        if ctx.store(0, buf.v6.bytes(), 0).is_err() {
            count(Counter::DropEncapFailed);
            continue;
        }
        if ctx.clone_redirect(nh.ifindex, 0).is_ok() {
            count(Counter::TxFloodCopy);
            count(Counter::TxEncap6);
        }
    }
    Ok(TC_ACT_SHOT)
}
