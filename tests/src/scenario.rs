//! Scenarios the end-to-end test files share: the seed hosts with one
//! container each, the forwarders on them started the same way, and the
//! checks every file made with its own copy (strict connectivity, "no
//! reply" with its reason, counter changes, failed one-shot commands).
//!
//! Every scenario takes a [`Setup`]: how the forwarders receive on the
//! underlay and which family the underlay speaks. Today there is one of
//! each (the forwarder picks its XDP mode per interface; IPv4), so
//! `Setup::default()` is what every test uses; a mode matrix (issue #12)
//! adds variants to [`RxMode`] and [`Family`] and runs the same test body
//! once per [`Setup`], without copying it.
//!
//! ```no_run
//! use vxlan_tests::scenario::{Setup, assert_ping};
//!
//! let setup = Setup::default();
//! let topo = setup.two_hosts("vxt-doc-");
//! let (f1, f2) = setup.pair(&topo, &[], &[]);
//! assert_ping(&topo.container("c1").ns, "172.18.1.3", 3, &[&f1, &f2]);
//! ```

use std::{collections::BTreeMap, time::Duration};

use crate::{
    Container, Forwarder, H1_IP, H2_IP, H3_IP, Host, NetNs, Output, Topology, TopologyBuilder,
    fdb_harness::{Fwd, TempDir, experimental_frame, random_unicast_macs},
    ping_result, ping_strict, run_with_timeout, wait_until,
};

/// How the forwarders of a scenario receive on the underlay.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum RxMode {
    /// No `--xdp-mode` flag: the forwarder picks per interface.
    #[default]
    Auto,
}

/// The underlay's address family.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Family {
    /// The tutorial's 192.168.57.0/24.
    #[default]
    V4,
}

/// What a scenario is run with; threaded through every builder below so
/// that one test body can later run once per receive mode and family.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Setup {
    pub mode: RxMode,
    pub family: Family,
}

/// Underlay address of a fourth host (`h4`), next to the topology's three.
pub const H4_IP: &str = "192.168.57.62";

/// Container addresses of the scenarios: `c<n>` has `172.18.1.<n + 1>`.
pub const C1_IP: &str = "172.18.1.2";
pub const C2_IP: &str = "172.18.1.3";
pub const C3_IP: &str = "172.18.1.4";
pub const C4_IP: &str = "172.18.1.5";
/// The all-zeros MAC of default remotes (flood entries).
pub const ZERO_MAC: &str = "00:00:00:00:00:00";

