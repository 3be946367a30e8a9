//! End-to-end tests of vxlan-fwd on a live host: VNIs and ports at run time
//! (`vni`, `port` commands and their errors), containers that come and go
//! (a port deleted and created again), an uplink whose MTU changes or that
//! is deleted, SIGHUP reloads (no loss; a bad file changes nothing), the
//! configuration as the truth across a stop and a SIGKILL, sd_notify, the
//! control socket's access rules and a watcher that stops reading.
//!
//! Run as root, serially (`cargo xtask test -- e2e_live`). Each test builds
//! its own namespaces (prefix `vxl-<test>-`) and removes them, also on
//! failure; forwarders keep their files in a directory the test creates.

use std::{
    io::{Read as _, Write as _},
    os::unix::net::{UnixDatagram, UnixStream},
    time::{Duration, Instant},
};

use serde_json::Value;
use vxlan_tests::{
    Container, H1_IP, H2_IP, Topology,
    checks::assert_no_ping,
    fdb_checks::defaults,
    fdb_harness::{Fwd, TempDir, assert_connected, diag},
    ping_result,
    scenario::{C1_IP, C2_IP, Pick, Setup},
    wait_until,
};

/// The seed's forwarder arguments: uplink eth0, VNI 42, port veth0, one
/// remote.
fn vtep(remote: &str) -> Vec<&str> {
    Setup::default().args(&["--port", "veth0", "--remote", remote])
}

/// The two-host set-up (namespaces `vxl-<tag>-*`) and a state directory
/// for its forwarders.
fn lab(tag: &str) -> (TempDir, Topology) {
    let topo = Setup::default().two_hosts(&format!("vxl-{tag}-"));
    (TempDir::new(tag), topo)
}

/// Forwarders on h1 and h2 of [`Setup::two_hosts`], each with the other as its
/// remote.
fn start_pair(topo: &Topology, dir: &TempDir) -> (Fwd, Fwd) {
    Setup::default().pair_fwd(topo, dir, &[], &[])
}

/// No reply at all to 3 pings.
fn assert_not_connected(from: &Container, ip: &str, why: &str, fwds: &[&Fwd]) {
    assert_no_ping(&from.ns, ip, 3, why, fwds);
}

/// `vxlan-fwd <args> --json` parsed.
fn json(f: &Fwd, args: &[&str]) -> Value {
    let mut a = args.to_vec();
    a.push("--json");
    let s = f.command(&a);
    serde_json::from_str(&s).unwrap_or_else(|e| panic!("{args:?} --json is not JSON ({e}): {s}"))
}

/// The rows of `port show --json`, by name.
fn port_row(f: &Fwd, name: &str) -> Option<Value> {
    json(f, &["port", "show"])
        .as_array()
        .expect("port show --json: an array")
        .iter()
        .find(|p| p["name"] == name)
        .cloned()
}

/// A command that must fail with one line containing `needle`.
fn assert_fails(f: &Fwd, args: &[&str], needle: &str) {
    let out = f.run(args);
    // clap adds a hint line to its own usage errors.
    let lines = out
        .stderr
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with("For more information"))
        .count();
    assert!(
        !out.success() && out.stderr.contains(needle) && lines == 1,
        "vxlan-fwd {} should fail with one line mentioning `{needle}`: {out}",
        args.join(" ")
    );
}

// ------------------------------------------------------------ commands

