//! Pure wire-format helpers: outer header construction, IPv4 header
//! checksum and the outer UDP source port. Used by the eBPF programs and
//! unit-tested on the host.

/// Ethernet header length.
pub const ETH_HLEN: usize = 14;
/// IPv4 header length without options.
pub const IPV4_HLEN: usize = 20;
pub const UDP_HLEN: usize = 8;
pub const VXLAN_HLEN: usize = 8;
/// Bytes added by VXLAN-over-IPv4 encapsulation in front of the inner frame.
pub const ENCAP_LEN: usize = ETH_HLEN + IPV4_HLEN + UDP_HLEN + VXLAN_HLEN;
/// Overlay MTU on an uplink of MTU `m` is `m - OVERHEAD` (as the kernel's).
pub const OVERHEAD: u32 = (IPV4_HLEN + UDP_HLEN + VXLAN_HLEN + ETH_HLEN) as u32;

/// Offsets of the outer headers in an encapsulated frame.
pub const OFF_IP: usize = ETH_HLEN;
pub const OFF_UDP: usize = OFF_IP + IPV4_HLEN;
pub const OFF_VXLAN: usize = OFF_UDP + UDP_HLEN;
pub const OFF_INNER: usize = ENCAP_LEN;

pub const ETH_P_IP: u16 = 0x0800;
pub const ETH_P_IPV6: u16 = 0x86dd;
pub const IPPROTO_UDP: u8 = 17;
/// VXLAN "I" flag: the VNI is valid (RFC 7348).
pub const VXLAN_FLAG_I: u8 = 0x08;

/// The IPv4 header checksum of a 20-byte header, computed with the checksum
/// field (bytes 10..12) taken as zero. Returned in network byte order bytes.
#[inline(always)]
pub fn ipv4_checksum(hdr: &[u8; IPV4_HLEN]) -> [u8; 2] {
    let w = |i: usize| u32::from(u16::from_be_bytes([hdr[i], hdr[i + 1]]));
    let mut sum = w(0) + w(2) + w(4) + w(6) + w(8) + w(12) + w(14) + w(16) + w(18);
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    (!(sum as u16)).to_be_bytes()
}

/// The outer UDP source port for a flow, as the kernel's
/// `udp_flow_src_port()` derives it from the skb's flow hash: the hash is
/// folded (`hash ^= hash << 16`) and scaled into `[lo, hi)`.
#[inline(always)]
pub fn flow_src_port(hash: u32, lo: u16, hi: u16) -> u16 {
    let hash = hash ^ (hash << 16);
    if hi <= lo {
        return lo;
    }
    (((u64::from(hash) * u64::from(hi - lo)) >> 32) as u16).wrapping_add(lo)
}

/// Fields of the outer headers of one encapsulated frame.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Outer {
    pub src_mac: [u8; 6],
    pub dst_mac: [u8; 6],
    pub src_ip: [u8; 4],
    pub dst_ip: [u8; 4],
    /// Host byte order.
    pub src_port: u16,
    /// Host byte order.
    pub dst_port: u16,
    pub vni: u32,
    pub ttl: u8,
    /// Outer TOS (the kernel copies the inner ECN bits).
    pub tos: u8,
    pub ip_id: u16,
}

/// The outer headers of one frame, laid out so that every field is
/// naturally aligned: two bytes of padding put the IPv4 header on a 4-byte
/// boundary. Filled with word stores rather than one byte at a time (the
/// eBPF programs build one per encapsulated frame); [`OuterHdr::bytes`] is
/// the 50 bytes on the wire. Multi-byte fields are in network byte order.
#[repr(C, align(8))]
#[derive(Clone, Copy, Debug, PartialEq, Eq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct OuterHdr {
    _pad: [u8; 2],
    pub eth_dst: [u8; 6],
    pub eth_src: [u8; 6],
    pub eth_proto: u16,
    /// Version/IHL and TOS.
    pub ip_vihl_tos: u16,
    pub ip_len: u16,
    pub ip_id: u16,
    /// Flags and fragment offset: DF clear, as the kernel's vxlan sends.
    pub ip_frag: u16,
    /// TTL and protocol.
    pub ip_ttl_proto: u16,
    pub ip_check: u16,
    pub ip_src: [u8; 4],
    pub ip_dst: [u8; 4],
    pub udp_sport: u16,
    pub udp_dport: u16,
    pub udp_len: u16,
    /// 0: no UDP checksum over IPv4, as the kernel's vxlan by default.
    pub udp_check: u16,
    /// Flags (I) and reserved.
    pub vx_flags: u32,
    /// VNI and reserved.
    pub vx_vni: u32,
    _pad2: [u8; 4],
}

