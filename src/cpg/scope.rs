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

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Debug;
use std::hash::Hash;
use std::sync::Arc;

use super::group::{CpgData, GroupData, Part};
use super::storage::{GroupKey, GroupStore, TermName};

/// The default [`Scope::max_copies`]: copies of one pid in one group.
pub const DEFAULT_MAX_COPIES: usize = 1_000_000;

/// What the scope needs to know about a pid: the node it lives on.
pub trait PidInfo {
    /// The node name of the pid (`node(Pid)`), e.g. `"a@host"`.
    fn node(&self) -> &str;
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

/// Something the caller of a [`Scope`] method must do, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect<P, N = String> {
    /// Start monitoring the pid (emitted once, when the scope first stores
    /// it). A monitor on a pid that no longer exists must be answered with
    /// [`Scope::member_down`] (reason `noproc`).
    Monitor(P),
    /// Stop monitoring the pid (it left its last group).
    Demonitor(P),
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
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
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
    #[error("{count} more copies in group {name:?} would exceed the limit of {max} copies")]
    TooManyCopies {
        /// The group name.
        name: N,
        /// The count asked for it.
        count: usize,
        /// [`Scope::max_copies`].
        max: usize,
    },
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
    /// Monitored pids and their group names (cpg's `monitors`).
    pids: HashMap<P, BTreeSet<N>>,
    /// The monitored pids of each node.
    by_node: HashMap<String, BTreeSet<P>>,
    /// Connected nodes, with "listened" (full peer) flag.
    nodes: BTreeMap<String, bool>,
    /// Most copies of one pid in one group.
    max_copies: usize,
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
            by_node: self.by_node.clone(),
            nodes: self.nodes.clone(),
            max_copies: self.max_copies,
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
            pids: HashMap::new(),
            by_node: HashMap::new(),
            nodes: BTreeMap::new(),
            max_copies: DEFAULT_MAX_COPIES,
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

    /// Refuses adding `counts` copies of `pid` (names may repeat) if any
    /// group would then hold more than `max_copies` copies of it, or if the
    /// request adds more than `max_copies` copies in all. Costs nothing
    /// proportional to the counts.
    fn check_copies(&self, counts: &[(N, usize)], pid: &P) -> Result<(), WriteError<N>> {
        let over = |name: &N, count: usize| WriteError::TooManyCopies {
            name: name.clone(),
            count,
            max: self.max_copies,
        };
        let mut total: usize = 0;
        let mut added: Vec<(&N, usize)> = Vec::new();
        for (name, count) in counts {
            total = total.saturating_add(*count);
            if total > self.max_copies {
                return Err(over(name, *count));
            }
            let have = match added.iter_mut().find(|(n, _)| *n == name) {
                Some((_, a)) => {
                    *a += count;
                    *a
                }
                None => {
                    added.push((name, *count));
                    *count
                }
            };
            let existing = self
                .groups
                .get(name.as_borrowed())
                .map_or(0, |g| g.count_of(pid));
            if existing.saturating_add(have) > self.max_copies {
                return Err(over(name, *count));
            }
        }
        Ok(())
    }

