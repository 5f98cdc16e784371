//! Keeping the node in the cluster: the seeds are dialled until they
//! answer, they, the discovered nodes and every visible peer the node has
//! seen are redialled after a loss (capped exponential backoff with
//! jitter; hidden peers that dialled us, query clients mostly, are not,
//! nor other cpg-nodes heard of that closed their connection; one the
//! network lost is),
//! and the cluster's other nodes are learned from the seeds through `rex`
//! (`erlang:nodes()`), because a hidden node gets no nodeup for them.
//!
//! ```text
//!   seed / discovered / seen (a visible peer up) ──> Target { attempt, next_at }
//!        NodeEvent::Up    ──> attempt = 0, nothing scheduled
//!        NodeEvent::Down  ──> dial again after Backoff::delay(0)
//!        dial failed      ──> attempt += 1, dial again after delay(attempt)
//!        failing longer than `forget_after` and not a seed ──> forgotten
//! ```
//!
//! The policy is a pure state machine ([`Keeper`]: events and `now` in,
//! the nodes to dial out) so its rules are tested without sockets; one task
//! ([`Cluster::start`]) drives it.

use crate::config::{Backoff, NodeName};
use crate::node::{DownReason, Node, NodeEvent};
use crate::term::{self, Term};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{broadcast, mpsc};
use tokio::time::Instant;

/// Most dials under way at once of targets that are not seeds (found by
/// discovery, or peers seen). A seed's `erlang:nodes()` can list any names:
/// one that listed 30,000 made-up nodes had the keeper dial them all at
/// once, 20,000 file descriptors, and real peers refused. The rest wait
/// their turn; seeds are never held back.
pub const MAX_OTHER_DIALS: usize = 32;

/// Most nodes the keeper knows (seeds included): names listed past it are
/// not taken (a warning says so).
pub const MAX_TARGETS: usize = 4096;

/// A node-name pattern for [`ClusterOptions::only`]: `*` stands for any run
/// of characters (also none), `?` for one character, as in a shell glob.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodePattern(String);

impl NodePattern {
    /// A pattern from its text.
    pub fn new(pattern: impl Into<String>) -> Self {
        NodePattern(pattern.into())
    }

    /// Whether `name` matches. Iterative, linear in practice: the last `*`
    /// seen is the only point to backtrack to.
    pub fn matches(&self, name: &str) -> bool {
        let p: Vec<char> = self.0.chars().collect();
        let s: Vec<char> = name.chars().collect();
        let (mut pi, mut si) = (0, 0);
        let mut star: Option<(usize, usize)> = None;
        while si < s.len() {
            if pi < p.len() && (p[pi] == '?' || p[pi] == s[si]) {
                pi += 1;
                si += 1;
            } else if pi < p.len() && p[pi] == '*' {
                star = Some((pi, si));
                pi += 1;
            } else if let Some((sp, ss)) = star {
                pi = sp + 1;
                si = ss + 1;
                star = Some((sp, ss + 1));
            } else {
                return false;
            }
        }
        p[pi..].iter().all(|&c| c == '*')
    }
}

impl std::fmt::Display for NodePattern {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// How the node keeps its place in the cluster.
#[derive(Debug, Clone)]
pub struct ClusterOptions {
    /// Nodes to connect to, and to keep connecting to for as long as the
    /// node runs, however long they are away.
    pub seeds: Vec<String>,
    /// Learn the cluster's nodes from the seeds (`erlang:nodes()` through
    /// `rex`; from a cpg-node seed, the visible peers its status lists) and
    /// connect to them too; and connect to the nodes whose members a
    /// peer's cpg exchange or poll answer lists (a hidden node such as
    /// another cpg-node connected to the same BEAM nodes, whose members
    /// this node reads from that node alone).
    pub discover: bool,
    /// Discover every hidden node too (`erlang:nodes(connected)` instead
    /// of `erlang:nodes()`; a seed that is itself a cpg-node, with no
    /// `rex`, is asked for the peers its status lists, [`nodes_of`]),
    /// remote shells and `erl_call` nodes included, each redialled as a
    /// visible one. Off by default: `discover` alone finds the hidden
    /// nodes that are no `erl` (other cpg-node instances).
    pub discover_hidden: bool,
    /// Only discovered nodes whose name matches one of these are connected
    /// to (all when empty). Seeds, and peers that connect to us, are kept
    /// whatever their name.
    pub only: Vec<NodePattern>,
    /// How often to ask the seeds again: nodes that join the cluster later
    /// are found within this time.
    pub discover_interval: Duration,
    /// Waits between attempts to reach a lost peer that the network keeps
    /// from us (unreachable, reset, silent, timed out): [`NETWORK_BACKOFF`]
    /// by default, 100–200 ms first, doubling up to 2 s. A dial that fails
    /// at once (a reset, ICMP unreachable, a node not yet registered) is
    /// cheap, and a short cap has the node back soon after the fault
    /// ends: with 10 s, a host refused for 12 s was back 6 s after it
    /// healed.
    pub backoff: Backoff,
    /// Waits between attempts after the peer refused us
    /// ([`DownReason::is_refusal`]: a wrong cookie, `not_allowed`, names
    /// that cannot mix): [`Backoff::default`], up to 10 s. Only an operator
    /// mends that, and a BEAM peer logs an error at each attempt.
    pub refused_backoff: Backoff,
    /// A peer that is not a seed and has not been reached for this long is
    /// no longer dialled (it stopped for good, or was a short-lived client
    /// such as `cpg-node members`). Discovery finds it again if it returns,
    /// and a BEAM node dials us itself when it needs us.
    pub forget_after: Duration,
}

impl ClusterOptions {
    /// Seeds `seeds`, discovery every 10 s, [`NETWORK_BACKOFF`] (and the
    /// default backoff after a refusal), peers that are not seeds forgotten
    /// after a minute away.
    pub fn new(seeds: Vec<String>) -> Self {
        ClusterOptions {
            seeds,
            discover: true,
            discover_hidden: false,
            only: Vec::new(),
            discover_interval: Duration::from_secs(10),
            backoff: NETWORK_BACKOFF,
            refused_backoff: Backoff::default(),
            forget_after: Duration::from_secs(60),
        }
    }

