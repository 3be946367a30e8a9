//! Typed handles on the datapath's maps, either taken from the eBPF object
//! this process loaded or found, by id, behind the XDP program of a
//! forwarder running in this network namespace.

use std::collections::HashMap as StdHashMap;

use anyhow::{Context as _, Result, anyhow, bail};
use aya::{
    Ebpf,
    maps::{Array, HashMap, LpmTrie, Map, MapData, PerCpuArray},
    programs::loaded_programs,
};
use vxlan_common::{
    ALLOW_DATA_LEN, ArpEntry, ArpKey, BumWindow, Config, FdbEntry, FdbKey, LocalIp, NeighEntry,
    NeighSeen, PortInfo, VniInfo, VtepAddr, map, prog,
};

use crate::netlink::{LinkInfo, Netlink};

pub struct Maps {
    pub config: Array<MapData, Config>,
    pub fdb: HashMap<MapData, FdbKey, FdbEntry>,
    pub ports: HashMap<MapData, u32, PortInfo>,
    pub vnis: HashMap<MapData, u32, VniInfo>,
    pub counters: PerCpuArray<MapData, u64>,
    /// Next hops of remote VTEPs, by VTEP address.
    pub neigh: HashMap<MapData, VtepAddr, NeighEntry>,
    /// Multicast groups joined, by group address.
    pub groups: HashMap<MapData, VtepAddr, u32>,
    pub learned: Array<MapData, u64>,
    /// Learned entries per VNI and per port (`vxlan_common::learned_key_*`).
    pub learned_by: HashMap<MapData, u64, u64>,
    /// Remote VTEPs whose frames came from another MAC than NEIGH holds.
    pub neigh_seen: HashMap<MapData, VtepAddr, NeighSeen>,
    /// Each rate-limited port's BUM window (by ifindex). Only the port
    /// program uses it, so it is absent when the maps are opened by the
    /// uplink program's id (`from_program`).
    pub bum: Option<HashMap<MapData, u32, BumWindow>>,
    /// Key data: `vxlan_common::allow_data(vni, addr)`.
    pub allowed: LpmTrie<MapData, [u8; ALLOW_DATA_LEN], u32>,
    /// ARP suppression table and snooped local addresses: port program
    /// only (absent, like `bum`, when opened by the uplink program's id).
    pub arp: Option<HashMap<MapData, ArpKey, ArpEntry>>,
    pub local_ip: Option<HashMap<MapData, FdbKey, LocalIp>>,
}

impl Maps {
    /// Takes the maps out of a loaded object.
    pub fn take(ebpf: &mut Ebpf) -> Result<Self> {
        let mut take = |name: &str| -> Result<Map> {
            ebpf.take_map(name)
                .ok_or_else(|| anyhow!("map {name} missing from the eBPF object"))
        };
        Ok(Self {
            config: Array::try_from(take(map::CONFIG)?)?,
            fdb: HashMap::try_from(take(map::FDB)?)?,
            ports: HashMap::try_from(take(map::PORTS)?)?,
            vnis: HashMap::try_from(take(map::VNIS)?)?,
            counters: PerCpuArray::try_from(take(map::COUNTERS)?)?,
            neigh: HashMap::try_from(take(map::NEIGH)?)?,
            groups: HashMap::try_from(take(map::GROUPS)?)?,
            learned: Array::try_from(take(map::LEARNED)?)?,
            learned_by: HashMap::try_from(take(map::LEARNED_BY)?)?,
            neigh_seen: HashMap::try_from(take(map::NEIGH_SEEN)?)?,
            bum: Some(HashMap::try_from(take(map::BUM)?)?),
            allowed: LpmTrie::try_from(take(map::ALLOWED)?)?,
            arp: Some(HashMap::try_from(take(map::ARP)?)?),
            local_ip: Some(HashMap::try_from(take(map::LOCAL_IP)?)?),
        })
    }

