//! The bench itself: topology, both setups alternately, the figures, the
//! outputs. Built only with the `bench-ebpf` feature (see `mod.rs`).

use std::{
    cell::RefCell,
    collections::BTreeMap,
    path::{Path, PathBuf},
    process::{Command, ExitStatus},
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, anyhow, bail};
use serde::Serialize;
use serde_json::{Value, json};
use vxlan_common::{FDB_F_STATIC, FdbEntry, FdbKey, vtep_v4};
use vxlan_tests::{
    Forwarder, Process, Topology,
    netns::netns_command as netns_cmd,
    ping_result,
    topo::{
        CONTAINER_IFACE, CONTAINER_MTU, CONTAINER_MTU6, H1_IP6, H2_IP6, KERNEL_VXLAN, PORT, Site,
        UPLINK,
    },
};
use vxlan_user::maps::Maps;

use super::{
    Plan, bound, filler_mac, max_fdb_for,
    report::{self, Group, Panel, Row},
    scale_label, testrun,
};
use crate::{
    signals,
    util::{output, output_any, start_fwd_to, stop_fwds, target_dir},
};

const PREFIX: &str = "vxbench-";

/// The namespaces' name prefix: `vxbench-`, or `XTASK_BENCH_PREFIX` (two
/// benches on one machine must not remove each other's namespaces as
/// leftovers).
fn prefix() -> String {
    std::env::var("XTASK_BENCH_PREFIX")
        .ok()
        .filter(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'))
        .unwrap_or_else(|| PREFIX.to_owned())
}
const VNI: u32 = 42;
/// SIGINT to SIGKILL: a forwarder with a million static entries needs far
/// more than the topology's usual 10 s (see `Stop`).
const FWD_STOP_GRACE: Duration = Duration::from_secs(120);
/// The generator runs this long before the window opens and after it closes.
const WARMUP: Duration = Duration::from_millis(700);
const TAIL: Duration = Duration::from_millis(500);
/// UDP port the generator sends to in c2 (discard; nothing listens).
const GEN_PORT: u16 = 9;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
enum Setup {
    Kernel,
    VxlanFwd,
    /// The same hops without a tunnel: each host bridges its container's
    /// veth straight onto the underlay.
    NoTunnel,
    /// Section 9: TC programs that only redirect (see `bound.rs`).
    Bound,
    /// Section 10: TC programs that only encapsulate and decapsulate (see
    /// `bound.rs`).
    MinTunnel,
}

impl Setup {
    fn name(self) -> &'static str {
        match self {
            Setup::Kernel => "kernel vxlan + bridge",
            Setup::VxlanFwd => "vxlan-fwd",
            Setup::NoTunnel => "no tunnel (containers bridged onto the underlay)",
            Setup::Bound => "zero-work bound (TC programs that only redirect, no tunnel)",
            Setup::MinTunnel => {
                "minimal tunnel (TC programs that only encapsulate and decapsulate)"
            }
        }
    }
}

/// How vxlan-fwd receives on its veth uplink (`--xdp-mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
enum RxMode {
    /// No XDP: the TC program decapsulates (`auto` on a veth, the default).
    Tc,
    /// skb-mode XDP (`--xdp-mode generic`).
    XdpGeneric,
    /// The veth driver's XDP (`--xdp-mode native`).
    XdpNative,
}

impl RxMode {
    fn name(self) -> &'static str {
        match self {
            RxMode::Tc => "TC (default on veth)",
            RxMode::XdpGeneric => "skb-mode XDP",
            RxMode::XdpNative => "native XDP",
        }
    }
    fn arg(self) -> Option<&'static str> {
        match self {
            RxMode::Tc => None,
            RxMode::XdpGeneric => Some("generic"),
            RxMode::XdpNative => Some("native"),
        }
    }
}

/// One measured configuration: a setup, the netfilter hooks of every
/// bridge in the lab, and vxlan-fwd's receive mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
struct Variant {
    setup: Setup,
    /// `bridge-nf-call-*` in every namespace of the lab.
    netfilter: bool,
    /// For vxlan-fwd only.
    rx: Option<RxMode>,
    /// Whether the FDB-scale and memory figures (6, 7) are measured too.
    scale: bool,
    /// VXLAN over the IPv6 underlay (the hosts' `fd00:57::N`; containers
    /// at MTU 1430) instead of IPv4 (section 8).
    ipv6: bool,
}

impl Variant {
    const fn new(setup: Setup, netfilter: bool) -> Self {
        Self {
            setup,
            netfilter,
            rx: match setup {
                Setup::VxlanFwd => Some(RxMode::Tc),
                _ => None,
            },
            scale: false,
            ipv6: false,
        }
    }

    fn name(&self) -> String {
        let mut n = self.setup.name().to_owned();
        if let Some(m) = self.rx.filter(|&m| m != RxMode::Tc) {
            n = format!("{n}, {}", m.name());
        }
        if self.ipv6 {
            n = format!("{n}, over IPv6");
        }
        format!(
            "{n}; bridge-nf-call-* = {} in every namespace",
            u8::from(self.netfilter)
        )
    }

    /// The variants of one round, in the order of odd rounds.
    fn all() -> Vec<Self> {
        let best = |s| Self {
            scale: s != Setup::NoTunnel,
            ..Self::new(s, false)
        };
        let mode = |m| Self {
            rx: Some(m),
            ..Self::new(Setup::VxlanFwd, false)
        };
        vec![
            best(Setup::Kernel),
            best(Setup::VxlanFwd),
            best(Setup::NoTunnel),
            Self::new(Setup::Bound, false),
            Self::new(Setup::MinTunnel, false),
            Self::new(Setup::Kernel, true),
            Self::new(Setup::VxlanFwd, true),
            Self::new(Setup::NoTunnel, true),
            mode(RxMode::XdpGeneric),
            mode(RxMode::XdpNative),
            Self::over_ipv6(Setup::Kernel),
            Self::over_ipv6(Setup::VxlanFwd),
        ]
    }

    /// `setup` over the IPv6 underlay, hooks off.
    const fn over_ipv6(setup: Setup) -> Self {
        let mut v = Self::new(setup, false);
        v.ipv6 = true;
        v
    }
}

/// Figure 1 once.
#[derive(Debug, Clone, Serialize)]
struct Rate {
    /// Datagrams the generator's sendmmsg calls accepted, over its run.
    sent: u64,
    gen_elapsed_s: f64,
    sent_pps: f64,
    gen_errors: u64,
    /// Packets c2's eth0 received in the window.
    received: u64,
    window_s: f64,
    received_pps: f64,
    /// Non-zero counter changes along the path over the generator's run
    /// (interfaces `ns:dev:counter`, vxlan-fwd's datapath counters
    /// `host:vxlan-fwd:counter`, veth ethtool stats `ns:dev:ethtool:name`).
    path: BTreeMap<String, u64>,
    /// CPU time (user + system) both vxlan-fwd processes used over the
    /// generator's run, in % of one CPU: their control plane (ageing,
    /// neighbour and allowed-sender sync, table snapshots) competes with
    /// the datapath for the same CPUs. None for the kernel setup.
    fwd_cpu_pct: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
struct Tcp {
    flows: u32,
    bits_per_second: f64,
    retransmits: Option<u64>,
    /// Non-zero counter changes along the path (as for [`Rate::path`]).
    path: BTreeMap<String, u64>,
}

#[derive(Debug, Clone, Serialize)]
struct Memory {
    /// What the forwarder held: `default --max-fdb` or the FDB size.
    case: String,
    max_fdb: Option<u32>,
    fdb_entries: u64,
    /// Sum of `memlock` of the BPF maps vxlan-fwd holds (h1), bytes.
    map_memlock: u64,
    maps: usize,
    /// VmRSS of vxlan-fwd (h1), bytes.
    rss: u64,
}

/// Stopping both forwarders: SIGINT until both exited.
#[derive(Debug, Clone, Serialize)]
struct Stop {
    /// Static filler entries each forwarder held.
    fdb_entries: u64,
    seconds: f64,
}

#[derive(Debug, Clone, Serialize)]
struct Scaled {
    fdb_entries: u64,
    /// Wall time to fill both hosts' tables up to `fdb_entries`.
    fill_s: f64,
    rate: Rate,
}

#[derive(Debug, Clone, Serialize)]
struct SetupResult {
    variant: Variant,
    /// What the hosts' bridge-nf-call-* files read during the run
    /// (namespace -> key -> value), or empty if br_netfilter is not loaded.
    netfilter_seen: BTreeMap<String, BTreeMap<String, u8>>,
    rate: Rate,
    tcp_1: Tcp,
    tcp_4: Tcp,
    scaled: Vec<Scaled>,
    memory: Vec<Memory>,
    stops: Vec<Stop>,
}

impl SetupResult {
    /// Figures 1 and 2 (the rate, then TCP with 1 and 4 flows) of `setup`,
    /// as variant `v`; the scaled and memory figures and stops are added
    /// by the caller.
    fn measure(env: &Env, v: Variant, setup: Setup) -> Result<Self> {
        Ok(Self {
            variant: v,
            netfilter_seen: BTreeMap::new(),
            rate: measure_rate(env, setup)?,
            tcp_1: tcp(env, setup, 1)?,
            tcp_4: tcp(env, setup, 4)?,
            scaled: Vec::new(),
            memory: Vec::new(),
            stops: Vec::new(),
        })
    }

