//! Packet bodies after the handshake: fragment reassembly, the fragment
//! writer, and the errors of decoding.
//!
//! Every packet is a 4-byte big-endian length; length 0 is a tick (framing
//! is done by [`super::link::Link`]). A packet body is either `112`
//! (pass-through) followed by the control term and the optional payload,
//! each with its own 131 byte, or a distribution header (`131, 68`: whole
//! message, `131, 69`: first fragment, `131, 70`: further fragment)
//! followed by terms without their 131 byte. A whole message is decoded
//! where it lies in the packet ([`Whole::Borrowed`]); only fragments are
//! copied, to be joined.
//!
//! The headers of whole messages and first fragments list the atom cache
//! entries the message's terms name by `ATOM_CACHE_REF`, adding new ones
//! to the connection's cache ([`AtomCache`]): this node offers
//! `DFLAG_DIST_HDR_ATOM_CACHE`, as BEAM nodes do between themselves, so a
//! BEAM peer writes each atom (node names of pids, message atoms) once per
//! connection instead of in every message. Our own messages do the same
//! for a peer that offers it ([`super::send_cache`]).
//!
//! erl_dist 0.8 has no fragments, no atom cache and trusts its input, so
//! terms are read by our own decoder ([`control::decode_terms_in`]), and
//! reassembly and the cache are bounded.

use super::control;
use super::raw::{self, RawNames, RawPayload, RawRegSend};
use crate::term::decode::AtomRefs;
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
    /// A distribution header whose atom cache part cannot be used (a
    /// reference to an entry never set, an atom too long or not UTF-8):
    /// the cache no longer matches the peer's.
    #[error("atom cache: {0}")]
    AtomCache(&'static str),
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
    /// A message to a pid or name with no receiver here, not decoded
    /// ([`control::decode_terms_for`]): dropped without a word, as BEAM
    /// drops it.
    #[error("no receiver here")]
    NoReceiver,
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
            | DecodeError::AtomCache(_)
            | DecodeError::Fragment(_) => true,
            DecodeError::Term(_)
            | DecodeError::Control(_)
            | DecodeError::UnsupportedOp(_)
            | DecodeError::NoReceiver => false,
        }
    }
}

/// A whole message out of one packet, or out of the last fragment of one.
#[derive(Debug)]
pub enum Whole<'a> {
    /// Its terms where they lie in the packet: with their 131 bytes
    /// (`versioned`, the pass-through form) or after a distribution header.
    Borrowed {
        /// The control term and the optional payload.
        data: &'a [u8],
        /// Whether each term starts with its 131 byte.
        versioned: bool,
        /// The atom cache entries its header listed.
        refs: AtomRefs<'a>,
    },
    /// Reassembled from fragments: the terms without their 131 bytes.
    Owned {
        /// The control term and the optional payload.
        data: Vec<u8>,
        /// The atoms the first fragment's header listed, as they were
        /// then (later headers may reuse their cache slots).
        atoms: Vec<Option<Box<str>>>,
        /// `0..atoms.len()`, for [`AtomRefs::idx`].
        idx: Vec<u16>,
    },
}

impl Whole<'_> {
    /// Validates the terms once and decodes the control message
    /// ([`control::decode_terms_in`]).
    pub fn decode(&self, limits: Limits) -> Result<Message, DecodeError> {
        self.decode_for(limits, None)
    }

    /// [`Whole::decode`], a message with no receiver among `receivers`
    /// left undecoded ([`control::decode_terms_for`]).
    pub fn decode_for(
        &self,
        limits: Limits,
        receivers: Option<control::Receivers<'_>>,
    ) -> Result<Message, DecodeError> {
        match self {
            Whole::Borrowed {
                data,
                versioned,
                refs,
            } => control::decode_terms_for(data, *versioned, limits, *refs, receivers),
            Whole::Owned { data, atoms, idx } => {
                let refs = AtomRefs { idx, slots: atoms };
                control::decode_terms_for(data, false, limits, refs, receivers)
            }
        }
    }

    /// The message as a `REG_SEND` with its payload left as bytes, when
    /// it is one to a name of `names` and large enough
    /// ([`raw`]); else the message itself.
    pub fn into_raw(self, names: &RawNames, limits: Limits) -> Result<RawRegSend, Self> {
        let (from, to_name, payload) = match self {
            Whole::Borrowed {
                data,
                versioned,
                refs,
            } => {
                let Some(h) = raw::take(data, versioned, refs, names) else {
                    return Err(self);
                };
                let payload = RawPayload::new(data[h.at..].to_vec(), 0, versioned, h.atoms, limits);
                (h.from, h.to_name, payload)
            }
            Whole::Owned { data, atoms, idx } => {
                let refs = AtomRefs {
                    idx: &idx,
                    slots: &atoms,
                };
                let Some(h) = raw::take(&data, false, refs, names) else {
                    return Err(Whole::Owned { data, atoms, idx });
                };
                let payload = RawPayload::new(data, h.at, false, h.atoms, limits);
                (h.from, h.to_name, payload)
            }
        };
        Ok(RawRegSend {
            from,
            to_name,
            payload,
        })
    }

    /// The bytes, for describing a message that is dropped.
    pub fn bytes(&self) -> &[u8] {
        match self {
            Whole::Borrowed { data, .. } => data,
            Whole::Owned { data, .. } => data,
        }
    }
}

