//! The process a control message says it comes from must be the peer's.
//!
//! A peer speaks for its own processes only. BEAM checks this as it routes
//! a control message (`erts_net_message` in `erts/emulator/beam/dist.c`):
//! the sender of `LINK`, `UNLINK_ID`, `UNLINK_ID_ACK`, `EXIT`/`EXIT2` (and
//! their `_TT` and payload forms), `MONITOR_P` and `DEMONITOR_P` must be an
//! external pid of the connection's node (`dep !=
//! external_pid_dist_entry(from)` is an invalid distribution message).
//! Without the check, a peer X could send `LINK {1, <N.77.0>, Ours}` for a
//! pid of another node N: when our process later died we sent N an `EXIT`
//! for a link N never made, to a pid of an old creation of N, which N
//! takes for an invalid distribution message: it dropped its connection to
//! us, and our cpg members vanished on N.
//!
//! [`check`] applies the rule to every message that names a sending
//! process: those BEAM checks, and also `SEND_SENDER`, `REG_SEND`,
//! `ALIAS_SEND`, `SPAWN_REQUEST` and `MONITOR_P_EXIT`'s pid (BEAM does not
//! check these, but a Rust process may reply to, link to or monitor the
//! sender it is given, and a BEAM peer never names another node's process
//! there). The sender's node name must be the peer's. Its creation is not
//! looked at, as BEAM does not (it finds the connection by name): a BEAM
//! node answers our `LINK`, `UNLINK_ID` or `MONITOR_P` to a pid of an
//! earlier incarnation of itself with `EXIT`, `UNLINK_ID_ACK` or
//! `MONITOR_P_EXIT` naming that pid (`noproc`), and a C node may put any
//! creation in its pids.

use crate::term::{self, Pid, PidOrAtom};
use erl_dist::message::Message;

/// A control message whose sending process is not the peer's; it is
/// dropped (see [`check`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{op} from {sender}, not a process of the peer {peer}: dropped")]
pub struct ForeignSender {
    /// The operation (`"LINK"`, `"EXIT"`, ...).
    pub op: &'static str,
    /// The sender named, as text ([`term::show()`]).
    pub sender: String,
    /// The peer's node name.
    pub peer: String,
}

/// Which sender a message names.
fn sender(msg: &Message) -> Option<(&'static str, &Pid)> {
    use Message as M;
    Some(match msg {
        M::Link(m) => ("LINK", &m.from_pid),
        M::Unlink(m) => ("UNLINK", &m.from_pid),
        M::UnlinkId(m) => ("UNLINK_ID", &m.from_pid),
        M::MonitorP(m) => ("MONITOR_P", &m.from_pid),
        M::DemonitorP(m) => ("DEMONITOR_P", &m.from_pid),
        M::Exit2(m) => ("EXIT2", &m.from_pid),
        M::Exit2Tt(m) => ("EXIT2_TT", &m.from_pid),
        M::PayloadExit2(m) => ("PAYLOAD_EXIT2", &m.from_pid),
        M::PayloadExit2Tt(m) => ("PAYLOAD_EXIT2_TT", &m.from_pid),
        M::SendSender(m) => ("SEND_SENDER", &m.from_pid),
        M::SendSenderTt(m) => ("SEND_SENDER_TT", &m.from_pid),
        M::RegSend(m) => ("REG_SEND", &m.from_pid),
        M::RegSendTt(m) => ("REG_SEND_TT", &m.from_pid),
        M::AliasSend(m) => ("ALIAS_SEND", &m.from_pid),
        M::AliasSendTt(m) => ("ALIAS_SEND_TT", &m.from_pid),
        M::SpawnRequest(m) => ("SPAWN_REQUEST", &m.from_pid),
        M::SpawnRequestTt(m) => ("SPAWN_REQUEST_TT", &m.from_pid),
        M::Exit(m) => ("EXIT", &m.from_pid),
        M::ExitTt(m) => ("EXIT_TT", &m.from_pid),
        M::PayloadExit(m) => ("PAYLOAD_EXIT", &m.from_pid),
        M::PayloadExitTt(m) => ("PAYLOAD_EXIT_TT", &m.from_pid),
        M::UnlinkIdAck(m) => ("UNLINK_ID_ACK", &m.from_pid),
        M::MonitorPExit(m) => match &m.from_proc {
            PidOrAtom::Pid(p) => ("MONITOR_P_EXIT", p),
            PidOrAtom::Atom(_) => return None,
        },
        M::PayloadMonitorPExit(m) => match &m.from_proc {
            PidOrAtom::Pid(p) => ("PAYLOAD_MONITOR_P_EXIT", p),
            PidOrAtom::Atom(_) => return None,
        },
        // No sender (SEND, ticks), or not one that acts (GROUP_LEADER's is
        // a group leader, of any node; SPAWN_REPLY's is the new process).
        _ => return None,
    })
}

