//! Links and monitors: the bookkeeping both ends of each, the signals they
//! fire, and the `noconnection` fan-out when a peer goes down. Changes with
//! the semantics of links and monitors.

use super::registry::RefKey;
use super::{DownReason, Inner, NodeEvent};
use crate::pid::InternedPid;
use crate::process::Signal;
use crate::term::{self, atom, Pid, PidOrAtom, Reference, Term};
use crate::util::{shrink_sparse, SeqKeyMap};
use erl_dist::message::Message;
use std::collections::hash_map::Entry;

/// A monitor one of our processes holds on a process elsewhere (in
/// `Inner::mons_out`, by the [`RefKey`] of its ref).
pub(super) struct MonOut {
    /// The watcher: the id of one of our processes.
    pub(super) watcher: u32,
    /// What its `'DOWN'` names: the pid, or `{Name, Node}`. Its node is
    /// the node the monitor crosses to ([`MonItem::node`]).
    pub(super) item: MonItem,
}

/// The monitors our processes hold on processes elsewhere (`Inner::mons_out`),
/// by the [`RefKey`] of their ref. Monitors of a pid (nearly all: a cpg
/// scope holds one per remote member) sit in a table of their own with
/// 32-byte entries (key, watcher, pid); the others (`{Name, Node}`) in a
/// second, where the boxed item would make every entry 40 bytes.
#[derive(Default)]
pub(super) struct MonsOut {
    pids: SeqKeyMap<RefKey, (u32, InternedPid)>,
    other: SeqKeyMap<RefKey, (u32, Box<Term>)>,
}

impl MonsOut {
    /// Records monitor `key`.
    pub(super) fn insert(&mut self, key: RefKey, m: MonOut) {
        match m.item {
            MonItem::Pid(p) => {
                self.pids.insert(key, (m.watcher, p));
            }
            MonItem::Term(t) => {
                self.other.insert(key, (m.watcher, t));
            }
        }
    }

    /// Makes room for `n` more monitors of pids.
    pub(super) fn reserve_pids(&mut self, n: usize) {
        self.pids.reserve(n);
    }

    /// Removes monitor `key`.
    pub(super) fn remove(&mut self, key: RefKey) -> Option<MonOut> {
        self.remove_if(key, |_, _| true)
    }

    /// Removes monitor `key` if `take` says so of its watcher and of the
    /// node its item is on.
    pub(super) fn remove_if(
        &mut self,
        key: RefKey,
        take: impl FnOnce(u32, Option<&str>) -> bool,
    ) -> Option<MonOut> {
        // one probe a table (the entry is looked at, then taken)
        if let Entry::Occupied(e) = self.pids.entry(key) {
            let (watcher, p) = *e.get();
            if !take(watcher, Some(p.node())) {
                return None;
            }
            e.remove();
            shrink_sparse(&mut self.pids);
            return Some(MonOut {
                watcher,
                item: MonItem::Pid(p),
            });
        }
        let Entry::Occupied(e) = self.other.entry(key) else {
            return None;
        };
        let (watcher, t) = e.get();
        if !take(*watcher, item_node(t)) {
            return None;
        }
        let (watcher, t) = e.remove();
        shrink_sparse(&mut self.other);
        Some(MonOut {
            watcher,
            item: MonItem::Term(t),
        })
    }

    /// Removes every monitor of an item on `node`.
    pub(super) fn take_node(&mut self, node: &str) -> Vec<(RefKey, MonOut)> {
        let mut taken = Vec::new();
        self.pids.retain(|&key, &mut (watcher, p)| {
            if p.node() != node {
                return true;
            }
            taken.push((
                key,
                MonOut {
                    watcher,
                    item: MonItem::Pid(p),
                },
            ));
            false
        });
        shrink_sparse(&mut self.pids);
        let keys: Vec<RefKey> = self
            .other
            .iter()
            .filter(|(_, (_, t))| item_node(t) == Some(node))
            .map(|(&k, _)| k)
            .collect();
        for key in keys {
            if let Some((watcher, t)) = self.other.remove(&key) {
                taken.push((
                    key,
                    MonOut {
                        watcher,
                        item: MonItem::Term(t),
                    },
                ));
            }
        }
        shrink_sparse(&mut self.other);
        taken
    }

    /// The number of monitors.
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.pids.len() + self.other.len()
    }

    /// Whether monitor `key` is recorded.
    #[cfg(test)]
    pub(super) fn contains_key(&self, key: RefKey) -> bool {
        self.pids.contains_key(&key) || self.other.contains_key(&key)
    }
}

/// What a remote monitor's `'DOWN'` names, kept small: a node holds one
/// per remote pid its processes monitor (a cpg scope: one per remote
/// member pid). A pid is its interned node and numbers (16 bytes, nothing
/// allocated); anything else (`{Name, Node}`, or a pid whose node name
/// cannot be interned) is the term, boxed.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum MonItem {
    /// A pid.
    Pid(InternedPid),
    /// Any other item.
    Term(Box<Term>),
}

