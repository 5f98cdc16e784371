//! Handshake messages from a hostile peer, to both sides of the handshake.
#![no_main]
use cpg_node::config::{Cookie, NodeName};
use cpg_node::dist::flags;
use cpg_node::dist::handshake::{Acceptor, Initiator, Local, Step};
use libfuzzer_sys::fuzz_target;

fn local() -> Local {
    Local {
        name: NodeName::parse("fuzz@host").unwrap(),
        creation: 1,
        flags: flags::OFFERED,
        cookie: Cookie::new("cookie"),
    }
}

fuzz_target!(|data: &[u8]| {
    // Split the input into handshake messages by 2-byte lengths.
    let mut msgs = Vec::new();
    let mut rest = data;
    while rest.len() >= 2 {
        let n = u16::from_be_bytes([rest[0], rest[1]]) as usize;
        let take = n.min(rest.len() - 2);
        msgs.push(&rest[2..2 + take]);
        rest = &rest[2 + take..];
    }
    let mut a = Acceptor::new(local(), 7);
    for m in &msgs {
        match a.handle(m) {
            Ok(Step::NameReceived(_)) => {
                let _ = a.accept();
            }
            Ok(_) => {}
            Err(_) => break,
        }
    }
    let (mut i, _) = Initiator::start(local(), 9);
    for m in &msgs {
        if i.handle(m).is_err() {
            break;
        }
    }
});
