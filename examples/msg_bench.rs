//! Messages per second over the distribution, the harness behind
//! `scripts/bench_msgs.sh`: BEAM -> BEAM (two `erl` nodes, the baseline),
//! BEAM -> Rust and Rust -> BEAM, with small messages (`{m, 1}`) and
//! 1 KiB ones (`{m, <<_:1024/binary>>}`), over loopback; then the RSS of
//! this process around a burst of 200k 1 KiB messages each way.
//!
//! ```sh
//! erlc -o /tmp/mb bench/erl/msg_bench.erl
//! cargo run --release --no-default-features --example msg_bench -- /tmp/mb 100000 5
//! ```
//!
//! Arguments: the folder holding `msg_bench.beam`, messages per run,
//! runs. Prints `key value` lines: `beam.msgs.<path>.<size> msgs/s` for
//! the BEAM -> BEAM baseline, `ours.msgs.<path>.<size>` for the paths
//! through this node, `*.mb.<path>.1k` MB/s of payload, and
//! `ours.rss.<when> MB`. A run counts from the
//! first send until the receiving process has counted every message.
//! The path `beam_rust_at_once` is BEAM -> Rust to a second node of this
//! process started with `read_hold: None` (no read coalescing).
//!
//! Then the cost of read coalescing to calls: `*.call_<p50|p99>.<path>.<load>`
//! µs, the median and 99th percentile of 2,000 sequential
//! `gen_server:call`s from a process of `a` to an echo process (BEAM: on
//! `b`; ours: on each of the two nodes) while another process of `a`
//! streams 100 messages of 1 KiB a millisecond to the same echo (`stream`)
//! or nothing (`idle`); `*.callers.<path>.<n>` calls a second of `n`
//! processes of `a` calling the echo at once, each in a loop (1 s).

use cpg_node::config::{Cookie, NodeConfig, NodeName};
use cpg_node::epmd::server::EpmdServer;
use cpg_node::process::{Process, Signal};
use cpg_node::term::{self, atom, binary, int, tuple, Pid, Term};
use cpg_node::Node;
use std::time::{Duration, Instant};

#[path = "support/rss.rs"]
mod rss;

const T: Duration = Duration::from_secs(120);

// The allocator the `cpg-node` binary ships with (it gives freed memory
// back to the OS), so that the RSS figures are the binary's.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// An `erl` node, killed when dropped.
struct Erl(std::process::Child, String);

