//! vxlan-fwd datapath.
//!
//! - `vxlan_xdp` (XDP, uplink): validates VXLAN for this VTEP, learns
//!   (VNI, inner source MAC) → outer source IP, strips the outer headers and
//!   hands the inner frame up with an [`XdpMeta`] naming where it goes.
//! - `vxlan_tc_uplink` (TC ingress, uplink): delivers frames that carry that
//!   metadata to their local port(s); everything else passes untouched.
//! - `vxlan_tc_port` (TC ingress, each local port): learns local MACs,
//!   switches local-to-local, encapsulates to remote VTEPs and floods.
//!
//! [`XdpMeta`]: vxlan_common::XdpMeta
#![no_std]
#![no_main]
#![feature(core_intrinsics)]
#![allow(internal_features)]

mod decap;
mod deliver;
mod encap;
mod fdb;
mod maps;
mod pmtu;
mod stats;

use aya_ebpf::{
    bindings::{TC_ACT_SHOT, xdp_action},
    macros::{classifier, xdp},
    programs::{TcContext, XdpContext},
};

use crate::stats::count;

#[xdp]
pub fn vxlan_xdp(ctx: XdpContext) -> u32 {
    match decap::run(&ctx) {
        Ok(action) => action,
        Err(reason) => {
            count(reason);
            xdp_action::XDP_DROP
        }
    }
}

#[classifier]
pub fn vxlan_tc_uplink(ctx: TcContext) -> i32 {
    match deliver::run(&ctx) {
        Ok(action) => action,
        Err(reason) => {
            count(reason);
            TC_ACT_SHOT
        }
    }
}

#[classifier]
pub fn vxlan_tc_port(ctx: TcContext) -> i32 {
    match encap::run(&ctx) {
        Ok(action) => action,
        Err(reason) => {
            count(reason);
            TC_ACT_SHOT
        }
    }
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 4] = *b"GPL\0";
