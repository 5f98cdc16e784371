//! The Rust pg scope against OTP's own `pg` on real erl nodes (OTP 25):
//! both directions, several scopes, a pid joined many times, leaves of
//! non-members, a disconnect and reconnect, and a BEAM scope restart; the
//! BEAM scope processes never crash (their pids are checked at the end).

use crate::support::{eval, eval_with, eventually, unique, ErlNode, World};
use cpg_node::cpg::TermName;
use cpg_node::pg::{PgError, PgScope, PgScopeError};
use cpg_node::term::{self, parse::parse_term, Pid, Term};
use cpg_node::Node;

/// An erl node running the default `pg` scope (kernel's `start_pg`) and
/// the extra scopes `extra` (started unsupervised with `pg:start/1`).
pub async fn pg_node(w: &World, ctl: &Node, extra: &[&str]) -> ErlNode {
    let n = ErlNode::start(
        &unique("pg"),
        &w.cookie,
        w.epmd.port,
        &["-kernel", "start_pg", "true"],
    )
    .await;
    eval(ctl, &n.name, "cpg_node_test_util:wait_for(pg).").await;
    for s in extra {
        let got = eval(ctl, &n.name, &format!("pg:start({s}).")).await;
        assert!(
            matches!(term::as_tuple(&got), Some([ok, _]) if term::as_atom(ok) == Some("ok")),
            "pg:start({s}) on {}: {got}",
            n.name
        );
    }
    n
}

/// The group named by Erlang text.
fn g(text: &str) -> TermName {
    TermName::new(parse_term(text).unwrap())
}

/// `pg:get_members(Scope, Group)` on a BEAM node, sorted.
pub async fn beam_members(ctl: &Node, erl: &str, scope: &str, group: &str) -> Vec<Term> {
    let got = eval(
        ctl,
        erl,
        &format!("lists:sort(pg:get_members({scope}, {group}))."),
    )
    .await;
    term::as_list(&got)
        .unwrap_or_else(|| panic!("pg:get_members on {erl}: {got}"))
        .to_vec()
}

fn pids(v: &[Pid]) -> Vec<Term> {
    let mut v: Vec<Term> = v.iter().cloned().map(Term::Pid).collect();
    v.sort_by_key(|t| {
        let p = term::as_pid(t).unwrap();
        (p.node.name.clone(), p.id, p.serial)
    });
    v
}

/// Whether two member lists hold the same pids, as multisets.
fn same(a: &[Term], b: &[Term]) -> bool {
    let key = |t: &Term| format!("{t}");
    let mut a: Vec<String> = a.iter().map(key).collect();
    let mut b: Vec<String> = b.iter().map(key).collect();
    a.sort();
    b.sort();
    a == b
}

/// The pid of every scope in `scopes` on every node in `erls`.
pub async fn scope_pids(ctl: &Node, erls: &[&str], scopes: &[&str]) -> Vec<Term> {
    let mut v = Vec::new();
    for e in erls {
        for s in scopes {
            let p = eval(ctl, e, &format!("whereis({s}).")).await;
            assert!(term::as_pid(&p).is_some(), "no scope {s} on {e}: {p}");
            v.push(p);
        }
    }
    v
}

