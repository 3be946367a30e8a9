//! Outer UDP checksum verification, for XDP and TC, over IPv4 and IPv6;
//! the sum of a frame going out over IPv6 ([`wire_sum`]); the ICMPv6
//! checksum of a Packet Too Big built on a port.
//!
//! The datagram is copied in chunks of 512 bytes into a per-CPU scratch
//! buffer (`bpf_xdp_load_bytes` / `bpf_skb_load_bytes`, which also read an
//! skb's paged part: nothing needs to be pulled) and summed there with
//! `bpf_csum_diff`; the last chunk is zero-padded (zeros add nothing).
//! The work is a BPF subprogram of its own: only its result goes back to
//! the caller, so the verifier checks the rest of the program once, not
//! once per number of chunks.
//!
//! Sums are in the kernel's memory-order convention (`csum_partial`):
//! 16-bit words as they lie in memory, byte-swapped against network order
//! on this little-endian target for every word alike, so the pseudo-header
//! is summed the same way.

use core::ffi::c_void;

use aya_ebpf::{helpers::bpf_csum_diff, programs::TcContext};
use vxlan_common::wire::{ETH_P_IP, ETH_P_IPV6, IPPROTO_UDP};

use crate::{maps::SCRATCH, pkt::Frame};

const IPPROTO_TCP: u8 = 6;

/// Size of the scratch buffer, the largest chunk `bpf_csum_diff` takes.
pub const CHUNK: usize = 512;
/// Enough chunks for the largest UDP datagram.
const MAX_CHUNKS: usize = 0x10000 / CHUNK;

/// Folds a 64-bit one's complement sum to 16 bits.
#[inline(always)]
fn fold(mut s: u64) -> u16 {
    s = (s & 0xffff_ffff) + (s >> 32);
    s = (s & 0xffff_ffff) + (s >> 32);
    s = (s & 0xffff) + (s >> 16);
    s = (s & 0xffff) + (s >> 16);
    s = (s & 0xffff) + (s >> 16);
    s as u16
}

/// Whether the UDP datagram of `len` bytes at offset `off` of the frame,
/// from `src` to `dst` (IPv4), has a correct checksum (the caller skips a
/// zero checksum field). `None` when it cannot be read.
#[inline(always)]
pub fn udp4_ok<F: Frame>(
    f: &F,
    off: usize,
    len: usize,
    src: [u8; 4],
    dst: [u8; 4],
) -> Option<bool> {
    if len > 0xffff {
        return None;
    }
    let l = (len as u16).to_be_bytes();
    let pseudo = u64::from(u32::from_le_bytes(src))
        + u64::from(u32::from_le_bytes(dst))
        + u64::from(u32::from_le_bytes([0, 17, l[0], l[1]]));
    let sum = sum::<F>(f.raw(), off as u32, len as u32, u32::from(fold(pseudo)));
    if sum < 0 {
        return None;
    }
    Some(fold(sum as u64) == 0xffff)
}

/// Sum of the 16 bytes of `a`, as 32-bit words in memory order.
#[inline(always)]
fn sum16(a: &[u8; 16]) -> u64 {
    let mut s = 0u64;
    let mut i = 0;
    while i < 16 {
        s += u64::from(u32::from_le_bytes([a[i], a[i + 1], a[i + 2], a[i + 3]]));
        i += 4;
    }
    s
}

/// Whether the UDP datagram of `len` bytes at offset `off` of the frame,
/// from `src` to `dst` (IPv6), has a correct checksum (the caller refuses
/// a zero checksum field). `None` when it cannot be read.
#[inline(always)]
pub fn udp6_ok<F: Frame>(
    f: &F,
    off: usize,
    len: usize,
    src: &[u8; 16],
    dst: &[u8; 16],
) -> Option<bool> {
    if len > 0xffff {
        return None;
    }
    let l = (len as u16).to_be_bytes();
    let pseudo = sum16(src)
        + sum16(dst)
        + u64::from(u32::from_le_bytes([0, 0, l[0], l[1]]))
        + u64::from(u32::from_le_bytes([0, 0, 0, IPPROTO_UDP]));
    let sum = sum::<F>(f.raw(), off as u32, len as u32, u32::from(fold(pseudo)));
    if sum < 0 {
        return None;
    }
    Some(fold(sum as u64) == 0xffff)
}

