//! Uplink XDP: decapsulate what [`rx::classify`] accepts and hand the inner
//! frame up with an [`XdpMeta`] for the TC program on the uplink, which
//! delivers it (see `deliver`).

use core::mem::size_of;

use aya_ebpf::{
    bindings::xdp_action::XDP_PASS,
    helpers::{bpf_xdp_adjust_head, bpf_xdp_adjust_meta, bpf_xdp_adjust_tail},
    programs::XdpContext,
};
use vxlan_common::{
    Counter, META_MAGIC, META_MAGIC_TC_DECAP, XdpMeta, wire::ETH_HLEN, wire6::ENCAP6_LEN,
};

use crate::{ecn, maps::config, rx, stats::count};

pub fn run(ctx: &XdpContext) -> Result<u32, Counter> {
    let Some(cfg) = config() else {
        return Ok(XDP_PASS);
    };
    let rx = match rx::classify(ctx, cfg, ctx.ingress_ifindex() as u32) {
        Err(Counter::RxCsumDeferred) => return defer(ctx, cfg.meta_key),
        other => other?,
    };
    let Some(rx) = rx else {
        count(Counter::RxPass);
        return Ok(XDP_PASS);
    };
    ecn::apply_xdp(ctx, rx.ecn)?;
    // SAFETY: plain helper calls on our own context.
    if rx.pad > 0 && unsafe { bpf_xdp_adjust_tail(ctx.ctx, -(rx.pad as i32)) } != 0 {
        return Err(Counter::DropDecapFailed);
    }
    if unsafe { bpf_xdp_adjust_head(ctx.ctx, rx.encap_len as i32) } != 0 {
        return Err(Counter::DropDecapFailed);
    }
    put_meta(
        ctx,
        XdpMeta {
            magic: META_MAGIC,
            key: cfg.meta_key,
            vni: rx.vni,
            ifindex: rx.ifindex,
            flags: rx.port_flags,
        },
    )?;
    count(Counter::RxDecap);
    if rx.encap_len == ENCAP6_LEN {
        count(Counter::RxDecap6);
    }
    Ok(XDP_PASS)
}

/// Hands a frame whose outer UDP checksum XDP could not confirm to the TC
/// program, still encapsulated ([`META_MAGIC_TC_DECAP`]).
#[inline(always)]
fn defer(ctx: &XdpContext, key: [u32; 2]) -> Result<u32, Counter> {
    put_meta(
        ctx,
        XdpMeta {
            magic: META_MAGIC_TC_DECAP,
            key,
            ..XdpMeta::default()
        },
    )?;
    count(Counter::RxCsumDeferred);
    Ok(XDP_PASS)
}

/// Puts `m` in the frame's metadata area, for the TC program.
#[inline(always)]
fn put_meta(ctx: &XdpContext, m: XdpMeta) -> Result<(), Counter> {
    // SAFETY: plain helper call on our own context.
    if unsafe { bpf_xdp_adjust_meta(ctx.ctx, -(size_of::<XdpMeta>() as i32)) } != 0 {
        return Err(Counter::DropDecapFailed);
    }
    let meta = ctx.metadata();
    if meta + size_of::<XdpMeta>() > ctx.data() || ctx.data() + ETH_HLEN > ctx.data_end() {
        return Err(Counter::DropDecapFailed);
    }
    // SAFETY: bounds checked just above.
    unsafe { *(meta as *mut XdpMeta) = m };
    Ok(())
}
