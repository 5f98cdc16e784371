//! The pure state machine of one cpg scope (no IO, no async).
//!
//! A [`Scope`] holds what a genuine cpg 2.0.7 scope process holds: the groups
//! (a [`Trie`](super::trie::Trie), or a map, of [`GroupData`]; see
//! [Group storage](#group-storage)), the groups of every monitored pid, and the
//! nodes it is connected to / listens to. Every input is a method; the ones
//! that change state return the [`Effect`]s the caller must carry out, in
//! order: monitor or demonitor a pid, cast a [`Request`] to the scope on
//! another node, or run the join/leave callbacks ([`Effect::Notify`]).
//!
//! Inputs and the cpg messages they stand for:
//!
//! | method | cpg |
//! |---|---|
//! | [`Scope::join`], [`Scope::join_counts`], [`Scope::leave`], [`Scope::leave_counts`], [`Scope::leave_all`] | the owner-side `handle_call` of a local write, plus the caller's `abcast` |
//! | [`Scope::remote_request`] | `handle_cast` of `{join,..}`, `{join_counts,..}`, `{leave,..}`, `{leave_counts,..}`, `{exchange,..}` |
//! | [`Scope::member_down`] | `{'DOWN',..}` of a local member, `{'DOWNS',..}` of remote members |
//! | [`Scope::node_up`], [`Scope::node_down`] | `{nodeup,..}`, `{nodedown,..}` |
//! | [`Scope::new_node`] | `{new, Node}` |
//!
//! Reads ([`Scope::get_members`], [`Scope::get_closest_pid`], ...) follow
//! `cpg_data`: a group name is looked up in the group storage (see
//! [`storage`](super::storage)), the returned key is the stored key that
//! matched, and errors carry the queried name.
//!
//! # Layout
//!
//! One file per kind of input, each an `impl Scope` block: `local` (this
//! node's writes), `remote` (requests and exchanges from other scopes, member
//! deaths), `index` (the pid and node index behind monitors), `read` (the
//! `get_*` reads); node up/down and the exchange sent to peers are here.
//! `tests/` holds the unit tests by the same kinds, and `tests/sim.rs` a
//! three-node simulation checked against a model of the owners' truth.
//!
//! # Group storage
//!
//! The name type `N` chooses the storage, as cpg's `group_storage` does:
//! - `Scope<P>` (`N = String`, [`Scope::new`]): names are Erlang strings in
//!   the trie; a read finds the exact key first, else the most specific
//!   pattern (`*`, `?`).
//! - `Scope<P, TermName>` ([`Scope::new_map`]): names are any Erlang terms
//!   ([`TermName`]) in a map; reads are exact, `*` and `?` are plain
//!   characters, and every term is a valid name (`[]` too).
//!
//! Deliberate differences from genuine cpg, which would crash its scope on
//! such input: requests from other nodes about pids of *this* node, requests
//! with a name the storage cannot hold (the empty string in the trie) and
//! `join_counts` entries with a zero count are ignored; a local write with a
//! name the storage refuses (empty or invalid pattern in the trie) is
//! refused; duplicate names in a local `leave_counts` are merged (same result
//! as cpg's left-to-right processing) before the request is cast.
//!
//! # Copies are capped
//!
//! Every copy of a pid in a group (one join) costs about 100 bytes here, as a
//! list cell does on the BEAM, and `join_counts` takes its count from the
//! message: `{join_counts, [{"x", 10000000000}], Pid}` would have cpg (and
//! this scope, before the cap) try to allocate for ten billion copies. So no
//! pid may hold more than [`Scope::max_copies`] copies in one group
//! ([`DEFAULT_MAX_COPIES`], a million, about 100 MB, unless set with
//! [`Scope::set_max_copies`]): a local `join`/`join_counts` that would go
//! over it is refused ([`WriteError::TooManyCopies`]); such a request from
//! another node is ignored whole ([`Scope::check_remote`] says why, for the
//! caller to log); an exchange never gives a pid more than the cap.
//!
//! That bounds one message, not many: a cast of a few dozen bytes asking
//! a million copies in a new group each time (any name, any pid of the
//! sender's node) grew the node by 30 to 57 MB a cast, so a few hundred
//! casts would have used up the machine's memory. So the scope also holds
//! at most [`Scope::max_total_copies`] copies in all, every group and node
//! together ([`DEFAULT_MAX_TOTAL_COPIES`], 16,777,216, from 0.6 to about
//! 2 GB here depending on the shape; genuine cpg would need about 6.5 GB
//! for as many memberships): a local write that would go over it is
//! refused ([`WriteError::ScopeFull`]), a request from another node is
//! ignored whole (and logged), and an exchange adds no copy past it. A
//! peer that fills the scope keeps others from adding members until
//! copies leave, and the node keeps serving (16 such casts took the
//! binary from 16 to 494 MB of RSS; 8 more, past the cap, left it there);
//! genuine cpg has no such bound.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Debug;
use std::hash::Hash;