/// The one's complement sum (folded, memory order; negative on failure)
/// of the whole frame as it will be on the wire, for the outer UDP
/// checksum over IPv6. `l2` is the length of its Ethernet header with any
/// VLAN tags.
///
/// A frame from a local socket may carry its TCP or UDP checksum still
/// for offload (`CHECKSUM_PARTIAL`: the field holds the pseudo-header
/// sum; a NIC, or the receiver on a veth, completes it). The outer sum
/// must cover the completed bytes, and a completed segment sums to the
/// complement of its pseudo-header (the kernel's `lco_csum`, "local
/// checksum offload", rests on the same identity). `ip_summed` is not
/// readable from TC, so the frame tells: a segment whose sum with its
/// pseudo-header checks out is complete (and counts as it is); one whose
/// field equals its pseudo-header sum is waiting for offload (counted as
/// completed); anything else (a wrong checksum) counts as it is. Both
/// readings agree whenever both could apply.
#[inline(never)]
pub fn wire_sum(ctx: &TcContext, l2: u32) -> i64 {
    let len = ctx.len();
    let raw = ctx.skb.skb as *mut c_void;
    let whole = || sum::<TcContext>(raw, 0, len, 0);
    let l2 = l2 & 0x1f;
    // (A header that is not all there fails to load: summed as it is.)
    if l2 < 14 {
        return whole();
    }
    let Ok(et) = ctx.load::<[u8; 2]>(l2 as usize - 2) else {
        return whole();
    };
    let proto = u16::from_be_bytes(et);
    // The L4 segment (offset, length, protocol) and its pseudo-header sum.
    let (l4_off, l4_len, l4p, pseudo) = match proto {
        ETH_P_IP => {
            let Ok(h) = ctx.load::<[u8; 20]>(l2 as usize) else {
                return whole();
            };
            let ihl = u32::from(h[0] & 0x0f) * 4;
            let tot = u32::from(u16::from_be_bytes([h[2], h[3]]));
            let frag = u16::from_be_bytes([h[6], h[7]]) & 0x3fff;
            if ihl < 20 || frag != 0 || tot < ihl {
                return whole();
            }
            let l4_len = tot - ihl;
            let l = (l4_len as u16).to_be_bytes();
            let pseudo = u64::from(u32::from_le_bytes([h[12], h[13], h[14], h[15]]))
                + u64::from(u32::from_le_bytes([h[16], h[17], h[18], h[19]]))
                + u64::from(u32::from_le_bytes([0, h[9], l[0], l[1]]));
            (l2 + ihl, l4_len, h[9], pseudo)
        }
        ETH_P_IPV6 => {
            let Ok(h) = ctx.load::<[u8; 8]>(l2 as usize) else {
                return whole();
            };
            let (Ok(src), Ok(dst)) = (
                ctx.load::<[u8; 16]>(l2 as usize + 8),
                ctx.load::<[u8; 16]>(l2 as usize + 24),
            ) else {
                return whole();
            };
            let plen = u32::from(u16::from_be_bytes([h[4], h[5]]));
            let pseudo = sum16(&src)
                + sum16(&dst)
                + u64::from(u32::from_le_bytes([0, 0, h[4], h[5]]))
                + u64::from(u32::from_le_bytes([0, 0, 0, h[6]]));
            (l2 + 40, plen, h[6], pseudo)
        }
        _ => return whole(),
    };
    let field_at = match l4p {
        IPPROTO_TCP => l4_off + 16,
        IPPROTO_UDP => l4_off + 6,
        _ => return whole(),
    };
    // Only a segment that ends the frame (no padding after it).
    if l4_off + l4_len != len || l4_len < 8 || field_at + 2 > len {
        return whole();
    }
    let Ok(field) = ctx.load::<[u8; 2]>(field_at as usize) else {
        return whole();
    };
    if l4p == IPPROTO_UDP && field == [0, 0] {
        // No UDP checksum: nothing to complete.
        return whole();
    }
    let head = sum::<TcContext>(raw, 0, l4_off, 0);
    let seg = sum::<TcContext>(raw, l4_off, l4_len, 0);
    if head < 0 || seg < 0 {
        return -1;
    }
    let p = fold(pseudo);
    let complete = fold(seg as u64 + u64::from(p)) == 0xffff;
    let seg_final = if !complete && u16::from_le_bytes(field) == p {
        u64::from(!p)
    } else {
        seg as u64
    };
    i64::from(fold(head as u64 + seg_final))
}

