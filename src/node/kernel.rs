//! The outbound kernel: what local processes ask of the node (send,
//! monitor, link, exit, register), through [`crate::process::Kernel`].
//! Changes with the process API.

use super::links::{ExitVia, MonItem, MonOut};
use super::registry::RefKey;
use super::Inner;
use crate::atom::Atom as NodeAtom;
use crate::dist::connection::{Outgoing, PeerLink, QueueLimit, BATCH_MAX};
use crate::dist::monitors::{MonitorBatch, MonitorHead, MonitorTarget};
use crate::process::{
    send_decoded, Dest, InternedPid, Kernel, MonitorKey, SendError, Signal, Target,
};
use crate::term::{self, atom, tuple, Atom, Encoded, Pid, PidOrAtom, Reference, Term};
use crate::util::shrink_sparse;
use erl_dist::message::Message;
use std::sync::atomic::Ordering;
use std::sync::Arc;

impl Kernel for Inner {
    fn send(&self, from: &Pid, to: &Dest, msg: Term) -> Result<(), SendError> {
        match to {
            Dest::Pid(p) if p.node.name == self.name => {
                self.deliver(
                    p,
                    Signal::Message {
                        from: Some(from.clone()),
                        msg,
                    },
                );
                Ok(())
            }
            Dest::Pid(p) => self.send_to_node(&p.node.name, Message::send(p.clone(), msg)),
            Dest::Name(name, node) if *node == self.name => {
                let p = self
                    .names
                    .read()
                    .get(name)
                    .cloned()
                    .ok_or(SendError::NoProc)?;
                self.deliver(
                    &p,
                    Signal::Message {
                        from: Some(from.clone()),
                        msg,
                    },
                );
                Ok(())
            }
            Dest::Name(name, node) => self.send_to_node(
                node,
                Message::reg_send(from.clone(), Atom::from(name.as_str()), msg),
            ),
        }
    }

    fn send_encoded(&self, from: &Pid, to: Target<'_>, msg: Encoded) -> Result<(), SendError> {
        // The control message carries `[]` where its payload goes; the
        // writer puts `msg`'s bytes there.
        let (node, control) = match to {
            Target::Dest(Dest::Pid(p)) if p.node.name != self.name => {
                (&p.node.name, Message::send(p.clone(), term::nil()))
            }
            Target::Dest(Dest::Name(name, node)) if *node != self.name => (
                node,
                Message::reg_send(from.clone(), Atom::from(name.as_str()), term::nil()),
            ),
            Target::Alias(a) if a.node.name != self.name => (
                &a.node.name,
                Message::alias_send(from.clone(), a.clone(), term::nil()),
            ),
            _ => return send_decoded(self, from, to, &msg),
        };
        self.send_out(node, Outgoing::encoded(control, msg))
    }

    fn busy_link(&self, to: &Dest) -> Option<(Arc<PeerLink>, QueueLimit)> {
        let node = match to {
            Dest::Pid(p) => p.node.name.as_str(),
            Dest::Name(_, node) => node.as_str(),
        };
        if node == self.name {
            return None;
        }
        let limit = self.config.busy_peer_queue;
        let peers = self.peers.read();
        let link = &peers.get(node)?.link;
        // the queue read without cloning the link: most sends find the
        // peer not busy
        link.over(limit).then(|| (link.clone(), limit))
    }

    fn send_alias(&self, from: &Pid, alias: &Reference, msg: Term) -> Result<(), SendError> {
        if alias.node.name == self.name {
            // (Dropped, as on BEAM, when the alias is not active.)
            self.deliver_alias(Some(from.clone()), alias, msg);
            return Ok(());
        }
        self.send_to_node(
            &alias.node.name,
            Message::alias_send(from.clone(), alias.clone(), msg),
        )
    }

    fn monitor(&self, from: &Pid, to: &Dest) -> Reference {
        self.monitor_keyed(from, to).1
    }

