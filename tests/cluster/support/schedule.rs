//! Helpers of the randomized schedule test: a three-node cluster (two BEAM
//! nodes running genuine cpg or `erl_test/cpg_model_scope.erl`, and a Rust
//! node running [`CpgScope`]), driven from a separate Rust `ctl` node so
//! that any link may be cut; the owners' own record of their members; and
//! every node's view of the membership.

use super::{eval, genuine_cpg_args_env, rpc, unique, ErlNode, World};
use cpg_node::cpg::{CpgScope, ScopeOptions, DEFAULT_SCOPE};
use cpg_node::process::Process;
use cpg_node::term::{self, atom, string_to_charlist, Term};
use cpg_node::Node;
use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

/// Node indices: the two BEAM nodes, then the Rust node.
pub const NODES: usize = 3;
pub const RUST: usize = 2;
/// The three links between them.
pub const LINKS: [(usize, usize); 3] = [(0, 1), (0, 2), (1, 2)];

/// The links (indices into [`LINKS`]) that end at node `i`.
fn links_of(i: usize) -> Vec<usize> {
    (0..LINKS.len())
        .filter(|&k| LINKS[k].0 == i || LINKS[k].1 == i)
        .collect()
}

/// What runs cpg on the BEAM nodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// Genuine cpg (from CPG_EBIN).
    Genuine,
    /// `erl_test/cpg_model_scope.erl` (always available).
    Model,
}

impl Backend {
    /// Genuine cpg when CPG_EBIN is set, else the model scope.
    pub fn from_env() -> Backend {
        if std::env::var_os("CPG_EBIN").is_some_and(|v| !v.is_empty()) {
            Backend::Genuine
        } else {
            Backend::Model
        }
    }

    /// The module with `join/3`, `leave/3`, `get_members/2`,
    /// `which_groups/1` (scope first).
    pub fn module(self) -> &'static str {
        match self {
            Backend::Genuine => "cpg",
            Backend::Model => "cpg_model_scope",
        }
    }

    /// `erl` arguments of a node whose scope runs at `node_type`.
    pub fn erl_args(self, t: &str) -> Vec<String> {
        match self {
            Backend::Genuine => genuine_cpg_args_env(t, &[]),
            Backend::Model => vec![
                "-eval".into(),
                format!("{{ok, _}} = cpg_model_scope:start({DEFAULT_SCOPE}, {t})."),
            ],
        }
    }
}

/// The Rust node's scope, with the default options (`Auto`: it asks each
/// BEAM node its `node_type`), polling BEAM scopes at visible every 100 ms.
fn rust_scope(r: &Node) -> CpgScope {
    let mut o = ScopeOptions::new(DEFAULT_SCOPE);
    o.poll_interval = Duration::from_millis(100);
    CpgScope::start(r, o).unwrap()
}

/// Per group, the sorted pid texts, one per join.
pub type View = BTreeMap<String, Vec<String>>;

/// Who owns which members, with their join counts: the truth that every
/// node's view must reflect (only the owner writes).
#[derive(Debug, Default, Clone)]
pub struct Truth {
    /// Per node: member pid (as a term) -> group -> join count.
    pub members: [Vec<(Term, BTreeMap<String, usize>)>; NODES],
}

impl Truth {
    /// The view node `i` must have when `linked(i, j)` tells which links
    /// are up: its own members and those of every node directly connected
    /// to it (members of a node it is cut from were dropped on nodedown and
    /// are filtered out of relayed exchanges).
    pub fn expected(&self, i: usize, linked: impl Fn(usize, usize) -> bool) -> View {
        let mut v = View::new();
        for j in 0..NODES {
            if j != i && !linked(i, j) {
                continue;
            }
            for (pid, groups) in &self.members[j] {
                for (g, &n) in groups {
                    let e = v.entry(g.clone()).or_default();
                    e.extend(std::iter::repeat_n(pid.to_string(), n));
                }
            }
        }
        v.retain(|_, pids| !pids.is_empty());
        for pids in v.values_mut() {
            pids.sort();
        }
        v
    }
}

/// The cluster under test.
pub struct Cluster {
    pub backend: Backend,
    pub beams: [ErlNode; 2],
    /// Drives the BEAM nodes (never cut from them).
    pub ctl: Node,
    pub r: Node,
    pub scope: CpgScope,
    /// Which links are up, by index into [`LINKS`].
    pub up: [bool; 3],
    /// The BEAM scopes' `node_type` (`all` or `visible`).
    pub node_type: String,
    rust_members: HashMap<String, Process>,
    /// The cluster's cookie (see [`Cluster::bar`]).
    cookie: String,
}

