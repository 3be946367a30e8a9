//! Crafted frames for the tests and the bench: Ethernet, IPv4, UDP,
//! VXLAN and ARP, with correct checksums unless a test breaks them on
//! purpose, and the fix-ups a test applies after damaging a frame.
//!
//! The VXLAN outer headers are vxlan-common's [`wire::build_outer`] (what
//! the datapath itself writes); everything else is built here, once.

use std::net::Ipv4Addr;

use vxlan_common::wire::{self, ETH_HLEN, IPV4_HLEN, OFF_IP, OFF_UDP, Outer, UDP_HLEN};

/// A container's inner address in the seed topology (c1), the source of
/// [`inner_udp`] and [`arp_request`] frames.
pub const C1_IP: [u8; 4] = [172, 18, 1, 2];
/// c2's inner address, their destination.
pub const C2_IP: [u8; 4] = [172, 18, 1, 3];
/// The "don't fragment" bit of the IPv4 flags/fragment-offset field.
pub const IP_DF: u16 = 0x4000;
/// `IPPROTO_UDP`.
pub const UDP: u8 = wire::IPPROTO_UDP;

/// Internet checksum (RFC 1071) of a header of any length (its checksum
/// field must be zero), network byte order.
pub fn header_checksum(hdr: &[u8]) -> [u8; 2] {
    let mut sum: u32 = hdr
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
        .sum();
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    (!(sum as u16)).to_be_bytes()
}

/// An IPv4 header (IHL 5) being built: TTL 64 and everything else zero
/// unless set; lengths and checksum are written by [`Ipv4::header`].
#[derive(Clone, Copy, Debug)]
pub struct Ipv4([u8; IPV4_HLEN]);

impl Ipv4 {
    /// From `src` to `dst`, carrying protocol `proto`.
    pub fn new(proto: u8, src: [u8; 4], dst: [u8; 4]) -> Self {
        let mut ip = [0u8; IPV4_HLEN];
        ip[0] = 0x45;
        ip[8] = 64;
        ip[9] = proto;
        ip[12..16].copy_from_slice(&src);
        ip[16..20].copy_from_slice(&dst);
        Self(ip)
    }

    /// DSCP and ECN.
    pub fn tos(mut self, tos: u8) -> Self {
        self.0[1] = tos;
        self
    }

    /// Identification.
    pub fn id(mut self, id: u16) -> Self {
        self.0[4..6].copy_from_slice(&id.to_be_bytes());
        self
    }

    /// Flags and fragment offset (e.g. [`IP_DF`]).
    pub fn frag(mut self, frag: u16) -> Self {
        self.0[6..8].copy_from_slice(&frag.to_be_bytes());
        self
    }

    pub fn ttl(mut self, ttl: u8) -> Self {
        self.0[8] = ttl;
        self
    }

    /// The header for `payload_len` bytes of payload, with its checksum.
    pub fn header(&self, payload_len: usize) -> [u8; IPV4_HLEN] {
        let mut ip = self.0;
        ip[2..4].copy_from_slice(&((IPV4_HLEN + payload_len) as u16).to_be_bytes());
        let c = wire::ipv4_checksum(&ip);
        ip[10..12].copy_from_slice(&c);
        ip
    }
}

/// An Ethernet header: `dst`, `src`, `ethertype`.
pub fn eth(dst: [u8; 6], src: [u8; 6], ethertype: u16) -> Vec<u8> {
    let mut f = Vec::with_capacity(128);
    f.extend_from_slice(&dst);
    f.extend_from_slice(&src);
    f.extend_from_slice(&ethertype.to_be_bytes());
    f
}

