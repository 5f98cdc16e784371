//! The one import path for Erlang terms, plus the guard that makes decoding
//! them from the network safe.
//!
//! All term types come from `erl_dist::term` (which re-exports `eetf` 0.11),
//! so the crate has exactly one `Term` type (`cargo tree -d` shows no second
//! `eetf`).
//!
//! # Decoding untrusted bytes
//!
//! `eetf` 0.11 trusts its input: it calls `unimplemented!()` on the atom
//! cache and distribution-header tags, sizes vectors from 32-bit counts read
//! off the wire before reading the elements (a 6-byte list header can ask for
//! gigabytes), and recurses once per nesting level. So terms from the
//! network are decoded by our own decoder ([`decode()`], [`mod@decode`]),
//! which checks and builds in one pass and accepts exactly what [`validate`]
//! followed by `eetf` accepted ([`decode_two_pass`], kept as the reference
//! for tests and fuzzing). `eetf` still encodes.
//!
//! # Nesting depth
//!
//! BEAM decodes iteratively and accepts any depth (`binary_to_term` of a
//! tuple nested 10,000,000 deep works on OTP 25). `eetf`, and the derived
//! `Drop`, `Clone`, `PartialEq`, `Debug` and `Display` of its `Term`, recurse
//! once per level. Measured on a 2 MiB thread (a tokio worker's stack), dev
//! profile, nested 1-tuples or 1-lists: `Term::decode` overflows past ~1,850
//! levels, `Debug` past ~3,600, `Clone`/`==` past ~5,100, `encode` past
//! ~8,700, `Display` past ~10,800, `Drop` past ~32,000. So:
//!
//! * [`decode()`] (and `dist::control::decode_terms`) grow the stack as they
//!   go deeper (checked every 64 levels): decoding never overflows, whatever
//!   [`Limits::max_depth`] is set to;
//! * [`Limits::max_depth`] defaults to 2,000, where every other recursive
//!   operation on the decoded term still fits a 2 MiB worker stack with room
//!   to spare. A message nested deeper is dropped (see `dist::connection`),
//!   not the connection. Raise it only if the code receiving such terms runs
//!   on larger stacks.

pub(crate) mod canonical;
pub mod decode;
pub mod parse;
pub mod show;
pub mod write;

pub use erl_dist::term::{
    Atom, BigInteger, Binary, BitBinary, ExternalFun, FixInteger, Float, ImproperList, InternalFun,
    List, Map, Pid, PidOrAtom, Port, Reference, Term, Tuple,
};
pub use show::{show, show_max, Show};
pub use write::Encoded;

/// Version byte that starts every external term.
pub const VERSION: u8 = 131;

/// The largest integer accepted, in bytes: what BEAM's `binary_to_term`
/// and distribution take (`BIG_ARITY_MAX` 64-bit words, 2^19 - 1; OTP 25
/// refuses 4,194,297 bytes with `badarg`, and its arithmetic stops at
/// 2^33,554,368 with `system_limit`). A larger one is refused
/// ([`TermError::IntegerTooLarge`]) before anything is built from it.
pub const MAX_INTEGER_BYTES: usize = 4_194_296;

/// The most id words a reference has in the external format that BEAM
/// takes (`ERTS_MAX_REF_NUMBERS`; OTP 25 refuses 6 with `badarg`). A
/// longer one is refused ([`TermError::ReferenceTooLong`]), as it would
/// be by a BEAM node this one passed it on to.
pub const MAX_REFERENCE_WORDS: usize = 5;

/// Refuses the text `bytes` of the atom at `pos` past
/// [`crate::atom::MAX_ATOM_CHARS`] characters ([`TermError::AtomTooLong`]),
/// as BEAM refuses it: tag 100 (`ATOM_EXT`) is Latin-1, a byte a
/// character, the others UTF-8 not yet checked. Counted only past 255
/// bytes, which is all a length of one byte allows. Both decoders' rule.
pub(crate) fn check_atom_length(tag: u8, bytes: &[u8], pos: usize) -> Result<(), TermError> {
    if bytes.len() <= crate::atom::MAX_ATOM_CHARS {
        return Ok(());
    }
    let chars = match tag {
        100 => bytes.len(),
        // (UTF-8: every byte but a continuation byte starts a character.)
        _ => bytes.iter().filter(|&&b| b & 0xc0 != 0x80).count(),
    };
    match chars > crate::atom::MAX_ATOM_CHARS {
        true => Err(TermError::AtomTooLong { chars, pos }),
        false => Ok(()),
    }
}

