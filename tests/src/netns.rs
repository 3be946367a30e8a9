//! Network namespaces as RAII guards, and entering one from this process.

use std::{
    ffi::OsStr,
    fs::File,
    process::Command,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};
use nix::{
    sched::{CloneFlags, setns},
    sys::signal::{Signal, kill},
    unistd::Pid,
};
use serde_json::Value;

use crate::{
    lab,
    process::{Output, Process, describe, run_with_timeout},
};

/// Longest any helper command may run before it is stopped.
pub const CMD_TIMEOUT: Duration = Duration::from_secs(60);

/// A network namespace created by the test. Dropping it kills the processes
/// still inside it (SIGTERM, then SIGKILL) and deletes it, which destroys
/// its interfaces (and a veth's peer in another namespace).
///
/// `AsRef<str>` gives its name, so a `&NetNs` can be passed wherever a
/// namespace name is expected.
#[derive(Debug)]
pub struct NetNs {
    name: String,
}

impl AsRef<str> for NetNs {
    fn as_ref(&self) -> &str {
        &self.name
    }
}

impl NetNs {
    /// Creates namespace `name` (deleting a stale one of that name first)
    /// and sets its `lo` up. Panics on failure.
    pub fn create(name: &str) -> Self {
        Self::try_create(name).unwrap_or_else(|e| panic!("{e:#}"))
    }

