//! The group-name trie: a map from group names to values whose lookup by
//! name gives exactly what okeuday/trie's `find_match2/2` gives, so that a
//! name resolves to the same stored group (exact name or pattern) as on a
//! genuine cpg node.
//!
//! # Shape
//!
//! A character trie (one level per `char`, i.e. per Erlang code point) in
//! which a branch holding a single key is not expanded: it is kept as that
//! key, its *leaf*. This is the shape genuine trie gives the same key set
//! when built by `trie:new/1` or `trie:store/3`, and the lookup result
//! depends on it. [`Trie::remove`] keeps the shape canonical (empty branches
//! are pruned and a branch left with one key becomes a leaf again), so the
//! lookup is a function of the stored key set alone. (Genuine `trie:erase/2`
//! never folds branches back, so a genuine node whose groups came and went
//! can answer differently from a fresh one; we follow the fresh one.)
//!
//! # The lookup rule (`find_match2`)
//!
//! A name is looked up from the root. At a node, with the name left to
//! match being `h` followed by `t`, three branches are tried in this order,
//! and the first that gives a key wins:
//!
//! 1. **Literal `h`.** A leaf gives its key if the rest of the key matches
//!    `t` by the string matcher of [`pattern_matches`](super::pattern::pattern_matches)
//!    (both empty counts). Otherwise the key that ends at that node if `t`
//!    is empty, else the same search one level down with `t`.
//! 2. **`?`.** A leaf is matched from its `?` against `h t` by the string
//!    matcher. Otherwise the `?` takes `h` and scans `t` left to right for a
//!    character `c` that has a branch below the `?`:
//!    - `c == h` is passed over when the branch for `h` is a leaf or holds
//!      a key ending right there (`?h`);
//!    - a leaf branch is tried with the string matcher on what follows
//!      `c`, and passed over if it fails;
//!    - a multi-key branch ends the scan: the search one level down, with
//!      what follows `c`, is the answer of the `?` step (none if nothing
//!      follows `c`).
//! 3. **`*`.** A leaf is matched from its `*` against `h t` by the string
//!    matcher. Otherwise the `*` takes `h` and scans `t` left to right; at
//!    each `c` with a branch below the `*` it tries that branch (a leaf by
//!    the string matcher, a multi-key branch by the search one level down,
//!    which needs at least one more character), shortest first, and
//!    continues on failure. At the end of the name it gives the key that
//!    ends with that `*`, if any.
//!
//! An exact key therefore always wins. Otherwise, at every position, a
//! literal beats `?`, which beats `*`, and an earlier end of a `*` beats a
//! later one. But what a pattern matches depends on its neighbours: with
//! `?a` and `?b` stored, `?a` matches `xaa` (alone it does not), and with
//! `*ab` stored, `*a` matches nothing at all (alone it matches `xa`). The
//! genuine trie behaves so; the vectors in `tests/data/trie_find_match2.jsonl`
//! (produced by the genuine trie) pin it.
//!
//! Where genuine trie raises (`badarg` on a wildcard in the name, or a
//! failed assertion on a malformed stored pattern), cpg answers "no such
//! group" and the lookup here gives `None`. A name holding `*` or `?` is
//! not a pattern query: it mostly raises, and in the rare cases where
//! genuine trie still returns a key (the wildcard only ever passed over by
//! a `?` or `*` scan) this lookup returns the same key.
//!
//! # Cost
//!
//! Every key is also in a hash index by its exact spelling: asking for
//! exactly a key, and looking up a name that is stored as it is (which
//! always wins), is one probe, whatever the trie's size and the name's
//! length. Only other names walk the trie, and only when patterns are
//! stored. A lookup does not allocate and only visits branches that the
//! name can enter, so patterns that cannot match cost nothing. Like the
//! genuine trie, the backtracking of several `*` in one branch can take
//! time polynomial in the name length. Insert, remove, clone and drop
//! never recurse; a lookup recurses only at nodes of its path that have a
//! `*` or `?` branch (and the string matcher once per `*` of a pattern),
//! so long names and long shared prefixes need no deep stack.

use std::fmt;
use std::iter::FusedIterator;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};

mod kids;
mod memo;
use kids::Kids;

use crate::cpg::pattern::{self, Raise, WILDCARD_ANY, WILDCARD_SHORT};
use foldhash::quality::RandomState;
use hashbrown::HashTable;
use std::hash::BuildHasher;

/// A stored key with its value.
#[derive(Clone)]
struct Entry<V> {
    key: Box<str>,
    value: V,
}

/// A handle to a key stored in a [`Trie`]: valid until that key is removed
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
pub struct EntryId(NonZeroU32);

impl EntryId {
    fn index(self) -> usize {
        self.0.get() as usize - 1
    }
}

/// Entries per chunk of [`Entries`].
const CHUNK: usize = 256;

/// The stored entries, by [`EntryId`], in chunks of [`CHUNK`] slots: the
/// table grows a chunk at a time (no doubling slack, no entry moves when it
/// grows), and a removed key's slot is reused by the next insert. The last
/// chunks are given back as soon as they hold nothing (a node down that
/// took most groups leaves the table as small as what is left, not as big
/// as it was), and an empty trie gives all its chunks back.
#[derive(Clone)]
struct Entries<V> {
    chunks: Vec<Box<[Option<Entry<V>>]>>,
    /// Stored entries per chunk.
    live: Vec<u16>,
    /// Vacant slots: the last freed are reused first, but a long run of
    /// frees is sorted first (see [`Entries::insert`]). Ids at or above
    /// `used` are stale (their chunk was given back): skipped when popped,
    /// swept out once they are half the list.
    free: Vec<EntryId>,
    /// Ids pushed on `free` since it was last sorted.
    unsorted: usize,
    /// Stale ids on `free`.
    stale: usize,
    /// Slots handed out so far (vacant ones included) in the chunks held.
    used: usize,
}

/// Fewest frees since the last sort that make [`Entries::insert`] sort the
/// free list.
const SORT_FREES: usize = 64;

impl<V> Entries<V> {
    const fn new() -> Self {
        Entries {
            chunks: Vec::new(),
            live: Vec::new(),
            free: Vec::new(),
            unsorted: 0,
            stale: 0,
            used: 0,
        }
    }

    fn slot(&self, id: EntryId) -> Option<&Option<Entry<V>>> {
        let i = id.index();
        self.chunks.get(i / CHUNK).map(|c| &c[i % CHUNK])
    }

    fn slot_mut(&mut self, id: EntryId) -> Option<&mut Option<Entry<V>>> {
        let i = id.index();
        self.chunks.get_mut(i / CHUNK).map(|c| &mut c[i % CHUNK])
    }

    /// The entry `id` names, if stored.
    fn get(&self, id: EntryId) -> Option<&Entry<V>> {
        self.slot(id)?.as_ref()
    }

    fn get_mut(&mut self, id: EntryId) -> Option<&mut Entry<V>> {
        self.slot_mut(id)?.as_mut()
    }

    /// The entry a node holds: nodes only hold stored ids.
    fn at(&self, id: EntryId) -> &Entry<V> {
        self.get(id).expect("a trie node names a stored entry")
    }

