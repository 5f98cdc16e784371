//! Interned node names: each distinct name is stored once, for the life of
//! the program, and referred to by a 4-byte [`Atom`].
//!
//! A pid names its node; a scope holds the same node name in every copy of
//! every member pid, and a read hands pids out. Keeping the name as an
//! [`Atom`] makes a pid 16 bytes and `Copy`: storing, cloning and returning
//! it never allocates and never touches a shared counter, so readers on
//! many threads do not contend.
//!
//! Like the BEAM's atom table (node names are atoms there), the table only
//! grows and is bounded: at most [`MAX_ATOMS`] names (the BEAM's default
//! `+t` limit) of at most [`MAX_ATOM_CHARS`] characters. The BEAM stops when
//! its table is full; here [`Atom::new`] returns [`AtomError`] and the caller
//! drops the input that carried the name (a hostile peer inventing node
//! names costs at most the table, never the node).
//!
//! The last [`PEER_RESERVE`] places are kept for the names of nodes that
//! connect ([`Atom::new_peer`], called once a handshake with a visible
//! node is through, once a hidden node's cpg scope talks to ours, and for
//! the node's own name; not for a hidden node connecting alone, such as a
//! query client under a new name each time): names that only come in messages
//! ([`Atom::new`]) cannot take them. A peer that fills the rest with
//! invented node names (a million in 3 s, measured) then keeps no node
//! that connects later from being named, nor that node's members from
//! being seen (before, its exchange was dropped whole, for one pid it
//! could not name).
//!
//! Reading a name ([`Atom::as_str`]) takes no lock: the table is a fixed
//! array of chunks filled once each.

use crate::util::FastHashMap;
use std::fmt;
use std::sync::{Mutex, OnceLock};

/// Most distinct names the table holds (the BEAM's default atom limit).
pub const MAX_ATOMS: usize = 1 << 20;
/// Places of the table that only [`Atom::new_peer`] fills: names of nodes
/// that connected.
pub const PEER_RESERVE: usize = 1 << 16;
/// Longest name, in characters (the BEAM's atom limit).
pub const MAX_ATOM_CHARS: usize = 255;

const CHUNK_BITS: u32 = 12;
const CHUNK: usize = 1 << CHUNK_BITS;
const CHUNKS: usize = MAX_ATOMS / CHUNK;

