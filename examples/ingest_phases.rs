//! Where our side of an exchange ingest goes, phase by phase, without
//! sockets: the `{'$gen_cast', {exchange, Node, Groups}}` SEND a BEAM cpg
//! scope sends a node it meets, for G groups of K member pids (G pids in
//! all, pid i in groups i..i+K, as `bench/erl/cluster_bench.erl` builds
//! them), decoded ([`control::decode_terms`] after a distribution header with no atom cache refs, as a BEAM sends it), turned into a request
//! ([`WireMsg::decode`]) and merged into an empty scope
//! ([`Scope::exchange`], notifications off as in a scope process no one
//! subscribed to); then the node goes down and its exchange is merged
//! again (a netsplit healed); then the parts dropped. `from_bytes` is the
//! way a scope process reads a large exchange instead of the first three
//! phases: its payload left as bytes by the link, read straight into the
//! request ([`WireMsg::decode_exchange`]).
//!
//! ```sh
//! cargo run --release --example ingest_phases -- 10000 10 5
//! ```
//!
//! Arguments: G, K, runs. Prints `ingest_phase.<GxK>.<phase> ms` (the
//! median of the runs).

use cpg_node::cpg::scope::{Request, Scope};
use cpg_node::cpg::wire::WireMsg;
use cpg_node::cpg::MemberPid;
use cpg_node::dist::control::{decode_terms, encode_message};
use cpg_node::dist::raw::RawPayload;
use cpg_node::term::{atom, list, tuple, Limits, Pid, Term};
use erl_dist::message::Message;
use std::time::Instant;

#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn exchange_bytes(g: usize, k: usize) -> Vec<u8> {
    let pid = |i: usize| Term::Pid(Pid::new("e@vm", 100 + i as u32, 0, 7));
    let groups: Vec<Term> = (0..g)
        .map(|i| {
            let name = cpg_node::term::string_to_charlist(&format!("group/{i}"));
            let pids = (0..k).map(|j| pid((i + g - j) % g)).collect();
            tuple(vec![name, list(pids)])
        })
        .collect();
    let msg = tuple(vec![
        atom("$gen_cast"),
        tuple(vec![atom("exchange"), atom("e@vm"), list(groups)]),
    ]);
    let to = Pid::new("r@vm", 5, 0, 1);
    let mut out = Vec::new();
    encode_message(&Message::send(to, msg), &mut out, true).unwrap();
    out
}

fn main() {
    let a: Vec<usize> = std::env::args()
        .skip(1)
        .map(|s| s.parse().expect("G K runs"))
        .collect();
    let (g, k, runs) = match a[..] {
        [g, k, r] => (g, k, r),
        [g, k] => (g, k, 5),
        _ => (10_000, 10, 5),
    };
    let bytes = exchange_bytes(g, k);
    // The payload as the link hands it over: the bytes after the control
    // tuple (a header with no atom cache refs, then {2, '', Pid}).
    let ctl = {
        let mut c = Vec::new();
        let to = Pid::new("r@vm", 5, 0, 1);
        encode_message(&Message::send(to, atom("x")), &mut c, true).unwrap();
        c.len() - 7 - 3 // the header, then the payload: the atom x in 3 bytes
    };
    let mut t: Vec<[f64; 8]> = Vec::new();
    for _ in 0..runs {
        let ms = |i: Instant| i.elapsed().as_secs_f64() * 1e3;
        let t0 = Instant::now();
        let m = decode_terms(&bytes[7..], false, Limits::default()).unwrap();
        let d = ms(t0);
        let Message::Send(s) = m else { panic!() };
        let t0 = Instant::now();
        let w = WireMsg::<MemberPid, String>::decode(&s.message).unwrap();
        let wd = ms(t0);
        let t0 = Instant::now();
        drop(s);
        let drop_term = ms(t0);
        let t0 = Instant::now();
        let raw = RawPayload::new(
            bytes[7 + ctl..].to_vec(),
            0,
            false,
            vec![],
            Limits::default(),
        );
        let fast = WireMsg::<MemberPid, String>::decode_exchange(&raw).unwrap();
        drop(raw);
        let from_bytes = ms(t0);
        assert_eq!(fast, w);
        drop(fast);
        let WireMsg::Cast(Request::Exchange { from, groups }) = w else {
            panic!()
        };
        let again = groups.clone();
        let mut scope: Scope<MemberPid> = Scope::new("r@vm");
        scope.node_up("e@vm", true);
        // As the scope process runs it when no one subscribed to its
        // events (`CpgScope::subscribe`).
        scope.set_notify(false);
        // A group of ours, so that the scope is not empty in between.
        let me = MemberPid::new("r@vm", 1, 0, 1).unwrap();
        scope.join("reader", me).unwrap();
        let t0 = Instant::now();
        let eff = scope.exchange(&from, groups);
        let merge = ms(t0);
        drop(eff);
        // The node goes down and comes back (a netsplit healed).
        let t0 = Instant::now();
        let eff = scope.node_down("e@vm");
        let down = ms(t0);
        drop(eff);
        scope.node_up("e@vm", true);
        let t0 = Instant::now();
        let eff = scope.exchange(&from, again);
        let remerge = ms(t0);
        let t0 = Instant::now();
        drop(eff);
        drop(scope);
        let drop_scope = ms(t0);
        t.push([
            d, wd, drop_term, from_bytes, merge, down, remerge, drop_scope,
        ]);
    }
    let names = [
        "decode",
        "wire",
        "drop_term",
        "from_bytes",
        "merge",
        "node_down",
        "merge_again",
        "drop_scope",
    ];
    for (i, n) in names.iter().enumerate() {
        let mut v: Vec<f64> = t.iter().map(|r| r[i]).collect();
        v.sort_by(f64::total_cmp);
        println!("ingest_phase.{g}x{k}.{n} {:.2}", v[v.len() / 2]);
    }
    println!("ingest_phase.{g}x{k}.bytes {}", bytes.len());
}
