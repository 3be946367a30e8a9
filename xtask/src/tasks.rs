//! `build`, `run` and `test`.

use std::{
    ffi::OsString,
    io::{BufRead as _, BufReader},
    path::PathBuf,
    process::{Command, Stdio},
};

use anyhow::{Context as _, Result, bail};

use crate::{
    deb, packages,
    signals::{Foreground, run_foreground},
    util::{cargo, describe, exit_code, find_in_path, is_root, require_root, workspace_root},
};

pub const PACKAGE: &str = "vxlan-user";
const BIN: &str = "vxlan-fwd";

/// `cargo build --release -p vxlan-user`; returns the absolute path of the
/// `vxlan-fwd` executable (as reported by cargo, so CARGO_TARGET_DIR is honoured).
pub fn build() -> Result<PathBuf> {
    build_release(PACKAGE, BIN, &[])
}

/// `cargo build --release -p PACKAGE [--features ...]`; returns the absolute
/// path of its executable `bin`, as cargo reports it.
pub fn build_release(package: &str, bin: &str, features: &[&str]) -> Result<PathBuf> {
    let mut cmd = cargo();
    cmd.current_dir(workspace_root())
        .args(["build", "--release", "-p", package])
        .args(features.iter().flat_map(|f| ["--features", f]))
        .arg("--message-format=json-render-diagnostics")
        .stdout(Stdio::piped());
    outln!("xtask: {}", describe(&cmd));
    let mut fg = Foreground::spawn(&mut cmd)?;
    let stdout = fg
        .child_mut()
        .stdout
        .take()
        .context("cargo's stdout was not captured")?;
    let mut executable = None;
    for line in BufReader::new(stdout).lines() {
        let line = line.context("reading cargo's JSON messages")?;
        let Ok(msg) = serde_json::from_str::<serde_json::Value>(&line) else {
            // Not a cargo message (a build script printing to stdout?): show it.
            outln!("{line}");
            continue;
        };
        if msg["reason"] == "compiler-artifact"
            && msg["target"]["name"] == bin
            && let Some(exe) = msg["executable"].as_str()
        {
            executable = Some(PathBuf::from(exe));
        }
    }
    let status = fg.wait()?;
    if !status.success() {
        bail!("`{}` failed ({status})", describe(&cmd));
    }
    let exe = executable.with_context(|| {
        format!(
            "cargo did not report a `{bin}` executable (does {package} still define [[bin]] {bin}?)"
        )
    })?;
    let exe = exe
        .canonicalize()
        .with_context(|| format!("built binary {} is missing", exe.display()))?;
    outln!("xtask: built {}", exe.display());
    Ok(exe)
}

/// Builds, then runs vxlan-fwd with `args` as root (through `sudo -E` when not
/// root). Returns the exit code to forward.
pub fn run(args: &[OsString]) -> Result<u8> {
    let bin = build()?;
    let mut cmd = if is_root() {
        Command::new(&bin)
    } else {
        if find_in_path("sudo").is_none() {
            bail!("vxlan-fwd needs root: run xtask as root or install sudo");
        }
        let mut cmd = Command::new("sudo");
        cmd.arg("-E").arg(&bin);
        cmd
    };
    cmd.args(args);
    outln!("xtask: {}", describe(&cmd));
    let status = run_foreground(&mut cmd)?;
    if !status.success() {
        errln!("xtask: vxlan-fwd exited: {status}");
    }
    Ok(exit_code(status))
}

