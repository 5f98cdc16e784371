//! The Rust scope speaking the cpg protocol with real erl nodes, without
//! genuine cpg: `erl_test/cpg_protocol_driver.erl` plays a BEAM scope.
//! Covers every message kind, exchange (both ways), member death through
//! monitors, nodedown, and malformed input.

use crate::support::cpg::{self, cast, erl_pid_text, member, ours, DRV};
use crate::support::{eval, eval_with, eventually, rpc, World};
use cpg_node::cpg::scope::Request;
use cpg_node::cpg::wire::WireMsg;
use cpg_node::cpg::{CpgScope, ScopeOptions, DEFAULT_SCOPE};
use cpg_node::term::{self, atom, int, string_to_charlist as s, tuple, Term};
use cpg_node::{Node, Pid};

/// What the Rust scope sent to the driver, decoded.
async fn received(r: &Node, erl: &str) -> Vec<WireMsg<Pid>> {
    cpg::received(r, erl)
        .await
        .iter()
        .filter_map(|m| WireMsg::decode(m).ok())
        .collect()
}

#[tokio::test]
async fn every_message_kind_against_a_driver_scope() {
    crate::require_erl!();
    let w = World::new().await;
    let mut e = w.erl("drv").await;
    let r = w.rust_node("r").await;
    let scope = CpgScope::start(&r, ScopeOptions::new(DEFAULT_SCOPE)).unwrap();
    let m = r.spawn_process();
    scope.join("before", m.pid()).await.unwrap();
    // The driver scope starts first (set up through another node), then r
    // connects: the driver gets our exchange, as cpg sends on nodeup, and
    // no {new, Rust} (cpg sends that only when its scope starts; its answer
    // could undo a write of ours that crosses it).
    let ctl = w.rust_node("ctl").await;
    rpc(&ctl, &e.name, DRV, "start", vec![atom(DEFAULT_SCOPE)]).await;
    r.connect(&e.name).await.unwrap();
    let ok = eventually(5, || async {
        let got = received(&r, &e.name).await;
        got.iter().any(|m| {
            matches!(m, WireMsg::Cast(Request::Exchange { groups, .. })
                if groups == &vec![("before".to_string(), vec![m_pid(&scope, "before")])])
        })
    })
    .await;
    assert!(
        ok,
        "no exchange on connect: {:?}",
        received(&r, &e.name).await
    );
    assert!(
        !received(&r, &e.name)
            .await
            .contains(&WireMsg::New(r.name().to_string())),
        "{{new, Node}} sent on nodeup"
    );

    // join / join_counts / leave / leave_counts / leave-all from the driver.
    let a = member(&r, &e.name).await;
    let b = member(&r, &e.name).await;
    cast(&r, &e.name, tuple(vec![atom("join"), s("g"), a.clone()])).await;
    cast(
        &r,
        &e.name,
        tuple(vec![
            atom("join_counts"),
            term::list(vec![
                tuple(vec![s("g"), int(2)]),
                tuple(vec![s("h/*"), int(1)]),
            ]),
            b.clone(),
        ]),
    )
    .await;
    assert!(
        eventually(5, || async {
            ours(&scope, "g") == vec![b.clone(), b.clone(), a.clone()]
        })
        .await
    );
    assert_eq!(
        scope
            .get_closest_pid("h/x")
            .map(|(k, p)| (k, Term::Pid(p.to_pid()))),
        Ok(("h/*".to_string(), b.clone()))
    );
    cast(&r, &e.name, tuple(vec![atom("leave"), s("g"), b.clone()])).await;
    assert!(
        eventually(5, || async {
            ours(&scope, "g") == vec![b.clone(), a.clone()]
        })
        .await
    );
    cast(
        &r,
        &e.name,
        tuple(vec![
            atom("leave_counts"),
            term::list(vec![tuple(vec![s("g"), int(1)])]),
            a.clone(),
        ]),
    )
    .await;
    assert!(eventually(5, || async { ours(&scope, "g") == vec![b.clone()] }).await);
    cast(&r, &e.name, tuple(vec![atom("leave"), b.clone()])).await;
    assert!(
        eventually(5, || async {
            scope.get_members("g").is_err() && scope.get_members("h/x").is_err()
        })
        .await
    );

    // An exchange never sets our own members (cpg's rule 1: a peer's copy
    // of them is at best as new as ours, and one that crossed a write of
    // ours would undo it), neither in a group we have nor in a new one;
    // the members of other nodes it lists are merged.
    let mine = Term::Pid(m.pid().clone());
    let d = member(&r, &e.name).await;
    let exch = tuple(vec![
        atom("exchange"),
        atom(&e.name),
        term::list(vec![
            tuple(vec![s("before"), term::list(vec![mine.clone(); 3])]),
            tuple(vec![
                s("mine/new"),
                term::list(vec![mine.clone(), d.clone()]),
            ]),
            tuple(vec![s("mine/only"), term::list(vec![mine.clone()])]),
        ]),
    ]);
    cast(&r, &e.name, exch).await;
    assert!(
        eventually(5, || async { ours(&scope, "mine/new") == vec![d.clone()] }).await,
        "{:?}",
        ours(&scope, "mine/new")
    );
    assert_eq!(ours(&scope, "before"), vec![mine.clone()]);
    assert!(scope.get_members("mine/only").is_err());
    cast(&r, &e.name, tuple(vec![atom("leave"), d.clone()])).await;
    assert!(eventually(5, || async { scope.get_members("mine/new").is_err() }).await);

    // An exchange creates groups; a member's death (our monitor) removes it.
    let c = member(&r, &e.name).await;
    let exch = tuple(vec![
        atom("exchange"),
        atom(&e.name),
        term::list(vec![tuple(vec![
            s("x"),
            term::list(vec![c.clone(), c.clone()]),
        ])]),
    ]);
    cast(&r, &e.name, exch).await;
    assert!(
        eventually(5, || async {
            ours(&scope, "x") == vec![c.clone(), c.clone()]
        })
        .await
    );
    eval(
        &r,
        &e.name,
        &format!("list_to_pid({:?}) ! {{exit, boom}}.", erl_pid_text(&c)),
    )
    .await;
    assert!(
        eventually(5, || async { scope.get_members("x").is_err() }).await,
        "member death not seen"
    );

    // A large exchange (merged in several chunks) arrives whole. At about
    // 130 KB the BEAM sends it in fragments, with its atoms in the atom
    // cache, and we read it from its bytes (a scope's large messages are
    // left undecoded by the link: `dist::raw`).
    let c2 = member(&r, &e.name).await;
    let groups: Vec<Term> = (0..3000)
        .map(|i| tuple(vec![s(&format!("big/{i}")), term::list(vec![c2.clone()])]))
        .collect();
    cast(
        &r,
        &e.name,
        tuple(vec![atom("exchange"), atom(&e.name), term::list(groups)]),
    )
    .await;
    assert!(
        eventually(5, || async {
            scope
                .which_groups()
                .iter()
                .filter(|g| g.starts_with("big/"))
                .count()
                == 3000
        })
        .await,
        "large exchange not merged whole"
    );
    assert_eq!(ours(&scope, "big/2999"), vec![c2.clone()]);

    // Our own joins and leaves are cast to the driver in cpg's shapes.
    scope
        .join_counts(&[("mine".into(), 2)], m.pid())
        .await
        .unwrap();
    scope.leave("mine", m.pid()).await.unwrap();
    scope.leave_all(m.pid()).await.unwrap();
    let mp = m.pid().clone();
    let ok = eventually(5, || async {
        let got = received(&r, &e.name).await;
        let want = [
            WireMsg::Cast(Request::JoinCounts {
                counts: vec![("mine".into(), 2)],
                pid: mp.clone(),
            }),
            WireMsg::Cast(Request::Leave {
                name: "mine".to_string(),
                pid: mp.clone(),
            }),
            WireMsg::Cast(Request::LeaveAll { pid: mp.clone() }),
        ];
        let pos: Vec<Option<usize>> = want
            .iter()
            .map(|w| got.iter().position(|g| g == w))
            .collect();
        pos.iter().all(Option::is_some) && pos.windows(2).all(|p| p[0] < p[1])
    })
    .await;
    assert!(ok, "our casts: {:?}", received(&r, &e.name).await);

    // {new, Node} is answered with an exchange; junk is dropped, the scope lives on.
    for junk in [
        atom("junk"),
        tuple(vec![
            atom("$gen_cast"),
            tuple(vec![atom("join"), atom("not_a_string"), int(1)]),
        ]),
        tuple(vec![atom("$gen_cast"), atom("x")]),
    ] {
        rpc(
            &r,
            &e.name,
            DRV,
            "send_raw",
            vec![atom(DEFAULT_SCOPE), atom(r.name()), junk],
        )
        .await;
    }
    scope.join("again", m.pid()).await.unwrap();
    rpc(
        &r,
        &e.name,
        DRV,
        "new",
        vec![atom(DEFAULT_SCOPE), atom(r.name())],
    )
    .await;
    let ok = eventually(5, || async {
        received(&r, &e.name).await.iter().any(|m| matches!(m, WireMsg::Cast(Request::Exchange { groups, .. }) if groups.iter().any(|(n, _)| n == "again")))
    })
    .await;
    assert!(ok, "no exchange answering {{new, Node}} after junk input");

    // nodedown: every member of that node goes.
    cast(
        &r,
        &e.name,
        tuple(vec![atom("join"), s("gone"), member(&r, &e.name).await]),
    )
    .await;
    assert!(eventually(5, || async { scope.get_members("gone").is_ok() }).await);
    e.kill();
    assert!(
        eventually(5, || async { scope.get_members("gone").is_err() }).await,
        "nodedown did not remove members"
    );
    assert!(scope.get_members("again").is_ok());
}

