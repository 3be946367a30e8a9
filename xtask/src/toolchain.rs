//! Makes sure the eBPF toolchain is present (see ../shared/TOOLCHAIN.md):
//! the nightly `rust-src` component and a `bpf-linker` built against the
//! nightly toolchain's own LLVM.

use std::{
    fs,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, Result, bail};

use crate::{
    signals::run_foreground,
    util::{describe, find_in_path, is_executable, output, output_any, run},
};

const BPF_LINKER_VERSION: &str = "0.13.0";
const BPF_LINKER_LLVM_FEATURE: &str = "llvm-22";
/// Major LLVM version matching `BPF_LINKER_LLVM_FEATURE`.
const LLVM_MAJOR: &str = "22";

fn home() -> Result<PathBuf> {
    std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(PathBuf::from)
        .context("$HOME is not set")
}

/// Where `cargo install` puts binaries (`$CARGO_HOME/bin`, default `~/.cargo/bin`).
fn cargo_bin() -> Result<PathBuf> {
    Ok(
        match std::env::var_os("CARGO_HOME").filter(|h| !h.is_empty()) {
            Some(cargo_home) => PathBuf::from(cargo_home).join("bin"),
            None => home()?.join(".cargo/bin"),
        },
    )
}

/// `cargo_bin()` and `~/.cargo/bin` (the same directory unless CARGO_HOME is set).
fn cargo_bins() -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = cargo_bin().into_iter().collect();
    if let Ok(home) = home() {
        let default = home.join(".cargo/bin");
        if !dirs.contains(&default) {
            dirs.push(default);
        }
    }
    dirs
}

/// Persistent LLVM prefix bpf-linker is built against (it keeps an rpath to it).
fn llvm_prefix() -> Result<PathBuf> {
    Ok(home()?.join(".local/share/vxlan-fwd/llvm"))
}

/// Puts `$CARGO_HOME/bin` and `~/.cargo/bin` at the front of PATH for xtask and
/// its children, unless already on it.
///
/// Must be called before any thread is started (it modifies the environment).
pub fn prepare_path() {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let mut dirs: Vec<PathBuf> = std::env::split_paths(&path).collect();
    let missing: Vec<PathBuf> = cargo_bins()
        .into_iter()
        .filter(|b| !dirs.contains(b))
        .collect();
    if missing.is_empty() {
        return;
    }
    dirs.splice(0..0, missing);
    if let Ok(joined) = std::env::join_paths(dirs) {
        // SAFETY: called from `main` before any other thread exists.
        unsafe { std::env::set_var("PATH", joined) };
    }
}

/// Installs what building the eBPF crate needs, if missing. Used by every command.
pub fn ensure_toolchain() -> Result<()> {
    ensure_rust_src()?;
    ensure_bpf_linker()
}

fn ensure_rust_src() -> Result<()> {
    let installed = output(Command::new("rustup").args([
        "component",
        "list",
        "--toolchain",
        "nightly",
        "--installed",
    ]))
    .context(
        "cannot list the nightly toolchain's components (is rustup on PATH and the `nightly` \
         toolchain installed? `rustup toolchain install nightly`)",
    )?;
    if installed.lines().any(|l| l.trim().starts_with("rust-src")) {
        return Ok(());
    }
    let mut cmd = Command::new("rustup");
    cmd.args(["component", "add", "rust-src", "--toolchain", "nightly"]);
    outln!(
        "xtask: nightly lacks rust-src (needed for -Z build-std=core); running `{}`",
        describe(&cmd)
    );
    run(&mut cmd).context("installing the nightly rust-src component")
}

fn ensure_bpf_linker() -> Result<()> {
    let found = find_in_path("bpf-linker").or_else(|| {
        cargo_bins()
            .into_iter()
            .map(|d| d.join("bpf-linker"))
            .find(|p| is_executable(p))
    });
    let force = match found {
        Some(path) => match linker_version(&path) {
            Ok(_) => return Ok(()),
            Err(e) => {
                outln!(
                    "xtask: {} does not run with the nightly toolchain ({e:#}); rebuilding it",
                    path.display()
                );
                true
            }
        },
        None => {
            outln!(
                "xtask: bpf-linker not found on PATH nor in {}",
                cargo_bin()?.display()
            );
            false
        }
    };
    install_bpf_linker(force)?;
    let path =
        find_in_path("bpf-linker").context("bpf-linker still not on PATH after installing it")?;
    let version = linker_version(&path).context("the freshly installed bpf-linker does not run")?;
    outln!("xtask: installed {version} at {}", path.display());
    Ok(())
}

