//! EPMD requests (what the embedded server parses) and responses (what the
//! client parses).
#![no_main]
use cpg_node::epmd::wire;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = wire::Request::decode(data);
    let _ = wire::decode_alive2_resp(data);
    let _ = wire::decode_port2_resp(data);
    let _ = wire::decode_names_resp(data);
});
