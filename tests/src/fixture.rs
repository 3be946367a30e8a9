//! The BPF_PROG_TEST_RUN datapath fixture, shared by the program tests
//! (`tests/tests/prog_test_run.rs`), the datapath fuzzer
//! (`tests/tests/fuzz.rs`) and the per-packet bench figures (`cargo xtask
//! bench`, `xtask/src/bench/testrun.rs`): the eBPF programs loaded but
//! attached nowhere, their maps, one call to run a frame through one of
//! them, and the private network namespace the calling thread moves into
//! first.
//!
//! Why a private namespace: the programs really send the copies they make
//! (`bpf_clone_redirect`), out of the devices named in their maps. Those
//! are veths created here, never an interface of the root namespace. The
//! namespace belongs to the calling thread and goes away with it.
//!
//! Errors are returned (with context), not panicked on: the bench reports
//! them; tests `expect` them.

use std::{
    io::Write as _,
    os::fd::{AsFd as _, AsRawFd as _, BorrowedFd, OwnedFd},
    process::{Command, Stdio},
};

use anyhow::{Context as _, Result, anyhow, bail};
use aya::{
    Ebpf, EbpfLoader,
    maps::IterableMap as _,
    programs::{ProgramError, SchedClassifier, TestRun as _, TestRunOptions, TestRunResult, Xdp},
};
use nix::sched::{CloneFlags, unshare};
use vxlan_common::{CFG_F_LEARNING, Config, Counter, map, prog};
pub use vxlan_user::maps::Maps;
use vxlan_user::sys_bpf::{
    bpf, bpf_cmd, bpf_prog_type, load_insns, load_returning, load_xdp_returning, zeroed_attr,
};

use crate::frames::format_mac;

/// XDP actions (`enum xdp_action`).
pub const XDP_ABORTED: u32 = 0;
pub const XDP_DROP: u32 = 1;
pub const XDP_PASS: u32 = 2;
/// TC actions (`TC_ACT_*`), as the u32 BPF_PROG_TEST_RUN reports.
pub const TC_ACT_OK: u32 = 0;
pub const TC_ACT_SHOT: u32 = 2;
pub const TC_ACT_REDIRECT: u32 = 7;
/// `TC_ACT_UNSPEC` (-1).
pub const TC_ACT_UNSPEC: u32 = u32::MAX;

/// The host the fixture plays (h1 of the seed topology): its underlay
/// address and uplink MAC, one remote VTEP (h2) and its MAC, two
/// containers c1 (local) and c2 (behind the remote), and their VNI.
pub const LOCAL: [u8; 4] = [192, 168, 57, 50];
pub const REMOTE: [u8; 4] = [192, 168, 57, 54];
pub const UPLINK_MAC: [u8; 6] = [0x02, 0xaa, 0, 0, 0, 0x50];
pub const REMOTE_MAC: [u8; 6] = [0x02, 0xaa, 0, 0, 0, 0x54];
pub const C1_MAC: [u8; 6] = [0x02, 0xc1, 0, 0, 0, 0x01];
pub const C2_MAC: [u8; 6] = [0x02, 0xc2, 0, 0, 0, 0x02];
pub const VNI: u32 = 42;
/// The host's and the remote's addresses on an IPv6 underlay: fd00:57::1
/// (h1, [`config6`]'s `local_ip6`) and fd00:57::2 (h2).
pub const LOCAL6: [u8; 16] = [0xfd, 0, 0, 0x57, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
pub const REMOTE6: [u8; 16] = [0xfd, 0, 0, 0x57, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2];
/// `Config::meta_key` of [`config`]: what the XDP program writes into
/// every `XdpMeta`, and what the TC program requires of one.
pub const META_KEY: [u32; 2] = [0x6b65_7931, 0x5eed_0042];
/// The VXLAN port.
pub const DSTPORT: u16 = 4789;
/// The ifindex of `lo`: BPF_PROG_TEST_RUN builds a TC program's skb as
/// received on it.
pub const LO: u32 = 1;

/// A veth pair of the private namespace: `name` (the end the programs
/// use) and `peer`, both up.
#[derive(Clone, Copy, Debug)]
pub struct Veth<'a> {
    pub name: &'a str,
    pub peer: &'a str,
    /// Both ends' MTU (the kernel's default when `None`).
    pub mtu: Option<u32>,
    /// `name`'s MAC (random when `None`).
    pub mac: Option<[u8; 6]>,
}

