//! A node of the trie: its entry, its count and wildcard bit, its children.

use super::entries::EntryId;
use super::kids::Kids;
use crate::cpg::pattern::{self, Raise, WILDCARD_ANY, WILDCARD_SHORT};

/// A trie node: a slot of genuine trie's node tuples. Invariants (all but
/// the root):
/// - a node not [`EXPANDED`] is a *leaf* (genuine trie's slot holding the
///   rest of its one key, `{Tail, Value}`): no children, its `value` is
///   `Some`, and the entry's key is the one key of this branch, at least as
///   long as the node's depth;
/// - an [`EXPANDED`] node (a slot holding a node tuple) has held two keys
///   in its subtree at some time; it stays expanded when they go, as
///   genuine `trie:erase/2` leaves it (however few keys are left below, even
///   none), and genuine `find_match2` answers by that shape; its `value` is
///   the key that ends exactly at this node, if any.
///
/// The root is never a leaf; its `value` is the empty key.
///
/// The entry sits in the trie's [`Entries`](super::entries::Entries), named by its [`EntryId`]:
/// most nodes (every inner node of a long shared prefix) hold none, and a
/// node sits inline in its parent's `children`, so an inline entry would
/// make every node, and every spare slot of a `children` vector, as big as
/// a group. For the same reason the child list is one pointer ([`Kids`]): a
/// node is 16 bytes, 20 in its parent's list (with its character).
pub(super) struct Node {
    pub(super) value: Option<EntryId>,
    /// The number of keys in this subtree, `value` included (fewer than
    /// 2^30); in the top bit ([`WILD`]) whether a `*` or `?` branch
    /// leaves this node: a lookup asks at every node it passes, and a
    /// search of the children for both would cost two binary searches
    /// wherever a child sorts below `?` (digits, `/`, `-`, ...); in the
    /// next bit ([`EXPANDED`]) whether the node is expanded.
    pub(super) meta: u32,
    /// Sorted by `char`, no duplicates; one pointer (nothing allocated for
    /// a leaf), the characters apart from the nodes (see [`kids`](super::kids)).
    pub(super) children: Kids<Node>,
}

/// The bit of [`Node::meta`] that says a wildcard branch leaves the node.
pub(super) const WILD: u32 = 1 << 31;

/// The bit of [`Node::meta`] that says the node is expanded: it got a
/// child once (a second key came through it), and is never a leaf again.
pub(super) const EXPANDED: u32 = 1 << 30;

/// The bits of [`Node::meta`] that are not the count.
const FLAGS: u32 = WILD | EXPANDED;

/// A search's answer: the key found (none), or a wildcard in the name
/// where genuine trie raises.
pub(super) type Found = Result<Option<EntryId>, Raise>;

impl Node {
    pub(super) const fn new() -> Self {
        Node {
            value: None,
            meta: 0,
            children: Kids::new(),
        }
    }

    pub(super) fn leaf_of(id: EntryId) -> Self {
        Node {
            value: Some(id),
            meta: 1,
            children: Kids::new(),
        }
    }

    /// Where `c` is among the children (`Err`: where it would go).
    #[inline]
    pub(super) fn index(&self, c: char) -> Result<usize, usize> {
        self.children.position(c)
    }

    #[inline]
    pub(super) fn child(&self, c: char) -> Option<&Node> {
        self.children.find(c)
    }

    /// The single key of this branch, if it is a leaf.
    #[inline]
    pub(super) fn leaf(&self) -> Option<EntryId> {
        if self.is_expanded() {
            None
        } else {
            self.value
        }
    }

    /// Whether the node is expanded ([`EXPANDED`]).
    #[inline]
    pub(super) fn is_expanded(&self) -> bool {
        self.meta & EXPANDED != 0
    }

    /// Marks the node expanded (it gets a child).
    #[inline]
    pub(super) fn expand(&mut self) {
        self.meta |= EXPANDED;
    }

    /// The number of keys in this subtree.
    pub(super) fn count(&self) -> u32 {
        self.meta & !FLAGS
    }

    /// Whether a `*` or `?` branch leaves this node.
    pub(super) fn has_wildcard_child(&self) -> bool {
        self.meta & WILD != 0
    }

    /// Sets the wildcard bit again after the child `c` was added or
    /// removed (only a `*` or `?` child can change it).
    pub(super) fn children_changed(&mut self, c: char) {
        if !pattern::is_wildcard(c) {
            return;
        }
        let wild = self.child(WILDCARD_ANY).is_some() || self.child(WILDCARD_SHORT).is_some();
        self.meta = (self.meta & !WILD) | if wild { WILD } else { 0 };
    }

    /// Moves every node below this one out and drops it, without
    /// recursion, showing each to `f` first.
    pub(super) fn dismantle(&mut self, mut f: impl FnMut(&mut Node)) {
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
