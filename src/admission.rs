//! Admission of unauthenticated connections (the distribution port before
//! the handshake, the embedded EPMD): at most so many at once, and one
//! more closes the oldest that has not yet proved itself, not the new one.
//!
//! Refusing the new one let anyone hold every place with idle connections
//! (each reopened as its timeout closes it) and keep every real peer out
//! for as long as they cared to. Closing the oldest makes such a flood
//! keep a peer out only by opening the whole bound's worth of connections
//! faster than the peer's request or handshake takes (a few milliseconds).

use parking_lot::Mutex;
use std::collections::VecDeque;
use std::sync::Arc;
use tokio::sync::oneshot;

/// The connections admitted, oldest first.
#[derive(Default)]
pub(crate) struct Admission {
    inner: Arc<Mutex<Table>>,
}

#[derive(Default)]
struct Table {
    next: u64,
    /// Each admitted connection, oldest first.
    live: VecDeque<Entry>,
}

struct Entry {
    id: u64,
    /// Dropped (so the connection's `closed` ends) when it is closed for
    /// a newer one.
    _close: oneshot::Sender<()>,
    /// Never closed for a newer one.
    settled: bool,
}

/// What [`Admission::enter`] decided.
pub(crate) enum Entered {
    /// Admitted: hold the slot while the connection lasts (or until it is
    /// no longer counted); `closed` ends when a newer connection took its
    /// place. `evicted`: the oldest was closed to make room.
    Admitted {
        slot: Slot,
        closed: oneshot::Receiver<()>,
        evicted: bool,
    },
    /// Every place is held by a settled connection.
    Full,
}

impl Admission {
    /// Admits a new connection if fewer than `max` are admitted, or by
    /// closing the oldest unsettled one.
    pub(crate) fn enter(&self, max: usize) -> Entered {
        let mut t = self.inner.lock();
        let mut evicted = false;
        while t.live.len() >= max.max(1) {
            let Some(at) = t.live.iter().position(|e| !e.settled) else {
                return Entered::Full;
            };
            // Dropping its sender ends its `closed`.
            t.live.remove(at);
            evicted = true;
        }
        let (tx, rx) = oneshot::channel();
        let id = t.next;
        t.next += 1;
        t.live.push_back(Entry {
            id,
            _close: tx,
            settled: false,
        });
        Entered::Admitted {
            slot: Slot {
                id,
                table: self.inner.clone(),
            },
            closed: rx,
            evicted,
        }
    }

    /// How many are admitted.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.inner.lock().live.len()
    }
}

/// A connection's place, given back when dropped.
pub(crate) struct Slot {
    id: u64,
    table: Arc<Mutex<Table>>,
}

impl Slot {
    /// The connection has proved itself (an EPMD registration): it keeps
    /// its place and is never closed for a newer one.
    pub(crate) fn settle(&self) {
        let mut t = self.table.lock();
        if let Some(e) = t.live.iter_mut().find(|e| e.id == self.id) {
            e.settled = true;
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut t = self.table.lock();
        if let Some(at) = t.live.iter().position(|e| e.id == self.id) {
            t.live.remove(at);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::sync::oneshot::error::TryRecvError;

    fn admitted(e: Entered) -> (Slot, oneshot::Receiver<()>, bool) {
        match e {
            Entered::Admitted {
                slot,
                closed,
                evicted,
            } => (slot, closed, evicted),
            Entered::Full => panic!("refused"),
        }
    }

    /// One over the bound closes the oldest; a connection that ended
    /// gives its place back.
    #[test]
    fn over_the_bound_the_oldest_is_closed() {
        let a = Admission::default();
        let (s1, mut r1, e1) = admitted(a.enter(2));
        let (s2, mut r2, e2) = admitted(a.enter(2));
        assert!(!e1 && !e2);
        let (_s3, mut r3, e3) = admitted(a.enter(2));
        assert!(e3);
        assert!(matches!(r1.try_recv(), Err(TryRecvError::Closed)));
        assert!(matches!(r2.try_recv(), Err(TryRecvError::Empty)));
        drop(s1); // already closed: nothing to give back
        assert_eq!(a.len(), 2);
        drop(s2);
        assert_eq!(a.len(), 1);
        let (_s4, _r4, e4) = admitted(a.enter(2));
        assert!(!e4);
        assert!(matches!(r3.try_recv(), Err(TryRecvError::Empty)));
    }

    /// A settled connection is never closed for a newer one; with every
    /// place settled the new one is refused.
    #[test]
    fn settled_connections_keep_their_place() {
        let a = Admission::default();
        let (s1, mut r1, _) = admitted(a.enter(2));
        s1.settle();
        let (_s2, mut r2, _) = admitted(a.enter(2));
        let (s3, _r3, evicted) = admitted(a.enter(2));
        assert!(evicted);
        assert!(matches!(r1.try_recv(), Err(TryRecvError::Empty)));
        assert!(matches!(r2.try_recv(), Err(TryRecvError::Closed)));
        s3.settle();
        assert!(matches!(a.enter(2), Entered::Full));
        drop(s1);
        let _ = admitted(a.enter(2));
    }
}
