//! Command line.

use std::{net::IpAddr, path::PathBuf};

use clap::{Args, Parser, Subcommand};
use vxlan_common::VNI_MAX;

pub use crate::addr::parse_ip;

/// A VXLAN tunnel endpoint whose datapath runs in the kernel as eBPF.
#[derive(Debug, Parser)]
#[command(name = "vxlan-fwd", version, args_conflicts_with_subcommands = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub run: Option<RunArgs>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the forwarder in the foreground (the default command).
    Run(RunArgs),
    /// Inspect or change the forwarding database of the forwarder running
    /// in this network namespace.
    Fdb(FdbArgs),
    /// Add, remove or list the VNIs of the running forwarder.
    Vni(VniArgs),
    /// Add, remove or list the local ports of the running forwarder.
    Port(PortArgs),
    /// Print the datapath counters of the forwarder running in this
    /// network namespace.
    Stats {
        /// Print JSON.
        #[arg(long)]
        json: bool,
        /// The forwarder on this uplink (needed when several run here).
        #[arg(long, value_name = "IFACE")]
        iface: Option<String>,
    },
}

#[derive(Debug, Args)]
pub struct FdbArgs {
    /// The forwarder on this uplink (needed when several run here).
    #[arg(long, value_name = "IFACE", global = true)]
    pub iface: Option<String>,
    #[command(subcommand)]
    pub command: FdbCommand,
}

#[derive(Debug, Args)]
pub struct VniArgs {
    /// The forwarder on this uplink (needed when several run here).
    #[arg(long, value_name = "IFACE", global = true)]
    pub iface: Option<String>,
    #[command(subcommand)]
    pub command: VniCommand,
}

