//! Tests of [`GroupData`](super::GroupData) and its parts.

use super::big::COMPACT_MIN_HOLES;
use super::*;
use proptest::prelude::*;

fn g(ops: &[(char, bool, usize)]) -> GroupData<char> {
    let mut g = GroupData::new();
    for &(p, l, n) in ops {
        g.join(p, l, n);
    }
    g
}

#[test]
fn findings_single_node_example() {
    // join g A; join g B; join g A; join_counts [{g,2}] C
    let mut d = g(&[
        ('A', true, 1),
        ('B', true, 1),
        ('A', true, 1),
        ('C', true, 2),
    ]);
    let r = d.to_data();
    assert_eq!(r.history, vec!['C', 'C', 'A', 'B', 'A']);
    assert_eq!(r.local, r.history);
    assert_eq!((r.local_count, r.remote_count), (5, 0));
    // leave g A -> oldest A removed
    assert_eq!(d.leave_oldest(&'A', 1), 1);
    assert_eq!(d.to_data().history, vec!['C', 'C', 'A', 'B']);
    d.join('B', true, 1);
    assert_eq!(d.to_data().history, vec!['B', 'C', 'C', 'A', 'B']);
    // leave_counts [{g,5}] C: only 2 present
    assert_eq!(d.leave_oldest(&'C', 5), 2);
    assert_eq!(d.to_data().history, vec!['B', 'A', 'B']);
    assert_eq!(d.leave_all(&'A'), 1);
    assert_eq!(d.to_data().history, vec!['B', 'B']);
    assert_eq!(d.local_count(), 2);
    assert_eq!(d.leave_all(&'B'), 2);
    assert!(d.is_empty());
    assert_eq!(d.leave_all(&'B'), 0);
}

#[test]
fn leave_oldest_vs_merge_newest() {
    // history [A, B, A, B, A] (newest first)
    let mut d = g(&[
        ('A', false, 1),
        ('B', false, 1),
        ('A', false, 1),
        ('B', false, 1),
        ('A', false, 1),
    ]);
    let mut e = d.clone();
    assert_eq!(d.leave_oldest(&'A', 1), 1);
    assert_eq!(d.to_data().history, vec!['A', 'B', 'A', 'B']);
    assert_eq!(e.set_count_newest(&'A', false, 2), -1);
    assert_eq!(e.to_data().history, vec!['B', 'A', 'B', 'A']);
    assert_eq!(e.set_count_newest(&'B', false, 4), 2);
    assert_eq!(e.to_data().history, vec!['B', 'B', 'B', 'A', 'B', 'A']);
    assert_eq!(e.set_count_newest(&'B', false, 4), 0);
    assert_eq!(e.set_count_newest(&'C', true, 1), 1);
    assert_eq!(e.to_data().local, vec!['C']);
    assert_eq!(e.to_data().remote, vec!['B', 'B', 'B', 'A', 'B', 'A']);
}

#[test]
fn local_remote_split_and_selection() {
    // oldest..newest: L1 R1 L2 R1 L1
    let d = g(&[
        ('l', true, 1),
        ('r', false, 1),
        ('m', true, 1),
        ('r', false, 1),
        ('l', true, 1),
    ]);
    let r = d.to_data();
    assert_eq!(r.history, vec!['l', 'r', 'm', 'r', 'l']);
    assert_eq!(r.local, vec!['l', 'm', 'l']);
    assert_eq!(r.remote, vec!['r', 'r']);
    assert_eq!(d.nth(Part::Local, 1), Some(&'m'));
    assert_eq!(d.nth(Part::Remote, 1), Some(&'r'));
    assert_eq!(d.nth(Part::Remote, 2), None);
    assert_eq!(d.nth_excluding(Part::Local, 0, Some(&'l')), Some(&'m'));
    assert_eq!(d.nth_excluding(Part::Local, 1, Some(&'l')), None);
    assert_eq!(d.nth_excluding(Part::All, 2, Some(&'r')), Some(&'l'));
    assert_eq!(d.oldest(Part::All, None), Some(&'l'));
    assert_eq!(d.oldest(Part::All, Some(&'l')), Some(&'r'));
    assert_eq!(d.newest(Part::Remote, None), Some(&'r'));
    assert_eq!(d.newest(Part::Remote, Some(&'r')), None);
    assert_eq!(d.count_excluding(Part::Local, Some(&'r')), 3);
    assert_eq!(d.count_excluding(Part::Local, Some(&'l')), 1);
    assert_eq!(d.members(Part::All, Some(&'l')), vec!['r', 'm', 'r']);
}

