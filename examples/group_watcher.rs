//! Watches the cluster's cpg groups: prints the groups once synced, then
//! every join and leave as cpg's callbacks would see it.
//!
//! # Usage
//!
//! ```sh
//! cargo run --example group_watcher -- watcher SECRET app@yourhost
//! ```
//!
//! then join and leave groups on the BEAM side (`cpg:join("g", self())`).

use cpg_node::config::{Cookie, NodeConfig, NodeName};
use cpg_node::cpg::{CpgScope, ScopeOptions, DEFAULT_SCOPE};
use cpg_node::node::cluster::{Cluster, ClusterOptions};
use cpg_node::term::pid_text;
use cpg_node::Node;
use std::time::Duration;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // The node's own runtime (see the README's "As a library").
    cpg_node::runtime::build(None)?.block_on(watch())
}

async fn watch() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let name = args.next().unwrap_or_else(|| "watcher".into());
    let cookie = args.next().unwrap_or_else(|| "cookie".into());
    let seed = args
        .next()
        .ok_or("usage: group_watcher NAME COOKIE SEED_NODE")?;
    let mut config = NodeConfig::new(NodeName::from_cli(&name, false)?, Cookie::new(cookie));
    config.epmd_port = cpg_node::epmd::port_from_env()?; // ERL_EPMD_PORT, as erl
    let node = Node::start(config).await?;
    let scope = CpgScope::start(&node, ScopeOptions::new(DEFAULT_SCOPE))?;
    let mut events = scope.subscribe();
    // The seed first, to stop with its reason when it cannot be reached.
    node.connect(&seed).await?;
    // Then keep it, and follow the nodes it knows: a hidden node is told of
    // no other node, and sees only the members of the nodes it is
    // connected to (hidden ones, such as other cpg-node instances,
    // included here).
    let mut opts = ClusterOptions::new(vec![seed.clone()]);
    opts.discover_hidden = true;
    let cluster = Cluster::start(&node, opts);
    scope.refresh().await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    eprintln!(
        "{} watching the cpg groups of {seed} and the nodes it knows; Ctrl-C to stop",
        node.name()
    );
    // The events of what the listing below shows (the seed's state came
    // in as joins): dropped, so that only later changes are printed.
    use tokio::sync::broadcast::error::TryRecvError;
    while !matches!(
        events.try_recv(),
        Err(TryRecvError::Empty | TryRecvError::Closed)
    ) {}
    if scope.which_groups().is_empty() {
        println!("(no groups yet)");
    }
    print_groups(&scope);
    use tokio::sync::broadcast::error::RecvError;
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break,
            e = events.recv() => match e {
                Ok(e) => println!("{} {} {}", e.group, pid_text(&e.pid), e.reason),
                // Behind by more events than the stream keeps (a burst):
                // the groups as they are now, then on.
                Err(RecvError::Lagged(n)) => {
                    eprintln!("missed {n} events; the groups now:");
                    print_groups(&scope);
                }
                Err(RecvError::Closed) => break,
            },
        }
    }
    drop(cluster);
    node.shutdown().await;
    Ok(())
}

/// Every group of `scope` with its members, newest first.
fn print_groups(scope: &CpgScope) {
    for g in scope.which_groups() {
        if let Ok((_, pids)) = scope.get_members(&g) {
            println!(
                "{g}: {}",
                pids.iter()
                    .map(|p| p.to_string())
                    .collect::<Vec<_>>()
                    .join(" ")
            );
        }
    }
}
