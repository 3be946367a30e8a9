//! For the control plane (`--etcd`): snooping the IPv4 addresses of local
//! endpoints, and ARP suppression.
//!
//! - **Snooping.** A local endpoint's address comes from the sender
//!   address of its ARP frames and the source address of its IPv4 packets;
//!   it goes to `LOCAL_IP`, which userspace publishes.
//! - **Suppression.** An ARP request from a local port for an address in
//!   `ARP` is turned into the reply in place and sent back out of the port
//!   it came in on: nothing is flooded. Requests the kernel's bridge would
//!   not suppress are left alone: gratuitous ARP and probes (sender
//!   address 0 or equal to the target), and a target that maps to the
//!   requester's own MAC (duplicate address detection must see the truth).

use aya_ebpf::{bindings::TC_ACT_REDIRECT, helpers::bpf_redirect, programs::TcContext};
use vxlan_common::{
    ArpKey, Counter, FdbKey, LocalIp,
    wire::{ETH_HLEN, ETH_P_IP},
};

use crate::{
    maps::{ARP, LOCAL_IP},
    stats::count,
};

pub const ETH_P_ARP: u16 = 0x0806;

const ARP_REQUEST: u16 = 1;
const ARP_REPLY: u16 = 2;

/// An IPv4-over-Ethernet ARP packet, after the Ethernet header.
#[repr(C)]
#[derive(Clone, Copy)]
struct ArpPkt {
    htype: [u8; 2],
    ptype: [u8; 2],
    hlen: u8,
    plen: u8,
    op: [u8; 2],
    sha: [u8; 6],
    spa: [u8; 4],
    tha: [u8; 6],
    tpa: [u8; 4],
}

const ARP_LEN: usize = core::mem::size_of::<ArpPkt>();

#[inline(always)]
fn load_arp(ctx: &TcContext) -> Option<ArpPkt> {
    let a: ArpPkt = ctx.load(ETH_HLEN).ok()?;
    let ipv4_over_eth =
        a.htype == [0, 1] && a.ptype == ETH_P_IP.to_be_bytes() && a.hlen == 6 && a.plen == 4;
    ipv4_over_eth.then_some(a)
}

/// Records the IPv4 address of the endpoint `mac` on a local port of
/// `vni`, from an ARP frame (`proto` ARP) or an IPv4 packet. Written only
/// when it changed.
#[inline(never)]
pub fn snoop(ctx: &TcContext, vni: u32, mac: &[u8; 6], proto: u16) {
    let ip: [u8; 4] = match proto {
        ETH_P_ARP => match load_arp(ctx) {
            Some(a) => a.spa,
            None => return,
        },
        // The source address of the IPv4 header, 12 bytes in.
        ETH_P_IP => match ctx.load::<[u8; 4]>(ETH_HLEN + 12) {
            Ok(ip) => ip,
            Err(_) => return,
        },
        _ => return,
    };
    // Unspecified, multicast, limited broadcast: not an endpoint's address.
    if ip == [0; 4] || ip[0] >= 224 {
        return;
    }
    let key = FdbKey::new(vni, *mac);
    // SAFETY: copied out at once.
    if unsafe { LOCAL_IP.get(&key) }.is_some_and(|l| l.ip == ip) {
        return;
    }
    let _ = LOCAL_IP.insert(&key, &LocalIp { ip }, 0);
}

/// ARP suppression: `Some(action)` when the frame (an ARP request from
/// port `ifindex` of `vni`) was answered on the port, `None` when it goes
/// on as usual.
#[inline(never)]
pub fn suppress(ctx: &TcContext, vni: u32, ifindex: u32) -> Option<i32> {
    let a = load_arp(ctx)?;
    if a.op != ARP_REQUEST.to_be_bytes() || a.spa == [0; 4] || a.spa == a.tpa {
        return None;
    }
    let key = ArpKey { vni, ip: a.tpa };
    // SAFETY: copied out at once.
    let mac = unsafe { ARP.get(&key) }?.mac;
    if mac == a.sha {
        return None;
    }
    let reply = ArpPkt {
        op: ARP_REPLY.to_be_bytes(),
        sha: mac,
        spa: a.tpa,
        tha: a.sha,
        tpa: a.spa,
        ..a
    };
    let mut eth = [0u8; 12];
    eth[..6].copy_from_slice(&a.sha);
    eth[6..].copy_from_slice(&mac);
    ctx.store(0, &eth, 0).ok()?;
    ctx.store(ETH_HLEN, &reply, 0).ok()?;
    count(Counter::ArpSuppressed);
    // SAFETY: a plain helper call: out of the port, back to the requester.
    unsafe { bpf_redirect(ifindex, 0) };
    Some(TC_ACT_REDIRECT)
}

const _: () = assert!(ARP_LEN == 28);
