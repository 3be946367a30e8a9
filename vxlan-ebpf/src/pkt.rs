//! In-place access to packet data, for XDP and TC alike.

use core::mem::size_of;

use aya_ebpf::programs::{TcContext, XdpContext};

/// A frame whose linear part can be read (and written) in place.
pub trait Frame {
    /// Start of the linear data.
    fn data(&self) -> usize;
    /// End of the linear data.
    fn data_end(&self) -> usize;
    /// Length of the whole frame (for an skb, with its paged part).
    fn frame_len(&self) -> usize;
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
}

/// A pointer to a `T` at `off` bytes into the frame's linear data, if it
/// fits there.
///
/// # Safety
/// The pointer is valid until the next helper call that changes the frame
/// (`bpf_xdp_adjust_*`, `bpf_skb_adjust_room`, `bpf_skb_store_bytes`,
/// `bpf_clone_redirect`...); callers use it before such calls.
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
