//! The seed topology of the VXLAN tutorial, in network namespaces.
//!
//! ```text
//!   <p>c1          <p>c3               <p>c2
//!   eth0 172.18.1.x/24, mtu 1450 (containers)
//!    |              |                    |
//!   veth0          veth1               veth0          (host side, mtu 1450)
//!   <p>h1 eth0 192.168.57.50/24      <p>h2 eth0 192.168.57.54/24
//!          \                           /
//!           h1 -------- br0 -------- h2                <p>sw (underlay switch)
//! ```
//!
//! Namespaces are named `<prefix><name>`: `<prefix>sw` for the switch,
//! `<prefix>h1`, `<prefix>c1`, ... Interface names inside them are the
//! tutorial's (`eth0`, `veth0`, `br0`), so no name leaves a namespace and
//! nothing in the root namespace is touched. Building first deletes stale
//! namespaces with the same prefix (an earlier run that was killed).
//!
//! IPv6 is disabled in every namespace by default: its router and neighbour
//! solicitations and MLD reports are multicast, which a VTEP floods, and
//! would make counter-based assertions racy.
//!
//! Two independent IPv6 switches, not to be confused:
//! - [`TopologyBuilder::ipv6`]: the *overlay* (containers, hosts' ports)
//!   keeps IPv6, for inner IPv6 traffic;
//! - [`TopologyBuilder::host_ip6`]: the *underlay*: the host's `eth0` also
//!   gets an IPv6 address (`fd00:57::N/64`, no duplicate address
//!   detection), and IPv6 is on for `eth0` only (interfaces created later
//!   in the host, such as ports, bridges and VXLAN devices, stay without
//!   it unless the overlay has it), so VXLAN can run over IPv6.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use anyhow::{Context as _, Result, anyhow, bail};

use crate::{
    lab,
    netns::{NetNs, delete_stale},
    util::{ipv4, ping_result, require_root},
};

/// The tutorial's VNI.
pub const VNI: u32 = 42;
/// Host uplink (underlay) interface.
pub const UPLINK: &str = "eth0";
/// Container interface.
pub const CONTAINER_IFACE: &str = "eth0";
/// The switch's bridge.
pub const SWITCH_BRIDGE: &str = "br0";
/// MTU of the container veths: 1500 - 50 bytes of VXLAN overhead.
pub const CONTAINER_MTU: u32 = 1450;
/// MTU of the container veths over an IPv6 underlay: 1500 - 70 bytes.
pub const CONTAINER_MTU6: u32 = 1430;
/// Underlay prefix length.
pub const PREFIX_LEN: u8 = 24;
/// Prefix length of the IPv6 underlay (`fd00:57::/64`).
pub const PREFIX_LEN6: u8 = 64;
/// Host side of a container's veth in the seed layouts.
pub const PORT: &str = "veth0";
/// The kernel VTEP's device in [`Host::kernel_vtep`].
pub const KERNEL_VXLAN: &str = "vxlan0";
pub const H1_IP: &str = "192.168.57.50";
pub const H2_IP: &str = "192.168.57.54";
pub const H3_IP: &str = "192.168.57.58";
/// The hosts' addresses on an IPv6 underlay ([`TopologyBuilder::host_ip6`]).
pub const H1_IP6: &str = "fd00:57::1";
pub const H2_IP6: &str = "fd00:57::2";
pub const H3_IP6: &str = "fd00:57::3";

/// A host: a namespace with `eth0` on the underlay switch.
#[derive(Debug)]
pub struct Host {
    /// Short name (`h1`); also the name of its port on the switch.
    pub name: String,
    pub ns: NetNs,
    /// Underlay IPv4 address of `eth0`.
    pub ip: Ipv4Addr,
    /// Underlay IPv6 address of `eth0`, on an IPv6 underlay
    /// ([`TopologyBuilder::host_ip6`]).
    pub ip6: Option<Ipv6Addr>,
}

/// A container: a namespace with `eth0` whose veth peer (`port`) is in a
/// host's namespace.
#[derive(Debug)]
pub struct Container {
    pub name: String,
    pub ns: NetNs,
    pub ip: Ipv4Addr,
    /// Short name of its host.
    pub host: String,
    /// Name of the veth peer in the host's namespace (`veth0`).
    pub port: String,
    pub mtu: u32,
}

