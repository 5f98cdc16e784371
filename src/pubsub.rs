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
//! broadcast arrives once, whatever group it picked) and filters topics
//! itself; [`PubSub::broadcast`] sends the 4-tuple to one member of the
//! first group on each node (as Phoenix does).

use crate::cpg::storage::TermName;
use crate::node::Node;
use crate::pg::{PgScope, PgScopeError};
use crate::process::{Process, Signal};
use crate::term::{self, atom, binary, tuple, Pid, Term};
use std::collections::{BTreeSet, HashSet};

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

/// The pool's group atoms, in the order Phoenix numbers them.
pub fn groups(adapter: &str, pool_size: usize, naming: Naming) -> Vec<String> {
    (1..=pool_size.max(1))
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

/// How many groups of `adapter`'s pool the scope knows (members on any
/// node), by either naming: the pool size to subscribe with.
pub fn seen_pool_size(scope: &PgScope, adapter: &str) -> usize {
    let prefix = format!("{adapter}_");
    scope
        .which_groups()
        .iter()
        .filter_map(|g| term::as_atom(g.term()).map(str::to_string))
        .filter_map(|g| {
            if g == adapter {
                Some(1)
            } else {
                g.strip_prefix(&prefix)?.parse::<usize>().ok()
            }
        })
        .max()
        .unwrap_or(0)
}

/// One Phoenix.PubSub instance, seen from this node.
#[derive(Debug, Clone)]
pub struct PubSub {
    scope: PgScope,
    adapter: String,
    groups: Vec<TermName>,
}

impl PubSub {
    /// Instance `name` (`MyApp.PubSub`) over the running pg scope
    /// [`SCOPE`], with a pool of `pool_size` groups named as `naming`.
    pub fn new(scope: PgScope, name: &str, pool_size: usize, naming: Naming) -> PubSub {
        let adapter = adapter_name(name);
        let groups = groups(&adapter, pool_size, naming)
            .iter()
            .map(|g| TermName::atom(g))
            .collect();
        PubSub {
            scope,
            adapter,
            groups,
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
    /// `node` joined to every group of the pool.
    pub async fn subscribe(
        &self,
        node: &Node,
        topics: &[&[u8]],
    ) -> Result<Subscriber, PgScopeError> {
        let proc = node.spawn_process();
        for g in &self.groups {
            self.scope.join(g, proc.pid()).await?;
        }
        Ok(Subscriber {
            proc,
            topics: topics.iter().map(|t| t.to_vec()).collect(),
        })
    }

    /// `Phoenix.PubSub.broadcast(PubSub, Topic, Msg)` from `from`: the
    /// 4-tuple to one member of the first group on each node (ours
    /// included, for our own subscribers). Returns the pids sent to.
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
        let mut nodes = HashSet::new();
        let targets: Vec<Pid> = self
            .scope
            .get_members(&self.groups[0])
            .into_iter()
            .filter(|p| nodes.insert(p.node.name.clone()))
            .collect();
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

/// A Rust subscriber of a PubSub instance's topics (see [`PubSub::subscribe`]).
/// Dropping it ends its process, which leaves the groups on every node.
#[derive(Debug)]
pub struct Subscriber {
    proc: Process,
    topics: BTreeSet<Vec<u8>>,
}

impl Subscriber {
    /// The subscriber's pid.
    pub fn pid(&self) -> &Pid {
        self.proc.pid()
    }

    /// The next broadcast to one of its topics; other messages are logged
    /// and dropped. `Err` when the process was killed.
    pub async fn recv(&mut self) -> Result<Broadcast, Term> {
        loop {
            match self.proc.recv().await? {
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
