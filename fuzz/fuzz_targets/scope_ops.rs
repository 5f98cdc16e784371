//! Sequences of scope operations (not bytes) on the pure
//! `cpg_node::cpg::scope::Scope`: local writes of a few local pids, requests
//! and exchanges from peer nodes (hostile ones included: about our own pids,
//! from ourselves, with names the trie refuses), node up/down, member deaths
//! and `{new, Node}`.
//!
//! A model keeps only the number of copies of each pid in each group, and
//! after every operation the scope must agree with it through every read
//! (the shared `get_members` snapshot, cached until the group changes, too),
//! and the effects must agree with the change: monitors for pids that
//! became members, demonitors for pids that stopped being members (none
//! after a death), one notification per copy removed, casts of a successful
//! local write to every listened node, each cast surviving the wire.
//!
//! Domains are small: 4 nodes (us, two peers, one never connected), 3 pids
//! per node, 6 group names (4 valid, a pattern among them, plus the empty
//! name and an invalid pattern), counts 0..=4, and a copies cap
//! (`max_copies`) that the fuzzer may lower to 1..=4 at any time.
#![no_main]
use arbitrary::Arbitrary;
use cpg_node::cpg::pattern;
use cpg_node::cpg::scope::{Effect, Reason, Request, Scope, DEFAULT_MAX_COPIES, NODEDOWN_REASON};
use cpg_node::cpg::wire::WireMsg;
use cpg_node::cpg::MemberPid;
use cpg_node::term::{self, Limits};
use libfuzzer_sys::fuzz_target;
use std::collections::{BTreeMap, BTreeSet};

const ME: usize = 0;
const NODES: [&str; 4] = ["me@h", "a@h", "b@h", "c@h"];
const PIDS_PER_NODE: usize = 3;
const NPIDS: usize = NODES.len() * PIDS_PER_NODE;
/// Names used by operations: 4 valid ones (one a pattern), the empty name
/// and an invalid pattern.
const NAMES: [&str; 6] = ["a/b", "a/c", "a/*", "b", "", "a/**"];
/// Extra names only read: one the pattern matches, ones nothing stores.
const READ_ONLY: [&str; 4] = ["a/x", "a/b/c", "c", "a/?"];
const MAX_OPS: usize = 64;
const MAX_LIST: usize = 4;
const MAX_HISTORY: usize = 6;

#[derive(Arbitrary, Debug, Clone, Copy)]
enum Name {
    AB,
    AC,
    AStar,
    B,
    Empty,
    BadPattern,
}

impl Name {
    fn s(self) -> &'static str {
        NAMES[self as usize]
    }
}

