//! Figure 3: per-packet cost of each datapath program, measured with
//! BPF_PROG_TEST_RUN on crafted frames, as `tests/tests/prog_test_run.rs`
//! runs them, in a private network namespace of the measuring thread.
//!
//! Why one run per syscall: with `repeat > 1` the kernel runs the program
//! again and again on the *same* buffer, so after the first run the XDP
//! decapsulation sees the inner frame (its outer headers were stripped) and
//! the TC encapsulation sees the frame it encapsulated itself: every run
//! after the first measures another path. So each case is run `runs` times
//! with `repeat = 1`, and the kernel-reported `duration` (measured in the
//! kernel around the program alone, not the syscall) is averaged. That
//! duration includes the kernel's own timing overhead of one run (two clock
//! reads, bottom halves off and on); the floor, an XDP program that only
//! returns XDP_DROP, is measured the same way and also with `repeat = runs`
//! in one call (a program that changes nothing can be repeated), which
//! shows that overhead.

use std::{
    ffi::CStr,
    os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd},
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, anyhow, bail};
use aya::{
    Ebpf, EbpfLoader,
    maps::lpm_trie::Key,
    programs::{SchedClassifier, TestRun as _, TestRunOptions, Xdp},
};
use serde::Serialize;
use vxlan_common::{
    CFG_F_LEARNING, CFG_F_TC_DECAP, Config, FDB_F_STATIC, FDB_STATIC_RESERVE, FdbEntry, FdbKey,
    NeighEntry, PORT_F_PEER, PortInfo, VNI_F_ANY_SENDER, VniInfo, allow_data, map, prog,
    wire::{Outer, build_outer},
};
use vxlan_user::maps::Maps;

use crate::util::output;

const XDP_PASS: u32 = 2;
const TC_ACT_SHOT: u32 = 2;
const TC_ACT_REDIRECT: u32 = 7;

const LOCAL: [u8; 4] = [192, 168, 57, 50];
const REMOTE: [u8; 4] = [192, 168, 57, 54];
const UPLINK_MAC: [u8; 6] = [0x02, 0xaa, 0, 0, 0, 0x50];
const REMOTE_MAC: [u8; 6] = [0x02, 0xaa, 0, 0, 0, 0x54];
const C1_MAC: [u8; 6] = [0x02, 0xc1, 0, 0, 0, 0x01];
const C2_MAC: [u8; 6] = [0x02, 0xc2, 0, 0, 0, 0x02];
const VNI: u32 = 42;
/// Wall-clock budget of one case: the flood to 64 remotes costs tens of
/// microseconds a run, so it stops early (the runs done are reported).
const CASE_BUDGET: Duration = Duration::from_secs(4);

/// One measured case.
#[derive(Debug, Clone, Serialize)]
pub struct Case {
    pub key: String,
    pub what: String,
    /// Mean kernel-reported duration of one run, ns.
    pub ns: f64,
    pub runs: u64,
    /// The program's return value (checked: it must be the expected action).
    pub retval: u32,
}

/// Parameters of figure 3.
pub struct Params {
    pub runs: u64,
    /// FDB sizes to repeat decap and encap with (e.g. 1000 and 1_000_000).
    pub fdb_sizes: Vec<u64>,
}

/// Runs figure 3 on a thread of its own (it moves into a private network
/// namespace, which goes away with the thread).
pub fn run(params: Params) -> Result<Vec<Case>> {
    std::thread::Builder::new()
        .name("bench-testrun".into())
        .spawn(move || run_here(&params))
        .context("spawning the test-run thread")?
        .join()
        .map_err(|_| anyhow!("the test-run thread panicked"))?
}

/// Devices of the private namespace.
struct Devs {
    /// Ingress port of the TC cases (a veth, `pa`).
    port: u32,
    /// Where encapsulated copies go (a veth, `ua`, whose peer `ub` drops them
    /// in its stack: not for its MAC).
    uplink: u32,
}

