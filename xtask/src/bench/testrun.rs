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

use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, anyhow, bail};
use aya::maps::lpm_trie::Key;
use serde::Serialize;
use vxlan_common::{
    CFG_F_LEARNING, CFG_F_TC_DECAP, FDB_F_STATIC, FDB_STATIC_RESERVE, FdbEntry, FdbKey, NeighEntry,
    PORT_F_PEER, PortInfo, VNI_F_ANY_SENDER, VniInfo, allow_data, allow_value, vtep_v4,
    wire::Outer,
};
use vxlan_tests::{
    fixture::{
        C1_MAC, C2_MAC, DSTPORT, Datapath, LOCAL, Prog, REMOTE, REMOTE_MAC, RawProg,
        TC_ACT_REDIRECT, TC_ACT_SHOT, UPLINK_MAC, VNI, Veth, XDP_DROP, XDP_PASS, config,
        private_netns,
    },
    frames::{C1_IP, C2_IP, arp_request, inner_udp, vxlan_frame},
};
use vxlan_user::sys_bpf::bpf_prog_type;

use super::bound;

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
    /// Median of the runs' durations, ns: unlike the mean, not moved by
    /// the few runs that another task preempted (a shared machine).
    pub median_ns: f64,
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

fn private_devs() -> Result<Devs> {
    let idx = private_netns(
        None,
        &[
            Veth::new("pa", "pb"),
            // The TC uplink case is received on `ua`: with the uplink's MAC a
            // frame to it is PACKET_HOST (another MAC would be dropped as
            // PACKET_OTHERHOST).
            Veth {
                mac: Some(UPLINK_MAC),
                ..Veth::new("ua", "ub")
            },
        ],
    )?;
    Ok(Devs {
        port: idx[0],
        uplink: idx[1],
    })
}

