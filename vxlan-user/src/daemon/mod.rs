//! `vxlan-fwd` (run): the instance's life.
//!
//! 1. take the single-instance lock and the control socket;
//! 2. load the programs, build the [`Dataplane`] from the configuration,
//!    then from the runtime journal;
//! 3. fill the FDB from a running datapath it adopts, or from the state
//!    file;
//! 4. attach (delivery first, then the ports, then XDP), tell systemd;
//! 5. serve ([`serve`]) until SIGINT/SIGTERM or the uplink's deletion;
//! 6. detach everything and remove what was created, on every way out
//!    after step 2, errors included.

mod adopt;
mod housekeeper;
mod serve;

use std::{
    os::unix::fs::PermissionsExt as _,
    path::{Path, PathBuf},
};

use anyhow::{Context as _, Result, anyhow, bail};
use aya::{
    Ebpf, EbpfLoader,
    maps::{MapData, RingBuf},
    programs::{ProgramError, SchedClassifier, Xdp},
};
use log::{info, warn};
use tokio::{
    io::unix::AsyncFd,
    net::UnixListener,
    signal::unix::{SignalKind, signal},
};
use vxlan_common::{FDB_STATIC_RESERVE, map, prog};

use crate::{
    cli::XdpModeArg,
    config::{self, Config, FileConfig, Overrides},
    dataplane::{Dataplane, Settings, journal::Journal},
    fdb,
    maps::{self, Maps},
    metrics,
    netlink::Netlink,
    notify,
    paths::{self, Files, InstanceLock, NetnsId},
    state,
};

/// Where the configuration comes from: a file (re-read at SIGHUP) and the
/// command line's values, which keep overriding it.
#[derive(Clone, Debug)]
pub struct Launch {
    pub file: Option<PathBuf>,
    pub overrides: Overrides,
}

