//! The scope process: puts a pure [`Scope`] on a [`Node`].
//!
//! One Rust process per scope, registered under the scope atom, speaks the
//! cpg protocol with the BEAM scopes: it decodes their casts and `{new,
//! Node}`, follows nodeup/nodedown, monitors every member it stores, and
//! carries out the effects the pure scope returns (monitors, casts,
//! notifications). A handle's local write changes the shared state under
//! its write lock and queues the effects for the task (cpg makes a
//! gen_server call for it; the result is the same, in order, without the
//! round trip); reads take a read lock on the shared state and never go
//! through the task.
//!
//! Two cluster modes, per BEAM node ([`BeamNodeType`]; by default each
//! node is asked which one its cpg runs in when it connects, `Auto`):
//! - `All`: BEAM cpg runs with `node_type = all`: the Rust node is a full
//!   peer; state moves by exchanges on connection and casts afterwards.
//! - `Visible` (cpg's default): BEAM scopes ignore a hidden node's exchange
//!   and do not cast their joins to it, but apply its join/leave casts and
//!   answer `{new, Node}`. The Rust node then publishes its own members with
//!   `join_counts` casts when a node connects, and polls every BEAM scope
//!   with `{new, node()}`; members of the answering node that its exchange
//!   no longer lists are removed (cpg's merge alone never removes them).
//!   Each poll is followed by a `{which_groups, Pid}` call, whose reply
//!   comes after the exchange: a scope whose whole view is empty sends no
//!   exchange, and the reply alone then says that its last members left.
//!   The answer also shows the scope's view of our members, which each
//!   poll sets right (`repair`). Under `Auto`, each poll asks the full
//!   peers their node_type again: one switched to `visible` (its
//!   `cpg:reset/1` drops our members and tells us nothing) is polled from
//!   then on.
//!
//! Two group storages ([`Storage`], cpg's `group_storage`): [`CpgScope`]
//! (`CpgScope<String>`, [`CpgScope::start`]) keeps string names in the
//! trie, with patterns; `CpgScope<TermName>` ([`CpgScope::start_map`]) takes
//! any Erlang term as a name, with exact lookups, for a cluster whose cpg
//! runs with a dict-like `group_storage`. Both have the same methods.
//!
//! The scope process also answers `gen_server:call(Scope, Request)` from
//! other nodes as cpg's `handle_call` does: the reads (`get_members`,
//! `get_closest_pid`, ... with or without an excluded pid, `which_groups`,
//! `which_groups_counts`, `join_count`) with cpg's replies, and the writes
//! for pids of this node (`join`, `join_counts`, `leave`, `leave_counts`)
//! with `{ok, VisibleNodes}` (`[]`: a hidden node has no visible node) or
//! `error`; `cpg_data` (what `cpg_data:get_groups/1` calls) with the state
//! as genuine cpg holds it, `{trie, Trie}`, which `cpg_data`'s functions
//! read on any BEAM node ([`Scope::genuine_state`]; a map storage hands
//! out none, and answers `error`). The messages `{cpg_data, From}` and
//! `{reset, From}` are answered as cpg's `handle_info` answers them. Any
//! other request gets `error`, the reply cpg gives just before it stops on
//! an unknown call; this scope logs it and lives on.

mod calls;
mod modes;
mod poll;
mod repair;
mod task;

use task::{supervise_scope, write_state};

use super::group::GroupData;
use super::member::MemberPid;
use super::scope::{
    Effect, ReadError, Reason, Scope, WriteError, DEFAULT_MAX_COPIES, DEFAULT_MAX_TOTAL_COPIES,
};
use super::snapshot::Members;
use super::storage::{GroupKey, Storage, TermName};
use super::wire::WireName;
use crate::node::Node;
use crate::process::SendError;
use crate::sync::ReadMostly;
use crate::term::Pid;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{broadcast, mpsc, oneshot};

