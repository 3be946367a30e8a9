//! End-to-end tests of IPv6 (issue 12), in two senses kept apart:
//!
//! - IPv6 *inside* the tunnel (the overlay, `Topology::ipv6(true)`): inner
//!   IPv6 senders and their path MTU discovery;
//! - VXLAN *over* IPv6 (the underlay, [`Setup::V6`]: `fd00:57::N/64` on
//!   the hosts' `eth0`), against the kernel's vxlan over IPv6 and against
//!   itself: bridge and `--host-if` set-ups, full-size DF pings, TCP,
//!   group mode, a capture of the underlay checked byte by byte, path MTU.
//!
//! Run as root, serially: `cargo test --release -p vxlan-tests --test
//! e2e_ipv6 -- --test-threads=1` (with target/release/vxlan-fwd built, or
//! `VXLAN_FWD_BIN`). Each test builds its own namespaces (prefix
//! `vx6-<test>-`) and removes them, also on failure.

use std::{collections::BTreeMap, time::Duration};

use serde_json::Value;
use vxlan_tests::{
    Container, Forwarder, H1_IP, H1_IP6, H2_IP, H2_IP6, Host, NetNs, Topology,
    capture::PcapCapture,
    checks::{assert_iperf, assert_ping, counters_delta, diagnostics, ping_all},
    fdb_checks::{assert_remote, defaults, rows},
    frames::{
        self, ETH_P_IPV6, InnerCsum, V6_INNER, V6_IP, V6_UDP, V6_VXLAN, complete_inner_l4_checksum,
        udp6_checksum_ok,
    },
    ping_strict,
    process::run_with_timeout,
    scenario::{BuildChecked, Family, GROUP6, Pick, RxMode, Setup, ZERO_MAC},
};

const C1_IP: &str = "172.18.1.2";
const C2_IP: &str = "172.18.1.3";
const C1_IP6: &str = "fd00:42::2";
const C2_IP6: &str = "fd00:42::3";

/// Gives a container's `eth0` an IPv6 address at once (no duplicate
/// address detection to wait for).
fn add_ip6(ns: &NetNs, addr: &str) {
    ns.sysctl("net.ipv6.conf.eth0.accept_dad", "0");
    ns.ip([
        "-6",
        "addr",
        "add",
        &format!("{addr}/64"),
        "dev",
        "eth0",
        "nodad",
    ]);
}

/// A 1500-MTU container behind an IPv4 underlay (overlay MTU 1500 − 50):
/// a full-size IPv6 packet is answered with an ICMPv6 Packet Too Big from
/// the forwarder, the sender's kernel learns `mtu 1450` for the peer, and
/// packets of that size then cross in both directions.
#[test]
fn inner_ipv6_pmtu_discovery() {
    let topo = Topology::seed("vx6-mtu-")
        .container_with_mtu("c1", "h1", "veth0", C1_IP, 1500)
        .container_with_mtu("c2", "h2", "veth0", C2_IP, 1500)
        .ipv6(true)
        .build();
    topo.check_underlay();
    let (h1, h2) = (topo.host("h1"), topo.host("h2"));
    let (c1, c2) = (topo.container("c1"), topo.container("c2"));
    add_ip6(&c1.ns, C1_IP6);
    add_ip6(&c2.ns, C2_IP6);
    let base = ["--iface", "eth0", "--vni", "42", "--port", "veth0"];
    let f1 = Forwarder::start(&h1.ns, &[&base[..], &["--remote", H2_IP]].concat());
    let f2 = Forwarder::start(&h2.ns, &[&base[..], &["--remote", H1_IP]].concat());
    let diag = || format!("{}\n{}", f1.diagnostics(), f2.diagnostics());

    // Positive control: small IPv6 packets cross (neighbour discovery over
    // the tunnel, then every reply).
    let r = ping_strict(&c1.ns, C2_IP6, 3);
    assert!(r.ok, "small IPv6 ping: {}\n{}", r.output, diag());
    let route = c1.ns.ip(["-6", "route", "get", C2_IP6]);
    assert!(
        !route.contains("mtu"),
        "c1 has a path MTU before the test: {route}"
    );

    let (drops0, ptb0) = (f1.counter("drop_too_big"), f1.counter("tx_icmp6_too_big"));
    // 1452 + 8 (ICMPv6) + 40 (IPv6) = 1500 bytes: too big for 1450.
    let big = c1.ns.exec(
        "ping",
        [
            "-6", "-n", "-M", "do", "-s", "1452", "-c", "1", "-W", "2", C2_IP6,
        ],
    );
    let ctx = format!("ping -6 -M do -s 1452: {big}\n{}", diag());
    assert!(
        !big.success(),
        "a 1500-byte IPv6 packet crossed a 1450-byte overlay: {ctx}"
    );
    assert!(
        f1.counter("drop_too_big") > drops0,
        "drop_too_big did not grow: {ctx}"
    );
    assert_eq!(
        f1.counter("tx_icmp6_too_big"),
        ptb0 + 1,
        "one Packet Too Big per packet: {ctx}"
    );
    let route = c1.ns.ip(["-6", "route", "get", C2_IP6]);
    assert!(
        route.contains("mtu 1450"),
        "c1 did not learn mtu 1450 from the Packet Too Big: `ip -6 route get {C2_IP6}`: {route}\n{ctx}"
    );
    assert_eq!(
        f2.counter("tx_icmp6_too_big"),
        0,
        "h2 sent a Packet Too Big: {}",
        diag()
    );

    // At the learned size, every packet crosses; the reply (same size) too.
    let ok = c1.ns.exec(
        "ping",
        [
            "-6", "-n", "-M", "do", "-s", "1402", "-c", "3", "-W", "2", "-i", "0.2", C2_IP6,
        ],
    );
    assert!(
        ok.success() && ok.stdout.contains(" 0% packet loss"),
        "ping -6 -M do -s 1402 after path MTU discovery: {ok}\n{}",
        diag()
    );
    // The Packet Too Big went only to c1's path: c2 learned nothing.
    let back = c2.ns.ip(["-6", "route", "get", C1_IP6]);
    assert!(!back.contains("mtu"), "c2 got a path MTU: {back}");
}