    fn wanted(&self, discovered: &str) -> bool {
        self.only.is_empty() || self.only.iter().any(|p| p.matches(discovered))
    }
}

/// The default [`ClusterOptions::backoff`]: 100–200 ms for the first
/// retry, doubling up to 2 s.
pub const NETWORK_BACKOFF: Backoff = Backoff {
    initial: Duration::from_millis(200),
    max: Duration::from_secs(2),
};

/// A seed is asked for the cluster's nodes when it is reached, then again
/// this long after (as long as it stays connected), before the rounds of
/// `discover_interval`: nodes that start with us often join the cluster a
/// moment after we reached the seed (seen at the start of two netsplit
/// soaks, where a BEAM node that booted late was found 9 s later, at the
/// next round).
pub const SEED_ASKED_AGAIN: [Duration; 2] = [Duration::from_secs(1), Duration::from_secs(3)];

/// A seed that cannot be reached is warned of at its first failure in a
/// row, then at most this often (it is dialled every 1–2 s).
pub const SEED_WARN_EVERY: Duration = Duration::from_secs(60);

/// Dials of hidden nodes heard of ([`Keeper::heard_of`]) that may start a
/// second, after a burst of [`HEARD_BURST`].
pub const HEARD_PER_SECOND: f64 = 8.0;
/// See [`HEARD_PER_SECOND`].
pub const HEARD_BURST: f64 = 32.0;
/// A hidden node heard of whose dial failed is not dialled again on
/// hearing of it for this long.
pub const HEARD_RETRY_AFTER: Duration = Duration::from_secs(30);

/// At most this many hidden nodes a seed lists are looked up in EPMD a
/// round ([`foreign_nodes_of`]); the others wait for the next.
const MAX_FOREIGN_LOOKUPS: usize = 16;

/// Why a node is a target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// Given as a seed: dialled for as long as the node runs.
    Seed,
    /// Learned from the cluster: a seed's `erlang:nodes()`, or a peer's
    /// cpg view listing members of a node we were not connected to (a
    /// hidden node, such as another cpg-node).
    Discovered,
    /// A visible peer that was connected (it dialled us, mostly).
    Seen,
}

/// What the keeper knows of one node, as [`Cluster::targets`] shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetStatus {
    /// The node's name.
    pub node: String,
    /// Why it is kept.
    pub origin: Origin,
    /// Whether the connection is up.
    pub connected: bool,
    /// Failed attempts since it was last reached.
    pub failures: u32,
    /// When the next attempt is due, if one is scheduled.
    pub next_attempt_in: Option<Duration>,
    /// The last reason it went down or could not be reached.
    pub last_error: Option<String>,
}

#[derive(Debug)]
struct Target {
    origin: Origin,
    connected: bool,
    /// It has been connected: a node that exists, dialled before the
    /// names a seed listed that never answered.
    was_up: bool,
    /// Dialled while the cluster lists it, not redialled once lost (a
    /// hidden node a seed or a cpg view listed: [`Keeper::heard_of`]);
    /// cleared when it is up as a visible node or a seed's round lists it.
    once: bool,
    dialling: bool,
    attempt: u32,
    next_at: Option<Instant>,
    failing_since: Option<Instant>,
    /// When a failure to reach this seed was last warned of, while it
    /// keeps failing.
    warned_at: Option<Instant>,
    last_error: Option<String>,
}

impl Target {
    fn new(origin: Origin) -> Self {
        Target {
            origin,
            connected: false,
            was_up: false,
            once: false,
            dialling: false,
            attempt: 0,
            next_at: None,
            failing_since: None,
            warned_at: None,
            last_error: None,
        }
    }

    /// Whether a failure to reach it is worth a warning at `now`: the first
    /// in a row, then one a [`SEED_WARN_EVERY`]. If so, it counts as
    /// warned of.
    fn warn_due(&mut self, now: Instant) -> bool {
        if self
            .warned_at
            .is_some_and(|w| now.duration_since(w) < SEED_WARN_EVERY)
        {
            return false;
        }
        self.warned_at = Some(now);
        true
    }

    /// When its next dial is due: a time when it is neither connected nor
    /// being dialled and a dial is scheduled.
    fn waiting(&self) -> Option<Instant> {
        self.next_at.filter(|_| !self.connected && !self.dialling)
    }
}

/// The reconnection policy as a pure state machine: it is told what
/// happened and when, and answers which nodes to dial now and when to ask
/// again. [`Cluster`] drives it with the node's events.
#[derive(Debug)]
pub struct Keeper {
    me: String,
    opts: ClusterOptions,
    targets: HashMap<String, Target>,
    /// Hidden nodes heard of ([`Keeper::heard_of`]) whose dial failed, and
    /// when: not dialled again on hearing of them for [`HEARD_RETRY_AFTER`].
    heard_failed: HashMap<String, Instant>,
    /// Dials of hidden nodes heard of that may start now (refilled at
    /// [`HEARD_PER_SECOND`] up to [`HEARD_BURST`]), and when last refilled.
    heard_budget: (f64, Instant),
}

impl Keeper {
    /// A keeper for node `me` whose seeds are all due at `now`.
    pub fn new(me: &str, opts: ClusterOptions, now: Instant) -> Self {
        let mut k = Keeper {
            me: me.to_string(),
            targets: HashMap::new(),
            opts,
            heard_failed: HashMap::new(),
            heard_budget: (HEARD_BURST, now),
        };
        for s in k.opts.seeds.clone() {
            if s != k.me {
                let mut t = Target::new(Origin::Seed);
                t.next_at = Some(now);
                k.targets.insert(s, t);
            }
        }
        k
    }

    /// Whether `node` is a target.
    pub fn knows(&self, node: &str) -> bool {
        self.targets.contains_key(node)
    }

    /// Whether `node` is a seed.
    pub fn is_seed(&self, node: &str) -> bool {
        self.targets
            .get(node)
            .is_some_and(|t| t.origin == Origin::Seed)
    }

    /// A connection to `node` is up: a node not yet a target becomes one
    /// ([`Origin::Seen`]), so the caller reports only targets and visible
    /// peers. This node's own name is never a target.
    ///
    /// A node heard of ([`Keeper::heard_of`]) that is up as a visible node
    /// (`hidden` false) is a BEAM node of the cluster, kept as any visible
    /// peer is: redialled once lost. A cpg view lists the members of
    /// visible nodes too, and often before a seed's `erlang:nodes()` does;
    /// when a netsplit then cut that node from us and from the seed alike,
    /// no seed listed it again and it was never redialled.
    pub fn up(&mut self, node: &str, hidden: bool) {
        if node == self.me {
            return;
        }
        let t = self
            .targets
            .entry(node.to_string())
            .or_insert_with(|| Target::new(Origin::Seen));
        t.once &= hidden;
        t.connected = true;
        t.was_up = true;
        t.attempt = 0;
        t.next_at = None;
        t.failing_since = None;
        t.warned_at = None;
    }

