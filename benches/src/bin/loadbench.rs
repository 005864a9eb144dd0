//! `loadbench`: AI Stack vs nginx as reverse proxies in front of the same upstream.
//! See benches/README.md. Ctrl-C or SIGTERM stops every child before exiting.

use std::process::ExitCode;

use aistack_benches::loadbench::{self, Args};
use anyhow::anyhow;
use clap::Parser;
use tokio::signal::unix::{SignalKind, signal};

fn main() -> ExitCode {
    let args = Args::parse();
    let result = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(anyhow::Error::from)
        .and_then(|rt| {
            rt.block_on(async {
                let mut term = signal(SignalKind::terminate())?;
                // Losing the race drops `run`'s future, and with it every child process.
                tokio::select! {
                    r = loadbench::run(args) => r,
                    _ = tokio::signal::ctrl_c() => Err(anyhow!("interrupted")),
                    _ = term.recv() => Err(anyhow!("terminated")),
                }
            })
        });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("loadbench: {e:#}");
            ExitCode::FAILURE
        }
    }
}