    fn insert(&mut self, entry: Entry<V>) -> EntryId {
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
    fn new_slot(&mut self) -> EntryId {
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
    fn take(&mut self, id: EntryId) -> Option<Entry<V>> {
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
    fn give_back_last_chunks(&mut self) {
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

/// A trie node. Invariants (all but the root):
/// - a node without children is a *leaf*: its `value` is `Some`, and the
///   entry's key is the one key of this branch, at least as long as the
///   node's depth;
/// - a node with children holds at least two keys in its subtree; its
///   `value` is the key that ends exactly at this node, if any.
///
/// The root is never a leaf; its `value` is the empty key.
///
/// The entry sits in the trie's [`Entries`], named by its [`EntryId`]:
/// most nodes (every inner node of a long shared prefix) hold none, and a
/// node sits inline in its parent's `children`, so an inline entry would
/// make every node, and every spare slot of a `children` vector, as big as
/// a group. For the same reason the child list is one pointer ([`Kids`]): a
/// node is 16 bytes, 20 in its parent's list (with its character).
struct Node {
    value: Option<EntryId>,
    /// The number of keys in this subtree, `value` included (fewer than
    /// 2^31), and in the top bit ([`WILD`]) whether a `*` or `?` branch
    /// leaves this node: a lookup asks at every node it passes, and a
    /// search of the children for both would cost two binary searches
    /// wherever a child sorts below `?` (digits, `/`, `-`, ...).
    meta: u32,
    /// Sorted by `char`, no duplicates; one pointer (nothing allocated for
    /// a leaf), the characters apart from the nodes (see [`kids`]).
    children: Kids<Node>,
}

/// The bit of [`Node::meta`] that says a wildcard branch leaves the node.
const WILD: u32 = 1 << 31;

/// A search's answer: the key found (none), or a wildcard in the name
/// where genuine trie raises.
type Found = Result<Option<EntryId>, Raise>;

impl Node {
    const fn new() -> Self {
        Node {
            value: None,
            meta: 0,
            children: Kids::new(),
        }
    }

    fn leaf_of(id: EntryId) -> Self {
        Node {
            value: Some(id),
            meta: 1,
            children: Kids::new(),
        }
    }

    /// Where `c` is among the children (`Err`: where it would go).
    #[inline]
    fn index(&self, c: char) -> Result<usize, usize> {
        self.children.position(c)
    }

    #[inline]
    fn child(&self, c: char) -> Option<&Node> {
        self.children.find(c)
    }

    /// The single key of this branch, if it is a leaf.
    #[inline]
    fn leaf(&self) -> Option<EntryId> {
        if self.children.is_empty() {
            self.value
        } else {
            None
        }
    }

    /// The number of keys in this subtree.
    fn count(&self) -> u32 {
        self.meta & !WILD
    }

    /// Whether a `*` or `?` branch leaves this node.
    fn has_wildcard_child(&self) -> bool {
        self.meta & WILD != 0
    }

    /// Sets the wildcard bit again after the child `c` was added or
    /// removed (only a `*` or `?` child can change it).
    fn children_changed(&mut self, c: char) {
        if !pattern::is_wildcard(c) {
            return;
        }
        let wild = self.child(WILDCARD_ANY).is_some() || self.child(WILDCARD_SHORT).is_some();
        self.meta = self.count() | if wild { WILD } else { 0 };
    }

    /// Moves every entry id of this subtree out, without recursion.
    fn take_ids(&mut self) -> Vec<EntryId> {
        let mut ids: Vec<EntryId> = self.value.take().into_iter().collect();
        self.dismantle(|node| ids.extend(node.value.take()));
        self.meta = 0;
        ids
    }

    /// Moves every node below this one out and drops it, without
    /// recursion, showing each to `f` first.
    fn dismantle(&mut self, mut f: impl FnMut(&mut Node)) {
        let mut stack = vec![];
        self.children.drain_nodes_into(&mut stack);
        while let Some(mut node) = stack.pop() {
            f(&mut node);
            node.children.drain_nodes_into(&mut stack);
        }
    }
}

impl Clone for Node {
    /// Copies the subtree without recursion (post-order, explicit stack).
    fn clone(&self) -> Self {
        struct Frame<'a> {
            src: &'a Node,
            built: Kids<Node>,
        }
        fn frame(src: &Node) -> Frame<'_> {
            Frame {
                src,
                built: Kids::with_capacity(src.children.len()),
            }
        }
        let mut stack = vec![frame(self)];
        loop {
            let Some(top) = stack.last() else {
                return Node::new();
            };
            let src = top.src;
            if let Some((_, child)) = src.children.get(top.built.len()) {
                stack.push(frame(child));
                continue;
            }
            let Some(done) = stack.pop() else {
                return Node::new();
            };
            let copy = Node {
                value: src.value,
                meta: src.meta,
                children: done.built,
            };
            match stack.last_mut() {
                None => return copy,
                Some(parent) => {
                    let c = parent.src.children.chars()[parent.built.len()];
                    parent.built.push(c, copy);
                }
            }
        }
    }
}

impl Drop for Node {
    /// Dismantles deep subtrees without recursion.
    fn drop(&mut self) {
        if self
            .children
            .nodes()
            .iter()
            .any(|child| !child.children.is_empty())
        {
            self.dismantle(|_| {});
        }
    }
}

/// A map from group names (Unicode strings, compared by `char`, i.e. by
/// Erlang code point) to `V`, with lookup of the most specific match
/// exactly as `trie:find_match2/2`.
///
/// Keys are stored as given: exact names or patterns (see
/// [`pattern`]). Keys are not validated: a malformed
/// pattern is stored and returned by [`get`](Self::get) and
/// [`iter`](Self::iter) like any key, and takes part in
/// [`find_match`](Self::find_match) as it does in genuine trie (where the
/// result is unspecified).
///
/// Each stored key also has a small handle, its [`EntryId`], by which it
/// can be read and removed without spelling it again.
///
/// ```
/// # use cpg_node::cpg::trie::Trie;
/// let mut groups = Trie::new();
/// for name in ["a/*", "a/?", "a/x", "a/*/c"] {
///     groups.insert(name, name.len());
/// }
/// assert_eq!(groups.find_match("a/x"), Some(("a/x", &3)));
/// assert_eq!(groups.find_match("a/y").map(|(k, _)| k), Some("a/*"));
/// assert_eq!(groups.find_match("a/b/c").map(|(k, _)| k), Some("a/*/c"));
/// assert_eq!(groups.find_match("b"), None);
/// assert_eq!(groups.keys().collect::<Vec<_>>(), ["a/*", "a/*/c", "a/?", "a/x"]);
/// ```
#[derive(Clone)]
pub struct Trie<V> {
    root: Node,
    entries: Entries<V>,
    /// Every stored key's id, by the hash of its key: the exact index.
    /// Asking for exactly a key ([`id`](Self::id), hence every join, leave
    /// and merge step) is one probe instead of a walk down the trie; and
    /// since a stored name always wins `find_match2`, a lookup of a name
    /// that is stored as it is ends there too (see
    /// [`find_match`](Self::find_match)). Four bytes and a control byte a
    /// slot: 6.5 bytes a key at 100k keys. The trie stays whole (plain keys
    /// shape which pattern a name finds), the index is beside it.
    exact: HashTable<EntryId>,
    /// Seeded per trie (names come from the network).
    hasher: RandomState,
    /// How many stored keys hold a `*` or `?`: without any, a name that is
    /// not in the exact index matches nothing, and with only patterns, no
    /// name is in it.
    patterns: u32,
    /// This key set's number, new with every insert or removal of a key
    /// ([`next_version`]; a clone keeps it with the same keys): what the
    /// per-thread memo of searches ([`memo`]) checks its answers against.
    version: u64,
}

/// The number of keys from which a search is remembered ([`memo`]): with
/// 1k patterns `p<i>/*`, a walk took 27 ns, a remembered answer 22 and a
/// name not remembered 8 more than the walk; with 100k, 41–48 ns against 29.
/// (The unit tests remember from the first key, so that every lookup they
/// check goes through the memo.)
#[cfg(not(test))]
const MEMO_FROM: usize = 4096;
#[cfg(test)]
const MEMO_FROM: usize = 1;

/// A number no trie's key set had before (the first is 1; the memo's
/// empty slots hold 0).
fn next_version() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// An exact index this much larger than its keys (and above
/// [`INDEX_MIN`]) is shrunk after a remove: a scope whose groups went away
/// gives the index's memory back.
const INDEX_SLACK: usize = 4;
/// The capacity below which the exact index is never shrunk.
const INDEX_MIN: usize = 64;

impl<V> Trie<V> {
    /// An empty trie.
    pub fn new() -> Self {
        Trie {
            root: Node::new(),
            entries: Entries::new(),
            exact: HashTable::new(),
            hasher: RandomState::default(),
            patterns: 0,
            version: next_version(),
        }
    }

    fn hash(hasher: &RandomState, key: &str) -> u64 {
        hasher.hash_one(key)
    }

    /// The hash of a key the exact index holds, by its id, for the index
    /// to move it when it grows or shrinks: the same as [`hash`](Self::hash)
    /// of the key looked up.
    fn rehash<'a>(
        hasher: &'a RandomState,
        entries: &'a Entries<V>,
    ) -> impl Fn(&EntryId) -> u64 + 'a {
        move |&id| Self::hash(hasher, &entries.at(id).key)
    }

    /// Makes room in the exact index for `additional` more keys, so that
    /// many inserts in a row (a merge) do not grow it step by step (each
    /// growth reads every stored key again to hash it).
    pub fn reserve(&mut self, additional: usize) {
        let Trie {
            entries,
            exact,
            hasher,
            ..
        } = self;
        exact.reserve(additional, Self::rehash(hasher, entries));
    }

    /// The number of stored keys.
    pub fn len(&self) -> usize {
        self.root.count() as usize
    }

    /// Whether no key is stored.
    pub fn is_empty(&self) -> bool {
        self.root.count() == 0
    }

    /// The handle of exactly `key` (no pattern matching), if stored.
    pub fn id(&self, key: &str) -> Option<EntryId> {
        if self.exact.is_empty() {
            return None;
        }
        let entries = &self.entries;
        self.exact
            .find(Self::hash(&self.hasher, key), |&id| {
                *entries.at(id).key == *key
            })
            .copied()
    }

    /// The value stored under exactly `key` (no pattern matching: a pattern
    /// is found by its own spelling).
    pub fn get(&self, key: &str) -> Option<&V> {
        self.id(key).map(|id| &self.entries.at(id).value)
    }

    /// Whether exactly `key` is stored.
    pub fn contains_key(&self, key: &str) -> bool {
        self.id(key).is_some()
    }

    /// The value stored under exactly `key`, mutably.
    pub fn get_mut(&mut self, key: &str) -> Option<&mut V> {
        let id = self.id(key)?;
        self.entries.get_mut(id).map(|e| &mut e.value)
    }

    /// The key and value `id` names; `None` if it names no stored key.
    pub fn get_by_id(&self, id: EntryId) -> Option<(&str, &V)> {
        self.entries.get(id).map(|e| (&*e.key, &e.value))
    }

    /// The key and value `id` names, the value mutably.
    pub fn get_mut_by_id(&mut self, id: EntryId) -> Option<(&str, &mut V)> {
        self.entries.get_mut(id).map(|e| (&*e.key, &mut e.value))
    }

    /// Stores `value` under `key` (an exact name or a pattern, stored as
    /// is), returning the value it replaces.
    pub fn insert(&mut self, key: &str, value: V) -> Option<V> {
        if let Some(slot) = self.get_mut(key) {
            return Some(std::mem::replace(slot, value));
        }
        self.insert_new(key, value);
        None
    }

    /// Stores `value` under `key`, which the caller knows to be absent
    /// (found so by [`id`](Self::id)), and returns its id: one walk down
    /// instead of [`id_or_insert_with`](Self::id_or_insert_with)'s two.
    /// The key must be absent: a present key would be stored twice.
    pub fn insert_absent(&mut self, key: &str, value: V) -> EntryId {
        debug_assert!(self.id(key).is_none(), "insert_absent of a stored key");
        self.insert_new(key, value)
    }

    /// Stores a key known to be absent.
    fn insert_new(&mut self, key: &str, value: V) -> EntryId {
        let Trie {
            root,
            entries,
            exact,
            hasher,
            patterns,
            version,
        } = self;
        *version = next_version();
        let id = entries.insert(Entry {
            key: key.into(),
            value,
        });
        exact.insert_unique(Self::hash(hasher, key), id, Self::rehash(hasher, entries));
        if pattern::is_pattern(key) {
            *patterns += 1;
        }
        let mut node = root;
        let mut depth = 0;
        loop {
            node.meta += 1;
            // A leaf on the way becomes a branch: its key moves one level down.
            if node.children.is_empty() {
                if let Some(old) = node.value.take() {
                    match entries.at(old).key[depth..].chars().next() {
                        Some(c) => {
                            node.children.push(c, Node::leaf_of(old));
                            node.children_changed(c);
                        }
                        None => node.value = Some(old),
                    }
                }
            }
            let Some(c) = key[depth..].chars().next() else {
                node.value = Some(id);
                return id;
            };
            depth += c.len_utf8();
            match node.index(c) {
                Ok(i) => node = &mut node.children.nodes_mut()[i],
                Err(i) => {
                    // (The list grows one at a time up to 8, then doubles.)
                    node.children.insert(i, c, Node::leaf_of(id));
                    node.children_changed(c);
                    return id;
                }
            }
        }
    }

    /// The value under `key`, first stored as `f()` if `key` is absent.
    pub fn entry_or_insert_with(&mut self, key: &str, f: impl FnOnce() -> V) -> &mut V {
        self.id_or_insert_with(key, f).1
    }

    /// The handle and value of `key`, first stored as `f()` if `key` is
    /// absent.
    pub fn id_or_insert_with(&mut self, key: &str, f: impl FnOnce() -> V) -> (EntryId, &mut V) {
        let id = match self.id(key) {
            Some(id) => id,
            None => self.insert_new(key, f()),
        };
        let entry = self
            .entries
            .get_mut(id)
            .expect("the key was just found or stored");
        (id, &mut entry.value)
    }

    /// Removes `key` (exactly, no pattern matching) and returns its value.
    /// Branches left empty are pruned, and a branch left with one key
    /// becomes a leaf again, as if the trie had been built without `key`.
    pub fn remove(&mut self, key: &str) -> Option<V> {
        let id = self.id(key)?;
        self.remove_by_id(id)
    }

    /// Removes the key `id` names, as [`remove`](Self::remove) does.
    pub fn remove_by_id(&mut self, id: EntryId) -> Option<V> {
        let entry = self.entries.take(id)?;
        self.version = next_version();
        let key = &*entry.key;
        self.unindex(key, id);
        let mut node = &mut self.root;
        let mut depth = 0;
        loop {
            node.meta -= 1;
            let Some(c) = key[depth..].chars().next() else {
                // A branch (or the root) keeping at least one other key.
                node.value = None;
                return Some(entry.value);
            };
            depth += c.len_utf8();
            let Ok(i) = node.index(c) else {
                return Some(entry.value);
            };
            if node.children.nodes()[i].children.is_empty() {
                // The key's own leaf.
                node.children.remove(i);
                node.children_changed(c);
                return Some(entry.value);
            }
            let child = &mut node.children.nodes_mut()[i];
            if child.count() == 2 {
                // The branch keeps one key: it becomes that key's leaf.
                let ids = child.take_ids();
                if let Some(&kept) = ids.iter().find(|&&other| other != id) {
                    *child = Node::leaf_of(kept);
                }
                return Some(entry.value);
            }
            node = child;
        }
    }

    /// Takes `key` (stored as `id`, already out of `entries`) out of the
    /// exact index, and shrinks the index when it is mostly empty.
    fn unindex(&mut self, key: &str, id: EntryId) {
        if let Ok(slot) = self
            .exact
            .find_entry(Self::hash(&self.hasher, key), |&other| other == id)
        {
            slot.remove();
        }
        if pattern::is_pattern(key) {
            self.patterns -= 1;
        }
        let (len, cap) = (self.exact.len(), self.exact.capacity());
        if len == 0 {
            self.exact = HashTable::new();
        } else if cap > INDEX_MIN && len * INDEX_SLACK < cap {
            let Trie {
                entries,
                exact,
                hasher,
                ..
            } = self;
            exact.shrink_to(2 * len, Self::rehash(hasher, entries));
        }
    }

    /// The stored key, and its value, that `trie:find_match2(Name, Trie)`
    /// returns for `name`: `name` itself if stored, else the most specific
    /// pattern by the rule in the [module documentation](self). `None` for
    /// the empty name and where genuine trie finds nothing or raises (as it
    /// does for almost every name holding `*` or `?`).
    ///
    /// Does not allocate.
    pub fn find_match(&self, name: &str) -> Option<(&str, &V)> {
        if pattern::is_pattern(name) {
            self.search(name, true)
        } else {
            self.find_match_plain(name)
        }
    }

    /// [`find_match`](Self::find_match) of a name known to hold no `*` or
    /// `?` (the check is then skipped).
    fn find_match_plain(&self, name: &str) -> Option<(&str, &V)> {
        // A stored name always wins find_match2 (the literal branch is
        // tried first at every level, and leads only to it): one probe of
        // the exact index answers, whatever the trie's size. Only a name
        // not stored as it is walks the trie, and only if patterns are
        // stored (with only patterns stored, the index is not probed).
        if name.is_empty() {
            return None;
        }
        let patterns = self.patterns as usize;
        if patterns < self.len() {
            if let Some(id) = self.id(name) {
                let e = self.entries.at(id);
                return Some((&e.key, &e.value));
            }
        }
        if patterns == 0 {
            return None;
        }
        // A walk whose length grows with the stored names': in a large
        // trie, remembered per thread for the names looked up again (see
        // [`memo`]). A small trie is walked in cache in about the time the
        // memo takes, and a name the memo does not hold would pay both.
        let id = if self.len() >= MEMO_FROM {
            memo::find(self.version, name, || self.search_id(name, false))?
        } else {
            self.search_id(name, false)?
        };
        let e = self.entries.at(id);
        Some((&e.key, &e.value))
    }

    /// The lookup of a cpg read (`cpg_data`'s `trie:find_match2` call): as
    /// [`find_match`](Self::find_match), except that a name holding a
    /// wildcard finds nothing (genuine `trie:find_match2/2` exits with
    /// `badarg`, which `cpg_data` answers as no such group).
    pub(crate) fn find_name(&self, name: &str) -> Option<(&str, &V)> {
        // The wildcard check only where a wildcard could make a difference:
        // with no pattern stored, such a name is in no index and matches
        // nothing anyway.
        if self.patterns > 0 && pattern::is_pattern(name) {
            return None;
        }
        self.find_match_plain(name)
    }

    /// The search of `find_match2`; `checked`: the name may hold wildcards.
    fn search(&self, name: &str, checked: bool) -> Option<(&str, &V)> {
        let e = self.entries.at(self.search_id(name, checked)?);
        Some((&e.key, &e.value))
    }

    /// [`search`](Self::search)'s key, by its id.
    fn search_id(&self, name: &str, checked: bool) -> Option<EntryId> {
        if self.root.children.is_empty() || name.is_empty() {
            return None;
        }
        let search = Search {
            checked,
            entries: &self.entries,
        };
        search.node(&self.root, name, 0).unwrap_or(None)
    }

    /// All keys with their values, keys in Erlang term order of the strings
    /// (code point by code point, a prefix first), as `trie:to_list/1`.
    pub fn iter(&self) -> Iter<'_, V> {
        Iter {
            entries: &self.entries,
            pending: self.root.value,
            stack: vec![self.root.children.iter()],
            remaining: self.len(),
        }
    }