fn m_pid(scope: &CpgScope, name: &str) -> Pid {
    Pid::from(scope.get_members(name).unwrap().1[0])
}

/// `join_counts` with counts nobody can hold (10^10 would be a 4 GiB
/// allocation, 10^7 about 1 GB) is logged and ignored: the node lives, the
/// other members are intact and later casts are served. A local join over
/// the cap is refused.
#[tokio::test]
async fn hostile_join_counts_ignored_scope_serves_on() {
    crate::require_erl!();
    let w = World::new().await;
    let e = w.erl("drv").await;
    let r = w.rust_node("r").await;
    let scope = CpgScope::start(&r, ScopeOptions::new(DEFAULT_SCOPE)).unwrap();
    let a = member(&r, &e.name).await;
    cast(&r, &e.name, tuple(vec![atom("join"), s("g"), a.clone()])).await;
    assert!(eventually(5, || async { ours(&scope, "g") == vec![a.clone()] }).await);
    for count in ["10000000000", "10000000"] {
        let code = format!(
            "B = cpg_protocol_driver:member(), \
             cpg_protocol_driver:cast({DEFAULT_SCOPE}, '{}', \
             {{join_counts, [{{\"x\", {count}}}, {{\"y\", 1}}], B}}), B.",
            r.name()
        );
        let b = eval(&r, &e.name, &code).await;
        assert!(term::as_pid(&b).is_some(), "{b}");
    }
    cast(
        &r,
        &e.name,
        tuple(vec![atom("join"), s("after"), a.clone()]),
    )
    .await;
    assert!(
        eventually(5, || async { ours(&scope, "after") == vec![a.clone()] }).await,
        "the scope stopped serving casts"
    );
    assert!(scope.get_members("x").is_err());
    assert!(
        scope.get_members("y").is_err(),
        "a refused request is ignored whole"
    );
    assert_eq!(ours(&scope, "g"), vec![a.clone()]);
    assert!(r.peers().contains(&e.name));
    let m = r.spawn_process();
    let err = scope
        .join_counts(&[("big".into(), 10_000_000_000)], m.pid())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("exceed"), "{err}");
    scope.join("small", m.pid()).await.unwrap();
    assert_eq!(scope.get_members("small").unwrap().1, vec![m.pid().clone()]);
}

