//! BPF_PROG_TEST_RUN tests of the datapath programs on crafted frames:
//! the exact bytes out, the action, and what the programs write to the maps.
//! Needs root (loads eBPF); attaches nothing.

use std::net::Ipv4Addr;

use aya::maps::{HashMap, MapData, lpm_trie::Key};
use vxlan_common::{
    ArpEntry, ArpKey, CFG_F_ARP_SUPPRESS, CFG_F_LEARNING, CFG_F_PORT_LEARN, CFG_F_SNOOP,
    CFG_F_TC_DECAP, Counter, FDB_F_EXTERN, FDB_F_STATIC, FdbEntry, FdbKey, LocalIp, META_MAGIC,
    META_MAGIC_TC_DECAP, NeighEntry, PORT_F_PEER, PortInfo, VNI_F_ANY_SENDER, VNI_F_IPV6,
    VTEP_NONE, VniInfo, VtepAddr, XdpMeta, allow_data, allow_value, vtep_v4,
    wire::{ENCAP_LEN, OFF_INNER, OFF_IP, OFF_UDP, OFF_VXLAN, Outer},
    wire6::{ENCAP6_LEN, OFF6_INNER, OFF6_IP, OFF6_UDP, OFF6_VXLAN, flow_label, outer_hdr6},
};
use vxlan_tests::{
    fixture::{
        C1_MAC, C2_MAC, Datapath, LO, LOCAL, LOCAL6, META_KEY, Prog, REMOTE, REMOTE_MAC, REMOTE6,
        TC_ACT_REDIRECT, TC_ACT_SHOT, TC_ACT_UNSPEC, UPLINK_MAC, VNI, Veth, XDP_DROP, XDP_PASS,
        config, config6, private_netns,
    },
    frames::{self, C1_IP, C2_IP, fix_ip_checksum, fix_lengths, inner_udp, set_udp_checksum},
};

/// A datapath of its own, in a network namespace of its own (the calling
/// test thread's), with a veth pair `pa`/`pb`: copies that the programs
/// really send (`bpf_clone_redirect`) go out of these devices, never out
/// of an interface of the root namespace. Configured as host h1: VNI 42
/// with the remote h2 (allowed to send), the local ports `pa` (peer
/// delivery) and `lo`.
struct Dp {
    dp: Datapath,
    /// A local port (veth) of the VNI besides `LO`.
    port_a: u32,
}

impl Dp {
    fn new() -> Self {
        let port_a = private_netns(Some(UPLINK_MAC), &[Veth::new("pa", "pb")])
            .expect("private network namespace")[0];
        let mut dp = Self {
            dp: Datapath::load(None).expect("load the datapath"),
            port_a,
        };
        dp.dp.set_config(config(LO, 1000)).expect("CONFIG");
        let mut vni = VniInfo {
            n_remotes: 1,
            n_ports: 2,
            ..Default::default()
        };
        vni.remotes[0] = vtep_v4(REMOTE);
        vni.ports[0] = port_a;
        vni.ports[1] = LO;
        dp.vnis().insert(VNI, vni, 0).unwrap();
        for (port, flags) in [(port_a, PORT_F_PEER), (LO, 0)] {
            let info = PortInfo {
                vni: VNI,
                flags,
                ..Default::default()
            };
            dp.ports().insert(port, info, 0).unwrap();
        }
        dp.allow(VNI, REMOTE, 32);
        dp
    }

    /// Lets the IPv4 prefix `addr/len` send VXLAN into `vni`
    /// (anti-spoofing): an IPv4-mapped /(96 + len).
    fn allow(&mut self, vni: u32, addr: [u8; 4], len: u32) {
        let key = Key::new(32 + 96 + len, allow_data(vni, &vtep_v4(addr)));
        self.dp.maps.allowed.insert(&key, 1, 0).unwrap();
    }

    /// Sets `Config::flags` (e.g. `CFG_F_TC_DECAP`: no XDP on the uplink).
    fn set_cfg_flags(&mut self, flags: u32) {
        self.dp.set_cfg_flags(flags).unwrap();
    }

    fn fdb(&mut self) -> &mut HashMap<MapData, FdbKey, FdbEntry> {
        &mut self.dp.maps.fdb
    }
    fn vnis(&mut self) -> &mut HashMap<MapData, u32, VniInfo> {
        &mut self.dp.maps.vnis
    }
    fn ports(&mut self) -> &mut HashMap<MapData, u32, PortInfo> {
        &mut self.dp.maps.ports
    }
    fn neigh(&mut self) -> &mut HashMap<MapData, VtepAddr, NeighEntry> {
        &mut self.dp.maps.neigh
    }
    fn arp(&mut self) -> &mut HashMap<MapData, ArpKey, ArpEntry> {
        self.dp.maps.arp.as_mut().expect("ARP map")
    }
    fn local_ip(&mut self) -> &mut HashMap<MapData, FdbKey, LocalIp> {
        self.dp.maps.local_ip.as_mut().expect("LOCAL_IP map")
    }
    fn counter(&mut self, c: Counter) -> u64 {
        self.dp.counter(c).unwrap()
    }
    fn fdb_get(&mut self, mac: [u8; 6]) -> Option<FdbEntry> {
        self.fdb().get(&FdbKey::new(VNI, mac), 0).ok()
    }
    fn add_static(&mut self, mac: [u8; 6], entry: FdbEntry) {
        self.fdb().insert(FdbKey::new(VNI, mac), entry, 0).unwrap();
    }
    /// REMOTE's next hop: REMOTE_MAC out of `LO`.
    fn neigh_remote(&mut self) {
        let (dmac, smac, ifindex) = (REMOTE_MAC, UPLINK_MAC, LO);
        let n = NeighEntry {
            dmac,
            smac,
            ifindex,
        };
        self.neigh().insert(vtep_v4(REMOTE), n, 0).unwrap();
    }
    /// A static entry: `mac` on local port `ifindex`.
    fn pin_port(&mut self, mac: [u8; 6], ifindex: u32) {
        let flags = FDB_F_STATIC;
        self.add_static(
            mac,
            FdbEntry {
                ifindex,
                flags,
                ..Default::default()
            },
        );
    }
    /// A static entry: `mac` behind VTEP `remote`.
    fn pin_remote(&mut self, mac: [u8; 6], remote: [u8; 4]) {
        self.pin_vtep(mac, vtep_v4(remote));
    }
    /// A static entry: `mac` behind VTEP `remote` (either family).
    fn pin_vtep(&mut self, mac: [u8; 6], remote: VtepAddr) {
        self.add_static(mac, FdbEntry::new_remote(remote, FDB_F_STATIC, 0));
    }

    fn run_xdp(&mut self, frame: &[u8]) -> (u32, Vec<u8>) {
        self.dp.run(Prog::Xdp, frame, 0).expect("BPF_PROG_TEST_RUN")
    }
    fn run_tc(&mut self, which: Prog, frame: &[u8], ifindex: u32) -> (u32, Vec<u8>) {
        self.dp
            .run(which, frame, ifindex)
            .expect("BPF_PROG_TEST_RUN")
    }
}

/// An inner IPv4/UDP frame from `src` to `dst` with a recognisable payload.
fn inner_ipv4(dst: [u8; 6], src: [u8; 6], tos: u8) -> Vec<u8> {
    inner_udp(dst, src, tos, 53, b"vxlan-fwd test payload")
}

/// A broadcast ARP request from `src` (for c2's address).
fn inner_arp(src: [u8; 6]) -> Vec<u8> {
    frames::arp_request(src, C1_IP, C2_IP)
}

/// Outer Ethernet/IPv4/UDP/VXLAN around `inner`, as a remote VTEP sends it.
fn vxlan_frame(inner: &[u8], vni: u32, dst_ip: [u8; 4], dport: u16, flags: u8) -> Vec<u8> {
    let o = Outer {
        src_mac: REMOTE_MAC,
        dst_mac: UPLINK_MAC,
        src_ip: REMOTE,
        dst_ip,
        src_port: 50_000,
        dst_port: dport,
        vni,
        ttl: 64,
        tos: 0,
        ip_id: 7,
    };
    let mut f = frames::vxlan_frame(&o, inner);
    f[OFF_VXLAN] = flags;
    f
}

/// Length of the metadata XDP puts in front of a frame.
const ML: usize = std::mem::size_of::<XdpMeta>();

fn meta_of(out: &[u8]) -> XdpMeta {
    *bytemuck::from_bytes::<XdpMeta>(&out[..ML])
}

#[test]
fn xdp_decap_exact_output_to_known_port() {
    let mut dp = Dp::new();
    let port_a = dp.port_a;
    dp.pin_port(C1_MAC, port_a);
    let inner = inner_ipv4(C1_MAC, C2_MAC, 0);
    let (action, out) = dp.run_xdp(&vxlan_frame(&inner, VNI, LOCAL, 4789, 0x08));
    assert_eq!(action, XDP_PASS);
    let meta_len = std::mem::size_of::<XdpMeta>();
    assert_eq!(
        out.len(),
        meta_len + inner.len(),
        "metadata + inner frame, outer headers gone"
    );
    assert_eq!(
        meta_of(&out),
        XdpMeta {
            magic: META_MAGIC,
            key: META_KEY,
            vni: VNI,
            ifindex: dp.port_a,
            flags: PORT_F_PEER
        }
    );
    assert_eq!(&out[meta_len..], &inner[..], "inner frame byte for byte");
    assert_eq!(dp.counter(Counter::RxDecap), 1);
}

#[test]
fn xdp_decap_broadcast_floods_and_learns() {
    let mut dp = Dp::new();
    let inner = inner_arp(C2_MAC);
    let (action, out) = dp.run_xdp(&vxlan_frame(&inner, VNI, LOCAL, 4789, 0x08));
    assert_eq!(action, XDP_PASS);
    let m = meta_of(&out);
    assert_eq!(
        (m.magic, m.vni, m.ifindex),
        (META_MAGIC, VNI, 0),
        "ifindex 0: flood"
    );
    assert_eq!(&out[std::mem::size_of::<XdpMeta>()..], &inner[..]);

    let learned = dp.fdb_get(C2_MAC).expect("inner source MAC learned");
    assert_eq!(
        learned.remote,
        vtep_v4(REMOTE),
        "behind the outer source IP"
    );
    assert_eq!(learned.ifindex, 0);
    assert_eq!(learned.flags & FDB_F_STATIC, 0, "learned, not static");
    assert!(learned.last_seen_ns > 0);
    let n = dp
        .neigh()
        .get(&vtep_v4(REMOTE), 0)
        .expect("way back to the VTEP recorded");
    assert_eq!((n.dmac, n.smac), (REMOTE_MAC, UPLINK_MAC));
    assert_eq!(dp.counter(Counter::Learn), 1);
}

#[test]
fn xdp_learning_never_overwrites_static_and_follows_moves() {
    let mut dp = Dp::new();
    let pinned = FdbEntry {
        remote: vtep_v4([10, 0, 0, 9]),
        flags: FDB_F_STATIC,
        ..Default::default()
    };
    dp.add_static(C2_MAC, pinned);
    dp.run_xdp(&vxlan_frame(&inner_arp(C2_MAC), VNI, LOCAL, 4789, 0x08));
    assert_eq!(dp.fdb_get(C2_MAC), Some(pinned), "static entry untouched");

    // A MAC learned on a local port that shows up behind a VTEP moves at once.
    let port_a = dp.port_a;
    dp.add_static(
        C1_MAC,
        FdbEntry {
            ifindex: port_a,
            ..Default::default()
        },
    );
    dp.run_xdp(&vxlan_frame(&inner_arp(C1_MAC), VNI, LOCAL, 4789, 0x08));
    let moved = dp.fdb_get(C1_MAC).unwrap();
    assert_eq!((moved.remote, moved.ifindex), (vtep_v4(REMOTE), 0));
}

#[test]
fn xdp_drops_vxlan_for_unknown_vni_and_learns_nothing() {
    let mut dp = Dp::new();
    let frame = vxlan_frame(&inner_arp(C2_MAC), 43, LOCAL, 4789, 0x08);
    assert_eq!(dp.run_xdp(&frame).0, XDP_DROP);
    assert_eq!(dp.counter(Counter::DropUnknownVni), 1);
    assert!(dp.fdb().get(&FdbKey::new(43, C2_MAC), 0).is_err());
    assert!(dp.fdb_get(C2_MAC).is_none());
}

#[test]
fn xdp_drops_i_flag_clear_and_truncated() {
    let mut dp = Dp::new();
    let frame = vxlan_frame(&inner_arp(C2_MAC), VNI, LOCAL, 4789, 0x00);
    assert_eq!(dp.run_xdp(&frame).0, XDP_DROP);
    assert_eq!(dp.counter(Counter::DropVxlanFlags), 1);

    let full = vxlan_frame(&inner_arp(C2_MAC), VNI, LOCAL, 4789, 0x08);
    let mut cut = full[..OFF_VXLAN + 4].to_vec();
    fix_lengths(&mut cut);
    assert_eq!(dp.run_xdp(&cut).0, XDP_DROP, "VXLAN header cut");
    assert_eq!(dp.counter(Counter::DropVxlanTruncated), 1);
    let mut cut = full[..OFF_INNER + 10].to_vec();
    fix_lengths(&mut cut);
    // Ethernet padding must not pass for an inner frame.
    cut.resize(cut.len() + 20, 0);
    assert_eq!(dp.run_xdp(&cut).0, XDP_DROP, "inner Ethernet cut");
    assert_eq!(dp.counter(Counter::DropInnerTruncated), 1);
    assert!(dp.fdb_get(C2_MAC).is_none(), "nothing learned from garbage");
}