    /// Figure 3 at FDB scale `n` (filled in `fill_s` s; `what` they are):
    /// the rate again.
    fn add_scaled(&mut self, env: &Env, n: u64, fill_s: f64, what: &str) -> Result<()> {
        outln!("FDB: {} {what} ({fill_s:.1} s)", scale_label(n));
        self.scaled.push(Scaled {
            fdb_entries: n,
            fill_s,
            rate: measure_rate(env, self.variant.setup)?,
        });
        Ok(())
    }
}

#[derive(Debug, Clone, Serialize)]
struct Round {
    round: u32,
    order: Vec<Variant>,
    setups: Vec<SetupResult>,
    testrun: Vec<testrun::Case>,
}

impl Round {
    fn get(&self, v: Variant) -> Option<&SetupResult> {
        self.setups.iter().find(|r| r.variant == v)
    }
}

#[derive(Debug, Clone, Serialize)]
struct Machine {
    nproc: usize,
    kernel: String,
    cpu: String,
    mem_total: String,
    /// /proc/loadavg when the bench started: other work on the machine
    /// makes every figure noisier.
    loadavg_start: String,
}

impl Machine {
    fn read() -> Self {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let field = |text: &str, name: &str| {
            text.lines()
                .find(|l| l.starts_with(name))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_owned())
                .unwrap_or_else(|| "unknown".into())
        };
        Self {
            nproc: std::thread::available_parallelism().map_or(0, |n| n.get()),
            kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
                .map(|s| s.trim().to_owned())
                .unwrap_or_else(|_| "unknown".into()),
            cpu: field(&cpuinfo, "model name"),
            mem_total: field(
                &std::fs::read_to_string("/proc/meminfo").unwrap_or_default(),
                "MemTotal",
            ),
            loadavg_start: loadavg(),
        }
    }
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

struct Env<'a> {
    topo: &'a Topology,
    sites: Vec<Site>,
    /// The running forwarders (vxlan-fwd setup), stopped by `fwd_stop`.
    fwds: RefCell<Vec<Forwarder>>,
    prefix: String,
    plan: &'a Plan,
    fwd: &'a Path,
    gen_exe: PathBuf,
    state_dir: PathBuf,
    work_dir: PathBuf,
}

impl Env<'_> {
    fn h(&self, i: usize) -> &Site {
        &self.sites[i]
    }
    fn short<'n>(&self, ns: &'n str) -> &'n str {
        ns.strip_prefix(self.prefix.as_str()).unwrap_or(ns)
    }
}

fn section(title: &str) {
    outln!("\n==== {title} ====");
}

pub fn run(plan: &Plan, fwd: &Path) -> Result<()> {
    let started = Instant::now();
    let machine = Machine::read();
    section("machine");
    outln!(
        "nproc {} | kernel {} | CPU {} | memory {} | load average {}",
        machine.nproc,
        machine.kernel,
        machine.cpu,
        machine.mem_total,
        machine.loadavg_start
    );
    if machine
        .loadavg_start
        .split_whitespace()
        .next()
        .and_then(|l| l.parse::<f64>().ok())
        .is_some_and(|l| l > 0.5)
    {
        outln!(
            "warning: other work is using the CPUs (load average above 0.5): expect noisy figures"
        );
    }
    outln!(
        "plan: {} round(s), {} s windows, FDB scale {}, {} test runs per case{}",
        plan.rounds,
        plan.seconds,
        plan.fdb_sizes
            .iter()
            .map(|&n| scale_label(n))
            .collect::<Vec<_>>()
            .join(" and "),
        plan.test_runs,
        if plan.quick {
            " (--quick: FDB scale stops at 100k, not 1M)"
        } else {
            ""
        }
    );
    if plan.testrun_only {
        return testrun_only(plan);
    }
    let out_dir = target_dir().join("bench");
    std::fs::create_dir_all(&out_dir).with_context(|| format!("creating {}", out_dir.display()))?;
    let state_dir = out_dir.join("fwd-state");
    let work_dir = out_dir.join("work");
    let _ = std::fs::remove_dir_all(&state_dir);
    let _ = std::fs::remove_dir_all(&work_dir);
    std::fs::create_dir_all(&work_dir)?;

    // The binary under test, copied: a rebuild of target/release/vxlan-fwd
    // during the run must not change what a restart runs.
    let bin_dir = out_dir.join("bin");
    std::fs::create_dir_all(&bin_dir)?;
    let fwd_copy = bin_dir.join("vxlan-fwd");
    std::fs::copy(fwd, &fwd_copy)
        .with_context(|| format!("copying {} to {}", fwd.display(), fwd_copy.display()))?;
    let fwd = fwd_copy.as_path();

    signals::teardown_lab_on_signal();
    // Both underlay families on the hosts' eth0: IPv4 for sections 1-7,
    // IPv6 for section 8.
    let topo = Topology::point_to_point(&prefix())
        .host_ip6("h1", H1_IP6)
        .host_ip6("h2", H2_IP6)
        .announce(true)
        .try_build()?;
    let env = Env {
        topo: &topo,
        sites: topo.sites(),
        fwds: RefCell::new(Vec::new()),
        prefix: prefix(),
        plan,
        fwd,
        gen_exe: std::env::current_exe().context("locating the xtask executable")?,
        state_dir: state_dir.clone(),
        work_dir: work_dir.clone(),
    };
    let result = measure(&env);
    drop(env);
    drop(topo);
    let _ = std::fs::remove_dir_all(&state_dir);
    let _ = std::fs::remove_dir_all(&work_dir);
    let _ = std::fs::remove_dir_all(&bin_dir);
    let rounds = result?;

    let rows = rows(plan, &rounds);
    let total_s = started.elapsed().as_secs_f64();
    let json_path = out_dir.join("bench.json");
    let svg_path = out_dir.join("bench.svg");
    let doc = json!({
        "machine": machine,
        "plan": plan,
        "definitions": definitions(plan),
        "rows": rows,
        "rounds": rounds,
        "loadavg_end": loadavg(),
        "total_runtime_s": total_s,
    });
    std::fs::write(&json_path, serde_json::to_string_pretty(&doc)? + "\n")
        .with_context(|| format!("writing {}", json_path.display()))?;
    report::svg(
        &svg_path,
        &format!(
            "kernel vxlan + bridge vs vxlan-fwd vs no tunnel ({} round(s), median, min-max; {} CPUs, {})",
            plan.rounds, machine.nproc, machine.kernel
        ),
        &panels(plan, &rows),
    )?;

    section("results");
    outln!(
        "machine: nproc {}, kernel {}, CPU {}; load average {} at the start, {} at the end",
        machine.nproc,
        machine.kernel,
        machine.cpu,
        machine.loadavg_start,
        loadavg()
    );
    outln!(
        "{} round(s), {} s windows; median (min–max) over the rounds\n",
        plan.rounds,
        plan.seconds
    );
    out!("{}", report::markdown(&rows));
    outln!();
    for d in definitions(plan) {
        outln!("- {d}");
    }
    outln!(
        "\nwrote {} and {}\ntotal runtime {:.0} s",
        json_path.display(),
        svg_path.display(),
        total_s
    );
    Ok(())
}

/// `--testrun-only`: figure 5 for each round, medians at the end.
fn testrun_only(plan: &Plan) -> Result<()> {
    let mut all: Vec<Vec<testrun::Case>> = Vec::new();
    for r in 1..=plan.rounds {
        section(&format!(
            "round {r}/{}: figure 5, BPF_PROG_TEST_RUN ({} runs per case)",
            plan.rounds, plan.test_runs
        ));
        let cases = testrun::run(testrun::Params {
            runs: plan.test_runs,
            fdb_sizes: plan.fdb_sizes.clone(),
        })?;
        for c in &cases {
            outln!(
                "{:<70} {:>9.1} ns  (median run {:.0} ns, {} runs)",
                c.what,
                c.ns,
                c.median_ns,
                c.runs
            );
        }
        all.push(cases);
    }
    type Field = fn(&testrun::Case) -> f64;
    let figures: [(&str, Field); 2] = [
        ("medians", |x| x.ns),
        (
            "medians of the runs' median durations (robust to preemption)",
            |x| x.median_ns,
        ),
    ];
    for (title, field) in figures {
        section(title);
        for c in all.first().into_iter().flatten() {
            let v: Vec<f64> = all
                .iter()
                .filter_map(|r| r.iter().find(|x| x.key == c.key).map(field))
                .collect();
            if let Some(s) = report::Stat::of(&v) {
                outln!(
                    "{:<70} {:>9.1} ns  ({:.1}–{:.1})",
                    c.what,
                    s.median,
                    s.min,
                    s.max
                );
            }
        }
    }
    Ok(())
}

