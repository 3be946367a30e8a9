//! FDB views: `fdb show` rows, ageing.

use std::{collections::HashMap as StdHashMap, net::Ipv4Addr};

use anyhow::Result;
use serde::Serialize;
use vxlan_common::{FDB_F_STATIC, FdbKey};

use crate::{maps::Maps, netlink::format_mac};

/// One line of `fdb show`, one object of `fdb show --json`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct FdbRow {
    pub mac: String,
    /// Remote VTEP, for entries behind one.
    pub dst: Option<Ipv4Addr>,
    /// Local port name, for local entries.
    pub dev: Option<String>,
    pub vni: u32,
    /// Static entry: never aged or overwritten by learning.
    pub permanent: bool,
}

impl std::fmt::Display for FdbRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.mac)?;
        if let Some(dst) = self.dst {
            write!(f, " dst {dst}")?;
        }
        if let Some(dev) = &self.dev {
            write!(f, " dev {dev}")?;
        }
        write!(f, " vni {}", self.vni)?;
        if self.permanent {
            write!(f, " permanent")?;
        }
        Ok(())
    }
}

/// All entries: the default remotes of each VNI (all-zeros MAC, permanent)
/// and the FDB map's entries, sorted by VNI then MAC. `names` maps local
/// ifindexes to names.
pub fn rows(maps: &Maps, names: &StdHashMap<u32, String>) -> Result<Vec<FdbRow>> {
    let mut out = Vec::new();
    for item in maps.vnis.iter() {
        let (vni, info) = item?;
        for r in info.remotes.iter().take(info.n_remotes as usize) {
            out.push(FdbRow {
                mac: format_mac(&[0; 6]),
                dst: Some(Ipv4Addr::from(*r)),
                dev: None,
                vni,
                permanent: true,
            });
        }
    }
    for item in maps.fdb.iter() {
        let (FdbKey { vni, mac, .. }, e) = item?;
        out.push(FdbRow {
            mac: format_mac(&mac),
            dst: (!e.is_local()).then(|| Ipv4Addr::from(e.remote)),
            dev: e.is_local().then(|| {
                names
                    .get(&e.ifindex)
                    .cloned()
                    .unwrap_or_else(|| format!("if{}", e.ifindex))
            }),
            vni,
            permanent: e.flags & FDB_F_STATIC != 0,
        });
    }
    out.sort_by(|a, b| (a.vni, &a.mac, a.dst).cmp(&(b.vni, &b.mac, b.dst)));
    Ok(out)
}

/// Removes learned entries not refreshed for `ageing_ns`. Returns how many.
pub fn age(maps: &mut Maps, ageing_ns: u64, now_ns: u64) -> Result<usize> {
    let stale: Vec<FdbKey> = maps
        .fdb
        .iter()
        .filter_map(Result::ok)
        .filter(|(_, e)| !e.is_static() && now_ns.saturating_sub(e.last_seen_ns) > ageing_ns)
        .map(|(k, _)| k)
        .collect();
    let mut n = 0;
    for k in &stale {
        if maps.fdb.remove(k).is_ok() {
            n += 1;
        }
    }
    Ok(n)
}

/// `CLOCK_MONOTONIC` in nanoseconds: the clock of `bpf_ktime_get_ns`.
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: valid pointer to a timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}
