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
    sys_bpf::{
        asm::{
            Alu, Asm, Jmp, R0, R1, R2, R3, R4, R5, R6, R7, Size, alu_imm, call, exit, ldx, mov_imm,
            mov_reg, stx,
        },
        bpf_func_id, load_xdp_insns, load_xdp_returning,
    },
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
    const ADJUST_HEAD: u32 = bpf_func_id::BPF_FUNC_xdp_adjust_head as u32;
    const ADJUST_META: u32 = bpf_func_id::BPF_FUNC_xdp_adjust_meta as u32;
    // `struct xdp_md`: data, data_end, data_meta.
    const DATA: i16 = 0;
    const DATA_END: i16 = 4;
    const DATA_META: i16 = 8;
    const META: i32 = 32;
    const PREFIX: i32 = META_MAKER_PREFIX as i32;
    let mut a = Asm::new();
    let pass = a.new_label();
    a.push(&[mov_reg(R6, R1), mov_imm(R2, -META), call(ADJUST_META)])
        .jmp_imm(Jmp::Ne, R0, 0, pass)
        .push(&[
            ldx(Size::W, R2, R6, DATA),
            ldx(Size::W, R3, R6, DATA_END),
            ldx(Size::W, R4, R6, DATA_META),
            mov_reg(R5, R4),
            alu_imm(Alu::Add, R5, META),
        ])
        // meta + 32 > data: no room.
        .jmp_reg(Jmp::Gt, R5, R2, pass)
        .push(&[mov_reg(R5, R2), alu_imm(Alu::Add, R5, PREFIX)])
        // data + 36 > data_end: too short.
        .jmp_reg(Jmp::Gt, R5, R3, pass);
    for i in 0..8i16 {
        // meta[4i..] = data[4 + 4i..]
        a.push(&[ldx(Size::W, R0, R2, 4 + 4 * i), stx(Size::W, R4, 4 * i, R0)]);
    }
    // r7 = data[0]: the shrink; bpf_xdp_adjust_head(ctx, 36).
    a.push(&[
        ldx(Size::B, R7, R2, 0),
        mov_reg(R1, R6),
        mov_imm(R2, PREFIX),
        call(ADJUST_HEAD),
    ])
    .jmp_imm(Jmp::Ne, R0, 0, pass)
    // bpf_xdp_adjust_meta(ctx, r7)
    .push(&[mov_reg(R1, R6), mov_reg(R2, R7), call(ADJUST_META)])
    .label(pass)
    .push(&[mov_imm(R0, XDP_PASS as i32), exit()]);
    load_xdp_insns(&a.finish(), "vxt_meta_maker")
}
