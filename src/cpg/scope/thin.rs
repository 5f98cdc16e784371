//! [`ThinList`]: a short vector behind one pointer, with its length and
//! capacity inside its allocation, for the group handles of a pid in a few
//! groups ([`Names::Few`](super::index::Names)).
//!
//! A `Box<Vec<T>>` (what `Names::Few` held before) is two allocations, the
//! vector's 24-byte header and its items; a pid in ten groups of a trie
//! scope paid 24 + 40 bytes. Here it is one block of 4 + 40 bytes, and the
//! pointer in the pid index entry stays 8 bytes (a `Box<[T]>` would make
//! every entry 8 bytes larger, pids in one group included).

use std::alloc::{self, Layout};
use std::fmt;
use std::marker::PhantomData;
use std::mem::ManuallyDrop;
use std::ptr::{self, NonNull};
use std::slice;

/// The head of a block: how many items it holds, and room for how many.
#[repr(C)]
struct Header {
    len: u16,
    cap: u16,
}

/// A vector of at most `u16::MAX` items, one pointer wide; never empty of
/// room (a capacity of one at least), as a short list that only a caller
/// with two items or more creates.
pub(super) struct ThinList<T> {
    head: NonNull<Header>,
    _owns: PhantomData<T>,
}

// SAFETY: a `ThinList<T>` owns its block and the `T`s in it, as a `Vec<T>`
// does.
unsafe impl<T: Send> Send for ThinList<T> {}
// SAFETY: as above; `&ThinList<T>` only gives out `&T`.
unsafe impl<T: Sync> Sync for ThinList<T> {}

impl<T> ThinList<T> {
    /// The layout of a block with room for `cap` items, and where the
    /// items start.
    fn layout(cap: usize) -> (Layout, usize) {
        let items = Layout::array::<T>(cap).expect("a short list fits in memory");
        let (block, at) = Layout::new::<Header>()
            .extend(items)
            .expect("a short list fits in memory");
        (block.pad_to_align(), at)
    }

    /// No items, room for `cap` (1 to `u16::MAX`).
    pub(super) fn with_capacity(cap: usize) -> Self {
        assert!(
            cap >= 1 && u16::try_from(cap).is_ok(),
            "short list capacity {cap}"
        );
        let (layout, _) = Self::layout(cap);
        // SAFETY: the layout has a non-zero size (it holds the header).
        let block = unsafe { alloc::alloc(layout) };
        let Some(head) = NonNull::new(block.cast::<Header>()) else {
            alloc::handle_alloc_error(layout);
        };
        // SAFETY: a fresh block of `layout`, which starts with the header.
        unsafe {
            head.as_ptr().write(Header {
                len: 0,
                cap: cap as u16,
            })
        };
        ThinList {
            head,
            _owns: PhantomData,
        }
    }

    fn header(&self) -> &Header {
        // SAFETY: `head` is a block of ours, its header written at creation.
        unsafe { self.head.as_ref() }
    }

    fn header_mut(&mut self) -> &mut Header {
        // SAFETY: as `header`; `&mut self` makes the borrow unique.
        unsafe { self.head.as_mut() }
    }

    /// The items' array.
    fn items(&self) -> *mut T {
        let at = Self::layout(0).1;
        // SAFETY: the items start `at` bytes into the block (`layout`; the
        // offset does not depend on the capacity).
        unsafe { self.head.as_ptr().cast::<u8>().add(at) }.cast()
    }

    /// The number of items.
    pub(super) fn len(&self) -> usize {
        usize::from(self.header().len)
    }

    /// Room for how many items the block has.
    pub(super) fn capacity(&self) -> usize {
        usize::from(self.header().cap)
    }

    /// The items.
    pub(super) fn as_slice(&self) -> &[T] {
        // SAFETY: the first `len` items are initialized.
        unsafe { slice::from_raw_parts(self.items(), self.len()) }
    }

    /// Makes room for `additional` more items, exactly.
    pub(super) fn reserve_exact(&mut self, additional: usize) {
        let (len, cap) = (self.len(), self.capacity());
        let need = len.checked_add(additional).expect("short list length");
        if need <= cap {
            return;
        }
        assert!(u16::try_from(need).is_ok(), "short list capacity {need}");
        let (old, _) = Self::layout(cap);
        let (new, _) = Self::layout(need);
        // SAFETY: the block was allocated with `old`; `new` has its
        // alignment and a non-zero size. `realloc` moves the header and
        // the items bitwise (a move).
        let block = unsafe { alloc::realloc(self.head.as_ptr().cast(), old, new.size()) };
        let Some(head) = NonNull::new(block.cast::<Header>()) else {
            alloc::handle_alloc_error(new);
        };
        self.head = head;
        self.header_mut().cap = need as u16;
    }

