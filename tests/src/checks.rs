//! Checks the end-to-end test files share: strict connectivity and "no
//! reply" (with its reason), counter changes, failed one-shot commands,
//! and what a forwarder leaves behind. Failure messages carry the
//! forwarders' diagnostics (counters, FDB, links).

use std::collections::BTreeMap;

use serde_json::Value;

use crate::{
    Container, Forwarder, NetNs, Output, fdb_harness::Fwd, ping_result, ping_strict,
    traffic::iperf3,
};

/// A running forwarder that can describe its state for a failure message.
pub trait Diagnose {
    /// Counters, FDB and links, as text.
    fn diagnostics(&self) -> String;
}

impl Diagnose for Forwarder {
    fn diagnostics(&self) -> String {
        Forwarder::diagnostics(self)
    }
}

impl Diagnose for Fwd {
    fn diagnostics(&self) -> String {
        Forwarder::diagnostics(self)
    }
}

/// The diagnostics of each of `fwds`, one after the other.
pub fn diagnostics<D: Diagnose>(fwds: &[&D]) -> String {
    fwds.iter()
        .map(|f| f.diagnostics())
        .collect::<Vec<_>>()
        .join("\n")
}

/// Runs iperf3 for 3 s from `client` to `server` (`reverse`: the server
/// sends); asserts no error and more than 50 MB through (`what` and
/// `fwds`' diagnostics in every failure); returns iperf3's report.
pub fn assert_iperf<D: Diagnose>(
    client: &Container,
    server: &Container,
    reverse: bool,
    fwds: &[&D],
    what: &str,
) -> Value {
    let (out, srv_out) = iperf3(client, server, reverse);
    let diag = || format!("client: {out}\nserver: {srv_out}\n{}", diagnostics(fwds));
    let report: Value = serde_json::from_str(&out.stdout)
        .unwrap_or_else(|e| panic!("{what}: iperf3 did not print JSON ({e}):\n{}", diag()));
    assert!(
        report.get("error").is_none(),
        "{what}: iperf3 error {}:\n{}",
        report["error"],
        diag()
    );
    assert!(out.success(), "{what}: iperf3 failed:\n{}", diag());
    let bytes = report["end"]["sum_received"]["bytes"].as_u64().unwrap_or(0);
    let retrans = &report["end"]["sum_sent"]["retransmits"];
    eprintln!("{what}: {bytes} bytes received in 3 s, {retrans} retransmits");
    assert!(
        bytes > 50_000_000,
        "{what}: only {bytes} bytes received in 3 s:\n{}",
        diag()
    );
    report
}

/// Strict connectivity: one warm-up ping, then every one of `count` pings
/// from `from` to `ip` answered; the failure shows `fwds`' diagnostics.
pub fn assert_ping<D: Diagnose>(from: &NetNs, ip: &str, count: u32, fwds: &[&D]) {
    let r = ping_strict(from, ip, count);
    if !r.ok {
        panic!(
            "ping {} -> {ip} failed:\n{}\n{}",
            from.name(),
            r.output,
            diagnostics(fwds)
        );
    }
}

/// Asserts that `count` pings from `from` to `ip` get no reply at all,
/// because `why`. Only meaningful next to a positive control (a path that
/// does answer) in the same test.
pub fn assert_no_ping<D: Diagnose>(from: &NetNs, ip: &str, count: u32, why: &str, fwds: &[&D]) {
    let r = ping_result(from, ip, count);
    if r.received != 0 || r.ok {
        panic!(
            "ping {} -> {ip} got {} replies, but {why}:\n{}\n{}",
            from.name(),
            r.received,
            r.output,
            diagnostics(fwds)
        );
    }
}

/// Every container of `cs` pings every other one ([`assert_ping`], 2
/// pings each).
pub fn ping_all<D: Diagnose>(cs: &[&Container], fwds: &[&D]) {
    for a in cs {
        for b in cs {
            if a.name != b.name {
                assert_ping(&a.ns, &b.ip.to_string(), 2, fwds);
            }
        }
    }
}

/// Nonzero changes of the counters from `before` to `after`.
pub fn counters_delta(
    before: &BTreeMap<String, u64>,
    after: &BTreeMap<String, u64>,
) -> BTreeMap<String, i128> {
    after
        .iter()
        .map(|(k, v)| {
            (
                k.clone(),
                i128::from(*v) - i128::from(before.get(k).copied().unwrap_or(0)),
            )
        })
        .filter(|(_, d)| *d != 0)
        .collect()
}

/// Change of counter `k` from `before` to `after` (panics if either lacks
/// it).
pub fn delta(before: &BTreeMap<String, u64>, after: &BTreeMap<String, u64>, k: &str) -> i128 {
    let get = |m: &BTreeMap<String, u64>| {
        *m.get(k)
            .unwrap_or_else(|| panic!("no counter `{k}`: {m:?}"))
    };
    i128::from(get(after)) - i128::from(get(before))
}

/// `(transmitted, received)` from ping's summary line, if it printed one.
pub fn ping_summary(text: &str) -> Option<(u32, u32)> {
    text.lines()
        .filter(|l| l.contains("packets transmitted"))
        .find_map(|line| {
            let nums: Vec<u32> = line
                .split(',')
                .filter_map(|p| p.split_whitespace().next()?.parse().ok())
                .collect();
            (nums.len() >= 2).then(|| (nums[0], nums[1]))
        })
}

/// Asserts `out` is a failed one-shot command: non-zero exit, exactly one
/// `vxlan-fwd: error:` line on stderr containing every needle, no panic.
pub fn assert_cmd_error(out: &Output, what: &str, needles: &[&str]) {
    assert!(!out.timed_out, "{what}: hung: {out}");
    assert!(!out.success(), "{what}: succeeded: {out}");
    assert!(!out.combined().contains("panicked"), "{what}: panic: {out}");
    assert_one_error_line(out, what);
    for n in needles {
        assert!(
            out.stderr.contains(n),
            "{what}: error does not mention `{n}`: {out}"
        );
    }
}

/// Asserts `out`'s stderr is exactly one `vxlan-fwd: error: ...` line
/// (blank lines aside).
pub fn assert_one_error_line(out: &Output, what: &str) {
    let lines: Vec<&str> = out
        .stderr
        .lines()
        .filter(|l| !l.trim().is_empty())
        .collect();
    assert!(
        lines.len() == 1 && lines[0].starts_with("vxlan-fwd: error: "),
        "{what}: expected one `vxlan-fwd: error: ...` line on stderr: {out}"
    );
}

/// What a forwarder left behind in `ns`, one line each: an XDP program on
/// the uplink `eth0`, tc ingress filters on any of `devs`. Empty when
/// nothing (after a clean stop or a failed start).
pub fn leftovers(ns: &NetNs, devs: &[&str]) -> Vec<String> {
    let mut problems = Vec::new();
    if let Some(id) = ns.xdp_prog_id("eth0") {
        problems.push(format!("XDP program {id} on eth0"));
    }
    let details = ns.ip(["-d", "link", "show", "dev", "eth0"]);
    if details.contains("xdp") {
        problems.push(format!("XDP on eth0:\n{details}"));
    }
    for dev in devs {
        let tc = ns.run("tc", ["filter", "show", "dev", dev, "ingress"]);
        if !tc.trim().is_empty() {
            problems.push(format!("tc ingress filters on {dev}:\n{tc}"));
        }
    }
    problems
}
