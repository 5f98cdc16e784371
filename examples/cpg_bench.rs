//! The cpg-node side of `scripts/bench.sh`: the workloads of the
//! comparison with genuine cpg on BEAM, on the pure [`Scope`] (reads under
//! the same read lock ([`ReadMostly`]) [`CpgScope::read`] takes, writes under
//! its write lock, as the scope task applies them).
//!
//! Prints one `key value` line per figure and run (the keys are the ones
//! `bench/erl/cpg_bench.erl` prints for BEAM); `scripts/bench.sh` merges them.
//!
//! ```sh
//! cargo run --release --no-default-features --example cpg_bench -- --runs 5
//! ```
//!
//! Units: lookups in ns per call (with R readers: wall time × min(R, cores)
//! / calls, i.e. the cost of a call when every core reads), joins and
//! leaves per second, the quadratic paths in ms, memory in bytes per
//! membership (bytes held by the allocator, counted by a wrapper around
//! the system allocator).
//!
//! [`CpgScope::read`]: cpg_node::cpg::CpgScope::read

use cpg_node::cpg::scope::{Request, Scope};
use cpg_node::cpg::MemberPid;
use cpg_node::sync::ReadMostly;
use cpg_node::term::Pid;
use std::alloc::System;
use std::hint::black_box;
use std::sync::Barrier;
use std::time::Instant;

#[path = "support/counting.rs"]
mod counting;

/// The system allocator, counting live bytes for the memory rows (off
/// during the timed parts: no shared counter is touched then).
#[global_allocator]
static ALLOC: counting::Counting<System> = counting::Counting(System);

const NODE: &str = "bench@localhost";
const PEER: &str = "peer@localhost";

type S = Scope<MemberPid>;

fn pid(node: &str, i: u32) -> MemberPid {
    // Erlang pids: 15-bit number, 13-bit serial
    MemberPid::new(node, i & 0x7fff, i >> 15, 1).expect("node name")
}

fn join(s: &ReadMostly<S>, name: &str, p: MemberPid) {
    black_box(s.write().join(name, p).expect("join"));
}

fn leave(s: &ReadMostly<S>, name: &str, p: &MemberPid) {
    black_box(s.write().leave(name, p).expect("leave"));
}

fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// ns per call of `f` on this thread, `total` calls.
fn per_call(total: usize, f: &(dyn Fn(usize) + Sync)) -> f64 {
    let t = Instant::now();
    for i in 0..total {
        f(i);
    }
    t.elapsed().as_nanos() as f64 / total as f64
}

