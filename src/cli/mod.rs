//! Subcommands of the `cpg-node` binary. Their arguments are in `args`,
//! how a failure is reported in `report`, what `status` and `groups`
//! print in `show`, the OTP pg and Phoenix.PubSub commands in `pg`, the
//! local demo in `demo`.

/// `println!` that drops the line when stdout is gone ([`report::out_line`])
/// rather than panic.
macro_rules! outln {
    () => {
        $crate::cli::report::out_line(format_args!(""))
    };
    ($($arg:tt)*) => {
        $crate::cli::report::out_line(format_args!($($arg)*))
    };
}

/// `eprintln!` that drops the line when stderr is gone
/// ([`report::err_line`]) rather than panic.
macro_rules! errln {
    ($($arg:tt)*) => {
        $crate::cli::report::err_line(format_args!($($arg)*))
    };
}

mod args;
mod demo;
mod echo;
mod pg;
mod report;
mod show;

pub use args::*;
pub use echo::spawn_echo;
use echo::{keep_echo, Role};
pub use report::report;
pub(crate) use report::user_error;
pub(crate) use report::{err_line, LogWriter};
use show::{group_rows, print_group, print_status, status_json};

use anyhow::{Context, Result};
use cpg_node::config::{default_cookie_or_create, ConfigError, Cookie, NodeConfig, NodeName};
use cpg_node::cpg::{BeamNodeType, CpgScope, ScopeOptions, DEFAULT_SCOPE};
use cpg_node::node::cluster::{Cluster, ClusterOptions, NodePattern};
use cpg_node::node::NodeEvent;
use cpg_node::process::{CallError, Dest, Signal};
use cpg_node::status::{self, AskError, NodeStatus, Status};
use cpg_node::term;
use cpg_node::Node;
use std::time::Duration;

impl CpgArgs {
    /// Starts the scopes asked for (the default scope if none).
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
                o.beam_node_type = match self.beam_node_type.as_str() {
                    "visible" => BeamNodeType::Visible,
                    "all" => BeamNodeType::All,
                    _ => BeamNodeType::Auto,
                };
                o.poll_interval = Duration::from_millis(self.poll_interval_ms.max(10));
                o.max_total_copies = self.max_total_copies;
                Ok(CpgScope::start(node, o)?)
            })
            .collect()
    }
}

pub(crate) fn config(a: &NodeArgs, default_name: &str) -> Result<NodeConfig> {
    let name = match &a.sname {
        Some(s) => NodeName::from_cli(s, false)?,
        None => NodeName::from_cli(a.name.as_deref().unwrap_or(default_name), a.long_names)?,
    };
    let cookie = match &a.cookie {
        Some(c) if c.is_empty() => {
            return Err(user_error(
                "usage",
                "the cookie is empty (--cookie, -setcookie or CPG_NODE_COOKIE)",
            ))
        }
        Some(c) => Cookie::new(c.clone()),
        None => {
            let (cookie, created) = default_cookie_or_create()?;
            if let Some(path) = created {
                errln!(
                    "cpg-node: no cookie given and no {} found: created it with a new random \
                     cookie, as erl does (every node of the cluster needs the same cookie)",
                    path.display()
                );
            }
            cookie
        }
    };
    let mut c = NodeConfig::new(name, cookie);
    c.epmd_port =
        cpg_node::epmd::port_from_env().map_err(|e| user_error("usage", e.to_string()))?;
    c.net_ticktime = Duration::from_secs(a.net_ticktime);
    c.listen_ports = a.dist_port_range.unwrap_or_default();
    c.listen_addr = a.dist_listen_addr;
    // (A string, so that an empty ERL_DIST_PORT, as templates leave it,
    // reads as unset.)
    let static_port = match a.erl_epmd_port.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(p) => Some(p.parse::<u16>().ok().filter(|&p| p > 0).ok_or_else(|| {
            user_error(
                "usage",
                format!("--erl-epmd-port (ERL_DIST_PORT): {p:?} is no port number (1-65535)"),
            )
        })?),
    };
    if let Some(p) = static_port {
        // Listening where the peers dial us, unless --dist-port-range says
        // otherwise (a one-shot command listens on any port:
        // `client_config`).
        c.epmd_less(p);
        if let Some(r) = a.dist_port_range {
            c.listen_ports = r;
        }
    }
    if let Some(us) = a.read_hold_us {
        c.read_hold = (us > 0).then(|| Duration::from_micros(us));
    }
    // The library's check is the one rule; the option is named for the CLI.
    c.check().map_err(|e| match e {
        ConfigError::TickTime(_) => user_error("usage", format!("--net-ticktime: {e}")),
        e => e.into(),
    })?;
    Ok(c)
}