#[derive(Arbitrary, Debug, Clone, Copy, PartialEq)]
enum Node {
    Me,
    A,
    B,
    C,
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum Idx {
    I0,
    I1,
    I2,
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum Count {
    Zero,
    One,
    Two,
    Three,
    Four,
}

/// A pid on any node.
#[derive(Arbitrary, Debug, Clone, Copy)]
struct At(Node, Idx);

impl At {
    fn ix(self) -> usize {
        self.0 as usize * PIDS_PER_NODE + self.1 as usize
    }
}

#[derive(Arbitrary, Debug)]
enum Remote {
    Join(Name, At),
    JoinCounts(Vec<(Name, Count)>, At),
    Leave(Name, At),
    LeaveCounts(Vec<(Name, Count)>, At),
    LeaveAll(At),
}

#[derive(Arbitrary, Debug)]
enum Op {
    Join(Name, Idx),
    JoinCounts(Vec<(Name, Count)>, Idx),
    Leave(Name, Idx),
    LeaveCounts(Vec<(Name, Count)>, Idx),
    LeaveAll(Idx),
    /// A local join of a pid that may live elsewhere (refused unless ours).
    JoinAny(Name, At),
    /// A join/leave cast by the scope on `Node`.
    Remote(Node, Remote),
    /// `{exchange, From, Groups}`, cast by the first node.
    Exchange(Node, Node, Vec<(Name, Vec<At>)>),
    /// The answer to a poll of the node: its whole view
    /// (`Scope::exchange_polled`), of which its own pids are taken and
    /// put in its order, among the others where it lists them.
    Polled(Node, Vec<(Name, Vec<At>)>),
    NodeUp(Node, bool),
    NodeDown(Node),
    /// A member died (`'DOWN'`); the flag picks the reason.
    MemberDown(At, bool),
    NewNode(Node),
    /// `set_max_copies(count)` (0 means 1).
    MaxCopies(Count),
}

fn pid(ix: usize) -> MemberPid {
    MemberPid::new(NODES[ix / PIDS_PER_NODE], (ix % PIDS_PER_NODE) as u32, 0, 1)
        .expect("a short node name")
}

/// The groups an exchange lists, as the scope reads them (bounded).
fn listing(groups: &[(Name, Vec<At>)]) -> Vec<(String, Vec<MemberPid>)> {
    groups
        .iter()
        .take(MAX_LIST)
        .map(|(g, h)| {
            let h = h.iter().take(MAX_HISTORY).map(|at| pid(at.ix())).collect();
            (g.s().to_string(), h)
        })
        .collect()
}

fn ix_of(p: &MemberPid) -> usize {
    let n = NODES
        .iter()
        .position(|n| *n == p.node())
        .expect("a pid of a known node");
    n * PIDS_PER_NODE + p.id() as usize
}

fn is_local(ix: usize) -> bool {
    ix / PIDS_PER_NODE == ME
}

fn count(c: Count) -> usize {
    c as usize
}

fn list(l: &[(Name, Count)]) -> Vec<(String, usize)> {
    l.iter()
        .take(MAX_LIST)
        .map(|(n, c)| (n.s().to_string(), count(*c)))
        .collect()
}

/// Copies per (group, pid), the connected nodes with their listen flag,
/// and the copies cap.
#[derive(Clone, Debug)]
struct Model {
    counts: BTreeMap<(&'static str, usize), usize>,
    nodes: BTreeMap<usize, bool>,
    max: usize,
}

impl Model {
    fn new() -> Model {
        Model {
            counts: BTreeMap::new(),
            nodes: BTreeMap::new(),
            max: DEFAULT_MAX_COPIES,
        }
    }
    /// Whether adding `counts` copies of `p` stays within the cap: in all,
    /// and per name (names may repeat) on top of what it holds.
    fn within_cap(&self, counts: &[(String, usize)], p: usize) -> bool {
        let total: usize = counts.iter().map(|(_, c)| c).sum();
        total <= self.max
            && counts.iter().all(|(g, _)| {
                let add: usize = counts.iter().filter(|(h, _)| h == g).map(|(_, c)| c).sum();
                self.get(g, p) + add <= self.max
            })
    }
    fn get(&self, g: &str, p: usize) -> usize {
        self.counts
            .iter()
            .find(|((n, q), _)| *n == g && *q == p)
            .map_or(0, |(_, c)| *c)
    }
    fn set(&mut self, g: &str, p: usize, c: usize) {
        let g = *NAMES.iter().find(|n| **n == g).expect("known name");
        if c == 0 {
            self.counts.remove(&(g, p));
        } else {
            self.counts.insert((g, p), c);
        }
    }
    fn add(&mut self, g: &str, p: usize, c: usize) {
        let now = self.get(g, p);
        self.set(g, p, now + c);
    }
    fn sub(&mut self, g: &str, p: usize, c: usize) {
        let now = self.get(g, p);
        self.set(g, p, now - c.min(now));
    }
    fn remove_pid(&mut self, p: usize) {
        self.counts.retain(|(_, q), _| *q != p);
    }
    fn member(&self, p: usize) -> bool {
        self.counts.keys().any(|(_, q)| *q == p)
    }
    fn groups(&self) -> BTreeSet<&'static str> {
        self.counts.keys().map(|(g, _)| *g).collect()
    }
    fn listened(&self, node: usize) -> bool {
        self.nodes.get(&node).copied().unwrap_or(false)
    }
    fn accepts(&self, p: usize) -> bool {
        is_local(p) || self.listened(p / PIDS_PER_NODE)
    }
}

fn valid_local(g: &str) -> bool {
    pattern::classify(g).is_ok()
}

fn valid_remote(g: &str) -> bool {
    !g.is_empty()
}

/// What kind of change an operation is, for the effect checks.
#[derive(PartialEq, Clone, Copy)]
enum Kind {
    /// A local write: leaves are `leave_local`, casts go to listened nodes.
    Local,
    /// A join/leave from another node: leaves are `leave_remote`.
    Remote,
    /// An exchange: copies set in both directions, one notification each.
    Exchange,
    /// A death: leaves are `{exit, Reason}`, no demonitor.
    Death(&'static str),
    /// No membership change (node up, `{new, Node}`).
    None,
}

fn round_trip(request: &Request<MemberPid>) {
    let msg = WireMsg::Cast(request.clone());
    let mut bytes = Vec::new();
    term::encode_into(&msg.encode(), &mut bytes).expect("a cast encodes");
    let t = term::decode(&bytes, Limits::default()).expect("a cast decodes as a term");
    let back = WireMsg::<MemberPid>::decode(&t).expect("a cast decodes as a scope message");
    assert_eq!(back, msg, "cast changed on the wire");
}

fn check_effects(
    kind: Kind,
    before: &Model,
    after: &Model,
    effects: &[Effect<MemberPid>],
    expect_casts: Option<(&[usize], Option<usize>)>,
) {
    let mut monitors = Vec::new();
    let mut demonitors = Vec::new();
    let mut joins: BTreeMap<(String, usize), usize> = BTreeMap::new();
    let mut leaves: BTreeMap<(String, usize), usize> = BTreeMap::new();
    let mut casts = Vec::new();
    for e in effects {
        match e {
            Effect::Monitor(p) => monitors.push(ix_of(p)),
            Effect::Demonitor(p, _) => demonitors.push(ix_of(p)),
            Effect::Notify { name, pid, reason } => {
                let p = ix_of(pid);
                let local = is_local(p);
                if reason.is_join() {
                    let want = if local {
                        Reason::JoinLocal
                    } else {
                        Reason::JoinRemote
                    };
                    assert_eq!(*reason, want, "join reason for {name} {p}");
                    *joins.entry((name.clone(), p)).or_default() += 1;
                } else {
                    let want = match kind {
                        Kind::Local => Reason::LeaveLocal,
                        Kind::Remote => Reason::LeaveRemote,
                        Kind::Exchange if local => Reason::LeaveLocal,
                        Kind::Exchange => Reason::LeaveRemote,
                        Kind::Death(r) => Reason::Exit(r.to_string()),
                        Kind::None => panic!("leave notified by an op that changes nothing"),
                    };
                    assert_eq!(*reason, want, "leave reason for {name} {p}");
                    *leaves.entry((name.clone(), p)).or_default() += 1;
                }
            }
            Effect::Cast { node, request } => {
                round_trip(request);
                casts.push((node.clone(), request.clone()));
            }
        }
    }
    // Monitors: exactly the pids that became members; demonitors: exactly
    // the pids that stopped being members, except after a death.
    let became: Vec<usize> = (0..NPIDS)
        .filter(|&p| !before.member(p) && after.member(p))
        .collect();
    let stopped: Vec<usize> = (0..NPIDS)
        .filter(|&p| before.member(p) && !after.member(p))
        .collect();
    monitors.sort_unstable();
    demonitors.sort_unstable();
    assert_eq!(monitors, became, "monitors");
    if matches!(kind, Kind::Death(_)) {
        assert!(demonitors.is_empty(), "demonitor after a death");
    } else {
        assert_eq!(demonitors, stopped, "demonitors");
    }
    // Notifications against the change of each (group, pid).
    for g in NAMES {
        for p in 0..NPIDS {
            let (b, a) = (before.get(g, p), after.get(g, p));
            let key = (g.to_string(), p);
            let j = joins.remove(&key).unwrap_or(0);
            let l = leaves.remove(&key).unwrap_or(0);
            if kind == Kind::Exchange {
                // One notification per copy, in both directions.
                assert_eq!(a as isize - b as isize, j as isize - l as isize, "{g} {p}");
            } else if a > b {
                // One join notification per join call, however many copies.
                assert!(
                    l == 0 && j >= 1 && j <= a - b,
                    "{g} {p}: +{} j{j} l{l}",
                    a - b
                );
            } else {
                assert!(j == 0 && l == b - a, "{g} {p}: -{} j{j} l{l}", b - a);
            }
        }
    }
    assert!(
        joins.is_empty() && leaves.is_empty(),
        "notified {joins:?} {leaves:?}"
    );
    // Casts.
    match expect_casts {
        None => assert!(casts.is_empty(), "unexpected casts {casts:?}"),
        Some((nodes, pid)) => {
            let to: Vec<&str> = casts.iter().map(|(n, _)| n.as_str()).collect();
            let want: Vec<&str> = nodes.iter().map(|&n| NODES[n]).collect();
            assert_eq!(to, want, "cast destinations");
            for (_, r) in &casts {
                match pid {
                    Some(p) => assert_eq!(r.pid().map(ix_of), Some(p), "cast about another pid"),
                    None => check_exchange(r, after),
                }
            }
        }
    }
}

/// An exchange we send carries our whole state.
fn check_exchange(r: &Request<MemberPid>, model: &Model) {
    let Request::Exchange { from, groups } = r else {
        panic!("expected an exchange, got {r:?}");
    };
    assert_eq!(from, NODES[ME]);
    let names: Vec<&str> = groups.iter().map(|(g, _)| g.as_str()).collect();
    let want: Vec<&str> = model.groups().into_iter().rev().collect();
    assert_eq!(names, want, "exchange groups, reverse name order");
    for (g, history) in groups {
        for p in 0..NPIDS {
            let n = history.iter().filter(|q| ix_of(q) == p).count();
            assert_eq!(n, model.get(g, p), "exchange history of {g} for {p}");
        }
    }
}

fn multiset(pids: &[MemberPid]) -> BTreeMap<usize, usize> {
    let mut m = BTreeMap::new();
    for p in pids {
        *m.entry(ix_of(p)).or_default() += 1;
    }
    m
}

fn check_reads(scope: &Scope<MemberPid>, model: &Model, salt: usize) {
    let groups = model.groups();
    assert_eq!(
        scope.which_groups(),
        groups.iter().map(|g| g.to_string()).collect::<Vec<_>>(),
        "which_groups"
    );
    assert_eq!(scope.group_count(), groups.len());
    let mut monitored: Vec<usize> = scope.monitored_pids().map(ix_of).collect();
    monitored.sort_unstable();
    let members: Vec<usize> = (0..NPIDS).filter(|&p| model.member(p)).collect();
    assert_eq!(monitored, members, "monitored pids");
    assert_eq!(scope.pid_count(), members.len(), "pid_count");
    let total: usize = model.counts.values().sum();
    let local: usize = model
        .counts
        .iter()
        .filter(|((_, p), _)| is_local(*p))
        .map(|(_, c)| c)
        .sum();
    assert_eq!(scope.member_totals(), (total, local), "member_totals");
    assert_eq!(scope.total_copies(), total, "total_copies");
    assert_eq!(scope.max_copies(), model.max);
    for p in 0..NPIDS {
        let mp = pid(p);
        assert_eq!(scope.is_monitored(&mp), model.member(p));
        let of: Vec<String> = groups
            .iter()
            .filter(|g| model.get(g, p) > 0)
            .map(|g| g.to_string())
            .collect();
        assert_eq!(scope.which_groups_of(&mp), of, "which_groups_of {p}");
        let counts: Vec<(String, usize)> =
            of.iter().map(|g| (g.clone(), model.get(g, p))).collect();
        assert_eq!(
            scope.which_groups_counts(&mp),
            counts,
            "which_groups_counts {p}"
        );
        for g in NAMES {
            assert_eq!(
                scope.join_count(g, &mp),
                model.get(g, p),
                "join_count {g} {p}"
            );
        }
    }
    let connected: Vec<&str> = model.nodes.keys().map(|&n| NODES[n]).collect();
    assert_eq!(scope.connected_nodes().collect::<Vec<_>>(), connected);
    let listened: Vec<&str> = model
        .nodes
        .iter()
        .filter(|(_, l)| **l)
        .map(|(&n, _)| NODES[n])
        .collect();
    assert_eq!(scope.listened_nodes().collect::<Vec<_>>(), listened);
    for g in NAMES {
        let want: BTreeMap<usize, usize> = (0..NPIDS)
            .filter_map(|p| Some((p, model.get(g, p))).filter(|(_, c)| *c > 0))
            .collect();
        match scope.group(g) {
            None => assert!(want.is_empty(), "group {g} missing"),
            Some(d) => {
                assert!(!want.is_empty(), "group {g} kept empty");
                let local: usize = want
                    .iter()
                    .filter(|(p, _)| is_local(**p))
                    .map(|(_, c)| c)
                    .sum();
                let total: usize = want.values().sum();
                assert_eq!(d.local_count(), local);
                assert_eq!(d.remote_count(), total - local);
                assert_eq!(d.len(), total);
                assert_eq!(d.distinct_pids(), want.len());
                let data = scope.group_data(g).expect("group_data");
                assert_eq!(multiset(&data.history), want, "history of {g}");
                // The cached snapshot is never stale.
                assert_eq!(&d.shared_members()[..], &data.history[..], "shared of {g}");
                assert_eq!(data.local_count + data.remote_count, total);
                assert_eq!(data.local.len(), local);
                assert_eq!(data.remote.len(), total - local);
            }
        }
    }
    let exclude = pid(salt % NPIDS);
    for q in NAMES.iter().chain(READ_ONLY.iter()) {
        let stored = groups.contains(q);
        for ex in [None, Some(&exclude)] {
            check_lookup(scope, model, q, stored, ex, salt);
        }
    }
}

/// Every read of `q`: whatever it answers is a stored group and agrees
/// with the model; a stored name without wildcards is found as itself.
fn check_lookup(
    scope: &Scope<MemberPid>,
    model: &Model,
    q: &str,
    stored: bool,
    ex: Option<&MemberPid>,
    salt: usize,
) {
    let ex_ix = ex.map(ix_of);
    let want = |key: &str, part: fn(usize) -> bool| -> BTreeMap<usize, usize> {
        (0..NPIDS)
            .filter(|&p| part(p) && Some(p) != ex_ix)
            .filter_map(|p| Some((p, model.get(key, p))).filter(|(_, c)| *c > 0))
            .collect()
    };
    let all = |_: usize| true;
    let remote = |p: usize| !is_local(p);
    let found = match scope.get_members(q, ex) {
        Ok((key, m)) => {
            assert!(
                model.groups().contains(key),
                "{q} resolved to unknown {key}"
            );
            assert!(!m.is_empty());
            assert_eq!(multiset(&m), want(key, all), "get_members {q} -> {key}");
            Some(key.to_string())
        }
        Err(_) => None,
    };
    if ex.is_none() {
        // The snapshot agrees with the borrowed members.
        match (scope.get_members_ref(q), scope.get_members(q, None)) {
            (Ok((k1, borrowed)), Ok((k2, m))) => {
                assert_eq!(k1, k2, "get_members_ref {q}");
                assert_eq!(borrowed, &m[..], "get_members_ref {q}");
            }
            (Err(a), Err(b)) => assert_eq!(a, b, "get_members_ref {q}"),
            (a, b) => panic!("get_members_ref {q}: {a:?}, get_members: {b:?}"),
        }
    }
    if stored && !pattern::is_pattern(q) {
        // Found as itself unless every copy is excluded.
        let any = !want(q, all).is_empty();
        assert_eq!(found.as_deref(), any.then_some(q), "get_members {q}");
    }
    if let Ok((key, m)) = scope.get_local_members(q, ex) {
        assert_eq!(multiset(&m), want(key, is_local), "get_local_members {q}");
    }
    if let Ok((key, m)) = scope.get_remote_members(q, ex) {
        assert_eq!(multiset(&m), want(key, remote), "get_remote_members {q}");
    }
    let mut i = salt;
    let mut choose = |n: usize| {
        i = i.wrapping_mul(31).wrapping_add(7);
        i % (n + 1)
    };
    let in_part = |r: Result<(&str, MemberPid), _>, part: fn(usize) -> bool, what: &str| {
        if let Ok((key, p)) = r {
            let p = ix_of(&p);
            assert!(part(p) && Some(p) != ex_ix, "{what} {q} gave {p}");
            assert!(model.get(key, p) > 0, "{what} {q} gave {p}, not in {key}");
            Some(p)
        } else {
            None
        }
    };
    let has_local = |key: &str| !want(key, is_local).is_empty();
    if let Some(p) = in_part(scope.get_closest_pid(q, ex, &mut choose), all, "closest") {
        let key = found
            .as_deref()
            .expect("closest found a group get_members did not");
        assert_eq!(is_local(p), has_local(key), "closest prefers local");
    }
    if let Some(p) = in_part(scope.get_furthest_pid(q, ex, &mut choose), all, "furthest") {
        let key = found
            .as_deref()
            .expect("furthest found a group get_members did not");
        assert_eq!(
            !is_local(p),
            !want(key, remote).is_empty(),
            "furthest prefers remote"
        );
    }
    in_part(scope.get_random_pid(q, ex, &mut choose), all, "random");
    in_part(scope.get_local_pid(q, ex, &mut choose), is_local, "local");
    in_part(scope.get_remote_pid(q, ex, &mut choose), remote, "remote");
    in_part(scope.get_oldest_pid(q, ex), all, "oldest");
    in_part(scope.get_local_oldest_pid(q, ex), is_local, "local oldest");
    in_part(scope.get_remote_oldest_pid(q, ex), remote, "remote oldest");
    in_part(scope.get_newest_pid(q, ex), all, "newest");
    in_part(scope.get_local_newest_pid(q, ex), is_local, "local newest");
    in_part(scope.get_remote_newest_pid(q, ex), remote, "remote newest");
    if let Some(key) = &found {
        // A group with members has an oldest and a newest copy.
        assert!(scope.get_oldest_pid(q, ex).is_ok(), "oldest of {key}");
        assert!(scope.get_newest_pid(q, ex).is_ok(), "newest of {key}");
    }
}

fn apply(scope: &mut Scope<MemberPid>, model: &mut Model, op: &Op) {
    let before = model.clone();
    let listened: Vec<usize> = model
        .nodes
        .iter()
        .filter(|(_, l)| **l)
        .map(|(&n, _)| n)
        .collect();
    // Local writes: the model decides whether it must succeed.
    let local_write = |model: &mut Model,
                       ok: bool,
                       p: usize,
                       r: Result<Vec<Effect<MemberPid>>, _>,
                       change: &dyn Fn(&mut Model),
                       casts: bool| {
        match r {
            Ok(effects) => {
                assert!(ok, "local write accepted against the model: {op:?}");
                change(model);
                let want = casts.then_some((listened.as_slice(), Some(p)));
                check_effects(Kind::Local, &before, model, &effects, want);
            }
            Err(e) => assert!(!ok, "local write refused ({e}): {op:?}"),
        }
    };
    match op {
        Op::Join(g, i) => {
            let p = At(Node::Me, *i).ix();
            let r = scope.join(g.s(), pid(p));
            let ok = valid_local(g.s()) && model.within_cap(&[(g.s().to_string(), 1)], p);
            local_write(model, ok, p, r, &|m| m.add(g.s(), p, 1), true);
        }
        Op::JoinAny(g, at) => {
            let p = at.ix();
            let r = scope.join(g.s(), pid(p));
            let ok =
                is_local(p) && valid_local(g.s()) && model.within_cap(&[(g.s().to_string(), 1)], p);
            local_write(model, ok, p, r, &|m| m.add(g.s(), p, 1), true);
        }
        Op::JoinCounts(l, i) => {
            let p = At(Node::Me, *i).ix();
            let l = list(l);
            let r = scope.join_counts(&l, pid(p));
            let ok = l.is_empty()
                || (l.iter().all(|(g, c)| valid_local(g) && *c > 0) && model.within_cap(&l, p));
            let change = |m: &mut Model| {
                for (g, c) in &l {
                    m.add(g, p, *c);
                }
            };
            local_write(model, ok, p, r, &change, !l.is_empty());
        }
        Op::Leave(g, i) => {
            let p = At(Node::Me, *i).ix();
            let r = scope.leave(g.s(), &pid(p));
            let ok = model.get(g.s(), p) > 0;
            local_write(model, ok, p, r, &|m| m.sub(g.s(), p, 1), true);
        }
        Op::LeaveCounts(l, i) => {
            let p = At(Node::Me, *i).ix();
            let l = list(l);
            let r = scope.leave_counts(&l, &pid(p));
            let ok = l.iter().all(|(g, c)| model.get(g, p) > 0 && *c > 0);
            let change = |m: &mut Model| {
                for (g, c) in &l {
                    m.sub(g, p, *c);
                }
            };
            local_write(model, ok, p, r, &change, !l.is_empty());
        }
        Op::LeaveAll(i) => {
            let p = At(Node::Me, *i).ix();
            let r = scope.leave_all(&pid(p));
            let ok = model.member(p);
            local_write(model, ok, p, r, &|m| m.remove_pid(p), true);
        }
        Op::Remote(from, req) => {
            let from = *from as usize;
            let (request, p) = match req {
                Remote::Join(g, at) => (
                    Request::Join {
                        name: g.s().to_string(),
                        pid: pid(at.ix()),
                    },
                    at.ix(),
                ),
                Remote::JoinCounts(l, at) => (
                    Request::JoinCounts {
                        counts: list(l),
                        pid: pid(at.ix()),
                    },
                    at.ix(),
                ),
                Remote::Leave(g, at) => (
                    Request::Leave {
                        name: g.s().to_string(),
                        pid: pid(at.ix()),
                    },
                    at.ix(),
                ),
                Remote::LeaveCounts(l, at) => (
                    Request::LeaveCounts {
                        counts: list(l),
                        pid: pid(at.ix()),
                    },
                    at.ix(),
                ),
                Remote::LeaveAll(at) => (Request::LeaveAll { pid: pid(at.ix()) }, at.ix()),
            };
            // Requests from ourselves or about our own pids are ignored, and
            // joins over the cap are ignored whole.
            if from != ME && !is_local(p) {
                match &request {
                    Request::Join { name, .. } => {
                        if valid_remote(name) && model.within_cap(&[(name.clone(), 1)], p) {
                            model.add(name, p, 1);
                        }
                    }
                    Request::JoinCounts { counts, .. } => {
                        if model.within_cap(counts, p) {
                            for (g, c) in counts {
                                if valid_remote(g) {
                                    model.add(g, p, *c);
                                }
                            }
                        }
                    }
                    Request::Leave { name, .. } => model.sub(name, p, 1),
                    Request::LeaveCounts { counts, .. } => {
                        if counts.iter().all(|(g, _)| model.get(g, p) > 0) {
                            for (g, c) in counts {
                                model.sub(g, p, *c);
                            }
                        }
                    }
                    Request::LeaveAll { .. } => model.remove_pid(p),
                    Request::Exchange { .. } => unreachable!(),
                }
            }
            let effects = scope.remote_request(NODES[from], request);
            check_effects(Kind::Remote, &before, model, &effects, None);
        }
        Op::Exchange(sender, from, groups) => {
            let from = *from as usize;
            let groups = listing(groups);
            // Only from a listened node (named inside the message, trusted);
            // each accepted pid gets exactly its number of copies, capped.
            if model.listened(from) {
                for (g, h) in &groups {
                    if !valid_remote(g) {
                        continue;
                    }
                    let mut wanted: BTreeMap<usize, usize> = BTreeMap::new();
                    for q in h {
                        *wanted.entry(ix_of(q)).or_default() += 1;
                    }
                    for (q, c) in wanted {
                        if model.accepts(q) {
                            let c = c.min(model.max);
                            model.set(g, q, c);
                        }
                    }
                }
            }
            let request = Request::Exchange {
                from: NODES[from].to_string(),
                groups,
            };
            round_trip(&request);
            let effects = scope.remote_request(NODES[*sender as usize], request);
            check_effects(Kind::Exchange, &before, model, &effects, None);
        }
        Op::Polled(from, groups) => {
            let from = *from as usize;
            let groups = listing(groups);
            let of_from = |q: &MemberPid| ix_of(q) / PIDS_PER_NODE == from;
            // First, as the scope task does, the copies of `from`'s pids
            // that it no longer lists leave (`Scope::unlisted`; a name
            // listed twice counts its copies in both listings).
            let dropped = model.clone();
            let listened = model.listened(from);
            for g in NAMES.iter().filter(|_| listened) {
                for q in (0..NPIDS).filter(|q| q / PIDS_PER_NODE == from) {
                    let listed = groups
                        .iter()
                        .filter(|(n, _)| n == g)
                        .map(|(_, h)| h.iter().filter(|p| ix_of(p) == q).count())
                        .sum::<usize>();
                    if model.get(g, q) > listed {
                        model.set(g, q, listed);
                    }
                }
            }
            let mut effects = Vec::new();
            for (pid, counts) in scope
                .unlisted(NODES[from], &groups)
                .into_iter()
                .filter(|_| listened)
            {
                let leave = Request::LeaveCounts { counts, pid };
                effects.extend(scope.remote_request(NODES[from], leave));
            }
            check_effects(Kind::Remote, &dropped, model, &effects, None);
            let before = model.clone();
            // The groups whose copies of `from`'s pids are then in its
            // order: its copies all taken (none capped).
            let mut ordered = Vec::new();
            if model.listened(from) {
                for (g, h) in &groups {
                    if !valid_remote(g) {
                        continue;
                    }
                    let mut wanted: BTreeMap<usize, usize> = BTreeMap::new();
                    for q in h.iter().filter(|q| of_from(q)) {
                        *wanted.entry(ix_of(q)).or_default() += 1;
                    }
                    if wanted.is_empty() {
                        continue;
                    }
                    if wanted.values().all(|&c| c <= model.max) {
                        ordered.push(g.clone());
                    }
                    for (q, c) in wanted {
                        model.set(g, q, c.min(model.max));
                    }
                }
            }
            // (A group listed twice: its last listing is what stays.)
            ordered.retain(|g| groups.iter().filter(|(n, _)| n == g).count() == 1);
            let effects = scope.exchange_polled(NODES[from], groups.clone());
            check_effects(Kind::Exchange, &before, model, &effects, None);
            for g in &ordered {
                let listed = &groups.iter().find(|(n, _)| n == g).expect("listed").1;
                let data = scope.group_data(g).expect("a polled group");
                let ours: Vec<&MemberPid> = data.history.iter().filter(|q| of_from(q)).collect();
                let theirs: Vec<&MemberPid> = listed.iter().filter(|q| of_from(q)).collect();
                assert_eq!(ours, theirs, "{g}: a polled node's copies in its order");
            }
        }
        Op::NodeUp(n, listen) => {
            let n = *n as usize;
            let effects = scope.node_up(NODES[n], *listen);
            if n != ME {
                model.nodes.insert(n, *listen);
            }
            let to = [n];
            let want =
                (n != ME && *listen && !model.groups().is_empty()).then_some((&to[..], None));
            check_effects(Kind::None, &before, model, &effects, want);
        }
        Op::NodeDown(n) => {
            let n = *n as usize;
            model.nodes.remove(&n);
            if n != ME {
                for p in 0..PIDS_PER_NODE {
                    model.remove_pid(n * PIDS_PER_NODE + p);
                }
            }
            let effects = scope.node_down(NODES[n]);
            check_effects(Kind::Death(NODEDOWN_REASON), &before, model, &effects, None);
            if n != ME {
                for g in scope.which_groups() {
                    if let Ok((_, pids)) = scope.get_members(&g, None) {
                        assert!(
                            pids.iter().all(|p| p.node() != NODES[n]),
                            "member of {} after its nodedown",
                            NODES[n]
                        );
                    }
                }
            }
        }
        Op::MemberDown(at, killed) => {
            let reason = if *killed { "killed" } else { "noproc" };
            model.remove_pid(at.ix());
            let effects = scope.member_down(&pid(at.ix()), reason);
            check_effects(Kind::Death(reason), &before, model, &effects, None);
        }
        Op::MaxCopies(c) => {
            scope.set_max_copies(count(*c));
            model.max = count(*c).max(1);
            assert_eq!(scope.max_copies(), model.max);
        }
        Op::NewNode(n) => {
            let n = *n as usize;
            let effects = scope.new_node(NODES[n]);
            let to = [n];
            let want = (n != ME && !model.groups().is_empty()).then_some((&to[..], None));
            check_effects(Kind::None, &before, model, &effects, want);
        }
    }
}

fuzz_target!(|ops: Vec<Op>| {
    let mut scope: Scope<MemberPid> = Scope::new(NODES[ME]);
    let mut model = Model::new();
    for (i, op) in ops.iter().take(MAX_OPS).enumerate() {
        apply(&mut scope, &mut model, op);
        check_reads(&scope, &model, i);
    }
});
