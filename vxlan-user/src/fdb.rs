//! The forwarding database as users see it: `fdb show` rows, the
//! `fdb add|replace|append|del|flush` operations, ageing.
//!
//! Default remotes (the all-zeros MAC) live in each VNI's flood list
//! (`VNIS`); every other entry in the `FDB` hash map.

use std::{collections::HashMap as StdHashMap, net::IpAddr};

use anyhow::{Context as _, Result, anyhow, bail};
use serde::{Deserialize, Serialize};
use vxlan_common::{
    FDB_F_STATIC, FdbEntry, FdbKey, VniInfo, VtepAddr, learned_key_port, learned_key_vni,
    vtep_from_ip, vtep_to_ip,
};

use crate::{
    addr::parse_ip,
    batch,
    cli::parse_vni,
    maps::Maps,
    netlink::{format_mac, parse_mac},
};

/// One FDB entry as users and files see it: a line of `fdb show`, an
/// object of `fdb show --json`, the entry of an `fdb watch` event
/// ([`crate::events::Event`]), an entry of the state file
/// ([`crate::state::Saved`]), and what the tests parse `fdb show --json`
/// into. One type, so that the four cannot drift apart.
///
/// The state file is read back across upgrades: fields added since its
/// first format (`extern_learn`, `origin`) have defaults, and `permanent`
/// was `static` there.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct FdbRow {
    /// Lower-case `aa:bb:cc:dd:ee:ff` ([`format_mac`]).
    pub mac: String,
    /// Remote VTEP (IPv4 or IPv6), for entries behind one: in JSON and
    /// the state file the address as a string (`"10.0.0.3"`,
    /// `"fd00:57::2"`).
    pub dst: Option<IpAddr>,
    /// Local port name, for local entries (by name: ifindexes change when
    /// a port is recreated).
    pub dev: Option<String>,
    pub vni: u32,
    /// Static entry: never aged or overwritten by learning. Required (a
    /// row without it is refused); state files of the first format say
    /// `static`.
    #[serde(alias = "static")]
    pub permanent: bool,
    /// Installed by the control plane (iproute2's word for it).
    #[serde(default)]
    pub extern_learn: bool,
    /// Where it came from: `config`, `runtime` (a command), `learned`, or
    /// `etcd`. Not in the state file (the flags tell it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<String>,
    /// `CLOCK_MONOTONIC` ns when a frame last refreshed a learned entry:
    /// in the state file only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_seen_ns: Option<u64>,
}

impl FdbRow {
    /// The row of `mac` in `vni` behind VTEP `remote` when `ifindex` is 0,
    /// else on local port `ifindex` (named by `names`, or `if<N>`). Not
    /// permanent, no origin: the caller adds what it knows.
    pub fn at(
        vni: u32,
        mac: &[u8; 6],
        remote: &VtepAddr,
        ifindex: u32,
        names: &StdHashMap<u32, String>,
    ) -> Self {
        Self {
            mac: format_mac(mac),
            dst: (ifindex == 0).then(|| vtep_to_ip(remote)),
            dev: (ifindex != 0).then(|| {
                names
                    .get(&ifindex)
                    .cloned()
                    .unwrap_or_else(|| format!("if{ifindex}"))
            }),
            vni,
            ..Default::default()
        }
    }

    /// A default remote (the all-zeros MAC).
    pub fn is_default(&self) -> bool {
        self.mac == format_mac(&[0; 6])
    }
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
        if self.extern_learn {
            write!(f, " extern_learn")?;
        }
        Ok(())
    }
}

/// A row for an FDB map entry; `names` maps local ifindexes to names.
pub fn row(key: &FdbKey, e: &FdbEntry, names: &StdHashMap<u32, String>) -> FdbRow {
    let origin = if e.is_static() {
        "runtime"
    } else if e.is_extern() {
        "etcd"
    } else {
        "learned"
    };
    FdbRow {
        permanent: e.is_static(),
        extern_learn: e.is_extern(),
        origin: Some(origin.to_owned()),
        ..FdbRow::at(key.vni, &key.mac, &e.remote, e.ifindex, names)
    }
}

