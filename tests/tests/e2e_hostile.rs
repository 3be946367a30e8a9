//! End-to-end tests with hostile or unusual input (issue 5): crafted
//! frames injected on the underlay, spoofed VTEPs, a learning flood, path
//! MTU discovery, a crash and adoption of the running datapath, the
//! counters (`stats --json`, `/metrics`) and `--debug-log`.
//!
//! Run as root, serially: `cargo test --release -p vxlan-tests --test
//! e2e_hostile -- --test-threads=1` (with target/release/vxlan-fwd built,
//! or `VXLAN_FWD_BIN`). Each test builds its own namespaces (prefix
//! `vxh-<test>-`) and removes them, also on failure. Crafted frames are
//! sent with a raw AF_PACKET socket opened in the underlay switch's
//! namespace, out of the switch's port towards h1, so they arrive on h1's
//! `eth0` as if from the wire.

use std::{
    collections::BTreeMap,
    net::SocketAddr,
    time::{Duration, Instant},
};

use serde_json::Value;
use vxlan_common::{
    Counter,
    wire::{ETH_HLEN, OFF_UDP, OFF_VXLAN},
};
use vxlan_tests::{
    Forwarder, H2_IP, NetNs, Topology, bpf,
    checks::{assert_ping, counters_delta, leftovers, ping_summary},
    fdb_find,
    hostile_net::{
        collect_udp, drain_udp, fix_ip_checksum, fix_lengths, format_mac, http_get, rx_packets,
        udp_listener, vxlan_frame,
    },
    inject::{FAKE_MAC, Injector, MARK_PORT},
    process::Process,
    scenario::{BuildChecked, C1_IP, C2_IP, Pick, Setup, ZERO_MAC},
    wait_until,
};

/// A VTEP address on the underlay that is not a configured remote.
const SPOOF_IP: &str = "192.168.57.99";

// ---------------------------------------------------------------- counters

/// `stats --json`: `counters` and `drops` as maps.
#[derive(Clone, Debug)]
struct Snap {
    counters: BTreeMap<String, u64>,
    drops: BTreeMap<String, u64>,
}

fn json_u64_map(v: &Value, key: &str, ns: &str) -> BTreeMap<String, u64> {
    v[key]
        .as_object()
        .unwrap_or_else(|| panic!("stats --json in {ns} has no `{key}` object: {v}"))
        .iter()
        .map(|(k, n)| {
            let n = n
                .as_u64()
                .unwrap_or_else(|| panic!("stats --json in {ns}: {key}.{k} = {n}"));
            (k.clone(), n)
        })
        .collect()
}

fn snap(f: &Forwarder) -> Snap {
    let v = f.stats_json();
    Snap {
        counters: json_u64_map(&v, "counters", f.ns()),
        drops: json_u64_map(&v, "drops", f.ns()),
    }
}

impl Snap {
    fn c(&self, name: &str) -> u64 {
        *self
            .counters
            .get(name)
            .unwrap_or_else(|| panic!("no counter `{name}` in stats --json: {:?}", self.counters))
    }

    /// A drop counter from the `drops` object, by reason (`vxlan_flags`).
    fn d(&self, reason: &str) -> u64 {
        *self.drops.get(reason).unwrap_or_else(|| {
            panic!(
                "no drop reason `{reason}` in stats --json: {:?}",
                self.drops
            )
        })
    }
}

/// Polls `stats --json` until `cond` holds (at most `timeout`); returns
/// whether it did.
fn wait_stats(f: &Forwarder, timeout: Duration, cond: impl Fn(&Snap) -> bool) -> bool {
    wait_until(timeout, Duration::from_millis(50), || cond(&snap(f)))
}

// ----------------------------------------------------------------- frames

/// Datagrams from `got` that carry `marker`.
fn count_marker(got: &[Vec<u8>], marker: &str) -> usize {
    got.iter()
        .filter(|d| d.as_slice() == marker.as_bytes())
        .count()
}

// ------------------------------------------------- 1. bad input on uplink

