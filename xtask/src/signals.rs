//! SIGINT/SIGTERM/SIGHUP handling for xtask.
//!
//! The signals are blocked in every thread and received by one dedicated thread.
//! A child inherits the signal mask across exec (std does not reset it), so every
//! child is started through [`unblock_in_child`]; else SIGINT would never reach
//! a vxlan-fwd the demo or the tests start. On a signal:
//! - if a hook is installed (the demo's teardown), it runs and the process exits;
//! - else, if a foreground child runs, a signal sent by `kill` is forwarded to it
//!   (a terminal's Ctrl-C already reached it: it is in our process group) and
//!   xtask keeps waiting for the child, so its exit code is forwarded;
//! - else xtask exits with 128 + signal.

use std::{
    process::{Child, Command, ExitStatus},
    sync::{
        OnceLock,
        atomic::{AtomicI32, Ordering},
    },
    time::Duration,
};

use anyhow::{Context as _, Result};
use nix::{
    sys::{
        signal::{SigSet, SigmaskHow, Signal, kill, pthread_sigmask},
        signalfd::{SfdFlags, SignalFd},
    },
    unistd::Pid,
};

use crate::util::describe;

const SIGNALS: [Signal; 3] = [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP];
/// `si_code` of a signal sent by a process (kill, sigqueue, tkill): <= 0.
/// A terminal's Ctrl-C has SI_KERNEL (0x80).
const SI_FROM_PROCESS_MAX: i32 = 0;

static FOREGROUND: AtomicI32 = AtomicI32::new(0);
type Hook = Box<dyn Fn(i32) + Send + Sync>;
static HOOK: OnceLock<Hook> = OnceLock::new();

fn signal_set() -> SigSet {
    let mut set = SigSet::empty();
    for sig in SIGNALS {
        set.add(sig);
    }
    set
}

/// Makes `cmd`'s child start with the signals unblocked (the lab's, which
/// every process the lab starts goes through).
pub fn unblock_in_child(cmd: &mut Command) -> &mut Command {
    vxlan_tests::process::unblock_signals_in_child(cmd)
}

/// Blocks the signals and starts the receiving thread (a signalfd). Call
/// first thing in `main`, before any other thread exists (threads inherit
/// the mask).
pub fn init() -> Result<()> {
    let set = signal_set();
    pthread_sigmask(SigmaskHow::SIG_BLOCK, Some(&set), None).context("pthread_sigmask")?;
    let fd = SignalFd::with_flags(&set, SfdFlags::SFD_CLOEXEC).context("signalfd")?;
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            loop {
                // Blocking read: `None` only for a non-blocking fd.
                let Ok(Some(info)) = fd.read_signal() else {
                    continue; // EINTR
                };
                handle(info.ssi_signo as i32, info.ssi_code <= SI_FROM_PROCESS_MAX);
            }
        })
        .context("spawning the signal thread")?;
    Ok(())
}

fn handle(sig: i32, sent_by_process: bool) {
    if let Some(hook) = HOOK.get() {
        hook(sig);
        std::process::exit(128 + sig);
    }
    let pid = FOREGROUND.load(Ordering::SeqCst);
    if pid > 0 {
        if sent_by_process && let Ok(s) = Signal::try_from(sig) {
            // A child we have not reaped yet.
            let _ = kill(Pid::from_raw(pid), s);
        }
        return;
    }
    errln!("xtask: interrupted (signal {sig})");
    std::process::exit(128 + sig);
}

/// On SIGINT/SIGTERM/SIGHUP: stop every process the lab started and delete
/// every namespace it created (see `vxlan_tests::lab`), then exit with
/// 128 + signal. For the demo, the soak and the bench.
pub fn teardown_lab_on_signal() {
    set_hook(|sig| {
        errln!("\nxtask: interrupted (signal {sig}); tearing the lab down");
        vxlan_tests::lab::teardown_and_exit(sig, Duration::from_secs(10));
    });
}

/// Installs a hook run on the first signal; the process exits after it returns.
/// The hook may also call `std::process::exit` itself.
pub fn set_hook(hook: impl Fn(i32) + Send + Sync + 'static) {
    let _ = HOOK.set(Box::new(hook));
}

/// A child signals are forwarded to until it is waited for.
pub struct Foreground {
    child: Child,
    what: String,
}

impl Foreground {
    pub fn spawn(cmd: &mut Command) -> Result<Self> {
        let what = describe(cmd);
        let child = unblock_in_child(cmd)
            .spawn()
            .with_context(|| format!("failed to start `{what}`"))?;
        FOREGROUND.store(child.id() as i32, Ordering::SeqCst);
        Ok(Self { child, what })
    }

    pub fn child_mut(&mut self) -> &mut Child {
        &mut self.child
    }

    pub fn wait(mut self) -> Result<ExitStatus> {
        self.child
            .wait()
            .with_context(|| format!("waiting for `{}`", self.what))
    }
}

impl Drop for Foreground {
    fn drop(&mut self) {
        FOREGROUND.store(0, Ordering::SeqCst);
    }
}

/// Runs `cmd` in the foreground (signals forwarded) and returns its status.
pub fn run_foreground(cmd: &mut Command) -> Result<ExitStatus> {
    Foreground::spawn(cmd)?.wait()
}