/// All entries: the default remotes of each VNI (all-zeros MAC, permanent;
/// their origins from `origins`, as the forwarder reports them) and the FDB
/// map's entries, sorted by VNI then MAC.
pub fn rows(
    maps: &Maps,
    names: &StdHashMap<u32, String>,
    origins: &StdHashMap<(u32, IpAddr), String>,
) -> Result<Vec<FdbRow>> {
    let mut out = Vec::new();
    for item in maps.vnis.iter() {
        let (vni, info) = item?;
        for r in remotes_of(&info) {
            out.push(FdbRow {
                permanent: true,
                origin: Some(
                    origins
                        .get(&(vni, r))
                        .cloned()
                        .unwrap_or_else(|| "config".to_owned()),
                ),
                ..FdbRow::at(vni, &[0; 6], &vtep_from_ip(r), 0, &StdHashMap::new())
            });
        }
    }
    batch::for_each(&maps.fdb, |key, e| out.push(row(key, e, names)))?;
    out.sort_by(|a, b| (a.vni, &a.mac, a.dst).cmp(&(b.vni, &b.mac, b.dst)));
    Ok(out)
}

pub fn remotes_of(info: &VniInfo) -> Vec<IpAddr> {
    info.remotes
        .iter()
        .take(info.n_remotes as usize)
        .map(vtep_to_ip)
        .collect()
}

/// What an `fdb` command names: `MAC [dst IP] [dev PORT] vni N`, in the
/// words `bridge fdb` uses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Spec {
    pub mac: [u8; 6],
    /// IPv4 or IPv6 (the VNI's family: the dataplane checks).
    pub dst: Option<IpAddr>,
    pub dev: Option<String>,
    pub vni: u32,
}

impl Spec {
    pub fn parse(words: &[String]) -> Result<Self> {
        let (mac, rest) = words.split_first().ok_or_else(|| anyhow!("missing MAC"))?;
        let mac = parse_mac(mac)?;
        let (mut dst, mut dev, mut vni) = (None, None, None);
        let mut it = rest.iter();
        while let Some(word) = it.next() {
            let mut value = || it.next().ok_or_else(|| anyhow!("`{word}` needs a value"));
            match word.as_str() {
                "dst" => dst = Some(parse_ip(value()?).map_err(|e| anyhow!(e))?),
                "dev" => dev = Some(value()?.clone()),
                "vni" => vni = Some(parse_vni(value()?).map_err(|e| anyhow!(e))?),
                other => bail!("unexpected `{other}`: expected `dst IP`, `dev PORT` or `vni N`"),
            }
        }
        let vni = vni.ok_or_else(|| anyhow!("missing `vni N`"))?;
        if dst.is_some() && dev.is_some() {
            bail!("give either `dst IP` or `dev PORT`, not both");
        }
        Ok(Self { mac, dst, dev, vni })
    }

    fn is_default(&self) -> bool {
        self.mac == [0; 6]
    }
}

/// How `apply` treats an existing entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Op {
    Add,
    Replace,
    Append,
    Del,
}

