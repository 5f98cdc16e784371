//! Writing a term in the external format piece by piece, straight into a
//! buffer, with no [`Term`] built first: for a large reply
//! made from the node's own state (a scope's whole state, [`Encoded`]),
//! where building the term tree, measuring it and dropping it cost more
//! than writing its bytes.
//!
//! Every function appends one term (or a compound's header) without the
//! 131 version byte, in the forms OTP 25's `term_to_binary` writes: small
//! integers as `SMALL_INTEGER_EXT`, atoms as `SMALL_ATOM_UTF8_EXT`, a list
//! of bytes as `STRING_EXT`.

use super::{Limits, Term, TermError, VERSION};

use tag::*;

/// The tags of the external term format that this crate writes (and the
/// atom cache reference it writes in messages), named once for every
/// writer (this module, `dist::control`).
pub(crate) mod tag {
    pub(crate) const NEW_FLOAT: u8 = 70;
    pub(crate) const BIT_BINARY: u8 = 77;
    pub(crate) const ATOM_CACHE_REF: u8 = 82;
    pub(crate) const NEW_PID: u8 = 88;
    pub(crate) const NEW_PORT: u8 = 89;
    pub(crate) const NEWER_REFERENCE: u8 = 90;
    pub(crate) const SMALL_INTEGER: u8 = 97;
    pub(crate) const INTEGER: u8 = 98;
    pub(crate) const SMALL_TUPLE: u8 = 104;
    pub(crate) const LARGE_TUPLE: u8 = 105;
    pub(crate) const NIL: u8 = 106;
    pub(crate) const STRING: u8 = 107;
    pub(crate) const LIST: u8 = 108;
    pub(crate) const BINARY: u8 = 109;
    pub(crate) const SMALL_BIG: u8 = 110;
    pub(crate) const MAP: u8 = 116;
    pub(crate) const ATOM_UTF8: u8 = 118;
    pub(crate) const SMALL_ATOM_UTF8: u8 = 119;
    pub(crate) const V4_PORT: u8 = 120;
}

/// One term in the external format, without its 131 version byte, as the
/// functions of this module (or [`Encoded::of_term`]) wrote it: a message
/// that goes to a peer as these bytes, not built as a [`Term`] first
/// ([`Process::send_encoded`](crate::process::Process::send_encoded)).
#[derive(Clone, PartialEq, Eq)]
pub struct Encoded {
    bytes: Vec<u8>,
}

impl Encoded {
    /// The bytes of `term`.
    pub fn of_term(term: &Term) -> Result<Encoded, TermError> {
        let mut bytes = Vec::new();
        crate::dist::control::put_term(&mut bytes, term)?;
        Ok(Encoded { bytes })
    }

    /// Bytes this crate wrote with this module's functions: one whole term.
    pub(crate) fn written(bytes: Vec<u8>) -> Encoded {
        Encoded { bytes }
    }

    /// The term's bytes (no version byte).
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The memory the bytes hold (their buffer's capacity).
    pub fn memory(&self) -> usize {
        self.bytes.capacity()
    }

    /// The term's bytes (no version byte), taken out.
    pub fn into_bytes(self) -> Vec<u8> {
        self.bytes
    }

    /// The term these bytes hold, read as a term from a peer is read
    /// (`limits` bound it).
    pub fn decode(&self, limits: Limits) -> Result<Term, TermError> {
        let mut versioned = Vec::with_capacity(self.bytes.len() + 1);
        versioned.push(VERSION);
        versioned.extend_from_slice(&self.bytes);
        super::decode(&versioned, limits)
    }

    /// The tuple `{head, self}`, as bytes: a gen_server reply, `{Tag,
    /// Reply}`, or a tagged message.
    pub fn tagged(self, head: &Term) -> Result<Encoded, TermError> {
        let mut bytes = Encoded::pair_head(head, self.bytes.len())?;
        bytes.extend_from_slice(&self.bytes);
        Ok(Encoded { bytes })
    }

    /// The first bytes of the tuple `{head, Term}`: its header and `head`,
    /// with room for `capacity` bytes more. Writing one whole term after
    /// them makes the pair ([`Encoded::written`]), with no copy of that
    /// term as [`Encoded::tagged`] makes.
    pub(crate) fn pair_head(head: &Term, capacity: usize) -> Result<Vec<u8>, TermError> {
        let mut bytes = Vec::with_capacity(capacity.saturating_add(64));
        tuple(&mut bytes, 2);
        crate::dist::control::put_term(&mut bytes, head)?;
        Ok(bytes)
    }
}

impl std::fmt::Debug for Encoded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Encoded({} bytes)", self.bytes.len())
    }
}

/// The header of a tuple of `arity` elements (the elements follow).
pub fn tuple(out: &mut Vec<u8>, arity: usize) {
    match u8::try_from(arity) {
        Ok(n) => out.extend_from_slice(&[SMALL_TUPLE, n]),
        Err(_) => {
            out.push(LARGE_TUPLE);
            out.extend_from_slice(&length(arity).to_be_bytes());
        }
    }
}

/// `[]`.
pub fn nil(out: &mut Vec<u8>) {
    out.push(NIL);
}

/// The header of a proper list of `len` elements (at least one): the
/// elements follow, then the tail ([`nil`]).
pub fn list(out: &mut Vec<u8>, len: usize) {
    out.push(LIST);
    out.extend_from_slice(&length(len).to_be_bytes());
}

/// The header of a map of `pairs` pairs (each key, then its value,
/// follows).
pub fn map(out: &mut Vec<u8>, pairs: usize) {
    out.push(MAP);
    out.extend_from_slice(&length(pairs).to_be_bytes());
}

