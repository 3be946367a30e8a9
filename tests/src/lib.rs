//! Test harness for vxlan-fwd: network namespaces, the seed topology, and
//! guards around running forwarders.
//!
//! Everything that moves packets lives in network namespaces created here;
//! nothing in the root namespace is created, changed or deleted. Every
//! resource is owned by an RAII guard whose `Drop` removes it, also when a
//! test panics:
//!
//! - [`NetNs`]: a network namespace; dropping it kills the processes still
//!   inside and deletes it (with every interface in it).
//! - [`Process`]: a background process with captured output; dropping it
//!   sends SIGINT, then SIGKILL.
//! - [`Forwarder`]: a running `vxlan-fwd`, started and awaited (`ready`
//!   line) with [`Forwarder::start`]; dropping it stops it.
//! - [`Topology`]: the seed setup of the VXLAN tutorial (underlay switch,
//!   hosts, containers), built with [`Topology::builder`] or
//!   [`Topology::seed`].
//!
//! The same lab serves `cargo xtask demo|soak|bench` (this crate without
//! its default `datapath` feature, so xtask builds before the eBPF
//! toolchain exists): fallible twins (`try_*`) of the panicking
//! constructors, [`lab`] (a teardown on Ctrl-C), [`etcd`] and [`capture`].
//!
//! Also: [`ping`]/[`ping_result`], [`wait_until`], [`vxlan_fwd`] for
//! one-shot commands (`fdb show`, failing starts),
//! [`forwarder::start_and_signal_on_ready`] (stop it the instant it is
//! ready), [`bpf`] (which eBPF programs are loaded) and [`xdp`] (attach a
//! foreign XDP program).
//!
//! Tests using this must run as root and serially (`--test-threads=1`):
//! `cargo xtask test` does both and sets `VXLAN_FWD_BIN`.
//!
//! ```no_run
//! use vxlan_tests::{Forwarder, Topology, ping};
//!
//! let topo = Topology::seed("vxt-doc-")
//!     .container("c1", "h1", "veth0", "172.18.1.2")
//!     .container("c2", "h2", "veth0", "172.18.1.3")
//!     .build();
//! let (h1, h2) = (topo.host("h1"), topo.host("h2"));
//! let _f1 = Forwarder::start(&h1.ns, &["--iface", "eth0", "--vni", "42", "--port", "veth0",
//!                                      "--remote", "192.168.57.54"]);
//! let _f2 = Forwarder::start(&h2.ns, &["--iface", "eth0", "--vni", "42", "--port", "veth0",
//!                                      "--remote", "192.168.57.50"]);
//! assert!(ping(&topo.container("c1").ns, "172.18.1.3", 3));
//! ```

/// `println!` that ignores a closed stdout (`cargo xtask demo | head` must
/// not abort a teardown).
macro_rules! say {
    ($($t:tt)*) => {{ use std::io::Write as _; let _ = writeln!(std::io::stdout(), $($t)*); }};
}

#[cfg(feature = "datapath")]
pub mod bpf;
pub mod capture;
pub mod checks;
pub mod etcd;
#[cfg(feature = "datapath")]
pub mod fdb_checks;
pub mod fdb_harness;
#[cfg(feature = "datapath")]
pub mod fixture;
pub mod forwarder;
pub mod frames;
#[cfg(feature = "datapath")]
pub mod hostile_net;
#[cfg(feature = "datapath")]
pub mod inject;
pub mod lab;
pub mod netns;
pub mod process;
pub mod scenario;
pub mod topo;
pub mod traffic;
pub mod util;
#[cfg(feature = "datapath")]
pub mod xdp;

pub use capture::Capture;
pub use forwarder::{Forwarder, StartOpts, fdb_find, vxlan_fwd, vxlan_fwd_bin};
pub use netns::{EnteredNetns, NetNs, delete_stale, enter_netns, in_netns, list_netns};
pub use process::{Output, Process, run_with_timeout};
pub use topo::{
    CONTAINER_MTU, CONTAINER_MTU6, Container, H1_IP, H1_IP6, H2_IP, H2_IP6, H3_IP, H3_IP6, Host,
    Topology, TopologyBuilder, UPLINK, VNI,
};
pub use util::{PingResult, ipv4, ping, ping_result, ping_strict, require_root, wait_until};
