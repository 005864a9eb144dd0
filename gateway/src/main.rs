//! `aistack`: parse the command line, hand over to the server.

use clap::Parser;

use aistack_gateway::cli::{Cli, Command};
use aistack_gateway::server::{self, Mode};

/// mimalloc rather than glibc's allocator: the proxy allocates per request (headers,
/// buffers) from several threads, where glibc's malloc showed up as a fifth of the CPU.
/// Built with `no_thp` (see the workspace manifest): mimalloc otherwise asks for
/// transparent huge pages, and the first touch of each 2 MiB region is zeroed whole, on
/// the request's time.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Up(args) => server::run(Mode::Up, &args.config, &args.data_dir, args.upgrade),
        Command::Gateway(args) => {
            server::run(Mode::Gateway, &args.config, &args.data_dir, args.upgrade)
        }
        Command::Collab(args) => {
            server::run(Mode::Collab, &args.config, &args.data_dir, args.upgrade)
        }
        Command::Validate { file } => server::validate(&file),
        Command::Consumers(args) => aistack_gateway::cli::keys::consumers(&args),
        Command::Keys(args) => aistack_gateway::cli::keys::keys(&args),
    }
}
