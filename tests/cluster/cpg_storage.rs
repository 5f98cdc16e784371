//! Map group storage (cpg's `group_storage` other than `trie`): any Erlang
//! term is a group name and lookups are exact. Against
//! `erl_test/cpg_protocol_driver.erl` playing a BEAM scope, and (with
//! CPG_EBIN) against genuine cpg started with `group_storage` `dict`.

use crate::support::cpg::{self, cast, erl_pid_text, genuine, member, received, DRV};
use crate::support::{eval, eventually, rpc, World};
use cpg_node::cpg::scope::{ReadError, Request};
use cpg_node::cpg::storage::TermName;
use cpg_node::cpg::wire::WireMsg;
use cpg_node::cpg::{CpgError, CpgScope, ScopeOptions, Storage, DEFAULT_SCOPE};
use cpg_node::term::{self, atom, binary, int, string_to_charlist as s, tuple, Term};
use cpg_node::Pid;

fn ours(scope: &CpgScope<TermName>, name: &Term) -> Vec<Term> {
    cpg::ours(scope, &TermName::new(name.clone()))
}

/// `{'$gen_cast', {Tag, [{Name, 1}], Pid}}`: what [`CpgScope::join`] and
/// [`CpgScope::leave`] cast (`join_counts` / `leave_counts`, as cpg does).
/// `{'$gen_cast', {Tag, Name, Pid}}`: what cpg:join/leave cast.
fn one_cast(tag: &str, name: &Term, pid: &Pid) -> Term {
    tuple(vec![
        atom("$gen_cast"),
        tuple(vec![atom(tag), name.clone(), Term::Pid(pid.clone())]),
    ])
}

