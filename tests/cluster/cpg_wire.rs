//! The cpg scope protocol on the wire against genuine cpg (needs CPG_EBIN):
//! what a BEAM scope sends a hidden node's scope, and that our casts are
//! applied by it.

use crate::support::cpg::genuine;
use crate::support::{eval, show, World};
use cpg_node::cpg::scope::Request;
use cpg_node::cpg::wire::WireMsg;
use cpg_node::process::{Dest, Signal};
use cpg_node::term::Term;
use std::time::Duration;

async fn next_wire(p: &mut cpg_node::process::Process) -> WireMsg<cpg_node::Pid> {
    loop {
        match p.recv_timeout(Duration::from_secs(10)).await.unwrap() {
            Some(Signal::Message { msg, .. }) => {
                return WireMsg::decode(&msg).unwrap_or_else(|e| panic!("{e}"))
            }
            Some(_) => continue,
            None => panic!("no cpg message from the BEAM scope"),
        }
    }
}

#[tokio::test]
#[ignore = "needs genuine cpg: set CPG_EBIN (see README)"]
async fn genuine_cpg_all_talks_to_a_hidden_scope() {
    crate::require_erl!();
    let w = World::new().await;
    let r = w.rust_node("r").await;
    let mut scope = r.spawn_registered("cpg_default_scope").unwrap();
    // A pre-existing member on the BEAM side, set up through another node
    // once cpg runs; then r connects.
    let (e, ctl) = genuine(&w, "all", &[]).await;
    let pre = eval(
        &ctl,
        &e.name,
        "P = cpg_node_test_util:spawn_idle(), ok = cpg:join(\"pre\", P), P.",
    )
    .await;
    r.connect(&e.name).await.unwrap();
    // node_type all: the BEAM scope sends its exchange to the new hidden node.
    match next_wire(&mut scope).await {
        WireMsg::Cast(Request::Exchange { from, groups }) => {
            assert_eq!(from, e.name);
            assert_eq!(groups.len(), 1);
            assert_eq!(groups[0].0, "pre");
            assert_eq!(Term::Pid(groups[0].1[0].clone()), pre);
        }
        other => panic!("expected exchange, got {other:?}"),
    }
    // A BEAM join is cast to us.
    eval(
        &r,
        &e.name,
        "ok = cpg:join(\"g1\", cpg_node_test_util:spawn_idle()).",
    )
    .await;
    assert!(
        matches!(next_wire(&mut scope).await, WireMsg::Cast(Request::Join { name, .. }) if name == "g1")
    );
    // Our join cast is applied by genuine cpg; Unicode names survive.
    let member = r.spawn_process();
    scope
        .send(
            Dest::Name("cpg_default_scope".into(), e.name.clone()),
            WireMsg::Cast(Request::Join {
                name: "from_rust/ü".to_string(),
                pid: member.pid().clone(),
            })
            .encode(),
        )
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let got = eval(
        &r,
        &e.name,
        "cpg:get_members([$f,$r,$o,$m,$_,$r,$u,$s,$t,$/,252]).",
    )
    .await;
    assert!(
        show(&got).contains(&format!("{}", member.pid().id)),
        "{got}"
    );
    // When our member exits, genuine cpg's monitor removes it.
    drop(member);
    let ok = crate::support::eventually(5, || {
        let r = r.clone();
        let e = e.name.clone();
        async move {
            let got = eval(
                &r,
                &e,
                "cpg:get_members([$f,$r,$o,$m,$_,$r,$u,$s,$t,$/,252]).",
            )
            .await;
            show(&got).contains("no_such_group")
        }
    })
    .await;
    assert!(
        ok,
        "Rust member not removed from genuine cpg after it exited"
    );
    // {new, Node} is answered with an exchange.
    scope
        .send(
            Dest::Name("cpg_default_scope".into(), e.name.clone()),
            WireMsg::<cpg_node::Pid>::New(r.name().to_string()).encode(),
        )
        .unwrap();
    assert!(matches!(
        next_wire(&mut scope).await,
        WireMsg::Cast(Request::Exchange { .. })
    ));
}