mod index;
mod local;
mod read;
mod remote;
#[cfg(test)]
mod tests;
mod thin;

use super::group::{CpgData, GroupData, Part};
use super::snapshot::Members;
use super::storage::{GroupKey, GroupStore, TermName};
use crate::util::FastHashMap;

/// The default [`Scope::max_copies`]: copies of one pid in one group.
pub const DEFAULT_MAX_COPIES: usize = 1_000_000;

/// The default [`Scope::max_total_copies`]: copies in the whole scope.
pub const DEFAULT_MAX_TOTAL_COPIES: usize = 1 << 24;

/// What the scope needs to know about a pid: the node it lives on.
pub trait PidInfo {
    /// The node name of the pid (`node(Pid)`), e.g. `"a@host"`.
    fn node(&self) -> &str;

    /// Whether `other` is on the same node. By name unless the type knows
    /// a cheaper way ([`MemberPid`](crate::cpg::MemberPid) compares its
    /// interned node ids).
    fn same_node(&self, other: &Self) -> bool
    where
        Self: Sized,
    {
        self.node() == other.node()
    }
}

/// Everything a pid type must provide to be stored in a [`Scope`].
///
/// `Ord` should follow Erlang term order for pids (OTP 25: serial, then
/// number, then node, then creation); it decides the order in which an
/// exchange merge visits pids, hence the order of callbacks and of copies
/// added at the same time.
pub trait ScopePid: Clone + Eq + Hash + Ord + Debug + PidInfo {}

impl<T: Clone + Eq + Hash + Ord + Debug + PidInfo> ScopePid for T {}

/// A request cast between scope processes (inside `{'$gen_cast', _}`).
/// `N` is the group-name type (see [`storage`](super::storage)).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request<P, N = String> {
    /// `{join, Name, Pid}`: one more copy of `pid` in `name`.
    Join {
        /// Group name.
        name: N,
        /// The joining pid (on the sending node).
        pid: P,
    },
    /// `{join_counts, [{Name, Count}], Pid}`: `Count` copies per name.
    JoinCounts {
        /// `(name, count)` pairs, processed left to right.
        counts: Vec<(N, usize)>,
        /// The joining pid.
        pid: P,
    },
    /// `{leave, Name, Pid}`: remove the oldest copy of `pid` from `name`.
    Leave {
        /// Group name.
        name: N,
        /// The leaving pid.
        pid: P,
    },
    /// `{leave_counts, [{Name, Count}], Pid}`: remove the `Count` oldest copies.
    LeaveCounts {
        /// `(name, count)` pairs, processed left to right.
        counts: Vec<(N, usize)>,
        /// The leaving pid.
        pid: P,
    },
    /// `{leave, Pid}`: remove every copy of `pid` from every group.
    LeaveAll {
        /// The leaving pid.
        pid: P,
    },
    /// `{exchange, FromNode, [{Name, History}]}`: whole-state transfer.
    Exchange {
        /// The node the state comes from (trusted, as in cpg).
        from: String,
        /// `(name, history)` per group, history newest first.
        groups: Vec<(N, Vec<P>)>,
    },
}

impl<P, N> Request<P, N> {
    /// The pid a join/leave request is about (`None` for an exchange).
    pub fn pid(&self) -> Option<&P> {
        match self {
            Request::Join { pid, .. }
            | Request::JoinCounts { pid, .. }
            | Request::Leave { pid, .. }
            | Request::LeaveCounts { pid, .. }
            | Request::LeaveAll { pid } => Some(pid),
            Request::Exchange { .. } => None,
        }
    }
}

