//! Message throughput of the node's hot paths: local sends (one process to
//! another on this node, from 1 and 4 senders at once) and remote sends to
//! an `erl` node (small and 1 KiB messages, from 1 and 4 senders), which
//! go through the peer routing and the connection's writer; and what a
//! process costs: 100k spawned, the time a spawn and the RSS a process
//! (`spawn_ns`, `process_rss_bytes`).
//!
//! Prints one `key value` line per figure and run, in messages per second
//! (the spawn rows in their own units).
//! The erl rows are skipped when `erl` is not on the PATH.
//!
//! ```sh
//! cargo run --release --example node_bench -- --runs 3
//! ```

use cpg_node::config::{Cookie, NodeConfig, NodeName};
use cpg_node::epmd::server::EpmdServer;
use cpg_node::process::{Dest, Signal};
use cpg_node::term::{self, atom, tuple, Term};
use cpg_node::Node;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

#[path = "support/rss.rs"]
mod rss;

const LOCAL: usize = 400_000;
const REMOTE: usize = 200_000;

/// An erl node with a `sink` process that counts what it gets and answers
/// `{done, From}` with `{count, N}`; killed (by pid) when dropped.
struct Erl(Child);

impl Drop for Erl {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The sink, compiled (an `-eval`'d fun is interpreted, and its receive
/// slows down as its mailbox grows).
const SINK: &str = "-module(nodebench_sink).\n-export([start/0]).\n\
start() -> register(sink, spawn(fun() -> loop(0) end)).\n\
loop(N) -> receive {done, F} -> F ! {count, N}, loop(0); _ -> loop(N + 1) end.\n";

fn start_erl(name: &str, cookie: &str, epmd: u16) -> Option<Erl> {
    let dir = std::env::temp_dir().join(format!("nodebench{}", std::process::id()));
    std::fs::create_dir_all(&dir).ok()?;
    std::fs::write(dir.join("nodebench_sink.erl"), SINK).ok()?;
    let built = Command::new("erlc")
        .arg("nodebench_sink.erl")
        .current_dir(&dir)
        .status()
        .ok()?;
    if !built.success() {
        return None;
    }
    Command::new("erl")
        .args(["-sname", name, "-setcookie", cookie, "-noshell", "-hidden"])
        .arg("-pa")
        .arg(&dir)
        .args(["-eval", "nodebench_sink:start()."])
        .env("ERL_EPMD_PORT", epmd.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .ok()
        .map(Erl)
}

/// `total` messages from `senders` processes to `to` (the last one is
/// `{done, Self}` to a remote sink, which answers with its count); the
/// rate in messages per second.
async fn rate(node: &Node, to: Dest, msg: Term, total: usize, senders: usize) -> f64 {
    let per = total / senders;
    let t = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..senders {
        let (p, to, msg) = (node.spawn_process(), to.clone(), msg.clone());
        tasks.push(tokio::spawn(async move {
            for _ in 0..per {
                p.send(to.clone(), msg.clone()).unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    if std::env::var_os("NODE_BENCH_DEBUG").is_some() {
        eprintln!("# sent in {:?}", t.elapsed());
    }
    let mut waiter = node.spawn_process();
    match &to {
        Dest::Name(_, n) if n != node.name() => {
            waiter
                .send(
                    to.clone(),
                    tuple(vec![atom("done"), Term::Pid(waiter.pid().clone())]),
                )
                .unwrap();
            match waiter.recv_timeout(Duration::from_secs(20)).await {
                Ok(Some(Signal::Message { msg, .. })) => {
                    let n = term::as_tuple(&msg).and_then(|t| term::as_int(&t[1]));
                    assert_eq!(n, Some((per * senders) as i64), "the sink's count");
                }
                other => panic!(
                    "no count from the sink after {:?}: {other:?} (peers {:?})",
                    t.elapsed(),
                    node.peer_info()
                ),
            }
        }
        _ => {}
    }
    (per * senders) as f64 / t.elapsed().as_secs_f64()
}

/// A local sink: counts `total` messages then ends.
fn local_sink(node: &Node, total: usize) -> (Dest, tokio::task::JoinHandle<()>) {
    let mut p = node.spawn_process();
    let to = Dest::Pid(p.pid().clone());
    let done = tokio::spawn(async move {
        for _ in 0..total {
            p.recv().await.unwrap();
        }
    });
    (to, done)
}

/// Processes spawned at once for the spawn rows.
const SPAWNED: usize = 100_000;

#[tokio::main]
async fn main() {
    let runs: usize = std::env::args()
        .skip_while(|a| a != "--runs")
        .nth(1)
        .and_then(|r| r.parse().ok())
        .unwrap_or(3);
    let epmd = EpmdServer::start("127.0.0.1", 0).await.unwrap();
    let cookie = format!("bench{}", std::process::id());
    let host = NodeName::from_cli("x", false).unwrap().host().to_string();
    let mut c = NodeConfig::new(
        NodeName::parse(&format!("nodebench{}@{host}", std::process::id())).unwrap(),
        Cookie::new(cookie.clone()),
    );
    c.epmd_port = epmd.port;
    c.embedded_epmd = false;
    let node = Node::start(c).await.unwrap();

    for _ in 0..runs {
        let rss0 = rss::rss_bytes();
        let t = Instant::now();
        let procs: Vec<_> = (0..SPAWNED).map(|_| node.spawn_process()).collect();
        let spawn_ns = t.elapsed().as_nanos() as f64 / SPAWNED as f64;
        let per_process = rss::rss_bytes().saturating_sub(rss0) as f64 / SPAWNED as f64;
        println!("spawn_ns {spawn_ns:.0}");
        println!("process_rss_bytes {per_process:.0}");
        drop(procs);
        for senders in [1, 4] {
            let (to, done) = local_sink(&node, LOCAL / senders * senders);
            let r = rate(&node, to, term::int(1), LOCAL, senders).await;
            done.await.unwrap();
            println!("local_send_{senders}_senders {r:.0}");
        }
    }

    let alive = format!("nodebench_sink{}", std::process::id());
    let Some(_erl) = start_erl(&alive, &cookie, epmd.port) else {
        println!("# no erl/erlc on the PATH: remote rows skipped");
        return;
    };
    let target = format!("{alive}@{host}");
    let mut up = false;
    for _ in 0..100 {
        if node.connect(&target).await.is_ok() {
            let mut p = node.spawn_process();
            let sink = Dest::Name("sink".into(), target.clone());
            p.send(sink, tuple(vec![atom("done"), Term::Pid(p.pid().clone())]))
                .unwrap();
            if let Ok(Some(_)) = p.recv_timeout(Duration::from_millis(500)).await {
                up = true;
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(up, "the erl sink never answered");
    let sink = Dest::Name("sink".into(), target.clone());
    for _ in 0..runs {
        for (size, msg) in [
            ("small", term::int(1)),
            ("1KiB", term::binary(vec![7; 1024])),
        ] {
            for senders in [1, 4] {
                let r = rate(&node, sink.clone(), msg.clone(), REMOTE, senders).await;
                println!("remote_send_{size}_{senders}_senders {r:.0}");
            }
        }
    }
    node.shutdown().await;
}
