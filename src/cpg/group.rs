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

use super::snapshot::{Members, Snapshot};
use hashbrown::HashTable;
use std::collections::VecDeque;
use std::hash::{BuildHasher, Hash};
use std::sync::Arc;

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

/// Slots per block of the [`Fenwick`] tree: one bit each in a `u64`.
const BLOCK: usize = 64;

/// 64 slots of a group: which hold a copy, which copies are local, and the
/// Fenwick node of the block.
#[derive(Debug, Clone, Copy, Default)]
struct Block {
    /// Bit `j`: slot `64 * b + j` of block `b` holds a copy.
    live: u64,
    /// Bit `j`: that copy is local (left as it was for a hole).
    local: u64,
    /// Fenwick node `b + 1`: `[local, remote]` copies of the blocks it
    /// covers.
    node: [u32; 2],
}

impl Block {
    /// The slots of the block that hold a copy in `part`.
    fn bits(&self, part: Part) -> u64 {
        match part {
            Part::All => self.live,
            Part::Local => self.live & self.local,
            Part::Remote => self.live & !self.local,
        }
    }
}

/// Which slots of a group hold a copy and on which side, and a Fenwick
/// (binary indexed) tree over blocks of [`BLOCK`] slots counting local and
/// remote copies apart: 24 bytes per 64 slots (3 bits a slot). Counting
/// and selection go down the tree to a block, then count bits within it.
/// Counters are `u32`: a group would need billions of copies, hundreds of
/// gigabytes of slots, to overflow one.
#[derive(Debug, Clone, Default)]
struct Fenwick {
    /// Node `i` (1-based) of the tree is `blocks[i - 1].node`.
    blocks: Vec<Block>,
    /// Number of slots (holes included).
    len: usize,
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

/// Bit position of the `k`-th (0-based) set bit of `w`; 64 if `w` has no
/// more than `k` set bits. Broadword: the running bit counts of the eight
/// bytes side by side in one word find the byte, a table the bit.
fn select_bit(w: u64, k: usize) -> usize {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    // bits set in each byte, then in bytes 0..=i (at most 64: 7 bits)
    let mut c = w - ((w >> 1) & 0x5555_5555_5555_5555);
    c = (c & 0x3333_3333_3333_3333) + ((c >> 2) & 0x3333_3333_3333_3333);
    c = (c + (c >> 4)) & 0x0f0f_0f0f_0f0f_0f0f;
    let running = c.wrapping_mul(ONES);
    if k >= (running >> 56) as usize {
        return 64;
    }
    // the bytes whose running count is at most k: those before the bit's
    let at_most = ((((k as u64) * ONES) | HIGH) - running) & HIGH;
    let byte = ((at_most >> 7).wrapping_mul(ONES) >> 56) as u32;
    let before = ((running << 8) >> (8 * byte)) & 0xff;
    let bits = (w >> (8 * byte)) & 0xff;
    8 * byte as usize + usize::from(SELECT_IN_BYTE[bits as usize][(k as u64 - before) as usize])
}

/// `SELECT_IN_BYTE[b][r]`: position of the `r`-th set bit of byte `b` (8
/// where there is none), for [`select_bit`].
static SELECT_IN_BYTE: [[u8; 8]; 256] = {
    let mut t = [[8u8; 8]; 256];
    let mut b = 0;
    while b < 256 {
        let mut r = 0;
        let mut j = 0;
        while j < 8 {
            if (b >> j) & 1 != 0 {
                t[b][r] = j as u8;
                r += 1;
            }
            j += 1;
        }
        b += 1;
    }
    t
};

/// The slots holding a copy in one part, oldest first (from both ends):
/// the set bits of the blocks, so holes cost nothing to skip.
struct Positions<'a> {
    blocks: &'a [Block],
    part: Part,
    /// Blocks `lo..hi` are not started yet.
    lo: usize,
    hi: usize,
    /// The block the front is in and its bits not yet taken.
    front: (usize, u64),
    /// The block the back is in and its bits not yet taken.
    back: (usize, u64),
}