/// [`config`] for a command that only asks the cluster something (`ping`,
/// `status`, `members`, `pg-groups`, `pubsub`, ...): it registers with the
/// EPMD that answers, but never starts one (nor fails without one), so
/// that it never owns an EPMD a longer-lived node registered with meanwhile
/// and would lose when the command exits.
pub(crate) fn client_config(a: &NodeArgs, default_name: &str) -> Result<NodeConfig> {
    let mut c = config(a, default_name)?;
    c.embedded_epmd = false;
    c.epmd_required = false;
    // EPMD-less: the port is the running node's; none dials a client.
    c.listen_ports = a.dist_port_range.unwrap_or_default();
    Ok(c)
}

/// Starts the node, saying which one failed to start.
pub(crate) async fn start(c: NodeConfig) -> Result<Node> {
    let name = c.name.to_string();
    Node::start(c)
        .await
        .with_context(|| format!("cannot start node {name}"))
}

/// Checks a group name given on the command line, as cpg would.
fn check_group(g: &str) -> Result<()> {
    cpg_node::cpg::pattern::classify(g)
        .map(|_| ())
        .map_err(|e| user_error("bad_group_name", e.to_string()))
}

/// Checks a node name given on the command line.
pub(crate) fn peer_name(node: &str) -> Result<NodeName> {
    NodeName::parse(node).map_err(|e| {
        user_error(
            "usage",
            format!(
                "{e} (for example {node}@{})",
                cpg_node::config::local_host(false)
            ),
        )
    })
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
            pg,
        } => {
            for g in &join {
                check_group(g)?;
            }
            let mut config = config(&cli.node, "cpg_node")?;
            config.epmd_daemon = cli.node.start_epmd;
            // A seed that can never be connected to (a name of the other
            // kind) is refused up front: retried for ever, it left a node
            // that looked healthy and never joined.
            for seed in &connect {
                let name = peer_name(seed)?;
                if let Some(why) = cpg_node::config::mixed_names(&config.name, &name) {
                    return Err(user_error(
                        "mixed_names",
                        format!("--connect {seed}: {why}"),
                    ));
                }
            }
            let node = start(config).await?;
            // From here a signal stops the node cleanly, during the first
            // dials of the seeds too (up to net_setuptime each where a
            // seed's address drops packets: SIGTERM then killed the
            // process outright, exit 143).
            let mut stop = std::pin::pin!(wait_for_signal());
            for name in &register {
                keep_echo(&node, Role::Registered(name.clone()))
                    .await
                    .map_err(anyhow::Error::msg)?;
                tracing::info!("echo process registered as {name}");
            }
            let scopes = cpg.start(&node)?;
            let pg_scopes = pg::start_run(&node, &pg).await?;
            if !join.is_empty() {
                let pid = keep_echo(&node, Role::Cpg(scopes.clone(), join.clone()))
                    .await
                    .map_err(anyhow::Error::msg)?;
                tracing::info!("echo process {} joined {join:?}", term::pid_text(&pid));
            }
            let mut opts = ClusterOptions::new(connect.clone());
            opts.only = only.into_iter().map(NodePattern::new).collect();
            opts.discover = discover_interval_ms > 0;
            opts.discover_interval = Duration::from_millis(discover_interval_ms.max(100));
            let cluster = Cluster::start(&node, opts);
            let mut st = Status::new(&node).cluster(&cluster);
            for s in &scopes {
                st = st.scope(s);
            }
            st.serve()
                .with_context(|| format!("cannot register {}", status::NAME))?;
            // Say how the first attempt went; the keeper retries either way.
            let mut reached = Vec::new();
            let first_dials = async {
                for peer in &connect {
                    // A failure is logged by the cluster keeper, which
                    // dials again.
                    if node.connect(peer).await.is_ok() {
                        tracing::info!("connected to {peer}");
                        reached.push(peer.clone());
                    }
                }
            };
            let stopped = tokio::select! {
                () = first_dials => false,
                _ = &mut stop => true,
            };
            if stopped {
                node.shutdown().await;
                return Ok(0);
            }
            // The default cpg scope, when neither named nor joined (a node
            // run for OTP pg or Phoenix.PubSub only), is not warned about.
            let cpg_asked = !cpg.scopes.is_empty() || !join.is_empty();
            let cpg_named = scopes.iter().filter(|_| cpg_asked);
            let names = cpg_named.map(|s| ("cpg", s.name().to_string()));
            let names = names.chain(pg_scopes.iter().map(|s| ("pg", s.name().to_string())));
            tokio::spawn(warn_of_scopes_no_seed_runs(
                node.clone(),
                names.collect(),
                reached,
            ));
            outln!("{} running (hidden); Ctrl-C to stop", node.name());
            stop.await;
            node.shutdown().await;
            Ok(0)
        }
        Cmd::Ping { node: target } => {
            peer_name(&target)?;
            let default = format!("ping_{}", std::process::id());
            let node = start(client_config(&cli.node, &default)?).await?;
            // net_adm:ping says only pang; the reason goes to stderr.
            let why = node.connect(&target).await.err();
            let pong = why.is_none() && node.ping(&target).await;
            outln!("{}", if pong { "pong" } else { "pang" });
            node.shutdown().await;
            if let Some(e) = why {
                errln!("error: cannot connect to {target}: {e}");
            }
            Ok(if pong { 0 } else { 1 })
        }
        Cmd::Status { node: target, json } => {
            peer_name(&target)?;
            let default = format!("status_{}", std::process::id());
            let node = start(client_config(&cli.node, &default)?).await?;
            let got =
                async {
                    node.connect(&target)
                        .await
                        .with_context(|| format!("cannot connect to {target}"))?;
                    match NodeStatus::ask(&node, &target, Duration::from_secs(10)).await {
                        Ok(st) => Ok(st),
                        Err(AskError::Call(CallError::Down(r)))
                            if term::as_atom(&r) == Some("noproc") =>
                        {
                            Err(user_error(
                                "no_status",
                                format!(
                                    "{target} has no {} process: it is not a cpg-node \
                                 (a BEAM node has none)",
                                    status::NAME
                                ),
                            ))
                        }
                        Err(AskError::Bad(b)) => Err(b.into()),
                        Err(e) => Err(anyhow::Error::new(e)
                            .context(format!("asking {target} for its status"))),
                    }
                }
                .await;
            node.shutdown().await;
            let st = got?;
            if json {
                outln!("{}", status_json(&st));
            } else {
                print_status(&st, node.name());
            }
            Ok(0)
        }
        Cmd::Members { group, client } => {
            let json = client.json;
            check_group(&group)?;
            let (node, scopes) = cpg_client(&cli.node, &client).await?;
            let mut found = false;
            for s in &scopes {
                if let Ok((key, pids, local)) = s.read(|st| {
                    st.get_members(&group, None).map(|(k, v)| {
                        let local = st
                            .get_local_members(&group, None)
                            .map(|x| x.1)
                            .unwrap_or_default();
                        (k.to_string(), v, local)
                    })
                }) {
                    found = true;
                    print_group(s.name(), &group, &key, &pids, &local, json);
                }
            }
            node.shutdown().await;
            if !found {
                let names: Vec<&str> = scopes.iter().map(|s| s.name()).collect();
                return Err(user_error(
                    "no_such_group",
                    format!(
                        "no group {group:?} in scope {} (no member, and no pattern group matches)",
                        names.join(", ")
                    ),
                ));
            }
            Ok(0)
        }
        Cmd::Groups { client } => {
            let json = client.json;
            let (node, scopes) = cpg_client(&cli.node, &client).await?;
            for s in &scopes {
                for (g, all, local) in group_rows(s) {
                    print_group(s.name(), &g, &g, &all, &local, json);
                }
            }
            node.shutdown().await;
            Ok(0)
        }
        Cmd::Watch {
            client,
            discover_interval_ms,
        } => {
            let json = client.json;
            let (node, scopes) = cpg_client(&cli.node, &client).await?;
            // Nodes that join later are found through the seeds and
            // connected to; lost ones are redialled.
            let mut opts = ClusterOptions::new(client.connect.clone());
            opts.discover_hidden = true;
            opts.discover_interval = Duration::from_millis(discover_interval_ms.max(100));
            let _cluster = Cluster::start(&node, opts);
            let mut node_events = node.subscribe();
            let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
            // Subscribed before the groups are printed: a change made
            // meanwhile is printed again as an event rather than lost.
            // A forwarder that falls behind the scope's event stream (a
            // burst of more events than it holds) is told how many it
            // missed: the scope's groups are then printed again whole.
            for (i, s) in scopes.iter().enumerate() {
                let mut events = s.subscribe();
                let tx = tx.clone();
                tokio::spawn(async move {
                    use tokio::sync::broadcast::error::RecvError;
                    loop {
                        let got = match events.recv().await {
                            Ok(e) => Ok(e),
                            Err(RecvError::Lagged(n)) => Err(n),
                            Err(RecvError::Closed) => break,
                        };
                        if tx.send((i, got)).is_err() {
                            break;
                        }
                    }
                });
            }
            for s in &scopes {
                for (g, all, local) in group_rows(s) {
                    print_group(s.name(), &g, &g, &all, &local, json);
                }
            }
            let names: Vec<&str> = scopes.iter().map(|s| s.name()).collect();
            let mut up: std::collections::HashSet<String> = node.peers().into_iter().collect();
            let stop = wait_for_signal();
            errln!(
                "cpg-node: watching scope {} on {} (and nodes that join later); Ctrl-C to stop",
                names.join(", "),
                node.peers().join(", ")
            );
            tokio::pin!(stop);
            // (Until stopped, or stdout is gone.)
            while !report::stdout_gone() {
                tokio::select! {
                    _ = &mut stop => break,
                    Ok(e) = node_events.recv() => match e {
                        NodeEvent::Up { node: n, .. } if up.insert(n.clone()) => {
                            errln!("cpg-node: now watching {n} too");
                        }
                        // A failed redial is a Down too: said once.
                        NodeEvent::Down { node: n, reason: why } if up.remove(&n) => {
                            errln!("cpg-node: lost {n}: {why}");
                        }
                        _ => {}
                    },
                    Some((i, got)) = rx.recv() => {
                        let scope = scopes[i].name();
                        match got {
                            Ok(e) => {
                                let pid = term::pid_text(&e.pid);
                                if json {
                                    outln!("{}", serde_json::json!({
                                        "scope": scope, "group": e.group, "pid": pid, "event": e.reason.to_string(),
                                    }));
                                } else {
                                    outln!("{scope} {} {pid} {}", show::plain(&e.group), e.reason);
                                }
                            }
                            Err(missed) => {
                                errln!(
                                    "cpg-node: fell behind scope {scope} by {missed} events; its groups now:"
                                );
                                for (g, all, local) in group_rows(&scopes[i]) {
                                    print_group(scope, &g, &g, &all, &local, json);
                                }
                            }
                        }
                    }
                }
            }
            node.shutdown().await;
            Ok(0)
        }
        Cmd::Demo => demo::demo(cli.node).await,
        Cmd::PgMembers { group, client } => pg::members(&cli.node, &client, &group).await,
        Cmd::PgGroups { client } => pg::groups(&cli.node, &client).await,
        Cmd::PgWatch { client } => pg::watch(&cli.node, &client).await,
        Cmd::Pubsub { cmd } => pg::pubsub(&cli.node, cmd).await,
    }
}