    fn monitor_many(&self, from: &Pid, to: &[Pid]) -> Vec<MonitorKey> {
        // Interned (always, short of a full node-name table), they go in
        // one batch; else one by one, each item kept as a term.
        let interned: Option<Vec<InternedPid>> =
            to.iter().map(|p| InternedPid::try_from(p).ok()).collect();
        match interned {
            Some(to) => self.monitor_interned(from, &to),
            None => to
                .iter()
                .map(|p| MonitorKey(self.monitor_keyed(from, &Dest::Pid(p.clone())).0))
                .collect(),
        }
    }

    fn monitor_many_interned(&self, from: &Pid, to: &[InternedPid]) -> Vec<MonitorKey> {
        self.monitor_interned(from, to)
    }

    fn monitor_key(&self, mref: &Reference) -> Option<MonitorKey> {
        self.ref_key(mref).map(MonitorKey)
    }

    fn monitor_ref(&self, key: MonitorKey) -> Reference {
        self.ref_of(key.0)
    }

    fn demonitor_key(&self, from: &Pid, key: MonitorKey) -> bool {
        let key = key.0;
        let held = match self.procs.write(from.id).get_mut(&from.id) {
            Some(e) => e.held.remove(key),
            None => None,
        };
        match held {
            Some(Some(target)) => {
                if let Some(e) = self.procs.write(target).get_mut(&target) {
                    e.monitors.remove(&self.ref_of(key));
                }
                true
            }
            Some(None) => {
                self.demonitor_remote(from, key);
                true
            }
            None => false,
        }
    }

    fn alias(&self, pid: &Pid, key: MonitorKey) {
        if let Some(id) = self.local_id(pid) {
            self.aliases.lock().insert(key.0, id);
        }
    }

    fn unalias(&self, key: MonitorKey) {
        let mut aliases = self.aliases.lock();
        aliases.remove(&key.0);
        crate::util::shrink_sparse(&mut *aliases);
    }

    fn link(&self, from: &Pid, to: &Pid) {
        if let Some(e) = self.procs.write(from.id).get_mut(&from.id) {
            e.links.insert(to.clone());
        }
        if self.is_local(to) {
            let ok = self
                .with_proc(to, |e| e.links.insert(from.clone()))
                .is_some();
            if !ok {
                self.link_exit(to.clone(), from.clone(), atom("noproc"));
            }
        } else if self
            .send_to_node(&to.node.name, Message::link(from.clone(), to.clone()))
            .is_err()
        {
            self.link_exit(to.clone(), from.clone(), atom("noconnection"));
        }
    }

    fn unlink(&self, from: &Pid, to: &Pid) {
        if let Some(e) = self.procs.write(from.id).get_mut(&from.id) {
            e.links.remove(to);
        }
        if self.is_local(to) {
            self.with_proc(to, |e| e.links.remove(from));
        } else {
            let id = self.next_ref.fetch_add(1, Ordering::Relaxed);
            let _ = self.send_to_node(
                &to.node.name,
                Message::unlink_id(
                    term::int((id & 0x7ff_ffff) as i32),
                    from.clone(),
                    to.clone(),
                ),
            );
        }
    }

    fn exit2(&self, from: &Pid, to: &Pid, reason: Term) {
        if self.is_local(to) {
            self.exit2_in(from.clone(), to.clone(), reason);
        } else {
            let _ = self.send_to_node(
                &to.node.name,
                Message::exit2(from.clone(), to.clone(), reason),
            );
        }
    }

    fn register(&self, pid: &Pid, name: &str) -> Result<(), SendError> {
        self.register_as(pid, name, false)
    }

    fn register_raw(&self, pid: &Pid, name: &str) -> Result<(), SendError> {
        self.register_as(pid, name, true)
    }

    fn make_ref(&self) -> Reference {
        self.make_ref_inner()
    }

    fn exited(&self, pid: &Pid, reason: Term) {
        self.end_now(pid.clone(), reason);
    }

    fn registered_name(&self, pid: &Pid) -> Option<String> {
        self.with_proc(pid, |e| e.name.clone()).flatten()
    }

    fn trap_exit(&self, pid: &Pid, on: bool) {
        self.with_proc(pid, |e| e.trap_exit = on);
    }