// ====================================================== VXLAN over IPv6

/// Runs `body` once per receive mode over the IPv6 underlay (the mode
/// matrix), every mode even when an earlier one fails (each mode's
/// namespaces are removed by their guards as its panic unwinds); panics at
/// the end naming the modes that failed (their messages are above).
fn over_ipv6_in_every_mode(test: &str, body: fn(Setup)) {
    let mut failed = Vec::new();
    for setup in Setup::matrix_of(Family::V6) {
        let mode = setup.mode.name();
        eprintln!("{test}: receive mode {mode}");
        if std::panic::catch_unwind(|| body(setup)).is_err() {
            failed.push(mode);
        }
    }
    assert!(
        failed.is_empty(),
        "{test} failed in receive mode(s) {failed:?}"
    );
}

const HOST_IF: &str = "vxlan0";
const C1_IP4: &str = "172.18.1.2";
const C2_IP4: &str = "172.18.1.3";
/// ICMP payload of a full-size IPv4 ping over an IPv6 underlay: 1430 (the
/// containers' MTU, 1500 − 70) − 28.
const FULL_PING4: &str = "1402";

/// A counter of a forwarder's `stats` snapshot, 0 when absent.
fn c(m: &BTreeMap<String, u64>, k: &str) -> u64 {
    m.get(k).copied().unwrap_or(0)
}

/// `after - before` of counter `k`.
fn d(before: &BTreeMap<String, u64>, after: &BTreeMap<String, u64>, k: &str) -> i128 {
    i128::from(c(after, k)) - i128::from(c(before, k))
}

/// Asserts the forwarder's `stats` has the IPv6 counters at all (a
/// binary without them would make every "did not move" check vacuous).
fn assert_has_ipv6_counters(f: &Forwarder) {
    let m = f.counters();
    for k in [
        "tx_encap_ipv6",
        "rx_decap_ipv6",
        "drop_udp6_zero_csum",
        "drop_family",
        "drop_gso_ipv6",
    ] {
        assert!(m.contains_key(k), "stats of {} lack {k}: {m:?}", f.ns());
    }
}

/// `count` pings from `from` to `ip` get every reply, and everything `f`
/// encapsulated and decapsulated meanwhile went over IPv6: `tx_encap_ipv6`
/// grows exactly as `tx_encap`, `rx_decap_ipv6` exactly as `rx_decap`, by
/// at least `count` each.
fn assert_ping_all_over_ipv6(from: &NetNs, ip: &str, count: u32, f: &Forwarder) {
    let _ = ping_strict(from, ip, 1);
    let before = f.counters();
    let r = ping_strict(from, ip, count);
    let after = f.counters();
    let ctx = || {
        format!(
            "ping {} -> {ip}: {}\ncounter changes {:?}\n{}",
            from.name(),
            r.output,
            counters_delta(&before, &after),
            f.diagnostics()
        )
    };
    assert!(r.ok, "not every reply came: {}", ctx());
    let n = i128::from(count);
    for (all, v6) in [("tx_encap", "tx_encap_ipv6"), ("rx_decap", "rx_decap_ipv6")] {
        let (da, d6) = (d(&before, &after, all), d(&before, &after, v6));
        assert!(d6 >= n, "{v6} grew by {d6} for {count} pings: {}", ctx());
        assert_eq!(d6, da, "{v6} and {all} grew differently: {}", ctx());
    }
}

/// A full-size ping with DF set (`-s <size>`) from `from` to `to` gets all
/// its replies.
fn assert_full_size_ping(from: &Container, to: &str, size: &str, six: bool, fwds: &[&Forwarder]) {
    let mut cmd = from.ns.command("ping");
    if six {
        cmd.arg("-6");
    }
    cmd.args([
        "-n", "-c", "3", "-W", "2", "-i", "0.2", "-M", "do", "-s", size, to,
    ]);
    // A warm-up (neighbour discovery, learning) whose outcome is ignored.
    let mut warm = from.ns.command("ping");
    warm.args(["-n", "-c", "1", "-W", "2", to]);
    if six {
        warm.arg("-6");
    }
    let _ = run_with_timeout(warm, Duration::from_secs(10));
    let out = run_with_timeout(cmd, Duration::from_secs(20));
    if !(out.success() && out.stdout.contains(" 0% packet loss")) {
        panic!(
            "full-size DF ping (-s {size}) {} -> {to} failed: {out}\n{}",
            from.name,
            diagnostics(fwds)
        );
    }
}

