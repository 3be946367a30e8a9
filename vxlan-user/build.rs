use anyhow::{Context as _, anyhow};
use aya_build::{Package, Toolchain};

fn main() -> anyhow::Result<()> {
    let cargo_metadata::Metadata { packages, .. } = cargo_metadata::MetadataCommand::new()
        .no_deps()
        .exec()
        .context("MetadataCommand::exec")?;
    let ebpf_package = packages
        .into_iter()
        .find(|cargo_metadata::Package { name, .. }| name.as_str() == "vxlan-ebpf")
        .ok_or_else(|| anyhow!("vxlan-ebpf package not found"))?;
    let cargo_metadata::Package {
        name,
        manifest_path,
        ..
    } = ebpf_package;
    let root_dir = manifest_path
        .parent()
        .ok_or_else(|| anyhow!("no parent for {manifest_path}"))?
        .as_str();
    let ebpf_package = Package {
        name: name.as_str(),
        root_dir,
        ..Default::default()
    };
    // The eBPF crate is built from vxlan-common too: a change there must
    // rebuild it (aya-build only watches the eBPF crate's own directory).
    println!("cargo:rerun-if-changed=../vxlan-common");
    aya_build::build_ebpf([ebpf_package], Toolchain::default())
}
