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
//! `error`. Any other request (and `cpg_data`, cpg's internal state) gets
//! `error`, the reply cpg gives just before it stops on an unknown call;
//! this scope logs it and lives on.

mod repair;

use super::group::GroupData;
use super::member::MemberPid;
use super::scope::{
    Effect, MonitorTag, ReadError, Reason, Request, Scope, WriteError, DEFAULT_MAX_COPIES,
};
use super::snapshot::Members;
use super::storage::{GroupKey, Storage, TermName};
use super::wire::{WireError, WireMsg, WireName};
use crate::node::supervise;
use crate::node::{Node, NodeEvent};
use crate::process::{self, Dest, MonitorKey, Process, SendError, Signal};
use crate::sync::ReadMostly;
use crate::term::{self, Pid, Reference, Term};
use std::collections::HashMap;
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
/// it does itself ([`ScopeTask::execute`]), and a task's change is made
/// under the same lock, after: effects run in the order the changes were
/// made, as when the task made every change. (Where the order against
/// later writes matters too, for a message read off the state, the queue
/// is taken under the same lock as the change: [`ScopeTask::change`].)
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
        let state = Arc::new(ReadMostly::new(scope));
        let (cmd, cmd_rx) = mpsc::unbounded_channel();
        let (events, _) = broadcast::channel(4096);
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
            node.subscribe(),
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
    /// inside [`read`](Self::read) lends it instead and allocates nothing.
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

struct ScopeTask<N: GroupKey> {
    node: Node,
    opts: ScopeOptions,
    proc: Process,
    state: Arc<ReadMostly<Scope<MemberPid, N>>>,
    /// Effects of the handles' writes, carried out first (see `Pending`).
    pending: Arc<Pending<N>>,
    events: broadcast::Sender<GroupEvent<N>>,
    /// Each peer's mode of `remote`, for the handles' summary (`show_mode`).
    modes: Arc<PeerModes>,
    /// Visible mode: nodes asked with `{new, node()}` and not yet answered.
    polled: HashMap<String, Poll>,
    /// Numbers the changes of our members (casts and deaths) while a poll
    /// is out, for [`repair`].
    writes: u64,
    /// While a poll is out: the number of each local pid's last change
    /// (cleared when the first poll goes out while none is).
    written: HashMap<MemberPid, u64>,
    /// The scope process of each connected peer, monitored by name.
    remote: HashMap<String, RemoteScope>,
    /// `Auto`: the answers of peers asked for their cpg's `node_type`.
    modes_tx: mpsc::UnboundedSender<ModeAnswer>,
    modes_rx: mpsc::UnboundedReceiver<ModeAnswer>,
    /// Numbers the questions (a late answer to an earlier one is dropped).
    asked: u64,
}

/// A poll that is out ([`ScopeTask::ask_state`]).
struct Poll {
    /// The call that follows the question.
    call: Reference,
    /// [`ScopeTask::writes`] when the question went: the peer's answer
    /// holds the changes of ours numbered up to it.
    since: u64,
}

/// Why `Auto` asks a peer how its cpg runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ask {
    /// It connected: nothing of ours goes to it until it answers.
    Connect,
    /// Its scope process came back, or asked for our state while polled.
    Back,
    /// Asked again at each poll while it is a full peer: `cpg:reset/1`
    /// after its `node_type` became `visible` tells a hidden node nothing.
    Recheck,
}

/// A peer's answer to `Auto`'s question ([`ask_node_type`]).
struct ModeAnswer {
    peer: String,
    /// The question's number ([`RemoteScope::question`]).
    question: u64,
    answer: Option<BeamNodeType>,
    why: Ask,
}

/// How long a probe monitor of a peer's scope must go without a `noproc`
/// DOWN before the scope counts as running again. A monitor of a name that
/// is not registered is answered at once (one round trip), so this is many
/// round trips even on a slow network.
const PROBE_GRACE: Duration = Duration::from_millis(300);
/// The first wait before probing a peer's scope that went away.
const PROBE_FIRST: Duration = Duration::from_millis(200);

/// What the scope task knows of one peer's scope process. A BEAM scope that
/// restarts (`application:stop/start(cpg)`, a crash) has lost every
/// membership, ours included, and a hidden node gets no nodeup to tell it:
/// the monitor's DOWN does. The scope is then probed with a new monitor
/// (answered at once with `noproc` while the name is not registered); one
/// that holds for [`PROBE_GRACE`] means the scope is back, and our members
/// are published to it again.
struct RemoteScope {
    mref: Reference,
    /// How we treat the peer (given, or as it answered under `Auto`).
    mode: PeerMode,
    /// The number of the last question asked (`Auto`).
    question: u64,
    /// The number of the last question answered: a question is out while
    /// it differs from `question`.
    answered: u64,
    /// `Some(since)` while the monitor is a probe.
    probing_since: Option<tokio::time::Instant>,
    /// `Some(at)` while the scope is away: when to probe next.
    next_probe: Option<tokio::time::Instant>,
    /// The wait before the next probe after a failed one (doubles up to the
    /// poll interval).
    retry: Duration,
}

impl RemoteScope {
    /// A question about its mode is out (`Auto`).
    fn asking(&self) -> bool {
        self.question != self.answered
    }

    /// Its scope process is away (probed, or waiting to be).
    fn away(&self) -> bool {
        self.probing_since.is_some() || self.next_probe.is_some()
    }
}

/// `{error, {no_such_group | no_process, Name}}` with the name as asked.
/// `{ok, Key, Pids}` of a members read (a snapshot or a list), or its
/// error.
fn members_reply<N: WireName>(
    r: Result<(&N::Borrowed, impl std::ops::Deref<Target = [MemberPid]>), ReadError<N>>,
    name: &Term,
) -> Term {
    match r {
        Ok((k, v)) => term::tuple(vec![
            term::atom("ok"),
            k.to_owned().to_term(),
            term::list(v.iter().map(|p| Term::Pid(p.to_pid())).collect()),
        ]),
        Err(e) => read_error(&e, name),
    }
}

fn read_error<M>(e: &ReadError<M>, name: &Term) -> Term {
    let why = match e {
        ReadError::NoSuchGroup(_) => "no_such_group",
        ReadError::NoProcess(_) => "no_process",
    };
    term::tuple(vec![
        term::atom("error"),
        term::tuple(vec![term::atom(why), name.clone()]),
    ])
}

/// A count as an Erlang integer.
fn count_term(c: usize) -> Term {
    match i32::try_from(c) {
        Ok(c) => term::int(c),
        Err(_) => Term::BigInteger(crate::term::BigInteger::from(c as u64)),
    }
}