/// The reason given to join/leave callbacks.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Reason {
    /// `join_local`: a pid of this node joined.
    JoinLocal,
    /// `join_remote`: a pid of another node joined.
    JoinRemote,
    /// `leave_local`: a pid of this node left.
    LeaveLocal,
    /// `leave_remote`: a pid of another node left.
    LeaveRemote,
    /// `{exit, Reason}`: the pid died (or its node went down); the text is
    /// the exit reason, e.g. `"killed"` or `"noconnection"`.
    Exit(String),
}

impl std::fmt::Display for Reason {
    /// As cpg passes it to callbacks: `join_local`, ..., `{exit,Reason}`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Reason::JoinLocal => f.write_str("join_local"),
            Reason::JoinRemote => f.write_str("join_remote"),
            Reason::LeaveLocal => f.write_str("leave_local"),
            Reason::LeaveRemote => f.write_str("leave_remote"),
            Reason::Exit(r) => write!(f, "{{exit,{r}}}"),
        }
    }
}

impl Reason {
    /// True for the join reasons (the notification goes to join callbacks),
    /// false for leaves and exits (leave callbacks).
    pub fn is_join(&self) -> bool {
        matches!(self, Reason::JoinLocal | Reason::JoinRemote)
    }
}

/// The caller's handle of a monitor it set for an [`Effect::Monitor`] (its
/// monitor reference, as a number), kept beside the pid in the scope's pid
/// index ([`Scope::set_monitor`]) and given back with the pid's
/// [`Effect::Demonitor`]: the driver needs no table of its own from pid to
/// monitor (a scope monitors every remote member).
pub type MonitorTag = std::num::NonZeroU64;

/// Something the caller of a [`Scope`] method must do, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect<P, N = String> {
    /// Start monitoring the pid (emitted once, when the scope first stores
    /// it). A monitor on a pid that no longer exists must be answered with
    /// [`Scope::member_down`] (reason `noproc`).
    Monitor(P),
    /// Stop monitoring the pid (it left its last group), with the handle
    /// of its monitor recorded by [`Scope::set_monitor`], if any.
    Demonitor(P, Option<MonitorTag>),
    /// Cast `request` to this scope on `node`.
    Cast {
        /// Destination node.
        node: String,
        /// The request to send.
        request: Request<P, N>,
    },
    /// Run the join (if [`Reason::is_join`]) or leave callbacks of `name`.
    Notify {
        /// Exact group name.
        name: N,
        /// The pid that joined or left.
        pid: P,
        /// Why.
        reason: Reason,
    },
}

/// Why a local write was refused (genuine cpg replies just `error`).
/// More reasons may come (as [`WriteError::ScopeFull`] did): match with a
/// wildcard arm.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WriteError<N = String> {
    /// Only pids of this node may be joined or removed through this scope.
    #[error("pid is not on this node")]
    NotLocal,
    /// The storage refuses the name (the trie: empty or an invalid pattern).
    #[error("invalid group name {0:?}")]
    InvalidName(N),
    /// A count was not greater than zero.
    #[error("invalid count {count} for group {name:?}")]
    InvalidCount {
        /// The group name.
        name: N,
        /// The count given.
        count: usize,
    },
    /// The pid is unknown, or not a member of a named group.
    #[error("pid is not a member of the group")]
    NotMember,
    /// The pid would hold more than [`Scope::max_copies`] copies in a group
    /// (or the request adds more than that in all).
    #[error("{} in group {name:?} would exceed the limit of {max} copies", more_copies(*count))]
    TooManyCopies {
        /// The group name.
        name: N,
        /// The count asked for it.
        count: usize,
        /// [`Scope::max_copies`].
        max: usize,
    },
    /// The scope would hold more than [`Scope::max_total_copies`] copies
    /// in all.
    #[error("{} would take the scope past its limit of {max} copies in all", more_copies(*count))]
    ScopeFull {
        /// The copies the request adds.
        count: usize,
        /// [`Scope::max_total_copies`].
        max: usize,
    },
}

/// "1 more copy", "N more copies" (for [`WriteError`]'s texts).
fn more_copies(n: usize) -> String {
    if n == 1 {
        "1 more copy".to_string()
    } else {
        format!("{n} more copies")
    }
}