/// Limits the validator enforces on terms from the network.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Deepest nesting of tuples, lists, maps and funs accepted (see the
    /// module documentation for why 2,000 by default).
    pub max_depth: usize,
    /// The most memory one term may take once decoded, counted as it is
    /// read, before what it counts is allocated: every element of a
    /// tuple, list or map as its [`Term`] ([`decode::ELEMENT_COST`], 56
    /// bytes; the vector of a container is sized once, from its count),
    /// the bytes of every binary, string, integer and atom text. A term
    /// past it is refused ([`TermError::TooLargeDecoded`]); on a
    /// connection, that message is dropped and the connection stays.
    /// Bytes on the wire cost more decoded (an element of a list of `[]`s
    /// is one byte on the wire, a cached atom's reference two): without
    /// it, four million `[]`s, 4 MB, took 463 MB here (BEAM's list cells
    /// take 16 bytes an element). It bounds one message: as many can be
    /// decoded at once as the runtime has worker threads.
    pub max_memory: usize,
}

/// The default [`Limits::max_depth`].
pub const DEFAULT_MAX_DEPTH: usize = 2_000;

/// The default [`Limits::max_memory`]: 512 MiB (9.6 million elements).
pub const DEFAULT_MAX_MEMORY: usize = 512 << 20;

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_depth: DEFAULT_MAX_DEPTH,
            max_memory: DEFAULT_MAX_MEMORY,
        }
    }
}

/// Runs `f`, which recurses over a term nested `depth` deep, on a stack
/// with room for it: in place when the current stack has that room, else on
/// a freshly allocated segment (the `stacker` crate). The estimate is
/// generous (measured `eetf` decoding: about 1.1 KiB a level).
pub fn with_stack_for<R>(depth: usize, f: impl FnOnce() -> R) -> R {
    const PER_LEVEL: usize = 2 * 1024;
    const BASE: usize = 256 * 1024;
    let need = depth.saturating_mul(PER_LEVEL).saturating_add(BASE);
    stacker::maybe_grow(need, need.saturating_add(BASE), f)
}

/// Why bytes from the network were not accepted as a term.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TermError {
    /// The input ended inside a term.
    #[error("term truncated at byte {0}")]
    Truncated(usize),
    /// The term did not start with the version byte 131.
    #[error("bad external term version byte {0}")]
    BadVersion(u8),
    /// A tag this node does not accept (atom cache refs, distribution
    /// headers, compressed terms, obsolete fun encodings, unknown tags).
    #[error("unsupported term tag {tag} at byte {pos}")]
    UnsupportedTag {
        /// The tag byte.
        tag: u8,
        /// Where it was.
        pos: usize,
    },
    /// A pid, port or reference whose node is not an atom.
    #[error("expected an atom at byte {0}")]
    ExpectedAtom(usize),
    /// An `ATOM_CACHE_REF` to an entry the message's distribution header
    /// does not list.
    #[error("atom cache reference {index} at byte {pos} is not in the header")]
    AtomCacheRef {
        /// The reference's index.
        index: u8,
        /// Where it was.
        pos: usize,
    },
    /// Nested deeper than [`Limits::max_depth`].
    #[error("term nested deeper than {0}")]
    TooDeep(usize),
    /// An integer of more than [`MAX_INTEGER_BYTES`] bytes, which BEAM
    /// refuses too.
    #[error("integer of {bytes} bytes at byte {pos}: over the 4194296 bytes BEAM takes")]
    IntegerTooLarge {
        /// Its size (LARGE_BIG_EXT's count).
        bytes: usize,
        /// Where it was.
        pos: usize,
    },
    /// An atom (or a pid's, port's or reference's node) of more than
    /// [`crate::atom::MAX_ATOM_CHARS`] characters: BEAM refuses it
    /// (`badarg`; on a connection, it closes it), so this node neither
    /// takes one nor passes it on to a BEAM node that would drop the
    /// connection for it.
    #[error("atom of {chars} characters at byte {pos}: over the 255 BEAM takes")]
    AtomTooLong {
        /// Its length in characters.
        chars: usize,
        /// Where it was.
        pos: usize,
    },
    /// A reference of more than [`MAX_REFERENCE_WORDS`] id words, which
    /// BEAM refuses too.
    #[error("reference of {words} words at byte {pos}: over the 5 BEAM takes")]
    ReferenceTooLong {
        /// Its id words.
        words: usize,
        /// Where it was.
        pos: usize,
    },
    /// A term that would take more than [`Limits::max_memory`] bytes once
    /// decoded.
    #[error("term of more than {0} bytes decoded: over the node's bound")]
    TooLargeDecoded(usize),
    /// Well-formed bytes holding what `eetf` refuses too (bad UTF-8 in an
    /// atom, a non-finite float, and the like).
    #[error("term decode: {0}")]
    Decode(String),
    /// A term that cannot be written in the external format (an atom over
    /// 65,535 bytes, more than 2^32 - 1 elements).
    #[error("term encode: {0}")]
    Encode(String),
}

struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl Cursor<'_> {
    fn need(&mut self, n: usize) -> Result<usize, TermError> {
        let start = self.pos;
        match self.pos.checked_add(n) {
            Some(end) if end <= self.buf.len() => {
                self.pos = end;
                Ok(start)
            }
            _ => Err(TermError::Truncated(self.buf.len())),
        }
    }
    fn u8(&mut self) -> Result<u8, TermError> {
        let at = self.need(1)?;
        Ok(self.buf[at])
    }
    fn u16(&mut self) -> Result<usize, TermError> {
        let at = self.need(2)?;
        Ok(u16::from_be_bytes([self.buf[at], self.buf[at + 1]]) as usize)
    }
    fn u32(&mut self) -> Result<usize, TermError> {
        let at = self.need(4)?;
        let b = &self.buf[at..at + 4];
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize)
    }
    fn atom(&mut self) -> Result<(), TermError> {
        let at = self.pos;
        match self.u8()? {
            tag @ (100 | 118) => {
                let n = self.u16()?;
                let from = self.need(n)?;
                check_atom_length(tag, &self.buf[from..from + n], at)?;
            }
            115 | 119 => {
                let n = self.u8()? as usize;
                self.need(n)?;
            }
            _ => return Err(TermError::ExpectedAtom(at)),
        }
        Ok(())
    }
}

/// Checks that `buf[start..]` begins with one complete term body (the bytes
/// after the 131 version byte) that `eetf` can decode safely, and returns the
/// offset just past it. Iterative: no recursion, no allocation but a small
/// stack of pending counts.
pub fn validate_body(buf: &[u8], start: usize, limits: Limits) -> Result<usize, TermError> {
    validate_body_depth(buf, start, limits).map(|(end, _)| end)
}