/// Applies an `fdb add|replace|append|del` of a static entry (not the
/// all-zeros MAC: see [`crate::dataplane::Dataplane::fdb`]) to the maps.
/// `port_index` resolves `dev PORT` to an ifindex that must be a port of
/// the VNI.
pub fn apply(maps: &mut Maps, op: Op, spec: &Spec, port_index: Option<u32>) -> Result<()> {
    if maps.vnis.get(&spec.vni, 0).is_err() {
        bail!("VNI {} is not configured in this forwarder", spec.vni);
    }
    if spec.is_default() {
        bail!("default remotes (the all-zeros MAC) are the dataplane's to change");
    }
    let key = FdbKey::new(spec.vni, spec.mac);
    let existing = maps.fdb.get(&key, 0).ok();
    if op == Op::Del {
        let Some(e) = existing else {
            bail!("no entry for {} in VNI {}", format_mac(&spec.mac), spec.vni)
        };
        if let Some(dst) = spec.dst
            && (e.is_local() || vtep_to_ip(&e.remote) != dst)
        {
            bail!(
                "{} in VNI {} is not behind {dst}",
                format_mac(&spec.mac),
                spec.vni
            );
        }
        maps.fdb.remove(&key).context("deleting the entry")?;
        if e.is_learned() {
            recount_learned(maps)?;
        }
        return Ok(());
    }
    let entry = match (spec.dst, port_index) {
        (Some(dst), _) => FdbEntry::new_remote(vtep_from_ip(dst), FDB_F_STATIC, 0),
        (None, Some(ifindex)) => FdbEntry::new_local(ifindex, FDB_F_STATIC, 0),
        (None, None) => bail!("missing `dst IP` or `dev PORT`"),
    };
    if matches!(op, Op::Add | Op::Append) && existing.is_some() {
        bail!(
            "{} already has an entry in VNI {}: use `fdb replace`",
            format_mac(&spec.mac),
            spec.vni
        );
    }
    maps.fdb
        .insert(key, entry, 0)
        .context("writing the entry (is the FDB full?)")?;
    if existing.is_some_and(|e| e.is_learned()) {
        recount_learned(maps)?;
    }
    Ok(())
}

/// Deletes FDB entries (never the default remotes, nor the control
/// plane's `extern_learn` entries: etcd is their truth): of one VNI or all,
/// learned only or static too. Returns how many.
pub fn flush(maps: &mut Maps, vni: Option<u32>, learned_only: bool) -> Result<usize> {
    let mut doomed = Vec::new();
    batch::for_each(&maps.fdb, |k, e| {
        if vni.is_none_or(|v| k.vni == v) && !e.is_extern() && (!learned_only || e.is_learned()) {
            doomed.push(*k);
        }
    })?;
    let n = batch::delete(&mut maps.fdb, &doomed)?
        .into_iter()
        .filter(|d| *d)
        .count();
    recount_learned(maps)?;
    Ok(n)
}

/// Removes learned entries not refreshed for `ageing_ns`; returns them.
pub fn age(maps: &mut Maps, ageing_ns: u64, now_ns: u64) -> Result<Vec<(FdbKey, FdbEntry)>> {
    // One (batched) read finds the stale entries and counts the learned
    // ones, so the learned count needs no second walk of a possibly huge map.
    let mut counts = Counts::default();
    let mut stale = Vec::new();
    batch::for_each(&maps.fdb, |k, e| {
        if e.is_learned() {
            if now_ns.saturating_sub(e.last_seen_ns) > ageing_ns {
                stale.push((*k, *e));
            } else {
                counts.add(k, e);
            }
        }
    })?;
    let keys: Vec<FdbKey> = stale.iter().map(|(k, _)| *k).collect();
    let deleted = batch::delete(&mut maps.fdb, &keys)?;
    // Those deleted meanwhile (`fdb del`) are not reported.
    let removed: Vec<_> = stale
        .into_iter()
        .zip(deleted)
        .filter_map(|(s, d)| d.then_some(s))
        .collect();
    // Written only when something aged out: a write races with the
    // datapath's increments, and the cap test must not lose them.
    if !removed.is_empty() {
        counts.write(maps)?;
    }
    Ok(removed)
}

/// Learned entries: in all, per VNI and per local port.
#[derive(Default)]
struct Counts {
    total: u64,
    by: StdHashMap<u64, u64>,
}

impl Counts {
    fn add(&mut self, k: &FdbKey, e: &FdbEntry) {
        self.total += 1;
        *self.by.entry(learned_key_vni(k.vni)).or_default() += 1;
        if e.is_local() {
            *self.by.entry(learned_key_port(e.ifindex)).or_default() += 1;
        }
    }

