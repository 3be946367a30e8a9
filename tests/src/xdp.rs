//! Foreign XDP programs ("someone else's"): one returning `XDP_PASS`, to
//! test that vxlan-fwd leaves an uplink alone that already carries one;
//! one that turns the start of each frame into XDP metadata, to hand the
//! TC program on the uplink metadata of the test's choosing.
//!
//! No object file or tool is needed: the program (`return XDP_PASS`) is
//! loaded with the bpf(2) syscall and attached in generic mode with
//! vxlan-fwd's own [`Netlink::set_xdp`], from a thread that has entered
//! the namespace. The attachment is not tied to any file descriptor: it
//! lasts until [`detach_xdp`] or until the interface (its namespace) is
//! deleted.

use std::{
    io,
    os::fd::{AsRawFd as _, OwnedFd},
};

use vxlan_user::{
    netlink::{Netlink, XDP_FLAGS_SKB_MODE},
    sys_bpf::{load_xdp_insns, load_xdp_returning},
};

use crate::{fixture::XDP_PASS, hostile_net::in_netns};

/// Sets (`prog_fd` = Some) or removes (`None`) the generic-mode XDP
/// program of `dev` in the calling thread's network namespace.
pub fn set_xdp(dev: &str, prog_fd: Option<i32>) -> io::Result<()> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(async {
            let nl = Netlink::new()?;
            let link = nl.link_by_name(dev).await?;
            nl.set_xdp(link.index, prog_fd, XDP_FLAGS_SKB_MODE, None)
                .await
        })
        .map_err(|e| io::Error::other(format!("{e:#}")))
}

/// Attaches a foreign XDP program (`XDP_PASS`, name `vxt_foreign`) to `dev`
/// in namespace `ns`, generic mode. Panics on failure.
pub fn attach_foreign_xdp(ns: impl AsRef<str>, dev: &str) {
    let dev = dev.to_owned();
    let what = format!("attaching a foreign XDP program to {dev}");
    in_netns(ns.as_ref(), &what, move || {
        let prog = load_xdp_returning(XDP_PASS, "vxt_foreign")?;
        set_xdp(&dev, Some(prog.as_raw_fd()))
        // `prog` closes here; the attachment keeps the program loaded.
    });
}

/// Removes the generic-mode XDP program of `dev` in namespace `ns`.
/// Panics on failure.
pub fn detach_xdp(ns: impl AsRef<str>, dev: &str) {
    let dev = dev.to_owned();
    let what = format!("detaching XDP from {dev}");
    in_netns(ns.as_ref(), &what, move || set_xdp(&dev, None));
}

/// Room a frame given to [`load_meta_maker`]'s program starts with: a
/// 4-byte header (its first byte: how many of the next 32 bytes are not
/// metadata), then 32 bytes whose last `32 - header[0]` are the metadata.
pub const META_MAKER_PREFIX: usize = 4 + 32;

/// Builds what [`load_meta_maker`]'s program turns into `frame` with
/// `meta` (a multiple of 4, at most 32 bytes) in front of it as XDP
/// metadata.
pub fn with_meta(meta: &[u8], frame: &[u8]) -> Vec<u8> {
    assert!(
        meta.len().is_multiple_of(4) && meta.len() <= 32,
        "metadata length"
    );
    let skip = 32 - meta.len();
    let mut v = vec![0u8; META_MAKER_PREFIX - meta.len()];
    v[0] = skip as u8;
    v.extend_from_slice(meta);
    v.extend_from_slice(frame);
    v
}

