//! `cargo xtask demo`: the seed's two-host topology in network namespaces, a
//! vxlan-fwd on each host, pings between the containers, both FDBs.

use std::net::Ipv4Addr;

use anyhow::{Result, bail};
use vxlan_tests::{ping_result, topo::Site};

use crate::{
    packages, tasks,
    util::{p2p_lab, start_fwd, stop_fwds},
};

const PREFIX: &str = "vxdemo-";

fn section(title: &str) {
    outln!("\n==== {title} ====");
}

fn print_ping(from_ns: &str, from: &str, to: Ipv4Addr) -> bool {
    section(&format!("ping {from} ({from_ns}) -> {to}"));
    let r = ping_result(from_ns, to.to_string(), 3);
    outln!("{}", r.output);
    outln!(
        "ping {from} -> {to}: {}",
        if r.ok { "OK" } else { "FAILED" }
    );
    r.ok
}

pub fn demo(topology_only: bool) -> Result<()> {
    crate::util::require_root("cargo xtask demo")?;
    packages::ensure("cargo xtask demo", packages::DEMO)?;
    let bin = if topology_only {
        None
    } else {
        Some(tasks::build()?)
    };

    // Dropped in reverse: the forwarders have stopped (and written their
    // state) before the state directory goes.
    let (state, topo) = p2p_lab(PREFIX, "demo")?;
    let sites = topo.sites();
    let [h1, h2]: [&Site; 2] = [&sites[0], &sites[1]];
    let mut failures = Vec::new();

    for (from, to) in [(h1, h2), (h2, h1)] {
        if !print_ping(&from.netns, &from.name, to.underlay_ip) {
            failures.push(format!("underlay ping {} -> {}", from.name, to.name));
        }
    }
    let Some(bin) = bin else {
        drop(topo);
        return finish(failures);
    };
    if !failures.is_empty() {
        bail!(
            "the underlay does not work ({}); not starting vxlan-fwd",
            failures.join(", ")
        );
    }

    section("starting vxlan-fwd");
    let mut fwds = Vec::new();
    for (host, peer) in [(h1, h2), (h2, h1)] {
        fwds.push(start_fwd(host, peer, &bin, &state.0, &[])?);
        outln!("demo: vxlan-fwd on {} is ready", host.name);
    }

    for (from, to) in [(h1, h2), (h2, h1)] {
        let from_name = from.container_netns.trim_start_matches(PREFIX);
        if !print_ping(&from.container_netns, from_name, to.container_ip) {
            failures.push(format!("overlay ping {from_name} -> {}", to.container_ip));
        }
    }

    for (host, fwd) in [h1, h2].into_iter().zip(&fwds) {
        section(&format!("FDB on {} ({})", host.name, host.netns));
        let out = fwd.run(&["fdb", "show"]);
        out!("{}", out.stdout);
        err!("{}", out.stderr);
        if !out.success() {
            outln!(
                "`vxlan-fwd fdb show` on {} failed: {}",
                host.name,
                out.status
            );
            failures.push(format!("fdb show on {}", host.name));
        }
    }

    section("stopping vxlan-fwd");
    for problem in stop_fwds(fwds, crate::util::FWD_STOP_GRACE) {
        errln!("demo: warning: {problem}");
    }
    drop(topo);
    finish(failures)
}

fn finish(failures: Vec<String>) -> Result<()> {
    if failures.is_empty() {
        outln!("\ndemo: OK");
        Ok(())
    } else {
        bail!("demo failed: {}", failures.join(", "))
    }
}