/// Runs iperf3 for 3 s from `client` to `server` (`reverse`: the server
/// sends); asserts no error, more than 50 MB through and full-size
/// segments (MSS for MTU 1430); returns iperf3's report.
fn iperf(
    client: &Container,
    server: &Container,
    reverse: bool,
    fwds: &[&Forwarder],
    what: &str,
) -> Value {
    let report = assert_iperf(client, server, reverse, fwds, what);
    let mss = report["start"]["tcp_mss_default"].as_u64().unwrap_or(0);
    assert!(
        mss >= 1360,
        "{what}: TCP MSS {mss}: segments are not full-size for MTU 1430"
    );
    report
}

/// The kernel's `bridge fdb show dev vxlan0` on `h` has `mac` with `dst
/// <dst>`.
fn assert_kernel_learned(h: &Host, mac: &str, dst: &str) {
    let kfdb = h.ns.run("bridge", ["fdb", "show", "dev", HOST_IF]);
    assert!(
        kfdb.lines()
            .any(|l| l.starts_with(mac) && l.contains(&format!("dst {dst}"))),
        "{}'s kernel vxlan did not learn {mac} with dst {dst}:\n{kfdb}",
        h.name
    );
}

/// vxlan-fwd on h1 (port `veth0`, `--remote fd00:57::2`), the tutorial's
/// bridge setup with the kernel's vxlan over IPv6 on h2 (`local
/// fd00:57::2 remote fd00:57::1`): pings both ways, all of it over IPv6,
/// each side learned the other's container behind its IPv6 VTEP address
/// (`fdb show` prints `dst fd00:57::2`); full-size DF pings (MTU 1430) and
/// TCP both ways.
///
/// In every receive mode of h1 (TC; native and skb-mode XDP): each has its
/// own IPv6 decapsulation path.
#[test]
fn kernel_peer_bridge_over_ipv6() {
    over_ipv6_in_every_mode(
        "kernel_peer_bridge_over_ipv6",
        kernel_peer_bridge_over_ipv6_in,
    );
}

/// The receive mode asked for is the one `eth0` has: native (`ip -j
/// link`'s `xdp.mode` 1), skb-mode XDP (2), or no XDP (TC).
fn assert_mode(ns: &NetNs, setup: Setup) {
    let link = ns.link("eth0").expect("eth0");
    let want = match setup.mode {
        RxMode::Native => Some(1),
        RxMode::Generic => Some(2),
        _ => None,
    };
    assert_eq!(
        link["xdp"]["mode"].as_u64(),
        want,
        "{}: eth0: {link}",
        setup.mode.name()
    );
}

fn kernel_peer_bridge_over_ipv6_in(setup: Setup) {
    let mode = setup.mode.name();
    let topo = setup.two_hosts(&setup.prefix("vx6-kbr-"));
    let [h1, h2] = topo.pick_hosts(["h1", "h2"]);
    let [c1, c2] = topo.pick_containers(["c1", "c2"]);
    assert_eq!(c1.ns.mtu("eth0"), 1430, "containers' MTU over IPv6");
    let f1 = Forwarder::start(&h1.ns, &setup.peer_args("h1", &["h1", "h2"], &[]));
    setup.kernel_bridge_peer(h2, "h1");
    let kdev = h2.ns.ip(["-d", "link", "show", "dev", HOST_IF]);
    assert!(
        kdev.contains(&format!("remote {H1_IP6}")) && kdev.contains(&format!("local {H2_IP6}")),
        "h2's vxlan0 is not over IPv6: {kdev}"
    );
    assert_has_ipv6_counters(&f1);

    assert_ping(&c1.ns, C2_IP4, 3, &[&f1]);
    assert_ping(&c2.ns, C1_IP4, 3, &[&f1]);
    assert_mode(&h1.ns, setup);
    assert_ping_all_over_ipv6(&c1.ns, C2_IP4, 5, &f1);
    assert_ping_all_over_ipv6(&c2.ns, C1_IP4, 5, &f1);

    let fdb1 = rows(&f1.fdb_show_json());
    assert_remote(&fdb1, 42, &c2.mac(), H2_IP6, "h1 (vxlan-fwd)");
    assert_eq!(defaults(&fdb1, 42), [H2_IP6], "h1's default remotes");
    let text = f1.fdb_show();
    for line in [
        format!("{ZERO_MAC} dst {H2_IP6} vni 42 permanent"),
        format!("{} dst {H2_IP6} vni 42", c2.mac()),
    ] {
        assert!(
            text.lines().any(|l| l.trim() == line),
            "h1 fdb show lacks `{line}`:\n{text}"
        );
    }
    assert_kernel_learned(h2, &c1.mac(), H1_IP6);
    // `vni show` names the VNI's underlay family.
    let vnis = f1.command(&["vni", "show"]);
    assert!(
        vnis.lines()
            .any(|l| l.starts_with("vni 42 ") && l.contains(" underlay IPv6 ")),
        "h1 vni show does not say VNI 42 is over IPv6:\n{vnis}"
    );

    // Full-size packets with DF set cross unfragmented both ways.
    assert_full_size_ping(c1, C2_IP4, FULL_PING4, false, &[&f1]);
    assert_full_size_ping(c2, C1_IP4, FULL_PING4, false, &[&f1]);
    // TCP both ways; no GSO super-packet reached the port program (the
    // port guard turned segmentation off on the IPv6 VNI's port).
    let before = f1.counters();
    iperf(
        c1,
        c2,
        false,
        &[&f1],
        &format!("{mode}: c1 -> c2 (kernel vxlan over IPv6 on h2)"),
    );
    iperf(
        c1,
        c2,
        true,
        &[&f1],
        &format!("{mode}: c2 -> c1 (kernel vxlan over IPv6 on h2)"),
    );
    let after = f1.counters();
    let delta = counters_delta(&before, &after);
    eprintln!("{mode}: h1 counter changes during TCP: {delta:?}");
    assert_eq!(
        d(&before, &after, "drop_gso_ipv6"),
        0,
        "GSO frames dropped on the IPv6 VNI's port: {delta:?}"
    );
    assert!(
        d(&before, &after, "tx_encap_ipv6") > 10_000
            && d(&before, &after, "rx_decap_ipv6") > 10_000,
        "TCP did not go through the IPv6 datapath: {delta:?}"
    );
}

