//! Developer tasks for vxlan-fwd: `cargo xtask <command>` (see `cargo xtask --help`).

/// `outln!`/`out!`/`errln!`/`err!` that never panic: a closed stdout
/// (`cargo xtask demo | head`) must not abort a teardown.
macro_rules! outln {
    ($($t:tt)*) => {{ use std::io::Write as _; let _ = writeln!(std::io::stdout(), $($t)*); }};
}
macro_rules! out {
    ($($t:tt)*) => {{ use std::io::Write as _; let _ = write!(std::io::stdout(), $($t)*); }};
}
macro_rules! errln {
    ($($t:tt)*) => {{ use std::io::Write as _; let _ = writeln!(std::io::stderr(), $($t)*); }};
}
macro_rules! err {
    ($($t:tt)*) => {{ use std::io::Write as _; let _ = write!(std::io::stderr(), $($t)*); }};
}

mod bench;
mod deb;
mod demo;
mod packages;
mod signals;
mod soak;
mod tasks;
mod toolchain;
mod util;

use std::{ffi::OsString, process::ExitCode};

use anyhow::Result;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "cargo xtask",
    bin_name = "cargo xtask",
    about = "Developer tasks for vxlan-fwd"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Build target/release/vxlan-fwd (with its eBPF program) and print its path.
    Build,
    /// Build, then package vxlan-fwd, its systemd unit, an example config and the
    /// README as target/debian/vxlan-fwd_*.deb (installs cargo-deb when missing).
    Deb,
    /// Build, then run vxlan-fwd with ARGS as root (through `sudo -E` when not root);
    /// exits with vxlan-fwd's exit code.
    Run {
        /// Arguments for vxlan-fwd (put them after `--`).
        #[arg(
            trailing_var_arg = true,
            allow_hyphen_values = true,
            value_name = "ARGS"
        )]
        args: Vec<OsString>,
    },
    /// Build, then run the workspace tests serially (`--test-threads=1`) with
    /// VXLAN_FWD_BIN set. Must run as root.
    Test {
        /// Extra arguments for the test harness (after `--`), e.g. a test name filter
        /// or `--nocapture`.
        #[arg(
            trailing_var_arg = true,
            allow_hyphen_values = true,
            value_name = "ARGS"
        )]
        args: Vec<OsString>,
    },
    /// Build, create the seed's two-host topology in `vxdemo-*` network namespaces,
    /// run vxlan-fwd on both hosts, ping between the containers, print both FDBs,
    /// and tear everything down (also on Ctrl-C). Must run as root.
    Demo {
        /// Only create the topology, ping host to host over the underlay, and tear
        /// down (no build, no vxlan-fwd).
        #[arg(long)]
        topology_only: bool,
    },
    /// Build, then measure the kernel's vxlan + bridge against vxlan-fwd on the
    /// seed's two-host topology in `vxbench-*` namespaces: small-packet rate,
    /// TCP throughput, per-packet program cost, FDB scale, memory. Writes
    /// target/bench/bench.json and bench.svg. Must run as root.
    Bench(bench::BenchArgs),
    /// Check formatting (nightly rustfmt) and run clippy with warnings as
    /// errors on every crate, the eBPF one included (installs nightly
    /// rustfmt and clippy when missing). CI runs it before the tests.
    Lint,
    /// Run the fuzz test at full size: 1 000 000 random and mutated frames
    /// through each eBPF program (`VXLAN_FUZZ_SEED` picks the seed). Must run
    /// as root.
    Fuzz {
        /// Frames per program.
        #[arg(long, default_value_t = 1_000_000)]
        frames: u64,
    },
    /// Run both hosts at the highest rate for a long time (default 10 min) and
    /// check that drops do not grow, the loaders' RSS stays flat and the FDB
    /// stays consistent. Must run as root; not part of CI.
    Soak(soak::SoakArgs),
    /// (internal) The bench's UDP generator, run inside a container namespace.
    #[command(hide = true)]
    BenchGen(bench::generator::GenArgs),
    /// (internal) The bench's receiving socket, run inside a container namespace.
    #[command(hide = true)]
    BenchSink(bench::generator::SinkArgs),
}

fn main() -> ExitCode {
    // Both before any thread exists: PATH is modified, and the signal mask is
    // inherited by threads.
    toolchain::prepare_path();
    if let Err(e) = signals::init() {
        errln!("xtask: error: {e:#}");
        return ExitCode::FAILURE;
    }
    let cli = Cli::parse();
    let result = run(cli.command);
    // A Ctrl-C teardown of the lab may be running: let it finish (it exits).
    vxlan_tests::lab::checkpoint();
    match result {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            errln!("xtask: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(command: Cmd) -> Result<u8> {
    if let Cmd::BenchGen(args) = &command {
        return bench::generator::main(args);
    }
    if let Cmd::BenchSink(args) = &command {
        return bench::generator::sink(args);
    }
    // Fail before a possibly long toolchain install when root is required.
    match command {
        Cmd::Test { .. } => util::require_root("cargo xtask test")?,
        Cmd::Demo { .. } => util::require_root("cargo xtask demo")?,
        Cmd::Bench(_) => util::require_root("cargo xtask bench")?,
        Cmd::Fuzz { .. } => util::require_root("cargo xtask fuzz")?,
        Cmd::Soak(_) => util::require_root("cargo xtask soak")?,
        Cmd::Build
        | Cmd::Deb
        | Cmd::Lint
        | Cmd::Run { .. }
        | Cmd::BenchGen(_)
        | Cmd::BenchSink(_) => {}
    }
    toolchain::ensure_toolchain()?;
    match command {
        Cmd::Build => tasks::build().map(|_| 0),
        Cmd::Deb => deb::deb().map(|_| 0),
        Cmd::Run { args } => tasks::run(&args),
        Cmd::Test { args } => tasks::test(&args),
        Cmd::Demo { topology_only } => demo::demo(topology_only).map(|()| 0),
        Cmd::Bench(args) => bench::bench(&args),
        Cmd::Lint => tasks::lint(),
        Cmd::Fuzz { frames } => tasks::fuzz(frames),
        Cmd::Soak(args) => soak::soak(&args),
        Cmd::BenchGen(_) | Cmd::BenchSink(_) => unreachable!("handled above"),
    }
}
