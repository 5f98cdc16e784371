//! The `cpg-node` binary's cpg commands against a running node.

use crate::support::{unique, World};
use cpg_node::cpg::{CpgScope, ScopeOptions, DEFAULT_SCOPE};
use cpg_node::term::pid_text;
use serde_json::{json, Value};

/// Runs `cpg-node` with the world's cookie and EPMD; (exit code, JSON lines).
async fn cli(w: &World, args: &[&str]) -> (i32, Vec<Value>) {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_cpg-node"))
        .args(["--name", &unique("cli"), "--cookie", &w.cookie])
        .args(args)
        .env("ERL_EPMD_PORT", w.epmd.port.to_string())
        .output()
        .await
        .expect("run cpg-node");
    let lines = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON: {l}: {e}")))
        .collect();
    (out.status.code().unwrap_or(-1), lines)
}

#[tokio::test]
async fn members_and_groups_as_json() {
    let w = World::new().await;
    let a = w.rust_node("a").await;
    let scope = CpgScope::start(&a, ScopeOptions::new(DEFAULT_SCOPE)).unwrap();
    let p1 = a.spawn_process();
    let p2 = a.spawn_process();
    scope
        .join_counts(&[("g".into(), 2)], p1.pid())
        .await
        .unwrap();
    scope.join("a/*", p2.pid()).await.unwrap();
    let (t1, t2) = (pid_text(p1.pid()), pid_text(p2.pid()));
    let target = a.name();

    let (code, g) = cli(&w, &["members", "g", "--connect", target, "--json"]).await;
    assert_eq!(code, 0);
    assert_eq!(g.len(), 1);
    assert_eq!(g[0]["group"], "g");
    assert_eq!(g[0]["pids"], json!([t1, t1]));
    assert_eq!(g[0]["remote"], json!([t1, t1]));

    let (code, ax) = cli(&w, &["members", "a/x", "--connect", target, "--json"]).await;
    assert_eq!(code, 0);
    assert_eq!(ax[0]["pattern"], "a/*");
    assert_eq!(ax[0]["pids"], json!([t2]));

    let (code, groups) = cli(&w, &["groups", "--connect", target, "--json"]).await;
    assert_eq!(code, 0);
    let names: Vec<&str> = groups
        .iter()
        .map(|r| r["group"].as_str().unwrap())
        .collect();
    assert_eq!(names, vec!["a/*", "g"]);

    let (code, none) = cli(&w, &["members", "nope", "--connect", target, "--json"]).await;
    assert_eq!((code, none.len()), (1, 0));
}