/// A short-lived node for `members`/`groups`/`watch`: starts the scopes,
/// connects, asks every scope for its state and waits until it settles.
async fn cpg_client(args: &NodeArgs, client: &ClientArgs) -> Result<(Node, Vec<CpgScope>)> {
    let connect = &client.connect;
    for peer in connect {
        peer_name(peer)?;
    }
    let default = format!("cpg_cli_{}", std::process::id());
    let node = start(client_config(args, &default)?).await?;
    let scopes = client.cpg.start(&node)?;
    for peer in connect {
        node.connect(peer)
            .await
            .with_context(|| format!("cannot connect to {peer}"))?;
    }
    // A hidden node sees only the members of nodes it is connected to (cpg's
    // merge drops the others), so also connect to every node the seeds are
    // connected to, hidden ones included.
    connect_seeds_peers(&node, connect).await;
    for s in &scopes {
        s.refresh().await?;
    }
    for s in &scopes {
        scope_nodes(&node, "cpg", s.name()).await;
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

/// Connects to every node the `seeds` are connected to, hidden ones
/// included; unreachable ones are skipped. A BEAM seed tells them through
/// its `rex`, a cpg-node seed (which has no `rex`) through the status it
/// serves ([`cpg_node::node::cluster::nodes_of`]), so that a query through
/// it sees the whole cluster and not only that node's own members.
pub(crate) async fn connect_seeds_peers(node: &Node, seeds: &[String]) {
    for seed in seeds {
        let Some(peers) = cpg_node::node::cluster::nodes_of(node, seed, true).await else {
            errln!(
                "warning: cannot learn the nodes {seed} is connected to (a BEAM node tells \
                 them through rex, a cpg-node through its {}): only {seed} is asked",
                status::NAME
            );
            continue;
        };
        for n in peers {
            if n != node.name() && !n.contains("_script_process") {
                if let Err(e) = node.connect(&n).await {
                    tracing::debug!("cannot reach {n}: {e}");
                }
            }
        }
    }
}

/// Which of `nodes` have a process registered as `name`. Each is asked by
/// a monitor of `{name, Node}`, which a node answers at once with a 'DOWN'
/// (`noproc`) where the name is free, as BEAM answers
/// `erlang:monitor(process, {Name, Node})`; then by a ping, whose answer
/// comes back on the same connection after any such 'DOWN', so once the
/// pings are answered the 'DOWN's are in. Returns the nodes that have it
/// and those that did not answer the ping within 3 s (counted as without).
async fn nodes_with(node: &Node, name: &str, nodes: &[String]) -> (Vec<String>, Vec<String>) {
    let mut p = node.spawn_process();
    let mut asked: Vec<(cpg_node::term::Reference, String)> = nodes
        .iter()
        .map(|n| (p.monitor(Dest::Name(name.into(), n.clone())), n.clone()))
        .collect();
    // All at once, each for at most 3 s: a frozen node must not hold the
    // command for a ping timeout per node.
    let mut pings = tokio::task::JoinSet::new();
    for n in nodes {
        let (node, n) = (node.clone(), n.clone());
        pings.spawn(async move {
            let pong = tokio::time::timeout(Duration::from_secs(3), node.ping(&n)).await;
            (n, pong.unwrap_or(false))
        });
    }
    let mut silent = Vec::new();
    while let Some(done) = pings.join_next().await {
        if let Ok((n, false)) = done {
            silent.push(n);
        }
    }
    while let Ok(Some(Signal::Down { mref, .. })) = p
        .recv_match(|s| matches!(s, Signal::Down { .. }), Some(Duration::ZERO))
        .await
    {
        asked.retain(|(r, _)| *r != mref);
    }
    for (r, _) in &asked {
        p.demonitor(r);
    }
    let mut with: Vec<String> = asked
        .into_iter()
        .map(|(_, n)| n)
        .filter(|n| !silent.contains(n))
        .collect();
    with.sort();
    silent.sort();
    (with, silent)
}

/// `run`'s scopes (`(kind, name)`) that none of the seeds it `reached`
/// runs, each said in a warning: a misspelt `--scope` or `--pg-scope`
/// otherwise reads as a cluster with no groups. (Nodes that start the
/// scope later still get our members.)
async fn warn_of_scopes_no_seed_runs(
    node: Node,
    scopes: Vec<(&'static str, String)>,
    reached: Vec<String>,
) {
    if reached.is_empty() {
        return;
    }
    for (kind, name) in scopes {
        let (with, _) = nodes_with(&node, &name, &reached).await;
        if with.is_empty() {
            tracing::warn!(
                "no seed runs {kind} scope {name} (connected: {}): is it misspelt? \
                 Our members reach nodes that start it later",
                reached.join(", ")
            );
        }
    }
}

/// The connected nodes that run the scope `name` (of the kind `kind`,
/// `cpg` or `pg`, for the message); says on stderr when none does, since a
/// misspelt scope otherwise reads as an empty one.
pub(crate) async fn scope_nodes(node: &Node, kind: &str, name: &str) -> Vec<String> {
    let peers = node.peers();
    let (with, silent) = nodes_with(node, name, &peers).await;
    if with.is_empty() {
        let asked = if peers.is_empty() {
            "none".to_string()
        } else {
            peers.join(", ")
        };
        let silent = if silent.is_empty() {
            String::new()
        } else {
            format!("; no answer to a ping in 3 s from {}", silent.join(", "))
        };
        errln!(
            "warning: no node asked runs {kind} scope {name} (asked: {asked}{silent}), so it shows no group"
        );
    }
    with
}

/// Listens for SIGINT and SIGTERM (Ctrl-C elsewhere) from the moment it is
/// called: the returned future ends with the exit code a shell gives a
/// process killed by the signal (130, 143). Call it before saying "ready"
/// (or starting a child to stop): a handler installed only when the future
/// is first polled leaves a window in which the signal's default action
/// kills the process outright.
pub(crate) fn wait_for_signal() -> impl std::future::Future<Output = i32> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let int = signal(SignalKind::interrupt());
        let term = signal(SignalKind::terminate());
        async move {
            match (int, term) {
                (Ok(mut int), Ok(mut term)) => tokio::select! {
                    _ = int.recv() => 130,
                    _ = term.recv() => 143,
                },
                (Ok(mut int), Err(_)) => {
                    int.recv().await;
                    130
                }
                (Err(_), Ok(mut term)) => {
                    term.recv().await;
                    143
                }
                (Err(_), Err(_)) => {
                    let _ = tokio::signal::ctrl_c().await;
                    130
                }
            }
        }
    }
    #[cfg(not(unix))]
    {
        async {
            let _ = tokio::signal::ctrl_c().await;
            130
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;
    use cpg_node::config::PortRange;

    fn parse(args: &[&str]) -> Cli {
        let argv = erlang_style_args(args.iter().map(std::ffi::OsString::from));
        Cli::try_parse_from(argv).unwrap()
    }

    #[test]
    fn erlang_flags_become_ours() {
        let cli = parse(&["cpg-node", "-sname", "x", "-setcookie", "c", "run"]);
        assert_eq!(
            (cli.node.sname.as_deref(), cli.node.cookie.as_deref()),
            (Some("x"), Some("c"))
        );
        assert!(cli.node.start_epmd);
        let cli = parse(&["cpg-node", "run", "-start_epmd", "false"]);
        assert!(!cli.node.start_epmd);
        // As erl takes it: before the command too.
        let cli = parse(&["cpg-node", "-sname", "x", "-start_epmd", "false", "run"]);
        assert!(!cli.node.start_epmd);
        assert!(matches!(cli.cmd, Cmd::Run { .. }));
        let cli = parse(&["cpg-node", "-name", "x@h.example", "ping", "y@h.example"]);
        assert!(cli.node.long_names);
    }

    #[test]
    fn read_hold_from_the_flag() {
        let hold = |args: &[&str]| {
            let mut v = vec!["cpg-node", "-sname", "x", "-setcookie", "c"];
            v.extend_from_slice(args);
            v.push("run");
            config(&parse(&v).node, "x").unwrap().read_hold
        };
        assert_eq!(hold(&[]), Some(cpg_node::config::DEFAULT_READ_HOLD));
        assert_eq!(hold(&["--read-hold-us", "0"]), None);
        assert_eq!(
            hold(&["--read-hold-us", "250"]),
            Some(Duration::from_micros(250))
        );
    }

    #[test]
    fn erl_epmd_port_dials_and_listens_at_one_port() {
        let ports = |args: &[&str]| {
            let cli = parse(args);
            let run = config(&cli.node, "x").unwrap();
            let client = client_config(&cli.node, "x").unwrap();
            (run.static_port, run.listen_ports, client.listen_ports)
        };
        let base = ["cpg-node", "-sname", "x", "-setcookie", "c"];
        let with = |more: &[&'static str]| [&base[..], more].concat();
        assert_eq!(
            ports(&with(&["-erl_epmd_port", "9100", "run"])),
            (Some(9100), PortRange::single(9100), PortRange::ANY)
        );
        assert_eq!(
            ports(&with(&[
                "--erl-epmd-port",
                "9100",
                "--dist-port-range",
                "9200",
                "run"
            ])),
            (Some(9100), PortRange::single(9200), PortRange::single(9200))
        );
        assert_eq!(ports(&with(&["run"])).0, None);
        let cli = parse(&with(&["--dist-listen-addr", "10.0.0.5", "run"]));
        let c = config(&cli.node, "x").unwrap();
        assert_eq!(c.listen_addr, Some([10, 0, 0, 5].into()));
        for bad in ["0", "65536", "x"] {
            let cli = parse(&with(&["--erl-epmd-port", bad, "run"]));
            assert!(config(&cli.node, "x").is_err(), "{bad}");
        }
        let cli = parse(&with(&["--erl-epmd-port", "", "run"]));
        assert_eq!(config(&cli.node, "x").unwrap().static_port, None);
    }

    #[test]
    fn max_total_copies_is_at_least_one() {
        let cap = |n: &str| {
            let argv = ["cpg-node", "run", "--max-total-copies", n].map(std::ffi::OsString::from);
            Cli::try_parse_from(argv).map(|cli| match cli.cmd {
                Cmd::Run { cpg, .. } => cpg.max_total_copies,
                _ => unreachable!("run"),
            })
        };
        assert_eq!(cap("1").unwrap(), 1);
        assert_eq!(cap("5000").unwrap(), 5000);
        let e = cap("0").unwrap_err().to_string();
        assert!(e.contains("must be at least 1"), "{e}");
        assert!(cap("x").is_err());
    }
}
