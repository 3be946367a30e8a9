//! The client side of the commands run from a separate process in the
//! forwarder's network namespace: `vni`, `port` and the changes of `fdb`
//! go to the running forwarder over its control socket (it applies them
//! through its dataplane); `fdb show` and `stats` read the maps directly.

use std::collections::HashMap;

use anyhow::{Result, bail};

use crate::{
    cli::{FdbArgs, FdbCommand, PortArgs, PortCommand, RunArgs, VniArgs, VniCommand},
    config::{Overrides, VniConfig, VniLimits},
    control::{self, Request, Response},
    daemon::{self, Launch},
    dataplane::VniSpec,
    events,
    fdb::{self, Op},
    maps::{self, Maps},
    netlink::Netlink,
    stats,
};

/// Prints `items` as a pretty JSON array, or one per line.
fn print_list<T: serde::Serialize + std::fmt::Display>(items: &[T], json: bool) -> Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(items)?);
    } else {
        for item in items {
            println!("{item}");
        }
    }
    Ok(())
}

/// The maps of the running forwarder (on `iface`, or the only one) and
/// the names of this namespace's interfaces.
async fn running(nl: &Netlink, iface: Option<&str>) -> Result<(Maps, HashMap<u32, String>)> {
    let (_, prog_id) = maps::find_running(nl, iface).await?;
    let maps = Maps::from_program(prog_id)?;
    let names = nl
        .links()
        .await?
        .into_iter()
        .map(|l| (l.index, l.name))
        .collect();
    Ok((maps, names))
}

pub async fn run(args: RunArgs) -> Result<()> {
    let vni = match args.vni {
        Some(id) => Some(VniConfig {
            id,
            ports: args.ports,
            remotes: args.remotes,
            group: args.group,
            host_if: args.host_if,
            limits: Default::default(),
        }),
        None if !args.ports.is_empty()
            || !args.remotes.is_empty()
            || args.group.is_some()
            || args.host_if.is_some() =>
        {
            bail!("--port, --remote, --group and --host-if describe a VNI: give --vni too")
        }
        None => None,
    };
    let launch = Launch {
        file: args.config,
        overrides: Overrides {
            iface: args.iface,
            local: args.local,
            dstport: args.dstport,
            ageing: args.ageing,
            max_fdb: args.max_fdb,
            learning: args.no_learning.then_some(false),
            allow_remote: args.allow_remote,
            port_max_fdb: args.port_max_fdb,
            bum_pps: args.bum_pps,
            vni,
            etcd: args.etcd,
            etcd_prefix: args.etcd_prefix,
            etcd_ttl: args.etcd_ttl,
            arp_suppress: if args.no_arp_suppress {
                Some(false)
            } else {
                args.arp_suppress.then_some(true)
            },
        },
    };
    let opts = daemon::RunOptions {
        xdp_mode: args.xdp_mode,
        metrics: args.metrics,
        debug_log: args.debug_log,
    };
    daemon::run(launch, opts).await
}

/// Sends `req`; prints the answer's message, if any.
async fn change(iface: Option<&str>, req: Request) -> Result<()> {
    if let Response::Ok {
        message: Some(m), ..
    } = control::call(iface, &req).await?
    {
        println!("{m}");
    }
    Ok(())
}

pub async fn fdb(args: FdbArgs) -> Result<()> {
    let iface = args.iface.as_deref();
    match args.command {
        FdbCommand::Show { json } => {
            let nl = Netlink::new()?;
            let (maps, names) = running(&nl, iface).await?;
            // The origins of the default remotes are the forwarder's to tell.
            let origins = match control::call(iface, &Request::VniShow).await {
                Ok(Response::Vnis { vnis }) => vnis
                    .into_iter()
                    .flat_map(|v| {
                        let vni = v.vni;
                        v.remotes
                            .into_iter()
                            .zip(v.remote_origins)
                            .map(move |(r, o)| ((vni, r), o))
                    })
                    .collect(),
                _ => HashMap::new(),
            };
            print_list(&fdb::rows(&maps, &names, &origins)?, json)
        }
        FdbCommand::Add { words } => change(iface, Request::Fdb { op: Op::Add, words }).await,
        FdbCommand::Replace { words } => {
            change(
                iface,
                Request::Fdb {
                    op: Op::Replace,
                    words,
                },
            )
            .await
        }
        FdbCommand::Append { words } => {
            change(
                iface,
                Request::Fdb {
                    op: Op::Append,
                    words,
                },
            )
            .await
        }
        FdbCommand::Del { words } => change(iface, Request::Fdb { op: Op::Del, words }).await,
        FdbCommand::Flush { vni, learned } => {
            change(iface, Request::FdbFlush { vni, learned }).await
        }
        FdbCommand::Watch { json } => events::watch(iface, json).await,
    }
}

pub async fn vni(args: VniArgs) -> Result<()> {
    let iface = args.iface.as_deref();
    match args.command {
        VniCommand::Add {
            vni,
            remotes,
            group,
            host_if,
            max_fdb,
            allow_remote,
            port_max_fdb,
            bum_pps,
        } => {
            let limits = VniLimits {
                max_fdb,
                allow_remote: (!allow_remote.is_empty()).then_some(allow_remote),
                port_max_fdb,
                bum_pps,
            };
            let spec = VniSpec {
                id: vni,
                remotes,
                group,
                host_if,
                limits,
            };
            change(iface, Request::VniAdd(spec)).await
        }
        VniCommand::Del { vni } => change(iface, Request::VniDel { vni }).await,
        VniCommand::Show { json } => {
            let Response::Vnis { vnis } = control::call(iface, &Request::VniShow).await? else {
                bail!("unexpected answer from the forwarder");
            };
            print_list(&vnis, json)
        }
    }
}

pub async fn port(args: PortArgs) -> Result<()> {
    let iface = args.iface.as_deref();
    match args.command {
        PortCommand::Add { name, vni } => change(iface, Request::PortAdd { name, vni }).await,
        PortCommand::Del { name } => change(iface, Request::PortDel { name }).await,
        PortCommand::Show { json } => {
            let Response::Ports { ports } = control::call(iface, &Request::PortShow).await? else {
                bail!("unexpected answer from the forwarder");
            };
            print_list(&ports, json)
        }
    }
}

pub async fn stats(json: bool, iface: Option<&str>) -> Result<()> {
    let nl = Netlink::new()?;
    let (maps, _) = running(&nl, iface).await?;
    let values = stats::read(&maps)?;
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&stats::to_json(&values))?
        );
    } else {
        for (c, n) in values {
            println!("{:<24} {n}", c.name());
        }
    }
    Ok(())
}
