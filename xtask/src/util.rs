//! Small helpers for running commands with readable errors.

use std::{
    ffi::OsStr,
    path::{Path, PathBuf},
    process::{Command, ExitStatus, Output},
    time::Duration,
};

use anyhow::{Context as _, Result, anyhow, bail};
use vxlan_tests::{
    Forwarder, StartOpts, Topology,
    topo::{PORT, Site, UPLINK, VNI},
};

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
pub use vxlan_tests::process::describe;

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
    nix::unistd::geteuid().is_root()
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
}

impl Drop for StateDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// SIGINT to SIGKILL for the forwarders of the demo and the soak (and of
/// a teardown on Ctrl-C): time to save their table.
pub const FWD_STOP_GRACE: Duration = Duration::from_secs(10);

/// Starts vxlan-fwd (`bin`) on `host`, point-to-point to `peer` (VNI 42,
/// container port `veth0`, then `extra` arguments), with its state in
/// `state_dir` and its output printed as `[h1] ...`; waits for its ready
/// line.
pub fn start_fwd(
    host: &Site,
    peer: &Site,
    bin: &Path,
    state_dir: &Path,
    extra: &[&str],
) -> Result<Forwarder> {
    start_fwd_to(host, &peer.underlay_ip.to_string(), bin, state_dir, extra)
}

/// [`start_fwd`] towards the VTEP address `remote` (e.g. the peer's IPv6
/// underlay address: VXLAN over IPv6).
pub fn start_fwd_to(
    host: &Site,
    remote: &str,
    bin: &Path,
    state_dir: &Path,
    extra: &[&str],
) -> Result<Forwarder> {
    let vni = VNI.to_string();
    let remote = remote.to_owned();
    let mut args = vec![
        "--iface", UPLINK, "--vni", &vni, "--remote", &remote, "--port", PORT,
    ];
    args.extend(extra);
    let opts = StartOpts {
        bin: Some(bin),
        state_dir: Some(state_dir),
        label: Some(&host.name),
        echo: true,
        ..StartOpts::default()
    };
    Forwarder::start_with(&host.netns, &args, &opts)
        .map_err(|out| anyhow!("vxlan-fwd on {} did not become ready: {out}", host.name))
}

/// Stops each forwarder (SIGINT, SIGKILL after `grace`); returns what went
/// wrong: a forwarder that did not exit 0 in time.
pub fn stop_fwds(fwds: Vec<Forwarder>, grace: Duration) -> Vec<String> {
    let mut problems = Vec::new();
    for f in fwds {
        let ns = f.ns().to_owned();
        let out = f.stop_within(grace);
        outln!("vxlan-fwd in {ns} exited: {}", out.status);
        if !out.success() {
            problems.push(format!(
                "vxlan-fwd in {ns} exited with {}{}",
                out.status,
                if out.timed_out {
                    " (killed: it did not stop in time)"
                } else {
                    ""
                }
            ));
        }
    }
    problems
}

/// The point-to-point lab of the demo and the soak: Ctrl-C tears it down,
/// leftovers of an earlier run with `prefix` are removed first, and what
/// is created is printed. Bind it as `let (state, topo) = ...`: then the
/// topology (with the forwarders in it) goes first and the forwarders'
/// state directory after it.
pub fn p2p_lab(prefix: &str, state_name: &str) -> Result<(StateDir, Topology)> {
    crate::signals::teardown_lab_on_signal();
    let state = StateDir::new(state_name);
    let topo = Topology::point_to_point(prefix)
        .announce(true)
        .try_build()?;
    Ok((state, topo))
}
