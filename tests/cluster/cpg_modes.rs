//! `BeamNodeType::Auto` (the default): each BEAM node is asked how its cpg
//! runs when it connects, and treated so, at `all` and at `visible` (cpg's
//! default), with nothing configured on either side. Against genuine cpg
//! when CPG_EBIN is set, else the model scope
//! (`erl_test/cpg_model_scope.erl`, started at the node_type asked), so
//! these run in CI too.

use crate::support::cpg::count_ours;
use crate::support::schedule::Backend;
use crate::support::{down_of, eval, eventually, ping, unique, ErlNode, World};
use cpg_node::cpg::{BeamNodeType, CpgScope, ScopeOptions, DEFAULT_SCOPE};
use cpg_node::node::cluster::{Cluster, ClusterOptions};
use cpg_node::process::{Dest, Process};
use cpg_node::term;
use cpg_node::term::Term;
use cpg_node::Node;
use std::time::Duration;

/// A BEAM node whose cpg scope runs at `node_type`, or (`started` false)
/// with cpg's code and settings only: the scope is started later with
/// the last argument pair (`-eval Start`) of [`Backend::erl_args`].
async fn beam_at(w: &World, node_type: &str, started: bool) -> ErlNode {
    let mut args = Backend::from_env().erl_args(node_type);
    if !started {
        args.truncate(args.len() - 2);
    }
    let args: Vec<&str> = args.iter().map(|s| s.as_str()).collect();
    ErlNode::start(&unique("b"), &w.cookie, w.epmd.port, &args).await
}

/// The Erlang code that starts the scope of a node [`beam_at`] started
/// without it.
fn scope_start(node_type: &str) -> String {
    let args = Backend::from_env().erl_args(node_type);
    format!("{}, ok.", args[args.len() - 1].trim_end_matches('.'))
}

/// Waits until the scope runs on the BEAM node.
async fn scope_up(ctl: &Node, erl: &str) {
    eval(ctl, erl, "cpg_node_test_util:wait_for(cpg_default_scope).").await;
}

/// `Module:F(cpg_default_scope, Args)` of the BEAM side's cpg.
fn cpg_call(f: &str, args: &str) -> String {
    format!(
        "{}:{f}({DEFAULT_SCOPE}, {args})",
        Backend::from_env().module()
    )
}

/// How many times `pid` is in `group` on the BEAM node.
async fn beam_count(ctl: &Node, erl: &str, group: &str, pid: &cpg_node::Pid) -> usize {
    let pid = Term::Pid(pid.clone());
    beam_members(ctl, erl, group)
        .await
        .iter()
        .filter(|t| **t == pid)
        .count()
}

/// The members of `group` on the BEAM node, in its order (none: empty).
async fn beam_members(ctl: &Node, erl: &str, group: &str) -> Vec<Term> {
    let code = format!(
        "case {} of {{ok, _, Pids}} -> Pids; _ -> [] end.",
        cpg_call("get_members", &format!("{group:?}"))
    );
    match eval(ctl, erl, &code).await {
        Term::List(l) => l.elements,
        _ => Vec::new(),
    }
}

/// Waits (up to 5 s) until the BEAM node holds `pid` `n` times in
/// `group`; else how many times it does.
async fn beam_holds(
    ctl: &Node,
    erl: &str,
    group: &str,
    pid: &cpg_node::Pid,
    n: usize,
) -> Result<(), usize> {
    if eventually(5, || async { beam_count(ctl, erl, group, pid).await == n }).await {
        Ok(())
    } else {
        Err(beam_count(ctl, erl, group, pid).await)
    }
}

/// A BEAM process joined to `group` on the BEAM node.
async fn beam_join(ctl: &Node, erl: &str, group: &str) -> Term {
    let join = format!("ok = {}", cpg_call("join", &format!("{group:?}, P")));
    eval(
        ctl,
        erl,
        &format!("P = cpg_node_test_util:spawn_idle(), {join}, P."),
    )
    .await
}

async fn beam_leave(ctl: &Node, erl: &str, group: &str, pid: &Term) {
    let pid = format!("list_to_pid({:?})", crate::support::cpg::erl_pid_text(pid));
    let leave = format!("ok = {}.", cpg_call("leave", &format!("{group:?}, {pid}")));
    eval(ctl, erl, &leave).await;
}

/// A Rust node whose scope runs in `mode` (BEAM scopes at visible polled
/// every 200 ms), with a process joined twice to `group`, connected to `g`
/// once joined.
async fn joined_then_connected(
    w: &World,
    mode: BeamNodeType,
    group: &str,
    g: &ErlNode,
) -> (Node, CpgScope, Process) {
    let r = w.rust_node("r").await;
    let mut opts = ScopeOptions::new(DEFAULT_SCOPE);
    opts.poll_interval = Duration::from_millis(200);
    opts.beam_node_type = mode;
    let scope = CpgScope::start(&r, opts).unwrap();
    let m = r.spawn_process();
    scope
        .join_counts(&[(group.into(), 2)], m.pid())
        .await
        .unwrap();
    r.connect(&g.name).await.unwrap();
    (r, scope, m)
}

