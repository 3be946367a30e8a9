//! The key schema in etcd (version 1), shared by every forwarder of a
//! fleet:
//!
//! ```text
//! <prefix>/v1/vni/<vni>/vtep/<address>  {"vtep":"<address>"}
//!     a VTEP serving <vni>: a member of its flood list
//! <prefix>/v1/vni/<vni>/mac/<mac>       {"vtep":"<address>","ip":"<IPv4>"}
//!     <address>: a VTEP's IPv4 or IPv6 address (fd00:57::2), in its
//!     canonical text form
//!     an endpoint of <vni> behind <vtep>; "ip" (optional) answers ARP
//! ```
//!
//! `<vni>` is decimal (1..16777215), `<mac>` lower case with colons,
//! addresses in their usual text form. Every key a forwarder writes is
//! attached to its lease: keys go when their forwarder does. Values are
//! JSON objects; unknown fields are ignored (a later minor version may add
//! some), anything else is refused with a message that says why.

use std::{
    collections::{BTreeMap, BTreeSet},
    net::{IpAddr, Ipv4Addr},
};

use serde::{Deserialize, Serialize};
use vxlan_common::VNI_MAX;

use crate::netlink::{format_mac, parse_mac};

/// The schema version: part of every key.
pub const VERSION: &str = "v1";

/// The value of a MAC key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MacValue {
    /// IPv4 or IPv6.
    pub vtep: IpAddr,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip: Option<Ipv4Addr>,
}

/// The value of a VTEP key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VtepValue {
    pub vtep: IpAddr,
}

/// What one key says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Entry {
    Vtep { vni: u32, addr: IpAddr },
    Mac { vni: u32, mac: [u8; 6] },
}

/// Everything the fleet publishes (what a full read or the watch gives).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Table {
    pub vteps: BTreeSet<(u32, IpAddr)>,
    pub macs: BTreeMap<(u32, [u8; 6]), MacValue>,
}

impl Table {
    /// Records a put; `Err` says why the key or value is refused.
    pub fn put(
        &mut self,
        prefix: &str,
        key: &[u8],
        value: &[u8],
    ) -> Result<Option<Change>, String> {
        let Some(entry) = parse_key(prefix, key)? else {
            return Ok(None);
        };
        match entry {
            Entry::Vtep { vni, addr } => {
                if !is_vtep(addr) {
                    return Err(format!("{addr} is not a VTEP address"));
                }
                let v: VtepValue = parse_value(value)?;
                if v.vtep != addr {
                    return Err(format!("the value names {} but the key {addr}", v.vtep));
                }
                self.vteps
                    .insert((vni, addr))
                    .then_some(Change::Vtep {
                        vni,
                        addr,
                        present: true,
                    })
                    .map_or(Ok(None), |c| Ok(Some(c)))
            }
            Entry::Mac { vni, mac } => {
                let v: MacValue = parse_value(value)?;
                if !is_vtep(v.vtep) {
                    return Err(format!("{} is not a VTEP address", v.vtep));
                }
                let old = self.macs.insert((vni, mac), v);
                Ok((old != Some(v)).then_some(Change::Mac {
                    vni,
                    mac,
                    value: Some(v),
                }))
            }
        }
    }

    /// Records a delete.
    pub fn delete(&mut self, prefix: &str, key: &[u8]) -> Result<Option<Change>, String> {
        match parse_key(prefix, key)? {
            None => Ok(None),
            Some(Entry::Vtep { vni, addr }) => {
                Ok(self.vteps.remove(&(vni, addr)).then_some(Change::Vtep {
                    vni,
                    addr,
                    present: false,
                }))
            }
            Some(Entry::Mac { vni, mac }) => {
                Ok(self.macs.remove(&(vni, mac)).map(|_| Change::Mac {
                    vni,
                    mac,
                    value: None,
                }))
            }
        }
    }
}

/// One change to the [`Table`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Change {
    Vtep {
        vni: u32,
        addr: IpAddr,
        present: bool,
    },
    Mac {
        vni: u32,
        mac: [u8; 6],
        value: Option<MacValue>,
    },
}

/// A unicast address a VTEP can have (an IPv4-mapped IPv6 address is
/// refused: the IPv4 address is its one spelling).
fn is_vtep(a: IpAddr) -> bool {
    match a {
        IpAddr::V4(a) => {
            !(a.is_unspecified() || a.is_multicast() || a.is_broadcast() || a.is_loopback())
        }
        IpAddr::V6(a) => {
            !(a.is_unspecified()
                || a.is_multicast()
                || a.is_loopback()
                || a.is_unicast_link_local()
                || a.to_ipv4_mapped().is_some())
        }
    }
}

/// `<prefix>/v1/` (the range every forwarder reads and watches).
pub fn root(prefix: &str) -> String {
    format!("{}/{VERSION}/", prefix.trim_end_matches('/'))
}

pub fn vtep_key(prefix: &str, vni: u32, addr: IpAddr) -> String {
    format!("{}vni/{vni}/vtep/{addr}", root(prefix))
}