impl Container {
    /// MAC address of the container's `eth0`.
    pub fn mac(&self) -> String {
        self.ns.mac(CONTAINER_IFACE)
    }
}

#[derive(Debug, Clone)]
struct ContainerSpec {
    name: String,
    host: String,
    port: String,
    ip: Ipv4Addr,
    mtu: u32,
}

/// Describes a topology; [`TopologyBuilder::build`] creates it.
#[derive(Debug, Clone)]
pub struct TopologyBuilder {
    prefix: String,
    hosts: Vec<(String, Ipv4Addr)>,
    /// IPv6 underlay addresses, by host name.
    host_ip6: Vec<(String, Ipv6Addr)>,
    containers: Vec<ContainerSpec>,
    ipv6: bool,
    announce: bool,
}

/// A host with its first container, by name and address: what `cargo
/// xtask demo|soak|bench` work with ([`Topology::sites`]).
#[derive(Debug, Clone)]
pub struct Site {
    /// The host's short name (`h1`).
    pub name: String,
    pub netns: String,
    pub underlay_ip: Ipv4Addr,
    /// Its IPv6 underlay address, on an IPv6 underlay
    /// ([`TopologyBuilder::host_ip6`]).
    pub underlay_ip6: Option<Ipv6Addr>,
    pub container_netns: String,
    pub container_ip: Ipv4Addr,
}

/// A created topology. Dropping it deletes its namespaces (containers, then
/// hosts, then the switch), killing the processes still inside them.
#[derive(Debug)]
pub struct Topology {
    pub prefix: String,
    // Field order is drop order.
    pub containers: Vec<Container>,
    pub hosts: Vec<Host>,
    pub switch: NetNs,
}

impl Topology {
    /// An empty description (switch only); add hosts and containers.
    /// `prefix` should be unique per test, e.g. `vxt-p2p-`.
    pub fn builder(prefix: &str) -> TopologyBuilder {
        assert!(
            prefix.len() <= 20,
            "namespace prefix '{prefix}' is too long"
        );
        TopologyBuilder {
            prefix: prefix.to_owned(),
            hosts: Vec::new(),
            host_ip6: Vec::new(),
            containers: Vec::new(),
            ipv6: false,
            announce: false,
        }
    }

    /// The tutorial's two hosts: `h1` (192.168.57.50) and `h2`
    /// (192.168.57.54); add containers as needed.
    pub fn seed(prefix: &str) -> TopologyBuilder {
        Self::builder(prefix).host("h1", H1_IP).host("h2", H2_IP)
    }

    /// The tutorial's point-to-point layout: [`Topology::seed`] with
    /// container `c1` (172.18.1.2) behind h1's `veth0` and `c2`
    /// (172.18.1.3) behind h2's.
    pub fn point_to_point(prefix: &str) -> TopologyBuilder {
        Self::bridged(prefix, 2)
    }

    /// `n` hosts on the switch, `hI` at 192.168.57.(46 + 4 I) (so h1, h2,
    /// h3 are the tutorial's), each with container `cI` (172.18.1.(1 + I))
    /// behind its `veth0`: the bridge and multicast-group layouts.
    pub fn bridged(prefix: &str, n: u8) -> TopologyBuilder {
        assert!((1..=50).contains(&n), "{n} hosts: 1 to 50");
        (1..=n).fold(Self::builder(prefix), |b, i| {
            let (host, container) = (format!("h{i}"), format!("c{i}"));
            b.host(&host, &Ipv4Addr::new(192, 168, 57, 46 + 4 * i).to_string())
                .container(
                    &container,
                    &host,
                    PORT,
                    &Ipv4Addr::new(172, 18, 1, 1 + i).to_string(),
                )
        })
    }

