//! Checks of single values and of the VNIs as a whole, shared by parsing
//! and merging.

use super::*;
use crate::addr::Family;
/// Where a VNI's values came from.
#[derive(Clone, Copy)]
pub(super) enum Src<'a> {
    File {
        origin: &'a str,
        lines: Option<&'a VniLines>,
    },
    Cli,
}

/// A value of a VNI.
#[derive(Clone, Copy)]
pub(super) enum Field {
    Id,
    Ports,
    Port(usize),
    Remotes,
    Remote(usize),
    Group,
    HostIf,
}

impl Field {
    fn key(self) -> &'static str {
        match self {
            Field::Id => "id",
            Field::Ports | Field::Port(_) => "ports",
            Field::Remotes | Field::Remote(_) => "remotes",
            Field::Group => "group",
            Field::HostIf => "host_if",
        }
    }

    fn flag(self) -> &'static str {
        match self {
            Field::Id => "--vni",
            Field::Ports | Field::Port(_) => "--port",
            Field::Remotes | Field::Remote(_) => "--remote",
            Field::Group => "--group",
            Field::HostIf => "--host-if",
        }
    }
}

impl Src<'_> {
    fn line(&self, f: Field) -> Option<usize> {
        let Src::File { lines: Some(l), .. } = self else {
            return None;
        };
        let line = match f {
            Field::Id => Some(l.id),
            Field::Ports => l.ports_key,
            Field::Port(i) => l.ports.get(i).copied().or(l.ports_key),
            Field::Remotes => l.remotes_key,
            Field::Remote(i) => l.remotes.get(i).copied().or(l.remotes_key),
            Field::Group => l.group,
            Field::HostIf => l.host_if,
        };
        Some(line.unwrap_or(l.table))
    }

    /// Error prefix: ``file:LINE: key `k` `` or `--flag`.
    fn at(&self, f: Field) -> String {
        match (self, self.line(f)) {
            (Src::File { origin, .. }, Some(n)) => format!("{origin}:{n}: key `{}`", f.key()),
            (Src::File { origin, .. }, None) => format!("{origin}: key `{}`", f.key()),
            (Src::Cli, _) => f.flag().to_owned(),
        }
    }

    /// Short position: `line N`, the file's name or `--flag`.
    fn short(&self, f: Field) -> String {
        match (self, self.line(f)) {
            (Src::File { .. }, Some(n)) => format!("line {n}"),
            (Src::File { origin, .. }, None) => (*origin).to_owned(),
            (Src::Cli, _) => f.flag().to_owned(),
        }
    }
}

/// ` (lines 5 and 12)`, ` (line 5 and --port)`; empty when both are the
/// same place (the error's prefix already names it).
pub(super) fn two_places(a: (Src<'_>, Field), b: (Src<'_>, Field)) -> String {
    let (x, y) = (a.0.short(a.1), b.0.short(b.1));
    match (a.0.line(a.1), b.0.line(b.1)) {
        _ if x == y => String::new(),
        (Some(x), Some(y)) => format!(" (lines {x} and {y})"),
        _ => format!(" ({x} and {y})"),
    }
}