type Mutation = Box<dyn Fn(&mut Vec<u8>)>;

/// A damage case: what, the counter it must be counted under, the damage.
fn case(
    what: &'static str,
    counter: Counter,
    damage: impl Fn(&mut Vec<u8>) + 'static,
) -> (&'static str, Mutation, Counter) {
    (what, Box::new(damage), counter)
}

/// Damaged outer IPv4/UDP headers, each with the counter it must be
/// dropped under (by XDP and by TC decapsulation alike).
fn bad_outer_headers() -> Vec<(&'static str, Mutation, Counter)> {
    vec![
        case("bad checksum", Counter::DropIpChecksum, |f| {
            f[OFF_IP + 10] ^= 0xff
        }),
        case(
            "total length beyond the frame",
            Counter::DropIpLength,
            |f| {
                f[OFF_IP + 2..OFF_IP + 4].copy_from_slice(&2000u16.to_be_bytes());
                fix_ip_checksum(f);
            },
        ),
        case("TTL 0", Counter::DropIpTtl, |f| {
            f[OFF_IP + 8] = 0;
            fix_ip_checksum(f);
        }),
        case("UDP length inconsistent", Counter::DropUdpLength, |f| {
            f[OFF_UDP + 5] = f[OFF_UDP + 5].wrapping_add(3)
        }),
        case("IHL below 5", Counter::DropIpMalformed, |f| {
            f[OFF_IP] = 0x44
        }),
        case("IPv4 options", Counter::DropIpOptions, |f| {
            // 4 bytes of options (NOPs + EOL) inserted after the header.
            f[OFF_IP] = 0x46;
            f.splice(OFF_UDP..OFF_UDP, [1, 1, 1, 0]);
            let l = (f.len() - OFF_IP) as u16;
            f[OFF_IP + 2..OFF_IP + 4].copy_from_slice(&l.to_be_bytes());
        }),
    ]
}

#[test]
fn xdp_checks_the_outer_headers() {
    let mut dp = Dp::new();
    let good = vxlan_frame(&inner_arp(C2_MAC), VNI, LOCAL, 4789, 0x08);
    let cases = bad_outer_headers();
    for (what, mutate, counter) in &cases {
        let mut f = good.clone();
        mutate(&mut f);
        assert_eq!(dp.run_xdp(&f).0, XDP_DROP, "{what}");
        assert_eq!(dp.counter(*counter), 1, "{what}: counted under its reason");
    }
    assert!(
        dp.fdb_get(C2_MAC).is_none(),
        "nothing learned from any of them"
    );
    assert_eq!(dp.counter(Counter::RxDecap), 0);
    // Positive control: the unmodified frame is decapsulated.
    assert_eq!(dp.run_xdp(&good).0, XDP_PASS);
    assert_eq!(dp.counter(Counter::RxDecap), 1);
}

#[test]
fn xdp_trims_ethernet_padding() {
    let mut dp = Dp::new();
    let inner = inner_arp(C2_MAC);
    let mut f = vxlan_frame(&inner, VNI, LOCAL, 4789, 0x08);
    f.extend_from_slice(&[0xee; 6]);
    let (action, out) = dp.run_xdp(&f);
    assert_eq!(action, XDP_PASS);
    assert_eq!(&out[ML..], &inner[..], "padding gone");
}

#[test]
fn xdp_takes_the_vni_flags_from_the_senders_allowed_entry() {
    // Userspace writes ALLOWED values with the VNI's flags
    // (`allow_value`): the datapath then skips the VNIS lookup and goes
    // by them. (The other tests write 1, an entry without them, as
    // before: the datapath looks the VNI up.)
    let mut dp = Dp::new();
    let key = Key::new(32 + 128, allow_data(VNI, &vtep_v4(REMOTE)));
    dp.dp.maps.allowed.insert(&key, allow_value(0), 0).unwrap();
    let frame = vxlan_frame(&inner_arp(C2_MAC), VNI, LOCAL, 4789, 0x08);
    assert_eq!(dp.run_xdp(&frame).0, XDP_PASS);
    assert_eq!(dp.counter(Counter::RxDecap), 1);
    assert_eq!(dp.fdb_get(C2_MAC).unwrap().remote, vtep_v4(REMOTE));
    // The entry's flags are what counts: an IPv6 VNI there refuses an
    // IPv4 frame, whatever VNIS says.
    dp.dp
        .maps
        .allowed
        .insert(&key, allow_value(VNI_F_IPV6), 0)
        .unwrap();
    assert_eq!(dp.run_xdp(&frame).0, XDP_DROP);
    assert_eq!(dp.counter(Counter::DropFamily), 1);
    // Without the entry the sender is refused (VNIS decides: not open).
    dp.dp.maps.allowed.remove(&key).unwrap();
    assert_eq!(dp.run_xdp(&frame).0, XDP_DROP);
    assert_eq!(dp.counter(Counter::DropSpoofed), 1);
}

#[test]
fn xdp_drops_vxlan_from_senders_that_are_not_remotes() {
    let mut dp = Dp::new();
    let mut f = vxlan_frame(&inner_arp(C2_MAC), VNI, LOCAL, 4789, 0x08);
    f[OFF_IP + 15] = 99; // source 192.168.57.99: not a remote of VNI 42
    fix_ip_checksum(&mut f);
    assert_eq!(dp.run_xdp(&f).0, XDP_DROP);
    assert_eq!(dp.counter(Counter::DropSpoofed), 1);
    assert!(dp.fdb_get(C2_MAC).is_none(), "nothing learned");
    assert!(dp.neigh().get(&vtep_v4([192, 168, 57, 99]), 0).is_err());

    // --allow-remote 192.168.57.0/24 widens the set.
    dp.allow(VNI, [192, 168, 57, 0], 24);
    assert_eq!(dp.run_xdp(&f).0, XDP_PASS);
    assert_eq!(
        dp.fdb_get(C2_MAC).unwrap().remote,
        vtep_v4([192, 168, 57, 99])
    );

    // Allowed in VNI 42 is not allowed in VNI 43.
    dp.vnis()
        .insert(
            43,
            VniInfo {
                n_ports: 0,
                ..Default::default()
            },
            0,
        )
        .unwrap();
    let f43 = vxlan_frame(&inner_arp(C1_MAC), 43, LOCAL, 4789, 0x08);
    assert_eq!(dp.run_xdp(&f43).0, XDP_DROP);
    assert_eq!(dp.counter(Counter::DropSpoofed), 2);
    // A group-mode VNI accepts any sender.
    dp.vnis()
        .insert(
            43,
            VniInfo {
                flags: VNI_F_ANY_SENDER,
                ..Default::default()
            },
            0,
        )
        .unwrap();
    assert_eq!(dp.run_xdp(&f43).0, XDP_PASS);
}

#[test]
fn xdp_passes_what_is_not_ours_untouched() {
    let mut dp = Dp::new();
    let inner = inner_arp(C2_MAC);
    let cases: Vec<(&str, Vec<u8>)> = vec![
        (
            "wrong UDP port",
            vxlan_frame(&inner, VNI, LOCAL, 4790, 0x08),
        ),
        (
            "not our address",
            vxlan_frame(&inner, VNI, [192, 168, 57, 99], 4789, 0x08),
        ),
        ("plain ARP", inner_arp(REMOTE_MAC)),
        ("plain IPv4/UDP", inner_ipv4(UPLINK_MAC, REMOTE_MAC, 0)),
        ("unknown ethertype", vec![0xff; 14]),
    ];
    for (i, (what, frame)) in cases.iter().enumerate() {
        let (action, out) = dp.run_xdp(frame);
        assert_eq!(action, XDP_PASS, "{what}");
        assert_eq!(&out, frame, "{what}: bytes untouched");
        assert_eq!(
            dp.counter(Counter::RxPass),
            i as u64 + 1,
            "{what}: counted as passed"
        );
    }
    assert!(dp.fdb_get(C2_MAC).is_none(), "nothing learned");
    assert_eq!(dp.counter(Counter::RxDecap), 0);
}

#[test]
fn xdp_fragment_is_left_to_the_kernel() {
    let mut dp = Dp::new();
    let mut frame = vxlan_frame(&inner_arp(C2_MAC), VNI, LOCAL, 4789, 0x08);
    frame[OFF_IP + 6] = 0x20; // MF
    let (action, out) = dp.run_xdp(&frame);
    assert_eq!((action, out), (XDP_PASS, frame));
}

/// Checks the outer headers of an encapsulated frame, field by field.
fn assert_outer(out: &[u8], inner: &[u8], tos: u8) {
    assert_eq!(
        out.len(),
        ENCAP_LEN + inner.len(),
        "50 bytes of encapsulation"
    );
    assert_eq!(
        &out[0..6],
        &REMOTE_MAC,
        "outer dst MAC: the remote VTEP's next hop"
    );
    assert_eq!(&out[6..12], &UPLINK_MAC, "outer src MAC: ours");
    assert_eq!(&out[12..14], &[0x08, 0x00]);
    let ip = &out[OFF_IP..OFF_UDP];
    assert_eq!(ip[0], 0x45);
    assert_eq!(ip[1], tos, "outer TOS: inner ECN bits");
    assert_eq!(
        u16::from_be_bytes([ip[2], ip[3]]) as usize,
        inner.len() + 36
    );
    assert_eq!(ip[6] & 0x40, 0, "DF clear, as the kernel's default");
    assert_eq!(&ip[6..8], &[0, 0]);
    assert_eq!(ip[8], 64, "TTL");
    assert_eq!(ip[9], 17);
    let c = vxlan_common::wire::ipv4_checksum(&ip.try_into().unwrap());
    assert_eq!(&ip[10..12], &c, "header checksum");
    assert_eq!(&ip[12..16], &LOCAL);
    assert_eq!(&ip[16..20], &REMOTE);
    let udp = &out[OFF_UDP..OFF_VXLAN];
    let sport = u16::from_be_bytes([udp[0], udp[1]]);
    assert!(
        (32768..60999).contains(&sport),
        "source port {sport} in the kernel's range"
    );
    assert_eq!(u16::from_be_bytes([udp[2], udp[3]]), 4789);
    assert_eq!(
        u16::from_be_bytes([udp[4], udp[5]]) as usize,
        inner.len() + 16
    );
    assert_eq!(&udp[6..8], &[0, 0], "UDP checksum 0");
    assert_eq!(
        &out[OFF_VXLAN..OFF_INNER],
        &[0x08, 0, 0, 0, 0, 0, VNI as u8, 0]
    );
    assert_eq!(&out[OFF_INNER..], inner, "inner frame byte for byte");
}

#[test]
fn tc_encap_exact_headers_to_known_remote() {
    let mut dp = Dp::new();
    dp.pin_remote(C2_MAC, REMOTE);
    dp.neigh_remote();
    let inner = inner_ipv4(C2_MAC, C1_MAC, 0xb9); // DSCP 46, ECT(1)
    let (action, out) = dp.run_tc(Prog::TcPort, &inner, LO);
    assert_eq!(action, TC_ACT_REDIRECT);
    assert_outer(&out, &inner, 0x01);
    assert_eq!(dp.counter(Counter::TxEncap), 1);

    // The same flow always gets the same source port (flow hash).
    let (_, again) = dp.run_tc(Prog::TcPort, &inner, LO);
    assert_eq!(&again[OFF_UDP..OFF_UDP + 2], &out[OFF_UDP..OFF_UDP + 2]);

    let learned = dp.fdb_get(C1_MAC).expect("source MAC learned on the port");
    assert_eq!((learned.ifindex, learned.remote), (LO, VTEP_NONE));
}

#[test]
fn tc_flood_broadcast_encapsulates_non_ip() {
    let mut dp = Dp::new();
    dp.neigh_remote();
    let inner = inner_arp(C1_MAC);
    let (action, out) = dp.run_tc(Prog::TcPort, &inner, LO);
    // Copies leave by clone_redirect; the original is consumed.
    assert_eq!(action, TC_ACT_SHOT);
    assert_outer(&out, &inner, 0);
    assert_eq!(
        dp.counter(Counter::TxFloodCopy),
        1,
        "one copy per default remote"
    );
    assert_eq!(
        dp.counter(Counter::TxLocalFloodCopy),
        1,
        "one copy to the other local port"
    );
}

#[test]
fn tc_flood_without_neighbour_counts_and_sends_nothing_remote() {
    let mut dp = Dp::new();
    let (_, _) = dp.run_tc(Prog::TcPort, &inner_arp(C1_MAC), LO);
    assert_eq!(dp.counter(Counter::TxFloodCopy), 0);
    assert_eq!(dp.counter(Counter::DropNoNeigh), 1);
}

