//! The scope task: the scope process's loop, what it does with each
//! signal, node event and command, and the effects it carries out, in the
//! order the changes were made; restarted by [`supervise_scope`] as an
//! OTP supervisor restarts a crashed cpg scope.

use super::modes::{Ask, ModeAnswer, RemoteScope, PROBE_FIRST};
use super::poll::{publish_to, Poll};
use super::{
    BeamNodeType, Command, GroupEvent, PeerMode, PeerModes, Pending, ScopeOptions, Shared,
    MERGE_CHUNK, NODE_DOWN_CHUNK,
};
use crate::cpg::member::MemberPid;
use crate::cpg::scope::{Effect, MonitorTag, Request, Scope, WriteError};
use crate::cpg::storage::GroupKey;
use crate::cpg::wire::{WireError, WireMsg, WireName};
use crate::node::{supervise, Node};
use crate::process::{self, Dest, MonitorKey, Process, Signal};
use crate::sync::ReadMostly;
use crate::term::{self, Pid, Term};
use std::collections::HashMap;
use std::sync::Arc;
use tokio::sync::{broadcast, mpsc};

/// At most this many third nodes are told of per exchange
/// ([`ScopeTask::tell_of_third_nodes`]): a peer may list pids of any
/// number of made-up nodes, and the cluster keeper bounds its own table.
const MAX_THIRD_NODES: usize = 16;

/// How often peers some of whose members did not fit under the scope's
/// total cap are asked again, while there is room ([`ScopeTask::ask_refused`]).
pub(super) const REFUSED_ASKED_AFTER: std::time::Duration = std::time::Duration::from_secs(5);

/// The scope process's state between signals: the peers it watches, the
/// polls it has out, and the shared state and queued effects it shares
/// with the handles.
pub(super) struct ScopeTask<N: GroupKey> {
    pub(super) node: Node,
    pub(super) opts: ScopeOptions,
    pub(super) proc: Process,
    pub(super) state: Arc<ReadMostly<Scope<MemberPid, N>>>,
    /// Effects of the handles' writes, carried out first (see `Pending`).
    pub(super) pending: Arc<Pending<N>>,
    pub(super) events: broadcast::Sender<GroupEvent<N>>,
    /// Each peer's mode of `remote`, for the handles' summary (`show_mode`).
    pub(super) modes: Arc<PeerModes>,
    /// Visible mode: nodes asked with `{new, node()}` and not yet answered.
    pub(super) polled: HashMap<String, Poll>,
    /// Numbers the changes of our members (casts and deaths) while a poll
    /// is out, for [`repair`](super::repair).
    pub(super) writes: u64,
    /// While a poll is out: the number of each local pid's last change
    /// (cleared when the first poll goes out while none is).
    pub(super) written: HashMap<MemberPid, u64>,
    /// The scope process of each connected peer, monitored by name.
    pub(super) remote: HashMap<String, RemoteScope>,
    /// `Auto`: the answers of peers asked for their cpg's `node_type`.
    pub(super) modes_tx: mpsc::UnboundedSender<ModeAnswer>,
    pub(super) modes_rx: mpsc::UnboundedReceiver<ModeAnswer>,
    /// Numbers the questions (a late answer to an earlier one is dropped).
    pub(super) asked: u64,
    /// An exchange being merged, chunk by chunk.
    pub(super) merging: Option<Merge<N>>,
    /// Warnings of what the scope refuses from other nodes (casts refused
    /// for their copies, messages it cannot read, unknown calls): at most
    /// 10 a second (a peer flooding them would flood the log: 200,000
    /// lines in 3 s before), each saying how many were held back since the
    /// last.
    /// Once a flood of them is over, one more says how many were not
    /// logged ([`crate::util::FloodLog`]).
    pub(super) refusals: std::sync::Arc<crate::util::FloodLog>,
    /// Full peers some of whose members the scope's total cap left out (a
    /// cast refused, an exchange merged up to the cap): asked for their
    /// state again once copies have left and there is room
    /// ([`ScopeTask::ask_refused`]). Their casts say no more of what was
    /// left out, and a peer at `all` is not polled.
    pub(super) refused: std::collections::BTreeSet<String>,
    /// The scope process that last sent us a cpg message, of each node
    /// that has (kept across its disconnects, for [`ScopeTask::scope_seen`]).
    pub(super) scope_pids: HashMap<String, Pid>,
}