/// Many casts each under the per-group cap, a million copies into a new
/// group every time, once grew the node by 30 to 57 MB a cast: the scope
/// holds at most `max_total_copies` in all (here lowered to 5,000 with
/// casts of 1,000), ignores what would go past it, keeps serving, and
/// takes copies again once some leave. The casts come from a real erl
/// node, one after the other from one process (so in order).
#[tokio::test]
async fn join_counts_into_ever_new_groups_stop_at_the_scope_cap() {
    crate::require_erl!();
    let w = World::new().await;
    let e = w.erl("drv").await;
    let r = w.rust_node("r").await;
    let mut opts = ScopeOptions::new(DEFAULT_SCOPE);
    opts.max_copies = 1000;
    opts.max_total_copies = 5000;
    let scope = CpgScope::start(&r, opts).unwrap();
    let code = format!(
        "B = cpg_protocol_driver:member(), \
         [cpg_protocol_driver:cast({DEFAULT_SCOPE}, '{}', \
           {{join_counts, [{{\"g\" ++ integer_to_list(I), 1000}}], B}}) \
          || I <- lists:seq(1, 12)], \
         cpg_protocol_driver:cast({DEFAULT_SCOPE}, '{}', {{join, \"last\", B}}), B.",
        r.name(),
        r.name()
    );
    let b = eval(&r, &e.name, &code).await;
    assert!(term::as_pid(&b).is_some(), "{b}");
    // Five groups of 1,000 fill the scope: the other seven casts and the
    // last join are ignored, in the order they came.
    let full = || scope.read(|s| (s.total_copies(), s.group_count()));
    assert!(
        eventually(5, || async { full() == (5000, 5) }).await,
        "{:?}",
        full()
    );
    assert!(scope.get_members("g6").is_err());
    assert!(scope.get_members("last").is_err());
    // A local write past it fails and says why.
    let m = r.spawn_process();
    let err = scope.join("mine", m.pid()).await.unwrap_err();
    assert!(err.to_string().contains("in all"), "{err}");
    // The node still serves: a leave makes room, and a join goes in.
    cast(
        &r,
        &e.name,
        tuple(vec![
            atom("leave_counts"),
            term::list(vec![tuple(vec![s("g1"), int(1000)])]),
            b.clone(),
        ]),
    )
    .await;
    cast(
        &r,
        &e.name,
        tuple(vec![atom("join"), s("after"), b.clone()]),
    )
    .await;
    assert!(
        eventually(5, || async { ours(&scope, "after") == vec![b.clone()] }).await,
        "no room after the leave: {:?}",
        full()
    );
    scope.join("mine", m.pid()).await.unwrap();
    assert_eq!(full(), (4002, 6));
    assert!(r.peers().contains(&e.name));
}

