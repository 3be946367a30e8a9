//! Where an instance keeps its files, and the single-instance lock.
//!
//! Everything lives in one directory, `/run/vxlan-fwd` (or
//! `$VXLAN_FWD_STATE_DIR`), owned by root with mode 0700: like kernel
//! state, it lasts until reboot. `/run` is shared by `ip netns exec`, whose
//! mount namespace only replaces /sys, so each file is named after the
//! network namespace (its cookie, unique for the life of the machine, and
//! its inode number, which lets a later instance see whether the namespace
//! still exists) and the uplink:
//!
//! | file | what |
//! | --- | --- |
//! | `netns-<cookie>-<ino>-<uplink>.lock` | `flock`ed by the running instance |
//! | `netns-<cookie>-<ino>-<uplink>.sock` | control socket (commands, `fdb watch`) |
//! | `netns-<cookie>-<ino>-<uplink>.json` | FDB snapshot (learned and static entries) |
//! | `netns-<cookie>-<ino>-<uplink>.runtime.json` | what runtime commands added |

use std::{
    collections::BTreeSet,
    fs::{self, File},
    io::Write as _,
    os::{
        fd::AsRawFd as _,
        unix::fs::{
            DirBuilderExt as _, MetadataExt as _, OpenOptionsExt as _, PermissionsExt as _,
        },
    },
    path::{Path, PathBuf},
};

use anyhow::{Context as _, Result, bail};
use log::info;

/// The state directory.
pub fn state_dir() -> PathBuf {
    std::env::var_os("VXLAN_FWD_STATE_DIR")
        .map_or_else(|| PathBuf::from("/run/vxlan-fwd"), PathBuf::from)
}

/// Creates the state directory (mode 0700) if needed and checks that only
/// root can use it: a directory someone else owns or can write would let
/// them squat the socket or plant files.
pub fn ensure_state_dir() -> Result<PathBuf> {
    let dir = state_dir();
    if !dir.exists() {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
            .with_context(|| format!("creating {}", dir.display()))?;
    }
    let meta = fs::symlink_metadata(&dir).with_context(|| format!("reading {}", dir.display()))?;
    if !meta.is_dir() {
        bail!("{} is not a directory", dir.display());
    }
    if meta.uid() != 0 {
        bail!(
            "{} belongs to uid {}, not root: remove it",
            dir.display(),
            meta.uid()
        );
    }
    if meta.mode() & 0o077 != 0 {
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o700))
            .with_context(|| format!("making {} private (0700)", dir.display()))?;
    }
    Ok(dir)
}

/// This network namespace: its cookie (SO_NETNS_COOKIE) and inode number.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NetnsId {
    pub cookie: u64,
    pub ino: u64,
}

impl NetnsId {
    pub fn current() -> Result<Self> {
        let sock = std::net::UdpSocket::bind("0.0.0.0:0").context("socket for SO_NETNS_COOKIE")?;
        let mut cookie: u64 = 0;
        let mut len = size_of::<u64>() as libc::socklen_t;
        // SAFETY: valid fd, out pointer and length.
        let rc = unsafe {
            libc::getsockopt(
                sock.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_NETNS_COOKIE,
                (&mut cookie as *mut u64).cast(),
                &mut len,
            )
        };
        if rc != 0 {
            return Err(std::io::Error::last_os_error()).context("getsockopt(SO_NETNS_COOKIE)");
        }
        let ino = fs::metadata("/proc/self/ns/net")
            .context("reading /proc/self/ns/net")?
            .ino();
        Ok(Self { cookie, ino })
    }

    fn prefix(&self) -> String {
        format!("netns-{}-{}-", self.cookie, self.ino)
    }
}

/// The files of the instance on `uplink` in network namespace `ns`.
#[derive(Clone, Debug)]
pub struct Files {
    base: PathBuf,
}

impl Files {
    pub fn new(ns: NetnsId, uplink: &str) -> Self {
        Self {
            base: state_dir().join(format!("{}{uplink}", ns.prefix())),
        }
    }

    fn with(&self, ext: &str) -> PathBuf {
        let mut s = self.base.clone().into_os_string();
        s.push(ext);
        PathBuf::from(s)
    }

    pub fn lock(&self) -> PathBuf {
        self.with(".lock")
    }
    pub fn socket(&self) -> PathBuf {
        self.with(".sock")
    }
    pub fn fdb(&self) -> PathBuf {
        self.with(".json")
    }
    pub fn runtime(&self) -> PathBuf {
        self.with(".runtime.json")
    }
}

/// The uplinks of the instances whose sockets exist in this namespace.
pub fn sockets_here() -> Result<Vec<(String, PathBuf)>> {
    let prefix = NetnsId::current()?.prefix();
    let mut out = Vec::new();
    let Ok(dir) = fs::read_dir(state_dir()) else {
        return Ok(out);
    };
    for entry in dir.filter_map(Result::ok) {
        let name = entry.file_name().to_string_lossy().into_owned();
        if let Some(uplink) = name
            .strip_prefix(&prefix)
            .and_then(|r| r.strip_suffix(".sock"))
        {
            out.push((uplink.to_owned(), entry.path()));
        }
    }
    out.sort();
    Ok(out)
}

/// Held while the instance runs: an exclusive `flock` on the lock file,
/// which only root can create (the directory is root's, 0700). The kernel
/// releases it when the process dies, however it dies.
pub struct InstanceLock {
    _file: File,
}

