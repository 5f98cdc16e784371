//! Subcommands of the `cpg-node` binary, and how it reports errors. The
//! OTP pg and Phoenix.PubSub commands are in `pg`, the local demo in `demo`.

mod demo;
mod pg;

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};
use cpg_node::config::{
    default_cookie_or_create, ConfigError, Cookie, CookieError, NameError, NodeConfig, NodeName,
    PortRange,
};
use cpg_node::cpg::{BeamNodeType, CpgScope, MemberPid, ScopeOptions, DEFAULT_SCOPE};
use cpg_node::node::cluster::{Cluster, ClusterOptions, NodePattern};
use cpg_node::node::{DownReason, NodeEvent};
use cpg_node::process::{CallError, Dest, Process, Signal};
use cpg_node::status::{self, NodeStatus, Status};
use cpg_node::term::{self, atom, Term};
use cpg_node::Node;
use std::time::Duration;

/// A hidden Erlang node in Rust that takes part in cpg process groups.
///
/// Erlang's own flags work too: `-sname N`, `-name N` (long names) and
/// `-setcookie C` are read as `--sname N`, `--name N --long-names` and
/// `--cookie C`.
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
    /// Node name: `name` (this host is added) or `name@host`; a short name
    /// unless --long-names (`-name N` sets both).
    #[arg(long, global = true, conflicts_with = "sname")]
    pub name: Option<String>,
    /// Short node name, as `erl -sname`: `name` or `name@host`.
    #[arg(long, global = true, conflicts_with = "long_names")]
    pub sname: Option<String>,
    /// Cluster cookie, as `erl -setcookie` (default: $HOME/.erlang.cookie,
    /// created as erl creates it when missing).
    #[arg(long, global = true, env = "CPG_NODE_COOKIE", hide_env_values = true)]
    pub cookie: Option<String>,
    /// Use long names (name@fully.qualified.host).
    #[arg(long, global = true)]
    pub long_names: bool,
    /// net_ticktime in seconds.
    #[arg(long, global = true, default_value_t = 60)]
    pub net_ticktime: u64,
    /// Distribution port to listen on: `MIN-MAX` takes the first free one,
    /// as erl's inet_dist_listen_min/max (e.g. for a firewall), or `PORT`;
    /// default: any free port.
    #[arg(long, global = true, value_name = "MIN-MAX")]
    pub dist_port_range: Option<PortRange>,
    /// Read coalescing: while a peer streams messages to us one way, wait
    /// this many microseconds (rounded up to the runtime's 1 ms timer tick)
    /// between reads of its connection, so that it is not woken up per
    /// message; 0 reads at once (lowest latency under load). Default 100.
    #[arg(long, global = true, value_name = "MICROSECONDS")]
    pub read_hold_us: Option<u64>,
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
        #[command(flatten)]
        pg: PgRunArgs,
        /// Where no EPMD answers, start Erlang's `epmd -daemon` (as `erl`
        /// does; `-start_epmd false` works too): it outlives this node, so
        /// the nodes that register with it stay findable when this one
        /// stops or restarts. Without `epmd` installed, or with `false`,
        /// the node runs an EPMD inside its own process instead.
        #[arg(long, default_value_t = true, action = clap::ArgAction::Set, value_name = "BOOL")]
        start_epmd: bool,
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
    /// Print the groups, then stream join/leave events until stopped;
    /// nodes that join the cluster later are followed too.
    Watch {
        #[command(flatten)]
        client: ClientArgs,
        /// How often to ask the seeds for the cluster's nodes (ms).
        #[arg(long, default_value_t = 10_000)]
        discover_interval_ms: u64,
    },
    /// Ask a running cpg-node for its status (peers and their traffic,
    /// scopes, cluster targets), as the node itself answers it.
    Status {
        /// The node (`cpg-node run` serves its status as `cpg_node_status`).
        node: String,
        /// One JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Ping a node: prints pong (exit 0) or pang (exit 1, and why on
    /// stderr).
    Ping {
        /// The node.
        node: String,
    },
    /// A local demo: starts what it needs on loopback, shows the node at work.
    Demo,
    /// Print the members of an OTP pg group (`pg:get_members/2`) as the
    /// cluster's pg scopes see them.
    PgMembers {
        /// The group, as an Erlang term: `my_group` (an atom), '"s"' (a
        /// string), '{a,1}' (a tuple); text that is no term is an atom.
        group: String,
        #[command(flatten)]
        client: PgClientArgs,
    },
    /// Print every OTP pg group with its members.
    PgGroups {
        #[command(flatten)]
        client: PgClientArgs,
    },
    /// Print the OTP pg groups, then stream joins and leaves until stopped.
    PgWatch {
        #[command(flatten)]
        client: PgClientArgs,
    },
    /// Phoenix.PubSub (PG2 adapter): subscribe to topics or broadcast.
    Pubsub {
        #[command(subcommand)]
        cmd: PubsubCmd,
    },
}

