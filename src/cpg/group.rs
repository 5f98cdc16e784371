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
//! * every copy (one join) gets a slot in a vector ordered oldest to newest;
//!   removed copies leave a hole that is swept away by an occasional
//!   compaction (when holes outnumber live copies);
//! * a Fenwick tree over the slots, counting local and remote copies apart,
//!   gives the i-th local / remote / any copy in `O(log n)`;
//! * per pid, the slots of its copies in ascending order, so leaving from the
//!   oldest end (`leave`) or from the newest end (exchange merge) touches only
//!   that pid's copies.
//!
//! [`GroupData::to_data`] gives back the exact `#cpg_data{}` lists as a
//! [`CpgData`].

use crate::util::FastHashMap;
use std::collections::VecDeque;
use std::hash::Hash;
use std::sync::{Arc, OnceLock};

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

/// Fenwick (binary indexed) tree over the slots, with two counters per
/// position: `[local, remote]`. Node `i` (1-based) is stored at `t[i - 1]`.
/// Counters are `u32` (8 bytes a slot): a group would need billions of
/// copies, hundreds of gigabytes of slots, to overflow one.
#[derive(Debug, Clone, Default)]
struct Fenwick {
    t: Vec<[u32; 2]>,
}

fn wide(c: [u32; 2]) -> [usize; 2] {
    [c[0] as usize, c[1] as usize]
}

fn lowbit(i: usize) -> usize {
    i & i.wrapping_neg()
}

fn weight(c: [usize; 2], part: Part) -> usize {
    match part {
        Part::All => c[0] + c[1],
        Part::Local => c[0],
        Part::Remote => c[1],
    }
}

impl Fenwick {
    /// Sums of the first `i` positions.
    fn prefix2(&self, mut i: usize) -> [usize; 2] {
        let mut s = [0, 0];
        while i > 0 {
            let node = self.t[i - 1];
            s[0] += node[0] as usize;
            s[1] += node[1] as usize;
            i &= i - 1;
        }
        s
    }

    /// Number of `part` elements among the first `i` positions.
    fn prefix(&self, i: usize, part: Part) -> usize {
        weight(self.prefix2(i), part)
    }

    /// Appends a position holding one element (local or remote).
    fn push(&mut self, is_local: bool) {
        let i = self.t.len() + 1;
        let lo = self.prefix2(i - lowbit(i));
        let hi = self.prefix2(i - 1);
        let mut node = [(hi[0] - lo[0]) as u32, (hi[1] - lo[1]) as u32];
        node[usize::from(!is_local)] += 1;
        if self.t.len() == self.t.capacity() && self.t.len() < 4 {
            self.t.reserve_exact(1);
        }
        self.t.push(node);
    }

    /// Removes the element at 0-based position `pos`.
    fn remove(&mut self, pos: usize, is_local: bool) {
        let c = usize::from(!is_local);
        let mut i = pos + 1;
        while i <= self.t.len() {
            self.t[i - 1][c] -= 1;
            i += lowbit(i);
        }
    }

    /// 0-based position of the `k`-th (0-based, oldest first) `part`
    /// element. Requires `k < total(part)`.
    fn select(&self, k: usize, part: Part) -> usize {
        let n = self.t.len();
        let mut pos = 0;
        let mut rem = k;
        let mut step = if n == 0 {
            0
        } else {
            1 << (usize::BITS - 1 - n.leading_zeros())
        };
        while step > 0 {
            let next = pos + step;
            if next <= n {
                let w = weight(wide(self.t[next - 1]), part);
                if w <= rem {
                    pos = next;
                    rem -= w;
                }
            }
            step >>= 1;
        }
        pos
    }

    /// Rebuilds the tree from per-position counters in `O(n)`.
    fn rebuild(&mut self, values: impl Iterator<Item = [usize; 2]>) {
        self.t.clear();
        self.t.extend(values.map(|v| [v[0] as u32, v[1] as u32]));
        let n = self.t.len();
        for i in 1..=n {
            let j = i + lowbit(i);
            if j <= n {
                let v = self.t[i - 1];
                self.t[j - 1][0] += v[0];
                self.t[j - 1][1] += v[1];
            }
        }
    }
}

/// Ascending slot positions of one pid's copies; one copy (the usual case)
/// is kept inline.
#[derive(Debug, Clone)]
enum SlotList {
    One(usize),
    /// Boxed: most pids have one copy, and the list stays 16 bytes.
    #[allow(clippy::box_collection)] // deliberate: keeps the enum small
    Many(Box<VecDeque<usize>>),
}

