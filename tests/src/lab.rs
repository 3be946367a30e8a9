//! The run-wide record of what the lab created, for a teardown from a
//! signal handler (`cargo xtask demo|soak|bench` on Ctrl-C).
//!
//! Guards ([`crate::NetNs`], [`crate::Process`]) clean up when dropped; a
//! signal, though, ends the process without running them. So every
//! namespace created and every process started is also recorded here, and
//! [`teardown_and_exit`] stops those processes (SIGINT, then SIGKILL) and deletes
//! those namespaces plus every namespace whose name starts with a claimed
//! prefix. Namespaces are created under the record's lock and not at all
//! after a teardown, so nothing is left behind by a run that is torn down
//! while it is still building; and every other thread that reaches the lab
//! (starting or reaping a process, deleting a namespace: see [`checkpoint`])
//! waits there until the teardown has exited the process, so it neither
//! races the teardown nor ends the process before it is done.

use std::{
    collections::BTreeSet,
    sync::{Mutex, MutexGuard, OnceLock, PoisonError},
    thread::ThreadId,
    time::{Duration, Instant},
};

use anyhow::{Result, bail};
use nix::sys::signal::Signal;

use crate::netns::{alive, delete_netns, list_netns, signal_pid};

#[derive(Default)]
struct Created {
    prefixes: BTreeSet<String>,
    namespaces: BTreeSet<String>,
    torn_down: bool,
}

static CREATED: Mutex<Created> = Mutex::new(Created {
    prefixes: BTreeSet::new(),
    namespaces: BTreeSet::new(),
    torn_down: false,
});
/// The thread running [`teardown_and_exit`], once one does.
static TEARDOWN: OnceLock<ThreadId> = OnceLock::new();

/// Where the lab's operations stop once a teardown runs on another thread:
/// the calling thread waits for the process to exit. A no-op otherwise
/// (always, in the tests). `cargo xtask` also calls it before exiting.
pub fn checkpoint() {
    if TEARDOWN
        .get()
        .is_some_and(|t| *t != std::thread::current().id())
    {
        loop {
            std::thread::park();
        }
    }
}

/// Processes started and not reaped yet: (pid, label). A lock of its own:
/// processes are started (helper commands) while `CREATED` is held.
static PROCESSES: Mutex<Vec<(u32, String)>> = Mutex::new(Vec::new());

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Runs `create` (which creates namespace `name`) under the lock and
/// records the name; fails without running it after a [`teardown_and_exit`].
pub(crate) fn create_namespace<T>(name: &str, create: impl FnOnce() -> Result<T>) -> Result<T> {
    let mut c = lock(&CREATED);
    if c.torn_down {
        bail!("not creating namespace {name}: the lab is being torn down");
    }
    let r = create()?;
    c.namespaces.insert(name.to_owned());
    Ok(r)
}

/// A namespace deleted by its guard.
pub(crate) fn forget_namespace(name: &str) {
    lock(&CREATED).namespaces.remove(name);
}

/// Records that every namespace named `<prefix>...` belongs to this run:
/// [`teardown_and_exit`] deletes them all, also ones a helper created directly.
pub fn claim_prefix(prefix: &str) {
    assert!(!prefix.is_empty(), "refusing to claim every namespace");
    lock(&CREATED).prefixes.insert(prefix.to_owned());
}

pub(crate) fn track_process(pid: u32, label: &str) {
    lock(&PROCESSES).push((pid, label.to_owned()));
}

pub(crate) fn untrack_process(pid: u32) {
    lock(&PROCESSES).retain(|(p, _)| *p != pid);
}

/// Stops every recorded process (SIGINT, SIGKILL after `grace`), deletes
/// every recorded namespace and every namespace with a claimed prefix
/// (killing what still runs inside), then exits with `128 + sig` (what a
/// signal handler does). Meanwhile other threads wait at their next
/// [`checkpoint`]; no namespace is created any more. Never panics.
pub fn teardown_and_exit(sig: i32, grace: Duration) -> ! {
    if TEARDOWN.set(std::thread::current().id()).is_err() {
        // A second signal while the first teardown runs: that one exits.
        checkpoint();
    }
    teardown(grace);
    std::process::exit(128 + sig)
}

fn teardown(grace: Duration) {
    let (prefixes, mut names) = {
        let mut c = lock(&CREATED);
        c.torn_down = true;
        (c.prefixes.clone(), std::mem::take(&mut c.namespaces))
    };
    let procs = std::mem::take(&mut *lock(&PROCESSES));
    stop_pids(&procs, grace);
    let existing = list_netns();
    for p in &prefixes {
        names.extend(
            existing
                .iter()
                .filter(|n| n.starts_with(p.as_str()))
                .cloned(),
        );
    }
    // A guard may have deleted some meanwhile (its thread was past its
    // checkpoint when the signal came).
    names.retain(|n| existing.contains(n));
    if !names.is_empty() {
        say!(
            "lab: deleting namespaces {}",
            names.iter().cloned().collect::<Vec<_>>().join(", ")
        );
    }
    for n in &names {
        delete_netns(n);
    }
}

fn stop_pids(procs: &[(u32, String)], grace: Duration) {
    for (pid, label) in procs.iter().filter(|(p, _)| alive(*p)) {
        say!("lab: [{label}] sending SIGINT");
        signal_pid(*pid, Signal::SIGINT);
    }
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline && procs.iter().any(|(p, _)| alive(*p)) {
        std::thread::sleep(Duration::from_millis(50));
    }
    for (pid, label) in procs.iter().filter(|(p, _)| alive(*p)) {
        say!(
            "lab: [{label}] still running {} s after SIGINT; killing it",
            grace.as_secs()
        );
        signal_pid(*pid, Signal::SIGKILL);
    }
}