/// What a crafted frame should do on h1.
#[derive(Clone, Copy, Debug)]
enum Expect {
    /// Dropped in XDP and counted under this reason (`drops` key).
    Drop(&'static str),
    /// Decapsulated and delivered to c1.
    Deliver,
    /// Passed to h1's kernel, not decapsulated; then `Kernel` shows it.
    Pass(Kernel),
}

/// How h1's kernel shows it received a frame that was passed.
#[derive(Clone, Copy, Debug)]
enum Kernel {
    /// A UDP datagram for h1's listener on port 4790.
    Udp4790,
    /// An IPv4 fragment queued for reassembly (`Ip: ReasmReqds`).
    Fragment,
    /// A packet for another address that h1 does not forward
    /// (`Ip: InAddrErrors`).
    NotLocal,
}

/// `Ip:` counters of `/proc/net/snmp` in `ns`.
fn ip_mib(ns: &NetNs) -> BTreeMap<String, u64> {
    let text = ns.run("cat", ["/proc/net/snmp"]);
    let lines: Vec<&str> = text.lines().filter(|l| l.starts_with("Ip: ")).collect();
    assert!(lines.len() >= 2, "no Ip: lines in /proc/net/snmp: {text}");
    lines[0]
        .split_whitespace()
        .zip(lines[1].split_whitespace())
        .skip(1)
        .filter_map(|(k, v)| Some((k.to_owned(), v.parse().ok()?)))
        .collect()
}

struct Case {
    name: &'static str,
    frame: Vec<u8>,
    /// Marker the frame's inner datagram carries.
    marker: String,
    count: usize,
    expect: Expect,
}

#[test]
fn bad_input_on_the_uplink_is_dropped_and_counted() {
    // In every receive mode (the mode matrix): the same verdicts whether
    // XDP (native or skb mode) or TC decapsulates.
    for setup in Setup::matrix() {
        bad_input_in(setup);
    }
}

fn bad_input_in(setup: Setup) {
    let topo = Topology::seed(&setup.prefix("vxh-bad-"))
        .container("c1", "h1", "veth0", C1_IP)
        .build();
    topo.check_underlay();
    let (h1, c1) = (topo.host("h1"), topo.container("c1"));
    let f1 = Forwarder::start(&h1.ns, &setup.peer_args("h1", &["h1", "h2"], &[]));
    let inj = Injector::new(&topo);
    let c1_sock = udp_listener(&c1.ns, MARK_PORT);
    let h1_sock = udp_listener(&h1.ns, 4790);

    let mut cases: Vec<Case> = Vec::new();
    let mut case =
        |name: &'static str, count: usize, expect: Expect, edit: &dyn Fn(&mut Vec<u8>)| {
            let marker = format!("vxh-marker {name}");
            let mut frame = inj.valid(H2_IP, &marker);
            edit(&mut frame);
            cases.push(Case {
                name,
                frame,
                marker,
                count,
                expect,
            });
        };
    use Expect::*;
    // Positive control first (and again last): exactly one delivery.
    case("valid frame (positive control)", 1, Deliver, &|_| {});
    case("VXLAN I flag clear", 3, Drop("vxlan_flags"), &|f| {
        f[OFF_VXLAN] = 0
    });
    case(
        "VXLAN I flag clear, reserved bits set",
        2,
        Drop("vxlan_flags"),
        &|f| f[OFF_VXLAN] = 0xf7,
    );
    case(
        "reserved VXLAN bits set, I set (RFC 7348: ignored)",
        3,
        Deliver,
        &|f| {
            for i in [0, 1, 2, 3, 7] {
                f[OFF_VXLAN + i] = 0xff;
            }
        },
    );
    case("unknown VNI 43", 3, Drop("unknown_vni"), &|f| {
        f[OFF_VXLAN + 6] = 43
    });
    case("VNI 0", 3, Drop("unknown_vni"), &|f| f[OFF_VXLAN + 6] = 0);
    case(
        "VXLAN header truncated (4 of 8 bytes)",
        3,
        Drop("vxlan_truncated"),
        &|f| {
            f.truncate(OFF_VXLAN + 4);
            fix_lengths(f);
        },
    );
    case(
        "no inner frame (VXLAN header only)",
        3,
        Drop("inner_truncated"),
        &|f| {
            f.truncate(OFF_VXLAN + 8);
            fix_lengths(f);
        },
    );
    case(
        "inner frame of 10 bytes",
        3,
        Drop("inner_truncated"),
        &|f| {
            f.truncate(OFF_VXLAN + 8 + 10);
            fix_lengths(f);
        },
    );
    case("bad outer IPv4 checksum", 3, Drop("ip_checksum"), &|f| {
        f[ETH_HLEN + 10] ^= 0x5a
    });
    case("outer IHL 4", 3, Drop("ip_malformed"), &|f| {
        f[ETH_HLEN] = 0x44;
        fix_ip_checksum(f);
    });
    case(
        "outer IPv4 options (4 NOPs), UDP 4789",
        3,
        Drop("ip_options"),
        &|f| {
            let opts_at = ETH_HLEN + 20;
            f.splice(opts_at..opts_at, [1u8, 1, 1, 1]);
            f[ETH_HLEN] = 0x46;
            let tot = (f.len() - ETH_HLEN) as u16;
            f[ETH_HLEN + 2..ETH_HLEN + 4].copy_from_slice(&tot.to_be_bytes());
            fix_ip_checksum(f);
        },
    );
    case(
        "outer total length beyond the frame",
        3,
        Drop("ip_length"),
        &|f| {
            let tot = (f.len() - ETH_HLEN + 100) as u16;
            f[ETH_HLEN + 2..ETH_HLEN + 4].copy_from_slice(&tot.to_be_bytes());
            fix_ip_checksum(f);
        },
    );
    case("outer TTL 0", 3, Drop("ip_ttl"), &|f| {
        f[ETH_HLEN + 8] = 0;
        fix_ip_checksum(f);
    });
    case("UDP length 8 bytes too long", 3, Drop("udp_length"), &|f| {
        let l = u16::from_be_bytes([f[OFF_UDP + 4], f[OFF_UDP + 5]]) + 8;
        f[OFF_UDP + 4..OFF_UDP + 6].copy_from_slice(&l.to_be_bytes());
    });
    case(
        "UDP length 8 bytes too short",
        2,
        Drop("udp_length"),
        &|f| {
            let l = u16::from_be_bytes([f[OFF_UDP + 4], f[OFF_UDP + 5]]) - 8;
            f[OFF_UDP + 4..OFF_UDP + 6].copy_from_slice(&l.to_be_bytes());
        },
    );
    case("first fragment (MF set)", 3, Pass(Kernel::Fragment), &|f| {
        f[ETH_HLEN + 6] = 0x20;
        fix_ip_checksum(f);
    });
    case("other UDP port (4790)", 3, Pass(Kernel::Udp4790), &|f| {
        f[OFF_UDP + 2..OFF_UDP + 4].copy_from_slice(&4790u16.to_be_bytes());
    });
    case(
        "other destination IP (192.168.57.77)",
        3,
        Pass(Kernel::NotLocal),
        &|f| {
            f[ETH_HLEN + 16..ETH_HLEN + 20].copy_from_slice(&[192, 168, 57, 77]);
            fix_ip_checksum(f);
        },
    );
    case("valid frame (positive control, again)", 1, Deliver, &|_| {});