/// ns per call of `f` with `readers` threads doing `total` calls between
/// them: wall time (from the first reader's start after the barrier to the
/// last reader's end, as the readers' own clocks read them) ×
/// min(readers, cores) / calls. (The spawning thread's clock is not used:
/// with more readers than cores it may run again only after they are done.)
fn per_call_threads(readers: usize, total: usize, f: &(dyn Fn(usize) + Sync)) -> f64 {
    if readers == 1 {
        return per_call(total, f);
    }
    let each = total / readers;
    let barrier = Barrier::new(readers);
    let spans: Vec<(Instant, Instant)> = std::thread::scope(|sc| {
        let handles: Vec<_> = (0..readers)
            .map(|r| {
                let barrier = &barrier;
                sc.spawn(move || {
                    barrier.wait();
                    let start = Instant::now();
                    for i in 0..each {
                        f(i + r);
                    }
                    (start, Instant::now())
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("a reader"))
            .collect()
    });
    let first = spans.iter().map(|s| s.0).min().expect("readers");
    let last = spans.iter().map(|s| s.1).max().expect("readers");
    let wall = (last - first).as_nanos() as f64;
    wall * readers.min(cores()) as f64 / (each * readers) as f64
}

fn out(key: &str, v: f64) {
    println!("{key} {v:.1}");
}

/// Groups "g1", "g10", "g1000" of that many distinct local pids.
fn lookup_scope() -> ReadMostly<S> {
    let s = ReadMostly::new(S::new(NODE));
    let mut next = 1;
    for n in [1u32, 10, 1000] {
        for _ in 0..n {
            join(&s, &format!("g{n}"), pid(NODE, next));
            next += 1;
        }
    }
    s
}

fn lookups(s: &ReadMostly<S>) {
    let rnd = |n: usize| rand::random_range(0..n.max(1));
    for n in [1, 10, 1000] {
        let name = format!("g{n}");
        let name = name.as_str();
        for readers in [1, 8] {
            // the public API's owned results: (key, pid) / (key, Vec<Pid>)
            let closest = |_| {
                let _ = black_box(read(s, |s| {
                    s.get_closest_pid(name, None, &mut { rnd })
                        .map(|(k, p)| (k.to_owned(), p))
                }));
            };
            let random = |_| {
                let _ = black_box(read(s, |s| {
                    s.get_random_pid(name, None, &mut { rnd })
                        .map(|(k, p)| (k.to_owned(), p))
                }));
            };
            // CpgScope::get_members: the key and the group's snapshot
            // (a one-pid group's pid inline, a larger group's shared list)
            let members = |_| {
                let _ = black_box(read(s, |s| {
                    s.get_members(name, None).map(|(k, v)| (k.to_owned(), v))
                }));
            };
            // the same, then copied into a list of the caller's own
            let members_vec = |_| {
                let _ = black_box(read(s, |s| {
                    s.get_members(name, None)
                        .map(|(k, v)| (k.to_owned(), v.to_vec()))
                }));
            };
            // Scope::get_members_ref: the pids used in place under the
            // read lock; nothing is copied out (not even the key)
            let members_ref = |_| {
                read(s, |s| {
                    let _ = black_box(s.get_members_ref(name));
                });
            };
            let oldest = |_| {
                let _ = black_box(read(s, |s| {
                    s.get_oldest_pid(name, None).map(|(k, p)| (k.to_owned(), p))
                }));
            };
            let newest = |_| {
                let _ = black_box(read(s, |s| {
                    s.get_newest_pid(name, None).map(|(k, p)| (k.to_owned(), p))
                }));
            };
            let calls = if n == 1000 { 200_000 } else { 1_000_000 };
            out(
                &format!("lookup.closest.{n}.r{readers}"),
                per_call_threads(readers, 1_000_000, &closest),
            );
            out(
                &format!("lookup.random.{n}.r{readers}"),
                per_call_threads(readers, 1_000_000, &random),
            );
            out(
                &format!("lookup.members.{n}.r{readers}"),
                per_call_threads(readers, 1_000_000, &members),
            );
            out(
                &format!("lookup.members_vec.{n}.r{readers}"),
                per_call_threads(readers, calls, &members_vec),
            );
            out(
                &format!("lookup.members_ref.{n}.r{readers}"),
                per_call_threads(readers, 1_000_000, &members_ref),
            );
            out(
                &format!("lookup.oldest.{n}.r{readers}"),
                per_call_threads(readers, 1_000_000, &oldest),
            );
            out(
                &format!("lookup.newest.{n}.r{readers}"),
                per_call_threads(readers, 1_000_000, &newest),
            );
        }
    }
}

/// What `CpgScope::read` does.
fn read<T>(s: &ReadMostly<S>, f: impl FnOnce(&S) -> T) -> T {
    f(&s.read())
}

/// Pattern groups "p<i>/*" (one member each); get_closest_pid of
/// "p<j>/job" for j cycling over 1000 of them, and of 100k names
/// "p<(j * 7919) mod n>/job<j>" in turn (`pattern_unique`).
fn patterns(n: u32) {
    let s = ReadMostly::new(S::new(NODE));
    for i in 0..n {
        join(&s, &format!("p{i}/*"), pid(NODE, i + 1));
    }
    let names: Vec<String> = (0..1000.min(n))
        .map(|j| format!("p{}/job", j * (n / 1000.min(n))))
        .collect();
    // One lookup as a user makes it: the key found copied out.
    let closest = |name: &str| {
        black_box(read(&s, |s| {
            s.get_closest_pid(name, None, &mut |n| rand::random_range(0..n.max(1)))
                .map(|(k, p)| (k.to_owned(), p))
                .expect("pattern")
        }));
    };
    let f = |i: usize| closest(names[i % names.len()].as_str());
    out(&format!("pattern.{n}.r1"), per_call_threads(1, 500_000, &f));
    out(&format!("pattern.{n}.r8"), per_call_threads(8, 500_000, &f));
    // 100k names in turn: each search is made again (the per-thread memo
    // of searches keeps a few thousand), as `cpg_bench.erl`'s.
    let unique: Vec<String> = (0..100_000u32)
        .map(|j| format!("p{}/job{j}", (u64::from(j) * 7919 % u64::from(n))))
        .collect();
    let once = |i: usize| closest(unique[i % unique.len()].as_str());
    out(
        &format!("pattern_unique.{n}.r1"),
        per_call_threads(1, 500_000, &once),
    );
}

/// joins/s of `n` joins: dg_dp (group i, pid i) or g1_dp (one group).
fn join_rate(n: u32, one_group: bool) -> (f64, ReadMostly<S>, Vec<(String, MemberPid)>) {
    let s = ReadMostly::new(S::new(NODE));
    let items: Vec<(String, MemberPid)> = (0..n)
        .map(|i| {
            let g = if one_group {
                "g".to_string()
            } else {
                format!("g{i}")
            };
            (g, pid(NODE, i + 1))
        })
        .collect();
    let t = Instant::now();
    for (g, p) in &items {
        join(&s, g, *p);
    }
    (n as f64 / t.elapsed().as_secs_f64(), s, items)
}

fn joins_and_leaves() {
    for n in [10_000, 100_000] {
        let (rate, s, items) = join_rate(n, false);
        out(&format!("join.dg_dp.{n}"), rate);
        let t = Instant::now();
        for (g, p) in &items {
            leave(&s, g, p);
        }
        out(
            &format!("leave.dg_dp.{n}"),
            n as f64 / t.elapsed().as_secs_f64(),
        );
        let (rate, _, _) = join_rate(n, true);
        out(&format!("join.g1_dp.{n}"), rate);
    }
}

/// The three paths that are quadratic in genuine cpg, total ms.
fn quadratic(sizes: &[u32]) {
    for &n in sizes {
        // dg_1p: one pid joins n groups
        let s = ReadMostly::new(S::new(NODE));
        let p = pid(NODE, 1);
        let t = Instant::now();
        for i in 0..n {
            join(&s, &format!("g{i}"), p);
        }
        out(&format!("quad.dg_1p_join.{n}"), ms(t));

        // g1_dp: n pids leave one group (oldest first, the join order)
        let (_, s, items) = join_rate(n, true);
        let t = Instant::now();
        for (g, p) in &items {
            leave(&s, g, p);
        }
        out(&format!("quad.g1_dp_leave.{n}"), ms(t));

        // n remote members of one group die (their DOWNs arrive)
        let s = ReadMostly::new(S::new(NODE));
        s.write().node_up(PEER, true);
        let pids: Vec<MemberPid> = (0..n).map(|i| pid(PEER, i + 1)).collect();
        for p in &pids {
            let req = Request::Join {
                name: "g".to_string(),
                pid: *p,
            };
            black_box(s.write().remote_request(PEER, req));
        }
        assert_eq!(
            s.read().get_members("g", None).map(|m| m.1.len()),
            Ok(n as usize)
        );
        let t = Instant::now();
        for p in &pids {
            black_box(s.write().member_down(p, "killed"));
        }
        out(&format!("quad.remote_down_g1.{n}"), ms(t));
        assert!(s.read().get_members("g", None).is_err());
    }
}

/// joins/s through a running scope process ([`CpgScope::join`], awaited one
/// by one as one caller of `cpg:join` does): the command channel, the reply
/// and the monitor of each pid included. Needs a node (EPMD: a running one,
/// else the node's own).
fn scope_joins(runs: usize) {
    use cpg_node::config::{Cookie, NodeConfig, NodeName};
    use cpg_node::cpg::{CpgScope, ScopeOptions};
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let name = NodeName::from_cli(&format!("cpg_bench_{}", std::process::id()), false)
            .expect("node name");
        let node = match cpg_node::Node::start(NodeConfig::new(name, Cookie::new("bench"))).await {
            Ok(n) => n,
            Err(e) => {
                eprintln!("cpg_bench: no node ({e}): scope joins not measured");
                return;
            }
        };
        for run in 0..runs {
            for (n, one_group) in [
                (10_000u32, false),
                (100_000, false),
                (10_000, true),
                (100_000, true),
            ] {
                let scope = CpgScope::start(
                    &node,
                    ScopeOptions::new(&format!("bench_{run}_{n}_{one_group}")),
                )
                .expect("scope");
                let (stop, stopped) = tokio::sync::watch::channel(false);
                let pids: Vec<Pid> = (0..n)
                    .map(|_| {
                        let mut stopped = stopped.clone();
                        node.spawn(|p| async move {
                            let _ = stopped.changed().await;
                            drop(p)
                        })
                    })
                    .collect();
                let t = Instant::now();
                for (i, p) in pids.iter().enumerate() {
                    let g = if one_group {
                        "g".to_string()
                    } else {
                        format!("g{i}")
                    };
                    scope.join(&g, p).await.expect("join");
                }
                let rate = n as f64 / t.elapsed().as_secs_f64();
                let what = if one_group { "g1_dp" } else { "dg_dp" };
                out(&format!("join_scope.{what}.{n}"), rate);
                // the processes end; wait until the scope has seen them go
                let _ = stop.send(true);
                while scope.read(|s| s.group_count()) > 0 {
                    tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                }
            }
        }
    });
}

fn ms(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1e3
}

/// Bytes per membership held by the scope: `groups` groups of `members`
/// distinct pids each, at most 100k pids: membership `i` is pid `i % 100k`
/// in group `i / members` (10k × 100: each pid in 10 groups). Names and
/// pids are made before counting starts; the scope's copies count.
fn memory(groups: u32, members: u32) -> f64 {
    let total = groups * members;
    let np = total.min(100_000);
    let names: Vec<String> = (0..groups).map(|i| format!("g{i}")).collect();
    let pids: Vec<MemberPid> = (0..np).map(|i| pid(NODE, i + 1)).collect();
    let at = counting::start();
    let s = ReadMostly::new(S::new(NODE));
    for i in 0..total {
        let g = &names[(i / members) as usize];
        let p = pids[(i % np) as usize];
        black_box(s.write().join(g, p).expect("join"));
    }
    let used = counting::stop(at);
    drop(s);
    drop(pids);
    used as f64 / (groups * members) as f64
}

fn main() {
    let mut runs = 1;
    let mut only: Vec<String> = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--runs" => runs = args.next().and_then(|v| v.parse().ok()).expect("--runs N"),
            "--only" => only.extend(args.next()),
            _ => {
                eprintln!(
                    "usage: cpg_bench [--runs N] [--only lookup|pattern|join|quad|quad30|mem|scope|profile]..."
                );
                std::process::exit(2);
            }
        }
    }
    let want = |part: &str| only.is_empty() || only.iter().any(|o| o == part);
    let lookup = lookup_scope();
    for _ in 0..runs {
        if want("lookup") {
            lookups(&lookup);
        }
        if want("pattern") {
            patterns(1_000);
            patterns(100_000);
        }
        if want("join") {
            joins_and_leaves();
        }
        if want("quad") {
            quadratic(&[10_000]);
        }
        if want("quad30") {
            quadratic(&[30_000]);
        }
        if only.iter().any(|o| o == "profile") {
            // for `valgrind --tool=callgrind`: a few calls of each hot read,
            // of group g1000 (or the one PROFILE_GROUP names: g1, g10)
            let g = std::env::var("PROFILE_GROUP").unwrap_or_else(|_| "g1000".into());
            let g = g.as_str();
            for _ in 0..1000 {
                let _ = black_box(read(&lookup, |s| {
                    s.get_members(g, None).map(|(k, v)| (k.to_owned(), v))
                }));
            }
            for _ in 0..100_000 {
                let _ = black_box(read(&lookup, |s| {
                    s.get_closest_pid(g, None, &mut |n| rand::random_range(0..n.max(1)))
                        .map(|(k, p)| (k.to_owned(), p))
                }));
            }
        }
        if only.iter().any(|o| o == "scope") {
            scope_joins(1);
        }
        if want("mem") {
            out("mem.dg_dp.100000", memory(100_000, 1));
            out("mem.g100.10000", memory(10_000, 100));
        }
    }
}
