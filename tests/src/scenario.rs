//! Scenarios the end-to-end test files share: the seed hosts with one
//! container each (two or three of them), the forwarders on them started
//! the same way, and the tutorial's kernel VTEP as a peer. The checks the
//! files share are in [`crate::checks`], traffic makers in
//! [`crate::traffic`].
//!
//! Every scenario takes a [`Setup`]: how the forwarders receive on the
//! underlay and which family the underlay speaks ([`Family`]: VXLAN over
//! IPv4 or over IPv6; not to be confused with IPv6 *inside* the tunnel,
//! [`crate::TopologyBuilder::ipv6`]). `Setup::default()` is TC receive on
//! an IPv4 underlay; the mode matrix runs the same test body once per
//! [`Setup`], without copying it, and [`Setup::V6`] runs it over IPv6.
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
    topo::{CONTAINER_MTU, CONTAINER_MTU6, H1_IP6, H2_IP6, H3_IP6},
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

/// The underlay's address family: what VXLAN is carried over. (The
/// overlay's IPv6, inner IPv6 traffic between containers, is another
/// matter: [`crate::TopologyBuilder::ipv6`].)
#[non_exhaustive]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Family {
    /// The tutorial's 192.168.57.0/24.
    #[default]
    V4,
    /// VXLAN over IPv6: `h<N>` also has `fd00:57::N/64` on `eth0` (the
    /// IPv4 addresses stay, unused by VXLAN), forwarders and kernel VTEPs
    /// get IPv6 remotes and groups; 70 bytes of overhead, so containers
    /// get MTU 1430.
    V6,
}

impl Family {
    /// Bytes of VXLAN encapsulation over this family (outer Ethernet, IP,
    /// UDP, VXLAN).
    pub fn overhead(self) -> u32 {
        match self {
            Family::V4 => 50,
            Family::V6 => 70,
        }
    }

    /// The containers' MTU: 1500 minus [`Family::overhead`].
    pub fn container_mtu(self) -> u32 {
        match self {
            Family::V4 => CONTAINER_MTU,
            Family::V6 => CONTAINER_MTU6,
        }
    }

    /// A short name for namespace prefixes and messages.
    pub fn name(self) -> &'static str {
        match self {
            Family::V4 => "ipv4",
            Family::V6 => "ipv6",
        }
    }
}

/// What a scenario is run with; threaded through every builder below so
/// that one test body can run once per receive mode and family.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Setup {
    pub mode: RxMode,
    pub family: Family,
}

impl Setup {
    /// TC receive (`auto` on veth) over an IPv6 underlay.
    pub const V6: Setup = Setup {
        mode: RxMode::Auto,
        family: Family::V6,
    };

    /// The set-ups of the mode matrix: every [`RxMode::MATRIX`] mode on an
    /// IPv4 underlay.
    pub fn matrix() -> impl Iterator<Item = Setup> {
        RxMode::MATRIX.into_iter().map(|mode| Setup {
            mode,
            family: Family::V4,
        })
    }

    /// The mode matrix over underlay family `family`: every
    /// [`RxMode::MATRIX`] mode.
    pub fn matrix_of(family: Family) -> impl Iterator<Item = Setup> {
        RxMode::MATRIX
            .into_iter()
            .map(move |mode| Setup { mode, family })
    }

    /// `base` with the mode's name, for namespace prefixes (`vxt-kbr-` ->
    /// `vxt-kbr-native-`; over IPv6 `vxt-kbr-native6-`): each mode's run
    /// gets namespaces of its own.
    pub fn prefix(&self, base: &str) -> String {
        let fam = match self.family {
            Family::V4 => "",
            Family::V6 => "6",
        };
        format!("{base}{}{fam}-", self.mode.name())
    }
}

/// Underlay address of a fourth host (`h4`), next to the topology's three.
pub const H4_IP: &str = "192.168.57.62";
/// Its address on an IPv6 underlay.
pub const H4_IP6: &str = "fd00:57::4";
/// Multicast groups of the group-mode scenarios, per underlay family.
pub const GROUP4: &str = "239.1.1.1";
pub const GROUP6: &str = "ff05::100";

