//! The sending side of a connection's atom cache
//! (`DFLAG_DIST_HDR_ATOM_CACHE`): the atoms of an outgoing message are
//! listed once in its distribution header and named in its terms by
//! `ATOM_CACHE_REF` (tag 82, then the index into that list); an atom the
//! peer already holds in its cache costs one byte in the header, and the
//! peer takes it from its cache slot instead of looking its text up in
//! its atom table.
//!
//! Why: a BEAM node receiving from a BEAM node finds every atom of a
//! message (the node names in its pids, `'$gen_cast'`, a tag) in the
//! connection's cache; one receiving from a node that writes its atoms
//! inline (`131, 68, 0`, as cpg-node did before) hashes and looks up each
//! of them, about 80–100 ns an atom on the measuring machine
//! (`binary_to_term` of a 24-character atom 104 ns against 21 ns for an
//! integer), the gap measured in what a BEAM receiver spent a message from
//! us against one from a BEAM sender (4.11 µs against 3.91 µs, 1 KiB
//! messages carrying three atoms).
//!
//! The cache mirrors the peer's: 2048 slots (8 segments of 256); an atom
//! goes to the slot its text hashes to, and a header entry says "new"
//! (with the text) when the slot holds something else, as the BEAM does
//! with its own atom index. The peer applies the entries in the order
//! messages reach it, which is the order they are encoded here (one
//! writer a connection), so both caches stay the same. A message that
//! fails to encode restores the slots it changed.
//! Atoms longer than 255 bytes, a second atom for a slot this message
//! already uses, and atoms past the 255th of a message are written inline
//! (allowed anywhere in a message with a header).

/// Entries of the atom cache: 8 segments of 256 (as [`super::codec::ATOM_CACHE_SIZE`]).
const SLOTS: usize = super::codec::ATOM_CACHE_SIZE;

/// At most this many references in one message's header
/// (`NumberOfAtomCacheRefs` is one byte).
const MAX_REFS: usize = 255;

/// One connection's atom cache as the peer holds it, and the references
/// of the message being encoded. The tables are allocated by the first
/// message (about 42 KB a connection).
#[derive(Debug, Default)]
pub struct SendCache {
    /// What the peer holds in each slot.
    slots: Vec<Option<Box<str>>>,
    /// The message number that last referenced each slot.
    stamp: Vec<u32>,
    /// The slot's index among that message's references.
    index: Vec<u8>,
    /// The number of the message being encoded (stamps of 0 match none).
    msg: u32,
    /// A message is being encoded (between `begin` and `commit`/`abort`).
    open: bool,
    /// This message's references: slot, and whether the entry is new.
    refs: Vec<(u16, bool)>,
    /// What this message's new entries replaced, to restore on abort.
    undo: Vec<(u16, Option<Box<str>>)>,
    /// The header being built (reused).
    header: Vec<u8>,
}

impl SendCache {
    /// A cache with nothing in it, as the peer's is at the handshake.
    pub fn new() -> Self {
        SendCache::default()
    }

    /// Starts a message.
    pub(super) fn begin(&mut self) {
        if self.slots.is_empty() {
            self.slots.resize(SLOTS, None);
            self.stamp.resize(SLOTS, 0);
            self.index.resize(SLOTS, 0);
        }
        self.refs.clear();
        self.undo.clear();
        if self.msg == u32::MAX {
            self.stamp.fill(0);
            self.msg = 0;
        }
        self.msg += 1;
        self.open = true;
    }

    /// The index among this message's references under which the atom
    /// `name` is written (`82, index`), adding the reference (and a new
    /// entry when the peer's slot holds something else); `None` if it is
    /// to be written inline.
    pub(super) fn reference(&mut self, name: &str) -> Option<u8> {
        if !self.open || name.len() > u8::MAX as usize {
            return None;
        }
        let slot = slot_of(name);
        if self.stamp[slot] == self.msg {
            // Already listed by this message: the same atom, or another
            // for the same slot (inline: one slot, one atom a message).
            return (self.slots[slot].as_deref() == Some(name)).then_some(self.index[slot]);
        }
        if self.refs.len() == MAX_REFS {
            return None;
        }
        let new = self.slots[slot].as_deref() != Some(name);
        if new {
            let before = self.slots[slot].replace(name.into());
            self.undo.push((slot as u16, before));
        }
        let i = self.refs.len() as u8;
        self.stamp[slot] = self.msg;
        self.index[slot] = i;
        self.refs.push((slot as u16, new));
        Some(i)
    }