    let drop_reasons: Vec<String> = Counter::ALL
        .iter()
        .filter_map(|c| c.name().strip_prefix("drop_").map(str::to_owned))
        .collect();
    let mut problems = Vec::new();
    for case in &cases {
        let n = case.count as u64;
        let before = snap(&f1);
        let rx_before = rx_packets(&c1.ns, "eth0");
        let mib_before = ip_mib(&h1.ns);
        inj.send(&case.frame, case.count);

        // Wait for the datapath to have seen them, then a little longer
        // for anything that might still arrive in c1.
        let seen = wait_stats(&f1, Duration::from_secs(5), |s| match case.expect {
            Drop(r) => s.d(r) >= before.d(r) + n,
            Deliver => s.c("rx_decap") >= before.c("rx_decap") + n,
            Pass(_) => s.c("rx_pass") >= before.c("rx_pass") + n,
        });
        let want_in_c1 = if matches!(case.expect, Deliver) {
            case.count
        } else {
            0
        };
        let got = collect_udp(
            &c1_sock,
            want_in_c1,
            Duration::from_secs(3),
            Duration::from_millis(300),
        );
        let h1_got = drain_udp(&h1_sock, Duration::from_millis(50));
        let after = snap(&f1);
        let rx_after = rx_packets(&c1.ns, "eth0");
        let mib_after = ip_mib(&h1.ns);

        let dc = counters_delta(&before.counters, &after.counters);
        let dd = counters_delta(&before.drops, &after.drops);
        let ctx = format!(
            "case `{}` ({} frame(s) of {} bytes, expected {:?}): counter changes {dc:?}, drop changes {dd:?}, \
             c1 eth0 rx packets +{}, datagrams in c1: {}, in h1 on 4790: {}\nframe: {:02x?}",
            case.name,
            case.count,
            case.frame.len(),
            case.expect,
            rx_after - rx_before,
            got.len(),
            h1_got.len(),
            case.frame
        );
        let mut fails: Vec<String> = Vec::new();
        let mut fail = |what: String| fails.push(what);
        if !seen {
            fail("the datapath did not count the frames in time".to_owned());
        }
        let decap = after.c("rx_decap") - before.c("rx_decap");
        let other_drops: Vec<(&String, &i128)> = dd
            .iter()
            .filter(|(k, _)| !matches!(case.expect, Drop(r) if r == k.as_str()))
            .collect();
        if !other_drops.is_empty() {
            fail(format!("other drop counters changed: {other_drops:?}"));
        }
        match case.expect {
            Drop(reason) => {
                let d = after.d(reason) - before.d(reason);
                if d != n {
                    fail(format!("drops.{reason} grew by {d}, expected exactly {n}"));
                }
                if after.c(&format!("drop_{reason}")) != after.d(reason) {
                    fail(format!(
                        "counters.drop_{reason} differs from drops.{reason}"
                    ));
                }
            }
            Deliver => {
                if decap != n {
                    fail(format!("rx_decap grew by {decap}, expected {n}"));
                }
                let out = (after.c("rx_deliver") + after.c("rx_flood_copy"))
                    - (before.c("rx_deliver") + before.c("rx_flood_copy"));
                if out != n {
                    fail(format!(
                        "rx_deliver + rx_flood_copy grew by {out}, expected {n}"
                    ));
                }
            }
            Pass(kernel) => {
                let p = after.c("rx_pass") - before.c("rx_pass");
                if p < n {
                    fail(format!("rx_pass grew by {p}, expected at least {n}"));
                }
                let mib = |k: &str| {
                    mib_after.get(k).copied().unwrap_or(0) - mib_before.get(k).copied().unwrap_or(0)
                };
                let (what, k) = match kernel {
                    Kernel::Udp4790 => ("datagrams for h1's port 4790", h1_got.len() as u64),
                    Kernel::Fragment => ("Ip ReasmReqds", mib("ReasmReqds")),
                    Kernel::NotLocal => ("Ip InAddrErrors", mib("InAddrErrors")),
                };
                if k != n {
                    fail(format!(
                        "h1's kernel did not get them: {what} +{k}, expected {n}"
                    ));
                }
            }
        }
        if !matches!(case.expect, Deliver) && decap != 0 {
            fail(format!("rx_decap grew by {decap}: decapsulated"));
        }
        if !matches!(case.expect, Pass(Kernel::Udp4790)) && !h1_got.is_empty() {
            fail("h1's UDP 4790 listener got datagrams".to_owned());
        }
        let marked = count_marker(&got, &case.marker);
        if got.len() != want_in_c1 || marked != want_in_c1 {
            fail(format!(
                "c1 got {} datagram(s) ({marked} with the case's marker), expected {want_in_c1}: {:?}",
                got.len(),
                got.iter()
                    .map(|d| String::from_utf8_lossy(d).into_owned())
                    .collect::<Vec<_>>()
            ));
        }
        if rx_after - rx_before != want_in_c1 as u64 {
            fail(format!(
                "c1's eth0 received {} packet(s), expected {want_in_c1}",
                rx_after - rx_before
            ));
        }
        if !fails.is_empty() {
            problems.push(format!("- {}\n  {ctx}", fails.join("; ")));
        }
    }
    // Every documented drop reason is in `drops`.
    let last = snap(&f1);
    for r in &drop_reasons {
        if !last.drops.contains_key(r) {
            problems.push(format!("drops has no `{r}`: {:?}", last.drops));
        }
    }
    assert!(
        problems.is_empty(),
        "{} problem(s) with crafted frames, receive mode {}:\n{}\n{}",
        problems.len(),
        setup.mode.name(),
        problems.join("\n"),
        f1.diagnostics()
    );
}