    /// [`NetNs::create`], failing instead of panicking (also after a
    /// [`lab::teardown_and_exit`]: then nothing is created any more).
    pub fn try_create(name: &str) -> Result<Self> {
        if list_netns().iter().any(|n| n == name) {
            delete_netns(name);
        }
        lab::create_namespace(name, || {
            let out = run_with_timeout(cmd("ip", ["netns", "add", name]), CMD_TIMEOUT);
            if !out.success() {
                bail!("ip netns add {name}: {out}");
            }
            Ok(())
        })?;
        let ns = Self {
            name: name.to_owned(),
        };
        ns.try_ip_ok(["link", "set", "lo", "up"])?;
        Ok(ns)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// `ip netns exec <name> <program>`: add arguments, then run or spawn it.
    pub fn command(&self, program: impl AsRef<OsStr>) -> Command {
        netns_command(&self.name, program)
    }

    /// Runs `program args...` inside the namespace to completion (at most
    /// [`CMD_TIMEOUT`]) and returns its output, whatever its exit status.
    pub fn exec<S: AsRef<OsStr>>(
        &self,
        program: impl AsRef<OsStr>,
        args: impl IntoIterator<Item = S>,
    ) -> Output {
        run_with_timeout(self.command_with(program, args), CMD_TIMEOUT)
    }

    fn command_with<S: AsRef<OsStr>>(
        &self,
        program: impl AsRef<OsStr>,
        args: impl IntoIterator<Item = S>,
    ) -> Command {
        let mut c = self.command(program);
        c.args(args);
        c
    }

    /// Like [`NetNs::exec`] but panics unless it succeeds; returns stdout.
    pub fn run<S: AsRef<OsStr>>(
        &self,
        program: impl AsRef<OsStr>,
        args: impl IntoIterator<Item = S>,
    ) -> String {
        checked(self.command_with(program, args)).unwrap_or_else(|e| panic!("{e:#}"))
    }

    /// `ip -n <name> args...`, whatever its exit status.
    pub fn try_ip<S: AsRef<OsStr>>(&self, args: impl IntoIterator<Item = S>) -> Output {
        run_with_timeout(self.ip_command(args), CMD_TIMEOUT)
    }

    fn ip_command<S: AsRef<OsStr>>(&self, args: impl IntoIterator<Item = S>) -> Command {
        let mut c = Command::new("ip");
        c.args(["-n", &self.name]).args(args);
        c
    }

    /// `ip -n <name> args...`; panics unless it succeeds; returns stdout.
    pub fn ip<S: AsRef<OsStr>>(&self, args: impl IntoIterator<Item = S>) -> String {
        self.try_ip_ok(args).unwrap_or_else(|e| panic!("{e:#}"))
    }

    /// `ip -n <name> args...`; an error unless it succeeds; returns stdout.
    pub fn try_ip_ok<S: AsRef<OsStr>>(&self, args: impl IntoIterator<Item = S>) -> Result<String> {
        checked(self.ip_command(args))
    }

    /// Sets sysctl `key` (e.g. `net.ipv6.conf.all.disable_ipv6`) to `value`.
    pub fn sysctl(&self, key: &str, value: &str) {
        self.try_sysctl(key, value)
            .unwrap_or_else(|e| panic!("{e:#}"));
    }

    /// [`NetNs::sysctl`], failing instead of panicking.
    pub fn try_sysctl(&self, key: &str, value: &str) -> Result<()> {
        let out = self.exec("sysctl", ["-qw", &format!("{key}={value}")]);
        if !out.success() {
            bail!("sysctl {key}={value} in {}: {out}", self.name);
        }
        Ok(())
    }

    /// Moves the calling thread into this namespace until the returned
    /// guard is dropped (see [`enter_netns`]).
    pub fn enter(&self) -> Result<EnteredNetns> {
        enter_netns(&self.name)
    }

    /// `ip -j -d link show dev <dev>` as JSON, `None` when there is no such
    /// interface.
    pub fn link(&self, dev: &str) -> Option<Value> {
        let out = self.try_ip(["-j", "-d", "link", "show", "dev", dev]);
        if !out.success() {
            return None;
        }
        let v: Value = serde_json::from_str(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "ip -j link show {dev} in {}: {e}: {}",
                self.name, out.stdout
            )
        });
        v.as_array().and_then(|a| a.first()).cloned()
    }

    /// Whether interface `dev` exists.
    pub fn has_link(&self, dev: &str) -> bool {
        self.link(dev).is_some()
    }

    /// MAC address of `dev` (lower-case `aa:bb:..`). Panics if absent.
    pub fn mac(&self, dev: &str) -> String {
        let l = self
            .link(dev)
            .unwrap_or_else(|| panic!("no interface {dev} in {}", self.name));
        l["address"].as_str().expect("address").to_ascii_lowercase()
    }

    /// MTU of `dev`. Panics if absent.
    pub fn mtu(&self, dev: &str) -> u64 {
        let l = self
            .link(dev)
            .unwrap_or_else(|| panic!("no interface {dev} in {}", self.name));
        l["mtu"].as_u64().expect("mtu")
    }

    /// Id of the XDP program attached to `dev`, if any.
    pub fn xdp_prog_id(&self, dev: &str) -> Option<u64> {
        let l = self.link(dev)?;
        l["xdp"]["prog"]["id"]
            .as_u64()
            .or_else(|| l["xdp"]["prog_id"].as_u64())
    }

    /// Id of the eBPF program named `name` among the tc ingress filters of
    /// `dev` (as `tc filter show` lists them), if any.
    pub fn tc_ingress_prog_id(&self, dev: &str, name: &str) -> Option<u64> {
        // No clsact on `dev` is not an error here: then there is no filter.
        let mut c = self.command("tc");
        c.args(["filter", "show", "dev", dev, "ingress"]);
        let out = run_with_timeout(c, CMD_TIMEOUT).stdout;
        out.lines().find_map(|l| {
            let w: Vec<&str> = l.split_whitespace().collect();
            let has_name = w.windows(2).any(|p| p[0] == "name" && p[1] == name);
            let id = w
                .windows(2)
                .find(|p| p[0] == "id")
                .and_then(|p| p[1].parse().ok());
            if has_name { id } else { None }
        })
    }

    /// The program of a vxlan-fwd on uplink `dev` that uses all its maps:
    /// its XDP program, or without XDP its TC uplink program.
    pub fn uplink_prog_id(&self, dev: &str) -> Option<u64> {
        self.xdp_prog_id(dev)
            .or_else(|| self.tc_ingress_prog_id(dev, "vxlan_tc_uplink"))
    }

    /// Starts `program args...` inside the namespace in the background.
    /// It is stopped when the returned guard is dropped, and at the latest
    /// when the namespace is deleted.
    pub fn spawn<S: AsRef<OsStr>>(
        &self,
        program: impl AsRef<OsStr>,
        args: impl IntoIterator<Item = S>,
    ) -> Process {
        let c = self.command_with(program, args);
        let label = format!("{}: {}", self.name, describe(&c));
        Process::spawn(c, &label)
    }

    /// Ids of the processes inside the namespace (`ip netns pids`).
    pub fn pids(&self) -> Vec<u32> {
        netns_pids(&self.name)
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        delete_netns(&self.name);
        lab::forget_namespace(&self.name);
    }
}

/// The calling thread's stay in another network namespace: created by
/// [`enter_netns`], it moves the thread back to the namespace it was in
/// when dropped. Sockets opened meanwhile stay in the entered namespace.
/// Not `Send`: the switch belongs to the thread that made it.
#[derive(Debug)]
pub struct EnteredNetns {
    name: String,
    original: File,
    _not_send: std::marker::PhantomData<*const ()>,
}