impl<'a> Veth<'a> {
    pub fn new(name: &'a str, peer: &'a str) -> Self {
        Self {
            name,
            peer,
            mtu: None,
            mac: None,
        }
    }
}

/// Moves the calling thread into a network namespace of its own, without
/// IPv6, with `lo` up (with MAC `lo_mac`, if given) and the veth pairs
/// `veths`; returns the ifindex of each pair's `name` end.
///
/// `lo_mac`: a TC program's test-run skb is received on `lo`; with the
/// uplink's MAC, frames to the uplink MAC are PACKET_HOST there, not
/// PACKET_OTHERHOST.
pub fn private_netns(lo_mac: Option<[u8; 6]>, veths: &[Veth<'_>]) -> Result<Vec<u32>> {
    // CLONE_NEWNET only affects this thread.
    unshare(CloneFlags::CLONE_NEWNET).context("unshare(CLONE_NEWNET)")?;
    // No IPv6: nothing but the programs' copies leaves the devices (no
    // DAD, router or MLD solicitations), so a capture sees only those.
    for f in ["all", "default"] {
        let _ = std::fs::write(format!("/proc/sys/net/ipv6/conf/{f}/disable_ipv6"), "1");
    }
    let mut cmds = String::new();
    if let Some(mac) = lo_mac {
        cmds += &format!("link set lo address {}\n", format_mac(&mac));
    }
    cmds += "link set lo up\n";
    for v in veths {
        let mtu = v.mtu.map(|m| format!(" mtu {m}")).unwrap_or_default();
        cmds += &format!(
            "link add {}{mtu} type veth peer name {}{mtu}\n",
            v.name, v.peer
        );
        if let Some(mac) = v.mac {
            cmds += &format!("link set {} address {}\n", v.name, format_mac(&mac));
        }
        cmds += &format!("link set {} up\nlink set {} up\n", v.name, v.peer);
    }
    ip_batch(&cmds)?;
    veths.iter().map(|v| ifindex(v.name)).collect()
}

/// Runs `ip -batch -` with `cmds` (in the calling thread's namespace).
pub fn ip_batch(cmds: &str) -> Result<()> {
    let mut child = Command::new("ip")
        .args(["-batch", "-"])
        .stdin(Stdio::piped())
        .spawn()
        .context("running ip")?;
    child
        .stdin
        .take()
        .context("ip's stdin")?
        .write_all(cmds.as_bytes())
        .context("writing to ip -batch")?;
    let st = child.wait().context("waiting for ip")?;
    if !st.success() {
        bail!("ip -batch failed ({st}):\n{cmds}");
    }
    Ok(())
}

/// The ifindex of `name` in the calling thread's namespace.
pub fn ifindex(name: &str) -> Result<u32> {
    let c = std::ffi::CString::new(name).with_context(|| format!("interface name {name:?}"))?;
    // SAFETY: a NUL-terminated name.
    match unsafe { libc::if_nametoindex(c.as_ptr()) } {
        0 => Err(std::io::Error::last_os_error()).with_context(|| format!("no interface {name}")),
        i => Ok(i),
    }
}

/// The datapath programs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Prog {
    /// XDP on the uplink (decapsulation).
    Xdp,
    /// TC on the local ports (encapsulation, local switching, flooding).
    TcPort,
    /// TC on the uplink (decapsulation when there is no XDP; delivery of
    /// what XDP decapsulated).
    TcUplink,
}

impl Prog {
    /// The program's name in the object.
    pub fn name(self) -> &'static str {
        match self {
            Self::Xdp => prog::XDP_UPLINK,
            Self::TcPort => prog::TC_PORT,
            Self::TcUplink => prog::TC_UPLINK,
        }
    }
}

/// The configuration of the host the fixture plays: [`LOCAL`] on the
/// uplink `uplink_ifindex` ([`UPLINK_MAC`], MTU 1500), VXLAN port 4789,
/// learning on, at most `max_learned` learned entries.
pub fn config(uplink_ifindex: u32, max_learned: u32) -> Config {
    Config {
        local_ip: LOCAL,
        uplink_ifindex,
        dstport: DSTPORT,
        port_lo: 32768,
        port_hi: 60999,
        ttl: 64,
        mcast_ttl: 1,
        flags: CFG_F_LEARNING,
        max_learned,
        uplink_mac: UPLINK_MAC,
        uplink_mtu: 1500,
        meta_key: META_KEY,
        ..Default::default()
    }
}

