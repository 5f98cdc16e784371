//! Visible mode: our members published by casts, each peer at `visible`
//! polled for its state (`{new, Node}` and a call after it; one poll out
//! at a time, none to a scope that is away, one unanswered for long asked
//! again), its members it no longer lists dropped, the rest taken in its
//! order ([`Scope::exchange_polled`]), and its view of ours set right
//! ([`repair`]).

use super::modes::{Ask, RemoteScope};
use super::task::ScopeTask;
use super::{repair, BeamNodeType, PeerMode};
use crate::cpg::member::MemberPid;
use crate::cpg::scope::{Effect, Request, Scope};
use crate::cpg::wire::{WireMsg, WireName};
use crate::process::Dest;
use crate::term::{self, Reference, Term};

/// A poll that is out ([`ScopeTask::ask_state`]).
pub(super) struct Poll {
    /// The call that follows the question.
    pub(super) call: Reference,
    /// [`ScopeTask::writes`] when the question went: the peer's answer
    /// holds the changes of ours numbered up to it.
    pub(super) since: u64,
    /// When the question went.
    pub(super) asked: tokio::time::Instant,
}

/// How long a poll may go unanswered before it is asked again: four poll
/// intervals, 10 s at least. A scope answers at once, or after encoding
/// its state (seconds for millions of memberships: asked again too soon,
/// a slow scope would be asked to encode it again and again). No poll goes
/// to a scope known to be away, and one that goes away or whose node goes
/// down is forgotten; this is the net for any other loss, which would
/// otherwise stop that node's polls for good, and with them every leave of
/// its members.
fn poll_lost_after(interval: std::time::Duration) -> std::time::Duration {
    (interval * 4).max(std::time::Duration::from_secs(10))
}

/// `Visible`: the BEAM scope ignores our exchange, so each local member is
/// announced to `peer` with one `join_counts` cast. `replace`: each after a
/// `{leave, Pid}` cast, for a scope that may hold some of ours already
/// (one that came back: a restarted scope holds none, and the leave does
/// nothing there, but our casts may have reached it in the moment between
/// its start and our probe seeing it, and `join_counts` adds).
pub(super) fn publish_to<N: WireName>(
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

impl<N: WireName> ScopeTask<N> {
    /// Asks `peer` for its state (`{new, Node}`); polled if it is at
    /// `visible` ([`ask_state`](Self::ask_state)).
    pub(super) fn send_new(&mut self, peer: &str) {
        self.ask_state(peer, self.mode_of(peer) == PeerMode::Visible);
    }

    /// Asks `peer` for its state; `poll`: the answer is its whole view
    /// (what of its members it does not list is gone), as a poll of a node
    /// at `visible` takes it. One poll at a time: while one is out, its
    /// answer is on the way (and a slow scope is not asked to encode its
    /// state again and again), and an answer is known to be that of the
    /// question out, so it holds our casts up to [`Poll::since`].
    pub(super) fn ask_state(&mut self, peer: &str, poll: bool) {
        // Like cpg, only to nodes connected now: a send to any other would
        // dial it, undoing a disconnect.
        if !self.node.is_connected(peer) {
            return;
        }
        // Nor to a scope process that is away: what is sent to a name not
        // registered is lost, and a poll would wait for an answer that
        // cannot come. It is asked when it is back (`probe_remote_scopes`).
        if self.remote.get(peer).is_some_and(RemoteScope::away) {
            tracing::debug!(scope = %self.opts.name, %peer, "its scope is away: not asked now");
            return;
        }
        // (The first question's number, if it is asked again: its answer
        // may still come, and holds our changes up to it only.)
        let mut since = self.writes;
        if let Some(out) = self.polled.get(peer).filter(|_| poll) {
            let waited = out.asked.elapsed();
            if waited < poll_lost_after(self.opts.poll_interval) {
                tracing::debug!(scope = %self.opts.name, %peer, "a poll is still out: not asked again");
                return;
            }
            tracing::warn!(scope = %self.opts.name, %peer, "no answer to a poll in {} ms: asking again", waited.as_millis());
            since = out.since;
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
            tracing::debug!(scope = %self.opts.name, %peer, "poll sent");
            let asked = tokio::time::Instant::now();
            self.polled.insert(
                peer.to_string(),
                Poll {
                    call: r,
                    since,
                    asked,
                },
            );
        }
    }

    /// Numbers a change of our member `pid` while a poll is out ([`repair`]).
    pub(super) fn wrote(&mut self, pid: &MemberPid) {
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
    pub(super) fn repair(&mut self, peer: &str, poll: &Poll, view: &[(N, Vec<MemberPid>)]) {
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
    pub(super) fn poll_reply(&mut self, msg: &Term) -> bool {
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
                tracing::debug!(scope = %self.opts.name, %peer, "poll answered: no member");
                self.drop_unlisted(&peer, &[]);
                self.repair(&peer, &poll, &[]);
            }
        }
        true
    }

    pub(super) fn ask_all(&mut self) {
        for p in self.node.peers() {
            self.send_new(&p);
        }
    }

    /// The poll: every peer at `visible` is asked for its state; under
    /// `Auto`, every BEAM node we treat as a full peer is asked its
    /// node_type again ([`Ask::Recheck`]).
    pub(super) fn poll_visible(&mut self) {
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

    /// Visible mode: a polled exchange is `origin`'s whole local view; its
    /// members we hold that it no longer lists have left
    /// ([`Scope::unlisted`]), each pid's copies in one request.
    pub(super) fn drop_unlisted(&mut self, origin: &str, groups: &[(N, Vec<MemberPid>)]) {
        let stale = self.state.read().unlisted(origin, groups);
        for (pid, counts) in stale {
            let effects = self
                .state_mut()
                .remote_request(origin, Request::LeaveCounts { counts, pid });
            self.execute(effects);
        }
    }
}