#[test]
fn runtime_vnis_and_ports() {
    let (dir, topo) = lab("rtv");
    let [h1, h2] = topo.pick_hosts(["h1", "h2"]);
    let c1 = topo.container("c1");
    // h1 starts as an empty VTEP: no VNI, no port.
    let f1 = Fwd::start(&h1.ns, &["--iface", "eth0"], dir.path());
    let f2 = Fwd::start(&h2.ns, &vtep(H1_IP), dir.path());
    assert_eq!(json(&f1, &["vni", "show"]), Value::Array(vec![]));
    assert_not_connected(c1, C2_IP, "h1 serves no VNI yet", &[&f1, &f2]);

    f1.command(&["vni", "add", "42", "--remote", H2_IP]);
    f1.command(&["port", "add", "veth0", "--vni", "42"]);
    assert_connected(c1, C2_IP, 5, &[&f1, &f2]);
    let vnis = json(&f1, &["vni", "show"]);
    assert_eq!(vnis[0]["vni"], 42, "{vnis}");
    assert_eq!(vnis[0]["origin"], "runtime", "{vnis}");
    assert_eq!(vnis[0]["underlay"], "IPv4", "{vnis}");
    assert_eq!(vnis[0]["remotes"], serde_json::json!([H2_IP]), "{vnis}");
    assert_eq!(vnis[0]["ports"], serde_json::json!(["veth0"]), "{vnis}");
    let p = port_row(&f1, "veth0").expect("veth0 in port show");
    assert_eq!(p["vni"], 42);
    assert_eq!(p["attached"], true);
    assert_eq!(
        p["ifindex"].as_u64(),
        h1.ns.link("veth0").and_then(|l| l["ifindex"].as_u64()),
        "{p}"
    );
    assert!(
        h1.ns.tc_ingress_prog_id("veth0", "vxlan_tc_port").is_some(),
        "no port program on veth0"
    );

    // Errors: one line each, nothing changed.
    assert_fails(&f1, &["vni", "add", "42"], "VNI 42 exists already");
    assert_fails(
        &f1,
        &["port", "add", "veth0", "--vni", "43"],
        "VNI 43 is not configured",
    );
    assert_fails(
        &f1,
        &["port", "add", "nope0", "--vni", "42"],
        "interface 'nope0' not found",
    );
    f1.command(&["vni", "add", "43"]);
    assert_fails(
        &f1,
        &["port", "add", "veth0", "--vni", "43"],
        "is a port of VNI 42 already",
    );
    assert_fails(&f1, &["port", "del", "nope0"], "not a port");
    assert_fails(&f1, &["vni", "del", "99"], "VNI 99 is not configured");
    assert_fails(&f1, &["vni", "add", "0"], "VNI 0");
    assert_fails(
        &f1,
        &["vni", "add", "44", "--remote", "1.2.3"],
        "not an IPv4 address",
    );
    f1.command(&["vni", "del", "43"]);
    assert_connected(c1, C2_IP, 3, &[&f1, &f2]);

    // port del: detached, its learned entries gone; add again: back.
    let c1_mac = c1.mac();
    assert!(
        f1.entries()
            .iter()
            .any(|e| e.mac == c1_mac && e.dev.as_deref() == Some("veth0")),
        "c1 not learned on veth0: {:?}",
        f1.entries()
    );
    f1.command(&["port", "del", "veth0"]);
    assert!(
        h1.ns.tc_ingress_prog_id("veth0", "vxlan_tc_port").is_none(),
        "port program left on veth0 after port del"
    );
    assert!(
        !f1.entries().iter().any(|e| e.mac == c1_mac),
        "c1's entry left after port del: {:?}",
        f1.entries()
    );
    assert_not_connected(c1, C2_IP, "veth0 was removed", &[&f1, &f2]);
    f1.command(&["port", "add", "veth0", "--vni", "42"]);
    assert_connected(c1, C2_IP, 5, &[&f1, &f2]);

    // vni del: its ports detached, its entries gone.
    f1.command(&["vni", "del", "42"]);
    assert!(f1.entries().is_empty(), "entries left: {:?}", f1.entries());
    assert!(h1.ns.tc_ingress_prog_id("veth0", "vxlan_tc_port").is_none());
    assert_eq!(json(&f1, &["port", "show"]), Value::Array(vec![]));
    assert_not_connected(c1, C2_IP, "VNI 42 was removed", &[&f1, &f2]);
}

#[test]
fn container_restart_is_reattached() {
    let (dir, topo) = lab("rea");
    let h1 = topo.host("h1");
    let c1 = topo.container("c1");
    let (f1, f2) = start_pair(&topo, &dir);
    assert_connected(c1, C2_IP, 3, &[&f1, &f2]);
    let old = port_row(&f1, "veth0").expect("veth0")["ifindex"].clone();

    // The container restarts: its veth goes, and a new one with the same
    // name comes.
    h1.ns.ip(["link", "del", "veth0"]);
    assert!(
        wait_until(Duration::from_secs(5), Duration::from_millis(20), || {
            port_row(&f1, "veth0").is_some_and(|p| p["attached"] == false)
        }),
        "veth0 not reported detached: {:?}",
        port_row(&f1, "veth0")
    );
    let start = Instant::now();
    h1.ns.ip([
        "link",
        "add",
        "veth0",
        "mtu",
        "1450",
        "type",
        "veth",
        "peer",
        "name",
        "eth0",
        "mtu",
        "1450",
        "netns",
        c1.ns.name(),
    ]);
    h1.ns.ip(["link", "set", "veth0", "up"]);
    c1.ns
        .ip(["addr", "add", &format!("{C1_IP}/24"), "dev", "eth0"]);
    c1.ns.ip(["link", "set", "eth0", "up"]);
    let attached = wait_until(Duration::from_secs(5), Duration::from_millis(10), || {
        port_row(&f1, "veth0").is_some_and(|p| p["attached"] == true && p["ifindex"] != old)
    });
    let took = start.elapsed();
    assert!(
        attached,
        "the new veth0 was not attached: {:?}",
        port_row(&f1, "veth0")
    );
    eprintln!("re-attach of a recreated port observed after {took:?}");
    assert!(h1.ns.tc_ingress_prog_id("veth0", "vxlan_tc_port").is_some());
    assert_connected(c1, C2_IP, 5, &[&f1, &f2]);
}

