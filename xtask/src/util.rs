//! Small helpers for running commands with readable errors.

use std::{
    ffi::OsStr,
    path::{Path, PathBuf},
    process::{Command, ExitStatus, Output},
};

use anyhow::{Context as _, Result, bail};

/// The workspace root (xtask lives in `<root>/xtask`).
pub fn workspace_root() -> PathBuf {
    let manifest_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest_dir.parent().unwrap_or(manifest_dir).to_path_buf()
}

/// A `cargo` command: the cargo that runs xtask (`$CARGO`), else `cargo` from PATH.
pub fn cargo() -> Command {
    Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
}

/// `program arg1 arg2 ...`, for messages.
pub fn describe(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for arg in cmd.get_args() {
        s.push(' ');
        s.push_str(&arg.to_string_lossy());
    }
    s
}

/// Runs `cmd` with inherited stdio; error if it cannot start or exits non-zero.
pub fn run(cmd: &mut Command) -> Result<()> {
    let status = crate::signals::unblock_in_child(cmd)
        .status()
        .with_context(|| format!("failed to start `{}`", describe(cmd)))?;
    if !status.success() {
        bail!("`{}` failed ({status})", describe(cmd));
    }
    Ok(())
}

/// Runs `cmd` capturing output; returns stdout, error (with stderr) if it exits non-zero.
pub fn output(cmd: &mut Command) -> Result<String> {
    let out = output_any(cmd)?;
    if !out.status.success() {
        bail!(
            "`{}` failed ({}): {}",
            describe(cmd),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Runs `cmd` capturing output, whatever its exit status.
pub fn output_any(cmd: &mut Command) -> Result<Output> {
    crate::signals::unblock_in_child(cmd)
        .output()
        .with_context(|| format!("failed to start `{}`", describe(cmd)))
}

/// Exit code to forward for a child's status (128 + signal when it was killed).
pub fn exit_code(status: ExitStatus) -> u8 {
    use std::os::unix::process::ExitStatusExt as _;
    match (status.code(), status.signal()) {
        (Some(code), _) => u8::try_from(code).unwrap_or(1),
        (None, Some(sig)) => u8::try_from(128 + sig).unwrap_or(1),
        (None, None) => 1,
    }
}

pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

pub fn require_root(what: &str) -> Result<()> {
    if !is_root() {
        bail!(
            "`{what}` must run as root (it creates network namespaces and loads eBPF programs); \
             try: sudo -E env \"PATH=$PATH\" {what}"
        );
    }
    Ok(())
}

/// First executable named `name` in `$PATH`.
pub fn find_in_path(name: impl AsRef<OsStr>) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name.as_ref()))
        .find(|p| is_executable(p))
}

pub fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt as _;
    path.metadata()
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

/// The cargo target directory (`CARGO_TARGET_DIR`, else `<workspace>/target`).
pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .map(|p| {
            if p.is_absolute() {
                p
            } else {
                workspace_root().join(p)
            }
        })
        .unwrap_or_else(|| workspace_root().join("target"))
}

/// A directory of our own for vxlan-fwd's state files
/// (`VXLAN_FWD_STATE_DIR`), removed again when this is dropped: a lab's
/// namespaces are gone afterwards, so their saved tables would only pile up
/// in `/run/vxlan-fwd`.
pub struct StateDir(pub PathBuf);

impl StateDir {
    pub fn new(name: &str) -> Self {
        let dir = target_dir().join(format!("{name}-state"));
        let _ = std::fs::remove_dir_all(&dir);
        Self(dir)
    }

    /// `VXLAN_FWD_STATE_DIR=<dir>`, for `env`.
    pub fn env_arg(&self) -> String {
        format!("VXLAN_FWD_STATE_DIR={}", self.0.display())
    }
}

impl Drop for StateDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
