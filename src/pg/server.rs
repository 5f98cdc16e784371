//! The pg scope process: puts a pure [`PgState`] on a [`Node`].
//!
//! One Rust process per scope, registered under the scope name (so BEAM
//! scopes can reach it as `{Scope, Node}`), speaks pg's protocol:
//! - it sends `{discover, Self}` to `{Scope, Node}` for every connected
//!   node when it starts, on every nodeup, and again, with a backoff from
//!   [`DISCOVER_FIRST`] up to [`DISCOVER_MAX`], until a `discover` or
//!   `sync` comes from that node (a scope answers ours with both; a
//!   process that only claimed to be a scope earlier does not stop them):
//!   so a scope that starts later, restarts (its pid is monitored: the
//!   `'DOWN'` drops its groups and starts the retries) or comes back after
//!   a reconnection is found again. A `discover` to a name not registered
//!   is dropped by BEAM, so the retries are harmless;
//! - it answers `discover` with a `sync`, applies `sync`, `join` and
//!   `leave`, monitors the local members and leaves for them when they
//!   exit, and sends joins and leaves of its own members to every peer;
//! - it sends only to connected nodes (a send dials), and only the four
//!   shapes of [`PgMsg`]; anything else it receives is logged and dropped.
//!
//! Reads ([`PgScope::get_members`], ...) take a read lock on the shared
//! state and never wait for the task. Join/leave events go out on a tokio
//! broadcast channel ([`PgScope::monitor_scope`], [`PgScope::monitor`]),
//! sent while the state's write lock is held, so a monitor's snapshot and
//! its events never overlap or miss a change (as with `pg:monitor`).

use super::scope::{Effect, PgError, PgEvent, PgState};
use super::wire::PgMsg;
use crate::cpg::storage::TermName;
use crate::node::supervise;
use crate::node::Node;
use crate::process::{self, Dest, Process, SendError, Signal};
use crate::sync::ReadMostly;
use crate::term::{self, Pid, Reference};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{broadcast, mpsc, oneshot};
use tokio::time::Instant;

/// The default scope's name (`pg`, started by kernel with `start_pg`).
pub const DEFAULT_PG_SCOPE: &str = "pg";

/// The first wait before discovering again a node whose scope did not
/// answer.
pub const DISCOVER_FIRST: Duration = Duration::from_millis(200);
/// The longest wait between two discovers of a node without a known scope.
pub const DISCOVER_MAX: Duration = Duration::from_secs(5);

/// Why a scope operation failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum PgScopeError {
    /// The write was refused (as `pg:leave` answers `not_joined`).
    #[error(transparent)]
    Pg(#[from] PgError),
    /// The scope process is gone.
    #[error("the pg scope process has stopped")]
    Stopped,
    /// Could not register the scope name.
    #[error(transparent)]
    Register(#[from] SendError),
}

type Reply = oneshot::Sender<Result<(), PgError>>;

enum Command {
    Join(TermName, Vec<Pid>, Reply),
    Leave(TermName, Vec<Pid>, Reply),
    Discover(oneshot::Sender<()>),
    /// Fault injection for the supervision tests: the task panics.
    Crash,
}

/// A running pg scope. Clone it freely; the scope stops when the last
/// handle is dropped (its process exits, so BEAM scopes drop its groups).
#[derive(Clone)]
pub struct PgScope {
    name: String,
    state: Arc<ReadMostly<PgState>>,
    events: broadcast::Sender<PgEvent>,
    cmd: mpsc::UnboundedSender<Command>,
}

impl std::fmt::Debug for PgScope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PgScope({})", self.name)
    }
}

/// A subscription to a scope's joins and leaves (`pg:monitor_scope`), or to
/// one group's (`pg:monitor`).
#[derive(Debug)]
pub struct PgMonitor {
    rx: broadcast::Receiver<PgEvent>,
    group: Option<TermName>,
}

/// Why [`PgMonitor::recv`] returned no event.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MonitorError {
    /// The subscriber fell this many events behind and they were dropped
    /// (the channel holds 4096): take a new snapshot.
    #[error("missed {0} events")]
    Lagged(u64),
    /// The scope stopped.
    #[error("the pg scope has stopped")]
    Stopped,
}

