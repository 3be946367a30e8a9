//! Sections 9 and 10: what TC datapaths on these hops can reach at most.
//!
//! Section 9, the zero-work bound: what any TC datapath on these hops can
//! reach at most: in each host a TC program on `veth0` that only
//! redirects every frame out of `eth0` (`bpf_redirect`), and one on `eth0`
//! that only hands every frame to the container (`bpf_redirect_peer`), as
//! vxlan-fwd does, but with no encapsulation, no lookups and no checks.
//! The frames cross the underlay switch as they are (the containers share
//! its L2 segment, as in the no-tunnel setup).
//!
//! vxlan-fwd's path is this one plus its work (lookups, learning, the outer
//! headers and `bpf_skb_adjust_room` both ways): its figure over this one
//! is the share of the bound it reaches, and this one over the kernel's is
//! the most that any encapsulating datapath built from TC programs on
//! these hops could show against the kernel.
//!
//! The programs are four instructions each, loaded with bpf(2) and attached
//! with tcx links (`BPF_LINK_CREATE`, no netlink, no pin; closed, they
//! detach), where vxlan-fwd attaches cls_bpf filters: tcx runs a program
//! without cls_bpf's classifier layer, so the bound is, if anything, a
//! little generous.
//!
//! Section 10, the minimal tunnel: the least a VXLAN datapath built from
//! TC programs must do, and nothing more. On `veth0`:
//! `bpf_skb_adjust_room(+50)` with the encapsulation flags (what GSO needs
//! to segment the tunnel), the inner Ethernet header moved behind the room,
//! fixed outer headers (this host's and the peer's underlay MAC and IPv4
//! address, a fixed UDP source port, VNI 42) with the lengths and the IPv4
//! checksum of the frame, `bpf_redirect` out of `eth0`. On `eth0`: a frame
//! whose outer headers say IPv4, UDP, port 4789 gets its inner Ethernet
//! header moved to the front, `bpf_skb_adjust_room(-50)` and
//! `bpf_redirect_peer` into the container. No lookups, no learning, no
//! validation beyond those three fields. Frames `adjust_room` refuses
//! (ARP: only IPv4 and IPv6 frames can be encapsulated this way) cross
//! unencapsulated, as in section 9. This costs what every encapsulating
//! TC datapath pays here (the room and its reallocation, the bigger frames
//! on the wire, the helper calls): vxlan-fwd over it is the share that its
//! own work (lookups, learning, checks) leaves.

use std::{
    ffi::CString,
    os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd},
};

use anyhow::{Context as _, Result, anyhow};
use vxlan_common::wire::{
    ENCAP_LEN, ETH_HLEN, ETH_P_IP, ETH_P_IPV6, IPPROTO_UDP, IPV4_HLEN, Outer, outer_hdr,
};
use vxlan_tests::{
    in_netns,
    topo::{PORT, UPLINK},
};
use vxlan_user::sys_bpf::{
    asm::{
        Alu, Asm, Insn, Jmp, R0, R1, R2, R3, R4, R5, R6, R7, R8, Size, alu_imm, alu_reg, be16,
        call, exit, ld_imm64, ldx, mov_imm, mov_reg, stx,
    },
    bpf, bpf_attach_type, bpf_cmd, bpf_func_id, bpf_prog_type, load_insns, zeroed_attr,
};

const BPF_FUNC_REDIRECT: u32 = bpf_func_id::BPF_FUNC_redirect as u32;
const BPF_FUNC_REDIRECT_PEER: u32 = bpf_func_id::BPF_FUNC_redirect_peer as u32;

/// `r1 = ifindex; r2 = 0; r0 = helper(r1, r2); exit`: the helper's return
/// (TC_ACT_REDIRECT, or TC_ACT_SHOT if it fails) is the verdict.
fn redirect_insns(ifindex: u32, helper: u32) -> [Insn; 4] {
    [
        mov_imm(R1, ifindex as i32),
        mov_imm(R2, 0),
        call(helper),
        exit(),
    ]
}

