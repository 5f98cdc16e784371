//! Phoenix.PubSub's wire shapes between the Rust node and an Elixir node
//! (erl with Elixir's ebin): a broadcast from the Elixir side reaches a
//! Rust subscriber exactly once, with a pool of two groups, and a Rust
//! broadcast reaches an Elixir subscriber. Phoenix itself is not part of
//! this repository: `erl_test/phoenix_pubsub_model.erl` plays its PG2
//! adapter (with an Elixir Registry for subscriptions), unless
//! `PHOENIX_PUBSUB_EBIN` names the ebin folder of a Phoenix.PubSub build,
//! and then `erl_test/phoenix_pubsub_genuine.erl` drives Phoenix.PubSub
//! itself through the same calls ([`driver`]).

use crate::pg::scope_pids;
use crate::support::{elixir_ebin, eval, eventually, unique, ErlNode, World};
use cpg_node::cpg::TermName;
use cpg_node::pg::PgScope;
use cpg_node::pubsub::{self, Naming, PubSub};
use cpg_node::term::{self, Term};
use std::time::Duration;

/// The erl_test module the tests call for the Elixir side: Phoenix.PubSub
/// itself when `PHOENIX_PUBSUB_EBIN` is set, else our model; and the
/// folder of the Phoenix build, when there is one.
fn driver() -> (&'static str, Option<String>) {
    match std::env::var("PHOENIX_PUBSUB_EBIN") {
        Ok(ebin) if !ebin.is_empty() => ("phoenix_pubsub_genuine", Some(ebin)),
        _ => ("phoenix_pubsub_model", None),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broadcasts_cross_both_ways_once_with_a_pool_of_two() {
    crate::require_erl!();
    let Some(ebin) = elixir_ebin() else { return };
    let w = World::new().await;
    let ctl = w.rust_node("ctl").await;
    let ex = model_node(&w, &ctl, &ebin, "ex", 2).await;
    let before = scope_pids(&ctl, &[&ex.name], &["'Elixir.Phoenix.PubSub'"]).await;

    let (r, scope, ps) = rust_pubsub(&w, &ex, 2).await;
    let mut sub = ps.subscribe(&r, &[b"room:1"]).await.unwrap();
    // Our subscriber is in both groups on the Elixir node.
    for g in [
        "'Elixir.MyApp.PubSub.Adapter'",
        "'Elixir.MyApp.PubSub.Adapter_2'",
    ] {
        let me = Term::Pid(sub.pid().clone());
        assert!(
            eventually(10, || async {
                let m = eval(
                    &ctl,
                    &ex.name,
                    &format!("pg:get_members('Elixir.Phoenix.PubSub', {g})."),
                )
                .await;
                term::as_list(&m).is_some_and(|l| l.contains(&me))
            })
            .await
        );
    }

    // Four broadcasts from four Elixir processes (which pick groups by
    // their pids), one to another topic, then a marker: each arrives once.
    for i in 1..=4 {
        elixir_broadcast(&ctl, &ex.name, "room:1", &format!("{{hello, {i}}}")).await;
    }
    elixir_broadcast(&ctl, &ex.name, "other", "nope").await;
    elixir_broadcast(&ctl, &ex.name, "room:1", "done").await;
    let mut got = Vec::new();
    loop {
        let b = tokio::time::timeout(Duration::from_secs(10), sub.recv())
            .await
            .expect("no broadcast reached the Rust subscriber")
            .unwrap();
        assert_eq!(b.topic, b"room:1");
        assert_eq!(b.dispatcher, pubsub::DEFAULT_DISPATCHER);
        if term::as_atom(&b.msg) == Some("done") {
            break;
        }
        eprintln!("Rust subscriber got {}", TermName::new(b.msg.clone()));
        got.push(TermName::new(b.msg).to_string());
    }
    got.sort();
    assert_eq!(
        got,
        vec!["{hello,1}", "{hello,2}", "{hello,3}", "{hello,4}"]
    );

    // A Rust broadcast reaches the Elixir subscriber (and ours), also
    // with a process in 2.1.0's first group, `Adapter_1` (a subscriber
    // started before Phoenix ran, or anyone): it gets a copy too, and
    // turns nothing away from the worker.
    let stray = eval(
        &ctl,
        &ex.name,
        "P = spawn(fun() -> receive stop -> ok end end), \
         ok = pg:join('Elixir.Phoenix.PubSub', 'Elixir.MyApp.PubSub.Adapter_1', P), P.",
    )
    .await;
    let adapter_1 = TermName::atom(&format!("{}_1", ps.adapter()));
    assert!(eventually(10, || async { scope.get_members(&adapter_1).len() == 1 }).await);
    let esub = elixir_subscriber(&ctl, &ex.name, "room:1").await;
    let from = r.spawn_process();
    let msg = term::tuple(vec![term::atom("from_rust"), term::int(1)]);
    let sent = ps.broadcast(&from, b"room:1", msg.clone());
    assert_eq!(
        sent.len(),
        3,
        "every member of the first group by both namings (their worker, our subscriber, the stray): {sent:?}"
    );
    assert!(sent.contains(term::as_pid(&stray).unwrap()));
    assert!(elixir_got(&ctl, &ex.name, &esub, &msg).await);
    eprintln!("Elixir subscriber got {}", TermName::new(msg.clone()));
    let ours = tokio::time::timeout(Duration::from_secs(10), sub.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(ours.msg, msg);
    assert_eq!(
        before,
        scope_pids(&ctl, &[&ex.name], &["'Elixir.Phoenix.PubSub'"]).await,
        "the Phoenix scope crashed"
    );
}

/// A node whose pool is larger (a rolling restart that grows the pool, as
/// Phoenix 2.2 documents it) brings a group the subscriber was not in: it
/// joins it, so every broadcast from that node, whatever group it picks,
/// reaches it once. A Rust broadcast reaches every subscriber of this
/// node, as Phoenix's reaches every member of the group it picks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_follows_a_grown_pool_and_rust_broadcasts_reach_every_subscriber() {
    crate::require_erl!();
    let Some(ebin) = elixir_ebin() else { return };
    let w = World::new().await;
    let ctl = w.rust_node("ctl").await;
    let ex = model_node(&w, &ctl, &ebin, "ex", 1).await;
    let (r, _scope, ps) = rust_pubsub(&w, &ex, 1).await;
    let mut sub = ps.subscribe(&r, &[b"room:1"]).await.unwrap();
    let mut sub2 = ps.subscribe(&r, &[b"room:1"]).await.unwrap();

    // Both Rust subscribers get a Rust broadcast, and so does Elixir's.
    let esub = elixir_subscriber(&ctl, &ex.name, "room:1").await;
    let from = r.spawn_process();
    let msg = term::tuple(vec![term::atom("from_rust"), term::int(1)]);
    let sent = ps.broadcast(&from, b"room:1", msg.clone());
    assert_eq!(
        sent.len(),
        3,
        "their worker and our two subscribers: {sent:?}"
    );
    for s in [&mut sub, &mut sub2] {
        let got = tokio::time::timeout(Duration::from_secs(10), s.recv()).await;
        assert_eq!(got.unwrap().unwrap().msg, msg);
    }
    assert!(elixir_got(&ctl, &ex.name, &esub, &msg).await);

    // A second node with a pool of 3: its groups 2 and 3 are joined.
    let ex2 = model_node(&w, &ctl, &ebin, "ex2", 3).await;
    r.connect(&ex2.name).await.unwrap();
    let all3 = pubsub::groups(ps.adapter(), 3, Naming::Current);
    let want: Vec<TermName> = all3.iter().map(|g| TermName::atom(g)).collect();
    fn joined(subs: [&pubsub::Subscriber; 2]) -> Vec<Vec<TermName>> {
        subs.iter().map(|s| s.groups().cloned().collect()).collect()
    }
    // (recv follows the pool: run it while waiting.)
    let waited = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            tokio::select! {
                _ = sub.recv() => {}
                _ = sub2.recv() => {}
                _ = tokio::time::sleep(Duration::from_millis(50)) => {}
            }
            if joined([&sub, &sub2]) == [want.clone(), want.clone()] {
                return;
            }
        }
    })
    .await;
    assert!(
        waited.is_ok(),
        "the subscribers are in {:?}",
        joined([&sub, &sub2])
    );
    // Broadcasts from eight processes of the pool-3 node (each picks a
    // group by its pid), then a marker: each arrives once.
    for i in 1..=8 {
        elixir_broadcast(&ctl, &ex2.name, "room:1", &format!("{{grown, {i}}}")).await;
    }
    elixir_broadcast(&ctl, &ex2.name, "room:1", "done").await;
    let mut got = Vec::new();
    loop {
        let b = tokio::time::timeout(Duration::from_secs(10), sub.recv())
            .await
            .expect("a broadcast of the grown pool did not reach the Rust subscriber")
            .unwrap();
        if term::as_atom(&b.msg) == Some("done") {
            break;
        }
        got.push(TermName::new(b.msg).to_string());
    }
    got.sort();
    let expected: Vec<String> = (1..=8).map(|i| format!("{{grown,{i}}}")).collect();
    assert_eq!(got, expected);

    let (model, _) = driver();
    // `direct_broadcast` to our node from eight processes of the pool-3
    // node (each names one group's worker): every subscriber gets each
    // once. (sub2 has the pool-3 broadcasts queued before them.)
    for i in 1..=8 {
        let code = format!(
            "{model}:direct_broadcast('Elixir.MyApp.PubSub', '{}', <<\"room:1\">>, {{direct, {i}}}).",
            r.name()
        );
        eval(&ctl, &ex2.name, &code).await;
    }
    let code = format!(
        "{model}:direct_broadcast('Elixir.MyApp.PubSub', '{}', <<\"room:1\">>, done).",
        r.name()
    );
    eval(&ctl, &ex2.name, &code).await;
    for (s, skip) in [(&mut sub, 0), (&mut sub2, 9)] {
        let mut got = Vec::new();
        loop {
            let b = tokio::time::timeout(Duration::from_secs(10), s.recv())
                .await
                .expect("a direct broadcast did not reach a Rust subscriber")
                .unwrap();
            got.push(TermName::new(b.msg).to_string());
            if got.len() > skip && got.last().map(String::as_str) == Some("done") {
                break;
            }
        }
        let mut direct: Vec<String> = got.split_off(skip);
        direct.pop();
        direct.sort();
        let expected: Vec<String> = (1..=8).map(|i| format!("{{direct,{i}}}")).collect();
        assert_eq!(direct, expected);
    }
}

