//! Network-namespace lab topologies (used by `cargo xtask demo`, reusable by a
//! future `cargo xtask bench`).
//!
//! Everything lives in network namespaces whose names start with a prefix
//! (`vxdemo-` for the demo): veths are created inside a namespace with their
//! peer moved straight into another one, so no root-namespace interface is
//! ever created, changed or deleted.
//!
//! Lifecycle: [`Topology::create`] first removes leftovers of an earlier run
//! (namespaces with the same prefix and the processes inside them) and returns
//! a [`TopologyGuard`]. Processes started with [`TopologyGuard::spawn`] and the
//! namespaces are recorded in a process-wide registry; the guard's `Drop` and
//! the signal hook installed by [`teardown_on_signal`] stop those processes
//! (SIGINT, then SIGKILL) and delete every namespace with the prefix. All
//! changes are made under the registry lock, and the signal hook exits the
//! process while holding it, so nothing is created after a teardown.

use std::{
    collections::BTreeSet,
    ffi::OsStr,
    io::{BufRead as _, BufReader, Read},
    net::Ipv4Addr,
    ops::Deref,
    process::{Child, Command, ExitStatus, Stdio},
    sync::{Mutex, MutexGuard, PoisonError, mpsc},
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, anyhow, bail};

use crate::{
    signals,
    util::{describe, output, output_any},
};

/// Host underlay interface (veth whose peer is a port of the switch bridge).
pub const UPLINK: &str = "eth0";
/// Host side of the container's veth.
pub const PORT: &str = "veth0";
/// Container interface.
pub const CONTAINER_IFACE: &str = "eth0";
/// The underlay switch's bridge.
pub const BRIDGE: &str = "br0";
/// MTU of both ends of the container veths (1500 - VXLAN overhead).
pub const CONTAINER_MTU: u16 = 1450;
pub const PREFIX_LEN: u8 = 24;

const STOP_GRACE: Duration = Duration::from_secs(10);
const KILL_GRACE: Duration = Duration::from_secs(3);

#[derive(Debug, Clone)]
pub struct Host {
    /// Short name, e.g. `h1`; also the name of its switch port.
    pub name: String,
    pub netns: String,
    pub underlay_ip: Ipv4Addr,
    pub container_netns: String,
    pub container_ip: Ipv4Addr,
}

#[derive(Debug, Clone)]
pub struct Topology {
    pub prefix: String,
    pub switch_netns: String,
    pub hosts: Vec<Host>,
}

impl Topology {
    /// The seed's two-host layout: a switch namespace with bridge `br0`; hosts
    /// `h1` (192.168.57.50) and `h2` (192.168.57.54) with `eth0` on the bridge;
    /// containers `c1` (172.18.1.2) and `c2` (172.18.1.3) behind each host's `veth0`.
    pub fn seed(prefix: &str) -> Self {
        let host = |i: u8, underlay: Ipv4Addr, container: Ipv4Addr| Host {
            name: format!("h{i}"),
            netns: format!("{prefix}h{i}"),
            underlay_ip: underlay,
            container_netns: format!("{prefix}c{i}"),
            container_ip: container,
        };
        Self {
            prefix: prefix.to_owned(),
            switch_netns: format!("{prefix}sw"),
            hosts: vec![
                host(
                    1,
                    Ipv4Addr::new(192, 168, 57, 50),
                    Ipv4Addr::new(172, 18, 1, 2),
                ),
                host(
                    2,
                    Ipv4Addr::new(192, 168, 57, 54),
                    Ipv4Addr::new(172, 18, 1, 3),
                ),
            ],
        }
    }

    pub fn namespaces(&self) -> Vec<String> {
        let mut names = vec![self.switch_netns.clone()];
        for h in &self.hosts {
            names.push(h.netns.clone());
            names.push(h.container_netns.clone());
        }
        names
    }

    /// Removes leftovers with the same prefix, then creates the topology.
    /// On error everything created so far is removed again.
    pub fn create(self) -> Result<TopologyGuard> {
        {
            let mut reg = registry();
            if !reg.prefixes.contains(&self.prefix) {
                reg.prefixes.push(self.prefix.clone());
            }
            let leftovers = list_netns(&self.prefix);
            if !leftovers.is_empty() {
                outln!(
                    "topology: removing leftovers of an earlier run: {}",
                    leftovers.join(", ")
                );
                delete_netns_locked(&mut reg);
            }
        }
        let guard = TopologyGuard { topo: self };
        guard
            .build()
            .context("creating the network-namespace topology")?;
        Ok(guard)
    }