impl<'a> Positions<'a> {
    fn new(blocks: &'a [Block], part: Part) -> Self {
        Positions {
            blocks,
            part,
            lo: 0,
            hi: blocks.len(),
            front: (0, 0),
            back: (0, 0),
        }
    }
}

/// Takes the lowest (`low`) or highest set bit of a block's bits; its slot.
fn take_bit((block, bits): &mut (usize, u64), low: bool) -> Option<usize> {
    if *bits == 0 {
        return None;
    }
    let j = if low {
        bits.trailing_zeros()
    } else {
        63 - bits.leading_zeros()
    };
    *bits &= !(1 << j);
    Some(*block * BLOCK + j as usize)
}

impl Positions<'_> {
    /// The next slot from the oldest end (`oldest`) or the newest.
    fn step(&mut self, oldest: bool) -> Option<usize> {
        loop {
            let (near, far) = if oldest {
                (&mut self.front, &mut self.back)
            } else {
                (&mut self.back, &mut self.front)
            };
            if let Some(pos) = take_bit(near, oldest) {
                return Some(pos);
            }
            if self.lo == self.hi {
                return take_bit(far, oldest);
            }
            let block = if oldest {
                self.lo += 1;
                self.lo - 1
            } else {
                self.hi -= 1;
                self.hi
            };
            *near = (block, self.blocks[block].bits(self.part));
        }
    }
}

impl Iterator for Positions<'_> {
    type Item = usize;

    fn next(&mut self) -> Option<usize> {
        self.step(true)
    }
}

impl DoubleEndedIterator for Positions<'_> {
    fn next_back(&mut self) -> Option<usize> {
        self.step(false)
    }

    /// The whole walk newest first (what collecting a group's members
    /// runs): a tight loop per block, none of `next_back`'s bookkeeping.
    fn rfold<B, F: FnMut(B, usize) -> B>(mut self, init: B, mut f: F) -> B {
        let mut acc = init;
        while let Some(pos) = take_bit(&mut self.back, false) {
            acc = f(acc, pos);
        }
        for block in (self.lo..self.hi).rev() {
            let base = block * BLOCK;
            let mut bits = self.blocks[block].bits(self.part);
            if bits == u64::MAX {
                for j in (0..BLOCK).rev() {
                    acc = f(acc, base + j);
                }
                continue;
            }
            while bits != 0 {
                let j = 63 - bits.leading_zeros();
                bits &= !(1 << j);
                acc = f(acc, base + j as usize);
            }
        }
        while let Some(pos) = take_bit(&mut self.front, false) {
            acc = f(acc, pos);
        }
        acc
    }
}

impl Fenwick {
    /// Room for `n` slots.
    fn with_capacity(n: usize) -> Self {
        Fenwick {
            blocks: Vec::with_capacity(n.div_ceil(BLOCK)),
            len: 0,
        }
    }

    /// Sums of the first `i` blocks.
    fn prefix2(&self, mut i: usize) -> [usize; 2] {
        let mut s = [0, 0];
        while i > 0 {
            let node = self.blocks[i - 1].node;
            s[0] += node[0] as usize;
            s[1] += node[1] as usize;
            i &= i - 1;
        }
        s
    }

    /// Whether slot `pos` holds a copy in `part`.
    fn has(&self, pos: usize, part: Part) -> bool {
        self.blocks
            .get(pos / BLOCK)
            .is_some_and(|b| (b.bits(part) >> (pos % BLOCK)) & 1 != 0)
    }

    /// Number of `part` copies among the first `i` slots.
    fn prefix(&self, i: usize, part: Part) -> usize {
        let (b, r) = (i / BLOCK, i % BLOCK);
        let mut n = weight(self.prefix2(b), part);
        if r > 0 {
            n += (self.blocks[b].bits(part) & ((1 << r) - 1)).count_ones() as usize;
        }
        n
    }

