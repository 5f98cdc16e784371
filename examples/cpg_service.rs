//! A Rust service that joins a cpg group, so BEAM code finds it with
//! `cpg:get_closest_pid/1` and calls it with `gen_server:call`.
//!
//! # Usage
//!
//! ```sh
//! cargo run --example cpg_service -- svc SECRET app@yourhost
//! ```
//!
//! with, on the BEAM side, cpg as it comes (`ScopeOptions::new` asks each
//! BEAM node how its cpg runs; with its default `node_type` `visible` our
//! members are cast to it, with `all` the scopes exchange as peers):
//!
//! ```erlang
//! {ok, "jobs/*", Pid} = cpg:get_closest_pid("jobs/42").
//! {done, work} = gen_server:call(Pid, work).
//! ```

use cpg_node::config::{Cookie, NodeConfig, NodeName};
use cpg_node::cpg::{CpgScope, ScopeOptions, DEFAULT_SCOPE};
use cpg_node::term::{atom, tuple};
use cpg_node::Node;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // The node's own runtime: a long computation in one task (a scope
    // answering an absurd pattern lookup) does not hold up the others.
    cpg_node::runtime::build(None)?.block_on(serve())
}

async fn serve() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let name = args.next().unwrap_or_else(|| "svc".into());
    let cookie = args.next().unwrap_or_else(|| "cookie".into());
    let seed = args.next();
    let mut config = NodeConfig::new(NodeName::from_cli(&name, false)?, Cookie::new(cookie));
    config.epmd_port = cpg_node::epmd::port_from_env()?; // ERL_EPMD_PORT, as erl
    let node = Node::start(config).await?;
    let scope = CpgScope::start(&node, ScopeOptions::new(DEFAULT_SCOPE))?;
    let mut worker = node.spawn_process();
    scope.join("jobs/*", worker.pid()).await?;
    if let Some(seed) = seed {
        // The seed may still be starting: retry for a few seconds.
        let mut tries = 0;
        while let Err(e) = node.connect(&seed).await {
            tries += 1;
            if tries == 20 {
                return Err(e.into());
            }
            tokio::time::sleep(std::time::Duration::from_millis(250)).await;
        }
    }
    println!(
        "{} serving the cpg group \"jobs/*\"; Ctrl-C to stop",
        node.name()
    );
    let server = tokio::spawn(async move {
        worker
            .serve_calls(|_, req| tuple(vec![atom("done"), req.clone()]))
            .await
    });
    tokio::signal::ctrl_c().await?;
    server.abort();
    node.shutdown().await;
    Ok(())
}
