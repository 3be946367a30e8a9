//! The `--config FILE` model: one instance serving many VNIs.
//!
//! ```toml
//! iface = "eth0"          # uplink
//! local = "192.168.57.50" # optional, default: first IPv4 address of iface
//! dstport = 4789          # optional
//! ageing = 300            # optional, seconds
//! max_fdb = 65536         # optional, cap on learned FDB entries
//! learning = true         # optional
//!
//! [[vni]]
//! id = 42
//! ports = ["veth0", "veth1"]     # optional
//! remotes = ["192.168.57.54"]    # optional
//! group = "224.1.1.1"            # optional multicast group
//! host_if = "vxlan0"             # optional
//! ```
//!
//! [`parse`] (or [`load`]) turns the file into a [`FileConfig`], checking
//! everything that can be checked from the file alone; errors name the file,
//! the line and the key (``vxlan.toml:7: key `id`: VNI 0 is outside
//! 1..16777215``). [`resolve`] merges it with the command line
//! ([`Overrides`]) and checks the result again; errors about command-line
//! values name the flag instead (`--vni: ...`).

use std::{collections::HashMap, net::Ipv4Addr, ops::Range, path::Path};

use anyhow::{Result, anyhow};
use serde::Deserialize;
use toml::{
    Spanned,
    de::{DeTable, DeValue},
};
use vxlan_common::{MAX_PORTS, MAX_REMOTES, VNI_MAX};

pub const DEFAULT_DSTPORT: u16 = 4789;
pub const DEFAULT_AGEING: u64 = 300;
pub const DEFAULT_MAX_FDB: u32 = 65_536;

/// Longest interface name the kernel accepts (`IFNAMSIZ - 1`).
const IFNAME_MAX: usize = 15;
/// Longest host interface name: the loader names its peer `<host_if>-fwd`.
pub const HOST_IF_MAX: usize = IFNAME_MAX - "-fwd".len();

/// Keys allowed at the top level of the file.
const TOP_KEYS: &[&str] = &[
    "iface",
    "local",
    "dstport",
    "ageing",
    "max_fdb",
    "learning",
    "allow_remote",
    "vni",
];
/// Keys allowed in a `[[vni]]` table.
const VNI_KEYS: &[&str] = &["id", "ports", "remotes", "group", "host_if"];

/// An IPv4 prefix, `a.b.c.d/len` (a bare address is a /32).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Cidr {
    pub addr: Ipv4Addr,
    pub len: u8,
}

impl Cidr {
    /// The first address of the prefix.
    pub fn network(&self) -> Ipv4Addr {
        let mask = if self.len == 0 {
            0
        } else {
            u32::MAX << (32 - u32::from(self.len))
        };
        Ipv4Addr::from(u32::from(self.addr) & mask)
    }
}

impl std::fmt::Display for Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.len)
    }
}

/// Parses `a.b.c.d/len` or `a.b.c.d`.
pub fn parse_cidr(s: &str) -> std::result::Result<Cidr, String> {
    let bad = || format!("'{s}' is not an IPv4 prefix (like 192.168.57.0/24)");
    let (addr, len) = match s.split_once('/') {
        Some((a, l)) => (a, l.parse::<u8>().map_err(|_| bad())?),
        None => (s, 32),
    };
    let addr = addr.parse().map_err(|_| bad())?;
    if len > 32 {
        return Err(bad());
    }
    Ok(Cidr { addr, len })
}

/// One VNI: its local ports, flood list and host interface.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VniConfig {
    pub id: u32,
    pub ports: Vec<String>,
    pub remotes: Vec<Ipv4Addr>,
    pub group: Option<Ipv4Addr>,
    pub host_if: Option<String>,
}

/// The complete, validated configuration of one instance.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    pub iface: String,
    pub local: Option<Ipv4Addr>,
    pub dstport: u16,
    pub ageing: u64,
    pub max_fdb: u32,
    pub learning: bool,
    /// Senders allowed besides each VNI's remotes (`--allow-remote`).
    pub allow_remote: Vec<Cidr>,
    pub vnis: Vec<VniConfig>,
}

/// Command-line values; every field optional. They describe one VNI and
/// override the file's top-level keys.
#[derive(Clone, Debug, Default)]
pub struct Overrides {
    pub iface: Option<String>,
    pub local: Option<Ipv4Addr>,
    pub dstport: Option<u16>,
    pub ageing: Option<u64>,
    pub max_fdb: Option<u32>,
    pub learning: Option<bool>,
    /// Replaces the file's `allow_remote` when not empty.
    pub allow_remote: Vec<Cidr>,
    pub vni: Option<VniConfig>,
}

/// A parsed (and file-locally valid) config file; `None` where the file
/// does not give a key. Remembers where each value came from so that
/// [`resolve`] can point at lines.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FileConfig {
    pub iface: Option<String>,
    pub local: Option<Ipv4Addr>,
    pub dstport: Option<u16>,
    pub ageing: Option<u64>,
    pub max_fdb: Option<u32>,
    pub learning: Option<bool>,
    pub allow_remote: Vec<Cidr>,
    pub vnis: Vec<VniConfig>,
    meta: Meta,
}

impl FileConfig {
    /// The name the file was parsed under (its path).
    pub fn origin(&self) -> &str {
        &self.meta.origin
    }
}

/// Source positions; ignored by `==` (two files saying the same thing are
/// the same configuration).
#[derive(Clone, Debug, Default)]
struct Meta {
    origin: String,
    iface: Option<usize>,
    vnis: Vec<VniLines>,
}

impl PartialEq for Meta {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}
impl Eq for Meta {}

/// 1-based lines of one `[[vni]]` table's values.
#[derive(Clone, Debug, Default)]
struct VniLines {
    vni: u32,
    table: usize,
    id: usize,
    ports_key: Option<usize>,
    ports: Vec<usize>,
    remotes_key: Option<usize>,
    remotes: Vec<usize>,
    group: Option<usize>,
    host_if: Option<usize>,
}

// ---------------------------------------------------------------------------
// Parsing

/// The file as written, with value positions.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    iface: Option<Spanned<String>>,
    local: Option<Spanned<String>>,
    dstport: Option<Spanned<i64>>,
    ageing: Option<Spanned<i64>>,
    max_fdb: Option<Spanned<i64>>,
    learning: Option<bool>,
    allow_remote: Option<Vec<Spanned<String>>>,
    #[serde(default)]
    vni: Vec<Spanned<RawVni>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawVni {
    id: Spanned<i64>,
    ports: Option<Spanned<Vec<Spanned<String>>>>,
    remotes: Option<Spanned<Vec<Spanned<String>>>>,
    group: Option<Spanned<String>>,
    host_if: Option<Spanned<String>>,
}

/// Reads and parses a config file.
pub fn load(path: &Path) -> Result<FileConfig> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| anyhow!("cannot read config file '{}': {e}", path.display()))?;
    parse(&text, &path.display().to_string())
}