/// vxlan-fwd with `--host-if vxlan0` on h1, the tutorial's point-to-point
/// setup with the kernel's vxlan over IPv6 on h2: the host interface gets
/// MTU 1500 − 70, pings both ways (full size too), each side learned the
/// other behind its IPv6 address.
#[test]
fn kernel_peer_host_if_over_ipv6() {
    let setup = Setup::V6;
    let topo = setup.hosts("vx6-khif-", 2).build_checked();
    let [h1, h2] = topo.pick_hosts(["h1", "h2"]);
    let f1 = Forwarder::start(
        &h1.ns,
        &setup.args(&["--host-if", HOST_IF, "--remote", H2_IP6]),
    );
    assert_eq!(
        h1.ns.mtu(HOST_IF),
        1430,
        "MTU of h1's {HOST_IF} (uplink MTU 1500 - 70 over IPv6)"
    );
    h1.addr_up(HOST_IF, "172.18.1.2/24");
    h2.add_kernel_vxlan(HOST_IF, H1_IP6);
    h2.addr_up(HOST_IF, "172.18.1.3/24");
    assert_eq!(
        h2.ns.mtu(HOST_IF),
        1430,
        "the kernel's own choice, for reference"
    );

    assert_ping(&h1.ns, C2_IP4, 3, &[&f1]);
    assert_ping(&h2.ns, C1_IP4, 3, &[&f1]);
    assert_ping_all_over_ipv6(&h1.ns, C2_IP4, 5, &f1);
    assert_ping_all_over_ipv6(&h2.ns, C1_IP4, 5, &f1);
    for (from, to) in [(&h1.ns, C2_IP4), (&h2.ns, C1_IP4)] {
        let out = from.exec(
            "ping",
            [
                "-n", "-c", "3", "-W", "2", "-i", "0.2", "-M", "do", "-s", FULL_PING4, to,
            ],
        );
        assert!(
            out.success() && out.stdout.contains(" 0% packet loss"),
            "full-size DF ping {} -> {to}: {out}\n{}",
            from.name(),
            f1.diagnostics()
        );
    }
    assert_remote(
        &rows(&f1.fdb_show_json()),
        42,
        &h2.ns.mac(HOST_IF),
        H2_IP6,
        "h1 (vxlan-fwd)",
    );
    assert_kernel_learned(h2, &h1.ns.mac(HOST_IF), H1_IP6);
}

/// vxlan-fwd on both hosts over IPv6: pings, TCP both ways at full
/// segment size, full-size DF pings; the FDBs point at IPv6 VTEPs.
#[test]
fn vxlan_fwd_pair_over_ipv6_tcp() {
    let setup = Setup::V6;
    let topo = setup.two_hosts("vx6-tcp-");
    let [c1, c2] = topo.pick_containers(["c1", "c2"]);
    let (f1, f2) = setup.pair(&topo, &[], &[]);
    assert_has_ipv6_counters(&f1);
    assert_ping(&c1.ns, C2_IP4, 3, &[&f1, &f2]);
    assert_ping_all_over_ipv6(&c1.ns, C2_IP4, 5, &f1);
    assert_ping_all_over_ipv6(&c2.ns, C1_IP4, 5, &f2);
    assert_remote(&rows(&f1.fdb_show_json()), 42, &c2.mac(), H2_IP6, "h1");
    assert_remote(&rows(&f2.fdb_show_json()), 42, &c1.mac(), H1_IP6, "h2");

    let before = f1.counters();
    iperf(
        c1,
        c2,
        false,
        &[&f1, &f2],
        "c1 -> c2 (vxlan-fwd both ends, IPv6)",
    );
    iperf(
        c1,
        c2,
        true,
        &[&f1, &f2],
        "c2 -> c1 (vxlan-fwd both ends, IPv6)",
    );
    let after = f1.counters();
    let delta = counters_delta(&before, &after);
    assert_eq!(
        d(&before, &after, "drop_gso_ipv6"),
        0,
        "GSO frames dropped on the IPv6 VNI's port: {delta:?}"
    );
    assert_full_size_ping(c1, C2_IP4, FULL_PING4, false, &[&f1, &f2]);
    assert_full_size_ping(c2, C1_IP4, FULL_PING4, false, &[&f1, &f2]);
    eprintln!("h1 counters: {:?}", f1.counters());

    // The GSO guard: native XDP on the IPv6 VNI's port while the forwarder
    // runs (what turned the container's segmentation offload off above),
    // gone after a clean stop.
    let h1 = topo.host(&c1.host);
    let guard = || {
        let link = h1.ns.link(&c1.port).expect("the port");
        let xdp = &link["xdp"];
        (
            xdp["mode"].as_u64(),
            xdp["prog"]["name"].as_str().map(str::to_owned),
        )
    };
    let (mode, name) = guard();
    assert_eq!(mode, Some(1), "h1's {}: native XDP while running", c1.port);
    // The kernel keeps 15 characters of a program's name.
    assert_eq!(
        name.as_deref(),
        Some(&vxlan_common::prog::XDP_PORT_GUARD[..15]),
        "h1's {}: the guard program",
        c1.port
    );
    let out = f1.stop();
    assert!(
        out.status.success() && !out.timed_out,
        "vxlan-fwd h1 stopped cleanly: {}",
        out.stderr
    );
    assert_eq!(
        guard(),
        (None, None),
        "h1's {}: no XDP left after a clean stop",
        c1.port
    );
}

