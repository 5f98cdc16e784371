//! One pattern lookup: the search of genuine trie's `find_match2`, over
//! the branches a name can enter.

use super::entries::{Entries, Entry, EntryId};
use super::node::{Found, Node};
use crate::cpg::pattern::{self, Raise, WILDCARD_ANY, WILDCARD_SHORT};

/// One lookup: the search of `find_match2`, over node branches.
pub(super) struct Search<'a, V> {
    /// The name may hold wildcards: make the checks where genuine trie
    /// raises on them.
    pub(super) checked: bool,
    pub(super) entries: &'a Entries<V>,
}

impl<'a, V> Search<'a, V> {
    pub(super) fn entry(&self, id: EntryId) -> &'a Entry<V> {
        self.entries.at(id)
    }

    /// The key of `node`, with its entry, if it is a leaf.
    pub(super) fn leaf(&self, node: &Node) -> Option<(EntryId, &'a Entry<V>)> {
        node.leaf().map(|id| (id, self.entry(id)))
    }

    /// The whole search at `node`, `depth` bytes into the keys below it.
    pub(super) fn node(&self, node: &'a Node, name: &str, depth: usize) -> Found {
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
    pub(super) fn any(&self, node: &'a Node, name: &str, depth: usize) -> Found {
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
