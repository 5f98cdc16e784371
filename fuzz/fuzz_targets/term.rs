//! Term decoding of untrusted bytes: validator + eetf must never panic,
//! and whatever decodes must re-encode and decode to the same term.
#![no_main]
use cpg_node::term::{self, Limits};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(t) = term::decode(data, Limits::default()) {
        let mut out = Vec::new();
        if term::encode_into(&t, &mut out).is_ok() {
            let _ = term::decode(&out, Limits::default());
        }
    }
});
