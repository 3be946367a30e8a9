//! Fuzzing of the three datapath programs with BPF_PROG_TEST_RUN: random and
//! mutated frames, seeded and reproducible, checked against invariants that
//! hold for every frame whatever it contains.
//!
//! - `fuzz_xdp_uplink`: `vxlan_xdp` only returns XDP_PASS or XDP_DROP; each
//!   run bumps exactly one outcome counter (`rx_pass`, `rx_decap` or one
//!   uplink `drop_*`), XDP_DROP exactly when it is a drop; a passed frame is
//!   untouched and is not UDP to our VXLAN port; a frame that is not ours
//!   (not IPv4/UDP to our address or group, a fragment) is never dropped;
//!   nothing is learned from a frame rejected before learning. A
//!   decapsulated frame passed the kernel's IPv4/UDP checks (checksum,
//!   lengths, TTL), comes from a sender allowed in its VNI, and is
//!   `XdpMeta` + exactly the inner frame (`input[50..]` up to the end of the
//!   IPv4 packet: padding trimmed), in the VNI of its VXLAN header (a
//!   configured one), to the port of that VNI the FDB names, or to 0
//!   (flood) when the FDB does not know the destination.
//! - `fuzz_tc_port`: `vxlan_tc_port` returns TC_ACT_UNSPEC (not a port, frame
//!   untouched, nothing counted), TC_ACT_REDIRECT (switched: frame untouched,
//!   FDB names another port of the same VNI; encapsulated: well-formed outer
//!   headers in the ingress port's VNI to the remote the FDB names, within
//!   the uplink MTU, inner frame byte for byte; or, for a too-big frame, an
//!   ICMP "fragmentation needed" that is well-formed and only where RFC 1122
//!   3.2.2 allows an ICMP error) or TC_ACT_SHOT with a counted reason; the
//!   copies a flood really sends (captured on the devices of the private
//!   namespace) go to exactly the other ports of the VNI and its
//!   remotes/group, in that VNI, and match the flood counters.
//!   Beyond these invariants, an oracle (`Lab::predict_rx`, written from
//!   the kernel's order of checks, independently of the datapath) predicts
//!   each frame's exact verdict and drop reason: a frame passed, dropped
//!   under another reason or decapsulated where the oracle says otherwise
//!   fails, also when both are "drops".
//! - `fuzz_tc_decap`: the same frames through `vxlan_tc_uplink` with
//!   `CFG_F_TC_DECAP` (no XDP: the default on veth uplinks): the oracle's
//!   verdict and reason, TC_ACT_UNSPEC with the frame untouched for a pass,
//!   TC_ACT_SHOT for a drop, TC_ACT_REDIRECT with exactly the inner frame
//!   (padding trimmed, ECN per RFC 6040) for a decapsulation.
//! - `fuzz_tc_uplink`: without XDP metadata (all that test_run can give it)
//!   every frame continues untouched (TC_ACT_UNSPEC), nothing counted.
//! - `fuzz_tc_uplink_handoff` (module `handoff`): the XDP-to-TC hand-off
//!   through a real uplink, with valid, forged, short and no metadata in
//!   front of the frames (see there).
//!
//! At the end of each test the counters must add up (outcomes = runs, every
//! reachable outcome seen at least once, copies counted = copies seen),
//! static FDB and NEIGH entries must be intact, every learned entry must be
//! in a configured VNI, on a port of that VNI or behind a sender allowed in
//! it, NEIGH may only have gained senders XDP accepted, and the
//! learned-entry count must match the table.
//!
//! Environment:
//! - `VXLAN_FUZZ_FRAMES`: frames per program (default 20 000, CI size;
//!   `cargo xtask fuzz` runs 1 000 000); `fuzz_tc_uplink` runs a tenth,
//!   `fuzz_tc_uplink_handoff` half.
//! - `VXLAN_FUZZ_SEED`: the seed (decimal or 0x-hex); printed at the start.
//!   The same seed and frame count replay the same frames in the same order.
//!
//! Every failing invariant is collected (first example of each kind, with
//! the iteration, the input and output in hex, the counter deltas and the
//! copies sent) and reported at the end, with a shrunk input where the
//! failure reproduces on its own.
//!
//! Needs root; everything happens in a network namespace private to the test
//! thread, so copies sent by `bpf_clone_redirect` leave only through veth
//! devices there.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap as StdHashMap},
    fmt::Write as _,
    mem::size_of,
    os::fd::{AsFd as _, OwnedFd},
    time::Instant,
};

use aya::maps::{IterableMap as _, lpm_trie::Key};
use vxlan_common::{
    CFG_F_LEARNING, CFG_F_TC_DECAP, Counter, FDB_F_STATIC, FdbEntry, FdbKey, META_MAGIC,
    META_MAGIC_TC_DECAP, NeighEntry, PORT_F_PEER, PortInfo, VNI_F_ANY_SENDER, VTEP_NONE, VniInfo,
    XdpMeta, allow_data, vtep_as_v4, vtep_v4,
    wire::{
        ENCAP_LEN, ETH_HLEN, ETH_P_IP, ETH_P_IPV6, ICMP_FRAG_LEN, OFF_INNER, OFF_IP, OFF_UDP,
        OFF_VXLAN, OVERHEAD, Outer, build_outer, ecn_encap, inet_checksum, ipv4_checksum,
        is_multicast_mac, multicast_mac,
    },
};
use vxlan_tests::{
    capture::{drain_packets, packet_socket},
    fixture::{
        self, DSTPORT, Datapath, LOCAL, META_KEY, TC_ACT_OK, TC_ACT_REDIRECT, TC_ACT_SHOT,
        TC_ACT_UNSPEC, UPLINK_MAC, Veth, XDP_ABORTED, XDP_DROP, XDP_PASS, private_netns,
    },
    frames::{self, IP_DF, Ipv4, fix_ip_checksum, fix_lengths, set},
};

// ---------------------------------------------------------------------------
// Parameters
// ---------------------------------------------------------------------------

const DEFAULT_FRAMES: u64 = 20_000;
const DEFAULT_SEED: u64 = 0x5658_4c4e_f022_0042;

const PORT_LO: u16 = 32768;
const PORT_HI: u16 = 60999;
const TTL: u8 = 64;
const MCAST_TTL: u8 = 1;
const MAX_LEARNED: u32 = 2048;
/// Uplink MTU: an encapsulated frame longer than 1500 + 14 is too big.
const UPLINK_MTU: u32 = 1500;

/// Remote VTEPs. R1, R2 (VNI 42) and R3 (VNI 43) have NEIGH entries; RNN has
/// none (the flood remote of VNI 44, and an FDB unicast target in VNI 42).
const R1: [u8; 4] = [192, 168, 57, 54];
const R2: [u8; 4] = [192, 168, 57, 55];
const R3: [u8; 4] = [192, 168, 57, 56];
const RNN: [u8; 4] = [192, 168, 57, 57];
/// VNI 43's multicast group (in GROUPS), and a group nobody configured.
const GROUP43: [u8; 4] = [239, 1, 1, 43];
const GROUP_OTHER: [u8; 4] = [239, 1, 1, 99];

const fn mac(a: u8, b: u8) -> [u8; 6] {
    [0x02, a, 0, 0, 0, b]
}
const BCAST: [u8; 6] = [0xff; 6];
/// Static FDB MACs: `Mvv_x`. `MSH` is static in VNI 42 (port p42c) and in
/// VNI 43 (remote R3): the same MAC in two VNIs with two different places.
const M42A: [u8; 6] = mac(0x42, 0x0a);
const M42B: [u8; 6] = mac(0x42, 0x0b);
const M42C: [u8; 6] = mac(0x42, 0x0c);
const M42R1: [u8; 6] = mac(0x42, 0x51);
const M42R2: [u8; 6] = mac(0x42, 0x52);
const M42NN: [u8; 6] = mac(0x42, 0x5f);
const M43A: [u8; 6] = mac(0x43, 0x0a);
const M43B: [u8; 6] = mac(0x43, 0x0b);
const M43R3: [u8; 6] = mac(0x43, 0x53);
const M44A: [u8; 6] = mac(0x44, 0x0a);
const MSH: [u8; 6] = mac(0x5e, 0x5e);
const STATIC_MACS: &[[u8; 6]] = &[
    M42A, M42B, M42C, M42R1, M42R2, M42NN, M43A, M43B, M43R3, M44A, MSH,
];
/// MACs the frames use as sources (and destinations): they get learned,
/// move between ports and VTEPs, and make hairpins.
const POOL: &[[u8; 6]] = &[
    mac(0xd0, 1),
    mac(0xd0, 2),
    mac(0xd0, 3),
    mac(0xd0, 4),
    mac(0xd0, 5),
    mac(0xd0, 6),
    mac(0xd0, 7),
    mac(0xd0, 8),
    mac(0xd0, 9),
    mac(0xd0, 10),
    mac(0xd0, 11),
    mac(0xd0, 12),
];

// ---------------------------------------------------------------------------
// Seeded PRNG (xoshiro256**, seeded with splitmix64): no dependency, the
// same sequence everywhere.
// ---------------------------------------------------------------------------

struct Rng([u64; 4]);

impl Rng {
    fn new(seed: u64) -> Self {
        let mut z = seed;
        let mut next = || {
            z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut x = z;
            x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            x ^ (x >> 31)
        };
        Self([next(), next(), next(), next()])
    }
    fn u64(&mut self) -> u64 {
        let s = &mut self.0;
        let r = s[1].wrapping_mul(5).rotate_left(7).wrapping_mul(9);
        let t = s[1] << 17;
        s[2] ^= s[0];
        s[3] ^= s[1];
        s[1] ^= s[2];
        s[0] ^= s[3];
        s[2] ^= t;
        s[3] = s[3].rotate_left(45);
        r
    }
    /// Uniform in `0..n` (n > 0).
    fn below(&mut self, n: usize) -> usize {
        ((u128::from(self.u64()) * n as u128) >> 64) as usize
    }
    /// Uniform in `lo..=hi`.
    fn range(&mut self, lo: usize, hi: usize) -> usize {
        lo + self.below(hi - lo + 1)
    }
    fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }
    fn u8(&mut self) -> u8 {
        self.u64() as u8
    }
    fn u16(&mut self) -> u16 {
        self.u64() as u16
    }
    fn pick<T: Copy>(&mut self, xs: &[T]) -> T {
        xs[self.below(xs.len())]
    }
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.u8()).collect()
    }
    fn mac(&mut self) -> [u8; 6] {
        let b = self.bytes(6);
        b.try_into().unwrap()
    }
}

// ---------------------------------------------------------------------------
// Frame generators
// ---------------------------------------------------------------------------

fn random_frame(rng: &mut Rng) -> Vec<u8> {
    let n = rng.range(0, 200);
    rng.bytes(n)
}

fn pick_dst(rng: &mut Rng, own: &[[u8; 6]]) -> [u8; 6] {
    match rng.below(24) {
        0..=3 => BCAST,
        4 => [0x01, 0x00, 0x5e, rng.u8() & 0x7f, rng.u8(), rng.u8()],
        5 => [0x33, 0x33, rng.u8(), rng.u8(), rng.u8(), rng.u8()],
        6..=11 if !own.is_empty() => rng.pick(own),
        6..=14 => rng.pick(STATIC_MACS),
        15..=19 => rng.pick(POOL),
        20 => [0; 6],
        _ => rng.mac(),
    }
}

fn pick_src(rng: &mut Rng) -> [u8; 6] {
    match rng.below(20) {
        0..=10 => rng.pick(POOL),
        11..=13 => rng.pick(STATIC_MACS),
        14 => [0; 6],
        15 => BCAST,
        16 => [0x01, 0x00, 0x5e, 0, 0, rng.u8()],
        _ => {
            let mut m = rng.mac();
            if rng.chance(70) {
                m[0] &= 0xfe;
            }
            m
        }
    }
}

fn ipv4_header(rng: &mut Rng, payload_len: usize, proto: u8) -> Vec<u8> {
    // In the order of the header's bytes (the corpus of a seed stays).
    let tos = rng.u8();
    let id = u16::from_be_bytes([rng.u8(), rng.u8()]);
    let frag = if rng.chance(50) { IP_DF } else { 0 };
    let ttl = rng.u8();
    let (src, dst) = ([172, 18, 1, rng.u8()], [172, 18, 1, rng.u8()]);
    let ip = Ipv4::new(proto, src, dst)
        .tos(tos)
        .id(id)
        .frag(frag)
        .ttl(ttl);
    ip.header(payload_len).to_vec()
}