/// What to do with a Phoenix.PubSub instance.
#[derive(Subcommand, Debug)]
pub enum PubsubCmd {
    /// Print every broadcast to these topics (all topics when none) until
    /// stopped: `TOPIC MESSAGE` lines, or JSON objects with --json.
    Subscribe {
        /// Topics (binaries on the Elixir side).
        topics: Vec<String>,
        #[command(flatten)]
        args: PubsubArgs,
    },
    /// `Phoenix.PubSub.broadcast(PubSub, TOPIC, TERM)`: TERM is Erlang
    /// syntax (`hello`, '{new_msg, <<"hi">>}').
    Broadcast {
        /// The topic.
        topic: String,
        /// The message, as an Erlang term.
        term: String,
        #[command(flatten)]
        args: PubsubArgs,
    },
}

/// Options of the `pubsub` commands.
#[derive(Args, Debug, Clone)]
pub struct PubsubArgs {
    /// The PubSub instance's name, as in Elixir (`MyApp.PubSub`).
    #[arg(long)]
    pub pubsub: String,
    /// Nodes to connect to (the nodes they are connected to are joined
    /// too); kept connected while subscribed.
    #[arg(long, required = true)]
    pub connect: Vec<String>,
    /// The instance's pool size (default: as many groups as the nodes
    /// have, at least 1).
    #[arg(long)]
    pub pool_size: Option<usize>,
    /// Group naming: `current` (2.0 and 2.1.1 onwards) or `2.1.0`.
    #[arg(long, default_value = "current", value_parser = ["current", "2.1.0"])]
    pub naming: String,
    /// One JSON object per line.
    #[arg(long)]
    pub json: bool,
}

/// OTP pg options of `run`.
#[derive(Args, Debug, Clone)]
pub struct PgRunArgs {
    /// Take part in this OTP pg scope (repeatable; `pg` when --pg-join is
    /// given without it).
    #[arg(long = "pg-scope")]
    pub pg_scopes: Vec<String>,
    /// Join an echo process to this pg group in every pg scope, read as an
    /// Erlang term (`my_group`, '"s"', '{a,1}'); repeat it to join twice.
    #[arg(long = "pg-join")]
    pub pg_join: Vec<String>,
}

/// Options of the commands that read the cluster's OTP pg groups.
#[derive(Args, Debug, Clone)]
pub struct PgClientArgs {
    /// The pg scope (repeatable; default `pg`).
    #[arg(long = "pg-scope")]
    pub pg_scopes: Vec<String>,
    /// Nodes to ask (the nodes they are connected to are asked too).
    #[arg(long, required = true)]
    pub connect: Vec<String>,
    /// One JSON object per line.
    #[arg(long)]
    pub json: bool,
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
    /// node_type of the BEAM cpg scopes: `auto` (each BEAM node asked when
    /// it connects, and treated as it answers), `all` (the Rust node is a
    /// full peer) or `visible` (cpg's default: publish by casts, poll for
    /// state).
    #[arg(long, default_value = "auto", value_parser = ["auto", "all", "visible"])]
    pub beam_node_type: String,
    /// How often to ask each BEAM scope at `visible` for its state, and
    /// under `auto` each other BEAM node its node_type again (ms).
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
                o.beam_node_type = match self.beam_node_type.as_str() {
                    "visible" => BeamNodeType::Visible,
                    "all" => BeamNodeType::All,
                    _ => BeamNodeType::Auto,
                };
                o.poll_interval = Duration::from_millis(self.poll_interval_ms.max(10));
                Ok(CpgScope::start(node, o)?)
            })
            .collect()
    }
}

