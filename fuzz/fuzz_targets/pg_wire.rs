//! OTP pg scope messages and Phoenix.PubSub broadcasts from a hostile peer:
//! term decoding, then the pg message decoder, then the pure pg scope state
//! handling whatever decoded (discover, sync, join, leave, from peers it
//! knows or not), then every read; and each decoded term read as a PubSub
//! `forward_to_local`. Whatever the pg state sends back must survive the
//! wire (encode, decode, same message). A peer's scope going down must
//! leave none of its members behind.
#![no_main]
use cpg_node::pg::scope::{Effect, PgState};
use cpg_node::pg::wire::PgMsg;
use cpg_node::term::{self, Limits, Pid};
use libfuzzer_sys::fuzz_target;

#[path = "frames.rs"]
mod frames;

fuzz_target!(|data: &[u8]| {
    let me = Pid::new("me@host", 1, 0, 1);
    let mut state = PgState::new(me);
    for msg in frames::frames(data) {
        let Ok(t) = term::decode(msg, Limits::default()) else {
            continue;
        };
        let _ = cpg_node::pubsub::parse_forward(&t);
        let Ok(m) = PgMsg::decode(&t) else {
            continue;
        };
        for e in state.handle(m) {
            if let Effect::Send { msg, .. } = e {
                let back = PgMsg::decode(&msg.encode()).expect("what we send decodes");
                assert_eq!(back, msg, "what we send survives the wire");
            }
        }
    }
    for g in state.which_groups() {
        let _ = state.get_members(&g);
        let _ = state.get_local_members(&g);
    }
    let peers: Vec<Pid> = state.peers().cloned().collect();
    for p in &peers {
        let _ = state.peer_down(p);
    }
    for g in state.which_groups() {
        assert!(
            state
                .get_members(&g)
                .iter()
                .all(|p| p.node.name == "me@host"),
            "a downed peer left members behind"
        );
    }
});
