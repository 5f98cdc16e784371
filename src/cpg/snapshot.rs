//! [`Members`]: what `get_members` hands out, a group's members as an
//! immutable snapshot that no read copies; [`Snapshot`]: a group's members
//! as a shared immutable list, one copy per CPU for the readers that take
//! it away.
//!
//! A read that hands out the list (`get_members`) clones an `Arc`:
//! one atomic add, and one subtract when the reader drops it. With one
//! list, every reader on every core writes the same counter, whose cache
//! line then moves between the cores at each read: with 8 readers on 2
//! cores a read took 190–220 ns instead of 50–60. So each CPU gets its own
//! copy (the kernel's per-CPU reference counts, in small), built by the
//! first read on that CPU after a change: a few copies of a group that
//! many threads read, none of a group read on one CPU or only borrowed
//! ([`Snapshot::get`]).

use std::fmt;
use std::ops::Deref;
use std::sync::{Arc, OnceLock};

use super::member::MemberPid;

/// A group's members (newest first, as cpg's `get_members` lists them) as
/// an immutable snapshot, what [`CpgScope::get_members`] and
/// [`Scope::get_members`] return: as BEAM hands out the list it holds, a
/// read copies nothing. A group of one pid gives its pid inline (nothing
/// allocated); a larger group shares the list it keeps until it changes
/// (a read counts a reference). It derefs to a slice (`&members[..]`,
/// `members.iter()`, `members.len()`); `to_vec` gives an owned copy.
///
/// The snapshot stays as it was when read: later joins and leaves make a
/// new list and leave this one alone.
///
/// [`CpgScope::get_members`]: crate::cpg::CpgScope::get_members
/// [`Scope::get_members`]: crate::cpg::scope::Scope::get_members
#[derive(Clone)]
pub struct Members<P = MemberPid>(Held<P>);

#[derive(Clone)]
enum Held<P> {
    Empty,
    One(P),
    Shared(Arc<[P]>),
    /// A list made for one read (`get_local_members` of a mixed group,
    /// `get_members` with an exclusion): kept in its own buffer behind a
    /// small shared header, not copied into an `Arc<[P]>` (which would
    /// allocate and copy the list again).
    Made(Arc<Vec<P>>),
}

impl<P> Members<P> {
    /// No members.
    pub const fn empty() -> Self {
        Members(Held::Empty)
    }

    /// One member, held inline.
    pub const fn one(pid: P) -> Self {
        Members(Held::One(pid))
    }

    /// Members shared with whoever else holds `list`.
    pub fn shared(list: Arc<[P]>) -> Self {
        Members(Held::Shared(list))
    }

    /// The members as a slice.
    pub fn as_slice(&self) -> &[P] {
        match &self.0 {
            Held::Empty => &[],
            Held::One(p) => std::slice::from_ref(p),
            Held::Shared(list) => list,
            Held::Made(list) => list,
        }
    }
}

impl<P> Default for Members<P> {
    fn default() -> Self {
        Members::empty()
    }
}

impl<P> Deref for Members<P> {
    type Target = [P];

    #[inline]
    fn deref(&self) -> &[P] {
        self.as_slice()
    }
}

impl<P> AsRef<[P]> for Members<P> {
    fn as_ref(&self) -> &[P] {
        self.as_slice()
    }
}

impl<P> From<Vec<P>> for Members<P> {
    /// Members from a list of one's own (an empty or one-pid list is held
    /// inline; a longer one stays in its buffer, not copied).
    fn from(mut v: Vec<P>) -> Self {
        match v.len() {
            0 => Members::empty(),
            1 => Members::one(v.remove(0)),
            _ => Members(Held::Made(Arc::new(v))),
        }
    }
}

impl<P: Clone> From<Members<P>> for Vec<P> {
    fn from(m: Members<P>) -> Self {
        m.to_vec()
    }
}

impl<'a, P> IntoIterator for &'a Members<P> {
    type Item = &'a P;
    type IntoIter = std::slice::Iter<'a, P>;

