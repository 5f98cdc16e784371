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
//! depends on it. Like genuine `trie:erase/2`, [`Trie::remove`] takes a
//! key's leaf away but never folds a branch back: a branch two keys once
//! shared stays expanded, however few keys are left below it (even none).
//! So, as on a genuine cpg node, the lookup depends on the keys that came
//! and went, not only on the stored ones: with `*c` stored, `bc` finds `*c`,
//! but not after `*cbb*` was stored and removed (the vectors in
//! `tests/data/trie_history.jsonl`, made by the genuine trie, pin this).
//! The branches kept are those of names that were stored at the same time
//! and shared a prefix; a scope that restarts starts a new trie, as a
//! genuine scope process does.
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
//! "Leaf" and "multi-key branch" above mean the shape: a branch that once
//! held two keys counts as multi-key whatever it holds now.
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
use std::sync::atomic::{AtomicU64, Ordering};

mod entries;
mod genuine;
mod iter;
mod kids;
mod memo;
mod node;
mod search;
#[cfg(test)]
mod tests;

pub use entries::EntryId;
use entries::{Entries, Entry};
pub use genuine::{GenuineBounds, GenuineTooBig};
pub use iter::{Iter, Keys};
use node::Node;
use search::Search;

use crate::cpg::pattern;
use foldhash::quality::RandomState;
use hashbrown::HashTable;
use std::hash::BuildHasher;

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
    /// Expanded branches holding no key any more, kept for the shape (see
    /// the module documentation): past [`GHOSTS_MAX`] and four times the
    /// keys, the shape is built again from the stored keys alone.
    ghosts: usize,
}

/// Empty branches kept for their shape before the trie is built again from
/// its keys (about 20 MB of them): names that shared long prefixes and
/// went leave their branches behind, in genuine trie as here, and a peer
/// making such names without end would otherwise grow the trie without
/// end.
const GHOSTS_MAX: usize = 1 << 20;

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
            ghosts: 0,
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
            entries,
            exact,
            hasher,
            patterns,
            version,
            ..
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
        self.ghosts -= Self::place(&mut self.root, &self.entries, id);
        id
    }

    /// Puts the key `id` (in `entries`) in the tree under `root`; returns
    /// how many empty branches it went through (no longer empty).
    fn place(root: &mut Node, entries: &Entries<V>, id: EntryId) -> usize {
        let key = &*entries.at(id).key;
        let mut refilled = 0;
        let mut node = root;
        let mut depth = 0;
        loop {
            if node.count() == 0 && node.is_expanded() && depth > 0 {
                refilled += 1;
            }
            node.meta += 1;
            // A leaf on the way becomes a branch (expanded for good): its
            // key moves one level down.
            if !node.is_expanded() {
                node.expand();
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
                return refilled;
            };
            depth += c.len_utf8();
            match node.index(c) {
                Ok(i) => node = &mut node.children.nodes_mut()[i],
                Err(i) => {
                    // (The list grows one at a time up to 8, then doubles.)
                    node.children.insert(i, c, Node::leaf_of(id));
                    node.children_changed(c);
                    return refilled;
                }
            }
        }
    }

    /// Builds the tree again from the stored keys alone, as a fresh trie of
    /// them would be (the ids stay): the empty branches go, and lookups
    /// answer as a genuine trie built from these keys would.
    fn rebuild(&mut self) {
        tracing::warn!(
            keys = self.len(),
            empty_branches = self.ghosts,
            "group names that came and went left too many empty trie branches: \
             the trie is built again from the stored names (pattern lookups now \
             answer as a genuine cpg scope started afresh would)"
        );
        let mut ids: Vec<EntryId> = self.root.value.take().into_iter().collect();
        self.root.dismantle(|node| ids.extend(node.value.take()));
        self.root = Node::new();
        for id in ids {
            Self::place(&mut self.root, &self.entries, id);
        }
        self.ghosts = 0;
        self.version = next_version();
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
    /// As genuine `trie:erase/2` does, the key's own leaf goes and the
    /// branches keep their shape: a branch that two keys once shared stays
    /// expanded, however few keys are left below it (even none), and
    /// [`find_match`](Self::find_match) answers by that shape, as genuine
    /// `find_match2` does (see the module documentation).
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
        let mut emptied = 0;
        loop {
            node.meta -= 1;
            if node.count() == 0 && depth > 0 {
                emptied += 1;
            }
            let Some(c) = key[depth..].chars().next() else {
                // The key ends at this expanded node (or the root).
                node.value = None;
                break;
            };
            depth += c.len_utf8();
            let Ok(i) = node.index(c) else {
                break;
            };
            if !node.children.nodes()[i].is_expanded() {
                // The key's own leaf (genuine trie empties its slot).
                node.children.remove(i);
                node.children_changed(c);
                break;
            }
            node = &mut node.children.nodes_mut()[i];
        }
        self.ghosts += emptied;
        if self.ghosts > GHOSTS_MAX && self.ghosts > 4 * self.len() {
            self.rebuild();
        }
        Some(entry.value)
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
    /// Allocates nothing but the calling thread's memo of searches (128
    /// KiB, once, on its first pattern search) and, for a search past its
    /// step budget (long names against keys sharing runs of `*`), that
    /// search's own table.
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
        // A walk, remembered per thread for the names looked up again, at
        // every trie size (why, with its measurements: [`memo`]).
        let id = memo::find(self.version, name, || self.search_id(name, false))?;
        let e = self.entries.at(id);
        Some((&e.key, &e.value))
    }

    /// The lookup of a cpg read (`cpg_data`'s `trie:find_match2` call,
    /// whose `badarg` it answers as no such group): as
    /// [`find_match`](Self::find_match). A name holding a wildcard mostly
    /// finds nothing (genuine trie raises), but where a `*` or `?` branch's
    /// scan passes over its wildcard, genuine trie finds a key and cpg
    /// answers with that group (with `a*` and `a*b*c` stored, `a/?` finds
    /// `a*`), and so does this lookup.
    pub(crate) fn find_name(&self, name: &str) -> Option<(&str, &V)> {
        // The wildcard check only where a wildcard could make a difference:
        // with no pattern stored, such a name is in no index and matches
        // nothing anyway.
        if self.patterns > 0 && pattern::is_pattern(name) {
            return self.search(name, true);
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
        Search::run(&self.entries, &self.root, name, checked).unwrap_or(None)
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
