//! Checks on a forwarder's FDB rows (`fdb show --json`), shared by the
//! end-to-end files: "learned behind VTEP x", "learned on port y", the
//! default remotes of a VNI.
//!
//! They take [`FdbEntry`] rows; a `Vec<serde_json::Value>` from
//! `fdb_show_json` converts with [`rows`].

use serde_json::Value;

use crate::fdb_harness::FdbEntry;

/// `fdb show --json` rows as [`FdbEntry`]s.
pub fn rows(json: &[Value]) -> Vec<FdbEntry> {
    json.iter()
        .map(|v| {
            serde_json::from_value(v.clone())
                .unwrap_or_else(|e| panic!("not an FDB row ({e}): {v}"))
        })
        .collect()
}

/// The entry for (`vni`, `mac`), if any (`mac` in any case).
pub fn find<'a>(entries: &'a [FdbEntry], vni: u32, mac: &str) -> Option<&'a FdbEntry> {
    let mac = mac.to_ascii_lowercase();
    entries.iter().find(|e| e.vni == vni && e.mac == mac)
}

/// Asserts `mac` in `vni` is a learned entry behind VTEP `dst`; `whose`
/// names the table in the message.
pub fn assert_remote(entries: &[FdbEntry], vni: u32, mac: &str, dst: &str, whose: &str) {
    let e = find(entries, vni, mac).unwrap_or_else(|| {
        panic!("{whose}: no entry for {mac} in VNI {vni} (expected dst {dst}): {entries:#?}")
    });
    assert!(
        e.dst.is_some_and(|d| d.to_string() == dst) && e.dev.is_none() && !e.permanent,
        "{whose}: expected `{mac} dst {dst} vni {vni}` (learned), found `{e}`"
    );
}

/// Asserts `mac` in `vni` is a learned entry on local port `dev`.
pub fn assert_local(entries: &[FdbEntry], vni: u32, mac: &str, dev: &str, whose: &str) {
    let e = find(entries, vni, mac).unwrap_or_else(|| {
        panic!("{whose}: no entry for {mac} in VNI {vni} (expected dev {dev}): {entries:#?}")
    });
    assert!(
        e.dev.as_deref() == Some(dev) && e.dst.is_none() && !e.permanent,
        "{whose}: expected `{mac} dev {dev} vni {vni}` (learned), found `{e}`"
    );
}

/// The default remotes (all-zeros entries) of `vni`, sorted; asserts each
/// is permanent and has a destination.
pub fn defaults(entries: &[FdbEntry], vni: u32) -> Vec<String> {
    let mut v: Vec<String> = entries
        .iter()
        .filter(|e| e.is_default() && e.vni == vni)
        .map(|e| {
            assert!(e.permanent, "default remote not permanent: {e}");
            e.dst
                .map(|d| d.to_string())
                .unwrap_or_else(|| panic!("default remote without dst: {e}"))
        })
        .collect();
    v.sort();
    v
}
