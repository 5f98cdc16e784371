//! A group of 2 to 16 copies: a plain list of pids with a side bit each.

use super::big::Big;
use super::fenwick::select_bit;
use super::Part;
use crate::cpg::snapshot::Snapshot;
use std::hash::Hash;
use std::sync::Arc;

/// Most copies a group keeps in its small form ([`Small`]); a join past
/// it moves the group to [`Big`].
pub(super) const SMALL_MAX: usize = 16;

/// A [`Big`] group left with at most this many copies moves back to the
/// small form (half of [`SMALL_MAX`]: a group going up and down around
/// the limit does not move at each join and leave).
pub(super) const SMALL_BACK: usize = SMALL_MAX / 2;

/// A group of 2 to [`SMALL_MAX`] copies: the copies' pids oldest first,
/// without holes, and one bit a copy for its side. Every operation is a
/// scan of at most 16 slots (a few cache lines), and the group costs its
/// slots and 48 bytes (80 before its snapshot was boxed on first read),
/// where a [`Big`] adds a Fenwick block, the pid index and its own 136
/// bytes (168): a group of 10 members took 152 bytes less (whole-node
/// memory after the ingest of 10k groups × 10 remote members, `ingest_mem`
/// of `scripts/bench.sh`: 73.6 → 58.4 bytes a membership).
#[derive(Debug, Clone)]
pub(super) struct Small<P> {
    /// The pid of each copy, oldest first (no holes).
    pub(super) slots: Vec<P>,
    /// Bit `i`: copy `i` is local.
    pub(super) local: u32,
    /// Every copy, newest first, built on the first read after a change
    /// (as [`Big::shared`]).
    pub(super) shared: Snapshot<P>,
}

impl<P: Clone + Eq + Hash> Small<P> {
    /// Room for `n` copies (at most [`SMALL_MAX`]).
    pub(super) fn with_capacity(n: usize) -> Self {
        Small {
            slots: Vec::with_capacity(n),
            local: 0,
            shared: Snapshot::default(),
        }
    }

    pub(super) fn len(&self) -> usize {
        self.slots.len()
    }

    /// Which copies are in `part`, a bit each.
    #[inline]
    pub(super) fn bits(&self, part: Part) -> u32 {
        let all = (1u32 << self.slots.len()) - 1;
        match part {
            Part::All => all,
            Part::Local => self.local,
            Part::Remote => all & !self.local,
        }
    }

    #[inline]
    pub(super) fn count(&self, part: Part) -> usize {
        // a group of one side skips the bit count (a dozen instructions
        // where the CPU's popcnt is not enabled)
        match self.bits(part) {
            0 => 0,
            b if b == self.bits(Part::All) => self.slots.len(),
            b => b.count_ones() as usize,
        }
    }

    /// Position of a copy of `pid`, if it has one.
    pub(super) fn position(&self, pid: &P) -> Option<usize> {
        self.slots.iter().position(|p| p == pid)
    }

    pub(super) fn count_of(&self, pid: &P) -> usize {
        self.slots.iter().filter(|p| *p == pid).count()
    }