fn run_here(params: &Params) -> Result<Vec<Case>> {
    let devs = private_devs()?;
    let mut cases = Vec::new();
    let frames = Frames::new();
    let (vxlan, inner, arp) = (
        &frames.vxlan[..],
        &frames.inner_to_remote[..],
        &frames.arp[..],
    );
    let runs = params.runs;

    // The floor, both ways.
    let floor = RawCase(RawProg::load(XDP_DROP, "xdp_floor")?, XDP_DROP);
    cases.push(floor.case(
        vxlan,
        runs,
        "floor_xdp_drop",
        "floor: XDP program `return XDP_DROP`, one run per call (as the cases below)",
    )?);
    let ns = floor.repeated(vxlan, runs)?;
    cases.push(Case {
        key: "floor_xdp_drop_repeat".into(),
        what: format!("floor: same program, repeat={runs} in one call"),
        ns,
        median_ns: ns,
        runs,
        retval: XDP_DROP,
    });
    drop(floor);
    // The TC programs' own floor: a BPF_PROG_TEST_RUN of a TC program
    // builds an skb around the frame, but outside the timed run, so this
    // shows whether the timed part costs more for TC than for XDP.
    let floor = RawCase(RawProg::load_tc(TC_ACT_SHOT, "tc_floor")?, TC_ACT_SHOT);
    cases.push(floor.case(
        vxlan,
        runs,
        "floor_tc_shot",
        "floor of TC: TC program `return TC_ACT_SHOT`, one run per call",
    )?);
    drop(floor);
    // The minimal tunnel of section 10 (see `bound.rs`): what any TC
    // encapsulation or decapsulation costs here, on the same frames.
    let (encap, decap) = bound::min_tunnel_insns();
    for (insns, frame, key, what) in [
        (
            encap,
            inner,
            "min_tc_encap",
            "minimal tunnel's TC encap (adjust_room, fixed headers, redirect)",
        ),
        (
            decap,
            vxlan,
            "min_tc_decap",
            "minimal tunnel's TC decap (3 checks, adjust_room, redirect_peer)",
        ),
    ] {
        let prog = RawProg::from_insns(bpf_prog_type::BPF_PROG_TYPE_SCHED_CLS, &insns, key)?;
        cases.push(RawCase(prog, TC_ACT_REDIRECT).case(frame, runs, key, what)?);
    }

    let mut dp = Dp::new(&devs, None)?;
    dp.cases(
        &mut cases,
        runs,
        [
            (
                "xdp_decap".into(),
                "XDP decap, known unicast (to a local port)".into(),
                vxlan,
                Prog::Xdp,
                XDP_PASS,
            ),
            (
                "tc_decap".into(),
                "TC decap (no XDP: the default on veth uplinks), known unicast".into(),
                vxlan,
                Prog::TcUplink,
                TC_ACT_REDIRECT,
            ),
            (
                "tc_encap".into(),
                "TC encap, known unicast (to a remote VTEP)".into(),
                inner,
                Prog::TcPort,
                TC_ACT_REDIRECT,
            ),
        ],
    )?;
    for n in [1usize, 8, 64] {
        dp.set_remotes(n)?;
        let what = format!("TC flood (ARP broadcast) to {n} remote(s), no local copy");
        let case = (
            format!("tc_flood_{n}"),
            what,
            arp,
            Prog::TcPort,
            TC_ACT_SHOT,
        );
        dp.cases(&mut cases, runs, [case])?;
    }
    drop(dp);

    // The same with the entries learned by the programs themselves, as
    // with real traffic (learning refreshes, the entries' own fields).
    let mut dp = Dp::new(&devs, None)?;
    dp.unpin()?;
    dp.warm(vxlan, Prog::Xdp)?;
    dp.warm(inner, Prog::TcPort)?;
    dp.cases(
        &mut cases,
        runs,
        known_unicast("_learned", "learned entries", &frames),
    )?;
    // The sender's ALLOWED entry as written before `allow_value` (1,
    // without the VNI's flags): the datapath looks VNIS up as well.
    dp.allowed_without_flags()?;
    dp.cases(
        &mut cases,
        runs,
        [
            (
                "xdp_decap_learned_allowed_no_flags".into(),
                "XDP decap, learned entries, ALLOWED entry without the VNI's flags (+ VNIS lookup)"
                    .into(),
                vxlan,
                Prog::Xdp,
                XDP_PASS,
            ),
            (
                "tc_decap_learned_allowed_no_flags".into(),
                "TC decap, learned entries, ALLOWED entry without the VNI's flags (+ VNIS lookup)"
                    .into(),
                vxlan,
                Prog::TcUplink,
                TC_ACT_REDIRECT,
            ),
        ],
    )?;
    // A sender the trie does not know, into a VNI open to any sender.
    dp.any_sender()?;
    dp.cases(
        &mut cases,
        runs,
        [(
            "xdp_decap_learned_any_sender".into(),
            "XDP decap, learned entries, VNI open to any sender, sender not in ALLOWED".into(),
            vxlan,
            Prog::Xdp,
            XDP_PASS,
        )],
    )?;
    drop(dp);

    for &size in &params.fdb_sizes {
        // Sized as the forwarder of figure 4 sizes it: --max-fdb (the
        // default, or size + 100k) + the static reserve.
        let capacity =
            super::max_fdb_for(size).unwrap_or(vxlan_common::DEFAULT_MAX_FDB) + FDB_STATIC_RESERVE;
        let mut dp = Dp::new(&devs, Some(capacity))?;
        dp.fill(size)?;
        let label = format!("FDB {}", super::scale_label(size));
        let list = known_unicast(&format!("_fdb_{size}"), &label, &frames);
        dp.cases(&mut cases, runs, list)?;
    }
    Ok(cases)
}

/// One case: key, description, frame, program, expected action.
type CaseSpec<'a> = (String, String, &'a [u8], Prog, u32);