/// `gen_server:call` to the Rust scope from a BEAM node is answered as
/// cpg's `handle_call` answers it: the reads with cpg's replies, writes for
/// Rust pids with `{ok, []}`, anything else with `error` (cpg replies
/// `error`, then stops; this scope lives on).
#[tokio::test]
async fn scope_answers_gen_server_calls() {
    crate::require_erl!();
    let w = World::new().await;
    let e = w.erl("e").await;
    let r = w.rust_node("r").await;
    let scope = CpgScope::start(&r, ScopeOptions::new(DEFAULT_SCOPE)).unwrap();
    let (m, m2) = (r.spawn_process(), r.spawn_process());
    scope.join("g", m.pid()).await.unwrap();
    scope.join("g", m.pid()).await.unwrap();
    let p = Term::Pid(m.pid().clone());
    let q = Term::Pid(m2.pid().clone());
    let call = |req: &str| {
        let code = format!(
            "T0 = erlang:monotonic_time(millisecond), \
             R = gen_server:call({{{DEFAULT_SCOPE}, '{}'}}, {req}, 5000), \
             F = fun(X) -> lists:flatten(io_lib:format(\"~p\", [X])) end, \
             {{F(R), F(P), F(Q), erlang:monotonic_time(millisecond) - T0}}.",
            r.name()
        );
        let (r, e, p, q) = (&r, &e, p.clone(), q.clone());
        let req = req.to_string();
        async move {
            let got = eval_with(r, &e.name, &code, &[("P", p), ("Q", q)]).await;
            match term::as_tuple(&got) {
                Some([reply, pid, pid2, ms]) => {
                    assert!(term::as_int(ms).unwrap() < 2000, "slow reply to {req}");
                    // As erl prints it, without line breaks, and with the
                    // Rust pids written `P` and `Q`.
                    let text: String = term::charlist_to_string(reply)
                        .unwrap()
                        .split_whitespace()
                        .collect();
                    text.replace(&term::charlist_to_string(pid).unwrap(), "P")
                        .replace(&term::charlist_to_string(pid2).unwrap(), "Q")
                }
                _ => panic!("call {req}: {got}"),
            }
        }
    };
    assert_eq!(call("{get_members, \"g\"}").await, "{ok,\"g\",[P,P]}");
    assert_eq!(
        call("{get_members, \"g\", P}").await,
        "{error,{no_such_group,\"g\"}}"
    );
    assert_eq!(
        call("{get_members, \"nope\"}").await,
        "{error,{no_such_group,\"nope\"}}"
    );
    assert_eq!(call("{get_closest_pid, \"g\"}").await, "{ok,\"g\",P}");
    assert_eq!(
        call("{get_remote_pid, \"g\"}").await,
        "{error,{no_process,\"g\"}}"
    );
    assert_eq!(call("which_groups").await, "[\"g\"]");
    assert_eq!(call("{which_groups_counts, P}").await, "[{\"g\",2}]");
    assert_eq!(call("{join_count, \"g\", P}").await, "2");
    // The long replies (written as bytes): names past Latin-1, patterns,
    // exclusions, a pid with no group.
    assert_eq!(call("{which_groups, Q}").await, "[]");
    assert_eq!(call("{which_groups_counts, Q}").await, "[]");
    scope.join("g", m2.pid()).await.unwrap();
    scope.join("\u{e9}/\u{20ac}", m.pid()).await.unwrap();
    scope.join("a/*", m2.pid()).await.unwrap();
    let euro = "[233,47,8364]";
    assert_eq!(
        call("which_groups").await,
        format!("[\"a/*\",\"g\",{euro}]")
    );
    assert_eq!(call("{which_groups, P}").await, format!("[\"g\",{euro}]"));
    assert_eq!(
        call("{which_groups_counts, P}").await,
        format!("[{{\"g\",2}},{{{euro},1}}]")
    );
    assert_eq!(
        call("{get_members, [233, $/, 8364]}").await,
        format!("{{ok,{euro},[P]}}")
    );
    assert_eq!(call("{get_members, \"a/x\"}").await, "{ok,\"a/*\",[Q]}");
    assert_eq!(call("{get_members, \"g\", P}").await, "{ok,\"g\",[Q]}");
    assert_eq!(
        call("{get_local_members, \"g\"}").await,
        "{ok,\"g\",[Q,P,P]}"
    );
    assert_eq!(
        call("{get_remote_members, \"g\"}").await,
        "{error,{no_such_group,\"g\"}}"
    );
    assert_eq!(
        call("{get_members, \"a/x\", Q}").await,
        "{error,{no_such_group,\"a/x\"}}"
    );
    assert_eq!(call("{get_members, \"g\", 7}").await, "error");
    scope.leave("\u{e9}/\u{20ac}", m.pid()).await.unwrap();
    scope.leave("a/*", m2.pid()).await.unwrap();
    scope.leave("g", m2.pid()).await.unwrap();
    // Unknown requests get cpg's `error`, and the scope goes on serving.
    assert_eq!(call("whatever").await, "error");
    assert_eq!(call("{get_members}").await, "error");
    assert_eq!(call("{get_members, \"g\", P, 1}").await, "error");
    assert_eq!(call("{which_groups, P, 1}").await, "error");
    assert_eq!(call("{which_groups}").await, "error");
    assert_eq!(call("{get_members, 5}").await, "{error,{no_such_group,5}}");
    // Writes for our own pids; an erl pid is not ours to join.
    assert_eq!(call("{join, \"h\", P}").await, "{ok,[]}");
    assert_eq!(ours(&scope, "h"), vec![p.clone()]);
    assert_eq!(call("{join, \"h\", self()}").await, "error");
    assert_eq!(call("{leave, \"h\", P}").await, "{ok,[]}");
    assert!(scope.get_members("h").is_err());
    assert_eq!(call("{join_counts, [{\"h\", 0}], P}").await, "error");
    assert_eq!(call("{leave, P}").await, "{ok,[]}");
    assert_eq!(call("which_groups").await, "[]");
}