    fn build(&self) -> Result<()> {
        outln!(
            "topology: creating namespaces {}",
            self.namespaces().join(", ")
        );
        for ns in self.namespaces() {
            add_netns(&ns)?;
            ip(&["-n", &ns, "link", "set", "lo", "up"])?;
        }
        let sw = self.switch_netns.as_str();
        ip(&["-n", sw, "link", "add", BRIDGE, "type", "bridge"])?;
        ip(&["-n", sw, "link", "set", BRIDGE, "up"])?;
        let mtu = CONTAINER_MTU.to_string();
        for h in &self.hosts {
            let (hn, cn) = (h.netns.as_str(), h.container_netns.as_str());
            outln!(
                "topology: {hn}: {UPLINK} {}/{PREFIX_LEN} <-> {sw}:{BRIDGE} port {}; \
                 {cn}: {CONTAINER_IFACE} {}/{PREFIX_LEN} mtu {mtu} <-> {hn}:{PORT}",
                h.underlay_ip,
                h.name,
                h.container_ip
            );
            // Underlay: host eth0 <-> switch port hN (created in the host's namespace,
            // peer moved into the switch's).
            ip(&[
                "-n", hn, "link", "add", UPLINK, "type", "veth", "peer", "name", &h.name, "netns",
                sw,
            ])?;
            ip(&["-n", sw, "link", "set", &h.name, "master", BRIDGE])?;
            ip(&["-n", sw, "link", "set", &h.name, "up"])?;
            ip(&[
                "-n",
                hn,
                "addr",
                "add",
                &format!("{}/{PREFIX_LEN}", h.underlay_ip),
                "dev",
                UPLINK,
            ])?;
            ip(&["-n", hn, "link", "set", UPLINK, "up"])?;
            // Container: eth0 <-> host veth0, both MTU 1450.
            #[rustfmt::skip]
            ip(&["-n", cn, "link", "add", CONTAINER_IFACE, "mtu", &mtu, "type", "veth",
                 "peer", "name", PORT, "mtu", &mtu, "netns", hn])?;
            ip(&[
                "-n",
                cn,
                "addr",
                "add",
                &format!("{}/{PREFIX_LEN}", h.container_ip),
                "dev",
                CONTAINER_IFACE,
            ])?;
            ip(&["-n", cn, "link", "set", CONTAINER_IFACE, "up"])?;
            ip(&["-n", hn, "link", "set", PORT, "up"])?;
        }
        Ok(())
    }
}

/// Owns a created topology; dropping it stops the processes started in it and
/// deletes its namespaces.
pub struct TopologyGuard {
    topo: Topology,
}

impl Deref for TopologyGuard {
    type Target = Topology;
    fn deref(&self) -> &Topology {
        &self.topo
    }
}

impl Drop for TopologyGuard {
    fn drop(&mut self) {
        teardown();
    }
}

impl TopologyGuard {
    /// Starts `program args...` in `netns` (stdin null), printing its stdout and
    /// stderr lines prefixed with `[label]`. It is stopped by [`stop_processes`]
    /// or at teardown.
    pub fn spawn<S: AsRef<OsStr>>(
        &self,
        netns: &str,
        label: &str,
        program: impl AsRef<OsStr>,
        args: &[S],
    ) -> Result<Spawned> {
        let mut cmd = netns_cmd(netns, program);
        cmd.args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        outln!("topology: [{label}] {}", describe(&cmd));
        let mut reg = registry();
        let mut child = crate::signals::unblock_in_child(&mut cmd)
            .spawn()
            .with_context(|| format!("failed to start `{}`", describe(&cmd)))?;
        let (tx, rx) = mpsc::channel();
        if let Some(out) = child.stdout.take() {
            forward_lines(out, label, false, Some(tx));
        }
        if let Some(err) = child.stderr.take() {
            forward_lines(err, label, true, None);
        }
        reg.processes.push(Proc {
            label: label.to_owned(),
            child,
        });
        Ok(Spawned {
            label: label.to_owned(),
            lines: rx,
        })
    }
}

/// `ip netns exec <netns> <program>`; add arguments and run it.
pub fn netns_cmd(netns: &str, program: impl AsRef<OsStr>) -> Command {
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", netns]).arg(program);
    cmd
}