/// Container addresses of the scenarios: `c<n>` has `172.18.1.<n + 1>`.
pub const C1_IP: &str = "172.18.1.2";
pub const C2_IP: &str = "172.18.1.3";
pub const C3_IP: &str = "172.18.1.4";
pub const C4_IP: &str = "172.18.1.5";
/// The all-zeros MAC of default remotes (flood entries).
pub const ZERO_MAC: &str = "00:00:00:00:00:00";

impl Setup {
    /// Underlay address of host `name` (`h1` .. `h4`) in this set-up's
    /// family: what its peers' `--remote` says, its VTEP address.
    pub fn host_ip(&self, name: &str) -> &'static str {
        match (self.family, name) {
            (Family::V4, "h1") => H1_IP,
            (Family::V4, "h2") => H2_IP,
            (Family::V4, "h3") => H3_IP,
            (Family::V4, "h4") => H4_IP,
            (Family::V6, "h1") => H1_IP6,
            (Family::V6, "h2") => H2_IP6,
            (Family::V6, "h3") => H3_IP6,
            (Family::V6, "h4") => H4_IP6,
            _ => panic!("no {} underlay address for host {name}", self.family.name()),
        }
    }

    /// The IPv4 underlay address of host `name`, whatever the family (every
    /// host has one: the harness's own checks use it).
    pub fn host_ip4(&self, name: &str) -> &'static str {
        Setup::default().host_ip(name)
    }

    /// A multicast group of this family for group mode: `239.1.1.1` or
    /// `ff05::100`.
    pub fn group(&self) -> &'static str {
        match self.family {
            Family::V4 => GROUP4,
            Family::V6 => GROUP6,
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

    /// Hosts `h1`..`h<n>` on the underlay switch, no containers; over
    /// IPv6 each also has its IPv6 underlay address.
    pub fn hosts(&self, prefix: &str, n: usize) -> TopologyBuilder {
        (1..=n).fold(Topology::builder(prefix), |b, i| {
            let name = format!("h{i}");
            let b = b.host(&name, self.host_ip4(&name));
            match self.family {
                Family::V4 => b,
                Family::V6 => b.host_ip6(&name, self.host_ip(&name)),
            }
        })
    }

    /// [`Setup::hosts`] with container `c<i>` on `h<i>` (port `veth0`,
    /// `172.18.1.<i + 1>`, MTU [`Family::container_mtu`]): the two- and
    /// three-host set-up of most tests. Add more containers to the builder
    /// as needed.
    pub fn hosts_with_containers(&self, prefix: &str, n: usize) -> TopologyBuilder {
        (1..=n).fold(self.hosts(prefix, n), |b, i| {
            b.container_with_mtu(
                &format!("c{i}"),
                &format!("h{i}"),
                "veth0",
                &format!("172.18.1.{}", i + 1),
                self.family.container_mtu(),
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
    /// `vxlan0` (VNI 42, port 4789) towards host `remote` (over this
    /// set-up's family: `local fd00:57::2 remote fd00:57::1` over IPv6),
    /// bridged with the container port `veth0` in `br0`.
    pub fn kernel_bridge_peer(&self, host: &Host, remote: &str) {
        host.add_kernel_vxlan("vxlan0", self.host_ip(remote));
        host.add_bridge("br0", &["vxlan0", "veth0"]);
    }

    /// A kernel VTEP member of group [`Setup::group`] on `host` (`vxlan0`,
    /// VNI 42, `group <g> dev eth0`), bridged with `veth0` in `br0`.
    pub fn kernel_group_peer(&self, host: &Host) {
        host.kernel_vtep("vxlan0")
            .group(self.group())
            .bridge("br0", &["veth0"])
            .try_create()
            .unwrap_or_else(|e| panic!("{e:#}"));
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