    /// The connection to `node` went down (or a dial we did not start
    /// failed): dial again soon if it is a target (a seed, a discovered
    /// node, or a visible peer [`Keeper::up`] took). Any other node (a
    /// hidden peer that dialled us, such as a `cpg-node status` client, or
    /// our own name) is left alone. `jitter` in `[0, 1)`.
    pub fn down(&mut self, node: &str, why: &str, now: Instant, jitter: f64) {
        let backoff = self.opts.backoff;
        let Some(t) = self.targets.get_mut(node) else {
            return;
        };
        if t.once && !t.dialling {
            self.targets.remove(node);
            return;
        }
        let was_up = std::mem::replace(&mut t.connected, false);
        t.last_error = Some(why.to_string());
        if t.dialling {
            return; // our own attempt reports its result itself
        }
        if was_up {
            t.attempt = 0;
        }
        t.failing_since.get_or_insert(now);
        if t.next_at.is_none() {
            t.next_at = Some(now + backoff.delay(t.attempt, jitter));
            t.attempt = t.attempt.saturating_add(1);
        }
    }

    /// The network lost the connection to `node` (it went silent, or the
    /// socket failed: [`DownReason::is_network_loss`]): as
    /// [`Keeper::down`], but a hidden node heard of is redialled too, as a
    /// discovered node is (forgotten after `forget_after` away). A peer
    /// that leaves closes its connection; one lost this way is behind a
    /// netsplit or a frozen host, and another cpg-node cut from us that
    /// way came back only when the next round of discovery listed it
    /// (up to `discover_interval`, 10 s by default), its members missing
    /// from our view meanwhile, though every BEAM view held them.
    pub fn lost(&mut self, node: &str, why: &str, now: Instant, jitter: f64) {
        if let Some(t) = self.targets.get_mut(node).filter(|t| t.connected) {
            t.once = false;
        }
        self.down(node, why, now, jitter);
    }

    /// The nodes due for a dial at `now`; each is marked as being dialled
    /// until [`Keeper::dialled`] reports the outcome.
    pub fn due(&mut self, now: Instant) -> Vec<String> {
        let mut v = Vec::new();
        let mut others = self.others_dialling();
        // (Seeds first, then nodes that have been up, then the rest, each
        // by name: which ones the bound lets through does not depend on
        // the table's order, and names a seed listed that never answered
        // do not hold back the redial of a node that was there.)
        let mut due: Vec<(&String, &mut Target)> = self
            .targets
            .iter_mut()
            .filter(|(_, t)| t.waiting().is_some_and(|at| at <= now))
            .collect();
        let rank = |t: &Target| (t.origin != Origin::Seed, !t.was_up);
        due.sort_by(|a, b| (rank(a.1), a.0).cmp(&(rank(b.1), b.0)));
        for (n, t) in due {
            if t.origin != Origin::Seed {
                if others >= MAX_OTHER_DIALS {
                    continue;
                }
                others += 1;
            }
            t.dialling = true;
            t.next_at = None;
            v.push(n.clone());
        }
        v.sort();
        v
    }

    /// The outcome of a dial started by [`Keeper::due`]. A node that is not
    /// a seed and has failed for longer than `forget_after` is dropped
    /// (returns `true` then).
    pub fn dialled(
        &mut self,
        node: &str,
        result: Result<(), DownReason>,
        now: Instant,
        jitter: f64,
    ) -> bool {
        let backoff = match &result {
            Err(e) if e.is_refusal() => self.opts.refused_backoff,
            _ => self.opts.backoff,
        };
        let forget_after = self.opts.forget_after;
        let Some(t) = self.targets.get_mut(node) else {
            return false;
        };
        if let Err(e) = &result {
            // A seed's first failure in a row, then one a minute, is worth
            // a warning; other peers come and go.
            if t.origin == Origin::Seed && t.warn_due(now) {
                tracing::warn!(peer = %node, "cannot reach seed {node}: {e}; retrying");
            } else {
                tracing::debug!(peer = %node, "cannot reach it yet: {e}");
            }
        }
        t.dialling = false;
        if t.once && result.is_err() {
            self.targets.remove(node);
            if self.heard_failed.len() >= MAX_TARGETS {
                self.heard_failed
                    .retain(|_, at| now.duration_since(*at) < HEARD_RETRY_AFTER);
            }
            if self.heard_failed.len() < MAX_TARGETS {
                self.heard_failed.insert(node.to_string(), now);
            }
            return false;
        }
        match result {
            Ok(()) => {
                t.connected = true;
                t.attempt = 0;
                t.failing_since = None;
                t.warned_at = None;
                false
            }
            Err(e) => {
                t.last_error = Some(e.to_string());
                let since = *t.failing_since.get_or_insert(now);
                if t.origin != Origin::Seed && now.duration_since(since) >= forget_after {
                    self.targets.remove(node);
                    return true;
                }
                if !t.connected {
                    t.next_at = Some(now + backoff.delay(t.attempt, jitter));
                    t.attempt = t.attempt.saturating_add(1);
                }
                false
            }
        }
    }

    /// Nodes a seed listed: the wanted ones not yet known become targets,
    /// due at once. One already heard of ([`Keeper::heard_of`]) is now kept
    /// as any discovered node is, redialled once lost.
    pub fn discovered(&mut self, nodes: &[String], now: Instant) {
        for n in nodes {
            if let Some(t) = self.targets.get_mut(n) {
                t.once = false;
                continue;
            }
            if *n == self.me || !self.opts.wanted(n) {
                continue;
            }
            if self.targets.len() >= MAX_TARGETS {
                tracing::warn!(
                    "the cluster lists more than {MAX_TARGETS} nodes: {n} and the rest of this list are not dialled"
                );
                return;
            }
            let mut t = Target::new(Origin::Discovered);
            t.next_at = Some(now);
            self.targets.insert(n.clone(), t);
        }
    }

