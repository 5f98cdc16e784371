//! Writing a message: the control tuple field by field and the payload
//! straight into the connection's buffer (see the parent module).

use super::EncodeError;
use crate::dist::codec::PASS_THROUGH;
use crate::dist::send_cache::SendCache;
use crate::term::{self, Atom, List, Pid, PidOrAtom, Reference, Term};
use erl_dist::message::Message;

pub(super) use crate::term::write::tag::{
    ATOM_CACHE_REF, ATOM_UTF8, BINARY, BIT_BINARY, INTEGER, LARGE_TUPLE, LIST, MAP,
    NEWER_REFERENCE, NEW_FLOAT, NEW_PID, NEW_PORT, NIL, SMALL_ATOM_UTF8, STRING, V4_PORT,
};
pub(in crate::dist) use crate::term::write::tag::{SMALL_INTEGER, SMALL_TUPLE};

/// Where a message's terms are written: the connection's buffer, and the
/// connection's atom cache when its atoms go through it (then the caller
/// writes the header after the terms, [`put_packet`]).
pub(in crate::dist) struct Enc<'a> {
    out: &'a mut Vec<u8>,
    cache: Option<&'a mut SendCache>,
}

impl<'a> Enc<'a> {
    /// Terms written with their atoms inline.
    fn plain(out: &'a mut Vec<u8>) -> Self {
        Enc { out, cache: None }
    }
}

impl std::ops::Deref for Enc<'_> {
    type Target = Vec<u8>;
    fn deref(&self) -> &Vec<u8> {
        self.out
    }
}

impl std::ops::DerefMut for Enc<'_> {
    fn deref_mut(&mut self) -> &mut Vec<u8> {
        self.out
    }
}

pub(super) fn put_u32(out: &mut Vec<u8>, n: usize) -> Result<(), EncodeError> {
    let n = u32::try_from(n).map_err(|_| EncodeError::TooLarge(n))?;
    out.extend_from_slice(&n.to_be_bytes());
    Ok(())
}

pub(super) fn put_atom(out: &mut Enc<'_>, a: &Atom) -> Result<(), EncodeError> {
    put_atom_text(out, &a.name)
}

/// An atom: a reference into the message's atom cache entries when the
/// connection has one and the atom is cached, else its text.
pub(super) fn put_atom_text(out: &mut Enc<'_>, text: &str) -> Result<(), EncodeError> {
    if let Some(chars) = crate::atom::over_long(text) {
        return Err(EncodeError::AtomTooLong(chars));
    }
    if let Some(i) = out.cache.as_deref_mut().and_then(|c| c.reference(text)) {
        out.out.extend_from_slice(&[ATOM_CACHE_REF, i]);
        return Ok(());
    }
    term::write::atom(out, text);
    Ok(())
}

pub(super) fn put_int(out: &mut Vec<u8>, v: i32) {
    if (0..=255).contains(&v) {
        out.extend_from_slice(&[SMALL_INTEGER, v as u8]);
    } else {
        out.push(INTEGER);
        out.extend_from_slice(&v.to_be_bytes());
    }
}

pub(in crate::dist) fn put_pid(out: &mut Enc<'_>, p: &Pid) -> Result<(), EncodeError> {
    put_pid_parts(out, &p.node, p.id, p.serial, p.creation)
}

/// A `NEW_PID_EXT` from its parts (what [`put_pid`] writes for the pid).
pub(in crate::dist) fn put_pid_parts(
    out: &mut Enc<'_>,
    node: &Atom,
    id: u32,
    serial: u32,
    creation: u32,
) -> Result<(), EncodeError> {
    out.push(NEW_PID);
    put_atom(out, node)?;
    for n in [id, serial, creation] {
        out.extend_from_slice(&n.to_be_bytes());
    }
    Ok(())
}

pub(super) fn put_ref(out: &mut Enc<'_>, r: &Reference) -> Result<(), EncodeError> {
    put_ref_parts(out, &r.node, r.creation, &r.id)
}

/// A `NEWER_REFERENCE_EXT` from its parts (what [`put_ref`] writes for
/// the reference).
pub(in crate::dist) fn put_ref_parts(
    out: &mut Enc<'_>,
    node: &Atom,
    creation: u32,
    id: &[u32],
) -> Result<(), EncodeError> {
    if id.len() > term::MAX_REFERENCE_WORDS {
        return Err(EncodeError::ReferenceTooLong(id.len()));
    }
    let n = id.len() as u16;
    out.push(NEWER_REFERENCE);
    out.extend_from_slice(&n.to_be_bytes());
    put_atom(out, node)?;
    out.extend_from_slice(&creation.to_be_bytes());
    for w in id {
        out.extend_from_slice(&w.to_be_bytes());
    }
    Ok(())
}

