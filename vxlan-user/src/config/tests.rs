//! Tests of parsing, merging and validation.

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

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// The local addresses `list`.
fn locals(list: &[&str]) -> Locals {
    Locals::from_list(&list.iter().map(|s| ip(s)).collect::<Vec<_>>()).unwrap()
}

fn vni(id: u32, ports: &[&str]) -> VniConfig {
    VniConfig {
        id,
        ports: ports.iter().map(|p| p.to_string()).collect(),
        remotes: Vec::new(),
        group: None,
        host_if: None,
        limits: Default::default(),
    }
}

/// The error `parse` gives for `text`.
/// The configuration of `iface = "eth0"` with every other key at its
/// default but `learning`, and `vnis`.
fn defaults_on_eth0(learning: bool, vnis: Vec<VniConfig>) -> Config {
    Config {
        iface: "eth0".into(),
        local: Locals::default(),
        dstport: DEFAULT_DSTPORT,
        ageing: DEFAULT_AGEING,
        max_fdb: DEFAULT_MAX_FDB,
        learning,
        allow_remote: Vec::new(),
        port_max_fdb: None,
        bum_pps: None,
        vnis,
        etcd: None,
    }
}

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
    assert_eq!(f.local, locals(&["192.168.57.50"]));
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
        limits: Default::default(),
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
            local: locals(&["192.168.57.50"]),
            dstport: 8472,
            ageing: 60,
            max_fdb: 1000,
            learning: false,
            allow_remote: Vec::new(),
            port_max_fdb: None,
            bum_pps: None,
            vnis: vec![v42, v43],
            etcd: None,
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
    assert_eq!(c, defaults_on_eth0(true, vec![vni(7, &[])]));
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
         `ports`, `remotes`, `group`, `host_if`, `max_fdb`, `allow_remote`, `port_max_fdb`, \
         `bum_pps`"
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
        "vxlan.toml:4: key `remotes`: '192.168.57' is not an IPv4 address or an IPv6 address"
    );
    assert_eq!(
        err("iface = \"eth0\"\nlocal = \"fe80::1\"\n"),
        "vxlan.toml:2: key `local`: fe80::1 is a link-local address; give a global IPv6 address"
    );
    assert_eq!(
        err("local = \"224.0.0.1\"\n"),
        "vxlan.toml:1: key `local`: 224.0.0.1 is not a unicast address"
    );
    assert_eq!(
        err("[[vni]]\nid = 42\ngroup = \"224.1.1\"\n"),
        "vxlan.toml:3: key `group`: '224.1.1' is not an IPv4 address or an IPv6 address"
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
        local: vec![ip("10.1.1.1")],
        dstport: Some(4790),
        ageing: Some(10),
        max_fdb: Some(5),
        learning: Some(true),
        allow_remote: Vec::new(),
        port_max_fdb: None,
        bum_pps: None,
        vni: None,
        ..Overrides::default()
    };
    let c = resolve(Some(file(FULL)), cli).unwrap();
    assert_eq!(c.iface, "eth1");
    assert_eq!(c.local, locals(&["10.1.1.1"]));
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
    assert_eq!(c, defaults_on_eth0(false, vec![vni(42, &["veth0"])]));
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
        "iface = \"e\"\nlocal = \"1.1.1.1\"\ndstport = 1\nageing = 1\nmax_fdb = 1\nlearning = true\nallow_remote = [\"10.0.0.0/8\"]\nport_max_fdb = 3\nbum_pps = 4\n",
    );
    text.push_str(
        "[[vni]]\nid = 1\nports = []\nremotes = []\ngroup = \"224.0.0.9\"\nhost_if = \"h\"\nmax_fdb = 5\nallow_remote = [\"10.1.0.0/16\"]\nport_max_fdb = 6\nbum_pps = 7\n",
    );
    let f = file(&text);
    assert_eq!(f.allow_remote, vec![parse_cidr("10.0.0.0/8").unwrap()]);
    assert_eq!((f.port_max_fdb, f.bum_pps), (Some(3), Some(4)));
    assert_eq!(
        f.vnis[0].limits,
        VniLimits {
            max_fdb: Some(5),
            allow_remote: Some(vec![parse_cidr("10.1.0.0/16").unwrap()]),
            port_max_fdb: Some(6),
            bum_pps: Some(7),
        }
    );
    assert_eq!(TOP_KEYS.len(), 11);
    assert_eq!(VNI_KEYS.len(), 9);
    // Rates and caps are checked.
    assert!(err("bum_pps = 0\n").contains("key `bum_pps`: 0 is not a rate"));
    assert!(err("[[vni]]\nid = 1\nmax_fdb = -1\n").contains("key `max_fdb`"));
}

