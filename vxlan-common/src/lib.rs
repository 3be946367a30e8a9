//! Types and pure helpers shared by the eBPF datapath (`vxlan-ebpf`) and the
//! userspace loader (`vxlan-user`).
//!
//! Every map key and value is `#[repr(C)]`, has no implicit padding (the
//! `bytemuck::Pod` derive refuses to compile otherwise) and stores wire
//! values (addresses) as big-endian byte arrays. A VTEP's underlay address
//! is one type for both families, [`VtepAddr`].
#![cfg_attr(not(feature = "user"), no_std)]

pub mod counters;
mod vtep;
pub mod wire;
pub mod wire6;

pub use counters::Counter;
pub use vtep::*;

/// Names of the eBPF programs in the object file.
pub mod prog {
    /// XDP on the uplink: validation, learning and decapsulation.
    pub const XDP_UPLINK: &str = "vxlan_xdp";
    /// TC ingress on the uplink: delivery of frames the XDP program decapsulated.
    pub const TC_UPLINK: &str = "vxlan_tc_uplink";
    /// TC ingress on every local port: learning, switching and encapsulation.
    pub const TC_PORT: &str = "vxlan_tc_port";
    /// XDP (native) on a veth port of an IPv6 VNI: passes every frame. Its
    /// presence is what matters: a veth whose peer carries an XDP program
    /// stops offloading segmentation (`veth_fix_features` clears
    /// `NETIF_F_GSO_SOFTWARE`), so the endpoint's stack segments before
    /// sending and the port program sees no GSO super-packets, whose
    /// outer UDP checksums over IPv6 BPF cannot have GSO compute.
    pub const XDP_PORT_GUARD: &str = "vxlan_xdp_port_guard";
}

/// Names of the maps in the object file.
pub mod map {
    pub const CONFIG: &str = "CONFIG";
    pub const FDB: &str = "FDB";
    pub const PORTS: &str = "PORTS";
    pub const VNIS: &str = "VNIS";
    pub const COUNTERS: &str = "COUNTERS";
    pub const NEIGH: &str = "NEIGH";
    pub const GROUPS: &str = "GROUPS";
    pub const LEARNED: &str = "LEARNED";
    pub const LEARNED_BY: &str = "LEARNED_BY";
    pub const BUM: &str = "BUM";
    pub const NEIGH_SEEN: &str = "NEIGH_SEEN";
    pub const EVENTS: &str = "EVENTS";
    pub const ALLOWED: &str = "ALLOWED";
    pub const ARP: &str = "ARP";
    pub const LOCAL_IP: &str = "LOCAL_IP";
}

/// Largest valid VNI (24 bits).
pub const VNI_MAX: u32 = 0x00ff_ffff;
/// Default remotes (all-zeros MAC entries) per VNI: head-end replication list.
pub const MAX_REMOTES: usize = 64;
/// Local ports per VNI.
pub const MAX_PORTS: usize = 64;
/// Default cap on learned FDB entries (`--max-fdb`).
pub const DEFAULT_MAX_FDB: u32 = 65_536;
/// Room kept in the FDB map for static entries beyond the learning cap, so
/// that static entries can still be added when learning is at the cap.
pub const FDB_STATIC_RESERVE: u32 = 4096;
/// Capacity of the FDB hash map as compiled; the loader sizes it to
/// `max_fdb + FDB_STATIC_RESERVE` at load time.
pub const FDB_CAPACITY: u32 = DEFAULT_MAX_FDB + FDB_STATIC_RESERVE;
/// Multicast groups the instance receives from.
pub const MAX_GROUPS: u32 = 256;
/// Entries of the ALLOWED trie.
pub const MAX_ALLOWED: u32 = 16_384;
/// Size of the FDB event ring buffer.
pub const EVENTS_BYTES: u32 = 256 * 1024;
/// Capacity of the PORTS and VNIS maps.
pub const MAX_VNIS: u32 = 4096;
pub const MAX_PORT_ENTRIES: u32 = 4096;