/// A Rust node `r` with the Phoenix.PubSub pg scope, connected to `ex`,
/// once it sees `ex`'s pool of `pool` groups; `MyApp.PubSub` over it.
async fn rust_pubsub(w: &World, ex: &ErlNode, pool: usize) -> (cpg_node::Node, PgScope, PubSub) {
    let r = w.rust_node("r").await;
    let scope = PgScope::start(&r, pubsub::SCOPE).unwrap();
    r.connect(&ex.name).await.unwrap();
    let adapter = pubsub::adapter_name("MyApp.PubSub");
    assert!(
        eventually(10, || async {
            pubsub::seen_pool_size(&scope, &adapter) == pool
        })
        .await
    );
    let ps = PubSub::new(scope.clone(), "MyApp.PubSub", pool, Naming::Current);
    (r, scope, ps)
}

/// An Elixir node (named from `prefix`) on which the model runs
/// `MyApp.PubSub` with a pool of `pool` groups.
async fn model_node(
    w: &World,
    ctl: &cpg_node::Node,
    ebin: &str,
    prefix: &str,
    pool: usize,
) -> ErlNode {
    let (model, phoenix) = driver();
    let mut args = vec!["-pa", ebin];
    if let Some(p) = &phoenix {
        args.extend(["-pa", p.as_str()]);
    }
    let ex = ErlNode::start(&unique(prefix), &w.cookie, w.epmd.port, &args).await;
    let groups = eval(
        ctl,
        &ex.name,
        &format!("{model}:start('Elixir.MyApp.PubSub', {pool})."),
    )
    .await;
    eprintln!(
        "Elixir node {} runs MyApp.PubSub ({model}) with groups {groups}",
        ex.name
    );
    ex
}