const NF_KEYS: [&str; 3] = [
    "bridge-nf-call-iptables",
    "bridge-nf-call-ip6tables",
    "bridge-nf-call-arptables",
];

/// Turns br_netfilter's hooks on or off for every bridge in every
/// namespace of the lab (`/proc/sys/net/bridge/bridge-nf-call-*` as each
/// namespace sees it; the files exist only while br_netfilter is loaded)
/// and returns what the files read afterwards.
fn set_netfilter(topo: &Topology, on: bool) -> Result<BTreeMap<String, BTreeMap<String, u8>>> {
    let v = u8::from(on);
    let mut seen = BTreeMap::new();
    for ns in topo.namespaces() {
        let script = format!(
            "for k in {keys}; do f=/proc/sys/net/bridge/$k; test -e $f || exit 3; \
             echo {v} > $f || exit 1; echo $k $(cat $f); done",
            keys = NF_KEYS.join(" ")
        );
        let mut cmd = netns_cmd(&ns, "sh");
        cmd.args(["-c", &script]);
        let o = output_any(&mut cmd)?;
        match o.status.code() {
            Some(0) => {}
            // br_netfilter is not loaded: no bridge runs netfilter hooks.
            Some(3) if !on => continue,
            Some(3) => {
                errln!(
                    "bench: warning: br_netfilter is not loaded: the \"hooks on\" section \
                     measures bridges without them"
                );
                continue;
            }
            _ => bail!(
                "setting bridge-nf-call-* = {v} in {ns} failed ({}): {}",
                o.status,
                String::from_utf8_lossy(&o.stderr).trim()
            ),
        }
        let mut keys = BTreeMap::new();
        for line in String::from_utf8_lossy(&o.stdout).lines() {
            if let Some((k, val)) = line.split_once(' ')
                && let Ok(val) = val.trim().parse::<u8>()
            {
                if val != v {
                    bail!("{ns}: {k} reads {val} after writing {v}");
                }
                keys.insert(k.to_owned(), val);
            }
        }
        seen.insert(ns, keys);
    }
    outln!(
        "netfilter: bridge-nf-call-{{iptables,ip6tables,arptables}} = {v} in {} namespace(s)",
        seen.len()
    );
    Ok(seen)
}

/// Both hosts reach each other over the underlay (`when`: in which
/// state, for the message).
fn check_underlay(env: &Env, when: &str) -> Result<()> {
    for (a, b) in [(env.h(0), env.h(1)), (env.h(1), env.h(0))] {
        let (ok, text) = ping(&a.netns, b.underlay_ip);
        if !ok {
            bail!(
                "the underlay does not work{when}: {} cannot ping {}:\n{text}",
                a.name,
                b.underlay_ip
            );
        }
    }
    Ok(())
}

fn measure(env: &Env) -> Result<Vec<Round>> {
    check_underlay(env, "")?;
    // Section 9 needs tcx (Linux 6.6): without it, the rest still runs.
    let bound_ok = match bound::Attached::bound(&[env.h(0).netns.as_str()]) {
        Ok(b) => {
            drop(b);
            true
        }
        Err(e) if bound::tcx_missing(&e) => {
            outln!(
                "warning: sections 9 and 10 (the zero-work bound, the minimal tunnel) are \
                 skipped: no tcx here: {e:#}"
            );
            false
        }
        Err(e) => return Err(e.context("section 9's redirect programs")),
    };
    let mut rounds = Vec::new();
    for r in 1..=env.plan.rounds {
        let mut order = Variant::all();
        let only = &env.plan.only;
        order.retain(|v| only.is_empty() || only.iter().any(|o| v.name().contains(o.as_str())));
        order.retain(|v| bound_ok || !matches!(v.setup, Setup::Bound | Setup::MinTunnel));
        if r % 2 == 0 {
            order.reverse();
        }
        let mut setups = Vec::new();
        for &v in &order {
            section(&format!("round {r}/{}: {}", env.plan.rounds, v.name()));
            let res = (|| {
                let netfilter_seen = set_netfilter(env.topo, v.netfilter)?;
                if v.ipv6 {
                    set_overlay_mtu(env, CONTAINER_MTU6)?;
                }
                let res = match v.setup {
                    Setup::Kernel => kernel_setup(env, v),
                    Setup::VxlanFwd => fwd_setup(env, v),
                    Setup::NoTunnel => no_tunnel_setup(env, v),
                    Setup::Bound => bound_setup(env, v),
                    Setup::MinTunnel => min_tunnel_setup(env, v),
                };
                let mtu = if v.ipv6 {
                    set_overlay_mtu(env, CONTAINER_MTU)
                } else {
                    Ok(())
                };
                let mut res = res?;
                mtu?;
                res.netfilter_seen = netfilter_seen;
                Ok::<_, anyhow::Error>(res)
            })()
            .with_context(|| format!("round {r}, setup {}", v.name()))?;
            setups.push(res);
        }
        section(&format!(
            "round {r}/{}: figure 5, BPF_PROG_TEST_RUN ({} runs per case)",
            env.plan.rounds, env.plan.test_runs
        ));
        let cases = testrun::run(testrun::Params {
            runs: env.plan.test_runs,
            fdb_sizes: env.plan.fdb_sizes.clone(),
        })
        .with_context(|| format!("round {r}, figure 5"))?;
        for c in &cases {
            outln!("{:<70} {:>9.1} ns  ({} runs)", c.what, c.ns, c.runs);
        }
        rounds.push(Round {
            round: r,
            order,
            setups,
            testrun: cases,
        });
    }
    Ok(rounds)
}

// ---------------------------------------------------------------- setups

pub(super) fn ip(args: &[&str]) -> Result<String> {
    output(Command::new("ip").args(args))
}

/// `ping -c 3` from `netns` (at least one reply): whether it worked, and
/// its output.
fn ping(netns: &str, to: std::net::Ipv4Addr) -> (bool, String) {
    let r = ping_result(netns, to.to_string(), 3);
    (r.ok, r.output)
}

/// The containers' `eth0` and the hosts' container ports at `mtu` (1430
/// over the IPv6 underlay, 1450 otherwise).
fn set_overlay_mtu(env: &Env, mtu: u32) -> Result<()> {
    let mtu = mtu.to_string();
    for h in [env.h(0), env.h(1)] {
        ip(&["-n", &h.netns, "link", "set", PORT, "mtu", &mtu])?;
        ip(&[
            "-n",
            &h.container_netns,
            "link",
            "set",
            CONTAINER_IFACE,
            "mtu",
            &mtu,
        ])?;
    }
    outln!("containers and their ports: MTU {mtu}");
    Ok(())
}

/// The address `peer` is reached at: its IPv6 underlay address for
/// VXLAN over IPv6.
fn vtep_addr(peer: &Site, ipv6: bool) -> Result<String> {
    if !ipv6 {
        return Ok(peer.underlay_ip.to_string());
    }
    peer.underlay_ip6
        .map(|a| a.to_string())
        .ok_or_else(|| anyhow!("{} has no IPv6 underlay address", peer.name))
}

fn kernel_up(env: &Env, ipv6: bool) -> Result<()> {
    for (h, peer) in [(env.h(0), env.h(1)), (env.h(1), env.h(0))] {
        let vtep = env
            .topo
            .host(&h.name)
            .kernel_vtep(KERNEL_VXLAN)
            .vni(VNI)
            .remote(vtep_addr(peer, ipv6)?)
            .bridge("br0", &[PORT]);
        outln!("{}: {}", h.name, vtep.describe());
        vtep.try_create()?;
    }
    Ok(())
}

fn kernel_down(env: &Env) -> Result<()> {
    for h in [env.h(0), env.h(1)] {
        for dev in ["vxlan0", "br0"] {
            let _ = ip(&["-n", &h.netns, "link", "del", dev]);
        }
        let links = ip(&["-n", &h.netns, "-o", "link", "show"])?;
        for dev in ["vxlan0", "br0"] {
            if links.contains(&format!(": {dev}:")) || links.contains(&format!(": {dev}@")) {
                bail!("{}: {dev} is still there after `ip link del`", h.name);
            }
        }
    }
    Ok(())
}

fn kernel_setup(env: &Env, v: Variant) -> Result<SetupResult> {
    let r = kernel_up(env, v.ipv6).and_then(|()| {
        check_overlay(env)?;
        let mut r = SetupResult::measure(env, v, Setup::Kernel)?;
        let mut have = 0;
        let sizes: &[u64] = if v.scale { &env.plan.fdb_sizes } else { &[] };
        for &n in sizes {
            let fill_s = fill_kernel(env, have, n)?;
            have = n;
            r.add_scaled(env, n, fill_s, "entries in each host's vxlan0 and br0")?;
        }
        Ok(r)
    });
    let down = kernel_down(env);
    let r = r?;
    down?;
    Ok(r)
}

