//! Term decoding of untrusted bytes: validator + eetf must never panic, and
//! whatever decodes must re-encode to bytes the validator accepts and that
//! decode and encode to the same bytes again.
#![no_main]
use cpg_node::term::{self, Limits};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(t) = term::decode(data, Limits::default()) else {
        return;
    };
    let mut out = Vec::new();
    if term::encode_into(&t, &mut out).is_err() {
        return;
    }
    let again = term::decode(&out, Limits::default()).expect("our own encoding does not decode");
    let mut out2 = Vec::new();
    term::encode_into(&again, &mut out2).expect("a decoded term encodes again");
    assert_eq!(out, out2, "encode/decode/encode changed the term");
});
