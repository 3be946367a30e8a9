//! Attachments that outlive the process, so that the datapath keeps
//! forwarding when vxlan-fwd is killed (SIGKILL, a crash):
//!
//! - XDP is attached through netlink (`IFLA_XDP`), not as a bpf_link, which
//!   the kernel would detach when the process's last fd closes;
//! - the TC programs are cls_bpf filters (direct action) on a clsact qdisc.
//!
//! A restart finds the running datapath by its program on the uplink (XDP,
//! or without XDP the TC uplink program; see [`crate::maps::running_on`])
//! and replaces it without a gap: the new TC filters go in at the other of
//! two priorities (whichever runs first, each frame is handled once: a
//! program passes on what is not its own), XDP is swapped atomically
//! (`XDP_FLAGS_REPLACE` with the old program as the expected one; across
//! native and skb mode, where the kernel cannot swap, removed and attached
//! with a short gap), then the old filters are removed. A failed start
//! removes the filters it attached. A clean stop removes everything.
//!
//! The GSO guard ([`prog::XDP_PORT_GUARD`]) is native XDP on the ports of
//! IPv6 VNIs, also attached through netlink: a restart replaces a previous
//! instance's guard with its own (atomically, `XDP_FLAGS_REPLACE`), and
//! removes the guards the adopted instance left on its ports that no
//! longer want one ([`remove_stray_guards`]; only its own ports: another
//! forwarder's in the namespace are not ours to touch); a clean stop
//! removes them all.

use std::os::fd::{AsFd as _, AsRawFd as _};

use anyhow::{Context as _, Result, anyhow};
use aya::{
    Ebpf,
    programs::{
        SchedClassifier, TcAttachType,
        links::Link as _,
        loaded_programs,
        tc::{self, NlOptions, SchedClassifierLink, TcAttachOptions, TcHandle},
    },
};
use log::warn;
use vxlan_common::prog;

use crate::{
    maps::Running,
    netlink::{
        LinkInfo, Netlink, XDP_FLAGS_DRV_MODE, XDP_FLAGS_REPLACE, XDP_FLAGS_SKB_MODE,
        XDP_FLAGS_UPDATE_IF_NOEXIST,
    },
};

/// The two filter priorities instances alternate between.
const PRIOS: [u16; 2] = [0xa000, 0xa001];
const HANDLE: TcHandle = TcHandle::new(0, 1);

/// What this instance attached.
pub struct Attached {
    uplink: LinkInfo,
    ports: std::collections::BTreeSet<String>,
    /// Our filters on the ports, owned here (not by aya's program).
    port_links: std::collections::BTreeMap<String, SchedClassifierLink>,
    /// XDP attach flags, if XDP is attached.
    xdp_mode: Option<u32>,
    prio: u16,
    /// Interfaces on which this process created the clsact qdisc.
    created_clsact: Vec<String>,
    /// This instance replaced a previous one's datapath.
    adopted: bool,
    /// Ports carrying our GSO guard, with their ifindex.
    guards: std::collections::BTreeMap<String, u32>,
    /// The id of our loaded guard program.
    guard_id: Option<u32>,
}

/// The name the kernel reports for program `name` (`bpf_prog_info.name`
/// holds 15 characters: `vxlan_xdp_port_guard` is `vxlan_xdp_port_`).
pub fn kernel_prog_name(name: &str) -> &str {
    let end = name.char_indices().nth(15).map_or(name.len(), |(i, _)| i);
    &name[..end]
}

/// Whether loaded program `id` is a GSO guard (ours or a previous
/// instance's), by the name the kernel reports.
fn is_guard_program(id: u32) -> bool {
    loaded_programs()
        .filter_map(Result::ok)
        .find(|p| p.id() == id)
        .is_some_and(|p| p.name_as_str() == Some(kernel_prog_name(prog::XDP_PORT_GUARD)))
}

/// The fd and id of our loaded guard program.
fn guard_prog(ebpf: &Ebpf) -> Result<(i32, u32)> {
    let p = ebpf
        .program(prog::XDP_PORT_GUARD)
        .ok_or_else(|| anyhow!("program {} missing", prog::XDP_PORT_GUARD))?;
    let id = p.info()?.id();
    Ok((p.fd()?.as_fd().as_raw_fd(), id))
}

