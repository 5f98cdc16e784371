//! A group of more than a handful of copies: slots, Fenwick tree and the
//! per-pid index (see the parent module's docs).

use super::fenwick::{make_room, Fenwick, Positions};
use super::index::{pos32, view, MultiLists, PidIndex, PidTable, View, FEW_PIDS, MULTI};
use super::Part;
use crate::cpg::snapshot::Snapshot;
use hashbrown::HashTable;
use std::collections::VecDeque;
use std::hash::Hash;
use std::sync::Arc;

/// Compaction happens when holes exceed both this and the live copies.
pub(super) const COMPACT_MIN_HOLES: usize = 64;

/// A group of two copies or more: slots, Fenwick tree, per-pid copies (see
/// the module docs). [`GroupData`](super::GroupData) wraps it, and keeps the usual group of
/// one copy inline instead.
#[derive(Debug, Clone)]
pub(super) struct Big<P> {
    /// The pid of each copy, oldest first; a removed copy (a hole, see
    /// [`Fenwick::has`]) keeps its pid until a compaction sweeps it away.
    pub(super) slots: Vec<P>,
    /// Which slots hold a copy and on which side, and their counts.
    pub(super) tree: Fenwick,
    /// Per distinct pid, where its copies are.
    pub(super) index: PidIndex,
    /// The positions of the pids with several copies, in no order (an
    /// entry freed moves the last one into its place).
    pub(super) multi: MultiLists,
    pub(super) local_count: usize,
    pub(super) remote_count: usize,
    /// Every copy, newest first, built on the first read after a change and
    /// handed out shared ([`GroupData::shared_members`](super::GroupData::shared_members)): as BEAM returns
    /// the list it holds, a read of a group that did not change copies
    /// nothing (each CPU counts its own copy, see [`Snapshot`]). Dropped
    /// by every change.
    pub(super) shared: Snapshot<P>,
}

impl<P: Clone + Eq + Hash> Big<P> {
    /// Room for `n` copies of up to `n` distinct pids, allocated once.
    pub(super) fn with_capacity(n: usize) -> Self {
        let mut b = Big::new();
        b.slots.reserve_exact(n);
        b.tree = Fenwick::with_capacity(n);
        b.index = if n > FEW_PIDS {
            PidIndex::Many(Box::new(PidTable {
                table: HashTable::with_capacity(n),
                state: Default::default(),
            }))
        } else {
            PidIndex::Few(Vec::with_capacity(n))
        };
        b
    }

    /// Gives back the room [`with_capacity`](Self::with_capacity) reserved
    /// and the copies did not use.
    pub(super) fn shrink_to_fit(&mut self) {
        self.slots.shrink_to_fit();
        self.tree.blocks.shrink_to_fit();
        self.multi.shrink_to_fit();
        self.index.shrink(view!(self), true);
    }

    pub(super) fn new() -> Self {
        Big {
            slots: Vec::new(),
            tree: Fenwick::default(),
            index: PidIndex::Few(Vec::new()),
            multi: Vec::new(),
            local_count: 0,
            remote_count: 0,
            shared: Snapshot::default(),
        }
    }

    /// Number of copies (length of cpg's `history`).
    pub(super) fn len(&self) -> usize {
        self.local_count + self.remote_count
    }

    /// Number of copies in `part`.
    pub(super) fn count(&self, part: Part) -> usize {
        match part {
            Part::All => self.len(),
            Part::Local => self.local_count,
            Part::Remote => self.remote_count,
        }
    }

    /// The index value of `pid`.
    pub(super) fn value(&self, pid: &P) -> Option<u32> {
        self.index.get(view!(self), pid)
    }

    /// Whether the pid of value `v` is local.
    pub(super) fn side(&self, v: u32) -> bool {
        view!(self)
            .pos(v)
            .is_some_and(|pos| self.tree.has(pos, Part::Local))
    }

