//! Scenarios the end-to-end test files share: the seed hosts with one
//! container each (two or three of them), the forwarders on them started
//! the same way, and the tutorial's kernel VTEP as a peer. The checks the
//! files share are in [`crate::checks`], traffic makers in
//! [`crate::traffic`].
//!
//! Every scenario takes a [`Setup`]: how the forwarders receive on the
//! underlay and which family the underlay speaks. Today there is one of
//! each (the forwarder picks its XDP mode per interface; IPv4), so
//! `Setup::default()` is what every test uses; a mode matrix (issue #12)
//! adds variants to [`RxMode`] and [`Family`] and runs the same test body
//! once per [`Setup`], without copying it.
//!
//! ```no_run
//! use vxlan_tests::{checks::assert_ping, scenario::Setup};
//!
//! let setup = Setup::default();
//! let topo = setup.two_hosts("vxt-doc-");
//! let (f1, f2) = setup.pair(&topo, &[], &[]);
//! assert_ping(&topo.container("c1").ns, "172.18.1.3", 3, &[&f1, &f2]);
//! ```

use crate::{
    Container, Forwarder, H1_IP, H2_IP, H3_IP, Host, Topology, TopologyBuilder,
    fdb_harness::{Fwd, TempDir},
};

/// How the forwarders of a scenario receive on the underlay.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum RxMode {
    /// No `--xdp-mode` flag: the forwarder picks per interface (on the
    /// tests' veth uplinks: no XDP, decapsulation in TC).
    #[default]
    Auto,
    /// `--xdp-mode native`: XDP in the veth driver.
    Native,
    /// `--xdp-mode generic`: skb-mode XDP.
    Generic,
}

impl RxMode {
    /// Every receive mode, for tests that run once per mode: TC (what
    /// `auto` picks on veth, the same as `off`), native and skb-mode XDP.
    pub const MATRIX: [RxMode; 3] = [RxMode::Auto, RxMode::Native, RxMode::Generic];

    /// The `--xdp-mode` flags of this mode.
    pub fn flags(self) -> &'static [&'static str] {
        match self {
            RxMode::Auto => &[],
            RxMode::Native => &["--xdp-mode", "native"],
            RxMode::Generic => &["--xdp-mode", "generic"],
        }
    }

    /// A short name for namespace prefixes and messages.
    pub fn name(self) -> &'static str {
        match self {
            RxMode::Auto => "tc",
            RxMode::Native => "native",
            RxMode::Generic => "generic",
        }
    }
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
/// that one test body can run once per receive mode and family.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Setup {
    pub mode: RxMode,
    pub family: Family,
}

impl Setup {
    /// The set-ups of the mode matrix: every [`RxMode::MATRIX`] mode on an
    /// IPv4 underlay.
    pub fn matrix() -> impl Iterator<Item = Setup> {
        RxMode::MATRIX.into_iter().map(|mode| Setup {
            mode,
            family: Family::V4,
        })
    }

    /// `base` with the mode's name, for namespace prefixes (`vxt-kbr-` ->
    /// `vxt-kbr-native-`): each mode's run gets namespaces of its own.
    pub fn prefix(&self, base: &str) -> String {
        format!("{base}{}-", self.mode.name())
    }
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
        v.extend_from_slice(self.mode.flags());
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
