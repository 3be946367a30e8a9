//! Packet captures: `tcpdump` in a namespace of the lab, for the tests
//! ("was it sent, and how often") and the bench (ARP requests on the
//! underlay).

use std::{
    os::fd::{AsFd as _, AsRawFd as _, BorrowedFd, FromRawFd as _, OwnedFd},
    time::Duration,
};

use anyhow::{Result, bail};

use crate::{netns::NetNs, process::Process, util::wait_until};

/// `tcpdump -l -n [-Q in] -i <iface> <filter>` running in a namespace;
/// stopped when dropped.
pub struct Capture {
    proc: Process,
    what: String,
}

impl Capture {
    /// Captures the packets `iface` receives (`-Q in`) that match `filter`;
    /// waits until tcpdump listens (its filter is installed by then).
    /// Panics when it does not start.
    pub fn start(ns: &NetNs, iface: &str, filter: &str) -> Self {
        Self::try_start(ns, iface, filter, true).unwrap_or_else(|e| panic!("{e:#}"))
    }

    /// [`Capture::start`], failing instead of panicking; `inbound_only`
    /// false captures both directions.
    pub fn try_start(ns: &NetNs, iface: &str, filter: &str, inbound_only: bool) -> Result<Self> {
        let mut c = ns.command("tcpdump");
        c.args(["-l", "-n"]);
        if inbound_only {
            c.args(["-Q", "in"]);
        }
        c.args(["-i", iface]).args(filter.split_whitespace());
        let what = format!("tcpdump -i {iface} '{filter}' in {}", ns.name());
        let mut proc = Process::try_spawn(c, &what)?;
        let listening = wait_until(Duration::from_secs(10), Duration::from_millis(20), || {
            proc.stderr().contains("listening on") || !proc.is_running()
        });
        if !(listening && proc.is_running()) {
            bail!("{what} did not start: {}", proc.stderr());
        }
        // The socket is bound and filtered when tcpdump says it listens;
        // a moment more for good measure.
        std::thread::sleep(Duration::from_millis(100));
        Ok(Self { proc, what })
    }

    /// Stops tcpdump and returns the lines of the packets it saw. Panics
    /// unless it stops on SIGINT.
    pub fn finish(self) -> Vec<String> {
        self.try_finish().unwrap_or_else(|e| panic!("{e:#}"))
    }

    /// [`Capture::finish`], failing instead of panicking.
    pub fn try_finish(mut self) -> Result<Vec<String>> {
        let out = self.proc.stop();
        if out.timed_out {
            bail!("{} did not stop on SIGINT: {out}", self.what);
        }
        Ok(out
            .stdout
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(str::to_owned)
            .collect())
    }
}

/// `tcpdump -w` in a namespace: every frame `iface` sends and receives,
/// whole (`-s 0`), written to a pcap file the test parses itself
/// ([`PcapCapture::finish`]). The file is removed when done.
pub struct PcapCapture {
    proc: Process,
    what: String,
    path: std::path::PathBuf,
}

impl PcapCapture {
    /// Starts `tcpdump -i <iface> -s 0 -w <file> <filter>` (both
    /// directions) and waits until it listens.
    pub fn start(ns: &NetNs, iface: &str, filter: &str) -> Self {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let path = std::env::temp_dir().join(format!(
            "vxt-{}-{iface}-{}-{nanos}.pcap",
            ns.name(),
            std::process::id()
        ));
        let mut c = ns.command("tcpdump");
        c.args(["-n", "-U", "-s", "0", "-i", iface, "-w"])
            .arg(&path)
            .args(filter.split_whitespace());
        let what = format!(
            "tcpdump -i {iface} -w {} '{filter}' in {}",
            path.display(),
            ns.name()
        );
        let mut proc = Process::spawn(c, &what);
        let listening = wait_until(Duration::from_secs(10), Duration::from_millis(20), || {
            proc.stderr().contains("listening on") || !proc.is_running()
        });
        assert!(
            listening && proc.is_running(),
            "{what} did not start: {}",
            proc.stderr()
        );
        std::thread::sleep(Duration::from_millis(100));
        Self { proc, what, path }
    }

