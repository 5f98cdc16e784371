//! The hidden node as real Erlang nodes see it.

use crate::require_erl;
use crate::support::{
    eval, eval_with, is_atom, recorded_eventually, rpc, show, sig, ErlNode, World,
};
use cpg_node::config::{Cookie, NodeName, QueueLimit};
use cpg_node::dist::connection::ConnectionError;
use cpg_node::dist::handshake::{HandshakeError, Local, PeerInfo, Status};
use cpg_node::node::cluster::{Cluster, ClusterOptions};
use cpg_node::process::{Dest, Process, Signal};
use cpg_node::term::{self, atom, tuple, Term};
use cpg_node::Node;
use std::time::Duration;

const T: Duration = Duration::from_secs(10);

/// `cpg_node_test_util:F(Args)` on the erl node `erl` (`erl_test/`),
/// called through `r`.
async fn util(r: &Node, erl: &str, f: &str, args: Vec<Term>) -> Term {
    rpc(r, erl, "cpg_node_test_util", f, args).await
}

/// `r` is among `erl`'s hidden peers (`nodes(hidden)`).
async fn assert_hidden_peer_of(r: &Node, erl: &str) {
    let code = format!("lists:member('{}', nodes(hidden)).", r.name());
    let hidden = eval(r, erl, &code).await;
    assert!(is_atom(&hidden, "true"), "{hidden}");
}

/// A Rust node, an erl node running a recorder registered as `rec`
/// (`cpg_node_test_util:spawn_recorder/1`: `{Pid, echo, X}` sends `X` to
/// `Pid`), and a Rust process.
async fn with_recorder() -> (World, Node, ErlNode, Process) {
    let w = World::new().await;
    let r = w.rust_node("r").await;
    let e = w.erl("e").await;
    let me = r.spawn_process();
    util(&r, &e.name, "spawn_recorder", vec![atom("rec")]).await;
    (w, r, e, me)
}

#[tokio::test]
async fn ping_and_hidden_both_ways() {
    require_erl!();
    let w = World::new().await;
    let r = w.rust_node("r").await;
    let e = w.erl("e").await;
    // Rust -> erl
    assert!(r.ping(&e.name).await, "rust ping of erl");
    // erl -> Rust: net_adm:ping, and the node is hidden.
    let pong = eval(&r, &e.name, &format!("net_adm:ping('{}').", r.name())).await;
    assert!(is_atom(&pong, "pong"), "{pong}");
    assert_hidden_peer_of(&r, &e.name).await;
    let visible = eval(
        &r,
        &e.name,
        &format!("lists:member('{}', nodes()).", r.name()),
    )
    .await;
    assert!(is_atom(&visible, "false"), "{visible}");
    r.shutdown().await;
}

#[tokio::test]
async fn erl_dials_rust_first() {
    require_erl!();
    let w = World::new().await;
    let r = w.rust_node("r").await;
    let mut echo = r.spawn_registered("echo").unwrap();
    tokio::spawn(async move { echo.serve_calls(|_, req| req.clone()).await });
    // A second Rust node only tells erl what to do; erl itself dials r.
    let e = w.erl("e").await;
    let ctl = w.rust_node("ctl").await;
    let got = eval(
        &ctl,
        &e.name,
        &format!("gen_server:call({{echo, '{}'}}, hi).", r.name()),
    )
    .await;
    assert!(
        is_atom(&got, "hi"),
        "gen_server:call to the Rust echo: {got}"
    );
    let pong = eval(&ctl, &e.name, &format!("net_adm:ping('{}').", r.name())).await;
    assert!(is_atom(&pong, "pong"));
    assert!(r.peers().contains(&e.name));
}

/// An IPv6 cluster (`erl -proto_dist inet6_tcp`, as on Fly.io's private
/// network): we dial its node over IPv6, and it dials us (our listener
/// takes IPv4 and IPv6 alike; it took IPv4 only, and such a node's ping
/// of ours was `pang`).
#[tokio::test]
async fn an_inet6_tcp_node_and_ours_dial_each_other() {
    require_erl!();
    if std::net::TcpListener::bind("[::1]:0").is_err() {
        eprintln!("SKIPPED an_inet6_tcp_node_and_ours_dial_each_other: this machine has no IPv6 loopback (::1)");
        return;
    }
    // An EPMD on both loopbacks, as erl's epmd listens on both families.
    let epmd =
        cpg_node::epmd::server::EpmdServer::start_with(cpg_node::epmd::server::EpmdOptions {
            also: vec![std::net::Ipv6Addr::LOCALHOST.into()],
            port: 0,
            ..Default::default()
        })
        .await
        .unwrap();
    let cookie = crate::support::cookie();
    let config = |prefix: &str| {
        let name = format!("{}@::1", crate::support::unique(prefix));
        let mut c =
            cpg_node::NodeConfig::new(NodeName::parse(&name).unwrap(), Cookie::new(cookie.clone()));
        c.epmd_port = epmd.port;
        c.embedded_epmd = false;
        c
    };
    let r = Node::start(config("r6")).await.unwrap();
    let mut echo = r.spawn_registered("echo").unwrap();
    tokio::spawn(async move { echo.serve_calls(|_, req| req.clone()).await });
    let e = ErlNode::start_inet6(&crate::support::unique("e6"), &cookie, epmd.port).await;
    // Ours dials it (over IPv6: its name's host is ::1).
    let ctl = Node::start(config("ctl6")).await.unwrap();
    assert!(ctl.ping(&e.name).await, "our ping of the inet6_tcp node");
    // It dials ours: a call to our echo, then it lists us as hidden.
    let code = format!(
        "R = list_to_atom(\"{r}\"), {{gen_server:call({{echo, R}}, hi), net_adm:ping(R), lists:member(R, nodes(hidden))}}.",
        r = r.name()
    );
    let got = eval(&ctl, &e.name, &code).await;
    assert_eq!(
        show(&got),
        "{'hi','pong','true'}",
        "the inet6_tcp node's call, ping and nodes(hidden)"
    );
    assert!(r.peers().contains(&e.name), "{:?}", r.peers());
    r.shutdown().await;
    ctl.shutdown().await;
}

/// EPMD-less distribution (`erl -start_epmd false -erl_epmd_port P`, OTP
/// 23.1+, as clusters in containers run): no EPMD anywhere, every node at
/// the one port. Ours dials such a node, and such a node dials ours.
#[tokio::test]
async fn epmd_less_nodes_and_ours_dial_each_other() {
    require_erl!();
    let free_port = || {
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    };
    // An EPMD port where nothing listens: any lookup there would fail.
    let no_epmd = free_port();
    let cookie = crate::support::cookie();
    let config = |prefix: &str, port: u16| {
        let mut c = crate::support::node_config(prefix, &cookie, no_epmd);
        c.embedded_epmd = false;
        c.epmd_less(port);
        c
    };
    // 1. A BEAM node listening on p1; ours, a client at p1 (listening on
    // any port), dials it.
    let p1 = free_port().to_string();
    let e = ErlNode::start(
        &crate::support::unique("el"),
        &cookie,
        no_epmd,
        &["-erl_epmd_port", &p1, "-start_epmd", "false"],
    )
    .await;
    let mut c = config("elc", p1.parse().unwrap());
    c.listen_ports = cpg_node::config::PortRange::ANY;
    let ctl = Node::start(c).await.expect("started with no EPMD");
    assert!(ctl.ping(&e.name).await, "our ping of the EPMD-less node");
    let code = format!("lists:member('{}', nodes(hidden)).", ctl.name());
    assert!(is_atom(&eval(&ctl, &e.name, &code).await, "true"));
    // Another node answering at the port is not taken for the one dialled.
    let other = format!("nosuch@{}", crate::support::host());
    let err = ctl.connect(&other).await.unwrap_err().to_string();
    assert!(err.contains("answered"), "{err}");
    // 2. Ours listening on p2; a BEAM node that does not listen dials it.
    let p2 = free_port();
    let r = Node::start(config("elr", p2)).await.unwrap();
    assert_eq!(r.port(), p2);
    let mut echo = r.spawn_registered("echo").unwrap();
    tokio::spawn(async move { echo.serve_calls(|_, req| req.clone()).await });
    let mut rec = r.spawn_registered("rec").unwrap();
    let dial = format!(
        "R = '{r}', {{rec, R}} ! {{report, net_adm:ping(R), gen_server:call({{echo, R}}, hi)}}, \
         receive after 2000 -> ok end, halt().",
        r = r.name()
    );
    let p2s = p2.to_string();
    let _e2 = ErlNode::start(
        &crate::support::unique("eld"),
        &cookie,
        no_epmd,
        &[
            "-hidden",
            "-erl_epmd_port",
            &p2s,
            "-start_epmd",
            "false",
            "-dist_listen",
            "false",
            "-eval",
            &dial,
        ],
    )
    .await;
    match rec.recv_timeout(T).await {
        Ok(Some(Signal::Message { msg, .. })) => {
            assert_eq!(show(&msg), "{'report','pong','hi'}")
        }
        other => panic!("no report from the dialling node: {other:?}"),
    }
    r.shutdown().await;
    ctl.shutdown().await;
}

