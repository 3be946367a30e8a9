//! Running `vxlan-fwd` inside a namespace.

use std::{collections::BTreeMap, ffi::OsStr, path::PathBuf, time::Duration};

use serde_json::Value;

use crate::{
    netns::{CMD_TIMEOUT, netns_command},
    process::{Output, Process, describe, run_with_timeout},
};

/// How long `vxlan-fwd` may take to print its `ready` line.
pub const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// Prefix of the line `vxlan-fwd` prints once attached.
pub const READY_PREFIX: &str = "vxlan-fwd: ready";

/// The `vxlan-fwd` executable: `$VXLAN_FWD_BIN` (set by `cargo xtask test`),
/// else `<workspace>/target/release/vxlan-fwd`. Panics if it does not exist.
pub fn vxlan_fwd_bin() -> PathBuf {
    let path = match std::env::var_os("VXLAN_FWD_BIN") {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/release/vxlan-fwd"),
    };
    path.canonicalize().unwrap_or_else(|e| {
        panic!(
            "vxlan-fwd binary {} not found ({e}): build it with `cargo build --release -p \
             vxlan-user` or set VXLAN_FWD_BIN",
            path.display()
        )
    })
}

/// Runs `vxlan-fwd args...` in namespace `ns` to completion (at most
/// [`CMD_TIMEOUT`]; a forwarder that starts instead of failing is stopped
/// then, with `timed_out` set). For one-shot commands (`fdb show`, `stats`)
/// and starts that are expected to fail.
pub fn vxlan_fwd<S: AsRef<OsStr>>(
    ns: impl AsRef<str>,
    args: impl IntoIterator<Item = S>,
) -> Output {
    vxlan_fwd_timeout(ns, args, CMD_TIMEOUT)
}

/// [`vxlan_fwd`] with a chosen timeout.
pub fn vxlan_fwd_timeout<S: AsRef<OsStr>>(
    ns: impl AsRef<str>,
    args: impl IntoIterator<Item = S>,
    timeout: Duration,
) -> Output {
    let mut c = netns_command(ns.as_ref(), vxlan_fwd_bin());
    c.args(args);
    run_with_timeout(c, timeout)
}

/// A `vxlan-fwd` running in a namespace. Dropping it stops it (SIGINT,
/// 5 s, SIGKILL).
pub struct Forwarder {
    ns: String,
    proc: Process,
    ready: String,
}

impl Forwarder {
    /// Starts `vxlan-fwd args...` in namespace `ns` and waits (up to
    /// [`READY_TIMEOUT`]) for its `ready` line. Panics with its output when it
    /// exits or does not get ready.
    pub fn start(ns: impl AsRef<str>, args: &[&str]) -> Self {
        let ns = ns.as_ref();
        match Self::try_start(ns, args) {
            Ok(f) => f,
            Err(out) => panic!(
                "vxlan-fwd {} in {ns} did not get ready: {out}",
                args.join(" ")
            ),
        }
    }

    /// Like [`Forwarder::start`] but returns the output of a start that
    /// failed (exited, or no `ready` line in time: then it is stopped and
    /// `timed_out` is set).
    pub fn try_start(ns: impl AsRef<str>, args: &[&str]) -> Result<Self, Output> {
        let ns = ns.as_ref();
        let mut c = netns_command(ns, vxlan_fwd_bin());
        c.args(args);
        let label = format!("vxlan-fwd@{ns}");
        eprintln!("[{label}] {}", describe(&c));
        let mut proc = Process::spawn(c, &label);
        match proc.wait_for_line(READY_TIMEOUT, |l| l.starts_with(READY_PREFIX)) {
            Ok(ready) => Ok(Self {
                ns: ns.to_owned(),
                proc,
                ready,
            }),
            Err(why) => {
                let exited = proc.wait_timeout(Duration::from_secs(2)).is_some();
                let mut out = proc.stop();
                if !exited {
                    out.timed_out = true;
                }
                eprintln!("[{label}] not ready ({why}): {out}");
                Err(out)
            }
        }
    }

    /// The namespace it runs in.
    pub fn ns(&self) -> &str {
        &self.ns
    }