fn private_netns() -> Result<Devs> {
    // SAFETY: unshare(2) of the network namespace affects this thread only.
    if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
        return Err(std::io::Error::last_os_error()).context("unshare(CLONE_NEWNET)");
    }
    for args in [
        &["link", "set", "lo", "up"][..],
        &["link", "add", "pa", "type", "veth", "peer", "name", "pb"],
        &["link", "add", "ua", "type", "veth", "peer", "name", "ub"],
        // The TC uplink case is received on `ua`: with the uplink's MAC a
        // frame to it is PACKET_HOST (another MAC would be dropped as
        // PACKET_OTHERHOST).
        &["link", "set", "ua", "address", "02:aa:00:00:00:50"],
        &["link", "set", "pa", "up"],
        &["link", "set", "pb", "up"],
        &["link", "set", "ua", "up"],
        &["link", "set", "ub", "up"],
    ] {
        // Started from this thread: runs in the private namespace.
        output(std::process::Command::new("ip").args(args))?;
    }
    let index = |name: &CStr| {
        // SAFETY: a NUL-terminated name.
        let i = unsafe { libc::if_nametoindex(name.as_ptr()) };
        if i == 0 {
            bail!("{name:?} missing in the private namespace");
        }
        Ok(i)
    };
    Ok(Devs {
        port: index(c"pa")?,
        uplink: index(c"ua")?,
    })
}

fn run_here(params: &Params) -> Result<Vec<Case>> {
    let devs = private_netns()?;
    let mut cases = Vec::new();
    let frames = Frames::new();

    // The floor, both ways.
    let floor = RawXdpDrop::load()?;
    let (ns, runs) = floor.per_call(&frames.vxlan, params.runs)?;
    cases.push(Case {
        key: "floor_xdp_drop".into(),
        what: "floor: XDP program `return XDP_DROP`, one run per call (as the cases below)".into(),
        ns,
        runs,
        retval: 1,
    });
    let ns = floor.repeated(&frames.vxlan, params.runs)?;
    cases.push(Case {
        key: "floor_xdp_drop_repeat".into(),
        what: format!("floor: same program, repeat={} in one call", params.runs),
        ns,
        runs: params.runs,
        retval: 1,
    });
    drop(floor);

    let mut dp = Dp::new(&devs, None)?;
    cases.push(dp.case(
        "xdp_decap",
        "XDP decap, known unicast (to a local port)",
        &frames.vxlan,
        Prog::Xdp,
        XDP_PASS,
        params.runs,
    )?);
    cases.push(dp.case(
        "tc_decap",
        "TC decap (no XDP: the default on veth uplinks), known unicast",
        &frames.vxlan,
        Prog::Uplink,
        TC_ACT_REDIRECT,
        params.runs,
    )?);
    cases.push(dp.case(
        "tc_encap",
        "TC encap, known unicast (to a remote VTEP)",
        &frames.inner_to_remote,
        Prog::Port,
        TC_ACT_REDIRECT,
        params.runs,
    )?);
    for n in [1usize, 8, 64] {
        dp.set_remotes(n)?;
        cases.push(dp.case(
            &format!("tc_flood_{n}"),
            &format!("TC flood (ARP broadcast) to {n} remote(s), no local copy"),
            &frames.arp,
            Prog::Port,
            TC_ACT_SHOT,
            params.runs,
        )?);
    }
    drop(dp);

    // The same with the entries learned by the programs themselves, as
    // with real traffic (learning refreshes, the entries' own fields).
    let mut dp = Dp::new(&devs, None)?;
    dp.unpin()?;
    dp.warm(&frames.vxlan, Prog::Xdp)?;
    dp.warm(&frames.inner_to_remote, Prog::Port)?;
    for (key, what, frame, which, expect) in [
        (
            "xdp_decap_learned",
            "XDP decap, known unicast, learned entries",
            &frames.vxlan,
            Prog::Xdp,
            XDP_PASS,
        ),
        (
            "tc_decap_learned",
            "TC decap, known unicast, learned entries",
            &frames.vxlan,
            Prog::Uplink,
            TC_ACT_REDIRECT,
        ),
        (
            "tc_encap_learned",
            "TC encap, known unicast, learned entries",
            &frames.inner_to_remote,
            Prog::Port,
            TC_ACT_REDIRECT,
        ),
    ] {
        cases.push(dp.case(key, what, frame, which, expect, params.runs)?);
    }
    // What the anti-spoofing trie lookup costs: the same without it.
    dp.any_sender()?;
    cases.push(dp.case(
        "xdp_decap_learned_any_sender",
        "XDP decap, learned entries, VNI open to any sender (no ALLOWED lookup)",
        &frames.vxlan,
        Prog::Xdp,
        XDP_PASS,
        params.runs,
    )?);
    drop(dp);

    for &size in &params.fdb_sizes {
        // Sized as the forwarder of figure 4 sizes it: --max-fdb (the
        // default, or size + 100k) + the static reserve.
        let capacity =
            super::max_fdb_for(size).unwrap_or(vxlan_common::DEFAULT_MAX_FDB) + FDB_STATIC_RESERVE;
        let mut dp = Dp::new(&devs, Some(capacity))?;
        dp.fill(size)?;
        let label = super::scale_label(size);
        cases.push(dp.case(
            &format!("xdp_decap_fdb_{size}"),
            &format!("XDP decap, known unicast, FDB {label}"),
            &frames.vxlan,
            Prog::Xdp,
            XDP_PASS,
            params.runs,
        )?);
        cases.push(dp.case(
            &format!("tc_decap_fdb_{size}"),
            &format!("TC decap, known unicast, FDB {label}"),
            &frames.vxlan,
            Prog::Uplink,
            TC_ACT_REDIRECT,
            params.runs,
        )?);
        cases.push(dp.case(
            &format!("tc_encap_fdb_{size}"),
            &format!("TC encap, known unicast, FDB {label}"),
            &frames.inner_to_remote,
            Prog::Port,
            TC_ACT_REDIRECT,
            params.runs,
        )?);
    }
    Ok(cases)
}

