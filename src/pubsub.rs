//! Phoenix.PubSub (its default PG2 adapter, versions 2.0 to 2.2) over OTP
//! pg: a Rust process subscribes to a PubSub instance's topics, and
//! publishes to them. Every wire shape Phoenix uses is in this module.
//!
//! How Phoenix.PubSub 2.x puts a broadcast on the wire:
//! - every node runs the pg scope `'Elixir.Phoenix.PubSub'`;
//! - an instance named `MyApp.PubSub` has the adapter name
//!   `'Elixir.MyApp.PubSub.Adapter'` and a pool of N groups ([`groups`]):
//!   2.1.1+ names them `[Adapter, 'Adapter_2', ..., 'Adapter_N']` (so pool
//!   size 1 is 2.0's single group), 2.1.0 only `['Adapter_1', ...]`
//!   ([`Naming::V2_1_0`]); each node has one worker per group, a member of
//!   it;
//! - a broadcast picks ONE group and sends the plain message
//!   `{forward_to_local, Topic, Msg, Dispatcher}` ([`forward_to_local`];
//!   Topic a binary, Dispatcher a module atom, by default
//!   `'Elixir.Phoenix.PubSub'`) to every member of that group on other
//!   nodes; the worker that gets it sends `Msg` to its node's subscribers
//!   of `Topic`.
//!
//! So a [`Subscriber`] joins one process to every group of the pool (each
//! broadcast arrives once, whatever group it picked), and to each group of
//! the pool that appears later (a pool grown by a rolling restart, as
//! Phoenix 2.2 documents it, or a node of another pool size), and filters
//! topics itself; [`PubSub::broadcast`] sends the 4-tuple to every member
//! of the pool's first group (as Phoenix sends to every member of the group
//! it picked; each BEAM node has one, a Rust node one per subscriber).
//!
//!
//! `Phoenix.PubSub.direct_broadcast` to this node sends the 4-tuple to the
//! registered name of one group's worker (`{'Elixir.MyApp.PubSub.Adapter',
//! Node}`). A node with subscribers has, for each group of the pool they
//! are in, a forwarder registered under the group's name that hands what
//! it gets to the group's local members: each subscriber gets it once.

use crate::cpg::storage::TermName;
use crate::node::Node;
use crate::pg::{MonitorError, PgMonitor};
use crate::pg::{PgScope, PgScopeError};
use crate::process::{Process, Signal};
use crate::term::{self, atom, binary, tuple, Pid, Term};
use std::collections::BTreeSet;

/// The pg scope every Phoenix.PubSub instance uses.
pub const SCOPE: &str = "Elixir.Phoenix.PubSub";
/// The default dispatcher module (`Phoenix.PubSub`).
pub const DEFAULT_DISPATCHER: &str = "Elixir.Phoenix.PubSub";

/// How a Phoenix.PubSub version names its pool's groups.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Naming {
    /// 2.0 (pool size 1) and 2.1.1 onwards: `Adapter`, `Adapter_2`, ...
    #[default]
    Current,
    /// 2.1.0 only: `Adapter_1`, `Adapter_2`, ...
    V2_1_0,
}

/// The adapter atom of instance `name` (`MyApp.PubSub` or
/// `Elixir.MyApp.PubSub`): `Elixir.MyApp.PubSub.Adapter`.
pub fn adapter_name(name: &str) -> String {
    let bare = name.strip_prefix("Elixir.").unwrap_or(name);
    format!("Elixir.{bare}.Adapter")
}

/// The pool's group atoms, in the order Phoenix numbers them (a pool of 1
/// to [`MAX_POOL_SIZE`]: a size outside is taken as the nearest).
pub fn groups(adapter: &str, pool_size: usize, naming: Naming) -> Vec<String> {
    (1..=pool_size.clamp(1, MAX_POOL_SIZE))
        .map(|i| match (naming, i) {
            (Naming::Current, 1) => adapter.to_string(),
            _ => format!("{adapter}_{i}"),
        })
        .collect()
}

/// `{forward_to_local, Topic, Msg, Dispatcher}`.
pub fn forward_to_local(topic: &[u8], msg: Term, dispatcher: &str) -> Term {
    tuple(vec![
        atom("forward_to_local"),
        binary(topic.to_vec()),
        msg,
        atom(dispatcher),
    ])
}

/// A broadcast as it arrives.
#[derive(Debug, Clone, PartialEq)]
pub struct Broadcast {
    /// The topic.
    pub topic: Vec<u8>,
    /// The message subscribers get.
    pub msg: Term,
    /// The dispatcher module.
    pub dispatcher: String,
}