/// How the BEAM side of the cluster runs cpg.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BeamNodeType {
    /// Each BEAM node is asked when it connects (`application:get_env(cpg,
    /// node_type)` through its `rex`, one round trip) and treated as it
    /// answers: `all` as [`All`](Self::All), `visible` (cpg's default) as
    /// [`Visible`](Self::Visible); a node without cpg loaded, or that does
    /// not answer, as `All`, and asked again when its scope process (re)starts. Until it
    /// answers, nothing of ours goes to it; then our whole state does (an
    /// exchange at `all`, `join_counts` casts at `visible`), and the casts
    /// of every later write.
    Auto,
    /// `node_type = all`: hidden nodes are full peers.
    All,
    /// `node_type = visible` (cpg's default): see the module doc.
    Visible,
}

/// How the scope task treats one peer (the mode of [`BeamNodeType`] that
/// applies to it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PeerMode {
    /// `Auto`, and the peer has not said yet: no cast goes to it.
    Asking,
    /// A full peer.
    All,
    /// Published to by casts, polled with `{new, Node}`.
    Visible,
}

/// Settings of one scope.
#[derive(Debug, Clone)]
pub struct ScopeOptions {
    /// The scope atom (`cpg_default_scope` by default).
    pub name: String,
    /// The BEAM side's `node_type` (by default [`BeamNodeType::Auto`]: each
    /// node is asked).
    pub beam_node_type: BeamNodeType,
    /// How often to ask every BEAM scope at `visible` for its state (and,
    /// under [`BeamNodeType::Auto`], every other BEAM node its node_type).
    pub poll_interval: Duration,
    /// The group storage (cpg's `group_storage`): it must be the one of the
    /// handle started ([`CpgScope::start`]: `Trie`, [`CpgScope::start_map`]:
    /// `Map`), and should match the BEAM side's.
    pub storage: Storage,
    /// Most copies of one pid in one group ([`DEFAULT_MAX_COPIES`]): a
    /// local join over it fails with [`WriteError::TooManyCopies`], a
    /// join or join_counts cast from another node over it is logged and
    /// ignored (see [`Scope::max_copies`]).
    pub max_copies: usize,
    /// Most copies the scope holds in all ([`DEFAULT_MAX_TOTAL_COPIES`]):
    /// a local write over it fails with [`WriteError::ScopeFull`], a cast
    /// from another node over it is logged and ignored, an exchange adds
    /// no copy past it (see [`Scope::max_total_copies`]).
    pub max_total_copies: usize,
}

impl ScopeOptions {
    /// Options for scope `name`: each BEAM node's mode asked when it
    /// connects ([`BeamNodeType::Auto`]), those at `visible` polled every
    /// 5 s, trie storage.
    pub fn new(name: &str) -> Self {
        ScopeOptions {
            name: name.to_string(),
            beam_node_type: BeamNodeType::Auto,
            poll_interval: Duration::from_secs(5),
            storage: Storage::Trie,
            max_copies: DEFAULT_MAX_COPIES,
            max_total_copies: DEFAULT_MAX_TOTAL_COPIES,
        }
    }

    /// As [`ScopeOptions::new`], with map storage (for
    /// [`CpgScope::start_map`]).
    pub fn new_map(name: &str) -> Self {
        ScopeOptions {
            storage: Storage::Map,
            ..ScopeOptions::new(name)
        }
    }
}

/// Groups merged per write lock when an exchange arrives.
const MERGE_CHUNK: usize = 256;

/// Members of a node that went down removed per write lock.
const NODE_DOWN_CHUNK: usize = 1024;

/// The default scope's name.
pub const DEFAULT_SCOPE: &str = "cpg_default_scope";

/// A join or leave, as cpg's callbacks see it.
#[derive(Debug, Clone, PartialEq)]
pub struct GroupEvent<N = String> {
    /// Exact group name.
    pub group: N,
    /// The member.
    pub pid: Pid,
    /// `join_local`, `join_remote`, `leave_local`, `leave_remote` or an exit.
    pub reason: Reason,
}