    /// Stops tcpdump and returns the frames it captured (Ethernet, whole),
    /// and what tcpdump said on stderr (its drop count).
    pub fn finish(mut self) -> (Vec<Vec<u8>>, String) {
        let out = self.proc.stop();
        assert!(
            !out.timed_out,
            "{} did not stop on SIGINT: {out}",
            self.what
        );
        let data = std::fs::read(&self.path)
            .unwrap_or_else(|e| panic!("{}: reading {}: {e}", self.what, self.path.display()));
        let frames = parse_pcap(&data).unwrap_or_else(|e| panic!("{}: {e}", self.what));
        (frames, out.stderr)
    }
}

impl Drop for PcapCapture {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// The frames of a classic pcap file (either byte order, micro- or
/// nanosecond timestamps) of link type Ethernet; refuses frames that were
/// cut (captured length below the original length).
pub fn parse_pcap(data: &[u8]) -> std::result::Result<Vec<Vec<u8>>, String> {
    let hdr = data.get(..24).ok_or("pcap file shorter than its header")?;
    let magic = [hdr[0], hdr[1], hdr[2], hdr[3]];
    let le = match magic {
        [0xd4, 0xc3, 0xb2, 0xa1] | [0x4d, 0x3c, 0xb2, 0xa1] => true,
        [0xa1, 0xb2, 0xc3, 0xd4] | [0xa1, 0xb2, 0x3c, 0x4d] => false,
        _ => return Err(format!("not a pcap file (magic {magic:02x?})")),
    };
    let u32_at = |b: &[u8], o: usize| {
        let w = [b[o], b[o + 1], b[o + 2], b[o + 3]];
        if le {
            u32::from_le_bytes(w)
        } else {
            u32::from_be_bytes(w)
        }
    };
    let linktype = u32_at(hdr, 20);
    if linktype != 1 {
        return Err(format!("link type {linktype}, not Ethernet (1)"));
    }
    let mut frames = Vec::new();
    let mut off = 24;
    while off < data.len() {
        let rec = data
            .get(off..off + 16)
            .ok_or("pcap record header cut short")?;
        let (incl, orig) = (u32_at(rec, 8) as usize, u32_at(rec, 12) as usize);
        let body = data
            .get(off + 16..off + 16 + incl)
            .ok_or("pcap record cut short")?;
        if incl != orig {
            return Err(format!(
                "frame {} captured {incl} of {orig} bytes",
                frames.len()
            ));
        }
        frames.push(body.to_vec());
        off += 16 + incl;
    }
    Ok(frames)
}

/// A plain AF_PACKET socket (`ETH_P_ALL`, no filter, no ring, non-blocking)
/// in the calling thread's namespace, with an 8 MB receive buffer (a full
/// buffer would stop the clones): bound to interface `ifindex`, or on every
/// interface with `None`.
pub fn packet_socket(ifindex: Option<u32>) -> std::io::Result<OwnedFd> {
    let proto = (libc::ETH_P_ALL as u16).to_be();
    // SAFETY: plain socket(2) call.
    let fd = unsafe {
        libc::socket(
            libc::AF_PACKET,
            libc::SOCK_RAW | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            i32::from(proto),
        )
    };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: a fresh descriptor we own.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let size: libc::c_int = 8 << 20;
    // SAFETY: valid option pointer and length.
    unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUFFORCE,
            (&raw const size).cast(),
            size_of::<libc::c_int>() as u32,
        );
    }
    if let Some(ifindex) = ifindex {
        // SAFETY: a zeroed sockaddr_ll is valid; filled in below.
        let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        sll.sll_family = libc::AF_PACKET as u16;
        sll.sll_protocol = proto;
        sll.sll_ifindex = ifindex as i32;
        // SAFETY: a valid address of the given length.
        let rc = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&raw const sll).cast(),
                size_of::<libc::sockaddr_ll>() as u32,
            )
        };
        if rc != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(fd)
}