    fn into_iter(self) -> Self::IntoIter {
        self.as_slice().iter()
    }
}

impl<P: fmt::Debug> fmt::Debug for Members<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.as_slice()).finish()
    }
}

impl<P: PartialEq> PartialEq for Members<P> {
    fn eq(&self, other: &Self) -> bool {
        self.as_slice() == other.as_slice()
    }
}

impl<P: Eq> Eq for Members<P> {}

impl<P: PartialEq<Q>, Q> PartialEq<[Q]> for Members<P> {
    fn eq(&self, other: &[Q]) -> bool {
        self.as_slice() == other
    }
}

impl<P: PartialEq<Q>, Q> PartialEq<&[Q]> for Members<P> {
    fn eq(&self, other: &&[Q]) -> bool {
        self.as_slice() == *other
    }
}

impl<P: PartialEq<Q>, Q> PartialEq<Vec<Q>> for Members<P> {
    fn eq(&self, other: &Vec<Q>) -> bool {
        self.as_slice() == other.as_slice()
    }
}

impl<P: PartialEq<Q>, Q, const N: usize> PartialEq<[Q; N]> for Members<P> {
    fn eq(&self, other: &[Q; N]) -> bool {
        self.as_slice() == other.as_slice()
    }
}

/// How many copies a snapshot may have: one per CPU the process may run
/// on (at most 64).
fn slots() -> usize {
    static SLOTS: OnceLock<usize> = OnceLock::new();
    *SLOTS.get_or_init(|| {
        std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .clamp(1, 64)
    })
}

/// The copy the calling thread should use: its CPU's (any CPU number
/// will do: a thread that moves to another CPU only shares a counter).
fn slot() -> usize {
    let n = slots();
    if n == 1 {
        return 0;
    }
    // glibc reads the CPU number from the thread's rseq area (no system
    // call); -1 (not known) is slot 0.
    // SAFETY: sched_getcpu has no preconditions.
    let cpu = unsafe { libc::sched_getcpu() };
    usize::try_from(cpu).map_or(0, |c| c % n)
}

/// One copy of the list, built on first use.
type CpuCopy<P> = OnceLock<Arc<[P]>>;

/// A list built on first use and dropped by [`clear`](Self::clear), handed
/// out shared: borrowed ([`get`](Self::get)) or as an `Arc` whose count
/// is the reading CPU's own ([`handout`](Self::handout)).
///
/// Every group of two copies or more holds one, and most groups are
/// never read whole (a service is looked up one pid at a time): so the
/// copies sit in a box made by the group's first whole read and kept
/// across changes, and an unread group pays 16 bytes, not the 48 of the
/// copies.
#[derive(Debug, Clone)]
pub(crate) struct Snapshot<P> {
    copies: OnceLock<Box<Copies<P>>>,
}

/// The copies of a [`Snapshot`]'s list.
#[derive(Debug, Clone)]
struct Copies<P> {
    /// The list, and CPU 0's copy.
    first: CpuCopy<P>,
    /// The other CPUs' copies, allocated when a second CPU reads.
    others: OnceLock<Box<[CpuCopy<P>]>>,
}

impl<P> Default for Snapshot<P> {
    fn default() -> Self {
        Snapshot {
            copies: OnceLock::new(),
        }
    }
}

impl<P: Clone> Snapshot<P> {
    /// Forgets the list and its copies (the group changed); the box of
    /// copies stays for the next read.
    pub(crate) fn clear(&mut self) {
        if let Some(c) = self.copies.get_mut() {
            c.first.take();
            c.others.take();
        }
    }

    /// The copies, boxed on first use.
    #[inline]
    fn copies(&self) -> &Copies<P> {
        self.copies.get_or_init(|| {
            Box::new(Copies {
                first: OnceLock::new(),
                others: OnceLock::new(),
            })
        })
    }

    /// The list, built by `build` if there is none.
    pub(crate) fn get(&self, build: impl FnOnce() -> Arc<[P]>) -> &Arc<[P]> {
        self.copies().first.get_or_init(build)
    }