/// The no-tunnel path: in each host a bridge with the container's veth
/// and the underlay uplink as ports, so c1 and c2 share the underlay's L2
/// segment; the same hops as the kernel setup without the vxlan device.
fn no_tunnel_up(env: &Env) -> Result<()> {
    for h in [env.h(0), env.h(1)] {
        let ns = h.netns.as_str();
        outln!(
            "{}: ip link add br0 type bridge; {PORT} and {UPLINK} into br0; all up",
            h.name
        );
        ip(&["-n", ns, "link", "add", "br0", "type", "bridge"])?;
        ip(&["-n", ns, "link", "set", PORT, "master", "br0"])?;
        ip(&["-n", ns, "link", "set", UPLINK, "master", "br0"])?;
        ip(&["-n", ns, "link", "set", "br0", "up"])?;
        ip(&["-n", ns, "link", "set", PORT, "up"])?;
    }
    Ok(())
}

fn no_tunnel_setup(env: &Env, v: Variant) -> Result<SetupResult> {
    let r = no_tunnel_up(env).and_then(|()| {
        check_overlay(env)?;
        SetupResult::measure(env, v, Setup::NoTunnel)
    });
    // Deleting the bridge releases eth0, whose address is still there.
    let down = kernel_down(env).and_then(|()| check_underlay(env, " after the no-tunnel setup"));
    let r = r?;
    down?;
    Ok(r)
}

fn bound_setup(env: &Env, v: Variant) -> Result<SetupResult> {
    let hosts = [env.h(0).netns.as_str(), env.h(1).netns.as_str()];
    outln!(
        "h1, h2: TC ingress programs that only redirect: {PORT} -> out of {UPLINK} \
         (bpf_redirect), {UPLINK} -> the container (bpf_redirect_peer)"
    );
    measure_attached(
        env,
        v,
        bound::Attached::bound(&hosts)?,
        "the zero-work bound",
    )
}

fn min_tunnel_setup(env: &Env, v: Variant) -> Result<SetupResult> {
    let mac =
        |i: usize| vxlan_user::netlink::parse_mac(&env.topo.host(&env.h(i).name).ns.mac(UPLINK));
    let (m0, m1) = (mac(0)?, mac(1)?);
    let end = |i: usize, me: [u8; 6], peer: [u8; 6]| bound::TunnelEnd {
        netns: env.h(i).netns.clone(),
        mac: me,
        ip: env.h(i).underlay_ip.octets(),
        peer_mac: peer,
        peer_ip: env.h(1 - i).underlay_ip.octets(),
    };
    outln!(
        "h1, h2: TC ingress programs that only encapsulate ({PORT}: adjust_room +50, fixed \
         outer headers, out of {UPLINK}) and decapsulate ({UPLINK}: IPv4/UDP/4789 -> \
         adjust_room -50, into the container)"
    );
    let t = bound::Attached::min_tunnel(&[end(0, m0, m1), end(1, m1, m0)])?;
    measure_attached(env, v, t, "the minimal tunnel")
}

/// Measures `v` while `programs` are attached, then detaches them and
/// checks that the underlay works again (`what`: for the message).
fn measure_attached(
    env: &Env,
    v: Variant,
    programs: bound::Attached,
    what: &str,
) -> Result<SetupResult> {
    let r = check_overlay(env).and_then(|()| SetupResult::measure(env, v, v.setup));
    // Closing the links detaches the programs.
    drop(programs);
    let down = check_underlay(env, &format!(" after {what}"));
    let r = r?;
    down?;
    Ok(r)
}

/// Adds the filler entries `from..to` to both hosts, in parallel: in the
/// vxlan device's FDB (`self`, dst the peer VTEP) and in the bridge's
/// (`master static`, on vxlan0): a kernel VTEP that knows N remote MACs
/// holds them in both.
fn fill_kernel(env: &Env, from: u64, to: u64) -> Result<f64> {
    use std::io::Write as _;
    let t = Instant::now();
    let mut jobs = Vec::new();
    for (h, peer) in [(env.h(0), env.h(1)), (env.h(1), env.h(0))] {
        let path = env.work_dir.join(format!("fdb-{}.batch", h.name));
        let mut f = std::io::BufWriter::new(
            std::fs::File::create(&path).with_context(|| format!("creating {}", path.display()))?,
        );
        for i in from..to {
            let m = filler_mac(i);
            let mac = format!(
                "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
                m[0], m[1], m[2], m[3], m[4], m[5]
            );
            writeln!(
                f,
                "fdb add {mac} dev vxlan0 dst {} self permanent",
                peer.underlay_ip
            )?;
            writeln!(f, "fdb add {mac} dev vxlan0 master static")?;
        }
        f.flush()?;
        drop(f);
        let mut cmd = netns_cmd(&h.netns, "bridge");
        cmd.arg("-batch").arg(&path);
        jobs.push(Bg::spawn(cmd, &format!("bridge -batch ({})", h.name))?);
    }
    let mut result = Ok(());
    for job in jobs {
        if let Err(e) = job.finish(Duration::from_secs(1800)) {
            result = result.and(Err(e));
        }
    }
    for h in [env.h(0), env.h(1)] {
        let _ = std::fs::remove_file(env.work_dir.join(format!("fdb-{}.batch", h.name)));
    }
    result.map(|()| t.elapsed().as_secs_f64())
}

fn fwd_start(env: &Env, max_fdb: Option<u32>, rx: Option<RxMode>, ipv6: bool) -> Result<()> {
    let _ = std::fs::remove_dir_all(&env.state_dir);
    for (h, peer) in [(env.h(0), env.h(1)), (env.h(1), env.h(0))] {
        // The state file (the table kept across restarts) goes to a
        // directory of our own, removed between runs: every start is fresh.
        let max = max_fdb.map(|n| n.to_string());
        let mut extra = Vec::new();
        if let Some(n) = &max {
            extra.extend(["--max-fdb", n.as_str()]);
        }
        if let Some(m) = rx.and_then(RxMode::arg) {
            extra.extend(["--xdp-mode", m]);
        }
        let remote = vtep_addr(peer, ipv6)?;
        let f = start_fwd_to(h, &remote, env.fwd, &env.state_dir, &extra)?;
        env.fwds.borrow_mut().push(f);
    }
    Ok(())
}

/// SIGINT to both forwarders; each must exit 0 and leave nothing attached.
/// Returns how long they took.
fn fwd_stop(env: &Env, entries: u64) -> Result<Stop> {
    let mut failures = Vec::new();
    let t = Instant::now();
    let problems = stop_fwds(env.fwds.take(), FWD_STOP_GRACE);
    let stop = Stop {
        fdb_entries: entries,
        seconds: t.elapsed().as_secs_f64(),
    };
    outln!(
        "vxlan-fwd stopped in {:.1} s (FDB: {} static entries)",
        stop.seconds,
        scale_label(entries)
    );
    failures.extend(problems);
    for h in [env.h(0), env.h(1)] {
        if xdp_prog_id(&h.netns).unwrap_or(None).is_some() {
            failures.push(format!(
                "{}: an XDP program is still attached to {UPLINK} after vxlan-fwd stopped",
                h.name
            ));
            let _ = ip(&["-n", &h.netns, "link", "set", "dev", UPLINK, "xdp", "off"]);
        }
        for dev in [UPLINK, PORT] {
            let f = output(
                Command::new("tc").args(["-n", &h.netns, "filter", "show", "dev", dev, "ingress"]),
            )
            .unwrap_or_default();
            if !f.trim().is_empty() {
                failures.push(format!(
                    "{}: tc ingress filters left on {dev} after vxlan-fwd stopped",
                    h.name
                ));
                let _ = output(
                    Command::new("tc").args(["-n", &h.netns, "qdisc", "del", "dev", dev, "clsact"]),
                );
            }
        }
    }
    let _ = std::fs::remove_dir_all(&env.state_dir);
    if failures.is_empty() {
        Ok(stop)
    } else {
        bail!("{}", failures.join("; "))
    }
}

fn fwd_setup(env: &Env, v: Variant) -> Result<SetupResult> {
    fwd_start(env, None, v.rx, v.ipv6)?;
    let mut stops = Vec::new();
    let mut have = 0;
    let r = (|| -> Result<SetupResult> {
        check_overlay(env)?;
        let mut r = SetupResult::measure(env, v, Setup::VxlanFwd)?;
        if v.scale {
            r.memory
                .push(fwd_memory(env, "default --max-fdb", None, 0)?);
        }
        let mut cap = None;
        let sizes: &[u64] = if v.scale { &env.plan.fdb_sizes } else { &[] };
        for &n in sizes {
            let want = max_fdb_for(n);
            if want != cap {
                let m = want.map_or_else(|| "default".into(), |m| m.to_string());
                outln!(
                    "restarting vxlan-fwd with --max-fdb {m} for {} entries",
                    scale_label(n)
                );
                stops.push(fwd_stop(env, have)?);
                fwd_start(env, want, v.rx, v.ipv6)?;
                check_overlay(env)?;
                (have, cap) = (0, want);
            }
            let t = Instant::now();
            fill_fwd(env, have, n)?;
            let fill_s = t.elapsed().as_secs_f64();
            have = n;
            r.add_scaled(env, n, fill_s, "static entries in each host's vxlan-fwd")?;
            if cap.is_some() {
                r.memory
                    .push(fwd_memory(env, &format!("FDB {}", scale_label(n)), cap, n)?);
            }
        }
        Ok(r)
    })();
    let stopped = fwd_stop(env, have);
    let mut r = r?;
    stops.push(stopped?);
    r.stops = stops;
    Ok(r)
}