    /// All keys, in the order of [`iter`](Self::iter) (as
    /// `trie:fetch_keys/1`).
    pub fn keys(&self) -> Keys<'_, V> {
        Keys { inner: self.iter() }
    }
}

/// One lookup: the search of `find_match2`, over node branches.
struct Search<'a, V> {
    /// The name may hold wildcards: make the checks where genuine trie
    /// raises on them.
    checked: bool,
    entries: &'a Entries<V>,
}

impl<'a, V> Search<'a, V> {
    fn entry(&self, id: EntryId) -> &'a Entry<V> {
        self.entries.at(id)
    }

    /// The key of `node`, with its entry, if it is a leaf.
    fn leaf(&self, node: &Node) -> Option<(EntryId, &'a Entry<V>)> {
        node.leaf().map(|id| (id, self.entry(id)))
    }

    /// The whole search at `node`, `depth` bytes into the keys below it.
    fn node(&self, node: &'a Node, name: &str, depth: usize) -> Found {
        let (mut node, mut name, mut depth) = (node, name, depth);
        loop {
            let mut chars = name.chars();
            let Some(h) = chars.next() else {
                return Ok(None);
            };
            if pattern::is_wildcard(h) {
                return Err(Raise);
            }
            let rest = chars.as_str();
            // Without wildcard branches here, nothing follows a failed
            // literal step: descend without recursion.
            let wild = node.has_wildcard_child();
            if let Some(child) = node.child(h) {
                let below = depth + (name.len() - rest.len());
                let found = if let Some((id, leaf)) = self.leaf(child) {
                    let tail = &leaf.key[below..];
                    let hit = if rest.is_empty() {
                        tail.is_empty()
                    } else {
                        pattern::match_suffix(tail, rest, self.checked)?
                    };
                    hit.then_some(id)
                } else if rest.is_empty() {
                    child.value
                } else if !wild {
                    (node, name, depth) = (child, rest, below);
                    continue;
                } else {
                    self.node(child, rest, below)?
                };
                if found.is_some() {
                    return Ok(found);
                }
            }
            if !wild {
                return Ok(None);
            }
            if let Some(found) = self.short(node, name, depth)? {
                return Ok(Some(found));
            }
            return self.any(node, name, depth);
        }
    }

    /// The `?` branch of `node` against `name` (not empty).
    fn short(&self, node: &'a Node, name: &str, depth: usize) -> Found {
        let Some(wild) = node.child(WILDCARD_SHORT) else {
            return Ok(None);
        };
        let below = depth + WILDCARD_SHORT.len_utf8();
        if let Some((id, leaf)) = self.leaf(wild) {
            // A key ending with `?` is malformed and never matches here.
            if leaf.key.len() == below {
                return Ok(None);
            }
            let hit = pattern::match_suffix(&leaf.key[depth..], name, self.checked)?;
            return Ok(hit.then_some(id));
        }
        let mut chars = name.chars();
        let Some(first) = chars.next() else {
            return Ok(None);
        };
        let skip_first = wild.child(first).is_some_and(|c| c.value.is_some());
        let mut rest = chars.as_str();
        loop {
            let mut chars = rest.chars();
            let Some(c) = chars.next() else {
                return Ok(None);
            };
            let after = chars.as_str();
            if c == WILDCARD_SHORT {
                return Err(Raise);
            }
            if !(skip_first && c == first) {
                if let Some(child) = wild.child(c) {
                    let next = below + c.len_utf8();
                    match self.leaf(child) {
                        None => return self.node(child, after, next),
                        Some((id, leaf)) => {
                            if pattern::match_suffix(&leaf.key[next..], after, self.checked)? {
                                return Ok(Some(id));
                            }
                        }
                    }
                }
            }
            rest = after;
        }
    }

    /// The `*` branch of `node` against `name` (not empty).
    fn any(&self, node: &'a Node, name: &str, depth: usize) -> Found {
        let Some(wild) = node.child(WILDCARD_ANY) else {
            return Ok(None);
        };
        if let Some((id, leaf)) = self.leaf(wild) {
            let hit = pattern::match_suffix(&leaf.key[depth..], name, self.checked)?;
            return Ok(hit.then_some(id));
        }
        let below = depth + WILDCARD_ANY.len_utf8();
        let mut chars = name.chars();
        if chars.next().is_none() {
            return Ok(None);
        }
        let mut rest = chars.as_str();
        loop {
            let mut chars = rest.chars();
            let Some(c) = chars.next() else {
                return Ok(wild.value);
            };
            let after = chars.as_str();
            if c == WILDCARD_ANY {
                return Err(Raise);
            }
            if let Some(child) = wild.child(c) {
                let next = below + c.len_utf8();
                let found = match self.leaf(child) {
                    None => self.node(child, after, next)?,
                    Some((id, leaf)) => {
                        pattern::match_suffix(&leaf.key[next..], after, self.checked)?.then_some(id)
                    }
                };
                if found.is_some() {
                    return Ok(found);
                }
            }
            rest = after;
        }
    }
}

