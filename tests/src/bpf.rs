//! Which eBPF programs are loaded (system-wide), to check that a stopped
//! forwarder left none behind.

use std::collections::BTreeSet;

use aya::programs::loaded_programs;

/// A loaded program: id and name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct LoadedProg {
    pub id: u32,
    pub name: String,
}

/// Maps used by program `prog_id`; empty if it is not loaded.
pub fn prog_map_ids(prog_id: u32) -> BTreeSet<u32> {
    loaded_programs()
        .filter_map(Result::ok)
        .find(|p| p.id() == prog_id)
        .and_then(|p| p.map_ids().ok().flatten())
        .map(|ids| ids.into_iter().collect())
        .unwrap_or_default()
}

/// Every loaded program that uses at least one of `maps`: the programs of
/// one forwarder instance share its maps, so given the maps of its XDP
/// program this finds its TC programs too.
pub fn progs_using_maps(maps: &BTreeSet<u32>) -> Vec<LoadedProg> {
    if maps.is_empty() {
        return Vec::new();
    }
    loaded_programs()
        .filter_map(Result::ok)
        .filter(|p| {
            p.map_ids()
                .ok()
                .flatten()
                .is_some_and(|ids| ids.iter().any(|id| maps.contains(id)))
        })
        .map(|p| LoadedProg {
            id: p.id(),
            name: p.name_as_str().unwrap_or("").to_owned(),
        })
        .collect()
}

/// Whether program `prog_id` is loaded.
pub fn prog_loaded(prog_id: u32) -> bool {
    loaded_programs()
        .filter_map(Result::ok)
        .any(|p| p.id() == prog_id)
}