/// An Ethernet frame from `src` to `dst` of a random kind.
fn inner_frame(rng: &mut Rng, dst: [u8; 6], src: [u8; 6]) -> Vec<u8> {
    let mut f = Vec::with_capacity(200);
    f.extend_from_slice(&dst);
    f.extend_from_slice(&src);
    let plen = rng.range(0, 120);
    match rng.below(12) {
        0..=3 => {
            let r = rng.u8();
            let proto = rng.pick(&[17, 6, 1, 47, r]);
            f.extend_from_slice(&ETH_P_IP.to_be_bytes());
            f.extend(ipv4_header(rng, plen, proto));
            f.extend(rng.bytes(plen));
        }
        4 | 5 => {
            f.extend_from_slice(&ETH_P_IPV6.to_be_bytes());
            f.extend_from_slice(&[0x60 | (rng.u8() & 0x0f), rng.u8(), rng.u8(), rng.u8()]);
            f.extend_from_slice(&(plen as u16).to_be_bytes());
            f.push(rng.pick(&[17, 6, 58, 0]));
            f.push(rng.u8());
            f.extend(rng.bytes(32));
            f.extend(rng.bytes(plen));
        }
        6 | 7 => {
            f.extend_from_slice(&[0x08, 0x06, 0, 1, 0x08, 0, 6, 4, 0, rng.pick(&[1, 2])]);
            f.extend_from_slice(&src);
            f.extend_from_slice(&[172, 18, 1, rng.u8()]);
            f.extend_from_slice(&dst);
            f.extend_from_slice(&[172, 18, 1, rng.u8()]);
            if rng.chance(50) {
                f.resize(60, 0); // padded to the Ethernet minimum
            }
        }
        8 => {
            f.extend_from_slice(&[0x81, 0x00, rng.u8() & 0x0f, rng.u8(), 0x08, 0x00]);
            f.extend(ipv4_header(rng, plen, 17));
            f.extend(rng.bytes(plen));
        }
        9 => {
            f.extend_from_slice(&(rng.below(0x600) as u16).to_be_bytes());
            f.extend_from_slice(&[0x42, 0x42, 0x03]);
            f.extend(rng.bytes(plen));
        }
        10 => {
            // The Ethernet header alone, with an IP or IPv6 ethertype.
            f.extend_from_slice(&rng.pick(&[ETH_P_IP, ETH_P_IPV6]).to_be_bytes());
        }
        _ => {
            f.extend_from_slice(&rng.u16().to_be_bytes());
            f.extend(rng.bytes(plen));
        }
    }
    f
}

/// Generic mutations: bit flips, truncation, splices, extension.
fn mutate_generic(rng: &mut Rng, f: &mut Vec<u8>) {
    match rng.below(6) {
        0 | 1 => {
            for _ in 0..rng.range(1, 8) {
                if !f.is_empty() {
                    let i = rng.below(f.len());
                    f[i] ^= 1 << rng.below(8);
                }
            }
        }
        2 => {
            let n = rng.range(0, f.len());
            f.truncate(n);
        }
        3 => {
            if !f.is_empty() {
                let i = rng.below(f.len());
                let n = rng.range(1, 8).min(f.len() - i);
                let b = rng.bytes(n);
                f[i..i + n].copy_from_slice(&b);
            }
        }
        4 => {
            let n = rng.range(1, 64);
            f.extend(rng.bytes(n));
        }
        _ => {
            if !f.is_empty() {
                let i = rng.below(f.len());
                f[i] = rng.pick(&[0, 0xff, 0x80, 0x7f, 1]);
            }
        }
    }
}

// ---------------------------------------------------------------------------
// The lab: a private network namespace, the loaded programs and their maps
// ---------------------------------------------------------------------------

/// A VNI as configured in the maps.
#[derive(Clone, Debug)]
struct VniCfg {
    vni: u32,
    ports: Vec<u32>,
    remotes: Vec<[u8; 4]>,
    group: Option<[u8; 4]>,
    /// Static FDB MACs of this VNI.
    statics: Vec<[u8; 6]>,
    /// VNI_F_ANY_SENDER: VXLAN accepted from any sender.
    any_sender: bool,
    /// Senders allowed otherwise (ALLOWED trie): address, prefix length.
    allowed: Vec<([u8; 4], u32)>,
}

impl VniCfg {
    fn sender_allowed(&self, src: [u8; 4]) -> bool {
        let s = u32::from_be_bytes(src);
        self.any_sender
            || self.allowed.iter().any(|(a, len)| {
                let mask = if *len == 0 { 0 } else { u32::MAX << (32 - len) };
                s & mask == u32::from_be_bytes(*a) & mask
            })
    }
}

struct Lab {
    dp: Datapath,
    /// Counter values after the last run (per counter, summed over CPUs).
    last: Vec<u64>,
    cap: Capture,
    uplink: u32,
    not_a_port: u32,
    names: StdHashMap<u32, String>,
    vnis: Vec<VniCfg>,
    /// ifindex → (VNI, PORT_F_* flags).
    ports: StdHashMap<u32, (u32, u32)>,
    neigh: StdHashMap<[u8; 4], NeighEntry>,
    statics: Vec<(FdbKey, FdbEntry)>,
}

impl Lab {
    /// Moves the calling test thread into a network namespace of its own,
    /// with veth pairs for the uplink, the ports of every VNI and one device
    /// that is not a port; loads the programs and configures four VNIs:
    ///
    /// | VNI | ports                 | flood remotes | group   |
    /// |-----|-----------------------|---------------|---------|
    /// | 42  | p42a (peer), p42b, p42c | R1, R2      | -       |
    /// | 43  | p43a (peer), p43b     | R3            | GROUP43 |
    /// | 44  | p44a                  | RNN (no NEIGH)| -       |
    /// | 45  | p45a                  | -             | -       |
    ///
    /// with static FDB entries in 42, 43 and 44 (ports, remotes, a remote
    /// without NEIGH, and `MSH` in two VNIs at two places).
    fn new() -> Self {
        vxlan_tests::require_root();
        let devs = [
            "up0", "np0", "p42a", "p42b", "p42c", "p43a", "p43b", "p44a", "p45a",
        ];
        let peers: Vec<String> = devs.iter().map(|d| format!("{d}p")).collect();
        let veths: Vec<Veth> = devs
            .iter()
            .zip(&peers)
            .map(|(d, p)| Veth {
                // Ports take jumbo frames, so that a frame too big for the
                // uplink still reaches the other ports of a flood; the
                // uplink has the MTU the configuration says. TC
                // decapsulation runs on the uplink: frames to the uplink
                // MAC must be PACKET_HOST there.
                mtu: Some(if *d == "up0" { UPLINK_MTU } else { 9000 }),
                mac: (*d == "up0").then_some(UPLINK_MAC),
                ..Veth::new(d, p)
            })
            .collect();
        let idx: StdHashMap<&str, u32> = devs
            .iter()
            .copied()
            .zip(private_netns(Some(UPLINK_MAC), &veths).expect("private network namespace"))
            .collect();
        let mut names: StdHashMap<u32, String> =
            devs.iter().map(|d| (idx[d], (*d).to_owned())).collect();
        names.insert(1, "lo".into());
        let cap = Capture::open();
        let mut dp = Datapath::load(None).expect("load the datapath");

        let uplink = idx["up0"];
        let vnis = vec![
            VniCfg {
                vni: 42,
                ports: vec![idx["p42a"], idx["p42b"], idx["p42c"]],
                remotes: vec![R1, R2],
                group: None,
                statics: vec![M42A, M42B, M42C, M42R1, M42R2, M42NN, MSH],
                any_sender: false,
                allowed: vec![(R1, 32), (R2, 32), ([10, 9, 9, 0], 24)],
            },
            VniCfg {
                vni: 43,
                ports: vec![idx["p43a"], idx["p43b"]],
                remotes: vec![R3],
                group: Some(GROUP43),
                statics: vec![M43A, M43B, M43R3, MSH],
                any_sender: true,
                allowed: vec![],
            },
            VniCfg {
                vni: 44,
                ports: vec![idx["p44a"]],
                remotes: vec![RNN],
                group: None,
                statics: vec![M44A],
                any_sender: false,
                allowed: vec![(RNN, 32), (R1, 32)],
            },
            VniCfg {
                vni: 45,
                ports: vec![idx["p45a"]],
                remotes: vec![],
                group: None,
                statics: vec![],
                any_sender: false,
                allowed: vec![([192, 168, 57, 0], 24)],
            },
        ];
        let mut ports = StdHashMap::new();
        for v in &vnis {
            for (i, p) in v.ports.iter().enumerate() {
                // The first port of 42 and 43 is delivered to with redirect_peer.
                let flags = if i == 0 && v.vni <= 43 {
                    PORT_F_PEER
                } else {
                    0
                };
                ports.insert(*p, (v.vni, flags));
            }
        }
        let neigh: StdHashMap<[u8; 4], NeighEntry> = [R1, R2, R3]
            .iter()
            .map(|r| {
                (
                    *r,
                    NeighEntry {
                        dmac: [0x02, 0xaa, 0, 0, 0, r[3]],
                        smac: UPLINK_MAC,
                        ifindex: uplink,
                    },
                )
            })
            .collect();
        let st = |ifindex: u32, remote: [u8; 4]| FdbEntry {
            remote: if remote == [0; 4] {
                VTEP_NONE
            } else {
                vtep_v4(remote)
            },
            ifindex,
            flags: FDB_F_STATIC,
            ..Default::default()
        };
        let statics = vec![
            (FdbKey::new(42, M42A), st(idx["p42a"], [0; 4])),
            (FdbKey::new(42, M42B), st(idx["p42b"], [0; 4])),
            (FdbKey::new(42, M42C), st(idx["p42c"], [0; 4])),
            (FdbKey::new(42, M42R1), st(0, R1)),
            (FdbKey::new(42, M42R2), st(0, R2)),
            (FdbKey::new(42, M42NN), st(0, RNN)),
            (FdbKey::new(42, MSH), st(idx["p42c"], [0; 4])),
            (FdbKey::new(43, M43A), st(idx["p43a"], [0; 4])),
            (FdbKey::new(43, M43B), st(idx["p43b"], [0; 4])),
            (FdbKey::new(43, M43R3), st(0, R3)),
            (FdbKey::new(43, MSH), st(0, R3)),
            (FdbKey::new(44, M44A), st(idx["p44a"], [0; 4])),
        ];

        // Maps.
        dp.set_config(fixture::config(uplink, MAX_LEARNED))
            .expect("CONFIG");
        let m = &mut dp.maps;
        for v in &vnis {
            let mut info = VniInfo {
                n_remotes: v.remotes.len() as u32,
                n_ports: v.ports.len() as u32,
                group: v.group.map_or(VTEP_NONE, vtep_v4),
                flags: if v.any_sender { VNI_F_ANY_SENDER } else { 0 },
                ..Default::default()
            };
            for (slot, r) in info.remotes.iter_mut().zip(&v.remotes) {
                *slot = vtep_v4(*r);
            }
            info.ports[..v.ports.len()].copy_from_slice(&v.ports);
            m.vnis.insert(v.vni, info, 0).unwrap();
            for (a, len) in &v.allowed {
                m.allowed
                    .insert(
                        &Key::new(32 + 96 + len, allow_data(v.vni, &vtep_v4(*a))),
                        1,
                        0,
                    )
                    .unwrap();
            }
        }
        // An unconfigured VNI's senders change nothing.
        m.allowed
            .insert(&Key::new(32 + 128, allow_data(46, &vtep_v4(R1))), 1, 0)
            .unwrap();
        for (p, &(vni, flags)) in &ports {
            let info = PortInfo {
                vni,
                flags,
                ..Default::default()
            };
            m.ports.insert(p, info, 0).unwrap();
        }
        for (ip, n) in &neigh {
            m.neigh.insert(vtep_v4(*ip), n, 0).unwrap();
        }
        m.groups.insert(vtep_v4(GROUP43), 0, 0).unwrap();
        for (k, e) in &statics {
            m.fdb.insert(k, e, 0).unwrap();
        }

        let ncounters = m.counters.map().info().unwrap().max_entries() as usize;
        assert_eq!(
            ncounters,
            Counter::ALL.len(),
            "COUNTERS in the object matches vxlan_common::Counter"
        );
        let mut lab = Self {
            dp,
            last: Vec::new(),
            cap,
            uplink,
            not_a_port: idx["np0"],
            names,
            vnis,
            ports,
            neigh,
            statics,
        };
        lab.last = lab.read_counters();
        assert!(lab.last.iter().all(|c| *c == 0), "fresh counters");
        lab
    }

    fn vni_cfg(&self, vni: u32) -> Option<&VniCfg> {
        self.vnis.iter().find(|v| v.vni == vni)
    }

    fn name(&self, ifindex: u32) -> String {
        self.names
            .get(&ifindex)
            .cloned()
            .unwrap_or_else(|| format!("if{ifindex}"))
    }

    /// All counters, summed over CPUs, with one BPF_MAP_LOOKUP_BATCH.
    fn read_counters(&self) -> Vec<u64> {
        self.dp.counters().expect("reading COUNTERS")
    }

    /// Counter deltas since the previous call.
    fn deltas(&mut self) -> Vec<u64> {
        let now = self.read_counters();
        let d = now
            .iter()
            .zip(&self.last)
            .map(|(a, b)| a.wrapping_sub(*b))
            .collect();
        self.last = now;
        d
    }

    fn fdb_get(&self, vni: u32, mac: [u8; 6]) -> Option<FdbEntry> {
        self.dp.maps.fdb.get(&FdbKey::new(vni, mac), 0).ok()
    }

    /// Runs one frame through `which` and collects what it did.
    fn run(&mut self, which: Prog, frame: &[u8], ifindex: u32) -> Run {
        let program = match which {
            Prog::Xdp => fixture::Prog::Xdp,
            Prog::TcPort => fixture::Prog::TcPort,
            Prog::TcUplink | Prog::TcDecap => fixture::Prog::TcUplink,
        };
        let result = self
            .dp
            .run(program, frame, ifindex)
            .map_err(|e| format!("{e:?}"));
        Run {
            which,
            ifindex,
            input: frame.to_vec(),
            result,
            delta: self.deltas(),
            copies: self.cap.drain(),
        }
    }
}

// ---------------------------------------------------------------------------
// Capturing the copies the programs really send
// ---------------------------------------------------------------------------