impl OuterHdr {
    /// The headers as they go on the wire.
    #[inline(always)]
    pub fn bytes(&self) -> &[u8; ENCAP_LEN] {
        let all = bytemuck::bytes_of(self);
        // SAFETY: bytes 2..52 of the 56 bytes of `self` (the layout is
        // checked by the Pod derive: no padding).
        unsafe { &*(all.as_ptr().add(2) as *const [u8; ENCAP_LEN]) }
    }
}

/// Outer headers in front of an inner frame of `inner_len` bytes.
#[inline(always)]
pub fn outer_hdr(o: &Outer, inner_len: u16) -> OuterHdr {
    let ip_len = inner_len.wrapping_add((IPV4_HLEN + UDP_HLEN + VXLAN_HLEN) as u16);
    let vihl_tos = 0x4500 | u16::from(o.tos);
    let ttl_proto = (u16::from(o.ttl) << 8) | u16::from(IPPROTO_UDP);
    let (s, d) = (o.src_ip, o.dst_ip);
    let w = |a: u8, b: u8| u32::from(u16::from_be_bytes([a, b]));
    let mut sum = u32::from(vihl_tos)
        + u32::from(ip_len)
        + u32::from(o.ip_id)
        + u32::from(ttl_proto)
        + w(s[0], s[1])
        + w(s[2], s[3])
        + w(d[0], d[1])
        + w(d[2], d[3]);
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    OuterHdr {
        _pad: [0; 2],
        eth_dst: o.dst_mac,
        eth_src: o.src_mac,
        eth_proto: ETH_P_IP.to_be(),
        ip_vihl_tos: vihl_tos.to_be(),
        ip_len: ip_len.to_be(),
        ip_id: o.ip_id.to_be(),
        ip_frag: 0,
        ip_ttl_proto: ttl_proto.to_be(),
        ip_check: (!(sum as u16)).to_be(),
        ip_src: s,
        ip_dst: d,
        udp_sport: o.src_port.to_be(),
        udp_dport: o.dst_port.to_be(),
        udp_len: inner_len
            .wrapping_add((UDP_HLEN + VXLAN_HLEN) as u16)
            .to_be(),
        udp_check: 0,
        vx_flags: u32::from_be_bytes([VXLAN_FLAG_I, 0, 0, 0]).to_be(),
        vx_vni: (o.vni << 8).to_be(),
        _pad2: [0; 4],
    }
}

/// Builds the 50 bytes of outer headers (Ethernet, IPv4 without options,
/// UDP, VXLAN) in front of an inner frame of `inner_len` bytes: see
/// [`outer_hdr`].
#[inline(always)]
pub fn build_outer(o: &Outer, inner_len: u16) -> [u8; ENCAP_LEN] {
    *outer_hdr(o, inner_len).bytes()
}

/// The 24-bit VNI carried in bytes 4..7 of a VXLAN header.
#[inline(always)]
pub fn vxlan_vni(hdr: &[u8; VXLAN_HLEN]) -> u32 {
    u32::from_be_bytes([0, hdr[4], hdr[5], hdr[6]])
}

/// True for group (multicast and broadcast) MAC addresses.
#[inline(always)]
pub const fn is_multicast_mac(mac: &[u8; 6]) -> bool {
    mac[0] & 1 != 0
}

/// True for the all-zeros MAC.
#[inline(always)]
pub const fn is_zero_mac(mac: &[u8; 6]) -> bool {
    (mac[0] | mac[1] | mac[2] | mac[3] | mac[4] | mac[5]) == 0
}

/// Outer TOS for an inner DS field, as the kernel's `INET_ECN_encapsulate`
/// does with a configured TOS of 0: copy the inner ECN bits, except that CE
/// becomes ECT(0).
#[inline(always)]
pub const fn ecn_encap(inner_ds: u8) -> u8 {
    let ecn = inner_ds & 0x03;
    if ecn == 0x03 { 0x02 } else { ecn }
}

/// True for IPv4 multicast addresses (224.0.0.0/4).
#[inline(always)]
pub const fn is_multicast_ip(ip: &[u8; 4]) -> bool {
    ip[0] & 0xf0 == 0xe0
}