impl Setup {
    /// Underlay address of host `name` (`h1` .. `h4`).
    pub fn host_ip(&self, name: &str) -> &'static str {
        match (self.family, name) {
            (Family::V4, "h1") => H1_IP,
            (Family::V4, "h2") => H2_IP,
            (Family::V4, "h3") => H3_IP,
            (Family::V4, "h4") => H4_IP,
            _ => panic!("no underlay address for host {name}"),
        }
    }

    /// The flags every forwarder of this set-up gets: `--iface eth0 --vni
    /// 42`, then those of the receive mode, then `extra`.
    pub fn args<'a>(&self, extra: &[&'a str]) -> Vec<&'a str> {
        let mut v = vec!["--iface", "eth0", "--vni", "42"];
        match self.mode {
            RxMode::Auto => {}
        }
        v.extend_from_slice(extra);
        v
    }

    /// Forwarder flags of host `me` in a point-to-point fleet of `hosts`:
    /// [`Setup::args`] with `--port veth0` and `--remote` for every other
    /// host, then `extra`.
    pub fn peer_args<'a>(&self, me: &str, hosts: &[&str], extra: &[&'a str]) -> Vec<&'a str> {
        let mut v = self.args(&["--port", "veth0"]);
        for h in hosts.iter().filter(|h| **h != me) {
            v.extend(["--remote", self.host_ip(h)]);
        }
        v.extend_from_slice(extra);
        v
    }

    /// Hosts `h1`..`h<n>` on the underlay switch, no containers.
    pub fn hosts(&self, prefix: &str, n: usize) -> TopologyBuilder {
        (1..=n).fold(Topology::builder(prefix), |b, i| {
            let name = format!("h{i}");
            b.host(&name, self.host_ip(&name))
        })
    }

    /// [`Setup::hosts`] with container `c<i>` on `h<i>` (port `veth0`,
    /// `172.18.1.<i + 1>`): the two- and three-host set-up of most tests.
    /// Add more containers to the builder as needed.
    pub fn hosts_with_containers(&self, prefix: &str, n: usize) -> TopologyBuilder {
        (1..=n).fold(self.hosts(prefix, n), |b, i| {
            b.container(
                &format!("c{i}"),
                &format!("h{i}"),
                "veth0",
                &format!("172.18.1.{}", i + 1),
            )
        })
    }

    /// The two-host set-up, built and its underlay checked: `h1` with `c1`,
    /// `h2` with `c2` (both on port `veth0`).
    pub fn two_hosts(&self, prefix: &str) -> Topology {
        self.hosts_with_containers(prefix, 2).build_checked()
    }

    /// The three-host set-up: [`Setup::two_hosts`] and `h3` with `c3`.
    pub fn three_hosts(&self, prefix: &str) -> Topology {
        self.hosts_with_containers(prefix, 3).build_checked()
    }

    /// Forwarders on `h1` and `h2`, each with the other as its remote and
    /// `veth0` as its port; `extra1`/`extra2` are appended to h1's/h2's
    /// flags.
    pub fn pair(
        &self,
        topo: &Topology,
        extra1: &[&str],
        extra2: &[&str],
    ) -> (Forwarder, Forwarder) {
        let start = |h: &str, extra: &[&str]| {
            Forwarder::start(&topo.host(h).ns, &self.peer_args(h, &["h1", "h2"], extra))
        };
        (start("h1", extra1), start("h2", extra2))
    }

    /// [`Setup::pair`] with state directory `dir` (the `fdb` and control
    /// socket tests).
    pub fn pair_fwd(
        &self,
        topo: &Topology,
        dir: &TempDir,
        extra1: &[&str],
        extra2: &[&str],
    ) -> (Fwd, Fwd) {
        let start = |h: &str, extra: &[&str]| {
            Fwd::start(
                &topo.host(h).ns,
                &self.peer_args(h, &["h1", "h2"], extra),
                dir.path(),
            )
        };
        (start("h1", extra1), start("h2", extra2))
    }
}

impl Setup {
    /// The tutorial's kernel VTEP on `host` instead of a forwarder:
    /// `vxlan0` (VNI 42, port 4789) towards host `remote`, bridged with
    /// the container port `veth0` in `br0`.
    pub fn kernel_bridge_peer(&self, host: &Host, remote: &str) {
        host.add_kernel_vxlan("vxlan0", self.host_ip(remote));
        host.add_bridge("br0", &["vxlan0", "veth0"]);
    }
}

/// Building a topology and checking its underlay in one step.
pub trait BuildChecked {
    /// Builds the topology and asserts that every host reaches every other
    /// over the underlay.
    fn build_checked(self) -> Topology;
}

impl BuildChecked for TopologyBuilder {
    fn build_checked(self) -> Topology {
        let topo = self.build();
        topo.check_underlay();
        topo
    }
}

/// A running forwarder that can describe its state for a failure message.
pub trait Diagnose {
    /// Counters, FDB and links, as text.
    fn diagnostics(&self) -> String;
}

impl Diagnose for Forwarder {
    fn diagnostics(&self) -> String {
        Forwarder::diagnostics(self)
    }
}

impl Diagnose for Fwd {
    fn diagnostics(&self) -> String {
        Fwd::diagnostics(self)
    }
}

/// The diagnostics of each of `fwds`, one after the other.
pub fn diagnostics<D: Diagnose>(fwds: &[&D]) -> String {
    fwds.iter()
        .map(|f| f.diagnostics())
        .collect::<Vec<_>>()
        .join("\n")
}

