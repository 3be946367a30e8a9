//! Uplink TC ingress: deliver frames the XDP program decapsulated.
//!
//! XDP cannot hand a frame to a veth whose peer does not accept XDP frames
//! (the default), so XDP decapsulates and passes the inner frame up with an
//! [`XdpMeta`]; here, in TC, the frame is an skb and can go anywhere:
//! straight into a container's namespace with `bpf_redirect_peer`, or out of
//! a port with `bpf_redirect`/`bpf_clone_redirect`.

use core::mem::size_of;

use aya_ebpf::{
    bindings::{TC_ACT_REDIRECT, TC_ACT_UNSPEC},
    helpers::{bpf_redirect, bpf_redirect_peer},
    programs::TcContext,
};
use vxlan_common::{Counter, MAX_PORTS, META_MAGIC, PORT_F_PEER, XdpMeta};

use crate::{maps::VNIS, stats::count};

/// Hands the frame to local port `ifindex`: into its peer's ingress when the
/// port is a veth whose peer lives in another namespace, else out of it.
#[inline(always)]
pub fn redirect_port(ifindex: u32, flags: u32) -> i32 {
    // SAFETY: plain helper calls.
    let rc = unsafe {
        if flags & PORT_F_PEER != 0 {
            bpf_redirect_peer(ifindex, 0)
        } else {
            bpf_redirect(ifindex, 0)
        }
    };
    rc as i32
}

pub fn run(ctx: &TcContext) -> Result<i32, Counter> {
    // SAFETY: reading fields of the skb context the program was given.
    let (meta, data) = unsafe {
        (
            (*ctx.skb.skb).data_meta as usize,
            (*ctx.skb.skb).data as usize,
        )
    };
    if meta + size_of::<XdpMeta>() > data {
        return Ok(TC_ACT_UNSPEC);
    }
    // SAFETY: bounds checked just above.
    let m = unsafe { *(meta as *const XdpMeta) };
    if m.magic != META_MAGIC {
        return Ok(TC_ACT_UNSPEC);
    }
    if m.ifindex != 0 {
        count(Counter::RxDeliver);
        return Ok(redirect_port(m.ifindex, m.flags));
    }

    // Broadcast, multicast or unknown unicast: every local port of the VNI.
    // SAFETY: map value read in place, no concurrent writer frees it.
    let Some(v) = (unsafe { VNIS.get(m.vni) }) else {
        return Err(Counter::DropUnknownVni);
    };
    let n = v.n_ports as usize;
    if n == 0 || n > MAX_PORTS {
        return Err(Counter::DropNoLocalPort);
    }
    for i in 0..MAX_PORTS - 1 {
        if i + 1 >= n {
            break;
        }
        if ctx.clone_redirect(v.ports[i], 0).is_ok() {
            count(Counter::RxFloodCopy);
        }
    }
    // The last copy takes the original.
    // SAFETY: plain helper call.
    let rc = unsafe { bpf_redirect(v.ports[(n - 1) & (MAX_PORTS - 1)], 0) } as i32;
    if rc == TC_ACT_REDIRECT {
        count(Counter::RxFloodCopy);
    }
    Ok(rc)
}
