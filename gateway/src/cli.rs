//! The command line: `aistack up | gateway | collab | validate FILE`, and
//! `aistack consumers …` / `aistack keys …` (through the admin API: `cli/keys.rs`).

pub mod keys;

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "aistack",
    version,
    about = "AI Stack: API gateway with WebAssembly plugins"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Start the gateway and the collaboration backend (embedded SQLite by default).
    Up(RunArgs),
    /// Start the gateway only.
    Gateway(RunArgs),
    /// Start the collaboration backend only.
    Collab(RunArgs),
    /// Check a config file (and load its plugins) without starting anything.
    Validate {
        /// The config file to check.
        file: PathBuf,
    },
    /// Manage API consumers through a running gateway's admin API.
    Consumers(keys::ConsumersArgs),
    /// Manage API keys through a running gateway's admin API.
    Keys(keys::KeysArgs),
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Config file.
    #[arg(long, short, default_value = "config/aistack.yaml")]
    pub config: PathBuf,
    /// Data directory (SQLite database, files); created if missing.
    #[arg(long, default_value = "data")]
    pub data_dir: PathBuf,
    /// Replace the aistack serving from the same data directory without refusing a
    /// connection: take over its listening sockets (Pingora's graceful upgrade), then it
    /// drains and exits. Linux only; `gateway` and `up` only.
    #[arg(long)]
    pub upgrade: bool,
}
