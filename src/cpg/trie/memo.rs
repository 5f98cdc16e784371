//! A small per-thread memo of pattern searches: which stored key a name
//! found, for names looked up again while the trie's keys stay the same.
//!
//! A search for a name that is not stored as it is walks the trie one level
//! per character (see the module above): a chain of dependent loads and of
//! branches that change with the name, so even a small trie in cache takes
//! tens of nanoseconds ("p3/job" against 10 patterns `p<i>/*`: 27 ns on an
//! AMD EPYC VM, "p123/job" against 1k: 42 ns), and a large one more where
//! its nodes are not in cache. Services look the same names up over and
//! over (a request name, a service prefix), so each thread keeps the
//! answers of its last searches, whatever the trie's size: a repeated name
//! costs a hash, one slot and a compare of the name (10.5 ns against 10
//! patterns, 27.5 against 1k). A name the memo does not hold pays the walk
//! and the memo (13 ns more than the walk at 1k).
//!
//! The memo is exact: a slot holds the whole name (names longer than
//! [`NAME_MAX`] bytes are not memoized) and the [`version`](super::Trie) of
//! the trie it was found in, a number no other trie and no other key set
//! ever has (every insert or removal of a key takes a new one), so an
//! answer is only reused for the same key set, where the search would give
//! it again. Per thread, so readers on different cores share no line and
//! take no lock; bounded: one table of [`SETS`] sets of two slots (128 KiB,
//! allocated on a thread's first search), a name going to the first slot of
//! its set and the one there moving to the second, so two names of a set
//! are both kept and a thousand names looked up in turn all stay.

use super::EntryId;
use foldhash::fast::FixedState;
use std::cell::RefCell;
use std::hash::BuildHasher;

/// Sets of two slots per thread (a power of two).
pub(super) const SETS: usize = 1024;

/// The longest name memoized, in bytes (a slot is then one cache line).
pub(super) const NAME_MAX: usize = 51;

/// One remembered search.
#[derive(Clone, Copy)]
#[repr(C, align(64))]
struct Slot {
    /// The trie version it holds for (0: empty).
    version: u64,
    /// What the search found.
    found: Option<EntryId>,
    /// The name's length, then its bytes.
    len: u8,
    name: [u8; NAME_MAX],
}

impl Slot {
    const EMPTY: Slot = Slot {
        version: 0,
        found: None,
        len: 0,
        name: [0; NAME_MAX],
    };

    /// Whether this slot holds `name` in the trie at `version`.
    fn holds(&self, version: u64, name: &[u8]) -> bool {
        self.version == version && self.holds_name(name)
    }

    /// Whether this slot holds `name` (in whatever key set).
    fn holds_name(&self, name: &[u8]) -> bool {
        &self.name[..usize::from(self.len)] == name
    }
}

thread_local! {
    /// `2 * SETS` slots, a set's two side by side (allocated on first use).
    static MEMO: RefCell<Box<[Slot]>> = RefCell::new(Box::default());
}

/// The first slot of `name`'s set.
fn set_of(name: &str) -> usize {
    // Not seeded: a name that collides only costs the search it would have
    // made without a memo.
    ((FixedState::default().hash_one(name) as usize) & (SETS - 1)) * 2
}

/// What `search` finds for `name` in the trie at `version`, from this
/// thread's memo when it holds the answer, else by the search (and then
/// remembered).
pub(super) fn find(
    version: u64,
    name: &str,
    search: impl FnOnce() -> Option<EntryId>,
) -> Option<EntryId> {
    if name.len() > NAME_MAX {
        return search();
    }
    let at = set_of(name);
    let bytes = name.as_bytes();
    let hit = MEMO.try_with(|memo| {
        let memo = memo.borrow();
        let set = memo.get(at..at + 2)?;
        set.iter()
            .find(|slot| slot.holds(version, bytes))
            .map(|slot| slot.found)
    });
    if let Ok(Some(found)) = hit {
        return found;
    }
    // The search runs with the memo let go (it does not use it, but a
    // borrow held across foreign code is one to avoid).
    let found = search();
    let _ = MEMO.try_with(|memo| {
        let Ok(mut memo) = memo.try_borrow_mut() else {
            return;
        };
        if memo.is_empty() {
            *memo = vec![Slot::EMPTY; 2 * SETS].into_boxed_slice();
        }
        // The newest first: the one there moves to the second slot, unless
        // it is this name's answer in an older key set (replaced in place,
        // so that the set's other name is kept).
        if !memo[at].holds_name(bytes) {
            memo[at + 1] = memo[at];
        }
        let slot = &mut memo[at];
        slot.version = version;
        slot.found = found;
        slot.len = bytes.len() as u8;
        slot.name[..bytes.len()].copy_from_slice(bytes);
    });
    found
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::num::NonZeroU32;

    fn id(n: u32) -> Option<EntryId> {
        NonZeroU32::new(n).map(EntryId)
    }

    #[test]
    fn a_slot_is_one_cache_line() {
        assert_eq!(std::mem::size_of::<Slot>(), 64);
    }

    #[test]
    fn answers_are_kept_per_version_and_whole_name() {
        let searches = std::cell::Cell::new(0);
        let find_counting = |version, name: &str, answer| {
            find(version, name, || {
                searches.set(searches.get() + 1);
                answer
            })
        };
        assert_eq!(find_counting(7, "a/b", id(3)), id(3));
        // Remembered: the search is not made again.
        assert_eq!(find_counting(7, "a/b", id(9)), id(3));
        // Another version, another name (also one sharing a prefix, also
        // a longer one): searched.
        assert_eq!(find_counting(8, "a/b", id(4)), id(4));
        assert_eq!(find_counting(8, "a/", None), None);
        assert_eq!(find_counting(8, "a/bc", id(5)), id(5));
        assert_eq!(find_counting(8, "a/", id(6)), None);
        assert_eq!(searches.get(), 4);
    }

    #[test]
    fn a_new_answer_for_a_name_keeps_the_other_name_of_its_set() {
        // Two names of one set.
        let a = "a/b";
        let b = (0..)
            .map(|i| format!("n{i}"))
            .find(|n| set_of(n) == set_of(a))
            .unwrap();
        find(1, &b, || id(2));
        find(1, a, || id(1));
        // The key set changed: `a` searched again, `b` still held.
        assert_eq!(find(2, a, || id(3)), id(3));
        assert_eq!(find(1, &b, || id(9)), id(2));
        assert_eq!(find(2, a, || id(9)), id(3));
    }

    #[test]
    fn long_names_are_always_searched() {
        let long = "x".repeat(NAME_MAX + 1);
        let mut searches = 0;
        for _ in 0..3 {
            find(1, &long, || {
                searches += 1;
                id(1)
            });
        }
        assert_eq!(searches, 3);
        let fits = "y".repeat(NAME_MAX);
        assert_eq!(find(1, &fits, || id(2)), id(2));
        assert_eq!(find(1, &fits, || id(3)), id(2));
    }
}
