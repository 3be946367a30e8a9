//! `vxlan-fwd run`: load, configure and attach the datapath, serve until
//! SIGINT/SIGTERM, then detach everything and remove what was created.

use std::{collections::BTreeSet, net::Ipv4Addr, time::Duration};

use anyhow::{Context as _, Result, anyhow, bail};
use aya::{
    Ebpf, EbpfLoader,
    programs::{
        LinkOrder, ProgramError, SchedClassifier, TcAttachType, Xdp, XdpMode, tc::TcAttachOptions,
    },
};
use log::{info, warn};
use tokio::signal::unix::{SignalKind, signal};
use vxlan_common::{
    CFG_F_LEARNING, Config, MAX_PORTS, MAX_REMOTES, NeighEntry, PORT_F_PEER, PortInfo, VniInfo,
    prog, wire::OVERHEAD,
};

use crate::{
    EBPF_OBJ,
    cli::RunArgs,
    fdb,
    maps::Maps,
    netlink::{LinkInfo, Netlink},
};

/// Longest interface name the kernel accepts.
const IFNAMSIZ_MAX: usize = 15;

pub async fn run(args: RunArgs) -> Result<()> {
    let nl = Netlink::new()?;
    let uplink = nl.link_by_name(&args.iface).await?;
    if let Some(id) = uplink.xdp_prog_id {
        bail!(
            "interface '{}' already carries an XDP program (id {id}); detach it first",
            uplink.name
        );
    }
    let local = match args.local {
        Some(ip) => ip,
        None => nl.first_ipv4(uplink.index).await?.ok_or_else(|| {
            anyhow!(
                "interface '{}' has no IPv4 address; give one with --local",
                uplink.name
            )
        })?,
    };
    let mut ports = Vec::new();
    for name in &args.ports {
        let port = nl
            .link_by_name(name)
            .await
            .with_context(|| format!("port '{name}'"))?;
        if port.index == uplink.index {
            bail!("port '{name}' is the uplink");
        }
        if ports.iter().any(|p: &LinkInfo| p.index == port.index) {
            bail!("port '{name}' is given twice");
        }
        ports.push(port);
    }
    if args.remotes.len() > MAX_REMOTES {
        bail!("at most {MAX_REMOTES} remotes per VNI");
    }
    if ports.len() + usize::from(args.host_if.is_some()) > MAX_PORTS {
        bail!("at most {MAX_PORTS} local ports per VNI");
    }
    let remotes: Vec<Ipv4Addr> = args
        .remotes
        .iter()
        .copied()
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();

    let host_if = match &args.host_if {
        Some(name) => Some(HostIf::create(&nl, name, uplink.mtu.saturating_sub(OVERHEAD)).await?),
        None => None,
    };
    if let Some(h) = &host_if {
        ports.push(nl.link_by_index(h.peer_index).await?);
    }
    let result = serve(&nl, &args, &uplink, local, &remotes, &ports).await;
    if let Some(h) = host_if
        && let Err(e) = nl.delete_link(h.index).await
    {
        warn!("removing {}: {e:#}", h.name);
    }
    result
}

/// The host interface: a veth pair whose one end (`name`) the user
/// configures like the kernel's vxlan0, and whose other end is a local port.
struct HostIf {
    name: String,
    index: u32,
    peer_index: u32,
}

impl HostIf {
    async fn create(nl: &Netlink, name: &str, mtu: u32) -> Result<Self> {
        let peer = format!("{name}-fwd");
        if name.is_empty() || peer.len() > IFNAMSIZ_MAX {
            bail!(
                "host interface name '{name}' must be 1 to {} characters",
                IFNAMSIZ_MAX - 4
            );
        }
        for n in [name, peer.as_str()] {
            if nl.link_by_name(n).await.is_ok() {
                bail!("interface '{n}' already exists");
            }
        }
        nl.create_veth(name, &peer, mtu)
            .await
            .with_context(|| format!("creating host interface '{name}'"))?;
        let created = async {
            let host = nl.link_by_name(name).await?;
            let p = nl.link_by_name(&peer).await?;
            nl.set_addrgenmode_none(p.index).await?;
            nl.set_up(p.index).await?;
            Ok::<_, anyhow::Error>(Self {
                name: name.to_owned(),
                index: host.index,
                peer_index: p.index,
            })
        }
        .await;
        if created.is_err()
            && let Ok(host) = nl.link_by_name(name).await
        {
            let _ = nl.delete_link(host.index).await;
        }
        created
    }
}