/// [`config`] with the IPv6 underlay address [`LOCAL6`] as well.
pub fn config6(uplink_ifindex: u32, max_learned: u32) -> Config {
    Config {
        local_ip6: LOCAL6,
        ..config(uplink_ifindex, max_learned)
    }
}

/// The loaded programs (attached nowhere) and their maps.
pub struct Datapath {
    pub ebpf: Ebpf,
    pub maps: Maps,
}

impl Datapath {
    /// Loads the object and its three programs; `fdb_capacity` sizes the
    /// FDB (the object's default when `None`). The maps are empty.
    pub fn load(fdb_capacity: Option<u32>) -> Result<Self> {
        let mut loader = EbpfLoader::new();
        if let Some(c) = fdb_capacity {
            loader.map_max_entries(map::FDB, c);
        }
        let mut ebpf = loader
            .load(vxlan_user::EBPF_OBJ)
            .context("loading the eBPF object")?;
        let xdp: &mut Xdp = program(&mut ebpf, prog::XDP_UPLINK)?.try_into()?;
        xdp.load().context("loading the XDP program")?;
        for name in [prog::TC_UPLINK, prog::TC_PORT] {
            let tc: &mut SchedClassifier = program(&mut ebpf, name)?.try_into()?;
            tc.load().with_context(|| format!("loading {name}"))?;
        }
        let maps = Maps::take(&mut ebpf)?;
        Ok(Self { ebpf, maps })
    }

    /// Sets the configuration (`CONFIG[0]`).
    pub fn set_config(&mut self, cfg: Config) -> Result<()> {
        self.maps.config.set(0, cfg, 0).context("CONFIG")
    }

    /// Changes `Config::flags`.
    pub fn set_cfg_flags(&mut self, flags: u32) -> Result<()> {
        let mut cfg = self.maps.config.get(&0, 0).context("CONFIG")?;
        cfg.flags = flags;
        self.set_config(cfg)
    }

    /// One BPF_PROG_TEST_RUN of `which` on `frame`, the output into `out`
    /// (which must have room for it). A TC program's skb is received on
    /// `ifindex` (ignored for XDP).
    ///
    /// The error is aya's, as is: a fuzzer expects the kernel to refuse
    /// some frames, thousands of times, so no context (nor, with
    /// `RUST_BACKTRACE` set, a backtrace) is built for it here.
    pub fn test_run(
        &mut self,
        which: Prog,
        frame: &[u8],
        ifindex: u32,
        out: &mut [u8],
    ) -> Result<TestRunResult, ProgramError> {
        // struct __sk_buff is 192 bytes; `ifindex` is at offset 40.
        let mut ctx = [0u8; 192];
        ctx[40..44].copy_from_slice(&ifindex.to_ne_bytes());
        let opts = TestRunOptions {
            data_in: Some(frame),
            data_out: Some(out),
            ctx_in: (which != Prog::Xdp).then_some(&ctx[..]),
            ..Default::default()
        };
        // `load` found and loaded all three.
        let p = self
            .ebpf
            .program_mut(which.name())
            .expect("a loaded program");
        if which == Prog::Xdp {
            <&mut Xdp>::try_from(p)?.test_run(opts)
        } else {
            <&mut SchedClassifier>::try_from(p)?.test_run(opts)
        }
    }

    /// Runs `frame` through `which` once: the action and the frame out.
    pub fn run(
        &mut self,
        which: Prog,
        frame: &[u8],
        ifindex: u32,
    ) -> Result<(u32, Vec<u8>), ProgramError> {
        let mut out = vec![0u8; frame.len() + 256];
        let r = self.test_run(which, frame, ifindex, &mut out)?;
        out.truncate(r.data_size_out as usize);
        Ok((r.return_value, out))
    }

    /// One counter, summed over CPUs.
    pub fn counter(&self, c: Counter) -> Result<u64> {
        let per_cpu = self.maps.counters.get(&(c as u32), 0).context("COUNTERS")?;
        Ok(per_cpu.iter().sum())
    }

