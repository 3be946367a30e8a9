//! FDB events: learn and move (from the datapath's EVENTS ring buffer) and
//! age-out (from the loader's ageing), fanned out to `fdb watch` clients.
//!
//! `fdb watch` connects to the forwarder's control socket (root only; see
//! [`crate::control`]) and prints one event per line.

use std::{collections::HashMap as StdHashMap, sync::Arc};

use anyhow::Result;
use log::warn;
use serde::{Deserialize, Serialize};
use tokio::{
    io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _},
    net::UnixStream,
    sync::mpsc,
};
use vxlan_common::{EV_AGE, EV_LEARN, EV_MOVE, FdbEvent};

use crate::fdb::FdbRow;

/// One event, as `fdb watch --json` prints it: the kind, then the entry's
/// fields (the [`FdbRow`] of `fdb show --json`; events are of learned
/// entries: not permanent, origin `learned`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// `learn`, `move` or `age`.
    pub event: String,
    #[serde(flatten)]
    pub entry: FdbRow,
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
            entry: FdbRow {
                origin: Some("learned".to_owned()),
                ..FdbRow::at(ev.vni, &ev.mac, &ev.remote, ev.ifindex, names)
            },
        }
    }
}

impl std::fmt::Display for Event {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.event, self.entry)
    }
}

/// Most `fdb watch` clients at once.
pub const MAX_WATCHERS: usize = 16;
/// Events queued for one watcher; a watcher that falls this far behind
/// has stopped reading and is dropped.
const WATCHER_QUEUE: usize = 4096;
/// One event line must be taken by the client within this time.
const WRITE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// The forwarder's side: a bounded queue and a writer task per watcher,
/// so that a watcher that stops reading stalls nothing but itself.
#[derive(Default)]
pub struct Hub {
    watchers: Vec<Watcher>,
    next_id: u64,
}

struct Watcher {
    id: u64,
    queue: mpsc::Sender<Arc<str>>,
}

impl Hub {
    /// Takes a watcher's connection (a `Watch` request was read from it).
    pub fn add(&mut self, stream: UnixStream) -> Result<()> {
        self.watchers.retain(|w| !w.queue.is_closed());
        if self.watchers.len() >= MAX_WATCHERS {
            anyhow::bail!("too many `fdb watch` clients (at most {MAX_WATCHERS})");
        }
        let (tx, mut rx) = mpsc::channel::<Arc<str>>(WATCHER_QUEUE);
        let id = self.next_id;
        self.next_id += 1;
        tokio::spawn(async move {
            let (mut read, mut write) = stream.into_split();
            let mut buf = [0u8; 64];
            loop {
                tokio::select! {
                    line = rx.recv() => {
                        let Some(line) = line else { break };
                        // A client that stops reading is also dropped here.
                        let sent = tokio::time::timeout(
                            WRITE_TIMEOUT,
                            write.write_all(line.as_bytes()),
                        )
                        .await;
                        if !matches!(sent, Ok(Ok(()))) {
                            break;
                        }
                    }
                    // The client went away (or sent something: ignored).
                    r = read.read(&mut buf) => if matches!(r, Ok(0) | Err(_)) { break },
                }
            }
        });
        self.watchers.push(Watcher { id, queue: tx });
        Ok(())
    }

    /// Queues `event` for every watcher as a JSON line; drops watchers that
    /// are gone or too far behind. Never waits.
    pub fn publish(&mut self, event: &Event) {
        if self.watchers.is_empty() {
            return;
        }
        let Ok(mut line) = serde_json::to_string(event) else {
            return;
        };
        line.push('\n');
        let line: Arc<str> = line.into();
        self.watchers
            .retain(|w| match w.queue.try_send(line.clone()) {
                Ok(()) => true,
                Err(mpsc::error::TrySendError::Full(_)) => {
                    warn!(
                        "fdb watch client {} stopped reading ({WATCHER_QUEUE} events behind): \
                     disconnected",
                        w.id
                    );
                    false
                }
                Err(mpsc::error::TrySendError::Closed(_)) => false,
            });
    }

    pub fn len(&self) -> usize {
        self.watchers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.watchers.is_empty()
    }
}

/// `fdb watch`: prints the events of the running forwarder until it stops.
pub async fn watch(iface: Option<&str>, json: bool) -> Result<()> {
    let mut lines = crate::control::send(iface, &crate::control::Request::Watch)
        .await?
        .lines();
    let first = lines
        .next_line()
        .await?
        .ok_or_else(|| anyhow::anyhow!("the forwarder closed the connection"))?;
    match serde_json::from_str::<crate::control::Response>(&first) {
        Ok(crate::control::Response::Error { error }) => anyhow::bail!(error),
        Ok(_) => {}
        Err(e) => return Err(anyhow::Error::new(e).context("the forwarder's answer")),
    }
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
