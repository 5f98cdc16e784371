//! The inbound router: control messages from peers become signals to local
//! processes (messages, link exits, monitors). Changes with the set of
//! control messages we understand.

use super::Inner;
use crate::dist::connection::Router;
use crate::dist::control::Target;
use crate::dist::raw::{RawNames, RawRegSend};
use crate::process::Signal;
use crate::term::{self, atom, Pid, Term};
use crate::util::shrink_sparse;
use erl_dist::message::Message;

impl Router for Inner {
    fn incoming(&self, peer: &str, msg: Message) {
        self.handle(peer, msg);
    }

    fn raw_names(&self) -> Option<RawNames> {
        Some(self.raw_names.clone())
    }

    /// A live process of ours, or a registered name (a race with its
    /// process ending is settled on delivery, as before).
    fn has_receiver(&self, to: Target<'_>) -> bool {
        match to {
            Target::Pid(p) => self.is_alive(p),
            Target::Name(name) => self.names.read().contains_key(name),
        }
    }

    /// Delivered as [`Signal::Raw`] when the name is still one registered
    /// raw (checked under the names lock, which `exited` removes it
    /// under), else decoded and delivered as any message.
    fn incoming_raw(&self, peer: &str, msg: RawRegSend) {
        let names = self.names.read();
        if self.raw_names.contains(&msg.to_name) {
            if let Some(p) = names.get(&msg.to_name) {
                let s = Signal::Raw {
                    from: Some(msg.from),
                    payload: msg.payload,
                };
                if !self.deliver(p, s) {
                    tracing::trace!("message to dead process {} dropped", term::pid_text(p));
                }
            }
            return;
        }
        drop(names);
        match msg.payload.decode() {
            Ok(t) => self.deliver_named(msg.from, &msg.to_name, t),
            Err(e) => tracing::warn!(
                peer,
                to = msg.to_name,
                "dropped a message from the peer, the connection stays: {e}"
            ),
        }
    }
}

impl Inner {
    pub(super) fn handle(&self, peer: &str, msg: Message) {
        match msg {
            Message::Send(m) => self.deliver_msg(None, &m.to_pid, m.message),
            Message::SendTt(m) => self.deliver_msg(None, &m.to_pid, m.message),
            Message::SendSender(m) => self.deliver_msg(Some(m.from_pid), &m.to_pid, m.message),
            Message::SendSenderTt(m) => self.deliver_msg(Some(m.from_pid), &m.to_pid, m.message),
            Message::RegSend(m) => self.deliver_named(m.from_pid, &m.to_name.name, m.message),
            Message::RegSendTt(m) => self.deliver_named(m.from_pid, &m.to_name.name, m.message),
            Message::Link(m) => {
                let ok = self
                    .with_proc(&m.to_pid, |e| e.links.insert(m.from_pid.clone()))
                    .is_some();
                if ok {
                    self.count_hold(peer);
                } else {
                    let _ = self
                        .send_to_node(peer, Message::exit(m.to_pid, m.from_pid, atom("noproc")));
                }
            }
            Message::UnlinkId(m) => {
                self.with_proc(&m.to_pid, |e| e.links.remove(&m.from_pid));
                let _ = self.send_to_node(peer, Message::unlink_id_ack(m.id, m.to_pid, m.from_pid));
            }
            Message::Unlink(m) => {
                self.with_proc(&m.to_pid, |e| e.links.remove(&m.from_pid));
            }
            Message::UnlinkIdAck(_) | Message::NodeLink(_) | Message::GroupLeader(_) => {}
            Message::Exit(m) => self.link_exit(m.from_pid, m.to_pid, m.reason),
            Message::ExitTt(m) => self.link_exit(m.from_pid, m.to_pid, m.reason),
            Message::PayloadExit(m) => self.link_exit(m.from_pid, m.to_pid, m.reason),
            Message::PayloadExitTt(m) => self.link_exit(m.from_pid, m.to_pid, m.reason),
            Message::Exit2(m) => self.exit2_in(m.from_pid, m.to_pid, m.reason),
            Message::Exit2Tt(m) => self.exit2_in(m.from_pid, m.to_pid, m.reason),
            Message::PayloadExit2(m) => self.exit2_in(m.from_pid, m.to_pid, m.reason),
            Message::PayloadExit2Tt(m) => self.exit2_in(m.from_pid, m.to_pid, m.reason),
            Message::MonitorP(m) => {
                let ok = match self.local_target(&m.to_proc) {
                    Some(t) => self.add_monitor(
                        &t,
                        m.reference.clone(),
                        m.from_pid.clone(),
                        m.to_proc.clone(),
                    ),
                    None => false,
                };
                if ok {
                    self.count_hold(peer);
                } else {
                    let _ = self.send_to_node(
                        peer,
                        Message::monitor_p_exit(m.to_proc, m.from_pid, m.reference, atom("noproc")),
                    );
                }
            }
            Message::DemonitorP(m) => {
                if let Some(t) = self.local_target(&m.to_proc) {
                    self.with_proc(&t, |e| {
                        e.monitors.remove(&m.reference);
                        shrink_sparse(&mut e.monitors);
                    });
                }
            }
            Message::MonitorPExit(m) => self.monitor_fired(peer, m.to_pid, m.reference, m.reason),
            Message::PayloadMonitorPExit(m) => {
                self.monitor_fired(peer, m.to_pid, m.reference, m.reason)
            }
            Message::AliasSend(m) => self.deliver_alias(Some(m.from_pid), &m.alias, m.message),
            Message::AliasSendTt(m) => self.deliver_alias(Some(m.from_pid), &m.alias, m.message),
            // (Named, not printed: its terms are the peer's to size.)
            other => tracing::debug!(peer, "dropped a {} control message", unserved(&other)),
        }
    }

    pub(super) fn deliver_msg(&self, from: Option<Pid>, to: &Pid, msg: Term) {
        if !self.deliver(to, Signal::Message { from, msg }) {
            tracing::trace!(
                "message to dead or unknown pid {} dropped",
                term::pid_text(to)
            );
        }
    }

    pub(super) fn deliver_named(&self, from: Pid, name: &str, msg: Term) {
        // Delivered under the names lock (names, then procs: the order
        // `register` takes them in) rather than cloning the pid, and its
        // node name, for every message.
        let names = self.names.read();
        match names.get(name) {
            Some(p) => self.deliver_msg(Some(from), p, msg),
            None => {
                drop(names);
                tracing::debug!(
                    "message to unregistered name {name} dropped: {}",
                    term::show(&msg)
                )
            }
        }
    }
}

/// The kind of a control message the router does not serve.
fn unserved(m: &Message) -> &'static str {
    match m {
        Message::SpawnRequest(_) | Message::SpawnRequestTt(_) => "SPAWN_REQUEST",
        Message::SpawnReply(_) | Message::SpawnReplyTt(_) => "SPAWN_REPLY",
        Message::Tick => "tick",
        _ => "unserved",
    }
}