/// `struct __sk_buff` offsets and the uapi values the minimal tunnel uses
/// (`include/uapi/linux/bpf.h`, `pkt_cls.h`).
const SKB_LEN: i16 = 0;
const SKB_DATA: i16 = 76;
const SKB_DATA_END: i16 = 80;
const ADJ_ROOM_MAC: i32 = 1;
const ADJ_FIXED_GSO: u64 = 1 << 0;
const ADJ_ENCAP_L3_IPV4: u64 = 1 << 1;
const ADJ_ENCAP_L4_UDP: u64 = 1 << 4;
const ADJ_ENCAP_L2_ETH: u64 = 1 << 6;
const ADJ_DECAP_L3_IPV4: u64 = 1 << 7;
const ADJ_DECAP_L3_IPV6: u64 = 1 << 8;
const TC_ACT_SHOT: i32 = 2;
const BPF_FUNC_ADJUST_ROOM: u32 = bpf_func_id::BPF_FUNC_skb_adjust_room as u32;
/// The outer UDP port, and the fixed source port of the minimal tunnel.
const VXLAN_PORT: u16 = 4789;
const SRC_PORT: u16 = 49152;
const MIN_TUNNEL_VNI: u32 = 42;
/// Outer headers and the inner Ethernet header.
const HDRS: i32 = (ENCAP_LEN + ETH_HLEN) as i32;

/// One host's end of the minimal tunnel.
#[derive(Debug, Clone)]
pub struct TunnelEnd {
    pub netns: String,
    /// This host's underlay (`eth0`) MAC and address, and the peer's.
    pub mac: [u8; 6],
    pub ip: [u8; 4],
    pub peer_mac: [u8; 6],
    pub peer_ip: [u8; 4],
}

/// The outer header fields of `end`'s frames.
fn outer_fields(end: &TunnelEnd) -> Outer {
    Outer {
        src_mac: end.mac,
        dst_mac: end.peer_mac,
        src_ip: end.ip,
        dst_ip: end.peer_ip,
        src_port: SRC_PORT,
        dst_port: VXLAN_PORT,
        vni: MIN_TUNNEL_VNI,
        ttl: 64,
        tos: 0,
        ip_id: 0,
    }
}

/// The outer headers the minimal tunnel writes (the IPv4 and UDP lengths
/// and the IPv4 checksum are filled per frame), and the ones'-complement
/// sum of the IPv4 header without its length and checksum.
fn outer_template(end: &TunnelEnd) -> ([u8; ENCAP_LEN], u32) {
    let mut t = *outer_hdr(&outer_fields(end), 0).bytes();
    let ip = ETH_HLEN;
    // Length and checksum: the program's.
    t[ip + 2..ip + 4].fill(0);
    t[ip + 10..ip + 12].fill(0);
    t[ip + IPV4_HLEN + 4..ip + IPV4_HLEN + 6].fill(0);
    let sum = t[ip..ip + IPV4_HLEN]
        .chunks(2)
        .map(|w| u32::from(u16::from_be_bytes([w[0], w[1]])))
        .sum();
    (t, sum)
}

