//! What the control plane (etcd) installs: each VNI's other VTEPs as its
//! flood list (origin `etcd`), remote MACs as `extern_learn` FDB entries,
//! IPv4 addresses in the ARP suppression table; and what it publishes: the
//! local endpoints and their snooped addresses.
//!
//! VTEPs may be IPv4 or IPv6; one of the other family than the VNI's (its
//! remotes' or group's) is refused with a warning, once.

use std::{
    collections::BTreeSet,
    net::{IpAddr, Ipv4Addr},
};

use log::{debug, warn};
use vxlan_common::{ArpEntry, ArpKey, FDB_F_EXTERN, FdbEntry, FdbKey, MAX_REMOTES, vtep_from_ip};

use super::{Dataplane, Origin};
use crate::{
    batch,
    etcd::{Change, Endpoint, Local, MacValue, Table, Update},
    fdb,
    netlink::format_mac,
};

impl Dataplane {
    /// Applies what the control-plane task reports to the maps; the
    /// derived tables (flood lists, allowed senders, next hops) follow in
    /// [`Self::etcd_settle`], once for a whole batch of updates.
    pub fn etcd_update(&mut self, u: Update) {
        match u {
            Update::Snapshot(t) => self.etcd_snapshot(t),
            Update::Change(c) => self.etcd_change(c),
            Update::Connected(up) => self.etcd_up = up,
        }
    }

    /// A full table: the difference to what was installed is applied, and
    /// `extern_learn` entries that the table does not hold (left by an
    /// earlier run, or from before an outage) are removed.
    fn etcd_snapshot(&mut self, new: Table) {
        self.etcd_up = true;
        let old = std::mem::take(&mut self.etcd);
        for &(vni, addr) in old.vteps.difference(&new.vteps) {
            self.etcd_vtep(vni, addr, false);
        }
        for &(vni, addr) in new.vteps.difference(&old.vteps) {
            self.etcd_vtep(vni, addr, true);
        }
        for (&(vni, mac), v) in &old.macs {
            if !new.macs.contains_key(&(vni, mac)) {
                self.etcd_mac_del(vni, mac, v);
            }
        }
        for (&(vni, mac), v) in &new.macs {
            let before = old.macs.get(&(vni, mac));
            if before != Some(v) {
                self.etcd_mac_set(vni, mac, v, before);
            }
        }
        self.etcd = new;
        let mut stray = Vec::new();
        let _ = batch::for_each(&self.maps.fdb, |k, e| {
            let held = self
                .etcd
                .macs
                .get(&(k.vni, k.mac))
                .is_some_and(|v| vtep_from_ip(v.vtep) == e.remote);
            if e.is_extern() && !held {
                stray.push(*k);
            }
        });
        if !stray.is_empty() {
            let _ = batch::delete(&mut self.maps.fdb, &stray);
        }
        self.etcd_dirty = true;
    }

    fn etcd_change(&mut self, c: Change) {
        match c {
            Change::Vtep { vni, addr, present } => {
                if present {
                    self.etcd.vteps.insert((vni, addr));
                } else {
                    self.etcd.vteps.remove(&(vni, addr));
                }
                self.etcd_vtep(vni, addr, present);
            }
            Change::Mac { vni, mac, value } => {
                let before = match value {
                    Some(v) => self.etcd.macs.insert((vni, mac), v),
                    None => self.etcd.macs.remove(&(vni, mac)),
                };
                match (value, before) {
                    (Some(v), b) => self.etcd_mac_set(vni, mac, &v, b.as_ref()),
                    (None, Some(b)) => self.etcd_mac_del(vni, mac, &b),
                    (None, None) => {}
                }
                // The VTEP behind it may be a new allowed sender.
                self.etcd_dirty = true;
            }
        }
    }

    /// After a batch of updates: the VNIs whose flood list changed are
    /// rewritten, the allowed senders and next hops brought in line, once.
    pub async fn etcd_settle(&mut self) {
        let touched = std::mem::take(&mut self.etcd_touched);
        for &vni in &touched {
            if let Err(e) = self.write_vni(vni) {
                warn!("VNI {vni}: {e:#}");
            }
        }
        if std::mem::take(&mut self.etcd_dirty) || !touched.is_empty() {
            self.sync_allowed();
        }
        if !touched.is_empty() {
            self.resolve_remotes().await;
        }
        if self.etcd_recount {
            self.etcd_recount = false;
            if let Err(e) = fdb::recount_learned(&mut self.maps) {
                warn!("recounting learned entries: {e:#}");
            }
        }
    }