pub(super) fn put_pid_or_atom(out: &mut Enc<'_>, p: &PidOrAtom) -> Result<(), EncodeError> {
    match p {
        PidOrAtom::Pid(p) => put_pid(out, p),
        PidOrAtom::Atom(a) => put_atom(out, a),
    }
}

pub(super) fn put_list(out: &mut Enc<'_>, l: &List) -> Result<(), EncodeError> {
    let byte = |t: &Term| match t {
        Term::FixInteger(i) if (0..256).contains(&i.value) => Some(i.value as u8),
        _ => None,
    };
    let n = l.elements.len();
    if n > 0 && n <= u16::MAX as usize && l.elements.iter().all(|e| byte(e).is_some()) {
        out.push(STRING);
        out.extend_from_slice(&(n as u16).to_be_bytes());
        out.extend(l.elements.iter().filter_map(byte));
        return Ok(());
    }
    if n > 0 {
        out.push(LIST);
        put_u32(out, n)?;
        for e in &l.elements {
            put_term_in(out, e)?;
        }
    }
    out.push(NIL);
    Ok(())
}

/// Drops the first byte written through it: `eetf` writes the 131 version
/// byte first, which a term inside a distribution header goes without.
pub(super) struct SkipVersion<'a> {
    out: &'a mut Vec<u8>,
    skipped: bool,
}

