//! Shared helpers of the cpg tests: the erl-side driver scope
//! (`erl_test/cpg_protocol_driver.erl`), genuine cpg nodes, and views of
//! membership on both sides.

use super::{eval, genuine_cpg_args_env, rpc, unique, ErlNode, World};
use cpg_node::cpg::server::CpgScope;
use cpg_node::cpg::wire::WireName;
use cpg_node::cpg::DEFAULT_SCOPE;
use cpg_node::term::{self, atom, Term};
use cpg_node::Node;

/// The erl module that plays a BEAM scope.
pub const DRV: &str = "cpg_protocol_driver";

/// A fresh member process on the driver's node.
pub async fn member(r: &Node, erl: &str) -> Term {
    rpc(r, erl, DRV, "member", vec![]).await
}

/// Casts `req` from the driver to the Rust scope, as a BEAM scope does.
pub async fn cast(r: &Node, erl: &str, req: Term) {
    rpc(
        r,
        erl,
        DRV,
        "cast",
        vec![atom(DEFAULT_SCOPE), atom(r.name()), req],
    )
    .await;
}

/// Everything the Rust scope sent to the driver scope, oldest first.
pub async fn received(r: &Node, erl: &str) -> Vec<Term> {
    let got = rpc(r, erl, DRV, "received", vec![atom(DEFAULT_SCOPE)]).await;
    term::as_list(&got).unwrap_or_default().to_vec()
}

/// The Rust scope's members of `name` as pid terms (empty when none).
pub fn ours<N: WireName + Send + Sync>(scope: &CpgScope<N>, name: &N::Borrowed) -> Vec<Term>
where
    N::Store<cpg_node::cpg::group::GroupData<cpg_node::cpg::MemberPid>>: Send + Sync,
{
    scope
        .get_members(name)
        .map(|(_, v)| v.into_iter().map(|p| Term::Pid(p.into())).collect())
        .unwrap_or_default()
}

/// How many times the Rust scope holds `pid` in `group`.
pub fn count_ours(scope: &CpgScope, group: &str, pid: &Term) -> usize {
    ours(scope, group).iter().filter(|p| *p == pid).count()
}

/// A genuine cpg node (`node_type` and more `-cpg` settings) whose default
/// scope is up, with a Rust `ctl` node to drive it. The tests that call it
/// are `#[ignore]`d; run with `--include-ignored` only when CPG_EBIN is set.
pub async fn genuine(w: &World, node_type: &str, env: &[(&str, &str)]) -> (ErlNode, Node) {
    let args = genuine_cpg_args_env(node_type, env);
    let args: Vec<&str> = args.iter().map(|s| s.as_str()).collect();
    let g = ErlNode::start(&unique("g"), &w.cookie, w.epmd.port, &args).await;
    let ctl = w.rust_node("ctl").await;
    eval(
        &ctl,
        &g.name,
        "cpg_node_test_util:wait_for(cpg_default_scope).",
    )
    .await;
    (g, ctl)
}

/// `cpg:get_members(Name)` on a BEAM node, as pid terms (empty for
/// `no_such_group`).
pub async fn beam_members(ctl: &Node, erl: &str, name: &str) -> Vec<Term> {
    let got = eval(ctl, erl, &format!("cpg:get_members({name:?}).")).await;
    match term::as_tuple(&got) {
        Some([_, _, Term::List(l)]) => l.elements.clone(),
        _ => vec![],
    }
}

/// `<0.N.S>` as the erl node itself prints its own pid.
pub fn erl_pid_text(t: &Term) -> String {
    let p = term::as_pid(t).unwrap();
    format!("<0.{}.{}>", p.id, p.serial)
}
