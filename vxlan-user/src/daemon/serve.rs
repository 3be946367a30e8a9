//! The serve loop: one task that owns the [`Dataplane`] and reacts to
//! signals (stop, SIGHUP reload), control requests, FDB events from the
//! datapath, link and address events, and the housekeeper's reports.
//! Nothing in it waits on a client: requests are read and answers written
//! by tasks of their own, watchers have bounded queues, and the walks of
//! the whole FDB run on the housekeeping thread.

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use anyhow::{Context as _, Result, anyhow};
use aya::maps::{MapData, RingBuf};
use aya_log::EbpfLogger;
use log::{error, info, warn};
use tokio::{
    io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader, unix::AsyncFd},
    net::{UnixListener, UnixStream},
    signal::unix::Signal,
    sync::mpsc,
};
use vxlan_common::{EV_AGE, FdbEvent, VNI_MAX};

use super::{
    Launch,
    housekeeper::{Housekeeper, Report},
};
use crate::{
    config::Config,
    control::{Request, Response},
    dataplane::{Dataplane, Origin, Settings},
    etcd,
    events::{Event, Hub},
    netlink::{LinkEvent, subscribe_links},
    notify,
    paths::Files,
    state,
};

/// How long a client may take to send its request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Control-plane updates applied before the derived tables follow.
const ETCD_BATCH: usize = 4096;
/// Most control connections waiting for their turn.
const MAX_PENDING: usize = 64;

/// What the serve loop works with besides the dataplane.
pub struct Instance {
    pub launch: Launch,
    pub cfg: Config,
    pub prog_id: u32,
    pub files: Files,
    pub listener: UnixListener,
    pub events: AsyncFd<RingBuf<MapData>>,
    pub logger: Option<AsyncFd<EbpfLogger<&'static dyn log::Log>>>,
}

/// A request read from a client, and the connection to answer on.
struct Pending {
    req: Request,
    stream: UnixStream,
}

