use super::*;

// ------------------------------------------------------------------
// ScopeNet: three scopes exchanging casts through in-memory FIFO links.

const NODES: [&str; 3] = ["a", "b", "c"];
const GROUPS: [&str; 4] = ["g0", "g1", "a/*", "zz"];

fn idx(node: &str) -> usize {
    NODES.iter().position(|n| *n == node).unwrap()
}

#[derive(Debug)]
enum Msg {
    Cast(Request<T>),
    Down(T, String),
}

struct Net {
    scopes: Vec<Scope<T>>,
    /// FIFO per (from, to); (x, x) carries local DOWNs.
    chans: BTreeMap<(usize, usize), VecDeque<Msg>>,
    links: BTreeSet<(usize, usize)>,
    /// What each scope's caller monitors (driven by the effects), with the
    /// handle it recorded in the scope (`None`: the pid left in the same
    /// batch of effects, before its monitor could be recorded).
    monitors: Vec<BTreeMap<T, Option<MonitorTag>>>,
    /// The last monitor handle handed out.
    tags: u64,
    dead: BTreeSet<T>,
    /// Pid generation per (node, slot): a killed pid is never reused.
    gens: BTreeMap<(usize, usize), u32>,
    /// Owner's truth: copies per (group, pid).
    truth: BTreeMap<(String, T), usize>,
}

impl Net {
    fn new() -> Self {
        let mut net = Net {
            scopes: NODES.iter().map(|n| Scope::new(*n)).collect(),
            chans: BTreeMap::new(),
            links: BTreeSet::new(),
            monitors: vec![BTreeMap::new(); 3],
            tags: 0,
            dead: BTreeSet::new(),
            gens: BTreeMap::new(),
            truth: BTreeMap::new(),
        };
        for x in 0..3 {
            for y in x + 1..3 {
                net.reconnect(x, y);
            }
        }
        net
    }

    fn linked(&self, x: usize, y: usize) -> bool {
        x == y || self.links.contains(&(x.min(y), x.max(y)))
    }

    fn pid(&self, node: usize, slot: usize) -> T {
        let gen = self.gens.get(&(node, slot)).copied().unwrap_or(0);
        t(NODES[node], slot as u32 * 1000 + gen)
    }

    fn push(&mut self, from: usize, to: usize, msg: Msg) {
        self.chans.entry((from, to)).or_default().push_back(msg);
    }

    fn apply(&mut self, s: usize, effects: Vec<E>) {
        for e in effects {
            match e {
                Effect::Monitor(p) => {
                    // the driver records its monitor as it sets it
                    self.tags += 1;
                    let tag = MonitorTag::new(self.tags).unwrap();
                    let recorded = match self.scopes[s].set_monitor(&p, tag) {
                        Ok(None) => Some(tag),
                        Ok(Some(old)) => panic!("{p:?} had a monitor recorded: {old}"),
                        Err(_) => None,
                    };
                    let was = self.monitors[s].insert(p.clone(), recorded);
                    assert!(was.is_none(), "double monitor {p:?}");
                    if self.dead.contains(&p) {
                        let owner = idx(p.node());
                        if self.linked(owner, s) {
                            self.push(owner, s, Msg::Down(p, "noproc".into()));
                        } else {
                            self.push(s, s, Msg::Down(p, "noconnection".into()));
                        }
                    }
                }
                Effect::Demonitor(p, tag) => {
                    // with the handle recorded for it
                    assert_eq!(self.monitors[s].remove(&p), Some(tag), "demonitor of {p:?}");
                }
                Effect::Cast { node, request } => {
                    let to = idx(&node);
                    assert_ne!(to, s);
                    assert!(self.linked(s, to), "cast to unconnected node");
                    self.push(s, to, Msg::Cast(request));
                }
                Effect::Notify { .. } => {}
            }
        }
    }

