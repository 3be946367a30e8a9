//! `cargo xtask bench`: the kernel's vxlan device + Linux bridge against
//! vxlan-fwd, on the seed's two-host topology in network namespaces.
//!
//! Every setup is measured in one run, in alternating order (round 1 in
//! the order below, round 2 reversed, ...) on the same namespaces; each
//! figure is reported as median (min–max) over the rounds. The setups:
//!
//! - kernel: the seed's vxlan device + Linux bridge in each host;
//! - vxlan-fwd on both hosts (receive mode: TC, the default on a veth
//!   uplink; skb-mode and native XDP for section 4);
//! - no tunnel: the same hops without VXLAN, each container bridged
//!   straight onto the underlay (host bridge with `veth0` and `eth0`).
//!
//! The report's sections:
//!
//! 1. kernel at its best: `bridge-nf-call-{iptables,ip6tables,arptables}`
//!    = 0 in every namespace of the lab (br_netfilter is loaded on these
//!    machines and a new namespace starts with the hooks on); the headline;
//! 2. the same with the hooks on (= 1) in every namespace, as on Docker
//!    and Kubernetes nodes;
//! 3. vxlan-fwd against the no-tunnel path (hooks off);
//! 4. vxlan-fwd per receive mode on the veth uplink (hooks off);
//! 9. the zero-work bound (hooks off): TC programs that only redirect, on
//!    the hops vxlan-fwd uses, with no tunnel (see `bound.rs`): the most
//!    any TC datapath could reach here, and vxlan-fwd's share of it;
//!
//! and in each:
//!
//! - small-packet rate: "64-byte" frames from container c1 to container
//!   c2 across the hosts. 64 bytes is the classic minimum Ethernet frame
//!   *with* its 4-byte FCS: the inner frame is Ethernet 14 + IPv4 20 +
//!   UDP 8 + 18 bytes of payload = 60 bytes as the kernel sees it (veths
//!   carry no FCS), 110 bytes once encapsulated. The generator is
//!   `xtask bench-gen` (sendmmsg, 2 threads x 4 flows) in c1; what
//!   arrives is read from c2's `eth0` rx counter over a fixed window.
//!   The far end and the wire cost as little as they can, the same for
//!   both setups: an unread socket (`xtask bench-sink`) in c2 keeps the
//!   receiver from answering each datagram with an ICMP port unreachable,
//!   and the netfilter hooks are as the section says;
//! - TCP throughput: iperf3 c1 -> c2, 1 and 4 flows.
//!
//! Then, for the section-1 setups only:
//!
//! 5. per-packet cost of each eBPF program with BPF_PROG_TEST_RUN (see
//!    `testrun.rs`), and the floors (an XDP program that only drops, a TC
//!    program that only returns TC_ACT_SHOT);
//! 6. FDB scale: the 64-byte rate again with 1k and 1M FDB entries (100k
//!    with `--quick`);
//! 7. memory: vxlan-fwd's BPF map memory (the kernel's `memlock` of each
//!    map) and its RSS.
//!
//! The parts that need the eBPF object (figure 5, filling a running
//! forwarder's FDB) are behind the `bench-ebpf` feature: `cargo xtask
//! bench` (built without it, as every `cargo xtask` is) builds a release
//! xtask with it and runs that.

// Without `bench-ebpf` only the relaunch and the generator are used; the
// rest is still compiled (and unit-tested).
#![cfg_attr(not(feature = "bench-ebpf"), allow(dead_code))]

#[cfg(feature = "bench-ebpf")]
mod bound;
#[cfg(feature = "bench-ebpf")]
mod etcd;
pub mod generator;
mod report;
#[cfg(feature = "bench-ebpf")]
mod run;
#[cfg(feature = "bench-ebpf")]
mod testrun;

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;

use crate::{packages, tasks, util::require_root};

#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Rounds; each measures every setup, in alternating order (default 3;
    /// 2 with --quick).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=50))]
    pub rounds: Option<u32>,
    /// Two short rounds for CI (alternating order): 2 s windows, FDB scale
    /// 1k and 100k (not 1M), 100k test runs per case.
    #[arg(long)]
    pub quick: bool,
    /// Length of each measurement window in seconds (default 5; 2 with --quick).
    #[arg(long, value_name = "S", value_parser = clap::value_parser!(u32).range(1..=600))]
    pub seconds: Option<u32>,
    /// Only the control-plane section (etcd: convergence, churn, BUM saved).
    #[arg(long)]
    pub etcd_only: bool,
    /// Only the BPF_PROG_TEST_RUN figure (5), for each round: no topology,
    /// for comparing datapath changes quickly.
    #[arg(long)]
    pub testrun_only: bool,
    /// Only the setups whose name contains one of these
    /// (comma-separated, e.g. `bound,no tunnel`), for comparing a few
    /// quickly; the report's other rows stay empty.
    #[arg(long, value_name = "LIST", value_delimiter = ',')]
    pub only: Vec<String>,
    /// (internal) Use this vxlan-fwd instead of building it.
    #[arg(long, hide = true, value_name = "PATH")]
    pub fwd_bin: Option<PathBuf>,
}