impl MonItem {
    /// The item naming pid `p`.
    pub(super) fn pid(p: &Pid) -> MonItem {
        match InternedPid::try_from(p) {
            Ok(p) => MonItem::Pid(p),
            Err(_) => MonItem::Term(Box::new(Term::Pid(p.clone()))),
        }
    }

    /// The item `t` (a pid, or `{Name, Node}`).
    pub(super) fn new(t: Term) -> MonItem {
        match t {
            Term::Pid(p) => MonItem::pid(&p),
            t => MonItem::Term(Box::new(t)),
        }
    }

    /// The node it is on: a pid's, or `Node` of `{Name, Node}`.
    pub(super) fn node(&self) -> Option<&str> {
        match self {
            MonItem::Pid(p) => Some(p.node()),
            MonItem::Term(t) => item_node(t),
        }
    }

    /// The item as the `'DOWN'` names it.
    pub(super) fn to_term(&self) -> Term {
        match self {
            MonItem::Pid(p) => Term::Pid(p.to_pid()),
            MonItem::Term(t) => (**t).clone(),
        }
    }

    /// What a MONITOR_P/DEMONITOR_P names: the pid, or the name of
    /// `{Name, Node}`.
    fn target(&self) -> Option<PidOrAtom> {
        match self {
            MonItem::Pid(p) => Some(PidOrAtom::Pid(p.to_pid())),
            MonItem::Term(t) => monitor_target(t),
        }
    }
}

/// The node a monitor's item is on: a pid's, or `Node` of `{Name, Node}`.
fn item_node(item: &Term) -> Option<&str> {
    match item {
        Term::Pid(p) => Some(&p.node.name),
        t => match term::as_tuple(t) {
            Some([_, Term::Atom(n)]) => Some(&n.name),
            _ => None,
        },
    }
}

/// How many monitors and links a peer sets between two counts of what it
/// holds ([`Inner::count_hold`]): an eighth of `max_peer_holds`, at most
/// 65,536. Past `max_total_holds`, a peer holding more than this is
/// disconnected.
fn holds_counted_every(cfg: &crate::config::NodeConfig) -> usize {
    (cfg.max_peer_holds / 8).clamp(1, 1 << 16)
}

/// How an exit signal came ([`Inner::exit_signal`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ExitVia {
    /// Through a link, which it removes (nothing if there was none).
    Link,
    /// Through a link already removed (its connection is gone).
    LinkGone,
    /// Sent by `exit/2`.
    Exit2,
}

impl Inner {
    /// A connection to `node` is gone, or an attempt to make one (`was_up`
    /// false): fire `noconnection` for links and monitors that cross it
    /// (those set while it was dialled included) and report it
    /// ([`NodeEvent::Down`]). Processes that watch nodes
    /// ([`Process::monitor_nodes`](crate::process::Process::monitor_nodes))
    /// are told only of a connection that was up, as BEAM's
    /// `net_kernel:monitor_nodes/1` sends no `nodedown` for a failed
    /// attempt: each `NodeDown` follows its `NodeUp`. Returns the local
    /// processes those exit signals end, with their reasons: the caller
    /// ends them ([`Inner::end_all`]) once it has let go of the order lock
    /// of peers it reports this under, for ending a process sends (its
    /// exits through other links, its demonitors) and a send may
    /// disconnect a peer, which takes that lock.
    #[must_use = "the processes the node's exits end are to be ended"]
    pub(super) fn node_down(
        &self,
        node: &str,
        was_up: bool,
        reason: DownReason,
    ) -> Vec<(Pid, Term)> {
        let noconn = atom("noconnection");
        // Each monitor across the connection: its watcher, its 'DOWN', its
        // key.
        let mut downs: Vec<(Pid, Signal, RefKey)> = Vec::new();
        // Links across the connection, (ours, theirs): each ends as an
        // exit signal `noconnection` through it (below).
        let mut links: Vec<(Pid, Pid)> = Vec::new();
        // (Removed here, all at once: a process these exits end must not
        // send its exit through another link to the node that is gone,
        // which would dial it again.)
        self.procs.for_each_mut(|id, e| {
            e.links.retain(|l| {
                if l.node.name == node {
                    links.push((self.pid(id), l.clone()));
                    false
                } else {
                    true
                }
            });
            e.monitors.retain(|_, (w, _)| w.node.name != node);
            shrink_sparse(&mut e.monitors);
        });
        self.holds_added.lock().remove(node);
        {
            let taken = self.mons_out.lock().take_node(node);
            for (key, m) in taken {
                downs.push((
                    self.pid(m.watcher),
                    Signal::Down {
                        mref: self.ref_of(key),
                        item: m.item.to_term(),
                        reason: noconn.clone(),
                    },
                    key,
                ));
            }
        }
        for (to, s, key) in downs {
            self.fire_held(&to, key, s);
        }
        // (Decided here, in order with the node's end; ended by the caller,
        // after the monitors across it are gone: such a process has nothing
        // left to demonitor on that node.)
        let ending = links
            .into_iter()
            .filter_map(|(ours, theirs)| {
                self.exit_signal(theirs, &ours, noconn.clone(), ExitVia::LinkGone)
                    .map(|r| (ours, r))
            })
            .collect();
        if was_up {
            self.tell_node_watchers(|| Signal::NodeDown {
                node: node.to_string(),
            });
        }
        let _ = self.events.send(NodeEvent::Down {
            node: node.to_string(),
            reason,
        });
        ending
    }