/// `Phoenix.PubSub.broadcast(MyApp.PubSub, Topic, Msg)` (Msg in Erlang
/// syntax) from a new process on the Elixir node.
async fn elixir_broadcast(ctl: &cpg_node::Node, ex: &str, topic: &str, msg: &str) {
    let (model, _) = driver();
    let code = format!("{model}:broadcast('Elixir.MyApp.PubSub', <<\"{topic}\">>, {msg}).");
    eval(ctl, ex, &code).await;
}

/// A process on the Elixir node subscribed to `topic` that records what
/// it gets ([`elixir_got`]).
async fn elixir_subscriber(ctl: &cpg_node::Node, ex: &str, topic: &str) -> Term {
    let (model, _) = driver();
    let code = format!("{model}:subscriber('Elixir.MyApp.PubSub', <<\"{topic}\">>).");
    eval(ctl, ex, &code).await
}

/// Whether the Elixir subscriber `esub` gets exactly `[want]` (within 10 s).
async fn elixir_got(ctl: &cpg_node::Node, ex: &str, esub: &Term, want: &Term) -> bool {
    let (model, _) = driver();
    eventually(10, || async {
        let got = eval(ctl, ex, &format!("{model}:received({}).", erl_pid(esub))).await;
        term::as_list(&got).is_some_and(|l| l == std::slice::from_ref(want))
    })
    .await
}