struct Frames {
    /// VXLAN from REMOTE to LOCAL; inner: c2 -> c1 (a known local port).
    vxlan: Vec<u8>,
    /// Inner frame c1 -> c2 (known behind REMOTE), as a container sends it.
    inner_to_remote: Vec<u8>,
    /// ARP request broadcast by c1.
    arp: Vec<u8>,
}

impl Frames {
    fn new() -> Self {
        let to_c1 = inner_udp(C1_MAC, C2_MAC);
        let o = Outer {
            src_mac: REMOTE_MAC,
            dst_mac: UPLINK_MAC,
            src_ip: REMOTE,
            dst_ip: LOCAL,
            src_port: 50_000,
            dst_port: 4789,
            vni: VNI,
            ttl: 64,
            tos: 0,
            ip_id: 7,
        };
        let mut vxlan = build_outer(&o, to_c1.len() as u16).to_vec();
        vxlan.extend_from_slice(&to_c1);
        let mut arp = vec![0xff; 6];
        arp.extend_from_slice(&C1_MAC);
        arp.extend_from_slice(&[0x08, 0x06, 0, 1, 0x08, 0, 6, 4, 0, 1]);
        arp.extend_from_slice(&C1_MAC);
        arp.extend_from_slice(&[172, 18, 1, 2, 0, 0, 0, 0, 0, 0, 172, 18, 1, 3]);
        Self {
            vxlan,
            inner_to_remote: inner_udp(C2_MAC, C1_MAC),
            arp,
        }
    }
}

/// The "64-byte" frame of figure 1: Ethernet + IPv4 + UDP + 18 bytes of
/// payload = 60 bytes (64 on a wire, with the FCS).
fn inner_udp(dst: [u8; 6], src: [u8; 6]) -> Vec<u8> {
    let payload = [0x5au8; 18];
    let mut f = Vec::with_capacity(60);
    f.extend_from_slice(&dst);
    f.extend_from_slice(&src);
    f.extend_from_slice(&[0x08, 0x00]);
    let tot = (20 + 8 + payload.len()) as u16;
    let mut ip = [0u8; 20];
    ip[..4].copy_from_slice(&[0x45, 0, tot.to_be_bytes()[0], tot.to_be_bytes()[1]]);
    ip[4..20].copy_from_slice(&[0, 1, 0x40, 0, 64, 17, 0, 0, 172, 18, 1, 2, 172, 18, 1, 3]);
    let c = vxlan_common::wire::ipv4_checksum(&ip);
    ip[10..12].copy_from_slice(&c);
    f.extend_from_slice(&ip);
    f.extend_from_slice(&[0x30, 0x39, 0x00, 0x09]);
    f.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    f.extend_from_slice(&[0, 0]);
    f.extend_from_slice(&payload);
    f
}

