//! The Rust cpg scope against genuine cpg on real BEAM nodes (needs
//! CPG_EBIN): both directions, patterns, counts, exits, via, node stop, and
//! both of BEAM's node types.

use crate::support::cpg::{beam_members, genuine, ours};
use crate::support::{eval, eventually, World};
use cpg_node::cpg::{BeamNodeType, CpgScope, ScopeOptions, DEFAULT_SCOPE};
use cpg_node::term::{self, Term};
use cpg_node::Node;
use std::time::Duration;

/// Asserts that `group` is empty on the BEAM node within a second of `t0`.
async fn gone_from_beam_within_a_second(
    ctl: &Node,
    erl: &str,
    group: &str,
    t0: std::time::Instant,
) {
    assert!(
        eventually(5, || async {
            beam_members(ctl, erl, group).await.is_empty()
        })
        .await
    );
    assert!(
        t0.elapsed() < Duration::from_secs(1),
        "took {:?}",
        t0.elapsed()
    );
}

#[tokio::test]
#[ignore = "needs genuine cpg: set CPG_EBIN (see README)"]
async fn full_peer_with_node_type_all() {
    crate::require_erl!();
    let w = World::new().await;
    let (g, ctl) = genuine(&w, "all", &[]).await;
    let p1 = eval(
        &ctl,
        &g.name,
        "P = cpg_node_test_util:spawn_idle(), ok = cpg:join(\"pre\", P), P.",
    )
    .await;

    let r = w.rust_node("r").await;
    let scope = CpgScope::start(&r, ScopeOptions::new(DEFAULT_SCOPE)).unwrap();
    r.connect(&g.name).await.unwrap();
    // BEAM's pre-existing member reaches the Rust view.
    assert!(eventually(5, || async { ours(&scope, "pre") == vec![p1.clone()] }).await);

    // A Rust pattern member is found by BEAM's get_closest_pid.
    let m = r.spawn_process();
    scope.join("a/*", m.pid()).await.unwrap();
    let ok = eventually(5, || async {
        let got = eval(&ctl, &g.name, "cpg:get_closest_pid(\"a/x\").").await;
        match term::as_tuple(&got) {
            Some([_, key, pid]) => {
                term::charlist_to_string(key).as_deref() == Ok("a/*")
                    && *pid == Term::Pid(m.pid().clone())
            }
            _ => false,
        }
    })
    .await;
    let got = eval(&ctl, &g.name, "cpg:get_closest_pid(\"a/x\").").await;
    assert!(ok, "BEAM did not find the Rust member of \"a/*\": {got}");

    // A group joined from both sides, with counts: same pids, same order.
    // Each side waits until the other's join has arrived before it joins,
    // so that both see the joins in one order (cpg orders copies by arrival).
    eval(
        &ctl,
        &g.name,
        "ok = cpg:join(\"both\", cpg_node_test_util:spawn_idle()).",
    )
    .await;
    assert!(eventually(5, || async { ours(&scope, "both").len() == 1 }).await);
    scope
        .join_counts(&[("both".into(), 2)], m.pid())
        .await
        .unwrap();
    assert!(
        eventually(5, || async {
            beam_members(&ctl, &g.name, "both").await.len() == 3
        })
        .await
    );
    eval(
        &ctl,
        &g.name,
        "ok = cpg:join(\"both\", cpg_node_test_util:spawn_idle()).",
    )
    .await;
    let same = eventually(5, || async {
        let b = beam_members(&ctl, &g.name, "both").await;
        b.len() == 4 && b == ours(&scope, "both")
    })
    .await;
    assert!(
        same,
        "members differ: beam {:?} rust {:?}",
        beam_members(&ctl, &g.name, "both").await,
        ours(&scope, "both")
    );
    scope.leave("both", m.pid()).await.unwrap();
    assert!(
        eventually(5, || async {
            let b = beam_members(&ctl, &g.name, "both").await;
            b.len() == 3 && b == ours(&scope, "both")
        })
        .await
    );

    // A BEAM leave and a BEAM member's death reach us.
    eval(
        &ctl,
        &g.name,
        "[P | _] = element(3, cpg:get_members(\"pre\")), ok = cpg:leave(\"pre\", P).",
    )
    .await;
    assert!(eventually(5, || async { scope.get_members("pre").is_err() }).await);

    // The Rust member exits: gone from BEAM cpg within a second.
    let t0 = std::time::Instant::now();
    drop(m);
    gone_from_beam_within_a_second(&ctl, &g.name, "a/*", t0).await;
}

