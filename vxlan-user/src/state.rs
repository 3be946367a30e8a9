//! The FDB across restarts: the forwarder writes its table (static and
//! learned entries, default remotes) to a state file every few seconds and
//! when it stops, and reads it back when it starts with the same uplink in
//! the same network namespace. `vxlan-fwd fdb flush` is how to forget it.
//!
//! The file is named after the network namespace's cookie (unique for the
//! life of the machine, unlike its inode number) and the uplink, under
//! `/run/vxlan-fwd` (`$VXLAN_FWD_STATE_DIR` overrides). `/run` is shared by
//! `ip netns exec`, whose mount namespace only replaces /sys.

use std::{
    collections::{BTreeMap, HashMap as StdHashMap},
    net::Ipv4Addr,
    path::PathBuf,
};

use anyhow::{Context as _, Result, anyhow};
use serde::{Deserialize, Serialize};
use vxlan_common::{FDB_F_STATIC, FdbEntry, FdbKey};

use crate::{
    fdb,
    maps::Maps,
    netlink::{format_mac, parse_mac},
};

#[derive(Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Saved {
    pub entries: Vec<SavedEntry>,
    /// Default remotes per VNI.
    pub remotes: BTreeMap<u32, Vec<Ipv4Addr>>,
}

#[derive(Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SavedEntry {
    pub vni: u32,
    pub mac: String,
    pub dst: Option<Ipv4Addr>,
    /// Local port by name: ifindexes change when a port is recreated.
    pub dev: Option<String>,
    #[serde(rename = "static")]
    pub is_static: bool,
}

/// The network namespace's cookie (SO_NETNS_COOKIE).
fn netns_cookie() -> Result<u64> {
    let sock = std::net::UdpSocket::bind("0.0.0.0:0").context("socket for SO_NETNS_COOKIE")?;
    let mut cookie: u64 = 0;
    let mut len = std::mem::size_of::<u64>() as libc::socklen_t;
    // SAFETY: valid fd, out pointer and length.
    let rc = unsafe {
        libc::getsockopt(
            std::os::fd::AsRawFd::as_raw_fd(&sock),
            libc::SOL_SOCKET,
            libc::SO_NETNS_COOKIE,
            (&mut cookie as *mut u64).cast(),
            &mut len,
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error()).context("getsockopt(SO_NETNS_COOKIE)");
    }
    Ok(cookie)
}

/// The state file of the forwarder on `uplink` in this network namespace.
pub fn path(uplink: &str) -> Result<PathBuf> {
    let dir = std::env::var_os("VXLAN_FWD_STATE_DIR")
        .map_or_else(|| PathBuf::from("/run/vxlan-fwd"), PathBuf::from);
    Ok(dir.join(format!("netns-{}-{uplink}.json", netns_cookie()?)))
}

/// The table as it is now.
pub fn snapshot(maps: &Maps, names: &StdHashMap<u32, String>) -> Result<Saved> {
    let mut saved = Saved::default();
    for item in maps.vnis.iter() {
        let (vni, info) = item?;
        saved.remotes.insert(vni, fdb::remotes_of(&info));
    }
    for item in maps.fdb.iter() {
        let (k, e) = item?;
        let dev = match e.is_local() {
            true => match names.get(&e.ifindex) {
                Some(n) => Some(n.clone()),
                None => continue,
            },
            false => None,
        };
        saved.entries.push(SavedEntry {
            vni: k.vni,
            mac: format_mac(&k.mac),
            dst: (!e.is_local()).then(|| Ipv4Addr::from(e.remote)),
            dev,
            is_static: e.is_static(),
        });
    }
    saved.entries.sort_by(|a, b| (a.vni, &a.mac).cmp(&(b.vni, &b.mac)));
    Ok(saved)
}

/// Writes `saved` atomically (temporary file, then rename).
pub fn save(path: &std::path::Path, saved: &Saved) -> Result<()> {
    let dir = path.parent().ok_or_else(|| anyhow!("state path has no directory"))?;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, serde_json::to_vec_pretty(saved)?)
        .with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("renaming to {}", path.display()))?;
    Ok(())
}

pub fn load(path: &std::path::Path) -> Result<Option<Saved>> {
    match std::fs::read(path) {
        Ok(bytes) => Ok(Some(
            serde_json::from_slice(&bytes).with_context(|| format!("parsing {}", path.display()))?,
        )),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

/// Puts saved entries back: default remotes of VNIs still configured are
/// added to the configured ones; entries of configured VNIs whose port
/// (for local ones) is still a port of that VNI are restored, learned ones
/// as just seen. Returns how many entries were restored.
pub fn restore(
    maps: &mut Maps,
    saved: &Saved,
    port_of: &StdHashMap<String, (u32, u32)>,
    now_ns: u64,
) -> Result<usize> {
    for (vni, remotes) in &saved.remotes {
        fdb::merge_remotes(maps, *vni, remotes)?;
    }
    let mut n = 0;
    for e in &saved.entries {
        if maps.vnis.get(&e.vni, 0).is_err() {
            continue;
        }
        let Ok(mac) = parse_mac(&e.mac) else { continue };
        let mut entry = FdbEntry {
            flags: if e.is_static { FDB_F_STATIC } else { 0 },
            last_seen_ns: now_ns,
            ..Default::default()
        };
        match (&e.dst, &e.dev) {
            (Some(dst), _) => entry.remote = dst.octets(),
            (None, Some(dev)) => match port_of.get(dev) {
                Some(&(ifindex, vni)) if vni == e.vni => entry.ifindex = ifindex,
                _ => continue,
            },
            (None, None) => continue,
        }
        if maps.fdb.insert(FdbKey::new(e.vni, mac), entry, 0).is_ok() {
            n += 1;
        }
    }
    fdb::recount_learned(maps)?;
    Ok(n)
}
