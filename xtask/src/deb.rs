//! `cargo xtask deb`: the Debian package `target/debian/vxlan-fwd_*.deb`,
//! made by cargo-deb from `[package.metadata.deb]` in vxlan-user/Cargo.toml
//! (the binary, the systemd unit `packaging/vxlan-fwd@.service`, the example
//! config and the README).

use std::{
    io::Read as _,
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use anyhow::{Context as _, Result, bail};

use crate::{
    packages,
    signals::{Foreground, run_foreground},
    tasks,
    util::{cargo, describe, find_in_path, output_any, target_dir, workspace_root},
};

/// cargo-deb's version, installed when missing (builds with rustc 1.95).
const CARGO_DEB_VERSION: &str = "3.8.0";
/// An installed cargo-deb of another major version is replaced.
const CARGO_DEB_MAJOR: &str = "3.";

/// Builds vxlan-fwd (and its eBPF program), then packages it; returns the
/// .deb's path.
pub fn deb() -> Result<PathBuf> {
    let bin = tasks::build()?;
    package(&bin)
}

/// Packages the already built `bin` (the release build of vxlan-user:
/// `cargo deb --no-build` takes it from the target directory).
pub fn package(bin: &Path) -> Result<PathBuf> {
    packages::ensure("cargo xtask deb", packages::DEB)?;
    ensure_cargo_deb()?;
    let out_dir = target_dir().join("debian");
    let mut cmd = cargo();
    cmd.current_dir(workspace_root())
        .args(["deb", "-p", tasks::PACKAGE, "--no-build", "--output"])
        .arg(&out_dir)
        .stdout(Stdio::piped());
    outln!("xtask: {} (for {})", describe(&cmd), bin.display());
    let mut fg = Foreground::spawn(&mut cmd)?;
    let mut stdout = String::new();
    fg.child_mut()
        .stdout
        .take()
        .context("cargo-deb's stdout was not captured")?
        .read_to_string(&mut stdout)
        .context("reading cargo-deb's output")?;
    let status = fg.wait()?;
    if !status.success() {
        out!("{stdout}");
        bail!("`{}` failed ({status})", describe(&cmd));
    }
    // cargo-deb prints the path of the package it wrote as its last line.
    let deb = stdout
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .map(PathBuf::from)
        .with_context(|| format!("`{}` did not print the package's path", describe(&cmd)))?;
    if !deb.is_file() {
        bail!(
            "`{}` reported {}, which does not exist",
            describe(&cmd),
            deb.display()
        );
    }
    outln!("xtask: packaged {}", deb.display());
    Ok(deb)
}

/// `cargo-deb --version`, e.g. `3.8.0`, if it runs.
fn cargo_deb_version(path: &Path) -> Option<String> {
    let out = output_any(Command::new(path).arg("--version")).ok()?;
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    // "cargo-deb 3.8.0" (or just the version)
    text.split_whitespace().last().map(str::to_owned)
}

/// Installs cargo-deb CARGO_DEB_VERSION when it is missing, does not run,
/// or is of another major version.
fn ensure_cargo_deb() -> Result<()> {
    let force = match find_in_path("cargo-deb") {
        None => {
            outln!("xtask: cargo-deb not found on PATH");
            false
        }
        Some(path) => match cargo_deb_version(&path) {
            Some(v) if v.starts_with(CARGO_DEB_MAJOR) => return Ok(()),
            Some(v) => {
                outln!(
                    "xtask: {} is version {v}; replacing it with {CARGO_DEB_VERSION}",
                    path.display()
                );
                true
            }
            None => {
                outln!("xtask: {} does not run; reinstalling it", path.display());
                true
            }
        },
    };
    let mut cmd = cargo();
    cmd.args([
        "install",
        "--locked",
        "cargo-deb",
        "--version",
        CARGO_DEB_VERSION,
    ])
    .args(force.then_some("--force"));
    // Outside the workspace, so that its configuration does not apply.
    if let Some(home) = std::env::var_os("HOME").filter(|h| !h.is_empty()) {
        cmd.current_dir(home);
    }
    outln!(
        "xtask: installing cargo-deb {CARGO_DEB_VERSION}, once (a few minutes): {}",
        describe(&cmd)
    );
    let status = run_foreground(&mut cmd)?;
    if !status.success() {
        bail!("`{}` failed ({status})", describe(&cmd));
    }
    let path =
        find_in_path("cargo-deb").context("cargo-deb still not on PATH after installing it")?;
    let version =
        cargo_deb_version(&path).context("the freshly installed cargo-deb does not run")?;
    outln!("xtask: installed cargo-deb {version} at {}", path.display());
    Ok(())
}