#[derive(Debug, Subcommand)]
pub enum VniCommand {
    /// Add a VNI at run time (it survives a restart of the forwarder,
    /// unless the configuration then defines that VNI itself).
    Add {
        #[arg(value_parser = parse_vni)]
        vni: u32,
        /// Remote VTEP to flood to (IPv4 or IPv6; all of one family);
        /// repeatable.
        #[arg(long = "remote", value_name = "IP", value_parser = parse_ip)]
        remotes: Vec<IpAddr>,
        /// Multicast group for floods (e.g. 239.1.1.1 or ff05::100).
        #[arg(long, value_name = "IP", value_parser = parse_ip)]
        group: Option<IpAddr>,
        /// Create a host interface with this name for the VNI.
        #[arg(long, value_name = "NAME")]
        host_if: Option<String>,
        /// This VNI's own cap on learned entries.
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
        max_fdb: Option<u32>,
        /// Senders allowed besides the VNI's remotes (replaces the
        /// instance's list for this VNI); repeatable.
        #[arg(long = "allow-remote", value_name = "CIDR", value_parser = crate::config::parse_cidr)]
        allow_remote: Vec<crate::config::Cidr>,
        /// Cap on entries learned on each port of the VNI.
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
        port_max_fdb: Option<u32>,
        /// BUM frames per second each port of the VNI may send.
        #[arg(long, value_name = "PPS", value_parser = clap::value_parser!(u32).range(1..))]
        bum_pps: Option<u32>,
    },
    /// Remove a VNI: its ports are detached and its FDB entries removed.
    Del {
        #[arg(value_parser = parse_vni)]
        vni: u32,
    },
    /// List the VNIs.
    Show {
        /// Print a JSON array.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Args)]
pub struct PortArgs {
    /// The forwarder on this uplink (needed when several run here).
    #[arg(long, value_name = "IFACE", global = true)]
    pub iface: Option<String>,
    #[command(subcommand)]
    pub command: PortCommand,
}

#[derive(Debug, Subcommand)]
pub enum PortCommand {
    /// Add a local port (e.g. a container's host-side veth) to a VNI.
    Add {
        /// The interface.
        name: String,
        /// The VNI it belongs to.
        #[arg(long, value_parser = parse_vni)]
        vni: u32,
    },
    /// Remove a local port: detached, its FDB entries removed.
    Del {
        /// The interface.
        name: String,
    },
    /// List the ports: name, ifindex, VNI, origin, attached.
    Show {
        /// Print a JSON array.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum FdbCommand {
    /// List entries, like `bridge fdb show`.
    Show {
        /// Print a JSON array.
        #[arg(long)]
        json: bool,
    },
    /// Add a static entry: `MAC dst IP vni N` or `MAC dev PORT vni N`; for
    /// the all-zeros MAC, the first default remote of the VNI.
    Add {
        #[arg(value_name = "MAC dst IP vni N", num_args = 1.., required = true)]
        words: Vec<String>,
    },
    /// Add or overwrite a static entry (same words as `add`).
    Replace {
        #[arg(value_name = "MAC dst IP vni N", num_args = 1.., required = true)]
        words: Vec<String>,
    },
    /// Add one more default remote: `00:00:00:00:00:00 dst IP vni N`.
    Append {
        #[arg(value_name = "00:00:00:00:00:00 dst IP vni N", num_args = 1.., required = true)]
        words: Vec<String>,
    },
    /// Delete an entry: `MAC [dst IP] vni N`.
    Del {
        #[arg(value_name = "MAC [dst IP] vni N", num_args = 1.., required = true)]
        words: Vec<String>,
    },
    /// Delete entries (not the default remotes): all, or of one VNI, or
    /// only the learned ones.
    Flush {
        #[arg(long, value_parser = parse_vni)]
        vni: Option<u32>,
        /// Only learned entries.
        #[arg(long)]
        learned: bool,
    },
    /// Stream learn, move and age-out events, one per line.
    Watch {
        /// One JSON object per line.
        #[arg(long)]
        json: bool,
    },
}

/// Options of the forwarder. With `--config`, the file describes the
/// instance and its VNIs; the flags describe one more VNI (or override the
/// file's VNI with the same id) and override the file's top-level keys.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// TOML file describing the instance and its VNIs.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Uplink interface: VXLAN is received and sent here.
    #[arg(long, value_name = "IFACE")]
    pub iface: Option<String>,
    /// VXLAN network identifier (1..16777215).
    #[arg(long, value_parser = parse_vni)]
    pub vni: Option<u32>,
    /// Local VTEP address; at most once per family (IPv4 and IPv6).
    /// Default for each family a VNI needs: the uplink's own address (its
    /// first IPv4 address; a global, non-tentative IPv6 address).
    #[arg(long = "local", value_name = "IP", value_parser = parse_ip)]
    pub local: Vec<IpAddr>,
    /// UDP destination port (default 4789).
    #[arg(long)]
    pub dstport: Option<u16>,
    /// Remote VTEP to flood to (an all-zeros default FDB entry), IPv4 or
    /// IPv6: the VNI's underlay family follows its remotes or group, which
    /// must be of one family; repeatable.
    #[arg(long = "remote", value_name = "IP", value_parser = parse_ip)]
    pub remotes: Vec<IpAddr>,
    /// Multicast group: floods go to it and VXLAN sent to it is received
    /// (e.g. 239.1.1.1, or ff05::100 over IPv6).
    #[arg(long, value_name = "IP", value_parser = parse_ip)]
    pub group: Option<IpAddr>,
    /// Local port of the VNI (e.g. a container's host-side veth); repeatable.
    #[arg(long = "port", value_name = "IFACE")]
    pub ports: Vec<String>,
    /// Create a host interface with this name that behaves like a kernel
    /// vxlan device; removed on exit.
    #[arg(long, value_name = "NAME")]
    pub host_if: Option<String>,
    /// Learned entries idle longer than this many seconds are removed
    /// (default 300).
    #[arg(long, value_name = "SECS")]
    pub ageing: Option<u64>,
    /// Cap on learned FDB entries (default 65536).
    #[arg(long, value_name = "N")]
    pub max_fdb: Option<u32>,
    /// Do not learn (like the kernel's `nolearning`).
    #[arg(long)]
    pub no_learning: bool,
    /// Cap on entries learned on each local port (default: none).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub port_max_fdb: Option<u32>,
    /// Broadcast, multicast and unknown unicast frames per second each
    /// local port may send (default: no limit); beyond it they are dropped
    /// and counted (`drop_bum_rate`).
    #[arg(long, value_name = "PPS", value_parser = clap::value_parser!(u32).range(1..))]
    pub bum_pps: Option<u32>,
    /// Also accept VXLAN from senders in this prefix (IPv4 or IPv6; anti-spoofing: by
    /// default only a VNI's remotes may send into it; in group mode anyone,
    /// unless this is given); repeatable.
    #[arg(long = "allow-remote", value_name = "CIDR", value_parser = crate::config::parse_cidr)]
    pub allow_remote: Vec<crate::config::Cidr>,
    /// etcd endpoint of the fleet control plane (`http://host:port` or
    /// `https://host:port`; TLS settings in the config file's `[etcd]`);
    /// repeatable. Membership, MACs and IPv4 addresses then come from etcd:
    /// no `--remote` needed.
    #[arg(long = "etcd", value_name = "URL")]
    pub etcd: Vec<String>,
    /// Root of the keys in etcd (default /vxlan-fwd).
    #[arg(long, value_name = "PREFIX")]
    pub etcd_prefix: Option<String>,
    /// Lease TTL in seconds: how long a dead forwarder's keys outlive it
    /// (default 10).
    #[arg(long, value_name = "SECS")]
    pub etcd_ttl: Option<u64>,
    /// Answer ARP requests from local ports for addresses the control plane
    /// knows (the default with --etcd).
    #[arg(long, overrides_with = "no_arp_suppress")]
    pub arp_suppress: bool,
    /// Flood ARP requests even when the control plane knows the answer.
    #[arg(long, overrides_with = "arp_suppress")]
    pub no_arp_suppress: bool,
    /// How the uplink receives VXLAN: `auto` (no XDP on a veth uplink: the
    /// TC program decapsulates, which keeps GSO super-packets whole and
    /// measured fastest; the driver's native XDP elsewhere), `native`,
    /// `generic` (skb-mode XDP), or `off` (no XDP: decapsulate in TC).
    #[arg(long, value_enum, default_value_t = XdpModeArg::Auto)]
    pub xdp_mode: XdpModeArg,
    /// Serve the counters in the Prometheus text format on ADDR:PORT
    /// (`GET /metrics`).
    #[arg(long, value_name = "ADDR:PORT")]
    pub metrics: Option<std::net::SocketAddr>,
    /// Log from the eBPF programs (aya-log; costs nothing when off).
    #[arg(long)]
    pub debug_log: bool,
}

/// `--xdp-mode`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum XdpModeArg {
    #[default]
    Auto,
    Native,
    Generic,
    Off,
}

impl XdpModeArg {
    /// The XDP mode to attach in on a link of kind `kind` (`Some(true)`:
    /// skb mode, `Some(false)`: native), or `None` for no XDP at all.
    pub fn resolve(self, kind: Option<&str>) -> Option<bool> {
        match self {
            Self::Native => Some(false),
            Self::Generic => Some(true),
            Self::Off => None,
            Self::Auto if kind == Some("veth") => None,
            Self::Auto => Some(false),
        }
    }
}

pub fn parse_vni(s: &str) -> Result<u32, String> {
    let v: u32 = s
        .parse()
        .map_err(|_| format!("'{s}' is not a VNI (a number 1..{VNI_MAX})"))?;
    if v == 0 || v > VNI_MAX {
        return Err(format!("VNI {v} is outside 1..{VNI_MAX}"));
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vni_bounds() {
        assert_eq!(parse_vni("1"), Ok(1));
        assert_eq!(parse_vni("16777215"), Ok(VNI_MAX));
        assert!(parse_vni("0").is_err());
        assert!(parse_vni("16777216").is_err());
        assert!(parse_vni("x").is_err());
    }

    #[test]
    fn addresses_of_both_families() {
        let cli = Cli::try_parse_from([
            "vxlan-fwd",
            "--iface",
            "eth0",
            "--local",
            "10.0.0.1",
            "--local",
            "fd00:57::1",
            "--vni",
            "42",
            "--remote",
            "fd00:57::2",
            "--group",
            "ff05::100",
            "--allow-remote",
            "fd00:57::/64",
        ])
        .unwrap();
        let run = cli.run.unwrap();
        assert_eq!(
            run.local,
            [
                "10.0.0.1".parse::<IpAddr>().unwrap(),
                "fd00:57::1".parse().unwrap()
            ]
        );
        assert_eq!(run.remotes, ["fd00:57::2".parse::<IpAddr>().unwrap()]);
        assert_eq!(run.group, Some("ff05::100".parse().unwrap()));
        assert_eq!(run.allow_remote[0].to_string(), "fd00:57::/64");
        assert!(Cli::try_parse_from(["vxlan-fwd", "--local", "192.168.57"]).is_err());
    }

    #[test]
    fn run_is_default() {
        let cli = Cli::try_parse_from(["vxlan-fwd", "--iface", "eth0", "--vni", "42"]).unwrap();
        assert!(cli.command.is_none());
        assert_eq!(cli.run.unwrap().vni, Some(42));
        let cli = Cli::try_parse_from([
            "vxlan-fwd",
            "fdb",
            "add",
            "02:00:00:00:00:01",
            "dst",
            "10.0.0.1",
            "vni",
            "42",
        ])
        .unwrap();
        assert!(matches!(
            cli.command,
            Some(Command::Fdb(FdbArgs { command: FdbCommand::Add { words }, .. })) if words.len() == 5
        ));
        let cli = Cli::try_parse_from(["vxlan-fwd", "fdb", "show", "--json"]).unwrap();
        assert!(matches!(
            cli.command,
            Some(Command::Fdb(FdbArgs {
                command: FdbCommand::Show { json: true },
                iface: None
            }))
        ));
        let cli = Cli::try_parse_from([
            "vxlan-fwd",
            "vni",
            "add",
            "7",
            "--remote",
            "10.0.0.1",
            "--iface",
            "eth1",
        ])
        .unwrap();
        assert!(matches!(
            cli.command,
            Some(Command::Vni(VniArgs { command: VniCommand::Add { vni: 7, ref remotes, .. }, iface: Some(ref i) }))
                if remotes.len() == 1 && i == "eth1"
        ));
        assert!(Cli::try_parse_from(["vxlan-fwd", "vni", "add", "0"]).is_err());
        assert!(
            Cli::try_parse_from(["vxlan-fwd", "port", "add", "veth0"]).is_err(),
            "no --vni"
        );
        let cli =
            Cli::try_parse_from(["vxlan-fwd", "port", "add", "veth0", "--vni", "42"]).unwrap();
        assert!(matches!(
            cli.command,
            Some(Command::Port(PortArgs {
                command: PortCommand::Add { vni: 42, .. },
                ..
            }))
        ));
    }
}