impl<V> Default for Trie<V> {
    fn default() -> Self {
        Trie::new()
    }
}

impl<V: fmt::Debug> fmt::Debug for Trie<V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

impl<K: AsRef<str>, V> FromIterator<(K, V)> for Trie<V> {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        let mut trie = Trie::new();
        trie.extend(iter);
        trie
    }
}

impl<K: AsRef<str>, V> Extend<(K, V)> for Trie<V> {
    fn extend<I: IntoIterator<Item = (K, V)>>(&mut self, iter: I) {
        for (key, value) in iter {
            self.insert(key.as_ref(), value);
        }
    }
}

impl<'a, V> IntoIterator for &'a Trie<V> {
    type Item = (&'a str, &'a V);
    type IntoIter = Iter<'a, V>;

    fn into_iter(self) -> Iter<'a, V> {
        self.iter()
    }
}

/// Iterator over the keys and values of a [`Trie`], in key order; see
/// [`Trie::iter`].
pub struct Iter<'a, V> {
    entries: &'a Entries<V>,
    pending: Option<EntryId>,
    stack: Vec<kids::Iter<'a, Node>>,
    remaining: usize,
}

impl<'a, V> Iterator for Iter<'a, V> {
    type Item = (&'a str, &'a V);

    fn next(&mut self) -> Option<Self::Item> {
        let id = match self.pending.take() {
            Some(id) => id,
            None => loop {
                let top = self.stack.last_mut()?;
                match top.next() {
                    None => {
                        self.stack.pop();
                    }
                    Some((_, node)) => {
                        if !node.children.is_empty() {
                            self.stack.push(node.children.iter());
                        }
                        if let Some(id) = node.value {
                            break id;
                        }
                    }
                }
            },
        };
        self.remaining -= 1;
        let entry = self.entries.at(id);
        Some((&entry.key, &entry.value))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.remaining, Some(self.remaining))
    }
}

impl<V> ExactSizeIterator for Iter<'_, V> {}

impl<V> FusedIterator for Iter<'_, V> {}

/// Iterator over the keys of a [`Trie`], in order; see [`Trie::keys`].
pub struct Keys<'a, V> {
    inner: Iter<'a, V>,
}

impl<'a, V> Iterator for Keys<'a, V> {
    type Item = &'a str;

    fn next(&mut self) -> Option<&'a str> {
        self.inner.next().map(|(key, _)| key)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.inner.size_hint()
    }
}

impl<V> ExactSizeIterator for Keys<'_, V> {}