/// [`validate_body`], also returning how deep the term nests (0 for a
/// term without elements).
pub fn validate_body_depth(
    buf: &[u8],
    start: usize,
    limits: Limits,
) -> Result<(usize, usize), TermError> {
    let mut c = Cursor { buf, pos: start };
    let mut deepest = 0;
    // Terms still to read at each nesting level.
    let mut pending: Vec<usize> = Vec::with_capacity(8);
    pending.push(1);
    while let Some(top) = pending.last_mut() {
        if *top == 0 {
            pending.pop();
            continue;
        }
        *top -= 1;
        let at = c.pos;
        let tag = c.u8()?;
        let children = match tag {
            70 => c.need(8).map(|_| 0)?,  // NEW_FLOAT_EXT
            97 => c.need(1).map(|_| 0)?,  // SMALL_INTEGER_EXT
            98 => c.need(4).map(|_| 0)?,  // INTEGER_EXT
            99 => c.need(31).map(|_| 0)?, // FLOAT_EXT
            106 => 0,                     // NIL_EXT
            100 | 115 | 118 | 119 => {
                c.pos = at;
                c.atom()?;
                0
            }
            77 => {
                // BIT_BINARY_EXT: eetf shifts by (8 - bits), so bits must be
                // 1..=8 (as the format requires) and the binary non-empty.
                let n = c.u32()?;
                let bits = c.u8()?;
                if n == 0 || bits == 0 || bits > 8 {
                    return Err(TermError::UnsupportedTag { tag, pos: at });
                }
                c.need(n)?;
                0
            }
            109 => {
                let n = c.u32()?;
                c.need(n)?;
                0
            }
            107 => {
                let n = c.u16()?;
                c.need(n)?;
                0
            }
            110 => {
                let n = c.u8()? as usize;
                c.need(1 + n)?;
                0
            }
            111 => {
                let n = c.u32()?;
                if n > MAX_INTEGER_BYTES {
                    return Err(TermError::IntegerTooLarge { bytes: n, pos: at });
                }
                c.need(1 + n)?;
                0
            }
            101 => {
                // REFERENCE_EXT
                c.atom()?;
                c.need(5)?;
                0
            }
            114 | 90 => {
                // NEW_REFERENCE_EXT / NEWER_REFERENCE_EXT
                let n = c.u16()?;
                if n > MAX_REFERENCE_WORDS {
                    return Err(TermError::ReferenceTooLong { words: n, pos: at });
                }
                c.atom()?;
                c.need(if tag == 114 { 1 } else { 4 })?;
                c.need(n.checked_mul(4).ok_or(TermError::Truncated(buf.len()))?)?;
                0
            }
            102 => {
                c.atom()?;
                c.need(5)?;
                0
            }
            89 => {
                c.atom()?;
                c.need(8)?;
                0
            }
            120 => {
                c.atom()?;
                c.need(12)?;
                0
            }
            103 => {
                c.atom()?;
                c.need(9)?;
                0
            }
            88 => {
                c.atom()?;
                c.need(12)?;
                0
            }
            104 => c.u8()? as usize,
            105 => c.u32()?,
            108 => c.u32()?.saturating_add(1),
            116 => c.u32()?.saturating_mul(2),
            113 => 3, // EXPORT_EXT: module, function, arity
            112 => {
                // NEW_FUN_EXT: size, arity, uniq, index, numfree, then
                // module, old index, old uniq, pid and the free variables.
                let size = c.u32()?;
                if size < 4 || at + 1 + size > buf.len() {
                    return Err(TermError::Truncated(buf.len()));
                }
                c.need(1 + 16 + 4)?;
                let numfree = c.u32()?;
                numfree.saturating_add(4)
            }
            _ => return Err(TermError::UnsupportedTag { tag, pos: at }),
        };
        if children > 0 {
            // Every child takes at least one byte: refuse counts the input
            // cannot hold before anything is sized from them.
            if children > buf.len() - c.pos {
                return Err(TermError::Truncated(buf.len()));
            }
            if pending.len() > limits.max_depth {
                return Err(TermError::TooDeep(limits.max_depth));
            }
            pending.push(children);
            deepest = deepest.max(pending.len() - 1);
        }
    }
    Ok((c.pos, deepest))
}

/// Validates a whole external term (with its 131 byte) at `buf[start..]`
/// and returns the offset just past it.
pub fn validate(buf: &[u8], start: usize, limits: Limits) -> Result<usize, TermError> {
    validate_depth(buf, start, limits).map(|(end, _)| end)
}

/// [`validate`], also returning how deep the term nests.
pub fn validate_depth(
    buf: &[u8],
    start: usize,
    limits: Limits,
) -> Result<(usize, usize), TermError> {
    match buf.get(start) {
        Some(&VERSION) => validate_body_depth(buf, start + 1, limits),
        Some(&v) => Err(TermError::BadVersion(v)),
        None => Err(TermError::Truncated(buf.len())),
    }
}

/// Decodes one external term (with its 131 byte) from untrusted bytes, in
/// one pass ([`mod@decode`]). Bytes after the term are ignored.
pub fn decode(buf: &[u8], limits: Limits) -> Result<Term, TermError> {
    decode::decode_versioned(buf, 0, limits)?.term
}

/// What [`decode()`] did before it had its own decoder: [`validate`], then
/// `eetf` on a stack grown for the depth measured. The reference the
/// differential tests and the fuzz target hold [`decode()`] to; not used to
/// read the network.
pub fn decode_two_pass(buf: &[u8], limits: Limits) -> Result<Term, TermError> {
    let (end, depth) = validate_depth(buf, 0, limits)?;
    with_stack_for(depth, || Term::decode(&buf[..end]))
        .map_err(|e| TermError::Decode(e.to_string()))
}