/// Parses a config file's text. `origin` (the file path) prefixes error
/// messages.
pub fn parse(text: &str, origin: &str) -> Result<FileConfig> {
    let at = |span: Range<usize>, key: &str| {
        format!("{origin}:{}: key `{key}`", line_of(text, span.start))
    };
    let doc = DeTable::parse(text).map_err(|e| anyhow!(syntax_error(text, origin, &e)))?;
    let raw: RawFile = RawFile::deserialize(toml::de::Deserializer::from(doc.clone()))
        .map_err(|e| anyhow!(shape_error(text, origin, doc.get_ref(), &e)))?;

    let mut file = FileConfig {
        meta: Meta {
            origin: origin.to_owned(),
            ..Meta::default()
        },
        ..FileConfig::default()
    };
    if let Some(v) = raw.iface {
        check_ifname(v.get_ref(), IFNAME_MAX, "")
            .map_err(|e| anyhow!("{}: {e}", at(v.span(), "iface")))?;
        file.meta.iface = Some(line_of(text, v.span().start));
        file.iface = Some(v.into_inner());
    }
    if let Some(v) = raw.local {
        let ip = parse_ipv4(v.get_ref())
            .and_then(check_local)
            .map_err(|e| anyhow!("{}: {e}", at(v.span(), "local")))?;
        file.local = Some(ip);
    }
    if let Some(v) = raw.dstport {
        let port =
            check_dstport(*v.get_ref()).map_err(|e| anyhow!("{}: {e}", at(v.span(), "dstport")))?;
        file.dstport = Some(port);
    }
    if let Some(v) = raw.ageing {
        let secs =
            check_ageing(*v.get_ref()).map_err(|e| anyhow!("{}: {e}", at(v.span(), "ageing")))?;
        file.ageing = Some(secs);
    }
    if let Some(v) = raw.max_fdb {
        let cap =
            check_max_fdb(*v.get_ref()).map_err(|e| anyhow!("{}: {e}", at(v.span(), "max_fdb")))?;
        file.max_fdb = Some(cap);
    }
    file.learning = raw.learning;
    for v in raw.allow_remote.unwrap_or_default() {
        let c = parse_cidr(v.get_ref())
            .map_err(|e| anyhow!("{}: {e}", at(v.span(), "allow_remote")))?;
        file.allow_remote.push(c);
    }

    for table in raw.vni {
        let table_line = line_of(text, table.span().start);
        let raw = table.into_inner();
        let line = |s: Range<usize>| line_of(text, s.start);
        let id = check_vni_id(*raw.id.get_ref())
            .map_err(|e| anyhow!("{}: {e}", at(raw.id.span(), "id")))?;
        let mut lines = VniLines {
            vni: id,
            table: table_line,
            id: line(raw.id.span()),
            ..VniLines::default()
        };
        let mut vni = VniConfig {
            id,
            ports: Vec::new(),
            remotes: Vec::new(),
            group: None,
            host_if: None,
        };
        if let Some(list) = raw.ports {
            lines.ports_key = Some(line(list.span()));
            for p in list.into_inner() {
                lines.ports.push(line(p.span()));
                vni.ports.push(p.into_inner());
            }
        }
        if let Some(list) = raw.remotes {
            lines.remotes_key = Some(line(list.span()));
            for r in list.into_inner() {
                lines.remotes.push(line(r.span()));
                let ip = parse_ipv4(r.get_ref())
                    .map_err(|e| anyhow!("{}: {e}", at(r.span(), "remotes")))?;
                vni.remotes.push(ip);
            }
        }
        if let Some(g) = raw.group {
            lines.group = Some(line(g.span()));
            let ip =
                parse_ipv4(g.get_ref()).map_err(|e| anyhow!("{}: {e}", at(g.span(), "group")))?;
            vni.group = Some(ip);
        }
        if let Some(h) = raw.host_if {
            lines.host_if = Some(line(h.span()));
            vni.host_if = Some(h.into_inner());
        }
        file.vnis.push(vni);
        file.meta.vnis.push(lines);
    }

    let vnis: Vec<_> = file
        .vnis
        .iter()
        .zip(&file.meta.vnis)
        .map(|(v, l)| {
            (
                v,
                Src::File {
                    origin,
                    lines: Some(l),
                },
            )
        })
        .collect();
    check_vnis(&vnis, None)?;
    Ok(file)
}

/// 1-based line of byte offset `pos`.
fn line_of(text: &str, pos: usize) -> usize {
    let pos = pos.min(text.len());
    text.as_bytes()[..pos]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

/// 1-based column (in characters) of byte offset `pos`.
fn column_of(text: &str, pos: usize) -> usize {
    let pos = pos.min(text.len());
    let start = text.as_bytes()[..pos]
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(0, |i| i + 1);
    String::from_utf8_lossy(&text.as_bytes()[start..pos])
        .chars()
        .count()
        + 1
}

/// The key of a `key = value` line, if the line is one.
fn key_on_line(text: &str, line: usize) -> Option<&str> {
    let l = text.lines().nth(line - 1)?.trim_start();
    if l.starts_with('[') || l.starts_with('#') {
        return None;
    }
    let key = l.split('=').next()?.trim();
    let plausible = !key.is_empty()
        && key.len() < l.len()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-.\"' ".contains(c));
    plausible.then_some(key)
}

/// A TOML syntax error, one line.
fn syntax_error(text: &str, origin: &str, e: &toml::de::Error) -> String {
    let msg = e.message().lines().next().unwrap_or("invalid TOML");
    let Some(span) = e.span() else {
        return format!("{origin}: syntax error: {msg}");
    };
    let line = line_of(text, span.start);
    let col = column_of(text, span.start);
    match key_on_line(text, line) {
        Some(key) => format!("{origin}:{line}: key `{key}`: syntax error: {msg} (column {col})"),
        None => format!("{origin}:{line}: syntax error: {msg} (column {col})"),
    }
}

/// An error of the file's shape (unknown key, wrong type, missing key), one
/// line, naming the key.
fn shape_error(text: &str, origin: &str, doc: &DeTable<'_>, e: &toml::de::Error) -> String {
    let msg = e.message().lines().next().unwrap_or("invalid value");
    let Some(span) = e.span() else {
        return format!("{origin}: {}", plain_types(msg));
    };
    let line = line_of(text, span.start);
    let mut path = Vec::new();
    find_key_in_table(doc, span.start, &mut path);
    let in_vni = path.first().is_some_and(|k| k == "vni") && path.len() > 1;
    let Some(key) = path.last().cloned() else {
        return format!("{origin}:{line}: {}", plain_types(msg));
    };

    if let Some(field) = msg.strip_prefix("missing field ") {
        // Only `id` is required; the span is the table's header.
        let field = field.trim_matches('`');
        let table = if key == "vni" {
            "[[vni]] table"
        } else {
            "table"
        };
        return format!("{origin}:{line}: {table} has no `{field}` key (it is required)");
    }
    if msg.starts_with("unknown field ") {
        let (own, other, where_) = if in_vni {
            (VNI_KEYS, TOP_KEYS, "a [[vni]] table")
        } else {
            (TOP_KEYS, VNI_KEYS, "the top level")
        };
        let hint = if other.contains(&key.as_str()) && !own.contains(&key.as_str()) {
            if in_vni {
                format!(
                    "`{key}` is a top-level key; move it above the first [[vni]] table (keys \
                     after a [[vni]] header belong to that table)"
                )
            } else {
                format!("`{key}` belongs in a [[vni]] table")
            }
        } else if let Some(s) = suggest(&key, own) {
            format!("did you mean `{s}`?")
        } else {
            let known: Vec<_> = own
                .iter()
                .map(|k| {
                    if *k == "vni" {
                        "[[vni]]".to_owned()
                    } else {
                        format!("`{k}`")
                    }
                })
                .collect();
            format!("expected one of {}", known.join(", "))
        };
        return format!("{origin}:{line}: key `{key}`: unknown key in {where_}; {hint}");
    }
    let mut msg = plain_types(msg);
    if path.len() == 1 && key == "vni" && msg.contains("expected an array") {
        msg = msg.replace("expected an array", "expected an array of tables");
        msg.push_str(" (write each VNI as a [[vni]] table)");
    }
    format!("{origin}:{line}: key `{key}`: {msg}")
}

