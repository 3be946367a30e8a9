//! A foreign XDP program ("someone else's"), to test that vxlan-fwd leaves
//! an uplink alone that already carries one.
//!
//! No object file or tool is needed: the program (`return XDP_PASS`) is
//! loaded with the bpf(2) syscall and attached in generic mode with
//! vxlan-fwd's own [`Netlink::set_xdp`], from a thread that has entered
//! the namespace. The attachment is not tied to any file descriptor: it
//! lasts until [`detach_xdp`] or until the interface (its namespace) is
//! deleted.

use std::{io, os::fd::AsRawFd as _};

use vxlan_user::{
    netlink::{Netlink, XDP_FLAGS_SKB_MODE},
    sys_bpf::load_xdp_returning,
};

use crate::{fixture::XDP_PASS, hostile_net::in_netns};

/// Sets (`prog_fd` = Some) or removes (`None`) the generic-mode XDP
/// program of `dev` in the calling thread's network namespace.
fn set_xdp(dev: &str, prog_fd: Option<i32>) -> io::Result<()> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(async {
            let nl = Netlink::new()?;
            let link = nl.link_by_name(dev).await?;
            nl.set_xdp(link.index, prog_fd, XDP_FLAGS_SKB_MODE, None)
                .await
        })
        .map_err(|e| io::Error::other(format!("{e:#}")))
}

/// Attaches a foreign XDP program (`XDP_PASS`, name `vxt_foreign`) to `dev`
/// in namespace `ns`, generic mode. Panics on failure.
pub fn attach_foreign_xdp(ns: impl AsRef<str>, dev: &str) {
    let dev = dev.to_owned();
    let what = format!("attaching a foreign XDP program to {dev}");
    in_netns(ns.as_ref(), &what, move || {
        let prog = load_xdp_returning(XDP_PASS, "vxt_foreign")?;
        set_xdp(&dev, Some(prog.as_raw_fd()))
        // `prog` closes here; the attachment keeps the program loaded.
    });
}

/// Removes the generic-mode XDP program of `dev` in namespace `ns`.
/// Panics on failure.
pub fn detach_xdp(ns: impl AsRef<str>, dev: &str) {
    let dev = dev.to_owned();
    let what = format!("detaching XDP from {dev}");
    in_netns(ns.as_ref(), &what, move || set_xdp(&dev, None));
}
