//! The `cpg-node` commands for OTP pg (`run --pg-scope/--pg-join`,
//! `pg-members`, `pg-groups`, `pg-watch`) and Phoenix.PubSub (`pubsub
//! subscribe`, `pubsub broadcast`).

use crate::cli::echo::{keep_echo, Role};
use crate::cli::user_error;
use crate::cli::{
    client_config, connect_seeds_peers, peer_name, scope_nodes, start, wait_for_signal, NodeArgs,
    PgClientArgs, PgRunArgs, PubsubCmd,
};
use anyhow::{Context, Result};
use cpg_node::cpg::TermName;
use cpg_node::pg::{PgScope, DEFAULT_PG_SCOPE};
use cpg_node::term::{self, Pid};
use cpg_node::Node;
use std::time::Duration;

/// A group name typed on the command line: the Erlang term it spells
/// (`my_group`, `"s"`, `{a,1}`, `<<"b">>`), else the atom of the text.
pub fn group_name(text: &str) -> TermName {
    match term::parse::parse_term(text) {
        Ok(t) => TermName::new(t),
        Err(_) => TermName::atom(text),
    }
}

fn scope_names(given: &[String]) -> Vec<String> {
    if given.is_empty() {
        vec![DEFAULT_PG_SCOPE.to_string()]
    } else {
        given.to_vec()
    }
}

/// `run`'s pg scopes, with an echo process joined to every `--pg-join`
/// group in each.
pub async fn start_run(node: &Node, a: &PgRunArgs) -> Result<Vec<PgScope>> {
    if a.pg_scopes.is_empty() && a.pg_join.is_empty() {
        return Ok(vec![]);
    }
    let scopes: Vec<PgScope> = scope_names(&a.pg_scopes)
        .iter()
        .map(|n| PgScope::start(node, n).with_context(|| format!("starting pg scope {n}")))
        .collect::<Result<_>>()?;
    if !a.pg_join.is_empty() {
        let groups = a.pg_join.iter().map(|g| group_name(g)).collect();
        let pid = keep_echo(node, Role::Pg(scopes.clone(), groups))
            .await
            .map_err(anyhow::Error::msg)?;
        tracing::info!(
            "echo process {} joined pg groups {:?}",
            term::pid_text(&pid),
            a.pg_join
        );
    }
    Ok(scopes)
}

/// A short-lived node: starts the scopes, connects to the seeds and their
/// peers (where the pg scopes are), and waits until every connected
/// node's scope has answered (at most 3 s) and the view settles.
async fn client(args: &NodeArgs, c: &PgClientArgs) -> Result<(Node, Vec<PgScope>)> {
    connect_scopes(args, &scope_names(&c.pg_scopes), &c.connect).await
}

