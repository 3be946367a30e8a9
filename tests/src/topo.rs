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

use std::net::Ipv4Addr;

use crate::{
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
/// Underlay prefix length.
pub const PREFIX_LEN: u8 = 24;
pub const H1_IP: &str = "192.168.57.50";
pub const H2_IP: &str = "192.168.57.54";
pub const H3_IP: &str = "192.168.57.58";

/// A host: a namespace with `eth0` on the underlay switch.
#[derive(Debug)]
pub struct Host {
    /// Short name (`h1`); also the name of its port on the switch.
    pub name: String,
    pub ns: NetNs,
    /// Underlay address of `eth0`.
    pub ip: Ipv4Addr,
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
    containers: Vec<ContainerSpec>,
    ipv6: bool,
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
            containers: Vec::new(),
            ipv6: false,
        }
    }

    /// The tutorial's two hosts: `h1` (192.168.57.50) and `h2`
    /// (192.168.57.54); add containers as needed.
    pub fn seed(prefix: &str) -> TopologyBuilder {
        Self::builder(prefix).host("h1", H1_IP).host("h2", H2_IP)
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
    /// also fills their ARP caches).
    pub fn check_underlay(&self) {
        for a in &self.hosts {
            for b in &self.hosts {
                if a.name != b.name {
                    let r = ping_result(&a.ns, b.ip.to_string(), 1);
                    assert!(
                        r.ok,
                        "underlay broken (harness bug?): {} -> {}: {}",
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

    /// Keep IPv6 enabled (it is disabled by default, see the module docs).
    pub fn ipv6(mut self, enabled: bool) -> Self {
        self.ipv6 = enabled;
        self
    }

    fn netns(&self, name: &str) -> NetNs {
        let ns = NetNs::create(&format!("{}{name}", self.prefix));
        if !self.ipv6 {
            ns.sysctl("net.ipv6.conf.all.disable_ipv6", "1");
            ns.sysctl("net.ipv6.conf.default.disable_ipv6", "1");
        }
        ns
    }

    /// Creates the namespaces and links; panics on failure (what was
    /// created is removed again by the guards).
    pub fn build(self) -> Topology {
        require_root();
        delete_stale(&self.prefix);
        let switch = self.netns("sw");
        switch.ip(["link", "add", SWITCH_BRIDGE, "type", "bridge"]);
        switch.ip(["link", "set", SWITCH_BRIDGE, "up"]);

        let mut hosts = Vec::new();
        for (name, ip) in &self.hosts {
            let ns = self.netns(name);
            // Host eth0 <-> switch port `name`, created from the host's side
            // with the peer put straight into the switch's namespace.
            ns.ip([
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
            ]);
            switch.ip(["link", "set", name, "master", SWITCH_BRIDGE]);
            switch.ip(["link", "set", name, "up"]);
            ns.ip(["addr", "add", &format!("{ip}/{PREFIX_LEN}"), "dev", UPLINK]);
            ns.ip(["link", "set", UPLINK, "up"]);
            hosts.push(Host {
                name: name.clone(),
                ns,
                ip: *ip,
            });
        }

        let mut containers = Vec::new();
        for c in &self.containers {
            let host = hosts
                .iter()
                .find(|h| h.name == c.host)
                .unwrap_or_else(|| panic!("container {}: no host {}", c.name, c.host));
            let ns = self.netns(&c.name);
            let mtu = c.mtu.to_string();
            #[rustfmt::skip]
            ns.ip(["link", "add", CONTAINER_IFACE, "mtu", &mtu, "type", "veth",
                   "peer", "name", &c.port, "mtu", &mtu, "netns", host.ns.name()]);
            ns.ip([
                "addr",
                "add",
                &format!("{}/{PREFIX_LEN}", c.ip),
                "dev",
                CONTAINER_IFACE,
            ]);
            ns.ip(["link", "set", CONTAINER_IFACE, "up"]);
            host.ns.ip(["link", "set", &c.port, "up"]);
            containers.push(Container {
                name: c.name.clone(),
                ns,
                ip: c.ip,
                host: c.host.clone(),
                port: c.port.clone(),
                mtu: c.mtu,
            });
        }
        Topology {
            prefix: self.prefix,
            containers,
            hosts,
            switch,
        }
    }
}

impl Host {
    /// The tutorial's kernel VTEP:
    /// `ip link add <dev> type vxlan id 42 dstport 4789 remote <remote> local <own ip> dev eth0`
    /// (left down).
    pub fn add_kernel_vxlan(&self, dev: &str, remote: &str) {
        let (vni, local) = (VNI.to_string(), self.ip.to_string());
        #[rustfmt::skip]
        self.ns.ip(["link", "add", dev, "type", "vxlan", "id", &vni, "dstport", "4789",
                    "remote", remote, "local", &local, "dev", UPLINK]);
    }

    /// Creates bridge `name` with `ports` and sets all of them up.
    pub fn add_bridge(&self, name: &str, ports: &[&str]) {
        self.ns.ip(["link", "add", name, "type", "bridge"]);
        for p in ports {
            self.ns.ip(["link", "set", p, "master", name]);
            self.ns.ip(["link", "set", p, "up"]);
        }
        self.ns.ip(["link", "set", name, "up"]);
    }

    /// `ip addr add <cidr> dev <dev>; ip link set <dev> up`.
    pub fn addr_up(&self, dev: &str, cidr: &str) {
        self.ns.ip(["addr", "add", cidr, "dev", dev]);
        self.ns.ip(["link", "set", dev, "up"]);
    }
}
