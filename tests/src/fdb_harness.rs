//! Helpers for the FDB end-to-end tests (`tests/tests/e2e_fdb.rs`):
//!
//! - [`TempDir`]: a directory removed on drop (state files, config files);
//! - [`Fwd`]: a running `vxlan-fwd` like [`crate::Forwarder`], but started
//!   with `VXLAN_FWD_STATE_DIR` pointing to a test directory (so no test
//!   touches `/run`), and which can also be SIGKILLed (its datapath stays);
//! - [`Capture`]: `tcpdump` in a namespace, counting matching packets;
//! - [`send_raw_frames`]: an AF_PACKET sender run from a thread that has
//!   entered a namespace;
//! - [`igmp_groups`]: the IGMP memberships of a namespace
//!   (`/proc/net/igmp`);
//! - [`FdbEntry`]: one `fdb show --json` row as a comparable value (the
//!   product's own row type).

use std::{
    collections::BTreeMap,
    ffi::CString,
    fs::File,
    os::fd::AsRawFd,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use serde_json::Value;
/// One FDB entry as `fdb show --json` gives it, comparable and sortable:
/// the forwarder's own row type, so the tests parse what it prints.
pub use vxlan_user::fdb::FdbRow as FdbEntry;

use crate::{
    forwarder::{READY_PREFIX, READY_TIMEOUT, vxlan_fwd, vxlan_fwd_bin},
    netns::{CMD_TIMEOUT, NetNs, netns_command},
    process::{Output, Process, describe, run_with_timeout},
};

/// Environment variable naming the directory of the forwarder's state file.
pub const STATE_DIR_ENV: &str = "VXLAN_FWD_STATE_DIR";

/// A fresh directory under the system temp dir, removed (with its content)
/// when dropped.
#[derive(Debug)]
pub struct TempDir {
    path: PathBuf,
}

impl TempDir {
    /// Creates `<tmp>/vxf-<tag>-<pid>-<nanos>`.
    pub fn new(tag: &str) -> Self {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let path = std::env::temp_dir().join(format!("vxf-{tag}-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&path)
            .unwrap_or_else(|e| panic!("creating {}: {e}", path.display()));
        Self { path }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes `text` to `<dir>/<name>` and returns its path.
    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.path.join(name);
        std::fs::write(&p, text).unwrap_or_else(|e| panic!("writing {}: {e}", p.display()));
        p
    }

    /// Names of the files in the directory.
    pub fn files(&self) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(&self.path)
            .map(|rd| {
                rd.filter_map(Result::ok)
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        v.sort();
        v
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// A running `vxlan-fwd` whose state file lives in a test directory.
/// Dropping it stops it (SIGINT, 5 s, SIGKILL) and, during a panic, prints
/// its counters and FDB.
pub struct Fwd {
    ns: String,
    proc: Process,
    state_dir: PathBuf,
}

impl Fwd {
    /// Starts `vxlan-fwd args...` in `ns` with `VXLAN_FWD_STATE_DIR=state_dir`
    /// and waits for its first `ready` line; panics with its output if it
    /// does not get ready.
    pub fn start(ns: impl AsRef<str>, args: &[&str], state_dir: &Path) -> Self {
        let ns = ns.as_ref();
        match Self::try_start(ns, args, state_dir) {
            Ok(f) => f,
            Err(out) => panic!(
                "vxlan-fwd {} in {ns} did not get ready: {out}",
                args.join(" ")
            ),
        }
    }

    /// Like [`Fwd::start`], but returns the output of a failed start.
    pub fn try_start(ns: impl AsRef<str>, args: &[&str], state_dir: &Path) -> Result<Self, Output> {
        Self::try_start_env(ns, args, state_dir, &[])
    }

    /// [`Fwd::try_start`] with more environment variables (e.g.
    /// `NOTIFY_SOCKET`).
    pub fn try_start_env(
        ns: impl AsRef<str>,
        args: &[&str],
        state_dir: &Path,
        env: &[(&str, &str)],
    ) -> Result<Self, Output> {
        let ns = ns.as_ref();
        let mut c = netns_command(ns, vxlan_fwd_bin());
        c.args(args).env(STATE_DIR_ENV, state_dir);
        for (k, v) in env {
            c.env(k, v);
        }
        let label = format!("vxlan-fwd@{ns}");
        eprintln!(
            "[{label}] {STATE_DIR_ENV}={} {}",
            state_dir.display(),
            describe(&c)
        );
        let mut proc = Process::spawn(c, &label);
        match proc.wait_for_line(READY_TIMEOUT, |l| l.starts_with(READY_PREFIX)) {
            Ok(_) => Ok(Self {
                ns: ns.to_owned(),
                proc,
                state_dir: state_dir.to_owned(),
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

    pub fn ns(&self) -> &str {
        &self.ns
    }

    /// The `vxlan-fwd: ready` lines printed so far.
    pub fn ready_lines(&self) -> Vec<String> {
        self.proc
            .stdout()
            .lines()
            .filter(|l| l.starts_with(READY_PREFIX))
            .map(str::to_owned)
            .collect()
    }

    /// Waits (up to 5 s) until it has printed `n` ready lines; returns the
    /// ready lines printed by then.
    pub fn wait_ready_lines(&self, n: usize) -> Vec<String> {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let lines = self.ready_lines();
            if lines.len() >= n || Instant::now() >= deadline {
                return lines;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn pid(&self) -> Option<u32> {
        self.proc.pid()
    }

    pub fn is_running(&mut self) -> bool {
        self.proc.is_running()
    }

    /// (stdout, stderr) so far.
    pub fn output_so_far(&self) -> (String, String) {
        (self.proc.stdout(), self.proc.stderr())
    }

    /// SIGINT, then SIGKILL after 5 s (`timed_out` set).
    pub fn stop(mut self) -> Output {
        self.proc.stop()
    }

    /// SIGKILL, as a crash: its datapath stays attached.
    pub fn kill(mut self) -> Output {
        self.proc.signal(libc::SIGKILL);
        self.proc.wait(Duration::from_secs(5))
    }

    /// Runs `vxlan-fwd args...` in its namespace (with its state
    /// directory, where its control socket is), whatever the outcome.
    pub fn run(&self, args: &[&str]) -> Output {
        let mut c = netns_command(&self.ns, vxlan_fwd_bin());
        c.args(args).env(STATE_DIR_ENV, &self.state_dir);
        run_with_timeout(c, CMD_TIMEOUT)
    }

    /// The state directory it was started with.
    pub fn state_dir(&self) -> &Path {
        &self.state_dir
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

    /// Runs `vxlan-fwd args...` in its namespace; panics unless it
    /// succeeds; returns stdout.
    pub fn command(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.success(),
            "vxlan-fwd {} in {} failed: {out}",
            args.join(" "),
            self.ns
        );
        out.stdout
    }

    pub fn fdb_show(&self) -> String {
        self.command(&["fdb", "show"])
    }

    pub fn fdb_show_json(&self) -> Vec<Value> {
        let s = self.command(&["fdb", "show", "--json"]);
        match serde_json::from_str::<Value>(&s) {
            Ok(Value::Array(a)) => a,
            Ok(v) => panic!("fdb show --json in {} is not an array: {v}", self.ns),
            Err(e) => panic!("fdb show --json in {} is not JSON ({e}): {s}", self.ns),
        }
    }

    /// `fdb show --json` as [`FdbEntry`] values.
    pub fn entries(&self) -> Vec<FdbEntry> {
        let s = self.command(&["fdb", "show", "--json"]);
        serde_json::from_str(&s)
            .unwrap_or_else(|e| panic!("fdb show --json in {} is not FDB rows ({e}): {s}", self.ns))
    }

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

    pub fn counters(&self) -> BTreeMap<String, u64> {
        self.stats_json()["counters"]
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

    pub fn counter(&self, name: &str) -> u64 {
        let c = self.counters();
        *c.get(name)
            .unwrap_or_else(|| panic!("no counter {name} in vxlan-fwd stats of {}: {c:?}", self.ns))
    }

    /// Counters, FDB, links and output, for failure messages. Never panics.
    pub fn diagnostics(&self) -> String {
        let stats = vxlan_fwd(&self.ns, ["stats"]);
        let fdb = vxlan_fwd(&self.ns, ["fdb", "show"]);
        let mut links = std::process::Command::new("ip");
        links.args(["-n", &self.ns, "-s", "link", "show"]);
        let links = run_with_timeout(links, CMD_TIMEOUT);
        let fdb_lines = fdb.stdout.lines().count();
        // A flooded table is long: its head is enough.
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

impl Drop for Fwd {
    fn drop(&mut self) {
        if std::thread::panicking() && self.proc.is_running() {
            eprintln!("{}", self.diagnostics());
        }
    }
}

/// The diagnostics (counters, FDB, links) of each of `fwds`, for a
/// failure message.
pub fn diag(fwds: &[&Fwd]) -> String {
    fwds.iter()
        .map(|f| f.diagnostics())
        .collect::<Vec<_>>()
        .join("\n")
}

/// One warm-up ping (ARP, learning), then `count` pings from `from` to
/// `ip` that must all be answered; the failure shows `fwds`' diagnostics.
pub fn assert_connected(from: &crate::Container, ip: &str, count: u32, fwds: &[&Fwd]) {
    let _ = crate::ping_result(&from.ns, ip, 1);
    let r = crate::ping_result(&from.ns, ip, count);
    if r.received != count {
        panic!(
            "ping {} -> {ip}: {} of {count} replies:\n{}\n{}",
            from.name,
            r.received,
            r.output,
            diag(fwds)
        );
    }
}

/// `tcpdump -l -n -Q in -i <iface> <filter>` running in a namespace.
pub struct Capture {
    proc: Process,
    what: String,
}

impl Capture {
    /// Starts the capture and waits until tcpdump listens (its filter is
    /// installed by then).
    pub fn start(ns: &NetNs, iface: &str, filter: &str) -> Self {
        let mut args = vec!["-l", "-n", "-Q", "in", "-i", iface];
        args.extend(filter.split_whitespace());
        let mut proc = ns.spawn("tcpdump", args);
        let what = format!("tcpdump -i {iface} '{filter}' in {}", ns.name());
        let listening =
            crate::util::wait_until(Duration::from_secs(10), Duration::from_millis(20), || {
                proc.stderr().contains("listening on") || !proc.is_running()
            });
        assert!(
            listening && proc.is_running(),
            "{what} did not start: {}",
            proc.stderr()
        );
        // The socket is bound and filtered when tcpdump says it listens;
        // a moment more for good measure.
        std::thread::sleep(Duration::from_millis(100));
        Self { proc, what }
    }

    /// Stops tcpdump and returns the lines of the packets it saw.
    pub fn finish(mut self) -> Vec<String> {
        let out = self.proc.stop();
        assert!(
            !out.timed_out,
            "{} did not stop on SIGINT: {out}",
            self.what
        );
        out.stdout
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(str::to_owned)
            .collect()
    }
}

/// Sends each of `frames` (complete Ethernet frames) out of `ifname` in
/// namespace `ns` through an AF_PACKET socket, from a thread that enters
/// the namespace (the calling thread is not moved). Returns how many were
/// sent, or why it could not start.
pub fn send_raw_frames(ns: &str, ifname: &str, frames: Vec<Vec<u8>>) -> Result<usize, String> {
    raw_sender(ns, ifname, frames, None)
        .join()
        .map_err(|_| "the sender thread panicked".to_owned())?
}

/// Like [`send_raw_frames`], but returns at once: the frames are sent by a
/// thread pinned to CPU `cpu` (so that two senders on two CPUs run the
/// datapath concurrently); join the handle for the count.
pub fn spawn_raw_sender(
    ns: &str,
    ifname: &str,
    frames: Vec<Vec<u8>>,
    cpu: usize,
) -> std::thread::JoinHandle<Result<usize, String>> {
    raw_sender(ns, ifname, frames, Some(cpu))
}

fn raw_sender(
    ns: &str,
    ifname: &str,
    frames: Vec<Vec<u8>>,
    cpu: Option<usize>,
) -> std::thread::JoinHandle<Result<usize, String>> {
    let (ns, ifname) = (ns.to_owned(), ifname.to_owned());
    std::thread::spawn(move || -> Result<usize, String> {
        if let Some(cpu) = cpu {
            // SAFETY: a zeroed cpu_set_t is empty; CPU_SET and
            // sched_setaffinity(0, ..) act on this thread only.
            let rc = unsafe {
                let mut set: libc::cpu_set_t = std::mem::zeroed();
                libc::CPU_SET(cpu, &mut set);
                libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &set)
            };
            if rc != 0 {
                return Err(format!(
                    "pinning to CPU {cpu}: {}",
                    std::io::Error::last_os_error()
                ));
            }
        }
        let nsfile = File::open(format!("/run/netns/{ns}"))
            .map_err(|e| format!("opening /run/netns/{ns}: {e}"))?;
        // SAFETY: setns(2) on a valid namespace fd; it moves only this
        // thread, which ends with this closure.
        if unsafe { libc::setns(nsfile.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
            return Err(format!("setns {ns}: {}", std::io::Error::last_os_error()));
        }
        let cname = CString::new(ifname.clone()).map_err(|e| e.to_string())?;
        // SAFETY: a NUL-terminated name.
        let ifindex = unsafe { libc::if_nametoindex(cname.as_ptr()) };
        if ifindex == 0 {
            return Err(format!("no interface {ifname} in {ns}"));
        }
        // Protocol 0: send only, nothing is received on this socket.
        // SAFETY: plain socket(2).
        let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW, 0) };
        if fd < 0 {
            return Err(format!(
                "AF_PACKET socket: {}",
                std::io::Error::last_os_error()
            ));
        }
        // SAFETY: sockaddr_ll is plain data; zeroed is a valid value.
        let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        sll.sll_family = libc::AF_PACKET as u16;
        sll.sll_ifindex = ifindex as i32;
        sll.sll_halen = 6;
        let mut sent = 0;
        let mut err = None;
        for f in &frames {
            sll.sll_addr[..6].copy_from_slice(&f[..6]);
            let mut tries = 0;
            loop {
                // SAFETY: valid fd, buffer and address of the right size.
                let n = unsafe {
                    libc::sendto(
                        fd,
                        f.as_ptr().cast(),
                        f.len(),
                        0,
                        (&sll as *const libc::sockaddr_ll).cast(),
                        size_of::<libc::sockaddr_ll>() as libc::socklen_t,
                    )
                };
                if n >= 0 {
                    sent += 1;
                    break;
                }
                let e = std::io::Error::last_os_error();
                tries += 1;
                if e.raw_os_error() == Some(libc::ENOBUFS) && tries < 100 {
                    std::thread::sleep(Duration::from_millis(1));
                    continue;
                }
                err = Some(format!("sendto after {sent} frames: {e}"));
                break;
            }
            if err.is_some() {
                break;
            }
        }
        // SAFETY: our own fd.
        unsafe { libc::close(fd) };
        match err {
            Some(e) => Err(e),
            None => Ok(sent),
        }
    })
}

/// A small xorshift generator (no dependency needed for test data).
pub struct XorShift(u64);

impl XorShift {
    pub fn seeded() -> Self {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0x9e37_79b9_7f4a_7c15);
        Self(t ^ (u64::from(std::process::id()) << 32) | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
}

/// `n` distinct random unicast, locally administered MACs.
pub fn random_unicast_macs(n: usize) -> Vec<[u8; 6]> {
    let mut rng = XorShift::seeded();
    let mut seen = std::collections::BTreeSet::new();
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        let r = rng.next_u64().to_le_bytes();
        // Unicast (I/G bit clear), locally administered (U/L bit set).
        let mac = [(r[0] & 0xfc) | 0x02, r[1], r[2], r[3], r[4], r[5]];
        if seen.insert(mac) {
            out.push(mac);
        }
    }
    out
}

/// An Ethernet frame `src -> dst` of ethertype 0x88b5 (local
/// experimental), 60 bytes.
pub fn experimental_frame(dst: [u8; 6], src: [u8; 6]) -> Vec<u8> {
    let mut f = Vec::with_capacity(60);
    f.extend_from_slice(&dst);
    f.extend_from_slice(&src);
    f.extend_from_slice(&[0x88, 0xb5]);
    f.extend_from_slice(b"vxlan-fwd learning cap test");
    f.resize(60, 0);
    f
}

/// Formats a MAC as `aa:bb:cc:dd:ee:ff`.
pub fn mac_str(m: &[u8; 6]) -> String {
    m.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// The IGMP memberships of namespace `ns` from `/proc/net/igmp`: (device,
/// group as the file writes it, e.g. `010101E0` for 224.1.1.1).
pub fn igmp_groups(ns: &NetNs) -> Vec<(String, String)> {
    let text = ns.run("cat", ["/proc/net/igmp"]);
    parse_igmp(&text)
}

/// Parses `/proc/net/igmp`.
pub fn parse_igmp(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut dev = String::new();
    for line in text.lines().skip(1) {
        if line.starts_with(|c: char| c.is_ascii_digit()) {
            // "2\teth0      :     2      V3"
            dev = line
                .split_whitespace()
                .nth(1)
                .unwrap_or("")
                .trim_end_matches(':')
                .to_owned();
        } else if let Some(group) = line.split_whitespace().next() {
            out.push((dev.clone(), group.to_owned()));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn igmp_parsing() {
        let text = "Idx\tDevice    : Count Querier\tGroup    Users Timer\tReporter\n\
                    1\tlo        :     1      V3\n\
                    \t\t\t\t010000E0     1 0:00000000\t\t0\n\
                    2\teth0      :     2      V3\n\
                    \t\t\t\t010101E0     1 0:00000000\t\t0\n\
                    \t\t\t\t010000E0     1 0:00000000\t\t0\n";
        assert_eq!(
            parse_igmp(text),
            vec![
                ("lo".to_owned(), "010000E0".to_owned()),
                ("eth0".to_owned(), "010101E0".to_owned()),
                ("eth0".to_owned(), "010000E0".to_owned()),
            ]
        );
    }

    #[test]
    fn macs_are_distinct_unicast() {
        let m = random_unicast_macs(500);
        let set: std::collections::BTreeSet<_> = m.iter().collect();
        assert_eq!(set.len(), 500);
        assert!(m.iter().all(|m| m[0] & 1 == 0 && m[0] & 2 == 2));
    }
}