/// A learned entry is rewritten (to refresh `last_seen_ns`) at most this often.
pub const LEARN_REFRESH_NS: u64 = 1_000_000_000;

/// Key of the FDB: (VNI, MAC), as `bridge fdb` sees a vxlan device.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, bytemuck::Pod, bytemuck::Zeroable)]
pub struct FdbKey {
    /// VNI in host byte order.
    pub vni: u32,
    pub mac: [u8; 6],
    /// Always zero: part of the hash key.
    pub _pad: [u8; 2],
}

impl FdbKey {
    pub const fn new(vni: u32, mac: [u8; 6]) -> Self {
        Self {
            vni,
            mac,
            _pad: [0; 2],
        }
    }
}

/// The entry is static (`permanent`): never aged, never overwritten by learning.
pub const FDB_F_STATIC: u32 = 1;
/// The entry was installed by a control plane (etcd; `extern_learn` in
/// iproute2's words): never aged, never overwritten by learning from the
/// wire. A frame from the MAC on a local port does replace it (the
/// endpoint moved here).
pub const FDB_F_EXTERN: u32 = 2;
/// Set by the datapath on local entries it learns: the port's `PORT_F_*`
/// flags are in the upper half of `flags` (see [`FdbEntry::port_flags`]),
/// so delivery needs no `PORTS` lookup. Entries without it (static ones
/// userspace writes) are delivered with the flags from `PORTS`.
pub const FDB_F_PORT_KNOWN: u32 = 1 << 8;
/// Shift of the port's `PORT_F_*` flags within `FdbEntry::flags`.
pub const FDB_PORT_FLAGS_SHIFT: u32 = 16;
/// How often, in jiffies, the datapath reads the clock for an entry it
/// sees again (`FdbEntry::seen_jiffies`): 0.1 s at HZ 1000, 0.4 s at 250,
/// 1 s at 100; the refresh itself still happens at most every
/// [`LEARN_REFRESH_NS`].
pub const LEARN_CHECK_JIFFIES: u32 = 100;

/// Value of the FDB: where a MAC lives. Either `ifindex != 0` (a local port)
/// or `remote` (a remote VTEP's address).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct FdbEntry {
    /// Remote VTEP address ([`VtepAddr`]: IPv6, or IPv4-mapped); all
    /// zeros for local entries.
    pub remote: VtepAddr,
    /// Local port ifindex; zero for remote entries.
    pub ifindex: u32,
    /// `FDB_F_*` flags (and, with `FDB_F_PORT_KNOWN`, the port's flags).
    pub flags: u32,
    /// The datapath's own: the low 32 bits of `jiffies` when it last read
    /// the clock for this entry (learning reads it only every
    /// `LEARN_CHECK_JIFFIES`); userspace writes 0.
    pub seen_jiffies: u32,
    /// Always zero.
    pub _pad: u32,
    /// `CLOCK_MONOTONIC` nanoseconds of the last frame that refreshed it.
    pub last_seen_ns: u64,
}

impl FdbEntry {
    /// An entry for a MAC behind remote VTEP `remote`.
    pub const fn new_remote(remote: VtepAddr, flags: u32, last_seen_ns: u64) -> Self {
        Self {
            remote,
            ifindex: 0,
            flags,
            seen_jiffies: 0,
            _pad: 0,
            last_seen_ns,
        }
    }
    /// An entry for a MAC on local port `ifindex`.
    pub const fn new_local(ifindex: u32, flags: u32, last_seen_ns: u64) -> Self {
        Self {
            remote: VTEP_NONE,
            ifindex,
            flags,
            seen_jiffies: 0,
            _pad: 0,
            last_seen_ns,
        }
    }
    pub const fn is_local(&self) -> bool {
        self.ifindex != 0
    }
    pub const fn is_static(&self) -> bool {
        self.flags & FDB_F_STATIC != 0
    }
    /// Installed by the control plane.
    pub const fn is_extern(&self) -> bool {
        self.flags & FDB_F_EXTERN != 0
    }
    /// Learned from traffic: aged, counted against the learning caps.
    pub const fn is_learned(&self) -> bool {
        self.flags & (FDB_F_STATIC | FDB_F_EXTERN) == 0
    }
    /// The port's `PORT_F_*` flags, if the entry carries them.
    pub const fn port_flags(&self) -> Option<u32> {
        if self.flags & FDB_F_PORT_KNOWN != 0 {
            Some(self.flags >> FDB_PORT_FLAGS_SHIFT)
        } else {
            None
        }
    }
}