/// The groups of an exchange not yet merged, and whose they are.
pub(super) struct Merge<N> {
    origin: String,
    rest: std::vec::IntoIter<(N, Vec<MemberPid>)>,
    /// The answer to a poll: `origin`'s copies are also put in its order
    /// ([`Scope::exchange_polled`]).
    polled: bool,
}

/// What the scope task's loop waited for.
enum Input {
    Command(Option<Command>),
    /// The handles queued effects.
    Pending,
    Signal(Result<Signal, Term>),
    Mode(ModeAnswer),
    /// Visible mode's poll is due.
    Poll,
    /// The probe of peers' scopes that went away is due.
    Probe,
    /// Peers some of whose members did not fit may be asked again.
    Refused,
}

/// How a run of the scope task ended.
pub(super) enum Stop {
    /// The handle was dropped or the node stopped: the scope ends.
    Done,
    /// The scope process was killed (an exit signal): restarted.
    Killed(String),
}

/// The scope's state, locked for a change, with [`Effect::Notify`] on only
/// while someone is subscribed to the events (nobody else reads them).
pub(super) fn write_state<'a, N: WireName>(
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
/// members kept, remote ones asked for again): at once the first five
/// times, as cpg's supervisor does, then after a backoff that grows while
/// it keeps crashing; all over again after a stable run
/// ([`supervise::before_restart`]).
pub(super) async fn supervise_scope<N: WireName>(
    node: Node,
    opts: ScopeOptions,
    (state, pending, events, modes): Shared<N>,
    first: Process,
    mut cmd_rx: mpsc::UnboundedReceiver<Command>,
) {
    let mut proc = Some(first);
    let mut attempt: u32 = 0;
    // (One log for every run: a restart does not lose a flood's count.)
    let scope = opts.name.clone();
    let refusals = crate::util::FloodLog::new(
        10,
        std::time::Duration::from_secs(1),
        move |held_back| {
            tracing::warn!(scope = %scope, held_back, "{held_back} more refused messages were not logged (a flood, now over)");
        },
    );
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
            merging: None,
            refusals: refusals.clone(),
            refused: Default::default(),
            scope_pids: HashMap::new(),
        };
        let started = tokio::time::Instant::now();
        let run = task.run(&mut cmd_rx, attempt > 0);
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

pub(super) fn reason_text(t: &Term) -> String {
    match t {
        Term::Atom(a) => a.name.clone(),
        t => crate::term::show(t).to_string(),
    }
}