    /// Ends each process of `ending` ([`Inner::node_down`]'s) with its
    /// reason.
    pub(super) fn end_all(&self, ending: Vec<(Pid, Term)>) {
        for (pid, reason) in ending {
            self.end_now(pid, reason);
        }
    }

    /// Fires monitor `key` of `watcher`: its `'DOWN'` `s` is queued in the
    /// same step, under the watcher's entry lock, as the monitor leaves
    /// what the watcher holds, and only if it was still held. So a
    /// `demonitor` either removes the monitor first (no `'DOWN'` comes
    /// after it, as on BEAM) or finds it gone with its `'DOWN'` already in
    /// the mailbox, where [`Process::demonitor`](crate::process::Process::demonitor)
    /// flushes it.
    pub(super) fn fire_held(&self, watcher: &Pid, key: RefKey, s: Signal) {
        if let Some(e) = self.procs.write(watcher.id).get_mut(&watcher.id) {
            if e.held.remove(key).is_some() {
                let _ = e.tx.send(s);
            }
        }
    }

    /// `watcher` no longer holds monitor `mref`.
    pub(super) fn forget_held(&self, watcher: &Pid, key: RefKey) {
        if let Some(e) = self.procs.write(watcher.id).get_mut(&watcher.id) {
            e.held.remove(key);
        }
    }

    /// `watcher` holds monitor `mref` on `target` (`None`: on another node).
    pub(super) fn hold(&self, watcher: &Pid, key: RefKey, target: Option<u32>) {
        if let Some(e) = self.procs.write(watcher.id).get_mut(&watcher.id) {
            e.held.insert(key, target);
        }
    }

    /// `peer` set a monitor or a link on one of our processes: every
    /// eighth of `max_peer_holds` (at most 65,536) it sets, what it holds
    /// is counted, and past the bound ([`NodeConfig::max_peer_holds`],
    /// [`NodeConfig::max_total_holds`]) it is disconnected.
    ///
    /// [`NodeConfig::max_peer_holds`]: crate::config::NodeConfig::max_peer_holds
    /// [`NodeConfig::max_total_holds`]: crate::config::NodeConfig::max_total_holds
    pub(super) fn count_hold(&self, peer: &str) {
        let every = holds_counted_every(&self.config);
        let due = {
            let mut added = self.holds_added.lock();
            let n = match added.get_mut(peer) {
                Some(n) => n,
                None => added.entry(peer.to_string()).or_default(),
            };
            *n += 1;
            let due = *n >= every;
            if due {
                *n = 0;
            }
            due
        };
        if due {
            self.check_holds(peer);
        }
    }

    /// Counts the monitors and links `peer`, and every peer, holds on our
    /// processes (one pass over the processes), and disconnects `peer` if
    /// they are past the bounds.
    fn check_holds(&self, peer: &str) {
        let (mut mine, mut all) = (0usize, 0usize);
        self.procs.for_each(|_, e| {
            let links = e.links.iter().map(|l| &l.node.name);
            let monitors = e.monitors.values().map(|(w, _)| &w.node.name);
            for node in links.chain(monitors) {
                if *node != self.name {
                    all += 1;
                    mine += usize::from(*node == peer);
                }
            }
        });
        let cfg = &self.config;
        let over = mine > cfg.max_peer_holds
            || (all > cfg.max_total_holds && mine > holds_counted_every(cfg));
        if over {
            tracing::warn!(
                peer,
                holds = mine,
                all_peers = all,
                "the peer holds more monitors and links on our processes than allowed \
                 ({} for one peer, {} for all): disconnecting",
                cfg.max_peer_holds,
                cfg.max_total_holds
            );
            self.drop_peer(peer, DownReason::HoldsOverflow);
        }
    }

    pub(super) fn add_monitor(
        &self,
        target: &Pid,
        mref: Reference,
        watcher: Pid,
        how: PidOrAtom,
    ) -> bool {
        self.with_proc(target, |e| e.monitors.insert(mref, (watcher, how)))
            .is_some()
    }

    /// An exit signal from `from` through their link (which it removes)
    /// reaches `to`, ending it unless it traps exits.
    pub(super) fn link_exit(&self, from: Pid, to: Pid, reason: Term) {
        if let Some(r) = self.exit_signal(from, &to, reason, ExitVia::Link) {
            self.end_now(to, r);
        }
    }

    /// `exit(To, Reason)` from `from` reaches `to`.
    pub(super) fn exit2_in(&self, from: Pid, to: Pid, reason: Term) {
        if let Some(r) = self.exit_signal(from, &to, reason, ExitVia::Exit2) {
            self.end_now(to, r);
        }
    }

