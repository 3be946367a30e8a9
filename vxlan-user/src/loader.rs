//! `vxlan-fwd` (run): load, configure and attach the datapath, serve until
//! SIGINT/SIGTERM, then detach everything and remove what was created.

use std::{
    collections::{BTreeSet, HashMap as StdHashMap},
    net::{Ipv4Addr, UdpSocket},
    time::Duration,
};

use anyhow::{Context as _, Result, anyhow, bail};
use aya::{
    Ebpf, EbpfLoader,
    maps::{MapData, RingBuf, lpm_trie::Key},
    programs::{ProgramError, SchedClassifier, Xdp},
};
use log::{info, warn};
use tokio::{
    io::unix::AsyncFd,
    signal::unix::{Signal, SignalKind, signal},
};
use vxlan_common::{
    CFG_F_LEARNING, CFG_F_TC_DECAP, Config as DpConfig, FDB_STATIC_RESERVE, FdbEvent, MAX_PORTS,
    NeighEntry, PORT_F_PEER, PortInfo, VNI_F_ANY_SENDER, VniInfo, allow_data, map, prog,
    wire::OVERHEAD,
};

use crate::{
    EBPF_OBJ, attach,
    cli::XdpModeArg,
    config::{Cidr, Config, VniConfig},
    events::{Event, Hub},
    fdb,
    maps::{self, Maps},
    metrics,
    netlink::{LinkInfo, Netlink},
    state,
};

/// Longest interface name the kernel accepts.
const IFNAMSIZ_MAX: usize = 15;
/// How often the table is written to the state file, if it changed (and
/// always at stop). After a crash the live maps are adopted, so this is
/// only a safety net.
const SNAPSHOT_EVERY: Duration = Duration::from_secs(30);
/// Static remote entries are looked for (a read of the whole FDB, ~0.3 s
/// of CPU per million entries, batched) at most 1/this of the time: small
/// FDBs at every refresh (every second), large ones less often...
const STATIC_SCAN_SPACING: u32 = 100;
/// ...but at least this often.
const STATIC_SCAN_MAX_WAIT: Duration = Duration::from_secs(30);

/// A VNI with its interfaces resolved.
struct Vni {
    cfg: VniConfig,
    ports: Vec<LinkInfo>,
}

/// How to run, beside the configuration.
#[derive(Clone, Debug, Default)]
pub struct RunOptions {
    /// XDP attach mode.
    pub xdp_mode: XdpModeArg,
    /// Serve Prometheus metrics here.
    pub metrics: Option<std::net::SocketAddr>,
    /// Log from the eBPF programs.
    pub debug_log: bool,
}

