//! Underlay receive, shared by both decapsulation paths (XDP, and TC when
//! the uplink carries no XDP program): recognise VXLAN for this VTEP,
//! validate it as the kernel's IP layer would, learn, and find where the
//! inner frame goes. The caller strips the outer headers (50 bytes over
//! IPv4, 70 over IPv6: [`Rx::encap_len`]).
//!
//! Checks come in the order the kernel makes them: the IP layer's (header,
//! martian source, a frame for another host's MAC), UDP's (length,
//! checksum), vxlan's (flags, VNI), the bridge's (source MAC), learning
//! (`vxlan_snoop`: no learning over a static entry), ECN.

use aya_ebpf::{bindings::BPF_NOEXIST, maps::lpm_trie::Key};
use network_types::{eth::EthHdr, ip::Ipv4Hdr, udp::UdpHdr};
use vxlan_common::{
    ALLOW_F_VNI_FLAGS, CFG_F_LEARNING, Config, Counter, NeighEntry, NeighSeen, VNI_F_ANY_SENDER,
    VNI_F_IPV6, VtepAddr, allow_data, vtep_is_none, vtep_v4,
    wire::{
        ENCAP_LEN, ETH_HLEN, ETH_P_IP, ETH_P_IPV6, IPPROTO_UDP, IPV4_HLEN, OFF_IP, OFF_UDP,
        UDP_HLEN, VXLAN_FLAG_I, VXLAN_HLEN, ipv4_checksum, is_bad_source_ip, is_multicast_ip,
        is_multicast_mac, is_zero_mac, vxlan_vni,
    },
    wire6::{ENCAP6_LEN, IPV6_HLEN, OFF6_IP, OFF6_UDP, is_bad_source_ip6, is_multicast_ip6},
};

use crate::{
    csum,
    ecn::{self, Ecn},
    fdb,
    maps::{ALLOWED, GROUPS, NEIGH, NEIGH_SEEN, VNIS},
    pkt::{Frame, ptr_at},
};

/// Shortest inner payload after the inner Ethernet header.
const MIN_INNER_PAYLOAD: usize = 20;

/// A VXLAN frame for this VTEP, validated and learned from.
#[derive(Clone, Copy)]
pub struct Rx {
    pub vni: u32,
    /// Destination local port, or 0 to flood to every local port.
    pub ifindex: u32,
    /// `PORT_F_*` flags of `ifindex`.
    pub port_flags: u32,
    /// Ethernet padding after the outer IP packet, to trim.
    pub pad: usize,
    /// Ethertype of the inner frame.
    pub inner_proto: u16,
    /// ECN to write into the inner packet (RFC 6040).
    pub ecn: Ecn,
    /// Outer headers to strip: 50 (IPv4) or 70 (IPv6).
    pub encap_len: usize,
}

/// What the outer IP and UDP headers said about a VXLAN frame for us.
#[derive(Clone, Copy)]
struct Outer {
    /// The sending VTEP.
    src: VtepAddr,
    /// Outer TOS / traffic class (its ECN bits matter).
    tos: u8,
    /// The UDP datagram's length.
    udp_len: usize,
    /// Ethernet padding after the IP packet.
    pad: usize,
    /// 50 or 70.
    encap_len: usize,
}