/// A peer's join of a pid of our node that no process of ours has (the
/// number of a live one, another serial: forged, or a process long gone
/// as BEAM sees it) is dropped at once, as genuine cpg drops such a pid:
/// its monitor fires with noproc. It named the live process before, and
/// stayed a member, cast to every BEAM scope, until that process died.
#[tokio::test]
async fn a_join_of_a_pid_of_ours_that_names_no_process_is_dropped_at_once() {
    crate::require_erl!();
    let w = World::new().await;
    let e = w.erl("e").await;
    let r = w.rust_node("r").await;
    let scope = CpgScope::start(&r, ScopeOptions::new(DEFAULT_SCOPE)).unwrap();
    let m = r.spawn_process();
    scope.join("real", m.pid()).await.unwrap();
    let code = format!(
        "B = term_to_binary(P), N = byte_size(B) - 8, \
         <<Pre:N/binary, _:32, Creation:32>> = B, \
         Ghost = binary_to_term(<<Pre/binary, 5:32, Creation:32>>), \
         {{gen_server:call({{{DEFAULT_SCOPE}, '{}'}}, {{join, \"ghost\", Ghost}}, 5000), Ghost}}.",
        r.name()
    );
    let got = eval_with(&r, &e.name, &code, &[("P", Term::Pid(m.pid().clone()))]).await;
    let Some([reply, Term::Pid(ghost)]) = term::as_tuple(&got) else {
        panic!("{got}")
    };
    assert_eq!((ghost.id, ghost.serial), (m.pid().id, 5), "{got}");
    assert_eq!(reply.to_string(), "{'ok',[]}", "{got}");
    assert!(
        eventually(2, || async { scope.get_members("ghost").is_err() }).await,
        "the member named by no process stayed: {:?}",
        scope.get_members("ghost")
    );
    assert_eq!(ours(&scope, "real"), vec![Term::Pid(m.pid().clone())]);
}