pub async fn run(cfg: Config, opts: RunOptions) -> Result<()> {
    // Before anything is created: a signal from now on means a clean stop.
    let mut sigint = signal(SignalKind::interrupt()).context("installing SIGINT handler")?;
    let mut sigterm = signal(SignalKind::terminate()).context("installing SIGTERM handler")?;
    let nl = Netlink::new()?;
    let uplink = nl.link_by_name(&cfg.iface).await?;
    // One instance per uplink: the live one holds the events socket (an
    // abstract socket, private to this network namespace).
    let hub = Hub::bind(uplink.index).map_err(|e| anyhow!("interface '{}': {e:#}", uplink.name))?;
    // Our datapath left running by an instance that died is adopted;
    // anyone else's XDP program is left alone.
    let adopt = maps::running_on(&nl, &uplink).await;
    if let Some(id) = uplink.xdp_prog_id
        && adopt.is_none_or(|r| r.xdp_id != Some(id))
    {
        bail!(
            "interface '{}' already carries someone else's XDP program (id {id}); detach it first",
            uplink.name
        );
    }
    let local = match cfg.local {
        Some(ip) => ip,
        None => nl.first_ipv4(uplink.index).await?.ok_or_else(|| {
            anyhow!(
                "interface '{}' has no IPv4 address; give one with --local",
                uplink.name
            )
        })?,
    };
    let mut vnis = Vec::new();
    let mut seen = BTreeSet::new();
    for v in &cfg.vnis {
        let mut ports = Vec::new();
        for name in &v.ports {
            let port = nl
                .link_by_name(name)
                .await
                .with_context(|| format!("port '{name}'"))?;
            if port.index == uplink.index {
                bail!("port '{name}' is the uplink");
            }
            if !seen.insert(port.index) {
                bail!("port '{name}' is given twice");
            }
            ports.push(port);
        }
        if ports.len() + usize::from(v.host_if.is_some()) > MAX_PORTS {
            bail!("at most {MAX_PORTS} local ports per VNI");
        }
        vnis.push(Vni {
            cfg: v.clone(),
            ports,
        });
    }

    let mut host_ifs = Vec::new();
    let mut result = Ok(());
    for v in &mut vnis {
        let Some(name) = &v.cfg.host_if else { continue };
        let existing = match adopt {
            Some(_) => HostIf::existing(&nl, name).await,
            None => None,
        };
        let created = match existing {
            Some(h) => Ok(h),
            None => HostIf::create(&nl, name, uplink.mtu.saturating_sub(OVERHEAD)).await,
        };
        match created {
            Ok(h) => {
                match nl.link_by_index(h.peer_index).await {
                    Ok(peer) => v.ports.push(peer),
                    Err(e) => result = Err(e),
                }
                host_ifs.push(h);
            }
            Err(e) => result = Err(e),
        }
        if result.is_err() {
            break;
        }
    }
    if result.is_ok() {
        let stop = (&mut sigint, &mut sigterm);
        let inst = Instance {
            nl: &nl,
            cfg: &cfg,
            opts: &opts,
            uplink: &uplink,
            local,
            vnis: &vnis,
        };
        result = serve(inst, hub, adopt, stop).await;
    }
    for h in host_ifs {
        if let Err(e) = nl.delete_link(h.index).await {
            warn!("removing {}: {e:#}", h.name);
        }
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
    /// The host interface a previous instance (that died) left behind.
    async fn existing(nl: &Netlink, name: &str) -> Option<Self> {
        let host = nl.link_by_name(name).await.ok()?;
        let peer = nl.link_by_name(&format!("{name}-fwd")).await.ok()?;
        (host.kind.as_deref() == Some("veth")).then(|| Self {
            name: name.to_owned(),
            index: host.index,
            peer_index: peer.index,
        })
    }

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

/// Fills CONFIG, VNIS, PORTS and GROUPS.
fn configure(
    maps: &mut Maps,
    cfg: &Config,
    uplink: &LinkInfo,
    local: Ipv4Addr,
    vnis: &[Vni],
    tc_decap: bool,
) -> Result<()> {
    let (port_lo, port_hi, ttl) = kernel_defaults();
    let dp = DpConfig {
        local_ip: local.octets(),
        uplink_ifindex: uplink.index,
        dstport: cfg.dstport,
        port_lo,
        port_hi,
        ttl,
        mcast_ttl: 1,
        flags: if cfg.learning { CFG_F_LEARNING } else { 0 }
            | if tc_decap { CFG_F_TC_DECAP } else { 0 },
        max_learned: cfg.max_fdb,
        uplink_mac: uplink.mac,
        _pad: [0; 2],
        uplink_mtu: uplink.mtu,
        _pad2: 0,
    };
    maps.config.set(0, dp, 0).context("writing CONFIG")?;
    for v in vnis {
        let mut info = VniInfo {
            n_remotes: v.cfg.remotes.len() as u32,
            n_ports: v.ports.len() as u32,
            group: v.cfg.group.map_or([0; 4], |g| g.octets()),
            // Group mode takes VXLAN from any sender, unless told whom.
            flags: if v.cfg.group.is_some() && cfg.allow_remote.is_empty() {
                VNI_F_ANY_SENDER
            } else {
                0
            },
            ..Default::default()
        };
        for (slot, r) in info.remotes.iter_mut().zip(&v.cfg.remotes) {
            *slot = r.octets();
        }
        for (slot, p) in info.ports.iter_mut().zip(&v.ports) {
            *slot = p.index;
        }
        maps.vnis
            .insert(v.cfg.id, info, 0)
            .context("writing VNIS")?;
        for p in &v.ports {
            let peer = p.kind.as_deref() == Some("veth") && p.peer_in_other_netns;
            let info = PortInfo {
                vni: v.cfg.id,
                flags: if peer { PORT_F_PEER } else { 0 },
            };
            maps.ports
                .insert(p.index, info, 0)
                .context("writing PORTS")?;
        }
        if let Some(g) = v.cfg.group {
            maps.groups
                .insert(g.octets(), 1, 0)
                .context("writing GROUPS")?;
        }
    }
    Ok(())
}

/// Joins each group on the uplink (a real IGMP membership, as long as the
/// returned sockets live).
fn join_groups(vnis: &[Vni], local: Ipv4Addr) -> Result<Vec<UdpSocket>> {
    let groups: BTreeSet<Ipv4Addr> = vnis.iter().filter_map(|v| v.cfg.group).collect();
    groups
        .into_iter()
        .map(|g| {
            let sock = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)).context("socket for IGMP")?;
            sock.join_multicast_v4(&g, &local)
                .with_context(|| format!("joining multicast group {g} on {local}"))?;
            Ok(sock)
        })
        .collect()
}