/// Replaces serde's Rust-flavoured type names with TOML's.
fn plain_types(msg: &str) -> String {
    msg.replace("expected i64", "expected an integer")
        .replace("expected a sequence", "expected an array")
        .replace("expected struct RawVni", "expected a table")
        .replace("invalid type: sequence", "invalid type: array")
        .replace("invalid type: map", "invalid type: table")
}

/// Finds the key whose name or value covers byte `pos`, innermost first;
/// leaves its path in `path`.
fn find_key_in_table(table: &DeTable<'_>, pos: usize, path: &mut Vec<String>) -> bool {
    for (k, v) in table.iter() {
        path.push(k.get_ref().to_string());
        if covers(k.span(), pos) || find_key_in_value(v, pos, path) {
            return true;
        }
        path.pop();
    }
    false
}

fn find_key_in_value(v: &Spanned<DeValue<'_>>, pos: usize, path: &mut Vec<String>) -> bool {
    // Children first: the span of a `[[table]]` is its header only, and the
    // span of an inline container covers its elements.
    let inner = match v.get_ref() {
        DeValue::Table(t) => find_key_in_table(t, pos, path),
        DeValue::Array(a) => a.iter().any(|e| find_key_in_value(e, pos, path)),
        _ => false,
    };
    inner || covers(v.span(), pos)
}

fn covers(span: Range<usize>, pos: usize) -> bool {
    span.contains(&pos) || (span.is_empty() && span.start == pos)
}

/// The known key closest to a misspelt one, if close enough.
fn suggest<'a>(key: &str, known: &[&'a str]) -> Option<&'a str> {
    known
        .iter()
        .map(|k| (edit_distance(key, k), *k))
        .filter(|&(d, k)| d <= 2.max(k.len() / 3) && d < k.len())
        .min_by_key(|&(d, _)| d)
        .map(|(_, k)| k)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != *cb);
            cur.push(sub.min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}

// ---------------------------------------------------------------------------
// Merging

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
    if let Some(ip) = cli.local {
        check_local(ip).map_err(|e| anyhow!("--local: {e}"))?;
    }
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

    Ok(Config {
        iface,
        local: cli.local.or(file.local),
        dstport: cli.dstport.or(file.dstport).unwrap_or(DEFAULT_DSTPORT),
        ageing: cli.ageing.or(file.ageing).unwrap_or(DEFAULT_AGEING),
        max_fdb: cli.max_fdb.or(file.max_fdb).unwrap_or(DEFAULT_MAX_FDB),
        learning: cli.learning.or(file.learning).unwrap_or(true),
        allow_remote: if cli.allow_remote.is_empty() {
            file.allow_remote.clone()
        } else {
            cli.allow_remote
        },
        vnis: vnis.into_iter().map(|(v, _)| v).collect(),
    })
}

/// The lines of the file's `i`-th VNI, if they (still) describe VNI `id`.
fn file_lines(meta: &Meta, i: usize, id: u32) -> Option<&VniLines> {
    match meta.vnis.get(i) {
        Some(l) if l.vni == id => Some(l),
        _ => meta.vnis.iter().find(|l| l.vni == id),
    }
}

// ---------------------------------------------------------------------------
// Validation

/// Where a VNI's values came from.
#[derive(Clone, Copy)]
enum Src<'a> {
    File {
        origin: &'a str,
        lines: Option<&'a VniLines>,
    },
    Cli,
}

/// A value of a VNI.
#[derive(Clone, Copy)]
enum Field {
    Id,
    Ports,
    Port(usize),
    Remotes,
    Remote(usize),
    Group,
    HostIf,
}

impl Field {
    fn key(self) -> &'static str {
        match self {
            Field::Id => "id",
            Field::Ports | Field::Port(_) => "ports",
            Field::Remotes | Field::Remote(_) => "remotes",
            Field::Group => "group",
            Field::HostIf => "host_if",
        }
    }

    fn flag(self) -> &'static str {
        match self {
            Field::Id => "--vni",
            Field::Ports | Field::Port(_) => "--port",
            Field::Remotes | Field::Remote(_) => "--remote",
            Field::Group => "--group",
            Field::HostIf => "--host-if",
        }
    }
}

impl Src<'_> {
    fn line(&self, f: Field) -> Option<usize> {
        let Src::File { lines: Some(l), .. } = self else {
            return None;
        };
        let line = match f {
            Field::Id => Some(l.id),
            Field::Ports => l.ports_key,
            Field::Port(i) => l.ports.get(i).copied().or(l.ports_key),
            Field::Remotes => l.remotes_key,
            Field::Remote(i) => l.remotes.get(i).copied().or(l.remotes_key),
            Field::Group => l.group,
            Field::HostIf => l.host_if,
        };
        Some(line.unwrap_or(l.table))
    }

    /// Error prefix: ``file:LINE: key `k` `` or `--flag`.
    fn at(&self, f: Field) -> String {
        match (self, self.line(f)) {
            (Src::File { origin, .. }, Some(n)) => format!("{origin}:{n}: key `{}`", f.key()),
            (Src::File { origin, .. }, None) => format!("{origin}: key `{}`", f.key()),
            (Src::Cli, _) => f.flag().to_owned(),
        }
    }

    /// Short position: `line N`, the file's name or `--flag`.
    fn short(&self, f: Field) -> String {
        match (self, self.line(f)) {
            (Src::File { .. }, Some(n)) => format!("line {n}"),
            (Src::File { origin, .. }, None) => (*origin).to_owned(),
            (Src::Cli, _) => f.flag().to_owned(),
        }
    }
}

/// ` (lines 5 and 12)`, ` (line 5 and --port)`; empty when both are the
/// same place (the error's prefix already names it).
fn two_places(a: (Src<'_>, Field), b: (Src<'_>, Field)) -> String {
    let (x, y) = (a.0.short(a.1), b.0.short(b.1));
    match (a.0.line(a.1), b.0.line(b.1)) {
        _ if x == y => String::new(),
        (Some(x), Some(y)) => format!(" (lines {x} and {y})"),
        _ => format!(" ({x} and {y})"),
    }
}