#[test]
fn compaction_keeps_order() {
    let mut d = GroupData::new();
    for i in 0..1000u32 {
        d.join(i, i % 3 == 0, 1 + (i % 2) as usize);
    }
    for i in (0..1000u32).filter(|i| i % 5 != 0) {
        d.leave_oldest(&i, 1);
    }
    // compaction has happened (holes > live) - check everything still agrees
    assert!(d.slot_count() < 1500);
    let r = d.to_data();
    assert_eq!(r.history.len(), d.len());
    for (i, p) in r.history.iter().enumerate() {
        assert_eq!(d.nth(Part::All, i), Some(p));
    }
    for (i, p) in r.local.iter().enumerate() {
        assert_eq!(d.nth(Part::Local, i), Some(p));
    }
}

#[test]
fn many_distinct_members_leave_one_by_one() {
    let n = 100_000u32;
    let mut d = GroupData::new();
    for i in 0..n {
        d.join(i, i % 2 == 0, 1);
    }
    for i in 0..n - 2 {
        assert_eq!(d.leave_oldest(&i, 1), 1);
    }
    assert!(d.slot_count() <= COMPACT_MIN_HOLES + 2);
    assert_eq!(d.leave_oldest(&(n - 2), 1), 1);
    assert!(matches!(d.repr, Repr::One { pid, .. } if pid == n - 1));
    assert_eq!(d.leave_oldest(&(n - 1), 1), 1);
    assert!(d.is_empty() && matches!(d.repr, Repr::Empty));
}

#[test]
fn several_copies_of_a_pid() {
    // oldest..newest: A A B A C A A
    let mut d = g(&[('A', true, 2), ('B', false, 1)]);
    for (p, n) in [('A', 1), ('C', 1), ('A', 2)] {
        d.join(p, true, n);
    }
    d.check();
    assert_eq!(d.count_of(&'A'), 5);
    assert_eq!(d.distinct_pids(), 3);
    // the newest two, then the oldest two
    assert_eq!(d.set_count_newest(&'A', true, 3), -2);
    assert_eq!(d.leave_oldest(&'A', 2), 2);
    d.check();
    assert_eq!(d.to_data().history, vec!['C', 'A', 'B']);
    // A is back to one copy, then to several again
    d.join('A', false, 2);
    d.check();
    assert_eq!(d.to_data().history, vec!['A', 'A', 'C', 'A', 'B']);
    assert_eq!(d.to_data().remote, vec!['B']);
    assert_eq!(d.nth_excluding(Part::Local, 0, Some(&'A')), Some(&'C'));
    assert_eq!(d.leave_all(&'A'), 3);
    d.check();
    assert_eq!(d.to_data().history, vec!['C', 'B']);
}

#[test]
fn representation_sizes() {
    // a 16-byte pid, as `MemberPid`
    type P = [u64; 2];
    assert_eq!(std::mem::size_of::<Small<P>>(), 48);
    assert_eq!(std::mem::size_of::<Big<P>>(), 136);
    assert_eq!(std::mem::size_of::<GroupData<P>>(), 24);
}

