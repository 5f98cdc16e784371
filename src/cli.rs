//! Subcommands of the `cpg-node` binary.

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};
use cpg_node::config::{default_cookie, Cookie, NodeConfig, NodeName};
use cpg_node::cpg::{BeamNodeType, CpgScope, MemberPid, ScopeOptions, DEFAULT_SCOPE};
use cpg_node::process::{parse_call, Process, Signal};
use cpg_node::term::{self, atom, tuple, Term};
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
        /// Nodes to connect to at start.
        #[arg(long)]
        connect: Vec<String>,
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
        cpg: CpgArgs,
        /// Nodes to ask.
        #[arg(long, required = true)]
        connect: Vec<String>,
        /// One JSON object per line.
        #[arg(long)]
        json: bool,
    },
    /// Print every group with its members.
    Groups {
        #[command(flatten)]
        cpg: CpgArgs,
        /// Nodes to ask.
        #[arg(long, required = true)]
        connect: Vec<String>,
        /// One JSON object per line.
        #[arg(long)]
        json: bool,
    },
    /// Stream join/leave events until stopped.
    Watch {
        #[command(flatten)]
        cpg: CpgArgs,
        /// Nodes to follow.
        #[arg(long, required = true)]
        connect: Vec<String>,
        /// One JSON object per line.
        #[arg(long)]
        json: bool,
    },
    /// Ping a node: prints pong (exit 0) or pang (exit 1).
    Ping {
        /// The node.
        node: String,
    },
    /// A local demo: starts what it needs on loopback, shows the node at work.
    Demo,
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

