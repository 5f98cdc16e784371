//! [`MemberPid`]: the pid a cpg scope stores and hands out.
//!
//! The wire's [`Pid`](crate::term::Pid) spells its node name out in a
//! `String`: every copy allocates, and a scope copies a member pid into its
//! group, its pid index and every read. A member pid is an
//! [`InternedPid`]: its node interned, 16 bytes, `Copy`, so a join, a read
//! and a returned pid never allocate and readers on many threads share
//! nothing they write, and the scope hands its pids to the node to monitor
//! as they are. Conversion to and from the wire's pid is at the edge (the
//! scope process decoding and encoding cpg messages, the public API taking
//! `&Pid`).

use crate::pid::InternedPid;

use super::scope::PidInfo;

/// A member pid: node (interned), number, serial and creation, ordered as
/// Erlang orders pids (serial, number, node, creation), the order in which
/// cpg's merge rules visit pids. See [`InternedPid`].
pub type MemberPid = InternedPid;

impl PidInfo for MemberPid {
    fn node(&self) -> &str {
        InternedPid::node(self)
    }

    fn same_node(&self, other: &Self) -> bool {
        self.node_atom() == other.node_atom()
    }
}