    /// Whether [`Scope::remote_request`] would ignore `request` for asking
    /// more copies than [`Scope::max_copies`] allows: the refusal, for the
    /// caller to log with the sender.
    pub fn check_remote(&self, request: &Request<P, N>) -> Result<(), WriteError<N>> {
        match request {
            Request::Join { name, pid } => {
                self.check_copies(std::slice::from_ref(&(name.clone(), 1)), pid)
            }
            Request::JoinCounts { counts, pid } => self.check_copies(counts, pid),
            _ => Ok(()),
        }
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
        self.nodes.remove(node);
        let mut effects = Vec::new();
        if node == self.node {
            return effects;
        }
        let pids: Vec<P> = self
            .by_node
            .get(node)
            .map(|s| s.iter().cloned().collect())
            .unwrap_or_default();
        let reason = Reason::Exit(NODEDOWN_REASON.to_string());
        for pid in pids {
            self.leave_everything(&pid, &reason, false, &mut effects);
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
        let mut v: Vec<(N, Vec<P>)> = self
            .groups
            .iter()
            .map(|(name, g)| (name.to_owned(), g.history().cloned().collect()))
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

    fn exchange_to(&self, node: &str) -> Option<Effect<P, N>> {
        self.exchange_request().map(|request| Effect::Cast {
            node: node.to_string(),
            request,
        })
    }

    // ------------------------------------------------------------------
    // Local writes (owner side)

    /// Joins local `pid` to `name` once (`cpg:join/2`).
    pub fn join(&mut self, name: &N::Borrowed, pid: P) -> Result<Vec<Effect<P, N>>, WriteError<N>> {
        self.check_local(&pid)?;
        check_name(name)?;
        self.check_copies(&[(name.to_owned(), 1)], &pid)?;
        let mut effects = Vec::new();
        self.add_copies(name, &pid, 1, &mut effects);
        self.cast_peers(
            || Request::Join {
                name: name.to_owned(),
                pid,
            },
            &mut effects,
        );
        Ok(effects)
    }

    /// Joins local `pid` `count` times to each name, left to right
    /// (`cpg:join_counts/2`). Every count must be > 0; `[]` does nothing.
    pub fn join_counts(
        &mut self,
        counts: &[(N, usize)],
        pid: P,
    ) -> Result<Vec<Effect<P, N>>, WriteError<N>> {
        self.check_local(&pid)?;
        if counts.is_empty() {
            return Ok(Vec::new());
        }
        for (name, count) in counts {
            check_name(name.as_borrowed())?;
            check_count(name.as_borrowed(), *count)?;
        }
        self.check_copies(counts, &pid)?;
        let mut effects = Vec::new();
        for (name, count) in counts {
            self.add_copies(name.as_borrowed(), &pid, *count, &mut effects);
        }
        self.cast_peers(
            || Request::JoinCounts {
                counts: counts.to_vec(),
                pid,
            },
            &mut effects,
        );
        Ok(effects)
    }

    /// Removes the oldest copy of local `pid` from `name` (`cpg:leave/2`).
    /// Refused unless `pid` is a member of exactly that group name.
    pub fn leave(
        &mut self,
        name: &N::Borrowed,
        pid: &P,
    ) -> Result<Vec<Effect<P, N>>, WriteError<N>> {
        self.check_local(pid)?;
        if !self.is_member(name, pid) {
            return Err(WriteError::NotMember);
        }
        let mut effects = Vec::new();
        self.leave_group(name, pid, 1, &Reason::LeaveLocal, &mut effects);
        self.cast_peers(
            || Request::Leave {
                name: name.to_owned(),
                pid: pid.clone(),
            },
            &mut effects,
        );
        Ok(effects)
    }

    /// Removes up to `count` oldest copies of local `pid` per name
    /// (`cpg:leave_counts/2`). Every name must be one of the pid's groups and
    /// every count > 0; `[]` does nothing.
    pub fn leave_counts(
        &mut self,
        counts: &[(N, usize)],
        pid: &P,
    ) -> Result<Vec<Effect<P, N>>, WriteError<N>> {
        self.check_local(pid)?;
        if counts.is_empty() {
            return Ok(Vec::new());
        }
        for (name, count) in counts {
            if !self.is_member(name.as_borrowed(), pid) {
                return Err(WriteError::NotMember);
            }
            check_count(name.as_borrowed(), *count)?;
        }
        let mut merged: Vec<(N, usize)> = Vec::with_capacity(counts.len());
        for (name, count) in counts {
            match merged.iter_mut().find(|(n, _)| n == name) {
                Some((_, c)) => *c = c.saturating_add(*count),
                None => merged.push((name.clone(), *count)),
            }
        }
        let mut effects = Vec::new();
        for (name, count) in &merged {
            self.leave_group(
                name.as_borrowed(),
                pid,
                *count,
                &Reason::LeaveLocal,
                &mut effects,
            );
        }
        self.cast_peers(
            || Request::LeaveCounts {
                counts: merged,
                pid: pid.clone(),
            },
            &mut effects,
        );
        Ok(effects)
    }

    /// Removes every copy of local `pid` from every group (`cpg:leave/1`).
    /// Refused when the pid is in no group.
    pub fn leave_all(&mut self, pid: &P) -> Result<Vec<Effect<P, N>>, WriteError<N>> {
        self.check_local(pid)?;
        if !self.pids.contains_key(pid) {
            return Err(WriteError::NotMember);
        }
        let mut effects = Vec::new();
        self.leave_everything(pid, &Reason::LeaveLocal, true, &mut effects);
        self.cast_peers(|| Request::LeaveAll { pid: pid.clone() }, &mut effects);
        Ok(effects)
    }

    fn check_local(&self, pid: &P) -> Result<(), WriteError<N>> {
        if self.is_local(pid) {
            Ok(())
        } else {
            Err(WriteError::NotLocal)
        }
    }

    fn is_member(&self, name: &N::Borrowed, pid: &P) -> bool {
        self.pids.get(pid).is_some_and(|names| names.contains(name))
    }

    /// Casts the request built by `make` to every listened node (cpg's
    /// abcast to hidden and visible nodes).
    fn cast_peers(&self, make: impl FnOnce() -> Request<P, N>, effects: &mut Vec<Effect<P, N>>) {
        let mut peers = self.listened_nodes().peekable();
        if peers.peek().is_none() {
            return;
        }
        let request = make();
        for node in peers {
            effects.push(Effect::Cast {
                node: node.to_string(),
                request: request.clone(),
            });
        }
    }

    // ------------------------------------------------------------------
    // Requests from other nodes

    /// A request cast by the scope on `from_node`. Join/leave requests are
    /// applied to the (remote) pid they name, unvalidated as in cpg, except
    /// that requests about pids of this node, from this node, or with an
    /// empty group name are ignored; a leave for a pid or group the pid is
    /// not in is ignored. An exchange goes to [`Scope::exchange`] with the
    /// node named inside the message (trusted, as in cpg).
    pub fn remote_request(&mut self, from_node: &str, request: Request<P, N>) -> Vec<Effect<P, N>> {
        let mut effects = Vec::new();
        if let Request::Exchange { from, groups } = request {
            return self.exchange(&from, groups);
        }
        if from_node == self.node || request.pid().map_or(true, |p| self.is_local(p)) {
            return effects;
        }
        if self.check_remote(&request).is_err() {
            return effects;
        }
        match request {
            Request::Join { name, pid } => {
                let name = name.as_borrowed();
                if N::valid_remote(name) {
                    self.add_copies(name, &pid, 1, &mut effects);
                }
            }
            Request::JoinCounts { counts, pid } => {
                for (name, count) in counts {
                    let name = name.as_borrowed();
                    if N::valid_remote(name) && count > 0 {
                        self.add_copies(name, &pid, count, &mut effects);
                    }
                }
            }
            Request::Leave { name, pid } => {
                let name = name.as_borrowed();
                if self.is_member(name, &pid) {
                    self.leave_group(name, &pid, 1, &Reason::LeaveRemote, &mut effects);
                }
            }
            Request::LeaveCounts { counts, pid } => {
                if counts
                    .iter()
                    .all(|(name, _)| self.is_member(name.as_borrowed(), &pid))
                {
                    for (name, count) in counts {
                        let name = name.as_borrowed();
                        self.leave_group(name, &pid, count, &Reason::LeaveRemote, &mut effects);
                    }
                }
            }
            Request::LeaveAll { pid } => {
                self.leave_everything(&pid, &Reason::LeaveRemote, true, &mut effects);
            }
            Request::Exchange { .. } => {}
        }
        effects
    }

    /// `{exchange, FromNode, HistoryL}`: merges another scope's state.
    ///
    /// Ignored unless `from_node` is listened. Groups are merged in message
    /// order. A group we do not have is created from its history, keeping
    /// only pids of this node or of listened nodes (each copy notified, each
    /// pid monitored). For a group we have, each distinct pid of this node
    /// or of a listened node, in pid order, gets exactly the incoming number
    /// of copies: missing copies are added at the newest end, extra copies
    /// are removed from the newest end. Pids absent from the incoming
    /// history are not touched, and no group is deleted.
    pub fn exchange(&mut self, from_node: &str, groups: Vec<(N, Vec<P>)>) -> Vec<Effect<P, N>> {
        let mut effects = Vec::new();
        if !self.is_listened(from_node) {
            return effects;
        }
        for (name, history) in groups {
            let name = name.as_borrowed();
            if !N::valid_remote(name) {
                continue;
            }
            if self.groups.get(name).is_some() {
                self.merge_conflict(name, &history, &mut effects);
            } else {
                self.merge_new(name, &history, &mut effects);
            }
        }
        effects
    }

    /// `Some(is_local)` when a pid may be taken from an exchange.
    fn accept(&self, pid: &P) -> Option<bool> {
        if self.is_local(pid) {
            Some(true)
        } else if self.is_listened(pid.node()) {
            Some(false)
        } else {
            None
        }
    }

    fn merge_new(&mut self, name: &N::Borrowed, history: &[P], effects: &mut Vec<Effect<P, N>>) {
        let mut group = GroupData::new();
        for pid in history.iter().rev() {
            let Some(is_local) = self.accept(pid) else {
                continue;
            };
            if group.count_of(pid) >= self.max_copies {
                continue;
            }
            group.join(pid.clone(), is_local, 1);
            push_notify(effects, name, pid, &join_reason(is_local), 1);
            self.index_add(pid, name, effects);
        }
        if !group.is_empty() {
            self.groups.insert(name, group);
        }
    }

    fn merge_conflict(
        &mut self,
        name: &N::Borrowed,
        history: &[P],
        effects: &mut Vec<Effect<P, N>>,
    ) {
        let mut wanted: BTreeMap<&P, usize> = BTreeMap::new();
        for pid in history {
            *wanted.entry(pid).or_insert(0) += 1;
        }
        for (pid, count) in wanted {
            let Some(is_local) = self.accept(pid) else {
                continue;
            };
            let Some(group) = self.groups.get_mut(name) else {
                return;
            };
            let delta = group.set_count_newest(pid, is_local, count.min(self.max_copies));
            if delta > 0 {
                push_notify(
                    effects,
                    name,
                    pid,
                    &join_reason(is_local),
                    delta.unsigned_abs(),
                );
                self.index_add(pid, name, effects);
            } else if delta < 0 {
                let reason = if is_local {
                    Reason::LeaveLocal
                } else {
                    Reason::LeaveRemote
                };
                push_notify(effects, name, pid, &reason, delta.unsigned_abs());
            }
        }
    }

    // ------------------------------------------------------------------
    // Deaths

    /// A monitored pid (local or remote) died with `reason` (the `Info` of
    /// its `DOWN`): every copy is removed from every group (sorted by name),
    /// one leave notification per copy with [`Reason::Exit`]. Unknown pids
    /// are ignored. No demonitor is emitted.
    pub fn member_down(&mut self, pid: &P, reason: &str) -> Vec<Effect<P, N>> {
        let mut effects = Vec::new();
        self.leave_everything(pid, &Reason::Exit(reason.to_string()), false, &mut effects);
        effects
    }

    // ------------------------------------------------------------------
    // Internal updates

    /// Adds `count` copies at the newest end, creating the group; one join
    /// notification per call (as cpg's `notify_join/4`); monitors new pids.
    fn add_copies(
        &mut self,
        name: &N::Borrowed,
        pid: &P,
        count: usize,
        effects: &mut Vec<Effect<P, N>>,
    ) {
        let is_local = self.is_local(pid);
        push_notify(effects, name, pid, &join_reason(is_local), 1);
        self.groups
            .get_or_insert_with(name, GroupData::new)
            .join(pid.clone(), is_local, count);
        self.index_add(pid, name, effects);
    }

    /// Removes up to `count` oldest copies; erases the group when empty;
    /// drops the name (and the monitor) when the pid has no copy left.
    fn leave_group(
        &mut self,
        name: &N::Borrowed,
        pid: &P,
        count: usize,
        reason: &Reason,
        effects: &mut Vec<Effect<P, N>>,
    ) {
        let Some(group) = self.groups.get_mut(name) else {
            return;
        };
        let removed = group.leave_oldest(pid, count);
        let still_member = group.count_of(pid) > 0;
        if group.is_empty() {
            self.groups.remove(name);
        }
        push_notify(effects, name, pid, reason, removed);
        if !still_member {
            if let Some(names) = self.pids.get_mut(pid) {
                names.remove(name);
                if names.is_empty() {
                    self.forget_pid(pid);
                    effects.push(Effect::Demonitor(pid.clone()));
                }
            }
        }
    }

    /// Removes every copy of `pid` everywhere and forgets it.
    fn leave_everything(
        &mut self,
        pid: &P,
        reason: &Reason,
        demonitor: bool,
        effects: &mut Vec<Effect<P, N>>,
    ) {
        let Some(names) = self.forget_pid(pid) else {
            return;
        };
        if demonitor {
            effects.push(Effect::Demonitor(pid.clone()));
        }
        for name in names {
            let name = name.as_borrowed();
            let Some(group) = self.groups.get_mut(name) else {
                continue;
            };
            let removed = group.leave_all(pid);
            if group.is_empty() {
                self.groups.remove(name);
            }
            push_notify(effects, name, pid, reason, removed);
        }
    }

    /// Records that `pid` is in `name`; a new pid gets a monitor.
    fn index_add(&mut self, pid: &P, name: &N::Borrowed, effects: &mut Vec<Effect<P, N>>) {
        if let Some(names) = self.pids.get_mut(pid) {
            if !names.contains(name) {
                names.insert(name.to_owned());
            }
            return;
        }
        self.pids
            .insert(pid.clone(), BTreeSet::from([name.to_owned()]));
        match self.by_node.get_mut(pid.node()) {
            Some(set) => {
                set.insert(pid.clone());
            }
            None => {
                self.by_node
                    .insert(pid.node().to_string(), BTreeSet::from([pid.clone()]));
            }
        }
        effects.push(Effect::Monitor(pid.clone()));
    }

    fn forget_pid(&mut self, pid: &P) -> Option<BTreeSet<N>> {
        let names = self.pids.remove(pid)?;
        crate::util::shrink_sparse(&mut self.pids);
        if let Some(set) = self.by_node.get_mut(pid.node()) {
            set.remove(pid);
            if set.is_empty() {
                self.by_node.remove(pid.node());
            }
        }
        Some(names)
    }

    // ------------------------------------------------------------------
    // Reads

    /// The storage's lookup ([`GroupStore::find`]): for the trie, a
    /// wildcard in a query finds nothing, as `trie:find_match2` exits with
    /// badarg, which `cpg_data` turns into no_such_group.
    fn find(&self, name: &N::Borrowed) -> ReadResult<'_, &GroupData<P>, N> {
        self.groups
            .find(name)
            .ok_or_else(|| ReadError::NoSuchGroup(name.to_owned()))
    }

    fn members(
        &self,
        name: &N::Borrowed,
        part: Part,
        exclude: Option<&P>,
    ) -> ReadResult<'_, Vec<P>, N> {
        let (key, group) = self.find(name)?;
        let members = group.members(part, exclude);
        if members.is_empty() {
            Err(ReadError::NoSuchGroup(name.to_owned()))
        } else {
            Ok((key, members))
        }
    }

