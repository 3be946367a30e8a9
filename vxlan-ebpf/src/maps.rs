//! The maps shared with userspace. Their names are in `vxlan_common::map`.

use aya_ebpf::{
    macros::map,
    maps::{Array, HashMap, LpmTrie, LruHashMap, PerCpuArray, RingBuf},
};
use vxlan_common::{
    ALLOW_DATA_LEN, ArpEntry, ArpKey, BumWindow, Config, EVENTS_BYTES, FDB_CAPACITY, FdbEntry,
    FdbKey, LocalIp, MAX_ALLOWED, MAX_ARP, MAX_GROUPS, MAX_NEIGH, MAX_PORT_ENTRIES, MAX_VNIS,
    NeighEntry, NeighSeen, PortInfo, VniInfo, VtepAddr, counters::NUM_COUNTERS, wire::OuterHdr,
    wire6::OuterHdr6,
};

/// Instance configuration, index 0.
#[map]
pub static CONFIG: Array<Config> = Array::with_max_entries(1, 0);

/// Forwarding database: (VNI, MAC) → local port or remote VTEP.
#[map]
pub static FDB: HashMap<FdbKey, FdbEntry> = HashMap::with_max_entries(FDB_CAPACITY, 0);

/// Local ports: ifindex → VNI.
#[map]
pub static PORTS: HashMap<u32, PortInfo> = HashMap::with_max_entries(MAX_PORT_ENTRIES, 0);

/// Known VNIs with their flood lists.
#[map]
pub static VNIS: HashMap<u32, VniInfo> = HashMap::with_max_entries(MAX_VNIS, 0);

/// Link-layer next hop of each remote VTEP.
/// LRU: entries the XDP program records for senders are never removed
/// otherwise; userspace refreshes the configured remotes' every second.
#[map]
pub static NEIGH: LruHashMap<VtepAddr, NeighEntry> = LruHashMap::with_max_entries(MAX_NEIGH, 0);

/// Remote VTEPs whose frames came from another MAC than NEIGH holds; read
/// and cleared by userspace (see `vxlan_common::NeighSeen`).
#[map]
pub static NEIGH_SEEN: LruHashMap<VtepAddr, NeighSeen> = LruHashMap::with_max_entries(1024, 0);

/// Multicast groups this instance receives VXLAN on (value unused).
#[map]
pub static GROUPS: HashMap<VtepAddr, u32> = HashMap::with_max_entries(MAX_GROUPS, 0);

/// Number of learned FDB entries, index 0: learning stops at
/// `Config::max_learned`. Incremented here for each new entry; userspace
/// rewrites the exact count when it ages or deletes entries.
#[map]
pub static LEARNED: Array<u64> = Array::with_max_entries(1, 0);

/// Learned entries per VNI and per port (`vxlan_common::learned_key_*`),
/// for the caps of `VniInfo::max_learned` and `PortInfo::max_learned`.
/// Same protocol as LEARNED: incremented here, made exact by userspace.
#[map]
pub static LEARNED_BY: HashMap<u64, u64> =
    HashMap::with_max_entries(MAX_VNIS + MAX_PORT_ENTRIES, 0);

/// Each rate-limited port's broadcast/unknown/multicast window (by ifindex).
#[map]
pub static BUM: HashMap<u32, BumWindow> = HashMap::with_max_entries(MAX_PORT_ENTRIES, 0);

/// Learn and move events for `vxlan-fwd fdb watch`.
#[map]
pub static EVENTS: RingBuf = RingBuf::with_byte_size(EVENTS_BYTES, 0);

/// Senders allowed to send VXLAN into each VNI (anti-spoofing), by
/// longest prefix over (VNI, sender address). The value is the VNI's
/// flags (`vxlan_common::allow_value`): a frame whose sender matches
/// needs no VNIS lookup.
#[map]
pub static ALLOWED: LpmTrie<[u8; ALLOW_DATA_LEN], u32> =
    LpmTrie::with_max_entries(MAX_ALLOWED, aya_ebpf::bindings::BPF_F_NO_PREALLOC);

/// Per-CPU scratch space where the port program builds outer headers:
/// built on the stack, they would not fit the verifier's 512 bytes along
/// the encapsulation's call chain.
#[map]
pub static OUTER: PerCpuArray<OuterBuf> = PerCpuArray::with_max_entries(1, 0);

/// One frame's outer headers, for either family, and the CPU's IPv4
/// identification counter.
#[repr(C)]
pub struct OuterBuf {
    pub v4: OuterHdr,
    pub v6: OuterHdr6,
    /// The next outer IPv4 identification sent from this CPU (low 16
    /// bits), with bit 16 set once seeded (see `encap::next_ip_id`).
    pub ip_id: u32,
}

/// Per-CPU scratch buffer of the UDP checksum check (`csum`).
#[map]
pub static SCRATCH: PerCpuArray<[u8; crate::csum::CHUNK]> = PerCpuArray::with_max_entries(1, 0);

/// ARP suppression: which MAC answers for an IPv4 address in a VNI
/// (written by userspace from the control plane's table).
#[map]
pub static ARP: HashMap<ArpKey, ArpEntry> = HashMap::with_max_entries(MAX_ARP, 0);

/// IPv4 addresses of local endpoints by (VNI, MAC), snooped from their ARP
/// and IPv4 source addresses (read by userspace, which publishes them).
#[map]
pub static LOCAL_IP: LruHashMap<FdbKey, LocalIp> = LruHashMap::with_max_entries(MAX_ARP, 0);

/// Per-CPU counters indexed by `vxlan_common::Counter`.
#[map]
pub static COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(NUM_COUNTERS, 0);

#[inline(always)]
pub fn config() -> Option<&'static Config> {
    CONFIG.get(0)
}