/// An AF_PACKET socket on every device of the private namespace: frames
/// the devices transmit (PACKET_OUTGOING) are seen synchronously, during
/// the `dev_queue_xmit` of `bpf_clone_redirect`, so after a test run they
/// are exactly the copies that run sent.
struct Capture {
    fd: OwnedFd,
    buf: Vec<u8>,
}

impl Capture {
    fn open() -> Self {
        let fd = packet_socket(None).unwrap_or_else(|e| panic!("AF_PACKET socket: {e}"));
        Self {
            fd,
            buf: vec![0; 65536],
        }
    }

    /// Frames transmitted since the last call: (ifindex, bytes).
    fn drain(&mut self) -> Vec<(u32, Vec<u8>)> {
        let mut out = Vec::new();
        drain_packets(
            self.fd.as_fd(),
            &mut self.buf,
            "recvfrom on the capture socket",
            |kind, ifindex, frame| {
                if kind == libc::PACKET_OUTGOING {
                    out.push((ifindex, frame.to_vec()));
                }
            },
        );
        out
    }
}

/// Frames skb BPF_PROG_TEST_RUN refuses with EINVAL (Linux 6.18): shorter
/// than Ethernet, and IPv4/IPv6 frames shorter than their fixed network
/// header. The TC programs cannot be run on those here.
fn skb_refused(f: &[u8]) -> bool {
    if f.len() < ETH_HLEN {
        return true;
    }
    match u16::from_be_bytes([f[12], f[13]]) {
        ETH_P_IP => f.len() < ETH_HLEN + 20,
        ETH_P_IPV6 => f.len() < ETH_HLEN + 40,
        _ => false,
    }
}

// ---------------------------------------------------------------------------
// Runs, failures and the report
// ---------------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Prog {
    Xdp,
    TcPort,
    TcUplink,
    /// The TC uplink program decapsulating itself (`CFG_F_TC_DECAP`, the
    /// default on veth uplinks), fed what XDP is fed.
    TcDecap,
}

struct Run {
    which: Prog,
    ifindex: u32,
    input: Vec<u8>,
    result: Result<(u32, Vec<u8>), String>,
    /// Counter deltas, indexed by `Counter`.
    delta: Vec<u64>,
    /// Copies sent during the run: (device, bytes).
    copies: Vec<(u32, Vec<u8>)>,
}

impl Run {
    fn d(&self, c: Counter) -> u64 {
        self.delta[c as usize]
    }
}

/// A failed invariant: a short kind (deduplication key) and a message.
type Fail = (String, String);

macro_rules! ensure {
    ($cond:expr, $kind:expr, $($msg:tt)+) => {
        if !$cond {
            return Err(($kind.to_string(), format!($($msg)+)));
        }
    };
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn action_name(which: Prog, a: u32) -> String {
    match which {
        Prog::Xdp => match a {
            XDP_ABORTED => "XDP_ABORTED".into(),
            XDP_DROP => "XDP_DROP".into(),
            XDP_PASS => "XDP_PASS".into(),
            3 => "XDP_TX".into(),
            4 => "XDP_REDIRECT".into(),
            _ => format!("{a}"),
        },
        _ => match a {
            TC_ACT_UNSPEC => "TC_ACT_UNSPEC".into(),
            TC_ACT_OK => "TC_ACT_OK".into(),
            TC_ACT_SHOT => "TC_ACT_SHOT".into(),
            TC_ACT_REDIRECT => "TC_ACT_REDIRECT".into(),
            _ => format!("{}", a as i32),
        },
    }
}

fn deltas_str(d: &[u64]) -> String {
    let v: Vec<String> = d
        .iter()
        .enumerate()
        .filter(|(_, x)| **x != 0)
        .map(|(i, x)| format!("{}+{x}", Counter::ALL[i].name()))
        .collect();
    if v.is_empty() {
        "none".into()
    } else {
        v.join(" ")
    }
}

#[derive(Default)]
struct Report {
    /// kind → (count, first example).
    kinds: BTreeMap<String, (u64, String, Run)>,
}

impl Report {
    fn record(&mut self, lab: &Lab, iter: u64, seed: u64, run: Run, (kind, msg): Fail) {
        let e = self.kinds.entry(kind);
        match e {
            std::collections::btree_map::Entry::Occupied(mut o) => o.get_mut().0 += 1,
            std::collections::btree_map::Entry::Vacant(v) => {
                let detail = describe(lab, iter, seed, &run, &msg);
                eprintln!("FUZZ FAILURE {}\n{detail}", v.key());
                v.insert((1, detail, run));
            }
        }
    }
}

fn describe(lab: &Lab, iter: u64, seed: u64, r: &Run, msg: &str) -> String {
    let mut s = String::new();
    writeln!(s, "  {msg}").unwrap();
    writeln!(
        s,
        "  program {:?}, iteration {iter} (VXLAN_FUZZ_SEED={seed:#x}), ifindex {} ({})",
        r.which,
        r.ifindex,
        lab.name(r.ifindex)
    )
    .unwrap();
    writeln!(s, "  input  ({:4} bytes): {}", r.input.len(), hex(&r.input)).unwrap();
    let short = |b: &[u8]| {
        if b == &r.input[..] {
            "the input".to_owned()
        } else if b.len() > r.input.len() && b.ends_with(&r.input) {
            format!("{} + the input", hex(&b[..b.len() - r.input.len()]))
        } else if b.len() > 160 {
            format!("{}... ", hex(&b[..160]))
        } else {
            hex(b)
        }
    };
    match &r.result {
        Ok((a, out)) => {
            writeln!(s, "  action {}", action_name(r.which, *a)).unwrap();
            writeln!(s, "  output ({:4} bytes): {}", out.len(), short(out)).unwrap();
        }
        Err(e) => writeln!(s, "  test_run error: {e}").unwrap(),
    }
    writeln!(s, "  counter deltas: {}", deltas_str(&r.delta)).unwrap();
    for (dev, b) in &r.copies {
        writeln!(
            s,
            "  copy sent on {} ({dev}, {} bytes): {}",
            lab.name(*dev),
            b.len(),
            short(b)
        )
        .unwrap();
    }
    s
}

/// Hex with the trailing zeros summarised.
fn hex_compact(b: &[u8]) -> String {
    let end = b.iter().rposition(|x| *x != 0).map_or(0, |i| i + 1);
    if b.len() - end > 8 {
        format!("{} then {} zero bytes", hex(&b[..end]), b.len() - end)
    } else {
        hex(b)
    }
}

// ---------------------------------------------------------------------------
// Counter classes
// ---------------------------------------------------------------------------

use Counter::*;

const SIDE: &[Counter] = &[Learn, LearnRefused, EventsLost, RxEcnMarked];
/// XDP drops of the outer headers and the VXLAN header (decided before
/// anything is learned).
const HEADER_DROPS: &[Counter] = &[
    DropIpMalformed,
    DropIpOptions,
    DropIpChecksum,
    DropIpLength,
    DropIpTtl,
    DropUdpLength,
    DropSpoofed,
    DropVxlanTruncated,
    DropVxlanFlags,
    DropUnknownVni,
    DropInnerTruncated,
];
/// The XDP drops this test was written with: `HEADER_DROPS` and these.
const XDP_MORE_DROPS: &[Counter] = &[DropRxHairpin, DropDecapFailed];
/// XDP drops decided before anything is learned besides `HEADER_DROPS`.
const PRE_LEARN_DROPS: &[Counter] = &[
    DropBadOuterSrc,
    DropOtherHost,
    DropUdpCsum,
    DropBadSrcMac,
    DropStaticConflict,
];
const PORT_DROPS: &[Counter] = &[
    DropTxTruncated,
    DropTxHairpin,
    DropEncapFailed,
    DropNoNeigh,
    DropTooBig,
    DropNoFloodTarget,
];
/// Counters of the port program that are not drops.
const PORT_OUTCOMES: &[Counter] = &[LocalSwitch, TxEncap, TxIcmpFragNeeded, TxIcmp6TooBig];
const UPLINK_DROPS: &[Counter] = &[DropUnknownVni, DropNoLocalPort];
const FLOOD_COPIES: &[Counter] = &[TxLocalFloodCopy, TxFloodCopy, TxGroupCopy];

fn is_xdp_drop(c: Counter) -> bool {
    HEADER_DROPS.contains(&c) || XDP_MORE_DROPS.contains(&c)
}
fn is_drop(i: usize) -> bool {
    Counter::ALL[i].name().starts_with("drop_")
}
/// A drop reason added after this test was written: allowed for any program.
fn is_new_drop(i: usize) -> bool {
    let c = Counter::ALL[i];
    is_drop(i) && !is_xdp_drop(c) && !PORT_DROPS.contains(&c) && !UPLINK_DROPS.contains(&c)
}
fn xdp_drop(i: usize) -> bool {
    is_xdp_drop(Counter::ALL[i]) || is_new_drop(i)
}
fn port_drop(i: usize) -> bool {
    PORT_DROPS.contains(&Counter::ALL[i]) || is_new_drop(i)
}

/// Side counters may only move by one, learn and learn_refused not both,
/// events_lost only with learn.
fn check_side(r: &Run, prefix: &str) -> Result<(), Fail> {
    let (l, lr, el) = (r.d(Learn), r.d(LearnRefused), r.d(EventsLost));
    ensure!(
        l + lr <= 1 && el <= l,
        format!("{prefix}: learning counters inconsistent"),
        "learn +{l}, learn_refused +{lr}, events_lost +{el}: at most one learning decision per frame"
    );
    Ok(())
}

// ---------------------------------------------------------------------------
// The outer headers
// ---------------------------------------------------------------------------

/// The oracle's verdict on an uplink frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    /// Not ours: to the kernel, untouched (`rx_pass`).
    Pass,
    /// Dropped and counted under this reason.
    Drop(Counter),
    /// Decapsulated (`rx_decap`).
    Decap,
}

/// What an uplink frame is, by its outer Ethernet, IPv4 and UDP headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Uplink {
    /// Not for us (or a fragment): must pass untouched.
    NotOurs(&'static str),
    /// IPv4 to us that the kernel's IP layer drops anyway (bad version,
    /// IHL below 5): passing or dropping it are both fine.
    KernelDrops,
    /// IPv4 with options to us: may pass or be dropped, never decapsulated.
    Options,
    /// UDP to our VXLAN port, IHL 5, not a fragment: dropped or
    /// decapsulated, never passed.
    OurPort,
}

fn classify(f: &[u8]) -> Uplink {
    use Uplink::*;
    if f.len() < OFF_IP + 20 {
        return NotOurs("shorter than Ethernet + IPv4");
    }
    if f[12..14] != ETH_P_IP.to_be_bytes() {
        return NotOurs("not IPv4");
    }
    if f[OFF_IP + 9] != 17 {
        return NotOurs("not UDP");
    }
    let dst: [u8; 4] = f[OFF_IP + 16..OFF_IP + 20].try_into().unwrap();
    if dst != LOCAL && dst != GROUP43 {
        return NotOurs("not to our address or group");
    }
    if u16::from_be_bytes([f[OFF_IP + 6], f[OFF_IP + 7]]) & 0x3fff != 0 {
        return NotOurs("a fragment");
    }
    if f[OFF_IP] >> 4 != 4 || f[OFF_IP] & 0x0f < 5 {
        return KernelDrops;
    }
    if f[OFF_IP] & 0x0f > 5 {
        return Options;
    }
    if f.len() < OFF_VXLAN {
        return NotOurs("UDP header cut");
    }
    if u16::from_be_bytes([f[OFF_UDP + 2], f[OFF_UDP + 3]]) != DSTPORT {
        return NotOurs("not to our UDP port");
    }
    OurPort
}

/// For a frame to our VXLAN port: whether the kernel's IPv4 and UDP input
/// would accept it, and where the IPv4 packet ends (padding after it).
fn ip_udp_valid(f: &[u8]) -> Result<usize, &'static str> {
    let ip: [u8; 20] = f[OFF_IP..OFF_UDP].try_into().unwrap();
    if ip[10..12] != ipv4_checksum(&ip) {
        return Err("a bad IPv4 header checksum");
    }
    let tot = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
    if tot > f.len() - ETH_HLEN || tot < 28 {
        return Err("an IPv4 total length not within the frame");
    }
    if ip[8] == 0 {
        return Err("TTL 0");
    }
    let ulen = usize::from(u16::from_be_bytes([f[OFF_UDP + 4], f[OFF_UDP + 5]]));
    if ulen != tot - 20 {
        return Err("a UDP length not matching the IPv4 length");
    }
    let src: [u8; 4] = ip[12..16].try_into().unwrap();
    // Martians to the kernel's routing: 0/8, 127/8, 224/4, 255.255.255.255.
    if src == LOCAL || matches!(src[0], 0 | 127 | 224..=239) || src == [255; 4] {
        return Err("a martian or our own outer source address");
    }
    if f[0] & 1 == 0 && f[..6] != UPLINK_MAC {
        return Err("another host's destination MAC");
    }
    if f[OFF_UDP + 6..OFF_UDP + 8] != [0, 0] && !udp_checksum_ok(f, tot) {
        return Err("a wrong UDP checksum");
    }
    Ok(ETH_HLEN + tot)
}

