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
    let mut sum: u32 = 0;
    let mut i = 0;
    while i < IPV4_HLEN {
        if i != 10 {
            sum += u32::from(u16::from_be_bytes([hdr[i], hdr[i + 1]]));
        }
        i += 2;
    }
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

/// Builds the 50 bytes of outer Ethernet, IPv4, UDP and VXLAN headers for an
/// inner frame of `inner_len` bytes. UDP checksum is 0 (allowed for IPv4 and
/// what lets GSO segment the tunnel cheaply); DF is clear, as the kernel
/// vxlan driver's default.
#[inline(always)]
pub fn build_outer(o: &Outer, inner_len: u16) -> [u8; ENCAP_LEN] {
    let mut h = [0u8; ENCAP_LEN];
    // Ethernet
    let mut i = 0;
    while i < 6 {
        h[i] = o.dst_mac[i];
        h[6 + i] = o.src_mac[i];
        i += 1;
    }
    h[12] = (ETH_P_IP >> 8) as u8;
    h[13] = ETH_P_IP as u8;
    // IPv4
    let tot_len = inner_len
        .wrapping_add((IPV4_HLEN + UDP_HLEN + VXLAN_HLEN) as u16)
        .to_be_bytes();
    let id = o.ip_id.to_be_bytes();
    let ip = OFF_IP;
    h[ip] = 0x45;
    h[ip + 1] = o.tos;
    h[ip + 2] = tot_len[0];
    h[ip + 3] = tot_len[1];
    h[ip + 4] = id[0];
    h[ip + 5] = id[1];
    // flags/fragment offset: 0 (DF clear)
    h[ip + 8] = o.ttl;
    h[ip + 9] = IPPROTO_UDP;
    let mut j = 0;
    while j < 4 {
        h[ip + 12 + j] = o.src_ip[j];
        h[ip + 16 + j] = o.dst_ip[j];
        j += 1;
    }
    set_ipv4_checksum(&mut h);
    // UDP
    let udp_len = inner_len
        .wrapping_add((UDP_HLEN + VXLAN_HLEN) as u16)
        .to_be_bytes();
    let sp = o.src_port.to_be_bytes();
    let dp = o.dst_port.to_be_bytes();
    let u = OFF_UDP;
    h[u] = sp[0];
    h[u + 1] = sp[1];
    h[u + 2] = dp[0];
    h[u + 3] = dp[1];
    h[u + 4] = udp_len[0];
    h[u + 5] = udp_len[1];
    // checksum 0
    // VXLAN
    let v = OFF_VXLAN;
    h[v] = VXLAN_FLAG_I;
    let vni = o.vni.to_be_bytes();
    h[v + 4] = vni[1];
    h[v + 5] = vni[2];
    h[v + 6] = vni[3];
    h
}

/// Rewrites the outer destination (MAC and IP) of headers built by
/// [`build_outer`] and fixes the IPv4 checksum: one flood copy per remote.
#[inline(always)]
pub fn retarget_outer(h: &mut [u8; ENCAP_LEN], dst_mac: &[u8; 6], src_mac: &[u8; 6], dst_ip: &[u8; 4]) {
    let mut i = 0;
    while i < 6 {
        h[i] = dst_mac[i];
        h[6 + i] = src_mac[i];
        i += 1;
    }
    let mut j = 0;
    while j < 4 {
        h[OFF_IP + 16 + j] = dst_ip[j];
        j += 1;
    }
    set_ipv4_checksum(h);
}

#[inline(always)]
fn set_ipv4_checksum(h: &mut [u8; ENCAP_LEN]) {
    let mut ip = [0u8; IPV4_HLEN];
    let mut k = 0;
    while k < IPV4_HLEN {
        ip[k] = h[OFF_IP + k];
        k += 1;
    }
    let c = ipv4_checksum(&ip);
    h[OFF_IP + 10] = c[0];
    h[OFF_IP + 11] = c[1];
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
