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
    tokio::signal::ctrl_c().await?;
    server.abort();
    node.shutdown().await;
    Ok(())
}
