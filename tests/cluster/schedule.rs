//! A randomized schedule of joins, leaves, member exits, partitions,
//! heals, node restarts and scope restarts (the scope process alone: a
//! BEAM scope starts empty and gets its members back from the peers that
//! listen to it, ours keeps its members) on a three-node cluster: two BEAM nodes (genuine cpg
//! when CPG_EBIN is set, else the model scope
//! `erl_test/cpg_model_scope.erl`), at `node_type = all` and, in a second
//! test, at cpg's default `visible`, and the Rust node's [`CpgScope`]
//! with its default options (it asks each BEAM node its node_type).
//!
//! The test keeps the owners' truth (who joined what how many times) and,
//! after every step, waits (at most [`LIMIT`]) until each node's view is
//! what the truth and the links up say it must be: its own members and
//! those of every node it is directly connected to. When all links are up
//! (after a heal that closes the last cut, and at the end) that is the same
//! view on all three nodes. Views compare, per group, the sorted pids with
//! one copy per join: history order may legitimately differ between nodes
//! after a merge (it does between two genuine BEAM nodes too).
//!
//! Every operation may run during a partition: a nodedown drops all of the
//! lost node's members, and an exchange only carries pids of nodes the
//! receiver is connected to, so a leave or an exit on the far side of a cut
//! is not resurrected by the heal's merge (which never deletes). What is
//! not well defined, in genuine cpg too, is a write racing an exchange: an
//! exchange carries the sender's view of third-party (and of the
//! receiver's own) pids, and the merge sets their counts to it, so a write
//! cast that overtakes an exchange computed before it is undone on the
//! receiver for good. The schedule therefore waits for every view to
//! settle before the next step, and lets a heal's exchanges land
//! ([`HEAL_SETTLE`]) before writing again. Writes and exits alone commute
//! (each pid has one writer, and casts between two nodes stay in order), so
//! a "burst" step runs several of them back to back without waiting: a
//! join cast that reaches a node after its member died is removed there
//! through the monitor's `noproc`.
//!
//! A cut also waits until every node, the Rust scope included, has seen
//! the nodedown: a scope that still believes the peer is up would dial it
//! again with its next cast (see `join_right_after_disconnect_...` below).
//!
//! SCHEDULE_SEED (u64) replays a schedule; SCHEDULE_ROUNDS sets its length;
//! SCHEDULE_RACY says who writes right after a heal (see [`racing_heal`]):
//! by default both ends of the link and the third node, `beam` the BEAM
//! ends and the third node, `0` the third node only.
//! The regression tests at the end pin bugs of the Rust node this
//! schedule found (all fixed: a cast to a node not connected dialled it;
//! a `{new, Node}` sent on nodeup had its answer undo a crossing write;
//! the state sent to a new peer once it said its node_type listed the
//! peer's own members, undoing a write it made meanwhile).

use crate::support::schedule::{Backend, Cluster, Truth, View, LINKS, NODES, RUST};
use crate::support::World;
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// Longest wait for the views after one step.
const LIMIT: Duration = Duration::from_secs(5);
/// Quiet time after a heal has converged, before the next write.
const HEAL_SETTLE: Duration = Duration::from_millis(300);
/// Default number of rounds (about a minute on a loaded 2-core CI box).
const DEFAULT_ROUNDS: usize = 2000;
const GROUPS: [&str; 4] = ["g0", "g1", "g2", "g3"];
/// Most live members per node.
const MAX_MEMBERS: usize = 5;

fn env_num<T: std::str::FromStr>(key: &str) -> Option<T> {
    std::env::var(key).ok().and_then(|v| v.trim().parse().ok())
}

#[derive(Default)]
struct Stats {
    joins: usize,
    leaves: usize,
    exits: usize,
    cuts: usize,
    heals: usize,
    bursts: usize,
    racing: usize,
    restarts: usize,
    scope_restarts: usize,
    peak_memberships: usize,
    worst_step: Duration,
    worst_heal: Duration,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn randomized_schedule() {
    crate::require_erl!();
    schedule("all", DEFAULT_ROUNDS).await;
}

/// The same at cpg's default node_type, `visible`: the BEAM scopes ignore
/// the hidden Rust node's exchange and do not cast to it; the Rust scope
/// (`Auto`) publishes its members by casts and polls theirs (every 100 ms
/// here). Half the rounds (each step waits for a poll).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn randomized_schedule_at_visible() {
    crate::require_erl!();
    schedule("visible", DEFAULT_ROUNDS / 2).await;
}