#[test]
fn uplink_mtu_change_reaches_path_mtu() {
    let (dir, topo) = lab("mtu");
    let h1 = topo.host("h1");
    let c1 = topo.container("c1");
    let (f1, f2) = start_pair(&topo, &dir);
    assert_connected(c1, C2_IP, 2, &[&f1, &f2]);
    // 1400 bytes of ICMP payload: a 1428-byte packet, 1478 encapsulated.
    let big = |c: &Container| {
        c.ns.exec(
            "ping",
            ["-n", "-c", "1", "-W", "2", "-M", "do", "-s", "1400", C2_IP],
        )
    };
    let out = big(c1);
    assert!(
        out.success(),
        "a 1428-byte DF ping fits a 1500 uplink: {out}"
    );
    h1.ns.ip(["link", "set", "eth0", "mtu", "1400"]);
    // The first one is dropped with "fragmentation needed" (MTU 1350);
    // the kernel then knows the path MTU.
    assert!(
        wait_until(Duration::from_secs(5), Duration::from_millis(200), || {
            let _ = big(c1);
            c1.ns.ip(["route", "get", C2_IP]).contains("mtu 1350")
        }),
        "c1 did not learn mtu 1350: {}\n{}",
        c1.ns.ip(["route", "get", C2_IP]),
        diag(&[&f1, &f2])
    );
    assert!(f1.counter("drop_too_big") > 0, "{}", f1.diagnostics());
    let out = c1.ns.exec(
        "ping",
        ["-n", "-c", "1", "-W", "2", "-M", "do", "-s", "1322", C2_IP],
    );
    assert!(out.success(), "a 1350-byte DF ping fits: {out}");
}

#[test]
fn uplink_deleted_stops_with_one_line() {
    let (dir, topo) = lab("upd");
    let h1 = topo.host("h1");
    let f1 = Fwd::start(&h1.ns, &vtep(H2_IP), dir.path());
    assert!(h1.ns.tc_ingress_prog_id("veth0", "vxlan_tc_port").is_some());
    h1.ns.ip(["link", "del", "eth0"]);
    let out = f1.wait_exit(Duration::from_secs(10));
    assert!(
        !out.timed_out,
        "still running 10 s after its uplink was deleted: {out}"
    );
    assert_eq!(out.code(), Some(1), "{out}");
    assert!(
        out.stderr.contains("uplink 'eth0' was deleted"),
        "no clear line: {out}"
    );
    assert!(
        h1.ns.tc_ingress_prog_id("veth0", "vxlan_tc_port").is_none(),
        "the port's program was left attached"
    );
}

// -------------------------------------------------------------- reload

fn config_text(vnis: &[(u32, &[&str], &[&str])]) -> String {
    let mut s = String::from("iface = \"eth0\"\n");
    for (id, ports, remotes) in vnis {
        let q = |v: &[&str]| {
            v.iter()
                .map(|x| format!("\"{x}\""))
                .collect::<Vec<_>>()
                .join(", ")
        };
        s.push_str(&format!(
            "\n[[vni]]\nid = {id}\nports = [{}]\nremotes = [{}]\n",
            q(ports),
            q(remotes)
        ));
    }
    s
}