fn erl_pid(t: &Term) -> String {
    let p = term::as_pid(t).unwrap();
    format!("list_to_pid(\"<0.{}.{}>\")", p.id, p.serial)
}

/// `cpg-node pubsub subscribe` prints what the Elixir side broadcasts;
/// `cpg-node pubsub broadcast` reaches an Elixir subscriber.
#[cfg(feature = "cli")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_subscribe_and_broadcast() {
    use tokio::io::AsyncBufReadExt;
    crate::require_erl!();
    let Some(ebin) = elixir_ebin() else { return };
    let w = World::new().await;
    let ctl = w.rust_node("ctl").await;
    let ex = model_node(&w, &ctl, &ebin, "ex", 3).await;

    let sname = format!("{}@{}", unique("sub"), crate::support::host());
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_cpg-node"))
        .args(["--name", &sname, "--cookie", &w.cookie])
        .args(["pubsub", "subscribe", "room:1", "--pubsub", "MyApp.PubSub"])
        .args(["--connect", &ex.name, "--json"])
        .env("ERL_EPMD_PORT", w.epmd.port.to_string())
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    // Subscribed once its process is in all three groups.
    assert!(eventually(20, || async {
        let (model, _) = driver();
        let code = format!("lists:sum([length([P || P <- pg:get_members('Elixir.Phoenix.PubSub', G), node(P) =/= node()]) || G <- {model}:groups('Elixir.MyApp.PubSub')]).");
        let got = eval(&ctl, &ex.name, &code).await;
        term::as_int(&got) == Some(3)
    })
    .await);
    elixir_broadcast(&ctl, &ex.name, "other", "nope").await;
    elixir_broadcast(&ctl, &ex.name, "room:1", r#"{new_msg, <<"hi">>}"#).await;
    let line = tokio::time::timeout(Duration::from_secs(10), lines.next_line())
        .await
        .expect("pubsub subscribe printed nothing")
        .unwrap()
        .unwrap();
    let v: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(v["topic"], "room:1", "{line}");
    assert_eq!(v["msg"], "{new_msg,<<\"hi\">>}", "{line}");
    let _ = child.kill().await;

    let esub = elixir_subscriber(&ctl, &ex.name, "room:2").await;
    let (code, out) = crate::cli::cli(
        &w,
        &[
            "pubsub",
            "broadcast",
            "room:2",
            "{from_cli,1}",
            "--pubsub",
            "MyApp.PubSub",
            "--connect",
            &ex.name,
            "--json",
        ],
    )
    .await;
    assert_eq!(code, 0, "{out:?}");
    assert_eq!(out[0]["nodes"], serde_json::json!([ex.name]));
    let want = term::tuple(vec![term::atom("from_cli"), term::int(1)]);
    assert!(elixir_got(&ctl, &ex.name, &esub, &want).await);
}
