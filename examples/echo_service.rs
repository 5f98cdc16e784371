//! A Rust service that BEAM code can call with `gen_server:call`.
//!
//! # Usage
//!
//! ```sh
//! cargo run --example echo_service -- svc SECRET
//! ```
//!
//! then, from `erl -sname x -setcookie SECRET`:
//!
//! ```erlang
//! pong = net_adm:ping('svc@yourhost').
//! {you_said, hi} = gen_server:call({echo_service, 'svc@yourhost'}, hi).
//! %% Answered after T ms, each call on its own (a slow one holds up none):
//! {slept, 10} = gen_server:call({slow_service, 'svc@yourhost'}, 10).
//! ```

use cpg_node::config::{Cookie, NodeConfig, NodeName};
use cpg_node::term::{atom, tuple};
use cpg_node::Node;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // The node's own runtime (see the README's "As a library").
    cpg_node::runtime::build(None)?.block_on(serve())
}

async fn serve() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let name = args.next().unwrap_or_else(|| "svc".into());
    let cookie = args.next().unwrap_or_else(|| "cookie".into());
    let mut config = NodeConfig::new(NodeName::from_cli(&name, false)?, Cookie::new(cookie));
    config.epmd_port = cpg_node::epmd::port_from_env()?; // ERL_EPMD_PORT, as erl
    let node = Node::start(config).await?;
    println!("{} serving echo_service; Ctrl-C to stop", node.name());
    let mut p = node.spawn_registered("echo_service")?;
    // Replies go to the caller's alias (OTP 24+), so a caller that timed
    // out gets no late reply in its mailbox.
    let server = tokio::spawn(async move {
        p.serve_calls(|_, req| tuple(vec![atom("you_said"), req.clone()]))
            .await
    });
    // A server whose answers take async work: each call is a task of its
    // own, replying when done (`Process::sender` does the same by hand).
    let mut slow = node.spawn_registered("slow_service")?;
    let slow_server = tokio::spawn(async move {
        slow.serve_calls_async(
            |req| async move {
                let ms = cpg_node::term::as_int(&req).unwrap_or(0).clamp(0, 60_000);
                tokio::time::sleep(std::time::Duration::from_millis(ms as u64)).await;
                tuple(vec![atom("slept"), req])
            },
            |_, _| {},
        )
        .await
    });
    tokio::signal::ctrl_c().await?;
    server.abort();
    slow_server.abort();
    node.shutdown().await;
    Ok(())
}