impl<N: WireName> ScopeTask<N> {
    /// The shared state, locked for a change ([`write_state`]).
    pub(super) fn state_mut(
        &self,
    ) -> crossbeam_utils::sync::ShardedLockWriteGuard<'_, Scope<MemberPid, N>> {
        write_state(&self.state, &self.events)
    }

    /// Serves until the handle or the node is gone ([`Stop::Done`]) or the
    /// scope process is killed ([`Stop::Killed`]). `restarted`: a previous
    /// run crashed, so the state is rebuilt first.
    pub(super) async fn run(
        mut self,
        cmd_rx: &mut mpsc::UnboundedReceiver<Command>,
        restarted: bool,
    ) -> Stop {
        // Connections' ups and downs come in the mailbox, in order with
        // what each connection brings: a peer's casts read before its
        // nodedown (a node resuming from a freeze reads its old
        // connections' last casts, and its peers' new connections are up
        // at once) and its exchange after its nodeup. Taken from the
        // node's event stream, ahead of the mailbox, such old casts were
        // applied after the nodedown had cleared the peer's members, and
        // stayed.
        self.proc.monitor_nodes(true);
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
        let mut refused = tokio::time::interval(REFUSED_ASKED_AFTER);
        refused.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // Gives the worker back every 2 ms of a run of work (a burst of
        // casts, each of a million copies; a huge merge), for the tasks it
        // woke meanwhile (`util::Turns`).
        let mut turns = crate::util::Turns::new();
        loop {
            // An exchange is merged whole before anything else is taken:
            // messages apply in the order they came.
            if self.merging.is_some() {
                turns.turn().await;
                self.merge_chunk();
                continue;
            }
            let probing = self
                .remote
                .values()
                .any(|r| r.away() || r.reask_at.is_some());
            let input = turns
                .next(async {
                    tokio::select! {
                        // (A peer's nodeup and nodedown come in the
                        // mailbox, in order with its messages.)
                        biased;
                        c = cmd_rx.recv() => Input::Command(c),
                        _ = self.pending.wake.notified() => Input::Pending,
                        s = self.proc.recv() => Input::Signal(s),
                        Some(a) = self.modes_rx.recv() => Input::Mode(a),
                        _ = poll.tick(), if self.opts.beam_node_type != BeamNodeType::All => Input::Poll,
                        _ = probe.tick(), if probing => Input::Probe,
                        _ = refused.tick(), if !self.refused.is_empty() => Input::Refused,
                    }
                })
                .await;
            match input {
                Input::Command(c) => match c {
                    Some(c) => self.command(c),
                    None => return Stop::Done,
                },
                Input::Pending => self.execute(Vec::new()),
                Input::Signal(s) => match s {
                    Ok(s) => self.signal(s),
                    Err(reason) => {
                        // An exit signal ends the scope whatever its reason,
                        // and the scope comes back, as cpg's supervisor
                        // restarts it: `exit(Scope, shutdown)` from any
                        // process too (it stopped the scope for good, our
                        // members gone from the cluster).
                        if self.proc.stopped_by_node() {
                            tracing::debug!(scope = %self.opts.name, "scope stopped: node shutdown");
                            return Stop::Done;
                        }
                        return Stop::Killed(crate::term::show(&reason).to_string());
                    }
                },
                Input::Mode(a) => self.mode_answered(a),
                Input::Poll => self.poll_visible(),
                Input::Probe => self.probe_remote_scopes(),
                Input::Refused => self.ask_refused(),
            }
        }
    }

    /// The nodes the scope's state holds as connected (copied out of the
    /// read lock: the caller changes the state for each).
    fn connected_nodes(&self) -> Vec<String> {
        self.state
            .read()
            .connected_nodes()
            .map(String::from)
            .collect()
    }

    /// After a crash: remote members come back from the peers (dropped here,
    /// asked for again by `peer_up`), local members are ours and stay, each
    /// monitored again (one that died meanwhile answers `noproc` and goes).
    ///
    /// A peer still connected stays a peer of the state while its members
    /// are dropped: the handle writes on the state directly, not through
    /// this task, and a write made meanwhile must still cast to it. A leave
    /// that did not would be lost on it for good, for the exchange that
    /// `peer_up` sends next adds members and never removes any (seen: a
    /// leave made as the scope came back after `exit(Scope, kill)` stayed
    /// undone on the BEAM peer, about once in 36 runs of the fault test
    /// with three at once).
    pub(super) fn rebuild(&mut self) {
        for n in self.connected_nodes() {
            if self.node.is_connected(&n) {
                self.drop_members_of(&n);
            } else {
                self.node_down(&n);
            }
        }
        let mut pids: Vec<MemberPid> = self.state.read().monitored_pids().cloned().collect();
        self.monitor_all(&mut pids);
    }

    /// `node`'s members leave, in parts as in [`node_down`](Self::node_down),
    /// and `node` stays a peer.
    fn drop_members_of(&mut self, node: &str) {
        let pids = self.state.read().members_of_node(node);
        self.members_down(&pids);
    }

    /// `peer` is connected. `known`: it was before this run of the task
    /// (a restart after a crash), so its scope may hold our members.
    pub(super) fn peer_up(&mut self, peer: &str, known: bool) {
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
        // and the peer's comes in by itself; no `{new, Node}` (cpg sends it
        // only when its scope starts). `Visible`: the BEAM scope tells us
        // nothing unasked, so ask, and publish ours by casts.
        let visible = self.mode_of(peer) == PeerMode::Visible;
        self.change(|s| {
            // As cpg on nodeup, but our own members only (`Scope::state_to`:
            // what we hold of a third node's the peer has from it, and ours
            // may be stale when we come back from a freeze).
            let _ = s.node_up(peer, true);
            let mut effects = s.state_to(peer, false);
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
    pub(super) fn node_down(&mut self, node: &str) {
        let pids = self.state_mut().node_down_start(node);
        self.members_down(&pids);
    }

    /// `pids` leave every group, in parts of [`NODE_DOWN_CHUNK`], readers
    /// let in between ([`node_down`](Self::node_down)).
    fn members_down(&mut self, pids: &[MemberPid]) {
        for part in pids.chunks(NODE_DOWN_CHUNK) {
            self.state.let_readers_in();
            let effects = self.state_mut().node_members_down(part);
            self.execute(effects);
        }
    }

    pub(super) fn cast(&self, node: &str, request: Request<MemberPid, N>) {
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

    pub(super) fn command(&mut self, c: Command) {
        match c {
            Command::Refresh(done) => {
                self.execute(Vec::new());
                self.ask_all();
                let _ = done.send(());
            }
            Command::Crash => panic!("crash injected into scope {}", self.opts.name),
        }
    }

    /// A message from `from`, of a connected peer whose scope we watch:
    /// the peer's name may take the node-name table's places kept for
    /// connected nodes ([`Atom::new_peer`](crate::atom::Atom::new_peer)),
    /// so that its members are named however full the table is. The node
    /// does so for every visible peer once connected; a hidden one
    /// (another cpg-node, an `erl -hidden`) is named so once its scope
    /// talks to ours, not for connecting alone (a query client connecting
    /// under a new name each time would use the places up).
    fn name_peer(&self, from: Option<&Pid>) {
        if let Some(p) = from {
            if p.node.name != self.node.name() && self.remote.contains_key(&p.node.name) {
                let _ = crate::atom::Atom::new_peer(&p.node.name);
            }
        }
    }

    pub(super) fn signal(&mut self, s: Signal) {
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
                self.reply(&caller, request);
            }
            Signal::Message { msg, .. } if process::parse_system(&msg).is_some() => {
                let Some((caller, request)) = process::parse_system(&msg) else {
                    return;
                };
                self.system(&caller, request);
            }
            Signal::Message { from, msg } => {
                if !self.info(&msg) {
                    self.name_peer(from.as_ref());
                    self.wire(from, WireMsg::decode(&msg));
                }
            }
            // A large message to the scope: an exchange is read from its
            // bytes; anything else as a term, as it would have come.
            Signal::Raw { from, payload } => {
                self.name_peer(from.as_ref());
                match WireMsg::decode_exchange(&payload) {
                    Some(m) => self.wire(from, Ok(m)),
                    None => match payload.decode() {
                        Ok(msg) => self.signal(Signal::Message { from, msg }),
                        Err(e) => {
                            if let Some(held_back) = self.refusals.event() {
                                tracing::warn!(scope = %self.opts.name, held_back, "dropped: {e}");
                            }
                        }
                    },
                }
            }
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
                tracing::debug!(scope = %self.opts.name, "exit signal from {}: {} (trapped)", crate::term::show(&from), crate::term::show(&reason));
            }
            // (One the scope took up already: listed among the peers as
            // the run began, after it asked for these.)
            Signal::NodeUp { node, .. } => {
                if !self.remote.contains_key(&node) {
                    self.peer_up(&node, false);
                }
            }
            Signal::NodeDown { node } => {
                self.node_down(&node);
                self.polled.remove(&node);
                self.refused.remove(&node);
                self.remote.remove(&node);
                self.show_mode(&node);
            }
        }
    }

    /// Tells the node of the third nodes (neither `origin` nor ours) whose
    /// pids an exchange or a poll's answer from `origin` lists, at most
    /// [`MAX_THIRD_NODES`] of them ([`Node::heard_of`]). Their members
    /// are not taken from it (each node's are read from that node), so a
    /// node we are not connected to, another hidden node such as a second
    /// cpg-node connected to the same BEAM nodes, is dialled by the
    /// cluster keeper to read them: a BEAM node's view holds them, and
    /// so should ours.
    fn tell_of_third_nodes(&self, groups: &[(N, Vec<MemberPid>)], origin: crate::atom::Atom) {
        let ours = crate::atom::Atom::new(self.node.name()).ok();
        let mut seen: Vec<crate::atom::Atom> = Vec::new();
        let mut last = origin;
        'groups: for (_, pids) in groups {
            for p in pids {
                let a = p.node_atom();
                // (Runs of one node's pids are the common case.)
                if a == last || a == origin || Some(a) == ours || seen.contains(&a) {
                    continue;
                }
                last = a;
                seen.push(a);
                if seen.len() == MAX_THIRD_NODES {
                    break 'groups;
                }
            }
        }
        for a in seen {
            self.node.heard_of(a.as_str());
        }
    }

    /// Merges the next [`MERGE_CHUNK`] groups of the exchange being merged.
    pub(super) fn merge_chunk(&mut self) {
        let Some(mut m) = self.merging.take() else {
            return;
        };
        let chunk: Vec<_> = m.rest.by_ref().take(MERGE_CHUNK).collect();
        let effects = if m.polled {
            self.state_mut().exchange_polled(&m.origin, chunk)
        } else {
            self.state_mut().exchange(&m.origin, chunk)
        };
        self.execute(effects);
        if m.rest.len() > 0 {
            self.merging = Some(m);
        } else if !m.polled && self.state.read().is_full() {
            // (Some of it may not have fit: asked again when there is room.)
            self.refused.insert(m.origin);
        }
    }

    /// Asks the full peers some of whose members did not fit for their
    /// state again, once copies have left and the scope has room: their
    /// exchange's merge adds what it holds and we do not (cpg's merge).
    /// Each is asked at most once every [`REFUSED_ASKED_AFTER`]; what does
    /// not fit again is asked for again. A peer read by polls needs no
    /// question: its next poll brings it all.
    pub(super) fn ask_refused(&mut self) {
        if self.state.read().is_full() {
            return;
        }
        for peer in std::mem::take(&mut self.refused) {
            if self.mode_of(&peer) == PeerMode::All {
                tracing::info!(scope = %self.opts.name, %peer, "room again under the scope's total cap: asking the peer for the members it left out");
                self.ask_state(&peer, false);
            }
        }
    }

    /// A message from another node's scope (decoded, or why not).
    pub(super) fn wire(&mut self, from: Option<Pid>, m: Result<WireMsg<MemberPid, N>, WireError>) {
        if let (Some(scope), Ok(WireMsg::Cast(request))) = (&from, &m) {
            let exchange = matches!(request, Request::Exchange { from: origin, .. } if *origin == scope.node.name);
            self.scope_seen(scope, exchange);
        }
        match m {
            Ok(WireMsg::New(node)) => {
                let mode = self.mode_of(&node);
                // Answered whatever the node's type, as cpg does; without
                // its own members where we know them from polls only.
                // (Our own members, and a full peer's own to repair a scope
                // of its that came back empty: `Scope::state_to`.)
                let theirs = mode == PeerMode::All;
                self.tell_state(|s| s.state_to(&node, theirs));
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
                // (The first exchange after a poll: also from a peer that
                // turned full peer since, whose members came by polls.)
                // Only the polled node's own scope answers a poll: an
                // exchange naming it that another node sent (anyone may
                // name any node, and cpg merges it as it would that
                // node's) is merged as any exchange, not taken for its
                // whole view. Taken so, a node casting `{exchange, B,
                // []}` over and over while B was polled dropped B's
                // members here and made each poll cast our joins to B
                // again, its copies of our members growing by each.
                let sent_by_origin = from.as_ref().is_some_and(|p| p.node.name == origin);
                let polled = match sent_by_origin {
                    true => self.polled.remove(&origin),
                    false => None,
                };
                if let Some(poll) = &polled {
                    tracing::debug!(scope = %self.opts.name, peer = %origin, groups = groups.len(), "poll answered");
                    self.drop_unlisted(&origin, &groups);
                    self.repair(&origin, poll, &groups);
                }
                // Our own members are ours (cpg's rule 1): a peer's copies
                // of them never set ours, whatever its mode. cpg's merge
                // sets a scope's own pids from an exchange to repair a
                // scope that restarted empty; ours never loses its local
                // members (they survive a restart of this task), so a
                // peer's view of them is at best as new as ours, and one
                // that answers a `{new, Node}` of ours while a write of
                // ours is on its way would undo that write here (a leave
                // made as the task restarts: the answer put the member
                // back, and our next exchange put it back on the peer). A
                // BEAM scope at `visible` learns our members only from our
                // casts, and one still asked for its mode has had nothing
                // of ours yet: the same holds for them.
                //
                // Nor is a third node's (cpg merges them too): its members
                // are read from its own exchange, casts or polls. A peer
                // coming back from a freeze sends the view it held when it
                // stopped, before it sees the end of its other
                // connections; merged, its copies of a third node's
                // members set them back as they were then (ghosts of those
                // that left meanwhile, copies lost), and nothing repaired
                // them while the third node stayed connected.
                //
                // So only the origin's own pids are taken (its node's atom
                // compared as a number: an exchange of a million
                // memberships is read once more; a name that could be no
                // atom is that of no pid decoded). A poll's answer keeps the
                // others to the merge, which takes the same, and puts them
                // among ours as listed (`Scope::exchange_polled`).
                let theirs = crate::atom::Atom::new(&origin);
                if let Ok(theirs) = theirs {
                    self.tell_of_third_nodes(&groups, theirs);
                }
                match theirs {
                    Ok(_) if polled.is_some() => {}
                    Ok(theirs) => groups.retain_mut(|(_, pids)| {
                        pids.retain(|p| p.node_atom() == theirs);
                        !pids.is_empty()
                    }),
                    Err(_) => groups.clear(),
                }
                // Merged in chunks, each under its own write lock, so
                // readers wait for at most one chunk of a large state
                // transfer. Groups merge independently, in order. The
                // first chunk here, the rest by the loop (`run`), which
                // takes no other input until they are merged but may give
                // its worker back between them.
                if !groups.is_empty() {
                    self.merging = Some(Merge {
                        origin,
                        rest: groups.into_iter(),
                        polled: polled.is_some(),
                    });
                    self.merge_chunk();
                }
            }
            Ok(WireMsg::Cast(request)) => {
                let mut s = self.state_mut();
                if let Err(e) = s.check_remote(&request) {
                    drop(s);
                    if matches!(e, WriteError::ScopeFull { .. }) {
                        let node = from.as_ref().map(|p| p.node.name.clone());
                        let node = node.or_else(|| request.pid().map(|p| p.node().to_string()));
                        self.refused.extend(node);
                    }
                    if let Some(held_back) = self.refusals.event() {
                        tracing::warn!(
                            scope = %self.opts.name,
                            sender = from.as_ref().map(term::pid_text).unwrap_or_default(),
                            member = request.pid().map(|p| p.to_string()).unwrap_or_default(),
                            held_back,
                            "ignored a cast from another node: {e}"
                        );
                    }
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
            Err(e) => {
                if let Some(held_back) = self.refusals.event() {
                    tracing::warn!(
                        scope = %self.opts.name,
                        sender = from.as_ref().map(term::pid_text).unwrap_or_default(),
                        held_back,
                        "dropped: {e}"
                    );
                }
            }
        }
    }

    /// Carries out the effects of the handles' writes queued so far, then
    /// `effects` (a change the task made after them).
    pub(super) fn execute(&mut self, effects: Vec<Effect<MemberPid, N>>) {
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
    pub(super) fn change(
        &mut self,
        f: impl FnOnce(&mut Scope<MemberPid, N>) -> Vec<Effect<MemberPid, N>>,
    ) {
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
    pub(super) fn tell_state(
        &mut self,
        f: impl FnOnce(&Scope<MemberPid, N>) -> Vec<Effect<MemberPid, N>>,
    ) {
        let (queued, effects) = self.read_state(|s, _| f(s));
        self.carry_out(queued);
        self.carry_out(effects);
    }

    /// `f` read off the state under its read lock (which keeps the handles'
    /// writes out as well), with the effects of the writes queued until
    /// then, taken under the same lock (and shown to `f`): the state holds
    /// what our casts so far and those effects tell, no more. The caller
    /// carries the queued effects out before whatever it sends of `f`'s.
    pub(super) fn read_state<T>(
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
    pub(super) fn carry_out(&mut self, effects: Vec<Effect<MemberPid, N>>) {
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
    pub(super) fn monitor_all(&mut self, pids: &mut Vec<MemberPid>) {
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
