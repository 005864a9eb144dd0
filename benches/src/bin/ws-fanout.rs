//! `ws-fanout`: one event pushed to many notification WebSockets through the gateway.
//! See benches/README.md. Ctrl-C stops the gateway before exiting.

use std::process::ExitCode;

use aistack_benches::ws_fanout::{self, Args};
use anyhow::anyhow;
use clap::Parser;

fn main() -> ExitCode {
    let args = Args::parse();
    // Multi-threaded: a thousand sockets' readers must not queue behind one thread.
    let result = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(anyhow::Error::from)
        .and_then(|rt| {
            rt.block_on(async {
                tokio::select! {
                    r = ws_fanout::run(args) => r,
                    _ = tokio::signal::ctrl_c() => Err(anyhow!("interrupted")),
                }
            })
        });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ws-fanout: {e:#}");
            ExitCode::FAILURE
        }
    }
}
