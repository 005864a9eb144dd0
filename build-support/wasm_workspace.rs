// Shared by the build scripts that build Proxy-Wasm filters for wasm32-wasip1 with a
// nested cargo (`gateway/build.rs`: the built-in filters of plugins/; `tests/build.rs`:
// the conformance filters of tests/filters/ and examples/hello-filter). Included with
// `include!`, so it holds items only (no inner attributes or docs).
//
// The nested cargo gets its own target dir (the outer build holds the lock on the main
// one: sharing it would deadlock) and a clean environment (the outer build's target,
// flags and wrappers must not leak into a wasm build). It shares the outer build's
// jobserver.

/// The target every filter is built for.
const WASM_TARGET: &str = "wasm32-wasip1";

/// Builds the cargo project at `dir` (a workspace with `members = [...]`, or a single
/// package) in release mode for wasm32-wasip1 with `target_dir`, and returns each
/// package's name with the path of its `.wasm`. `--locked` when the project has a
/// Cargo.lock. Asks cargo to rerun the build script when anything in `dir` changes.
fn build_wasm_workspace(
    dir: &std::path::Path,
    target_dir: &std::path::Path,
) -> Result<Vec<(String, std::path::PathBuf)>, String> {
    wasm_watch(dir)?;
    let members = wasm_members(dir)?;
    wasm_check_target()?;
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let mut command = std::process::Command::new(&cargo);
    command
        .args(["build", "--release", "--target", WASM_TARGET])
        .arg("--manifest-path")
        .arg(dir.join("Cargo.toml"))
        .arg("--target-dir")
        .arg(target_dir);
    if dir.join("Cargo.lock").is_file() {
        command.arg("--locked");
    }
    wasm_clean_env(&mut command);
    let output = command
        .output()
        .map_err(|e| format!("cannot run `{cargo}` to build {}: {e}", dir.display()))?;
    if !output.status.success() {
        return Err(format!(
            "building {} for {WASM_TARGET} failed:\n{}",
            dir.display(),
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    let built = target_dir.join(WASM_TARGET).join("release");
    members
        .into_iter()
        .map(|name| {
            let wasm = built.join(format!("{}.wasm", name.replace('-', "_")));
            if wasm.is_file() {
                Ok((name, wasm))
            } else {
                Err(format!(
                    "`{name}` in {} produced no {}: is it a cdylib?",
                    dir.display(),
                    wasm.display()
                ))
            }
        })
        .collect()
}

/// Runs a build script's body: `Err` becomes one clear line and a failed build.
fn wasm_build_main(build: impl FnOnce() -> Result<(), String>) -> std::process::ExitCode {
    match build() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(message) => {
            // Cargo prints it under the build-script failure.
            eprintln!("error: {message}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn wasm_env_var(name: &str) -> Result<String, String> {
    std::env::var(name).map_err(|_| format!("{name} is not set (run through cargo)"))
}

/// Rebuild when anything in `dir` changes, except its own target dir.
fn wasm_watch(dir: &std::path::Path) -> Result<(), String> {
    let entries =
        std::fs::read_dir(dir).map_err(|e| format!("cannot read {}: {e}", dir.display()))?;
    for entry in entries.flatten() {
        let name = entry.file_name();
        if name == "target" || name.to_string_lossy().starts_with('.') {
            continue;
        }
        println!("cargo:rerun-if-changed={}", entry.path().display());
    }
    Ok(())
}

/// The package names: each member's of `members = [...]` in a workspace manifest, else
/// the manifest's own `[package] name`.
fn wasm_members(dir: &std::path::Path) -> Result<Vec<String>, String> {
    let manifest = wasm_read(&dir.join("Cargo.toml"))?;
    let Some(start) = manifest
        .lines()
        .find(|line| line.trim_start().starts_with("members"))
        .and_then(|line| manifest.find(line))
    else {
        return Ok(vec![wasm_package_name(&manifest, dir)?]);
    };
    let list = manifest[start..]
        .split_once('[')
        .and_then(|(_, rest)| rest.split_once(']'))
        .map(|(list, _)| list)
        .ok_or_else(|| format!("{}/Cargo.toml: unterminated `members` list", dir.display()))?;
    list.split(',')
        .map(|m| m.trim().trim_matches('"'))
        .filter(|m| !m.is_empty())
        .map(|member| {
            let member_dir = dir.join(member);
            wasm_package_name(&wasm_read(&member_dir.join("Cargo.toml"))?, &member_dir)
        })
        .collect()
}

fn wasm_package_name(manifest: &str, dir: &std::path::Path) -> Result<String, String> {
    manifest
        .lines()
        .filter_map(|line| line.trim().strip_prefix("name"))
        .filter_map(|rest| rest.trim().strip_prefix('='))
        .map(|value| value.trim().trim_matches('"').to_owned())
        .next()
        .ok_or_else(|| format!("{}/Cargo.toml has no package name", dir.display()))
}

fn wasm_read(path: &std::path::Path) -> Result<String, String> {
    std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))
}

/// Fails with one actionable line when the toolchain has no wasm32-wasip1 standard library.
fn wasm_check_target() -> Result<(), String> {
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".to_owned());
    let libdir = std::process::Command::new(&rustc)
        .args(["--print", "target-libdir", "--target", WASM_TARGET])
        .output()
        .ok()
        .filter(|out| out.status.success())
        .map(|out| std::path::PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()));
    match libdir {
        Some(dir) if dir.is_dir() => Ok(()),
        _ => Err(format!(
            "the {WASM_TARGET} target is missing: run `rustup target add {WASM_TARGET}` \
             (or `rustup toolchain install` in the repo root)"
        )),
    }
}

/// Removes what the outer build sets for its own compilation, keeping the toolchain
/// (`RUSTC`, rustup's variables), registry and network settings, and the jobserver
/// (`CARGO_MAKEFLAGS`).
fn wasm_clean_env(command: &mut std::process::Command) {
    const KEEP: &[&str] = &["CARGO_HOME", "CARGO_MAKEFLAGS"];
    const KEEP_PREFIXES: &[&str] = &[
        "CARGO_NET_",
        "CARGO_HTTP_",
        "CARGO_REGISTRIES_",
        "CARGO_REGISTRY_",
    ];
    const DROP: &[&str] = &[
        "RUSTFLAGS",
        "RUSTDOCFLAGS",
        "RUSTC_WORKSPACE_WRAPPER",
        "CARGO",
        "TARGET",
        "HOST",
        "OUT_DIR",
        "PROFILE",
        "OPT_LEVEL",
        "DEBUG",
        "NUM_JOBS",
        "RUSTC_LINKER",
    ];
    for (key, _) in std::env::vars_os() {
        let Some(key) = key.to_str() else { continue };
        let cargo_own = key.starts_with("CARGO_")
            && !KEEP.contains(&key)
            && !KEEP_PREFIXES.iter().any(|p| key.starts_with(p));
        if cargo_own || DROP.contains(&key) {
            command.env_remove(key);
        }
    }
}