    /// Makes LEARNED and LEARNED_BY exact (the datapath only increments
    /// them, and MAC moves leave a port's count behind).
    fn write(&self, maps: &mut Maps) -> Result<()> {
        maps.learned
            .set(0, self.total, 0)
            .context("writing LEARNED")?;
        let old: Vec<u64> = maps.learned_by.keys().filter_map(Result::ok).collect();
        for k in old {
            if !self.by.contains_key(&k) {
                let _ = maps.learned_by.remove(&k);
            }
        }
        for (k, n) in &self.by {
            maps.learned_by
                .insert(k, n, 0)
                .context("writing LEARNED_BY")?;
        }
        Ok(())
    }
}

/// The (VNI, remote VTEP) pairs of static FDB entries behind a remote:
/// senders to allow and next hops to keep, like the default remotes. One
/// batched walk of the FDB.
pub fn static_remotes(maps: &Maps) -> Result<std::collections::BTreeSet<(u32, IpAddr)>> {
    let mut set = std::collections::BTreeSet::new();
    batch::for_each(&maps.fdb, |k, e| {
        if e.is_static() && !e.is_local() {
            set.insert((k.vni, vtep_to_ip(&e.remote)));
        }
    })?;
    Ok(set)
}

/// Writes the exact number of learned entries to LEARNED and LEARNED_BY,
/// which the datapath only ever increments. Returns the total.
pub fn recount_learned(maps: &mut Maps) -> Result<u64> {
    let mut counts = Counts::default();
    batch::for_each(&maps.fdb, |k, e| {
        if e.is_learned() {
            counts.add(k, e)
        }
    })?;
    counts.write(maps)?;
    Ok(counts.total)
}

/// `CLOCK_MONOTONIC` in nanoseconds: the clock of `bpf_ktime_get_ns`.
pub fn monotonic_ns() -> u64 {
    // CLOCK_MONOTONIC always exists on Linux: it cannot fail.
    nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC)
        .map(|ts| {
            let secs = u64::try_from(ts.tv_sec()).unwrap_or(0);
            secs * 1_000_000_000 + u64::try_from(ts.tv_nsec()).unwrap_or(0)
        })
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(s: &str) -> Vec<String> {
        s.split_whitespace().map(str::to_owned).collect()
    }

    #[test]
    fn spec_words() {
        let s = Spec::parse(&words("02:00:00:00:00:01 dst 192.168.57.54 vni 42")).unwrap();
        assert_eq!(s.mac, [2, 0, 0, 0, 0, 1]);
        assert_eq!(s.dst, Some("192.168.57.54".parse().unwrap()));
        assert_eq!(s.vni, 42);
        let s = Spec::parse(&words("02:00:00:00:00:01 dst fd00:57::2 vni 42")).unwrap();
        assert_eq!(s.dst, Some("fd00:57::2".parse().unwrap()));
        let s = Spec::parse(&words("02:00:00:00:00:01 dev veth0 vni 7")).unwrap();
        assert_eq!(s.dev.as_deref(), Some("veth0"));
        for (bad, why) in [
            ("02:00:00:00:00:01 dst 192.168.57.54", "no vni"),
            ("nope dst 1.2.3.4 vni 1", "bad MAC"),
            ("02:00:00:00:00:01 dst 1.2.3 vni 1", "bad IP"),
            ("02:00:00:00:00:01 dst fd00::57::2 vni 1", "bad IPv6"),
            ("02:00:00:00:00:01 dst 1.2.3.4 vni 0", "bad VNI"),
            ("02:00:00:00:00:01 via 1.2.3.4 vni 1", "unknown word"),
            ("02:00:00:00:00:01 dst", "no value"),
        ] {
            assert!(Spec::parse(&words(bad)).is_err(), "{why}: {bad}");
        }
    }

    /// `fdb show` lines and JSON of IPv6 and IPv4 remotes and a local
    /// entry, from the map values.
    #[test]
    fn show_formatting() {
        let names: StdHashMap<u32, String> = [(5, "veth0".to_owned())].into();
        let key = FdbKey::new(42, [2, 0, 0, 0, 0, 1]);
        let v6: IpAddr = "fd00:57::2".parse().unwrap();
        let e = FdbEntry::new_remote(vtep_from_ip(v6), FDB_F_STATIC, 0);
        let r = row(&key, &e, &names);
        assert_eq!(
            r.to_string(),
            "02:00:00:00:00:01 dst fd00:57::2 vni 42 permanent"
        );
        let json = serde_json::to_value(&r).unwrap();
        assert_eq!(json["dst"], "fd00:57::2");
        let back: FdbRow = serde_json::from_value(json).unwrap();
        assert_eq!(back, r);
        let e4 = FdbEntry::new_remote(vxlan_common::vtep_v4([10, 0, 0, 3]), 0, 0);
        let r4 = row(&key, &e4, &names);
        assert_eq!(r4.to_string(), "02:00:00:00:00:01 dst 10.0.0.3 vni 42");
        assert_eq!(serde_json::to_value(&r4).unwrap()["dst"], "10.0.0.3");
        let local = row(&key, &FdbEntry::new_local(5, 0, 0), &names);
        assert_eq!(local.to_string(), "02:00:00:00:00:01 dev veth0 vni 42");
    }
}