/// Attaches our guard to port `link` in native mode: replacing a previous
/// instance's guard atomically, never someone else's XDP program.
async fn attach_guard(ebpf: &Ebpf, nl: &Netlink, link: &LinkInfo) -> Result<()> {
    if link.kind.as_deref() != Some("veth") {
        anyhow::bail!(
            "'{}' is not a veth (kind {}): no GSO guard can be attached",
            link.name,
            link.kind.as_deref().unwrap_or("none")
        );
    }
    let (fd, our_id) = guard_prog(ebpf)?;
    let now = nl.link_by_index(link.index).await?.xdp_prog_id;
    let what = || format!("attaching the GSO guard to '{}' (native XDP)", link.name);
    match now {
        None => nl
            .set_xdp(
                link.index,
                Some(fd),
                XDP_FLAGS_DRV_MODE | XDP_FLAGS_UPDATE_IF_NOEXIST,
                None,
            )
            .await
            .with_context(what),
        Some(id) if id == our_id => Ok(()),
        Some(id) if is_guard_program(id) => {
            let old = loaded_programs()
                .filter_map(Result::ok)
                .find(|p| p.id() == id)
                .ok_or_else(|| anyhow!("the previous guard program {id} disappeared"))?
                .fd()?;
            let replaced = nl
                .set_xdp(
                    link.index,
                    Some(fd),
                    XDP_FLAGS_DRV_MODE | XDP_FLAGS_REPLACE,
                    Some(old.as_fd().as_raw_fd()),
                )
                .await;
            if replaced.is_err() {
                // In another mode: removed, then ours attached.
                remove_xdp(nl, link.index, id).await?;
                nl.set_xdp(
                    link.index,
                    Some(fd),
                    XDP_FLAGS_DRV_MODE | XDP_FLAGS_UPDATE_IF_NOEXIST,
                    None,
                )
                .await
                .with_context(what)?;
            }
            Ok(())
        }
        Some(id) => anyhow::bail!(
            "'{}' already carries another XDP program (id {id}); the GSO guard is not attached",
            link.name
        ),
    }
}

/// Removes a guard from link `index` if the program there is one.
async fn detach_guard(nl: &Netlink, index: u32) {
    if let Ok(l) = nl.link_by_index(index).await
        && let Some(id) = l.xdp_prog_id
        && is_guard_program(id)
        && let Err(e) = nl.set_xdp(index, None, XDP_FLAGS_DRV_MODE, None).await
    {
        warn!("removing the GSO guard from '{}': {e:#}", l.name);
    }
}

fn tc_prog<'a>(ebpf: &'a mut Ebpf, name: &str) -> Result<&'a mut SchedClassifier> {
    Ok(ebpf
        .program_mut(name)
        .ok_or_else(|| anyhow!("program {name} missing"))?
        .try_into()?)
}

/// Adds clsact to `iface` if it has none; true if this call created it.
fn ensure_clsact(iface: &str) -> Result<bool> {
    match tc::qdisc_add_clsact(iface) {
        Ok(()) => Ok(true),
        Err(tc::TcError::NetlinkError(e)) if e.raw_os_error() == Some(libc::EEXIST) => Ok(false),
        Err(e) => Err(anyhow::Error::new(e).context(format!("adding clsact to {iface}"))),
    }
}

fn attach_filter(ebpf: &mut Ebpf, name: &str, iface: &str, prio: u16) -> Result<()> {
    attach_owned(ebpf, name, iface, prio).map(std::mem::forget)
}

/// Attaches and returns the link, which the caller owns: aya forgets it,
/// so that the same program can be attached to the same interface again
/// once this link is detached (a port removed and added again).
fn attach_owned(
    ebpf: &mut Ebpf,
    name: &str,
    iface: &str,
    prio: u16,
) -> Result<SchedClassifierLink> {
    let opts = NlOptions {
        priority: prio,
        handle: HANDLE,
        ..Default::default()
    };
    let prog = tc_prog(ebpf, name)?;
    let id = prog
        .attach_with_options(iface, TcAttachType::Ingress, TcAttachOptions::Netlink(opts))
        .with_context(|| format!("attaching {name} to {iface} (tc ingress, priority {prio:#x})"))?;
    Ok(prog.take_link(id)?)
}