    /// Appends a slot holding one copy (local or remote).
    fn push(&mut self, is_local: bool) {
        let (b, r) = (self.len / BLOCK, self.len % BLOCK);
        if r == 0 {
            // The new node covers blocks (i - lowbit(i), i].
            let i = b + 1;
            let lo = self.prefix2(i - lowbit(i));
            let hi = self.prefix2(i - 1);
            let node = [(hi[0] - lo[0]) as u32, (hi[1] - lo[1]) as u32];
            make_room(&mut self.blocks);
            self.blocks.push(Block {
                node,
                ..Block::default()
            });
        }
        // The last block's node covers no later block.
        let block = &mut self.blocks[b];
        block.live |= 1 << r;
        block.local = (block.local & !(1 << r)) | (u64::from(is_local) << r);
        block.node[usize::from(!is_local)] += 1;
        self.len += 1;
    }

    /// Removes the copy at 0-based slot `pos`.
    fn remove(&mut self, pos: usize, is_local: bool) {
        let c = usize::from(!is_local);
        self.blocks[pos / BLOCK].live &= !(1 << (pos % BLOCK));
        let mut i = pos / BLOCK + 1;
        while i <= self.blocks.len() {
            self.blocks[i - 1].node[c] -= 1;
            i += lowbit(i);
        }
    }

    /// 0-based slot of the `k`-th (0-based, oldest first) `part` copy.
    /// Requires `k < total(part)`.
    fn select(&self, k: usize, part: Part) -> usize {
        let n = self.blocks.len();
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
                let w = weight(wide(self.blocks[next - 1].node), part);
                if w <= rem {
                    pos = next;
                    rem -= w;
                }
            }
            step >>= 1;
        }
        let bits = self.blocks.get(pos).map_or(0, |b| b.bits(part));
        pos * BLOCK + select_bit(bits, rem)
    }
}

/// Makes room for one more element: one at a time below four (a first
/// push would otherwise allocate four), then by a quarter of the length
/// (at least four) instead of doubling. The slots and the Fenwick tree of
/// a group then carry at most a quarter of their length unused (an eighth
/// on average) instead of up to as much again; a push stays amortized
/// `O(1)`: growing by a quarter moves each element about four times in
/// all.
fn make_room<T>(v: &mut Vec<T>) {
    let len = v.len();
    if len == v.capacity() {
        v.reserve_exact(if len < 4 { 1 } else { (len / 4).max(4) });
    }
}

/// Slot positions and [`PidIndex`] values are `u32`. A value with this bit
/// set names an entry of [`Big::multi`] (a pid with several copies);
/// without it, the value is the slot position of the pid's only copy. A
/// group is bounded to `MULTI` (2^31) slots, holes included: that many
/// slots would take over 30 GB.
const MULTI: u32 = 1 << 31;

/// The copies of the pids that have several copies in a group: ascending
/// slot positions (oldest first), never fewer than two.
type MultiLists = Vec<VecDeque<u32>>;

/// A slot position as stored. Panics at 2^31 slots ([`MULTI`]): a group
/// of over 30 GB, which no join reaches first (each copy is a slot).
fn pos32(pos: usize) -> u32 {
    assert!(
        pos < MULTI as usize,
        "a cpg group holds fewer than 2^31 slots"
    );
    pos as u32
}

/// What a [`PidIndex`] value is read through: a group's slots, which of
/// them hold a copy, and its `multi` lists.
struct View<'a, P> {
    slots: &'a [P],
    tree: &'a Fenwick,
    multi: &'a [VecDeque<u32>],
}

impl<P> Clone for View<'_, P> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<P> Copy for View<'_, P> {}

impl<'a, P> View<'a, P> {
    /// The live slot a value leads to (the only copy, or the oldest of
    /// several); `None` for a value that leads nowhere.
    fn pos(self, v: u32) -> Option<usize> {
        let pos = if v & MULTI == 0 {
            v
        } else {
            *self.multi.get((v & !MULTI) as usize)?.front()?
        } as usize;
        self.tree.has(pos, Part::All).then_some(pos)
    }

    /// The pid a value leads to.
    fn pid(self, v: u32) -> Option<&'a P> {
        self.pos(v).and_then(|pos| self.slots.get(pos))
    }
}