/// Why a scope operation failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum CpgError<N = String> {
    /// The write was refused (as cpg answers `error`).
    #[error(transparent)]
    Write(#[from] WriteError<N>),
    /// The scope process is gone.
    #[error("the scope process has stopped")]
    Stopped,
    /// Could not register the scope name.
    #[error(transparent)]
    Register(#[from] SendError),
    /// The pid's node name cannot be stored (see [`crate::atom`]).
    #[error("bad pid: {0}")]
    BadPid(#[from] crate::atom::AtomError),
    /// [`ScopeOptions::storage`] is not the storage of the handle started.
    #[error("scope options ask for {options:?} storage, the handle has {handle:?}")]
    Storage {
        /// What the options ask for.
        options: Storage,
        /// The storage of the handle's name type.
        handle: Storage,
    },
}

enum Command {
    Refresh(oneshot::Sender<()>),
    /// Fault injection for the supervision tests: the task panics.
    Crash,
}

/// A scope's counts ([`CpgScope::summary`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScopeSummary {
    /// The scope's name.
    pub scope: String,
    /// Groups (pattern groups included).
    pub groups: usize,
    /// Memberships over every group (a pid joined twice counts twice).
    pub members: usize,
    /// Memberships of this node's processes.
    pub local_members: usize,
    /// Distinct pids in at least one group.
    pub pids: usize,
    /// How the scope treats each connected node's cpg, by node name:
    /// `all`, `visible`, or `asking` (under [`BeamNodeType::Auto`], not
    /// answered yet).
    pub node_types: Vec<(String, String)>,
}

/// The events a scope's stream holds for a receiver that is behind
/// ([`CpgScope::subscribe`]).
pub const EVENTS_KEPT: usize = 4096;

/// How the scope task treats each peer, as the handles read it for
/// [`CpgScope::summary`].
type PeerModes = parking_lot::Mutex<std::collections::BTreeMap<String, PeerMode>>;

impl PeerMode {
    fn as_str(self) -> &'static str {
        match self {
            PeerMode::Asking => "asking",
            PeerMode::All => "all",
            PeerMode::Visible => "visible",
        }
    }
}

/// What a scope's handles and its task share: the state, the queued
/// effects of the handles' writes, the event stream, the peers' modes.
type Shared<N> = (
    Arc<ReadMostly<Scope<MemberPid, N>>>,
    Arc<Pending<N>>,
    broadcast::Sender<GroupEvent<N>>,
    Arc<PeerModes>,
);

/// The effects of local writes made by handles, waiting for the scope task
/// to carry them out (monitors, casts, notifications).
///
/// A handle's write ([`CpgScope::join`], ...) changes the shared state
/// itself, under the write lock, and queues its effects here before it lets
/// the lock go: no round trip to the scope task, as the state machine is
/// cheap and the hand-off is what cost (two cross-thread wake-ups a join).
/// The task carries out whatever is queued before the effects of anything
/// it does itself ([`ScopeTask::execute`](task::ScopeTask::execute)), and a task's change is made
/// under the same lock, after: effects run in the order the changes were
/// made, as when the task made every change. (Where the order against
/// later writes matters too, for a message read off the state, the queue
/// is taken under the same lock as the change: [`ScopeTask::change`](task::ScopeTask::change).)
struct Pending<N: GroupKey> {
    effects: parking_lot::Mutex<Vec<Effect<MemberPid, N>>>,
    wake: tokio::sync::Notify,
}

/// A running scope whose group names are `N`: `String` (trie storage, the
/// default) or [`TermName`] (map storage). Clone it freely; reads never wait
/// for the scope task, and neither do writes (see `Pending`).
pub struct CpgScope<N: GroupKey = String> {
    name: String,
    state: Arc<ReadMostly<Scope<MemberPid, N>>>,
    pending: Arc<Pending<N>>,
    cmd: mpsc::UnboundedSender<Command>,
    events: broadcast::Sender<GroupEvent<N>>,
    modes: Arc<PeerModes>,
}

impl<N: GroupKey> Clone for CpgScope<N> {
    fn clone(&self) -> Self {
        CpgScope {
            name: self.name.clone(),
            state: self.state.clone(),
            pending: self.pending.clone(),
            cmd: self.cmd.clone(),
            events: self.events.clone(),
            modes: self.modes.clone(),
        }
    }
}

impl<N: GroupKey> std::fmt::Debug for CpgScope<N> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CpgScope({}, {:?})", self.name, N::STORAGE)
    }
}

impl CpgScope {
    /// Starts the scope process on `node`, registered under the scope name,
    /// with trie storage (`opts.storage` must be [`Storage::Trie`]).
    /// It sends `{new, node()}` to every node already connected.
    pub fn start(node: &Node, opts: ScopeOptions) -> Result<CpgScope, CpgError> {
        CpgScope::start_with(node, opts)
    }
}