/// Strict connectivity: one warm-up ping, then every one of `count` pings
/// from `from` to `ip` answered; the failure shows `fwds`' diagnostics.
pub fn assert_ping<D: Diagnose>(from: &NetNs, ip: &str, count: u32, fwds: &[&D]) {
    let r = ping_strict(from, ip, count);
    if !r.ok {
        panic!(
            "ping {} -> {ip} failed:\n{}\n{}",
            from.name(),
            r.output,
            diagnostics(fwds)
        );
    }
}

/// Asserts that `count` pings from `from` to `ip` get no reply at all,
/// because `why`. Only meaningful next to a positive control (a path that
/// does answer) in the same test.
pub fn assert_no_ping<D: Diagnose>(from: &NetNs, ip: &str, count: u32, why: &str, fwds: &[&D]) {
    let r = ping_result(from, ip, count);
    if r.received != 0 || r.ok {
        panic!(
            "ping {} -> {ip} got {} replies, but {why}:\n{}\n{}",
            from.name(),
            r.received,
            r.output,
            diagnostics(fwds)
        );
    }
}

/// Every container of `cs` pings every other one ([`assert_ping`], 2
/// pings each).
pub fn ping_all<D: Diagnose>(cs: &[&Container], fwds: &[&D]) {
    for a in cs {
        for b in cs {
            if a.name != b.name {
                assert_ping(&a.ns, &b.ip.to_string(), 2, fwds);
            }
        }
    }
}

/// Nonzero changes of the counters from `before` to `after`.
pub fn counters_delta(
    before: &BTreeMap<String, u64>,
    after: &BTreeMap<String, u64>,
) -> BTreeMap<String, i128> {
    after
        .iter()
        .map(|(k, v)| {
            (
                k.clone(),
                i128::from(*v) - i128::from(before.get(k).copied().unwrap_or(0)),
            )
        })
        .filter(|(_, d)| *d != 0)
        .collect()
}

/// Change of counter `k` from `before` to `after` (panics if either lacks
/// it).
pub fn delta(before: &BTreeMap<String, u64>, after: &BTreeMap<String, u64>, k: &str) -> i128 {
    let get = |m: &BTreeMap<String, u64>| {
        *m.get(k)
            .unwrap_or_else(|| panic!("no counter `{k}`: {m:?}"))
    };
    i128::from(get(after)) - i128::from(get(before))
}

/// `(transmitted, received)` from ping's summary line, if it printed one.
pub fn ping_summary(text: &str) -> Option<(u32, u32)> {
    text.lines()
        .filter(|l| l.contains("packets transmitted"))
        .find_map(|line| {
            let nums: Vec<u32> = line
                .split(',')
                .filter_map(|p| p.split_whitespace().next()?.parse().ok())
                .collect();
            (nums.len() >= 2).then(|| (nums[0], nums[1]))
        })
}

/// Asserts `out` is a failed one-shot command: non-zero exit, exactly one
/// `vxlan-fwd: error:` line on stderr containing every needle, no panic.
pub fn assert_cmd_error(out: &Output, what: &str, needles: &[&str]) {
    assert!(!out.timed_out, "{what}: hung: {out}");
    assert!(!out.success(), "{what}: succeeded: {out}");
    assert!(!out.combined().contains("panicked"), "{what}: panic: {out}");
    assert_one_error_line(out, what);
    for n in needles {
        assert!(
            out.stderr.contains(n),
            "{what}: error does not mention `{n}`: {out}"
        );
    }
}

/// Asserts `out`'s stderr is exactly one `vxlan-fwd: error: ...` line
/// (blank lines aside).
pub fn assert_one_error_line(out: &Output, what: &str) {
    let lines: Vec<&str> = out
        .stderr
        .lines()
        .filter(|l| !l.trim().is_empty())
        .collect();
    assert!(
        lines.len() == 1 && lines[0].starts_with("vxlan-fwd: error: "),
        "{what}: expected one `vxlan-fwd: error: ...` line on stderr: {out}"
    );
}