type Chunk = Box<[OnceLock<&'static str>]>;

/// Names by index, read without a lock.
static TABLE: [OnceLock<Chunk>; CHUNKS] = [const { OnceLock::new() }; CHUNKS];
/// Index by name, for interning (writers only).
static INDEX: OnceLock<Mutex<FastHashMap<&'static str, u32>>> = OnceLock::new();

/// How many recently interned names each thread keeps ([`Atom::new`]).
const RECENT_LEN: usize = 4;

type Recent = [Option<(&'static str, Atom)>; RECENT_LEN];

thread_local! {
    /// This thread's last interned names, the newest first.
    static RECENT: std::cell::Cell<Recent> = const { std::cell::Cell::new([None; RECENT_LEN]) };
}

/// Puts `(name, atom)` first in this thread's recent names.
fn remember(name: &'static str, atom: Atom) {
    RECENT.with(|r| {
        let mut v = r.get();
        v.copy_within(0..RECENT_LEN - 1, 1);
        v[0] = Some((name, atom));
        r.set(v);
    });
}

/// An interned name (a node name): 4 bytes, `Copy`, compared by index.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Atom(u32);

/// Why a name could not be interned.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AtomError {
    /// The table is full: [`MAX_ATOMS`] names, or all but the
    /// [`PEER_RESERVE`] for a name that no connected node has.
    #[error("the node-name table is full ({MAX_ATOMS} distinct names, as the BEAM's atom table, {PEER_RESERVE} of them kept for connected nodes)")]
    TableFull,
    /// The name is longer than [`MAX_ATOM_CHARS`] characters.
    #[error("name of {0} characters is longer than an atom may be ({MAX_ATOM_CHARS})")]
    TooLong(usize),
}

/// The characters of `name` when it holds more than an atom may
/// ([`MAX_ATOM_CHARS`]), `None` when it fits: counted only past 255
/// bytes. The one rule for a name this node interns, reads from a
/// connection's atom cache or writes to a peer.
pub(crate) fn over_long(name: &str) -> Option<usize> {
    if name.len() <= MAX_ATOM_CHARS {
        return None;
    }
    let chars = name.chars().count();
    (chars > MAX_ATOM_CHARS).then_some(chars)
}

impl Atom {
    /// The atom for `name`, interning it on first use if fewer than
    /// [`MAX_ATOMS`] - [`PEER_RESERVE`] names are interned.
    pub fn new(name: &str) -> Result<Atom, AtomError> {
        Atom::intern(name, MAX_ATOMS - PEER_RESERVE)
    }

    /// The atom for the name of a node that connected (or this node's own
    /// name), which may take the places kept for such names.
    pub fn new_peer(name: &str) -> Result<Atom, AtomError> {
        Atom::intern(name, MAX_ATOMS)
    }

    /// Interns `name` if fewer than `limit` names are.
    fn intern(name: &str, limit: usize) -> Result<Atom, AtomError> {
        if let Some(chars) = over_long(name) {
            return Err(AtomError::TooLong(chars));
        }
        // The names this thread interned last: a decoded exchange or a
        // stream of messages names the same few nodes over and over, found
        // here without the lock.
        if let Some(a) = RECENT.with(|r| {
            r.get()
                .into_iter()
                .find_map(|e| e.filter(|&(n, _)| n == name).map(|(_, a)| a))
        }) {
            return Ok(a);
        }
        let index = INDEX.get_or_init(Default::default);
        let mut map = index.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((&n, &i)) = map.get_key_value(name) {
            remember(n, Atom(i));
            return Ok(Atom(i));
        }
        let i = map.len();
        if i >= limit {
            return Err(AtomError::TableFull);
        }
        let name: &'static str = Box::leak(name.into());
        let chunk =
            TABLE[i >> CHUNK_BITS].get_or_init(|| (0..CHUNK).map(|_| OnceLock::new()).collect());
        // Only this (locked) writer ever sets slot i.
        let _ = chunk[i & (CHUNK - 1)].set(name);
        map.insert(name, i as u32);
        remember(name, Atom(i as u32));
        Ok(Atom(i as u32))
    }

    /// The name.
    pub fn as_str(self) -> &'static str {
        let i = self.0 as usize;
        // An Atom exists only once its slot is set (set before the Atom is
        // returned, under the index lock; OnceLock::get is an acquire load).
        TABLE[i >> CHUNK_BITS]
            .get()
            .and_then(|c| c[i & (CHUNK - 1)].get())
            .copied()
            .unwrap_or("")
    }

    /// The atom for `name` if it is interned, without interning it.
    pub fn lookup(name: &str) -> Option<Atom> {
        let index = INDEX.get()?;
        let map = index.lock().unwrap_or_else(|e| e.into_inner());
        map.get(name).map(|&i| Atom(i))
    }

    /// How many names are interned.
    pub fn count() -> usize {
        INDEX
            .get()
            .map_or(0, |m| m.lock().unwrap_or_else(|e| e.into_inner()).len())
    }
}

impl fmt::Debug for Atom {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for Atom {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_name_same_atom_and_back() {
        let a = Atom::new("atom_test_a@host").unwrap();
        let b = Atom::new("atom_test_b@host").unwrap();
        assert_eq!(a, Atom::new("atom_test_a@host").unwrap());
        assert_ne!(a, b);
        assert_eq!(a.as_str(), "atom_test_a@host");
        assert_eq!(b.to_string(), "atom_test_b@host");
        assert_eq!(std::mem::size_of::<Atom>(), 4);
    }

    #[test]
    fn too_long_is_refused_by_characters_not_bytes() {
        let ok = "é".repeat(MAX_ATOM_CHARS);
        assert_eq!(Atom::new(&ok).unwrap().as_str(), ok);
        let long = "x".repeat(MAX_ATOM_CHARS + 1);
        assert_eq!(
            Atom::new(&long),
            Err(AtomError::TooLong(MAX_ATOM_CHARS + 1))
        );
    }

    #[test]
    fn names_interned_on_many_threads_agree() {
        let names: Vec<String> = (0..200).map(|i| format!("atom_thr_{i}@h")).collect();
        let per_thread: Vec<Vec<Atom>> = std::thread::scope(|s| {
            let hs: Vec<_> = (0..4)
                .map(|_| s.spawn(|| names.iter().map(|n| Atom::new(n).unwrap()).collect()))
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).collect()
        });
        for atoms in &per_thread {
            assert_eq!(atoms, &per_thread[0]);
        }
        for (a, n) in per_thread[0].iter().zip(&names) {
            assert_eq!(a.as_str(), n);
        }
    }
}