#[tokio::test]
async fn messages_and_calls_both_ways() {
    require_erl!();
    let (_w, _r, e, mut me) = with_recorder().await;
    // Rust -> erl registered name, and back to our pid.
    me.send(
        Dest::Name("rec".into(), e.name.clone()),
        tuple(vec![
            Term::Pid(me.pid().clone()),
            atom("echo"),
            atom("back"),
        ]),
    )
    .unwrap();
    match me.recv_timeout(T).await.unwrap() {
        Some(Signal::Message { msg, .. }) => assert!(is_atom(&msg, "back"), "{msg}"),
        other => panic!("no echo: {other:?}"),
    }
    // Rust calls a BEAM gen_server (kernel_sup is a supervisor).
    let reply = me
        .call(
            Dest::Name("kernel_sup".into(), e.name.clone()),
            atom("count_children"),
            T,
        )
        .await
        .unwrap();
    assert!(show(&reply).contains("active"), "{reply}");
    // A call to a name that does not exist fails at once (noproc), not by timeout.
    let t0 = std::time::Instant::now();
    let err = me
        .call(
            Dest::Name("no_such_server".into(), e.name.clone()),
            atom("x"),
            T,
        )
        .await
        .unwrap_err();
    assert!(
        matches!(err, cpg_node::process::CallError::Down(ref r) if is_atom(r, "noproc")),
        "{err}"
    );
    assert!(t0.elapsed() < Duration::from_secs(5));
}

/// A BEAM process streams 50k messages to a Rust process while another
/// makes 200 calls to a Rust echo over the same connection: with read
/// coalescing on (the default), every message arrives, in order, and every
/// call is answered.
#[tokio::test]
async fn a_stream_from_erl_arrives_whole_and_in_order_with_calls_meanwhile() {
    require_erl!();
    let w = World::new().await;
    let r = w.rust_node("r").await;
    assert!(r.config().read_hold.is_some());
    let e = w.erl("e").await;
    let mut me = r.spawn_process();
    let mut echo = r.spawn_process();
    let echo_pid = echo.pid().clone();
    tokio::spawn(async move { echo.serve_calls(|_, req| req.clone()).await });
    const N: i64 = 50_000;
    let code = format!(
        "Self = self(), \
         S = spawn(fun() -> lists:foreach(fun(I) -> P ! {{m, I}} end, lists:seq(1, {N})), \
                            Self ! sent end), \
         Rs = [gen_server:call(E, I) || I <- lists:seq(1, 200)], \
         receive sent -> ok end, \
         Rs =:= lists:seq(1, 200)."
    );
    let bindings = [
        ("P", Term::Pid(me.pid().clone())),
        ("E", Term::Pid(echo_pid)),
    ];
    let calls = tokio::spawn({
        let r = r.clone();
        let name = e.name.clone();
        async move { eval_with(&r, &name, &code, &bindings).await }
    });
    for i in 1..=N {
        match me.recv_timeout(Duration::from_secs(30)).await.unwrap() {
            Some(Signal::Message { msg, .. }) => {
                let got = term::as_tuple(&msg).and_then(|t| term::as_int(&t[1]));
                assert_eq!(got, Some(i), "{msg}");
            }
            other => panic!("message {i} of {N} missing: {other:?}"),
        }
    }
    assert!(is_atom(&calls.await.unwrap(), "true"));
}

#[tokio::test]
async fn erl_monitors_rust_processes() {
    require_erl!();
    let w = World::new().await;
    let r = w.rust_node("r").await;
    let e = w.erl("e").await;
    let p = r.spawn_process();
    let pid = p.pid().clone();
    let watcher = util(
        &r,
        &e.name,
        "spawn_monitor_of",
        vec![Term::Pid(pid.clone())],
    )
    .await;
    assert!(term::as_pid(&watcher).is_some(), "{watcher}");
    // Give the MONITOR_P time to arrive, then end the process with a reason.
    tokio::time::sleep(Duration::from_millis(200)).await;
    p.exit(atom("boom"));
    let seen = recorded_eventually(&r, &e.name, &watcher, &["'DOWN'", "boom"]).await;
    assert!(seen, "erl monitor did not get DOWN with reason boom");
    let code = format!(
        "R = erlang:monitor(process, {{no_such_name, '{}'}}), receive {{'DOWN', R, process, _, Why}} -> Why after 3000 -> timeout end.",
        r.name()
    );
    let got = eval(&r, &e.name, &code).await;
    assert!(
        is_atom(&got, "noproc"),
        "monitor by name on a missing name: {got}"
    );
}

#[tokio::test]
async fn monitor_nonexistent_rust_pid_is_noproc() {
    require_erl!();
    let w = World::new().await;
    let r = w.rust_node("r").await;
    let e = w.erl("e").await;
    let p = r.spawn_process();
    let mut dead = p.pid().clone();
    dead.id += 1_000_000;
    // Ask erl to monitor the dead pid: use a recorder that monitors it.
    let watcher = util(&r, &e.name, "spawn_monitor_of", vec![Term::Pid(dead)]).await;
    let seen = recorded_eventually(&r, &e.name, &watcher, &["noproc"]).await;
    assert!(seen, "no immediate noproc DOWN");
}

