//! The `--config FILE` model: one instance serving many VNIs.
//!
//! ```toml
//! iface = "eth0"          # uplink
//! local = "192.168.57.50" # optional, default: the uplink's own address of
//!                         # each family a VNI needs; one of each family:
//!                         # local = ["192.168.57.50", "fd00:57::1"]
//! dstport = 4789          # optional
//! ageing = 300            # optional, seconds
//! max_fdb = 65536         # optional, cap on learned FDB entries
//! learning = true         # optional
//!
//! [[vni]]
//! id = 42
//! ports = ["veth0", "veth1"]     # optional
//! remotes = ["192.168.57.54"]    # optional (IPv4 or IPv6: "fd00:57::2")
//! group = "224.1.1.1"            # optional multicast group ("ff05::100")
//! host_if = "vxlan0"             # optional
//! max_fdb = 1000                 # optional: this VNI's own learning cap
//! allow_remote = ["10.0.0.0/8"]  # optional: replaces the top-level list
//!                                # (IPv6 too: "fd00:57::/64")
//! port_max_fdb = 100             # optional: cap per port (top-level default)
//! bum_pps = 1000                 # optional: BUM rate per port (top-level default)
//!
//! [etcd]                         # optional: the fleet control plane
//! endpoints = ["http://10.0.0.1:2379"]
//! prefix = "/vxlan-fwd"          # optional
//! ttl = 10                       # optional, seconds (lease)
//! arp_suppress = true            # optional
//! ca = "/etc/vxlan-fwd/etcd-ca.pem"       # optional TLS: CA, client cert and key
//! cert = "/etc/vxlan-fwd/etcd-client.pem"
//! key = "/etc/vxlan-fwd/etcd-client.key"
//! ```
//!
//! A VNI's underlay family (IPv4 or IPv6) follows its remotes or group,
//! which must all be of one family; a VNI with neither is IPv4 unless the
//! instance has only an IPv6 local address.
//!
//! [`parse`] (or [`load`]) turns the file into a [`FileConfig`], checking
//! everything that can be checked from the file alone; errors name the file,
//! the line and the key (``vxlan.toml:7: key `id`: VNI 0 is outside
//! 1..16777215``). [`resolve`] merges it with the command line
//! ([`Overrides`]) and checks the result again; errors about command-line
//! values name the flag instead (`--vni: ...`).

use std::{
    collections::HashMap,
    net::IpAddr,
    ops::Range,
    path::{Path, PathBuf},
};

use anyhow::{Result, anyhow};
use serde::Deserialize;
use toml::{
    Spanned,
    de::{DeTable, DeValue},
};
use vxlan_common::{MAX_PORTS, MAX_REMOTES, VNI_MAX};

pub const DEFAULT_DSTPORT: u16 = 4789;
pub const DEFAULT_AGEING: u64 = 300;
/// The FDB's default size: the datapath's ([`vxlan_common::FDB_CAPACITY`]
/// is sized from it).
pub use vxlan_common::DEFAULT_MAX_FDB;
pub const DEFAULT_ETCD_PREFIX: &str = "/vxlan-fwd";
pub const DEFAULT_ETCD_TTL: u64 = 10;

/// Longest interface name the kernel accepts (`IFNAMSIZ - 1`). The one
/// definition (netlink's checks use it too).
pub const IFNAME_MAX: usize = libc::IFNAMSIZ - 1;
/// Longest host interface name: the loader names its peer `<host_if>-fwd`.
pub const HOST_IF_MAX: usize = IFNAME_MAX - "-fwd".len();

/// Keys allowed at the top level of the file.
const TOP_KEYS: &[&str] = &[
    "iface",
    "local",
    "dstport",
    "ageing",
    "max_fdb",
    "learning",
    "allow_remote",
    "port_max_fdb",
    "bum_pps",
    "etcd",
    "vni",
];

/// Keys allowed in a `[[vni]]` table.
const VNI_KEYS: &[&str] = &[
    "id",
    "ports",
    "remotes",
    "group",
    "host_if",
    "max_fdb",
    "allow_remote",
    "port_max_fdb",
    "bum_pps",
];

/// A sender prefix (`allow_remote`), IPv4 or IPv6.
pub use crate::addr::{Cidr, Locals, parse_cidr};

/// One VNI: its local ports, flood list and host interface.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct VniConfig {
    pub id: u32,
    pub ports: Vec<String>,
    /// Remote VTEPs, all of the VNI's family.
    pub remotes: Vec<IpAddr>,
    /// Multicast group (IPv4 or IPv6), of the VNI's family.
    pub group: Option<IpAddr>,
    pub host_if: Option<String>,
    pub limits: VniLimits,
}