/// Whether the outer UDP checksum of `f` (IPv4 packet of `tot` bytes) is
/// right, summed in network order (independently of the datapath's sum).
fn udp_checksum_ok(f: &[u8], tot: usize) -> bool {
    let udp = &f[OFF_UDP..ETH_HLEN + tot];
    let mut sum: u64 = 0;
    for c in f[OFF_IP + 12..OFF_IP + 20].chunks(2).chain(udp.chunks(2)) {
        sum += u64::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]));
    }
    sum += 17 + udp.len() as u64;
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum == 0xffff
}

/// The inner frame `f[OFF_INNER..end]` as decapsulation must deliver it:
/// its ECN field updated from the outer TOS (RFC 6040, written out here
/// from the RFC's table, not with the datapath's helper); `None` when the
/// frame must be dropped (CE over Not-ECT).
fn expected_inner(f: &[u8], end: usize) -> Option<Vec<u8>> {
    let mut inner = f[OFF_INNER..end].to_vec();
    let outer = f[OFF_IP + 1] & 3;
    let l3 = ETH_HLEN;
    let (proto, ecn) = match u16::from_be_bytes([inner[12], inner[13]]) {
        ETH_P_IP if inner.len() >= l3 + 20 => (4, inner[l3 + 1] & 3),
        ETH_P_IPV6 if inner.len() >= l3 + 2 => (6, (inner[l3 + 1] >> 4) & 3),
        _ => return Some(inner),
    };
    // Outer CE: CE inside, or drop for Not-ECT; outer ECT(1) on ECT(0):
    // ECT(1); otherwise unchanged.
    let new = match (outer, ecn) {
        (3, 0) => return None,
        (3, _) => 3,
        (1, 2) => 1,
        _ => ecn,
    };
    if proto == 4 {
        inner[l3 + 1] = (inner[l3 + 1] & !3) | new;
        if new != ecn {
            // Updated incrementally (RFC 1624), as the kernel does: a
            // wrong checksum stays as wrong as it was.
            let old_w = u16::from_be_bytes([inner[l3], inner[l3 + 1] & !3 | ecn]);
            let new_w = u16::from_be_bytes([inner[l3], inner[l3 + 1]]);
            let check = u16::from_be_bytes([inner[l3 + 10], inner[l3 + 11]]);
            let mut sum = u32::from(!check) + u32::from(!old_w) + u32::from(new_w);
            while sum >> 16 != 0 {
                sum = (sum & 0xffff) + (sum >> 16);
            }
            inner[l3 + 10..l3 + 12].copy_from_slice(&(!(sum as u16)).to_be_bytes());
        }
    } else {
        inner[l3 + 1] = (inner[l3 + 1] & 0xcf) | (new << 4);
    }
    Some(inner)
}

/// Checks an encapsulated frame: outer headers well-formed, in `vni`, and
/// the inner frame exactly `inner`. Returns the outer destination IP.
fn check_encap(out: &[u8], inner: &[u8], vni: u32, what: &str) -> Result<[u8; 4], Fail> {
    let k = |s: &str| format!("{what}: {s}");
    ensure!(
        out.len() == inner.len() + ENCAP_LEN,
        k("length is not input + 50"),
        "{} bytes out of {} in",
        out.len(),
        inner.len()
    );
    ensure!(
        out.len() - ETH_HLEN <= UPLINK_MTU as usize,
        k("encapsulated packet exceeds the uplink MTU"),
        "outer IPv4 packet of {} bytes, uplink MTU {UPLINK_MTU}",
        out.len() - ETH_HLEN
    );
    ensure!(
        out[OFF_INNER..] == *inner,
        k("inner frame differs from the input"),
        "inner frame after the 50 outer bytes is not the input byte for byte"
    );
    ensure!(
        out[12..14] == ETH_P_IP.to_be_bytes(),
        k("outer ethertype not IPv4"),
        "outer ethertype {:02x}{:02x}",
        out[12],
        out[13]
    );
    let ip: [u8; 20] = out[OFF_IP..OFF_UDP].try_into().unwrap();
    ensure!(ip[0] == 0x45, k("outer IPv4 version/IHL"), "{:#x}", ip[0]);
    let tot = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
    ensure!(
        tot == inner.len() + 36,
        k("outer IPv4 total length"),
        "total length {tot} for a {}-byte inner frame",
        inner.len()
    );
    ensure!(
        ip[6..8] == [0, 0],
        k("outer IPv4 flags/fragment offset"),
        "{:02x}{:02x}",
        ip[6],
        ip[7]
    );
    ensure!(ip[9] == 17, k("outer protocol not UDP"), "{}", ip[9]);
    ensure!(
        ip[10..12] == ipv4_checksum(&ip),
        k("outer IPv4 checksum wrong"),
        "checksum {:02x}{:02x}, expected {}",
        ip[10],
        ip[11],
        hex(&ipv4_checksum(&ip))
    );
    ensure!(
        ip[12..16] == LOCAL,
        k("outer source IP not ours"),
        "{:?}",
        &ip[12..16]
    );
    let dst: [u8; 4] = ip[16..20].try_into().unwrap();
    let ttl_ok = if dst == GROUP43 {
        ip[8] == MCAST_TTL
    } else {
        ip[8] == TTL
    };
    ensure!(ttl_ok, k("outer TTL"), "TTL {} to {dst:?}", ip[8]);
    // TOS: the inner ECN bits as skb->protocol sees the frame.
    let proto = u16::from_be_bytes([inner[12], inner[13]]);
    let ds = match proto {
        ETH_P_IP if inner.len() > ETH_HLEN + 1 => inner[ETH_HLEN + 1],
        ETH_P_IPV6 if inner.len() > ETH_HLEN + 1 => {
            (inner[ETH_HLEN] << 4) | (inner[ETH_HLEN + 1] >> 4)
        }
        _ => 0,
    };
    ensure!(
        ip[1] == ecn_encap(ds),
        k("outer TOS"),
        "TOS {:#x}, inner DS {ds:#x}",
        ip[1]
    );
    let udp = &out[OFF_UDP..OFF_VXLAN];
    let sport = u16::from_be_bytes([udp[0], udp[1]]);
    ensure!(
        (PORT_LO..PORT_HI).contains(&sport),
        k("outer UDP source port out of range"),
        "{sport}"
    );
    ensure!(
        u16::from_be_bytes([udp[2], udp[3]]) == DSTPORT,
        k("outer UDP destination port"),
        "{}",
        u16::from_be_bytes([udp[2], udp[3]])
    );
    let ulen = usize::from(u16::from_be_bytes([udp[4], udp[5]]));
    ensure!(
        ulen == inner.len() + 16,
        k("outer UDP length"),
        "UDP length {ulen} for a {}-byte inner frame",
        inner.len()
    );
    ensure!(udp[6..8] == [0, 0], k("outer UDP checksum not 0"), "");
    let vx = &out[OFF_VXLAN..OFF_INNER];
    let got = u32::from_be_bytes([0, vx[4], vx[5], vx[6]]);
    ensure!(
        got == vni,
        k("VXLAN VNI is not the ingress port's VNI"),
        "VNI {got}, the ingress port is in VNI {vni}"
    );
    ensure!(
        vx[0] == 0x08 && vx[1..4] == [0, 0, 0] && vx[7] == 0,
        k("VXLAN flags/reserved"),
        "{}",
        hex(vx)
    );
    Ok(dst)
}

/// An ICMP error about `f` (message prefix `k`) is only for a frame that
/// does not fit the uplink once encapsulated.
fn ensure_too_big(f: &[u8], k: &dyn Fn(&str) -> String) -> Result<(), Fail> {
    ensure!(
        f.len() - ETH_HLEN + OVERHEAD as usize > UPLINK_MTU as usize,
        k("for a frame that fits"),
        "{} bytes",
        f.len()
    );
    Ok(())
}

/// A Packet Too Big the port program sent for IPv6 frame `f`: only for a
/// frame that does not fit, from an address that may get one, and exactly
/// the frame [`frames::icmp6_too_big`] builds (checksum included).
fn check_icmp6_too_big(f: &[u8], out: &[u8]) -> Result<(), Fail> {
    let k = |s: &str| format!("tc_port: ICMPv6 Packet Too Big {s}");
    ensure_too_big(f, &k)?;
    ensure!(
        f[12..14] == ETH_P_IPV6.to_be_bytes() && f[ETH_HLEN] >> 4 == 6,
        k("for a frame that is not IPv6"),
        ""
    );
    let src = &f[ETH_HLEN + 8..ETH_HLEN + 24];
    ensure!(
        src[0] != 0xff && src[..15].iter().any(|b| *b != 0),
        k("to an unspecified, loopback or multicast source (RFC 4443 2.4)"),
        "source {}",
        hex(src)
    );
    let (next, after) = (f[ETH_HLEN + 6], f[ETH_HLEN + 40]);
    ensure!(
        !(next == 58 && (after < 128 || after == 137)),
        k("about an ICMPv6 error or redirect (RFC 4443 2.4)"),
        "ICMPv6 type {after}"
    );
    let want = frames::icmp6_too_big(f, UPLINK_MTU - OVERHEAD);
    ensure!(
        want.as_deref() == Some(out),
        k("is not the expected message"),
        "got {}\nwant {}",
        hex(out),
        want.as_deref().map(hex).unwrap_or_default()
    );
    Ok(())
}

/// Checks the ICMP "fragmentation needed" the port program answers a
/// too-big frame with: only where RFC 1122 (3.2.2) allows an ICMP error
/// (and the kernel's tunnels send one: `iptunnel_pmtud_check_icmp`), and
/// well-formed: swapped addresses, valid checksums, the overlay MTU, the
/// offending header quoted.
fn check_icmp_frag_needed(f: &[u8], out: &[u8]) -> Result<(), Fail> {
    let k = |s: &str| format!("tc_port: ICMP frag needed {s}");
    ensure_too_big(f, &k)?;
    ensure!(
        f.len() >= ETH_HLEN + 28 && f[12..14] == ETH_P_IP.to_be_bytes() && f[ETH_HLEN] == 0x45,
        k("for a frame that is not IPv4 without options"),
        ""
    );
    let ip = &f[ETH_HLEN..];
    let frag = u16::from_be_bytes([ip[6], ip[7]]);
    ensure!(frag & 0x4000 != 0, k("for a frame without DF"), "");
    let src: [u8; 4] = ip[12..16].try_into().unwrap();
    let dst: [u8; 4] = ip[16..20].try_into().unwrap();
    ensure!(
        frag & 0x1fff == 0,
        k("about a non-initial fragment (RFC 1122 3.2.2)"),
        "fragment offset {}",
        frag & 0x1fff
    );
    ensure!(
        !(src[0] == 0 || src[0] == 127 || src[0] >= 224),
        k("to a source that is not a unicast host (RFC 1122 3.2.2)"),
        "source {src:?}"
    );
    ensure!(
        !(dst == [255; 4] || (224..240).contains(&dst[0])),
        k("about a broadcast or multicast datagram (RFC 1122 3.2.2)"),
        "destination {dst:?}"
    );
    ensure!(
        !(ip[9] == 1 && [3, 4, 5, 11, 12].contains(&ip[20])),
        k("about an ICMP error (RFC 1122 3.2.2)"),
        "ICMP type {}",
        ip[20]
    );
    ensure!(
        out.len() == ICMP_FRAG_LEN,
        k("length"),
        "{} bytes, expected {ICMP_FRAG_LEN}",
        out.len()
    );
    ensure!(
        out[0..6] == f[6..12] && out[6..12] == f[0..6] && out[12..14] == ETH_P_IP.to_be_bytes(),
        k("Ethernet header"),
        ""
    );
    let oip: [u8; 20] = out[ETH_HLEN..ETH_HLEN + 20].try_into().unwrap();
    ensure!(
        oip[0] == 0x45 && u16::from_be_bytes([oip[2], oip[3]]) == 56 && oip[9] == 1,
        k("IPv4 header"),
        ""
    );
    ensure!(oip[10..12] == ipv4_checksum(&oip), k("IPv4 checksum"), "");
    ensure!(oip[8] == TTL, k("TTL"), "{}", oip[8]);
    ensure!(
        oip[12..16] == dst && oip[16..20] == src,
        k("addresses not swapped"),
        ""
    );
    let icmp: [u8; 36] = out[ETH_HLEN + 20..].try_into().unwrap();
    ensure!(
        icmp[0] == 3 && icmp[1] == 4 && icmp[4..6] == [0, 0],
        k("type/code"),
        "{}/{}",
        icmp[0],
        icmp[1]
    );
    let mtu = u16::from_be_bytes([icmp[6], icmp[7]]);
    ensure!(
        u32::from(mtu) == UPLINK_MTU - OVERHEAD,
        k("MTU is not the overlay MTU"),
        "{mtu}"
    );
    ensure!(inet_checksum(&icmp) == [0, 0], k("ICMP checksum"), "");
    ensure!(
        icmp[8..] == f[ETH_HLEN..ETH_HLEN + 28],
        k("does not quote the offending header"),
        ""
    );
    Ok(())
}

// ---------------------------------------------------------------------------
// Per-program checks
// ---------------------------------------------------------------------------

#[derive(Default)]
struct Tally {
    runs: u64,
    einval: u64,
    /// XDP: PASS and DROP actions. TC port: UNSPEC, REDIRECT, SHOT.
    actions: BTreeMap<u32, u64>,
    port_copies: u64,
    uplink_copies: u64,
    group_copies: u64,
}