#[test]
fn tc_local_destination_is_switched_not_encapsulated() {
    let mut dp = Dp::new();
    let port_a = dp.port_a;
    dp.pin_port(C2_MAC, port_a);
    let inner = inner_ipv4(C2_MAC, C1_MAC, 0);
    let (action, out) = dp.run_tc(Prog::TcPort, &inner, LO);
    assert_eq!(action, TC_ACT_REDIRECT);
    assert_eq!(out, inner, "frame unchanged");
    assert_eq!(dp.counter(Counter::LocalSwitch), 1);
    assert_eq!(dp.counter(Counter::TxEncap), 0);

    // Back to the port it came from: dropped, counted.
    dp.pin_port(C2_MAC, LO);
    assert_eq!(dp.run_tc(Prog::TcPort, &inner, LO).0, TC_ACT_SHOT);
    assert_eq!(dp.counter(Counter::DropTxHairpin), 1);
}

#[test]
fn tc_ignores_frames_of_unknown_ports_and_uplink_frames_without_metadata() {
    let mut dp = Dp::new();
    dp.ports().remove(&LO).unwrap();
    let inner = inner_ipv4(C2_MAC, C1_MAC, 0);
    let (action, out) = dp.run_tc(Prog::TcPort, &inner, LO);
    assert_eq!(
        (action, &out),
        (TC_ACT_UNSPEC, &inner),
        "not a port: next program"
    );
    assert!(dp.fdb_get(C1_MAC).is_none());

    let (action, out) = dp.run_tc(Prog::TcUplink, &inner, LO);
    assert_eq!(
        (action, &out),
        (TC_ACT_UNSPEC, &inner),
        "no XDP metadata: not ours"
    );
}

#[test]
fn vni_flood_list_is_per_vni() {
    // A second VNI on the same instance has its own remotes: a broadcast in
    // VNI 42 never uses VNI 43's list.
    let mut dp = Dp::new();
    let mut other = VniInfo {
        n_remotes: 1,
        ..Default::default()
    };
    other.remotes[0] = vtep_v4(Ipv4Addr::new(192, 168, 57, 77).octets());
    dp.vnis().insert(43, other, 0).unwrap();
    dp.neigh_remote();
    let (_, out) = dp.run_tc(Prog::TcPort, &inner_arp(C1_MAC), LO);
    assert_eq!(&out[OFF_IP + 16..OFF_IP + 20], &REMOTE);
    assert_eq!(&out[OFF_VXLAN + 4..OFF_VXLAN + 7], &[0, 0, VNI as u8]);
    assert_eq!(
        dp.counter(Counter::DropNoNeigh),
        0,
        "VNI 43's remote was never tried"
    );
}

// ------------------------------------------------ decapsulation in TC
// Without XDP on the uplink (`CFG_F_TC_DECAP`, the default on veth
// uplinks) the TC uplink program decapsulates itself.

#[test]
fn tc_decap_exact_output_to_known_port_and_learns() {
    let mut dp = Dp::new();
    dp.set_cfg_flags(CFG_F_LEARNING | CFG_F_TC_DECAP);
    let port_a = dp.port_a;
    dp.pin_port(C1_MAC, port_a);
    let inner = inner_ipv4(C1_MAC, C2_MAC, 0);
    let (action, out) = dp.run_tc(
        Prog::TcUplink,
        &vxlan_frame(&inner, VNI, LOCAL, 4789, 0x08),
        LO,
    );
    assert_eq!(action, TC_ACT_REDIRECT, "delivered to the port");
    assert_eq!(out, inner, "exactly the inner frame, outer headers gone");
    assert_eq!(dp.counter(Counter::RxDecap), 1);
    assert_eq!(dp.counter(Counter::RxDeliver), 1);
    let e = dp.fdb_get(C2_MAC).expect("the sender's MAC is learned");
    assert_eq!((e.remote, e.ifindex, e.flags), (vtep_v4(REMOTE), 0, 0));
    assert_eq!(
        dp.neigh().get(&vtep_v4(REMOTE), 0).map(|n| n.dmac).ok(),
        Some(REMOTE_MAC),
        "the way back to the sender is recorded"
    );

    // The same frame without CFG_F_TC_DECAP (XDP is on the uplink): not
    // the TC program's to decapsulate.
    dp.set_cfg_flags(CFG_F_LEARNING);
    let f = vxlan_frame(&inner, VNI, LOCAL, 4789, 0x08);
    let (action, out) = dp.run_tc(Prog::TcUplink, &f, LO);
    assert_eq!((action, out), (TC_ACT_UNSPEC, f), "untouched");
    assert_eq!(dp.counter(Counter::RxDecap), 1);
}

#[test]
fn tc_decap_floods_broadcast_and_trims_padding() {
    let mut dp = Dp::new();
    dp.set_cfg_flags(CFG_F_LEARNING | CFG_F_TC_DECAP);
    let inner = inner_arp(C2_MAC);
    let mut f = vxlan_frame(&inner, VNI, LOCAL, 4789, 0x08);
    f.extend_from_slice(&[0xee; 6]);
    let (action, out) = dp.run_tc(Prog::TcUplink, &f, LO);
    assert_eq!(action, TC_ACT_REDIRECT, "the last copy takes the original");
    assert_eq!(out, inner, "inner frame, padding gone");
    assert_eq!(
        dp.counter(Counter::RxFloodCopy),
        2,
        "one copy per local port"
    );
    assert!(dp.fdb_get(C2_MAC).is_some(), "learned from a broadcast too");
}

/// Every bad-input case gives the same verdict and counter in TC as in XDP.
#[test]
fn tc_decap_validates_exactly_like_xdp() {
    let good = vxlan_frame(&inner_arp(C2_MAC), VNI, LOCAL, 4789, 0x08);
    let mut cases: Vec<(&str, Mutation, Counter)> = vec![
        case("good", Counter::RxDecap, |_| {}),
        case("I flag clear", Counter::DropVxlanFlags, |f| {
            f[OFF_VXLAN] = 0
        }),
        case("unknown VNI", Counter::DropUnknownVni, |f| {
            f[OFF_VXLAN + 6] ^= 0x40
        }),
        case("spoofed sender", Counter::DropSpoofed, |f| {
            f[OFF_IP + 15] = 99;
            fix_ip_checksum(f);
        }),
        case("inner Ethernet cut", Counter::DropInnerTruncated, |f| {
            f.truncate(OFF_INNER + 10);
            fix_lengths(f);
            f.resize(f.len() + 20, 0);
        }),
        case("another UDP port: not ours", Counter::RxPass, |f| {
            f[OFF_UDP + 3] ^= 1
        }),
        case("a fragment: the kernel's", Counter::RxPass, |f| {
            f[OFF_IP + 6] = 0x20;
            fix_ip_checksum(f);
        }),
    ];
    cases.extend(bad_outer_headers());
    for (what, mutate, counter) in &cases {
        let mut f = good.clone();
        mutate(&mut f);
        let mut xdp = Dp::new();
        let (xa, xout) = xdp.run_xdp(&f);
        let mut tc = Dp::new();
        tc.set_cfg_flags(CFG_F_LEARNING | CFG_F_TC_DECAP);
        let (ta, tout) = tc.run_tc(Prog::TcUplink, &f, LO);
        let want_tc = match xa {
            XDP_DROP => TC_ACT_SHOT,
            XDP_PASS if *counter == Counter::RxPass => TC_ACT_UNSPEC,
            XDP_PASS => TC_ACT_REDIRECT,
            other => panic!("{what}: XDP returned {other}"),
        };
        assert_eq!(ta, want_tc, "{what}: TC verdict (XDP said {xa})");
        assert_eq!(
            (xdp.counter(*counter), tc.counter(*counter)),
            (1, 1),
            "{what}: counted as {counter:?} by both"
        );
        if ta == TC_ACT_UNSPEC {
            assert_eq!(tout, f, "{what}: passed untouched");
            assert_eq!(xout, f, "{what}: passed untouched by XDP too");
        }
        assert_eq!(
            xdp.fdb_get(C2_MAC).is_some(),
            tc.fdb_get(C2_MAC).is_some(),
            "{what}: learned by both or neither"
        );
    }
}

/// Differential fuzz: random damage to VXLAN frames, run through XDP and
/// through TC decapsulation, each with its own maps fed the same frames in
/// the same order. Verdicts, counters, learned entries and the inner frame
/// out must agree on every frame.
#[test]
fn tc_decap_agrees_with_xdp_on_damaged_frames() {
    const FRAMES: u64 = 4000;
    let mut xdp = Dp::new();
    let mut tc = Dp::new();
    tc.set_cfg_flags(CFG_F_LEARNING | CFG_F_TC_DECAP);
    let mut seed: u64 = 0x5658_4c4e_7463_6463;
    let mut next = move || {
        // xorshift64*
        seed ^= seed >> 12;
        seed ^= seed << 25;
        seed ^= seed >> 27;
        seed.wrapping_mul(0x2545_f491_4f6c_dd1d)
    };
    let compared: Vec<Counter> = Counter::ALL
        .iter()
        .copied()
        .filter(|c| !matches!(c, Counter::RxDeliver | Counter::RxFloodCopy))
        .collect();
    let mut decapsulated = 0;
    for i in 0..FRAMES {
        let r = next();
        let src = [0x02, 0xd0, 0, 0, (r >> 8) as u8 & 3, (r >> 16) as u8 & 7];
        let dst = match r % 4 {
            0 => [0xff; 6],
            1 => C1_MAC,
            _ => [0x02, 0xd0, 0, 0, (r >> 24) as u8 & 3, (r >> 32) as u8 & 7],
        };
        let inner = if r >> 40 & 1 == 0 {
            inner_ipv4(dst, src, 0)
        } else {
            inner_arp(src)
        };
        let vni = if r >> 41 & 7 == 0 { VNI + 1 } else { VNI };
        let mut f = vxlan_frame(&inner, vni, LOCAL, 4789, 0x08);
        // 0 to 3 random byte changes in the headers, sometimes with the
        // lengths and checksum made consistent again (to get deeper).
        for _ in 0..(r >> 44) % 4 {
            let x = next();
            let off = (x as usize) % (OFF_INNER + 14);
            f[off] = (x >> 32) as u8;
        }
        match (r >> 48) % 4 {
            0 => {
                let cut = OFF_IP + (next() as usize) % (f.len() - OFF_IP);
                f.truncate(cut.max(60));
            }
            1 => f.extend_from_slice(&vec![0; (r >> 52) as usize % 20]),
            _ => {}
        }
        if r >> 56 & 1 == 0 && f.len() >= OFF_UDP + 8 {
            fix_lengths(&mut f);
        }
        if f.len() < 60 {
            f.resize(60, 0);
        }
        let cx: Vec<u64> = compared.iter().map(|c| xdp.counter(*c)).collect();
        let ct: Vec<u64> = compared.iter().map(|c| tc.counter(*c)).collect();
        let (xa, xout) = xdp.run_xdp(&f);
        let (ta, tout) = tc.run_tc(Prog::TcUplink, &f, LO);
        let dx: Vec<u64> = compared
            .iter()
            .zip(&cx)
            .map(|(c, b)| xdp.counter(*c) - b)
            .collect();
        let dt: Vec<u64> = compared
            .iter()
            .zip(&ct)
            .map(|(c, b)| tc.counter(*c) - b)
            .collect();
        let what = format!(
            "frame {i}: {}",
            f.iter().map(|b| format!("{b:02x}")).collect::<String>()
        );
        // XDP hands a checksum it cannot confirm to TC (rx_csum_deferred),
        // which drops it (drop_udp_csum): the same verdict.
        let at = |c: Counter| compared.iter().position(|x| *x == c).unwrap();
        let mut dx = dx;
        let deferred = dx[at(Counter::RxCsumDeferred)] == 1;
        if deferred {
            dx[at(Counter::RxCsumDeferred)] = 0;
            dx[at(Counter::DropUdpCsum)] += 1;
        }
        assert_eq!(dx, dt, "{what}: counter deltas differ ({compared:?})");
        let decap = dx[compared
            .iter()
            .position(|c| *c == Counter::RxDecap)
            .unwrap()]
            == 1;
        match xa {
            XDP_DROP => assert_eq!(ta, TC_ACT_SHOT, "{what}"),
            XDP_PASS if deferred => {
                assert_eq!(ta, TC_ACT_SHOT, "{what}");
                assert_eq!(&xout[ML..], &f[..], "{what}: handed on modified");
            }
            XDP_PASS if decap => {
                decapsulated += 1;
                assert_eq!(ta, TC_ACT_REDIRECT, "{what}");
                assert_eq!(&xout[ML..], &tout[..], "{what}: inner frames differ");
            }
            XDP_PASS => {
                assert_eq!(ta, TC_ACT_UNSPEC, "{what}");
                assert_eq!((&xout, &tout), (&f, &f), "{what}: not untouched");
            }
            other => panic!("{what}: XDP returned {other}"),
        }
    }
    for mac_lo in 0..8u8 {
        for mac_mid in 0..4u8 {
            let mac = [0x02, 0xd0, 0, 0, mac_mid, mac_lo];
            let (a, b) = (xdp.fdb_get(mac), tc.fdb_get(mac));
            assert_eq!(
                a.map(|e| (e.remote, e.ifindex)),
                b.map(|e| (e.remote, e.ifindex)),
                "learned entry for {mac:02x?}"
            );
        }
    }
    assert!(
        decapsulated > FRAMES / 20,
        "too few frames got through to be a test: {decapsulated}"
    );
}