/// An IPv6-only underlay: the hosts' IPv4 addresses are removed before
/// the forwarders start (the local address comes from the uplink's IPv6
/// address). Pings cross, the FDB points at the IPv6 VTEP.
#[test]
fn ipv6_only_underlay() {
    let setup = Setup::V6;
    let topo = setup.two_hosts("vx6-only-");
    for h in &topo.hosts {
        h.ns.ip(["-4", "addr", "flush", "dev", "eth0"]);
    }
    let [c1, c2] = topo.pick_containers(["c1", "c2"]);
    // Positive control of the underlay itself, over IPv6 only.
    let r = ping_strict(&topo.host("h1").ns, H2_IP6, 2);
    assert!(r.ok, "IPv6 underlay broken: {}", r.output);
    let (f1, f2) = setup.pair(&topo, &[], &[]);
    assert_ping(&c1.ns, C2_IP4, 3, &[&f1, &f2]);
    assert_ping(&c2.ns, C1_IP4, 3, &[&f1, &f2]);
    assert_remote(&rows(&f1.fdb_show_json()), 42, &c2.mac(), H2_IP6, "h1");
}

/// Group mode over IPv6: vxlan-fwd on h1 and h2 with `--group ff05::100`,
/// the kernel's vxlan as the third member (`group ff05::100 dev eth0`) on
/// h3. The forwarders' uplinks show the group in `ip maddr` (an MLD join);
/// every container reaches every other; floods go to the group as one
/// copy with the group's MAC (33:33 + the low 32 bits) and hop limit 1,
/// with a correct UDP checksum; leaving removes the membership.
///
/// In every receive mode of the two forwarders.
#[test]
fn group_mode_over_ipv6() {
    over_ipv6_in_every_mode("group_mode_over_ipv6", group_mode_over_ipv6_in);
}

fn group_mode_over_ipv6_in(setup: Setup) {
    let topo = setup.three_hosts(&setup.prefix("vx6-grp-"));
    let [h1, h2, h3] = topo.pick_hosts(["h1", "h2", "h3"]);
    let [c1, c2, c3] = topo.pick_containers(["c1", "c2", "c3"]);
    let gargs = setup.args(&["--group", GROUP6, "--port", "veth0"]);
    let f1 = Forwarder::start(&h1.ns, &gargs);
    let f2 = Forwarder::start(&h2.ns, &gargs);
    setup.kernel_group_peer(h3);
    let maddr = |h: &Host| h.ns.ip(["-6", "maddr", "show", "dev", "eth0"]);
    // Positive control: the kernel member's own join is visible the same way.
    assert!(
        maddr(h3).contains(GROUP6),
        "h3 (kernel): no {GROUP6} in ip maddr: {}",
        maddr(h3)
    );
    for h in [h1, h2] {
        let m = maddr(h);
        assert!(
            m.contains(GROUP6),
            "{}: `ip -6 maddr show dev eth0` lacks {GROUP6}:\n{m}",
            h.name
        );
    }

    let mac1 = h1.ns.mac("eth0");
    let cap = PcapCapture::start(&h1.ns, "eth0", "ip6 and udp port 4789");
    ping_all(&[c1, c2, c3], &[&f1, &f2]);
    let (captured, _) = cap.finish();
    let c1_counters = f1.counters();
    assert!(
        c(&c1_counters, "tx_group_copy") > 0 && c(&c1_counters, "tx_encap_ipv6") > 0,
        "h1 sent nothing to the group over IPv6: {c1_counters:?}"
    );
    let group: std::net::Ipv6Addr = GROUP6.parse().unwrap();
    let g = group.octets();
    let to_group: Vec<&Vec<u8>> = captured
        .iter()
        .filter(|f| {
            f.len() > V6_INNER
                && f[6..12] == frames::parse_mac(&mac1)
                && f[V6_IP + 24..V6_IP + 40] == g
        })
        .collect();
    assert!(
        !to_group.is_empty(),
        "no frame from h1 to {GROUP6} captured ({} frames in all)",
        captured.len()
    );
    for f in &to_group {
        assert_eq!(
            &f[0..6],
            &[0x33, 0x33, g[12], g[13], g[14], g[15]],
            "group MAC"
        );
        assert_eq!(
            f[V6_IP + 7],
            1,
            "hop limit to the group: 1, as the kernel's"
        );
        assert!(
            udp6_checksum_ok(f),
            "UDP checksum of a group frame: {f:02x?}"
        );
    }
    eprintln!("{} frames from h1 to the group checked", to_group.len());

    // Leaving: the membership goes with the forwarder.
    let out = f1.stop();
    assert!(out.success(), "vxlan-fwd on h1 did not stop cleanly: {out}");
    let m = maddr(h1);
    assert!(
        !m.contains(GROUP6),
        "h1 still in {GROUP6} after vxlan-fwd stopped:\n{m}"
    );
    assert!(maddr(h2).contains(GROUP6), "h2 left the group with h1");
}