    /// Number of copies behind value `v`.
    pub(super) fn copies(&self, v: u32) -> usize {
        if v & MULTI == 0 {
            1
        } else {
            self.multi[(v & !MULTI) as usize].len()
        }
    }

    /// Slot positions behind value `v`, newest first.
    pub(super) fn newest_first(&self, v: u32) -> impl Iterator<Item = usize> + '_ {
        let (one, many) = if v & MULTI == 0 {
            (Some(v as usize), None)
        } else {
            let list = &self.multi[(v & !MULTI) as usize];
            (None, Some(list.iter().rev().map(|&pos| pos as usize)))
        };
        one.into_iter().chain(many.into_iter().flatten())
    }

    /// Number of copies of `pid` (cpg's `count(Pid, History)`).
    pub(super) fn count_of(&self, pid: &P) -> usize {
        self.value(pid).map_or(0, |v| self.copies(v))
    }

    /// Number of distinct pids.
    pub(super) fn distinct_pids(&self) -> usize {
        self.index.len()
    }

    /// The distinct pids, in no particular order.
    pub(super) fn pids(&self) -> impl Iterator<Item = &P> + '_ {
        self.index.values().filter_map(|v| view!(self).pid(v))
    }

    /// Adds `count` copies of `pid` at the newest end (cpg's `prepend`).
    /// `is_local` is only used when `pid` has no copy yet.
    pub(super) fn join(&mut self, pid: P, is_local: bool, count: usize) {
        if count == 0 {
            return;
        }
        self.shared.clear();
        let first = pos32(self.slots.len());
        let old = self.value(&pid);
        let is_local = old.map_or(is_local, |v| self.side(v));
        // The slots first: every index value then leads to a live slot.
        for _ in 1..count {
            self.push_slot(pid.clone(), is_local);
        }
        self.push_slot(pid, is_local);
        let end = pos32(self.slots.len());
        if is_local {
            self.local_count += count;
        } else {
            self.remote_count += count;
        }
        match old {
            Some(v) if v & MULTI != 0 => self.multi[(v & !MULTI) as usize].extend(first..end),
            Some(v) => {
                let new = self.new_multi(v, first, end);
                self.index.replace(&self.slots[first as usize], v, new);
            }
            None if count == 1 => self.index.insert_new(view!(self), first),
            None => {
                let mut list = VecDeque::with_capacity(count);
                list.extend(first..end);
                self.multi.push(list);
                let new = MULTI | pos32(self.multi.len() - 1);
                self.index.insert_new(view!(self), new);
            }
        }
    }

    /// A new entry of `multi` holding `oldest` then `first..end`; returns
    /// its value.
    pub(super) fn new_multi(&mut self, oldest: u32, first: u32, end: u32) -> u32 {
        let mut list = VecDeque::with_capacity(1 + (end - first) as usize);
        list.push_back(oldest);
        list.extend(first..end);
        self.multi.push(list);
        MULTI | pos32(self.multi.len() - 1)
    }

    /// Drops entry `i` of `multi`, no longer in the index: the last entry
    /// moves into its place and its index value follows.
    pub(super) fn free_multi(&mut self, i: usize) {
        let last = self.multi.len() - 1;
        if i != last {
            let from = MULTI | pos32(last);
            if let Some(pid) = view!(self).pid(from) {
                self.index.replace(pid, from, MULTI | pos32(i));
            }
        }
        self.multi.swap_remove(i);
        if self.multi.capacity() > 8 && self.multi.len() * 4 < self.multi.capacity() {
            self.multi.shrink_to(self.multi.len() * 2);
        }
    }

    /// The pid and side of the one live copy, when exactly one is left.
    pub(super) fn only(&self) -> Option<(P, bool)> {
        if self.len() != 1 {
            return None;
        }
        let pos = (0..self.slots.len())
            .rev()
            .find(|&pos| self.tree.has(pos, Part::All))?;
        Some((self.slots[pos].clone(), self.tree.has(pos, Part::Local)))
    }

    pub(super) fn push_slot(&mut self, pid: P, is_local: bool) {
        make_room(&mut self.slots);
        self.slots.push(pid);
        self.tree.push(is_local);
    }

    /// Makes slot `pos` (a copy on side `is_local`) a hole.
    pub(super) fn clear_slot(&mut self, pos: u32, is_local: bool) {
        self.tree.remove(pos as usize, is_local);
    }

    pub(super) fn take_copies(&mut self, pid: &P, count: usize, oldest: bool) -> usize {
        let Some(v) = self.value(pid) else {
            return 0;
        };
        let have = self.copies(v);
        let n = count.min(have);
        if n == 0 {
            return 0;
        }
        self.shared.clear();
        let is_local = self.side(v);
        if n == have {
            // Out of the index while its slots still name it.
            self.index.remove(pid, v);
        }
        if v & MULTI == 0 {
            self.clear_slot(v, is_local);
        } else {
            let i = (v & !MULTI) as usize;
            for _ in 0..n {
                let list = &mut self.multi[i];
                let pos = if oldest {
                    list.pop_front()
                } else {
                    list.pop_back()
                };
                self.clear_slot(pos.expect("n <= copies"), is_local);
            }
            match self.multi[i].len() {
                0 => self.free_multi(i),
                1 => {
                    self.index.replace(pid, v, self.multi[i][0]);
                    self.free_multi(i);
                }
                _ => {}
            }
        }
        if is_local {
            self.local_count -= n;
        } else {
            self.remote_count -= n;
        }
        self.maybe_compact();
        self.index.shrink(view!(self), false);
        n
    }

    pub(super) fn maybe_compact(&mut self) {
        let live = self.len();
        let holes = self.slots.len() - live;
        if holes <= COMPACT_MIN_HOLES || holes <= live {
            return;
        }
        let mut remap = vec![u32::MAX; self.slots.len()];
        let mut slots = Vec::with_capacity(live);
        let mut tree = Fenwick::with_capacity(live);
        for (i, pid) in self.slots.drain(..).enumerate() {
            if self.tree.has(i, Part::All) {
                remap[i] = pos32(slots.len());
                slots.push(pid);
                tree.push(self.tree.has(i, Part::Local));
            }
        }
        self.slots = slots;
        self.tree = tree;
        // A pid's hash does not change: its value is rewritten in place.
        for v in self.index.values_mut() {
            if *v & MULTI == 0 {
                *v = remap[*v as usize];
            }
        }
        for list in &mut self.multi {
            list.iter_mut().for_each(|pos| *pos = remap[*pos as usize]);
        }
    }

    /// The copies in `part`, newest first.
    pub(super) fn iter(&self, part: Part) -> impl DoubleEndedIterator<Item = &P> + '_ {
        Positions::new(&self.tree.blocks, part)
            .rev()
            .map(|pos| &self.slots[pos])
    }

    /// Every copy, newest first, as one shared immutable snapshot: the
    /// first read after a change builds it (`O(n)`), later reads only count
    /// a reference (no copy, no allocation) until the group changes; the
    /// first read on each other CPU copies it once (see [`Snapshot`]).
    pub(super) fn shared_members(&self) -> Arc<[P]> {
        self.shared.handout(|| self.build_snapshot())
    }

    /// The snapshot of every copy, newest first, built on first use.
    pub(super) fn snapshot(&self) -> &Arc<[P]> {
        self.shared.get(|| self.build_snapshot())
    }

    /// Every copy, newest first, as a new list.
    pub(super) fn build_snapshot(&self) -> Arc<[P]> {
        // `for_each` walks the slots in one loop (`Positions::rfold`);
        // `collect` would step through `next` per copy.
        let mut v = Vec::with_capacity(self.len());
        self.iter(Part::All).for_each(|p| v.push(p.clone()));
        v.into()
    }

    /// The `i`-th copy of `part`, newest first (`i == 0` is the newest), in
    /// `O(log n)`.
    pub(super) fn nth(&self, part: Part, i: usize) -> Option<&P> {
        let n = self.count(part);
        if i >= n {
            return None;
        }
        // No hole, and `part` is every copy (the other side has none): the
        // copy is its slot, found without walking the tree.
        if n == self.slots.len() {
            return self.slots.get(n - 1 - i);
        }
        let pos = self.tree.select(n - 1 - i, part);
        self.slots.get(pos)
    }

    /// Checks the pid index against the slots (tests): every value leads
    /// to live slots of its own pid, every `multi` entry is used once and
    /// holds two ascending positions or more, every live copy is indexed.
    #[cfg(test)]
    pub(super) fn check(&self) {
        let mut used = vec![false; self.multi.len()];
        let mut indexed = 0;
        for v in self.index.values() {
            let pid = view!(self).pid(v).expect("live");
            assert_eq!(self.value(pid), Some(v));
            if v & MULTI != 0 {
                let i = (v & !MULTI) as usize;
                assert!(!std::mem::replace(&mut used[i], true));
                let list = &self.multi[i];
                assert!(list.len() >= 2);
                assert!(list.iter().zip(list.iter().skip(1)).all(|(a, b)| a < b));
            }
            for pos in self.newest_first(v) {
                assert!(self.tree.has(pos, Part::All) && self.slots[pos] == *pid);
            }
            indexed += self.copies(v);
        }
        assert!(used.into_iter().all(|u| u));
        assert_eq!(indexed, self.len());
        assert_eq!(self.tree.len, self.slots.len());
        let n = self.slots.len();
        let live = (0..n).filter(|&pos| self.tree.has(pos, Part::All)).count();
        assert_eq!(live, self.len());
        assert_eq!(self.tree.prefix(n, Part::Local), self.local_count);
        assert_eq!(self.tree.prefix(n, Part::Remote), self.remote_count);
        if let PidIndex::Few(v) = &self.index {
            assert!(v.len() <= FEW_PIDS);
        }
    }

    /// The index value of `exclude` when it has copies in `part`.
    pub(super) fn excluded(&self, part: Part, exclude: Option<&P>) -> Option<u32> {
        exclude
            .and_then(|ex| self.value(ex))
            .filter(|&v| part.includes(self.side(v)))
    }

    /// Number of copies in `part` that are not copies of `exclude`.
    pub(super) fn count_excluding(&self, part: Part, exclude: Option<&P>) -> usize {
        let n = self.count(part);
        self.excluded(part, exclude)
            .map_or(n, |v| n - self.copies(v))
    }

    /// How many of the copies of `part` newer than the `i`-th (newest
    /// first) are copies of the pid valued `v`, and whether the `i`-th is
    /// one. `O((1 + those copies) * log n)`.
    pub(super) fn excluded_before(&self, part: Part, i: usize, v: u32) -> (usize, bool) {
        let n = self.count(part);
        let mut before = 0;
        // Ranks (from newest) of the copies of `v`, ascending.
        for pos in self.newest_first(v) {
            let rank = n - self.tree.prefix(pos + 1, part);
            if rank >= i {
                return (before, rank == i);
            }
            before += 1;
        }
        (before, false)
    }

    /// The `i`-th copy of `part` that is not a copy of `exclude`, newest
    /// first. `O((1 + copies of exclude) * log n)`.
    pub(super) fn nth_excluding(&self, part: Part, i: usize, exclude: Option<&P>) -> Option<&P> {
        let Some(v) = self.excluded(part, exclude) else {
            return self.nth(part, i);
        };
        let n = self.count(part);
        let mut target = i;
        // Ranks (from newest) of the excluded copies, ascending.
        for pos in self.newest_first(v) {
            let rank = n - self.tree.prefix(pos + 1, part);
            if rank <= target {
                target += 1;
            } else {
                break;
            }
        }
        self.nth(part, target)
    }
}