/// cpg replies `error` to an unknown call (then stops); we log and go on.
fn unknown_call(scope: &str, request: &Term) -> Term {
    let shown = crate::util::short_text(request);
    tracing::warn!(scope = %scope, "unknown call {shown}: replied error");
    term::atom("error")
}

fn reason_text(t: &Term) -> String {
    match t {
        Term::Atom(a) => a.name.clone(),
        t => t.to_string(),
    }
}

/// How `peer`'s cpg runs, asked through its `rex`:
/// `application:get_env(cpg, node_type)`, which cpg reads when its scopes
/// start (its `.app` says `visible` unless configured). `None` when the
/// peer has no cpg loaded (the env is then `undefined`), does not answer,
/// or is gone (not asked then: the call would dial it again).
async fn ask_node_type(node: &Node, peer: &str) -> Option<BeamNodeType> {
    if !node.is_connected(peer) {
        return None;
    }
    let args = vec![term::atom("cpg"), term::atom("node_type")];
    let got = node
        .rpc(peer, "application", "get_env", args, Duration::from_secs(5))
        .await
        .ok()?;
    match term::as_tuple(&got) {
        Some([ok, v]) if term::as_atom(ok) == Some("ok") => match term::as_atom(v) {
            Some("all") => Some(BeamNodeType::All),
            Some("visible") => Some(BeamNodeType::Visible),
            _ => None,
        },
        _ => None,
    }
}

/// Warns when `peer`'s cpg runs with another `node_type` than `ours` (a
/// mode given, not `Auto`): a BEAM scope at `visible` ignores a hidden
/// node's exchange and never tells it of joins, so in `All` mode nothing
/// would be published or seen, without a word.
async fn check_mode(node: &Node, peer: &str, scope: &str, ours: BeamNodeType) {
    let Some(theirs) = ask_node_type(node, peer).await else {
        return;
    };
    if theirs != ours {
        let (flag, beam) = match theirs {
            BeamNodeType::Visible => ("visible", "all"),
            _ => ("all", "visible"),
        };
        tracing::warn!(
            %scope,
            %peer,
            "{peer} runs cpg with node_type {flag} but this node expects {beam}: memberships will not be kept in step. \
             Fix: start this node with --beam-node-type {flag} or auto (ScopeOptions::beam_node_type), \
             or run cpg on the BEAM nodes with node_type {beam}"
        );
    }
}

/// `Visible`: the BEAM scope ignores our exchange, so each local member is
/// announced to `peer` with one `join_counts` cast. `replace`: each after a
/// `{leave, Pid}` cast, for a scope that may hold some of ours already
/// (one that came back: a restarted scope holds none, and the leave does
/// nothing there, but our casts may have reached it in the moment between
/// its start and our probe seeing it, and `join_counts` adds).
fn publish_to<N: WireName>(
    s: &Scope<MemberPid, N>,
    peer: &str,
    replace: bool,
) -> Vec<Effect<MemberPid, N>> {
    let mut effects = Vec::new();
    for pid in s.monitored_pids().filter(|p| s.is_local(p)) {
        let cast = |request| Effect::Cast {
            node: peer.to_string(),
            request,
        };
        if replace {
            effects.push(cast(Request::LeaveAll { pid: *pid }));
        }
        effects.push(cast(Request::JoinCounts {
            counts: s.which_groups_counts(pid),
            pid: *pid,
        }));
    }
    effects
}

/// Our whole state as `peer` is told it in `mode` (an exchange, or at
/// `visible` the casts of [`publish_to`]), once it answered under `Auto` or
/// when its scope `came_back`. `polled`: what we hold of its members came
/// by polls (it was at `visible`), so the exchange leaves them out
/// ([`Scope::new_node_without_its_own`]).
fn state_for<N: WireName>(
    s: &Scope<MemberPid, N>,
    peer: &str,
    mode: PeerMode,
    came_back: bool,
    polled: bool,
) -> Vec<Effect<MemberPid, N>> {
    match mode {
        PeerMode::Visible => publish_to(s, peer, came_back),
        _ if polled => s.new_node_without_its_own(peer),
        _ => s.new_node(peer),
    }
}

/// How a run of the scope task ended.
enum Stop {
    /// The handle was dropped or the node stopped: the scope ends.
    Done,
    /// The scope process was killed (an exit signal): restarted.
    Killed(String),
}

/// The scope's state, locked for a change, with [`Effect::Notify`] on only
/// while someone is subscribed to the events (nobody else reads them).
fn write_state<'a, N: WireName>(
    state: &'a ReadMostly<Scope<MemberPid, N>>,
    events: &broadcast::Sender<GroupEvent<N>>,
) -> crossbeam_utils::sync::ShardedLockWriteGuard<'a, Scope<MemberPid, N>> {
    let mut s = state.write();
    s.set_notify(events.receiver_count() > 0);
    s
}

/// Runs the scope task and restarts it, as an OTP supervisor restarts a
/// crashed cpg scope, when it panics or its process is killed: a new
/// process registered under the scope name, the state rebuilt (local
/// members kept, remote ones asked for again), after a backoff that grows
/// while it keeps crashing and starts over after a stable run
/// ([`supervise::before_restart`]).
async fn supervise_scope<N: WireName>(
    node: Node,
    opts: ScopeOptions,
    (state, pending, events, modes): Shared<N>,
    first: Process,
    mut cmd_rx: mpsc::UnboundedReceiver<Command>,
    mut node_events: broadcast::Receiver<NodeEvent>,
) {
    let mut proc = Some(first);
    let mut attempt: u32 = 0;
    loop {
        let proc = match proc.take() {
            Some(p) => p,
            None => supervise::register_again(&node, &opts.name, true, &mut attempt).await,
        };
        let (modes_tx, modes_rx) = mpsc::unbounded_channel();
        // (A new run knows no peer yet: each is watched again.)
        modes.lock().clear();
        let task = ScopeTask {
            node: node.clone(),
            opts: opts.clone(),
            proc,
            state: state.clone(),
            pending: pending.clone(),
            events: events.clone(),
            modes: modes.clone(),
            polled: HashMap::new(),
            writes: 0,
            written: HashMap::new(),
            remote: HashMap::new(),
            modes_tx,
            modes_rx,
            asked: 0,
        };
        let started = tokio::time::Instant::now();
        let run = task.run(&mut cmd_rx, &mut node_events, attempt > 0);
        let why = match supervise::CatchUnwind::new(run).await {
            Ok(Stop::Done) => return,
            Ok(Stop::Killed(reason)) => format!("its process was killed: {reason}"),
            Err(msg) => format!("it crashed: {msg}"),
        };
        let what = format!("scope {}", opts.name);
        let backoff = node.config().backoff;
        supervise::before_restart(backoff, &what, &why, &mut attempt, started).await;
    }
}