impl PgMonitor {
    /// The next join or leave (of the monitored group, if one).
    pub async fn recv(&mut self) -> Result<PgEvent, MonitorError> {
        loop {
            match self.rx.recv().await {
                Ok(e) if self.group.as_ref().is_none_or(|g| *g == e.group) => return Ok(e),
                Ok(_) => {}
                Err(broadcast::error::RecvError::Lagged(n)) => return Err(MonitorError::Lagged(n)),
                Err(broadcast::error::RecvError::Closed) => return Err(MonitorError::Stopped),
            }
        }
    }
}

impl PgScope {
    /// Starts the scope process `name` on `node`, registered under `name`,
    /// and discovers the scopes of every connected node.
    pub fn start(node: &Node, name: &str) -> Result<PgScope, PgScopeError> {
        let proc = node.spawn_registered(name)?;
        let state = Arc::new(ReadMostly::new(PgState::new(proc.pid().clone())));
        let (cmd, cmd_rx) = mpsc::unbounded_channel();
        let (events, _) = broadcast::channel(4096);
        tokio::spawn(supervise(
            node.clone(),
            name.to_string(),
            state.clone(),
            events.clone(),
            proc,
            cmd_rx,
        ));
        Ok(PgScope {
            name: name.to_string(),
            state,
            events,
            cmd,
        })
    }

    /// The scope's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The scope process's pid (what BEAM scopes know us as; a new one
    /// after the scope task was restarted).
    pub fn pid(&self) -> Pid {
        self.read(|s| s.me().clone())
    }

    /// Makes the scope task panic, for tests of its supervision: it is
    /// restarted under a new pid, keeps its local members and discovers
    /// its peers again. Not for production use.
    #[doc(hidden)]
    pub fn inject_crash(&self) {
        let _ = self.cmd.send(Command::Crash);
    }

    async fn call(&self, c: impl FnOnce(Reply) -> Command) -> Result<(), PgScopeError> {
        let (tx, rx) = oneshot::channel();
        self.cmd.send(c(tx)).map_err(|_| PgScopeError::Stopped)?;
        Ok(rx.await.map_err(|_| PgScopeError::Stopped)??)
    }

    /// `pg:join(Scope, Group, Pid)` for a pid of this node; joined twice,
    /// it is a member twice.
    pub async fn join(&self, group: &TermName, pid: &Pid) -> Result<(), PgScopeError> {
        self.join_pids(group, std::slice::from_ref(pid)).await
    }

    /// `pg:join(Scope, Group, Pids)`.
    pub async fn join_pids(&self, group: &TermName, pids: &[Pid]) -> Result<(), PgScopeError> {
        let (g, p) = (group.clone(), pids.to_vec());
        self.call(|tx| Command::Join(g, p, tx)).await
    }

    /// `pg:leave(Scope, Group, Pid)`: one copy;
    /// `Err(PgScopeError::Pg(PgError::NotJoined))` for a non-member.
    pub async fn leave(&self, group: &TermName, pid: &Pid) -> Result<(), PgScopeError> {
        self.leave_pids(group, std::slice::from_ref(pid)).await
    }

    /// `pg:leave(Scope, Group, Pids)`: one copy of each member among them.
    pub async fn leave_pids(&self, group: &TermName, pids: &[Pid]) -> Result<(), PgScopeError> {
        let (g, p) = (group.clone(), pids.to_vec());
        self.call(|tx| Command::Leave(g, p, tx)).await
    }

    /// Sends `discover` to every connected node's scope now (returns once
    /// sent; the answers arrive by themselves).
    pub async fn discover(&self) -> Result<(), PgScopeError> {
        let (tx, rx) = oneshot::channel();
        self.cmd
            .send(Command::Discover(tx))
            .map_err(|_| PgScopeError::Stopped)?;
        rx.await.map_err(|_| PgScopeError::Stopped)
    }

    /// Runs `f` on the current state under a read lock.
    pub fn read<T>(&self, f: impl FnOnce(&PgState) -> T) -> T {
        f(&self.state.read())
    }

    /// `pg:get_members(Scope, Group)`.
    pub fn get_members(&self, group: &TermName) -> Vec<Pid> {
        self.read(|s| s.get_members(group))
    }

    /// `pg:get_local_members(Scope, Group)`.
    pub fn get_local_members(&self, group: &TermName) -> Vec<Pid> {
        self.read(|s| s.get_local_members(group))
    }

    /// `pg:which_groups(Scope)`.
    pub fn which_groups(&self) -> Vec<TermName> {
        self.read(|s| s.which_groups())
    }

    /// The peer scope processes known now.
    pub fn peers(&self) -> Vec<Pid> {
        self.read(|s| s.peers().cloned().collect())
    }

