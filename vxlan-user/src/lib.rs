//! vxlan-fwd userspace: loader, CLI and control of the eBPF VXLAN datapath.
//!
//! - [`daemon`]: the running instance (lifecycle, adoption, serve loop);
//! - [`dataplane`]: the one writer of the datapath's maps;
//! - [`config`]: the configuration (file parsing, merge with the command
//!   line, validation);
//! - [`control`]: the control socket's protocol, [`commands`]: the client
//!   side of `vni`, `port`, `fdb` and `stats`;
//! - [`addr`]: underlay addresses of both families (parsing, a VNI's
//!   family, ALLOWED keys);
//! - kernel interfaces: [`attach`], [`maps`], [`batch`], [`netlink`];
//! - [`fdb`], [`state`], [`events`], [`stats`], [`metrics`], [`notify`],
//!   [`paths`].

pub mod addr;
pub mod attach;
pub mod batch;
pub mod cli;
pub mod commands;
pub mod config;
pub mod control;
pub mod daemon;
pub mod dataplane;
pub mod etcd;
pub mod events;
pub mod fdb;
pub mod maps;
pub mod metrics;
pub mod netlink;
pub mod notify;
pub mod paths;
pub mod state;
pub mod stats;
pub mod sys_bpf;

/// The compiled eBPF object (`vxlan-ebpf`), built by `build.rs`.
pub static EBPF_OBJ: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/vxlan-ebpf"));
