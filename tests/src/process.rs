//! Child processes with captured output and a guaranteed end.

use std::{
    fmt,
    io::{BufRead as _, BufReader, Read, Write as _},
    os::unix::process::CommandExt as _,
    process::{Child, Command, ExitStatus, Stdio},
    sync::{Arc, Mutex, PoisonError, mpsc},
    thread::JoinHandle,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result};
use nix::sys::signal::{SigSet, SigmaskHow, Signal, pthread_sigmask};

use crate::{
    lab,
    netns::{alive, signal_pid},
};

/// How long a process gets between SIGINT and SIGKILL when a guard stops it.
pub const STOP_GRACE: Duration = Duration::from_secs(5);

/// The end of a process: exit status and everything it printed.
#[derive(Debug, Clone)]
pub struct Output {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
    /// It did not exit by itself in time and was stopped (SIGINT, then
    /// SIGKILL after [`STOP_GRACE`]).
    pub timed_out: bool,
}

impl Output {
    pub fn success(&self) -> bool {
        self.status.success() && !self.timed_out
    }

    /// The exit code, `None` when killed by a signal.
    pub fn code(&self) -> Option<i32> {
        self.status.code()
    }

    /// stdout followed by stderr.
    pub fn combined(&self) -> String {
        format!("{}{}", self.stdout, self.stderr)
    }
}

impl fmt::Display for Output {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.status)?;
        if self.timed_out {
            write!(f, " (timed out, stopped)")?;
        }
        write!(
            f,
            "\n--- stdout ---\n{}--- stderr ---\n{}--------------",
            self.stdout, self.stderr
        )
    }
}

/// A background process. Its stdout and stderr are captured (and stdout's
/// lines are also available to [`Process::wait_for_line`]); dropping it
/// stops it: SIGINT, then SIGKILL after [`STOP_GRACE`].
pub struct Process {
    label: String,
    pid: u32,
    child: Option<Child>,
    stdout: Arc<Mutex<String>>,
    stderr: Arc<Mutex<String>>,
    lines: mpsc::Receiver<String>,
    readers: Vec<JoinHandle<()>>,
    finished: Option<Output>,
}

fn lock(s: &Mutex<String>) -> std::sync::MutexGuard<'_, String> {
    s.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Where a reader thread also prints the lines it reads, `[label] line`.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Echo {
    Stdout,
    Stderr,
}

fn reader(
    stream: impl Read + Send + 'static,
    buf: Arc<Mutex<String>>,
    tx: Option<mpsc::Sender<String>>,
    echo: Option<(Echo, String)>,
) -> JoinHandle<()> {
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines() {
            let Ok(line) = line else { break };
            // Printing may fail (`cargo xtask demo | head`): never fatal.
            match &echo {
                Some((Echo::Stdout, label)) => {
                    let _ = writeln!(std::io::stdout(), "[{label}] {line}");
                }
                Some((Echo::Stderr, label)) => {
                    let _ = writeln!(std::io::stderr(), "[{label}] {line}");
                }
                None => {}
            }
            {
                let mut b = lock(&buf);
                b.push_str(&line);
                b.push('\n');
            }
            if let Some(tx) = &tx {
                let _ = tx.send(line);
            }
        }
    })
}

/// `cmd` as a shell-like string, for messages.
pub fn describe(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    s
}

/// Makes `cmd`'s child start with SIGINT, SIGTERM and SIGHUP unblocked: a
/// child inherits the signal mask across exec, and `cargo xtask` blocks
/// them in all its threads (one thread receives them), which would make a
/// forwarder it starts deaf to SIGINT.
pub fn unblock_signals_in_child(cmd: &mut Command) -> &mut Command {
    let mut set = SigSet::empty();
    for s in [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP] {
        set.add(s);
    }
    // SAFETY: pthread_sigmask is async-signal-safe; nothing else runs
    // between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            pthread_sigmask(SigmaskHow::SIG_UNBLOCK, Some(&set), None).map_err(Into::into)
        })
    }
}

impl Process {
    /// Starts `cmd` (stdin null, stdout and stderr captured). Panics when it
    /// cannot be started.
    pub fn spawn(cmd: Command, label: &str) -> Self {
        Self::start(cmd, label, false).unwrap_or_else(|e| panic!("{e:#}"))
    }

    /// [`Process::spawn`], failing instead of panicking.
    pub fn try_spawn(cmd: Command, label: &str) -> Result<Self> {
        Self::start(cmd, label, false)
    }

    /// [`Process::spawn`] that also prints every line it writes, prefixed
    /// with `[label]` (stdout lines on stdout, stderr lines on stderr), and
    /// fails instead of panicking: the processes `cargo xtask demo` shows.
    pub fn spawn_echoed(cmd: Command, label: &str) -> Result<Self> {
        Self::start(cmd, label, true)
    }

    fn start(mut cmd: Command, label: &str, echo: bool) -> Result<Self> {
        lab::checkpoint();
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = unblock_signals_in_child(&mut cmd)
            .spawn()
            .with_context(|| format!("[{label}] cannot start `{}`", describe(&cmd)))?;
        let pid = child.id();
        lab::track_process(pid, label);
        let stdout = Arc::new(Mutex::new(String::new()));
        let stderr = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = mpsc::channel();
        let echo_to = |to| echo.then(|| (to, label.to_owned()));
        let readers = vec![
            reader(
                child.stdout.take().context("piped stdout")?,
                stdout.clone(),
                Some(tx),
                echo_to(Echo::Stdout),
            ),
            reader(
                child.stderr.take().context("piped stderr")?,
                stderr.clone(),
                None,
                echo_to(Echo::Stderr),
            ),
        ];
        Ok(Self {
            label: label.to_owned(),
            pid,
            child: Some(child),
            stdout,
            stderr,
            lines: rx,
            readers,
            finished: None,
        })
    }

