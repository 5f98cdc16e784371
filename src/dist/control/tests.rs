//! Tests of the codec: against erl_dist's reader (the two-pass path),
//! mutations of valid messages, round trips, golden bytes.

use super::decode::{decode_general, decode_usual};
use super::{
    decode_message, decode_terms, decode_terms_two_pass, encode_message, message_size, put_term,
    term_size, EncodeError,
};
use crate::dist::codec::{DecodeError, PASS_THROUGH};
use crate::term::decode::{AtomRefs, DUPLICATE_KEYS};
use crate::term::{self, atom, binary, int, list, map, tuple, TermError};
use crate::term::{Atom, Limits, List, Pid, PidOrAtom, Reference, Term};
use erl_dist::message::Message;
use erl_dist::term::Mfa;
use proptest::prelude::*;

/// Ours and the former path (validator, erl_dist) agree on `data`: the
/// same message or the same kind of error. `SEND_TT` excepted, which
/// erl_dist reads with its last two elements swapped.
pub(crate) fn check_against_two_pass(data: &[u8], versioned: bool) {
    let limits = Limits::default();
    let ours = decode_terms(data, versioned, limits);
    let none = AtomRefs::NONE;
    if let Some(usual) = decode_usual(data, versioned, limits, none, None) {
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
        // (We refuse a map with duplicate keys, as BEAM does, wherever it
        // is: the control tuple too, before its operation is looked at;
        // eetf keeps it.)
        (Err(DecodeError::Term(TermError::Decode(m)) | DecodeError::Control(m)), _)
            if m.contains(DUPLICATE_KEYS) =>
        {
            true
        }
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

pub(crate) fn arb_term() -> impl Strategy<Value = Term> {
    // Non-negative: eetf 0.11 writes a list of integers below 256 as a
    // byte string, negative ones included ([-1] becomes [255]); we do
    // not (`negative_integers_in_a_list`).
    let leaf = prop_oneof![
        (0..i32::MAX).prop_map(int),
        "[a-zé]{0,255}".prop_map(|s| atom(&s)),
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

/// A control term `{Integer, x}` (pass-through form, with its 131 bytes)
/// whose integer has `n` bytes, all 0xff.
fn big_op(n: usize) -> Vec<u8> {
    let mut b = vec![term::VERSION, 104, 2, 111];
    b.extend_from_slice(&(n as u32).to_be_bytes());
    b.push(0);
    b.resize(b.len() + n, 0xff);
    b.extend_from_slice(&[119, 1, b'x']);
    b
}

/// A huge integer where the operation goes costs a bounded error text:
/// one BEAM would take (4 MiB) is refused as a control message naming it
/// by its size (its decimal form took 10 s and made a 9.6 MB log line),
/// a larger one (16 MiB) is refused as a term, as BEAM refuses it, before
/// anything is built; the drop's description of the control term is
/// short too. Both paths agree with the former one.
#[test]
fn a_huge_integer_in_a_control_message_costs_a_short_error() {
    let max = term::MAX_INTEGER_BYTES;
    let at_max = big_op(max);
    match decode_message(&at_max, Limits::default()) {
        Err(e @ DecodeError::Control(_)) => {
            let text = e.to_string();
            assert!(text.len() < 100, "{text}");
            assert!(
                text.contains(&format!("<integer of {max} bytes>")),
                "{text}"
            );
        }
        other => panic!("{other:?}"),
    }
    let over = big_op(16 << 20);
    let e = decode_message(&over, Limits::default()).unwrap_err();
    assert_eq!(
        e,
        DecodeError::Term(TermError::IntegerTooLarge {
            bytes: 16 << 20,
            pos: 3
        })
    );
    assert!(e.to_string().len() < 100, "{e}");
    // (Not `at_max`: erl_dist's error would print it in decimal.)
    check_against_two_pass(&big_op(max + 1), true);
    let shown = crate::dist::codec::describe_control(&at_max).unwrap();
    assert_eq!(shown, format!("{{<integer of {max} bytes>,x}}"));
}

/// Atoms of more than 255 characters and references of more than 5 words
/// are not written: a BEAM node refuses them and drops the connection
/// that brought them (which a hostile peer used: one it reflected off
/// our node cut the link to a third, BEAM, node). 255 characters of two
/// bytes each go.
#[test]
fn atoms_and_references_beam_refuses_are_not_written() {
    let long = atom(&"x".repeat(256));
    let mut out = vec![];
    assert!(matches!(
        put_term(&mut out, &long),
        Err(EncodeError::AtomTooLong(256))
    ));
    let msg = Message::send(Pid::new("a@h", 1, 0, 1), tuple(vec![int(1), long]));
    assert!(encode_message(&msg, &mut Vec::new(), true).is_err());
    let node = Pid::new(format!("{}@h", "n".repeat(254)), 1, 0, 1);
    assert!(put_term(&mut out, &Term::Pid(node)).is_err());
    let wide = atom(&"\u{e9}".repeat(255));
    let mut out = vec![];
    put_term(&mut out, &wide).unwrap();
    let back = term::decode::decode_body(&out, 0, Limits::default()).unwrap();
    assert_eq!(back.term.unwrap(), wide);
    let reference = |words: usize| {
        Term::Reference(Box::new(Reference {
            node: Atom::from("a@h"),
            id: vec![1; words],
            creation: 1,
        }))
    };
    put_term(&mut Vec::new(), &reference(5)).unwrap();
    assert!(matches!(
        put_term(&mut Vec::new(), &reference(6)),
        Err(EncodeError::ReferenceTooLong(6))
    ));
}

/// A message to no receiver is `NoReceiver` once its control tuple is
/// read, its payload neither decoded nor checked (as BEAM drops it); one
/// to a receiver decodes as ever; the receivers are asked of its target.
#[test]
fn a_message_to_no_receiver_is_left_undecoded() {
    use super::{decode_terms_for, Target};
    let to = Pid::new("us@h", 5, 0, 1);
    let mut send = vec![];
    let msg = Message::send(to.clone(), atom("hi"));
    encode_message(&msg, &mut send, false).unwrap();
    let body = &send[5..];
    let asked = std::sync::Mutex::new(vec![]);
    let none = |t: Target<'_>| {
        asked.lock().unwrap().push(match t {
            Target::Pid(p) => term::pid_text(p),
            Target::Name(n) => n.to_string(),
        });
        false
    };
    let all = |_: Target<'_>| true;
    let limits = Limits::default();
    let refs = AtomRefs::NONE;
    assert_eq!(
        decode_terms_for(body, true, limits, refs, Some(&none)),
        Err(DecodeError::NoReceiver)
    );
    assert_eq!(
        decode_terms_for(body, true, limits, refs, Some(&all)),
        Ok(msg)
    );
    // A payload that would not decode is not looked at.
    let mut broken = body.to_vec();
    let n = broken.len();
    broken[n - 3] = 99; // the atom's tag: a float of 31 bytes that are not there
    assert_eq!(
        decode_terms_for(&broken, true, limits, refs, Some(&none)),
        Err(DecodeError::NoReceiver)
    );
    assert!(decode_terms_for(&broken, true, limits, refs, Some(&all)).is_err());
    let mut reg = vec![];
    let m = Message::reg_send(Pid::new("them@h", 1, 0, 1), "nobody".into(), atom("hi"));
    encode_message(&m, &mut reg, false).unwrap();
    assert_eq!(
        decode_terms_for(&reg[5..], true, limits, refs, Some(&none)),
        Err(DecodeError::NoReceiver)
    );
    assert_eq!(
        *asked.lock().unwrap(),
        vec![term::pid_text(&to); 2]
            .into_iter()
            .chain(["nobody".to_string()])
            .collect::<Vec<_>>()
    );
}
