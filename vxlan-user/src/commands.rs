//! Commands that inspect the forwarder running in this network namespace.

use std::collections::HashMap;

use anyhow::Result;

use crate::{fdb, maps, netlink::Netlink, stats};

pub async fn fdb_show(json: bool) -> Result<()> {
    let nl = Netlink::new()?;
    let (_, prog_id) = maps::find_running(&nl).await?;
    let maps = maps::Maps::from_program(prog_id)?;
    let names: HashMap<u32, String> = nl
        .links()
        .await?
        .into_iter()
        .map(|l| (l.index, l.name))
        .collect();
    let rows = fdb::rows(&maps, &names)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
    } else {
        for r in rows {
            println!("{r}");
        }
    }
    Ok(())
}

pub async fn stats(json: bool) -> Result<()> {
    let nl = Netlink::new()?;
    let (_, prog_id) = maps::find_running(&nl).await?;
    let maps = maps::Maps::from_program(prog_id)?;
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