/// Entries of the atom cache: 8 segments of 256.
pub const ATOM_CACHE_SIZE: usize = 2048;

/// The longest atom text a cache entry takes: 255 characters of up to 4
/// bytes (BEAM's limit), so the cache holds at most 2 MiB.
const MAX_ATOM_BYTES: usize = 255 * 4;

/// One connection's atom cache, as the peer fills it through the headers
/// of its messages (`DFLAG_DIST_HDR_ATOM_CACHE`). The slots are allocated
/// by the first header that sets one.
#[derive(Debug, Default)]
pub struct AtomCache {
    slots: Vec<Option<Box<str>>>,
}

impl AtomCache {
    /// Reads the atom cache part of a distribution header at `body[at..]`
    /// (`NumberOfAtomCacheRefs`, the flags, the references), storing new
    /// entries and putting the slot of each listed one into `refs`.
    /// Returns where the header ends. Every error is fatal: after one the
    /// cache no longer matches the peer's.
    pub fn read_header(
        &mut self,
        body: &[u8],
        at: usize,
        refs: &mut Vec<u16>,
    ) -> Result<usize, DecodeError> {
        const SHORT: DecodeError = DecodeError::Fragment("header truncated");
        refs.clear();
        let n = usize::from(*body.get(at).ok_or(SHORT)?);
        let mut pos = at + 1;
        if n == 0 {
            return Ok(pos);
        }
        // A half byte of flags per reference, low half first, then one
        // more: bit 0 says lengths take two bytes.
        let flags = body.get(pos..pos + n / 2 + 1).ok_or(SHORT)?;
        pos += flags.len();
        let half = |i: usize| (flags[i / 2] >> ((i % 2) * 4)) & 0x0f;
        let long = half(n) & 1 == 1;
        if self.slots.is_empty() {
            self.slots.resize(ATOM_CACHE_SIZE, None);
        }
        for i in 0..n {
            let f = half(i);
            let within = usize::from(*body.get(pos).ok_or(SHORT)?);
            pos += 1;
            let slot = usize::from(f & 7) * 256 + within;
            if f & 8 != 0 {
                let len = if long {
                    let b = body.get(pos..pos + 2).ok_or(SHORT)?;
                    pos += 2;
                    usize::from(u16::from_be_bytes([b[0], b[1]]))
                } else {
                    pos += 1;
                    usize::from(*body.get(pos - 1).ok_or(SHORT)?)
                };
                if len > MAX_ATOM_BYTES {
                    return Err(DecodeError::AtomCache("atom longer than 255 characters"));
                }
                let text = body.get(pos..pos + len).ok_or(SHORT)?;
                pos += len;
                let name = std::str::from_utf8(text)
                    .map_err(|_| DecodeError::AtomCache("atom text is not UTF-8"))?;
                if crate::atom::over_long(name).is_some() {
                    return Err(DecodeError::AtomCache("atom longer than 255 characters"));
                }
                self.slots[slot] = Some(name.into());
            } else if self.slots[slot].is_none() {
                return Err(DecodeError::AtomCache("reference to an entry never set"));
            }
            refs.push(slot as u16);
        }
        Ok(pos)
    }

    /// The slots (empty before the first entry).
    pub fn slots(&self) -> &[Option<Box<str>>] {
        &self.slots
    }
}

struct Partial {
    next_id: u64,
    data: Vec<u8>,
    atoms: Vec<Option<Box<str>>>,
}

