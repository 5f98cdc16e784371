//! Packet bodies after the handshake: fragment reassembly, the fragment
//! writer, and the errors of decoding.
//!
//! Every packet is a 4-byte big-endian length; length 0 is a tick (framing
//! is done by [`super::link::Link`]). Without an atom cache a packet body
//! is either `112` (pass-through) followed by the control term and the
//! optional payload, each with its own 131 byte, or a distribution header
//! (`131, 68`: whole message, `131, 69`: first fragment, `131, 70`: further
//! fragment) followed by terms without their 131 byte. A whole message is
//! decoded where it lies in the packet ([`Whole::Borrowed`]); only
//! fragments are copied, to be joined.
//!
//! erl_dist 0.8 has no fragments and trusts its input, so terms are read
//! by our own decoder ([`control::decode_terms`]), and reassembly is
//! bounded.

use super::control;
use crate::term::{self, Limits, TermError};
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

/// A whole message out of one packet, or out of the last fragment of one.
#[derive(Debug, PartialEq, Eq)]
pub enum Whole<'a> {
    /// Its terms where they lie in the packet: with their 131 bytes
    /// (`versioned`, the pass-through form) or after a distribution header.
    Borrowed {
        /// The control term and the optional payload.
        data: &'a [u8],
        /// Whether each term starts with its 131 byte.
        versioned: bool,
    },
    /// Reassembled from fragments: the terms without their 131 bytes.
    Owned(Vec<u8>),
}

impl Whole<'_> {
    /// Validates the terms once and decodes the control message
    /// ([`control::decode_terms`]).
    pub fn decode(&self, limits: Limits) -> Result<Message, DecodeError> {
        match self {
            Whole::Borrowed { data, versioned } => control::decode_terms(data, *versioned, limits),
            Whole::Owned(data) => control::decode_terms(data, false, limits),
        }
    }

    /// The bytes, for describing a message that is dropped.
    pub fn bytes(&self) -> &[u8] {
        match self {
            Whole::Borrowed { data, .. } => data,
            Whole::Owned(data) => data,
        }
    }
}

struct Partial {
    next_id: u64,
    data: Vec<u8>,
}

/// Sorts packet bodies into whole messages, reassembling fragments (the
/// only case where a message's bytes are copied).
pub struct Reassembler {
    partial: HashMap<u64, Partial>,
    max_message: usize,
    max_partial: usize,
}

impl Reassembler {
    /// Messages up to `max_message` bytes; at most 64 in reassembly at once.
    pub fn new(max_message: usize) -> Self {
        Reassembler {
            partial: HashMap::new(),
            max_message,
            max_partial: 64,
        }
    }

