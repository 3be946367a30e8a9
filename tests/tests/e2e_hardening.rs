//! End-to-end tests of the datapath hardening (issue 10), in network
//! namespaces: a tenant's VLAN tag stays inside the tunnel, in both
//! directions with the kernel's vxlan as the peer (checked with captures on
//! the underlay and in the containers), and crafted frames injected from
//! the underlay switch (reflected and martian outer sources, another
//! host's MAC, UDP checksums, bad inner source MACs, ECN) are refused and
//! counted, next to positive controls that are delivered.
//!
//! Run as root, serially (`cargo xtask test -- e2e_hardening`, or the
//! binary with `--test-threads=1` and `VXLAN_FWD_BIN`). Needs `tcpdump`.

use std::{path::PathBuf, time::Duration};

use vxlan_common::wire::{ETH_HLEN, OFF_IP, OFF_UDP};
use vxlan_tests::{
    Forwarder, H1_IP, H2_IP, NetNs, Topology, fdb_find,
    hostile_net::{
        RawSender, collect_udp, fix_ip_checksum, parse_mac, udp_frame, udp_listener, vxlan_frame,
    },
    inject::{FAKE_MAC, Injector, MARK_PORT},
    ipv4, ping_result,
    process::Process,
    scenario::{C1_IP, C2_IP, Pick, Setup},
    traffic::iperf3,
    wait_until,
};

const VID: u16 = 100;

/// Pings until one reply came (warm-up: ARP, learning), then requires
/// every reply of `count`.
fn assert_connected(from: &NetNs, to: &str, fwd: &Forwarder) {
    let warm = wait_until(Duration::from_secs(10), Duration::from_millis(100), || {
        ping_result(from, to, 1).ok
    });
    assert!(
        warm,
        "{} never reached {to}:\n{}",
        from.name(),
        fwd.diagnostics()
    );
    let r = ping_result(from, to, 5);
    assert_eq!(
        (r.transmitted, r.received),
        (5, 5),
        "{} -> {to}: {}\n{}",
        from.name(),
        r.output,
        fwd.diagnostics()
    );
}

// ------------------------------------------------------------- captures

/// `tcpdump -w` on one interface of a namespace, read back as frames.
struct Capture {
    proc: Process,
    path: PathBuf,
}