// ------------------------------------------------------- 2. spoofed VTEP

#[test]
fn spoofed_vtep_is_dropped() {
    let topo = Topology::seed("vxh-spf-")
        .container("c1", "h1", "veth0", C1_IP)
        .build();
    topo.check_underlay();
    let (h1, c1) = (topo.host("h1"), topo.container("c1"));
    let run = Setup::default().peer_args("h1", &["h1", "h2"], &[]);
    let f1 = Forwarder::start(&h1.ns, &run);
    let inj = Injector::new(&topo);
    let sock = udp_listener(&c1.ns, MARK_PORT);
    let marker = "vxh-spoofed";
    let frame = inj.valid(SPOOF_IP, marker);
    let fake = format_mac(&FAKE_MAC);

    let before = snap(&f1);
    let rx_before = rx_packets(&c1.ns, "eth0");
    inj.send(&frame, 3);
    let seen = wait_stats(&f1, Duration::from_secs(5), |s| {
        s.d("spoofed") >= before.d("spoofed") + 3
    });
    let got = drain_udp(&sock, Duration::from_millis(500));
    let after = snap(&f1);
    let rx_after = rx_packets(&c1.ns, "eth0");
    let fdb = f1.fdb_show_json();
    let ctx = format!(
        "counter changes {:?}, c1 eth0 rx +{}, datagrams in c1 {}\n{}",
        counters_delta(&before.counters, &after.counters),
        rx_after - rx_before,
        got.len(),
        f1.diagnostics()
    );
    assert!(
        seen,
        "drop_spoofed did not grow by 3 for VXLAN from {SPOOF_IP}: {ctx}"
    );
    assert_eq!(
        after.d("spoofed") - before.d("spoofed"),
        3,
        "drops.spoofed: {ctx}"
    );
    assert_eq!(
        after.c("rx_decap"),
        before.c("rx_decap"),
        "spoofed frames decapsulated: {ctx}"
    );
    assert_eq!(
        after.c("learn"),
        before.c("learn"),
        "learning from spoofed frames: {ctx}"
    );
    assert!(got.is_empty(), "spoofed frames reached c1: {ctx}");
    assert_eq!(rx_after, rx_before, "c1 received packets: {ctx}");
    assert!(
        fdb_find(&fdb, &fake).is_none(),
        "{fake} was learned from a spoofed VTEP: {fdb:#?}"
    );
    assert!(
        !fdb.iter().any(|e| e["dst"] == SPOOF_IP),
        "an FDB entry points at the spoofer {SPOOF_IP}: {fdb:#?}"
    );
    let out = f1.stop();
    assert!(out.success(), "vxlan-fwd did not stop cleanly: {out}");

    // Allowing the prefix lets the same frame in, and it is learned.
    let mut run2 = run.clone();
    run2.extend(["--allow-remote", "192.168.57.0/24"]);
    let f1 = Forwarder::start(&h1.ns, &run2);
    let before = snap(&f1);
    inj.send(&frame, 3);
    let got = collect_udp(&sock, 3, Duration::from_secs(5), Duration::from_millis(300));
    let after = snap(&f1);
    let ctx = format!(
        "counter changes {:?}, datagrams in c1 {}\n{}",
        counters_delta(&before.counters, &after.counters),
        got.len(),
        f1.diagnostics()
    );
    assert_eq!(
        count_marker(&got, marker),
        3,
        "with --allow-remote: not delivered 3 times: {ctx}"
    );
    assert_eq!(got.len(), 3, "with --allow-remote: {ctx}");
    assert_eq!(
        after.d("spoofed"),
        before.d("spoofed"),
        "with --allow-remote: still dropped: {ctx}"
    );
    assert_eq!(
        after.c("rx_decap") - before.c("rx_decap"),
        3,
        "with --allow-remote: {ctx}"
    );
    let fdb = f1.fdb_show_json();
    let e = fdb_find(&fdb, &fake)
        .unwrap_or_else(|| panic!("with --allow-remote: {fake} not learned: {fdb:#?}"));
    assert_eq!(e["dst"], SPOOF_IP, "entry for {fake}: {e}");
    assert_eq!(e["vni"], 42, "entry for {fake}: {e}");
    assert_eq!(e["permanent"], false, "entry for {fake}: {e}");
}