/// Builds and packages, then runs the workspace tests serially with
/// VXLAN_FWD_BIN and VXLAN_FWD_DEB set. `extra` goes to the test harness
/// (after `--test-threads=1`): filters, `--nocapture`, ... Returns the exit
/// code to forward.
pub fn test(extra: &[OsString]) -> Result<u8> {
    require_root("cargo xtask test")?;
    packages::ensure("cargo xtask test", packages::TEST)?;
    let bin = build()?;
    // The packaging tests check this .deb. Without one they fail (an empty
    // VXLAN_FWD_DEB says why), but the other tests still run.
    let deb = deb::package(&bin).unwrap_or_else(|e| {
        errln!("xtask: error: packaging failed, the package tests will fail: {e:#}");
        PathBuf::new()
    });
    let state_dir = workspace_root().join("target").join("test-state");
    let _ = std::fs::remove_dir_all(&state_dir);
    let mut cmd = cargo();
    cmd.current_dir(workspace_root())
        .args([
            "test",
            "--release",
            "--workspace",
            "--exclude",
            "vxlan-ebpf",
            "--no-fail-fast",
            "--",
            "--test-threads=1",
        ])
        .args(extra)
        .env("VXLAN_FWD_BIN", &bin)
        .env("VXLAN_FWD_DEB", &deb)
        // The forwarders the tests start keep their tables here, not in /run.
        .env("VXLAN_FWD_STATE_DIR", &state_dir)
        .stdout(Stdio::piped());
    outln!(
        "xtask: VXLAN_FWD_BIN={} VXLAN_FWD_DEB={} {}",
        bin.display(),
        deb.display(),
        describe(&cmd)
    );
    let mut fg = Foreground::spawn(&mut cmd)?;
    // Echo the test output and add up the harness's result lines, so that
    // the run ends with one total (the last binary often has no tests).
    let (mut passed, mut failed, mut ignored) = (0u64, 0u64, 0u64);
    if let Some(out) = fg.child_mut().stdout.take() {
        for line in BufReader::new(out).lines() {
            let line = line.context("reading the test output")?;
            outln!("{line}");
            if let Some(rest) = line.strip_prefix("test result: ") {
                for part in rest.split([';', '.']) {
                    let mut words = part.split_whitespace();
                    if let (Some(n), Some(what)) = (words.next(), words.next()) {
                        let n: u64 = n.parse().unwrap_or(0);
                        match what {
                            "passed" => passed += n,
                            "failed" => failed += n,
                            "ignored" => ignored += n,
                            _ => {}
                        }
                    }
                }
            }
        }
    }
    let status = fg.wait()?;
    let _ = std::fs::remove_dir_all(&state_dir);
    if status.success() {
        outln!("xtask: tests passed");
    } else {
        errln!("xtask: tests FAILED ({status})");
    }
    outln!("{passed} passed, {failed} failed, {ignored} skipped");
    Ok(exit_code(status))
}

/// `cargo xtask lint`: nightly rustfmt's check (rustfmt.toml uses nightly
/// options) and clippy with warnings as errors, on the host crates and on
/// the eBPF crate (nightly, its BPF target: the toolchain `main` installs
/// first). Runs all three; returns 1 if any failed.
pub fn lint() -> Result<u8> {
    let nightly = |args: &[&str]| {
        let mut cmd = Command::new("rustup");
        cmd.current_dir(workspace_root())
            .args(["run", "nightly", "cargo"])
            .args(args);
        cmd
    };
    let mut add = Command::new("rustup");
    add.args([
        "component",
        "add",
        "rustfmt",
        "clippy",
        "--toolchain",
        "nightly",
    ]);
    crate::util::run(&mut add).context("installing nightly rustfmt and clippy")?;
    // Host crates, with warnings as errors.
    let clippy = |what: &[&str]| {
        let mut cmd = cargo();
        cmd.current_dir(workspace_root())
            .args(["clippy", "--release"])
            .args(what)
            .args(["--all-targets", "--", "-D", "warnings"]);
        cmd
    };
    let mut failed = 0;
    for mut cmd in [
        nightly(&["fmt", "--all", "--check"]),
        clippy(&["--workspace", "--exclude", "vxlan-ebpf"]),
        // The bench's eBPF parts (figure 3, the etcd section) are behind a
        // feature the workspace run does not turn on.
        clippy(&["-p", "xtask", "--features", "bench-ebpf"]),
        nightly(&[
            "clippy",
            "--release",
            "-p",
            "vxlan-ebpf",
            "--target",
            "bpfel-unknown-none",
            "-Z",
            "build-std=core",
            "--",
            "-D",
            "warnings",
            // aya-ebpf's map methods take `impl Borrow<K>`: the datapath
            // passes keys by reference on purpose (no copy of the key on
            // the 512-byte BPF stack), which this lint would undo.
            "-A",
            "clippy::needless_borrows_for_generic_args",
        ]),
    ] {
        outln!("xtask: {}", describe(&cmd));
        if let Err(e) = crate::util::run(&mut cmd) {
            errln!("xtask: {e:#}");
            failed += 1;
        }
    }
    Ok(u8::from(failed > 0))
}

/// `cargo xtask fuzz`: the fuzz test with `frames` frames per program.
pub fn fuzz(frames: u64) -> Result<u8> {
    require_root("cargo xtask fuzz")?;
    let bin = build()?;
    let mut cmd = cargo();
    cmd.current_dir(workspace_root())
        .args([
            "test",
            "--release",
            "-p",
            "vxlan-tests",
            "--test",
            "fuzz",
            "--",
            "--test-threads=1",
            "--nocapture",
        ])
        .env("VXLAN_FWD_BIN", &bin)
        .env("VXLAN_FUZZ_FRAMES", frames.to_string());
    outln!("xtask: VXLAN_FUZZ_FRAMES={frames} {}", describe(&cmd));
    let status = run_foreground(&mut cmd)?;
    Ok(exit_code(status))
}