/// Checks each VNI and the VNIs against each other (and the uplink, when
/// known: its name and where it came from).
fn check_vnis(vnis: &[(&VniConfig, Src<'_>)], uplink: Option<(&str, &str)>) -> Result<()> {
    for (v, src) in vnis {
        check_vni(v, *src)?;
    }

    let mut ids: HashMap<u32, Src<'_>> = HashMap::new();
    let mut ports: HashMap<&str, (u32, Src<'_>, usize)> = HashMap::new();
    for (v, src) in vnis {
        if let Some(first) = ids.insert(v.id, *src) {
            return Err(anyhow!(
                "{}: VNI {} appears twice{}",
                src.at(Field::Id),
                v.id,
                two_places((first, Field::Id), (*src, Field::Id))
            ));
        }
        for (i, p) in v.ports.iter().enumerate() {
            if let Some((uplink, from)) = uplink
                && p == uplink
            {
                return Err(anyhow!(
                    "{}: port '{p}' of VNI {} is the uplink ({from})",
                    src.at(Field::Port(i)),
                    v.id
                ));
            }
            if let Some((vni, first, j)) = ports.insert(p, (v.id, *src, i)) {
                let places = two_places((first, Field::Port(j)), (*src, Field::Port(i)));
                let what = if vni == v.id {
                    format!("is listed twice in VNI {vni}")
                } else {
                    format!("is in VNI {vni} and VNI {}", v.id)
                };
                return Err(anyhow!(
                    "{}: port '{p}' {what}{places}",
                    src.at(Field::Port(i))
                ));
            }
        }
    }

    let mut host_ifs: HashMap<&str, (u32, Src<'_>)> = HashMap::new();
    for (v, src) in vnis {
        let Some(h) = v.host_if.as_deref() else {
            continue;
        };
        let at = src.at(Field::HostIf);
        if let Some((uplink, from)) = uplink
            && h == uplink
        {
            return Err(anyhow!(
                "{at}: host interface '{h}' of VNI {} is the uplink ({from})",
                v.id
            ));
        }
        if let Some(&(vni, psrc, j)) = ports.get(h) {
            return Err(anyhow!(
                "{at}: host interface '{h}' of VNI {} is also a port of VNI {vni}{}",
                v.id,
                two_places((*src, Field::HostIf), (psrc, Field::Port(j)))
            ));
        }
        if let Some((vni, first)) = host_ifs.insert(h, (v.id, *src)) {
            return Err(anyhow!(
                "{at}: host interface '{h}' is given to VNI {vni} and VNI {}{}",
                v.id,
                two_places((first, Field::HostIf), (*src, Field::HostIf))
            ));
        }
    }
    Ok(())
}

/// Checks one VNI on its own.
fn check_vni(v: &VniConfig, src: Src<'_>) -> Result<()> {
    check_vni_id(i64::from(v.id)).map_err(|e| anyhow!("{}: {e}", src.at(Field::Id)))?;
    for (i, p) in v.ports.iter().enumerate() {
        check_ifname(p, IFNAME_MAX, "")
            .map_err(|e| anyhow!("{}: VNI {}: {e}", src.at(Field::Port(i)), v.id))?;
    }
    let local_ports = v.ports.len() + usize::from(v.host_if.is_some());
    if local_ports > MAX_PORTS {
        let counted = if v.host_if.is_some() {
            format!("{} ports plus host_if", v.ports.len())
        } else {
            format!("{} ports", v.ports.len())
        };
        return Err(anyhow!(
            "{}: VNI {} has {counted}; at most {MAX_PORTS} local ports per VNI (host_if counts as \
             one)",
            src.at(Field::Ports),
            v.id
        ));
    }
    if v.remotes.len() > MAX_REMOTES {
        return Err(anyhow!(
            "{}: VNI {} has {} remotes; at most {MAX_REMOTES} per VNI",
            src.at(Field::Remotes),
            v.id,
            v.remotes.len()
        ));
    }
    for (i, r) in v.remotes.iter().enumerate() {
        check_remote(*r).map_err(|e| anyhow!("{}: VNI {}: {e}", src.at(Field::Remote(i)), v.id))?;
    }
    if let Some(g) = v.group {
        check_group(g).map_err(|e| anyhow!("{}: {e}", src.at(Field::Group)))?;
    }
    if let Some(h) = &v.host_if {
        check_ifname(
            h,
            HOST_IF_MAX,
            " (the loader names its peer '<host_if>-fwd')",
        )
        .map_err(|e| anyhow!("{}: {e}", src.at(Field::HostIf)))?;
    }
    Ok(())
}

fn check_vni_id(v: i64) -> Result<u32, String> {
    match u32::try_from(v) {
        Ok(id) if (1..=VNI_MAX).contains(&id) => Ok(id),
        _ => Err(format!("VNI {v} is outside 1..{VNI_MAX}")),
    }
}

fn check_dstport(v: i64) -> Result<u16, String> {
    match u16::try_from(v) {
        Ok(p) if p != 0 => Ok(p),
        _ => Err(format!("{v} is not a valid UDP port (1..65535)")),
    }
}

fn check_ageing(v: i64) -> Result<u64, String> {
    match u64::try_from(v) {
        Ok(s) if s != 0 => Ok(s),
        _ => Err(format!("{v} is invalid; ageing is at least 1 second")),
    }
}

fn check_max_fdb(v: i64) -> Result<u32, String> {
    match u32::try_from(v) {
        Ok(n) if n != 0 => Ok(n),
        _ => Err(format!("{v} is invalid; the FDB cap is 1..{}", u32::MAX)),
    }
}

fn parse_ipv4(s: &str) -> Result<Ipv4Addr, String> {
    s.parse()
        .map_err(|_| format!("'{s}' is not an IPv4 address"))
}

fn check_local(ip: Ipv4Addr) -> Result<Ipv4Addr, String> {
    if ip.is_unspecified() || ip.is_multicast() || ip.is_broadcast() {
        return Err(format!("{ip} is not a unicast address"));
    }
    Ok(ip)
}

fn check_remote(ip: Ipv4Addr) -> Result<(), String> {
    if ip.is_unspecified() || ip.is_broadcast() {
        return Err(format!("{ip} is not a usable remote address"));
    }
    Ok(())
}

fn check_group(ip: Ipv4Addr) -> Result<(), String> {
    if !ip.is_multicast() {
        return Err(format!(
            "{ip} is not an IPv4 multicast address (224.0.0.0/4)"
        ));
    }
    Ok(())
}

/// An interface name the kernel accepts, at most `max` bytes long.
fn check_ifname(name: &str, max: usize, why_max: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("the interface name is empty".to_owned());
    }
    if name.len() > max {
        return Err(format!(
            "interface name '{name}' is {} characters long; at most {max} are allowed{why_max}",
            name.len()
        ));
    }
    if name == "."
        || name == ".."
        || name
            .chars()
            .any(|c| c == '/' || c == ':' || c.is_whitespace())
    {
        return Err(format!(
            "'{name}' is not a valid interface name (no '/', ':' or whitespace)"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const FULL: &str = r#"# vxlan-fwd
iface = "eth0"
local = "192.168.57.50"
dstport = 8472
ageing = 60
max_fdb = 1000
learning = false

[[vni]]
id = 42
ports = ["veth0", "veth1"]
remotes = ["192.168.57.54", "192.168.57.55"]
group = "224.1.1.1"
host_if = "vxlan0"

[[vni]]
id = 43
group = "224.1.1.2"
"#;

    fn ip(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }

    fn vni(id: u32, ports: &[&str]) -> VniConfig {
        VniConfig {
            id,
            ports: ports.iter().map(|p| p.to_string()).collect(),
            remotes: Vec::new(),
            group: None,
            host_if: None,
        }
    }

    /// The error `parse` gives for `text`.
    fn err(text: &str) -> String {
        let e = parse(text, "vxlan.toml").expect_err("parse should fail");
        let msg = e.to_string();
        assert!(!msg.contains('\n'), "not one line: {msg:?}");
        msg
    }

    /// The error `resolve` gives.
    fn resolve_err(file: Option<FileConfig>, cli: Overrides) -> String {
        let msg = resolve(file, cli)
            .expect_err("resolve should fail")
            .to_string();
        assert!(!msg.contains('\n'), "not one line: {msg:?}");
        msg
    }

    fn file(text: &str) -> FileConfig {
        parse(text, "vxlan.toml").unwrap()
    }

    #[test]
    fn full_file() {
        let f = file(FULL);
        assert_eq!(f.origin(), "vxlan.toml");
        assert_eq!(f.iface.as_deref(), Some("eth0"));
        assert_eq!(f.local, Some(ip("192.168.57.50")));
        assert_eq!(f.dstport, Some(8472));
        assert_eq!(f.ageing, Some(60));
        assert_eq!(f.max_fdb, Some(1000));
        assert_eq!(f.learning, Some(false));
        let v42 = VniConfig {
            id: 42,
            ports: vec!["veth0".into(), "veth1".into()],
            remotes: vec![ip("192.168.57.54"), ip("192.168.57.55")],
            group: Some(ip("224.1.1.1")),
            host_if: Some("vxlan0".into()),
        };
        let v43 = VniConfig {
            group: Some(ip("224.1.1.2")),
            ..vni(43, &[])
        };
        assert_eq!(f.vnis, vec![v42.clone(), v43.clone()]);

        let c = resolve(Some(f), Overrides::default()).unwrap();
        assert_eq!(
            c,
            Config {
                iface: "eth0".into(),
                local: Some(ip("192.168.57.50")),
                dstport: 8472,
                ageing: 60,
                max_fdb: 1000,
                learning: false,
                allow_remote: Vec::new(),
                vnis: vec![v42, v43],
            }
        );
    }

    #[test]
    fn defaults() {
        let c = resolve(
            Some(file("iface = \"eth0\"\n[[vni]]\nid = 7\n")),
            Overrides::default(),
        )
        .unwrap();
        assert_eq!(
            c,
            Config {
                iface: "eth0".into(),
                local: None,
                dstport: DEFAULT_DSTPORT,
                ageing: DEFAULT_AGEING,
                max_fdb: DEFAULT_MAX_FDB,
                learning: true,
                allow_remote: Vec::new(),
                vnis: vec![vni(7, &[])],
            }
        );
        assert_eq!(DEFAULT_MAX_FDB, 65_536);
    }

    #[test]
    fn empty_file_parses() {
        let f = file("");
        assert_eq!(f, FileConfig::default());
        assert_eq!(
            resolve_err(Some(f), Overrides::default()),
            "no uplink: give --iface or `iface` in the config file"
        );
    }

    #[test]
    fn inline_tables_and_equality_ignores_positions() {
        let a = file("iface = \"eth0\"\nvni = [{ id = 1, ports = [\"a\"] }, { id = 2 }]\n");
        let b = file("iface = \"eth0\"\n\n\n[[vni]]\nid = 1\nports = [\"a\"]\n[[vni]]\nid = 2\n");
        assert_eq!(a, b);
    }

    #[test]
    fn group_and_remotes_together() {
        let f = file("[[vni]]\nid = 1\ngroup = \"239.1.1.1\"\nremotes = [\"10.0.0.1\"]\n");
        assert_eq!(f.vnis[0].group, Some(ip("239.1.1.1")));
        assert_eq!(f.vnis[0].remotes, vec![ip("10.0.0.1")]);
    }

    #[test]
    fn syntax_errors() {
        assert_eq!(
            err("iface = \"eth0\"\n\n[[vni]]\nid = 1\nports = [\"a\"\n"),
            "vxlan.toml:5: key `ports`: syntax error: unclosed array, expected `]` (column 13)"
        );
        let e = err("iface = \"eth0\nlocal = \"1.2.3.4\"\n");
        assert!(
            e.starts_with("vxlan.toml:1: key `iface`: syntax error: "),
            "{e}"
        );
        let e = err("iface = \"eth0\"\n[[vni]\nid = 1\n");
        assert!(e.starts_with("vxlan.toml:2: syntax error: "), "{e}");
        let e = err("iface = \"eth0\"\n\n[[vni]]\nid = 1\nid = 2\n");
        assert!(
            e.starts_with("vxlan.toml:5: key `id`: syntax error: duplicate key"),
            "{e}"
        );
    }

    #[test]
    fn unknown_keys() {
        assert_eq!(
            err("iface = \"eth0\"\ndstprot = 4789\n"),
            "vxlan.toml:2: key `dstprot`: unknown key in the top level; did you mean `dstport`?"
        );
        assert_eq!(
            err("[[vni]]\nid = 1\n\nprots = [\"a\"]\n"),
            "vxlan.toml:4: key `prots`: unknown key in a [[vni]] table; did you mean `ports`?"
        );
        assert_eq!(
            err("[[vni]]\nid = 1\ncolour = \"red\"\n"),
            "vxlan.toml:3: key `colour`: unknown key in a [[vni]] table; expected one of `id`, \
             `ports`, `remotes`, `group`, `host_if`"
        );
        assert_eq!(
            err("iface = \"eth0\"\n[[vni]]\nid = 1\nageing = 30\n"),
            "vxlan.toml:4: key `ageing`: unknown key in a [[vni]] table; `ageing` is a top-level \
             key; move it above the first [[vni]] table (keys after a [[vni]] header belong to \
             that table)"
        );
        assert_eq!(
            err("iface = \"eth0\"\nports = [\"a\"]\n"),
            "vxlan.toml:2: key `ports`: unknown key in the top level; `ports` belongs in a \
             [[vni]] table"
        );
        assert_eq!(
            err("[[vnis]]\nid = 1\n"),
            "vxlan.toml:1: key `vnis`: unknown key in the top level; did you mean `vni`?"
        );
    }

    #[test]
    fn wrong_types() {
        assert_eq!(
            err("iface = \"eth0\"\ndstport = \"4789\"\n"),
            "vxlan.toml:2: key `dstport`: invalid type: string \"4789\", expected an integer"
        );
        assert_eq!(
            err("iface = 1\n"),
            "vxlan.toml:1: key `iface`: invalid type: integer `1`, expected a string"
        );
        assert_eq!(
            err("learning = \"yes\"\n"),
            "vxlan.toml:1: key `learning`: invalid type: string \"yes\", expected a boolean"
        );
        assert_eq!(
            err("[[vni]]\nid = \"42\"\n"),
            "vxlan.toml:2: key `id`: invalid type: string \"42\", expected an integer"
        );
        assert_eq!(
            err("[[vni]]\nid = 1\nports = \"veth0\"\n"),
            "vxlan.toml:3: key `ports`: invalid type: string \"veth0\", expected an array"
        );
        // An element of a multi-line array: the element's own line.
        assert_eq!(
            err("[[vni]]\nid = 1\nremotes = [\n  \"10.0.0.1\",\n  10,\n]\n"),
            "vxlan.toml:5: key `remotes`: invalid type: integer `10`, expected a string"
        );
        assert_eq!(
            err("[[vni]]\nid = 1\n[[vni]]\nid = 2.5\n"),
            "vxlan.toml:4: key `id`: invalid type: floating point `2.5`, expected an integer"
        );
    }

    #[test]
    fn vni_shape() {
        assert_eq!(
            err("iface = \"eth0\"\n[[vni]]\nid = 1\n\n[[vni]]\nports = [\"a\"]\n"),
            "vxlan.toml:5: [[vni]] table has no `id` key (it is required)"
        );
        assert_eq!(
            err("[vni]\nid = 1\n"),
            "vxlan.toml:1: key `vni`: invalid type: table, expected an array of tables (write \
             each VNI as a [[vni]] table)"
        );
        assert_eq!(
            err("vni = 42\n"),
            "vxlan.toml:1: key `vni`: invalid type: integer `42`, expected an array of tables \
             (write each VNI as a [[vni]] table)"
        );
    }

    #[test]
    fn vni_range() {
        let text = "iface = \"eth0\"\n\n[[vni]]\nid = 1\n\n[[vni]]\nid = 0\n";
        assert_eq!(
            err(text),
            "vxlan.toml:7: key `id`: VNI 0 is outside 1..16777215"
        );
        assert_eq!(
            err("[[vni]]\nid = 16777216\n"),
            "vxlan.toml:2: key `id`: VNI 16777216 is outside 1..16777215"
        );
        assert_eq!(
            err("[[vni]]\nid = -3\n"),
            "vxlan.toml:2: key `id`: VNI -3 is outside 1..16777215"
        );
        assert_eq!(file("[[vni]]\nid = 16777215\n").vnis[0].id, VNI_MAX);
    }

    #[test]
    fn duplicate_vni() {
        let text =
            "iface = \"eth0\"\n\n\n[[vni]]\nid = 42\n\n[[vni]]\nid = 7\n\n\n\n[[vni]]\nid = 42\n";
        assert_eq!(
            err(text),
            "vxlan.toml:13: key `id`: VNI 42 appears twice (lines 5 and 13)"
        );
    }

    #[test]
    fn port_in_two_vnis() {
        let text = "[[vni]]\nid = 42\nports = [\"veth0\"]\n[[vni]]\nid = 43\nports = [\"veth1\",\n  \"veth0\"]\n";
        assert_eq!(
            err(text),
            "vxlan.toml:7: key `ports`: port 'veth0' is in VNI 42 and VNI 43 (lines 3 and 7)"
        );
        assert_eq!(
            err("[[vni]]\nid = 42\nports = [\"veth0\", \"veth0\"]\n"),
            "vxlan.toml:3: key `ports`: port 'veth0' is listed twice in VNI 42"
        );
    }

    #[test]
    fn bad_port_names() {
        assert_eq!(
            err("[[vni]]\nid = 42\nports = [\"\"]\n"),
            "vxlan.toml:3: key `ports`: VNI 42: the interface name is empty"
        );
        assert_eq!(
            err("[[vni]]\nid = 42\nports = [\"a-very-long-name0\"]\n"),
            "vxlan.toml:3: key `ports`: VNI 42: interface name 'a-very-long-name0' is 17 \
             characters long; at most 15 are allowed"
        );
        assert_eq!(
            err("[[vni]]\nid = 42\nports = [\"a b\"]\n"),
            "vxlan.toml:3: key `ports`: VNI 42: 'a b' is not a valid interface name (no '/', ':' \
             or whitespace)"
        );
    }

    #[test]
    fn group_must_be_multicast() {
        assert_eq!(
            err("[[vni]]\nid = 42\ngroup = \"10.0.0.1\"\n"),
            "vxlan.toml:3: key `group`: 10.0.0.1 is not an IPv4 multicast address (224.0.0.0/4)"
        );
    }

    #[test]
    fn bad_addresses() {
        assert_eq!(
            err("[[vni]]\nid = 42\nremotes = [\"192.168.57.54\",\n\"192.168.57\"]\n"),
            "vxlan.toml:4: key `remotes`: '192.168.57' is not an IPv4 address"
        );
        assert_eq!(
            err("iface = \"eth0\"\nlocal = \"fe80::1\"\n"),
            "vxlan.toml:2: key `local`: 'fe80::1' is not an IPv4 address"
        );
        assert_eq!(
            err("local = \"224.0.0.1\"\n"),
            "vxlan.toml:1: key `local`: 224.0.0.1 is not a unicast address"
        );
        assert_eq!(
            err("[[vni]]\nid = 42\ngroup = \"224.1.1\"\n"),
            "vxlan.toml:3: key `group`: '224.1.1' is not an IPv4 address"
        );
        assert_eq!(
            err("[[vni]]\nid = 42\nremotes = [\n  \"10.0.0.1\",\n  \"0.0.0.0\",\n]\n"),
            "vxlan.toml:5: key `remotes`: VNI 42: 0.0.0.0 is not a usable remote address"
        );
    }

    #[test]
    fn numbers_out_of_range() {
        assert_eq!(
            err("iface = \"eth0\"\ndstport = 0\n"),
            "vxlan.toml:2: key `dstport`: 0 is not a valid UDP port (1..65535)"
        );
        assert_eq!(
            err("dstport = 65536\n"),
            "vxlan.toml:1: key `dstport`: 65536 is not a valid UDP port (1..65535)"
        );
        assert_eq!(
            err("\nageing = 0\n"),
            "vxlan.toml:2: key `ageing`: 0 is invalid; ageing is at least 1 second"
        );
        assert_eq!(
            err("ageing = -1\n"),
            "vxlan.toml:1: key `ageing`: -1 is invalid; ageing is at least 1 second"
        );
        assert_eq!(
            err("max_fdb = 0\n"),
            "vxlan.toml:1: key `max_fdb`: 0 is invalid; the FDB cap is 1..4294967295"
        );
        assert_eq!(
            err("max_fdb = 4294967296\n"),
            "vxlan.toml:1: key `max_fdb`: 4294967296 is invalid; the FDB cap is 1..4294967295"
        );
        assert_eq!(
            file("ageing = 1\nmax_fdb = 1\ndstport = 65535\n").ageing,
            Some(1)
        );
    }

    #[test]
    fn host_if_rules() {
        assert_eq!(
            err("[[vni]]\nid = 42\nhost_if = \"vxlan-abcdefg\"\n"),
            "vxlan.toml:3: key `host_if`: interface name 'vxlan-abcdefg' is 13 characters long; \
             at most 11 are allowed (the loader names its peer '<host_if>-fwd')"
        );
        assert_eq!(
            file("[[vni]]\nid = 42\nhost_if = \"vxlan-abcde\"\n").vnis[0]
                .host_if
                .as_deref(),
            Some("vxlan-abcde")
        );
        assert_eq!(
            err("[[vni]]\nid = 42\nhost_if = \"\"\n"),
            "vxlan.toml:3: key `host_if`: the interface name is empty"
        );
        assert_eq!(
            err("[[vni]]\nid = 42\nports = [\"veth0\"]\n[[vni]]\nid = 43\nhost_if = \"veth0\"\n"),
            "vxlan.toml:6: key `host_if`: host interface 'veth0' of VNI 43 is also a port of VNI \
             42 (lines 6 and 3)"
        );
        assert_eq!(
            err("[[vni]]\nid = 42\nhost_if = \"vx\"\n[[vni]]\nid = 43\nhost_if = \"vx\"\n"),
            "vxlan.toml:6: key `host_if`: host interface 'vx' is given to VNI 42 and VNI 43 \
             (lines 3 and 6)"
        );
    }

    fn list(prefix: &str, n: usize, f: impl Fn(usize) -> String) -> String {
        let items: Vec<String> = (0..n).map(|i| format!("\"{}\"", f(i))).collect();
        format!("{prefix} = [{}]\n", items.join(", "))
    }

    #[test]
    fn too_many() {
        let ports = |n| list("ports", n, |i| format!("p{i}"));
        let remotes = |n| {
            list("remotes", n, |i| {
                format!("10.0.{}.{}", i / 200, i % 200 + 1)
            })
        };
        file(&format!("[[vni]]\nid = 1\n{}", ports(MAX_PORTS)));
        file(&format!("[[vni]]\nid = 1\n{}", remotes(MAX_REMOTES)));
        assert_eq!(
            err(&format!("[[vni]]\nid = 1\n\n{}", ports(MAX_PORTS + 1))),
            "vxlan.toml:4: key `ports`: VNI 1 has 65 ports; at most 64 local ports per VNI \
             (host_if counts as one)"
        );
        assert_eq!(
            err(&format!(
                "[[vni]]\nid = 1\nhost_if = \"h\"\n{}",
                ports(MAX_PORTS)
            )),
            "vxlan.toml:4: key `ports`: VNI 1 has 64 ports plus host_if; at most 64 local ports \
             per VNI (host_if counts as one)"
        );
        assert_eq!(
            err(&format!("[[vni]]\nid = 1\n{}", remotes(MAX_REMOTES + 1))),
            "vxlan.toml:3: key `remotes`: VNI 1 has 65 remotes; at most 64 per VNI"
        );
    }

    #[test]
    fn cli_overrides_top_level() {
        let cli = Overrides {
            iface: Some("eth1".into()),
            local: Some(ip("10.1.1.1")),
            dstport: Some(4790),
            ageing: Some(10),
            max_fdb: Some(5),
            learning: Some(true),
            allow_remote: Vec::new(),
            vni: None,
        };
        let c = resolve(Some(file(FULL)), cli).unwrap();
        assert_eq!(c.iface, "eth1");
        assert_eq!(c.local, Some(ip("10.1.1.1")));
        assert_eq!(
            (c.dstport, c.ageing, c.max_fdb, c.learning),
            (4790, 10, 5, true)
        );
        assert_eq!(c.vnis.len(), 2);

        // Only some given: the rest from the file.
        let cli = Overrides {
            ageing: Some(10),
            ..Overrides::default()
        };
        let c = resolve(Some(file(FULL)), cli).unwrap();
        assert_eq!((c.iface.as_str(), c.dstport, c.ageing), ("eth0", 8472, 10));
    }

    #[test]
    fn cli_vni_replaces_file_vni() {
        let mine = VniConfig {
            remotes: vec![ip("10.9.9.9")],
            ..vni(43, &["veth7"])
        };
        let cli = Overrides {
            vni: Some(mine.clone()),
            ..Overrides::default()
        };
        let c = resolve(Some(file(FULL)), cli).unwrap();
        assert_eq!(c.vnis.len(), 2);
        assert_eq!(c.vnis[0].id, 42);
        assert_eq!(c.vnis[1], mine);

        // Replacing VNI 42 frees its ports and host interface.
        let cli = Overrides {
            vni: Some(VniConfig {
                host_if: Some("veth0".into()),
                ..vni(42, &["veth1"])
            }),
            ..Overrides::default()
        };
        let c = resolve(Some(file(FULL)), cli).unwrap();
        assert_eq!(c.vnis[0].ports, vec!["veth1".to_owned()]);
        assert_eq!(c.vnis[0].group, None);
    }

    #[test]
    fn cli_vni_added() {
        let cli = Overrides {
            vni: Some(vni(44, &["veth9"])),
            ..Overrides::default()
        };
        let c = resolve(Some(file(FULL)), cli).unwrap();
        let ids: Vec<u32> = c.vnis.iter().map(|v| v.id).collect();
        assert_eq!(ids, [42, 43, 44]);
    }

    #[test]
    fn cli_only() {
        let cli = Overrides {
            iface: Some("eth0".into()),
            vni: Some(vni(42, &["veth0"])),
            learning: Some(false),
            allow_remote: Vec::new(),
            ..Overrides::default()
        };
        let c = resolve(None, cli).unwrap();
        assert_eq!(
            c,
            Config {
                iface: "eth0".into(),
                local: None,
                dstport: DEFAULT_DSTPORT,
                ageing: DEFAULT_AGEING,
                max_fdb: DEFAULT_MAX_FDB,
                learning: false,
                allow_remote: Vec::new(),
                vnis: vec![vni(42, &["veth0"])],
            }
        );
    }

    #[test]
    fn required() {
        assert_eq!(
            resolve_err(
                None,
                Overrides {
                    vni: Some(vni(1, &[])),
                    ..Overrides::default()
                }
            ),
            "no uplink: give --iface or `iface` in the config file"
        );
        // No VNI: an empty VTEP, ready for VNIs at run time.
        let empty = resolve(
            None,
            Overrides {
                iface: Some("eth0".into()),
                ..Overrides::default()
            },
        )
        .unwrap();
        assert!(empty.vnis.is_empty());
        let empty = resolve(Some(file("iface = \"eth0\"\n")), Overrides::default()).unwrap();
        assert!(empty.vnis.is_empty());
    }

    #[test]
    fn cli_errors_name_flags() {
        let base = || Overrides {
            iface: Some("eth0".into()),
            vni: Some(vni(42, &[])),
            ..Overrides::default()
        };
        let with_vni = |v: VniConfig| Overrides {
            vni: Some(v),
            ..base()
        };
        assert_eq!(
            resolve_err(None, with_vni(vni(0, &[]))),
            "--vni: VNI 0 is outside 1..16777215"
        );
        assert_eq!(
            resolve_err(
                None,
                Overrides {
                    dstport: Some(0),
                    ..base()
                }
            ),
            "--dstport: 0 is not a valid UDP port (1..65535)"
        );
        assert_eq!(
            resolve_err(
                None,
                Overrides {
                    ageing: Some(0),
                    ..base()
                }
            ),
            "--ageing: 0 is invalid; ageing is at least 1 second"
        );
        assert_eq!(
            resolve_err(
                None,
                Overrides {
                    max_fdb: Some(0),
                    ..base()
                }
            ),
            "--max-fdb: 0 is invalid; the FDB cap is 1..4294967295"
        );
        assert_eq!(
            resolve_err(
                None,
                Overrides {
                    iface: Some(String::new()),
                    ..base()
                }
            ),
            "--iface: the interface name is empty"
        );
        assert_eq!(
            resolve_err(
                None,
                with_vni(VniConfig {
                    group: Some(ip("10.0.0.1")),
                    ..vni(42, &[])
                })
            ),
            "--group: 10.0.0.1 is not an IPv4 multicast address (224.0.0.0/4)"
        );
        assert_eq!(
            resolve_err(
                None,
                with_vni(VniConfig {
                    host_if: Some("much-too-long".into()),
                    ..vni(42, &[])
                })
            ),
            "--host-if: interface name 'much-too-long' is 13 characters long; at most 11 are \
             allowed (the loader names its peer '<host_if>-fwd')"
        );
        assert_eq!(
            resolve_err(None, with_vni(vni(42, &["a", "a"]))),
            "--port: port 'a' is listed twice in VNI 42"
        );
        assert_eq!(
            resolve_err(None, with_vni(vni(42, &["eth0"]))),
            "--port: port 'eth0' of VNI 42 is the uplink (--iface)"
        );
        let many: Vec<String> = (0..=MAX_REMOTES)
            .map(|i| format!("10.0.0.{}", i + 1))
            .collect();
        assert_eq!(
            resolve_err(
                None,
                with_vni(VniConfig {
                    remotes: many.iter().map(|s| ip(s)).collect(),
                    ..vni(42, &[])
                })
            ),
            "--remote: VNI 42 has 65 remotes; at most 64 per VNI"
        );
    }

    #[test]
    fn cli_vni_against_file() {
        let f = || file(FULL);
        // The CLI's VNI takes a port of a file VNI.
        assert_eq!(
            resolve_err(
                Some(f()),
                Overrides {
                    vni: Some(vni(44, &["veth1"])),
                    ..Overrides::default()
                }
            ),
            "--port: port 'veth1' is in VNI 42 and VNI 44 (line 11 and --port)"
        );
        // ... or its host interface name.
        assert_eq!(
            resolve_err(
                Some(f()),
                Overrides {
                    vni: Some(VniConfig {
                        host_if: Some("vxlan0".into()),
                        ..vni(44, &[])
                    }),
                    ..Overrides::default()
                }
            ),
            "--host-if: host interface 'vxlan0' is given to VNI 42 and VNI 44 (line 14 and \
             --host-if)"
        );
        // A file port that is the uplink named on the command line.
        assert_eq!(
            resolve_err(
                Some(f()),
                Overrides {
                    iface: Some("veth0".into()),
                    ..Overrides::default()
                }
            ),
            "vxlan.toml:11: key `ports`: port 'veth0' of VNI 42 is the uplink (--iface)"
        );
        assert_eq!(
            resolve_err(
                Some(file(
                    "iface = \"eth0\"\n[[vni]]\nid = 1\nhost_if = \"eth0\"\n"
                )),
                Overrides::default()
            ),
            "vxlan.toml:4: key `host_if`: host interface 'eth0' of VNI 1 is the uplink (`iface`, \
             vxlan.toml:1)"
        );
    }

    #[test]
    fn hand_built_file_config() {
        // No positions: errors still name the file's keys.
        let f = FileConfig {
            iface: Some("eth0".into()),
            vnis: vec![vni(1, &["a"]), vni(2, &["a"])],
            ..FileConfig::default()
        };
        assert_eq!(
            resolve_err(Some(f), Overrides::default()),
            "config file: key `ports`: port 'a' is in VNI 1 and VNI 2"
        );
    }

    #[test]
    fn load_errors() {
        let e = load(Path::new("/nonexistent/vxlan.toml"))
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("cannot read config file '/nonexistent/vxlan.toml': "),
            "{e}"
        );
        let dir = std::env::temp_dir().join(format!("vxlan-config-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("v.toml");
        std::fs::write(&path, "iface = \"eth0\"\n[[vni]]\nid = 0\n").unwrap();
        let e = load(&path).unwrap_err().to_string();
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(
            e,
            format!(
                "{}:3: key `id`: VNI 0 is outside 1..16777215",
                path.display()
            )
        );
    }

    #[test]
    fn key_lists_match_the_file_model() {
        // Every listed key is accepted where it is listed.
        let mut text = String::from(
            "iface = \"e\"\nlocal = \"1.1.1.1\"\ndstport = 1\nageing = 1\nmax_fdb = 1\nlearning = true\nallow_remote = [\"10.0.0.0/8\"]\n",
        );
        text.push_str(
            "[[vni]]\nid = 1\nports = []\nremotes = []\ngroup = \"224.0.0.9\"\nhost_if = \"h\"\n",
        );
        assert_eq!(
            file(&text).allow_remote,
            vec![parse_cidr("10.0.0.0/8").unwrap()]
        );
        assert_eq!(TOP_KEYS.len(), 8);
        assert_eq!(VNI_KEYS.len(), 5);
    }

    #[test]
    fn cidrs() {
        let c = parse_cidr("192.168.57.99/24").unwrap();
        assert_eq!((c.len, c.network()), (24, ip("192.168.57.0")));
        assert_eq!(parse_cidr("10.1.2.3").unwrap().len, 32);
        assert_eq!(parse_cidr("0.0.0.0/0").unwrap().network(), ip("0.0.0.0"));
        assert!(parse_cidr("10.0.0.0/33").is_err());
        assert!(parse_cidr("10.0.0/8").is_err());
        let e = parse("allow_remote = [\"10.0.0.0/40\"]\n", "v.toml")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("v.toml:1: key `allow_remote`"), "{e}");
    }

    #[test]
    fn suggestions() {
        assert_eq!(suggest("ifcae", TOP_KEYS), Some("iface"));
        assert_eq!(suggest("hostif", VNI_KEYS), Some("host_if"));
        assert_eq!(suggest("maxfdb", TOP_KEYS), Some("max_fdb"));
        assert_eq!(suggest("colour", VNI_KEYS), None);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
    }

    #[test]
    fn lines_and_columns() {
        let t = "ab\ncd\n\nef";
        assert_eq!(line_of(t, 0), 1);
        assert_eq!(line_of(t, 3), 2);
        assert_eq!(line_of(t, 7), 4);
        assert_eq!(line_of(t, 100), 4);
        assert_eq!(column_of(t, 4), 2);
        assert_eq!(key_on_line("a = 1\n  b.c = [\n[x]\n", 2), Some("b.c"));
        assert_eq!(key_on_line("a = 1\n  b.c = [\n[x]\n", 3), None);
    }
}