/// Not ours (`None`: pass it on untouched), ours (`Some`), or ours and
/// bad (`Err`: drop and count). Always inlined: as a BPF subprogram its
/// enum return type would give the kernel BTF it refuses.
#[inline(always)]
pub fn classify<F: Frame>(f: &F, cfg: &Config, ingress: u32) -> Result<Option<Rx>, Counter> {
    // SAFETY (all `ptr_at` reads below): bounds checked by ptr_at; read
    // before any helper call that changes the frame.
    let Some(eth) = (unsafe { ptr_at::<_, EthHdr>(f, 0) }) else {
        return Ok(None);
    };
    let eth = unsafe { &*eth };
    let outer = match u16::from_be(eth.ether_type) {
        ETH_P_IP => outer4(f, cfg, eth)?,
        ETH_P_IPV6 => outer6(f, cfg, eth)?,
        _ => None,
    };
    let Some(o) = outer else {
        return Ok(None);
    };
    let v6 = o.encap_len == ENCAP6_LEN;
    let src_mac = eth.src_addr;

    let udp_payload = o.udp_len - UDP_HLEN;
    if udp_payload < VXLAN_HLEN {
        return Err(Counter::DropVxlanTruncated);
    }
    // An inner frame must hold Ethernet and at least 20 bytes after it:
    // no network header is shorter (IPv4 20, ARP 28, IPv6 40), and the
    // kernel's skb helpers refuse to shrink an IPv4 skb below that.
    if udp_payload < VXLAN_HLEN + ETH_HLEN + MIN_INNER_PAYLOAD {
        return Err(Counter::DropInnerTruncated);
    }

    // VXLAN for us from here on: anything wrong is dropped and counted.
    let Some(vx) = (unsafe { ptr_at::<_, [u8; VXLAN_HLEN]>(f, o.encap_len - VXLAN_HLEN) }) else {
        return Err(Counter::DropVxlanTruncated);
    };
    let vx = unsafe { &*vx };
    if vx[0] & VXLAN_FLAG_I == 0 {
        return Err(Counter::DropVxlanFlags);
    }
    // Reserved bits are ignored, as RFC 7348 says receivers must.
    let vni = vxlan_vni(vx);
    // The sender first: its ALLOWED entry normally carries the VNI's
    // flags (`allow_value`), which saves the VNIS lookup. Without one
    // (a VNI open to any sender, an unknown VNI or sender, an entry
    // written without the flags) VNIS decides, with the checks in the
    // kernel's order: VNI, family, sender.
    let key = Key::new(32 + 128, allow_data(vni, &o.src));
    let allowed = ALLOWED.get(&key).copied();
    let vni_flags = match allowed {
        Some(a) if a & ALLOW_F_VNI_FLAGS != 0 => a,
        _ => {
            // SAFETY: copied out at once.
            let Some(f) = (unsafe { VNIS.get(vni) }).map(|v| v.flags) else {
                return Err(Counter::DropUnknownVni);
            };
            if (f & VNI_F_IPV6 != 0) == v6 && allowed.is_none() && f & VNI_F_ANY_SENDER == 0 {
                return Err(Counter::DropSpoofed);
            }
            f
        }
    };
    // A VNI lives on one underlay family.
    if (vni_flags & VNI_F_IPV6 != 0) != v6 {
        return Err(Counter::DropFamily);
    }
    let Some(inner) = (unsafe { ptr_at::<_, EthHdr>(f, o.encap_len) }) else {
        return Err(Counter::DropInnerTruncated);
    };
    let inner = unsafe { &*inner };
    let (src, dst) = (inner.src_addr, inner.dst_addr);
    let inner_proto = u16::from_be(inner.ether_type);
    // A bridge refuses these sources; they must never be learned.
    if is_multicast_mac(&src) || is_zero_mac(&src) {
        return Err(Counter::DropBadSrcMac);
    }

    if cfg.flags & CFG_F_LEARNING != 0 {
        // The way back to this VTEP, unless userspace resolved it already:
        // checked when the entry is new, moved or refreshed (at most once
        // a second per MAC), not for every frame.
        if fdb::learn(cfg, vni, &src, &o.src, 0, 0)? {
            match NEIGH.get_ptr(&o.src) {
                None => {
                    let n = NeighEntry {
                        dmac: src_mac,
                        smac: cfg.uplink_mac,
                        ifindex: ingress,
                    };
                    let _ = NEIGH.insert(&o.src, &n, BPF_NOEXIST as u64);
                }
                // SAFETY: a map value, read at once.
                Some(n) if unsafe { (*n).dmac } != src_mac => {
                    // The VTEP's MAC may have changed: userspace asks the
                    // kernel (the frame alone is no proof).
                    let seen = NeighSeen {
                        mac: src_mac,
                        _pad: [0; 2],
                    };
                    let _ = NEIGH_SEEN.insert(&o.src, &seen, 0);
                }
                Some(_) => {}
            }
        }
    }
    // After learning, as the kernel's vxlan_rcv.
    let ecn = ecn::decide(f, o.encap_len, o.tos, inner_proto)?;

    let (ifindex, port_flags) = if is_multicast_mac(&dst) {
        (0, 0)
    } else {
        match fdb::lookup(vni, &dst) {
            Some(e) if e.is_local() => (e.ifindex, fdb::port_flags(&e)),
            // The destination lives behind a remote VTEP: never bounce it.
            Some(_) => return Err(Counter::DropRxHairpin),
            None => (0, 0),
        }
    };
    Ok(Some(Rx {
        vni,
        ifindex,
        port_flags,
        pad: o.pad,
        inner_proto,
        ecn,
        encap_len: o.encap_len,
    }))
}