impl InstanceLock {
    pub fn take(path: &Path, uplink: &str) -> Result<Self> {
        let file = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(path)
            .with_context(|| format!("opening {}", path.display()))?;
        // flock(2), exclusive, not waiting.
        match file.try_lock() {
            Ok(()) => Ok(Self { _file: file }),
            Err(fs::TryLockError::WouldBlock) => bail!(
                "another vxlan-fwd is running on '{uplink}' in this network namespace; stop it \
                 first"
            ),
            Err(fs::TryLockError::Error(e)) => {
                Err(e).with_context(|| format!("locking {}", path.display()))
            }
        }
    }
}

/// Writes `bytes` to `path` safely: a temporary file (mode 0600, never
/// through a symlink), fsync, then rename over `path`.
pub fn write_atomic(path: &Path, write: impl FnOnce(&mut File) -> Result<()>) -> Result<()> {
    let tmp = {
        let mut s = path.as_os_str().to_owned();
        s.push(".tmp");
        PathBuf::from(s)
    };
    let _ = fs::remove_file(&tmp);
    let mut file = fs::OpenOptions::new()
        .create_new(true)
        .write(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(&tmp)
        .with_context(|| format!("creating {}", tmp.display()))?;
    let done = write(&mut file)
        .and_then(|()| file.flush().map_err(Into::into))
        .and_then(|()| file.sync_all().map_err(Into::into));
    if let Err(e) = done {
        let _ = fs::remove_file(&tmp);
        return Err(e.context(format!("writing {}", tmp.display())));
    }
    fs::rename(&tmp, path).with_context(|| format!("renaming to {}", path.display()))?;
    Ok(())
}

/// Inode numbers of the network namespaces that exist now: those of
/// processes, and those mounted (`ip netns add` mounts them under
/// /run/netns). Processes whose namespace cannot be read (another user
/// namespace's init, for one) are skipped: a namespace that only such a
/// process holds counts as gone, unless an instance runs in it (see
/// [`remove_files_of_gone_namespaces`]). `None` without /proc.
fn live_netns_inodes() -> Option<BTreeSet<u64>> {
    let mut out = BTreeSet::new();
    let procs = fs::read_dir("/proc").ok()?;
    for p in procs.filter_map(Result::ok) {
        if !p
            .file_name()
            .to_string_lossy()
            .bytes()
            .all(|b| b.is_ascii_digit())
        {
            continue;
        }
        // An error: exited meanwhile, or not ours to look at.
        if let Ok(m) = fs::metadata(p.path().join("ns/net")) {
            out.insert(m.ino());
        }
    }
    if let Ok(mounts) = fs::read_to_string("/proc/self/mountinfo") {
        for line in mounts.lines() {
            // ... mount-point ... - fstype source options
            let Some((left, right)) = line.split_once(" - ") else {
                continue;
            };
            if right.split_whitespace().next() != Some("nsfs") {
                continue;
            }
            if let Some(point) = left.split_whitespace().nth(4)
                && let Ok(m) = fs::metadata(point.replace("\\040", " "))
            {
                out.insert(m.ino());
            }
        }
    }
    (!out.is_empty()).then_some(out)
}

/// Whether an instance holds the lock at `path` (it runs).
fn lock_held(path: &Path) -> bool {
    let Ok(f) = fs::OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
    else {
        return false;
    };
    // flock(2), exclusive, not waiting; a lock taken here goes with `f`.
    f.try_lock().is_err()
}

/// Removes the files of network namespaces that no longer exist. A file
/// whose namespace's inode number was reused by a new namespace stays
/// until that one is gone too; its cookie never matches, so it is never
/// read.
pub fn remove_files_of_gone_namespaces() {
    let Ok(dir) = fs::read_dir(state_dir()) else {
        return;
    };
    let Some(live) = live_netns_inodes() else {
        return; // no /proc: decide nothing
    };
    let dir_path = state_dir();
    for entry in dir.filter_map(Result::ok) {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(rest) = name.strip_prefix("netns-") else {
            continue;
        };
        let mut parts = rest.splitn(3, '-');
        let (Some(_cookie), Some(ino)) = (parts.next(), parts.next()) else {
            continue;
        };
        let Ok(ino) = ino.parse::<u64>() else {
            // A file of an older version (netns-<cookie>-<uplink>.json):
            // its namespace cannot be told, and no version reads it.
            let _ = fs::remove_file(entry.path());
            continue;
        };
        if live.contains(&ino) {
            continue;
        }
        // An instance that runs there holds its lock: keep its files.
        let base = [
            ".runtime.json.tmp",
            ".runtime.json",
            ".json.tmp",
            ".json",
            ".lock",
            ".sock",
        ]
        .iter()
        .find_map(|ext| name.strip_suffix(ext))
        .unwrap_or(&name);
        if lock_held(&dir_path.join(format!("{base}.lock"))) {
            continue;
        }
        info!("removing {} (its network namespace is gone)", name);
        let _ = fs::remove_file(entry.path());
    }
}

/// The kernel's boot id: state files are only valid within one boot
/// (`CLOCK_MONOTONIC` times, ifindexes).
pub fn boot_id() -> String {
    fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .map(|s| s.trim().to_owned())
        .unwrap_or_default()
}