impl<V> FusedIterator for Keys<'_, V> {}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpg::pattern::{classify, pattern_matches, NameKind};
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    fn matched<'a, V>(trie: &'a Trie<V>, name: &str) -> Option<&'a str> {
        trie.find_match(name).map(|(key, _)| key)
    }

    fn trie_of(keys: &[&str]) -> Trie<String> {
        keys.iter().map(|k| (*k, k.to_string())).collect()
    }

    /// Every line of the genuine `trie:find_match2/2` and `is_pattern2/1`
    /// vectors must agree.
    #[test]
    fn vectors() {
        let path = std::env::var("TRIE_VECTORS").unwrap_or_else(|_| {
            concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/tests/data/trie_find_match2.jsonl"
            )
            .to_owned()
        });
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("cannot read the trie vectors {path}: {e}"));
        let (mut lines, mut tries, mut queries, mut classified) = (0, 0, 0, 0);
        let mut failures = Vec::new();
        for (number, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            lines += 1;
            let at = format!("{path}:{}", number + 1);
            let v: serde_json::Value =
                serde_json::from_str(line).unwrap_or_else(|e| panic!("{at}: bad JSON: {e}"));
            let text_of = |v: &serde_json::Value| -> String {
                v.as_str()
                    .unwrap_or_else(|| panic!("{at}: not a string: {v}"))
                    .to_owned()
            };
            if let Some(keys) = v.get("keys") {
                tries += 1;
                let keys: Vec<String> = keys
                    .as_array()
                    .unwrap_or_else(|| panic!("{at}: keys is not an array"))
                    .iter()
                    .map(text_of)
                    .collect();
                let trie: Trie<String> = keys.iter().map(|k| (k, k.clone())).collect();
                assert_eq!(trie.len(), keys.len(), "{at}: duplicate keys");
                let cases = v["queries"]
                    .as_array()
                    .unwrap_or_else(|| panic!("{at}: queries is not an array"));
                for case in cases {
                    let name = text_of(&case[0]);
                    let want = case[1].as_str();
                    queries += 1;
                    let got = trie.find_match(&name);
                    if let Some((key, value)) = got {
                        assert_eq!(key, value, "{at}: key and value disagree");
                    }
                    let got = got.map(|(key, _)| key);
                    if got != want {
                        failures.push(format!(
                            "{at}: keys {keys:?}, name {name:?}: want {want:?}, got {got:?}"
                        ));
                    }
                }
            } else if let Some(name) = v.get("is_pattern2") {
                classified += 1;
                let name = text_of(name);
                let got = match classify(&name) {
                    Ok(NameKind::Exact) => "exact",
                    Ok(NameKind::Pattern) => "pattern",
                    Err(_) => "invalid",
                };
                let want = v["result"].as_str();
                if Some(got) != want {
                    failures.push(format!(
                        "{at}: is_pattern2 {name:?}: want {want:?}, got {got:?}"
                    ));
                }
            } else {
                panic!("{at}: unknown vector line: {line}");
            }
        }
        println!(
            "trie vectors {path}: {lines} lines checked ({tries} tries with {queries} \
             find_match2 queries, {classified} is_pattern2 lines), {} failures",
            failures.len()
        );
        assert!(
            failures.is_empty(),
            "{} of {} checks disagree with genuine trie:\n{}",
            failures.len(),
            queries + classified,
            failures
                .iter()
                .take(40)
                .cloned()
                .collect::<Vec<_>>()
                .join("\n")
        );
        assert!(lines > 0, "no vectors in {path}");
        assert_eq!(lines, tries + classified);
    }

    #[test]
    fn cpg_live_example() {
        let trie = trie_of(&["a/*", "a/?", "a/x", "a/*/c"]);
        assert_eq!(matched(&trie, "a/x"), Some("a/x"));
        assert_eq!(matched(&trie, "a/y"), Some("a/*"));
        assert_eq!(matched(&trie, "a/yy"), Some("a/*"));
        assert_eq!(matched(&trie, "a/b/c"), Some("a/*/c"));
    }

    /// Cases checked against genuine trie where the answer depends on the
    /// other stored keys.
    #[test]
    fn neighbours_matter() {
        assert_eq!(matched(&trie_of(&["?a"]), "xaa"), None);
        assert_eq!(matched(&trie_of(&["?a", "?b"]), "xaa"), Some("?a"));
        assert_eq!(matched(&trie_of(&["*a"]), "xa"), Some("*a"));
        let t = trie_of(&["*a", "*ab"]);
        assert_eq!(matched(&t, "xa"), None);
        assert_eq!(matched(&t, "xaya"), None);
        assert_eq!(matched(&t, "xyab"), Some("*ab"));
        assert_eq!(matched(&trie_of(&["?a", "?ab"]), "xa"), None);
        assert_eq!(matched(&trie_of(&["?a/x", "?b"]), "aba/x"), None);
        assert_eq!(matched(&trie_of(&["?a/x", "?b"]), "cba/x"), Some("?a/x"));
    }

    #[test]
    fn unicode_names() {
        let mut t = trie_of(&["grüppe/*", "组/x", "组/?/y", "ü", "𝄞*"]);
        assert_eq!(matched(&t, "grüppe/ä"), Some("grüppe/*"));
        assert_eq!(matched(&t, "组/x"), Some("组/x"));
        assert_eq!(matched(&t, "组/ß组/y"), Some("组/?/y"));
        assert_eq!(matched(&t, "ü"), Some("ü"));
        assert_eq!(matched(&t, "𝄞𝄞"), Some("𝄞*"));
        assert_eq!(matched(&t, "组/"), None);
        assert_eq!(t.get("组/x"), Some(&"组/x".to_owned()));
        assert_eq!(
            t.keys().collect::<Vec<_>>(),
            ["grüppe/*", "ü", "组/?/y", "组/x", "𝄞*"]
        );
        assert_eq!(t.remove("组/?/y").as_deref(), Some("组/?/y"));
        assert_eq!(matched(&t, "组/ß组/y"), None);
        assert_eq!(t.len(), 4);
    }

    #[test]
    fn odd_names_and_keys() {
        let mut t = trie_of(&["a*", "a?b", "ab", "a**", "a?"]);
        assert_eq!(matched(&t, ""), None);
        assert_eq!(matched(&t, "a*"), None);
        assert_eq!(matched(&t, "ab"), Some("ab"));
        assert_eq!(t.get("a**").map(String::as_str), Some("a**"));
        // the empty key is a plain map entry, never a match
        assert_eq!(t.insert("", "empty".into()), None);
        assert_eq!(t.keys().next(), Some(""));
        assert_eq!(t.get(""), Some(&"empty".to_owned()));
        assert_eq!(matched(&t, ""), None);
        assert_eq!(t.remove("").as_deref(), Some("empty"));
        assert_eq!(Trie::<u8>::new().find_match("a"), None);
        // a lone malformed pattern raises in genuine trie: no match
        assert_eq!(matched(&trie_of(&["a?"]), "ab"), None);
        assert_eq!(matched(&trie_of(&["a**"]), "abc"), None);
    }

    #[test]
    fn map_operations() {
        let mut t = Trie::new();
        assert!(t.is_empty());
        assert_eq!(t.insert("a/b", 1), None);
        assert_eq!(t.insert("a/b", 2), Some(1));
        *t.entry_or_insert_with("a/b", || 10) += 1;
        *t.entry_or_insert_with("a/c", || 10) += 1;
        assert_eq!(t.get("a/b"), Some(&3));
        assert_eq!(t.get("a/c"), Some(&11));
        if let Some(v) = t.get_mut("a/c") {
            *v = 5;
        }
        assert_eq!(t.get("a"), None);
        assert_eq!(t.get("a/bc"), None);
        assert_eq!(t.len(), 2);
        assert_eq!(t.remove("a/x"), None);
        assert_eq!(t.remove("a/b"), Some(3));
        assert_eq!(t.remove("a/b"), None);
        assert_eq!(format!("{t:?}"), r#"{"a/c": 5}"#);
        assert_eq!(t.iter().len(), 1);
        assert_eq!(t.remove("a/c"), Some(5));
        assert!(t.is_empty() && t.root.children.is_empty());
    }

    /// Long shared prefixes make long chains of branches: nothing may
    /// recurse along them (checked on a small stack).
    #[test]
    fn deep_chains_do_not_recurse() {
        let run = || {
            let prefix = "a/".repeat(30_000);
            let mut t = Trie::new();
            for tail in ["1", "2", "*", ""] {
                t.insert(&format!("{prefix}{tail}"), tail.len());
            }
            assert_eq!(
                matched(&t, &format!("{prefix}1")).map(str::len),
                Some(60_001)
            );
            assert_eq!(
                matched(&t, &format!("{prefix}xy")).map(str::len),
                Some(60_001)
            );
            assert_eq!(matched(&t, &prefix[..1000]), None);
            assert_eq!(t.remove(&format!("{prefix}2")), Some(1));
            assert_eq!(t.remove(&format!("{prefix}*")), Some(1));
            assert_eq!(t.len(), 2);
            assert_eq!(t.remove(&prefix), Some(0));
            assert_eq!(
                t.root.children.nodes()[0].children.len(),
                0,
                "back to one leaf"
            );
            t.insert(&format!("{prefix}3"), 1);
            let copy = t.clone();
            drop(t);
            assert_eq!(copy.len(), 2);
            assert_eq!(copy.get(&format!("{prefix}3")), Some(&1));
            drop(copy);
        };
        std::thread::Builder::new()
            .stack_size(256 * 1024)
            .spawn(run)
            .expect("spawn")
            .join()
            .expect("deep chains");
    }

    /// Stores `{prefix}{i}` => i for i in 0..n; their ids, in that order.
    fn store_numbered(t: &mut Trie<usize>, prefix: &str, n: usize) -> Vec<EntryId> {
        (0..n)
            .map(|i| t.id_or_insert_with(&format!("{prefix}{i}"), || i).0)
            .collect()
    }

    #[test]
    fn entry_slots_are_reused_and_given_back() {
        let mut t = Trie::new();
        let ids = store_numbered(&mut t, "g", 600);
        assert_eq!(t.entries.chunks.len(), 3, "600 entries in chunks of 256");
        assert_eq!(t.remove_by_id(ids[10]), Some(10));
        assert_eq!(t.get_by_id(ids[10]), None, "a removed handle reads nothing");
        assert_eq!(t.remove_by_id(ids[10]), None);
        let (again, _) = t.id_or_insert_with("new", || 1000);
        assert_eq!(again, ids[10], "the freed slot is reused");
        assert_eq!(t.entries.chunks.len(), 3);
        assert_eq!(t.get_by_id(again), Some(("new", &1000)));
        for (i, id) in ids.iter().enumerate().filter(|&(i, _)| i != 10) {
            assert_eq!(t.remove_by_id(*id), Some(i));
        }
        assert_eq!(t.remove("new"), Some(1000));
        assert!(t.is_empty());
        assert!(t.entries.chunks.is_empty() && t.entries.free.is_empty());
        check_shape(&t);
    }

    #[test]
    fn last_chunks_are_given_back_when_vacant() {
        let mut t = Trie::new();
        let ids = store_numbered(&mut t, "g", 1000);
        assert_eq!(t.entries.chunks.len(), 4);
        // All but the first chunk's keys go, scrambled (as a node down).
        for i in (0..1000).map(|i| (i * 7919) % 1000).filter(|&i| i >= 256) {
            assert_eq!(t.remove_by_id(ids[i]), Some(i));
        }
        assert_eq!(t.entries.chunks.len(), 1, "three vacant chunks given back");
        assert_eq!(t.entries.used, 256);
        assert!(t.entries.free.is_empty(), "no stale id kept");
        assert!(
            t.entries.free.capacity() < 1000,
            "{}",
            t.entries.free.capacity()
        );
        // Still all there, and new keys take new slots after them.
        for (i, id) in ids.iter().enumerate().take(256) {
            assert_eq!(t.get_by_id(*id), Some((format!("g{i}").as_str(), &i)));
        }
        let again = store_numbered(&mut t, "h", 300);
        assert_eq!(again[0], ids[256], "the first slot past the chunk kept");
        assert_eq!(t.entries.chunks.len(), 3);
        // A chunk given back while the free list holds more live slots
        // than stale ids: those are kept there, skipped when popped.
        for id in &ids[..100] {
            t.remove_by_id(*id);
        }
        for id in &again[256..] {
            t.remove_by_id(*id);
        }
        assert_eq!((t.entries.chunks.len(), t.entries.used), (2, 512));
        assert_eq!((t.entries.free.len(), t.entries.stale), (144, 44));
        let reused = store_numbered(&mut t, "r", 101);
        assert_eq!(
            &reused[..100],
            &ids[..100],
            "the free slots first, lowest first"
        );
        assert_eq!(
            reused[100], again[256],
            "then a new slot, the stale ids skipped"
        );
        assert_eq!((t.entries.free.len(), t.entries.stale), (0, 0));
        assert_eq!(t.len(), 256 + 256 + 1);
        check_shape(&t);
    }

    #[test]
    fn remembered_searches_follow_each_key_set() {
        let mut t = Trie::new();
        t.insert("a/*", 1);
        let found = |t: &Trie<u32>, name| t.find_match(name).map(|(k, v)| (k.to_owned(), *v));
        assert_eq!(found(&t, "a/bc"), Some(("a/*".into(), 1)));
        // A more specific pattern stored: the name finds it at once.
        t.insert("a/b*", 2);
        assert_eq!(found(&t, "a/bc"), Some(("a/b*".into(), 2)));
        // A copy, then each changed its own way: each answers for its keys.
        let mut copy = t.clone();
        assert_eq!(found(&copy, "a/bc"), Some(("a/b*".into(), 2)));
        copy.remove("a/b*");
        t.remove("a/*");
        assert_eq!(found(&copy, "a/bc"), Some(("a/*".into(), 1)));
        assert_eq!(found(&t, "a/bc"), Some(("a/b*".into(), 2)));
        // The id of a removed key given to another: not the old answer.
        t.remove("a/b*");
        assert_eq!(found(&t, "a/bc"), None);
        t.insert("x/*", 3);
        assert_eq!(found(&t, "a/bc"), None);
        assert_eq!(found(&t, "x/bc"), Some(("x/*".into(), 3)));
        // A value changed in place is read at each lookup.
        *t.get_mut("x/*").unwrap() = 4;
        assert_eq!(found(&t, "x/bc"), Some(("x/*".into(), 4)));
    }

    #[test]
    fn exact_index_finds_every_key_and_shrinks() {
        let mut t = Trie::new();
        let ids = store_numbered(&mut t, "g/", 10_000);
        t.insert("g/*", 0);
        let big = t.exact.capacity();
        assert!(big >= 10_001);
        for (i, id) in ids.iter().enumerate().skip(10) {
            assert_eq!(t.remove_by_id(*id), Some(i));
        }
        assert!(t.exact.capacity() < big / 16, "{}", t.exact.capacity());
        for (i, id) in ids.iter().enumerate().take(10) {
            let name = format!("g/{i}");
            assert_eq!(t.id(&name), Some(*id));
            // a stored name finds itself, another one the pattern
            assert_eq!(t.find_match(&name), Some((name.as_str(), &i)));
        }
        assert_eq!(t.find_match("g/10").map(|(k, _)| k), Some("g/*"));
        assert_eq!(t.find_match(""), None);
        t.remove("g/*");
        assert_eq!(t.find_match("g/10"), None);
        assert_eq!(t.patterns, 0);
        for i in 0..10 {
            t.remove(&format!("g/{i}"));
        }
        assert!(t.is_empty());
        assert_eq!(t.exact.capacity(), 0, "an empty trie gives its index back");
    }

    #[test]
    fn reserve_makes_room_for_a_run_of_inserts() {
        let mut t = Trie::new();
        store_numbered(&mut t, "a/", 10);
        t.reserve(5_000);
        let cap = t.exact.capacity();
        assert!(cap >= 5_010);
        let ids = store_numbered(&mut t, "b/", 5_000);
        assert_eq!(t.exact.capacity(), cap, "no growth on the way");
        assert_eq!(t.id("b/4999"), Some(ids[4999]));
        assert_eq!(t.get("a/9"), Some(&9));
    }

    #[test]
    fn bulk_freed_ids_are_reused_in_table_order() {
        let mut t = Trie::new();
        let ids = store_numbered(&mut t, "g", 1000);
        // Freed in a scrambled order (as a node down frees its groups in
        // pid order), all but one so the table stays.
        for i in (1..1000).map(|i| (i * 7919) % 1000).filter(|&i| i != 0) {
            assert_eq!(t.remove_by_id(ids[i]), Some(i));
        }
        let again = store_numbered(&mut t, "h", 999);
        let mut sorted = again.clone();
        sorted.sort();
        assert_eq!(again, sorted, "reused lowest first, in table order");
        assert_eq!(t.entries.chunks.len(), 4, "no slot added");
        // A few frees since the sort are reused last freed first.
        assert_eq!(t.remove_by_id(again[5]), Some(5));
        assert_eq!(t.remove_by_id(again[3]), Some(3));
        assert_eq!(t.id_or_insert_with("x", || 0).0, again[3]);
        assert_eq!(t.id_or_insert_with("y", || 0).0, again[5]);
        check_shape(&t);
    }

    #[test]
    fn insert_absent_stores_as_insert_does() {
        let keys = ["a/b", "a/c", "a", "a/*", "b?", "", "a/b/c"];
        let mut by_insert = Trie::new();
        let mut by_absent = Trie::new();
        for (i, k) in keys.iter().enumerate() {
            by_insert.insert(k, i);
            let id = by_absent.insert_absent(k, i);
            assert_eq!(by_absent.get_by_id(id), Some((*k, &i)));
            assert_eq!(by_absent.id(k), Some(id));
            check_shape(&by_absent);
        }
        for name in ["a/b", "a/x", "bz", "a/b/c", "", "q"] {
            assert_eq!(
                by_absent.find_match(name),
                by_insert.find_match(name),
                "{name}"
            );
        }
        assert_eq!(by_absent.len(), keys.len());
    }

    // ---- property tests -------------------------------------------------

    /// Checks the shape invariants and returns the number of keys below.
    fn check_node<V>(entries: &Entries<V>, node: &Node, prefix: &mut String, root: bool) -> usize {
        if let Some(e) = node.value.map(|id| entries.at(id)) {
            assert!(
                e.key.starts_with(prefix.as_str()),
                "{:?} under {prefix:?}",
                e.key
            );
            if !node.children.is_empty() {
                assert_eq!(&*e.key, prefix.as_str());
            }
        }
        if !root && node.children.is_empty() {
            assert!(node.value.is_some(), "empty leaf under {prefix:?}");
        }
        assert!(node.children.chars().windows(2).all(|w| w[0] < w[1]));
        let mut count = usize::from(node.value.is_some());
        for (c, child) in node.children.iter() {
            prefix.push(c);
            count += check_node(entries, child, prefix, false);
            prefix.pop();
        }
        if !root && !node.children.is_empty() {
            assert!(count >= 2, "branch {prefix:?} holds {count} key");
        }
        assert_eq!(node.count() as usize, count, "count of {prefix:?}");
        let wild = node.child(WILDCARD_ANY).is_some() || node.child(WILDCARD_SHORT).is_some();
        assert_eq!(
            node.has_wildcard_child(),
            wild,
            "wildcard bit of {prefix:?}"
        );
        count
    }

    fn check_shape<V>(trie: &Trie<V>) {
        assert_eq!(
            check_node(&trie.entries, &trie.root, &mut String::new(), true),
            trie.len()
        );
        check_entries(&trie.entries, trie.len());
    }

    /// The entry table's counts against its slots: every chunk's live
    /// count, the total, the last chunk holding something, every vacant
    /// slot handed out on the free list once, the stale ids counted.
    fn check_entries<V>(e: &Entries<V>, len: usize) {
        assert_eq!(e.live.len(), e.chunks.len());
        let mut live = 0;
        for (c, chunk) in e.chunks.iter().enumerate() {
            let n = chunk.iter().filter(|s| s.is_some()).count();
            assert_eq!(usize::from(e.live[c]), n, "chunk {c}");
            live += n;
        }
        assert_eq!(live, len);
        assert_ne!(e.live.last(), Some(&0), "a vacant last chunk is given back");
        assert!(
            e.used <= e.chunks.len() * CHUNK && e.used + CHUNK > e.chunks.len() * CHUNK
                || e.chunks.is_empty()
        );
        let stale = e.free.iter().filter(|id| id.index() >= e.used).count();
        assert_eq!(stale, e.stale);
        let mut free: Vec<usize> = e
            .free
            .iter()
            .map(|id| id.index())
            .filter(|&i| i < e.used)
            .collect();
        free.sort_unstable();
        free.dedup();
        let vacant: Vec<usize> = (0..e.used)
            .filter(|&i| e.chunks[i / CHUNK][i % CHUNK].is_none())
            .collect();
        assert_eq!(free, vacant);
        assert_eq!(e.free.len() - stale, vacant.len(), "no id twice");
    }

    /// A naive model of the genuine lookup: the same rule, but over a sorted
    /// list of keys, finding each branch by scanning the keys that share its
    /// prefix (no tree, no leaf bookkeeping).
    struct Model<'k> {
        keys: &'k [String],
    }

    impl<'k> Model<'k> {
        /// The keys (a sorted sub-slice) continuing `keys` with `c` at byte
        /// `depth`.
        fn branch(keys: &'k [String], depth: usize, c: char) -> &'k [String] {
            let at = |k: &String| k.get(depth..).and_then(|s| s.chars().next());
            let start = keys.iter().position(|k| at(k) == Some(c));
            let Some(start) = start else { return &[] };
            let len = keys[start..]
                .iter()
                .take_while(|k| at(k) == Some(c))
                .count();
            &keys[start..start + len]
        }

        fn ends_at(keys: &'k [String], depth: usize) -> Option<&'k str> {
            keys.iter().find(|k| k.len() == depth).map(String::as_str)
        }

        fn lone(key: &str, from: usize, name: &str) -> bool {
            pattern::match_suffix(&key[from..], name, false) == Ok(true)
        }

        fn find(&self, name: &str) -> Option<&'k str> {
            let keys = match self.keys.first() {
                Some(k) if k.is_empty() => &self.keys[1..],
                _ => self.keys,
            };
            if keys.is_empty() {
                return None;
            }
            Self::node(keys, 0, name)
        }

        fn node(keys: &'k [String], depth: usize, name: &str) -> Option<&'k str> {
            let h = name.chars().next()?;
            let t = &name[h.len_utf8()..];
            let below = depth + h.len_utf8();
            let b = Self::branch(keys, depth, h);
            let literal = match b {
                [] => None,
                [k] => {
                    let hit = if t.is_empty() {
                        k.len() == below
                    } else {
                        Self::lone(k, below, t)
                    };
                    hit.then_some(k.as_str())
                }
                _ if t.is_empty() => Self::ends_at(b, below),
                _ => Self::node(b, below, t),
            };
            literal
                .or_else(|| Self::short(keys, depth, name))
                .or_else(|| Self::any(keys, depth, name))
        }

        fn short(keys: &'k [String], depth: usize, name: &str) -> Option<&'k str> {
            let b = Self::branch(keys, depth, '?');
            let below = depth + 1;
            match b {
                [] => return None,
                [k] => return (k.len() > below && Self::lone(k, depth, name)).then_some(k),
                _ => {}
            }
            let chars: Vec<char> = name.chars().collect();
            let first = chars[0];
            let fb = Self::branch(b, below, first);
            let skip = fb.len() == 1 || Self::ends_at(fb, below + first.len_utf8()).is_some();
            let mut offset = first.len_utf8();
            for &c in &chars[1..] {
                offset += c.len_utf8();
                if skip && c == first {
                    continue;
                }
                let after = &name[offset..];
                let next = below + c.len_utf8();
                match Self::branch(b, below, c) {
                    [] => {}
                    [k] if Self::lone(k, next, after) => return Some(k),
                    [_] => {}
                    many => return Self::node(many, next, after),
                }
            }
            None
        }

        fn any(keys: &'k [String], depth: usize, name: &str) -> Option<&'k str> {
            let b = Self::branch(keys, depth, '*');
            let below = depth + 1;
            match b {
                [] => return None,
                [k] => return Self::lone(k, depth, name).then_some(k),
                _ => {}
            }
            for (i, c) in name.char_indices().skip(1) {
                let after = &name[i + c.len_utf8()..];
                let next = below + c.len_utf8();
                let found = match Self::branch(b, below, c) {
                    [] => None,
                    [k] => Self::lone(k, next, after).then_some(k.as_str()),
                    many => Self::node(many, next, after),
                };
                if found.is_some() {
                    return found;
                }
            }
            Self::ends_at(b, below)
        }
    }

    /// `.+` for both wildcards: what every answer of the genuine lookup
    /// satisfies, whatever the neighbours.
    fn plus_matches(pattern: &[char], name: &[char]) -> bool {
        match pattern.split_first() {
            None => name.is_empty(),
            Some((&c, rest)) if pattern::is_wildcard(c) => {
                (1..=name.len()).any(|n| plus_matches(rest, &name[n..]))
            }
            Some((&c, rest)) => name.first() == Some(&c) && plus_matches(rest, &name[1..]),
        }
    }

    /// A valid key over `alphabet` (literals) plus `*` and `?`.
    fn key_strategy(alphabet: &'static [char]) -> impl Strategy<Value = String> {
        let symbol = prop_oneof![
            6 => proptest::sample::select(alphabet),
            2 => Just('*'),
            2 => Just('?'),
        ];
        proptest::collection::vec(symbol, 1..8).prop_map(|chars| {
            let mut key = String::new();
            for c in chars {
                // no two wildcards in a row
                if !(pattern::is_wildcard(c) && key.ends_with(pattern::is_wildcard)) {
                    key.push(c);
                }
            }
            if key.ends_with('?') {
                key.pop();
                key.push('*');
            }
            key
        })
    }

    /// Names: random strings, and stored keys with their wildcards filled.
    fn names(keys: &[String], alphabet: &'static [char]) -> impl Strategy<Value = Vec<String>> {
        let keys = keys.to_vec();
        let random = proptest::collection::vec(proptest::sample::select(alphabet), 1..10)
            .prop_map(|cs| cs.into_iter().collect::<String>());
        let filled = (
            proptest::sample::select(keys),
            proptest::collection::vec(
                proptest::collection::vec(proptest::sample::select(alphabet), 1..4),
                8,
            ),
        )
            .prop_map(|(key, fills)| {
                let mut fills = fills.into_iter().cycle();
                let mut name = String::new();
                for c in key.chars() {
                    if pattern::is_wildcard(c) {
                        name.extend(fills.next().unwrap_or_default());
                    } else {
                        name.push(c);
                    }
                }
                name
            });
        proptest::collection::vec(prop_oneof![random, filled], 1..24)
    }

    const ASCII: &[char] = &['a', 'b', '/'];
    const WIDE: &[char] = &['a', 'ü', '组', '/'];

    fn lookup_case(alphabet: &'static [char]) -> impl Strategy<Value = (Vec<String>, Vec<String>)> {
        proptest::collection::btree_set(key_strategy(alphabet), 1..10).prop_flat_map(move |keys| {
            let keys: Vec<String> = keys.into_iter().collect();
            let names = names(&keys, alphabet);
            (Just(keys), names)
        })
    }

    fn check_lookups(keys: &[String], names: &[String]) -> Result<(), TestCaseError> {
        let trie: Trie<usize> = keys.iter().enumerate().map(|(i, k)| (k, i)).collect();
        check_shape(&trie);
        let model = Model { keys };
        for name in names {
            let got = trie.find_match(name);
            prop_assert_eq!(got.map(|(k, _)| k), model.find(name), "name {:?}", name);
            if let Some((key, &i)) = got {
                prop_assert_eq!(key, keys[i].as_str());
                let (p, n): (Vec<char>, Vec<char>) =
                    (key.chars().collect(), name.chars().collect());
                prop_assert!(plus_matches(&p, &n), "{:?} returned for {:?}", key, name);
            }
            if trie.contains_key(name) {
                prop_assert_eq!(got.map(|(k, _)| k), Some(name.as_str()));
            }
        }
        // The exact index answers as the walk does: a stored name wins.
        for name in names.iter().chain(keys) {
            if !name.is_empty() && !pattern::is_pattern(name) {
                let walked = trie.search(name, false).map(|(k, _)| k);
                prop_assert_eq!(trie.find_match(name).map(|(k, _)| k), walked, "{:?}", name);
            }
        }
        for key in keys {
            let alone = trie_of(&[key]);
            for name in names {
                prop_assert_eq!(
                    matched(&alone, name).is_some(),
                    pattern_matches(key, name),
                    "key {:?} alone, name {:?}",
                    key,
                    name
                );
            }
        }
        Ok(())
    }

    #[derive(Debug, Clone)]
    enum Op {
        Insert(String, u32),
        Remove(String),
        /// Removed by its handle.
        RemoveById(String),
        Bump(String),
    }

    fn ops(alphabet: &'static [char]) -> impl Strategy<Value = Vec<Op>> {
        let key = prop_oneof![
            3 => key_strategy(alphabet),
            1 => proptest::collection::vec(proptest::sample::select(alphabet), 0..5)
                .prop_map(|cs| cs.into_iter().collect::<String>()),
        ];
        let op = prop_oneof![
            3 => (key.clone(), any::<u32>()).prop_map(|(k, v)| Op::Insert(k, v)),
            1 => key.clone().prop_map(Op::Remove),
            1 => key.clone().prop_map(Op::RemoveById),
            1 => key.prop_map(Op::Bump),
        ];
        proptest::collection::vec(op, 1..60)
    }

    fn check_ops(ops: &[Op]) -> Result<(), TestCaseError> {
        let mut trie = Trie::new();
        let mut model: BTreeMap<String, u32> = BTreeMap::new();
        for op in ops {
            match op {
                Op::Insert(k, v) => {
                    prop_assert_eq!(trie.insert(k, *v), model.insert(k.clone(), *v))
                }
                Op::Remove(k) => prop_assert_eq!(trie.remove(k), model.remove(k)),
                Op::RemoveById(k) => {
                    let removed = trie.id(k).and_then(|id| trie.remove_by_id(id));
                    prop_assert_eq!(removed, model.remove(k));
                }
                Op::Bump(k) => {
                    let t = trie.entry_or_insert_with(k, || 7);
                    *t = t.wrapping_add(1);
                    let m = model.entry(k.clone()).or_insert(7);
                    *m = m.wrapping_add(1);
                }
            }
            check_shape(&trie);
            let copy = trie.clone();
            check_shape(&copy);
            prop_assert!(copy.iter().eq(trie.iter()));
            prop_assert_eq!(trie.len(), model.len());
            // the exact index holds every key once; the pattern count is right
            prop_assert_eq!(trie.exact.len(), model.len());
            prop_assert_eq!(copy.exact.len(), model.len());
            let patterns = model.keys().filter(|k| pattern::is_pattern(k)).count();
            prop_assert_eq!(trie.patterns as usize, patterns);
            prop_assert!(trie.iter().eq(model.iter().map(|(k, v)| (k.as_str(), v))));
            let keys: Vec<String> = model.keys().cloned().collect();
            // every stored key has its own handle, which reads it back
            let mut ids = std::collections::BTreeSet::new();
            for k in &keys {
                let id = trie.id(k);
                prop_assert!(id.is_some_and(|id| ids.insert(id)), "one handle per key");
                let by_id = id.and_then(|id| trie.get_by_id(id));
                prop_assert_eq!(by_id, Some((k.as_str(), &model[k])));
                // a copy's index finds its keys under the same ids
                prop_assert_eq!(copy.id(k), id);
            }
            let touched = ops.iter().map(|op| match op {
                Op::Insert(k, _) | Op::Remove(k) | Op::RemoveById(k) | Op::Bump(k) => k,
            });
            for k in keys.iter().chain(touched) {
                prop_assert_eq!(trie.get(k), model.get(k));
                // the shape after removals is the shape of a fresh build
                let filled = k.replace(['*', '?'], "a");
                for name in [filled.clone(), format!("{filled}b/a")] {
                    let want = Model { keys: &keys }.find(&name);
                    prop_assert_eq!(trie.find_match(&name).map(|(k, _)| k), want);
                    // (again, from this thread's memo; and in the copy)
                    prop_assert_eq!(trie.find_match(&name).map(|(k, _)| k), want);
                    prop_assert_eq!(copy.find_match(&name).map(|(k, _)| k), want);
                }
            }
        }
        Ok(())
    }

    proptest! {
        #[test]
        fn lookup_agrees_with_model((keys, names) in lookup_case(ASCII)) {
            check_lookups(&keys, &names)?;
        }

        #[test]
        fn lookup_agrees_with_model_unicode((keys, names) in lookup_case(WIDE)) {
            check_lookups(&keys, &names)?;
        }

        #[test]
        fn map_agrees_with_btreemap(ops in ops(ASCII)) {
            check_ops(&ops)?;
        }

        #[test]
        fn map_agrees_with_btreemap_unicode(ops in ops(WIDE)) {
            check_ops(&ops)?;
        }

        /// Runs of inserts and removes over 700 numbered keys: the entry
        /// table across several chunks, given back and grown again.
        #[test]
        fn entry_chunks_follow_churn(
            runs in proptest::collection::vec((any::<bool>(), 0u32..700, 1u32..300), 1..16)
        ) {
            let mut t = Trie::new();
            let mut model: BTreeMap<String, u32> = BTreeMap::new();
            for (insert, start, n) in runs {
                // two keys in three of the run, from either end
                let run: Vec<u32> = (start..(start + n).min(700)).filter(|i| i % 3 != 1).collect();
                for &i in if n % 2 == 0 { run.clone() } else { run.into_iter().rev().collect() }.iter() {
                    let k = format!("k{i}");
                    if insert {
                        prop_assert_eq!(t.insert(&k, i), model.insert(k, i));
                    } else {
                        prop_assert_eq!(t.remove(&k), model.remove(&k));
                    }
                }
                check_shape(&t);
                prop_assert_eq!(t.len(), model.len());
                for (k, v) in &model {
                    prop_assert_eq!(t.get(k), Some(v));
                }
            }
        }
    }
}