#[test]
fn reload_applies_the_difference_without_loss() {
    let (dir, topo) = lab("rld");
    let [h1, h2] = topo.pick_hosts(["h1", "h2"]);
    let c1 = topo.container("c1");
    let path = dir.write("h1.toml", &config_text(&[(42, &["veth0"], &[H2_IP])]));
    let path_s = path.to_string_lossy().into_owned();
    let mut f1 = Fwd::start(&h1.ns, &["--config", &path_s], dir.path());
    let f2 = Fwd::start(&h2.ns, &vtep(H1_IP), dir.path());
    assert_connected(c1, C2_IP, 2, &[&f1, &f2]);

    // 20 pings a second across three reloads: add VNI 43 and a remote,
    // a bad file, then VNI 43 removed again.
    let mut ping = c1
        .ns
        .spawn("ping", ["-n", "-c", "100", "-i", "0.05", "-W", "2", C2_IP]);
    std::thread::sleep(Duration::from_millis(800));
    dir.write(
        "h1.toml",
        &config_text(&[
            (42, &["veth0"], &[H2_IP, "192.168.57.77"]),
            (43, &[], &["192.168.57.78"]),
        ]),
    );
    f1.signal(libc::SIGHUP);
    f1.wait_for_line(Duration::from_secs(10), |l| {
        l.starts_with("vxlan-fwd: reloaded")
    })
    .unwrap_or_else(|e| panic!("no reload ({e}): {}", f1.diagnostics()));
    let vnis = json(&f1, &["vni", "show"]);
    let ids: Vec<u64> = vnis
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|v| v["vni"].as_u64())
        .collect();
    assert_eq!(ids, [42, 43], "{vnis}");
    assert_eq!(
        defaults(&f1.entries(), 42),
        [H2_IP, "192.168.57.77"],
        "remotes of 42 after the reload"
    );
    std::thread::sleep(Duration::from_millis(800));

    // A file with a mistake: refused, nothing changes, the line is named.
    let good = std::fs::read_to_string(&path).unwrap();
    dir.write("h1.toml", &(good.clone() + "\n[[vni]]\nid = 0\n"));
    f1.signal(libc::SIGHUP);
    assert!(
        wait_until(Duration::from_secs(10), Duration::from_millis(100), || {
            f1.output_so_far().1.contains("reload refused")
        }),
        "no refusal logged: {:?}",
        f1.output_so_far()
    );
    let err = f1.output_so_far().1;
    assert!(err.contains("h1.toml:") && err.contains("VNI 0"), "{err}");
    assert_eq!(
        json(&f1, &["vni", "show"]),
        vnis,
        "a refused reload changed the VNIs"
    );
    std::thread::sleep(Duration::from_millis(800));

    dir.write("h1.toml", &config_text(&[(42, &["veth0"], &[H2_IP])]));
    f1.signal(libc::SIGHUP);
    f1.wait_for_line(Duration::from_secs(10), |l| {
        l.starts_with("vxlan-fwd: reloaded")
    })
    .unwrap_or_else(|e| panic!("no reload ({e}): {}", f1.diagnostics()));
    let out = ping.wait(Duration::from_secs(30));
    let received = out
        .stdout
        .lines()
        .find(|l| l.contains("packets transmitted"))
        .unwrap_or_default()
        .to_owned();
    assert!(
        received.starts_with("100 packets transmitted, 100 received"),
        "loss across the reloads: {received}\n{out}\n{}",
        diag(&[&f1, &f2])
    );
    let ids: Vec<u64> = json(&f1, &["vni", "show"])
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|v| v["vni"].as_u64())
        .collect();
    assert_eq!(ids, [42]);
    assert_eq!(defaults(&f1.entries(), 42), [H2_IP]);
}

