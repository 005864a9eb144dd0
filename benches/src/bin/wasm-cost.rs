//! `wasm-cost`: the per-request cost of Proxy-Wasm filters, in process. See
//! `aistack_benches::wasm_cost`.

use std::process::ExitCode;

use aistack_benches::wasm_cost::{self, Args};
use clap::Parser;

fn main() -> ExitCode {
    match wasm_cost::run(&Args::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("wasm-cost: {e:#}");
            ExitCode::FAILURE
        }
    }
}