/// `bpf-linker --version` run the way rustc runs it under aya-build
/// (`rustup run nightly`, which puts the nightly's libLLVM on LD_LIBRARY_PATH).
fn linker_version(path: &Path) -> Result<String> {
    let out = output_any(
        Command::new("rustup")
            .args(["run", "nightly"])
            .arg(path)
            .arg("--version"),
    )?;
    if !out.status.success() {
        bail!(
            "{}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

fn install_bpf_linker(force: bool) -> Result<()> {
    let prefix = llvm_prefix()?;
    let lib_dir = prefix.join("lib");

    let sysroot =
        output(Command::new("rustup").args(["run", "nightly", "rustc", "--print", "sysroot"]))
            .context("finding the nightly toolchain's sysroot")?;
    let nightly_lib = Path::new(sysroot.trim()).join("lib");
    let libllvm = find_nightly_libllvm(&nightly_lib)?;

    outln!(
        "xtask: building bpf-linker {BPF_LINKER_VERSION} against the nightly's LLVM \
         ({}), once; this takes a minute or two",
        libllvm.display()
    );
    fs::create_dir_all(&lib_dir).with_context(|| format!("creating {}", lib_dir.display()))?;
    // The recipe: $PREFIX/lib/libLLVM.so -> the nightly's libLLVM (what bpf-linker's
    // build links against). Also link the library's own file name, which is its
    // soname, so bpf-linker also runs outside `rustup run nightly` through its rpath.
    let soname = libllvm
        .file_name()
        .context("libLLVM path without file name")?;
    for link in [lib_dir.join("libLLVM.so"), lib_dir.join(soname)] {
        replace_symlink(&libllvm, &link)?;
        outln!("xtask:   {} -> {}", link.display(), libllvm.display());
    }

    let mut cmd = Command::new("cargo");
    cmd.args(["install", "bpf-linker", "--version", BPF_LINKER_VERSION])
        .args([
            "--no-default-features",
            "--features",
            BPF_LINKER_LLVM_FEATURE,
        ])
        .args(force.then_some("--force"))
        .env("LLVM_PREFIX", &prefix)
        // Not inside the workspace, so its .cargo/config.toml does not apply.
        .current_dir(home()?);
    outln!(
        "xtask:   LLVM_PREFIX={} {}",
        prefix.display(),
        describe(&cmd)
    );
    let status = run_foreground(&mut cmd)?;
    if !status.success() {
        bail!(
            "`LLVM_PREFIX={} {}` failed ({status})",
            prefix.display(),
            describe(&cmd)
        );
    }
    Ok(())
}

/// `<nightly sysroot>/lib/libLLVM.so.22.*-rust-*-nightly`.
fn find_nightly_libllvm(nightly_lib: &Path) -> Result<PathBuf> {
    let mut candidates = Vec::new();
    for entry in
        fs::read_dir(nightly_lib).with_context(|| format!("reading {}", nightly_lib.display()))?
    {
        let name = entry?.file_name().to_string_lossy().into_owned();
        if name.starts_with("libLLVM.so.") && name.contains("-rust-") && name.ends_with("-nightly")
        {
            candidates.push(name);
        }
    }
    let wanted = format!("libLLVM.so.{LLVM_MAJOR}.");
    match candidates.iter().find(|n| n.starts_with(&wanted)) {
        Some(name) => Ok(nightly_lib.join(name)),
        None if candidates.is_empty() => {
            bail!(
                "no libLLVM.so.*-rust-*-nightly in {}",
                nightly_lib.display()
            )
        }
        None => bail!(
            "the nightly toolchain ships {}, but bpf-linker {BPF_LINKER_VERSION} is built with \
             --features {BPF_LINKER_LLVM_FEATURE}; the toolchain pins need updating",
            candidates.join(", ")
        ),
    }
}

fn replace_symlink(target: &Path, link: &Path) -> Result<()> {
    if link.symlink_metadata().is_ok() {
        fs::remove_file(link).with_context(|| format!("removing {}", link.display()))?;
    }
    std::os::unix::fs::symlink(target, link)
        .with_context(|| format!("symlinking {} -> {}", link.display(), target.display()))
}