/// An Ethernet frame carrying the IPv4/UDP datagram `ip` (made with
/// protocol UDP), UDP checksum 0.
pub fn udp4(
    dst_mac: [u8; 6],
    src_mac: [u8; 6],
    ip: &Ipv4,
    sport: u16,
    dport: u16,
    payload: &[u8],
) -> Vec<u8> {
    let mut f = eth(dst_mac, src_mac, wire::ETH_P_IP);
    f.extend_from_slice(&ip.header(UDP_HLEN + payload.len()));
    f.extend_from_slice(&sport.to_be_bytes());
    f.extend_from_slice(&dport.to_be_bytes());
    f.extend_from_slice(&((UDP_HLEN + payload.len()) as u16).to_be_bytes());
    f.extend_from_slice(&[0, 0]);
    f.extend_from_slice(payload);
    f
}

/// An Ethernet frame carrying an IPv4/UDP datagram (IP id 0x1234, TTL 64,
/// UDP checksum 0), as a host would send it.
pub fn udp_frame(
    dst_mac: [u8; 6],
    src_mac: [u8; 6],
    src: Ipv4Addr,
    dst: Ipv4Addr,
    sport: u16,
    dport: u16,
    payload: &[u8],
) -> Vec<u8> {
    let ip = Ipv4::new(UDP, src.octets(), dst.octets()).id(0x1234);
    udp4(dst_mac, src_mac, &ip, sport, dport, payload)
}

/// An inner frame c1 -> c2 as a container sends it: IPv4 (id 1, DF, TOS
/// `tos`) / UDP from port 12345 to `dport`.
pub fn inner_udp(dst: [u8; 6], src: [u8; 6], tos: u8, dport: u16, payload: &[u8]) -> Vec<u8> {
    let ip = Ipv4::new(UDP, C1_IP, C2_IP).tos(tos).id(1).frag(IP_DF);
    udp4(dst, src, &ip, 12345, dport, payload)
}

/// A broadcast ARP request from `sha`/`spa` for `tpa` (no padding).
pub fn arp_request(sha: [u8; 6], spa: [u8; 4], tpa: [u8; 4]) -> Vec<u8> {
    let mut f = eth([0xff; 6], sha, 0x0806);
    // Ethernet/IPv4, 6/4 address lengths, opcode 1 (request).
    f.extend_from_slice(&[0, 1, 0x08, 0, 6, 4, 0, 1]);
    f.extend_from_slice(&sha);
    f.extend_from_slice(&spa);
    f.extend_from_slice(&[0; 6]);
    f.extend_from_slice(&tpa);
    f
}

/// A VXLAN frame: `build_outer`'s 50 bytes of headers (as a VTEP sends
/// them), then `inner`.
pub fn vxlan_frame(outer: &Outer, inner: &[u8]) -> Vec<u8> {
    let mut f = wire::build_outer(outer, inner.len() as u16).to_vec();
    f.extend_from_slice(inner);
    f
}

/// Writes `bytes` at `off`, as far as the frame goes (fuzzed frames may
/// be cut anywhere).
pub fn set(f: &mut [u8], off: usize, bytes: &[u8]) {
    for (i, b) in bytes.iter().enumerate() {
        if let Some(x) = f.get_mut(off + i) {
            *x = *b;
        }
    }
}

/// Recomputes the outer IPv4 header checksum of `f` (header at offset 14,
/// as long as its IHL says, at least 20 bytes, at most what the frame
/// holds). A frame cut inside the first 20 bytes is left alone.
pub fn fix_ip_checksum(f: &mut [u8]) {
    if f.len() < OFF_UDP {
        return;
    }
    let ihl = (usize::from(f[OFF_IP] & 0x0f).max(5) * 4).min(f.len() - OFF_IP);
    f[OFF_IP + 10..OFF_IP + 12].fill(0);
    let c = header_checksum(&f[OFF_IP..OFF_IP + ihl]);
    f[OFF_IP + 10..OFF_IP + 12].copy_from_slice(&c);
}