    fn monitor_nodes(&self, pid: &Pid, on: bool) {
        let Some(id) = self.local_id(pid) else {
            return;
        };
        let mut watchers = self.node_watchers.lock();
        let was = self.with_proc(pid, |e| std::mem::replace(&mut e.watches_nodes, on));
        match (was, on) {
            (Some(false), true) => watchers.push(id),
            (Some(true), false) => watchers.retain(|&w| w != id),
            _ => {}
        }
    }

    fn node_name(&self) -> &str {
        &self.name
    }

    fn stopping(&self) -> bool {
        self.stopping.load(Ordering::Acquire)
    }
}

impl Inner {
    /// A message sent to `alias` (ALIAS_SEND from a peer, or a send here):
    /// delivered to the process whose call made it while that call runs,
    /// else dropped. Delivered under the aliases' lock, so that once
    /// [`Kernel::unalias`] has returned nothing more arrives through it.
    pub(super) fn deliver_alias(&self, from: Option<Pid>, alias: &Reference, msg: Term) {
        let Some(key) = self.ref_key(alias) else {
            return;
        };
        let aliases = self.aliases.lock();
        let Some(&id) = aliases.get(&key) else {
            tracing::trace!("message to inactive alias {} dropped", term::show(alias));
            return;
        };
        if let Some(e) = self.procs.read(id).get(&id) {
            let _ = e.tx.send(Signal::Message { from, msg });
        }
    }

    /// Ends local `pid` with `reason` now: its name freed, its links and
    /// monitors told, the monitors it held dropped. Local processes that
    /// its exit ends in turn (linked, not trapping exits) are ended in the
    /// same loop, not by recursion: a chain of linked processes as long
    /// as it may be costs no stack.
    pub(super) fn end_now(&self, pid: Pid, reason: Term) {
        let mut ending = vec![(pid, reason)];
        while let Some((pid, reason)) = ending.pop() {
            self.end_one(&pid, reason, &mut ending);
        }
    }

    /// [`Inner::end_now`] of one process; the local processes its exit
    /// ends are pushed on `ending`.
    fn end_one(&self, pid: &Pid, reason: Term, ending: &mut Vec<(Pid, Term)>) {
        let removed = self.procs.remove(pid.id);
        let Some(e) = removed else {
            return;
        };
        // Its code stops here, before anyone is told: it reads nothing
        // more, and nothing more goes out from it.
        e.tx.kill(reason.clone());
        if e.watches_nodes {
            self.node_watchers.lock().retain(|&w| w != pid.id);
        }
        if let Some(n) = &e.name {
            let mut names = self.names.write();
            names.remove(n);
            self.raw_names.remove(n);
        }
        for l in e.links {
            if self.is_local(&l) {
                if let Some(r) = self.exit_signal(pid.clone(), &l, reason.clone(), ExitVia::Link) {
                    ending.push((l, r));
                }
            } else {
                let node = l.node.name.clone();
                let _ = self.send_to_node(&node, Message::exit(pid.clone(), l, reason.clone()));
            }
        }
        for (mref, (watcher, how)) in e.monitors {
            if self.is_local(&watcher) {
                let item = match &how {
                    PidOrAtom::Pid(p) => Term::Pid(p.clone()),
                    PidOrAtom::Atom(a) => tuple(vec![Term::Atom(a.clone()), atom(&self.name)]),
                };
                let key = self.ref_key(&mref);
                let down = Signal::Down {
                    mref,
                    item,
                    reason: reason.clone(),
                };
                match key {
                    Some(key) => self.fire_held(&watcher, key, down),
                    None => {
                        self.deliver(&watcher, down);
                    }
                }
            } else {
                let _ = self.send_to_node(
                    &watcher.node.name,
                    Message::monitor_p_exit(how, watcher.clone(), mref, reason.clone()),
                );
            }
        }
        // Monitors this process held on others are no longer wanted.
        for (key, target) in e.held.into_iter() {
            match target {
                Some(t) => {
                    if let Some(te) = self.procs.write(t).get_mut(&t) {
                        te.monitors.remove(&self.ref_of(key));
                        shrink_sparse(&mut te.monitors);
                    }
                }
                None => self.demonitor_remote(pid, key),
            }
        }
    }