/// The id of the XDP program on the host's uplink, if any.
fn xdp_prog_id(netns: &str) -> Result<Option<u32>> {
    let out = ip(&["-n", netns, "-j", "-d", "link", "show", "dev", UPLINK])?;
    let v: Value = serde_json::from_str(&out).context("parsing `ip -j link show`")?;
    let xdp = &v[0]["xdp"];
    Ok(xdp["prog"]["id"]
        .as_u64()
        .or_else(|| xdp["attached"][0]["prog"]["id"].as_u64())
        .map(|id| id as u32))
}

/// The id of vxlan-fwd's TC uplink program (a tc ingress filter on the
/// host's uplink), if attached.
fn tc_uplink_prog_id(netns: &str) -> Option<u32> {
    let out =
        output(Command::new("tc").args(["-n", netns, "filter", "show", "dev", UPLINK, "ingress"]))
            .unwrap_or_default();
    out.lines().find_map(|l| {
        let w: Vec<&str> = l.split_whitespace().collect();
        let ours = w
            .windows(2)
            .any(|p| p[0] == "name" && p[1] == vxlan_common::prog::TC_UPLINK);
        let id = w
            .windows(2)
            .find(|p| p[0] == "id")
            .and_then(|p| p[1].parse().ok());
        if ours { id } else { None }
    })
}

pub(super) fn fwd_maps(h: &Site) -> Result<Maps> {
    // Our XDP program, or without XDP (the default on a veth uplink) the TC
    // uplink program: either uses every map.
    let id = xdp_prog_id(&h.netns)?
        .or_else(|| tc_uplink_prog_id(&h.netns))
        .ok_or_else(|| {
            anyhow!(
                "{}: no vxlan-fwd program on {UPLINK}: is vxlan-fwd running?",
                h.name
            )
        })?;
    Maps::from_program(id).with_context(|| format!("{}: opening vxlan-fwd's maps", h.name))
}

/// Adds static entries `from..to` (behind the peer VTEP) to both running
/// forwarders' FDB maps, one thread per host.
fn fill_fwd(env: &Env, from: u64, to: u64) -> Result<()> {
    let jobs: Vec<_> = [(env.h(0), env.h(1)), (env.h(1), env.h(0))]
        .into_iter()
        .map(|(h, peer)| {
            let maps = fwd_maps(h);
            let (name, remote) = (h.name.clone(), vtep_v4(peer.underlay_ip.octets()));
            std::thread::spawn(move || -> Result<()> {
                let mut maps = maps?;
                let entry = FdbEntry::new_remote(remote, FDB_F_STATIC, 0);
                for i in from..to {
                    maps.fdb
                        .insert(FdbKey::new(VNI, filler_mac(i)), entry, 0)
                        .with_context(|| format!("{name}: adding FDB entry {} of {to}", i + 1))?;
                }
                Ok(())
            })
        })
        .collect();
    for j in jobs {
        j.join()
            .map_err(|_| anyhow!("an FDB fill thread panicked"))??;
    }
    Ok(())
}

pub(super) fn pid_of(netns: &str, comm: &str) -> Result<u32> {
    let out = ip(&["netns", "pids", netns])?;
    out.split_whitespace()
        .filter_map(|p| p.parse::<u32>().ok())
        .find(|p| {
            std::fs::read_to_string(format!("/proc/{p}/comm")).is_ok_and(|c| c.trim() == comm)
        })
        .ok_or_else(|| anyhow!("no {comm} process in {netns}"))
}

/// Map memory (sum of `memlock` over the distinct BPF maps the process
/// holds an fd of) and RSS of vxlan-fwd on h1.
fn fwd_memory(env: &Env, case: &str, max_fdb: Option<u32>, entries: u64) -> Result<Memory> {
    let pid = pid_of(&env.h(0).netns, "vxlan-fwd")?;
    let mut seen = BTreeMap::new();
    for fd in std::fs::read_dir(format!("/proc/{pid}/fd"))? {
        let fd = fd?;
        let Ok(target) = std::fs::read_link(fd.path()) else {
            continue;
        };
        if target.to_string_lossy() != "anon_inode:bpf-map" {
            continue;
        }
        let info = std::fs::read_to_string(format!(
            "/proc/{pid}/fdinfo/{}",
            fd.file_name().to_string_lossy()
        ))
        .unwrap_or_default();
        let field = |name: &str| {
            info.lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.trim().parse::<u64>().ok())
        };
        if let (Some(id), Some(memlock)) = (field("map_id:"), field("memlock:")) {
            seen.insert(id, memlock);
        }
    }
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let rss_kb = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        .ok_or_else(|| anyhow!("no VmRSS in /proc/{pid}/status"))?;
    let m = Memory {
        case: case.into(),
        max_fdb,
        fdb_entries: entries,
        map_memlock: seen.values().sum(),
        maps: seen.len(),
        rss: rss_kb * 1024,
    };
    outln!(
        "memory ({case}): {} BPF maps, memlock {:.1} MiB; vxlan-fwd RSS {:.1} MiB",
        m.maps,
        m.map_memlock as f64 / 1048576.0,
        m.rss as f64 / 1048576.0
    );
    Ok(m)
}

// ---------------------------------------------------------------- figures

/// c1 reaches c2 (this also makes both paths learn the containers' MACs).
fn check_overlay(env: &Env) -> Result<()> {
    let (c1, c2) = (&env.h(0).container_netns, env.h(1).container_ip);
    let (ok, text) = ping(c1, c2);
    if !ok {
        bail!("the overlay does not work: c1 cannot ping {c2}:\n{text}");
    }
    Ok(())
}

fn link_counters(netns: &str, into: &mut BTreeMap<String, u64>, prefix: &str) -> Result<()> {
    let out = ip(&["-n", netns, "-s", "-j", "link", "show"])?;
    let v: Value = serde_json::from_str(&out).context("parsing `ip -s -j link show`")?;
    for link in v.as_array().into_iter().flatten() {
        let Some(name) = link["ifname"].as_str() else {
            continue;
        };
        if name == "lo" {
            continue;
        }
        for dir in ["rx", "tx"] {
            for field in ["packets", "dropped", "errors"] {
                if let Some(n) = link["stats64"][dir][field].as_u64() {
                    into.insert(format!("{prefix}:{name}:{dir}_{field}"), n);
                }
            }
        }
    }
    Ok(())
}

fn ethtool_counters(netns: &str, dev: &str, into: &mut BTreeMap<String, u64>, prefix: &str) {
    let Ok(out) = output(netns_cmd(netns, "ethtool").args(["-S", dev])) else {
        return;
    };
    for line in out.lines().skip(1) {
        if let Some((k, v)) = line.trim().split_once(':')
            && let Ok(n) = v.trim().parse::<u64>()
            && !k.contains("peer_ifindex")
        {
            into.insert(format!("{prefix}:{dev}:ethtool:{}", k.trim()), n);
        }
    }
}

/// Counters along the path c1 -> c2.
fn path_counters(env: &Env, setup: Setup) -> Result<BTreeMap<String, u64>> {
    let mut m = BTreeMap::new();
    let [h1, h2] = [env.h(0), env.h(1)];
    for ns in [
        &h1.container_netns,
        &h1.netns,
        env.topo.switch.name(),
        &h2.netns,
        &h2.container_netns,
    ] {
        link_counters(ns, &mut m, env.short(ns))?;
    }
    for h in [h1, h2] {
        for dev in [PORT, UPLINK] {
            ethtool_counters(&h.netns, dev, &mut m, &h.name);
        }
    }
    if setup == Setup::VxlanFwd {
        for h in [h1, h2] {
            let maps = fwd_maps(h)?;
            for (c, n) in vxlan_user::stats::read(&maps)? {
                m.insert(format!("{}:vxlan-fwd:{}", h.name, c.name()), n);
            }
        }
    }
    Ok(m)
}

fn delta(before: &BTreeMap<String, u64>, after: &BTreeMap<String, u64>) -> BTreeMap<String, u64> {
    after
        .iter()
        .filter_map(|(k, &a)| {
            let d = a.saturating_sub(before.get(k).copied().unwrap_or(0));
            (d > 0).then(|| (k.clone(), d))
        })
        .collect()
}

/// User + system CPU seconds of both vxlan-fwd processes (None for the
/// kernel setup).
fn fwd_cpu_s(env: &Env, setup: Setup) -> Result<Option<f64>> {
    if setup != Setup::VxlanFwd {
        return Ok(None);
    }
    // SAFETY: sysconf has no preconditions.
    let tck = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    let mut total = 0.0;
    for h in [env.h(0), env.h(1)] {
        let pid = pid_of(&h.netns, "vxlan-fwd")?;
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
        // Fields after the command name: state is field 3; utime 14, stime 15.
        let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or_default();
        let f: Vec<&str> = rest.split_whitespace().collect();
        let ticks = |i: usize| {
            f.get(i - 3)
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0)
        };
        total += (ticks(14) + ticks(15)) as f64 / tck;
    }
    Ok(Some(total))
}