/// The encapsulating program of `veth0`: room for the outer headers after
/// the inner Ethernet header (which then moves behind it), the outer
/// headers from `tpl` with this frame's lengths and IPv4 checksum (`sum`:
/// the header's sum without them), out of `uplink`. A frame the kernel
/// cannot encapsulate this way (not IP) goes out as it is.
fn encap_insns(uplink: u32, tpl: &[u8; ENCAP_LEN], sum: u32) -> Vec<Insn> {
    let flags =
        ADJ_FIXED_GSO | ADJ_ENCAP_L3_IPV4 | ADJ_ENCAP_L4_UDP | ADJ_ENCAP_L2_ETH | (14 << 56);
    let ip = ETH_HLEN as i16;
    let mut a = Asm::new();
    let (raw, shot) = (a.new_label(), a.new_label());
    a.push(&[
        mov_reg(R6, R1),
        mov_reg(R1, R6),
        mov_imm(R2, ENCAP_LEN as i32),
    ])
    .push(&[mov_imm(R3, ADJ_ROOM_MAC)])
    .push(&ld_imm64(R4, flags))
    .push(&[call(BPF_FUNC_ADJUST_ROOM)])
    .jmp_imm(Jmp::Ne, R0, 0, raw)
    .push(&[
        ldx(Size::W, R2, R6, SKB_DATA),
        ldx(Size::W, R3, R6, SKB_DATA_END),
        mov_reg(R4, R2),
        alu_imm(Alu::Add, R4, HDRS),
    ])
    .jmp_reg(Jmp::Gt, R4, R3, shot);
    // The inner Ethernet header, 0..14, goes to 50..64.
    let e = ENCAP_LEN as i16;
    a.push(&[
        ldx(Size::Dw, R5, R2, 0),
        stx(Size::Dw, R2, e, R5),
        ldx(Size::W, R5, R2, 8),
        stx(Size::W, R2, e + 8, R5),
        ldx(Size::H, R5, R2, 12),
        stx(Size::H, R2, e + 12, R5),
    ]);
    // The outer headers: six words and a half.
    for (i, w) in tpl[..48].chunks(8).enumerate() {
        let v = u64::from_le_bytes(w.try_into().expect("8 bytes"));
        a.push(&ld_imm64(R5, v))
            .push(&[stx(Size::Dw, R2, 8 * i as i16, R5)]);
    }
    let last = u16::from_le_bytes([tpl[48], tpl[49]]);
    a.push(&[mov_imm(R5, i32::from(last)), stx(Size::H, R2, 48, R5)]);
    // IPv4 total length (the frame less the outer Ethernet header), UDP
    // length, and the checksum over the length: fold, complement.
    a.push(&[
        ldx(Size::W, R7, R6, SKB_LEN),
        alu_imm(Alu::Sub, R7, ETH_HLEN as i32),
        mov_reg(R8, R7),
        be16(R8),
        stx(Size::H, R2, ip + 2, R8),
        mov_reg(R8, R7),
        alu_imm(Alu::Sub, R8, IPV4_HLEN as i32),
        be16(R8),
        stx(Size::H, R2, ip + IPV4_HLEN as i16 + 4, R8),
        alu_imm(Alu::Add, R7, sum as i32),
    ]);
    for _ in 0..2 {
        a.push(&[
            mov_reg(R8, R7),
            alu_imm(Alu::Rsh, R8, 16),
            alu_imm(Alu::And, R7, 0xffff),
            alu_reg(Alu::Add, R7, R8),
        ]);
    }
    a.push(&[
        alu_imm(Alu::Xor, R7, 0xffff),
        alu_imm(Alu::And, R7, 0xffff),
        be16(R7),
        stx(Size::H, R2, ip + 10, R7),
    ])
    // Encapsulated or not, out of the uplink.
    .label(raw)
    .push(&[
        mov_imm(R1, uplink as i32),
        mov_imm(R2, 0),
        call(BPF_FUNC_REDIRECT),
        exit(),
    ])
    .label(shot)
    .push(&[mov_imm(R0, TC_ACT_SHOT), exit()]);
    a.finish()
}

