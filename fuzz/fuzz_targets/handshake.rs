//! Handshake messages from a hostile peer, to both sides of the handshake
//! (acceptor: name, then challenge reply; initiator: status, challenge,
//! then ack).
//!
//! The first byte chooses how the peer behaves: bit 0 makes it know the
//! cookie (a reply or ack of the right size gets the right digest written
//! in, so the fuzzer gets past the digest checks it cannot guess); bit 1
//! makes the acceptor refuse the name instead of accepting it.
#![no_main]
use cpg_node::config::{Cookie, NodeName};
use cpg_node::dist::flags;
use cpg_node::dist::handshake::{digest, Acceptor, Initiator, Local, PeerInfo, Status, Step};
use libfuzzer_sys::fuzz_target;

#[path = "frames.rs"]
mod frames;

const ACCEPTOR_CHALLENGE: u32 = 7;
const INITIATOR_CHALLENGE: u32 = 9;

fn local() -> Local {
    Local {
        name: NodeName::parse("fuzz@host").unwrap(),
        creation: 1,
        flags: flags::OFFERED,
        cookie: Cookie::new("cookie"),
    }
}

fn cookie() -> Cookie {
    Cookie::new("cookie")
}

fn acceptor(msgs: &[Vec<u8>], knows_cookie: bool, refuse: bool) {
    let mut a = Acceptor::new(local(), ACCEPTOR_CHALLENGE);
    let mut named: Option<PeerInfo> = None;
    let mut ended = false;
    for m in msgs {
        let mut m = m.clone();
        if knows_cookie && m.len() == 21 && m[0] == b'r' {
            m[5..21].copy_from_slice(&digest(&cookie(), ACCEPTOR_CHALLENGE));
        }
        let r = a.handle(&m);
        if ended {
            assert!(r.is_err(), "acceptor took {m:?} after it ended: {r:?}");
            continue;
        }
        match r {
            Ok(Step::NameReceived(p)) => {
                assert!(named.is_none(), "second name accepted");
                if refuse {
                    assert_eq!(a.refuse(Status::Nok), b"snok");
                    ended = true;
                } else {
                    let out = a.accept().expect("accept after the name");
                    assert_eq!(out.len(), 2);
                    assert_eq!(out[0], b"sok");
                    assert_eq!(out[1][0], b'N');
                }
                named = Some(p);
            }
            Ok(Step::Done(out, p)) => {
                assert_eq!(Some(&p), named.as_ref(), "done with another peer");
                assert!(knows_cookie, "done without the cookie");
                let their = u32::from_be_bytes([m[1], m[2], m[3], m[4]]);
                let mut ack = vec![b'a'];
                ack.extend_from_slice(&digest(&cookie(), their));
                assert_eq!(out, vec![ack]);
                ended = true;
            }
            Ok(Step::Continue(out)) => panic!("acceptor continued with {out:?}"),
            Err(_) => ended = true,
        }
    }
}

fn initiator(msgs: &[Vec<u8>], knows_cookie: bool) {
    let (mut i, first) = Initiator::start(local(), INITIATOR_CHALLENGE);
    assert_eq!(first[0], b'N');
    let mut challenged: Option<PeerInfo> = None;
    let mut ended = false;
    for m in msgs {
        let mut m = m.clone();
        if knows_cookie && m.len() == 17 && m[0] == b'a' {
            m[1..17].copy_from_slice(&digest(&cookie(), INITIATOR_CHALLENGE));
        }
        let r = i.handle(&m);
        if ended {
            assert!(r.is_err(), "initiator took {m:?} after it ended: {r:?}");
            continue;
        }
        match r {
            Ok(Step::Continue(out)) if out.len() == 1 && out[0][0] == b'r' => {
                assert!(challenged.is_none(), "second challenge answered");
                let challenge = u32::from_be_bytes([m[9], m[10], m[11], m[12]]);
                assert_eq!(out[0].len(), 21);
                assert_eq!(out[0][1..5], INITIATOR_CHALLENGE.to_be_bytes());
                assert_eq!(out[0][5..], digest(&cookie(), challenge));
                // Only the peer info is kept: re-read it by answering the
                // same challenge on a fresh machine would need the status
                // again, so record what Done must report later.
                let name_len = u16::from_be_bytes([m[17], m[18]]) as usize;
                let name = std::str::from_utf8(&m[19..19 + name_len]).unwrap();
                challenged = Some(PeerInfo {
                    name: NodeName::parse(name).unwrap(),
                    flags: flags::expand(u64::from_be_bytes(m[1..9].try_into().unwrap())),
                    creation: u32::from_be_bytes([m[13], m[14], m[15], m[16]]),
                });
            }
            Ok(Step::Continue(out)) => {
                assert!(challenged.is_none(), "status after the challenge");
                assert!(out.is_empty() || out == vec![b"strue".to_vec()]);
            }
            Ok(Step::Done(out, p)) => {
                assert!(out.is_empty());
                assert!(knows_cookie, "done without the cookie");
                assert_eq!(Some(p), challenged.take(), "done with another peer");
                ended = true;
            }
            Ok(Step::NameReceived(p)) => panic!("initiator got a name {p:?}"),
            Err(_) => ended = true,
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, data)) = data.split_first() else {
        return;
    };
    // Split the input into handshake messages by 2-byte lengths.
    let msgs: Vec<Vec<u8>> = frames::frames(data).map(<[u8]>::to_vec).collect();
    let knows_cookie = mode & 1 != 0;
    acceptor(&msgs, knows_cookie, mode & 2 != 0);
    initiator(&msgs, knows_cookie);
});
