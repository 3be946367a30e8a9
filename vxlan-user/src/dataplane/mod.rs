//! The one writer of the datapath's maps.
//!
//! Every source of change goes through [`Dataplane`]: the command line and
//! config file at start, SIGHUP reloads, the `vni`/`port`/`fdb` commands
//! (over the control socket), link events, and later other control planes.
//! Each operation is typed and updates the derived tables in the same call:
//! the VNI's flood list and port list (`VNIS`), the port map (`PORTS`),
//! multicast memberships (`GROUPS` and a real IGMP or MLD join), the
//! allowed senders (`ALLOWED`), the next hops of remotes (`NEIGH`) and the
//! GSO guard on the ports of IPv6 VNIs.
//!
//! Addresses are [`IpAddr`]s of either family throughout (a VNI's
//! underlay family follows its remotes or group, see [`Vni`]); they become
//! the datapath's [`vxlan_common::VtepAddr`] where a map is written.
//!
//! Every VNI, port and default remote records its [`Origin`]; FDB entries
//! record theirs in their flags (learned, or static from a command).
//! What runtime commands added is journalled (see [`journal`]) so that it
//! survives a restart of the process, while the configuration stays the
//! truth for what came from it.

mod etcd;
pub mod host_if;
pub mod journal;
#[cfg(test)]
mod tests;
mod underlay;

use std::{
    collections::{BTreeMap, BTreeSet, HashMap as StdHashMap},
    net::{IpAddr, UdpSocket},
    path::PathBuf,
};

use anyhow::{Context as _, Result, anyhow, bail};
use aya::{Ebpf, maps::lpm_trie::Key};
use log::{info, warn};
use serde::{Deserialize, Serialize};
use vxlan_common::{
    ALLOW_DATA_LEN, CFG_F_ARP_SUPPRESS, CFG_F_LEARNING, CFG_F_PORT_LEARN, CFG_F_SNOOP,
    CFG_F_TC_DECAP, Config as DpConfig, FdbKey, MAX_PORTS, MAX_REMOTES, NeighEntry, PORT_F_PEER,
    PortInfo, VNI_F_ANY_SENDER, VNI_F_IPV6, VniInfo, VtepAddr, allow_value, vtep_from_ip,
    vtep_to_ip,
};

use self::{host_if::HostIf, journal::Journal};
use crate::{
    addr::{Family, Locals, allowed_host_key, allowed_key},
    attach::Attached,
    batch,
    config::{Cidr, Config, VniConfig, VniLimits},
    control::{PortRow, VniRow},
    fdb::{self, Op, Spec},
    maps::Maps,
    netlink::{LinkInfo, Neighbour, Netlink},
};

/// Where a VNI, port, remote or FDB entry came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Origin {
    /// The configuration (command line or file): the truth for it.
    Config,
    /// A runtime command (`vni add`, `port add`, `fdb add|append|replace`).
    Runtime,
    /// Learned from traffic.
    Learned,
    /// A control plane (etcd).
    Etcd,
}

impl Origin {
    pub const fn name(self) -> &'static str {
        match self {
            Self::Config => "config",
            Self::Runtime => "runtime",
            Self::Learned => "learned",
            Self::Etcd => "etcd",
        }
    }
}

/// What describes a VNI besides its ports; also the body of a `vni add`
/// request ([`crate::control::Request::VniAdd`]), where `id` is `vni`.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct VniSpec {
    #[serde(rename = "vni")]
    pub id: u32,
    /// IPv4 or IPv6, all of one family.
    pub remotes: Vec<IpAddr>,
    pub group: Option<IpAddr>,
    pub host_if: Option<String>,
    #[serde(default)]
    pub limits: VniLimits,
}

impl From<&VniConfig> for VniSpec {
    fn from(v: &VniConfig) -> Self {
        Self {
            id: v.id,
            remotes: v.remotes.clone(),
            group: v.group,
            host_if: v.host_if.clone(),
            limits: v.limits.clone(),
        }
    }
}

/// A VNI. Its underlay family ([`Dataplane::family`]) follows its remotes
/// or group, which are all of one family (checked when they are added);
/// a VNI with neither is IPv4 unless the instance has only an IPv6 local
/// address ([`Locals::default_family`]), so it may change family when its
/// first remote arrives (from a command or the control plane).
#[derive(Debug)]
struct Vni {
    origin: Origin,
    /// Default remotes in flood order, each with its origin.
    remotes: Vec<(IpAddr, Origin)>,
    group: Option<IpAddr>,
    host_if: Option<HostIf>,
    limits: VniLimits,
}

#[derive(Debug)]
struct Port {
    vni: u32,
    origin: Origin,
    /// The interface, while it exists.
    link: Option<LinkInfo>,
    /// The port end of a VNI's host interface (removed with the VNI).
    host_if: bool,
}

/// The instance's settings that the datapath reads from `CONFIG`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Settings {
    pub dstport: u16,
    pub ageing: u64,
    pub max_fdb: u32,
    pub learning: bool,
    pub allow_remote: Vec<Cidr>,
    /// `--local` (per family): fixed; the other families follow the
    /// uplink's addresses.
    pub local: Locals,
    /// Defaults of the VNIs' port limits.
    pub port_max_fdb: Option<u32>,
    pub bum_pps: Option<u32>,
    /// A control plane (etcd) publishes the local endpoints: they are
    /// learned and their addresses snooped, even with `learning` off.
    pub control_plane: bool,
    /// ARP suppression (with a control plane).
    pub arp_suppress: bool,
}

impl From<&Config> for Settings {
    fn from(c: &Config) -> Self {
        Self {
            dstport: c.dstport,
            ageing: c.ageing,
            max_fdb: c.max_fdb,
            learning: c.learning,
            allow_remote: c.allow_remote.clone(),
            local: c.local,
            port_max_fdb: c.port_max_fdb,
            bum_pps: c.bum_pps,
            control_plane: c.etcd.is_some(),
            arp_suppress: c.etcd.as_ref().is_some_and(|e| e.arp_suppress),
        }
    }
}

