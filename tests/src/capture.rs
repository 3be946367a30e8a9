//! Packet captures: `tcpdump` in a namespace of the lab, for the tests
//! ("was it sent, and how often") and the bench (ARP requests on the
//! underlay).

use std::time::Duration;

use anyhow::{Result, bail};

use crate::{netns::NetNs, process::Process, util::wait_until};

/// `tcpdump -l -n [-Q in] -i <iface> <filter>` running in a namespace;
/// stopped when dropped.
pub struct Capture {
    proc: Process,
    what: String,
}

impl Capture {
    /// Captures the packets `iface` receives (`-Q in`) that match `filter`;
    /// waits until tcpdump listens (its filter is installed by then).
    /// Panics when it does not start.
    pub fn start(ns: &NetNs, iface: &str, filter: &str) -> Self {
        Self::try_start(ns, iface, filter, true).unwrap_or_else(|e| panic!("{e:#}"))
    }

    /// [`Capture::start`], failing instead of panicking; `inbound_only`
    /// false captures both directions.
    pub fn try_start(ns: &NetNs, iface: &str, filter: &str, inbound_only: bool) -> Result<Self> {
        let mut c = ns.command("tcpdump");
        c.args(["-l", "-n"]);
        if inbound_only {
            c.args(["-Q", "in"]);
        }
        c.args(["-i", iface]).args(filter.split_whitespace());
        let what = format!("tcpdump -i {iface} '{filter}' in {}", ns.name());
        let mut proc = Process::try_spawn(c, &what)?;
        let listening = wait_until(Duration::from_secs(10), Duration::from_millis(20), || {
            proc.stderr().contains("listening on") || !proc.is_running()
        });
        if !(listening && proc.is_running()) {
            bail!("{what} did not start: {}", proc.stderr());
        }
        // The socket is bound and filtered when tcpdump says it listens;
        // a moment more for good measure.
        std::thread::sleep(Duration::from_millis(100));
        Ok(Self { proc, what })
    }

    /// Stops tcpdump and returns the lines of the packets it saw. Panics
    /// unless it stops on SIGINT.
    pub fn finish(self) -> Vec<String> {
        self.try_finish().unwrap_or_else(|e| panic!("{e:#}"))
    }

    /// [`Capture::finish`], failing instead of panicking.
    pub fn try_finish(mut self) -> Result<Vec<String>> {
        let out = self.proc.stop();
        if out.timed_out {
            bail!("{} did not stop on SIGINT: {out}", self.what);
        }
        Ok(out
            .stdout
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(str::to_owned)
            .collect())
    }
}