    /// Feeds one (non-empty) packet body; returns a whole message when one
    /// is complete. Errors here are all about framing (fatal).
    pub fn push<'a>(&mut self, body: &'a [u8]) -> Result<Option<Whole<'a>>, DecodeError> {
        match body.first() {
            Some(&PASS_THROUGH) => Ok(Some(Whole::Borrowed {
                data: &body[1..],
                versioned: true,
            })),
            Some(&term::VERSION) => match body.get(1) {
                Some(68) => Ok(Some(Whole::Borrowed {
                    data: no_atom_cache(body, 2)?,
                    versioned: false,
                })),
                Some(69) => {
                    let seq = be_u64(body, 2)?;
                    let id = be_u64(body, 10)?;
                    let rest = no_atom_cache(body, 18)?;
                    if id == 0 {
                        return Err(DecodeError::Fragment("fragment id 0"));
                    }
                    if id == 1 {
                        return Ok(Some(Whole::Borrowed {
                            data: rest,
                            versioned: false,
                        }));
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
                        if self.partial.is_empty() && self.partial.capacity() > 64 {
                            self.partial.shrink_to_fit();
                        }
                        return Ok(Some(Whole::Owned(p.data)));
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

/// A short description of a message's control term (operation, sender,
/// destination), for logging a message that is dropped: decoded only when
/// shallow, and cut to 200 characters. `msg` is a message in pass-through
/// form (without its 112), the terms after a distribution header (without
/// their 131 bytes), or a packet body with a whole-message distribution
/// header (`131, 68, 0`). `None` if it cannot be told.
pub fn describe_control(msg: &[u8]) -> Option<String> {
    let shallow = Limits { max_depth: 4 };
    let body = match msg {
        [term::VERSION, 68, 0, body @ ..] => body,
        [term::VERSION, ..] => &msg[1..],
        body => body,
    };
    let ctl = term::decode::decode_body(body, 0, shallow)
        .ok()?
        .term
        .ok()?;
    Some(crate::util::short_text(&ctl))
}

/// Rewrites the last packet in `out` (starting at `start`, written by
/// [`control::encode_message`] with a distribution header) in place into
/// fragments carrying at most `frag` bytes of data each, with sequence id
/// `seq`. Small packets stay as they are. Each byte of the message moves
/// once (from the back, so nothing is overwritten before it moved).
pub fn fragment_last(out: &mut Vec<u8>, start: usize, frag: usize, seq: u64) {
    const FIRST: usize = 4 + 2 + 16 + 1; // length, 131 69, seq, id, no atom cache
    const NEXT: usize = 4 + 2 + 16; // length, 131 70, seq, id
    let data_at = start + 7;
    let frag = frag.max(1);
    if out.len() <= data_at + frag || out[start + 4..data_at] != [term::VERSION, 68, 0] {
        return;
    }
    let size = out.len() - data_at;
    let n = size.div_ceil(frag);
    let at = |i: usize| start + FIRST + i * (frag + NEXT); // where chunk i goes
    let last_len = size - (n - 1) * frag;
    out.resize(at(n - 1) + last_len, 0);
    for i in (0..n).rev() {
        let len = if i == n - 1 { last_len } else { frag };
        let from = data_at + i * frag;
        out.copy_within(from..from + len, at(i));
        let id = (n - i) as u64;
        let hdr = at(i) - if i == 0 { FIRST } else { NEXT };
        let plen = (if i == 0 { FIRST } else { NEXT } - 4 + len) as u32;
        out[hdr..hdr + 4].copy_from_slice(&plen.to_be_bytes());
        out[hdr + 4] = term::VERSION;
        out[hdr + 5] = if i == 0 { 69 } else { 70 };
        out[hdr + 6..hdr + 14].copy_from_slice(&seq.to_be_bytes());
        out[hdr + 14..hdr + 22].copy_from_slice(&id.to_be_bytes());
        if i == 0 {
            out[hdr + 22] = 0; // no atom cache refs
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::dist::control::{decode_message, encode_message};
    use crate::term::{atom, binary, Pid};

    fn sample(size: usize) -> Message {
        Message::reg_send(Pid::new("a@h", 1, 0, 1), "x".into(), binary(vec![7; size]))
    }

    /// Packet bodies of a framed byte stream (ticks are empty bodies).
    pub(crate) fn packets(mut b: &[u8]) -> Vec<&[u8]> {
        let mut v = vec![];
        while b.len() >= 4 {
            let len = u32::from_be_bytes(b[..4].try_into().unwrap()) as usize;
            v.push(&b[4..4 + len]);
            b = &b[4 + len..];
        }
        assert!(b.is_empty());
        v
    }

    fn roundtrip(out: &[u8], max: usize) -> Vec<Message> {
        let mut r = Reassembler::new(max);
        let mut got = vec![];
        for b in packets(out).into_iter().filter(|b| !b.is_empty()) {
            if let Some(m) = r.push(b).unwrap() {
                got.push(m.decode(Limits::default()).unwrap());
            }
        }
        got
    }

    #[test]
    fn pass_through_round_trip() {
        let mut out = vec![];
        encode_message(&sample(10), &mut out, false).unwrap();
        encode_message(
            &Message::send(Pid::new("a@h", 1, 0, 1), atom("hi")),
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
        for (size, frag) in [(100_000, 4096), (5000, 1), (5000, 4999), (3, 1)] {
            let mut out = vec![1, 2];
            encode_message(&sample(size), &mut out, true).unwrap();
            let whole = out.clone();
            fragment_last(&mut out, 2, frag, 42);
            let data = whole.len() - 9;
            let n = data.div_ceil(frag);
            if data > frag {
                assert_eq!(out.len(), whole.len() + 16 + 22 * (n - 1), "{size} {frag}");
            }
            assert_eq!(&out[..2], &[1, 2]);
            assert_eq!(roundtrip(&out[2..], 1 << 20), vec![sample(size)]);
        }
    }

    #[test]
    fn hostile_packets() {
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
            &Message::reg_send(Pid::new("a@h", 1, 0, 1), "x".into(), atom("ok")),
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
            panic!("the framing is fine")
        };
        let Err(e) = m.decode(Limits::default()) else {
            panic!("too deep, yet decoded")
        };
        assert!(matches!(e, DecodeError::Term(TermError::TooDeep(_))), "{e}");
        assert!(!e.is_fatal());
        for form in [&too_deep[..], m.bytes()] {
            let d = describe_control(form).unwrap();
            assert!(d.contains("a@h"), "{d}");
        }
        // The reassembler goes on with the next message.
        let ok = deep_reg_send(3);
        r.push(&ok)
            .unwrap()
            .unwrap()
            .decode(Limits::default())
            .unwrap();
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
        let Err(e) = m.decode(Limits::default()) else {
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
            let msg = m.decode(Limits::default()).unwrap();
            let Message::RegSend(rs) = &msg else {
                panic!("not a reg_send")
            };
            let payload = rs.message.clone();
            assert_eq!(payload, rs.message);
            let printed = format!("{payload:?}{payload}");
            let mut out = vec![];
            encode_message(&msg, &mut out, true).unwrap();
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
            let msg = control::decode_terms(&body[3..], false, limits).unwrap();
            // Freed on a grown stack too (Drop recursion is ~64 B a level).
            term::with_stack_for(20_000, move || drop(msg));
        })
        .await
        .unwrap();
    }
}