/// Removes our filter at `prio` from `iface`, if there is one.
fn detach_filter(iface: &str, prio: u16) {
    if let Ok(link) =
        SchedClassifierLink::attached(iface, TcAttachType::Ingress, prio, HANDLE, None)
    {
        let _ = link.detach();
    }
}

/// Attaches the TC programs (uplink delivery first, then the ports), then
/// XDP in mode `xdp` (`Some(true)`: skb mode) unless it is `None`: replacing
/// the running instance's XDP program atomically when adopting one, else
/// only if the uplink has none. An adopted XDP program that this instance
/// does not replace is removed once our TC programs are in place (they
/// also deliver what it decapsulated meanwhile).
pub async fn attach(
    ebpf: &mut Ebpf,
    nl: &Netlink,
    uplink: &LinkInfo,
    ports: &[LinkInfo],
    xdp: Option<bool>,
    old: Option<Running>,
) -> Result<Attached> {
    let mut created_clsact = Vec::new();
    for iface in std::iter::once(&uplink.name).chain(ports.iter().map(|p| &p.name)) {
        if ensure_clsact(iface)? {
            created_clsact.push(iface.clone());
        }
    }
    // The free priority: a previous instance may hold the other one.
    let prio = match attach_filter(ebpf, prog::TC_UPLINK, &uplink.name, PRIOS[0]) {
        Ok(()) => PRIOS[0],
        Err(_) => {
            attach_filter(ebpf, prog::TC_UPLINK, &uplink.name, PRIOS[1])?;
            PRIOS[1]
        }
    };
    let xdp_mode = xdp.map(|generic| if generic { XDP_FLAGS_SKB_MODE } else { 0 });
    let old_xdp = old.and_then(|r| r.xdp_id);
    let mut port_links = std::collections::BTreeMap::new();
    let rest = async {
        for p in ports {
            detach_filter(&p.name, prio); // a stale one of ours in the way
            let link = attach_owned(ebpf, prog::TC_PORT, &p.name, prio)?;
            port_links.insert(p.name.clone(), link);
        }
        match (xdp_mode, old_xdp) {
            (Some(mode), Some(old_id)) => {
                let fd = xdp_fd(ebpf)?;
                let old = loaded_programs()
                    .filter_map(Result::ok)
                    .find(|p| p.id() == old_id)
                    .ok_or_else(|| anyhow!("the running XDP program {old_id} disappeared"))?
                    .fd()?;
                let replaced = nl
                    .set_xdp(
                        uplink.index,
                        Some(fd),
                        mode | XDP_FLAGS_REPLACE,
                        Some(old.as_fd().as_raw_fd()),
                    )
                    .await;
                if replaced.is_err() {
                    // The old program runs in the other mode (native vs
                    // skb): no atomic swap across modes. Remove it, then
                    // attach ours; frames arriving in between go to the
                    // kernel's stack.
                    warn!(
                        "the running XDP program {old_id} is attached in another mode: replacing \
                         it with a short gap"
                    );
                    remove_xdp(nl, uplink.index, old_id).await?;
                    attach_xdp(nl, uplink, fd, mode).await?;
                }
            }
            (Some(mode), None) => attach_xdp(nl, uplink, xdp_fd(ebpf)?, mode).await?,
            // Our TC program decapsulates from now on (and delivers what
            // the old XDP program still hands up).
            (None, Some(old_id)) => remove_xdp(nl, uplink.index, old_id).await?,
            (None, None) => {}
        }
        Ok::<_, anyhow::Error>(())
    };
    if let Err(e) = rest.await {
        // Our links: detached here by name, their handles dropped.
        port_links.clear();
        // Nothing of ours may stay behind a failed start: it would run on
        // maps nobody maintains and hold a priority.
        detach_filter(&uplink.name, prio);
        for p in ports {
            detach_filter(&p.name, prio);
        }
        return Err(e);
    }
    // The previous instance's filters, now idle behind ours.
    let other = if prio == PRIOS[0] { PRIOS[1] } else { PRIOS[0] };
    detach_filter(&uplink.name, other);
    for p in ports {
        detach_filter(&p.name, other);
    }
    Ok(Attached {
        uplink: uplink.clone(),
        ports: ports.iter().map(|p| p.name.clone()).collect(),
        port_links,
        xdp_mode,
        prio,
        created_clsact,
        adopted: old.is_some(),
        guards: Default::default(),
        guard_id: guard_prog(ebpf).ok().map(|(_, id)| id),
    })
}