#[test]
fn configuration_is_the_truth_across_stop_and_kill() {
    let dir = TempDir::new("tru");
    let topo = Topology::seed("vxl-tru-")
        .container("c1", "h1", "veth0", C1_IP)
        .container("c3", "h1", "veth1", "172.18.1.4")
        .container("c2", "h2", "veth0", C2_IP)
        .build();
    topo.check_underlay();
    let [h1, h2] = topo.pick_hosts(["h1", "h2"]);
    let c1 = topo.container("c1");
    #[rustfmt::skip]
    let two = Setup::default().args(&["--port", "veth0", "--port", "veth1", "--remote", H2_IP,
                                      "--remote", "192.168.57.52"]);
    let one = vtep(H2_IP);
    let f2 = Fwd::start(&h2.ns, &vtep(H1_IP), dir.path());
    for how in ["SIGINT", "SIGKILL"] {
        let f1 = Fwd::start(&h1.ns, &two, dir.path());
        // Added at run time: survives the restart.
        f1.command(&[
            "fdb",
            "append",
            "00:00:00:00:00:00",
            "dst",
            "192.168.57.77",
            "vni",
            "42",
        ]);
        assert_connected(c1, C2_IP, 2, &[&f1, &f2]);
        assert_eq!(
            defaults(&f1.entries(), 42),
            ["192.168.57.52", H2_IP, "192.168.57.77"]
        );
        let out = match how {
            "SIGINT" => f1.stop(),
            _ => f1.kill(),
        };
        assert!(!out.timed_out, "{how}: {out}");
        let f1 = Fwd::start(&h1.ns, &one, dir.path());
        assert_eq!(
            defaults(&f1.entries(), 42),
            [H2_IP, "192.168.57.77"],
            "after {how} and a start without .52: the configuration is the truth, the runtime \
             remote stays"
        );
        assert!(
            h1.ns.tc_ingress_prog_id("veth1", "vxlan_tc_port").is_none(),
            "after {how}: veth1, no longer configured, keeps a filter"
        );
        assert!(h1.ns.tc_ingress_prog_id("veth0", "vxlan_tc_port").is_some());
        assert_connected(c1, C2_IP, 3, &[&f1, &f2]);
        // The runtime remote goes for good.
        f1.command(&[
            "fdb",
            "del",
            "00:00:00:00:00:00",
            "dst",
            "192.168.57.77",
            "vni",
            "42",
        ]);
        assert_eq!(f1.stop().code(), Some(0));
    }
}

#[test]
fn files_of_gone_namespaces_are_removed() {
    let (dir, topo) = lab("gone");
    let h1 = topo.host("h1");
    // A namespace that no longer exists (no inode 1 is a namespace), and
    // a file of an older version.
    for f in [
        "netns-1-1-eth0.json",
        "netns-1-1-eth0.runtime.json",
        "netns-7-eth0.json",
    ] {
        dir.write(f, "{}");
    }
    let f1 = Fwd::start(&h1.ns, &vtep(H2_IP), dir.path());
    let files = dir.files();
    assert!(
        !files
            .iter()
            .any(|f| f.starts_with("netns-1-1-") || f.starts_with("netns-7-")),
        "stale files left: {files:?}"
    );
    assert!(
        files.iter().any(|f| f.ends_with("-eth0.sock"))
            && files.iter().any(|f| f.ends_with("-eth0.lock")),
        "the running instance's files: {files:?}"
    );
    // Its own files stay while its namespace exists.
    assert_eq!(f1.stop().code(), Some(0));
    assert!(
        dir.files().iter().any(|f| f.ends_with("-eth0.json")),
        "{:?}",
        dir.files()
    );
}

// ----------------------------------------------------------- sd_notify

#[test]
fn sd_notify_ready_reloading_stopping() {
    let (dir, topo) = lab("sdn");
    let h1 = topo.host("h1");
    let sock_path = dir.path().join("notify.sock");
    let sock = UnixDatagram::bind(&sock_path).expect("binding the notify socket");
    sock.set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let recv = || {
        let mut buf = [0u8; 512];
        let n = sock.recv(&mut buf).expect("a notification in time");
        String::from_utf8_lossy(&buf[..n]).into_owned()
    };
    let sock_s = sock_path.to_string_lossy().into_owned();
    let config = dir.write("h1.toml", &config_text(&[(42, &["veth0"], &[H2_IP])]));
    let config_s = config.to_string_lossy().into_owned();
    let mut f1 = Fwd::try_start_env(
        &h1.ns,
        &["--config", &config_s],
        dir.path(),
        &[("NOTIFY_SOCKET", &sock_s)],
    )
    .unwrap_or_else(|o| panic!("start: {o}"));
    assert_eq!(recv(), "READY=1\n");
    f1.signal(libc::SIGHUP);
    let reloading = recv();
    let mut lines = reloading.lines();
    assert_eq!(lines.next(), Some("RELOADING=1"), "{reloading}");
    let usec: u64 = lines
        .next()
        .and_then(|l| l.strip_prefix("MONOTONIC_USEC="))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no MONOTONIC_USEC: {reloading}"));
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    let now = ts.tv_sec as u64 * 1_000_000 + ts.tv_nsec as u64 / 1000;
    assert!(
        usec <= now && now - usec < 20_000_000,
        "MONOTONIC_USEC {usec}, now {now}"
    );
    assert_eq!(recv(), "READY=1\n");
    f1.signal(libc::SIGTERM);
    assert_eq!(recv(), "STOPPING=1\n");
    let out = f1.wait_exit(Duration::from_secs(10));
    assert_eq!(out.code(), Some(0), "{out}");
}