    /// Each host with its first container (hosts without one are left out).
    pub fn sites(&self) -> Vec<Site> {
        self.hosts
            .iter()
            .filter_map(|h| {
                let c = self.containers.iter().find(|c| c.host == h.name)?;
                Some(Site {
                    name: h.name.clone(),
                    netns: h.ns.name().to_owned(),
                    underlay_ip: h.ip,
                    underlay_ip6: h.ip6,
                    container_netns: c.ns.name().to_owned(),
                    container_ip: c.ip,
                })
            })
            .collect()
    }

    /// Names of all its namespaces: the switch, then hosts and containers.
    pub fn namespaces(&self) -> Vec<String> {
        std::iter::once(&self.switch)
            .chain(self.hosts.iter().map(|h| &h.ns))
            .chain(self.containers.iter().map(|c| &c.ns))
            .map(|ns| ns.name().to_owned())
            .collect()
    }

    /// Host `name`; panics if there is none.
    pub fn host(&self, name: &str) -> &Host {
        self.hosts
            .iter()
            .find(|h| h.name == name)
            .unwrap_or_else(|| panic!("no host {name} in the topology"))
    }

    /// Container `name`; panics if there is none.
    pub fn container(&self, name: &str) -> &Container {
        self.containers
            .iter()
            .find(|c| c.name == name)
            .unwrap_or_else(|| panic!("no container {name} in the topology"))
    }

    /// Asserts that every host reaches every other over the underlay (which
    /// also fills their ARP caches), over IPv6 too between hosts with an
    /// IPv6 underlay address (filling their neighbour caches).
    pub fn check_underlay(&self) {
        for a in &self.hosts {
            for b in &self.hosts {
                if a.name == b.name {
                    continue;
                }
                let mut targets = vec![IpAddr::V4(b.ip)];
                if let (Some(_), Some(ip6)) = (a.ip6, b.ip6) {
                    targets.push(IpAddr::V6(ip6));
                }
                for ip in targets {
                    let r = ping_result(&a.ns, ip.to_string(), 1);
                    assert!(
                        r.ok,
                        "underlay broken (harness bug?): {} -> {} ({ip}): {}",
                        a.name, b.name, r.output
                    );
                }
            }
        }
    }
}

impl TopologyBuilder {
    /// Adds host `name` with underlay address `ip` (/24) on `eth0`.
    pub fn host(mut self, name: &str, ip: &str) -> Self {
        self.hosts.push((name.to_owned(), ipv4(ip)));
        self
    }

    /// Gives host `name` (added with [`TopologyBuilder::host`]) the IPv6
    /// underlay address `ip6`/64 on `eth0` as well: an IPv6 underlay. Its
    /// `eth0` gets IPv6 without duplicate address detection (usable at
    /// once); the rest of the host stays without IPv6 unless
    /// [`TopologyBuilder::ipv6`] (the overlay) asks for it.
    pub fn host_ip6(mut self, name: &str, ip6: &str) -> Self {
        let ip6: Ipv6Addr = ip6
            .parse()
            .unwrap_or_else(|_| panic!("{ip6:?} is not an IPv6 address"));
        self.host_ip6.push((name.to_owned(), ip6));
        self
    }

    /// Adds container `name` with `eth0` `ip`/24 and MTU 1450, whose veth
    /// peer is `port` (MTU 1450, up, no address) in host `host`.
    pub fn container(self, name: &str, host: &str, port: &str, ip: &str) -> Self {
        self.container_with_mtu(name, host, port, ip, CONTAINER_MTU)
    }

    /// [`TopologyBuilder::container`] with another MTU (on both veth ends).
    pub fn container_with_mtu(
        mut self,
        name: &str,
        host: &str,
        port: &str,
        ip: &str,
        mtu: u32,
    ) -> Self {
        self.containers.push(ContainerSpec {
            name: name.to_owned(),
            host: host.to_owned(),
            port: port.to_owned(),
            ip: ipv4(ip),
            mtu,
        });
        self
    }

    /// Keep IPv6 enabled in every namespace (it is disabled by default, see
    /// the module docs): IPv6 in the *overlay*. Not the underlay's family
    /// ([`TopologyBuilder::host_ip6`]).
    pub fn ipv6(mut self, enabled: bool) -> Self {
        self.ipv6 = enabled;
        self
    }

