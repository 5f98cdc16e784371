//! Membership of one cpg group: the replica of cpg's `#cpg_data{}` record.
//!
//! Genuine cpg keeps, per group, three lists (`local`, `remote`, `history`),
//! each newest first with one element per join, plus `local_count` and
//! `remote_count`. `local` and `remote` are always `history` filtered by
//! "is the pid on this node", in the same order. Updating those lists is
//! linear in the group size on the BEAM, which makes leaving or killing the
//! members of a large group quadratic.
//!
//! [`GroupData`] stores the same information differently, so that every
//! operation is `O(log n)` per copy touched (amortized):
//!
//! * every copy (one join) gets a slot (its pid) in a vector ordered oldest
//!   to newest; removed copies leave a hole that is swept away by an
//!   occasional compaction (when holes outnumber live copies);
//! * two bits per slot (holds a copy, is local) and a Fenwick tree over
//!   blocks of 64 slots, counting local and remote copies apart, give the
//!   i-th local / remote / any copy in `O(log n)`;
//! * per pid, the slots of its copies in ascending order, so leaving from the
//!   oldest end (`leave`) or from the newest end (exchange merge) touches only
//!   that pid's copies: one `u32` per distinct pid in a hash table (the pid
//!   itself is read from its slot), leading to its only slot or to the list
//!   of its slots.
//!
//! That machinery pays off for large groups only. A group of one copy is
//! held inline, and a group of up to 16 copies is a plain list of its
//! pids with a side bit each, every operation a scan of at most 16 slots
//! (less memory than the full form, and a faster merge: most groups of a
//! real cluster hold a handful of members).
//!
//! [`GroupData::to_data`] gives back the exact `#cpg_data{}` lists as a
//! [`CpgData`].

mod big;
mod fenwick;
mod index;
mod small;
#[cfg(test)]
mod tests;

use super::snapshot::Members;
use big::Big;
use small::{Small, SMALL_BACK, SMALL_MAX};
use std::hash::Hash;

/// Which part of a group's membership an operation looks at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Part {
    /// Every copy (cpg's `history`).
    All,
    /// Copies of pids on this node (cpg's `local`).
    Local,
    /// Copies of pids on other nodes (cpg's `remote`).
    Remote,
}

impl Part {
    fn includes(self, is_local: bool) -> bool {
        match self {
            Part::All => true,
            Part::Local => is_local,
            Part::Remote => !is_local,
        }
    }
}

/// A plain copy of cpg's `#cpg_data{}` record: all lists newest first, one
/// element per join. Built by [`GroupData::to_data`] for inspection and tests.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CpgData<P> {
    /// Number of elements of `local`.
    pub local_count: usize,
    /// Copies of pids on this node, newest first.
    pub local: Vec<P>,
    /// Number of elements of `remote`.
    pub remote_count: usize,
    /// Copies of pids on other nodes, newest first.
    pub remote: Vec<P>,
    /// All copies in arrival order, newest first.
    pub history: Vec<P>,
}

/// Membership of one group (cpg's `#cpg_data{}`), with sub-linear updates.
///
/// "Newest first" everywhere, as in cpg: index 0 of [`nth`](Self::nth) is the
/// latest join. Local/remote is decided by the caller at join time
/// (`node(Pid) == node()` in cpg) and kept per pid.
///
/// Most groups hold one copy of one pid (a service registered under its
/// own name): such a group is kept inline, the pid and its side, with no
/// allocation (24 bytes for a `MemberPid`). The second copy moves the group
/// to a small list (`Small`, up to 16 copies, scanned), the 17th to the
/// full representation (`Big`); a group left with 8 copies or fewer
/// moves back to the list, with one to the inline form.
#[derive(Debug, Clone)]
pub struct GroupData<P> {
    repr: Repr<P>,
}

#[derive(Debug, Clone)]
enum Repr<P> {
    /// No copy (a new group, or one whose last copy left).
    Empty,
    /// Exactly one copy.
    One { pid: P, is_local: bool },
    /// Two to [`SMALL_MAX`] copies (briefly fewer, inside a write).
    Small(Box<Small<P>>),
    /// More than [`SMALL_BACK`] copies (briefly fewer, inside a write).
    Big(Box<Big<P>>),
}

/// What [`GroupData::split`] gives: at most one of the three is `Some`.
type Split<'a, P> = (
    Option<(&'a P, bool)>,
    Option<&'a Small<P>>,
    Option<&'a Big<P>>,
);

impl<P: Clone + Eq + Hash> Default for GroupData<P> {
    fn default() -> Self {
        Self::new()
    }
}