#[derive(Clone, Copy)]
enum Prog {
    Xdp,
    Port,
    /// The TC uplink program decapsulating (no XDP on the uplink).
    Uplink,
}

/// A loaded datapath configured like a host of the seed topology: c1 on a
/// local port, c2 behind REMOTE, REMOTE's next hop known.
struct Dp {
    ebpf: Ebpf,
    maps: Maps,
    devs_port: u32,
    devs_uplink: u32,
}

impl Dp {
    fn new(devs: &Devs, fdb_capacity: Option<u32>) -> Result<Self> {
        let mut loader = EbpfLoader::new();
        if let Some(c) = fdb_capacity {
            loader.map_max_entries(map::FDB, c);
        }
        let mut ebpf = loader
            .load(vxlan_user::EBPF_OBJ)
            .context("loading the eBPF object")?;
        let xdp: &mut Xdp = ebpf
            .program_mut(prog::XDP_UPLINK)
            .ok_or_else(|| anyhow!("program {} missing", prog::XDP_UPLINK))?
            .try_into()?;
        xdp.load().context("loading the XDP program")?;
        for name in [prog::TC_UPLINK, prog::TC_PORT] {
            let tc: &mut SchedClassifier = ebpf
                .program_mut(name)
                .ok_or_else(|| anyhow!("program {name} missing"))?
                .try_into()?;
            tc.load().with_context(|| format!("loading {name}"))?;
        }
        let maps = Maps::take(&mut ebpf)?;
        let mut dp = Self {
            ebpf,
            maps,
            devs_port: devs.port,
            devs_uplink: devs.uplink,
        };
        dp.configure()?;
        Ok(dp)
    }

    fn configure(&mut self) -> Result<()> {
        let cfg = Config {
            local_ip: LOCAL,
            uplink_ifindex: self.devs_uplink,
            dstport: 4789,
            port_lo: 32768,
            port_hi: 60999,
            ttl: 64,
            mcast_ttl: 1,
            // TC_DECAP only changes what the TC uplink program does.
            flags: CFG_F_LEARNING | CFG_F_TC_DECAP,
            max_learned: vxlan_common::DEFAULT_MAX_FDB,
            uplink_mac: UPLINK_MAC,
            uplink_mtu: 1500,
            ..Default::default()
        };
        self.maps.config.set(0, cfg, 0).context("CONFIG")?;
        self.set_remotes(1)?;
        self.maps
            .ports
            .insert(
                self.devs_port,
                PortInfo {
                    vni: VNI,
                    flags: PORT_F_PEER,
                    ..Default::default()
                },
                0,
            )
            .context("PORTS")?;
        // c1 on the local port, c2 behind REMOTE (both static, as learned
        // entries would be after the first frame).
        let fdb = &mut self.maps.fdb;
        fdb.insert(
            FdbKey::new(VNI, C1_MAC),
            FdbEntry {
                ifindex: self.devs_port,
                flags: FDB_F_STATIC,
                ..Default::default()
            },
            0,
        )?;
        fdb.insert(
            FdbKey::new(VNI, C2_MAC),
            FdbEntry {
                remote: REMOTE,
                flags: FDB_F_STATIC,
                ..Default::default()
            },
            0,
        )?;
        Ok(())
    }

    /// VNI 42 with `n` default remotes (REMOTE first), each with a next hop
    /// out of the uplink veth, and only the ingress port as local port.
    fn set_remotes(&mut self, n: usize) -> Result<()> {
        let mut v = VniInfo {
            n_remotes: n as u32,
            n_ports: 1,
            ..Default::default()
        };
        v.ports[0] = self.devs_port;
        for i in 0..n {
            let r = if i == 0 {
                REMOTE
            } else {
                [192, 168, 58, i as u8]
            };
            v.remotes[i] = r;
            self.maps.neigh.insert(
                r,
                NeighEntry {
                    dmac: [0x02, 0xaa, 0, 0, 1, i as u8],
                    smac: UPLINK_MAC,
                    ifindex: self.devs_uplink,
                },
                0,
            )?;
            self.maps
                .allowed
                .insert(&Key::new(64, allow_data(VNI, r)), 1, 0)
                .context("ALLOWED")?;
        }
        self.maps.vnis.insert(VNI, v, 0).context("VNIS")?;
        Ok(())
    }