// ------------------------------------------------ hardening (issue 10)

/// Runs `frame` through both decapsulation paths (XDP, and TC without
/// XDP), each on a fresh datapath prepared by `setup`: (path, delivered,
/// the inner frame out when delivered, the datapath for its maps).
fn decap_both(setup: &dyn Fn(&mut Dp), frame: &[u8]) -> Vec<(&'static str, bool, Vec<u8>, Dp)> {
    let mut xdp = Dp::new();
    setup(&mut xdp);
    let (xa, xout) = xdp.run_xdp(frame);
    assert!(matches!(xa, XDP_PASS | XDP_DROP), "XDP action {xa}");
    let meta = std::mem::size_of::<XdpMeta>();
    let xdelivered = xa == XDP_PASS && xdp.counter(Counter::RxDecap) == 1;
    let xinner = if xdelivered {
        xout[meta..].to_vec()
    } else {
        Vec::new()
    };
    let mut tc = Dp::new();
    setup(&mut tc);
    tc.set_cfg_flags(CFG_F_LEARNING | CFG_F_TC_DECAP);
    let (ta, tout) = tc.run_tc(Prog::TcUplink, frame, LO);
    assert!(
        matches!(ta, TC_ACT_REDIRECT | TC_ACT_SHOT | TC_ACT_UNSPEC),
        "TC action {ta}"
    );
    let tdelivered = ta == TC_ACT_REDIRECT && tc.counter(Counter::RxDecap) == 1;
    let tinner = if tdelivered { tout } else { Vec::new() };
    vec![
        ("xdp", xdelivered, xinner, xdp),
        ("tc", tdelivered, tinner, tc),
    ]
}

/// Asserts `frame` is dropped under `reason` by both paths, with nothing
/// learned (`C2_MAC` is the inner source of the frames below), except for
/// an ECN drop, which comes after learning (as in the kernel's vxlan_rcv).
fn assert_dropped_both(setup: &dyn Fn(&mut Dp), frame: &[u8], reason: Counter, what: &str) {
    for (path, delivered, _, mut dp) in decap_both(setup, frame) {
        assert!(!delivered, "{path}: {what}: delivered");
        assert_eq!(
            dp.counter(reason),
            1,
            "{path}: {what}: counted as {reason:?}"
        );
        assert_eq!(dp.counter(Counter::RxDecap), 0, "{path}: {what}");
        if reason == Counter::DropEcn {
            assert!(
                dp.fdb_get(C2_MAC).is_some(),
                "{path}: {what}: learned first"
            );
            continue;
        }
        assert!(dp.fdb_get(C2_MAC).is_none(), "{path}: {what}: learned");
        assert_eq!(dp.counter(Counter::Learn), 0, "{path}: {what}: learned");
    }
}

/// Asserts a wrong outer UDP checksum in `frame` is refused: TC (which
/// knows whether the kernel vouches for a checksum, and in a test run it
/// does not) drops it as `drop_udp_csum`; XDP, which cannot see a checksum
/// left for offload, hands it to TC untouched with the TC-decap metadata
/// (`rx_csum_deferred`). Neither learns from it.
fn assert_csum_refused(setup: &dyn Fn(&mut Dp), frame: &[u8], what: &str) {
    let mut xdp = Dp::new();
    setup(&mut xdp);
    let (xa, xout) = xdp.run_xdp(frame);
    let ml = std::mem::size_of::<XdpMeta>();
    assert_eq!(xa, XDP_PASS, "xdp: {what}: not handed on");
    assert_eq!(xdp.counter(Counter::RxCsumDeferred), 1, "xdp: {what}");
    assert_eq!(
        xdp.counter(Counter::RxDecap) + xdp.counter(Counter::DropUdpCsum),
        0,
        "xdp: {what}"
    );
    assert_eq!(&xout[ml..], frame, "xdp: {what}: handed on modified");
    let m = *bytemuck::from_bytes::<XdpMeta>(&xout[..ml]);
    assert_eq!(m.magic, META_MAGIC_TC_DECAP, "xdp: {what}: metadata {m:?}");
    assert!(xdp.fdb_get(C2_MAC).is_none(), "xdp: {what}: learned");

    let mut tc = Dp::new();
    setup(&mut tc);
    tc.set_cfg_flags(CFG_F_LEARNING | CFG_F_TC_DECAP);
    let (ta, _) = tc.run_tc(Prog::TcUplink, frame, LO);
    assert_eq!(ta, TC_ACT_SHOT, "tc: {what}");
    assert_eq!(tc.counter(Counter::DropUdpCsum), 1, "tc: {what}");
    assert_eq!(tc.counter(Counter::RxDecap), 0, "tc: {what}");
    assert!(tc.fdb_get(C2_MAC).is_none(), "tc: {what}: learned");
}

/// Asserts both paths deliver `frame`; returns the inner frames out.
fn assert_delivered_both(setup: &dyn Fn(&mut Dp), frame: &[u8], what: &str) -> Vec<Vec<u8>> {
    decap_both(setup, frame)
        .into_iter()
        .map(|(path, delivered, inner, _)| {
            assert!(delivered, "{path}: {what}: not delivered");
            inner
        })
        .collect()
}

fn set_src_ip(f: &mut [u8], ip: [u8; 4]) {
    f[OFF_IP + 12..OFF_IP + 16].copy_from_slice(&ip);
    fix_ip_checksum(f);
}

#[test]
fn reflected_and_martian_outer_sources_are_dropped_before_learning() {
    // Every sender is allowed (0.0.0.0/0): only the source check stops them.
    let allow_all = |dp: &mut Dp| dp.allow(VNI, [0; 4], 0);
    let good = vxlan_frame(&inner_arp(C2_MAC), VNI, LOCAL, 4789, 0x08);
    assert_delivered_both(&allow_all, &good, "positive control");
    // Class E is not a martian to the kernel either.
    let mut class_e = good.clone();
    set_src_ip(&mut class_e, [240, 0, 0, 1]);
    assert_delivered_both(&allow_all, &class_e, "class E source");
    for (what, src) in [
        ("our own address", LOCAL),
        ("multicast", [224, 1, 1, 1]),
        ("multicast 239/8", [239, 255, 0, 1]),
        ("limited broadcast", [255; 4]),
        ("0.0.0.0", [0; 4]),
        ("0.0.0.0/8", [0, 1, 2, 3]),
        ("loopback", [127, 0, 0, 1]),
    ] {
        let mut f = good.clone();
        set_src_ip(&mut f, src);
        assert_dropped_both(&allow_all, &f, Counter::DropBadOuterSrc, what);
    }
}

#[test]
fn vxlan_to_another_hosts_mac_is_not_decapsulated() {
    let good = vxlan_frame(&inner_arp(C2_MAC), VNI, LOCAL, 4789, 0x08);
    assert_delivered_both(&|_| {}, &good, "positive control: our MAC");
    let mut other = good.clone();
    other[..6].copy_from_slice(&[0x02, 0xbb, 0, 0, 0, 0x01]);
    assert_dropped_both(
        &|_| {},
        &other,
        Counter::DropOtherHost,
        "another host's MAC",
    );
    // Group and broadcast destination MACs may be ours (group mode).
    let mut mcast = good.clone();
    mcast[..6].copy_from_slice(&[0x01, 0x00, 0x5e, 0x01, 0x01, 0x01]);
    assert_delivered_both(&|_| {}, &mcast, "multicast MAC");
    let mut bcast = good;
    bcast[..6].copy_from_slice(&[0xff; 6]);
    assert_delivered_both(&|_| {}, &bcast, "broadcast MAC");
}

/// An inner IPv4/UDP frame of exactly `len` bytes.
fn inner_ipv4_len(len: usize) -> Vec<u8> {
    let mut f = inner_ipv4(C1_MAC, C2_MAC, 0);
    let fill = (0..len.saturating_sub(f.len())).map(|i| (i * 7 + 3) as u8);
    f.extend(fill);
    f.truncate(len);
    let tot = (len - 14) as u16;
    f[16..18].copy_from_slice(&tot.to_be_bytes());
    f[24..26].copy_from_slice(&[0, 0]);
    let c = vxlan_common::wire::ipv4_checksum(&f[14..34].try_into().unwrap());
    f[24..26].copy_from_slice(&c);
    f[38..40].copy_from_slice(&(tot - 20).to_be_bytes());
    f
}

#[test]
fn outer_udp_checksum_is_verified_when_not_zero() {
    let to_c1 = |dp: &mut Dp| {
        let port_a = dp.port_a;
        dp.pin_port(C1_MAC, port_a);
    };
    // Lengths around the 512-byte chunks and the 4-byte words of the sum:
    // odd and even, whole chunks and tails.
    for len in [
        60, 61, 62, 63, 64, 487, 488, 489, 490, 1000, 1001, 1002, 1003, 1400,
    ] {
        let inner = inner_ipv4_len(len);
        let zero = vxlan_frame(&inner, VNI, LOCAL, 4789, 0x08);
        for out in assert_delivered_both(&to_c1, &zero, &format!("{len}: checksum 0")) {
            assert_eq!(out, inner, "{len}: inner frame");
        }
        let mut good = zero.clone();
        set_udp_checksum(&mut good);
        assert_ne!(&good[OFF_UDP + 6..OFF_UDP + 8], &[0, 0]);
        for out in assert_delivered_both(&to_c1, &good, &format!("{len}: right checksum")) {
            assert_eq!(out, inner, "{len}: inner frame");
        }
        let mut bad = good.clone();
        bad[OFF_UDP + 7] ^= 0x01;
        assert_csum_refused(&to_c1, &bad, &format!("{len}: wrong checksum"));
        // A damaged byte of the payload (the last one: the tail of the sum).
        let mut damaged = good.clone();
        let last = damaged.len() - 1;
        damaged[last] ^= 0x40;
        assert_csum_refused(&to_c1, &damaged, &format!("{len}: damaged payload"));
        // Ethernet padding is not part of the datagram.
        let mut padded = good.clone();
        padded.extend_from_slice(&[0xee; 5]);
        assert_delivered_both(&to_c1, &padded, &format!("{len}: right checksum, padded"));
    }
}

#[test]
fn bad_inner_source_macs_are_dropped_on_both_ingress_points() {
    let bad = [
        ("broadcast", [0xff; 6]),
        ("multicast", [0x01, 0x00, 0x5e, 0, 0, 1]),
        ("all zeros", [0; 6]),
    ];
    for (what, src) in bad {
        // Uplink: decapsulated frames.
        let f = vxlan_frame(&inner_ipv4(C1_MAC, src, 0), VNI, LOCAL, 4789, 0x08);
        for (path, delivered, _, mut dp) in decap_both(&|_| {}, &f) {
            assert!(!delivered, "{path}: {what}");
            assert_eq!(dp.counter(Counter::DropBadSrcMac), 1, "{path}: {what}");
            assert!(dp.fdb_get(src).is_none(), "{path}: {what}: learned");
        }
        // Port: frames from a container.
        let mut dp = Dp::new();
        let (action, _) = dp.run_tc(Prog::TcPort, &inner_ipv4(C2_MAC, src, 0), LO);
        assert_eq!(action, TC_ACT_SHOT, "port: {what}");
        assert_eq!(dp.counter(Counter::DropBadSrcMac), 1, "port: {what}");
        assert_eq!(
            dp.counter(Counter::TxLocalFloodCopy) + dp.counter(Counter::TxFloodCopy),
            0
        );
        assert!(dp.fdb_get(src).is_none(), "port: {what}: learned");
    }
    // Positive control on the port: a unicast source is switched.
    let mut dp = Dp::new();
    let port_a = dp.port_a;
    dp.pin_port(C2_MAC, port_a);
    let (action, _) = dp.run_tc(Prog::TcPort, &inner_ipv4(C2_MAC, C1_MAC, 0), LO);
    assert_eq!(action, TC_ACT_REDIRECT);
    assert_eq!(dp.counter(Counter::LocalSwitch), 1);
}