/// Makes the outer IPv4 total length and UDP length agree with the
/// frame's length (the UDP length only when the UDP header is there),
/// then fixes the IPv4 checksum.
pub fn fix_lengths(f: &mut [u8]) {
    if f.len() < OFF_UDP {
        return;
    }
    let ihl = usize::from(f[OFF_IP] & 0x0f).max(5) * 4;
    let tot = (f.len() - OFF_IP) as u16;
    set(f, OFF_IP + 2, &tot.to_be_bytes());
    if f.len() >= OFF_IP + ihl + UDP_HLEN {
        let ulen = (f.len() - OFF_IP - ihl) as u16;
        set(f, OFF_IP + ihl + 4, &ulen.to_be_bytes());
    }
    fix_ip_checksum(f);
}

/// The ones'-complement sum (folded, not inverted) of the IPv4/UDP
/// pseudo-header and the `ulen` bytes of UDP header and payload of `f`
/// (outer IPv4 header of 20 bytes): 0xffff when a checksum in it is right.
pub fn udp_sum(f: &[u8], ulen: usize) -> u16 {
    let udp = &f[OFF_UDP..OFF_UDP + ulen];
    let mut sum: u64 = 0;
    for c in f[OFF_IP + 12..OFF_IP + 20].chunks(2).chain(udp.chunks(2)) {
        sum += u64::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]));
    }
    sum += u64::from(UDP) + ulen as u64;
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum as u16
}

/// Sets a correct outer UDP checksum (as long as the UDP length says).
pub fn set_udp_checksum(f: &mut [u8]) {
    f[OFF_UDP + 6..OFF_UDP + 8].fill(0);
    let ulen = usize::from(u16::from_be_bytes([f[OFF_UDP + 4], f[OFF_UDP + 5]]));
    let c = match !udp_sum(f, ulen) {
        0 => 0xffff,
        c => c,
    };
    f[OFF_UDP + 6..OFF_UDP + 8].copy_from_slice(&c.to_be_bytes());
}

/// Parses `aa:bb:cc:dd:ee:ff`.
pub fn parse_mac(s: &str) -> [u8; 6] {
    let v: Vec<u8> = s
        .split(':')
        .map(|p| u8::from_str_radix(p, 16).unwrap_or_else(|_| panic!("bad MAC {s}")))
        .collect();
    v.try_into().unwrap_or_else(|_| panic!("bad MAC {s}"))
}

