//! systemd's readiness protocol (`sd_notify`): `READY=1` once everything
//! is attached, `RELOADING=1` (with `MONOTONIC_USEC`) then `READY=1` around
//! a reload, `STOPPING=1` at stop. A no-op without `NOTIFY_SOCKET`.

use std::os::unix::net::UnixDatagram;

use log::warn;

fn send(state: &str) {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    let sent = UnixDatagram::unbound().and_then(|s| s.send_to(state.as_bytes(), &path));
    if let Err(e) = sent {
        warn!("sd_notify: {e}");
    }
}

pub fn ready() {
    send("READY=1\n");
}

pub fn reloading() {
    send(&format!(
        "RELOADING=1\nMONOTONIC_USEC={}\n",
        crate::fdb::monotonic_ns() / 1000
    ));
}

pub fn stopping() {
    send("STOPPING=1\n");
}