/// With default options, against a BEAM scope at `node_type`: members
/// joined before the connection and in a burst right as it comes up reach
/// BEAM exactly as often as joined (nothing cast twice while the peer is
/// asked, nothing lost), BEAM's members and its later joins and leaves reach
/// us.
async fn auto_against(node_type: &str) {
    let w = World::new().await;
    let g = beam_at(&w, node_type, true).await;
    let ctl = w.rust_node("ctl").await;
    scope_up(&ctl, &g.name).await;
    let before = beam_join(&ctl, &g.name, "pre").await;

    let (r, scope, early) = joined_then_connected(&w, BeamNodeType::Auto, "early", &g).await;
    // Joins while the peer is asked for its node_type (and after).
    let burst = r.spawn_process();
    for _ in 0..20 {
        scope.join("burst", burst.pid()).await.unwrap();
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    for (group, pid, n) in [("early", early.pid(), 2), ("burst", burst.pid(), 20)] {
        if let Err(got) = beam_holds(&ctl, &g.name, group, pid, n).await {
            panic!("{node_type}: BEAM holds {got} copies in {group}, not {n}");
        }
    }
    assert!(
        eventually(5, || async { count_ours(&scope, "pre", &before) == 1 }).await,
        "{node_type}: BEAM's member {before} not seen: {:?}",
        crate::support::cpg::ours(&scope, "pre")
    );
    // The summary (`cpg-node status`) says how the node is treated.
    assert!(
        scope
            .summary()
            .node_types
            .contains(&(g.name.clone(), node_type.to_string())),
        "{:?}",
        scope.summary()
    );
    // Later changes on both sides.
    scope.leave("burst", burst.pid()).await.unwrap();
    let later = beam_join(&ctl, &g.name, "later").await;
    assert!(
        eventually(5, || async { count_ours(&scope, "later", &later) == 1 }).await,
        "{node_type}: BEAM's later join not seen"
    );
    beam_leave(&ctl, &g.name, "pre", &before).await;
    assert!(
        eventually(5, || async { scope.get_members("pre").is_err() }).await,
        "{node_type}: BEAM's leave not seen"
    );
    assert!(
        eventually(5, || async {
            beam_count(&ctl, &g.name, "burst", burst.pid()).await == 19
        })
        .await,
        "{node_type}: our leave not seen"
    );
    // Nothing more arrives later (a cast or a publication twice).
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(beam_count(&ctl, &g.name, "early", early.pid()).await, 2);
    assert_eq!(beam_count(&ctl, &g.name, "burst", burst.pid()).await, 19);
    r.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_against_a_beam_scope_at_all() {
    crate::require_erl!();
    auto_against("all").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_against_a_beam_scope_at_visible() {
    crate::require_erl!();
    auto_against("visible").await;
}

/// The BEAM scope starts after the Rust node connected (cpg started late,
/// or restarted), `delay` after the connection, and we run in `mode`: our members reach it
/// exactly as often as joined whatever the moment (the peer's node_type is
/// asked again once its scope runs, and the state we publish then replaces
/// whatever of ours reached the new scope before).
async fn with_a_late_beam_scope(node_type: &str, mode: BeamNodeType) {
    for delay in [0, 20, 60, 150, 300] {
        let w = World::new().await;
        let g = beam_at(&w, node_type, false).await;
        let ctl = w.rust_node("ctl").await;
        let (r, scope, m) = joined_then_connected(&w, mode, "g", &g).await;
        tokio::time::sleep(Duration::from_millis(delay)).await;
        eval(&ctl, &g.name, &scope_start(node_type)).await;
        scope.join("g", m.pid()).await.unwrap();
        if let Err(got) = beam_holds(&ctl, &g.name, "g", m.pid(), 3).await {
            panic!("{node_type}, scope started {delay} ms after: BEAM holds {got} copies, not 3");
        }
        tokio::time::sleep(Duration::from_millis(700)).await;
        assert_eq!(
            beam_count(&ctl, &g.name, "g", m.pid()).await,
            3,
            "{node_type}, scope started {delay} ms after: later"
        );
        r.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_with_a_late_beam_scope_at_all() {
    crate::require_erl!();
    with_a_late_beam_scope("all", BeamNodeType::Auto).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_with_a_late_beam_scope_at_visible() {
    crate::require_erl!();
    with_a_late_beam_scope("visible", BeamNodeType::Auto).await;
}

/// The same with the mode given: the state published to a scope that came
/// back replaces what of ours reached it before (`join_counts` adds).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn visible_mode_with_a_late_beam_scope() {
    crate::require_erl!();
    with_a_late_beam_scope("visible", BeamNodeType::Visible).await;
}

/// A BEAM node that says its cpg runs at `visible` before its scope
/// process is up (the application loaded, or its env set): no poll goes
/// to the scope while it is away (one sent then is lost, and held every
/// later poll off until it was given up), and once it is up its members'
/// joins and leaves reach us within a few polls.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_visible_beam_scope_that_starts_after_it_said_visible() {
    crate::require_erl!();
    for delay in [0, 30, 80, 150, 250] {
        let w = World::new().await;
        let g = beam_at(&w, "visible", false).await;
        let ctl = w.rust_node("ctl").await;
        eval(
            &ctl,
            &g.name,
            "application:set_env(cpg, node_type, visible).",
        )
        .await;
        let (r, scope) = polling_node(&w, Duration::from_millis(100)).await;
        r.connect(&g.name).await.unwrap();
        tokio::time::sleep(Duration::from_millis(delay)).await;
        eval(&ctl, &g.name, &scope_start("visible")).await;
        scope_up(&ctl, &g.name).await;
        let p = beam_join(&ctl, &g.name, "late").await;
        // (Within 3 s: less than the 10 s after which a lost poll is asked
        // again.)
        assert!(
            eventually(3, || async { count_ours(&scope, "late", &p) == 1 }).await,
            "scope started {delay} ms after: the join of its member was not seen"
        );
        beam_leave(&ctl, &g.name, "late", &p).await;
        assert!(
            eventually(3, || async { scope.get_members("late").is_err() }).await,
            "scope started {delay} ms after: the leave was not seen"
        );
        r.shutdown().await;
    }
}

/// A BEAM scope holding a group whose name this node's storage cannot
/// hold (`[16#D800]`: a list of integers genuine cpg's trie takes, no
/// Rust string): its other groups are still read, at both node types
/// (before, the whole exchange was refused, and at `visible` every poll
/// then dropped all of that node's members).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_beam_scope_with_a_name_we_cannot_hold() {
    crate::require_erl!();
    for node_type in ["visible", "all"] {
        let w = World::new().await;
        let (g, ctl, p) = beam_with(&w, node_type, "fine").await;
        let pid = crate::support::cpg::erl_pid_text(&p);
        let odd = cpg_call("join", &format!("[16#D800], list_to_pid({pid:?})"));
        eval(&ctl, &g.name, &format!("ok = {odd}.")).await;
        let (r, scope) = polling_node(&w, Duration::from_millis(100)).await;
        r.connect(&g.name).await.unwrap();
        assert!(
            eventually(5, || async { count_ours(&scope, "fine", &p) == 1 }).await,
            "{node_type}: the other group was not read"
        );
        // Several polls later, still there.
        tokio::time::sleep(Duration::from_millis(600)).await;
        assert_eq!(count_ours(&scope, "fine", &p), 1, "{node_type}: later");
        r.shutdown().await;
    }
}

/// A BEAM node whose scope runs at `node_type`, the node that drives it,
/// and a BEAM process it joined to `group`.
async fn beam_with(w: &World, node_type: &str, group: &str) -> (ErlNode, Node, Term) {
    let g = beam_at(w, node_type, true).await;
    let ctl = w.rust_node("ctl").await;
    scope_up(&ctl, &g.name).await;
    let p = beam_join(&ctl, &g.name, group).await;
    (g, ctl, p)
}

/// A Rust node whose scope (default options otherwise) polls every `poll`.
async fn polling_node(w: &World, poll: Duration) -> (Node, CpgScope) {
    let r = w.rust_node("r").await;
    let mut opts = ScopeOptions::new(DEFAULT_SCOPE);
    opts.poll_interval = poll;
    let scope = CpgScope::start(&r, opts).unwrap();
    (r, scope)
}

/// [`polling_node`] with a process joined as `counts` say, connected to
/// `g` once joined.
async fn polling_node_joined(
    w: &World,
    poll: Duration,
    counts: &[(&str, usize)],
    g: &ErlNode,
) -> (Node, CpgScope, Process) {
    let (r, scope) = polling_node(w, poll).await;
    let m = r.spawn_process();
    let counts: Vec<(String, usize)> = counts.iter().map(|&(n, c)| (n.into(), c)).collect();
    scope.join_counts(&counts, m.pid()).await.unwrap();
    r.connect(&g.name).await.unwrap();
    (r, scope, m)
}

/// A BEAM scope at visible whose last member leaves (not dies): its view
/// is empty, and cpg answers a poll of an empty view with no exchange at
/// all; the leave must still reach us (the poll's call tells).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_last_member_of_a_visible_beam_scope_leaves() {
    crate::require_erl!();
    let w = World::new().await;
    let (g, ctl, p) = beam_with(&w, "visible", "last").await;
    let (r, scope) = polling_node(&w, Duration::from_millis(100)).await;
    r.connect(&g.name).await.unwrap();
    assert!(eventually(5, || async { count_ours(&scope, "last", &p) == 1 }).await);
    beam_leave(&ctl, &g.name, "last", &p).await;
    assert!(
        eventually(5, || async { scope.get_members("last").is_err() }).await,
        "the leave of the visible scope's last member was not seen"
    );
    r.shutdown().await;
}

/// Waits (up to 5 s) until our members of `group` are `order`, in order.
async fn ours_become(scope: &CpgScope, group: &str, order: &[Term]) {
    let ours = || crate::support::cpg::ours(scope, group);
    assert!(
        eventually(5, || async { ours() == order }).await,
        "{group}: ours {:?}, the BEAM scope's {order:?}",
        ours()
    );
}

/// A visible BEAM scope's members leave and join again between two of our
/// polls: the counts stay, the order changes (cpg puts a join at the
/// newest end and a leave takes the oldest copy), and ours follows it,
/// as a node that got the casts holds it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_visible_beam_scopes_order_after_leaves_and_joins_between_polls() {
    crate::require_erl!();
    let w = World::new().await;
    let (g, ctl, a) = beam_with(&w, "visible", "again").await;
    let b = beam_join(&ctl, &g.name, "again").await;
    // Writes of the BEAM node's pids, in one go (`(Function, Group, Pid)`).
    let writes = |calls: &[(&str, &str, &Term)]| {
        let calls: Vec<String> = calls
            .iter()
            .map(|(f, group, p)| {
                let p = crate::support::cpg::erl_pid_text(p);
                let call = cpg_call(f, &format!("{group:?}, list_to_pid({p:?})"));
                format!("ok = {call}, ")
            })
            .collect();
        format!("{}ok.", calls.concat())
    };
    let code = writes(&[
        ("join", "twice", &a),
        ("join", "twice", &b),
        ("join", "twice", &a),
    ]);
    eval(&ctl, &g.name, &code).await;
    let (r, scope) = polling_node(&w, Duration::from_millis(300)).await;
    r.connect(&g.name).await.unwrap();
    for group in ["again", "twice"] {
        ours_become(&scope, group, &beam_members(&ctl, &g.name, group).await).await;
    }
    ours_become(&scope, "again", &[b.clone(), a.clone()]).await;
    // Microseconds apart, on the BEAM node: no poll between them.
    let code = writes(&[
        ("leave", "again", &a),
        ("join", "again", &a),
        ("leave", "twice", &a),
    ]);
    eval(&ctl, &g.name, &code).await;
    for group in ["again", "twice"] {
        let order = [a.clone(), b.clone()];
        assert_eq!(
            beam_members(&ctl, &g.name, group).await,
            order,
            "{group} on BEAM"
        );
        ours_become(&scope, group, &order).await;
    }
    r.shutdown().await;
}

/// A BEAM scope at visible (polled) and one at all (which casts), joins
/// on both within one poll: every BEAM node holds them in the order they
/// were made, and ours, once polled, too. (The merge alone put the polled
/// node's new members after the one that came by cast meanwhile.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_polled_nodes_members_keep_their_place_among_a_casting_nodes() {
    crate::require_erl!();
    let w = World::new().await;
    let a = beam_at(&w, "visible", true).await;
    let b = beam_at(&w, "all", true).await;
    let ctl = w.rust_node("ctl").await;
    scope_up(&ctl, &a.name).await;
    scope_up(&ctl, &b.name).await;
    let connect = format!("true = net_kernel:connect_node('{}').", b.name);
    eval(&ctl, &a.name, &connect).await;
    let (r, scope) = polling_node(&w, Duration::from_secs(2)).await;
    r.connect(&a.name).await.unwrap();
    r.connect(&b.name).await.unwrap();
    // Polled once: the joins below come between two polls, mostly.
    let m = beam_join(&ctl, &a.name, "marker").await;
    assert!(eventually(10, || async { count_ours(&scope, "marker", &m) == 1 }).await);
    let mut order = Vec::new();
    for (on, then) in [(&a, &b), (&b, &a), (&a, &b)] {
        order.insert(0, beam_join(&ctl, &on.name, "ord").await);
        let told = || async { beam_members(&ctl, &then.name, "ord").await == order };
        assert!(eventually(5, told).await, "{} not told", then.name);
    }
    assert_eq!(beam_members(&ctl, &a.name, "ord").await, order);
    ours_become(&scope, "ord", &order).await;
    r.shutdown().await;
}