    /// Ends a message that was not sent: the slots it changed are as they
    /// were (the peer never saw its header).
    pub(super) fn abort(&mut self) {
        for (slot, before) in self.undo.drain(..).rev() {
            self.slots[usize::from(slot)] = before;
        }
        self.refs.clear();
        self.open = false;
    }

    /// The atom cache part of the header of the message being encoded
    /// (`NumberOfAtomCacheRefs`, the flags, the references), what follows
    /// `131, 68` (or the fragment ids of `131, 69`): `[0]` when the
    /// message named no atom through the cache.
    pub(super) fn header(&mut self) -> &[u8] {
        let h = &mut self.header;
        h.clear();
        let n = self.refs.len();
        h.push(n as u8);
        if n > 0 {
            // A half byte a reference, low half first: new entry (bit 3),
            // segment (bits 0-2); then one more, 0 (lengths in one byte).
            let mut low = 0;
            for (i, &(slot, new)) in self.refs.iter().enumerate() {
                let half = (u8::from(new) << 3) | (slot >> 8) as u8;
                if i % 2 == 0 {
                    low = half;
                } else {
                    h.push(low | half << 4);
                }
            }
            h.push(if n.is_multiple_of(2) { 0 } else { low });
            for &(slot, new) in &self.refs {
                h.push(slot as u8);
                if new {
                    let text = self.slots[usize::from(slot)].as_deref().unwrap_or("");
                    h.push(text.len() as u8);
                    h.extend_from_slice(text.as_bytes());
                }
            }
        }
        &self.header
    }

    /// Ends a message that is sent with [`SendCache::header`]: the peer
    /// will hold its new entries.
    pub(super) fn finish(&mut self) {
        self.undo.clear();
        self.refs.clear();
        self.open = false;
    }
}

/// The slot of an atom: its text hashed eight bytes at a time (as
/// FxHash does: a byte at a time cost 40 ns for a 30-byte node name),
/// folded to 11 bits.
fn slot_of(name: &str) -> usize {
    const K: u64 = 0x517c_c1b7_2722_0a95;
    let bytes = name.as_bytes();
    let mut h = bytes.len() as u64;
    let mut chunks = bytes.chunks_exact(8);
    for c in &mut chunks {
        let w = u64::from_le_bytes(c.try_into().expect("8 bytes"));
        h = (h.rotate_left(5) ^ w).wrapping_mul(K);
    }
    // The last eight bytes (overlapping the chunks), or the bytes there
    // are: loaded in registers, not through a buffer on the stack (whose
    // byte stores then a word load stalled the hash).
    let last = match bytes.len() {
        8.. => u64::from_le_bytes(bytes[bytes.len() - 8..].try_into().expect("8 bytes")),
        _ => chunks
            .remainder()
            .iter()
            .fold(0, |w, &b| (w << 8) | u64::from(b)),
    };
    h = (h.rotate_left(5) ^ last).wrapping_mul(K);
    ((h >> 40) as usize) % SLOTS
}