pub async fn serve(
    dp: &mut Dataplane,
    inst: Instance,
    mut sighup: Signal,
    stop: (Signal, Signal),
) -> Result<()> {
    let Instance {
        launch,
        mut cfg,
        prog_id,
        files,
        listener,
        mut events,
        mut logger,
    } = inst;
    let (mut sigint, mut sigterm) = stop;
    let names = Arc::new(Mutex::new(dp.port_names()));
    let (keeper, mut reports) =
        Housekeeper::start(prog_id, cfg.ageing, files.fdb(), names.clone())?;
    let mut links = subscribe_links()?;
    let (req_tx, mut requests) = mpsc::channel::<Pending>(MAX_PENDING);
    let mut hub = Hub::default();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut sightings = tokio::time::interval(Duration::from_millis(100));
    let uplink_index = dp.uplink().index;
    let mut event_names = dp.port_names();
    let mut etcd = match &cfg.etcd {
        Some(e) => Some(etcd::spawn(e.clone())?),
        None => None,
    };
    // Local endpoints changed (a learn or move on a port): publish soon.
    let mut publish_due = true;

    let result = loop {
        tokio::select! {
            _ = sigint.recv() => break Ok(()),
            _ = sigterm.recv() => break Ok(()),
            _ = sighup.recv() => {
                reload(dp, &launch, &mut cfg).await;
            }
            conn = listener.accept() => match conn {
                Ok((stream, _)) => read_request(stream, req_tx.clone()),
                Err(e) => warn!("control socket: {e}"),
            },
            Some(p) = requests.recv() => {
                handle(dp, &mut hub, p).await;
            }
            guard = async { logger.as_mut()?.readable_mut().await.ok() }, if logger.is_some() => {
                if let Some(mut guard) = guard {
                    guard.get_inner_mut().flush();
                    guard.clear_ready();
                }
            }
            guard = events.readable_mut() => {
                let mut guard = match guard {
                    Ok(g) => g,
                    Err(e) => break Err(anyhow::Error::new(e).context("reading FDB events")),
                };
                let ring = guard.get_inner_mut();
                while let Some(item) = ring.next() {
                    if item.len() >= size_of::<FdbEvent>() {
                        let ev: FdbEvent = bytemuck::pod_read_unaligned(&item[..size_of::<FdbEvent>()]);
                        publish_due |= ev.ifindex != 0;
                        hub.publish(&Event::from_raw(&ev, &event_names));
                    }
                }
                guard.clear_ready();
            }
            ev = links.recv() => match ev {
                Some(LinkEvent::Link(l)) if l.index == uplink_index && l.name != dp.uplink().name => {
                    let old = dp.uplink().name.clone();
                    dp.uplink_renamed(&l.name);
                    break Err(anyhow!(
                        "the uplink '{old}' was renamed to '{}'; stopping (start again on the new name)",
                        l.name
                    ));
                }
                Some(LinkEvent::Link(l)) => dp.link_changed(&l).await,
                Some(LinkEvent::LinkGone { index, name }) if index == uplink_index => {
                    break Err(anyhow!("the uplink '{name}' was deleted; stopping"));
                }
                Some(LinkEvent::LinkGone { index, .. }) => dp.link_removed(index).await,
                Some(LinkEvent::Address { index }) if index == uplink_index => {
                    let nl = dp.netlink().clone();
                    match (nl.first_ipv4(uplink_index).await, nl.first_ipv6_global(uplink_index).await) {
                        (Ok(a4), Ok(a6)) => if let Err(e) = dp.uplink_address(a4, a6) { warn!("{e:#}") },
                        (Err(e), _) | (_, Err(e)) => warn!("reading the uplink's addresses: {e:#}"),
                    }
                }
                Some(LinkEvent::Address { .. }) => {}
                Some(LinkEvent::Overrun) => dp.resync_ports().await,
                None => break Err(anyhow!("the link event subscription ended")),
            },
            Some(r) = reports.recv() => match r {
                Report::Aged(gone) => {
                    for (k, e) in &gone {
                        let raw = FdbEvent {
                            kind: EV_AGE, vni: k.vni, mac: k.mac, _pad: [0; 2],
                            remote: e.remote, ifindex: e.ifindex,
                        };
                        hub.publish(&Event::from_raw(&raw, &event_names));
                    }
                }
                Report::StaticRemotes(set) => dp.set_static_remotes(set),
            },
            u = async { etcd.as_mut()?.updates.recv().await }, if etcd.is_some() => {
                let Some(u) = u else {
                    // The task ended (it only does when stopped, or if it
                    // panicked): forwarding goes on with what is installed.
                    error!("the etcd control-plane task ended; forwarding goes on without it");
                    etcd = None;
                    continue;
                };
                dp.etcd_update(u);
                // What else is queued, then the derived tables once.
                if let Some(h) = etcd.as_mut() {
                    for _ in 0..ETCD_BATCH {
                        match h.updates.try_recv() {
                            Ok(u) => dp.etcd_update(u),
                            Err(_) => break,
                        }
                    }
                }
                dp.etcd_settle().await;
            }
            _ = sightings.tick() => {
                dp.handle_sightings().await;
                if publish_due && let Some(h) = &etcd {
                    publish_due = false;
                    publish(dp, h);
                }
            }
            _ = tick.tick() => {
                if let Some(h) = &etcd {
                    publish(dp, h);
                }
                dp.resolve_remotes().await;
                dp.resync_ports().await;
                dp.sync_family_effects().await;
                if dp.netlink().link_by_index(uplink_index).await.is_err() {
                    break Err(anyhow!("the uplink '{}' was deleted; stopping", dp.uplink().name));
                }
            }
        }
        let now = dp.port_names();
        if now != event_names {
            event_names = now.clone();
            if let Ok(mut n) = names.lock() {
                *n = now;
            }
        }
    };
    keeper.stop();
    if result.is_ok() {
        notify::stopping();
    }
    if let Some(h) = etcd.take() {
        h.stop().await;
    }
    let names = dp.port_names();
    if let Err(e) = state::snapshot(dp.maps(), &names).and_then(|s| state::save(&files.fdb(), &s)) {
        warn!("saving the table: {e:#}");
    }
    dp.save_journal();
    result
}

/// Hands the local view to the control-plane task, if it changed.
fn publish(dp: &Dataplane, h: &etcd::Handle) {
    let local = dp.etcd_local();
    h.local.send_if_modified(|cur| {
        if *cur == local {
            return false;
        }
        *cur = local;
        true
    });
}

/// Reads one request line from a new client (root only) on a task of its
/// own, then queues it for the serve loop.
fn read_request(stream: UnixStream, tx: mpsc::Sender<Pending>) {
    tokio::spawn(async move {
        let mut stream = stream;
        if let Err(e) = check_root(&stream) {
            let _ = answer(
                &mut stream,
                &Response::Error {
                    error: format!("{e:#}"),
                },
            )
            .await;
            return;
        }
        let mut line = String::new();
        let read = {
            let mut reader = BufReader::new(&mut stream);
            tokio::time::timeout(REQUEST_TIMEOUT, reader.read_line(&mut line)).await
        };
        let req = match read {
            Ok(Ok(n)) if n > 0 => serde_json::from_str::<Request>(&line),
            _ => return,
        };
        match req {
            Ok(req) => {
                let _ = tx.try_send(Pending { req, stream });
            }
            Err(e) => {
                let error = format!("request not understood: {e}");
                let _ = answer(&mut stream, &Response::Error { error }).await;
            }
        }
    });
}

/// Only root may use the control socket (the directory is root's too).
fn check_root(stream: &UnixStream) -> Result<()> {
    let cred = stream.peer_cred().context("SO_PEERCRED")?;
    if cred.uid() != 0 {
        anyhow::bail!("only root may control vxlan-fwd");
    }
    Ok(())
}

