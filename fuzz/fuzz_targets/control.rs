//! Packets after the handshake: framing, fragment reassembly and control
//! message decoding, exactly as a connection runs them (`dist::link::Link`:
//! a message refused for its content is described for the log and
//! dropped, a framing error ends the stream), the input cut into reads at
//! places the input chooses.
//!
//! Whatever decodes is sent back through our encoder: the payload, if the
//! operation has one, must be the same Erlang term (compared by canonical
//! encoding: a list of small integers may come back as a string, map
//! entries in another order); the control term may be rewritten once, but a
//! second encode/decode must change nothing; and the pass-through,
//! distribution-header, fragmented and atom-cached forms must give the
//! same terms.
#![no_main]
use cpg_node::cpg::TermName;
use cpg_node::dist::codec::{self, Reassembler};
use cpg_node::dist::control;
use cpg_node::dist::link::{Event, Link, LinkConfig};
use cpg_node::dist::send_cache::SendCache;
use cpg_node::term::{self, Limits};
use erl_dist::message::Message;
use libfuzzer_sys::fuzz_target;
use std::time::{Duration, Instant};

const MAX: usize = 1 << 20;

fn link(frag: usize) -> Link {
    let cfg = LinkConfig {
        ticktime: Duration::from_secs(60),
        max_frame: MAX,
        fragment_size: frag,
        fragments: true,
        atom_cache: true,
        limits: Limits::default(),
    };
    Link::new(cfg, Instant::now())
}

/// The messages in a byte stream of our own encoding; any error is a
/// failure.
fn receive(bytes: &[u8]) -> Vec<Message> {
    let mut l = link(1000);
    l.handle_input(bytes, Instant::now())
        .expect("our own framing");
    std::iter::from_fn(|| l.poll_event())
        .map(|e| match e {
            Event::Message(m) => m,
            Event::Dropped { error, .. } => panic!("our own message refused: {error}"),
            // no name of this link takes raw payloads (no `set_raw_names`)
            Event::Raw(r) => panic!("a raw payload with no raw name: {r:?}"),
        })
        .collect()
}

/// Canonical bytes of a term written by `control::put_term`.
fn canon(t: &term::Term) -> Vec<u8> {
    TermName::new(t.clone()).canonical_bytes().to_vec()
}

/// Canonical bytes of the control term and of the payload of a message
/// as we encode it in pass-through form.
fn canonical(msg: &Message) -> Option<(Vec<u8>, Option<Vec<u8>>)> {
    let mut out = vec![];
    control::encode_message(msg, &mut out, false).ok()?;
    let body = &out[5..];
    let end = term::validate(body, 0, Limits::default()).expect("control term validates");
    let t = |b: &[u8]| canon(&term::decode(b, Limits::default()).expect("our own term"));
    Some((t(&body[..end]), (end < body.len()).then(|| t(&body[end..]))))
}

/// `whole`: the message as received, `msg`: what it decoded to.
fn round_trip(whole: &codec::Whole<'_>, msg: &Message, frag_size: usize) {
    let Some((ctl, payload)) = canonical(msg) else {
        return;
    };
    // erl_dist ignores a payload after an operation that has none (and so
    // drops it); one that it keeps must be the same term.
    // (Not with atom cache references, which the validator does not read.)
    let plain = !matches!(whole, codec::Whole::Borrowed { refs, .. } if !refs.idx.is_empty());
    if let (true, Some(p), codec::Whole::Borrowed { data, versioned, .. }) =
        (plain, &payload, whole)
    {
        let at = |v: bool| {
            if v {
                term::validate(data, 0, Limits::default())
            } else {
                term::validate_body(data, 0, Limits::default())
            }
        };
        let end = at(*versioned).unwrap();
        let mut got = vec![term::VERSION];
        got.extend_from_slice(&data[end + usize::from(*versioned)..]);
        let got = term::decode(&got, Limits::default()).unwrap();
        assert_eq!(Some(canon(&got)), Some(p.clone()), "the payload changed");
    }
    for header in [false, true] {
        let mut out = vec![0, 0, 0, 0]; // a tick first
        control::encode_message(msg, &mut out, header).expect("encodes");
        if header {
            codec::fragment_last(&mut out, 4, frag_size, 42);
        }
        let got = receive(&out);
        assert_eq!(got.len(), 1, "header {header}");
        assert_eq!(
            canonical(&got[0]),
            Some((ctl.clone(), payload.clone())),
            "header {header}: other terms"
        );
    }
    // Through the atom cache, twice in one stream (new entries, then the
    // same atoms as references to them), each fragmented.
    let mut cache = SendCache::new();
    let mut out = vec![];
    for seq in [7, 8] {
        let start = out.len();
        control::encode_message_cached(msg, &mut out, &mut cache).expect("encodes");
        codec::fragment_last(&mut out, start, frag_size, seq);
    }
    let got = receive(&out);
    assert_eq!(got.len(), 2, "through the atom cache");
    for m in &got {
        assert_eq!(
            canonical(m),
            Some((ctl.clone(), payload.clone())),
            "through the atom cache: other terms"
        );
    }
}

fuzz_target!(|data: &[u8]| {
    let frag_size = 1 + data.first().copied().unwrap_or(0) as usize;
    // The stream as a link reads it, cut where the second byte says.
    let cut = 1 + data.get(1).copied().unwrap_or(0) as usize;
    let mut l = link(frag_size);
    for chunk in data.chunks(cut) {
        if l.handle_input(chunk, Instant::now()).is_err() {
            break;
        }
    }
    while l.poll_event().is_some() {}
    // The same packets through the reassembler, to check each message.
    let mut r = Reassembler::new(MAX);
    let mut rest = data;
    while rest.len() >= 4 {
        let len = u32::from_be_bytes(rest[..4].try_into().unwrap()) as usize;
        let Some(body) = rest.get(4..4 + len) else {
            break;
        };
        rest = &rest[4 + len..];
        if body.is_empty() {
            continue;
        }
        match r.push(body) {
            Ok(Some(w)) => match w.decode(Limits::default()) {
                Ok(msg) => round_trip(&w, &msg, frag_size),
                Err(e) if !e.is_fatal() => {
                    let _ = codec::describe_control(w.bytes());
                }
                Err(_) => break,
            },
            Ok(None) => {}
            Err(_) => break,
        }
    }
    // The body alone, as a whole message and as a packet body to describe.
    if let Ok(msg) = control::decode_message(data, Limits::default()) {
        round_trip(
            &codec::Whole::Borrowed {
                data,
                versioned: true,
                refs: cpg_node::term::decode::AtomRefs::NONE,
            },
            &msg,
            frag_size,
        );
    }
    let _ = codec::describe_control(data);
});
