//! Packets after the handshake: framing, fragment reassembly and control
//! message decoding, exactly as a connection's reader runs them (a message
//! refused for its content is described for the log and dropped, a framing
//! error ends the stream).
//!
//! Whatever decodes is sent back through our encoder: the payload, if the
//! operation has one, must be the same Erlang term (compared by canonical encoding: a list of small
//! integers may come back as a string, map entries in another order);
//! the control term may be rewritten by erl_dist once, but a second
//! encode/decode must change nothing; and the distribution-header and
//! fragmented forms must reassemble to the same terms.
#![no_main]
use bytes::BytesMut;
use cpg_node::cpg::TermName;
use cpg_node::dist::codec::{self, Packet, Reassembler};
use cpg_node::term::{self, Limits};
use erl_dist::message::Message;
use libfuzzer_sys::fuzz_target;

const MAX: usize = 1 << 20;

/// The whole messages (pass-through form) in a byte stream of our own
/// encoding; any error is a failure.
fn reassemble(bytes: &[u8]) -> Vec<Vec<u8>> {
    let mut buf = BytesMut::from(bytes);
    let mut r = Reassembler::new(MAX);
    let mut out = Vec::new();
    while let Some(p) = codec::decode_packet(&mut buf, MAX).expect("our own framing") {
        if let Packet::Data(b) = p {
            if let Some(m) = r.push(&b).expect("our own packets reassemble") {
                out.push(m);
            }
        }
    }
    out
}

/// Canonical bytes of the control term and of the payload of a message in
/// pass-through form.
fn canonical(m: &[u8]) -> (Vec<u8>, Option<Vec<u8>>) {
    let canon = |b: &[u8]| {
        let t = term::decode(b, Limits::default()).expect("a term of our own encoding");
        TermName::new(t).canonical_bytes().to_vec()
    };
    let end = term::validate(m, 0, Limits::default()).expect("control term validates");
    (canon(&m[..end]), (end < m.len()).then(|| canon(&m[end..])))
}

fn encode(msg: &Message, header: bool, frag: Option<usize>) -> Option<Vec<u8>> {
    let mut out = vec![0, 0, 0, 0]; // a tick first
    codec::encode_message(msg.clone(), &mut out, header).ok()?;
    if let Some(size) = frag {
        codec::fragment_last(&mut out, 4, size, 42);
    }
    Some(out)
}

/// `m`: the message as received (pass-through form), `msg`: what it
/// decoded to.
fn round_trip(m: &[u8], msg: &Message, frag_size: usize) {
    let Some(plain) = encode(msg, false, None) else {
        return;
    };
    let got = reassemble(&plain);
    assert_eq!(got.len(), 1);
    let (ctl, payload) = canonical(&got[0]);
    // erl_dist ignores a payload after an operation that has none (and so
    // drops it); one that it keeps must be the same term.
    if payload.is_some() {
        assert_eq!(payload, canonical(m).1, "the payload changed");
    }
    let again = codec::decode_message(&got[0], Limits::default())
        .expect("our own encoding does not decode");
    if let Some(b) = encode(&again, false, None) {
        let got2 = reassemble(&b);
        assert_eq!(got2.len(), 1);
        assert_eq!(
            canonical(&got2[0]),
            (ctl.clone(), payload.clone()),
            "a second encode/decode changed the message"
        );
    }
    for frag in [None, Some(frag_size)] {
        let bytes = encode(msg, true, frag).expect("encodes with a header too");
        let got = reassemble(&bytes);
        assert_eq!(got.len(), 1, "fragments {frag:?}");
        assert_eq!(
            canonical(&got[0]),
            (ctl.clone(), payload.clone()),
            "header/fragments {frag:?} give other terms"
        );
        codec::decode_message(&got[0], Limits::default()).expect("header form decodes");
    }
}

fuzz_target!(|data: &[u8]| {
    let mut buf = BytesMut::from(data);
    let mut r = Reassembler::new(MAX);
    let frag_size = 1 + data.first().copied().unwrap_or(0) as usize;
    while let Ok(Some(p)) = codec::decode_packet(&mut buf, MAX) {
        if let Packet::Data(b) = p {
            match r.push(&b) {
                Ok(Some(m)) => match codec::decode_message(&m, Limits::default()) {
                    Ok(msg) => round_trip(&m, &msg, frag_size),
                    Err(e) if !e.is_fatal() => {
                        let _ = codec::describe_control(&m);
                    }
                    Err(_) => break,
                },
                Ok(None) => {}
                Err(e) if !e.is_fatal() => {
                    let _ = codec::describe_control(&b);
                }
                Err(_) => break,
            }
        }
    }
    // The body alone, as a whole message and as a packet body to describe.
    if let Ok(msg) = codec::decode_message(data, Limits::default()) {
        round_trip(data, &msg, frag_size);
    }
    let _ = codec::describe_control(data);
});
