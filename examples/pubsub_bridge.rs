//! Bridges one Phoenix.PubSub topic to stdout and stdin: every broadcast to
//! the topic is printed as a line (Erlang syntax); every line typed is
//! broadcast to the topic (an Erlang term where the line is one, such as
//! `{new_msg, <<"hi">>}`, else the line as a binary).
//!
//! # Usage
//!
//! ```sh
//! cargo run --example pubsub_bridge -- bridge SECRET app@yourhost MyApp.PubSub room:1
//! ```
//!
//! then on the Elixir node: `Phoenix.PubSub.subscribe(MyApp.PubSub, "room:1")`
//! and `Phoenix.PubSub.broadcast(MyApp.PubSub, "room:1", {:hello, 1})`.

use cpg_node::config::{Cookie, NodeConfig, NodeName};
use cpg_node::cpg::TermName;
use cpg_node::pg::PgScope;
use cpg_node::pubsub::{self, PubSub};
use cpg_node::term::{self, parse::parse_term};
use cpg_node::Node;
use std::time::Duration;
use tokio::io::AsyncBufReadExt;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // The node's own runtime (see the README's "As a library").
    cpg_node::runtime::build(None)?.block_on(bridge())
}

async fn bridge() -> Result<(), Box<dyn std::error::Error>> {
    let usage = "usage: pubsub_bridge NAME COOKIE SEED_NODE PUBSUB TOPIC";
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [name, cookie, seed, instance, topic] = args.as_slice() else {
        return Err(usage.into());
    };
    let mut config = NodeConfig::new(
        NodeName::from_cli(name, false)?,
        Cookie::new(cookie.clone()),
    );
    config.epmd_port = cpg_node::epmd::port_from_env()?; // ERL_EPMD_PORT, as erl
    let node = Node::start(config).await?;
    let scope = PgScope::start(&node, pubsub::SCOPE)?;
    node.connect(seed).await?;
    // The seed's scope answers our discover with its groups: the pool size.
    let adapter = pubsub::adapter_name(instance);
    for _ in 0..50 {
        if pubsub::seen_pool_size(&scope, &adapter) > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let pool = pubsub::seen_pool_size(&scope, &adapter).max(1);
    let naming = pubsub::seen_naming(&scope, &adapter);
    let ps = PubSub::new(scope, instance, pool, naming);
    let mut sub = ps.subscribe(&node, &[topic.as_bytes()]).await?;
    let from = node.spawn_process();
    let mut stdin = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    eprintln!("bridging {topic} of {instance} (pool of {pool}); type a term to broadcast it");
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break,
            b = sub.recv() => match b {
                Ok(b) => println!("{}", TermName::new(b.msg)),
                Err(_) => break,
            },
            line = stdin.next_line() => match line? {
                Some(l) if !l.trim().is_empty() => {
                    let msg = parse_term(&l).unwrap_or_else(|_| term::binary(l.into_bytes()));
                    ps.broadcast(&from, topic.as_bytes(), msg);
                }
                Some(_) => {}
                None => break,
            },
        }
    }
    node.shutdown().await;
    Ok(())
}