impl Tally {
    /// Counts run `r` of program `name`: `None` when the kernel refused
    /// the frame, as it must when `refused` (with `quiet`: and nothing
    /// moved or left a device); else its action and output.
    fn run<'a>(
        &mut self,
        r: &'a Run,
        name: &str,
        refused: bool,
        quiet: bool,
    ) -> Result<Option<(&'a u32, &'a Vec<u8>)>, Fail> {
        if refused {
            ensure!(
                r.result.is_err(),
                format!("{name}: test_run accepted a frame it should refuse"),
                "expected EINVAL"
            );
            ensure!(
                !quiet || (r.delta.iter().all(|d| *d == 0) && r.copies.is_empty()),
                format!("{name}: counters moved or frames sent without a run"),
                ""
            );
            self.einval += 1;
            return Ok(None);
        }
        let (action, out) = match &r.result {
            Ok((a, o)) => (a, o),
            Err(e) => return Err((format!("{name}: BPF_PROG_TEST_RUN failed"), e.clone())),
        };
        self.runs += 1;
        *self.actions.entry(*action).or_default() += 1;
        Ok(Some((action, out)))
    }
}

impl Lab {
    fn set_cfg_flags(&mut self, flags: u32) {
        self.dp.set_cfg_flags(flags).unwrap();
    }

    /// The oracle: what the datapath must do with an uplink frame and
    /// under which counter, written from the kernel's order of checks (IP
    /// layer, UDP, vxlan, bridge, learning, ECN), independently of the
    /// datapath's code. Called after the run: the only FDB entry a frame can
    /// change is its own source's, which the datapath writes before it
    /// looks the destination up, so the table as the run left it answers
    /// the destination lookup.
    fn predict_rx(&self, f: &[u8]) -> Verdict {
        use Verdict::*;
        let be16 = |i: usize| u16::from_be_bytes([f[i], f[i + 1]]);
        if f.len() < OFF_UDP || be16(12) != ETH_P_IP || f[OFF_IP + 9] != 17 {
            return Pass;
        }
        let ip4 = |i: usize| -> [u8; 4] { f[i..i + 4].try_into().unwrap() };
        let (src, dst) = (ip4(OFF_IP + 12), ip4(OFF_IP + 16));
        if dst != LOCAL && dst != GROUP43 {
            return Pass;
        }
        if be16(OFF_IP + 6) & 0x3fff != 0 {
            return Pass;
        }
        let (ver, ihl) = (f[OFF_IP] >> 4, usize::from(f[OFF_IP] & 0x0f));
        if ver != 4 || ihl < 5 {
            return Drop(DropIpMalformed);
        }
        let other_host = f[0] & 1 == 0 && f[..6] != UPLINK_MAC;
        let udp = OFF_IP + ihl * 4;
        if udp + 8 > f.len() || be16(udp + 2) != DSTPORT {
            return Pass;
        }
        if other_host {
            return Drop(DropOtherHost);
        }
        if ihl > 5 {
            return Drop(DropIpOptions);
        }
        let hdr: [u8; 20] = f[OFF_IP..OFF_UDP].try_into().unwrap();
        if hdr[10..12] != ipv4_checksum(&hdr) {
            return Drop(DropIpChecksum);
        }
        let tot = usize::from(be16(OFF_IP + 2));
        if tot > f.len() - ETH_HLEN || tot < 28 {
            return Drop(DropIpLength);
        }
        if f[OFF_IP + 8] == 0 {
            return Drop(DropIpTtl);
        }
        if src == LOCAL || matches!(src[0], 0 | 127 | 224..=239) || src == [255; 4] {
            return Drop(DropBadOuterSrc);
        }
        if usize::from(be16(OFF_UDP + 4)) != tot - 20 {
            return Drop(DropUdpLength);
        }
        if be16(OFF_UDP + 6) != 0 && !udp_checksum_ok(f, tot) {
            return Drop(DropUdpCsum);
        }
        let payload = tot - 28;
        if payload < 8 {
            return Drop(DropVxlanTruncated);
        }
        if payload < 8 + 14 + 20 {
            return Drop(DropInnerTruncated);
        }
        if f[OFF_VXLAN] & 0x08 == 0 {
            return Drop(DropVxlanFlags);
        }
        let vni = u32::from_be_bytes([0, f[OFF_VXLAN + 4], f[OFF_VXLAN + 5], f[OFF_VXLAN + 6]]);
        let Some(v) = self.vni_cfg(vni) else {
            return Drop(DropUnknownVni);
        };
        if !v.sender_allowed(src) {
            return Drop(DropSpoofed);
        }
        let mac = |i: usize| -> [u8; 6] { f[i..i + 6].try_into().unwrap() };
        let (idst, isrc) = (mac(OFF_INNER), mac(OFF_INNER + 6));
        if isrc[0] & 1 != 0 || isrc == [0; 6] {
            return Drop(DropBadSrcMac);
        }
        let pinned = self
            .statics
            .iter()
            .find(|(k, _)| *k == FdbKey::new(vni, isrc))
            .map(|(_, e)| *e);
        if pinned.is_some_and(|e| (e.remote, e.ifindex) != (vtep_v4(src), 0)) {
            return Drop(DropStaticConflict);
        }
        if expected_inner(f, ETH_HLEN + tot).is_none() {
            return Drop(DropEcn);
        }
        if idst[0] & 1 != 0 {
            return Decap;
        }
        match self.fdb_get(vni, idst) {
            Some(e) if e.ifindex == 0 => Drop(DropRxHairpin),
            _ => Decap,
        }
    }

    /// The outcome counter of an uplink run, checked against the oracle.
    fn check_verdict(&self, r: &Run, outcome: Counter, prefix: &str) -> Result<(), Fail> {
        let want = self.predict_rx(&r.input);
        let got = match outcome {
            RxPass => Verdict::Pass,
            RxDecap => Verdict::Decap,
            // XDP hands a checksum it cannot confirm to TC, which drops it
            // unless the kernel vouches for it (never in a test run).
            RxCsumDeferred => Verdict::Drop(DropUdpCsum),
            c => Verdict::Drop(c),
        };
        ensure!(
            got == want,
            format!("{prefix}: oracle: expected {want:?}, got {got:?}"),
            "the oracle's verdict and drop reason differ from the datapath's"
        );
        Ok(())
    }

    /// The invariants of `vxlan_tc_uplink` decapsulating (no XDP) for one
    /// run: exactly the oracle's verdict and counter; a passed frame
    /// untouched; a decapsulated one redirected, exactly the inner frame
    /// (padding gone, ECN as RFC 6040 says).
    fn check_tc_decap(&self, r: &Run, t: &mut Tally) -> Result<(), Fail> {
        let f = &r.input;
        let Some((action, out)) = t.run(r, "tc_decap", skb_refused(f), false)? else {
            return Ok(());
        };
        let mut outcome = None;
        for (i, d) in r.delta.iter().enumerate() {
            let c = Counter::ALL[i];
            if *d == 0 || SIDE.contains(&c) || matches!(c, RxDeliver | RxFloodCopy) {
                continue;
            }
            let is_outcome = c == RxPass || c == RxDecap || xdp_drop(i) || c == DropNoLocalPort;
            ensure!(
                is_outcome,
                format!("tc_decap: counter {} moved", c.name()),
                "not an outcome or side counter of decapsulation"
            );
            ensure!(
                outcome.is_none() && *d == 1,
                "tc_decap: not exactly one outcome counter",
                ""
            );
            outcome = Some(c);
        }
        check_side(r, "tc_decap")?;
        let Some(outcome) = outcome else {
            return Err(("tc_decap: no counted outcome".into(), String::new()));
        };
        self.check_verdict(r, outcome, "tc_decap")?;
        match outcome {
            RxPass => {
                ensure!(
                    *action == TC_ACT_UNSPEC,
                    "tc_decap: rx_pass without TC_ACT_UNSPEC",
                    ""
                );
                ensure!(out == f, "tc_decap: passed frame modified", "");
            }
            RxDecap => {
                ensure!(
                    *action == TC_ACT_REDIRECT,
                    format!(
                        "tc_decap: rx_decap with {}",
                        action_name(Prog::TcDecap, *action)
                    ),
                    ""
                );
                let tot = usize::from(u16::from_be_bytes([f[OFF_IP + 2], f[OFF_IP + 3]]));
                let want = expected_inner(f, ETH_HLEN + tot);
                ensure!(
                    want.is_some_and(|w| *out == w),
                    "tc_decap: output is not exactly the inner frame",
                    "inner frame (with RFC 6040 ECN) differs"
                );
            }
            c => ensure!(
                *action == TC_ACT_SHOT,
                format!("tc_decap: {} without TC_ACT_SHOT", c.name()),
                ""
            ),
        }
        Ok(())
    }

    /// The invariants of `vxlan_xdp` for one run.
    fn check_xdp(&self, r: &Run, t: &mut Tally) -> Result<(), Fail> {
        let f = &r.input;
        ensure!(
            r.copies.is_empty(),
            "xdp: a frame left a device",
            "XDP test runs send nothing"
        );
        let Some((action, out)) = t.run(r, "xdp", f.len() < ETH_HLEN, true)? else {
            return Ok(());
        };
        ensure!(
            *action == XDP_PASS || *action == XDP_DROP,
            format!("xdp: action {}", action_name(Prog::Xdp, *action)),
            "only XDP_PASS and XDP_DROP are allowed"
        );
        // Exactly one outcome counter, by one.
        let mut outcome = None;
        for (i, d) in r.delta.iter().enumerate() {
            if *d == 0 {
                continue;
            }
            let c = Counter::ALL[i];
            if SIDE.contains(&c) {
                continue;
            }
            let is_outcome = c == RxPass || c == RxDecap || c == RxCsumDeferred || xdp_drop(i);
            ensure!(
                is_outcome,
                format!("xdp: counter {} moved", c.name()),
                "{} is not an outcome or side counter of the XDP program",
                c.name()
            );
            ensure!(
                outcome.is_none() && *d == 1,
                "xdp: not exactly one outcome counter",
                "more than one outcome counted"
            );
            outcome = Some(c);
        }
        check_side(r, "xdp")?;
        let Some(outcome) = outcome else {
            return Err((
                format!(
                    "xdp: {} without a counted outcome",
                    action_name(Prog::Xdp, *action)
                ),
                "no outcome counter (rx_pass, rx_decap, drop_*) moved".into(),
            ));
        };
        self.check_verdict(r, outcome, "xdp")?;
        let learned = r.d(Learn) + r.d(LearnRefused) != 0;
        let class = classify(f);
        match outcome {
            RxPass => {
                ensure!(*action == XDP_PASS, "xdp: rx_pass with XDP_DROP", "");
                ensure!(
                    out == f,
                    "xdp: passed frame modified",
                    "rx_pass: the output must equal the input"
                );
                ensure!(
                    !learned,
                    "xdp: learned from a passed frame",
                    "rx_pass and learning"
                );
                ensure!(
                    class != Uplink::OurPort,
                    "xdp: VXLAN for our port passed to the kernel",
                    "rx_pass of a frame to our address and UDP port (v4, IHL 5, no fragment)"
                );
            }
            RxCsumDeferred => {
                const ML: usize = size_of::<XdpMeta>();
                ensure!(
                    *action == XDP_PASS,
                    "xdp: rx_csum_deferred with XDP_DROP",
                    ""
                );
                ensure!(
                    out.len() == ML + f.len() && out[ML..] == f[..],
                    "xdp: deferred frame modified",
                    "rx_csum_deferred: the output must be the metadata and the input"
                );
                let m = *bytemuck::from_bytes::<XdpMeta>(&out[..ML]);
                ensure!(
                    m == XdpMeta {
                        magic: META_MAGIC_TC_DECAP,
                        key: META_KEY,
                        ..XdpMeta::default()
                    },
                    "xdp: deferred frame without the TC-decap metadata",
                    "{m:?}"
                );
                ensure!(!learned, "xdp: learned from a deferred frame", "");
            }
            RxDecap => {
                ensure!(*action == XDP_PASS, "xdp: rx_decap with XDP_DROP", "");
                ensure!(
                    class == Uplink::OurPort,
                    "xdp: decapsulated a frame that is not VXLAN for our port",
                    "rx_decap of a frame classified {class:?}"
                );
                self.check_decap(f, out)?;
            }
            c => {
                ensure!(
                    *action == XDP_DROP,
                    format!("xdp: {} with XDP_PASS", c.name()),
                    "a drop counter moved but the frame passed"
                );
                if let Uplink::NotOurs(why) = class {
                    return Err((
                        format!("xdp: dropped a frame that is not ours ({})", c.name()),
                        format!(
                            "{} of a frame that is {why}: the kernel must get it",
                            c.name()
                        ),
                    ));
                }
                ensure!(
                    !(learned && (HEADER_DROPS.contains(&c) || PRE_LEARN_DROPS.contains(&c))),
                    format!("xdp: learned from a frame dropped as {}", c.name()),
                    "nothing may be learned from a frame rejected before learning"
                );
            }
        }
        Ok(())
    }