fn config(a: &NodeArgs, default_name: &str) -> Result<NodeConfig> {
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
            for peer in &connect {
                match node.connect(peer).await {
                    Ok(()) => tracing::info!("connected to {peer}"),
                    Err(e) => tracing::warn!("cannot connect to {peer}: {e}"),
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
        Cmd::Members {
            group,
            cpg,
            connect,
            json,
        } => {
            let (node, scopes) = cpg_client(&cli.node, &cpg, &connect).await?;
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
        Cmd::Groups { cpg, connect, json } => {
            let (node, scopes) = cpg_client(&cli.node, &cpg, &connect).await?;
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
        Cmd::Watch { cpg, connect, json } => {
            let (node, scopes) = cpg_client(&cli.node, &cpg, &connect).await?;
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
        Cmd::Demo => crate::cli::demo(cli.node).await,
    }
}

/// A short-lived node for `members`/`groups`/`watch`: starts the scopes,
/// connects, asks every scope for its state and waits until it settles.
async fn cpg_client(
    args: &NodeArgs,
    cpg: &CpgArgs,
    connect: &[String],
) -> Result<(Node, Vec<CpgScope>)> {
    let default = format!("cpg_cli_{}", std::process::id());
    let node = Node::start(config(args, &default)?).await?;
    let scopes = cpg.start(&node)?;
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

/// The Erlang side of the demo: a registered process that answers
/// `{From, Msg}` with `{self(), Msg}`, calls the Rust echo server and
/// monitors it, printing what it sees.
const DEMO_ERL: &str = r#"
Rust = list_to_atom(os:getenv("DEMO_RUST")),
register(demo_peer, self()),
io:format("erl: up as ~p~n", [node()]),
Loop = fun L() ->
  receive
    {From, {call_me, Req}} when is_pid(From) ->
      R = gen_server:call({echo, Rust}, Req, 5000),
      io:format("erl: gen_server:call({echo, ~p}, ~p) -> ~p~n", [Rust, Req, R]),
      From ! {self(), {called, R}}, L();
    {From, cpg_new} when is_pid(From) ->
      %% Play a cpg scope: ask the Rust scope for its state, call a member
      %% found in it, and join the Rust scope.
      Self = self(),
      spawn(fun() ->
        register(cpg_default_scope, self()),
        {cpg_default_scope, Rust} ! {new, node()},
        receive {'$gen_cast', {exchange, _, Groups}} ->
          io:format("erl: the Rust cpg scope answered {new, Node} with ~p~n", [Groups]),
          {_, [Member | _]} = lists:keyfind("demo/*", 1, Groups),
          io:format("erl: gen_server:call(~p, hello_member) -> ~p~n",
                    [Member, gen_server:call(Member, hello_member)]),
          gen_server:cast({cpg_default_scope, Rust}, {join, "from_erl", Self})
        after 5000 -> io:format("erl: no exchange~n") end,
        Self ! cpg_done
      end),
      receive cpg_done -> ok after 10000 -> ok end,
      From ! {self(), cpg_done}, L();
    {From, monitor_echo} when is_pid(From) ->
      Ref = erlang:monitor(process, {echo, Rust}),
      From ! {self(), monitoring},
      receive {'DOWN', Ref, process, Who, Why} ->
        io:format("erl: 'DOWN' for ~p: ~p~n", [Who, Why])
      after 10000 -> io:format("erl: no DOWN~n") end,
      init:stop();
    {From, Msg} when is_pid(From) ->
      io:format("erl: got ~p from ~p~n", [Msg, From]),
      From ! {self(), Msg}, L()
  after 30000 -> init:stop()
  end
end,
Loop().
"#;

async fn demo(args: NodeArgs) -> Result<i32> {
    let cookie = args
        .cookie
        .clone()
        .unwrap_or_else(|| format!("demo{}", rand_u32()));
    let suffix = format!("{}_{}", std::process::id(), rand_u32() % 10000);
    let mut cfg = config(
        &NodeArgs {
            cookie: Some(cookie.clone()),
            name: Some(args.name.clone().unwrap_or(format!("demo_rust_{suffix}"))),
            ..args.clone()
        },
        "demo_rust",
    )?;
    cfg.epmd_port = cpg_node::epmd::port_from_env();
    let node = Node::start(cfg.clone()).await?;
    println!(
        "rust: node {} started (hidden, creation {})",
        node.name(),
        node.creation()
    );
    spawn_echo(node.spawn_registered("echo")?);
    let scope = CpgScope::start(&node, ScopeOptions::new(DEFAULT_SCOPE))?;
    let member = node.spawn_process();
    let member_pid = member.pid().clone();
    spawn_echo(member);
    scope.join("demo/*", &member_pid).await?;
    println!(
        "rust: cpg: {} joined \"demo/*\" in {DEFAULT_SCOPE}",
        term::pid_text(&member_pid)
    );

    let erl_available = std::process::Command::new("erl")
        .arg("-version")
        .stderr(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    let host = cfg.name.host().to_string();
    let code = if erl_available {
        demo_with_erl(&node, &scope, &cookie, &suffix, &host).await
    } else {
        println!("rust: erl not found; demo with a second Rust node instead");
        demo_with_rust(&node, &cookie, &suffix, &cfg).await
    };
    node.shutdown().await;
    code
}

fn rand_u32() -> u32 {
    rand::random()
}

async fn demo_with_erl(
    node: &Node,
    scope: &CpgScope,
    cookie: &str,
    suffix: &str,
    host: &str,
) -> Result<i32> {
    let erl_name = format!("demo_erl_{suffix}@{host}");
    let mut child = tokio::process::Command::new("erl")
        .args([
            "-sname",
            &erl_name,
            "-setcookie",
            cookie,
            "-noshell",
            "-eval",
            DEMO_ERL,
        ])
        .env("DEMO_RUST", node.name())
        .env("ERL_EPMD_PORT", node.config().epmd_port.to_string())
        .kill_on_drop(true)
        .spawn()
        .context("starting erl")?;
    println!(
        "rust: started a real erl node {erl_name} (pid {:?})",
        child.id()
    );
    let result = demo_steps(node, scope, &erl_name).await;
    let _ = tokio::time::timeout(Duration::from_secs(10), child.wait()).await;
    let _ = child.kill().await;
    result
}

async fn demo_steps(node: &Node, scope: &CpgScope, peer: &str) -> Result<i32> {
    let mut ok = false;
    for _ in 0..50 {
        if node.ping(peer).await {
            ok = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    if !ok {
        bail!("{peer} did not answer ping");
    }
    println!("rust: net_adm:ping-equivalent to {peer}: pong");
    // Distribution is up before erl runs its -eval: wait for demo_peer.
    let mut registered = false;
    for _ in 0..50 {
        let r = node
            .rpc(
                peer,
                "erlang",
                "whereis",
                vec![atom("demo_peer")],
                Duration::from_secs(5),
            )
            .await;
        if matches!(r, Ok(Term::Pid(_))) {
            registered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    if !registered {
        bail!("demo_peer never registered on {peer}");
    }
    let mut me = node.spawn_process();
    let dest = cpg_node::process::Dest::Name("demo_peer".into(), peer.into());
    let expect = |what: &str, s: Option<Signal>| -> Result<Term> {
        match s {
            Some(Signal::Message { msg, .. }) => {
                println!("rust: {what}: got {msg}");
                Ok(msg)
            }
            other => bail!("{what}: expected a message, got {other:?}"),
        }
    };
    // 1. a message round trip
    me.send(
        dest.clone(),
        tuple(vec![Term::Pid(me.pid().clone()), atom("hello_from_rust")]),
    )?;
    let s = me.recv_timeout(Duration::from_secs(5)).await.ok().flatten();
    expect("message round trip", s)?;
    // 2. the erl node calls our echo gen_server
    me.send(
        dest.clone(),
        tuple(vec![
            Term::Pid(me.pid().clone()),
            tuple(vec![atom("call_me"), atom("ping_via_gen_server")]),
        ]),
    )?;
    let s = me.recv_timeout(Duration::from_secs(5)).await.ok().flatten();
    expect("erl called rust echo", s)?;
    // 3. cpg: the erl side plays a cpg scope against ours
    me.send(
        dest.clone(),
        tuple(vec![Term::Pid(me.pid().clone()), atom("cpg_new")]),
    )?;
    let s = me
        .recv_timeout(Duration::from_secs(10))
        .await
        .ok()
        .flatten();
    expect("erl spoke cpg to our scope", s)?;
    let mut seen = false;
    for _ in 0..50 {
        if let Ok((_, pids)) = scope.get_members("from_erl") {
            println!(
                "rust: cpg get_members(\"from_erl\") -> {}",
                pids.iter()
                    .map(term::pid_text)
                    .collect::<Vec<_>>()
                    .join(" ")
            );
            seen = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    if !seen {
        bail!("the erl member's join did not reach the Rust scope");
    }
    // 4. monitor the erl side process from Rust, and let it monitor our echo
    let erl_pid = node_whereis_remote(&mut me, &dest).await?;
    let mref = me.monitor(erl_pid.clone());
    me.send(
        dest,
        tuple(vec![Term::Pid(me.pid().clone()), atom("monitor_echo")]),
    )?;
    let s = me.recv_timeout(Duration::from_secs(5)).await.ok().flatten();
    expect("erl monitors rust echo", s)?;
    println!("rust: stopping the echo process; erl should see 'DOWN'");
    if let Some(echo) = node.whereis("echo") {
        me.exit_other(&echo, atom("kill"));
    }
    match me.recv_timeout(Duration::from_secs(15)).await {
        Ok(Some(Signal::Down {
            mref: r,
            item,
            reason,
        })) if r == mref => {
            println!("rust: our monitor on {item} fired: {reason}");
        }
        other => println!("rust: monitor result: {other:?}"),
    }
    println!("demo done");
    Ok(0)
}

async fn node_whereis_remote(
    me: &mut Process,
    dest: &cpg_node::process::Dest,
) -> Result<cpg_node::Pid> {
    me.send(
        dest.clone(),
        tuple(vec![Term::Pid(me.pid().clone()), atom("who")]),
    )?;
    match me.recv_timeout(Duration::from_secs(5)).await {
        Ok(Some(Signal::Message { msg, .. })) => match term::as_tuple(&msg) {
            Some([Term::Pid(p), _]) => Ok(p.clone()),
            _ => bail!("unexpected {msg}"),
        },
        other => bail!("no answer: {other:?}"),
    }
}

async fn demo_with_rust(node: &Node, cookie: &str, suffix: &str, cfg: &NodeConfig) -> Result<i32> {
    let name = NodeName::parse(&format!("demo_rust2_{suffix}@{}", cfg.name.host()))?;
    let mut c2 = NodeConfig::new(name, Cookie::new(cookie));
    c2.epmd_port = cfg.epmd_port;
    let other = Node::start(c2).await?;
    let other_scope = CpgScope::start(&other, ScopeOptions::new(DEFAULT_SCOPE))?;
    let mut peer = other.spawn_registered("demo_peer")?;
    tokio::spawn(async move {
        while let Ok(Signal::Message { msg, .. }) = peer.recv().await {
            if let Some([Term::Pid(from), m]) = term::as_tuple(&msg) {
                let _ = peer.send(
                    from.clone(),
                    tuple(vec![Term::Pid(peer.pid().clone()), m.clone()]),
                );
            }
        }
    });
    let r = async {
        if !node.ping(other.name()).await {
            bail!("second Rust node did not answer ping");
        }
        println!("rust: ping {}: pong", other.name());
        let mut me = node.spawn_process();
        let dest = cpg_node::process::Dest::Name("demo_peer".into(), other.name().into());
        me.send(
            dest,
            tuple(vec![Term::Pid(me.pid().clone()), atom("hello")]),
        )?;
        let got = me.recv_timeout(Duration::from_secs(5)).await;
        match got {
            Ok(Some(s)) => println!("rust: round trip: got {}", s.to_term()),
            other => bail!("no round trip: {other:?}"),
        }
        let mut caller = other.spawn_process();
        let r = caller
            .call(
                cpg_node::process::Dest::Name("echo".into(), node.name().into()),
                atom("hi"),
                Duration::from_secs(5),
            )
            .await;
        println!("rust2: gen_server call to echo: {}", r?);
        for _ in 0..50 {
            if let Ok((key, pid)) = other_scope.get_closest_pid("demo/x") {
                println!(
                    "rust2: cpg get_closest_pid(\"demo/x\") -> {key:?} {}",
                    term::pid_text(&pid)
                );
                let r = caller
                    .call(pid, atom("hello_member"), Duration::from_secs(5))
                    .await;
                println!("rust2: gen_server call to that member: {}", r?);
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        println!("demo done");
        Ok(0)
    }
    .await;
    other.shutdown().await;
    r
}