    fn deliver(&mut self, key: (usize, usize)) {
        let msg = self
            .chans
            .get_mut(&key)
            .and_then(VecDeque::pop_front)
            .unwrap();
        let (from, to) = key;
        let effects = match msg {
            Msg::Cast(r) => self.scopes[to].remote_request(NODES[from], r),
            Msg::Down(p, reason) => {
                self.monitors[to].remove(&p);
                self.scopes[to].member_down(&p, &reason)
            }
        };
        self.apply(to, effects);
    }

    fn busy(&self) -> Vec<(usize, usize)> {
        self.chans
            .iter()
            .filter(|(_, q)| !q.is_empty())
            .map(|(k, _)| *k)
            .collect()
    }

    fn quiet(&mut self) {
        while let Some(k) = self.busy().first().copied() {
            self.deliver(k);
        }
    }

    fn partition(&mut self, x: usize, y: usize) {
        self.links.remove(&(x.min(y), x.max(y)));
        self.chans.remove(&(x, y));
        self.chans.remove(&(y, x));
        for (a, b) in [(x, y), (y, x)] {
            self.monitors[a].retain(|p, _| p.node() != NODES[b]);
            let e = self.scopes[a].node_down(NODES[b]);
            self.apply(a, e);
        }
    }

    fn reconnect(&mut self, x: usize, y: usize) {
        self.links.insert((x.min(y), x.max(y)));
        let ex = self.scopes[x].node_up(NODES[y], true);
        let ey = self.scopes[y].node_up(NODES[x], true);
        self.apply(x, ex);
        self.apply(y, ey);
    }

    fn truth_count(&self, g: &str, p: &T) -> usize {
        self.truth
            .get(&(g.to_string(), p.clone()))
            .copied()
            .unwrap_or(0)
    }

    /// Runs a local write at the pid's owner; checks Ok/Err against the
    /// truth and updates it. Returns whether the write was accepted.
    fn op(&mut self, op: &Op) -> bool {
        let (node, slot) = op.owner();
        let pid = self.pid(node, slot);
        let member_of = |net: &Net, g: &str| net.truth_count(g, &pid) > 0;
        let s = node;
        let (res, valid) = match op {
            Op::Join { g, .. } => (self.scopes[s].join(GROUPS[*g], pid.clone()), true),
            Op::JoinCounts { gs, .. } => {
                let c: Vec<(String, usize)> = gs
                    .iter()
                    .map(|(g, c)| (GROUPS[*g].to_string(), *c))
                    .collect();
                (self.scopes[s].join_counts(&c, pid.clone()), true)
            }
            Op::Leave { g, .. } => {
                let valid = member_of(self, GROUPS[*g]);
                (self.scopes[s].leave(GROUPS[*g], &pid), valid)
            }
            Op::LeaveCounts { gs, .. } => {
                let valid = gs.iter().all(|(g, _)| member_of(self, GROUPS[*g]));
                let c: Vec<(String, usize)> = gs
                    .iter()
                    .map(|(g, c)| (GROUPS[*g].to_string(), *c))
                    .collect();
                (self.scopes[s].leave_counts(&c, &pid), valid)
            }
            Op::LeaveAll { .. } => {
                let valid = GROUPS.iter().any(|g| member_of(self, g));
                (self.scopes[s].leave_all(&pid), valid)
            }
            Op::Kill { .. } => {
                self.dead.insert(pid.clone());
                *self.gens.entry((node, slot)).or_insert(0) += 1;
                for x in 0..3 {
                    if self.monitors[x].contains_key(&pid) {
                        self.push(node, x, Msg::Down(pid.clone(), "killed".into()));
                    }
                }
                self.truth.retain(|(_, p), _| *p != pid);
                return true;
            }
        };
        assert_eq!(res.is_ok(), valid, "{op:?} -> {res:?}");
        let Ok(effects) = res else { return false };
        self.apply(s, effects);
        let mut bump = |g: usize, delta: isize| {
            let k = (GROUPS[g].to_string(), pid.clone());
            let c = self.truth.entry(k.clone()).or_insert(0);
            *c = (*c as isize + delta).max(0) as usize;
            if *c == 0 {
                self.truth.remove(&k);
            }
        };
        match op {
            Op::Join { g, .. } => bump(*g, 1),
            Op::JoinCounts { gs, .. } => gs.iter().for_each(|(g, c)| bump(*g, *c as isize)),
            Op::Leave { g, .. } => bump(*g, -1),
            Op::LeaveCounts { gs, .. } => gs.iter().for_each(|(g, c)| bump(*g, -(*c as isize))),
            Op::LeaveAll { .. } => (0..GROUPS.len()).for_each(|g| bump(g, isize::MIN / 2)),
            Op::Kill { .. } => {}
        }
        true
    }