impl SlotList {
    fn len(&self) -> usize {
        match self {
            SlotList::One(_) => 1,
            SlotList::Many(v) => v.len(),
        }
    }

    fn push_back(&mut self, pos: usize) {
        match self {
            SlotList::One(first) => *self = SlotList::Many(Box::new(VecDeque::from([*first, pos]))),
            SlotList::Many(v) => v.push_back(pos),
        }
    }

    /// Removes the oldest (`oldest`) or newest position. `None` when this
    /// was the last one (the list must then be dropped).
    fn pop(&mut self, oldest: bool) -> Option<usize> {
        match self {
            SlotList::One(pos) => Some(*pos),
            SlotList::Many(v) if oldest => v.pop_front(),
            SlotList::Many(v) => v.pop_back(),
        }
    }

    /// Positions, newest first.
    fn iter_newest(&self) -> impl Iterator<Item = usize> + '_ {
        let (one, many) = match self {
            SlotList::One(pos) => (Some(*pos), None),
            SlotList::Many(v) => (None, Some(v.iter().rev().copied())),
        };
        one.into_iter().chain(many.into_iter().flatten())
    }

    fn remap(&mut self, remap: &[usize]) {
        match self {
            SlotList::One(pos) => *pos = remap[*pos],
            SlotList::Many(v) => v.iter_mut().for_each(|pos| *pos = remap[*pos]),
        }
    }
}

#[derive(Debug, Clone)]
struct Slot<P> {
    pid: P,
    is_local: bool,
}

/// The copies one pid has in one group (never empty). The pid's side
/// (local or remote) is not kept here: it is in each of its slots ([`side`]),
/// so an entry of a group's pid map is 32 bytes for a `MemberPid`.
#[derive(Debug, Clone)]
struct Copies {
    /// Slot positions, ascending (oldest first).
    slots: SlotList,
}

/// Whether the pid whose copies are `c` is local, read from its newest slot.
fn side<P>(slots: &[Option<Slot<P>>], c: &Copies) -> bool {
    c.slots
        .iter_newest()
        .next()
        .and_then(|pos| slots[pos].as_ref())
        .is_some_and(|s| s.is_local)
}

/// Most distinct pids a [`PidMap`] keeps in a vector before it moves them
/// to a hash map.
const FEW_PIDS: usize = 8;

/// The copies of each pid of a group. Most groups have a few distinct
/// pids: those sit in a vector searched linearly (a hash map allocates room
/// for several entries and its control bytes even for one); a larger group
/// gets a hash map.
#[derive(Debug, Clone)]
enum PidMap<P> {
    Few(Vec<(P, Copies)>),
    /// Boxed: a group of one pid pays for a pointer, not a whole map.
    #[allow(clippy::box_collection)] // deliberate: keeps the enum small
    Many(Box<FastHashMap<P, Copies>>),
}

impl<P: Eq + Hash> PidMap<P> {
    fn get(&self, pid: &P) -> Option<&Copies> {
        match self {
            PidMap::Few(v) => v.iter().find(|(p, _)| p == pid).map(|(_, c)| c),
            PidMap::Many(m) => m.get(pid),
        }
    }

    fn get_mut(&mut self, pid: &P) -> Option<&mut Copies> {
        match self {
            PidMap::Few(v) => v.iter_mut().find(|(p, _)| p == pid).map(|(_, c)| c),
            PidMap::Many(m) => m.get_mut(pid),
        }
    }

    /// Inserts a pid that has no entry yet.
    fn insert_new(&mut self, pid: P, c: Copies) {
        match self {
            PidMap::Few(v) if v.len() < FEW_PIDS => {
                v.reserve_exact(1);
                v.push((pid, c));
            }
            PidMap::Few(v) => {
                let mut m: FastHashMap<P, Copies> = std::mem::take(v).into_iter().collect();
                m.insert(pid, c);
                *self = PidMap::Many(Box::new(m));
            }
            PidMap::Many(m) => {
                m.insert(pid, c);
            }
        }
    }

    fn remove(&mut self, pid: &P) {
        match self {
            PidMap::Few(v) => {
                if let Some(i) = v.iter().position(|(p, _)| p == pid) {
                    v.swap_remove(i);
                }
            }
            PidMap::Many(m) => {
                m.remove(pid);
                crate::util::shrink_sparse(&mut **m);
            }
        }
    }