/// A non-negative integer: `SMALL_INTEGER_EXT`, `INTEGER_EXT`, or
/// `SMALL_BIG_EXT` past 2^31 - 1.
pub fn uint(out: &mut Vec<u8>, n: u64) {
    if n < 256 {
        out.extend_from_slice(&[SMALL_INTEGER, n as u8]);
    } else if n <= i32::MAX as u64 {
        out.push(INTEGER);
        out.extend_from_slice(&(n as u32).to_be_bytes());
    } else {
        let le = n.to_le_bytes();
        let digits = 8 - (n.leading_zeros() / 8) as usize;
        out.extend_from_slice(&[SMALL_BIG, digits as u8, 0]);
        out.extend_from_slice(&le[..digits]);
    }
}

/// An atom, as UTF-8. Atoms here are names the node read or made (at
/// most 255 characters); a longer text is cut at 65,535 bytes, on a
/// character boundary, the most `ATOM_UTF8_EXT` holds.
pub fn atom(out: &mut Vec<u8>, name: &str) {
    let mut end = name.len().min(u16::MAX as usize);
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    let name = &name.as_bytes()[..end];
    match u8::try_from(name.len()) {
        Ok(n) => out.extend_from_slice(&[SMALL_ATOM_UTF8, n]),
        Err(_) => {
            out.push(ATOM_UTF8);
            out.extend_from_slice(&(name.len() as u16).to_be_bytes());
        }
    }
    out.extend_from_slice(name);
}

/// A pid (`NEW_PID_EXT`).
pub fn pid(out: &mut Vec<u8>, node: &str, id: u32, serial: u32, creation: u32) {
    out.push(NEW_PID);
    atom(out, node);
    for n in [id, serial, creation] {
        out.extend_from_slice(&n.to_be_bytes());
    }
}

/// The list of `text`'s code points (an Erlang string): `[]` when empty,
/// a `STRING_EXT` when every code point is below 256 (and there are at
/// most 65,535), else a list of integers.
pub fn charlist(out: &mut Vec<u8>, text: &str) {
    if text.is_empty() {
        return nil(out);
    }
    if text.is_ascii() && text.len() <= u16::MAX as usize {
        out.push(STRING);
        out.extend_from_slice(&(text.len() as u16).to_be_bytes());
        out.extend_from_slice(text.as_bytes());
        return;
    }
    let count = text.chars().count();
    if count <= u16::MAX as usize && text.chars().all(|c| (c as u32) < 256) {
        out.push(STRING);
        out.extend_from_slice(&(count as u16).to_be_bytes());
        out.extend(text.chars().map(|c| c as u8));
        return;
    }
    out.push(LIST);
    out.extend_from_slice(&length(count).to_be_bytes());
    for c in text.chars() {
        uint(out, c as u64);
    }
    nil(out);
}

/// A proper list of what `each` writes for each item of `items`: `[]`
/// when there is none. The length is put in after the items.
pub fn list_of<T>(
    out: &mut Vec<u8>,
    items: impl IntoIterator<Item = T>,
    mut each: impl FnMut(&mut Vec<u8>, T),
) {
    let start = out.len();
    out.extend_from_slice(&[LIST, 0, 0, 0, 0]);
    let mut n = 0usize;
    for item in items {
        each(out, item);
        n += 1;
    }
    if n == 0 {
        out.truncate(start);
    } else {
        out[start + 1..start + 5].copy_from_slice(&length(n).to_be_bytes());
    }
    nil(out);
}

/// A compound's length as its header holds it (4 bytes). More than 2^32 -
/// 1 elements cannot be in memory here (each takes bytes of its own), so
/// this saturates rather than fails.
fn length(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::term;

    fn read(bytes: Vec<u8>) -> Term {
        Encoded::written(bytes).decode(Limits::default()).unwrap()
    }

    fn written(f: impl FnOnce(&mut Vec<u8>)) -> Term {
        let mut out = Vec::new();
        f(&mut out);
        read(out)
    }

    #[test]
    fn each_piece_reads_back_as_the_term_it_writes() {
        for n in [0u64, 255, 256, 70_000, i32::MAX as u64, 1 << 31, u64::MAX] {
            let t = written(|o| uint(o, n));
            assert_eq!(t, term::uint(n), "{n}");
        }
        assert_eq!(written(|o| atom(o, "cpg_data")), term::atom("cpg_data"));
        let long = "é".repeat(200);
        assert_eq!(written(|o| atom(o, &long)), term::atom(&long));
        for s in ["", "abc", "aé", "a€b", &"x".repeat(70_000)] {
            let t = written(|o| charlist(o, s));
            assert_eq!(term::charlist_to_string(&t).unwrap(), s);
        }
        let p = written(|o| pid(o, "n@h", 1, 2, 3));
        assert_eq!(p, Term::Pid(term::Pid::new("n@h", 1, 2, 3)));
        let l = written(|o| list_of(o, [1u64, 300], uint));
        assert_eq!(l, term::list(vec![term::int(1), term::int(300)]));
        assert_eq!(
            written(|o| list_of(o, Vec::<u64>::new(), uint)),
            term::nil()
        );
        let t = written(|o| {
            tuple(o, 300);
            (0..300).for_each(|_| nil(o));
        });
        assert_eq!(t, term::tuple(vec![term::nil(); 300]));
    }

    #[test]
    fn a_tagged_term_is_a_pair() {
        let e = Encoded::of_term(&term::atom("x")).unwrap();
        let t = e.tagged(&term::int(7)).unwrap();
        assert_eq!(
            t.decode(Limits::default()).unwrap(),
            term::tuple(vec![term::int(7), term::atom("x")])
        );
    }
}
