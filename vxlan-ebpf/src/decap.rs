//! Uplink XDP: recognise VXLAN for this VTEP, learn, decapsulate.

use core::mem::size_of;

use aya_ebpf::{
    bindings::{BPF_NOEXIST, xdp_action::XDP_PASS},
    helpers::{bpf_ktime_get_ns, bpf_xdp_adjust_head, bpf_xdp_adjust_meta, bpf_xdp_adjust_tail},
    maps::lpm_trie::Key,
    programs::XdpContext,
};
use network_types::{eth::EthHdr, ip::Ipv4Hdr, udp::UdpHdr};
use vxlan_common::{
    CFG_F_LEARNING, Counter, META_MAGIC, NeighEntry, VNI_F_ANY_SENDER, XdpMeta, allow_data,
    wire::{
        ENCAP_LEN, ETH_HLEN, ETH_P_IP, IPPROTO_UDP, IPV4_HLEN, OFF_INNER, OFF_IP, OFF_UDP,
        OFF_VXLAN, UDP_HLEN, VXLAN_FLAG_I, VXLAN_HLEN, ipv4_checksum, is_multicast_ip,
        is_multicast_mac, vxlan_vni,
    },
};

use crate::{
    fdb,
    maps::{ALLOWED, GROUPS, NEIGH, PORTS, VNIS, config},
    stats::count,
};

/// Returns a pointer to a `T` at `off` bytes into the frame, if it fits.
///
/// # Safety
/// The pointer is valid until the next helper call that changes the frame
/// (`bpf_xdp_adjust_*`); callers read it before such calls.
#[inline(always)]
unsafe fn ptr_at<T>(ctx: &XdpContext, off: usize) -> Option<*const T> {
    let start = ctx.data();
    if start + off + size_of::<T>() > ctx.data_end() {
        return None;
    }
    Some((start + off) as *const T)
}

#[inline(always)]
fn pass() -> Result<u32, Counter> {
    count(Counter::RxPass);
    Ok(XDP_PASS)
}