impl std::io::Write for SkipVersion<'_> {
    fn write(&mut self, mut buf: &[u8]) -> std::io::Result<usize> {
        let n = buf.len();
        if !self.skipped && !buf.is_empty() {
            self.skipped = true;
            buf = &buf[1..];
        }
        self.out.extend_from_slice(buf);
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Appends the external format of `t` without its 131 version byte.
pub fn put_term(out: &mut Vec<u8>, t: &Term) -> Result<(), EncodeError> {
    put_term_in(&mut Enc::plain(out), t)
}

/// [`put_term`] into a message's terms.
pub(super) fn put_term_in(out: &mut Enc<'_>, t: &Term) -> Result<(), EncodeError> {
    match t {
        Term::Atom(a) => put_atom(out, a)?,
        Term::FixInteger(i) => put_int(out, i.value),
        Term::Pid(p) => put_pid(out, p)?,
        Term::Reference(r) => put_ref(out, r)?,
        Term::Float(f) => {
            out.push(NEW_FLOAT);
            out.extend_from_slice(&f.value.to_be_bytes());
        }
        Term::Binary(b) => {
            out.push(BINARY);
            put_u32(out, b.bytes.len())?;
            out.extend_from_slice(&b.bytes);
        }
        Term::BitBinary(b) => {
            out.push(BIT_BINARY);
            put_u32(out, b.bytes.len())?;
            out.push(b.tail_bits_size);
            if let Some((last, init)) = b.bytes.split_last() {
                out.extend_from_slice(init);
                out.push(last.checked_shl(8 - b.tail_bits_size as u32).unwrap_or(0));
            }
        }
        Term::Tuple(t) => {
            let n = t.elements.len();
            if n < 256 {
                out.extend_from_slice(&[SMALL_TUPLE, n as u8]);
            } else {
                out.push(LARGE_TUPLE);
                put_u32(out, n)?;
            }
            for e in &t.elements {
                put_term_in(out, e)?;
            }
        }
        Term::List(l) => put_list(out, l)?,
        Term::ByteList(b) if b.bytes.len() <= u16::MAX as usize => {
            out.push(STRING);
            out.extend_from_slice(&(b.bytes.len() as u16).to_be_bytes());
            out.extend_from_slice(&b.bytes);
        }
        Term::ByteList(b) => {
            // Too long for STRING_EXT: a proper list of small integers.
            out.push(LIST);
            put_u32(out, b.bytes.len())?;
            for &x in &b.bytes {
                out.extend_from_slice(&[SMALL_INTEGER, x]);
            }
            out.push(NIL);
        }
        Term::ImproperList(l) => {
            out.push(LIST);
            put_u32(out, l.elements.len())?;
            for e in &l.elements {
                put_term_in(out, e)?;
            }
            put_term_in(out, &l.last)?;
        }
        Term::Map(m) => {
            out.push(MAP);
            put_u32(out, m.map.len())?;
            for (k, v) in &m.map {
                put_term_in(out, k)?;
                put_term_in(out, v)?;
            }
        }
        Term::Port(p) => {
            if p.id >> 32 == 0 {
                out.push(NEW_PORT);
                put_atom(out, &p.node)?;
                out.extend_from_slice(&(p.id as u32).to_be_bytes());
            } else {
                out.push(V4_PORT);
                put_atom(out, &p.node)?;
                out.extend_from_slice(&p.id.to_be_bytes());
            }
            out.extend_from_slice(&p.creation.to_be_bytes());
        }
        // Big integers and funs: rare; eetf's encoder, without its 131.
        Term::BigInteger(_) | Term::ExternalFun(_) | Term::InternalFun(_) => {
            let start = out.len();
            let w = SkipVersion {
                out,
                skipped: false,
            };
            if let Err(e) = t.encode(w) {
                out.truncate(start);
                return Err(EncodeError::Term(e.to_string()));
            }
        }
    }
    Ok(())
}

/// Writes `bytes`, one term in the external format without its 131 byte
/// ([`Encoded`](crate::term::Encoded)), into a message: as they are, or,
/// with the connection's atom cache, with each UTF-8 atom through the
/// cache (as a BEAM writes every atom of a message: a receiving BEAM reads
/// a cached atom without looking its text up, which for a state of 100,000
/// groups, 300,000 atoms, is most of its decoding), the rest copied in
/// runs. One walk of the bytes, nothing allocated but the walk's stack.
/// Bytes that do not hold one whole term (never, for an `Encoded`) are an
/// error (and [`put_packet`] then appends nothing of the message).
pub(super) fn put_encoded(out: &mut Enc<'_>, bytes: &[u8]) -> Result<(), EncodeError> {
    if out.cache.is_none() {
        out.extend_from_slice(bytes);
        return Ok(());
    }
    let bad = || EncodeError::Term("not one whole term in the encoded payload".into());
    let byte = |at: usize| bytes.get(at).copied().ok_or_else(bad);
    let u16_at = |at: usize| match bytes.get(at..at + 2) {
        Some(b) => Ok(u16::from_be_bytes([b[0], b[1]]) as usize),
        None => Err(bad()),
    };
    let u32_at = |at: usize| match bytes.get(at..at + 4) {
        Some(b) => Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize),
        None => Err(bad()),
    };
    // `bytes[run..pos]` is still to be copied; an atom through the cache
    // copies the run before it, then writes its reference.
    let (mut pos, mut run) = (0usize, 0usize);
    // The atom at `at`: through the cache when it is UTF-8 text the cache
    // takes, else left in the run. Returns where it ends.
    let mut recent: [Option<(&[u8], Option<u8>)>; 2] = [None; 2];
    let mut atom_at =
        |out: &mut Enc<'_>, run: &mut usize, at: usize| -> Result<usize, EncodeError> {
            let (len, name_at) = match byte(at)? {
                SMALL_ATOM_UTF8 => (byte(at + 1)? as usize, at + 2),
                ATOM_UTF8 => (u16_at(at + 1)?, at + 3),
                // Latin-1 atoms (ATOM_EXT, SMALL_ATOM_EXT): inline.
                100 => return Ok(at + 3 + u16_at(at + 1)?),
                115 => return Ok(at + 2 + byte(at + 1)? as usize),
                _ => return Err(bad()),
            };
            let name = bytes.get(name_at..name_at + len).ok_or_else(bad)?;
            // A state repeats few atoms many times ('cpg_data', node names):
            // the last two looked up answer without hashing (within one
            // message an atom keeps its reference).
            let i = match recent.iter().flatten().find(|(n, _)| *n == name) {
                Some(&(_, i)) => i,
                None => {
                    let text = std::str::from_utf8(name).map_err(|_| bad())?;
                    let i = out.cache.as_deref_mut().and_then(|c| c.reference(text));
                    recent[1] = recent[0];
                    recent[0] = Some((name, i));
                    i
                }
            };
            if let Some(i) = i {
                out.out.extend_from_slice(&bytes[*run..at]);
                out.out.extend_from_slice(&[ATOM_CACHE_REF, i]);
                *run = name_at + len;
            }
            Ok(name_at + len)
        };
    // Terms still to read at each nesting level.
    let mut pending: Vec<usize> = vec![1];
    while let Some(top) = pending.last_mut() {
        if *top == 0 {
            pending.pop();
            continue;
        }
        *top -= 1;
        let mut children = 0;
        pos = match byte(pos)? {
            SMALL_INTEGER => pos + 2,
            INTEGER => pos + 5,
            NEW_FLOAT => pos + 9,
            99 => pos + 32, // FLOAT_EXT
            NIL => pos + 1,
            STRING => pos + 3 + u16_at(pos + 1)?,
            BINARY => pos + 5 + u32_at(pos + 1)?,
            BIT_BINARY => pos + 6 + u32_at(pos + 1)?,
            110 => pos + 3 + byte(pos + 1)? as usize, // SMALL_BIG_EXT
            111 => pos + 6 + u32_at(pos + 1)?,        // LARGE_BIG_EXT
            SMALL_ATOM_UTF8 | ATOM_UTF8 | 100 | 115 => atom_at(out, &mut run, pos)?,
            NEW_PID | V4_PORT => atom_at(out, &mut run, pos + 1)? + 12,
            103 => atom_at(out, &mut run, pos + 1)? + 9, // PID_EXT
            NEW_PORT => atom_at(out, &mut run, pos + 1)? + 8,
            102 => atom_at(out, &mut run, pos + 1)? + 5, // PORT_EXT
            101 => atom_at(out, &mut run, pos + 1)? + 5, // REFERENCE_EXT
            NEWER_REFERENCE => {
                let n = u16_at(pos + 1)?;
                atom_at(out, &mut run, pos + 3)? + 4 + 4 * n
            }
            114 => {
                // NEW_REFERENCE_EXT
                let n = u16_at(pos + 1)?;
                atom_at(out, &mut run, pos + 3)? + 1 + 4 * n
            }
            SMALL_TUPLE => {
                children = byte(pos + 1)? as usize;
                pos + 2
            }
            LARGE_TUPLE => {
                children = u32_at(pos + 1)?;
                pos + 5
            }
            LIST => {
                children = u32_at(pos + 1)? + 1;
                pos + 5
            }
            MAP => {
                children = 2 * u32_at(pos + 1)?;
                pos + 5
            }
            113 => {
                // EXPORT_EXT: module, function, arity.
                children = 3;
                pos + 1
            }
            // NEW_FUN_EXT: its size covers it all; its atoms go inline.
            112 => pos + 1 + u32_at(pos + 1)?,
            _ => return Err(bad()),
        };
        if pos > bytes.len() {
            return Err(bad());
        }
        if children > 0 {
            pending.push(children);
        }
    }
    if pos != bytes.len() {
        return Err(bad());
    }
    out.out.extend_from_slice(&bytes[run..]);
    Ok(())
}

