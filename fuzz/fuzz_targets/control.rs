//! Packets after the handshake: framing, fragment reassembly and control
//! message decoding, exactly as a connection runs them.
#![no_main]
use bytes::BytesMut;
use cpg_node::dist::codec::{self, Packet, Reassembler};
use cpg_node::term::Limits;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut buf = BytesMut::from(data);
    let mut r = Reassembler::new(1 << 20);
    while let Ok(Some(p)) = codec::decode_packet(&mut buf, 1 << 20) {
        if let Packet::Data(b) = p {
            match r.push(&b) {
                Ok(Some(m)) => {
                    let _ = codec::decode_message(&m, Limits::default());
                }
                Ok(None) => {}
                Err(_) => break,
            }
        }
    }
    // The body alone, as a whole message.
    let _ = codec::decode_message(data, Limits::default());
});