#[tokio::test]
async fn rust_monitors_and_links_erl_processes() {
    require_erl!();
    let w = World::new().await;
    let r = w.rust_node("r").await;
    let e = w.erl("e").await;
    let mut me = r.spawn_process();
    me.trap_exit(true);
    let a = util(&r, &e.name, "spawn_idle", vec![]).await;
    let b = util(&r, &e.name, "spawn_idle", vec![]).await;
    let (a, b) = (
        term::as_pid(&a).unwrap().clone(),
        term::as_pid(&b).unwrap().clone(),
    );
    let mref = me.monitor(a.clone());
    me.link(&b);
    tokio::time::sleep(Duration::from_millis(100)).await;
    me.send(a.clone(), tuple(vec![atom("exit"), atom("bye")]))
        .unwrap();
    me.send(b.clone(), tuple(vec![atom("exit"), atom("linked_bye")]))
        .unwrap();
    let mut got_down = false;
    let mut got_exit = false;
    for _ in 0..2 {
        match me.recv_timeout(T).await.unwrap() {
            Some(Signal::Down {
                mref: m, reason, ..
            }) if m == mref && is_atom(&reason, "bye") => got_down = true,
            Some(Signal::Exit { from, reason, .. })
                if from == b && is_atom(&reason, "linked_bye") =>
            {
                got_exit = true
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(got_down && got_exit);
}

#[tokio::test]
async fn erl_links_to_rust_process() {
    require_erl!();
    let w = World::new().await;
    let r = w.rust_node("r").await;
    let e = w.erl("e").await;
    let p = r.spawn_process();
    let trapper = util(
        &r,
        &e.name,
        "spawn_linked_trapper",
        vec![Term::Pid(p.pid().clone())],
    )
    .await;
    assert!(term::as_pid(&trapper).is_some(), "{trapper}");
    p.exit(atom("boom"));
    let ok = recorded_eventually(&r, &e.name, &trapper, &["'EXIT'", "boom"]).await;
    assert!(ok, "linked erl process did not get EXIT boom");
    // Linking to a pid that does not exist: the trapper gets noproc.
    let mut gone = r.spawn_process().pid().clone();
    gone.id += 1_000_000;
    let trapper = util(&r, &e.name, "spawn_linked_trapper", vec![Term::Pid(gone)]).await;
    let ok = recorded_eventually(&r, &e.name, &trapper, &["noproc"]).await;
    assert!(ok, "link to a missing Rust pid did not give noproc");
}

#[tokio::test]
async fn wrong_cookie_refused_both_ways() {
    require_erl!();
    let w = World::new().await;
    let r = w.rust_node("r").await;
    let e = ErlNode::start(
        &crate::support::unique("e"),
        "another_cookie",
        w.epmd.port,
        &[],
    )
    .await;
    assert!(
        !r.ping(&e.name).await,
        "rust with the wrong cookie must get pang"
    );
    // erl -> Rust with the wrong cookie: use a third node with erl's cookie
    // to ask erl to ping us.
    let mut c2 = w.config("ctl");
    c2.cookie = cpg_node::config::Cookie::new("another_cookie");
    let ctl = cpg_node::Node::start(c2).await.unwrap();
    let got = eval(&ctl, &e.name, &format!("net_adm:ping('{}').", r.name())).await;
    assert!(is_atom(&got, "pang"), "{got}");
    assert!(!r.peers().contains(&e.name));
}

#[tokio::test]
async fn one_mebibyte_both_ways() {
    require_erl!();
    let (_w, r, e, mut me) = with_recorder().await;
    let big = term::binary(vec![b'x'; 1 << 20]);
    // Rust -> erl -> Rust: erl echoes the binary back.
    me.send(
        Dest::Name("rec".into(), e.name.clone()),
        tuple(vec![Term::Pid(me.pid().clone()), atom("echo"), big.clone()]),
    )
    .unwrap();
    match me.recv_timeout(T).await.unwrap() {
        Some(Signal::Message { msg, .. }) => assert_eq!(msg, big),
        other => panic!("no 1 MiB echo: {other:?}"),
    }
    // erl -> Rust built on the erl side.
    let got = util(&r, &e.name, "big_binary", vec![term::int(1 << 20)]).await;
    assert_eq!(got, big);
}

/// Our messages name their atoms through the BEAM's atom cache
/// (`DFLAG_DIST_HDR_ATOM_CACHE`): a BEAM node reads them as written, with
/// more than 255 atoms in one message, long and non-ASCII atoms, more
/// distinct atoms than the cache holds (slots replaced), atoms sent again
/// (references to entries it holds), and a fragmented message whose first
/// fragment carries the entries. Each comes back through its echo.
#[tokio::test]
async fn atoms_through_the_atom_cache_reach_erl_as_written() {
    require_erl!();
    let (_w, _r, e, mut me) = with_recorder().await;
    let names = |from: usize, n: usize| -> Term {
        term::list(
            (from..from + n)
                .map(|i| match i % 97 {
                    0 => atom(&"é".repeat(1 + i % 255)),
                    1 => atom(&"L".repeat(255)),
                    2 => atom(""),
                    _ => atom(&format!("cache_atom_{i}")),
                })
                .collect(),
        )
    };
    let mut terms: Vec<Term> = vec![names(0, 600)];
    terms.extend((0..40).map(|i| names(i * 100, 100)));
    terms.push(names(0, 600));
    terms.push(tuple(vec![
        names(5000, 300),
        term::binary(vec![b'f'; 300_000]),
        names(0, 50),
    ]));
    terms.push(names(0, 600));
    for t in &terms {
        me.send(
            Dest::Name("rec".into(), e.name.clone()),
            tuple(vec![Term::Pid(me.pid().clone()), atom("echo"), t.clone()]),
        )
        .unwrap();
    }
    for (i, t) in terms.iter().enumerate() {
        match me.recv_timeout(T).await.unwrap() {
            Some(Signal::Message { msg, .. }) => assert!(&msg == t, "echo {i} differs"),
            other => panic!("no echo {i}: {other:?}"),
        }
    }
}

/// `Process::monitor_many`: the monitors of several pids of one BEAM node,
/// queued in one go, behave as one `monitor` each: a death fires the
/// right ref with its reason, a demonitored one stays silent, and the
/// rest fire `noconnection` when the node goes.
#[tokio::test]
async fn monitor_many_on_an_erl_node() {
    require_erl!();
    let w = World::new().await;
    let r = w.rust_node("r").await;
    let mut e = w.erl("e").await;
    let mut me = r.spawn_process();
    let mut pids = Vec::new();
    for _ in 0..3 {
        let p = util(&r, &e.name, "spawn_idle", vec![]).await;
        pids.push(term::as_pid(&p).unwrap().clone());
    }
    // A local pid in the batch too.
    let local = r.spawn_process();
    pids.push(local.pid().clone());
    let refs = me.monitor_many(&pids);
    assert_eq!(refs.len(), 4);
    me.demonitor(&refs[1]);
    // Monitors reached e before the kill: e fires the first with `killed`.
    rpc(
        &r,
        &e.name,
        "erlang",
        "exit",
        vec![Term::Pid(pids[0].clone()), atom("kill")],
    )
    .await;
    match me.recv_timeout(T).await.unwrap() {
        Some(Signal::Down { mref, item, reason }) => {
            assert_eq!(mref, refs[0]);
            assert_eq!(item, Term::Pid(pids[0].clone()));
            assert!(is_atom(&reason, "killed"), "{reason}");
        }
        other => panic!("expected the first pid's DOWN, got {other:?}"),
    }
    drop(local);
    match me.recv_timeout(T).await.unwrap() {
        Some(Signal::Down { mref, .. }) => assert_eq!(mref, refs[3]),
        other => panic!("expected the local pid's DOWN, got {other:?}"),
    }
    e.kill();
    match me.recv_timeout(T).await.unwrap() {
        Some(Signal::Down { mref, reason, .. }) => {
            assert_eq!(mref, refs[2]);
            assert!(is_atom(&reason, "noconnection"), "{reason}");
        }
        other => panic!("expected noconnection DOWN, got {other:?}"),
    }
    // The demonitored one never fires.
    assert_eq!(
        me.recv_timeout(Duration::from_millis(200)).await.unwrap(),
        None
    );
}

#[tokio::test]
async fn erl_node_restart_and_connection_loss() {
    require_erl!();
    let w = World::new().await;
    let r = w.rust_node("r").await;
    let mut e = w.erl("e").await;
    let mut me = r.spawn_process();
    let idle = util(&r, &e.name, "spawn_idle", vec![]).await;
    let idle = term::as_pid(&idle).unwrap().clone();
    let mref = me.monitor(idle.clone());
    tokio::time::sleep(Duration::from_millis(100)).await;
    e.kill();
    match me.recv_timeout(T).await.unwrap() {
        Some(Signal::Down {
            mref: m, reason, ..
        }) => {
            assert_eq!(m, mref);
            assert!(is_atom(&reason, "noconnection"), "{reason}");
        }
        other => panic!("expected noconnection DOWN, got {other:?}"),
    }
    e.restart().await;
    assert!(r.ping(&e.name).await, "ping after the erl node restarted");
    let pong = eval(&r, &e.name, &format!("net_adm:ping('{}').", r.name())).await;
    assert!(is_atom(&pong, "pong"));
}

#[tokio::test]
async fn rust_node_stop_fires_erl_monitors() {
    require_erl!();
    let w = World::new().await;
    let r = w.rust_node("r").await;
    let _echo = r.spawn_registered("echo").unwrap();
    let e = w.erl("e").await;
    let ctl = w.rust_node("ctl").await;
    let target = tuple(vec![atom("echo"), atom(r.name())]);
    let watcher = util(&ctl, &e.name, "spawn_monitor_of", vec![target]).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    r.shutdown().await;
    let ok = recorded_eventually(&ctl, &e.name, &watcher, &["'DOWN'"]).await;
    assert!(
        ok,
        "erl monitor on {{echo, Rust}} did not fire when the Rust node stopped"
    );
}

#[tokio::test]
async fn ticks_keep_idle_links_and_silent_peers_go_down() {
    require_erl!();
    let w = World::new().await;
    let mut cfg = w.config("r");
    cfg.net_ticktime = Duration::from_secs(2);
    let r = cpg_node::Node::start(cfg).await.unwrap();
    let e = ErlNode::start(
        &crate::support::unique("e"),
        &w.cookie,
        w.epmd.port,
        &["-kernel", "net_ticktime", "2"],
    )
    .await;
    assert!(r.ping(&e.name).await);
    // Idle for 1.5 tick times, past the latest either side would drop a
    // silent peer (the BEAM: 4 silent quarter-intervals after the last
    // one it heard something in, at most 1.25 ticktime; we: 1 ticktime):
    // both sides tick, nobody drops the link. The tick timing itself is
    // tested on paused time (`dist::connection` tests).
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        r.peers().contains(&e.name),
        "link dropped while idle: ticks not sent or answered"
    );
    let mut me = r.spawn_process();
    let idle = util(&r, &e.name, "spawn_idle", vec![]).await;
    let mref = me.monitor(term::as_pid(&idle).unwrap().clone());
    // Freeze the erl node: the socket stays open but goes silent.
    sig(e.os_pid(), "-STOP");
    let t0 = std::time::Instant::now();
    let got = me.recv_timeout(Duration::from_secs(10)).await.unwrap();
    sig(e.os_pid(), "-CONT");
    match got {
        Some(Signal::Down {
            mref: m, reason, ..
        }) => {
            assert_eq!(m, mref);
            assert!(is_atom(&reason, "noconnection"), "{reason}");
        }
        other => panic!("silent peer not declared down: {other:?}"),
    }
    assert!(
        t0.elapsed() < Duration::from_secs(5),
        "took {:?}",
        t0.elapsed()
    );
}

#[tokio::test]
async fn simultaneous_connects_lose_no_message() {
    // Two Rust nodes dial each other at the same moment, many times: the
    // tie is settled as dist_util does and no queued message is lost.
    let w = World::new().await;
    for round in 0..10 {
        let a = w.rust_node("sa").await;
        let b = w.rust_node("sb").await;
        let mut sa = a.spawn_registered("sink").unwrap();
        let mut sb = b.spawn_registered("sink").unwrap();
        let pa = a.spawn_process();
        let pb = b.spawn_process();
        for i in 0..3 {
            pa.send(Dest::Name("sink".into(), b.name().into()), term::int(i))
                .unwrap();
            pb.send(Dest::Name("sink".into(), a.name().into()), term::int(i))
                .unwrap();
        }
        for sink in [&mut sa, &mut sb] {
            for i in 0..3 {
                match sink.recv_timeout(T).await.unwrap() {
                    Some(Signal::Message { msg, .. }) => {
                        assert_eq!(msg, term::int(i), "round {round}")
                    }
                    other => panic!("round {round}: message {i} lost: {other:?}"),
                }
            }
        }
        a.shutdown().await;
        b.shutdown().await;
    }
}

#[tokio::test]
async fn long_names_both_ways() {
    require_erl!();
    let w = World::new().await;
    let mut cfg = w.config("r");
    cfg.name = cpg_node::config::NodeName::from_cli(
        &format!("{}@127.0.0.1", crate::support::unique("rl")),
        true,
    )
    .unwrap();
    let r = cpg_node::Node::start(cfg).await.unwrap();
    let e = ErlNode::start_long(&crate::support::unique("el"), &w.cookie, w.epmd.port).await;
    assert!(r.ping(&e.name).await, "rust -> erl with long names");
    let pong = eval(&r, &e.name, &format!("net_adm:ping('{}').", r.name())).await;
    assert!(is_atom(&pong, "pong"), "{pong}");
}

/// 64 KiB messages sent into a frozen erl node with `send` (which never
/// waits) under the queue bound `max`: the socket buffers fill, then the
/// queue passes its bound and the connection is dropped (monitors see
/// noconnection) rather than left to grow.
async fn a_peer_that_cannot_keep_up_is_dropped(max: QueueLimit) {
    let w = World::new().await;
    let mut cfg = w.config("r");
    cfg.max_peer_queue = max;
    let r = cpg_node::Node::start(cfg).await.unwrap();
    let e = w.erl("e").await;
    let mut me = r.spawn_process();
    let idle = util(&r, &e.name, "spawn_idle", vec![]).await;
    let mref = me.monitor(term::as_pid(&idle).unwrap().clone());
    sig(e.os_pid(), "-STOP");
    let big = term::binary(vec![0; 64 << 10]);
    let mut refused = false;
    for _ in 0..5000 {
        if me
            .send(Dest::Name("nobody".into(), e.name.clone()), big.clone())
            .is_err()
        {
            refused = true;
            break;
        }
        tokio::task::yield_now().await;
    }
    let got = me.recv_timeout(Duration::from_secs(10)).await.unwrap();
    sig(e.os_pid(), "-CONT");
    assert!(refused, "the queue bound was never hit");
    match got {
        Some(Signal::Down {
            mref: m, reason, ..
        }) => {
            assert_eq!(m, mref);
            assert!(is_atom(&reason, "noconnection"), "{reason}");
        }
        other => panic!("expected noconnection, got {other:?}"),
    }
    assert!(!r.peers().contains(&e.name));
}

#[tokio::test]
async fn a_peer_too_many_messages_behind_is_dropped_not_buffered_forever() {
    require_erl!();
    a_peer_that_cannot_keep_up_is_dropped(QueueLimit {
        messages: 200,
        bytes: usize::MAX,
    })
    .await;
}

#[tokio::test]
async fn a_peer_too_many_bytes_behind_is_dropped_not_buffered_forever() {
    require_erl!();
    // 4 MiB: 64 messages of 64 KiB, far under the message bound
    a_peer_that_cannot_keep_up_is_dropped(QueueLimit {
        messages: 1 << 20,
        bytes: 4 << 20,
    })
    .await;
}

/// `Process::send_paced` holds a sender back while the peer is busy (as
/// BEAM suspends a process sending on a busy distribution port): into a
/// frozen erl node, 400 messages of 64 KiB (twice the queue bound that
/// drops a peer) are sent without the peer being dropped, the queue stays
/// at the busy bound (`most_queued` messages at most), and all arrive once
/// the peer runs again.
async fn a_paced_sender_waits_on_a_busy_peer(busy: QueueLimit, most_queued: usize) {
    let w = World::new().await;
    let mut cfg = w.config("r");
    cfg.busy_peer_queue = busy;
    cfg.max_peer_queue = QueueLimit {
        messages: 200,
        bytes: 13 << 20,
    };
    let r = cpg_node::Node::start(cfg).await.unwrap();
    let e = w.erl("e").await;
    let me = r.spawn_process();
    let idle = util(&r, &e.name, "spawn_idle", vec![]).await;
    let idle = term::as_pid(&idle).unwrap().clone();
    sig(e.os_pid(), "-STOP");
    let n = 400;
    let sender = {
        let idle = idle.clone();
        tokio::spawn(async move {
            let big = term::binary(vec![0; 64 << 10]);
            for _ in 0..n {
                me.send_paced(idle.clone(), big.clone()).await.unwrap();
            }
        })
    };
    tokio::time::sleep(Duration::from_secs(1)).await;
    let queued = r
        .peer_info()
        .into_iter()
        .find(|p| p.node == e.name)
        .map(|p| p.link.queued);
    let held = !sender.is_finished();
    sig(e.os_pid(), "-CONT");
    assert!(held, "the sender was not held back by the frozen peer");
    assert!(
        queued.is_some_and(|q| q <= most_queued),
        "queued: {queued:?}"
    );
    tokio::time::timeout(Duration::from_secs(60), sender)
        .await
        .expect("the sender goes on once the peer reads again")
        .unwrap();
    assert!(r.peers().contains(&e.name), "the busy peer was dropped");
    let want = tuple(vec![atom("message_queue_len"), term::int(n)]);
    let mut got = atom("none");
    for _ in 0..100 {
        let info = vec![Term::from(idle.clone()), atom("message_queue_len")];
        got = rpc(&r, &e.name, "erlang", "process_info", info).await;
        if got == want {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(got, want, "every message arrived");
}

#[tokio::test]
async fn a_paced_sender_waits_on_a_peer_busy_with_messages_and_loses_nothing() {
    require_erl!();
    let busy = QueueLimit {
        messages: 50,
        bytes: usize::MAX,
    };
    a_paced_sender_waits_on_a_busy_peer(busy, 51).await;
}

#[tokio::test]
async fn a_paced_sender_waits_on_a_peer_busy_with_bytes_and_loses_nothing() {
    require_erl!();
    // the default busy bound of bytes (BEAM's 1 MiB): 16 messages of 64 KiB
    let busy = cpg_node::config::NodeConfig::new(
        cpg_node::config::NodeName::parse("x@h").unwrap(),
        cpg_node::config::Cookie::new("c".to_string()),
    )
    .busy_peer_queue;
    assert_eq!(busy.bytes, 1 << 20);
    a_paced_sender_waits_on_a_busy_peer(busy, 17).await;
}

/// Short and long names never mix, as between two erl nodes (`erl -sname`
/// refuses to dial `x@127.0.0.1`, "System NOT running to use fully
/// qualified hostnames", and `erl -name` to dial `x@host`): our node refuses
/// to dial across, and also refuses a node of the other kind that dials it
/// (where an OTP 25 erl would accept one).
#[tokio::test]
async fn short_and_long_names_do_not_mix() {
    require_erl!();
    let w = World::new().await;
    let short = w.rust_node("s").await;
    let e = ErlNode::start_long(&crate::support::unique("el"), &w.cookie, w.epmd.port).await;
    match short.connect(&e.name).await {
        Err(err @ cpg_node::node::DownReason::MixedNames(_)) => {
            assert!(err.to_string().contains("never connects short"), "{err}")
        }
        Err(err) => panic!("not refused for its name: {err:?}"),
        Ok(()) => panic!("a short-name node connected to the long-name {}", e.name),
    }
    // A long-name node dialing the short one is refused at the name step.
    let (_, r) = handshake_as("intruder@127.0.0.1", &w.cookie, short.port()).await;
    assert_eq!(refused_with(&r), Some(Status::NotAllowed), "{r:?}");
    assert!(short.peers().is_empty());
}

/// Dials the distribution port `port` on loopback and does our side of the
/// handshake as node `name` (creation 7); the socket, to go on with.
async fn handshake_as(
    name: &str,
    cookie: &str,
    port: u16,
) -> (tokio::net::TcpStream, Result<PeerInfo, ConnectionError>) {
    let local = Local {
        name: NodeName::parse(name).unwrap(),
        creation: 7,
        flags: cpg_node::dist::flags::OFFERED,
        cookie: Cookie::new(cookie.to_string()),
    };
    let mut sock = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let r = cpg_node::dist::connection::handshake_out(&mut sock, local, None).await;
    (sock, r)
}

/// The status the acceptor refused a handshake with, if it did.
fn refused_with(r: &Result<PeerInfo, ConnectionError>) -> Option<Status> {
    match r {
        Err(ConnectionError::Handshake(HandshakeError::Rejected(s))) => Some(*s),
        _ => None,
    }
}

/// A peer that presents our own node name is refused at the name step with
/// `nok`, the status a BEAM node sends then (its `net_kernel` cannot make
/// a connection to itself); nothing comes up, and the node never dials its
/// own name, even named as a seed of its cluster keeper (it did: a peer
/// with our name was accepted, and the keeper then redialled it, that is
/// us, for a minute after each loss).
#[tokio::test]
async fn a_peer_using_our_own_name_is_refused_as_beam_refuses_it() {
    require_erl!();
    let w = World::new().await;
    let r = w.rust_node("r").await;
    let e = w.erl("e").await;
    let mut events = r.subscribe();
    let cluster = Cluster::start(&r, ClusterOptions::new(vec![r.name().to_string()]));
    let (_, r_said) = handshake_as(r.name(), &w.cookie, r.port()).await;
    assert_eq!(refused_with(&r_said), Some(Status::Nok), "{r_said:?}");
    let e_port = cpg_node::epmd::port_please("127.0.0.1", w.epmd.port, &e.alive)
        .await
        .unwrap()
        .expect("the erl node is registered")
        .port;
    let (_, e_said) = handshake_as(&e.name, &w.cookie, e_port).await;
    assert_eq!(refused_with(&e_said), refused_with(&r_said), "{e_said:?}");
    // Connecting to ourselves is a no-op, as `net_kernel:connect_node(node())`.
    r.connect(r.name()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(r.peers().is_empty(), "{:?}", r.peers());
    assert!(r.peer_info().is_empty());
    assert!(cluster.targets().is_empty(), "{:?}", cluster.targets());
    assert!(
        events.try_recv().is_err(),
        "a node event for a connection that never came up"
    );
    // The node still takes a real peer.
    r.connect(&e.name).await.unwrap();
    assert_eq!(r.peers(), vec![e.name.clone()]);
}

/// OTP 24+ `gen_server:call` tags its request `[alias|Ref]`: our reply goes
/// to that alias (ALIAS_SEND), so, as from a BEAM server, a reply after the
/// caller's timeout is dropped instead of landing in its mailbox. A plain
/// `{Pid, Ref}` tag still gets its reply.
#[tokio::test]
async fn a_late_reply_to_a_timed_out_call_is_dropped() {
    require_erl!();
    let w = World::new().await;
    let r = w.rust_node("r").await;
    let mut slow = r.spawn_registered("slow").unwrap();
    tokio::spawn(async move {
        while let Ok(Signal::Message { msg, .. }) = slow.recv().await {
            if let Some((from, req)) = cpg_node::process::parse_call(&msg) {
                let req = req.clone();
                if term::as_atom(&req) == Some("slow") {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                let _ = slow.reply(&from, req);
            }
        }
    });
    let e = w.erl("e").await;
    let rn = r.name();
    let late = eval(
        &r,
        &e.name,
        &format!(
            "{{'EXIT', {{timeout, _}}}} = (catch gen_server:call({{slow, '{rn}'}}, slow, 0)), \
             receive X -> {{got, X}} after 500 -> none end."
        ),
    )
    .await;
    assert!(
        is_atom(&late, "none"),
        "a late reply reached the caller: {late}"
    );
    let quick = eval(
        &r,
        &e.name,
        &format!("gen_server:call({{slow, '{rn}'}}, quick, 5000)."),
    )
    .await;
    assert!(is_atom(&quick, "quick"), "{quick}");
    let plain = eval(
        &r,
        &e.name,
        &format!(
            "Ref = make_ref(), {{slow, '{rn}'}} ! {{'$gen_call', {{self(), Ref}}, plain}}, \
             receive {{Ref, R}} -> R after 5000 -> no_reply end."
        ),
    )
    .await;
    assert!(is_atom(&plain, "plain"), "{plain}");
}

/// `Process::call` leaves nothing behind, as `gen:call` does: no
/// `'DOWN'` in the caller's mailbox after BEAM servers that reply and end
/// at once (their `'DOWN'` can reach the node before the caller has read
/// the reply), nor after calls to names nobody holds, here or there. A
/// call given up by dropping its future removes its monitor of the
/// server.
#[tokio::test]
async fn calls_leave_no_down_behind_and_a_dropped_call_no_monitor() {
    require_erl!();
    let w = World::new().await;
    let r = w.rust_node("r").await;
    let e = w.erl("e").await;
    let mut me = r.spawn_process();
    let servers = eval(
        &r,
        &e.name,
        "[spawn(fun() -> receive {'$gen_call', {P, T}, Req} -> P ! {T, Req} end end) \
          || _ <- lists:seq(1, 200)].",
    )
    .await;
    let servers = term::as_list(&servers).unwrap().to_vec();
    for s in servers {
        let pid = term::as_pid(&s).unwrap().clone();
        let got = me.call(pid, atom("hi"), Duration::from_secs(5)).await;
        assert!(matches!(got, Ok(ref t) if is_atom(t, "hi")), "{got:?}");
    }
    for to in [
        Dest::Name("nobody".into(), e.name.clone()),
        Dest::Name("nobody".into(), r.name().to_string()),
    ] {
        assert!(me
            .call(to, atom("hi"), Duration::from_secs(5))
            .await
            .is_err());
    }
    let left = me.recv_timeout(Duration::from_millis(300)).await.unwrap();
    assert!(left.is_none(), "left in the mailbox: {left:?}");
    let slow = eval(
        &r,
        &e.name,
        "spawn(fun() -> receive _ -> timer:sleep(infinity) end end).",
    )
    .await;
    let slow_pid = term::as_pid(&slow).unwrap().clone();
    let call = me.call(slow_pid, atom("hi"), Duration::from_secs(5));
    assert!(tokio::time::timeout(Duration::from_millis(100), call)
        .await
        .is_err());
    let monitored_by = eval_with(
        &r,
        &e.name,
        "cpg_node_test_util:wait_until({monitored_by, []}, \
           fun() -> process_info(P, monitored_by) end, 100).",
        &[("P", slow)],
    )
    .await;
    assert_eq!(
        monitored_by,
        tuple(vec![atom("monitored_by"), term::nil()]),
        "{monitored_by}"
    );
}

/// `Process::call` tags its request with an alias, as OTP 24+'s
/// `gen:call` does: a reply from another process than the server (a
/// worker given `From`, `gen_server:reply/2`) reaches the caller, and a
/// reply that comes after the call timed out is dropped instead of
/// landing in the caller's mailbox.
#[tokio::test]
async fn a_late_reply_to_a_rust_call_is_dropped_and_a_workers_reply_arrives() {
    require_erl!();
    let w = World::new().await;
    let r = w.rust_node("r").await;
    let e = w.erl("e").await;
    let mut me = r.spawn_process();
    let server = eval(
        &r,
        &e.name,
        "spawn(fun L() -> \
            receive {'$gen_call', From, {sleep, T}} -> \
                spawn(fun() -> timer:sleep(T), gen_server:reply(From, {slept, T}) end), \
                L() \
            end \
         end).",
    )
    .await;
    let server = term::as_pid(&server).unwrap().clone();
    let sleep = |ms: i32| tuple(vec![atom("sleep"), Term::from(term::FixInteger::from(ms))]);
    let quick = me
        .call(server.clone(), sleep(0), Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(show(&quick), "{'slept',0}");
    let late = me
        .call(server.clone(), sleep(300), Duration::from_millis(50))
        .await;
    assert!(
        matches!(late, Err(cpg_node::process::CallError::Timeout)),
        "{late:?}"
    );
    let left = me.recv_timeout(Duration::from_millis(600)).await.unwrap();
    assert!(left.is_none(), "a late reply landed: {left:?}");
    let again = me
        .call(server, sleep(10), Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(show(&again), "{'slept',10}");
}

/// An exit signal from a BEAM process ends a Rust process that does not
/// trap exits at once, while its code does not read its mailbox: a BEAM
/// monitor of it gets the reason, a call to it exits `noproc` (not
/// `timeout`), its cpg membership is gone, and its next receive returns
/// the reason.
#[tokio::test]
async fn a_beam_exit_signal_ends_a_busy_rust_process_at_once() {
    use cpg_node::cpg::{CpgScope, ScopeOptions, DEFAULT_SCOPE};
    require_erl!();
    let w = World::new().await;
    let r = w.rust_node("r").await;
    let e = w.erl("e").await;
    let scope = CpgScope::start(&r, ScopeOptions::new(DEFAULT_SCOPE)).unwrap();
    let mut busy = r.spawn_process();
    scope.join("kk", busy.pid()).await.unwrap();
    let p = Term::Pid(busy.pid().clone());
    let seen = eval_with(
        &r,
        &e.name,
        "M = monitor(process, P), \
         spawn(fun() -> link(P), receive after 50 -> exit(boom) end end), \
         Down = receive {'DOWN', M, process, P, Why} -> Why after 3000 -> none end, \
         Call = (catch gen_server:call(P, hi, 1000)), \
         {Down, Call}.",
        &[("P", p)],
    )
    .await;
    let [down, call] = term::as_tuple(&seen).unwrap() else {
        panic!("{seen}")
    };
    assert!(is_atom(down, "boom"), "{seen}");
    assert!(show(call).contains("noproc"), "{seen}");
    assert!(scope.get_members("kk").is_err());
    assert_eq!(busy.recv().await, Err(atom("boom")));
}

/// A message nested deeper than the node accepts costs that message only:
/// the connection, a monitor across it and an erl monitor of a Rust process
/// stay, and the messages after it arrive. A message at the deepest depth
/// accepted is delivered (decoded on a 2 MiB tokio worker).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn too_deep_message_is_dropped_not_the_connection() {
    require_erl!();
    let w = World::new().await;
    let r = w.rust_node("r").await;
    let e = w.erl("e").await;
    let mut me = r.spawn_process();
    let idle = util(&r, &e.name, "spawn_idle", vec![]).await;
    let idle = term::as_pid(&idle).unwrap().clone();
    let mref = me.monitor(idle.clone());
    let watcher = util(
        &r,
        &e.name,
        "spawn_monitor_of",
        vec![Term::Pid(me.pid().clone())],
    )
    .await;
    // `{deepest, Nest(max - 1)}` nests exactly `max` deep.
    let max = term::DEFAULT_MAX_DEPTH;
    let code = format!(
        "Nest = fun(N) -> lists:foldl(fun(_, A) -> {{A}} end, bottom, lists:seq(1, N)) end, \
         P ! {{too_deep, Nest({})}}, P ! {{deepest, Nest({})}}, P ! after_deep, ok.",
        max * 5,
        max - 1
    );
    let ok = eval_with(&r, &e.name, &code, &[("P", Term::Pid(me.pid().clone()))]).await;
    assert!(is_atom(&ok, "ok"), "{ok}");
    match me.recv_timeout(T).await.unwrap() {
        Some(Signal::Message { msg, .. }) => {
            let f = term::as_tuple(&msg).expect("a tuple");
            assert!(is_atom(&f[0], "deepest"), "first message: {:?}", f[0]);
            // Count the levels without recursion.
            let mut depth = 0;
            let mut t = &f[1];
            while let Some([inner]) = term::as_tuple(t) {
                depth += 1;
                t = inner;
            }
            assert_eq!(depth, max - 1);
            assert!(is_atom(t, "bottom"));
        }
        other => panic!("expected the deepest accepted message, got {other:?}"),
    }
    match me.recv_timeout(T).await.unwrap() {
        Some(Signal::Message { msg, .. }) => assert!(is_atom(&msg, "after_deep"), "{msg}"),
        other => panic!("expected after_deep, got {other:?}"),
    }
    // Still connected, both ways, and the monitors across the link stand.
    assert!(r.peers().contains(&e.name));
    assert_hidden_peer_of(&r, &e.name).await;
    let recorded = util(&r, &e.name, "recorded_pid", vec![watcher]).await;
    assert_eq!(show(&recorded), "[]", "the erl monitor fired");
    me.send(idle.clone(), tuple(vec![atom("exit"), atom("bye")]))
        .unwrap();
    match me.recv_timeout(T).await.unwrap() {
        Some(Signal::Down {
            mref: m, reason, ..
        }) if m == mref => {
            assert!(is_atom(&reason, "bye"), "monitor reason {reason}")
        }
        other => panic!("expected the monitor's DOWN bye, got {other:?}"),
    }
    r.shutdown().await;
}

/// Nothing comes to `watch` within `wait`, in particular not the `DOWN` of
/// its monitor `mref` of a process on an erl node, which would say that
/// node dropped its connection to us.
async fn still_connected(watch: &mut Process, mref: &term::Reference, wait: Duration) {
    match watch.recv_timeout(wait).await.unwrap() {
        None => {}
        Some(Signal::Down {
            mref: m, reason, ..
        }) if m == *mref => {
            panic!("erl dropped its connection to us: {reason}")
        }
        other => panic!("unexpected {other:?}"),
    }
}

/// A message that would take more memory decoded than a term may
/// (`Limits::max_memory`, 512 MiB by default) costs that message only:
/// ten million `[]`s (10 MB on the wire, 560 MB counted as decoded here;
/// a hostile run took 463 MB of RSS with four million) are refused at
/// the list's header, the message after it arrives, the connection stays.
/// `NodeConfig::max_term_memory` sets the bound: at 1 MiB, 100,000 `[]`s
/// (5.6 MB counted) are refused and 1,000 taken.
#[tokio::test]
async fn a_message_too_large_decoded_is_dropped_not_the_connection() {
    require_erl!();
    let w = World::new().await;
    let r = w.rust_node("r").await;
    let mut small = w.config("small");
    small.max_term_memory = 1 << 20;
    let s = Node::start(small).await.unwrap();
    let e = w.erl("e").await;
    for (node, big, fits) in [(&r, 10_000_000, None), (&s, 100_000, Some(1000))] {
        let mut me = node.spawn_process();
        let fits = fits.map_or(String::new(), |n| {
            format!("P ! {{fits, lists:duplicate({n}, [])}}, ")
        });
        let code = format!("P ! {{huge, lists:duplicate({big}, [])}}, {fits}P ! after_huge, ok.");
        let ok = eval_with(node, &e.name, &code, &[("P", Term::Pid(me.pid().clone()))]).await;
        assert!(is_atom(&ok, "ok"), "{ok}");
        if !fits.is_empty() {
            match me.recv_timeout(Duration::from_secs(30)).await.unwrap() {
                Some(Signal::Message { msg, .. }) => {
                    let f = term::as_tuple(&msg).expect("{fits, L}");
                    assert!(is_atom(&f[0], "fits"), "{msg}");
                }
                other => panic!("expected fits, got {other:?}"),
            }
        }
        match me.recv_timeout(Duration::from_secs(30)).await.unwrap() {
            Some(Signal::Message { msg, .. }) => assert!(is_atom(&msg, "after_huge"), "{msg}"),
            other => panic!("expected after_huge, got {other:?}"),
        }
        assert!(node.peers().contains(&e.name));
        assert_hidden_peer_of(node, &e.name).await;
    }
    s.shutdown().await;
    r.shutdown().await;
}

/// A peer speaks for its own processes only, as BEAM's `erts_net_message`
/// requires: a `LINK` from a raw client X naming a process of the erl node
/// N (of an old creation of N) as the sender is dropped, and so is a
/// `MONITOR_P` naming N's process as the watcher. Before, the link was
/// taken, and when our process exited, our `EXIT` to that pid made N log
/// "Invalid distribution message" and drop its connection to us (the
/// monitor across it fired `noconnection`). X's own link still works.
#[tokio::test]
async fn a_link_naming_another_nodes_process_is_dropped() {
    use cpg_node::dist::control;
    use erl_dist::message::Message;
    use tokio::io::AsyncWriteExt;
    require_erl!();
    let w = World::new().await;
    let r = w.rust_node("r").await;
    let e = w.erl("e").await;
    assert!(r.ping(&e.name).await);
    let creation = r
        .peer_info()
        .into_iter()
        .find(|p| p.node == e.name)
        .expect("erl is a peer")
        .creation;
    // Watches the connection to erl: a DOWN here means it was dropped.
    let idle = util(&r, &e.name, "spawn_idle", vec![]).await;
    let idle = term::as_pid(&idle).unwrap().clone();
    let mut watch = r.spawn_process();
    let mref = watch.monitor(idle);
    let victim = r.spawn_process();
    let mut own = r.spawn_process();
    // X: a raw client that completed the handshake.
    let x = format!("{}@{}", crate::support::unique("x"), crate::support::host());
    let (mut sock, up) = handshake_as(&x, &w.cookie, r.port()).await;
    up.unwrap();
    let stale = term::Pid::new(e.name.as_str(), 77, 0, creation.wrapping_add(1));
    let x_pid = term::Pid::new(x.as_str(), 5, 0, 7);
    let mut out = Vec::new();
    for m in [
        Message::link(stale.clone(), victim.pid().clone()),
        Message::monitor_p(
            stale.clone(),
            term::PidOrAtom::Pid(victim.pid().clone()),
            r.spawn_process().make_ref(),
        ),
        Message::link(x_pid.clone(), own.pid().clone()),
    ] {
        control::encode_message(&m, &mut out, false).unwrap();
    }
    sock.write_all(&out).await.unwrap();
    // X's own link is taken: its connection going down is an exit for
    // `own` (trapped), from X's pid.
    own.trap_exit(true);
    drop(sock);
    match own.recv_timeout(T).await.unwrap() {
        Some(Signal::Exit { from, reason, .. }) => {
            assert_eq!(from, x_pid);
            assert!(is_atom(&reason, "noconnection"), "{reason}");
        }
        other => panic!("expected X's noconnection exit, got {other:?}"),
    }
    // The spoofed link was not: the victim's exit sends erl nothing.
    victim.exit(atom("boom"));
    still_connected(&mut watch, &mref, Duration::from_secs(2)).await;
    assert!(r.peers().contains(&e.name));
    assert_hidden_peer_of(&r, &e.name).await;
    r.shutdown().await;
}

/// A term BEAM refuses from a peer (an atom of 256 characters) costs that
/// message only, and is not passed on. Before, a raw client X's
/// `gen_server` call to our scope with such an atom as its tag and a reply
/// address on the erl node E made the scope reply to E with it; E logged
/// "got a corrupted external term" and dropped its connection to us (a
/// hostile run cut E's view of our members that way every few hundred
/// ms). Now the call is dropped as it is read, X's connection and E's
/// stay, and the same call with a 255-character tag is answered on E.
#[tokio::test]
async fn an_atom_beam_refuses_is_dropped_not_passed_on() {
    use cpg_node::cpg::{CpgScope, ScopeOptions, DEFAULT_SCOPE};
    use cpg_node::dist::control;
    use erl_dist::message::Message;
    use tokio::io::AsyncWriteExt;
    require_erl!();
    let w = World::new().await;
    let r = w.rust_node("r").await;
    let _scope = CpgScope::start(&r, ScopeOptions::new(DEFAULT_SCOPE)).unwrap();
    let e = w.erl("e").await;
    assert!(r.ping(&e.name).await);
    // The reply address on E, which records what it gets; a monitor of it
    // tells whether E dropped its connection to us.
    let rec = eval(&r, &e.name, "cpg_node_test_util:spawn_recorder(long_tags).").await;
    let rec_pid = term::as_pid(&rec).unwrap().clone();
    let mut watch = r.spawn_process();
    let mref = watch.monitor(rec_pid.clone());
    let x = format!("{}@{}", crate::support::unique("x"), crate::support::host());
    let (mut sock, up) = handshake_as(&x, &w.cookie, r.port()).await;
    up.unwrap();
    let x_pid = term::Pid::new(x.as_str(), 5, 0, 7);
    let call = |tag: &str| {
        let request = tuple(vec![
            atom("get_members"),
            term::string_to_charlist("nosuchgroup"),
        ]);
        let from = tuple(vec![Term::Pid(rec_pid.clone()), atom(tag)]);
        let msg = tuple(vec![atom("$gen_call"), from, request]);
        let mut out = Vec::new();
        let m = Message::reg_send(x_pid.clone(), DEFAULT_SCOPE.into(), msg);
        control::encode_message(&m, &mut out, false).unwrap();
        out
    };
    let tag = "T".repeat(255);
    let good = call(&tag);
    // The same bytes with the tag made 256 characters (`ATOM_UTF8_EXT`,
    // which our encoder no longer writes for it), the length fixed.
    let mut small = vec![119, 255];
    small.extend_from_slice(tag.as_bytes());
    let at = good.windows(small.len()).position(|w| w == small).unwrap();
    let mut bad = good[..at].to_vec();
    bad.extend_from_slice(&[118, 1, 0]);
    bad.extend_from_slice("T".repeat(256).as_bytes());
    bad.extend_from_slice(&good[at + small.len()..]);
    let len = (bad.len() - 4) as u32;
    bad[..4].copy_from_slice(&len.to_be_bytes());
    for _ in 0..3 {
        sock.write_all(&bad).await.unwrap();
    }
    sock.write_all(&good).await.unwrap();
    // The good call is answered on E, the bad ones never were.
    assert!(
        recorded_eventually(&r, &e.name, &rec, &["no_such_group", "TTTT"]).await,
        "the call with a 255-character tag was not answered"
    );
    still_connected(&mut watch, &mref, Duration::from_secs(1)).await;
    let got = util(&r, &e.name, "recorded_pid", vec![rec.clone()]).await;
    assert_eq!(term::as_list(&got).map(|l| l.len()), Some(1), "{got}");
    assert!(r.peers().contains(&e.name));
    assert!(r.peers().contains(&x), "X's connection was dropped");
    assert_hidden_peer_of(&r, &e.name).await;
    drop(sock);
    r.shutdown().await;
}

/// The monitors and links peers hold on our processes are bounded: a peer
/// past `max_peer_holds` is disconnected (its monitors go with it), and
/// past `max_total_holds` together, the peer that sets more is, while the
/// one under its share stays. BEAM bounds neither; each monitor here takes
/// memory until the peer takes it back.
#[tokio::test]
async fn the_monitors_peers_hold_on_our_processes_are_bounded() {
    use cpg_node::node::NodeEvent;
    require_erl!();
    let w = World::new().await;
    let mut c = w.config("r");
    c.max_peer_holds = 1000;
    c.max_total_holds = 1200;
    let r = Node::start(c).await.unwrap();
    // A peer dropped in the middle of setting its monitors would dial us
    // again for the rest (an erl node connects on demand), and hold them
    // legitimately on its new connection: `dist_auto_connect once` makes
    // its later monitors fire `noconnection` at once instead, so that what
    // each step holds is known.
    let once = |prefix: &str| {
        let (w, prefix) = (&w, crate::support::unique(prefix));
        async move {
            let args = ["-kernel", "dist_auto_connect", "once"];
            ErlNode::start(&prefix, &w.cookie, w.epmd.port, &args).await
        }
    };
    let (e1, e2, e3) = (once("h1").await, once("h2").await, once("h3").await);
    let target = r.spawn_process();
    let mut ev = r.subscribe();
    // A process of the erl node that monitors ours N times and stays.
    let monitor = |n: usize| {
        format!(
            "Self = self(), spawn(fun() -> [erlang:monitor(process, P) || _ <- lists:seq(1, {n})], \
             Self ! done, receive stop -> ok end end), receive done -> ok end."
        )
    };
    let p = Term::Pid(target.pid().clone());
    // (Through rex; a peer dropped meanwhile gives no answer, no matter.)
    let set = |erl: &str, n: usize| {
        let args = vec![
            term::string_to_charlist(&monitor(n)),
            term::list(vec![tuple(vec![atom("P"), p.clone()])]),
        ];
        let r = &r;
        let erl = erl.to_string();
        async move {
            let _ = r
                .rpc(
                    &erl,
                    "cpg_node_test_util",
                    "eval",
                    args,
                    Duration::from_secs(20),
                )
                .await;
        }
    };
    let downs = |ev: &mut tokio::sync::broadcast::Receiver<NodeEvent>| {
        let mut downs = Vec::new();
        while let Ok(e) = ev.try_recv() {
            if let NodeEvent::Down { node, reason } = e {
                downs.push((node, reason.to_string()));
            }
        }
        downs
    };
    let held = |down: &[(String, String)], node: &str| {
        down.iter()
            .any(|(n, why)| n == node && why.contains("monitors and links"))
    };
    let any_of = |down: &[(String, String)], node: &str| down.iter().any(|(n, _)| n == node);
    // The downs until `node`'s for its holds, 10 s at most (a loaded
    // machine may take a while to read a peer's monitors).
    async fn until_held(
        ev: &mut tokio::sync::broadcast::Receiver<NodeEvent>,
        node: &str,
    ) -> Vec<(String, String)> {
        let mut downs = Vec::new();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while let Ok(Ok(e)) = tokio::time::timeout_at(deadline, ev.recv()).await {
            if let NodeEvent::Down { node: n, reason } = e {
                let why = reason.to_string();
                let done = n == node && why.contains("monitors and links");
                downs.push((n, why));
                if done {
                    break;
                }
            }
        }
        downs
    }
    // Under both bounds: kept.
    set(&e1.name, 700).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(downs(&mut ev), vec![]);
    // A second peer: the two together pass the total; the one setting
    // more goes, the first stays.
    set(&e2.name, 700).await;
    let mut down = until_held(&mut ev, &e2.name).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    down.extend(downs(&mut ev));
    assert!(
        held(&down, &e2.name) && !any_of(&down, &e1.name),
        "{down:?}"
    );
    assert!(r.peers().contains(&e1.name), "{:?}", r.peers());
    // One peer past its own bound (the first now holds 700 + 1,200).
    set(&e1.name, 1200).await;
    let down = until_held(&mut ev, &e1.name).await;
    assert!(held(&down, &e1.name), "{down:?}");
    // Their monitors went with them: a third peer's are taken.
    set(&e3.name, 900).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let down = downs(&mut ev);
    assert!(!any_of(&down, &e3.name), "{down:?}");
    assert!(r.peers().contains(&e3.name), "{:?}", r.peers());
}

/// A hidden peer that connects takes no place of the node-name table (its
/// name is never given back: query clients connecting under a new name
/// each time would fill it), while a visible node's name is interned once
/// it connects, so that its pids are named however full the table is.
#[tokio::test]
async fn a_hidden_peer_connecting_alone_is_not_interned_a_visible_one_is() {
    use cpg_node::atom::Atom;
    require_erl!();
    let w = World::new().await;
    let r = w.rust_node("r").await;
    let hidden = format!("{}@{}", crate::support::unique("q"), crate::support::host());
    let (sock, up) = handshake_as(&hidden, &w.cookie, r.port()).await;
    up.unwrap();
    assert!(
        crate::support::eventually(5, || async { r.peers().contains(&hidden) }).await,
        "{:?}",
        r.peers()
    );
    assert_eq!(Atom::lookup(&hidden), None);
    drop(sock);
    let e = w.erl("vis").await;
    assert!(r.ping(&e.name).await);
    assert!(Atom::lookup(&e.name).is_some());
}

/// BEAM callers of a Rust server on `serve_calls_async` are served
/// together: `gen_server:call`s made after a slow one come back first,
/// each with its own answer, as from a gen_server that hands requests to
/// workers; `sys:get_state` is answered meanwhile.
#[tokio::test]
async fn beam_calls_to_an_async_rust_server_are_worked_on_together() {
    require_erl!();
    let w = World::new().await;
    let r = w.rust_node("r").await;
    let e = w.erl("e").await;
    let mut server = r.spawn_registered("async_srv").unwrap();
    tokio::spawn(async move {
        server
            .serve_calls_async(
                |req| async move {
                    let ms = term::as_int(&req).unwrap_or(0) as u64;
                    tokio::time::sleep(Duration::from_millis(ms)).await;
                    tuple(vec![atom("slept"), req])
                },
                |_, _| {},
            )
            .await
    });
    let order = eval_with(
        &r,
        &e.name,
        "Me = self(), \
         [begin \
            spawn(fun() -> Me ! {done, T, gen_server:call({async_srv, R}, T, 10000)} end), \
            timer:sleep(20) \
          end || T <- [2000, 0, 30]], \
         undefined = sys:get_state({async_srv, R}), \
         {status, _, {module, gen_server}, [_, running, _, _, [{header, H} | _]]} = \
             sys:get_status({async_srv, R}), \
         \"Status for generic server async_srv\" = H, \
         [receive {done, T, Got} -> {T, Got} end || _ <- [1, 2, 3]].",
        &[("R", atom(r.name()))],
    )
    .await;
    assert_eq!(
        show(&order),
        "[{0,{'slept',0}},{30,{'slept',30}},{2000,{'slept',2000}}]"
    );
}

/// A Rust process killed by BEAM with messages still in its mailbox does
/// nothing more: no reply comes after the `'DOWN'`, and a
/// `gen_server:send_request` the server answered is never reported as
/// killed (BEAM ends a process between two reductions).
#[tokio::test]
async fn a_rust_process_killed_from_beam_sends_nothing_after_its_down() {
    use cpg_node::process::Signal;
    require_erl!();
    let w = World::new().await;
    let r = w.rust_node("r").await;
    let e = w.erl("e").await;
    let mut echo = r.spawn_process();
    let echo_pid = Term::Pid(echo.pid().clone());
    tokio::spawn(async move {
        while let Ok(s) = echo.recv().await {
            if let Signal::Message { msg, .. } = s {
                if let Some([from, n]) = term::as_tuple(&msg) {
                    let to = term::as_pid(from).unwrap().clone();
                    let _ = echo.send(to, n.clone());
                }
                // (Slower than the messages come: the kill finds some
                // waiting.)
                tokio::task::yield_now().await;
            }
        }
    });
    let mut server = r.spawn_process();
    let server_pid = Term::Pid(server.pid().clone());
    tokio::spawn(async move { server.serve_calls(|_, req| req.clone()).await });
    let got = eval_with(
        &r,
        &e.name,
        "Count = fun C(M, Before) -> \
             receive {'DOWN', M, process, _, R} -> {Before, R}; N when is_integer(N) -> C(M, Before + 1) \
             after 5000 -> timeout end \
         end, \
         M = monitor(process, P), \
         [P ! {self(), I} || I <- lists:seq(1, 3000)], \
         exit(P, kill), \
         {Before, Why} = Count(M, 0), \
         After = receive X -> X after 300 -> none end, \
         Reqs = [gen_server:send_request(S, I) || I <- lists:seq(1, 500)], \
         exit(S, kill), \
         Rs = [gen_server:receive_response(Q, 5000) || Q <- Reqs], \
         Answered = [I || {reply, I} <- Rs], \
         Killed = length([x || {error, {killed, _}} <- Rs]), \
         Order = Answered =:= lists:seq(1, length(Answered)) \
             andalso Killed =:= 500 - length(Answered), \
         {Why, After, Order, Before, length(Answered)}.",
        &[("P", echo_pid), ("S", server_pid)],
    )
    .await;
    // (How many came before the kill varies; whether any came after does
    // not.)
    let parts = term::as_tuple(&got).unwrap_or_else(|| panic!("{}", show(&got)));
    assert_eq!(
        show(&term::tuple(parts[..3].to_vec())),
        "{'killed','none','true'}",
        "{}",
        show(&got)
    );
}

/// `gen_server:stop` (Elixir's `GenServer.stop`, `sys:terminate`) ends a
/// Rust server as it ends a gen_server: `ok` once it has exited with the
/// reason, a monitor told that reason, the serve loop returning it; a
/// suspended one too. It answered `{error, {unknown_system_msg, ...}}`,
/// which `gen_server:stop` raised.
#[tokio::test]
async fn gen_server_stop_ends_a_rust_server_with_its_reason() {
    require_erl!();
    let w = World::new().await;
    let r = w.rust_node("r").await;
    let e = w.erl("e").await;
    let mut ends = Vec::new();
    for name in ["stop_a", "stop_b"] {
        let mut server = r.spawn_registered(name).unwrap();
        ends.push(tokio::spawn(async move {
            server.serve_calls(|_, req| req.clone()).await
        }));
    }
    let got = eval_with(
        &r,
        &e.name,
        "A = {stop_a, R}, B = {stop_b, R}, \
         MA = monitor(process, A), MB = monitor(process, B), \
         Echo = gen_server:call(A, ping), \
         StopA = gen_server:stop(A, {shutdown, bye}, 5000), \
         DownA = receive {'DOWN', MA, _, _, Ra} -> Ra after 5000 -> none end, \
         ok = sys:suspend(B), \
         StopB = gen_server:stop(B), \
         DownB = receive {'DOWN', MB, _, _, Rb} -> Rb after 5000 -> none end, \
         Gone = catch gen_server:call(A, ping, 1000), \
         {Echo, StopA, DownA, StopB, DownB, element(1, element(2, Gone))}.",
        &[("R", atom(r.name()))],
    )
    .await;
    assert_eq!(
        show(&got),
        "{'ping','ok',{'shutdown','bye'},'ok','normal','noproc'}"
    );
    let a = ends.remove(0).await.unwrap();
    assert_eq!(show(&a), "{'shutdown','bye'}");
    let b = ends.remove(0).await.unwrap();
    assert!(is_atom(&b, "normal"), "{b}");
    assert!(r.whereis("stop_a").is_none() && r.whereis("stop_b").is_none());
}

/// `sys:suspend` stops a Rust server as it stops a gen_server: calls
/// wait (in order, answered after `sys:resume`), `sys:get_status` says
/// `suspended`, and `sys:get_state` is answered meanwhile.
#[tokio::test]
async fn sys_suspend_and_resume_a_rust_server() {
    require_erl!();
    let w = World::new().await;
    let r = w.rust_node("r").await;
    let e = w.erl("e").await;
    let mut server = r.spawn_registered("susp").unwrap();
    tokio::spawn(async move { server.serve_calls(|_, req| req.clone()).await });
    let got = eval_with(
        &r,
        &e.name,
        "S = {susp, R}, Me = self(), \
         ok = sys:suspend(S), \
         [spawn(fun() -> Me ! {got, I, gen_server:call(S, I)} end) || I <- [1, 2]], \
         Waiting = receive {got, _, _} -> answered after 300 -> waiting end, \
         {status, _, _, [_, State, _, _, _]} = sys:get_status(S), \
         undefined = sys:get_state(S), \
         ok = sys:resume(S), \
         Got = lists:sort([receive {got, I, V} -> {I, V} after 5000 -> lost end || _ <- [1, 2]]), \
         {status, _, _, [_, State2, _, _, _]} = sys:get_status(S), \
         {Waiting, State, Got, State2, gen_server:call(S, 3)}.",
        &[("R", atom(r.name()))],
    )
    .await;
    assert_eq!(
        show(&got),
        "{'waiting','suspended',[{1,1},{2,2}],'running',3}"
    );
}

/// `sys`'s debug options on a Rust server answer as on a gen_server (as
/// an OTP 25 gen_server answered the same script): statistics count the
/// messages in and the replies out, the log keeps the last N events in
/// gen_server's shapes and `sys:get_status` lists them, `no_debug` turns
/// everything off, and what this node cannot do is refused.
#[tokio::test]
async fn sys_debug_options_on_a_rust_server() {
    require_erl!();
    let w = World::new().await;
    let r = w.rust_node("r").await;
    let e = w.erl("e").await;
    let mut server = r.spawn_registered("sysd").unwrap();
    tokio::spawn(async move { server.serve_calls(|_, req| req.clone()).await });
    let got = eval_with(
        &r,
        &e.name,
        "S = {sysd, R}, Me = self(), \
         Off = {sys:statistics(S, get), sys:log(S, get)}, \
         ok = sys:statistics(S, true), ok = sys:log(S, {true, 3}), ok = sys:trace(S, true), \
         a = gen_server:call(S, a), b = gen_server:call(S, b), gen_server:cast(S, c), S ! d, \
         e = gen_server:call(S, e), \
         {ok, Stats} = sys:statistics(S, get), \
         {ok, Log} = sys:log(S, get), \
         {status, _, _, [_, _, _, _, [_, {data, Data}, _]]} = sys:get_status(S), \
         {_, Logged} = lists:keyfind(\"Logged events\", 1, Data), \
         Shapes = [case Ev of \
                     {in, {'$gen_call', {Me, _}, X}} -> {in_call, X}; \
                     {out, X, {Me, _}, St} -> {out, X, St}; \
                     Other -> Other \
                   end || Ev <- Log], \
         ok = sys:no_debug(S), \
         After = {sys:statistics(S, get), sys:log(S, get)}, \
         {Off, [K || {K, _} <- Stats], \
          {proplists:get_value(messages_in, Stats), proplists:get_value(messages_out, Stats)}, \
          Shapes, Logged =:= Log, After, \
          sys:log(S, {true, x}), sys:log_to_file(S, \"/tmp/x\"), gen_server:call(S, f)}.",
        &[("R", atom(r.name()))],
    )
    .await;
    assert_eq!(
        show(&got),
        "{{{'ok','no_statistics'},{'ok',[]}},\
         ['start_time','current_time','reductions','messages_in','messages_out'],\
         {5,3},\
         [{'noreply','undefined'},{'in_call','e'},{'out','e','undefined'}],\
         'true',\
         {{'ok','no_statistics'},{'ok',[]}},\
         'unknown_debug',{'error','open_file'},'f'}"
    );
}

/// The `erl_interface` folder of the `erl` on the path, with `ei.h` and
/// `libei.a`, and a C compiler: `None` (said) where either is missing.
fn ei_toolchain() -> Option<std::path::PathBuf> {
    let out = std::process::Command::new("erl")
        .args([
            "-noshell",
            "-eval",
            "io:format(\"~s\", [code:lib_dir(erl_interface)]), halt().",
        ])
        .output()
        .ok()?;
    let dir = std::path::PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    let cc = std::process::Command::new("cc").arg("--version").output();
    if !dir.join("include/ei.h").exists() || !dir.join("lib/libei.a").exists() {
        println!("skipped: no erl_interface (ei.h, libei.a) beside erl: install erlang-dev");
        return None;
    }
    if cc.is_err() {
        println!("skipped: no C compiler (cc) to build the ei node");
        return None;
    }
    Some(dir)
}

/// A C node built on `erl_interface` (OTP 25's `ei` offers neither
/// DIST_MONITOR_NAME nor SEND_SENDER nor EXIT_PAYLOAD) connects to a node
/// of ours running a cpg scope and an echo process: it stays connected,
/// is ticked, and gets its message back. Before, the MONITOR_P by name
/// that our scope sends every new peer failed its receive (`EIO`) at once,
/// and the echo's reply went as SEND_SENDER; now such a peer gets what a
/// BEAM would send it (`dist::compat`).
#[tokio::test]
async fn an_ei_c_node_stays_connected_is_ticked_and_gets_its_echo() {
    require_erl!();
    let Some(ei) = ei_toolchain() else { return };
    let bin = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("ei_node");
    let built = std::process::Command::new("cc")
        .args(["-O2", "-D_REENTRANT", "-o"])
        .arg(&bin)
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/ei_node.c"))
        .arg(format!("-I{}", ei.join("include").display()))
        .arg(format!("-L{}", ei.join("lib").display()))
        .args(["-lei", "-lpthread"])
        .output()
        .unwrap();
    assert!(
        built.status.success(),
        "{}",
        String::from_utf8_lossy(&built.stderr)
    );
    let w = World::new().await;
    let mut c = w.config("r");
    c.net_ticktime = Duration::from_secs(2);
    let r = Node::start(c).await.unwrap();
    let _scope = cpg_node::cpg::CpgScope::start(
        &r,
        cpg_node::cpg::ScopeOptions::new(cpg_node::cpg::DEFAULT_SCOPE),
    )
    .unwrap();
    let mut echo = r.spawn_registered("echo").unwrap();
    tokio::spawn(async move {
        while let Ok(Some(s)) = echo.recv_timeout(Duration::from_secs(30)).await {
            if let Signal::Message { msg, .. } = s {
                if let Some([Term::Pid(from), m]) = term::as_tuple(&msg) {
                    let _ = echo.send(Dest::Pid(from.clone()), m.clone());
                }
            }
        }
    });
    let me = format!(
        "{}@{}",
        crate::support::unique("ei"),
        crate::support::host()
    );
    let run = tokio::process::Command::new(&bin)
        .args([me.as_str(), r.name(), w.cookie.as_str(), "3"])
        .env("ERL_EPMD_PORT", w.epmd.port.to_string())
        .output()
        .await
        .unwrap();
    let said = String::from_utf8_lossy(&run.stdout).to_string();
    let err = String::from_utf8_lossy(&run.stderr).to_string();
    println!("ei node: {said} {err}");
    assert!(run.status.success(), "{said} {err}");
    let n = |what: &str| -> u64 {
        let words: Vec<&str> = said.split_whitespace().collect();
        let at = words.iter().position(|w| *w == what).unwrap();
        words[at + 1].parse().unwrap()
    };
    assert_eq!(n("errors"), 0, "{said}");
    assert_eq!(n("echoed"), 1, "{said}");
    // Ticks a quarter of net_ticktime apart for 3 s, answered by ei and
    // not answered back: a handful, not thousands.
    assert!((3..=40).contains(&n("ticks")), "{said}");
    r.shutdown().await;
}