/// What the underlay capture found among the frames vxlan-fwd sent.
#[derive(Debug, Default)]
struct Checked {
    /// VXLAN over IPv6, every check passed.
    ok: usize,
    /// Of those, inner TCP, and inner checksums completed (still in
    /// `CHECKSUM_PARTIAL` form on the wire).
    tcp: usize,
    completed: usize,
    /// Failures, described.
    bad: Vec<String>,
}

/// h1's `net.ipv6.conf.eth0.hop_limit` in the capture test.
const HOP_LIMIT: u8 = 57;

/// Checks one VXLAN frame vxlan-fwd on h1 sent (to `dst`): Ethernet type
/// IPv6, version 6, next header UDP, our source, hop limit [`HOP_LIMIT`], lengths
/// consistent with the frame, VXLAN I flag and VNI 42, and a UDP checksum
/// that is present and right over the datagram as its receiver sees it.
///
/// A frame whose inner packet came from a veth still carries its inner
/// TCP/UDP checksum in `CHECKSUM_PARTIAL` form (the pseudo-header sum,
/// completed by a NIC's offload or by the receiver): the outer checksum
/// must be right over the bytes with that inner checksum completed, which
/// is what this checks in that case (the outer checksum over the partial
/// form would be wrong on the wire).
fn check_frame(f: &[u8], dst: &[u8; 16], src: &[u8; 16], into: &mut Checked) -> bool {
    let fail = |into: &mut Checked, why: &str| {
        into.bad.push(format!("{why}: {}", hex(f)));
        false
    };
    if f.len() < V6_INNER + 14 {
        return fail(into, "shorter than 70 bytes + an inner Ethernet header");
    }
    let ip = &f[V6_IP..V6_UDP];
    if u16::from_be_bytes([f[12], f[13]]) != ETH_P_IPV6 || ip[0] >> 4 != 6 || ip[6] != 17 {
        return fail(into, "not IPv6/UDP");
    }
    if &ip[8..24] != src || &ip[24..40] != dst {
        return fail(into, "addresses");
    }
    if ip[7] != HOP_LIMIT {
        return fail(into, "hop limit not h1's net.ipv6.conf.eth0.hop_limit");
    }
    let plen = usize::from(u16::from_be_bytes([ip[4], ip[5]]));
    let ulen = usize::from(u16::from_be_bytes([f[V6_UDP + 4], f[V6_UDP + 5]]));
    if plen != f.len() - V6_UDP || ulen != plen {
        return fail(into, "payload or UDP length does not match the frame");
    }
    if f[V6_VXLAN] != 0x08 || f[V6_VXLAN + 4..V6_VXLAN + 8] != [0, 0, 42, 0] {
        return fail(into, "VXLAN header");
    }
    if f[V6_UDP + 6..V6_UDP + 8] == [0, 0] {
        return fail(into, "UDP checksum 0");
    }
    let mut g = f.to_vec();
    let inner = complete_inner_l4_checksum(&mut g[V6_INNER..]);
    if inner == InnerCsum::Wrong {
        return fail(into, "inner TCP/UDP checksum neither right nor partial");
    }
    if !udp6_checksum_ok(&g) {
        let why = if inner == InnerCsum::Completed {
            "outer UDP checksum wrong (inner checksum completed first)"
        } else {
            "outer UDP checksum wrong"
        };
        return fail(into, why);
    }
    into.ok += 1;
    let inner_ip = V6_INNER + 14;
    let inner_proto = match u16::from_be_bytes([f[V6_INNER + 12], f[V6_INNER + 13]]) {
        0x0800 => f.get(inner_ip + 9).copied(),
        0x86dd => f.get(inner_ip + 6).copied(),
        _ => None,
    };
    if inner_proto == Some(6) {
        into.tcp += 1;
    }
    if inner == InnerCsum::Completed {
        into.completed += 1;
    }
    true
}

fn hex(f: &[u8]) -> String {
    f.iter().take(120).map(|b| format!("{b:02x}")).collect()
}