/// Whether `msg`, received from `peer`, names as its sender a process of
/// that peer (see the module documentation for which messages).
///
/// A message that fails is dropped with a warning, and the connection
/// stays. BEAM closes the connection on such an invalid message instead;
/// here, as for every other message refused for its content, only a
/// broken byte stream closes it: the stream is still in step, a BEAM peer
/// never sends such a message (so no real peer loses anything), and
/// closing would cost the cpg members and links of a peer that is merely
/// buggy, while one that means harm simply dials again.
pub fn check(msg: &Message, peer: &str) -> Result<(), ForeignSender> {
    match sender(msg) {
        Some((op, pid)) => check_pid(op, pid, peer),
        None => Ok(()),
    }
}

/// [`check`] of a `REG_SEND` whose payload stayed bytes (its sender
/// `from`).
pub fn check_reg_send(from: &Pid, peer: &str) -> Result<(), ForeignSender> {
    check_pid("REG_SEND", from, peer)
}

fn check_pid(op: &'static str, pid: &Pid, peer: &str) -> Result<(), ForeignSender> {
    if pid.node.name == peer {
        return Ok(());
    }
    Err(ForeignSender {
        op,
        sender: term::show(pid).to_string(),
        peer: peer.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::term::{atom, Reference};

    const PEER: &str = "x@h";
    const CRE: u32 = 7;

    fn pid(node: &str, creation: u32) -> Pid {
        Pid::new(node, 77, 0, creation)
    }

    fn ours() -> Pid {
        pid("us@h", 1)
    }

    fn r() -> Reference {
        Reference {
            node: PEER.into(),
            id: vec![1, 2, 3],
            creation: CRE,
        }
    }

    /// Every message that names a sender, made with `from` as it.
    fn senders(from: Pid) -> Vec<Message> {
        use Message as M;
        let to = ours();
        let t = atom("x");
        vec![
            M::link(from.clone(), to.clone()),
            M::unlink(from.clone(), to.clone()),
            M::unlink_id(term::int(1), from.clone(), to.clone()),
            M::monitor_p(from.clone(), PidOrAtom::Pid(to.clone()), r()),
            M::demonitor_p(from.clone(), PidOrAtom::Atom("echo".into()), r()),
            M::exit2(from.clone(), to.clone(), t.clone()),
            M::exit2_tt(from.clone(), to.clone(), t.clone(), t.clone()),
            M::payload_exit2(from.clone(), to.clone(), t.clone()),
            M::payload_exit2_tt(from.clone(), to.clone(), t.clone(), t.clone()),
            M::send_sender(from.clone(), to.clone(), t.clone()),
            M::send_sender_tt(from.clone(), to.clone(), t.clone(), t.clone()),
            M::reg_send(from.clone(), "echo".into(), t.clone()),
            M::reg_send_tt(from.clone(), "echo".into(), t.clone(), t.clone()),
            M::alias_send(from.clone(), r(), t.clone()),
            M::alias_send_tt(from.clone(), r(), t.clone(), t.clone()),
            M::exit(from.clone(), to.clone(), t.clone()),
            M::exit_tt(from.clone(), to.clone(), t.clone(), t.clone()),
            M::payload_exit(from.clone(), to.clone(), t.clone()),
            M::payload_exit_tt(from.clone(), to.clone(), t.clone(), t.clone()),
            M::unlink_id_ack(term::int(1), from.clone(), to.clone()),
            M::monitor_p_exit(PidOrAtom::Pid(from.clone()), to.clone(), r(), t.clone()),
            M::payload_monitor_p_exit(PidOrAtom::Pid(from), to, r(), t),
        ]
    }

    /// What BEAM's `erts_net_message` refuses: a sender of another node,
    /// whatever the message (the reported case: `LINK` from a pid of N
    /// with an old creation, sent by X).
    #[test]
    fn a_sender_of_another_node_is_refused_in_every_message() {
        for other in [pid("n@h", 1), pid("n@h", CRE), ours()] {
            for m in senders(other.clone()) {
                let e = check(&m, PEER).expect_err(&format!("{m:?}"));
                assert_eq!(e.peer.as_str(), PEER);
                assert!(e.sender.contains(&other.node.name), "{e}");
            }
        }
        let e = check(&Message::link(pid("n@h", 1), ours()), PEER).unwrap_err();
        assert_eq!(
            e.to_string(),
            "LINK from <'n@h'.77.0>, not a process of the peer x@h: dropped"
        );
    }

    /// The peer's own processes pass, of any creation (as on BEAM: a
    /// `noproc` answer names a pid of an earlier incarnation of the peer).
    #[test]
    fn the_peers_own_processes_pass() {
        for creation in [CRE, CRE - 1, 0] {
            for m in senders(pid(PEER, creation)) {
                assert_eq!(check(&m, PEER), Ok(()), "{m:?}");
            }
        }
        // No sender, or a name: nothing to check.
        let to = ours();
        for m in [
            Message::send(to.clone(), atom("x")),
            Message::group_leader(pid("n@h", 1), to.clone()),
            Message::monitor_p_exit(PidOrAtom::Atom("echo".into()), to, r(), atom("x")),
            Message::Tick,
        ] {
            assert_eq!(check(&m, PEER), Ok(()), "{m:?}");
        }
        assert!(check_reg_send(&pid(PEER, CRE), PEER).is_ok());
        assert!(check_reg_send(&pid("n@h", CRE), PEER).is_err());
    }
}