    /// Print what is created, on stdout (`cargo xtask demo`).
    pub fn announce(mut self, on: bool) -> Self {
        self.announce = on;
        self
    }

    fn netns(&self, name: &str) -> Result<NetNs> {
        let ns = NetNs::try_create(&format!("{}{name}", self.prefix))?;
        if !self.ipv6 {
            if self.ip6_of(name).is_some() {
                // An IPv6 underlay: IPv6 stays on (`all`), but interfaces
                // created from now on get none (`default`); `eth0` gets it
                // back explicitly once created.
                ns.try_sysctl("net.ipv6.conf.default.disable_ipv6", "1")?;
            } else {
                ns.try_sysctl("net.ipv6.conf.all.disable_ipv6", "1")?;
                ns.try_sysctl("net.ipv6.conf.default.disable_ipv6", "1")?;
            }
        }
        Ok(ns)
    }

    /// The IPv6 underlay address of host `name`, if it has one.
    fn ip6_of(&self, name: &str) -> Option<Ipv6Addr> {
        self.host_ip6
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, ip)| *ip)
    }

    /// Creates the namespaces and links; panics on failure (what was
    /// created is removed again by the guards).
    pub fn build(self) -> Topology {
        require_root();
        self.try_build().unwrap_or_else(|e| panic!("{e:#}"))
    }

    /// [`TopologyBuilder::build`], failing instead of panicking (what was
    /// created is removed again by the guards). Claims the prefix for
    /// [`lab::teardown_and_exit`]; leftovers of an earlier run with the same prefix
    /// are removed first.
    pub fn try_build(self) -> Result<Topology> {
        lab::claim_prefix(&self.prefix);
        delete_stale(&self.prefix);
        self.create()
            .with_context(|| format!("creating the lab topology {}*", self.prefix))
    }

    fn create(&self) -> Result<Topology> {
        if self.announce {
            let mut names = vec!["sw".to_owned()];
            names.extend(self.hosts.iter().map(|h| h.0.clone()));
            names.extend(self.containers.iter().map(|c| c.name.clone()));
            say!(
                "lab: creating namespaces {}",
                names
                    .iter()
                    .map(|n| format!("{}{n}", self.prefix))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
        let switch = self.netns("sw")?;
        switch.try_ip_ok(["link", "add", SWITCH_BRIDGE, "type", "bridge"])?;
        switch.try_ip_ok(["link", "set", SWITCH_BRIDGE, "up"])?;

        let mut hosts = Vec::new();
        for (name, ip) in &self.hosts {
            let ns = self.netns(name)?;
            if self.announce {
                say!(
                    "lab: {}: {UPLINK} {ip}/{PREFIX_LEN} <-> {}:{SWITCH_BRIDGE} port {name}",
                    ns.name(),
                    switch.name()
                );
            }
            // Host eth0 <-> switch port `name`, created from the host's side
            // with the peer put straight into the switch's namespace.
            ns.try_ip_ok([
                "link",
                "add",
                UPLINK,
                "type",
                "veth",
                "peer",
                "name",
                name,
                "netns",
                switch.name(),
            ])?;
            switch.try_ip_ok(["link", "set", name, "master", SWITCH_BRIDGE])?;
            switch.try_ip_ok(["link", "set", name, "up"])?;
            ns.try_ip_ok(["addr", "add", &format!("{ip}/{PREFIX_LEN}"), "dev", UPLINK])?;
            let ip6 = self.ip6_of(name);
            if let Some(ip6) = ip6 {
                // Before the link is up: no duplicate address detection for
                // the link-local address either, so nothing is tentative.
                ns.try_sysctl(&format!("net.ipv6.conf.{UPLINK}.disable_ipv6"), "0")?;
                ns.try_sysctl(&format!("net.ipv6.conf.{UPLINK}.accept_dad"), "0")?;
                ns.try_sysctl(&format!("net.ipv6.conf.{UPLINK}.accept_ra"), "0")?;
                ns.try_sysctl(&format!("net.ipv6.conf.{UPLINK}.router_solicitations"), "0")?;
                let cidr = format!("{ip6}/{PREFIX_LEN6}");
                ns.try_ip_ok(["-6", "addr", "add", &cidr, "dev", UPLINK, "nodad"])?;
                if self.announce {
                    say!("lab: {}: {UPLINK} {cidr}", ns.name());
                }
            }
            ns.try_ip_ok(["link", "set", UPLINK, "up"])?;
            hosts.push(Host {
                name: name.clone(),
                ns,
                ip: *ip,
                ip6,
            });
        }

        let mut containers = Vec::new();
        for c in &self.containers {
            let host = hosts
                .iter()
                .find(|h| h.name == c.host)
                .ok_or_else(|| anyhow!("container {}: no host {}", c.name, c.host))?;
            let ns = self.netns(&c.name)?;
            let mtu = c.mtu.to_string();
            if self.announce {
                say!(
                    "lab: {}: {CONTAINER_IFACE} {}/{PREFIX_LEN} mtu {mtu} <-> {}:{}",
                    ns.name(),
                    c.ip,
                    host.ns.name(),
                    c.port
                );
            }
            #[rustfmt::skip]
            ns.try_ip_ok(["link", "add", CONTAINER_IFACE, "mtu", &mtu, "type", "veth",
                          "peer", "name", &c.port, "mtu", &mtu, "netns", host.ns.name()])?;
            let cidr = format!("{}/{PREFIX_LEN}", c.ip);
            ns.try_ip_ok(["addr", "add", &cidr, "dev", CONTAINER_IFACE])?;
            ns.try_ip_ok(["link", "set", CONTAINER_IFACE, "up"])?;
            host.ns.try_ip_ok(["link", "set", &c.port, "up"])?;
            containers.push(Container {
                name: c.name.clone(),
                ns,
                ip: c.ip,
                host: c.host.clone(),
                port: c.port.clone(),
                mtu: c.mtu,
            });
        }
        Ok(Topology {
            prefix: self.prefix.clone(),
            containers,
            hosts,
            switch,
        })
    }
}

impl Host {
    /// The tutorial's kernel VTEP:
    /// `ip link add <dev> type vxlan id 42 dstport 4789 remote <remote> local <own ip> dev eth0`
    /// (left down).
    pub fn add_kernel_vxlan(&self, dev: &str, remote: &str) {
        self.kernel_vtep(dev)
            .remote(remote)
            .try_create()
            .unwrap_or_else(|e| panic!("{e:#}"));
    }

    /// A kernel VTEP on this host (a peer of vxlan-fwd in the interop
    /// tests, the baseline in the bench), to configure and create.
    pub fn kernel_vtep(&self, dev: &str) -> KernelVtep<'_> {
        KernelVtep {
            host: self,
            dev: dev.to_owned(),
            vni: VNI,
            remote: None,
            group: None,
            extra: Vec::new(),
            bridge: None,
        }
    }

    /// Creates bridge `name` with `ports` and sets all of them up.
    pub fn add_bridge(&self, name: &str, ports: &[&str]) {
        self.try_add_bridge(name, ports)
            .unwrap_or_else(|e| panic!("{e:#}"));
    }

    /// [`Host::add_bridge`], failing instead of panicking.
    pub fn try_add_bridge(&self, name: &str, ports: &[&str]) -> Result<()> {
        self.ns.try_ip_ok(["link", "add", name, "type", "bridge"])?;
        for p in ports {
            self.ns.try_ip_ok(["link", "set", p, "master", name])?;
            self.ns.try_ip_ok(["link", "set", p, "up"])?;
        }
        self.ns.try_ip_ok(["link", "set", name, "up"])?;
        Ok(())
    }

    /// `ip addr add <cidr> dev <dev>; ip link set <dev> up`.
    pub fn addr_up(&self, dev: &str, cidr: &str) {
        self.ns.ip(["addr", "add", cidr, "dev", dev]);
        self.ns.ip(["link", "set", dev, "up"]);
    }
}