/// Loads an XDP program (name `vxt_meta_maker`, hand-assembled: no object
/// needed) that makes the start of each frame its metadata, as an XDP
/// program in front of the uplink's TC program would write it: for a frame
/// built by [`with_meta`] the program reserves 32 bytes of metadata,
/// copies the 32 bytes after the header there, removes the 36 bytes from
/// the frame and shrinks the metadata by the header's first byte. It
/// returns `XDP_PASS` whatever happens (a frame too short is passed
/// unchanged, with 32 bytes of metadata or none).
pub fn load_meta_maker() -> io::Result<OwnedFd> {
    // struct bpf_insn: opcode, dst | src << 4, offset (LE i16), imm (LE i32).
    fn insn(op: u8, dst: u8, src: u8, off: i16, imm: i32) -> [u8; 8] {
        let o = off.to_le_bytes();
        let i = imm.to_le_bytes();
        [op, dst | src << 4, o[0], o[1], i[0], i[1], i[2], i[3]]
    }
    const MOV64_REG: u8 = 0xbf;
    const MOV64_IMM: u8 = 0xb7;
    const ADD64_IMM: u8 = 0x07;
    const LDXW: u8 = 0x61;
    const LDXB: u8 = 0x71;
    const STXW: u8 = 0x63;
    const CALL: u8 = 0x85;
    const EXIT: u8 = 0x95;
    const JNE_IMM: u8 = 0x55;
    const JGT_REG: u8 = 0x2d;
    const ADJUST_HEAD: i32 = 44;
    const ADJUST_META: i32 = 54;
    const META: i32 = 32;
    const PREFIX: i32 = META_MAKER_PREFIX as i32;
    // Jumps to `pass` are patched once its index is known.
    let mut p: Vec<[u8; 8]> = Vec::new();
    let mut to_pass: Vec<usize> = Vec::new();
    p.push(insn(MOV64_REG, 6, 1, 0, 0)); // r6 = ctx
    p.push(insn(MOV64_IMM, 2, 0, 0, -META)); // r2 = -32
    p.push(insn(CALL, 0, 0, 0, ADJUST_META)); // bpf_xdp_adjust_meta(ctx, -32)
    to_pass.push(p.len());
    p.push(insn(JNE_IMM, 0, 0, 0, 0)); // if r0 != 0 goto pass
    p.push(insn(LDXW, 2, 6, 0, 0)); // r2 = ctx->data
    p.push(insn(LDXW, 3, 6, 4, 0)); // r3 = ctx->data_end
    p.push(insn(LDXW, 4, 6, 8, 0)); // r4 = ctx->data_meta
    p.push(insn(MOV64_REG, 5, 4, 0, 0)); // r5 = meta + 32
    p.push(insn(ADD64_IMM, 5, 0, 0, META));
    to_pass.push(p.len());
    p.push(insn(JGT_REG, 5, 2, 0, 0)); // if meta + 32 > data goto pass
    p.push(insn(MOV64_REG, 5, 2, 0, 0)); // r5 = data + 36
    p.push(insn(ADD64_IMM, 5, 0, 0, PREFIX));
    to_pass.push(p.len());
    p.push(insn(JGT_REG, 5, 3, 0, 0)); // if data + 36 > data_end goto pass
    for i in 0..8i16 {
        p.push(insn(LDXW, 0, 2, 4 + 4 * i, 0)); // r0 = data[4 + 4i..]
        p.push(insn(STXW, 4, 0, 4 * i, 0)); // meta[4i..] = r0
    }
    p.push(insn(LDXB, 7, 2, 0, 0)); // r7 = data[0]: the shrink
    p.push(insn(MOV64_REG, 1, 6, 0, 0));
    p.push(insn(MOV64_IMM, 2, 0, 0, PREFIX));
    p.push(insn(CALL, 0, 0, 0, ADJUST_HEAD)); // bpf_xdp_adjust_head(ctx, 36)
    to_pass.push(p.len());
    p.push(insn(JNE_IMM, 0, 0, 0, 0)); // if r0 != 0 goto pass
    p.push(insn(MOV64_REG, 1, 6, 0, 0));
    p.push(insn(MOV64_REG, 2, 7, 0, 0));
    p.push(insn(CALL, 0, 0, 0, ADJUST_META)); // bpf_xdp_adjust_meta(ctx, r7)
    let pass = p.len();
    p.push(insn(MOV64_IMM, 0, 0, 0, XDP_PASS as i32));
    p.push(insn(EXIT, 0, 0, 0, 0));
    for at in to_pass {
        let off = (pass - at - 1) as i16;
        p[at][2..4].copy_from_slice(&off.to_le_bytes());
    }
    load_xdp_insns(&p, "vxt_meta_maker")
}
