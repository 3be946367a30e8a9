//! IPv6 wire formats: the outer headers of VXLAN over IPv6 (Ethernet,
//! IPv6, UDP with its mandatory checksum, VXLAN: 70 bytes), and the ICMPv6
//! "Packet Too Big" that path MTU discovery of inner IPv6 senders needs
//! (RFC 4443 §3.2, RFC 8201).
//!
//! Pure functions on byte arrays, shared by the datapath and the host-side
//! tests, like [`crate::wire`]. Checksums here are in network order
//! arithmetic (16-bit words read big-endian).

use crate::wire::{ETH_HLEN, ETH_P_IPV6, IPPROTO_UDP, Outer, UDP_HLEN, VXLAN_FLAG_I, VXLAN_HLEN};

/// Fixed IPv6 header.
pub const IPV6_HLEN: usize = 40;
/// ICMPv6 header (type, code, checksum, 32-bit field).
pub const ICMP6_HLEN: usize = 8;
/// IPv6 next header values.
pub const IPPROTO_ICMPV6: u8 = 58;
pub const IPPROTO_FRAGMENT: u8 = 44;
/// ICMPv6 "Packet Too Big".
pub const ICMP6_PACKET_TOO_BIG: u8 = 2;
/// ICMPv6 redirect (NDISC), never answered with an error either.
pub const ICMP6_REDIRECT: u8 = 137;
/// The minimum IPv6 link MTU: an ICMPv6 error never exceeds it, and a
/// Packet Too Big below it is not sent (the kernel's
/// `iptunnel_pmtud_check_icmpv6`).
pub const IPV6_MIN_MTU: u32 = 1280;
/// How much of the offending packet a Packet Too Big quotes: as much as fits
/// the minimum MTU.
pub const PTB_QUOTE: usize = IPV6_MIN_MTU as usize - IPV6_HLEN - ICMP6_HLEN;
/// Headers of a Packet Too Big frame: Ethernet, IPv6, ICMPv6.
pub const PTB_HDR_LEN: usize = ETH_HLEN + IPV6_HLEN + ICMP6_HLEN;
/// ICMPv6 payload length of a Packet Too Big: header and quote.
pub const PTB_PAYLOAD_LEN: usize = ICMP6_HLEN + PTB_QUOTE;

/// Bytes added by VXLAN-over-IPv6 encapsulation in front of the inner frame.
pub const ENCAP6_LEN: usize = ETH_HLEN + IPV6_HLEN + UDP_HLEN + VXLAN_HLEN;
/// Overlay MTU on an uplink of MTU `m` with an IPv6 underlay is
/// `m - OVERHEAD6` (as the kernel's vxlan over IPv6).
pub const OVERHEAD6: u32 = (IPV6_HLEN + UDP_HLEN + VXLAN_HLEN + ETH_HLEN) as u32;
/// Offsets of the outer headers in a frame encapsulated over IPv6.
pub const OFF6_IP: usize = ETH_HLEN;
pub const OFF6_UDP: usize = OFF6_IP + IPV6_HLEN;
pub const OFF6_VXLAN: usize = OFF6_UDP + UDP_HLEN;
pub const OFF6_INNER: usize = ENCAP6_LEN;
/// IPv6 next header values that are extension headers (RFC 8200 §4, and
/// the ones after it): a VXLAN frame behind one goes to the kernel.
pub const IPPROTO_HOPOPTS: u8 = 0;

/// The outer headers of one frame over IPv6, aligned like
/// [`crate::wire::OuterHdr`]: two bytes of padding put the IPv6 header on
/// a 4-byte boundary. [`OuterHdr6::bytes`] is the 70 bytes on the wire.
/// Multi-byte fields are in network byte order.
#[repr(C, align(8))]
#[derive(Clone, Copy, Debug, PartialEq, Eq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct OuterHdr6 {
    _pad: [u8; 2],
    pub eth_dst: [u8; 6],
    pub eth_src: [u8; 6],
    pub eth_proto: u16,
    /// Version, traffic class, flow label.
    pub ip_vtcfl: u32,
    pub ip_plen: u16,
    /// Next header (UDP) and hop limit.
    pub ip_nh_hop: u16,
    pub ip_src: [u8; 16],
    pub ip_dst: [u8; 16],
    pub udp_sport: u16,
    pub udp_dport: u16,
    pub udp_len: u16,
    /// Mandatory over IPv6: the kernel drops zero (`udp6zerocsumrx` off).
    pub udp_check: u16,
    pub vx_flags: u32,
    pub vx_vni: u32,
}