impl Launch {
    pub fn resolve(&self) -> Result<Config> {
        let file: Option<FileConfig> = self.file.as_deref().map(config::load).transpose()?;
        config::resolve(file, self.overrides.clone())
    }
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

pub async fn run(launch: Launch, opts: RunOptions) -> Result<()> {
    // Before anything is created: a signal from now on means a clean stop.
    let sigint = signal(SignalKind::interrupt()).context("installing SIGINT handler")?;
    let sigterm = signal(SignalKind::terminate()).context("installing SIGTERM handler")?;
    let sighup = signal(SignalKind::hangup()).context("installing SIGHUP handler")?;
    let cfg = launch.resolve()?;
    let nl = Netlink::new()?;
    let uplink = nl.link_by_name(&cfg.iface).await?;
    paths::ensure_state_dir()?;
    paths::remove_files_of_gone_namespaces();
    let files = Files::new(NetnsId::current()?, &uplink.name);
    let _lock = InstanceLock::take(&files.lock(), &uplink.name)?;
    let listener = bind_control(&files.socket())?;
    let result = start_and_serve(
        launch,
        cfg,
        opts,
        nl,
        uplink,
        &files,
        listener,
        sighup,
        (sigint, sigterm),
    )
    .await;
    let _ = std::fs::remove_file(files.socket());
    result
}

/// The control socket: root's (mode 0600, in root's 0700 directory). A
/// stale one (its instance was killed) is replaced: the lock says that no
/// instance runs.
fn bind_control(path: &Path) -> Result<UnixListener> {
    let _ = std::fs::remove_file(path);
    let listener = UnixListener::bind(path)
        .with_context(|| format!("binding the control socket {}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .with_context(|| format!("making {} private", path.display()))?;
    Ok(listener)
}

#[allow(clippy::too_many_arguments)]
async fn start_and_serve(
    launch: Launch,
    cfg: Config,
    opts: RunOptions,
    nl: Netlink,
    uplink: crate::netlink::LinkInfo,
    files: &Files,
    listener: UnixListener,
    sighup: tokio::signal::unix::Signal,
    stop: (tokio::signal::unix::Signal, tokio::signal::unix::Signal),
) -> Result<()> {
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
    let local = local_addresses(&nl, &uplink, &cfg).await?;
    let debug = u8::from(opts.debug_log);
    let mut ebpf = EbpfLoader::new()
        .map_max_entries(map::FDB, cfg.max_fdb.saturating_add(FDB_STATIC_RESERVE))
        .override_global("DEBUG_LOG", &debug, true)
        .load(crate::EBPF_OBJ)
        .context("loading the eBPF object")?;
    load(&mut ebpf)?;
    let logger = match opts.debug_log {
        true => {
            let l = aya_log::EbpfLogger::init(&mut ebpf).context("starting the eBPF logger")?;
            // SAFETY: the logger owns its ring buffer fd and lives as long
            // as the registration.
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
    // SAFETY: the ring buffer owns its fd and outlives the registration.
    let events = unsafe { AsyncFd::register(RingBuf::<MapData>::try_from(events)?) }
        .map_err(|e| anyhow!("watching the EVENTS ring buffer: {}", e.into_parts().1))?;
    let maps = Maps::take(&mut ebpf)?;
    let xdp_mode = opts.xdp_mode.resolve(uplink.kind.as_deref());
    let uplink_prog = if xdp_mode.is_some() {
        prog::XDP_UPLINK
    } else {
        prog::TC_UPLINK
    };
    let prog_id = ebpf
        .program(uplink_prog)
        .ok_or_else(|| anyhow!("program {uplink_prog} missing"))?
        .info()?
        .id();
    // Bound before anything is attached: a port that cannot be had stops
    // the start with nothing to undo.
    let metrics_listener = opts.metrics.map(metrics::bind).transpose()?;
    let mut dp = Dataplane::new(
        nl.clone(),
        ebpf,
        maps,
        uplink.clone(),
        local,
        Settings::from(&cfg),
        xdp_mode.is_none(),
        files.runtime(),
    )?;
    let started = async {
        let problems = dp.apply_config(&cfg).await?;
        if let Some(p) = problems.first() {
            bail!("{p}");
        }
        match Journal::load(&files.runtime()) {
            Ok(j) => dp.apply_journal(&j).await,
            Err(e) => warn!("ignoring the runtime journal: {e:#}"),
        }
        let ports = port_vnis(&dp);
        // The running datapath's maps; those of another version (their
        // key or value sizes differ: the VTEP address grew to 16 bytes)
        // cannot be copied: its programs are still replaced, and the table
        // comes from the state file.
        let old_maps = adopt.and_then(|r| match Maps::from_program(r.prog_id) {
            Ok(m) => Some((r, m)),
            Err(e) => {
                warn!(
                    "the running datapath (program {}) has maps of another version ({e:#}): its \
                     table is not copied",
                    r.prog_id
                );
                None
            }
        });
        let old = match old_maps {
            Some((r, old)) => {
                let n = adopt::copy_state(&old, dp.maps_mut(), &ports)?;
                info!(
                    "adopting the running datapath (program {}): {n} FDB entries",
                    r.prog_id
                );
                Some(old)
            }
            None => {
                match state::load(&files.fdb()) {
                    Ok(Some(saved)) => {
                        let port_of = dp.port_map();
                        let n =
                            state::restore(dp.maps_mut(), &saved, &port_of, fdb::monotonic_ns())?;
                        info!("restored {n} FDB entries from {}", files.fdb().display());
                    }
                    Ok(None) => {}
                    Err(e) => warn!("ignoring the saved table: {e:#}"),
                }
                None
            }
        };
        // Senders and next hops before anything is attached: no frame of a
        // remote may meet an empty ALLOWED or NEIGH.
        match fdb::static_remotes(dp.maps()) {
            Ok(set) => dp.set_static_remotes(set),
            Err(e) => warn!("looking for static remote entries: {e:#}"),
        }
        dp.sync_allowed();
        dp.resolve_remotes().await;
        dp.attach(xdp_mode, adopt).await?;
        if let Some(l) = metrics_listener {
            metrics::serve(l, prog_id)?;
        }
        let mut keep: Vec<String> = dp.port_links().into_iter().map(|l| l.name).collect();
        keep.push(uplink.name.clone());
        let keep: Vec<&str> = keep.iter().map(String::as_str).collect();
        crate::attach::remove_strays(&nl, &keep).await;
        if let Some(old) = &old {
            let old_ports: Vec<u32> = old.ports.keys().filter_map(Result::ok).collect();
            crate::attach::remove_stray_guards(&nl, &old_ports, &dp.guarded_ports()).await;
        }
        if let Some(old) = &old {
            // Entries the old programs learned while we were starting.
            let _ = adopt::copy_fdb(old, dp.maps_mut(), &ports, false);
        }
        Ok(())
    }
    .await;
    let ok = started.is_ok();
    let result = match started {
        Ok(()) => {
            dp.save_journal();
            print_ready(&dp);
            notify::ready();
            let inst = serve::Instance {
                launch,
                cfg,
                prog_id,
                files: files.clone(),
                listener,
                events,
                logger,
            };
            serve::serve(&mut dp, inst, sighup, stop).await
        }
        Err(e) => Err(e),
    };
    notify::stopping();
    dp.shutdown(ok).await;
    println!("vxlan-fwd: stopped; programs detached");
    result
}

/// The local VTEP addresses to start with: `--local` (per family), and
/// for the other families the uplink's own (its first IPv4 address; a
/// global, non-tentative IPv6 address). A family some VNI needs but the
/// uplink lacks is an error then (naming the VNI); with no VNI yet, at
/// least one address must exist.
async fn local_addresses(
    nl: &Netlink,
    uplink: &crate::netlink::LinkInfo,
    cfg: &Config,
) -> Result<crate::addr::Locals> {
    use crate::addr::{Family, vni_addrs, vni_family};
    let mut found = crate::addr::Locals {
        v4: nl.first_ipv4(uplink.index).await?,
        v6: nl.first_ipv6_global(uplink.index).await?,
    };
    let wants_v6 = cfg.local.v6.is_none()
        && cfg.vnis.iter().any(|v| {
            vni_family(v.id, vni_addrs(&v.remotes, v.group.as_ref())) == Ok(Some(Family::V6))
        });
    // An address just configured may still be tentative (duplicate
    // address detection takes about a second): waited for when a VNI
    // needs IPv6, or when there is no address at all yet.
    let none = cfg.local.v4.is_none() && cfg.local.v6.is_none() && found.v4.is_none();
    for _ in 0..30 {
        if found.v6.is_some() || !(wants_v6 || none) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        found.v6 = nl.first_ipv6_global(uplink.index).await?;
    }
    let local = cfg.local.or(found);
    if local.v4.is_none() && local.v6.is_none() {
        bail!(
            "interface '{}' has no IPv4 address and no global IPv6 address; give one with --local",
            uplink.name
        );
    }
    Ok(local)
}

/// ifindex → VNI of the attached ports.
fn port_vnis(dp: &Dataplane) -> std::collections::HashMap<u32, u32> {
    dp.port_map().into_values().collect()
}

/// One `ready` line per VNI (or one for an empty VTEP).
pub(crate) fn print_ready(dp: &Dataplane) {
    let up = dp.uplink();
    let rows = dp.vni_rows();
    if rows.is_empty() {
        println!(
            "vxlan-fwd: ready: uplink {} local {} dstport {} no VNI yet (add one with `vxlan-fwd vni add`)",
            up.name,
            dp.locals(),
            dp.settings().dstport
        );
    }
    for v in rows {
        println!(
            "vxlan-fwd: ready: uplink {} local {} vni {} dstport {} remotes [{}] group {} ports [{}]",
            up.name,
            dp.local_of(v.vni)
                .map_or_else(|| "none".to_owned(), |a| a.to_string()),
            v.vni,
            dp.settings().dstport,
            v.remotes
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", "),
            v.group.map_or_else(|| "none".to_owned(), |g| g.to_string()),
            v.ports.join(", "),
        );
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

fn load(ebpf: &mut Ebpf) -> Result<()> {
    let xdp: &mut Xdp = ebpf
        .program_mut(prog::XDP_UPLINK)
        .ok_or_else(|| anyhow!("program {} missing", prog::XDP_UPLINK))?
        .try_into()?;
    xdp.load().map_err(|e| load_error(prog::XDP_UPLINK, e))?;
    // The GSO guard of the ports of IPv6 VNIs: loaded once, attached to
    // each such port.
    let guard: &mut Xdp = ebpf
        .program_mut(prog::XDP_PORT_GUARD)
        .ok_or_else(|| anyhow!("program {} missing", prog::XDP_PORT_GUARD))?
        .try_into()?;
    guard
        .load()
        .map_err(|e| load_error(prog::XDP_PORT_GUARD, e))?;
    for name in [prog::TC_UPLINK, prog::TC_PORT] {
        let tc: &mut SchedClassifier = ebpf
            .program_mut(name)
            .ok_or_else(|| anyhow!("program {name} missing"))?
            .try_into()?;
        tc.load().map_err(|e| load_error(name, e))?;
    }
    Ok(())
}
