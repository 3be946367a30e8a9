//! The fleet control plane on etcd: membership, MACs and IPv4 addresses
//! from a shared store instead of flood-and-learn.
//!
//! One task ([`spawn`]) holds the etcd session; the serve loop, which owns
//! the [`Dataplane`](crate::dataplane::Dataplane), talks to it through two
//! channels:
//!
//! - [`Update`]s from etcd: a full [`Table`] when a session starts (a full
//!   read, then a watch from that revision: nothing is missed, and what
//!   vanished meanwhile is gone from the table), then each [`Change`];
//! - the [`Local`] view (the VNIs served, the local endpoints and their
//!   addresses), which the task publishes under its lease.
//!
//! Losing etcd changes nothing in the datapath: forwarding goes on with the
//! last known state while the task reconnects with backoff, saying so once
//! per state change. A session that comes back registers again under a new
//! lease and revokes the old one.

pub mod schema;

use std::{
    collections::BTreeMap,
    net::{IpAddr, Ipv4Addr},
    time::Duration,
};

use anyhow::{Context as _, Result, anyhow, bail};
use etcd_client::{
    Certificate, Client, Compare, CompareOp, ConnectOptions, EventType, GetOptions, Identity,
    PutOptions, TlsOptions, Txn, TxnOp, WatchOptions,
};
use log::{info, warn};
use tokio::sync::{mpsc, watch};

pub use self::schema::{Change, MacValue, Table};
use crate::{config::EtcdConfig, netlink::format_mac};

/// From etcd to the dataplane.
#[derive(Debug)]
pub enum Update {
    /// The whole table, at the start of every session.
    Snapshot(Table),
    /// One change, in revision order.
    Change(Change),
    /// The session's state, for `stats` and logs.
    Connected(bool),
}

/// A local endpoint to publish.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Endpoint {
    pub ip: Option<Ipv4Addr>,
    /// `CLOCK_MONOTONIC` ns when the datapath last saw it (its FDB entry).
    pub seen_ns: u64,
}

/// What this forwarder publishes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Local {
    /// The VNIs served, each with our VTEP address in it (the local
    /// address of the VNI's underlay family; VNIs of a family without a
    /// local address are left out).
    pub vnis: BTreeMap<u32, IpAddr>,
    pub endpoints: BTreeMap<(u32, [u8; 6]), Endpoint>,
}

/// The task's side of the channels.
pub struct Handle {
    pub updates: mpsc::Receiver<Update>,
    pub local: watch::Sender<Local>,
    task: tokio::task::JoinHandle<()>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Handle {
    /// Ends the session: the lease is revoked (our keys vanish at once for
    /// every other forwarder) if etcd answers within a second.
    pub async fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if tokio::time::timeout(Duration::from_secs(2), &mut self.task)
            .await
            .is_err()
        {
            self.task.abort();
        }
    }
}

/// Shortest and longest wait between two connection attempts.
const BACKOFF_MIN: Duration = Duration::from_millis(200);
const BACKOFF_MAX: Duration = Duration::from_secs(3);

/// Starts the control-plane task.
pub fn spawn(cfg: EtcdConfig) -> Result<Handle> {
    let opts = connect_options(&cfg)?;
    let (tx, updates) = mpsc::channel(4096);
    let (local, local_rx) = watch::channel(Local::default());
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel();
    let task = tokio::spawn(run(cfg, opts, tx, local_rx, stop_rx));
    Ok(Handle {
        updates,
        local,
        task,
        stop: Some(stop_tx),
    })
}

fn connect_options(cfg: &EtcdConfig) -> Result<ConnectOptions> {
    let mut o = ConnectOptions::new()
        .with_connect_timeout(Duration::from_secs(2))
        .with_timeout(Duration::from_secs(5))
        .with_keep_alive(Duration::from_secs(1), Duration::from_secs(2))
        .with_keep_alive_while_idle(true);
    let https = cfg.endpoints.iter().any(|e| e.starts_with("https://"));
    if https || cfg.ca.is_some() || cfg.cert.is_some() {
        let mut tls = TlsOptions::new();
        if let Some(ca) = &cfg.ca {
            let pem = std::fs::read(ca)
                .with_context(|| format!("reading the etcd CA certificate '{}'", ca.display()))?;
            tls = tls.ca_certificate(Certificate::from_pem(pem));
        }
        match (&cfg.cert, &cfg.key) {
            (Some(c), Some(k)) => {
                let cert = std::fs::read(c).with_context(|| {
                    format!("reading the etcd client certificate '{}'", c.display())
                })?;
                let key = std::fs::read(k)
                    .with_context(|| format!("reading the etcd client key '{}'", k.display()))?;
                tls = tls.identity(Identity::from_pem(cert, key));
            }
            (None, None) => {}
            _ => bail!("etcd: `cert` and `key` go together"),
        }
        o = o.with_tls(tls);
    }
    Ok(o)
}