/// The Ethernet address of an IPv4 multicast group: 01:00:5e and the low 23
/// bits of the group (RFC 1112).
#[inline(always)]
pub const fn multicast_mac(group: &[u8; 4]) -> [u8; 6] {
    [0x01, 0x00, 0x5e, group[1] & 0x7f, group[2], group[3]]
}

/// Internet checksum (RFC 1071) of `data` (even length), in network byte
/// order bytes.
#[inline(always)]
pub fn inet_checksum<const N: usize>(data: &[u8; N]) -> [u8; 2] {
    let mut sum: u32 = 0;
    let mut i = 0;
    while i + 1 < N {
        sum += u32::from(u16::from_be_bytes([data[i], data[i + 1]]));
        i += 2;
    }
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    (!(sum as u16)).to_be_bytes()
}

/// Length of an ICMP "fragmentation needed" frame built by
/// [`icmp_frag_needed`]: Ethernet, IPv4, ICMP, and the offending IPv4
/// header (no options) with the first 8 bytes of its payload.
pub const ICMP_FRAG_LEN: usize = ETH_HLEN + IPV4_HLEN + 8 + IPV4_HLEN + 8;

/// Builds the ICMP "destination unreachable, fragmentation needed" (type
/// 3, code 4) that tells the sender of `orig` (its Ethernet header, then
/// the first 28 bytes of its IPv4 packet) to use `mtu`. It comes from the
/// original destination address, as the kernel's tunnels do it
/// (`iptunnel_pmtud_build_icmp`), so the sender's socket accepts it.
#[inline(always)]
pub fn icmp_frag_needed(
    orig: &[u8; ETH_HLEN + IPV4_HLEN + 8],
    mtu: u16,
    ttl: u8,
) -> [u8; ICMP_FRAG_LEN] {
    let mut f = [0u8; ICMP_FRAG_LEN];
    let mut i = 0;
    while i < 6 {
        f[i] = orig[6 + i]; // to the sender's MAC
        f[6 + i] = orig[i]; // from the MAC it sent to
        i += 1;
    }
    f[12] = (ETH_P_IP >> 8) as u8;
    f[13] = ETH_P_IP as u8;
    let ip = ETH_HLEN;
    let tot = ((IPV4_HLEN + 8 + IPV4_HLEN + 8) as u16).to_be_bytes();
    f[ip] = 0x45;
    f[ip + 2] = tot[0];
    f[ip + 3] = tot[1];
    f[ip + 8] = ttl;
    f[ip + 9] = 1; // ICMP
    let mut j = 0;
    while j < 4 {
        f[ip + 12 + j] = orig[ETH_HLEN + 16 + j]; // from the original destination
        f[ip + 16 + j] = orig[ETH_HLEN + 12 + j]; // to the original source
        j += 1;
    }
    let mut hdr = [0u8; IPV4_HLEN];
    let mut k = 0;
    while k < IPV4_HLEN {
        hdr[k] = f[ip + k];
        k += 1;
    }
    let c = ipv4_checksum(&hdr);
    f[ip + 10] = c[0];
    f[ip + 11] = c[1];
    let icmp = ip + IPV4_HLEN;
    let m = mtu.to_be_bytes();
    f[icmp] = 3;
    f[icmp + 1] = 4;
    f[icmp + 6] = m[0];
    f[icmp + 7] = m[1];
    let mut n = 0;
    while n < IPV4_HLEN + 8 {
        f[icmp + 8 + n] = orig[ETH_HLEN + n];
        n += 1;
    }
    let mut msg = [0u8; 8 + IPV4_HLEN + 8];
    let mut q = 0;
    while q < msg.len() {
        msg[q] = f[icmp + q];
        q += 1;
    }
    let c = inet_checksum(&msg);
    f[icmp + 2] = c[0];
    f[icmp + 3] = c[1];
    f
}

/// Whether an ICMP error may be sent about this IPv4 packet (its first 28
/// bytes): not about a non-initial fragment, an ICMP error, a source that
/// is not a unicast host, or a broadcast or multicast destination (RFC
/// 1122 §3.2.2, as the kernel's `iptunnel_pmtud_check_icmp`).
#[inline(always)]
pub const fn icmp_error_allowed(ip: &[u8; IPV4_HLEN + 8]) -> bool {
    let frag_off = (((ip[6] & 0x1f) as u16) << 8) | ip[7] as u16;
    if frag_off != 0 {
        return false;
    }
    let (s, d) = (ip[12], ip[16]);
    let bad_src = s == 0 || s == 127 || s >= 224;
    let bcast_dst = ip[16] == 255 && ip[17] == 255 && ip[18] == 255 && ip[19] == 255;
    if bad_src || d >= 224 || bcast_dst {
        return false;
    }
    // ICMP errors: destination unreachable, source quench, redirect, time
    // exceeded, parameter problem.
    let ihl = (ip[0] & 0x0f) as usize * 4;
    if ip[9] == 1 && ihl == IPV4_HLEN {
        let t = ip[IPV4_HLEN];
        if t == 3 || t == 4 || t == 5 || t == 11 || t == 12 {
            return false;
        }
    }
    true
}