    /// Every scope is consistent and agrees with the owners' truth.
    fn check_truth(&self) {
        let names: BTreeSet<String> = self.truth.keys().map(|(g, _)| g.clone()).collect();
        for (i, s) in self.scopes.iter().enumerate() {
            check_invariants(s);
            let mine: BTreeSet<T> = s.monitored_pids().cloned().collect();
            let monitored: BTreeSet<T> = self.monitors[i].keys().cloned().collect();
            assert_eq!(mine, monitored, "monitors of {}", NODES[i]);
            for (p, tag) in &self.monitors[i] {
                assert_eq!(s.monitor_of(p), *tag, "monitor of {p:?} on {}", NODES[i]);
            }
            assert_eq!(s.which_groups().into_iter().collect::<BTreeSet<_>>(), names);
            let mut have = BTreeMap::new();
            for g in s.which_groups() {
                for p in s.group(&g).unwrap().pids() {
                    have.insert((g.clone(), p.clone()), s.join_count(&g, p));
                }
            }
            assert_eq!(have, self.truth, "scope {}", NODES[i]);
        }
    }
}

#[derive(Debug, Clone)]
enum Op {
    Join {
        n: usize,
        p: usize,
        g: usize,
    },
    JoinCounts {
        n: usize,
        p: usize,
        gs: Vec<(usize, usize)>,
    },
    Leave {
        n: usize,
        p: usize,
        g: usize,
    },
    LeaveCounts {
        n: usize,
        p: usize,
        gs: Vec<(usize, usize)>,
    },
    LeaveAll {
        n: usize,
        p: usize,
    },
    Kill {
        n: usize,
        p: usize,
    },
}

impl Op {
    fn owner(&self) -> (usize, usize) {
        match *self {
            Op::Join { n, p, .. }
            | Op::JoinCounts { n, p, .. }
            | Op::Leave { n, p, .. }
            | Op::LeaveCounts { n, p, .. }
            | Op::LeaveAll { n, p }
            | Op::Kill { n, p } => (n, p),
        }
    }
}

fn op_strategy(nodes: std::ops::Range<usize>) -> impl Strategy<Value = Op> {
    let np = (nodes, 0usize..3);
    let gs = proptest::collection::vec((0..GROUPS.len(), 1usize..3), 0..3);
    prop_oneof![
        5 => (np.clone(), 0..GROUPS.len()).prop_map(|((n, p), g)| Op::Join { n, p, g }),
        2 => (np.clone(), gs.clone()).prop_map(|((n, p), gs)| Op::JoinCounts { n, p, gs }),
        4 => (np.clone(), 0..GROUPS.len()).prop_map(|((n, p), g)| Op::Leave { n, p, g }),
        2 => (np.clone(), gs).prop_map(|((n, p), gs)| Op::LeaveCounts { n, p, gs }),
        1 => np.clone().prop_map(|(n, p)| Op::LeaveAll { n, p }),
        1 => np.prop_map(|(n, p)| Op::Kill { n, p }),
    ]
}

/// Naive cpg list semantics (histories newest first), the reference for
/// the sequential phase.
#[derive(Default, Debug)]
struct Model {
    groups: BTreeMap<String, Vec<T>>,
}