/// Why a read found nothing; carries the queried name (never the pattern).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReadError<N = String> {
    /// `{error, {no_such_group, Name}}`.
    #[error("no_such_group {0:?}")]
    NoSuchGroup(N),
    /// `{error, {no_process, Name}}`.
    #[error("no_process {0:?}")]
    NoProcess(N),
}

/// A successful read: the stored key that matched (the name itself or a
/// pattern) and the value.
pub type ReadResult<'a, T, N = String> = Result<(&'a <N as GroupKey>::Borrowed, T), ReadError<N>>;

/// Exit reason used by [`Scope::node_down`].
pub const NODEDOWN_REASON: &str = "noconnection";

/// The state of one cpg scope on this node, with group names of type `N`.
/// See the [module docs](self).
pub struct Scope<P, N: GroupKey = String> {
    node: String,
    groups: N::Store<GroupData<P>>,
    /// Monitored pids and their groups, by handle (cpg's `monitors`).
    /// There is no index by node: a node going down is rare, and finding
    /// its pids by one pass over this map costs less than keeping a tree
    /// entry for every pid (about 30 bytes a pid) all the time.
    pids: index::PidIndex<P, N>,
    /// Connected nodes, with "listened" (full peer) flag.
    nodes: BTreeMap<String, bool>,
    /// Most copies of one pid in one group.
    max_copies: usize,
    /// Copies in every group together (the sum of their lengths), kept
    /// by every change of a group.
    copies: usize,
    /// Most copies in every group together.
    max_total_copies: usize,
    /// Whether changes produce [`Effect::Notify`].
    notify: bool,
}

impl<P: Clone, N: GroupKey> Clone for Scope<P, N>
where
    N::Store<GroupData<P>>: Clone,
{
    /// A deep copy (e.g. a snapshot for readers).
    fn clone(&self) -> Self {
        Scope {
            node: self.node.clone(),
            groups: self.groups.clone(),
            pids: self.pids.clone(),
            nodes: self.nodes.clone(),
            max_copies: self.max_copies,
            copies: self.copies,
            max_total_copies: self.max_total_copies,
            notify: self.notify,
        }
    }
}

impl<P: Debug, N: GroupKey> Debug for Scope<P, N> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scope")
            .field("node", &self.node)
            .field("groups", &self.groups.len())
            .field("pids", &self.pids.len())
            .field("nodes", &self.nodes)
            .finish()
    }
}

impl<P: ScopePid> Scope<P> {
    /// An empty scope on the node called `node`, with the trie storage
    /// (string names, patterns on).
    pub fn new(node: impl Into<String>) -> Self {
        Scope::with_storage(node)
    }
}

impl<P: ScopePid> Scope<P, TermName> {
    /// An empty scope on the node called `node`, with map storage (any
    /// term as a name, exact lookups).
    pub fn new_map(node: impl Into<String>) -> Self {
        Scope::with_storage(node)
    }
}

impl<P: ScopePid, N: GroupKey> Scope<P, N> {
    /// An empty scope on the node called `node`, storing names of type `N`
    /// in `N`'s storage ([`Scope::new`] and [`Scope::new_map`] name `N`).
    pub fn with_storage(node: impl Into<String>) -> Self {
        Scope {
            node: node.into(),
            groups: Default::default(),
            pids: FastHashMap::default(),
            nodes: BTreeMap::new(),
            max_copies: DEFAULT_MAX_COPIES,
            copies: 0,
            max_total_copies: DEFAULT_MAX_TOTAL_COPIES,
            notify: true,
        }
    }

    /// Most copies of one pid in one group (see [Copies are
    /// capped](self#copies-are-capped)).
    pub fn max_copies(&self) -> usize {
        self.max_copies
    }

    /// Sets [`Scope::max_copies`] (at least 1).
    pub fn set_max_copies(&mut self, max: usize) {
        self.max_copies = max.max(1);
    }

    /// Most copies the scope holds in all, every group and node together
    /// (see [Copies are capped](self#copies-are-capped)).
    pub fn max_total_copies(&self) -> usize {
        self.max_total_copies
    }

    /// Sets [`Scope::max_total_copies`] (at least 1). Copies held beyond a
    /// lowered limit stay; no copy is added until they are under it.
    pub fn set_max_total_copies(&mut self, max: usize) {
        self.max_total_copies = max.max(1);
    }