/// ECN codepoints (the low two bits of the TOS / traffic class).
pub const ECN_NOT_ECT: u8 = 0;
pub const ECN_ECT1: u8 = 1;
pub const ECN_ECT0: u8 = 2;
pub const ECN_CE: u8 = 3;

/// What decapsulation does to the inner packet's ECN field (RFC 6040).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EcnDecap {
    /// Leave it.
    Keep,
    /// Set it to this codepoint.
    Set(u8),
    /// Drop the frame: CE outside, Not-ECT inside.
    Drop,
}

/// RFC 6040 decapsulation, as the kernel's `INET_ECN_decapsulate`: outer
/// CE is copied into an ECT inner packet; CE over Not-ECT is dropped (the
/// congestion signal cannot be passed on); outer ECT(1) turns an inner
/// ECT(0) into ECT(1); everything else leaves the inner packet alone.
#[inline(always)]
pub const fn ecn_decap(outer_tos: u8, inner_ds: u8) -> EcnDecap {
    let (outer, inner) = (outer_tos & 3, inner_ds & 3);
    if inner == ECN_NOT_ECT {
        return if outer == ECN_CE {
            EcnDecap::Drop
        } else {
            EcnDecap::Keep
        };
    }
    if outer == ECN_CE && inner != ECN_CE {
        return EcnDecap::Set(ECN_CE);
    }
    if outer == ECN_ECT1 && inner == ECN_ECT0 {
        return EcnDecap::Set(ECN_ECT1);
    }
    EcnDecap::Keep
}

/// The IPv4 header checksum after the 16-bit word `old` (network order)
/// of the header became `new` (RFC 1624, eqn. 3).
#[inline(always)]
pub const fn csum_replace16(check: u16, old: u16, new: u16) -> u16 {
    let mut sum = (!check as u32) + (!old as u32 & 0xffff) + new as u32;
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    !(sum as u16)
}

/// True for source addresses no VTEP sends from, which the kernel's IP
/// layer refuses as martians (`ip_route_input_slow`): multicast, limited
/// broadcast, 0.0.0.0/8 and loopback (127.0.0.0/8, arriving on a device
/// other than `lo`).
#[inline(always)]
pub const fn is_bad_source_ip(ip: &[u8; 4]) -> bool {
    let bcast = ip[0] == 255 && ip[1] == 255 && ip[2] == 255 && ip[3] == 255;
    is_multicast_ip(ip) || bcast || ip[0] == 0 || ip[0] == 127
}

#[cfg(test)]
mod ecn_tests {
    use super::*;

    #[test]
    fn rfc6040_table() {
        use EcnDecap::*;
        // Rows: inner; columns: outer Not-ECT, ECT(1), ECT(0), CE.
        let want = [
            [Keep, Keep, Keep, Drop],
            [Keep, Keep, Keep, Set(ECN_CE)],
            [Keep, Set(ECN_ECT1), Keep, Set(ECN_CE)],
            [Keep, Keep, Keep, Keep],
        ];
        for inner in 0..4u8 {
            for outer in 0..4u8 {
                assert_eq!(
                    ecn_decap(outer | 0xb8, inner | 0x28),
                    want[inner as usize][outer as usize],
                    "outer {outer} inner {inner}"
                );
            }
        }
    }

    #[test]
    fn incremental_checksum_matches_recomputed() {
        let mut h = [
            0x45, 0x02, 0, 60, 0, 1, 0x40, 0, 64, 6, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2,
        ];
        let c = ipv4_checksum(&h);
        h[10..12].copy_from_slice(&c);
        let old = u16::from_be_bytes([h[0], h[1]]);
        h[1] = 0x03;
        let new = u16::from_be_bytes([h[0], h[1]]);
        let inc = csum_replace16(u16::from_be_bytes(c), old, new);
        assert_eq!(inc.to_be_bytes(), ipv4_checksum(&h));
    }
}