/// Learning is enabled.
pub const CFG_F_LEARNING: u32 = 1;
/// No XDP program on the uplink: the TC program there decapsulates itself
/// (`--xdp-mode off`, the default on veth uplinks).
pub const CFG_F_TC_DECAP: u32 = 2;
/// Learn the MACs of local ports' endpoints even without learning from the
/// wire (a control plane publishes them: `--etcd` with `--no-learning`).
pub const CFG_F_PORT_LEARN: u32 = 4;
/// Record the IPv4 address of local endpoints (`LOCAL_IP`) from their ARP
/// and IPv4 source addresses, for the control plane.
pub const CFG_F_SNOOP: u32 = 8;
/// Answer ARP requests from local ports for addresses in `ARP` on the
/// port itself (ARP suppression).
pub const CFG_F_ARP_SUPPRESS: u32 = 16;

/// Instance configuration: a single-entry array.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct Config {
    /// Local VTEP IPv4 address, network byte order.
    pub local_ip: [u8; 4],
    /// ifindex of the uplink.
    pub uplink_ifindex: u32,
    /// VXLAN UDP destination port, host byte order.
    pub dstport: u16,
    /// Outer UDP source port range (the kernel's `ip_local_port_range`).
    pub port_lo: u16,
    pub port_hi: u16,
    /// Outer TTL for unicast.
    pub ttl: u8,
    /// Outer TTL for multicast (the kernel's default is 1).
    pub mcast_ttl: u8,
    /// `CFG_F_*` flags.
    pub flags: u32,
    /// Learning stops when this many learned entries exist.
    pub max_learned: u32,
    /// MAC of the uplink: outer source of multicast copies.
    pub uplink_mac: [u8; 6],
    /// Outer hop limit for unicast over IPv6 (the kernel's
    /// `net.ipv6.conf.<uplink>.hop_limit`); 0: `ttl`.
    pub hop_limit: u8,
    pub _pad: u8,
    /// MTU of the uplink: encapsulated frames must fit.
    pub uplink_mtu: u32,
    pub _pad2: u32,
    /// Local VTEP IPv6 address (all zeros: none): the source of VXLAN over
    /// IPv6 (VNIs with `VNI_F_IPV6`) and the destination it is received on.
    pub local_ip6: [u8; 16],
    /// Random per instance (chosen by userspace when it creates the maps):
    /// the XDP program writes it into every [`XdpMeta`], and the TC program
    /// on the uplink ignores metadata that does not carry it. Metadata is
    /// only as trustworthy as whoever wrote it: another XDP program, or a
    /// frame redirected into the uplink with its metadata by one elsewhere,
    /// must not name a port for a frame nobody checked.
    pub meta_key: [u32; 2],
}

/// Deliver to this port with `bpf_redirect_peer` (a veth whose peer lives in
/// another network namespace): the frame lands straight in the peer's ingress.
pub const PORT_F_PEER: u32 = 1;

/// A local port: which VNI it belongs to.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct PortInfo {
    pub vni: u32,
    /// `PORT_F_*` flags.
    pub flags: u32,
    /// Cap on entries learned on this port; 0: none.
    pub max_learned: u32,
    /// Broadcast, multicast and unknown unicast frames per second this port
    /// may send; 0: no limit.
    pub bum_pps: u32,
}

/// A port's broadcast/unknown/multicast budget (`BUM`, by ifindex): frames
/// counted in a one-second window.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct BumWindow {
    /// `CLOCK_MONOTONIC` ns when the window started.
    pub start_ns: u64,
    /// Frames in the window so far.
    pub count: u64,
}

