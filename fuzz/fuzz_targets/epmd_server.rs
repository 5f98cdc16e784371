//! The embedded EPMD server's side (src/epmd/server.rs): a client's bytes
//! arrive in reads of any size and the server decodes the buffer so far
//! after each read, as `serve` does. The request it settles on must be what
//! the whole input decodes to, must re-encode to bytes that decode the same,
//! and the answer the server sends for it must parse on the client side.
#![no_main]
use cpg_node::epmd::wire::{self, Request, MAX_REQUEST};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&seed, bytes)) = data.split_first() else {
        return;
    };
    // Read sizes 1..=256 (the server reads at most 256 bytes at a time).
    let read = seed as usize + 1;
    let whole = Request::decode(bytes);
    let mut buf = Vec::new();
    let mut got = None;
    for chunk in bytes.chunks(read) {
        buf.extend_from_slice(chunk);
        match Request::decode(&buf) {
            Ok(None) => assert!(
                buf.len() < 2 + MAX_REQUEST,
                "server keeps buffering past the longest request"
            ),
            r => {
                got = Some(r);
                break;
            }
        }
    }
    let Some(got) = got else {
        assert!(
            matches!(whole, Ok(None)),
            "incomplete when read in pieces, {whole:?} as a whole"
        );
        return;
    };
    match (&got, &whole) {
        (Ok(Some(a)), Ok(Some(b))) => assert_eq!(a, b, "pieces and whole disagree"),
        (Err(a), Err(b)) => assert_eq!(a.to_string(), b.to_string()),
        _ => panic!("pieces gave {got:?}, whole gave {whole:?}"),
    }
    let Ok(Some((req, used))) = got else { return };
    assert!(used <= bytes.len() && used <= 2 + MAX_REQUEST);
    let again = req.encode();
    match Request::decode(&again) {
        Ok(Some((r, n))) => {
            assert_eq!(r, req, "request does not survive encode/decode");
            assert_eq!(n, again.len());
        }
        other => panic!("re-encoded {req:?} decodes as {other:?}"),
    }
    // What `serve` answers, read back by the client (src/epmd/mod.rs).
    match req {
        Request::Alive2(entry) => {
            let creation = u32::from(seed) << 8 | 4;
            assert_eq!(
                wire::decode_alive2_resp(&wire::encode_alive2_resp(0, creation)).ok(),
                Some(Some(creation))
            );
            assert!(wire::decode_alive2_resp(&wire::encode_alive2_resp(1, 0)).is_err());
            // The registered entry, as PORT_PLEASE2 and NAMES later show it.
            let back = wire::decode_port2_resp(&wire::encode_port2_resp(Some(&entry)));
            assert_eq!(back.ok(), Some(Some(entry.clone())));
            let names = vec![(entry.name.clone(), entry.port)];
            let listed = wire::decode_names_resp(&wire::encode_names_resp(4369, &names))
                .expect("names response");
            // NAMES is text, "name N at port P" per line, which cannot carry
            // a name with white space (net_adm:names/0 splits the same way).
            if !entry.name.is_empty() && !entry.name.contains(char::is_whitespace) {
                assert_eq!(listed, names);
            }
        }
        Request::PortPlease2(_) => {
            assert_eq!(
                wire::decode_port2_resp(&wire::encode_port2_resp(None)).ok(),
                Some(None)
            );
        }
        Request::Names => {}
    }
});