/// Encodes a term with its 131 byte into `out` (nothing appended on error),
/// as the node writes terms to its peers (`dist::control::put_term`), not
/// with eetf 0.11's encoder, which writes a list of integers below 256 as a
/// string, negative ones wrapped into bytes (`[-1]` as `[255]`).
pub fn encode_into(term: &Term, out: &mut Vec<u8>) -> Result<(), TermError> {
    let start = out.len();
    out.push(VERSION);
    crate::dist::control::put_term(out, term).map_err(|e| {
        out.truncate(start);
        e.into()
    })
}

/// About the heap memory `t` holds beyond its own `Term` slot: the slots of
/// its elements and every buffer below. A term in memory can take many
/// times its encoding (a character above 255 is a 2-byte integer on the
/// wire and a whole `Term` here), so what bounds the memory of terms
/// waiting somewhere (a peer's send queue) counts this, not their bytes on
/// the wire. One walk of the term, no allocation.
pub fn heap_size(t: &Term) -> usize {
    const SLOT: usize = std::mem::size_of::<Term>();
    let slots = elements_heap_size;
    match t {
        Term::Atom(a) => a.name.capacity(),
        Term::FixInteger(_) | Term::Float(_) => 0,
        Term::Pid(p) => p.node.name.capacity(),
        Term::Port(p) => p.node.name.capacity(),
        Term::Reference(r) => r.node.name.capacity() + 4 * r.id.capacity(),
        Term::Binary(b) => b.bytes.capacity(),
        Term::BitBinary(b) => b.bytes.capacity(),
        Term::ByteList(b) => b.bytes.capacity(),
        Term::Tuple(t) => slots(&t.elements),
        Term::List(l) => slots(&l.elements),
        Term::ImproperList(l) => slots(&l.elements) + SLOT + heap_size(&l.last),
        Term::Map(m) => {
            // Each entry two slots and the table's control byte and slack.
            m.map.capacity() * (2 * SLOT + 8)
                + m.map
                    .iter()
                    .map(|(k, v)| heap_size(k) + heap_size(v))
                    .sum::<usize>()
        }
        // Rare: their encoding, a fair measure of their digits and fields.
        Term::BigInteger(_) | Term::ExternalFun(_) | Term::InternalFun(_) => {
            crate::dist::control::term_size(t)
        }
    }
}

/// [`heap_size`] of a tuple's or a list's elements: their slots (the
/// vector's capacity) and what each holds.
pub fn elements_heap_size(elements: &Vec<Term>) -> usize {
    elements.capacity() * std::mem::size_of::<Term>()
        + elements.iter().map(heap_size).sum::<usize>()
}

// ---------------------------------------------------------------------------
// Builders and matchers.

/// An atom term.
pub fn atom(name: &str) -> Term {
    Term::Atom(Atom::from(name))
}

/// A tuple term.
pub fn tuple(elements: Vec<Term>) -> Term {
    Term::Tuple(Tuple::from(elements))
}

/// A proper list term.
pub fn list(elements: Vec<Term>) -> Term {
    Term::List(List::from(elements))
}

/// The empty list.
pub fn nil() -> Term {
    Term::List(List::nil())
}

/// A small integer term.
pub fn int(v: i32) -> Term {
    Term::FixInteger(FixInteger::from(v))
}

/// A non-negative integer term: a small integer when it fits, else a
/// bignum (Erlang sees the same integer either way).
pub fn uint(v: u64) -> Term {
    match i32::try_from(v) {
        Ok(i) => int(i),
        Err(_) => Term::BigInteger(BigInteger::from(v)),
    }
}

/// A map term from its pairs.
pub fn map(pairs: Vec<(Term, Term)>) -> Term {
    Term::Map(Map::from(
        pairs
            .into_iter()
            .collect::<std::collections::HashMap<_, _>>(),
    ))
}

/// A binary term.
pub fn binary(bytes: Vec<u8>) -> Term {
    Term::Binary(Binary::from(bytes))
}

/// The name of an atom term.
pub fn as_atom(t: &Term) -> Option<&str> {
    match t {
        Term::Atom(a) => Some(a.name.as_str()),
        _ => None,
    }
}

/// The elements of a tuple term.
pub fn as_tuple(t: &Term) -> Option<&[Term]> {
    match t {
        Term::Tuple(x) => Some(&x.elements),
        _ => None,
    }
}

/// A pid term.
pub fn as_pid(t: &Term) -> Option<&Pid> {
    match t {
        Term::Pid(p) => Some(p),
        _ => None,
    }
}

