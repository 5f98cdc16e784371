//! [`Kids`]: a trie node's children, sorted by character, in one
//! allocation that holds the characters first and the child nodes after
//! them.
//!
//! A lookup step reads a node's characters to find the one it follows
//! (all of them, when it counts the smaller ones), then that one child.
//! With `(char, node)` pairs side by side, as a `Vec<(char, Node)>` holds
//! them, the characters of ten children spread over four cache lines (a
//! pair is 24 bytes: 4 of character, 4 of padding, 16 of node); here they
//! sit together (40 bytes) on the line of the header, and the step reads
//! one more line for the child. In a trie larger than the cache, where
//! every level of a walk is a miss, that is fewer lines fetched per level;
//! the pair's padding goes too (20 bytes a child instead of 24).
//!
//! Like `thin_vec::ThinVec`, which it replaces, a `Kids` is one pointer:
//! to a shared, never-written empty header when there are no children
//! (most nodes are leaves), else to its own block
//! `[len: u32, cap: u32, chars: [char; cap], nodes: [T; cap]]`.

use std::alloc::{self, Layout};
use std::iter::{Copied, Zip};
use std::marker::PhantomData;
use std::ptr::{self, NonNull};
use std::slice;

/// The head of a block: how many children it holds, and room for how many.
#[repr(C)]
struct Header {
    len: u32,
    cap: u32,
}

/// The header of every empty list (capacity 0: never written, never freed).
static EMPTY: Header = Header { len: 0, cap: 0 };

/// A pointer to [`EMPTY`].
const fn empty() -> NonNull<Header> {
    // SAFETY: a static is never null; `EMPTY` is only ever read.
    unsafe { NonNull::new_unchecked(ptr::addr_of!(EMPTY).cast_mut()) }
}

/// A node's children: characters in ascending order, each with its node.
/// The order is the caller's to keep ([`insert`](Self::insert) puts a
/// child where it is told).
pub(super) struct Kids<T> {
    head: NonNull<Header>,
    _owns: PhantomData<T>,
}

// SAFETY: a `Kids<T>` owns its block and the `T`s in it, as a `Vec<T>`
// does; the shared `EMPTY` header is never written.
unsafe impl<T: Send> Send for Kids<T> {}
// SAFETY: as above; `&Kids<T>` only gives out `&T` and `&[char]`.
unsafe impl<T: Sync> Sync for Kids<T> {}

/// The children in order, as `(char, &T)`.
pub(super) type Iter<'a, T> = Zip<Copied<slice::Iter<'a, char>>, slice::Iter<'a, T>>;

impl<T> Kids<T> {
    /// No children (nothing allocated).
    pub(super) const fn new() -> Self {
        Kids {
            head: empty(),
            _owns: PhantomData,
        }
    }

    /// No children, with room for `cap` of them.
    pub(super) fn with_capacity(cap: usize) -> Self {
        let mut kids = Kids::new();
        if cap > 0 {
            kids.regrow(cap);
        }
        kids
    }

    /// The layout of a block with room for `cap` children, and where its
    /// nodes start.
    fn layout(cap: usize) -> (Layout, usize) {
        let chars = Layout::array::<char>(cap).expect("children of a trie node fit in memory");
        let nodes = Layout::array::<T>(cap).expect("children of a trie node fit in memory");
        let (head, chars_at) = Layout::new::<Header>()
            .extend(chars)
            .expect("children of a trie node fit in memory");
        let (block, nodes_at) = head
            .extend(nodes)
            .expect("children of a trie node fit in memory");
        debug_assert_eq!(chars_at, size_of::<Header>());
        debug_assert_eq!(nodes_at, Self::nodes_at(cap));
        (block.pad_to_align(), nodes_at)
    }

    /// Where the nodes start in a block of capacity `cap` (as `layout`
    /// computes it, without its overflow checks: for a block that exists).
    #[inline]
    fn nodes_at(cap: usize) -> usize {
        // alignments are powers of two: a mask rounds up
        let align = align_of::<T>();
        (size_of::<Header>() + cap * size_of::<char>() + align - 1) & !(align - 1)
    }

    fn header(&self) -> &Header {
        // SAFETY: `head` points to `EMPTY` or to a block of ours, whose
        // header is initialized from its allocation on.
        unsafe { self.head.as_ref() }
    }

    /// The number of children.
    #[inline]
    pub(super) fn len(&self) -> usize {
        self.header().len as usize
    }