// ------------------------------------------------- 3. learning flood, cap

#[test]
fn learning_flood_respects_the_cap() {
    let topo = Setup::default().two_hosts("vxh-cap-");
    let [c1, c2] = topo.pick_containers(["c1", "c2"]);
    let (f1, f2) = Setup::default().pair(&topo, &["--max-fdb", "50"], &[]);
    assert_ping(&c1.ns, C2_IP, 2, &[&f1]);

    let inj = Injector::new(&topo);
    let before = snap(&f1);
    // 1000 inner source MACs 02:aa:00:00:HH:LL, to an unknown unicast MAC
    // (flooded to c1, which ignores it), paced so that the veth's ring
    // (256 frames) never overflows.
    const N: usize = 1000;
    let mut macs = Vec::with_capacity(N);
    for i in 0..N {
        let src = [0x02, 0xaa, 0, 0, (i >> 8) as u8, i as u8];
        macs.push(format_mac(&src));
        let mut inner = vec![0x02, 0xbb, 0, 0, 0, 1];
        inner.extend_from_slice(&src);
        inner.extend_from_slice(&0x88b5u16.to_be_bytes());
        inner.extend_from_slice(&[0x55; 46]);
        inj.send(&vxlan_frame(&inj.outer(H2_IP, 42, 0), &inner), 1);
        if i % 50 == 49 {
            std::thread::sleep(Duration::from_millis(3));
        }
    }
    let all_seen = wait_stats(&f1, Duration::from_secs(10), |s| {
        s.c("rx_decap") >= before.c("rx_decap") + N as u64
    });
    let after = snap(&f1);
    let fdb = f1.fdb_show_json();
    let learned: Vec<&Value> = fdb.iter().filter(|e| e["permanent"] == false).collect();
    let flooded = macs.iter().filter(|m| fdb_find(&fdb, m).is_some()).count();
    let ctx = format!(
        "counter changes {:?}; {} learned entries ({flooded} of the flood's MACs)\n{}",
        counters_delta(&before.counters, &after.counters),
        learned.len(),
        f1.diagnostics()
    );
    assert!(all_seen, "not all {N} frames were decapsulated: {ctx}");
    assert!(
        learned.len() <= 50,
        "more learned entries than --max-fdb 50: {ctx}"
    );
    assert!(
        flooded > 0,
        "none of the flood's MACs was learned (injection broken?): {ctx}"
    );
    assert!(
        after.c("learn_refused") > before.c("learn_refused"),
        "learn_refused did not grow: {ctx}"
    );
    let mut f1 = f1;
    assert!(
        f1.is_running(),
        "vxlan-fwd on h1 exited: {:?}",
        f1.output_so_far()
    );
    for (from, to) in [(c1, C2_IP), (c2, C1_IP)] {
        assert_ping(&from.ns, to, 3, &[&f1, &f2]);
    }
    eprintln!("learning flood: {ctx}");
}

// ------------------------------------------------------------ 4. PMTU

#[test]
fn pmtu_discovery() {
    for setup in Setup::matrix() {
        pmtu_discovery_in(setup);
    }
}

