//! Per distinct pid of a large group, where its copies are: one `u32` a
//! pid, in a vector or a hash table, the pid itself read from the slots.

use super::fenwick::Fenwick;
use super::Part;
use hashbrown::HashTable;
use std::collections::VecDeque;
use std::hash::{BuildHasher, Hash};

/// Slot positions and [`PidIndex`] values are `u32`. A value with this bit
/// set names an entry of [`Big::multi`](super::big::Big::multi) (a pid with several copies);
/// without it, the value is the slot position of the pid's only copy. A
/// group is bounded to `MULTI` (2^31) slots, holes included: that many
/// slots would take over 30 GB.
pub(super) const MULTI: u32 = 1 << 31;

/// The copies of the pids that have several copies in a group: ascending
/// slot positions (oldest first), never fewer than two.
pub(super) type MultiLists = Vec<VecDeque<u32>>;

/// A slot position as stored. Panics at 2^31 slots ([`MULTI`]): a group
/// of over 30 GB, which no join reaches first (each copy is a slot).
pub(super) fn pos32(pos: usize) -> u32 {
    assert!(
        pos < MULTI as usize,
        "a cpg group holds fewer than 2^31 slots"
    );
    pos as u32
}

/// What a [`PidIndex`] value is read through: a group's slots, which of
/// them hold a copy, and its `multi` lists.
pub(super) struct View<'a, P> {
    pub(super) slots: &'a [P],
    pub(super) tree: &'a Fenwick,
    pub(super) multi: &'a [VecDeque<u32>],
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
    pub(super) fn pos(self, v: u32) -> Option<usize> {
        let pos = if v & MULTI == 0 {
            v
        } else {
            *self.multi.get((v & !MULTI) as usize)?.front()?
        } as usize;
        self.tree.has(pos, Part::All).then_some(pos)
    }

    /// The pid a value leads to.
    pub(super) fn pid(self, v: u32) -> Option<&'a P> {
        self.pos(v).and_then(|pos| self.slots.get(pos))
    }
}

/// The [`View`] of a [`Big`](super::big::Big), borrowing only the fields it reads.
macro_rules! view {
    ($big:expr) => {
        View {
            slots: &$big.slots,
            tree: &$big.tree,
            multi: &$big.multi,
        }
    };
}
pub(super) use view;

/// Most distinct pids a [`PidIndex`] keeps in a vector before it moves
/// them to a hash table. 16: finding a pid among 16 is a scan of 16 `u32`s
/// and of the slots they lead to (a few cache lines), and a group of up
/// to 16 pids pays 4 bytes a pid where the table would cost a 40-byte box
/// and a 96-byte table (for 9 to 14 pids: 16 buckets and their control
/// bytes), so a group of 10 remote members takes 136 bytes less (measured
/// whole-node, `ingest_mem` of `scripts/bench.sh`).
pub(super) const FEW_PIDS: usize = 16;

/// The hash table of a group's pids: values only (4 bytes each), the pid of
/// a value is read through the slots ([`View`]).
#[derive(Debug, Clone, Default)]
pub(super) struct PidTable {
    pub(super) table: HashTable<u32>,
    pub(super) state: foldhash::quality::RandomState,
}

/// Per distinct pid of a group, one `u32` value that leads to its copies
/// (see [`MULTI`]). Most groups have a few distinct pids: those sit in a
/// vector searched linearly (a hash table allocates room for several
/// entries and its control bytes even for one); a larger group gets a hash
/// table. The pid itself is never stored here: it is read from the slots.
#[derive(Debug, Clone)]
pub(super) enum PidIndex {
    Few(Vec<u32>),
    /// Boxed: a small group pays for a pointer, not a table and its seed.
    Many(Box<PidTable>),
}

impl PidIndex {
    /// The value of `pid`.
    pub(super) fn get<P: Eq + Hash>(&self, r: View<'_, P>, pid: &P) -> Option<u32> {
        let is = |v: &u32| r.pid(*v) == Some(pid);
        match self {
            PidIndex::Few(v) => v.iter().copied().find(is),
            PidIndex::Many(t) => t.table.find(t.state.hash_one(pid), is).copied(),
        }
    }

    /// Adds the value `v` of a pid that has none yet; `v` already leads to
    /// its slot.
    pub(super) fn insert_new<P: Eq + Hash>(&mut self, r: View<'_, P>, v: u32) {
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
    pub(super) fn replace<P: Hash>(&mut self, pid: &P, old: u32, new: u32) {
        let found = match self {
            PidIndex::Few(v) => v.iter_mut().find(|v| **v == old),
            PidIndex::Many(t) => t.table.find_mut(t.state.hash_one(pid), |v| *v == old),
        };
        if let Some(v) = found {
            *v = new;
        }
    }

    /// Removes the value `old` of `pid`.
    pub(super) fn remove<P: Hash>(&mut self, pid: &P, old: u32) {
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
    pub(super) fn shrink<P: Hash>(&mut self, r: View<'_, P>, exact: bool) {
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

    pub(super) fn len(&self) -> usize {
        match self {
            PidIndex::Few(v) => v.len(),
            PidIndex::Many(t) => t.table.len(),
        }
    }

    pub(super) fn values(&self) -> impl Iterator<Item = u32> + '_ {
        let (few, many) = match self {
            PidIndex::Few(v) => (Some(v.iter()), None),
            PidIndex::Many(t) => (None, Some(t.table.iter())),
        };
        few.into_iter()
            .flatten()
            .chain(many.into_iter().flatten())
            .copied()
    }

    pub(super) fn values_mut(&mut self) -> impl Iterator<Item = &mut u32> + '_ {
        let (few, many) = match self {
            PidIndex::Few(v) => (Some(v.iter_mut()), None),
            PidIndex::Many(t) => (None, Some(t.table.iter_mut())),
        };
        few.into_iter().flatten().chain(many.into_iter().flatten())
    }
}

/// The hash of the pid a value leads to (0 for one leading nowhere, which
/// the table never holds).
pub(super) fn hash_value<P: Hash>(
    state: &foldhash::quality::RandomState,
    r: View<'_, P>,
    v: u32,
) -> u64 {
    r.pid(v).map_or(0, |pid| state.hash_one(pid))
}

impl PidTable {
    pub(super) fn insert<P: Hash>(&mut self, r: View<'_, P>, v: u32) {
        let state = &self.state;
        let hash = hash_value(state, r, v);
        self.table
            .insert_unique(hash, v, |v| hash_value(state, r, *v));
    }
}