pub fn mac_key(prefix: &str, vni: u32, mac: &[u8; 6]) -> String {
    format!("{}vni/{vni}/mac/{}", root(prefix), format_mac(mac))
}

pub fn vtep_value(addr: IpAddr) -> String {
    serde_json::to_string(&VtepValue { vtep: addr }).unwrap_or_default()
}

pub fn mac_value(v: &MacValue) -> String {
    serde_json::to_string(v).unwrap_or_default()
}

/// What a key under [`root`] names: `Ok(None)` for keys of this version
/// that are not ours to read (other kinds, added by a later minor
/// version), `Err` for malformed ones.
pub fn parse_key(prefix: &str, key: &[u8]) -> Result<Option<Entry>, String> {
    let key = std::str::from_utf8(key).map_err(|_| "the key is not UTF-8".to_owned())?;
    let root = root(prefix);
    let Some(rest) = key.strip_prefix(&root) else {
        return Ok(None);
    };
    let parts: Vec<&str> = rest.split('/').collect();
    let ["vni", vni, kind, name] = parts[..] else {
        return Err(format!(
            "'{key}' is not <prefix>/{VERSION}/vni/<vni>/(vtep|mac)/<name>"
        ));
    };
    // Canonical text only: two spellings of one key would alias.
    let vni: u32 = vni
        .parse()
        .ok()
        .filter(|v| (1..=VNI_MAX).contains(v) && v.to_string() == vni)
        .ok_or_else(|| format!("'{vni}' is not a VNI (1..{VNI_MAX}, decimal)"))?;
    match kind {
        "vtep" => {
            let addr: IpAddr = name
                .parse()
                .map_err(|_| format!("'{name}' is not an IP address"))?;
            // Canonical text only: `fd00:0::1` would alias `fd00::1`.
            if addr.to_string() != name {
                return Err(format!("'{name}' is not in canonical form (write {addr})"));
            }
            Ok(Some(Entry::Vtep { vni, addr }))
        }
        "mac" => {
            let mac = parse_mac(name).map_err(|e| format!("{e:#}"))?;
            if format_mac(&mac) != name {
                return Err(format!("'{name}' is not a MAC in lower case with colons"));
            }
            if mac[0] & 1 != 0 || mac == [0; 6] {
                return Err(format!("'{name}' is not a unicast MAC"));
            }
            Ok(Some(Entry::Mac { vni, mac }))
        }
        _ => Ok(None),
    }
}