    /// The `vxlan-fwd: ready: ...` line.
    pub fn ready_line(&self) -> &str {
        &self.ready
    }

    /// Process id.
    pub fn pid(&self) -> Option<u32> {
        self.proc.pid()
    }

    /// Whether it is still running.
    pub fn is_running(&mut self) -> bool {
        self.proc.is_running()
    }

    /// What it printed so far (stdout, stderr).
    pub fn output_so_far(&self) -> (String, String) {
        (self.proc.stdout(), self.proc.stderr())
    }

    /// Stops it with SIGINT (SIGKILL after 5 s: `timed_out` is then set)
    /// and returns its exit status and output.
    pub fn stop(mut self) -> Output {
        self.proc.stop()
    }

    /// [`Forwarder::stop`] with another signal (e.g. `libc::SIGTERM`).
    pub fn stop_with(mut self, sig: libc::c_int) -> Output {
        self.proc.stop_with(sig)
    }

    /// Runs `vxlan-fwd args...` (a command such as `fdb show`) in its
    /// namespace; panics unless it succeeds; returns stdout.
    pub fn command(&self, args: &[&str]) -> String {
        let out = vxlan_fwd(&self.ns, args);
        assert!(
            out.success(),
            "vxlan-fwd {} in {} failed: {out}",
            args.join(" "),
            self.ns
        );
        out.stdout
    }

    /// `vxlan-fwd fdb show` (text).
    pub fn fdb_show(&self) -> String {
        self.command(&["fdb", "show"])
    }

    /// `vxlan-fwd fdb show --json`: one object per entry, `{"mac", "dst",
    /// "dev", "vni", "permanent"}`.
    pub fn fdb_show_json(&self) -> Vec<Value> {
        let s = self.command(&["fdb", "show", "--json"]);
        match serde_json::from_str::<Value>(&s) {
            Ok(Value::Array(a)) => a,
            Ok(v) => panic!("fdb show --json in {} is not an array: {v}", self.ns),
            Err(e) => panic!("fdb show --json in {} is not JSON ({e}): {s}", self.ns),
        }
    }

    /// `vxlan-fwd stats --json`: `{"counters": {..}, "drops": {..}}`.
    pub fn stats_json(&self) -> Value {
        let s = self.command(&["stats", "--json"]);
        let v: Value = serde_json::from_str(&s)
            .unwrap_or_else(|e| panic!("stats --json in {} is not JSON ({e}): {s}", self.ns));
        assert!(
            v["counters"].is_object(),
            "stats --json in {} has no counters: {v}",
            self.ns
        );
        v
    }

    /// Every counter (`stats --json`'s `counters`).
    pub fn counters(&self) -> BTreeMap<String, u64> {
        let v = self.stats_json();
        v["counters"]
            .as_object()
            .expect("counters object")
            .iter()
            .map(|(k, n)| {
                (
                    k.clone(),
                    n.as_u64().unwrap_or_else(|| panic!("counter {k} = {n}")),
                )
            })
            .collect()
    }

    /// One counter; panics if `stats` does not have it.
    pub fn counter(&self, name: &str) -> u64 {
        let c = self.counters();
        *c.get(name)
            .unwrap_or_else(|| panic!("no counter {name} in vxlan-fwd stats of {}: {c:?}", self.ns))
    }

    /// Counters and FDB as text, for failure messages. Never panics.
    pub fn diagnostics(&self) -> String {
        let stats = vxlan_fwd(&self.ns, ["stats"]);
        let fdb = vxlan_fwd(&self.ns, ["fdb", "show"]);
        let mut links = std::process::Command::new("ip");
        links.args(["-n", &self.ns, "-s", "link", "show"]);
        let links = run_with_timeout(links, CMD_TIMEOUT);
        format!(
            "== vxlan-fwd in {} ==\n-- stats --\n{}{}-- fdb --\n{}{}-- links --\n{}{}-- output so \
             far --\n{}{}",
            self.ns,
            stats.stdout,
            stats.stderr,
            fdb.stdout,
            fdb.stderr,
            links.stdout,
            links.stderr,
            self.proc.stdout(),
            self.proc.stderr()
        )
    }
}

