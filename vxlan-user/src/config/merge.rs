//! Merging the file with the command line ([`Overrides`]) into a
//! [`Config`], checked again as a whole.

use super::*;
/// Merges the file (if any) with the command line and validates the result.
pub fn resolve(file: Option<FileConfig>, cli: Overrides) -> Result<Config> {
    let file = file.unwrap_or_default();
    let origin = if file.meta.origin.is_empty() {
        "config file"
    } else {
        file.meta.origin.as_str()
    };

    if let Some(name) = &cli.iface {
        check_ifname(name, IFNAME_MAX, "").map_err(|e| anyhow!("--iface: {e}"))?;
    }
    for ip in &cli.local {
        check_local(*ip).map_err(|e| anyhow!("--local: {e}"))?;
    }
    let cli_local = Locals::from_list(&cli.local).map_err(|e| anyhow!("--local: {e}"))?;
    if let Some(p) = cli.dstport {
        check_dstport(i64::from(p)).map_err(|e| anyhow!("--dstport: {e}"))?;
    }
    if let Some(s) = cli.ageing {
        check_ageing(i64::try_from(s).unwrap_or(i64::MAX)).map_err(|e| anyhow!("--ageing: {e}"))?;
    }
    if let Some(n) = cli.max_fdb {
        check_max_fdb(i64::from(n)).map_err(|e| anyhow!("--max-fdb: {e}"))?;
    }

    let (iface, iface_src) = match (cli.iface, file.iface) {
        (Some(i), _) => (i, "--iface".to_owned()),
        (None, Some(i)) => {
            let src = match file.meta.iface {
                Some(l) => format!("`iface`, {origin}:{l}"),
                None => format!("`iface` in {origin}"),
            };
            (i, src)
        }
        (None, None) => {
            return Err(anyhow!(
                "no uplink: give --iface or `iface` in the config file"
            ));
        }
    };

    // The file's VNIs, the command line's replacing the one with its id.
    let mut vnis: Vec<(VniConfig, Option<usize>)> = file
        .vnis
        .iter()
        .cloned()
        .enumerate()
        .map(|(i, v)| (v, Some(i)))
        .collect();
    if let Some(v) = cli.vni {
        match vnis.iter_mut().find(|(f, _)| f.id == v.id) {
            Some(slot) => *slot = (v, None),
            None => vnis.push((v, None)),
        }
    }
    // No VNI is an empty VTEP: VNIs come at run time (`vxlan-fwd vni add`).
    let sourced: Vec<_> = vnis
        .iter()
        .map(|(v, i)| {
            let src = match i {
                Some(i) => Src::File {
                    origin,
                    lines: file_lines(&file.meta, *i, v.id),
                },
                None => Src::Cli,
            };
            (v, src)
        })
        .collect();
    check_vnis(&sourced, Some((&iface, &iface_src)))?;

    for e in &cli.etcd {
        check_endpoint(e).map_err(|err| anyhow!("--etcd: {err}"))?;
    }
    if let Some(p) = &cli.etcd_prefix {
        check_prefix(p).map_err(|err| anyhow!("--etcd-prefix: {err}"))?;
    }
    if let Some(t) = cli.etcd_ttl {
        check_ttl(i64::try_from(t).unwrap_or(i64::MAX))
            .map_err(|err| anyhow!("--etcd-ttl: {err}"))?;
    }
    let fe = file.etcd.clone().unwrap_or_default();
    let endpoints = if cli.etcd.is_empty() {
        fe.endpoints.clone()
    } else {
        cli.etcd.clone()
    };
    let etcd = if endpoints.is_empty() {
        if file.etcd.is_some() {
            return Err(anyhow!("{origin}: [etcd] has no `endpoints`"));
        }
        if cli.etcd_prefix.is_some() || cli.etcd_ttl.is_some() || cli.arp_suppress.is_some() {
            return Err(anyhow!(
                "--etcd-prefix, --etcd-ttl and --(no-)arp-suppress need --etcd"
            ));
        }
        None
    } else {
        Some(EtcdConfig {
            endpoints,
            prefix: cli
                .etcd_prefix
                .clone()
                .or(fe.prefix)
                .unwrap_or_else(|| DEFAULT_ETCD_PREFIX.to_owned()),
            ttl: cli.etcd_ttl.or(fe.ttl).unwrap_or(DEFAULT_ETCD_TTL),
            arp_suppress: cli.arp_suppress.or(fe.arp_suppress).unwrap_or(true),
            ca: fe.ca,
            cert: fe.cert,
            key: fe.key,
        })
    };

    Ok(Config {
        iface,
        local: cli_local.or(file.local),
        dstport: cli.dstport.or(file.dstport).unwrap_or(DEFAULT_DSTPORT),
        ageing: cli.ageing.or(file.ageing).unwrap_or(DEFAULT_AGEING),
        max_fdb: cli.max_fdb.or(file.max_fdb).unwrap_or(DEFAULT_MAX_FDB),
        learning: cli.learning.or(file.learning).unwrap_or(true),
        allow_remote: if cli.allow_remote.is_empty() {
            file.allow_remote.clone()
        } else {
            cli.allow_remote
        },
        port_max_fdb: cli.port_max_fdb.or(file.port_max_fdb),
        bum_pps: cli.bum_pps.or(file.bum_pps),
        vnis: vnis.into_iter().map(|(v, _)| v).collect(),
        etcd,
    })
}

/// The lines of the file's `i`-th VNI, if they (still) describe VNI `id`.
pub(super) fn file_lines(meta: &Meta, i: usize, id: u32) -> Option<&VniLines> {
    match meta.vnis.get(i) {
        Some(l) if l.vni == id => Some(l),
        _ => meta.vnis.iter().find(|l| l.vni == id),
    }
}