fn parse_value<T: for<'de> Deserialize<'de>>(value: &[u8]) -> Result<T, String> {
    serde_json::from_slice(value).map_err(|e| format!("bad value: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const P: &str = "/vxlan-fwd";
    const MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x0a];

    fn v4(a: u8, b: u8, c: u8, d: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(a, b, c, d))
    }

    #[test]
    fn keys_round_trip() {
        let k = vtep_key(P, 42, v4(10, 0, 0, 1));
        assert_eq!(k, "/vxlan-fwd/v1/vni/42/vtep/10.0.0.1");
        assert_eq!(
            parse_key(P, k.as_bytes()),
            Ok(Some(Entry::Vtep {
                vni: 42,
                addr: v4(10, 0, 0, 1)
            }))
        );
        let a6: IpAddr = "fd00:57::2".parse().unwrap();
        let k = vtep_key(P, 42, a6);
        assert_eq!(k, "/vxlan-fwd/v1/vni/42/vtep/fd00:57::2");
        assert_eq!(
            parse_key(P, k.as_bytes()),
            Ok(Some(Entry::Vtep { vni: 42, addr: a6 }))
        );
        assert_eq!(vtep_value(a6), r#"{"vtep":"fd00:57::2"}"#);
        let k = mac_key(P, 7, &MAC);
        assert_eq!(k, "/vxlan-fwd/v1/vni/7/mac/02:00:00:00:00:0a");
        assert_eq!(
            parse_key(P, k.as_bytes()),
            Ok(Some(Entry::Mac { vni: 7, mac: MAC }))
        );
        // A trailing slash on the prefix changes nothing.
        assert_eq!(mac_key("/vxlan-fwd/", 7, &MAC), k);
    }

    #[test]
    fn bad_keys_are_refused_with_a_reason() {
        for (key, why) in [
            ("/vxlan-fwd/v1/vni/0/vtep/10.0.0.1", "not a VNI"),
            ("/vxlan-fwd/v1/vni/16777216/vtep/10.0.0.1", "not a VNI"),
            ("/vxlan-fwd/v1/vni/x/mac/02:00:00:00:00:01", "not a VNI"),
            ("/vxlan-fwd/v1/vni/5/vtep/10.0.0", "not an IP address"),
            ("/vxlan-fwd/v1/vni/5/vtep/fd00:0::1", "canonical"),
            ("/vxlan-fwd/v1/vni/5/vtep/FD00::1", "canonical"),
            ("/vxlan-fwd/v1/vni/5/mac/zz:00:00:00:00:01", "MAC"),
            ("/vxlan-fwd/v1/vni/5/mac/ff:ff:ff:ff:ff:ff", "unicast"),
            ("/vxlan-fwd/v1/vni/5/mac", "is not <prefix>"),
            ("/vxlan-fwd/v1/vni/005/vtep/10.0.0.1", "not a VNI"),
            ("/vxlan-fwd/v1/vni/+5/vtep/10.0.0.1", "not a VNI"),
            ("/vxlan-fwd/v1/vni/5/mac/02:00:00:00:00:0A", "lower case"),
            ("/vxlan-fwd/v1/junk", "is not <prefix>"),
        ] {
            let e = parse_key(P, key.as_bytes()).expect_err(key);
            assert!(e.contains(why), "{key}: {e}");
        }
        // Other prefixes and versions, and kinds we do not know: ignored.
        assert_eq!(parse_key(P, b"/other/v1/vni/5/vtep/10.0.0.1"), Ok(None));
        assert_eq!(parse_key(P, b"/vxlan-fwd/v2/vni/5/vtep/10.0.0.1"), Ok(None));
        assert_eq!(parse_key(P, b"/vxlan-fwd/v1/vni/5/route/x"), Ok(None));
        assert!(parse_key(P, b"/vxlan-fwd/v1/\xff").is_err());
    }

    #[test]
    fn table_follows_puts_and_deletes() {
        let mut t = Table::default();
        let k = mac_key(P, 5, &MAC);
        let v = MacValue {
            vtep: v4(10, 0, 0, 2),
            ip: Some(Ipv4Addr::new(192, 168, 0, 2)),
        };
        assert_eq!(
            t.put(P, k.as_bytes(), mac_value(&v).as_bytes()),
            Ok(Some(Change::Mac {
                vni: 5,
                mac: MAC,
                value: Some(v)
            }))
        );
        // The same value again is no change.
        assert_eq!(t.put(P, k.as_bytes(), mac_value(&v).as_bytes()), Ok(None));
        // Extra fields are ignored; "ip" is optional.
        let moved = br#"{"vtep":"10.0.0.3","since":5}"#;
        assert_eq!(
            t.put(P, k.as_bytes(), moved),
            Ok(Some(Change::Mac {
                vni: 5,
                mac: MAC,
                value: Some(MacValue {
                    vtep: v4(10, 0, 0, 3),
                    ip: None
                })
            }))
        );
        assert_eq!(
            t.delete(P, k.as_bytes()),
            Ok(Some(Change::Mac {
                vni: 5,
                mac: MAC,
                value: None
            }))
        );
        assert_eq!(t.delete(P, k.as_bytes()), Ok(None));
        let vk = vtep_key(P, 5, v4(10, 0, 0, 9));
        let vv = vtep_value(v4(10, 0, 0, 9));
        assert!(matches!(
            t.put(P, vk.as_bytes(), vv.as_bytes()),
            Ok(Some(Change::Vtep { present: true, .. }))
        ));
        assert!(t.vteps.contains(&(5, v4(10, 0, 0, 9))));
        // An IPv6 VTEP and an endpoint behind it.
        let a6: IpAddr = "fd00:57::9".parse().unwrap();
        let vk = vtep_key(P, 6, a6);
        assert!(matches!(
            t.put(P, vk.as_bytes(), vtep_value(a6).as_bytes()),
            Ok(Some(Change::Vtep { present: true, .. }))
        ));
        assert!(t.vteps.contains(&(6, a6)));
        let k6 = mac_key(P, 6, &MAC);
        let v6 = br#"{"vtep":"fd00:57::9","ip":"192.168.0.9"}"#;
        assert!(matches!(
            t.put(P, k6.as_bytes(), v6),
            Ok(Some(Change::Mac { value: Some(MacValue { vtep, .. }), .. })) if vtep == a6
        ));
    }

    #[test]
    fn hostile_values_are_refused() {
        let mut t = Table::default();
        let k = mac_key(P, 5, &MAC);
        for v in [
            &b"not json"[..],
            b"{}",
            b"{\"vtep\":\"300.1.1.1\"}",
            b"{\"vtep\":\"0.0.0.0\"}",
            b"{\"vtep\":\"224.0.0.1\"}",
            b"{\"vtep\":\"10.0.0.1\",\"ip\":\"x\"}",
            b"[1,2,3]",
            &[0xff; 64],
        ] {
            assert!(
                t.put(P, k.as_bytes(), v).is_err(),
                "{}",
                String::from_utf8_lossy(v)
            );
        }
        let vk = vtep_key(P, 5, v4(10, 0, 0, 9));
        assert!(t.put(P, vk.as_bytes(), br#"{"vtep":"10.0.0.8"}"#).is_err());
        for a in [
            "0.0.0.0",
            "224.0.0.1",
            "255.255.255.255",
            "127.0.0.1",
            "::",
            "::1",
            "ff05::100",
            "fe80::1",
            "::ffff:10.0.0.1",
        ] {
            let k = format!("/vxlan-fwd/v1/vni/5/vtep/{a}");
            let v = format!("{{\"vtep\":\"{a}\"}}");
            assert!(t.put(P, k.as_bytes(), v.as_bytes()).is_err(), "{a}");
        }
        assert_eq!(t, Table::default());
    }
}