// --------------------------------------------------- the control socket

#[test]
fn control_socket_is_root_only_and_single_instance() {
    let (dir, topo) = lab("ctl");
    let h1 = topo.host("h1");
    let args = vtep(H2_IP);
    let f1 = Fwd::start(&h1.ns, &args, dir.path());
    // Positive control: root may.
    f1.command(&["vni", "show"]);
    // Another user may not: the directory is root's, mode 0700.
    let mut c = h1.ns.command("setpriv");
    c.args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(vxlan_tests::vxlan_fwd_bin())
        .args(["vni", "add", "7"])
        .env("VXLAN_FWD_STATE_DIR", dir.path());
    let out = vxlan_tests::run_with_timeout(c, Duration::from_secs(20));
    assert!(
        !out.success(),
        "a non-root user changed the forwarder: {out}"
    );
    assert!(
        !f1.command(&["vni", "show"]).contains("vni 7"),
        "VNI 7 was added by a non-root user"
    );
    use std::os::unix::fs::PermissionsExt as _;
    let mode = std::fs::metadata(dir.path()).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o700, "state directory mode");
    // A second instance on the same uplink is refused.
    let second = Fwd::try_start(&h1.ns, &args, dir.path());
    let out = second.err().expect("a second instance started");
    assert!(
        out.stderr
            .contains("another vxlan-fwd is running on 'eth0'"),
        "{out}"
    );
    f1.command(&["vni", "show"]);
}

#[test]
fn a_watcher_that_stops_reading_stalls_nothing() {
    use vxlan_tests::{fdb_harness::send_raw_frames, traffic::flood_frames};
    let (dir, topo) = lab("slw");
    let h1 = topo.host("h1");
    let c1 = topo.container("c1");
    let f1 = Fwd::start(
        &h1.ns,
        &[
            "--iface",
            "eth0",
            "--vni",
            "42",
            "--port",
            "veth0",
            "--remote",
            H2_IP,
            "--max-fdb",
            "200000",
        ],
        dir.path(),
    );
    // A watcher that never reads.
    let sock = dir
        .files()
        .into_iter()
        .find(|f| f.ends_with("-eth0.sock"))
        .expect("the control socket");
    let mut stuck = UnixStream::connect(dir.path().join(sock)).expect("connecting");
    stuck.write_all(b"{\"request\":\"watch\"}\n").unwrap();
    let mut first = [0u8; 16];
    let _ = stuck.read(&mut first);
    // 30,000 learn events (new source MACs from c1).
    send_raw_frames(c1.ns.name(), "eth0", flood_frames(30_000)).expect("sending the frames");
    assert!(
        wait_until(Duration::from_secs(20), Duration::from_millis(200), || {
            f1.counter("learn") >= 20_000
        }),
        "learning did not happen: {}",
        f1.diagnostics()
    );
    // Commands are still answered, and SIGTERM still stops it.
    f1.command(&["vni", "show"]);
    let out = f1.stop();
    assert!(
        !out.timed_out,
        "the forwarder did not stop within 5 s: {out}"
    );
    assert_eq!(out.code(), Some(0), "{out}");
    assert!(
        out.stderr.contains("stopped reading"),
        "the slow watcher was not dropped with a line: {out}"
    );
    drop(stuck);
}

// -------------------------------------------------------------- metrics