/// Polls go on while other nodes keep our scope busy with calls: BEAM
/// processes calling it back to back (a cluster's lookups) must not hold
/// off the poll that sees a visible BEAM scope's member leave.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn polls_go_on_under_a_flood_of_calls() {
    crate::require_erl!();
    let w = World::new().await;
    let (g, ctl, p) = beam_with(&w, "visible", "flooded").await;
    let (r, scope) = polling_node(&w, Duration::from_millis(100)).await;
    r.connect(&g.name).await.unwrap();
    assert!(eventually(5, || async { count_ours(&scope, "flooded", &p) == 1 }).await);
    // Eight callers, each sending calls without waiting for the replies
    // (a backlog always queued), until told to stop.
    let flood = format!(
        "Scope = {{{DEFAULT_SCOPE}, '{}'}}, \
         Call = {{'$gen_call', {{self(), make_ref()}}, {{get_closest_pid, \"nosuch\"}}}}, \
         Loop = fun L() -> receive stop -> ok after 0 -> \
             [Scope ! Call || _ <- lists:seq(1, 40)], timer:sleep(1), L() end end, \
         Ps = [spawn(Loop) || _ <- lists:seq(1, 8)], \
         register(flood, spawn(fun() -> receive stop -> [P ! stop || P <- Ps] end end)), ok.",
        r.name()
    );
    eval(&ctl, &g.name, &flood).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    beam_leave(&ctl, &g.name, "flooded", &p).await;
    let seen = eventually(5, || async { scope.get_members("flooded").is_err() }).await;
    eval(&ctl, &g.name, "flood ! stop, ok.").await;
    assert!(
        seen,
        "a member's leave not seen in 5 s of polls every 100 ms under calls"
    );
    r.shutdown().await;
}