    /// Adds `n` static entries (other MACs, behind REMOTE).
    fn fill(&mut self, n: u64) -> Result<()> {
        let entry = FdbEntry {
            remote: REMOTE,
            flags: FDB_F_STATIC,
            ..Default::default()
        };
        for i in 0..n {
            self.maps
                .fdb
                .insert(FdbKey::new(VNI, super::filler_mac(i)), entry, 0)
                .with_context(|| format!("adding FDB entry {i} of {n}"))?;
        }
        Ok(())
    }

    /// VNI 42 accepts any sender: no ALLOWED lookup.
    fn any_sender(&mut self) -> Result<()> {
        let mut v = self.maps.vnis.get(&VNI, 0).context("VNIS")?;
        v.flags |= VNI_F_ANY_SENDER;
        self.maps.vnis.insert(VNI, v, 0).context("VNIS")?;
        Ok(())
    }

    /// Removes the static entries of c1 and c2: the programs learn them.
    fn unpin(&mut self) -> Result<()> {
        for mac in [C1_MAC, C2_MAC] {
            self.maps
                .fdb
                .remove(&FdbKey::new(VNI, mac))
                .context("removing a static entry")?;
        }
        Ok(())
    }

    /// One run of `frame`, whatever the program returns (to learn from it).
    fn warm(&mut self, frame: &[u8], which: Prog) -> Result<()> {
        self.run_case("warm-up", "warm-up", frame, which, None, 1)
            .map(drop)
    }

    fn case(
        &mut self,
        key: &str,
        what: &str,
        frame: &[u8],
        which: Prog,
        expect: u32,
        runs: u64,
    ) -> Result<Case> {
        self.run_case(key, what, frame, which, Some(expect), runs)
    }

    fn run_case(
        &mut self,
        key: &str,
        what: &str,
        frame: &[u8],
        which: Prog,
        expect: Option<u32>,
        runs: u64,
    ) -> Result<Case> {
        // struct __sk_buff is 192 bytes; `ifindex` (the ingress port) is at
        // offset 40.
        let mut ctx = [0u8; 192];
        let ifindex = if matches!(which, Prog::Uplink) {
            self.devs_uplink
        } else {
            self.devs_port
        };
        ctx[40..44].copy_from_slice(&ifindex.to_ne_bytes());
        let mut out = vec![0u8; frame.len() + 512];
        let (mut total, mut done, mut retval) = (Duration::ZERO, 0u64, 0u32);
        let started = Instant::now();
        while done < runs {
            let opts = TestRunOptions {
                data_in: Some(frame),
                data_out: Some(&mut out),
                ctx_in: matches!(which, Prog::Port | Prog::Uplink).then_some(&ctx[..]),
                ..Default::default()
            };
            let r = match which {
                Prog::Xdp => {
                    let p: &mut Xdp = self
                        .ebpf
                        .program_mut(prog::XDP_UPLINK)
                        .ok_or_else(|| anyhow!("XDP program missing"))?
                        .try_into()?;
                    p.test_run(opts)
                }
                Prog::Port | Prog::Uplink => {
                    let name = if matches!(which, Prog::Port) {
                        prog::TC_PORT
                    } else {
                        prog::TC_UPLINK
                    };
                    let p: &mut SchedClassifier = self
                        .ebpf
                        .program_mut(name)
                        .ok_or_else(|| anyhow!("TC program {name} missing"))?
                        .try_into()?;
                    p.test_run(opts)
                }
            }
            .with_context(|| format!("BPF_PROG_TEST_RUN of {key}"))?;
            retval = r.return_value;
            if let Some(expect) = expect
                && retval != expect
            {
                bail!(
                    "{key}: the program returned {retval}, expected {expect}: the crafted case \
                     does not take the path it should (datapath changed?)"
                );
            }
            total += r.duration;
            done += 1;
            if done % 1024 == 0 && started.elapsed() > CASE_BUDGET {
                break;
            }
        }
        Ok(Case {
            key: key.into(),
            what: what.into(),
            ns: total.as_nanos() as f64 / done as f64,
            runs: done,
            retval,
        })
    }
}