    fn check_decap(&self, f: &[u8], out: &[u8]) -> Result<(), Fail> {
        const ML: usize = size_of::<XdpMeta>();
        let end = match ip_udp_valid(f) {
            Ok(end) => end,
            Err(why) => {
                return Err((
                    format!("xdp: decapsulated a frame with {why}"),
                    "the kernel's IPv4/UDP input would refuse it".into(),
                ));
            }
        };
        ensure!(
            end >= OFF_INNER + ETH_HLEN,
            "xdp: decapsulated a frame without a full inner Ethernet header",
            "IPv4 packet ends at {end}"
        );
        ensure!(
            out.len() == ML + end - ENCAP_LEN,
            "xdp: decap output length is not 16 + IPv4 packet - 36",
            "{} bytes out of {} in, IPv4 packet ends at {end}",
            out.len(),
            f.len()
        );
        ensure!(
            expected_inner(f, end).is_some_and(|want| out[ML..] == want[..]),
            "xdp: decap output is not exactly the inner frame",
            "inner frame differs"
        );
        let m = *bytemuck::from_bytes::<XdpMeta>(&out[..ML]);
        ensure!(
            m.magic == META_MAGIC && m.key == META_KEY,
            "xdp: decap metadata magic or key",
            "{:#x} {:x?}",
            m.magic,
            m.key
        );
        let vni = u32::from_be_bytes([0, f[OFF_VXLAN + 4], f[OFF_VXLAN + 5], f[OFF_VXLAN + 6]]);
        ensure!(
            m.vni == vni,
            "xdp: decap metadata VNI is not the frame's VNI",
            "meta VNI {}, VXLAN header VNI {vni}",
            m.vni
        );
        ensure!(
            f[OFF_VXLAN] & 0x08 != 0,
            "xdp: decapsulated with the I flag clear",
            "flags {:#x}",
            f[OFF_VXLAN]
        );
        let Some(v) = self.vni_cfg(vni) else {
            return Err((
                "xdp: decapsulated an unknown VNI".into(),
                format!("VNI {vni} is not configured"),
            ));
        };
        let src_ip: [u8; 4] = f[OFF_IP + 12..OFF_IP + 16].try_into().unwrap();
        ensure!(
            v.sender_allowed(src_ip),
            "xdp: decapsulated from a sender not allowed in the VNI",
            "sender {src_ip:?} into VNI {vni}"
        );
        let dst: [u8; 6] = f[OFF_INNER..OFF_INNER + 6].try_into().unwrap();
        if m.ifindex == 0 {
            ensure!(
                m.flags == 0,
                "xdp: flood metadata with flags",
                "{:#x}",
                m.flags
            );
            if !is_multicast_mac(&dst) {
                let e = self.fdb_get(vni, dst);
                ensure!(
                    e.is_none(),
                    "xdp: flooded a destination the FDB knows",
                    "FDB ({vni}, {}) = {e:?}",
                    hex(&dst)
                );
            }
        } else {
            ensure!(
                v.ports.contains(&m.ifindex),
                "xdp: decapsulated to a port of another VNI",
                "meta ifindex {} ({}) is not a port of VNI {vni}",
                m.ifindex,
                self.name(m.ifindex)
            );
            ensure!(
                !is_multicast_mac(&dst),
                "xdp: group destination sent to one port",
                ""
            );
            let e = self.fdb_get(vni, dst);
            ensure!(
                e.is_some_and(|e| e.ifindex == m.ifindex),
                "xdp: decapsulated to a port the FDB does not name",
                "meta ifindex {}, FDB ({vni}, {}) = {e:?}",
                m.ifindex,
                hex(&dst)
            );
            let flags = self.ports[&m.ifindex].1;
            ensure!(
                m.flags == flags,
                "xdp: decap metadata flags are not the port's",
                "meta flags {:#x}, port flags {flags:#x}",
                m.flags
            );
        }
        Ok(())
    }

    /// The invariants of `vxlan_tc_port` for one run.
    fn check_tc_port(&self, r: &Run, t: &mut Tally) -> Result<(), Fail> {
        let f = &r.input;
        let Some((action, out)) = t.run(r, "tc_port", skb_refused(f), true)? else {
            return Ok(());
        };
        let an = action_name(Prog::TcPort, *action);

        let Some(&(vni, _)) = self.ports.get(&r.ifindex) else {
            ensure!(
                *action == TC_ACT_UNSPEC,
                format!("tc_port: {an} on a device that is not a port"),
                "not a port: TC_ACT_UNSPEC expected"
            );
            ensure!(out == f, "tc_port: frame of a non-port modified", "");
            ensure!(
                r.delta.iter().all(|d| *d == 0),
                "tc_port: counters moved for a non-port",
                ""
            );
            ensure!(
                r.copies.is_empty(),
                "tc_port: frames sent for a non-port",
                ""
            );
            return Ok(());
        };
        let v = self.vni_cfg(vni).unwrap();
        ensure!(
            *action == TC_ACT_SHOT || *action == TC_ACT_REDIRECT,
            format!("tc_port: action {an} on a port"),
            "only TC_ACT_SHOT and TC_ACT_REDIRECT are possible on a port"
        );
        // Which counters moved.
        let mut drops = Vec::new();
        for (i, d) in r.delta.iter().enumerate() {
            if *d == 0 {
                continue;
            }
            let c = Counter::ALL[i];
            if SIDE.contains(&c) || FLOOD_COPIES.contains(&c) || PORT_OUTCOMES.contains(&c) {
                continue;
            }
            ensure!(
                port_drop(i),
                format!("tc_port: counter {} moved", c.name()),
                "{} is not a counter of the port program",
                c.name()
            );
            drops.push(c);
        }
        check_side(r, "tc_port")?;
        let src: [u8; 6] = f[6..12].try_into().unwrap();
        if r.d(Learn) + r.d(LearnRefused) != 0 {
            ensure!(
                !is_multicast_mac(&src) && src != [0; 6],
                "tc_port: learned a group or zero source MAC",
                ""
            );
        }
        let dst: [u8; 6] = f[0..6].try_into().unwrap();
        let flood_copies: u64 = FLOOD_COPIES.iter().map(|c| r.d(*c)).sum();
        let (sw, enc, icmp) = (
            r.d(LocalSwitch),
            r.d(TxEncap),
            r.d(TxIcmpFragNeeded) + r.d(TxIcmp6TooBig),
        );
        let too_big = f.len() - ETH_HLEN + OVERHEAD as usize > UPLINK_MTU as usize;
        ensure!(
            r.d(DropTooBig) == 0 || too_big,
            "tc_port: drop_too_big for a frame that fits",
            "{} bytes + 50 fit the uplink MTU {UPLINK_MTU}",
            f.len()
        );

        // The copies really sent.
        let (mut ports_seen, mut remotes_seen) = (BTreeSet::new(), BTreeSet::new());
        let mut groups = 0;
        for (dev, b) in &r.copies {
            if *dev == self.uplink {
                let dst_ip = check_encap(b, f, vni, "tc_port: flood copy to the uplink")?;
                if Some(dst_ip) == v.group {
                    ensure!(
                        b[0..6] == multicast_mac(&dst_ip) && b[6..12] == UPLINK_MAC,
                        "tc_port: group copy MACs",
                        ""
                    );
                    groups += 1;
                } else {
                    ensure!(
                        v.remotes.contains(&dst_ip),
                        "tc_port: flood copy to a remote that is not the VNI's",
                        "copy to {dst_ip:?}, VNI {vni} floods to {:?} group {:?}",
                        v.remotes,
                        v.group
                    );
                    let n = self.neigh.get(&dst_ip);
                    ensure!(
                        n.is_some_and(|n| b[0..6] == n.dmac && b[6..12] == n.smac),
                        "tc_port: flood copy MACs are not the NEIGH entry's",
                        "to {dst_ip:?}: NEIGH {n:?}"
                    );
                }
                ensure!(
                    remotes_seen.insert(dst_ip),
                    "tc_port: two flood copies to one remote",
                    "{dst_ip:?}"
                );
            } else {
                ensure!(
                    self.ports.get(dev).is_some_and(|p| p.0 == vni),
                    "tc_port: copy sent on a device that is not a port of the VNI",
                    "copy on {} from a port of VNI {vni}",
                    self.name(*dev)
                );
                ensure!(
                    *dev != r.ifindex,
                    "tc_port: flood copy back to the ingress port",
                    ""
                );
                ensure!(
                    b == f,
                    "tc_port: local flood copy differs from the input",
                    ""
                );
                ensure!(
                    ports_seen.insert(*dev),
                    "tc_port: two flood copies to one port",
                    "{}",
                    self.name(*dev)
                );
            }
        }
        t.port_copies += ports_seen.len() as u64;
        t.uplink_copies += remotes_seen.len() as u64;
        t.group_copies += groups;
        ensure!(
            ports_seen.len() as u64 == r.d(TxLocalFloodCopy),
            "tc_port: tx_local_flood_copy differs from the copies sent",
            "{} copies sent to ports, tx_local_flood_copy +{}",
            ports_seen.len(),
            r.d(TxLocalFloodCopy)
        );
        ensure!(
            groups == r.d(TxGroupCopy) && remotes_seen.len() as u64 == groups + r.d(TxFloodCopy),
            "tc_port: tx_flood_copy/tx_group_copy differ from the copies sent",
            "{} copies sent to the uplink ({groups} to the group), tx_flood_copy +{} tx_group_copy +{}",
            remotes_seen.len(),
            r.d(TxFloodCopy),
            r.d(TxGroupCopy)
        );

        if *action == TC_ACT_REDIRECT {
            ensure!(
                sw + enc + icmp == 1
                    && flood_copies == 0
                    && drops.iter().all(|c| icmp == 1 && *c == DropTooBig)
                    && (icmp == 0 || r.d(DropTooBig) == 1),
                "tc_port: TC_ACT_REDIRECT is not exactly one switch, encap or ICMP",
                "local_switch +{sw}, tx_encap +{enc}, ICMP errors +{icmp}, drops {drops:?}, flood copies {flood_copies}"
            );
            ensure!(
                !is_multicast_mac(&dst),
                "tc_port: group destination sent to one place",
                ""
            );
            let e = self.fdb_get(vni, dst);
            if sw == 1 {
                ensure!(out == f, "tc_port: switched frame modified", "");
                ensure!(
                    e.is_some_and(|e| e.is_local()
                        && e.ifindex != r.ifindex
                        && v.ports.contains(&e.ifindex)),
                    "tc_port: switched to a place that is not another port of the VNI",
                    "FDB ({vni}, {}) = {e:?}",
                    hex(&dst)
                );
            } else if enc == 1 {
                let dst_ip = check_encap(out, f, vni, "tc_port: encapsulated frame")?;
                ensure!(
                    e.is_some_and(|e| !e.is_local() && e.remote == vtep_v4(dst_ip)),
                    "tc_port: encapsulated to a remote the FDB does not name",
                    "to {dst_ip:?}, FDB ({vni}, {}) = {e:?}",
                    hex(&dst)
                );
                if let Some(n) = self.neigh.get(&dst_ip) {
                    ensure!(
                        out[0..6] == n.dmac && out[6..12] == n.smac,
                        "tc_port: encap MACs are not the NEIGH entry's",
                        ""
                    );
                }
            } else {
                ensure!(
                    e.is_some_and(|e| !e.is_local()),
                    "tc_port: ICMP frag needed for a frame not to a remote",
                    "FDB ({vni}, {}) = {e:?}",
                    hex(&dst)
                );
                if r.d(TxIcmp6TooBig) == 1 {
                    check_icmp6_too_big(f, out)?;
                } else {
                    check_icmp_frag_needed(f, out)?;
                }
            }
            ensure!(r.copies.is_empty(), "tc_port: copies sent by a unicast", "");
        } else {
            // TC_ACT_SHOT: always with a counted reason.
            ensure!(
                sw + enc + icmp == 0,
                "tc_port: TC_ACT_SHOT after counting a switch, encap or ICMP",
                "local_switch +{sw}, tx_encap +{enc}, ICMP errors +{icmp}"
            );
            ensure!(
                r.d(DropTooBig) == 0 || remotes_seen.is_empty(),
                "tc_port: too-big flood still sent encapsulated copies",
                ""
            );
            ensure!(
                !drops.is_empty() || flood_copies > 0,
                "tc_port: TC_ACT_SHOT without a counted reason",
                "no drop_* or flood copy counter moved"
            );
            let flooded = flood_copies > 0 || r.d(DropNoFloodTarget) > 0;
            if flooded && !is_multicast_mac(&dst) {
                let e = self.fdb_get(vni, dst);
                ensure!(
                    e.is_none(),
                    "tc_port: flooded a destination the FDB knows",
                    "FDB ({vni}, {}) = {e:?}",
                    hex(&dst)
                );
            }
            if flood_copies > 0 || r.d(DropNoNeigh) > 0 && v.n_neigh_remotes(self) == 0 {
                // A flood: every other port, every remote with a NEIGH entry
                // and the group got a copy.
                let want_ports: BTreeSet<u32> = v
                    .ports
                    .iter()
                    .copied()
                    .filter(|p| *p != r.ifindex)
                    .collect();
                ensure!(
                    ports_seen == want_ports,
                    "tc_port: flood did not reach every other port of the VNI",
                    "copies to {:?}, other ports {:?}",
                    ports_seen,
                    want_ports
                );
                let mut want: BTreeSet<[u8; 4]> = v
                    .remotes
                    .iter()
                    .copied()
                    .filter(|r| self.neigh.contains_key(r))
                    .collect();
                want.extend(v.group);
                ensure!(
                    remotes_seen == want || r.d(DropEncapFailed) > 0 || r.d(DropTooBig) > 0,
                    "tc_port: flood did not reach every remote/group of the VNI",
                    "copies to {remotes_seen:?}, expected {want:?}"
                );
            }
            if out.len() == f.len() {
                ensure!(out == f, "tc_port: dropped frame modified in place", "");
            } else {
                let dst_ip = check_encap(out, f, vni, "tc_port: dropped flood original")?;
                ensure!(
                    dst_ip == [0; 4] || v.remotes.contains(&dst_ip) || Some(dst_ip) == v.group,
                    "tc_port: flood original addressed outside the VNI",
                    "{dst_ip:?}"
                );
            }
        }
        Ok(())
    }

