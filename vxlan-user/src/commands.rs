//! Commands that inspect or change the forwarder running in this network
//! namespace, from a separate process.

use std::collections::HashMap;

use anyhow::{Context as _, Result, bail};

use crate::{
    cli::{FdbCommand, RunArgs},
    config::{self, Overrides, VniConfig},
    events,
    fdb::{self, Op, Spec},
    loader,
    maps::{self, Maps},
    netlink::Netlink,
    stats,
};

/// The maps of the running forwarder, its uplink ifindex and the names of
/// this namespace's interfaces.
async fn running(nl: &Netlink) -> Result<(Maps, u32, HashMap<u32, String>)> {
    let (uplink, prog_id) = maps::find_running(nl).await?;
    let maps = Maps::from_program(prog_id)?;
    let names = nl
        .links()
        .await?
        .into_iter()
        .map(|l| (l.index, l.name))
        .collect();
    Ok((maps, uplink.index, names))
}

pub async fn run(args: RunArgs) -> Result<()> {
    let file = args.config.as_deref().map(config::load).transpose()?;
    let vni = match args.vni {
        Some(id) => Some(VniConfig {
            id,
            ports: args.ports,
            remotes: args.remotes,
            group: args.group,
            host_if: args.host_if,
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
    let cfg = config::resolve(
        file,
        Overrides {
            iface: args.iface,
            local: args.local,
            dstport: args.dstport,
            ageing: args.ageing,
            max_fdb: args.max_fdb,
            learning: args.no_learning.then_some(false),
            allow_remote: args.allow_remote,
            vni,
        },
    )?;
    let opts = loader::RunOptions {
        xdp_mode: args.xdp_mode,
        metrics: args.metrics,
        debug_log: args.debug_log,
    };
    loader::run(cfg, opts).await
}

pub async fn fdb(cmd: FdbCommand) -> Result<()> {
    let nl = Netlink::new()?;
    let (mut maps, uplink_ifindex, names) = running(&nl).await?;
    match cmd {
        FdbCommand::Show { json } => {
            let rows = fdb::rows(&maps, &names)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&rows)?);
            } else {
                for r in rows {
                    println!("{r}");
                }
            }
        }
        FdbCommand::Add { words } => change(&nl, &mut maps, Op::Add, &words).await?,
        FdbCommand::Replace { words } => change(&nl, &mut maps, Op::Replace, &words).await?,
        FdbCommand::Append { words } => change(&nl, &mut maps, Op::Append, &words).await?,
        FdbCommand::Del { words } => change(&nl, &mut maps, Op::Del, &words).await?,
        FdbCommand::Flush { vni, learned } => {
            let n = fdb::flush(&mut maps, vni, learned)?;
            println!("flushed {n} entries");
        }
        FdbCommand::Watch { json } => events::watch(uplink_ifindex, json).await?,
    }
    Ok(())
}

async fn change(nl: &Netlink, maps: &mut Maps, op: Op, words: &[String]) -> Result<()> {
    let spec = Spec::parse(words)?;
    if op == Op::Append && spec.mac != [0; 6] {
        bail!("`fdb append` is for the all-zeros MAC (another default remote)");
    }
    let port_index = match &spec.dev {
        Some(dev) => {
            let link = nl.link_by_name(dev).await?;
            match maps.ports.get(&link.index, 0) {
                Ok(p) if p.vni == spec.vni => Some(link.index),
                _ => bail!("'{dev}' is not a port of VNI {}", spec.vni),
            }
        }
        None => None,
    };
    fdb::apply(maps, op, &spec, port_index).context("changing the FDB")
}

pub async fn stats(json: bool) -> Result<()> {
    let nl = Netlink::new()?;
    let (maps, _, _) = running(&nl).await?;
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
