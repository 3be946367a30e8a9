use which::which;

/// Rebuild when bpf-linker changes: it is part of the toolchain that
/// produces the object.
fn main() {
    let bpf_linker =
        which("bpf-linker").expect("bpf-linker not found on PATH (run `cargo xtask build`)");
    println!("cargo:rerun-if-changed={}", bpf_linker.to_string_lossy());
}