fn pmtu_discovery_in(setup: Setup) {
    let topo = setup
        .hosts(&setup.prefix("vxh-mtu-"), 2)
        .container_with_mtu("c1", "h1", "veth0", C1_IP, 1500)
        .container_with_mtu("c2", "h2", "veth0", C2_IP, 1500)
        .build_checked();
    let c1 = topo.container("c1");
    let (f1, f2) = setup.pair(&topo, &[], &[]);
    eprintln!("pmtu_discovery: receive mode {}", setup.mode.name());
    assert_ping(&c1.ns, C2_IP, 2, &[&f1]);
    assert_eq!(c1.ns.mtu("eth0"), 1500);
    let route = c1.ns.ip(["route", "get", C2_IP]);
    assert!(
        !route.contains("mtu"),
        "c1 has a path MTU before the test: {route}"
    );

    let before = snap(&f1);
    let big = c1.ns.exec(
        "ping",
        ["-n", "-M", "do", "-s", "1472", "-c", "1", "-W", "2", C2_IP],
    );
    let after = snap(&f1);
    let ctx = format!(
        "ping -M do -s 1472: {big}\nh1 counter changes {:?}\n{}\n{}",
        counters_delta(&before.counters, &after.counters),
        f1.diagnostics(),
        f2.diagnostics()
    );
    assert!(
        !big.success(),
        "a 1500-byte DF packet crossed the tunnel: {ctx}"
    );
    let text = big.combined();
    assert!(
        text.contains("Frag needed") || text.contains("mtu = 1450") || text.contains("too long"),
        "ping did not report fragmentation needed: {ctx}"
    );
    assert!(
        after.c("drop_too_big") > before.c("drop_too_big"),
        "drop_too_big did not grow: {ctx}"
    );
    assert!(
        after.c("tx_icmp_frag_needed") > before.c("tx_icmp_frag_needed"),
        "tx_icmp_frag_needed did not grow: {ctx}"
    );
    let route = c1.ns.ip(["route", "get", C2_IP]);
    assert!(
        route.contains("mtu 1450"),
        "c1 did not learn mtu 1450: `ip route get {C2_IP}`: {route}\n{ctx}"
    );

    let ok = c1.ns.exec(
        "ping",
        [
            "-n", "-M", "do", "-s", "1422", "-c", "2", "-W", "2", "-i", "0.2", C2_IP,
        ],
    );
    assert!(
        ok.success() && ok.stdout.contains(" 0% packet loss"),
        "ping -M do -s 1422 after PMTU discovery: {ok}\n{}",
        f1.diagnostics()
    );
}

// -------------------------------------------------- 5. crash and adopt

/// Panics unless nothing of a forwarder is left on `dev` in `ns`: no XDP,
/// no ingress filter, no clsact qdisc.
fn assert_dev_clean(ns: &NetNs, dev: &str, what: &str) {
    let mut problems = leftovers(ns, &[dev]);
    let q = ns.run("tc", ["qdisc", "show", "dev", dev]);
    if q.contains("clsact") {
        problems.push(format!("clsact qdisc on {dev}:\n{q}"));
    }
    assert!(problems.is_empty(), "{what}: left behind: {problems:#?}");
}

#[test]
fn crash_and_adopt() {
    crash_and_adopt_case("vxh-crash-", "auto", "auto", 0);
}

/// The killed instance ran skb-mode XDP; the new one decapsulates in TC
/// and removes the old XDP program once its own programs are in place.
#[test]
fn crash_and_adopt_across_modes() {
    crash_and_adopt_case("vxh-crashm-", "generic", "auto", 0);
}

/// Native XDP replaced by skb-mode XDP: the kernel cannot swap across
/// modes, so the old program is removed and the new one attached with a
/// short gap (a ping every 20 ms may lose one or two).
#[test]
fn crash_and_adopt_native_to_skb_mode_xdp() {
    crash_and_adopt_case("vxh-crashx-", "native", "generic", 3);
}