/// A poll whose question is lost (here: a scope process on a plain erl
/// node that drops the first `{new, Node}` and call it gets, as a scope
/// not registered yet when they came would) is asked again once it has
/// gone unanswered long enough; before, that node was never polled again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poll_left_unanswered_is_asked_again() {
    crate::require_erl!();
    let w = World::new().await;
    let g = w.erl("b").await;
    let ctl = w.rust_node("ctl").await;
    // Drops its first question and call; then answers each `{new, Node}`
    // with an exchange of one member of "again", and each call with [].
    let scope = format!(
        "P = cpg_node_test_util:spawn_idle(), \
         Loop = fun L(Lost) -> receive \
             {{new, _}} when Lost < 2 -> L(Lost + 1); \
             {{'$gen_call', _, _}} when Lost < 2 -> L(Lost + 1); \
             {{new, N}} -> gen_server:cast({{{DEFAULT_SCOPE}, N}}, {{exchange, node(), [{{\"again\", [P]}}]}}), L(Lost); \
             {{'$gen_call', From, _}} -> gen_server:reply(From, []), L(Lost); \
             _ -> L(Lost) end end, \
         register({DEFAULT_SCOPE}, spawn(fun() -> Loop(0) end)), P."
    );
    let p = eval(&ctl, &g.name, &scope).await;
    let r = w.rust_node("r").await;
    let mut opts = ScopeOptions::new(DEFAULT_SCOPE);
    opts.poll_interval = Duration::from_millis(100);
    opts.beam_node_type = BeamNodeType::Visible;
    let ours = CpgScope::start(&r, opts).unwrap();
    r.connect(&g.name).await.unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        count_ours(&ours, "again", &p),
        0,
        "the lost poll was answered"
    );
    assert!(
        eventually(13, || async { count_ours(&ours, "again", &p) == 1 }).await,
        "the node was not polled again"
    );
    r.shutdown().await;
}

