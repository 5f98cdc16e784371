//! Iterators over a trie's keys and values, in key order.

use super::entries::{Entries, EntryId};
use super::kids;
use super::node::Node;
use std::iter::FusedIterator;

/// Iterator over the keys and values of a [`Trie`](super::Trie), in key order; see
/// [`Trie::iter`](super::Trie::iter).
pub struct Iter<'a, V> {
    pub(super) entries: &'a Entries<V>,
    pub(super) pending: Option<EntryId>,
    pub(super) stack: Vec<kids::Iter<'a, Node>>,
    pub(super) remaining: usize,
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

/// Iterator over the keys of a [`Trie`](super::Trie), in order; see
/// [`Trie::keys`](super::Trie::keys).
pub struct Keys<'a, V> {
    pub(super) inner: Iter<'a, V>,
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
