//! `cargo xtask bench`, control-plane section (the etcd issue):
//!
//! 1. **Convergence.** 1,000 simulated VTEPs x 20 MACs (20,000 entries, in
//!    20 VNIs of 50 VTEPs each, so that every VTEP fits a flood list) are
//!    written into etcd; then a forwarder serving those VNIs starts on h1.
//!    Measured: the time from its start (and from its ready line, when the
//!    etcd session starts) until all 20,000 `extern_learn` entries are in
//!    its FDB map, and its CPU time and peak RSS until then.
//! 2. **Churn.** 100 MAC moves per second (a MAC key rewritten with another
//!    VTEP): the latency from the start of each etcd write to the map
//!    update, p50 and p99.
//! 3. **BUM saved.** c1 resolves c2 (ARP cache flushed) N times, with and
//!    without ARP suppression: ARP requests counted on the underlay.
//!
//! Everything runs in the bench's namespaces; etcd (Debian's
//! `etcd-server`) runs on the switch at 192.168.57.1.

use std::{
    net::Ipv4Addr,
    path::Path,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, anyhow, bail};
use etcd_client::{Client, PutOptions, Txn, TxnOp};
use vxlan_common::{FdbKey, vtep_v4};
use vxlan_tests::{
    Capture, Forwarder, StartOpts, Topology, etcd::Etcd, in_netns, ping_result, topo::Site,
};

use super::{Plan, run::ip};
use crate::{signals, util::output_any};

const PREFIX: &str = "vxbe-";
const ETCD_IP: &str = "192.168.57.1";
const VNIS: u32 = 20;
const FIRST_VNI: u32 = 1000;
const VTEPS: u32 = 1000;
const MACS_PER_VTEP: u32 = 20;
const KEY_PREFIX: &str = "/vxlan-fwd";

/// The figures of this section.
#[derive(Debug, Default, serde::Serialize)]
pub struct EtcdFigures {
    pub entries: u64,
    pub converge_from_start_s: f64,
    pub converge_from_ready_s: f64,
    pub converge_cpu_s: f64,
    pub rss_peak_kib: u64,
    pub churn_moves: usize,
    pub churn_p50_ms: f64,
    pub churn_p99_ms: f64,
    pub churn_max_ms: f64,
    pub arp_rounds: u32,
    pub arp_on_underlay_suppressed: usize,
    pub arp_on_underlay_flooded: usize,
}

fn section(title: &str) {
    outln!("\n==== {title} ====");
}

/// Simulated VTEP `i` (0..VTEPS): 10.99.x.y, off-link (never sent to).
fn vtep(i: u32) -> Ipv4Addr {
    Ipv4Addr::new(10, 99, (i >> 8) as u8, i as u8)
}

/// MAC `j` of VTEP `i`: 02:ee:ii:ii:jj:jj.
fn mac(i: u32, j: u32) -> [u8; 6] {
    let (a, b) = ((i as u16).to_be_bytes(), (j as u16).to_be_bytes());
    [0x02, 0xee, a[0], a[1], b[0], b[1]]
}

/// IPv4 address of MAC `j` of VTEP `i`: 10.100.x.y, distinct.
fn endpoint_ip(i: u32, j: u32) -> Ipv4Addr {
    Ipv4Addr::new(10, 100, (i >> 3) as u8, ((i % 8) * 32 + j) as u8)
}

fn mac_text(m: &[u8; 6]) -> String {
    m.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

fn vni_of(i: u32) -> u32 {
    FIRST_VNI + i % VNIS
}

async fn connect() -> Result<Client> {
    Client::connect([format!("http://{ETCD_IP}:2379")], None)
        .await
        .context("connecting to etcd")
}

/// Writes the 1,000 VTEPs and 20,000 MACs, 100 puts per transaction.
fn generate(netns: &str) -> Result<()> {
    in_netns(netns, || -> Result<()> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        rt.block_on(async {
            let mut c = connect().await?;
            let mut ops = Vec::new();
            for i in 0..VTEPS {
                let (v, a) = (vni_of(i), vtep(i));
                ops.push(TxnOp::put(
                    format!("{KEY_PREFIX}/v1/vni/{v}/vtep/{a}"),
                    format!("{{\"vtep\":\"{a}\"}}"),
                    None,
                ));
                for j in 0..MACS_PER_VTEP {
                    let m = mac_text(&mac(i, j));
                    ops.push(TxnOp::put(
                        format!("{KEY_PREFIX}/v1/vni/{v}/mac/{m}"),
                        format!("{{\"vtep\":\"{a}\",\"ip\":\"{}\"}}", endpoint_ip(i, j)),
                        None,
                    ));
                }
                if ops.len() >= 100 {
                    c.txn(Txn::new().and_then(std::mem::take(&mut ops))).await?;
                }
            }
            if !ops.is_empty() {
                c.txn(Txn::new().and_then(ops)).await?;
            }
            Ok(())
        })
    })?
}