#[test]
fn small_list_up_to_sixteen_copies_then_full_and_back() {
    let kind = |d: &GroupData<u32>| match d.repr {
        Repr::Empty => "empty",
        Repr::One { .. } => "one",
        Repr::Small(_) => "small",
        Repr::Big(_) => "big",
    };
    let mut d = GroupData::new();
    d.join(0, true, 1);
    assert_eq!(kind(&d), "one");
    for i in 1..16u32 {
        d.join(i, i % 3 == 0, 1);
        d.check();
        assert_eq!(kind(&d), "small");
    }
    let before = d.to_data();
    d.join(16, false, 1);
    d.check();
    assert_eq!(kind(&d), "big");
    assert_eq!(d.leave_all(&16), 1);
    // 16 copies: still the full representation (no move at each step)
    assert_eq!((kind(&d), d.to_data()), ("big", before));
    for i in 0..8u32 {
        assert_eq!(d.leave_oldest(&i, 1), 1);
        d.check();
    }
    assert_eq!(kind(&d), "small");
    let data = d.to_data();
    assert_eq!(data.history, (8..16).rev().collect::<Vec<_>>());
    assert_eq!(data.local, vec![15, 12, 9]);
    // a pid keeps its side: the copies of 9 (local) stay local
    d.join(9, false, 2);
    assert_eq!(d.count_of(&9), 3);
    assert_eq!(d.local_count(), 5);
    assert_eq!(d.nth(Part::Local, 0), Some(&9));
    assert_eq!(d.nth(Part::Remote, 0), Some(&14));
    // newest-end removal (the exchange's rule) from the list
    assert_eq!(d.set_count_newest(&9, true, 1), -2);
    assert_eq!(d.to_data().history, data.history);
    // a join of many copies at once moves straight to the full form
    d.join(99, false, 12);
    d.check();
    assert_eq!((kind(&d), d.len()), ("big", 20));
    for p in 8..16u32 {
        d.leave_all(&p);
    }
    d.check();
    assert_eq!(kind(&d), "big", "12 copies left: above the way back");
    d.leave_oldest(&99, 4);
    d.check();
    assert_eq!((kind(&d), d.len()), ("small", 8));
    d.leave_oldest(&99, 7);
    assert_eq!((kind(&d), d.len()), ("one", 1));
    d.leave_all(&99);
    assert_eq!(kind(&d), "empty");
    // an exchange's group of known size
    assert_eq!(kind(&GroupData::<u32>::with_capacity(16)), "small");
    assert_eq!(kind(&GroupData::<u32>::with_capacity(17)), "big");
}

#[test]
fn freed_multi_entry_moves_the_last_one() {
    // A, B, C get multi entries 0, 1, 2; freeing A's moves C's to 0,
    // then B's (now the last) and C's are freed without a move. On the
    // full representation itself (a group this small is a `Small`).
    let mut b: Big<char> = Big::new();
    b.join('A', true, 2);
    b.join('B', true, 3);
    b.join('C', false, 2);
    b.join('D', true, 1);
    let history = |b: &Big<char>| b.iter(Part::All).copied().collect::<Vec<_>>();
    assert_eq!(b.take_copies(&'A', usize::MAX, true), 2);
    b.check();
    assert_eq!(b.count_of(&'C'), 2);
    assert_eq!(b.take_copies(&'B', 2, true), 2);
    b.check();
    assert_eq!(history(&b), vec!['D', 'C', 'C', 'B']);
    // the exchange's rule: from the newest end
    assert_eq!(b.take_copies(&'C', 1, false), 1);
    b.check();
    assert_eq!(history(&b), vec!['D', 'C', 'B']);
    assert!(b.multi.is_empty());
}

