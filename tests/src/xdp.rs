//! A foreign XDP program ("someone else's"), to test that vxlan-fwd leaves
//! an uplink alone that already carries one.
//!
//! No object file or tool is needed: the program (`return XDP_PASS`) is
//! loaded with the bpf(2) syscall and attached in generic mode with one
//! rtnetlink request sent from a thread that has entered the namespace.
//! The attachment is not tied to any file descriptor: it lasts until
//! [`detach_xdp`] or until the interface (its namespace) is deleted.

use std::{
    ffi::CString,
    fs::File,
    io,
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
};

const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_PROG_TYPE_XDP: u32 = 6;
const IFLA_XDP: u16 = 43;
const IFLA_XDP_FD: u16 = 1;
const IFLA_XDP_FLAGS: u16 = 3;
const NLA_F_NESTED: u16 = 0x8000;
const XDP_FLAGS_SKB_MODE: u32 = 1 << 1;
const RTM_SETLINK: u16 = 19;

/// Loads `r0 = XDP_PASS; exit` as an XDP program named `vxt_foreign`.
fn load_xdp_pass() -> io::Result<OwnedFd> {
    // mov64 r0, 2 (XDP_PASS); exit
    let insns: [u8; 16] = [0xb7, 0, 0, 0, 2, 0, 0, 0, 0x95, 0, 0, 0, 0, 0, 0, 0];
    let license = c"GPL";
    // union bpf_attr, BPF_PROG_LOAD part: prog_type@0 insn_cnt@4 insns@8
    // license@16 log_level@24 log_size@28 log_buf@32 kern_version@40
    // prog_flags@44 prog_name[16]@48.
    let mut attr = [0u8; 128];
    attr[0..4].copy_from_slice(&BPF_PROG_TYPE_XDP.to_ne_bytes());
    attr[4..8].copy_from_slice(&2u32.to_ne_bytes());
    attr[8..16].copy_from_slice(&(insns.as_ptr() as u64).to_ne_bytes());
    attr[16..24].copy_from_slice(&(license.as_ptr() as u64).to_ne_bytes());
    attr[48..59].copy_from_slice(b"vxt_foreign");
    // SAFETY: bpf(2) with a valid attr buffer whose pointers outlive the call.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_PROG_LOAD,
            attr.as_mut_ptr(),
            attr.len() as libc::c_uint,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel just returned this new descriptor.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

fn nlattr(buf: &mut Vec<u8>, ty: u16, payload: &[u8]) {
    let len = 4 + payload.len();
    buf.extend_from_slice(&(len as u16).to_ne_bytes());
    buf.extend_from_slice(&ty.to_ne_bytes());
    buf.extend_from_slice(payload);
    buf.resize(buf.len().next_multiple_of(4), 0);
}

/// Sets (`prog_fd` = Some) or removes (`None`, fd -1) the generic-mode XDP
/// program of `dev` in the calling thread's network namespace.
fn set_xdp(dev: &str, prog_fd: Option<i32>) -> io::Result<()> {
    let cdev = CString::new(dev).expect("interface name");
    // SAFETY: valid NUL-terminated string.
    let ifindex = unsafe { libc::if_nametoindex(cdev.as_ptr()) };
    if ifindex == 0 {
        return Err(io::Error::other(format!("no interface {dev}")));
    }
    let mut nested = Vec::new();
    nlattr(
        &mut nested,
        IFLA_XDP_FD,
        &prog_fd.unwrap_or(-1).to_ne_bytes(),
    );
    nlattr(
        &mut nested,
        IFLA_XDP_FLAGS,
        &XDP_FLAGS_SKB_MODE.to_ne_bytes(),
    );
    let mut body = Vec::new();
    // struct ifinfomsg: family, pad, type, index, flags, change.
    body.extend_from_slice(&[libc::AF_UNSPEC as u8, 0, 0, 0]);
    body.extend_from_slice(&(ifindex as i32).to_ne_bytes());
    body.extend_from_slice(&[0; 8]);
    nlattr(&mut body, IFLA_XDP | NLA_F_NESTED, &nested);
    let mut msg = Vec::new();
    msg.extend_from_slice(&((16 + body.len()) as u32).to_ne_bytes());
    msg.extend_from_slice(&RTM_SETLINK.to_ne_bytes());
    msg.extend_from_slice(&((libc::NLM_F_REQUEST | libc::NLM_F_ACK) as u16).to_ne_bytes());
    msg.extend_from_slice(&1u32.to_ne_bytes()); // seq
    msg.extend_from_slice(&0u32.to_ne_bytes()); // pid
    msg.extend_from_slice(&body);

    // SAFETY: plain socket calls on a descriptor we own.
    unsafe {
        let s = libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            libc::NETLINK_ROUTE,
        );
        if s < 0 {
            return Err(io::Error::last_os_error());
        }
        let sock = OwnedFd::from_raw_fd(s);
        let mut addr: libc::sockaddr_nl = std::mem::zeroed();
        addr.nl_family = libc::AF_NETLINK as u16;
        let sent = libc::sendto(
            sock.as_raw_fd(),
            msg.as_ptr().cast(),
            msg.len(),
            0,
            (&raw const addr).cast(),
            size_of::<libc::sockaddr_nl>() as u32,
        );
        if sent < 0 {
            return Err(io::Error::last_os_error());
        }
        let mut resp = [0u8; 4096];
        let n = libc::recv(sock.as_raw_fd(), resp.as_mut_ptr().cast(), resp.len(), 0);
        if n < 20 {
            return Err(io::Error::other("short netlink answer"));
        }
        let ty = u16::from_ne_bytes([resp[4], resp[5]]);
        let err = i32::from_ne_bytes([resp[16], resp[17], resp[18], resp[19]]);
        if ty != libc::NLMSG_ERROR as u16 {
            return Err(io::Error::other(format!(
                "unexpected netlink answer type {ty}"
            )));
        }
        if err != 0 {
            return Err(io::Error::from_raw_os_error(-err));
        }
    }
    Ok(())
}

