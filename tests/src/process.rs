//! Child processes with captured output and a guaranteed end.

use std::{
    fmt,
    io::{BufRead as _, BufReader, Read},
    process::{Child, Command, ExitStatus, Stdio},
    sync::{Arc, Mutex, PoisonError, mpsc},
    thread::JoinHandle,
    time::{Duration, Instant},
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

fn reader(
    stream: impl Read + Send + 'static,
    buf: Arc<Mutex<String>>,
    tx: Option<mpsc::Sender<String>>,
) -> JoinHandle<()> {
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines() {
            let Ok(line) = line else { break };
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

impl Process {
    /// Starts `cmd` (stdin null, stdout and stderr captured). Panics when it
    /// cannot be started.
    pub fn spawn(mut cmd: Command, label: &str) -> Self {
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("[{label}] cannot start `{}`: {e}", describe(&cmd)));
        let stdout = Arc::new(Mutex::new(String::new()));
        let stderr = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = mpsc::channel();
        let readers = vec![
            reader(
                child.stdout.take().expect("piped stdout"),
                stdout.clone(),
                Some(tx),
            ),
            reader(
                child.stderr.take().expect("piped stderr"),
                stderr.clone(),
                None,
            ),
        ];
        Self {
            label: label.to_owned(),
            child: Some(child),
            stdout,
            stderr,
            lines: rx,
            readers,
            finished: None,
        }
    }

    pub fn label(&self) -> &str {
        &self.label
    }

    /// Process id (of the program itself: `ip netns exec` execs it).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
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
        if self.is_running()
            && let Some(pid) = self.pid()
        {
            // SAFETY: kill(2) on our own child, which is not reaped yet.
            unsafe { libc::kill(pid as libc::pid_t, sig) };
        }
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
        if let Some(out) = &self.finished {
            return out.clone();
        }
        self.signal(sig);
        let killed = self.wait_timeout(STOP_GRACE).is_none();
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
