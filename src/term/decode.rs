//! Our external-term-format decoder: untrusted bytes become a [`Term`] in
//! one pass.
//!
//! # Why not `eetf`'s decoder
//!
//! `eetf` 0.11 trusts its input (it panics on the atom cache and
//! distribution-header tags, sizes vectors from unchecked wire counts and
//! recurses without bound), so every term from the network used to be
//! walked twice: once by [`super::validate`], then again by `eetf` through
//! `std::io::Read`, a few bytes per call. For a small message (`{m, 1}` to
//! a pid) that second walk was most of the receive path's decoding cost
//! (issue 11). This decoder checks and builds in the same pass, reading
//! straight from the slice.
//!
//! # Same acceptance as before
//!
//! It accepts exactly what the validator followed by `eetf` accepted, and
//! builds the same `Term` (`STRING_EXT` is a `ByteList`, a list whose tail
//! is not `[]` an `ImproperList`, `ATOM_EXT`/`SMALL_ATOM_EXT` names are read
//! as UTF-8 as `eetf` does, floats must be finite, ...). Errors come in the
//! same order as well: a structural fault (truncation, a bad tag, a count
//! larger than the bytes left, nesting over [`Limits::max_depth`]) is
//! reported wherever it is, and wins over what `eetf` would refuse in a
//! well-formed term (a non-UTF-8 atom, a bad sign byte, a fun whose module
//! is not an atom): those are remembered, the walk goes on, and they are
//! reported ([`TermError::Decode`]) only once the bytes proved well formed.
//! `decode_two_pass` (kept as the reference) and the differential tests
//! and fuzz target hold the two together.
//!
//! # Hostile input
//!
//! No count read off the wire sizes an allocation before it is checked
//! against the bytes left and counted against [`Limits::max_memory`]: a
//! tuple, list or map is then sized once from its count, so that its
//! memory is what was counted (grown by doubling, it held up to three
//! times that at a moment), and a nest of headers claiming large counts
//! is refused once the claims together pass the bound (what they reserve
//! until then is address space, not memory, until elements fill it). An
//! integer is
//! refused past [`super::MAX_INTEGER_BYTES`] (4 MiB, BEAM's own bound);
//! below it, it is built in linear time (`num-bigint`'s `from_bytes_le`
//! packs the bytes, no base conversion). Recursion is one frame
//! per nesting level, bounded by [`Limits::max_depth`], and every 64 levels
//! the stack is checked and grown if needed (`stacker`), so decoding is
//! safe on a 2 MiB worker stack whatever the limit.

use super::{
    Atom, Binary, BitBinary, Cursor, ExternalFun, FixInteger, Float, ImproperList, InternalFun,
    Limits, List, Map, Pid, Port, Reference, Term, TermError, Tuple, VERSION,
};
use std::collections::HashMap;

/// What an element of a tuple, list or map is counted against
/// [`Limits::max_memory`]: its `Term` (56 bytes; its vector is sized
/// once, from the count).
pub const ELEMENT_COST: usize = std::mem::size_of::<Term>();

/// Nesting levels between two checks of the stack.
const LEVELS_PER_CHECK: usize = 64;
/// Stack a level may take (generous: about 0.3 KiB measured in release).
const PER_LEVEL: usize = 2 * 1024;
/// Room needed before descending another [`LEVELS_PER_CHECK`] levels.
const RED_ZONE: usize = LEVELS_PER_CHECK * PER_LEVEL + 64 * 1024;
/// Size of a stack segment allocated when there is not that room.
const SEGMENT: usize = 4 * RED_ZONE;

/// One term read from well-formed bytes.
#[derive(Debug)]
pub struct Decoded {
    /// The term, or [`TermError::Decode`] when the bytes are well formed
    /// but hold something `eetf` refused too (a non-UTF-8 atom, a
    /// non-finite float, ...).
    pub term: Result<Term, TermError>,
    /// Offset just past the term.
    pub end: usize,
}

/// The atoms a message's `ATOM_CACHE_REF`s (tag 82, then an index) name:
/// the entries its distribution header lists, in order, looked up in the
/// connection's atom cache (`dist::codec::AtomCache`). [`AtomRefs::NONE`]
/// outside a message with such a header: tag 82 is then refused, as any
/// tag this node does not accept.
#[derive(Debug, Clone, Copy)]
pub struct AtomRefs<'a> {
    /// Slot of each listed entry, in `slots`.
    pub idx: &'a [u16],
    /// The cache's slots.
    pub slots: &'a [Option<Box<str>>],
}

impl<'a> AtomRefs<'a> {
    /// No atom cache references.
    pub const NONE: AtomRefs<'static> = AtomRefs {
        idx: &[],
        slots: &[],
    };

    /// The name of the `i`-th listed entry.
    pub fn get(&self, i: u8) -> Option<&'a str> {
        let slot = *self.idx.get(usize::from(i))?;
        self.slots.get(usize::from(slot))?.as_deref()
    }
}

/// Reads one term body (without its 131 byte) at `buf[start..]`. The outer
/// error is structural; see [`Decoded::term`] for the other.
pub fn decode_body(buf: &[u8], start: usize, limits: Limits) -> Result<Decoded, TermError> {
    decode_body_in(buf, start, limits, AtomRefs::NONE)
}

/// [`decode_body`] of a term after a distribution header whose atom cache
/// entries are `refs`.
pub fn decode_body_in(
    buf: &[u8],
    start: usize,
    limits: Limits,
    refs: AtomRefs<'_>,
) -> Result<Decoded, TermError> {
    let mut d = Decoder {
        c: Cursor { buf, pos: start },
        max_depth: limits.max_depth,
        refused: None,
        refs,
        max_memory: limits.max_memory,
        memory_left: limits.max_memory,
    };
    let mut t = nil();
    d.child(0, &mut t)?;
    Ok(Decoded {
        term: match d.refused {
            None => Ok(t),
            Some(e) => Err(TermError::Decode(e)),
        },
        end: d.c.pos,
    })
}