/// Bytes in reassembly across connections: each connection holds at most
/// one message's worth ([`Reassembler::new`]), and all of them together at
/// most `max`, so that many peers each streaming fragments that never end
/// cannot add their bounds up (six such peers held 1.8 GB). A fragment
/// past it closes the connection that sent it.
#[derive(Debug)]
pub struct ReassemblyBudget {
    held: std::sync::atomic::AtomicUsize,
    max: usize,
}

impl ReassemblyBudget {
    /// At most `max` bytes in all.
    pub const fn new(max: usize) -> Self {
        ReassemblyBudget {
            held: std::sync::atomic::AtomicUsize::new(0),
            max,
        }
    }

    /// Bytes held now.
    pub fn held(&self) -> usize {
        self.held.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn take(&self, n: usize) -> bool {
        use std::sync::atomic::Ordering::Relaxed;
        self.held
            .fetch_update(Relaxed, Relaxed, |h| {
                h.checked_add(n).filter(|&t| t <= self.max)
            })
            .is_ok()
    }

    fn give(&self, n: usize) {
        self.held.fetch_sub(n, std::sync::atomic::Ordering::Relaxed);
    }
}

/// The process's [`ReassemblyBudget`], every connection of every node in
/// it: 1 GiB (four connections' worth at the default
/// [`max_frame`](crate::config::NodeConfig::max_frame)).
pub static PROCESS_REASSEMBLY: ReassemblyBudget = ReassemblyBudget::new(1 << 30);

/// Sorts packet bodies into whole messages, reassembling fragments (the
/// only case where a message's bytes are copied), and keeps the
/// connection's atom cache.
pub struct Reassembler {
    partial: HashMap<u64, Partial>,
    /// The memory of every message in reassembly, together: their
    /// buffers' capacities (taken from `budget` too, and given back when
    /// they go).
    partial_bytes: usize,
    budget: &'static ReassemblyBudget,
    max_message: usize,
    max_partial: usize,
    cache: AtomCache,
    /// The current message's atom cache slots (reused).
    refs: Vec<u16>,
}

impl Reassembler {
    /// Messages up to `max_message` bytes; at most 64 in reassembly at
    /// once, holding at most `max_message` bytes together (a peer that
    /// starts many fragmented messages and never ends them holds no more
    /// than one message's worth).
    pub fn new(max_message: usize) -> Self {
        Self::with_budget(max_message, &PROCESS_REASSEMBLY)
    }

    /// [`new`](Self::new), its bytes counted in `budget` instead of the
    /// process's.
    pub fn with_budget(max_message: usize, budget: &'static ReassemblyBudget) -> Self {
        Reassembler {
            partial: HashMap::new(),
            partial_bytes: 0,
            budget,
            max_message,
            max_partial: 64,
            cache: AtomCache::default(),
            refs: Vec::new(),
        }
    }

