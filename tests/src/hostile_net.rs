//! Helpers for the hostile-input tests (`tests/tests/e2e_hostile.rs`):
//! sockets opened inside a namespace (a raw AF_PACKET socket to inject
//! crafted frames, UDP listeners that count datagrams, a tiny HTTP GET),
//! crafted VXLAN frames, and interface statistics.
//!
//! A socket keeps the network namespace it was created in: each one is
//! created on a short-lived thread that has entered the namespace with
//! `setns(2)`, then used from the test's thread. Nothing here touches the
//! root namespace.

use std::{
    io::{self, Read as _, Write as _},
    net::{Ipv4Addr, SocketAddr, TcpStream, UdpSocket},
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
    time::{Duration, Instant},
};

use vxlan_common::wire::{self, ETH_HLEN, IPV4_HLEN, Outer, UDP_HLEN};

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
        let (fd, ifindex) = in_netns(ns.name(), &format!("raw socket on {dev}"), move || {
            let cdev = std::ffi::CString::new(dev_owned.clone()).expect("interface name");
            // SAFETY: valid NUL-terminated string.
            let ifindex = unsafe { libc::if_nametoindex(cdev.as_ptr()) };
            if ifindex == 0 {
                return Err(io::Error::other(format!("no interface {dev_owned}")));
            }
            // SAFETY: plain socket(2); the descriptor is owned at once.
            let s =
                unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
            if s < 0 {
                return Err(io::Error::last_os_error());
            }
            // SAFETY: the kernel just returned this new descriptor.
            Ok((unsafe { OwnedFd::from_raw_fd(s) }, ifindex as i32))
        });
        Self {
            fd,
            ifindex,
            label: format!("{}/{dev}", ns.name()),
        }
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
    sock.set_read_timeout(Some(quiet))
        .expect("set_read_timeout");
    let mut got = Vec::new();
    let mut buf = [0u8; 65536];
    loop {
        match sock.recv(&mut buf) {
            Ok(n) => got.push(buf[..n].to_vec()),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                return got;
            }
            Err(e) => panic!("UDP recv: {e}"),
        }
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
    let mut buf = [0u8; 65536];
    while got.len() < want {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        sock.set_read_timeout(Some(left)).expect("set_read_timeout");
        match sock.recv(&mut buf) {
            Ok(n) => got.push(buf[..n].to_vec()),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                break;
            }
            Err(e) => panic!("UDP recv: {e}"),
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

/// Parses `aa:bb:cc:dd:ee:ff`.
pub fn parse_mac(s: &str) -> [u8; 6] {
    let v: Vec<u8> = s
        .split(':')
        .map(|p| u8::from_str_radix(p, 16).unwrap_or_else(|_| panic!("bad MAC {s}")))
        .collect();
    v.try_into().unwrap_or_else(|_| panic!("bad MAC {s}"))
}

/// Formats a MAC as `aa:bb:cc:dd:ee:ff`.
pub fn format_mac(m: &[u8; 6]) -> String {
    m.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// Internet checksum of a header of any even length (its checksum field
/// must be zero), network byte order.
pub fn header_checksum(hdr: &[u8]) -> [u8; 2] {
    let mut sum: u32 = hdr
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
        .sum();
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    (!(sum as u16)).to_be_bytes()
}

/// An Ethernet frame carrying an IPv4/UDP datagram (UDP checksum 0).
pub fn udp_frame(
    dst_mac: [u8; 6],
    src_mac: [u8; 6],
    src: Ipv4Addr,
    dst: Ipv4Addr,
    sport: u16,
    dport: u16,
    payload: &[u8],
) -> Vec<u8> {
    let mut f = Vec::with_capacity(ETH_HLEN + IPV4_HLEN + UDP_HLEN + payload.len());
    f.extend_from_slice(&dst_mac);
    f.extend_from_slice(&src_mac);
    f.extend_from_slice(&wire::ETH_P_IP.to_be_bytes());
    let tot = (IPV4_HLEN + UDP_HLEN + payload.len()) as u16;
    let mut ip = [0u8; IPV4_HLEN];
    ip[0] = 0x45;
    ip[2..4].copy_from_slice(&tot.to_be_bytes());
    ip[4..6].copy_from_slice(&0x1234u16.to_be_bytes());
    ip[8] = 64;
    ip[9] = wire::IPPROTO_UDP;
    ip[12..16].copy_from_slice(&src.octets());
    ip[16..20].copy_from_slice(&dst.octets());
    let c = wire::ipv4_checksum(&ip);
    ip[10..12].copy_from_slice(&c);
    f.extend_from_slice(&ip);
    f.extend_from_slice(&sport.to_be_bytes());
    f.extend_from_slice(&dport.to_be_bytes());
    f.extend_from_slice(&((UDP_HLEN + payload.len()) as u16).to_be_bytes());
    f.extend_from_slice(&[0, 0]);
    f.extend_from_slice(payload);
    f
}

/// A VXLAN frame: `build_outer`'s 50 bytes of headers (as a VTEP sends
/// them), then `inner`.
pub fn vxlan_frame(outer: &Outer, inner: &[u8]) -> Vec<u8> {
    let mut f = wire::build_outer(outer, inner.len() as u16).to_vec();
    f.extend_from_slice(inner);
    f
}

/// Recomputes the outer IPv4 header checksum of `frame` (header at offset
/// 14, its length from the IHL field, at least 20 bytes).
pub fn fix_ip_checksum(frame: &mut [u8]) {
    let ihl = usize::from(frame[ETH_HLEN] & 0x0f).max(5) * 4;
    frame[ETH_HLEN + 10] = 0;
    frame[ETH_HLEN + 11] = 0;
    let c = header_checksum(&frame[ETH_HLEN..ETH_HLEN + ihl]);
    frame[ETH_HLEN + 10..ETH_HLEN + 12].copy_from_slice(&c);
}

/// Sets the outer IPv4 total length and UDP length of a VXLAN frame (IHL
/// 5) to match the frame's length, and fixes the checksum.
pub fn fix_lengths(frame: &mut [u8]) {
    let tot = (frame.len() - ETH_HLEN) as u16;
    frame[ETH_HLEN + 2..ETH_HLEN + 4].copy_from_slice(&tot.to_be_bytes());
    let udp = tot - IPV4_HLEN as u16;
    frame[wire::OFF_UDP + 4..wire::OFF_UDP + 6].copy_from_slice(&udp.to_be_bytes());
    fix_ip_checksum(frame);
}