/// What `serve` works on.
struct Instance<'a> {
    nl: &'a Netlink,
    cfg: &'a Config,
    opts: &'a RunOptions,
    uplink: &'a LinkInfo,
    local: Ipv4Addr,
    vnis: &'a [Vni],
}

async fn serve(
    inst: Instance<'_>,
    mut hub: Hub,
    adopt: Option<maps::Running>,
    stop: (&mut Signal, &mut Signal),
) -> Result<()> {
    let Instance {
        nl,
        cfg,
        opts,
        uplink,
        local,
        vnis,
    } = inst;
    let (sigint, sigterm) = stop;
    let debug = u8::from(opts.debug_log);
    let mut ebpf = EbpfLoader::new()
        .map_max_entries(map::FDB, cfg.max_fdb.saturating_add(FDB_STATIC_RESERVE))
        .override_global("DEBUG_LOG", &debug, true)
        .load(EBPF_OBJ)
        .context("loading the eBPF object")?;
    load(&mut ebpf)?;
    let mut logger = match opts.debug_log {
        true => {
            let l = aya_log::EbpfLogger::init(&mut ebpf).context("starting the eBPF logger")?;
            // SAFETY: the logger owns its ring buffer fd and lives as long
            // as the registration (this function).
            Some(
                unsafe { AsyncFd::register(l) }
                    .map_err(|e| anyhow!("eBPF logger: {}", e.into_parts().1))?,
            )
        }
        false => None,
    };
    let events = ebpf
        .take_map(map::EVENTS)
        .ok_or_else(|| anyhow!("map EVENTS missing"))?;
    // SAFETY: the ring buffer owns its fd and outlives the registration
    // (both live until the end of this function).
    let mut events = unsafe { AsyncFd::register(RingBuf::<MapData>::try_from(events)?) }
        .map_err(|e| anyhow!("watching the EVENTS ring buffer: {}", e.into_parts().1))?;
    let mut maps = Maps::take(&mut ebpf)?;
    let xdp_mode = opts.xdp_mode.resolve(uplink.kind.as_deref());
    configure(&mut maps, cfg, uplink, local, vnis, xdp_mode.is_none())?;

    let state_path = state::path(&uplink.name)?;
    let port_of: StdHashMap<String, (u32, u32)> = vnis
        .iter()
        .flat_map(|v| {
            v.ports
                .iter()
                .map(|p| (p.name.clone(), (p.index, v.cfg.id)))
        })
        .collect();
    let old = match adopt {
        // The running datapath's live state is newer than any saved table.
        Some(r) => {
            let old =
                Maps::from_program(r.prog_id).context("opening the running datapath's maps")?;
            let n = copy_state(&old, &mut maps)?;
            info!(
                "adopting the running datapath (program {}): {n} FDB entries",
                r.prog_id
            );
            Some(old)
        }
        None => {
            match state::load(&state_path) {
                Ok(Some(saved)) => {
                    let n = state::restore(&mut maps, &saved, &port_of, fdb::monotonic_ns())?;
                    info!("restored {n} FDB entries from {}", state_path.display());
                }
                Ok(None) => {}
                Err(e) => warn!("ignoring the saved table: {e:#}"),
            }
            None
        }
    };
    let _memberships = join_groups(vnis, local)?;
    // Senders and next hops before anything is attached: no frame of a
    // remote may meet an empty ALLOWED or NEIGH.
    let mut statics = StaticRemotes::default();
    statics.refresh(&maps);
    sync_allowed(&mut maps, &cfg.allow_remote, &statics);
    resolve_remotes(nl, &mut maps, &statics).await;

    // Delivery first, then the ports, then XDP: no frame is decapsulated
    // before it can be delivered.
    let ports: Vec<LinkInfo> = vnis.iter().flat_map(|v| v.ports.iter().cloned()).collect();
    // Measured on veth uplinks (`cargo xtask bench`): native XDP makes the
    // peer drop GSO, so every TCP super-packet arrives cut into ~45
    // segments, and the veth's XDP ring overflows (TCP about 0.25× the
    // kernel's); skb-mode XDP sees the super-packets whole but copies each
    // into one linear buffer first (17% of the CPU in a TCP profile) and
    // reallocates small frames for XDP's headroom. Decapsulating in TC does
    // neither.
    let attached = attach::attach(&mut ebpf, nl, uplink, &ports, xdp_mode, adopt).await?;
    if let Some(old) = &old {
        // Entries the old programs learned while we were starting.
        let _ = copy_fdb(old, &mut maps, false);
        fdb::recount_learned(&mut maps)?;
    }
    drop(old);
    if let Some(addr) = opts.metrics {
        let name = if xdp_mode.is_some() {
            prog::XDP_UPLINK
        } else {
            prog::TC_UPLINK
        };
        let id = ebpf
            .program(name)
            .ok_or_else(|| anyhow!("program {name} missing"))?
            .info()?
            .id();
        metrics::serve(addr, id)?;
    }

    for v in vnis {
        println!(
            "vxlan-fwd: ready: uplink {} local {local} vni {} dstport {} remotes [{}] group {} ports [{}]",
            uplink.name,
            v.cfg.id,
            cfg.dstport,
            v.cfg
                .remotes
                .iter()
                .map(Ipv4Addr::to_string)
                .collect::<Vec<_>>()
                .join(", "),
            v.cfg
                .group
                .map_or_else(|| "none".to_owned(), |g| g.to_string()),
            v.ports
                .iter()
                .map(|p| p.name.as_str())
                .collect::<Vec<_>>()
                .join(", "),
        );
    }

    let ageing_ns = cfg.ageing.saturating_mul(1_000_000_000);
    let mut age_tick = tokio::time::interval(Duration::from_millis(
        cfg.ageing.saturating_mul(100).clamp(500, 30_000),
    ));
    let mut neigh_tick = tokio::time::interval(Duration::from_secs(1));
    let mut snap_tick = tokio::time::interval(SNAPSHOT_EVERY);
    snap_tick.tick().await; // the first tick is immediate; nothing to save yet
    let mut saved_digest: Option<state::Digest> = None;
    let mut names = port_names(vnis);
    loop {
        tokio::select! {
            _ = sigint.recv() => break,
            _ = sigterm.recv() => break,
            r = hub.accept() => if let Err(e) = r { warn!("events socket: {e:#}") },
            guard = async { logger.as_mut()?.readable_mut().await.ok() }, if logger.is_some() => {
                if let Some(mut guard) = guard {
                    guard.get_inner_mut().flush();
                    guard.clear_ready();
                }
            }
            guard = events.readable_mut() => {
                let mut guard = guard.context("reading FDB events")?;
                let ring = guard.get_inner_mut();
                let mut batch = Vec::new();
                while let Some(item) = ring.next() {
                    if item.len() >= size_of::<FdbEvent>() {
                        let ev: FdbEvent = bytemuck::pod_read_unaligned(&item[..size_of::<FdbEvent>()]);
                        batch.push(Event::from_raw(&ev, &names));
                    }
                }
                guard.clear_ready();
                for ev in &batch {
                    hub.publish(ev).await;
                }
            }
            _ = age_tick.tick() => {
                match fdb::age(&mut maps, ageing_ns, fdb::monotonic_ns()) {
                    Ok(gone) => {
                        for (k, e) in &gone {
                            let raw = FdbEvent {
                                kind: vxlan_common::EV_AGE, vni: k.vni, mac: k.mac, _pad: [0; 2],
                                remote: e.remote, ifindex: e.ifindex,
                            };
                            hub.publish(&Event::from_raw(&raw, &names)).await;
                        }
                        if !gone.is_empty() {
                            info!("aged out {} FDB entries", gone.len());
                        }
                    }
                    Err(e) => warn!("ageing: {e:#}"),
                }
            }
            _ = neigh_tick.tick() => {
                statics.refresh(&maps);
                resolve_remotes(nl, &mut maps, &statics).await;
                sync_allowed(&mut maps, &cfg.allow_remote, &statics);
            }
            _ = snap_tick.tick() => {
                names = port_names(vnis);
                if let Err(e) = state::save_if_changed(&maps, &names, &state_path, &mut saved_digest) {
                    warn!("saving the table: {e:#}");
                }
            }
        }
    }
    if let Err(e) = state::snapshot(&maps, &names).and_then(|s| state::save(&state_path, &s)) {
        warn!("saving the table: {e:#}");
    }
    attached.detach(nl).await;
    drop(ebpf);
    println!("vxlan-fwd: stopped; programs detached");
    Ok(())
}

