//! Section 9: the zero-work bound. What any TC datapath on these hops can
//! reach at most: in each host a TC program on `veth0` that only
//! redirects every frame out of `eth0` (`bpf_redirect`), and one on `eth0`
//! that only hands every frame to the container (`bpf_redirect_peer`), as
//! vxlan-fwd does, but with no encapsulation, no lookups and no checks.
//! The frames cross the underlay switch as they are (the containers share
//! its L2 segment, as in the no-tunnel setup).
//!
//! vxlan-fwd's path is this one plus its work (lookups, learning, the outer
//! headers and `bpf_skb_adjust_room` both ways): its figure over this one
//! is the share of the bound it reaches, and this one over the kernel's is
//! the most that any encapsulating datapath built from TC programs on
//! these hops could show against the kernel.
//!
//! The programs are four instructions each, loaded with bpf(2) and attached
//! with tcx links (`BPF_LINK_CREATE`, no netlink, no pin; closed, they
//! detach), where vxlan-fwd attaches cls_bpf filters: tcx runs a program
//! without cls_bpf's classifier layer, so the bound is, if anything, a
//! little generous.

use std::{
    ffi::CString,
    os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd},
};

use anyhow::{Context as _, Result, anyhow};
use vxlan_tests::{
    in_netns,
    topo::{PORT, UPLINK},
};
use vxlan_user::sys_bpf::{
    bpf, bpf_attach_type, bpf_cmd, bpf_func_id, bpf_prog_type, load_insns, zeroed_attr,
};

const BPF_FUNC_REDIRECT: i32 = bpf_func_id::BPF_FUNC_redirect as i32;
const BPF_FUNC_REDIRECT_PEER: i32 = bpf_func_id::BPF_FUNC_redirect_peer as i32;

/// `r1 = ifindex; r2 = 0; r0 = helper(r1, r2); exit`: the helper's return
/// (TC_ACT_REDIRECT, or TC_ACT_SHOT if it fails) is the verdict.
fn redirect_insns(ifindex: u32, helper: i32) -> [[u8; 8]; 4] {
    let i = ifindex.to_le_bytes();
    let h = helper.to_le_bytes();
    [
        // BPF_ALU64 | BPF_MOV | BPF_K: r1 = ifindex, r2 = 0.
        [0xb7, 1, 0, 0, i[0], i[1], i[2], i[3]],
        [0xb7, 2, 0, 0, 0, 0, 0, 0],
        // BPF_JMP | BPF_CALL.
        [0x85, 0, 0, 0, h[0], h[1], h[2], h[3]],
        // BPF_JMP | BPF_EXIT.
        [0x95, 0, 0, 0, 0, 0, 0, 0],
    ]
}

/// The ifindex of `name` in the calling thread's namespace.
fn ifindex(name: &str) -> Result<u32> {
    let c = CString::new(name)?;
    // SAFETY: a valid C string.
    match unsafe { libc::if_nametoindex(c.as_ptr()) } {
        0 => Err(anyhow!("no interface {name}")),
        i => Ok(i),
    }
}

/// A tcx ingress link of `prog` on `ifindex` (of the calling thread's
/// namespace).
fn tcx_ingress(prog: &OwnedFd, ifindex: u32) -> Result<OwnedFd> {
    let mut attr = zeroed_attr();
    // SAFETY: writing the `BPF_LINK_CREATE` member of a zeroed union.
    let l = unsafe { &mut attr.link_create };
    l.__bindgen_anon_1.prog_fd = prog.as_raw_fd() as u32;
    l.__bindgen_anon_2.target_ifindex = ifindex;
    l.attach_type = bpf_attach_type::BPF_TCX_INGRESS as u32;
    // SAFETY: no pointers in this member.
    let fd = unsafe { bpf(bpf_cmd::BPF_LINK_CREATE, &mut attr) }
        .context("BPF_LINK_CREATE (tcx ingress)")?;
    // SAFETY: a new descriptor the kernel just returned to us.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// Whether `e` (from [`Bound::up`]) says the kernel has no tcx (before
/// Linux 6.6): `BPF_LINK_CREATE` refusing the attach type. Anything else
/// (a verifier rejection, a missing device) is a real failure.
pub fn tcx_missing(e: &anyhow::Error) -> bool {
    e.chain()
        .any(|c| c.to_string().starts_with("BPF_LINK_CREATE"))
        && e.chain().any(|c| {
            c.downcast_ref::<std::io::Error>()
                .and_then(std::io::Error::raw_os_error)
                // ENOTSUPP (524) is the kernel's internal "not supported".
                .is_some_and(|n| [libc::EINVAL, libc::EOPNOTSUPP, 524].contains(&n))
        })
}

/// The bound's programs in both hosts, attached while this lives.
pub struct Bound {
    _links: Vec<OwnedFd>,
}

impl Bound {
    /// In each of `hosts` (network namespaces): `veth0` → out of `eth0`,
    /// `eth0` → into the container.
    pub fn up(hosts: &[&str]) -> Result<Self> {
        let mut links = Vec::new();
        for &ns in hosts {
            for (dev, to, helper) in [
                (PORT, UPLINK, BPF_FUNC_REDIRECT),
                (UPLINK, PORT, BPF_FUNC_REDIRECT_PEER),
            ] {
                let link = in_netns(ns, move || -> Result<OwnedFd> {
                    let prog = load_insns(
                        bpf_prog_type::BPF_PROG_TYPE_SCHED_CLS,
                        &redirect_insns(ifindex(to)?, helper),
                        "vxbench_bound",
                    )
                    .context("BPF_PROG_LOAD of the redirect program")?;
                    tcx_ingress(&prog, ifindex(dev)?)
                })
                .and_then(|r| r)
                .with_context(|| format!("{ns}: the redirect program on {dev}"))?;
                links.push(link);
            }
        }
        Ok(Self { _links: links })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redirect_program_bytes() {
        let p = redirect_insns(0x0102_0304, BPF_FUNC_REDIRECT_PEER);
        assert_eq!(p[0], [0xb7, 1, 0, 0, 4, 3, 2, 1]);
        assert_eq!(p[2], [0x85, 0, 0, 0, 155, 0, 0, 0]);
        assert_eq!(p[3][0], 0x95);
    }
}