impl CpgScope<TermName> {
    /// As [`CpgScope::start`], with map storage: any term is a group name
    /// and lookups are exact (`opts.storage` must be [`Storage::Map`], as
    /// [`ScopeOptions::new_map`] sets it).
    pub fn start_map(
        node: &Node,
        opts: ScopeOptions,
    ) -> Result<CpgScope<TermName>, CpgError<TermName>> {
        CpgScope::start_with(node, opts)
    }
}

impl<N> CpgScope<N>
where
    N: WireName + Send + Sync,
    N::Store<GroupData<MemberPid>>: Send + Sync,
{
    /// Starts the scope process with names of type `N`, in `N`'s storage
    /// ([`CpgScope::start`] and [`CpgScope::start_map`] name `N`).
    pub fn start_with(node: &Node, opts: ScopeOptions) -> Result<CpgScope<N>, CpgError<N>> {
        if opts.storage != N::STORAGE {
            return Err(CpgError::Storage {
                options: opts.storage,
                handle: N::STORAGE,
            });
        }
        let proc = node.spawn_registered_raw(&opts.name)?;
        let mut scope = Scope::with_storage(node.name());
        scope.set_max_copies(opts.max_copies);
        scope.set_max_total_copies(opts.max_total_copies);
        let state = Arc::new(ReadMostly::new(scope));
        let (cmd, cmd_rx) = mpsc::unbounded_channel();
        let (events, _) = broadcast::channel(EVENTS_KEPT);
        let pending = Arc::new(Pending {
            effects: parking_lot::Mutex::new(Vec::new()),
            wake: tokio::sync::Notify::new(),
        });
        let modes = Arc::new(PeerModes::default());
        let handle = CpgScope {
            name: opts.name.clone(),
            state: state.clone(),
            pending: pending.clone(),
            cmd,
            events: events.clone(),
            modes: modes.clone(),
        };
        tokio::spawn(supervise_scope(
            node.clone(),
            opts,
            (state, pending, events, modes),
            proc,
            cmd_rx,
        ));
        Ok(handle)
    }
}

impl<N: WireName> CpgScope<N> {
    /// The scope's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Join/leave events of every group (cpg's callbacks, as a stream).
    ///
    /// The stream holds the last [`EVENTS_KEPT`] events. A receiver that
    /// falls further behind (a burst: one poll of a BEAM scope at
    /// `visible` that joined 5,000 copies gives 5,000 events) gets
    /// `Err(RecvError::Lagged(n))` once, for the `n` it missed, and then
    /// the events after them: it should read the groups again (as
    /// `cpg-node watch` does) and go on receiving, not stop.
    pub fn subscribe(&self) -> broadcast::Receiver<GroupEvent<N>> {
        self.events.subscribe()
    }

    /// Makes the scope task panic, for tests of its supervision: it is
    /// restarted and rebuilds its state. Not for production use.
    #[doc(hidden)]
    pub fn inject_crash(&self) {
        let _ = self.cmd.send(Command::Crash);
    }

    /// Applies a local write to the shared state and queues its effects
    /// for the scope task (see `Pending`).
    fn write(
        &self,
        f: impl FnOnce(&mut Scope<MemberPid, N>) -> Result<Vec<Effect<MemberPid, N>>, WriteError<N>>,
    ) -> Result<(), CpgError<N>> {
        if self.cmd.is_closed() {
            return Err(CpgError::Stopped);
        }
        let mut s = write_state(&self.state, &self.events);
        let effects = f(&mut s)?;
        if !effects.is_empty() {
            self.pending.effects.lock().extend(effects);
            self.pending.wake.notify_one();
        }
        drop(s);
        Ok(())
    }

    /// `cpg:join(Scope, Name, Pid)` for a pid of this node. As cpg casts
    /// `{join, Name, Pid}` (not counts of one).
    pub async fn join(&self, name: &N::Borrowed, pid: &Pid) -> Result<(), CpgError<N>> {
        let p = MemberPid::try_from(pid)?;
        self.write(|s| s.join(name, p))
    }

