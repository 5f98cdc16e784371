//! Micro-benchmarks of the hot paths of the pure scope and the trie:
//! `cargo bench --bench cpg` (add a filter: `cargo bench --bench cpg -- closest`).
//! The comparison with genuine cpg is `scripts/bench.sh`.

use cpg_node::cpg::scope::Scope;
use cpg_node::cpg::trie::Trie;
use cpg_node::cpg::MemberPid;
use criterion::{criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion};
use std::hint::black_box;

const NODE: &str = "bench@localhost";

fn pid(i: u32) -> MemberPid {
    MemberPid::new(NODE, i & 0x7fff, i >> 15, 1).expect("node name")
}

/// Groups "g1", "g10", "g1000" of that many distinct pids.
fn scope() -> Scope<MemberPid> {
    let mut s = Scope::new(NODE);
    let mut next = 1;
    for n in [1u32, 10, 1000] {
        for _ in 0..n {
            s.join(&format!("g{n}"), pid(next)).unwrap();
            next += 1;
        }
    }
    s
}

fn reads(c: &mut Criterion) {
    let s = scope();
    let mut g = c.benchmark_group("read");
    for n in [1, 10, 1000] {
        let name = format!("g{n}");
        let mut x = 0usize;
        let mut choose = move |n: usize| {
            x = x.wrapping_add(7919);
            x % n.max(1)
        };
        g.bench_with_input(BenchmarkId::new("get_closest_pid", n), &name, |b, name| {
            b.iter(|| black_box(s.get_closest_pid(name, None, &mut choose).is_ok()))
        });
        g.bench_with_input(BenchmarkId::new("get_random_pid", n), &name, |b, name| {
            b.iter(|| black_box(s.get_random_pid(name, None, &mut choose).is_ok()))
        });
        g.bench_with_input(BenchmarkId::new("get_oldest_pid", n), &name, |b, name| {
            b.iter(|| black_box(s.get_oldest_pid(name, None).is_ok()))
        });
        g.bench_with_input(BenchmarkId::new("get_members", n), &name, |b, name| {
            b.iter(|| black_box(s.get_members(name, None).map(|m| m.1.len())))
        });
    }
    g.finish();
}

fn joins(c: &mut Criterion) {
    let mut g = c.benchmark_group("write");
    g.sample_size(20);
    // 1000 joins of distinct pids to distinct groups (dg_dp), then leaves
    let items: Vec<(String, MemberPid)> =
        (0..1000).map(|i| (format!("g{i}"), pid(i + 1))).collect();
    g.bench_function("join_dg_dp_1000", |b| {
        b.iter_batched(
            || Scope::<MemberPid>::new(NODE),
            |mut s| {
                for (n, p) in &items {
                    black_box(s.join(n, *p).unwrap());
                }
                s
            },
            BatchSize::LargeInput,
        )
    });
    g.bench_function("join_g1_dp_1000", |b| {
        b.iter_batched(
            || Scope::<MemberPid>::new(NODE),
            |mut s| {
                for (_, p) in &items {
                    black_box(s.join("g", *p).unwrap());
                }
                s
            },
            BatchSize::LargeInput,
        )
    });
    g.bench_function("leave_dg_dp_1000", |b| {
        b.iter_batched(
            || {
                let mut s = Scope::<MemberPid>::new(NODE);
                for (n, p) in &items {
                    s.join(n, *p).unwrap();
                }
                s
            },
            |mut s| {
                for (n, p) in &items {
                    black_box(s.leave(n, p).unwrap());
                }
                s
            },
            BatchSize::LargeInput,
        )
    });
    g.finish();
}

fn trie(c: &mut Criterion) {
    let mut g = c.benchmark_group("trie");
    for n in [1_000u32, 100_000] {
        let mut t = Trie::new();
        let mut p = Trie::new();
        for i in 0..n {
            t.insert(&format!("/svc/{i}/name"), i);
            p.insert(&format!("p{i}/*"), i);
        }
        let exact: Vec<String> = (0..1000)
            .map(|j| format!("/svc/{}/name", j * (n / 1000)))
            .collect();
        let pat: Vec<String> = (0..1000)
            .map(|j| format!("p{}/job", j * (n / 1000)))
            .collect();
        let mut i = 0;
        g.bench_with_input(BenchmarkId::new("get", n), &exact, |b, names| {
            b.iter(|| {
                i = (i + 1) % names.len();
                black_box(t.get(&names[i]))
            })
        });
        // a stored name (one probe of the exact index, whatever n), then
        // names that only patterns match (the walk)
        for (id, trie, names) in [
            ("find_match_exact", &t, &exact),
            ("find_match_pattern", &p, &pat),
        ] {
            g.bench_with_input(BenchmarkId::new(id, n), names, |b, names| {
                b.iter(|| {
                    i = (i + 1) % names.len();
                    black_box(trie.find_match(&names[i]).map(|m| m.0.len()))
                })
            });
        }
        g.bench_function(BenchmarkId::new("insert_remove", n), |b| {
            b.iter(|| {
                t.insert("/svc/new/name", 0);
                black_box(t.remove("/svc/new/name"))
            })
        });
    }
    g.finish();
}

criterion_group!(benches, reads, joins, trie);
criterion_main!(benches);