#[test]
fn a_source_pinned_elsewhere_by_a_static_entry_is_dropped() {
    // Uplink: C2 is pinned behind another VTEP.
    let pinned = FdbEntry {
        remote: vtep_v4([192, 168, 57, 60]),
        flags: FDB_F_STATIC,
        ..Default::default()
    };
    let pin = move |dp: &mut Dp| dp.add_static(C2_MAC, pinned);
    let f = vxlan_frame(&inner_arp(C2_MAC), VNI, LOCAL, 4789, 0x08);
    for (path, delivered, _, mut dp) in decap_both(&pin, &f) {
        assert!(!delivered, "{path}: delivered");
        assert_eq!(dp.counter(Counter::DropStaticConflict), 1, "{path}");
        assert_eq!(
            dp.fdb_get(C2_MAC),
            Some(pinned),
            "{path}: static entry untouched"
        );
    }
    // Pinned behind the VTEP it comes from: fine.
    let here = move |dp: &mut Dp| dp.pin_remote(C2_MAC, REMOTE);
    assert_delivered_both(&here, &f, "pinned where it comes from");
    // Without learning, nothing is checked (as the kernel: no vxlan_snoop).
    let no_learning = move |dp: &mut Dp| {
        pin(dp);
        dp.set_cfg_flags(0);
    };
    let mut dp = Dp::new();
    no_learning(&mut dp);
    assert_eq!(dp.run_xdp(&f).0, XDP_PASS, "no learning: delivered");

    // Port: C1 is pinned to port_a; a frame from LO claiming it is refused.
    let mut dp = Dp::new();
    let port_a = dp.port_a;
    let on_a = FdbEntry {
        ifindex: port_a,
        flags: FDB_F_STATIC,
        ..Default::default()
    };
    dp.add_static(C1_MAC, on_a);
    let frame = inner_arp(C1_MAC);
    assert_eq!(dp.run_tc(Prog::TcPort, &frame, LO).0, TC_ACT_SHOT);
    assert_eq!(dp.counter(Counter::DropStaticConflict), 1);
    assert_eq!(dp.counter(Counter::TxLocalFloodCopy), 0, "not flooded");
    assert_eq!(dp.fdb_get(C1_MAC), Some(on_a));
    // From the port it is pinned to: flooded as usual.
    dp.run_tc(Prog::TcPort, &frame, port_a);
    assert_eq!(dp.counter(Counter::DropStaticConflict), 1);
    assert_eq!(dp.counter(Counter::TxLocalFloodCopy), 1, "flooded to LO");
}

/// An inner IPv6/UDP frame with traffic class `tc`.
fn inner_ipv6(dst: [u8; 6], src: [u8; 6], tc: u8) -> Vec<u8> {
    let mut f = Vec::new();
    f.extend_from_slice(&dst);
    f.extend_from_slice(&src);
    f.extend_from_slice(&[0x86, 0xdd]);
    f.extend_from_slice(&[0x60 | (tc >> 4), tc << 4, 0, 0, 0, 12, 17, 64]);
    f.extend_from_slice(&[0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2]);
    f.extend_from_slice(&[0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 3]);
    f.extend_from_slice(&[0x30, 0x39, 0, 0x35, 0, 12, 0, 0, 1, 2, 3, 4]);
    f
}

#[test]
fn ecn_is_decapsulated_as_rfc_6040_says() {
    let with_tos = |inner: &[u8], tos: u8| {
        let mut f = vxlan_frame(inner, VNI, LOCAL, 4789, 0x08);
        f[OFF_IP + 1] = tos;
        fix_ip_checksum(&mut f);
        f
    };
    // IPv4 inner: (outer TOS, inner TOS) -> inner TOS out, or dropped.
    for (outer, inner, want) in [
        (0x03, 0x02, Some(0x03)), // CE into ECT(0)
        (0x03, 0xb9, Some(0xbb)), // CE into ECT(1), DSCP kept
        (0x03, 0x03, Some(0x03)), // CE stays CE
        (0x01, 0x02, Some(0x01)), // ECT(1) into ECT(0)
        (0x02, 0x01, Some(0x01)), // ECT(0) leaves ECT(1)
        (0x02, 0x00, Some(0x00)), // ECT outer, Not-ECT inner: kept
        (0x00, 0x02, Some(0x02)),
        (0xb8, 0x02, Some(0x02)), // outer DSCP is not copied
        (0x03, 0x00, None),       // CE over Not-ECT: dropped
        (0xbb, 0xb8, None),
    ] {
        let inner_in = inner_ipv4(C1_MAC, C2_MAC, inner);
        let f = with_tos(&inner_in, outer);
        let what = format!("outer {outer:#04x} inner {inner:#04x}");
        let Some(want) = want else {
            assert_dropped_both(&|_| {}, &f, Counter::DropEcn, &what);
            continue;
        };
        for (path, delivered, out, mut dp) in decap_both(&|_| {}, &f) {
            assert!(delivered, "{path}: {what}: not delivered");
            assert_eq!(out[15], want, "{path}: {what}: inner TOS");
            let hdr: [u8; 20] = out[14..34].try_into().unwrap();
            let mut zeroed = hdr;
            zeroed[10..12].copy_from_slice(&[0, 0]);
            assert_eq!(
                hdr[10..12],
                vxlan_common::wire::ipv4_checksum(&zeroed),
                "{path}: {what}: inner IPv4 checksum"
            );
            let mut expect = inner_in.clone();
            expect[15] = want;
            expect[24..26].copy_from_slice(&hdr[10..12]);
            assert_eq!(out, expect, "{path}: {what}: nothing else changed");
            let marked = u64::from(want != inner);
            assert_eq!(dp.counter(Counter::RxEcnMarked), marked, "{path}: {what}");
        }
    }
    // IPv6 inner: the traffic class.
    for (outer, inner, want) in [
        (0x03, 0x02, Some(0x03)),
        (0x03, 0xba, Some(0xbb)),
        (0x01, 0x02, Some(0x01)),
        (0x03, 0x00, None),
    ] {
        let inner_in = inner_ipv6(C1_MAC, C2_MAC, inner);
        let f = with_tos(&inner_in, outer);
        let what = format!("IPv6: outer {outer:#04x} inner {inner:#04x}");
        let Some(want) = want else {
            assert_dropped_both(&|_| {}, &f, Counter::DropEcn, &what);
            continue;
        };
        for (path, delivered, out, _) in decap_both(&|_| {}, &f) {
            assert!(delivered, "{path}: {what}: not delivered");
            let mut expect = inner_in.clone();
            expect[14] = 0x60 | (want >> 4);
            expect[15] = want << 4;
            assert_eq!(out, expect, "{path}: {what}");
        }
    }
    // Not IP inside (ARP): ECN does not apply, whatever the outer says.
    let f = with_tos(&inner_arp(C2_MAC), 0x03);
    assert_delivered_both(&|_| {}, &f, "ARP under CE");
}

/// An IPv6 frame cut below its 40-byte header is delivered by both paths
/// (the receiver's IPv6 drops it), not refused by TC decapsulation alone
/// (found by `fuzz_tc_decap`).
#[test]
fn short_ipv6_inner_frame_is_delivered_by_both_paths() {
    let mut inner = inner_ipv6(C1_MAC, C2_MAC, 0);
    inner.truncate(14 + 28);
    let f = vxlan_frame(&inner, VNI, LOCAL, 4789, 0x08);
    for out in assert_delivered_both(&|_| {}, &f, "IPv6 with 28 bytes after Ethernet") {
        assert_eq!(out, inner);
    }
}

// ------------------------------------------------------------------
// The control plane's datapath: ARP suppression, address snooping and
// `extern_learn` entries.

/// An ARP request of C1 from `spa` for `tpa`.
fn arp_request(spa: [u8; 4], tpa: [u8; 4]) -> Vec<u8> {
    frames::arp_request(C1_MAC, spa, tpa)
}

#[test]
fn tc_arp_suppression_answers_on_the_port_with_the_exact_reply() {
    let mut dp = Dp::new();
    dp.set_cfg_flags(CFG_F_LEARNING | CFG_F_ARP_SUPPRESS);
    dp.arp()
        .insert(
            ArpKey {
                vni: VNI,
                ip: C2_IP,
            },
            ArpEntry {
                mac: C2_MAC,
                _pad: [0; 2],
            },
            0,
        )
        .unwrap();
    let (action, out) = dp.run_tc(Prog::TcPort, &arp_request(C1_IP, C2_IP), LO);
    assert_eq!(action, TC_ACT_REDIRECT);
    let mut want = Vec::new();
    want.extend_from_slice(&C1_MAC); // to the requester
    want.extend_from_slice(&C2_MAC); // from the answer
    want.extend_from_slice(&[0x08, 0x06, 0, 1, 0x08, 0, 6, 4, 0, 2]);
    want.extend_from_slice(&C2_MAC);
    want.extend_from_slice(&C2_IP);
    want.extend_from_slice(&C1_MAC);
    want.extend_from_slice(&C1_IP);
    assert_eq!(out, want);
    assert_eq!(dp.counter(Counter::ArpSuppressed), 1);
    assert_eq!(dp.counter(Counter::TxFloodCopy), 0);
    assert_eq!(dp.counter(Counter::DropNoNeigh), 0, "nothing flooded");

    // Not answered, flooded as usual: an unknown address, a probe (sender
    // 0.0.0.0), gratuitous ARP, the requester's own MAC (duplicate address
    // detection), and suppression off.
    let own = [172, 18, 1, 9];
    dp.arp()
        .insert(
            ArpKey { vni: VNI, ip: own },
            ArpEntry {
                mac: C1_MAC,
                _pad: [0; 2],
            },
            0,
        )
        .unwrap();
    for (what, frame) in [
        ("unknown", arp_request(C1_IP, [172, 18, 1, 99])),
        ("probe", arp_request([0; 4], C2_IP)),
        ("gratuitous", arp_request(C2_IP, C2_IP)),
        ("own MAC", arp_request(C1_IP, own)),
    ] {
        let before = dp.counter(Counter::DropNoNeigh);
        dp.run_tc(Prog::TcPort, &frame, LO);
        assert_eq!(dp.counter(Counter::ArpSuppressed), 1, "{what}: answered");
        // The flood reached the remote copy (which waits for a neighbour).
        assert_eq!(
            dp.counter(Counter::DropNoNeigh),
            before + 1,
            "{what}: not flooded"
        );
    }
    dp.set_cfg_flags(CFG_F_LEARNING);
    let before = dp.counter(Counter::DropNoNeigh);
    dp.run_tc(Prog::TcPort, &arp_request(C1_IP, C2_IP), LO);
    assert_eq!(
        dp.counter(Counter::ArpSuppressed),
        1,
        "answered with suppression off"
    );
    assert_eq!(
        dp.counter(Counter::DropNoNeigh),
        before + 1,
        "not flooded with suppression off"
    );
}

#[test]
fn tc_snoops_local_addresses_only_when_asked() {
    let mut dp = Dp::new();
    let key = FdbKey::new(VNI, C1_MAC);
    dp.run_tc(Prog::TcPort, &arp_request(C1_IP, C2_IP), LO);
    assert!(
        dp.local_ip().get(&key, 0).is_err(),
        "snooped without CFG_F_SNOOP"
    );
    // Without learning from the wire, the port's endpoints are still
    // learned for the control plane, and their addresses recorded.
    dp.set_cfg_flags(CFG_F_PORT_LEARN | CFG_F_SNOOP);
    dp.run_tc(Prog::TcPort, &arp_request(C1_IP, C2_IP), LO);
    assert_eq!(dp.local_ip().get(&key, 0).ok().map(|l| l.ip), Some(C1_IP));
    assert_eq!(dp.fdb_get(C1_MAC).map(|e| e.ifindex), Some(LO));
    // An ARP probe (0.0.0.0) changes nothing; a new address replaces it.
    dp.run_tc(Prog::TcPort, &arp_request([0; 4], C2_IP), LO);
    assert_eq!(dp.local_ip().get(&key, 0).ok().map(|l| l.ip), Some(C1_IP));
    dp.run_tc(Prog::TcPort, &arp_request([172, 18, 1, 7], C2_IP), LO);
    assert_eq!(
        dp.local_ip().get(&key, 0).ok().map(|l| l.ip),
        Some([172, 18, 1, 7])
    );
    // IPv4 sources count when the entry is (re)learned: a new MAC.
    let other = [0x02, 0xc1, 0, 0, 0, 0x77];
    dp.run_tc(Prog::TcPort, &inner_ipv4(C2_MAC, other, 0), LO);
    assert_eq!(
        dp.local_ip()
            .get(&FdbKey::new(VNI, other), 0)
            .ok()
            .map(|l| l.ip),
        Some(C1_IP),
        "inner_ipv4's source is 172.18.1.2"
    );
}

#[test]
fn extern_entries_resist_the_wire_but_follow_a_local_port() {
    let mut dp = Dp::new();
    let other_vtep = [192, 168, 57, 58];
    dp.allow(VNI, other_vtep, 32);
    dp.add_static(
        C2_MAC,
        FdbEntry {
            remote: vtep_v4(other_vtep),
            flags: FDB_F_EXTERN,
            ..Default::default()
        },
    );
    // From the wire, behind another VTEP: delivered, not learned over.
    let frame = vxlan_frame(&inner_ipv4(C1_MAC, C2_MAC, 0), VNI, LOCAL, 4789, 0x08);
    let (action, _) = dp.run_xdp(&frame);
    assert_ne!(action, XDP_DROP);
    let e = dp.fdb_get(C2_MAC).unwrap();
    assert_eq!((e.remote, e.flags), (vtep_v4(other_vtep), FDB_F_EXTERN));
    assert_eq!(dp.counter(Counter::DropStaticConflict), 0);
    // On a local port: the endpoint moved here; learned anew.
    dp.run_tc(Prog::TcPort, &inner_ipv4(C1_MAC, C2_MAC, 0), LO);
    let e = dp.fdb_get(C2_MAC).unwrap();
    assert_eq!(e.ifindex, LO);
    assert!(e.is_learned() && !e.is_extern(), "flags {:#x}", e.flags);
}

// ------------------------------------------------ VXLAN over IPv6 (issue 12)
//
// Frames are built by `frames::vxlan6_frame` (offsets by hand, checksums
// by summing bytes), not by `wire6`, which the datapath uses.

