//! Our own control-message codec: a [`Message`] is written straight into
//! the connection's output buffer (length placeholder, header, control
//! tuple, payload, then the length patched in; with the peer's atom cache,
//! [`encode_message_cached`], the header's list of atoms is put in after
//! the terms), and a received message is validated once and decoded from
//! the packet bytes where they lie.
//!
//! Encoding writes the control tuple field by field (no intermediate
//! `Tuple`, no per-message `Vec`) and never re-reads what it wrote: it
//! knows where each term ends. The unused slot of `SEND` and `REG_SEND` is
//! the empty atom `''`, as the BEAM writes it (erl_dist 0.8 writes `{}`).
//! Terms are written as `eetf` 0.11 writes them (small atoms as
//! `SMALL_ATOM_UTF8_EXT`, a list of bytes as `STRING_EXT`, `NEW_PID_EXT`,
//! `NEWER_REFERENCE_EXT`, `NEW_FLOAT_EXT`), which is also what OTP 25's
//! `term_to_binary` writes for those terms; the rare kinds (big integers,
//! funs) go through `eetf`'s encoder.
//!
//! Decoding reads the control term and the payload where they lie in the
//! packet, each checked and built in one pass by our own term decoder
//! ([`crate::term::decode`](mod@crate::term::decode)), and turns the
//! control tuple into a [`Message`] as erl_dist's `Message::read_from`
//! would: no copy of the message, no second walk over its bytes.
//! [`decode_terms_two_pass`] keeps the former path (validator, then
//! erl_dist and `eetf`) as the reference for tests and fuzzing.

use super::codec::{DecodeError, PASS_THROUGH};
use super::send_cache::SendCache;
use crate::term::decode::AtomRefs;
use crate::term::{self, Atom, FixInteger, Limits, List, Pid, PidOrAtom, Reference, Term, Tuple};
use erl_dist::message::Message;
use erl_dist::term::Mfa;
use std::io::Read;

/// Why an outgoing message could not be encoded (it is dropped).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EncodeError {
    /// An atom longer than 65,535 bytes.
    #[error("atom of {0} bytes is too long to encode")]
    AtomTooLong(usize),
    /// A binary, list, tuple or map with more than 2^32 - 1 elements or bytes.
    #[error("term with {0} elements or bytes is too large to encode")]
    TooLarge(usize),
    /// `eetf` refused a term (a reference id over 65,535 words, ...).
    #[error("term: {0}")]
    Term(String),
}

pub(super) const SMALL_INTEGER: u8 = 97;
const INTEGER: u8 = 98;
pub(super) const SMALL_TUPLE: u8 = 104;
const LARGE_TUPLE: u8 = 105;
const NIL: u8 = 106;
const STRING: u8 = 107;
const LIST: u8 = 108;
const BINARY: u8 = 109;
const MAP: u8 = 116;
const NEW_FLOAT: u8 = 70;
const BIT_BINARY: u8 = 77;
const NEW_PID: u8 = 88;
const NEW_PORT: u8 = 89;
const NEWER_REFERENCE: u8 = 90;
const V4_PORT: u8 = 120;
const ATOM_UTF8: u8 = 118;
const SMALL_ATOM_UTF8: u8 = 119;
const ATOM_CACHE_REF: u8 = 82;

/// Where a message's terms are written: the connection's buffer, and the
/// connection's atom cache when its atoms go through it (then the caller
/// writes the header after the terms, [`put_packet`]).
pub(super) struct Enc<'a> {
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

fn put_u32(out: &mut Vec<u8>, n: usize) -> Result<(), EncodeError> {
    let n = u32::try_from(n).map_err(|_| EncodeError::TooLarge(n))?;
    out.extend_from_slice(&n.to_be_bytes());
    Ok(())
}

fn put_atom(out: &mut Enc<'_>, a: &Atom) -> Result<(), EncodeError> {
    put_atom_text(out, &a.name)
}

/// An atom: a reference into the message's atom cache entries when the
/// connection has one and the atom is cached, else its text.
fn put_atom_text(out: &mut Enc<'_>, text: &str) -> Result<(), EncodeError> {
    if let Some(i) = out.cache.as_deref_mut().and_then(|c| c.reference(text)) {
        out.out.extend_from_slice(&[ATOM_CACHE_REF, i]);
        return Ok(());
    }
    let name = text.as_bytes();
    if let Ok(n) = u8::try_from(name.len()) {
        out.extend_from_slice(&[SMALL_ATOM_UTF8, n]);
    } else if let Ok(n) = u16::try_from(name.len()) {
        out.push(ATOM_UTF8);
        out.extend_from_slice(&n.to_be_bytes());
    } else {
        return Err(EncodeError::AtomTooLong(name.len()));
    }
    out.extend_from_slice(name);
    Ok(())
}