    /// `pg:monitor_scope(Scope)`: every group with its members now, and
    /// every join and leave after that.
    pub fn monitor_scope(&self) -> (BTreeMap<TermName, Vec<Pid>>, PgMonitor) {
        let s = self.state.read();
        let rx = self.events.subscribe();
        (s.snapshot(), PgMonitor { rx, group: None })
    }

    /// `pg:monitor(Scope, Group)`: the group's members now, and its joins
    /// and leaves after that.
    pub fn monitor(&self, group: &TermName) -> (Vec<Pid>, PgMonitor) {
        let s = self.state.read();
        let rx = self.events.subscribe();
        (
            s.get_members(group),
            PgMonitor {
                rx,
                group: Some(group.clone()),
            },
        )
    }
}

/// A node whose scope is not found yet: when to discover it next. It is
/// found when a `discover` or `sync` comes from that node (a scope answers
/// ours with both), not when any peer there is known: a process that sent
/// us a `discover` of its own (any process may) would otherwise count as
/// that node's scope, and a restarted scope would never be looked for.
struct Pending {
    at: Instant,
    wait: Duration,
}

struct Task {
    node: Node,
    name: String,
    proc: Process,
    state: Arc<ReadMostly<PgState>>,
    events: broadcast::Sender<PgEvent>,
    /// Local members' monitors.
    members: HashMap<Pid, Reference>,
    /// Peer scopes' monitors.
    peers: HashMap<Reference, Pid>,
    pending: HashMap<String, Pending>,
    /// Warnings of messages dropped: at most 10 a second, each saying how
    /// many were held back since the last (a peer flooding the scope with
    /// junk would flood the log); once a flood is over, one more says how
    /// many were not logged ([`crate::util::FloodLog`]).
    drops: Arc<crate::util::FloodLog>,
    /// Lines of peer scopes gone, as `drops`: any process can make itself
    /// a peer (`discover`), and a node of 200k such peers going down made
    /// 200k lines.
    downs: Arc<crate::util::FloodLog>,
}

/// Runs the scope task, and restarts it (a new process under the scope
/// name, local members kept, peers discovered again) when it panics or its
/// process is killed, until the handles or the node are gone: at once the
/// first five times, then after a backoff that grows while it keeps
/// crashing; all over again after a stable run
/// ([`supervise::before_restart`]).
async fn supervise(
    node: Node,
    name: String,
    state: Arc<ReadMostly<PgState>>,
    events: broadcast::Sender<PgEvent>,
    first: Process,
    mut cmd_rx: mpsc::UnboundedReceiver<Command>,
) {
    let mut proc = Some(first);
    let mut attempt: u32 = 0;
    // (One log for every run: a restart does not lose a flood's count.)
    let scope = name.clone();
    let drops = crate::util::FloodLog::new(10, Duration::from_secs(1), move |held_back| {
        tracing::warn!(scope = %scope, held_back, "{held_back} more dropped messages were not logged (a flood, now over)");
    });
    let scope = name.clone();
    let downs = crate::util::FloodLog::new(10, Duration::from_secs(1), move |held_back| {
        tracing::info!(scope = %scope, held_back, "{held_back} more peer scopes went down (not logged one by one)");
    });
    loop {
        let mut p = match proc.take() {
            Some(p) => p,
            None => supervise::register_again(&node, &name, false, &mut attempt).await,
        };
        // Not trapping exits, as OTP pg does not: `exit(Scope, shutdown)`
        // (or any reason but `normal`) ends it, and it restarts as
        // kernel's supervisor restarts pg (keeping its members, see
        // `supervise`).
        p.trap_exit(false);
        let mut task = Task {
            drops: drops.clone(),
            downs: downs.clone(),
            node: node.clone(),
            name: name.clone(),
            proc: p,
            state: state.clone(),
            events: events.clone(),
            members: HashMap::new(),
            peers: HashMap::new(),
            pending: HashMap::new(),
        };
        if attempt > 0 {
            let me = task.proc.pid().clone();
            task.apply(|s| s.restarted(me));
        }
        let started = tokio::time::Instant::now();
        let run = task.run(&mut cmd_rx);
        let why = match supervise::CatchUnwind::new(run).await {
            Ok(None) => return,
            Ok(Some(reason)) => format!("its process was killed: {reason}"),
            Err(msg) => format!("it crashed: {msg}"),
        };
        let (backoff, what) = (node.config().backoff, format!("pg scope {name}"));
        supervise::before_restart(backoff, &what, &why, &mut attempt, started).await;
    }
}