/// Reads `{forward_to_local, Topic, Msg, Dispatcher}` (a binary topic and an
/// atom dispatcher, as Phoenix's worker requires); `None` for anything else.
pub fn parse_forward(t: &Term) -> Option<Broadcast> {
    match term::as_tuple(t)? {
        [tag, Term::Binary(topic), msg, d] if term::as_atom(tag) == Some("forward_to_local") => {
            Some(Broadcast {
                topic: topic.bytes.clone(),
                msg: msg.clone(),
                dispatcher: term::as_atom(d)?.to_string(),
            })
        }
        _ => None,
    }
}

/// The largest pool this module takes a group of (`Adapter_N` with N at
/// most this): Phoenix's pools are a few dozen groups at most, and a peer
/// joining `Adapter_2000000` had a subscriber build and join two million
/// groups (out of memory). A larger group is ignored, as a group of no
/// pool.
pub const MAX_POOL_SIZE: usize = 1024;

/// The number of `group` in `adapter`'s pool, by either naming (`Adapter`
/// is 1, `Adapter_N` N), or `None` for a group of no such pool (or past
/// [`MAX_POOL_SIZE`]).
pub fn pool_index(adapter: &str, group: &TermName) -> Option<usize> {
    let g = term::as_atom(group.term())?;
    if g == adapter {
        return Some(1);
    }
    let n = g.strip_prefix(adapter)?.strip_prefix('_')?;
    // (Phoenix's own numbers only: no sign, no leading zero.)
    if n.starts_with(['0', '+']) {
        return None;
    }
    n.parse::<usize>()
        .ok()
        .filter(|n| (1..=MAX_POOL_SIZE).contains(n))
}

/// How many groups of `adapter`'s pool the scope knows (members on any
/// node), by either naming: the pool size to subscribe with.
pub fn seen_pool_size(scope: &PgScope, adapter: &str) -> usize {
    scope
        .which_groups()
        .iter()
        .filter_map(|g| pool_index(adapter, g))
        .max()
        .unwrap_or(0)
}

/// The naming of `adapter`'s pool as the scope shows it: 2.1.0's when it
/// has `Adapter_1` (which only 2.1.0 makes), else the current one. (Not
/// "and no `Adapter`": a subscriber started before the nodes ran
/// Phoenix.PubSub joins `Adapter`, the current naming's pool of 1, and
/// stays there.)
pub fn seen_naming(scope: &PgScope, adapter: &str) -> Naming {
    let first = TermName::atom(&format!("{adapter}_1"));
    if scope.which_groups().contains(&first) {
        Naming::V2_1_0
    } else {
        Naming::Current
    }
}

/// One Phoenix.PubSub instance, seen from this node.
#[derive(Debug, Clone)]
pub struct PubSub {
    scope: PgScope,
    adapter: String,
    groups: Vec<TermName>,
    /// The pool's first group by both namings (`Adapter`, `Adapter_1`),
    /// where broadcasts go ([`PubSub::broadcast_with`]).
    first: [TermName; 2],
}

impl PubSub {
    /// Instance `name` (`MyApp.PubSub`) over the running pg scope
    /// [`SCOPE`], with a pool of `pool_size` groups named as `naming`.
    pub fn new(scope: PgScope, name: &str, pool_size: usize, naming: Naming) -> PubSub {
        let adapter = adapter_name(name);
        let first =
            [Naming::Current, Naming::V2_1_0].map(|n| TermName::atom(&groups(&adapter, 1, n)[0]));
        let groups = groups(&adapter, pool_size, naming)
            .iter()
            .map(|g| TermName::atom(g))
            .collect();
        PubSub {
            scope,
            adapter,
            groups,
            first,
        }
    }

    /// The adapter atom.
    pub fn adapter(&self) -> &str {
        &self.adapter
    }

    /// The pool's groups.
    pub fn groups(&self) -> &[TermName] {
        &self.groups
    }

    /// A subscriber of `topics` (every topic when empty): a process of
    /// `node` joined to every group of the pool, and to every other group
    /// of the adapter's pool the scope has, by either naming; later, as
    /// [`Subscriber::recv`] says, to each one that appears.
    pub async fn subscribe(
        &self,
        node: &Node,
        topics: &[&[u8]],
    ) -> Result<Subscriber, PgScopeError> {
        let proc = node.spawn_process();
        // (Watched before the groups are read: none appears unseen.)
        let (groups, watch) = self.scope.monitor_scope();
        let mut sub = Subscriber {
            node: node.clone(),
            proc,
            topics: topics.iter().map(|t| t.to_vec()).collect(),
            scope: self.scope.clone(),
            adapter: self.adapter.clone(),
            joined: BTreeSet::new(),
            watch: Some(watch),
        };
        for g in self.groups.iter().chain(groups.keys()) {
            sub.join(g).await?;
        }
        Ok(sub)
    }