/// The kernel's VXLAN device on a host,
/// `ip link add <dev> type vxlan id <vni> dstport 4789 [remote <ip> | group <ip>] local <host ip> dev eth0 [extra...]`
/// (over IPv6 when the remote or group is an IPv6 address: `local` is
/// then the host's IPv6 underlay address, e.g. `ip link add vxlan0 type
/// vxlan id 42 dstport 4789 remote fd00:57::1 local fd00:57::2 dev eth0`),
/// optionally bridged with some of the host's ports. Built by
/// [`Host::kernel_vtep`].
#[derive(Debug, Clone)]
pub struct KernelVtep<'h> {
    host: &'h Host,
    dev: String,
    vni: u32,
    remote: Option<String>,
    group: Option<String>,
    extra: Vec<String>,
    bridge: Option<(String, Vec<String>)>,
}

impl KernelVtep<'_> {
    /// Another VNI than the tutorial's 42.
    pub fn vni(mut self, vni: u32) -> Self {
        self.vni = vni;
        self
    }

    /// Point-to-point to `ip`.
    pub fn remote(mut self, ip: impl ToString) -> Self {
        self.remote = Some(ip.to_string());
        self
    }

    /// Flooding to multicast group `ip`.
    pub fn group(mut self, ip: impl ToString) -> Self {
        self.group = Some(ip.to_string());
        self
    }

    /// More `ip link add ... type vxlan` options (e.g. `udpcsum`).
    pub fn arg(mut self, a: &str) -> Self {
        self.extra.push(a.to_owned());
        self
    }

    /// Then bridge `name` with the device and `ports` (all set up), as a
    /// VTEP serving those ports.
    pub fn bridge(mut self, name: &str, ports: &[&str]) -> Self {
        self.bridge = Some((
            name.to_owned(),
            ports.iter().map(|p| (*p).to_owned()).collect(),
        ));
        self
    }

    /// The local address: the host's IPv6 underlay address when the
    /// remote or group is IPv6 (VXLAN over IPv6), its IPv4 one otherwise.
    fn local(&self) -> Result<IpAddr> {
        let v6 = [&self.remote, &self.group]
            .into_iter()
            .flatten()
            .any(|a| a.parse::<Ipv6Addr>().is_ok());
        if !v6 {
            return Ok(IpAddr::V4(self.host.ip));
        }
        self.host.ip6.map(IpAddr::V6).ok_or_else(|| {
            anyhow!(
                "{}: an IPv6 remote or group, but host {} has no IPv6 underlay address",
                self.dev,
                self.host.name
            )
        })
    }

    /// The `ip link add` command line, for messages.
    pub fn describe(&self) -> String {
        let mut s = format!(
            "ip link add {} type vxlan id {} dstport 4789",
            self.dev, self.vni
        );
        if let Some(r) = &self.remote {
            s += &format!(" remote {r}");
        }
        if let Some(g) = &self.group {
            s += &format!(" group {g}");
        }
        let local = self
            .local()
            .map_or_else(|e| format!("<{e}>"), |ip| ip.to_string());
        s += &format!(" local {local} dev {UPLINK}");
        for a in &self.extra {
            s += &format!(" {a}");
        }
        if let Some((br, ports)) = &self.bridge {
            s += &format!(
                "; ip link add {br} type bridge; {} {} into {br}; all up",
                self.dev,
                ports.join(" ")
            );
        }
        s
    }

    /// Creates it (left down unless bridged).
    pub fn try_create(self) -> Result<()> {
        if self.remote.is_some() && self.group.is_some() {
            bail!(
                "{}: a kernel VTEP has a remote or a group, not both",
                self.dev
            );
        }
        let (vni, local) = (self.vni.to_string(), self.local()?.to_string());
        let mut args = vec![
            "link", "add", &self.dev, "type", "vxlan", "id", &vni, "dstport", "4789",
        ];
        if let Some(r) = &self.remote {
            args.extend(["remote", r.as_str()]);
        }
        if let Some(g) = &self.group {
            args.extend(["group", g.as_str()]);
        }
        args.extend(["local", &local, "dev", UPLINK]);
        args.extend(self.extra.iter().map(String::as_str));
        self.host.ns.try_ip_ok(args)?;
        if let Some((br, ports)) = &self.bridge {
            let mut all = vec![self.dev.as_str()];
            all.extend(ports.iter().map(String::as_str));
            self.host.try_add_bridge(br, &all)?;
        }
        Ok(())
    }
}
