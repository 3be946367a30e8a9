//! `cargo xtask demo`: the seed's two-host topology in network namespaces, a
//! vxlan-fwd on each host, pings between the containers, both FDBs.

use std::{net::Ipv4Addr, time::Duration};

use anyhow::{Context as _, Result, bail};

use crate::{
    packages, tasks,
    topology::{self, PORT, Topology, UPLINK, ping},
    util::{StateDir, output_any, require_root},
};

const PREFIX: &str = "vxdemo-";
const VNI: &str = "42";
const READY_TIMEOUT: Duration = Duration::from_secs(20);

fn section(title: &str) {
    outln!("\n==== {title} ====");
}

/// A line announcing readiness: contains the word `ready` (any case).
fn is_ready(line: &str) -> bool {
    line.split(|c: char| !c.is_ascii_alphanumeric())
        .any(|w| w.eq_ignore_ascii_case("ready"))
}

fn print_ping(from_ns: &str, from: &str, to: Ipv4Addr) -> Result<bool> {
    section(&format!("ping {from} ({from_ns}) -> {to}"));
    let (ok, out) = ping(from_ns, to)?;
    out!("{out}");
    outln!("ping {from} -> {to}: {}", if ok { "OK" } else { "FAILED" });
    Ok(ok)
}

pub fn demo(topology_only: bool) -> Result<()> {
    require_root("cargo xtask demo")?;
    packages::ensure("cargo xtask demo", packages::DEMO)?;
    let bin = if topology_only {
        None
    } else {
        Some(tasks::build()?)
    };

    topology::teardown_on_signal();
    // Declared before the topology, so dropped after it: the forwarders
    // have stopped (and written their state) before the directory goes.
    let state = StateDir::new("demo");
    let topo = Topology::seed(PREFIX).create()?;
    let [h1, h2] = [&topo.hosts[0], &topo.hosts[1]];
    let mut failures = Vec::new();

    for (from, to) in [(h1, h2), (h2, h1)] {
        if !print_ping(&from.netns, &from.name, to.underlay_ip)? {
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
    let env_arg = state.env_arg();
    let bin_arg = bin.to_string_lossy().into_owned();
    for (host, peer) in [(h1, h2), (h2, h1)] {
        let remote = peer.underlay_ip.to_string();
        let args = [
            env_arg.as_str(),
            &bin_arg,
            "--iface",
            UPLINK,
            "--vni",
            VNI,
            "--remote",
            &remote,
            "--port",
            PORT,
        ];
        let fwd = topo.spawn(&host.netns, &host.name, "env", &args)?;
        fwd.wait_for_line("a line containing `ready`", READY_TIMEOUT, is_ready)
            .with_context(|| format!("vxlan-fwd on {} did not become ready", host.name))?;
        outln!("demo: vxlan-fwd on {} is ready", host.name);
    }

    for (from, to) in [(h1, h2), (h2, h1)] {
        let from_name = from.container_netns.trim_start_matches(PREFIX);
        if !print_ping(&from.container_netns, from_name, to.container_ip)? {
            failures.push(format!("overlay ping {from_name} -> {}", to.container_ip));
        }
    }

    for host in [h1, h2] {
        section(&format!("FDB on {} ({})", host.name, host.netns));
        let out = output_any(topology::netns_cmd(&host.netns, &bin).args(["fdb", "show"]))?;
        out!("{}", String::from_utf8_lossy(&out.stdout));
        err!("{}", String::from_utf8_lossy(&out.stderr));
        if !out.status.success() {
            outln!(
                "`vxlan-fwd fdb show` on {} failed: {}",
                host.name,
                out.status
            );
            failures.push(format!("fdb show on {}", host.name));
        }
    }

    section("stopping vxlan-fwd");
    for (label, status) in topology::stop_processes() {
        match status {
            Ok(s) if s.success() => {}
            Ok(s) => errln!("demo: warning: vxlan-fwd on {label} exited with {s}"),
            Err(e) => errln!("demo: warning: vxlan-fwd on {label}: {e:#}"),
        }
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

#[cfg(test)]
mod tests {
    use super::is_ready;

    #[test]
    fn ready_word() {
        assert!(is_ready("ready"));
        assert!(is_ready("vxlan-fwd: Ready (vni 42)"));
        assert!(is_ready("[INFO] ready: eth0 -> veth0"));
        assert!(!is_ready("already attached"));
        assert!(!is_ready("starting"));
    }
}
