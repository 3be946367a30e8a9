//! The FDB across restarts: the forwarder writes its table (static and
//! learned entries, each with the time it was last seen) to a state file
//! every 30 s if it changed and when it stops, and reads it back when it
//! starts with the same uplink in the same network namespace (and the same
//! boot), unless it adopts a running datapath, whose live maps are newer.
//! `vxlan-fwd fdb flush` is how to forget entries. Default remotes are not
//! saved here: the configuration and the runtime journal
//! ([`crate::dataplane::journal`]) are their truth. See [`crate::paths`]
//! for where the file lives.

use std::{
    collections::HashMap as StdHashMap,
    hash::{DefaultHasher, Hash as _, Hasher as _},
    io::Write as _,
    path::Path,
};

use anyhow::{Context as _, Result, anyhow};
use serde::{Deserialize, Serialize};
use vxlan_common::{
    FDB_F_STATIC, FdbEntry, FdbKey, VNI_F_IPV6, VTEP_NONE, vtep_from_ip, vtep_is_v4,
};

use crate::{
    batch,
    fdb::{self, FdbRow},
    maps::Maps,
    netlink::parse_mac,
};

#[derive(Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Saved {
    /// The boot the times belong to (`/proc/sys/kernel/random/boot_id`).
    #[serde(default)]
    pub boot_id: String,
    /// Static and learned entries, each with `last_seen_ns` and no
    /// `origin` (the file of the first format wrote `static` for
    /// `permanent` and had no `extern_learn`: it still loads).
    pub entries: Vec<FdbRow>,
}

/// A summary of what a state file holds: equal digests, equal files
/// (entries are written sorted, so the map's order does not matter). It
/// covers what is saved, not `last_seen_ns`: a table whose entries traffic
/// merely refreshed is unchanged.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Digest {
    entries: u64,
    /// Wrapping sum of the entries' hashes: independent of map order.
    sum: u64,
    /// Hash of the port names.
    rest: u64,
}

/// The saved part of the table, read from the maps (FDB entries raw).
struct Table {
    entries: Vec<(FdbKey, FdbEntry)>,
    digest: Digest,
}

impl Table {
    /// One batched read of the FDB. Local entries of ports not in `names`
    /// are left out (they cannot be restored by name).
    fn read(maps: &Maps, names: &StdHashMap<u32, String>) -> Result<Self> {
        let mut entries = Vec::new();
        let mut sum = 0u64;
        batch::for_each(&maps.fdb, |k, e| {
            // The control plane's entries come from it again, not from here.
            if e.is_extern() || (e.is_local() && !names.contains_key(&e.ifindex)) {
                return;
            }
            let mut h = DefaultHasher::new();
            let (remote, ifindex) = match e.is_local() {
                true => (VTEP_NONE, e.ifindex),
                false => (e.remote, 0),
            };
            (k.vni, k.mac, remote, ifindex, e.is_static()).hash(&mut h);
            sum = sum.wrapping_add(h.finish());
            entries.push((*k, *e));
        })?;
        let mut h = DefaultHasher::new();
        let mut ports: Vec<_> = names.iter().collect();
        ports.sort_unstable();
        ports.hash(&mut h);
        let digest = Digest {
            entries: entries.len() as u64,
            sum,
            rest: h.finish(),
        };
        Ok(Self { entries, digest })
    }

    fn saved(mut self, names: &StdHashMap<u32, String>) -> Saved {
        // Fixed-width lowercase hex: MAC bytes sort as their text does.
        self.entries.sort_unstable_by_key(|(k, _)| (k.vni, k.mac));
        let entries = self
            .entries
            .iter()
            .map(|(k, e)| FdbRow {
                permanent: e.is_static(),
                last_seen_ns: Some(e.last_seen_ns),
                ..FdbRow::at(k.vni, &k.mac, &e.remote, e.ifindex, names)
            })
            .collect();
        Saved {
            boot_id: crate::paths::boot_id(),
            entries,
        }
    }
}

/// The table as it is now.
pub fn snapshot(maps: &Maps, names: &StdHashMap<u32, String>) -> Result<Saved> {
    Ok(Table::read(maps, names)?.saved(names))
}

/// Writes the table to `path` unless it is the table the write that set
/// `*last` wrote (and that file is still there). Returns whether it wrote.
/// `*last` starts as `None`: the first call always writes.
pub fn save_if_changed(
    maps: &Maps,
    names: &StdHashMap<u32, String>,
    path: &Path,
    last: &mut Option<Digest>,
) -> Result<bool> {
    let table = Table::read(maps, names)?;
    if *last == Some(table.digest) && path.exists() {
        return Ok(false);
    }
    let digest = table.digest;
    save(path, &table.saved(names))?;
    *last = Some(digest);
    Ok(true)
}

