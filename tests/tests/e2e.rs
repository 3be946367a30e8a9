//! End-to-end tests: vxlan-fwd in network namespaces, on the seed topology
//! of the VXLAN tutorial, against itself and against the kernel's vxlan.
//!
//! Run as root, serially: `cargo xtask test` (or `cargo test --release -p
//! vxlan-tests --test e2e -- --test-threads=1` with target/release/vxlan-fwd
//! built). Each test builds its own namespaces (prefix `vxt-<test>-`) and
//! removes them, also on failure.

use std::time::Duration;

use vxlan_tests::{
    Container, Forwarder, H1_IP, H2_IP, NetNs, Output, Topology, bpf,
    capture::PacketTap,
    checks::{
        assert_iperf, assert_one_error_line, assert_ping, counters_delta, diagnostics, leftovers,
        ping_all,
    },
    fdb_checks::{assert_local, assert_remote, defaults, rows},
    forwarder::{start_and_signal_on_ready, vxlan_fwd_timeout},
    ping_result,
    process::run_with_timeout,
    scenario::{BuildChecked, Pick, RxMode, Setup, ZERO_MAC},
    topo::UPLINK,
    vxlan_fwd, vxlan_fwd_bin, xdp,
};

const HOST_IF: &str = "vxlan0";
const HOST_IF_PEER: &str = "vxlan0-fwd";

/// `--iface eth0 --vni 42` followed by `extra`, for the default [`Setup`].
fn args<'a>(extra: &[&'a str]) -> Vec<&'a str> {
    Setup::default().args(extra)
}

/// The forwarder in `ns` receives in the mode `setup` asks for: native
/// (`ip -j link`'s `xdp.mode` 1) or skb-mode XDP (2) on `eth0`, or no XDP
/// at all (TC decapsulation).
fn assert_mode(ns: &NetNs, setup: Setup) {
    let link = ns
        .link("eth0")
        .unwrap_or_else(|| panic!("no eth0 in {}", ns.name()));
    let xdp = link["xdp"]["mode"].as_u64();
    let want = match setup.mode {
        RxMode::Auto => None,
        RxMode::Native => Some(1),
        RxMode::Generic => Some(2),
        _ => panic!("mode {:?} not in the matrix", setup.mode),
    };
    assert_eq!(
        xdp,
        want,
        "{}: eth0 is not in the mode asked for: {link}",
        setup.mode.name()
    );
}

/// Text of `ip -d link show dev eth0` in `ns`.
fn uplink_details(ns: &NetNs) -> String {
    ns.ip(["-d", "link", "show", "dev", "eth0"])
}

#[test]
fn point_to_point_host_if() {
    let topo = Setup::default().hosts("vxt-p2p-", 2).build_checked();
    let [h1, h2] = topo.pick_hosts(["h1", "h2"]);
    let f1 = Forwarder::start(&h1.ns, &args(&["--host-if", HOST_IF, "--remote", H2_IP]));
    let f2 = Forwarder::start(&h2.ns, &args(&["--host-if", HOST_IF, "--remote", H1_IP]));
    h1.addr_up(HOST_IF, "172.18.1.2/24");
    h2.addr_up(HOST_IF, "172.18.1.3/24");

    for h in [h1, h2] {
        assert_eq!(
            h.ns.mtu(HOST_IF),
            1450,
            "{}: MTU of {HOST_IF} (uplink MTU 1500 - 50)",
            h.name
        );
    }
    assert_ping(&h1.ns, "172.18.1.3", 3, &[&f1, &f2]);
    assert_ping(&h2.ns, "172.18.1.2", 3, &[&f1, &f2]);

    let (mac1, mac2) = (h1.ns.mac(HOST_IF), h2.ns.mac(HOST_IF));
    let (fdb1, fdb2) = (rows(&f1.fdb_show_json()), rows(&f2.fdb_show_json()));
    // Each side learned the other's vxlan0 behind the other's VTEP...
    assert_remote(&fdb1, 42, &mac2, H2_IP, "h1");
    assert_remote(&fdb2, 42, &mac1, H1_IP, "h2");
    // ...has its flood entry towards the other...
    assert_eq!(defaults(&fdb1, 42), [H2_IP], "h1's default remotes");
    assert_eq!(defaults(&fdb2, 42), [H1_IP], "h2's default remotes");
    // ...and its own vxlan0 on the local port (the host interface's peer).
    assert_local(&fdb1, 42, &mac1, HOST_IF_PEER, "h1");
    assert_local(&fdb2, 42, &mac2, HOST_IF_PEER, "h2");

    // Isolation: `fdb show` in a namespace shows that namespace's forwarder.
    assert_ne!(fdb1, fdb2, "h1 and h2 show the same FDB");
    for (fdb, own, whose) in [(&fdb1, H1_IP, "h1"), (&fdb2, H2_IP, "h2")] {
        assert!(
            !fdb.iter()
                .any(|e| e.dst.is_some_and(|d| d.to_string() == own)),
            "{whose}'s FDB has an entry pointing at its own address {own}: {fdb:#?}"
        );
    }

    // The text form, like `bridge fdb show`.
    let text1 = f1.fdb_show();
    for line in [
        format!("{ZERO_MAC} dst {H2_IP} vni 42 permanent"),
        format!("{mac2} dst {H2_IP} vni 42"),
        format!("{mac1} dev {HOST_IF_PEER} vni 42"),
    ] {
        assert!(
            text1.lines().any(|l| l.trim() == line),
            "h1 fdb show lacks `{line}`:\n{text1}"
        );
    }
}

