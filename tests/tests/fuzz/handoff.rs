//! Fuzzing of the XDP-to-TC hand-off: frames reach `vxlan_tc_uplink`,
//! attached to the uplink of the fuzz lab (`up0`), with metadata in front
//! of them, as after an XDP program. BPF_PROG_TEST_RUN of a TC program
//! cannot give it metadata (nor can a live-frames XDP test run on Linux
//! 6.18: its skbs reach TC without it), so the frames take the real path:
//! sent into `up0`'s peer, turned into metadata and frame by a foreign
//! generic-mode XDP program on `up0` ([`load_meta_maker`]), then TC. What
//! TC sends out of the ports is captured ([`Capture`]). Each frame is
//! followed by a sentinel frame with valid metadata for a port of VNI 45;
//! once the sentinel's copy is seen, everything the frame caused has been
//! captured and counted (the thread is pinned to one CPU: its frames are
//! received in order from that CPU's backlog).
//!
//! Metadata of five kinds, over the frames `fuzz_xdp_uplink` uses:
//! - **valid**: what our XDP program writes ([`Config::meta_key`],
//!   `META_MAGIC`, a VNI and one of its ports or 0): the frame goes out
//!   of exactly that port, or of every port of the VNI, unchanged, counted
//!   as delivered;
//! - **valid, left for TC** (`META_MAGIC_TC_DECAP` with the key): TC
//!   decapsulates the frame itself: the same copies and counters as the
//!   same frame without metadata in TC-decap mode (a reference run);
//! - **forged**: 24 to 32 bytes with the wrong key (random, one bit off,
//!   zero), any magic, any VNI, ifindex (ports, the uplink, `lo`, a device
//!   that is no port) and flags; **short**: fewer bytes than an
//!   `XdpMeta`; **none**. Without TC decapsulation (XDP on the uplink)
//!   such a frame must leave no trace: no copy, no counter. A forged
//!   `META_MAGIC` naming a port is paired with the same frame and
//!   metadata with the right key, which must be delivered (the positive
//!   control: only the key differs). With TC decapsulation (every other
//!   frame) such a frame must be treated exactly as the same frame
//!   without metadata.
//!
//! [`Config::meta_key`]: vxlan_common::Config::meta_key

use std::{os::fd::AsRawFd as _, time::Duration};

use aya::programs::{
    SchedClassifier, TcAttachType,
    tc::{self, TcAttachOptions},
};
use nix::{
    sched::{CpuSet, sched_setaffinity},
    unistd::Pid,
};
use vxlan_common::{META_MAGIC, prog};
use vxlan_tests::{
    hostile_net::RawSender,
    xdp::{META_MAKER_PREFIX, load_meta_maker, set_xdp, with_meta},
};

use super::*;

const META_LEN: usize = size_of::<XdpMeta>();

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    None,
    Short,
    Forged,
    Valid,
    ValidTcDecap,
}

/// What must happen to a frame.
enum Expect {
    /// No copy, no counter.
    Nothing,
    /// Exactly these copies (device, bytes), `RxDeliver` or `RxFloodCopy`
    /// counted once per copy, nothing else.
    Delivered(Vec<u32>, Counter),
    /// What the same frame without metadata does in TC-decap mode.
    AsWithoutMeta,
}

/// Metadata of `kind` for the lab's configuration.
fn gen_meta(rng: &mut Rng, lab: &Lab, kind: Kind) -> Vec<u8> {
    let len = match kind {
        Kind::None => return Vec::new(),
        Kind::Short => 4 * rng.range(1, META_LEN / 4 - 1),
        _ => META_LEN + 4 * rng.range(0, 2),
    };
    let mut m = rng.bytes(len);
    if kind == Kind::Short {
        if rng.chance(50) {
            m[..4].copy_from_slice(&META_MAGIC.to_ne_bytes());
        }
        return m;
    }
    let any = rng.u64() as u32;
    let mut vni = rng.pick(&[42u32, 43, 44, 45, 46, any]);
    let mut ifindex = 0;
    let mut flags = 0;
    let mut magic = META_MAGIC;
    let mut key = META_KEY;
    match kind {
        Kind::Valid => {
            let v = &lab.vnis[rng.below(lab.vnis.len())];
            vni = v.vni;
            // A port without peer delivery (its copy leaves through the
            // port, where the capture sees it), or 0: flood.
            let direct: Vec<u32> = v
                .ports
                .iter()
                .copied()
                .filter(|p| lab.ports[p].1 & PORT_F_PEER == 0)
                .collect();
            if !direct.is_empty() && rng.chance(60) {
                ifindex = direct[rng.below(direct.len())];
                flags = lab.ports[&ifindex].1;
            }
        }
        Kind::ValidTcDecap => magic = META_MAGIC_TC_DECAP,
        Kind::Forged => {
            magic = match rng.below(10) {
                0..=4 => META_MAGIC,
                5..=7 => META_MAGIC_TC_DECAP,
                _ => rng.u64() as u32,
            };
            key = match rng.below(4) {
                0 => [rng.u64() as u32, rng.u64() as u32],
                1 => [0, 0],
                2 => [META_KEY[1], META_KEY[0]],
                _ => {
                    let bit = rng.below(64);
                    let mut k = META_KEY;
                    k[bit / 32] ^= 1 << (bit % 32);
                    k
                }
            };
            let mut targets: Vec<u32> = lab.ports.keys().copied().collect();
            targets.extend([0, lab.uplink, 1, lab.not_a_port, rng.u64() as u32]);
            ifindex = targets[rng.below(targets.len())];
            let any = rng.u64() as u32;
            flags = rng.pick(&[0, PORT_F_PEER, any]);
        }
        Kind::None | Kind::Short => unreachable!("returned above"),
    }
    let meta = XdpMeta {
        magic,
        key,
        vni,
        ifindex,
        flags,
    };
    m[..META_LEN].copy_from_slice(bytemuck::bytes_of(&meta));
    m
}

