//! Parsing a config file into a [`FileConfig`], with the position of every
//! value, and error messages that name the file, the line and the key.

use super::*;
/// The file as written, with value positions.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawFile {
    iface: Option<Spanned<String>>,
    local: Option<Spanned<OneOrMany>>,
    dstport: Option<Spanned<i64>>,
    ageing: Option<Spanned<i64>>,
    max_fdb: Option<Spanned<i64>>,
    learning: Option<bool>,
    allow_remote: Option<Vec<Spanned<String>>>,
    port_max_fdb: Option<Spanned<i64>>,
    bum_pps: Option<Spanned<i64>>,
    etcd: Option<RawEtcd>,
    #[serde(default)]
    vni: Vec<Spanned<RawVni>>,
}

/// `local`: one address, or one of each family.
#[derive(Deserialize)]
#[serde(untagged)]
pub(super) enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawEtcd {
    endpoints: Option<Vec<Spanned<String>>>,
    prefix: Option<Spanned<String>>,
    ttl: Option<Spanned<i64>>,
    arp_suppress: Option<bool>,
    ca: Option<String>,
    cert: Option<String>,
    key: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawVni {
    id: Spanned<i64>,
    ports: Option<Spanned<Vec<Spanned<String>>>>,
    remotes: Option<Spanned<Vec<Spanned<String>>>>,
    group: Option<Spanned<String>>,
    host_if: Option<Spanned<String>>,
    max_fdb: Option<Spanned<i64>>,
    allow_remote: Option<Vec<Spanned<String>>>,
    port_max_fdb: Option<Spanned<i64>>,
    bum_pps: Option<Spanned<i64>>,
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
        let list = match v.get_ref() {
            OneOrMany::One(s) => std::slice::from_ref(s),
            OneOrMany::Many(l) => l.as_slice(),
        };
        let ips = list
            .iter()
            .map(|s| parse_ip(s).and_then(check_local))
            .collect::<Result<Vec<_>, String>>()
            .and_then(|ips| Locals::from_list(&ips))
            .map_err(|e| anyhow!("{}: {e}", at(v.span(), "local")))?;
        file.local = ips;
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
    if let Some(v) = raw.port_max_fdb {
        let cap = check_max_fdb(*v.get_ref())
            .map_err(|e| anyhow!("{}: {e}", at(v.span(), "port_max_fdb")))?;
        file.port_max_fdb = Some(cap);
    }
    if let Some(v) = raw.bum_pps {
        let n = check_pps(*v.get_ref()).map_err(|e| anyhow!("{}: {e}", at(v.span(), "bum_pps")))?;
        file.bum_pps = Some(n);
    }
    if let Some(e) = raw.etcd {
        let mut etcd = FileEtcd::default();
        for v in e.endpoints.unwrap_or_default() {
            check_endpoint(v.get_ref())
                .map_err(|err| anyhow!("{}: {err}", at(v.span(), "endpoints")))?;
            etcd.endpoints.push(v.into_inner());
        }
        if let Some(v) = e.prefix {
            check_prefix(v.get_ref())
                .map_err(|err| anyhow!("{}: {err}", at(v.span(), "prefix")))?;
            etcd.prefix = Some(v.into_inner());
        }
        if let Some(v) = e.ttl {
            let t =
                check_ttl(*v.get_ref()).map_err(|err| anyhow!("{}: {err}", at(v.span(), "ttl")))?;
            etcd.ttl = Some(t);
        }
        etcd.arp_suppress = e.arp_suppress;
        etcd.ca = e.ca.map(PathBuf::from);
        etcd.cert = e.cert.map(PathBuf::from);
        etcd.key = e.key.map(PathBuf::from);
        if etcd.cert.is_some() != etcd.key.is_some() {
            return Err(anyhow!("{origin}: [etcd]: `cert` and `key` go together"));
        }
        file.etcd = Some(etcd);
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
            ..VniConfig::default()
        };
        if let Some(v) = raw.max_fdb {
            let cap = check_max_fdb(*v.get_ref())
                .map_err(|e| anyhow!("{}: {e}", at(v.span(), "max_fdb")))?;
            vni.limits.max_fdb = Some(cap);
        }
        if let Some(list) = raw.allow_remote {
            let mut cidrs = Vec::new();
            for v in list {
                let c = parse_cidr(v.get_ref())
                    .map_err(|e| anyhow!("{}: {e}", at(v.span(), "allow_remote")))?;
                cidrs.push(c);
            }
            vni.limits.allow_remote = Some(cidrs);
        }
        if let Some(v) = raw.port_max_fdb {
            let cap = check_max_fdb(*v.get_ref())
                .map_err(|e| anyhow!("{}: {e}", at(v.span(), "port_max_fdb")))?;
            vni.limits.port_max_fdb = Some(cap);
        }
        if let Some(v) = raw.bum_pps {
            let n =
                check_pps(*v.get_ref()).map_err(|e| anyhow!("{}: {e}", at(v.span(), "bum_pps")))?;
            vni.limits.bum_pps = Some(n);
        }
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
                let ip = parse_ip(r.get_ref())
                    .map_err(|e| anyhow!("{}: {e}", at(r.span(), "remotes")))?;
                vni.remotes.push(ip);
            }
        }
        if let Some(g) = raw.group {
            lines.group = Some(line(g.span()));
            let ip =
                parse_ip(g.get_ref()).map_err(|e| anyhow!("{}: {e}", at(g.span(), "group")))?;
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
pub(super) fn line_of(text: &str, pos: usize) -> usize {
    let pos = pos.min(text.len());
    text.as_bytes()[..pos]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

/// 1-based column (in characters) of byte offset `pos`.
pub(super) fn column_of(text: &str, pos: usize) -> usize {
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
pub(super) fn key_on_line(text: &str, line: usize) -> Option<&str> {
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
pub(super) fn syntax_error(text: &str, origin: &str, e: &toml::de::Error) -> String {
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
pub(super) fn shape_error(
    text: &str,
    origin: &str,
    doc: &DeTable<'_>,
    e: &toml::de::Error,
) -> String {
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
pub(super) fn plain_types(msg: &str) -> String {
    msg.replace("expected i64", "expected an integer")
        .replace("expected a sequence", "expected an array")
        .replace("expected struct RawVni", "expected a table")
        .replace("invalid type: sequence", "invalid type: array")
        .replace("invalid type: map", "invalid type: table")
        .replace(
            "data did not match any variant of untagged enum OneOrMany",
            "expected an address or an array of addresses",
        )
}

/// Finds the key whose name or value covers byte `pos`, innermost first;
/// leaves its path in `path`.
pub(super) fn find_key_in_table(table: &DeTable<'_>, pos: usize, path: &mut Vec<String>) -> bool {
    for (k, v) in table.iter() {
        path.push(k.get_ref().to_string());
        if covers(k.span(), pos) || find_key_in_value(v, pos, path) {
            return true;
        }
        path.pop();
    }
    false
}

pub(super) fn find_key_in_value(
    v: &Spanned<DeValue<'_>>,
    pos: usize,
    path: &mut Vec<String>,
) -> bool {
    // Children first: the span of a `[[table]]` is its header only, and the
    // span of an inline container covers its elements.
    let inner = match v.get_ref() {
        DeValue::Table(t) => find_key_in_table(t, pos, path),
        DeValue::Array(a) => a.iter().any(|e| find_key_in_value(e, pos, path)),
        _ => false,
    };
    inner || covers(v.span(), pos)
}

pub(super) fn covers(span: Range<usize>, pos: usize) -> bool {
    span.contains(&pos) || (span.is_empty() && span.start == pos)
}

/// The known key closest to a misspelt one (in Levenshtein distance), if
/// close enough.
pub(super) fn suggest<'a>(key: &str, known: &[&'a str]) -> Option<&'a str> {
    known
        .iter()
        .map(|k| (strsim::levenshtein(key, k), *k))
        .filter(|&(d, k)| d <= 2.max(k.len() / 3) && d < k.len())
        .min_by_key(|&(d, _)| d)
        .map(|(_, k)| k)
}
