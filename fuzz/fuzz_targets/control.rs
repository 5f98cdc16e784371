//! Packets after the handshake: framing, fragment reassembly and control
//! message decoding, exactly as a connection runs them. Whatever decodes
//! is sent back through our encoder (pass-through, distribution header,
//! fragments) and must decode to the same bytes again.
#![no_main]
use bytes::BytesMut;
use cpg_node::dist::codec::{self, Packet, Reassembler};
use cpg_node::term::Limits;
use erl_dist::message::Message;
use libfuzzer_sys::fuzz_target;

const MAX: usize = 1 << 20;

/// Every whole message in a byte stream, as the connection's reader gets
/// them; `Err` on the first error that would close the connection.
fn read_all(bytes: &[u8]) -> Result<Vec<Message>, codec::DecodeError> {
    let mut buf = BytesMut::from(bytes);
    let mut r = Reassembler::new(MAX);
    let mut out = Vec::new();
    while let Some(p) = codec::decode_packet(&mut buf, MAX)? {
        if let Packet::Data(b) = p {
            if let Some(m) = r.push(&b)? {
                match codec::decode_message(&m, Limits::default()) {
                    Ok(msg) => out.push(msg),
                    Err(codec::DecodeError::UnsupportedOp(_)) => {}
                    Err(e) => return Err(e),
                }
            }
        }
    }
    Ok(out)
}

fn encode(msg: &Message, header: bool, frag: Option<usize>) -> Option<Vec<u8>> {
    let mut out = vec![0, 0, 0, 0]; // a tick first
    codec::encode_message(msg.clone(), &mut out, header).ok()?;
    if let Some(size) = frag {
        codec::fragment_last(&mut out, 4, size, 42);
    }
    Some(out)
}

fn round_trip(msg: &Message, frag_size: usize) {
    let Some(plain) = encode(msg, false, None) else {
        return;
    };
    let again = read_all(&plain).expect("our own encoding does not decode");
    assert_eq!(again.len(), 1);
    assert_eq!(
        encode(&again[0], false, None).as_deref(),
        Some(&plain[..]),
        "encode/decode/encode changed the message"
    );
    for frag in [None, Some(frag_size)] {
        let bytes = encode(msg, true, frag).expect("encodes with a header too");
        let got = read_all(&bytes).expect("our header/fragment encoding does not decode");
        assert_eq!(got.len(), 1, "fragments {frag:?}");
        assert_eq!(
            encode(&got[0], false, None).as_deref(),
            Some(&plain[..]),
            "header/fragments {frag:?} changed the message"
        );
    }
}

fuzz_target!(|data: &[u8]| {
    let mut buf = BytesMut::from(data);
    let mut r = Reassembler::new(MAX);
    let frag_size = 1 + data.first().copied().unwrap_or(0) as usize;
    while let Ok(Some(p)) = codec::decode_packet(&mut buf, MAX) {
        if let Packet::Data(b) = p {
            match r.push(&b) {
                Ok(Some(m)) => {
                    if let Ok(msg) = codec::decode_message(&m, Limits::default()) {
                        round_trip(&msg, frag_size);
                    }
                }
                Ok(None) => {}
                Err(_) => break,
            }
        }
    }
    // The body alone, as a whole message.
    if let Ok(msg) = codec::decode_message(data, Limits::default()) {
        round_trip(&msg, frag_size);
    }
});