async fn answer(stream: &mut UnixStream, resp: &Response) -> std::io::Result<()> {
    let mut line = serde_json::to_string(resp).unwrap_or_default();
    line.push('\n');
    stream.write_all(line.as_bytes()).await
}

/// Answers on a task of its own: a client that does not read stalls only
/// that task.
fn answer_later(mut stream: UnixStream, resp: Response) {
    tokio::spawn(async move {
        let _ = tokio::time::timeout(REQUEST_TIMEOUT, answer(&mut stream, &resp)).await;
    });
}

async fn handle(dp: &mut Dataplane, hub: &mut Hub, p: Pending) {
    let Pending { req, mut stream } = p;
    if req == Request::Watch {
        match answer(&mut stream, &Response::ok()).await {
            Ok(()) => {
                if let Err(e) = hub.add(stream) {
                    warn!("{e:#}");
                }
            }
            Err(e) => warn!("fdb watch client: {e}"),
        }
        return;
    }
    let resp = dispatch(dp, req).await;
    answer_later(stream, resp);
}

async fn dispatch(dp: &mut Dataplane, req: Request) -> Response {
    let changes = !matches!(req, Request::VniShow | Request::PortShow);
    let resp = match req {
        Request::VniAdd(spec) => {
            let vni = spec.id;
            let r = if (1..=VNI_MAX).contains(&vni) {
                dp.vni_add(&spec, Origin::Runtime).await
            } else {
                Err(anyhow!("VNI {vni} is outside 1..{VNI_MAX}"))
            };
            Response::from_result(r.map(|()| None))
        }
        Request::VniDel { vni } => Response::from_result(dp.vni_del(vni).await.map(|()| None)),
        Request::VniShow => Response::Vnis {
            vnis: dp.vni_rows(),
        },
        Request::PortAdd { name, vni } => Response::from_result(
            dp.port_add(&name, vni, Origin::Runtime)
                .await
                .map(|()| None),
        ),
        Request::PortDel { name } => Response::from_result(dp.port_del(&name).await.map(|()| None)),
        Request::PortShow => Response::Ports {
            ports: dp.port_rows(),
        },
        Request::Fdb { op, words } => Response::from_result(dp.fdb(op, &words).await.map(|_| None)),
        Request::FdbFlush { vni, learned } => Response::from_result(
            dp.fdb_flush(vni, learned)
                .map(|n| Some(format!("flushed {n} entries"))),
        ),
        Request::Watch => Response::ok(),
    };
    if changes && matches!(resp, Response::Ok { .. }) {
        dp.save_journal();
    }
    resp
}

/// SIGHUP: re-reads the configuration and applies only the difference. A
/// configuration that cannot be read or applied changes nothing.
async fn reload(dp: &mut Dataplane, launch: &Launch, cfg: &mut Config) {
    notify::reloading();
    let what = launch.file.as_ref().map_or_else(
        || "the command line".to_owned(),
        |f| f.display().to_string(),
    );
    match launch.resolve() {
        Err(e) => error!("reload refused, the running configuration is kept: {e:#}"),
        Ok(new) => match apply(dp, cfg, &new).await {
            Ok(problems) => {
                for p in &problems {
                    warn!("reload: {p}");
                }
                *cfg = new;
                dp.save_journal();
                info!("reloaded {what}");
                println!("vxlan-fwd: reloaded {what}");
            }
            Err(e) => error!("reload refused, the running configuration is kept: {e:#}"),
        },
    }
    notify::ready();
}

async fn apply(dp: &mut Dataplane, old: &Config, new: &Config) -> Result<Vec<String>> {
    if new.iface != old.iface {
        anyhow::bail!(
            "the uplink cannot change from '{}' to '{}' without a restart",
            old.iface,
            new.iface
        );
    }
    if new.max_fdb > dp.map_max_fdb() {
        anyhow::bail!(
            "max_fdb can only grow beyond {} with a restart (the FDB map's size is fixed)",
            dp.map_max_fdb()
        );
    }
    if new.ageing != old.ageing {
        warn!("a new `ageing` takes effect at the next restart");
    }
    if new.etcd != old.etcd {
        anyhow::bail!("the [etcd] settings cannot change without a restart");
    }
    // Ports first: nothing changes if one is missing.
    let problems = dp.apply_config(new).await?;
    dp.set_settings(Settings::from(new))?;
    if new.local != old.local {
        // Families no longer fixed follow the uplink's addresses again.
        let (nl, index) = (dp.netlink().clone(), dp.uplink().index);
        let a4 = nl.first_ipv4(index).await?;
        let a6 = nl.first_ipv6_global(index).await?;
        dp.uplink_address(a4, a6)?;
    }
    Ok(problems)
}
