//! End-to-end tests of the etcd control plane: three or four hosts, a real
//! etcd server (Debian's `etcd-server`) in the underlay switch's namespace,
//! no `--remote` anywhere. Flood lists, remote MACs (`extern_learn`) and
//! ARP answers come from etcd; a host that dies is forgotten within the
//! lease TTL + 1 s; an etcd outage stops nothing; ARP for known addresses
//! never reaches the underlay; hostile values are skipped; a MAC that moves
//! is followed.
//!
//! Run as root, serially (`cargo xtask test -- e2e_etcd`).

use std::time::{Duration, Instant};

use serde_json::Value;
use vxlan_tests::{
    Container, H3_IP, Topology,
    etcd::{Etcd, Pki},
    fdb_harness::{Capture, Fwd, TempDir, assert_connected, diag},
    ping_result,
    scenario::{BuildChecked, C1_IP, C2_IP, C3_IP, Setup},
    wait_until,
};

const ETCD_IP: &str = "192.168.57.1";
/// The lease TTL the tests use (seconds).
const TTL: u64 = 3;

/// A lab: hosts h1..hN with one container each (cN on port veth0), and
/// etcd on the switch.
struct Lab {
    // Field order is drop order: forwarders, etcd, then the namespaces.
    etcd: Etcd,
    topo: Topology,
    dir: TempDir,
}

fn lab(prefix: &str, hosts: usize) -> Lab {
    lab_with(prefix, hosts, false)
}

/// [`lab`]; `tls`: etcd over TLS with client certificates (made in the
/// lab's directory).
fn lab_with(prefix: &str, hosts: usize, tls: bool) -> Lab {
    let topo = Setup::default()
        .hosts_with_containers(prefix, hosts)
        .build_checked();
    topo.switch
        .ip(["addr", "add", &format!("{ETCD_IP}/24"), "dev", "br0"]);
    let dir = TempDir::new(prefix);
    let etcd = if tls {
        let pki = Pki::create(dir.path(), ETCD_IP);
        Etcd::start_tls(&topo.switch, ETCD_IP, dir.path(), &pki)
    } else {
        Etcd::start(&topo.switch, ETCD_IP, dir.path())
    };
    Lab { etcd, topo, dir }
}

impl Lab {
    /// `vxlan-fwd --etcd` on host `h` (VNI 42, port veth0), plus `extra`.
    fn fwd(&self, h: &str, extra: &[&str]) -> Fwd {
        let url = self.etcd.url();
        let ttl = TTL.to_string();
        let mut args =
            Setup::default().args(&["--port", "veth0", "--etcd", &url, "--etcd-ttl", &ttl]);
        args.extend_from_slice(extra);
        Fwd::start(&self.topo.host(h).ns, &args, self.dir.path())
    }

    /// Forwarders on `h1`..`h<N>` with `extra` flags, returned once each
    /// one's flood list is exactly the other hosts.
    fn fleet<const N: usize>(&self, extra: &[&str]) -> [Fwd; N] {
        let fwds: [Fwd; N] = std::array::from_fn(|i| self.fwd(&format!("h{}", i + 1), extra));
        let setup = Setup::default();
        let pairs: Vec<(&Fwd, &str)> = fwds
            .iter()
            .enumerate()
            .map(|(i, f)| (f, setup.host_ip(&format!("h{}", i + 1))))
            .collect();
        wait_flood_lists(&pairs);
        fwds
    }

    fn c(&self, name: &str) -> &Container {
        self.topo.container(name)
    }
}

/// `fdb show --json` rows of `f`.
fn rows(f: &Fwd) -> Vec<Value> {
    f.fdb_show_json()
}