#[cfg(test)]
mod map_tests {
    use super::*;
    use crate::state::tests::{add_vni, live_maps, local, remote};

    #[test]
    fn age_flush_and_recount() {
        let Some(mut maps) = live_maps(4096) else {
            return;
        };
        add_vni(&mut maps, 42, &[]);
        const N: u32 = 3000;
        // Learned entries: the even ones seen at 1000 s, the odd at 10 s;
        // every fifth entry static (never aged).
        for i in 0..N {
            let b = i.to_be_bytes();
            let key = FdbKey::new(42 + i % 2, [2, 0, b[0], b[1], b[2], b[3]]);
            let seen = if i % 2 == 0 { 1000 } else { 10 } * 1_000_000_000;
            let e = match i % 3 {
                0 => local(5, i % 5 == 0, seen),
                _ => remote([10, 0, 0, 2], i % 5 == 0, seen),
            };
            maps.fdb.insert(key, e, 0).unwrap();
        }
        let statics = (0..N).filter(|i| i % 5 == 0).count() as u64;
        let learned = u64::from(N) - statics;
        assert_eq!(recount_learned(&mut maps).unwrap(), learned);
        assert_eq!(maps.learned.get(&0, 0).unwrap(), learned);

        // Ageing 300 s at 1010 s: the learned odd ones go.
        let gone = age(&mut maps, 300_000_000_000, 1_010_000_000_000).unwrap();
        let expect = (0..N).filter(|i| i % 2 == 1 && i % 5 != 0).count();
        assert_eq!(gone.len(), expect);
        assert!(gone.iter().all(|(k, e)| k.vni == 43 && !e.is_static()));
        assert_eq!(maps.learned.get(&0, 0).unwrap(), learned - expect as u64);
        assert_eq!(
            batch::read_all(&maps.fdb).unwrap().len(),
            N as usize - expect
        );
        assert!(
            age(&mut maps, 300_000_000_000, 1_010_000_000_000)
                .unwrap()
                .is_empty()
        );

        // Flush the learned entries of VNI 42, then everything.
        let n = flush(&mut maps, Some(42), true).unwrap();
        assert_eq!(n, (0..N).filter(|i| i % 2 == 0 && i % 5 != 0).count());
        assert_eq!(maps.learned.get(&0, 0).unwrap(), 0);
        let left = batch::read_all(&maps.fdb).unwrap();
        assert!(left.iter().all(|(_, e)| e.is_static()));
        assert_eq!(flush(&mut maps, None, false).unwrap(), left.len());
        assert!(batch::read_all(&maps.fdb).unwrap().is_empty());
    }
}