#[test]
fn bridge_setup_three_containers() {
    let topo = Setup::default()
        .hosts_with_containers("vxt-br3-", 2)
        .container("c3", "h1", "veth1", "172.18.1.4")
        .build_checked();
    let (f1, f2) = Setup::default().pair(&topo, &["--port", "veth1"], &[]);

    let [c1, c2, c3] = topo.pick_containers(["c1", "c2", "c3"]);
    ping_all(&[c1, c2, c3], &[&f1, &f2]);

    let (fdb1, fdb2) = (rows(&f1.fdb_show_json()), rows(&f2.fdb_show_json()));
    assert_local(&fdb1, 42, &c1.mac(), "veth0", "h1");
    assert_local(&fdb1, 42, &c3.mac(), "veth1", "h1");
    assert_remote(&fdb1, 42, &c2.mac(), H2_IP, "h1");
    assert_local(&fdb2, 42, &c2.mac(), "veth0", "h2");
    assert_remote(&fdb2, 42, &c1.mac(), H1_IP, "h2");
    assert_remote(&fdb2, 42, &c3.mac(), H1_IP, "h2");

    // c1 <-> c3 (both behind h1, ARP done) is switched on h1: nothing is
    // encapsulated, nothing reaches h2.
    let (before1, before2) = (f1.counters(), f2.counters());
    let r = ping_result(&c1.ns, c3.ip.to_string(), 5);
    let (after1, after2) = (f1.counters(), f2.counters());
    let (d1, d2) = (
        counters_delta(&before1, &after1),
        counters_delta(&before2, &after2),
    );
    let ctx = format!("counter changes during ping c1 -> c3: h1 {d1:?}, h2 {d2:?}");
    assert_eq!(
        r.received, 5,
        "ping c1 -> c3 lost replies ({ctx}): {}",
        r.output
    );
    assert!(
        after1["local_switch"] >= before1["local_switch"] + 10,
        "h1 local_switch should grow by >= 10 (5 requests + 5 replies): {ctx}"
    );
    assert_eq!(
        after2["rx_decap"], before2["rx_decap"],
        "traffic c1 <-> c3 reached h2: {ctx}"
    );
    for c in ["tx_encap", "tx_flood_copy"] {
        assert_eq!(
            after1[c], before1[c],
            "h1 encapsulated c1 <-> c3 traffic ({c}): {ctx}"
        );
    }
}

/// vxlan-fwd on h1, the tutorial's kernel bridge setup on h2: pings both
/// ways, each side learned the other's container behind the right VTEP.
/// Run in every receive mode of h1 (the mode matrix).
#[test]
fn interop_kernel_peer_bridge() {
    for setup in Setup::matrix() {
        interop_kernel_peer_bridge_in(setup);
    }
}