    /// Every counter (indexed by `Counter as usize`), summed over CPUs, read
    /// with one `BPF_MAP_LOOKUP_BATCH` (a fuzzer reads them after every
    /// frame).
    pub fn counters(&self) -> Result<Vec<u64>> {
        let n = Counter::ALL.len();
        let ncpus = aya::util::nr_cpus()
            .map_err(|(_, e)| e)
            .context("possible CPUs")?;
        let mut keys = vec![0u32; n];
        let mut vals = vec![0u64; n * ncpus];
        let mut out_batch = 0u32;
        let mut attr = zeroed_attr();
        // SAFETY: writing the `batch` member of a zeroed union.
        let batch = unsafe { &mut attr.batch };
        batch.out_batch = &raw mut out_batch as u64;
        batch.keys = keys.as_mut_ptr() as u64;
        batch.values = vals.as_mut_ptr() as u64;
        batch.count = n as u32;
        batch.map_fd = self.maps.counters.map().fd().as_fd().as_raw_fd() as u32;
        // SAFETY: `keys`, `vals` and `out_batch` have room for `count`
        // entries of all CPUs and outlive the call.
        match unsafe { bpf(bpf_cmd::BPF_MAP_LOOKUP_BATCH, &mut attr) } {
            // ENOENT: the last entries (all of them here).
            Err(e) if e.raw_os_error() != Some(libc::ENOENT) => {
                return Err(e).context("BPF_MAP_LOOKUP_BATCH on COUNTERS");
            }
            _ => {}
        }
        // SAFETY: the member written above, updated by the kernel.
        let got = unsafe { attr.batch.count } as usize;
        if got != n {
            bail!("BPF_MAP_LOOKUP_BATCH read {got} of {n} counters");
        }
        let mut sums = vec![0u64; n];
        for (i, k) in keys.iter().enumerate() {
            sums[*k as usize] = vals[i * ncpus..(i + 1) * ncpus].iter().sum();
        }
        Ok(sums)
    }
}

fn program<'a>(ebpf: &'a mut Ebpf, name: &str) -> Result<&'a mut aya::programs::Program> {
    ebpf.program_mut(name)
        .ok_or_else(|| anyhow!("program {name} missing from the eBPF object"))
}

/// A one-instruction program (`return action`) loaded with bpf(2): no
/// object needed. XDP: the bench's floor, "someone else's" XDP program;
/// TC ([`RawProg::load_tc`]): the bench's TC floor.
pub struct RawProg {
    fd: OwnedFd,
}

impl RawProg {
    /// An XDP program.
    pub fn load(action: u32, name: &str) -> Result<Self> {
        let fd = load_xdp_returning(action, name)
            .with_context(|| format!("BPF_PROG_LOAD of XDP program {name}"))?;
        Ok(Self { fd })
    }

    /// A TC (`BPF_PROG_TYPE_SCHED_CLS`) program.
    pub fn load_tc(action: u32, name: &str) -> Result<Self> {
        let fd = load_returning(bpf_prog_type::BPF_PROG_TYPE_SCHED_CLS, action, name)
            .with_context(|| format!("BPF_PROG_LOAD of TC program {name}"))?;
        Ok(Self { fd })
    }

    /// A program of type `prog_type` from hand-assembled instructions
    /// (`vxlan_user::sys_bpf::asm`).
    pub fn from_insns(prog_type: bpf_prog_type, insns: &[[u8; 8]], name: &str) -> Result<Self> {
        let fd = load_insns(prog_type, insns, name)
            .with_context(|| format!("BPF_PROG_LOAD of program {name}"))?;
        Ok(Self { fd })
    }

    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// One BPF_PROG_TEST_RUN of `frame` repeated `repeat` times: the
    /// program's return value and the kernel's mean duration of a run, ns.
    pub fn test_run(&self, frame: &[u8], repeat: u32) -> Result<(u32, u32)> {
        let mut attr = zeroed_attr();
        // SAFETY: writing the `test` member of a zeroed union.
        let test = unsafe { &mut attr.test };
        test.prog_fd = self.fd.as_raw_fd() as u32;
        test.data_size_in = frame.len() as u32;
        test.data_in = frame.as_ptr() as u64;
        test.repeat = repeat;
        // SAFETY: `frame` outlives the call; no output buffers.
        unsafe { bpf(bpf_cmd::BPF_PROG_TEST_RUN, &mut attr) }
            .context("BPF_PROG_TEST_RUN of a raw program")?;
        // SAFETY: the member written above, updated by the kernel.
        let test = unsafe { attr.test };
        Ok((test.retval, test.duration))
    }
}
