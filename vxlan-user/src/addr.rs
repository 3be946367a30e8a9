//! Underlay addresses as userspace handles them: one type, [`IpAddr`], for
//! a VTEP of either family, turned into the datapath's
//! [`VtepAddr`](vxlan_common::VtepAddr) only where a map is written.
//!
//! - [`parse_ip`], [`parse_cidr`]: the one parser of addresses and
//!   prefixes for the command line, the config file and the `fdb` words
//!   (an IPv4-mapped IPv6 address is the IPv4 address);
//! - [`Family`]: a VNI's underlay family, which follows its remotes or
//!   group ([`vni_family`]);
//! - [`Locals`]: the local VTEP address of each family;
//! - [`allowed_key`]: the ALLOWED trie key of a sender prefix.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use vxlan_common::{
    ALLOW_DATA_LEN, V4_MAPPED_PREFIX_BITS, allow_data, vtep_canonical, vtep_from_ip,
    wire::OVERHEAD, wire6::OVERHEAD6,
};

/// A sender prefix (`allow_remote`), IPv4 or IPv6; serialized as
/// `addr/len`.
pub type Cidr = ipnet::IpNet;

/// The underlay family of a VNI.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Family {
    V4,
    V6,
}

impl Family {
    pub fn of(ip: &IpAddr) -> Self {
        match ip {
            IpAddr::V4(_) => Self::V4,
            IpAddr::V6(_) => Self::V6,
        }
    }

    pub const fn name(self) -> &'static str {
        match self {
            Self::V4 => "IPv4",
            Self::V6 => "IPv6",
        }
    }

    /// Bytes the outer headers take from the uplink's MTU: the overlay
    /// MTU is the uplink's minus this (50 over IPv4, 70 over IPv6).
    pub const fn overhead(self) -> u32 {
        match self {
            Self::V4 => OVERHEAD,
            Self::V6 => OVERHEAD6,
        }
    }
}

impl std::fmt::Display for Family {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Parses an IPv4 or IPv6 address (`192.168.57.54`, `fd00:57::2`); an
/// IPv4-mapped IPv6 address is the IPv4 address.
pub fn parse_ip(s: &str) -> Result<IpAddr, String> {
    s.parse::<IpAddr>()
        .map(vtep_canonical)
        .map_err(|_| format!("'{s}' is not an IPv4 address or an IPv6 address"))
}

/// Parses `addr/len` or a bare address (a host prefix), either family.
/// Host bits are cleared (`10.1.2.3/8` is `10.0.0.0/8`); an IPv4-mapped
/// IPv6 prefix of at least /96 is the IPv4 prefix.
pub fn parse_cidr(s: &str) -> Result<Cidr, String> {
    let bad = || format!("'{s}' is not an IP prefix (like 192.168.57.0/24 or fd00:57::/64)");
    let net = s
        .parse::<Cidr>()
        .or_else(|_| s.parse::<IpAddr>().map(Cidr::from))
        .map_err(|_| bad())?;
    Ok(canonical_cidr(net))
}

/// `net` with its host bits cleared, an IPv4-mapped one as IPv4.
pub fn canonical_cidr(net: Cidr) -> Cidr {
    if let Cidr::V6(n) = net
        && let Some(v4) = n.addr().to_ipv4_mapped()
        && u32::from(n.prefix_len()) >= V4_MAPPED_PREFIX_BITS
    {
        let len = n.prefix_len() - V4_MAPPED_PREFIX_BITS as u8;
        if let Ok(n4) = ipnet::Ipv4Net::new(v4, len) {
            return Cidr::V4(n4.trunc());
        }
    }
    net.trunc()
}

/// The ALLOWED trie key of sender prefix `net` in VNI `vni`: its length
/// over the VNI and the [`VtepAddr`](vxlan_common::VtepAddr) (32 + 96 + n
/// for an IPv4 /n, 32 + n for an IPv6 /n; the datapath looks up with
/// 32 + 128) and its data.
pub fn allowed_key(vni: u32, net: &Cidr) -> (u32, [u8; ALLOW_DATA_LEN]) {
    let net = canonical_cidr(*net);
    let bits = match net {
        Cidr::V4(n) => V4_MAPPED_PREFIX_BITS + u32::from(n.prefix_len()),
        Cidr::V6(n) => u32::from(n.prefix_len()),
    };
    (32 + bits, allow_data(vni, &vtep_from_ip(net.network())))
}

/// The ALLOWED trie key of one sender.
pub fn allowed_host_key(vni: u32, ip: IpAddr) -> (u32, [u8; ALLOW_DATA_LEN]) {
    allowed_key(vni, &Cidr::from(vtep_canonical(ip)))
}

/// The local VTEP address of each family (`--local`, given once per
/// family, or the uplink's own).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Locals {
    pub v4: Option<Ipv4Addr>,
    pub v6: Option<Ipv6Addr>,
}