/// The IPv6 multicast group of the group-mode cases (ff05::100).
const GROUP6: [u8; 16] = [0xff, 5, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0];
/// Its MAC: 33:33 and the low 32 bits.
const GROUP6_MAC: [u8; 6] = [0x33, 0x33, 0, 0, 1, 0];

impl Dp {
    /// [`Dp::new`] with an IPv6 underlay: `Config::local_ip6` [`LOCAL6`],
    /// VNI 42 is `VNI_F_IPV6` with the remote [`REMOTE6`] (allowed to
    /// send, /128).
    fn new6() -> Self {
        let mut dp = Self::new();
        dp.dp.set_config(config6(LO, 1000)).expect("CONFIG");
        let mut vni = dp.vnis().get(&VNI, 0).unwrap();
        vni.flags |= VNI_F_IPV6;
        vni.remotes[0] = REMOTE6;
        dp.vnis().insert(VNI, vni, 0).unwrap();
        dp.allow6(VNI, REMOTE6, 128);
        dp
    }

    /// Lets the IPv6 prefix `addr/len` send VXLAN into `vni`.
    fn allow6(&mut self, vni: u32, addr: [u8; 16], len: u32) {
        let key = Key::new(32 + len, allow_data(vni, &addr));
        self.dp.maps.allowed.insert(&key, 1, 0).unwrap();
    }

    /// REMOTE6's next hop: REMOTE_MAC out of `LO`.
    fn neigh_remote6(&mut self) {
        let n = NeighEntry {
            dmac: REMOTE_MAC,
            smac: UPLINK_MAC,
            ifindex: LO,
        };
        self.neigh().insert(REMOTE6, n, 0).unwrap();
    }
}

/// VXLAN over IPv6 around `inner`, from REMOTE6 (REMOTE_MAC) to `dst`.
fn vxlan6(inner: &[u8], vni: u32, dst: [u8; 16], dport: u16, flags: u8) -> Vec<u8> {
    frames::vxlan6_frame(
        UPLINK_MAC, REMOTE_MAC, REMOTE6, dst, 50_000, dport, vni, flags, inner,
    )
}

#[test]
fn xdp_decap_ipv6_exact_output_learns_the_ipv6_vtep() {
    let mut dp = Dp::new6();
    let port_a = dp.port_a;
    dp.pin_port(C1_MAC, port_a);
    let inner = inner_ipv4(C1_MAC, C2_MAC, 0);
    let f = vxlan6(&inner, VNI, LOCAL6, 4789, 0x08);
    assert!(
        frames::udp6_checksum_ok(&f),
        "harness: the frame's checksum"
    );
    let (action, out) = dp.run_xdp(&f);
    assert_eq!(action, XDP_PASS, "{:?}", dp.dp.counters());
    let meta_len = std::mem::size_of::<XdpMeta>();
    assert_eq!(
        meta_of(&out),
        XdpMeta {
            magic: META_MAGIC,
            key: META_KEY,
            vni: VNI,
            ifindex: port_a,
            flags: PORT_F_PEER
        }
    );
    assert_eq!(
        &out[meta_len..],
        &inner[..],
        "70 bytes removed, inner byte for byte"
    );
    assert_eq!(
        (dp.counter(Counter::RxDecap), dp.counter(Counter::RxDecap6)),
        (1, 1)
    );
    let e = dp.fdb_get(C2_MAC).expect("the sender's MAC is learned");
    assert_eq!((e.remote, e.ifindex), (REMOTE6, 0), "behind the IPv6 VTEP");
    let n = dp.neigh().get(&REMOTE6, 0).expect("the way back recorded");
    assert_eq!((n.dmac, n.smac), (REMOTE_MAC, UPLINK_MAC));

    // Ethernet padding is trimmed.
    let mut padded = f.clone();
    padded.extend_from_slice(&[0xee; 6]);
    let (action, out) = dp.run_xdp(&padded);
    assert_eq!(action, XDP_PASS);
    assert_eq!(&out[meta_len..], &inner[..], "padding gone");
    assert_eq!(dp.counter(Counter::RxDecap6), 2);
}

#[test]
fn tc_decap_ipv6_exact_output_learns_the_ipv6_vtep() {
    let mut dp = Dp::new6();
    dp.set_cfg_flags(CFG_F_LEARNING | CFG_F_TC_DECAP);
    let port_a = dp.port_a;
    dp.pin_port(C1_MAC, port_a);
    let inner = inner_ipv4(C1_MAC, C2_MAC, 0);
    let mut f = vxlan6(&inner, VNI, LOCAL6, 4789, 0x08);
    f.extend_from_slice(&[0xee; 6]);
    let (action, out) = dp.run_tc(Prog::TcUplink, &f, LO);
    assert_eq!(action, TC_ACT_REDIRECT, "{:?}", dp.dp.counters());
    assert_eq!(
        out, inner,
        "exactly the inner frame (outer headers and padding gone)"
    );
    assert_eq!(
        (dp.counter(Counter::RxDecap), dp.counter(Counter::RxDecap6)),
        (1, 1)
    );
    let e = dp.fdb_get(C2_MAC).expect("the sender's MAC is learned");
    assert_eq!((e.remote, e.ifindex, e.flags), (REMOTE6, 0, 0));
    assert_eq!(
        dp.neigh().get(&REMOTE6, 0).map(|n| n.dmac).ok(),
        Some(REMOTE_MAC)
    );
}

/// What a bad-input case must come to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Want {
    /// Passed to the kernel untouched, counted `rx_pass`.
    Pass,
    /// Dropped, counted under this reason.
    Drop(Counter),
    /// A wrong UDP checksum: TC drops it as `drop_udp_csum`; XDP either
    /// does too, or hands it to TC untouched (`rx_csum_deferred`, TC-decap
    /// metadata), as for IPv4.
    Csum,
    /// Decapsulated (`rx_decap`, `rx_decap_ipv6`), the inner frame exact.
    Decap,
}

type Setup6 = Box<dyn Fn(&mut Dp)>;

/// One case of the IPv6 corpus: what, the map set-up beyond [`Dp::new6`],
/// the damage done to the good frame, and the outcome.
struct Case6 {
    what: &'static str,
    /// `None`: the shared datapath of the plain cases.
    setup: Option<Setup6>,
    damage: Mutation,
    want: Want,
}

fn c6(
    what: &'static str,
    want: Want,
    setup: Option<fn(&mut Dp)>,
    damage: impl Fn(&mut Vec<u8>) + 'static,
) -> Case6 {
    Case6 {
        what,
        setup: setup.map(|f| Box::new(f) as Setup6),
        damage: Box::new(damage),
        want,
    }
}

/// Sets the outer IPv6 source of `f` and its UDP checksum.
fn set_src6(f: &mut [u8], ip: [u8; 16]) {
    f[OFF6_IP + 8..OFF6_IP + 24].copy_from_slice(&ip);
    frames::set_udp6_checksum(f);
}

/// Inserts an 8-byte extension header `nh` (whose next header is UDP)
/// between the IPv6 header and UDP; `body` is its 6 bytes after the
/// next-header and length bytes.
fn insert_ext(f: &mut Vec<u8>, nh: u8, body: [u8; 6]) {
    let mut ext = vec![17, 0];
    ext.extend_from_slice(&body);
    f.splice(OFF6_UDP..OFF6_UDP, ext);
    f[OFF6_IP + 6] = nh;
    let plen = (f.len() - OFF6_UDP) as u16;
    f[OFF6_IP + 4..OFF6_IP + 6].copy_from_slice(&plen.to_be_bytes());
}

/// The bad-input corpus for outer IPv6 headers, with a positive control
/// first, each case with the exact outcome it must come to (by XDP and by
/// TC decapsulation alike).
fn ipv6_corpus() -> Vec<Case6> {
    let none: Option<fn(&mut Dp)> = None;
    let allow_all: Option<fn(&mut Dp)> = Some(|dp| dp.allow6(VNI, [0; 16], 0));
    let mut v = vec![
        c6("good (positive control)", Want::Decap, none, |_| {}),
        c6(
            "to a joined group (group MAC)",
            Want::Decap,
            Some(|dp| {
                dp.dp.maps.groups.insert(GROUP6, 0, 0).unwrap();
            }),
            |f| {
                f[..6].copy_from_slice(&GROUP6_MAC);
                f[OFF6_IP + 24..OFF6_IP + 40].copy_from_slice(&GROUP6);
                frames::set_udp6_checksum(f);
            },
        ),
        c6("to a group not joined", Want::Pass, none, |f| {
            f[..6].copy_from_slice(&GROUP6_MAC);
            f[OFF6_IP + 24..OFF6_IP + 40].copy_from_slice(&GROUP6);
            frames::set_udp6_checksum(f);
        }),
        c6("hop-by-hop options before UDP", Want::Pass, none, |f| {
            // PadN of 4 bytes.
            insert_ext(f, 0, [1, 4, 0, 0, 0, 0]);
        }),
        c6("routing header before UDP", Want::Pass, none, |f| {
            insert_ext(f, 43, [0, 0, 0, 0, 0, 0]);
        }),
        c6("destination options before UDP", Want::Pass, none, |f| {
            insert_ext(f, 60, [1, 4, 0, 0, 0, 0]);
        }),
        c6("a first fragment", Want::Pass, none, |f| {
            // Offset 0, M set, identification 0x01020304.
            insert_ext(f, 44, [0, 1, 1, 2, 3, 4]);
        }),
        c6("a later fragment", Want::Pass, none, |f| {
            insert_ext(f, 44, [0x05, 0x00, 1, 2, 3, 4]);
        }),
        c6("next header TCP", Want::Pass, none, |f| f[OFF6_IP + 6] = 6),
        c6("not our address", Want::Pass, none, |f| {
            f[OFF6_IP + 39] = 0x99;
            frames::set_udp6_checksum(f);
        }),
        c6("another UDP port", Want::Pass, none, |f| {
            f[OFF6_UDP + 2..OFF6_UDP + 4].copy_from_slice(&4790u16.to_be_bytes());
            frames::set_udp6_checksum(f);
        }),
        c6(
            "another host's MAC",
            Want::Drop(Counter::DropOtherHost),
            none,
            |f| f[..6].copy_from_slice(&[0x02, 0xbb, 0, 0, 0, 1]),
        ),
        c6(
            "version 4 behind the IPv6 ethertype",
            Want::Drop(Counter::DropIpMalformed),
            none,
            |f| f[OFF6_IP] = 0x40 | (f[OFF6_IP] & 0x0f),
        ),
        c6(
            "payload length beyond the frame",
            Want::Drop(Counter::DropIpLength),
            none,
            |f| f[OFF6_IP + 4..OFF6_IP + 6].copy_from_slice(&2000u16.to_be_bytes()),
        ),
        c6(
            "payload length below a UDP header",
            Want::Drop(Counter::DropIpLength),
            none,
            |f| f[OFF6_IP + 4..OFF6_IP + 6].copy_from_slice(&4u16.to_be_bytes()),
        ),
        c6(
            "source: our own address",
            Want::Drop(Counter::DropBadOuterSrc),
            allow_all,
            |f| set_src6(f, LOCAL6),
        ),
        c6(
            "source: multicast",
            Want::Drop(Counter::DropBadOuterSrc),
            allow_all,
            |f| set_src6(f, GROUP6),
        ),
        c6(
            "source: ::",
            Want::Drop(Counter::DropBadOuterSrc),
            allow_all,
            |f| set_src6(f, [0; 16]),
        ),
        c6(
            "source: ::1",
            Want::Drop(Counter::DropBadOuterSrc),
            allow_all,
            |f| {
                let mut lo = [0; 16];
                lo[15] = 1;
                set_src6(f, lo);
            },
        ),
        c6(
            "source: IPv4-mapped",
            Want::Drop(Counter::DropBadOuterSrc),
            Some(|dp| {
                dp.allow6(VNI, [0; 16], 0);
                dp.allow(VNI, REMOTE, 32);
            }),
            |f| set_src6(f, vtep_v4(REMOTE)),
        ),
        c6(
            "UDP length below the payload length",
            Want::Drop(Counter::DropUdpLength),
            none,
            |f| {
                let ulen = u16::from_be_bytes([f[OFF6_UDP + 4], f[OFF6_UDP + 5]]) - 2;
                f[OFF6_UDP + 4..OFF6_UDP + 6].copy_from_slice(&ulen.to_be_bytes());
                frames::set_udp6_checksum(f);
            },
        ),
        c6(
            "UDP length above the payload length",
            Want::Drop(Counter::DropUdpLength),
            none,
            |f| {
                let ulen = u16::from_be_bytes([f[OFF6_UDP + 4], f[OFF6_UDP + 5]]) + 2;
                f[OFF6_UDP + 4..OFF6_UDP + 6].copy_from_slice(&ulen.to_be_bytes());
            },
        ),
        c6(
            "UDP checksum 0",
            Want::Drop(Counter::DropUdp6ZeroCsum),
            none,
            |f| f[OFF6_UDP + 6..OFF6_UDP + 8].fill(0),
        ),
        c6("UDP checksum wrong", Want::Csum, none, |f| {
            f[OFF6_UDP + 7] ^= 0x01;
        }),
        c6("payload damaged", Want::Csum, none, |f| {
            let last = f.len() - 1;
            f[last] ^= 0x40;
        }),
        c6(
            "I flag clear",
            Want::Drop(Counter::DropVxlanFlags),
            none,
            |f| {
                f[OFF6_VXLAN] = 0;
                frames::set_udp6_checksum(f);
            },
        ),
        c6(
            "unknown VNI",
            Want::Drop(Counter::DropUnknownVni),
            none,
            |f| {
                f[OFF6_VXLAN + 6] ^= 0x40;
                frames::set_udp6_checksum(f);
            },
        ),
        c6(
            "an IPv4 VNI over IPv6",
            Want::Drop(Counter::DropFamily),
            Some(|dp| {
                let info = VniInfo {
                    n_ports: 1,
                    ports: {
                        let mut p = [0; vxlan_common::MAX_PORTS];
                        p[0] = LO;
                        p
                    },
                    flags: VNI_F_ANY_SENDER,
                    ..Default::default()
                };
                dp.vnis().insert(43, info, 0).unwrap();
                dp.allow6(43, REMOTE6, 128);
            }),
            |f| {
                f[OFF6_VXLAN + 4..OFF6_VXLAN + 8].copy_from_slice(&(43u32 << 8).to_be_bytes());
                frames::set_udp6_checksum(f);
            },
        ),
        c6(
            "sender not allowed",
            Want::Drop(Counter::DropSpoofed),
            none,
            |f| {
                let mut other = REMOTE6;
                other[15] = 0x99;
                set_src6(f, other);
            },
        ),
        c6(
            "inner Ethernet cut",
            Want::Drop(Counter::DropInnerTruncated),
            none,
            |f| {
                f.truncate(OFF6_INNER + 10);
                frames::fix6_lengths(f);
            },
        ),
    ];
    // An allowed prefix lets the same sender in (positive control of
    // "sender not allowed").
    v.push(c6(
        "sender allowed by a /64",
        Want::Decap,
        Some(|dp| {
            let mut p = REMOTE6;
            p[8..].fill(0);
            dp.allow6(VNI, p, 64);
        }),
        |f| {
            let mut other = REMOTE6;
            other[15] = 0x99;
            set_src6(f, other);
        },
    ));
    v
}

