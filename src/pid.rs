//! [`InternedPid`]: a pid whose node name is interned, the one shape of a
//! pid that the node, its processes and the cpg scope keep in numbers.
//!
//! The wire's [`Pid`] spells its node name out in a `String`: every copy
//! allocates. An [`InternedPid`] keeps the node as an interned [`Atom`]:
//! 16 bytes, `Copy`, so storing, cloning and returning it never allocates
//! and readers on many threads share nothing they write. It is what a cpg
//! scope stores for each member ([`crate::cpg::MemberPid`] is this type),
//! what a process hands the node to monitor many pids in one go
//! ([`crate::process::Process::monitor_many_interned_keys`]), and what the
//! node keeps for each remote pid one of its processes monitors.
//! Conversion to and from the wire's pid is at the edge.

use crate::atom::{Atom, AtomError};
use crate::process::Dest;
use crate::term::Pid;
use std::cmp::Ordering;
use std::fmt;

/// A pid: node (interned), number, serial and creation, ordered as Erlang
/// orders pids (serial, number, node, creation; checked on OTP 25), the
/// order in which cpg's merge rules visit pids.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct InternedPid {
    node: Atom,
    id: u32,
    serial: u32,
    creation: u32,
}

impl InternedPid {
    /// The pid `<node.id.serial>` of incarnation `creation` of `node`.
    pub fn new(node: &str, id: u32, serial: u32, creation: u32) -> Result<InternedPid, AtomError> {
        Ok(InternedPid::with_atom(
            Atom::new(node)?,
            id,
            serial,
            creation,
        ))
    }

    /// The pid `<node.id.serial>` of incarnation `creation` of the node
    /// whose name is already interned as `node`.
    pub fn with_atom(node: Atom, id: u32, serial: u32, creation: u32) -> InternedPid {
        InternedPid {
            node,
            id,
            serial,
            creation,
        }
    }

    /// The node the pid lives on.
    pub fn node(&self) -> &'static str {
        self.node.as_str()
    }

    /// The node as an interned atom (compared without reading the name).
    pub fn node_atom(&self) -> Atom {
        self.node
    }

    /// The pid number (`ID` of `NEW_PID_EXT`).
    pub fn id(&self) -> u32 {
        self.id
    }

    /// The serial.
    pub fn serial(&self) -> u32 {
        self.serial
    }

    /// The node's creation (incarnation) the pid belongs to.
    pub fn creation(&self) -> u32 {
        self.creation
    }

    /// The wire's pid (allocates the node name).
    pub fn to_pid(&self) -> Pid {
        Pid::new(self.node.as_str(), self.id, self.serial, self.creation)
    }
}

impl Ord for InternedPid {
    fn cmp(&self, o: &Self) -> Ordering {
        (self.serial, self.id)
            .cmp(&(o.serial, o.id))
            .then_with(|| {
                if self.node == o.node {
                    Ordering::Equal
                } else {
                    self.node.as_str().cmp(o.node.as_str())
                }
            })
            .then(self.creation.cmp(&o.creation))
    }
}

impl PartialOrd for InternedPid {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}

impl fmt::Debug for InternedPid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self}")
    }
}

impl fmt::Display for InternedPid {
    /// As Erlang prints a pid on another node: `<node.id.serial>`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "<{}.{}.{}>", self.node, self.id, self.serial)
    }
}

impl TryFrom<&Pid> for InternedPid {
    type Error = AtomError;
    fn try_from(p: &Pid) -> Result<Self, AtomError> {
        InternedPid::new(&p.node.name, p.id, p.serial, p.creation)
    }
}

impl TryFrom<Pid> for InternedPid {
    type Error = AtomError;
    fn try_from(p: Pid) -> Result<Self, AtomError> {
        InternedPid::try_from(&p)
    }
}

impl From<InternedPid> for Pid {
    fn from(p: InternedPid) -> Pid {
        p.to_pid()
    }
}

impl From<&InternedPid> for Pid {
    fn from(p: &InternedPid) -> Pid {
        p.to_pid()
    }
}

impl From<InternedPid> for Dest {
    fn from(p: InternedPid) -> Dest {
        Dest::Pid(p.to_pid())
    }
}

impl PartialEq<Pid> for InternedPid {
    fn eq(&self, p: &Pid) -> bool {
        self.id == p.id
            && self.serial == p.serial
            && self.creation == p.creation
            && self.node.as_str() == p.node.name
    }
}

impl PartialEq<InternedPid> for Pid {
    fn eq(&self, p: &InternedPid) -> bool {
        p == self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(node: &str, id: u32, serial: u32, creation: u32) -> InternedPid {
        InternedPid::new(node, id, serial, creation).unwrap()
    }

    #[test]
    fn small_copy_and_round_trips() {
        assert_eq!(std::mem::size_of::<InternedPid>(), 16);
        let p = Pid::new("a@h", 7, 2, 3);
        let mp = InternedPid::try_from(&p).unwrap();
        assert_eq!(mp.to_pid(), p);
        assert_eq!(mp, p);
        assert_eq!(mp.node(), "a@h");
        assert_eq!(mp.to_string(), "<a@h.7.2>");
    }

    #[test]
    fn erlang_term_order_serial_number_node_creation() {
        let mut v = vec![
            m("b@h", 1, 0, 1),
            m("a@h", 2, 0, 1),
            m("a@h", 1, 1, 1),
            m("a@h", 1, 0, 2),
            m("a@h", 1, 0, 1),
        ];
        v.sort();
        assert_eq!(
            v,
            vec![
                m("a@h", 1, 0, 1),
                m("a@h", 1, 0, 2),
                m("b@h", 1, 0, 1),
                m("a@h", 2, 0, 1),
                m("a@h", 1, 1, 1),
            ]
        );
    }

    #[test]
    fn over_long_node_name_is_an_error() {
        let p = Pid::new("x".repeat(300), 1, 0, 1);
        assert!(InternedPid::try_from(&p).is_err());
    }
}
