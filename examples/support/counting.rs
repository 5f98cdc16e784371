//! A global allocator that passes every call to another one and counts the
//! bytes allocated less the bytes freed while counting is on: what a piece
//! of work leaves held. Shared by the benchmark examples (each includes it
//! with `#[path = "support/counting.rs"] mod counting;`; cargo does not
//! build it as an example of its own). Off, it costs a relaxed load per
//! call and touches no shared counter, so timed parts run with it off.

use std::alloc::{GlobalAlloc, Layout};
use std::sync::atomic::{AtomicBool, AtomicIsize, Ordering};

/// `A`, counting while [`start`] .. [`stop`] runs.
pub struct Counting<A>(pub A);

static COUNTING: AtomicBool = AtomicBool::new(false);
static LIVE: AtomicIsize = AtomicIsize::new(0);

/// Turns counting on; give what it returns to [`stop`].
pub fn start() -> isize {
    let at = LIVE.load(Ordering::SeqCst);
    COUNTING.store(true, Ordering::SeqCst);
    at
}

/// Turns counting off; the bytes allocated less those freed since the
/// [`start`] that returned `at`.
pub fn stop(at: isize) -> isize {
    COUNTING.store(false, Ordering::SeqCst);
    LIVE.load(Ordering::SeqCst) - at
}

fn count(bytes: isize) {
    if COUNTING.load(Ordering::Relaxed) {
        LIVE.fetch_add(bytes, Ordering::Relaxed);
    }
}

// SAFETY: every call is passed to `A` unchanged; the counter only reads
// sizes.
unsafe impl<A: GlobalAlloc> GlobalAlloc for Counting<A> {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        count(l.size() as isize);
        // SAFETY: the caller's contract, passed on.
        unsafe { self.0.alloc(l) }
    }
    unsafe fn alloc_zeroed(&self, l: Layout) -> *mut u8 {
        count(l.size() as isize);
        // SAFETY: the caller's contract, passed on.
        unsafe { self.0.alloc_zeroed(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        count(-(l.size() as isize));
        // SAFETY: the caller's contract, passed on.
        unsafe { self.0.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        count(new as isize - l.size() as isize);
        // SAFETY: the caller's contract, passed on.
        unsafe { self.0.realloc(p, l, new) }
    }
}
