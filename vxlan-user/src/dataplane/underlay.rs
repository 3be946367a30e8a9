//! The underlay side of the [`Dataplane`]: each VNI's family (IPv4 or
//! IPv6, from its remotes or group), the local VTEP address of each
//! family, what follows a VNI's family (the overlay MTU of its host
//! interface, the GSO guard on its ports) and multicast memberships
//! (IGMP or MLD).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, UdpSocket};

use anyhow::{Result, bail};
use log::{info, warn};

use super::{Dataplane, Vni, explicit_family};
use crate::{
    addr::{Family, family_mix},
    netlink::LinkInfo,
};

impl Dataplane {
    /// The overlay MTU of a VNI of family `f`: the uplink's minus the
    /// outer headers (50 bytes over IPv4, 70 over IPv6).
    pub(super) fn overlay_mtu(&self, f: Family) -> u32 {
        self.uplink.mtu.saturating_sub(f.overhead())
    }

    /// Gives every host interface the overlay MTU of its VNI's family
    /// (the uplink's MTU or the VNI's family changed).
    pub(super) async fn sync_host_if_mtus(&mut self) {
        let want: Vec<(u32, u32)> = self.vnis.keys().map(|&id| (id, self.vni_mtu(id))).collect();
        for (id, mtu) in want {
            let Some(h) = self.vnis.get_mut(&id).and_then(|v| v.host_if.as_mut()) else {
                continue;
            };
            if h.mtu == mtu {
                continue;
            }
            match self.nl.set_mtu(h.index, mtu).await {
                Ok(()) => h.mtu = mtu,
                Err(e) => warn!("setting the MTU of {}: {e:#}", h.name),
            }
        }
    }

    /// The overlay MTU of VNI `id`.
    pub(super) fn vni_mtu(&self, id: u32) -> u32 {
        let f = self
            .vnis
            .get(&id)
            .map_or(self.local.default_family(), |v| self.family(v));
        self.overlay_mtu(f)
    }

    /// The underlay family of VNI `v`: that of its remotes or group, else
    /// IPv4 unless the instance has only an IPv6 local address.
    pub(super) fn family(&self, v: &Vni) -> Family {
        explicit_family(v).unwrap_or(self.local.default_family())
    }

    /// Makes sure there is a local address of family `f` (VNI `id` needs
    /// it, `why` says which address made it that family): `--local`, or
    /// the uplink's own (its first IPv4 address; a global, non-tentative
    /// IPv6 address).
    pub(super) async fn ensure_local(&mut self, f: Family, id: u32, why: &str) -> Result<()> {
        if self.local.get(f).is_some() {
            return Ok(());
        }
        let index = self.uplink.index;
        let found = match f {
            Family::V4 => self.nl.first_ipv4(index).await?.map(IpAddr::V4),
            Family::V6 => self.nl.first_ipv6_global(index).await?.map(IpAddr::V6),
        };
        let Some(ip) = found else {
            let what = match f {
                Family::V4 => "no IPv4 address",
                Family::V6 => "no global IPv6 address (or only tentative ones)",
            };
            bail!(
                "VNI {id} runs over {f} ({why}) but there is no local {f} address: the uplink '{}' \
                 has {what}; give one with --local",
                self.uplink.name
            );
        };
        info!("local {f} VTEP address {ip} (the uplink's address)");
        self.local.set(ip);
        self.write_config()
    }

    /// The uplink's addresses are now `v4` (its first IPv4 address) and
    /// `v6` (its first global IPv6 address): the local VTEP address of each
    /// family follows them unless `--local` fixed it. An address that goes
    /// away is kept (still sent from) until another comes.
    pub fn uplink_address(&mut self, v4: Option<Ipv4Addr>, v6: Option<Ipv6Addr>) -> Result<()> {
        let mut changed = false;
        for (f, now) in [
            (Family::V4, v4.map(IpAddr::V4)),
            (Family::V6, v6.map(IpAddr::V6)),
        ] {
            if self.settings.local.get(f).is_some() {
                continue;
            }
            let old = self.local.get(f);
            match now {
                None => {
                    if let Some(old) = old {
                        warn!(
                            "uplink {} has no {} address now: still sending from {old}",
                            self.uplink.name,
                            match f {
                                Family::V4 => "IPv4",
                                Family::V6 => "global IPv6",
                            }
                        );
                    }
                }
                Some(addr) if old != Some(addr) => {
                    match old {
                        Some(o) => {
                            info!("local {f} VTEP address {o} -> {addr} (the uplink's address)")
                        }
                        None => info!("local {f} VTEP address {addr} (the uplink's address)"),
                    }
                    self.local.set(addr);
                    changed = true;
                    if f == Family::V4 {
                        self.rejoin_v4();
                    }
                }
                Some(_) => {}
            }
        }
        if changed {
            self.write_config()?;
        }
        Ok(())
    }