/// `LEARNED_BY` key of a VNI's count of learned entries.
#[inline(always)]
pub const fn learned_key_vni(vni: u32) -> u64 {
    (1 << 32) | vni as u64
}

/// `LEARNED_BY` key of a port's count of learned entries.
#[inline(always)]
pub const fn learned_key_port(ifindex: u32) -> u64 {
    (2 << 32) | ifindex as u64
}

/// Flood lists of a VNI: the default remotes (head-end replication) and the
/// local ports. Presence of the entry is what makes a VNI known.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct VniInfo {
    pub n_remotes: u32,
    pub n_ports: u32,
    /// `VNI_F_*` flags.
    pub flags: u32,
    /// Multicast group for floods, all zeros for none.
    pub group: VtepAddr,
    /// Default remotes; the first `n_remotes` are valid.
    pub remotes: [VtepAddr; MAX_REMOTES],
    /// Local port ifindexes; the first `n_ports` are valid.
    pub ports: [u32; MAX_PORTS],
    /// Cap on entries learned in this VNI; 0: only the instance's cap.
    pub max_learned: u32,
}

impl Default for VniInfo {
    fn default() -> Self {
        bytemuck::Zeroable::zeroed()
    }
}

/// Capacity of the NEIGH map (remote VTEPs).
pub const MAX_NEIGH: u32 = 4096;

/// How to reach a remote VTEP on the link layer: the key of NEIGH is its
/// address ([`VtepAddr`]).
///
/// `bpf_fib_lookup` cannot serve here: it refuses to answer on a device
/// that does not forward IPv4 (or IPv6), and a VTEP host need not be a
/// router. So userspace resolves the configured remotes through the
/// kernel's routing and neighbour tables (ARP or ND), and the XDP program fills in, for a VTEP it
/// receives from, the link-layer addresses the frame came with.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct NeighEntry {
    /// Next hop's MAC.
    pub dmac: [u8; 6],
    /// Our MAC on `ifindex`.
    pub smac: [u8; 6],
    /// Output interface.
    pub ifindex: u32,
}

/// A remote VTEP's frames arrived from another link-layer address than
/// NEIGH holds (`NEIGH_SEEN`, by VTEP address): userspace has the kernel
/// resolve the address again (the kernel decides, not the frame: a forged
/// frame cannot redirect our traffic) and updates NEIGH.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct NeighSeen {
    /// The source MAC the frames came with.
    pub mac: [u8; 6],
    pub _pad: [u8; 2],
}

/// Accept VXLAN for this VNI from any sender (group mode without
/// `--allow-remote`); otherwise only from the senders in ALLOWED.
pub const VNI_F_ANY_SENDER: u32 = 1;
/// The VNI's underlay is IPv6: it is sent over IPv6 from
/// `Config::local_ip6`, and only received over IPv6. Without it, IPv4.
/// (A VNI's family follows its remotes or group; userspace sets it.)
pub const VNI_F_IPV6: u32 = 2;

/// Length of the data of an ALLOWED trie key.
pub const ALLOW_DATA_LEN: usize = 4 + 16;

/// Set in the value of an ALLOWED entry that carries its VNI's `VNI_F_*`
/// flags (see [`allow_value`]).
pub const ALLOW_F_VNI_FLAGS: u32 = 1 << 31;

/// The value of an ALLOWED entry of a VNI whose `VniInfo::flags` are
/// `vni_flags`. Userspace only has entries for the VNIs in VNIS and
/// rewrites them with the VNIS entry, so a decapsulated frame whose
/// sender matches one needs no VNIS lookup: one hash lookup fewer per
/// frame. An entry without [`ALLOW_F_VNI_FLAGS`] (value 1, as written
/// before) still allows, and the datapath looks the VNI up as well.
#[inline(always)]
pub const fn allow_value(vni_flags: u32) -> u32 {
    ALLOW_F_VNI_FLAGS | vni_flags
}