#[tokio::test]
#[ignore = "needs genuine cpg: set CPG_EBIN (see README)"]
async fn via_and_rust_node_stop() {
    crate::require_erl!();
    let w = World::new().await;
    let (g, ctl) = genuine(&w, "all", &[]).await;
    let r = w.rust_node("r").await;
    let scope = CpgScope::start(&r, ScopeOptions::new(DEFAULT_SCOPE)).unwrap();
    let mut svc = r.spawn_process();
    scope.join("svc", svc.pid()).await.unwrap();
    tokio::spawn(async move { svc.serve_calls(|_, req| req.clone()).await });
    r.connect(&g.name).await.unwrap();
    assert!(
        eventually(5, || async {
            !beam_members(&ctl, &g.name, "svc").await.is_empty()
        })
        .await
    );
    // cpg's via with {global, Name} (oldest member anywhere) reaches Rust; a
    // bare name only looks at members local to the BEAM node.
    let got = eval(
        &ctl,
        &g.name,
        "gen_server:call({via, cpg, {global, \"svc\"}}, hi).",
    )
    .await;
    assert!(crate::support::is_atom(&got, "hi"), "{got}");
    let got = eval(
        &ctl,
        &g.name,
        "{ok, _, P} = cpg:get_closest_pid(\"svc\"), gen_server:call(P, hello).",
    )
    .await;
    assert!(crate::support::is_atom(&got, "hello"), "{got}");
    // The Rust node stops: its members vanish from BEAM cpg within a second.
    let t0 = std::time::Instant::now();
    r.shutdown().await;
    gone_from_beam_within_a_second(&ctl, &g.name, "svc", t0).await;
}

#[tokio::test]
#[ignore = "needs genuine cpg: set CPG_EBIN (see README)"]
async fn beam_left_at_visible() {
    crate::require_erl!();
    let w = World::new().await;
    let (g, ctl) = genuine(&w, "visible", &[]).await;
    let p1 = eval(
        &ctl,
        &g.name,
        "P = cpg_node_test_util:spawn_idle(), ok = cpg:join(\"pre\", P), P.",
    )
    .await;
    let r = w.rust_node("r").await;
    let mut opts = ScopeOptions::new(DEFAULT_SCOPE);
    opts.beam_node_type = BeamNodeType::Visible;
    opts.poll_interval = Duration::from_millis(200);
    let scope = CpgScope::start(&r, opts).unwrap();
    // Joined before connecting: published with join_counts on connect.
    let m = r.spawn_process();
    scope
        .join_counts(&[("from_rust".into(), 2)], m.pid())
        .await
        .unwrap();
    r.connect(&g.name).await.unwrap();
    assert!(eventually(5, || async { ours(&scope, "pre") == vec![p1.clone()] }).await);
    assert!(
        eventually(5, || async {
            beam_members(&ctl, &g.name, "from_rust").await == ours(&scope, "from_rust")
        })
        .await
    );
    assert_eq!(ours(&scope, "from_rust").len(), 2);
    // BEAM joins and leaves reach us by polling.
    let p2 = eval(
        &ctl,
        &g.name,
        "P = cpg_node_test_util:spawn_idle(), ok = cpg:join(\"later\", P), P.",
    )
    .await;
    assert!(eventually(5, || async { ours(&scope, "later") == vec![p2.clone()] }).await);
    eval(
        &ctl,
        &g.name,
        &format!(
            "ok = cpg:leave(\"pre\", {}).",
            "element(1, {hd(element(3, cpg:get_members(\"pre\")))})"
        ),
    )
    .await;
    assert!(
        eventually(5, || async { scope.get_members("pre").is_err() }).await,
        "a BEAM leave was not seen"
    );
}

fn sorted(mut v: Vec<Term>) -> Vec<String> {
    let mut s: Vec<String> = v.drain(..).map(|t| t.to_string()).collect();
    s.sort();
    s
}

/// Every node's view of `group` as sorted pid texts: the Rust scope's, then
/// each BEAM node's.
async fn views(ctl: &Node, scope: &CpgScope, beams: &[&str], group: &str) -> Vec<Vec<String>> {
    let mut v = vec![sorted(ours(scope, group))];
    for b in beams {
        v.push(sorted(beam_members(ctl, b, group).await));
    }
    v
}

async fn converged(ctl: &Node, scope: &CpgScope, beams: &[&str], group: &str, n: usize) -> bool {
    eventually(10, || async {
        let v = views(ctl, scope, beams, group).await;
        v.iter().all(|x| x.len() == n && *x == v[0])
    })
    .await
}