/// The decapsulating program of `eth0`: a frame whose outer headers say
/// IPv4, UDP, port 4789 loses them (its inner Ethernet header moved to
/// the front first); every frame goes into the container (`port`).
fn decap_insns(port: u32) -> Vec<Insn> {
    let mut a = Asm::new();
    let (deliver, go, shot) = (a.new_label(), a.new_label(), a.new_label());
    let e = ENCAP_LEN as i16;
    // Fields as a little-endian load reads their network-order bytes.
    let ipv4 = i32::from(ETH_P_IP.swap_bytes());
    let ipv6 = i32::from(ETH_P_IPV6.swap_bytes());
    let port_be = i32::from(VXLAN_PORT.swap_bytes());
    a.push(&[
        mov_reg(R6, R1),
        ldx(Size::W, R2, R6, SKB_DATA),
        ldx(Size::W, R3, R6, SKB_DATA_END),
        mov_reg(R4, R2),
        alu_imm(Alu::Add, R4, HDRS),
    ])
    .jmp_reg(Jmp::Gt, R4, R3, deliver)
    .push(&[ldx(Size::H, R5, R2, 12)])
    .jmp_imm(Jmp::Ne, R5, ipv4, deliver)
    .push(&[ldx(Size::B, R5, R2, (ETH_HLEN + 9) as i16)])
    .jmp_imm(Jmp::Ne, R5, i32::from(IPPROTO_UDP), deliver)
    .push(&[ldx(Size::H, R5, R2, (ETH_HLEN + IPV4_HLEN + 2) as i16)])
    .jmp_imm(Jmp::Ne, R5, port_be, deliver)
    .push(&[
        ldx(Size::Dw, R5, R2, e),
        stx(Size::Dw, R2, 0, R5),
        ldx(Size::W, R5, R2, e + 8),
        stx(Size::W, R2, 8, R5),
        ldx(Size::H, R5, R2, e + 12),
        stx(Size::H, R2, 12, R5),
    ])
    .push(&ld_imm64(R4, ADJ_FIXED_GSO | ADJ_DECAP_L3_IPV4))
    .jmp_imm(Jmp::Ne, R5, ipv6, go)
    .push(&ld_imm64(R4, ADJ_FIXED_GSO | ADJ_DECAP_L3_IPV6))
    .label(go)
    .push(&[
        mov_reg(R1, R6),
        mov_imm(R2, -(ENCAP_LEN as i32)),
        mov_imm(R3, ADJ_ROOM_MAC),
        call(BPF_FUNC_ADJUST_ROOM),
    ])
    .jmp_imm(Jmp::Ne, R0, 0, shot)
    .label(deliver)
    .push(&[
        mov_imm(R1, port as i32),
        mov_imm(R2, 0),
        call(BPF_FUNC_REDIRECT_PEER),
        exit(),
    ])
    .label(shot)
    .push(&[mov_imm(R0, TC_ACT_SHOT), exit()]);
    a.finish()
}

/// The minimal tunnel's two programs as figure 5 times them (addresses of
/// the bench's hosts; the ifindexes only name where a redirect would go):
/// (encapsulation, decapsulation).
pub fn min_tunnel_insns() -> (Vec<Insn>, Vec<Insn>) {
    let (tpl, sum) = outer_template(&test_run_end());
    (encap_insns(2, &tpl, sum), decap_insns(3))
}

/// The tunnel end of [`min_tunnel_insns`].
fn test_run_end() -> TunnelEnd {
    TunnelEnd {
        netns: String::new(),
        mac: [0x02, 0xaa, 0, 0, 0, 1],
        ip: [192, 168, 57, 50],
        peer_mac: [0x02, 0xaa, 0, 0, 0, 2],
        peer_ip: [192, 168, 57, 54],
    }
}

/// The ifindex of `name` in the calling thread's namespace.
fn ifindex(name: &str) -> Result<u32> {
    let c = CString::new(name)?;
    // SAFETY: a valid C string.
    match unsafe { libc::if_nametoindex(c.as_ptr()) } {
        0 => Err(anyhow!("no interface {name}")),
        i => Ok(i),
    }
}