impl Capture {
    fn start(ns: &NetNs, dev: &str, tag: &str) -> Self {
        let path = std::env::temp_dir().join(format!("vxhd-{}-{tag}.pcap", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let p = path.to_str().expect("UTF-8 path").to_owned();
        let proc = ns.spawn(
            "tcpdump",
            [
                "-i",
                dev,
                "--immediate-mode",
                "-U",
                "-n",
                "-s",
                "512",
                "-w",
                &p,
            ],
        );
        let ready = wait_until(Duration::from_secs(10), Duration::from_millis(50), || {
            proc.stderr().contains("listening on")
        });
        assert!(
            ready,
            "tcpdump on {dev} in {} did not start: {}",
            ns.name(),
            proc.stderr()
        );
        Self { proc, path }
    }

    /// Stops the capture; every frame captured, from its Ethernet header.
    fn frames(mut self) -> Vec<Vec<u8>> {
        std::thread::sleep(Duration::from_secs(1));
        let out = self.proc.stop_with(libc::SIGTERM);
        let data = std::fs::read(&self.path)
            .unwrap_or_else(|e| panic!("reading {}: {e} (tcpdump: {out})", self.path.display()));
        let _ = std::fs::remove_file(&self.path);
        let frames = parse_pcap(&data);
        eprintln!(
            "capture {}: {} bytes, {} frames; tcpdump: {}",
            self.path.display(),
            data.len(),
            frames.len(),
            out.stderr.trim()
        );
        frames
    }
}

fn parse_pcap(d: &[u8]) -> Vec<Vec<u8>> {
    assert!(d.len() >= 24, "pcap file too short: {} bytes", d.len());
    let le = match d[..4] {
        [0xd4, 0xc3, 0xb2, 0xa1] | [0x4d, 0x3c, 0xb2, 0xa1] => true,
        [0xa1, 0xb2, 0xc3, 0xd4] | [0xa1, 0xb2, 0x3c, 0x4d] => false,
        _ => panic!("not a pcap file: {:02x?}", &d[..4]),
    };
    let u32_at = |i: usize| {
        let b: [u8; 4] = d[i..i + 4].try_into().unwrap();
        if le {
            u32::from_le_bytes(b)
        } else {
            u32::from_be_bytes(b)
        }
    };
    assert_eq!(u32_at(20), 1, "pcap link type is not Ethernet");
    let mut frames = Vec::new();
    let mut i = 24;
    while i + 16 <= d.len() {
        let n = u32_at(i + 8) as usize;
        let start = i + 16;
        if start + n > d.len() {
            break;
        }
        frames.push(d[start..start + n].to_vec());
        i = start + n;
    }
    frames
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// An 802.1Q-tagged (VID 100) IPv4/UDP frame carrying `marker`.
fn tagged_frame(dst: [u8; 6], src: [u8; 6], from: &str, to: &str, marker: &str) -> Vec<u8> {
    let mut f = udp_frame(
        dst,
        src,
        ipv4(from),
        ipv4(to),
        40_000,
        MARK_PORT,
        marker.as_bytes(),
    );
    f.splice(12..12, [0x81, 0x00, (VID >> 8) as u8, VID as u8]);
    f
}

/// Whether an Ethernet frame starts with an 802.1Q tag of VID 100.
fn tagged_100(eth: &[u8]) -> bool {
    eth.len() >= 18
        && eth[12..14] == [0x81, 0x00]
        && u16::from_be_bytes([eth[14], eth[15]]) & 0xfff == VID
}

/// A VXLAN packet on the underlay: (outer frame untagged IPv4/UDP 4789?,
/// the inner frame).
fn vxlan_inner(f: &[u8]) -> Option<&[u8]> {
    let ipv4_udp = f.len() > 50 && f[12..14] == [0x08, 0x00] && f[OFF_IP + 9] == 17;
    (ipv4_udp && f[OFF_UDP + 2..OFF_UDP + 4] == 4789u16.to_be_bytes()).then(|| &f[50..])
}

#[test]
fn vlan_tag_travels_inside_the_tunnel_both_ways() {
    let topo = Setup::default().two_hosts("vxhd-vlan-");
    let [h1, h2] = topo.pick_hosts(["h1", "h2"]);
    let [c1, c2] = topo.pick_containers(["c1", "c2"]);
    let f1 = Forwarder::start(
        &h1.ns,
        &Setup::default().peer_args("h1", &["h1", "h2"], &[]),
    );
    // The kernel's vxlan and a bridge on h2 (the tutorial's setup).
    Setup::default().kernel_bridge_peer(h2, "h1");
    // Untagged connectivity, which also teaches both sides the MACs.
    assert_connected(&c1.ns, C2_IP, &f1);
    assert_connected(&c2.ns, C1_IP, &f1);

    let (m1, m2) = (parse_mac(&c1.mac()), parse_mac(&c2.mac()));
    let underlay = Capture::start(&topo.switch, "h1", "sw");
    let in_c1 = Capture::start(&c1.ns, "eth0", "c1");
    let in_c2 = Capture::start(&c2.ns, "eth0", "c2");
    const N: usize = 3;
    let up = RawSender::open(&c1.ns, "eth0");
    let down = RawSender::open(&c2.ns, "eth0");
    for i in 0..N {
        up.send(&tagged_frame(m2, m1, C1_IP, C2_IP, &format!("vxhd-up-{i}")));
        down.send(&tagged_frame(
            m1,
            m2,
            C2_IP,
            C1_IP,
            &format!("vxhd-down-{i}"),
        ));
    }
    let (sw, got1, got2) = (underlay.frames(), in_c1.frames(), in_c2.frames());
    let ctx = || format!("\n{}", f1.diagnostics());

    // The underlay: no outer tag ever; the tag is inside, both ways.
    let outer_tagged: Vec<&Vec<u8>> = sw
        .iter()
        .filter(|f| f.len() >= 14 && f[12..14] == [0x81, 0x00])
        .collect();
    assert!(
        outer_tagged.is_empty(),
        "{} frame(s) on the underlay with an outer 802.1Q tag, e.g. {:02x?}{}",
        outer_tagged.len(),
        outer_tagged[0],
        ctx()
    );
    for (dir, from_h1) in [("up", true), ("down", false)] {
        for i in 0..N {
            let marker = format!("vxhd-{dir}-{i}");
            let found = sw.iter().any(|f| {
                let src_ip = if from_h1 { H1_IP } else { H2_IP };
                vxlan_inner(f)
                    .is_some_and(|inner| tagged_100(inner) && contains(inner, marker.as_bytes()))
                    && f[OFF_IP + 12..OFF_IP + 16] == ipv4(src_ip).octets()
            });
            assert!(
                found,
                "{marker}: no VXLAN packet with the tag inside on the underlay ({} frames){}",
                sw.len(),
                ctx()
            );
        }
    }
    // Delivered tagged: c1 -> c2 through the kernel's vxlan, c2 -> c1
    // through vxlan-fwd's decapsulation.
    for (who, got, dir) in [("c2", &got2, "up"), ("c1", &got1, "down")] {
        for i in 0..N {
            let marker = format!("vxhd-{dir}-{i}");
            let n = got
                .iter()
                .filter(|f| tagged_100(f) && contains(f, marker.as_bytes()))
                .count();
            assert_eq!(
                n,
                1,
                "{who} did not receive {marker} tagged with VID {VID}{}",
                ctx()
            );
        }
    }
    // The encapsulation went through vxlan-fwd (not some other path).
    assert!(f1.counter("tx_encap") >= N as u64, "{}", ctx());
}

// -------------------------------------------------- injected from underlay

/// VXLAN from `src_ip` (outer TOS `tos`) carrying UDP from `inner_src`
/// (inner TOS `inner_tos`) to c1's listener, with `marker`.
fn frame(
    inj: &Injector,
    src_ip: &str,
    tos: u8,
    inner_src: [u8; 6],
    inner_tos: u8,
    marker: &str,
) -> Vec<u8> {
    let mut inner = inj.udp_to_c1(inner_src, marker);
    inner[ETH_HLEN + 1] = inner_tos;
    let mut hdr: [u8; 20] = inner[ETH_HLEN..ETH_HLEN + 20].try_into().unwrap();
    hdr[10] = 0;
    hdr[11] = 0;
    let c = vxlan_common::wire::ipv4_checksum(&hdr);
    inner[ETH_HLEN + 10..ETH_HLEN + 12].copy_from_slice(&c);
    vxlan_frame(&inj.outer(src_ip, 42, tos), &inner)
}

/// Sets a correct outer UDP checksum (or a wrong one when `wrong`).
fn set_udp_checksum(f: &mut [u8], wrong: bool) {
    f[OFF_UDP + 6] = 0;
    f[OFF_UDP + 7] = 0;
    let ulen = usize::from(u16::from_be_bytes([f[OFF_UDP + 4], f[OFF_UDP + 5]]));
    let mut sum: u32 = 17 + ulen as u32;
    for c in f[OFF_IP + 12..OFF_IP + 20]
        .chunks(2)
        .chain(f[OFF_UDP..OFF_UDP + ulen].chunks(2))
    {
        sum += u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]));
    }
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    let mut c = match !(sum as u16) {
        0 => 0xffff,
        c => c,
    };
    if wrong {
        c ^= 0x0100;
    }
    f[OFF_UDP + 6..OFF_UDP + 8].copy_from_slice(&c.to_be_bytes());
}