impl Cli {
    /// Whether errors are to be printed as JSON.
    pub fn json(&self) -> bool {
        match &self.cmd {
            Cmd::Members { client, .. } | Cmd::Groups { client } | Cmd::Watch { client, .. } => {
                client.json
            }
            Cmd::Status { json, .. } => *json,
            Cmd::PgMembers { client, .. } | Cmd::PgGroups { client } | Cmd::PgWatch { client } => {
                client.json
            }
            Cmd::Pubsub {
                cmd: PubsubCmd::Subscribe { args, .. } | PubsubCmd::Broadcast { args, .. },
            } => args.json,
            _ => false,
        }
    }
}

impl Cmd {
    /// The log level when RUST_LOG is not set: `run` tells what it does,
    /// the other commands print their result and warnings only. For those,
    /// the node's own warnings about dials are left out: a failed connect
    /// comes back as the command's error, printed once.
    pub fn default_log(&self) -> &'static str {
        match self {
            Cmd::Run { .. } => "info",
            _ => "warn,cpg_node::node=error",
        }
    }
}

/// Rewrites Erlang's single-dash flags into the long flags clap knows:
/// `-sname N` to `--sname N`, `-name N` to `--name N --long-names`,
/// `-setcookie C` to `--cookie C`, `-start_epmd B` to `--start-epmd B`.
/// Only whole arguments are rewritten, and none after `--`.
pub fn erlang_style_args(
    args: impl IntoIterator<Item = std::ffi::OsString>,
) -> Vec<std::ffi::OsString> {
    let mut out = Vec::new();
    let mut it = args.into_iter();
    while let Some(a) = it.next() {
        match a.to_str() {
            Some("--") => {
                out.push(a);
                out.extend(it.by_ref());
            }
            Some("-sname") => out.push("--sname".into()),
            Some("-setcookie") => out.push("--cookie".into()),
            Some("-start_epmd") => out.push("--start-epmd".into()),
            Some("-name") => {
                out.push("--long-names".into());
                out.push("--name".into());
            }
            _ => out.push(a),
        }
    }
    out
}

/// A mistake the user can fix (a bad argument, an unknown group, ...):
/// printed as one line, with a `kind` for `--json`.
#[derive(Debug)]
pub struct UserError {
    /// A short stable tag: `usage`, `no_such_group`, `bad_group_name`, ...
    pub kind: &'static str,
    /// What went wrong, for a person.
    pub message: String,
}

impl std::fmt::Display for UserError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for UserError {}

pub(crate) fn user_error(kind: &'static str, message: impl Into<String>) -> anyhow::Error {
    UserError {
        kind,
        message: message.into(),
    }
    .into()
}

/// What kind of failure `e` is, for `--json` and the exit code.
fn kind_of(e: &anyhow::Error) -> &'static str {
    for c in e.chain() {
        if let Some(u) = c.downcast_ref::<UserError>() {
            return u.kind;
        }
        if c.is::<NameError>() || c.is::<ConfigError>() {
            return "usage";
        }
        if c.is::<CookieError>() {
            return "cookie_file";
        }
        if let Some(r) = c.downcast_ref::<DownReason>() {
            return down_kind(r);
        }
    }
    "error"
}

/// The error kind of a failed connection, from its typed reason.
fn down_kind(r: &DownReason) -> &'static str {
    match r {
        DownReason::WrongCookie(_) => "wrong_cookie",
        DownReason::MixedNames(_) => "mixed_names",
        _ => "unreachable",
    }
}

/// Prints `e` once (stderr, or a JSON object on stdout under `--json`);
/// returns the exit code: 2 for a usage error, as clap uses, else 1.
pub fn report(e: &anyhow::Error, json: bool) -> i32 {
    let kind = kind_of(e);
    let message = format!("{e:#}");
    if json {
        println!("{}", serde_json::json!({ "error": message, "kind": kind }));
    } else {
        eprintln!("error: {message}");
    }
    if kind == "usage" {
        2
    } else {
        1
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
                eprintln!(
                    "cpg-node: no cookie given and no {} found: created it with a new random \
                     cookie, as erl does (every node of the cluster needs the same cookie)",
                    path.display()
                );
            }
            cookie
        }
    };
    if a.net_ticktime == 0 {
        return Err(user_error(
            "usage",
            "--net-ticktime must be at least 1 (seconds)",
        ));
    }
    let mut c = NodeConfig::new(name, cookie);
    c.epmd_port = cpg_node::epmd::port_from_env();
    c.net_ticktime = Duration::from_secs(a.net_ticktime);
    c.listen_ports = a.dist_port_range.unwrap_or_default();
    if let Some(us) = a.read_hold_us {
        c.read_hold = (us > 0).then(|| Duration::from_micros(us));
    }
    c.check()?;
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
    Ok(c)
}