    /// Whether there are no children.
    #[inline]
    pub(super) fn is_empty(&self) -> bool {
        self.header().len == 0
    }

    /// Room for how many children the block has.
    #[inline]
    pub(super) fn capacity(&self) -> usize {
        self.header().cap as usize
    }

    /// The characters' array (capacity 0: the list is `EMPTY`).
    fn chars_ptr(&self) -> *mut char {
        // SAFETY (of the `add`): the characters follow the header inside
        // the block (`layout`); for `EMPTY` this is one past its end, which
        // is only used for a capacity above 0.
        unsafe { self.head.as_ptr().cast::<u8>().add(size_of::<Header>()) }.cast()
    }

    /// The nodes' array (capacity above 0).
    fn nodes_ptr(&self) -> *mut T {
        self.nodes_ptr_in(self.capacity())
    }

    /// The nodes' array, `cap` being this block's capacity (read once by
    /// the caller).
    #[inline]
    fn nodes_ptr_in(&self, cap: usize) -> *mut T {
        let at = Self::nodes_at(cap);
        // SAFETY: `at` is inside the block `layout(cap)` describes.
        unsafe { self.head.as_ptr().cast::<u8>().add(at) }.cast()
    }

    /// The characters, ascending.
    #[inline]
    pub(super) fn chars(&self) -> &[char] {
        if self.capacity() == 0 {
            return &[];
        }
        // SAFETY: the first `len` characters of the block are initialized.
        unsafe { slice::from_raw_parts(self.chars_ptr(), self.len()) }
    }

    /// Where `c` is among the characters (`Err`: where it would go).
    #[inline]
    pub(super) fn position(&self, c: char) -> Result<usize, usize> {
        search(self.chars(), c)
    }

    /// The child of character `c`, if there is one: the step of a lookup,
    /// which reads the header once.
    #[inline]
    pub(super) fn find(&self, c: char) -> Option<&T> {
        let Header { len, cap } = *self.header();
        if len == 0 {
            return None;
        }
        // SAFETY: a list with children is a block of ours (capacity above
        // 0) whose first `len` characters and nodes are initialized.
        unsafe {
            let chars = slice::from_raw_parts(self.chars_ptr(), len as usize);
            let i = search(chars, c).ok()?;
            Some(&*self.nodes_ptr_in(cap as usize).add(i))
        }
    }

    /// The child nodes, in the order of their characters.
    #[inline]
    pub(super) fn nodes(&self) -> &[T] {
        if self.capacity() == 0 {
            return &[];
        }
        // SAFETY: the first `len` nodes of the block are initialized.
        unsafe { slice::from_raw_parts(self.nodes_ptr(), self.len()) }
    }

    /// The child nodes, mutably.
    #[inline]
    pub(super) fn nodes_mut(&mut self) -> &mut [T] {
        if self.capacity() == 0 {
            return &mut [];
        }
        // SAFETY: as `nodes`; `&mut self` makes the borrow unique.
        unsafe { slice::from_raw_parts_mut(self.nodes_ptr(), self.len()) }
    }

    /// The `i`-th child.
    pub(super) fn get(&self, i: usize) -> Option<(char, &T)> {
        Some((*self.chars().get(i)?, self.nodes().get(i)?))
    }