/// Removes XDP program `old_id` from link `index`, in whichever mode it is
/// attached, and checks that it is gone.
async fn remove_xdp(nl: &Netlink, index: u32, old_id: u32) -> Result<()> {
    for mode in [XDP_FLAGS_SKB_MODE, XDP_FLAGS_DRV_MODE] {
        let _ = nl.set_xdp(index, None, mode, None).await;
    }
    let now = nl.link_by_index(index).await?.xdp_prog_id;
    if now == Some(old_id) {
        anyhow::bail!("could not remove the running XDP program {old_id} from ifindex {index}");
    }
    Ok(())
}

/// Attaches XDP program `fd` to the uplink in `mode`, which must have none.
async fn attach_xdp(nl: &Netlink, uplink: &LinkInfo, fd: i32, mode: u32) -> Result<()> {
    nl.set_xdp(
        uplink.index,
        Some(fd),
        mode | XDP_FLAGS_UPDATE_IF_NOEXIST,
        None,
    )
    .await
    .with_context(|| format!("attaching XDP to '{}'", uplink.name))
}

fn xdp_fd(ebpf: &Ebpf) -> Result<i32> {
    let xdp = ebpf
        .program(prog::XDP_UPLINK)
        .ok_or_else(|| anyhow!("XDP program missing"))?;
    Ok(xdp.fd()?.as_fd().as_raw_fd())
}

/// Removes the GSO guards from the adopted instance's ports (`old_ports`,
/// the ifindexes of its PORTS map) that do not carry ours (`guarded`).
pub async fn remove_stray_guards(nl: &Netlink, old_ports: &[u32], guarded: &[u32]) {
    for &index in old_ports {
        if guarded.contains(&index) {
            continue;
        }
        if let Ok(link) = nl.link_by_index(index).await
            && link.xdp_prog_id.is_some_and(is_guard_program)
        {
            detach_guard(nl, index).await;
            log::info!(
                "removed a previous instance's GSO guard from '{}'",
                link.name
            );
        }
    }
}

/// Removes filters of ours, at either priority, from every link of the
/// namespace except `keep` (the uplink and the current ports): a previous
/// instance's filters on ports the configuration no longer has.
pub async fn remove_strays(nl: &Netlink, keep: &[&str]) {
    let Ok(links) = nl.links().await else {
        return;
    };
    let ours: std::collections::BTreeSet<u32> = loaded_programs()
        .filter_map(Result::ok)
        .filter(
            |p| matches!(p.name_as_str(), Some(n) if n == prog::TC_PORT || n == prog::TC_UPLINK),
        )
        .map(|p| p.id())
        .collect();
    for link in links {
        if keep.contains(&link.name.as_str()) {
            continue;
        }
        let ids = nl.tc_ingress_prog_ids(link.index).await.unwrap_or_default();
        if ids.iter().any(|id| ours.contains(id)) {
            for prio in PRIOS {
                detach_filter(&link.name, prio);
            }
            if matches!(nl.clsact_filter_count(link.index).await, Ok(0)) {
                let _ = nl.del_clsact(link.index).await;
            }
            log::info!("removed a previous instance's filter from '{}'", link.name);
        }
    }
}

