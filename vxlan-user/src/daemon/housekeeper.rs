//! The jobs that walk the whole FDB (ageing, the scan for static remote
//! entries, snapshots to the state file) on a thread of their own, so that
//! the serve loop never waits for them: at a million entries one walk
//! takes some 0.3 s. The thread has its own handles on the datapath's maps
//! (opened by id) and reports to the serve loop through a channel.

use std::{
    collections::{BTreeSet, HashMap as StdHashMap},
    net::IpAddr,
    path::PathBuf,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result};
use log::{info, warn};
use tokio::sync::mpsc;
use vxlan_common::{FdbEntry, FdbKey};

use crate::{fdb, maps::Maps, state};

/// How often the table is written to the state file, if it changed (and
/// always at stop). After a crash the live maps are adopted, so this is
/// only a safety net.
const SNAPSHOT_EVERY: Duration = Duration::from_secs(30);
/// Static remote entries are looked for at most 1/this of the time: small
/// FDBs every second, large ones less often...
const STATIC_SCAN_SPACING: u32 = 100;
/// ...but at least this often.
const STATIC_SCAN_MAX_WAIT: Duration = Duration::from_secs(30);

/// What the housekeeper reports.
pub enum Report {
    /// Learned entries that aged out.
    Aged(Vec<(FdbKey, FdbEntry)>),
    /// The (VNI, remote) pairs of static FDB entries behind a remote.
    StaticRemotes(BTreeSet<(u32, IpAddr)>),
}

/// Port names by ifindex, kept current by the serve loop (for snapshots).
pub type Names = Arc<Mutex<StdHashMap<u32, String>>>;

pub struct Housekeeper {
    stop: Arc<AtomicBool>,
    thread: Option<thread::JoinHandle<()>>,
}

impl Housekeeper {
    /// Starts the thread on the maps of program `prog_id`.
    pub fn start(
        prog_id: u32,
        ageing_s: u64,
        snapshot: PathBuf,
        names: Names,
    ) -> Result<(Self, mpsc::UnboundedReceiver<Report>)> {
        let maps = Maps::from_program(prog_id).context("opening the maps for housekeeping")?;
        let stop = Arc::new(AtomicBool::new(false));
        let (tx, rx) = mpsc::unbounded_channel();
        let flag = stop.clone();
        let thread = thread::Builder::new()
            .name("housekeeping".into())
            .spawn(move || run(maps, ageing_s, snapshot, names, flag, tx))
            .context("starting the housekeeping thread")?;
        Ok((
            Self {
                stop,
                thread: Some(thread),
            },
            rx,
        ))
    }

    /// Stops the thread and waits for it.
    pub fn stop(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Housekeeper {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn run(
    mut maps: Maps,
    ageing_s: u64,
    snapshot: PathBuf,
    names: Names,
    stop: Arc<AtomicBool>,
    tx: mpsc::UnboundedSender<Report>,
) {
    let ageing_ns = ageing_s.saturating_mul(1_000_000_000);
    let age_every = Duration::from_millis(ageing_s.saturating_mul(100).clamp(500, 30_000));
    let now = Instant::now();
    let mut next_age = now + age_every;
    let mut next_scan = now;
    let mut next_snap = now + SNAPSHOT_EVERY;
    let mut digest: Option<state::Digest> = None;
    let mut last_statics: Option<BTreeSet<(u32, IpAddr)>> = None;
    while !stop.load(Ordering::Relaxed) {
        thread::sleep(Duration::from_millis(100));
        let now = Instant::now();
        if now >= next_age {
            next_age = now + age_every;
            match fdb::age(&mut maps, ageing_ns, fdb::monotonic_ns()) {
                Ok(gone) if !gone.is_empty() => {
                    info!("aged out {} FDB entries", gone.len());
                    let _ = tx.send(Report::Aged(gone));
                }
                Ok(_) => {}
                Err(e) => warn!("ageing: {e:#}"),
            }
        }
        if now >= next_scan {
            match fdb::static_remotes(&maps) {
                Ok(set) if last_statics.as_ref() != Some(&set) => {
                    last_statics = Some(set.clone());
                    let _ = tx.send(Report::StaticRemotes(set));
                }
                Ok(_) => {}
                Err(e) => warn!("looking for static remote entries: {e:#}"),
            }
            let wait = now.elapsed().saturating_mul(STATIC_SCAN_SPACING);
            next_scan = now + wait.clamp(Duration::from_secs(1), STATIC_SCAN_MAX_WAIT);
        }
        if now >= next_snap {
            next_snap = now + SNAPSHOT_EVERY;
            let names = names.lock().map(|n| n.clone()).unwrap_or_default();
            if let Err(e) = state::save_if_changed(&maps, &names, &snapshot, &mut digest) {
                warn!("saving the table: {e:#}");
            }
        }
    }
}