    /// The children in order.
    pub(super) fn iter(&self) -> Iter<'_, T> {
        self.chars().iter().copied().zip(self.nodes())
    }

    /// Moves the children to a new block with room for `cap` (at least
    /// `len`) and frees the old one.
    fn regrow(&mut self, cap: usize) {
        let len = self.len();
        assert!(cap >= len && u32::try_from(cap).is_ok(), "trie children");
        let (layout, nodes_at) = Self::layout(cap);
        // SAFETY: the layout has a non-zero size (it holds the header).
        let block = unsafe { alloc::alloc(layout) };
        let Some(head) = NonNull::new(block.cast::<Header>()) else {
            alloc::handle_alloc_error(layout);
        };
        // SAFETY: the new block is `layout(cap)`; its header, characters
        // and nodes are written before use; the old block's `len`
        // characters and nodes are moved (bitwise, once) and the old block
        // freed without dropping them.
        unsafe {
            head.as_ptr().write(Header {
                len: len as u32,
                cap: cap as u32,
            });
            if self.capacity() > 0 {
                let new_chars = block.add(size_of::<Header>()).cast::<char>();
                let new_nodes = block.add(nodes_at).cast::<T>();
                ptr::copy_nonoverlapping(self.chars_ptr(), new_chars, len);
                ptr::copy_nonoverlapping(self.nodes_ptr(), new_nodes, len);
                self.free_block();
            }
        }
        self.head = head;
    }

    /// Frees the block (capacity above 0) without dropping its nodes.
    ///
    /// # Safety
    /// The nodes must have been moved out or dropped, and `head` must be
    /// replaced before the next use.
    unsafe fn free_block(&mut self) {
        let (layout, _) = Self::layout(self.capacity());
        // SAFETY: the block was allocated with this layout (`regrow`).
        unsafe { alloc::dealloc(self.head.as_ptr().cast(), layout) };
    }

    /// Makes room for one more child: one at a time up to 16 (most nodes
    /// have a few children; a digit of numbered names branches ten or
    /// eleven ways, which doubling from 8 left in a block of 16, 120 bytes
    /// unused), then by half the capacity (amortized `O(1)` a child).
    fn room_for_one(&mut self) {
        let cap = self.capacity();
        if self.len() == cap {
            self.regrow(if cap < 16 { cap + 1 } else { cap + cap / 2 });
        }
    }

    /// Inserts `c` with its node at `i` (`i <= len`), moving the later
    /// children up.
    pub(super) fn insert(&mut self, i: usize, c: char, node: T) {
        let len = self.len();
        assert!(i <= len, "insert at {i} of {len} children");
        self.room_for_one();
        // SAFETY: the block has room for `len + 1`; the children from `i`
        // move up by one (overlapping copies), then slot `i` is written.
        unsafe {
            let chars = self.chars_ptr();
            let nodes = self.nodes_ptr();
            ptr::copy(chars.add(i), chars.add(i + 1), len - i);
            ptr::copy(nodes.add(i), nodes.add(i + 1), len - i);
            chars.add(i).write(c);
            nodes.add(i).write(node);
            self.head.as_mut().len += 1;
        }
    }

    /// Appends `c` with its node (the caller keeps the order).
    pub(super) fn push(&mut self, c: char, node: T) {
        self.insert(self.len(), c, node);
    }

    /// Removes the `i`-th child, moving the later ones down; the block is
    /// freed when the last child goes.
    pub(super) fn remove(&mut self, i: usize) -> (char, T) {
        let len = self.len();
        assert!(i < len, "remove of {i} of {len} children");
        // SAFETY: slot `i` is initialized: it is read out (moved), the
        // later children move down by one, and `len` drops by one, so
        // nothing is read or dropped twice.
        let child = unsafe {
            let chars = self.chars_ptr();
            let nodes = self.nodes_ptr();
            let child = (chars.add(i).read(), nodes.add(i).read());
            ptr::copy(chars.add(i + 1), chars.add(i), len - i - 1);
            ptr::copy(nodes.add(i + 1), nodes.add(i), len - i - 1);
            self.head.as_mut().len -= 1;
            child
        };
        if len == 1 {
            // SAFETY: no node is left in the block, and `head` moves to
            // `EMPTY` right after (no drop of the freed block).
            unsafe { self.free_block() };
            self.head = empty();
        }
        child
    }

    /// Moves every child node to the end of `out` (their characters are
    /// dropped) and frees the block, leaving no children.
    pub(super) fn drain_nodes_into(&mut self, out: &mut Vec<T>) {
        let len = self.len();
        if self.capacity() == 0 {
            return;
        }
        out.reserve(len);
        // SAFETY: the `len` nodes are read out once each (`len` is zeroed
        // first, so a panic cannot drop them again), then the block is
        // freed without dropping them and replaced by `EMPTY`.
        unsafe {
            self.head.as_mut().len = 0;
            let nodes = self.nodes_ptr();
            for i in 0..len {
                out.push(nodes.add(i).read());
            }
            self.free_block();
        }
        self.head = empty();
    }
}

impl<T> Drop for Kids<T> {
    fn drop(&mut self) {
        if self.capacity() == 0 {
            return;
        }
        // SAFETY: the `len` nodes are initialized and dropped once, then
        // the block is freed.
        unsafe {
            ptr::drop_in_place(self.nodes_mut());
            self.free_block();
        }
    }
}

/// Child lists up to this long are searched by comparing every character
/// ([`search_short`]), longer ones by binary search.
const SHORT_LIST: usize = 16;