/// `r0 = XDP_DROP; exit`, loaded with bpf(2) directly (no object file).
struct RawXdpDrop {
    fd: OwnedFd,
}

const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_PROG_TEST_RUN: libc::c_long = 10;
const BPF_PROG_TYPE_XDP: u32 = 6;

/// The BPF_PROG_LOAD part of `union bpf_attr` (linux/bpf.h).
#[repr(C)]
#[derive(Default)]
struct ProgLoadAttr {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
    prog_ifindex: u32,
    expected_attach_type: u32,
}

/// The BPF_PROG_TEST_RUN part of `union bpf_attr` (`test`).
#[repr(C)]
#[derive(Default)]
struct TestRunAttr {
    prog_fd: u32,
    retval: u32,
    data_size_in: u32,
    data_size_out: u32,
    data_in: u64,
    data_out: u64,
    repeat: u32,
    duration: u32,
    ctx_size_in: u32,
    ctx_size_out: u32,
    ctx_in: u64,
    ctx_out: u64,
    flags: u32,
    cpu: u32,
    batch_size: u32,
    _pad: u32,
}

fn bpf<T>(cmd: libc::c_long, attr: &mut T) -> std::io::Result<libc::c_long> {
    // SAFETY: `attr` is a valid, initialised prefix of union bpf_attr of the
    // given size; the kernel zero-extends the rest.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            (attr as *mut T).cast::<libc::c_void>(),
            std::mem::size_of::<T>() as libc::c_uint,
        )
    };
    if rc < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

impl RawXdpDrop {
    fn load() -> Result<Self> {
        // BPF_ALU64 | BPF_MOV | BPF_K, dst r0, imm 1 (XDP_DROP); BPF_JMP | BPF_EXIT.
        let insns: [[u8; 8]; 2] = [[0xb7, 0, 0, 0, 1, 0, 0, 0], [0x95, 0, 0, 0, 0, 0, 0, 0]];
        let license = c"GPL";
        let mut name = [0u8; 16];
        name[..9].copy_from_slice(b"xdp_floor");
        let mut attr = ProgLoadAttr {
            prog_type: BPF_PROG_TYPE_XDP,
            insn_cnt: insns.len() as u32,
            insns: insns.as_ptr() as u64,
            license: license.as_ptr() as u64,
            prog_name: name,
            ..Default::default()
        };
        let fd = bpf(BPF_PROG_LOAD, &mut attr).context("BPF_PROG_LOAD of the XDP_DROP floor")?;
        // SAFETY: a new fd the kernel returned to us.
        Ok(Self {
            fd: unsafe { OwnedFd::from_raw_fd(fd as i32) },
        })
    }

    fn test(&self, frame: &[u8], repeat: u32) -> Result<(u32, u32)> {
        let mut attr = TestRunAttr {
            prog_fd: self.fd.as_raw_fd() as u32,
            data_size_in: frame.len() as u32,
            data_in: frame.as_ptr() as u64,
            repeat,
            ..Default::default()
        };
        bpf(BPF_PROG_TEST_RUN, &mut attr).context("BPF_PROG_TEST_RUN of the floor")?;
        if attr.retval != 1 {
            bail!("the floor program returned {}, not XDP_DROP", attr.retval);
        }
        Ok((attr.retval, attr.duration))
    }

    /// Mean duration over `runs` calls of one run each.
    fn per_call(&self, frame: &[u8], runs: u64) -> Result<(f64, u64)> {
        let (mut total, mut done) = (0u64, 0u64);
        let started = Instant::now();
        while done < runs {
            total += u64::from(self.test(frame, 1)?.1);
            done += 1;
            if done % 1024 == 0 && started.elapsed() > CASE_BUDGET {
                break;
            }
        }
        Ok((total as f64 / done as f64, done))
    }

    /// The kernel's mean over one call with `repeat = runs`.
    fn repeated(&self, frame: &[u8], runs: u64) -> Result<f64> {
        let repeat = u32::try_from(runs).unwrap_or(u32::MAX);
        Ok(f64::from(self.test(frame, repeat)?.1))
    }
}