impl Drop for Erl {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn erl(alive: &str, cookie: &str, epmd: u16, ebin: &str) -> Erl {
    let child = std::process::Command::new("erl")
        .args([
            "-sname",
            alive,
            "-setcookie",
            cookie,
            "-noshell",
            "-pa",
            ebin,
        ])
        .args(["+sbwt", "none"])
        .env("ERL_EPMD_PORT", epmd.to_string())
        .stdin(std::process::Stdio::null())
        .spawn()
        .expect("erl");
    let host = hostname();
    Erl(child, format!("{alive}@{host}"))
}

fn hostname() -> String {
    let out = std::process::Command::new("hostname")
        .arg("-s")
        .output()
        .unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

async fn rpc(node: &Node, erl: &str, f: &str, args: Vec<Term>) -> Term {
    node.rpc(erl, "msg_bench", f, args, T).await.expect("rpc")
}

/// A Rust process counting what it is told to expect, as `msg_bench:sink/0`.
async fn rust_sink(mut p: Process) {
    while let Ok(Signal::Message { msg, .. }) = p.recv().await {
        let Some([_, n, from]) = term::as_tuple(&msg) else {
            continue;
        };
        let (Some(n), Some(from)) = (term::as_int(n), term::as_pid(from).cloned()) else {
            continue;
        };
        let mut left = n;
        while left > 0 {
            match p.recv().await {
                Ok(Signal::Message { .. }) => left -= 1,
                Ok(_) => {}
                Err(_) => return,
            }
        }
        let me = Term::from(p.pid().clone());
        let _ = p.send(from, tuple(vec![atom("done"), me]));
    }
}

/// An echo process on `node`: a gen_server call gets its request back,
/// anything else is dropped (as `msg_bench:echo/0`).
fn spawn_echo(node: &Node) -> Pid {
    let mut p = node.spawn_process();
    let pid = p.pid().clone();
    tokio::spawn(async move { p.serve_calls(|_, req| req.clone()).await });
    pid
}

/// Rust -> BEAM: messages per second from a process of ours to `sink`.
async fn rust_blast(p: &mut Process, sink: &Pid, n: usize, payload: &Term) -> f64 {
    let me = Term::from(p.pid().clone());
    p.send(sink.clone(), tuple(vec![atom("expect"), int(n as i32), me]))
        .unwrap();
    let t0 = Instant::now();
    for _ in 0..n {
        p.send(sink.clone(), tuple(vec![atom("m"), payload.clone()]))
            .unwrap();
    }
    loop {
        match tokio::time::timeout(T, p.recv()).await {
            Ok(Ok(Signal::Message { msg, .. })) if term::as_tuple(&msg).is_some() => break,
            Ok(Ok(_)) => {}
            other => panic!("no done from the sink: {other:?}"),
        }
    }
    n as f64 / t0.elapsed().as_secs_f64()
}

/// BEAM -> `sink`, timed on the sending `erl` node.
async fn beam_blast(node: &Node, from: &str, sink: &Pid, n: usize, payload: &Term) -> f64 {
    let args = vec![Term::from(sink.clone()), int(n as i32), payload.clone()];
    let us = rpc(node, from, "blast", args).await;
    let us = term::as_int(&us).unwrap_or_else(|| panic!("blast: {us}"));
    n as f64 / (us as f64 / 1e6)
}

fn rss_mb() -> f64 {
    rss::rss_bytes() as f64 / (1024.0 * 1024.0)
}

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let ebin = args.next().expect("the folder of msg_bench.beam");
    let n: usize = args.next().map_or(100_000, |s| s.parse().unwrap());
    let runs: usize = args.next().map_or(3, |s| s.parse().unwrap());
    let epmd = EpmdServer::start("127.0.0.1", 0).await.unwrap();
    let cookie = format!("mb{}", rand::random::<u32>());
    let tag = std::process::id();
    let mut config = NodeConfig::new(
        NodeName::from_cli(&format!("mb_r{tag}"), false).unwrap(),
        Cookie::new(cookie.clone()),
    );
    config.epmd_port = epmd.port;
    config.embedded_epmd = false;
    // The same without read coalescing, for the rows that show its effect.
    let mut config0 = config.clone();
    config0.name = NodeName::from_cli(&format!("mb_r0{tag}"), false).unwrap();
    config0.read_hold = None;
    let node = Node::start(config).await.unwrap();
    let node0 = Node::start(config0).await.unwrap();
    let a = erl(&format!("mb_a{tag}"), &cookie, epmd.port, &ebin);
    let b = erl(&format!("mb_b{tag}"), &cookie, epmd.port, &ebin);
    for e in [&a, &b] {
        let t0 = Instant::now();
        while !node.ping(&e.1).await {
            assert!(t0.elapsed() < T, "{} did not come up", e.1);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let beam_sink = rpc(&node, &b.1, "sink", vec![]).await;
    let beam_sink = term::as_pid(&beam_sink).expect("sink pid").clone();
    let sink = node.spawn_process();
    let our_sink = sink.pid().clone();
    tokio::spawn(rust_sink(sink));
    let sink0 = node0.spawn_process();
    let our_sink0 = sink0.pid().clone();
    tokio::spawn(rust_sink(sink0));
    let mut me = node.spawn_process();
    // a and b connect to each other before the first timed run
    rpc(
        &node,
        &a.1,
        "blast",
        vec![Term::from(beam_sink.clone()), int(10), int(1)],
    )
    .await;

    let sizes = [("small", int(1)), ("1k", binary(vec![7; 1024]))];
    // MSG_BENCH_ONLY=path.size[,...] (e.g. `beam_rust.small`; `calls.all`
    // for the call rows) runs only those, and no burst, then prints each
    // link's counters to stderr (bytes per message): for profiling one
    // path.
    let only = std::env::var("MSG_BENCH_ONLY").ok();
    let wanted = |path: &str, size: &str| {
        only.as_deref()
            .is_none_or(|o| o.split(',').any(|w| w == format!("{path}.{size}")))
    };
    for _ in 0..runs {
        for (size, payload) in &sizes {
            let mut rates = Vec::new();
            if wanted("beam_beam", size) {
                let bb = beam_blast(&node, &a.1, &beam_sink, n, payload).await;
                rates.push(("beam", "beam_beam", bb));
            }
            if wanted("beam_rust", size) {
                let br = beam_blast(&node, &a.1, &our_sink, n, payload).await;
                rates.push(("ours", "beam_rust", br));
            }
            if wanted("beam_rust_at_once", size) {
                let br = beam_blast(&node, &a.1, &our_sink0, n, payload).await;
                rates.push(("ours", "beam_rust_at_once", br));
            }
            if wanted("rust_beam", size) {
                let rb = rust_blast(&mut me, &beam_sink, n, payload).await;
                rates.push(("ours", "rust_beam", rb));
            }
            for (side, path, rate) in rates {
                println!("{side}.msgs.{path}.{size} {rate:.0}");
                if *size == "1k" {
                    // payload bytes only
                    println!("{side}.mb.{path}.{size} {:.1}", rate * 1024.0 / 1e6);
                }
            }
        }
    }
    if wanted("calls", "all") {
        let beam_echo = rpc(&node, &b.1, "echo", vec![]).await;
        let echoes = [
            ("beam", "beam_beam", beam_echo),
            ("ours", "beam_rust", Term::from(spawn_echo(&node))),
            ("ours", "beam_rust_at_once", Term::from(spawn_echo(&node0))),
        ];
        for _ in 0..runs {
            for callers in [10, 100] {
                for (side, path, echo) in &echoes {
                    let args = vec![echo.clone(), int(callers), int(1000)];
                    let t = rpc(&node, &a.1, "callers", args).await;
                    let rate = term::as_int(&t).unwrap_or_else(|| panic!("callers: {t}"));
                    println!("{side}.callers.{path}.{callers} {rate}");
                }
            }
            for (load, burst) in [("idle", 0), ("stream", 100)] {
                for (side, path, echo) in &echoes {
                    let args = vec![echo.clone(), int(2000), int(burst)];
                    let t = rpc(&node, &a.1, "calls", args).await;
                    let v: Vec<i64> = term::as_tuple(&t)
                        .and_then(|v| v.iter().map(term::as_int).collect())
                        .unwrap_or_else(|| panic!("calls: {t}"));
                    println!("{side}.call_p50.{path}.{load} {}", v[0]);
                    println!("{side}.call_p99.{path}.{load} {}", v[1]);
                }
            }
        }
    }
    if only.is_some() {
        for p in node.peer_info() {
            eprintln!("{p:?}");
        }
        node0.shutdown().await;
        node.shutdown().await;
        return;
    }
    // Memory: a burst of 200k 1 KiB messages each way, then idle.
    let burst = 200_000;
    let kib = binary(vec![7; 1024]);
    tokio::time::sleep(Duration::from_secs(1)).await;
    println!("ours.rss.before_burst {:.1}", rss_mb());
    rust_blast(&mut me, &beam_sink, burst, &kib).await;
    beam_blast(&node, &a.1, &our_sink, burst, &kib).await;
    println!("ours.rss.after_burst {:.1}", rss_mb());
    tokio::time::sleep(Duration::from_secs(3)).await;
    println!("ours.rss.idle_3s_after {:.1}", rss_mb());
    node0.shutdown().await;
    node.shutdown().await;
}