/// What an outer UDP checksum check (`ok`: whether it adds up, `None`
/// when it could not be read) means for the frame, for both families.
#[inline(always)]
fn csum_verdict<F: Frame>(f: &F, ok: Option<bool>) -> Result<(), Counter> {
    match ok {
        Some(true) => Ok(()),
        // Left for offload by a sender on this host (veth)? TC can tell.
        Some(false) if f.defers_bad_csum() => Err(Counter::RxCsumDeferred),
        Some(false) => Err(Counter::DropUdpCsum),
        None => Err(Counter::DropDecapFailed),
    }
}

/// The outer IPv4 and UDP headers: `None` if the frame is not VXLAN for
/// this VTEP, an error if it is and the headers are bad.
#[inline(always)]
fn outer4<F: Frame>(f: &F, cfg: &Config, eth: &EthHdr) -> Result<Option<Outer>, Counter> {
    let Some(ip) = (unsafe { ptr_at::<_, Ipv4Hdr>(f, OFF_IP) }) else {
        return Ok(None);
    };
    let ip = unsafe { &*ip };
    if ip.proto != IPPROTO_UDP {
        return Ok(None);
    }
    if ip.dst_addr != cfg.local_ip
        && !(is_multicast_ip(&ip.dst_addr) && GROUPS.get_ptr(&vtep_v4(ip.dst_addr)).is_some())
    {
        return Ok(None);
    }
    // A fragment is the kernel's to reassemble: never decapsulate one.
    if u16::from_be_bytes(ip.frags) & 0x3fff != 0 {
        return Ok(None);
    }
    let ihl = usize::from(ip.vihl & 0x0f);
    if ip.vihl >> 4 != 4 || ihl < 5 {
        return Err(Counter::DropIpMalformed);
    }
    if ihl > 5 {
        // Only ours if it is for our port; then dropped (see DropIpOptions).
        let Some(udp) = (unsafe { ptr_at::<_, UdpHdr>(f, ETH_HLEN + ihl * 4) }) else {
            return Ok(None);
        };
        if u16::from_be_bytes(unsafe { (*udp).dst }) != cfg.dstport {
            return Ok(None);
        }
        if f.other_host(&eth.dst_addr, cfg) {
            return Err(Counter::DropOtherHost);
        }
        return Err(Counter::DropIpOptions);
    }
    let Some(udp) = (unsafe { ptr_at::<_, UdpHdr>(f, OFF_UDP) }) else {
        return Ok(None);
    };
    let udp = unsafe { &*udp };
    if u16::from_be_bytes(udp.dst) != cfg.dstport {
        return Ok(None);
    }
    // For our address and port, but sent to another host's MAC: the
    // kernel's IP layer would drop it (PACKET_OTHERHOST).
    if f.other_host(&eth.dst_addr, cfg) {
        return Err(Counter::DropOtherHost);
    }

    // Outer IPv4/UDP for our port: check it as the kernel's IP layer would.
    let mut hdr = [0u8; IPV4_HLEN];
    // SAFETY: the 20 bytes were bounds checked as part of `ip`.
    unsafe {
        core::ptr::copy_nonoverlapping(
            ip as *const Ipv4Hdr as *const u8,
            hdr.as_mut_ptr(),
            IPV4_HLEN,
        )
    };
    if ipv4_checksum(&hdr) != ip.check {
        return Err(Counter::DropIpChecksum);
    }
    let frame_len = f.frame_len();
    let tot_len = usize::from(u16::from_be_bytes(ip.tot_len));
    if tot_len > frame_len - ETH_HLEN || tot_len < IPV4_HLEN + UDP_HLEN {
        return Err(Counter::DropIpLength);
    }
    if ip.ttl == 0 {
        return Err(Counter::DropIpTtl);
    }
    // A martian source (the kernel's routing refuses it), or our own
    // address: a reflected or forged frame, never learned from.
    if ip.src_addr == cfg.local_ip || is_bad_source_ip(&ip.src_addr) {
        return Err(Counter::DropBadOuterSrc);
    }
    let udp_len = tot_len - IPV4_HLEN;
    if usize::from(u16::from_be_bytes(udp.len)) != udp_len {
        return Err(Counter::DropUdpLength);
    }
    let (src_ip, dst_ip, tos) = (ip.src_addr, ip.dst_addr, ip.tos);
    if udp.check != [0, 0] && !f.udp_csum_trusted() {
        csum_verdict(f, csum::udp4_ok(f, OFF_UDP, udp_len, src_ip, dst_ip))?;
    }
    Ok(Some(Outer {
        src: vtep_v4(src_ip),
        tos,
        udp_len,
        // Ethernet padding after the IPv4 packet is not part of the inner
        // frame.
        pad: frame_len - ETH_HLEN - tot_len,
        encap_len: ENCAP_LEN,
    }))
}