/// Owns the datapath's maps and programs; the only writer of the maps.
pub struct Dataplane {
    nl: Netlink,
    ebpf: Ebpf,
    maps: Maps,
    uplink: LinkInfo,
    /// The local VTEP address of each family in use.
    local: Locals,
    settings: Settings,
    tc_decap: bool,
    /// What is attached; `None` until [`Dataplane::attach`].
    attached: Option<Attached>,
    vnis: BTreeMap<u32, Vni>,
    ports: BTreeMap<String, Port>,
    /// Multicast groups joined (IGMP or MLD), each held by a socket.
    memberships: BTreeMap<IpAddr, UdpSocket>,
    /// (VNI, remote) of static FDB entries behind a remote VTEP: allowed
    /// senders and next hops to keep, like the default remotes.
    static_remotes: BTreeSet<(u32, IpAddr)>,
    journal_path: PathBuf,
    /// Where the next check of recorded next hops starts.
    neigh_cursor: usize,
    /// Where the next check of remotes that have a next hop starts.
    remote_cursor: usize,
    /// VTEPs whose kernel neighbour entry a sighting made us forget, and
    /// when (see [`SIGHTING_HOLDOFF`]).
    forgotten: BTreeMap<IpAddr, std::time::Instant>,
    /// The `max_fdb` the FDB map was sized for.
    map_max_fdb: u32,
    /// Static remote entries added lately, by `fdb add` (see
    /// [`Dataplane::set_static_remotes`]).
    recent_static: BTreeMap<(u32, IpAddr), std::time::Instant>,
    /// What the control plane's table holds (installed for the VNIs served).
    etcd: crate::etcd::Table,
    /// The control plane is connected.
    etcd_up: bool,
    /// Learned entries were replaced by the control plane's: recount.
    etcd_recount: bool,
    /// VNIs whose flood list had no room for a VTEP (warned once).
    etcd_full: BTreeSet<u32>,
    /// VNIs whose flood list the control plane changed, and whether the
    /// allowed senders need a sync ([`Dataplane::etcd_settle`]).
    etcd_touched: BTreeSet<u32>,
    etcd_dirty: bool,
    /// Remotes that failed to resolve (warned once until they resolve).
    unresolved: BTreeSet<IpAddr>,
    /// Ports whose GSO guard could not be attached (warned once).
    guard_warned: BTreeSet<String>,
    /// (VNI, VTEP) of the control plane refused for their family (warned
    /// once).
    etcd_family_warned: BTreeSet<(u32, IpAddr)>,
    /// [`DpConfig::meta_key`]: random, chosen once for these maps.
    meta_key: [u32; 2],
}

/// A VTEP's kernel neighbour entry is forgotten at most this often.
const SIGHTING_HOLDOFF: std::time::Duration = std::time::Duration::from_secs(5);

/// Remote VTEPs checked per tick (all of them, up to this many).
const REMOTES_PER_TICK: usize = 128;

/// Next hops recorded by the datapath that are checked per tick.
const NEIGH_CHECKS_PER_TICK: usize = 64;