fn interop_kernel_peer_bridge_in(setup: Setup) {
    let mode = setup.mode.name();
    let topo = setup.two_hosts(&setup.prefix("vxt-kbr-"));
    let [h1, h2] = topo.pick_hosts(["h1", "h2"]);
    let [c1, c2] = topo.pick_containers(["c1", "c2"]);
    let f1 = Forwarder::start(&h1.ns, &setup.args(&["--port", "veth0", "--remote", H2_IP]));
    // The tutorial's bridge setup on h2, with the kernel's vxlan.
    setup.kernel_bridge_peer(h2, "h1");

    assert_ping(&c1.ns, "172.18.1.3", 3, &[&f1]);
    assert_ping(&c2.ns, "172.18.1.2", 3, &[&f1]);
    assert_mode(&h1.ns, setup);

    // A plain packet socket on the uplink (no ring, no filter): the kernel
    // clones every frame for it before TC runs. With XDP, TC must still
    // find the metadata of what XDP decapsulated (it did not, until the TC
    // program stopped writing packet data in place).
    let tap = PacketTap::open(&h1.ns, UPLINK);
    assert_ping(&c1.ns, "172.18.1.3", 3, &[&f1]);
    assert_ping(&c2.ns, "172.18.1.2", 3, &[&f1]);
    let seen = tap.received();
    assert!(
        seen >= 6,
        "{mode}: the packet socket on h1's uplink received {seen} frames during 6 answered pings"
    );

    let fdb1 = rows(&f1.fdb_show_json());
    assert_remote(
        &fdb1,
        42,
        &c2.mac(),
        H2_IP,
        &format!("h1 (vxlan-fwd, {mode})"),
    );
    let kfdb = h2.ns.run("bridge", ["fdb", "show", "dev", HOST_IF]);
    let c1_mac = c1.mac();
    assert!(
        kfdb.lines()
            .any(|l| l.starts_with(&c1_mac) && l.contains(&format!("dst {H1_IP}"))),
        "{mode}: h2's kernel vxlan did not learn c1 ({c1_mac}) with dst {H1_IP}:\n{kfdb}"
    );
}

#[test]
fn interop_kernel_peer_point_to_point() {
    let topo = Setup::default().hosts("vxt-kp2p-", 2).build_checked();
    let [h1, h2] = topo.pick_hosts(["h1", "h2"]);
    let f1 = Forwarder::start(&h1.ns, &args(&["--host-if", HOST_IF, "--remote", H2_IP]));
    h1.addr_up(HOST_IF, "172.18.1.2/24");
    // The tutorial's point-to-point setup on h2, with the kernel's vxlan.
    h2.add_kernel_vxlan(HOST_IF, H1_IP);
    h2.addr_up(HOST_IF, "172.18.1.3/24");

    assert_ping(&h1.ns, "172.18.1.3", 3, &[&f1]);
    assert_ping(&h2.ns, "172.18.1.2", 3, &[&f1]);

    assert_remote(
        &rows(&f1.fdb_show_json()),
        42,
        &h2.ns.mac(HOST_IF),
        H2_IP,
        "h1 (vxlan-fwd)",
    );
    let kfdb = h2.ns.run("bridge", ["fdb", "show", "dev", HOST_IF]);
    let mac1 = h1.ns.mac(HOST_IF);
    assert!(
        kfdb.lines()
            .any(|l| l.starts_with(&mac1) && l.contains(&format!("dst {H1_IP}"))),
        "h2's kernel vxlan did not learn h1's {HOST_IF} ({mac1}) with dst {H1_IP}:\n{kfdb}"
    );
}

/// `ping -M do -s 1422` (a 1450-byte IP packet, DF set) from `from` to
/// `to` gets all its replies.
fn assert_full_size_ping(from: &Container, to: &Container, fwds: &[&Forwarder]) {
    let mut cmd = from.ns.command("ping");
    cmd.args([
        "-n", "-c", "3", "-W", "2", "-i", "0.2", "-M", "do", "-s", "1422",
    ])
    .arg(to.ip.to_string());
    let out = run_with_timeout(cmd, Duration::from_secs(20));
    if !(out.success() && out.stdout.contains(" 0% packet loss")) {
        panic!(
            "full-size DF ping {} -> {} failed: {out}\n{}",
            from.name,
            to.name,
            diagnostics(fwds)
        );
    }
}

/// TCP at full segment size and full-size DF pings, vxlan-fwd against
/// itself and against the kernel's vxlan, both directions; in every receive
/// mode (the mode matrix).
#[test]
fn tcp_full_size_segments() {
    for setup in Setup::matrix() {
        tcp_full_size_segments_in(setup);
    }
}