    /// `Phoenix.PubSub.broadcast(PubSub, Topic, Msg)` from `from`: the
    /// 4-tuple to every member of the pool's first group (`Adapter` or
    /// 2.1.0's `Adapter_1`: both, each member once), on every node (ours
    /// included, for our own subscribers), as Phoenix sends to every
    /// member of the group it picks on other nodes (each BEAM node has one
    /// worker in it; a Rust node one member per subscriber). Returns the
    /// pids sent to.
    pub fn broadcast(&self, from: &Process, topic: &[u8], msg: Term) -> Vec<Pid> {
        self.broadcast_with(from, topic, msg, DEFAULT_DISPATCHER)
    }

    /// [`PubSub::broadcast`] with another dispatcher module (it must exist
    /// on every receiving node).
    pub fn broadcast_with(
        &self,
        from: &Process,
        topic: &[u8],
        msg: Term,
        dispatcher: &str,
    ) -> Vec<Pid> {
        // The pool's first group by both namings (`Adapter`,
        // `Adapter_1`), each member once: a BEAM worker is in the one of
        // its version, a Rust subscriber in both. Whichever naming the
        // nodes use, each gets it once; a process that joined the other
        // one (a subscriber started before Phoenix ran, or anyone) does
        // not turn the broadcast away from the workers.
        let mut targets = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for g in &self.first {
            for p in self.scope.get_members(g) {
                if seen.insert(p.clone()) {
                    targets.push(p);
                }
            }
        }
        let m = forward_to_local(topic, msg, dispatcher);
        targets
            .into_iter()
            .filter(|p| match from.send(p.clone(), m.clone()) {
                Ok(()) => true,
                Err(e) => {
                    tracing::debug!("pubsub broadcast to {}: {e}", term::pid_text(p));
                    false
                }
            })
            .collect()
    }
}

/// Starts, unless one runs, the forwarder of `group` on `node`: a process
/// registered under the group's name, as Phoenix's worker is, that gives
/// each `{forward_to_local, ...}` it gets (a `direct_broadcast` to this
/// node) to the group's members on this node (its subscribers), and drops
/// anything else. It runs as long as the node (one per group of a pool).
fn start_forwarder(node: &Node, scope: &PgScope, group: &TermName) {
    let Some(name) = term::as_atom(group.term()) else {
        return;
    };
    // (Taken: a forwarder runs, started for another subscriber.)
    let Ok(mut proc) = node.spawn_registered(name) else {
        return;
    };
    let (scope, group) = (scope.clone(), group.clone());
    tokio::spawn(async move {
        while let Ok(signal) = proc.recv().await {
            let Signal::Message { msg, .. } = signal else {
                continue;
            };
            if parse_forward(&msg).is_none() {
                tracing::debug!(
                    "pubsub forwarder: dropped {}",
                    crate::util::short_text(&msg)
                );
                continue;
            }
            for member in scope.get_local_members(&group) {
                let _ = proc.send(member, msg.clone());
            }
        }
    });
}

/// A Rust subscriber of a PubSub instance's topics (see [`PubSub::subscribe`]).
/// Dropping it ends its process, which leaves the groups on every node.
#[derive(Debug)]
pub struct Subscriber {
    node: Node,
    proc: Process,
    topics: BTreeSet<Vec<u8>>,
    scope: PgScope,
    adapter: String,
    /// The pool's groups it is in.
    joined: BTreeSet<TermName>,
    /// The scope's joins, for groups of the pool that appear (`None` once
    /// the scope has stopped).
    watch: Option<PgMonitor>,
}

impl Subscriber {
    /// The subscriber's pid.
    pub fn pid(&self) -> &Pid {
        self.proc.pid()
    }

    /// The pool's groups it is in (it joins each one that appears).
    pub fn groups(&self) -> impl Iterator<Item = &TermName> {
        self.joined.iter()
    }

    /// Joins `group` if it is one of the adapter's pool it is not in yet.
    /// Counted as joined before the join is asked for: the scope takes the
    /// join in the same poll, so a `recv` dropped while it waits for the
    /// answer (a `select!`) neither joins twice (each broadcast would come
    /// twice) nor misses the group.
    async fn join(&mut self, group: &TermName) -> Result<(), PgScopeError> {
        if pool_index(&self.adapter, group).is_none() || !self.joined.insert(group.clone()) {
            return Ok(());
        }
        let joined = self.scope.join(group, self.proc.pid()).await;
        if joined.is_err() {
            self.joined.remove(group);
            return joined;
        }
        start_forwarder(&self.node, &self.scope, group);
        Ok(())
    }