/// Keeps ALLOWED equal to: for each VNI, its default remotes and static
/// remote entries (/32), and the `--allow-remote` prefixes. Remotes added
/// or deleted at run time (`fdb append`, `fdb del`) are followed here.
fn sync_allowed(maps: &mut Maps, allow: &[Cidr], statics: &StaticRemotes) {
    let mut want: BTreeSet<(u32, [u8; 8])> = BTreeSet::new();
    for (vni, info) in maps.vnis.iter().filter_map(Result::ok) {
        for r in fdb::remotes_of(&info) {
            want.insert((32 + 32, allow_data(vni, r.octets())));
        }
        for c in allow {
            want.insert((32 + u32::from(c.len), allow_data(vni, c.network().octets())));
        }
    }
    for (vni, r) in &statics.set {
        want.insert((32 + 32, allow_data(*vni, r.octets())));
    }
    let have: BTreeSet<(u32, [u8; 8])> = maps
        .allowed
        .keys()
        .filter_map(Result::ok)
        .map(|k| (k.prefix_len(), k.data()))
        .collect();
    for (len, data) in have.difference(&want) {
        let _ = maps.allowed.remove(&Key::new(*len, *data));
    }
    for (len, data) in want.difference(&have) {
        if let Err(e) = maps.allowed.insert(&Key::new(*len, *data), 1, 0) {
            warn!("updating the allowed senders: {e}");
        }
    }
}

