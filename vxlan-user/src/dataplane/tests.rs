//! The Dataplane's bookkeeping, on real maps (created from the eBPF object,
//! no program loaded or attached) and real links in a private network
//! namespace: what each operation writes to VNIS and PORTS, what the
//! configuration owns and what runtime commands own, the journal, and link
//! events. Needs root (skips otherwise).

use std::net::{IpAddr, Ipv4Addr};

use aya::EbpfLoader;
use vxlan_common::{VniInfo, map};

use super::*;
use crate::{EBPF_OBJ, config::VniConfig};

/// Runs `f` on a thread of its own in a fresh network namespace, with a
/// tokio runtime; `None` (skipped) when not root.
fn in_private_netns<F, Fut>(f: F) -> Option<()>
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()>,
{
    // SAFETY: no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: needs root");
        return None;
    }
    std::thread::spawn(move || {
        // CLONE_NEWNET only affects this thread.
        nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).expect("unshare(CLONE_NEWNET)");
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
            .block_on(f());
    })
    .join()
    .unwrap_or_else(|p| std::panic::resume_unwind(p));
    Some(())
}

async fn dataplane(nl: &Netlink, journal: PathBuf) -> Dataplane {
    for (a, b) in [
        ("up0", "up0p"),
        ("pa", "pa-c"),
        ("pb", "pb-c"),
        ("pc", "pc-c"),
    ] {
        nl.create_veth(a, b, 1500).await.expect("veth");
    }
    let uplink = nl.link_by_name("up0").await.expect("uplink");
    let mut ebpf = EbpfLoader::new()
        .map_max_entries(map::FDB, 1024)
        .load(EBPF_OBJ)
        .expect("creating the maps");
    let maps = Maps::take(&mut ebpf).expect("maps");
    let settings = Settings {
        dstport: 4789,
        ageing: 300,
        max_fdb: 1000,
        learning: true,
        allow_remote: Vec::new(),
        local: locals(),
        port_max_fdb: None,
        bum_pps: None,
        control_plane: false,
        arp_suppress: false,
    };
    Dataplane::new(
        nl.clone(),
        ebpf,
        maps,
        uplink,
        locals(),
        settings,
        true,
        journal,
    )
    .expect("dataplane")
}

/// The local addresses of the tests' dataplanes: one of each family.
fn locals() -> Locals {
    Locals {
        v4: Some(Ipv4Addr::new(10, 0, 0, 1)),
        v6: Some("fd00:57::1".parse().unwrap()),
    }
}

fn cfg(vnis: Vec<VniConfig>) -> Config {
    Config {
        iface: "up0".into(),
        local: Locals::default(),
        dstport: 4789,
        ageing: 300,
        max_fdb: 1000,
        learning: true,
        allow_remote: Vec::new(),
        port_max_fdb: None,
        bum_pps: None,
        vnis,
        etcd: None,
    }
}

fn vni(id: u32, ports: &[&str], remotes: &[[u8; 4]]) -> VniConfig {
    VniConfig {
        id,
        ports: ports.iter().map(|p| (*p).to_owned()).collect(),
        remotes: remotes
            .iter()
            .map(|r| IpAddr::V4(Ipv4Addr::from(*r)))
            .collect(),
        group: None,
        host_if: None,
        limits: Default::default(),
    }
}

fn info(dp: &Dataplane, id: u32) -> Option<VniInfo> {
    dp.maps.vnis.get(&id, 0).ok()
}

/// The IPv4 remotes of a VNI.
fn remotes(i: &VniInfo) -> Vec<[u8; 4]> {
    i.remotes[..i.n_remotes as usize]
        .iter()
        .filter_map(vxlan_common::vtep_as_v4)
        .collect()
}

fn ports(i: &VniInfo) -> Vec<u32> {
    i.ports[..i.n_ports as usize].to_vec()
}

