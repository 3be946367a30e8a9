//! Counter sums for `vxlan-fwd stats`.

use anyhow::Result;
use serde_json::{Map, Value, json};
use vxlan_common::Counter;

use crate::maps::Maps;

/// Every counter summed over the CPUs, in index order.
pub fn read(maps: &Maps) -> Result<Vec<(Counter, u64)>> {
    Counter::ALL
        .iter()
        .map(|&c| Ok((c, maps.counters.get(&(c as u32), 0)?.iter().sum())))
        .collect()
}

/// `{"counters": {name: n, ...}, "drops": {reason: n, ...}}`: every drop
/// counter once more under `drops`, keyed by its reason.
pub fn to_json(values: &[(Counter, u64)]) -> Value {
    let mut counters = Map::new();
    let mut drops = Map::new();
    for (c, n) in values {
        counters.insert(c.name().to_owned(), json!(n));
        if let Some(reason) = c.name().strip_prefix("drop_") {
            drops.insert(reason.to_owned(), json!(n));
        }
    }
    json!({ "counters": counters, "drops": drops })
}