/// A tcx ingress link of `prog` on `ifindex` (of the calling thread's
/// namespace).
fn tcx_ingress(prog: &OwnedFd, ifindex: u32) -> Result<OwnedFd> {
    let mut attr = zeroed_attr();
    // SAFETY: writing the `BPF_LINK_CREATE` member of a zeroed union.
    let l = unsafe { &mut attr.link_create };
    l.__bindgen_anon_1.prog_fd = prog.as_raw_fd() as u32;
    l.__bindgen_anon_2.target_ifindex = ifindex;
    l.attach_type = bpf_attach_type::BPF_TCX_INGRESS as u32;
    // SAFETY: no pointers in this member.
    let fd = unsafe { bpf(bpf_cmd::BPF_LINK_CREATE, &mut attr) }
        .context("BPF_LINK_CREATE (tcx ingress)")?;
    // SAFETY: a new descriptor the kernel just returned to us.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// Whether `e` (from [`Attached::bound`]) says the kernel has no tcx (before
/// Linux 6.6): `BPF_LINK_CREATE` refusing the attach type. Anything else
/// (a verifier rejection, a missing device) is a real failure.
pub fn tcx_missing(e: &anyhow::Error) -> bool {
    e.chain()
        .any(|c| c.to_string().starts_with("BPF_LINK_CREATE"))
        && e.chain().any(|c| {
            c.downcast_ref::<std::io::Error>()
                .and_then(std::io::Error::raw_os_error)
                // ENOTSUPP (524) is the kernel's internal "not supported".
                .is_some_and(|n| [libc::EINVAL, libc::EOPNOTSUPP, 524].contains(&n))
        })
}

/// TC programs of a section attached in the hosts (tcx links), attached
/// while this lives: closing the links detaches them.
pub struct Attached {
    _links: Vec<OwnedFd>,
}

impl Attached {
    /// Section 9, in each of `hosts` (network namespaces): `veth0` → out of
    /// `eth0`, `eth0` → into the container.
    pub fn bound(hosts: &[&str]) -> Result<Self> {
        let mut links = Vec::new();
        for &ns in hosts {
            for (dev, to, helper) in [
                (PORT, UPLINK, BPF_FUNC_REDIRECT),
                (UPLINK, PORT, BPF_FUNC_REDIRECT_PEER),
            ] {
                links.push(attach(
                    ns,
                    dev,
                    "vxbench_bound",
                    "the redirect program",
                    move || Ok(redirect_insns(ifindex(to)?, helper).to_vec()),
                )?);
            }
        }
        Ok(Self { _links: links })
    }

    /// Section 10, at each of `ends`: encapsulation on `veth0`,
    /// decapsulation on `eth0`.
    pub fn min_tunnel(ends: &[TunnelEnd]) -> Result<Self> {
        let mut links = Vec::new();
        for end in ends {
            let (tpl, sum) = outer_template(end);
            links.push(attach(
                &end.netns,
                PORT,
                "vxbench_mintun",
                "the minimal tunnel's encap",
                move || Ok(encap_insns(ifindex(UPLINK)?, &tpl, sum)),
            )?);
            links.push(attach(
                &end.netns,
                UPLINK,
                "vxbench_mintun",
                "the minimal tunnel's decap",
                || Ok(decap_insns(ifindex(PORT)?)),
            )?);
        }
        Ok(Self { _links: links })
    }
}

/// Loads the TC program `insns` builds (in namespace `ns`, where it looks
/// up its ifindexes) as `name` and attaches it to `dev`'s ingress as a tcx
/// link.
fn attach(
    ns: &str,
    dev: &'static str,
    name: &'static str,
    what: &str,
    insns: impl FnOnce() -> Result<Vec<Insn>> + Send + 'static,
) -> Result<OwnedFd> {
    in_netns(ns, move || -> Result<OwnedFd> {
        let prog = load_insns(bpf_prog_type::BPF_PROG_TYPE_SCHED_CLS, &insns()?, name)
            .context("BPF_PROG_LOAD")?;
        tcx_ingress(&prog, ifindex(dev)?)
    })
    .and_then(|r| r)
    .with_context(|| format!("{ns}: {what} on {dev}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redirect_program_bytes() {
        let p = redirect_insns(0x0102_0304, BPF_FUNC_REDIRECT_PEER);
        assert_eq!(p[0], [0xb7, 1, 0, 0, 4, 3, 2, 1]);
        assert_eq!(p[2], [0x85, 0, 0, 0, 155, 0, 0, 0]);
        assert_eq!(p[3][0], 0x95);
    }

    /// One BPF_PROG_TEST_RUN of `insns` (a TC program) on `frame`: its
    /// verdict and the frame it left.
    fn run_tc(insns: &[Insn], frame: &[u8]) -> (u32, Vec<u8>) {
        let prog = load_insns(bpf_prog_type::BPF_PROG_TYPE_SCHED_CLS, insns, "vxt_mintun")
            .unwrap_or_else(|e| panic!("loading the program: {e}"));
        let mut out = vec![0u8; 512];
        let mut attr = zeroed_attr();
        // SAFETY: writing the `test` member of a zeroed union.
        let t = unsafe { &mut attr.test };
        t.prog_fd = prog.as_raw_fd() as u32;
        t.data_in = frame.as_ptr() as u64;
        t.data_size_in = frame.len() as u32;
        t.data_out = out.as_mut_ptr() as u64;
        t.data_size_out = out.len() as u32;
        t.repeat = 1;
        // SAFETY: `frame` and `out` outlive the call, with the sizes given.
        unsafe { bpf(bpf_cmd::BPF_PROG_TEST_RUN, &mut attr) }
            .unwrap_or_else(|e| panic!("BPF_PROG_TEST_RUN: {e}"));
        // SAFETY: the member written above, updated by the kernel.
        let t = unsafe { attr.test };
        out.truncate(t.data_size_out as usize);
        (t.retval, out)
    }

    /// A 60-byte IPv4/UDP frame (or an ARP one of the same length).
    fn inner(ethertype: u16) -> Vec<u8> {
        let mut f = vec![0x02, 0, 0, 0, 0, 2, 0x02, 0, 0, 0, 0, 1];
        f.extend_from_slice(&ethertype.to_be_bytes());
        let mut ip = [
            0x45,
            0,
            0,
            46,
            0,
            0,
            0x40,
            0,
            64,
            IPPROTO_UDP,
            0,
            0,
            10,
            0,
            0,
            1,
            10,
            0,
            0,
            2,
        ];
        let c = vxlan_common::wire::ipv4_checksum(&ip);
        ip[10..12].copy_from_slice(&c);
        f.extend_from_slice(&ip);
        f.extend_from_slice(&[0x30, 0x39, 0, 9, 0, 26, 0, 0]);
        f.extend((0..18).map(|i| i as u8));
        f
    }

    /// Needs root (BPF_PROG_LOAD, BPF_PROG_TEST_RUN): `cargo test -p xtask
    /// --features bench-ebpf`.
    #[test]
    fn min_tunnel_round_trip() {
        let (enc, dec) = min_tunnel_insns();
        const TC_ACT_REDIRECT: u32 = 7;

        let frame = inner(ETH_P_IP);
        let (rc, out) = run_tc(&enc, &frame);
        assert_eq!(rc, TC_ACT_REDIRECT);
        assert_eq!(out.len(), frame.len() + ENCAP_LEN);
        assert_eq!(&out[ENCAP_LEN..], &frame[..], "the inner frame follows");
        // The outer headers are the ones vxlan-fwd's datapath builds for
        // this frame (`outer_hdr`), with the fixed source port and
        // identification 0.
        let want = outer_hdr(&outer_fields(&test_run_end()), frame.len() as u16);
        assert_eq!(&out[..ENCAP_LEN], want.bytes(), "outer headers");

        let (rc, back) = run_tc(&dec, &out);
        assert_eq!(rc, TC_ACT_REDIRECT);
        assert_eq!(back, frame, "decapsulated: the frame sent");

        // ARP cannot be encapsulated with adjust_room: it crosses as it is,
        // and the receiver hands it on unchanged.
        let arp = inner(0x0806);
        assert_eq!(run_tc(&enc, &arp), (TC_ACT_REDIRECT, arp.clone()));
        assert_eq!(run_tc(&dec, &arp), (TC_ACT_REDIRECT, arp));
    }
}
