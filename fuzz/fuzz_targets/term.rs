//! Term decoding of untrusted bytes: our decoder must never panic, must
//! agree with the former path (validator + eetf, `term::decode_two_pass`;
//! for whole control messages, validator + erl_dist,
//! `control::decode_terms_two_pass`): the same term or the same error, and
//! whatever decodes must re-encode to bytes that decode to the same Erlang
//! term. Terms are compared by their canonical
//! encoding (`TermName`): the representation may change (a list of small
//! integers comes back as a string) and eetf's `==` on maps whose keys are
//! maps depends on hash order.
#![no_main]
use cpg_node::cpg::TermName;
use cpg_node::dist::codec::DecodeError;
use cpg_node::dist::control;
use cpg_node::status::NodeStatus;
use cpg_node::term::decode::DUPLICATE_KEYS;
use cpg_node::term::{self, Limits, Term, TermError};
use erl_dist::message::Message;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let limits = Limits::default();
    let ours = term::decode(data, limits);
    match (&ours, &term::decode_two_pass(data, limits)) {
        // A map keyed by maps comes out of either at random (see below).
        (Ok(a), Ok(b)) if term::keyed_by_map(a) || term::keyed_by_map(b) => {}
        // (Equal values first: the canonical bytes of a fun are eetf's
        // encoding, whose maps come in hash order.)
        (Ok(a), Ok(b)) if a == b => {}
        (Ok(a), Ok(b)) => assert_eq!(canon(a), canon(b), "ours and eetf decode differently"),
        (Err(TermError::Decode(_)), Err(TermError::Decode(_))) => {}
        // We refuse a map with duplicate keys, as BEAM does; eetf keeps it.
        (Err(TermError::Decode(m)), Ok(_)) if m == DUPLICATE_KEYS => {}
        (a, b) => assert_eq!(
            a.as_ref().err(),
            b.as_ref().err(),
            "ours and validator+eetf differ"
        ),
    }
    for versioned in [true, false] {
        same_message(data, versioned);
    }
    let Ok(t) = ours else {
        return;
    };
    if let Ok(s) = NodeStatus::from_term(&t) {
        assert_eq!(
            NodeStatus::from_term(&s.to_term()),
            Ok(s),
            "status round trip"
        );
    }
    let mut out = Vec::new();
    if term::encode_into(&t, &mut out).is_err() {
        return;
    }
    let again = term::decode(&out, Limits::default()).expect("our own encoding does not decode");
    if term::keyed_by_map(&t) {
        // eetf hashes a map in its (random) iteration order, so decoding a
        // map whose keys are equal maps (BEAM refuses it: duplicate keys)
        // keeps one or both of them at random: no round trip to compare.
        return;
    }
    if again == t {
        return; // (as above: a fun's canonical bytes hold maps in hash order)
    }
    assert_eq!(
        TermName::new(again).canonical_bytes(),
        TermName::new(t).canonical_bytes(),
        "encode/decode changed the term"
    );
});

fn canon(t: &Term) -> Vec<u8> {
    TermName::new(t.clone()).canonical_bytes().to_vec()
}

/// Canonical bytes of a message's terms (in pass-through form, as we
/// encode it); `None` for a map keyed by maps (decoded at random).
fn canon_message(m: &Message) -> Option<Vec<Vec<u8>>> {
    let mut out = vec![];
    control::encode_message(m, &mut out, false).expect("a decoded message encodes");
    let body = &out[5..];
    let cend = term::validate(body, 0, Limits::default()).expect("our control term");
    [&body[..cend], &body[cend..]]
        .iter()
        .filter(|b| !b.is_empty())
        .map(|b| {
            let t = term::decode(b, Limits::default()).expect("our own term");
            (!term::keyed_by_map(&t)).then(|| canon(&t))
        })
        .collect()
}

/// `data` as a message's terms: our decoding and the former one agree
/// (the same message, or errors of the same kind). SEND_TT excepted:
/// erl_dist reads its last two elements swapped.
fn same_message(data: &[u8], versioned: bool) {
    let limits = Limits::default();
    let ours = control::decode_terms(data, versioned, limits);
    let old = control::decode_terms_two_pass(data, versioned, limits);
    match (&ours, &old) {
        (Ok(Message::SendTt(_)), _) | (_, Ok(Message::SendTt(_))) => {}
        (Ok(a), Ok(b)) if a == b => {}
        (Ok(a), Ok(b)) => {
            if let (Some(a), Some(b)) = (canon_message(a), canon_message(b)) {
                assert_eq!(a, b, "messages differ");
            }
        }
        (Err(DecodeError::Control(_)), Err(DecodeError::Control(_))) => {}
        // We refuse a map with duplicate keys, as BEAM does, wherever it
        // is (the control tuple too, before its operation is looked at);
        // eetf keeps it.
        (Err(DecodeError::Term(TermError::Decode(m)) | DecodeError::Control(m)), _)
            if m.contains(DUPLICATE_KEYS) => {}
        (a, b) => assert_eq!(a.as_ref().err(), b.as_ref().err(), "message errors differ"),
    }
}

