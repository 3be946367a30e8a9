//! Helpers for the hostile-input tests (`tests/tests/e2e_hostile.rs`):
//! sockets opened inside a namespace (a raw AF_PACKET socket to inject
//! crafted frames, UDP listeners that count datagrams, a tiny HTTP GET),
//! and interface statistics; the crafted frames themselves are
//! [`crate::frames`]' (re-exported here).
//!
//! A socket keeps the network namespace it was created in: each one is
//! created on a short-lived thread that has entered the namespace with
//! `setns(2)`, then used from the test's thread. Nothing here touches the
//! root namespace.

use std::{
    io::{self, Read as _, Write as _},
    net::{SocketAddr, TcpStream, UdpSocket},
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
    time::{Duration, Instant},
};

pub use crate::frames::{
    fix_ip_checksum, fix_lengths, format_mac, header_checksum, parse_mac, udp_frame, vxlan_frame,
};
use crate::netns::NetNs;

/// Runs `f` on a new thread that has entered network namespace `ns` and
/// returns its result. Panics on failure (with `what` in the message).
pub fn in_netns<T: Send + 'static>(
    ns: &str,
    what: &str,
    f: impl FnOnce() -> io::Result<T> + Send + 'static,
) -> T {
    match crate::netns::in_netns(ns, f) {
        Ok(Ok(v)) => v,
        Ok(Err(e)) => panic!("{what} in namespace {ns}: {e}"),
        Err(e) => panic!("{what} in namespace {ns}: {e:#}"),
    }
}

/// A raw AF_PACKET socket that sends Ethernet frames out of one interface
/// of a namespace (protocol 0: it receives nothing).
pub struct RawSender {
    fd: OwnedFd,
    ifindex: i32,
    label: String,
}

impl RawSender {
    /// Opens the socket in `ns`, for interface `dev` of that namespace.
    pub fn open(ns: &NetNs, dev: &str) -> Self {
        let dev_owned = dev.to_owned();
        let mut s = in_netns(ns.name(), &format!("raw socket on {dev}"), move || {
            Self::here(&dev_owned)
        });
        s.label = format!("{}/{dev}", ns.name());
        s
    }

    /// Opens the socket in the calling thread's namespace, for its
    /// interface `dev`.
    pub fn here(dev: &str) -> io::Result<Self> {
        let cdev = std::ffi::CString::new(dev).map_err(io::Error::other)?;
        // SAFETY: valid NUL-terminated string.
        let ifindex = unsafe { libc::if_nametoindex(cdev.as_ptr()) };
        if ifindex == 0 {
            return Err(io::Error::other(format!("no interface {dev}")));
        }
        // SAFETY: plain socket(2); the descriptor is owned at once.
        let s = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
        if s < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Self {
            // SAFETY: the kernel just returned this new descriptor.
            fd: unsafe { OwnedFd::from_raw_fd(s) },
            ifindex: ifindex as i32,
            label: dev.to_owned(),
        })
    }

    /// Sends one frame (from its Ethernet header on); panics unless the
    /// whole frame was accepted.
    pub fn send(&self, frame: &[u8]) {
        // SAFETY: zeroed sockaddr_ll is valid; filled below.
        let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        sll.sll_family = libc::AF_PACKET as u16;
        sll.sll_protocol = u16::from_be_bytes([frame[12], frame[13]]).to_be();
        sll.sll_ifindex = self.ifindex;
        sll.sll_halen = 6;
        sll.sll_addr[..6].copy_from_slice(&frame[..6]);
        // SAFETY: sendto(2) with a valid buffer and address.
        let n = unsafe {
            libc::sendto(
                self.fd.as_raw_fd(),
                frame.as_ptr().cast(),
                frame.len(),
                0,
                (&raw const sll).cast(),
                size_of::<libc::sockaddr_ll>() as u32,
            )
        };
        if n < 0 {
            panic!(
                "sending a {}-byte frame on {}: {}",
                frame.len(),
                self.label,
                io::Error::last_os_error()
            );
        }
        assert_eq!(n as usize, frame.len(), "short send on {}", self.label);
    }
}

/// A UDP socket bound to `0.0.0.0:port` inside namespace `ns`.
pub fn udp_listener(ns: &NetNs, port: u16) -> UdpSocket {
    in_netns(
        ns.name(),
        &format!("UDP listener on port {port}"),
        move || UdpSocket::bind(("0.0.0.0", port)),
    )
}

/// Every datagram that arrives on `sock` until none has come for `quiet`.
pub fn drain_udp(sock: &UdpSocket, quiet: Duration) -> Vec<Vec<u8>> {
    let mut got = Vec::new();
    while let Some(d) = recv_within(sock, quiet) {
        got.push(d);
    }
    got
}

/// One datagram from `sock` if one comes within `timeout`.
fn recv_within(sock: &UdpSocket, timeout: Duration) -> Option<Vec<u8>> {
    sock.set_read_timeout(Some(timeout))
        .expect("set_read_timeout");
    let mut buf = [0u8; 65536];
    match sock.recv(&mut buf) {
        Ok(n) => Some(buf[..n].to_vec()),
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
            ) =>
        {
            None
        }
        Err(e) => panic!("UDP recv: {e}"),
    }
}

/// Waits until `sock` has received `want` datagrams (or `timeout` passed),
/// then until none has come for `quiet`; returns them all.
pub fn collect_udp(
    sock: &UdpSocket,
    want: usize,
    timeout: Duration,
    quiet: Duration,
) -> Vec<Vec<u8>> {
    let deadline = Instant::now() + timeout;
    let mut got = Vec::new();
    while got.len() < want {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        match recv_within(sock, left) {
            Some(d) => got.push(d),
            None => break,
        }
    }
    got.extend(drain_udp(sock, quiet));
    got
}

/// `GET path` over HTTP/1.1 to `addr` from inside namespace `ns`: status
/// code and body. Panics when the connection or the answer fails.
pub fn http_get(ns: &NetNs, addr: SocketAddr, path: &str) -> (u16, String) {
    let path = path.to_owned();
    let raw = in_netns(
        ns.name(),
        &format!("HTTP GET http://{addr}{path}"),
        move || {
            let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
            s.set_read_timeout(Some(Duration::from_secs(10)))?;
            write!(
                s,
                "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
            )?;
            let mut v = Vec::new();
            s.read_to_end(&mut v)?;
            Ok(v)
        },
    );
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("HTTP answer without header end: {text:?}"));
    let status = head
        .lines()
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("HTTP answer without a status line: {text:?}"));
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(body)
    } else {
        body.to_owned()
    };
    (status, body)
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        s = rest[n..].trim_start_matches("\r\n");
    }
    out
}

/// Received packets of `dev` in `ns` (`ip -s link`'s rx packets).
pub fn rx_packets(ns: &NetNs, dev: &str) -> u64 {
    let out = ns.ip(["-j", "-s", "link", "show", "dev", dev]);
    let v: serde_json::Value = serde_json::from_str(&out)
        .unwrap_or_else(|e| panic!("ip -j -s link show {dev} in {}: {e}: {out}", ns.name()));
    v[0]["stats64"]["rx"]["packets"]
        .as_u64()
        .unwrap_or_else(|| panic!("no rx packets for {dev} in {}: {v}", ns.name()))
}