/// The length of what [`put_term`] writes for `t`, computed without
/// writing it (what a queued message will cost on the wire; 0 for a term
/// it refuses). One walk of the term, no allocation but for big integers
/// and funs (rare), which are measured by encoding them.
pub fn term_size(t: &Term) -> usize {
    match t {
        Term::Atom(a) => atom_size(a),
        Term::FixInteger(i) => int_size(i.value),
        Term::Pid(p) => pid_size(&p.node),
        Term::Reference(r) => ref_size(&r.node, r.id.len()),
        Term::Float(_) => 9,
        Term::Binary(b) => 5 + b.bytes.len(),
        Term::BitBinary(b) => 6 + b.bytes.len(),
        Term::Tuple(t) => {
            let head = if t.elements.len() < 256 { 2 } else { 5 };
            head + t.elements.iter().map(term_size).sum::<usize>()
        }
        Term::List(l) => list_size(l),
        Term::ByteList(b) if b.bytes.len() <= u16::MAX as usize => 3 + b.bytes.len(),
        Term::ByteList(b) => 6 + 2 * b.bytes.len(),
        Term::ImproperList(l) => {
            5 + l.elements.iter().map(term_size).sum::<usize>() + term_size(&l.last)
        }
        Term::Map(m) => {
            5 + m
                .map
                .iter()
                .map(|(k, v)| term_size(k) + term_size(v))
                .sum::<usize>()
        }
        Term::Port(p) => 1 + atom_size(&p.node) + if p.id >> 32 == 0 { 8 } else { 12 },
        Term::BigInteger(_) | Term::ExternalFun(_) | Term::InternalFun(_) => {
            let mut out = Vec::new();
            put_term(&mut out, t).map_or(0, |()| out.len())
        }
    }
}