/// Where no EPMD answers on `port`, starts `epmd -port PORT -daemon` and
/// waits (at most 3 s) until it answers, as `erl` starts one. Quietly does
/// nothing where `epmd` cannot be run (Erlang not installed): the node
/// then starts the EPMD of its own process.
async fn epmd_daemon(port: u16) {
    if cpg_node::epmd::names("127.0.0.1", port).await.is_ok() {
        return;
    }
    let started = tokio::process::Command::new("epmd")
        .args(["-port", &port.to_string(), "-daemon"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .await;
    match started {
        Ok(s) if s.success() => {}
        Ok(s) => {
            tracing::info!("epmd -daemon on port {port} failed ({s}); running an EPMD in-process");
            return;
        }
        Err(e) => {
            tracing::info!("cannot run epmd ({e}); running an EPMD in-process");
            return;
        }
    }
    for _ in 0..150 {
        if cpg_node::epmd::names("127.0.0.1", port).await.is_ok() {
            tracing::info!("started epmd -daemon on port {port}");
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tracing::warn!("epmd -daemon on port {port} does not answer; running an EPMD in-process");
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
pub(crate) fn peer_name(node: &str) -> Result<()> {
    NodeName::parse(node).map(|_| ()).map_err(|e| {
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
            start_epmd,
        } => {
            for g in &join {
                check_group(g)?;
            }
            let config = config(&cli.node, "cpg_node")?;
            if start_epmd {
                epmd_daemon(config.epmd_port).await;
            }
            let node = start(config).await?;
            for name in &register {
                spawn_echo(node.spawn_registered(name)?);
                tracing::info!("echo process registered as {name}");
            }
            let scopes = cpg.start(&node)?;
            let _pg_scopes = pg::start_run(&node, &pg).await?;
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
            let cluster = Cluster::start(&node, opts);
            let mut st = Status::new(&node).cluster(&cluster);
            for s in &scopes {
                st = st.scope(s);
            }
            st.serve()
                .with_context(|| format!("cannot register {}", status::NAME))?;
            // Say how the first attempt went; the keeper retries either way.
            for peer in &connect {
                // A failure is logged by the cluster keeper, which dials
                // again.
                if node.connect(peer).await.is_ok() {
                    tracing::info!("connected to {peer}");
                }
            }
            println!("{} running (hidden); Ctrl-C to stop", node.name());
            wait_for_signal().await;
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
            println!("{}", if pong { "pong" } else { "pang" });
            node.shutdown().await;
            if let Some(e) = why {
                eprintln!("error: cannot connect to {target}: {e}");
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
                    let mut p = node.spawn_process();
                    let to = Dest::Name(status::NAME.into(), target.clone());
                    let req = atom(status::REQUEST);
                    match p.call(to, req, Duration::from_secs(10)).await {
                        Ok(t) => Ok(t),
                        Err(CallError::Down(r)) if term::as_atom(&r) == Some("noproc") => {
                            Err(user_error(
                                "no_status",
                                format!(
                                    "{target} has no {} process: it is not a cpg-node \
                                 (a BEAM node has none)",
                                    status::NAME
                                ),
                            ))
                        }
                        Err(e) => Err(anyhow::Error::new(e)
                            .context(format!("asking {target} for its status"))),
                    }
                }
                .await;
            node.shutdown().await;
            let st = NodeStatus::from_term(&got?)?;
            if json {
                println!("{}", status_json(&st));
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
            for s in &scopes {
                for (g, all, local) in group_rows(s) {
                    print_group(s.name(), &g, &g, &all, &local, json);
                }
            }
            let names: Vec<&str> = scopes.iter().map(|s| s.name()).collect();
            let mut up: std::collections::HashSet<String> = node.peers().into_iter().collect();
            eprintln!(
                "cpg-node: watching scope {} on {} (and nodes that join later); Ctrl-C to stop",
                names.join(", "),
                node.peers().join(", ")
            );
            let stop = wait_for_signal();
            tokio::pin!(stop);
            loop {
                tokio::select! {
                    _ = &mut stop => break,
                    Ok(e) = node_events.recv() => match e {
                        NodeEvent::Up(n) if up.insert(n.clone()) => {
                            eprintln!("cpg-node: now watching {n} too");
                        }
                        // A failed redial is a Down too: said once.
                        NodeEvent::Down { node: n, reason: why } if up.remove(&n) => {
                            eprintln!("cpg-node: lost {n}: {why}");
                        }
                        _ => {}
                    },
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
/// included (asked through their `rex`); unreachable ones are skipped.
pub(crate) async fn connect_seeds_peers(node: &Node, seeds: &[String]) {
    for seed in seeds {
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
}

/// Every group of `s`: (name, members newest first, local members).
fn group_rows(s: &CpgScope) -> Vec<(String, Vec<MemberPid>, Vec<MemberPid>)> {
    s.read(|st| {
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
    })
}

fn ms(d: Duration) -> u64 {
    d.as_millis() as u64
}

/// The status as one JSON object, with the Erlang map's keys.
fn status_json(st: &NodeStatus) -> serde_json::Value {
    use serde_json::json;
    let peers: Vec<_> = st
        .peers
        .iter()
        .map(|p| {
            let l = &p.link;
            json!({
                "node": p.node, "creation": p.creation,
                "direction": l.direction.map(|d| d.as_str()),
                "connected_ms": l.connected_for.map(ms), "last_heard_ms": ms(l.last_heard),
                "msgs_in": l.msgs_in, "msgs_out": l.msgs_out,
                "bytes_in": l.bytes_in, "bytes_out": l.bytes_out, "queued": l.queued,
                "queued_bytes": l.queued_bytes,
            })
        })
        .collect();
    let scopes: Vec<_> = st
        .scopes
        .iter()
        .map(|s| {
            json!({
                "scope": s.scope, "groups": s.groups, "members": s.members,
                "local_members": s.local_members, "pids": s.pids,
                "node_types": s.node_types.iter().cloned().collect::<std::collections::BTreeMap<_, _>>(),
            })
        })
        .collect();
    let cluster = st.cluster.as_ref().map(|ts| {
        ts.iter()
            .map(|t| {
                json!({
                    "node": t.node, "origin": origin_text(t.origin), "connected": t.connected,
                    "failures": t.failures, "next_attempt_ms": t.next_attempt_in.map(ms),
                    "last_error": t.last_error,
                })
            })
            .collect::<Vec<_>>()
    });
    json!({
        "node": st.node, "creation": st.creation, "version": st.version,
        "uptime_ms": ms(st.uptime), "processes": st.processes,
        "peers": peers, "scopes": scopes, "cluster": cluster,
    })
}

fn origin_text(o: cpg_node::node::cluster::Origin) -> &'static str {
    use cpg_node::node::cluster::Origin;
    match o {
        Origin::Seed => "seed",
        Origin::Discovered => "discovered",
        Origin::Seen => "seen",
    }
}

/// A duration as a person reads it: `850ms`, `12.3s`, `4m05s`, `2h03m`.
fn human_time(d: Duration) -> String {
    let ms = d.as_millis();
    let s = d.as_secs();
    if ms < 1000 {
        format!("{ms}ms")
    } else if s < 60 {
        format!("{:.1}s", d.as_secs_f64())
    } else if s < 3600 {
        format!("{}m{:02}s", s / 60, s % 60)
    } else {
        format!("{}h{:02}m", s / 3600, (s % 3600) / 60)
    }
}

/// A byte count as a person reads it: `812 B`, `12.4 KiB`, `3.1 MiB`.
fn human_bytes(b: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if b < 1024 {
        return format!("{b} B");
    }
    let mut v = b as f64 / 1024.0;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    format!("{v:.1} {}", UNITS[u])
}

/// Prints rows as columns two spaces apart, indented by two.
fn print_table(head: &[&str], rows: &[Vec<String>]) {
    let mut w: Vec<usize> = head.iter().map(|h| h.len()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            w[i] = w[i].max(c.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let s: Vec<String> = cells
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{c:<width$}", width = w[i]))
            .collect();
        println!("  {}", s.join("  ").trim_end());
    };
    line(head.to_vec());
    for r in rows {
        line(r.iter().map(String::as_str).collect());
    }
}

/// `node (type), ...` of a scope's peers, `-` for none.
fn node_types_text(types: &[(String, String)]) -> String {
    if types.is_empty() {
        return "-".into();
    }
    let shown: Vec<String> = types.iter().map(|(n, t)| format!("{n} ({t})")).collect();
    shown.join(", ")
}

/// The status as text; `me` (the asking node, a peer for the moment) is
/// marked.
fn print_status(st: &NodeStatus, me: &str) {
    let name = |n: &str| {
        if n == me {
            format!("{n} (this query)")
        } else {
            n.to_string()
        }
    };
    println!(
        "node {} (creation {}), cpg-node {}",
        st.node, st.creation, st.version
    );
    println!("up {}, {} processes", human_time(st.uptime), st.processes);
    println!();
    println!("peers: {}", st.peers.len());
    if !st.peers.is_empty() {
        let rows: Vec<Vec<String>> = st
            .peers
            .iter()
            .map(|p| {
                let l = &p.link;
                vec![
                    name(&p.node),
                    l.direction.map_or("-", |d| d.as_str()).to_string(),
                    l.connected_for.map_or("-".into(), human_time),
                    format!("{} ago", human_time(l.last_heard)),
                    format!("{}/{}", l.msgs_in, l.msgs_out),
                    format!("{}/{}", human_bytes(l.bytes_in), human_bytes(l.bytes_out)),
                    if l.queued == 0 {
                        "0".to_string()
                    } else {
                        format!("{} ({})", l.queued, human_bytes(l.queued_bytes as u64))
                    },
                ]
            })
            .collect();
        print_table(
            &[
                "NODE",
                "DIR",
                "UP",
                "LAST HEARD",
                "MSGS IN/OUT",
                "BYTES IN/OUT",
                "QUEUED",
            ],
            &rows,
        );
    }
    println!();
    println!("scopes: {}", st.scopes.len());
    if !st.scopes.is_empty() {
        let rows: Vec<Vec<String>> = st
            .scopes
            .iter()
            .map(|s| {
                vec![
                    s.scope.clone(),
                    s.groups.to_string(),
                    s.members.to_string(),
                    s.local_members.to_string(),
                    s.pids.to_string(),
                    node_types_text(&s.node_types),
                ]
            })
            .collect();
        print_table(
            &["SCOPE", "GROUPS", "MEMBERS", "LOCAL", "PIDS", "NODE TYPES"],
            &rows,
        );
    }
    println!();
    match &st.cluster {
        None => println!("cluster: no keeper runs"),
        Some(ts) => {
            println!("cluster: {} nodes kept", ts.len());
            if !ts.is_empty() {
                let rows: Vec<Vec<String>> = ts
                    .iter()
                    .map(|t| {
                        vec![
                            name(&t.node),
                            origin_text(t.origin).to_string(),
                            if t.connected { "yes" } else { "no" }.to_string(),
                            t.failures.to_string(),
                            t.next_attempt_in
                                .map_or("-".into(), |d| format!("in {}", human_time(d))),
                            t.last_error.clone().unwrap_or_else(|| "-".into()),
                        ]
                    })
                    .collect();
                print_table(
                    &[
                        "NODE",
                        "ORIGIN",
                        "CONNECTED",
                        "FAILURES",
                        "NEXT ATTEMPT",
                        "LAST ERROR",
                    ],
                    &rows,
                );
            }
        }
    }
}

fn print_group(
    scope: &str,
    group: &str,
    key: &str,
    pids: &[MemberPid],
    local: &[MemberPid],
    json: bool,
) {
    let text = |v: &[MemberPid]| v.iter().map(|p| p.to_string()).collect::<Vec<_>>();
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

pub(crate) async fn wait_for_signal() {
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
        let on_other = |p: &Process, s: Signal| {
            if let Signal::Message { msg, .. } = s {
                match term::as_tuple(&msg) {
                    Some([Term::Pid(from), m]) => {
                        let _ = p.send(from.clone(), m.clone());
                    }
                    _ => tracing::debug!("echo: ignored {msg}"),
                }
            }
        };
        p.serve(|_, req| req.clone(), on_other).await;
    });
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert!(matches!(
            cli.cmd,
            Cmd::Run {
                start_epmd: true,
                ..
            }
        ));
        let cli = parse(&["cpg-node", "run", "-start_epmd", "false"]);
        assert!(matches!(
            cli.cmd,
            Cmd::Run {
                start_epmd: false,
                ..
            }
        ));
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
}