fn put_int(out: &mut Vec<u8>, v: i32) {
    if (0..=255).contains(&v) {
        out.extend_from_slice(&[SMALL_INTEGER, v as u8]);
    } else {
        out.push(INTEGER);
        out.extend_from_slice(&v.to_be_bytes());
    }
}

pub(super) fn put_pid(out: &mut Enc<'_>, p: &Pid) -> Result<(), EncodeError> {
    put_pid_parts(out, &p.node, p.id, p.serial, p.creation)
}

/// A `NEW_PID_EXT` from its parts (what [`put_pid`] writes for the pid).
pub(super) fn put_pid_parts(
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

fn put_ref(out: &mut Enc<'_>, r: &Reference) -> Result<(), EncodeError> {
    put_ref_parts(out, &r.node, r.creation, &r.id)
}

/// A `NEWER_REFERENCE_EXT` from its parts (what [`put_ref`] writes for
/// the reference).
pub(super) fn put_ref_parts(
    out: &mut Enc<'_>,
    node: &Atom,
    creation: u32,
    id: &[u32],
) -> Result<(), EncodeError> {
    let n = u16::try_from(id.len()).map_err(|_| EncodeError::TooLarge(id.len()))?;
    out.push(NEWER_REFERENCE);
    out.extend_from_slice(&n.to_be_bytes());
    put_atom(out, node)?;
    out.extend_from_slice(&creation.to_be_bytes());
    for w in id {
        out.extend_from_slice(&w.to_be_bytes());
    }
    Ok(())
}

fn put_pid_or_atom(out: &mut Enc<'_>, p: &PidOrAtom) -> Result<(), EncodeError> {
    match p {
        PidOrAtom::Pid(p) => put_pid(out, p),
        PidOrAtom::Atom(a) => put_atom(out, a),
    }
}

fn put_list(out: &mut Enc<'_>, l: &List) -> Result<(), EncodeError> {
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
struct SkipVersion<'a> {
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
fn put_term_in(out: &mut Enc<'_>, t: &Term) -> Result<(), EncodeError> {
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

fn atom_size(a: &Atom) -> usize {
    let n = a.name.len();
    if n <= u8::MAX as usize {
        2 + n
    } else {
        3 + n
    }
}

fn int_size(v: i32) -> usize {
    if (0..=255).contains(&v) {
        2
    } else {
        5
    }
}

fn pid_size(node: &Atom) -> usize {
    1 + atom_size(node) + 12
}

fn ref_size(node: &Atom, words: usize) -> usize {
    3 + atom_size(node) + 4 + 4 * words
}

fn list_size(l: &List) -> usize {
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

fn field_size(f: &F<'_>) -> usize {
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
enum F<'a> {
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
struct Fields<'a> {
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
fn parts(msg: &Message) -> Option<(u8, Fields<'_>, Option<F<'_>>)> {
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

fn put_field(out: &mut Enc<'_>, f: &F<'_>) -> Result<(), EncodeError> {
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
    encode_in(msg, out, dist_header, None)
}

/// [`encode_message`] with a distribution header whose atom cache
/// references name the message's atoms through the connection's `cache`
/// ([`SendCache`]), as a BEAM node writes to another.
pub fn encode_message_cached(
    msg: &Message,
    out: &mut Vec<u8>,
    cache: &mut SendCache,
) -> Result<(), EncodeError> {
    encode_in(msg, out, true, Some(cache))
}

fn encode_in(
    msg: &Message,
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
            put_field(out, p)?;
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
pub(super) fn put_packet(
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

/// Decodes a whole message from its terms: `data` is the control term
/// followed by the optional payload, each with its 131 byte when
/// `versioned` (the pass-through form), without when they follow a
/// distribution header. Each term is checked and built in one pass
/// ([`term::decode`](mod@term::decode)), then the control tuple becomes a
/// [`Message`] as erl_dist's `Message::read_from` would make it.
pub fn decode_terms(data: &[u8], versioned: bool, limits: Limits) -> Result<Message, DecodeError> {
    decode_terms_in(data, versioned, limits, AtomRefs::NONE)
}

/// [`decode_terms`] of the terms after a distribution header whose atom
/// cache entries are `refs`.
pub fn decode_terms_in(
    data: &[u8],
    versioned: bool,
    limits: Limits,
    refs: AtomRefs<'_>,
) -> Result<Message, DecodeError> {
    decode_usual(data, versioned, limits, refs)
        .unwrap_or_else(|| decode_general(data, versioned, limits, refs))
}

/// [`decode_terms_in`] of any message: the control term decoded as a
/// [`Term`], then made a [`Message`].
fn decode_general(
    data: &[u8],
    versioned: bool,
    limits: Limits,
    refs: AtomRefs<'_>,
) -> Result<Message, DecodeError> {
    let ctl = read_term(data, 0, versioned, limits, refs)?;
    let payload = payload_at(data, ctl.end, versioned, limits, refs)?;
    message_from_terms(ctl.term, payload)
}

/// The term at `data[at..]`, with its 131 byte when `versioned`.
fn read_term(
    data: &[u8],
    at: usize,
    versioned: bool,
    limits: Limits,
    refs: AtomRefs<'_>,
) -> Result<term::decode::Decoded, term::TermError> {
    if versioned {
        term::decode::decode_versioned(data, at, limits)
    } else {
        term::decode::decode_body_in(data, at, limits, refs)
    }
}

/// The payload after a control term ending at `at`: `None` if the bytes
/// end there; refused if bytes are left after it.
fn payload_at(
    data: &[u8],
    at: usize,
    versioned: bool,
    limits: Limits,
    refs: AtomRefs<'_>,
) -> Result<Option<Result<Term, term::TermError>>, DecodeError> {
    if at >= data.len() {
        return Ok(None);
    }
    let p = read_term(data, at, versioned, limits, refs)?;
    if p.end != data.len() {
        return Err(DecodeError::Control(
            "trailing bytes after the payload".into(),
        ));
    }
    Ok(Some(p.term))
}

/// The payload an operation requires, or erl_dist's refusal.
fn required(payload: Option<Result<Term, term::TermError>>) -> Result<Term, DecodeError> {
    match payload {
        Some(Ok(t)) => Ok(t),
        Some(Err(e)) => Err(DecodeError::Control(e.to_string())),
        None => Err(DecodeError::Control("no payload".into())),
    }
}

/// The messages that carry nearly all traffic, `SEND` `{2, '', ToPid}`,
/// `SEND_SENDER` `{22, FromPid, ToPid}` and `REG_SEND` `{6, FromPid, '',
/// ToName}`, shaped as BEAM sends them: the control tuple is read field
/// by field straight into the message ([`term::decode::Fields`]), without
/// a `Term` tuple built, converted and dropped on the way (about a third
/// of the decoding of a small message). `None` for any other operation or
/// shape, or a field that is not plainly what it should be: the general
/// path then decodes the message, errors included, as before. The result
/// is the general path's in every case (a unit test and the `term` fuzz
/// target hold them together).
fn decode_usual(
    data: &[u8],
    versioned: bool,
    limits: Limits,
    refs: AtomRefs<'_>,
) -> Option<Result<Message, DecodeError>> {
    // The tuple and its fields are two levels.
    if limits.max_depth < 2 {
        return None;
    }
    let start = match (versioned, data.first()) {
        (false, _) => 0,
        (true, Some(&term::VERSION)) => 1,
        (true, _) => return None,
    };
    let mut f = term::decode::Fields::new(data, start, refs);
    let arity = f.tuple()?;
    let op = f.int()?;
    enum Usual {
        Send(Pid),
        SendSender(Pid, Pid),
        RegSend(Pid, Atom),
    }
    let ctl = match (op, arity) {
        (2, 3) => {
            f.atom()?;
            Usual::Send(f.pid()?)
        }
        (22, 3) => {
            let from = f.pid()?;
            Usual::SendSender(from, f.pid()?)
        }
        (6, 4) => {
            let from = f.pid()?;
            f.atom()?;
            Usual::RegSend(from, f.atom()?)
        }
        _ => return None,
    };
    let payload = payload_at(data, f.end(), versioned, limits, refs).and_then(required);
    Some(payload.map(|p| match ctl {
        Usual::Send(to) => Message::send(to, p),
        Usual::SendSender(from, to) => Message::send_sender(from, to, p),
        Usual::RegSend(from, name) => Message::reg_send(from, name, p),
    }))
}

/// The control tuple of a `REG_SEND` shaped as BEAM sends it, `{6,
/// FromPid, '', ToName}` (as [`decode_usual`] reads it): the sender, the
/// name, and where the payload starts in `data` (at its 131 byte when
/// `versioned`). `None` for anything else, and when no payload follows.
pub(crate) fn reg_send_head<'a>(
    data: &'a [u8],
    versioned: bool,
    refs: AtomRefs<'a>,
) -> Option<(Pid, &'a str, usize)> {
    let start = match (versioned, data.first()) {
        (false, _) => 0,
        (true, Some(&term::VERSION)) => 1,
        (true, _) => return None,
    };
    let mut f = term::decode::Fields::new(data, start, refs);
    if (f.tuple()?, f.int()?) != (4, 6) {
        return None;
    }
    let from = f.pid()?;
    f.atom()?;
    let name = f.atom_str()?;
    (f.end() < data.len()).then_some((from, name, f.end()))
}

/// A control term's message, as erl_dist 0.8 reads it (the same checks,
/// the same refusals), except `SEND_TT`, read as the protocol lays it out:
/// `{12, Unused, ToPid, TraceToken}` (erl_dist swaps the last two).
/// `payload` is `None` when there is none; a payload is ignored by
/// operations without one, as erl_dist never reads it.
fn message_from_terms(
    ctl: Result<Term, term::TermError>,
    payload: Option<Result<Term, term::TermError>>,
) -> Result<Message, DecodeError> {
    fn bad(e: String) -> DecodeError {
        DecodeError::Control(e)
    }
    fn want<T>(t: Term, what: &str) -> Result<T, DecodeError>
    where
        Term: TryInto<T, Error = Term>,
    {
        t.try_into()
            .map_err(|t| bad(format!("{t} is not a {what}")))
    }
    let pid = |t| want::<Pid>(t, "pid");
    let atom = |t| want::<Atom>(t, "atom");
    let reference = |t| want::<Reference>(t, "reference");
    let int = |t| want::<FixInteger>(t, "integer");
    let list = |t| want::<List>(t, "list");
    let proc = |t: Term| match t {
        Term::Pid(p) => Ok(PidOrAtom::Pid(p)),
        Term::Atom(a) => Ok(PidOrAtom::Atom(a)),
        t => Err(bad(format!("{t} is not a pid or atom"))),
    };
    let mfa = |t| {
        let [module, function, arity] = fields::<3>(want::<Tuple>(t, "tuple")?)?;
        Ok::<_, DecodeError>(Mfa {
            module: atom(module)?,
            function: atom(function)?,
            arity: int(arity)?,
        })
    };
    let ctl = want::<Tuple>(ctl.map_err(|e| bad(e.to_string()))?, "Tuple")?;
    let op = match ctl.elements.first() {
        Some(Term::FixInteger(i)) => i.value,
        Some(t) => return Err(bad(format!("{t} is not a integer"))),
        None => return Err(bad(format!("{ctl} is not a non empty tuple"))),
    };
    let mut payload = payload;
    let mut payload = move || required(payload.take());
    use Message as M;
    // Operations whose control tuples have the same shape share an arm.
    Ok(match op {
        1 | 4 | 7 => {
            let make: fn(Pid, Pid) -> Message = match op {
                1 => M::link,
                4 => M::unlink,
                _ => M::group_leader,
            };
            let [_, from, to] = fields(ctl)?;
            make(pid(from)?, pid(to)?)
        }
        3 | 8 => {
            let make: fn(Pid, Pid, Term) -> Message = if op == 3 { M::exit } else { M::exit2 };
            let [_, from, to, reason] = fields(ctl)?;
            make(pid(from)?, pid(to)?, reason)
        }
        13 | 18 => {
            let make: fn(Pid, Pid, Term, Term) -> Message =
                if op == 13 { M::exit_tt } else { M::exit2_tt };
            let [_, from, to, token, reason] = fields(ctl)?;
            make(pid(from)?, pid(to)?, reason, token)
        }
        22 | 24 | 26 => {
            let make: fn(Pid, Pid, Term) -> Message = match op {
                22 => M::send_sender,
                24 => M::payload_exit,
                _ => M::payload_exit2,
            };
            let [_, from, to] = fields(ctl)?;
            make(pid(from)?, pid(to)?, payload()?)
        }
        23 | 25 | 27 => {
            let make: fn(Pid, Pid, Term, Term) -> Message = match op {
                23 => M::send_sender_tt,
                25 => M::payload_exit_tt,
                _ => M::payload_exit2_tt,
            };
            let [_, from, to, token] = fields(ctl)?;
            make(pid(from)?, pid(to)?, payload()?, token)
        }
        19 | 20 => {
            let make: fn(Pid, PidOrAtom, Reference) -> Message = if op == 19 {
                M::monitor_p
            } else {
                M::demonitor_p
            };
            let [_, from, to, r] = fields(ctl)?;
            make(pid(from)?, proc(to)?, reference(r)?)
        }
        35 | 36 => {
            let make: fn(Term, Pid, Pid) -> Message = if op == 35 {
                M::unlink_id
            } else {
                M::unlink_id_ack
            };
            let [_, id, from, to] = fields(ctl)?;
            make(id, pid(from)?, pid(to)?)
        }
        2 => {
            let [_, _, to] = fields(ctl)?;
            M::send(pid(to)?, payload()?)
        }
        5 => {
            let [_] = fields(ctl)?;
            M::node_link()
        }
        6 => {
            let [_, from, _, name] = fields(ctl)?;
            M::reg_send(pid(from)?, atom(name)?, payload()?)
        }
        12 => {
            let [_, _, to, token] = fields(ctl)?;
            M::send_tt(pid(to)?, payload()?, token)
        }
        16 => {
            let [_, from, _, name, token] = fields(ctl)?;
            M::reg_send_tt(pid(from)?, atom(name)?, payload()?, token)
        }
        21 => {
            let [_, from, to, r, reason] = fields(ctl)?;
            M::monitor_p_exit(proc(from)?, pid(to)?, reference(r)?, reason)
        }
        28 => {
            let [_, from, to, r] = fields(ctl)?;
            M::payload_monitor_p_exit(proc(from)?, pid(to)?, reference(r)?, payload()?)
        }
        29 => {
            let [_, r, from, gl, m, opts] = fields(ctl)?;
            let (r, from, gl, m, opts) =
                (reference(r)?, pid(from)?, pid(gl)?, mfa(m)?, list(opts)?);
            M::spawn_request(r, from, gl, m, opts, list(payload()?)?)
        }
        30 => {
            let [_, r, from, gl, m, opts, token] = fields(ctl)?;
            let (r, from, gl, m, opts) =
                (reference(r)?, pid(from)?, pid(gl)?, mfa(m)?, list(opts)?);
            M::spawn_request_tt(r, from, gl, m, opts, list(payload()?)?, token)
        }
        31 => {
            let [_, r, to, flags, result] = fields(ctl)?;
            M::spawn_reply(reference(r)?, pid(to)?, int(flags)?, proc(result)?)
        }
        32 => {
            let [_, r, to, flags, result, token] = fields(ctl)?;
            M::spawn_reply_tt(reference(r)?, pid(to)?, int(flags)?, proc(result)?, token)
        }
        33 => {
            let [_, from, alias] = fields(ctl)?;
            M::alias_send(pid(from)?, reference(alias)?, payload()?)
        }
        34 => {
            let [_, from, alias, token] = fields(ctl)?;
            M::alias_send_tt(pid(from)?, reference(alias)?, payload()?, token)
        }
        op => return Err(DecodeError::UnsupportedOp(op)),
    })
}

/// A tuple's `N` elements, or erl_dist's refusal of a tuple of another
/// size.
fn fields<const N: usize>(t: Tuple) -> Result<[Term; N], DecodeError> {
    if t.elements.len() != N {
        return Err(DecodeError::Control(format!(
            "{t} is not a {N} elements tuple"
        )));
    }
    Ok(t.elements.try_into().expect("N elements"))
}

/// What [`decode_terms`] did before it had its own decoder: each term
/// validated ([`term::validate_body_depth`]), then erl_dist's
/// `Message::read_from` on the same bytes. The reference the differential
/// tests and the fuzz target hold [`decode_terms`] to; not used to read
/// the network.
pub fn decode_terms_two_pass(
    data: &[u8],
    versioned: bool,
    limits: Limits,
) -> Result<Message, DecodeError> {
    let validate = |at| {
        if versioned {
            term::validate_depth(data, at, limits)
        } else {
            term::validate_body_depth(data, at, limits)
        }
    };
    let (cend, mut depth) = validate(0)?;
    if cend < data.len() {
        let (pend, pdepth) = validate(cend)?;
        if pend != data.len() {
            return Err(DecodeError::Control(
                "trailing bytes after the payload".into(),
            ));
        }
        depth = depth.max(pdepth);
    }
    let version: &[u8] = if versioned { &[] } else { &[term::VERSION] };
    let mut r = Segments {
        parts: [version, &data[..cend], version, &data[cend..]],
        at: 0,
    };
    term::with_stack_for(depth, || Message::read_from(&mut r)).map_err(|e| match e {
        erl_dist::message::RecvError::UnsupportedOp { op } => DecodeError::UnsupportedOp(op),
        e => DecodeError::Control(e.to_string()),
    })
}

/// Reads slices one after the other. `eetf` reads a byte or a few at a
/// time through `read_exact`: served here from the current slice when it
/// holds them (as `&[u8]` does), which `std::io::Chain`'s generic
/// `read_exact` loop does not.
struct Segments<'a> {
    parts: [&'a [u8]; 4],
    at: usize,
}

impl Read for Segments<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.at < self.parts.len() {
            let n = self.parts[self.at].read(buf)?;
            if n > 0 || buf.is_empty() {
                return Ok(n);
            }
            self.at += 1;
        }
        Ok(0)
    }

    fn read_exact(&mut self, buf: &mut [u8]) -> std::io::Result<()> {
        while self.at < self.parts.len() && self.parts[self.at].is_empty() {
            self.at += 1;
        }
        if let Some(p) = self.parts.get_mut(self.at) {
            if p.len() >= buf.len() {
                return p.read_exact(buf);
            }
        }
        // Across slices.
        let mut done = 0;
        while done < buf.len() {
            match self.read(&mut buf[done..])? {
                0 => return Err(std::io::ErrorKind::UnexpectedEof.into()),
                n => done += n,
            }
        }
        Ok(())
    }
}

/// Decodes a message in pass-through form without its 112 byte (control
/// term and payload, each with its 131 byte).
pub fn decode_message(msg: &[u8], limits: Limits) -> Result<Message, DecodeError> {
    decode_terms(msg, true, limits)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::term::{atom, binary, int, list, map, tuple, TermError};
    use proptest::prelude::*;

    /// Ours and the former path (validator, erl_dist) agree on `data`: the
    /// same message or the same kind of error. `SEND_TT` excepted, which
    /// erl_dist reads with its last two elements swapped.
    pub(crate) fn check_against_two_pass(data: &[u8], versioned: bool) {
        let limits = Limits::default();
        let ours = decode_terms(data, versioned, limits);
        let none = AtomRefs::NONE;
        if let Some(usual) = decode_usual(data, versioned, limits, none) {
            // the direct read of the usual messages is the general path's
            assert_eq!(
                usual,
                decode_general(data, versioned, limits, none),
                "{data:?}"
            );
        }
        let old = decode_terms_two_pass(data, versioned, limits);
        let same = match (&ours, &old) {
            (Ok(a), Ok(b)) => a == b,
            (Err(DecodeError::Control(_)), Err(DecodeError::Control(_))) => true,
            (Err(DecodeError::Term(TermError::Decode(_))), _) => false,
            (Err(a), Err(b)) => a == b,
            (Ok(Message::SendTt(_)), _) | (_, Ok(Message::SendTt(_))) => true,
            _ => false,
        };
        assert!(same, "{data:?}\n ours {ours:?}\n old  {old:?}");
    }

    /// [`check_against_two_pass`] on every prefix of `data` and with each
    /// byte set to a few values.
    pub(crate) fn check_mutations(data: &[u8], versioned: bool) {
        for n in 0..data.len() {
            check_against_two_pass(&data[..n], versioned);
        }
        let mut b = data.to_vec();
        for at in 0..b.len() {
            let was = b[at];
            for v in [0, 1, 2, 12, 97, 104, 106, 119, 255, was ^ 1, was ^ 0x80] {
                b[at] = v;
                check_against_two_pass(&b, versioned);
            }
            b[at] = was;
        }
    }

    #[test]
    fn every_kind_and_its_mutations_decode_as_before() {
        let payload = tuple(vec![
            atom("m"),
            list(vec![int(1), atom("é")]),
            binary(vec![7; 3]),
        ]);
        for msg in all_kinds(payload) {
            for header in [false, true] {
                let mut out = vec![];
                encode_message(&msg, &mut out, header).unwrap();
                let data = if header { &out[7..] } else { &out[5..] };
                assert_eq!(decode_terms(data, !header, Limits::default()).unwrap(), msg);
                check_mutations(data, !header);
            }
        }
        // Control terms that are no control tuple, tuples longer than any,
        // unknown operations.
        for op in [1, 2, 9, 99] {
            for len in [1usize, 2, 7, 8, 300] {
                let elements =
                    std::iter::once(int(op)).chain(std::iter::repeat_n(list(vec![]), len - 1));
                let mut b = vec![];
                tuple(elements.collect()).encode(&mut b).unwrap();
                b.extend_from_slice(&[131, 106]);
                check_against_two_pass(&b, true);
            }
        }
        for bad in [
            &[131, 106][..],
            &[131, 104, 0],
            &[131, 104, 1, 106],
            &[131, 97, 1],
        ] {
            check_against_two_pass(bad, true);
        }
        // SEND_TT as the protocol lays it out: {12, '', ToPid, Token}.
        let tt = Message::send_tt(pid(2), atom("m"), atom("token"));
        let mut out = vec![];
        encode_message(&tt, &mut out, true).unwrap();
        assert_eq!(
            decode_terms(&out[7..], false, Limits::default()).unwrap(),
            tt
        );
    }

    fn pid(n: u32) -> Pid {
        Pid::new("a@h", n, 0, 7)
    }

    fn reference() -> Reference {
        Reference {
            node: Atom::from("b@h"),
            id: vec![1, 2, 3],
            creation: 9,
        }
    }

    /// Every message kind, with a payload where it has one.
    fn all_kinds(payload: Term) -> Vec<Message> {
        let p = payload;
        vec![
            Message::link(pid(1), pid(2)),
            Message::send(pid(2), p.clone()),
            Message::exit(pid(1), pid(2), p.clone()),
            Message::unlink(pid(1), pid(2)),
            Message::node_link(),
            Message::reg_send(pid(1), "name".into(), p.clone()),
            Message::group_leader(pid(1), pid(2)),
            Message::exit2(pid(1), pid(2), p.clone()),
            Message::exit_tt(pid(1), pid(2), p.clone(), atom("tt")),
            Message::reg_send_tt(pid(1), "n".into(), p.clone(), atom("tt")),
            Message::exit2_tt(pid(1), pid(2), p.clone(), atom("tt")),
            Message::monitor_p(pid(1), PidOrAtom::Pid(pid(2)), reference()),
            Message::demonitor_p(pid(1), PidOrAtom::Atom("x".into()), reference()),
            Message::monitor_p_exit(PidOrAtom::Pid(pid(2)), pid(1), reference(), p.clone()),
            Message::send_sender(pid(1), pid(2), p.clone()),
            Message::send_sender_tt(pid(1), pid(2), p.clone(), atom("tt")),
            Message::payload_exit(pid(1), pid(2), p.clone()),
            Message::payload_exit_tt(pid(1), pid(2), p.clone(), atom("tt")),
            Message::payload_exit2(pid(1), pid(2), p.clone()),
            Message::payload_exit2_tt(pid(1), pid(2), p.clone(), atom("tt")),
            Message::payload_monitor_p_exit(
                PidOrAtom::Atom("reg".into()),
                pid(1),
                reference(),
                p.clone(),
            ),
            Message::spawn_request(
                reference(),
                pid(1),
                pid(3),
                erl_dist::term::Mfa {
                    module: "m".into(),
                    function: "f".into(),
                    arity: 2.into(),
                },
                List::from(vec![atom("link")]),
                List::from(vec![p.clone(), int(-5)]),
            ),
            Message::spawn_reply(reference(), pid(1), 1.into(), PidOrAtom::Pid(pid(4))),
            Message::spawn_reply_tt(
                reference(),
                pid(1),
                0.into(),
                PidOrAtom::Atom("badarg".into()),
                atom("tt"),
            ),
            Message::unlink_id(int(77), pid(1), pid(2)),
            Message::unlink_id_ack(crate::term::uint(1 << 40), pid(1), pid(2)),
            Message::alias_send(pid(1), reference(), p.clone()),
            Message::alias_send_tt(pid(1), reference(), p, atom("tt")),
        ]
    }

    /// What erl_dist's own encoder writes, with the `{}` it puts in the
    /// unused slot replaced by `''` as we (and the BEAM) write it.
    fn erl_dist_bytes(msg: &Message) -> Vec<u8> {
        let mut v = vec![];
        msg.clone().write_into(&mut v).unwrap();
        let unused: &[u8] = match msg {
            Message::Send(_) => &[131, 104, 3, 97, 2],
            Message::RegSend(_) => &[131, 104, 4, 97, 6],
            Message::RegSendTt(_) => &[131, 104, 5, 97, 16],
            _ => return v,
        };
        assert!(v.starts_with(unused));
        let at = match msg {
            Message::Send(_) => unused.len(),
            _ => term::validate_body(&v, unused.len(), Limits::default()).unwrap(),
        };
        assert_eq!(&v[at..at + 2], &[104, 0]);
        v.splice(at..at + 2, [119, 0]);
        v
    }

    #[test]
    fn pass_through_bytes_equal_erl_dist_and_decode_back() {
        let payload = tuple(vec![
            atom("ok"),
            binary(vec![1, 2, 3]),
            list(vec![int(1), int(300), atom("é")]),
            map(vec![(atom("k"), int(-1))]),
            crate::term::string_to_charlist("abc"),
        ]);
        for msg in all_kinds(payload) {
            let mut out = vec![];
            encode_message(&msg, &mut out, false).unwrap();
            let len = u32::from_be_bytes(out[..4].try_into().unwrap()) as usize;
            assert_eq!(len, out.len() - 4);
            assert_eq!(out[4], PASS_THROUGH);
            let body = &out[5..];
            // SEND_TT's tuple is laid out as the protocol says; erl_dist 0.8
            // writes it another way.
            if !matches!(msg, Message::SendTt(_)) {
                assert_eq!(body, &erl_dist_bytes(&msg)[..], "{msg:?}");
            }
            assert_eq!(decode_message(body, Limits::default()).unwrap(), msg);
            // The distribution-header form: the same terms without 131s.
            let mut h = vec![];
            encode_message(&msg, &mut h, true).unwrap();
            assert_eq!(&h[4..7], &[131, 68, 0]);
            let got = decode_terms(&h[7..], false, Limits::default()).unwrap();
            assert_eq!(got, msg);
            let mut stripped = body.to_vec();
            stripped.remove(0);
            let cend = term::validate_body(&stripped, 0, Limits::default()).unwrap();
            if cend < stripped.len() {
                stripped.remove(cend);
            }
            assert_eq!(&h[7..], &stripped[..]);
        }
    }

    #[test]
    fn a_tick_and_unencodable_messages() {
        let mut out = vec![9];
        encode_message(&Message::Tick, &mut out, true).unwrap();
        assert_eq!(out, [9, 0, 0, 0, 0]);
        let long = Atom::from("x".repeat(70_000).as_str());
        let bad = Message::reg_send(pid(1), long, atom("m"));
        assert_eq!(
            encode_message(&bad, &mut out, true),
            Err(EncodeError::AtomTooLong(70_000))
        );
        assert_eq!(out, [9, 0, 0, 0, 0], "nothing appended on error");
    }

    #[test]
    fn negative_integers_in_a_list() {
        let t = list(vec![int(-1), int(2)]);
        let mut ours = vec![131];
        put_term(&mut ours, &t).unwrap();
        assert_eq!(
            ours,
            [131, 108, 0, 0, 0, 2, 98, 255, 255, 255, 255, 97, 2, 106]
        );
        assert_eq!(term::decode(&ours, Limits::default()).unwrap(), t);
    }

    fn arb_term() -> impl Strategy<Value = Term> {
        // Non-negative: eetf 0.11 writes a list of integers below 256 as a
        // byte string, negative ones included ([-1] becomes [255]); we do
        // not (`negative_integers_in_a_list`).
        let leaf = prop_oneof![
            (0..i32::MAX).prop_map(int),
            "[a-zé]{0,300}".prop_map(|s| atom(&s)),
            proptest::collection::vec(any::<u8>(), 0..40).prop_map(binary),
            any::<f64>()
                .prop_filter("finite", |f| f.is_finite())
                .prop_map(|f| Term::from(erl_dist::term::Float::try_from(f).unwrap())),
            (any::<u32>(), any::<u32>()).prop_map(|(i, c)| Term::from(Pid::new("n@h", i, 0, c))),
            any::<u64>().prop_map(crate::term::uint),
            proptest::collection::vec(any::<u8>(), 1..8)
                .prop_map(|b| Term::from(erl_dist::term::BitBinary::from((b, 3)))),
        ];
        leaf.prop_recursive(4, 64, 8, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..8).prop_map(tuple),
                proptest::collection::vec(inner.clone(), 0..8).prop_map(list),
                proptest::collection::vec((inner.clone(), inner), 0..4).prop_map(map),
            ]
        })
    }

    proptest! {
        /// The sizes counted against a peer's queue limits are what the
        /// writer writes, for terms and for whole messages.
        #[test]
        fn sizes_are_what_is_written(t in arb_term()) {
            let mut out = vec![];
            put_term(&mut out, &t).unwrap();
            prop_assert_eq!(term_size(&t), out.len());
            let long = Pid::new("a_rather_long_node_name@some.host", 1, 2, 3);
            for m in [
                Message::send(pid(2), t.clone()),
                Message::reg_send(long.clone(), "name".into(), t.clone()),
                Message::exit(pid(1), long, t.clone()),
                Message::monitor_p(pid(1), PidOrAtom::Atom("x".into()), reference()),
                Message::spawn_request(
                    reference(),
                    pid(1),
                    pid(2),
                    Mfa { module: "m".into(), function: "f".into(), arity: 300.into() },
                    List::from(vec![t.clone()]),
                    List::from(vec![]),
                ),
                Message::Tick,
            ] {
                let mut out = vec![];
                encode_message(&m, &mut out, true).unwrap();
                prop_assert_eq!(message_size(&m), out.len(), "{:?}", m);
            }
        }

        /// Our term writer gives eetf's bytes, without the 131.
        #[test]
        fn put_term_is_eetf_without_the_version(t in arb_term()) {
            let mut ours = vec![];
            put_term(&mut ours, &t).unwrap();
            let mut theirs = vec![];
            t.encode(&mut theirs).unwrap();
            prop_assert_eq!(&ours[..], &theirs[1..]);
        }
    }
}