pub(super) fn atom_size(a: &Atom) -> usize {
    let n = a.name.len();
    if n <= u8::MAX as usize {
        2 + n
    } else {
        3 + n
    }
}

pub(super) fn int_size(v: i32) -> usize {
    if (0..=255).contains(&v) {
        2
    } else {
        5
    }
}

pub(super) fn pid_size(node: &Atom) -> usize {
    1 + atom_size(node) + 12
}

pub(super) fn ref_size(node: &Atom, words: usize) -> usize {
    3 + atom_size(node) + 4 + 4 * words
}

pub(super) fn list_size(l: &List) -> usize {
    let n = l.elements.len();
    let byte = |t: &Term| matches!(t, Term::FixInteger(i) if (0..256).contains(&i.value));
    if n > 0 && n <= u16::MAX as usize && l.elements.iter().all(byte) {
        3 + n
    } else if n > 0 {
        6 + l.elements.iter().map(term_size).sum::<usize>()
    } else {
        1
    }
}

/// The length of the packet [`encode_message`] appends for `msg` with a
/// distribution header (4 for a tick), computed without encoding it: what
/// the message costs while it waits in a peer's queue, counted against
/// the queue's byte limits. Through the atom cache the packet is shorter
/// (2 bytes an atom the peer holds), or a few bytes longer the first time
/// an atom is sent.
pub fn message_size(msg: &Message) -> usize {
    let Some((_, fields, payload)) = parts(msg) else {
        return 4;
    };
    let fields: usize = fields.as_slice().iter().map(field_size).sum();
    // length, `131, 68, 0`, the tuple's head and the operation
    4 + 3 + 2 + 2 + fields + payload.as_ref().map_or(0, field_size)
}

/// What `msg` costs while it waits to be written, against the byte bounds
/// of a peer's queue: the larger of its size as written
/// ([`message_size`]) and the memory it holds ([`message_memory`]), so that
/// those bounds bound memory (a queue of terms counted by their bytes on
/// the wire held 4 to 14 times its bound: 4 GiB at a 1 GiB bound).
pub fn message_cost(msg: &Message) -> usize {
    message_size(msg).max(message_memory(msg))
}

/// About the heap memory `msg` holds while it waits in a peer's queue: its
/// terms' ([`crate::term::heap_size`]), often more than [`message_size`]
/// (a list of characters above 255 takes about 14 times its bytes on the
/// wire). The message's own slot in the queue (about 300 bytes) is not
/// counted: the queue's bound on messages bounds it.
pub fn message_memory(msg: &Message) -> usize {
    let heap = |f: &F<'_>| match f {
        F::Term(t) => crate::term::heap_size(t),
        F::List(l) => crate::term::elements_heap_size(&l.elements),
        F::Pid(p) => p.node.name.capacity(),
        F::Proc(PidOrAtom::Pid(p)) => p.node.name.capacity(),
        F::Atom(a) => a.name.capacity(),
        F::Proc(PidOrAtom::Atom(a)) => a.name.capacity(),
        F::Ref(r) => r.node.name.capacity() + 4 * r.id.capacity(),
        F::Int(_) | F::Mfa(..) | F::Unused => 0,
    };
    let Some((_, fields, payload)) = parts(msg) else {
        return 0;
    };
    fields.as_slice().iter().map(heap).sum::<usize>() + payload.as_ref().map_or(0, heap)
}

pub(super) fn field_size(f: &F<'_>) -> usize {
    match f {
        F::Pid(p) => pid_size(&p.node),
        F::Atom(a) => atom_size(a),
        F::Ref(r) => ref_size(&r.node, r.id.len()),
        F::Proc(PidOrAtom::Pid(p)) => pid_size(&p.node),
        F::Proc(PidOrAtom::Atom(a)) => atom_size(a),
        F::Term(t) => term_size(t),
        F::List(l) => list_size(l),
        F::Int(i) => int_size(*i),
        F::Mfa(m, f, a) => 2 + atom_size(m) + atom_size(f) + int_size(*a),
        F::Unused => 2,
    }
}