fn rx_packets(netns: &str, dev: &str) -> Result<u64> {
    let out = ip(&["-n", netns, "-s", "-j", "link", "show", "dev", dev])?;
    let v: Value = serde_json::from_str(&out).context("parsing `ip -s -j link show`")?;
    v[0]["stats64"]["rx"]["packets"]
        .as_u64()
        .ok_or_else(|| anyhow!("no rx packet counter for {dev} in {netns}"))
}

/// Figure 1 once: the generator in c1, c2's eth0 rx counter over the window.
fn measure_rate(env: &Env, setup: Setup) -> Result<Rate> {
    let [h1, h2] = [env.h(0), env.h(1)];
    let window = Duration::from_secs(u64::from(env.plan.seconds));
    let before = path_counters(env, setup)?;
    let gen_s = (WARMUP + window + TAIL).as_secs_f64();
    let cpu_before = fwd_cpu_s(env, setup)?;
    // The receiving socket first (see `generator::sink`), kept a little
    // longer than the generator runs.
    let mut sink_cmd = netns_cmd(&h2.container_netns, &env.gen_exe);
    sink_cmd.args([
        "bench-sink",
        "--port",
        &GEN_PORT.to_string(),
        "--seconds",
        &format!("{:.3}", gen_s + 5.0),
    ]);
    let mut sink = Bg::spawn(sink_cmd, "bench-sink")?;
    sink.wait_line(Duration::from_secs(10), |l| l.starts_with("ready"))
        .context("bench-sink did not bind its port")?;
    let gen_started = Instant::now();
    let mut cmd = netns_cmd(&h1.container_netns, &env.gen_exe);
    cmd.args(["bench-gen", "--dst", &h2.container_ip.to_string()])
        .args([
            "--port",
            &GEN_PORT.to_string(),
            "--threads",
            "2",
            "--sockets",
            "4",
        ])
        .args([
            "--payload",
            "18",
            "--batch",
            "64",
            "--seconds",
            &format!("{gen_s:.3}"),
        ]);
    let mut gen_proc = Bg::spawn(cmd, "bench-gen")?;
    std::thread::sleep(WARMUP);
    gen_proc.check_running()?;
    let c2 = &h2.container_netns;
    let sample = || -> Result<(Instant, u64)> {
        let t0 = Instant::now();
        let n = rx_packets(c2, CONTAINER_IFACE)?;
        Ok((t0 + t0.elapsed() / 2, n))
    };
    let (t0, rx0) = sample()?;
    std::thread::sleep(window.saturating_sub(t0.elapsed()));
    let (t1, rx1) = sample()?;
    let (_, lines, _) = gen_proc.finish(Duration::from_secs_f64(gen_s + 60.0))?;
    // The generator is done: stop the sink (Drop kills it).
    drop(sink);
    let fwd_cpu_pct = match (cpu_before, fwd_cpu_s(env, setup)?) {
        (Some(a), Some(b)) => Some(100.0 * (b - a) / gen_started.elapsed().as_secs_f64()),
        _ => None,
    };
    let report: Value = lines
        .iter()
        .rev()
        .find_map(|l| serde_json::from_str(l).ok())
        .ok_or_else(|| anyhow!("bench-gen printed no result line (stdout: {lines:?})"))?;
    let after = path_counters(env, setup)?;
    let sent = report["sent"].as_u64().unwrap_or(0);
    let gen_elapsed_s = report["elapsed_s"].as_f64().unwrap_or(gen_s);
    let window_s = (t1 - t0).as_secs_f64();
    let received = rx1.saturating_sub(rx0);
    let r = Rate {
        sent,
        gen_elapsed_s,
        sent_pps: sent as f64 / gen_elapsed_s,
        gen_errors: report["errors"].as_u64().unwrap_or(0),
        received,
        window_s,
        received_pps: received as f64 / window_s,
        path: delta(&before, &after),
        fwd_cpu_pct,
    };
    outln!(
        "rate: sent {:.3} Mpps ({} errors), received at c2 {:.3} Mpps ({:.1}%){}{}",
        r.sent_pps / 1e6,
        r.gen_errors,
        r.received_pps / 1e6,
        100.0 * r.received_pps / r.sent_pps.max(1.0),
        r.fwd_cpu_pct.map_or_else(String::new, |p| format!(
            "; vxlan-fwd processes used {p:.0}% of a CPU"
        )),
        losses(&r.path)
    );
    Ok(r)
}

/// The drop and error counters among `path`, as a line to print.
fn losses(path: &BTreeMap<String, u64>) -> String {
    let l: Vec<String> = path
        .iter()
        .filter(|(k, _)| {
            let k = k.to_ascii_lowercase();
            k.contains("drop")
                || k.contains("err")
                || k.contains("refused")
                || k.contains("too_big")
        })
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    if l.is_empty() {
        String::new()
    } else {
        format!("\n      drops along the path: {}", l.join(", "))
    }
}

/// Figure 2 once: iperf3 from c1 to c2.
fn tcp(env: &Env, setup: Setup, flows: u32) -> Result<Tcp> {
    let (c1, c2) = (&env.h(0).container_netns, &env.h(1).container_netns);
    let dst = env.h(1).container_ip.to_string();
    let mut server_cmd = netns_cmd(c2, "iperf3");
    // --forceflush: stdout is a pipe; the "Server listening" line must not wait in a buffer.
    server_cmd.args(["-s", "-1", "--forceflush", "-B", &dst]);
    let before = path_counters(env, setup)?;
    let mut server = Bg::spawn(server_cmd, "iperf3 -s")?;
    server.wait_line(Duration::from_secs(10), |l| l.contains("Server listening"))?;
    let mut client_cmd = netns_cmd(c1, "iperf3");
    client_cmd
        .args(["-c", &dst, "-t", &env.plan.seconds.to_string(), "-J"])
        .args(["-P", &flows.to_string()]);
    let client = Bg::spawn(client_cmd, "iperf3 -c")?;
    let (status, lines, stderr) =
        client.finish_any(Duration::from_secs(u64::from(env.plan.seconds) + 60))?;
    let text = lines.join("\n");
    let v: Value = serde_json::from_str(&text).map_err(|e| {
        anyhow!(
            "iperf3 -c ({status}) printed no JSON ({e}): {stderr}{}",
            &text[..text.len().min(400)]
        )
    })?;
    if let Some(e) = v["error"].as_str() {
        bail!("iperf3 -c failed: {e}");
    }
    if !status.success() {
        bail!("iperf3 -c exited with {status}: {stderr}");
    }
    let bps = v["end"]["sum_received"]["bits_per_second"]
        .as_f64()
        .ok_or_else(|| anyhow!("iperf3 JSON has no end.sum_received.bits_per_second"))?;
    let retransmits = v["end"]["sum_sent"]["retransmits"].as_u64();
    let _ = server.finish_any(Duration::from_secs(10));
    let path = delta(&before, &path_counters(env, setup)?);
    outln!(
        "tcp {flows} flow(s): {:.2} Gbit/s (retransmits {}){}",
        bps / 1e9,
        retransmits.map_or_else(|| "n/a".into(), |r| r.to_string()),
        losses(&path)
    );
    Ok(Tcp {
        flows,
        bits_per_second: bps,
        retransmits,
        path,
    })
}

// ---------------------------------------------------------------- summary

