//! `cpg-node`: the command line. Thin: parses arguments, sets up logging,
//! starts a [`cpg_node::Node`] and runs a subcommand until SIGINT/SIGTERM.

mod cli;
mod demo;

use anyhow::Result;
use clap::Parser;

/// mimalloc returns freed pages to the OS, so the node's memory goes back
/// near idle after a burst (glibc's per-thread arenas keep what they had).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> Result<()> {
    let args = cli::Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let code = cli::run(args).await?;
    std::process::exit(code);
}