#[tokio::test]
#[ignore = "needs genuine cpg: set CPG_EBIN (see README)"]
async fn netsplit_heal_and_beam_restart() {
    crate::require_erl!();
    let w = World::new().await;
    let (g1, ctl) = genuine(&w, "all", &[]).await;
    let (mut g2, _ctl2) = genuine(&w, "all", &[]).await;
    eval(
        &ctl,
        &g1.name,
        &format!("pong = net_adm:ping('{}').", g2.name),
    )
    .await;
    let r = w.rust_node("r").await;
    let scope = CpgScope::start(&r, ScopeOptions::new(DEFAULT_SCOPE)).unwrap();
    let m = r.spawn_process();
    scope.join("s", m.pid()).await.unwrap();
    for g in [&g1, &g2] {
        eval(
            &ctl,
            &g.name,
            "ok = cpg:join(\"s\", cpg_node_test_util:spawn_idle()).",
        )
        .await;
    }
    r.connect(&g1.name).await.unwrap();
    r.connect(&g2.name).await.unwrap();
    let (n1, n2) = (g1.name.clone(), g2.name.clone());
    let beams = [n1.as_str(), n2.as_str()];
    assert!(
        converged(&ctl, &scope, &beams, "s", 3).await,
        "before the split: {:?}",
        views(&ctl, &scope, &beams, "s").await
    );

    // Netsplit between g1 and the Rust node; both sides change meanwhile.
    eval(
        &ctl,
        &g1.name,
        &format!("erlang:disconnect_node('{}').", r.name()),
    )
    .await;
    assert!(
        eventually(5, || async { ours(&scope, "s").len() == 2 }).await,
        "g1's member not dropped"
    );
    assert!(
        eventually(5, || async {
            beam_members(&ctl, &g1.name, "s").await.len() == 2
        })
        .await
    );
    scope.join("t", m.pid()).await.unwrap();
    eval(
        &ctl,
        &g1.name,
        "ok = cpg:join(\"t\", cpg_node_test_util:spawn_idle()).",
    )
    .await;
    // Heal: the exchange on reconnection makes every view identical.
    r.connect(&g1.name).await.unwrap();
    for (g, n) in [("s", 3), ("t", 2)] {
        assert!(
            converged(&ctl, &scope, &beams, g, n).await,
            "after healing, {g}: {:?}",
            views(&ctl, &scope, &beams, g).await
        );
    }

    // A BEAM node killed and restarted: its members go, new ones come.
    g2.kill();
    assert!(eventually(5, || async { ours(&scope, "s").len() == 2 }).await);
    g2.restart().await;
    eval(
        &ctl,
        &g2.name,
        "cpg_node_test_util:wait_for(cpg_default_scope).",
    )
    .await;
    eval(
        &ctl,
        &g2.name,
        &format!("pong = net_adm:ping('{}').", g1.name),
    )
    .await;
    eval(
        &ctl,
        &g2.name,
        "ok = cpg:join(\"s\", cpg_node_test_util:spawn_idle()).",
    )
    .await;
    r.connect(&g2.name).await.unwrap();
    assert!(
        converged(&ctl, &scope, &beams, "s", 3).await,
        "after the restart: {:?}",
        views(&ctl, &scope, &beams, "s").await
    );
}