/// The ICMPv6 checksum field's bytes for the `len`-byte ICMPv6 message at
/// offset `off` of the frame (its checksum field zero), from `src` to
/// `dst`. `None` when it cannot be read.
#[inline(always)]
pub fn icmp6<F: Frame>(
    f: &F,
    off: usize,
    len: usize,
    src: &[u8; 16],
    dst: &[u8; 16],
) -> Option<[u8; 2]> {
    if len > 0xffff {
        return None;
    }
    let l = (len as u16).to_be_bytes();
    let mut pseudo = u64::from(u32::from_le_bytes([0, 0, l[0], l[1]]))
        + u64::from(u32::from_le_bytes([0, 0, 0, 58]));
    let mut i = 0;
    while i < 16 {
        pseudo += u64::from(u32::from_le_bytes([
            src[i],
            src[i + 1],
            src[i + 2],
            src[i + 3],
        ])) + u64::from(u32::from_le_bytes([
            dst[i],
            dst[i + 1],
            dst[i + 2],
            dst[i + 3],
        ]));
        i += 4;
    }
    let sum = sum::<F>(f.raw(), off as u32, len as u32, u32::from(fold(pseudo)));
    if sum < 0 {
        return None;
    }
    Some((!fold(sum as u64)).to_le_bytes())
}

/// One's complement sum (unfolded, or negative on failure) of `len` bytes
/// at `off`, added to `seed`.
#[inline(never)]
fn sum<F: Frame>(raw: *mut c_void, off: u32, len: u32, seed: u32) -> i64 {
    let Some(buf) = SCRATCH.get_ptr_mut(0) else {
        return -1;
    };
    let buf = buf as *mut u8;
    let mut sum = seed;
    let mut done: u32 = 0;
    for _ in 0..MAX_CHUNKS {
        if done >= len {
            break;
        }
        let left = len - done;
        if left >= CHUNK as u32 {
            // SAFETY: CHUNK bytes into a CHUNK-byte buffer.
            if unsafe { F::load_bytes(raw, off + done, buf as *mut c_void, CHUNK as u32) } != 0 {
                return -1;
            }
            // SAFETY: the helper only reads CHUNK bytes of the buffer.
            let r = unsafe {
                bpf_csum_diff(core::ptr::null_mut(), 0, buf as *mut u32, CHUNK as u32, sum)
            };
            if r < 0 {
                return -1;
            }
            sum = r as u32;
            done += CHUNK as u32;
            continue;
        }
        // The last, shorter chunk. Read back through memory so that the
        // compiler cannot drop the masks: the verifier needs them to see
        // that the sizes fit the buffer.
        // SAFETY: a local.
        let n = unsafe { core::ptr::read_volatile(&left) } & (CHUNK as u32 - 1);
        if n == 0 {
            return -1;
        }
        // SAFETY: `n` is below CHUNK, the buffer's size.
        if unsafe { F::load_bytes(raw, off + done, buf as *mut c_void, n) } != 0 {
            return -1;
        }
        // Whole 32-bit words through the helper, then 0 to 3 bytes; the
        // words start at an even offset of the datagram.
        let words = n & (CHUNK as u32 - 4);
        // SAFETY: `words` bytes of the buffer, fewer than CHUNK.
        let r = unsafe { bpf_csum_diff(core::ptr::null_mut(), 0, buf as *mut u32, words, sum) };
        if r < 0 {
            return -1;
        }
        let mut tail = r as u32 as u64;
        let rest = (n & 3) as usize;
        let at = words as usize;
        // SAFETY: `at + 2` is below CHUNK (`at` at most CHUNK - 4).
        unsafe {
            if rest >= 1 {
                tail += u64::from(*buf.add(at));
            }
            if rest >= 2 {
                tail += u64::from(*buf.add(at + 1)) << 8;
            }
            if rest == 3 {
                tail += u64::from(*buf.add(at + 2));
            }
        }
        return i64::from(fold(tail));
    }
    if done < len {
        return -1;
    }
    i64::from(sum)
}