/// [`decode_body`] for a whole external term, with its 131 byte.
pub fn decode_versioned(buf: &[u8], start: usize, limits: Limits) -> Result<Decoded, TermError> {
    match buf.get(start) {
        Some(&VERSION) => decode_body(buf, start + 1, limits),
        Some(&v) => Err(TermError::BadVersion(v)),
        None => Err(TermError::Truncated(buf.len())),
    }
}

struct Decoder<'a> {
    c: Cursor<'a>,
    max_depth: usize,
    /// The first thing `eetf` would have refused in otherwise good bytes.
    refused: Option<String>,
    /// What `ATOM_CACHE_REF`s name.
    refs: AtomRefs<'a>,
    /// [`Limits::max_memory`], and what is left of it.
    max_memory: usize,
    memory_left: usize,
}

/// `to` taken from a term, the way `eetf` converts (`"X is not a Y"`).
fn expect<T>(t: Term, what: &str) -> Result<T, String>
where
    Term: TryInto<T, Error = Term>,
{
    t.try_into()
        .map_err(|t| format!("{} is not a {what}", super::show(&t)))
}

impl<'a> Decoder<'a> {
    fn bytes(&mut self, n: usize) -> Result<&'a [u8], TermError> {
        let at = self.c.need(n)?;
        Ok(&self.c.buf[at..at + n])
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], TermError> {
        let b = self.bytes(N)?;
        Ok(b.try_into().expect("N bytes"))
    }

    fn u32(&mut self) -> Result<u32, TermError> {
        self.array().map(u32::from_be_bytes)
    }

    /// Remembers the first refusal; the caller goes on with a stand-in.
    fn refuse(&mut self, why: String) {
        self.refused.get_or_insert(why);
    }

    /// `r`'s value, or `stand_in` after remembering why not.
    fn or_refuse<T>(&mut self, r: Result<T, String>, stand_in: T) -> T {
        r.unwrap_or_else(|e| {
            self.refuse(e);
            stand_in
        })
    }

    fn atom_name(&mut self, bytes: &[u8]) -> Result<Atom, TermError> {
        self.charge(bytes.len())?;
        Ok(match utf8(bytes) {
            Ok(s) => Atom::from(s),
            Err(e) => {
                self.refuse(format!("I/O error: {e}"));
                Atom::from("")
            }
        })
    }

    /// Counts `bytes` more of the decoded term against
    /// [`Limits::max_memory`], before they are allocated.
    fn charge(&mut self, bytes: usize) -> Result<(), TermError> {
        match self.memory_left.checked_sub(bytes) {
            Some(left) => {
                self.memory_left = left;
                Ok(())
            }
            None => Err(TermError::TooLargeDecoded(self.max_memory)),
        }
    }

    /// An atom where the format requires one (the node of a pid, port or
    /// reference).
    fn atom(&mut self) -> Result<Atom, TermError> {
        let name = self.atom_bytes()?;
        self.atom_name(name)
    }

    /// The text of an atom where the format requires one, borrowed: its
    /// bytes (not yet checked as UTF-8), or the name a cache reference
    /// gives.
    fn atom_bytes(&mut self) -> Result<&'a [u8], TermError> {
        let at = self.c.pos;
        match self.c.u8()? {
            tag @ (100 | 118) => self.long_atom_bytes(tag, at),
            115 | 119 => {
                let n = usize::from(self.c.u8()?);
                self.bytes(n)
            }
            82 if !self.refs.idx.is_empty() => self.cached_name(at).map(str::as_bytes),
            _ => Err(TermError::ExpectedAtom(at)),
        }
    }

    /// The text of an `ATOM_EXT` or `ATOM_UTF8_EXT` at `at` (its tag
    /// read), whose two-byte length allows more than an atom may hold:
    /// refused past 255 characters, as BEAM refuses it.
    fn long_atom_bytes(&mut self, tag: u8, at: usize) -> Result<&'a [u8], TermError> {
        let n = self.c.u16()?;
        let bytes = self.bytes(n)?;
        super::check_atom_length(tag, bytes, at)?;
        Ok(bytes)
    }

    /// The name an `ATOM_CACHE_REF` at `at` gives (its tag read).
    fn cached_name(&mut self, at: usize) -> Result<&'a str, TermError> {
        let index = self.c.u8()?;
        self.refs
            .get(index)
            .ok_or(TermError::AtomCacheRef { index, pos: at })
    }

    /// The atom an `ATOM_CACHE_REF` at `at` names (its tag read).
    fn cached_atom(&mut self, at: usize) -> Result<Atom, TermError> {
        let name = self.cached_name(at)?;
        self.charge(name.len())?;
        Ok(Atom::from(name))
    }

    /// Checks a container of `n` elements at nesting `level` (the
    /// validator's rules: every element takes at least a byte; nesting is
    /// bounded).
    fn open(&mut self, n: usize, level: usize) -> Result<(), TermError> {
        if n > self.c.buf.len() - self.c.pos {
            return Err(TermError::Truncated(self.c.buf.len()));
        }
        if level >= self.max_depth {
            return Err(TermError::TooDeep(self.max_depth));
        }
        self.charge(n.saturating_mul(ELEMENT_COST))
    }

    /// The next `n` bytes, to be copied into the term: counted first
    /// ([`Decoder::charge`]).
    fn owned_bytes(&mut self, n: usize) -> Result<Vec<u8>, TermError> {
        let b = self.bytes(n)?;
        self.charge(n)?;
        Ok(b.to_vec())
    }

    /// The term at nesting `level` into `out`, on a stack with room for
    /// the next [`LEVELS_PER_CHECK`] levels.
    ///
    /// Terms are written in place rather than returned: moving a freshly
    /// built `Result<Term, _>` out of a call (misaligned vector copies of
    /// what the callee just wrote field by field) stalled store
    /// forwarding and made this slower than `eetf` for all its fewer
    /// instructions.
    fn child(&mut self, level: usize, out: &mut Term) -> Result<(), TermError> {
        if level.is_multiple_of(LEVELS_PER_CHECK) {
            stacker::maybe_grow(RED_ZONE, SEGMENT, || self.term(level, out))
        } else {
            self.term(level, out)
        }
    }

    /// [`Decoder::child`], returned (where a term is taken apart at once).
    fn next(&mut self, level: usize) -> Result<Term, TermError> {
        let mut t = nil();
        self.child(level, &mut t)?;
        Ok(t)
    }

    /// `n` elements, checked and counted ([`Decoder::open`]) before.
    fn children(&mut self, n: usize, level: usize) -> Result<Vec<Term>, TermError> {
        let mut v = Vec::with_capacity(n);
        for _ in 0..n {
            v.push(nil());
            let slot = v.last_mut().expect("just pushed");
            self.child(level + 1, slot)?;
        }
        Ok(v)
    }

    fn term(&mut self, level: usize, out: &mut Term) -> Result<(), TermError> {
        let at = self.c.pos;
        let tag = self.c.u8()?;
        *out = match tag {
            97 => Term::FixInteger(FixInteger::from(i32::from(self.c.u8()?))),
            98 => Term::FixInteger(FixInteger::from(i32::from_be_bytes(self.array()?))),
            70 => {
                let v = f64::from_be_bytes(self.array()?);
                let f = Float::try_from(v).map_err(|e| e.to_string());
                Term::Float(self.or_refuse(f, Float { value: 0.0 }))
            }
            99 => {
                let b = self.bytes(31)?;
                Term::Float(self.or_refuse(old_float(b), Float { value: 0.0 }))
            }
            106 => Term::List(List::nil()),
            100 | 118 => {
                let name = self.long_atom_bytes(tag, at)?;
                Term::Atom(self.atom_name(name)?)
            }
            115 | 119 => {
                let n = usize::from(self.c.u8()?);
                let name = self.bytes(n)?;
                Term::Atom(self.atom_name(name)?)
            }
            82 if !self.refs.idx.is_empty() => Term::Atom(self.cached_atom(at)?),
            77 => {
                // eetf shifts by (8 - bits): bits must be 1..=8 (as the
                // format requires) and the binary non-empty.
                let n = self.c.u32()?;
                let bits = self.c.u8()?;
                if n == 0 || bits == 0 || bits > 8 {
                    return Err(TermError::UnsupportedTag { tag, pos: at });
                }
                let mut bytes = self.owned_bytes(n)?;
                if let Some(last) = bytes.last_mut() {
                    *last >>= 8 - bits;
                }
                Term::BitBinary(BitBinary::from((bytes, bits)))
            }
            109 => {
                let n = self.c.u32()?;
                Term::Binary(Binary::from(self.owned_bytes(n)?))
            }
            107 => {
                let n = self.c.u16()?;
                Term::ByteList(self.owned_bytes(n)?.into())
            }
            110 | 111 => {
                let n = if tag == 110 {
                    usize::from(self.c.u8()?)
                } else {
                    self.c.u32()?
                };
                if n > super::MAX_INTEGER_BYTES {
                    return Err(TermError::IntegerTooLarge { bytes: n, pos: at });
                }
                self.c.need(1)?;
                self.bytes(n)?;
                self.charge(n)?;
                self.big(at)
            }
            101 => {
                let node = self.atom()?;
                let id = vec![self.u32()?];
                let creation = u32::from(self.c.u8()?);
                Term::Reference(Box::new(Reference { node, id, creation }))
            }
            114 | 90 => {
                let n = self.c.u16()?;
                if n > super::MAX_REFERENCE_WORDS {
                    return Err(TermError::ReferenceTooLong { words: n, pos: at });
                }
                let node = self.atom()?;
                let creation = if tag == 114 {
                    u32::from(self.c.u8()?)
                } else {
                    self.u32()?
                };
                let words = self.bytes(n * 4)?;
                let id = words
                    .chunks_exact(4)
                    .map(|w| u32::from_be_bytes([w[0], w[1], w[2], w[3]]))
                    .collect();
                Term::Reference(Box::new(Reference { node, id, creation }))
            }
            102 | 89 | 120 => {
                let node = self.atom()?;
                let id = match tag {
                    120 => u64::from_be_bytes(self.array()?),
                    _ => u64::from(self.u32()?),
                };
                let creation = match tag {
                    102 => u32::from(self.c.u8()?),
                    _ => self.u32()?,
                };
                Term::Port(Port { node, id, creation })
            }
            103 | 88 => Term::Pid(self.pid_body(tag)?),
            104 | 105 => {
                let n = if tag == 104 {
                    usize::from(self.c.u8()?)
                } else {
                    self.c.u32()?
                };
                if n > 0 {
                    self.open(n, level)?;
                }
                Term::Tuple(Tuple::from(self.children(n, level)?))
            }
            108 => {
                let n = self.c.u32()?;
                self.open(n.saturating_add(1), level)?;
                let elements = self.children(n, level)?;
                match self.next(level + 1)? {
                    Term::List(l) if l.is_nil() => Term::List(List::from(elements)),
                    last => Term::ImproperList(ImproperList::from((elements, last))),
                }
            }
            116 => {
                let n = self.c.u32()?;
                if n > 0 {
                    self.open(n.saturating_mul(2), level)?;
                }
                let mut map = HashMap::with_capacity(n);
                // (Whether a key could equal another spelled otherwise.)
                let mut spelled = false;
                for _ in 0..n {
                    let k = self.next(level + 1)?;
                    let v = self.next(level + 1)?;
                    spelled |= !one_spelling(&k);
                    map.insert(k, v);
                }
                // As BEAM's `binary_to_term`: a map with two equal keys is
                // refused (`badarg`), those spelled alike (fewer entries
                // than the map said) and those spelled apart (`[1,2]` as a
                // list and as a string, 0 as a small and a big integer).
                if map.len() < n || spelled && keys_equal_once_canonical(&map) {
                    self.refuse(DUPLICATE_KEYS.to_string());
                }
                Term::Map(Map::from(map))
            }
            113 => {
                self.open(3, level)?;
                let module = self.next(level + 1)?;
                let function = self.next(level + 1)?;
                let arity = self.next(level + 1)?;
                let module = self.or_refuse(expect(module, "Atom"), Atom::from(""));
                let function = self.or_refuse(expect(function, "Atom"), Atom::from(""));
                let arity = expect::<FixInteger>(arity, "FixInteger").and_then(|i| {
                    u8::try_from(i.value).map_err(|_| format!("{} is out of range 0..255", i.value))
                });
                let arity = self.or_refuse(arity, 0);
                Term::ExternalFun(Box::new(ExternalFun {
                    module,
                    function,
                    arity,
                }))
            }
            112 => self.new_fun(at, level)?,
            _ => return Err(TermError::UnsupportedTag { tag, pos: at }),
        };
        Ok(())
    }

    /// A pid after its tag (`PID_EXT` 103 or `NEW_PID_EXT` 88).
    fn pid_body(&mut self, tag: u8) -> Result<Pid, TermError> {
        let node = self.atom()?;
        let (id, serial, creation) = self.pid_numbers(tag)?;
        Ok(Pid {
            node,
            id,
            serial,
            creation,
        })
    }

    /// A pid's number, serial and creation, after its node (`tag`:
    /// `PID_EXT` 103, whose creation is a byte, or `NEW_PID_EXT` 88).
    fn pid_numbers(&mut self, tag: u8) -> Result<(u32, u32, u32), TermError> {
        let id = self.u32()?;
        let serial = self.u32()?;
        let creation = match tag {
            103 => u32::from(self.c.u8()?),
            _ => self.u32()?,
        };
        Ok((id, serial, creation))
    }

    /// NEW_FUN_EXT: size, arity, uniq, index, numfree, then module, old
    /// index, old uniq, pid and the free variables.
    fn new_fun(&mut self, at: usize, level: usize) -> Result<Term, TermError> {
        let size = self.c.u32()?;
        if size < 4 || at.saturating_add(1).saturating_add(size) > self.c.buf.len() {
            return Err(TermError::Truncated(self.c.buf.len()));
        }
        let arity = self.c.u8()?;
        let uniq = self.array::<16>()?;
        let index = self.u32()?;
        let numfree = self.c.u32()?;
        self.open(numfree.saturating_add(4), level)?;
        let module = self.next(level + 1)?;
        let old_index = self.next(level + 1)?;
        let old_uniq = self.next(level + 1)?;
        let pid = self.next(level + 1)?;
        let free_vars = self.children(numfree, level)?;
        let module = self.or_refuse(expect(module, "Atom"), Atom::from(""));
        let old_index = expect::<FixInteger>(old_index, "FixInteger").map(|i| i.value);
        let old_index = self.or_refuse(old_index, 0);
        let old_uniq = expect::<FixInteger>(old_uniq, "FixInteger").map(|i| i.value);
        let old_uniq = self.or_refuse(old_uniq, 0);
        let pid = self.or_refuse(expect(pid, "Pid"), Pid::new("", 0, 0, 0));
        Ok(Term::InternalFun(Box::new(InternalFun::New {
            module,
            arity,
            pid,
            free_vars,
            index,
            uniq,
            old_index,
            old_uniq,
        })))
    }

    /// SMALL_BIG_EXT or LARGE_BIG_EXT at `buf[at..pos]`, already checked:
    /// built by `eetf` (the one thing left to it, for `num-bigint`'s
    /// constructor; rare, and the bytes are known to be whole).
    fn big(&mut self, at: usize) -> Term {
        let mut v = Vec::with_capacity(1 + self.c.pos - at);
        v.push(VERSION);
        v.extend_from_slice(&self.c.buf[at..self.c.pos]);
        let t = Term::decode(&v[..]).map_err(|e| e.to_string());
        self.or_refuse(t, Term::List(List::nil()))
    }
}