/// A BEAM scope at visible whose node_type is set to `all` at run time
/// (`application:set_env` then `cpg:reset/1`, which asks every hidden node
/// for its state): we become its full peer at once, not at the next poll
/// (a minute here): its members joined since the last poll reach us, one
/// that left since is gone (no cast will tell), and its later joins come by
/// cast.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_beam_scope_reset_from_visible_to_all() {
    crate::require_erl!();
    let w = World::new().await;
    let (g, ctl, gone) = beam_with(&w, "visible", "gone").await;
    let (r, scope) = polling_node(&w, Duration::from_secs(60)).await;
    let m = r.spawn_process();
    scope.join("ours", m.pid()).await.unwrap();
    r.connect(&g.name).await.unwrap();
    let mode = |t: &str| (g.name.clone(), t.to_string());
    assert!(
        eventually(5, || async {
            scope.summary().node_types.contains(&mode("visible"))
                && count_ours(&scope, "gone", &gone) == 1
                && beam_count(&ctl, &g.name, "ours", m.pid()).await == 1
        })
        .await,
        "{:?}",
        scope.summary()
    );
    beam_leave(&ctl, &g.name, "gone", &gone).await;
    let theirs = beam_join(&ctl, &g.name, "theirs").await;
    let reset = format!(
        "ok = application:set_env(cpg, node_type, all), ok = {}:reset({DEFAULT_SCOPE}).",
        Backend::from_env().module()
    );
    eval(&ctl, &g.name, &reset).await;
    assert!(
        eventually(5, || async {
            count_ours(&scope, "theirs", &theirs) == 1
                && scope.get_members("gone").is_err()
                && scope.summary().node_types.contains(&mode("all"))
        })
        .await,
        "after the reset: {:?}, {:?}, {:?}",
        crate::support::cpg::ours(&scope, "theirs"),
        crate::support::cpg::ours(&scope, "gone"),
        scope.summary()
    );
    let later = beam_join(&ctl, &g.name, "later").await;
    assert!(
        eventually(5, || async { count_ours(&scope, "later", &later) == 1 }).await,
        "a join after the reset not seen"
    );
    scope.join("ours", m.pid()).await.unwrap();
    if let Err(got) = beam_holds(&ctl, &g.name, "ours", m.pid(), 2).await {
        panic!("BEAM holds {got} copies of ours, not 2");
    }
    r.shutdown().await;
}

/// A BEAM scope at all switched to visible at run time
/// (`application:set_env(cpg, node_type, visible)`, then `cpg:reset/1`,
/// which drops every member of a hidden node and tells it nothing): its
/// node_type, asked again at each poll, shows the switch; the node is
/// polled from then on, and each poll sets its view of our members right:
/// ours held there again after the reset, as often as joined (not cast
/// again while the scope still held them, between the env and the reset),
/// its later joins and leaves seen, our later writes applied once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_beam_scope_reset_from_all_to_visible() {
    crate::require_erl!();
    let w = World::new().await;
    let (g, ctl, theirs) = beam_with(&w, "all", "theirs").await;
    let (r, scope, m) =
        polling_node_joined(&w, Duration::from_millis(200), &[("ours", 2)], &g).await;
    let mode = |t: &str| (g.name.clone(), t.to_string());
    assert!(
        eventually(5, || async {
            scope.summary().node_types.contains(&mode("all"))
                && count_ours(&scope, "theirs", &theirs) == 1
                && beam_count(&ctl, &g.name, "ours", m.pid()).await == 2
        })
        .await,
        "{:?}",
        scope.summary()
    );
    // The env first: genuine cpg reads it only at start and reset, so the
    // scope still runs at all and holds ours: the switch is seen, and
    // nothing of ours is cast again.
    eval(
        &ctl,
        &g.name,
        "ok = application:set_env(cpg, node_type, visible).",
    )
    .await;
    assert!(
        eventually(5, || async {
            scope.summary().node_types.contains(&mode("visible"))
        })
        .await,
        "the switch not seen: {:?}",
        scope.summary()
    );
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(beam_count(&ctl, &g.name, "ours", m.pid()).await, 2);
    // The reset drops ours there, and tells us nothing: a poll does.
    let reset = format!(
        "ok = {}:reset({DEFAULT_SCOPE}).",
        Backend::from_env().module()
    );
    eval(&ctl, &g.name, &reset).await;
    if let Err(got) = beam_holds(&ctl, &g.name, "ours", m.pid(), 2).await {
        panic!("after the reset BEAM holds {got} copies of ours, not 2");
    }
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(beam_count(&ctl, &g.name, "ours", m.pid()).await, 2);
    let later = beam_join(&ctl, &g.name, "later").await;
    beam_leave(&ctl, &g.name, "theirs", &theirs).await;
    assert!(
        eventually(5, || async {
            count_ours(&scope, "later", &later) == 1 && scope.get_members("theirs").is_err()
        })
        .await,
        "its changes after the reset not seen"
    );
    scope.join("ours", m.pid()).await.unwrap();
    if let Err(got) = beam_holds(&ctl, &g.name, "ours", m.pid(), 3).await {
        panic!("after our join BEAM holds {got} copies of ours, not 3");
    }
    scope.leave("ours", m.pid()).await.unwrap();
    if let Err(got) = beam_holds(&ctl, &g.name, "ours", m.pid(), 2).await {
        panic!("after our leave BEAM holds {got} copies of ours, not 2");
    }
    r.shutdown().await;
}