/// `ping -c 3 -W 2 <to>` from `netns`; returns whether it succeeded and its output.
pub fn ping(netns: &str, to: Ipv4Addr) -> Result<(bool, String)> {
    let mut cmd = netns_cmd(netns, "ping");
    cmd.args(["-c", "3", "-W", "2"]).arg(to.to_string());
    let out = output_any(&mut cmd)?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok((out.status.success(), text))
}

/// A process started by [`TopologyGuard::spawn`].
pub struct Spawned {
    pub label: String,
    lines: mpsc::Receiver<String>,
}

impl Spawned {
    /// The stdout lines printed so far and not read yet.
    #[cfg_attr(not(feature = "bench-ebpf"), allow(dead_code))]
    pub fn drain(&self) -> Vec<String> {
        self.lines.try_iter().collect()
    }

    /// Waits until the process prints a stdout line for which `pred` holds.
    /// Fails on timeout or when the process closes its stdout (exits) first.
    pub fn wait_for_line(
        &self,
        what: &str,
        timeout: Duration,
        pred: impl Fn(&str) -> bool,
    ) -> Result<String> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if pred(&line) => return Ok(line),
                Ok(_) => {}
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    bail!(
                        "[{}] did not print {what} within {} s",
                        self.label,
                        timeout.as_secs()
                    )
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    let status = exit_status(&self.label, Duration::from_secs(2))
                        .map_or_else(|| "still running".to_owned(), |s| s.to_string());
                    bail!(
                        "[{}] closed its stdout before printing {what} ({status})",
                        self.label
                    )
                }
            }
        }
    }
}

/// Stops every process started in a topology: SIGINT, then SIGKILL after 10 s.
/// Returns each one's label and exit status.
pub fn stop_processes() -> Vec<(String, Result<ExitStatus>)> {
    stop_processes_locked(&mut registry(), STOP_GRACE)
}

/// [`stop_processes`] with another grace period before SIGKILL (the bench:
/// a forwarder with a million FDB entries takes longer to save its table).
#[cfg_attr(not(feature = "bench-ebpf"), allow(dead_code))]
pub fn stop_processes_within(grace: Duration) -> Vec<(String, Result<ExitStatus>)> {
    stop_processes_locked(&mut registry(), grace)
}

/// Stops the processes and deletes the namespaces (idempotent).
pub fn teardown() {
    let mut reg = registry();
    stop_processes_locked(&mut reg, STOP_GRACE);
    delete_netns_locked(&mut reg);
}

/// On SIGINT/SIGTERM/SIGHUP: tear down, then exit with 128 + signal.
pub fn teardown_on_signal() {
    signals::set_hook(|sig| {
        errln!("\ntopology: interrupted (signal {sig}); tearing down");
        let mut reg = registry();
        stop_processes_locked(&mut reg, STOP_GRACE);
        delete_netns_locked(&mut reg);
        // Exit while holding the lock: no other thread can create anything now.
        std::process::exit(128 + sig);
    });
}

struct Proc {
    label: String,
    child: Child,
}

struct Registry {
    prefixes: Vec<String>,
    namespaces: Vec<String>,
    processes: Vec<Proc>,
}

static REGISTRY: Mutex<Registry> = Mutex::new(Registry {
    prefixes: Vec::new(),
    namespaces: Vec::new(),
    processes: Vec::new(),
});

fn registry() -> MutexGuard<'static, Registry> {
    REGISTRY.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Runs `ip args...` under the registry lock.
fn ip(args: &[&str]) -> Result<()> {
    let _reg = registry();
    output(Command::new("ip").args(args)).map(drop)
}

fn add_netns(name: &str) -> Result<()> {
    let mut reg = registry();
    output(Command::new("ip").args(["netns", "add", name]))?;
    reg.namespaces.push(name.to_owned());
    Ok(())
}

