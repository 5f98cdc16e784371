//! MONITOR_P messages of one process to many pids of one node (a cpg scope
//! monitoring the new pids of an exchange: one per pid, 100k for a peer of
//! 100k members), queued as one batch and written straight from their
//! numbers into the connection's buffer.
//!
//! erl_dist's `Message::MonitorP` owns a pid, a pid and a reference, each
//! with its own node name (and the reference its words): four allocations
//! a message, made by the monitoring side and freed by the writer. Here a
//! batch holds the names once ([`MonitorHead`]) and each monitor is four
//! numbers and the reference's words ([`MonitorTarget`], 28 bytes): the
//! bytes written are the ones `encode_message` writes for the same
//! `Message` (tested below).

use super::control::{
    put_packet, put_pid, put_pid_parts, put_ref_parts, EncodeError, SMALL_INTEGER, SMALL_TUPLE,
};
use super::send_cache::SendCache;
use crate::term::{Atom, Pid};
use std::sync::Arc;

/// Control message tag of MONITOR_P.
const MONITOR_P: u8 = 19;

/// About what one MONITOR_P of a [`MonitorBatch`] takes on the wire (two
/// pids and a reference with their node names, the packet's head): what
/// it costs while queued.
pub const MONITOR_P_SIZE: usize = 128;

/// What the monitors of a [`MonitorBatch`] share.
#[derive(Debug, Clone, PartialEq)]
pub struct MonitorHead {
    /// The monitoring process.
    pub from: Pid,
    /// The node of the monitored pids.
    pub node: Atom,
    /// The node that made the references (ours).
    pub ref_node: Atom,
    /// Its creation.
    pub ref_creation: u32,
}

/// One monitor: the monitored pid's numbers and the reference's words.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MonitorTarget {
    /// The pid's number.
    pub id: u32,
    /// The pid's serial.
    pub serial: u32,
    /// The pid's creation.
    pub creation: u32,
    /// The reference's words (`NEWER_REFERENCE_EXT`'s ids).
    pub ref_id: [u32; 3],
}

/// MONITOR_Ps from one process to pids of one node, sent in this order.
#[derive(Debug, Clone, PartialEq)]
pub struct MonitorBatch {
    /// What they share.
    pub head: Arc<MonitorHead>,
    /// One per monitor.
    pub targets: Vec<MonitorTarget>,
}

impl MonitorHead {
    /// The monitored pid of `t`.
    pub fn pid(&self, t: &MonitorTarget) -> Pid {
        Pid {
            node: self.node.clone(),
            id: t.id,
            serial: t.serial,
            creation: t.creation,
        }
    }

    /// The reference of `t`.
    pub fn reference(&self, t: &MonitorTarget) -> crate::term::Reference {
        crate::term::Reference {
            node: self.ref_node.clone(),
            id: t.ref_id.to_vec(),
            creation: self.ref_creation,
        }
    }
}

/// Appends one packet carrying the MONITOR_P of `t` to `out`, framed as
/// `encode_message` frames a message (`dist_header`: see there; with a
/// `cache`, as `encode_message_cached` does).
pub fn encode_monitor_p(
    head: &MonitorHead,
    t: &MonitorTarget,
    out: &mut Vec<u8>,
    dist_header: bool,
    cache: Option<&mut SendCache>,
) -> Result<(), EncodeError> {
    put_packet(out, dist_header, cache, |out| {
        out.extend_from_slice(&[SMALL_TUPLE, 4, SMALL_INTEGER, MONITOR_P]);
        put_pid(out, &head.from)?;
        put_pid_parts(out, &head.node, t.id, t.serial, t.creation)?;
        put_ref_parts(out, &head.ref_node, head.ref_creation, &t.ref_id)?;
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dist::control::{decode_message, encode_message};
    use crate::term::{Limits, PidOrAtom};
    use erl_dist::message::Message;

    fn head() -> MonitorHead {
        MonitorHead {
            from: Pid::new("a@h", 40, 0, 7),
            node: Atom::from("b@somewhere"),
            ref_node: Atom::from("a@h"),
            ref_creation: 7,
        }
    }

    #[test]
    fn writes_what_encode_message_writes_for_the_same_monitor() {
        let h = head();
        for t in [
            MonitorTarget {
                id: 1,
                serial: 0,
                creation: 3,
                ref_id: [5, 0, 7 ^ 0x5a5a],
            },
            MonitorTarget {
                id: u32::MAX,
                serial: 1 << 20,
                creation: u32::MAX,
                ref_id: [0x3_ffff, u32::MAX, 1],
            },
        ] {
            let msg =
                Message::monitor_p(h.from.clone(), PidOrAtom::Pid(h.pid(&t)), h.reference(&t));
            for dist_header in [true, false] {
                let (mut ours, mut theirs) = (vec![9], vec![9]);
                encode_monitor_p(&h, &t, &mut ours, dist_header, None).unwrap();
                encode_message(&msg, &mut theirs, dist_header).unwrap();
                assert_eq!(ours, theirs);
                if !dist_header {
                    assert_eq!(decode_message(&ours[6..], Limits::default()).unwrap(), msg);
                }
            }
        }
    }

    #[test]
    fn a_name_too_long_writes_nothing() {
        let mut h = head();
        h.node = Atom::from("x".repeat(70_000));
        let t = MonitorTarget {
            id: 1,
            serial: 0,
            creation: 1,
            ref_id: [1, 2, 3],
        };
        let mut out = vec![1, 2];
        assert!(encode_monitor_p(&h, &t, &mut out, true, None).is_err());
        assert_eq!(out, [1, 2]);
    }
}