#[tokio::test]
async fn term_names_against_a_driver_scope() {
    crate::require_erl!();
    let w = World::new().await;
    let e = w.erl("drv").await;
    let r = w.rust_node("r").await;
    // The options must agree with the handle's storage.
    assert_eq!(
        CpgScope::start_map(&r, ScopeOptions::new(DEFAULT_SCOPE)).unwrap_err(),
        CpgError::Storage {
            options: Storage::Trie,
            handle: Storage::Map
        }
    );
    let scope = CpgScope::start_map(&r, ScopeOptions::new_map(DEFAULT_SCOPE)).unwrap();
    let ctl = w.rust_node("ctl").await;
    rpc(&ctl, &e.name, DRV, "start", vec![atom(DEFAULT_SCOPE)]).await;
    r.connect(&e.name).await.unwrap();

    // Term names cast by the BEAM side.
    let tup = tuple(vec![atom("my"), atom("tuple"), atom("name")]);
    let some_atom = atom("some_atom");
    let (a, b) = (member(&r, &e.name).await, member(&r, &e.name).await);
    cast(
        &r,
        &e.name,
        tuple(vec![atom("join"), tup.clone(), a.clone()]),
    )
    .await;
    cast(
        &r,
        &e.name,
        tuple(vec![atom("join"), some_atom.clone(), b.clone()]),
    )
    .await;
    cast(
        &r,
        &e.name,
        tuple(vec![
            atom("join_counts"),
            term::list(vec![
                tuple(vec![s("a/*"), int(2)]),
                tuple(vec![s(""), int(1)]),
            ]),
            b.clone(),
        ]),
    )
    .await;
    assert!(
        eventually(5, || async {
            ours(&scope, &tup) == vec![a.clone()]
                && ours(&scope, &some_atom) == vec![b.clone()]
                && ours(&scope, &s("")) == vec![b.clone()]
        })
        .await,
        "term names not joined: {:?}",
        scope.which_groups()
    );
    let (key, pids) = scope.get_members(&TermName::new(tup.clone())).unwrap();
    assert_eq!(key.term(), &tup);
    assert_eq!(
        pids.into_iter()
            .map(|p| Term::Pid(p.into()))
            .collect::<Vec<_>>(),
        std::slice::from_ref(&a)
    );
    // "a/*" is a plain name: no pattern matching, and an atom is not a string.
    assert_eq!(ours(&scope, &s("a/*")), vec![b.clone(), b.clone()]);
    let ax = TermName::string("a/x");
    assert_eq!(scope.get_members(&ax), Err(ReadError::NoSuchGroup(ax)));
    assert!(scope.get_members(&TermName::string("some_atom")).is_err());
    assert_eq!(
        scope
            .get_closest_pid(&TermName::atom("some_atom"))
            .map(|(k, p)| (k, Term::Pid(p.to_pid()))),
        Ok((TermName::atom("some_atom"), b.clone()))
    );
    cast(
        &r,
        &e.name,
        tuple(vec![atom("leave"), some_atom.clone(), b.clone()]),
    )
    .await;
    assert!(eventually(5, || async { ours(&scope, &some_atom).is_empty() }).await);

    // A Rust join with a term name is cast back in cpg's shape, the name
    // exactly as given.
    let m = r.spawn_process();
    let mine = tuple(vec![atom("rust"), binary(b"side".to_vec()), int(7)]);
    scope
        .join(&TermName::new(mine.clone()), m.pid())
        .await
        .unwrap();
    scope.join(&TermName::string(""), m.pid()).await.unwrap();
    scope.join(&TermName::string(""), m.pid()).await.unwrap();
    scope.leave(&TermName::string(""), m.pid()).await.unwrap();
    let ok = eventually(5, || async {
        let got = received(&r, &e.name).await;
        got.contains(&one_cast("join", &mine, m.pid()))
            && got.contains(&one_cast("join", &s(""), m.pid()))
            && got.contains(&one_cast("leave", &s(""), m.pid()))
    })
    .await;
    assert!(ok, "our term-name joins: {:?}", received(&r, &e.name).await);

    // {new, Node} is answered with an exchange listing the term names.
    rpc(
        &r,
        &e.name,
        DRV,
        "new",
        vec![atom(DEFAULT_SCOPE), atom(r.name())],
    )
    .await;
    let ok = eventually(5, || async {
        received(&r, &e.name).await.iter().any(|t| {
            matches!(WireMsg::<Pid, TermName>::decode(t), Ok(WireMsg::Cast(Request::Exchange { groups, .. }))
                if groups.iter().any(|(n, h)| n.term() == &mine && h == &vec![m.pid().clone()])
                    && groups.iter().any(|(n, _)| n.term() == &tup))
        })
    })
    .await;
    assert!(ok, "no exchange with the term names");

    // A BEAM caller's long replies (written as bytes, not built as terms)
    // hold the term names as given.
    let call = |req: &str| {
        let code = format!(
            "gen_server:call({{{DEFAULT_SCOPE}, '{}'}}, {req}, 5000).",
            r.name()
        );
        let (ctl, e) = (&ctl, &e);
        let m = Term::Pid(m.pid().clone());
        async move { crate::support::eval_with(ctl, &e.name, &code, &[("M", m)]).await }
    };
    let mine_1 = tuple(vec![mine.clone(), int(1)]);
    let counts = call("{which_groups_counts, M}").await;
    let counts = term::as_list(&counts).unwrap_or_else(|| panic!("{counts}"));
    assert_eq!(counts.len(), 2, "{counts:?}");
    assert!(counts.contains(&mine_1) && counts.contains(&tuple(vec![s(""), int(1)])));
    let groups = call("{which_groups, M}").await;
    let groups = term::as_list(&groups).unwrap_or_else(|| panic!("{groups}"));
    assert!(groups.len() == 2 && groups.contains(&mine), "{groups:?}");
    let all = call("which_groups").await;
    assert!(term::as_list(&all).is_some_and(|l| l.contains(&mine) && l.contains(&tup)));
    let code = format!("{{get_members, {tup}}}");
    let members = call(&code).await;
    assert_eq!(
        members,
        tuple(vec![atom("ok"), tup.clone(), term::list(vec![a])])
    );
}