impl<P: Clone + Eq + Hash> GroupData<P> {
    /// An empty group.
    pub fn new() -> Self {
        GroupData { repr: Repr::Empty }
    }

    /// An empty group with room for `n` copies (of up to `n` pids), for a
    /// group whose size is known, as one arriving whole in an exchange:
    /// its vectors are allocated once instead of growing copy by copy.
    pub fn with_capacity(n: usize) -> Self {
        let repr = match n {
            0 | 1 => Repr::Empty,
            2..=SMALL_MAX => Repr::Small(Box::new(Small::with_capacity(n))),
            _ => Repr::Big(Box::new(Big::with_capacity(n))),
        };
        GroupData { repr }
    }

    /// The one copy of a one-copy group, the small list or the full
    /// representation of a larger one (all `None` when empty).
    fn split(&self) -> Split<'_, P> {
        match &self.repr {
            Repr::Empty => (None, None, None),
            Repr::One { pid, is_local } => (Some((pid, *is_local)), None, None),
            Repr::Small(s) => (None, Some(s), None),
            Repr::Big(b) => (None, None, Some(b)),
        }
    }

    /// Number of copies (length of cpg's `history`).
    pub fn len(&self) -> usize {
        match &self.repr {
            Repr::Empty => 0,
            Repr::One { .. } => 1,
            Repr::Small(s) => s.len(),
            Repr::Big(b) => b.len(),
        }
    }

    /// True when no copy is left (cpg then erases the group).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// cpg's `local_count`.
    pub fn local_count(&self) -> usize {
        self.count(Part::Local)
    }

    /// cpg's `remote_count`.
    pub fn remote_count(&self) -> usize {
        self.count(Part::Remote)
    }

    /// Number of copies in `part`.
    pub fn count(&self, part: Part) -> usize {
        match &self.repr {
            Repr::Empty => 0,
            Repr::One { is_local, .. } => usize::from(part.includes(*is_local)),
            Repr::Small(s) => s.count(part),
            Repr::Big(b) => b.count(part),
        }
    }

    /// Number of copies of `pid` (cpg's `count(Pid, History)`).
    pub fn count_of(&self, pid: &P) -> usize {
        match &self.repr {
            Repr::Empty => 0,
            Repr::One { pid: p, .. } => usize::from(p == pid),
            Repr::Small(s) => s.count_of(pid),
            Repr::Big(b) => b.count_of(pid),
        }
    }

    /// Number of distinct pids.
    pub fn distinct_pids(&self) -> usize {
        match &self.repr {
            Repr::Empty => 0,
            Repr::One { .. } => 1,
            Repr::Small(s) => s.pids().count(),
            Repr::Big(b) => b.distinct_pids(),
        }
    }

    /// The distinct pids, in no particular order.
    pub fn pids(&self) -> impl Iterator<Item = &P> + '_ {
        let (one, small, big) = self.split();
        one.map(|(p, _)| p)
            .into_iter()
            .chain(small.into_iter().flat_map(Small::pids))
            .chain(big.into_iter().flat_map(Big::pids))
    }

    /// Adds `count` copies of `pid` at the newest end (cpg's `prepend`).
    /// `is_local` is only used when `pid` has no copy yet.
    pub fn join(&mut self, pid: P, is_local: bool, count: usize) {
        if count == 0 {
            return;
        }
        match &mut self.repr {
            Repr::Empty if count == 1 => self.repr = Repr::One { pid, is_local },
            Repr::Big(b) => b.join(pid, is_local, count),
            Repr::Small(s) if s.fits(count) => s.join(pid, is_local, count),
            Repr::Small(s) => {
                let mut b = Box::new(s.to_big(count));
                b.join(pid, is_local, count);
                self.repr = Repr::Big(b);
            }
            Repr::Empty | Repr::One { .. } => {
                let old = match std::mem::replace(&mut self.repr, Repr::Empty) {
                    Repr::One { pid, is_local } => Some((pid, is_local)),
                    _ => None,
                };
                // Two copies or more (a single one into an empty group is
                // the first arm): the form `with_capacity` picks for them,
                // the copy there before first.
                *self = GroupData::with_capacity(count + usize::from(old.is_some()));
                if let Some((p, l)) = old {
                    self.join(p, l, 1);
                }
                self.join(pid, is_local, count);
            }
        }
    }

    /// Removes up to `count` oldest copies of `pid` (cpg's `leave` and
    /// `leave_counts`). Returns how many were removed.
    pub fn leave_oldest(&mut self, pid: &P, count: usize) -> usize {
        self.take_copies(pid, count, true)
    }

    /// Removes every copy of `pid` (leave-all, death, nodedown). Returns how
    /// many were removed.
    pub fn leave_all(&mut self, pid: &P) -> usize {
        self.take_copies(pid, usize::MAX, true)
    }

    /// The exchange merge rule: makes `pid` have exactly `count` copies by
    /// adding copies at the newest end or removing copies from the **newest**
    /// end. Returns the change (positive: added, negative: removed).
    pub fn set_count_newest(&mut self, pid: &P, is_local: bool, count: usize) -> isize {
        let have = self.count_of(pid);
        if count > have {
            self.join(pid.clone(), is_local, count - have);
            (count - have) as isize
        } else if count < have {
            let removed = self.take_copies(pid, have - count, false);
            -(removed as isize)
        } else {
            0
        }
    }

    fn take_copies(&mut self, pid: &P, count: usize, oldest: bool) -> usize {
        match &mut self.repr {
            Repr::Empty => 0,
            Repr::One { pid: p, .. } => {
                if p != pid || count == 0 {
                    return 0;
                }
                self.repr = Repr::Empty;
                1
            }
            Repr::Small(s) => {
                let n = s.take_copies(pid, count, oldest);
                self.settle();
                n
            }
            Repr::Big(b) => {
                let n = b.take_copies(pid, count, oldest);
                self.settle();
                n
            }
        }
    }

    /// Back to the empty or inline form when at most one copy is left, and
    /// from the full representation to the small list when at most
    /// [`SMALL_BACK`] are.
    fn settle(&mut self) {
        let len = self.len();
        let repr = match &self.repr {
            Repr::Small(_) | Repr::Big(_) if len == 0 => Repr::Empty,
            Repr::Small(s) if len == 1 => Repr::One {
                pid: s.slots[0].clone(),
                is_local: s.local & 1 != 0,
            },
            Repr::Big(b) if len == 1 => {
                let (pid, is_local) = b.only().expect("one copy");
                Repr::One { pid, is_local }
            }
            Repr::Big(b) if len <= SMALL_BACK => Repr::Small(Box::new(Small::from_big(b))),
            _ => return,
        };
        self.repr = repr;
    }

    /// Gives back room reserved by [`with_capacity`](Self::with_capacity)
    /// and not used.
    pub fn shrink_to_fit(&mut self) {
        self.settle();
        match &mut self.repr {
            Repr::Small(s) => s.slots.shrink_to_fit(),
            Repr::Big(b) => b.shrink_to_fit(),
            _ => {}
        }
    }

    /// The copies in `part`, newest first.
    pub fn iter(&self, part: Part) -> impl DoubleEndedIterator<Item = &P> + '_ {
        let (one, small, big) = self.split();
        let one = one.filter(|(_, is_local)| part.includes(*is_local));
        one.map(|(p, _)| p)
            .into_iter()
            .chain(small.into_iter().flat_map(move |s| s.iter(part)))
            .chain(big.into_iter().flat_map(move |b| b.iter(part)))
    }

    /// cpg's `history`: every copy, newest first.
    pub fn history(&self) -> impl DoubleEndedIterator<Item = &P> + '_ {
        self.iter(Part::All)
    }

    /// cpg's `local`: copies of local pids, newest first.
    pub fn local(&self) -> impl DoubleEndedIterator<Item = &P> + '_ {
        self.iter(Part::Local)
    }

    /// cpg's `remote`: copies of remote pids, newest first.
    pub fn remote(&self) -> impl DoubleEndedIterator<Item = &P> + '_ {
        self.iter(Part::Remote)
    }

    /// Every copy, newest first, as one immutable snapshot: a group of one
    /// copy gives its pid inline (nothing allocated); for a larger group
    /// the first read after a change builds the list (`O(n)`) and later
    /// reads only count a reference (no copy, no allocation) until the
    /// group changes.
    #[inline]
    pub fn shared_members(&self) -> Members<P> {
        match &self.repr {
            Repr::Empty => Members::empty(),
            Repr::One { pid, .. } => Members::one(pid.clone()),
            Repr::Small(s) => Members::shared(s.shared_members()),
            Repr::Big(b) => Members::shared(b.shared_members()),
        }
    }

    /// Every copy, newest first (cpg's `history`), borrowed from the group:
    /// no copy, no allocation and no shared count written (readers on many
    /// cores write nothing in common). A group of two copies or more builds
    /// its snapshot on the first read after a change, as
    /// [`shared_members`](Self::shared_members) does.
    pub fn members_slice(&self) -> &[P] {
        match &self.repr {
            Repr::Empty => &[],
            Repr::One { pid, .. } => std::slice::from_ref(pid),
            Repr::Small(s) => s.snapshot(),
            Repr::Big(b) => b.snapshot(),
        }
    }

    /// The copies in `part` except those of `exclude`, newest first, as
    /// [`Members`]: the group's own snapshot ([`shared_members`](Self::shared_members),
    /// nothing copied) when that is every copy (`part` holds the whole
    /// group, as it does for a group whose members are all on this node or
    /// all on others, and `exclude` is not in it); else a list of their own.
    pub fn part_members(&self, part: Part, exclude: Option<&P>) -> Members<P> {
        let whole = match part {
            Part::All => true,
            Part::Local => self.local_count() == self.len(),
            Part::Remote => self.remote_count() == self.len(),
        };
        if whole && exclude.is_none_or(|p| self.count_of(p) == 0) {
            self.shared_members()
        } else {
            Members::from(self.members(part, exclude))
        }
    }

    /// The copies in `part` except those of `exclude`, newest first, as a
    /// vector (cpg's `[P || P <- L, P =/= Exclude]`).
    pub fn members(&self, part: Part, exclude: Option<&P>) -> Vec<P> {
        let mut v = Vec::with_capacity(self.count_excluding(part, exclude));
        // `for_each`, not `extend`: one loop over the slots (see
        // `Positions::rfold`).
        self.iter(part)
            .filter(|p| Some(*p) != exclude)
            .for_each(|p| v.push(p.clone()));
        v
    }

    /// Checks the internal invariants (tests).
    #[cfg(test)]
    fn check(&self) {
        match &self.repr {
            Repr::Small(s) => s.check(),
            Repr::Big(b) => {
                assert!(b.len() > SMALL_BACK);
                b.check();
            }
            _ => {}
        }
    }

    /// Slots held, holes included (tests of compaction).
    #[cfg(test)]
    fn slot_count(&self) -> usize {
        match &self.repr {
            Repr::Big(b) => b.slots.len(),
            _ => self.len(),
        }
    }

    /// The `i`-th copy of `part`, newest first (`i == 0` is the newest), in
    /// `O(log n)`.
    pub fn nth(&self, part: Part, i: usize) -> Option<&P> {
        match &self.repr {
            Repr::Empty => None,
            Repr::One { pid, is_local } => (i == 0 && part.includes(*is_local)).then_some(pid),
            Repr::Small(s) => s.nth(part, i),
            Repr::Big(b) => b.nth(part, i),
        }
    }

    /// Number of copies in `part` that are not copies of `exclude`.
    pub fn count_excluding(&self, part: Part, exclude: Option<&P>) -> usize {
        match (&self.repr, exclude) {
            (Repr::Big(b), _) => b.count_excluding(part, exclude),
            (_, None) => self.count(part),
            _ => self.iter(part).filter(|p| Some(*p) != exclude).count(),
        }
    }

    /// The `i`-th copy of `part` that is not a copy of `exclude`, newest
    /// first. `O((1 + copies of exclude) * log n)`.
    pub fn nth_excluding(&self, part: Part, i: usize, exclude: Option<&P>) -> Option<&P> {
        match (&self.repr, exclude) {
            (Repr::Big(b), _) => b.nth_excluding(part, i, exclude),
            (_, None) => self.nth(part, i),
            _ => self.iter(part).filter(|p| Some(*p) != exclude).nth(i),
        }
    }

    /// How many of the copies of `part` newer than the `i`-th (newest
    /// first) are copies of `exclude`, and whether the `i`-th is one.
    pub fn excluded_before(&self, part: Part, i: usize, exclude: &P) -> (usize, bool) {
        match &self.repr {
            Repr::Big(b) => b
                .excluded(part, Some(exclude))
                .map_or((0, false), |v| b.excluded_before(part, i, v)),
            _ => {
                let mut before = 0;
                for (rank, p) in self.iter(part).enumerate() {
                    if rank == i {
                        return (before, p == exclude);
                    }
                    before += usize::from(p == exclude);
                }
                (before, false)
            }
        }
    }

    /// The newest copy of `part` that is not `exclude`.
    pub fn newest(&self, part: Part, exclude: Option<&P>) -> Option<&P> {
        self.nth_excluding(part, 0, exclude)
    }

    /// The oldest copy of `part` that is not `exclude`.
    pub fn oldest(&self, part: Part, exclude: Option<&P>) -> Option<&P> {
        match self.count_excluding(part, exclude) {
            0 => None,
            n => self.nth_excluding(part, n - 1, exclude),
        }
    }

    /// A plain `#cpg_data{}` copy of this group.
    pub fn to_data(&self) -> CpgData<P> {
        CpgData {
            local_count: self.local_count(),
            local: self.local().cloned().collect(),
            remote_count: self.remote_count(),
            remote: self.remote().cloned().collect(),
            history: self.history().cloned().collect(),
        }
    }
}