impl OuterHdr6 {
    /// The headers as they go on the wire.
    #[inline(always)]
    pub fn bytes(&self) -> &[u8; ENCAP6_LEN] {
        let all = bytemuck::bytes_of(self);
        // SAFETY: bytes 2..72 of the 72 bytes of `self` (no padding: the
        // Pod derive checks it).
        unsafe { &*(all.as_ptr().add(2) as *const [u8; ENCAP6_LEN]) }
    }
}

/// The flow label of an outer IPv6 header for a flow whose hash is
/// `hash`, as the kernel's `ip6_make_flowlabel` derives it (the hash
/// rotated by 16 bits, low 20 bits).
#[inline(always)]
pub const fn flow_label(hash: u32) -> u32 {
    hash.rotate_left(16) & 0x000f_ffff
}

/// Adds the 16-bit big-endian words of `a` to `sum`.
#[inline(always)]
const fn add16(mut sum: u32, a: &[u8; 16]) -> u32 {
    let mut i = 0;
    while i < 16 {
        sum += ((a[i] as u32) << 8) | a[i + 1] as u32;
        i += 2;
    }
    sum
}

/// Folds a 32-bit one's complement sum to 16 bits.
#[inline(always)]
pub const fn fold32(mut sum: u32) -> u16 {
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    sum as u16
}

impl OuterHdr6 {
    /// Writes every field but the destination (MAC and address) and the
    /// UDP checksum, in place: headers over IPv6 from `src` in front of an
    /// inner frame of `inner_len` bytes, with the fields of `o` but its
    /// IPv4 addresses and IP ID (`ttl` is the hop limit, `tos` the traffic
    /// class). Returns the checksum's sum so far (network order,
    /// unfolded): the pseudo-header's source and lengths, the UDP and
    /// VXLAN headers, and `inner_sum`, the inner frame's own folded sum.
    /// [`OuterHdr6::set_dst`] completes it per destination.
    ///
    /// Field by field into place: the datapath writes a map value (no
    /// struct on its small stack) and sends several copies of a flood
    /// with only the destination changed.
    #[inline(always)]
    pub fn fill(
        &mut self,
        o: &Outer,
        src: &[u8; 16],
        label: u32,
        inner_len: u16,
        inner_sum: u16,
    ) -> u32 {
        let udp_len = inner_len.wrapping_add((UDP_HLEN + VXLAN_HLEN) as u16);
        let vni = o.vni << 8;
        let vx_flags = u32::from_be_bytes([VXLAN_FLAG_I, 0, 0, 0]);
        self._pad = [0; 2];
        self.eth_src = o.src_mac;
        self.eth_proto = ETH_P_IPV6.to_be();
        self.ip_vtcfl = ((6 << 28) | (u32::from(o.tos) << 20) | (label & 0x000f_ffff)).to_be();
        self.ip_plen = udp_len.to_be();
        self.ip_nh_hop = ((u16::from(IPPROTO_UDP) << 8) | u16::from(o.ttl)).to_be();
        self.ip_src = *src;
        self.udp_sport = o.src_port.to_be();
        self.udp_dport = o.dst_port.to_be();
        self.udp_len = udp_len.to_be();
        self.vx_flags = vx_flags.to_be();
        self.vx_vni = vni.to_be();
        // Pseudo-header (source, upper-layer length, next header), then
        // the UDP header with a zero checksum, the VXLAN header and the
        // inner frame.
        let mut sum = add16(0, src);
        sum += 2 * u32::from(udp_len) + u32::from(IPPROTO_UDP);
        sum += u32::from(o.src_port) + u32::from(o.dst_port);
        sum += (vx_flags >> 16) + (vx_flags & 0xffff) + (vni >> 16) + (vni & 0xffff);
        sum + u32::from(inner_sum)
    }

    /// Sets the destination (`mac`, `dst`) and the UDP checksum, from the
    /// sum [`OuterHdr6::fill`] returned. A zero checksum is sent as 0xffff
    /// (RFC 8200 §8.1).
    #[inline(always)]
    pub fn set_dst(&mut self, mac: &[u8; 6], dst: &[u8; 16], sum: u32) {
        self.eth_dst = *mac;
        self.ip_dst = *dst;
        let check = match !fold32(add16(sum, dst)) {
            0 => 0xffff,
            c => c,
        };
        self.udp_check = check.to_be();
    }
}

/// Outer headers over IPv6 from `src` to `dst` (at `o.dst_mac`) in front
/// of an inner frame of `inner_len` bytes whose own folded sum (network
/// order) is `inner_sum`: [`OuterHdr6::fill`] and
/// [`OuterHdr6::set_dst`] at once.
#[inline(always)]
pub fn outer_hdr6(
    o: &Outer,
    src: &[u8; 16],
    dst: &[u8; 16],
    label: u32,
    inner_len: u16,
    inner_sum: u16,
) -> OuterHdr6 {
    let mut h: OuterHdr6 = bytemuck::Zeroable::zeroed();
    let sum = h.fill(o, src, label, inner_len, inner_sum);
    h.set_dst(&o.dst_mac, dst, sum);
    h
}

