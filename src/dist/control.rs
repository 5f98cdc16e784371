//! Our own control-message codec: a [`Message`] is written straight into
//! the connection's output buffer (length placeholder, header, control
//! tuple, payload, then the length patched in), and a received message is
//! validated once and decoded from the packet bytes where they lie.
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
//! Decoding checks the control term and the payload with
//! [`crate::term::validate_body_depth`] (once each) and hands the very same
//! bytes to erl_dist's `Message::read_from` through a reader over slices
//! that supplies the 131 version bytes a distribution header leaves out:
//! no copy of the message, no second validation.

use super::codec::{DecodeError, PASS_THROUGH};
use crate::term::{self, Atom, Limits, List, Pid, PidOrAtom, Reference, Term};
use erl_dist::message::Message;
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

const SMALL_INTEGER: u8 = 97;
const INTEGER: u8 = 98;
const SMALL_TUPLE: u8 = 104;
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

fn put_u32(out: &mut Vec<u8>, n: usize) -> Result<(), EncodeError> {
    let n = u32::try_from(n).map_err(|_| EncodeError::TooLarge(n))?;
    out.extend_from_slice(&n.to_be_bytes());
    Ok(())
}

fn put_atom(out: &mut Vec<u8>, a: &Atom) -> Result<(), EncodeError> {
    let name = a.name.as_bytes();
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

fn put_pid(out: &mut Vec<u8>, p: &Pid) -> Result<(), EncodeError> {
    out.push(NEW_PID);
    put_atom(out, &p.node)?;
    out.extend_from_slice(&p.id.to_be_bytes());
    out.extend_from_slice(&p.serial.to_be_bytes());
    out.extend_from_slice(&p.creation.to_be_bytes());
    Ok(())
}

fn put_ref(out: &mut Vec<u8>, r: &Reference) -> Result<(), EncodeError> {
    let n = u16::try_from(r.id.len()).map_err(|_| EncodeError::TooLarge(r.id.len()))?;
    out.push(NEWER_REFERENCE);
    out.extend_from_slice(&n.to_be_bytes());
    put_atom(out, &r.node)?;
    out.extend_from_slice(&r.creation.to_be_bytes());
    for w in &r.id {
        out.extend_from_slice(&w.to_be_bytes());
    }
    Ok(())
}

fn put_pid_or_atom(out: &mut Vec<u8>, p: &PidOrAtom) -> Result<(), EncodeError> {
    match p {
        PidOrAtom::Pid(p) => put_pid(out, p),
        PidOrAtom::Atom(a) => put_atom(out, a),
    }
}

fn put_list(out: &mut Vec<u8>, l: &List) -> Result<(), EncodeError> {
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
            put_term(out, e)?;
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
                put_term(out, e)?;
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
                put_term(out, e)?;
            }
            put_term(out, &l.last)?;
        }
        Term::Map(m) => {
            out.push(MAP);
            put_u32(out, m.map.len())?;
            for (k, v) in &m.map {
                put_term(out, k)?;
                put_term(out, v)?;
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
                out: &mut *out,
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

fn put_field(out: &mut Vec<u8>, f: &F<'_>) -> Result<(), EncodeError> {
    match f {
        F::Pid(p) => put_pid(out, p),
        F::Atom(a) => put_atom(out, a),
        F::Ref(r) => put_ref(out, r),
        F::Proc(p) => put_pid_or_atom(out, p),
        F::Term(t) => put_term(out, t),
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
        F::Unused => {
            out.extend_from_slice(&[SMALL_ATOM_UTF8, 0]);
            Ok(())
        }
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
    let start = out.len();
    out.extend_from_slice(&[0, 0, 0, 0]);
    let Some((op, fields, payload)) = parts(msg) else {
        return Ok(());
    };
    if dist_header {
        out.extend_from_slice(&[term::VERSION, 68, 0]);
    } else {
        out.extend_from_slice(&[PASS_THROUGH, term::VERSION]);
    }
    let fields = fields.as_slice();
    out.extend_from_slice(&[SMALL_TUPLE, 1 + fields.len() as u8, SMALL_INTEGER, op]);
    let mut r = fields.iter().try_for_each(|f| put_field(out, f));
    if let (Ok(()), Some(p)) = (&r, &payload) {
        if !dist_header {
            out.push(term::VERSION);
        }
        r = put_field(out, p);
    }
    if let Err(e) = r {
        out.truncate(start);
        return Err(e);
    }
    let len = out.len() - start - 4;
    match u32::try_from(len) {
        Ok(n) => out[start..start + 4].copy_from_slice(&n.to_be_bytes()),
        Err(_) => {
            out.truncate(start);
            return Err(EncodeError::TooLarge(len));
        }
    }
    Ok(())
}

/// Decodes a whole message from its terms: `data` is the control term
/// followed by the optional payload, each with its 131 byte when
/// `versioned` (the pass-through form), without when they follow a
/// distribution header. Each term is validated once, then erl_dist
/// decodes the same bytes (on a stack grown for the depth measured,
/// [`term::with_stack_for`]).
pub fn decode_terms(data: &[u8], versioned: bool, limits: Limits) -> Result<Message, DecodeError> {
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
mod tests {
    use super::*;
    use crate::term::{atom, binary, int, list, map, tuple};
    use proptest::prelude::*;

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
