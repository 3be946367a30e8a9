//! vxlan-fwd userspace: loader, CLI and control of the eBPF VXLAN datapath.

pub mod attach;
pub mod batch;
pub mod cli;
pub mod commands;
pub mod config;
pub mod events;
pub mod fdb;
pub mod loader;
pub mod maps;
pub mod metrics;
pub mod netlink;
pub mod state;
pub mod stats;

/// The compiled eBPF object (`vxlan-ebpf`), built by `build.rs`.
pub static EBPF_OBJ: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/vxlan-ebpf"));