/// Explains a program load failure, with the end of the verifier's log.
fn load_error(name: &str, e: ProgramError) -> anyhow::Error {
    match e {
        ProgramError::LoadError {
            io_error,
            verifier_log,
        } => {
            let log = verifier_log.to_string();
            let lines: Vec<&str> = log.lines().collect();
            let tail = lines[lines.len().saturating_sub(20)..].join("\n  ");
            anyhow!("the kernel's verifier rejected {name}: {io_error}\n  {tail}")
        }
        e => anyhow::Error::new(e).context(format!("loading {name}")),
    }
}

fn read_proc(path: &str) -> Option<String> {
    std::fs::read_to_string(path).ok()
}

/// The kernel's outer UDP source port range and default TTL.
fn kernel_defaults() -> (u16, u16, u8) {
    let (lo, hi) = read_proc("/proc/sys/net/ipv4/ip_local_port_range")
        .and_then(|s| {
            let mut it = s.split_whitespace().filter_map(|x| x.parse::<u16>().ok());
            Some((it.next()?, it.next()?))
        })
        .unwrap_or((32768, 60999));
    let ttl = read_proc("/proc/sys/net/ipv4/ip_default_ttl")
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(64);
    (lo, hi, ttl)
}

fn load(ebpf: &mut Ebpf) -> Result<()> {
    let xdp: &mut Xdp = ebpf
        .program_mut(prog::XDP_UPLINK)
        .ok_or_else(|| anyhow!("program {} missing", prog::XDP_UPLINK))?
        .try_into()?;
    xdp.load().map_err(|e| load_error(prog::XDP_UPLINK, e))?;
    for name in [prog::TC_UPLINK, prog::TC_PORT] {
        let tc: &mut SchedClassifier = ebpf
            .program_mut(name)
            .ok_or_else(|| anyhow!("program {name} missing"))?
            .try_into()?;
        tc.load().map_err(|e| load_error(name, e))?;
    }
    Ok(())
}

fn attach_tc(ebpf: &mut Ebpf, name: &str, iface: &str) -> Result<()> {
    let tc: &mut SchedClassifier = ebpf
        .program_mut(name)
        .ok_or_else(|| anyhow!("program {name} missing"))?
        .try_into()?;
    tc.attach_with_options(
        iface,
        TcAttachType::Ingress,
        TcAttachOptions::TcxOrder(LinkOrder::first()),
    )
    .with_context(|| format!("attaching {name} to {iface} (tc ingress)"))?;
    Ok(())
}

