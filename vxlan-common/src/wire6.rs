//! IPv6 wire formats: the ICMPv6 "Packet Too Big" that path MTU discovery
//! of inner IPv6 senders needs (RFC 4443 §3.2, RFC 8201).
//!
//! Pure functions on byte arrays, shared by the datapath and the host-side
//! tests, like [`crate::wire`].

use crate::wire::ETH_HLEN;

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
    use crate::wire::ETH_P_IPV6;

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
