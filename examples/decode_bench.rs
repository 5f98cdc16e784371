//! Decoding cost of received messages, our one-pass decoder against the
//! former path (validator, then erl_dist and `eetf`): N messages as a
//! BEAM sends them (distribution header, no atom cache), `SEND_SENDER`
//! (what OTP 25 sends to a pid), `SEND` and `REG_SEND`, with the payloads
//! of `scripts/bench_msgs.sh`: `{m, 1}` ("small") and
//! `{m, <<_:1024/binary>>}` ("1k").
//!
//! ```sh
//! cargo run --release --example decode_bench              # ns per message
//! valgrind --tool=callgrind target/release/examples/decode_bench new small 100000
//! ```
//!
//! Uses mimalloc, as the `cpg-node` binary does. With no arguments, prints `key value` lines `decode.<path>.<kind>.<size>
//! ns/msg` (median of 7 runs of 100k messages) and the ratio. With
//! `PATH SIZE N` (`old`|`new`|`link`, `small`|`1k`), decodes N messages of
//! each kind once, for an instruction count; `link` feeds them as one
//! stream through a [`Link`] (framing, decoding, events).

use cpg_node::dist::control::{decode_terms, decode_terms_two_pass, encode_message};
use cpg_node::dist::link::{Event, Link, LinkConfig};
use cpg_node::term::{atom, binary, int, tuple, Limits, Pid, Term};
use erl_dist::message::Message;
use std::hint::black_box;
use std::time::{Duration, Instant};

// The allocator the `cpg-node` binary ships with.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn payload(size: &str) -> Term {
    match size {
        "small" => tuple(vec![atom("m"), int(1)]),
        _ => tuple(vec![atom("m"), binary(vec![7; 1024])]),
    }
}

/// One packet (length included) per kind, with a distribution header.
fn packets(size: &str) -> Vec<(&'static str, Vec<u8>)> {
    let from = Pid::new("gce@vm", 9, 0, 1_920_246_943);
    let to = Pid::new("gcr@vm", 101, 0, 1_920_246_942);
    [
        (
            "send_sender",
            Message::send_sender(from.clone(), to.clone(), payload(size)),
        ),
        ("send", Message::send(to, payload(size))),
        (
            "reg_send",
            Message::reg_send(from, "golden".into(), payload(size)),
        ),
    ]
    .into_iter()
    .map(|(k, m)| {
        let mut out = vec![];
        encode_message(&m, &mut out, true).unwrap();
        (k, out)
    })
    .collect()
}

fn decode(path: &str, terms: &[u8]) -> Message {
    let limits = Limits::default();
    match path {
        "old" => decode_terms_two_pass(terms, false, limits),
        _ => decode_terms(terms, false, limits),
    }
    .unwrap()
}

fn through_link(stream: &[u8]) -> usize {
    let cfg = LinkConfig {
        ticktime: Duration::from_secs(60),
        max_frame: 1 << 24,
        fragment_size: 64 * 1024,
        fragments: true,
        atom_cache: true,
        limits: Limits::default(),
    };
    let now = Instant::now();
    let mut l = Link::new(cfg, now);
    let mut n = 0;
    for chunk in stream.chunks(64 * 1024) {
        l.handle_input(chunk, now).unwrap();
        while let Some(e) = l.poll_event() {
            if let Event::Message(m) = e {
                black_box(m);
                n += 1;
            }
        }
    }
    n
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let [path, size, n] = &args[..] {
        let n: usize = n.parse().unwrap();
        let packets = packets(size);
        if path == "link" {
            let mut stream = Vec::new();
            for (_, p) in &packets {
                for _ in 0..n {
                    stream.extend_from_slice(p);
                }
            }
            assert_eq!(through_link(&stream), n * packets.len());
            return;
        }
        if let Some(path) = path.strip_prefix("term-") {
            // The payload alone, as a versioned term.
            let mut bytes = vec![];
            payload(size).encode(&mut bytes).unwrap();
            let limits = Limits::default();
            for _ in 0..n * packets.len() {
                black_box(match path {
                    "old" => cpg_node::term::decode_two_pass(black_box(&bytes), limits),
                    _ => cpg_node::term::decode(black_box(&bytes), limits),
                })
                .unwrap();
            }
            return;
        }
        for (_, p) in &packets {
            for _ in 0..n {
                black_box(decode(path, black_box(&p[7..])));
            }
        }
        return;
    }
    const N: u32 = 100_000;
    for size in ["small", "1k"] {
        for (kind, p) in packets(size) {
            let per = |path: &str| {
                let mut runs: Vec<f64> = (0..7)
                    .map(|_| {
                        let t = Instant::now();
                        for _ in 0..N {
                            black_box(decode(path, black_box(&p[7..])));
                        }
                        t.elapsed().as_nanos() as f64 / f64::from(N)
                    })
                    .collect();
                runs.sort_by(f64::total_cmp);
                runs[3]
            };
            let (old, new) = (per("old"), per("new"));
            println!("decode.old.{kind}.{size} {old:.0} ns/msg");
            println!("decode.new.{kind}.{size} {new:.0} ns/msg");
            println!("decode.ratio.{kind}.{size} {:.2}x", old / new);
        }
    }
}