    /// IPv4 memberships are joined on the local IPv4 address: joined
    /// again when it changed.
    pub(super) fn rejoin_v4(&mut self) {
        let groups: Vec<IpAddr> = self
            .memberships
            .keys()
            .filter(|g| g.is_ipv4())
            .copied()
            .collect();
        for g in groups {
            self.memberships.remove(&g);
            self.join(g);
        }
    }

    /// Joins `g` on the uplink: a real membership (IGMP for IPv4, on the
    /// local IPv4 address; MLD for IPv6, on the uplink's ifindex), held by
    /// a socket, visible in `ip maddr`.
    pub(super) fn join(&mut self, g: IpAddr) {
        if self.memberships.contains_key(&g) {
            return;
        }
        let sock = match g {
            IpAddr::V4(g4) => {
                let Some(local) = self.local.v4 else {
                    warn!("joining multicast group {g}: no local IPv4 address");
                    return;
                };
                UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0))
                    .and_then(|s| s.join_multicast_v4(&g4, &local).map(|()| s))
            }
            IpAddr::V6(g6) => UdpSocket::bind((Ipv6Addr::UNSPECIFIED, 0))
                .and_then(|s| s.join_multicast_v6(&g6, self.uplink.index).map(|()| s)),
        };
        match sock {
            Ok(s) => {
                self.memberships.insert(g, s);
            }
            Err(e) => warn!("joining multicast group {g} on {}: {e}", self.uplink.name),
        }
    }

    /// `addr` (a `what`: remote, static entry's dst, ...) may be a VTEP of
    /// VNI `vni`: of the family of its remotes and group. A VNI that names
    /// no address yet takes any family for a default remote (its first
    /// one sets the family); other VTEPs must then be of its default family.
    pub(super) fn check_vtep_family(&self, vni: u32, addr: IpAddr, what: &str) -> Result<()> {
        let Some(v) = self.vnis.get(&vni) else {
            bail!("VNI {vni} is not configured in this forwarder");
        };
        let first = v
            .remotes
            .first()
            .map(|(r, _)| ("remote", r))
            .or(v.group.as_ref().map(|g| ("group", g)));
        match first {
            Some(f) if Family::of(f.1) != Family::of(&addr) => {
                bail!("{}", family_mix(vni, f, (what, &addr)))
            }
            None if what != "remote" && Family::of(&addr) != self.family(v) => bail!(
                "VNI {vni} runs over {} (it has no remote or group; {}) but {what} {addr} is {}",
                self.family(v),
                if self.family(v) == Family::V6 {
                    "the only local address is IPv6"
                } else {
                    "the default"
                },
                Family::of(&addr)
            ),
            _ => Ok(()),
        }
    }

    /// Ports that want the GSO guard: the attached ports of IPv6 VNIs.
    pub(super) fn guarded_links(&self) -> Vec<LinkInfo> {
        self.ports
            .values()
            .filter(|p| {
                self.vnis
                    .get(&p.vni)
                    .is_some_and(|v| self.family(v) == Family::V6)
            })
            .filter_map(|p| p.link.clone())
            .collect()
    }

    /// The ifindexes of the ports that carry the GSO guard now.
    pub fn guarded_ports(&self) -> Vec<u32> {
        self.attached
            .as_ref()
            .map(|a| a.guarded().collect())
            .unwrap_or_default()
    }

    /// Puts the GSO guard ([`vxlan_common::prog::XDP_PORT_GUARD`], native
    /// XDP) on every attached port of an IPv6 VNI and takes it off the
    /// others (see [`crate::attach::Attached::sync_guards`]). Nothing
    /// before [`Dataplane::attach`].
    pub async fn sync_guards(&mut self) {
        let want = self.guarded_links();
        if let Some(att) = self.attached.as_mut() {
            att.sync_guards(&self.ebpf, &self.nl, &want, &mut self.guard_warned)
                .await;
        }
    }

    /// What follows a VNI's family: the GSO guards of its ports and the
    /// MTU of its host interface. Also run every tick (a VNI's family can
    /// change when its first remote arrives, or its last goes).
    pub async fn sync_family_effects(&mut self) {
        self.sync_guards().await;
        self.sync_host_if_mtus().await;
    }
}