/// The length of the atom cache part of a distribution header at
/// `bytes[0..]` (what [`SendCache::header`] wrote), `None` if the bytes
/// end before it does.
pub(super) fn header_len(bytes: &[u8]) -> Option<usize> {
    let n = usize::from(*bytes.first()?);
    if n == 0 {
        return Some(1);
    }
    let flags = bytes.get(1..1 + n / 2 + 1)?;
    let long = (flags[n / 2] >> ((n % 2) * 4)) & 1 == 1;
    let mut pos = 1 + flags.len();
    for i in 0..n {
        let new = (flags[i / 2] >> ((i % 2) * 4)) & 8 != 0;
        pos += 1;
        if new {
            let len = if long {
                let b = bytes.get(pos..pos + 2)?;
                pos += 2;
                usize::from(u16::from_be_bytes([b[0], b[1]]))
            } else {
                pos += 1;
                usize::from(*bytes.get(pos - 1)?)
            };
            pos += len;
        }
    }
    (pos <= bytes.len()).then_some(pos)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dist::codec;
    use crate::dist::control::{encode_message, encode_message_cached, EncodeError};
    use crate::dist::link::{Event, Link, LinkConfig};
    use crate::term::{atom, binary, list, tuple, Limits, Pid, Term};
    use erl_dist::message::Message;
    use proptest::prelude::*;
    use std::time::{Duration, Instant};

    fn receiver() -> Link {
        let cfg = LinkConfig {
            ticktime: Duration::from_secs(60),
            max_frame: 1 << 24,
            fragment_size: 1 << 16,
            fragments: true,
            atom_cache: true,
            limits: Limits::default(),
        };
        Link::new(cfg, Instant::now())
    }

    /// The messages a link (a fresh peer) reads from `bytes`.
    fn received(rx: &mut Link, bytes: &[u8]) -> Vec<Message> {
        rx.handle_input(bytes, Instant::now()).unwrap();
        std::iter::from_fn(|| rx.poll_event())
            .map(|e| match e {
                Event::Message(m) => m,
                e => panic!("{e:?}"),
            })
            .collect()
    }

    fn send(to: &str, msg: Term) -> Message {
        Message::send_sender(Pid::new("us@h", 1, 0, 1), Pid::new(to, 2, 0, 1), msg)
    }

    fn atoms(names: &[String]) -> Term {
        list(names.iter().map(|n| atom(n)).collect())
    }

    /// Two atoms that go to the same slot.
    fn twins() -> (String, String) {
        let mut seen = std::collections::HashMap::new();
        for i in 0.. {
            let a = format!("a{i}");
            if let Some(b) = seen.insert(slot_of(&a), a.clone()) {
                return (b, a);
            }
        }
        unreachable!()
    }

    #[test]
    fn atoms_are_listed_new_once_then_referenced() {
        let mut c = SendCache::new();
        let m = send("them@h", tuple(vec![atom("m"), atom("m"), atom("")]));
        let mut first = vec![];
        encode_message_cached(&m, &mut first, &mut c).unwrap();
        let mut again = vec![];
        encode_message_cached(&m, &mut again, &mut c).unwrap();
        // Four atoms: both nodes, `m` (twice in the term, once listed), ''.
        assert_eq!(&first[4..7], &[131, 68, 4]);
        assert_eq!(
            (first[7] & 0x88, first[8] & 0x88, first[9]),
            (0x88, 0x88, 0),
            "all new"
        );
        let mut plain = vec![];
        encode_message(&m, &mut plain, true).unwrap();
        // The second time each atom is a slot byte and a 2-byte reference.
        assert!(again.len() < plain.len() && again.len() < first.len());
        assert_eq!(&again[4..7], &[131, 68, 4]);
        assert_eq!(again[7] & 0x88, 0, "no new entry the second time");
        // count, flags, slot and length bytes, texts (us@h, them@h, m, '')
        assert_eq!(header_len(&first[6..]), Some(1 + 3 + 4 * 2 + 4 + 6 + 1));
        let mut rx = receiver();
        let mut both = first.clone();
        both.extend_from_slice(&again);
        assert_eq!(received(&mut rx, &both), [m.clone(), m]);
    }

    #[test]
    fn the_segment_bits_are_set() {
        // Slots over 255 carry their segment in the flags.
        let mut c = SendCache::new();
        let name = (0..)
            .map(|i| format!("s{i}"))
            .find(|n| slot_of(n) >= 256 * 5)
            .unwrap();
        c.begin();
        assert_eq!(c.reference(&name), Some(0));
        let h = c.header().to_vec();
        c.finish();
        let slot = slot_of(&name);
        assert_eq!(h[0], 1);
        assert_eq!(h[1], 8 | (slot >> 8) as u8);
        assert_eq!(h[2], slot as u8);
        assert_eq!(&h[4..], name.as_bytes());
        assert_eq!(header_len(&h), Some(h.len()));
        assert_eq!(header_len(&h[..h.len() - 1]), None);
    }

    #[test]
    fn two_atoms_for_one_slot_in_one_message() {
        let (a, b) = twins();
        let mut c = SendCache::new();
        let mut rx = receiver();
        let m = send(
            "them@h",
            atoms(&[a.clone(), b.clone(), a.clone(), b.clone()]),
        );
        let mut out = vec![];
        encode_message_cached(&m, &mut out, &mut c).unwrap();
        encode_message_cached(&m, &mut out, &mut c).unwrap();
        let m2 = send("them@h", atoms(&[b.clone(), a.clone()]));
        encode_message_cached(&m2, &mut out, &mut c).unwrap();
        assert_eq!(received(&mut rx, &out), [m.clone(), m, m2]);
    }

    #[test]
    fn past_255_atoms_and_long_atoms_go_inline() {
        let names: Vec<String> = (0..600)
            .map(|i| format!("atom_{i}"))
            .chain(["x".repeat(255), "é".repeat(200), String::new()])
            .collect();
        let mut c = SendCache::new();
        let mut rx = receiver();
        let m = send("them@h", atoms(&names));
        let mut out = vec![];
        for _ in 0..3 {
            encode_message_cached(&m, &mut out, &mut c).unwrap();
        }
        assert_eq!(out[6], 255, "at most 255 references");
        assert_eq!(received(&mut rx, &out), vec![m; 3]);
    }

    #[test]
    fn slots_are_replaced_across_many_messages() {
        let mut c = SendCache::new();
        let mut rx = receiver();
        let mut out = vec![];
        let mut sent = vec![];
        for round in 0..2 {
            for i in 0..100 {
                let names: Vec<String> = (0..50)
                    .map(|j| format!("n{}", (i * 50 + j + round * 7) % 4000))
                    .collect();
                let m = send("them@h", atoms(&names));
                encode_message_cached(&m, &mut out, &mut c).unwrap();
                sent.push(m);
            }
        }
        assert_eq!(received(&mut rx, &out), sent);
    }

    #[test]
    fn a_message_that_fails_leaves_the_cache_as_it_was() {
        let mut c = SendCache::new();
        let mut rx = receiver();
        let mut out = vec![];
        let ok = send("them@h", atoms(&["kept".into(), "other".into()]));
        encode_message_cached(&ok, &mut out, &mut c).unwrap();
        // New atoms first, then one too long to write: dropped, its new
        // entries never reach the peer.
        let (a, _) = twins();
        let bad = send(
            "them@h",
            list(vec![
                atom("fresh"),
                atom(&a),
                atom("kept"),
                atom(&"y".repeat(70_000)),
            ]),
        );
        let before = out.len();
        assert!(matches!(
            encode_message_cached(&bad, &mut out, &mut c),
            Err(EncodeError::AtomTooLong(70_000))
        ));
        assert_eq!(out.len(), before);
        let next = send("them@h", atoms(&["fresh".into(), a.clone(), "kept".into()]));
        encode_message_cached(&next, &mut out, &mut c).unwrap();
        assert_eq!(received(&mut rx, &out), [ok, next]);
    }

    #[test]
    fn a_fragmented_message_carries_its_entries_in_the_first_fragment() {
        let mut c = SendCache::new();
        let mut rx = receiver();
        let mut out = vec![];
        let names: Vec<String> = (0..40).map(|i| format!("frag_{i}")).collect();
        let big = send(
            "them@h",
            tuple(vec![atoms(&names), binary(vec![7; 5000]), atoms(&names)]),
        );
        let small = send("them@h", atoms(&names));
        for seq in 1..=2 {
            let start = out.len();
            encode_message_cached(&big, &mut out, &mut c).unwrap();
            assert!(codec::fragment_last(&mut out, start, 700, seq));
            assert_eq!(&out[start + 4..start + 6], &[131, 69]);
            encode_message_cached(&small, &mut out, &mut c).unwrap();
        }
        assert_eq!(
            received(&mut rx, &out),
            [big.clone(), small.clone(), big, small]
        );
    }

    /// A payload sent as bytes has its atoms go through the cache as a
    /// term's do; the peer reads the term, whatever kinds it holds.
    #[test]
    fn an_encoded_payload_s_atoms_go_through_the_cache() {
        use crate::dist::control::encode_message_cached_with;
        use crate::term::{Encoded, Reference};
        let pid = Term::from(Pid::new("them@h", 7, 0, 3));
        let reference = Term::from(Reference {
            node: "them@h".into(),
            id: vec![1, 2, 3],
            creation: 3,
        });
        let fun = Term::from(erl_dist::term::ExternalFun::from(("lists", "map", 2)));
        let big = crate::term::uint(u64::MAX);
        let repeated = list(vec![tuple(vec![atom("cpg_data"), pid.clone()]); 100]);
        let terms = [
            repeated.clone(),
            tuple(vec![reference, fun, big, atom(&"é".repeat(100)), atom("")]),
            atom(&"x".repeat(255)),
            list(vec![]),
        ];
        let mut c = SendCache::new();
        let (mut out, mut sent) = (vec![], vec![]);
        for t in &terms {
            let payload = Encoded::of_term(t).unwrap();
            let m = send("them@h", crate::term::nil());
            encode_message_cached_with(&m, Some(payload.as_bytes()), &mut out, &mut c).unwrap();
            sent.push(send("them@h", t.clone()));
        }
        let mut rx = receiver();
        assert_eq!(received(&mut rx, &out), sent);
        // 200 atoms of text in the first payload ('cpg_data', 'them@h'),
        // 2 bytes each here: 1,400 bytes fewer.
        let mut alone = vec![];
        let m = send("them@h", crate::term::nil());
        let payload = Encoded::of_term(&repeated).unwrap();
        encode_message_cached_with(&m, Some(payload.as_bytes()), &mut alone, &mut c).unwrap();
        // (Less the header and the control tuple, under 100 bytes.)
        let saved = payload.as_bytes().len() as i64 - alone.len() as i64;
        assert!(saved > 1300, "{}", alone.len());
    }

    proptest! {
        /// Any run of messages over a pool of atoms (colliding ones, long
        /// ones, more than the cache holds), some refused, some
        /// fragmented: the peer reads what was sent.
        /// Any term, sent as bytes through the cache: the peer reads it.
        #[test]
        fn an_encoded_term_arrives_whole(
            t in crate::dist::control::tests::arb_term(),
            frag in 50usize..2000,
        ) {
            let payload = crate::term::Encoded::of_term(&t).unwrap();
            let mut c = SendCache::new();
            let mut out = vec![];
            let m = send("them@h", crate::term::nil());
            crate::dist::control::encode_message_cached_with(&m, Some(payload.as_bytes()), &mut out, &mut c).unwrap();
            codec::fragment_last(&mut out, 0, frag, 1);
            // `t` as read back (a bit binary's unused bits are not kept),
            // compared canonically (a map's entries in any order).
            let t = payload.decode(Limits::default()).unwrap();
            let mut rx = receiver();
            let got = received(&mut rx, &out);
            let [Message::SendSender(m)] = &got[..] else {
                panic!("{got:?}")
            };
            let canonical = crate::term::canonical::canonical_encoding;
            prop_assert_eq!(canonical(&m.message), canonical(&t));
        }

        #[test]
        fn a_peer_reads_what_was_sent(
            msgs in proptest::collection::vec(
                (proptest::collection::vec(0usize..3000, 0..80), any::<bool>(), 0usize..3),
                1..40,
            ),
            frag in 50usize..2000,
        ) {
            let (a, b) = twins();
            let name = |i: usize| match i % 500 {
                0 => a.clone(),
                1 => b.clone(),
                2 => "\u{e9}".repeat(128 + i % 3),
                3 => String::new(),
                _ => format!("p{i}"),
            };
            let mut c = SendCache::new();
            let mut out = vec![];
            let mut sent = vec![];
            for (seq, (ids, bad, size)) in msgs.into_iter().enumerate() {
                let mut items: Vec<Term> = ids.into_iter().map(|i| atom(&name(i))).collect();
                items.push(binary(vec![1; size * 900]));
                if bad {
                    items.push(atom(&"q".repeat(70_000)));
                }
                let m = send(&name(seq * 37 + 5), list(items));
                let start = out.len();
                let r = encode_message_cached(&m, &mut out, &mut c);
                prop_assert_eq!(r.is_err(), bad);
                if !bad {
                    codec::fragment_last(&mut out, start, frag, seq as u64 + 1);
                    sent.push(m);
                }
            }
            let mut rx = receiver();
            prop_assert_eq!(received(&mut rx, &out), sent);
        }
    }
}