impl Attached {
    /// The ifindexes of the ports that carry our GSO guard.
    pub fn guarded(&self) -> impl Iterator<Item = u32> + '_ {
        self.guards.values().copied()
    }

    /// Makes the ports that carry our GSO guard `want` (the attached
    /// ports of IPv6 VNIs): attached where missing, removed where no
    /// longer wanted (or the interface changed). A port that cannot have
    /// one (not a veth, native XDP refused, another program there) is
    /// warned about once (`warned`) and tried again later; meanwhile the
    /// datapath drops its GSO frames to IPv6 VTEPs (`drop_gso_ipv6`).
    pub async fn sync_guards(
        &mut self,
        ebpf: &Ebpf,
        nl: &Netlink,
        want: &[LinkInfo],
        warned: &mut std::collections::BTreeSet<String>,
    ) {
        let stale: Vec<(String, u32)> = self
            .guards
            .iter()
            .filter(|(n, i)| !want.iter().any(|l| &l.name == *n && l.index == **i))
            .map(|(n, i)| (n.clone(), *i))
            .collect();
        for (name, index) in stale {
            self.guards.remove(&name);
            if self.guard_id.is_some() {
                detach_guard(nl, index).await;
            }
        }
        warned.retain(|n| want.iter().any(|l| &l.name == n));
        for l in want {
            if self.guards.contains_key(&l.name) {
                continue;
            }
            match attach_guard(ebpf, nl, l).await {
                Ok(()) => {
                    self.guards.insert(l.name.clone(), l.index);
                    warned.remove(&l.name);
                    log::info!("GSO guard attached to '{}' (native XDP)", l.name);
                }
                Err(e) => {
                    if warned.insert(l.name.clone()) {
                        warn!(
                            "port '{}' of an IPv6 VNI: {e:#}; its GSO frames to IPv6 VTEPs are \
                             dropped (counter drop_gso_ipv6): turn segmentation offload off on \
                             its peer (ethtool -K PEER tso off gso off)",
                            l.name
                        );
                    }
                }
            }
        }
    }

    /// The uplink has a new name (its filter is detached by name).
    pub fn uplink_renamed(&mut self, name: &str) {
        self.uplink.name = name.to_owned();
    }

    /// Attaches the port program to `iface` (a port added at run time).
    pub fn add_port(&mut self, ebpf: &mut Ebpf, iface: &str) -> Result<()> {
        if ensure_clsact(iface)? {
            self.created_clsact.push(iface.to_owned());
        }
        detach_filter(iface, self.prio); // a stale one of ours in the way
        let link = attach_owned(ebpf, prog::TC_PORT, iface, self.prio)?;
        self.port_links.insert(iface.to_owned(), link);
        self.ports.insert(iface.to_owned());
        Ok(())
    }

    /// Detaches the port program from `iface` (if the interface still
    /// exists) and forgets it.
    pub fn remove_port(&mut self, iface: &str) {
        if self.ports.remove(iface) {
            match self.port_links.remove(iface) {
                // Fails if the interface is gone, and its filter with it.
                Some(link) => {
                    let _ = link.detach();
                }
                None => detach_filter(iface, self.prio),
            }
        }
    }

    /// Removes everything: XDP first (nothing more is decapsulated), then
    /// the filters, then the clsact qdiscs this process created.
    pub async fn detach(self, nl: &Netlink) {
        for &index in self.guards.values() {
            detach_guard(nl, index).await;
        }
        if let Some(mode) = self.xdp_mode
            && let Err(e) = nl.set_xdp(self.uplink.index, None, mode, None).await
        {
            warn!("detaching XDP from {}: {e:#}", self.uplink.name);
        }
        detach_filter(&self.uplink.name, self.prio);
        for p in &self.ports {
            detach_filter(p, self.prio);
        }
        // The clsact qdiscs that are now empty: ours, or left by an
        // instance of ours that died.
        for iface in std::iter::once(&self.uplink.name).chain(&self.ports) {
            let Ok(link) = nl.link_by_name(iface).await else {
                continue;
            };
            let empty = matches!(nl.clsact_filter_count(link.index).await, Ok(0));
            if empty
                && (self.adopted || self.created_clsact.contains(iface))
                && let Err(e) = nl.del_clsact(link.index).await
            {
                warn!("removing clsact from {iface}: {e:#}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::os::fd::AsRawFd as _;

    use aya::{EbpfLoader, programs::Xdp};

    use super::*;

    #[test]
    fn kernel_names_are_cut_at_15() {
        assert_eq!(kernel_prog_name(prog::XDP_PORT_GUARD), "vxlan_xdp_port_");
        assert_eq!(kernel_prog_name(prog::TC_PORT), prog::TC_PORT);
    }

    /// Our guard program, loaded from the object (as a new instance would).
    fn loaded_guard() -> Ebpf {
        let mut ebpf = EbpfLoader::new()
            .load(crate::EBPF_OBJ)
            .expect("loading the object");
        let p: &mut Xdp = ebpf
            .program_mut(prog::XDP_PORT_GUARD)
            .expect("guard program")
            .try_into()
            .expect("an XDP program");
        p.load().expect("loading the guard");
        ebpf
    }

    /// The guard on a veth in a private namespace: attached in native
    /// mode, replaced (not doubled) by a second instance's, never put over
    /// someone else's program, refused on a non-veth, removed by
    /// `detach_guard` and by `remove_stray_guards`.
    #[test]
    fn guard_attach_replace_detach() {
        // SAFETY: no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("skipped: needs root");
            return;
        }
        std::thread::spawn(|| {
            nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).expect("unshare");
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime")
                .block_on(async {
                    let nl = Netlink::new().unwrap();
                    nl.create_veth("gd0", "gd0p", 1500).await.unwrap();
                    let link = nl.link_by_name("gd0").await.unwrap();
                    let peer = nl.link_by_name("gd0p").await.unwrap();
                    nl.set_up(link.index).await.unwrap();
                    nl.set_up(peer.index).await.unwrap();
                    let prog_id = |ebpf: &Ebpf| guard_prog(ebpf).unwrap().1;
                    let xdp_of = |i| {
                        let nl = nl.clone();
                        async move { nl.link_by_index(i).await.unwrap().xdp_prog_id }
                    };

                    let first = loaded_guard();
                    attach_guard(&first, &nl, &link).await.unwrap();
                    assert_eq!(xdp_of(link.index).await, Some(prog_id(&first)));
                    assert!(is_guard_program(prog_id(&first)));
                    // Again: nothing to do.
                    attach_guard(&first, &nl, &link).await.unwrap();
                    // A restarted instance replaces it.
                    let second = loaded_guard();
                    attach_guard(&second, &nl, &link).await.unwrap();
                    assert_eq!(xdp_of(link.index).await, Some(prog_id(&second)));
                    drop(first);
                    // Not on a non-veth.
                    let lo = nl.link_by_name("lo").await.unwrap();
                    let e = attach_guard(&second, &nl, &lo).await.unwrap_err();
                    assert!(format!("{e:#}").contains("not a veth"), "{e:#}");
                    // Stray guards go, kept ones stay.
                    remove_stray_guards(&nl, &[link.index], &[link.index]).await;
                    assert_eq!(xdp_of(link.index).await, Some(prog_id(&second)));
                    remove_stray_guards(&nl, &[], &[]).await;
                    assert_eq!(xdp_of(link.index).await, Some(prog_id(&second)));
                    remove_stray_guards(&nl, &[link.index], &[]).await;
                    assert_eq!(xdp_of(link.index).await, None);
                    attach_guard(&second, &nl, &link).await.unwrap();
                    detach_guard(&nl, link.index).await;
                    assert_eq!(xdp_of(link.index).await, None);
                    // Someone else's program is left alone.
                    let other = crate::sys_bpf::load_xdp_returning(2, "not_ours")
                        .expect("loading a program");
                    nl.set_xdp(
                        link.index,
                        Some(other.as_raw_fd()),
                        XDP_FLAGS_DRV_MODE,
                        None,
                    )
                    .await
                    .unwrap();
                    let theirs = xdp_of(link.index).await;
                    let e = attach_guard(&second, &nl, &link).await.unwrap_err();
                    assert!(format!("{e:#}").contains("another XDP program"), "{e:#}");
                    detach_guard(&nl, link.index).await;
                    remove_stray_guards(&nl, &[link.index], &[]).await;
                    assert_eq!(xdp_of(link.index).await, theirs);
                });
        })
        .join()
        .unwrap_or_else(|p| std::panic::resume_unwind(p));
    }
}