/// The session state that outlives one connection.
struct State {
    cfg: EtcdConfig,
    opts: ConnectOptions,
    /// The last session's client (to revoke the lease when leaving).
    client: Option<Client>,
    tx: mpsc::Sender<Update>,
    local: watch::Receiver<Local>,
    /// What etcd holds, as of the last event.
    table: Table,
    /// Lease of the previous session, revoked once a new one holds our keys.
    old_lease: Option<i64>,
    /// Keys published in this session, with their values.
    published: BTreeMap<String, String>,
    /// Our endpoints that another VTEP published later, and when (local
    /// monotonic ns): published again only when seen here after that.
    taken: BTreeMap<(u32, [u8; 6]), u64>,
}

async fn run(
    cfg: EtcdConfig,
    opts: ConnectOptions,
    tx: mpsc::Sender<Update>,
    local: watch::Receiver<Local>,
    mut stop: tokio::sync::oneshot::Receiver<()>,
) {
    let endpoints = cfg.endpoints.join(",");
    let mut st = State {
        cfg,
        opts,
        client: None,
        tx,
        local,
        table: Table::default(),
        old_lease: None,
        published: BTreeMap::new(),
        taken: BTreeMap::new(),
    };
    let mut backoff = BACKOFF_MIN;
    // None: never tried; Some(up).
    let mut up: Option<bool> = None;
    loop {
        let outcome = tokio::select! {
            _ = &mut stop => break,
            r = session(&mut st, &mut up, &endpoints) => r,
        };
        let e = match outcome {
            Ok(()) => anyhow!("the session ended"),
            Err(e) => e,
        };
        if up == Some(true) {
            warn!(
                "etcd: lost the connection to {endpoints} ({e:#}); forwarding goes on with \
                 the last known state, reconnecting"
            );
            println!(
                "vxlan-fwd: etcd: connection lost; forwarding goes on with the last known state"
            );
            let _ = st.tx.send(Update::Connected(false)).await;
            backoff = BACKOFF_MIN;
        } else if up.is_none() {
            warn!("etcd: cannot reach {endpoints} ({e:#}); retrying");
            println!("vxlan-fwd: etcd: cannot reach {endpoints}; retrying");
        }
        up = Some(false);
        st.published.clear();
        tokio::select! {
            _ = &mut stop => break,
            _ = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(BACKOFF_MAX);
    }
    // Leaving: our keys go with our lease.
    if let (Some(id), Some(mut c)) = (st.old_lease.take(), st.client.take()) {
        let _ = tokio::time::timeout(Duration::from_secs(1), c.lease_revoke(id)).await;
    }
}

/// One session: connect, lease, full read, publish, then watch and keep
/// the lease alive until something fails.
async fn session(st: &mut State, up: &mut Option<bool>, endpoints: &str) -> Result<()> {
    let mut client = Client::connect(st.cfg.endpoints.clone(), Some(st.opts.clone()))
        .await
        .context("connecting")?;
    st.client = Some(client.clone());
    let ttl = i64::try_from(st.cfg.ttl).unwrap_or(i64::MAX);
    let lease = client
        .lease_grant(ttl, None)
        .await
        .context("granting a lease")?
        .id();
    let (mut keeper, mut alive) = client
        .lease_keep_alive(lease)
        .await
        .context("keeping the lease alive")?;

    // A full read, then a watch from the next revision.
    let root = schema::root(&st.cfg.prefix);
    let resp = client
        .get(root.clone(), Some(GetOptions::new().with_prefix()))
        .await
        .context("reading the table")?;
    let revision = resp.header().map_or(0, |h| h.revision());
    let mut table = Table::default();
    for kv in resp.kvs() {
        if let Err(e) = table.put(&st.cfg.prefix, kv.key(), kv.value()) {
            skip(kv.key(), &e);
        }
    }
    // Endpoints of ours that another VTEP published while we were away
    // (they moved): not published again unless seen here after now.
    {
        let local = st.local.borrow();
        let now = crate::fdb::monotonic_ns();
        for (k, v) in &table.macs {
            if local.vnis.get(&k.0) != Some(&v.vtep) && local.endpoints.contains_key(k) {
                st.taken.insert(*k, now);
            }
        }
    }
    let mut watch = client
        .watch(
            root,
            Some(
                WatchOptions::new()
                    .with_prefix()
                    .with_start_revision(revision + 1),
            ),
        )
        .await
        .context("watching")?;
    let n = table.macs.len();
    st.table = table.clone();
    st.tx
        .send(Update::Snapshot(table))
        .await
        .map_err(|_| anyhow!("the forwarder is stopping"))?;
    st.tx.send(Update::Connected(true)).await.ok();

    // Our keys under the new lease, then the old lease goes.
    st.published.clear();
    let local = st.local.borrow_and_update().clone();
    publish(st, &mut client, lease, &local).await?;
    if let Some(old) = st.old_lease.replace(lease)
        && old != lease
    {
        let _ = client.lease_revoke(old).await;
    }
    let what = if *up == Some(false) {
        "reconnected to"
    } else {
        "connected to"
    };
    info!(
        "etcd: {what} {endpoints}: {} VNI(s) registered, {n} remote MAC(s) known",
        local.vnis.len()
    );
    println!("vxlan-fwd: etcd: {what} {endpoints} (lease {lease:x})");
    *up = Some(true);

    let mut keep = tokio::time::interval(Duration::from_millis(
        (st.cfg.ttl * 1000 / 3).clamp(100, 5000),
    ));
    loop {
        tokio::select! {
            _ = keep.tick() => {
                keeper.keep_alive().await.context("keeping the lease alive")?;
            }
            msg = alive.message() => match msg.context("keeping the lease alive")? {
                Some(r) if r.ttl() <= 0 => bail!("the lease expired"),
                Some(_) => {}
                None => bail!("the lease keep-alive stream ended"),
            },
            msg = watch.message() => {
                let Some(resp) = msg.context("watching")? else {
                    bail!("the watch ended");
                };
                if resp.canceled() {
                    bail!("the watch was cancelled ({})", resp.cancel_reason());
                }
                for ev in resp.events() {
                    let Some(kv) = ev.kv() else { continue };
                    let r = match ev.event_type() {
                        EventType::Put => st.table.put(&st.cfg.prefix, kv.key(), kv.value()),
                        EventType::Delete => st.table.delete(&st.cfg.prefix, kv.key()),
                    };
                    match r {
                        Ok(Some(change)) => {
                            noticed(st, &change);
                            st.tx
                                .send(Update::Change(change))
                                .await
                                .map_err(|_| anyhow!("the forwarder is stopping"))?;
                        }
                        Ok(None) => {}
                        Err(e) => skip(kv.key(), &e),
                    }
                }
            }
            changed = st.local.changed() => {
                if changed.is_err() {
                    return Ok(());
                }
                let local = st.local.borrow_and_update().clone();
                publish(st, &mut client, lease, &local).await?;
            }
        }
    }
}

/// One log line per refused key or value: it is skipped, nothing else.
fn skip(key: &[u8], why: &str) {
    warn!(
        "etcd: skipping '{}': {why}",
        String::from_utf8_lossy(key)
            .chars()
            .take(200)
            .collect::<String>()
    );
}

/// Another VTEP took one of our endpoints (it moved there).
fn noticed(st: &mut State, change: &Change) {
    let Change::Mac {
        vni,
        mac,
        value: Some(v),
    } = change
    else {
        return;
    };
    let (ours, here) = {
        let l = st.local.borrow();
        (
            l.vnis.get(vni).copied(),
            l.endpoints.contains_key(&(*vni, *mac)),
        )
    };
    if Some(v.vtep) != ours {
        let key = schema::mac_key(&st.cfg.prefix, *vni, mac);
        let was_ours = st.published.remove(&key).is_some();
        if was_ours {
            info!("etcd: {} of VNI {vni} moved to {}", format_mac(mac), v.vtep);
        }
        if was_ours || here {
            st.taken.insert((*vni, *mac), crate::fdb::monotonic_ns());
        }
    }
}

/// Brings our keys in line with `local`: VTEP membership of each VNI and
/// our endpoints, under `lease`. Keys we no longer want are deleted only
/// while they still hold what we wrote.
async fn publish(st: &mut State, client: &mut Client, lease: i64, local: &Local) -> Result<()> {
    let prefix = st.cfg.prefix.clone();
    let mut want: BTreeMap<String, String> = BTreeMap::new();
    for (&vni, &vtep) in &local.vnis {
        want.insert(
            schema::vtep_key(&prefix, vni, vtep),
            schema::vtep_value(vtep),
        );
    }
    for (&(vni, mac), ep) in &local.endpoints {
        let Some(&vtep) = local.vnis.get(&vni) else {
            continue;
        };
        if let Some(&at) = st.taken.get(&(vni, mac)) {
            if ep.seen_ns <= at {
                continue;
            }
            st.taken.remove(&(vni, mac));
        }
        let v = MacValue { vtep, ip: ep.ip };
        want.insert(schema::mac_key(&prefix, vni, &mac), schema::mac_value(&v));
    }
    let gone: Vec<(String, String)> = st
        .published
        .iter()
        .filter(|(k, _)| !want.contains_key(*k))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    for (k, v) in gone {
        let txn = Txn::new()
            .when([Compare::value(k.clone(), CompareOp::Equal, v)])
            .and_then([TxnOp::delete(k.clone(), None)]);
        client.txn(txn).await.context("withdrawing a key")?;
        st.published.remove(&k);
    }
    for (k, v) in want {
        if st.published.get(&k) == Some(&v) {
            continue;
        }
        client
            .put(
                k.clone(),
                v.clone(),
                Some(PutOptions::new().with_lease(lease)),
            )
            .await
            .context("publishing")?;
        st.published.insert(k, v);
    }
    Ok(())
}