/// What one tenant (a VNI, and each of its ports) may use; `None` takes the
/// instance's value.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct VniLimits {
    /// Cap on entries learned in this VNI (the instance's `max_fdb` still
    /// caps them all).
    pub max_fdb: Option<u32>,
    /// Senders allowed besides the VNI's remotes; replaces the instance's
    /// `allow_remote` for this VNI.
    pub allow_remote: Option<Vec<Cidr>>,
    /// Cap on entries learned on each port of the VNI.
    pub port_max_fdb: Option<u32>,
    /// Broadcast, multicast and unknown unicast frames per second each port
    /// of the VNI may send.
    pub bum_pps: Option<u32>,
}

/// The fleet control plane (`--etcd`, `[etcd]`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EtcdConfig {
    /// `http://host:port` or `https://host:port`.
    pub endpoints: Vec<String>,
    /// Root of the keys (`/vxlan-fwd`).
    pub prefix: String,
    /// Lease TTL in seconds: how long the keys of a dead forwarder last.
    pub ttl: u64,
    /// Answer ARP for addresses in the table on the ports.
    pub arp_suppress: bool,
    /// TLS: CA certificate, client certificate and key (PEM).
    pub ca: Option<PathBuf>,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
}

/// The `[etcd]` table as the file gives it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FileEtcd {
    pub endpoints: Vec<String>,
    pub prefix: Option<String>,
    pub ttl: Option<u64>,
    pub arp_suppress: Option<bool>,
    pub ca: Option<PathBuf>,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
}

/// The complete, validated configuration of one instance.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    pub iface: String,
    /// Fixed local addresses (at most one per family); the families not
    /// given follow the uplink's addresses.
    pub local: Locals,
    pub dstport: u16,
    pub ageing: u64,
    pub max_fdb: u32,
    pub learning: bool,
    /// Senders allowed besides each VNI's remotes (`--allow-remote`).
    pub allow_remote: Vec<Cidr>,
    /// Default cap on entries learned on each port (`--port-max-fdb`).
    pub port_max_fdb: Option<u32>,
    /// Default BUM frames per second per port (`--bum-pps`).
    pub bum_pps: Option<u32>,
    pub vnis: Vec<VniConfig>,
    /// The control plane, if any.
    pub etcd: Option<EtcdConfig>,
}

/// Command-line values; every field optional. They describe one VNI and
/// override the file's top-level keys.
#[derive(Clone, Debug, Default)]
pub struct Overrides {
    pub iface: Option<String>,
    /// `--local`, repeatable: at most one per family; each replaces the
    /// file's address of its family.
    pub local: Vec<IpAddr>,
    pub dstport: Option<u16>,
    pub ageing: Option<u64>,
    pub max_fdb: Option<u32>,
    pub learning: Option<bool>,
    /// Replaces the file's `allow_remote` when not empty.
    pub allow_remote: Vec<Cidr>,
    pub port_max_fdb: Option<u32>,
    pub bum_pps: Option<u32>,
    pub vni: Option<VniConfig>,
    /// `--etcd` (replaces the file's endpoints when not empty).
    pub etcd: Vec<String>,
    pub etcd_prefix: Option<String>,
    pub etcd_ttl: Option<u64>,
    pub arp_suppress: Option<bool>,
}

/// A parsed (and file-locally valid) config file; `None` where the file
/// does not give a key. Remembers where each value came from so that
/// [`resolve`] can point at lines.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FileConfig {
    pub iface: Option<String>,
    pub local: Locals,
    pub dstport: Option<u16>,
    pub ageing: Option<u64>,
    pub max_fdb: Option<u32>,
    pub learning: Option<bool>,
    pub allow_remote: Vec<Cidr>,
    pub port_max_fdb: Option<u32>,
    pub bum_pps: Option<u32>,
    pub vnis: Vec<VniConfig>,
    pub etcd: Option<FileEtcd>,
    meta: Meta,
}

impl FileConfig {
    /// The name the file was parsed under (its path).
    pub fn origin(&self) -> &str {
        &self.meta.origin
    }
}

/// Source positions; ignored by `==` (two files saying the same thing are
/// the same configuration).
#[derive(Clone, Debug, Default)]
struct Meta {
    origin: String,
    iface: Option<usize>,
    vnis: Vec<VniLines>,
}

impl PartialEq for Meta {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}
impl Eq for Meta {}

/// 1-based lines of one `[[vni]]` table's values.
#[derive(Clone, Debug, Default)]
struct VniLines {
    vni: u32,
    table: usize,
    id: usize,
    ports_key: Option<usize>,
    ports: Vec<usize>,
    remotes_key: Option<usize>,
    remotes: Vec<usize>,
    group: Option<usize>,
    host_if: Option<usize>,
}

mod merge;
mod parse;
#[cfg(test)]
mod tests;
mod validate;

pub use self::{
    merge::resolve,
    parse::{load, parse},
};
#[allow(unused_imports)]
use self::{merge::*, parse::*, validate::*};
