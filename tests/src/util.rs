//! Small helpers: ping, waiting, preconditions.

use std::{
    net::Ipv4Addr,
    time::{Duration, Instant},
};

use crate::{netns::netns_command, process::run_with_timeout};

/// Outcome of a `ping` run.
#[derive(Debug, Clone)]
pub struct PingResult {
    /// Exit status 0: at least one reply.
    pub ok: bool,
    pub transmitted: u32,
    pub received: u32,
    /// ping's output, for messages.
    pub output: String,
}

/// `ping -c <count> -W 2 -i 0.2 <ip>` inside namespace `ns`.
pub fn ping_result(ns: impl AsRef<str>, ip: impl AsRef<str>, count: u32) -> PingResult {
    let (ns, ip) = (ns.as_ref(), ip.as_ref());
    let mut c = netns_command(ns, "ping");
    c.args(["-n", "-c", &count.to_string(), "-W", "2", "-i", "0.2", ip]);
    let timeout = Duration::from_secs(10 + 3 * u64::from(count));
    let out = run_with_timeout(c, timeout);
    // "5 packets transmitted, 5 received, 0% packet loss, time 812ms"
    let (mut transmitted, mut received) = (0, 0);
    for line in out
        .stdout
        .lines()
        .filter(|l| l.contains("packets transmitted"))
    {
        let nums: Vec<u32> = line
            .split(',')
            .filter_map(|part| part.split_whitespace().next()?.parse().ok())
            .collect();
        if nums.len() >= 2 {
            (transmitted, received) = (nums[0], nums[1]);
        }
    }
    PingResult {
        ok: out.success(),
        transmitted,
        received,
        output: format!("ip netns exec {ns} ping {ip}: {out}"),
    }
}

/// A strict connectivity check: one warm-up ping (ARP, learning; its
/// outcome ignored), then `count` pings of which every one must be
/// answered (`ok` is set only then).
pub fn ping_strict(ns: impl AsRef<str>, ip: impl AsRef<str>, count: u32) -> PingResult {
    let (ns, ip) = (ns.as_ref(), ip.as_ref());
    let _ = ping_result(ns, ip, 1);
    let mut r = ping_result(ns, ip, count);
    r.ok = r.received == count && r.transmitted == count;
    r
}

/// Whether [`ping_strict`] passes: every one of `count` pings answered
/// after a warm-up.
pub fn ping(ns: impl AsRef<str>, ip: impl AsRef<str>, count: u32) -> bool {
    ping_strict(ns, ip, count).ok
}

/// Polls `cond` every `interval` until it holds (true) or `timeout` passes
/// (false).
pub fn wait_until(timeout: Duration, interval: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(interval);
    }
}

/// Panics with a clear message unless running as root.
pub fn require_root() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "these tests create network namespaces and must run as root (cargo xtask test)"
    );
}

/// Parses an IPv4 address literal (panics on a typo in a test).
pub fn ipv4(s: &str) -> Ipv4Addr {
    s.parse()
        .unwrap_or_else(|_| panic!("'{s}' is not an IPv4 address"))
}
