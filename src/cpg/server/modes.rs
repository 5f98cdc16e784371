//! How each peer's cpg runs (`all` or `visible`, asked under `Auto`),
//! and whether its scope process is running: watched by a monitor,
//! probed when it went away, our state sent again when it is back.

use super::poll::publish_to;
use super::task::{reason_text, ScopeTask};
use super::{BeamNodeType, PeerMode};
use crate::cpg::member::MemberPid;
use crate::cpg::scope::{Effect, Scope};
use crate::cpg::wire::WireName;
use crate::node::Node;
use crate::process::Dest;
use crate::term::{self, Pid, Reference, Term};
use std::time::Duration;

/// Why `Auto` asks a peer how its cpg runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Ask {
    /// It connected: nothing of ours goes to it until it answers.
    Connect,
    /// Our scope process started again (after a crash or a kill) while the
    /// peer stayed connected: it may hold our members from before, so it
    /// is treated as a full peer until it answers (our casts go on).
    Restarted,
    /// Its scope process came back, or asked for our state while polled.
    Back,
    /// Asked again at each poll while it is a full peer: `cpg:reset/1`
    /// after its `node_type` became `visible` tells a hidden node nothing.
    Recheck,
}

/// A peer's answer to `Auto`'s question ([`ask_node_type`]).
pub(super) struct ModeAnswer {
    pub(super) peer: String,
    /// The question's number ([`RemoteScope::question`]).
    pub(super) question: u64,
    pub(super) answer: Option<BeamNodeType>,
    pub(super) why: Ask,
}

/// How long a probe monitor of a peer's scope must go without a `noproc`
/// DOWN before the scope counts as running again. A monitor of a name that
/// is not registered is answered at once (one round trip), so this is many
/// round trips even on a slow network.
pub(super) const PROBE_GRACE: Duration = Duration::from_millis(300);
/// The first wait before probing a peer's scope that went away.
pub(super) const PROBE_FIRST: Duration = Duration::from_millis(200);

/// A peer reconnected, or whose exchange came from a new scope process,
/// is asked for its state again this much later ([`ScopeTask::reask_soon`])
/// ... (Long enough for the exchange of a large scope that did not
/// restart to come first: a BEAM scope of a million memberships takes
/// about 2 s to send it, and is not asked to again once it has.)
pub(super) const REASK_FIRST: Duration = Duration::from_secs(3);

/// ... and once more this much after that.
pub(super) const REASK_THEN: Duration = Duration::from_secs(6);

/// What the scope task knows of one peer's scope process. A BEAM scope that
/// restarts (`application:stop/start(cpg)`, a crash) has lost every
/// membership, ours included, and a hidden node gets no nodeup to tell it:
/// the monitor's DOWN does. The scope is then probed with a new monitor
/// (answered at once with `noproc` while the name is not registered); one
/// that holds for [`PROBE_GRACE`] means the scope is back, and our members
/// are published to it again.
pub(super) struct RemoteScope {
    pub(super) mref: Reference,
    /// How we treat the peer (given, or as it answered under `Auto`).
    pub(super) mode: PeerMode,
    /// The number of the last question asked (`Auto`).
    pub(super) question: u64,
    /// The number of the last question answered: a question is out while
    /// it differs from `question`.
    pub(super) answered: u64,
    /// `Some(since)` while the monitor is a probe.
    pub(super) probing_since: Option<tokio::time::Instant>,
    /// `Some(at)` while the scope is away: when to probe next.
    pub(super) next_probe: Option<tokio::time::Instant>,
    /// The wait before the next probe after a failed one (doubles up to the
    /// poll interval).
    pub(super) retry: Duration,
    /// When to ask its state again ([`ScopeTask::reask_soon`]), and how
    /// many times more after that.
    pub(super) reask_at: Option<tokio::time::Instant>,
    pub(super) reasks_left: u8,
    /// Not asked again once a cpg message came from this scope process
    /// (a reconnection: the one we knew before, which did not restart);
    /// `None`: asked whatever came (its scope process changed).
    pub(super) reask_unless: Option<Pid>,
    /// The scope process that sent its last cpg message on this
    /// connection.
    pub(super) seen: Option<Pid>,
}

impl RemoteScope {
    /// A question about its mode is out (`Auto`).
    pub(super) fn asking(&self) -> bool {
        self.question != self.answered
    }

    /// Its scope process is away (probed, or waiting to be).
    pub(super) fn away(&self) -> bool {
        self.probing_since.is_some() || self.next_probe.is_some()
    }
}

