//! Links and monitors: the bookkeeping both ends of each, the signals they
//! fire, and the `noconnection` fan-out when a peer goes down. Changes with
//! the semantics of links and monitors.

use super::{DownReason, Inner, NodeEvent};
use crate::process::Signal;
use crate::term::{self, atom, tuple, Pid, PidOrAtom, Reference, Term};
use crate::util::shrink_sparse;
use erl_dist::message::Message;

/// A monitor one of our processes holds on a process elsewhere.
pub(super) struct MonOut {
    pub(super) watcher: Pid,
    pub(super) node: String,
    pub(super) item: Term,
}

impl Inner {
    /// A connection to `node` is gone: fire `noconnection` for links and
    /// monitors that cross it.
    pub(super) fn node_down(&self, node: &str, _id: u64, reason: DownReason) {
        let noconn = atom("noconnection");
        let mut signals: Vec<(Pid, Signal)> = Vec::new();
        self.procs.for_each_mut(|id, e| {
            let me = self.pid(id);
            e.links.retain(|l| {
                if l.node.name == node {
                    signals.push((
                        me.clone(),
                        Signal::Exit {
                            from: l.clone(),
                            reason: noconn.clone(),
                            exit2: false,
                        },
                    ));
                    false
                } else {
                    true
                }
            });
            e.monitors.retain(|_, (w, _)| w.node.name != node);
            shrink_sparse(&mut e.monitors);
        });
        {
            let mut mons = self.mons_out.lock();
            mons.retain(|mref, m| {
                if m.node == node {
                    signals.push((
                        m.watcher.clone(),
                        Signal::Down {
                            mref: mref.clone(),
                            item: m.item.clone(),
                            reason: noconn.clone(),
                        },
                    ));
                    false
                } else {
                    true
                }
            });
            shrink_sparse(&mut mons);
        }
        for (to, s) in signals {
            if let Signal::Down { mref, .. } = &s {
                self.forget_held(&to, mref);
            }
            self.deliver(&to, s);
        }
        let _ = self.events.send(NodeEvent::Down {
            node: node.to_string(),
            reason,
        });
    }

    /// `watcher` no longer holds monitor `mref`.
    pub(super) fn forget_held(&self, watcher: &Pid, mref: &Reference) {
        if let Some(e) = self.procs.write(watcher.id).get_mut(&watcher.id) {
            e.held.remove(mref);
            shrink_sparse(&mut e.held);
        }
    }

    /// `watcher` holds monitor `mref` on `target` (`None`: on another node).
    pub(super) fn hold(&self, watcher: &Pid, mref: &Reference, target: Option<u32>) {
        if let Some(e) = self.procs.write(watcher.id).get_mut(&watcher.id) {
            e.held.insert(mref.clone(), target);
        }
    }

    pub(super) fn add_monitor(
        &self,
        target: &Pid,
        mref: Reference,
        watcher: Pid,
        how: PidOrAtom,
    ) -> bool {
        match self.procs.write(target.id).get_mut(&target.id) {
            Some(e) if self.is_local(target) => {
                e.monitors.insert(mref, (watcher, how));
                true
            }
            _ => false,
        }
    }

    pub(super) fn link_exit(&self, from: Pid, to: Pid, reason: Term) {
        let linked = self.is_local(&to)
            && self
                .procs
                .write(to.id)
                .get_mut(&to.id)
                .map(|e| e.links.remove(&from))
                .unwrap_or(false);
        if linked {
            self.deliver(
                &to,
                Signal::Exit {
                    from,
                    reason,
                    exit2: false,
                },
            );
        }
    }

    pub(super) fn exit2_in(&self, from: Pid, to: Pid, reason: Term) {
        self.deliver(
            &to,
            Signal::Exit {
                from,
                reason,
                exit2: true,
            },
        );
    }

    pub(super) fn monitor_fired(
        &self,
        peer: &str,
        from: PidOrAtom,
        to: Pid,
        mref: Reference,
        reason: Term,
    ) {
        let m = {
            let mut mons = self.mons_out.lock();
            let m = mons.remove(&mref);
            shrink_sparse(&mut mons);
            m
        };
        self.forget_held(&to, &mref);
        let item = match (m, from) {
            (Some(m), _) => m.item,
            (None, PidOrAtom::Pid(p)) => Term::Pid(p),
            (None, PidOrAtom::Atom(a)) => tuple(vec![Term::Atom(a), atom(peer)]),
        };
        self.deliver(&to, Signal::Down { mref, item, reason });
    }

    /// Drops a monitor held on a process of another node and tells that
    /// node (DEMONITOR_P).
    pub(super) fn demonitor_remote(&self, from: &Pid, mref: &Reference) {
        let removed = {
            let mut mons = self.mons_out.lock();
            let m = mons.remove(mref);
            shrink_sparse(&mut mons);
            m
        };
        let Some(m) = removed else {
            return;
        };
        if let Some(target) = monitor_target(&m.item) {
            let _ = self.send_to_node(
                &m.node,
                Message::demonitor_p(from.clone(), target, mref.clone()),
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
    use std::time::Duration;

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
}
