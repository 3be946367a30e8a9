//! Crafted VXLAN injected from the underlay, for the hostile-input and
//! hardening tests: frames as the remote VTEP h2 (or a spoofer) would send
//! them to h1, written with a raw socket on the underlay switch's port
//! towards h1, so that they arrive on h1's `eth0` as if from the wire.

use vxlan_common::wire::Outer;

use crate::{
    H1_IP, Topology,
    hostile_net::{RawSender, parse_mac, udp_frame, vxlan_frame},
    ipv4,
};

/// Inner source MAC of crafted frames: a "container" behind the remote
/// VTEP.
pub const FAKE_MAC: [u8; 6] = [0x02, 0x00, 0x00, 0x00, 0x00, 0x99];
/// Inner source address of crafted frames.
pub const FAKE_IP: &str = "172.18.1.99";
/// UDP port the listener in c1 counts crafted datagrams on.
pub const MARK_PORT: u16 = 9999;
/// Address of container c1, the destination of the crafted datagrams.
const C1_IP: &str = "172.18.1.2";

/// Writes crafted frames from the switch's port towards h1.
pub struct Injector {
    raw: RawSender,
    pub h1_mac: [u8; 6],
    pub h2_mac: [u8; 6],
    /// c1's MAC (a placeholder when the topology has no c1).
    pub c1_mac: [u8; 6],
}

impl Injector {
    /// Opens the raw socket on the switch's port `h1` of `topo` (which
    /// needs hosts `h1` and `h2`).
    pub fn new(topo: &Topology) -> Self {
        let c1_mac = topo
            .containers
            .iter()
            .find(|c| c.name == "c1")
            .map_or([0x02, 0, 0, 0, 0, 0x01], |c| parse_mac(&c.mac()));
        Self {
            raw: RawSender::open(&topo.switch, "h1"),
            h1_mac: parse_mac(&topo.host("h1").ns.mac("eth0")),
            h2_mac: parse_mac(&topo.host("h2").ns.mac("eth0")),
            c1_mac,
        }
    }

    /// Outer headers of a frame from `src_ip` (on h2's MAC) to h1, UDP
    /// 50000 -> 4789, VNI `vni`, outer TOS `tos`.
    pub fn outer(&self, src_ip: &str, vni: u32, tos: u8) -> Outer {
        Outer {
            src_mac: self.h2_mac,
            dst_mac: self.h1_mac,
            src_ip: ipv4(src_ip).octets(),
            dst_ip: ipv4(H1_IP).octets(),
            src_port: 50_000,
            dst_port: 4789,
            vni,
            ttl: 64,
            tos,
            ip_id: 7,
        }
    }

    /// Inner frame: UDP from [`FAKE_IP`] (MAC `src_mac`) to c1:[`MARK_PORT`]
    /// carrying `marker`.
    pub fn udp_to_c1(&self, src_mac: [u8; 6], marker: &str) -> Vec<u8> {
        udp_frame(
            self.c1_mac,
            src_mac,
            ipv4(FAKE_IP),
            ipv4(C1_IP),
            40_000,
            MARK_PORT,
            marker.as_bytes(),
        )
    }

    /// A valid VXLAN frame (VNI 42) from `src_ip` with an inner UDP
    /// datagram from [`FAKE_MAC`] to c1 carrying `marker`.
    pub fn valid(&self, src_ip: &str, marker: &str) -> Vec<u8> {
        vxlan_frame(
            &self.outer(src_ip, 42, 0),
            &self.udp_to_c1(FAKE_MAC, marker),
        )
    }

    /// Sends `frame` `n` times.
    pub fn send(&self, frame: &[u8], n: usize) {
        for _ in 0..n {
            self.raw.send(frame);
        }
    }
}