/// What the pg scope task's loop waited for.
enum Input {
    Command(Option<Command>),
    Signal(Result<Signal, term::Term>),
    /// Discovers that did not answer are due again.
    Retry,
}

impl Task {
    /// Serves until the handles or the node are gone (`None`) or the scope
    /// process is killed (`Some(reason)`).
    async fn run(mut self, cmd_rx: &mut mpsc::UnboundedReceiver<Command>) -> Option<String> {
        // Connections' ups and downs come in the mailbox, in order with
        // what each connection brings (as OTP pg takes them from
        // `net_kernel:monitor_nodes/1` and its peers' monitors): a peer's
        // last joins on a connection are read before its nodedown, not
        // applied after the nodedown cleared its members. Asked for
        // before the peers are listed, so that none is missed.
        self.proc.monitor_nodes(true);
        for peer in self.node.peers() {
            self.discover_now(&peer);
        }
        let mut tick = tokio::time::interval(DISCOVER_FIRST / 2);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // Gives the worker back every 2 ms of a run of work, for the tasks
        // it woke meanwhile (`util::Turns`).
        let mut turns = crate::util::Turns::new();
        loop {
            let retrying = !self.pending.is_empty();
            let input = turns
                .next(async {
                    tokio::select! {
                        biased;
                        c = cmd_rx.recv() => Input::Command(c),
                        s = self.proc.recv() => Input::Signal(s),
                        _ = tick.tick(), if retrying => Input::Retry,
                    }
                })
                .await;
            match input {
                Input::Command(c) => match c {
                    Some(c) => self.command(c),
                    None => return None,
                },
                Input::Signal(s) => match s {
                    Ok(s) => self.signal(s),
                    Err(reason) => {
                        if self.proc.stopped_by_node() {
                            tracing::debug!(scope = %self.name, "pg scope stopped: node shutdown");
                            return None;
                        }
                        return Some(term::show(&reason).to_string());
                    }
                },
                Input::Retry => self.retry_discovers(),
            }
        }
    }

    /// Runs `f` on the state; its notifications go out under the same write
    /// lock, the rest is carried out after.
    fn apply(&mut self, f: impl FnOnce(&mut PgState) -> Vec<Effect>) {
        let effects = {
            let mut s = self.state.write();
            let effects = f(&mut s);
            for e in &effects {
                if let Effect::Notify(ev) = e {
                    let _ = self.events.send(ev.clone());
                }
            }
            effects
        };
        self.execute(effects);
    }

    fn execute(&mut self, effects: Vec<Effect>) {
        for e in effects {
            match e {
                Effect::Send { to, msg } => self.send(&to, &msg),
                Effect::MonitorMember(p) => {
                    let mref = self.proc.monitor(p.clone());
                    self.members.insert(p, mref);
                }
                Effect::DemonitorMember(p) => {
                    if let Some(mref) = self.members.remove(&p) {
                        self.proc.demonitor(&mref);
                    }
                }
                Effect::MonitorPeer(p) => {
                    let mref = self.proc.monitor(p.clone());
                    self.peers.insert(mref, p);
                }
                Effect::Notify(_) => {}
            }
        }
    }

    fn send(&self, to: &Pid, msg: &PgMsg) {
        // Only to connected nodes: a send would dial, undoing a disconnect.
        if !self.node.is_connected(&to.node.name) {
            return;
        }
        if let Err(e) = self.proc.send(to.clone(), msg.encode()) {
            tracing::debug!(scope = %self.name, "send to {}: {e}", term::pid_text(to));
        }
    }

    fn discover_now(&mut self, peer: &str) {
        self.pending.insert(
            peer.to_string(),
            Pending {
                at: Instant::now(),
                wait: DISCOVER_FIRST,
            },
        );
        self.retry_discovers();
    }

    fn retry_discovers(&mut self) {
        let now = Instant::now();
        let mut due = Vec::new();
        self.pending.retain(|node, p| {
            if !self.node.is_connected(node) {
                return false;
            }
            if p.at <= now {
                due.push(node.clone());
                p.at = now + p.wait;
                p.wait = (p.wait * 2).min(DISCOVER_MAX);
            }
            true
        });
        if due.is_empty() {
            return;
        }
        let msg = PgMsg::Discover {
            peer: self.state.read().me().clone(),
        }
        .encode();
        for node in due {
            tracing::debug!(scope = %self.name, %node, "discover");
            if let Err(e) = self
                .proc
                .send(Dest::Name(self.name.clone(), node.clone()), msg.clone())
            {
                tracing::debug!(scope = %self.name, "discover to {node}: {e}");
            }
        }
    }

