//! Host unit tests of the pure wire helpers shared with the eBPF programs.

use vxlan_common::wire::{
    ENCAP_LEN, OFF_IP, OFF_UDP, OFF_VXLAN, Outer, build_outer, ecn_encap, flow_src_port,
    ipv4_checksum, is_multicast_mac, is_zero_mac, vxlan_vni,
};

/// Sum of the header as 16-bit words, folded: 0xffff for a valid checksum.
fn fold_sum(hdr: &[u8]) -> u16 {
    let mut sum: u32 = hdr
        .chunks(2)
        .map(|w| u32::from(u16::from_be_bytes([w[0], w[1]])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum as u16
}

#[test]
fn ipv4_checksum_known_vector() {
    // A well-known example header: checksum 0xb861.
    let hdr: [u8; 20] = [
        0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0xb8, 0x61, 0xc0, 0xa8, 0x00,
        0x01, 0xc0, 0xa8, 0x00, 0xc7,
    ];
    assert_eq!(ipv4_checksum(&hdr), [0xb8, 0x61]);
    // The checksum field itself is ignored.
    let mut zeroed = hdr;
    zeroed[10] = 0;
    zeroed[11] = 0;
    assert_eq!(ipv4_checksum(&zeroed), [0xb8, 0x61]);
}

#[test]
fn ipv4_checksum_carries_fold() {
    let hdr = [0xffu8; 20];
    let mut h = hdr;
    let c = ipv4_checksum(&h);
    h[10] = c[0];
    h[11] = c[1];
    assert_eq!(fold_sum(&h), 0xffff);
}

fn sample() -> Outer {
    Outer {
        src_mac: [0x02, 0, 0, 0, 0, 0x50],
        dst_mac: [0x02, 0, 0, 0, 0, 0x54],
        src_ip: [192, 168, 57, 50],
        dst_ip: [192, 168, 57, 54],
        src_port: 45_000,
        dst_port: 4789,
        vni: 42,
        ttl: 64,
        tos: 0x02,
        ip_id: 0x1234,
    }
}

#[test]
fn build_outer_fields() {
    let h = build_outer(&sample(), 98);
    assert_eq!(h.len(), ENCAP_LEN);
    assert_eq!(&h[0..6], &[0x02, 0, 0, 0, 0, 0x54], "outer dst MAC");
    assert_eq!(&h[6..12], &[0x02, 0, 0, 0, 0, 0x50], "outer src MAC");
    assert_eq!(&h[12..14], &[0x08, 0x00], "ethertype IPv4");
    let ip = &h[OFF_IP..OFF_UDP];
    assert_eq!(ip[0], 0x45, "IPv4, no options");
    assert_eq!(ip[1], 0x02, "TOS");
    assert_eq!(u16::from_be_bytes([ip[2], ip[3]]), 98 + 36, "total length");
    assert_eq!(u16::from_be_bytes([ip[4], ip[5]]), 0x1234, "id");
    assert_eq!(&ip[6..8], &[0, 0], "DF clear, not a fragment");
    assert_eq!(ip[8], 64, "TTL");
    assert_eq!(ip[9], 17, "UDP");
    assert_eq!(fold_sum(ip), 0xffff, "header checksum valid");
    assert_eq!(&ip[12..16], &[192, 168, 57, 50]);
    assert_eq!(&ip[16..20], &[192, 168, 57, 54]);
    let udp = &h[OFF_UDP..OFF_VXLAN];
    assert_eq!(u16::from_be_bytes([udp[0], udp[1]]), 45_000);
    assert_eq!(u16::from_be_bytes([udp[2], udp[3]]), 4789);
    assert_eq!(u16::from_be_bytes([udp[4], udp[5]]), 98 + 16, "UDP length");
    assert_eq!(&udp[6..8], &[0, 0], "UDP checksum 0");
    assert_eq!(
        &h[OFF_VXLAN..],
        &[0x08, 0, 0, 0, 0, 0, 42, 0],
        "VXLAN flags + VNI"
    );
}

#[test]
fn build_outer_max_vni_and_checksum_for_many_inputs() {
    let mut o = sample();
    o.vni = 0x00ff_ffff;
    let h = build_outer(&o, 1450);
    assert_eq!(&h[OFF_VXLAN + 4..OFF_VXLAN + 7], &[0xff, 0xff, 0xff]);
    let mut vx = [0u8; 8];
    vx.copy_from_slice(&h[OFF_VXLAN..]);
    assert_eq!(vxlan_vni(&vx), 0x00ff_ffff);
    for (i, len) in [0u16, 1, 60, 1400, 1464, 9000].into_iter().enumerate() {
        o.ip_id = (i as u16).wrapping_mul(7919);
        o.dst_ip = [10, i as u8, 255, 1];
        let h = build_outer(&o, len);
        assert_eq!(fold_sum(&h[OFF_IP..OFF_UDP]), 0xffff, "len {len}");
    }
}

/// The kernel's `udp_flow_src_port()`, written independently.
fn kernel_src_port(mut hash: u32, min: u16, max: u16) -> u16 {
    hash ^= hash << 16;
    ((u64::from(hash) * u64::from(max - min)) >> 32) as u16 + min
}

#[test]
fn flow_src_port_in_kernel_range() {
    let (lo, hi) = (32768, 60999);
    let mut seen = std::collections::HashSet::new();
    let mut x: u32 = 0x9e37_79b9;
    for _ in 0..10_000 {
        x = x.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
        let p = flow_src_port(x, lo, hi);
        assert!((lo..hi).contains(&p), "{p} outside [{lo}, {hi})");
        assert_eq!(p, kernel_src_port(x, lo, hi));
        seen.insert(p);
    }
    assert!(
        seen.len() > 5_000,
        "ports spread for entropy: {} distinct",
        seen.len()
    );
    assert_eq!(flow_src_port(0xdead_beef, 4000, 4000), 4000, "empty range");
    // The same flow always gets the same port.
    assert_eq!(flow_src_port(7, lo, hi), flow_src_port(7, lo, hi));
}

#[test]
fn ecn_copied_ce_becomes_ect0() {
    assert_eq!(ecn_encap(0x00), 0);
    assert_eq!(ecn_encap(0xb8 | 0x01), 0x01, "ECT(1) copied, DSCP not");
    assert_eq!(ecn_encap(0x02), 0x02, "ECT(0)");
    assert_eq!(ecn_encap(0x03), 0x02, "CE becomes ECT(0)");
}

#[test]
fn mac_classes() {
    assert!(is_multicast_mac(&[0xff; 6]));
    assert!(is_multicast_mac(&[0x01, 0x00, 0x5e, 1, 1, 1]));
    assert!(!is_multicast_mac(&[0x02, 0, 0, 0, 0, 1]));
    assert!(is_zero_mac(&[0; 6]));
    assert!(!is_zero_mac(&[0, 0, 0, 0, 0, 1]));
}

#[test]
fn multicast_group_mac_and_class() {
    use vxlan_common::wire::{is_multicast_ip, multicast_mac};
    assert_eq!(
        multicast_mac(&[224, 1, 1, 1]),
        [0x01, 0x00, 0x5e, 0x01, 0x01, 0x01]
    );
    assert_eq!(
        multicast_mac(&[239, 255, 2, 3]),
        [0x01, 0x00, 0x5e, 0x7f, 0x02, 0x03],
        "only the low 23 bits"
    );
    assert!(is_multicast_ip(&[224, 1, 1, 1]));
    assert!(is_multicast_ip(&[239, 255, 255, 255]));
    assert!(!is_multicast_ip(&[192, 168, 57, 54]));
    assert!(!is_multicast_ip(&[240, 0, 0, 1]));
}

#[test]
fn icmp_frag_needed_is_well_formed() {
    use vxlan_common::wire::{ICMP_FRAG_LEN, icmp_frag_needed};
    // Ethernet (to 02..02 from 02..01) + IPv4 172.18.1.2 -> 172.18.1.3, DF,
    // ICMP echo, then 8 payload bytes.
    let mut orig = [0u8; 42];
    orig[..6].copy_from_slice(&[2, 0, 0, 0, 0, 2]);
    orig[6..12].copy_from_slice(&[2, 0, 0, 0, 0, 1]);
    orig[12..14].copy_from_slice(&[8, 0]);
    orig[14..34].copy_from_slice(&[
        0x45, 0, 0x05, 0xdc, 0, 1, 0x40, 0, 64, 1, 0, 0, 172, 18, 1, 2, 172, 18, 1, 3,
    ]);
    orig[34..42].copy_from_slice(&[8, 0, 0xaa, 0xbb, 0, 1, 0, 1]);
    let f = icmp_frag_needed(&orig, 1450, 64);
    assert_eq!(f.len(), ICMP_FRAG_LEN);
    assert_eq!(&f[..6], &[2, 0, 0, 0, 0, 1], "back to the sender's MAC");
    assert_eq!(&f[6..12], &[2, 0, 0, 0, 0, 2]);
    let ip = &f[14..34];
    assert_eq!(fold_sum(ip), 0xffff, "IPv4 checksum");
    assert_eq!(
        u16::from_be_bytes([ip[2], ip[3]]) as usize,
        ICMP_FRAG_LEN - 14
    );
    assert_eq!(ip[9], 1);
    assert_eq!(
        &ip[12..16],
        &[172, 18, 1, 3],
        "from the original destination"
    );
    assert_eq!(&ip[16..20], &[172, 18, 1, 2], "to the original source");
    let icmp = &f[34..];
    assert_eq!((icmp[0], icmp[1]), (3, 4), "fragmentation needed");
    assert_eq!(u16::from_be_bytes([icmp[6], icmp[7]]), 1450, "next-hop MTU");
    assert_eq!(&icmp[8..], &orig[14..42], "original header + 8 bytes");
    assert_eq!(fold_sum(icmp), 0xffff, "ICMP checksum");
}

#[test]
fn icmp_errors_only_where_allowed() {
    use vxlan_common::wire::icmp_error_allowed;
    // DF, TCP, 172.18.1.2 -> 172.18.1.3
    let base: [u8; 28] = [
        0x45, 0, 0x05, 0xdc, 0, 1, 0x40, 0, 64, 6, 0, 0, 172, 18, 1, 2, 172, 18, 1, 3, 0, 80, 0,
        80, 0, 0, 0, 0,
    ];
    assert!(icmp_error_allowed(&base));
    let with = |i: usize, v: u8| {
        let mut h = base;
        h[i] = v;
        h
    };
    assert!(!icmp_error_allowed(&with(7, 0xb9)), "non-initial fragment");
    assert!(
        icmp_error_allowed(&with(6, 0x60)),
        "first fragment (MF) is fine"
    );
    let mut icmp_err = with(9, 1);
    icmp_err[20] = 3;
    assert!(!icmp_error_allowed(&icmp_err), "about an ICMP error");
    icmp_err[20] = 8;
    assert!(icmp_error_allowed(&icmp_err), "about an echo request");
    for s in [0u8, 127, 224, 240, 255] {
        assert!(!icmp_error_allowed(&with(12, s)), "source {s}.x.x.x");
    }
    assert!(!icmp_error_allowed(&with(16, 224)), "multicast destination");
    let mut bcast = base;
    bcast[16..20].copy_from_slice(&[255; 4]);
    assert!(!icmp_error_allowed(&bcast), "broadcast destination");
}
