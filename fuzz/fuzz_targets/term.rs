//! Term decoding of untrusted bytes: validator + eetf must never panic, and
//! whatever decodes must re-encode to bytes the validator accepts and that
//! decode to the same Erlang term. Terms are compared by their canonical
//! encoding (`TermName`): the representation may change (a list of small
//! integers comes back as a string) and eetf's `==` on maps whose keys are
//! maps depends on hash order.
#![no_main]
use cpg_node::cpg::TermName;
use cpg_node::status::NodeStatus;
use cpg_node::term::{self, Limits, Term};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(t) = term::decode(data, Limits::default()) else {
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
    if map_key_holds_map(&t) {
        // eetf hashes a map in its (random) iteration order, so decoding a
        // map whose keys are equal maps (BEAM refuses it: duplicate keys)
        // keeps one or both of them at random: no round trip to compare.
        return;
    }
    assert_eq!(
        TermName::new(again).canonical_bytes(),
        TermName::new(t).canonical_bytes(),
        "encode/decode changed the term"
    );
});

/// Whether some map in `t` has a key that is or holds a map.
fn map_key_holds_map(t: &Term) -> bool {
    fn holds_map(t: &Term) -> bool {
        match t {
            Term::Map(_) => true,
            Term::Tuple(x) => x.elements.iter().any(holds_map),
            Term::List(x) => x.elements.iter().any(holds_map),
            Term::ImproperList(x) => x.elements.iter().any(holds_map) || holds_map(&x.last),
            _ => false,
        }
    }
    match t {
        Term::Map(m) => m
            .map
            .iter()
            .any(|(k, v)| holds_map(k) || map_key_holds_map(k) || map_key_holds_map(v)),
        Term::Tuple(x) => x.elements.iter().any(map_key_holds_map),
        Term::List(x) => x.elements.iter().any(map_key_holds_map),
        Term::ImproperList(x) => {
            x.elements.iter().any(map_key_holds_map) || map_key_holds_map(&x.last)
        }
        _ => false,
    }
}
