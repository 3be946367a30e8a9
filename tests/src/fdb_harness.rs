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
    ffi::CString,
    ops::{Deref, DerefMut},
    path::{Path, PathBuf},
    time::Duration,
};

use nix::{
    sched::{CpuSet, sched_setaffinity},
    unistd::Pid,
};
/// One FDB entry as `fdb show --json` gives it, comparable and sortable:
/// the forwarder's own row type, so the tests parse what it prints.
#[cfg(feature = "datapath")]
pub use vxlan_user::fdb::FdbRow as FdbEntry;

pub use crate::{capture::Capture, forwarder::STATE_DIR_ENV};
use crate::{
    forwarder::{Forwarder, StartOpts},
    netns::{NetNs, enter_netns},
    process::Output,
};

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

/// A running `vxlan-fwd` whose state file lives in a test directory: a
/// [`Forwarder`] started with [`StartOpts::state_dir`] (it derefs to it for
/// everything else), so no test touches `/run`.
pub struct Fwd(Forwarder);

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
        let opts = StartOpts {
            state_dir: Some(state_dir),
            env,
            ..StartOpts::default()
        };
        Forwarder::start_with(ns, args, &opts).map(Self)
    }

    /// The state directory it was started with.
    pub fn state_dir(&self) -> &Path {
        self.0
            .state_dir()
            .expect("a Fwd is always started with a state directory")
    }

    /// SIGINT, then SIGKILL after 5 s (`timed_out` set).
    pub fn stop(self) -> Output {
        self.0.stop()
    }

    /// SIGKILL, as a crash: its datapath stays attached.
    pub fn kill(self) -> Output {
        self.0.kill()
    }

    /// Waits up to `timeout` for it to exit by itself; returns its output
    /// (stopping it if it did not exit: `timed_out` is then set).
    pub fn wait_exit(self, timeout: Duration) -> Output {
        self.0.wait_exit(timeout)
    }

    /// The [`Forwarder`] itself.
    pub fn into_inner(self) -> Forwarder {
        self.0
    }
}

impl Deref for Fwd {
    type Target = Forwarder;

    fn deref(&self) -> &Forwarder {
        &self.0
    }
}

impl DerefMut for Fwd {
    fn deref_mut(&mut self) -> &mut Forwarder {
        &mut self.0
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
            // Pid 0: this thread only.
            let mut set = CpuSet::new();
            set.set(cpu)
                .and_then(|()| sched_setaffinity(Pid::from_raw(0), &set))
                .map_err(|e| format!("pinning to CPU {cpu}: {e}"))?;
        }
        // Only this thread, which ends with this closure, moves.
        let _inside = enter_netns(&ns).map_err(|e| format!("{e:#}"))?;
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
