//! What a peer gets of a message it did not say it takes, as its
//! distribution flags tell: the form a BEAM would send it instead, or
//! nothing.
//!
//! Every BEAM of OTP 25 takes all we send. A peer that is no BEAM may not:
//! an `erl_interface` (`ei`) node of OTP 25 offers neither
//! `DIST_MONITOR_NAME` nor `SEND_SENDER` nor `EXIT_PAYLOAD`, and its
//! receive failed (`EIO`) on the `MONITOR_P` by name that our cpg scope
//! sends every new peer, so that it could not stay connected to us. A BEAM
//! sends such a peer no monitor signal it cannot take (the monitor fires
//! only when the connection goes, with `noconnection`, as ours then do),
//! a plain `SEND` in place of `SEND_SENDER`, and the reason of an exit in
//! the control message.

use super::flags;
use erl_dist::message::Message;
use erl_dist::term::PidOrAtom;

/// `m` as a peer with `peer` flags (expanded, [`flags::expand`]) takes
/// it, or `None` when it takes no such message. `payload`: whether the
/// message's payload is written from bytes of its own (then its payload
/// field is a placeholder, and an exit keeps its payload form).
pub fn for_peer(m: Message, peer: u64, payload: bool) -> Option<Message> {
    let has = |f: u64| peer & f != 0;
    let monitors = |to: &PidOrAtom| takes_monitors(peer, matches!(to, PidOrAtom::Atom(_)));
    Some(match m {
        Message::MonitorP(x) if !monitors(&x.to_proc) => return None,
        Message::DemonitorP(x) if !monitors(&x.to_proc) => return None,
        Message::SendSender(x) if !has(flags::SEND_SENDER) => Message::send(x.to_pid, x.message),
        Message::SendSenderTt(x) if !has(flags::SEND_SENDER) => {
            Message::send_tt(x.to_pid, x.trace_token, x.message)
        }
        Message::PayloadExit(x) if !has(flags::EXIT_PAYLOAD) && !payload => {
            Message::exit(x.from_pid, x.to_pid, x.reason)
        }
        Message::PayloadExit2(x) if !has(flags::EXIT_PAYLOAD) && !payload => {
            Message::exit2(x.from_pid, x.to_pid, x.reason)
        }
        Message::PayloadMonitorPExit(x) if !has(flags::EXIT_PAYLOAD) && !payload => {
            Message::monitor_p_exit(x.from_proc, x.to_pid, x.reference, x.reason)
        }
        m => m,
    })
}

/// Whether a peer with `peer` flags (expanded) takes `MONITOR_P` and
/// `DEMONITOR_P` of pids, or with `by_name` of registered names.
pub fn takes_monitors(peer: u64, by_name: bool) -> bool {
    peer & flags::DIST_MONITOR != 0 && (!by_name || peer & flags::DIST_MONITOR_NAME != 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::term::{atom, Atom, Pid, Reference};

    fn pid() -> Pid {
        Pid::new("a@h", 1, 0, 1)
    }

    fn reference() -> Reference {
        Reference {
            node: Atom::from("a@h"),
            id: vec![1, 2, 3],
            creation: 1,
        }
    }

    /// The flags of an `ei` node of OTP 25, as it sent them in its
    /// handshake (`0x4_0707_4F9C`).
    const EI_25: u64 = 0x4_0707_4F9C;

    /// What a peer with `peer` flags is sent for a monitor of a name, a
    /// SEND_SENDER of `hi` and a PAYLOAD_EXIT.
    fn sent_as(peer: u64) -> [Option<Message>; 3] {
        let peer = flags::expand(peer);
        let by_name = Message::monitor_p(pid(), PidOrAtom::Atom(Atom::from("scope")), reference());
        let sent = Message::send_sender(pid(), pid(), atom("hi"));
        let exit = Message::payload_exit(pid(), pid(), atom("normal"));
        [by_name, sent, exit].map(|m| for_peer(m, peer, false))
    }

    #[test]
    fn an_ei_node_gets_no_monitor_by_name_and_a_plain_send() {
        let [by_name, sent, exit] = sent_as(EI_25);
        assert!(by_name.is_none());
        let Some(Message::Send(s)) = sent else {
            panic!("not a SEND");
        };
        assert_eq!(s.message, atom("hi"));
        assert!(matches!(exit, Some(Message::Exit(_))));
        let by_pid = Message::monitor_p(pid(), PidOrAtom::Pid(pid()), reference());
        assert!(matches!(
            for_peer(by_pid, flags::expand(EI_25), false),
            Some(Message::MonitorP(_))
        ));
    }

    #[test]
    fn a_beam_gets_every_message_as_it_is() {
        let [by_name, sent, exit] = sent_as(flags::OFFERED);
        assert!(matches!(by_name, Some(Message::MonitorP(_))));
        assert!(matches!(sent, Some(Message::SendSender(_))));
        assert!(matches!(exit, Some(Message::PayloadExit(_))));
    }

    #[test]
    fn a_peer_without_monitors_gets_none() {
        let peer = flags::expand(flags::MANDATORY_25);
        let by_pid = Message::monitor_p(pid(), PidOrAtom::Pid(pid()), reference());
        assert!(for_peer(by_pid, peer, false).is_none());
        let de = Message::demonitor_p(pid(), PidOrAtom::Pid(pid()), reference());
        assert!(for_peer(de, peer, false).is_none());
    }
}
