//! `cpg-node demo`: a local demo for a user with no cluster at hand. It
//! starts what it needs on loopback (EPMD if none runs, a real `erl` node
//! when Erlang is installed, else a second Rust node), exchanges messages,
//! calls and monitors, shows cpg groups both ways, prints what each side
//! saw, and stops everything it started.

use crate::cli::{config, spawn_echo, NodeArgs};
use anyhow::{bail, Context, Result};
use cpg_node::config::{Cookie, NodeConfig, NodeName};
use cpg_node::cpg::{CpgScope, ScopeOptions, DEFAULT_SCOPE};
use cpg_node::process::{Process, Signal};
use cpg_node::term::{self, atom, tuple, Term};
use cpg_node::Node;
use std::time::Duration;

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

/// Runs the demo; returns the exit code.
pub async fn demo(args: NodeArgs) -> Result<i32> {
    let cookie = args
        .cookie
        .clone()
        .unwrap_or_else(|| format!("demo{}", rand_u32()));
    let suffix = format!("{}_{}", std::process::id(), rand_u32() % 10000);
    let cfg = config(
        &NodeArgs {
            cookie: Some(cookie.clone()),
            name: Some(args.name.clone().unwrap_or(format!("demo_rust_{suffix}"))),
            ..args.clone()
        },
        "demo_rust",
    )?;
    let node = Node::start(cfg.clone())
        .await
        .with_context(|| format!("cannot start node {}", cfg.name))?;
    outln!(
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
    outln!(
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
        outln!("rust: erl not found; demo with a second Rust node instead");
        demo_with_rust(&node, &cookie, &suffix, &cfg).await
    };
    node.shutdown().await;
    code
}

/// What a `recv_timeout` gave, for the demo's output.
fn received(r: &std::result::Result<Option<Signal>, Term>) -> String {
    match r {
        Ok(Some(s)) => format!("got {}", s.to_term()),
        Ok(None) => "nothing in time".to_string(),
        Err(reason) => format!("the process exited: {reason}"),
    }
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
    let mut cmd = tokio::process::Command::new("erl");
    cmd.args([
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
    .kill_on_drop(true);
    // Its own process group: a Ctrl-C at the terminal reaches the demo,
    // which stops erl below, and not erl (whose break menu it would show).
    #[cfg(unix)]
    cmd.process_group(0);
    // SIGINT or SIGTERM stops erl too: `kill_on_drop` does nothing when the
    // demo is killed by a signal, and erl would run on until its own 30 s
    // timer. Listening starts here, before erl does.
    let interrupted = super::wait_for_signal();
    let mut child = cmd.spawn().context("starting erl")?;
    outln!(
        "rust: started a real erl node {erl_name} (OS pid {})",
        child.id().unwrap_or_default()
    );
    tokio::pin!(interrupted);
    let result = tokio::select! {
        r = demo_steps(node, scope, &erl_name) => r,
        code = &mut interrupted => {
            outln!("rust: interrupted; stopping {erl_name}");
            let _ = child.kill().await;
            return Ok(code);
        }
    };
    tokio::select! {
        _ = tokio::time::timeout(Duration::from_secs(10), child.wait()) => {}
        code = &mut interrupted => {
            let _ = child.kill().await;
            return Ok(code);
        }
    }
    let _ = child.kill().await;
    // After erl's own last line.
    if result.is_ok() {
        outln!("demo done");
    }
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
    outln!("rust: ping {peer} (as net_adm:ping does): pong");
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
                outln!("rust: {what}: got {msg}");
                Ok(msg)
            }
            Some(other) => bail!("{what}: expected a message, got {}", other.to_term()),
            None => bail!("{what}: no answer in time"),
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
            outln!(
                "rust: cpg get_members(\"from_erl\") -> {}",
                pids.iter()
                    .map(|p| p.to_string())
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
    outln!("rust: asking demo_peer for its pid (`who`), to monitor it");
    let erl_pid = node_whereis_remote(&mut me, &dest).await?;
    let mref = me.monitor(erl_pid.clone());
    me.send(
        dest,
        tuple(vec![Term::Pid(me.pid().clone()), atom("monitor_echo")]),
    )?;
    let s = me.recv_timeout(Duration::from_secs(5)).await.ok().flatten();
    expect("erl monitors rust echo", s)?;
    outln!("rust: killing the echo process; erl should see 'DOWN' with reason killed");
    if let Some(echo) = node.whereis("echo") {
        me.exit_other(&echo, atom("kill"));
    }
    match me.recv_timeout(Duration::from_secs(15)).await {
        Ok(Some(Signal::Down {
            mref: r,
            item,
            reason,
        })) if r == mref => {
            outln!("rust: our monitor on {item} fired: {reason}");
        }
        other => outln!("rust: our monitor did not fire: {}", received(&other)),
    }
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
        other => bail!("no answer: {}", received(&other)),
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
        outln!("rust: ping {}: pong", other.name());
        let mut me = node.spawn_process();
        let dest = cpg_node::process::Dest::Name("demo_peer".into(), other.name().into());
        me.send(
            dest,
            tuple(vec![Term::Pid(me.pid().clone()), atom("hello")]),
        )?;
        let got = me.recv_timeout(Duration::from_secs(5)).await;
        match got {
            Ok(Some(s)) => outln!("rust: round trip: got {}", s.to_term()),
            other => bail!("no round trip: {}", received(&other)),
        }
        let mut caller = other.spawn_process();
        let r = caller
            .call(
                cpg_node::process::Dest::Name("echo".into(), node.name().into()),
                atom("hi"),
                Duration::from_secs(5),
            )
            .await;
        outln!("rust2: gen_server call to echo: {}", r?);
        for _ in 0..50 {
            if let Ok((key, pid)) = other_scope.get_closest_pid("demo/x") {
                outln!("rust2: cpg get_closest_pid(\"demo/x\") -> \"{key}\" {pid}");
                let r = caller
                    .call(pid, atom("hello_member"), Duration::from_secs(5))
                    .await;
                outln!("rust2: gen_server call to that member: {}", r?);
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        outln!("demo done");
        Ok(0)
    }
    .await;
    other.shutdown().await;
    r
}
