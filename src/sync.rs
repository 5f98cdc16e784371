//! [`ReadMostly`]: the lock around a scope's state, read from any thread and
//! written by one task.

use crossbeam_utils::sync::{ShardedLock, ShardedLockReadGuard, ShardedLockWriteGuard};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{OnceLock, PoisonError, TryLockError};
use std::time::{Duration, Instant};

/// How long a reader may wait behind a writer that changes the state in
/// parts before [`ReadMostly::let_readers_in`] hands it the lock.
const FAIR_AFTER: Duration = Duration::from_millis(1);

/// The longest [`ReadMostly::let_readers_in`] waits for the readers.
const HANDOFF_WAIT: Duration = Duration::from_millis(1);

/// Nanoseconds since the first call (a clock that fits an atomic; the
/// runtime's watchdog reads it too).
pub(crate) fn now_nanos() -> u64 {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    let epoch = *EPOCH.get_or_init(Instant::now);
    u64::try_from(epoch.elapsed().as_nanos()).unwrap_or(u64::MAX)
}

/// A reader-writer lock for state read from many threads and written
/// rarely: each reading thread takes its own shard of the lock
/// ([`ShardedLock`]), so readers on different cores write no common cache
/// line (a plain reader-writer lock has one reader count, which every read
/// writes twice: with 8 readers on 2 cores, a one-pid lookup took 250–350
/// ns instead of 30–80). A writer takes every shard, so a write costs a few
/// uncontended lock operations more.
///
/// A writer that changes the state in parts (the cpg scope removing a
/// node that went down) calls [`let_readers_in`](Self::let_readers_in)
/// between them: the lock does not hand itself to waiting readers, and a
/// writer taking it again at once would keep them waiting for the whole
/// change. Readers that have waited over a millisecond are let in first,
/// so a reader waits about that long plus one part, and the writer gives
/// up at most a millisecond a millisecond.
///
/// A panic under the lock does not poison it: the state is as the
/// panicking writer left it (the scope supervisors rebuild it), as with
/// `parking_lot`'s lock.
///
/// ```
/// # use cpg_node::sync::ReadMostly;
/// let lock = ReadMostly::new(vec![1, 2]);
/// lock.write().push(3);
/// assert_eq!(lock.read().len(), 3);
/// ```
#[derive(Debug, Default)]
pub struct ReadMostly<T> {
    lock: ShardedLock<T>,
    /// Readers blocked behind a writer (written only when a read has to
    /// wait, so free reads share nothing).
    waiting: AtomicUsize,
    /// When the first of them started waiting ([`now_nanos`]).
    since: AtomicU64,
}

impl<T> ReadMostly<T> {
    /// A lock holding `value`.
    pub fn new(value: T) -> Self {
        ReadMostly {
            lock: ShardedLock::new(value),
            waiting: AtomicUsize::new(0),
            since: AtomicU64::new(0),
        }
    }

    /// Shared access, on this thread's shard.
    pub fn read(&self) -> ShardedLockReadGuard<'_, T> {
        match self.lock.try_read() {
            Ok(guard) => guard,
            Err(TryLockError::Poisoned(p)) => p.into_inner(),
            Err(TryLockError::WouldBlock) => {
                if self.waiting.fetch_add(1, Ordering::SeqCst) == 0 {
                    self.since.store(now_nanos(), Ordering::SeqCst);
                }
                let guard = self.lock.read().unwrap_or_else(PoisonError::into_inner);
                self.waiting.fetch_sub(1, Ordering::SeqCst);
                guard
            }
        }
    }

    /// Exclusive access (every shard).
    pub fn write(&self) -> ShardedLockWriteGuard<'_, T> {
        self.lock.write().unwrap_or_else(PoisonError::into_inner)
    }

    /// For a writer between two parts of a long change, not holding the
    /// lock: when readers have waited for it over a millisecond, lets them
    /// take it first (waits until they have, at most a millisecond).
    /// Returns at once otherwise.
    pub fn let_readers_in(&self) {
        if self.waiting.load(Ordering::SeqCst) == 0 {
            return;
        }
        let waited = now_nanos().saturating_sub(self.since.load(Ordering::SeqCst));
        if u128::from(waited) < FAIR_AFTER.as_nanos() {
            return;
        }
        let start = Instant::now();
        while self.waiting.load(Ordering::SeqCst) > 0 && start.elapsed() < HANDOFF_WAIT {
            std::thread::yield_now();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    /// A writer that changes the state in many parts, calling
    /// `let_readers_in` between them, lets a blocked reader through before
    /// it has finished.
    #[test]
    fn a_writer_in_parts_lets_a_waiting_reader_in() {
        let lock = Arc::new(ReadMostly::new(0u32));
        let guard = lock.write();
        let reader = {
            let lock = lock.clone();
            std::thread::spawn(move || *lock.read())
        };
        // the reader is blocked behind the write guard
        while lock.waiting.load(Ordering::SeqCst) == 0 {
            std::thread::yield_now();
        }
        drop(guard);
        // parts of 100 µs each, for up to a second
        let mut parts = 0;
        while !reader.is_finished() && parts < 10_000 {
            lock.let_readers_in();
            let mut state = lock.write();
            let start = Instant::now();
            while start.elapsed() < Duration::from_micros(100) {
                std::hint::spin_loop();
            }
            *state += 1;
            parts += 1;
        }
        let seen = reader.join().expect("reader");
        assert!(
            parts < 10_000,
            "the reader got in before the writer's last part"
        );
        assert!(seen < 10_000);
    }
}