/// Entries of the forwarder's FDB map that the control plane installed.
fn extern_entries(maps: &vxlan_user::maps::Maps) -> u64 {
    let mut n = 0;
    let _ = vxlan_user::batch::for_each(&maps.fdb, |_, e| n += u64::from(e.is_extern()));
    n
}

/// utime + stime of `pid`, in seconds.
fn cpu_s(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks: u64 = f.get(11).and_then(|v| v.parse().ok()).unwrap_or(0)
        + f.get(12).and_then(|v| v.parse().ok()).unwrap_or(0);
    // SAFETY: a plain libc call.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    ticks as f64 / hz
}

fn rss_peak_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// etcd on the switch, at [`ETCD_IP`] on its bridge (the lab's etcd
/// launch, quiet), with a fresh data directory under `dir`.
fn start_etcd(topo: &Topology, dir: &Path) -> Result<Etcd> {
    let sw = &topo.switch;
    sw.try_ip_ok(["addr", "add", &format!("{ETCD_IP}/24"), "dev", "br0"])?;
    let _ = std::fs::remove_dir_all(dir.join("etcd"));
    Etcd::try_start(sw, ETCD_IP, dir)
}

fn start_fwd(h: &Site, fwd: &Path, state: &Path, args: &[&str]) -> Result<Forwarder> {
    let etcd = format!("http://{ETCD_IP}:2379");
    let mut all = vec!["--iface", "eth0", "--etcd", &etcd];
    all.extend(args);
    let label = format!("vxlan-fwd@{}", h.name);
    let opts = StartOpts {
        bin: Some(fwd),
        state_dir: Some(state),
        label: Some(&label),
        echo: true,
        ..StartOpts::default()
    };
    Forwarder::start_with(&h.netns, &all, &opts)
        .map_err(|out| anyhow!("{label} did not print its ready line: {out}"))
}