    /// Opens the maps used by program `prog_id`.
    pub fn from_program(prog_id: u32) -> Result<Self> {
        let info = loaded_programs()
            .filter_map(Result::ok)
            .find(|p| p.id() == prog_id)
            .ok_or_else(|| anyhow!("eBPF program {prog_id} disappeared"))?;
        let ids = info
            .map_ids()
            .context("reading the program's map ids")?
            .ok_or_else(|| anyhow!("this kernel does not report a program's maps"))?;
        let (mut config, mut fdb, mut ports, mut vnis, mut counters, mut neigh) =
            (None, None, None, None, None, None);
        let (mut groups, mut learned, mut allowed, mut learned_by) = (None, None, None, None);
        let (mut neigh_seen, mut bum) = (None, None);
        for id in ids {
            let data = MapData::from_id(id).with_context(|| format!("opening map {id}"))?;
            let info = data.info()?;
            match info.name_as_str() {
                Some(map::CONFIG) => config = Some(Array::try_from(Map::Array(data))?),
                Some(map::FDB) => fdb = Some(HashMap::try_from(Map::HashMap(data))?),
                Some(map::PORTS) => ports = Some(HashMap::try_from(Map::HashMap(data))?),
                Some(map::VNIS) => vnis = Some(HashMap::try_from(Map::HashMap(data))?),
                Some(map::COUNTERS) => {
                    counters = Some(PerCpuArray::try_from(Map::PerCpuArray(data))?)
                }
                Some(map::NEIGH) => neigh = Some(HashMap::try_from(Map::LruHashMap(data))?),
                Some(map::GROUPS) => groups = Some(HashMap::try_from(Map::HashMap(data))?),
                Some(map::LEARNED) => learned = Some(Array::try_from(Map::Array(data))?),
                Some(map::LEARNED_BY) => learned_by = Some(HashMap::try_from(Map::HashMap(data))?),
                Some(map::BUM) => bum = Some(HashMap::try_from(Map::HashMap(data))?),
                Some(map::NEIGH_SEEN) => {
                    neigh_seen = Some(HashMap::try_from(Map::LruHashMap(data))?)
                }
                Some(map::ALLOWED) => allowed = Some(LpmTrie::try_from(Map::LpmTrie(data))?),
                _ => {}
            }
        }
        let missing = |n: &str| anyhow!("the running datapath has no {n} map (version mismatch?)");
        Ok(Self {
            config: config.ok_or_else(|| missing(map::CONFIG))?,
            fdb: fdb.ok_or_else(|| missing(map::FDB))?,
            ports: ports.ok_or_else(|| missing(map::PORTS))?,
            vnis: vnis.ok_or_else(|| missing(map::VNIS))?,
            counters: counters.ok_or_else(|| missing(map::COUNTERS))?,
            neigh: neigh.ok_or_else(|| missing(map::NEIGH))?,
            groups: groups.ok_or_else(|| missing(map::GROUPS))?,
            learned: learned.ok_or_else(|| missing(map::LEARNED))?,
            learned_by: learned_by.ok_or_else(|| missing(map::LEARNED_BY))?,
            neigh_seen: neigh_seen.ok_or_else(|| missing(map::NEIGH_SEEN))?,
            bum,
            allowed: allowed.ok_or_else(|| missing(map::ALLOWED))?,
            arp: None,
            local_ip: None,
        })
    }

    pub fn config(&self) -> Result<Config> {
        Ok(self.config.get(&0, 0)?)
    }

    /// ALLOWED as (prefix length, data) → value: what
    /// [`crate::dataplane::Dataplane::sync_allowed`] compares with what it
    /// wants.
    pub fn allowed_entries(&self) -> std::collections::BTreeMap<(u32, [u8; ALLOW_DATA_LEN]), u32> {
        self.allowed
            .iter()
            .filter_map(Result::ok)
            .map(|(k, v)| ((k.prefix_len(), k.data()), v))
            .collect()
    }

    /// The keys of ALLOWED as (prefix length, data): what
    /// [`crate::dataplane::Dataplane::sync_allowed`] compares with what it
    /// wants, and what tests check.
    pub fn allowed_keys(&self) -> std::collections::BTreeSet<(u32, [u8; ALLOW_DATA_LEN])> {
        self.allowed
            .keys()
            .filter_map(Result::ok)
            .map(|k| (k.prefix_len(), k.data()))
            .collect()
    }
}

/// Our datapath found on an uplink.
#[derive(Clone, Copy, Debug)]
pub struct Running {
    /// A program that uses every map: our XDP program, or without XDP our
    /// TC uplink program (which then decapsulates).
    pub prog_id: u32,
    /// Our XDP program on the uplink, if attached.
    pub xdp_id: Option<u32>,
}

/// Our datapath on `link`, if one is attached there.
pub async fn running_on(nl: &Netlink, link: &LinkInfo) -> Option<Running> {
    find_ours(nl, link, &program_names()).await
}

/// Names of the loaded eBPF programs, by id: one walk of the kernel's
/// program list, for any number of links.
fn program_names() -> StdHashMap<u32, String> {
    loaded_programs()
        .filter_map(Result::ok)
        .filter_map(|p| Some((p.id(), p.name_as_str()?.to_owned())))
        .collect()
}

async fn find_ours(
    nl: &Netlink,
    link: &LinkInfo,
    names: &StdHashMap<u32, String>,
) -> Option<Running> {
    let named = |id: u32, name: &str| names.get(&id).is_some_and(|n| n == name);
    if let Some(id) = link.xdp_prog_id
        && named(id, prog::XDP_UPLINK)
    {
        return Some(Running {
            prog_id: id,
            xdp_id: Some(id),
        });
    }
    // A link without clsact has no filters to list.
    let tc = nl.tc_ingress_prog_ids(link.index).await.unwrap_or_default();
    tc.into_iter()
        .find(|&id| named(id, prog::TC_UPLINK))
        .map(|id| Running {
            prog_id: id,
            xdp_id: None,
        })
}

/// The uplink of the forwarder running in this network namespace (on
/// `iface`, or the first found) and the id of a program that uses all its
/// maps.
pub async fn find_running(nl: &Netlink, iface: Option<&str>) -> Result<(LinkInfo, u32)> {
    let names = program_names();
    let links = match iface {
        Some(i) => vec![nl.link_by_name(i).await?],
        None => nl.links().await?,
    };
    for link in links {
        if let Some(r) = find_ours(nl, &link, &names).await {
            return Ok((link, r.prog_id));
        }
    }
    match iface {
        Some(i) => bail!("no vxlan-fwd is running on '{i}'"),
        None => bail!("no vxlan-fwd is running in this network namespace"),
    }
}