fn crash_and_adopt_case(prefix: &str, first_mode: &str, second_mode: &str, max_lost: u32) {
    let topo = Setup::default().two_hosts(prefix);
    let h1 = topo.host("h1");
    let [c1, c2] = topo.pick_containers(["c1", "c2"]);
    let setup = Setup::default();
    let run2 = setup.peer_args("h1", &["h1", "h2"], &["--xdp-mode", second_mode]);
    let (f1, f2) = setup.pair(&topo, &["--xdp-mode", first_mode], &[]);
    assert_ping(&c1.ns, C2_IP, 2, &[&f1]);
    let (mac1, mac2) = (c1.mac(), c2.mac());
    let old_prog = h1
        .ns
        .uplink_prog_id("eth0")
        .expect("our program on h1 eth0") as u32;
    assert_eq!(
        h1.ns.xdp_prog_id("eth0").is_some(),
        first_mode != "auto",
        "XDP on h1 eth0 with --xdp-mode {first_mode}"
    );
    let old_maps = bpf::prog_map_ids(old_prog);

    let started = Instant::now();
    let mut pinger: Process = c1
        .ns
        .spawn("ping", ["-n", "-i", "0.02", "-c", "300", "-W", "1", C2_IP]);
    std::thread::sleep(Duration::from_millis(1000));
    let killed = f1.stop_with(libc::SIGKILL);
    assert_eq!(
        killed.status.code(),
        None,
        "vxlan-fwd was not killed: {killed}"
    );
    let killed_at = started.elapsed();

    // The datapath stays: its programs are still attached...
    assert_eq!(
        h1.ns.uplink_prog_id("eth0"),
        Some(u64::from(old_prog)),
        "our program on h1 eth0 changed or vanished after SIGKILL"
    );
    let tc = h1
        .ns
        .run("tc", ["filter", "show", "dev", "eth0", "ingress"]);
    assert!(
        !tc.trim().is_empty(),
        "no tc ingress filter on h1 eth0 after SIGKILL"
    );
    // ...and forwarding: c1 keeps receiving replies, h2 keeps decapsulating.
    let (rx0, d0) = (rx_packets(&c1.ns, "eth0"), f2.counter("rx_decap"));
    std::thread::sleep(Duration::from_millis(700));
    let (rx1, d1) = (rx_packets(&c1.ns, "eth0"), f2.counter("rx_decap"));
    assert!(
        rx1 >= rx0 + 20 && d1 >= d0 + 20,
        "forwarding stopped after SIGKILL of h1's vxlan-fwd: c1 rx {rx0} -> {rx1}, h2 rx_decap {d0} -> {d1}; \
         ping so far:\n{}",
        pinger.stdout()
    );
    // `fdb show` works without the process.
    let fdb = fdb_json(&h1.ns);
    assert!(
        fdb_find(&fdb, &mac1).is_some() && fdb_find(&fdb, &mac2).is_some(),
        "{fdb:#?}"
    );

    // A new forwarder adopts the running datapath while the ping goes on.
    let f1 = Forwarder::start(&h1.ns, &run2);
    let ready_at = started.elapsed();
    assert!(
        pinger.is_running(),
        "the ping ended before the new forwarder was ready (killed at {killed_at:?}, ready at \
         {ready_at:?}): adoption not tested under traffic"
    );
    let new_prog = h1
        .ns
        .uplink_prog_id("eth0")
        .expect("our program on h1 eth0 after restart");
    assert_ne!(
        new_prog,
        u64::from(old_prog),
        "the new forwarder did not replace the running program"
    );
    assert_eq!(
        h1.ns.xdp_prog_id("eth0").is_some(),
        second_mode != "auto",
        "XDP on h1 eth0 after adoption with --xdp-mode {second_mode}"
    );
    let fdb = f1.fdb_show_json();
    let e1 = fdb_find(&fdb, &mac1)
        .unwrap_or_else(|| panic!("c1 {mac1} not in the FDB after adoption: {fdb:#?}"));
    assert_eq!(e1["dev"], "veth0", "{e1}");
    let e2 = fdb_find(&fdb, &mac2)
        .unwrap_or_else(|| panic!("c2 {mac2} not in the FDB after adoption: {fdb:#?}"));
    assert_eq!(e2["dst"], H2_IP, "{e2}");
    assert!(
        fdb.iter()
            .any(|e| e["mac"] == ZERO_MAC && e["dst"] == H2_IP),
        "no default remote after adoption: {fdb:#?}"
    );

    let out = pinger.wait(Duration::from_secs(30));
    let (tx, rx) =
        ping_summary(&out.stdout).unwrap_or_else(|| panic!("ping printed no summary: {out}"));
    eprintln!(
        "crash_and_adopt: killed at {killed_at:?}, new forwarder ready at {ready_at:?}, ping {rx}/{tx}"
    );
    assert_eq!(tx, 300, "ping: {out}");
    assert!(
        rx + max_lost >= 300,
        "ping lost {} of 300 (at most {max_lost} allowed) across SIGKILL (at {killed_at:?}) and adoption (ready at {ready_at:?}): {out}\n{}\n{}",
        tx - rx,
        f1.diagnostics(),
        f2.diagnostics()
    );
    assert_ping(&c2.ns, C1_IP, 2, &[&f1, &f2]);

    // A clean stop removes everything, including what the killed instance
    // attached.
    let new_maps = bpf::prog_map_ids(new_prog as u32);
    let out = f1.stop();
    assert!(
        out.success(),
        "the adopting vxlan-fwd did not stop cleanly: {out}"
    );
    assert_dev_clean(&h1.ns, "eth0", "after SIGINT");
    assert_dev_clean(&h1.ns, "veth0", "after SIGINT");
    let left: Vec<_> = bpf::progs_using_maps(&old_maps)
        .into_iter()
        .chain(bpf::progs_using_maps(&new_maps))
        .collect();
    assert!(
        left.is_empty(),
        "programs still loaded after the stop: {left:?}"
    );
}

/// `fdb show --json` run on its own in a namespace (no forwarder process
/// needed: it finds the datapath through the uplink's XDP program).
fn fdb_json(ns: &NetNs) -> Vec<Value> {
    let out = vxlan_tests::vxlan_fwd(ns, ["fdb", "show", "--json"]);
    assert!(out.success(), "fdb show --json in {}: {out}", ns.name());
    match serde_json::from_str::<Value>(&out.stdout) {
        Ok(Value::Array(a)) => a,
        other => panic!("fdb show --json: {other:?}: {out}"),
    }
}

// -------------------------------------------- 6. stats --json, /metrics

/// `name{label="value"} N` lines of a Prometheus exposition.
fn prom_samples(body: &str) -> BTreeMap<String, u64> {
    body.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| {
            let (k, v) = l.rsplit_once(' ')?;
            Some((k.to_owned(), v.trim().parse::<f64>().ok()? as u64))
        })
        .collect()
}