/// Checks each VNI and the VNIs against each other (and the uplink, when
/// known: its name and where it came from).
pub(super) fn check_vnis(
    vnis: &[(&VniConfig, Src<'_>)],
    uplink: Option<(&str, &str)>,
) -> Result<()> {
    for (v, src) in vnis {
        check_vni(v, *src)?;
    }

    let mut ids: HashMap<u32, Src<'_>> = HashMap::new();
    let mut ports: HashMap<&str, (u32, Src<'_>, usize)> = HashMap::new();
    for (v, src) in vnis {
        if let Some(first) = ids.insert(v.id, *src) {
            return Err(anyhow!(
                "{}: VNI {} appears twice{}",
                src.at(Field::Id),
                v.id,
                two_places((first, Field::Id), (*src, Field::Id))
            ));
        }
        for (i, p) in v.ports.iter().enumerate() {
            if let Some((uplink, from)) = uplink
                && p == uplink
            {
                return Err(anyhow!(
                    "{}: port '{p}' of VNI {} is the uplink ({from})",
                    src.at(Field::Port(i)),
                    v.id
                ));
            }
            if let Some((vni, first, j)) = ports.insert(p, (v.id, *src, i)) {
                let places = two_places((first, Field::Port(j)), (*src, Field::Port(i)));
                let what = if vni == v.id {
                    format!("is listed twice in VNI {vni}")
                } else {
                    format!("is in VNI {vni} and VNI {}", v.id)
                };
                return Err(anyhow!(
                    "{}: port '{p}' {what}{places}",
                    src.at(Field::Port(i))
                ));
            }
        }
    }

    let mut host_ifs: HashMap<&str, (u32, Src<'_>)> = HashMap::new();
    for (v, src) in vnis {
        let Some(h) = v.host_if.as_deref() else {
            continue;
        };
        let at = src.at(Field::HostIf);
        if let Some((uplink, from)) = uplink
            && h == uplink
        {
            return Err(anyhow!(
                "{at}: host interface '{h}' of VNI {} is the uplink ({from})",
                v.id
            ));
        }
        if let Some(&(vni, psrc, j)) = ports.get(h) {
            return Err(anyhow!(
                "{at}: host interface '{h}' of VNI {} is also a port of VNI {vni}{}",
                v.id,
                two_places((*src, Field::HostIf), (psrc, Field::Port(j)))
            ));
        }
        if let Some((vni, first)) = host_ifs.insert(h, (v.id, *src)) {
            return Err(anyhow!(
                "{at}: host interface '{h}' is given to VNI {vni} and VNI {}{}",
                v.id,
                two_places((first, Field::HostIf), (*src, Field::HostIf))
            ));
        }
    }
    Ok(())
}

/// Checks one VNI on its own.
pub(super) fn check_vni(v: &VniConfig, src: Src<'_>) -> Result<()> {
    check_vni_id(i64::from(v.id)).map_err(|e| anyhow!("{}: {e}", src.at(Field::Id)))?;
    for (i, p) in v.ports.iter().enumerate() {
        check_ifname(p, IFNAME_MAX, "")
            .map_err(|e| anyhow!("{}: VNI {}: {e}", src.at(Field::Port(i)), v.id))?;
    }
    let local_ports = v.ports.len() + usize::from(v.host_if.is_some());
    if local_ports > MAX_PORTS {
        let counted = if v.host_if.is_some() {
            format!("{} ports plus host_if", v.ports.len())
        } else {
            format!("{} ports", v.ports.len())
        };
        return Err(anyhow!(
            "{}: VNI {} has {counted}; at most {MAX_PORTS} local ports per VNI (host_if counts as \
             one)",
            src.at(Field::Ports),
            v.id
        ));
    }
    if v.remotes.len() > MAX_REMOTES {
        return Err(anyhow!(
            "{}: VNI {} has {} remotes; at most {MAX_REMOTES} per VNI",
            src.at(Field::Remotes),
            v.id,
            v.remotes.len()
        ));
    }
    for (i, r) in v.remotes.iter().enumerate() {
        check_remote(*r).map_err(|e| anyhow!("{}: VNI {}: {e}", src.at(Field::Remote(i)), v.id))?;
    }
    if let Some(g) = v.group {
        check_group(g).map_err(|e| anyhow!("{}: {e}", src.at(Field::Group)))?;
    }
    check_family(v, src)?;
    if let Some(h) = &v.host_if {
        check_ifname(
            h,
            HOST_IF_MAX,
            " (the loader names its peer '<host_if>-fwd')",
        )
        .map_err(|e| anyhow!("{}: {e}", src.at(Field::HostIf)))?;
    }
    Ok(())
}

pub(super) fn check_vni_id(v: i64) -> Result<u32, String> {
    match u32::try_from(v) {
        Ok(id) if (1..=VNI_MAX).contains(&id) => Ok(id),
        _ => Err(format!("VNI {v} is outside 1..{VNI_MAX}")),
    }
}

pub(super) fn check_dstport(v: i64) -> Result<u16, String> {
    match u16::try_from(v) {
        Ok(p) if p != 0 => Ok(p),
        _ => Err(format!("{v} is not a valid UDP port (1..65535)")),
    }
}

pub(super) fn check_ageing(v: i64) -> Result<u64, String> {
    match u64::try_from(v) {
        Ok(s) if s != 0 => Ok(s),
        _ => Err(format!("{v} is invalid; ageing is at least 1 second")),
    }
}

pub(super) fn check_pps(v: i64) -> Result<u32, String> {
    u32::try_from(v)
        .ok()
        .filter(|n| *n >= 1)
        .ok_or_else(|| format!("{v} is not a rate (1..{} frames per second)", u32::MAX))
}

pub(super) fn check_max_fdb(v: i64) -> Result<u32, String> {
    match u32::try_from(v) {
        Ok(n) if n != 0 => Ok(n),
        _ => Err(format!("{v} is invalid; the FDB cap is 1..{}", u32::MAX)),
    }
}

/// The one parser of addresses: one message for a bad address everywhere.
pub(super) use crate::addr::parse_ip;

/// A VNI's remotes and group are of one family ([`crate::addr::vni_family`]);
/// the error points at the first address of the other family.
fn check_family(v: &VniConfig, src: Src<'_>) -> Result<()> {
    let Some(first) = v.remotes.first().or(v.group.as_ref()) else {
        return Ok(());
    };
    let want = Family::of(first);
    let first_what = if v.remotes.is_empty() {
        "group"
    } else {
        "remote"
    };
    let first_at = if v.remotes.is_empty() {
        Field::Group
    } else {
        Field::Remote(0)
    };
    let odd = v
        .remotes
        .iter()
        .enumerate()
        .map(|(i, r)| (Field::Remote(i), "remote", r))
        .chain(v.group.as_ref().map(|g| (Field::Group, "group", g)))
        .find(|(_, _, ip)| Family::of(ip) != want);
    match odd {
        None => Ok(()),
        Some((f, what, ip)) => Err(anyhow!(
            "{}: {}{}",
            src.at(f),
            crate::addr::family_mix(v.id, (first_what, first), (what, ip)),
            two_places((src, first_at), (src, f))
        )),
    }
}

/// A local VTEP address: unicast and, for IPv6, global (a link-local
/// address needs a scope and reaches no other link).
pub(super) fn check_local(ip: IpAddr) -> Result<IpAddr, String> {
    let bad = match ip {
        IpAddr::V4(a) => a.is_unspecified() || a.is_multicast() || a.is_broadcast(),
        IpAddr::V6(a) => a.is_unspecified() || a.is_multicast(),
    };
    if bad {
        return Err(format!("{ip} is not a unicast address"));
    }
    if let IpAddr::V6(a) = ip
        && a.is_unicast_link_local()
    {
        return Err(format!(
            "{ip} is a link-local address; give a global IPv6 address"
        ));
    }
    Ok(ip)
}

pub(super) fn check_remote(ip: IpAddr) -> Result<(), String> {
    let bad = match ip {
        IpAddr::V4(a) => a.is_unspecified() || a.is_broadcast(),
        IpAddr::V6(a) => a.is_unspecified() || a.is_multicast() || a.is_loopback(),
    };
    if bad {
        return Err(format!("{ip} is not a usable remote address"));
    }
    Ok(())
}

pub(super) fn check_group(ip: IpAddr) -> Result<(), String> {
    match ip {
        IpAddr::V4(a) if !a.is_multicast() => Err(format!(
            "{ip} is not an IPv4 multicast address (224.0.0.0/4)"
        )),
        IpAddr::V6(a) if !a.is_multicast() => {
            Err(format!("{ip} is not an IPv6 multicast address (ff00::/8)"))
        }
        _ => Ok(()),
    }
}

/// An interface name the kernel accepts, at most `max` bytes long.
pub(super) fn check_ifname(name: &str, max: usize, why_max: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("the interface name is empty".to_owned());
    }
    if name.len() > max {
        return Err(format!(
            "interface name '{name}' is {} characters long; at most {max} are allowed{why_max}",
            name.len()
        ));
    }
    if name == "."
        || name == ".."
        || name
            .chars()
            .any(|c| c == '/' || c == ':' || c.is_whitespace())
    {
        return Err(format!(
            "'{name}' is not a valid interface name (no '/', ':' or whitespace)"
        ));
    }
    Ok(())
}

/// An etcd endpoint: `http://host:port` or `https://host:port`.
pub fn check_endpoint(s: &str) -> Result<(), String> {
    let bad = || format!("'{s}' is not an etcd endpoint (like http://10.0.0.1:2379)");
    let rest = s
        .strip_prefix("http://")
        .or_else(|| s.strip_prefix("https://"))
        .ok_or_else(bad)?;
    let (host, port) = rest.rsplit_once(':').ok_or_else(bad)?;
    if host.is_empty() || host.contains('/') || port.parse::<u16>().map_or(true, |p| p == 0) {
        return Err(bad());
    }
    Ok(())
}

/// An etcd key prefix: absolute, no empty segment.
pub(super) fn check_prefix(s: &str) -> Result<(), String> {
    if !s.starts_with('/') || s.contains("//") || s.len() > 200 {
        return Err(format!("'{s}' is not a key prefix (like /vxlan-fwd)"));
    }
    Ok(())
}

/// A lease TTL: etcd refuses very short ones.
pub(super) fn check_ttl(v: i64) -> Result<u64, String> {
    if !(2..=3600).contains(&v) {
        return Err(format!("{v} is not a lease TTL in seconds (2..3600)"));
    }
    Ok(v as u64)
}