/// One element of a control tuple.
#[derive(Clone, Copy)]
pub(super) enum F<'a> {
    Pid(&'a Pid),
    Atom(&'a Atom),
    Ref(&'a Reference),
    Proc(&'a PidOrAtom),
    Term(&'a Term),
    List(&'a List),
    Int(i32),
    Mfa(&'a Atom, &'a Atom, i32),
    /// The unused slot, `''`.
    Unused,
}

/// The elements of a control tuple after the operation: at most six (a
/// SPAWN_REQUEST_TT), kept inline so that encoding a message allocates
/// nothing but its bytes.
pub(super) struct Fields<'a> {
    items: [F<'a>; 6],
    len: usize,
}

impl<'a> Fields<'a> {
    fn new(items: &[F<'a>]) -> Self {
        let mut all = [F::Unused; 6];
        all[..items.len()].copy_from_slice(items);
        Fields {
            items: all,
            len: items.len(),
        }
    }

    fn as_slice(&self) -> &[F<'a>] {
        &self.items[..self.len]
    }
}

/// The operation, the other elements of the control tuple and the payload
/// of `msg`; `None` for a tick.
pub(super) fn parts(msg: &Message) -> Option<(u8, Fields<'_>, Option<F<'_>>)> {
    use Message as M;
    use F::*;
    Some(match msg {
        M::Link(m) => (1, Fields::new(&[Pid(&m.from_pid), Pid(&m.to_pid)]), None),
        M::Send(m) => (
            2,
            Fields::new(&[Unused, Pid(&m.to_pid)]),
            Some(Term(&m.message)),
        ),
        M::Exit(m) => (
            3,
            Fields::new(&[Pid(&m.from_pid), Pid(&m.to_pid), Term(&m.reason)]),
            None,
        ),
        M::Unlink(m) => (4, Fields::new(&[Pid(&m.from_pid), Pid(&m.to_pid)]), None),
        M::NodeLink(_) => (5, Fields::new(&[]), None),
        M::RegSend(m) => (
            6,
            Fields::new(&[Pid(&m.from_pid), Unused, Atom(&m.to_name)]),
            Some(Term(&m.message)),
        ),
        M::GroupLeader(m) => (7, Fields::new(&[Pid(&m.from_pid), Pid(&m.to_pid)]), None),
        M::Exit2(m) => (
            8,
            Fields::new(&[Pid(&m.from_pid), Pid(&m.to_pid), Term(&m.reason)]),
            None,
        ),
        M::SendTt(m) => (
            12,
            Fields::new(&[Unused, Pid(&m.to_pid), Term(&m.trace_token)]),
            Some(Term(&m.message)),
        ),
        M::ExitTt(m) => (
            13,
            Fields::new(&[
                Pid(&m.from_pid),
                Pid(&m.to_pid),
                Term(&m.trace_token),
                Term(&m.reason),
            ]),
            None,
        ),
        M::RegSendTt(m) => (
            16,
            Fields::new(&[
                Pid(&m.from_pid),
                Unused,
                Atom(&m.to_name),
                Term(&m.trace_token),
            ]),
            Some(Term(&m.message)),
        ),
        M::Exit2Tt(m) => (
            18,
            Fields::new(&[
                Pid(&m.from_pid),
                Pid(&m.to_pid),
                Term(&m.trace_token),
                Term(&m.reason),
            ]),
            None,
        ),
        M::MonitorP(m) => (
            19,
            Fields::new(&[Pid(&m.from_pid), Proc(&m.to_proc), Ref(&m.reference)]),
            None,
        ),
        M::DemonitorP(m) => (
            20,
            Fields::new(&[Pid(&m.from_pid), Proc(&m.to_proc), Ref(&m.reference)]),
            None,
        ),
        M::MonitorPExit(m) => (
            21,
            Fields::new(&[
                Proc(&m.from_proc),
                Pid(&m.to_pid),
                Ref(&m.reference),
                Term(&m.reason),
            ]),
            None,
        ),
        M::SendSender(m) => (
            22,
            Fields::new(&[Pid(&m.from_pid), Pid(&m.to_pid)]),
            Some(Term(&m.message)),
        ),
        M::SendSenderTt(m) => (
            23,
            Fields::new(&[Pid(&m.from_pid), Pid(&m.to_pid), Term(&m.trace_token)]),
            Some(Term(&m.message)),
        ),
        M::PayloadExit(m) => (
            24,
            Fields::new(&[Pid(&m.from_pid), Pid(&m.to_pid)]),
            Some(Term(&m.reason)),
        ),
        M::PayloadExitTt(m) => (
            25,
            Fields::new(&[Pid(&m.from_pid), Pid(&m.to_pid), Term(&m.trace_token)]),
            Some(Term(&m.reason)),
        ),
        M::PayloadExit2(m) => (
            26,
            Fields::new(&[Pid(&m.from_pid), Pid(&m.to_pid)]),
            Some(Term(&m.reason)),
        ),
        M::PayloadExit2Tt(m) => (
            27,
            Fields::new(&[Pid(&m.from_pid), Pid(&m.to_pid), Term(&m.trace_token)]),
            Some(Term(&m.reason)),
        ),
        M::PayloadMonitorPExit(m) => (
            28,
            Fields::new(&[Proc(&m.from_proc), Pid(&m.to_pid), Ref(&m.reference)]),
            Some(Term(&m.reason)),
        ),
        M::SpawnRequest(m) => (
            29,
            Fields::new(&[
                Ref(&m.req_id),
                Pid(&m.from_pid),
                Pid(&m.group_leader),
                Mfa(&m.mfa.module, &m.mfa.function, m.mfa.arity.value),
                List(&m.opt_list),
            ]),
            Some(List(&m.arg_list)),
        ),
        M::SpawnRequestTt(m) => (
            30,
            Fields::new(&[
                Ref(&m.req_id),
                Pid(&m.from_pid),
                Pid(&m.group_leader),
                Mfa(&m.mfa.module, &m.mfa.function, m.mfa.arity.value),
                List(&m.opt_list),
                Term(&m.trace_token),
            ]),
            Some(List(&m.arg_list)),
        ),
        M::SpawnReply(m) => (
            31,
            Fields::new(&[
                Ref(&m.req_id),
                Pid(&m.to_pid),
                Int(m.flags.value),
                Proc(&m.result),
            ]),
            None,
        ),
        M::SpawnReplyTt(m) => (
            32,
            Fields::new(&[
                Ref(&m.req_id),
                Pid(&m.to_pid),
                Int(m.flags.value),
                Proc(&m.result),
                Term(&m.trace_token),
            ]),
            None,
        ),
        M::AliasSend(m) => (
            33,
            Fields::new(&[Pid(&m.from_pid), Ref(&m.alias)]),
            Some(Term(&m.message)),
        ),
        M::AliasSendTt(m) => (
            34,
            Fields::new(&[Pid(&m.from_pid), Ref(&m.alias), Term(&m.trace_token)]),
            Some(Term(&m.message)),
        ),
        M::UnlinkId(m) => (
            35,
            Fields::new(&[Term(&m.id), Pid(&m.from_pid), Pid(&m.to_pid)]),
            None,
        ),
        M::UnlinkIdAck(m) => (
            36,
            Fields::new(&[Term(&m.id), Pid(&m.from_pid), Pid(&m.to_pid)]),
            None,
        ),
        M::Tick => return None,
    })
}

pub(super) fn put_field(out: &mut Enc<'_>, f: &F<'_>) -> Result<(), EncodeError> {
    match f {
        F::Pid(p) => put_pid(out, p),
        F::Atom(a) => put_atom(out, a),
        F::Ref(r) => put_ref(out, r),
        F::Proc(p) => put_pid_or_atom(out, p),
        F::Term(t) => put_term_in(out, t),
        F::List(l) => put_list(out, l),
        F::Int(i) => {
            put_int(out, *i);
            Ok(())
        }
        F::Mfa(m, f, a) => {
            out.extend_from_slice(&[SMALL_TUPLE, 3]);
            put_atom(out, m)?;
            put_atom(out, f)?;
            put_int(out, *a);
            Ok(())
        }
        F::Unused => put_atom_text(out, ""),
    }
}

/// Appends one packet carrying `msg` to `out`: the 4-byte length, then
/// with `dist_header` the distribution header without atom cache refs
/// (`131, 68, 0`, terms without their 131 byte, what a BEAM expects once
/// FRAGMENTS is negotiated), else the pass-through form (`112`, control and
/// payload each with its 131 byte). A [`Message::Tick`] is a tick. On
/// error nothing is appended.
pub fn encode_message(
    msg: &Message,
    out: &mut Vec<u8>,
    dist_header: bool,
) -> Result<(), EncodeError> {
    encode_in(msg, None, out, dist_header, None)
}

/// [`encode_message`], with `payload` (one term's bytes without its 131
/// byte, [`Encoded`](crate::term::Encoded)), when given, written as the
/// message's payload in place of its own.
pub fn encode_message_with(
    msg: &Message,
    payload: Option<&[u8]>,
    out: &mut Vec<u8>,
    dist_header: bool,
) -> Result<(), EncodeError> {
    encode_in(msg, payload, out, dist_header, None)
}

/// [`encode_message`] with a distribution header whose atom cache
/// references name the message's atoms through the connection's `cache`
/// ([`SendCache`]), as a BEAM node writes to another.
pub fn encode_message_cached(
    msg: &Message,
    out: &mut Vec<u8>,
    cache: &mut SendCache,
) -> Result<(), EncodeError> {
    encode_in(msg, None, out, true, Some(cache))
}

/// [`encode_message_cached`], with `payload` written as in
/// [`encode_message_with`], its atoms through the cache as well, as a
/// BEAM writes every atom of a message.
pub fn encode_message_cached_with(
    msg: &Message,
    payload: Option<&[u8]>,
    out: &mut Vec<u8>,
    cache: &mut SendCache,
) -> Result<(), EncodeError> {
    encode_in(msg, payload, out, true, Some(cache))
}

pub(super) fn encode_in(
    msg: &Message,
    payload_bytes: Option<&[u8]>,
    out: &mut Vec<u8>,
    dist_header: bool,
    cache: Option<&mut SendCache>,
) -> Result<(), EncodeError> {
    let Some((op, fields, payload)) = parts(msg) else {
        out.extend_from_slice(&[0, 0, 0, 0]);
        return Ok(());
    };
    put_packet(out, dist_header, cache, |out| {
        let fields = fields.as_slice();
        out.extend_from_slice(&[SMALL_TUPLE, 1 + fields.len() as u8, SMALL_INTEGER, op]);
        fields.iter().try_for_each(|f| put_field(out, f))?;
        if let Some(p) = &payload {
            if !dist_header {
                out.push(term::VERSION);
            }
            match payload_bytes {
                Some(bytes) => put_encoded(out, bytes)?,
                None => put_field(out, p)?,
            }
        }
        Ok(())
    })
}

/// Appends one packet to `out`: the 4-byte length, the header (see
/// [`encode_message`]), then what `body` writes (the control term, then
/// the payload with its 131 byte in the pass-through form). With a
/// distribution header and a `cache`, the atoms `body` writes go through
/// it and the header lists them (it is written after the terms, where
/// `131, 68, 0` held its place). On error nothing is appended and the
/// cache is as it was.
pub(in crate::dist) fn put_packet(
    out: &mut Vec<u8>,
    dist_header: bool,
    cache: Option<&mut SendCache>,
    body: impl FnOnce(&mut Enc<'_>) -> Result<(), EncodeError>,
) -> Result<(), EncodeError> {
    let mut cache = if dist_header { cache } else { None };
    let start = out.len();
    out.extend_from_slice(&[0, 0, 0, 0]);
    if dist_header {
        out.extend_from_slice(&[term::VERSION, 68, 0]);
    } else {
        out.extend_from_slice(&[PASS_THROUGH, term::VERSION]);
    }
    if let Some(c) = cache.as_deref_mut() {
        c.begin();
    }
    let written = body(&mut Enc {
        out: &mut *out,
        cache: cache.as_deref_mut(),
    });
    let header = match (&written, cache.as_deref_mut()) {
        (Ok(()), Some(c)) => c.header(),
        _ => &[0][..],
    };
    let len = out.len() - start - 4 + header.len() - 1;
    if let Err(e) = written.and(u32::try_from(len).map_err(|_| EncodeError::TooLarge(len))) {
        out.truncate(start);
        if let Some(c) = cache {
            c.abort();
        }
        return Err(e);
    }
    if header.len() > 1 {
        // The cache part of the header in place of its `0`.
        let at = start + 6;
        let end = out.len();
        out.resize(end + header.len() - 1, 0);
        out.copy_within(at + 1..end, at + header.len());
        out[at..at + header.len()].copy_from_slice(header);
    }
    out[start..start + 4].copy_from_slice(&(len as u32).to_be_bytes());
    if let Some(c) = cache {
        c.finish();
    }
    Ok(())
}