/// Gives every container of `cs` a permanent neighbour entry for every
/// other one, so that no ARP (and no neighbour probe some seconds after a
/// ping) sends frames the test did not ask for.
pub fn pin_neighbours(cs: &[&Container]) {
    for a in cs {
        for b in cs {
            if a.name != b.name {
                let (ip, mac) = (b.ip.to_string(), b.mac());
                #[rustfmt::skip]
                a.ns.ip(["neigh", "replace", &ip, "lladdr", &mac, "nud", "permanent", "dev", "eth0"]);
            }
        }
    }
}

/// Several hosts or containers of a topology at once, by name:
/// `let [h1, h2] = topo.pick_hosts(["h1", "h2"]);`.
pub trait Pick {
    /// The hosts named `names`, in that order (panics on an unknown name).
    fn pick_hosts<const N: usize>(&self, names: [&str; N]) -> [&Host; N];
    /// The containers named `names`, in that order.
    fn pick_containers<const N: usize>(&self, names: [&str; N]) -> [&Container; N];
}

impl Pick for Topology {
    fn pick_hosts<const N: usize>(&self, names: [&str; N]) -> [&Host; N] {
        names.map(|n| self.host(n))
    }

    fn pick_containers<const N: usize>(&self, names: [&str; N]) -> [&Container; N] {
        names.map(|n| self.container(n))
    }
}

/// What a forwarder left behind in `ns`, one line each: an XDP program on
/// the uplink `eth0`, tc ingress filters on any of `devs`. Empty when
/// nothing (after a clean stop or a failed start).
pub fn leftovers(ns: &NetNs, devs: &[&str]) -> Vec<String> {
    let mut problems = Vec::new();
    if let Some(id) = ns.xdp_prog_id("eth0") {
        problems.push(format!("XDP program {id} on eth0"));
    }
    let details = ns.ip(["-d", "link", "show", "dev", "eth0"]);
    if details.contains("xdp") {
        problems.push(format!("XDP on eth0:\n{details}"));
    }
    for dev in devs {
        let tc = ns.run("tc", ["filter", "show", "dev", dev, "ingress"]);
        if !tc.trim().is_empty() {
            problems.push(format!("tc ingress filters on {dev}:\n{tc}"));
        }
    }
    problems
}

/// Runs `iperf3 -J` for 3 s from `client` to `server` (`reverse`: the
/// server sends): starts the server (one test, bound to its address),
/// waits until it listens, runs the client (at most 30 s) and returns the
/// client's and the server's output.
pub fn iperf3(client: &Container, server: &Container, reverse: bool) -> (Output, Output) {
    let sip = server.ip.to_string();
    let mut srv = server.ns.spawn("iperf3", ["-s", "-1", "-B", &sip]);
    let listening = wait_until(Duration::from_secs(10), Duration::from_millis(50), || {
        !server
            .ns
            .exec("ss", ["-Htln", "sport", "=", ":5201"])
            .stdout
            .trim()
            .is_empty()
    });
    assert!(
        listening,
        "iperf3 server in {} did not listen: {}",
        server.name,
        srv.stderr()
    );
    let mut cmd = client.ns.command("iperf3");
    cmd.args(["-c", &sip, "-t", "3", "-J", "--connect-timeout", "5000"]);
    if reverse {
        cmd.arg("-R");
    }
    let out = run_with_timeout(cmd, Duration::from_secs(30));
    let srv_out = srv.wait(Duration::from_secs(5));
    (out, srv_out)
}

/// `n` broadcast frames (experimental EtherType) from `n` new random
/// unicast source MACs: a learning flood.
pub fn flood_frames(n: usize) -> Vec<Vec<u8>> {
    random_unicast_macs(n)
        .iter()
        .map(|src| experimental_frame([0xff; 6], *src))
        .collect()
}