async fn schedule(node_type: &str, default_rounds: usize) {
    let backend = Backend::from_env();
    let seed: u64 = env_num("SCHEDULE_SEED").unwrap_or_else(rand::random);
    let rounds: usize = env_num("SCHEDULE_ROUNDS").unwrap_or(default_rounds);
    let racy = match std::env::var("SCHEDULE_RACY").as_deref() {
        Ok("0") => Racing::Third,
        Ok("beam") => Racing::BeamEnds,
        _ => Racing::BothEnds,
    };
    println!(
        "schedule: backend {backend:?} at {node_type}, SCHEDULE_SEED={seed}, SCHEDULE_ROUNDS={rounds}, SCHEDULE_RACY={}",
        match racy {
            Racing::Third => "0",
            Racing::BeamEnds => "beam",
            Racing::BothEnds => "1",
        }
    );
    let mut rng = StdRng::seed_from_u64(seed);
    let w = World::new().await;
    let mut c = Cluster::start(&w, backend, node_type).await;
    let mut truth = Truth::default();
    let mut log: Vec<String> = Vec::new();
    let mut st = Stats::default();
    let t0 = Instant::now();

    for round in 0..rounds {
        let cut: Vec<usize> = (0..LINKS.len()).filter(|&k| !c.up[k]).collect();
        let uncut: Vec<usize> = (0..LINKS.len()).filter(|&k| c.up[k]).collect();
        let roll: u32 = rng.random_range(0..100);
        let mut heal = false;
        let step = if roll < 1 {
            // A node stopped and started again: its members are gone.
            st.restarts += 1;
            let i = rng.random_range(0..NODES);
            truth.members[i].clear();
            if i == RUST {
                c.restart_rust().await
            } else {
                c.restart(i).await
            }
        } else if roll < 2 {
            // A scope process restarted alone (its node and members stay).
            st.scope_restarts += 1;
            let i = rng.random_range(0..NODES);
            let s = c.restart_scope(i).await;
            // Ours keeps its members. A BEAM scope starts empty and asks the
            // nodes it listens to for their state ({new, Node}): those
            // linked to it hold its members and give them back; with none
            // (or, at visible, only the hidden Rust node), they are gone.
            let repaired =
                (0..NODES).any(|j| j != i && c.linked(i, j) && (j != RUST || node_type == "all"));
            if i != RUST && !repaired {
                for (_, groups) in truth.members[i].iter_mut() {
                    groups.clear();
                }
            }
            s
        } else if roll < 10 && !uncut.is_empty() {
            st.cuts += 1;
            let k = uncut[rng.random_range(0..uncut.len())];
            c.cut(k, rng.random_bool(0.5)).await
        } else if roll < 24 && !cut.is_empty() {
            st.heals += 1;
            heal = true;
            let k = cut[rng.random_range(0..cut.len())];
            let mut s = c.heal(k, rng.random_bool(0.5)).await;
            if rng.random_bool(0.5) {
                st.racing += 1;
                s += &racing_heal(k, racy, &mut c, &mut truth, &mut rng, &mut st).await;
            }
            s
        } else if roll < 36 {
            // A burst: writes and exits back to back, without waiting.
            st.bursts += 1;
            let n = rng.random_range(2..=6);
            let mut steps = Vec::with_capacity(n);
            for _ in 0..n {
                let roll = rng.random_range(24..100);
                steps.push(write_or_exit(roll, &mut c, &mut truth, &mut rng, &mut st).await);
            }
            format!("burst [{}]", steps.join("; "))
        } else {
            let roll = rng.random_range(24..100);
            write_or_exit(roll, &mut c, &mut truth, &mut rng, &mut st).await
        };
        log.push(format!("{round}: {step}"));
        let memberships: usize = truth
            .members
            .iter()
            .flatten()
            .map(|(_, gs)| gs.values().sum::<usize>())
            .sum();
        st.peak_memberships = st.peak_memberships.max(memberships);
        let expected: Vec<View> = (0..NODES)
            .map(|i| truth.expected(i, |x, y| c.linked(x, y)))
            .collect();
        let all_up = c.up.iter().all(|&u| u);
        if all_up {
            assert!(
                expected.iter().all(|e| e == &expected[0]),
                "the truth is not one view with every link up"
            );
        }
        match c.converge(&expected, LIMIT).await {
            Ok(d) => {
                st.worst_step = st.worst_step.max(d);
                if heal {
                    st.worst_heal = st.worst_heal.max(d);
                    // Let the heal's exchanges land, then check nothing moved.
                    tokio::time::sleep(HEAL_SETTLE).await;
                    if let Err(e) = c.converge(&expected, Duration::ZERO).await {
                        fail(seed, &log, &format!("views moved after the heal:\n{e}"));
                    }
                }
            }
            Err(e) => fail(seed, &log, &e),
        }
    }

    // Heal everything: one view everywhere.
    for k in 0..LINKS.len() {
        if !c.up[k] {
            st.heals += 1;
            let s = c.heal(k, rng.random_bool(0.5)).await;
            log.push(format!("end: {s}"));
        }
    }
    let expected: Vec<View> = (0..NODES)
        .map(|i| truth.expected(i, |x, y| c.linked(x, y)))
        .collect();
    match c.converge(&expected, LIMIT).await {
        Ok(d) => st.worst_heal = st.worst_heal.max(d),
        Err(e) => fail(seed, &log, &e),
    }
    let views = c.views().await;
    assert!(views.iter().all(|v| v == &views[0]));
    let memberships: usize = views[0].values().map(|v| v.len()).sum();
    println!(
        "schedule: {rounds} rounds in {:.1?} (seed {seed}, {backend:?}): {} joins, {} leaves \
         ({} bursts), faults: {} exits, {} cuts, {} heals ({} with racing steps), {} node restarts, {} scope restarts; worst convergence {:.0?} after a heal, \
         {:.0?} after any step; at most {} memberships, {} in {} groups at the end",
        t0.elapsed(),
        st.joins,
        st.leaves,
        st.bursts,
        st.exits,
        st.cuts,
        st.heals,
        st.racing,
        st.restarts,
        st.scope_restarts,
        st.worst_heal,
        st.worst_step,
        st.peak_memberships,
        memberships,
        views[0].len(),
    );
}

