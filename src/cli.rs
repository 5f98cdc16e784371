//! Subcommands of the `cpg-node` binary.

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};
use cpg_node::config::{default_cookie, Cookie, NodeConfig, NodeName};
use cpg_node::cpg::{BeamNodeType, CpgScope, MemberPid, ScopeOptions, DEFAULT_SCOPE};
use cpg_node::node::cluster::{Cluster, ClusterOptions, NodePattern};
use cpg_node::process::{parse_call, Process, Signal};
use cpg_node::term::{self, atom, Term};
use cpg_node::Node;
use std::time::Duration;

/// A hidden Erlang node in Rust that takes part in cpg process groups.
#[derive(Parser, Debug)]
#[command(version, about)]
pub struct Cli {
    #[command(flatten)]
    pub node: NodeArgs,
    #[command(subcommand)]
    pub cmd: Cmd,
}

/// Options shared by every subcommand.
#[derive(Args, Debug, Clone)]
pub struct NodeArgs {
    /// Node name: `name` (this host is added) or `name@host`.
    #[arg(long, global = true)]
    pub name: Option<String>,
    /// Cluster cookie (default: $HOME/.erlang.cookie).
    #[arg(long, global = true, env = "CPG_NODE_COOKIE", hide_env_values = true)]
    pub cookie: Option<String>,
    /// Use long names (name@fully.qualified.host).
    #[arg(long, global = true)]
    pub long_names: bool,
    /// net_ticktime in seconds.
    #[arg(long, global = true, default_value_t = 60)]
    pub net_ticktime: u64,
}