/// Where `c` is among `chars` (ascending, no duplicates; `Err`: where it
/// would go), as `chars.binary_search(&c)` answers.
#[inline]
fn search(chars: &[char], c: char) -> Result<usize, usize> {
    if chars.len() > SHORT_LIST {
        chars.binary_search(&c)
    } else {
        search_short(chars, c)
    }
}

/// Where `c` is among `chars` (ascending, no duplicates, at most
/// [`SHORT_LIST`] of them; `Err`: where it would go), as
/// `chars.binary_search(&c)` answers.
///
/// Counting the characters below `c` reads them all, but with no load
/// waiting on another and no branch to mispredict: faster than a binary
/// search's chain of dependent loads on a list this short. A lookup step
/// makes this search at every level of its walk.
#[inline]
fn search_short(chars: &[char], c: char) -> Result<usize, usize> {
    debug_assert!(chars.len() <= SHORT_LIST);
    let at = count_below(chars, c);
    match chars.get(at) {
        Some(k) if *k == c => Ok(at),
        _ => Err(at),
    }
}

/// The number of `chars` (at most 16) below `c`, four compared at once
/// (SSE2, which every x86-64 CPU has): a list of ten takes four compares
/// where the compiler's loop took one a character (it vectorizes only
/// lists of 16 and more).
#[cfg(target_arch = "x86_64")]
#[inline]
fn count_below(chars: &[char], c: char) -> usize {
    use std::arch::x86_64::{
        __m128i, _mm_castsi128_ps, _mm_cmplt_epi32, _mm_loadu_si128, _mm_movemask_ps,
        _mm_set1_epi32,
    };
    let n = chars.len();
    if n < 4 {
        return count_below_one_by_one(chars, c);
    }
    let p = chars.as_ptr();
    // A bit per character: set where it is below `c`. The lanes are
    // compared as signed 32-bit integers, which orders chars as chars
    // (every char is at most 0x10FFFF).
    // SAFETY: SSE2 is part of x86-64. Each load reads the four chars at
    // `i..i + 4` with `i + 4 <= n`: inside the slice (unaligned loads).
    let below = unsafe {
        let key = _mm_set1_epi32(c as i32);
        let four = |i: usize| -> u32 {
            let v = _mm_loadu_si128(p.add(i).cast::<__m128i>());
            (_mm_movemask_ps(_mm_castsi128_ps(_mm_cmplt_epi32(v, key))) as u32) << i
        };
        // The first four and the last four cover up to eight characters,
        // with the second four and the four before the last up to sixteen
        // (overlapping: a character's bit is the same in every four that
        // holds it). No loop: two or four loads.
        let mut below = four(0) | four(n - 4);
        if n > 8 {
            below |= four(4) | four(n - 8);
        }
        below
    };
    // Ascending: the characters below `c` are the first ones, their bits
    // the low ones.
    (!below).trailing_zeros() as usize
}

/// The number of `chars` below `c`.
#[cfg(not(target_arch = "x86_64"))]
#[inline]
fn count_below(chars: &[char], c: char) -> usize {
    count_below_one_by_one(chars, c)
}

