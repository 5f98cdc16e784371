//! Large messages to some registered names handed over undecoded.
//!
//! A process that reads a large message of a known shape faster from its
//! bytes than from a [`Term`] (a cpg scope and the exchange that brings a
//! peer's whole state: 100k groups are 500k allocations as terms, freed
//! right after) registers its name as taking raw payloads
//! ([`RawNames`]). A `REG_SEND` to such a name whose terms take at least
//! [`RAW_MIN`] bytes then leaves the link with its control tuple read and
//! its payload as bytes ([`RawRegSend`]); every other message is decoded
//! as before. The payload keeps what it needs to be decoded later the
//! usual way ([`RawPayload::decode`]): the atoms its header's cache
//! references named when it arrived, and the limits.

use super::control;
use crate::term::decode::{self, AtomRefs};
use crate::term::{Limits, Pid, Term, TermError};
use parking_lot::RwLock;
use std::collections::HashSet;
use std::sync::Arc;

/// Messages (control tuple and payload) smaller than this are always
/// decoded on the link: a small payload gains nothing from being handed
/// over as bytes, and decoding it there spreads the work over the
/// connection's task.
pub const RAW_MIN: usize = 16 * 1024;

/// The registered names whose large messages are handed over as bytes,
/// shared by a node and its links.
#[derive(Debug, Clone, Default)]
pub struct RawNames(Arc<RwLock<HashSet<Box<str>>>>);

impl RawNames {
    /// Adds `name`.
    pub fn insert(&self, name: &str) {
        self.0.write().insert(name.into());
    }

    /// Removes `name`.
    pub fn remove(&self, name: &str) {
        self.0.write().remove(name);
    }

    /// Whether `name` takes raw payloads.
    pub fn contains(&self, name: &str) -> bool {
        self.0.read().contains(name)
    }

    /// Whether no name takes raw payloads.
    pub fn is_empty(&self) -> bool {
        self.0.read().is_empty()
    }
}

/// A payload as it came: one term, to be decoded by its receiver.
#[derive(Clone, PartialEq)]
pub struct RawPayload {
    data: Vec<u8>,
    /// Where the term starts in `data` (its 131 byte when `versioned`).
    start: usize,
    versioned: bool,
    /// The atoms of the message's atom cache references, in the order its
    /// header listed them.
    atoms: Vec<Option<Box<str>>>,
    /// `0..atoms.len()`, for [`AtomRefs::idx`].
    idx: Vec<u16>,
    limits: Limits,
}

impl std::fmt::Debug for RawPayload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RawPayload({} bytes)", self.data.len() - self.start)
    }
}

impl RawPayload {
    /// A payload of the term at `data[start..]`: with its 131 byte when
    /// `versioned`, else after a distribution header whose cache
    /// references named `atoms` (in the header's order).
    pub fn new(
        data: Vec<u8>,
        start: usize,
        versioned: bool,
        atoms: Vec<Option<Box<str>>>,
        limits: Limits,
    ) -> RawPayload {
        let idx = (0..atoms.len() as u16).collect();
        RawPayload {
            data,
            start,
            versioned,
            atoms,
            idx,
            limits,
        }
    }

    /// The payload of `t` as a BEAM sends it without a header (131 and the
    /// term).
    pub fn of_term(t: &Term) -> Result<RawPayload, control::EncodeError> {
        let mut data = vec![crate::term::VERSION];
        control::put_term(&mut data, t)?;
        Ok(RawPayload::new(
            data,
            0,
            true,
            Vec::new(),
            Limits::default(),
        ))
    }

    /// The term's bytes without its 131 byte (`None` when a versioned
    /// payload does not start with one), and what its atom cache
    /// references name.
    pub fn body(&self) -> Option<(&[u8], usize, AtomRefs<'_>)> {
        let refs = AtomRefs {
            idx: &self.idx,
            slots: &self.atoms,
        };
        match (self.versioned, self.data.get(self.start)) {
            (false, _) => Some((&self.data, self.start, refs)),
            (true, Some(&crate::term::VERSION)) => Some((&self.data, self.start + 1, refs)),
            (true, _) => None,
        }
    }

    /// The limits the link decodes terms with.
    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// Its size in bytes.
    pub fn len(&self) -> usize {
        self.data.len() - self.start
    }

    /// Whether it holds no byte (never a valid term).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The term, decoded as the link would have: the same term or the same
    /// error, bytes after the term refused.
    pub fn decode(&self) -> Result<Term, TermError> {
        let refs = AtomRefs {
            idx: &self.idx,
            slots: &self.atoms,
        };
        let d = if self.versioned {
            decode::decode_versioned(&self.data, self.start, self.limits)?
        } else {
            decode::decode_body_in(&self.data, self.start, self.limits, refs)?
        };
        if d.end != self.data.len() {
            return Err(TermError::Decode("trailing bytes after the payload".into()));
        }
        d.term
    }
}

/// A `REG_SEND` whose payload was left as bytes.
#[derive(Debug, Clone, PartialEq)]
pub struct RawRegSend {
    /// The sender.
    pub from: Pid,
    /// The registered name it is for.
    pub to_name: String,
    /// The message.
    pub payload: RawPayload,
}

/// What [`take`] read of a `REG_SEND` before its payload.
pub(crate) struct Head {
    /// The sender.
    pub from: Pid,
    /// The name.
    pub to_name: String,
    /// Where the payload starts.
    pub at: usize,
    /// The atoms of the message's atom cache references, in order.
    pub atoms: Vec<Option<Box<str>>>,
}

/// The `REG_SEND` in a message's terms (`data`, as in
/// [`control::decode_terms_in`]) when its name is one of `names` and it
/// is at least [`RAW_MIN`] bytes; `None` for any other message.
pub(crate) fn take(
    data: &[u8],
    versioned: bool,
    refs: AtomRefs<'_>,
    names: &RawNames,
) -> Option<Head> {
    if data.len() < RAW_MIN || names.is_empty() {
        return None;
    }
    let (from, name, at) = control::reg_send_head(data, versioned, refs)?;
    if !names.contains(name) {
        return None;
    }
    let atoms = refs
        .idx
        .iter()
        .map(|&i| refs.slots.get(usize::from(i)).cloned().flatten())
        .collect();
    Some(Head {
        from,
        to_name: name.to_string(),
        at,
        atoms,
    })
}