/// Writes `saved` atomically (a 0600 temporary file, never through a
/// symlink, fsynced, then renamed), as compact JSON streamed to the file
/// (a million entries are some 80 MB).
pub fn save(path: &Path, saved: &Saved) -> Result<()> {
    let dir = path
        .parent()
        .ok_or_else(|| anyhow!("state path has no directory"))?;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    crate::paths::write_atomic(path, |f| {
        let mut out = std::io::BufWriter::with_capacity(1 << 16, f);
        serde_json::to_writer(&mut out, saved)?;
        out.flush()?;
        Ok(())
    })
}

pub fn load(path: &Path) -> Result<Option<Saved>> {
    match std::fs::read(path) {
        Ok(bytes) => Ok(Some(
            serde_json::from_slice(&bytes)
                .with_context(|| format!("parsing {}", path.display()))?,
        )),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

/// Puts saved entries back, filtered against what runs now: entries of
/// VNIs that exist; remote ones only if their VTEP is of the VNI's
/// underlay family now; local ones only if their port (by name) is a port
/// of that VNI now. Learned entries keep the time they were last seen when
/// the file is of this boot (else: as just seen). Returns how many.
pub fn restore(
    maps: &mut Maps,
    saved: &Saved,
    port_of: &StdHashMap<String, (u32, u32)>,
    now_ns: u64,
) -> Result<usize> {
    let same_boot = !saved.boot_id.is_empty() && saved.boot_id == crate::paths::boot_id();
    let mut n = 0;
    for e in &saved.entries {
        let Ok(info) = maps.vnis.get(&e.vni, 0) else {
            continue;
        };
        let Ok(mac) = parse_mac(&e.mac) else { continue };
        let seen = e.last_seen_ns.unwrap_or(0);
        let seen = if same_boot && seen <= now_ns {
            seen
        } else {
            now_ns
        };
        let flags = if e.permanent { FDB_F_STATIC } else { 0 };
        let entry = match (&e.dst, &e.dev) {
            (Some(dst), _) => {
                let remote = vtep_from_ip(*dst);
                if vtep_is_v4(&remote) == (info.flags & VNI_F_IPV6 != 0) {
                    continue; // the VNI changed family since
                }
                FdbEntry::new_remote(remote, flags, seen)
            }
            (None, Some(dev)) => match port_of.get(dev) {
                Some(&(ifindex, vni)) if vni == e.vni => FdbEntry::new_local(ifindex, flags, seen),
                _ => continue,
            },
            (None, None) => continue,
        };
        if maps.fdb.insert(FdbKey::new(e.vni, mac), entry, 0).is_ok() {
            n += 1;
        }
    }
    fdb::recount_learned(maps)?;
    Ok(n)
}

#[cfg(test)]
pub(crate) mod tests {
    use std::net::{IpAddr, Ipv4Addr};

    use aya::EbpfLoader;
    use vxlan_common::{VniInfo, map, vtep_v4};

    use super::*;
    use crate::EBPF_OBJ;

    /// A file of the first format (`static`, no `extern_learn`; entries
    /// of before `last_seen_ns`) loads, and is written back in the new one.
    #[test]
    fn old_state_file_loads() {
        let old = r#"{"boot_id":"b","entries":[
            {"vni":42,"mac":"02:00:00:00:00:01","dst":"10.0.0.3","dev":null,"static":true,"last_seen_ns":7},
            {"vni":43,"mac":"02:00:00:00:00:02","dst":null,"dev":"veth0","static":false}]}"#;
        let saved: Saved = serde_json::from_str(old).unwrap();
        let row = |mac: &str, dst, dev: Option<&str>, vni, permanent, last_seen_ns| FdbRow {
            mac: mac.to_owned(),
            dst,
            dev: dev.map(str::to_owned),
            vni,
            permanent,
            last_seen_ns,
            ..Default::default()
        };
        assert_eq!(
            saved.entries,
            [
                row(
                    "02:00:00:00:00:01",
                    Some(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 3))),
                    None,
                    42,
                    true,
                    Some(7)
                ),
                row("02:00:00:00:00:02", None, Some("veth0"), 43, false, None),
            ]
        );
        let again: Saved = serde_json::from_str(&serde_json::to_string(&saved).unwrap()).unwrap();
        assert_eq!(again, saved);
        // An IPv6 remote is stored as its address string.
        let six = r#"{"vni":7,"mac":"02:00:00:00:00:03","dst":"fd00:57::2","dev":null,"permanent":true,"last_seen_ns":0}"#;
        let r: FdbRow = serde_json::from_str(six).unwrap();
        assert_eq!(r.dst, Some("fd00:57::2".parse().unwrap()));
        let text = serde_json::to_string(&r).unwrap();
        assert!(text.contains(r#""dst":"fd00:57::2""#), "{text}");
        assert_eq!(serde_json::from_str::<FdbRow>(&text).unwrap(), r);
        // Whether an entry is static is never guessed.
        let unsure = r#"{"vni":1,"mac":"02:00:00:00:00:01","dst":null,"dev":"veth0"}"#;
        assert!(serde_json::from_str::<FdbRow>(unsure).is_err());
    }

    /// The datapath's maps, created from the eBPF object (no program is
    /// loaded or attached), or None (with a message) when not root.
    pub(crate) fn live_maps(max_fdb: u32) -> Option<Maps> {
        // SAFETY: no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("skipped: creating BPF maps needs root");
            return None;
        }
        let mut ebpf = EbpfLoader::new()
            .map_max_entries(map::FDB, max_fdb)
            .load(EBPF_OBJ)
            .expect("creating the maps of the eBPF object");
        Some(Maps::take(&mut ebpf).expect("taking the maps"))
    }

    pub(crate) fn add_vni(maps: &mut Maps, vni: u32, remotes: &[[u8; 4]]) {
        let mut info = VniInfo {
            n_remotes: remotes.len() as u32,
            ..Default::default()
        };
        for (slot, r) in info.remotes.iter_mut().zip(remotes) {
            *slot = vtep_v4(*r);
        }
        maps.vnis.insert(vni, info, 0).unwrap();
    }

    /// An IPv6 VNI with no remotes.
    pub(crate) fn add_vni6(maps: &mut Maps, vni: u32) {
        let info = VniInfo {
            flags: VNI_F_IPV6,
            ..Default::default()
        };
        maps.vnis.insert(vni, info, 0).unwrap();
    }

    pub(crate) fn remote(ip: [u8; 4], is_static: bool, seen: u64) -> FdbEntry {
        FdbEntry::new_remote(vtep_v4(ip), if is_static { FDB_F_STATIC } else { 0 }, seen)
    }

    pub(crate) fn remote6(ip: &str, is_static: bool, seen: u64) -> FdbEntry {
        let ip: std::net::IpAddr = ip.parse().unwrap();
        FdbEntry::new_remote(
            vtep_from_ip(ip),
            if is_static { FDB_F_STATIC } else { 0 },
            seen,
        )
    }

    pub(crate) fn local(ifindex: u32, is_static: bool, seen: u64) -> FdbEntry {
        FdbEntry::new_local(ifindex, if is_static { FDB_F_STATIC } else { 0 }, seen)
    }

    fn mac(last: u8) -> [u8; 6] {
        [2, 0, 0, 0, 0, last]
    }

    #[test]
    fn snapshot_digest_and_round_trip() {
        let Some(mut maps) = live_maps(1024) else {
            return;
        };
        add_vni(&mut maps, 42, &[[192, 168, 57, 54]]);
        add_vni(&mut maps, 43, &[]);
        let names: StdHashMap<u32, String> = [(5, "veth0".to_owned())].into();
        let fdb = [
            (FdbKey::new(42, mac(3)), remote([10, 0, 0, 2], false, 100)),
            (FdbKey::new(42, mac(1)), remote([10, 0, 0, 3], true, 0)),
            (FdbKey::new(43, mac(2)), local(5, false, 100)),
            (FdbKey::new(43, mac(4)), local(5, true, 0)),
            // A port this instance does not know: not saved.
            (FdbKey::new(43, mac(9)), local(9, false, 100)),
        ];
        for (k, e) in fdb {
            maps.fdb.insert(k, e, 0).unwrap();
        }
        let saved = snapshot(&maps, &names).unwrap();
        let rows: Vec<_> = saved
            .entries
            .iter()
            .map(|e| (e.vni, e.mac.as_str(), e.dst, e.dev.as_deref(), e.permanent))
            .collect();
        let ip = |a, b, c, d| IpAddr::V4(Ipv4Addr::new(a, b, c, d));
        assert_eq!(
            rows,
            [
                (42, "02:00:00:00:00:01", Some(ip(10, 0, 0, 3)), None, true),
                (42, "02:00:00:00:00:03", Some(ip(10, 0, 0, 2)), None, false),
                (43, "02:00:00:00:00:02", None, Some("veth0"), false),
                (43, "02:00:00:00:00:04", None, Some("veth0"), true),
            ]
        );
        // Each entry with the time it was last seen.
        let seen: Vec<_> = saved.entries.iter().map(|e| e.last_seen_ns).collect();
        assert_eq!(seen, [Some(0), Some(100), Some(100), Some(0)]);

        let dir = std::env::temp_dir().join(format!("vxlan-fwd-state-test-{}", std::process::id()));
        let path = dir.join("state.json");
        let mut last = None;
        let save = |maps: &Maps, last: &mut Option<Digest>, names: &StdHashMap<u32, String>| {
            save_if_changed(maps, names, &path, last).unwrap()
        };
        assert!(save(&maps, &mut last, &names), "first save");
        assert!(!save(&maps, &mut last, &names), "unchanged");
        assert_eq!(load(&path).unwrap().as_ref(), Some(&saved));
        // Traffic refreshing an entry changes nothing saved.
        maps.fdb
            .insert(fdb[0].0, remote([10, 0, 0, 2], false, 999), 0)
            .unwrap();
        assert!(!save(&maps, &mut last, &names), "refreshed only");
        // A move does.
        maps.fdb
            .insert(fdb[0].0, remote([10, 0, 0, 7], false, 999), 0)
            .unwrap();
        assert!(save(&maps, &mut last, &names), "moved");
        assert!(!save(&maps, &mut last, &names));
        // So do a deletion, a renamed port...
        maps.fdb.remove(&fdb[1].0).unwrap();
        assert!(save(&maps, &mut last, &names), "deleted");
        let renamed: StdHashMap<u32, String> = [(5, "veth1".to_owned())].into();
        assert!(save(&maps, &mut last, &renamed), "port renamed");
        // ...and a state file that disappeared.
        std::fs::remove_file(&path).unwrap();
        assert!(save(&maps, &mut last, &renamed), "file gone");
        let saved = load(&path).unwrap().unwrap();
        assert_eq!(saved, snapshot(&maps, &renamed).unwrap());

        // Restored into fresh maps, then saved again: the same table.
        let Some(mut fresh) = live_maps(1024) else {
            return;
        };
        add_vni(&mut fresh, 42, &[]);
        add_vni(&mut fresh, 43, &[]);
        let port_of: StdHashMap<String, (u32, u32)> = [("veth1".to_owned(), (5, 43))].into();
        assert_eq!(restore(&mut fresh, &saved, &port_of, 10_000).unwrap(), 3);
        assert_eq!(snapshot(&fresh, &renamed).unwrap(), saved);
        assert_eq!(fresh.learned.get(&0, 0).unwrap(), 2);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// IPv6 remotes are saved as address strings and restored into a VNI
    /// of that family only.
    #[test]
    fn ipv6_round_trip_and_family_filter() {
        let Some(mut maps) = live_maps(1024) else {
            return;
        };
        add_vni6(&mut maps, 7);
        add_vni(&mut maps, 42, &[]);
        let names = StdHashMap::new();
        maps.fdb
            .insert(FdbKey::new(7, mac(1)), remote6("fd00:57::2", true, 0), 0)
            .unwrap();
        maps.fdb
            .insert(FdbKey::new(42, mac(2)), remote([10, 0, 0, 2], false, 5), 0)
            .unwrap();
        let saved = snapshot(&maps, &names).unwrap();
        let text = serde_json::to_string(&saved).unwrap();
        assert!(text.contains(r#""dst":"fd00:57::2""#), "{text}");
        let back: Saved = serde_json::from_str(&text).unwrap();
        assert_eq!(back, saved);
        assert_eq!(
            back.entries[0].to_string(),
            "02:00:00:00:00:01 dst fd00:57::2 vni 7 permanent"
        );

        let Some(mut fresh) = live_maps(1024) else {
            return;
        };
        add_vni6(&mut fresh, 7);
        add_vni(&mut fresh, 42, &[]);
        assert_eq!(
            restore(&mut fresh, &back, &StdHashMap::new(), 10).unwrap(),
            2
        );
        assert_eq!(snapshot(&fresh, &names).unwrap().entries, saved.entries);
        // VNI 7 is IPv4 now: its IPv6 entry is not restored, nor is the
        // IPv4 one into VNI 42 turned IPv6.
        let Some(mut other) = live_maps(1024) else {
            return;
        };
        add_vni(&mut other, 7, &[]);
        add_vni6(&mut other, 42);
        assert_eq!(
            restore(&mut other, &back, &StdHashMap::new(), 10).unwrap(),
            0
        );
    }
}
