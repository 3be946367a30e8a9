//! `xtask bench-gen` (hidden): a UDP small-packet generator for figure 1;
//! `xtask bench-sink` (hidden): the receiving socket in the far container.
//!
//! Runs inside the sending container's network namespace (the bench starts
//! it with `ip netns exec <c1> <this executable> bench-gen ...`). Each thread
//! owns several connected UDP sockets (different source ports, so different
//! flows and outer UDP source ports) and sends batches of `--batch` datagrams
//! with sendmmsg(2), round-robin over its sockets, until `--seconds` have
//! passed. It prints one JSON line: `{"sent":N,"elapsed_s":T,"errors":E}`.
//!
//! `sent` is what the kernel accepted. A datagram dropped further down
//! (a full backlog of the veth's peer, say) is still counted as sent: the
//! bench reads the receiver's counters for what arrived.

use std::{
    net::{Ipv4Addr, SocketAddrV4, UdpSocket},
    os::fd::AsRawFd as _,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};
use clap::Args;

#[derive(Debug, Args)]
pub struct GenArgs {
    /// Destination IPv4 address.
    #[arg(long)]
    pub dst: Ipv4Addr,
    /// Destination UDP port (9, discard; the bench keeps a `bench-sink`
    /// socket bound there that is never read).
    #[arg(long, default_value_t = 9)]
    pub port: u16,
    /// Sending threads.
    #[arg(long, default_value_t = 2)]
    pub threads: usize,
    /// Sockets (flows) per thread.
    #[arg(long, default_value_t = 4)]
    pub sockets: usize,
    /// How long to send.
    #[arg(long)]
    pub seconds: f64,
    /// UDP payload bytes (18: a 60-byte Ethernet frame, 64 with the FCS).
    #[arg(long, default_value_t = 18)]
    pub payload: usize,
    /// Datagrams per sendmmsg call.
    #[arg(long, default_value_t = 64)]
    pub batch: usize,
}

struct ThreadResult {
    sent: u64,
    errors: u64,
}

pub fn main(args: &GenArgs) -> Result<u8> {
    if args.threads == 0 || args.sockets == 0 || args.batch == 0 {
        bail!("--threads, --sockets and --batch must be at least 1");
    }
    if !(args.seconds > 0.0 && args.seconds < 3600.0) {
        bail!("--seconds must be in (0, 3600)");
    }
    let dst = SocketAddrV4::new(args.dst, args.port);
    let duration = Duration::from_secs_f64(args.seconds);
    let stop = Arc::new(AtomicBool::new(false));
    // All sockets are made before any thread starts sending: an error (no
    // route...) shows up at once, with nothing sent.
    let mut per_thread = Vec::new();
    for _ in 0..args.threads {
        let mut socks = Vec::new();
        for _ in 0..args.sockets {
            let s = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)).context("UDP socket")?;
            s.connect(dst)
                .with_context(|| format!("connecting a UDP socket to {dst}"))?;
            socks.push(s);
        }
        per_thread.push(socks);
    }
    let start = Instant::now();
    let deadline = start + duration;
    let handles: Vec<_> = per_thread
        .into_iter()
        .map(|socks| {
            let (payload, batch, stop) = (args.payload, args.batch, stop.clone());
            std::thread::spawn(move || send_loop(&socks, payload, batch, deadline, &stop))
        })
        .collect();
    let mut total = ThreadResult { sent: 0, errors: 0 };
    let mut failure = None;
    for h in handles {
        match h.join() {
            Ok(Ok(r)) => {
                total.sent += r.sent;
                total.errors += r.errors;
            }
            Ok(Err(e)) => {
                stop.store(true, Ordering::Relaxed);
                failure.get_or_insert(e);
            }
            Err(_) => {
                stop.store(true, Ordering::Relaxed);
                failure.get_or_insert_with(|| anyhow::anyhow!("a sending thread panicked"));
            }
        }
    }
    let elapsed = start.elapsed().as_secs_f64();
    if let Some(e) = failure {
        return Err(e);
    }
    outln!(
        "{}",
        serde_json::json!({"sent": total.sent, "elapsed_s": elapsed, "errors": total.errors})
    );
    Ok(0)
}

fn send_loop(
    socks: &[UdpSocket],
    payload: usize,
    batch: usize,
    deadline: Instant,
    stop: &AtomicBool,
) -> Result<ThreadResult> {
    let mut buf = vec![0x5au8; payload];
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // Every message points at the same payload; the sockets are connected,
    // so no msg_name.
    // SAFETY: mmsghdr is plain data; all-zeros is a valid value.
    let mut msgs: Vec<libc::mmsghdr> = (0..batch).map(|_| unsafe { std::mem::zeroed() }).collect();
    for m in &mut msgs {
        m.msg_hdr.msg_iov = &mut iov;
        m.msg_hdr.msg_iovlen = 1;
    }
    let mut r = ThreadResult { sent: 0, errors: 0 };
    let mut i = 0usize;
    while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
        let fd = socks[i % socks.len()].as_raw_fd();
        i = i.wrapping_add(1);
        // SAFETY: `msgs` holds `batch` initialised headers whose iovec and
        // buffer outlive the call.
        let n = unsafe { libc::sendmmsg(fd, msgs.as_mut_ptr(), batch as libc::c_uint, 0) };
        if n >= 0 {
            r.sent += n as u64;
            continue;
        }
        let e = std::io::Error::last_os_error();
        match e.raw_os_error() {
            // Transient: local congestion, an ICMP error reported on the
            // connected socket (the receiver has no listener), an
            // interrupted call.
            Some(
                libc::ENOBUFS
                | libc::EAGAIN
                | libc::ECONNREFUSED
                | libc::EHOSTUNREACH
                | libc::EINTR,
            ) => {
                r.errors += 1;
                if r.errors > 1_000_000 && r.sent == 0 {
                    bail!("sendmmsg keeps failing and nothing was sent: {e}");
                }
            }
            _ => return Err(e).context("sendmmsg"),
        }
    }
    Ok(r)
}

#[derive(Debug, Args)]
pub struct SinkArgs {
    /// UDP port to bind.
    #[arg(long, default_value_t = 9)]
    pub port: u16,
    /// How long to keep the socket.
    #[arg(long)]
    pub seconds: f64,
}

/// Binds a UDP socket on `0.0.0.0:port`, never reads it, and keeps it for
/// `--seconds`. Datagrams for the port are then dropped at the socket's
/// full receive queue (a counter bump) instead of each making the kernel
/// look up a route and build an ICMP port unreachable: the receiver's cost
/// is small and the same for every setup.
pub fn sink(args: &SinkArgs) -> Result<u8> {
    let sock = UdpSocket::bind(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, args.port))
        .with_context(|| format!("binding UDP port {}", args.port))?;
    outln!("ready: bound 0.0.0.0:{}", args.port);
    std::thread::sleep(Duration::from_secs_f64(args.seconds.max(0.0)));
    drop(sock);
    Ok(0)
}