impl Model {
    fn apply(&mut self, op: &Op, pid: &T) {
        let mut leave = |g: &str, c: usize| {
            let Some(h) = self.groups.get_mut(g) else {
                return;
            };
            for _ in 0..c {
                match h.iter().rposition(|x| x == pid) {
                    Some(i) => {
                        h.remove(i);
                    }
                    None => break,
                }
            }
        };
        match op {
            Op::Leave { g, .. } => leave(GROUPS[*g], 1),
            Op::LeaveCounts { gs, .. } => gs.iter().for_each(|(g, c)| leave(GROUPS[*g], *c)),
            Op::LeaveAll { .. } | Op::Kill { .. } => self
                .groups
                .values_mut()
                .for_each(|h| h.retain(|x| x != pid)),
            Op::Join { g, .. } => self.join(GROUPS[*g], pid, 1),
            Op::JoinCounts { gs, .. } => {
                gs.iter().for_each(|(g, c)| self.join(GROUPS[*g], pid, *c))
            }
        }
        self.groups.retain(|_, h| !h.is_empty());
    }

    fn join(&mut self, g: &str, pid: &T, c: usize) {
        let h = self.groups.entry(g.to_string()).or_default();
        for _ in 0..c {
            h.insert(0, pid.clone());
        }
    }

    fn exchange_view(&self) -> Vec<(String, Vec<T>)> {
        self.groups
            .iter()
            .rev()
            .map(|(g, h)| (g.clone(), h.clone()))
            .collect()
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Sequential writes (each fully propagated): every node holds the
    /// same histories, in the same order, as the naive cpg model. Then a
    /// netsplit of c, writes on both sides, and a reconnection: every
    /// node converges to the owners' counts (orders may differ, as in
    /// cpg, where the other side's members are prepended on merge).
    #[test]
    fn scope_net_sequential_and_reconnect(
        ops1 in proptest::collection::vec(op_strategy(0..3), 0..60),
        ops2 in proptest::collection::vec(op_strategy(0..3), 0..30),
        ops3 in proptest::collection::vec(op_strategy(0..3), 0..30),
        simultaneous in any::<bool>(),
    ) {
        let mut net = Net::new();
        let mut model = Model::default();
        for op in &ops1 {
            let (n, p) = op.owner();
            let pid = net.pid(n, p);
            // the model follows accepted writes (validity checked in op)
            if net.op(op) {
                model.apply(op, &pid);
            }
            net.quiet();
            for s in &net.scopes {
                prop_assert_eq!(s.exchange_groups(), model.exchange_view());
            }
            net.check_truth();
        }
        // netsplit: c alone
        net.partition(0, 2);
        net.partition(1, 2);
        net.quiet();
        for op in &ops2 {
            let _ = net.op(op);
            net.quiet();
        }
        for s in &net.scopes {
            check_invariants(s);
        }
        // a and b still agree exactly
        prop_assert_eq!(net.scopes[0].exchange_groups(), net.scopes[1].exchange_groups());
        if simultaneous {
            net.reconnect(0, 2);
            net.reconnect(1, 2);
            net.quiet();
        } else {
            net.reconnect(0, 2);
            net.quiet();
            net.reconnect(1, 2);
            net.quiet();
        }
        net.check_truth();
        for op in &ops3 {
            let _ = net.op(op);
            net.quiet();
            net.check_truth();
        }
    }

    /// Concurrent writes with arbitrary interleaving of deliveries (no
    /// netsplit): every node ends with the owners' counts.
    #[test]
    fn scope_net_concurrent(
        steps in proptest::collection::vec(
            prop_oneof![
                2 => op_strategy(0..3).prop_map(Some),
                3 => Just(None),
            ],
            0..150,
        ),
        picks in proptest::collection::vec(any::<usize>(), 150),
    ) {
        let mut net = Net::new();
        for (i, step) in steps.iter().enumerate() {
            match step {
                Some(op) => {
                    let _ = net.op(op);
                }
                None => {
                    let busy = net.busy();
                    if !busy.is_empty() {
                        net.deliver(busy[picks[i] % busy.len()]);
                    }
                }
            }
        }
        net.quiet();
        net.check_truth();
    }
}