/// The fields of a control tuple read one by one straight from the bytes,
/// without building the tuple as a [`Term`] first (the receive path's
/// `SEND`, `SEND_SENDER` and `REG_SEND`, see `dist::control`). Each
/// method takes the next field only if it is exactly what is asked and
/// well formed; otherwise it returns `None` without saying why, and the
/// caller decodes the whole term the general way ([`decode_body`]), which
/// reports the error, or accepts an unusual but valid shape, as always.
pub(crate) struct Fields<'a> {
    d: Decoder<'a>,
}

impl<'a> Fields<'a> {
    /// Fields starting at `buf[start]` (no 131 byte), `refs` what atom
    /// cache references name.
    pub(crate) fn new(buf: &'a [u8], start: usize, refs: AtomRefs<'a>) -> Self {
        Fields {
            d: Decoder {
                c: Cursor { buf, pos: start },
                max_depth: usize::MAX,
                refused: None,
                refs,
                max_memory: usize::MAX,
                memory_left: usize::MAX,
            },
        }
    }

    /// A `SMALL_TUPLE_EXT` header: its arity.
    pub(crate) fn tuple(&mut self) -> Option<usize> {
        match self.d.c.u8().ok()? {
            104 => self.d.c.u8().ok().map(usize::from),
            _ => None,
        }
    }