    pub fn label(&self) -> &str {
        &self.label
    }

    /// Process id (of the program itself: `ip netns exec` execs it);
    /// `None` once it has been reaped.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Whether the process is alive (not a zombie), without reaping it.
    pub fn alive(&self) -> bool {
        self.child.is_some() && alive(self.pid)
    }

    /// What it printed on stdout so far.
    pub fn stdout(&self) -> String {
        lock(&self.stdout).clone()
    }

    /// What it printed on stderr so far.
    pub fn stderr(&self) -> String {
        lock(&self.stderr).clone()
    }

    /// Whether it is still running.
    pub fn is_running(&mut self) -> bool {
        match &mut self.child {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// Sends `sig` (e.g. `libc::SIGINT`) if it is still running.
    pub fn signal(&mut self, sig: libc::c_int) {
        let Ok(sig) = Signal::try_from(sig) else {
            panic!("[{}] {sig} is not a signal", self.label);
        };
        // Not reaped yet while running: the pid is still its own.
        if self.is_running() {
            signal_pid(self.pid, sig);
        }
    }

    /// The stdout lines printed and not yet read by
    /// [`Process::wait_for_line`] or an earlier `drain`.
    pub fn drain(&self) -> Vec<String> {
        self.lines.try_iter().collect()
    }

    /// Waits until it prints a stdout line for which `pred` holds and
    /// returns that line. `Err` explains why not: timeout, or stdout closed
    /// (the process exited).
    pub fn wait_for_line(
        &mut self,
        timeout: Duration,
        pred: impl Fn(&str) -> bool,
    ) -> Result<String, String> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if pred(&line) => return Ok(line),
                Ok(_) => {}
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    return Err(format!("no such line within {} s", timeout.as_secs()));
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    return Err("it closed its stdout (exited?) first".to_owned());
                }
            }
        }
    }

    /// Waits up to `timeout` for it to exit by itself.
    pub fn wait_timeout(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let child = self.child.as_mut()?;
        let deadline = Instant::now() + timeout;
        loop {
            match child.try_wait() {
                Ok(Some(s)) => return Some(s),
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20));
                }
                Ok(None) => return None,
                Err(e) => panic!("[{}] waiting: {e}", self.label),
            }
        }
    }

    /// Waits for it to exit by itself, at most `timeout`, and returns its
    /// output; stops it (SIGINT, then SIGKILL) when it does not exit in time
    /// (`timed_out` is then set).
    pub fn wait(&mut self, timeout: Duration) -> Output {
        if let Some(out) = &self.finished {
            return out.clone();
        }
        let timed_out = self.wait_timeout(timeout).is_none();
        if timed_out {
            self.signal(libc::SIGINT);
            if self.wait_timeout(STOP_GRACE).is_none() {
                self.kill();
            }
        }
        self.finish(timed_out)
    }

    /// Stops it: SIGINT, waits up to [`STOP_GRACE`], then SIGKILL. Returns
    /// the exit status and everything it printed. `timed_out` is set when
    /// SIGKILL was needed.
    pub fn stop(&mut self) -> Output {
        self.stop_with(libc::SIGINT)
    }

    /// [`Process::stop`] with another first signal (e.g. `libc::SIGTERM`).
    pub fn stop_with(&mut self, sig: libc::c_int) -> Output {
        self.stop_within(sig, STOP_GRACE)
    }

    /// [`Process::stop_with`] with another grace period before SIGKILL
    /// (a forwarder with a million FDB entries takes long to save them).
    pub fn stop_within(&mut self, sig: libc::c_int, grace: Duration) -> Output {
        if let Some(out) = &self.finished {
            return out.clone();
        }
        self.signal(sig);
        let killed = self.wait_timeout(grace).is_none();
        if killed {
            self.kill();
        }
        self.finish(killed)
    }

    /// SIGKILL if still running.
    pub fn kill(&mut self) {
        if let Some(c) = &mut self.child {
            let _ = c.kill();
        }
    }

    /// Reaps it (it has exited or been killed) and collects its output.
    fn finish(&mut self, timed_out: bool) -> Output {
        let mut child = self.child.take().expect("process already finished");
        let status = child
            .wait()
            .unwrap_or_else(|e| panic!("[{}] waiting: {e}", self.label));
        lab::untrack_process(self.pid);
        lab::checkpoint();
        // The pipes close when the process exits, unless a child of it
        // inherited them: wait a little, then leave the readers behind.
        let deadline = Instant::now() + Duration::from_secs(2);
        while self.readers.iter().any(|r| !r.is_finished()) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        for r in self.readers.drain(..) {
            if r.is_finished() {
                let _ = r.join();
            }
        }
        let out = Output {
            status,
            stdout: self.stdout(),
            stderr: self.stderr(),
            timed_out,
        };
        self.finished = Some(out.clone());
        out
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        if self.child.is_none() {
            return;
        }
        let out = self.stop();
        if std::thread::panicking() {
            eprintln!("[{}] stopped during a panic: {out}", self.label);
        }
    }
}

/// Runs `cmd` to completion, at most `timeout` (then stops it: SIGINT, then
/// SIGKILL, and sets `timed_out`).
pub fn run_with_timeout(cmd: Command, timeout: Duration) -> Output {
    let label = describe(&cmd);
    Process::spawn(cmd, &label).wait(timeout)
}
