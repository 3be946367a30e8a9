//! What runtime commands added (`vni add`, `port add`, `fdb append` of a
//! default remote), kept in the state directory so that it survives a
//! restart of the process, like kernel state, until reboot. Written
//! atomically after every runtime change. Static FDB entries added at run
//! time live in the FDB itself and its snapshot ([`crate::state`]).
//!
//! The configuration stays the truth for what came from it: at start the
//! configuration is applied first, then the journal, skipping what the
//! configuration contradicts (a VNI it defines, a port it places in
//! another VNI). Deleting something the configuration gave is not
//! journalled: the configuration gives it again at the next start.

use std::{io::Write as _, net::IpAddr, path::Path};

use anyhow::{Context as _, Result};
use serde::{Deserialize, Serialize};

use crate::paths;

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Journal {
    /// The boot the journal belongs to (`/proc/sys/kernel/random/boot_id`).
    #[serde(default)]
    pub boot_id: String,
    pub vnis: Vec<JVni>,
    pub remotes: Vec<JRemote>,
    pub ports: Vec<JPort>,
}

/// A VNI added at run time (its remotes are in [`Journal::remotes`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JVni {
    pub id: u32,
    pub group: Option<IpAddr>,
    pub host_if: Option<String>,
    #[serde(default)]
    pub limits: crate::config::VniLimits,
}

/// A default remote added at run time.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JRemote {
    pub vni: u32,
    /// IPv4 or IPv6 (the VNI's family).
    pub addr: IpAddr,
}

/// A port added at run time.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JPort {
    pub name: String,
    pub vni: u32,
}

impl Journal {
    pub fn save(&self, path: &Path) -> Result<()> {
        let j = Journal {
            boot_id: paths::boot_id(),
            ..self.clone()
        };
        paths::write_atomic(path, |f| {
            serde_json::to_writer_pretty(&mut *f, &j)?;
            f.write_all(b"\n")?;
            Ok(())
        })
    }

    /// The journal at `path`; empty if there is none or it is of another
    /// boot.
    pub fn load(path: &Path) -> Result<Self> {
        let bytes = match std::fs::read(path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Self::default()),
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        };
        let j: Self = serde_json::from_slice(&bytes)
            .with_context(|| format!("parsing {}", path.display()))?;
        if j.boot_id != paths::boot_id() {
            return Ok(Self::default());
        }
        Ok(j)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_other_boot() {
        let dir = std::env::temp_dir().join(format!("vxlan-fwd-journal-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("j.json");
        let j = Journal {
            boot_id: String::new(),
            vnis: vec![JVni {
                id: 7,
                group: None,
                host_if: Some("vx7".into()),
                limits: Default::default(),
            }],
            remotes: vec![
                JRemote {
                    vni: 7,
                    addr: "10.0.0.1".parse().unwrap(),
                },
                JRemote {
                    vni: 8,
                    addr: "fd00:57::2".parse().unwrap(),
                },
            ],
            ports: vec![JPort {
                name: "veth3".into(),
                vni: 7,
            }],
        };
        j.save(&path).unwrap();
        let back = Journal::load(&path).unwrap();
        assert_eq!(back.vnis, j.vnis);
        assert_eq!(back.remotes, j.remotes);
        assert_eq!(back.ports, j.ports);
        // Written 0600.
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        // Another boot's journal is empty.
        let mut other = back.clone();
        other.boot_id = "not-this-boot".into();
        std::fs::write(&path, serde_json::to_vec(&other).unwrap()).unwrap();
        assert_eq!(Journal::load(&path).unwrap(), Journal::default());
        assert_eq!(
            Journal::load(&dir.join("none")).unwrap(),
            Journal::default()
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
