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
    mem::MaybeUninit,
    process::{Child, Command, ExitStatus},
    sync::{
        OnceLock,
        atomic::{AtomicI32, Ordering},
    },
};

use anyhow::{Context as _, Result, bail};

use crate::util::describe;

const SIGNALS: [libc::c_int; 3] = [libc::SIGINT, libc::SIGTERM, libc::SIGHUP];

static FOREGROUND: AtomicI32 = AtomicI32::new(0);
type Hook = Box<dyn Fn(libc::c_int) + Send + Sync>;
static HOOK: OnceLock<Hook> = OnceLock::new();

fn signal_set() -> libc::sigset_t {
    let mut set = MaybeUninit::<libc::sigset_t>::zeroed();
    // SAFETY: `set` is valid writable memory for a sigset_t; the calls initialise it.
    unsafe {
        libc::sigemptyset(set.as_mut_ptr());
        for sig in SIGNALS {
            libc::sigaddset(set.as_mut_ptr(), sig);
        }
        set.assume_init()
    }
}

/// Makes `cmd`'s child start with the signals unblocked.
pub fn unblock_in_child(cmd: &mut Command) -> &mut Command {
    use std::os::unix::process::CommandExt as _;
    let set = signal_set();
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            let rc = libc::pthread_sigmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut());
            if rc == 0 {
                Ok(())
            } else {
                Err(std::io::Error::from_raw_os_error(rc))
            }
        })
    }
}

/// Blocks the signals and starts the receiving thread. Call first thing in
/// `main`, before any other thread exists (threads inherit the mask).
pub fn init() -> Result<()> {
    let set = signal_set();
    // SAFETY: valid sigset pointer; null old-set pointer is allowed.
    let rc = unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) };
    if rc != 0 {
        bail!("pthread_sigmask: {}", std::io::Error::from_raw_os_error(rc));
    }
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            loop {
                let mut info = MaybeUninit::<libc::siginfo_t>::zeroed();
                // SAFETY: valid pointers to a sigset and a siginfo buffer.
                let sig = unsafe { libc::sigwaitinfo(&set, info.as_mut_ptr()) };
                if sig < 0 {
                    continue; // EINTR
                }
                // SAFETY: sigwaitinfo filled `info` on success.
                let info = unsafe { info.assume_init() };
                // SI_USER (0), SI_QUEUE (-1), SI_TKILL (-6): sent by a process.
                // A terminal's Ctrl-C has SI_KERNEL (0x80).
                handle(sig, info.si_code <= 0);
            }
        })
        .context("spawning the signal thread")?;
    Ok(())
}

fn handle(sig: libc::c_int, sent_by_process: bool) {
    if let Some(hook) = HOOK.get() {
        hook(sig);
        std::process::exit(128 + sig);
    }
    let pid = FOREGROUND.load(Ordering::SeqCst);
    if pid > 0 {
        if sent_by_process {
            // SAFETY: plain kill(2) on a child we have not reaped yet.
            unsafe { libc::kill(pid, sig) };
        }
        return;
    }
    errln!("xtask: interrupted (signal {sig})");
    std::process::exit(128 + sig);
}

/// Installs a hook run on the first signal; the process exits after it returns.
/// The hook may also call `std::process::exit` itself.
pub fn set_hook(hook: impl Fn(libc::c_int) + Send + Sync + 'static) {
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