/// A BEAM scope at visible that lost one of our members without our
/// knowing (here a `{leave, Pid}` cast from another hidden node, as one of
/// ours would be) gets it back with the next poll, as often as joined, and
/// keeps it so: the poll's answer shows its view of ours. (Polls here
/// only when asked, `refresh`.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_visible_beam_scope_that_lost_our_member_gets_it_back() {
    crate::require_erl!();
    let w = World::new().await;
    let (g, ctl, _) = beam_with(&w, "visible", "theirs").await;
    let (r, scope, m) =
        polling_node_joined(&w, Duration::from_secs(60), &[("ours", 2), ("also", 1)], &g).await;
    if let Err(got) = beam_holds(&ctl, &g.name, "ours", m.pid(), 2).await {
        panic!("BEAM holds {got} copies of ours, not 2");
    }
    // (A scope at visible applies a hidden node's casts.)
    let leave = term::tuple(vec![
        term::atom("$gen_cast"),
        term::tuple(vec![term::atom("leave"), Term::Pid(m.pid().clone())]),
    ]);
    ctl.spawn_process()
        .send(Dest::Name(DEFAULT_SCOPE.into(), g.name.clone()), leave)
        .unwrap();
    for group in ["ours", "also"] {
        if let Err(got) = beam_holds(&ctl, &g.name, group, m.pid(), 0).await {
            panic!("the leave not applied: {got} copies in {group}");
        }
    }
    scope.refresh().await.unwrap();
    for (group, n) in [("ours", 2), ("also", 1)] {
        if let Err(got) = beam_holds(&ctl, &g.name, group, m.pid(), n).await {
            panic!("after a poll BEAM holds {got} copies in {group}, not {n}");
        }
    }
    scope.refresh().await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(beam_count(&ctl, &g.name, "ours", m.pid()).await, 2);
    assert_eq!(beam_count(&ctl, &g.name, "also", m.pid()).await, 1);
    r.shutdown().await;
}

/// Only the polled node's own scope answers a poll. Another node casting
/// `{exchange, G, []}` (G the visible BEAM node we poll) every 2 ms while
/// we poll G every 50 ms: an exchange naming G is merged as cpg merges it
/// (here: nothing), never taken for G's whole view. Before, one landing
/// while a poll was out dropped G's members from our view and made the
/// poll cast our joins to G again, its copies of our member growing by 2
/// a poll (a hostile run's F3).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exchange_naming_a_polled_node_from_another_node_answers_no_poll() {
    crate::require_erl!();
    let w = World::new().await;
    let (g, ctl, theirs) = beam_with(&w, "visible", "theirs").await;
    let (r, scope, m) =
        polling_node_joined(&w, Duration::from_millis(50), &[("ours", 2)], &g).await;
    if let Err(got) = beam_holds(&ctl, &g.name, "ours", m.pid(), 2).await {
        panic!("BEAM holds {got} copies of ours, not 2");
    }
    let theirs_now = || crate::support::cpg::ours(&scope, "theirs") == vec![theirs.clone()];
    assert!(eventually(5, || async { theirs_now() }).await);
    let spoof = term::tuple(vec![
        term::atom("$gen_cast"),
        term::tuple(vec![
            term::atom("exchange"),
            term::atom(&g.name),
            term::nil(),
        ]),
    ]);
    ctl.connect(r.name()).await.unwrap();
    let spoofer = ctl.spawn_process();
    let to = Dest::Name(DEFAULT_SCOPE.into(), r.name().to_string());
    let (mut missing, mut most) = (0, 0);
    for i in 0..1000 {
        spoofer.send(to.clone(), spoof.clone()).unwrap();
        tokio::time::sleep(Duration::from_millis(2)).await;
        missing += usize::from(!theirs_now());
        if i % 10 == 0 {
            most = most.max(beam_count(&ctl, &g.name, "ours", m.pid()).await);
        }
    }
    assert_eq!(missing, 0, "G's member left our view while spoofed");
    assert_eq!(most, 2, "BEAM held more copies of ours than joined");
    // A few polls more, then BEAM holds ours as often as joined.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(beam_count(&ctl, &g.name, "ours", m.pid()).await, 2);
    assert!(theirs_now());
    r.shutdown().await;
}

/// Polls racing our writes: a member joins and leaves over and over while
/// a BEAM scope at visible is polled every 10 ms. An answer to a poll holds
/// our casts sent before the question only, so a member written since is
/// not set right from it (that would cast a join the scope already has
/// coming, or a leave of a copy it never got): BEAM never holds more
/// copies than we ever did, and ends holding what we hold.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn polls_racing_our_writes_set_nothing_wrong() {
    crate::require_erl!();
    let w = World::new().await;
    let (g, ctl, _) = beam_with(&w, "visible", "theirs").await;
    let (r, scope) = polling_node(&w, Duration::from_millis(10)).await;
    let m = r.spawn_process();
    scope.join("steady", m.pid()).await.unwrap();
    r.connect(&g.name).await.unwrap();
    if let Err(got) = beam_holds(&ctl, &g.name, "steady", m.pid(), 1).await {
        panic!("BEAM holds {got} copies, not 1");
    }
    let writer = {
        let (scope, pid) = (scope.clone(), m.pid().clone());
        tokio::spawn(async move {
            for _ in 0..300 {
                scope.join("flip", &pid).await.unwrap();
                tokio::time::sleep(Duration::from_micros(700)).await;
                scope.leave("flip", &pid).await.unwrap();
                tokio::time::sleep(Duration::from_micros(700)).await;
            }
        })
    };
    let mut most = 0;
    let mut samples = 0;
    while !writer.is_finished() {
        most = most.max(beam_count(&ctl, &g.name, "flip", m.pid()).await);
        most = most.max(beam_count(&ctl, &g.name, "steady", m.pid()).await);
        samples += 1;
    }
    writer.await.unwrap();
    assert!(samples > 20, "{samples} samples");
    assert!(
        most <= 1,
        "BEAM held {most} copies of one membership of ours"
    );
    // It ends holding what we hold (the last leave may still be on its
    // way on a loaded machine), and still does a while later.
    let settled = || async {
        beam_count(&ctl, &g.name, "flip", m.pid()).await == 0
            && beam_count(&ctl, &g.name, "steady", m.pid()).await == 1
    };
    assert!(eventually(5, settled).await, "BEAM did not end with ours");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(beam_count(&ctl, &g.name, "flip", m.pid()).await, 0);
    assert_eq!(beam_count(&ctl, &g.name, "steady", m.pid()).await, 1);
    r.shutdown().await;
}

