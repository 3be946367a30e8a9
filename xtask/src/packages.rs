//! Installs the Debian packages a task needs (the demo's `ping`, the tests'
//! `iperf3`, ...) when they are missing, so that `cargo xtask demo` and
//! `cargo xtask test` set themselves up on a fresh Debian machine.

use std::{
    path::Path,
    process::Command,
    sync::atomic::{AtomicBool, Ordering},
};

use anyhow::{Context as _, Result, bail};

use crate::util::{describe, find_in_path, is_executable, is_root, output_any, run};

/// A command a task runs and the Debian package that provides it.
pub type Tool = (&'static str, &'static str);

/// What `cargo xtask demo` runs.
pub const DEMO: &[Tool] = &[("ip", "iproute2"), ("ping", "iputils-ping")];

/// What the test suite runs (tests/), and what the packaging tests check
/// the .deb and the unit with.
pub const TEST: &[Tool] = &[
    ("ip", "iproute2"),
    ("bridge", "iproute2"),
    ("tc", "iproute2"),
    ("ss", "iproute2"),
    ("sysctl", "procps"),
    ("ping", "iputils-ping"),
    ("iperf3", "iperf3"),
    ("tcpdump", "tcpdump"),
    ("ethtool", "ethtool"),
    ("dpkg-deb", "dpkg"),
    ("systemd-analyze", "systemd"),
    // The control-plane tests start a real etcd server.
    ("etcd", "etcd-server"),
    ("etcdctl", "etcd-client"),
    ("openssl", "openssl"),
    // The etcd client crate compiles etcd's protobuf definitions.
    ("protoc", "protobuf-compiler"),
];

/// What `cargo deb` runs: `dpkg-shlibdeps` for the `$auto` dependencies and
/// `strip`.
pub const DEB: &[Tool] = &[
    ("dpkg-shlibdeps", "dpkg-dev"),
    ("strip", "binutils"),
    ("protoc", "protobuf-compiler"),
];

/// Directories searched besides PATH (a root shell without sbin on PATH
/// still has `ethtool` in /usr/sbin).
const SYSTEM_DIRS: &[&str] = &[
    "/usr/local/sbin",
    "/usr/local/bin",
    "/usr/sbin",
    "/usr/bin",
    "/sbin",
    "/bin",
];

/// `apt-get update` runs at most once per xtask run.
static UPDATED: AtomicBool = AtomicBool::new(false);

fn have_tool(tool: &str) -> bool {
    find_in_path(tool).is_some()
        || SYSTEM_DIRS
            .iter()
            .any(|d| is_executable(&Path::new(d).join(tool)))
}

/// `dpkg-query` says `package` is installed.
fn package_installed(package: &str) -> bool {
    output_any(Command::new("dpkg-query").args(["-W", "-f=${Status}", package]))
        .map(|o| o.status.success() && String::from_utf8_lossy(&o.stdout).ends_with(" installed"))
        .unwrap_or(false)
}

/// The packages of `tools` to install: those whose command is missing and
/// which dpkg does not list as installed, each once, in order.
fn missing(tools: &[Tool]) -> Vec<&'static str> {
    let mut packages: Vec<&'static str> = Vec::new();
    for &(tool, package) in tools {
        if !packages.contains(&package) && !have_tool(tool) && !package_installed(package) {
            packages.push(package);
        }
    }
    packages
}

/// Installs (with apt-get, as root) the packages of the `tools` that are
/// missing; does nothing when everything is there.
pub fn ensure(what: &str, tools: &[Tool]) -> Result<()> {
    let packages = missing(tools);
    if packages.is_empty() {
        return Ok(());
    }
    let absent: Vec<&str> = tools
        .iter()
        .filter(|(_, p)| packages.contains(p))
        .map(|(t, _)| *t)
        .collect();
    let hint = format!("apt-get install {}", packages.join(" "));
    if find_in_path("apt-get").is_none() {
        bail!(
            "{what} needs {} (not found on PATH) and there is no apt-get to install them; \
             install the equivalent of `{hint}`",
            absent.join(", ")
        );
    }
    if !is_root() {
        bail!(
            "{what} needs {} (not found on PATH); installing them needs root: `sudo {hint}`",
            absent.join(", ")
        );
    }
    outln!(
        "xtask: {what} needs {} (not found); installing the Debian packages {}",
        absent.join(", "),
        packages.join(" ")
    );
    if !UPDATED.swap(true, Ordering::Relaxed) {
        let mut update = Command::new("apt-get");
        update
            .args(["update"])
            .env("DEBIAN_FRONTEND", "noninteractive");
        outln!("xtask: {}", describe(&update));
        run(&mut update).context("updating the package lists")?;
    }
    let mut install = Command::new("apt-get");
    install
        .args(["install", "-y", "--no-install-recommends"])
        .args(&packages)
        .env("DEBIAN_FRONTEND", "noninteractive");
    outln!("xtask: {}", describe(&install));
    run(&mut install).with_context(|| format!("installing {}", packages.join(" ")))?;
    let still: Vec<&str> = absent.into_iter().filter(|t| !have_tool(t)).collect();
    if !still.is_empty() {
        bail!(
            "still not found after installing {}: {}",
            packages.join(" "),
            still.join(", ")
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn present_tools_need_nothing() {
        // `sh` exists on any machine that runs this test.
        assert!(missing(&[("sh", "dash"), ("sh", "bash")]).is_empty());
    }

    #[test]
    fn each_missing_package_once() {
        let tools = [
            ("xtask-no-such-tool-1", "xtask-no-such-package-a"),
            ("xtask-no-such-tool-2", "xtask-no-such-package-a"),
            ("xtask-no-such-tool-3", "xtask-no-such-package-b"),
        ];
        assert_eq!(
            missing(&tools),
            ["xtask-no-such-package-a", "xtask-no-such-package-b"]
        );
    }
}