/// The fixed IPv6 header.
#[repr(C)]
struct Ipv6Hdr {
    vtcfl: [u8; 4],
    plen: [u8; 2],
    next: u8,
    hop: u8,
    src: [u8; 16],
    dst: [u8; 16],
}

/// The outer IPv6 and UDP headers, as [`outer4`]. A frame with extension
/// headers before UDP (a fragment among them) is the kernel's, as IPv4
/// options and fragments are treated.
#[inline(always)]
fn outer6<F: Frame>(f: &F, cfg: &Config, eth: &EthHdr) -> Result<Option<Outer>, Counter> {
    if vtep_is_none(&cfg.local_ip6) {
        return Ok(None);
    }
    let Some(ip) = (unsafe { ptr_at::<_, Ipv6Hdr>(f, OFF6_IP) }) else {
        return Ok(None);
    };
    let ip = unsafe { &*ip };
    if ip.next != IPPROTO_UDP {
        return Ok(None);
    }
    if ip.dst != cfg.local_ip6 && !(is_multicast_ip6(&ip.dst) && GROUPS.get_ptr(&ip.dst).is_some())
    {
        return Ok(None);
    }
    let Some(udp) = (unsafe { ptr_at::<_, UdpHdr>(f, OFF6_UDP) }) else {
        return Ok(None);
    };
    let udp = unsafe { &*udp };
    if u16::from_be_bytes(udp.dst) != cfg.dstport {
        return Ok(None);
    }
    if f.other_host(&eth.dst_addr, cfg) {
        return Err(Counter::DropOtherHost);
    }
    if ip.vtcfl[0] >> 4 != 6 {
        return Err(Counter::DropIpMalformed);
    }
    let frame_len = f.frame_len();
    let plen = usize::from(u16::from_be_bytes(ip.plen));
    // 0 is a jumbogram's (RFC 2675): never a VTEP's.
    if plen > frame_len - ETH_HLEN - IPV6_HLEN || plen < UDP_HLEN {
        return Err(Counter::DropIpLength);
    }
    if ip.src == cfg.local_ip6 || is_bad_source_ip6(&ip.src) {
        return Err(Counter::DropBadOuterSrc);
    }
    if usize::from(u16::from_be_bytes(udp.len)) != plen {
        return Err(Counter::DropUdpLength);
    }
    // Mandatory over IPv6: the kernel drops zero (udp6zerocsumrx off).
    if udp.check == [0, 0] {
        return Err(Counter::DropUdp6ZeroCsum);
    }
    let (src, tos) = (ip.src, (ip.vtcfl[0] << 4) | (ip.vtcfl[1] >> 4));
    if !f.udp_csum_trusted() {
        let dst = ip.dst;
        csum_verdict(f, csum::udp6_ok(f, OFF6_UDP, plen, &src, &dst))?;
    }
    Ok(Some(Outer {
        src,
        tos,
        udp_len: plen,
        pad: frame_len - ETH_HLEN - IPV6_HLEN - plen,
        encap_len: ENCAP6_LEN,
    }))
}