/// Moves the calling thread (only it: `setns(2)` on a thread of a
/// multi-threaded process) into network namespace `name` (`/run/netns/<name>`).
pub fn enter_netns(name: &str) -> Result<EnteredNetns> {
    let original = File::open("/proc/thread-self/ns/net")
        .context("opening this thread's network namespace")?;
    let target = File::open(format!("/run/netns/{name}"))
        .with_context(|| format!("opening network namespace {name}"))?;
    setns(&target, CloneFlags::CLONE_NEWNET)
        .with_context(|| format!("entering network namespace {name}"))?;
    Ok(EnteredNetns {
        name: name.to_owned(),
        original,
        _not_send: std::marker::PhantomData,
    })
}

impl EnteredNetns {
    /// The namespace entered.
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl Drop for EnteredNetns {
    fn drop(&mut self) {
        if let Err(e) = setns(&self.original, CloneFlags::CLONE_NEWNET) {
            // The thread would go on in the wrong namespace: do not let it.
            panic!("returning from network namespace {}: {e}", self.name);
        }
    }
}

/// Runs `f` on a new thread that has entered network namespace `ns` and
/// returns its result (the calling thread is not moved). An error when the
/// namespace cannot be entered or `f` panics.
pub fn in_netns<T: Send + 'static>(ns: &str, f: impl FnOnce() -> T + Send + 'static) -> Result<T> {
    let name = ns.to_owned();
    std::thread::spawn(move || -> Result<T> {
        let _inside = enter_netns(&name)?;
        Ok(f())
    })
    .join()
    .unwrap_or_else(|_| bail!("the thread in namespace {ns} panicked"))
}

/// Runs `c` (at most [`CMD_TIMEOUT`]); an error unless it succeeds;
/// returns stdout.
fn checked(c: Command) -> Result<String> {
    let what = describe(&c);
    let out = run_with_timeout(c, CMD_TIMEOUT);
    if !out.success() {
        bail!("`{what}` failed: {out}");
    }
    Ok(out.stdout)
}

fn cmd<const N: usize>(program: &str, args: [&str; N]) -> Command {
    let mut c = Command::new(program);
    c.args(args);
    c
}

/// `ip netns exec <ns> <program>`.
pub fn netns_command(ns: &str, program: impl AsRef<OsStr>) -> Command {
    let mut c = Command::new("ip");
    c.args(["netns", "exec", ns]).arg(program);
    c
}

/// Names of all network namespaces (`ip netns list`).
pub fn list_netns() -> Vec<String> {
    let out = run_with_timeout(cmd("ip", ["netns", "list"]), CMD_TIMEOUT);
    out.stdout
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_owned)
        .collect()
}

fn netns_pids(ns: &str) -> Vec<u32> {
    let out = run_with_timeout(cmd("ip", ["netns", "pids", ns]), CMD_TIMEOUT);
    let me = std::process::id();
    out.stdout
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .filter(|&p| p != me)
        .collect()
}

/// Sends `sig` to `pid`; a process that is already gone is no error.
pub(crate) fn signal_pid(pid: u32, sig: Signal) {
    let Ok(raw) = i32::try_from(pid) else { return };
    let _ = kill(Pid::from_raw(raw), sig);
}

/// Whether `pid` exists and is not a zombie (a zombie no longer holds its
/// namespaces).
pub(crate) fn alive(pid: u32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    stat.rsplit_once(')')
        .and_then(|(_, rest)| rest.trim_start().chars().next())
        .is_some_and(|state| state != 'Z')
}

/// Kills the processes inside `ns` (SIGTERM, 3 s, SIGKILL), then deletes it.
/// Never panics (it runs from `Drop`); problems are printed.
pub fn delete_netns(ns: &str) {
    lab::checkpoint();
    let pids = netns_pids(ns);
    for (sig, grace) in [
        (Signal::SIGTERM, Duration::from_secs(3)),
        (Signal::SIGKILL, Duration::from_secs(2)),
    ] {
        let live: Vec<u32> = pids.iter().copied().filter(|&p| alive(p)).collect();
        if live.is_empty() {
            break;
        }
        for &p in &live {
            signal_pid(p, sig);
        }
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline && live.iter().any(|&p| alive(p)) {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    let out = run_with_timeout(cmd("ip", ["netns", "del", ns]), CMD_TIMEOUT);
    if !out.success() {
        eprintln!("warning: ip netns del {ns}: {out}");
    }
}

/// Deletes every namespace whose name starts with `prefix` (leftovers of an
/// earlier, interrupted run).
pub fn delete_stale(prefix: &str) {
    assert!(!prefix.is_empty(), "refusing to delete every namespace");
    for ns in list_netns().into_iter().filter(|n| n.starts_with(prefix)) {
        eprintln!("removing stale namespace {ns}");
        delete_netns(&ns);
    }
}