impl Dataplane {
    /// A dataplane on freshly loaded programs and maps, with no VNI yet.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        nl: Netlink,
        ebpf: Ebpf,
        maps: Maps,
        uplink: LinkInfo,
        local: Locals,
        settings: Settings,
        tc_decap: bool,
        journal_path: PathBuf,
    ) -> Result<Self> {
        let settings_max_fdb = settings.max_fdb;
        let mut key = [0u8; 8];
        getrandom::getrandom(&mut key)
            .map_err(|e| anyhow::anyhow!("reading random bytes for the metadata key: {e}"))?;
        let meta_key = bytemuck::cast(key);
        let mut dp = Self {
            nl,
            ebpf,
            maps,
            uplink,
            local,
            settings,
            tc_decap,
            attached: None,
            vnis: BTreeMap::new(),
            ports: BTreeMap::new(),
            memberships: BTreeMap::new(),
            static_remotes: BTreeSet::new(),
            journal_path,
            neigh_cursor: 0,
            remote_cursor: 0,
            forgotten: BTreeMap::new(),
            map_max_fdb: settings_max_fdb,
            recent_static: BTreeMap::new(),
            etcd: Default::default(),
            etcd_up: false,
            etcd_recount: false,
            etcd_full: BTreeSet::new(),
            unresolved: BTreeSet::new(),
            guard_warned: BTreeSet::new(),
            etcd_family_warned: BTreeSet::new(),
            etcd_touched: BTreeSet::new(),
            etcd_dirty: false,
            meta_key,
        };
        dp.write_config()?;
        Ok(dp)
    }

    pub fn maps(&self) -> &Maps {
        &self.maps
    }
    pub fn maps_mut(&mut self) -> &mut Maps {
        &mut self.maps
    }
    pub fn ebpf(&self) -> &Ebpf {
        &self.ebpf
    }
    pub fn uplink(&self) -> &LinkInfo {
        &self.uplink
    }
    /// The local VTEP address of each family.
    pub fn locals(&self) -> Locals {
        self.local
    }
    /// Our VTEP address in VNI `id` (the local address of its family).
    pub fn local_of(&self, id: u32) -> Option<IpAddr> {
        let v = self.vnis.get(&id)?;
        self.local.get(self.family(v))
    }
    pub fn settings(&self) -> &Settings {
        &self.settings
    }
    /// The `max_fdb` the FDB map was created for (a reload may not exceed
    /// it).
    pub fn map_max_fdb(&self) -> u32 {
        self.map_max_fdb
    }
    pub fn netlink(&self) -> &Netlink {
        &self.nl
    }

    /// `CONFIG`, from the settings and the uplink.
    fn write_config(&mut self) -> Result<()> {
        let (port_lo, port_hi, ttl) = kernel_defaults();
        let s = &self.settings;
        let dp = DpConfig {
            local_ip: self.local.v4.map_or([0; 4], |a| a.octets()),
            uplink_ifindex: self.uplink.index,
            dstport: s.dstport,
            port_lo,
            port_hi,
            ttl,
            mcast_ttl: 1,
            flags: if s.learning { CFG_F_LEARNING } else { 0 }
                | if self.tc_decap { CFG_F_TC_DECAP } else { 0 }
                | if s.control_plane {
                    CFG_F_PORT_LEARN | CFG_F_SNOOP
                } else {
                    0
                }
                | if s.control_plane && s.arp_suppress {
                    CFG_F_ARP_SUPPRESS
                } else {
                    0
                },
            max_learned: s.max_fdb,
            uplink_mac: self.uplink.mac,
            hop_limit: ipv6_hop_limit(&self.uplink.name),
            _pad: 0,
            uplink_mtu: self.uplink.mtu,
            _pad2: 0,
            local_ip6: self.local.v6.map_or([0; 16], |a| a.octets()),
            meta_key: self.meta_key,
        };
        self.maps.config.set(0, dp, 0).context("writing CONFIG")
    }

    /// New settings (a reload). The uplink and the FDB's capacity cannot
    /// change without a restart; the caller checked that.
    pub fn set_settings(&mut self, s: Settings) -> Result<()> {
        if s == self.settings {
            return Ok(());
        }
        let allow_changed = s.allow_remote != self.settings.allow_remote
            || s.port_max_fdb != self.settings.port_max_fdb
            || s.bum_pps != self.settings.bum_pps;
        let v4_before = self.local.v4;
        self.local = s.local.or(self.local);
        self.settings = s;
        if self.local.v4 != v4_before {
            self.rejoin_v4();
        }
        self.write_config()?;
        if allow_changed {
            fdb::recount_learned(&mut self.maps)?;
            for id in self.vnis.keys().copied().collect::<Vec<_>>() {
                self.write_vni(id)?;
                self.write_ports(id)?;
            }
            self.sync_allowed();
        }
        Ok(())
    }

    /// The uplink changed (MTU, address, MAC): the datapath follows.
    pub async fn uplink_changed(&mut self, link: LinkInfo) -> Result<()> {
        let mtu_changed = link.mtu != self.uplink.mtu;
        let mac_changed = link.mac != self.uplink.mac;
        if !mtu_changed && !mac_changed {
            return Ok(());
        }
        if mtu_changed {
            info!(
                "uplink {} MTU {} -> {}: encapsulated frames must fit {}",
                link.name, self.uplink.mtu, link.mtu, link.mtu
            );
        }
        self.uplink = LinkInfo {
            xdp_prog_id: self.uplink.xdp_prog_id,
            ..link
        };
        self.write_config()?;
        if mtu_changed {
            self.sync_host_if_mtus().await;
        }
        Ok(())
    }

    /// The uplink was renamed: what is detached at stop is found by the
    /// new name.
    pub fn uplink_renamed(&mut self, name: &str) {
        self.uplink.name = name.to_owned();
        if let Some(att) = &mut self.attached {
            att.uplink_renamed(name);
        }
    }

    // -----------------------------------------------------------------
    // VNIs

    /// Adds VNI `spec.id` (its host interface too), with no ports.
    pub async fn vni_add(&mut self, spec: &VniSpec, origin: Origin) -> Result<()> {
        if self.vnis.contains_key(&spec.id) {
            bail!("VNI {} exists already", spec.id);
        }
        if spec.remotes.len() > MAX_REMOTES {
            bail!("at most {MAX_REMOTES} default remotes per VNI");
        }
        if let Some(g) = spec.group
            && !g.is_multicast()
        {
            bail!("group {g} is not a multicast address");
        }
        let family = crate::addr::vni_family(
            spec.id,
            crate::addr::vni_addrs(&spec.remotes, spec.group.as_ref()),
        )
        .map_err(|e| anyhow!(e))?;
        let family = match family {
            Some(f) => {
                let why = match spec.remotes.first() {
                    Some(r) => format!("remote {r}"),
                    None => format!(
                        "group {}",
                        spec.group.map(|g| g.to_string()).unwrap_or_default()
                    ),
                };
                self.ensure_local(f, spec.id, &why).await?;
                f
            }
            None => self.local.default_family(),
        };
        if let Some(name) = &spec.host_if
            && self
                .vnis
                .values()
                .any(|v| v.host_if.as_ref().is_some_and(|h| &h.name == name))
        {
            bail!("host interface '{name}' belongs to another VNI");
        }
        self.vnis.insert(
            spec.id,
            Vni {
                origin,
                remotes: dedup(&spec.remotes)
                    .into_iter()
                    .map(|r| (r, origin))
                    .collect(),
                group: spec.group,
                host_if: None,
                limits: spec.limits.clone(),
            },
        );
        let done = async {
            self.write_vni(spec.id)?;
            if let Some(g) = spec.group {
                self.maps
                    .groups
                    .insert(vtep_from_ip(g), 1, 0)
                    .context("writing GROUPS")?;
                self.join(g);
            }
            self.sync_allowed();
            self.resolve_remotes().await;
            if let Some(name) = &spec.host_if {
                let mtu = self.overlay_mtu(family);
                let h = HostIf::existing_or_create(&self.nl, name, mtu).await?;
                let peer = h.peer_name.clone();
                if let Some(v) = self.vnis.get_mut(&spec.id) {
                    v.host_if = Some(h);
                }
                self.port_add_inner(&peer, spec.id, origin, true).await?;
            }
            Ok::<_, anyhow::Error>(())
        }
        .await;
        if let Err(e) = done {
            let _ = self.vni_remove(spec.id, true).await;
            return Err(e);
        }
        self.etcd_install_vni(spec.id).await;
        self.sync_guards().await;
        info!("VNI {} added ({}, over {family})", spec.id, origin.name());
        Ok(())
    }

    /// Removes VNI `id`: its ports (detached), its host interface, its
    /// group membership and every FDB entry of it.
    pub async fn vni_del(&mut self, id: u32) -> Result<()> {
        self.vni_remove(id, false).await
    }

    /// [`Dataplane::vni_del`]; `rollback`: undoing a failed `vni_add`,
    /// which leaves a host interface it did not create alone.
    async fn vni_remove(&mut self, id: u32, rollback: bool) -> Result<()> {
        if !self.vnis.contains_key(&id) {
            bail!("VNI {id} is not configured in this forwarder");
        }
        let ports: Vec<String> = self
            .ports
            .iter()
            .filter(|(_, p)| p.vni == id)
            .map(|(n, _)| n.clone())
            .collect();
        for p in ports {
            self.port_remove(&p).await;
        }
        let Some(v) = self.vnis.remove(&id) else {
            return Ok(());
        };
        // Its senders first: an ALLOWED entry carries the VNI's flags, so
        // while it is there the datapath accepts (and learns from) the
        // VNI's frames without looking at VNIS. Then VNIS, then the FDB:
        // nothing is learned into the VNI after its flush. Its static
        // remotes go with the flush: forgotten now, not at the next scan
        // (a VNI added again in between would allow them again).
        self.static_remotes.retain(|(v, _)| *v != id);
        self.recent_static.retain(|(v, _), _| *v != id);
        self.sync_allowed();
        let _ = self.maps.vnis.remove(&id);
        if let Some(g) = v.group
            && !self.vnis.values().any(|o| o.group == Some(g))
        {
            let _ = self.maps.groups.remove(&vtep_from_ip(g));
            self.memberships.remove(&g);
        }
        if let Some(h) = &v.host_if
            && (h.created || !rollback)
        {
            h.remove(&self.nl).await;
        }
        self.flush_where(|k, _| k.vni == id)?;
        self.etcd_remove_vni(id);
        info!("VNI {id} removed");
        Ok(())
    }

    /// Changes VNI `id`'s group or host interface: removed and added again
    /// (its ports too). Only that VNI's traffic is disturbed.
    async fn vni_redo(&mut self, spec: &VniSpec, origin: Origin) -> Result<()> {
        let ports: Vec<(String, Origin)> = self
            .ports
            .iter()
            .filter(|(_, p)| p.vni == spec.id && !p.host_if)
            .map(|(n, p)| (n.clone(), p.origin))
            .collect();
        self.vni_del(spec.id).await?;
        self.vni_add(spec, origin).await?;
        for (name, o) in ports {
            if let Err(e) = self.port_add(&name, spec.id, o).await {
                warn!("port '{name}' of VNI {}: {e:#}", spec.id);
            }
        }
        Ok(())
    }

    pub fn has_vni(&self, id: u32) -> bool {
        self.vnis.contains_key(&id)
    }

    /// `VNIS[id]` from the state: flood list, group, attached ports.
    fn write_vni(&mut self, id: u32) -> Result<()> {
        let Some(v) = self.vnis.get(&id) else {
            return Ok(());
        };
        let ports: Vec<u32> = self
            .ports
            .values()
            .filter(|p| p.vni == id)
            .filter_map(|p| p.link.as_ref().map(|l| l.index))
            .collect();
        if ports.len() > MAX_PORTS {
            bail!("at most {MAX_PORTS} local ports per VNI");
        }
        let mut info = VniInfo {
            n_remotes: v.remotes.len().min(MAX_REMOTES) as u32,
            n_ports: ports.len() as u32,
            group: v.group.map_or([0; 16], vtep_from_ip),
            flags: self.vni_flags(v),
            max_learned: v.limits.max_fdb.unwrap_or(0),
            ..Default::default()
        };
        for (slot, (r, _)) in info.remotes.iter_mut().zip(&v.remotes) {
            *slot = vtep_from_ip(*r);
        }
        for (slot, p) in info.ports.iter_mut().zip(&ports) {
            *slot = *p;
        }
        let was_v6 = self
            .maps
            .vnis
            .get(&id, 0)
            .ok()
            .map(|o| o.flags & VNI_F_IPV6 != 0);
        let is_v6 = info.flags & VNI_F_IPV6 != 0;
        self.maps.vnis.insert(id, info, 0).context("writing VNIS")?;
        if was_v6.is_some_and(|w| w != is_v6) {
            // The VNI changed family: its entries behind VTEPs of the
            // other family can no longer be reached.
            let fam = if is_v6 { Family::V6 } else { Family::V4 };
            info!("VNI {id} runs over {fam} now: its entries behind other VTEPs are removed");
            self.flush_where(|k, e| {
                k.vni == id && !e.is_local() && vxlan_common::vtep_is_v4(&e.remote) == is_v6
            })?;
        }
        Ok(())
    }

    /// `VniInfo::flags` of VNI `v` (also in its ALLOWED entries' values,
    /// see `vxlan_common::allow_value`).
    fn vni_flags(&self, v: &Vni) -> u32 {
        // Group mode takes VXLAN from any sender, unless told whom.
        let any = if v.group.is_some() && self.allow_of(v).is_empty() {
            VNI_F_ANY_SENDER
        } else {
            0
        };
        let v6 = if self.family(v) == Family::V6 {
            VNI_F_IPV6
        } else {
            0
        };
        any | v6
    }

    /// The senders VNI `v` accepts besides its remotes: its own list, or
    /// the instance's.
    fn allow_of<'a>(&'a self, v: &'a Vni) -> &'a [Cidr] {
        v.limits
            .allow_remote
            .as_deref()
            .unwrap_or(&self.settings.allow_remote)
    }

    /// `PORTS` value of a port of VNI `vni`: its limits from the VNI's, or
    /// the instance's defaults.
    fn port_info(&self, vni: u32, link: &LinkInfo) -> PortInfo {
        let peer = link.kind.as_deref() == Some("veth") && link.peer_in_other_netns;
        let limits = self.vnis.get(&vni).map(|v| &v.limits);
        PortInfo {
            vni,
            flags: if peer { PORT_F_PEER } else { 0 },
            max_learned: limits
                .and_then(|l| l.port_max_fdb)
                .or(self.settings.port_max_fdb)
                .unwrap_or(0),
            bum_pps: limits
                .and_then(|l| l.bum_pps)
                .or(self.settings.bum_pps)
                .unwrap_or(0),
        }
    }

    /// Rewrites `PORTS` for the attached ports of VNI `id` (limits changed).
    fn write_ports(&mut self, id: u32) -> Result<()> {
        let links: Vec<LinkInfo> = self
            .ports
            .values()
            .filter(|p| p.vni == id)
            .filter_map(|p| p.link.clone())
            .collect();
        for l in links {
            let info = self.port_info(id, &l);
            self.maps
                .ports
                .insert(l.index, info, 0)
                .context("writing PORTS")?;
        }
        Ok(())
    }

    /// New limits for VNI `id` (a reload): written at once.
    fn set_limits(&mut self, id: u32, limits: &VniLimits) -> Result<()> {
        let Some(v) = self.vnis.get_mut(&id) else {
            return Ok(());
        };
        if &v.limits == limits {
            return Ok(());
        }
        v.limits = limits.clone();
        // The datapath counts only capped scopes: exact counts first.
        fdb::recount_learned(&mut self.maps)?;
        self.write_vni(id)?;
        self.write_ports(id)?;
        self.sync_allowed();
        Ok(())
    }

    // -----------------------------------------------------------------
    // Default remotes

    /// Adds default remote `addr` to VNI `vni` (no error if present: the
    /// origin is updated when `origin` is the configuration).
    /// A remote of the other family than the VNI's is refused.
    pub async fn remote_add(&mut self, vni: u32, addr: IpAddr, origin: Origin) -> Result<()> {
        let v = self
            .vnis
            .get_mut(&vni)
            .ok_or_else(|| anyhow!("VNI {vni} is not configured in this forwarder"))?;
        if let Some(slot) = v.remotes.iter_mut().find(|(r, _)| *r == addr) {
            if origin == Origin::Config {
                slot.1 = origin;
            }
            return Ok(());
        }
        if v.remotes.len() >= MAX_REMOTES {
            bail!("at most {MAX_REMOTES} default remotes per VNI");
        }
        self.check_vtep_family(vni, addr, "remote")?;
        self.ensure_local(Family::of(&addr), vni, &format!("remote {addr}"))
            .await?;
        let Some(v) = self.vnis.get_mut(&vni) else {
            return Ok(());
        };
        v.remotes.push((addr, origin));
        self.write_vni(vni)?;
        self.sync_allowed();
        self.resolve_remotes().await;
        self.sync_family_effects().await;
        Ok(())
    }

    /// Removes default remote `addr` from VNI `vni`.
    pub fn remote_del(&mut self, vni: u32, addr: IpAddr) -> Result<()> {
        let v = self
            .vnis
            .get_mut(&vni)
            .ok_or_else(|| anyhow!("VNI {vni} is not configured in this forwarder"))?;
        let before = v.remotes.len();
        v.remotes.retain(|(r, _)| *r != addr);
        if v.remotes.len() == before {
            bail!("{addr} is not a default remote of VNI {vni}");
        }
        // The sender's permission goes before the flood list changes (and
        // the flags its entry carries with it, should the VNI's family
        // follow the remotes left).
        self.sync_allowed();
        self.write_vni(vni)?;
        Ok(())
    }

    fn remotes_of(&self, vni: u32) -> Vec<IpAddr> {
        self.vnis
            .get(&vni)
            .map(|v| v.remotes.iter().map(|(r, _)| *r).collect())
            .unwrap_or_default()
    }

    // -----------------------------------------------------------------
    // Ports

    /// Adds local port `name` to VNI `vni` and attaches to it.
    pub async fn port_add(&mut self, name: &str, vni: u32, origin: Origin) -> Result<()> {
        self.port_add_inner(name, vni, origin, false).await
    }

    async fn port_add_inner(
        &mut self,
        name: &str,
        vni: u32,
        origin: Origin,
        host_if: bool,
    ) -> Result<()> {
        self.check_new_port(name, vni)?;
        let link = self.nl.link_by_name(name).await?;
        if link.index == self.uplink.index {
            bail!("port '{name}' is the uplink");
        }
        self.ports.insert(
            name.to_owned(),
            Port {
                vni,
                origin,
                link: None,
                host_if,
            },
        );
        if let Err(e) = self.port_up(name, link).await {
            self.ports.remove(name);
            let _ = self.write_vni(vni);
            return Err(e);
        }
        Ok(())
    }

    /// Whether `name` may become a port of `vni`: the VNI exists, the name
    /// is no port yet, and the VNI has room.
    fn check_new_port(&self, name: &str, vni: u32) -> Result<()> {
        if !self.vnis.contains_key(&vni) {
            bail!("VNI {vni} is not configured in this forwarder");
        }
        if let Some(p) = self.ports.get(name) {
            bail!("'{name}' is a port of VNI {} already", p.vni);
        }
        if self.ports.values().filter(|p| p.vni == vni).count() >= MAX_PORTS {
            bail!("at most {MAX_PORTS} local ports per VNI");
        }
        Ok(())
    }

    /// A runtime or journalled port whose interface does not exist (yet):
    /// attached when it appears.
    pub fn port_add_waiting(&mut self, name: &str, vni: u32, origin: Origin) -> Result<()> {
        self.check_new_port(name, vni)?;
        self.ports.insert(
            name.to_owned(),
            Port {
                vni,
                origin,
                link: None,
                host_if: false,
            },
        );
        Ok(())
    }

    /// Puts port `name` (known, not attached) on `link`: PORTS, then the
    /// VNI's port list, then (once attached) our filter on it.
    async fn port_up(&mut self, name: &str, link: LinkInfo) -> Result<()> {
        let Some(vni) = self.ports.get(name).map(|p| p.vni) else {
            return Ok(());
        };
        let info = self.port_info(vni, &link);
        if let Some(p) = self.ports.get_mut(name) {
            p.link = Some(link.clone());
        }
        let up = async {
            self.maps
                .ports
                .insert(link.index, info, 0)
                .context("writing PORTS")?;
            self.write_vni(vni)?;
            if let Some(att) = &mut self.attached {
                att.add_port(&mut self.ebpf, &link.name)?;
            }
            Ok::<_, anyhow::Error>(())
        }
        .await;
        if up.is_ok() {
            self.sync_guards().await;
        }
        if up.is_err() {
            // As it was: not attached (a later link event or resync tries
            // again).
            if let Some(p) = self.ports.get_mut(name) {
                p.link = None;
            }
            let _ = self.maps.ports.remove(&link.index);
            let _ = self.write_vni(vni);
            if let Some(att) = &mut self.attached {
                att.remove_port(&link.name);
            }
        }
        up
    }

    /// Port `name`'s interface is gone (or the port is being removed):
    /// out of the VNI's list and PORTS, its local FDB entries removed.
    async fn port_down(&mut self, name: &str) {
        let Some(p) = self.ports.get_mut(name) else {
            return;
        };
        let Some(link) = p.link.take() else {
            return;
        };
        let vni = p.vni;
        if let Some(att) = &mut self.attached {
            att.remove_port(&link.name);
        }
        self.sync_guards().await;
        if let Err(e) = self.write_vni(vni) {
            warn!("VNI {vni}: {e:#}");
        }
        let _ = self.maps.ports.remove(&link.index);
        if let Some(bum) = &mut self.maps.bum {
            let _ = bum.remove(&link.index);
        }
        let _ = self
            .maps
            .learned_by
            .remove(&vxlan_common::learned_key_port(link.index));
        if let Err(e) = self.flush_where(|_, e| e.is_local() && e.ifindex == link.index) {
            warn!("removing the FDB entries of '{name}': {e:#}");
        }
    }

    /// Removes port `name` from this forwarder.
    pub async fn port_del(&mut self, name: &str) -> Result<()> {
        match self.ports.get(name) {
            None => bail!("'{name}' is not a port of this forwarder"),
            Some(p) if p.host_if => bail!(
                "'{name}' is the host interface of VNI {}: delete the VNI",
                p.vni
            ),
            Some(_) => {}
        }
        self.port_remove(name).await;
        Ok(())
    }

    async fn port_remove(&mut self, name: &str) {
        self.port_down(name).await;
        self.ports.remove(name);
        info!("port '{name}' removed");
    }

    /// A link appeared or changed: a configured port that waited for it is
    /// attached; a port whose interface was replaced is moved over.
    pub async fn link_changed(&mut self, link: &LinkInfo) {
        if link.index == self.uplink.index {
            if let Err(e) = self.uplink_changed(link.clone()).await {
                warn!("uplink {}: {e:#}", link.name);
            }
            return;
        }
        // A port renamed away from its configured name.
        let renamed: Vec<String> = self
            .ports
            .iter()
            .filter(|(n, p)| {
                p.link.as_ref().is_some_and(|l| l.index == link.index) && **n != link.name
            })
            .map(|(n, _)| n.clone())
            .collect();
        for n in renamed {
            info!("port '{n}' was renamed to '{}': detached", link.name);
            self.port_down(&n).await;
        }
        let Some(p) = self.ports.get(&link.name) else {
            return;
        };
        match &p.link {
            Some(l) if l.index == link.index => return,
            Some(_) => self.port_down(&link.name).await,
            None => {}
        }
        let start = std::time::Instant::now();
        match self.port_up(&link.name, link.clone()).await {
            Ok(()) => info!(
                "port '{}' (ifindex {}) attached in {:?}",
                link.name,
                link.index,
                start.elapsed()
            ),
            Err(e) => warn!("attaching port '{}': {e:#}", link.name),
        }
    }

    /// A link disappeared.
    pub async fn link_removed(&mut self, index: u32) {
        let names: Vec<String> = self
            .ports
            .iter()
            .filter(|(_, p)| p.link.as_ref().is_some_and(|l| l.index == index))
            .map(|(n, _)| n.clone())
            .collect();
        for n in names {
            info!("port '{n}' disappeared: detached (attached again when it returns)");
            self.port_down(&n).await;
        }
    }

    /// Ports that should be attached but whose interface is missing or was
    /// replaced: a safety net for link events lost (netlink overruns).
    pub async fn resync_ports(&mut self) {
        let Ok(links) = self.nl.links().await else {
            return;
        };
        let by_name: StdHashMap<&str, &LinkInfo> =
            links.iter().map(|l| (l.name.as_str(), l)).collect();
        let stale: Vec<(String, Option<LinkInfo>)> = self
            .ports
            .iter()
            .filter_map(|(n, p)| {
                let now = by_name.get(n.as_str()).copied();
                let same = match (&p.link, now) {
                    (Some(a), Some(b)) => a.index == b.index,
                    (None, None) => true,
                    _ => false,
                };
                (!same).then(|| (n.clone(), now.cloned()))
            })
            .collect();
        for (name, now) in stale {
            match now {
                Some(l) => self.link_changed(&l).await,
                None => {
                    info!("port '{name}' disappeared: detached");
                    self.port_down(&name).await;
                }
            }
        }
    }

    /// Names of the attached ports, by ifindex.
    pub fn port_names(&self) -> StdHashMap<u32, String> {
        self.ports
            .iter()
            .filter_map(|(n, p)| p.link.as_ref().map(|l| (l.index, n.clone())))
            .collect()
    }

    /// Attached ports as (name, (ifindex, vni)).
    pub fn port_map(&self) -> StdHashMap<String, (u32, u32)> {
        self.ports
            .iter()
            .filter_map(|(n, p)| p.link.as_ref().map(|l| (n.clone(), (l.index, p.vni))))
            .collect()
    }

    /// The attached ports' links.
    pub fn port_links(&self) -> Vec<LinkInfo> {
        self.ports.values().filter_map(|p| p.link.clone()).collect()
    }

    // -----------------------------------------------------------------
    // FDB

    /// `fdb add|replace|append|del` (origin: runtime).
    pub async fn fdb(&mut self, op: Op, words: &[String]) -> Result<String> {
        let spec = Spec::parse(words)?;
        if op == Op::Append && spec.mac != [0; 6] {
            bail!("`fdb append` is for the all-zeros MAC (another default remote)");
        }
        if !self.vnis.contains_key(&spec.vni) {
            bail!("VNI {} is not configured in this forwarder", spec.vni);
        }
        if spec.mac == [0; 6] {
            return self.fdb_default(op, &spec).await;
        }
        let port_index = match &spec.dev {
            Some(dev) => match self.ports.get(dev) {
                Some(p) if p.vni == spec.vni => match &p.link {
                    Some(l) => Some(l.index),
                    None => bail!("port '{dev}' does not exist at the moment"),
                },
                _ => bail!("'{dev}' is not a port of VNI {}", spec.vni),
            },
            None => None,
        };
        if let Some(dst) = spec.dst
            && op != Op::Del
        {
            self.check_vtep_family(spec.vni, dst, "fdb dst")?;
        }
        fdb::apply(&mut self.maps, op, &spec, port_index).context("changing the FDB")?;
        if let Some(dst) = spec.dst
            && op != Op::Del
        {
            self.static_remotes.insert((spec.vni, dst));
            self.recent_static
                .insert((spec.vni, dst), std::time::Instant::now());
            self.sync_allowed();
            self.resolve_remotes().await;
        }
        Ok(format!("{op:?} done").to_lowercase())
    }

    /// `fdb ...` on the all-zeros MAC: the VNI's default remotes.
    async fn fdb_default(&mut self, op: Op, spec: &Spec) -> Result<String> {
        if spec.dev.is_some() {
            bail!("the all-zeros MAC takes `dst IP`, not `dev`");
        }
        let vni = spec.vni;
        let remotes = self.remotes_of(vni);
        match (op, spec.dst) {
            (Op::Add, Some(dst)) if remotes.is_empty() => {
                self.remote_add(vni, dst, Origin::Runtime).await?
            }
            (Op::Add, Some(_)) => {
                bail!("VNI {vni} already has a default remote: use `fdb append`")
            }
            (Op::Append, Some(dst)) if remotes.contains(&dst) => {
                bail!("{dst} is already a default remote of VNI {vni}")
            }
            (Op::Append, Some(dst)) => self.remote_add(vni, dst, Origin::Runtime).await?,
            (Op::Replace, Some(dst)) => {
                for r in remotes {
                    self.remote_del(vni, r)?;
                }
                self.remote_add(vni, dst, Origin::Runtime).await?;
            }
            (Op::Del, Some(dst)) => self.remote_del(vni, dst)?,
            (Op::Del, None) => {
                for r in remotes {
                    self.remote_del(vni, r)?;
                }
            }
            (_, None) => bail!("missing `dst IP`"),
        }
        Ok(format!("{op:?} done").to_lowercase())
    }

    /// `fdb flush`: FDB entries (never the default remotes) of one VNI or
    /// all, learned only or static too.
    pub fn fdb_flush(&mut self, vni: Option<u32>, learned_only: bool) -> Result<usize> {
        let n = fdb::flush(&mut self.maps, vni, learned_only)?;
        if !learned_only {
            self.static_remotes
                .retain(|(v, _)| vni.is_some_and(|x| x != *v));
            self.sync_allowed();
        }
        Ok(n)
    }

    /// Deletes the FDB entries `doomed` selects and recounts.
    fn flush_where(
        &mut self,
        doomed: impl Fn(&FdbKey, &vxlan_common::FdbEntry) -> bool,
    ) -> Result<()> {
        let mut keys = Vec::new();
        batch::for_each(&self.maps.fdb, |k, e| {
            if doomed(k, e) {
                keys.push(*k);
            }
        })?;
        if keys.is_empty() {
            return Ok(());
        }
        batch::delete(&mut self.maps.fdb, &keys)?;
        fdb::recount_learned(&mut self.maps)?;
        Ok(())
    }

    /// Static remote entries, from a scan of the FDB (by the housekeeper).
    pub fn set_static_remotes(&mut self, mut set: BTreeSet<(u32, IpAddr)>) {
        // A scan may have started before an `fdb add`: what was added in
        // the last minute stays until a later scan can have seen it.
        let now = std::time::Instant::now();
        self.recent_static
            .retain(|_, t| now.duration_since(*t) < std::time::Duration::from_secs(60));
        set.extend(self.recent_static.keys().copied());
        if set != self.static_remotes {
            self.static_remotes = set;
            self.sync_allowed();
        }
    }

    // -----------------------------------------------------------------
    // Derived tables

    /// ALLOWED = for each VNI: its default remotes and static remote
    /// entries (host prefixes), and the `allow_remote` prefixes, of either
    /// family (see [`crate::addr::allowed_key`]).
    pub fn sync_allowed(&mut self) {
        // Each entry's value carries its VNI's flags (`allow_value`): an
        // entry whose VNI changed family is rewritten.
        let mut want: BTreeMap<(u32, [u8; ALLOW_DATA_LEN]), u32> = BTreeMap::new();
        for (&vni, v) in &self.vnis {
            let value = allow_value(self.vni_flags(v));
            for (r, _) in &v.remotes {
                want.insert(allowed_host_key(vni, *r), value);
            }
            for c in self.allow_of(v) {
                want.insert(allowed_key(vni, c), value);
            }
        }
        for (vni, r) in self.static_remotes.iter().chain(&self.etcd_senders()) {
            if let Some(v) = self.vnis.get(vni) {
                want.insert(allowed_host_key(*vni, *r), allow_value(self.vni_flags(v)));
            }
        }
        let have = self.maps.allowed_entries();
        for (len, data) in have.keys().filter(|k| !want.contains_key(k)) {
            let _ = self.maps.allowed.remove(&Key::new(*len, *data));
        }
        for ((len, data), value) in &want {
            if have.get(&(*len, *data)) == Some(value) {
                continue;
            }
            if let Err(e) = self.maps.allowed.insert(&Key::new(*len, *data), *value, 0) {
                warn!("updating the allowed senders: {e}");
            }
        }
    }

    /// Keeps NEIGH (the link-layer next hop of each remote VTEP) equal to
    /// what the kernel's routing and neighbour tables say, every second
    /// (beyond [`REMOTES_PER_TICK`] remotes, each in turn):
    ///
    /// - default remotes and static remote entries: resolved (the kernel
    ///   is asked to resolve those it does not know; flood copies cannot
    ///   wait in its queue), STALE ones re-probed, FAILED ones removed
    ///   (IP frames then take `bpf_redirect_neigh`, the kernel's path);
    /// - next hops the datapath recorded from received frames: confirmed
    ///   by the kernel, which overwrites them (a forged first frame does
    ///   not decide where our traffic goes), removed when it fails them;
    /// - a VTEP whose frames arrive from another MAC (`NEIGH_SEEN`, filled
    ///   by the datapath): the kernel's entry is deleted and resolved
    ///   afresh, so a VTEP whose MAC changed is followed within a tick or
    ///   two, while a frame alone changes nothing.
    pub async fn resolve_remotes(&mut self) {
        let remotes = self.remote_addrs();
        // Next hops the datapath recorded: a bounded number per tick.
        let recorded: Vec<IpAddr> = self
            .maps
            .neigh
            .keys()
            .filter_map(Result::ok)
            .map(|k| vtep_to_ip(&k))
            .filter(|a| !remotes.contains(a))
            .collect();
        let n = recorded.len();
        let start = if n == 0 { 0 } else { self.neigh_cursor % n };
        let batch: Vec<IpAddr> = recorded
            .iter()
            .cycle()
            .skip(start)
            .take(n.min(NEIGH_CHECKS_PER_TICK))
            .copied()
            .collect();
        self.neigh_cursor = start + batch.len();
        self.unresolved.retain(|a| remotes.contains(a));
        // Remotes: those without a next hop first (new ones), then the
        // others in turn, at most REMOTES_PER_TICK a tick (a fleet of a
        // thousand VTEPs must not stall the serve loop every second).
        let (missing, known): (Vec<IpAddr>, Vec<IpAddr>) = remotes
            .iter()
            .partition(|r| self.maps.neigh.get(&vtep_from_ip(**r), 0).is_err());
        let mut todo: Vec<IpAddr> = missing.into_iter().take(REMOTES_PER_TICK).collect();
        let room = REMOTES_PER_TICK - todo.len();
        if !known.is_empty() && room > 0 {
            let start = self.remote_cursor % known.len();
            todo.extend(known.iter().cycle().skip(start).take(room.min(known.len())));
            self.remote_cursor = start + room.min(known.len());
        }
        for r in todo {
            let result = self.resolve(r, true).await;
            if result.is_ok() {
                self.unresolved.remove(&r);
            }
            // Once per remote until it resolves again, not every second.
            if let Err(e) = result
                && self.unresolved.insert(r)
            {
                warn!("resolving remote {r}: {e:#}");
            }
        }
        for r in batch {
            let _ = self.resolve(r, false).await;
        }
    }

    /// VTEPs whose frames arrived from another MAC than NEIGH holds
    /// (`NEIGH_SEEN`, noted by the datapath at most once a second per
    /// inner MAC): the kernel's entry is deleted and resolved afresh, and
    /// NEIGH takes its answer. Cheap when there are none: called often.
    pub async fn handle_sightings(&mut self) {
        let seen: Vec<VtepAddr> = self.maps.neigh_seen.keys().filter_map(Result::ok).collect();
        if seen.is_empty() {
            return;
        }
        let configured = self.remote_addrs();
        let now = std::time::Instant::now();
        self.forgotten
            .retain(|_, t| now.duration_since(*t) < SIGHTING_HOLDOFF);
        for ip in &seen {
            let _ = self.maps.neigh_seen.remove(ip);
            let addr = vtep_to_ip(ip);
            // Only a VTEP on the uplink's own link: behind a router the
            // frames carry a router's MAC (one of several, with ECMP), and
            // the router's entry is not ours to forget. At most once per
            // hold-off per address, whatever the frames say.
            if self.forgotten.contains_key(&addr) {
                continue;
            }
            if let Ok((oif, nh)) = self.nl.route_get(addr).await
                && nh == addr
            {
                self.forgotten.insert(addr, now);
                let _ = self.nl.forget_neighbour(oif, nh).await;
                let _ = self.nl.kick_neighbour(oif, nh).await;
            }
        }
        // An ARP or ND exchange on a LAN takes well under this.
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        for ip in seen {
            let addr = vtep_to_ip(&ip);
            let _ = self.resolve(addr, configured.contains(&addr)).await;
        }
    }

    /// The default remotes of every VNI and the static remote entries: the
    /// VTEPs we send to by configuration or command.
    fn remote_addrs(&self) -> BTreeSet<IpAddr> {
        self.vnis
            .values()
            .flat_map(|v| v.remotes.iter().map(|(r, _)| *r))
            .chain(self.static_remotes.iter().map(|(_, r)| *r))
            .collect()
    }

    /// Brings NEIGH[remote] in line with the kernel; `configured`: ask
    /// the kernel to resolve it when it does not know it.
    /// IPv4 remotes are resolved over ARP, IPv6 ones over neighbour
    /// discovery, both by the kernel.
    async fn resolve(&mut self, remote: IpAddr, configured: bool) -> Result<()> {
        let key = vtep_from_ip(remote);
        let (oif, nh) = self.nl.route_get(remote).await?;
        match self.nl.neighbour(oif, nh).await? {
            Neighbour::Known { mac, stale } => {
                let smac = self.nl.link_by_index(oif).await?.mac;
                let entry = NeighEntry {
                    dmac: mac,
                    smac,
                    ifindex: oif,
                };
                if self.maps.neigh.get(&key, 0).ok() != Some(entry) {
                    self.maps.neigh.insert(key, entry, 0)?;
                }
                if stale {
                    self.nl.kick_neighbour(oif, nh).await?;
                }
            }
            Neighbour::Failed => {
                let _ = self.maps.neigh.remove(&key);
                if configured {
                    self.nl.kick_neighbour(oif, nh).await?;
                }
            }
            Neighbour::Unknown => self.nl.kick_neighbour(oif, nh).await?,
        }
        Ok(())
    }

    // -----------------------------------------------------------------
    // Attachment

    /// Attaches everything (see [`crate::attach::attach`]); from now on
    /// ports added are attached at once.
    pub async fn attach(
        &mut self,
        xdp: Option<bool>,
        adopt: Option<crate::maps::Running>,
    ) -> Result<()> {
        let ports = self.port_links();
        let att = crate::attach::attach(&mut self.ebpf, &self.nl, &self.uplink, &ports, xdp, adopt)
            .await?;
        self.attached = Some(att);
        self.sync_guards().await;
        Ok(())
    }

    /// Detaches everything, removes the host interfaces and leaves the
    /// groups.
    ///
    /// `started`: the start succeeded. After a failed start, host
    /// interfaces this process did not create (a previous instance's,
    /// whose datapath may still run) are left alone.
    pub async fn shutdown(mut self, started: bool) {
        if let Some(att) = self.attached.take() {
            att.detach(&self.nl).await;
        }
        for v in self.vnis.values() {
            if let Some(h) = &v.host_if
                && (started || h.created)
            {
                h.remove(&self.nl).await;
            }
        }
        self.memberships.clear();
    }

    // -----------------------------------------------------------------
    // Views

    pub fn vni_rows(&self) -> Vec<VniRow> {
        self.vnis
            .iter()
            .map(|(&id, v)| VniRow {
                vni: id,
                origin: v.origin.name().to_owned(),
                underlay: self.family(v).name().to_owned(),
                remotes: v.remotes.iter().map(|(r, _)| *r).collect(),
                remote_origins: v.remotes.iter().map(|(_, o)| o.name().to_owned()).collect(),
                group: v.group,
                host_if: v.host_if.as_ref().map(|h| h.name.clone()),
                limits: v.limits.clone(),
                ports: self
                    .ports
                    .iter()
                    .filter(|(_, p)| p.vni == id)
                    .map(|(n, _)| n.clone())
                    .collect(),
            })
            .collect()
    }

    pub fn port_rows(&self) -> Vec<PortRow> {
        self.ports
            .iter()
            .map(|(n, p)| PortRow {
                name: n.clone(),
                ifindex: p.link.as_ref().map_or(0, |l| l.index),
                vni: p.vni,
                origin: p.origin.name().to_owned(),
                attached: p.link.is_some() && self.attached.is_some(),
            })
            .collect()
    }

    // -----------------------------------------------------------------
    // The configuration as the truth

    /// Makes what came from the configuration equal to `cfg` (at start,
    /// from nothing; at a reload, from the previous configuration), and
    /// leaves what runtime commands added alone unless `cfg` contradicts
    /// it. Every port `cfg` names must exist (checked before anything
    /// changes). Errors of single steps are collected, not fatal.
    pub async fn apply_config(&mut self, cfg: &Config) -> Result<Vec<String>> {
        // Checked first: a reload that cannot be applied changes nothing.
        for v in &cfg.vnis {
            for name in &v.ports {
                let link = self
                    .nl
                    .link_by_name(name)
                    .await
                    .with_context(|| format!("port '{name}'"))?;
                if link.index == self.uplink.index {
                    bail!("port '{name}' is the uplink");
                }
            }
        }
        let mut problems = Vec::new();
        let mut note = |r: Result<()>| {
            if let Err(e) = r {
                problems.push(format!("{e:#}"));
            }
        };
        let want: BTreeMap<u32, &VniConfig> = cfg.vnis.iter().map(|v| (v.id, v)).collect();
        // VNIs the configuration no longer has.
        let gone: Vec<u32> = self
            .vnis
            .iter()
            .filter(|(id, v)| v.origin == Origin::Config && !want.contains_key(id))
            .map(|(id, _)| *id)
            .collect();
        for id in gone {
            note(self.vni_del(id).await);
        }
        // Ports the configuration no longer has, or has in another VNI.
        let cfg_port: BTreeMap<&str, u32> = cfg
            .vnis
            .iter()
            .flat_map(|v| v.ports.iter().map(|p| (p.as_str(), v.id)))
            .collect();
        let stale_ports: Vec<String> = self
            .ports
            .iter()
            .filter(|(n, p)| {
                !p.host_if
                    && match cfg_port.get(n.as_str()) {
                        Some(&vni) => vni != p.vni,
                        None => p.origin == Origin::Config,
                    }
            })
            .map(|(n, _)| n.clone())
            .collect();
        for n in stale_ports {
            self.port_remove(&n).await;
        }
        for (&id, v) in &want {
            let spec = VniSpec::from(*v);
            match self.vnis.get_mut(&id) {
                None => note(self.vni_add(&spec, Origin::Config).await),
                Some(have) => {
                    have.origin = Origin::Config;
                    let host_if = have.host_if.as_ref().map(|h| h.name.clone());
                    if have.group != spec.group || host_if != spec.host_if {
                        let runtime: Vec<IpAddr> = have
                            .remotes
                            .iter()
                            .filter(|(_, o)| *o == Origin::Runtime)
                            .map(|(r, _)| *r)
                            .collect();
                        note(self.vni_redo(&spec, Origin::Config).await);
                        for r in runtime {
                            note(self.remote_add(id, r, Origin::Runtime).await);
                        }
                    } else {
                        // Remotes: the configured ones are the truth.
                        let old: Vec<IpAddr> = have
                            .remotes
                            .iter()
                            .filter(|(r, o)| *o == Origin::Config && !spec.remotes.contains(r))
                            .map(|(r, _)| *r)
                            .collect();
                        for r in old {
                            note(self.remote_del(id, r));
                        }
                        for r in &spec.remotes {
                            note(self.remote_add(id, *r, Origin::Config).await);
                        }
                        note(self.set_limits(id, &spec.limits));
                    }
                }
            }
            for name in &v.ports {
                match self.ports.get_mut(name) {
                    Some(p) if p.vni == id => p.origin = Origin::Config,
                    Some(_) => {}
                    None => note(self.port_add(name, id, Origin::Config).await),
                }
            }
        }
        Ok(problems)
    }

    /// Puts back what runtime commands added before a restart, where the
    /// configuration does not contradict it.
    pub async fn apply_journal(&mut self, j: &Journal) {
        for v in &j.vnis {
            if self.vnis.contains_key(&v.id) {
                continue; // the configuration has it now
            }
            let spec = VniSpec {
                id: v.id,
                remotes: Vec::new(),
                group: v.group,
                host_if: v.host_if.clone(),
                limits: v.limits.clone(),
            };
            if let Err(e) = self.vni_add(&spec, Origin::Runtime).await {
                warn!("VNI {} (added at run time): {e:#}", v.id);
            }
        }
        for r in &j.remotes {
            if self.vnis.contains_key(&r.vni)
                && let Err(e) = self.remote_add(r.vni, r.addr, Origin::Runtime).await
            {
                warn!("default remote {} of VNI {}: {e:#}", r.addr, r.vni);
            }
        }
        for p in &j.ports {
            if self.ports.contains_key(&p.name) || !self.vnis.contains_key(&p.vni) {
                continue;
            }
            let r = match self.nl.link_by_name(&p.name).await {
                Ok(_) => self.port_add(&p.name, p.vni, Origin::Runtime).await,
                Err(_) => self.port_add_waiting(&p.name, p.vni, Origin::Runtime),
            };
            if let Err(e) = r {
                warn!("port '{}' (added at run time): {e:#}", p.name);
            }
        }
    }

    /// What runtime commands added, as the journal holds it.
    pub fn journal(&self) -> Journal {
        let mut j = Journal::default();
        for (&id, v) in &self.vnis {
            if v.origin == Origin::Runtime {
                j.vnis.push(journal::JVni {
                    id,
                    group: v.group,
                    host_if: v.host_if.as_ref().map(|h| h.name.clone()),
                    limits: v.limits.clone(),
                });
            }
            for (r, o) in &v.remotes {
                if *o == Origin::Runtime {
                    j.remotes.push(journal::JRemote { vni: id, addr: *r });
                }
            }
        }
        for (n, p) in &self.ports {
            if p.origin == Origin::Runtime && !p.host_if {
                j.ports.push(journal::JPort {
                    name: n.clone(),
                    vni: p.vni,
                });
            }
        }
        j
    }

    /// Writes the journal (after every runtime change).
    pub fn save_journal(&self) {
        if let Err(e) = self.journal().save(&self.journal_path) {
            warn!("saving the runtime journal: {e:#}");
        }
    }
}