/// An exchange lists its sender's view of third nodes' members too (cpg's
/// does), and ours takes only the sender's own members from it: a BEAM
/// node that comes back from a freeze sends its view as it held it when
/// it stopped, before it sees the end of its other connections, and its
/// copies of a third node's members that left meanwhile came back here as
/// ghosts (a fault soak: up to 35 extra copies, for good). Sent here by
/// hand from `a`, as `a`'s: a process of `b` that never joined, and a
/// second copy of `b`'s member, are not taken; `a`'s own pid is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_third_nodes_members_in_an_exchange_are_not_taken() {
    crate::require_erl!();
    let w = World::new().await;
    let (a, ctl, pa) = beam_with(&w, "all", "x").await;
    let b = beam_at(&w, "all", true).await;
    scope_up(&ctl, &b.name).await;
    let pb = beam_join(&ctl, &b.name, "y").await;
    let (r, scope, _m) = joined_then_connected(&w, BeamNodeType::All, "ours", &a).await;
    r.connect(&b.name).await.unwrap();
    let ours = crate::support::cpg::ours;
    assert!(
        eventually(10, || async {
            ours(&scope, "x") == vec![pa.clone()] && ours(&scope, "y") == vec![pb.clone()]
        })
        .await
    );
    let idle = eval(&ctl, &b.name, "cpg_node_test_util:spawn_idle().").await;
    let code = format!(
        "gen_server:cast({{{DEFAULT_SCOPE}, '{}'}}, \
         {{exchange, node(), [{{\"z\", [Idle, PA]}}, {{\"y\", [PB, PB]}}]}}), ok.",
        r.name()
    );
    let bindings = [("Idle", idle), ("PA", pa.clone()), ("PB", pb.clone())];
    crate::support::eval_with(&ctl, &a.name, &code, &bindings).await;
    assert!(
        eventually(5, || async { ours(&scope, "z") == vec![pa.clone()] }).await,
        "z: {:?}",
        ours(&scope, "z")
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(ours(&scope, "z"), vec![pa.clone()], "b's process taken");
    assert_eq!(ours(&scope, "y"), vec![pb], "b's copies set by a");
}

/// A Rust node with a scope (BEAM scopes at visible polled every 200 ms)
/// kept connected to `seed` by a [`Cluster`] that discovers every
/// `interval`.
async fn clustered(
    w: &World,
    prefix: &str,
    seed: &str,
    interval: Duration,
) -> (Node, CpgScope, Cluster) {
    let r = w.rust_node(prefix).await;
    let mut opts = ScopeOptions::new(DEFAULT_SCOPE);
    opts.poll_interval = Duration::from_millis(200);
    let scope = CpgScope::start(&r, opts).unwrap();
    let mut copts = ClusterOptions::new(vec![seed.to_string()]);
    copts.discover_interval = interval;
    let cluster = Cluster::start(&r, copts);
    (r, scope, cluster)
}

/// Whether `scope` holds `pid` in `group`, within 10 s.
async fn sees(scope: &CpgScope, group: &str, pid: &cpg_node::Pid) -> bool {
    let pid = Term::Pid(pid.clone());
    eventually(10, || async { count_ours(scope, group, &pid) == 1 }).await
}

