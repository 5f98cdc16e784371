//! Subcommands of the `cpg-node` binary.

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};
use cpg_node::config::{default_cookie, Cookie, NodeConfig, NodeName};
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
    },
    /// Ping a node: prints pong (exit 0) or pang (exit 1).
    Ping {
        /// The node.
        node: String,
    },
    /// A local demo: starts what it needs on loopback, shows the node at work.
    Demo,
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
        Cmd::Run { connect, register } => {
            let node = Node::start(config(&cli.node, "cpg_node")?).await?;
            for name in &register {
                spawn_echo(node.spawn_registered(name)?);
                tracing::info!("echo process registered as {name}");
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
        Cmd::Demo => crate::cli::demo(cli.node).await,
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

    let erl_available = std::process::Command::new("erl")
        .arg("-version")
        .stderr(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    let host = cfg.name.host().to_string();
    let code = if erl_available {
        demo_with_erl(&node, &cookie, &suffix, &host).await
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

async fn demo_with_erl(node: &Node, cookie: &str, suffix: &str, host: &str) -> Result<i32> {
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
    let result = demo_steps(node, &erl_name).await;
    let _ = tokio::time::timeout(Duration::from_secs(10), child.wait()).await;
    let _ = child.kill().await;
    result
}

async fn demo_steps(node: &Node, peer: &str) -> Result<i32> {
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
    // 3. monitor the erl side process from Rust, and let it monitor our echo
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
        println!("rust: round trip: {got:?}");
        let mut caller = other.spawn_process();
        let r = caller
            .call(
                cpg_node::process::Dest::Name("echo".into(), node.name().into()),
                atom("hi"),
                Duration::from_secs(5),
            )
            .await;
        println!("rust2: gen_server call to echo: {r:?}");
        println!("demo done");
        Ok(0)
    }
    .await;
    other.shutdown().await;
    r
}