impl Locals {
    /// From a list with at most one address of each family; `Err` names
    /// the two of one family.
    pub fn from_list(list: &[IpAddr]) -> Result<Self, String> {
        let mut l = Self::default();
        for ip in list {
            if let Some(old) = l.get(Family::of(ip)) {
                return Err(format!(
                    "two local {} addresses, {old} and {ip}: give at most one of each family",
                    Family::of(ip)
                ));
            }
            l.set(*ip);
        }
        Ok(l)
    }

    /// The addresses, IPv4 first.
    pub fn list(&self) -> Vec<IpAddr> {
        self.v4
            .map(IpAddr::V4)
            .into_iter()
            .chain(self.v6.map(IpAddr::V6))
            .collect()
    }

    pub fn get(&self, f: Family) -> Option<IpAddr> {
        match f {
            Family::V4 => self.v4.map(IpAddr::V4),
            Family::V6 => self.v6.map(IpAddr::V6),
        }
    }

    pub fn set(&mut self, ip: IpAddr) {
        match vtep_canonical(ip) {
            IpAddr::V4(a) => self.v4 = Some(a),
            IpAddr::V6(a) => self.v6 = Some(a),
        }
    }

    /// The family of a VNI that names no address (no remotes, no group):
    /// IPv4, unless there is only an IPv6 local address.
    pub fn default_family(&self) -> Family {
        match (self.v4, self.v6) {
            (None, Some(_)) => Family::V6,
            _ => Family::V4,
        }
    }

    /// Whether `ip` is one of ours.
    pub fn contains(&self, ip: &IpAddr) -> bool {
        self.get(Family::of(ip)) == Some(*ip)
    }

    /// Fills the families this one lacks from `other`.
    pub fn or(self, other: Self) -> Self {
        Self {
            v4: self.v4.or(other.v4),
            v6: self.v6.or(other.v6),
        }
    }
}

impl std::fmt::Display for Locals {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let l: Vec<String> = self.list().iter().map(ToString::to_string).collect();
        if l.is_empty() {
            f.write_str("none")
        } else {
            f.write_str(&l.join(" "))
        }
    }
}

/// The underlay family VNI `id`'s addresses (remotes, then group) agree
/// on, `None` if it names none. `Err` names the VNI and two addresses of
/// different families: one VNI runs over one family.
pub fn vni_family<'w, 'a>(
    id: u32,
    addrs: impl IntoIterator<Item = (&'w str, &'a IpAddr)>,
) -> Result<Option<Family>, String> {
    let mut first: Option<(&str, &IpAddr)> = None;
    for (what, ip) in addrs {
        match first {
            None => first = Some((what, ip)),
            Some((w0, ip0)) if Family::of(ip0) != Family::of(ip) => {
                return Err(family_mix(id, (w0, ip0), (what, ip)));
            }
            Some(_) => {}
        }
    }
    Ok(first.map(|(_, ip)| Family::of(ip)))
}

/// The error of an address of the other family than VNI `id`'s.
pub fn family_mix(id: u32, a: (&str, &IpAddr), b: (&str, &IpAddr)) -> String {
    format!(
        "VNI {id} mixes underlay families: {} {} is {} but {} {} is {} (one VNI runs over one \
         family)",
        a.0,
        a.1,
        Family::of(a.1),
        b.0,
        b.1,
        Family::of(b.1)
    )
}