/// [`client`] for the scopes `names` and the seeds `connect`.
async fn connect_scopes(
    args: &NodeArgs,
    names: &[String],
    connect: &[String],
) -> Result<(Node, Vec<PgScope>)> {
    for peer in connect {
        peer_name(peer)?;
    }
    let default = format!("pg_cli_{}", std::process::id());
    let node = start(client_config(args, &default)?).await?;
    let scopes: Vec<PgScope> = names
        .iter()
        .map(|n| PgScope::start(&node, n).with_context(|| format!("starting pg scope {n}")))
        .collect::<Result<_>>()?;
    for peer in connect {
        node.connect(peer)
            .await
            .with_context(|| format!("cannot connect to {peer}"))?;
    }
    // Hidden peers too: another cpg-node's members are known only to its
    // own scope (a BEAM scope's sync lists its own node's members).
    connect_seeds_peers(&node, connect).await;
    // Wait only for the nodes that run each scope: a node without it never
    // answers.
    let mut running = Vec::with_capacity(scopes.len());
    for s in &scopes {
        running.push(scope_nodes(&node, "pg", s.name()).await);
    }
    let answered = |scopes: &[PgScope]| {
        scopes
            .iter()
            .zip(&running)
            .all(|(s, nodes)| nodes.iter().all(|n| s.read(|st| st.has_peer_on(n))))
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
    while !answered(&scopes) && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Settled: no change in the total membership for 200 ms (at most 2 s).
    let total = |scopes: &[PgScope]| -> usize {
        scopes
            .iter()
            .map(|s| s.read(|st| st.snapshot().values().map(Vec::len).sum::<usize>()))
            .sum()
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
    let mut last = usize::MAX;
    while tokio::time::Instant::now() < deadline {
        let now = total(&scopes);
        if now == last {
            break;
        }
        last = now;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Ok((node, scopes))
}

fn pid_texts(pids: &[Pid]) -> Vec<String> {
    pids.iter().map(term::pid_text).collect()
}

fn print_group(scope: &PgScope, group: &TermName, pids: &[Pid], json: bool) {
    let local = scope.get_local_members(group);
    if json {
        outln!(
            "{}",
            serde_json::json!({
                "scope": scope.name(), "group": group.to_string(), "pids": pid_texts(pids),
                "local": pid_texts(&local),
            })
        );
    } else {
        outln!("{} {group}: {}", scope.name(), pid_texts(pids).join(" "));
    }
}

/// `pg-members GROUP`: one line per scope (an empty list where the group
/// has no member: pg has no empty groups, `pg:get_members` says `[]`).
pub async fn members(args: &NodeArgs, c: &PgClientArgs, group: &str) -> Result<i32> {
    let (node, scopes) = client(args, c).await?;
    let g = group_name(group);
    for s in &scopes {
        print_group(s, &g, &s.get_members(&g), c.json);
    }
    node.shutdown().await;
    Ok(0)
}

fn print_all(scopes: &[PgScope], json: bool) {
    for s in scopes {
        for (g, pids) in s.read(|st| st.snapshot()) {
            print_group(s, &g, &pids, json);
        }
    }
}

/// `pg-groups`: every group of every scope with its members.
pub async fn groups(args: &NodeArgs, c: &PgClientArgs) -> Result<i32> {
    let (node, scopes) = client(args, c).await?;
    print_all(&scopes, c.json);
    node.shutdown().await;
    Ok(0)
}

/// `pg-watch`: the groups, then every join and leave, until stopped.
pub async fn watch(args: &NodeArgs, c: &PgClientArgs) -> Result<i32> {
    let (node, scopes) = client(args, c).await?;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    for s in &scopes {
        // Subscribed with the snapshot printed: no change is lost or
        // printed twice.
        let (snapshot, mut mon) = s.monitor_scope();
        for (g, pids) in snapshot {
            print_group(s, &g, &pids, c.json);
        }
        let (tx, name) = (tx.clone(), s.name().to_string());
        tokio::spawn(async move {
            loop {
                match mon.recv().await {
                    Ok(e) => {
                        if tx.send((name.clone(), e)).is_err() {
                            break;
                        }
                    }
                    Err(cpg_node::pg::MonitorError::Lagged(n)) => {
                        errln!("cpg-node: missed {n} events of scope {name}");
                    }
                    Err(_) => break,
                }
            }
        });
    }
    // Nodes that connect later are discovered by the scopes themselves.
    let _keep = cpg_node::node::cluster::Cluster::start(
        &node,
        cpg_node::node::cluster::ClusterOptions::new(c.connect.clone()),
    );
    let stop = wait_for_signal();
    errln!(
        "cpg-node: watching pg scope {} on {}; Ctrl-C to stop",
        scopes
            .iter()
            .map(|s| s.name())
            .collect::<Vec<_>>()
            .join(", "),
        node.peers().join(", ")
    );
    tokio::pin!(stop);
    while !super::report::stdout_gone() {
        tokio::select! {
            _ = &mut stop => break,
            Some((scope, e)) = rx.recv() => {
                let pids = pid_texts(&e.pids);
                if c.json {
                    outln!("{}", serde_json::json!({
                        "scope": scope, "group": e.group.to_string(), "event": e.kind.as_str(), "pids": pids,
                    }));
                } else {
                    outln!("{scope} {} {} {}", e.kind.as_str(), e.group, pids.join(" "));
                }
            }
        }
    }
    node.shutdown().await;
    Ok(0)
}

/// `pubsub subscribe` and `pubsub broadcast`.
pub async fn pubsub(args: &NodeArgs, cmd: PubsubCmd) -> Result<i32> {
    use cpg_node::pubsub::{self, Naming, PubSub};
    let (PubsubCmd::Subscribe { args: p, .. } | PubsubCmd::Broadcast { args: p, .. }) = &cmd;
    let p = p.clone();
    let (node, scopes) = connect_scopes(args, &[pubsub::SCOPE.to_string()], &p.connect).await?;
    let scope = scopes[0].clone();
    let adapter = pubsub::adapter_name(&p.pubsub);
    let seen = pubsub::seen_pool_size(&scope, &adapter);
    let pool = p.pool_size.unwrap_or(seen).max(1);
    let naming = match p.naming.as_str() {
        "2.1.0" => Naming::V2_1_0,
        "current" => Naming::Current,
        _ => pubsub::seen_naming(&scope, &adapter),
    };
    let ps = PubSub::new(scope, &p.pubsub, pool, naming);
    match cmd {
        PubsubCmd::Broadcast {
            topic, term: text, ..
        } => {
            let msg = term::parse::parse_term(&text)
                .map_err(|e| user_error("bad_term", format!("{text:?}: {e}")))?;
            let from = node.spawn_process();
            let sent = ps.broadcast(&from, topic.as_bytes(), msg);
            // Shutdown flushes what is queued for each peer.
            node.shutdown().await;
            if sent.is_empty() {
                return Err(user_error(
                    "no_subscribers",
                    format!(
                        "no member of {} on any connected node: is {} running there?",
                        ps.groups()[0],
                        p.pubsub
                    ),
                ));
            }
            let nodes: Vec<&str> = sent.iter().map(|p| p.node.name.as_str()).collect();
            if p.json {
                outln!("{}", serde_json::json!({ "topic": topic, "nodes": nodes }));
            } else {
                outln!("sent to {}", nodes.join(" "));
            }
            Ok(0)
        }
        PubsubCmd::Subscribe { topics, .. } => {
            let t: Vec<&[u8]> = topics.iter().map(|t| t.as_bytes()).collect();
            let mut sub = ps.subscribe(&node, &t).await?;
            let _keep = cpg_node::node::cluster::Cluster::start(
                &node,
                cpg_node::node::cluster::ClusterOptions::new(p.connect.clone()),
            );
            let stop = wait_for_signal();
            errln!(
                "cpg-node: subscribed to {} on {} (pool of {pool}: {}); Ctrl-C to stop",
                if topics.is_empty() {
                    "every topic".to_string()
                } else {
                    topics.join(", ")
                },
                p.pubsub,
                ps.groups()
                    .iter()
                    .map(|g| g.to_string())
                    .collect::<Vec<_>>()
                    .join(", "),
            );
            tokio::pin!(stop);
            while !super::report::stdout_gone() {
                tokio::select! {
                    _ = &mut stop => break,
                    b = sub.recv() => match b {
                        Ok(b) => {
                            let topic = String::from_utf8_lossy(&b.topic);
                            let msg = TermName::new(b.msg).to_string();
                            if p.json {
                                outln!("{}", serde_json::json!({
                                    "topic": topic, "msg": msg, "dispatcher": b.dispatcher,
                                }));
                            } else {
                                outln!("{} {msg}", super::show::plain(&topic));
                            }
                        }
                        Err(reason) => {
                            node.shutdown().await;
                            anyhow::bail!("the subscriber process ended: {reason}");
                        }
                    },
                }
            }
            node.shutdown().await;
            Ok(0)
        }
    }
}