pub fn run(ctx: &XdpContext) -> Result<u32, Counter> {
    let Some(cfg) = config() else {
        return Ok(XDP_PASS);
    };

    // Outer Ethernet + IPv4 + UDP: decide whether the frame is ours.
    // SAFETY: bounds checked by ptr_at; read before any adjust call.
    let Some(eth) = (unsafe { ptr_at::<EthHdr>(ctx, 0) }) else {
        return pass();
    };
    let eth = unsafe { &*eth };
    if u16::from_be(eth.ether_type) != ETH_P_IP {
        return pass();
    }
    let Some(ip) = (unsafe { ptr_at::<Ipv4Hdr>(ctx, OFF_IP) }) else {
        return pass();
    };
    let ip = unsafe { &*ip };
    if ip.proto != IPPROTO_UDP {
        return pass();
    }
    if ip.dst_addr != cfg.local_ip
        && !(is_multicast_ip(&ip.dst_addr) && GROUPS.get_ptr(ip.dst_addr).is_some())
    {
        return pass();
    }
    // A fragment is the kernel's to reassemble: never decapsulate one.
    if u16::from_be_bytes(ip.frags) & 0x3fff != 0 {
        return pass();
    }
    let ihl = usize::from(ip.vihl & 0x0f);
    if ip.vihl >> 4 != 4 || ihl < 5 {
        return Err(Counter::DropIpMalformed);
    }
    if ihl > 5 {
        // Only ours if it is for our port; then dropped (see DropIpOptions).
        // SAFETY: bounds checked by ptr_at (variable offset, at most 74).
        let Some(udp) = (unsafe { ptr_at::<UdpHdr>(ctx, ETH_HLEN + ihl * 4) }) else {
            return pass();
        };
        if u16::from_be_bytes(unsafe { (*udp).dst }) != cfg.dstport {
            return pass();
        }
        return Err(Counter::DropIpOptions);
    }
    let Some(udp) = (unsafe { ptr_at::<UdpHdr>(ctx, OFF_UDP) }) else {
        return pass();
    };
    let udp = unsafe { &*udp };
    if u16::from_be_bytes(udp.dst) != cfg.dstport {
        return pass();
    }

    // Outer IPv4/UDP for our port: check it as the kernel's IP layer would.
    let mut hdr = [0u8; IPV4_HLEN];
    // SAFETY: the 20 bytes were bounds checked as part of `ip`.
    unsafe { core::ptr::copy_nonoverlapping(ip as *const Ipv4Hdr as *const u8, hdr.as_mut_ptr(), IPV4_HLEN) };
    if ipv4_checksum(&hdr) != ip.check {
        return Err(Counter::DropIpChecksum);
    }
    let frame_len = ctx.data_end() - ctx.data();
    let tot_len = usize::from(u16::from_be_bytes(ip.tot_len));
    if tot_len > frame_len - ETH_HLEN || tot_len < IPV4_HLEN + UDP_HLEN {
        return Err(Counter::DropIpLength);
    }
    if ip.ttl == 0 {
        return Err(Counter::DropIpTtl);
    }
    if usize::from(u16::from_be_bytes(udp.len)) != tot_len - IPV4_HLEN {
        return Err(Counter::DropUdpLength);
    }
    // Ethernet padding after the IPv4 packet is not part of the inner frame.
    let pad = frame_len - ETH_HLEN - tot_len;
    let udp_payload = tot_len - IPV4_HLEN - UDP_HLEN;
    if udp_payload < VXLAN_HLEN {
        return Err(Counter::DropVxlanTruncated);
    }
    if udp_payload < VXLAN_HLEN + ETH_HLEN {
        return Err(Counter::DropInnerTruncated);
    }

    // VXLAN for us from here on: anything wrong is dropped and counted.
    let Some(vx) = (unsafe { ptr_at::<[u8; VXLAN_HLEN]>(ctx, OFF_VXLAN) }) else {
        return Err(Counter::DropVxlanTruncated);
    };
    let vx = unsafe { &*vx };
    if vx[0] & VXLAN_FLAG_I == 0 {
        return Err(Counter::DropVxlanFlags);
    }
    // Reserved bits are ignored, as RFC 7348 says receivers must.
    let vni = vxlan_vni(vx);
    // SAFETY: copied out at once.
    let Some(vni_flags) = (unsafe { VNIS.get(vni) }).map(|v| v.flags) else {
        return Err(Counter::DropUnknownVni);
    };
    if vni_flags & VNI_F_ANY_SENDER == 0 {
        let key = Key::new(32 + 32, allow_data(vni, ip.src_addr));
        if ALLOWED.get(&key).is_none() {
            return Err(Counter::DropSpoofed);
        }
    }
    let Some(inner) = (unsafe { ptr_at::<EthHdr>(ctx, OFF_INNER) }) else {
        return Err(Counter::DropInnerTruncated);
    };
    let inner = unsafe { &*inner };
    let (src, dst) = (inner.src_addr, inner.dst_addr);

    if cfg.flags & CFG_F_LEARNING != 0 {
        fdb::learn(cfg, vni, &src, ip.src_addr, 0, unsafe { bpf_ktime_get_ns() });
        // The way back to this VTEP, unless userspace resolved it already.
        if NEIGH.get_ptr(ip.src_addr).is_none() {
            let n = NeighEntry {
                dmac: eth.src_addr,
                smac: cfg.uplink_mac,
                ifindex: ctx.ingress_ifindex() as u32,
            };
            let _ = NEIGH.insert(ip.src_addr, n, BPF_NOEXIST as u64);
        }
    }

    let (ifindex, flags) = if is_multicast_mac(&dst) {
        (0, 0)
    } else {
        match fdb::lookup(vni, &dst) {
            Some(e) if e.is_local() => {
                // SAFETY: copied out at once.
                let flags = unsafe { PORTS.get(e.ifindex) }.map_or(0, |p| p.flags);
                (e.ifindex, flags)
            }
            // The destination lives behind a remote VTEP: never bounce it.
            Some(_) => return Err(Counter::DropRxHairpin),
            None => (0, 0),
        }
    };

    // SAFETY: plain helper calls on our own context.
    if pad > 0 && unsafe { bpf_xdp_adjust_tail(ctx.ctx, -(pad as i32)) } != 0 {
        return Err(Counter::DropDecapFailed);
    }
    if unsafe { bpf_xdp_adjust_head(ctx.ctx, ENCAP_LEN as i32) } != 0 {
        return Err(Counter::DropDecapFailed);
    }
    if unsafe { bpf_xdp_adjust_meta(ctx.ctx, -(size_of::<XdpMeta>() as i32)) } != 0 {
        return Err(Counter::DropDecapFailed);
    }
    let meta = ctx.metadata();
    if meta + size_of::<XdpMeta>() > ctx.data() || ctx.data() + ETH_HLEN > ctx.data_end() {
        return Err(Counter::DropDecapFailed);
    }
    // SAFETY: bounds checked just above.
    unsafe {
        *(meta as *mut XdpMeta) = XdpMeta {
            magic: META_MAGIC,
            vni,
            ifindex,
            flags,
        };
    }
    count(Counter::RxDecap);
    Ok(XDP_PASS)
}