/// Copies a running datapath's state into freshly loaded maps: the FDB,
/// the neighbours, default remotes added at run time, and the counters.
/// Returns the number of FDB entries copied.
fn copy_state(old: &Maps, new: &mut Maps) -> Result<usize> {
    let n = copy_fdb(old, new, true)?;
    for (k, v) in old.neigh.iter().filter_map(Result::ok) {
        new.neigh.insert(k, v, 0)?;
    }
    for (vni, info) in old.vnis.iter().filter_map(Result::ok) {
        fdb::merge_remotes(new, vni, &fdb::remotes_of(&info))?;
    }
    for c in 0..vxlan_common::counters::NUM_COUNTERS {
        if let Ok(values) = old.counters.get(&c, 0) {
            new.counters.set(c, values, 0)?;
        }
    }
    fdb::recount_learned(new)?;
    Ok(n)
}

/// Copies FDB entries (all, or only those the new map lacks).
fn copy_fdb(old: &Maps, new: &mut Maps, overwrite: bool) -> Result<usize> {
    /// Insert only if absent: the check and the insert are one step, so an
    /// entry the new datapath learned meanwhile is kept.
    const BPF_NOEXIST: u64 = 1;
    let flags = if overwrite { 0 } else { BPF_NOEXIST };
    let mut n = 0;
    for (k, e) in crate::batch::read_all(&old.fdb)? {
        match new.fdb.insert(k, e, flags) {
            Ok(()) => n += 1,
            Err(aya::maps::MapError::SyscallError(err))
                if !overwrite && err.io_error.raw_os_error() == Some(libc::EEXIST) => {}
            Err(err) => return Err(err.into()),
        }
    }
    Ok(n)
}

