use std::process::ExitCode;

use anyhow::{Result, bail};
use clap::Parser;
use vxlan_user::{
    cli::{Cli, Command},
    commands,
};

fn main() -> ExitCode {
    unblock_stop_signals();
    let cli = Cli::parse();
    let debug_log = match (&cli.command, &cli.run) {
        (Some(Command::Run(a)), _) | (None, Some(a)) => a.debug_log,
        _ => false,
    };
    let filter = if debug_log {
        "info,vxlan_ebpf=debug"
    } else {
        "warn"
    };
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or(filter))
        .format_timestamp(None)
        .init();
    match real_main(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("vxlan-fwd: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn real_main(cli: Cli) -> Result<()> {
    if !nix::unistd::geteuid().is_root() {
        bail!("must run as root (it loads eBPF programs and changes network interfaces)");
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        match (cli.command, cli.run) {
            (Some(Command::Run(args)), _) | (None, Some(args)) => commands::run(args).await,
            (Some(Command::Fdb(a)), _) => commands::fdb(a).await,
            (Some(Command::Vni(a)), _) => commands::vni(a).await,
            (Some(Command::Port(a)), _) => commands::port(a).await,
            (Some(Command::Stats { json, iface }), _) => {
                commands::stats(json, iface.as_deref()).await
            }
            (None, None) => {
                bail!("nothing to do: give --iface (and --vni), or a command (see --help)")
            }
        }
    })
}

/// A parent may have started us with SIGINT/SIGTERM blocked (the mask is
/// inherited across exec); we must still stop cleanly on them.
fn unblock_stop_signals() {
    use nix::sys::signal::{SigSet, Signal};
    let mut set = SigSet::empty();
    set.add(Signal::SIGINT);
    set.add(Signal::SIGTERM);
    // Cannot fail with a valid set: nothing to report.
    let _ = set.thread_unblock();
}
