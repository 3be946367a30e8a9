//! End-to-end tests of IPv6 (issue 12): inner IPv6 senders and their path
//! MTU discovery through the tunnel.
//!
//! Run as root, serially: `cargo test --release -p vxlan-tests --test
//! e2e_ipv6 -- --test-threads=1` (with target/release/vxlan-fwd built, or
//! `VXLAN_FWD_BIN`). Each test builds its own namespaces (prefix
//! `vx6-<test>-`) and removes them, also on failure.

use vxlan_tests::{Forwarder, H1_IP, H2_IP, NetNs, Topology, ping_strict};

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