fn rows(plan: &Plan, rounds: &[Round]) -> Vec<Row> {
    let per = |v: Variant, f: &dyn Fn(&SetupResult) -> Option<f64>| -> Vec<f64> {
        rounds
            .iter()
            .filter_map(|r| r.get(v))
            .filter_map(f)
            .collect()
    };
    let best = |s| {
        Variant::all()
            .into_iter()
            .find(|v| {
                v.setup == s && !v.netfilter && !v.ipv6 && v.rx.is_none_or(|m| m == RxMode::Tc)
            })
            .expect("every setup has a hooks-off variant")
    };
    let (kernel, fwd, none) = (
        best(Setup::Kernel),
        best(Setup::VxlanFwd),
        best(Setup::NoTunnel),
    );
    let both = |key: &str, label: &str, unit: &str, f: &dyn Fn(&SetupResult) -> Option<f64>| {
        Row::new(key, label, unit, per(kernel, f), per(fwd, f))
    };
    type Figure = (
        &'static str,
        &'static str,
        &'static str,
        fn(&SetupResult) -> Option<f64>,
    );
    let figures: [Figure; 4] = [
        (
            "rate_received",
            "64-byte frames c1→c2: received",
            "Mpps",
            |s| Some(s.rate.received_pps / 1e6),
        ),
        ("rate_sent", "64-byte frames c1→c2: sent", "Mpps", |s| {
            Some(s.rate.sent_pps / 1e6)
        }),
        ("tcp_1", "TCP c1→c2, 1 flow", "Gbit/s", |s| {
            Some(s.tcp_1.bits_per_second / 1e9)
        }),
        ("tcp_4", "TCP c1→c2, 4 flows", "Gbit/s", |s| {
            Some(s.tcp_4.bits_per_second / 1e9)
        }),
    ];
    let mut rows = Vec::new();
    // 1. Headline: no netfilter hooks anywhere.
    for (key, label, unit, f) in figures {
        rows.push(both(
            key,
            &format!("1. kernel at its best (bridge-nf-call-* = 0 everywhere): {label}"),
            unit,
            &f,
        ));
    }
    // 2. Hooks on in every namespace (Docker, Kubernetes nodes).
    let nf = |s| Variant::new(s, true);
    for (key, label, unit, f) in figures {
        rows.push(
            Row::new(
                &format!("nf_{key}"),
                &format!("2. br_netfilter on (bridge-nf-call-* = 1 everywhere): {label}"),
                unit,
                per(nf(Setup::Kernel), &f),
                per(nf(Setup::VxlanFwd), &f),
            )
            .with_no_tunnel(per(nf(Setup::NoTunnel), &f)),
        );
    }
    // 3. Against the same hops without a tunnel (hooks off).
    for (key, label, unit, f) in figures {
        rows.push(
            Row::new(
                &format!("no_tunnel_{key}"),
                &format!("3. vxlan-fwd vs no tunnel (hooks off): {label}"),
                unit,
                Vec::new(),
                per(fwd, &f),
            )
            .with_no_tunnel(per(none, &f)),
        );
    }
    // 4. Receive modes on the veth uplink (hooks off), against the kernel
    // and no-tunnel figures of sections 1 and 3.
    for m in [RxMode::Tc, RxMode::XdpGeneric, RxMode::XdpNative] {
        let v = Variant::all()
            .into_iter()
            .find(|x| x.setup == Setup::VxlanFwd && !x.netfilter && !x.ipv6 && x.rx == Some(m))
            .expect("every receive mode has a variant");
        for (key, label, unit, f) in figures {
            if key == "rate_sent" {
                continue;
            }
            rows.push(
                Row::new(
                    &format!("rx_{}_{key}", m.arg().unwrap_or("tc")),
                    &format!("4. receive mode {}: {label}", m.name()),
                    unit,
                    per(kernel, &f),
                    per(v, &f),
                )
                .with_no_tunnel(per(none, &f)),
            );
        }
    }
    // 8. VXLAN over the IPv6 underlay (hooks off, containers at MTU 1430),
    // against the IPv4 figures of section 1.
    for (key, label, unit, f) in figures {
        rows.push(
            Row::new(
                &format!("ipv6_{key}"),
                &format!("8. over an IPv6 underlay: {label}"),
                unit,
                per(Variant::over_ipv6(Setup::Kernel), &f),
                per(Variant::over_ipv6(Setup::VxlanFwd), &f),
            )
            .with_no_tunnel(per(none, &f)),
        );
    }
    // 9. The zero-work bound and 10. the minimal tunnel (hooks off),
    // against the kernel and no-tunnel figures of sections 1 and 3, and
    // vxlan-fwd's share of each, per round.
    for (setup, key_of, name, what) in [
        (
            Setup::Bound,
            "bound",
            "9. zero-work bound",
            "TC programs that only redirect",
        ),
        (
            Setup::MinTunnel,
            "min_tunnel",
            "10. minimal tunnel",
            "TC programs that only encapsulate and decapsulate",
        ),
    ] {
        let ceiling = Variant::new(setup, false);
        for (key, label, unit, f) in figures {
            if key == "rate_sent" {
                continue;
            }
            rows.push(
                Row::new(
                    &format!("{key_of}_{key}"),
                    &format!("{name} ({what}): {label}"),
                    unit,
                    per(kernel, &f),
                    per(ceiling, &f),
                )
                .with_no_tunnel(per(none, &f)),
            );
            let (num, title) = name.split_once(' ').unwrap_or(("", name));
            rows.push(Row::new(
                &format!("fwd_share_of_{key_of}_{key}"),
                &format!("{num} vxlan-fwd as a share of the {title}: {label}"),
                "%",
                Vec::new(),
                rounds
                    .iter()
                    .filter_map(|r| Some(100.0 * f(r.get(fwd)?)? / f(r.get(ceiling)?)?))
                    .collect(),
            ));
        }
    }
    rows.push(both(
        "fwd_cpu",
        "1. vxlan-fwd processes' CPU during the 64-byte figure",
        "% of a CPU",
        &|s| s.rate.fwd_cpu_pct,
    ));
    let cases: Vec<(String, String)> = rounds
        .first()
        .map(|r| {
            r.testrun
                .iter()
                .map(|c| (c.key.clone(), c.what.clone()))
                .collect()
        })
        .unwrap_or_default();
    let ns_of = |key: &str| -> Vec<f64> {
        rounds
            .iter()
            .filter_map(|r| r.testrun.iter().find(|c| c.key == key).map(|c| c.ns))
            .collect()
    };
    let floor = report::Stat::of(&ns_of("floor_xdp_drop")).map(|s| s.median);
    let tc_floor = report::Stat::of(&ns_of("floor_tc_shot")).map(|s| s.median);
    for (key, what) in &cases {
        let vals = ns_of(key);
        // Against the floor measured the same way (one run per call).
        let times = match (floor, report::Stat::of(&vals)) {
            (Some(f), Some(s)) if f > 0.0 && !key.starts_with("floor") => {
                // TC programs also against the TC floor.
                let tc = match tc_floor {
                    Some(t) if t > 0.0 && key.starts_with("tc_") => {
                        format!(", {:.1}× the TC floor", s.median / t)
                    }
                    _ => String::new(),
                };
                format!(" [{:.1}× the floor{tc}]", s.median / f)
            }
            _ => String::new(),
        };
        rows.push(Row::new(
            &format!("testrun_{key}"),
            &format!("5. {what}{times}"),
            "ns/pkt",
            Vec::new(),
            vals,
        ));
    }
    for &n in &plan.fdb_sizes {
        let l = scale_label(n);
        let find = move |s: &SetupResult| s.scaled.iter().find(|x| x.fdb_entries == n).cloned();
        let both = |key: &str, label: &str, unit: &str, f: &dyn Fn(&SetupResult) -> Option<f64>| {
            Row::new(key, label, unit, per(kernel, f), per(fwd, f))
        };
        rows.push(both(
            &format!("rate_received_fdb_{n}"),
            &format!("6. 64-byte frames received, FDB {l}"),
            "Mpps",
            &|s| find(s).map(|x| x.rate.received_pps / 1e6),
        ));
        rows.push(both(
            &format!("rate_sent_fdb_{n}"),
            &format!("6. 64-byte frames sent, FDB {l}"),
            "Mpps",
            &|s| find(s).map(|x| x.rate.sent_pps / 1e6),
        ));
        rows.push(both(
            &format!("fwd_cpu_fdb_{n}"),
            &format!("6. vxlan-fwd processes' CPU during the 64-byte figure, FDB {l}"),
            "% of a CPU",
            &|s| find(s).and_then(|x| x.rate.fwd_cpu_pct),
        ));
        rows.push(both(
            &format!("fill_s_fdb_{n}"),
            &format!("6. time to fill both hosts' FDB to {l}"),
            "s",
            &|s| find(s).map(|x| x.fill_s),
        ));
    }
    for &n in std::iter::once(&0).chain(&plan.fdb_sizes) {
        let vals: Vec<f64> = rounds
            .iter()
            .filter_map(|r| r.get(fwd))
            .flat_map(|s| {
                s.stops
                    .iter()
                    .filter(|x| x.fdb_entries == n)
                    .map(|x| x.seconds)
            })
            .collect();
        if !vals.is_empty() {
            rows.push(Row::new(
                &format!("fwd_stop_s_fdb_{n}"),
                &format!(
                    "7. vxlan-fwd SIGINT → exit (both hosts), {}",
                    if n == 0 {
                        "no filler".into()
                    } else {
                        format!("FDB {}", scale_label(n))
                    }
                ),
                "s",
                Vec::new(),
                vals,
            ));
        }
    }
    let mem_cases: Vec<String> = rounds
        .iter()
        .filter_map(|r| r.get(fwd))
        .flat_map(|s| s.memory.iter().map(|m| m.case.clone()))
        .fold(Vec::new(), |mut v, c| {
            if !v.contains(&c) {
                v.push(c);
            }
            v
        });
    for case in mem_cases {
        let find = |s: &SetupResult| s.memory.iter().find(|m| m.case == case).cloned();
        let cap = rounds
            .iter()
            .filter_map(|r| r.get(fwd))
            .find_map(&find)
            .and_then(|m| m.max_fdb)
            .map_or_else(String::new, |c| format!(", --max-fdb {c}"));
        rows.push(both(
            &format!("map_memory_{case}"),
            &format!("7. BPF map memory (memlock), {case}{cap}"),
            "MiB",
            &|s| find(s).map(|m| m.map_memlock as f64 / 1048576.0),
        ));
        rows.push(both(
            &format!("rss_{case}"),
            &format!("7. vxlan-fwd RSS, {case}{cap}"),
            "MiB",
            &|s| find(s).map(|m| m.rss as f64 / 1048576.0),
        ));
    }
    rows
}