#[test]
fn config_runtime_journal_and_links() {
    let dir = std::env::temp_dir().join(format!("vxlan-fwd-dp-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let journal = dir.join("journal.json");
    let jpath = journal.clone();
    in_private_netns(move || async move {
        let nl = Netlink::new().unwrap();
        let mut dp = dataplane(&nl, jpath.clone()).await;
        let idx = |dp: &Dataplane, n: &str| {
            dp.port_names()
                .into_iter()
                .find(|(_, m)| m == n)
                .map(|(i, _)| i)
        };

        // Start: the configuration.
        let c1 = cfg(vec![vni(
            42,
            &["pa", "pb"],
            &[[10, 0, 0, 2], [10, 0, 0, 3]],
        )]);
        assert!(dp.apply_config(&c1).await.unwrap().is_empty());
        let i = info(&dp, 42).expect("VNI 42 in VNIS");
        assert_eq!(remotes(&i), [[10, 0, 0, 2], [10, 0, 0, 3]]);
        let (pa, pb) = (idx(&dp, "pa").unwrap(), idx(&dp, "pb").unwrap());
        assert_eq!(ports(&i), [pa, pb]);
        assert_eq!(dp.maps.ports.get(&pa, 0).unwrap().vni, 42);

        // Runtime: a VNI, a port in it, and a remote of the configured VNI.
        dp.vni_add(
            &VniSpec {
                id: 7,
                ..Default::default()
            },
            Origin::Runtime,
        )
        .await
        .unwrap();
        dp.port_add("pc", 7, Origin::Runtime).await.unwrap();
        dp.remote_add(42, "10.0.0.9".parse().unwrap(), Origin::Runtime)
            .await
            .unwrap();
        // Errors, with nothing changed.
        let err = |r: Result<()>| format!("{:#}", r.unwrap_err());
        assert!(err(dp.port_add("pc", 42, Origin::Runtime).await).contains("port of VNI 7"));
        assert!(err(dp.port_add("nope0", 42, Origin::Runtime).await).contains("not found"));
        assert!(err(dp.port_add("pa", 99, Origin::Runtime).await).contains("VNI 99"));
        assert!(
            err(dp
                .vni_add(
                    &VniSpec {
                        id: 7,
                        ..Default::default()
                    },
                    Origin::Runtime
                )
                .await)
            .contains("exists")
        );
        assert!(err(dp.port_del("nope0").await).contains("not a port"));
        let pc = idx(&dp, "pc").unwrap();
        assert_eq!(ports(&info(&dp, 7).unwrap()), [pc]);
        // Learned entries on pc and in VNI 7, a static one in VNI 42.
        let learned = vxlan_common::FdbEntry {
            ifindex: pc,
            ..Default::default()
        };
        dp.maps
            .fdb
            .insert(FdbKey::new(7, [2, 0, 0, 0, 0, 1]), learned, 0)
            .unwrap();
        dp.save_journal();
        let j = Journal::load(&jpath).unwrap();
        assert_eq!(j.vnis.iter().map(|v| v.id).collect::<Vec<_>>(), [7]);
        assert_eq!(j.ports.len(), 1);
        assert_eq!((j.ports[0].name.as_str(), j.ports[0].vni), ("pc", 7));
        assert_eq!(j.remotes.len(), 1);
        assert_eq!(j.remotes[0].addr, "10.0.0.9".parse::<IpAddr>().unwrap());

        // Reload: remote .3 and port pb leave the configuration; the
        // runtime remote .9, VNI 7 and its port stay.
        let c2 = cfg(vec![vni(42, &["pa"], &[[10, 0, 0, 2]])]);
        assert!(dp.apply_config(&c2).await.unwrap().is_empty());
        let i = info(&dp, 42).unwrap();
        assert_eq!(remotes(&i), [[10, 0, 0, 2], [10, 0, 0, 9]]);
        assert_eq!(ports(&i), [pa]);
        assert!(dp.maps.ports.get(&pb, 0).is_err(), "pb still in PORTS");
        assert_eq!(ports(&info(&dp, 7).unwrap()), [pc]);
        // A reload naming a port that does not exist changes nothing.
        let bad = cfg(vec![vni(42, &["pa", "nope0"], &[])]);
        assert!(dp.apply_config(&bad).await.is_err());
        assert_eq!(
            remotes(&info(&dp, 42).unwrap()),
            [[10, 0, 0, 2], [10, 0, 0, 9]]
        );
        // The configuration now places pc in VNI 42: it wins.
        let c3 = cfg(vec![vni(42, &["pa", "pc"], &[[10, 0, 0, 2]])]);
        assert!(dp.apply_config(&c3).await.unwrap().is_empty());
        assert_eq!(ports(&info(&dp, 42).unwrap()), [pa, pc]);
        assert!(ports(&info(&dp, 7).unwrap()).is_empty());
        assert!(
            dp.maps
                .fdb
                .get(&FdbKey::new(7, [2, 0, 0, 0, 0, 1]), 0)
                .is_err(),
            "the port's entries in its old VNI stay"
        );
        assert!(
            dp.journal().ports.is_empty(),
            "pc is the configuration's now"
        );

        // Link events: pc disappears, and comes back with a new ifindex.
        nl.delete_link(pc).await.unwrap();
        dp.link_removed(pc).await;
        assert_eq!(ports(&info(&dp, 42).unwrap()), [pa]);
        assert!(dp.maps.ports.get(&pc, 0).is_err());
        nl.create_veth("pc", "pc-c", 1500).await.unwrap();
        let link = nl.link_by_name("pc").await.unwrap();
        assert_ne!(link.index, pc);
        dp.link_changed(&link).await;
        assert_eq!(ports(&info(&dp, 42).unwrap()), [pa, link.index]);
        assert_eq!(dp.maps.ports.get(&link.index, 0).unwrap().vni, 42);

        // Deleting a VNI removes its entries and its ports.
        dp.vni_del(7).await.unwrap();
        assert!(info(&dp, 7).is_none());
        assert!(dp.journal().vnis.is_empty());

        // A fresh dataplane: configuration first, then the journal, whose
        // VNI 7 was deleted, and whose remote .9 of VNI 42 stays.
        dp.save_journal();
        let j = Journal::load(&jpath).unwrap();
        for (a, _) in [("up0", ""), ("pa", ""), ("pb", ""), ("pc", "")] {
            if let Ok(l) = nl.link_by_name(a).await {
                nl.delete_link(l.index).await.unwrap();
            }
        }
        let mut fresh = dataplane(&nl, jpath.clone()).await;
        fresh.apply_config(&c2).await.unwrap();
        fresh.apply_journal(&j).await;
        assert_eq!(
            remotes(&info(&fresh, 42).unwrap()),
            [[10, 0, 0, 2], [10, 0, 0, 9]]
        );
        let rows = fresh.vni_rows();
        assert_eq!(rows[0].remote_origins, ["config", "runtime"]);

        // Tenant limits: a VNI's own cap and senders, its ports' cap and
        // BUM budget; the instance's defaults elsewhere.
        let mut limited = vni(42, &["pa"], &[[10, 0, 0, 2]]);
        limited.limits = crate::config::VniLimits {
            max_fdb: Some(100),
            allow_remote: Some(vec![crate::config::parse_cidr("10.9.0.0/16").unwrap()]),
            port_max_fdb: Some(7),
            bum_pps: Some(300),
        };
        let mut c4 = cfg(vec![limited, vni(43, &["pb"], &[])]);
        c4.allow_remote = vec![crate::config::parse_cidr("10.8.0.0/24").unwrap()];
        fresh.set_settings(Settings::from(&c4)).unwrap();
        fresh.apply_config(&c4).await.unwrap();
        assert_eq!(info(&fresh, 42).unwrap().max_learned, 100);
        assert_eq!(info(&fresh, 43).unwrap().max_learned, 0);
        let pa = idx(&fresh, "pa").unwrap();
        let p = fresh.maps.ports.get(&pa, 0).unwrap();
        assert_eq!((p.max_learned, p.bum_pps), (7, 300));
        let pb = idx(&fresh, "pb").unwrap();
        let p = fresh.maps.ports.get(&pb, 0).unwrap();
        assert_eq!((p.max_learned, p.bum_pps), (0, 0));
        let allowed = fresh.maps.allowed_keys();
        let key = |vni, c: &str| allowed_key(vni, &crate::config::parse_cidr(c).unwrap());
        assert_eq!(key(42, "10.9.0.0/16").0, 32 + 96 + 16);
        assert!(allowed.contains(&key(42, "10.9.0.0/16")));
        assert!(!allowed.contains(&key(42, "10.8.0.0/24")));
        assert!(allowed.contains(&key(43, "10.8.0.0/24")));
        assert!(!allowed.contains(&key(43, "10.9.0.0/16")));
        assert!(allowed.contains(&allowed_host_key(42, "10.0.0.2".parse().unwrap())));
    });
    let _ = std::fs::remove_dir_all(&dir);
}

/// A VNI over IPv6 beside an IPv4 one: its flag, remotes, allowed senders,
/// group, host interface MTU; and the family-mix errors.
#[test]
fn ipv6_vni() {
    let dir = std::env::temp_dir().join(format!("vxlan-fwd-dp6-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let jpath = dir.join("journal.json");
    in_private_netns(move || async move {
        let nl = Netlink::new().unwrap();
        let mut dp = dataplane(&nl, jpath).await;
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let mut v6 = vni(8, &["pa"], &[]);
        v6.remotes = vec![ip("fd00:57::2")];
        v6.host_if = Some("vx8".into());
        v6.limits.allow_remote = Some(vec![crate::config::parse_cidr("fd00:99::/48").unwrap()]);
        let mut g6 = vni(9, &["pb"], &[]);
        g6.group = Some(ip("ff05::100"));
        let c = cfg(vec![v6, g6, vni(42, &["pc"], &[[10, 0, 0, 2]])]);
        let problems = dp.apply_config(&c).await.unwrap();
        assert!(problems.is_empty(), "{problems:?}");

        let i8 = info(&dp, 8).unwrap();
        assert_ne!(i8.flags & VNI_F_IPV6, 0);
        assert_eq!(
            i8.remotes[..i8.n_remotes as usize],
            [vtep_from_ip(ip("fd00:57::2"))]
        );
        assert_eq!(info(&dp, 42).unwrap().flags & VNI_F_IPV6, 0);
        let i9 = info(&dp, 9).unwrap();
        assert_ne!(i9.flags & VNI_F_IPV6, 0);
        assert_eq!(i9.group, vtep_from_ip(ip("ff05::100")));
        assert!(
            dp.maps
                .groups
                .get(&vtep_from_ip(ip("ff05::100")), 0)
                .is_ok()
        );
        assert!(dp.memberships.contains_key(&ip("ff05::100")), "MLD join");
        let allowed = dp.maps.allowed_keys();
        assert!(allowed.contains(&allowed_host_key(8, ip("fd00:57::2"))));
        assert_eq!(allowed_host_key(8, ip("fd00:57::2")).0, 32 + 128);
        let p48 = allowed_key(8, &crate::config::parse_cidr("fd00:99::/48").unwrap());
        assert_eq!(p48.0, 32 + 48);
        assert!(allowed.contains(&p48));
        // The host interface of an IPv6 VNI: uplink MTU - 70.
        assert_eq!(nl.link_by_name("vx8").await.unwrap().mtu, 1500 - 70);
        assert_eq!(dp.local_of(8), Some(ip("fd00:57::1")));
        assert_eq!(dp.local_of(42), Some(ip("10.0.0.1")));
        let cfg_now = dp.maps.config().unwrap();
        assert_eq!(cfg_now.local_ip6, ip_octets6("fd00:57::1"));
        assert_eq!(cfg_now.local_ip, [10, 0, 0, 1]);

        // Mixing families is refused, naming the VNI and both addresses.
        let e = format!(
            "{:#}",
            dp.remote_add(8, ip("10.0.0.7"), Origin::Runtime)
                .await
                .unwrap_err()
        );
        assert!(
            e.contains("VNI 8") && e.contains("fd00:57::2") && e.contains("10.0.0.7"),
            "{e}"
        );
        let words = |s: &str| s.split_whitespace().map(str::to_owned).collect::<Vec<_>>();
        let e = format!(
            "{:#}",
            dp.fdb(Op::Add, &words("02:00:00:00:00:09 dst 10.0.0.7 vni 8"))
                .await
                .unwrap_err()
        );
        assert!(e.contains("VNI 8") && e.contains("10.0.0.7"), "{e}");
        let e = format!(
            "{:#}",
            dp.fdb(Op::Add, &words("02:00:00:00:00:09 dst fd00:57::7 vni 42"))
                .await
                .unwrap_err()
        );
        assert!(e.contains("VNI 42") && e.contains("fd00:57::7"), "{e}");
        let e = format!(
            "{:#}",
            dp.vni_add(
                &VniSpec {
                    id: 10,
                    remotes: vec![ip("fd00:57::2"), ip("10.0.0.2")],
                    ..Default::default()
                },
                Origin::Runtime
            )
            .await
            .unwrap_err()
        );
        assert!(e.contains("VNI 10 mixes underlay families"), "{e}");
        assert!(info(&dp, 10).is_none());
        // A static IPv6 entry in the IPv6 VNI is fine, and shows as such.
        dp.fdb(Op::Add, &words("02:00:00:00:00:09 dst fd00:57::7 vni 8"))
            .await
            .unwrap();
        let rows = fdb::rows(&dp.maps, &dp.port_names(), &Default::default()).unwrap();
        assert!(
            rows.iter()
                .any(|r| r.to_string() == "02:00:00:00:00:09 dst fd00:57::7 vni 8 permanent"),
            "{rows:?}"
        );
        assert!(
            dp.maps
                .allowed_keys()
                .contains(&allowed_host_key(8, ip("fd00:57::7")))
        );
        // A VNI with no address is IPv4 here (there is an IPv4 local
        // address); its first remote decides.
        dp.vni_add(
            &VniSpec {
                id: 11,
                ..Default::default()
            },
            Origin::Runtime,
        )
        .await
        .unwrap();
        assert_eq!(info(&dp, 11).unwrap().flags & VNI_F_IPV6, 0);
        let behind_v4 = FdbKey::new(11, [2, 0, 0, 0, 0, 0x11]);
        let e4 = vxlan_common::FdbEntry::new_remote(vtep_from_ip(ip("10.0.0.9")), 0, 0);
        dp.maps.fdb.insert(behind_v4, e4, 0).unwrap();
        dp.remote_add(11, ip("fd00:57::5"), Origin::Runtime)
            .await
            .unwrap();
        assert_ne!(info(&dp, 11).unwrap().flags & VNI_F_IPV6, 0);
        assert!(
            dp.maps.fdb.get(&behind_v4, 0).is_err(),
            "an entry behind an IPv4 VTEP in a VNI turned IPv6"
        );
        // A remote removed, a VNI removed: their senders are no longer
        // allowed (the entries go before VNIS changes).
        assert!(
            dp.maps
                .allowed_keys()
                .contains(&allowed_host_key(11, ip("fd00:57::5")))
        );
        dp.remote_del(11, ip("fd00:57::5")).unwrap();
        assert!(
            !dp.maps
                .allowed_keys()
                .contains(&allowed_host_key(11, ip("fd00:57::5")))
        );
        dp.vni_del(8).await.unwrap();
        let allowed = dp.maps.allowed_keys();
        for k in [
            allowed_host_key(8, ip("fd00:57::2")),
            allowed_host_key(8, ip("fd00:57::7")),
            allowed_key(8, &crate::config::parse_cidr("fd00:99::/48").unwrap()),
        ] {
            assert!(!allowed.contains(&k), "{k:?} left after vni del 8");
        }
        // Added again at once: the static sender of its old FDB (flushed
        // with it) is not allowed again; its default remote is.
        dp.vni_add(
            &VniSpec {
                id: 8,
                remotes: vec![ip("fd00:57::2")],
                ..Default::default()
            },
            Origin::Runtime,
        )
        .await
        .unwrap();
        let allowed = dp.maps.allowed_keys();
        assert!(allowed.contains(&allowed_host_key(8, ip("fd00:57::2"))));
        assert!(
            !allowed.contains(&allowed_host_key(8, ip("fd00:57::7"))),
            "the static sender of VNI 8 before it was removed"
        );
    });
    let _ = std::fs::remove_dir_all(&dir);
}

fn ip_octets6(s: &str) -> [u8; 16] {
    s.parse::<std::net::Ipv6Addr>().unwrap().octets()
}