/// The default remotes (flood list) of VNI 42 on `f`, with their origins.
fn flood_list(f: &Fwd) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = rows(f)
        .iter()
        .filter(|r| r["mac"] == "00:00:00:00:00:00")
        .map(|r| {
            (
                r["dst"].as_str().unwrap_or_default().to_owned(),
                r["origin"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    v.sort();
    v
}

/// The row of `mac` on `f`, if any.
fn row_of(f: &Fwd, mac: &str) -> Option<Value> {
    rows(f).into_iter().find(|r| r["mac"] == mac)
}

/// Waits until every forwarder's flood list is exactly the other hosts'
/// addresses, each with origin etcd.
fn wait_flood_lists(fwds: &[(&Fwd, &str)]) {
    for (f, own) in fwds {
        let mut want: Vec<(String, String)> = fwds
            .iter()
            .filter(|(_, ip)| ip != own)
            .map(|(_, ip)| ((*ip).to_owned(), "etcd".to_owned()))
            .collect();
        want.sort();
        let ok = wait_until(Duration::from_secs(10), Duration::from_millis(100), || {
            flood_list(f) == want
        });
        assert!(
            ok,
            "{}: flood list {:?}, expected {want:?}\n{}",
            f.ns(),
            flood_list(f),
            f.diagnostics()
        );
    }
}

#[test]
fn etcd_all_pairs_ping_without_remotes_or_learning() {
    vxlan_tests::require_root();
    let lab = lab("vxe-pairs-", 3);
    let [f1, f2, f3] = lab.fleet(&["--no-learning"]);
    let all = [&f1, &f2, &f3];
    let cs = [("c1", C1_IP), ("c2", C2_IP), ("c3", C3_IP)];
    for (from, _) in cs {
        for (to, ip) in cs {
            if from != to {
                assert_connected(lab.c(from), ip, 5, &all);
            }
        }
    }
    // Remote MACs are the control plane's: extern_learn, origin etcd, and
    // nothing at all learned from the wire.
    for (f, remote_cs) in [
        (&f1, ["c2", "c3"]),
        (&f2, ["c1", "c3"]),
        (&f3, ["c1", "c2"]),
    ] {
        for c in remote_cs {
            let mac = lab.c(c).mac();
            let host_ip = match c {
                "c1" => vxlan_tests::H1_IP,
                "c2" => vxlan_tests::H2_IP,
                _ => H3_IP,
            };
            let r = row_of(f, &mac).unwrap_or_else(|| {
                panic!("{}: no entry for {c} ({mac})\n{}", f.ns(), f.fdb_show())
            });
            assert_eq!(r["origin"], "etcd", "{}: {r}", f.ns());
            assert_eq!(r["extern_learn"], true, "{}: {r}", f.ns());
            assert_eq!(r["dst"], host_ip, "{}: {r}", f.ns());
        }
        let text = f.fdb_show();
        assert!(text.contains("extern_learn"), "{}: {text}", f.ns());
        let learned: Vec<Value> = rows(f)
            .into_iter()
            .filter(|r| r["origin"] == "learned" && r["dst"].is_string())
            .collect();
        assert!(
            learned.is_empty(),
            "{}: learned from the wire: {learned:?}",
            f.ns()
        );
    }
    // What etcd holds: three VTEPs and three MACs with their addresses.
    let keys = lab.etcd.keys("/vxlan-fwd/v1/vni/42/");
    assert_eq!(
        keys.iter().filter(|k| k.contains("/vtep/")).count(),
        3,
        "{keys:?}"
    );
    assert_eq!(
        keys.iter().filter(|k| k.contains("/mac/")).count(),
        3,
        "{keys:?}"
    );
    let v = lab.etcd.ctl(&[
        "get",
        "--print-value-only",
        &format!("/vxlan-fwd/v1/vni/42/mac/{}", lab.c("c2").mac()),
    ]);
    assert!(
        v.stdout
            .contains(&format!("\"vtep\":\"{}\"", vxlan_tests::H2_IP))
            && v.stdout.contains(&format!("\"ip\":\"{C2_IP}\"")),
        "{v}"
    );
}

#[test]
fn etcd_arp_for_known_addresses_never_reaches_the_underlay() {
    vxlan_tests::require_root();
    let lab = lab("vxe-arp-", 2);
    let [f1, f2] = lab.fleet(&[]);
    // c2's address becomes known (published with its IP).
    assert_connected(lab.c("c1"), C2_IP, 3, &[&f1, &f2]);
    let mac2 = lab.c("c2").mac();
    let known = wait_until(Duration::from_secs(5), Duration::from_millis(100), || {
        let v = lab.etcd.ctl(&[
            "get",
            "--print-value-only",
            &format!("/vxlan-fwd/v1/vni/42/mac/{mac2}"),
        ]);
        v.stdout.contains(C2_IP)
    });
    assert!(known, "c2's address never published\n{}", diag(&[&f1, &f2]));

    let c1 = lab.c("c1");
    c1.ns.ip(["neigh", "flush", "dev", "eth0"]);
    let before = f1.counter("arp_suppressed");
    let cap = Capture::start(&lab.topo.switch, "br0", "udp port 4789");
    // Known: answered on h1's port. Unknown (.99): flooded, the positive
    // control that the capture sees encapsulated ARP.
    assert_connected(c1, C2_IP, 3, &[&f1, &f2]);
    let _ = ping_result(&c1.ns, "172.18.1.99", 1);
    std::thread::sleep(Duration::from_millis(300));
    let lines = cap.finish();
    let asks = |ip: &str| {
        lines
            .iter()
            .filter(|l| l.contains("ARP") && l.contains(&format!("who-has {ip} ")))
            .count()
    };
    assert!(
        asks("172.18.1.99") >= 1,
        "the unknown address was not flooded: {lines:#?}"
    );
    assert_eq!(
        asks(C2_IP),
        0,
        "ARP for a known address on the underlay: {lines:#?}"
    );
    let neigh = c1.ns.ip(["neigh", "show", C2_IP]);
    assert!(neigh.contains(&mac2), "c1 learned {neigh}, expected {mac2}");
    assert!(
        f1.counter("arp_suppressed") > before,
        "{}",
        f1.diagnostics()
    );
}

#[test]
fn etcd_dead_hosts_are_forgotten_within_ttl() {
    vxlan_tests::require_root();
    let lab = lab("vxe-death-", 3);
    let [f1, f2, f3] = lab.fleet(&[]);
    assert_connected(lab.c("c1"), C3_IP, 3, &[&f1, &f3]);
    assert_connected(lab.c("c1"), C2_IP, 3, &[&f1, &f2]);
    let (mac2, mac3) = (lab.c("c2").mac(), lab.c("c3").mac());
    // Neither in the flood list nor behind it, nor the MAC: one `fdb show`.
    let gone =
        |f: &Fwd, ip: &str, mac: &str| !rows(f).iter().any(|r| r["dst"] == ip || r["mac"] == mac);
    assert!(!gone(&f1, H3_IP, &mac3), "h3 unknown before it died");

    // SIGKILL: nothing revokes the lease; it expires.
    let t = Instant::now();
    f3.kill();
    // Each host polled in turn: the time is when the last one forgot it.
    let ok = [&f1, &f2].iter().all(|f| {
        wait_until(
            Duration::from_secs(TTL + 5),
            Duration::from_millis(20),
            || gone(f, H3_IP, &mac3),
        )
    });
    let took = t.elapsed();
    eprintln!("h3 (SIGKILL) forgotten by h1 and h2 after {took:?}");
    assert!(ok, "h3 still known\n{}", diag(&[&f1, &f2]));
    assert!(
        took <= Duration::from_secs(TTL + 1),
        "h3 forgotten after {took:?}, more than the TTL ({TTL} s) + 1 s"
    );

    // The uplink deleted: the forwarder stops; h2 is forgotten as well.
    let t = Instant::now();
    lab.topo.host("h2").ns.ip(["link", "del", "eth0"]);
    let ok = wait_until(
        Duration::from_secs(TTL + 5),
        Duration::from_millis(20),
        || gone(&f1, vxlan_tests::H2_IP, &mac2),
    );
    let took = t.elapsed();
    let out = f2.wait_exit(Duration::from_secs(10));
    assert_eq!(out.code(), Some(1), "{out}");
    eprintln!("h2 (uplink deleted) forgotten by h1 after {took:?}");
    assert!(ok, "h2 still known\n{}", f1.diagnostics());
    assert!(
        took <= Duration::from_secs(TTL + 1),
        "h2 forgotten after {took:?}, more than the TTL ({TTL} s) + 1 s"
    );
    assert!(flood_list(&f1).is_empty(), "{:?}", flood_list(&f1));
}

#[test]
fn etcd_outage_keeps_forwarding_and_a_new_host_joins_after() {
    vxlan_tests::require_root();
    let mut lab = lab("vxe-outage-", 3);
    let [f1, f2] = lab.fleet(&["--no-learning"]);
    assert_connected(lab.c("c1"), C2_IP, 3, &[&f1, &f2]);

    lab.etcd.kill();
    // Forwarding goes on, for longer than the lease TTL.
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(TTL + 2) {
        assert_connected(lab.c("c1"), C2_IP, 2, &[&f1, &f2]);
    }
    for f in [&f1, &f2] {
        let (out, _) = f.output_so_far();
        assert_eq!(
            out.matches("etcd: connection lost").count(),
            1,
            "{}: one line per state change, not per retry:\n{out}",
            f.ns()
        );
    }

    lab.etcd.restart();
    for f in [&f1, &f2] {
        let back = wait_until(Duration::from_secs(15), Duration::from_millis(100), || {
            f.output_so_far().0.contains("etcd: reconnected")
        });
        assert!(back, "{} did not reconnect\n{}", f.ns(), f.diagnostics());
    }
    // A host that joins now is reached, by both.
    let f3 = lab.fwd("h3", &["--no-learning"]);
    wait_flood_lists(&[
        (&f1, vxlan_tests::H1_IP),
        (&f2, vxlan_tests::H2_IP),
        (&f3, H3_IP),
    ]);
    assert_connected(lab.c("c1"), C3_IP, 3, &[&f1, &f3]);
    assert_connected(lab.c("c3"), C2_IP, 3, &[&f2, &f3]);
    // The old leases were revoked: one VTEP key per host, each host's keys
    // under a single live lease.
    let keys = lab.etcd.keys("/vxlan-fwd/v1/vni/42/vtep/");
    assert_eq!(keys.len(), 3, "{keys:?}");
}

#[test]
fn etcd_bad_values_are_skipped() {
    vxlan_tests::require_root();
    let lab = lab("vxe-bad-", 2);
    let [f1, f2] = lab.fleet(&[]);
    let bad = [
        (
            "/vxlan-fwd/v1/vni/42/mac/zz:zz:zz:zz:zz:zz",
            r#"{"vtep":"192.168.57.54"}"#,
        ),
        (
            "/vxlan-fwd/v1/vni/42/mac/02:00:00:00:99:02",
            "not json at all",
        ),
        (
            "/vxlan-fwd/v1/vni/42/mac/02:00:00:00:99:03",
            r#"{"vtep":"0.0.0.0"}"#,
        ),
        (
            "/vxlan-fwd/v1/vni/42/mac/02:00:00:00:99:04",
            r#"{"vtep":"192.168.57.54","ip":"1.2.3"}"#,
        ),
        (
            "/vxlan-fwd/v1/vni/99999999/vtep/192.168.57.9",
            r#"{"vtep":"192.168.57.9"}"#,
        ),
        (
            "/vxlan-fwd/v1/vni/42/vtep/192.168.57.9",
            r#"{"vtep":"10.9.9.9"}"#,
        ),
        ("/vxlan-fwd/v1/vni/42/oops", "x"),
    ];
    for (k, v) in bad {
        lab.etcd.put(k, v);
    }
    // The positive control: a good value after the bad ones is installed.
    lab.etcd.put(
        "/vxlan-fwd/v1/vni/42/mac/02:00:00:00:99:01",
        r#"{"vtep":"192.168.57.54","ip":"172.18.1.77"}"#,
    );
    let ok = wait_until(Duration::from_secs(5), Duration::from_millis(100), || {
        row_of(&f1, "02:00:00:00:99:01").is_some()
    });
    assert!(ok, "the good value was not installed\n{}", f1.diagnostics());
    let mut f1 = f1;
    assert!(f1.is_running(), "the forwarder died on bad values");
    let (_, err) = f1.output_so_far();
    assert_eq!(err.matches("etcd: skipping").count(), bad.len(), "{err}");
    for mac in [
        "02:00:00:00:99:02",
        "02:00:00:00:99:03",
        "02:00:00:00:99:04",
    ] {
        assert!(row_of(&f1, mac).is_none(), "{mac} installed");
    }
    assert_eq!(
        flood_list(&f1),
        vec![(vxlan_tests::H2_IP.to_owned(), "etcd".to_owned())]
    );
    // Still forwarding.
    assert_connected(lab.c("c1"), C2_IP, 3, &[&f1, &f2]);
}

#[test]
fn etcd_a_mac_that_moves_is_followed() {
    vxlan_tests::require_root();
    let lab = lab("vxe-move-", 3);
    let [f1, f2, f3] = lab.fleet(&[]);
    assert_connected(lab.c("c1"), C2_IP, 3, &[&f1, &f2]);
    let mac = lab.c("c2").mac();
    let r = row_of(&f1, &mac).expect("c2 known on h1");
    assert_eq!(r["dst"], vxlan_tests::H2_IP);

    // c2's MAC and address move to c3 on h3 (c2 goes down).
    let (c2, c3) = (lab.c("c2"), lab.c("c3"));
    c2.ns.ip(["link", "set", "eth0", "down"]);
    c3.ns.ip(["link", "set", "eth0", "down"]);
    c3.ns.ip(["link", "set", "eth0", "address", &mac]);
    c3.ns.ip(["addr", "flush", "dev", "eth0"]);
    c3.ns
        .ip(["addr", "add", &format!("{C2_IP}/24"), "dev", "eth0"]);
    c3.ns.ip(["link", "set", "eth0", "up"]);
    let _ = ping_result(&c3.ns, C1_IP, 1);
    let moved = wait_until(Duration::from_secs(5), Duration::from_millis(100), || {
        row_of(&f1, &mac).is_some_and(|r| r["dst"] == H3_IP && r["origin"] == "etcd")
    });
    assert!(
        moved,
        "h1 did not follow the move: {:?}\n{}",
        row_of(&f1, &mac),
        diag(&[&f1, &f2, &f3])
    );
    // h2 knows it is on h3 now too.
    let ok = wait_until(Duration::from_secs(5), Duration::from_millis(100), || {
        row_of(&f2, &mac).is_some_and(|r| r["dst"] == H3_IP)
    });
    assert!(ok, "h2: {:?}", row_of(&f2, &mac));
    assert_connected(lab.c("c1"), C2_IP, 5, &[&f1, &f3]);
}

#[test]
fn etcd_over_tls_with_client_certificates() {
    vxlan_tests::require_root();
    let lab = lab_with("vxe-tls-", 2, true);
    let d = lab.dir.path();
    let conf = |name: &str, with_cert: bool| {
        let mut t = format!(
            "iface = \"eth0\"\n[[vni]]\nid = 42\nports = [\"veth0\"]\n[etcd]\nendpoints = \
             [\"{}\"]\nttl = {TTL}\nca = \"{}\"\n",
            lab.etcd.url(),
            d.join("ca.pem").display()
        );
        if with_cert {
            t += &format!(
                "cert = \"{}\"\nkey = \"{}\"\n",
                d.join("client.pem").display(),
                d.join("client.key").display()
            );
        }
        lab.dir.write(name, &t).display().to_string()
    };
    // Without a client certificate etcd refuses it: it says so and
    // registers nothing (the negative control), but still forwards.
    let bare = conf("bare.toml", false);
    let mut f2 = Fwd::start(&lab.topo.host("h2").ns, &["--config", &bare], d);
    let refused = f2
        .wait_for_line(Duration::from_secs(10), |l| {
            l.contains("etcd: cannot reach")
        })
        .is_ok();
    assert!(refused, "no refusal line\n{}", f2.diagnostics());
    assert!(
        lab.etcd.keys("/vxlan-fwd/").is_empty(),
        "{:?}",
        lab.etcd.keys("/vxlan-fwd/")
    );
    drop(f2);
    // With one, both register and the containers reach each other.
    let good = conf("good.toml", true);
    let f1 = Fwd::start(&lab.topo.host("h1").ns, &["--config", &good], d);
    let f2 = Fwd::start(&lab.topo.host("h2").ns, &["--config", &good], d);
    wait_flood_lists(&[(&f1, vxlan_tests::H1_IP), (&f2, vxlan_tests::H2_IP)]);
    assert_connected(lab.c("c1"), C2_IP, 3, &[&f1, &f2]);
    assert_eq!(lab.etcd.keys("/vxlan-fwd/v1/vni/42/vtep/").len(), 2);
}

#[test]
fn etcd_a_forwarder_that_was_away_catches_up() {
    vxlan_tests::require_root();
    let lab = lab("vxe-away-", 3);
    let [mut f1, f2, f3] = lab.fleet(&[]);
    assert_connected(lab.c("c1"), C3_IP, 3, &[&f1, &f3]);
    let mac3 = lab.c("c3").mac();
    assert!(row_of(&f1, &mac3).is_some());
    // h1's forwarder stops (SIGSTOP) for longer than its lease (the others
    // forget h1); meanwhile h3 goes away.
    f1.signal(libc::SIGSTOP);
    f3.kill();
    std::thread::sleep(Duration::from_secs(TTL + 2));
    assert!(
        !lab.etcd
            .keys("/vxlan-fwd/v1/vni/42/vtep/")
            .iter()
            .any(|k| k.ends_with(vxlan_tests::H1_IP)),
        "h1's lease did not expire"
    );
    f1.signal(libc::SIGCONT);
    // It registers again under a new lease and forgets what vanished.
    let back = wait_until(Duration::from_secs(10), Duration::from_millis(100), || {
        lab.etcd
            .keys("/vxlan-fwd/v1/vni/42/vtep/")
            .iter()
            .any(|k| k.ends_with(vxlan_tests::H1_IP))
    });
    assert!(back, "h1 did not register again\n{}", f1.diagnostics());
    let forgot = wait_until(Duration::from_secs(5), Duration::from_millis(100), || {
        row_of(&f1, &mac3).is_none() && !flood_list(&f1).iter().any(|(d, _)| d == H3_IP)
    });
    assert!(forgot, "h1 still knows h3\n{}", f1.diagnostics());
    wait_flood_lists(&[(&f1, vxlan_tests::H1_IP), (&f2, vxlan_tests::H2_IP)]);
    assert_connected(lab.c("c2"), C1_IP, 3, &[&f1, &f2]);
}