    /// Queues the exit signal `reason` from `from` for local `to`, come
    /// by `via`. Returns the reason `to` ends with if the signal ends it,
    /// as a BEAM process's does: `kill` from `exit/2` whatever it traps
    /// (reason `killed`), any reason but `normal` if it does not trap
    /// exits. The caller then ends it at once ([`Inner::end_now`]), not
    /// when its code next reads its mailbox (where
    /// [`Process::recv`](crate::process::Process::recv) finds the signal
    /// and returns the same reason).
    pub(super) fn exit_signal(
        &self,
        from: Pid,
        to: &Pid,
        reason: Term,
        via: ExitVia,
    ) -> Option<Term> {
        let id = self.local_id(to)?;
        let mut procs = self.procs.write(id);
        let e = procs.get_mut(&id)?;
        if via == ExitVia::Link && !e.links.remove(&from) {
            return None;
        }
        let exit2 = via == ExitVia::Exit2;
        let r = term::as_atom(&reason);
        let ends = if exit2 && r == Some("kill") {
            Some(atom("killed"))
        } else if !e.trap_exit && r != Some("normal") {
            Some(reason.clone())
        } else {
            None
        };
        // (A `normal` exit to a process that does not trap exits is
        // nothing, as on BEAM: not queued.)
        if e.trap_exit || ends.is_some() {
            let _ = e.tx.send(Signal::Exit {
                from,
                reason,
                exit2,
            });
        }
        ends
    }

    /// MONITOR_P_EXIT from `peer`: the process a monitor of ours watched
    /// is gone. Fired only for a monitor one of our processes holds, by
    /// that process (`to`), on a process of `peer`; anything else (a
    /// monitor already removed by `demonitor`, or a peer naming a monitor
    /// that is not its own) is dropped, as BEAM drops a `DOWN` it no
    /// longer expects: after `demonitor` no `'DOWN'` arrives.
    pub(super) fn monitor_fired(&self, peer: &str, to: Pid, mref: Reference, reason: Term) {
        let Some(key) = self.ref_key(&mref) else {
            tracing::debug!(
                peer,
                "dropped MONITOR_P_EXIT for a ref not ours: {}",
                term::show(&mref)
            );
            return;
        };
        // The item's node: the node the monitor crosses to.
        let fired = self.mons_out.lock().remove_if(key, |watcher, node| {
            watcher == to.id && self.is_local(&to) && node == Some(peer)
        });
        let Some(m) = fired else {
            return;
        };
        let item = m.item.to_term();
        self.fire_held(&to, key, Signal::Down { mref, item, reason });
    }

    /// The MONITOR_P of remote monitor `key` could not be queued (no
    /// connection): it fires `noconnection` at once, unless the node's
    /// going down fired it meanwhile.
    pub(super) fn monitor_unsent(&self, watcher: &Pid, key: RefKey) {
        let removed = self.mons_out.lock().remove(key);
        if let Some(m) = removed {
            self.fire_held(
                watcher,
                key,
                Signal::Down {
                    mref: self.ref_of(key),
                    item: m.item.to_term(),
                    reason: atom("noconnection"),
                },
            );
        }
    }

    /// Drops a monitor held on a process of another node and tells that
    /// node (DEMONITOR_P).
    pub(super) fn demonitor_remote(&self, from: &Pid, key: RefKey) {
        let removed = self.mons_out.lock().remove(key);
        let Some(m) = removed else {
            return;
        };
        if let (Some(target), Some(node)) = (m.item.target(), m.item.node()) {
            let _ = self.send_to_node(
                node,
                Message::demonitor_p(from.clone(), target, self.ref_of(key)),
            );
        }
    }
}