/// An idle process on `erl` joined to `group` in `scope` there.
async fn beam_member(ctl: &Node, erl: &str, scope: &str, group: &str) -> Term {
    eval(
        ctl,
        erl,
        &format!("P = cpg_node_test_util:spawn_idle(), ok = pg:join({scope}, {group}, P), P."),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_directions_several_scopes_and_exact_counts() {
    crate::require_erl!();
    let w = World::new().await;
    let ctl = w.rust_node("ctl").await;
    let a = pg_node(&w, &ctl, &["s2"]).await;
    let b = pg_node(&w, &ctl, &["s2"]).await;
    crate::support::ping(&ctl, &a.name, &b.name).await;
    let erls = [a.name.as_str(), b.name.as_str()];
    let before = scope_pids(&ctl, &erls, &["pg", "s2"]).await;

    // BEAM members from before the Rust node came.
    let pa = beam_member(&ctl, &a.name, "pg", "pre").await;
    let pb = beam_member(&ctl, &b.name, "s2", "{t,1}").await;

    let r = w.rust_node("r").await;
    let pg = PgScope::start(&r, "pg").unwrap();
    let s2 = PgScope::start(&r, "s2").unwrap();
    r.connect(&a.name).await.unwrap();
    r.connect(&b.name).await.unwrap();
    assert!(
        eventually(10, || async {
            pg.get_members(&g("pre")) == vec![term::as_pid(&pa).unwrap().clone()]
        })
        .await
    );
    assert!(
        eventually(10, || async {
            s2.get_members(&g("{t,1}")) == vec![term::as_pid(&pb).unwrap().clone()]
        })
        .await
    );
    assert_eq!(pg.read(|s| s.peers().count()), 2);

    // A Rust pid joined three times is three members on every BEAM node.
    let m = r.spawn_process();
    let mt = Term::Pid(m.pid().clone());
    for _ in 0..3 {
        pg.join(&g("grp"), m.pid()).await.unwrap();
    }
    for e in erls {
        assert!(
            eventually(10, || async {
                beam_members(&ctl, e, "pg", "grp").await == vec![mt.clone(); 3]
            })
            .await,
            "{e}: {:?}",
            beam_members(&ctl, e, "pg", "grp").await
        );
    }
    // One leave removes one copy.
    pg.leave(&g("grp"), m.pid()).await.unwrap();
    for e in erls {
        assert!(
            eventually(10, || async {
                beam_members(&ctl, e, "pg", "grp").await == vec![mt.clone(); 2]
            })
            .await
        );
    }
    // A leave of a non-member: not_joined on both sides, nothing sent.
    assert_eq!(
        pg.leave(&g("never"), m.pid()).await,
        Err(PgScopeError::Pg(PgError::NotJoined))
    );
    let beam_says = eval(&ctl, &a.name, "pg:leave(pg, never, self()).").await;
    assert_eq!(term::as_atom(&beam_says), Some("not_joined"));
    let other = r.spawn_process();
    assert_eq!(
        pg.leave(&g("grp"), other.pid()).await,
        Err(PgScopeError::Pg(PgError::NotJoined))
    );

    // Any term as a group name, in a second scope; a string and a binary.
    s2.join(&g("{t,1}"), m.pid()).await.unwrap();
    s2.join(&g("\"str\""), m.pid()).await.unwrap();
    s2.join(&g("<<\"bin\">>"), m.pid()).await.unwrap();
    for e in erls {
        assert!(
            eventually(10, || async {
                same(
                    &beam_members(&ctl, e, "s2", "{t,1}").await,
                    &[pb.clone(), mt.clone()],
                ) && beam_members(&ctl, e, "s2", "\"str\"").await == vec![mt.clone()]
                    && beam_members(&ctl, e, "s2", "<<\"bin\">>").await == vec![mt.clone()]
            })
            .await
        );
    }
    // Scopes are apart: nothing of s2 in pg.
    assert!(beam_members(&ctl, &a.name, "pg", "\"str\"")
        .await
        .is_empty());

    // A BEAM join, a BEAM leave, a BEAM member exit reach the Rust view.
    let pb2 = beam_member(&ctl, &b.name, "pg", "grp").await;
    assert!(
        eventually(10, || async {
            same(
                &pids(&pg.get_members(&g("grp"))),
                &[mt.clone(), mt.clone(), pb2.clone()],
            )
        })
        .await
    );
    eval(
        &ctl,
        &a.name,
        &format!("pg:leave(pg, pre, {}).", erl_pid(&pa)),
    )
    .await;
    assert!(eventually(10, || async { pg.get_members(&g("pre")).is_empty() }).await);
    eval(&ctl, &b.name, &format!("exit({}, kill).", erl_pid(&pb2))).await;
    assert!(eventually(10, || async { pg.get_members(&g("grp")).len() == 2 }).await);
    // Groups that are integers 0..=255: BEAM writes a leave's `[42]` (and
    // an exit's `[1,2]`) as a string; it was dropped, the member kept.
    let pi = beam_member(&ctl, &a.name, "pg", "42").await;
    let pj = beam_member(&ctl, &a.name, "pg", "1").await;
    let also_2 = format!("ok = pg:join(pg, 2, {}).", erl_pid(&pj));
    eval(&ctl, &a.name, &also_2).await;
    let joined =
        || async { pg.get_members(&g("42")).len() == 1 && pg.get_members(&g("2")).len() == 1 };
    assert!(eventually(10, joined).await);
    eval(
        &ctl,
        &a.name,
        &format!("pg:leave(pg, 42, {}).", erl_pid(&pi)),
    )
    .await;
    eval(&ctl, &a.name, &format!("exit({}, kill).", erl_pid(&pj))).await;
    assert!(
        eventually(10, || async {
            ["42", "1", "2"]
                .iter()
                .all(|n| pg.get_members(&g(n)).is_empty())
        })
        .await,
        "integer groups left on BEAM kept: {:?}",
        pg.which_groups()
    );
    // BEAM's own view agrees with ours.
    for e in erls {
        assert!(
            eventually(10, || async {
                same(
                    &beam_members(&ctl, e, "pg", "grp").await,
                    &pids(&pg.get_members(&g("grp"))),
                )
            })
            .await
        );
    }
    assert_eq!(pg.get_local_members(&g("grp")), vec![m.pid().clone(); 2]);
    assert!(pg.which_groups().contains(&g("grp")));

    // The Rust member exits: every copy leaves every group everywhere.
    drop(m);
    for e in erls {
        assert!(
            eventually(10, || async {
                beam_members(&ctl, e, "pg", "grp").await.is_empty()
                    && beam_members(&ctl, e, "s2", "\"str\"").await.is_empty()
                    && beam_members(&ctl, e, "s2", "{t,1}").await == vec![pb.clone()]
            })
            .await
        );
    }
    assert_eq!(
        before,
        scope_pids(&ctl, &erls, &["pg", "s2"]).await,
        "a BEAM scope crashed"
    );
}

/// `<0.N.S>` text the erl node reads back as its own pid.
fn erl_pid(t: &Term) -> String {
    let p = term::as_pid(t).unwrap();
    format!("list_to_pid(\"<0.{}.{}>\")", p.id, p.serial)
}

/// Kills `erl`'s `pg` scope and waits until kernel's supervisor has
/// started a new one.
async fn restart_beam_pg(ctl: &Node, erl: &str) {
    let old = eval(ctl, erl, "whereis(pg).").await;
    eval(ctl, erl, "exit(whereis(pg), kill).").await;
    let restarted = eventually(10, || async {
        let p = eval(ctl, erl, "whereis(pg).").await;
        term::as_pid(&p).is_some() && p != old
    })
    .await;
    assert!(restarted, "pg of {erl} not restarted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnect_and_remote_scope_restart_converge() {
    crate::require_erl!();
    let w = World::new().await;
    let ctl = w.rust_node("ctl").await;
    let a = pg_node(&w, &ctl, &["s2"]).await;
    let erls = [a.name.as_str()];
    let pa = beam_member(&ctl, &a.name, "pg", "grp").await;

    let r = w.rust_node("r").await;
    let pg = PgScope::start(&r, "pg").unwrap();
    let s2 = PgScope::start(&r, "s2").unwrap();
    let m = r.spawn_process();
    let mt = Term::Pid(m.pid().clone());
    pg.join(&g("grp"), m.pid()).await.unwrap();
    s2.join(&g("x"), m.pid()).await.unwrap();
    r.connect(&a.name).await.unwrap();
    let both = [pa.clone(), mt.clone()];
    let converged = |scope: &'static str, grp: &'static str, want: Vec<Term>| {
        let (ctl, a, pg_, s2_) = (&ctl, &a.name, &pg, &s2);
        async move {
            let ours = if scope == "pg" { pg_ } else { s2_ };
            eventually(15, || async {
                same(&beam_members(ctl, a, scope, grp).await, &want)
                    && same(&pids(&ours.get_members(&g(grp))), &want)
            })
            .await
        }
    };
    assert!(converged("pg", "grp", both.to_vec()).await);
    assert!(converged("s2", "x", vec![mt.clone()]).await);
    let before = scope_pids(&ctl, &erls, &["pg", "s2"]).await;

    // Disconnect: each side drops the other's members.
    r.disconnect(&a.name);
    assert!(converged_split(&ctl, &a.name, &pg, &pa, &mt).await);
    // Reconnect: the BEAM scope never discovers a hidden node; we do.
    r.connect(&a.name).await.unwrap();
    assert!(converged("pg", "grp", both.to_vec()).await);
    assert!(converged("s2", "x", vec![mt.clone()]).await);
    assert_eq!(
        before,
        scope_pids(&ctl, &erls, &["pg", "s2"]).await,
        "a BEAM scope crashed"
    );

    // The BEAM scope restarts (killed; kernel's supervisor starts a new
    // one): it lost every membership, its own node's too (pg's doc says
    // so), and does not know us. Ours come back by our discover.
    restart_beam_pg(&ctl, &a.name).await;
    assert!(
        converged("pg", "grp", vec![mt.clone()]).await,
        "Rust member not back after the restart"
    );
    // The BEAM member joins again and reaches us.
    let join_again = format!("pg:join(pg, grp, {}).", erl_pid(&pa));
    eval(&ctl, &a.name, &join_again).await;
    assert!(converged("pg", "grp", both.to_vec()).await);

    // A process of that node that is no scope claims to be one (any
    // process may send `{discover, Pid}`), then the real scope restarts
    // again: ours must still look for the new one (the claim once stopped
    // the retries, and the new scope never learned our member).
    eval(
        &ctl,
        &a.name,
        &format!(
            "P = spawn(fun() -> receive stop -> ok end end), {{pg, '{}'}} ! {{discover, P}}, timer:sleep(300).",
            r.name()
        ),
    )
    .await;
    restart_beam_pg(&ctl, &a.name).await;
    assert!(
        converged("pg", "grp", vec![mt.clone()]).await,
        "Rust member not back after a restart with a false scope on that node"
    );
    eval(&ctl, &a.name, &join_again).await;
    assert!(converged("pg", "grp", both.to_vec()).await);

    // An unsupervised scope stopped and started again by hand.
    eval(
        &ctl,
        &a.name,
        "exit(whereis(s2), kill), timer:sleep(100), pg:start(s2).",
    )
    .await;
    assert!(converged("s2", "x", vec![mt.clone()]).await);
    let after = scope_pids(&ctl, &erls, &["pg", "s2"]).await;
    // Our own scope task crashes: restarted under a new pid, it keeps our
    // member and is discovered again; BEAM dropped the old one's groups.
    let old_ours = pg.pid();
    pg.inject_crash();
    assert!(eventually(10, || async { pg.pid() != old_ours }).await);
    assert!(converged("pg", "grp", both.to_vec()).await);
    // Our scope does not trap exits, as OTP pg does not: `normal` from
    // BEAM is nothing, `shutdown` ends it (restarted as above).
    let old_ours = pg.pid();
    let ours = Term::Pid(old_ours.clone());
    eval_with(
        &ctl,
        &a.name,
        "exit(P, normal), timer:sleep(200).",
        &[("P", ours.clone())],
    )
    .await;
    assert_eq!(pg.pid(), old_ours, "ended by a normal exit");
    eval_with(&ctl, &a.name, "exit(P, shutdown).", &[("P", ours)]).await;
    assert!(eventually(10, || async { pg.pid() != old_ours }).await);
    assert!(converged("pg", "grp", both.to_vec()).await);
    // `gen_server:stop` (`sys:terminate`) too: `ok`, then restarted.
    let old_ours = pg.pid();
    let stopped = eval_with(
        &ctl,
        &a.name,
        "gen_server:stop(P, normal, 5000).",
        &[("P", Term::Pid(old_ours.clone()))],
    )
    .await;
    assert_eq!(term::as_atom(&stopped), Some("ok"), "{stopped}");
    assert!(eventually(10, || async { pg.pid() != old_ours }).await);
    assert!(converged("pg", "grp", both.to_vec()).await);
    // A last change goes through, and no scope crashed on it.
    pg.leave(&g("grp"), m.pid()).await.unwrap();
    assert!(converged("pg", "grp", vec![pa.clone()]).await);
    assert_eq!(
        after,
        scope_pids(&ctl, &erls, &["pg", "s2"]).await,
        "a BEAM scope crashed"
    );
}

/// After a disconnect: the BEAM side holds only its own member, we only ours.
async fn converged_split(ctl: &Node, a: &str, pg: &PgScope, pa: &Term, mt: &Term) -> bool {
    eventually(15, || async {
        beam_members(ctl, a, "pg", "grp").await == vec![pa.clone()]
            && pids(&pg.get_members(&g("grp"))) == vec![mt.clone()]
    })
    .await
}

/// `cpg-node run --pg-join` as a child process, killed when dropped.
#[cfg(feature = "cli")]
struct RustBin(std::process::Child);

#[cfg(feature = "cli")]
impl Drop for RustBin {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[cfg(feature = "cli")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_run_pg_join_and_pg_members() {
    crate::require_erl!();
    let w = World::new().await;
    let ctl = w.rust_node("ctl").await;
    let a = pg_node(&w, &ctl, &[]).await;
    let before = scope_pids(&ctl, &[&a.name], &["pg"]).await;
    let pa = beam_member(&ctl, &a.name, "pg", "{room,1}").await;

    let rname = format!("{}@{}", unique("rbin"), crate::support::host());
    let _bin = RustBin(
        std::process::Command::new(env!("CARGO_BIN_EXE_cpg-node"))
            .args(["--name", &rname, "--cookie", &w.cookie])
            .args(["run", "--connect", &a.name])
            .args([
                "--pg-join",
                "{room,1}",
                "--pg-join",
                "{room,1}",
                "--pg-join",
                "plain",
            ])
            .env("ERL_EPMD_PORT", w.epmd.port.to_string())
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    // The Rust echo member is listed twice in {room,1} and once in plain.
    let from_rust = |t: &Term| term::as_pid(t).is_some_and(|p| p.node.name == rname);
    assert!(
        eventually(20, || async {
            let m = beam_members(&ctl, &a.name, "pg", "{room,1}").await;
            m.iter().filter(|t| from_rust(t)).count() == 2
                && m.contains(&pa)
                && beam_members(&ctl, &a.name, "pg", "plain")
                    .await
                    .iter()
                    .filter(|t| from_rust(t))
                    .count()
                    == 1
        })
        .await,
        "BEAM does not list the Rust member: {:?}",
        beam_members(&ctl, &a.name, "pg", "{room,1}").await
    );

    // pg-members lists the BEAM member and the Rust ones (its visible peer).
    let (code, rows) = crate::cli::cli(
        &w,
        &["pg-members", "{room,1}", "--connect", &a.name, "--json"],
    )
    .await;
    assert_eq!(code, 0, "{rows:?}");
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0]["scope"], "pg");
    assert_eq!(rows[0]["group"], "{room,1}");
    let listed: Vec<String> = rows[0]["pids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    assert!(
        listed.contains(&term::pid_text(term::as_pid(&pa).unwrap())),
        "{listed:?}"
    );
    let (code, rows) = crate::cli::cli(&w, &["pg-groups", "--connect", &a.name, "--json"]).await;
    assert_eq!(code, 0);
    let groups: Vec<&str> = rows.iter().map(|r| r["group"].as_str().unwrap()).collect();
    assert!(
        groups.contains(&"{room,1}") && groups.contains(&"plain"),
        "{groups:?}"
    );
    assert_eq!(
        before,
        scope_pids(&ctl, &[&a.name], &["pg"]).await,
        "a BEAM scope crashed"
    );
}

/// Two Rust nodes' scopes are peers of each other too (each discovers the
/// other), and a scope that stops takes its members with it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_rust_scopes_are_peers() {
    let w = World::new().await;
    let r1 = w.rust_node("r1").await;
    let r2 = w.rust_node("r2").await;
    let s1 = PgScope::start(&r1, "pg").unwrap();
    let s2 = PgScope::start(&r2, "pg").unwrap();
    let m1 = r1.spawn_process();
    let m2 = r2.spawn_process();
    s1.join(&g("both"), m1.pid()).await.unwrap();
    r1.connect(r2.name()).await.unwrap();
    s2.join(&g("both"), m2.pid()).await.unwrap();
    let want = pids(&[m1.pid().clone(), m2.pid().clone()]);
    for s in [&s1, &s2] {
        assert!(eventually(10, || async { pids(&s.get_members(&g("both"))) == want }).await);
    }
    let (snapshot, mut mon) = s1.monitor(&g("both"));
    assert_eq!(pids(&snapshot), want);
    drop(s2);
    let e = tokio::time::timeout(std::time::Duration::from_secs(10), mon.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(e.kind, cpg_node::pg::EventKind::Leave);
    assert_eq!(e.pids, vec![m2.pid().clone()]);
    assert_eq!(s1.get_members(&g("both")), vec![m1.pid().clone()]);
}

/// Two Rust nodes with pg scopes only, each kept connected to one BEAM
/// node by a cluster keeper, see each other's pg members: pg's sync lists
/// a scope's own members only, so no view names the other hidden node,
/// and each finds the other as a hidden node of the seed's that its EPMD
/// says is no `erl`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pg_only_rust_nodes_of_one_beam_node_see_each_others_members() {
    use cpg_node::node::cluster::{Cluster, ClusterOptions};
    crate::require_erl!();
    let w = World::new().await;
    let ctl = w.rust_node("ctl").await;
    let b = pg_node(&w, &ctl, &[]).await;
    let mut nodes = Vec::new();
    for prefix in ["ra", "rb"] {
        let r = w.rust_node(prefix).await;
        let scope = PgScope::start(&r, "pg").unwrap();
        let mut opts = ClusterOptions::new(vec![b.name.clone()]);
        opts.discover_interval = std::time::Duration::from_millis(300);
        let cluster = Cluster::start(&r, opts);
        nodes.push((r, scope, cluster));
    }
    let m = nodes[0].0.spawn_process();
    nodes[0].1.join(&g("svc"), m.pid()).await.unwrap();
    let reader = &nodes[1].1;
    assert!(
        eventually(10, || async {
            reader.get_members(&g("svc")) == vec![m.pid().clone()]
        })
        .await,
        "the other Rust node's pg member not seen; peers {:?}",
        nodes[1].0.peers()
    );
    assert_eq!(
        beam_members(&ctl, &b.name, "pg", "svc").await,
        pids(&[m.pid().clone()])
    );
    for (r, _, _) in &nodes {
        r.shutdown().await;
    }
}