/// The family VNI `v`'s remotes or group give it, if they give one.
fn explicit_family(v: &Vni) -> Option<Family> {
    v.remotes
        .first()
        .map(|(r, _)| r)
        .or(v.group.as_ref())
        .map(Family::of)
}

fn dedup(v: &[IpAddr]) -> Vec<IpAddr> {
    let mut out: Vec<IpAddr> = Vec::with_capacity(v.len());
    for r in v {
        if !out.contains(r) {
            out.push(*r);
        }
    }
    out
}

fn read_proc(path: &str) -> Option<String> {
    std::fs::read_to_string(path).ok()
}

/// The kernel's default IPv6 hop limit for packets out of `uplink` (what
/// its vxlan device uses over IPv6 unless given a TTL): the device's
/// `hop_limit`, else `all`'s, else 64.
fn ipv6_hop_limit(uplink: &str) -> u8 {
    [
        format!("/proc/sys/net/ipv6/conf/{uplink}/hop_limit"),
        "/proc/sys/net/ipv6/conf/all/hop_limit".to_owned(),
    ]
    .iter()
    .find_map(|p| read_proc(p).and_then(|s| s.trim().parse().ok()))
    .unwrap_or(64)
}

/// The kernel's outer UDP source port range and default TTL.
fn kernel_defaults() -> (u16, u16, u8) {
    let (lo, hi) = read_proc("/proc/sys/net/ipv4/ip_local_port_range")
        .and_then(|s| {
            let mut it = s.split_whitespace().filter_map(|x| x.parse::<u16>().ok());
            Some((it.next()?, it.next()?))
        })
        .unwrap_or((32768, 60999));
    let ttl = read_proc("/proc/sys/net/ipv4/ip_default_ttl")
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(64);
    (lo, hi, ttl)
}