    /// Inserts `item` at `at` (at most the length), the items after it
    /// moving up; grows by one if full.
    pub(super) fn insert(&mut self, at: usize, item: T) {
        let len = self.len();
        assert!(at <= len, "insert at {at} in a list of {len}");
        if len == self.capacity() {
            self.reserve_exact(1);
        }
        // SAFETY: `at <= len < cap`: the items `at..len` move up one inside
        // the block, and `item` fills the slot at `at`.
        unsafe {
            let p = self.items().add(at);
            ptr::copy(p, p.add(1), len - at);
            p.write(item);
        }
        self.header_mut().len += 1;
    }

    /// Removes the item at `at` (below the length), the items after it
    /// moving down.
    pub(super) fn remove(&mut self, at: usize) -> T {
        let len = self.len();
        assert!(at < len, "remove at {at} in a list of {len}");
        // SAFETY: `at < len`: the item is read out once, and the items
        // after it move down over its slot.
        let item = unsafe {
            let p = self.items().add(at);
            let item = p.read();
            ptr::copy(p.add(1), p, len - at - 1);
            item
        };
        self.header_mut().len -= 1;
        item
    }

    /// The items, in a vector of their own (the block is freed).
    pub(super) fn into_vec(self) -> Vec<T> {
        let me = ManuallyDrop::new(self);
        let len = me.len();
        let mut v = Vec::with_capacity(len);
        // SAFETY: the `len` items move (bitwise, once) into the vector's
        // room; the block is then freed without dropping them.
        unsafe {
            ptr::copy_nonoverlapping(me.items(), v.as_mut_ptr(), len);
            v.set_len(len);
            alloc::dealloc(me.head.as_ptr().cast(), Self::layout(me.capacity()).0);
        }
        v
    }
}

impl<T> Drop for ThinList<T> {
    fn drop(&mut self) {
        // SAFETY: the first `len` items are initialized and dropped once;
        // the block was allocated with `layout(cap)`.
        unsafe {
            ptr::drop_in_place(ptr::slice_from_raw_parts_mut(self.items(), self.len()));
            alloc::dealloc(self.head.as_ptr().cast(), Self::layout(self.capacity()).0);
        }
    }
}

impl<T: Clone> Clone for ThinList<T> {
    fn clone(&self) -> Self {
        let mut c = ThinList::with_capacity(self.capacity());
        for item in self.as_slice() {
            // counted one at a time: a panicking clone leaves a list that
            // drops what it holds
            let at = c.len();
            c.insert(at, item.clone());
        }
        c
    }
}

impl<T: fmt::Debug> fmt::Debug for ThinList<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.as_slice()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::rc::Rc;

    #[test]
    fn one_block_of_header_and_items() {
        assert_eq!(std::mem::size_of::<ThinList<u32>>(), 8);
        assert_eq!(ThinList::<u32>::layout(10).0.size(), 44);
        // items aligned after the header
        assert_eq!(
            ThinList::<u64>::layout(2),
            (Layout::from_size_align(24, 8).unwrap(), 8)
        );
    }

    #[test]
    fn items_are_dropped_once() {
        let counted = Rc::new(());
        let mut l = ThinList::with_capacity(2);
        for i in 0..5 {
            l.insert(i / 2, Rc::clone(&counted));
        }
        assert_eq!(Rc::strong_count(&counted), 6);
        let c = l.clone();
        assert_eq!(Rc::strong_count(&counted), 11);
        drop(l.remove(1));
        drop(c);
        assert_eq!(Rc::strong_count(&counted), 5);
        let v = l.into_vec();
        assert_eq!(Rc::strong_count(&counted), 5);
        drop(v);
        assert_eq!(Rc::strong_count(&counted), 1);
    }

    proptest! {
        /// Inserts, removes and growth agree with a `Vec`.
        #[test]
        fn behaves_as_a_vec(ops in proptest::collection::vec((any::<bool>(), any::<u8>(), any::<u32>()), 1..200)) {
            let mut l: ThinList<String> = ThinList::with_capacity(1);
            let mut v: Vec<String> = Vec::new();
            for (insert, at, x) in ops {
                if insert || v.is_empty() {
                    let at = usize::from(at) % (v.len() + 1);
                    if x % 3 == 0 {
                        l.reserve_exact(at % 4);
                    }
                    l.insert(at, x.to_string());
                    v.insert(at, x.to_string());
                } else {
                    let at = usize::from(at) % v.len();
                    prop_assert_eq!(l.remove(at), v.remove(at));
                }
                prop_assert_eq!(l.as_slice(), &v[..]);
                prop_assert!(l.capacity() >= l.len());
            }
            let c = l.clone();
            prop_assert_eq!(c.as_slice(), &v[..]);
            prop_assert_eq!(l.into_vec(), v);
        }
    }
}