    /// The list, built by `build` if there is none, as this CPU's copy
    /// (made from the list on the CPU's first read after a change).
    #[inline]
    pub(crate) fn handout(&self, build: impl FnOnce() -> Arc<[P]>) -> Arc<[P]> {
        let copies = self.copies();
        let first = copies.first.get_or_init(build);
        let i = slot();
        if i == 0 {
            return first.clone();
        }
        let others = copies
            .others
            .get_or_init(|| (1..slots()).map(|_| OnceLock::new()).collect());
        others[i - 1].get_or_init(|| Arc::from(&first[..])).clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_copy_holds_the_list_until_cleared() {
        let mut s: Snapshot<u32> = Snapshot::default();
        let mut builds = 0;
        let a = s.handout(|| {
            builds += 1;
            vec![3, 2, 1].into()
        });
        assert_eq!(&a[..], &[3, 2, 1]);
        assert_eq!(&s.get(|| unreachable!())[..], &[3, 2, 1]);
        // Built once; on one CPU, handed out again without a copy.
        let b = s.handout(|| unreachable!());
        assert_eq!(&b[..], &[3, 2, 1]);
        assert_eq!(builds, 1);
        // Every CPU's copy, taken from other threads, holds the list.
        std::thread::scope(|sc| {
            for _ in 0..8 {
                sc.spawn(|| {
                    for _ in 0..100 {
                        assert_eq!(&s.handout(|| unreachable!())[..], &[3, 2, 1]);
                    }
                });
            }
        });
        s.clear();
        assert_eq!(&s.handout(|| vec![9].into())[..], &[9]);
        // What was handed out before stays as it was.
        assert_eq!(&a[..], &[3, 2, 1]);
    }

    #[test]
    fn an_unread_snapshot_is_one_word_and_a_lock() {
        assert_eq!(std::mem::size_of::<Snapshot<[u64; 2]>>(), 16);
        let mut s: Snapshot<u32> = Snapshot::default();
        assert!(s.copies.get().is_none(), "nothing boxed before a read");
        s.get(|| vec![1].into());
        let boxed: *const Copies<u32> = &**s.copies.get().expect("boxed");
        s.clear();
        s.get(|| vec![2].into());
        // the box stays across changes: one allocation a group, not a read
        assert!(std::ptr::eq(boxed, &**s.copies.get().expect("boxed")));
    }

    #[test]
    fn members_hold_one_pid_inline_and_share_larger_lists() {
        let none: Members<u32> = Members::default();
        assert!(none.is_empty());
        assert_eq!(none, Vec::<u32>::new());
        let one = Members::from(vec![7]);
        assert!(matches!(one.0, Held::One(7)));
        assert_eq!(one, [7]);
        let list: Arc<[u32]> = vec![3, 2, 1].into();
        let many = Members::shared(list.clone());
        let again = many.clone();
        // Clones share the one list: nothing copied.
        assert!(std::ptr::eq(many.as_slice(), list.as_ref()));
        assert!(std::ptr::eq(again.as_slice(), list.as_ref()));
        assert_eq!(Arc::strong_count(&list), 3);
        assert_eq!(many, vec![3, 2, 1]);
        assert_eq!(many.iter().sum::<u32>(), 6);
        assert_eq!((&many).into_iter().count(), 3);
        assert_eq!(Vec::from(again), vec![3, 2, 1]);
        // A list of one's own stays in its buffer (no second copy), and
        // its clones share it.
        let v = vec![5, 4];
        let at = v.as_ptr();
        let made = Members::from(v);
        assert!(std::ptr::eq(made.as_slice().as_ptr(), at));
        assert!(std::ptr::eq(made.clone().as_slice().as_ptr(), at));
        assert_eq!(made, [5, 4]);
        assert_eq!(format!("{many:?}"), "[3, 2, 1]");
        assert_eq!(Members::from(vec![3, 2, 1]), many);
    }

    #[test]
    fn slot_is_below_the_number_of_copies() {
        assert!(slot() < slots());
    }
}
