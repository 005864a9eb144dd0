//! The benchmark filters of `benches/filters/`, built for wasm32-wasip1 by build.rs: where
//! each `.wasm` is. Paths into this build's `OUT_DIR`, so valid while the target
//! directory is.

use std::path::Path;

/// Does nothing: every callback is the SDK's default `Continue`.
pub const BENCH_EMPTY: &str = env!("AISTACK_BENCH_FILTER_BENCH_EMPTY");
/// Reads and sets 5 request headers; sets `x-bench-headers` on the response.
pub const BENCH_HEADERS: &str = env!("AISTACK_BENCH_FILTER_BENCH_HEADERS");
/// Buffers the response body and replaces it with an upper-cased copy.
pub const BENCH_BODY: &str = env!("AISTACK_BENCH_FILTER_BENCH_BODY");

/// Reads the module bytes of a filter at one of the paths above.
///
/// # Errors
/// When the file is gone (the target directory was cleaned since this build).
pub fn read(path: &str) -> anyhow::Result<Vec<u8>> {
    use anyhow::Context as _;
    std::fs::read(Path::new(path)).with_context(|| {
        format!("cannot read {path}: rebuild with `cargo build -p aistack-benches`")
    })
}