/// Two Rust nodes connected to one BEAM node only see each other's
/// members, as two visible BEAM nodes would: each node's members are read
/// from that node, so ours dial the other hidden node. Here the reader,
/// with no member of its own, is up first and the other joins later: no
/// cpg view listed either node when the other connected, and a BEAM
/// scope at `all` relays nothing of a third node's, so the reader finds
/// it as a hidden node of the seed's that its EPMD says is no `erl`. An
/// `erl -hidden` node connected to the seed (a remote shell) is left
/// alone. (Before, the reader never saw the member: BEAM did.)
async fn hidden_rust_nodes_meet_through(node_type: &str) {
    let w = World::new().await;
    let b = beam_at(&w, node_type, true).await;
    let ctl = w.rust_node("ctl").await;
    scope_up(&ctl, &b.name).await;
    let shell = w.hidden_shell(&ctl, &b.name).await;
    let every = Duration::from_millis(300);
    let (rb, reader, _kb) = clustered(&w, "rb", &b.name, every).await;
    let (ra, provider, _ka) = clustered(&w, "ra", &b.name, every).await;
    let m = ra.spawn_process();
    provider.join("svc", m.pid()).await.unwrap();
    assert!(
        sees(&reader, "svc", m.pid()).await,
        "{node_type}: the reader never saw the other Rust node's member; peers {:?}",
        rb.peers()
    );
    assert_eq!(beam_count(&ctl, &b.name, "svc", m.pid()).await, 1);
    provider.leave("svc", m.pid()).await.unwrap();
    assert!(
        eventually(10, || async { reader.get_members("svc").is_err() }).await,
        "{node_type}: the leave did not reach the reader"
    );
    assert!(!rb.peers().contains(&shell.name), "{:?}", rb.peers());
    assert!(!ra.peers().contains(&shell.name), "{:?}", ra.peers());
    ra.shutdown().await;
    rb.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hidden_rust_nodes_of_one_beam_node_at_all_see_each_others_members() {
    crate::require_erl!();
    hidden_rust_nodes_meet_through("all").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hidden_rust_nodes_of_one_beam_node_at_visible_see_each_others_members() {
    crate::require_erl!();
    hidden_rust_nodes_meet_through("visible").await;
}

/// A node whose members a peer's cpg view lists is dialled, at once:
/// here a hidden BEAM node running cpg at `all` (an `erl -hidden` service;
/// its EPMD entry says `erl`, so only its members in the seed's exchange
/// tell of it), whose members the reader then reads from it. Discovery's
/// rounds are an hour apart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_whose_members_a_beam_view_lists_is_dialled() {
    crate::require_erl!();
    let w = World::new().await;
    let b = beam_at(&w, "all", true).await;
    let mut args = Backend::from_env().erl_args("all");
    args.push("-hidden".into());
    let args: Vec<&str> = args.iter().map(|s| s.as_str()).collect();
    let hb = ErlNode::start(&unique("hb"), &w.cookie, w.epmd.port, &args).await;
    let ctl = w.rust_node("ctl").await;
    scope_up(&ctl, &b.name).await;
    scope_up(&ctl, &hb.name).await;
    ping(&ctl, &hb.name, &b.name).await;
    let m = beam_join(&ctl, &hb.name, "svc").await;
    assert!(
        eventually(10, || async {
            beam_members(&ctl, &b.name, "svc").await == vec![m.clone()]
        })
        .await
    );
    let hour = Duration::from_secs(3600);
    let (rb, reader, kb) = clustered(&w, "rb", &b.name, hour).await;
    assert!(
        eventually(10, || async { count_ours(&reader, "svc", &m) == 1 }).await,
        "peers {:?}",
        rb.peers()
    );
    assert!(
        kb.targets().iter().any(|t| t.node == hb.name),
        "{:?}",
        kb.targets()
    );
    rb.shutdown().await;
}

/// A node asks a seed for the cluster's nodes as soon as it reaches it,
/// not at its next round: with rounds an hour apart, a provider that
/// comes after a reader (at `all`, where no view lists the reader, which
/// holds no member) finds it at once, and the reader reads its member.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_comes_later_finds_the_hidden_nodes_at_once() {
    crate::require_erl!();
    let w = World::new().await;
    let b = beam_at(&w, "all", true).await;
    let ctl = w.rust_node("ctl").await;
    scope_up(&ctl, &b.name).await;
    let hour = Duration::from_secs(3600);
    let (rb, reader, _kb) = clustered(&w, "rb", &b.name, hour).await;
    assert!(eventually(10, || async { rb.is_connected(&b.name) }).await);
    let (ra, provider, _ka) = clustered(&w, "ra", &b.name, hour).await;
    let m = ra.spawn_process();
    provider.join("svc", m.pid()).await.unwrap();
    assert!(
        sees(&reader, "svc", m.pid()).await,
        "peers {:?}",
        rb.peers()
    );
    ra.shutdown().await;
    rb.shutdown().await;
}

/// A visible BEAM node first heard of through a seed's cpg view, then cut
/// from us and from the seed alike (a netsplit around it), is redialled:
/// it is a node of the cluster like any visible peer, though no seed
/// lists it any more. The seed's scope runs at `visible`, so its poll's
/// answer tells of `b2` (whose member it holds) before any round of
/// discovery does (rounds an hour apart; the seed's `erlang:nodes()`,
/// asked on reaching it, did not list `b2` yet). Before, such a node was
/// dialled once and never again once lost: a netsplit seen on network
/// namespaces left the Rust node without `b2`'s members for good.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_visible_node_heard_of_then_split_from_us_and_the_seed_is_redialled() {
    crate::require_erl!();
    let w = World::new().await;
    let b1 = beam_at(&w, "visible", true).await;
    let ctl = w.rust_node("ctl").await;
    scope_up(&ctl, &b1.name).await;
    let hour = Duration::from_secs(3600);
    let (r, reader, kr) = clustered(&w, "r", &b1.name, hour).await;
    assert!(eventually(10, || async { r.is_connected(&b1.name) }).await);
    let b2 = beam_at(&w, "visible", true).await;
    scope_up(&ctl, &b2.name).await;
    ping(&ctl, &b2.name, &b1.name).await;
    let m = beam_join(&ctl, &b2.name, "svc").await;
    assert!(
        eventually(10, || async { count_ours(&reader, "svc", &m) == 1 }).await,
        "b2's member never seen; peers {:?}",
        r.peers()
    );
    assert!(r.is_connected(&b2.name), "{:?}", r.peers());
    // The split: b2 apart from the seed, then from us.
    let cut = format!("true = erlang:disconnect_node('{}'), ok.", b1.name);
    eval(&ctl, &b2.name, &cut).await;
    assert!(
        eventually(10, || async {
            beam_members(&ctl, &b1.name, "svc").await.is_empty()
        })
        .await,
        "the seed kept b2's member"
    );
    let mut events = r.subscribe();
    let cut = format!("true = erlang:disconnect_node('{}'), ok.", r.name());
    eval(&ctl, &b2.name, &cut).await;
    let down = down_of(&mut events, &b2.name, Duration::from_secs(10)).await;
    assert!(down.is_some(), "no nodedown of b2");
    assert!(
        eventually(10, || async {
            r.is_connected(&b2.name) && count_ours(&reader, "svc", &m) == 1
        })
        .await,
        "b2 not redialled: peers {:?}, targets {:?}",
        r.peers(),
        kr.targets()
    );
    r.shutdown().await;
}