/// A capture on h1's uplink while vxlan-fwd (h1) and the kernel's vxlan
/// (h2, bridge setup) exchange pings, TCP both ways and UDP: every VXLAN
/// frame vxlan-fwd sent is VXLAN over IPv6 (none over IPv4) with a
/// present and correct UDP checksum ([`check_frame`]); at least 2000 such
/// frames, 500 of them TCP, were checked; the kernel's frames are in the
/// capture too (both directions seen). The checker itself can fail: a
/// captured frame with one inner byte changed is refused.
#[test]
fn underlay_capture_ipv6_outer_headers_and_udp_checksums() {
    let setup = Setup::V6;
    let topo = setup.two_hosts("vx6-cap-");
    let [h1, h2] = topo.pick_hosts(["h1", "h2"]);
    let [c1, c2] = topo.pick_containers(["c1", "c2"]);
    // Not the default 64: the outer hop limit must be the uplink's, as the
    // kernel's vxlan over IPv6 takes it.
    h1.ns.run(
        "sysctl",
        ["-qw", &format!("net.ipv6.conf.eth0.hop_limit={HOP_LIMIT}")],
    );
    let f1 = Forwarder::start(&h1.ns, &setup.peer_args("h1", &["h1", "h2"], &[]));
    setup.kernel_bridge_peer(h2, "h1");
    assert_ping(&c1.ns, C2_IP4, 2, &[&f1]);

    let cap = PcapCapture::start(&h1.ns, "eth0", "udp");
    assert_ping(&c1.ns, C2_IP4, 3, &[&f1]);
    assert_ping(&c2.ns, C1_IP4, 3, &[&f1]);
    // TCP both ways, a few MB each (the capture holds every byte).
    let sip = C2_IP4;
    for reverse in [false, true] {
        let mut srv = c2.ns.spawn("iperf3", ["-s", "-1", "-B", sip]);
        std::thread::sleep(Duration::from_millis(300));
        let mut cmd = c1.ns.command("iperf3");
        cmd.args(["-c", sip, "-n", "4M", "--connect-timeout", "5000"]);
        if reverse {
            cmd.arg("-R");
        }
        let out = run_with_timeout(cmd, Duration::from_secs(30));
        let srv_out = srv.wait(Duration::from_secs(5));
        assert!(
            out.success(),
            "iperf3 TCP (reverse {reverse}): {out}\nserver: {srv_out}\n{}",
            f1.diagnostics()
        );
    }
    // UDP (inner UDP checksums in partial form too).
    let mut srv = c2.ns.spawn("iperf3", ["-s", "-1", "-B", sip]);
    std::thread::sleep(Duration::from_millis(300));
    let mut cmd = c1.ns.command("iperf3");
    cmd.args([
        "-c",
        sip,
        "-u",
        "-b",
        "20M",
        "-l",
        "1200",
        "-t",
        "1",
        "--connect-timeout",
        "5000",
    ]);
    let out = run_with_timeout(cmd, Duration::from_secs(30));
    let _ = srv.wait(Duration::from_secs(5));
    assert!(out.success(), "iperf3 UDP: {out}");
    let (frames, tcpdump_err) = cap.finish();

    let mac1 = frames::parse_mac(&h1.ns.mac("eth0"));
    let (me, peer): (std::net::Ipv6Addr, std::net::Ipv6Addr) =
        (H1_IP6.parse().unwrap(), H2_IP6.parse().unwrap());
    let (me, peer) = (me.octets(), peer.octets());
    let mut checked = Checked::default();
    let (mut over_ipv4, mut from_kernel) = (0usize, 0usize);
    let mut first_ok: Option<Vec<u8>> = None;
    for f in &frames {
        if f.len() < 14 {
            continue;
        }
        let et = u16::from_be_bytes([f[12], f[13]]);
        let vxlan4 = et == 0x0800
            && f.len() >= 42
            && f[23] == 17
            && u16::from_be_bytes([f[14 + 22], f[14 + 23]]) == 4789;
        let vxlan6 = et == ETH_P_IPV6
            && f.len() >= V6_VXLAN
            && f[V6_IP + 6] == 17
            && u16::from_be_bytes([f[V6_UDP + 2], f[V6_UDP + 3]]) == 4789;
        if f[6..12] != mac1 {
            if vxlan6 {
                from_kernel += 1;
            }
            continue;
        }
        if vxlan4 {
            over_ipv4 += 1;
            checked.bad.push(format!("VXLAN over IPv4: {}", hex(f)));
        } else if vxlan6 && check_frame(f, &peer, &me, &mut checked) && first_ok.is_none() {
            first_ok = Some(f.clone());
        }
    }
    let summary = format!(
        "{} frames captured; from vxlan-fwd: {checked:?} (first failures shown), {over_ipv4} over \
         IPv4; {from_kernel} VXLAN frames from the kernel peer; tcpdump: {tcpdump_err}",
        frames.len()
    );
    eprintln!("{}", summary.lines().next().unwrap_or_default());
    checked.bad.truncate(5);
    assert!(checked.bad.is_empty() && over_ipv4 == 0, "{summary}");
    assert!(
        checked.ok >= 2000 && checked.tcp >= 500,
        "too few frames checked: {summary}"
    );
    assert!(
        from_kernel > 0,
        "no frame of the kernel peer captured: {summary}"
    );
    eprintln!(
        "{} frames checked, {} TCP, {} with the inner checksum completed first",
        checked.ok, checked.tcp, checked.completed
    );

    // Negative control: the same check refuses a frame with one changed byte.
    let mut bad = first_ok.expect("a frame that passed");
    let last = bad.len() - 1;
    bad[last] ^= 0x5a;
    let mut c = Checked::default();
    assert!(
        !check_frame(&bad, &peer, &me, &mut c),
        "the checker accepted a damaged frame"
    );
}