    fn pick(
        &self,
        name: &N::Borrowed,
        parts: &[Part],
        exclude: Option<&P>,
        choose: &mut dyn FnMut(usize) -> usize,
    ) -> ReadResult<'_, P, N> {
        let (key, group) = self.find(name)?;
        for &part in parts {
            let n = group.count_excluding(part, exclude);
            if n > 0 {
                let i = choose(n) % n;
                if let Some(pid) = group.nth_excluding(part, i, exclude) {
                    return Ok((key, pid.clone()));
                }
            }
        }
        Err(ReadError::NoProcess(name.to_owned()))
    }

    fn edge(
        &self,
        name: &N::Borrowed,
        part: Part,
        exclude: Option<&P>,
        oldest: bool,
    ) -> ReadResult<'_, P, N> {
        let (key, group) = self.find(name)?;
        let pid = if oldest {
            group.oldest(part, exclude)
        } else {
            group.newest(part, exclude)
        };
        pid.map(|p| (key, p.clone()))
            .ok_or_else(|| ReadError::NoProcess(name.to_owned()))
    }

    /// `cpg:get_members`: every copy (history order, newest first, with
    /// duplicates) except `exclude`; an empty result is `NoSuchGroup`.
    pub fn get_members(
        &self,
        name: &N::Borrowed,
        exclude: Option<&P>,
    ) -> ReadResult<'_, Vec<P>, N> {
        self.members(name, Part::All, exclude)
    }

    /// `cpg:get_members(Name)` as one shared snapshot (newest first): no
    /// copy while the group does not change ([`GroupData::shared_members`]).
    pub fn get_members_shared(&self, name: &N::Borrowed) -> ReadResult<'_, Arc<[P]>, N> {
        let (key, group) = self.find(name)?;
        if group.is_empty() {
            return Err(ReadError::NoSuchGroup(name.to_owned()));
        }
        Ok((key, group.shared_members()))
    }

    /// `cpg:get_local_members`: the copies of pids on this node; an empty
    /// result is `NoSuchGroup`.
    pub fn get_local_members(
        &self,
        name: &N::Borrowed,
        exclude: Option<&P>,
    ) -> ReadResult<'_, Vec<P>, N> {
        self.members(name, Part::Local, exclude)
    }

    /// `cpg:get_remote_members`: the copies of pids on other nodes; an empty
    /// result is `NoSuchGroup`.
    pub fn get_remote_members(
        &self,
        name: &N::Borrowed,
        exclude: Option<&P>,
    ) -> ReadResult<'_, Vec<P>, N> {
        self.members(name, Part::Remote, exclude)
    }

    /// `cpg:get_closest_pid`: a random local copy, else a random remote one.
    /// `choose(n)` returns an index in `0..n` (taken modulo `n`).
    pub fn get_closest_pid(
        &self,
        name: &N::Borrowed,
        exclude: Option<&P>,
        choose: &mut impl FnMut(usize) -> usize,
    ) -> ReadResult<'_, P, N> {
        self.pick(name, &[Part::Local, Part::Remote], exclude, choose)
    }

    /// `cpg:get_furthest_pid`: a random remote copy, else a random local one.
    pub fn get_furthest_pid(
        &self,
        name: &N::Borrowed,
        exclude: Option<&P>,
        choose: &mut impl FnMut(usize) -> usize,
    ) -> ReadResult<'_, P, N> {
        self.pick(name, &[Part::Remote, Part::Local], exclude, choose)
    }

    /// `cpg:get_random_pid`: a random copy (weighted by join count).
    pub fn get_random_pid(
        &self,
        name: &N::Borrowed,
        exclude: Option<&P>,
        choose: &mut impl FnMut(usize) -> usize,
    ) -> ReadResult<'_, P, N> {
        self.pick(name, &[Part::All], exclude, choose)
    }

    /// `cpg:get_local_pid`: a random local copy, else `NoProcess`.
    pub fn get_local_pid(
        &self,
        name: &N::Borrowed,
        exclude: Option<&P>,
        choose: &mut impl FnMut(usize) -> usize,
    ) -> ReadResult<'_, P, N> {
        self.pick(name, &[Part::Local], exclude, choose)
    }

    /// `cpg:get_remote_pid`: a random remote copy, else `NoProcess`.
    pub fn get_remote_pid(
        &self,
        name: &N::Borrowed,
        exclude: Option<&P>,
        choose: &mut impl FnMut(usize) -> usize,
    ) -> ReadResult<'_, P, N> {
        self.pick(name, &[Part::Remote], exclude, choose)
    }

    /// `cpg:get_oldest_pid`: the oldest copy that is not `exclude`.
    pub fn get_oldest_pid(&self, name: &N::Borrowed, exclude: Option<&P>) -> ReadResult<'_, P, N> {
        self.edge(name, Part::All, exclude, true)
    }

    /// `cpg:get_local_oldest_pid`: the oldest local copy.
    pub fn get_local_oldest_pid(
        &self,
        name: &N::Borrowed,
        exclude: Option<&P>,
    ) -> ReadResult<'_, P, N> {
        self.edge(name, Part::Local, exclude, true)
    }

    /// `cpg:get_remote_oldest_pid`: the oldest remote copy.
    pub fn get_remote_oldest_pid(
        &self,
        name: &N::Borrowed,
        exclude: Option<&P>,
    ) -> ReadResult<'_, P, N> {
        self.edge(name, Part::Remote, exclude, true)
    }

    /// `cpg:get_newest_pid`: the newest copy that is not `exclude`.
    pub fn get_newest_pid(&self, name: &N::Borrowed, exclude: Option<&P>) -> ReadResult<'_, P, N> {
        self.edge(name, Part::All, exclude, false)
    }

    /// `cpg:get_local_newest_pid`: the newest local copy.
    pub fn get_local_newest_pid(
        &self,
        name: &N::Borrowed,
        exclude: Option<&P>,
    ) -> ReadResult<'_, P, N> {
        self.edge(name, Part::Local, exclude, false)
    }

    /// `cpg:get_remote_newest_pid`: the newest remote copy.
    pub fn get_remote_newest_pid(
        &self,
        name: &N::Borrowed,
        exclude: Option<&P>,
    ) -> ReadResult<'_, P, N> {
        self.edge(name, Part::Remote, exclude, false)
    }

    /// `cpg:which_groups/0`: every group name (patterns included), in name
    /// order.
    pub fn which_groups(&self) -> Vec<N> {
        self.groups.iter().map(|(k, _)| k.to_owned()).collect()
    }

    /// `cpg:which_groups(Pid)`: the groups of `pid`, in name order; `[]` if
    /// unknown.
    pub fn which_groups_of(&self, pid: &P) -> Vec<N> {
        self.pids
            .get(pid)
            .map(|names| names.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// `cpg:which_groups_counts(Pid)`: `(name, copies)` per group of `pid`,
    /// sorted by name; `[]` if unknown.
    pub fn which_groups_counts(&self, pid: &P) -> Vec<(N, usize)> {
        let Some(names) = self.pids.get(pid) else {
            return Vec::new();
        };
        names
            .iter()
            .filter_map(|name| {
                let count = self
                    .groups
                    .get(name.as_borrowed())
                    .map_or(0, |g| g.count_of(pid));
                (count > 0).then(|| (name.clone(), count))
            })
            .collect()
    }

    /// `cpg:join_count(Name, Pid)`: copies of `pid` in the group stored
    /// under exactly `name` (no pattern matching); 0 if none.
    pub fn join_count(&self, name: &N::Borrowed, pid: &P) -> usize {
        self.groups.get(name).map_or(0, |g| g.count_of(pid))
    }

    /// The group stored under exactly `name`.
    pub fn group(&self, name: &N::Borrowed) -> Option<&GroupData<P>> {
        self.groups.get(name)
    }

    /// A `#cpg_data{}` copy of the group stored under exactly `name`.
    pub fn group_data(&self, name: &N::Borrowed) -> Option<CpgData<P>> {
        self.groups.get(name).map(GroupData::to_data)
    }

    /// Number of groups.
    pub fn group_count(&self) -> usize {
        self.groups.len()
    }

    /// Totals over every group: (memberships, local memberships). A pid
    /// joined twice counts twice, as in `get_members`.
    pub fn member_totals(&self) -> (usize, usize) {
        self.groups.iter().fold((0, 0), |(all, local), (_, g)| {
            (all + g.len(), local + g.local_count())
        })
    }

    /// Number of distinct pids in at least one group.
    pub fn pid_count(&self) -> usize {
        self.pids.len()
    }

    /// True when the scope monitors `pid` (it is in at least one group).
    pub fn is_monitored(&self, pid: &P) -> bool {
        self.pids.contains_key(pid)
    }

    /// The monitored pids, in no particular order.
    pub fn monitored_pids(&self) -> impl Iterator<Item = &P> + '_ {
        self.pids.keys()
    }
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

fn push_notify<P: Clone, N: GroupKey>(
    effects: &mut Vec<Effect<P, N>>,
    name: &N::Borrowed,
    pid: &P,
    reason: &Reason,
    times: usize,
) {
    for _ in 0..times {
        effects.push(Effect::Notify {
            name: name.to_owned(),
            pid: pid.clone(),
            reason: reason.clone(),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::VecDeque;

    /// Test pid: ordered by id first (like Erlang's serial-first order).
    #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
    struct T {
        id: u32,
        node: &'static str,
    }

    impl PidInfo for T {
        fn node(&self) -> &str {
            self.node
        }
    }

    fn t(node: &'static str, id: u32) -> T {
        T { id, node }
    }

    type E = Effect<T>;

    fn notifies<N: Clone>(effects: &[Effect<T, N>]) -> Vec<(N, T, Reason)> {
        effects
            .iter()
            .filter_map(|e| match e {
                Effect::Notify { name, pid, reason } => {
                    Some((name.clone(), pid.clone(), reason.clone()))
                }
                _ => None,
            })
            .collect()
    }

    fn casts<N: Clone>(effects: &[Effect<T, N>]) -> Vec<(String, Request<T, N>)> {
        effects
            .iter()
            .filter_map(|e| match e {
                Effect::Cast { node, request } => Some((node.clone(), request.clone())),
                _ => None,
            })
            .collect()
    }

    fn monitors<N>(effects: &[Effect<T, N>]) -> Vec<T> {
        effects
            .iter()
            .filter_map(|e| match e {
                Effect::Monitor(p) => Some(p.clone()),
                _ => None,
            })
            .collect()
    }

    fn demonitors<N>(effects: &[Effect<T, N>]) -> Vec<T> {
        effects
            .iter()
            .filter_map(|e| match e {
                Effect::Demonitor(p) => Some(p.clone()),
                _ => None,
            })
            .collect()
    }

    fn n(name: &str, pid: &T, reason: Reason) -> (String, T, Reason) {
        (name.to_string(), pid.clone(), reason)
    }

    fn history<N: GroupKey>(s: &Scope<T, N>, name: &N::Borrowed) -> Vec<T> {
        s.group_data(name).map(|d| d.history).unwrap_or_default()
    }

    fn counts(v: &[(&str, usize)]) -> Vec<(String, usize)> {
        v.iter().map(|(n, c)| (n.to_string(), *c)).collect()
    }

    /// Internal consistency of one scope.
    fn check_invariants<N: GroupKey>(s: &Scope<T, N>) {
        let mut seen: BTreeMap<T, BTreeSet<N>> = BTreeMap::new();
        for name in s.which_groups() {
            let g = s.group(name.as_borrowed()).unwrap();
            assert!(!g.is_empty(), "empty group {name} kept");
            let d = g.to_data();
            let local: Vec<T> = d
                .history
                .iter()
                .filter(|p| s.is_local(p))
                .cloned()
                .collect();
            let remote: Vec<T> = d
                .history
                .iter()
                .filter(|p| !s.is_local(p))
                .cloned()
                .collect();
            assert_eq!(d.local, local);
            assert_eq!(d.remote, remote);
            assert_eq!(d.local_count, local.len());
            assert_eq!(d.remote_count, remote.len());
            for p in g.pids() {
                assert!(g.count_of(p) > 0);
                seen.entry(p.clone()).or_default().insert(name.clone());
            }
        }
        assert_eq!(s.pids.len(), seen.len());
        for (p, names) in &seen {
            assert_eq!(s.pids.get(p), Some(names), "index of {p:?}");
            assert!(s.by_node[p.node()].contains(p));
        }
        assert_eq!(
            s.by_node.values().map(BTreeSet::len).sum::<usize>(),
            s.pids.len()
        );
    }

    // ------------------------------------------------------------------
    // Local writes

    #[test]
    fn local_join_effects() {
        let mut s = Scope::new("a");
        assert!(s.node_up("b", true).is_empty()); // no groups yet
        s.node_up("h", false);
        let a1 = t("a", 1);
        let e = s.join("g", a1.clone()).unwrap();
        assert_eq!(
            e,
            vec![
                Effect::Notify {
                    name: "g".into(),
                    pid: a1.clone(),
                    reason: Reason::JoinLocal
                },
                Effect::Monitor(a1.clone()),
                Effect::Cast {
                    node: "b".into(),
                    request: Request::Join {
                        name: "g".into(),
                        pid: a1.clone()
                    }
                },
            ]
        );
        // second join: no monitor
        let e = s.join("g", a1.clone()).unwrap();
        assert!(monitors(&e).is_empty());
        let e = s.join("h", a1.clone()).unwrap();
        assert!(monitors(&e).is_empty());
        assert_eq!(s.which_groups_of(&a1), vec!["g", "h"]);
        assert_eq!(s.which_groups_counts(&a1), counts(&[("g", 2), ("h", 1)]));
        let d = s.group_data("g").unwrap();
        assert_eq!((d.local_count, d.remote_count), (2, 0));
        check_invariants(&s);
    }

    #[test]
    fn local_write_errors() {
        let mut s = Scope::new("a");
        s.node_up("b", true);
        let a1 = t("a", 1);
        let b1 = t("b", 1);
        assert_eq!(s.join("g", b1.clone()), Err(WriteError::NotLocal));
        assert_eq!(
            s.join("", a1.clone()),
            Err(WriteError::InvalidName(String::new()))
        );
        assert_eq!(
            s.join("a**", a1.clone()),
            Err(WriteError::InvalidName("a**".into()))
        );
        assert_eq!(s.join_counts(&[], a1.clone()), Ok(vec![]));
        assert_eq!(s.join_counts(&[], b1.clone()), Err(WriteError::NotLocal));
        assert_eq!(
            s.join_counts(&counts(&[("g", 1), ("h", 0)]), a1.clone()),
            Err(WriteError::InvalidCount {
                name: "h".into(),
                count: 0
            })
        );
        assert_eq!(s.group_count(), 0, "nothing done on error");
        assert_eq!(s.leave("g", &a1), Err(WriteError::NotMember));
        assert_eq!(s.leave_all(&a1), Err(WriteError::NotMember));
        assert_eq!(
            s.leave_counts(&counts(&[("g", 1)]), &a1),
            Err(WriteError::NotMember)
        );
        s.join("g", a1.clone()).unwrap();
        assert_eq!(s.leave("h", &a1), Err(WriteError::NotMember));
        assert_eq!(s.leave("g", &b1), Err(WriteError::NotLocal));
        assert_eq!(s.leave_all(&b1), Err(WriteError::NotLocal));
        assert_eq!(
            s.leave_counts(&counts(&[("g", 1), ("h", 1)]), &a1),
            Err(WriteError::NotMember)
        );
        assert_eq!(
            s.leave_counts(&counts(&[("g", 0)]), &a1),
            Err(WriteError::InvalidCount {
                name: "g".into(),
                count: 0
            })
        );
        assert_eq!(s.leave_counts(&[], &a1), Ok(vec![]));
        assert_eq!(history(&s, "g"), vec![a1.clone()]);
        // a pattern name is a valid name to join
        assert!(s.join("a/*", a1.clone()).is_ok());
    }

    #[test]
    fn findings_single_node_sequence() {
        let mut s = Scope::new("n");
        let (a, b, c) = (t("n", 1), t("n", 2), t("n", 3));
        s.join("g", a.clone()).unwrap();
        s.join("g", b.clone()).unwrap();
        s.join("g", a.clone()).unwrap();
        let e = s.join_counts(&counts(&[("g", 2)]), c.clone()).unwrap();
        // one notification per group per request, even for count 2
        assert_eq!(notifies(&e), vec![n("g", &c, Reason::JoinLocal)]);
        assert_eq!(
            s.group_data("g").unwrap(),
            CpgData {
                local_count: 5,
                local: vec![c.clone(), c.clone(), a.clone(), b.clone(), a.clone()],
                remote_count: 0,
                remote: vec![],
                history: vec![c.clone(), c.clone(), a.clone(), b.clone(), a.clone()],
            }
        );
        s.leave("g", &a).unwrap();
        assert_eq!(
            history(&s, "g"),
            vec![c.clone(), c.clone(), a.clone(), b.clone()]
        );
        s.join("g", b.clone()).unwrap();
        assert_eq!(
            history(&s, "g"),
            vec![b.clone(), c.clone(), c.clone(), a.clone(), b.clone()]
        );
        let e = s.leave_counts(&counts(&[("g", 5)]), &c).unwrap();
        assert_eq!(notifies(&e), vec![n("g", &c, Reason::LeaveLocal); 2]);
        assert_eq!(demonitors(&e), vec![c.clone()]);
        assert_eq!(history(&s, "g"), vec![b.clone(), a.clone(), b.clone()]);
        let e = s.leave_all(&a).unwrap();
        assert_eq!(demonitors(&e), vec![a.clone()]);
        assert_eq!(history(&s, "g"), vec![b.clone(), b.clone()]);
        assert!(!s.is_monitored(&a));
        check_invariants(&s);
    }

    #[test]
    fn leave_last_copy_demonitors_and_deletes_group() {
        let mut s = Scope::new("a");
        s.node_up("b", true);
        let a1 = t("a", 1);
        s.join("g", a1.clone()).unwrap();
        s.join("h", a1.clone()).unwrap();
        s.join("h", a1.clone()).unwrap();
        let e = s.leave("g", &a1).unwrap();
        assert_eq!(notifies(&e), vec![n("g", &a1, Reason::LeaveLocal)]);
        assert!(demonitors(&e).is_empty(), "still in h");
        assert_eq!(s.group("g").map(|_| ()), None, "empty group erased");
        assert_eq!(
            casts(&e),
            vec![(
                "b".into(),
                Request::Leave {
                    name: "g".into(),
                    pid: a1.clone()
                }
            )]
        );
        let e = s.leave("h", &a1).unwrap();
        assert!(demonitors(&e).is_empty(), "one copy left in h");
        let e = s.leave("h", &a1).unwrap();
        assert_eq!(demonitors(&e), vec![a1.clone()]);
        assert_eq!(s.group_count(), 0);
        assert_eq!(s.which_groups_of(&a1), Vec::<String>::new());
        check_invariants(&s);
    }

    #[test]
    fn local_joins_over_max_copies_refused() {
        let mut s = Scope::new("a");
        assert_eq!(s.max_copies(), DEFAULT_MAX_COPIES);
        let a1 = t("a", 1);
        // Refused before anything is allocated for it.
        let e = s
            .join_counts(&counts(&[("x", 10_000_000_000)]), a1.clone())
            .unwrap_err();
        assert!(matches!(
            e,
            WriteError::TooManyCopies {
                count: 10_000_000_000,
                ..
            }
        ));
        assert_eq!(s.group_count(), 0);
        s.set_max_copies(5);
        s.join_counts(&counts(&[("g", 4)]), a1.clone()).unwrap();
        s.join("g", a1.clone()).unwrap();
        assert!(matches!(
            s.join("g", a1.clone()),
            Err(WriteError::TooManyCopies { max: 5, .. })
        ));
        // Repeated names add up; so does the whole request.
        for bad in [&[("h", 3), ("h", 3)][..], &[("h", 3), ("i", 3)][..]] {
            assert!(matches!(
                s.join_counts(&counts(bad), a1.clone()),
                Err(WriteError::TooManyCopies { .. })
            ));
        }
        assert_eq!(s.join_count("g", &a1), 5);
        assert_eq!(s.join_count("h", &a1), 0);
        // Another pid has its own allowance.
        s.join_counts(&counts(&[("g", 5)]), t("a", 2)).unwrap();
        check_invariants(&s);
    }

    #[test]
    fn remote_joins_over_max_copies_ignored() {
        let mut s = Scope::new("a");
        s.node_up("b", true);
        let b1 = t("b", 1);
        let huge = Request::JoinCounts {
            counts: counts(&[("x", 10_000_000_000)]),
            pid: b1.clone(),
        };
        assert!(s.check_remote(&huge).is_err());
        assert!(s.remote_request("b", huge).is_empty());
        assert_eq!(s.group_count(), 0);
        s.set_max_copies(3);
        let join = || Request::Join {
            name: "g".into(),
            pid: b1.clone(),
        };
        for _ in 0..3 {
            assert!(!s.remote_request("b", join()).is_empty());
        }
        assert!(s.check_remote(&join()).is_err());
        assert!(s.remote_request("b", join()).is_empty());
        assert_eq!(s.join_count("g", &b1), 3);
        // An exchange gives a pid no more than the cap either, for a new
        // group or one we have.
        let many = vec![b1.clone(); 7];
        s.exchange("b", vec![("g".into(), many.clone()), ("n".into(), many)]);
        assert_eq!(s.join_count("g", &b1), 3);
        assert_eq!(s.join_count("n", &b1), 3);
        check_invariants(&s);
    }

    #[test]
    fn leave_counts_duplicates_are_merged() {
        let mut s = Scope::new("a");
        s.node_up("b", true);
        let a1 = t("a", 1);
        s.join_counts(&counts(&[("g", 3)]), a1.clone()).unwrap();
        let e = s.leave_counts(&counts(&[("g", 1), ("g", 1)]), &a1).unwrap();
        assert_eq!(notifies(&e).len(), 2);
        assert_eq!(s.join_count("g", &a1), 1);
        assert_eq!(
            casts(&e),
            vec![(
                "b".into(),
                Request::LeaveCounts {
                    counts: counts(&[("g", 2)]),
                    pid: a1.clone()
                }
            )]
        );
    }

    #[test]
    fn leave_all_local() {
        let mut s = Scope::new("a");
        s.node_up("b", true);
        s.node_up("c", true);
        let (a1, a2) = (t("a", 1), t("a", 2));
        s.join_counts(&counts(&[("z", 2), ("g", 1)]), a1.clone())
            .unwrap();
        s.join("g", a2.clone()).unwrap();
        let e = s.leave_all(&a1).unwrap();
        assert_eq!(e[0], Effect::Demonitor(a1.clone()));
        // names in sorted order, one notification per copy
        assert_eq!(
            notifies(&e),
            vec![
                n("g", &a1, Reason::LeaveLocal),
                n("z", &a1, Reason::LeaveLocal),
                n("z", &a1, Reason::LeaveLocal)
            ]
        );
        assert_eq!(
            casts(&e),
            vec![
                ("b".into(), Request::LeaveAll { pid: a1.clone() }),
                ("c".into(), Request::LeaveAll { pid: a1.clone() })
            ]
        );
        assert_eq!(s.which_groups(), vec!["g"]);
        check_invariants(&s);
    }

    // ------------------------------------------------------------------
    // Remote requests

    #[test]
    fn remote_requests() {
        let mut s = Scope::new("b");
        s.node_up("a", true);
        let (a1, b1) = (t("a", 1), t("b", 1));
        let e = s.remote_request(
            "a",
            Request::Join {
                name: "g".into(),
                pid: a1.clone(),
            },
        );
        assert_eq!(notifies(&e), vec![n("g", &a1, Reason::JoinRemote)]);
        assert_eq!(monitors(&e), vec![a1.clone()]);
        assert!(casts(&e).is_empty(), "replicas never cast");
        let e = s.remote_request(
            "a",
            Request::JoinCounts {
                counts: counts(&[("g", 2), ("h", 1)]),
                pid: a1.clone(),
            },
        );
        assert!(monitors(&e).is_empty());
        assert_eq!(notifies(&e).len(), 2);
        let d = s.group_data("g").unwrap();
        assert_eq!((d.local_count, d.remote_count), (0, 3));
        assert_eq!(d.remote, vec![a1.clone(); 3]);
        // leave of unknown group / pid: ignored
        assert!(s
            .remote_request(
                "a",
                Request::Leave {
                    name: "x".into(),
                    pid: a1.clone()
                }
            )
            .is_empty());
        assert!(s
            .remote_request(
                "a",
                Request::Leave {
                    name: "g".into(),
                    pid: t("a", 9)
                }
            )
            .is_empty());
        assert!(s
            .remote_request("a", Request::LeaveAll { pid: t("a", 9) })
            .is_empty());
        // leave_counts with one unknown name: nothing at all
        assert!(s
            .remote_request(
                "a",
                Request::LeaveCounts {
                    counts: counts(&[("g", 1), ("x", 1)]),
                    pid: a1.clone()
                }
            )
            .is_empty());
        assert_eq!(s.join_count("g", &a1), 3);
        // replica side does not validate counts: more than present removes all
        let e = s.remote_request(
            "a",
            Request::LeaveCounts {
                counts: counts(&[("g", 9)]),
                pid: a1.clone(),
            },
        );
        assert_eq!(notifies(&e), vec![n("g", &a1, Reason::LeaveRemote); 3]);
        assert!(demonitors(&e).is_empty());
        assert!(s.group("g").is_none());
        let e = s.remote_request("a", Request::LeaveAll { pid: a1.clone() });
        assert_eq!(demonitors(&e), vec![a1.clone()]);
        assert_eq!(notifies(&e), vec![n("h", &a1, Reason::LeaveRemote)]);
        // requests about our own pids, from ourselves, empty names, zero counts: ignored
        s.join("g", b1.clone()).unwrap();
        for r in [
            Request::Join {
                name: "g".into(),
                pid: b1.clone(),
            },
            Request::Leave {
                name: "g".into(),
                pid: b1.clone(),
            },
            Request::LeaveAll { pid: b1.clone() },
            Request::LeaveCounts {
                counts: counts(&[("g", 1)]),
                pid: b1.clone(),
            },
        ] {
            assert!(s.remote_request("a", r).is_empty());
        }
        assert!(s
            .remote_request(
                "b",
                Request::Join {
                    name: "g".into(),
                    pid: a1.clone()
                }
            )
            .is_empty());
        assert!(s
            .remote_request(
                "a",
                Request::Join {
                    name: String::new(),
                    pid: a1.clone()
                }
            )
            .is_empty());
        assert!(s
            .remote_request(
                "a",
                Request::JoinCounts {
                    counts: counts(&[("q", 0)]),
                    pid: a1.clone()
                }
            )
            .is_empty());
        assert_eq!(history(&s, "g"), vec![b1.clone()]);
        assert_eq!(s.which_groups(), vec!["g"]);
        check_invariants(&s);
    }

    #[test]
    fn remote_join_from_unlistened_node_is_applied() {
        // cpg applies join casts whatever the sender's node type.
        let mut s = Scope::new("b");
        s.node_up("h", false);
        let h1 = t("h", 1);
        let e = s.remote_request(
            "h",
            Request::Join {
                name: "g".into(),
                pid: h1.clone(),
            },
        );
        assert_eq!(monitors(&e), vec![h1.clone()]);
        assert_eq!(history(&s, "g"), vec![h1.clone()]);
        // but our writes are not cast to it
        let e = s.join("g", t("b", 1)).unwrap();
        assert!(casts(&e).is_empty());
        // and it gets no exchange on connection, but does on {new, Node}
        assert!(s.node_up("h", false).is_empty());
        assert_eq!(casts(&s.new_node("h")).len(), 1);
    }

    // ------------------------------------------------------------------
    // Deaths and nodes

    #[test]
    fn member_down_removes_everything() {
        let mut s = Scope::new("b");
        s.node_up("a", true);
        let (a1, b1) = (t("a", 1), t("b", 1));
        s.remote_request(
            "a",
            Request::JoinCounts {
                counts: counts(&[("z", 1), ("g", 2)]),
                pid: a1.clone(),
            },
        );
        s.join_counts(&counts(&[("g", 2)]), b1.clone()).unwrap();
        let e = s.member_down(&b1, "killed");
        assert_eq!(
            notifies(&e),
            vec![n("g", &b1, Reason::Exit("killed".into())); 2]
        );
        assert!(demonitors(&e).is_empty());
        assert!(casts(&e).is_empty(), "nothing is sent when a member dies");
        let e = s.member_down(&a1, "noproc");
        assert_eq!(
            notifies(&e),
            vec![
                n("g", &a1, Reason::Exit("noproc".into())),
                n("g", &a1, Reason::Exit("noproc".into())),
                n("z", &a1, Reason::Exit("noproc".into()))
            ]
        );
        assert_eq!(s.group_count(), 0);
        assert!(s.member_down(&a1, "noproc").is_empty());
        check_invariants(&s);
    }

    #[test]
    fn node_down_removes_members_of_that_node() {
        let mut s = Scope::new("b");
        s.node_up("a", true);
        s.node_up("c", true);
        let (a1, a2, c1, b1) = (t("a", 1), t("a", 2), t("c", 1), t("b", 1));
        s.remote_request(
            "a",
            Request::Join {
                name: "g".into(),
                pid: a1.clone(),
            },
        );
        s.remote_request(
            "a",
            Request::Join {
                name: "h".into(),
                pid: a2.clone(),
            },
        );
        s.remote_request(
            "c",
            Request::Join {
                name: "g".into(),
                pid: c1.clone(),
            },
        );
        s.join("h", b1.clone()).unwrap();
        let e = s.node_down("a");
        assert_eq!(
            notifies(&e),
            vec![
                n("g", &a1, Reason::Exit(NODEDOWN_REASON.into())),
                n("h", &a2, Reason::Exit(NODEDOWN_REASON.into()))
            ]
        );
        assert!(demonitors(&e).is_empty());
        assert!(!s.is_listened("a"));
        assert_eq!(s.connected_nodes().collect::<Vec<_>>(), vec!["c"]);
        assert_eq!(history(&s, "g"), vec![c1.clone()]);
        assert_eq!(history(&s, "h"), vec![b1.clone()]);
        // our writes now go to c only
        let e = s.join("g", b1.clone()).unwrap();
        assert_eq!(casts(&e).len(), 1);
        check_invariants(&s);
    }

    #[test]
    fn node_up_sends_exchange_reverse_alphabetical() {
        let mut s = Scope::new("a");
        assert!(s.new_node("b").is_empty(), "no groups, nothing sent");
        let a1 = t("a", 1);
        for g in ["/x/*", "pre", "m"] {
            s.join(g, a1.clone()).unwrap();
        }
        s.join("m", t("a", 2)).unwrap();
        let e = s.node_up("b", true);
        let expect = Request::Exchange {
            from: "a".into(),
            groups: vec![
                ("pre".into(), vec![a1.clone()]),
                ("m".into(), vec![t("a", 2), a1.clone()]),
                ("/x/*".into(), vec![a1.clone()]),
            ],
        };
        assert_eq!(
            e,
            vec![Effect::Cast {
                node: "b".into(),
                request: expect.clone()
            }]
        );
        assert!(s.node_up("h", false).is_empty());
        assert_eq!(
            s.new_node("h"),
            vec![Effect::Cast {
                node: "h".into(),
                request: expect
            }]
        );
        assert!(s.node_up("a", true).is_empty(), "own node ignored");
        assert!(s.new_node("a").is_empty());
    }

    // ------------------------------------------------------------------
    // Exchange merge

    #[test]
    fn exchange_from_unlistened_node_ignored() {
        let mut s = Scope::new("b");
        let a1 = t("a", 1);
        let groups = vec![("g".to_string(), vec![a1.clone()])];
        assert!(s.exchange("a", groups.clone()).is_empty(), "not connected");
        s.node_up("a", false);
        assert!(
            s.exchange("a", groups.clone()).is_empty(),
            "connected, not listened"
        );
        assert!(s.exchange("b", groups.clone()).is_empty(), "ourselves");
        assert!(s
            .remote_request(
                "a",
                Request::Exchange {
                    from: "ghost".into(),
                    groups: groups.clone()
                }
            )
            .is_empty());
        assert_eq!(s.group_count(), 0);
        s.node_up("a", true);
        let e = s.remote_request(
            "x",
            Request::Exchange {
                from: "a".into(),
                groups,
            },
        );
        assert_eq!(monitors(&e), vec![a1.clone()]);
        assert_eq!(history(&s, "g"), vec![a1]);
    }

    /// The live crafted-exchange experiment of findings (b), node b.
    #[test]
    fn findings_crafted_exchange() {
        let mut s = Scope::new("b");
        s.node_up("a", true);
        let (pa1, pa2, pb1, fake) = (t("a", 100), t("a", 101), t("b", 103), t("ghost", 5));
        // g: history [PB1, PA1, PA2, PA1]
        s.remote_request(
            "a",
            Request::Join {
                name: "g".into(),
                pid: pa1.clone(),
            },
        );
        s.remote_request(
            "a",
            Request::Join {
                name: "g".into(),
                pid: pa2.clone(),
            },
        );
        s.remote_request(
            "a",
            Request::Join {
                name: "g".into(),
                pid: pa1.clone(),
            },
        );
        s.join("g", pb1.clone()).unwrap();
        assert_eq!(
            history(&s, "g"),
            vec![pb1.clone(), pa1.clone(), pa2.clone(), pa1.clone()]
        );
        let e = s.exchange(
            "a",
            vec![
                (
                    "g".into(),
                    vec![
                        pb1.clone(),
                        pa2.clone(),
                        pb1.clone(),
                        pb1.clone(),
                        pa1.clone(),
                        fake.clone(),
                    ],
                ),
                (
                    "n".into(),
                    vec![
                        pa1.clone(),
                        pb1.clone(),
                        fake.clone(),
                        pa2.clone(),
                        pa1.clone(),
                        fake.clone(),
                    ],
                ),
            ],
        );
        assert_eq!(
            s.group_data("g").unwrap(),
            CpgData {
                local_count: 3,
                local: vec![pb1.clone(); 3],
                remote_count: 2,
                remote: vec![pa2.clone(), pa1.clone()],
                history: vec![
                    pb1.clone(),
                    pb1.clone(),
                    pb1.clone(),
                    pa2.clone(),
                    pa1.clone()
                ],
            }
        );
        assert_eq!(
            s.group_data("n").unwrap(),
            CpgData {
                local_count: 1,
                local: vec![pb1.clone()],
                remote_count: 3,
                remote: vec![pa1.clone(), pa2.clone(), pa1.clone()],
                history: vec![pa1.clone(), pb1.clone(), pa2.clone(), pa1.clone()],
            }
        );
        assert_eq!(
            notifies(&e),
            vec![
                n("g", &pa1, Reason::LeaveRemote),
                n("g", &pb1, Reason::JoinLocal),
                n("g", &pb1, Reason::JoinLocal),
                n("n", &pa1, Reason::JoinRemote),
                n("n", &pa2, Reason::JoinRemote),
                n("n", &pb1, Reason::JoinLocal),
                n("n", &pa1, Reason::JoinRemote),
            ]
        );
        assert!(monitors(&e).is_empty(), "all already monitored");
        assert!(casts(&e).is_empty(), "merging never sends");
        assert!(!s.is_monitored(&fake));
        check_invariants(&s);
    }

    #[test]
    fn exchange_new_group_filtered_by_connected_nodes() {
        let mut s = Scope::new("b");
        s.node_up("a", true);
        s.node_up("h", false);
        let (a1, c1, h1, b1) = (t("a", 1), t("c", 1), t("h", 1), t("b", 1));
        let e = s.exchange(
            "a",
            vec![
                ("x".into(), vec![c1.clone(), h1.clone()]),
                (
                    "g".into(),
                    vec![a1.clone(), c1.clone(), b1.clone(), a1.clone(), h1.clone()],
                ),
            ],
        );
        assert!(s.group("x").is_none(), "nothing reachable: not created");
        assert_eq!(
            s.group_data("g").unwrap(),
            CpgData {
                local_count: 1,
                local: vec![b1.clone()],
                remote_count: 2,
                remote: vec![a1.clone(), a1.clone()],
                history: vec![a1.clone(), b1.clone(), a1.clone()],
            }
        );
        // oldest first, one per copy; each pid monitored once
        assert_eq!(
            notifies(&e),
            vec![
                n("g", &a1, Reason::JoinRemote),
                n("g", &b1, Reason::JoinLocal),
                n("g", &a1, Reason::JoinRemote),
            ]
        );
        assert_eq!(monitors(&e), vec![a1.clone(), b1.clone()]);
        // relay: pids of another listened node are accepted too
        s.node_up("c", true);
        s.exchange("a", vec![("g".into(), vec![c1.clone()])]);
        assert_eq!(
            history(&s, "g"),
            vec![c1.clone(), a1.clone(), b1.clone(), a1.clone()]
        );
        check_invariants(&s);
    }

    #[test]
    fn exchange_conflict_rules() {
        let mut s = Scope::new("b");
        s.node_up("a", true);
        let (a1, a2, b1) = (t("a", 1), t("a", 2), t("b", 1));
        s.remote_request(
            "a",
            Request::JoinCounts {
                counts: counts(&[("g", 3)]),
                pid: a1.clone(),
            },
        );
        s.join("g", b1.clone()).unwrap();
        s.join("g", b1.clone()).unwrap();
        s.remote_request(
            "a",
            Request::Join {
                name: "g".into(),
                pid: a2.clone(),
            },
        );
        // history [a2, b1, b1, a1, a1, a1]
        // incoming: a1 x1 (remove 2 newest a1), b1 x3 (add 1), a2 absent (untouched)
        let e = s.exchange(
            "a",
            vec![(
                "g".into(),
                vec![b1.clone(), a1.clone(), b1.clone(), b1.clone()],
            )],
        );
        assert_eq!(
            history(&s, "g"),
            vec![b1.clone(), a2.clone(), b1.clone(), b1.clone(), a1.clone()]
        );
        assert_eq!(
            notifies(&e),
            vec![
                n("g", &a1, Reason::LeaveRemote),
                n("g", &a1, Reason::LeaveRemote),
                n("g", &b1, Reason::JoinLocal)
            ]
        );
        // own pid forced down to the sender's count (newest copies removed)
        let e = s.exchange("a", vec![("g".into(), vec![b1.clone()])]);
        assert_eq!(notifies(&e), vec![n("g", &b1, Reason::LeaveLocal); 2]);
        assert_eq!(history(&s, "g"), vec![a2.clone(), b1.clone(), a1.clone()]);
        assert!(demonitors(&e).is_empty());
        check_invariants(&s);
    }

    #[test]
    fn findings_reconnect_after_netsplit() {
        let mut a = Scope::new("a");
        let mut b = Scope::new("b");
        let (pa1, pb1) = (t("a", 1), t("b", 1));
        b.join_counts(&counts(&[("g", 3)]), pb1.clone()).unwrap();
        a.join_counts(&counts(&[("g", 2)]), pa1.clone()).unwrap();
        let ea = a.node_up("b", true);
        let eb = b.node_up("a", true);
        for (node, req) in casts(&ea) {
            assert_eq!(node, "b");
            b.remote_request("a", req);
        }
        for (_, req) in casts(&eb) {
            a.remote_request("b", req);
        }
        assert_eq!(
            history(&b, "g"),
            vec![
                pa1.clone(),
                pa1.clone(),
                pb1.clone(),
                pb1.clone(),
                pb1.clone()
            ]
        );
        assert_eq!(
            history(&a, "g"),
            vec![
                pb1.clone(),
                pb1.clone(),
                pb1.clone(),
                pa1.clone(),
                pa1.clone()
            ]
        );
    }

    // ------------------------------------------------------------------
    // Reads

    #[test]
    fn reads_single_node() {
        let mut s = Scope::new("n");
        let (a, b, c) = (t("n", 1), t("n", 2), t("n", 3));
        for p in [&a, &b, &a, &c, &c] {
            s.join("g", p.clone()).unwrap();
        }
        // history [C,C,A,B,A]
        let first = &mut |_: usize| 0;
        assert_eq!(
            s.get_members("g", None),
            Ok((
                "g",
                vec![c.clone(), c.clone(), a.clone(), b.clone(), a.clone()]
            ))
        );
        assert_eq!(
            s.get_members("g", Some(&c)),
            Ok(("g", vec![a.clone(), b.clone(), a.clone()]))
        );
        assert_eq!(s.get_oldest_pid("g", None), Ok(("g", a.clone())));
        assert_eq!(s.get_newest_pid("g", None), Ok(("g", c.clone())));
        assert_eq!(s.get_oldest_pid("g", Some(&a)), Ok(("g", b.clone())));
        assert_eq!(s.get_newest_pid("g", Some(&c)), Ok(("g", a.clone())));
        assert_eq!(s.get_local_oldest_pid("g", Some(&a)), Ok(("g", b.clone())));
        assert_eq!(s.get_local_newest_pid("g", None), Ok(("g", c.clone())));
        assert_eq!(s.get_furthest_pid("g", None, first), Ok(("g", c.clone())));
        assert_eq!(
            s.get_remote_oldest_pid("g", None),
            Err(ReadError::NoProcess("g".into()))
        );
        assert_eq!(
            s.get_remote_newest_pid("g", None),
            Err(ReadError::NoProcess("g".into()))
        );
        assert_eq!(
            s.get_remote_pid("g", None, first),
            Err(ReadError::NoProcess("g".into()))
        );
        assert_eq!(
            s.get_remote_members("g", None),
            Err(ReadError::NoSuchGroup("g".into()))
        );
        assert_eq!(
            s.get_local_members("g", Some(&a)),
            Ok(("g", vec![c.clone(), c.clone(), b.clone()]))
        );
        // random selection: index into the copies, newest first
        let mut idx = 3;
        assert_eq!(
            s.get_random_pid("g", None, &mut |n| {
                assert_eq!(n, 5);
                idx
            }),
            Ok(("g", b.clone()))
        );
        idx = 1;
        assert_eq!(
            s.get_random_pid("g", Some(&c), &mut |n| {
                assert_eq!(n, 3);
                idx
            }),
            Ok(("g", b.clone()))
        );
        assert_eq!(
            s.get_local_pid("g", Some(&a), &mut |n| {
                assert_eq!(n, 3);
                2
            }),
            Ok(("g", b.clone()))
        );
        assert_eq!(
            s.get_closest_pid("g", None, &mut |n| n + 1),
            Ok(("g", c.clone())),
            "index taken modulo n"
        );
        assert_eq!(s.join_count("g", &c), 2);
        assert_eq!(s.join_count("g", &t("n", 9)), 0);
        // only member excluded
        let mut s = Scope::new("n");
        s.join("solo", a.clone()).unwrap();
        assert_eq!(
            s.get_closest_pid("solo", Some(&a), first),
            Err(ReadError::NoProcess("solo".into()))
        );
        assert_eq!(
            s.get_furthest_pid("solo", Some(&a), first),
            Err(ReadError::NoProcess("solo".into()))
        );
        assert_eq!(
            s.get_random_pid("solo", Some(&a), first),
            Err(ReadError::NoProcess("solo".into()))
        );
        assert_eq!(
            s.get_oldest_pid("solo", Some(&a)),
            Err(ReadError::NoProcess("solo".into()))
        );
        assert_eq!(
            s.get_members("solo", Some(&a)),
            Err(ReadError::NoSuchGroup("solo".into()))
        );
        assert_eq!(
            s.get_members("nosuch", None),
            Err(ReadError::NoSuchGroup("nosuch".into()))
        );
        assert_eq!(
            s.get_closest_pid("nosuch", None, first),
            Err(ReadError::NoSuchGroup("nosuch".into()))
        );
        assert_eq!(
            s.get_oldest_pid("nosuch", None),
            Err(ReadError::NoSuchGroup("nosuch".into()))
        );
    }

    #[test]
    fn reads_patterns_and_names() {
        let mut s = Scope::new("n");
        let (d, e) = (t("n", 1), t("n", 2));
        let first = &mut |_: usize| 0;
        assert_eq!(
            s.get_members("", None),
            Err(ReadError::NoSuchGroup(String::new()))
        );
        s.join("a/*", d.clone()).unwrap();
        s.join("a/x", e.clone()).unwrap();
        s.join("a/*/c", e.clone()).unwrap();
        assert_eq!(s.get_members("a/x", None), Ok(("a/x", vec![e.clone()])));
        assert_eq!(s.get_members("a/y", None), Ok(("a/*", vec![d.clone()])));
        assert_eq!(s.get_members("a/yy", None), Ok(("a/*", vec![d.clone()])));
        assert_eq!(s.get_members("a/b/c", None), Ok(("a/*/c", vec![e.clone()])));
        assert_eq!(
            s.get_members("a/", None),
            Err(ReadError::NoSuchGroup("a/".into()))
        );
        assert_eq!(
            s.get_members("a/*", None),
            Err(ReadError::NoSuchGroup("a/*".into()))
        );
        assert_eq!(
            s.get_members("a/?", None),
            Err(ReadError::NoSuchGroup("a/?".into()))
        );
        assert_eq!(
            s.get_members("", None),
            Err(ReadError::NoSuchGroup(String::new()))
        );
        assert_eq!(
            s.get_closest_pid("a/y", None, first),
            Ok(("a/*", d.clone()))
        );
        assert_eq!(
            s.get_remote_pid("a/y", None, first),
            Err(ReadError::NoProcess("a/y".into()))
        );
        assert_eq!(
            s.get_remote_members("a/y", None),
            Err(ReadError::NoSuchGroup("a/y".into()))
        );
        assert_eq!(
            s.get_local_members("a/y", Some(&d)),
            Err(ReadError::NoSuchGroup("a/y".into()))
        );
        assert_eq!(
            s.get_closest_pid("a/y", Some(&d), first),
            Err(ReadError::NoProcess("a/y".into()))
        );
        assert_eq!(
            s.get_oldest_pid("a/y", Some(&d)),
            Err(ReadError::NoProcess("a/y".into()))
        );
        // exact-name reads
        assert_eq!(s.which_groups(), vec!["a/*", "a/*/c", "a/x"]);
        assert_eq!(s.join_count("a/y", &d), 0);
        assert_eq!(s.join_count("a/*", &d), 1);
        assert_eq!(s.which_groups_of(&e), vec!["a/*/c", "a/x"]);
        assert_eq!(s.which_groups_of(&t("n", 9)), Vec::<String>::new());
        assert_eq!(s.which_groups_counts(&t("n", 9)), vec![]);
    }

    // ------------------------------------------------------------------
    // Map storage (any term as a name, exact lookups)

    fn tn(t: crate::term::Term) -> TermName {
        TermName::new(t)
    }

    fn tuple_name() -> TermName {
        use crate::term::{atom, tuple};
        tn(tuple(vec![atom("my"), atom("tuple"), atom("name")]))
    }

    #[test]
    fn map_storage_local_writes_any_term() {
        let mut s = Scope::new_map("a");
        s.node_up("b", true);
        let a1 = t("a", 1);
        let names = [
            tuple_name(),
            TermName::atom("some_atom"),
            TermName::binary(b"bin"),
            TermName::string(""),
            TermName::string("a/*"),
            TermName::string("a**"),
        ];
        for name in &names {
            let e = s.join(name, a1.clone()).unwrap();
            assert_eq!(
                notifies(&e),
                vec![(name.clone(), a1.clone(), Reason::JoinLocal)]
            );
            assert_eq!(
                casts(&e),
                vec![(
                    "b".to_string(),
                    Request::Join {
                        name: name.clone(),
                        pid: a1.clone()
                    }
                )]
            );
        }
        assert_eq!(monitors(&s.join(&names[0], a1.clone()).unwrap()), vec![]);
        let mut sorted = names.to_vec();
        sorted.sort();
        assert_eq!(s.which_groups(), sorted);
        assert_eq!(s.which_groups_of(&a1), sorted);
        assert_eq!(s.join_count(&names[0], &a1), 2);
        // The same term spelled otherwise on the wire is the same name.
        let spelled = tn(crate::term::list(
            "a/*".chars().map(|c| crate::term::int(c as i32)).collect(),
        ));
        assert_eq!(s.join_count(&spelled, &a1), 1);
        s.join(&spelled, a1.clone()).unwrap();
        assert_eq!(s.join_count(&names[4], &a1), 2);
        // Errors carry the term name.
        assert_eq!(
            s.join_counts(&[(names[1].clone(), 0)], a1.clone()),
            Err(WriteError::InvalidCount {
                name: names[1].clone(),
                count: 0
            })
        );
        assert_eq!(
            s.leave(&TermName::string("some_atom"), &a1),
            Err(WriteError::NotMember),
            "an atom and a string of the same text differ"
        );
        let e = s
            .leave_counts(&[(names[0].clone(), 1), (names[0].clone(), 1)], &a1)
            .unwrap();
        assert_eq!(notifies(&e).len(), 2);
        assert_eq!(
            casts(&e),
            vec![(
                "b".to_string(),
                Request::LeaveCounts {
                    counts: vec![(names[0].clone(), 2)],
                    pid: a1.clone()
                }
            )]
        );
        assert!(s.group(&names[0]).is_none(), "empty group erased");
        check_invariants(&s);
        let e = s.leave_all(&a1).unwrap();
        assert_eq!(demonitors(&e), vec![a1.clone()]);
        assert_eq!(s.group_count(), 0);
        check_invariants(&s);
    }

    #[test]
    fn map_storage_reads_are_exact() {
        let mut s = Scope::new_map("n");
        let (d, e) = (t("n", 1), t("n", 2));
        let first = &mut |_: usize| 0;
        let pat = TermName::string("a/*");
        let empty = TermName::string("");
        s.join(&pat, d.clone()).unwrap();
        s.join(&empty, e.clone()).unwrap();
        s.join(&tuple_name(), e.clone()).unwrap();
        // "a/*" is a plain name: found by its own spelling only.
        assert_eq!(s.get_members(&pat, None), Ok((&pat, vec![d.clone()])));
        let ay = TermName::string("a/y");
        assert_eq!(
            s.get_members(&ay, None),
            Err(ReadError::NoSuchGroup(ay.clone()))
        );
        assert_eq!(
            s.get_closest_pid(&ay, None, first),
            Err(ReadError::NoSuchGroup(ay.clone()))
        );
        assert_eq!(s.get_members(&empty, None), Ok((&empty, vec![e.clone()])));
        assert_eq!(
            s.get_closest_pid(&tuple_name(), None, first),
            Ok((&tuple_name(), e.clone()))
        );
        assert_eq!(
            s.get_remote_pid(&tuple_name(), None, first),
            Err(ReadError::NoProcess(tuple_name()))
        );
        assert_eq!(
            s.get_oldest_pid(&tuple_name(), Some(&e)),
            Err(ReadError::NoProcess(tuple_name()))
        );
        let atom = TermName::atom("a/*");
        assert_eq!(
            s.get_members(&atom, None),
            Err(ReadError::NoSuchGroup(atom.clone()))
        );
    }

    #[test]
    fn map_storage_remote_requests_and_exchange() {
        let mut s = Scope::new_map("b");
        s.node_up("a", true);
        let (a1, a2) = (t("a", 1), t("a", 2));
        let empty = TermName::string("");
        let at = TermName::atom("some_atom");
        // An empty name is a name like any other here (the trie ignores it).
        let e = s.remote_request(
            "a",
            Request::Join {
                name: empty.clone(),
                pid: a1.clone(),
            },
        );
        assert_eq!(
            notifies(&e),
            vec![(empty.clone(), a1.clone(), Reason::JoinRemote)]
        );
        assert_eq!(monitors(&e), vec![a1.clone()]);
        s.remote_request(
            "a",
            Request::JoinCounts {
                counts: vec![(at.clone(), 2), (tuple_name(), 1)],
                pid: a1.clone(),
            },
        );
        assert_eq!(history(&s, &at), vec![a1.clone(), a1.clone()]);
        let e = s.exchange(
            "a",
            vec![
                (at.clone(), vec![a2.clone(), a1.clone()]),
                (TermName::string("new"), vec![a2.clone()]),
            ],
        );
        assert_eq!(
            notifies(&e),
            vec![
                (at.clone(), a1.clone(), Reason::LeaveRemote),
                (at.clone(), a2.clone(), Reason::JoinRemote),
                (TermName::string("new"), a2.clone(), Reason::JoinRemote),
            ]
        );
        assert_eq!(s.join_count(&at, &a1), 1);
        check_invariants(&s);
        // Our exchange lists every term name.
        let Some(Request::Exchange { groups, .. }) = s.exchange_request() else {
            panic!("no exchange");
        };
        let mut names: Vec<TermName> = groups.into_iter().map(|(n, _)| n).collect();
        names.sort();
        assert_eq!(names, s.which_groups());
        assert_eq!(names.len(), 4);
        let e = s.node_down("a");
        assert_eq!(notifies(&e).len(), 5);
        assert_eq!(s.group_count(), 0);
        check_invariants(&s);
    }

    #[test]
    fn reads_remote_view() {
        let mut s = Scope::new("b");
        s.node_up("a", true);
        let (pa1, pb1) = (t("a", 1), t("b", 1));
        s.remote_request(
            "a",
            Request::Join {
                name: "p/*".into(),
                pid: pa1.clone(),
            },
        );
        let first = &mut |_: usize| 0;
        assert_eq!(s.get_members("p/x", None), Ok(("p/*", vec![pa1.clone()])));
        assert_eq!(
            s.get_local_members("p/x", None),
            Err(ReadError::NoSuchGroup("p/x".into()))
        );
        assert_eq!(
            s.get_local_pid("p/x", None, first),
            Err(ReadError::NoProcess("p/x".into()))
        );
        assert_eq!(
            s.get_local_oldest_pid("p/x", None),
            Err(ReadError::NoProcess("p/x".into()))
        );
        assert_eq!(
            s.get_furthest_pid("p/x", None, first),
            Ok(("p/*", pa1.clone()))
        );
        assert_eq!(
            s.get_closest_pid("p/x", None, first),
            Ok(("p/*", pa1.clone()))
        );
        s.join("p/*", pb1.clone()).unwrap();
        assert_eq!(
            s.get_closest_pid("p/x", None, first),
            Ok(("p/*", pb1.clone()))
        );
        assert_eq!(
            s.get_furthest_pid("p/x", None, first),
            Ok(("p/*", pa1.clone()))
        );
        assert_eq!(
            s.get_furthest_pid("p/x", Some(&pa1), first),
            Ok(("p/*", pb1.clone()))
        );
        assert_eq!(
            s.get_closest_pid("p/x", Some(&pb1), first),
            Ok(("p/*", pa1.clone()))
        );
        assert_eq!(
            s.get_remote_oldest_pid("p/x", None),
            Ok(("p/*", pa1.clone()))
        );
        assert_eq!(
            s.get_local_newest_pid("p/x", None),
            Ok(("p/*", pb1.clone()))
        );
        assert_eq!(
            s.get_remote_newest_pid("p/x", Some(&pa1)),
            Err(ReadError::NoProcess("p/x".into()))
        );
    }

    // ------------------------------------------------------------------
    // Complexity: must run quickly even in debug builds.

    #[test]
    fn complexity_large_groups() {
        const N: u32 = 100_000;
        let mut s = Scope::new("n");
        // one pid joins 100k distinct groups, then leaves them all
        let p = t("n", 0);
        for i in 0..N {
            s.join(&format!("g{i}"), p.clone()).unwrap();
        }
        assert_eq!(s.group_count(), N as usize);
        let e = s.leave_all(&p).unwrap();
        assert_eq!(e.len(), N as usize + 1);
        assert_eq!(s.group_count(), 0);
        // 100k distinct pids join one group, then leave one by one
        for i in 1..=N {
            s.join("big", t("n", i)).unwrap();
        }
        for i in 1..=N {
            s.leave("big", &t("n", i)).unwrap();
        }
        assert_eq!(s.group_count(), 0);
        // 10k local and 10k remote members of one group die / go down,
        // newest first (the worst order for list-based removal)
        s.node_up("peer", true);
        for i in 1..=10_000 {
            s.join_counts(&counts(&[("d", 2)]), t("n", i)).unwrap();
            s.remote_request(
                "peer",
                Request::Join {
                    name: "d".into(),
                    pid: t("peer", i),
                },
            );
        }
        for i in (1..=10_000).rev() {
            assert_eq!(s.member_down(&t("n", i), "killed").len(), 2);
        }
        assert_eq!(s.node_down("peer").len(), 10_000);
        assert_eq!(s.group_count(), 0);
        assert!(s.pids.is_empty() && s.by_node.is_empty());
    }

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
        /// What each scope's caller monitors (driven by the effects).
        monitors: Vec<BTreeSet<T>>,
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
                monitors: vec![BTreeSet::new(); 3],
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
                        assert!(self.monitors[s].insert(p.clone()), "double monitor {p:?}");
                        if self.dead.contains(&p) {
                            let owner = idx(p.node());
                            if self.linked(owner, s) {
                                self.push(owner, s, Msg::Down(p, "noproc".into()));
                            } else {
                                self.push(s, s, Msg::Down(p, "noconnection".into()));
                            }
                        }
                    }
                    Effect::Demonitor(p) => {
                        assert!(
                            self.monitors[s].remove(&p),
                            "demonitor of unmonitored {p:?}"
                        );
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
                self.monitors[a].retain(|p| p.node() != NODES[b]);
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
                        if self.monitors[x].contains(&pid) {
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
                assert_eq!(mine, self.monitors[i], "monitors of {}", NODES[i]);
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
}