    /// `cpg:join_counts(Scope, [{Name, Count}], Pid)`.
    pub async fn join_counts(&self, counts: &[(N, usize)], pid: &Pid) -> Result<(), CpgError<N>> {
        let p = MemberPid::try_from(pid)?;
        self.write(|s| s.join_counts(counts, p))
    }

    /// `cpg:leave(Scope, Name, Pid)`: one copy.
    pub async fn leave(&self, name: &N::Borrowed, pid: &Pid) -> Result<(), CpgError<N>> {
        let p = MemberPid::try_from(pid)?;
        self.write(|s| s.leave(name, &p))
    }

    /// `cpg:leave_counts(Scope, [{Name, Count}], Pid)`.
    pub async fn leave_counts(&self, counts: &[(N, usize)], pid: &Pid) -> Result<(), CpgError<N>> {
        let p = MemberPid::try_from(pid)?;
        self.write(|s| s.leave_counts(counts, &p))
    }

    /// `cpg:leave(Scope, Pid)`: every copy from every group.
    pub async fn leave_all(&self, pid: &Pid) -> Result<(), CpgError<N>> {
        let p = MemberPid::try_from(pid)?;
        self.write(|s| s.leave_all(&p))
    }

    /// Asks every connected node's scope for its state (`{new, node()}`)
    /// now; returns once the requests are sent. A node polled at `visible`
    /// that has not yet answered the last poll is not asked again: that
    /// answer is on its way.
    pub async fn refresh(&self) -> Result<(), CpgError<N>> {
        let (tx, rx) = oneshot::channel();
        self.cmd
            .send(Command::Refresh(tx))
            .map_err(|_| CpgError::Stopped)?;
        rx.await.map_err(|_| CpgError::Stopped)
    }

    /// Runs `f` on the current state under a read lock (the whole read API
    /// of [`Scope`]: `get_members`, `get_closest_pid`, `which_groups`, ...).
    pub fn read<T>(&self, f: impl FnOnce(&Scope<MemberPid, N>) -> T) -> T {
        f(&self.state.read())
    }

    /// `cpg:get_members(Scope, Name)`: the matched key and the members
    /// (newest first) as an immutable snapshot ([`Members`], a slice of
    /// [`MemberPid`]s): as BEAM hands out the list it holds, nothing is
    /// copied; a group of one pid gives it inline, a larger group shares
    /// its list until it changes (each CPU that reads it gets its own copy
    /// once, so readers on different cores do not write one reference
    /// count). `to_vec()` gives a list of one's own; `Pid::from` gives a
    /// pid's wire form. For a read that uses the pids in place,
    /// [`Scope::get_members_ref`] inside [`read`](Self::read).
    pub fn get_members(&self, name: &N::Borrowed) -> Result<(N, Members), ReadError<N>> {
        self.read(|s| s.get_members(name, None).map(|(k, v)| (k.to_owned(), v)))
    }

    /// `cpg:get_closest_pid(Scope, Name)`: a random local member, else a
    /// random remote one. The pid is a [`MemberPid`] (16 bytes, `Copy`):
    /// send to it directly (`Dest::from`), or `to_pid()` for the wire's pid.
    /// The matched key is copied out (a `String`); [`Scope::get_closest_pid`]
    /// inside [`read`](Self::read) lends it instead and allocates nothing
    /// (but for a thread's memo of pattern searches, once, on its first).
    pub fn get_closest_pid(&self, name: &N::Borrowed) -> Result<(N, MemberPid), ReadError<N>> {
        self.read(|s| {
            s.get_closest_pid(name, None, &mut |n| rand::random_range(0..n.max(1)))
                .map(|(k, p)| (k.to_owned(), p))
        })
    }

    /// `cpg:which_groups(Scope)`.
    pub fn which_groups(&self) -> Vec<N> {
        self.read(|s| s.which_groups())
    }

    /// Counts of the scope, and how it treats each peer, for a status
    /// report.
    pub fn summary(&self) -> ScopeSummary {
        let node_types = self
            .modes
            .lock()
            .iter()
            .map(|(n, m)| (n.clone(), m.as_str().to_string()))
            .collect();
        self.read(|s| {
            let (members, local_members) = s.member_totals();
            ScopeSummary {
                scope: self.name.clone(),
                groups: s.group_count(),
                members,
                local_members,
                pids: s.pid_count(),
                node_types,
            }
        })
    }
}
