//! Service manager notifications (`sd_notify(3)`): `READY=1` once the
//! datapath is attached, `RELOADING=1` when SIGHUP starts a re-read of the
//! config (then `READY=1` again when it is done), `STOPPING=1` at the start of
//! a clean stop.
//!
//! The protocol: one datagram per notification, `KEY=VALUE` assignments
//! each ended by a newline, sent to the unix datagram socket named by
//! `$NOTIFY_SOCKET` (a path, or `@name` for an abstract socket). Without
//! `$NOTIFY_SOCKET` (not started by systemd with `Type=notify`) every function
//! here does nothing. A notification that cannot be sent is logged, never an
//! error: the datapath works without it.

use std::{
    ffi::OsStr,
    os::{
        linux::net::SocketAddrExt as _,
        unix::{
            ffi::OsStrExt as _,
            net::{SocketAddr, UnixDatagram},
        },
    },
    time::Duration,
};

use anyhow::{Context as _, Result, bail};

/// How long a send may block when the manager's queue is full.
const SEND_TIMEOUT: Duration = Duration::from_secs(1);

/// `READY=1`: startup (or a reload) is complete.
pub fn ready() {
    notify("READY=1\n");
}

/// `RELOADING=1` with `MONOTONIC_USEC=<now>` in the same datagram (as
/// systemd ≥ 253 requires for `Type=notify-reload`; older ones ignore the
/// timestamp). Send [`ready`] when the reload is done.
pub fn reloading() {
    notify(&reloading_message(monotonic_usec()));
}

/// `STOPPING=1`: a clean stop has begun.
pub fn stopping() {
    notify("STOPPING=1\n");
}

/// `STATUS=<text>`: a one-line status shown by `systemctl status`
/// (line breaks become spaces).
pub fn status(text: &str) {
    notify(&status_message(text));
}

/// Sends `state` to `$NOTIFY_SOCKET`, if set; logs a failure.
fn notify(state: &str) {
    let socket = std::env::var_os("NOTIFY_SOCKET");
    if let Err(e) = notify_to(socket.as_deref(), state) {
        log::warn!("cannot notify the service manager ({state:?}): {e:#}");
    }
}

/// Sends `state` as one datagram to `socket` (`$NOTIFY_SOCKET`'s value).
/// Returns whether something was sent: `false` when `socket` is absent or
/// empty.
pub fn notify_to(socket: Option<&OsStr>, state: &str) -> Result<bool> {
    let Some(socket) = socket.filter(|s| !s.is_empty()) else {
        return Ok(false);
    };
    let addr = socket_addr(socket)?;
    let sock = UnixDatagram::unbound().context("creating a unix datagram socket")?;
    sock.set_write_timeout(Some(SEND_TIMEOUT))
        .context("setting the send timeout")?;
    let sent = sock
        .send_to_addr(state.as_bytes(), &addr)
        .with_context(|| format!("sending to NOTIFY_SOCKET={}", socket.display()))?;
    if sent != state.len() {
        bail!(
            "sent {sent} of {} bytes to NOTIFY_SOCKET={}",
            state.len(),
            socket.display()
        );
    }
    Ok(true)
}

/// `/path` or `@abstract-name`.
fn socket_addr(socket: &OsStr) -> Result<SocketAddr> {
    let bytes = socket.as_bytes();
    match bytes.first() {
        Some(b'/') => SocketAddr::from_pathname(socket),
        Some(b'@') => SocketAddr::from_abstract_name(&bytes[1..]),
        _ => bail!(
            "NOTIFY_SOCKET={} is neither an absolute path nor an abstract socket (@name)",
            socket.display()
        ),
    }
    .with_context(|| format!("NOTIFY_SOCKET={} is not a usable address", socket.display()))
}

fn reloading_message(monotonic_usec: u64) -> String {
    format!("RELOADING=1\nMONOTONIC_USEC={monotonic_usec}\n")
}

fn status_message(text: &str) -> String {
    let line: String = text
        .chars()
        .map(|c| if c == '\n' || c == '\r' { ' ' } else { c })
        .collect();
    format!("STATUS={line}\n")
}

/// CLOCK_MONOTONIC in microseconds (the clock systemd compares with).
fn monotonic_usec() -> u64 {
    crate::fdb::monotonic_ns() / 1_000
}

#[cfg(test)]
mod tests {
    use std::{
        ffi::OsString,
        path::PathBuf,
        sync::atomic::{AtomicU32, Ordering},
    };

    use super::*;

    /// A datagram socket standing in for systemd's, bound in a fresh
    /// directory (or in the abstract namespace), removed on drop.
    struct Manager {
        sock: UnixDatagram,
        dir: Option<PathBuf>,
        notify_socket: OsString,
    }

