//! The host interface of a VNI (`--host-if NAME`): a veth pair whose one
//! end (`NAME`) the user configures like the kernel's vxlan0, and whose
//! other end (`NAME-fwd`) is a local port of the VNI. Its MTU is the
//! overlay MTU of the VNI's underlay family: the uplink's minus 50 over
//! IPv4, minus 70 over IPv6.

use anyhow::{Context as _, Result, bail};

use crate::{config::HOST_IF_MAX, netlink::Netlink};

/// Suffix of the port end's name.
pub const PEER_SUFFIX: &str = "-fwd";

#[derive(Clone, Debug)]
pub struct HostIf {
    pub name: String,
    pub index: u32,
    /// The port end, `<name>-fwd`.
    pub peer_name: String,
    pub peer_index: u32,
    /// This process created it (rather than finding it left behind).
    pub created: bool,
    /// The MTU last set (the overlay MTU of its VNI's family), 0 unknown.
    pub mtu: u32,
}

impl HostIf {
    /// The host interface a previous instance left behind (it died, or it
    /// is being replaced), if it is one.
    pub async fn existing(nl: &Netlink, name: &str) -> Option<Self> {
        let host = nl.link_by_name(name).await.ok()?;
        let peer_name = format!("{name}{PEER_SUFFIX}");
        let peer = nl.link_by_name(&peer_name).await.ok()?;
        (host.kind.as_deref() == Some("veth")).then(|| Self {
            name: name.to_owned(),
            index: host.index,
            peer_name,
            peer_index: peer.index,
            created: false,
            mtu: 0,
        })
    }

    /// Creates the pair with `mtu`.
    pub async fn create(nl: &Netlink, name: &str, mtu: u32) -> Result<Self> {
        let peer = format!("{name}{PEER_SUFFIX}");
        if name.is_empty() || name.len() > HOST_IF_MAX {
            bail!("host interface name '{name}' must be 1 to {HOST_IF_MAX} characters");
        }
        for n in [name, peer.as_str()] {
            if nl.link_by_name(n).await.is_ok() {
                bail!("interface '{n}' already exists");
            }
        }
        nl.create_veth(name, &peer, mtu)
            .await
            .with_context(|| format!("creating host interface '{name}'"))?;
        let created = async {
            let host = nl.link_by_name(name).await?;
            let p = nl.link_by_name(&peer).await?;
            nl.set_addrgenmode_none(p.index).await?;
            nl.set_up(p.index).await?;
            Ok::<_, anyhow::Error>(Self {
                name: name.to_owned(),
                index: host.index,
                peer_name: peer.clone(),
                peer_index: p.index,
                created: true,
                mtu,
            })
        }
        .await;
        if created.is_err()
            && let Ok(host) = nl.link_by_name(name).await
        {
            let _ = nl.delete_link(host.index).await;
        }
        created
    }

    /// Finds the one a previous instance left, or creates it.
    pub async fn existing_or_create(nl: &Netlink, name: &str, mtu: u32) -> Result<Self> {
        match Self::existing(nl, name).await {
            Some(mut h) => {
                if nl.set_mtu(h.index, mtu).await.is_ok() {
                    h.mtu = mtu;
                }
                Ok(h)
            }
            None => Self::create(nl, name, mtu).await,
        }
    }

    pub async fn remove(&self, nl: &Netlink) {
        if let Err(e) = nl.delete_link(self.index).await {
            log::warn!("removing {}: {e:#}", self.name);
        }
    }
}