/// What to do.
#[derive(Subcommand, Debug)]
pub enum Cmd {
    /// Run the node until SIGINT/SIGTERM.
    Run {
        /// Seed nodes: connected at start and redialled whenever lost, for
        /// as long as the node runs (repeatable).
        #[arg(long)]
        connect: Vec<String>,
        /// Connect only to discovered nodes whose name matches this pattern
        /// (`*` any run of characters, `?` one; repeatable).
        #[arg(long)]
        only: Vec<String>,
        /// How often to ask the seeds for the cluster's nodes (ms); 0 turns
        /// discovery off.
        #[arg(long, default_value_t = 10_000)]
        discover_interval_ms: u64,
        /// Start an echo process registered under this name (repeatable).
        #[arg(long)]
        register: Vec<String>,
        #[command(flatten)]
        cpg: CpgArgs,
        /// Join an echo process to this group in every scope (repeat a
        /// group to join it several times; patterns such as "a/*" allowed).
        #[arg(long)]
        join: Vec<String>,
    },
    /// Print the members of a group as the cluster's cpg scopes see them.
    Members {
        /// The group name (a pattern group is found as cpg finds it).
        group: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Print every group with its members.
    Groups {
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Stream join/leave events until stopped.
    Watch {
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Ping a node: prints pong (exit 0) or pang (exit 1).
    Ping {
        /// The node.
        node: String,
    },
    /// A local demo: starts what it needs on loopback, shows the node at work.
    Demo,
}

/// Options of the commands that read the cluster's groups.
#[derive(Args, Debug, Clone)]
pub struct ClientArgs {
    #[command(flatten)]
    pub cpg: CpgArgs,
    /// Nodes to ask.
    #[arg(long, required = true)]
    pub connect: Vec<String>,
    /// One JSON object per line.
    #[arg(long)]
    pub json: bool,
}

/// cpg options.
#[derive(Args, Debug, Clone)]
pub struct CpgArgs {
    /// cpg scope to take part in (repeatable; default cpg_default_scope).
    #[arg(long = "scope")]
    pub scopes: Vec<String>,
    /// node_type of the BEAM cpg scopes: `all` (the Rust node is a full
    /// peer) or `visible` (cpg's default: publish by casts, poll for state).
    #[arg(long, default_value = "all", value_parser = ["all", "visible"])]
    pub beam_node_type: String,
    /// In visible mode, how often to ask each BEAM scope for its state (ms).
    #[arg(long, default_value_t = 5000)]
    pub poll_interval_ms: u64,
}

impl CpgArgs {
    fn start(&self, node: &Node) -> Result<Vec<CpgScope>> {
        let names = if self.scopes.is_empty() {
            vec![DEFAULT_SCOPE.to_string()]
        } else {
            self.scopes.clone()
        };
        names
            .iter()
            .map(|n| {
                let mut o = ScopeOptions::new(n);
                o.beam_node_type = if self.beam_node_type == "visible" {
                    BeamNodeType::Visible
                } else {
                    BeamNodeType::All
                };
                o.poll_interval = Duration::from_millis(self.poll_interval_ms.max(10));
                Ok(CpgScope::start(node, o)?)
            })
            .collect()
    }
}

pub(crate) fn config(a: &NodeArgs, default_name: &str) -> Result<NodeConfig> {
    let name = NodeName::from_cli(a.name.as_deref().unwrap_or(default_name), a.long_names)?;
    let cookie = match &a.cookie {
        Some(c) => Cookie::new(c.clone()),
        None => {
            default_cookie().context("no --cookie given and $HOME/.erlang.cookie unreadable")?
        }
    };
    let mut c = NodeConfig::new(name, cookie);
    c.epmd_port = cpg_node::epmd::port_from_env();
    c.net_ticktime = Duration::from_secs(a.net_ticktime.max(1));
    Ok(c)
}

/// Runs a subcommand; returns the exit code.
pub async fn run(cli: Cli) -> Result<i32> {
    match cli.cmd {
        Cmd::Run {
            connect,
            only,
            discover_interval_ms,
            register,
            cpg,
            join,
        } => {
            let node = Node::start(config(&cli.node, "cpg_node")?).await?;
            for name in &register {
                spawn_echo(node.spawn_registered(name)?);
                tracing::info!("echo process registered as {name}");
            }
            let scopes = cpg.start(&node)?;
            if !join.is_empty() {
                let member = node.spawn_process();
                let pid = member.pid().clone();
                spawn_echo(member);
                for scope in &scopes {
                    for g in &join {
                        scope
                            .join(g, &pid)
                            .await
                            .with_context(|| format!("joining {g:?} in scope {}", scope.name()))?;
                    }
                }
                tracing::info!("echo process {} joined {join:?}", term::pid_text(&pid));
            }
            let mut opts = ClusterOptions::new(connect.clone());
            opts.only = only.into_iter().map(NodePattern::new).collect();
            opts.discover = discover_interval_ms > 0;
            opts.discover_interval = Duration::from_millis(discover_interval_ms.max(100));
            let _cluster = Cluster::start(&node, opts);
            // Say how the first attempt went; the keeper retries either way.
            for peer in &connect {
                match node.connect(peer).await {
                    Ok(()) => tracing::info!("connected to {peer}"),
                    Err(e) => tracing::warn!("cannot connect to {peer} yet: {e}; retrying"),
                }
            }
            println!("{} running (hidden); Ctrl-C to stop", node.name());
            wait_for_signal().await;
            node.shutdown().await;
            Ok(0)
        }
        Cmd::Ping { node: target } => {
            let default = format!("ping_{}", std::process::id());
            let node = Node::start(config(&cli.node, &default)?).await?;
            let pong = node.ping(&target).await;
            println!("{}", if pong { "pong" } else { "pang" });
            node.shutdown().await;
            Ok(if pong { 0 } else { 1 })
        }
        Cmd::Members { group, client } => {
            let json = client.json;
            let (node, scopes) = cpg_client(&cli.node, &client).await?;
            let mut found = false;
            for s in &scopes {
                match s.read(|st| {
                    st.get_members(&group, None).map(|(k, v)| {
                        let local = st
                            .get_local_members(&group, None)
                            .map(|x| x.1)
                            .unwrap_or_default();
                        (k.to_string(), v, local)
                    })
                }) {
                    Ok((key, pids, local)) => {
                        found = true;
                        print_group(s.name(), &group, &key, &pids, &local, json);
                    }
                    Err(e) if !json => println!("{}: {e:?}", s.name()),
                    Err(_) => {}
                }
            }
            node.shutdown().await;
            Ok(if found { 0 } else { 1 })
        }
        Cmd::Groups { client } => {
            let json = client.json;
            let (node, scopes) = cpg_client(&cli.node, &client).await?;
            for s in &scopes {
                let rows: Vec<(String, Vec<MemberPid>, Vec<MemberPid>)> = s.read(|st| {
                    st.which_groups()
                        .into_iter()
                        .map(|g| {
                            let all = st
                                .group(&g)
                                .map(|d| d.history().cloned().collect())
                                .unwrap_or_default();
                            let local = st
                                .group(&g)
                                .map(|d| d.local().cloned().collect())
                                .unwrap_or_default();
                            (g, all, local)
                        })
                        .collect()
                });
                for (g, all, local) in rows {
                    print_group(s.name(), &g, &g, &all, &local, json);
                }
            }
            node.shutdown().await;
            Ok(0)
        }
        Cmd::Watch { client } => {
            let json = client.json;
            let (node, scopes) = cpg_client(&cli.node, &client).await?;
            let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
            for s in &scopes {
                let mut events = s.subscribe();
                let (tx, name) = (tx.clone(), s.name().to_string());
                tokio::spawn(async move {
                    while let Ok(e) = events.recv().await {
                        if tx.send((name.clone(), e)).is_err() {
                            break;
                        }
                    }
                });
            }
            let stop = wait_for_signal();
            tokio::pin!(stop);
            loop {
                tokio::select! {
                    _ = &mut stop => break,
                    Some((scope, e)) = rx.recv() => {
                        let pid = term::pid_text(&e.pid);
                        if json {
                            println!("{}", serde_json::json!({
                                "scope": scope, "group": e.group, "pid": pid, "event": e.reason.to_string(),
                            }));
                        } else {
                            println!("{scope} {} {pid} {}", e.group, e.reason);
                        }
                    }
                }
            }
            node.shutdown().await;
            Ok(0)
        }
        Cmd::Demo => crate::demo::demo(cli.node).await,
    }
}

/// A short-lived node for `members`/`groups`/`watch`: starts the scopes,
/// connects, asks every scope for its state and waits until it settles.
async fn cpg_client(args: &NodeArgs, client: &ClientArgs) -> Result<(Node, Vec<CpgScope>)> {
    let connect = &client.connect;
    let default = format!("cpg_cli_{}", std::process::id());
    let node = Node::start(config(args, &default)?).await?;
    let scopes = client.cpg.start(&node)?;
    for peer in connect {
        node.connect(peer)
            .await
            .with_context(|| format!("connecting to {peer}"))?;
    }
    // A hidden node sees only the members of nodes it is connected to (cpg's
    // merge drops the others), so also connect to every node the seeds are
    // connected to, hidden ones included.
    for seed in connect {
        let rpc = node.rpc(
            seed,
            "erlang",
            "nodes",
            vec![atom("connected")],
            Duration::from_secs(5),
        );
        if let Ok(Term::List(l)) = rpc.await {
            for n in l.elements.iter().filter_map(term::as_atom) {
                if n != node.name() && !n.contains("_script_process") {
                    if let Err(e) = node.connect(n).await {
                        tracing::debug!("cannot reach {n}: {e}");
                    }
                }
            }
        }
    }
    for s in &scopes {
        s.refresh().await?;
    }
    // Settled: no change in the total membership for 300 ms (at most 5 s).
    let total = |scopes: &[CpgScope]| -> usize {
        scopes
            .iter()
            .map(|s| {
                s.read(|st| {
                    st.which_groups()
                        .iter()
                        .filter_map(|g| st.group(g).map(|d| d.len()))
                        .sum::<usize>()
                })
            })
            .sum()
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    let mut last = usize::MAX;
    while tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let now = total(&scopes);
        if now == last {
            break;
        }
        last = now;
    }
    Ok((node, scopes))
}

fn print_group(
    scope: &str,
    group: &str,
    key: &str,
    pids: &[MemberPid],
    local: &[MemberPid],
    json: bool,
) {
    let text = |v: &[MemberPid]| v.iter().map(|p| term::pid_text(&p.0)).collect::<Vec<_>>();
    let remote: Vec<MemberPid> = pids
        .iter()
        .filter(|p| !local.contains(p))
        .cloned()
        .collect();
    if json {
        println!(
            "{}",
            serde_json::json!({
                "scope": scope, "group": group, "pattern": key, "pids": text(pids),
                "local": text(local), "remote": text(&remote),
            })
        );
    } else {
        let via = if key != group {
            format!(" (via {key})")
        } else {
            String::new()
        };
        println!("{scope} {group}{via}: {}", text(pids).join(" "));
    }
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = match signal(SignalKind::terminate()) {
            Ok(s) => s,
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
                return;
            }
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = tokio::signal::ctrl_c().await;
}

/// An echo process: `{From, Msg}` gets `Msg` back; a gen_server call gets
/// its request back as the reply.
pub fn spawn_echo(mut p: Process) {
    tokio::spawn(async move {
        while let Ok(s) = p.recv().await {
            let Signal::Message { msg, .. } = s else {
                continue;
            };
            if let Some((from, req)) = parse_call(&msg) {
                let req = req.clone();
                let _ = p.reply(&from, req);
                continue;
            }
            match term::as_tuple(&msg) {
                Some([Term::Pid(from), m]) => {
                    let _ = p.send(from.clone(), m.clone());
                }
                _ => tracing::debug!("echo: ignored {msg}"),
            }
        }
    });
}