/// Who writes right after a heal, while its exchanges fly (besides the
/// third node, which may always).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Racing {
    /// The third node only (`SCHEDULE_RACY=0`).
    Third,
    /// The ends of the link that are BEAM nodes too (`SCHEDULE_RACY=beam`).
    BeamEnds,
    /// Both ends of the link too (the default).
    BothEnds,
}

/// Right after healing link `k`, while its exchanges fly: exits anywhere
/// (a merge may bring back a pid that just died; the monitor it gets then
/// removes it), and writes on the third node when it is cut from one end
/// of the link (its pids are in neither exchange, or filtered out), and,
/// as `racy` says, on the ends of the link: an exchange carries the
/// writer's pids only as the writer itself sent them (nobody else holds
/// them after the cut) and a writer's casts stay in order, so cpg keeps
/// them (the Rust node did not, until the fixes that
/// `write_right_after_heal_is_kept` and
/// `beam_write_right_after_heal_with_rust_is_kept` pin).
async fn racing_heal(
    k: usize,
    racy: Racing,
    c: &mut Cluster,
    truth: &mut Truth,
    rng: &mut StdRng,
    st: &mut Stats,
) -> String {
    let (i, j) = LINKS[k];
    let t = NODES - i - j;
    let mut writers = Vec::new();
    if !c.linked(t, i) || !c.linked(t, j) {
        writers.push(t);
    }
    match racy {
        Racing::Third => {}
        Racing::BeamEnds => writers.extend([i, j].into_iter().filter(|&w| w != RUST)),
        Racing::BothEnds => writers.extend([i, j]),
    }
    let n = rng.random_range(1..=4);
    let mut steps = Vec::with_capacity(n);
    for _ in 0..n {
        let s = if !writers.is_empty() && rng.random_bool(0.6) {
            let w = writers[rng.random_range(0..writers.len())];
            if rng.random_bool(0.4) {
                if let Some(s) = leave_one(c, truth, rng, Some(w)).await {
                    st.leaves += 1;
                    steps.push(s);
                    continue;
                }
            }
            st.joins += 1;
            join_one(c, truth, rng, Some(w)).await
        } else {
            st.exits += 1;
            exit_one(c, truth, rng).await
        };
        steps.push(s);
    }
    format!(" + racing [{}]", steps.join("; "))
}

/// For `roll` in 24..100: an exit (< 27), a leave (< 52; a join when there
/// is nothing to leave) or a join.
async fn write_or_exit(
    roll: u32,
    c: &mut Cluster,
    truth: &mut Truth,
    rng: &mut StdRng,
    st: &mut Stats,
) -> String {
    if roll < 27 {
        st.exits += 1;
        return exit_one(c, truth, rng).await;
    }
    if roll < 52 {
        if let Some(s) = leave_one(c, truth, rng, None).await {
            st.leaves += 1;
            return s;
        }
    }
    st.joins += 1;
    join_one(c, truth, rng, None).await
}