    /// Hidden nodes the cluster lists (another cpg-node, whose members a
    /// peer's cpg view lists or that a seed is connected to): the wanted
    /// ones not yet known become targets, due at once, that are not
    /// redialled once lost or failed. They are found again by the next
    /// view or round of discovery that lists them, so a node that left
    /// for good is not dialled for a minute after (a `cpg-node status`
    /// client that a seed listed, mostly). One that is up as a visible
    /// node ([`Keeper::up`]), or that a seed's round lists
    /// ([`Keeper::discovered`]), is kept as any other target.
    ///
    /// A peer may list pids of any number of made-up nodes, exchange after
    /// exchange: at most [`HEARD_PER_SECOND`] such dials start a second
    /// (bursts of [`HEARD_BURST`]), and a name whose dial failed is not
    /// dialled again on hearing of it for [`HEARD_RETRY_AFTER`] (a member
    /// of a gone node left in a BEAM view is listed at every poll). The
    /// names left out are told again by the next view or round.
    pub fn heard_of(&mut self, nodes: &[String], now: Instant) {
        let (tokens, at) = self.heard_budget;
        let mut tokens =
            (tokens + now.duration_since(at).as_secs_f64() * HEARD_PER_SECOND).min(HEARD_BURST);
        for n in nodes {
            if self.targets.contains_key(n) {
                continue;
            }
            if let Some(failed) = self.heard_failed.get(n) {
                if now.duration_since(*failed) < HEARD_RETRY_AFTER {
                    continue;
                }
                self.heard_failed.remove(n);
            }
            if tokens < 1.0 {
                tracing::debug!(peer = %n, "heard of too many nodes at once: left to the next round");
                break;
            }
            self.discovered(std::slice::from_ref(n), now);
            if let Some(t) = self.targets.get_mut(n) {
                t.once = true;
                tokens -= 1.0;
            }
        }
        self.heard_budget = (tokens, now);
    }

    /// The connected nodes to ask for the cluster's members: the connected
    /// seeds, or when none is up, every connected target.
    pub fn to_ask(&self) -> Vec<String> {
        let connected = |o: Option<Origin>| {
            let mut v: Vec<String> = self
                .targets
                .iter()
                .filter(|(_, t)| t.connected && o.is_none_or(|o| t.origin == o))
                .map(|(n, _)| n.clone())
                .collect();
            v.sort();
            v
        };
        let seeds = connected(Some(Origin::Seed));
        if seeds.is_empty() {
            connected(None)
        } else {
            seeds
        }
    }

    /// When the next dial is due, if any.
    pub fn next_wake(&self) -> Option<Instant> {
        // (Targets held back by the bound wait for a dial to end, which
        // wakes the keeper: not a wake-up in the past, which would spin.)
        let held = self.others_dialling() >= MAX_OTHER_DIALS;
        self.targets
            .values()
            .filter(|t| !held || t.origin == Origin::Seed)
            .filter_map(Target::waiting)
            .min()
    }

    /// Dials under way of targets that are not seeds.
    fn others_dialling(&self) -> usize {
        self.targets
            .values()
            .filter(|t| t.dialling && t.origin != Origin::Seed)
            .count()
    }

    /// What the keeper knows, sorted by node name.
    pub fn status(&self, now: Instant) -> Vec<TargetStatus> {
        let mut v: Vec<TargetStatus> = self
            .targets
            .iter()
            .map(|(n, t)| TargetStatus {
                node: n.clone(),
                origin: t.origin,
                connected: t.connected,
                failures: t.attempt,
                next_attempt_in: t.next_at.map(|at| at.saturating_duration_since(now)),
                last_error: t.last_error.clone(),
            })
            .collect();
        v.sort_by(|a, b| a.node.cmp(&b.node));
        v
    }
}

/// The running keeper of the node's connections. Dropping it stops the
/// redialling; connections that are up stay up.
#[derive(Debug)]
pub struct Cluster {
    keeper: Arc<parking_lot::Mutex<Keeper>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.task.abort();
    }
}

enum Report {
    Dialled(String, Result<(), DownReason>),
    Nodes(Vec<String>),
    /// Hidden nodes that are no `erl` ([`foreign_nodes_of`]).
    Hidden(Vec<String>),
}

impl Cluster {
    /// Starts keeping `node` connected as `opts` says. The seeds are
    /// dialled at once; this returns without waiting for them.
    pub fn start(node: &Node, opts: ClusterOptions) -> Cluster {
        let discover = opts.discover;
        let hidden = opts.discover_hidden;
        let interval = opts.discover_interval.max(Duration::from_millis(100));
        let keeper = Arc::new(parking_lot::Mutex::new(Keeper::new(
            node.name(),
            opts,
            Instant::now(),
        )));
        let events = node.subscribe();
        {
            // The visible peers already up, as `drive` takes them later.
            let mut k = keeper.lock();
            for p in node.peers() {
                if node.is_hidden_peer(&p) == Some(false) {
                    k.up(&p, false);
                }
            }
        }
        let task = tokio::spawn(drive(
            node.clone(),
            keeper.clone(),
            events,
            discover.then_some(hidden),
            interval,
        ));
        Cluster { keeper, task }
    }

    /// What the keeper knows of each node it keeps, sorted by name.
    pub fn targets(&self) -> Vec<TargetStatus> {
        self.keeper.lock().status(Instant::now())
    }

    /// A handle that reads [`Cluster::targets`] without keeping the keeper
    /// alive (for a status service).
    pub fn view(&self) -> ClusterView {
        ClusterView(Arc::downgrade(&self.keeper))
    }
}

/// Reads what a [`Cluster`] knows, for as long as it runs ([`Cluster::view`]).
#[derive(Debug, Clone)]
pub struct ClusterView(std::sync::Weak<parking_lot::Mutex<Keeper>>);

impl ClusterView {
    /// [`Cluster::targets`]; `None` once the cluster is dropped.
    pub fn targets(&self) -> Option<Vec<TargetStatus>> {
        self.0.upgrade().map(|k| k.lock().status(Instant::now()))
    }
}