/// The [`View`] of a [`Big`], borrowing only the fields it reads.
macro_rules! view {
    ($big:expr) => {
        View {
            slots: &$big.slots,
            tree: &$big.tree,
            multi: &$big.multi,
        }
    };
}

/// Most distinct pids a [`PidIndex`] keeps in a vector before it moves
/// them to a hash table. 16: finding a pid among 16 is a scan of 16 `u32`s
/// and of the slots they lead to (a few cache lines), and a group of up
/// to 16 pids pays 4 bytes a pid where the table would cost a 40-byte box
/// and a 96-byte table (for 9 to 14 pids: 16 buckets and their control
/// bytes), so a group of 10 remote members takes 136 bytes less (measured
/// whole-node, `ingest_mem` of `scripts/bench.sh`).
const FEW_PIDS: usize = 16;

/// The hash table of a group's pids: values only (4 bytes each), the pid of
/// a value is read through the slots ([`View`]).
#[derive(Debug, Clone, Default)]
struct PidTable {
    table: HashTable<u32>,
    state: foldhash::quality::RandomState,
}

/// Per distinct pid of a group, one `u32` value that leads to its copies
/// (see [`MULTI`]). Most groups have a few distinct pids: those sit in a
/// vector searched linearly (a hash table allocates room for several
/// entries and its control bytes even for one); a larger group gets a hash
/// table. The pid itself is never stored here: it is read from the slots.
#[derive(Debug, Clone)]
enum PidIndex {
    Few(Vec<u32>),
    /// Boxed: a small group pays for a pointer, not a table and its seed.
    Many(Box<PidTable>),
}

impl PidIndex {
    /// The value of `pid`.
    fn get<P: Eq + Hash>(&self, r: View<'_, P>, pid: &P) -> Option<u32> {
        let is = |v: &u32| r.pid(*v) == Some(pid);
        match self {
            PidIndex::Few(v) => v.iter().copied().find(is),
            PidIndex::Many(t) => t.table.find(t.state.hash_one(pid), is).copied(),
        }
    }

    /// Adds the value `v` of a pid that has none yet; `v` already leads to
    /// its slot.
    fn insert_new<P: Eq + Hash>(&mut self, r: View<'_, P>, v: u32) {
        if let PidIndex::Few(few) = self {
            if few.len() < FEW_PIDS {
                few.reserve_exact(1);
                few.push(v);
                return;
            }
            let mut t = Box::<PidTable>::default();
            for old in std::mem::take(few) {
                t.insert(r, old);
            }
            *self = PidIndex::Many(t);
        }
        if let PidIndex::Many(t) = self {
            t.insert(r, v);
        }
    }

    /// Replaces the value `old` of `pid` by `new`.
    fn replace<P: Hash>(&mut self, pid: &P, old: u32, new: u32) {
        let found = match self {
            PidIndex::Few(v) => v.iter_mut().find(|v| **v == old),
            PidIndex::Many(t) => t.table.find_mut(t.state.hash_one(pid), |v| *v == old),
        };
        if let Some(v) = found {
            *v = new;
        }
    }

    /// Removes the value `old` of `pid`.
    fn remove<P: Hash>(&mut self, pid: &P, old: u32) {
        match self {
            PidIndex::Few(v) => {
                if let Some(i) = v.iter().position(|v| *v == old) {
                    v.swap_remove(i);
                }
            }
            PidIndex::Many(t) => {
                if let Ok(e) = t.table.find_entry(t.state.hash_one(pid), |v| *v == old) {
                    e.remove();
                }
            }
        }
    }

    /// Gives room back: all of it (`exact`), or that of a sparse table.
    fn shrink<P: Hash>(&mut self, r: View<'_, P>, exact: bool) {
        match self {
            PidIndex::Few(v) if exact => v.shrink_to_fit(),
            PidIndex::Few(_) => {}
            PidIndex::Many(t) => {
                let len = t.table.len();
                // a sparse table shrinks as the maps do
                // (`crate::util::shrink_sparse`)
                let keep = if exact {
                    len
                } else if let Some(room) = crate::util::sparse_room(len, t.table.capacity()) {
                    room
                } else {
                    return;
                };
                let state = &t.state;
                t.table.shrink_to(keep, |v| hash_value(state, r, *v));
            }
        }
    }