pub fn run(plan: &Plan, fwd: &Path) -> Result<EtcdFigures> {
    section("control plane (etcd)");
    signals::teardown_lab_on_signal();
    let topo = Topology::point_to_point(PREFIX).try_build()?;
    let sites = topo.sites();
    let state = crate::util::target_dir().join("bench").join("etcd-state");
    std::fs::create_dir_all(&state)?;
    let etcd = start_etcd(&topo, &state)?;
    let sw = topo.switch.name().to_owned();
    let mut figs = EtcdFigures::default();

    // 1. Convergence from a cold start. The simulated VTEPs sit behind a
    // router (the switch's address): one next hop to resolve.
    let h1 = &sites[0];
    ip(&[
        "-n",
        &h1.netns,
        "route",
        "add",
        "10.99.0.0/16",
        "via",
        ETCD_IP,
    ])?;
    generate(&sw)?;
    let want = u64::from(VTEPS * MACS_PER_VTEP);
    let config = state.join("bench.toml");
    let mut text = String::from("iface = \"eth0\"\n");
    for v in FIRST_VNI..FIRST_VNI + VNIS {
        text.push_str(&format!("[[vni]]\nid = {v}\n"));
    }
    std::fs::write(&config, text)?;
    let cfg = config.display().to_string();
    let t0 = Instant::now();
    let p = start_fwd(h1, fwd, &state, &["--config", &cfg])?;
    // Ready: programs attached, 20 VNIs set up; the etcd session starts now.
    let ready = t0.elapsed();
    let pid = p
        .pid()
        .ok_or_else(|| anyhow!("the forwarder on h1 has no pid"))?;
    let maps = super::run::fwd_maps(h1)?;
    loop {
        if extern_entries(&maps) >= want {
            break;
        }
        if t0.elapsed() > Duration::from_secs(120) {
            bail!("the forwarder did not converge in 120 s");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let done = t0.elapsed();
    figs.entries = want;
    figs.converge_from_start_s = done.as_secs_f64();
    figs.converge_from_ready_s = (done.saturating_sub(ready)).as_secs_f64();
    figs.converge_cpu_s = cpu_s(pid);
    figs.rss_peak_kib = rss_peak_kib(pid);
    outln!(
        "convergence: {want} entries in {:.3} s from the process start ({:.3} s after its ready \
         line, when the etcd session starts); CPU {:.2} s, peak RSS {} KiB",
        figs.converge_from_start_s,
        figs.converge_from_ready_s,
        figs.converge_cpu_s,
        figs.rss_peak_kib
    );

    // 2. Churn: 100 moves per second.
    let moves = if plan.quick { 200 } else { 500 };
    let lat = in_netns(&sw, move || -> Result<Vec<f64>> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        rt.block_on(async move {
            let mut c = connect().await?;
            let fdb = &maps.fdb;
            let mut lat = Vec::with_capacity(moves);
            let start = Instant::now();
            for k in 0..moves {
                let slot = start + Duration::from_millis(10 * k as u64);
                tokio::time::sleep_until(slot.into()).await;
                let i = (k as u32 * 7) % VTEPS;
                let (v, m) = (vni_of(i), mac(i, k as u32 % MACS_PER_VTEP));
                // A different MAC each time (7 and 1000 are coprime), to
                // another VTEP of the same VNI.
                let to = vtep((i + VNIS) % VTEPS);
                let key = format!("{KEY_PREFIX}/v1/vni/{v}/mac/{}", mac_text(&m));
                let t = Instant::now();
                c.put(key, format!("{{\"vtep\":\"{to}\"}}"), None::<PutOptions>)
                    .await?;
                loop {
                    if fdb
                        .get(&FdbKey::new(v, m), 0)
                        .is_ok_and(|e| e.remote == vtep_v4(to.octets()))
                    {
                        break;
                    }
                    if t.elapsed() > Duration::from_secs(5) {
                        bail!("move {k} not applied in 5 s");
                    }
                    std::thread::sleep(Duration::from_micros(100));
                }
                lat.push(t.elapsed().as_secs_f64() * 1000.0);
            }
            Ok(lat)
        })
    })??;
    let mut sorted = lat.clone();
    sorted.sort_by(f64::total_cmp);
    let pct = |p: f64| sorted[((sorted.len() as f64 - 1.0) * p).round() as usize];
    figs.churn_moves = sorted.len();
    figs.churn_p50_ms = pct(0.5);
    figs.churn_p99_ms = pct(0.99);
    figs.churn_max_ms = pct(1.0);
    outln!(
        "churn: {} moves at 100/s; etcd write -> map update p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        figs.churn_moves,
        figs.churn_p50_ms,
        figs.churn_p99_ms,
        figs.churn_max_ms
    );
    p.stop_within(Duration::from_secs(10));
    drop(etcd);
    drop(topo);

    // 3. BUM saved: ARP on the underlay with and without suppression.
    let rounds = if plan.quick { 10 } else { 30 };
    figs.arp_rounds = rounds;
    for suppress in [true, false] {
        let n = arp_round(fwd, &state, suppress, rounds)?;
        if suppress {
            figs.arp_on_underlay_suppressed = n;
        } else {
            figs.arp_on_underlay_flooded = n;
        }
    }
    outln!(
        "BUM saved: c1 resolves c2 {rounds} times: {} ARP request(s) on the underlay with \
         suppression, {} without",
        figs.arp_on_underlay_suppressed,
        figs.arp_on_underlay_flooded
    );
    Ok(figs)
}

/// Two forwarders (VNI 42, etcd) with or without ARP suppression; c1
/// resolves c2 `rounds` times; returns the encapsulated ARP requests seen
/// on the switch.
fn arp_round(fwd: &Path, state: &Path, suppress: bool, rounds: u32) -> Result<usize> {
    let topo = Topology::point_to_point(PREFIX).try_build()?;
    let sites = topo.sites();
    let etcd = start_etcd(&topo, state)?;
    let flag = if suppress {
        "--arp-suppress"
    } else {
        "--no-arp-suppress"
    };
    let mut procs = Vec::new();
    for h in &sites {
        procs.push(start_fwd(
            h,
            fwd,
            state,
            &["--vni", "42", "--port", "veth0", flag],
        )?);
    }
    let (c1, c2) = (&sites[0], &sites[1]);
    let c2_ip = c2.container_ip.to_string();
    // Warm-up: both endpoints published with their addresses.
    let t = Instant::now();
    while !ping_result(&c1.container_netns, &c2_ip, 3).ok {
        if t.elapsed() > Duration::from_secs(20) {
            bail!("c1 does not reach c2");
        }
    }
    std::thread::sleep(Duration::from_millis(1500));
    let capture = Capture::try_start(&topo.switch, "br0", "udp port 4789", false)?;
    for _ in 0..rounds {
        ip(&["-n", &c1.container_netns, "neigh", "flush", "dev", "eth0"])?;
        let mut p = vxlan_tests::netns::netns_command(&c1.container_netns, "ping");
        p.args(["-c", "1", "-W", "1", &c2_ip]);
        let _ = output_any(&mut p)?;
    }
    std::thread::sleep(Duration::from_millis(300));
    let n = capture
        .try_finish()?
        .iter()
        .filter(|l| l.contains("ARP, Request"))
        .count();
    for p in procs {
        p.stop_within(Duration::from_secs(10));
    }
    drop(etcd);
    drop(topo);
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn simulated_fleet_is_distinct() {
        let mut macs = std::collections::BTreeSet::new();
        for i in 0..VTEPS {
            for j in 0..MACS_PER_VTEP {
                assert!(macs.insert(mac(i, j)));
            }
        }
        assert_eq!(macs.len(), 20_000);
        assert_eq!(mac_text(&mac(1, 2)), "02:ee:00:01:00:02");
        assert_eq!(vtep(258), Ipv4Addr::new(10, 99, 1, 2));
        let ips: std::collections::BTreeSet<Ipv4Addr> = (0..VTEPS)
            .flat_map(|i| (0..MACS_PER_VTEP).map(move |j| endpoint_ip(i, j)))
            .collect();
        assert_eq!(ips.len(), 20_000);
        // 50 VTEPs per VNI: each fits a flood list.
        assert_eq!((0..VTEPS).filter(|i| vni_of(*i) == FIRST_VNI).count(), 50);
    }
}