    fn len(&self) -> usize {
        match self {
            PidMap::Few(v) => v.len(),
            PidMap::Many(m) => m.len(),
        }
    }

    fn keys(&self) -> impl Iterator<Item = &P> + '_ {
        let (few, many) = match self {
            PidMap::Few(v) => (Some(v.iter().map(|(p, _)| p)), None),
            PidMap::Many(m) => (None, Some(m.keys())),
        };
        few.into_iter().flatten().chain(many.into_iter().flatten())
    }

    fn values_mut(&mut self) -> impl Iterator<Item = &mut Copies> + '_ {
        let (few, many) = match self {
            PidMap::Few(v) => (Some(v.iter_mut().map(|(_, c)| c)), None),
            PidMap::Many(m) => (None, Some(m.values_mut())),
        };
        few.into_iter().flatten().chain(many.into_iter().flatten())
    }
}

/// Compaction happens when holes exceed both this and the live copies.
const COMPACT_MIN_HOLES: usize = 64;

/// A group of two copies or more: slots, Fenwick tree, per-pid copies (see
/// the module docs). [`GroupData`] wraps it, and keeps the usual group of
/// one copy inline instead.
#[derive(Debug, Clone)]
struct Big<P> {
    /// Oldest first; `None` = removed copy not yet compacted away.
    slots: Vec<Option<Slot<P>>>,
    tree: Fenwick,
    copies: PidMap<P>,
    local_count: usize,
    remote_count: usize,
    /// Every copy, newest first, built on the first read after a change and
    /// handed out shared ([`GroupData::shared_members`]): as BEAM returns
    /// the list it holds, a read of a group that did not change copies
    /// nothing. Dropped by every change.
    shared: OnceLock<Arc<[P]>>,
}

impl<P: Clone + Eq + Hash> Big<P> {
    /// Room for `n` copies of up to `n` distinct pids, allocated once.
    fn with_capacity(n: usize) -> Self {
        let mut b = Big::new();
        b.slots.reserve_exact(n);
        b.tree.t.reserve_exact(n);
        b.copies = if n > FEW_PIDS {
            let mut m = FastHashMap::default();
            m.reserve(n);
            PidMap::Many(Box::new(m))
        } else {
            PidMap::Few(Vec::with_capacity(n))
        };
        b
    }

    /// Gives back the room [`with_capacity`](Self::with_capacity) reserved
    /// and the copies did not use.
    fn shrink_to_fit(&mut self) {
        self.slots.shrink_to_fit();
        self.tree.t.shrink_to_fit();
        match &mut self.copies {
            PidMap::Few(v) => v.shrink_to_fit(),
            PidMap::Many(m) => m.shrink_to_fit(),
        }
    }

    fn new() -> Self {
        Big {
            slots: Vec::new(),
            tree: Fenwick::default(),
            copies: PidMap::Few(Vec::new()),
            local_count: 0,
            remote_count: 0,
            shared: OnceLock::new(),
        }
    }

    /// Number of copies (length of cpg's `history`).
    fn len(&self) -> usize {
        self.local_count + self.remote_count
    }

    /// Number of copies in `part`.
    fn count(&self, part: Part) -> usize {
        match part {
            Part::All => self.len(),
            Part::Local => self.local_count,
            Part::Remote => self.remote_count,
        }
    }

    /// Number of copies of `pid` (cpg's `count(Pid, History)`).
    fn count_of(&self, pid: &P) -> usize {
        self.copies.get(pid).map_or(0, |c| c.slots.len())
    }

    /// Number of distinct pids.
    fn distinct_pids(&self) -> usize {
        self.copies.len()
    }