#[test]
fn cidrs() {
    let c = parse_cidr("192.168.57.99/24").unwrap();
    assert_eq!((c.prefix_len(), c.network()), (24, ip("192.168.57.0")));
    let c = parse_cidr("fd00:57::9/64").unwrap();
    assert_eq!((c.prefix_len(), c.network()), (64, ip("fd00:57::")));
    assert_eq!(parse_cidr("10.1.2.3").unwrap().prefix_len(), 32);
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

#[test]
fn etcd_table_and_flags() {
    let text = "iface = \"eth0\"\n[etcd]\nendpoints = [\"http://10.0.0.1:2379\", \"https://e2:2379\"]\nprefix = \"/fleet\"\nttl = 5\narp_suppress = false\nca = \"/ca.pem\"\ncert = \"/c.pem\"\nkey = \"/c.key\"\n";
    let c = resolve(Some(file(text)), Overrides::default()).unwrap();
    let e = c.etcd.expect("etcd");
    assert_eq!(e.endpoints, ["http://10.0.0.1:2379", "https://e2:2379"]);
    assert_eq!(
        (e.prefix.as_str(), e.ttl, e.arp_suppress),
        ("/fleet", 5, false)
    );
    assert_eq!(e.cert.as_deref(), Some(std::path::Path::new("/c.pem")));
    // The command line replaces endpoints and overrides the rest.
    let cli = Overrides {
        etcd: vec!["http://10.9.9.9:2379".into()],
        etcd_ttl: Some(3),
        arp_suppress: Some(true),
        ..Overrides::default()
    };
    let e = resolve(Some(file(text)), cli).unwrap().etcd.expect("etcd");
    assert_eq!(e.endpoints, ["http://10.9.9.9:2379"]);
    assert_eq!(
        (e.prefix.as_str(), e.ttl, e.arp_suppress),
        ("/fleet", 3, true)
    );
    // Defaults: prefix /vxlan-fwd, TTL 10, ARP suppression on.
    let cli = Overrides {
        iface: Some("eth0".into()),
        etcd: vec!["http://10.0.0.1:2379".into()],
        ..Overrides::default()
    };
    let e = resolve(None, cli).unwrap().etcd.expect("etcd");
    assert_eq!(
        (e.prefix.as_str(), e.ttl, e.arp_suppress),
        (DEFAULT_ETCD_PREFIX, DEFAULT_ETCD_TTL, true)
    );
}

#[test]
fn etcd_errors_name_the_line_or_flag() {
    for (text, want) in [
        (
            "iface = \"eth0\"\n[etcd]\nendpoints = [\"10.0.0.1:2379\"]\n",
            "t.toml:3: key `endpoints`: '10.0.0.1:2379' is not an etcd endpoint",
        ),
        (
            "iface = \"eth0\"\n[etcd]\nendpoints = [\"http://a:2379\"]\nttl = 0\n",
            "t.toml:4: key `ttl`: 0 is not a lease TTL",
        ),
        (
            "iface = \"eth0\"\n[etcd]\nendpoints = [\"http://a:2379\"]\nprefix = \"x\"\n",
            "t.toml:4: key `prefix`: 'x' is not a key prefix",
        ),
        (
            "iface = \"eth0\"\n[etcd]\nendpoints = [\"http://a:2379\"]\ncert = \"/c\"\n",
            "`cert` and `key` go together",
        ),
    ] {
        let e = parse(text, "t.toml").map(|f| resolve(Some(f), Overrides::default()));
        let msg = match e {
            Err(e) => format!("{e:#}"),
            Ok(Err(e)) => format!("{e:#}"),
            Ok(Ok(c)) => panic!("accepted {text:?}: {c:?}"),
        };
        assert!(msg.contains(want), "{msg}\nexpected: {want}");
    }
    let e = resolve(
        Some(file("iface = \"eth0\"\n[etcd]\nttl = 5\n")),
        Overrides::default(),
    )
    .unwrap_err();
    assert!(
        format!("{e:#}").contains("[etcd] has no `endpoints`"),
        "{e:#}"
    );
    let cli = Overrides {
        iface: Some("eth0".into()),
        etcd: vec!["ftp://x:1".into()],
        ..Overrides::default()
    };
    let e = resolve(None, cli).unwrap_err();
    assert!(
        format!("{e:#}").starts_with("--etcd: 'ftp://x:1' is not an etcd endpoint"),
        "{e:#}"
    );
    let cli = Overrides {
        iface: Some("eth0".into()),
        etcd_ttl: Some(5),
        ..Overrides::default()
    };
    assert!(format!("{:#}", resolve(None, cli).unwrap_err()).contains("need --etcd"));
}

#[test]
fn ipv6_underlay_in_the_file() {
    let f = file(
        "iface = \"eth0\"\nlocal = [\"192.168.57.50\", \"fd00:57::1\"]\nallow_remote = \
         [\"fd00:57::/64\", \"10.0.0.0/8\"]\n\n[[vni]]\nid = 42\nremotes = [\"fd00:57::2\", \
         \"fd00:57::3\"]\n\n[[vni]]\nid = 43\ngroup = \"ff05::100\"\n\n[[vni]]\nid = 44\n\
         remotes = [\"::ffff:10.0.0.2\"]\n",
    );
    assert_eq!(f.local, locals(&["192.168.57.50", "fd00:57::1"]));
    assert_eq!(f.vnis[0].remotes, vec![ip("fd00:57::2"), ip("fd00:57::3")]);
    assert_eq!(f.vnis[1].group, Some(ip("ff05::100")));
    // An IPv4-mapped address is the IPv4 address.
    assert_eq!(f.vnis[2].remotes, vec![ip("10.0.0.2")]);
    assert_eq!(
        f.allow_remote,
        vec![
            parse_cidr("fd00:57::/64").unwrap(),
            parse_cidr("10.0.0.0/8").unwrap()
        ]
    );
    // One address is still one string.
    assert_eq!(
        file("local = \"fd00:57::1\"\n").local,
        locals(&["fd00:57::1"])
    );
}

#[test]
fn ipv6_errors() {
    assert_eq!(
        err("[[vni]]\nid = 42\nremotes = [\n  \"10.0.0.2\",\n  \"fd00:57::2\",\n]\n"),
        "vxlan.toml:5: key `remotes`: VNI 42 mixes underlay families: remote 10.0.0.2 is IPv4 \
         but remote fd00:57::2 is IPv6 (one VNI runs over one family) (lines 4 and 5)"
    );
    assert_eq!(
        err("[[vni]]\nid = 42\nremotes = [\"fd00:57::2\"]\ngroup = \"239.1.1.1\"\n"),
        "vxlan.toml:4: key `group`: VNI 42 mixes underlay families: remote fd00:57::2 is IPv6 \
         but group 239.1.1.1 is IPv4 (one VNI runs over one family) (lines 3 and 4)"
    );
    assert_eq!(
        err("[[vni]]\nid = 42\ngroup = \"fd00::1\"\n"),
        "vxlan.toml:3: key `group`: fd00::1 is not an IPv6 multicast address (ff00::/8)"
    );
    assert_eq!(
        err("[[vni]]\nid = 42\nremotes = [\"ff05::1\"]\n"),
        "vxlan.toml:3: key `remotes`: VNI 42: ff05::1 is not a usable remote address"
    );
    assert_eq!(
        err("local = [\"fd00::1\", \"fd00::2\"]\n"),
        "vxlan.toml:1: key `local`: two local IPv6 addresses, fd00::1 and fd00::2: give at most \
         one of each family"
    );
    assert_eq!(
        err("local = \"ff02::1\"\n"),
        "vxlan.toml:1: key `local`: ff02::1 is not a unicast address"
    );
    assert!(err("local = 5\n").contains("expected an address or an array of addresses"));
    assert_eq!(
        err("allow_remote = [\"fd00::/129\"]\n"),
        "vxlan.toml:1: key `allow_remote`: 'fd00::/129' is not an IP prefix (like \
         192.168.57.0/24 or fd00:57::/64)"
    );
}

#[test]
fn ipv6_on_the_command_line() {
    // `--local` per family: the command line's replaces the file's of its
    // family only.
    let cli = Overrides {
        local: vec![ip("fd00:57::9")],
        vni: Some(VniConfig {
            remotes: vec![ip("fd00:57::2")],
            ..vni(7, &[])
        }),
        ..Overrides::default()
    };
    let c = resolve(
        Some(file(
            "iface = \"eth0\"\nlocal = [\"10.0.0.1\", \"fd00:57::1\"]\n",
        )),
        cli,
    )
    .unwrap();
    assert_eq!(c.local, locals(&["10.0.0.1", "fd00:57::9"]));
    assert_eq!(c.vnis[0].remotes, vec![ip("fd00:57::2")]);
    let twice = Overrides {
        iface: Some("eth0".into()),
        local: vec![ip("10.0.0.1"), ip("10.0.0.2")],
        ..Overrides::default()
    };
    assert_eq!(
        resolve_err(None, twice),
        "--local: two local IPv4 addresses, 10.0.0.1 and 10.0.0.2: give at most one of each family"
    );
    let mixed = Overrides {
        iface: Some("eth0".into()),
        vni: Some(VniConfig {
            remotes: vec![ip("fd00:57::2")],
            group: Some(ip("239.1.1.1")),
            ..vni(7, &[])
        }),
        ..Overrides::default()
    };
    assert_eq!(
        resolve_err(None, mixed),
        "--group: VNI 7 mixes underlay families: remote fd00:57::2 is IPv6 but group 239.1.1.1 is \
         IPv4 (one VNI runs over one family) (--remote and --group)"
    );
}