async fn drive(
    node: Node,
    keeper: Arc<parking_lot::Mutex<Keeper>>,
    mut events: broadcast::Receiver<NodeEvent>,
    // Some(hidden too) when discovering.
    discover: Option<bool>,
    interval: Duration,
) {
    let (tx, mut rx) = mpsc::unbounded_channel::<Report>();
    // Nodes whose members a peer's cpg view lists and that we are not
    // connected to: dialled as discovered nodes (`Node::heard_of`).
    let mut sightings = discover.map(|_| node.sightings());
    let mut ask = tokio::time::interval(interval);
    ask.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let now = Instant::now();
        for n in keeper.lock().due(now) {
            tracing::debug!(peer = %n, "dialling");
            let (node, tx) = (node.clone(), tx.clone());
            tokio::spawn(async move {
                let r = node.connect(&n).await;
                let _ = tx.send(Report::Dialled(n, r));
            });
        }
        let wake = keeper.lock().next_wake();
        let sleep = async {
            match wake {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            e = events.recv() => match e {
                Ok(NodeEvent::Up { node: n, hidden }) => {
                    // A hidden node that dialled us (a `cpg-node status` or
                    // `members` client, mostly) is not redialled when it
                    // goes: it comes and goes as it likes. (Told by the
                    // event: a connection that already ended is no longer
                    // there to ask.)
                    let mut k = keeper.lock();
                    if k.knows(&n) || !hidden {
                        k.up(&n, hidden);
                    }
                    // A seed is asked at once, not at the next round: a
                    // node that starts (or comes back) finds the cluster
                    // as soon as it reaches a seed. And again shortly
                    // after (SEED_ASKED_AGAIN): nodes that start with us
                    // often reach the seed a moment after we did, and a
                    // hidden node is told of no nodeup.
                    if let Some(hidden) = discover.filter(|_| k.is_seed(&n)) {
                        drop(k);
                        ask_seed(&node, &tx, &keeper, n.clone(), hidden);
                        ask_seed_again(&node, &tx, &keeper, n, hidden);
                    }
                }
                Ok(NodeEvent::Down { node: n, reason }) => {
                    let mut k = keeper.lock();
                    let (why, now, jitter) = (reason.to_string(), Instant::now(), rand::random());
                    if reason.is_network_loss() {
                        k.lost(&n, &why, now, jitter);
                    } else {
                        k.down(&n, &why, now, jitter);
                    }
                }
                Err(broadcast::error::RecvError::Lagged(_)) => {
                    let peers = node.peers();
                    let mut k = keeper.lock();
                    let known: Vec<String> = k.status(Instant::now()).into_iter().map(|t| t.node).collect();
                    for n in known {
                        if peers.contains(&n) {
                            k.up(&n, node.is_hidden_peer(&n) != Some(false));
                        } else {
                            k.down(&n, "missed events", Instant::now(), rand::random());
                        }
                    }
                }
                Err(broadcast::error::RecvError::Closed) => return,
            },
            Some(r) = rx.recv() => match r {
                Report::Dialled(n, result) => {
                    if keeper.lock().dialled(&n, result, Instant::now(), rand::random()) {
                        tracing::info!(peer = %n, "not reached for a long time: no longer dialled");
                    }
                }
                Report::Nodes(nodes) => keeper.lock().discovered(&nodes, Instant::now()),
                Report::Hidden(nodes) => keeper.lock().heard_of(&nodes, Instant::now()),
            },
            heard = recv_sighting(&mut sightings) => match heard {
                Ok(n) => keeper.lock().heard_of(&[n], Instant::now()),
                Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(broadcast::error::RecvError::Closed) => sightings = None,
            },
            _ = ask.tick(), if discover.is_some() => {
                let hidden = discover == Some(true);
                let seeds = keeper.lock().to_ask();
                for seed in seeds {
                    ask_seed(&node, &tx, &keeper, seed, hidden);
                }
            }
            _ = sleep => {}
        }
    }
}

/// Asks `seed` for the nodes it is connected to ([`nodes_of`]; unless
/// `hidden`, also the hidden ones that are no `erl`, [`foreign_nodes_of`]),
/// reported to the keeper's loop.
fn ask_seed(
    node: &Node,
    tx: &mpsc::UnboundedSender<Report>,
    keeper: &Arc<parking_lot::Mutex<Keeper>>,
    seed: String,
    hidden: bool,
) {
    let (node, tx, keeper) = (node.clone(), tx.clone(), keeper.clone());
    tokio::spawn(async move {
        if let Some(nodes) = nodes_of(&node, &seed, hidden).await {
            let _ = tx.send(Report::Nodes(nodes));
        }
        if !hidden {
            let nodes = foreign_nodes_of(&node, &seed, &keeper).await;
            if !nodes.is_empty() {
                let _ = tx.send(Report::Hidden(nodes));
            }
        }
    });
}

/// [`ask_seed`] again at each of [`SEED_ASKED_AGAIN`] after now, while
/// `seed` stays connected (once it is lost, it is asked again when it is
/// back).
fn ask_seed_again(
    node: &Node,
    tx: &mpsc::UnboundedSender<Report>,
    keeper: &Arc<parking_lot::Mutex<Keeper>>,
    seed: String,
    hidden: bool,
) {
    let (node, tx, keeper) = (node.clone(), tx.clone(), keeper.clone());
    tokio::spawn(async move {
        let start = tokio::time::Instant::now();
        for at in SEED_ASKED_AGAIN {
            tokio::time::sleep_until(start + at).await;
            if !node.peers().contains(&seed) {
                return;
            }
            ask_seed(&node, &tx, &keeper, seed.clone(), hidden);
        }
    });
}

/// The hidden nodes `peer` is connected to that are no Erlang runtime
/// (cpg-node instances, C nodes), as their hosts' EPMD tells: `erl`
/// registers as a normal node (type 77) even when hidden, a cpg-node as a
/// hidden one (72). A hidden cpg-node connected to the same BEAM nodes
/// holds members that reach this node only over a connection of their
/// own, and a BEAM scope at `all` relays nothing of them: where neither
/// node held members when the other connected, no cpg view listed them
/// ([`Node::heard_of`]) and they never met. Hidden nodes that are
/// `erl` (remote shells, `erl_call`, observers) are left alone, and so
/// are all where the node uses no EPMD (`NodeConfig::static_port`: none
/// to ask). Names the keeper knows, and of the other kind, are not looked
/// up; at most [`MAX_FOREIGN_LOOKUPS`] a round.
async fn foreign_nodes_of(
    node: &Node,
    peer: &str,
    keeper: &parking_lot::Mutex<Keeper>,
) -> Vec<String> {
    if node.config().static_port.is_some() {
        return Vec::new();
    }
    let Some(names) = listed_nodes(node, peer, Listed::Hidden).await else {
        return Vec::new();
    };
    let unknown: Vec<String> = {
        let k = keeper.lock();
        names
            .into_iter()
            .filter(|n| !k.knows(n) && k.opts.wanted(n))
            .collect()
    };
    let candidates: Vec<NodeName> = unknown
        .iter()
        .filter_map(|n| node.could_dial(n))
        .take(MAX_FOREIGN_LOOKUPS)
        .collect();
    let port = node.config().epmd_port;
    let mut foreign = Vec::new();
    for n in candidates {
        let lookup = crate::epmd::port_please(n.host(), port, n.alive());
        if let Ok(Ok(Some(e))) = tokio::time::timeout(Duration::from_secs(2), lookup).await {
            if e.node_type == crate::epmd::wire::NODE_TYPE_HIDDEN {
                foreign.push(n.to_string());
            }
        }
    }
    foreign
}

