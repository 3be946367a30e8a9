//! In-place access to packet data, for XDP and TC alike, and what each
//! hook can tell about the frame beyond its bytes.

use core::{ffi::c_void, mem::size_of};

use aya_ebpf::{
    bindings::{BPF_CSUM_LEVEL_DEC, BPF_CSUM_LEVEL_INC, BPF_CSUM_LEVEL_QUERY},
    helpers::{bpf_csum_level, bpf_csum_update, bpf_skb_load_bytes, bpf_xdp_load_bytes},
    programs::{TcContext, XdpContext},
};
use vxlan_common::{Config, wire::is_multicast_mac};

/// `skb->pkt_type` of a frame for another host's MAC.
const PACKET_OTHERHOST: u32 = 3;

/// A frame whose linear part can be read (and written) in place.
pub trait Frame {
    /// Start of the linear data.
    fn data(&self) -> usize;
    /// End of the linear data.
    fn data_end(&self) -> usize;
    /// Length of the whole frame (for an skb, with its paged part).
    fn frame_len(&self) -> usize;
    /// Whether the frame, with outer destination MAC `dmac`, was sent to
    /// another host's MAC (the uplink is promiscuous): the kernel's IP
    /// layer drops such frames (`PACKET_OTHERHOST`).
    fn other_host(&self, dmac: &[u8; 6], cfg: &Config) -> bool;
    /// Whether the outer UDP checksum needs no check here: the kernel
    /// already trusts it (see the TC implementation).
    fn udp_csum_trusted(&self) -> bool;
    /// Whether a wrong-looking outer UDP checksum is handed on to TC
    /// instead of dropped: XDP cannot see a checksum left for offload.
    fn defers_bad_csum(&self) -> bool;
    /// The context pointer the program was given.
    fn raw(&self) -> *mut c_void;
    /// Copies `len` bytes at `off` of the frame (also from an skb's paged
    /// part) to `to`; 0 on success.
    ///
    /// # Safety
    /// `raw` is this kind of context; `to` points to `len` writable bytes.
    unsafe fn load_bytes(raw: *mut c_void, off: u32, to: *mut c_void, len: u32) -> i64;
}

impl Frame for XdpContext {
    #[inline(always)]
    fn data(&self) -> usize {
        XdpContext::data(self)
    }
    #[inline(always)]
    fn data_end(&self) -> usize {
        XdpContext::data_end(self)
    }
    #[inline(always)]
    fn frame_len(&self) -> usize {
        XdpContext::data_end(self) - XdpContext::data(self)
    }
    /// XDP runs before the kernel classifies the frame: compare with the
    /// uplink's MAC (any group address may be ours: group mode).
    #[inline(always)]
    fn other_host(&self, dmac: &[u8; 6], cfg: &Config) -> bool {
        !is_multicast_mac(dmac) && *dmac != cfg.uplink_mac
    }
    /// XDP sees no checksum state: always checked.
    #[inline(always)]
    fn udp_csum_trusted(&self) -> bool {
        false
    }
    #[inline(always)]
    fn defers_bad_csum(&self) -> bool {
        true
    }
    #[inline(always)]
    fn raw(&self) -> *mut c_void {
        self.ctx as *mut c_void
    }
    #[inline(always)]
    unsafe fn load_bytes(raw: *mut c_void, off: u32, to: *mut c_void, len: u32) -> i64 {
        // SAFETY: as documented on the trait.
        unsafe { bpf_xdp_load_bytes(raw as *mut _, off, to, len) }
    }
}

impl Frame for TcContext {
    #[inline(always)]
    fn data(&self) -> usize {
        TcContext::data(self)
    }
    #[inline(always)]
    fn data_end(&self) -> usize {
        TcContext::data_end(self)
    }
    #[inline(always)]
    fn frame_len(&self) -> usize {
        self.len() as usize
    }
    #[inline(always)]
    fn other_host(&self, _dmac: &[u8; 6], _cfg: &Config) -> bool {
        // SAFETY: reading a field of our skb context.
        unsafe { (*self.skb.skb).pkt_type == PACKET_OTHERHOST }
    }
    /// `skb->ip_summed` is not readable from TC, so it is probed:
    /// - a GSO super-packet on receive comes from GRO, which validated
    ///   the checksum of every segment it merged (or was made on this
    ///   machine);
    /// - `CHECKSUM_UNNECESSARY` (the NIC checked it): `BPF_CSUM_LEVEL_QUERY`
    ///   answers;
    /// - `CHECKSUM_COMPLETE`: `bpf_csum_update(skb, 0)` answers (and adds
    ///   nothing); checked in software here;
    /// - `CHECKSUM_NONE` becomes `CHECKSUM_UNNECESSARY` on
    ///   `BPF_CSUM_LEVEL_INC` (undone at once): checked in software;
    /// - what is left is `CHECKSUM_PARTIAL`: made on this machine (a veth
    ///   or another local path), never crossed a wire, and its checksum
    ///   field holds only the pseudo-header sum: the kernel trusts it too.
    #[inline(always)]
    fn udp_csum_trusted(&self) -> bool {
        let skb = self.skb.skb;
        // SAFETY: reading a field of our skb context; helper calls on our
        // own skb (the INC is undone right away).
        unsafe {
            if (*skb).gso_size != 0 {
                return true;
            }
            if bpf_csum_level(skb, BPF_CSUM_LEVEL_QUERY as u64) >= 0 {
                return true;
            }
            if bpf_csum_update(skb, 0) >= 0 {
                return false;
            }
            bpf_csum_level(skb, BPF_CSUM_LEVEL_INC as u64);
            if bpf_csum_level(skb, BPF_CSUM_LEVEL_QUERY as u64) >= 0 {
                bpf_csum_level(skb, BPF_CSUM_LEVEL_DEC as u64);
                return false;
            }
            true
        }
    }
    #[inline(always)]
    fn defers_bad_csum(&self) -> bool {
        false
    }
    #[inline(always)]
    fn raw(&self) -> *mut c_void {
        self.skb.skb as *mut c_void
    }
    #[inline(always)]
    unsafe fn load_bytes(raw: *mut c_void, off: u32, to: *mut c_void, len: u32) -> i64 {
        // SAFETY: as documented on the trait.
        unsafe { bpf_skb_load_bytes(raw as *const _, off, to, len) }
    }
}

/// A pointer to a `T` at `off` bytes into the frame's linear data, if it
/// fits there.
///
/// # Safety
/// The pointer is valid until the next helper call that changes the frame
/// (`bpf_xdp_adjust_*`, `bpf_skb_adjust_room`, `bpf_skb_store_bytes`,
/// `bpf_clone_redirect`...); callers use it before
/// such calls.
#[inline(always)]
pub unsafe fn ptr_at<F: Frame, T>(f: &F, off: usize) -> Option<*const T> {
    let start = f.data();
    if start + off + size_of::<T>() > f.data_end() {
        return None;
    }
    Some((start + off) as *const T)
}

/// As [`ptr_at`], for writing.
///
/// # Safety
/// As [`ptr_at`]. In TC the verifier makes a cloned skb's data private
/// before the program runs when it writes packet data in place, and
/// `bpf_clone_redirect` makes the original's head private again after
/// cloning it; pointers must still be taken afresh after either.
#[inline(always)]
pub unsafe fn ptr_at_mut<F: Frame, T>(f: &F, off: usize) -> Option<*mut T> {
    // SAFETY: as documented above.
    unsafe { ptr_at::<F, T>(f, off) }.map(|p| p as *mut T)
}
