//! Captures the bytes a real `erl` node writes to a cpg-node connection,
//! for the golden tests of `dist::control`.
//!
//! ```sh
//! cargo run --example golden_capture -- /tmp/golden.trace
//! ```
//!
//! (Linux, with `strace` and `erl` on the PATH.) The connection's frames
//! are the `writev` calls on the socket after the handshake (`00 15 ...`
//! lines are the handshake); `src/dist/golden_tests.rs` keeps them.
//!
//! Starts an EPMD and a node of ours, then an `erl` node under `strace`
//! that sends it a REG_SEND, learns a pid of ours, sends to it (SEND_SENDER),
//! monitors and demonitors it, sends a 200 KB message and idles long enough
//! to tick; every write of the `erl` node is in the trace file given.

use cpg_node::config::{Cookie, NodeConfig, NodeName};
use cpg_node::epmd::server::EpmdServer;
use cpg_node::process::Signal;
use cpg_node::term::{atom, tuple};
use cpg_node::Node;
use std::time::Duration;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let trace = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "golden.trace".into());
    let epmd = EpmdServer::start("127.0.0.1", 0).await?;
    let cookie = format!("c{}", rand::random::<u32>());
    let mut config = NodeConfig::new(
        NodeName::from_cli("gcr", false)?,
        Cookie::new(cookie.clone()),
    );
    config.epmd_port = epmd.port;
    config.embedded_epmd = false;
    let node = Node::start(config).await?;
    let me = node.name().to_string();
    let mut p = node.spawn_registered("golden")?;
    let code = format!(
        "R = '{me}', {{golden, R}} ! {{self(), hello}}, \
         receive {{pid, P}} -> ok end, \
         P ! {{small, 1}}, \
         P ! {{[1,2,3], \"abc\", 1.5, -1, 123456789012345678901234567890, <<1,2,3>>, #{{a => 1}}}}, \
         M = erlang:monitor(process, P), erlang:demonitor(M), \
         P ! {{big, binary:copy(<<7>>, 200000)}}, \
         timer:sleep(2500), halt()."
    );
    let mut erl = tokio::process::Command::new("strace")
        .args([
            "-f",
            "-qq",
            "-e",
            "trace=write,writev,sendmsg,sendto",
            "-xx",
            "-s",
            "1000000",
            "-o",
        ])
        .arg(&trace)
        .args([
            "erl",
            "-sname",
            "gce",
            "-setcookie",
            &cookie,
            "-noshell",
            "-kernel",
            "net_ticktime",
            "4",
            "-eval",
        ])
        .arg(&code)
        .env("ERL_EPMD_PORT", epmd.port.to_string())
        .spawn()?;
    loop {
        match tokio::time::timeout(Duration::from_secs(20), p.recv()).await {
            Ok(Ok(Signal::Message { msg, .. })) => {
                let shown = msg.to_string();
                println!("got {}", &shown[..shown.len().min(200)]);
                if let Some([from, _]) = cpg_node::term::as_tuple(&msg) {
                    if let Some(pid) = cpg_node::term::as_pid(from) {
                        p.send(
                            pid.clone(),
                            tuple(vec![
                                atom("pid"),
                                cpg_node::term::Term::from(p.pid().clone()),
                            ]),
                        )?;
                    }
                }
            }
            Ok(other) => println!("got {other:?}"),
            Err(_) => break,
        }
        if let Ok(Some(_)) = erl.try_wait() {
            break;
        }
    }
    let _ = erl.wait().await;
    node.shutdown().await;
    Ok(())
}