/// `gen_server:call` to the Rust scope gets the very replies genuine cpg's
/// scope gives to the same calls (same membership, pid written `P`), and an
/// unknown call gets cpg's `error` (genuine cpg then stops; ours goes on).
#[tokio::test]
#[ignore = "needs genuine cpg: set CPG_EBIN (see README)"]
async fn calls_answered_as_genuine_cpg_answers_them() {
    crate::require_erl!();
    let w = World::new().await;
    let (g, ctl) = genuine(&w, "visible", &[]).await;
    let beam_p = eval(
        &ctl,
        &g.name,
        "P = cpg_node_test_util:spawn_idle(), ok = cpg:join(\"g/*\", P), \
         ok = cpg:join(\"g/*\", P), ok = cpg:join(\"h\", P), P.",
    )
    .await;
    // Another scope name, so that the two memberships stay apart.
    let r = w.rust_node("r").await;
    let scope = CpgScope::start(&r, ScopeOptions::new("other_scope")).unwrap();
    let m = r.spawn_process();
    scope.join("g/*", m.pid()).await.unwrap();
    scope.join("g/*", m.pid()).await.unwrap();
    scope.join("h", m.pid()).await.unwrap();
    let ask = |dest: String, p: Term, req: &str| {
        let code = format!(
            "F = fun(X) -> lists:flatten(io_lib:format(\"~p\", [X])) end, \
             R = gen_server:call({dest}, {req}, 5000), {{F(R), F(P)}}."
        );
        let (ctl, g) = (&ctl, &g);
        async move {
            let got = crate::support::eval_with(ctl, &g.name, &code, &[("P", p)]).await;
            let Some([reply, pid]) = term::as_tuple(&got) else {
                panic!("{got}")
            };
            let text: String = term::charlist_to_string(reply)
                .unwrap()
                .split_whitespace()
                .collect();
            text.replace(&term::charlist_to_string(pid).unwrap(), "P")
        }
    };
    let requests = [
        "{get_members, \"g/x\"}",
        "{get_members, \"g/x\", P}",
        "{get_members, \"nope\"}",
        "{get_local_members, \"h\"}",
        "{get_remote_members, \"h\"}",
        "{get_closest_pid, \"g/y\"}",
        "{get_oldest_pid, \"h\", P}",
        "{get_newest_pid, \"h\"}",
        "which_groups",
        "{which_groups, P}",
        "{which_groups_counts, P}",
        "{join_count, \"g/*\", P}",
        "{join, \"k\", P}",
        "{join_counts, [{\"k\", 0}], P}",
        "{leave_counts, [{\"k\", 1}], P}",
        "{leave, P}",
        "which_groups",
    ];
    let rust = format!("{{other_scope, '{}'}}", r.name());
    let m_term = Term::Pid(m.pid().clone());
    for req in requests {
        let ours = ask(rust.clone(), m_term.clone(), req).await;
        let theirs = ask(DEFAULT_SCOPE.to_string(), beam_p.clone(), req).await;
        assert_eq!(ours, theirs, "replies to {req}");
    }
    // Unknown: the same `error`; genuine cpg's scope then stops, ours not.
    let ours = ask(rust.clone(), m_term.clone(), "whatever").await;
    assert_eq!(ours, "error");
    let theirs = eval(
        &ctl,
        &g.name,
        "catch gen_server:call(cpg_default_scope, whatever, 5000).",
    )
    .await;
    assert_eq!(term::as_atom(&theirs), Some("error"), "{theirs}");
    assert_eq!(ask(rust, m_term, "which_groups").await, "[]");
}

/// The `cpg_data` call (`cpg_data:get_groups/1`'s) to our scope answers the
/// state as genuine cpg holds it: after joins only, the very term a genuine
/// scope that saw them holds (`=:=`, its pids local where ours are remote);
/// after leaves and a death too (genuine trie keeps empty slots there,
/// which decide no lookup), `cpg_data`'s functions read from it what they
/// read from the genuine state, patterns included.
#[tokio::test]
#[ignore = "needs genuine cpg: set CPG_EBIN (see README)"]
async fn cpg_data_hands_out_the_state_as_genuine_cpg_holds_it() {
    crate::require_erl!();
    let w = World::new().await;
    let (g, ctl) = genuine(&w, "all", &[]).await;
    let r = w.rust_node("r").await;
    let scope = CpgScope::start(&r, ScopeOptions::new(DEFAULT_SCOPE)).unwrap();
    r.connect(&g.name).await.unwrap();
    let groups = eval(
        &ctl,
        &g.name,
        "[P1, P2, P3] = [cpg_node_test_util:spawn_idle() || _ <- [1, 2, 3]], \
         register(cpg_data_p1, P1), register(cpg_data_p2, P2), \
         [ok = cpg:join(N, P) || {N, P} <- [{\"abc\", P1}, {\"abd\", P2}, {\"a/*\", P1}, \
             {\"ab\", P3}, {\"b\", P2}, {\"abc\", P2}, {[8364, $u], P3}, {\"a/?/c\", P3}, \
             {\"abc\", P1}]], \
         rand:seed(exsss, {1, 2, 3}), \
         Alphabet = [$a, $b, $c, $/, 233, 8364], \
         Random = fun(_) -> [lists:nth(rand:uniform(6), Alphabet) \
                             || _ <- lists:seq(1, rand:uniform(6))] end, \
         Names = lists:usort([Random(I) || I <- lists:seq(1, 300)]) -- [\"abc\", \"abd\", \"ab\", \"b\"], \
         [ok = cpg:join(N, P1) || N <- Names], \
         persistent_term:put(cpg_data_names, Names), length(Names) + 7.",
    )
    .await;
    let groups = term::as_int(&groups).unwrap_or_else(|| panic!("{groups}")) as usize;
    assert!(eventually(5, || async { ours(&scope, "abc").len() == 3 }).await);
    assert!(eventually(5, || async { scope.which_groups().len() == groups }).await);
    let same = format!(
        "{{trie, A}} = gen_server:call({{cpg_default_scope, '{}'}}, cpg_data, 5000), \
         {{trie, B}} = cpg_data:get_groups(), \
         Swap = fun(_, {{cpg_data, LC, L, RC, R, H}}) -> {{cpg_data, RC, R, LC, L, H}} end, \
         A =:= trie:map(Swap, B) orelse {{A, B}}.",
        r.name()
    );
    let got = eval(&ctl, &g.name, &same).await;
    assert_eq!(term::as_atom(&got), Some("true"), "{got}");
    // Leaves and a death: the same reads.
    eval(
        &ctl,
        &g.name,
        "ok = cpg:leave(\"abd\", whereis(cpg_data_p2)), \
         ok = cpg:leave(\"a/*\", whereis(cpg_data_p1)), \
         Names = persistent_term:get(cpg_data_names), \
         [ok = cpg:leave(N, whereis(cpg_data_p1)) || {I, N} <- lists:enumerate(Names), I rem 2 =:= 0], \
         exit(whereis(cpg_data_p2), kill), ok.",
    )
    .await;
    let left = groups - 3 - (groups - 7) / 2;
    assert!(eventually(5, || async { scope.which_groups().len() == left }).await);
    let reads = format!(
        "A = gen_server:call({{cpg_default_scope, '{}'}}, cpg_data, 5000), \
         B = cpg_data:get_groups(), \
         Names = [\"abc\", \"abd\", \"ab\", \"a/x\", \"a/b/c\", \"a/bb/c\", \"b\", [8364, $u], \"zz\" \
                  | persistent_term:get(cpg_data_names)], \
         Read = fun(G) -> {{cpg_data:which_groups(G), \
             [cpg_data:get_members(N, G) || N <- Names], \
             [catch cpg_data:get_oldest_pid(N, G) || N <- Names]}} end, \
         Read(A) =:= Read(B) orelse {{Read(A), Read(B)}}.",
        r.name()
    );
    let agree = || async { term::as_atom(&eval(&ctl, &g.name, &reads).await) == Some("true") };
    if !eventually(5, agree).await {
        panic!("{}", eval(&ctl, &g.name, &reads).await);
    }
}