#[test]
fn compaction_remaps_the_pid_table() {
    // 200 pids (a hash table), every third with three copies; most
    // leave, which compacts the slots several times.
    let mut d = GroupData::new();
    for i in 0..200u32 {
        d.join(i, i % 2 == 0, if i % 3 == 0 { 3 } else { 1 });
    }
    for i in 0..200u32 {
        d.join(i, true, 1);
    }
    d.check();
    for i in (0..200u32).filter(|i| i % 7 != 0) {
        d.leave_oldest(&i, 1 + (i % 3) as usize);
        d.check();
    }
    assert!(d.slot_count() < 400);
    let mut want: Vec<u32> = Vec::new();
    for i in 0..200u32 {
        let first = if i % 3 == 0 { 3 } else { 1 };
        let left = if i % 7 == 0 {
            0
        } else {
            (1 + (i % 3) as usize).min(first)
        };
        want.extend(std::iter::repeat_n(i, first - left));
    }
    let mut second: Vec<u32> = (0..200u32)
        .filter(|i| {
            let first = if i % 3 == 0 { 3 } else { 1 };
            i % 7 == 0 || (*i as usize % 3) < first
        })
        .collect();
    want.append(&mut second);
    want.reverse();
    assert_eq!(d.to_data().history, want);
    for i in 0..200u32 {
        assert_eq!(d.count_of(&i), want.iter().filter(|p| **p == i).count());
    }
}

/// Naive model: the cpg lists, newest first, exactly as cpg updates them.
#[derive(Debug, Clone, Default)]
struct Model {
    local: Vec<u8>,
    remote: Vec<u8>,
    history: Vec<u8>,
}

fn is_local(p: u8) -> bool {
    p.is_multiple_of(2)
}

impl Model {
    fn list(&mut self, p: u8) -> &mut Vec<u8> {
        if is_local(p) {
            &mut self.local
        } else {
            &mut self.remote
        }
    }
    fn join(&mut self, p: u8, n: usize) {
        for _ in 0..n {
            self.list(p).insert(0, p);
            self.history.insert(0, p);
        }
    }
    fn remove_oldest(l: &mut Vec<u8>, p: u8, n: usize) -> usize {
        let mut k = 0;
        while k < n {
            match l.iter().rposition(|x| *x == p) {
                Some(i) => {
                    l.remove(i);
                    k += 1;
                }
                None => break,
            }
        }
        k
    }
    fn remove_newest(l: &mut Vec<u8>, p: u8, n: usize) {
        for _ in 0..n {
            let i = l.iter().position(|x| *x == p).unwrap();
            l.remove(i);
        }
    }
    fn leave(&mut self, p: u8, n: usize) -> usize {
        let k = Self::remove_oldest(self.list(p), p, n);
        Self::remove_oldest(&mut self.history, p, k);
        k
    }
    fn set(&mut self, p: u8, n: usize) -> isize {
        let have = self.history.iter().filter(|x| **x == p).count();
        if n > have {
            self.join(p, n - have);
        } else {
            Self::remove_newest(self.list(p), p, have - n);
            Self::remove_newest(&mut self.history, p, have - n);
        }
        n as isize - have as isize
    }
}

#[derive(Debug, Clone)]
enum Op {
    Join(u8, usize),
    Leave(u8, usize),
    LeaveAll(u8),
    Set(u8, usize),
}

/// Up to 20 distinct pids: groups cross `FEW_PIDS` both ways.
fn op() -> impl Strategy<Value = Op> {
    op_of(20)
}

/// Operations on up to `pids` distinct pids.
fn op_of(pids: u8) -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..pids, 1usize..4).prop_map(|(p, n)| Op::Join(p, n)),
        3 => (0..pids, 1usize..4).prop_map(|(p, n)| Op::Leave(p, n)),
        1 => (0..pids).prop_map(Op::LeaveAll),
        2 => (0..pids, 0usize..5).prop_map(|(p, n)| Op::Set(p, n)),
    ]
}

