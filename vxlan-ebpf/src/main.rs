//! vxlan-fwd datapath.
//!
//! - `vxlan_xdp` (XDP, uplink): validates VXLAN for this VTEP, learns
//!   (VNI, inner source MAC) → outer source IP, strips the outer headers and
//!   hands the inner frame up with an [`XdpMeta`] naming where it goes.
//! - `vxlan_tc_uplink` (TC ingress, uplink): delivers frames that carry that
//!   metadata to their local port(s); without XDP on the uplink it
//!   decapsulates itself first. Everything else passes untouched.
//! - `vxlan_tc_port` (TC ingress, each local port): learns local MACs,
//!   switches local-to-local, encapsulates to remote VTEPs and floods.
//!
//! [`XdpMeta`]: vxlan_common::XdpMeta
#![no_std]
#![no_main]
#![feature(core_intrinsics)]
#![allow(internal_features)]

mod arp;
mod csum;
mod decap;
mod deliver;
mod ecn;
mod encap;
mod fdb;
mod flow;
mod maps;
mod pkt;
mod pmtu;
mod rx;
mod stats;
mod vlan;

use aya_ebpf::{
    bindings::{TC_ACT_SHOT, xdp_action},
    macros::{classifier, xdp},
    programs::{TcContext, XdpContext},
};
use aya_log_ebpf::debug;
use vxlan_common::Counter;

use crate::stats::count;

/// `--debug-log`: the loader sets it to 1. It lives in read-only data, so
/// with 0 the verifier sees the logging branches as dead and removes them:
/// logging costs nothing when it is off.
#[unsafe(no_mangle)]
static DEBUG_LOG: u8 = 0;

#[inline(always)]
fn debug_on() -> bool {
    // SAFETY: a plain read of a constant the loader may patch.
    unsafe { core::ptr::read_volatile(&DEBUG_LOG) != 0 }
}

#[xdp]
pub fn vxlan_xdp(ctx: XdpContext) -> u32 {
    match decap::run(&ctx) {
        Ok(action) => {
            if debug_on() {
                debug!(&ctx, "xdp: action {}", action);
            }
            action
        }
        Err(reason) => {
            count(reason);
            if debug_on() {
                debug!(&ctx, "xdp: drop, counter {}", reason as u32);
            }
            xdp_action::XDP_DROP
        }
    }
}

/// On a veth port of an IPv6 VNI: see `vxlan_common::prog::XDP_PORT_GUARD`.
#[xdp]
pub fn vxlan_xdp_port_guard(_ctx: XdpContext) -> u32 {
    xdp_action::XDP_PASS
}

#[classifier]
pub fn vxlan_tc_uplink(ctx: TcContext) -> i32 {
    match deliver::run(&ctx) {
        Ok(action) => {
            if debug_on() {
                debug!(&ctx, "tc uplink: action {}", action);
            }
            action
        }
        Err(reason) => {
            count(reason);
            if debug_on() {
                debug!(&ctx, "tc uplink: drop, counter {}", reason as u32);
            }
            TC_ACT_SHOT
        }
    }
}

#[classifier]
pub fn vxlan_tc_port(ctx: TcContext) -> i32 {
    // Only drops are logged here: logging every outcome after the flood
    // loops multiplies the verifier's states past its limit.
    let outcome = match encap::run(&ctx) {
        // Too big for the tunnel: the ICMP error is built here, outside
        // `run`'s stack frame (see `pmtu::too_big_signal`).
        Err(Counter::TxIcmpFragNeeded) => pmtu::reject4(&ctx),
        Err(Counter::TxIcmp6TooBig) => pmtu::reject6(&ctx),
        other => other,
    };
    match outcome {
        Ok(action) => action,
        Err(reason) => {
            count(reason);
            if debug_on() {
                debug!(&ctx, "tc port: drop, counter {}", reason as u32);
            }
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