    /// A `SMALL_INTEGER_EXT` or `INTEGER_EXT`.
    pub(crate) fn int(&mut self) -> Option<i32> {
        match self.d.c.u8().ok()? {
            97 => self.d.c.u8().ok().map(i32::from),
            98 => self.d.array().ok().map(i32::from_be_bytes),
            _ => None,
        }
    }

    /// An atom with a UTF-8 name.
    pub(crate) fn atom(&mut self) -> Option<Atom> {
        let a = self.d.atom().ok()?;
        self.d.refused.is_none().then_some(a)
    }

    /// A pid (`PID_EXT` or `NEW_PID_EXT`) whose node name is UTF-8.
    pub(crate) fn pid(&mut self) -> Option<Pid> {
        let tag = self.d.c.u8().ok()?;
        if tag != 103 && tag != 88 {
            return None;
        }
        let p = self.d.pid_body(tag).ok()?;
        self.d.refused.is_none().then_some(p)
    }

    /// Offset just past the fields read.
    pub(crate) fn end(&self) -> usize {
        self.d.c.pos
    }

    /// The tag of the next field, not taken.
    pub(crate) fn peek(&self) -> Option<u8> {
        self.d.c.buf.get(self.d.c.pos).copied()
    }

    /// Bytes left after the fields read.
    pub(crate) fn remaining(&self) -> usize {
        self.d.c.buf.len() - self.d.c.pos
    }

