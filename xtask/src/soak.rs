//! `cargo xtask soak`: the seed topology with vxlan-fwd on both hosts under
//! the bench's generator at the highest rate for a long time (default 10
//! minutes). Every interval it samples the forwarders' drop counters, RSS
//! and FDB; at the end it fails if drops grew, an RSS grew by more than 10 %,
//! or the FDB changed shape. Not run by CI.

use std::{net::Ipv4Addr, time::Instant};

use anyhow::{Context as _, Result, bail};
use clap::Args;
use serde_json::Value;
use vxlan_tests::{Forwarder, netns::netns_command, ping_result};

use crate::{
    tasks,
    util::{FWD_STOP_GRACE, p2p_lab, require_root, start_fwd, stop_fwds},
};

const PREFIX: &str = "vxsoak-";

#[derive(Args, Debug)]
pub struct SoakArgs {
    /// How long to run, in seconds.
    #[arg(long, default_value_t = 600)]
    seconds: u64,
    /// Sampling interval, in seconds.
    #[arg(long, default_value_t = 30)]
    interval: u64,
}

struct Sample {
    at: u64,
    drops: u64,
    rx_decap: u64,
    rss_kib: [u64; 2],
    fdb: [usize; 2],
}

fn stats(fwd: &Forwarder) -> Result<Value> {
    fwd.try_stats_json()
}

fn fdb_len(fwd: &Forwarder) -> Result<usize> {
    Ok(fwd.try_fdb_show_json()?.len())
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

pub fn soak(args: &SoakArgs) -> Result<u8> {
    require_root("cargo xtask soak")?;
    let bin = tasks::build()?;
    let gen_bin = std::env::current_exe().context("locating xtask for the generator")?;
    // Dropped in reverse: the forwarders have stopped (and written their
    // state) before the state directory goes.
    let (state, topo) = p2p_lab(PREFIX, "soak")?;
    let sites = topo.sites();
    let [h1, h2] = [&sites[0], &sites[1]];
    let mut fwds = Vec::new();
    for (host, peer) in [(h1, h2), (h2, h1)] {
        fwds.push(start_fwd(host, peer, &bin, &state.0, &[])?);
    }
    if !ping_result(&h1.container_netns, h2.container_ip.to_string(), 3).ok {
        bail!("no connectivity before the soak");
    }
    let mut pids = [0; 2];
    for (pid, f) in pids.iter_mut().zip(&fwds) {
        *pid = f.pid().context("a running forwarder has a pid")?;
    }
    let dst: Ipv4Addr = h2.container_ip;
    let start = Instant::now();
    let mut samples = Vec::new();
    outln!(
        "soak: {} s at the highest rate, sampling every {} s",
        args.seconds,
        args.interval
    );
    outln!(
        "{:>6} {:>12} {:>14} {:>10} {:>10} {:>6} {:>6}",
        "t (s)",
        "drops",
        "rx_decap",
        "rss1 KiB",
        "rss2 KiB",
        "fdb1",
        "fdb2"
    );
    while start.elapsed().as_secs() < args.seconds {
        let window = args
            .interval
            .min(args.seconds - start.elapsed().as_secs())
            .max(1);
        let status = netns_command(&h1.container_netns, &gen_bin)
            .args([
                "bench-gen",
                "--dst",
                &dst.to_string(),
                "--seconds",
                &window.to_string(),
            ])
            .output()
            .context("running the generator")?;
        if !status.status.success() {
            bail!(
                "generator failed: {}",
                String::from_utf8_lossy(&status.stderr)
            );
        }
        let mut drops = 0;
        let mut rx_decap = 0;
        for f in &fwds {
            let s = stats(f)?;
            drops += s["drops"]
                .as_object()
                .map_or(0, |d| d.values().filter_map(Value::as_u64).sum());
            rx_decap += s["counters"]["rx_decap"].as_u64().unwrap_or(0);
        }
        let sample = Sample {
            at: start.elapsed().as_secs(),
            drops,
            rx_decap,
            rss_kib: [rss_kib(pids[0]), rss_kib(pids[1])],
            fdb: [fdb_len(&fwds[0])?, fdb_len(&fwds[1])?],
        };
        outln!(
            "{:>6} {:>12} {:>14} {:>10} {:>10} {:>6} {:>6}",
            sample.at,
            sample.drops,
            sample.rx_decap,
            sample.rss_kib[0],
            sample.rss_kib[1],
            sample.fdb[0],
            sample.fdb[1]
        );
        samples.push(sample);
    }
    for problem in stop_fwds(fwds, FWD_STOP_GRACE) {
        errln!("soak: warning: {problem}");
    }
    drop(topo);

    let (Some(first), Some(last)) = (samples.first(), samples.last()) else {
        bail!("no samples");
    };
    let mut problems = Vec::new();
    if last.drops > first.drops {
        problems.push(format!(
            "datapath drops grew from {} to {}",
            first.drops, last.drops
        ));
    }
    for i in 0..2 {
        if last.rss_kib[i] * 10 > first.rss_kib[i] * 11 {
            problems.push(format!(
                "h{} RSS grew from {} to {} KiB",
                i + 1,
                first.rss_kib[i],
                last.rss_kib[i]
            ));
        }
        if samples.iter().any(|s| s.fdb[i] != first.fdb[i]) {
            problems.push(format!("h{} FDB size changed during the soak", i + 1));
        }
    }
    let secs = (last.at - first.at).max(1);
    outln!(
        "soak: {:.0} decapsulated frames/s (both hosts), drops {} -> {}, RSS {:?} -> {:?} KiB, FDB {:?}",
        (last.rx_decap - first.rx_decap) as f64 / secs as f64,
        first.drops,
        last.drops,
        first.rss_kib,
        last.rss_kib,
        last.fdb
    );
    if problems.is_empty() {
        outln!("soak: OK");
        Ok(0)
    } else {
        errln!("soak: FAILED: {}", problems.join("; "));
        Ok(1)
    }
}