/// The copies a valid `meta` (ifindex a port, or 0 with a configured VNI)
/// makes of a frame, and the counter for them; `None` for other metadata.
fn valid_targets(lab: &Lab, meta: &[u8]) -> Option<(Vec<u32>, Counter)> {
    let m: XdpMeta = bytemuck::pod_read_unaligned(meta.get(..META_LEN)?);
    if m.magic != META_MAGIC {
        return None;
    }
    if m.ifindex == 0 {
        let v = lab.vni_cfg(m.vni)?;
        let mut ports = v.ports.clone();
        ports.sort_unstable();
        return Some((ports, Counter::RxFloodCopy));
    }
    match lab.ports.get(&m.ifindex) {
        Some((vni, flags)) if *vni == m.vni && *flags == m.flags && flags & PORT_F_PEER == 0 => {
            Some((vec![m.ifindex], Counter::RxDeliver))
        }
        _ => None,
    }
}

/// Sends frames into the uplink (`up0`) from its peer, each followed by
/// the sentinel.
struct Injector {
    sender: RawSender,
    peer: u32,
    /// The sentinel's port, metadata and frame.
    sentinel_port: u32,
    sentinel_meta: Vec<u8>,
    sentinel: Vec<u8>,
}

impl Injector {
    fn new(lab: &Lab) -> Self {
        let peer = fixture::ifindex("up0p").expect("ifindex of up0p");
        let sender = RawSender::here("up0p").expect("a raw socket on up0p");
        let v45 = lab.vni_cfg(45).expect("VNI 45");
        let sentinel_port = v45.ports[0];
        assert_eq!(
            lab.ports[&sentinel_port].1 & PORT_F_PEER,
            0,
            "the sentinel's port delivers out of itself"
        );
        let meta = XdpMeta {
            magic: META_MAGIC,
            key: META_KEY,
            vni: 45,
            ifindex: sentinel_port,
            flags: 0,
        };
        let mut sentinel = vec![
            0x02, 0x5e, 0x5e, 0, 0, 0x45, 0x02, 0x5e, 0x5e, 0, 0, 0x46, 0x88, 0xb5,
        ];
        sentinel.extend_from_slice(b"handoff sentinel");
        Self {
            sender,
            peer,
            sentinel_port,
            sentinel_meta: bytemuck::bytes_of(&meta).to_vec(),
            sentinel,
        }
    }

    /// Sends `frame` with `meta` in front of it (as XDP metadata on
    /// `up0`), then the sentinel; returns what the frame did: the copies
    /// sent (sorted by device) and the counter deltas.
    fn run(&self, lab: &mut Lab, meta: &[u8], frame: &[u8]) -> (Vec<(u32, Vec<u8>)>, Vec<u64>) {
        self.sender.send(&with_meta(meta, frame));
        self.sender
            .send(&with_meta(&self.sentinel_meta, &self.sentinel));
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut copies = Vec::new();
        loop {
            let mut got = lab.cap.drain();
            got.retain(|(i, _)| *i != self.peer);
            if let Some(at) = got
                .iter()
                .position(|(i, b)| *i == self.sentinel_port && *b == self.sentinel)
            {
                assert_eq!(at + 1, got.len(), "copies after the sentinel's");
                got.truncate(at);
                copies.extend(got);
                break;
            }
            copies.extend(got);
            assert!(
                Instant::now() < deadline,
                "the sentinel (valid metadata for port {}) was not delivered within 5 s: the hand-off is broken",
                lab.name(self.sentinel_port)
            );
            std::thread::sleep(Duration::from_millis(1));
        }
        copies.sort();
        let mut delta = lab.deltas();
        assert!(
            delta[Counter::RxDeliver as usize] >= 1,
            "the sentinel counted as delivered"
        );
        delta[Counter::RxDeliver as usize] -= 1;
        (copies, delta)
    }
}