/// What one run measures.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Plan {
    pub rounds: u32,
    pub quick: bool,
    pub seconds: u32,
    /// FDB sizes of figure 4.
    pub fdb_sizes: Vec<u64>,
    /// BPF_PROG_TEST_RUN runs per case (figure 5).
    pub test_runs: u64,
    /// Only figure 5.
    pub testrun_only: bool,
    /// `--only`.
    pub only: Vec<String>,
}

impl Plan {
    pub fn new(args: &BenchArgs) -> Self {
        let big = if args.quick { 100_000 } else { 1_000_000 };
        Self {
            rounds: args.rounds.unwrap_or(if args.quick { 2 } else { 3 }),
            quick: args.quick,
            seconds: args.seconds.unwrap_or(if args.quick { 2 } else { 5 }),
            fdb_sizes: vec![1000, big],
            test_runs: if args.quick { 100_000 } else { 1_000_000 },
            testrun_only: args.testrun_only,
            only: args.only.clone(),
        }
    }
}

/// `1k`, `100k`, `1M`.
pub fn scale_label(n: u64) -> String {
    if n >= 1_000_000 && n.is_multiple_of(1_000_000) {
        format!("{}M", n / 1_000_000)
    } else if n >= 1000 && n.is_multiple_of(1000) {
        format!("{}k", n / 1000)
    } else {
        n.to_string()
    }
}

/// `--max-fdb` for a forwarder that must hold `n` static entries: none (the
/// default cap) while they fit it, else `n` + 100k, as in `--max-fdb
/// 1100000` for 1M.
pub fn max_fdb_for(n: u64) -> Option<u32> {
    const DEFAULT: u64 = 65_536;
    (n + 1000 > DEFAULT).then(|| u32::try_from(n + 100_000).unwrap_or(u32::MAX))
}

/// The `i`-th filler MAC of figure 4: locally administered unicast,
/// 02:fb:xx:xx:xx:xx.
pub fn filler_mac(i: u64) -> [u8; 6] {
    let b = (i as u32).to_be_bytes();
    [0x02, 0xfb, b[0], b[1], b[2], b[3]]
}

pub fn bench(args: &BenchArgs) -> Result<u8> {
    require_root("cargo xtask bench")?;
    packages::ensure(
        "cargo xtask bench",
        &[
            ("ip", "iproute2"),
            ("bridge", "iproute2"),
            ("tc", "iproute2"),
            ("ping", "iputils-ping"),
            ("iperf3", "iperf3"),
            ("ethtool", "ethtool"),
            ("etcd", "etcd-server"),
            ("etcdctl", "etcd-client"),
            ("tcpdump", "tcpdump"),
        ],
    )?;
    let fwd = match &args.fwd_bin {
        Some(p) => p.clone(),
        None => tasks::build()?,
    };
    #[cfg(feature = "bench-ebpf")]
    {
        let plan = Plan::new(args);
        if !args.etcd_only {
            run::run(&plan, &fwd)?;
        }
        if !args.testrun_only {
            let figs = etcd::run(&plan, &fwd)?;
            let out = crate::util::target_dir().join("bench").join("etcd.json");
            std::fs::write(&out, serde_json::to_string_pretty(&figs)?)?;
            outln!("control-plane figures: {}", out.display());
        }
        Ok(0)
    }
    #[cfg(not(feature = "bench-ebpf"))]
    {
        relaunch(args, &fwd)
    }
}

/// Builds xtask in release with `bench-ebpf` and runs its `bench`.
#[cfg(not(feature = "bench-ebpf"))]
fn relaunch(args: &BenchArgs, fwd: &std::path::Path) -> Result<u8> {
    use std::process::Command;

    use crate::{
        signals::run_foreground,
        util::{describe, exit_code},
    };

    let exe = crate::tasks::build_release("xtask", "xtask", &["bench-ebpf"])?;
    let mut inner = Command::new(&exe);
    inner.arg("bench").arg("--fwd-bin").arg(fwd);
    if let Some(n) = args.rounds {
        inner.arg("--rounds").arg(n.to_string());
    }
    if args.quick {
        inner.arg("--quick");
    }
    if args.etcd_only {
        inner.arg("--etcd-only");
    }
    if args.testrun_only {
        inner.arg("--testrun-only");
    }
    if let Some(s) = args.seconds {
        inner.arg("--seconds").arg(s.to_string());
    }
    if !args.only.is_empty() {
        inner.arg("--only").arg(args.only.join(","));
    }
    outln!("xtask: {}", describe(&inner));
    Ok(exit_code(run_foreground(&mut inner)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_and_capacity() {
        assert_eq!(scale_label(1000), "1k");
        assert_eq!(scale_label(100_000), "100k");
        assert_eq!(scale_label(1_000_000), "1M");
        assert_eq!(max_fdb_for(1000), None);
        assert_eq!(max_fdb_for(1_000_000), Some(1_100_000));
        assert_eq!(max_fdb_for(100_000), Some(200_000));
        assert_eq!(filler_mac(0x0102_0304), [0x02, 0xfb, 1, 2, 3, 4]);
    }
}