/// `sys` asks our scope and processes as it asks a gen_server, and gets
/// an answer at once (each waited out its timeout before): the scope's
/// `sys:get_state/1` is genuine cpg's `#state{}` record, its groups what
/// the `cpg_data` call gives (so `cpg_data`'s functions read them), and
/// `sys:get_status/1` a gen_server's status holding the same state; a
/// process serving calls has the state `undefined` and is suspended and
/// resumed as a gen_server is; a scope is never suspended (refused).
/// Plain erl: no cpg needed.
#[tokio::test]
async fn sys_asks_our_scope_and_processes_as_a_gen_server() {
    crate::require_erl!();
    let w = World::new().await;
    let e = w.erl("sys").await;
    let ctl = w.rust_node("ctl").await;
    let r = w.rust_node("r").await;
    let scope = CpgScope::start(&r, ScopeOptions::new(DEFAULT_SCOPE)).unwrap();
    let m = r.spawn_process();
    scope.join("g", m.pid()).await.unwrap();
    scope.join("jobs/*", m.pid()).await.unwrap();
    let mut echo = r.spawn_process();
    echo.register("sys_echo").unwrap();
    tokio::spawn(async move { echo.serve_calls(|_, req| req.clone()).await });
    let code = format!(
        "R = '{}', T0 = erlang:monotonic_time(millisecond), \
         S = sys:get_state({{cpg_default_scope, R}}, 2000), \
         {{state, NodeName, cpg_default_scope, Groups, #{{}}, #{{}}, undefined, all}} = S, \
         NodeName = atom_to_list(R), \
         Groups = gen_server:call({{cpg_default_scope, R}}, cpg_data, 2000), \
         {{trie, _}} = Groups, \
         {{status, _, {{module, gen_server}}, [[], running, _, [], Status]}} = \
             sys:get_status({{cpg_default_scope, R}}, 2000), \
         [{{\"State\", S}}] = proplists:get_value(data, lists:reverse(Status)), \
         undefined = sys:get_state({{sys_echo, R}}, 2000), \
         {{error, {{unknown_system_msg, suspend}}}} = sys:suspend({{cpg_default_scope, R}}, 2000), \
         ok = sys:suspend({{sys_echo, R}}, 2000), \
         ok = sys:resume({{sys_echo, R}}, 2000), \
         erlang:monotonic_time(millisecond) - T0 < 2000 orelse slow.",
        r.name()
    );
    let got = eval(&ctl, &e.name, &code).await;
    assert_eq!(term::as_atom(&got), Some("true"), "{got}");
}