/// Reads every frame waiting on packet socket `fd` (without blocking) into
/// `buf` and calls `f(packet type, ifindex, frame)` for each. Panics, naming
/// `what`, on any error but "nothing left" (EAGAIN).
pub fn drain_packets(
    fd: BorrowedFd<'_>,
    buf: &mut [u8],
    what: &str,
    mut f: impl FnMut(u8, u32, &[u8]),
) {
    loop {
        // SAFETY: a zeroed sockaddr_ll is valid.
        let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        let mut len = size_of::<libc::sockaddr_ll>() as libc::socklen_t;
        // SAFETY: valid buffer and address pointers for the call.
        let r = unsafe {
            libc::recvfrom(
                fd.as_raw_fd(),
                buf.as_mut_ptr().cast(),
                buf.len(),
                libc::MSG_DONTWAIT,
                (&raw mut sll).cast(),
                &mut len,
            )
        };
        if r < 0 {
            let e = std::io::Error::last_os_error();
            assert_eq!(e.raw_os_error(), Some(libc::EAGAIN), "{what}: {e}");
            return;
        }
        f(sll.sll_pkttype, sll.sll_ifindex as u32, &buf[..r as usize]);
    }
}

/// A plain AF_PACKET socket ([`packet_socket`]) on one interface of a
/// namespace, as scapy or a simple sniffer opens one: the kernel clones
/// every frame the interface receives for it, before TC ingress runs
/// (tcpdump's `TPACKET` ring copies instead and clones nothing). Closed
/// when dropped.
pub struct PacketTap {
    fd: OwnedFd,
    what: String,
}

impl PacketTap {
    /// Opens the socket on `iface` of `ns`. Panics on failure.
    pub fn open(ns: &NetNs, iface: &str) -> Self {
        let dev = iface.to_owned();
        let what = format!("packet socket on {iface} in {}", ns.name());
        let opened = crate::netns::in_netns(ns.name(), move || -> std::io::Result<OwnedFd> {
            let cdev = std::ffi::CString::new(dev.clone()).map_err(std::io::Error::other)?;
            // SAFETY: valid NUL-terminated string.
            let ifindex = unsafe { libc::if_nametoindex(cdev.as_ptr()) };
            if ifindex == 0 {
                return Err(std::io::Error::other(format!("no interface {dev}")));
            }
            packet_socket(Some(ifindex))
        });
        let fd = match opened {
            Ok(Ok(fd)) => fd,
            Ok(Err(e)) => panic!("{what}: {e}"),
            Err(e) => panic!("{what}: {e:#}"),
        };
        Self { fd, what }
    }

    /// Frames received since the last call (drained).
    pub fn received(&self) -> usize {
        let mut buf = vec![0u8; 65536];
        let mut n = 0;
        drain_packets(self.fd.as_fd(), &mut buf, &self.what, |kind, _, _| {
            if kind != libc::PACKET_OUTGOING {
                n += 1;
            }
        });
        n
    }
}

#[cfg(test)]
mod tests {
    use super::parse_pcap;

    #[test]
    fn pcap_records_both_byte_orders_and_cut_frames() {
        let file = |le: bool, frames: &[(&[u8], u32)]| {
            let w = |v: u32| if le { v.to_le_bytes() } else { v.to_be_bytes() };
            let mut d = Vec::new();
            d.extend_from_slice(&w(0xa1b2_c3d4));
            d.extend_from_slice(&[0; 4]);
            if le {
                d[4..8].copy_from_slice(&[2, 0, 4, 0]);
            }
            d.extend_from_slice(&[0; 8]);
            d.extend_from_slice(&w(262_144));
            d.extend_from_slice(&w(1));
            for (f, orig) in frames {
                d.extend_from_slice(&w(1));
                d.extend_from_slice(&w(2));
                d.extend_from_slice(&w(f.len() as u32));
                d.extend_from_slice(&w(*orig));
                d.extend_from_slice(f);
            }
            d
        };
        for le in [true, false] {
            let got = parse_pcap(&file(le, &[(&[1, 2, 3], 3), (&[4; 70], 70)])).unwrap();
            assert_eq!(got, vec![vec![1, 2, 3], vec![4; 70]]);
            assert!(
                parse_pcap(&file(le, &[(&[1, 2, 3], 9)])).is_err(),
                "a cut frame"
            );
        }
        assert!(parse_pcap(b"not a pcap file at all..").is_err());
    }
}
