//! A real etcd server (Debian's `etcd-server`) in a namespace of the lab,
//! for the control-plane tests. Dropping the guard kills it; its data
//! directory belongs to the caller (a [`TempDir`](crate::fdb_harness::TempDir))
//! so that a restart finds its data again.

use std::{
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use crate::{
    netns::{NetNs, netns_command},
    process::{Output, Process, run_with_timeout},
    util::wait_until,
};

pub struct Etcd {
    ns: String,
    ip: String,
    dir: PathBuf,
    proc: Option<Process>,
}

impl Etcd {
    /// Starts etcd in `ns`, serving clients on `http://ip:2379`, with its
    /// data in `dir`; waits until it answers.
    pub fn start(ns: &NetNs, ip: &str, dir: &Path) -> Self {
        ns.ip(["link", "set", "lo", "up"]);
        let mut e = Self {
            ns: ns.name().to_owned(),
            ip: ip.to_owned(),
            dir: dir.join("etcd"),
            proc: None,
        };
        e.restart();
        e
    }

    pub fn url(&self) -> String {
        format!("http://{}:2379", self.ip)
    }

    /// Starts it again (after [`Etcd::kill`]), on the same data.
    pub fn restart(&mut self) {
        assert!(self.proc.is_none(), "etcd is running already");
        let mut c = netns_command(&self.ns, "etcd");
        let client = self.url();
        c.args([
            "--name",
            "lab",
            "--data-dir",
            &self.dir.display().to_string(),
            "--listen-client-urls",
            &client,
            "--advertise-client-urls",
            &client,
            "--listen-peer-urls",
            "http://127.0.0.1:2380",
            "--initial-advertise-peer-urls",
            "http://127.0.0.1:2380",
            "--initial-cluster",
            "lab=http://127.0.0.1:2380",
        ]);
        let proc = Process::spawn(c, &format!("etcd@{}", self.ns));
        self.proc = Some(proc);
        let up = wait_until(Duration::from_secs(20), Duration::from_millis(100), || {
            self.ctl(&["endpoint", "health"]).success()
        });
        if !up {
            let why = self.proc.as_ref().map(|p| p.stderr()).unwrap_or_default();
            panic!("etcd in {} did not come up: {why}", self.ns);
        }
    }

    /// SIGKILL: an outage.
    pub fn kill(&mut self) {
        if let Some(mut p) = self.proc.take() {
            p.kill();
        }
    }

    /// `etcdctl ARGS` against this server.
    pub fn ctl(&self, args: &[&str]) -> Output {
        let mut c: Command = netns_command(&self.ns, "etcdctl");
        c.env("ETCDCTL_API", "3")
            .arg("--endpoints")
            .arg(self.url())
            .arg("--dial-timeout=1s")
            .args(args);
        run_with_timeout(c, Duration::from_secs(10))
    }

    /// `etcdctl put KEY VALUE`; panics unless it succeeds.
    pub fn put(&self, key: &str, value: &str) {
        let out = self.ctl(&["put", key, value]);
        assert!(out.success(), "etcdctl put {key}: {out}");
    }

    /// The keys under `prefix`.
    pub fn keys(&self, prefix: &str) -> Vec<String> {
        let out = self.ctl(&["get", "--prefix", "--keys-only", prefix]);
        assert!(out.success(), "etcdctl get {prefix}: {out}");
        out.stdout
            .lines()
            .filter(|l| !l.is_empty())
            .map(str::to_owned)
            .collect()
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        self.kill();
    }
}