    /// `vxlan_tc_uplink` without XDP metadata: always continue untouched.
    fn check_tc_uplink(&self, r: &Run, t: &mut Tally) -> Result<(), Fail> {
        ensure!(
            r.delta.iter().all(|d| *d == 0) && r.copies.is_empty(),
            "tc_uplink: counters moved or frames sent without metadata",
            ""
        );
        let Some((action, out)) = t.run(r, "tc_uplink", skb_refused(&r.input), false)? else {
            return Ok(());
        };
        ensure!(
            *action == TC_ACT_UNSPEC,
            format!(
                "tc_uplink: {} without metadata",
                action_name(Prog::TcUplink, *action)
            ),
            "frames without XDP metadata are not ours: TC_ACT_UNSPEC"
        );
        ensure!(out == &r.input, "tc_uplink: frame modified", "");
        Ok(())
    }
}

impl VniCfg {
    fn n_neigh_remotes(&self, lab: &Lab) -> usize {
        self.remotes
            .iter()
            .filter(|r| lab.neigh.contains_key(*r))
            .count()
            + usize::from(self.group.is_some())
    }
}

// ---------------------------------------------------------------------------
// Frame sources per program
// ---------------------------------------------------------------------------

/// An uplink frame: random bytes, or a VXLAN frame around a valid inner
/// frame (configured or unknown VNI), mutated.
fn gen_xdp(rng: &mut Rng) -> Vec<u8> {
    if rng.chance(20) {
        return random_frame(rng);
    }
    let vni = match rng.below(20) {
        0..=6 => 42,
        7..=10 => 43,
        11..=12 => 44,
        13 => 45,
        14 => 0,
        15 => 0x00ff_ffff,
        16 => 46,
        _ => rng.below(1 << 24) as u32,
    };
    let own: Vec<[u8; 6]> = match vni {
        42 => vec![M42A, M42B, M42C, M42R1, M42R2, M42NN, MSH],
        43 => vec![M43A, M43B, M43R3, MSH],
        44 => vec![M44A],
        _ => vec![],
    };
    let dst = pick_dst(rng, &own);
    let src = pick_src(rng);
    let inner = inner_frame(rng, dst, src);
    let o = Outer {
        src_mac: if rng.chance(80) {
            [0x02, 0xaa, 0, 0, 0, 0x54]
        } else {
            rng.mac()
        },
        dst_mac: UPLINK_MAC,
        src_ip: match rng.below(10) {
            0..=2 => R1,
            3 => R2,
            4 | 5 => R3,
            6 => RNN,
            7 => [10, 9, 9, rng.u8()],
            _ => rng.bytes(4).try_into().unwrap(),
        },
        dst_ip: match rng.below(20) {
            0..=15 => LOCAL,
            16 => GROUP43,
            17 => GROUP_OTHER,
            18 => [255; 4],
            _ => rng.bytes(4).try_into().unwrap(),
        },
        src_port: rng.u16(),
        dst_port: if rng.chance(95) { DSTPORT } else { rng.u16() },
        vni,
        ttl: rng.u8(),
        tos: rng.u8(),
        ip_id: rng.u16(),
    };
    let mut f = build_outer(&o, inner.len() as u16).to_vec();
    f.extend(inner);
    if rng.chance(75) {
        for _ in 0..rng.range(1, 3) {
            mutate_vxlan(rng, &mut f);
        }
        // Make the mutated headers consistent again, often, so that the
        // checks after the checksum and length checks see them too.
        match rng.below(10) {
            0..=3 => fix_lengths(&mut f),
            4..=6 => fix_ip_checksum(&mut f),
            _ => {}
        }
    }
    if rng.chance(10) {
        // Ethernet padding after the IPv4 packet.
        let n = rng.range(1, 30);
        let pad = if rng.chance(50) {
            vec![0; n]
        } else {
            rng.bytes(n)
        };
        f.extend(pad);
    }
    f
}

fn mutate_vxlan(rng: &mut Rng, f: &mut Vec<u8>) {
    let ip = OFF_IP;
    match rng.below(23) {
        0 => set(
            f,
            12,
            &rng.pick(&[[0x86, 0xdd], [0x81, 0x00], [0x08, 0x06]]),
        ),
        1 => {
            let r = rng.u8();
            let b = rng.pick(&[0x46, 0x44, 0x55, 0x4f, 0x35, 0x65, 0x40, r]);
            set(f, ip, &[b]);
        }
        2 => {
            let b = rng.u16().to_be_bytes();
            set(f, ip + 2, &b);
        }
        3 => set(f, ip + 8, &[rng.pick(&[0, 1, 255])]),
        4 => {
            let r = rng.u16();
            let fr: u16 = rng.pick(&[0x2000, 0x4000, 0x0001, 0x1fff, 0x6000, 0x8000, r]);
            set(f, ip + 6, &fr.to_be_bytes());
        }
        5 => {
            let r = rng.u8();
            set(f, ip + 9, &[rng.pick(&[6, 1, 0, 136, r])]);
        }
        6 => {
            let d: [u8; 4] = match rng.below(5) {
                0 => LOCAL,
                1 => GROUP43,
                2 => GROUP_OTHER,
                3 => [LOCAL[0], LOCAL[1], LOCAL[2], rng.u8()],
                _ => rng.bytes(4).try_into().unwrap(),
            };
            set(f, ip + 16, &d);
        }
        7 => {
            let s = rng.bytes(4);
            set(f, ip + 12, &s);
        }
        8 => {
            let r = rng.u16();
            let p: u16 = rng.pick(&[4790, 4789, 8472, 0, r]);
            set(f, OFF_UDP + 2, &p.to_be_bytes());
        }
        9 => {
            let r = rng.u16();
            let l: u16 = rng.pick(&[0, 8, 16, 0xffff, r]);
            set(f, OFF_UDP + 4, &l.to_be_bytes());
        }
        10 => {
            let c = rng.u16().to_be_bytes();
            set(f, OFF_UDP + 6, &c);
        }
        11 => {
            let r = rng.u8();
            let b = rng.pick(&[0, 0x08, 0x0c, 0x88, 0xff, 0xf7, r]);
            set(f, OFF_VXLAN, &[b]);
        }
        12 => {
            let r = rng.u64() as u32;
            let v: u32 = rng.pick(&[42, 43, 44, 45, 0, 0x00ff_ffff, r]);
            set(f, OFF_VXLAN + 4, &v.to_be_bytes()[1..]);
        }
        13 => {
            let b = rng.bytes(3);
            set(f, OFF_VXLAN + 1, &b);
            let b = rng.u8();
            set(f, OFF_VXLAN + 7, &[b]);
        }
        14 => {
            let e = rng.u16().to_be_bytes();
            set(f, OFF_INNER + 12, &e);
        }
        15 => {
            let m = pick_dst(rng, &[]);
            set(f, OFF_INNER, &m);
        }
        16 => {
            // Cut inside the headers.
            let n = rng.range(0, (OFF_INNER + ETH_HLEN + 2).min(f.len()));
            f.truncate(n);
        }
        17 => {
            let c = rng.u16().to_be_bytes();
            set(f, ip + 10, &c);
        }
        18 => {
            let tos = rng.u8();
            set(f, ip + 1, &[tos]);
        }
        19 => {
            // IPv4 options (NOPs, then EOL) after the 20-byte header.
            if f.len() >= OFF_UDP {
                let n = rng.pick(&[4, 8, 40]);
                let mut opts = vec![1u8; n];
                opts[n - 1] = 0;
                f.splice(OFF_UDP..OFF_UDP, opts);
                f[ip] = 0x40 | (5 + n / 4) as u8;
                fix_lengths(f);
            }
        }
        _ => mutate_generic(rng, f),
    }
}

/// A frame on a port (or another device): a random frame, or an inner
/// frame to a MAC of the port's VNI, a known MAC elsewhere, a group or an
/// unknown MAC, possibly mutated.
fn gen_tc(rng: &mut Rng, lab: &Lab) -> (u32, Vec<u8>) {
    let ports: Vec<u32> = lab.vnis.iter().flat_map(|v| v.ports.clone()).collect();
    let ifindex = match rng.below(40) {
        0 => lab.not_a_port,
        1 => 1, // lo
        2 => lab.uplink,
        3..=16 => rng.pick(&lab.vni_cfg(42).unwrap().ports),
        17..=27 => rng.pick(&lab.vni_cfg(43).unwrap().ports),
        _ => rng.pick(&ports),
    };
    if rng.chance(15) {
        return (ifindex, random_frame(rng));
    }
    let own: Vec<[u8; 6]> = lab
        .ports
        .get(&ifindex)
        .and_then(|p| lab.vni_cfg(p.0))
        .map(|v| v.statics.clone())
        .unwrap_or_default();
    let dst = pick_dst(rng, &own);
    let src = pick_src(rng);
    if rng.chance(8) {
        return (ifindex, big_frame(rng, dst, src));
    }
    let mut f = inner_frame(rng, dst, src);
    if rng.chance(30) {
        for _ in 0..rng.range(1, 2) {
            mutate_generic(rng, &mut f);
        }
    }
    (ifindex, f)
}

/// A frame around the uplink MTU once encapsulated (1464 bytes fit):
/// mostly IPv4 with DF, some of it what no ICMP error may answer
/// (fragments, ICMP errors, non-unicast addresses).
fn big_frame(rng: &mut Rng, dst: [u8; 6], src: [u8; 6]) -> Vec<u8> {
    let len = rng.range(1440, 1540);
    if rng.chance(25) {
        let mut f = inner_frame(rng, dst, src);
        let n = len.saturating_sub(f.len());
        f.extend(rng.bytes(n));
        return f;
    }
    let mut f = Vec::with_capacity(len);
    f.extend_from_slice(&dst);
    f.extend_from_slice(&src);
    f.extend_from_slice(&ETH_P_IP.to_be_bytes());
    let proto = rng.pick(&[6, 17, 1, 1]);
    let mut ip = ipv4_header(rng, len - 34, proto);
    let frag: u16 = match rng.below(10) {
        0..=5 => 0x4000,
        6 => 0x4000 | (rng.u16() & 0x1fff),
        7 => 0x6000,
        8 => 0,
        _ => rng.u16(),
    };
    ip[6..8].copy_from_slice(&frag.to_be_bytes());
    let special = |rng: &mut Rng| -> [u8; 4] {
        match rng.below(6) {
            0 => [0, 0, 0, 0],
            1 => [255; 4],
            2 => [224, 0, 0, rng.u8()],
            3 => [127, 0, 0, 1],
            4 => [240, 0, 0, 1],
            _ => [0, 1, 2, 3],
        }
    };
    if rng.chance(20) {
        let a = special(rng);
        ip[12..16].copy_from_slice(&a);
    }
    if rng.chance(15) {
        let a = special(rng);
        ip[16..20].copy_from_slice(&a);
    }
    let c = ipv4_checksum(&ip.clone().try_into().unwrap());
    ip[10..12].copy_from_slice(&c);
    f.extend(ip);
    let mut payload = rng.bytes(len - 34);
    if proto == 1 {
        payload[0] = rng.pick(&[0, 8, 3, 11, 5, 12, 4, 13]);
    }
    f.extend(payload);
    f
}

fn gen_uplink_tc(rng: &mut Rng, lab: &Lab) -> (u32, Vec<u8>) {
    let ifindex = match rng.below(4) {
        0 => 1,
        1 => lab.not_a_port,
        2 => lab.vnis[0].ports[0],
        _ => lab.uplink,
    };
    let f = match rng.below(3) {
        0 => random_frame(rng),
        1 => gen_xdp(rng),
        _ => gen_tc(rng, lab).1,
    };
    (ifindex, f)
}

// ---------------------------------------------------------------------------
// The driver
// ---------------------------------------------------------------------------

struct FuzzEnv {
    seed: u64,
    frames: u64,
}

fn parse_u64(s: &str) -> Option<u64> {
    let s = s.trim().replace('_', "");
    match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(h) => u64::from_str_radix(h, 16).ok(),
        None => s.parse().ok(),
    }
}

impl FuzzEnv {
    fn get() -> Self {
        let var = |name: &str| {
            std::env::var(name)
                .ok()
                .map(|s| parse_u64(&s).unwrap_or_else(|| panic!("{name}={s:?} is not a number")))
        };
        Self {
            seed: var("VXLAN_FUZZ_SEED").unwrap_or(DEFAULT_SEED),
            frames: var("VXLAN_FUZZ_FRAMES").unwrap_or(DEFAULT_FRAMES),
        }
    }
}