/// Applies `o` to the group and to the model; the results must agree.
fn apply(d: &mut GroupData<u8>, m: &mut Model, o: Op) -> Result<(), TestCaseError> {
    match o {
        Op::Join(p, n) => {
            d.join(p, is_local(p), n);
            m.join(p, n);
        }
        Op::Leave(p, n) => prop_assert_eq!(d.leave_oldest(&p, n), m.leave(p, n)),
        Op::LeaveAll(p) => prop_assert_eq!(d.leave_all(&p), m.leave(p, usize::MAX)),
        Op::Set(p, n) => prop_assert_eq!(d.set_count_newest(&p, is_local(p), n), m.set(p, n)),
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]
    #[test]
    fn matches_naive_lists(ops in proptest::collection::vec(op(), 0..300), picks in proptest::collection::vec(0usize..64, 8)) {
        let mut d: GroupData<u8> = GroupData::new();
        let mut m = Model::default();
        for o in ops {
            apply(&mut d, &mut m, o)?;
            d.check();
            let r = d.to_data();
            prop_assert_eq!(&r.history, &m.history);
            // The shared snapshot is never stale, and while nothing
            // changes it is handed out again, not rebuilt (a group of
            // one copy, kept inline, builds it on each read).
            let snap = d.shared_members();
            prop_assert_eq!(&snap[..], &m.history[..]);
            prop_assert_eq!(&d.shared_members()[..], &m.history[..]);
            prop_assert_eq!(d.members_slice(), &m.history[..]);
            if d.len() > 1 {
                // Built once, then borrowed again.
                prop_assert!(std::ptr::eq(d.members_slice(), d.members_slice()));
            }
            prop_assert_eq!(&r.local, &m.local);
            prop_assert_eq!(&r.remote, &m.remote);
            prop_assert_eq!(r.local_count, m.local.len());
            prop_assert_eq!(r.remote_count, m.remote.len());
        }
        // selection helpers against the model lists
        for (part, list) in [(Part::All, &m.history), (Part::Local, &m.local), (Part::Remote, &m.remote)] {
            for (i, p) in list.iter().enumerate() {
                prop_assert_eq!(d.nth(part, i), Some(p));
            }
            prop_assert_eq!(d.nth(part, list.len()), None);
            prop_assert_eq!(&d.part_members(part, None)[..], &list[..]);
            for ex in 0u8..8 {
                let filtered: Vec<u8> = list.iter().copied().filter(|x| *x != ex).collect();
                prop_assert_eq!(d.count_excluding(part, Some(&ex)), filtered.len());
                prop_assert_eq!(d.members(part, Some(&ex)), filtered.clone());
                prop_assert_eq!(&d.part_members(part, Some(&ex))[..], &filtered[..]);
                prop_assert_eq!(d.newest(part, Some(&ex)), filtered.first());
                prop_assert_eq!(d.oldest(part, Some(&ex)), filtered.last());
                for &k in &picks {
                    prop_assert_eq!(d.nth_excluding(part, k, Some(&ex)), filtered.get(k));
                }
            }
        }
        for p in 0u8..8 {
            prop_assert_eq!(d.count_of(&p), m.history.iter().filter(|x| **x == p).count());
        }
    }

    /// Many distinct pids, several copies each, long runs: the hash
    /// table, its `multi` entries moving as others are freed, and
    /// compactions remapping both.
    #[test]
    fn pid_table_matches_naive_lists(ops in proptest::collection::vec(op_of(48), 0..1500)) {
        let mut d: GroupData<u8> = GroupData::new();
        let mut m = Model::default();
        for o in ops {
            apply(&mut d, &mut m, o)?;
            d.check();
        }
        prop_assert_eq!(d.to_data().history, m.history.clone());
        for p in 0u8..48 {
            prop_assert_eq!(d.count_of(&p), m.history.iter().filter(|x| **x == p).count());
        }
        let mut pids: Vec<u8> = d.pids().copied().collect();
        pids.sort_unstable();
        let mut want = m.history.clone();
        want.sort_unstable();
        want.dedup();
        prop_assert_eq!(pids, want);
    }
}
