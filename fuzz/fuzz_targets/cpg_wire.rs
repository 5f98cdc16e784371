//! cpg scope messages from a hostile peer: term decoding, then the scope
//! message decoder, then the pure scope applying whatever decoded (remote
//! requests, exchanges, `{new, Node}`), then every read on every group.
//! Each message is also read as a large one is (its payload left as bytes,
//! an exchange read straight from them): whatever that reads, the term
//! path must read the same.
#![no_main]
use cpg_node::cpg::scope::Scope;
use cpg_node::cpg::wire::WireMsg;
use cpg_node::cpg::MemberPid;
use cpg_node::dist::raw::RawPayload;
use cpg_node::term::{self, Limits};
use libfuzzer_sys::fuzz_target;

#[path = "frames.rs"]
mod frames;

fuzz_target!(|data: &[u8]| {
    let mut scope: Scope<MemberPid> = Scope::new("me@host");
    let _ = scope.node_up("a@host", true);
    for msg in frames::frames(data) {
        let raw = RawPayload::new(msg.to_vec(), 0, true, Vec::new(), Limits::default());
        if let Some(fast) = WireMsg::<MemberPid>::decode_exchange(&raw) {
            let t = raw.decode().expect("the exchange was read from its bytes");
            assert_eq!(WireMsg::<MemberPid>::decode(&t).as_ref(), Ok(&fast));
        }
        let Ok(t) = term::decode(msg, Limits::default()) else {
            continue;
        };
        match WireMsg::<MemberPid>::decode(&t) {
            Ok(WireMsg::Cast(cpg_node::cpg::scope::Request::Exchange { from, groups })) => {
                let _ = scope.exchange(&from, groups);
            }
            Ok(WireMsg::Cast(r)) => {
                let _ = scope.remote_request("a@host", r);
            }
            Ok(WireMsg::New(n)) => {
                let _ = scope.new_node(&n);
            }
            Err(_) => {}
        }
    }
    for g in scope.which_groups() {
        let _ = scope.get_members(&g, None);
        let _ = scope.get_closest_pid(&g, None, &mut |n| n / 2);
        let _ = scope.get_oldest_pid(&g, None);
    }
    let _ = scope.node_down("a@host");
    for g in scope.which_groups() {
        if let Ok((_, pids)) = scope.get_members(&g, None) {
            assert!(
                pids.iter().all(|p| p.node() != "a@host"),
                "nodedown left a member of a@host"
            );
        }
    }
});
