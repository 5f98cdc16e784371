//! The node-name table full of names that only came in messages (a peer
//! inventing node names in exchanges): names of nodes that connect still
//! find room (`Atom::new_peer`), and an exchange leaves out only the pids
//! it cannot name, on both of its decoding paths.
//!
//! A test binary of its own: it fills the process-wide table.

use cpg_node::atom::{Atom, AtomError, MAX_ATOMS, PEER_RESERVE};
use cpg_node::cpg::scope::{Request, Scope};
use cpg_node::cpg::wire::{WireError, WireMsg};
use cpg_node::cpg::MemberPid;
use cpg_node::dist::raw::RawPayload;
use cpg_node::term::{self, atom, list, tuple, Limits, Pid, Term};

fn pid(node: &str, id: u32) -> Term {
    Term::Pid(Pid::new(node, id, 0, 1))
}

fn string(s: &str) -> Term {
    term::string_to_charlist(s)
}

fn cast(req: Term) -> Term {
    tuple(vec![atom("$gen_cast"), req])
}

#[test]
fn a_full_table_keeps_room_for_peers_and_exchanges_keep_what_they_can_name() {
    let known = "known@h";
    Atom::new(known).unwrap();
    // Fill the table up to what names from messages may take.
    let mut i = 0u64;
    loop {
        match Atom::new(&format!("invented{i}@h")) {
            Ok(_) => i += 1,
            Err(AtomError::TableFull) => break,
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!(Atom::count(), MAX_ATOMS - PEER_RESERVE);
    assert_eq!(Atom::new("late@h"), Err(AtomError::TableFull));
    // A node that connects is named.
    let peer = Atom::new_peer("peer@h").unwrap();
    assert_eq!(Atom::new("peer@h"), Ok(peer));

    // An exchange naming the peer, a known node and one it cannot name.
    let exchange = cast(tuple(vec![
        atom("exchange"),
        atom("peer@h"),
        list(vec![
            tuple(vec![
                string("a"),
                list(vec![pid("peer@h", 1), pid("unnamed@h", 2), pid(known, 3)]),
            ]),
            tuple(vec![string("b"), list(vec![pid("unnamed@h", 4)])]),
            tuple(vec![string("c"), list(vec![pid("peer@h", 5)])]),
        ]),
    ]));
    let decoded = WireMsg::<MemberPid>::decode(&exchange).unwrap();
    let m = |n: &str, id| MemberPid::new(n, id, 0, 1).unwrap();
    let want = WireMsg::Cast(Request::Exchange {
        from: "peer@h".to_string(),
        groups: vec![
            ("a".to_string(), vec![m("peer@h", 1), m(known, 3)]),
            ("c".to_string(), vec![m("peer@h", 5)]),
        ],
    });
    assert_eq!(decoded, want);
    // Read straight from its bytes, the same.
    let mut bytes = Vec::new();
    term::encode_into(&exchange, &mut bytes).unwrap();
    let raw = RawPayload::new(bytes, 0, true, Vec::new(), Limits::default());
    assert_eq!(WireMsg::<MemberPid>::decode_exchange(&raw), Some(want));
    assert_eq!(Atom::new("unnamed@h"), Err(AtomError::TableFull));

    // A cast naming a pid it cannot name is refused.
    let join = cast(tuple(vec![atom("join"), string("a"), pid("unnamed@h", 6)]));
    assert!(matches!(
        WireMsg::<MemberPid>::decode(&join),
        Err(WireError::BadPid(_))
    ));

    // The scope takes the exchange: the peer's members are seen.
    let mut scope: Scope<MemberPid> = Scope::new("me@h");
    let _ = scope.node_up("peer@h", true);
    let WireMsg::Cast(Request::Exchange { from, groups }) = decoded else {
        unreachable!()
    };
    let _ = scope.exchange(&from, groups);
    let (_, members) = scope.get_members("c", None).unwrap();
    assert_eq!(members.to_vec(), vec![m("peer@h", 5)]);
}
