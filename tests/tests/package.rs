//! The Debian package and the systemd unit: what `cargo xtask deb` ships
//! (`dpkg-deb -c`, `dpkg-deb -f`, conffiles, maintainer scripts), a clean
//! `systemd-analyze verify` of `packaging/vxlan-fwd@.service`, the unit's
//! sandboxing, and the example config.
//!
//! `cargo xtask test` builds the package first and names it in
//! `VXLAN_FWD_DEB`; under a plain `cargo test` the newest
//! `target/debian/*.deb` is checked. No package is a failure, not a skip.

use std::{
    collections::BTreeSet,
    fs,
    path::{Path, PathBuf},
    process::{Command, Output},
};

fn repo_root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().unwrap_or(manifest).to_path_buf()
}

fn packaging(file: &str) -> PathBuf {
    repo_root().join("packaging").join(file)
}

fn read(path: &Path) -> String {
    fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

fn run(cmd: &mut Command) -> Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn stdout(cmd: &mut Command) -> String {
    String::from_utf8_lossy(&run(cmd).stdout).into_owned()
}

/// The package under test: `$VXLAN_FWD_DEB`, else the newest
/// `target/debian/vxlan-fwd_*.deb`.
fn deb() -> PathBuf {
    if let Some(path) = std::env::var_os("VXLAN_FWD_DEB") {
        assert!(
            !path.is_empty(),
            "`cargo xtask test` could not build the .deb (its error is at the start of the output)"
        );
        let path = PathBuf::from(path);
        assert!(
            path.is_file(),
            "VXLAN_FWD_DEB={} does not exist",
            path.display()
        );
        return path;
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .map(|t| {
            if t.is_absolute() {
                t
            } else {
                repo_root().join(t)
            }
        })
        .unwrap_or_else(|| repo_root().join("target"));
    let dir = target.join("debian");
    let newest = fs::read_dir(&dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            name.starts_with("vxlan-fwd_") && name.ends_with(".deb")
        })
        .filter_map(|e| Some((e.metadata().ok()?.modified().ok()?, e.path())))
        .max();
    match newest {
        Some((_, path)) => path,
        None => panic!(
            "no vxlan-fwd_*.deb in {}: run `cargo xtask deb` (`cargo xtask test` does)",
            dir.display()
        ),
    }
}

/// A scratch directory, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(what: &str) -> Self {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("vxlan-pkg-{what}-{}-{n}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("creating {}: {e}", dir.display()));
        Self(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

const BIN: &str = "./usr/bin/vxlan-fwd";
const UNIT: &str = "./lib/systemd/system/vxlan-fwd@.service";
const EXAMPLE: &str = "./etc/vxlan-fwd/eth0.toml.example";
const README: &str = "./usr/share/doc/vxlan-fwd/README.md";
const COPYRIGHT: &str = "./usr/share/doc/vxlan-fwd/copyright";

#[test]
fn deb_contains_the_binary_unit_config_and_docs() {
    let deb = deb();
    let listing = stdout(Command::new("dpkg-deb").arg("-c").arg(&deb));
    // "-rwxr-xr-x 0/0  6724952 2026-11-29 00:00 ./usr/bin/vxlan-fwd"
    let mut files = BTreeSet::new();
    let mut modes = std::collections::BTreeMap::new();
    for line in listing.lines() {
        let cols: Vec<&str> = line.split_whitespace().collect();
        assert!(cols.len() >= 6, "unexpected `dpkg-deb -c` line: {line:?}");
        let (mode, owner, path) = (cols[0], cols[1], cols[5..].join(" "));
        assert!(
            ["0/0", "root/root"].contains(&owner),
            "not owned by root: {line}"
        );
        if !mode.starts_with('d') {
            files.insert(path.clone());
            modes.insert(path, mode.to_owned());
        }
    }
    let expected: BTreeSet<String> = [BIN, UNIT, EXAMPLE, README, COPYRIGHT]
        .into_iter()
        .map(String::from)
        .collect();
    assert_eq!(files, expected, "files in {}:\n{listing}", deb.display());
    assert_eq!(modes[BIN], "-rwxr-xr-x");
    for f in [UNIT, EXAMPLE, README, COPYRIGHT] {
        assert_eq!(modes[f], "-rw-r--r--", "{f}");
    }
}

#[test]
fn deb_control_fields() {
    let deb = deb();
    let field = |name: &str| {
        stdout(Command::new("dpkg-deb").arg("-f").arg(&deb).arg(name))
            .trim()
            .to_owned()
    };
    assert_eq!(field("Package"), "vxlan-fwd");
    let version = field("Version");
    assert!(
        version.starts_with(&format!("{}-", env!("CARGO_PKG_VERSION"))),
        "Version: {version}"
    );
    let arch = stdout(Command::new("dpkg").arg("--print-architecture"));
    assert_eq!(field("Architecture"), arch.trim());
    assert_eq!(field("Section"), "net");
    assert!(!field("Maintainer").is_empty());
    assert!(
        field("Description").contains("VXLAN"),
        "{}",
        field("Description")
    );
    // Only the C library (libc6, and libgcc-s1 for unwinding): no iproute2,
    // no systemd, nothing else at run time.
    let depends = field("Depends");
    let names: Vec<&str> = depends
        .split(',')
        .map(|d| d.split_whitespace().next().unwrap_or(""))
        .collect();
    assert!(names.contains(&"libc6"), "Depends: {depends}");
    for name in &names {
        assert!(
            ["libc6", "libgcc-s1"].contains(name),
            "unexpected dependency {name:?} in Depends: {depends}"
        );
    }
    for absent in ["Recommends", "Pre-Depends", "Conflicts"] {
        assert_eq!(field(absent), "", "{absent}");
    }
}

#[test]
fn deb_conffiles_and_maintainer_scripts() {
    let deb = deb();
    let info = |part: &str| stdout(Command::new("dpkg-deb").arg("-I").arg(&deb).arg(part));
    assert_eq!(info("conffiles").trim(), "/etc/vxlan-fwd/eth0.toml.example");
    for script in ["postinst", "prerm", "postrm"] {
        let text = info(script);
        assert_eq!(
            text,
            read(&packaging(&format!("debian/{script}"))),
            "{script}"
        );
        // Installing or upgrading never starts, enables or restarts anything.
        for word in ["start", "enable", "restart", "reload-or"] {
            let starts = text
                .lines()
                .filter(|l| !l.trim_start().starts_with('#'))
                .any(|l| l.contains("systemctl") && l.split_whitespace().any(|w| w == word));
            assert!(!starts, "{script} runs `systemctl {word}`:\n{text}");
        }
    }
    assert!(info("postinst").contains("daemon-reload"));
}

#[test]
fn deb_ships_the_repository_files() {
    let deb = deb();
    let root = TempDir::new("extract");
    run(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&root.0));
    let shipped = |p: &str| root.0.join(p.trim_start_matches("./"));
    assert_eq!(read(&shipped(UNIT)), read(&packaging("vxlan-fwd@.service")));
    assert_eq!(
        read(&shipped(EXAMPLE)),
        read(&packaging("eth0.toml.example"))
    );
    assert_eq!(read(&shipped(README)), read(&repo_root().join("README.md")));
    // The binary runs (--help needs neither root nor a kernel feature).
    let help = stdout(Command::new(shipped(BIN)).arg("--help"));
    assert!(help.contains("--iface"), "{help}");
}

/// `systemd-analyze verify` of `unit_text` installed as
/// /usr/lib/systemd/system/vxlan-fwd@.service in a scratch root holding the
/// system's units and stand-ins for the commands the unit runs. Returns its
/// output (stdout and stderr) and whether it exited 0.
fn verify(unit_text: &str, instance: &str) -> (String, bool) {
    let root = TempDir::new("verify");
    let r = &root.0;
    let units = r.join("usr/lib/systemd/system");
    fs::create_dir_all(&units).expect("creating the scratch unit directory");
    fs::create_dir_all(r.join("usr/bin")).expect("creating usr/bin");
    fs::create_dir_all(r.join("etc/systemd/system")).expect("creating etc/systemd/system");
    // Merged /usr, as on Debian 12: /bin -> usr/bin (for ExecReload=/bin/kill).
    std::os::unix::fs::symlink("usr/bin", r.join("bin")).expect("symlinking bin");
    for entry in fs::read_dir("/usr/lib/systemd/system").expect("reading the system's units") {
        let entry = entry.expect("reading the system's units");
        let path = entry.path();
        let meta = fs::symlink_metadata(&path).expect("stat");
        let dest = units.join(entry.file_name());
        if meta.file_type().is_symlink() {
            let target = fs::read_link(&path).expect("readlink");
            std::os::unix::fs::symlink(target, &dest).expect("copying a symlink");
        } else if meta.is_file() {
            fs::copy(&path, &dest).expect("copying a unit");
        }
    }
    for stub in ["vxlan-fwd", "kill"] {
        let path = r.join("usr/bin").join(stub);
        fs::write(&path, "#!/bin/sh\n").expect("writing a stub");
        use std::os::unix::fs::PermissionsExt as _;
        fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).expect("chmod");
    }
    fs::write(units.join("vxlan-fwd@.service"), unit_text).expect("writing the unit");
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(format!("--root={}", r.display()))
        .arg(format!("vxlan-fwd@{instance}.service"))
        .output()
        .expect("running systemd-analyze (apt-get install systemd)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (text, out.status.success())
}

#[test]
fn unit_verifies_clean() {
    let unit = read(&packaging("vxlan-fwd@.service"));
    for instance in ["eth0", r"br\x2dlan"] {
        let (out, ok) = verify(&unit, instance);
        // It exits 0 even on "Unknown key" or "Failed to parse": any line
        // naming the unit is a finding.
        let findings: Vec<&str> = out.lines().filter(|l| l.contains("vxlan-fwd")).collect();
        assert!(
            ok && findings.is_empty(),
            "systemd-analyze verify vxlan-fwd@{instance}.service:\n{out}"
        );
    }
}

#[test]
fn unit_verify_catches_mistakes() {
    // The check above would see a bad line: this one must be reported.
    let unit = read(&packaging("vxlan-fwd@.service")).replacen(
        "[Service]\n",
        "[Service]\nProtectSystem=bogus\n",
        1,
    );
    let (out, _) = verify(&unit, "eth0");
    assert!(
        out.lines()
            .any(|l| l.contains("vxlan-fwd@") && l.contains("bogus")),
        "no finding for ProtectSystem=bogus:\n{out}"
    );
}

/// `key=value` lines of the unit's `[Service]` section (a key may repeat).
fn service_settings(unit: &str) -> Vec<(String, String)> {
    let mut section = "";
    let mut settings = Vec::new();
    for line in unit.lines().map(str::trim) {
        if line.starts_with('[') {
            section = line;
        } else if section == "[Service]"
            && !line.starts_with('#')
            && let Some((k, v)) = line.split_once('=')
        {
            settings.push((k.trim().to_owned(), v.trim().to_owned()));
        }
    }
    settings
}

#[test]
fn unit_runs_the_datapath_sandboxed() {
    let unit = read(&packaging("vxlan-fwd@.service"));
    let settings = service_settings(&unit);
    let get = |key: &str| -> Vec<&str> {
        settings
            .iter()
            .filter(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
            .collect()
    };
    assert_eq!(get("Type"), ["notify"]);
    assert_eq!(
        get("ExecStart"),
        ["/usr/bin/vxlan-fwd --iface %I --config /etc/vxlan-fwd/%I.toml"]
    );
    assert_eq!(get("ExecReload"), ["/bin/kill -HUP $MAINPID"]);
    assert_eq!(get("KillSignal"), ["SIGTERM"]);
    assert_eq!(get("Restart"), ["on-failure"]);
    assert_eq!(get("RuntimeDirectory"), ["vxlan-fwd"]);
    assert_eq!(get("RuntimeDirectoryPreserve"), ["yes"]);
    // Space-separated lists, as sets of their words.
    let words = |key: &str| -> BTreeSet<&str> {
        get(key)
            .into_iter()
            .flat_map(str::split_whitespace)
            .collect()
    };
    assert_eq!(
        words("CapabilityBoundingSet"),
        BTreeSet::from(["CAP_BPF", "CAP_PERFMON", "CAP_NET_ADMIN", "CAP_SYS_ADMIN"])
    );
    assert_eq!(
        words("RestrictAddressFamilies"),
        BTreeSet::from(["AF_UNIX", "AF_NETLINK", "AF_INET", "AF_INET6"])
    );
    // The allow list must keep bpf(2).
    let filters = get("SystemCallFilter");
    assert!(
        filters
            .iter()
            .any(|f| !f.starts_with('~') && f.split_whitespace().any(|s| s == "bpf")),
        "SystemCallFilter does not allow bpf: {filters:?}"
    );
    for on in [
        "NoNewPrivileges",
        "ProtectHome",
        "PrivateTmp",
        "PrivateDevices",
        "ProtectKernelTunables",
        "ProtectKernelModules",
        "ProtectControlGroups",
        "RestrictNamespaces",
        "RestrictRealtime",
        "LockPersonality",
        "MemoryDenyWriteExecute",
    ] {
        assert_eq!(get(on), ["yes"], "{on}");
    }
    assert_eq!(get("ProtectSystem"), ["strict"]);
    assert_eq!(get("SystemCallArchitectures"), ["native"]);
    // These would cut the datapath off the host's network or from BPF.
    for off in [
        "PrivateNetwork",
        "PrivateUsers",
        "ProcSubset",
        "DynamicUser",
        "User",
    ] {
        assert!(get(off).is_empty(), "{off} is set");
    }
}

#[test]
fn example_config_parses() {
    let text = read(&packaging("eth0.toml.example"));
    // As shipped (everything commented out).
    let file =
        vxlan_user::config::parse(&text, "eth0.toml.example").unwrap_or_else(|e| panic!("{e:#}"));
    assert!(file.vnis.is_empty());
    // With every commented-out setting switched on.
    let on: String = text
        .lines()
        .map(|l| match l.strip_prefix("# ") {
            Some(rest) if rest.starts_with("[[") || rest.contains(" = ") => rest,
            _ => l,
        })
        .map(|l| format!("{l}\n"))
        .collect();
    let file = vxlan_user::config::parse(&on, "eth0.toml.example (uncommented)")
        .unwrap_or_else(|e| panic!("{e:#}\n{on}"));
    let ids: Vec<u32> = file.vnis.iter().map(|v| v.id).collect();
    assert_eq!(ids, [42, 43, 44]);
    assert_eq!(file.dstport, Some(4789));
    let v44 = &file.vnis[2];
    assert!(
        v44.remotes.iter().all(|r| r.is_ipv6()) && !v44.remotes.is_empty(),
        "VNI 44 of the example is over IPv6: {:?}",
        v44.remotes
    );
}
