//! FDB events: learn and move (from the datapath's EVENTS ring buffer) and
//! age-out (from the loader's ageing), fanned out to `fdb watch` clients.
//!
//! The running forwarder listens on an abstract unix socket, which is
//! private to its network namespace like everything else it owns; `fdb
//! watch` connects to it and prints one event per line.

use std::{
    collections::HashMap as StdHashMap,
    net::Ipv4Addr,
    os::{linux::net::SocketAddrExt as _, unix::net::SocketAddr},
};

use anyhow::{Context as _, Result};
use serde::{Deserialize, Serialize};
use tokio::{
    io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader},
    net::{UnixListener, UnixStream},
};
use vxlan_common::{EV_AGE, EV_LEARN, EV_MOVE, FdbEvent};

use crate::netlink::format_mac;

/// One event, as `fdb watch --json` prints it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    pub event: String,
    pub mac: String,
    pub dst: Option<Ipv4Addr>,
    pub dev: Option<String>,
    pub vni: u32,
}

impl Event {
    pub fn from_raw(ev: &FdbEvent, names: &StdHashMap<u32, String>) -> Self {
        let event = match ev.kind {
            EV_LEARN => "learn",
            EV_MOVE => "move",
            EV_AGE => "age",
            _ => "unknown",
        };
        Self {
            event: event.to_owned(),
            mac: format_mac(&ev.mac),
            dst: (ev.ifindex == 0).then(|| Ipv4Addr::from(ev.remote)),
            dev: (ev.ifindex != 0).then(|| {
                names
                    .get(&ev.ifindex)
                    .cloned()
                    .unwrap_or_else(|| format!("if{}", ev.ifindex))
            }),
            vni: ev.vni,
        }
    }
}

impl std::fmt::Display for Event {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.event, self.mac)?;
        if let Some(dst) = self.dst {
            write!(f, " dst {dst}")?;
        }
        if let Some(dev) = &self.dev {
            write!(f, " dev {dev}")?;
        }
        write!(f, " vni {}", self.vni)
    }
}

/// The socket name of the forwarder whose uplink has `ifindex`.
fn socket_addr(uplink_ifindex: u32) -> Result<SocketAddr> {
    SocketAddr::from_abstract_name(format!("vxlan-fwd/{uplink_ifindex}/events"))
        .context("building the events socket address")
}

/// The forwarder's side: accepts watchers and sends them every event.
pub struct Hub {
    listener: UnixListener,
    watchers: Vec<UnixStream>,
}

impl Hub {
    pub fn bind(uplink_ifindex: u32) -> Result<Self> {
        let std = std::os::unix::net::UnixListener::bind_addr(&socket_addr(uplink_ifindex)?)
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::AddrInUse => {
                    anyhow::anyhow!("another vxlan-fwd is running on this uplink; stop it first")
                }
                _ => anyhow::Error::new(e).context("binding the events socket"),
            })?;
        std.set_nonblocking(true)?;
        Ok(Self {
            listener: UnixListener::from_std(std)?,
            watchers: Vec::new(),
        })
    }

    /// Waits for the next watcher and keeps it.
    pub async fn accept(&mut self) -> Result<()> {
        let (stream, _) = self.listener.accept().await?;
        self.watchers.push(stream);
        Ok(())
    }

    /// Sends `event` to every watcher as a JSON line; drops those gone.
    pub async fn publish(&mut self, event: &Event) {
        if self.watchers.is_empty() {
            return;
        }
        let Ok(mut line) = serde_json::to_string(event) else {
            return;
        };
        line.push('\n');
        let mut alive = Vec::with_capacity(self.watchers.len());
        for mut w in self.watchers.drain(..) {
            if w.write_all(line.as_bytes()).await.is_ok() {
                alive.push(w);
            }
        }
        self.watchers = alive;
    }
}

/// `fdb watch`: prints the events of the forwarder whose uplink has
/// `ifindex` until it stops.
pub async fn watch(uplink_ifindex: u32, json: bool) -> Result<()> {
    let std = std::os::unix::net::UnixStream::connect_addr(&socket_addr(uplink_ifindex)?)
        .context("connecting to the forwarder's event socket")?;
    std.set_nonblocking(true)?;
    let mut lines = BufReader::new(UnixStream::from_std(std)?).lines();
    println!("watching FDB events (Ctrl-C to stop)");
    while let Some(line) = lines.next_line().await? {
        if json {
            println!("{line}");
        } else if let Ok(ev) = serde_json::from_str::<Event>(&line) {
            println!("{ev}");
        }
    }
    Ok(())
}
