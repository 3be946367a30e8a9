//! Running `vxlan-fwd` inside a namespace.

use std::{
    collections::BTreeMap,
    ffi::OsStr,
    os::unix::process::ExitStatusExt as _,
    path::{Path, PathBuf},
    time::Duration,
};

use nix::sys::signal::Signal;
use serde_json::Value;

#[cfg(feature = "datapath")]
use crate::fdb_harness::FdbEntry;
use crate::{
    netns::{CMD_TIMEOUT, netns_command, signal_pid},
    process::{Output, Process, describe, run_with_timeout},
    util::wait_until,
};

/// Environment variable naming the directory of the forwarder's state file
/// and control socket.
pub const STATE_DIR_ENV: &str = "VXLAN_FWD_STATE_DIR";

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

/// How a [`Forwarder`] is started, beyond its arguments. The default is
/// the tests': [`vxlan_fwd_bin`], the environment as it is, output captured.
#[derive(Debug, Clone, Copy, Default)]
pub struct StartOpts<'a> {
    /// The executable; default [`vxlan_fwd_bin`].
    pub bin: Option<&'a Path>,
    /// `VXLAN_FWD_STATE_DIR` (where its state file and control socket go),
    /// for it and for the commands run through it ([`Forwarder::run`]).
    pub state_dir: Option<&'a Path>,
    /// More environment variables (e.g. `NOTIFY_SOCKET`).
    pub env: &'a [(&'a str, &'a str)],
    /// Label of its messages; default `vxlan-fwd@<ns>`.
    pub label: Option<&'a str>,
    /// Print its output as it comes, `[label] line` (`cargo xtask demo`);
    /// it is captured either way.
    pub echo: bool,
}

/// A `vxlan-fwd` running in a namespace, started and awaited (its `ready`
/// line) by [`Forwarder::start`] or [`Forwarder::start_with`]. Dropping it
/// stops it (SIGINT, 5 s, SIGKILL) and, during a panic, prints its
/// counters and FDB first.
pub struct Forwarder {
    ns: String,
    proc: Process,
    ready: String,
    bin: PathBuf,
    state_dir: Option<PathBuf>,
}

impl Forwarder {
    /// Starts `vxlan-fwd args...` in namespace `ns` and waits (up to
    /// [`READY_TIMEOUT`]) for its `ready` line. Panics with its output when it
    /// exits or does not get ready.
    pub fn start(ns: impl AsRef<str>, args: &[&str]) -> Self {
        Self::start_or_panic(ns.as_ref(), args, &StartOpts::default())
    }

    /// Like [`Forwarder::start`] but returns the output of a start that
    /// failed (exited, or no `ready` line in time: then it is stopped and
    /// `timed_out` is set).
    pub fn try_start(ns: impl AsRef<str>, args: &[&str]) -> Result<Self, Output> {
        Self::start_with(ns, args, &StartOpts::default())
    }

    fn start_or_panic(ns: &str, args: &[&str], opts: &StartOpts) -> Self {
        Self::start_with(ns, args, opts).unwrap_or_else(|out| {
            panic!(
                "vxlan-fwd {} in {ns} did not get ready: {out}",
                args.join(" ")
            )
        })
    }