/// True for IPv6 multicast addresses (ff00::/8).
#[inline(always)]
pub const fn is_multicast_ip6(ip: &[u8; 16]) -> bool {
    ip[0] == 0xff
}

/// The Ethernet address of an IPv6 multicast group: 33:33 and the low 32
/// bits of the group (RFC 2464 §7).
#[inline(always)]
pub const fn multicast_mac6(group: &[u8; 16]) -> [u8; 6] {
    [0x33, 0x33, group[12], group[13], group[14], group[15]]
}

/// True for outer source addresses no VTEP sends from, which the kernel's
/// IPv6 input refuses or a VTEP never uses: multicast, unspecified (::),
/// loopback (::1) and IPv4-mapped.
#[inline(always)]
pub const fn is_bad_source_ip6(ip: &[u8; 16]) -> bool {
    let mut head_zero = true;
    let mut i = 0;
    while i < 10 {
        if ip[i] != 0 {
            head_zero = false;
        }
        i += 1;
    }
    let low_zero = ip[10] == 0 && ip[11] == 0 && ip[12] == 0 && ip[13] == 0 && ip[14] == 0;
    let unspec_or_lo = head_zero && low_zero && (ip[15] == 0 || ip[15] == 1);
    let mapped = head_zero && ip[10] == 0xff && ip[11] == 0xff;
    is_multicast_ip6(ip) || unspec_or_lo || mapped
}