    /// Monitors `to` for `from` in one go: one lock for the records, one
    /// queueing per run of pids of one node, in batches the writer takes
    /// whole (at most BATCH_MAX monitors each), written from their numbers
    /// (no Message, pid or ref built for each). A pid of this node is
    /// monitored as [`Inner::monitor_keyed`] does.
    fn monitor_interned(&self, from: &Pid, to: &[InternedPid]) -> Vec<MonitorKey> {
        let mut keys = Vec::with_capacity(to.len());
        // The remote ones, by index in `to`, with their keys.
        let mut remote: Vec<(usize, RefKey)> = Vec::new();
        let me = NodeAtom::new(&self.name).ok();
        for (i, p) in to.iter().enumerate() {
            if Some(p.node_atom()) == me {
                keys.push(MonitorKey(
                    self.monitor_keyed(from, &Dest::Pid(p.to_pid())).0,
                ));
            } else {
                let key = self.make_ref_key();
                keys.push(MonitorKey(key));
                remote.push((i, key));
            }
        }
        if remote.is_empty() {
            return keys;
        }
        {
            let mut mons = self.mons_out.lock();
            mons.reserve_pids(remote.len());
            for &(i, key) in &remote {
                let item = MonItem::Pid(to[i]);
                mons.insert(
                    key,
                    MonOut {
                        watcher: from.id,
                        item,
                    },
                );
            }
        }
        if let Some(e) = self.procs.write(from.id).get_mut(&from.id) {
            e.held.extend_remote(remote.iter().map(|&(_, key)| key));
        }
        for run in remote.chunk_by(|a, b| to[a.0].node_atom() == to[b.0].node_atom()) {
            let head = Arc::new(MonitorHead {
                from: from.clone(),
                node: Atom::from(to[run[0].0].node()),
                ref_node: self.atom.clone(),
                ref_creation: self.creation,
            });
            let mut sent = true;
            for batch in run.chunks(BATCH_MAX) {
                if sent {
                    let targets = batch
                        .iter()
                        .map(|&(i, key)| MonitorTarget {
                            id: to[i].id(),
                            serial: to[i].serial(),
                            creation: to[i].creation(),
                            ref_id: self.ref_words(key),
                        })
                        .collect();
                    let batch = MonitorBatch {
                        head: head.clone(),
                        targets,
                    };
                    sent = self.send_monitors_to_node(&head.node.name, batch).is_ok();
                }
                // Once a batch could not be queued, neither are the rest.
                if !sent {
                    for &(_, key) in batch {
                        self.monitor_unsent(from, key);
                    }
                }
            }
        }
        keys
    }

    /// [`Kernel::monitor`], also returning the monitor's key.
    fn monitor_keyed(&self, from: &Pid, to: &Dest) -> (RefKey, Reference) {
        let key = self.make_ref_key();
        let mref = self.ref_of(key);
        let (node, item, target) = match to {
            Dest::Pid(p) => (
                p.node.name.as_str(),
                Term::Pid(p.clone()),
                PidOrAtom::Pid(p.clone()),
            ),
            Dest::Name(n, node) => (
                node.as_str(),
                tuple(vec![atom(n), atom(node)]),
                PidOrAtom::Atom(Atom::from(n.as_str())),
            ),
        };
        if node == self.name {
            let ok = match self.local_target(&target) {
                Some(t) => {
                    // Held before it is added: the target may end at once,
                    // and fires only a monitor its watcher holds.
                    self.hold(from, key, Some(t.id));
                    let added = self.add_monitor(&t, mref.clone(), from.clone(), target);
                    if !added {
                        self.forget_held(from, key);
                    }
                    added
                }
                None => false,
            };
            if !ok {
                self.deliver(
                    from,
                    Signal::Down {
                        mref: mref.clone(),
                        item,
                        reason: atom("noproc"),
                    },
                );
            }
            return (key, mref);
        }
        self.mons_out.lock().insert(
            key,
            MonOut {
                watcher: from.id,
                item: MonItem::new(item),
            },
        );
        self.hold(from, key, None);
        if self
            .send_to_node(node, Message::monitor_p(from.clone(), target, mref.clone()))
            .is_err()
        {
            self.monitor_unsent(from, key);
        }
        (key, mref)
    }
}