    /// Copies held in all (every group's length, summed): what
    /// [`Scope::max_total_copies`] bounds.
    pub fn total_copies(&self) -> usize {
        self.copies
    }

    /// Whether the scope holds [`Scope::max_total_copies`] copies (or more,
    /// after the cap was lowered): no copy can be added.
    pub fn is_full(&self) -> bool {
        self.copies >= self.max_total_copies
    }

    /// Whether changes produce [`Effect::Notify`] (on by default). A caller
    /// with no one to tell turns them off: an exchange bringing a million
    /// memberships then builds no million notifications only to drop them.
    /// Nothing else changes.
    pub fn set_notify(&mut self, on: bool) {
        self.notify = on;
    }

    /// Our own node name.
    pub fn node(&self) -> &str {
        &self.node
    }

    /// True when `pid` lives on this node.
    pub fn is_local(&self, pid: &P) -> bool {
        pid.node() == self.node
    }

    // ------------------------------------------------------------------
    // Nodes

    /// A node connected (`{nodeup, Node, _}`). `listen` is the caller's
    /// node-type decision: a listened node is a full peer (it gets our
    /// writes and an exchange now, and its exchanges are accepted).
    /// Returns the exchange cast when `listen` and we have groups.
    pub fn node_up(&mut self, node: &str, listen: bool) -> Vec<Effect<P, N>> {
        if node == self.node {
            return Vec::new();
        }
        self.nodes.insert(node.to_string(), listen);
        if listen {
            self.exchange_to(node).into_iter().collect()
        } else {
            Vec::new()
        }
    }

    /// A node disconnected: every member on it is removed from every group
    /// (leave callbacks with `{exit, noconnection}`), and it is no longer a
    /// peer. No demonitor is needed (the monitors died with the connection).
    pub fn node_down(&mut self, node: &str) -> Vec<Effect<P, N>> {
        let pids = self.node_down_start(node);
        self.node_members_down(&pids)
    }

    /// The first half of [`node_down`](Self::node_down), for a caller that
    /// removes a large node's members in parts (readers get the lock in
    /// between): `node` is no longer a peer, and its members are returned,
    /// in pid order, for [`node_members_down`](Self::node_members_down).
    pub fn node_down_start(&mut self, node: &str) -> Vec<P> {
        self.nodes.remove(node);
        self.members_of_node(node)
    }

    /// The pids of `node` the scope stores, in pid order, for
    /// [`node_members_down`](Self::node_members_down), `node` staying a
    /// peer (its members are to be asked for again, while our writes still
    /// go to it).
    pub fn members_of_node(&self, node: &str) -> Vec<P> {
        if node == self.node {
            return Vec::new();
        }
        // in pid order, as the tree of the node's pids gave them before
        let mut pids: Vec<P> = self
            .pids
            .keys()
            .filter(|p| p.node() == node)
            .cloned()
            .collect();
        pids.sort_unstable();
        pids
    }

    /// The second half of [`node_down`](Self::node_down): `pids` (members
    /// of a node that went down) leave every group, with `{exit,
    /// noconnection}`. Pids no longer stored are skipped.
    pub fn node_members_down(&mut self, pids: &[P]) -> Vec<Effect<P, N>> {
        let mut effects = Vec::new();
        let reason = Reason::Exit(NODEDOWN_REASON.to_string());
        for pid in pids {
            self.leave_everything(pid, &reason, false, &mut effects);
        }
        effects
    }

    /// `{new, Node}`: a scope on `node` started and asks for our state.
    /// Answered whatever the node's type; nothing if we have no groups.
    pub fn new_node(&self, node: &str) -> Vec<Effect<P, N>> {
        if node == self.node {
            return Vec::new();
        }
        self.exchange_to(node).into_iter().collect()
    }