    /// Joins the groups of the pool that appeared (`seen`), or, after
    /// events were missed, every group of the pool the scope has.
    async fn follow_pool(&mut self, seen: Result<crate::pg::PgEvent, MonitorError>) {
        let groups = match seen {
            Ok(e) => vec![e.group],
            Err(MonitorError::Lagged(_)) => self.scope.which_groups(),
            // The scope stopped: nothing more to follow.
            Err(_) => {
                self.watch = None;
                return;
            }
        };
        for g in groups {
            if let Err(e) = self.join(&g).await {
                tracing::warn!("pubsub subscriber: cannot join {g}: {e}");
            }
        }
    }

    /// The next broadcast to one of its topics; other messages are logged
    /// and dropped. Meanwhile it joins each group of the pool that
    /// appears (a node with a larger pool), so that a broadcast that picks
    /// it reaches this subscriber too. `Err` when the process was killed.
    pub async fn recv(&mut self) -> Result<Broadcast, Term> {
        loop {
            let watch = self.watch.as_mut();
            let seen = async {
                match watch {
                    Some(w) => w.recv().await,
                    None => std::future::pending().await,
                }
            };
            let signal = tokio::select! {
                s = self.proc.recv() => s?,
                seen = seen => {
                    self.follow_pool(seen).await;
                    continue;
                }
            };
            match signal {
                Signal::Message { msg, .. } => match parse_forward(&msg) {
                    Some(b) if self.topics.is_empty() || self.topics.contains(&b.topic) => {
                        return Ok(b)
                    }
                    Some(_) => {}
                    None => tracing::debug!(
                        "pubsub subscriber: dropped {}",
                        crate::util::short_text(&msg)
                    ),
                },
                other => tracing::debug!(
                    "pubsub subscriber: ignored {}",
                    crate::util::short_text(&other.to_term())
                ),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_names_of_every_version() {
        let a = adapter_name("MyApp.PubSub");
        assert_eq!(a, "Elixir.MyApp.PubSub.Adapter");
        assert_eq!(adapter_name("Elixir.MyApp.PubSub"), a);
        assert_eq!(groups(&a, 1, Naming::Current), vec![a.clone()]);
        assert_eq!(
            groups(&a, 3, Naming::Current),
            vec![a.clone(), format!("{a}_2"), format!("{a}_3")]
        );
        assert_eq!(
            groups(&a, 2, Naming::V2_1_0),
            vec![format!("{a}_1"), format!("{a}_2")]
        );
    }

    #[test]
    fn pool_indexes_by_either_naming() {
        let a = adapter_name("MyApp.PubSub");
        let at = |g: &str| pool_index(&a, &TermName::atom(g));
        assert_eq!(at(&a), Some(1));
        assert_eq!(at(&format!("{a}_1")), Some(1));
        assert_eq!(at(&format!("{a}_12")), Some(12));
        assert_eq!(at(&format!("{a}_{MAX_POOL_SIZE}")), Some(MAX_POOL_SIZE));
        let past = MAX_POOL_SIZE + 1;
        assert_eq!(at(&format!("{a}_{past}")), None);
        assert_eq!(at(&format!("{a}_2000000")), None);
        assert_eq!(at(&format!("{a}_99999999999999999999999")), None);
        for not in [
            "x",
            "Elixir.MyApp.PubSub.Adapter2",
            "Elixir.MyApp.PubSub.Adapter_",
        ] {
            assert_eq!(at(not), None, "{not}");
        }
        for not in ["_0", "_02", "_+2", "_-1", "_x"] {
            assert_eq!(at(&format!("{a}{not}")), None, "{not}");
        }
        assert_eq!(pool_index(&a, &TermName::string(&a)), None);
    }

    #[test]
    fn forward_to_local_round_trips_and_malformed_is_refused() {
        let t = forward_to_local(b"room:1", atom("hi"), DEFAULT_DISPATCHER);
        assert_eq!(
            parse_forward(&t),
            Some(Broadcast {
                topic: b"room:1".to_vec(),
                msg: atom("hi"),
                dispatcher: DEFAULT_DISPATCHER.into()
            })
        );
        let bad = tuple(vec![
            atom("forward_to_local"),
            atom("t"),
            atom("m"),
            atom("d"),
        ]);
        assert_eq!(parse_forward(&bad), None);
        assert_eq!(parse_forward(&atom("x")), None);
    }
}