    /// The one way to start a forwarder and wait for its `ready` line:
    /// [`Forwarder::try_start`] with [`StartOpts`]. A start that cannot
    /// even run the executable fails with exit code 127 and the reason on
    /// stderr.
    pub fn start_with(
        ns: impl AsRef<str>,
        args: &[&str],
        opts: &StartOpts,
    ) -> Result<Self, Output> {
        let ns = ns.as_ref();
        let bin = opts.bin.map_or_else(vxlan_fwd_bin, Path::to_owned);
        let mut c = netns_command(ns, &bin);
        c.args(args);
        if let Some(d) = opts.state_dir {
            c.env(STATE_DIR_ENV, d);
        }
        for (k, v) in opts.env {
            c.env(k, v);
        }
        let label = opts
            .label
            .map_or_else(|| format!("vxlan-fwd@{ns}"), str::to_owned);
        let env_text: String = opts
            .state_dir
            .map(|d| format!("{STATE_DIR_ENV}={} ", d.display()))
            .unwrap_or_default();
        let spawned = if opts.echo {
            say!("[{label}] {env_text}{}", describe(&c));
            Process::spawn_echoed(c, &label)
        } else {
            eprintln!("[{label}] {env_text}{}", describe(&c));
            Process::try_spawn(c, &label)
        };
        let mut proc = spawned.map_err(|e| Output {
            status: std::process::ExitStatus::from_raw(127 << 8),
            stdout: String::new(),
            stderr: format!("{e:#}"),
            timed_out: false,
        })?;
        match proc.wait_for_line(READY_TIMEOUT, is_ready_line) {
            Ok(ready) => Ok(Self {
                ns: ns.to_owned(),
                proc,
                ready,
                bin,
                state_dir: opts.state_dir.map(Path::to_owned),
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

    /// The first `vxlan-fwd: ready: ...` line.
    pub fn ready_line(&self) -> &str {
        &self.ready
    }

    /// The `vxlan-fwd: ready` lines printed so far (one more per reload).
    pub fn ready_lines(&self) -> Vec<String> {
        self.proc
            .stdout()
            .lines()
            .filter(|l| is_ready_line(l))
            .map(str::to_owned)
            .collect()
    }

    /// Waits (up to 5 s) until it has printed `n` ready lines; returns the
    /// ready lines printed by then.
    pub fn wait_ready_lines(&self, n: usize) -> Vec<String> {
        let mut lines = Vec::new();
        wait_until(Duration::from_secs(5), Duration::from_millis(20), || {
            lines = self.ready_lines();
            lines.len() >= n
        });
        lines
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

    /// The state directory it was started with, if one was given.
    pub fn state_dir(&self) -> Option<&Path> {
        self.state_dir.as_deref()
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

    /// SIGINT, then SIGKILL after `grace` (a forwarder with a million FDB
    /// entries needs far longer than 5 s to save them).
    pub fn stop_within(mut self, grace: Duration) -> Output {
        self.proc.stop_within(libc::SIGINT, grace)
    }

    /// SIGKILL, as a crash: its datapath stays attached.
    pub fn kill(mut self) -> Output {
        self.proc.signal(libc::SIGKILL);
        self.proc.wait(Duration::from_secs(5))
    }

    /// Sends `sig` (e.g. `libc::SIGHUP`).
    pub fn signal(&mut self, sig: libc::c_int) {
        self.proc.signal(sig);
    }

    /// Waits up to `timeout` for a stdout line for which `pred` holds.
    pub fn wait_for_line(
        &mut self,
        timeout: Duration,
        pred: impl Fn(&str) -> bool,
    ) -> Result<String, String> {
        self.proc.wait_for_line(timeout, pred)
    }

    /// Waits up to `timeout` for it to exit by itself; returns its output
    /// (stopping it if it did not exit: `timed_out` is then set).
    pub fn wait_exit(mut self, timeout: Duration) -> Output {
        self.proc.wait(timeout)
    }

    /// Runs `vxlan-fwd args...` (the same executable, with its state
    /// directory, where its control socket is) in its namespace, whatever
    /// the outcome.
    pub fn run(&self, args: &[&str]) -> Output {
        let mut c = netns_command(&self.ns, &self.bin);
        c.args(args);
        if let Some(d) = &self.state_dir {
            c.env(STATE_DIR_ENV, d);
        }
        run_with_timeout(c, CMD_TIMEOUT)
    }

    /// Runs `vxlan-fwd args...` (a command such as `fdb show`) in its
    /// namespace; panics unless it succeeds; returns stdout.
    pub fn command(&self, args: &[&str]) -> String {
        self.try_command(args).unwrap_or_else(|e| panic!("{e:#}"))
    }

    /// [`Forwarder::command`], failing instead of panicking.
    pub fn try_command(&self, args: &[&str]) -> anyhow::Result<String> {
        let out = self.run(args);
        if !out.success() {
            anyhow::bail!("vxlan-fwd {} in {} failed: {out}", args.join(" "), self.ns);
        }
        Ok(out.stdout)
    }

    /// `vxlan-fwd fdb show` (text).
    pub fn fdb_show(&self) -> String {
        self.command(&["fdb", "show"])
    }

    /// `vxlan-fwd fdb show --json`: one object per entry, `{"mac", "dst",
    /// "dev", "vni", "permanent"}`.
    pub fn fdb_show_json(&self) -> Vec<Value> {
        self.try_fdb_show_json().unwrap_or_else(|e| panic!("{e:#}"))
    }

    /// [`Forwarder::fdb_show_json`], failing instead of panicking.
    pub fn try_fdb_show_json(&self) -> anyhow::Result<Vec<Value>> {
        let s = self.try_command(&["fdb", "show", "--json"])?;
        match serde_json::from_str::<Value>(&s) {
            Ok(Value::Array(a)) => Ok(a),
            Ok(v) => anyhow::bail!("fdb show --json in {} is not an array: {v}", self.ns),
            Err(e) => anyhow::bail!("fdb show --json in {} is not JSON ({e}): {s}", self.ns),
        }
    }

    /// `fdb show --json` parsed into the forwarder's own row type.
    #[cfg(feature = "datapath")]
    pub fn entries(&self) -> Vec<FdbEntry> {
        let s = self.command(&["fdb", "show", "--json"]);
        serde_json::from_str(&s)
            .unwrap_or_else(|e| panic!("fdb show --json in {} is not FDB rows ({e}): {s}", self.ns))
    }

    /// `vxlan-fwd stats --json`: `{"counters": {..}, "drops": {..}}`.
    pub fn stats_json(&self) -> Value {
        self.try_stats_json().unwrap_or_else(|e| panic!("{e:#}"))
    }

    /// [`Forwarder::stats_json`], failing instead of panicking.
    pub fn try_stats_json(&self) -> anyhow::Result<Value> {
        let s = self.try_command(&["stats", "--json"])?;
        let v: Value = serde_json::from_str(&s)
            .map_err(|e| anyhow::anyhow!("stats --json in {} is not JSON ({e}): {s}", self.ns))?;
        if !v["counters"].is_object() {
            anyhow::bail!("stats --json in {} has no counters: {v}", self.ns);
        }
        Ok(v)
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

    /// Counters, FDB (its head: a flooded table is long), links and output,
    /// for failure messages. Never panics.
    pub fn diagnostics(&self) -> String {
        let stats = self.run(&["stats"]);
        let fdb = self.run(&["fdb", "show"]);
        let mut links = std::process::Command::new("ip");
        links.args(["-n", &self.ns, "-s", "link", "show"]);
        let links = run_with_timeout(links, CMD_TIMEOUT);
        let fdb_lines = fdb.stdout.lines().count();
        let fdb_text: String = fdb
            .stdout
            .lines()
            .take(80)
            .map(|l| format!("{l}\n"))
            .collect();
        format!(
            "== vxlan-fwd in {} ==\n-- stats --\n{}{}-- fdb ({fdb_lines} lines) --\n{fdb_text}{}-- \
             links --\n{}{}-- output so far --\n{}{}",
            self.ns,
            stats.stdout,
            stats.stderr,
            fdb.stderr,
            links.stdout,
            links.stderr,
            self.proc.stdout(),
            self.proc.stderr()
        )
    }
}

/// Whether `line` is vxlan-fwd's `ready` line (printed once attached, and
/// again after each reload).
pub fn is_ready_line(line: &str) -> bool {
    line.starts_with(READY_PREFIX)
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
    let sig = Signal::try_from(sig).unwrap_or_else(|e| panic!("signal {sig}: {e}"));
    let pid = child.0.id();
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
            // The child is not reaped before `done` is set.
            signal_pid(pid, Signal::SIGKILL);
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
                let is_ready = is_ready_line(&line);
                if is_ready {
                    // Our own child, not reaped yet.
                    signal_pid(pid, sig);
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

#[cfg(test)]
mod tests {
    use super::is_ready_line;

    #[test]
    fn ready_line() {
        assert!(is_ready_line("vxlan-fwd: ready: eth0 -> veth0 (vni 42)"));
        assert!(is_ready_line("vxlan-fwd: ready"));
        assert!(!is_ready_line("vxlan-fwd: already attached"));
        assert!(!is_ready_line("[INFO] ready"));
        assert!(!is_ready_line("starting"));
    }
}