/// The entry for `mac` (case-insensitive) in `fdb show --json` output.
pub fn fdb_find<'a>(entries: &'a [Value], mac: &str) -> Option<&'a Value> {
    entries.iter().find(|e| {
        e["mac"]
            .as_str()
            .is_some_and(|m| m.eq_ignore_ascii_case(mac))
    })
}

impl Drop for Forwarder {
    fn drop(&mut self) {
        // Its counters and FDB help explain the failure; the Process guard
        // then stops it (and prints its output).
        if std::thread::panicking() && self.proc.is_running() {
            eprintln!("{}", self.diagnostics());
        }
    }
}

/// Kills and reaps a child on drop (panic safety for
/// [`start_and_signal_on_ready`]).
struct ChildGuard(std::process::Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            let _ = self.0.kill();
        }
        let _ = self.0.wait();
    }
}

/// Starts `vxlan-fwd args...` in `ns` and sends it `sig` the instant its
/// ready line is read (on this thread, with no hand-off in between), like
/// a supervisor that stops a service as soon as it reports ready. Returns
/// how it ended: SIGKILL after [`crate::process::STOP_GRACE`] sets
/// `timed_out`; so does a missing ready line within [`READY_TIMEOUT`].
pub fn start_and_signal_on_ready(ns: impl AsRef<str>, args: &[&str], sig: libc::c_int) -> Output {
    use std::{
        io::{BufRead as _, BufReader, Read as _},
        process::Stdio,
        sync::{
            Arc,
            atomic::{AtomicBool, Ordering},
        },
        time::Instant,
    };

    let mut c = netns_command(ns.as_ref(), vxlan_fwd_bin());
    c.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = ChildGuard(
        c.spawn()
            .unwrap_or_else(|e| panic!("cannot start `{}`: {e}", describe(&c))),
    );
    let pid = child.0.id() as libc::pid_t;
    let mut stderr_pipe = child.0.stderr.take().expect("piped stderr");
    let stderr = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr_pipe.read_to_string(&mut s);
        s
    });
    // Watchdog: no ready line in time -> SIGKILL (which ends the read below).
    let ready = Arc::new(AtomicBool::new(false));
    let (ready2, done) = (ready.clone(), Arc::new(AtomicBool::new(false)));
    let done2 = done.clone();
    std::thread::spawn(move || {
        let deadline = Instant::now() + READY_TIMEOUT;
        while Instant::now() < deadline
            && !ready2.load(Ordering::SeqCst)
            && !done2.load(Ordering::SeqCst)
        {
            std::thread::sleep(Duration::from_millis(50));
        }
        if !ready2.load(Ordering::SeqCst) && !done2.load(Ordering::SeqCst) {
            // SAFETY: kill(2); the child is not reaped before `done` is set.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    });
    let mut stdout = BufReader::new(child.0.stdout.take().expect("piped stdout"));
    let mut out_text = String::new();
    let mut got_ready = false;
    loop {
        let mut line = String::new();
        match stdout.read_line(&mut line) {
            Ok(0) | Err(_) => break,
            Ok(_) => {
                let is_ready = line.starts_with(READY_PREFIX);
                if is_ready {
                    // SAFETY: kill(2) on our own unreaped child.
                    unsafe { libc::kill(pid, sig) };
                    ready.store(true, Ordering::SeqCst);
                }
                out_text.push_str(&line);
                if is_ready {
                    got_ready = true;
                    break;
                }
            }
        }
    }
    let rest = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stdout.read_to_string(&mut s);
        s
    });
    let deadline = Instant::now() + crate::process::STOP_GRACE;
    let mut killed = !got_ready;
    while matches!(child.0.try_wait(), Ok(None)) {
        if Instant::now() >= deadline {
            let _ = child.0.kill();
            killed = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let status = child.0.wait().expect("waiting for vxlan-fwd");
    done.store(true, Ordering::SeqCst);
    out_text.push_str(&rest.join().unwrap_or_default());
    Output {
        status,
        stdout: out_text,
        stderr: stderr.join().unwrap_or_default(),
        timed_out: killed,
    }
}