impl Cluster {
    /// Two BEAM nodes whose scopes run at `node_type` (`all`, or
    /// `visible`, cpg's default), connected to each other, and a Rust node
    /// connected to both, every scope up.
    pub async fn start(w: &World, backend: Backend, node_type: &str) -> Cluster {
        let args = backend.erl_args(node_type);
        let args: Vec<&str> = args.iter().map(|s| s.as_str()).collect();
        let a = ErlNode::start(&unique("sa"), &w.cookie, w.epmd.port, &args).await;
        let b = ErlNode::start(&unique("sb"), &w.cookie, w.epmd.port, &args).await;
        let ctl = w.rust_node("ctl").await;
        for e in [&a, &b] {
            eval(
                &ctl,
                &e.name,
                &format!("cpg_node_test_util:wait_for({DEFAULT_SCOPE})."),
            )
            .await;
        }
        super::ping(&ctl, &a.name, &b.name).await;
        let r = w.rust_node("sr").await;
        let scope = rust_scope(&r);
        r.connect(&a.name).await.unwrap();
        r.connect(&b.name).await.unwrap();
        let c = Cluster {
            backend,
            beams: [a, b],
            ctl,
            r,
            scope,
            up: [true; 3],
            node_type: node_type.to_string(),
            rust_members: HashMap::new(),
            cookie: w.cookie.clone(),
        };
        // Every scope has handled every nodeup, and the exchanges they sent
        // have landed: a scope that sends to a node it still believes is up
        // would dial it again after the schedule's first cut.
        let t0 = Instant::now();
        while !c.links_settled().await {
            assert!(
                t0.elapsed() < Duration::from_secs(10),
                "{}",
                c.connections().await
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        c
    }

    /// The node name of node `i`.
    pub fn name(&self, i: usize) -> String {
        if i == RUST {
            self.r.name().to_string()
        } else {
            self.beams[i].name.clone()
        }
    }

    /// Whether nodes `i` and `j` are connected (as the schedule left them).
    pub fn linked(&self, i: usize, j: usize) -> bool {
        LINKS
            .iter()
            .position(|&(x, y)| (x, y) == (i.min(j), i.max(j)))
            .is_some_and(|k| self.up[k])
    }

    /// A fresh member process on node `i`.
    pub async fn spawn_member(&mut self, i: usize) -> Term {
        if i == RUST {
            let p = self.r.spawn_process();
            let t = Term::Pid(p.pid().clone());
            self.rust_members.insert(t.to_string(), p);
            t
        } else {
            rpc(
                &self.ctl,
                &self.beams[i].name,
                "cpg_node_test_util",
                "spawn_idle",
                vec![],
            )
            .await
        }
    }

    /// Joins (or leaves) `group` with `pid` on its owner node `i`.
    pub async fn write(&self, i: usize, join: bool, group: &str, pid: &Term) {
        if i == RUST {
            let p = term::as_pid(pid).unwrap();
            let res = if join {
                self.scope.join(group, p).await
            } else {
                self.scope.leave(group, p).await
            };
            res.unwrap_or_else(|e| panic!("Rust join={join} {group} {pid}: {e}"));
        } else {
            let f = if join { "join" } else { "leave" };
            let got = rpc(
                &self.ctl,
                &self.beams[i].name,
                self.backend.module(),
                f,
                vec![atom(DEFAULT_SCOPE), string_to_charlist(group), pid.clone()],
            )
            .await;
            assert!(
                super::is_atom(&got, "ok"),
                "{f} {group} {pid} on {i}: {got}"
            );
        }
    }

    /// Ends member `pid` of node `i` (killed).
    pub async fn kill(&mut self, i: usize, pid: &Term) {
        if i == RUST {
            let p = self.rust_members.remove(&pid.to_string()).unwrap();
            p.exit(atom("killed"));
        } else {
            rpc(
                &self.ctl,
                &self.beams[i].name,
                "erlang",
                "exit",
                vec![pid.clone(), atom("kill")],
            )
            .await;
        }
    }

    /// Bars link `k` (each BEAM end holds a wrong cookie for the other end,
    /// so no connection between them can be made), or lifts the bar. A cut
    /// must stay cut until its heal, and a BEAM node dials again whatever
    /// it sends to: a `rex` reply to a call of the Rust node that crossed
    /// the disconnect did so (a BEAM end accepted our node's dial 1.5 ms
    /// after it had disconnected from it, and the schedule diverged), which
    /// a real partition would not.
    async fn bar(&self, k: usize, barred: bool) {
        let (i, j) = LINKS[k];
        let cookie = if barred {
            format!("{}_barred", self.cookie)
        } else {
            self.cookie.clone()
        };
        for (p, q) in [(i, j), (j, i)] {
            if p != RUST {
                let code = format!("erlang:set_cookie('{}', '{cookie}').", self.name(q));
                eval(&self.ctl, &self.beams[p].name, &code).await;
            }
        }
    }

    /// Cuts link `k`, from the side `from_first` picks. Returns how.
    pub async fn cut(&mut self, k: usize, from_first: bool) -> String {
        let (i, j) = LINKS[k];
        let (x, y) = if from_first { (i, j) } else { (j, i) };
        self.bar(k, true).await;
        if x == RUST {
            self.r.disconnect(&self.name(y));
        } else {
            eval(
                &self.ctl,
                &self.beams[x].name,
                &format!("erlang:disconnect_node('{}').", self.name(y)),
            )
            .await;
        }
        self.up[k] = false;
        format!("cut {}-{} (by {})", i, j, x)
    }

    /// Heals link `k`, connecting from the side `from_first` picks.
    pub async fn heal(&mut self, k: usize, from_first: bool) -> String {
        let (i, j) = LINKS[k];
        let (x, y) = if from_first { (i, j) } else { (j, i) };
        self.bar(k, false).await;
        if x == RUST {
            self.r.connect(&self.name(y)).await.unwrap();
        } else {
            let got = eval(
                &self.ctl,
                &self.beams[x].name,
                &format!("net_kernel:connect_node('{}').", self.name(y)),
            )
            .await;
            assert!(super::is_atom(&got, "true"), "connect {x}->{y}: {got}");
        }
        self.up[k] = true;
        format!("heal {}-{} (by {})", i, j, x)
    }

    /// Kills BEAM node `i` and starts it again (a new incarnation, its
    /// scope empty and connected to nobody); every link to it is down.
    pub async fn restart(&mut self, i: usize) -> String {
        assert!(i != RUST);
        let links = links_of(i);
        // Barred from the other ends first, then (once it is up again)
        // from the new incarnation too.
        for &k in &links {
            self.bar(k, true).await;
        }
        self.beams[i].restart().await;
        eval(
            &self.ctl,
            &self.beams[i].name,
            &format!("cpg_node_test_util:wait_for({DEFAULT_SCOPE})."),
        )
        .await;
        for &k in &links {
            self.bar(k, true).await;
            self.up[k] = false;
        }
        format!("restart {i}")
    }

    /// Restarts node `i`'s scope process alone (the node and its member
    /// processes stay up): a BEAM scope is stopped and started again
    /// (genuine cpg: its application; the model: its scope), ours is
    /// killed as `exit(Scope, kill)` does (through a BEAM node linked to
    /// it, else from within) and restarts under its supervisor. Returns
    /// once the new scope is registered.
    pub async fn restart_scope(&mut self, i: usize) -> String {
        if i == RUST {
            let old = self.r.whereis(DEFAULT_SCOPE).expect("our scope");
            let by = (0..NODES).find(|&j| j != RUST && self.linked(j, RUST));
            match by {
                Some(j) => {
                    let kill = vec![Term::Pid(old.clone()), atom("kill")];
                    rpc(&self.ctl, &self.beams[j].name, "erlang", "exit", kill).await;
                }
                None => self.scope.inject_crash(),
            }
            let t0 = Instant::now();
            while self.r.whereis(DEFAULT_SCOPE).is_none_or(|p| p == old) {
                assert!(
                    t0.elapsed() < Duration::from_secs(10),
                    "our scope not restarted"
                );
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            return match by {
                Some(j) => format!("scope restart {RUST} (killed from {j})"),
                None => format!("scope restart {RUST} (crashed)"),
            };
        }
        let t = &self.node_type;
        let code = match self.backend {
            Backend::Genuine => format!(
                "ok = application:stop(cpg), ok = application:start(cpg), \
                 cpg_node_test_util:wait_for({DEFAULT_SCOPE})."
            ),
            Backend::Model => format!(
                "ok = cpg_model_scope:stop({DEFAULT_SCOPE}), \
                 {{ok, _}} = cpg_model_scope:start({DEFAULT_SCOPE}, {t}), ok."
            ),
        };
        eval(&self.ctl, &self.beams[i].name, &code).await;
        format!("scope restart {i}")
    }

    /// Stops the Rust node (its members end with `shutdown`) and starts it
    /// again under the same name with a new scope; every link to it is down.
    pub async fn restart_rust(&mut self) -> String {
        for k in links_of(RUST) {
            self.bar(k, true).await;
        }
        let config = self.r.config().clone();
        self.r.shutdown().await;
        self.rust_members.clear();
        let t0 = Instant::now();
        self.r = loop {
            match Node::start(config.clone()).await {
                Ok(n) => break n,
                Err(e) => {
                    assert!(t0.elapsed() < Duration::from_secs(10), "restart: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        };
        self.scope = rust_scope(&self.r);
        for k in links_of(RUST) {
            self.up[k] = false;
        }
        format!("restart {RUST} (creation {})", self.r.creation())
    }

    /// Node `i`'s view of every group.
    pub async fn view(&self, i: usize) -> View {
        if i == RUST {
            let mut v = View::new();
            for g in self.scope.which_groups() {
                if let Ok((_, pids)) = self.scope.get_members(g.as_str()) {
                    let mut p: Vec<String> = pids
                        .into_iter()
                        .map(|p| Term::Pid(p.into()).to_string())
                        .collect();
                    p.sort();
                    v.insert(g, p);
                }
            }
            return v;
        }
        let m = self.backend.module();
        let s = DEFAULT_SCOPE;
        let got = eval(
            &self.ctl,
            &self.beams[i].name,
            &format!(
                "[{{G, Ps}} || G <- {m}:which_groups({s}), \
                 {{ok, _, Ps}} <- [{m}:get_members({s}, G)]]."
            ),
        )
        .await;
        let mut v = View::new();
        for t in term::as_list(&got).unwrap_or_default() {
            if let Some([g, pids]) = term::as_tuple(t) {
                let mut p: Vec<String> = term::as_list(pids)
                    .unwrap_or_default()
                    .iter()
                    .map(|p| p.to_string())
                    .collect();
                p.sort();
                v.insert(term::charlist_to_string(g).unwrap_or_default(), p);
            }
        }
        v
    }

    /// Every node's view.
    pub async fn views(&self) -> Vec<View> {
        let mut v = Vec::with_capacity(NODES);
        for i in 0..NODES {
            v.push(self.view(i).await);
        }
        v
    }

    /// What each node says it is connected to, for failure reports.
    pub async fn connections(&self) -> String {
        let mut s = String::new();
        for i in 0..2 {
            let got = eval(&self.ctl, &self.beams[i].name, "nodes(connected).").await;
            s += &format!("node {i} ({}): {got}\n", self.name(i));
        }
        s += &format!(
            "node 2 ({}): {:?}, its scope: {:?}\n",
            self.name(RUST),
            self.r.peers(),
            self.scope
                .read(|s| s.connected_nodes().map(String::from).collect::<Vec<_>>())
        );
        s += &format!("links up (schedule): {:?} for {LINKS:?}\n", self.up);
        s
    }

    /// Whether every node, the Rust scope included, sees each link as the
    /// schedule left it (up or cut).
    pub async fn links_settled(&self) -> bool {
        let mut beam_peers = Vec::new();
        for e in &self.beams {
            let got = eval(&self.ctl, &e.name, "nodes(connected).").await;
            let names: Vec<String> = term::as_list(&got)
                .unwrap_or_default()
                .iter()
                .filter_map(|t| term::as_atom(t).map(String::from))
                .collect();
            beam_peers.push(names);
        }
        let rust_peers = self.r.peers();
        let scope_peers: Vec<String> = self
            .scope
            .read(|s| s.connected_nodes().map(String::from).collect());
        let sees = |i: usize, j: usize| -> bool {
            let other = self.name(j);
            if i == RUST {
                rust_peers.contains(&other) && scope_peers.contains(&other)
            } else {
                beam_peers[i].contains(&other)
            }
        };
        let scope_lags = |i: usize, j: usize| -> bool {
            // The node is down but the scope still lists it (or the reverse).
            i == RUST && rust_peers.contains(&self.name(j)) != scope_peers.contains(&self.name(j))
        };
        LINKS.iter().enumerate().all(|(k, &(i, j))| {
            let up = self.up[k];
            sees(i, j) == up && sees(j, i) == up && !scope_lags(i, j) && !scope_lags(j, i)
        })
    }

    /// Polls until every node sees the links as the schedule left them and
    /// every node's view is `expected[i]`; the time it took, or a report of
    /// the difference after `limit`.
    pub async fn converge(&self, expected: &[View], limit: Duration) -> Result<Duration, String> {
        let t0 = Instant::now();
        loop {
            let views = self.views().await;
            if views.iter().zip(expected).all(|(v, e)| v == e) && self.links_settled().await {
                return Ok(t0.elapsed());
            }
            if t0.elapsed() > limit {
                let mut s = String::new();
                for (i, (v, e)) in views.iter().zip(expected).enumerate() {
                    if v != e {
                        s += &format!(
                            "node {i} ({}):\n  has      {v:?}\n  expected {e:?}\n",
                            self.name(i)
                        );
                    }
                }
                s += &self.connections().await;
                return Err(s);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}
