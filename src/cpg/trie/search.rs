//! One pattern lookup: the search of genuine trie's `find_match2`, over
//! the branches a name can enter.
//!
//! Genuine trie tries, at each `*` branch, every later position of the
//! name in turn, recursively: with several keys sharing a run of `*`
//! (`*a*a*a...*c` and `*a*a*a...*d`), a name such as `aaa...ab` costs
//! exponential time (32 characters: 95 ms, about tenfold with every 4
//! more). The search here
//! is the same, step for step, while it stays within [`BUDGET`] steps,
//! which every lookup of a real cluster does. Past that it starts again
//! remembering what it found at each (node, position) and at each step of
//! a `*` branch: the same answer, each of those worked out once, so the
//! time is polynomial (nodes times the name's length, times the length
//! again for `?` branches). That too is bounded ([`MEMO_BUDGET`]): a
//! search past it finds nothing, with a warning, rather than hold the
//! scope for seconds.

use super::entries::{Entries, Entry, EntryId};
use super::node::{Found, Node};
use crate::cpg::pattern::{self, Raise, WILDCARD_ANY, WILDCARD_SHORT};
use crate::util::FastHashMap;
use std::cell::{Cell, RefCell};

/// Steps (positions tried in wildcard branches) a search takes before it
/// starts again remembering its answers.
pub(super) const BUDGET: u32 = 1 << 16;

/// Steps the search remembering its answers takes at most (about 30 ms and
/// 20 MB of memo, a step per 64 bytes of the name matched or descended
/// counted too); past them it gives up and finds nothing, with a
/// warning. Only names of thousands of characters against several keys
/// sharing long runs of wildcards get there (a 100,000-character name
/// against two keys of twelve `*`: 0.9 s and 600 MB without the bound),
/// where genuine trie's search would run for longer than anyone waits.
pub(super) const MEMO_BUDGET: u32 = 1 << 18;

/// Answers remembered by a search past its budget, keyed by a node's
/// address and how much of the name is left.
#[derive(Default)]
struct Memo {
    /// What [`Search::node`] answered.
    nodes: FastHashMap<(usize, usize), Found>,
    /// What the loop of [`Search::any`] answers from a position on.
    any: FastHashMap<(usize, usize), Found>,
}

/// One lookup: the search of `find_match2`, over node branches.
pub(super) struct Search<'a, 'm, V> {
    /// The name may hold wildcards: make the checks where genuine trie
    /// raises on them.
    checked: bool,
    entries: &'a Entries<V>,
    /// Steps left before the search gives up (it unwinds with
    /// `Err(Raise)`) and starts again with a memo, or, with the memo,
    /// finds nothing ([`MEMO_BUDGET`]).
    budget: Cell<u32>,
    memo: Option<&'m RefCell<Memo>>,
}