    /// A `LIST_EXT` header: its length (the elements and the tail follow).
    pub(crate) fn list(&mut self) -> Option<usize> {
        match self.d.c.u8().ok()? {
            108 => self.d.c.u32().ok(),
            _ => None,
        }
    }

    /// A `NIL_EXT`.
    pub(crate) fn nil(&mut self) -> Option<()> {
        (self.d.c.u8().ok()? == 106).then_some(())
    }

    /// A `STRING_EXT`: its bytes (each a character below 256).
    pub(crate) fn string(&mut self) -> Option<&'a [u8]> {
        match self.d.c.u8().ok()? {
            107 => {
                let n = self.d.c.u16().ok()?;
                self.d.bytes(n).ok()
            }
            _ => None,
        }
    }

    /// An atom's text, borrowed from the bytes (or from the atom cache),
    /// UTF-8 as [`Fields::atom`] requires.
    pub(crate) fn atom_str(&mut self) -> Option<&'a str> {
        utf8(self.d.atom_bytes().ok()?).ok()
    }

    /// A pid (`PID_EXT` or `NEW_PID_EXT`) as its parts, the node's name
    /// borrowed: node, number, serial, creation, as [`Fields::pid`] reads
    /// them.
    pub(crate) fn pid_parts(&mut self) -> Option<(&'a str, u32, u32, u32)> {
        let tag = self.d.c.u8().ok()?;
        if tag != 103 && tag != 88 {
            return None;
        }
        let node = self.atom_str()?;
        let (id, serial, creation) = self.d.pid_numbers(tag).ok()?;
        Some((node, id, serial, creation))
    }
}

/// `[]`, the stand-in a term is written over.
fn nil() -> Term {
    Term::List(List::nil())
}

/// The text of the [`TermError::Decode`] a map gets when two of its keys
/// are one term (BEAM's `binary_to_term` refuses it with `badarg`; the
/// former path, validator and `eetf`, keeps one or both).
pub const DUPLICATE_KEYS: &str = "map with duplicate keys";

/// A key whose every equal term is spelled as it is (atoms are one term
/// whatever their tag: eetf reads them alike), so that an equal key would
/// have been an equal `eetf` value.
fn one_spelling(t: &Term) -> bool {
    match t {
        Term::Atom(_)
        | Term::FixInteger(_)
        | Term::Binary(_)
        | Term::Float(_)
        | Term::Pid(_)
        | Term::Port(_)
        | Term::Reference(_) => true,
        Term::Tuple(x) => x.elements.iter().all(one_spelling),
        _ => false,
    }
}

/// Two keys of `map` that are one term once canonical.
fn keys_equal_once_canonical(map: &HashMap<Term, Term>) -> bool {
    let mut seen = std::collections::HashSet::with_capacity(map.len());
    map.keys().any(|k| {
        !seen.insert(crate::term::canonical::canonical_encoding(
            &crate::term::canonical::canonical(k),
        ))
    })
}

/// An atom's text as UTF-8. Most atoms (node names, tags) are ASCII: a
/// check of that first, word by word, costs less than the full UTF-8
/// validation does on a short text (callgrind of `decode_bench`).
fn utf8(bytes: &[u8]) -> Result<&str, std::str::Utf8Error> {
    if bytes.is_ascii() {
        // SAFETY: ASCII is valid UTF-8.
        Ok(unsafe { std::str::from_utf8_unchecked(bytes) })
    } else {
        std::str::from_utf8(bytes)
    }
}