/// `f` as the ports' capture shows it: the kernel takes the outer VLAN tag
/// of a frame into the skb (`skb_vlan_untag`) when it is received, and
/// a packet socket shows a frame without it.
fn as_captured(f: &[u8]) -> Vec<u8> {
    let tagged =
        f.len() >= ETH_HLEN + 4 && matches!(u16::from_be_bytes([f[12], f[13]]), 0x8100 | 0x88a8);
    if tagged {
        [&f[..12], &f[16..]].concat()
    } else {
        f.to_vec()
    }
}

/// The counters a second run of the same frame may change differently
/// from the first: learning (the first run learned what the second
/// refreshes).
fn learning(i: usize) -> bool {
    Counter::ALL[i].name().contains("learn")
}

#[test]
fn fuzz_tc_uplink_handoff() {
    let env = FuzzEnv::get();
    let frames = (env.frames / 2).max(1);
    let mut rng = Rng::new(env.seed ^ 0x6861_6e64_6f66_6600);
    eprintln!(
        "fuzz_tc_uplink_handoff: VXLAN_FUZZ_SEED={:#x} VXLAN_FUZZ_FRAMES={} ({frames} frames here)",
        env.seed, env.frames
    );
    let mut lab = Lab::new();
    let up0 = lab.name(lab.uplink);
    let _ = tc::qdisc_add_clsact(&up0);
    {
        let p: &mut SchedClassifier = lab
            .dp
            .ebpf
            .program_mut(prog::TC_UPLINK)
            .expect("the TC uplink program")
            .try_into()
            .expect("a TC program");
        // As vxlan-fwd attaches it: a netlink (clsact) filter.
        p.attach_with_options(
            &up0,
            TcAttachType::Ingress,
            TcAttachOptions::Netlink(Default::default()),
        )
        .expect("attaching the TC uplink program to up0");
    }
    let maker = load_meta_maker().expect("loading the metadata-making XDP program");
    set_xdp(&up0, Some(maker.as_raw_fd())).expect("attaching the metadata maker to up0");
    // One CPU: the frame and its sentinel go through the same backlog.
    let mut cpus = CpuSet::new();
    cpus.set(0).expect("CPU 0");
    sched_setaffinity(Pid::from_raw(0), &cpus).expect("pinning the test thread to CPU 0");
    let inj = Injector::new(&lab);
    lab.deltas();

    let mut failures: BTreeMap<String, String> = BTreeMap::new();
    let mut seen: BTreeMap<&'static str, u64> = BTreeMap::new();
    let start = Instant::now();
    for iter in 0..frames {
        let tc_decap = iter % 2 == 1;
        let mode = CFG_F_LEARNING | if tc_decap { CFG_F_TC_DECAP } else { 0 };
        lab.set_cfg_flags(mode);
        let f = gen_xdp(&mut rng);
        // What veth forwards: at least an Ethernet header, at most the
        // uplink's MTU (with the metadata maker's prefix).
        if f.len() < ETH_HLEN || f.len() + META_MAKER_PREFIX > UPLINK_MTU as usize + ETH_HLEN {
            *seen.entry("skipped: size").or_default() += 1;
            continue;
        }
        let kind = match rng.below(20) {
            0..=2 => Kind::None,
            3..=4 => Kind::Short,
            5..=11 => Kind::Forged,
            12..=16 => Kind::Valid,
            _ => Kind::ValidTcDecap,
        };
        let meta = gen_meta(&mut rng, &lab, kind);
        let expect = match kind {
            Kind::Valid => {
                let (t, c) = valid_targets(&lab, &meta).expect("valid metadata");
                Expect::Delivered(t, c)
            }
            Kind::ValidTcDecap => Expect::AsWithoutMeta,
            _ if tc_decap => Expect::AsWithoutMeta,
            _ => Expect::Nothing,
        };
        // The reference: the frame without metadata, in TC-decap mode, run
        // twice (the first run learns what the frame teaches; the second,
        // recorded, sees the FDB the run under test sees).
        let reference = matches!(expect, Expect::AsWithoutMeta).then(|| {
            lab.set_cfg_flags(CFG_F_LEARNING | CFG_F_TC_DECAP);
            inj.run(&mut lab, &[], &f);
            let r = inj.run(&mut lab, &[], &f);
            lab.set_cfg_flags(mode);
            r
        });
        let (copies, delta) = inj.run(&mut lab, &meta, &f);
        let what = format!(
            "iteration {iter} (VXLAN_FUZZ_SEED={:#x}), {kind:?} metadata {}, TC decap {}, frame {}",
            env.seed,
            hex(&meta),
            if tc_decap { "on" } else { "off" },
            hex(&f)
        );
        let got = format!(
            "copies {:?}, counters {}",
            copies
                .iter()
                .map(|(i, b)| (lab.name(*i), b.len()))
                .collect::<Vec<_>>(),
            deltas_str(&delta)
        );
        let mut fail = |k: &str, detail: String| {
            failures
                .entry(k.to_owned())
                .or_insert_with(|| format!("{k}: {what}\n  {got}\n  {detail}"));
        };
        match expect {
            Expect::Nothing => {
                if !copies.is_empty() || delta.iter().any(|d| *d != 0) {
                    fail(
                        "metadata not ours acted on (XDP mode)",
                        "expected no copy and no counter".into(),
                    );
                }
                *seen.entry("ignored").or_default() += 1;
                // The positive control: the same frame and metadata with
                // the right key are delivered.
                if kind == Kind::Forged {
                    let mut good = meta.clone();
                    good[4..12].copy_from_slice(bytemuck::bytes_of(&META_KEY));
                    if let Some((targets, c)) = valid_targets(&lab, &good) {
                        let (copies, delta) = inj.run(&mut lab, &good, &f);
                        let devs: Vec<u32> = copies.iter().map(|(i, _)| *i).collect();
                        if devs != targets
                            || copies.iter().any(|(_, b)| *b != as_captured(&f))
                            || delta[c as usize] != targets.len() as u64
                        {
                            fail(
                                "control: the forged metadata with the right key not delivered",
                                format!(
                                    "expected copies on {targets:?}, counted as {c:?}; got {devs:?}, counters {}",
                                    deltas_str(&delta)
                                ),
                            );
                        }
                        *seen.entry("control delivered").or_default() += 1;
                    }
                }
            }
            Expect::Delivered(targets, c) => {
                let devs: Vec<u32> = copies.iter().map(|(i, _)| *i).collect();
                let mut want = vec![0u64; delta.len()];
                want[c as usize] = targets.len() as u64;
                if devs != targets
                    || copies.iter().any(|(_, b)| *b != as_captured(&f))
                    || delta != want
                {
                    fail(
                        "valid metadata not delivered as named",
                        format!(
                            "expected the frame unchanged on {targets:?}, {c:?} = {}",
                            targets.len()
                        ),
                    );
                }
                *seen
                    .entry(if c == Counter::RxDeliver {
                        "valid delivered"
                    } else {
                        "valid flooded"
                    })
                    .or_default() += 1;
            }
            Expect::AsWithoutMeta => {
                let (rcopies, rdelta) = reference.expect("a reference run");
                let differs = (0..delta.len()).any(|i| !learning(i) && delta[i] != rdelta[i]);
                if copies != rcopies || differs {
                    fail(
                        "metadata changed what TC decapsulation does",
                        format!(
                            "without metadata: copies {:?}, counters {}",
                            rcopies
                                .iter()
                                .map(|(i, b)| (lab.name(*i), b.len()))
                                .collect::<Vec<_>>(),
                            deltas_str(&rdelta)
                        ),
                    );
                }
                let decapped = delta[Counter::RxDecap as usize] > 0;
                *seen
                    .entry(match (kind, decapped) {
                        (Kind::ValidTcDecap, true) => "left for TC: decapsulated",
                        (Kind::ValidTcDecap, false) => "left for TC: not decapsulated",
                        (_, true) => "not ours, TC decap: decapsulated",
                        (_, false) => "not ours, TC decap: not decapsulated",
                    })
                    .or_default() += 1;
            }
        }
    }
    eprintln!(
        "fuzz_tc_uplink_handoff: {frames} frames in {:.1} s: {seen:?}",
        start.elapsed().as_secs_f64()
    );
    assert!(
        failures.is_empty(),
        "{} kinds of failure:\n{}",
        failures.len(),
        failures.into_values().collect::<Vec<_>>().join("\n")
    );
    // Every path was taken, with real deliveries among them (at the CI
    // size; a run of a few frames only checks what it saw).
    if frames >= 1000 {
        for k in [
            "ignored",
            "control delivered",
            "valid delivered",
            "valid flooded",
            "left for TC: decapsulated",
            "not ours, TC decap: decapsulated",
        ] {
            assert!(
                seen.get(k).copied().unwrap_or(0) > 0,
                "no frame took the path {k:?}: {seen:?}"
            );
        }
    }
}