/// A small integer term.
pub fn as_int(t: &Term) -> Option<i64> {
    match t {
        Term::FixInteger(i) => Some(i64::from(i.value)),
        Term::BigInteger(b) => i64::try_from(&b.value).ok(),
        _ => None,
    }
}

/// The elements of a proper list (`[]` included); `None` for other terms.
/// A STRING_EXT list is not returned here; see [`charlist_to_string`].
pub fn as_list(t: &Term) -> Option<&[Term]> {
    match t {
        Term::List(l) => Some(&l.elements),
        _ => None,
    }
}

/// The elements of any proper list, whatever its encoding: [`as_list`]'s,
/// or, for a list BEAM wrote as STRING_EXT (every element an integer
/// 0..=255: `[42]`, `[1,2]`, `"abc"`), its bytes as integers. A list of
/// arbitrary terms from BEAM (pg's groups in a leave) must be read so:
/// with [`as_list`] alone, `[42]` is no list.
pub fn list_elements(t: &Term) -> Option<std::borrow::Cow<'_, [Term]>> {
    match t {
        Term::List(l) => Some(std::borrow::Cow::Borrowed(&l.elements)),
        Term::ByteList(b) => Some(std::borrow::Cow::Owned(
            b.bytes
                .iter()
                .map(|&c| Term::from(FixInteger::from(i32::from(c))))
                .collect(),
        )),
        _ => None,
    }
}

/// Why a term is not an Erlang string that maps to a Rust `String`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StringError {
    /// Not a list of integers.
    #[error("not a string (a list of character codes)")]
    NotAString,
    /// An integer that is not a Unicode scalar value (a surrogate, or above
    /// 0x10FFFF): no Rust `String` holds it.
    #[error("character code {0} is not a Unicode scalar value")]
    BadCodePoint(i64),
}

/// Converts an Erlang string (STRING_EXT bytes, a LIST_EXT of code points,
/// or `[]`) into a Rust `String`, without loss.
pub fn charlist_to_string(t: &Term) -> Result<String, StringError> {
    match t {
        Term::ByteList(b) => Ok(b.bytes.iter().map(|&c| char::from(c)).collect()),
        Term::List(l) => {
            let mut s = String::with_capacity(l.elements.len());
            for e in &l.elements {
                let v = match e {
                    Term::FixInteger(i) => i64::from(i.value),
                    _ => return Err(StringError::NotAString),
                };
                let c = u32::try_from(v)
                    .ok()
                    .and_then(char::from_u32)
                    .ok_or(StringError::BadCodePoint(v))?;
                s.push(c);
            }
            Ok(s)
        }
        _ => Err(StringError::NotAString),
    }
}

/// Converts a Rust string into the Erlang string BEAM itself would send:
/// `[]` when empty, STRING_EXT when every char is below 256 and it fits,
/// else a LIST_EXT of code points.
pub fn string_to_charlist(s: &str) -> Term {
    if s.is_empty() {
        return nil();
    }
    let latin1 = s.chars().all(|c| (c as u32) < 256);
    let n = s.chars().count();
    if latin1 && n <= usize::from(u16::MAX) {
        let bytes: Vec<u8> = s.chars().map(|c| c as u32 as u8).collect();
        Term::ByteList(bytes.into())
    } else {
        list(s.chars().map(|c| int(c as i32)).collect())
    }
}

/// Whether some map in `t` has a key that is or holds a map. `eetf`
/// hashes a map in its (random) iteration order, so equal maps as keys
/// may or may not be found equal: decoding such a map (with keys BEAM
/// would find equal) keeps one or both of them by chance, and `==` on
/// such terms is unreliable.
pub fn keyed_by_map(t: &Term) -> bool {
    fn holds_map(t: &Term) -> bool {
        match t {
            Term::Map(_) => true,
            Term::Tuple(x) => x.elements.iter().any(holds_map),
            Term::List(x) => x.elements.iter().any(holds_map),
            Term::ImproperList(x) => x.elements.iter().any(holds_map) || holds_map(&x.last),
            Term::InternalFun(f) => fun_free_vars(f).iter().any(holds_map),
            _ => false,
        }
    }
    match t {
        Term::Map(m) => m
            .map
            .iter()
            .any(|(k, v)| holds_map(k) || keyed_by_map(k) || keyed_by_map(v)),
        Term::Tuple(x) => x.elements.iter().any(keyed_by_map),
        Term::List(x) => x.elements.iter().any(keyed_by_map),
        Term::ImproperList(x) => x.elements.iter().any(keyed_by_map) || keyed_by_map(&x.last),
        Term::InternalFun(f) => fun_free_vars(f).iter().any(keyed_by_map),
        _ => false,
    }
}

