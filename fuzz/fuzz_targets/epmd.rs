//! EPMD requests (what the embedded server parses) and responses (what the
//! client parses), whole and, for ALIVE2, in the 8-byte reads `register`
//! makes.
#![no_main]
use cpg_node::epmd::wire;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = wire::Request::decode(data);
    let whole = wire::decode_alive2_resp(data);
    let _ = wire::decode_port2_resp(data);
    let _ = wire::decode_names_resp(data);
    // `register` decodes after every read of up to 8 bytes; what it settles
    // on must be what the whole answer says.
    let mut buf = Vec::new();
    for chunk in data.chunks(8) {
        buf.extend_from_slice(chunk);
        match wire::decode_alive2_resp(&buf) {
            Ok(None) => continue,
            Ok(Some(c)) => {
                assert_eq!(whole.as_ref().ok(), Some(&Some(c)));
                return;
            }
            Err(e) => {
                assert_eq!(
                    whole.as_ref().map_err(|e| e.to_string()).err(),
                    Some(e.to_string())
                );
                return;
            }
        }
    }
    assert!(matches!(whole, Ok(None)));
});
