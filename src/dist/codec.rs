//! Framing after the handshake, fragment reassembly, and control messages.
//!
//! Every packet is a 4-byte big-endian length; length 0 is a tick. Without
//! an atom cache a packet is either `112` (pass-through) followed by the
//! control term and the optional payload, each with its own 131 byte, or a
//! distribution header (`131, 68`: whole message, `131, 69`: first fragment,
//! `131, 70`: further fragment) followed by terms without their 131 byte.
//! Both forms are turned here into the pass-through form that
//! `erl_dist::message::Message::read_from` decodes.
//!
//! erl_dist 0.8 has no fragments and trusts its input, so this module wraps
//! it: the bytes are checked by [`crate::term::validate`] before erl_dist
//! sees them, and reassembly is bounded.

use crate::term::{self, Limits, TermError};
use bytes::{Buf, BytesMut};
use erl_dist::message::Message;
use std::collections::HashMap;

/// Pass-through packet type.
pub const PASS_THROUGH: u8 = 112;

/// Why a packet from a peer could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// A packet larger than the configured limit.
    #[error("packet of {0} bytes is over the limit")]
    TooLarge(usize),
    /// A packet type this node does not speak.
    #[error("unknown packet type {0}")]
    UnknownType(u8),
    /// A distribution header that refers to an atom cache (never negotiated).
    #[error("distribution header uses the atom cache, which was not negotiated")]
    AtomCache,
    /// A fragment out of order, or too many messages in reassembly.
    #[error("fragment error: {0}")]
    Fragment(&'static str),
    /// A malformed term.
    #[error(transparent)]
    Term(#[from] TermError),
    /// A control message erl_dist could not decode.
    #[error("control message: {0}")]
    Control(String),
    /// A control message with an operation this node does not know; the
    /// message is dropped, the connection stays.
    #[error("unsupported control operation {0}")]
    UnsupportedOp(i32),
}

impl DecodeError {
    /// Whether the byte stream itself can no longer be trusted (a packet
    /// length over the limit, an unknown packet type, atom cache refs that
    /// were never negotiated, a broken fragment sequence): the connection
    /// must close. Every other error is about the content of one complete
    /// message (a term too deep, malformed or with an unsupported tag, a
    /// control message erl_dist cannot use): that message is dropped and
    /// the connection lives on.
    pub fn is_fatal(&self) -> bool {
        match self {
            DecodeError::TooLarge(_)
            | DecodeError::UnknownType(_)
            | DecodeError::AtomCache
            | DecodeError::Fragment(_) => true,
            DecodeError::Term(_) | DecodeError::Control(_) | DecodeError::UnsupportedOp(_) => false,
        }
    }
}

/// One packet.
#[derive(Debug, PartialEq, Eq)]
pub enum Packet {
    /// A tick (length 0).
    Tick,
    /// A packet body.
    Data(BytesMut),
}

/// Takes one packet off the front of `buf`: `Ok(None)` when more bytes are
/// needed.
pub fn decode_packet(buf: &mut BytesMut, max: usize) -> Result<Option<Packet>, DecodeError> {
    if buf.len() < 4 {
        return Ok(None);
    }
    let len = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
    if len > max {
        return Err(DecodeError::TooLarge(len));
    }
    if len == 0 {
        buf.advance(4);
        return Ok(Some(Packet::Tick));
    }
    if buf.len() < 4 + len {
        buf.reserve(4 + len - buf.len());
        return Ok(None);
    }
    buf.advance(4);
    Ok(Some(Packet::Data(buf.split_to(len))))
}

struct Partial {
    next_id: u64,
    data: Vec<u8>,
}

/// Turns packet bodies into whole messages in pass-through form (control
/// term and payload, each with its 131 byte), reassembling fragments.
pub struct Reassembler {
    partial: HashMap<u64, Partial>,
    max_message: usize,
    max_partial: usize,
    limits: Limits,
}

impl Reassembler {
    /// Messages up to `max_message` bytes; at most 64 in reassembly at once.
    pub fn new(max_message: usize) -> Self {
        Reassembler {
            partial: HashMap::new(),
            max_message,
            max_partial: 64,
            limits: Limits::default(),
        }
    }

    /// Feeds one packet body; returns a whole message when one is complete.
    pub fn push(&mut self, body: &[u8]) -> Result<Option<Vec<u8>>, DecodeError> {
        match body.first() {
            Some(&PASS_THROUGH) => Ok(Some(body[1..].to_vec())),
            Some(&term::VERSION) => match body.get(1) {
                Some(68) => {
                    let rest = no_atom_cache(body, 2)?;
                    self.restore_versions(rest).map(Some)
                }
                Some(69) => {
                    let seq = be_u64(body, 2)?;
                    let id = be_u64(body, 10)?;
                    let rest = no_atom_cache(body, 18)?;
                    if id == 0 {
                        return Err(DecodeError::Fragment("fragment id 0"));
                    }
                    if id == 1 {
                        return self.restore_versions(rest).map(Some);
                    }
                    if self.partial.len() >= self.max_partial {
                        return Err(DecodeError::Fragment("too many messages in reassembly"));
                    }
                    if rest.len() > self.max_message {
                        return Err(DecodeError::TooLarge(rest.len()));
                    }
                    self.partial.insert(
                        seq,
                        Partial {
                            next_id: id - 1,
                            data: rest.to_vec(),
                        },
                    );
                    Ok(None)
                }
                Some(70) => {
                    let seq = be_u64(body, 2)?;
                    let id = be_u64(body, 10)?;
                    let rest = &body[18..];
                    let p = self
                        .partial
                        .get_mut(&seq)
                        .ok_or(DecodeError::Fragment("continuation of an unknown message"))?;
                    if p.next_id != id || id == 0 {
                        return Err(DecodeError::Fragment("fragments out of order"));
                    }
                    if p.data.len() + rest.len() > self.max_message {
                        return Err(DecodeError::TooLarge(p.data.len() + rest.len()));
                    }
                    p.data.extend_from_slice(rest);
                    p.next_id -= 1;
                    if id == 1 {
                        let p = self.partial.remove(&seq).expect("present");
                        return self.restore_versions(&p.data).map(Some);
                    }
                    Ok(None)
                }
                Some(&t) => Err(DecodeError::UnknownType(t)),
                None => Err(DecodeError::Fragment("empty header")),
            },
            Some(&t) => Err(DecodeError::UnknownType(t)),
            None => Err(DecodeError::UnknownType(0)),
        }
    }

    /// Terms after a distribution header lack their 131 byte: put it back
    /// in front of the control term and of the payload.
    fn restore_versions(&self, rest: &[u8]) -> Result<Vec<u8>, DecodeError> {
        let end = term::validate_body(rest, 0, self.limits)?;
        let mut out = Vec::with_capacity(rest.len() + 2);
        out.push(term::VERSION);
        out.extend_from_slice(&rest[..end]);
        if end < rest.len() {
            out.push(term::VERSION);
            out.extend_from_slice(&rest[end..]);
        }
        Ok(out)
    }
}

fn be_u64(b: &[u8], at: usize) -> Result<u64, DecodeError> {
    b.get(at..at + 8)
        .and_then(|s| s.try_into().ok())
        .map(u64::from_be_bytes)
        .ok_or(DecodeError::Fragment("header truncated"))
}

fn no_atom_cache(body: &[u8], at: usize) -> Result<&[u8], DecodeError> {
    match body.get(at) {
        Some(0) => Ok(&body[at + 1..]),
        Some(_) => Err(DecodeError::AtomCache),
        None => Err(DecodeError::Fragment("header truncated")),
    }
}

/// Decodes a whole message in pass-through form into a control message
/// (with its payload). Every term is validated before erl_dist decodes it,
/// and erl_dist's recursive decoder runs on a stack grown for the depth
/// measured ([`term::with_stack_for`]).
pub fn decode_message(msg: &[u8], limits: Limits) -> Result<Message, DecodeError> {
    let (end, mut depth) = term::validate_depth(msg, 0, limits)?;
    if end < msg.len() {
        let (pend, pdepth) = term::validate_depth(msg, end, limits)?;
        if pend != msg.len() {
            return Err(DecodeError::Control(
                "trailing bytes after the payload".into(),
            ));
        }
        depth = depth.max(pdepth);
    }
    term::with_stack_for(depth, || Message::read_from(&mut &msg[..])).map_err(|e| match e {
        erl_dist::message::RecvError::UnsupportedOp { op } => DecodeError::UnsupportedOp(op),
        e => DecodeError::Control(e.to_string()),
    })
}

/// A short description of a message's control term (operation, sender,
/// destination), for logging a message that is dropped: decoded only when
/// shallow, and cut to 200 characters. `msg` is a message in pass-through
/// form or a packet body with a whole-message distribution header (`131,
/// 68, 0`). `None` if it cannot be told.
pub fn describe_control(msg: &[u8]) -> Option<String> {
    let shallow = Limits { max_depth: 4 };
    let ctl = match msg {
        [term::VERSION, 68, 0, body @ ..] => {
            let end = term::validate_body(body, 0, shallow).ok()?;
            let mut t = vec![term::VERSION];
            t.extend_from_slice(&body[..end]);
            term::Term::decode(&t[..]).ok()?
        }
        _ => {
            let end = term::validate(msg, 0, shallow).ok()?;
            term::Term::decode(&msg[..end]).ok()?
        }
    };
    let mut s = ctl.to_string();
    if s.len() > 200 {
        let mut cut = 200;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
        s.push('…');
    }
    Some(s)
}

/// Appends one packet to `out`: pass-through form (`112`, control and
/// payload each with its 131 byte), or with `dist_header` the normal
/// distribution header without atom cache refs (`131, 68, 0`, terms
/// without their 131 byte), which a BEAM expects once FRAGMENTS is
/// negotiated.
pub fn encode_message(
    msg: Message,
    out: &mut Vec<u8>,
    dist_header: bool,
) -> Result<(), DecodeError> {
    let start = out.len();
    out.extend_from_slice(&[0, 0, 0, 0, PASS_THROUGH]);
    if let Err(e) = msg.write_into(out) {
        out.truncate(start);
        return Err(DecodeError::Control(e.to_string()));
    }
    if dist_header {
        // [len][112][131 ctl][131 payload] -> [len][131 68 0][ctl][payload]
        let body = start + 5;
        let Ok(cend) = term::validate(
            out,
            body,
            Limits {
                max_depth: usize::MAX,
            },
        ) else {
            out.truncate(start);
            return Err(DecodeError::Control(
                "encoded control term does not validate".into(),
            ));
        };
        if cend < out.len() {
            out.remove(cend); // the payload's 131
        }
        out.splice(start + 4..body + 1, [term::VERSION, 68, 0]);
    }
    let len = (out.len() - start - 4) as u32;
    out[start..start + 4].copy_from_slice(&len.to_be_bytes());
    Ok(())
}

/// Rewrites the last packet in `out` (starting at `start`, written by
/// [`encode_message`] with `dist_header`) into fragments carrying at most
/// `frag` bytes of data each, with sequence id `seq`. Small packets stay
/// as they are.
pub fn fragment_last(out: &mut Vec<u8>, start: usize, frag: usize, seq: u64) {
    let data_at = start + 7;
    if out.len() <= data_at + frag || out[start + 4..data_at] != [term::VERSION, 68, 0] {
        return;
    }
    let data = out.split_off(data_at);
    out.truncate(start);
    let chunks: Vec<&[u8]> = data.chunks(frag).collect();
    let n = chunks.len() as u64;
    for (i, chunk) in chunks.iter().enumerate() {
        let id = n - i as u64;
        let hdr_len = if i == 0 { 19 } else { 18 };
        let len = (hdr_len + chunk.len()) as u32;
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(&[term::VERSION, if i == 0 { 69 } else { 70 }]);
        out.extend_from_slice(&seq.to_be_bytes());
        out.extend_from_slice(&id.to_be_bytes());
        if i == 0 {
            out.push(0); // no atom cache refs
        }
        out.extend_from_slice(chunk);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::term::{atom, binary, Pid};

    fn sample(size: usize) -> Message {
        Message::reg_send(Pid::new("a@h", 1, 0, 1), "x".into(), binary(vec![7; size]))
    }

    fn roundtrip(out: &[u8], max: usize) -> Vec<Message> {
        let mut buf = BytesMut::from(out);
        let mut r = Reassembler::new(max);
        let mut got = vec![];
        while let Some(p) = decode_packet(&mut buf, max).unwrap() {
            if let Packet::Data(b) = p {
                if let Some(m) = r.push(&b).unwrap() {
                    got.push(decode_message(&m, Limits::default()).unwrap());
                }
            }
        }
        got
    }

    #[test]
    fn pass_through_round_trip() {
        let mut out = vec![];
        encode_message(sample(10), &mut out, false).unwrap();
        encode_message(
            Message::send(Pid::new("a@h", 1, 0, 1), atom("hi")),
            &mut out,
            true,
        )
        .unwrap();
        out.extend_from_slice(&[0, 0, 0, 0]);
        assert_eq!(
            roundtrip(&out, 1 << 20),
            vec![
                sample(10),
                Message::send(Pid::new("a@h", 1, 0, 1), atom("hi"))
            ]
        );
    }

    #[test]
    fn fragments_round_trip() {
        let mut out = vec![];
        encode_message(sample(100_000), &mut out, true).unwrap();
        fragment_last(&mut out, 0, 4096, 42);
        assert!(out.len() > 100_000 + 20 * 18);
        assert_eq!(roundtrip(&out, 1 << 20), vec![sample(100_000)]);
    }

    #[test]
    fn hostile_packets() {
        let mut buf = BytesMut::from(&[0xff, 0xff, 0xff, 0xff][..]);
        assert!(decode_packet(&mut buf, 1000).is_err());
        let mut r = Reassembler::new(1000);
        assert!(r.push(&[1]).is_err());
        assert!(r.push(&[131, 68, 1]).is_err());
        assert!(r
            .push(&[131, 70, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1])
            .is_err());
        assert!(decode_message(&[131, 104, 1, 97, 99], Limits::default()).is_err());
        assert!(decode_message(&[131, 82, 0], Limits::default()).is_err());
    }

    /// A REG_SEND from `a@h` whose payload is `atom` nested in `depth`
    /// 1-tuples, as a distribution-header packet body.
    fn deep_reg_send(depth: usize) -> Vec<u8> {
        let mut out = vec![];
        encode_message(
            Message::reg_send(Pid::new("a@h", 1, 0, 1), "x".into(), atom("ok")),
            &mut out,
            true,
        )
        .unwrap();
        assert!(out.ends_with(&[119, 2, b'o', b'k']));
        let mut body = out[4..out.len() - 4].to_vec();
        for _ in 0..depth {
            body.extend_from_slice(&[104, 1]);
        }
        body.extend_from_slice(&[119, 2, b'o', b'k']);
        body
    }

    #[test]
    fn content_errors_are_per_message_framing_errors_fatal() {
        let mut r = Reassembler::new(1 << 20);
        let too_deep = deep_reg_send(term::DEFAULT_MAX_DEPTH + 1);
        let Ok(Some(m)) = r.push(&too_deep) else {
            panic!("the control term is fine")
        };
        let Err(e) = decode_message(&m, Limits::default()) else {
            panic!("too deep, yet decoded")
        };
        assert!(matches!(e, DecodeError::Term(TermError::TooDeep(_))), "{e}");
        assert!(!e.is_fatal());
        for form in [&too_deep, &m] {
            let d = describe_control(form).unwrap();
            assert!(d.contains("a@h"), "{d}");
        }
        // The reassembler goes on with the next message.
        let ok = r.push(&deep_reg_send(3)).unwrap().unwrap();
        decode_message(&ok, Limits::default()).unwrap();
        for fatal in [
            DecodeError::TooLarge(1),
            DecodeError::UnknownType(1),
            DecodeError::AtomCache,
            DecodeError::Fragment("x"),
        ] {
            assert!(fatal.is_fatal());
        }
        assert!(!DecodeError::Term(TermError::UnsupportedTag { tag: 82, pos: 0 }).is_fatal());
        // An atom that is not UTF-8 in the payload: refused, not fatal.
        let mut bad_atom = deep_reg_send(0);
        bad_atom.truncate(bad_atom.len() - 4);
        bad_atom.extend_from_slice(&[119, 1, 0xff]);
        let m = r.push(&bad_atom).unwrap().unwrap();
        let Err(e) = decode_message(&m, Limits::default()) else {
            panic!("bad UTF-8 atom decoded")
        };
        assert!(!e.is_fatal(), "{e}");
        assert!(!DecodeError::Control("x".into()).is_fatal());
        assert!(!DecodeError::UnsupportedOp(99).is_fatal());
    }

    /// A message at the deepest depth accepted is decoded, used and freed
    /// on tokio workers (2 MiB stacks) without overflowing them.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn deepest_accepted_message_is_safe_on_a_worker() {
        let body = deep_reg_send(term::DEFAULT_MAX_DEPTH);
        let h = tokio::spawn(async move {
            let mut r = Reassembler::new(1 << 20);
            let m = r.push(&body).unwrap().unwrap();
            let msg = decode_message(&m, Limits::default()).unwrap();
            let Message::RegSend(rs) = &msg else {
                panic!("not a reg_send")
            };
            let payload = rs.message.clone();
            assert_eq!(payload, rs.message);
            let printed = format!("{payload:?}{payload}");
            let mut out = vec![];
            encode_message(msg, &mut out, true).unwrap();
            drop(payload);
            (printed.len(), out.len())
        });
        let (printed, encoded) = h.await.unwrap();
        assert!(printed > 2 * term::DEFAULT_MAX_DEPTH);
        assert!(encoded > 2 * term::DEFAULT_MAX_DEPTH);
    }

    /// Decoding itself never overflows, however deep the limit is set:
    /// erl_dist runs on a grown stack.
    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn decode_beyond_the_default_depth_on_a_grown_stack() {
        let body = deep_reg_send(20_000);
        let limits = Limits { max_depth: 20_000 };
        tokio::spawn(async move {
            let end = term::validate_body(&body, 3, limits).unwrap();
            let mut m = vec![term::VERSION];
            m.extend_from_slice(&body[3..end]);
            m.push(term::VERSION);
            m.extend_from_slice(&body[end..]);
            let msg = decode_message(&m, limits).unwrap();
            // Freed on a grown stack too (Drop recursion is ~64 B a level).
            term::with_stack_for(20_000, move || drop(msg));
        })
        .await
        .unwrap();
    }
}