/// Formats a MAC as `aa:bb:cc:dd:ee:ff`.
pub fn format_mac(m: &[u8; 6]) -> String {
    m.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// The ICMPv6 Packet Too Big (RFC 4443 §3.2) a tunnel sends back for the
/// too-big IPv6 frame `f`, telling its sender to use `mtu`, built here
/// independently of the datapath: back to the sender's MAC from the MAC it
/// sent to, from the original destination to the original source, the
/// original's hop limit, the first 1232 bytes of the original IPv6 packet
/// quoted (what fits 1280), checksum over the pseudo-header and message.
/// `None` when `f` is shorter than Ethernet + 1232 bytes.
pub fn icmp6_too_big(f: &[u8], mtu: u32) -> Option<Vec<u8>> {
    const QUOTE: usize = 1280 - 48;
    let ip = f.get(ETH_HLEN..ETH_HLEN + QUOTE)?;
    let mut out = eth(
        f[6..12].try_into().ok()?,
        f[0..6].try_into().ok()?,
        wire::ETH_P_IPV6,
    );
    let len = (8 + QUOTE) as u16;
    out.extend_from_slice(&[0x60, 0, 0, 0]);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(&[58, ip[7]]);
    out.extend_from_slice(&ip[24..40]);
    out.extend_from_slice(&ip[8..24]);
    let mut msg = vec![2, 0, 0, 0];
    msg.extend_from_slice(&mtu.to_be_bytes());
    msg.extend_from_slice(ip);
    let mut sum: u64 = out[ETH_HLEN + 8..ETH_HLEN + 40]
        .chunks(2)
        .chain(msg.chunks(2))
        .map(|c| u64::from(u16::from_be_bytes([c[0], c[1]])))
        .sum();
    sum += u64::from(len) + 58;
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    msg[2..4].copy_from_slice(&(!(sum as u16)).to_be_bytes());
    out.extend_from_slice(&msg);
    Some(out)
}

// ------------------------------------------------ VXLAN over IPv6
//
// Built and checked here independently of `vxlan_common::wire6` (what the
// datapath uses): offsets by hand, checksums by summing bytes.

/// `ETH_P_IPV6`.
pub const ETH_P_IPV6: u16 = 0x86dd;
/// Offsets in a frame over IPv6: the IPv6 header, UDP, VXLAN, inner frame.
pub const V6_IP: usize = ETH_HLEN;
pub const V6_UDP: usize = V6_IP + 40;
pub const V6_VXLAN: usize = V6_UDP + 8;
pub const V6_INNER: usize = V6_VXLAN + 8;

/// The one's complement sum of `b` as big-endian 16-bit words (an odd
/// tail padded with zero), not folded.
pub fn sum16(b: &[u8]) -> u64 {
    b.chunks(2)
        .map(|c| u64::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
        .sum()
}

/// Folds a one's complement sum to 16 bits (not inverted).
pub fn fold(mut sum: u64) -> u16 {
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum as u16
}

/// The sum of the IPv6 pseudo-header (RFC 8200 §8.1) of an upper-layer
/// packet of `len` bytes and next header `nh`.
pub fn pseudo6_sum(src: &[u8], dst: &[u8], len: usize, nh: u8) -> u64 {
    sum16(src) + sum16(dst) + (len as u64 >> 16) + (len as u64 & 0xffff) + u64::from(nh)
}

/// An IPv6 header: `plen` bytes of payload, next header `nh`, hop limit
/// `hop`, traffic class `tc`, flow label `label`.
pub fn ip6_header(
    src: [u8; 16],
    dst: [u8; 16],
    plen: u16,
    nh: u8,
    hop: u8,
    tc: u8,
    label: u32,
) -> [u8; 40] {
    let mut h = [0u8; 40];
    let vtcfl = (6u32 << 28) | (u32::from(tc) << 20) | (label & 0xfffff);
    h[0..4].copy_from_slice(&vtcfl.to_be_bytes());
    h[4..6].copy_from_slice(&plen.to_be_bytes());
    h[6] = nh;
    h[7] = hop;
    h[8..24].copy_from_slice(&src);
    h[24..40].copy_from_slice(&dst);
    h
}

/// A VXLAN frame over IPv6 as a remote VTEP sends it: Ethernet `src_mac`
/// -> `dst_mac`, IPv6 `src` -> `dst` (hop limit 64), UDP `sport` ->
/// `dport` with a correct checksum, VXLAN flags `flags` and `vni`, then
/// `inner`.
#[allow(clippy::too_many_arguments)]
pub fn vxlan6_frame(
    dst_mac: [u8; 6],
    src_mac: [u8; 6],
    src: [u8; 16],
    dst: [u8; 16],
    sport: u16,
    dport: u16,
    vni: u32,
    flags: u8,
    inner: &[u8],
) -> Vec<u8> {
    let ulen = (16 + inner.len()) as u16;
    let mut f = eth(dst_mac, src_mac, ETH_P_IPV6);
    f.extend_from_slice(&ip6_header(src, dst, ulen, UDP, 64, 0, 0x12345));
    f.extend_from_slice(&sport.to_be_bytes());
    f.extend_from_slice(&dport.to_be_bytes());
    f.extend_from_slice(&ulen.to_be_bytes());
    f.extend_from_slice(&[0, 0]);
    f.extend_from_slice(&[flags, 0, 0, 0]);
    f.extend_from_slice(&(vni << 8).to_be_bytes());
    f.extend_from_slice(inner);
    set_udp6_checksum(&mut f);
    f
}

/// The folded (not inverted) sum over the IPv6 pseudo-header and the UDP
/// datagram of a frame over IPv6, the datagram as long as the UDP length
/// says: 0xffff when its checksum is right. `None` when the frame is
/// shorter than the UDP length says.
pub fn udp6_sum(f: &[u8]) -> Option<u16> {
    let ulen = usize::from(u16::from_be_bytes([
        *f.get(V6_UDP + 4)?,
        *f.get(V6_UDP + 5)?,
    ]));
    let dgram = f.get(V6_UDP..V6_UDP + ulen)?;
    Some(fold(
        pseudo6_sum(
            &f[V6_IP + 8..V6_IP + 24],
            &f[V6_IP + 24..V6_IP + 40],
            ulen,
            UDP,
        ) + sum16(dgram),
    ))
}

/// Whether the UDP checksum of a frame over IPv6 is present (not 0) and
/// right.
pub fn udp6_checksum_ok(f: &[u8]) -> bool {
    f.len() >= V6_VXLAN && f[V6_UDP + 6..V6_UDP + 8] != [0, 0] && udp6_sum(f) == Some(0xffff)
}

/// Sets a correct UDP checksum in a frame over IPv6 (0 is sent as 0xffff).
pub fn set_udp6_checksum(f: &mut [u8]) {
    f[V6_UDP + 6..V6_UDP + 8].fill(0);
    let c = match !udp6_sum(f).expect("UDP length within the frame") {
        0 => 0xffff,
        c => c,
    };
    f[V6_UDP + 6..V6_UDP + 8].copy_from_slice(&c.to_be_bytes());
}

/// Makes the IPv6 payload length and the UDP length of a frame over IPv6
/// agree with the frame's length, then sets the UDP checksum.
pub fn fix6_lengths(f: &mut [u8]) {
    let plen = (f.len() - V6_UDP) as u16;
    f[V6_IP + 4..V6_IP + 6].copy_from_slice(&plen.to_be_bytes());
    f[V6_UDP + 4..V6_UDP + 6].copy_from_slice(&plen.to_be_bytes());
    set_udp6_checksum(f);
}

/// What [`complete_inner_l4_checksum`] found in an inner frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InnerCsum {
    /// No inner TCP/UDP over IPv4/IPv6 (ICMP, ARP, ...): nothing to check.
    NotL4,
    /// The inner TCP/UDP checksum is complete and right (or UDP over IPv4
    /// without one).
    Complete,
    /// It still held the pseudo-header sum of a `CHECKSUM_PARTIAL` packet
    /// (what a NIC or the receiver completes); it was completed in place.
    Completed,
    /// Neither right nor the pseudo-header sum: a wrong checksum.
    Wrong,
}

/// Checks the TCP or UDP checksum of the inner Ethernet frame `inner`
/// (IPv4 without options or IPv6 without extension headers) and, when it
/// is still in `CHECKSUM_PARTIAL` form (the folded pseudo-header sum, not
/// inverted, as Linux leaves it for the device to complete), completes it
/// in place: what the receiver of the frame sees after a NIC's offload.
pub fn complete_inner_l4_checksum(inner: &mut [u8]) -> InnerCsum {
    if inner.len() < ETH_HLEN + 20 {
        return InnerCsum::NotL4;
    }
    let et = u16::from_be_bytes([inner[12], inner[13]]);
    let ip = ETH_HLEN;
    let (proto, l4, pseudo) = match et {
        0x0800 if inner[ip] == 0x45 => {
            let tot = usize::from(u16::from_be_bytes([inner[ip + 2], inner[ip + 3]]));
            // Fragments carry no (whole) L4 header to check.
            let frag = u16::from_be_bytes([inner[ip + 6], inner[ip + 7]]) & 0x3fff;
            if frag != 0 || tot < 20 || ip + tot > inner.len() {
                return InnerCsum::NotL4;
            }
            let l4len = tot - 20;
            let p = inner[ip + 9];
            let ps = sum16(&inner[ip + 12..ip + 20]) + u64::from(p) + l4len as u64;
            (p, ip + 20..ip + tot, ps)
        }
        0x86dd if inner.len() >= ip + 40 => {
            let plen = usize::from(u16::from_be_bytes([inner[ip + 4], inner[ip + 5]]));
            if ip + 40 + plen > inner.len() {
                return InnerCsum::NotL4;
            }
            let p = inner[ip + 6];
            let ps = pseudo6_sum(&inner[ip + 8..ip + 24], &inner[ip + 24..ip + 40], plen, p);
            (p, ip + 40..ip + 40 + plen, ps)
        }
        _ => return InnerCsum::NotL4,
    };
    let off = match proto {
        6 if l4.len() >= 20 => 16,
        17 if l4.len() >= 8 => 6,
        _ => return InnerCsum::NotL4,
    };
    let field = l4.start + off;
    let have = u16::from_be_bytes([inner[field], inner[field + 1]]);
    if proto == 17 && et == 0x0800 && have == 0 {
        return InnerCsum::Complete;
    }
    inner[field..field + 2].fill(0);
    let mut want = !fold(pseudo + sum16(&inner[l4.clone()]));
    if proto == 17 && want == 0 {
        want = 0xffff;
    }
    let partial = fold(pseudo);
    let verdict = if have == want {
        InnerCsum::Complete
    } else if have == partial {
        InnerCsum::Completed
    } else {
        InnerCsum::Wrong
    };
    let v = if verdict == InnerCsum::Wrong {
        have
    } else {
        want
    };
    inner[field..field + 2].copy_from_slice(&v.to_be_bytes());
    verdict
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv6_frames_verify_and_partial_inner_checksums_complete() {
        let inner = inner_udp([2; 6], [4; 6], 0, 53, b"payload!");
        let src = [0xfd, 0, 0, 0x57, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2];
        let dst = [0xfd, 0, 0, 0x57, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
        let mut f = vxlan6_frame([1; 6], [3; 6], src, dst, 40000, 4789, 42, 8, &inner);
        assert!(udp6_checksum_ok(&f));
        f[V6_INNER + 3] ^= 1;
        assert!(!udp6_checksum_ok(&f), "a damaged byte must fail");
        f[V6_INNER + 3] ^= 1;
        fix6_lengths(&mut f);
        assert!(udp6_checksum_ok(&f));

        // An inner UDP checksum: right, then in CHECKSUM_PARTIAL form.
        let mut i = inner.clone();
        let l4 = OFF_UDP..i.len();
        let pseudo = sum16(&i[OFF_IP + 12..OFF_IP + 20]) + 17 + l4.len() as u64;
        let right = !fold(pseudo + sum16(&i[l4.clone()]));
        i[OFF_UDP + 6..OFF_UDP + 8].copy_from_slice(&right.to_be_bytes());
        assert_eq!(
            complete_inner_l4_checksum(&mut i.clone()),
            InnerCsum::Complete
        );
        let mut p = i.clone();
        p[OFF_UDP + 6..OFF_UDP + 8].copy_from_slice(&fold(pseudo).to_be_bytes());
        assert_eq!(complete_inner_l4_checksum(&mut p), InnerCsum::Completed);
        assert_eq!(p, i, "completed to the right checksum");
        let mut w = i.clone();
        w[OFF_UDP + 7] ^= 0x10;
        assert_eq!(complete_inner_l4_checksum(&mut w), InnerCsum::Wrong);
    }

    #[test]
    fn checksums_verify() {
        let mut f = inner_udp([2; 6], [4; 6], 0, 53, b"payload");
        assert_eq!(header_checksum(&f[OFF_IP..OFF_UDP]), [0, 0]);
        f[OFF_UDP + 4..OFF_UDP + 6].copy_from_slice(&15u16.to_be_bytes());
        set_udp_checksum(&mut f);
        assert_eq!(udp_sum(&f, 15), 0xffff);
        f.truncate(OFF_UDP + 4);
        fix_lengths(&mut f);
        assert_eq!(header_checksum(&f[OFF_IP..OFF_UDP]), [0, 0]);
        assert_eq!(arp_request([1; 6], C1_IP, C2_IP).len(), 42);
    }
}