#[test]
fn metrics_bound_before_attach_and_bounded() {
    use std::net::{SocketAddr, TcpListener, TcpStream};

    use vxlan_tests::hostile_net::{http_get, in_netns};
    let (dir, topo) = lab("met");
    let h1 = topo.host("h1");
    let listen = format!("{H1_IP}:9465");
    let addr: SocketAddr = listen.parse().unwrap();
    let args = [
        "--iface",
        "eth0",
        "--vni",
        "42",
        "--port",
        "veth0",
        "--remote",
        H2_IP,
        "--metrics",
        &listen,
    ];
    // The port is taken: the start fails, with nothing attached.
    let holder = in_netns(h1.ns.name(), "binding the metrics port", move || {
        TcpListener::bind(addr)
    });
    let out = Fwd::try_start(&h1.ns, &args, dir.path())
        .err()
        .expect("started without its port");
    assert!(out.stderr.contains("cannot serve metrics on"), "{out}");
    assert!(
        h1.ns
            .tc_ingress_prog_id("eth0", "vxlan_tc_uplink")
            .is_none(),
        "left attached: {out}"
    );
    assert!(
        h1.ns.tc_ingress_prog_id("veth0", "vxlan_tc_port").is_none(),
        "left attached: {out}"
    );
    drop(holder);

    let f1 = Fwd::start(&h1.ns, &args, dir.path());
    let (status, body) = http_get(&h1.ns, addr, "/metrics");
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("vxlan_fwd_fdb_entries"), "{body}");
    // 20 connections that never send a request: the cap closes the extra
    // ones at once, the deadline the others after 5 s; the forwarder
    // answers commands meanwhile and scrapes work again afterwards.
    let idle = in_netns(h1.ns.name(), "idle connections", move || {
        (0..20)
            .map(|_| TcpStream::connect_timeout(&addr, Duration::from_secs(2)))
            .collect::<std::io::Result<Vec<_>>>()
    });
    f1.command(&["vni", "show"]);
    let closed = in_netns(h1.ns.name(), "reading the idle connections", move || {
        let start = Instant::now();
        let mut closed = 0;
        for mut s in idle {
            s.set_read_timeout(Some(Duration::from_secs(10)))?;
            let mut b = [0u8; 1];
            if matches!(s.read(&mut b), Ok(0)) {
                closed += 1;
            }
        }
        Ok((closed, start.elapsed()))
    });
    assert_eq!(closed.0, 20, "idle connections not closed: {closed:?}");
    let (status, _) = http_get(&h1.ns, addr, "/metrics");
    assert_eq!(status, 200);
    assert_eq!(f1.stop().code(), Some(0));
}

// -------------------------------------------------------- tenant limits

#[test]
fn tenant_limits_per_vni_and_port() {
    use vxlan_tests::{fdb_harness::send_raw_frames, traffic::flood_frames};
    let dir = TempDir::new("lim");
    let topo = Topology::seed("vxl-lim-")
        .container("c1", "h1", "veth0", C1_IP)
        .container("c3", "h1", "veth1", "172.18.2.4")
        .build();
    topo.check_underlay();
    let h1 = topo.host("h1");
    let [c1, c3] = topo.pick_containers(["c1", "c3"]);
    let config = format!(
        "iface = \"eth0\"\n\n[[vni]]\nid = 42\nports = [\"veth0\"]\nremotes = [\"{H2_IP}\"]\n\
         max_fdb = 100\nbum_pps = 200\n\n[[vni]]\nid = 43\nports = [\"veth1\"]\nremotes = \
         [\"{H2_IP}\"]\nport_max_fdb = 50\n"
    );
    let path = dir.write("h1.toml", &config);
    let f1 = Fwd::start(&h1.ns, &["--config", &path.to_string_lossy()], dir.path());
    let learned = |vni: u32| {
        f1.entries()
            .iter()
            .filter(|e| e.vni == vni && !e.permanent)
            .count()
    };
    // Whether VNI `vni` comes to hold exactly `n` learned entries.
    let learns = |vni: u32, n: usize| {
        wait_until(Duration::from_secs(5), Duration::from_millis(100), || {
            learned(vni) == n
        })
    };

    // VNI 42: 1000 broadcast frames from new source MACs at once.
    let before = f1.counters();
    send_raw_frames(c1.ns.name(), "eth0", flood_frames(1000)).expect("sending to VNI 42");
    assert!(
        learns(42, 100),
        "VNI 42 learned {} (its cap is 100):\n{}",
        learned(42),
        f1.diagnostics()
    );
    let after = f1.counters();
    let d = |k: &str| after[k] - before[k];
    assert!(d("learn_refused_scope") >= 900, "{after:?}");
    // At most 200 a second went out as floods; the rest were dropped.
    assert!(
        d("drop_bum_rate") >= 500 && d("tx_flood_copy") <= 500,
        "BUM limit: dropped {}, flooded {}",
        d("drop_bum_rate"),
        d("tx_flood_copy")
    );
    assert_eq!(d("drop_bum_rate") + d("tx_flood_copy"), 1000, "{after:?}");

    // VNI 43 still learns (positive control), up to its port's cap.
    send_raw_frames(c3.ns.name(), "eth0", flood_frames(200)).expect("sending to VNI 43");
    assert!(
        learns(43, 50),
        "VNI 43 learned {} (its port's cap is 50):\n{}",
        learned(43),
        f1.diagnostics()
    );
    assert_eq!(learned(42), 100, "VNI 42 changed");
    // A second later the BUM budget is back.
    std::thread::sleep(Duration::from_millis(1100));
    let before = f1.counters();
    send_raw_frames(c1.ns.name(), "eth0", flood_frames(10)).expect("sending to VNI 42");
    let after = f1.counters();
    assert_eq!(
        after["tx_flood_copy"] - before["tx_flood_copy"],
        10,
        "{after:?}"
    );
}