fn tcp_full_size_segments_in(setup: Setup) {
    let mode = setup.mode.name();
    let topo = setup.two_hosts(&setup.prefix("vxt-tcp-"));
    let h2 = topo.host("h2");
    let [c1, c2] = topo.pick_containers(["c1", "c2"]);
    let (f1, f2) = setup.pair(&topo, &[], &[]);
    assert_ping(&c1.ns, "172.18.1.3", 2, &[&f1, &f2]);
    assert_mode(&topo.host("h1").ns, setup);

    // vxlan-fwd <-> vxlan-fwd, both directions.
    let encap_before = f1.counter("tx_encap");
    let report = assert_iperf(
        c1,
        c2,
        false,
        &[&f1, &f2],
        &format!("{mode}: c1 -> c2 (vxlan-fwd both ends)"),
    );
    let mss = report["start"]["tcp_mss_default"].as_u64().unwrap_or(0);
    assert!(
        mss >= 1380,
        "{mode}: c1's TCP MSS {mss}: segments are not full-size for MTU 1450"
    );
    let encap_after = f1.counter("tx_encap");
    assert!(
        encap_after > encap_before,
        "{mode}: h1 tx_encap did not grow ({encap_before} -> {encap_after})"
    );
    let decap_before = f1.counter("rx_decap");
    assert_iperf(
        c1,
        c2,
        true,
        &[&f1, &f2],
        &format!("{mode}: c2 -> c1 (vxlan-fwd both ends)"),
    );
    let decap_after = f1.counter("rx_decap");
    assert!(
        decap_after > decap_before,
        "{mode}: h1 rx_decap did not grow ({decap_before} -> {decap_after})"
    );
    // Full-size packets with DF set cross the tunnel unfragmented both ways:
    // 1422 bytes of ICMP payload + 28 = 1450, the containers' MTU.
    assert_full_size_ping(c1, c2, &[&f1, &f2]);
    assert_full_size_ping(c2, c1, &[&f1, &f2]);
    eprintln!(
        "{mode}: h1 counters: {:?}\nh2 counters: {:?}",
        f1.counters(),
        f2.counters()
    );

    // vxlan-fwd <-> the kernel's vxlan (bridge setup on h2).
    let out = f2.stop();
    assert!(
        out.success(),
        "{mode}: vxlan-fwd on h2 did not stop cleanly: {out}"
    );
    setup.kernel_bridge_peer(h2, "h1");
    assert_ping(&c1.ns, "172.18.1.3", 3, &[&f1]);
    assert_iperf(
        c1,
        c2,
        false,
        &[&f1],
        &format!("{mode}: c1 -> c2 (kernel vxlan on h2)"),
    );
    assert_iperf(
        c1,
        c2,
        true,
        &[&f1],
        &format!("{mode}: c2 -> c1 (kernel vxlan on h2)"),
    );
    assert_full_size_ping(c1, c2, &[&f1]);
    assert_full_size_ping(c2, c1, &[&f1]);
    eprintln!("{mode}: h1 counters: {:?}", f1.counters());
}

#[test]
fn clean_teardown() {
    let topo = Topology::seed("vxt-td-")
        .container("c1", "h1", "veth0", "172.18.1.2")
        .build();
    let h1 = topo.host("h1");
    // The default on a veth uplink (no XDP: the TC program decapsulates),
    // then skb-mode XDP.
    for mode in ["auto", "generic"] {
        let run_args = Setup::default().peer_args(
            "h1",
            &["h1", "h2"],
            &["--host-if", HOST_IF, "--xdp-mode", mode],
        );
        teardown_round(&h1.ns, &run_args, mode == "generic");
    }
}