/// Genuine cpg started with `group_storage` `dict` and `node_type` `all`.
#[tokio::test]
#[ignore = "needs genuine cpg: set CPG_EBIN (see README)"]
async fn term_names_against_genuine_cpg_with_dict_storage() {
    crate::require_erl!();
    let w = World::new().await;
    let (g, ctl) = genuine(&w, "all", &[("group_storage", "dict")]).await;
    let p1 = eval(
        &ctl,
        &g.name,
        "P = cpg_node_test_util:spawn_idle(), \
         ok = cpg:join({my, tuple, name}, P), ok = cpg:join(some_atom, P), \
         ok = cpg:join(\"a/*\", P), P.",
    )
    .await;
    let r = w.rust_node("r").await;
    let scope = CpgScope::start_map(&r, ScopeOptions::new_map(DEFAULT_SCOPE)).unwrap();
    r.connect(&g.name).await.unwrap();
    let tup = tuple(vec![atom("my"), atom("tuple"), atom("name")]);
    assert!(
        eventually(5, || async {
            ours(&scope, &tup) == vec![p1.clone()]
                && ours(&scope, &atom("some_atom")) == vec![p1.clone()]
                && ours(&scope, &s("a/*")) == vec![p1.clone()]
        })
        .await,
        "BEAM's term names not seen: {:?}",
        scope.which_groups()
    );
    assert!(scope.get_members(&TermName::string("a/x")).is_err());

    // Our term-name member as BEAM sees it.
    let m = r.spawn_process();
    scope
        .join(
            &TermName::new(tuple(vec![atom("rust"), binary(b"side".to_vec())])),
            m.pid(),
        )
        .await
        .unwrap();
    scope.join(&TermName::string("b/*"), m.pid()).await.unwrap();
    let mp = Term::Pid(m.pid().clone());
    let ok = eventually(5, || async {
        let got = eval(&ctl, &g.name, "cpg:get_members({rust, <<\"side\">>}).").await;
        let exact = eval(&ctl, &g.name, "cpg:get_members(\"b/*\").").await;
        matches!(term::as_tuple(&got), Some([_, _, Term::List(l)]) if l.elements == vec![mp.clone()])
            && matches!(term::as_tuple(&exact), Some([_, _, Term::List(l)]) if l.elements == vec![mp.clone()])
    })
    .await;
    assert!(
        ok,
        "BEAM does not see our term-name member: {}",
        eval(&ctl, &g.name, "cpg:which_groups().").await
    );
    let none = eval(&ctl, &g.name, "cpg:get_members(\"b/x\").").await;
    assert!(
        none.to_string().contains("no_such_group"),
        "dict storage matched a pattern: {none}"
    );

    // A BEAM leave reaches us (an atom name needs the scope argument:
    // cpg:leave(some_atom, Pid) is cpg:leave(Scope, Pid)).
    let left = eval(
        &ctl,
        &g.name,
        &format!(
            "cpg:leave(cpg_default_scope, some_atom, list_to_pid({:?})).",
            erl_pid_text(&p1)
        ),
    )
    .await;
    assert!(crate::support::is_atom(&left, "ok"), "cpg:leave: {left}");
    assert!(eventually(5, || async { ours(&scope, &atom("some_atom")).is_empty() }).await);
    assert_eq!(ours(&scope, &tup), vec![p1.clone()]);
}

/// The trie against genuine okeuday/trie on histories drawn now: random
/// `trie:store/3` and `trie:erase/2` sequences, each followed by
/// `find_match2/2` of some names (`scripts/trie_history_vectors.erl`, with
/// a new seed each run), replayed on our trie: every answer must agree.
/// (`tests/data/trie_history.jsonl`, checked by the unit tests, is such a
/// run kept.)
#[test]
#[ignore = "needs genuine cpg: set CPG_EBIN (see README)"]
fn trie_answers_as_genuine_trie_after_random_histories() {
    crate::require_erl!();
    let ebin = std::env::var_os("CPG_EBIN").expect("CPG_EBIN");
    let dir = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(crate::support::unique("trie_history"));
    std::fs::create_dir_all(&dir).unwrap();
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/scripts/trie_history_vectors.erl"
    );
    let ok = std::process::Command::new("erlc")
        .arg("-o")
        .arg(&dir)
        .arg(script)
        .status()
        .expect("erlc")
        .success();
    assert!(ok, "erlc {script}");
    let seed: u32 = rand::random::<u32>() % 1_000_000_000 + 1;
    let out = dir.join("out.jsonl");
    let mut cmd = std::process::Command::new("erl");
    cmd.arg("-noshell");
    for d in std::env::split_paths(&ebin) {
        cmd.arg("-pa").arg(d);
    }
    cmd.arg("-pa").arg(&dir).arg("-eval").arg(format!(
        "trie_history_vectors:main({seed}, 1000, \"{}\"), halt().",
        out.display()
    ));
    assert!(cmd.status().expect("erl").success(), "seed {seed}");
    let text = std::fs::read_to_string(&out).unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    let (mut queries, mut failures) = (0, Vec::new());
    for line in text.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        let mut trie: cpg_node::cpg::trie::Trie<()> = cpg_node::cpg::trie::Trie::new();
        for op in v["ops"].as_array().unwrap() {
            let key = op[1].as_str().unwrap();
            if op[0] == "+" {
                trie.insert(key, ());
            } else {
                trie.remove(key);
            }
        }
        for q in v["queries"].as_array().unwrap() {
            queries += 1;
            let (name, want) = (q[0].as_str().unwrap(), q[1].as_str());
            let got = trie.find_match(name).map(|(k, _)| k);
            if got != want {
                failures.push(format!("{line}\n  {name:?}: got {got:?}, genuine {want:?}"));
            }
        }
    }
    assert!(queries > 5_000, "{queries} queries (seed {seed})");
    assert!(
        failures.is_empty(),
        "seed {seed}: {} of {queries} answers differ:\n{}",
        failures.len(),
        failures[..failures.len().min(10)].join("\n")
    );
}