/// How `peer`'s cpg runs, asked through its `rex`:
/// `application:get_env(cpg, node_type)`, which cpg reads when its scopes
/// start (its `.app` says `visible` unless configured). `None` when the
/// peer has no cpg loaded (the env is then `undefined`), does not answer,
/// or is gone (not asked then: the call would dial it again).
pub(super) async fn ask_node_type(node: &Node, peer: &str) -> Option<BeamNodeType> {
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
pub(super) async fn check_mode(node: &Node, peer: &str, scope: &str, ours: BeamNodeType) {
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

/// Our whole state as `peer` is told it in `mode` (an exchange, or at
/// `visible` the casts of [`publish_to`]), once it answered under `Auto` or
/// when its scope came back. `replace`: it may hold our members already
/// (what it gets replaces them, see [`publish_to`]).
///
/// The exchange lists our own members only ([`Scope::state_to`]): a
/// third node's the peer has from that node. It leaves the peer's own
/// members out too: the peer has no need of them,
/// and they could undo its writes, for the merge sets a scope's own pids'
/// counts from an exchange:
/// - on a new connection: cpg sends its exchange at nodeup, when it holds
///   none of the peer's members (they left with the nodedown); ours goes
///   once the peer answered, and what we hold of its members by then came
///   from the peer itself. Listed as they were read, they would cross the
///   peer's writes still on their way to us: a join made right after the
///   connect would be undone on the peer, for good;
/// - after our scope restarted (it dropped the peer's members): the same,
///   and the peer's exchange may not even have come yet;
/// - to a scope that came back (started again, empty): it asked us for
///   our state (`{new, Node}`, to every node it listens to, as cpg does on
///   start) and our answer held them, which repairs it as cpg's answer
///   does; listed again later, they would undo the joins it made since;
/// - where they came by polls (it was at `visible`): a member that left
///   since the last poll would be brought back.
pub(super) fn state_for<N: WireName>(
    s: &Scope<MemberPid, N>,
    peer: &str,
    mode: PeerMode,
    replace: bool,
) -> Vec<Effect<MemberPid, N>> {
    match mode {
        PeerMode::Visible => publish_to(s, peer, replace),
        _ => s.state_to(peer, false),
    }
}

impl<N: WireName> ScopeTask<N> {
    /// Monitors `peer`'s scope process (by name) and sets how the peer is
    /// treated: as we were told (checked in the background against how
    /// the peer's cpg runs), or, under `Auto`, asked. A `known` peer (the
    /// task restarted) may hold our members from before ([`Ask::Restarted`]):
    /// treated as a full peer until it answers (our casts go on, so none of
    /// our leaves is lost on it; the answer then replaces what it holds of
    /// ours).
    pub(super) fn watch_remote_scope(&mut self, peer: &str, known: bool) {
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
                reask_at: None,
                reasks_left: 0,
                reask_unless: None,
                seen: None,
            },
        );
        if let Some(before) = self.scope_pids.get(peer).cloned() {
            self.reask_soon(peer, Some(before));
        }
        self.show_mode(peer);
        if self.opts.beam_node_type == BeamNodeType::Auto {
            self.ask_mode(peer, if known { Ask::Restarted } else { Ask::Connect });
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
    /// On a new connection nothing of ours goes to it until then. Our
    /// scope restarted ([`Ask::Restarted`]) or its scope process came back
    /// ([`Ask::Back`]): our casts go on as before
    /// meanwhile (the new scope may get some of them before the state, which
    /// sets it right), for cpg may have restarted with another node_type or
    /// been loaded only now. [`Ask::Recheck`]: nothing changes until it
    /// answers otherwise.
    pub(super) fn ask_mode(&mut self, peer: &str, why: Ask) {
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
    pub(super) fn mode_answered(&mut self, a: ModeAnswer) {
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
        // A hidden peer is mostly a query client (`cpg-node status`, an
        // erl remote shell) with no cpg: said at debug, not for each query.
        if self.node.is_hidden_peer(&a.peer) == Some(true) {
            tracing::debug!(scope = %self.opts.name, peer = %a.peer, "{how}");
        } else {
            tracing::info!(scope = %self.opts.name, peer = %a.peer, "{how}");
        }
        let replace = a.why != Ask::Connect;
        let (queued, state) = self.read_state(|s, _| state_for(s, &a.peer, mode, replace));
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
        } else if replace || mode == PeerMode::Visible {
            self.send_new(&a.peer);
        }
    }

    /// Shows `peer`'s mode (or that it is gone) to the handles.
    pub(super) fn show_mode(&self, peer: &str) {
        let mut modes = self.modes.lock();
        match self.remote.get(peer) {
            Some(r) => modes.insert(peer.to_string(), r.mode),
            None => modes.remove(peer),
        };
    }

    /// How `peer` is treated: its mode under `Auto` (a full peer if not
    /// watched), else the mode given.
    pub(super) fn mode_of(&self, peer: &str) -> PeerMode {
        match self.opts.beam_node_type {
            BeamNodeType::All => PeerMode::All,
            BeamNodeType::Visible => PeerMode::Visible,
            BeamNodeType::Auto => self.remote.get(peer).map_or(PeerMode::All, |r| r.mode),
        }
    }

    /// A monitor of a peer's scope fired.
    pub(super) fn remote_scope_down(&mut self, mref: &Reference, reason: &Term) -> bool {
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
            let msg = "the peer's scope process is not running; our members go to it when it is (back) up";
            // (At debug for a hidden peer, as above, and for one no longer
            // connected: a peer that stops ends its scope first, and its
            // nodedown says the rest, as for a `cpg-node members` client.)
            if self.node.is_hidden_peer(peer) != Some(false) {
                tracing::debug!(scope = %self.opts.name, %peer, %reason, "{msg}");
            } else {
                tracing::info!(scope = %self.opts.name, %peer, %reason, "{msg}");
            }
            r.retry = PROBE_FIRST;
        }
        r.next_probe = Some(now + r.retry);
        // A poll out to it goes unanswered: forgotten (and none is sent
        // while it is away), so that changes are not numbered for it.
        let peer = peer.clone();
        self.polled.remove(&peer);
        true
    }

    /// A cpg message (`exchange`: the exchange of its own node) from
    /// `scope`, a peer's scope process: remembered as its node's, and an
    /// exchange from another scope process than the last (it restarted)
    /// has the peer asked for its state again ([`reask_soon`](Self::reask_soon)).
    pub(super) fn scope_seen(&mut self, scope: &Pid, exchange: bool) {
        let node = &scope.node.name;
        let Some(r) = self.remote.get_mut(node) else {
            return;
        };
        // (Every cast of a peer comes here: nothing is cloned while its
        // scope process stays the same.)
        if r.seen.as_ref() != Some(scope) {
            r.seen = Some(scope.clone());
        }
        if self.scope_pids.get(node) == Some(scope) {
            return;
        }
        let before = self.scope_pids.insert(node.clone(), scope.clone());
        if exchange && before.is_some() {
            self.reask_soon(node, None);
        }
        // (Nodes that came and went: only as many as are connected, past
        // a margin.)
        if self.scope_pids.len() > 2 * self.remote.len() + 64 {
            let remote = &self.remote;
            self.scope_pids.retain(|n, _| remote.contains_key(n));
        }
    }

    /// Asks `peer` for its state twice more, [`REASK_FIRST`] and
    /// [`REASK_THEN`] from now, unless that is planned already: after an
    /// exchange from a new scope process of a peer (`unless` `None`), and
    /// on a connection to a node whose scope process `unless` we knew
    /// before, each time only if nothing came from that process since (a
    /// scope that did not restart sent its whole view at the nodeup:
    /// nothing more is asked of it). A genuine scope that
    /// restarts starts empty and takes its own members back from the other
    /// nodes' answers to its `{new, Node}` (cpg's merge), telling us none
    /// of them; its exchange to us (at our nodeup) may have gone before
    /// they came, or not at all (cpg sends none for an empty view). A
    /// genuine hidden node in our place lacks them for good (a fault
    /// soak's scope kill with a disconnect left 83 members out; a
    /// deterministic reproduction, 40). (A peer that sends from two pids
    /// in turn gets at most two questions per [`REASK_THEN`].)
    pub(super) fn reask_soon(&mut self, peer: &str, unless: Option<Pid>) {
        let Some(r) = self.remote.get_mut(peer) else {
            return;
        };
        if r.reask_at.is_none() {
            r.reask_at = Some(tokio::time::Instant::now() + REASK_FIRST);
            r.reasks_left = 2;
            r.reask_unless = unless;
        } else if unless.is_none() {
            r.reask_unless = None;
        }
    }

    /// Probes peers whose scope went away, and republishes to those whose
    /// probe held; asks for the state of those [`reask_soon`](Self::reask_soon)
    /// said to ask again.
    pub(super) fn probe_remote_scopes(&mut self) {
        let now = tokio::time::Instant::now();
        let mut back = Vec::new();
        let mut reask = Vec::new();
        for (peer, r) in self.remote.iter_mut() {
            if !self.node.is_connected(peer) {
                continue; // its nodedown is on its way; a probe would dial it
            }
            if r.reask_at.is_some_and(|at| at <= now) {
                r.reasks_left = r.reasks_left.saturating_sub(1);
                r.reask_at = (r.reasks_left > 0).then(|| now + REASK_THEN);
                if r.reask_unless.is_some() && r.reask_unless == r.seen {
                    r.reask_at = None; // the scope we knew: nothing missing
                } else {
                    tracing::debug!(scope = %self.opts.name, %peer, "its scope may have restarted: its state asked again");
                    reask.push(peer.clone());
                }
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
        for peer in reask {
            self.send_new(&peer);
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
            self.tell_state(|s| state_for(s, &peer, mode, true));
            self.send_new(&peer);
        }
    }
}