/// The data of an ALLOWED trie key (`prefix_len` is 32 + the prefix
/// length of the sender over the [`VtepAddr`], i.e. 32 + 96 + n for an
/// IPv4 /n): the VNI big-endian, then the sender's address, so one trie
/// answers "may this sender send into this VNI".
#[inline(always)]
pub const fn allow_data(vni: u32, addr: &VtepAddr) -> [u8; ALLOW_DATA_LEN] {
    let v = vni.to_be_bytes();
    let mut d = [0u8; ALLOW_DATA_LEN];
    d[0] = v[0];
    d[1] = v[1];
    d[2] = v[2];
    d[3] = v[3];
    let mut i = 0;
    while i < 16 {
        d[4 + i] = addr[i];
        i += 1;
    }
    d
}

/// Capacity of the ARP table (suppression) and of `LOCAL_IP`.
pub const MAX_ARP: u32 = 65_536;

/// Key of `ARP`: an IPv4 address in a VNI.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, bytemuck::Pod, bytemuck::Zeroable)]
pub struct ArpKey {
    /// VNI in host byte order.
    pub vni: u32,
    /// IPv4 address, network byte order.
    pub ip: [u8; 4],
}

/// Value of `ARP`: the MAC that answers for the address.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct ArpEntry {
    pub mac: [u8; 6],
    pub _pad: [u8; 2],
}

/// Value of `LOCAL_IP` (by `FdbKey` of a local endpoint): its IPv4
/// address as last seen in its ARP or IPv4 source address.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct LocalIp {
    /// Network byte order.
    pub ip: [u8; 4],
}

/// `XdpMeta::magic`: "VXLN".
pub const META_MAGIC: u32 = 0x5658_4c4e;
/// `XdpMeta::magic` of a frame XDP left encapsulated, for the TC program to
/// decapsulate ("VXLC"): its outer UDP checksum did not add up, which on a
/// veth uplink means a checksum the sending host's stack left for offload
/// (`CHECKSUM_PARTIAL`, invisible to XDP). TC knows whether the kernel
/// trusts it, and verifies it otherwise.
pub const META_MAGIC_TC_DECAP: u32 = 0x5658_4c43;

/// Metadata the XDP program puts in front of a decapsulated frame (the
/// `data_meta` area) for the TC program on the uplink, which delivers it.
/// Frames without it are not ours and pass untouched.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct XdpMeta {
    pub magic: u32,
    /// [`Config::meta_key`]: proves the metadata is this instance's.
    pub key: [u32; 2],
    pub vni: u32,
    /// Destination local port, or 0 to flood to every local port of the VNI.
    pub ifindex: u32,
    /// `PORT_F_*` flags of `ifindex`.
    pub flags: u32,
}

/// `FdbEvent::kind`: a new learned entry.
pub const EV_LEARN: u32 = 1;
/// `FdbEvent::kind`: a learned MAC moved to another VTEP or port.
pub const EV_MOVE: u32 = 2;
/// `FdbEvent::kind`: a learned entry aged out (emitted by userspace).
pub const EV_AGE: u32 = 3;

/// What the datapath reports through the EVENTS ring buffer.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct FdbEvent {
    pub kind: u32,
    pub vni: u32,
    pub mac: [u8; 6],
    pub _pad: [u8; 2],
    /// Remote VTEP, zeros for a local entry.
    pub remote: VtepAddr,
    /// Local port, zero for a remote entry.
    pub ifindex: u32,
}

#[cfg(feature = "user")]
mod pod {
    use super::*;
    // SAFETY: all of these are `bytemuck::Pod`: plain data, no padding.
    unsafe impl aya::Pod for FdbKey {}
    unsafe impl aya::Pod for FdbEntry {}
    unsafe impl aya::Pod for Config {}
    unsafe impl aya::Pod for PortInfo {}
    unsafe impl aya::Pod for VniInfo {}
    unsafe impl aya::Pod for NeighEntry {}
    unsafe impl aya::Pod for FdbEvent {}
    unsafe impl aya::Pod for BumWindow {}
    unsafe impl aya::Pod for NeighSeen {}
    unsafe impl aya::Pod for ArpKey {}
    unsafe impl aya::Pod for ArpEntry {}
    unsafe impl aya::Pod for LocalIp {}
}