/// Checks the outcome of one frame on one path (`xdp` or TC decap):
/// action, the counter of the outcome exactly 1, nothing decapsulated or
/// learned unless it should be, bytes untouched when passed.
fn check_case6(dp: &mut Dp, xdp: bool, f: &[u8], inner: &[u8], c: &Case6) {
    let path = if xdp { "xdp" } else { "tc" };
    let what = c.what;
    // The datapath may be shared by several cases: counters as deltas,
    // and the entry learned from a positive case removed afterwards.
    let before = dp.dp.counters().unwrap();
    let (action, out) = if xdp {
        dp.run_xdp(f)
    } else {
        dp.run_tc(Prog::TcUplink, f, LO)
    };
    let after = dp.dp.counters().unwrap();
    let d = |k: Counter| after[k as usize] - before[k as usize];
    let nonzero: Vec<(Counter, u64)> = Counter::ALL
        .iter()
        .map(|k| (*k, d(*k)))
        .filter(|(_, n)| *n != 0)
        .collect();
    let ctx = format!("{path}: {what}: action {action}, counter changes {nonzero:?}");
    let meta = std::mem::size_of::<XdpMeta>();
    let learned = dp.fdb_get(C2_MAC).is_some();
    let _ = dp.fdb().remove(&FdbKey::new(VNI, C2_MAC));
    match c.want {
        Want::Decap => {
            assert_eq!(
                action,
                if xdp { XDP_PASS } else { TC_ACT_REDIRECT },
                "{ctx}"
            );
            assert_eq!(d(Counter::RxDecap), 1, "{ctx}");
            assert_eq!(d(Counter::RxDecap6), 1, "{ctx}");
            let got = if xdp { &out[meta..] } else { &out[..] };
            assert_eq!(got, inner, "{ctx}: inner frame byte for byte");
            assert!(learned, "{ctx}: not learned");
            return;
        }
        Want::Pass => {
            assert_eq!(action, if xdp { XDP_PASS } else { TC_ACT_UNSPEC }, "{ctx}");
            assert_eq!(out, f, "{ctx}: not untouched");
            assert_eq!(d(Counter::RxPass), 1, "{ctx}");
        }
        Want::Drop(reason) => {
            assert_eq!(action, if xdp { XDP_DROP } else { TC_ACT_SHOT }, "{ctx}");
            assert_eq!(d(reason), 1, "{ctx}: not counted as {reason:?}");
        }
        Want::Csum if xdp && action == XDP_PASS => {
            assert_eq!(d(Counter::RxCsumDeferred), 1, "{ctx}");
            assert_eq!(&out[meta..], f, "{ctx}: handed on modified");
            let m = meta_of(&out);
            assert_eq!(m.magic, META_MAGIC_TC_DECAP, "{ctx}: metadata {m:?}");
        }
        Want::Csum => {
            assert_eq!(action, if xdp { XDP_DROP } else { TC_ACT_SHOT }, "{ctx}");
            assert_eq!(d(Counter::DropUdpCsum), 1, "{ctx}");
        }
    }
    assert_eq!(d(Counter::RxDecap), 0, "{ctx}: decapsulated");
    assert_eq!(d(Counter::RxDecap6), 0, "{ctx}");
    assert!(!learned, "{ctx}: learned");
    assert_eq!(d(Counter::Learn), 0, "{ctx}: learned");
    let src: [u8; 16] = f[OFF6_IP + 8..OFF6_IP + 24].try_into().unwrap();
    assert!(
        src == REMOTE6 || dp.neigh().get(&src, 0).is_err(),
        "{ctx}: a next hop recorded for {src:02x?}"
    );
}

/// The corpus through XDP and through TC decapsulation; every case
/// asserts its exact outcome and counter, and the positive controls (the
/// good frame, a joined group, an allowed prefix) are decapsulated to the
/// exact inner frame. The plain cases share one datapath per path (loading
/// one costs seconds); cases with maps of their own get a fresh one. The
/// inner frame is unicast to a known port (floods: see
/// `tc_decap_ipv6_floods_broadcast_and_trims_padding`).
#[test]
fn ipv6_outer_bad_input_corpus_xdp_and_tc() {
    let inner = inner_ipv4(C1_MAC, C2_MAC, 0);
    let good = vxlan6(&inner, VNI, LOCAL6, 4789, 0x08);
    let fresh = |xdp: bool| {
        let mut dp = Dp::new6();
        let port_a = dp.port_a;
        dp.pin_port(C1_MAC, port_a);
        if !xdp {
            dp.set_cfg_flags(CFG_F_LEARNING | CFG_F_TC_DECAP);
        }
        dp
    };
    let mut shared = [fresh(true), fresh(false)];
    for c in ipv6_corpus() {
        let mut f = good.clone();
        (c.damage)(&mut f);
        for (i, xdp) in [true, false].into_iter().enumerate() {
            match &c.setup {
                None => check_case6(&mut shared[i], xdp, &f, &inner, &c),
                Some(setup) => {
                    let mut dp = fresh(xdp);
                    setup(&mut dp);
                    check_case6(&mut dp, xdp, &f, &inner, &c);
                }
            }
        }
    }
}

/// A broadcast inner frame over IPv6 through TC decapsulation: one copy
/// per local port, the original redirected, padding trimmed, learned.
#[test]
fn tc_decap_ipv6_floods_broadcast_and_trims_padding() {
    let mut dp = Dp::new6();
    dp.set_cfg_flags(CFG_F_LEARNING | CFG_F_TC_DECAP);
    let inner = inner_arp(C2_MAC);
    let mut f = vxlan6(&inner, VNI, LOCAL6, 4789, 0x08);
    f.extend_from_slice(&[0xee; 6]);
    let (action, out) = dp.run_tc(Prog::TcUplink, &f, LO);
    let counters = dp.dp.counters().unwrap();
    let nonzero: Vec<(Counter, u64)> = Counter::ALL
        .iter()
        .map(|k| (*k, counters[*k as usize]))
        .filter(|(_, n)| *n != 0)
        .collect();
    assert_eq!(action, TC_ACT_REDIRECT, "counters {nonzero:?}");
    assert_eq!(out, inner, "inner frame, padding gone");
    assert_eq!(
        dp.counter(Counter::RxFloodCopy),
        2,
        "one copy per local port"
    );
    assert_eq!(dp.counter(Counter::RxDecap6), 1);
    assert!(dp.fdb_get(C2_MAC).is_some(), "learned from a broadcast too");
    // The same through XDP (positive control of the frame).
    let mut x = Dp::new6();
    let (action, out) = x.run_xdp(&f);
    assert_eq!(action, XDP_PASS);
    assert_eq!(&out[std::mem::size_of::<XdpMeta>()..], &inner[..]);
}

/// The other way round: an IPv6 VNI receiving over IPv4 is `drop_family`;
/// the same frame into an IPv4 VNI is decapsulated (positive control).
#[test]
fn ipv6_vni_over_ipv4_is_a_family_drop() {
    let inner = inner_arp(C2_MAC);
    let f = vxlan_frame(&inner, VNI, LOCAL, 4789, 0x08);
    for xdp in [true, false] {
        for v6 in [false, true] {
            let mut dp = if v6 { Dp::new6() } else { Dp::new() };
            if !xdp {
                dp.set_cfg_flags(CFG_F_LEARNING | CFG_F_TC_DECAP);
            }
            let (action, _) = if xdp {
                dp.run_xdp(&f)
            } else {
                dp.run_tc(Prog::TcUplink, &f, LO)
            };
            let ctx = format!("xdp {xdp}, IPv6 VNI {v6}: action {action}");
            if v6 {
                assert_eq!(action, if xdp { XDP_DROP } else { TC_ACT_SHOT }, "{ctx}");
                assert_eq!(dp.counter(Counter::DropFamily), 1, "{ctx}");
                assert_eq!(dp.counter(Counter::RxDecap), 0, "{ctx}");
                assert!(dp.fdb_get(C2_MAC).is_none(), "{ctx}: learned");
            } else {
                assert_eq!(dp.counter(Counter::RxDecap), 1, "{ctx}");
                assert_eq!(dp.counter(Counter::DropFamily), 0, "{ctx}");
            }
        }
    }
}

/// The receiver's check of the UDP checksum of a frame over IPv6, by
/// summing: pseudo-header (addresses, length, next header 17) and the UDP
/// datagram (as long as the frame) fold to 0xffff; the field is not 0.
fn assert_udp6_checksum(out: &[u8], what: &str) {
    let udp = &out[OFF6_UDP..];
    let mut pseudo = Vec::new();
    pseudo.extend_from_slice(&out[OFF6_IP + 8..OFF6_IP + 40]);
    pseudo.extend_from_slice(&(udp.len() as u32).to_be_bytes());
    pseudo.extend_from_slice(&[0, 0, 0, 17]);
    assert_ne!(&udp[6..8], &[0, 0], "{what}: UDP checksum present");
    assert_eq!(
        frames::fold(frames::sum16(&pseudo) + frames::sum16(udp)),
        0xffff,
        "{what}: UDP checksum verifies"
    );
}

/// Checks the 70 bytes of outer headers of `out` (around `inner`) field by
/// field against `wire6::outer_hdr6` for `dst`, `dst_mac`, `hop` and
/// traffic class `tc` (the UDP checksum excluded: checked by summing);
/// returns (UDP source port, flow label).
fn assert_outer6(
    out: &[u8],
    inner: &[u8],
    dst: [u8; 16],
    dst_mac: [u8; 6],
    hop: u8,
    tc: u8,
    what: &str,
) -> (u16, u32) {
    assert_eq!(
        out.len(),
        ENCAP6_LEN + inner.len(),
        "{what}: 70 bytes of encapsulation"
    );
    let sport = u16::from_be_bytes([out[OFF6_UDP], out[OFF6_UDP + 1]]);
    let label = u32::from_be_bytes([
        0,
        out[OFF6_IP + 1] & 0x0f,
        out[OFF6_IP + 2],
        out[OFF6_IP + 3],
    ]);
    let o = Outer {
        src_mac: UPLINK_MAC,
        dst_mac,
        src_port: sport,
        dst_port: 4789,
        vni: VNI,
        ttl: hop,
        tos: tc,
        ..Outer::default()
    };
    let want = outer_hdr6(&o, &LOCAL6, &dst, label, inner.len() as u16, 0);
    let want = want.bytes();
    for (name, r) in [
        ("Ethernet", 0..14),
        (
            "IPv6 version, traffic class, flow label",
            OFF6_IP..OFF6_IP + 4,
        ),
        ("IPv6 payload length", OFF6_IP + 4..OFF6_IP + 6),
        ("IPv6 next header, hop limit", OFF6_IP + 6..OFF6_IP + 8),
        ("IPv6 source", OFF6_IP + 8..OFF6_IP + 24),
        ("IPv6 destination", OFF6_IP + 24..OFF6_IP + 40),
        ("UDP ports and length", OFF6_UDP..OFF6_UDP + 6),
        ("VXLAN", OFF6_VXLAN..OFF6_INNER),
    ] {
        assert_eq!(&out[r.clone()], &want[r], "{what}: {name}");
    }
    // And by hand, for the fields a shared mistake could hide.
    assert_eq!(&out[12..14], &[0x86, 0xdd], "{what}");
    assert_eq!(out[OFF6_IP] >> 4, 6, "{what}: version");
    assert_eq!(
        ((out[OFF6_IP] & 0x0f) << 4) | (out[OFF6_IP + 1] >> 4),
        tc,
        "{what}: traffic class"
    );
    assert_eq!(
        usize::from(u16::from_be_bytes([out[OFF6_IP + 4], out[OFF6_IP + 5]])),
        inner.len() + 16,
        "{what}: payload length"
    );
    assert_eq!((out[OFF6_IP + 6], out[OFF6_IP + 7]), (17, hop), "{what}");
    assert!(
        (32768..60999).contains(&sport),
        "{what}: source port {sport}"
    );
    assert_eq!(
        &out[OFF6_VXLAN..OFF6_INNER],
        &[0x08, 0, 0, 0, 0, 0, VNI as u8, 0],
        "{what}"
    );
    assert_eq!(
        &out[OFF6_INNER..],
        inner,
        "{what}: inner frame byte for byte"
    );
    assert_udp6_checksum(out, what);
    (sport, label)
}

