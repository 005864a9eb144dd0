//! Builds the benchmark filters of `filters/` for wasm32-wasip1 (the nested build is
//! `build-support/wasm_workspace.rs`, shared with the gateway's and the tests' build
//! scripts) and tells the bench crate where each `.wasm` is: `AISTACK_BENCH_FILTER_<NAME>`
//! (upper snake case), read by `aistack_benches::filters`.

use std::path::PathBuf;
use std::process::ExitCode;

include!("../build-support/wasm_workspace.rs");

fn main() -> ExitCode {
    println!("cargo:rerun-if-changed=../build-support/wasm_workspace.rs");
    wasm_build_main(build)
}

fn build() -> Result<(), String> {
    let manifest_dir = PathBuf::from(wasm_env_var("CARGO_MANIFEST_DIR")?);
    let out_dir = PathBuf::from(wasm_env_var("OUT_DIR")?);
    let built = build_wasm_workspace(
        &manifest_dir.join("filters"),
        &out_dir.join("bench-filters-target"),
    )?;
    for (name, wasm) in &built {
        let var = name.to_ascii_uppercase().replace('-', "_");
        println!(
            "cargo:rustc-env=AISTACK_BENCH_FILTER_{var}={}",
            wasm.display()
        );
    }
    Ok(())
}
