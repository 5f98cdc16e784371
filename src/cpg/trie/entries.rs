//! Where a trie's keys and values live: a table of entries in chunks,
//! each named by an [`EntryId`] that stays valid until its key is removed.

use super::node::WILD;
use std::num::NonZeroU32;

/// A stored key with its value.
#[derive(Clone)]
pub(super) struct Entry<V> {
    pub(super) key: Box<str>,
    pub(super) value: V,
}

/// A handle to a key stored in a [`Trie`](super::Trie): valid until that key is removed
/// (the trie may then give the same handle to another key). Four bytes, so
/// that an index of groups by pid can name a group without a copy of its
/// name.
///
/// ```
/// # use cpg_node::cpg::trie::Trie;
/// let mut groups = Trie::new();
/// let (id, _) = groups.id_or_insert_with("a/b", || 1);
/// assert_eq!(groups.id("a/b"), Some(id));
/// assert_eq!(groups.get_by_id(id), Some(("a/b", &1)));
/// assert_eq!(groups.remove_by_id(id), Some(1));
/// assert_eq!(groups.get_by_id(id), None);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EntryId(pub(super) NonZeroU32);

impl EntryId {
    pub(super) fn index(self) -> usize {
        self.0.get() as usize - 1
    }
}

/// Entries per chunk of [`Entries`].
pub(super) const CHUNK: usize = 256;

/// The stored entries, by [`EntryId`], in chunks of [`CHUNK`] slots: the
/// table grows a chunk at a time (no doubling slack, no entry moves when it
/// grows), and a removed key's slot is reused by the next insert. The last
/// chunks are given back as soon as they hold nothing (a node down that
/// took most groups leaves the table as small as what is left, not as big
/// as it was), and an empty trie gives all its chunks back.
#[derive(Clone)]
pub(super) struct Entries<V> {
    pub(super) chunks: Vec<Box<[Option<Entry<V>>]>>,
    /// Stored entries per chunk.
    pub(super) live: Vec<u16>,
    /// Vacant slots: the last freed are reused first, but a long run of
    /// frees is sorted first (see [`Entries::insert`]). Ids at or above
    /// `used` are stale (their chunk was given back): skipped when popped,
    /// swept out once they are half the list.
    pub(super) free: Vec<EntryId>,
    /// Ids pushed on `free` since it was last sorted.
    pub(super) unsorted: usize,
    /// Stale ids on `free`.
    pub(super) stale: usize,
    /// Slots handed out so far (vacant ones included) in the chunks held.
    pub(super) used: usize,
}

/// Fewest frees since the last sort that make [`Entries::insert`] sort the
/// free list.
pub(super) const SORT_FREES: usize = 64;

impl<V> Entries<V> {
    pub(super) const fn new() -> Self {
        Entries {
            chunks: Vec::new(),
            live: Vec::new(),
            free: Vec::new(),
            unsorted: 0,
            stale: 0,
            used: 0,
        }
    }

    pub(super) fn slot(&self, id: EntryId) -> Option<&Option<Entry<V>>> {
        let i = id.index();
        self.chunks.get(i / CHUNK).map(|c| &c[i % CHUNK])
    }

    pub(super) fn slot_mut(&mut self, id: EntryId) -> Option<&mut Option<Entry<V>>> {
        let i = id.index();
        self.chunks.get_mut(i / CHUNK).map(|c| &mut c[i % CHUNK])
    }

    /// The entry `id` names, if stored.
    pub(super) fn get(&self, id: EntryId) -> Option<&Entry<V>> {
        self.slot(id)?.as_ref()
    }

    pub(super) fn get_mut(&mut self, id: EntryId) -> Option<&mut Entry<V>> {
        self.slot_mut(id)?.as_mut()
    }

    /// The entry a node holds: nodes only hold stored ids.
    pub(super) fn at(&self, id: EntryId) -> &Entry<V> {
        self.get(id).expect("a trie node names a stored entry")
    }

    pub(super) fn insert(&mut self, entry: Entry<V>) -> EntryId {
        // Ids freed in bulk (a node down, in pid order) are spread over the
        // table in another order than they were handed out; reused as
        // freed, every insert that follows (the node back, its exchange)
        // would write a slot far from the last one, a cache miss each
        // (half of a trie insert's time, measured). Sorted (lowest id
        // popped first) they are reused in table order. Sorting only once
        // at least half the list (and `SORT_FREES`) came since the last
        // sort keeps it O(log n) a free, amortized, under any churn.
        if self.unsorted >= SORT_FREES && 2 * self.unsorted >= self.free.len() {
            self.free.sort_unstable_by(|a, b| b.cmp(a));
            self.unsorted = 0;
        }
        let id = loop {
            match self.free.pop() {
                Some(id) if id.index() >= self.used => self.stale -= 1,
                Some(id) => {
                    self.unsorted = self.unsorted.min(self.free.len());
                    break id;
                }
                None => break self.new_slot(),
            }
        };
        if let Some(slot) = self.slot_mut(id) {
            *slot = Some(entry);
        }
        self.live[id.index() / CHUNK] += 1;
        id
    }

    /// A slot never handed out (in a new chunk if need be).
    pub(super) fn new_slot(&mut self) -> EntryId {
        if self.used == self.chunks.len() * CHUNK {
            self.chunks.push((0..CHUNK).map(|_| None).collect());
            self.live.push(0);
        }
        self.used += 1;
        // Fewer than 2^31 keys (the count bits of a node): each costs tens
        // of bytes, so the machine's memory ends long before.
        let n = u32::try_from(self.used)
            .ok()
            .filter(|&n| n < WILD)
            .expect("fewer than 2^31 keys");
        EntryId(NonZeroU32::MIN.saturating_add(n - 1))
    }

    /// Takes the entry out; its id is free for reuse.
    pub(super) fn take(&mut self, id: EntryId) -> Option<Entry<V>> {
        let entry = self.slot_mut(id)?.take()?;
        let chunk = id.index() / CHUNK;
        self.live[chunk] -= 1;
        self.free.push(id);
        self.unsorted += 1;
        // every slot handed out is free (the stale ids aside): empty
        if self.free.len() - self.stale == self.used {
            *self = Entries::new();
        } else if self.live[chunk] == 0 && chunk + 1 == self.chunks.len() {
            self.give_back_last_chunks();
        }
        Some(entry)
    }

    /// Gives back the last chunks while they hold nothing. Their slots were
    /// all handed out and are all vacant, so all are on `free`: stale now.
    pub(super) fn give_back_last_chunks(&mut self) {
        while self.live.last() == Some(&0) {
            self.chunks.pop();
            self.live.pop();
        }
        // the chunks left were all handed out (a chunk is added when the
        // last one is full)
        let used = self.chunks.len() * CHUNK;
        self.stale += self.used - used;
        self.used = used;
        if 2 * self.stale > self.free.len() {
            self.free.retain(|id| id.index() < used);
            self.stale = 0;
            self.unsorted = self.unsorted.min(self.free.len());
            if self.free.capacity() > 4 * self.free.len() {
                self.free.shrink_to(2 * self.free.len());
            }
        }
    }
}