/// Whether an ICMPv6 Packet Too Big may be sent about this IPv6 packet
/// (`frame`: its Ethernet and fixed IPv6 header; `next`: the 8 bytes
/// after them), as the kernel's tunnels
/// decide it: not from an unspecified, multicast or loopback source, not
/// about a non-initial fragment, an ICMPv6 error or a redirect. (A
/// multicast destination is fine: RFC 4443 §2.4 (e.3) allows Packet Too
/// Big for it.)
#[inline(always)]
pub const fn icmp6_error_allowed(frame: &[u8; ETH_HLEN + IPV6_HLEN], next: &[u8; 8]) -> bool {
    let ip = ETH_HLEN;
    if frame[ip] >> 4 != 6 {
        return false;
    }
    let src = ip + 8;
    if frame[src] == 0xff {
        return false;
    }
    let mut zero_head = true;
    let mut i = 0;
    while i < 15 {
        if frame[src + i] != 0 {
            zero_head = false;
        }
        i += 1;
    }
    // :: and ::1
    if zero_head && (frame[src + 15] == 0 || frame[src + 15] == 1) {
        return false;
    }
    let nh = frame[ip + 6];
    if nh == IPPROTO_FRAGMENT {
        // Fragment header: next header, reserved, offset (13 bits) + flags.
        let offset = ((next[2] as u16) << 8 | next[3] as u16) & !7;
        return offset == 0;
    }
    if nh == IPPROTO_ICMPV6 {
        let t = next[0];
        // Error messages are types 0-127.
        if t < 128 || t == ICMP6_REDIRECT {
            return false;
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Network-order one's complement sum of `b` (odd length: zero-padded).
    fn sum(b: &[u8]) -> u32 {
        b.chunks(2)
            .map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
            .sum()
    }

    #[test]
    fn outer6_checksum_verifies_and_fields_are_right() {
        let inner: Vec<u8> = (0..77u8).map(|i| i.wrapping_mul(37)).collect();
        let o = Outer {
            src_mac: [2, 0, 0, 0, 0, 1],
            dst_mac: [2, 0, 0, 0, 0, 2],
            src_port: 51000,
            dst_port: 4789,
            vni: 0x00ab_cdef,
            ttl: 64,
            tos: 2,
            ..Outer::default()
        };
        let src = [0xfd, 0, 0, 0x57, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
        let dst = [0xfd, 0, 0, 0x57, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2];
        let h = outer_hdr6(
            &o,
            &src,
            &dst,
            flow_label(0x1234_5678),
            77,
            fold32(sum(&inner)),
        );
        let b = h.bytes();
        assert_eq!(&b[12..14], &[0x86, 0xdd]);
        assert_eq!(b[14] >> 4, 6);
        assert_eq!(((b[14] & 0x0f) << 4) | (b[15] >> 4), 2, "traffic class");
        let label = u32::from_be_bytes([0, b[15] & 0x0f, b[16], b[17]]);
        assert_eq!(label, 0x5678_1234 & 0xfffff);
        assert_eq!(
            u16::from_be_bytes([b[18], b[19]]),
            77 + 16,
            "payload length"
        );
        assert_eq!((b[20], b[21]), (17, 64));
        assert_eq!(&b[22..38], &src);
        assert_eq!(&b[38..54], &dst);
        assert_eq!(u16::from_be_bytes([b[56], b[57]]), 4789);
        assert_eq!(u16::from_be_bytes([b[58], b[59]]), 77 + 16, "udp length");
        assert_eq!(&b[62..70], &[0x08, 0, 0, 0, 0xab, 0xcd, 0xef, 0]);
        // The receiver's check: pseudo-header + datagram folds to 0xffff.
        let mut dgram = b[54..].to_vec();
        dgram.extend_from_slice(&inner);
        let mut pseudo = Vec::new();
        pseudo.extend_from_slice(&src);
        pseudo.extend_from_slice(&dst);
        pseudo.extend_from_slice(&(dgram.len() as u32).to_be_bytes());
        pseudo.extend_from_slice(&[0, 0, 0, 17]);
        assert_ne!(&b[60..62], &[0, 0]);
        assert_eq!(fold32(sum(&pseudo) + sum(&dgram)), 0xffff);
    }

    #[test]
    fn group_macs_and_martian_sources() {
        let g = [0xff, 5, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0];
        assert_eq!(multicast_mac6(&g), [0x33, 0x33, 0, 0, 1, 0]);
        assert!(is_multicast_ip6(&g) && is_bad_source_ip6(&g));
        let mut lo = [0u8; 16];
        assert!(is_bad_source_ip6(&lo));
        lo[15] = 1;
        assert!(is_bad_source_ip6(&lo));
        assert!(is_bad_source_ip6(&crate::vtep_v4([10, 0, 0, 1])));
        assert!(!is_bad_source_ip6(&HOST));
    }

    /// Ethernet + IPv6 header from `src`, and the 8 bytes after it.
    fn ip6(src: [u8; 16], next: u8, after: [u8; 8]) -> ([u8; 54], [u8; 8]) {
        let mut p = [0u8; 54];
        p[..6].copy_from_slice(&[2, 0, 0, 0, 0, 0xbb]); // to
        p[6..12].copy_from_slice(&[2, 0, 0, 0, 0, 0xaa]); // from
        p[12..14].copy_from_slice(&ETH_P_IPV6.to_be_bytes());
        p[14] = 0x60;
        p[20] = next;
        p[21] = 64;
        p[22..38].copy_from_slice(&src);
        p[38..54].copy_from_slice(&[0xfd, 0, 0, 0x42, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 3]);
        (p, after)
    }

    fn allowed((frame, next): ([u8; 54], [u8; 8])) -> bool {
        icmp6_error_allowed(&frame, &next)
    }

    const HOST: [u8; 16] = [0xfd, 0, 0, 0x42, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2];

    #[test]
    fn allowed_for_unicast_sources_only() {
        assert!(allowed(ip6(HOST, 6, [0; 8])));
        let mut mc = HOST;
        mc[0] = 0xff;
        assert!(!allowed(ip6(mc, 6, [0; 8])));
        assert!(!allowed(ip6([0; 16], 6, [0; 8])));
        let mut lo = [0; 16];
        lo[15] = 1;
        assert!(!allowed(ip6(lo, 6, [0; 8])));
        // Not IPv6 at all.
        let (mut v4, next) = ip6(HOST, 6, [0; 8]);
        v4[14] = 0x45;
        assert!(!icmp6_error_allowed(&v4, &next));
    }

    #[test]
    fn not_about_errors_redirects_or_later_fragments() {
        // Echo request (128) yes, destination unreachable (1), too big (2),
        // redirect (137) no.
        assert!(allowed(ip6(
            HOST,
            IPPROTO_ICMPV6,
            [128, 0, 0, 0, 0, 0, 0, 0]
        )));
        for t in [1, 2, 3, 4, 127, ICMP6_REDIRECT] {
            assert!(!allowed(ip6(
                HOST,
                IPPROTO_ICMPV6,
                [t, 0, 0, 0, 0, 0, 0, 0]
            )));
        }
        // First fragment (offset 0, M set) yes; offset 8 no.
        assert!(allowed(ip6(
            HOST,
            IPPROTO_FRAGMENT,
            [17, 0, 0, 1, 0, 0, 0, 9]
        )));
        assert!(!allowed(ip6(
            HOST,
            IPPROTO_FRAGMENT,
            [17, 0, 0, 8, 0, 0, 0, 9]
        )));
    }
}
