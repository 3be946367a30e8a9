//! The bpf(2) calls aya has no API for (batched map operations; loading a
//! hand-assembled program, see [`asm`], for tests and the bench), with
//! aya's generated kernel ABI (`aya_obj::generated`) instead of private
//! copies of `union bpf_attr`.

use std::{
    io,
    os::fd::{FromRawFd as _, OwnedFd},
};

pub mod asm;

pub use aya_obj::generated::{bpf_attach_type, bpf_attr, bpf_cmd, bpf_func_id, bpf_prog_type};

/// An all-zero `union bpf_attr`: what the kernel expects in every field a
/// command does not use.
pub fn zeroed_attr() -> bpf_attr {
    // SAFETY: `bpf_attr` is a union of plain integer structs; all-zero is
    // a valid value of each.
    unsafe { std::mem::zeroed() }
}

/// bpf(2): the syscall's return value (a new descriptor for the commands
/// that create one).
///
/// # Safety
/// Every pointer in the member of `attr` that `cmd` uses must be valid for
/// the sizes given there (the kernel reads and writes through them).
pub unsafe fn bpf(cmd: bpf_cmd, attr: &mut bpf_attr) -> io::Result<i64> {
    // SAFETY: the caller vouches for the pointers in `attr`.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd as libc::c_long,
            attr as *mut bpf_attr,
            size_of::<bpf_attr>() as libc::c_uint,
        )
    };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

/// Loads `r0 = action; exit` as an XDP program named `name` (at most 15
/// bytes): no object file needed. For tests that need an XDP program of
/// "someone else" (attachment, replacement) and for the bench's floor.
pub fn load_xdp_returning(action: u32, name: &str) -> io::Result<OwnedFd> {
    load_returning(bpf_prog_type::BPF_PROG_TYPE_XDP, action, name)
}

/// Loads `r0 = action; exit` as a program of type `prog_type` named `name`
/// (at most 15 bytes).
pub fn load_returning(prog_type: bpf_prog_type, action: u32, name: &str) -> io::Result<OwnedFd> {
    load_insns(
        prog_type,
        &[asm::mov_imm(asm::R0, action as i32), asm::exit()],
        name,
    )
}

/// Loads raw instructions (`struct bpf_insn`, 8 bytes each) as a
/// GPL-licensed XDP program named `name` (at most 15 bytes).
pub fn load_xdp_insns(insns: &[[u8; 8]], name: &str) -> io::Result<OwnedFd> {
    load_insns(bpf_prog_type::BPF_PROG_TYPE_XDP, insns, name)
}

/// Loads raw instructions (`struct bpf_insn`, 8 bytes each) as a
/// GPL-licensed program of type `prog_type` named `name` (at most 15
/// bytes). A program the verifier refuses is loaded once more with its log,
/// which the error then carries.
pub fn load_insns(prog_type: bpf_prog_type, insns: &[[u8; 8]], name: &str) -> io::Result<OwnedFd> {
    load_insns_logged(prog_type, insns, name, None).or_else(|e| {
        let mut log = vec![0u8; 1 << 16];
        match load_insns_logged(prog_type, insns, name, Some(&mut log)) {
            Ok(fd) => Ok(fd),
            Err(e2) => {
                let end = log.iter().position(|&b| b == 0).unwrap_or(log.len());
                let text = String::from_utf8_lossy(&log[..end]);
                let text = text.trim_end();
                if text.is_empty() {
                    return Err(e);
                }
                Err(io::Error::new(
                    e.kind(),
                    format!("{e2}; the verifier's log:\n{text}"),
                ))
            }
        }
    })
}

fn load_insns_logged(
    prog_type: bpf_prog_type,
    insns: &[[u8; 8]],
    name: &str,
    log: Option<&mut [u8]>,
) -> io::Result<OwnedFd> {
    let license = c"GPL";
    let mut attr = zeroed_attr();
    // SAFETY: writing the `BPF_PROG_LOAD` member of a zeroed union.
    let load = unsafe { &mut attr.__bindgen_anon_3 };
    load.prog_type = prog_type as u32;
    load.insn_cnt = insns.len() as u32;
    load.insns = insns.as_ptr() as u64;
    load.license = license.as_ptr() as u64;
    if let Some(log) = log {
        load.log_level = 1;
        load.log_buf = log.as_mut_ptr() as u64;
        load.log_size = log.len() as u32;
    }
    for (d, s) in load.prog_name.iter_mut().zip(name.bytes().take(15)) {
        *d = s as libc::c_char;
    }
    // SAFETY: `insns`, `license` and the log outlive the call.
    let fd = unsafe { bpf(bpf_cmd::BPF_PROG_LOAD, &mut attr) }?;
    // SAFETY: a new descriptor the kernel just returned to us.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}