/// The (VNI, remote VTEP) pairs of static FDB entries. Finding them reads
/// the whole FDB, so a scan that took `d` is followed by none for
/// `d` × [`STATIC_SCAN_SPACING`] (at most [`STATIC_SCAN_MAX_WAIT`]).
#[derive(Default)]
struct StaticRemotes {
    set: BTreeSet<(u32, Ipv4Addr)>,
    /// No scan before this; `None`: scan now.
    next: Option<std::time::Instant>,
}

impl StaticRemotes {
    fn refresh(&mut self, maps: &Maps) {
        let start = std::time::Instant::now();
        if self.next.is_some_and(|t| start < t) {
            return;
        }
        let mut set = BTreeSet::new();
        let read = crate::batch::for_each(&maps.fdb, |k, e| {
            if e.is_static() && !e.is_local() {
                set.insert((k.vni, Ipv4Addr::from(e.remote)));
            }
        });
        match read {
            Ok(_) => self.set = set,
            Err(e) => warn!("looking for static remote entries: {e:#}"),
        }
        let wait = start.elapsed().saturating_mul(STATIC_SCAN_SPACING);
        self.next = Some(start + wait.min(STATIC_SCAN_MAX_WAIT));
    }
}

fn port_names(vnis: &[Vni]) -> StdHashMap<u32, String> {
    vnis.iter()
        .flat_map(|v| v.ports.iter().map(|p| (p.index, p.name.clone())))
        .collect()
}

/// Keeps the link-layer next hop of every default remote and static remote
/// entry in NEIGH, from the kernel's routing and neighbour tables, and asks
/// the kernel to resolve those it does not know (flood copies cannot wait
/// in the neighbour queue). Remotes added at run time are picked up here.
async fn resolve_remotes(nl: &Netlink, maps: &mut Maps, statics: &StaticRemotes) {
    let mut remotes = BTreeSet::new();
    for (_, info) in maps.vnis.iter().filter_map(Result::ok) {
        remotes.extend(fdb::remotes_of(&info));
    }
    remotes.extend(statics.set.iter().map(|(_, r)| *r));
    for r in remotes {
        if let Err(e) = resolve(nl, maps, r).await {
            warn!("resolving remote {r}: {e:#}");
        }
    }
}

async fn resolve(nl: &Netlink, maps: &mut Maps, remote: Ipv4Addr) -> Result<()> {
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
    Ok(())
}
