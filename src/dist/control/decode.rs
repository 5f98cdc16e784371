//! Reading a message: its terms where they lie in the packet, each checked
//! and built in one pass, the control tuple made a `Message` (see the
//! parent module).

use crate::dist::codec::DecodeError;
use crate::term::decode::AtomRefs;
use crate::term::{self, Atom, FixInteger, Limits, List, Pid, PidOrAtom, Reference, Term, Tuple};
use erl_dist::message::Message;
use erl_dist::term::Mfa;
use std::io::Read;

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
    decode_terms_for(data, versioned, limits, refs, None)
}

/// Where a `SEND`, `SEND_SENDER` or `REG_SEND` goes.
#[derive(Debug, Clone, Copy)]
pub enum Target<'a> {
    /// A pid (`SEND`, `SEND_SENDER`).
    Pid(&'a Pid),
    /// A registered name (`REG_SEND`).
    Name(&'a str),
}

/// Whether a message to a [`Target`] would find a receiver (see
/// [`decode_terms_for`]).
pub type Receivers<'r> = &'r (dyn Fn(Target<'_>) -> bool + Send + Sync);

/// [`decode_terms_in`], asking `receivers` (if given) whether the message
/// would find a receiver once its control tuple is read: one that would
/// not is [`DecodeError::NoReceiver`], its payload neither decoded nor
/// checked, as BEAM drops a message to a name not registered or a pid
/// not alive without decoding it (a message of millions of elements to
/// no one cost hundreds of MB to decode here). Asked of the messages
/// shaped as BEAM sends them (`SEND`, `SEND_SENDER`, `REG_SEND`).
pub fn decode_terms_for(
    data: &[u8],
    versioned: bool,
    limits: Limits,
    refs: AtomRefs<'_>,
    receivers: Option<Receivers<'_>>,
) -> Result<Message, DecodeError> {
    decode_usual(data, versioned, limits, refs, receivers)
        .unwrap_or_else(|| decode_general(data, versioned, limits, refs))
}

/// [`decode_terms_in`] of any message: the control term decoded as a
/// [`Term`], then made a [`Message`].
pub(super) fn decode_general(
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
pub(super) fn read_term(
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
pub(super) fn payload_at(
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
pub(super) fn required(
    payload: Option<Result<Term, term::TermError>>,
) -> Result<Term, DecodeError> {
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
pub(super) fn decode_usual(
    data: &[u8],
    versioned: bool,
    limits: Limits,
    refs: AtomRefs<'_>,
    receivers: Option<Receivers<'_>>,
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
    if let Some(has) = receivers {
        let to = match &ctl {
            Usual::Send(to) | Usual::SendSender(_, to) => Target::Pid(to),
            Usual::RegSend(_, name) => Target::Name(&name.name),
        };
        // (Some bytes must follow: with none, the general path says why.)
        if f.end() < data.len() && !has(to) {
            return Some(Err(DecodeError::NoReceiver));
        }
    }
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
pub(super) fn message_from_terms(
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
            .map_err(|t| bad(format!("{} is not a {what}", term::show(&t))))
    }
    let pid = |t| want::<Pid>(t, "pid");
    let atom = |t| want::<Atom>(t, "atom");
    let reference = |t| want::<Reference>(t, "reference");
    let int = |t| want::<FixInteger>(t, "integer");
    let list = |t| want::<List>(t, "list");
    let proc = |t: Term| match t {
        Term::Pid(p) => Ok(PidOrAtom::Pid(p)),
        Term::Atom(a) => Ok(PidOrAtom::Atom(a)),
        t => Err(bad(format!("{} is not a pid or atom", term::show(&t)))),
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
        Some(t) => return Err(bad(format!("{} is not a integer", term::show(t)))),
        None => {
            return Err(bad(format!(
                "{} is not a non empty tuple",
                term::show(&ctl)
            )))
        }
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
pub(super) fn fields<const N: usize>(t: Tuple) -> Result<[Term; N], DecodeError> {
    if t.elements.len() != N {
        return Err(DecodeError::Control(format!(
            "{} is not a {N} elements tuple",
            term::show(&t)
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
pub(super) struct Segments<'a> {
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
