//! One address type for a VTEP on the underlay, IPv4 or IPv6.
//!
//! A [`VtepAddr`] is 16 bytes in network order: an IPv6 address, or an
//! IPv4 address mapped into `::ffff:0:0/96` (RFC 4291 §2.5.5.2), as
//! Cilium's tunnel endpoints and `std`'s `Ipv6Addr::to_ipv4_mapped` do.
//! The family is the mapped prefix: no separate flag can disagree with
//! the bytes. The datapath, the maps, the state file and the control
//! plane all carry this one type.

/// A VTEP's underlay address: IPv6, or IPv4-mapped.
pub type VtepAddr = [u8; 16];

/// The all-zeros address: no VTEP (a local FDB entry, no group).
pub const VTEP_NONE: VtepAddr = [0; 16];

/// Length of the `::ffff:0:0/96` prefix, in bits: an IPv4 /n is a
/// `VtepAddr` /(96 + n).
pub const V4_MAPPED_PREFIX_BITS: u32 = 96;

/// The IPv4 address `a` as a [`VtepAddr`].
#[inline(always)]
pub const fn vtep_v4(a: [u8; 4]) -> VtepAddr {
    [
        0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, a[0], a[1], a[2], a[3],
    ]
}

/// Whether `a` is an IPv4 VTEP (IPv4-mapped).
#[inline(always)]
pub const fn vtep_is_v4(a: &VtepAddr) -> bool {
    (a[0] | a[1] | a[2] | a[3] | a[4] | a[5] | a[6] | a[7] | a[8] | a[9]) == 0
        && a[10] == 0xff
        && a[11] == 0xff
}

/// The IPv4 address of an IPv4 VTEP.
#[inline(always)]
pub const fn vtep_as_v4(a: &VtepAddr) -> Option<[u8; 4]> {
    if vtep_is_v4(a) {
        Some([a[12], a[13], a[14], a[15]])
    } else {
        None
    }
}

/// Whether `a` is all zeros (no address).
#[inline(always)]
pub const fn vtep_is_none(a: &VtepAddr) -> bool {
    let mut i = 0;
    while i < 16 {
        if a[i] != 0 {
            return false;
        }
        i += 1;
    }
    true
}

#[cfg(feature = "user")]
mod user {
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

    use super::*;

    /// `ip` as a [`VtepAddr`].
    pub fn vtep_from_ip(ip: IpAddr) -> VtepAddr {
        match ip {
            IpAddr::V4(v4) => vtep_v4(v4.octets()),
            IpAddr::V6(v6) => v6.octets(),
        }
    }

    /// The address a [`VtepAddr`] stands for (IPv4-mapped ones as IPv4).
    pub fn vtep_to_ip(a: &VtepAddr) -> IpAddr {
        match vtep_as_v4(a) {
            Some(v4) => IpAddr::V4(Ipv4Addr::from(v4)),
            None => IpAddr::V6(Ipv6Addr::from(*a)),
        }
    }

    /// `ip` as the one value it is as a VTEP: an IPv4-mapped IPv6 address
    /// (`::ffff:192.0.2.1`) is the IPv4 address, anything else itself.
    pub fn vtep_canonical(ip: IpAddr) -> IpAddr {
        vtep_to_ip(&vtep_from_ip(ip))
    }
}

#[cfg(feature = "user")]
pub use user::*;

#[cfg(all(test, feature = "user"))]
mod tests {
    use std::net::IpAddr;

    use super::*;

    #[test]
    fn round_trips_both_families() {
        for s in [
            "192.0.2.7",
            "0.0.0.0",
            "fd00:57::2",
            "::ffff:1.2.3.4",
            "::1",
        ] {
            let ip: IpAddr = s.parse().unwrap();
            let v = vtep_from_ip(ip);
            // A mapped IPv6 address is the IPv4 one: one address, one value.
            let want = match ip {
                IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
                v4 => v4,
            };
            assert_eq!(vtep_to_ip(&v), want, "{s}");
        }
        assert!(vtep_is_v4(&vtep_v4([10, 0, 0, 1])));
        assert_eq!(vtep_as_v4(&vtep_v4([10, 0, 0, 1])), Some([10, 0, 0, 1]));
        let v6: IpAddr = "fd00::1".parse().unwrap();
        assert_eq!(vtep_as_v4(&vtep_from_ip(v6)), None);
        assert!(vtep_is_none(&VTEP_NONE));
        assert!(!vtep_is_none(&vtep_v4([0, 0, 0, 0])));
        let mapped: IpAddr = "::ffff:10.0.0.1".parse().unwrap();
        assert_eq!(
            vtep_canonical(mapped),
            "10.0.0.1".parse::<IpAddr>().unwrap()
        );
        assert_eq!(vtep_canonical(v6), v6);
    }
}