#[test]
fn crafted_frames_from_the_underlay_are_refused_and_counted() {
    let topo = Topology::seed("vxhd-inj-")
        .container("c1", "h1", "veth0", C1_IP)
        .build();
    topo.check_underlay();
    let (h1, c1) = (topo.host("h1"), topo.container("c1"));
    // The allowed prefix covers h1's own address: only the source check
    // can stop a reflected frame.
    let run =
        Setup::default().peer_args("h1", &["h1", "h2"], &["--allow-remote", "192.168.57.0/24"]);
    let f1 = Forwarder::start(&h1.ns, &run);
    let c1_mac = c1.mac();
    // c1's MAC is learned on its port (its ARP requests are flooded).
    let learned = wait_until(Duration::from_secs(10), Duration::from_millis(200), || {
        let _ = ping_result(&c1.ns, "172.18.1.77", 1);
        fdb_find(&f1.fdb_show_json(), &c1_mac).is_some_and(|e| e["dev"] == "veth0")
    });
    assert!(learned, "c1 not learned on veth0:\n{}", f1.diagnostics());

    let inj = Injector::new(&topo);
    let sock = udp_listener(&c1.ns, MARK_PORT);
    let c1m = parse_mac(&c1_mac);
    type Edit = Box<dyn Fn(&mut Vec<u8>)>;
    /// What, outer source, outer TOS, inner source MAC, inner TOS, edit,
    /// expected: `Ok(())` delivered, `Err(drop counter)`.
    type Case = (
        &'static str,
        &'static str,
        u8,
        [u8; 6],
        u8,
        Edit,
        Result<(), &'static str>,
    );
    // No edit of the crafted frame.
    let none = || -> Edit { Box::new(|_| {}) };
    #[rustfmt::skip]
    let cases: Vec<Case> = vec![
        ("positive control", H2_IP, 0, FAKE_MAC, 0, none(), Ok(())),
        ("reflected: our own outer source, c1's MAC inside", H1_IP, 0, c1m, 0, none(), Err("drop_bad_outer_src")),
        ("multicast outer source", "224.0.0.5", 0, c1m, 0, none(), Err("drop_bad_outer_src")),
        ("0.0.0.0 outer source", "0.0.0.0", 0, c1m, 0, none(), Err("drop_bad_outer_src")),
        ("another host's destination MAC", H2_IP, 0, FAKE_MAC, 0, Box::new(|f: &mut Vec<u8>| f[..6].copy_from_slice(&[0x02, 0xbb, 0, 0, 0, 1])), Err("drop_other_host")),
        ("wrong non-zero UDP checksum", H2_IP, 0, FAKE_MAC, 0, Box::new(|f: &mut Vec<u8>| set_udp_checksum(f, true)), Err("drop_udp_csum")),
        ("right non-zero UDP checksum", H2_IP, 0, FAKE_MAC, 0, Box::new(|f: &mut Vec<u8>| set_udp_checksum(f, false)), Ok(())),
        ("multicast inner source MAC", H2_IP, 0, [0x01, 0, 0x5e, 0, 0, 1], 0, none(), Err("drop_bad_src_mac")),
        ("all-zeros inner source MAC", H2_IP, 0, [0; 6], 0, none(), Err("drop_bad_src_mac")),
        ("outer CE over Not-ECT", H2_IP, 0x03, FAKE_MAC, 0x00, none(), Err("drop_ecn")),
        ("outer CE over ECT(0)", H2_IP, 0x03, FAKE_MAC, 0x02, none(), Ok(())),
        ("positive control, again", H2_IP, 0, FAKE_MAC, 0, none(), Ok(())),
    ];
    let mut problems = Vec::new();
    for (i, (what, src, tos, smac, itos, edit, expect)) in cases.iter().enumerate() {
        let marker = format!("vxhd-case-{i}");
        let mut f = frame(&inj, src, *tos, *smac, *itos, &marker);
        edit(&mut f);
        if f[OFF_IP + 12..OFF_IP + 16] != ipv4(src).octets() {
            fix_ip_checksum(&mut f);
        }
        let before = f1.counters();
        inj.send(&f, 1);
        let counted = wait_until(Duration::from_secs(5), Duration::from_millis(50), || {
            let now = f1.counters();
            let key = match expect {
                Ok(()) => "rx_decap",
                Err(c) => c,
            };
            now[key] > before[key]
        });
        let want = usize::from(expect.is_ok());
        let got = collect_udp(
            &sock,
            want,
            Duration::from_secs(3),
            Duration::from_millis(300),
        );
        let n = got
            .iter()
            .filter(|d| d.as_slice() == marker.as_bytes())
            .count();
        if !counted || n != want {
            problems.push(format!(
                "{what}: expected {expect:?}, counted {counted}, delivered {n} (want {want})"
            ));
        }
        // c1's MAC never moves off its port.
        let e = fdb_find(&f1.fdb_show_json(), &c1_mac).cloned();
        if !e.as_ref().is_some_and(|e| e["dev"] == "veth0") {
            problems.push(format!("{what}: c1's FDB entry is now {e:?}"));
        }
    }
    assert!(
        problems.is_empty(),
        "{}\n{}",
        problems.join("\n"),
        f1.diagnostics()
    );
}