/// FLOAT_EXT, as `eetf` reads it: 31 bytes of text, NULs trimmed, parsed
/// as an `f32`.
fn old_float(b: &[u8]) -> Result<Float, String> {
    let s = std::str::from_utf8(b).map_err(|e| format!("I/O error: {e}"))?;
    let v: f32 = s
        .trim_end_matches('\0')
        .parse()
        .map_err(|e| format!("I/O error: {e}"))?;
    Float::try_from(v).map_err(|e| e.to_string())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::super::{atom, binary, decode, decode_two_pass, int, list, map, tuple};
    use super::*;
    use proptest::prelude::*;

    /// The same term, compared by value, or by canonical bytes when a map
    /// has map keys (`eetf`'s `==` on those depends on hash order).
    fn same_term(a: &Term, b: &Term) -> bool {
        let canon = |t: &Term| {
            crate::cpg::TermName::new(t.clone())
                .canonical_bytes()
                .to_vec()
        };
        a == b
            || canon(a) == canon(b)
            || super::super::keyed_by_map(a) && super::super::keyed_by_map(b)
    }

    /// Whether two decodings agree: the same term, or the same error
    /// (for [`TermError::Decode`], the same kind: the texts differ).
    pub(crate) fn same_outcome(a: &Result<Term, TermError>, b: &Result<Term, TermError>) -> bool {
        match (a, b) {
            (Ok(x), Ok(y)) => same_term(x, y),
            (Err(TermError::Decode(_)), Err(TermError::Decode(_))) => true,
            // (We refuse a map with duplicate keys, as BEAM does; eetf
            // keeps it.)
            (Err(TermError::Decode(m)), Ok(_)) => m == DUPLICATE_KEYS,
            (Err(x), Err(y)) => x == y,
            _ => false,
        }
    }

    /// Ours and the former path (validator + eetf) on `bytes`.
    fn check(bytes: &[u8]) {
        let limits = Limits::default();
        let ours = decode(bytes, limits);
        let old = decode_two_pass(bytes, limits);
        assert!(
            same_outcome(&ours, &old),
            "{bytes:?}\n ours {ours:?}\n old  {old:?}"
        );
    }

    /// Every prefix, and each byte set to a few values: ours must agree
    /// with the former path (and not panic).
    fn check_mutations(bytes: &[u8], flips: &[(usize, u8)]) {
        for n in 0..bytes.len() {
            check(&bytes[..n]);
        }
        let mut b = bytes.to_vec();
        for &(at, v) in flips.iter().filter(|_| !bytes.is_empty()) {
            let at = at % b.len();
            let was = b[at];
            b[at] = v;
            check(&b);
            b[at] ^= 0xff;
            check(&b);
            b[at] = was;
        }
    }

    fn enc(t: &Term) -> Vec<u8> {
        let mut v = vec![];
        t.encode(&mut v).unwrap();
        v
    }

    fn leaf() -> impl Strategy<Value = Term> {
        prop_oneof![
            any::<i32>().prop_map(int),
            any::<i64>().prop_map(|i| Term::from(crate::term::BigInteger::from(i))),
            any::<u64>().prop_map(crate::term::uint),
            "[a-zé组]{0,255}".prop_map(|s| atom(&s)),
            proptest::collection::vec(any::<u8>(), 0..40).prop_map(binary),
            proptest::collection::vec(any::<u8>(), 0..40).prop_map(|b| Term::ByteList(b.into())),
            any::<f64>()
                .prop_filter("finite", |f| f.is_finite())
                .prop_map(|f| Term::from(Float::try_from(f).unwrap())),
            (any::<u32>(), any::<u32>(), any::<u32>())
                .prop_map(|(i, s, c)| Term::from(Pid::new("n@h", i, s, c))),
            (any::<u64>(), any::<u32>()).prop_map(|(id, creation)| Term::from(Port {
                node: Atom::from("p@h"),
                id,
                creation
            })),
            (proptest::collection::vec(any::<u32>(), 0..5), any::<u32>()).prop_map(
                |(id, creation)| Term::from(Reference {
                    node: Atom::from("r@h"),
                    id,
                    creation
                })
            ),
            (proptest::collection::vec(any::<u8>(), 1..8), 1u8..=8).prop_map(|(mut b, bits)| {
                // eetf keeps the tail bits in the low end of the last byte.
                let last = b.len() - 1;
                b[last] &= ((1u16 << bits) - 1) as u8;
                Term::from(BitBinary::from((b, bits)))
            }),
            (0u8..=255).prop_map(|arity| Term::from(ExternalFun {
                module: Atom::from("m"),
                function: Atom::from("f"),
                arity
            })),
        ]
    }

    fn arb_term() -> impl Strategy<Value = Term> {
        leaf().prop_recursive(4, 64, 8, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..8).prop_map(tuple),
                proptest::collection::vec(inner.clone(), 0..8).prop_map(list),
                (proptest::collection::vec(inner.clone(), 1..4), leaf()).prop_map(|(e, l)| {
                    match l {
                        Term::List(_) | Term::ByteList(_) => list(e),
                        l => Term::from(ImproperList::from((e, l))),
                    }
                }),
                // Keys without maps: eetf's `==` on map keys that are maps
                // depends on hash order.
                proptest::collection::vec((leaf(), inner.clone()), 0..4).prop_map(map),
                (proptest::collection::vec(inner, 0..3), any::<u32>()).prop_map(|(free, i)| {
                    Term::from(InternalFun::New {
                        module: Atom::from("m"),
                        arity: 1,
                        pid: Pid::new("f@h", 1, 2, 3),
                        free_vars: free,
                        index: i,
                        uniq: [7; 16],
                        old_index: 3,
                        old_uniq: -4,
                    })
                }),
            ]
        })
    }

    proptest! {
        /// What eetf encodes, ours decodes as eetf does; and on every
        /// truncation and byte flip of it, ours gives what the former
        /// path gave.
        #[test]
        fn differential_against_eetf(
            t in arb_term(),
            flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 0..24),
        ) {
            let bytes = enc(&t);
            let theirs = Term::decode(&bytes[..]).unwrap();
            let ours = decode(&bytes, Limits::default()).unwrap();
            prop_assert!(same_term(&ours, &theirs), "{:?} vs {:?}", ours, theirs);
            check_mutations(&bytes, &flips);
        }
    }

    /// Encodings `eetf` never writes but a peer may: old atom, pid, port,
    /// reference and float tags, a large tuple and big, a string, funs,
    /// and refusals of every kind.
    #[test]
    fn every_tag_and_refusal_agrees_with_the_former_path() {
        let vectors: &[&[u8]] = &[
            &[131, 100, 0, 2, b'o', b'k'],
            &[131, 115, 2, b'o', b'k'],
            &[131, 115, 1, 0xe9],       // latin-1 é: eetf reads UTF-8
            &[131, 115, 2, 0xc3, 0xa9], // read as "é" by eetf
            &[131, 119, 2, 0xc3, 0xa9],
            &[131, 118, 0, 1, 0xff],
            &[131, 103, 100, 0, 1, b'n', 0, 0, 0, 1, 0, 0, 0, 2, 3],
            &[131, 88, 119, 1, b'n', 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3],
            &[131, 103, 97, 1, 0, 0, 0, 1, 0, 0, 0, 2, 3], // node not an atom
            &[131, 102, 115, 1, b'n', 0, 0, 0, 9, 1],
            &[131, 89, 115, 1, b'n', 0, 0, 0, 9, 0, 0, 0, 1],
            &[131, 120, 115, 1, b'n', 0, 0, 0, 1, 0, 0, 0, 9, 0, 0, 0, 1],
            &[131, 101, 115, 1, b'n', 0, 0, 0, 9, 1],
            &[131, 114, 0, 2, 115, 1, b'n', 1, 0, 0, 0, 1, 0, 0, 0, 2],
            &[131, 90, 0, 1, 115, 1, b'n', 0, 0, 0, 1, 0, 0, 0, 2],
            &[131, 90, 255, 255, 115, 1, b'n', 0, 0, 0, 1],
            &[131, 105, 0, 0, 0, 2, 97, 1, 97, 2],
            &[131, 105, 0, 0, 0, 0],
            &[131, 105, 255, 255, 255, 255, 97, 1],
            &[131, 110, 2, 1, 1, 2],
            &[131, 110, 2, 2, 1, 2], // bad sign
            &[131, 111, 0, 0, 0, 1, 0, 200],
            &[131, 111, 255, 255, 255, 255, 0],
            &[131, 107, 0, 3, 1, 2, 3],
            &[131, 107, 0, 0],
            &[131, 108, 0, 0, 0, 0, 106],
            &[131, 108, 0, 0, 0, 0, 97, 1],
            &[131, 108, 0, 0, 0, 1, 97, 1, 108, 0, 0, 0, 1, 97, 2, 106],
            &[131, 116, 0, 0, 0, 2, 97, 1, 97, 2, 97, 1, 97, 3], // duplicate key
            &[131, 116, 0, 0, 0, 0],
            &[131, 70, 0x7f, 0xf0, 0, 0, 0, 0, 0, 0], // infinity
            &[131, 70, 0x3f, 0xf8, 0, 0, 0, 0, 0, 0],
            &[131, 77, 0, 0, 0, 1, 8, 0xff],
            &[131, 77, 0, 0, 0, 1, 9, 0xff],
            &[131, 113, 115, 1, b'm', 115, 1, b'f', 97, 2],
            &[131, 113, 115, 1, b'm', 115, 1, b'f', 98, 0, 0, 1, 0], // arity 256
            &[131, 113, 97, 1, 115, 1, b'f', 97, 2],                 // module not an atom
            &[131, 113, 97, 1, 115, 1, b'f'],                        // ... and cut short
            &[131, 117, 0, 0, 0, 0],                                 // FUN_EXT
            &[131, 82, 0],
            &[131, 68, 0],
            &[131, 80, 0, 0, 0, 1, 0],
            &[130, 106],
            &[131],
            &[],
            &[131, 104, 2, 104, 1, 106, 200],
            &[131, 106, 1, 2, 3], // trailing bytes are ignored by decode
        ];
        for v in vectors {
            check(v);
            check_mutations(v, &[(1, 0), (2, 255), (3, 97), (5, 115)]);
        }
        let mut float = vec![131, 99];
        float.extend_from_slice(format!("{:<31}", "1.50000000000000000000e+00").as_bytes());
        float[2 + 26..].fill(0);
        check(&float);
        assert!(matches!(
            decode(&float, Limits::default()),
            Ok(Term::Float(_))
        ));
        let fun = enc(&Term::from(InternalFun::New {
            module: Atom::from("m"),
            arity: 1,
            pid: Pid::new("f@h", 1, 2, 3),
            free_vars: vec![int(1)],
            index: 0,
            uniq: [0; 16],
            old_index: 0,
            old_uniq: 0,
        }));
        check_mutations(&fun, &[(40, 97), (41, 0), (1, 104)]);
    }

    #[test]
    fn depth_limit_matches_the_validator() {
        for max_depth in [1, 2, 3, 63, 64, 65, 130] {
            let limits = Limits {
                max_depth,
                ..Limits::default()
            };
            for d in [max_depth - 1, max_depth, max_depth + 1] {
                for open in [&[104u8, 1][..], &[108, 0, 0, 0, 1], &[116, 0, 0, 0, 1, 106]] {
                    let mut b = vec![131];
                    for _ in 0..d {
                        b.extend_from_slice(open);
                    }
                    b.push(106);
                    if open[0] == 108 {
                        b.extend(std::iter::repeat_n(106, d));
                    }
                    let ours = decode(&b, limits);
                    let old = decode_two_pass(&b, limits);
                    assert!(
                        same_outcome(&ours, &old),
                        "{max_depth} {d} {ours:?} {old:?}"
                    );
                    assert_eq!(ours.is_ok(), d <= max_depth);
                }
            }
        }
    }

    #[test]
    fn deep_terms_decode_on_a_small_stack_whatever_the_limit() {
        const DEEP: usize = 100_000;
        let mut b = vec![131];
        for _ in 0..DEEP {
            b.extend_from_slice(&[104, 1]);
        }
        b.push(106);
        std::thread::Builder::new()
            .stack_size(2 << 20)
            .spawn(move || {
                let t = decode(
                    &b,
                    Limits {
                        max_depth: DEEP,
                        ..Limits::default()
                    },
                )
                .unwrap();
                // Dropping it recurses too.
                crate::term::with_stack_for(DEEP, move || drop(t));
            })
            .unwrap()
            .join()
            .unwrap();
    }

    #[test]
    fn hostile_counts_allocate_little() {
        // Nested tuples each claiming 2^32 - 1 elements: refused before
        // anything is sized from the claim; a nest of plausible claims
        // reserves what was counted of them, then ends as truncated, and
        // one whose claims pass the memory bound together is refused.
        check(&[131, 105, 255, 255, 255, 255, 105, 255, 255, 255, 255, 106]);
        let mut b = vec![131];
        for _ in 0..1000 {
            b.extend_from_slice(&[105, 0, 0, 0x10, 0]);
        }
        b.resize(b.len() + 8192, 106);
        assert!(matches!(
            decode(&b, Limits::default()),
            Err(TermError::Truncated(_))
        ));
        let tight = Limits {
            max_memory: 100 * 0x1000 * ELEMENT_COST,
            ..Limits::default()
        };
        assert!(matches!(
            decode(&b, tight),
            Err(TermError::TooLargeDecoded(_))
        ));
    }

    /// Integers up to BEAM's bound are taken (built in linear time: a
    /// 4 MiB one is a copy of its bytes), one byte more is refused as BEAM
    /// refuses it, before its bytes are even looked at (a 16 MiB claim in
    /// a short input is refused for its size, not as truncated), by both
    /// paths alike.
    #[test]
    fn integers_past_beams_bound_are_refused() {
        let max = super::super::MAX_INTEGER_BYTES;
        let big = |n: usize, len: usize| {
            let mut b = vec![131, 111];
            b.extend_from_slice(&(n as u32).to_be_bytes());
            b.push(1);
            b.resize(b.len() + len, 0xff);
            b
        };
        match decode(&big(max, max), Limits::default()) {
            Ok(Term::BigInteger(i)) => {
                assert_eq!(i.value.bits(), max as u64 * 8);
                assert!(i.value < crate::term::BigInteger::from(0i32).value);
            }
            other => panic!("{other:?}"),
        }
        for (n, len) in [(max + 1, max + 1), (16 << 20, 16), (u32::MAX as usize, 0)] {
            let b = big(n, len);
            let refused = Err(TermError::IntegerTooLarge { bytes: n, pos: 1 });
            assert_eq!(decode(&b, Limits::default()), refused);
            assert_eq!(decode_two_pass(&b, Limits::default()), refused);
        }
        check(&big(max + 1, 3));
    }

    /// Atoms of more than 255 characters and references of more than 5
    /// words are refused as OTP 25's `binary_to_term` refuses them (tried:
    /// `badarg`), by both paths alike, wherever they stand: an atom, a
    /// pid's node; 255 characters of two bytes each still pass.
    #[test]
    fn atoms_and_references_past_beams_bounds_are_refused() {
        let atom_ext = |tag: u8, text: &str| {
            let mut b = vec![131, tag];
            b.extend_from_slice(&(text.len() as u16).to_be_bytes());
            b.extend_from_slice(text.as_bytes());
            b
        };
        let long = "x".repeat(256);
        for tag in [100, 118] {
            let refused = Err(TermError::AtomTooLong { chars: 256, pos: 1 });
            assert_eq!(decode(&atom_ext(tag, &long), Limits::default()), refused);
            assert_eq!(
                decode_two_pass(&atom_ext(tag, &long), Limits::default()),
                refused
            );
            let ok = decode(&atom_ext(tag, &long[1..]), Limits::default());
            assert_eq!(ok, Ok(atom(&long[1..])));
        }
        let wide = "\u{e9}".repeat(255);
        assert_eq!(
            decode(&atom_ext(118, &wide), Limits::default()),
            Ok(atom(&wide))
        );
        let wider = "\u{e9}".repeat(256);
        let refused = Err(TermError::AtomTooLong { chars: 256, pos: 1 });
        assert_eq!(decode(&atom_ext(118, &wider), Limits::default()), refused);
        // A pid whose node is too long, inside a tuple.
        let mut pid = vec![131, 104, 1, 88, 118, 1, 0];
        pid.extend_from_slice(long.as_bytes());
        pid.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1]);
        let refused = Err(TermError::AtomTooLong { chars: 256, pos: 4 });
        assert_eq!(decode(&pid, Limits::default()), refused);
        assert_eq!(decode_two_pass(&pid, Limits::default()), refused);
        let reference = |words: u16| {
            let mut b = vec![131, 90];
            b.extend_from_slice(&words.to_be_bytes());
            b.extend_from_slice(&[119, 3, b'a', b'@', b'b', 0, 0, 0, 1]);
            for _ in 0..words {
                b.extend_from_slice(&[0, 0, 0, 1]);
            }
            b
        };
        for words in [0, 3, 5] {
            assert!(matches!(
                decode(&reference(words), Limits::default()),
                Ok(Term::Reference(_))
            ));
        }
        let refused = Err(TermError::ReferenceTooLong { words: 6, pos: 1 });
        assert_eq!(decode(&reference(6), Limits::default()), refused);
        assert_eq!(decode_two_pass(&reference(6), Limits::default()), refused);
        for b in [atom_ext(118, &long), pid, reference(6)] {
            check(&b);
        }
    }

    /// A term is refused once what it would take decoded passes
    /// `max_memory`, counted before it is allocated: a list's elements as
    /// `Term`s, a binary's bytes, an atom's text (a cached one's too, its
    /// reference two bytes on the wire).
    #[test]
    fn a_term_past_the_memory_bound_is_refused_before_it_is_built() {
        let term_size = ELEMENT_COST;
        let nils = |n: u32| {
            let mut b = vec![131, 108];
            b.extend_from_slice(&n.to_be_bytes());
            b.resize(b.len() + n as usize + 1, 106);
            b
        };
        let at = |max_memory: usize| Limits {
            max_memory,
            ..Limits::default()
        };
        // 10 elements and the tail: 11 terms.
        assert!(decode(&nils(10), at(11 * term_size)).is_ok());
        assert_eq!(
            decode(&nils(10), at(11 * term_size - 1)),
            Err(TermError::TooLargeDecoded(11 * term_size - 1))
        );
        let mut bin = vec![131, 109, 0, 0, 0, 100];
        bin.resize(bin.len() + 100, 7);
        assert!(decode(&bin, at(100)).is_ok());
        assert_eq!(decode(&bin, at(99)), Err(TermError::TooLargeDecoded(99)));
        // 100 references to a cached atom of 1,000 bytes: 100,000 bytes
        // of text from 200 bytes of references.
        let long = "a".repeat(1000);
        let slots = [Some(Box::<str>::from(long.as_str()))];
        let refs = AtomRefs {
            idx: &[0],
            slots: &slots,
        };
        let mut b = vec![108, 0, 0, 0, 100];
        for _ in 0..100 {
            b.extend_from_slice(&[82, 0]);
        }
        b.push(106);
        let terms = 101 * term_size;
        assert!(decode_body_in(&b, 0, at(terms + 100_000), refs).is_ok());
        let over = decode_body_in(&b, 0, at(terms + 99_999), refs);
        assert_eq!(over.err(), Some(TermError::TooLargeDecoded(terms + 99_999)));
        // The default bound: 10 million `[]`s (10 MB on the wire) are
        // refused at the list's header, nothing built.
        assert_eq!(
            decode(&nils(10_000_000), Limits::default()),
            Err(TermError::TooLargeDecoded(super::super::DEFAULT_MAX_MEMORY))
        );
    }
}