    /// VTEP `addr` joins or leaves VNI `vni`'s flood list (written by
    /// [`Self::etcd_settle`]).
    fn etcd_vtep(&mut self, vni: u32, addr: IpAddr, present: bool) {
        if self.local.contains(&addr) {
            return;
        }
        if present && !self.etcd_family_ok(vni, addr) {
            return;
        }
        let Some(v) = self.vnis.get_mut(&vni) else {
            return;
        };
        let at = v.remotes.iter().position(|(r, _)| *r == addr);
        match (present, at) {
            (true, None) if v.remotes.len() >= MAX_REMOTES => {
                // Warned once per VNI until it has room again.
                let first = self.etcd_full.insert(vni);
                if first {
                    warn!(
                        "VNI {vni}: the flood list is full ({MAX_REMOTES} VTEPs); VTEPs beyond \
                         it get unicast only"
                    );
                }
            }
            (true, None) => {
                v.remotes.push((addr, Origin::Etcd));
                self.etcd_touched.insert(vni);
            }
            (false, Some(i)) if v.remotes[i].1 == Origin::Etcd => {
                v.remotes.remove(i);
                self.etcd_touched.insert(vni);
                // Room again: a VTEP that waited for it takes the place.
                if self.etcd_full.remove(&vni) {
                    let local = self.local;
                    let fam = v.remotes.first().map(|(r, _)| crate::addr::Family::of(r));
                    let waiting = self.etcd.vteps.iter().find(|(n, a)| {
                        *n == vni
                            && !local.contains(a)
                            && fam.is_none_or(|f| f == crate::addr::Family::of(a))
                            && !v.remotes.iter().any(|(r, _)| r == a)
                    });
                    if let Some(&(_, a)) = waiting {
                        v.remotes.push((a, Origin::Etcd));
                        if v.remotes.len() >= MAX_REMOTES {
                            self.etcd_full.insert(vni);
                        }
                    }
                }
            }
            _ => {}
        }
    }

    /// Installs what the table says about `mac` of `vni`.
    fn etcd_mac_set(&mut self, vni: u32, mac: [u8; 6], v: &MacValue, before: Option<&MacValue>) {
        if let Some(old_ip) = before.and_then(|b| b.ip)
            && Some(old_ip) != v.ip
        {
            self.arp_del(vni, old_ip, mac);
        }
        if !self.vnis.contains_key(&vni) {
            return;
        }
        if !self.local.contains(&v.vtep) && !self.etcd_family_ok(vni, v.vtep) {
            return;
        }
        if let Some(ip) = v.ip
            && let Some(arp) = self.maps.arp.as_mut()
            && let Err(e) = arp.insert(
                ArpKey {
                    vni,
                    ip: ip.octets(),
                },
                ArpEntry { mac, _pad: [0; 2] },
                0,
            )
        {
            warn!("ARP table: {e}");
        }
        let key = FdbKey::new(vni, mac);
        let existing = self.maps.fdb.get(&key, 0).ok();
        if self.local.contains(&v.vtep) {
            // Ours: the datapath knows it as local. An entry from when it
            // was elsewhere goes.
            if existing.is_some_and(|e| e.is_extern()) {
                let _ = self.maps.fdb.remove(&key);
            }
            return;
        }
        match existing {
            Some(e) if e.is_static() => {
                debug!(
                    "etcd: {} of VNI {vni} has a static entry; kept",
                    format_mac(&mac)
                );
                return;
            }
            Some(e) if e.is_learned() => self.etcd_recount = true,
            _ => {}
        }
        let entry = FdbEntry::new_remote(vtep_from_ip(v.vtep), FDB_F_EXTERN, 0);
        if let Err(e) = self.maps.fdb.insert(key, entry, 0) {
            warn!("etcd: installing {} of VNI {vni}: {e}", format_mac(&mac));
        }
    }

    /// Removes what the table said about `mac` of `vni` (`v`).
    fn etcd_mac_del(&mut self, vni: u32, mac: [u8; 6], v: &MacValue) {
        if let Some(ip) = v.ip {
            self.arp_del(vni, ip, mac);
        }
        let key = FdbKey::new(vni, mac);
        if self
            .maps
            .fdb
            .get(&key, 0)
            .is_ok_and(|e| e.is_extern() && e.remote == vtep_from_ip(v.vtep))
        {
            let _ = self.maps.fdb.remove(&key);
        }
    }