/// Path MTU over an IPv6 underlay (overlay MTU 1500 − 70): a 1500-MTU
/// container's full-size IPv6 packet is answered with an ICMPv6 Packet
/// Too Big carrying 1430 and the sender learns `mtu 1430`; a full-size
/// IPv4 packet with DF gets "fragmentation needed" with 1430; at the
/// learned sizes every packet crosses. In every receive mode.
#[test]
fn pmtu_over_ipv6_underlay() {
    over_ipv6_in_every_mode("pmtu_over_ipv6_underlay", pmtu_over_ipv6_underlay_in);
}

fn pmtu_over_ipv6_underlay_in(setup: Setup) {
    let topo = setup
        .hosts(&setup.prefix("vx6-mtu-"), 2)
        .container_with_mtu("c1", "h1", "veth0", C1_IP, 1500)
        .container_with_mtu("c2", "h2", "veth0", C2_IP, 1500)
        .ipv6(true)
        .build_checked();
    let (c1, c2) = (topo.container("c1"), topo.container("c2"));
    add_ip6(&c1.ns, C1_IP6);
    add_ip6(&c2.ns, C2_IP6);
    let (f1, f2) = setup.pair(&topo, &[], &[]);
    let diag = || format!("{}\n{}", f1.diagnostics(), f2.diagnostics());

    // Positive controls: small packets of both families cross.
    let r = ping_strict(&c1.ns, C2_IP6, 3);
    assert!(r.ok, "small IPv6 ping: {}\n{}", r.output, diag());
    assert_ping(&c1.ns, C2_IP, 2, &[&f1, &f2]);
    for (six, ip) in [(true, C2_IP6), (false, C2_IP)] {
        let route = c1
            .ns
            .ip([if six { "-6" } else { "-4" }, "route", "get", ip]);
        assert!(
            !route.contains("mtu"),
            "c1 has a path MTU before the test: {route}"
        );
    }

    // IPv6: 1452 + 8 + 40 = 1500 bytes, too big for 1430.
    let before = f1.counters();
    let big = c1.ns.exec(
        "ping",
        [
            "-6", "-n", "-M", "do", "-s", "1452", "-c", "1", "-W", "2", C2_IP6,
        ],
    );
    let after = f1.counters();
    let ctx = format!(
        "ping -6 -M do -s 1452: {big}\nh1 counter changes {:?}\n{}",
        counters_delta(&before, &after),
        diag()
    );
    assert!(
        !big.success(),
        "a 1500-byte IPv6 packet crossed a 1430-byte overlay: {ctx}"
    );
    assert_eq!(
        d(&before, &after, "tx_icmp6_too_big"),
        1,
        "one Packet Too Big: {ctx}"
    );
    assert!(
        d(&before, &after, "drop_too_big") >= 1,
        "drop_too_big did not grow: {ctx}"
    );
    let route = c1.ns.ip(["-6", "route", "get", C2_IP6]);
    assert!(
        route.contains("mtu 1430"),
        "c1 did not learn mtu 1430 from the Packet Too Big: `ip -6 route get {C2_IP6}`: {route}\n{ctx}"
    );
    // 1382 + 48 = 1430: crosses, both ways.
    let ok = c1.ns.exec(
        "ping",
        [
            "-6", "-n", "-M", "do", "-s", "1382", "-c", "3", "-W", "2", "-i", "0.2", C2_IP6,
        ],
    );
    assert!(
        ok.success() && ok.stdout.contains(" 0% packet loss"),
        "ping -6 -M do -s 1382 after path MTU discovery: {ok}\n{}",
        diag()
    );

    // IPv4 with DF: 1472 + 28 = 1500 bytes.
    let before = f1.counters();
    let big = c1.ns.exec(
        "ping",
        ["-n", "-M", "do", "-s", "1472", "-c", "1", "-W", "2", C2_IP],
    );
    let after = f1.counters();
    let ctx = format!(
        "ping -M do -s 1472: {big}\nh1 counter changes {:?}\n{}",
        counters_delta(&before, &after),
        diag()
    );
    assert!(
        !big.success(),
        "a 1500-byte DF packet crossed a 1430-byte overlay: {ctx}"
    );
    assert!(
        d(&before, &after, "tx_icmp_frag_needed") >= 1,
        "tx_icmp_frag_needed did not grow: {ctx}"
    );
    let route = c1.ns.ip(["-4", "route", "get", C2_IP]);
    assert!(
        route.contains("mtu 1430"),
        "c1 did not learn mtu 1430 from fragmentation needed: {route}\n{ctx}"
    );
    let ok = c1.ns.exec(
        "ping",
        [
            "-n", "-M", "do", "-s", "1402", "-c", "3", "-W", "2", "-i", "0.2", C2_IP,
        ],
    );
    assert!(
        ok.success() && ok.stdout.contains(" 0% packet loss"),
        "ping -M do -s 1402 after path MTU discovery: {ok}\n{}",
        diag()
    );
}