/// What a MONITOR_P/DEMONITOR_P names, from the item a `'DOWN'` reports
/// (a pid, or `{Name, Node}` for a monitor by name).
fn monitor_target(item: &Term) -> Option<PidOrAtom> {
    match item {
        Term::Pid(p) => Some(PidOrAtom::Pid(p.clone())),
        t => match term::as_tuple(t) {
            Some([Term::Atom(a), _]) => Some(PidOrAtom::Atom(a.clone())),
            _ => None,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::node;
    use super::*;
    use crate::dist::connection::BATCH_MAX;
    use crate::process::Kernel;
    use crate::term::{tuple, Atom};
    use std::time::Duration;

    #[tokio::test]
    async fn a_ref_key_names_only_our_own_refs() {
        let (n, _epmd) = node().await;
        let i = &n.inner;
        let r = i.make_ref_inner();
        let key = i.ref_key(&r).expect("our ref");
        assert_eq!(i.ref_of(key), r);
        let far = i.ref_of(1 << 40);
        assert_eq!(i.ref_key(&far), Some(1 << 40));
        // Another node's, another incarnation's, another shape's: none.
        let mut other = r.clone();
        other.node = Atom::from("elsewhere@host");
        assert_eq!(i.ref_key(&other), None);
        let mut older = r.clone();
        older.creation ^= 1;
        assert_eq!(i.ref_key(&older), None);
        let mut longer = r.clone();
        longer.id.push(7);
        assert_eq!(i.ref_key(&longer), None);
        n.shutdown().await;
    }

    /// A MONITOR_P_EXIT fires a monitor only from the node it crosses to
    /// and for the process that holds it, once; a ref not ours, another
    /// peer or another watcher changes nothing.
    #[tokio::test]
    async fn monitor_p_exit_fires_only_its_own_monitor_once() {
        let (n, _epmd) = node().await;
        let i = &n.inner;
        let mut a = n.spawn_process();
        let b = n.spawn_process();
        let far = Pid {
            node: Atom::from("far@host"),
            id: 7,
            serial: 0,
            creation: 1,
        };
        // A monitor as `monitor` records it (its MONITOR_P not sent).
        let key = i.make_ref_key();
        let item = Term::Pid(far.clone());
        i.mons_out.lock().insert(
            key,
            MonOut {
                watcher: a.pid().id,
                item: MonItem::new(item.clone()),
            },
        );
        i.hold(a.pid(), key, None);
        let mref = i.ref_of(key);
        let bye = || atom("bye");
        i.monitor_fired("other@host", a.pid().clone(), mref.clone(), bye());
        i.monitor_fired("far@host", b.pid().clone(), mref.clone(), bye());
        let mut foreign = mref.clone();
        foreign.node = Atom::from("far@host");
        i.monitor_fired("far@host", a.pid().clone(), foreign, bye());
        assert!(i.mons_out.lock().contains_key(key));
        let quiet = Duration::from_millis(50);
        assert_eq!(a.recv_timeout(quiet).await.unwrap(), None);
        i.monitor_fired("far@host", a.pid().clone(), mref.clone(), bye());
        match a.recv_timeout(Duration::from_secs(1)).await.unwrap() {
            Some(Signal::Down {
                mref: m,
                item: it,
                reason,
            }) => {
                assert_eq!((m, it, reason), (mref.clone(), item, bye()));
            }
            other => panic!("{other:?}"),
        }
        assert!(i.mons_out.lock().len() == 0);
        // Fired once: a second exit (or one after demonitor) is dropped.
        i.monitor_fired("far@host", a.pid().clone(), mref, bye());
        assert_eq!(a.recv_timeout(quiet).await.unwrap(), None);
        n.shutdown().await;
    }

    /// `demonitor` after a monitor fired but before its `'DOWN'` was read
    /// (a call's server replying, then ending) flushes that `'DOWN'` from
    /// the mailbox, local or remote, and a message between stays; after
    /// `demonitor` of a live monitor, its firing queues nothing.
    #[tokio::test]
    async fn demonitor_flushes_a_down_already_queued_and_stops_a_later_one() {
        let (n, _epmd) = node().await;
        let i = &n.inner;
        let mut a = n.spawn_process();
        let far = Pid {
            node: Atom::from("far@host"),
            id: 7,
            serial: 0,
            creation: 1,
        };
        let remote = |a: &crate::process::Process| {
            let key = i.make_ref_key();
            i.mons_out.lock().insert(
                key,
                MonOut {
                    watcher: a.pid().id,
                    item: MonItem::new(Term::Pid(far.clone())),
                },
            );
            i.hold(a.pid(), key, None);
            i.ref_of(key)
        };
        // Remote: fired, then a message, then demonitor.
        let m1 = remote(&a);
        i.monitor_fired("far@host", a.pid().clone(), m1.clone(), atom("normal"));
        a.send(a.pid().clone(), atom("between")).unwrap();
        a.demonitor(&m1);
        // Local: the server ends before the demonitor.
        let b = n.spawn_process();
        let m2 = a.monitor(b.pid().clone());
        b.exit(atom("normal"));
        a.demonitor(&m2);
        // Demonitored while live: its exit later queues nothing.
        let m3 = remote(&a);
        a.demonitor(&m3);
        i.monitor_fired("far@host", a.pid().clone(), m3, atom("late"));
        let c = n.spawn_process();
        let m4 = a.monitor(c.pid().clone());
        a.demonitor(&m4);
        drop(c);
        let quiet = Duration::from_millis(50);
        match a.recv_timeout(quiet).await.unwrap() {
            Some(Signal::Message { msg, .. }) => assert_eq!(msg, atom("between")),
            other => panic!("{other:?}"),
        }
        assert_eq!(a.recv_timeout(quiet).await.unwrap(), None);
        // The node tells an active monitor (nothing queued: the mailbox
        // is not scanned, as a scope demonitoring a member per leave
        // needs) from one that fired.
        let d = n.spawn_process();
        let live = a.monitor(d.pid().clone());
        assert!(Kernel::demonitor(&**i, a.pid(), &live));
        let fired = a.monitor(d.pid().clone());
        drop(d);
        assert!(!Kernel::demonitor(&**i, a.pid(), &fired));
        n.shutdown().await;
    }

    /// Monitors of pids of a node that cannot be reached, made in one go,
    /// each fire `noconnection` with its own ref; the local one in the same
    /// batch fires when its process ends.
    #[tokio::test]
    async fn monitor_many_fires_noconnection_for_an_unreachable_node() {
        let (n, _epmd) = node().await;
        let mut a = n.spawn_process();
        let b = n.spawn_process();
        let far = |id| Pid {
            node: Atom::from("nobody_here@localhost"),
            id,
            serial: 0,
            creation: 1,
        };
        let pids = vec![far(1), b.pid().clone(), far(2)];
        let refs = a.monitor_many(&pids);
        let mut got = Vec::new();
        for _ in 0..2 {
            match a.recv_timeout(Duration::from_secs(10)).await.unwrap() {
                Some(Signal::Down { mref, item, reason }) => {
                    assert_eq!(reason, atom("noconnection"));
                    got.push((mref, item));
                }
                other => panic!("{other:?}"),
            }
        }
        got.sort_by_key(|(_, item)| format!("{item}"));
        assert_eq!(
            got,
            vec![
                (refs[0].clone(), Term::Pid(far(1))),
                (refs[2].clone(), Term::Pid(far(2))),
            ]
        );
        assert!(n.inner.mons_out.lock().len() == 0);
        drop(b);
        match a.recv_timeout(Duration::from_secs(1)).await.unwrap() {
            Some(Signal::Down { mref, .. }) => assert_eq!(mref, refs[1]),
            other => panic!("{other:?}"),
        }
        // More pids than one batch holds: queued in several, each fires.
        let many: Vec<Pid> = (0..BATCH_MAX as u32 * 2 + 3).map(far).collect();
        let refs = a.monitor_many(&many);
        let mut fired = std::collections::HashSet::new();
        while fired.len() < many.len() {
            match a.recv_timeout(Duration::from_secs(10)).await.unwrap() {
                Some(Signal::Down { mref, reason, .. }) => {
                    assert_eq!(reason, atom("noconnection"));
                    assert!(fired.insert(mref));
                }
                other => panic!("after {} DOWNs: {other:?}", fired.len()),
            }
        }
        assert_eq!(fired, refs.into_iter().collect());
        assert!(n.inner.mons_out.lock().len() == 0);
        n.shutdown().await;
    }

    #[test]
    fn monitors_of_pids_and_of_names_are_kept_apart_and_found_alike() {
        // a monitor of a pid: 32 bytes with its key
        assert_eq!(std::mem::size_of::<(RefKey, (u32, InternedPid))>(), 32);
        let mut m = MonsOut::default();
        let pid = |node: &str, id| {
            MonItem::pid(&Pid {
                node: Atom::from(node),
                id,
                serial: 0,
                creation: 1,
            })
        };
        let named = |node: &str| MonItem::new(tuple(vec![atom("reg"), atom(node)]));
        m.insert(
            1,
            MonOut {
                watcher: 7,
                item: pid("a@h", 1),
            },
        );
        m.insert(
            2,
            MonOut {
                watcher: 7,
                item: named("a@h"),
            },
        );
        m.insert(
            3,
            MonOut {
                watcher: 8,
                item: pid("b@h", 2),
            },
        );
        m.insert(
            4,
            MonOut {
                watcher: 8,
                item: named("b@h"),
            },
        );
        assert_eq!(m.len(), 4);
        // taken only when the watcher and the node fit
        assert!(m.remove_if(1, |w, n| w == 8 && n == Some("a@h")).is_none());
        assert!(m.remove_if(2, |w, n| w == 7 && n == Some("b@h")).is_none());
        assert_eq!(m.len(), 4);
        let got = m.remove_if(2, |w, n| w == 7 && n == Some("a@h")).unwrap();
        assert_eq!((got.watcher, got.item), (7, named("a@h")));
        assert!(!m.contains_key(2) && m.remove(2).is_none());
        // a node going down takes both kinds of its monitors
        let mut down = m.take_node("b@h");
        down.sort_by_key(|(k, _)| *k);
        let down: Vec<_> = down
            .into_iter()
            .map(|(k, m)| (k, m.watcher, m.item))
            .collect();
        assert_eq!(down, vec![(3, 8, pid("b@h", 2)), (4, 8, named("b@h"))]);
        assert_eq!(m.len(), 1);
        assert_eq!(m.remove(1).map(|m| m.item), Some(pid("a@h", 1)));
        assert_eq!(m.len(), 0);
    }

    #[test]
    fn a_monitor_item_is_small_and_names_what_the_down_names() {
        assert!(std::mem::size_of::<MonItem>() <= 24);
        let p = Pid::new("far@host", 7, 1, 3);
        let it = MonItem::pid(&p);
        assert!(matches!(it, MonItem::Pid(_)));
        assert_eq!(it, MonItem::new(Term::Pid(p.clone())));
        assert_eq!(it.node(), Some("far@host"));
        assert_eq!(it.to_term(), Term::Pid(p.clone()));
        assert_eq!(it.target(), Some(PidOrAtom::Pid(p)));
        // {Name, Node}, and a pid whose node cannot be interned: the term.
        let named = term::tuple(vec![atom("srv"), atom("far@host")]);
        let it = MonItem::new(named.clone());
        assert_eq!((it.node(), it.to_term()), (Some("far@host"), named));
        assert_eq!(it.target(), Some(PidOrAtom::Atom(Atom::from("srv"))));
        let long = Pid::new("n".repeat(300).as_str(), 1, 0, 1);
        let it = MonItem::pid(&long);
        assert!(matches!(it, MonItem::Term(_)));
        assert_eq!(it.node(), Some(long.node.name.as_str()));
        assert_eq!(it.to_term(), Term::Pid(long));
    }

    #[tokio::test]
    async fn local_monitors_fire_once_and_demonitor_forgets() {
        let (n, _epmd) = node().await;
        let mut a = n.spawn_process();
        let b = n.spawn_process();
        let m1 = a.monitor(b.pid().clone());
        a.demonitor(&m1);
        let m2 = a.monitor(b.pid().clone());
        let bpid = b.pid().clone();
        b.exit(atom("bye"));
        match a.recv_timeout(Duration::from_secs(1)).await.unwrap() {
            Some(Signal::Down { mref, item, reason }) => {
                assert_eq!(mref, m2);
                assert_eq!(item, Term::Pid(bpid.clone()));
                assert_eq!(reason, atom("bye"));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            a.recv_timeout(Duration::from_millis(50)).await.unwrap(),
            None
        );
        // A monitor on a dead pid: noproc at once.
        let m3 = a.monitor(bpid);
        assert!(matches!(
            a.recv_timeout(Duration::from_secs(1)).await.unwrap(),
            Some(Signal::Down { mref, reason, .. }) if mref == m3 && reason == atom("noproc")
        ));
        // The watcher's exit drops the monitors it held on live processes.
        let c = n.spawn_process();
        let _ = a.monitor(c.pid().clone());
        drop(a);
        assert!(n.inner.procs.read(c.pid().id)[&c.pid().id]
            .monitors
            .is_empty());
        n.shutdown().await;
    }

    /// A pid of this node with a serial it never gave (a peer's forgery, or
    /// on BEAM a process long gone) names no process, though its number is
    /// a live one's: a monitor of it fires at once with noproc, a link to it
    /// exits with noproc, a message to it reaches nobody, and it is not
    /// alive. (It named the live process: a cpg member joined under it
    /// was never seen to die.)
    #[tokio::test]
    async fn a_pid_with_a_serial_never_given_names_no_process() {
        let (n, _epmd) = node().await;
        let mut a = n.spawn_process();
        a.trap_exit(true);
        let mut b = n.spawn_process();
        let mut ghost = b.pid().clone();
        ghost.serial = 5;
        assert!(n.is_alive(b.pid()) && !n.is_alive(&ghost));
        let m = a.monitor(ghost.clone());
        assert!(matches!(
            a.recv_timeout(Duration::from_secs(1)).await.unwrap(),
            Some(Signal::Down { mref, reason, .. }) if mref == m && reason == atom("noproc")
        ));
        a.link(&ghost);
        assert!(matches!(
            a.recv_timeout(Duration::from_secs(1)).await.unwrap(),
            Some(Signal::Exit { from, reason, .. }) if from == ghost && reason == atom("noproc")
        ));
        a.send(ghost.clone(), atom("hi")).unwrap();
        assert_eq!(
            b.recv_timeout(Duration::from_millis(100)).await.unwrap(),
            None
        );
        assert!(n.inner.procs.read(b.pid().id)[&b.pid().id]
            .monitors
            .is_empty());
        assert!(n.inner.procs.read(b.pid().id)[&b.pid().id].links.is_empty());
        n.shutdown().await;
    }

    /// An exit signal ends a process that does not trap exits at once,
    /// as on BEAM, not when its code next reads its mailbox: its pid is
    /// dead, its name free and its watchers told while nobody reads; a
    /// chain of 100,000 linked processes ends from one exit without
    /// recursion. A trapping process gets the signal as a message and
    /// lives, but `exit(P, kill)` ends it (`killed`); a `normal` exit
    /// through a link ends nothing. The ended process's next receive
    /// returns the reason.
    #[tokio::test]
    async fn an_exit_signal_ends_a_process_at_once() {
        let (n, _epmd) = node().await;
        let i = &n.inner;
        let mut watcher = n.spawn_process();
        let mut victim = n.spawn_process();
        victim.register("victim").unwrap();
        let dying = n.spawn_process();
        dying.link(victim.pid());
        let m = watcher.monitor(victim.pid().clone());
        let mut trapper = n.spawn_process();
        trapper.trap_exit(true);
        trapper.link(victim.pid());
        dying.exit(atom("boom"));
        assert!(!i.is_alive(victim.pid()));
        assert!(i.names.read().get("victim").is_none());
        match watcher.recv_timeout(Duration::from_secs(1)).await.unwrap() {
            Some(Signal::Down { mref, reason, .. }) => {
                assert_eq!((mref, reason), (m, atom("boom")))
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(victim.recv().await, Err(atom("boom")));
        assert!(i.is_alive(trapper.pid()));
        assert!(matches!(
            trapper.recv_timeout(Duration::from_secs(1)).await.unwrap(),
            Some(Signal::Exit { reason, .. }) if reason == atom("boom")
        ));
        // normal through a link: nothing; kill by exit/2: killed.
        let calm = n.spawn_process();
        let normal = n.spawn_process();
        normal.link(calm.pid());
        drop(normal);
        assert!(i.is_alive(calm.pid()));
        let m = watcher.monitor(trapper.pid().clone());
        calm.exit_other(trapper.pid(), atom("kill"));
        assert!(!i.is_alive(trapper.pid()));
        assert!(matches!(
            watcher.recv_timeout(Duration::from_secs(1)).await.unwrap(),
            Some(Signal::Down { mref, reason, .. }) if mref == m && reason == atom("killed")
        ));
        // A long chain, ended from one end.
        let chain: Vec<_> = (0..100_000).map(|_| n.spawn_process()).collect();
        for w in chain.windows(2) {
            w[0].link(w[1].pid());
        }
        let last = chain.last().unwrap().pid().clone();
        let mut chain = chain.into_iter();
        chain.next().unwrap().exit(atom("gone"));
        assert!(!i.is_alive(&last));
        drop(chain);
        n.shutdown().await;
    }

    /// A connection's end is an exit signal `noconnection` through every
    /// link across it: a process that does not trap exits ends at once, a
    /// trapping one gets the signal.
    #[tokio::test]
    async fn a_lost_connection_ends_the_linked_processes_that_do_not_trap() {
        let (n, _epmd) = node().await;
        let i = &n.inner;
        let far = Pid {
            node: Atom::from("far@host"),
            id: 7,
            serial: 0,
            creation: 1,
        };
        let mut plain = n.spawn_process();
        let mut trapper = n.spawn_process();
        trapper.trap_exit(true);
        for p in [&plain, &trapper] {
            i.with_proc(p.pid(), |e| e.links.insert(far.clone()));
        }
        let ending = i.node_down("far@host", true, DownReason::Disconnected);
        assert!(i.is_alive(plain.pid()), "ended by the caller");
        i.end_all(ending);
        assert!(!i.is_alive(plain.pid()));
        assert_eq!(plain.recv().await, Err(atom("noconnection")));
        assert!(matches!(
            trapper.recv_timeout(Duration::from_secs(1)).await.unwrap(),
            Some(Signal::Exit { from, reason, .. }) if from == far && reason == atom("noconnection")
        ));
        assert!(i.is_alive(trapper.pid()));
        n.shutdown().await;
    }

    /// Monitors named by their keys: a key names its ref both ways, a
    /// demonitor by key forgets a local and a remote monitor (no 'DOWN'
    /// after it, nothing left in the bookkeeping), and a ref this node did
    /// not make has no key.
    #[tokio::test]
    async fn monitors_by_key_fire_and_demonitor_as_by_ref() {
        let (n, _epmd) = node().await;
        let mut a = n.spawn_process();
        let (b, c) = (n.spawn_process(), n.spawn_process());
        let far = Pid {
            node: Atom::from("nobody_here@localhost"),
            id: 1,
            serial: 0,
            creation: 1,
        };
        let keys = a.monitor_many_keys(&[b.pid().clone(), c.pid().clone(), far]);
        let refs: Vec<Reference> = keys.iter().map(|&k| n.inner.monitor_ref(k)).collect();
        for (k, r) in keys.iter().zip(&refs) {
            assert_eq!(a.monitor_key(r), Some(*k));
        }
        let mut other = refs[0].clone();
        other.node = Atom::from("else@where");
        assert_eq!(a.monitor_key(&other), None);
        a.demonitor_key(keys[0]);
        assert!(n.inner.procs.read(b.pid().id)[&b.pid().id]
            .monitors
            .is_empty());
        // The remote one fires noconnection (its node cannot be reached).
        match a.recv_timeout(Duration::from_secs(10)).await.unwrap() {
            Some(Signal::Down { mref, reason, .. }) => {
                assert_eq!((mref, reason), (refs[2].clone(), atom("noconnection")));
            }
            other => panic!("{other:?}"),
        }
        assert!(n.inner.mons_out.lock().len() == 0);
        drop(b);
        c.exit(atom("bye"));
        match a.recv_timeout(Duration::from_secs(1)).await.unwrap() {
            Some(Signal::Down { mref, reason, .. }) => {
                assert_eq!((mref, reason), (refs[1].clone(), atom("bye")));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            a.recv_timeout(Duration::from_millis(50)).await.unwrap(),
            None
        );
        n.shutdown().await;
    }
}