// ------------------------------------------------------------ next hops

#[test]
fn a_remote_vteps_new_mac_is_followed() {
    let (dir, topo) = lab("nmac");
    let [h1, h2] = topo.pick_hosts(["h1", "h2"]);
    let [c1, c2] = topo.pick_containers(["c1", "c2"]);
    let (f1, f2) = start_pair(&topo, &dir);
    assert_connected(c1, C2_IP, 3, &[&f1, &f2]);
    // h2's uplink gets a new MAC; h1's kernel still knows the old one
    // (REACHABLE for up to half a minute), and frames to it are dropped
    // by h2 as another host's. Traffic from c2 shows h1 the new MAC; h1
    // has the kernel resolve h2 again rather than trust the frames.
    let new_mac = "02:57:00:00:99:02";
    h2.ns.ip(["link", "set", "eth0", "address", new_mac]);
    let mut from_c2 = c2
        .ns
        .spawn("ping", ["-n", "-c", "100", "-i", "0.05", "-W", "1", C1_IP]);
    // c1 pings 20 times a second from the change on: the first answered
    // sequence number tells when h1 followed.
    let out = c1
        .ns
        .exec("ping", ["-n", "-c", "100", "-i", "0.05", "-W", "1", C2_IP]);
    let first = out.stdout.lines().find_map(|l| {
        l.split("icmp_seq=")
            .nth(1)?
            .split_whitespace()
            .next()?
            .parse::<u32>()
            .ok()
    });
    let Some(first) = first else {
        panic!(
            "h1 still sends to h2's old MAC after 5 s: {out}\n{}\n{}",
            h1.ns.ip(["neigh", "show", "dev", "eth0"]),
            diag(&[&f1, &f2])
        );
    };
    let took = Duration::from_millis(u64::from(first.saturating_sub(1)) * 50);
    eprintln!("a VTEP whose MAC changed is reached again after about {took:?} (ping {first})");
    assert!(
        took <= Duration::from_secs(3),
        "followed only after {took:?}: {out}"
    );
    assert!(
        h1.ns
            .ip(["neigh", "show", H2_IP, "dev", "eth0"])
            .contains(new_mac),
        "h1's kernel does not know h2's new MAC: {}",
        h1.ns.ip(["neigh", "show", "dev", "eth0"])
    );
    assert_connected(c1, C2_IP, 5, &[&f1, &f2]);
    from_c2.kill();
}

// ---------------------------------------------------------- state files

#[test]
fn state_files_are_private_and_never_follow_links() {
    use std::os::unix::fs::PermissionsExt as _;
    let (dir, topo) = lab("stf");
    let h1 = topo.host("h1");
    let c1 = topo.container("c1");
    let args = vtep(H2_IP);
    let f1 = Fwd::start(&h1.ns, &args, dir.path());
    let _ = ping_result(&c1.ns, C2_IP, 1); // c1 is learned
    let json = dir
        .files()
        .into_iter()
        .find(|f| f.ends_with("-eth0.sock"))
        .map(|f| f.replace(".sock", ".json"))
        .expect("the instance's files");
    // A link planted where the temporary file goes.
    let victim = dir.write("victim", "unchanged");
    std::os::unix::fs::symlink(&victim, dir.path().join(format!("{json}.tmp"))).unwrap();
    assert_eq!(f1.stop().code(), Some(0));
    assert_eq!(
        std::fs::read_to_string(&victim).unwrap(),
        "unchanged",
        "followed the link"
    );
    let path = dir.path().join(&json);
    let mode = std::fs::metadata(&path)
        .expect("the state file")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "state file mode");
    let saved: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let entry = saved["entries"]
        .as_array()
        .and_then(|a| a.iter().find(|e| e["mac"] == c1.mac().to_lowercase()))
        .unwrap_or_else(|| panic!("c1 not saved: {saved}"));
    assert!(
        entry["last_seen_ns"].as_u64().is_some_and(|t| t > 0),
        "no true age: {entry}"
    );
    assert!(
        !dir.files()
            .iter()
            .any(|f| f.ends_with(".tmp") && f != &format!("{json}.tmp"))
    );
}