    fn len(&self) -> usize {
        match self {
            PidIndex::Few(v) => v.len(),
            PidIndex::Many(t) => t.table.len(),
        }
    }

    fn values(&self) -> impl Iterator<Item = u32> + '_ {
        let (few, many) = match self {
            PidIndex::Few(v) => (Some(v.iter()), None),
            PidIndex::Many(t) => (None, Some(t.table.iter())),
        };
        few.into_iter()
            .flatten()
            .chain(many.into_iter().flatten())
            .copied()
    }

    fn values_mut(&mut self) -> impl Iterator<Item = &mut u32> + '_ {
        let (few, many) = match self {
            PidIndex::Few(v) => (Some(v.iter_mut()), None),
            PidIndex::Many(t) => (None, Some(t.table.iter_mut())),
        };
        few.into_iter().flatten().chain(many.into_iter().flatten())
    }
}

/// The hash of the pid a value leads to (0 for one leading nowhere, which
/// the table never holds).
fn hash_value<P: Hash>(state: &foldhash::quality::RandomState, r: View<'_, P>, v: u32) -> u64 {
    r.pid(v).map_or(0, |pid| state.hash_one(pid))
}

impl PidTable {
    fn insert<P: Hash>(&mut self, r: View<'_, P>, v: u32) {
        let state = &self.state;
        let hash = hash_value(state, r, v);
        self.table
            .insert_unique(hash, v, |v| hash_value(state, r, *v));
    }
}

/// Compaction happens when holes exceed both this and the live copies.
const COMPACT_MIN_HOLES: usize = 64;

/// A group of two copies or more: slots, Fenwick tree, per-pid copies (see
/// the module docs). [`GroupData`] wraps it, and keeps the usual group of
/// one copy inline instead.
#[derive(Debug, Clone)]
struct Big<P> {
    /// The pid of each copy, oldest first; a removed copy (a hole, see
    /// [`Fenwick::has`]) keeps its pid until a compaction sweeps it away.
    slots: Vec<P>,
    /// Which slots hold a copy and on which side, and their counts.
    tree: Fenwick,
    /// Per distinct pid, where its copies are.
    index: PidIndex,
    /// The positions of the pids with several copies, in no order (an
    /// entry freed moves the last one into its place).
    multi: MultiLists,
    local_count: usize,
    remote_count: usize,
    /// Every copy, newest first, built on the first read after a change and
    /// handed out shared ([`GroupData::shared_members`]): as BEAM returns
    /// the list it holds, a read of a group that did not change copies
    /// nothing (each CPU counts its own copy, see [`Snapshot`]). Dropped
    /// by every change.
    shared: Snapshot<P>,
}

impl<P: Clone + Eq + Hash> Big<P> {
    /// Room for `n` copies of up to `n` distinct pids, allocated once.
    fn with_capacity(n: usize) -> Self {
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
    fn shrink_to_fit(&mut self) {
        self.slots.shrink_to_fit();
        self.tree.blocks.shrink_to_fit();
        self.multi.shrink_to_fit();
        self.index.shrink(view!(self), true);
    }

    fn new() -> Self {
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

    /// The index value of `pid`.
    fn value(&self, pid: &P) -> Option<u32> {
        self.index.get(view!(self), pid)
    }

    /// Whether the pid of value `v` is local.
    fn side(&self, v: u32) -> bool {
        view!(self)
            .pos(v)
            .is_some_and(|pos| self.tree.has(pos, Part::Local))
    }

    /// Number of copies behind value `v`.
    fn copies(&self, v: u32) -> usize {
        if v & MULTI == 0 {
            1
        } else {
            self.multi[(v & !MULTI) as usize].len()
        }
    }

    /// Slot positions behind value `v`, newest first.
    fn newest_first(&self, v: u32) -> impl Iterator<Item = usize> + '_ {
        let (one, many) = if v & MULTI == 0 {
            (Some(v as usize), None)
        } else {
            let list = &self.multi[(v & !MULTI) as usize];
            (None, Some(list.iter().rev().map(|&pos| pos as usize)))
        };
        one.into_iter().chain(many.into_iter().flatten())
    }

    /// Number of copies of `pid` (cpg's `count(Pid, History)`).
    fn count_of(&self, pid: &P) -> usize {
        self.value(pid).map_or(0, |v| self.copies(v))
    }

    /// Number of distinct pids.
    fn distinct_pids(&self) -> usize {
        self.index.len()
    }

    /// The distinct pids, in no particular order.
    fn pids(&self) -> impl Iterator<Item = &P> + '_ {
        self.index.values().filter_map(|v| view!(self).pid(v))
    }