    /// The distinct pids, in no particular order.
    fn pids(&self) -> impl Iterator<Item = &P> + '_ {
        self.copies.keys()
    }

    /// Adds `count` copies of `pid` at the newest end (cpg's `prepend`).
    /// `is_local` is only used when `pid` has no copy yet.
    fn join(&mut self, pid: P, is_local: bool, count: usize) {
        if count == 0 {
            return;
        }
        self.shared = OnceLock::new();
        let first = self.slots.len();
        let is_local = match self.copies.get_mut(&pid) {
            Some(c) => {
                let is_local = side(&self.slots, c);
                (first..first + count).for_each(|pos| c.slots.push_back(pos));
                is_local
            }
            None => {
                let mut slots = SlotList::One(first);
                (first + 1..first + count).for_each(|pos| slots.push_back(pos));
                self.copies.insert_new(pid.clone(), Copies { slots });
                is_local
            }
        };
        for _ in 1..count {
            self.push_slot(pid.clone(), is_local);
        }
        self.push_slot(pid, is_local);
        if is_local {
            self.local_count += count;
        } else {
            self.remote_count += count;
        }
    }

    /// The pid and side of the one live copy, when exactly one is left.
    fn only(&self) -> Option<(P, bool)> {
        if self.len() != 1 {
            return None;
        }
        self.slots
            .iter()
            .rev()
            .flatten()
            .next()
            .map(|s| (s.pid.clone(), s.is_local))
    }

    fn push_slot(&mut self, pid: P, is_local: bool) {
        // Small groups grow one slot at a time (a first push would
        // otherwise allocate four).
        if self.slots.len() == self.slots.capacity() && self.slots.len() < 4 {
            self.slots.reserve_exact(1);
        }
        self.slots.push(Some(Slot { pid, is_local }));
        self.tree.push(is_local);
    }

    fn take_copies(&mut self, pid: &P, count: usize, oldest: bool) -> usize {
        let Some(c) = self.copies.get_mut(pid) else {
            return 0;
        };
        let have = c.slots.len();
        let n = count.min(have);
        let is_local = side(&self.slots, c);
        if n > 0 {
            self.shared = OnceLock::new();
        }
        for _ in 0..n {
            let pos = c.slots.pop(oldest).expect("n <= len");
            self.slots[pos] = None;
            self.tree.remove(pos, is_local);
        }
        if n == have {
            self.copies.remove(pid);
        }
        if is_local {
            self.local_count -= n;
        } else {
            self.remote_count -= n;
        }
        self.maybe_compact();
        n
    }

    fn maybe_compact(&mut self) {
        let live = self.len();
        let holes = self.slots.len() - live;
        if holes <= COMPACT_MIN_HOLES || holes <= live {
            return;
        }
        let mut remap = vec![usize::MAX; self.slots.len()];
        let mut slots = Vec::with_capacity(live);
        for (i, s) in self.slots.drain(..).enumerate() {
            if s.is_some() {
                remap[i] = slots.len();
                slots.push(s);
            }
        }
        self.slots = slots;
        for c in self.copies.values_mut() {
            c.slots.remap(&remap);
        }
        self.tree.rebuild(self.slots.iter().map(|s| match s {
            Some(Slot { is_local: true, .. }) => [1, 0],
            _ => [0, 1],
        }));
    }

    /// The copies in `part`, newest first.
    fn iter(&self, part: Part) -> impl DoubleEndedIterator<Item = &P> + '_ {
        self.slots.iter().rev().filter_map(move |s| match s {
            Some(s) if part.includes(s.is_local) => Some(&s.pid),
            _ => None,
        })
    }

    /// Every copy, newest first, as one shared immutable snapshot: the
    /// first read after a change builds it (`O(n)`), later reads only count
    /// a reference (no copy, no allocation) until the group changes.
    fn shared_members(&self) -> Arc<[P]> {
        self.snapshot().clone()
    }

    /// The snapshot of every copy, newest first, built on first use.
    fn snapshot(&self) -> &Arc<[P]> {
        self.shared
            .get_or_init(|| self.iter(Part::All).cloned().collect())
    }

    /// The `i`-th copy of `part`, newest first (`i == 0` is the newest), in
    /// `O(log n)`.
    fn nth(&self, part: Part, i: usize) -> Option<&P> {
        let n = self.count(part);
        if i >= n {
            return None;
        }
        let pos = self.tree.select(n - 1 - i, part);
        self.slots[pos].as_ref().map(|s| &s.pid)
    }

    /// Number of copies in `part` that are not copies of `exclude`.
    fn count_excluding(&self, part: Part, exclude: Option<&P>) -> usize {
        let n = self.count(part);
        match exclude.and_then(|ex| self.copies.get(ex)) {
            Some(c) if part.includes(side(&self.slots, c)) => n - c.slots.len(),
            _ => n,
        }
    }

    /// The `i`-th copy of `part` that is not a copy of `exclude`, newest
    /// first. `O((1 + copies of exclude) * log n)`.
    fn nth_excluding(&self, part: Part, i: usize, exclude: Option<&P>) -> Option<&P> {
        let c = match exclude.and_then(|ex| self.copies.get(ex)) {
            Some(c) if part.includes(side(&self.slots, c)) => c,
            _ => return self.nth(part, i),
        };
        let n = self.count(part);
        let mut target = i;
        // Ranks (from newest) of the excluded copies, ascending.
        for pos in c.slots.iter_newest() {
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

/// Membership of one group (cpg's `#cpg_data{}`), with sub-linear updates.
///
/// "Newest first" everywhere, as in cpg: index 0 of [`nth`](Self::nth) is the
/// latest join. Local/remote is decided by the caller at join time
/// (`node(Pid) == node()` in cpg) and kept per pid.
///
/// Most groups hold one copy of one pid (a service registered under its
/// own name): such a group is kept inline, the pid and its side, with no
/// allocation (24 bytes for a `MemberPid`). The second copy moves the group
/// to the full representation; a group back to one copy moves back.
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
    /// Two copies or more (briefly fewer, inside a write).
    Big(Box<Big<P>>),
}

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
        if n <= 1 {
            return Self::new();
        }
        GroupData {
            repr: Repr::Big(Box::new(Big::with_capacity(n))),
        }
    }

    /// The one copy of a one-copy group and the full representation of a
    /// larger one (both `None` when empty).
    fn split(&self) -> (Option<(&P, bool)>, Option<&Big<P>>) {
        match &self.repr {
            Repr::Empty => (None, None),
            Repr::One { pid, is_local } => (Some((pid, *is_local)), None),
            Repr::Big(b) => (None, Some(b)),
        }
    }

    /// Number of copies (length of cpg's `history`).
    pub fn len(&self) -> usize {
        match &self.repr {
            Repr::Empty => 0,
            Repr::One { .. } => 1,
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
            Repr::Big(b) => b.count(part),
        }
    }

    /// Number of copies of `pid` (cpg's `count(Pid, History)`).
    pub fn count_of(&self, pid: &P) -> usize {
        match &self.repr {
            Repr::Empty => 0,
            Repr::One { pid: p, .. } => usize::from(p == pid),
            Repr::Big(b) => b.count_of(pid),
        }
    }

    /// Number of distinct pids.
    pub fn distinct_pids(&self) -> usize {
        match &self.repr {
            Repr::Empty => 0,
            Repr::One { .. } => 1,
            Repr::Big(b) => b.distinct_pids(),
        }
    }

    /// The distinct pids, in no particular order.
    pub fn pids(&self) -> impl Iterator<Item = &P> + '_ {
        let (one, big) = self.split();
        one.map(|(p, _)| p)
            .into_iter()
            .chain(big.into_iter().flat_map(Big::pids))
    }

    /// Adds `count` copies of `pid` at the newest end (cpg's `prepend`).
    /// `is_local` is only used when `pid` has no copy yet.
    pub fn join(&mut self, pid: P, is_local: bool, count: usize) {
        if count == 0 {
            return;
        }
        if count == 1 && matches!(self.repr, Repr::Empty) {
            self.repr = Repr::One { pid, is_local };
            return;
        }
        self.big().join(pid, is_local, count);
    }

    /// The full representation, made from the inline one if needed.
    fn big(&mut self) -> &mut Big<P> {
        if !matches!(self.repr, Repr::Big(_)) {
            let mut b = Box::new(Big::new());
            if let Repr::One { pid, is_local } = std::mem::replace(&mut self.repr, Repr::Empty) {
                b.join(pid, is_local, 1);
            }
            self.repr = Repr::Big(b);
        }
        match &mut self.repr {
            Repr::Big(b) => b,
            _ => unreachable!("just made"),
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
            Repr::Big(b) => {
                let n = b.take_copies(pid, count, oldest);
                self.settle();
                n
            }
        }
    }

    /// Back to the empty or inline form when at most one copy is left.
    fn settle(&mut self) {
        if let Repr::Big(b) = &self.repr {
            match b.len() {
                0 => self.repr = Repr::Empty,
                1 => {
                    let (pid, is_local) = b.only().expect("one copy");
                    self.repr = Repr::One { pid, is_local };
                }
                _ => {}
            }
        }
    }

    /// Gives back room reserved by [`with_capacity`](Self::with_capacity)
    /// and not used.
    pub fn shrink_to_fit(&mut self) {
        self.settle();
        if let Repr::Big(b) = &mut self.repr {
            b.shrink_to_fit();
        }
    }

    /// The copies in `part`, newest first.
    pub fn iter(&self, part: Part) -> impl DoubleEndedIterator<Item = &P> + '_ {
        let (one, big) = self.split();
        let one = one.filter(|(_, is_local)| part.includes(*is_local));
        one.map(|(p, _)| p)
            .into_iter()
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

    /// Every copy, newest first, as one shared immutable snapshot: for a
    /// larger group the first read after a change builds it (`O(n)`) and
    /// later reads only count a reference (no copy, no allocation) until
    /// the group changes; a group of one copy builds its one-element
    /// snapshot on each read (one small allocation, no cache to keep).
    pub fn shared_members(&self) -> Arc<[P]> {
        match &self.repr {
            Repr::Big(b) => b.shared_members(),
            _ => self.iter(Part::All).cloned().collect(),
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
            Repr::Big(b) => b.snapshot(),
        }
    }

    /// The copies in `part` except those of `exclude`, newest first, as a
    /// vector (cpg's `[P || P <- L, P =/= Exclude]`).
    pub fn members(&self, part: Part, exclude: Option<&P>) -> Vec<P> {
        let mut v = Vec::with_capacity(self.count_excluding(part, exclude));
        v.extend(self.iter(part).filter(|p| Some(*p) != exclude).cloned());
        v
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
            Repr::Big(b) => b.nth(part, i),
        }
    }

    /// Number of copies in `part` that are not copies of `exclude`.
    pub fn count_excluding(&self, part: Part, exclude: Option<&P>) -> usize {
        match &self.repr {
            Repr::Big(b) => b.count_excluding(part, exclude),
            _ => self.iter(part).filter(|p| Some(*p) != exclude).count(),
        }
    }

    /// The `i`-th copy of `part` that is not a copy of `exclude`, newest
    /// first. `O((1 + copies of exclude) * log n)`.
    pub fn nth_excluding(&self, part: Part, i: usize, exclude: Option<&P>) -> Option<&P> {
        match &self.repr {
            Repr::Big(b) => b.nth_excluding(part, i, exclude),
            _ => self.iter(part).filter(|p| Some(*p) != exclude).nth(i),
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

#[cfg(test)]
mod tests {
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

    /// Naive model: the cpg lists, newest first, exactly as cpg updates them.
    #[derive(Debug, Clone, Default)]
    struct Model {
        local: Vec<u8>,
        remote: Vec<u8>,
        history: Vec<u8>,
    }

    fn is_local(p: u8) -> bool {
        p % 2 == 0
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

    /// Up to 12 distinct pids: groups cross `FEW_PIDS` both ways.
    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => (0u8..12, 1usize..4).prop_map(|(p, n)| Op::Join(p, n)),
            3 => (0u8..12, 1usize..4).prop_map(|(p, n)| Op::Leave(p, n)),
            1 => (0u8..12).prop_map(Op::LeaveAll),
            2 => (0u8..12, 0usize..5).prop_map(|(p, n)| Op::Set(p, n)),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]
        #[test]
        fn matches_naive_lists(ops in proptest::collection::vec(op(), 0..300), picks in proptest::collection::vec(0usize..64, 8)) {
            let mut d: GroupData<u8> = GroupData::new();
            let mut m = Model::default();
            for o in ops {
                match o {
                    Op::Join(p, n) => { d.join(p, is_local(p), n); m.join(p, n); }
                    Op::Leave(p, n) => prop_assert_eq!(d.leave_oldest(&p, n), m.leave(p, n)),
                    Op::LeaveAll(p) => prop_assert_eq!(d.leave_all(&p), m.leave(p, usize::MAX)),
                    Op::Set(p, n) => prop_assert_eq!(d.set_count_newest(&p, is_local(p), n), m.set(p, n)),
                }
                let r = d.to_data();
                prop_assert_eq!(&r.history, &m.history);
                // The shared snapshot is never stale, and while nothing
                // changes it is handed out again, not rebuilt (a group of
                // one copy, kept inline, builds it on each read).
                let snap = d.shared_members();
                prop_assert_eq!(&snap[..], &m.history[..]);
                prop_assert_eq!(Arc::ptr_eq(&snap, &d.shared_members()), d.len() > 1);
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
                for ex in 0u8..8 {
                    let filtered: Vec<u8> = list.iter().copied().filter(|x| *x != ex).collect();
                    prop_assert_eq!(d.count_excluding(part, Some(&ex)), filtered.len());
                    prop_assert_eq!(d.members(part, Some(&ex)), filtered.clone());
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
    }
}