/// The kernel's vxlan with `udpcsum` sends non-zero outer UDP checksums
/// (over veths its frames arrive as CHECKSUM_PARTIAL, TCP as GSO
/// super-packets): none is refused, and TCP keeps its throughput.
#[test]
fn udp_checksums_from_a_kernel_peer_are_accepted_and_tcp_flows() {
    let topo = Setup::default().two_hosts("vxhd-csum-");
    let [h1, h2] = topo.pick_hosts(["h1", "h2"]);
    let [c1, c2] = topo.pick_containers(["c1", "c2"]);
    let f1 = Forwarder::start(
        &h1.ns,
        &Setup::default().peer_args("h1", &["h1", "h2"], &[]),
    );
    #[rustfmt::skip]
    h2.ns.ip(["link", "add", "vxlan0", "type", "vxlan", "id", "42", "dstport", "4789",
              "remote", H1_IP, "local", H2_IP, "dev", "eth0", "udpcsum"]);
    h2.add_bridge("br0", &["vxlan0", "veth0"]);
    assert_connected(&c2.ns, C1_IP, &f1);

    // The peer's packets do carry a checksum.
    let underlay = Capture::start(&topo.switch, "h1", "csum");
    assert_connected(&c2.ns, C1_IP, &f1);
    let sw = underlay.frames();
    let from_h2: Vec<&Vec<u8>> = sw
        .iter()
        .filter(|f| vxlan_inner(f).is_some() && f[OFF_IP + 12..OFF_IP + 16] == ipv4(H2_IP).octets())
        .collect();
    assert!(!from_h2.is_empty(), "no VXLAN from h2 captured");
    assert!(
        from_h2
            .iter()
            .all(|f| f[OFF_UDP + 6..OFF_UDP + 8] != [0, 0]),
        "h2's kernel vxlan sent a zero UDP checksum despite udpcsum"
    );

    // TCP, c2 -> c1 (received through vxlan-fwd's decapsulation).
    let (out, _) = iperf3(c2, c1, false);
    let report: serde_json::Value = serde_json::from_str(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "iperf3 did not print JSON ({e}): {out}\n{}",
            f1.diagnostics()
        )
    });
    let bps = report["end"]["sum_received"]["bits_per_second"]
        .as_f64()
        .unwrap_or(0.0);
    eprintln!("c2 -> c1 TCP with udpcsum: {:.2} Gbit/s", bps / 1e9);
    assert!(
        bps > 200e6,
        "TCP c2 -> c1 only {bps} bit/s: {out}\n{}",
        f1.diagnostics()
    );
    assert_eq!(f1.counter("drop_udp_csum"), 0, "{}", f1.diagnostics());
    assert!(f1.counter("rx_decap") > 100, "{}", f1.diagnostics());
}