    /// A local write: carried out, and its result sent back.
    fn write(
        &mut self,
        reply: Reply,
        f: impl FnOnce(&mut PgState) -> Result<Vec<Effect>, PgError>,
    ) {
        let mut result = Ok(());
        self.apply(|s| {
            f(s).unwrap_or_else(|e| {
                result = Err(e);
                vec![]
            })
        });
        let _ = reply.send(result);
    }

    fn command(&mut self, c: Command) {
        match c {
            Command::Join(g, pids, reply) => self.write(reply, |s| s.join(&g, &pids)),
            Command::Leave(g, pids, reply) => self.write(reply, |s| s.leave(&g, &pids)),
            Command::Discover(done) => {
                for peer in self.node.peers() {
                    self.discover_now(&peer);
                }
                let _ = done.send(());
            }
            Command::Crash => panic!("crash injected into pg scope {}", self.name),
        }
    }

    fn signal(&mut self, s: Signal) {
        match s {
            // (One the scope found already, listed among the peers as the
            // run began after it asked for these, is not asked again.)
            Signal::NodeUp { node, .. } => {
                if !self.pending.contains_key(&node) && !self.state.read().has_peer_on(&node) {
                    self.discover_now(&node);
                }
            }
            Signal::NodeDown { node } => {
                self.pending.remove(&node);
                self.peers.retain(|_, p| p.node.name != node);
                self.apply(|s| s.node_down(&node));
            }
            // Never registered raw: none comes, but one would be read as
            // any message.
            Signal::Raw { .. } => match s.decoded() {
                Ok(s) => self.signal(s),
                Err(e) => {
                    if let Some(held_back) = self.drops.event() {
                        tracing::warn!(scope = %self.name, held_back, "dropped: {e}");
                    }
                }
            },
            Signal::Message { msg, from } => {
                // `sys:get_state/1` and the like: answered at once (the
                // state `undefined`: OTP pg's record is not this one).
                if let Some((caller, request)) = process::parse_system(&msg) {
                    // `sys:terminate`: ended with the reason, restarted.
                    if let Some(reason) = process::terminate_request(request) {
                        self.proc.terminate(&caller, reason.clone());
                        return;
                    }
                    let state = process::no_state;
                    let _ = self.proc.answer_system(&caller, &self.name, request, state);
                    return;
                }
                if process::parse_call(&msg).is_some() {
                    if let Some(held_back) = self.drops.event() {
                        tracing::warn!(scope = %self.name, held_back, "dropped a gen_server call (a pg scope takes none from other nodes): {}", crate::util::short_text(&msg));
                    }
                    return;
                }
                match PgMsg::decode(&msg) {
                    Ok(m) => {
                        // A scope on that node spoke: it is found.
                        if let PgMsg::Discover { peer } | PgMsg::Sync { peer, .. } = &m {
                            self.pending.remove(&peer.node.name);
                        }
                        self.apply(|s| s.handle(m))
                    }
                    Err(e) => {
                        if let Some(held_back) = self.drops.event() {
                            tracing::warn!(
                                scope = %self.name,
                                sender = from.as_ref().map(term::pid_text).unwrap_or_default(),
                                held_back,
                                "dropped: {e}"
                            );
                        }
                    }
                }
            }
            Signal::Down { mref, item, reason } => {
                if let Some(peer) = self.peers.remove(&mref) {
                    let node = peer.node.name.clone();
                    if let Some(held_back) = self.downs.event() {
                        tracing::info!(scope = %self.name, peer = %term::pid_text(&peer), held_back, "peer scope down: {}", term::show(&reason));
                    }
                    self.apply(|s| s.peer_down(&peer));
                    // Restarted scopes never discover a hidden node: find
                    // the new one.
                    if self.node.is_connected(&node) {
                        self.discover_now(&node);
                    }
                    return;
                }
                if let Some(pid) = term::as_pid(&item) {
                    if self.members.get(pid) == Some(&mref) {
                        self.members.remove(pid);
                        let pid = pid.clone();
                        self.apply(|s| s.member_down(&pid));
                    }
                }
            }
            // (Only `normal` could come, which a process that does not
            // trap exits never gets.)
            Signal::Exit { from, reason, .. } => {
                tracing::debug!(scope = %self.name, "exit signal from {}: {}", term::show(&from), term::show(&reason));
            }
        }
    }
}