fn fail(seed: u64, log: &[String], why: &str) -> ! {
    panic!(
        "schedule diverged (replay with SCHEDULE_SEED={seed}):\n{why}\nschedule:\n{}",
        log.join("\n")
    );
}

const NODE_NAMES: [&str; NODES] = ["a", "b", "r"];

/// Joins a group on a random node with one of its members (a new one now
/// and then, so that members join several times and several groups).
async fn join_one(
    c: &mut Cluster,
    truth: &mut Truth,
    rng: &mut StdRng,
    node: Option<usize>,
) -> String {
    let i = node.unwrap_or_else(|| rng.random_range(0..NODES));
    let n = truth.members[i].len();
    let k = if n == 0 || (n < MAX_MEMBERS && rng.random_bool(0.3)) {
        let pid = c.spawn_member(i).await;
        truth.members[i].push((pid, BTreeMap::new()));
        n
    } else {
        rng.random_range(0..n)
    };
    let g = GROUPS[rng.random_range(0..GROUPS.len())];
    let (pid, groups) = &mut truth.members[i][k];
    c.write(i, true, g, pid).await;
    *groups.entry(g.to_string()).or_default() += 1;
    format!("join {} {g} {pid}", NODE_NAMES[i])
}

/// Leaves one copy of a random membership of a random node (or of `node`);
/// None when there is none.
async fn leave_one(
    c: &Cluster,
    truth: &mut Truth,
    rng: &mut StdRng,
    node: Option<usize>,
) -> Option<String> {
    let all: Vec<(usize, usize, String)> = (0..NODES)
        .filter(|&i| node.is_none_or(|n| n == i))
        .flat_map(|i| {
            truth.members[i]
                .iter()
                .enumerate()
                .flat_map(move |(k, (_, gs))| gs.keys().map(move |g| (i, k, g.clone())))
        })
        .collect();
    if all.is_empty() {
        return None;
    }
    let (i, k, g) = all[rng.random_range(0..all.len())].clone();
    let (pid, groups) = &mut truth.members[i][k];
    c.write(i, false, &g, pid).await;
    let n = groups.get_mut(&g).unwrap();
    *n -= 1;
    if *n == 0 {
        groups.remove(&g);
    }
    Some(format!("leave {} {g} {pid}", NODE_NAMES[i]))
}

/// Kills a random member (most likely one in a group).
async fn exit_one(c: &mut Cluster, truth: &mut Truth, rng: &mut StdRng) -> String {
    let all: Vec<(usize, usize)> = (0..NODES)
        .flat_map(|i| (0..truth.members[i].len()).map(move |k| (i, k)))
        .collect();
    if all.is_empty() {
        // Nothing to kill yet: a member that never joined exits.
        let i = rng.random_range(0..NODES);
        let pid = c.spawn_member(i).await;
        c.kill(i, &pid).await;
        return format!("exit {} {pid} (never joined)", NODE_NAMES[i]);
    }
    let (i, k) = all[rng.random_range(0..all.len())];
    let (pid, groups) = truth.members[i].remove(k);
    c.kill(i, &pid).await;
    format!("exit {} {pid} (in {groups:?})", NODE_NAMES[i])
}

/// Found by the schedule (seed 14414963476544546650 against genuine cpg,
/// rounds `0: cut 1-2 (by 2)`, `1: join r g3 ...`): a local join right after
/// `Node::disconnect(peer)` is still cast to that peer (the scope's list of
/// peers lags the node's until it handles the nodedown event), and the cast
/// dials the peer again: the partition does not hold. Genuine cpg casts to
/// `nodes()` as of the call, so a BEAM node does not reconnect this way.
#[tokio::test]
async fn join_right_after_disconnect_does_not_reconnect() {
    crate::require_erl!();
    let w = World::new().await;
    let c = Cluster::start(&w, Backend::from_env(), "all").await;
    let m = c.r.spawn_process();
    let mut reconnected = 0;
    for round in 0..20 {
        let b = c.name(1);
        c.r.disconnect(&b);
        let g = format!("after_cut_{round}");
        c.scope.join(g.as_str(), m.pid()).await.unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
        // Only a connection we dialled counts: under load the BEAM node may
        // still be sending what it owed us from the last nodeup (its scope's
        // exchange), and a BEAM send dials, as it does between BEAM nodes.
        let dialled_by_us = c.r.peer_info().iter().any(|p| {
            p.node == b && p.link.direction == Some(cpg_node::dist::connection::Direction::Out)
        });
        if dialled_by_us {
            reconnected += 1;
        }
        c.r.connect(&b).await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        reconnected, 0,
        "the cut did not hold {reconnected} times in 20"
    );
}

