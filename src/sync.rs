//! [`ReadMostly`]: the lock around a scope's state, read from any thread and
//! written by one task.

use crossbeam_utils::sync::{ShardedLock, ShardedLockReadGuard, ShardedLockWriteGuard};
use std::sync::PoisonError;

/// A reader-writer lock for state read from many threads and written
/// rarely: each reading thread takes its own shard of the lock
/// ([`ShardedLock`]), so readers on different cores write no common cache
/// line (a plain reader-writer lock has one reader count, which every read
/// writes twice: with 8 readers on 2 cores, a one-pid lookup took 250–350
/// ns instead of 30–80). A writer takes every shard, so a write costs a few
/// uncontended lock operations more.
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
pub struct ReadMostly<T>(ShardedLock<T>);

impl<T> ReadMostly<T> {
    /// A lock holding `value`.
    pub fn new(value: T) -> Self {
        ReadMostly(ShardedLock::new(value))
    }

    /// Shared access, on this thread's shard.
    pub fn read(&self) -> ShardedLockReadGuard<'_, T> {
        self.0.read().unwrap_or_else(PoisonError::into_inner)
    }

    /// Exclusive access (every shard).
    pub fn write(&self) -> ShardedLockWriteGuard<'_, T> {
        self.0.write().unwrap_or_else(PoisonError::into_inner)
    }
}