/// The next name [`Node::heard_of`] told of; never, where not listened to.
async fn recv_sighting(
    sightings: &mut Option<broadcast::Receiver<String>>,
) -> Result<String, broadcast::error::RecvError> {
    match sightings {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

/// The nodes `peer` is connected to, as it tells them: `erlang:nodes()` (or
/// `erlang:nodes(connected)` when `hidden`) through its `rex`; a peer
/// without `rex` (another cpg-node) is asked instead for the peers its
/// status lists ([`crate::status::NodeStatus::ask`]), its hidden ones only
/// when `hidden`. `None` where the peer answers neither.
pub async fn nodes_of(node: &Node, peer: &str, hidden: bool) -> Option<Vec<String>> {
    let which = if hidden {
        Listed::Connected
    } else {
        Listed::Visible
    };
    listed_nodes(node, peer, which).await
}

/// Which of a peer's nodes [`listed_nodes`] asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Listed {
    /// `erlang:nodes()`.
    Visible,
    /// `erlang:nodes(connected)`.
    Connected,
    /// `erlang:nodes(hidden)`.
    Hidden,
}

/// The nodes `peer` is connected to, of the kind `which` says, through its
/// `rex`, or from a peer without `rex` (another cpg-node) the peers its
/// status lists ([`crate::status::NodeStatus::ask`]). `None` where the
/// peer answers neither.
async fn listed_nodes(node: &Node, peer: &str, which: Listed) -> Option<Vec<String>> {
    let args = match which {
        Listed::Visible => vec![],
        Listed::Connected => vec![term::atom("connected")],
        Listed::Hidden => vec![term::atom("hidden")],
    };
    let got = node
        .rpc(peer, "erlang", "nodes", args, Duration::from_secs(5))
        .await;
    match got {
        Ok(Term::List(l)) => Some(
            l.elements
                .iter()
                .filter_map(|t| term::as_atom(t).map(String::from))
                .collect(),
        ),
        Err(crate::process::CallError::Down(r)) if term::as_atom(&r) == Some("noproc") => {
            let st = crate::status::NodeStatus::ask(node, peer, Duration::from_secs(5))
                .await
                .ok()?;
            Some(
                st.peers
                    .into_iter()
                    .filter(|p| match which {
                        Listed::Visible => !p.hidden,
                        Listed::Connected => true,
                        Listed::Hidden => p.hidden,
                    })
                    .map(|p| p.node)
                    .collect(),
            )
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A dial that failed for `why`, as a network failure.
    fn unreachable(why: &str) -> DownReason {
        DownReason::Unreachable(why.to_string())
    }

    fn opts(seeds: &[&str]) -> ClusterOptions {
        ClusterOptions::new(seeds.iter().map(|s| s.to_string()).collect())
    }

    #[test]
    fn patterns() {
        let p = NodePattern::new("app*@h?st");
        assert!(p.matches("app@host"));
        assert!(p.matches("app_42@hast"));
        assert!(!p.matches("app@hst"));
        assert!(!p.matches("web@host"));
        assert!(NodePattern::new("*").matches(""));
        assert!(NodePattern::new("a*b*c").matches("axxbyybzc"));
        assert!(!NodePattern::new("a*b*c").matches("axxbyy"));
        assert!(NodePattern::new("").matches(""));
        assert!(!NodePattern::new("").matches("a"));
    }

    /// The waits of a seed that fails `why` at each of 12 dials, each
    /// dialled as soon as due.
    fn waits_of_a_seed_failing(why: DownReason) -> Vec<Duration> {
        let t0 = Instant::now();
        let mut k = Keeper::new("me@h", opts(&["s@h", "me@h"]), t0);
        assert_eq!(k.due(t0), vec!["s@h"]);
        assert!(k.due(t0).is_empty(), "not dialled twice at once");
        let mut now = t0;
        let mut waits = Vec::new();
        for _ in 0..12 {
            assert!(!k.dialled("s@h", Err(why.clone()), now, 1.0));
            let at = k.next_wake().unwrap();
            waits.push(at - now);
            now = at;
            assert_eq!(k.due(now), vec!["s@h"]);
        }
        now += Duration::from_secs(3600);
        assert!(
            !k.dialled("s@h", Err(why), now, 0.0),
            "a seed is never forgotten"
        );
        waits
    }

    #[test]
    fn seeds_are_due_at_once_and_retried_with_growing_waits_forever() {
        // The network keeps it from us: soon back once the fault ends.
        let waits = waits_of_a_seed_failing(unreachable("refused"));
        assert_eq!(waits[0], Duration::from_millis(200));
        assert_eq!(waits[1], Duration::from_millis(400));
        assert_eq!(waits[4], Duration::from_secs(2));
        assert_eq!(*waits.last().unwrap(), Duration::from_secs(2));
        // It refuses us (a wrong cookie): only an operator mends that.
        let refused =
            DownReason::WrongCookie(crate::dist::handshake::HandshakeError::CookieMismatch);
        let waits = waits_of_a_seed_failing(refused);
        assert_eq!(waits[0], Duration::from_millis(200));
        assert_eq!(*waits.last().unwrap(), Duration::from_secs(10));
    }

    #[test]
    fn an_unreachable_seed_is_warned_of_at_once_then_once_a_minute() {
        let t0 = Instant::now();
        let mut k = Keeper::new("me@h", opts(&["s@h"]), t0);
        assert_eq!(k.due(t0), vec!["s@h"]);
        k.dialled("s@h", Err(unreachable("econnrefused")), t0, 0.0);
        let due_at = |k: &mut Keeper, secs| {
            let t = k.targets.get_mut("s@h").unwrap();
            t.warn_due(t0 + Duration::from_secs(secs))
        };
        // The dial's failure was warned of: not again within the minute.
        assert!(!due_at(&mut k, 30));
        assert!(due_at(&mut k, 61));
        assert!(!due_at(&mut k, 62));
        // Up again (it dialled us): its next failure starts a new run.
        k.up("s@h", false);
        assert!(due_at(&mut k, 63));
    }

    #[test]
    fn refusals_are_told_apart_from_network_faults() {
        use crate::dist::handshake::{HandshakeError, Status};
        assert!(DownReason::WrongCookie(HandshakeError::CookieMismatch).is_refusal());
        assert!(DownReason::Refused(Status::NotAllowed).is_refusal());
        assert!(DownReason::MixedNames("short and long".into()).is_refusal());
        assert!(!DownReason::Refused(Status::Nok).is_refusal());
        assert!(!unreachable("econnrefused").is_refusal());
        assert!(!DownReason::HandshakeTimeout.is_refusal());
    }

    #[test]
    fn a_lost_peer_is_redialled_well_under_a_second_and_up_cancels_it() {
        let t0 = Instant::now();
        let mut k = Keeper::new("me@h", opts(&[]), t0);
        k.up("p@h", false);
        assert!(k.due(t0).is_empty());
        k.down("p@h", "tick timeout", t0, 0.5);
        let at = k.next_wake().unwrap();
        assert!(at - t0 < Duration::from_millis(250));
        k.up("p@h", false); // it dialled us first
        assert_eq!(k.next_wake(), None);
        assert!(k.due(at).is_empty());
    }

    /// A seed that lists thousands of nodes: at most `MAX_OTHER_DIALS` of
    /// them are dialled at once, the next once one ends; a seed is never
    /// held back, the keeper does not spin while the rest wait, and it
    /// keeps at most `MAX_TARGETS` nodes.
    #[test]
    fn discovered_dials_are_bounded_and_seeds_are_not_held_back() {
        let t0 = Instant::now();
        let mut k = Keeper::new("me@h", opts(&["s@h"]), t0);
        assert_eq!(k.due(t0), vec!["s@h"]);
        k.dialled("s@h", Ok(()), t0, 0.0);
        let listed: Vec<String> = (0..MAX_TARGETS + 100).map(|i| format!("n{i}@h")).collect();
        k.discovered(&listed, t0);
        assert_eq!(k.status(t0).len(), MAX_TARGETS);
        let first = k.due(t0);
        assert_eq!(first.len(), MAX_OTHER_DIALS);
        assert!(k.due(t0).is_empty());
        // the rest wait for a dial to end, not for a time already past
        assert_eq!(k.next_wake(), None);
        // the seed lost meanwhile is redialled whatever the bound
        k.down("s@h", "closed", t0, 0.0);
        let later = k.next_wake().unwrap();
        assert_eq!(k.due(later), vec!["s@h"]);
        k.dialled(&first[0], Err(unreachable("unreachable")), t0, 0.0);
        assert_eq!(k.due(later).len(), 1);
        // A node that was up goes before every listed name that never
        // answered, whatever its name.
        k.up("zz@h", false);
        k.down("zz@h", "closed", later, 0.0);
        k.dialled(&first[1], Err(unreachable("unreachable")), later, 0.0);
        assert_eq!(k.due(later + Duration::from_secs(5)), vec!["zz@h"]);
    }

    #[test]
    fn our_own_name_is_never_a_target() {
        let t0 = Instant::now();
        let mut k = Keeper::new("me@h", opts(&["me@h"]), t0);
        k.up("me@h", false);
        k.down("me@h", "closed", t0, 0.0);
        k.discovered(&["me@h".into()], t0);
        assert!(k.status(t0).is_empty());
        assert!(k.due(t0 + Duration::from_secs(1)).is_empty());
    }

    #[test]
    fn only_targets_are_redialled() {
        // A hidden peer that dialled us (never reported up) went down, or a
        // dial someone else made of an unknown node failed: not a target.
        let t0 = Instant::now();
        let mut k = Keeper::new("me@h", opts(&["s@h"]), t0);
        assert_eq!(k.due(t0), vec!["s@h"]);
        k.dialled("s@h", Ok(()), t0, 0.0);
        for i in 0..300 {
            k.down(&format!("hidden{i}@h"), "closed", t0, 0.0);
        }
        assert_eq!(k.next_wake(), None);
        assert!(k.due(t0 + Duration::from_secs(10)).is_empty());
        let known: Vec<String> = k.status(t0).into_iter().map(|t| t.node).collect();
        assert_eq!(known, vec!["s@h"]);
        // A visible peer (reported up) is redialled when lost.
        k.up("visible@h", false);
        k.down("visible@h", "closed", t0, 0.0);
        assert_eq!(k.due(t0 + Duration::from_secs(1)), vec!["visible@h"]);
    }

    #[test]
    fn a_down_while_we_dial_is_left_to_the_dial_result() {
        let t0 = Instant::now();
        let mut k = Keeper::new("me@h", opts(&["s@h"]), t0);
        assert_eq!(k.due(t0), vec!["s@h"]);
        k.down("s@h", "not registered", t0, 0.0);
        assert_eq!(k.next_wake(), None);
        k.dialled("s@h", Err(unreachable("not registered")), t0, 0.0);
        assert_eq!(k.next_wake(), Some(t0 + Duration::from_millis(100)));
    }

    #[test]
    fn peers_that_are_not_seeds_are_forgotten_after_a_long_absence() {
        let t0 = Instant::now();
        let mut k = Keeper::new("me@h", opts(&[]), t0);
        k.up("client@h", false);
        k.down("client@h", "closed", t0, 0.0);
        let now = loop {
            let now = k.next_wake().unwrap();
            assert_eq!(k.due(now), vec!["client@h"]);
            if k.dialled("client@h", Err(unreachable("not registered")), now, 0.0) {
                break now;
            }
        };
        assert!(now - t0 >= Duration::from_secs(60));
        assert!(now - t0 < Duration::from_secs(80));
        assert!(k.status(now).is_empty());
    }

    #[test]
    fn hidden_nodes_heard_of_are_dialled_while_listed_and_not_redialled() {
        let t0 = Instant::now();
        let mut o = opts(&["s@h"]);
        o.only = vec![NodePattern::new("app*"), NodePattern::new("s@h")];
        let mut k = Keeper::new("me@h", o, t0);
        k.heard_of(&["s@h".into(), "app_a@h".into(), "web@h".into()], t0);
        assert_eq!(k.due(t0), vec!["app_a@h", "s@h"]);
        // Up, then lost: gone from the targets, not redialled.
        k.dialled("app_a@h", Ok(()), t0, 0.0);
        k.down("app_a@h", "closed", t0, 0.0);
        assert!(!k.knows("app_a@h"));
        assert!(k.due(t0 + Duration::from_secs(60)).is_empty());
        // Listed again: dialled again; a failed dial forgets it too.
        k.heard_of(&["app_a@h".into()], t0);
        assert_eq!(k.due(t0), vec!["app_a@h"]);
        k.dialled("app_a@h", Err(unreachable("no such node")), t0, 0.0);
        assert!(!k.knows("app_a@h"));
        // The seed heard of stays a seed: redialled once lost.
        k.dialled("s@h", Ok(()), t0, 0.0);
        k.down("s@h", "closed", t0, 0.0);
        assert!(k.knows("s@h"));
        assert_eq!(k.due(t0 + Duration::from_secs(1)), vec!["s@h"]);
    }

    #[test]
    fn a_visible_node_heard_of_first_is_redialled_once_lost() {
        // A seed's cpg exchange lists b2's members before its
        // `erlang:nodes()` lists b2; b2 is up as a visible node. A
        // netsplit then cuts b2 from us and from the seed: no seed lists
        // it again, and it is redialled all the same.
        let t0 = Instant::now();
        let mut k = Keeper::new("me@h", opts(&["s@h"]), t0);
        k.heard_of(&["b2@h".into()], t0);
        assert_eq!(k.due(t0), vec!["b2@h", "s@h"]);
        k.dialled("b2@h", Ok(()), t0, 0.0);
        k.up("b2@h", false);
        k.down("b2@h", "net_tick_timeout", t0, 0.0);
        assert!(k.knows("b2@h"));
        assert_eq!(k.due(t0 + Duration::from_secs(1)), vec!["b2@h"]);
        // A hidden node heard of that a seed's round then lists is kept
        // too (a round of `discover_hidden`).
        k.heard_of(&["r2@h".into()], t0);
        assert_eq!(k.due(t0), vec!["r2@h"]);
        k.dialled("r2@h", Ok(()), t0, 0.0);
        k.up("r2@h", true);
        k.discovered(&["r2@h".into()], t0);
        k.down("r2@h", "closed", t0, 0.0);
        assert_eq!(k.due(t0 + Duration::from_secs(1)), vec!["r2@h"]);
    }

    #[test]
    fn a_hidden_node_heard_of_that_goes_silent_is_redialled() {
        // Another cpg-node heard of through a view, cut from us by a
        // netsplit (the tick timeout): redialled until forget_after.
        let t0 = Instant::now();
        let mut k = Keeper::new("me@h", opts(&[]), t0);
        k.heard_of(&["r2@h".into(), "r3@h".into()], t0);
        assert_eq!(k.due(t0), vec!["r2@h", "r3@h"]);
        for n in ["r2@h", "r3@h"] {
            k.dialled(n, Ok(()), t0, 0.0);
            k.up(n, true);
        }
        k.lost("r2@h", "net_tick_timeout", t0, 0.0);
        // One that closed its connection left: not redialled.
        k.down("r3@h", "connection closed by peer", t0, 0.0);
        assert!(!k.knows("r3@h"));
        let t1 = t0 + Duration::from_secs(1);
        assert_eq!(k.due(t1), vec!["r2@h"]);
        // Still cut: dialled again after each failure, then forgotten.
        assert!(!k.dialled("r2@h", Err(unreachable("timeout")), t1, 0.0));
        assert!(k.knows("r2@h"));
        let late = t1 + Duration::from_secs(61);
        assert_eq!(k.due(late), vec!["r2@h"]);
        assert!(k.dialled("r2@h", Err(unreachable("timeout")), late, 0.0));
        assert!(!k.knows("r2@h"));
        // A node heard of whose dial never got through is not taken by a
        // tick timeout reported for it (nothing was up to go silent).
        k.heard_of(&["r4@h".into()], late);
        assert_eq!(k.due(late), vec!["r4@h"]);
        k.lost("r4@h", "net_tick_timeout", late, 0.0);
        assert!(!k.dialled("r4@h", Err(unreachable("refused")), late, 0.0));
        assert!(!k.knows("r4@h"));
    }

    #[test]
    fn hidden_nodes_heard_of_are_dialled_at_a_bounded_rate() {
        let t0 = Instant::now();
        let mut k = Keeper::new("me@h", opts(&[]), t0);
        let names: Vec<String> = (0..100).map(|i| format!("f{i:03}@h")).collect();
        k.heard_of(&names, t0);
        let first = k.due(t0);
        assert_eq!(first.len(), HEARD_BURST as usize);
        for n in &first {
            k.dialled(n, Err(unreachable("no such node")), t0, 0.0);
        }
        // A second later, 8 more; those that failed are not taken again.
        let t1 = t0 + Duration::from_secs(1);
        k.heard_of(&names, t1);
        let second = k.due(t1);
        assert_eq!(second.len(), HEARD_PER_SECOND as usize);
        assert!(second.iter().all(|n| !first.contains(n)), "{second:?}");
        // After the retry wait, a failed name is dialled again.
        let t2 = t0 + HEARD_RETRY_AFTER;
        k.heard_of(&first[..1], t2);
        assert_eq!(k.due(t2), vec![first[0].clone()]);
    }

    #[test]
    fn discovery_adds_wanted_unknown_nodes_and_asks_connected_seeds() {
        let t0 = Instant::now();
        let mut o = opts(&["s@h"]);
        o.only = vec![NodePattern::new("app*")];
        let mut k = Keeper::new("me@h", o, t0);
        assert!(k.to_ask().is_empty());
        assert_eq!(k.due(t0), vec!["s@h"]);
        k.dialled("s@h", Ok(()), t0, 0.0);
        k.up("other_rust@h", true);
        assert_eq!(k.to_ask(), vec!["s@h"]);
        k.discovered(
            &["app1@h".into(), "web@h".into(), "me@h".into(), "s@h".into()],
            t0,
        );
        assert_eq!(k.due(t0), vec!["app1@h"]);
        k.down("s@h", "closed", t0, 0.0);
        assert_eq!(k.to_ask(), vec!["other_rust@h"]);
    }
}