/// A VNI's addresses as [`vni_family`] takes them.
pub fn vni_addrs<'a>(
    remotes: impl IntoIterator<Item = &'a IpAddr>,
    group: Option<&'a IpAddr>,
) -> impl Iterator<Item = (&'static str, &'a IpAddr)> {
    remotes
        .into_iter()
        .map(|r| ("remote", r))
        .chain(group.map(|g| ("group", g)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn parses_both_families() {
        assert_eq!(parse_ip("192.168.57.54"), Ok(ip("192.168.57.54")));
        assert_eq!(parse_ip("fd00:57::2"), Ok(ip("fd00:57::2")));
        assert_eq!(parse_ip("::ffff:10.0.0.1"), Ok(ip("10.0.0.1")), "mapped");
        for bad in ["192.168.57", "fd00::57::2", "", "eth0", "10.0.0.1/8"] {
            let e = parse_ip(bad).unwrap_err();
            assert!(
                e.contains("is not an IPv4 address or an IPv6 address"),
                "{bad}: {e}"
            );
        }
    }

    #[test]
    fn prefixes_both_families() {
        assert_eq!(parse_cidr("10.1.2.3/8").unwrap().to_string(), "10.0.0.0/8");
        assert_eq!(parse_cidr("10.0.0.7").unwrap().to_string(), "10.0.0.7/32");
        assert_eq!(
            parse_cidr("fd00:57::9/64").unwrap().to_string(),
            "fd00:57::/64"
        );
        assert_eq!(
            parse_cidr("fd00:57::9").unwrap().to_string(),
            "fd00:57::9/128"
        );
        assert_eq!(
            parse_cidr("::ffff:10.0.0.0/104").unwrap().to_string(),
            "10.0.0.0/8"
        );
        for bad in ["10.0.0.0/33", "fd00::/129", "x/8", "10.0.0.0/", ""] {
            assert!(parse_cidr(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn allowed_prefix_lengths() {
        // IPv4 /n: 32 (the VNI) + 96 (the mapped prefix) + n.
        let (len, data) = allowed_key(42, &parse_cidr("10.0.0.0/8").unwrap());
        assert_eq!(len, 32 + 96 + 8);
        assert_eq!(&data[..4], &42u32.to_be_bytes());
        assert_eq!(
            &data[4..],
            &[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 10, 0, 0, 0]
        );
        assert_eq!(allowed_host_key(42, ip("10.0.0.2")).0, 32 + 128);
        // IPv6 /n: 32 + n.
        let (len, data) = allowed_key(7, &parse_cidr("fd00:57::/64").unwrap());
        assert_eq!(len, 32 + 64);
        assert_eq!(&data[4..6], &[0xfd, 0]);
        assert_eq!(allowed_host_key(7, ip("fd00:57::2")).0, 32 + 128);
        // Host bits never reach the trie.
        assert_eq!(
            allowed_key(7, &"fd00:57::9/64".parse().unwrap()),
            allowed_key(7, &parse_cidr("fd00:57::/64").unwrap())
        );
        // The datapath's key for a sender matches the host key.
        assert_eq!(
            allowed_host_key(7, ip("fd00:57::2")).1,
            allow_data(7, &vtep_from_ip(ip("fd00:57::2")))
        );
    }

    #[test]
    fn family_of_a_vni() {
        let (r4, r6, g6) = (ip("10.0.0.2"), ip("fd00:57::2"), ip("ff05::100"));
        let none: [&IpAddr; 0] = [];
        assert_eq!(vni_family(1, vni_addrs(none, None)), Ok(None));
        assert_eq!(vni_family(1, vni_addrs([&r4], None)), Ok(Some(Family::V4)));
        assert_eq!(
            vni_family(1, vni_addrs(none, Some(&g6))),
            Ok(Some(Family::V6))
        );
        let e = vni_family(42, vni_addrs([&r4, &r6], None)).unwrap_err();
        assert_eq!(
            e,
            "VNI 42 mixes underlay families: remote 10.0.0.2 is IPv4 but remote fd00:57::2 is \
             IPv6 (one VNI runs over one family)"
        );
        let e = vni_family(9, vni_addrs([&r4], Some(&g6))).unwrap_err();
        assert!(
            e.contains("VNI 9") && e.contains("group ff05::100 is IPv6"),
            "{e}"
        );
    }

    #[test]
    fn locals_per_family() {
        let l = Locals::from_list(&[ip("10.0.0.1"), ip("fd00::1")]).unwrap();
        assert_eq!(l.get(Family::V4), Some(ip("10.0.0.1")));
        assert_eq!(l.get(Family::V6), Some(ip("fd00::1")));
        assert_eq!(l.default_family(), Family::V4);
        assert!(l.contains(&ip("fd00::1")) && !l.contains(&ip("fd00::2")));
        assert_eq!(l.to_string(), "10.0.0.1 fd00::1");
        let e = Locals::from_list(&[ip("fd00::1"), ip("fd00::2")]).unwrap_err();
        assert!(e.contains("fd00::1 and fd00::2"), "{e}");
        let only6 = Locals::from_list(&[ip("fd00::1")]).unwrap();
        assert_eq!(only6.default_family(), Family::V6);
        assert_eq!(Locals::default().default_family(), Family::V4);
        assert_eq!(Family::V4.overhead(), 50);
        assert_eq!(Family::V6.overhead(), 70);
    }
}