async fn serve(
    nl: &Netlink,
    args: &RunArgs,
    uplink: &LinkInfo,
    local: Ipv4Addr,
    remotes: &[Ipv4Addr],
    ports: &[LinkInfo],
) -> Result<()> {
    let mut ebpf = EbpfLoader::new()
        .load(EBPF_OBJ)
        .context("loading the eBPF object")?;
    load(&mut ebpf)?;
    let mut maps = Maps::take(&mut ebpf)?;

    let (port_lo, port_hi, ttl) = kernel_defaults();
    let cfg = Config {
        local_ip: local.octets(),
        uplink_ifindex: uplink.index,
        dstport: args.dstport,
        port_lo,
        port_hi,
        ttl,
        _pad0: 0,
        flags: if args.no_learning { 0 } else { CFG_F_LEARNING },
    };
    maps.config.set(0, cfg, 0).context("writing CONFIG")?;
    let mut vni = VniInfo {
        n_remotes: remotes.len() as u32,
        n_ports: ports.len() as u32,
        ..Default::default()
    };
    for (slot, r) in vni.remotes.iter_mut().zip(remotes) {
        *slot = r.octets();
    }
    for (slot, p) in vni.ports.iter_mut().zip(ports) {
        *slot = p.index;
    }
    maps.vnis.insert(args.vni, vni, 0).context("writing VNIS")?;
    for p in ports {
        let peer = p.kind.as_deref() == Some("veth") && p.peer_in_other_netns;
        let info = PortInfo {
            vni: args.vni,
            flags: if peer { PORT_F_PEER } else { 0 },
        };
        maps.ports
            .insert(p.index, info, 0)
            .context("writing PORTS")?;
    }

    // Delivery first, then the ports, then XDP: no frame is decapsulated
    // before it can be delivered.
    attach_tc(&mut ebpf, prog::TC_UPLINK, &uplink.name)?;
    for p in ports {
        attach_tc(&mut ebpf, prog::TC_PORT, &p.name)?;
    }
    let xdp: &mut Xdp = ebpf
        .program_mut(prog::XDP_UPLINK)
        .ok_or_else(|| anyhow!("program {} missing", prog::XDP_UPLINK))?
        .try_into()?;
    let mode = if args.xdp_generic {
        XdpMode::Skb
    } else {
        XdpMode::Default
    };
    xdp.attach(&uplink.name, mode).map_err(|e| {
        anyhow!(
            "attaching XDP to '{}': {e} (does it already carry an XDP program?)",
            uplink.name
        )
    })?;

    for r in remotes {
        resolve(nl, &mut maps, *r).await;
    }
    println!(
        "vxlan-fwd: ready: uplink {} local {local} vni {} dstport {} remotes [{}] ports [{}]",
        uplink.name,
        args.vni,
        args.dstport,
        remotes
            .iter()
            .map(Ipv4Addr::to_string)
            .collect::<Vec<_>>()
            .join(", "),
        ports
            .iter()
            .map(|p| p.name.as_str())
            .collect::<Vec<_>>()
            .join(", "),
    );

    let mut sigint = signal(SignalKind::interrupt()).context("installing SIGINT handler")?;
    let mut sigterm = signal(SignalKind::terminate()).context("installing SIGTERM handler")?;
    let ageing_ns = args.ageing.saturating_mul(1_000_000_000);
    let mut age_tick = tokio::time::interval(Duration::from_secs((args.ageing / 10).clamp(1, 30)));
    let mut neigh_tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = sigint.recv() => break,
            _ = sigterm.recv() => break,
            _ = age_tick.tick() => {
                match fdb::age(&mut maps, ageing_ns, fdb::monotonic_ns()) {
                    Ok(0) => {}
                    Ok(n) => info!("aged out {n} FDB entries"),
                    Err(e) => warn!("ageing: {e:#}"),
                }
            }
            _ = neigh_tick.tick() => {
                for r in remotes {
                    resolve(nl, &mut maps, *r).await;
                }
            }
        }
    }
    drop(ebpf);
    println!("vxlan-fwd: stopped; programs detached");
    Ok(())
}

/// Keeps the link-layer next hop towards a remote VTEP in NEIGH, from the
/// kernel's routing and neighbour tables, and asks the kernel to resolve it
/// when it is not known (flood copies cannot wait in the neighbour queue).
async fn resolve(nl: &Netlink, maps: &mut Maps, remote: Ipv4Addr) {
    let r = async {
        let (oif, nh) = nl.route_get(remote).await?;
        match nl.neighbour_mac(oif, nh).await? {
            Some(dmac) => {
                let smac = nl.link_by_index(oif).await?.mac;
                let entry = NeighEntry {
                    dmac,
                    smac,
                    ifindex: oif,
                };
                let key = remote.octets();
                if maps.neigh.get(&key, 0).ok() != Some(entry) {
                    maps.neigh.insert(key, entry, 0)?;
                }
            }
            None => nl.kick_neighbour(oif, nh).await?,
        }
        Ok::<_, anyhow::Error>(())
    }
    .await;
    if let Err(e) = r {
        warn!("resolving remote {remote}: {e:#}");
    }
}