impl<'a, V> Search<'a, '_, V> {
    /// The search of `name` from `root` (`checked`: the name may hold
    /// wildcards).
    pub(super) fn run(entries: &'a Entries<V>, root: &'a Node, name: &str, checked: bool) -> Found {
        Self::run_within(entries, root, name, checked, BUDGET)
    }

    /// [`run`](Self::run) with `budget` steps before the memo.
    pub(super) fn run_within(
        entries: &'a Entries<V>,
        root: &'a Node,
        name: &str,
        checked: bool,
        budget: u32,
    ) -> Found {
        let search = Search {
            checked,
            entries,
            budget: Cell::new(budget),
            memo: None,
        };
        let found = search.node(root, name, 0);
        if search.budget.get() > 0 {
            return found;
        }
        let memo = RefCell::new(Memo::default());
        let search = Search {
            memo: Some(&memo),
            budget: Cell::new(MEMO_BUDGET),
            ..search
        };
        let found = search.node(root, name, 0);
        if search.budget.get() > 0 {
            return found;
        }
        // At most 10 warnings a second in the process (a peer asking such
        // lookups in a loop would flood the log), each saying how many
        // were held back since the last.
        static WARNINGS: std::sync::LazyLock<std::sync::Arc<crate::util::FloodLog>> =
            std::sync::LazyLock::new(|| {
                crate::util::FloodLog::new(10, std::time::Duration::from_secs(1), |held_back| {
                    tracing::warn!(
                        held_back,
                        "{held_back} more pattern lookups that gave up were not logged (a flood, now over)"
                    );
                })
            });
        if let Some(held_back) = WARNINGS.event() {
            tracing::warn!(
                chars = name.chars().count(),
                held_back,
                "a pattern lookup gave up after {MEMO_BUDGET} steps and found nothing \
                 (the name is long and many stored patterns share runs of wildcards)"
            );
        }
        Ok(None)
    }

    /// Bytes of the name worth one step: matching a leaf's tail against
    /// the rest of the name, or descending the trie along it, costs a step
    /// per this many bytes (about what a step of the wildcard loops costs),
    /// so that a long name costs its length, not one step: without it, a
    /// 20,000-character name against keys sharing runs of `*` took 0.7 s
    /// within the step bounds (about steps times the name's length).
    const BYTES_A_STEP: usize = 64;

    /// Charges `bytes` of work on the name ([`Self::BYTES_A_STEP`]); false
    /// (and the search unwinds) once the budget is spent.
    #[inline]
    fn spend(&self, bytes: usize) -> bool {
        let cost = bytes / Self::BYTES_A_STEP;
        if cost == 0 {
            return true;
        }
        let left = self.budget.get();
        match u32::try_from(cost) {
            Ok(cost) if cost < left => {
                self.budget.set(left - cost);
                true
            }
            _ => {
                self.budget.set(0);
                false
            }
        }
    }

    /// Whether the key tail `tail` matches `rest` of the name
    /// ([`pattern::match_suffix`]), its work charged first: the length of
    /// `rest` for a tail with a wildcard (its literals are looked for in
    /// the whole rest), else of the shorter of the two (compared in turn).
    #[inline]
    fn suffix(&self, tail: &str, rest: &str) -> Result<bool, Raise> {
        let work = if rest.len() < Self::BYTES_A_STEP {
            0
        } else if pattern::is_pattern(tail) {
            rest.len()
        } else {
            tail.len().min(rest.len())
        };
        if !self.spend(work) {
            return Err(Raise);
        }
        pattern::match_suffix(tail, rest, self.checked)
    }

    /// One step taken; false (and the search unwinds) once the budget is
    /// spent.
    #[inline]
    fn step(&self) -> bool {
        let left = self.budget.get();
        if left > 0 {
            self.budget.set(left - 1);
            true
        } else {
            false
        }
    }

    pub(super) fn entry(&self, id: EntryId) -> &'a Entry<V> {
        self.entries.at(id)
    }

    /// The key of `node`, with its entry, if it is a leaf.
    pub(super) fn leaf(&self, node: &Node) -> Option<(EntryId, &'a Entry<V>)> {
        node.leaf().map(|id| (id, self.entry(id)))
    }

    /// The whole search at `node`, `depth` bytes into the keys below it.
    /// (Its steps are counted in the loops of the wildcard branches, which
    /// every call below the first comes from.)
    pub(super) fn node(&self, node: &'a Node, name: &str, depth: usize) -> Found {
        match self.memo {
            None => self.node_search(node, name, depth),
            Some(memo) => self.node_memo(memo, node, name, depth),
        }
    }

    /// [`node`](Self::node) past the budget: each (node, position) worked
    /// out once.
    #[inline(never)]
    fn node_memo(&self, memo: &RefCell<Memo>, node: &'a Node, name: &str, depth: usize) -> Found {
        let key = (node as *const Node as usize, name.len());
        if let Some(&found) = memo.borrow().nodes.get(&key) {
            return found;
        }
        let found = self.node_search(node, name, depth);
        memo.borrow_mut().nodes.insert(key, found);
        found
    }

    /// [`node`](Self::node)'s search.
    #[inline(always)]
    fn node_search(&self, node: &'a Node, name: &str, depth: usize) -> Found {
        let (mut node, mut name, mut depth) = (node, name, depth);
        // Literal steps down without a wildcard branch, charged a step per
        // BYTES_A_STEP of them.
        let mut descended = 0;
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
                        self.suffix(tail, rest)?
                    };
                    hit.then_some(id)
                } else if rest.is_empty() {
                    child.value
                } else if !wild {
                    (node, name, depth) = (child, rest, below);
                    descended += 1;
                    if descended % Self::BYTES_A_STEP == 0 && !self.step() {
                        return Err(Raise);
                    }
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
    pub(super) fn short(&self, node: &'a Node, name: &str, depth: usize) -> Found {
        let Some(wild) = node.child(WILDCARD_SHORT) else {
            return Ok(None);
        };
        let below = depth + WILDCARD_SHORT.len_utf8();
        if let Some((id, leaf)) = self.leaf(wild) {
            // A key ending with `?` is malformed and never matches here.
            if leaf.key.len() == below {
                return Ok(None);
            }
            let hit = self.suffix(&leaf.key[depth..], name)?;
            return Ok(hit.then_some(id));
        }
        let mut chars = name.chars();
        let Some(first) = chars.next() else {
            return Ok(None);
        };
        let skip_first = wild.child(first).is_some_and(|c| c.value.is_some());
        let mut rest = chars.as_str();
        loop {
            if !self.step() {
                return Err(Raise);
            }
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
                            if self.suffix(&leaf.key[next..], after)? {
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
    pub(super) fn any(&self, node: &'a Node, name: &str, depth: usize) -> Found {
        let Some(wild) = node.child(WILDCARD_ANY) else {
            return Ok(None);
        };
        if let Some((id, leaf)) = self.leaf(wild) {
            let hit = self.suffix(&leaf.key[depth..], name)?;
            return Ok(hit.then_some(id));
        }
        let below = depth + WILDCARD_ANY.len_utf8();
        let mut chars = name.chars();
        if chars.next().is_none() {
            return Ok(None);
        }
        let rest = chars.as_str();
        let Some(memo) = self.memo else {
            return self.any_from(wild, rest, below, |_| None);
        };
        // Past the budget: the loop's answer from a position on is the same
        // whichever call reached it, so each position is tried once, and
        // every position the loop went through gets its answer.
        let at = wild as *const Node as usize;
        let mut passed = Vec::new();
        let found = self.any_from(wild, rest, below, |rest| {
            let known = memo.borrow().any.get(&(at, rest.len())).copied();
            if known.is_none() {
                passed.push(rest.len());
            }
            known
        });
        let mut memo = memo.borrow_mut();
        for left in passed {
            memo.any.insert((at, left), found);
        }
        found
    }

    /// The loop of [`any`](Self::any) from `rest` on, under the `*` branch
    /// `wild` (`below` bytes into its keys); `known` gives the loop's
    /// answer from a position where it is already known.
    fn any_from(
        &self,
        wild: &'a Node,
        mut rest: &str,
        below: usize,
        mut known: impl FnMut(&str) -> Option<Found>,
    ) -> Found {
        loop {
            if let Some(found) = known(rest) {
                return found;
            }
            if !self.step() {
                return Err(Raise);
            }
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
                    Some((id, leaf)) => self.suffix(&leaf.key[next..], after)?.then_some(id),
                };
                if found.is_some() {
                    return Ok(found);
                }
            }
            rest = after;
        }
    }
}