/// Whether some flow hash gives both `label` (`wire6::flow_label`) and the
/// UDP source port `sport` (`wire::flow_src_port` over 32768..60999): the
/// label and the port come from one hash. The label fixes 20 of its 32
/// bits; the other 12 are tried.
fn label_and_port_agree(label: u32, sport: u16) -> bool {
    (0..4096u32).any(|mid| {
        let hash = ((label & 0xffff) << 16) | (mid << 4) | (label >> 16);
        flow_label(hash) == label && vxlan_common::wire::flow_src_port(hash, 32768, 60999) == sport
    })
}

/// `Config::hop_limit` in `tc_encap_ipv6_exact_outer_header`.
const HOP6: u8 = 57;

#[test]
fn tc_encap_ipv6_exact_outer_header() {
    let mut dp = Dp::new6();
    // The uplink's IPv6 hop limit, not the IPv4 TTL (64).
    let mut cfg = dp.dp.maps.config.get(&0, 0).expect("CONFIG");
    cfg.hop_limit = HOP6;
    dp.dp.set_config(cfg).expect("CONFIG");
    dp.pin_vtep(C2_MAC, REMOTE6);
    dp.neigh_remote6();
    let inner = inner_ipv4(C2_MAC, C1_MAC, 0xb9); // DSCP 46, ECT(1)
    let (action, out) = dp.run_tc(Prog::TcPort, &inner, LO);
    assert_eq!(action, TC_ACT_REDIRECT, "{:?}", dp.dp.counters());
    let (sport, label) = assert_outer6(&out, &inner, REMOTE6, REMOTE_MAC, HOP6, 0x01, "unicast");
    assert!(
        label_and_port_agree(label, sport),
        "flow label {label:#x} and source port {sport} come from different hashes"
    );
    assert_eq!(
        (dp.counter(Counter::TxEncap), dp.counter(Counter::TxEncap6)),
        (1, 1)
    );
    // The same flow: the same port and label; another flow: another label.
    let (_, again) = dp.run_tc(Prog::TcPort, &inner, LO);
    assert_eq!(
        &again[..OFF6_UDP + 2],
        &out[..OFF6_UDP + 2],
        "same flow, same headers"
    );
    let other = inner_udp(C2_MAC, C1_MAC, 0, 54, b"another flow");
    let (_, o2) = dp.run_tc(Prog::TcPort, &other, LO);
    let (sport2, label2) = assert_outer6(&o2, &other, REMOTE6, REMOTE_MAC, HOP6, 0, "another flow");
    assert_ne!(label2, label, "two flows, one flow label");
    assert!(label_and_port_agree(label2, sport2));
    // Odd inner lengths: the checksum's tail.
    for len in [61, 62, 63, 487, 1001] {
        let mut i = inner_ipv4_len(len);
        i[..6].copy_from_slice(&C2_MAC);
        i[6..12].copy_from_slice(&C1_MAC);
        let (action, out) = dp.run_tc(Prog::TcPort, &i, LO);
        assert_eq!(action, TC_ACT_REDIRECT, "{len}");
        assert_outer6(
            &out,
            &i,
            REMOTE6,
            REMOTE_MAC,
            HOP6,
            0,
            &format!("inner of {len} bytes"),
        );
    }
    let learned = dp.fdb_get(C1_MAC).expect("source MAC learned on the port");
    assert_eq!((learned.ifindex, learned.remote), (LO, VTEP_NONE));
}

#[test]
fn tc_flood_to_an_ipv6_group_and_remotes() {
    // Group mode: one copy to ff05::100, hop limit mcast_ttl (1), the
    // group's MAC.
    let mut dp = Dp::new6();
    let mut vni = dp.vnis().get(&VNI, 0).unwrap();
    vni.n_remotes = 0;
    vni.group = GROUP6;
    vni.flags |= VNI_F_ANY_SENDER;
    dp.vnis().insert(VNI, vni, 0).unwrap();
    let inner = inner_arp(C1_MAC);
    let (action, out) = dp.run_tc(Prog::TcPort, &inner, LO);
    assert_eq!(action, TC_ACT_SHOT, "copies leave by clone_redirect");
    assert_outer6(&out, &inner, GROUP6, GROUP6_MAC, 1, 0, "group copy");
    assert_eq!(dp.counter(Counter::TxGroupCopy), 1);
    assert_eq!(dp.counter(Counter::TxEncap6), 1, "{:?}", dp.dp.counters());

    // Head-end replication to the IPv6 remote: hop limit ttl (64).
    let mut dp = Dp::new6();
    dp.neigh_remote6();
    let (action, out) = dp.run_tc(Prog::TcPort, &inner, LO);
    assert_eq!(action, TC_ACT_SHOT);
    assert_outer6(&out, &inner, REMOTE6, REMOTE_MAC, 64, 0, "flood copy");
    assert_eq!(dp.counter(Counter::TxFloodCopy), 1);
    assert_eq!(dp.counter(Counter::TxEncap6), 1);
}

/// An inner IPv6/UDP frame (c1 -> c2, fd00:42::2 -> fd00:42::3) of exactly
/// `len` bytes.
fn inner_ipv6_len(len: usize) -> Vec<u8> {
    let mut f = frames::eth(C2_MAC, C1_MAC, 0x86dd);
    let plen = (len - 54) as u16;
    let src = [0xfd, 0, 0, 0x42, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2];
    let dst = [0xfd, 0, 0, 0x42, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 3];
    f.extend_from_slice(&frames::ip6_header(src, dst, plen, 17, 64, 0, 0));
    f.extend_from_slice(&12345u16.to_be_bytes());
    f.extend_from_slice(&53u16.to_be_bytes());
    f.extend_from_slice(&plen.to_be_bytes());
    f.extend_from_slice(&[0, 0]);
    f.extend((0..len - 62).map(|i| (i * 13 + 1) as u8));
    f
}

/// Over an IPv6 underlay the overlay MTU is uplink − 70 (1430): an inner
/// packet of 1430 bytes is encapsulated, one of 1431 is refused with an
/// ICMP error carrying 1430 (frag-needed for IPv4 with DF, Packet Too Big
/// for IPv6, the exact bytes `frames::icmp6_too_big` builds).
#[test]
fn tc_overlay_mtu_over_ipv6_is_uplink_minus_70() {
    let mut dp = Dp::new6();
    dp.pin_vtep(C2_MAC, REMOTE6);
    dp.neigh_remote6();
    // IPv4, DF (inner_ipv4_len keeps inner_udp's DF).
    let fits = {
        let mut f = inner_ipv4_len(14 + 1430);
        f[..6].copy_from_slice(&C2_MAC);
        f[6..12].copy_from_slice(&C1_MAC);
        f
    };
    let (action, out) = dp.run_tc(Prog::TcPort, &fits, LO);
    assert_eq!(
        action,
        TC_ACT_REDIRECT,
        "1430 bytes fit: {:?}",
        dp.dp.counters()
    );
    assert_outer6(
        &out,
        &fits,
        REMOTE6,
        REMOTE_MAC,
        64,
        0,
        "1430-byte IPv4 packet",
    );
    let mut big = inner_ipv4_len(14 + 1431);
    big[..6].copy_from_slice(&C2_MAC);
    big[6..12].copy_from_slice(&C1_MAC);
    let (_, out) = dp.run_tc(Prog::TcPort, &big, LO);
    assert_eq!(
        dp.counter(Counter::TxIcmpFragNeeded),
        1,
        "{:?}",
        dp.dp.counters()
    );
    assert_eq!(dp.counter(Counter::DropTooBig), 1);
    // Ethernet, IPv4 (20), ICMP type 3 code 4, next-hop MTU at bytes 6..8.
    let icmp = &out[14 + 20..];
    assert_eq!((icmp[0], icmp[1]), (3, 4), "fragmentation needed");
    assert_eq!(u16::from_be_bytes([icmp[6], icmp[7]]), 1430, "next-hop MTU");

    // IPv6.
    let fits = inner_ipv6_len(14 + 1430);
    let (action, out) = dp.run_tc(Prog::TcPort, &fits, LO);
    assert_eq!(action, TC_ACT_REDIRECT, "1430 bytes fit");
    assert_outer6(
        &out,
        &fits,
        REMOTE6,
        REMOTE_MAC,
        64,
        0,
        "1430-byte IPv6 packet",
    );
    let big = inner_ipv6_len(14 + 1431);
    let (_, out) = dp.run_tc(Prog::TcPort, &big, LO);
    assert_eq!(
        dp.counter(Counter::TxIcmp6TooBig),
        1,
        "{:?}",
        dp.dp.counters()
    );
    let want = frames::icmp6_too_big(&big, 1430).expect("a quote");
    assert_eq!(out, want, "the Packet Too Big, byte for byte, MTU 1430");
}

/// The IPv4 underlay's overlay MTU is uplink − 50 (1450): an inner packet
/// of 1450 bytes is encapsulated, one of 1451 with DF is refused with
/// "fragmentation needed" carrying 1450.
#[test]
fn tc_overlay_mtu_over_ipv4_is_uplink_minus_50() {
    let mut dp = Dp::new();
    dp.pin_remote(C2_MAC, REMOTE);
    dp.neigh_remote();
    let frame = |l3: usize| {
        let mut f = inner_ipv4_len(14 + l3);
        f[..6].copy_from_slice(&C2_MAC);
        f[6..12].copy_from_slice(&C1_MAC);
        f
    };
    let fits = frame(1450);
    let (action, out) = dp.run_tc(Prog::TcPort, &fits, LO);
    assert_eq!(action, TC_ACT_REDIRECT, "1450 bytes fit");
    assert_eq!(out.len(), ENCAP_LEN + fits.len());
    let big = frame(1451);
    let (_, out) = dp.run_tc(Prog::TcPort, &big, LO);
    let counters = dp.dp.counters().unwrap();
    let nonzero: Vec<(Counter, u64)> = Counter::ALL
        .iter()
        .map(|k| (*k, counters[*k as usize]))
        .filter(|(_, n)| *n != 0)
        .collect();
    assert_eq!(
        dp.counter(Counter::TxIcmpFragNeeded),
        1,
        "a 1451-byte DF packet: counters {nonzero:?}"
    );
    let icmp = &out[14 + 20..];
    assert_eq!((icmp[0], icmp[1]), (3, 4), "fragmentation needed");
    assert_eq!(u16::from_be_bytes([icmp[6], icmp[7]]), 1450, "next-hop MTU");
}

/// A unicast non-IP inner frame (an ARP reply to c1, 42 bytes: shorter
/// than an IPv6 header after its Ethernet header) through TC
/// decapsulation over IPv6, to a known port: delivered exactly. Positive
/// control: the same inner frame over IPv4.
#[test]
fn tc_decap_ipv6_delivers_a_short_non_ip_frame() {
    let mut inner = frames::arp_request(C2_MAC, C2_IP, C1_IP);
    inner[..6].copy_from_slice(&C1_MAC);
    inner[21] = 2; // reply
    for v6 in [false, true] {
        let mut dp = if v6 { Dp::new6() } else { Dp::new() };
        dp.set_cfg_flags(CFG_F_LEARNING | CFG_F_TC_DECAP);
        let port_a = dp.port_a;
        dp.pin_port(C1_MAC, port_a);
        let f = if v6 {
            vxlan6(&inner, VNI, LOCAL6, 4789, 0x08)
        } else {
            vxlan_frame(&inner, VNI, LOCAL, 4789, 0x08)
        };
        let (action, out) = dp.run_tc(Prog::TcUplink, &f, LO);
        let counters = dp.dp.counters().unwrap();
        let nonzero: Vec<(Counter, u64)> = Counter::ALL
            .iter()
            .map(|k| (*k, counters[*k as usize]))
            .filter(|(_, n)| *n != 0)
            .collect();
        let what = if v6 { "over IPv6" } else { "over IPv4" };
        assert_eq!(action, TC_ACT_REDIRECT, "{what}: counters {nonzero:?}");
        assert_eq!(out, inner, "{what}: the inner frame exactly");
    }
}