/// XDP decap, TC decap and TC encap of known unicast, keys with `suffix`,
/// descriptions ending with `label`.
fn known_unicast<'a>(suffix: &str, label: &str, frames: &'a Frames) -> [CaseSpec<'a>; 3] {
    let case = |key: &str, what: &str, frame: &'a [u8], which, expect| {
        (
            format!("{key}{suffix}"),
            format!("{what}, known unicast, {label}"),
            frame,
            which,
            expect,
        )
    };
    [
        case("xdp_decap", "XDP decap", &frames.vxlan, Prog::Xdp, XDP_PASS),
        case(
            "tc_decap",
            "TC decap",
            &frames.vxlan,
            Prog::TcUplink,
            TC_ACT_REDIRECT,
        ),
        case(
            "tc_encap",
            "TC encap",
            &frames.inner_to_remote,
            Prog::TcPort,
            TC_ACT_REDIRECT,
        ),
    ]
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
        let o = Outer {
            src_mac: REMOTE_MAC,
            dst_mac: UPLINK_MAC,
            src_ip: REMOTE,
            dst_ip: LOCAL,
            src_port: 50_000,
            dst_port: DSTPORT,
            vni: VNI,
            ttl: 64,
            tos: 0,
            ip_id: 7,
        };
        Self {
            vxlan: vxlan_frame(&o, &inner_udp64(C1_MAC, C2_MAC)),
            inner_to_remote: inner_udp64(C2_MAC, C1_MAC),
            arp: arp_request(C1_MAC, C1_IP, C2_IP),
        }
    }
}

/// The "64-byte" frame of figure 1: Ethernet + IPv4 + UDP + 18 bytes of
/// payload = 60 bytes (64 on a wire, with the FCS).
fn inner_udp64(dst: [u8; 6], src: [u8; 6]) -> Vec<u8> {
    inner_udp(dst, src, 0, 9, &[0x5a; 18])
}

/// A loaded datapath configured like a host of the seed topology: c1 on a
/// local port, c2 behind REMOTE, REMOTE's next hop known.
struct Dp {
    dp: Datapath,
    devs_port: u32,
    devs_uplink: u32,
}

impl Dp {
    fn new(devs: &Devs, fdb_capacity: Option<u32>) -> Result<Self> {
        let mut dp = Self {
            dp: Datapath::load(fdb_capacity)?,
            devs_port: devs.port,
            devs_uplink: devs.uplink,
        };
        dp.configure()?;
        Ok(dp)
    }

    fn configure(&mut self) -> Result<()> {
        let cfg = config(self.devs_uplink, vxlan_common::DEFAULT_MAX_FDB);
        // TC_DECAP only changes what the TC uplink program does.
        self.dp.set_config(vxlan_common::Config {
            flags: CFG_F_LEARNING | CFG_F_TC_DECAP,
            ..cfg
        })?;
        self.set_remotes(1)?;
        self.dp
            .maps
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
        let fdb = &mut self.dp.maps.fdb;
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
            FdbEntry::new_remote(vtep_v4(REMOTE), FDB_F_STATIC, 0),
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
            v.remotes[i] = vtep_v4(r);
            self.dp.maps.neigh.insert(
                vtep_v4(r),
                NeighEntry {
                    dmac: [0x02, 0xaa, 0, 0, 1, i as u8],
                    smac: UPLINK_MAC,
                    ifindex: self.devs_uplink,
                },
                0,
            )?;
            self.dp
                .maps
                .allowed
                .insert(
                    &Key::new(32 + 128, allow_data(VNI, &vtep_v4(r))),
                    allow_value(0),
                    0,
                )
                .context("ALLOWED")?;
        }
        self.dp.maps.vnis.insert(VNI, v, 0).context("VNIS")?;
        Ok(())
    }

    /// Adds `n` static entries (other MACs, behind REMOTE).
    fn fill(&mut self, n: u64) -> Result<()> {
        let entry = FdbEntry::new_remote(vtep_v4(REMOTE), FDB_F_STATIC, 0);
        for i in 0..n {
            self.dp
                .maps
                .fdb
                .insert(FdbKey::new(VNI, super::filler_mac(i)), entry, 0)
                .with_context(|| format!("adding FDB entry {i} of {n}"))?;
        }
        Ok(())
    }

    /// REMOTE's ALLOWED entry with value 1, as written before
    /// `allow_value`.
    fn allowed_without_flags(&mut self) -> Result<()> {
        self.dp
            .maps
            .allowed
            .insert(&Key::new(32 + 128, allow_data(VNI, &vtep_v4(REMOTE))), 1, 0)
            .context("ALLOWED")?;
        Ok(())
    }

    /// VNI 42 accepts any sender, and REMOTE is not in ALLOWED (a sender
    /// the configuration does not name): the trie misses, VNIS decides.
    fn any_sender(&mut self) -> Result<()> {
        let mut v = self.dp.maps.vnis.get(&VNI, 0).context("VNIS")?;
        v.flags |= VNI_F_ANY_SENDER;
        self.dp.maps.vnis.insert(VNI, v, 0).context("VNIS")?;
        self.dp
            .maps
            .allowed
            .remove(&Key::new(32 + 128, allow_data(VNI, &vtep_v4(REMOTE))))
            .context("ALLOWED")?;
        Ok(())
    }

    /// Removes the static entries of c1 and c2: the programs learn them.
    fn unpin(&mut self) -> Result<()> {
        for mac in [C1_MAC, C2_MAC] {
            self.dp
                .maps
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

    /// Measures `list`, `runs` runs each, into `out`.
    fn cases<'a>(
        &mut self,
        out: &mut Vec<Case>,
        runs: u64,
        list: impl IntoIterator<Item = CaseSpec<'a>>,
    ) -> Result<()> {
        for (key, what, frame, which, expect) in list {
            out.push(self.run_case(&key, &what, frame, which, Some(expect), runs)?);
        }
        Ok(())
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
        let ifindex = if which == Prog::TcUplink {
            self.devs_uplink
        } else {
            self.devs_port
        };
        let mut out = vec![0u8; frame.len() + 512];
        let (mut total, mut done, mut retval) = (Duration::ZERO, 0u64, 0u32);
        let mut each: Vec<u32> = Vec::new();
        let started = Instant::now();
        while done < runs {
            let r = self
                .dp
                .test_run(which, frame, ifindex, &mut out)
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
            each.push(u32::try_from(r.duration.as_nanos()).unwrap_or(u32::MAX));
            done += 1;
            if done % 1024 == 0 && started.elapsed() > CASE_BUDGET {
                break;
            }
        }
        Ok(Case {
            key: key.into(),
            what: what.into(),
            ns: total.as_nanos() as f64 / done as f64,
            median_ns: median(&mut each),
            runs: done,
            retval,
        })
    }
}

