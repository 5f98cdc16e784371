//! `cpg-node`: the command line. Thin: parses arguments, sets up logging,
//! starts a [`cpg_node::Node`] and runs a subcommand until SIGINT/SIGTERM.
//!
//! Errors are printed once, as one line (`error: ...` on stderr, or under
//! `--json` a `{"error": ..., "kind": ...}` object on stdout), with a
//! non-zero exit: never as a log line plus an `Error:` report with a
//! backtrace.

mod cli;

use clap::Parser;
use std::io::IsTerminal;

/// mimalloc returns freed pages to the OS, so the node's memory goes back
/// near idle after a burst (glibc's per-thread arenas keep what they had).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    // The node's runtime, with its watchdog (`cpg_node::runtime`).
    let rt = match cpg_node::runtime::build(None) {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            std::process::exit(1);
        }
    };
    rt.block_on(run());
}

async fn run() {
    let argv = cli::erlang_style_args(std::env::args_os());
    let args = match cli::Cli::try_parse_from(&argv) {
        Ok(a) => a,
        // Under --json a usage error is a JSON object too (help and
        // --version are printed by clap as usual).
        Err(e) if e.use_stderr() && argv.iter().any(|a| a == "--json") => {
            // clap's message without its usage and help lines, on one line.
            let text = e.render().to_string();
            let msg: Vec<&str> = text
                .lines()
                .take_while(|l| !l.trim().is_empty())
                .map(|l| l.trim().trim_start_matches("error: "))
                .collect();
            let msg = msg.join(" ");
            println!("{}", serde_json::json!({ "error": msg, "kind": "usage" }));
            std::process::exit(2);
        }
        Err(e) => e.exit(),
    };
    let json = args.json();
    // RUST_LOG overrides; else one-shot commands log warnings only (their
    // own failures come back as the command's error, so the node's log line
    // for a failed dial would say it twice) and `run` logs at info.
    // A RUST_LOG that does not parse is said, not silently replaced.
    let filter = match std::env::var("RUST_LOG") {
        Ok(spec) if !spec.trim().is_empty() => {
            // A filter naming the binary (`cpg-node=debug`) parses, names
            // no target there is, and turns every other line off, warnings
            // and errors included.
            if spec.contains("cpg-node") {
                cli::err_line(format_args!(
                    "warning: RUST_LOG={spec:?} names cpg-node: the log targets are cpg_node::... (with an underscore), e.g. RUST_LOG=cpg_node=debug"
                ));
            }
            tracing_subscriber::EnvFilter::try_new(&spec).unwrap_or_else(|e| {
                cli::err_line(format_args!(
                    "warning: RUST_LOG={spec:?} is not a log filter ({e}); logging at the default level ({})",
                    args.cmd.default_log()
                ));
                tracing_subscriber::EnvFilter::new(args.cmd.default_log())
            })
        }
        _ => tracing_subscriber::EnvFilter::new(args.cmd.default_log()),
    };
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(|| cli::LogWriter)
        .with_ansi(std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none())
        .init();
    let code = match cli::run(args).await {
        Ok(code) => code,
        Err(e) => cli::report(&e, json),
    };
    std::process::exit(code);
}