fn panels(plan: &Plan, rows: &[Row]) -> Vec<Panel> {
    let find = |key: &str| rows.iter().find(|r| r.key == key);
    // Kernel and vxlan-fwd from `key`, no tunnel from `nt` (if any).
    let group = |label: &str, key: &str, nt: Option<&str>| Group {
        label: label.into(),
        kernel: find(key).and_then(|r| r.kernel),
        fwd: find(key).and_then(|r| r.vxlan_fwd),
        no_tunnel: nt.and_then(find).and_then(|r| r.no_tunnel),
    };
    let mut rate = vec![
        group(
            "hooks off",
            "rate_received",
            Some("no_tunnel_rate_received"),
        ),
        group(
            "br_netfilter on",
            "nf_rate_received",
            Some("nf_rate_received"),
        ),
    ];
    for &n in &plan.fdb_sizes {
        rate.push(group(
            &format!("FDB {}", scale_label(n)),
            &format!("rate_received_fdb_{n}"),
            None,
        ));
    }
    vec![
        Panel {
            title: "64-byte frames c1 -> c2, received".into(),
            y_label: "Mpps".into(),
            groups: rate,
        },
        Panel {
            title: "TCP c1 -> c2 (iperf3)".into(),
            y_label: "Gbit/s".into(),
            groups: vec![
                group("1 flow", "tcp_1", Some("no_tunnel_tcp_1")),
                group("4 flows", "tcp_4", Some("no_tunnel_tcp_4")),
                group("1 flow, nf on", "nf_tcp_1", Some("nf_tcp_1")),
                group("4 flows, nf on", "nf_tcp_4", Some("nf_tcp_4")),
            ],
        },
    ]
}

fn definitions(plan: &Plan) -> Vec<String> {
    let big = plan
        .fdb_sizes
        .last()
        .copied()
        .map_or_else(String::new, scale_label);
    vec![
        "setups: kernel = the seed's vxlan device (remote, local, dev eth0, dstport 4789) and a \
         Linux bridge with vxlan0 and veth0 in each host; vxlan-fwd = vxlan-fwd --iface eth0 \
         --vni 42 --remote PEER --port veth0 in each host, no host bridge; no tunnel = a Linux \
         bridge with veth0 and eth0 in each host, the containers on the underlay's L2 segment \
         (the same hops: container veth, host bridge or program, host uplink, underlay switch \
         bridge, and back). Containers: MTU 1450 in every setup."
            .into(),
        "netfilter: before each setup `bridge-nf-call-{iptables,ip6tables,arptables}` is \
         written in every namespace of the lab (switch, both hosts, both containers): 0 for \
         sections 1, 3, 4 and figures 5-7 (kernel at its best), 1 for section 2 (as on Docker \
         and Kubernetes nodes, where br_netfilter is loaded and on). No iptables rules exist in \
         any namespace."
            .into(),
        "64-byte frame: the classic minimum Ethernet frame with its 4-byte FCS, i.e. UDP payload \
         18 bytes: a 60-byte inner frame as the kernel sees it (veths carry no FCS), 110 bytes \
         once encapsulated"
            .into(),
        format!(
            "sent: what the generator's sendmmsg calls accepted (xtask bench-gen in c1, 2 \
             threads x 4 UDP flows, batches of 64); received: c2's eth0 rx_packets over a {} s \
             window that opens {} ms after the generator starts. On this machine both the \
             generator and the whole forwarding path share {} CPUs. In c2 a UDP socket \
             (xtask bench-sink) is bound to the port and never read, so the receiver drops at \
             a full socket queue instead of building an ICMP port unreachable per datagram \
             (the same for every setup).",
            plan.seconds,
            WARMUP.as_millis(),
            std::thread::available_parallelism().map_or(0, |n| n.get())
        ),
        "TCP: iperf3 -c c2 -t S -J [-P 4] in c1, end.sum_received.bits_per_second".into(),
        "4. receive modes: vxlan-fwd --xdp-mode auto (TC decapsulation on a veth uplink, the \
         default; the same runs as section 1), generic (skb-mode XDP) and native (the veth \
         driver's XDP), hooks off; ratios against the section-1 kernel and section-3 no-tunnel \
         figures of the same rounds"
            .into(),
        "5. BPF_PROG_TEST_RUN in a private network namespace: mean of the kernel-reported \
         duration of single runs (repeat=1; the programs change the buffer, so a repeat would \
         run another path); it includes the kernel's timing overhead, shown by the floor \
         (`return XDP_DROP`) measured the same way and with one call of repeat=N, and by the \
         TC floor (a TC program `return TC_ACT_SHOT`, single runs). Flood copies leave through \
         a veth whose peer's stack drops them."
            .into(),
        format!(
            "6. FDB filler (hooks off): N static entries (02:fb:..) behind the peer VTEP in each \
             host: for the kernel in vxlan0's FDB (`self permanent`) and in br0's (`master \
             static`); for vxlan-fwd in its FDB map, written directly; {big} entries need \
             vxlan-fwd --max-fdb N+100k, so it is restarted for that case"
        ),
        "7. vxlan-fwd on h1: sum of the kernel's `memlock` (fdinfo) of the BPF maps it holds, \
         and its VmRSS; the kernel setup's own memory is not measured (n/a)"
            .into(),
        "8. over an IPv6 underlay: the same two setups with VXLAN over IPv6 between the hosts' \
         fd00:57::1 and fd00:57::2 (kernel: vxlan0 with `local`/`remote` IPv6; vxlan-fwd: \
         --remote fd00:57::N), hooks off, containers and their ports at MTU 1430 (1500 - 70) \
         for these runs only; no tunnel as in section 3, for scale"
            .into(),
        "9. zero-work bound (hooks off): in each host a TC program on veth0 that only redirects \
         every frame out of eth0 (bpf_redirect) and one on eth0 that only hands every frame to \
         the container (bpf_redirect_peer), four instructions each, attached as tcx links; no \
         tunnel, no lookups, no checks: the hops vxlan-fwd uses with nothing done on them, the \
         most any TC datapath could reach here. The share row is vxlan-fwd's figure over the \
         bound's, per round (median over the rounds)."
            .into(),
        "10. minimal tunnel (hooks off): in each host a TC program on veth0 that only \
         encapsulates (bpf_skb_adjust_room +50 with the encapsulation flags, the inner \
         Ethernet header moved behind the room, fixed outer Ethernet/IPv4/UDP/VXLAN headers \
         with the frame's lengths and IPv4 checksum, bpf_redirect out of eth0) and one on eth0 \
         that only decapsulates (outer IPv4, UDP, port 4789: inner Ethernet header to the \
         front, bpf_skb_adjust_room -50, bpf_redirect_peer); hand-assembled, tcx links; no \
         lookups, no learning, no validation beyond those fields; frames adjust_room cannot \
         encapsulate (ARP) cross as they are. What every VXLAN datapath built from TC programs \
         pays here; the share row is vxlan-fwd's figure over it, per round."
            .into(),
    ]
}

// ---------------------------------------------------------------- processes

/// A helper process of the bench (generator, sink, iperf3, `bridge
/// -batch`): the lab's [`Process`] (output captured, stopped when
/// dropped), with errors for `?`.
struct Bg(Process);

impl Bg {
    fn spawn(cmd: Command, what: &str) -> Result<Self> {
        Process::try_spawn(cmd, what).map(Self)
    }

    fn check_running(&mut self) -> Result<()> {
        if !self.0.is_running() {
            let out = self.0.wait(Duration::ZERO);
            bail!(
                "{} exited early ({}): {}",
                self.0.label(),
                out.status,
                out.stderr.trim()
            );
        }
        Ok(())
    }

    fn wait_line(&mut self, timeout: Duration, pred: impl Fn(&str) -> bool) -> Result<String> {
        self.0.wait_for_line(timeout, pred).map_err(|why| {
            anyhow!(
                "{} was not ready ({why}): {}",
                self.0.label(),
                self.0.stderr().trim()
            )
        })
    }

    /// Waits for the exit (stopping it after `limit`: an error), whatever
    /// the status; returns it, the stdout lines and stderr.
    fn finish_any(mut self, limit: Duration) -> Result<(ExitStatus, Vec<String>, String)> {
        let out = self.0.wait(limit);
        if out.timed_out {
            bail!(
                "{} still running after {} s; stopped it",
                self.0.label(),
                limit.as_secs()
            );
        }
        let lines = out.stdout.lines().map(str::to_owned).collect();
        Ok((out.status, lines, out.stderr.trim().to_owned()))
    }

    /// Waits for the exit; an error unless it exits 0.
    fn finish(self, limit: Duration) -> Result<(ExitStatus, Vec<String>, String)> {
        let what = self.0.label().to_owned();
        let (status, lines, stderr) = self.finish_any(limit)?;
        if !status.success() {
            bail!("{what} exited with {status}: {stderr}");
        }
        Ok((status, lines, stderr))
    }
}