fn teardown_round(ns: &NetNs, run_args: &[&str], with_xdp: bool) {
    let f = Forwarder::start(ns, run_args);

    // While it runs: XDP on the uplink (or not), the host interface pair,
    // its programs.
    assert_eq!(
        uplink_details(ns).contains("xdp"),
        with_xdp,
        "XDP on eth0 while running, with {run_args:?}"
    );
    assert!(
        ns.has_link(HOST_IF) && ns.has_link(HOST_IF_PEER),
        "host interface missing"
    );
    let prog_id = ns.uplink_prog_id("eth0").expect("our program on eth0") as u32;
    let maps = bpf::prog_map_ids(prog_id);
    let progs = bpf::progs_using_maps(&maps);
    let names: Vec<&str> = progs.iter().map(|p| p.name.as_str()).collect();
    for n in ["vxlan_xdp", "vxlan_tc_uplink", "vxlan_tc_port"] {
        assert!(
            names.contains(&n),
            "program {n} not loaded while running (found {progs:?})"
        );
    }
    assert!(vxlan_fwd(ns, ["fdb", "show"]).success());

    let out = f.stop();
    assert_eq!(out.code(), Some(0), "exit status after SIGINT: {out}");
    assert!(!out.timed_out, "did not exit within 5 s of SIGINT: {out}");
    assert!(out.stdout.contains("stopped"), "no `stopped` line: {out}");
    assert!(!out.combined().contains("panicked"), "{out}");

    let details = uplink_details(ns);
    assert!(
        !details.contains("xdp"),
        "XDP still on eth0 after stop:\n{details}"
    );
    assert!(!ns.has_link(HOST_IF), "{HOST_IF} left behind");
    assert!(!ns.has_link(HOST_IF_PEER), "{HOST_IF_PEER} left behind");
    // tc filters (cls_bpf) outlive a process: none may be left.
    for dev in ["eth0", "veth0"] {
        let tc = ns.run("tc", ["filter", "show", "dev", dev, "ingress"]);
        assert!(
            tc.trim().is_empty(),
            "tc ingress filters left on {dev} after stop:\n{tc}"
        );
    }
    let left: Vec<_> = progs.iter().filter(|p| bpf::prog_loaded(p.id)).collect();
    assert!(
        left.is_empty(),
        "programs still loaded after stop: {left:?}"
    );
    let fdb = vxlan_fwd(ns, ["fdb", "show"]);
    assert!(
        !fdb.success(),
        "fdb show succeeded with no forwarder: {fdb}"
    );
    assert!(
        fdb.stderr.contains("no vxlan-fwd is running"),
        "fdb show without a forwarder: {fdb}"
    );

    // The same uplink, ports and host interface name are free again at once.
    // A supervisor may stop it as soon as it reports ready: SIGTERM and
    // SIGINT sent right after the ready line must stop it just as cleanly.
    let mut problems = Vec::new();
    // Several rounds: a race right after the ready line shows up reliably.
    let signals = [(libc::SIGTERM, "SIGTERM"), (libc::SIGINT, "SIGINT")];
    for (sig, name) in signals.into_iter().cycle().take(10) {
        let out = start_and_signal_on_ready(ns, run_args, sig);
        let xdp_left = uplink_details(ns).contains("xdp");
        let host_if_left = ns.has_link(HOST_IF) || ns.has_link(HOST_IF_PEER);
        if out.code() != Some(0)
            || out.timed_out
            || !out.stdout.contains("stopped")
            || xdp_left
            || host_if_left
        {
            problems.push(format!(
                "{name} right after ready: {out}\nXDP left on eth0: {xdp_left}, host interface left: \
                 {host_if_left}"
            ));
        }
        // Clean up what a failed stop left, so the next round starts afresh.
        if xdp_left {
            let _ = ns.try_ip(["link", "set", "dev", "eth0", "xdp", "off"]);
        }
        if host_if_left {
            let _ = ns.try_ip(["link", "del", HOST_IF]);
        }
    }
    assert!(
        problems.is_empty(),
        "unclean stops:\n{}",
        problems.join("\n")
    );
}

/// Asserts that `out` is a failed start: exit `code`, every `needle` in
/// stderr, no panic, no ready line; for vxlan-fwd's own errors (exit 1) a
/// single `vxlan-fwd: error:` line.
fn assert_failed(out: &Output, what: &str, code: i32, needles: &[&str]) {
    assert!(
        !out.timed_out,
        "{what}: started (or hung) instead of failing: {out}"
    );
    assert_eq!(out.code(), Some(code), "{what}: exit code: {out}");
    for n in needles {
        assert!(out.stderr.contains(n), "{what}: stderr lacks `{n}`: {out}");
    }
    assert!(!out.combined().contains("panicked"), "{what}: panic: {out}");
    assert!(
        !out.stdout.contains("ready"),
        "{what}: printed a ready line: {out}"
    );
    if code == 1 {
        assert_one_error_line(out, what);
    }
}

/// Asserts nothing of a forwarder is left in `ns`: no XDP on eth0, no host
/// interface pair named `host_if`, no tc ingress filter on eth0 or veth0.
fn assert_nothing_attached(ns: &NetNs, what: &str, host_if: &str) {
    let mut problems = leftovers(ns, &["eth0", "veth0"]);
    for dev in [host_if.to_owned(), format!("{host_if}-fwd")] {
        if ns.has_link(&dev) {
            problems.push(format!("interface {dev}"));
        }
    }
    assert!(problems.is_empty(), "{what}: left behind: {problems:#?}");
}