/// A full peer's join that the scope's total cap refused is learned once
/// copies have left and there is room: the peer is asked for its state
/// again, and its exchange brings the member. (Its casts say no more of
/// it, and a peer at `all` is not polled: the member stayed unknown here
/// for as long as the connection lasted.) The BEAM side is the model of a
/// cpg scope (`erl_test/cpg_model_scope.erl`) at `all`.
#[tokio::test]
async fn a_join_refused_at_the_scope_cap_is_learned_once_there_is_room() {
    crate::require_erl!();
    let w = World::new().await;
    let e = w.erl("m").await;
    let r = w.rust_node("r").await;
    let mut opts = ScopeOptions::new(DEFAULT_SCOPE);
    opts.max_total_copies = 3;
    let scope = CpgScope::start(&r, opts).unwrap();
    let started = eval(
        &r,
        &e.name,
        &format!("{{ok, _}} = cpg_model_scope:start({DEFAULT_SCOPE}), ok."),
    )
    .await;
    assert_eq!(term::as_atom(&started), Some("ok"), "{started}");
    r.connect(&e.name).await.unwrap();
    let join = |i: u32| {
        format!(
            "P = cpg_node_test_util:spawn_idle(), register(capped_{i}, P), \
             ok = cpg_model_scope:join({DEFAULT_SCOPE}, \"g\", P), P."
        )
    };
    let mut pids = Vec::new();
    for i in 1..=3 {
        pids.push(eval(&r, &e.name, &join(i)).await);
        let n = pids.len();
        assert!(eventually(5, || async { ours(&scope, "g").len() == n }).await);
    }
    // Full: the fourth join is refused here.
    let p4 = eval(&r, &e.name, &join(4)).await;
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert_eq!(ours(&scope, "g").len(), 3);
    assert!(!ours(&scope, "g").contains(&p4));
    // A leave makes room: the refused member comes.
    eval(
        &r,
        &e.name,
        &format!("ok = cpg_model_scope:leave({DEFAULT_SCOPE}, \"g\", whereis(capped_1)), ok."),
    )
    .await;
    let mut want = vec![p4.clone(), pids[2].clone(), pids[1].clone()];
    want.sort_by_key(|p| p.to_string());
    let got = || {
        let mut v = ours(&scope, "g");
        v.sort_by_key(|p| p.to_string());
        v
    };
    assert!(
        eventually(15, || async { got() == want }).await,
        "ours {:?}, want {want:?}",
        got()
    );
}