fn exit_status(label: &str, wait: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + wait;
    loop {
        {
            let mut reg = registry();
            let proc = reg.processes.iter_mut().find(|p| p.label == label)?;
            if let Ok(Some(status)) = proc.child.try_wait() {
                return Some(status);
            }
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn forward_lines(
    stream: impl Read + Send + 'static,
    label: &str,
    stderr: bool,
    tx: Option<mpsc::Sender<String>>,
) {
    let label = label.to_owned();
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines() {
            let Ok(line) = line else { break };
            if stderr {
                errln!("[{label}] {line}");
            } else {
                outln!("[{label}] {line}");
            }
            if let Some(tx) = &tx {
                let _ = tx.send(line);
            }
        }
    });
}

fn stop_processes_locked(reg: &mut Registry, grace: Duration) -> Vec<(String, Result<ExitStatus>)> {
    let mut procs = std::mem::take(&mut reg.processes);
    for p in &mut procs {
        if matches!(p.child.try_wait(), Ok(None)) {
            outln!("topology: [{}] sending SIGINT", p.label);
            // SAFETY: kill(2) on our own unreaped child.
            unsafe { libc::kill(p.child.id() as libc::pid_t, libc::SIGINT) };
        }
    }
    let deadline = Instant::now() + grace;
    let mut results = Vec::new();
    for mut p in procs {
        let status = loop {
            match p.child.try_wait() {
                Ok(Some(status)) => break Ok(status),
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(50))
                }
                Ok(None) => {
                    outln!(
                        "topology: [{}] still running {} s after SIGINT; killing it",
                        p.label,
                        grace.as_secs()
                    );
                    let _ = p.child.kill();
                    break p.child.wait().map_err(anyhow::Error::from);
                }
                Err(e) => break Err(anyhow!(e)),
            }
        };
        match &status {
            Ok(s) => outln!("topology: [{}] exited: {s}", p.label),
            Err(e) => outln!("topology: [{}] could not be waited for: {e:#}", p.label),
        }
        results.push((p.label, status));
    }
    results
}

/// Deletes the recorded namespaces and any other namespace with a registered
/// prefix, after killing the processes still inside them.
fn delete_netns_locked(reg: &mut Registry) {
    let mut names: BTreeSet<String> = std::mem::take(&mut reg.namespaces).into_iter().collect();
    for prefix in &reg.prefixes {
        names.extend(list_netns(prefix));
    }
    if names.is_empty() {
        return;
    }
    kill_netns_processes(&names);
    let names: Vec<String> = names.into_iter().collect();
    outln!("topology: deleting namespaces {}", names.join(", "));
    for name in &names {
        if let Err(e) = output(Command::new("ip").args(["netns", "del", name])) {
            errln!("topology: warning: {e:#}");
        }
    }
    let left: Vec<String> = reg.prefixes.iter().flat_map(|p| list_netns(p)).collect();
    if !left.is_empty() {
        errln!(
            "topology: warning: namespaces still present: {}",
            left.join(", ")
        );
    }
}

/// Names of network namespaces starting with `prefix` (`ip netns list`).
fn list_netns(prefix: &str) -> Vec<String> {
    match output(Command::new("ip").args(["netns", "list"])) {
        Ok(out) => out
            .lines()
            .filter_map(|l| l.split_whitespace().next())
            .filter(|n| n.starts_with(prefix))
            .map(str::to_owned)
            .collect(),
        Err(e) => {
            errln!("topology: warning: {e:#}");
            Vec::new()
        }
    }
}

/// SIGTERM, then SIGKILL, every process inside the namespaces (a namespace
/// whose name is deleted lives on, with its interfaces, while a process uses it).
fn kill_netns_processes(names: &BTreeSet<String>) {
    let me = std::process::id();
    let mut pids: Vec<libc::pid_t> = Vec::new();
    for name in names {
        if let Ok(out) = output(Command::new("ip").args(["netns", "pids", name])) {
            pids.extend(
                out.split_whitespace()
                    .filter_map(|p| p.parse::<u32>().ok())
                    .filter(|&p| p != me)
                    .map(|p| p as libc::pid_t),
            );
        }
    }
    if pids.is_empty() {
        return;
    }
    for (sig, grace) in [
        (libc::SIGTERM, KILL_GRACE),
        (libc::SIGKILL, Duration::from_secs(1)),
    ] {
        let alive_pids: Vec<_> = pids.iter().copied().filter(|&p| alive(p)).collect();
        if alive_pids.is_empty() {
            return;
        }
        outln!(
            "topology: sending signal {sig} to processes left in the namespaces: {alive_pids:?}"
        );
        for &pid in &alive_pids {
            // SAFETY: plain kill(2).
            unsafe { libc::kill(pid, sig) };
        }
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline && pids.iter().any(|&p| alive(p)) {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// Whether `pid` exists and is not a zombie (a zombie no longer holds its namespaces).
fn alive(pid: libc::pid_t) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    stat.rsplit_once(')')
        .and_then(|(_, rest)| rest.trim_start().chars().next())
        .is_some_and(|state| state != 'Z')
}