#[test]
fn errors_are_clear() {
    let topo = Setup::default().two_hosts("vxt-err-");
    let [h1, h2] = topo.pick_hosts(["h1", "h2"]);
    let timeout = Duration::from_secs(20);
    let start = |a: &[&str]| vxlan_fwd_timeout(&h1.ns, a, timeout);

    // (what, args, exit code, stderr substrings)
    #[rustfmt::skip]
    let cases: &[(&str, Vec<&str>, i32, &[&str])] = &[
        ("missing uplink", vec!["--iface", "nope0", "--vni", "42"], 1, &["interface 'nope0' not found"]),
        ("missing port", args(&["--port", "nope1", "--remote", H2_IP]), 1, &["nope1", "not found"]),
        ("missing port with host-if", args(&["--host-if", HOST_IF, "--port", "veth0", "--port", "nope1"]), 1, &["nope1"]),
        ("VNI 0", vec!["--iface", "eth0", "--vni", "0"], 2, &["'0'", "--vni"]),
        ("VNI 2^24", vec!["--iface", "eth0", "--vni", "16777216"], 2, &["16777216", "--vni"]),
        ("bad --local", args(&["--local", "1.2.3"]), 2, &["1.2.3", "--local"]),
        ("bad --remote", args(&["--remote", "192.168.57"]), 2, &["192.168.57", "--remote"]),
        ("host-if name too long", args(&["--host-if", "vxlan0123456789"]), 1, &["vxlan0123456789"]),
    ];
    for (what, a, code, needles) in cases {
        let out = start(a);
        assert_failed(&out, what, *code, needles);
        assert_nothing_attached(&h1.ns, what, HOST_IF);
    }

    // Not root.
    let mut cmd = h1.ns.command("setpriv");
    cmd.args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(vxlan_fwd_bin());
    cmd.args(args(&["--port", "veth0"]));
    let out = run_with_timeout(cmd, timeout);
    assert_failed(&out, "not root", 1, &["must run as root"]);
    assert_nothing_attached(&h1.ns, "not root", HOST_IF);

    // An uplink that carries someone else's XDP program is left alone.
    xdp::attach_foreign_xdp(&h1.ns, "eth0");
    let foreign = h1
        .ns
        .xdp_prog_id("eth0")
        .expect("foreign XDP program on eth0");
    let out = start(&Setup::default().peer_args("h1", &["h1", "h2"], &["--host-if", HOST_IF]));
    assert_failed(&out, "foreign XDP program", 1, &["XDP", "eth0"]);
    assert_eq!(
        h1.ns.xdp_prog_id("eth0"),
        Some(foreign),
        "the foreign XDP program was replaced"
    );
    assert!(
        !h1.ns.has_link(HOST_IF) && !h1.ns.has_link(HOST_IF_PEER),
        "foreign XDP: host-if left"
    );
    xdp::detach_xdp(&h1.ns, "eth0");
    assert_nothing_attached(&h1.ns, "foreign XDP detached", HOST_IF);

    // A second forwarder on an uplink that already carries a forwarder
    // fails, and the first one keeps forwarding.
    let run_args = args(&["--port", "veth0", "--remote", H2_IP]);
    let f1 = Forwarder::start(&h1.ns, &run_args);
    let f2 = Forwarder::start(&h2.ns, &args(&["--port", "veth0", "--remote", H1_IP]));
    assert_ping(&topo.container("c1").ns, "172.18.1.3", 2, &[&f1, &f2]);
    let prog_before = h1
        .ns
        .uplink_prog_id("eth0")
        .expect("first forwarder's program on eth0");
    let mut second = run_args.clone();
    second.extend(["--host-if", "vxlan9"]);
    let out = start(&second);
    assert!(
        !out.timed_out && !out.success(),
        "second forwarder started: {out}"
    );
    assert!(
        !h1.ns.has_link("vxlan9") && !h1.ns.has_link("vxlan9-fwd"),
        "second start left vxlan9 behind"
    );
    assert_eq!(
        h1.ns.uplink_prog_id("eth0"),
        Some(prog_before),
        "the first forwarder's program was replaced"
    );
    let mut f1 = f1;
    assert!(
        f1.is_running(),
        "the first forwarder exited: {:?}",
        f1.output_so_far()
    );
    assert_ping(&topo.container("c1").ns, "172.18.1.3", 3, &[&f1, &f2]);
    assert_ping(&topo.container("c2").ns, "172.18.1.2", 3, &[&f1, &f2]);
    // Checked last so that a wording problem does not hide the above.
    assert_failed(
        &out,
        "uplink already has a forwarder",
        1,
        &["another vxlan-fwd", "eth0"],
    );
    let out = f1.stop();
    assert!(out.success(), "first forwarder did not stop cleanly: {out}");
}