/// The number of `chars` below `c`, one compare a character.
#[inline]
fn count_below_one_by_one(chars: &[char], c: char) -> usize {
    chars.iter().map(|k| usize::from(*k < c)).sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::rc::Rc;

    /// A node that counts its live copies (every one must be dropped once).
    type Counted = Rc<u32>;

    fn contents(k: &Kids<Counted>) -> Vec<(char, u32)> {
        k.iter().map(|(c, n)| (c, **n)).collect()
    }

    #[test]
    fn short_search_answers_as_binary_search() {
        // every length up to 16, characters spread over the code points
        // (ASCII, two to four UTF-8 bytes, the largest), every character
        // asked with its neighbours and the extremes
        let pool: Vec<char> =
            "!/09?AZaz\u{7f}\u{e9}\u{3b1}\u{800}\u{ffff}\u{10000}\u{10fffe}\u{10ffff}"
                .chars()
                .collect();
        for n in 0..=pool.len().min(SHORT_LIST) {
            for start in 0..=pool.len() - n {
                let chars = &pool[start..start + n];
                let mut asked = vec!['\0', char::MAX];
                for &k in &pool {
                    asked.push(k);
                    asked.extend(char::from_u32(k as u32 + 1));
                    asked.extend(char::from_u32((k as u32).saturating_sub(1)));
                }
                for c in asked {
                    assert_eq!(
                        search_short(chars, c),
                        chars.binary_search(&c),
                        "{chars:?} {c:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn empty_lists_allocate_nothing() {
        let k: Kids<String> = Kids::new();
        assert!(k.is_empty());
        assert_eq!(k.capacity(), 0);
        assert_eq!(k.chars(), &[] as &[char]);
        assert!(k.nodes().is_empty());
        assert!(k.get(0).is_none());
        let k: Kids<String> = Kids::with_capacity(0);
        assert_eq!(k.capacity(), 0);
        assert_eq!(size_of::<Kids<String>>(), 8);
    }

    #[test]
    fn grows_one_at_a_time_then_by_half() {
        let mut k = Kids::new();
        let mut caps = vec![];
        for i in 0..26u32 {
            k.push(char::from_u32(0x60 + i).unwrap(), i.to_string());
            caps.push(k.capacity());
        }
        let mut want: Vec<usize> = (1..=16).collect();
        want.extend([24; 8]);
        want.extend([36; 2]);
        assert_eq!(caps, want);
        assert_eq!(k.nodes()[19], "19");
        assert_eq!(k.chars()[0], '`');
    }

    /// Nodes with a stricter alignment than the characters land aligned
    /// whatever the capacity (an odd number of characters before them).
    #[test]
    fn nodes_are_aligned() {
        for cap in 1..10 {
            let mut k: Kids<u128> = Kids::with_capacity(cap);
            k.push('a', 7);
            assert_eq!(k.nodes().as_ptr() as usize % align_of::<u128>(), 0);
            assert_eq!(k.nodes(), &[7]);
        }
    }

    #[derive(Debug, Clone)]
    enum Op {
        Insert(usize, char),
        Remove(usize),
        Drain,
        Clone,
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => (any::<usize>(), any::<char>()).prop_map(|(i, c)| Op::Insert(i, c)),
            2 => any::<usize>().prop_map(Op::Remove),
            1 => Just(Op::Drain),
            1 => Just(Op::Clone),
        ]
    }

    proptest! {
        /// Any sequence of inserts and removes leaves the same children as
        /// a `Vec` of pairs, and every node is dropped exactly once.
        #[test]
        fn behaves_as_a_vec_of_pairs(ops in proptest::collection::vec(op(), 0..200)) {
            let mut k: Kids<Counted> = Kids::new();
            let mut model: Vec<(char, u32)> = vec![];
            let mut live: Vec<Counted> = vec![];
            let mut next = 0u32;
            for op in ops {
                match op {
                    Op::Insert(i, c) => {
                        let i = i % (model.len() + 1);
                        let node = Rc::new(next);
                        live.push(node.clone());
                        k.insert(i, c, node);
                        model.insert(i, (c, next));
                        next += 1;
                    }
                    Op::Remove(i) if !model.is_empty() => {
                        let i = i % model.len();
                        let (c, n) = k.remove(i);
                        prop_assert_eq!((c, *n), model.remove(i));
                    }
                    Op::Remove(_) => {}
                    Op::Drain => {
                        let mut out = vec![];
                        k.drain_nodes_into(&mut out);
                        let want: Vec<u32> = model.drain(..).map(|(_, n)| n).collect();
                        prop_assert_eq!(out.iter().map(|n| **n).collect::<Vec<_>>(), want);
                        prop_assert!(k.is_empty() && k.capacity() == 0);
                    }
                    Op::Clone => {
                        let mut copy = Kids::with_capacity(k.len());
                        for (c, n) in k.iter() {
                            copy.push(c, n.clone());
                        }
                        prop_assert_eq!(contents(&copy), contents(&k));
                    }
                }
                prop_assert_eq!(contents(&k), model.clone());
                prop_assert_eq!(k.len(), model.len());
                prop_assert!(k.capacity() >= k.len());
                // an emptied list gives its block back
                prop_assert_eq!(k.capacity() == 0, k.is_empty());
                for (i, &(c, n)) in model.iter().enumerate() {
                    prop_assert_eq!(k.get(i).map(|(c, n)| (c, **n)), Some((c, n)));
                }
            }
            drop(k);
            // Only our own clones are left: every node in the list was
            // dropped once (a double drop would have panicked or freed).
            for n in &live {
                prop_assert_eq!(Rc::strong_count(n), 1);
            }
        }
    }
}