    /// Feeds one (non-empty) packet body; returns a whole message when one
    /// is complete. Errors here are all about framing and the atom cache
    /// (fatal).
    pub fn push<'a>(&'a mut self, body: &'a [u8]) -> Result<Option<Whole<'a>>, DecodeError> {
        match body.first() {
            Some(&PASS_THROUGH) => Ok(Some(Whole::Borrowed {
                data: &body[1..],
                versioned: true,
                refs: AtomRefs::NONE,
            })),
            Some(&term::VERSION) => match body.get(1) {
                Some(68) => {
                    let at = self.cache.read_header(body, 2, &mut self.refs)?;
                    Ok(Some(self.borrowed(&body[at..])))
                }
                Some(69) => {
                    let seq = be_u64(body, 2)?;
                    let id = be_u64(body, 10)?;
                    if id == 0 {
                        return Err(DecodeError::Fragment("fragment id 0"));
                    }
                    let at = self.cache.read_header(body, 18, &mut self.refs)?;
                    let rest = &body[at..];
                    if id == 1 {
                        return Ok(Some(self.borrowed(rest)));
                    }
                    if self.partial.len() >= self.max_partial {
                        return Err(DecodeError::Fragment("too many messages in reassembly"));
                    }
                    // (A peer starting one again would have the first
                    // one's bytes counted with nothing holding them: the
                    // budget of every connection filled at no cost.)
                    if self.partial.contains_key(&seq) {
                        return Err(DecodeError::Fragment(
                            "a message started again under a sequence id in reassembly",
                        ));
                    }
                    // (`to_vec` below: exactly this long.)
                    self.hold(rest.len())?;
                    let slots = self.cache.slots();
                    let atoms = self
                        .refs
                        .iter()
                        .map(|&i| slots[usize::from(i)].clone())
                        .collect();
                    self.partial.insert(
                        seq,
                        Partial {
                            next_id: id - 1,
                            data: rest.to_vec(),
                            atoms,
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
                    // Grown here, by doubling up to one message's worth,
                    // and its capacity counted: what it holds is memory, a
                    // vector's spare room included (counting its bytes
                    // alone let eight connections at the bounds hold 2 GB).
                    let need = p.data.len() + rest.len();
                    if need > p.data.capacity() {
                        let cap = p.data.capacity();
                        let new_cap = need.max((cap * 2).min(self.max_message));
                        Self::hold_in(
                            &mut self.partial_bytes,
                            self.budget,
                            self.max_message,
                            new_cap - cap,
                        )?;
                        p.data.reserve_exact(new_cap - p.data.len());
                    }
                    p.data.extend_from_slice(rest);
                    p.next_id -= 1;
                    if id == 1 {
                        let p = self.partial.remove(&seq).expect("present");
                        self.partial_bytes -= p.data.capacity();
                        self.budget.give(p.data.capacity());
                        if self.partial.is_empty() && self.partial.capacity() > 64 {
                            self.partial.shrink_to_fit();
                        }
                        let idx = (0..p.atoms.len() as u16).collect();
                        return Ok(Some(Whole::Owned {
                            data: p.data,
                            atoms: p.atoms,
                            idx,
                        }));
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

    /// A whole message after a distribution header just read.
    fn borrowed<'a>(&'a self, data: &'a [u8]) -> Whole<'a> {
        Whole::Borrowed {
            data,
            versioned: false,
            refs: AtomRefs {
                idx: &self.refs,
                slots: self.cache.slots(),
            },
        }
    }

    /// Counts `n` more bytes in reassembly: refused past one message's
    /// worth on this connection, or past the budget of every connection.
    fn hold(&mut self, n: usize) -> Result<(), DecodeError> {
        Self::hold_in(&mut self.partial_bytes, self.budget, self.max_message, n)
    }

    /// [`hold`](Self::hold) on the reassembler's fields taken apart, so
    /// that a message in reassembly can stay borrowed: counts `n` more
    /// bytes into `held` (the bytes of every message in reassembly) if
    /// that stays within `max`, and takes them from `budget`.
    fn hold_in(
        held: &mut usize,
        budget: &ReassemblyBudget,
        max: usize,
        n: usize,
    ) -> Result<(), DecodeError> {
        let total = *held + n;
        if total > max {
            return Err(DecodeError::TooLarge(total));
        }
        if !budget.take(n) {
            return Err(DecodeError::Fragment(
                "fragments in reassembly past the budget of every connection together",
            ));
        }
        *held = total;
        Ok(())
    }
}

impl Drop for Reassembler {
    /// The bytes of messages left half-reassembled go back to the budget.
    fn drop(&mut self) {
        self.budget.give(self.partial_bytes);
    }
}

fn be_u64(b: &[u8], at: usize) -> Result<u64, DecodeError> {
    b.get(at..at + 8)
        .and_then(|s| s.try_into().ok())
        .map(u64::from_be_bytes)
        .ok_or(DecodeError::Fragment("header truncated"))
}

/// A short description of a message's control term (operation, sender,
/// destination), for logging a message that is dropped: decoded only when
/// shallow, and cut to 200 characters. `msg` is a message in pass-through
/// form (without its 112), the terms after a distribution header (without
/// their 131 bytes), or a packet body with a whole-message distribution
/// header (`131, 68, 0`). `None` if it cannot be told.
pub fn describe_control(msg: &[u8]) -> Option<String> {
    let shallow = Limits {
        max_depth: 4,
        ..Limits::default()
    };
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
/// [`control::encode_message`] with a distribution header, or by
/// [`control::encode_message_cached`]) in place into fragments carrying at
/// most `frag` bytes of data each, with sequence id `seq`; the first
/// carries the header's atom cache part. Small packets stay as they are;
/// returns whether the packet was split. Each byte of the message moves
/// once (from the back, so nothing is overwritten before it moved).
pub fn fragment_last(out: &mut Vec<u8>, start: usize, frag: usize, seq: u64) -> bool {
    const IDS: usize = 4 + 2 + 16; // length, 131 69, seq, id
    const NEXT: usize = IDS; // length, 131 70, seq, id
    if out.get(start + 4..start + 6) != Some(&[term::VERSION, 68][..]) {
        return false;
    }
    let Some(cache) = super::send_cache::header_len(&out[start + 6..]) else {
        return false;
    };
    let first = IDS + cache;
    let data_at = start + 6 + cache;
    let frag = frag.max(1);
    if out.len() <= data_at + frag {
        return false;
    }
    let size = out.len() - data_at;
    let n = size.div_ceil(frag);
    let at = |i: usize| start + first + i * (frag + NEXT); // where chunk i goes
    let last_len = size - (n - 1) * frag;
    out.resize(at(n - 1) + last_len, 0);
    for i in (0..n).rev() {
        let len = if i == n - 1 { last_len } else { frag };
        let from = data_at + i * frag;
        out.copy_within(from..from + len, at(i));
        let hdr = at(i) - if i == 0 { first } else { NEXT };
        if i == 0 {
            // The atom cache part after the ids (its data moved already).
            out.copy_within(start + 6..start + 6 + cache, start + IDS);
        }
        let plen = (if i == 0 { first } else { NEXT } - 4 + len) as u32;
        out[hdr..hdr + 4].copy_from_slice(&plen.to_be_bytes());
        out[hdr + 4] = term::VERSION;
        out[hdr + 5] = if i == 0 { 69 } else { 70 };
        out[hdr + 6..hdr + 14].copy_from_slice(&seq.to_be_bytes());
        out[hdr + 14..hdr + 22].copy_from_slice(&id(n, i).to_be_bytes());
    }
    true
}

/// The fragment id of chunk `i` of `n`: counting down to 1.
fn id(n: usize, i: usize) -> u64 {
    (n - i) as u64
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

    /// The first fragment (of `frags`) of message `seq`: a distribution
    /// header with no atoms, then `n` bytes.
    fn first_fragment(seq: u64, frags: u64, n: usize) -> Vec<u8> {
        let mut b = vec![131, 69];
        b.extend_from_slice(&seq.to_be_bytes());
        b.extend_from_slice(&frags.to_be_bytes());
        b.push(0);
        b.resize(b.len() + n, 0);
        b
    }

    fn next_fragment(seq: u64, id: u64, n: usize) -> Vec<u8> {
        let mut b = vec![131, 70];
        b.extend_from_slice(&seq.to_be_bytes());
        b.extend_from_slice(&id.to_be_bytes());
        b.resize(b.len() + n, 0);
        b
    }

    /// Connections share a budget of bytes in reassembly: one past it is
    /// refused (its connection closes) while others hold it, and the
    /// bytes come back when a message completes or a connection goes.
    #[test]
    fn connections_in_reassembly_share_one_budget() {
        let budget: &'static ReassemblyBudget = Box::leak(Box::new(ReassemblyBudget::new(2500)));
        let mut a = Reassembler::with_budget(1000, budget);
        let mut b = Reassembler::with_budget(1000, budget);
        let mut c = Reassembler::with_budget(1000, budget);
        assert!(a.push(&first_fragment(1, 2, 900)).unwrap().is_none());
        assert!(b.push(&first_fragment(1, 2, 900)).unwrap().is_none());
        assert_eq!(budget.held(), 1800);
        // Each is within its own bound; together past the budget.
        assert!(matches!(
            c.push(&first_fragment(1, 2, 900)),
            Err(DecodeError::Fragment(_))
        ));
        assert_eq!(budget.held(), 1800);
        // A message completed gives its bytes back, a connection gone too.
        assert!(a.push(&next_fragment(1, 1, 50)).unwrap().is_some());
        assert_eq!(budget.held(), 900);
        drop(b);
        assert_eq!(budget.held(), 0);
        assert!(c.push(&first_fragment(2, 2, 900)).unwrap().is_none());
        drop(c);
        assert_eq!(budget.held(), 0);
    }

    /// A first fragment under a sequence id already in reassembly is a
    /// fault (fatal): taken, it replaced the first message with its bytes
    /// still counted, and 257 of 1 MiB each closed a connection holding 1
    /// MiB as over 256 MiB, five such connections filled every
    /// connection's budget. The budget is whole again once it is dropped.
    #[test]
    fn a_message_started_again_under_its_sequence_id_is_refused() {
        let budget: &'static ReassemblyBudget = Box::leak(Box::new(ReassemblyBudget::new(10_000)));
        let mut r = Reassembler::with_budget(5000, budget);
        assert!(matches!(r.push(&first_fragment(7, 3, 1000)), Ok(None)));
        let e = r.push(&first_fragment(7, 3, 1000)).unwrap_err();
        assert!(
            matches!(e, DecodeError::Fragment(_)) && e.is_fatal(),
            "{e:?}"
        );
        assert_eq!(budget.held(), 1000);
        drop(r);
        assert_eq!(budget.held(), 0);
    }

    #[test]
    fn messages_in_reassembly_hold_one_message_s_worth_together() {
        let mut r = Reassembler::new(1000);
        // four unfinished messages of 300 bytes: the fourth is refused
        for seq in 1..=3 {
            assert!(matches!(r.push(&first_fragment(seq, 3, 300)), Ok(None)));
        }
        assert!(matches!(
            r.push(&first_fragment(4, 3, 300)),
            Err(DecodeError::TooLarge(1200))
        ));
        // so is a continuation that takes the total over (its buffer,
        // doubled to 600, counted: 300 more)
        assert!(matches!(
            r.push(&next_fragment(1, 2, 200)),
            Err(DecodeError::TooLarge(1200))
        ));
        // a finished message gives its bytes back
        let mut r = Reassembler::new(1000);
        for _ in 0..10 {
            assert!(matches!(r.push(&first_fragment(7, 2, 400)), Ok(None)));
            assert!(matches!(r.push(&next_fragment(7, 1, 400)), Ok(Some(_))));
        }
        assert_eq!(r.partial_bytes, 0);
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
            DecodeError::AtomCache("x"),
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
        let limits = Limits {
            max_depth: 20_000,
            ..Limits::default()
        };
        tokio::spawn(async move {
            let msg = control::decode_terms(&body[3..], false, limits).unwrap();
            // Freed on a grown stack too (Drop recursion is ~64 B a level).
            term::with_stack_for(20_000, move || drop(msg));
        })
        .await
        .unwrap();
    }

    /// The atom cache part of a header: `(segment, index within, new text)`
    /// for each reference; `long`: two-byte lengths.
    fn cache_header(refs: &[(u8, u8, Option<&str>)], long: bool) -> Vec<u8> {
        let n = refs.len();
        let mut flags = vec![0u8; n / 2 + 1];
        let mut half = |i: usize, v: u8| flags[i / 2] |= v << ((i % 2) * 4);
        for (i, (seg, _, new)) in refs.iter().enumerate() {
            half(i, seg | if new.is_some() { 8 } else { 0 });
        }
        half(n, u8::from(long));
        let mut out = vec![n as u8];
        if n == 0 {
            return out;
        }
        out.extend_from_slice(&flags);
        for (_, within, new) in refs {
            out.push(*within);
            if let Some(text) = new {
                if long {
                    out.extend_from_slice(&(text.len() as u16).to_be_bytes());
                } else {
                    out.push(text.len() as u8);
                }
                out.extend_from_slice(text.as_bytes());
            }
        }
        out
    }

    /// `{22, From, To}` and `{m, 1}` with both pids' node and `m` as atom
    /// cache references 0, 1 and 2.
    fn send_sender_by_refs() -> Vec<u8> {
        let pid = |r: u8, id: u8| vec![88, 82, r, 0, 0, 0, id, 0, 0, 0, 0, 0, 0, 0, 1];
        let mut b = vec![104, 3, 97, 22];
        b.extend(pid(0, 5));
        b.extend(pid(1, 6));
        b.extend_from_slice(&[104, 2, 82, 2, 97, 1]);
        b
    }

    fn expected() -> Message {
        Message::send_sender(
            Pid::new("a@h", 5, 0, 1),
            Pid::new("b@h", 6, 0, 1),
            crate::term::tuple(vec![atom("m"), crate::term::int(1)]),
        )
    }

    fn decode_one(r: &mut Reassembler, body: &[u8]) -> Result<Option<Message>, DecodeError> {
        match r.push(body)? {
            Some(w) => w.decode(Limits::default()).map(Some),
            None => Ok(None),
        }
    }

    #[test]
    fn atom_cache_entries_are_set_then_named_by_later_messages() {
        for long in [false, true] {
            let mut r = Reassembler::new(1 << 20);
            let mut first = vec![131, 68];
            first.extend(cache_header(
                &[
                    (0, 7, Some("a@h")),
                    (3, 255, Some("b@h")),
                    (7, 0, Some("m")),
                ],
                long,
            ));
            first.extend(send_sender_by_refs());
            assert_eq!(decode_one(&mut r, &first).unwrap(), Some(expected()));
            // The same entries, now only named.
            let mut again = vec![131, 68];
            again.extend(cache_header(
                &[(0, 7, None), (3, 255, None), (7, 0, None)],
                long,
            ));
            again.extend(send_sender_by_refs());
            assert_eq!(decode_one(&mut r, &again).unwrap(), Some(expected()));
            // Every truncation fails without a panic, and none decodes.
            for n in 0..again.len() {
                let mut r2 = Reassembler::new(1 << 20);
                let _ = decode_one(&mut r2, &first);
                assert!(!matches!(decode_one(&mut r2, &again[..n]), Ok(Some(_))));
            }
        }
    }

    #[test]
    fn atom_cache_faults() {
        let mut r = Reassembler::new(1 << 20);
        // An entry never set: the caches differ, the connection must close.
        let mut never = vec![131, 68];
        never.extend(cache_header(&[(1, 1, None)], false));
        never.extend(send_sender_by_refs());
        let e = decode_one(&mut r, &never).unwrap_err();
        assert!(
            matches!(e, DecodeError::AtomCache(_)) && e.is_fatal(),
            "{e:?}"
        );
        // An atom over 255 characters (bytes, or one-byte characters
        // within the bytes 255 four-byte ones take), or not UTF-8: fatal
        // too.
        let long = "x".repeat(MAX_ATOM_BYTES + 1);
        let chars = "x".repeat(256);
        for text in [long.as_str(), chars.as_str(), "\u{0}"] {
            let mut b = vec![131, 68];
            b.extend(cache_header(&[(0, 0, Some(text))], true));
            if text.len() == 1 {
                let at = b.len() - 1;
                b[at] = 0xff; // not UTF-8
            }
            b.extend_from_slice(&[104, 1, 97, 5]);
            let e = decode_one(&mut r, &b).unwrap_err();
            assert!(matches!(e, DecodeError::AtomCache(_)), "{e:?}");
        }
        // A reference past the header's list: this message only.
        let mut past = vec![131, 68];
        past.extend(cache_header(
            &[(0, 1, Some("a@h")), (0, 2, Some("b@h"))],
            false,
        ));
        past.extend(send_sender_by_refs()); // names reference 2
        let e = decode_one(&mut r, &past).unwrap_err();
        assert!(!e.is_fatal(), "{e:?}");
        // Without a header list, tag 82 is refused as before (here where
        // a pid's node must be an atom).
        let mut none = vec![131, 68, 0];
        none.extend(send_sender_by_refs());
        let e = decode_one(&mut r, &none).unwrap_err();
        assert_eq!(e, DecodeError::Term(TermError::ExpectedAtom(5)));
    }

    #[test]
    fn a_fragmented_message_keeps_the_atoms_of_its_first_fragment() {
        let mut r = Reassembler::new(1 << 20);
        let data = send_sender_by_refs();
        let (head, tail) = data.split_at(10);
        let mut first = vec![131, 69];
        first.extend_from_slice(&9u64.to_be_bytes());
        first.extend_from_slice(&2u64.to_be_bytes());
        first.extend(cache_header(
            &[
                (0, 7, Some("a@h")),
                (3, 255, Some("b@h")),
                (7, 0, Some("m")),
            ],
            false,
        ));
        first.extend_from_slice(head);
        assert_eq!(decode_one(&mut r, &first).unwrap(), None);
        // Another message overwrites slot (7, 0) meanwhile.
        let mut other = vec![131, 68];
        other.extend(cache_header(&[(7, 0, Some("zz"))], false));
        other.extend_from_slice(&[104, 1, 97, 5]);
        let _ = decode_one(&mut r, &other);
        let mut last = vec![131, 70];
        last.extend_from_slice(&9u64.to_be_bytes());
        last.extend_from_slice(&1u64.to_be_bytes());
        last.extend_from_slice(tail);
        assert_eq!(decode_one(&mut r, &last).unwrap(), Some(expected()));
    }
}