impl<N: WireName> ScopeTask<N> {
    /// The shared state, locked for a change ([`write_state`]).
    fn state_mut(&self) -> crossbeam_utils::sync::ShardedLockWriteGuard<'_, Scope<MemberPid, N>> {
        write_state(&self.state, &self.events)
    }

    /// Serves until the handle or the node is gone ([`Stop::Done`]) or the
    /// scope process is killed ([`Stop::Killed`]). `restarted`: a previous
    /// run crashed, so the state is rebuilt first.
    async fn run(
        mut self,
        cmd_rx: &mut mpsc::UnboundedReceiver<Command>,
        node_events: &mut broadcast::Receiver<NodeEvent>,
        restarted: bool,
    ) -> Stop {
        if restarted {
            self.rebuild();
        }
        for peer in self.node.peers() {
            self.peer_up(&peer, restarted);
            if restarted {
                // As a starting cpg scope: "send me your state".
                self.send_new(&peer);
            }
        }
        let mut poll = tokio::time::interval(self.opts.poll_interval);
        poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut probe = tokio::time::interval(PROBE_FIRST / 2);
        probe.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let probing = self.remote.values().any(RemoteScope::away);
            tokio::select! {
                // Node events first: a peer's exchange that follows its
                // nodeup must find the peer known (else it is ignored).
                biased;
                e = node_events.recv() => match e {
                    Ok(NodeEvent::Up(n)) => self.peer_up(&n, false),
                    Ok(NodeEvent::Down { node: n, .. }) => {
                        self.node_down(&n);
                        self.polled.remove(&n);
                        self.remote.remove(&n);
                        self.show_mode(&n);
                    }
                    Err(broadcast::error::RecvError::Lagged(k)) => {
                        tracing::warn!(scope = %self.opts.name, "missed {k} node events; resynchronising");
                        self.resync_peers();
                    }
                    Err(broadcast::error::RecvError::Closed) => return Stop::Done,
                },
                c = cmd_rx.recv() => match c {
                    Some(c) => self.command(c),
                    None => return Stop::Done,
                },
                _ = self.pending.wake.notified() => self.execute(Vec::new()),
                s = self.proc.recv() => match s {
                    Ok(s) => self.signal(s),
                    Err(reason) => {
                        if crate::term::as_atom(&reason) == Some("shutdown") {
                            tracing::debug!(scope = %self.opts.name, "scope stopped: node shutdown");
                            return Stop::Done;
                        }
                        return Stop::Killed(reason.to_string());
                    }
                },
                Some(a) = self.modes_rx.recv() => self.mode_answered(a),
                _ = poll.tick(), if self.opts.beam_node_type != BeamNodeType::All => self.poll_visible(),
                _ = probe.tick(), if probing => self.probe_remote_scopes(),
            }
        }
    }

    /// After a crash: remote members come back from the peers (dropped here,
    /// asked for again by `peer_up`), local members are ours and stay, each
    /// monitored again (one that died meanwhile answers `noproc` and goes).
    fn rebuild(&mut self) {
        let nodes: Vec<String> = self
            .state
            .read()
            .connected_nodes()
            .map(String::from)
            .collect();
        for n in nodes {
            self.node_down(&n);
        }
        let mut pids: Vec<MemberPid> = self.state.read().monitored_pids().cloned().collect();
        self.monitor_all(&mut pids);
    }

    /// Monitors `peer`'s scope process (by name) and sets how the peer is
    /// treated: as we were told (checked in the background against how
    /// the peer's cpg runs), or, under `Auto`, asked. A `known` peer (the
    /// task restarted) may hold our members from before: it is asked as a
    /// scope that came back is, treated as a full peer until it answers
    /// (our casts go on, so none of our leaves is lost on it; the answer
    /// then replaces what it holds of ours).
    fn watch_remote_scope(&mut self, peer: &str, known: bool) {
        let mref = self
            .proc
            .monitor(Dest::Name(self.opts.name.clone(), peer.to_string()));
        let mode = match self.opts.beam_node_type {
            BeamNodeType::Auto if known => PeerMode::All,
            BeamNodeType::Auto => PeerMode::Asking,
            BeamNodeType::All => PeerMode::All,
            BeamNodeType::Visible => PeerMode::Visible,
        };
        self.remote.insert(
            peer.to_string(),
            RemoteScope {
                mref,
                mode,
                question: 0,
                answered: 0,
                probing_since: None,
                next_probe: None,
                retry: PROBE_FIRST,
            },
        );
        self.show_mode(peer);
        if self.opts.beam_node_type == BeamNodeType::Auto {
            self.ask_mode(peer, if known { Ask::Back } else { Ask::Connect });
            return;
        }
        let (node, peer, scope, ours) = (
            self.node.clone(),
            peer.to_string(),
            self.opts.name.clone(),
            self.opts.beam_node_type,
        );
        tokio::spawn(async move { check_mode(&node, &peer, &scope, ours).await });
    }

    /// `Auto`: asks `peer` how its cpg runs ([`ask_node_type`]); our state
    /// goes to it with the answer ([`mode_answered`](Self::mode_answered)).
    /// On a new connection nothing of ours goes to it until then. Its
    /// scope process came back ([`Ask::Back`]): our casts go on as before
    /// meanwhile (the new scope may get some of them before the state, which
    /// sets it right), for cpg may have restarted with another node_type or
    /// been loaded only now. [`Ask::Recheck`]: nothing changes until it
    /// answers otherwise.
    fn ask_mode(&mut self, peer: &str, why: Ask) {
        let Some(r) = self.remote.get_mut(peer) else {
            return;
        };
        self.asked += 1;
        if why == Ask::Connect {
            r.mode = PeerMode::Asking;
        }
        r.question = self.asked;
        self.show_mode(peer);
        let (node, tx, peer, question) = (
            self.node.clone(),
            self.modes_tx.clone(),
            peer.to_string(),
            self.asked,
        );
        tokio::spawn(async move {
            let answer = ask_node_type(&node, &peer).await;
            let _ = tx.send(ModeAnswer {
                peer,
                question,
                answer,
                why,
            });
        });
    }

    /// `Auto`: `peer` said how its cpg runs (or did not). In one step under
    /// the state's lock, the effects of the writes queued so far are taken
    /// (their casts to a peer still asking are dropped: what it gets next
    /// holds them) and our state is read; then the peer's mode is set, so
    /// the casts of any later write go to it after the state: an exchange
    /// at `all` (as cpg sends on nodeup), `join_counts` casts at `visible`
    /// (and `{new, Node}`: its state is polled from now on).
    fn mode_answered(&mut self, a: ModeAnswer) {
        let Some(r) = self.remote.get_mut(&a.peer) else {
            return; // gone since
        };
        if r.question != a.question {
            return; // a question asked again since
        }
        r.answered = a.question;
        let was_visible = r.mode == PeerMode::Visible;
        if a.why == Ask::Recheck {
            // A full peer whose cpg now says `visible`: after `cpg:reset/1`
            // it has dropped our members and tells us nothing more. It is
            // polled from now on, and each poll sets its view of our
            // members right ([`repair`]): nothing is published here, for
            // the env may have changed before the reset (the scope still
            // at `all`, holding ours: published again, they would count
            // twice).
            if r.mode == PeerMode::All && a.answer == Some(BeamNodeType::Visible) {
                tracing::info!(scope = %self.opts.name, peer = %a.peer, "node_type now visible: its state is polled, its view of our members set right by each poll");
                r.mode = PeerMode::Visible;
                self.show_mode(&a.peer);
                self.ask_state(&a.peer, true);
            }
            return;
        }
        let mode = match a.answer {
            Some(BeamNodeType::Visible) => PeerMode::Visible,
            _ => PeerMode::All,
        };
        let how = match a.answer {
            Some(BeamNodeType::Visible) => {
                "node_type visible: our members go by casts, its own are polled"
            }
            Some(_) => "node_type all: a full peer",
            None => "no cpg node_type (cpg not loaded, or no answer): treated as a full peer",
        };
        tracing::info!(scope = %self.opts.name, peer = %a.peer, "{how}");
        let (queued, state) =
            self.read_state(|s, _| state_for(s, &a.peer, mode, a.why == Ask::Back, was_visible));
        self.carry_out(queued);
        if let Some(r) = self.remote.get_mut(&a.peer) {
            r.mode = mode;
        }
        self.show_mode(&a.peer);
        self.carry_out(state);
        if was_visible && mode == PeerMode::All {
            // Its members came by polls: a member that left since the
            // last one is in no cast to come, and its next state tells.
            self.ask_state(&a.peer, true);
        } else if a.why == Ask::Back || mode == PeerMode::Visible {
            self.send_new(&a.peer);
        }
    }

    /// Shows `peer`'s mode (or that it is gone) to the handles.
    fn show_mode(&self, peer: &str) {
        let mut modes = self.modes.lock();
        match self.remote.get(peer) {
            Some(r) => modes.insert(peer.to_string(), r.mode),
            None => modes.remove(peer),
        };
    }

    /// How `peer` is treated: its mode under `Auto` (a full peer if not
    /// watched), else the mode given.
    fn mode_of(&self, peer: &str) -> PeerMode {
        match self.opts.beam_node_type {
            BeamNodeType::All => PeerMode::All,
            BeamNodeType::Visible => PeerMode::Visible,
            BeamNodeType::Auto => self.remote.get(peer).map_or(PeerMode::All, |r| r.mode),
        }
    }

    /// A monitor of a peer's scope fired.
    fn remote_scope_down(&mut self, mref: &Reference, reason: &Term) -> bool {
        let Some((peer, r)) = self.remote.iter_mut().find(|(_, r)| r.mref == *mref) else {
            return false;
        };
        let reason = reason_text(reason);
        if reason == "noconnection" {
            return true; // the nodedown takes care of it
        }
        let now = tokio::time::Instant::now();
        if r.probing_since.take().is_some() {
            r.retry = (r.retry * 2).min(self.opts.poll_interval.max(PROBE_FIRST));
        } else {
            tracing::info!(
                scope = %self.opts.name,
                %peer,
                "the peer's scope process is not running ({reason}); our members go to it when it is (back) up"
            );
            r.retry = PROBE_FIRST;
        }
        r.next_probe = Some(now + r.retry);
        // A poll out to it goes unanswered: forgotten (and none is sent
        // while it is away), so that changes are not numbered for it.
        let peer = peer.clone();
        self.polled.remove(&peer);
        true
    }

    /// Probes peers whose scope went away, and republishes to those whose
    /// probe held.
    fn probe_remote_scopes(&mut self) {
        let now = tokio::time::Instant::now();
        let mut back = Vec::new();
        for (peer, r) in self.remote.iter_mut() {
            if !self.node.is_connected(peer) {
                continue; // its nodedown is on its way; a probe would dial it
            }
            if r.next_probe.is_some_and(|at| at <= now) {
                r.next_probe = None;
                r.probing_since = Some(now);
                r.mref = self
                    .proc
                    .monitor(Dest::Name(self.opts.name.clone(), peer.clone()));
            } else if r.probing_since.is_some_and(|at| at + PROBE_GRACE <= now) {
                r.probing_since = None;
                r.retry = PROBE_FIRST;
                back.push(peer.clone());
            }
        }
        for peer in back {
            tracing::info!(scope = %self.opts.name, %peer, "the peer's scope is back: publishing our members to it");
            // (Under `Auto` asked again first: cpg may have restarted with
            // another node_type, or been loaded only now.)
            if self.opts.beam_node_type == BeamNodeType::Auto {
                self.ask_mode(&peer, Ask::Back);
                continue;
            }
            let mode = self.mode_of(&peer);
            // (A fixed mode: a peer's members came by polls only at
            // `visible`, which publishes by casts.)
            self.tell_state(|s| state_for(s, &peer, mode, true, false));
            self.send_new(&peer);
        }
    }

    /// `peer` is connected. `known`: it was before this run of the task
    /// (a restart after a crash), so its scope may hold our members.
    fn peer_up(&mut self, peer: &str, known: bool) {
        // A stale nodeup (the peer went down again before we got to it; its
        // nodedown follows): nothing is sent, since a send would dial the
        // peer again and undo a disconnect.
        if !self.node.is_connected(peer) {
            return;
        }
        // The peer's mode first: under `Auto` it is asked, and nothing of
        // ours goes to it (node_up's exchange included) until it answers.
        self.watch_remote_scope(peer, known);
        // `All`: as cpg on nodeup, our exchange goes out (node_up's effect)
        // and the peer's comes in by itself; no `{new, Node}`, whose answer
        // could carry our own pids' counts from before a write that crosses
        // it, and the merge would set them back (cpg sends `{new, Node}`
        // only when its scope starts). `Visible`: the BEAM scope tells us
        // nothing unasked, so ask, and publish ours by casts.
        let visible = self.mode_of(peer) == PeerMode::Visible;
        self.change(|s| {
            let mut effects = s.node_up(peer, true);
            if visible {
                effects.extend(publish_to(s, peer, false));
            }
            effects
        });
        if visible {
            self.send_new(peer);
        }
    }

    /// `node` went down: its members leave in parts of
    /// [`NODE_DOWN_CHUNK`], each under its own write lock, so that lookups
    /// are answered while a node with a million memberships is removed (as
    /// an exchange is merged in parts). Readers that waited long are let in
    /// between parts ([`ReadMostly::let_readers_in`]: without it, a reader
    /// waited up to 0.1 s behind the parts of a 1M-membership node). The
    /// exchange merge does not: its worst lookup was a few ms without it,
    /// and single runs with it were no better (too noisy to say more).
    /// Readers may meet some of the dead node's members in between, as BEAM
    /// code reading a cached `cpg_data` does.
    fn node_down(&mut self, node: &str) {
        let pids = self.state_mut().node_down_start(node);
        for part in pids.chunks(NODE_DOWN_CHUNK) {
            self.state.let_readers_in();
            let effects = self.state_mut().node_members_down(part);
            self.execute(effects);
        }
    }

    fn resync_peers(&mut self) {
        let peers = self.node.peers();
        let known: Vec<String> = self
            .state
            .read()
            .connected_nodes()
            .map(String::from)
            .collect();
        for n in known.iter().filter(|n| !peers.contains(n)) {
            self.node_down(n);
        }
        for p in peers.iter().filter(|p| !known.contains(p)) {
            self.peer_up(p, false);
        }
    }

    /// Asks `peer` for its state (`{new, Node}`); polled if it is at
    /// `visible` ([`ask_state`](Self::ask_state)).
    fn send_new(&mut self, peer: &str) {
        self.ask_state(peer, self.mode_of(peer) == PeerMode::Visible);
    }

    /// Asks `peer` for its state; `poll`: the answer is its whole view
    /// (what of its members it does not list is gone), as a poll of a node
    /// at `visible` takes it. One poll at a time: while one is out, its
    /// answer is on the way (and a slow scope is not asked to encode its
    /// state again and again), and an answer is known to be that of the
    /// question out, so it holds our casts up to [`Poll::since`].
    fn ask_state(&mut self, peer: &str, poll: bool) {
        // Like cpg, only to nodes connected now: a send to any other would
        // dial it, undoing a disconnect.
        if !self.node.is_connected(peer) || poll && self.polled.contains_key(peer) {
            return;
        }
        let msg = WireMsg::<MemberPid, N>::New(self.node.name().to_string()).encode();
        let to = || Dest::Name(self.opts.name.clone(), peer.to_string());
        let _ = self.proc.send(to(), msg);
        if poll {
            // cpg sends no exchange for an empty view: a call after the
            // question (cheap: the groups of a pid it does not hold) is
            // answered after the exchange, if any, and tells the two apart
            // (`poll_reply`).
            let r = self.proc.make_ref();
            let me = Term::Pid(self.proc.pid().clone());
            let call = term::tuple(vec![
                term::atom("$gen_call"),
                term::tuple(vec![me.clone(), Term::from(r.clone())]),
                term::tuple(vec![term::atom("which_groups"), me]),
            ]);
            let _ = self.proc.send(to(), call);
            if self.polled.is_empty() {
                // (Changes from before are in every answer to come.)
                self.written.clear();
            }
            let since = self.writes;
            self.polled
                .insert(peer.to_string(), Poll { call: r, since });
        }
    }

    /// Numbers a change of our member `pid` while a poll is out ([`repair`]).
    fn wrote(&mut self, pid: &MemberPid) {
        if !self.polled.is_empty() && pid.node() == self.node.name() {
            self.writes += 1;
            self.written.insert(*pid, self.writes);
        }
    }

    /// A poll of `peer` answered with its whole view (`view`; empty when it
    /// sent no exchange): where it differs from ours for a member of ours
    /// not changed since the question, the difference is cast again
    /// ([`repair::casts`]). Only to a visible (published) node: a BEAM
    /// node, whose cpg answers with its whole history, ours included (a
    /// cpg-node polled in a fixed `visible` mode leaves our members out).
    fn repair(&mut self, peer: &str, poll: &Poll, view: &[(N, Vec<MemberPid>)]) {
        if self.node.is_hidden_peer(peer) != Some(false) || self.mode_of(peer) != PeerMode::Visible
        {
            return;
        }
        // (The queued writes are in the state but not yet cast: written
        // since the question too.)
        let (queued, casts) = self.read_state(|s, queued| {
            let mut written: Vec<MemberPid> = queued
                .iter()
                .filter_map(|e| match e {
                    Effect::Cast { request, .. } => request.pid().copied(),
                    _ => None,
                })
                .collect();
            written.extend(
                self.written
                    .iter()
                    .filter(|(_, n)| **n > poll.since)
                    .map(|(p, _)| *p),
            );
            written.sort_unstable();
            written.dedup();
            repair::casts(s, peer, view, &written)
        });
        self.carry_out(queued);
        if !casts.is_empty() {
            tracing::info!(
                scope = %self.opts.name,
                %peer,
                "its view of our members differs from ours (a reset to visible, a lost cast): {} casts to set it right",
                casts.len()
            );
        }
        self.carry_out(casts);
    }

    /// A reply to the call that follows a poll (`send_new`): if the polled
    /// node's exchange did not come before it, its view is empty, and every
    /// member of it we hold has left. True for any reply to a call of ours
    /// (one of an earlier poll too), which is not a cpg message.
    fn poll_reply(&mut self, msg: &Term) -> bool {
        let Some([Term::Reference(r), _]) = term::as_tuple(msg) else {
            return false;
        };
        if r.node.name != self.node.name() {
            return false;
        }
        let peer = self
            .polled
            .iter()
            .find(|(_, p)| p.call == **r)
            .map(|(peer, _)| peer.clone());
        if let Some(peer) = peer {
            if let Some(poll) = self.polled.remove(&peer) {
                self.drop_unlisted(&peer, &[]);
                self.repair(&peer, &poll, &[]);
            }
        }
        true
    }

    fn ask_all(&mut self) {
        for p in self.node.peers() {
            self.send_new(&p);
        }
    }

    /// The poll: every peer at `visible` is asked for its state; under
    /// `Auto`, every BEAM node we treat as a full peer is asked its
    /// node_type again ([`Ask::Recheck`]).
    fn poll_visible(&mut self) {
        for p in self.node.peers() {
            // (Whether its scope is away, whether a question is out.)
            let known = self.remote.get(&p).map(|r| (r.away(), r.asking()));
            let away = known.is_some_and(|(away, _)| away);
            match self.mode_of(&p) {
                // (One whose scope is away is asked when it is back.)
                PeerMode::Visible if !away => self.send_new(&p),
                // (Watched, its scope up, no question out.)
                PeerMode::All
                    if self.opts.beam_node_type == BeamNodeType::Auto
                        && known == Some((false, false))
                        && self.node.is_hidden_peer(&p) == Some(false) =>
                {
                    self.ask_mode(&p, Ask::Recheck);
                }
                _ => {}
            }
        }
    }

    fn cast(&self, node: &str, request: Request<MemberPid, N>) {
        // cpg casts to the nodes connected at the time of the call; a send to
        // a node not connected (our view of peers lags the node's) would dial
        // it and undo a disconnect.
        if !self.node.is_connected(node) {
            return;
        }
        let msg = WireMsg::Cast(request).encode();
        if let Err(e) = self
            .proc
            .send(Dest::Name(self.opts.name.clone(), node.to_string()), msg)
        {
            tracing::debug!(scope = %self.opts.name, "cast to {node} failed: {e}");
        }
    }

    fn command(&mut self, c: Command) {
        match c {
            Command::Refresh(done) => {
                self.execute(Vec::new());
                self.ask_all();
                let _ = done.send(());
            }
            Command::Crash => panic!("crash injected into scope {}", self.opts.name),
        }
    }

    fn signal(&mut self, s: Signal) {
        if let Signal::Message { msg, .. } = &s {
            if self.poll_reply(msg) {
                return;
            }
        }
        match s {
            Signal::Message { msg, .. } if process::parse_call(&msg).is_some() => {
                let Some((caller, request)) = process::parse_call(&msg) else {
                    return;
                };
                let reply = self.answer_call(request);
                if let Err(e) = self.proc.reply(&caller, reply) {
                    tracing::debug!(scope = %self.opts.name, "reply to {}: {e}", term::pid_text(&caller.pid));
                }
            }
            Signal::Message { from, msg } => self.wire(from, WireMsg::decode(&msg)),
            // A large message to the scope: an exchange is read from its
            // bytes; anything else as a term, as it would have come.
            Signal::Raw { from, payload } => match WireMsg::decode_exchange(&payload) {
                Some(m) => self.wire(from, Ok(m)),
                None => match payload.decode() {
                    Ok(msg) => self.signal(Signal::Message { from, msg }),
                    Err(e) => tracing::warn!(scope = %self.opts.name, "dropped: {e}"),
                },
            },
            Signal::Down {
                item: Term::Pid(pid),
                reason,
                mref,
            } => {
                let Ok(pid) = MemberPid::try_from(&pid) else {
                    return;
                };
                // Only the DOWN of the pid's current monitor: one of a
                // monitor since dropped (the pid left, then joined again)
                // is stale.
                let ours = self.proc.monitor_key(&mref);
                let current = self
                    .state
                    .read()
                    .monitor_of(&pid)
                    .map(|t| MonitorKey(t.get()));
                if ours.is_some() && current == ours {
                    self.wrote(&pid);
                    let effects = self.state_mut().member_down(&pid, &reason_text(&reason));
                    self.execute(effects);
                }
            }
            Signal::Down { mref, reason, .. } => {
                self.remote_scope_down(&mref, &reason);
            }
            Signal::Exit { from, reason, .. } => {
                tracing::debug!(scope = %self.opts.name, "exit signal from {from}: {reason} (trapped)");
            }
        }
    }

    /// A message from another node's scope (decoded, or why not).
    fn wire(&mut self, from: Option<Pid>, m: Result<WireMsg<MemberPid, N>, WireError>) {
        match m {
            Ok(WireMsg::New(node)) => {
                let mode = self.mode_of(&node);
                // Answered whatever the node's type, as cpg does; without
                // its own members where we know them from polls only.
                if mode == PeerMode::All {
                    self.tell_state(|s| s.new_node(&node));
                } else {
                    self.tell_state(|s| s.new_node_without_its_own(&node));
                }
                // A cpg at `visible` sends `{new, Node}` to no hidden node:
                // one that does listens to us now (its node_type set to
                // `all` and `cpg:reset/1` called, which asks every hidden
                // node so). Asked again, it becomes a full peer.
                // (Once while a question is out: a peer sending `{new, Node}`
                // over and over asks nothing more of us.)
                let asking = self.remote.get(&node).is_some_and(RemoteScope::asking);
                if self.opts.beam_node_type == BeamNodeType::Auto
                    && mode == PeerMode::Visible
                    && !asking
                {
                    tracing::info!(scope = %self.opts.name, peer = %node, "a scope at visible asked for our state: asking its node_type again");
                    self.ask_mode(&node, Ask::Back);
                }
            }
            Ok(WireMsg::Cast(Request::Exchange {
                from: origin,
                groups,
            })) => {
                let mut groups = groups;
                let mode = self.mode_of(&origin);
                // (The first exchange after a poll: also from a peer that
                // turned full peer since, whose members came by polls.)
                if let Some(poll) = self.polled.remove(&origin) {
                    self.drop_unlisted(&origin, &groups);
                    self.repair(&origin, &poll, &groups);
                }
                if mode == PeerMode::All && !self.polled.is_empty() {
                    // Merged, its copies of our members set ours (cpg's
                    // rule 2): a change of each, for the polls out
                    // (`wrote` passes over the pids of other nodes).
                    for p in groups.iter().flat_map(|(_, pids)| pids) {
                        self.wrote(p);
                    }
                }
                if mode != PeerMode::All {
                    // A BEAM scope at `visible` learns our members only
                    // from our casts, so its view of them may lag: we
                    // own them (cpg's rule 1), its view never changes
                    // ours. So too for one still asked for its mode (an
                    // answer to a `{new, Node}` of `refresh`): it has had
                    // nothing of ours yet.
                    let me = self.node.name();
                    for (_, pids) in groups.iter_mut() {
                        pids.retain(|p| p.node() != me);
                    }
                }
                // Merged in chunks, each under its own write lock, so
                // readers wait for at most one chunk of a large state
                // transfer. Groups merge independently, in order.
                let mut groups = groups.into_iter().peekable();
                while groups.peek().is_some() {
                    let chunk: Vec<_> = groups.by_ref().take(MERGE_CHUNK).collect();
                    let effects = self.state_mut().exchange(&origin, chunk);
                    self.execute(effects);
                }
            }
            Ok(WireMsg::Cast(request)) => {
                let mut s = self.state_mut();
                if let Err(e) = s.check_remote(&request) {
                    drop(s);
                    tracing::warn!(
                        scope = %self.opts.name,
                        sender = from.as_ref().map(term::pid_text).unwrap_or_default(),
                        member = request.pid().map(|p| p.to_string()).unwrap_or_default(),
                        "ignored a cast from another node: {e}"
                    );
                    return;
                }
                let origin = from
                    .map(|p| p.node.name)
                    .or_else(|| request.pid().map(|p| p.node().to_string()))
                    .unwrap_or_default();
                let effects = s.remote_request(&origin, request);
                drop(s);
                self.execute(effects);
            }
            Err(e) => tracing::warn!(scope = %self.opts.name, "dropped: {e}"),
        }
    }

    /// The reply cpg's `handle_call` gives to `request` (see the module
    /// docs); writes are carried out like local ones.
    fn answer_call(&mut self, request: &Term) -> Term {
        let (op, args): (&str, &[Term]) = match request {
            Term::Atom(a) => (a.name.as_str(), &[]),
            Term::Tuple(t) => match t.elements.split_first() {
                Some((Term::Atom(a), rest)) => (a.name.as_str(), rest),
                _ => ("", &[]),
            },
            _ => ("", &[]),
        };
        let pid = |t: &Term| term::as_pid(t).and_then(|p| MemberPid::try_from(p).ok());
        let write = match (op, args) {
            ("join", [n, p]) => match (N::from_term(n), pid(p)) {
                (Some(n), Some(p)) => Some(self.state_mut().join(n.as_borrowed(), p)),
                _ => Some(Err(WriteError::NotMember)),
            },
            ("join_counts", [c, p]) => match (super::wire::counts::<N>(c, request), pid(p)) {
                (Ok(c), Some(p)) => Some(self.state_mut().join_counts(&c, p)),
                _ => Some(Err(WriteError::NotMember)),
            },
            ("leave", [p]) => match pid(p) {
                Some(p) => Some(self.state_mut().leave_all(&p)),
                None => Some(Err(WriteError::NotMember)),
            },
            ("leave", [n, p]) => match (N::from_term(n), pid(p)) {
                (Some(n), Some(p)) => Some(self.state_mut().leave(n.as_borrowed(), &p)),
                _ => Some(Err(WriteError::NotMember)),
            },
            ("leave_counts", [c, p]) => match (super::wire::counts::<N>(c, request), pid(p)) {
                (Ok(c), Some(p)) => Some(self.state_mut().leave_counts(&c, &p)),
                _ => Some(Err(WriteError::NotMember)),
            },
            _ => None,
        };
        if let Some(result) = write {
            return match result {
                Ok(effects) => {
                    self.execute(effects);
                    term::tuple(vec![term::atom("ok"), term::nil()])
                }
                Err(_) => term::atom("error"),
            };
        }
        let s = self.state.read();
        let names = |v: Vec<N>| term::list(v.iter().map(N::to_term).collect());
        match (op, args) {
            ("which_groups", []) => return names(s.which_groups()),
            ("which_groups", [p]) => {
                return names(pid(p).map(|p| s.which_groups_of(&p)).unwrap_or_default())
            }
            ("which_groups_counts", [p]) => {
                let counts = pid(p)
                    .map(|p| s.which_groups_counts(&p))
                    .unwrap_or_default();
                return term::list(
                    counts
                        .iter()
                        .map(|(n, c)| term::tuple(vec![n.to_term(), count_term(*c)]))
                        .collect(),
                );
            }
            ("join_count", [n, p]) => {
                let count = match (N::from_term(n), pid(p)) {
                    (Some(n), Some(p)) => s.join_count(n.as_borrowed(), &p),
                    _ => 0,
                };
                return count_term(count);
            }
            _ => {}
        }
        let (name_term, exclude) = match args {
            [n] => (n, None),
            [n, p] => match pid(p) {
                Some(p) => (n, Some(p)),
                None => return unknown_call(&self.opts.name, request),
            },
            _ => return unknown_call(&self.opts.name, request),
        };
        let ex = exclude.as_ref();
        let no_group = || read_error(&ReadError::NoSuchGroup(()), name_term);
        let one = |r: Result<(&N::Borrowed, MemberPid), ReadError<N>>| match r {
            Ok((k, p)) => term::tuple(vec![
                term::atom("ok"),
                k.to_owned().to_term(),
                Term::Pid(p.to_pid()),
            ]),
            Err(e) => read_error(&e, name_term),
        };
        let choose = &mut |n: usize| rand::random_range(0..n.max(1));
        let is_read = matches!(
            op,
            "get_members"
                | "get_local_members"
                | "get_remote_members"
                | "get_closest_pid"
                | "get_furthest_pid"
                | "get_random_pid"
                | "get_local_pid"
                | "get_remote_pid"
                | "get_oldest_pid"
                | "get_local_oldest_pid"
                | "get_remote_oldest_pid"
                | "get_newest_pid"
                | "get_local_newest_pid"
                | "get_remote_newest_pid"
        );
        if !is_read {
            return unknown_call(&self.opts.name, request);
        }
        let Some(name) = N::from_term(name_term) else {
            return no_group();
        };
        let n = name.as_borrowed();
        match op {
            "get_members" => members_reply(s.get_members(n, ex), name_term),
            "get_local_members" => members_reply(s.get_local_members(n, ex), name_term),
            "get_remote_members" => members_reply(s.get_remote_members(n, ex), name_term),
            "get_closest_pid" => one(s.get_closest_pid(n, ex, choose)),
            "get_furthest_pid" => one(s.get_furthest_pid(n, ex, choose)),
            "get_random_pid" => one(s.get_random_pid(n, ex, choose)),
            "get_local_pid" => one(s.get_local_pid(n, ex, choose)),
            "get_remote_pid" => one(s.get_remote_pid(n, ex, choose)),
            "get_oldest_pid" => one(s.get_oldest_pid(n, ex)),
            "get_local_oldest_pid" => one(s.get_local_oldest_pid(n, ex)),
            "get_remote_oldest_pid" => one(s.get_remote_oldest_pid(n, ex)),
            "get_newest_pid" => one(s.get_newest_pid(n, ex)),
            "get_local_newest_pid" => one(s.get_local_newest_pid(n, ex)),
            _ => one(s.get_remote_newest_pid(n, ex)),
        }
    }

    /// Visible mode: a polled exchange is `origin`'s whole local view; its
    /// members we hold that it no longer lists have left.
    fn drop_unlisted(&mut self, origin: &str, groups: &[(N, Vec<MemberPid>)]) {
        let mut listed: HashMap<(&N::Borrowed, &MemberPid), usize> = HashMap::new();
        for (name, pids) in groups {
            for p in pids.iter().filter(|p| p.node() == origin) {
                *listed.entry((name.as_borrowed(), p)).or_default() += 1;
            }
        }
        // Per pid of `origin` we hold (not per group we hold: a poll of a
        // node with few members into a large scope reads only theirs), the
        // copies it no longer lists, left in one request.
        let stale: Vec<(MemberPid, Vec<(N, usize)>)> = {
            let s = self.state.read();
            s.monitored_pids()
                .filter(|p| p.node() == origin)
                .filter_map(|p| {
                    let gone: Vec<(N, usize)> = s
                        .which_groups_counts(p)
                        .into_iter()
                        .filter_map(|(name, have)| {
                            let want = listed.get(&(name.as_borrowed(), p)).copied().unwrap_or(0);
                            (want < have).then(|| (name, have - want))
                        })
                        .collect();
                    (!gone.is_empty()).then_some((*p, gone))
                })
                .collect()
        };
        for (pid, counts) in stale {
            let effects = self
                .state_mut()
                .remote_request(origin, Request::LeaveCounts { counts, pid });
            self.execute(effects);
        }
    }

    /// Carries out the effects of the handles' writes queued so far, then
    /// `effects` (a change the task made after them).
    fn execute(&mut self, effects: Vec<Effect<MemberPid, N>>) {
        let queued = std::mem::take(&mut *self.pending.effects.lock());
        self.carry_out(queued);
        self.carry_out(effects);
    }

    /// `f`'s change under the state's lock, with the effects of the writes
    /// queued until then taken under the same lock: carried out before
    /// `f`'s, and those of every later write after. For a message read off
    /// the state (an exchange, the casts that publish our members), which
    /// must go after the casts of the writes it holds and before those of
    /// the writes it does not: `execute` takes the queue only once the
    /// lock is let go, and a write in between would be cast before the
    /// state that does not hold it, then undone by it.
    fn change(&mut self, f: impl FnOnce(&mut Scope<MemberPid, N>) -> Vec<Effect<MemberPid, N>>) {
        let (queued, effects) = {
            let mut s = self.state_mut();
            let effects = f(&mut s);
            (std::mem::take(&mut *self.pending.effects.lock()), effects)
        };
        self.carry_out(queued);
        self.carry_out(effects);
    }

    /// [`change`](Self::change) for a message read off the state that
    /// changes nothing, under a read lock (which keeps the handles' writes
    /// out as well, and lets readers in).
    fn tell_state(&mut self, f: impl FnOnce(&Scope<MemberPid, N>) -> Vec<Effect<MemberPid, N>>) {
        let (queued, effects) = self.read_state(|s, _| f(s));
        self.carry_out(queued);
        self.carry_out(effects);
    }

    /// `f` read off the state under its read lock (which keeps the handles'
    /// writes out as well), with the effects of the writes queued until
    /// then, taken under the same lock (and shown to `f`): the state holds
    /// what our casts so far and those effects tell, no more. The caller
    /// carries the queued effects out before whatever it sends of `f`'s.
    fn read_state<T>(
        &self,
        f: impl FnOnce(&Scope<MemberPid, N>, &[Effect<MemberPid, N>]) -> T,
    ) -> (Vec<Effect<MemberPid, N>>, T) {
        let s = self.state.read();
        let queued = std::mem::take(&mut *self.pending.effects.lock());
        let t = f(&s, &queued);
        (queued, t)
    }

    /// Carries out `effects`, in order. A cast to a peer asked for its mode
    /// (`Auto`) is dropped: the state it gets once it answers holds it.
    fn carry_out(&mut self, effects: Vec<Effect<MemberPid, N>>) {
        // A run of monitors is made in one go (an exchange brings one per
        // new remote pid: one lock and one queueing to the peer for all).
        let mut to_monitor: Vec<MemberPid> = Vec::new();
        for e in effects {
            if !matches!(e, Effect::Monitor(_)) {
                self.monitor_all(&mut to_monitor);
            }
            match e {
                // (A pid monitored already, by a restart's rebuild before
                // this queued effect, gets one monitor: see `monitor_all`.)
                Effect::Monitor(p) => to_monitor.push(p),
                Effect::Demonitor(_, Some(tag)) => self.proc.demonitor_key(MonitorKey(tag.get())),
                // Left before its monitor was set: `monitor_all` drops it.
                Effect::Demonitor(_, None) => {}
                Effect::Cast { node, request } => {
                    if let Some(p) = request.pid() {
                        self.wrote(p);
                    }
                    if self.mode_of(&node) != PeerMode::Asking {
                        self.cast(&node, request);
                    }
                }
                Effect::Notify { name, pid, reason } => {
                    let _ = self.events.send(GroupEvent {
                        group: name,
                        pid: pid.to_pid(),
                        reason,
                    });
                }
            }
        }
        self.monitor_all(&mut to_monitor);
    }

    /// Monitors the pids of `pids` (emptied), in one go, and records each
    /// monitor beside its pid in the scope ([`Scope::set_monitor`]). A
    /// monitor not needed after all is dropped: of a pid that left before
    /// it was set, or the older of two on one pid.
    fn monitor_all(&mut self, pids: &mut Vec<MemberPid>) {
        if pids.is_empty() {
            return;
        }
        let keys = self.proc.monitor_many_interned_keys(pids);
        let mut unneeded: Vec<MonitorKey> = Vec::new();
        {
            let mut state = self.state_mut();
            for (p, key) in pids.drain(..).zip(keys) {
                // keys count from 1: never 0
                let Some(tag) = MonitorTag::new(key.0) else {
                    unneeded.push(key);
                    continue;
                };
                match state.set_monitor(&p, tag) {
                    Ok(None) => {}
                    Ok(Some(old)) | Err(old) => unneeded.push(MonitorKey(old.get())),
                }
            }
        }
        for key in unneeded {
            self.proc.demonitor_key(key);
        }
    }
}