    /// Removes `ARP[(vni, ip)]` while it still answers with `mac`.
    fn arp_del(&mut self, vni: u32, ip: Ipv4Addr, mac: [u8; 6]) {
        let key = ArpKey {
            vni,
            ip: ip.octets(),
        };
        if let Some(arp) = self.maps.arp.as_mut()
            && arp.get(&key, 0).is_ok_and(|e| e.mac == mac)
        {
            let _ = arp.remove(&key);
        }
    }

    /// A VNI was added: what the table holds for it is installed.
    pub(super) async fn etcd_install_vni(&mut self, vni: u32) {
        let vteps: Vec<IpAddr> = self
            .etcd
            .vteps
            .iter()
            .filter(|(v, _)| *v == vni)
            .map(|(_, a)| *a)
            .collect();
        for a in vteps {
            self.etcd_vtep(vni, a, true);
        }
        let macs: Vec<([u8; 6], MacValue)> = self
            .etcd
            .macs
            .range((vni, [0; 6])..=(vni, [0xff; 6]))
            .map(|(&(_, m), v)| (m, *v))
            .collect();
        for (m, v) in macs {
            self.etcd_mac_set(vni, m, &v, None);
        }
        self.etcd_dirty = true;
        self.etcd_settle().await;
    }

    /// A VNI was removed: its ARP entries go (the FDB entries went with
    /// the VNI).
    pub(super) fn etcd_remove_vni(&mut self, vni: u32) {
        let Some(arp) = self.maps.arp.as_mut() else {
            return;
        };
        let keys: Vec<ArpKey> = arp
            .keys()
            .filter_map(Result::ok)
            .filter(|k| k.vni == vni)
            .collect();
        for k in keys {
            let _ = arp.remove(&k);
        }
    }

    /// The VTEPs the table names for the VNIs served (flood-list members
    /// and the VTEPs behind MACs): senders to allow.
    pub(super) fn etcd_senders(&self) -> BTreeSet<(u32, IpAddr)> {
        let mut out: BTreeSet<(u32, IpAddr)> = BTreeSet::new();
        let mut last = None;
        for (&(vni, _), v) in &self.etcd.macs {
            if last != Some((vni, v.vtep))
                && self.vnis.contains_key(&vni)
                && !self.local.contains(&v.vtep)
            {
                out.insert((vni, v.vtep));
                last = Some((vni, v.vtep));
            }
        }
        out
    }

    /// Whether the control plane's VTEP `addr` may serve VNI `vni`: of the
    /// VNI's family. Refused ones are warned about once.
    fn etcd_family_ok(&mut self, vni: u32, addr: IpAddr) -> bool {
        let Some(v) = self.vnis.get(&vni) else {
            return true;
        };
        let family = crate::addr::Family::of(&addr);
        let check = if self.local.get(family).is_none() {
            Err(anyhow::anyhow!(
                "VNI {vni}: VTEP {addr} is {family} but this forwarder has no local {family} \
                 address"
            ))
        } else if super::explicit_family(v).is_none() {
            // A VNI that names no address takes the first VTEP's family.
            Ok(())
        } else {
            self.check_vtep_family(vni, addr, "etcd VTEP")
        };
        match check {
            Ok(()) => true,
            Err(e) => {
                if self.etcd_family_warned.insert((vni, addr)) {
                    warn!("etcd: {e:#}; ignored");
                }
                false
            }
        }
    }

    /// What this forwarder publishes: its address in each VNI (the local
    /// address of the VNI's family), its VNIs and the local endpoints the
    /// datapath knows (FDB entries on ports) with their snooped IPv4
    /// addresses.
    pub fn etcd_local(&self) -> Local {
        let mut local = Local {
            vnis: self
                .vnis
                .keys()
                .filter_map(|&id| Some((id, self.local_of(id)?)))
                .collect(),
            endpoints: Default::default(),
        };
        let mut found = Vec::new();
        let _ = batch::for_each(&self.maps.fdb, |k, e| {
            if e.is_local() {
                found.push((*k, e.last_seen_ns));
            }
        });
        for (k, seen_ns) in found {
            let ip = self
                .maps
                .local_ip
                .as_ref()
                .and_then(|m| m.get(&k, 0).ok())
                .map(|l| Ipv4Addr::from(l.ip));
            local
                .endpoints
                .insert((k.vni, k.mac), Endpoint { ip, seen_ns });
        }
        local
    }

    /// Whether the control plane is connected (`None`: no control plane).
    pub fn etcd_connected(&self) -> bool {
        self.etcd_up
    }
}