fn fun_free_vars(f: &InternalFun) -> &[Term] {
    match f {
        InternalFun::New { free_vars, .. } | InternalFun::Old { free_vars, .. } => free_vars,
    }
}

/// Formats a pid as Erlang prints it on another node: `<node.id.serial>`
/// with the node name spelled out.
pub fn pid_text(p: &Pid) -> String {
    format!("<{}.{}.{}>", p.node.name, p.id, p.serial)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enc(t: &Term) -> Vec<u8> {
        let mut v = Vec::new();
        encode_into(t, &mut v).unwrap();
        v
    }

    #[test]
    fn round_trip_through_validator() {
        let t = tuple(vec![
            atom("join"),
            string_to_charlist("grüppe"),
            Term::Pid(Pid::new("a@h", 1, 2, 3)),
            list(vec![int(1), binary(vec![1, 2, 3])]),
        ]);
        let b = enc(&t);
        assert_eq!(validate(&b, 0, Limits::default()), Ok(b.len()));
        assert_eq!(decode(&b, Limits::default()).unwrap(), t);
    }

    #[test]
    fn negative_integers_in_a_list_keep_their_value() {
        // Found by fuzzing (fuzz/regressions/term-negative-integers-in-a-
        // list-encoded): eetf's encoder wrote [1, -5, -1469094806] as the
        // string [1, 251, 106].
        let bytes = std::fs::read(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("fuzz/regressions/term-negative-integers-in-a-list-encoded"),
        )
        .unwrap();
        let t = decode(&bytes, Limits::default()).unwrap();
        assert_eq!(t, list(vec![int(1), int(-5), int(-1469094806)]));
        assert_eq!(decode(&enc(&t), Limits::default()).unwrap(), t);
        for t in [list(vec![int(-1)]), list(vec![int(255), int(-300)])] {
            assert_eq!(decode(&enc(&t), Limits::default()).unwrap(), t);
        }
        // a list of bytes is still a string, as BEAM writes it
        assert_eq!(enc(&list(vec![int(1), int(255)])), [131, 107, 0, 2, 1, 255]);
        // nothing appended for a term that cannot be written
        let mut out = vec![7];
        let long = atom(&"a".repeat(70_000));
        assert!(matches!(
            encode_into(&long, &mut out),
            Err(TermError::Encode(_))
        ));
        assert_eq!(out, [7]);
    }

    #[test]
    fn refuses_what_eetf_would_panic_on() {
        // ATOM_CACHE_REF
        assert!(matches!(
            decode(&[131, 82, 0], Limits::default()),
            Err(TermError::UnsupportedTag { tag: 82, .. })
        ));
        // distribution header
        assert!(decode(&[131, 68, 0], Limits::default()).is_err());
        // a list that claims 4 billion elements
        assert!(matches!(
            decode(&[131, 108, 255, 255, 255, 255, 106], Limits::default()),
            Err(TermError::Truncated(_))
        ));
        // deep nesting
        let mut deep = vec![131];
        for _ in 0..10_000 {
            deep.extend_from_slice(&[104, 1]);
        }
        deep.push(106);
        assert!(matches!(
            decode(&deep, Limits::default()),
            Err(TermError::TooDeep(_))
        ));
    }

    #[test]
    fn depth_limit_is_exact_and_decoding_deep_terms_is_stack_safe() {
        let nested = |d: usize| {
            let mut b = vec![131];
            for _ in 0..d {
                b.extend_from_slice(&[108, 0, 0, 0, 1]);
            }
            b.push(106);
            b.extend(std::iter::repeat_n(106, d));
            b
        };
        let limits = Limits {
            max_depth: 10,
            ..Limits::default()
        };
        assert_eq!(validate_depth(&nested(10), 0, limits).map(|x| x.1), Ok(10));
        assert_eq!(
            validate(&nested(11), 0, limits),
            Err(TermError::TooDeep(10))
        );
        // Deeper than a fresh 2 MiB thread can decode with eetf directly
        // (~1,850 levels): decode grows the stack.
        let b = nested(DEFAULT_MAX_DEPTH);
        std::thread::Builder::new()
            .stack_size(2 << 20)
            .spawn(move || {
                let t = decode(&b, Limits::default()).unwrap();
                assert!(format!("{t:?}").len() > DEFAULT_MAX_DEPTH);
            })
            .unwrap()
            .join()
            .unwrap();
    }

    #[test]
    fn fuzz_regressions_replay() {
        // Every input ever kept from a fuzzer crash must now decode or fail
        // cleanly.
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/regressions");
        let mut n = 0;
        for e in std::fs::read_dir(&dir).expect("fuzz/regressions") {
            let data = std::fs::read(e.unwrap().path()).unwrap();
            let _ = decode(&data, Limits::default());
            let _ = crate::dist::control::decode_message(&data, Limits::default());
            n += 1;
        }
        assert!(n > 0);
    }

    #[test]
    fn maps_with_two_equal_keys_refused_as_beam_refuses_them() {
        // Each of these is `badarg` to `binary_to_term` on OTP 25 (checked
        // on a real node): keys spelled alike, and keys spelled apart that
        // are one term (a string and a list; an old and a new atom tag; a
        // small and a big integer).
        let refused: [&[u8]; 4] = [
            &[131, 116, 0, 0, 0, 2, 97, 1, 97, 1, 97, 1, 97, 2],
            &[
                131, 116, 0, 0, 0, 2, 107, 0, 2, 1, 2, 97, 1, 108, 0, 0, 0, 2, 97, 1, 97, 2, 106,
                97, 2,
            ],
            &[
                131, 116, 0, 0, 0, 2, 100, 0, 1, 97, 97, 1, 119, 1, 97, 97, 2,
            ],
            &[131, 116, 0, 0, 0, 2, 97, 0, 97, 1, 110, 1, 0, 0, 97, 2],
        ];
        for b in refused {
            assert_eq!(
                decode(b, Limits::default()),
                Err(TermError::Decode(decode::DUPLICATE_KEYS.into())),
                "{b:?}"
            );
            // and so is a message carrying one
            let mut m = vec![131, 104, 3, 97, 2, 119, 0];
            m.extend(enc(&Term::from(crate::term::Pid::new("n@h", 1, 2, 3)))[1..].iter());
            m.extend_from_slice(b);
            assert!(crate::dist::control::decode_message(&m, Limits::default()).is_err());
        }
        // Keys that differ are kept, whatever their spelling.
        let ok: &[u8] = &[
            131, 116, 0, 0, 0, 3, 107, 0, 2, 1, 2, 97, 1, 108, 0, 0, 0, 2, 97, 1, 97, 3, 106, 97,
            2, 110, 1, 0, 0, 97, 3,
        ];
        match decode(ok, Limits::default()) {
            Ok(Term::Map(m)) => assert_eq!(m.map.len(), 3),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn bit_binary_with_zero_tail_bits_refused() {
        // Found by fuzzing: eetf would shift by 8 and panic.
        assert!(decode(&[131, 77, 0, 0, 0, 1, 0, 0xff], Limits::default()).is_err());
        assert!(decode(&[131, 77, 0, 0, 0, 0, 3], Limits::default()).is_err());
        let ok = decode(&[131, 77, 0, 0, 0, 1, 3, 0xe0], Limits::default()).unwrap();
        assert!(matches!(ok, Term::BitBinary(_)));
    }

    #[test]
    fn strings_both_ways() {
        for s in ["abc", "", "a/*", "grüppe", "组/x", "\u{10FFFF}"] {
            let t = string_to_charlist(s);
            let b = enc(&t);
            let back = decode(&b, Limits::default()).unwrap();
            assert_eq!(charlist_to_string(&back).unwrap(), s);
        }
        assert_eq!(enc(&string_to_charlist("")), vec![131, 106]);
        assert_eq!(enc(&string_to_charlist("ab")), vec![131, 107, 0, 2, 97, 98]);
        let surrogate = list(vec![int(0xD800)]);
        assert_eq!(
            charlist_to_string(&surrogate),
            Err(StringError::BadCodePoint(0xD800))
        );
    }
}