    fn unique(what: &str) -> String {
        static N: AtomicU32 = AtomicU32::new(0);
        format!(
            "vxlan-fwd-notify-{what}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        )
    }

    impl Manager {
        fn at_path() -> Self {
            let dir = std::env::temp_dir().join(unique("dir"));
            std::fs::create_dir_all(&dir).expect("creating the test directory");
            let path = dir.join("notify.sock");
            let sock = UnixDatagram::bind(&path).expect("binding the test socket");
            Self::new(sock, Some(dir), path.into_os_string())
        }

        fn abstract_name() -> Self {
            let name = unique("abstract");
            let addr = SocketAddr::from_abstract_name(name.as_bytes()).expect("abstract name");
            let sock = UnixDatagram::bind_addr(&addr).expect("binding the abstract test socket");
            Self::new(sock, None, format!("@{name}").into())
        }

        fn new(sock: UnixDatagram, dir: Option<PathBuf>, notify_socket: OsString) -> Self {
            sock.set_read_timeout(Some(Duration::from_secs(5)))
                .expect("setting a read timeout");
            Self {
                sock,
                dir,
                notify_socket,
            }
        }

        fn send(&self, state: &str) {
            let sent = notify_to(Some(&self.notify_socket), state).expect("notify_to");
            assert!(sent, "notify_to sent nothing");
        }

        fn recv(&self) -> String {
            let mut buf = [0u8; 4096];
            let n = self.sock.recv(&mut buf).expect("receiving a datagram");
            String::from_utf8(buf[..n].to_vec()).expect("datagram is UTF-8")
        }

        /// Nothing more is queued.
        fn assert_empty(&self) {
            self.sock.set_nonblocking(true).expect("set_nonblocking");
            let mut buf = [0u8; 16];
            let r = self.sock.recv(&mut buf);
            assert!(
                matches!(&r, Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
                "unexpected extra datagram: {r:?}"
            );
        }
    }

    impl Drop for Manager {
        fn drop(&mut self) {
            if let Some(dir) = &self.dir {
                let _ = std::fs::remove_dir_all(dir);
            }
        }
    }

    #[test]
    fn each_notification_is_one_exact_datagram() {
        let m = Manager::at_path();
        m.send("READY=1\n");
        m.send("STOPPING=1\n");
        m.send(&status_message("attached to eth0\n2 VNIs"));
        m.send(&reloading_message(123_456_789));
        assert_eq!(m.recv(), "READY=1\n");
        assert_eq!(m.recv(), "STOPPING=1\n");
        assert_eq!(m.recv(), "STATUS=attached to eth0 2 VNIs\n");
        assert_eq!(m.recv(), "RELOADING=1\nMONOTONIC_USEC=123456789\n");
        m.assert_empty();
    }

    #[test]
    fn abstract_socket() {
        let m = Manager::abstract_name();
        m.send("READY=1\n");
        assert_eq!(m.recv(), "READY=1\n");
        m.assert_empty();
    }

    #[test]
    fn reloading_carries_the_monotonic_clock() {
        let m = Manager::at_path();
        let before = monotonic_usec();
        m.send(&reloading_message(monotonic_usec()));
        let after = monotonic_usec();
        let got = m.recv();
        let usec: u64 = got
            .strip_prefix("RELOADING=1\nMONOTONIC_USEC=")
            .and_then(|rest| rest.strip_suffix('\n'))
            .unwrap_or_else(|| panic!("unexpected datagram {got:?}"))
            .parse()
            .expect("MONOTONIC_USEC is a number");
        assert!(
            (before..=after).contains(&usec),
            "{usec} not in {before}..={after}"
        );
        // Seconds since boot, in microseconds: not nanoseconds, not zero.
        let uptime_s: f64 = std::fs::read_to_string("/proc/uptime")
            .expect("/proc/uptime")
            .split_whitespace()
            .next()
            .and_then(|s| s.parse().ok())
            .expect("uptime");
        let diff = (usec as f64 / 1e6 - uptime_s).abs();
        assert!(diff < 5.0, "MONOTONIC_USEC {usec} vs uptime {uptime_s} s");
    }

    #[test]
    fn without_notify_socket_nothing_is_sent() {
        assert!(!notify_to(None, "READY=1").expect("no socket is no error"));
        assert!(!notify_to(Some(OsStr::new("")), "READY=1").expect("empty is no error"));
    }

    #[test]
    fn bad_or_absent_sockets_are_errors_not_panics() {
        let e = notify_to(Some(OsStr::new("relative/path")), "READY=1").unwrap_err();
        assert!(
            format!("{e:#}").contains("neither an absolute path"),
            "{e:#}"
        );
        let dir = std::env::temp_dir().join(unique("gone"));
        let missing = dir.join("notify.sock");
        let e = notify_to(Some(missing.as_os_str()), "READY=1").unwrap_err();
        assert!(
            format!("{e:#}").contains("sending to NOTIFY_SOCKET="),
            "{e:#}"
        );
    }
}