    /// The distinct pids, each once (at its oldest copy).
    pub(super) fn pids(&self) -> impl Iterator<Item = &P> + '_ {
        self.slots
            .iter()
            .enumerate()
            .filter(|&(i, p)| !self.slots[..i].contains(p))
            .map(|(_, p)| p)
    }

    /// Whether `count` more copies fit.
    pub(super) fn fits(&self, count: usize) -> bool {
        count <= SMALL_MAX - self.slots.len()
    }

    /// Adds `count` copies of `pid` at the newest end; they must fit
    /// ([`fits`](Self::fits)). `is_local` is only used when `pid` has no
    /// copy yet.
    pub(super) fn join(&mut self, pid: P, is_local: bool, count: usize) {
        debug_assert!(self.fits(count));
        self.shared.clear();
        let is_local = self
            .position(&pid)
            .map_or(is_local, |i| self.local >> i & 1 != 0);
        self.slots.reserve_exact(count);
        for _ in 0..count {
            if is_local {
                self.local |= 1 << self.slots.len();
            }
            self.slots.push(pid.clone());
        }
    }

    /// Removes up to `count` copies of `pid`, from the oldest end or the
    /// newest. Returns how many.
    pub(super) fn take_copies(&mut self, pid: &P, count: usize, oldest: bool) -> usize {
        let have = self.count_of(pid);
        let n = count.min(have);
        if n == 0 {
            return 0;
        }
        self.shared.clear();
        // The copies kept: the first `have - n` of `pid`'s when taking from
        // the newest end, the last `have - n` when taking from the oldest.
        let mut seen = 0;
        let keep = |seen: usize| {
            if oldest {
                seen >= n
            } else {
                seen < have - n
            }
        };
        let (mut w, mut local) = (0, 0u32);
        for r in 0..self.slots.len() {
            let kept = if self.slots[r] == *pid {
                seen += 1;
                keep(seen - 1)
            } else {
                true
            };
            if kept {
                local |= (self.local >> r & 1) << w;
                self.slots.swap(w, r);
                w += 1;
            }
        }
        self.slots.truncate(w);
        self.local = local;
        n
    }

    /// Every copy, newest first, shared (see [`Big::shared_members`]).
    pub(super) fn shared_members(&self) -> Arc<[P]> {
        self.shared.handout(|| self.build_snapshot())
    }

    pub(super) fn snapshot(&self) -> &Arc<[P]> {
        self.shared.get(|| self.build_snapshot())
    }

    pub(super) fn build_snapshot(&self) -> Arc<[P]> {
        self.slots.iter().rev().cloned().collect()
    }

    /// The copies in `part`, newest first.
    pub(super) fn iter(&self, part: Part) -> impl DoubleEndedIterator<Item = &P> + '_ {
        let bits = self.bits(part);
        self.slots
            .iter()
            .enumerate()
            .rev()
            .filter(move |&(i, _)| bits >> i & 1 != 0)
            .map(|(_, p)| p)
    }

    /// The `i`-th copy of `part`, newest first.
    #[inline]
    pub(super) fn nth(&self, part: Part, i: usize) -> Option<&P> {
        let len = self.slots.len();
        let bits = self.bits(part);
        // every copy is in `part` (a group of one side): the slot itself
        if bits == self.bits(Part::All) {
            return self.slots.get(len.checked_sub(1 + i)?);
        }
        let n = bits.count_ones() as usize;
        if i >= n {
            return None;
        }
        // the (n - 1 - i)-th set bit from the oldest end
        self.slots.get(select_bit(u64::from(bits), n - 1 - i))
    }

    /// The group as a [`Big`] (a join past [`SMALL_MAX`]).
    pub(super) fn to_big(&self, extra: usize) -> Big<P> {
        let mut b = Big::with_capacity(self.slots.len() + extra);
        for (i, p) in self.slots.iter().enumerate() {
            b.join(p.clone(), self.local >> i & 1 != 0, 1);
        }
        b
    }

    /// A [`Big`] group of at most [`SMALL_MAX`] copies, small.
    pub(super) fn from_big(b: &Big<P>) -> Self {
        let mut s = Small::with_capacity(b.len());
        // at most SMALL_BACK copies and the holes not yet compacted away
        for (pos, p) in b.slots.iter().enumerate() {
            if b.tree.has(pos, Part::All) {
                s.local |= u32::from(b.tree.has(pos, Part::Local)) << s.slots.len();
                s.slots.push(p.clone());
            }
        }
        s
    }

    /// Checks the invariants (tests).
    #[cfg(test)]
    pub(super) fn check(&self) {
        assert!((2..=SMALL_MAX).contains(&self.slots.len()));
        assert_eq!(self.local & !self.bits(Part::All), 0);
        for (i, p) in self.slots.iter().enumerate() {
            let first = self.position(p).expect("in the slots");
            assert_eq!(
                self.local >> i & 1,
                self.local >> first & 1,
                "one side a pid"
            );
        }
    }
}