/// Runs `frames` frames through `which`, checking each, then the totals.
fn fuzz(which: Prog, frames_scale: u64) {
    let env = FuzzEnv::get();
    let frames = (env.frames / frames_scale).max(1);
    let test = match which {
        Prog::Xdp => "fuzz_xdp_uplink",
        Prog::TcPort => "fuzz_tc_port",
        Prog::TcUplink => "fuzz_tc_uplink",
        Prog::TcDecap => "fuzz_tc_decap",
    };
    // One stream per program, derived from the seed.
    let mut rng = Rng::new(env.seed ^ (which as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15));
    eprintln!(
        "{test}: VXLAN_FUZZ_SEED={:#x} VXLAN_FUZZ_FRAMES={} ({frames} frames here)",
        env.seed, env.frames
    );
    let mut lab = Lab::new();
    if which == Prog::TcDecap {
        lab.set_cfg_flags(CFG_F_LEARNING | CFG_F_TC_DECAP);
    }
    let mut report = Report::default();
    let mut t = Tally::default();
    let start = Instant::now();
    for iter in 0..frames {
        let (ifindex, frame) = match which {
            Prog::Xdp => (0, gen_xdp(&mut rng)),
            Prog::TcPort => gen_tc(&mut rng, &lab),
            Prog::TcUplink => gen_uplink_tc(&mut rng, &lab),
            Prog::TcDecap => (lab.uplink, gen_xdp(&mut rng)),
        };
        let run = lab.run(which, &frame, ifindex);
        let res = match which {
            Prog::Xdp => lab.check_xdp(&run, &mut t),
            Prog::TcPort => lab.check_tc_port(&run, &mut t),
            Prog::TcUplink => lab.check_tc_uplink(&run, &mut t),
            Prog::TcDecap => lab.check_tc_decap(&run, &mut t),
        };
        if let Err(fail) = res {
            report.record(&lab, iter, env.seed, run, fail);
        }
    }
    let elapsed = start.elapsed();

    // Totals.
    let totals = lab.read_counters();
    let tot = |c: Counter| totals[c as usize];
    let mut summary = String::new();
    writeln!(
        summary,
        "{test}: {frames} frames in {:.1} s ({:.0}/s): {} runs, {} too short for test_run (EINVAL)",
        elapsed.as_secs_f64(),
        frames as f64 / elapsed.as_secs_f64(),
        t.runs,
        t.einval
    )
    .unwrap();
    let acts: Vec<String> = t
        .actions
        .iter()
        .map(|(a, n)| format!("{} {n}", action_name(which, *a)))
        .collect();
    writeln!(summary, "  actions: {}", acts.join(", ")).unwrap();
    let nz: Vec<String> = totals
        .iter()
        .enumerate()
        .filter(|(_, v)| **v != 0)
        .map(|(i, v)| format!("{} {v}", Counter::ALL[i].name()))
        .collect();
    writeln!(summary, "  counters: {}", nz.join(", ")).unwrap();
    if which == Prog::TcPort {
        writeln!(
            summary,
            "  copies seen: {} to ports, {} to the uplink ({} to the group)",
            t.port_copies, t.uplink_copies, t.group_copies
        )
        .unwrap();
    }
    eprint!("{summary}");

    // The counters add up.
    let mut end_fails: Vec<String> = Vec::new();
    let mut check = |ok: bool, what: String| {
        if !ok {
            end_fails.push(what);
        }
    };
    let sum = |pred: &dyn Fn(usize) -> bool| -> u64 {
        (0..totals.len())
            .filter(|i| pred(*i))
            .map(|i| totals[i])
            .sum()
    };
    let act = |a: u32| t.actions.get(&a).copied().unwrap_or(0);
    // Decapsulation: every run passed, decapsulated or dropped.
    // rx_csum_deferred: XDP's fourth outcome (0 in TC).
    let decap_sum = |drops: u64| {
        let (pass, decap, deferred) = (tot(RxPass), tot(RxDecap), tot(RxCsumDeferred));
        let what = format!(
            "rx_pass {pass} + rx_decap {decap} + rx_csum_deferred {deferred} + drops {drops} != runs {}",
            t.runs
        );
        (pass + decap + deferred + drops == t.runs, what)
    };
    match which {
        Prog::Xdp => {
            let drops = sum(&|i| xdp_drop(i));
            let (ok, what) = decap_sum(drops);
            check(ok, what);
            check(
                tot(RxPass) + tot(RxDecap) + tot(RxCsumDeferred) == act(XDP_PASS),
                format!(
                    "rx_pass + rx_decap + rx_csum_deferred != XDP_PASS {}",
                    act(XDP_PASS)
                ),
            );
            check(
                drops == act(XDP_DROP),
                format!("drops {drops} != XDP_DROP {}", act(XDP_DROP)),
            );
            let seen = [RxPass, RxDecap, RxCsumDeferred].iter().chain(HEADER_DROPS);
            for &c in seen.chain(&[DropRxHairpin, Learn]) {
                check(tot(c) > 0, format!("coverage: {} never counted", c.name()));
            }
        }
        Prog::TcPort => {
            check(
                tot(LocalSwitch) + tot(TxEncap) + tot(TxIcmpFragNeeded) + tot(TxIcmp6TooBig)
                    == act(TC_ACT_REDIRECT),
                format!(
                    "local_switch {} + tx_encap {} + tx_icmp_frag_needed {} + tx_icmp6_too_big {} != TC_ACT_REDIRECT {}",
                    tot(LocalSwitch),
                    tot(TxEncap),
                    tot(TxIcmpFragNeeded),
                    tot(TxIcmp6TooBig),
                    act(TC_ACT_REDIRECT)
                ),
            );
            check(
                tot(TxLocalFloodCopy) == t.port_copies,
                format!(
                    "tx_local_flood_copy {} != copies seen on ports {}",
                    tot(TxLocalFloodCopy),
                    t.port_copies
                ),
            );
            check(
                tot(TxFloodCopy) + tot(TxGroupCopy) == t.uplink_copies,
                format!(
                    "tx_flood_copy {} + tx_group_copy {} != copies seen on the uplink {}",
                    tot(TxFloodCopy),
                    tot(TxGroupCopy),
                    t.uplink_copies
                ),
            );
            check(
                act(TC_ACT_UNSPEC) + act(TC_ACT_REDIRECT) + act(TC_ACT_SHOT) == t.runs,
                "actions other than UNSPEC/REDIRECT/SHOT".into(),
            );
            for c in [
                LocalSwitch,
                TxEncap,
                TxLocalFloodCopy,
                TxFloodCopy,
                TxGroupCopy,
                DropTxHairpin,
                DropNoNeigh,
                DropTooBig,
                TxIcmpFragNeeded,
                TxIcmp6TooBig,
                DropNoFloodTarget,
                Learn,
            ] {
                check(tot(c) > 0, format!("coverage: {} never counted", c.name()));
            }
        }
        Prog::TcDecap => {
            let drops = sum(&|i| xdp_drop(i) || Counter::ALL[i] == DropNoLocalPort);
            let (ok, what) = decap_sum(drops);
            check(ok, what);
            check(
                tot(RxDecap) == act(TC_ACT_REDIRECT) && tot(RxPass) == act(TC_ACT_UNSPEC),
                "rx_decap != TC_ACT_REDIRECT or rx_pass != TC_ACT_UNSPEC".into(),
            );
            for c in [
                RxPass,
                RxDecap,
                DropUdpCsum,
                DropBadOuterSrc,
                DropOtherHost,
                DropBadSrcMac,
                DropStaticConflict,
                DropEcn,
                DropSpoofed,
                DropRxHairpin,
                RxEcnMarked,
            ] {
                check(tot(c) > 0, format!("coverage: {} never counted", c.name()));
            }
        }
        Prog::TcUplink => {
            check(
                totals.iter().all(|v| *v == 0),
                "counters moved without metadata".into(),
            );
            check(
                act(TC_ACT_UNSPEC) == t.runs,
                "actions other than UNSPEC".into(),
            );
        }
    }
    // The FDB: static entries intact, learned ones in configured VNIs, on
    // ports of that VNI, and as many as LEARNED says.
    let fdb = vxlan_user::batch::read_all(&lab.dp.maps.fdb).expect("reading FDB");
    for (k, e) in &lab.statics {
        let now = fdb.iter().find(|(k2, _)| k2 == k).map(|(_, e)| *e);
        check(
            now == Some(*e),
            format!("static FDB entry {k:?} changed: {now:?}"),
        );
    }
    let mut n_learned = 0u64;
    for (k, e) in &fdb {
        if e.is_static() {
            continue;
        }
        n_learned += 1;
        let v = lab.vni_cfg(k.vni);
        check(
            v.is_some(),
            format!("learned an entry in unknown VNI {}: {k:?} {e:?}", k.vni),
        );
        if e.is_local() {
            check(
                v.is_some_and(|v| v.ports.contains(&e.ifindex)),
                format!("learned entry on a port outside its VNI: {k:?} {e:?}"),
            );
        } else {
            check(
                v.is_some_and(|v| vtep_as_v4(&e.remote).is_some_and(|r| v.sender_allowed(r))),
                format!("learned entry behind a VTEP not allowed in its VNI: {k:?} {e:?}"),
            );
        }
        check(
            !is_multicast_mac(&k.mac) && k.mac != [0; 6],
            format!("learned a group or zero MAC: {k:?}"),
        );
    }
    let learned = lab.dp.maps.learned.get(&0, 0).unwrap();
    check(
        learned == n_learned && n_learned <= u64::from(MAX_LEARNED),
        format!(
            "LEARNED says {learned}, the FDB holds {n_learned} learned entries (cap {MAX_LEARNED})"
        ),
    );
    eprintln!("  FDB: {} entries, {n_learned} learned", fdb.len());
    // NEIGH: the configured entries unchanged; XDP adds the way back to
    // senders it accepted, and nothing else writes it.
    let neigh = vxlan_user::batch::read_all(&lab.dp.maps.neigh).expect("reading NEIGH");
    for (ip, n) in &lab.neigh {
        let now = neigh
            .iter()
            .find(|(a, _)| *a == vtep_v4(*ip))
            .map(|(_, n)| *n);
        check(
            now == Some(*n),
            format!("NEIGH entry {ip:?} changed: {now:?}"),
        );
    }
    for (ip6, n) in &neigh {
        let Some(ip) = vtep_as_v4(ip6) else {
            check(
                false,
                format!("NEIGH entry for an IPv6 VTEP {ip6:?}: {n:?}"),
            );
            continue;
        };
        if lab.neigh.contains_key(&ip) {
            continue;
        }
        check(
            matches!(which, Prog::Xdp | Prog::TcDecap)
                && lab.vnis.iter().any(|v| v.sender_allowed(ip)),
            format!("NEIGH entry for {ip:?} that no allowed sender explains: {n:?}"),
        );
        check(
            n.smac == UPLINK_MAC,
            format!("NEIGH entry for {ip:?} with a source MAC that is not ours: {n:?}"),
        );
    }
    eprintln!("  NEIGH: {} entries", neigh.len());

    // Shrink each failure's input where it fails the same way on its own.
    let mut msg = String::new();
    let kinds = std::mem::take(&mut report.kinds);
    for (kind, (count, detail, run)) in &kinds {
        writeln!(msg, "\n=== {kind} ({count}x)\n{detail}").unwrap();
        match shrink(&mut lab, which, run, kind) {
            Some(s) if s.len() < run.input.len() || s != run.input => writeln!(
                msg,
                "  shrunk input ({} bytes, same failure on its own): {}",
                s.len(),
                hex_compact(&s)
            )
            .unwrap(),
            Some(_) => writeln!(msg, "  reproduces on its own").unwrap(),
            None => writeln!(
                msg,
                "  does not reproduce on its own now (depends on the table state at iteration)"
            )
            .unwrap(),
        }
    }
    if !msg.is_empty() || !end_fails.is_empty() {
        panic!(
            "{test}: {} kinds of invariant failures, {} failed end checks\n{summary}{msg}\n{}",
            kinds.len(),
            end_fails.len(),
            end_fails.join("\n")
        );
    }
}

/// A smaller input that fails with the same kind on its own: trailing bytes
/// cut, then bytes zeroed one at a time. None if the input itself no longer
/// fails that way.
fn shrink(lab: &mut Lab, which: Prog, run: &Run, kind: &str) -> Option<Vec<u8>> {
    let mut t = Tally::default();
    let mut fails = |lab: &mut Lab, f: &[u8]| {
        let r = lab.run(which, f, run.ifindex);
        let res = match which {
            Prog::Xdp => lab.check_xdp(&r, &mut t),
            Prog::TcPort => lab.check_tc_port(&r, &mut t),
            Prog::TcUplink => lab.check_tc_uplink(&r, &mut t),
            Prog::TcDecap => lab.check_tc_decap(&r, &mut t),
        };
        matches!(res, Err((k, _)) if k == kind)
    };
    let mut f = run.input.clone();
    if !fails(lab, &f) {
        return None;
    }
    while f.len() > ETH_HLEN {
        let mut g = f.clone();
        g.pop();
        if !fails(lab, &g) {
            break;
        }
        f = g;
    }
    for i in 0..f.len() {
        if f[i] == 0 {
            continue;
        }
        let mut g = f.clone();
        g[i] = 0;
        if fails(lab, &g) {
            f = g;
        }
    }
    Some(f)
}

#[test]
fn fuzz_xdp_uplink() {
    fuzz(Prog::Xdp, 1);
}

#[test]
fn fuzz_tc_port() {
    fuzz(Prog::TcPort, 1);
}

/// The TC uplink program as the decapsulating datapath (no XDP): every
/// verdict and drop reason predicted by the oracle (`Lab::predict_rx`),
/// the inner frame out exactly as RFC 6040 makes it.
#[test]
fn fuzz_tc_decap() {
    fuzz(Prog::TcDecap, 1);
}

#[test]
fn fuzz_tc_uplink() {
    fuzz(Prog::TcUplink, 10);
}

// The XDP-to-TC hand-off with metadata, valid and forged.
#[path = "fuzz/handoff.rs"]
mod handoff;