/// Found while writing the schedule (not in it: the schedule lets a heal
/// settle before writing on its ends): a join on the Rust node right after
/// it reconnected to a BEAM node was undone on the Rust node itself, for
/// good, in a third or more of the runs (7 and 8 of 20 against genuine cpg,
/// 4 of 20 against the model scope), while both BEAM nodes keep it. On nodeup the
/// Rust scope sends its exchange and then `{new, Node}`; the join cast
/// follows. The BEAM scope answers `{new, Node}` before it sees the join,
/// with an exchange listing our pid with the old count, and the merge sets
/// the counts of our own local pids to the exchange's (cpg's repair of a
/// restarted scope), so the Rust node drops one copy without telling
/// anyone. A genuine scope sends `{new, Node}` only when it starts, not on
/// nodeup: with `SCHEDULE_PROBE_BEAM=1` a BEAM node does the same (heal its
/// link to the other BEAM node, join at once) and none of 20 runs diverges.
/// With `SCHEDULE_PROBE_LEAVE=1` the write is a leave of the member's only
/// copy: the Rust node keeps the member (the answer re-creates the group)
/// while the BEAM nodes drop it (12 of 20 against genuine cpg; 0 of 20 when
/// a BEAM node leaves right after its heal).
#[tokio::test]
async fn write_right_after_heal_is_kept() {
    let beam = std::env::var_os("SCHEDULE_PROBE_BEAM").is_some();
    // The writer and the link it heals: r with a (link 1), or a with b (link 0).
    let (writer, k) = if beam { (0, 0) } else { (RUST, 1) };
    write_right_after_heal(writer, k).await;
}

/// A BEAM node's write right after it reconnects to the Rust node is kept
/// on both: found by the schedule with racing writes on both ends of a
/// heal, where the BEAM end lost a copy of its own member for good (1 or 2
/// of 20 runs here against genuine cpg, 0 of 80 since). Under `Auto` the
/// Rust scope sends its state to a new peer only once the peer said its
/// node_type, and that state listed the peer's own pids as they were when
/// it was read: a join the peer made meanwhile, not yet arrived, was
/// undone on the peer by the merge (which sets a scope's own pids' counts
/// from an exchange). cpg sends its exchange at nodeup, before any write
/// of the new peer can reach it; ours now leaves the peer's own pids out
/// of the state it sends on a new connection, as cpg's holds none then.
/// `SCHEDULE_PROBE_LEAVE=1` makes the write a leave here too.
#[tokio::test]
async fn beam_write_right_after_heal_with_rust_is_kept() {
    write_right_after_heal(0, 1).await;
}

/// `writer` writes right after link `k`, at one of its ends, heals.
async fn write_right_after_heal(writer: usize, k: usize) {
    crate::require_erl!();
    let w = World::new().await;
    let mut c = Cluster::start(&w, Backend::from_env(), "all").await;
    let mut truth = Truth::default();
    let mut pid = c.spawn_member(writer).await;
    truth.members[writer].push((pid.clone(), BTreeMap::new()));
    let mut diverged = Vec::new();
    let leave = std::env::var_os("SCHEDULE_PROBE_LEAVE").is_some();
    for run in 0..20 {
        if leave {
            // One copy before the cut, to be left right after the heal.
            c.write(writer, true, "g", &pid).await;
            *truth.members[writer][0].1.entry("g".into()).or_default() += 1;
        }
        c.cut(k, true).await;
        let expected: Vec<View> = (0..NODES)
            .map(|i| truth.expected(i, |x, y| c.linked(x, y)))
            .collect();
        c.converge(&expected, LIMIT).await.unwrap();
        c.heal(k, true).await;
        c.write(writer, !leave, "g", &pid).await;
        let groups = &mut truth.members[writer][0].1;
        if leave {
            groups.clear();
        } else {
            *groups.entry("g".into()).or_default() += 1;
        }
        // Let the exchanges land: a view may be right for a moment.
        tokio::time::sleep(HEAL_SETTLE).await;
        let expected: Vec<View> = (0..NODES)
            .map(|i| truth.expected(i, |x, y| c.linked(x, y)))
            .collect();
        if let Err(e) = c.converge(&expected, Duration::from_secs(2)).await {
            diverged.push(format!("run {run}:\n{e}"));
            // Start again from a clean slate: a new member.
            c.kill(writer, &pid).await;
            pid = c.spawn_member(writer).await;
            truth.members[writer] = vec![(pid.clone(), BTreeMap::new())];
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }
    assert!(
        diverged.is_empty(),
        "{} of 20 runs diverged:\n{}",
        diverged.len(),
        diverged.join("\n")
    );
}
