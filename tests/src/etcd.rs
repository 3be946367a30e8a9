//! A real etcd server (Debian's `etcd-server`) in a namespace of the lab,
//! for the control-plane tests. Dropping the guard kills it; its data
//! directory belongs to the caller (a [`TempDir`](crate::fdb_harness::TempDir))
//! so that a restart finds its data again.

use std::{
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use anyhow::{Result, bail};

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
    tls: Option<Pki>,
    /// `cargo xtask bench`'s etcd: errors only, printed as they come.
    quiet: bool,
}

/// Certificates for a TLS etcd with client-certificate authentication:
/// a CA, the server's (for its address) and a client's, made with
/// `openssl` (PEM, EC P-256).
#[derive(Clone, Debug)]
pub struct Pki {
    pub ca: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
}

impl Pki {
    /// Makes them in `dir`; the server certificate is for `ip`.
    pub fn create(dir: &Path, ip: &str) -> Self {
        let p = |n: &str| dir.join(n);
        let run = |args: &[&str]| {
            let mut c = Command::new("openssl");
            c.args(args);
            let out = run_with_timeout(c, Duration::from_secs(30));
            assert!(out.success(), "openssl {}: {out}", args.join(" "));
        };
        let ec = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
        ];
        let s = |p: &PathBuf| p.display().to_string();
        let (ca, ca_key) = (p("ca.pem"), p("ca.key"));
        let mut args = vec!["req", "-x509"];
        args.extend(ec);
        let (ca_s, ca_key_s) = (s(&ca), s(&ca_key));
        args.extend([
            "-keyout",
            &ca_key_s,
            "-out",
            &ca_s,
            "-days",
            "2",
            "-subj",
            "/CN=lab-ca",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ]);
        run(&args);
        let leaf = |name: &str, ext: &str| -> (PathBuf, PathBuf) {
            let (cert, key, csr, extf) = (
                p(&format!("{name}.pem")),
                p(&format!("{name}.key")),
                p(&format!("{name}.csr")),
                p(&format!("{name}.ext")),
            );
            std::fs::write(&extf, ext).expect("writing an openssl extension file");
            let (cert_s, key_s, csr_s, ext_s) = (s(&cert), s(&key), s(&csr), s(&extf));
            let subj = format!("/CN={name}");
            let mut args = vec!["req"];
            args.extend(ec);
            args.extend(["-keyout", &key_s, "-out", &csr_s, "-subj", &subj]);
            run(&args);
            run(&[
                "x509",
                "-req",
                "-in",
                &csr_s,
                "-CA",
                &ca_s,
                "-CAkey",
                &ca_key_s,
                "-CAcreateserial",
                "-out",
                &cert_s,
                "-days",
                "2",
                "-extfile",
                &ext_s,
            ]);
            (cert, key)
        };
        let (server_cert, server_key) = leaf(
            "server",
            &format!(
                "subjectAltName=IP:{ip},IP:127.0.0.1\nextendedKeyUsage=serverAuth,clientAuth\nbasicConstraints=CA:FALSE\n"
            ),
        );
        let (client_cert, client_key) = leaf(
            "client",
            "extendedKeyUsage=clientAuth\nbasicConstraints=CA:FALSE\n",
        );
        Self {
            ca,
            server_cert,
            server_key,
            client_cert,
            client_key,
        }
    }
}

impl Etcd {
    /// Starts etcd in `ns`, serving clients on `http://ip:2379`, with its
    /// data in `dir`; waits until it answers.
    pub fn start(ns: &NetNs, ip: &str, dir: &Path) -> Self {
        Self::start_with(ns, ip, dir, None)
    }

    /// Like [`Etcd::start`], over TLS, with client certificates required.
    pub fn start_tls(ns: &NetNs, ip: &str, dir: &Path, pki: &Pki) -> Self {
        Self::start_with(ns, ip, dir, Some(pki.clone()))
    }

    fn start_with(ns: &NetNs, ip: &str, dir: &Path, tls: Option<Pki>) -> Self {
        Self::launch(ns, ip, dir, tls, false).unwrap_or_else(|e| panic!("{e:#}"))
    }

    /// [`Etcd::start`] that logs errors only, prints them as they come, and
    /// fails instead of panicking (`cargo xtask bench`).
    pub fn try_start(ns: &NetNs, ip: &str, dir: &Path) -> Result<Self> {
        Self::launch(ns, ip, dir, None, true)
    }

    fn launch(ns: &NetNs, ip: &str, dir: &Path, tls: Option<Pki>, quiet: bool) -> Result<Self> {
        ns.try_ip_ok(["link", "set", "lo", "up"])?;
        let mut e = Self {
            ns: ns.name().to_owned(),
            ip: ip.to_owned(),
            dir: dir.join("etcd"),
            proc: None,
            tls,
            quiet,
        };
        e.try_restart()?;
        Ok(e)
    }

    pub fn url(&self) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://{}:2379", self.ip)
    }

    /// Starts it again (after [`Etcd::kill`]), on the same data.
    pub fn restart(&mut self) {
        self.try_restart().unwrap_or_else(|e| panic!("{e:#}"));
    }

    /// [`Etcd::restart`], failing instead of panicking.
    pub fn try_restart(&mut self) -> Result<()> {
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
        if let Some(t) = &self.tls {
            c.arg("--client-cert-auth")
                .arg("--trusted-ca-file")
                .arg(&t.ca)
                .arg("--cert-file")
                .arg(&t.server_cert)
                .arg("--key-file")
                .arg(&t.server_key);
        }
        let label = format!("etcd@{}", self.ns);
        let proc = if self.quiet {
            c.args(["--log-level", "error"]);
            Process::spawn_echoed(c, &label)?
        } else {
            Process::spawn(c, &label)
        };
        self.proc = Some(proc);
        let up = wait_until(Duration::from_secs(20), Duration::from_millis(100), || {
            self.ctl(&["endpoint", "health"]).success()
        });
        if !up {
            let why = self.proc.as_ref().map(|p| p.stderr()).unwrap_or_default();
            bail!("etcd in {} did not come up: {why}", self.ns);
        }
        Ok(())
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
            .arg("--dial-timeout=1s");
        if let Some(t) = &self.tls {
            c.arg("--cacert")
                .arg(&t.ca)
                .arg("--cert")
                .arg(&t.client_cert)
                .arg("--key")
                .arg(&t.client_key);
        }
        c.args(args);
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
