//! Traffic the end-to-end tests make beyond ping: pinned neighbours (no
//! ARP the test did not ask for), an iperf3 run, a learning flood.

use std::time::Duration;

use crate::{
    Container, Output,
    fdb_harness::{experimental_frame, random_unicast_macs},
    run_with_timeout, wait_until,
};

/// Gives every container of `cs` a permanent neighbour entry for every
/// other one, so that no ARP (and no neighbour probe some seconds after a
/// ping) sends frames the test did not ask for.
pub fn pin_neighbours(cs: &[&Container]) {
    for a in cs {
        for b in cs {
            if a.name != b.name {
                let (ip, mac) = (b.ip.to_string(), b.mac());
                #[rustfmt::skip]
                a.ns.ip(["neigh", "replace", &ip, "lladdr", &mac, "nud", "permanent", "dev", "eth0"]);
            }
        }
    }
}

/// Runs `iperf3 -J` for 3 s from `client` to `server` (`reverse`: the
/// server sends): starts the server (one test, bound to its address),
/// waits until it listens, runs the client (at most 30 s) and returns the
/// client's and the server's output.
pub fn iperf3(client: &Container, server: &Container, reverse: bool) -> (Output, Output) {
    let sip = server.ip.to_string();
    let mut srv = server.ns.spawn("iperf3", ["-s", "-1", "-B", &sip]);
    let listening = wait_until(Duration::from_secs(10), Duration::from_millis(50), || {
        !server
            .ns
            .exec("ss", ["-Htln", "sport", "=", ":5201"])
            .stdout
            .trim()
            .is_empty()
    });
    assert!(
        listening,
        "iperf3 server in {} did not listen: {}",
        server.name,
        srv.stderr()
    );
    let mut cmd = client.ns.command("iperf3");
    cmd.args(["-c", &sip, "-t", "3", "-J", "--connect-timeout", "5000"]);
    if reverse {
        cmd.arg("-R");
    }
    let out = run_with_timeout(cmd, Duration::from_secs(30));
    let srv_out = srv.wait(Duration::from_secs(5));
    (out, srv_out)
}

/// `n` broadcast frames (experimental EtherType) from `n` new random
/// unicast source MACs: a learning flood.
pub fn flood_frames(n: usize) -> Vec<Vec<u8>> {
    random_unicast_macs(n)
        .iter()
        .map(|src| experimental_frame([0xff; 6], *src))
        .collect()
}