    /// Adds `count` copies of `pid` at the newest end (cpg's `prepend`).
    /// `is_local` is only used when `pid` has no copy yet.
    fn join(&mut self, pid: P, is_local: bool, count: usize) {
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
    fn new_multi(&mut self, oldest: u32, first: u32, end: u32) -> u32 {
        let mut list = VecDeque::with_capacity(1 + (end - first) as usize);
        list.push_back(oldest);
        list.extend(first..end);
        self.multi.push(list);
        MULTI | pos32(self.multi.len() - 1)
    }

    /// Drops entry `i` of `multi`, no longer in the index: the last entry
    /// moves into its place and its index value follows.
    fn free_multi(&mut self, i: usize) {
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
    fn only(&self) -> Option<(P, bool)> {
        if self.len() != 1 {
            return None;
        }
        let pos = (0..self.slots.len())
            .rev()
            .find(|&pos| self.tree.has(pos, Part::All))?;
        Some((self.slots[pos].clone(), self.tree.has(pos, Part::Local)))
    }

    fn push_slot(&mut self, pid: P, is_local: bool) {
        make_room(&mut self.slots);
        self.slots.push(pid);
        self.tree.push(is_local);
    }

    /// Makes slot `pos` (a copy on side `is_local`) a hole.
    fn clear_slot(&mut self, pos: u32, is_local: bool) {
        self.tree.remove(pos as usize, is_local);
    }

    fn take_copies(&mut self, pid: &P, count: usize, oldest: bool) -> usize {
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

    fn maybe_compact(&mut self) {
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
    fn iter(&self, part: Part) -> impl DoubleEndedIterator<Item = &P> + '_ {
        Positions::new(&self.tree.blocks, part)
            .rev()
            .map(|pos| &self.slots[pos])
    }

    /// Every copy, newest first, as one shared immutable snapshot: the
    /// first read after a change builds it (`O(n)`), later reads only count
    /// a reference (no copy, no allocation) until the group changes; the
    /// first read on each other CPU copies it once (see [`Snapshot`]).
    fn shared_members(&self) -> Arc<[P]> {
        self.shared.handout(|| self.build_snapshot())
    }

    /// The snapshot of every copy, newest first, built on first use.
    fn snapshot(&self) -> &Arc<[P]> {
        self.shared.get(|| self.build_snapshot())
    }

    /// Every copy, newest first, as a new list.
    fn build_snapshot(&self) -> Arc<[P]> {
        // `for_each` walks the slots in one loop (`Positions::rfold`);
        // `collect` would step through `next` per copy.
        let mut v = Vec::with_capacity(self.len());
        self.iter(Part::All).for_each(|p| v.push(p.clone()));
        v.into()
    }

    /// The `i`-th copy of `part`, newest first (`i == 0` is the newest), in
    /// `O(log n)`.
    fn nth(&self, part: Part, i: usize) -> Option<&P> {
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
    fn check(&self) {
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
    fn excluded(&self, part: Part, exclude: Option<&P>) -> Option<u32> {
        exclude
            .and_then(|ex| self.value(ex))
            .filter(|&v| part.includes(self.side(v)))
    }

    /// Number of copies in `part` that are not copies of `exclude`.
    fn count_excluding(&self, part: Part, exclude: Option<&P>) -> usize {
        let n = self.count(part);
        self.excluded(part, exclude)
            .map_or(n, |v| n - self.copies(v))
    }

    /// The `i`-th copy of `part` that is not a copy of `exclude`, newest
    /// first. `O((1 + copies of exclude) * log n)`.
    fn nth_excluding(&self, part: Part, i: usize, exclude: Option<&P>) -> Option<&P> {
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

/// Most copies a group keeps in its small form ([`Small`]); a join past
/// it moves the group to [`Big`].
const SMALL_MAX: usize = 16;

/// A [`Big`] group left with at most this many copies moves back to the
/// small form (half of [`SMALL_MAX`]: a group going up and down around
/// the limit does not move at each join and leave).
const SMALL_BACK: usize = SMALL_MAX / 2;

/// A group of 2 to [`SMALL_MAX`] copies: the copies' pids oldest first,
/// without holes, and one bit a copy for its side. Every operation is a
/// scan of at most 16 slots (a few cache lines), and the group costs its
/// slots and 48 bytes (80 before its snapshot was boxed on first read),
/// where a [`Big`] adds a Fenwick block, the pid index and its own 136
/// bytes (168): a group of 10 members took 152 bytes less (whole-node
/// memory after the ingest of 10k groups × 10 remote members, `ingest_mem`
/// of `scripts/bench.sh`: 73.6 → 58.4 bytes a membership).
#[derive(Debug, Clone)]
struct Small<P> {
    /// The pid of each copy, oldest first (no holes).
    slots: Vec<P>,
    /// Bit `i`: copy `i` is local.
    local: u32,
    /// Every copy, newest first, built on the first read after a change
    /// (as [`Big::shared`]).
    shared: Snapshot<P>,
}

impl<P: Clone + Eq + Hash> Small<P> {
    /// Room for `n` copies (at most [`SMALL_MAX`]).
    fn with_capacity(n: usize) -> Self {
        Small {
            slots: Vec::with_capacity(n),
            local: 0,
            shared: Snapshot::default(),
        }
    }

    fn len(&self) -> usize {
        self.slots.len()
    }

    /// Which copies are in `part`, a bit each.
    #[inline]
    fn bits(&self, part: Part) -> u32 {
        let all = (1u32 << self.slots.len()) - 1;
        match part {
            Part::All => all,
            Part::Local => self.local,
            Part::Remote => all & !self.local,
        }
    }

    #[inline]
    fn count(&self, part: Part) -> usize {
        // a group of one side skips the bit count (a dozen instructions
        // where the CPU's popcnt is not enabled)
        match self.bits(part) {
            0 => 0,
            b if b == self.bits(Part::All) => self.slots.len(),
            b => b.count_ones() as usize,
        }
    }

    /// Position of a copy of `pid`, if it has one.
    fn position(&self, pid: &P) -> Option<usize> {
        self.slots.iter().position(|p| p == pid)
    }

    fn count_of(&self, pid: &P) -> usize {
        self.slots.iter().filter(|p| *p == pid).count()
    }

    /// The distinct pids, each once (at its oldest copy).
    fn pids(&self) -> impl Iterator<Item = &P> + '_ {
        self.slots
            .iter()
            .enumerate()
            .filter(|&(i, p)| !self.slots[..i].contains(p))
            .map(|(_, p)| p)
    }

    /// Whether `count` more copies fit.
    fn fits(&self, count: usize) -> bool {
        count <= SMALL_MAX - self.slots.len()
    }

    /// Adds `count` copies of `pid` at the newest end; they must fit
    /// ([`fits`](Self::fits)). `is_local` is only used when `pid` has no
    /// copy yet.
    fn join(&mut self, pid: P, is_local: bool, count: usize) {
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
    fn take_copies(&mut self, pid: &P, count: usize, oldest: bool) -> usize {
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
    fn shared_members(&self) -> Arc<[P]> {
        self.shared.handout(|| self.build_snapshot())
    }

    fn snapshot(&self) -> &Arc<[P]> {
        self.shared.get(|| self.build_snapshot())
    }

    fn build_snapshot(&self) -> Arc<[P]> {
        self.slots.iter().rev().cloned().collect()
    }

    /// The copies in `part`, newest first.
    fn iter(&self, part: Part) -> impl DoubleEndedIterator<Item = &P> + '_ {
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
    fn nth(&self, part: Part, i: usize) -> Option<&P> {
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
    fn to_big(&self, extra: usize) -> Big<P> {
        let mut b = Big::with_capacity(self.slots.len() + extra);
        for (i, p) in self.slots.iter().enumerate() {
            b.join(p.clone(), self.local >> i & 1 != 0, 1);
        }
        b
    }

    /// A [`Big`] group of at most [`SMALL_MAX`] copies, small.
    fn from_big(b: &Big<P>) -> Self {
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
    fn check(&self) {
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
            want.extend(std::iter::repeat(i).take(first - left));
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

    #[test]
    fn select_bit_finds_each_set_bit() {
        let w: u64 = 0x8000_0100_00f0_0001;
        let set: Vec<usize> = (0..64).filter(|b| (w >> b) & 1 != 0).collect();
        for (k, b) in set.iter().enumerate() {
            assert_eq!(select_bit(w, k), *b);
        }
        assert_eq!(select_bit(w, set.len()), 64);
        assert_eq!(select_bit(0, 0), 64);
        assert_eq!(select_bit(u64::MAX, 63), 63);
    }

    proptest! {
        /// The tree over blocks against plain per-slot flags: counts and
        /// selection of every part, across block boundaries.
        #[test]
        fn fenwick_matches_flags(sides in proptest::collection::vec(any::<bool>(), 1..400), holes in proptest::collection::vec(any::<prop::sample::Index>(), 0..300)) {
            let mut t = Fenwick::default();
            // per slot: None = hole, Some(is_local)
            let mut flags: Vec<Option<bool>> = Vec::new();
            for &l in &sides {
                t.push(l);
                flags.push(Some(l));
            }
            for h in holes {
                let pos = h.index(flags.len());
                if let Some(l) = flags[pos].take() {
                    t.remove(pos, l);
                }
            }
            for part in [Part::All, Part::Local, Part::Remote] {
                let mut k = 0;
                for (pos, f) in flags.iter().enumerate() {
                    prop_assert_eq!(t.prefix(pos, part), k);
                    let here = f.is_some_and(|l| part.includes(l));
                    prop_assert_eq!(t.has(pos, part), here);
                    if here {
                        prop_assert_eq!(t.select(k, part), pos);
                        k += 1;
                    }
                }
                prop_assert_eq!(t.prefix(flags.len(), part), k);
                // from both ends, alternating, they meet without a gap
                let want: Vec<usize> = (0..flags.len()).filter(|&pos| t.has(pos, part)).collect();
                let mut it = Positions::new(&t.blocks, part);
                let (mut front, mut back) = (Vec::new(), Vec::new());
                for i in 0.. {
                    let got = if i % 3 == 0 {
                        it.next_back().map(|p| back.push(p))
                    } else {
                        it.next().map(|p| front.push(p))
                    };
                    if got.is_none() {
                        break;
                    }
                }
                prop_assert!(it.next().is_none() && it.next_back().is_none());
                let mut folded: Vec<usize> = Positions::new(&t.blocks, part).rev().collect();
                folded.reverse();
                prop_assert_eq!(&folded, &want);
                // and after a few steps from each end
                let mut it = Positions::new(&t.blocks, part);
                let head: Vec<usize> = it.by_ref().take(3).collect();
                let tail: Vec<usize> = it.by_ref().rev().take(70).collect();
                let mut all = head;
                let rest = it.rfold(Vec::new(), |mut v, p| {
                    v.push(p);
                    v
                });
                all.extend(rest.into_iter().rev());
                all.extend(tail.into_iter().rev());
                prop_assert_eq!(&all, &want);
                front.extend(back.into_iter().rev());
                prop_assert_eq!(front, want);
            }
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
}