    /// The state `node` is told by the scope process
    /// ([`CpgScope`](crate::cpg::CpgScope)): an exchange of the members of
    /// this node only, and with `theirs` of `node`'s too (the answer to a
    /// `{new, Node}` from a full peer: a scope that came back empty asks
    /// so, and takes its own pids' counts from the answers, as cpg's merge
    /// repairs it). Nothing when none is listed.
    ///
    /// A third node's members are never listed (cpg lists its whole view):
    /// the peer has them from their own node, which it is connected to
    /// (else its merge drops them), and ours may be stale by then. After a
    /// freeze of our node, what we held of a node whose end we had not yet
    /// seen went to the first peer we reached again, and that peer's merge
    /// set those members back (ghosts of members that had left meanwhile).
    /// `node`'s own are left out unless `theirs`: they came from it, and
    /// listed again they could undo its writes that cross them (see
    /// `cpg::server::modes::state_for`).
    pub fn state_to(&self, node: &str, theirs: bool) -> Vec<Effect<P, N>> {
        if node == self.node {
            return Vec::new();
        }
        let groups = self.listing(|p| self.is_local(p) || (theirs && p.node() == node));
        if groups.is_empty() {
            return Vec::new();
        }
        vec![Effect::Cast {
            node: node.to_string(),
            request: Request::Exchange {
                from: self.node.clone(),
                groups,
            },
        }]
    }

    /// True when `node` is connected and listened (a full peer).
    pub fn is_listened(&self, node: &str) -> bool {
        self.nodes.get(node).copied().unwrap_or(false)
    }

    /// Connected nodes (listened or not), sorted.
    pub fn connected_nodes(&self) -> impl Iterator<Item = &str> + '_ {
        self.nodes.keys().map(String::as_str)
    }

    /// Listened nodes (the ones our writes are cast to), sorted.
    pub fn listened_nodes(&self) -> impl Iterator<Item = &str> + '_ {
        self.nodes
            .iter()
            .filter(|(_, listen)| **listen)
            .map(|(n, _)| n.as_str())
    }

    /// The state cpg sends in an exchange: `(name, history)` for every
    /// group, in reverse name order (cpg folds its trie onto a list).
    pub fn exchange_groups(&self) -> Vec<(N, Vec<P>)> {
        self.listing(|_| true)
    }

    /// Each group's copies that `keep` keeps, as an exchange lists them
    /// (groups in reverse name order, histories newest first); a group
    /// with none kept is left out (a stored group is never empty).
    fn listing(&self, keep: impl Fn(&P) -> bool) -> Vec<(N, Vec<P>)> {
        let mut v: Vec<(N, Vec<P>)> = self
            .groups
            .iter()
            .filter_map(|(name, g)| {
                let pids: Vec<P> = g.history().filter(|p| keep(p)).cloned().collect();
                (!pids.is_empty()).then(|| (name.to_owned(), pids))
            })
            .collect();
        v.reverse();
        v
    }

    /// The exchange request for our whole state (`None` without groups).
    pub fn exchange_request(&self) -> Option<Request<P, N>> {
        if self.groups.is_empty() {
            return None;
        }
        Some(Request::Exchange {
            from: self.node.clone(),
            groups: self.exchange_groups(),
        })
    }

    pub(super) fn exchange_to(&self, node: &str) -> Option<Effect<P, N>> {
        self.exchange_request().map(|request| Effect::Cast {
            node: node.to_string(),
            request,
        })
    }

    // ------------------------------------------------------------------
    // Local writes (owner side)
}

fn check_name<N: GroupKey>(name: &N::Borrowed) -> Result<(), WriteError<N>> {
    if N::valid_local(name) {
        Ok(())
    } else {
        Err(WriteError::InvalidName(name.to_owned()))
    }
}

fn check_count<N: GroupKey>(name: &N::Borrowed, count: usize) -> Result<(), WriteError<N>> {
    if count == 0 {
        Err(WriteError::InvalidCount {
            name: name.to_owned(),
            count,
        })
    } else {
        Ok(())
    }
}

fn join_reason(is_local: bool) -> Reason {
    if is_local {
        Reason::JoinLocal
    } else {
        Reason::JoinRemote
    }
}

/// Pushes `times` notifications, unless notifications are off
/// ([`Scope::set_notify`]).
fn push_notify<P: Clone, N: GroupKey>(
    on: bool,
    effects: &mut Vec<Effect<P, N>>,
    name: &N::Borrowed,
    pid: &P,
    reason: &Reason,
    times: usize,
) {
    if !on {
        return;
    }
    for _ in 0..times {
        effects.push(Effect::Notify {
            name: name.to_owned(),
            pid: pid.clone(),
            reason: reason.clone(),
        });
    }
}