/// A hand-assembled program loaded with bpf(2) directly (no object file),
/// and the verdict it must give: the floors (`r0 = action; exit`, XDP_DROP
/// or TC_ACT_SHOT) and the minimal tunnel's programs (TC_ACT_REDIRECT).
struct RawCase(RawProg, u32);

impl RawCase {
    fn test(&self, frame: &[u8], repeat: u32) -> Result<(u32, u32)> {
        let (retval, duration) = self.0.test_run(frame, repeat)?;
        if retval != self.1 {
            bail!(
                "the hand-assembled program returned {retval}, not {}",
                self.1
            );
        }
        Ok((retval, duration))
    }

    /// The case `key` (`what`): [`RawCase::per_call`].
    fn case(&self, frame: &[u8], runs: u64, key: &str, what: &str) -> Result<Case> {
        let (ns, median_ns, done) = self.per_call(frame, runs)?;
        Ok(Case {
            key: key.into(),
            what: what.into(),
            ns,
            median_ns,
            runs: done,
            retval: self.1,
        })
    }

    /// Mean and median duration over `runs` calls of one run each.
    fn per_call(&self, frame: &[u8], runs: u64) -> Result<(f64, f64, u64)> {
        let (mut total, mut done) = (0u64, 0u64);
        let mut each = Vec::new();
        let started = Instant::now();
        while done < runs {
            let d = self.test(frame, 1)?.1;
            total += u64::from(d);
            each.push(d);
            done += 1;
            if done % 1024 == 0 && started.elapsed() > CASE_BUDGET {
                break;
            }
        }
        Ok((total as f64 / done as f64, median(&mut each), done))
    }

    /// The kernel's mean over one call with `repeat = runs`.
    fn repeated(&self, frame: &[u8], runs: u64) -> Result<f64> {
        let repeat = u32::try_from(runs).unwrap_or(u32::MAX);
        Ok(f64::from(self.test(frame, repeat)?.1))
    }
}

/// The median of `v` (0 when empty).
fn median(v: &mut [u32]) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_unstable();
    let n = v.len();
    if n % 2 == 1 {
        f64::from(v[n / 2])
    } else {
        (f64::from(v[n / 2 - 1]) + f64::from(v[n / 2])) / 2.0
    }
}