#[test]
fn stats_json_and_metrics_endpoint() {
    let topo = Setup::default().two_hosts("vxh-met-");
    let h1 = topo.host("h1");
    let c1 = topo.container("c1");
    let port = 9464u16;
    let listen = format!("127.0.0.1:{port}");
    let (f1, _f2) = Setup::default().pair(&topo, &["--metrics", &listen], &[]);

    let s0 = snap(&f1);
    assert_ping(&c1.ns, C2_IP, 5, &[&f1]);
    // Two spoofed frames, for a known drop count.
    let inj = Injector::new(&topo);
    inj.send(&inj.valid(SPOOF_IP, "vxh-metrics-spoofed"), 2);
    assert!(
        wait_stats(&f1, Duration::from_secs(5), |s| s.d("spoofed")
            >= s0.d("spoofed") + 2),
        "drops.spoofed did not grow by 2: {}",
        f1.diagnostics()
    );

    let s1 = snap(&f1);
    let (status, body) = http_get(&h1.ns, listen.parse::<SocketAddr>().unwrap(), "/metrics");
    let s2 = snap(&f1);

    // stats --json: every documented name, in the right object.
    for c in Counter::ALL {
        let name = c.name();
        assert!(
            s1.counters.contains_key(name),
            "counters lacks {name}: {:?}",
            s1.counters
        );
        if let Some(reason) = name.strip_prefix("drop_") {
            assert_eq!(
                s1.drops.get(reason),
                s1.counters.get(name),
                "drops.{reason} vs counters.{name}"
            );
        }
    }
    for name in ["rx_decap", "tx_encap", "rx_deliver", "learn"] {
        assert!(
            s1.c(name) > s0.c(name),
            "{name} did not grow with the ping: {} -> {}",
            s0.c(name),
            s1.c(name)
        );
    }
    assert_eq!(s1.d("spoofed") - s0.d("spoofed"), 2, "drops.spoofed");

    // /metrics: 200, the same values.
    assert_eq!(status, 200, "GET /metrics: {status}\n{body}");
    let samples = prom_samples(&body);
    let mut mismatches = Vec::new();
    for c in Counter::ALL {
        let name = c.name();
        let key = match name.strip_prefix("drop_") {
            Some(reason) => format!("vxlan_fwd_drops_total{{reason=\"{reason}\"}}"),
            None => format!("vxlan_fwd_datapath_total{{event=\"{name}\"}}"),
        };
        let (a, b) = (s1.c(name), s2.c(name));
        match samples.get(&key) {
            None => mismatches.push(format!("no `{key}`")),
            Some(&m) if m < a || m > b => mismatches.push(format!(
                "`{key}` = {m}, stats --json said {a} before and {b} after"
            )),
            Some(_) => {}
        }
    }
    assert!(
        mismatches.is_empty(),
        "/metrics vs stats --json:\n{}\n--- body ---\n{body}",
        mismatches.join("\n")
    );
    let decap = samples["vxlan_fwd_datapath_total{event=\"rx_decap\"}"];
    assert!(decap > 0, "rx_decap is 0 in /metrics:\n{body}");
    assert_eq!(
        samples["vxlan_fwd_drops_total{reason=\"spoofed\"}"],
        s1.d("spoofed"),
        "spoofed in /metrics:\n{body}"
    );
    // Counters this test controls are exact (no traffic ran meanwhile).
    for name in ["rx_decap", "tx_encap", "drop_spoofed"] {
        assert_eq!(s1.c(name), s2.c(name), "{name} changed while idle");
    }
    for kind in ["learned", "static"] {
        let key = format!("vxlan_fwd_fdb_entries{{kind=\"{kind}\"}}");
        assert!(
            samples.contains_key(&key),
            "no `{key}` in /metrics:\n{body}"
        );
    }
    assert!(
        samples["vxlan_fwd_fdb_entries{kind=\"learned\"}"] >= 2,
        "c1 and c2 are learned, /metrics says fewer:\n{body}"
    );
}

// ---------------------------------------------------------- 7. debug log

fn ebpf_log_lines(stderr: &str) -> Vec<&str> {
    stderr
        .lines()
        .filter(|l| l.contains("xdp: ") || l.contains("tc uplink: ") || l.contains("tc port: "))
        .collect()
}

#[test]
fn debug_log_flag() {
    let topo = Setup::default().two_hosts("vxh-dbg-");
    let h1 = topo.host("h1");
    let c1 = topo.container("c1");
    let setup = Setup::default();
    let run = setup.peer_args("h1", &["h1", "h2"], &[]);
    let (f1, _f2) = setup.pair(&topo, &["--debug-log"], &[]);
    assert_ping(&c1.ns, C2_IP, 3, &[&f1]);
    let logged = wait_until(Duration::from_secs(5), Duration::from_millis(100), || {
        let err = f1.output_so_far().1;
        err.contains("xdp: action") || err.contains("tc uplink: action")
    });
    let out = f1.stop();
    assert!(
        logged,
        "no `xdp: action` or `tc uplink: action` line on stderr with --debug-log: {out}"
    );
    assert!(out.success(), "stop: {out}");

    let f1 = Forwarder::start(&h1.ns, &run);
    assert_ping(&c1.ns, C2_IP, 3, &[&f1]);
    std::thread::sleep(Duration::from_millis(500));
    let out = f1.stop();
    assert!(out.success(), "stop: {out}");
    let lines = ebpf_log_lines(&out.stderr);
    assert!(
        lines.is_empty(),
        "eBPF log lines without --debug-log: {lines:?}\n{out}"
    );
}
