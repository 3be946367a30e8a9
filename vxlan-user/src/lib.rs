//! vxlan-fwd userspace: loader, CLI and control of the eBPF VXLAN datapath.

pub mod netlink;

/// The compiled eBPF object (`vxlan-ebpf`), built by `build.rs`.
pub static EBPF_OBJ: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/vxlan-ebpf"));