/// Runs `f` on a thread that has entered network namespace `ns`.
fn in_netns<T: Send + 'static>(
    ns: &str,
    f: impl FnOnce() -> io::Result<T> + Send + 'static,
) -> io::Result<T> {
    let path = format!("/run/netns/{ns}");
    std::thread::spawn(move || {
        let nsf = File::open(&path)?;
        // SAFETY: setns on this thread only, with a namespace file we opened.
        if unsafe { libc::setns(nsf.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
            return Err(io::Error::last_os_error());
        }
        f()
    })
    .join()
    .unwrap_or_else(|_| Err(io::Error::other("netns thread panicked")))
}

/// Attaches a foreign XDP program (`XDP_PASS`, name `vxt_foreign`) to `dev`
/// in namespace `ns`, generic mode. Panics on failure.
pub fn attach_foreign_xdp(ns: impl AsRef<str>, dev: &str) {
    let (ns, dev) = (ns.as_ref().to_owned(), dev.to_owned());
    let what = format!("attaching a foreign XDP program to {dev} in {ns}");
    in_netns(&ns, move || {
        let prog = load_xdp_pass()?;
        set_xdp(&dev, Some(prog.as_raw_fd()))
        // `prog` closes here; the attachment keeps the program loaded.
    })
    .unwrap_or_else(|e| panic!("{what}: {e}"));
}

/// Removes the generic-mode XDP program of `dev` in namespace `ns`.
/// Panics on failure.
pub fn detach_xdp(ns: impl AsRef<str>, dev: &str) {
    let (ns, dev) = (ns.as_ref().to_owned(), dev.to_owned());
    let what = format!("detaching XDP from {dev} in {ns}");
    in_netns(&ns, move || set_xdp(&dev, None)).unwrap_or_else(|e| panic!("{what}: {e}"));
}
