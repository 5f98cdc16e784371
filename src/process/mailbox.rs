//! A process's mailbox: unbounded, as a BEAM mailbox is, any number of
//! senders, one receiver (the [`super::Process`]).
//!
//! Why not tokio's unbounded channel: it allocates its first block of 32
//! slots when the channel is made, zeroed (32 × the size of a
//! [`Signal`], 168 bytes: 5.4 KB), so an idle process cost about 7.5 KB
//! and 17 µs to spawn (the pages touched), where a BEAM process is about
//! 2.7 KB. Here an idle mailbox is one small allocation; its queue grows
//! with the first signal and is given back once a burst is drained.
//!
//! The receiver takes what has arrived in one go (the two queues are
//! swapped under the lock), so a busy process takes the lock once per
//! batch, not once per signal.

use super::{SendError, Signal};
use crate::term::Term;
use parking_lot::Mutex;
use std::collections::VecDeque;
use std::future::poll_fn;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

/// Capacity (signals) a drained queue keeps; a larger one, grown by a
/// burst, is given back.
const KEEP: usize = 16;

struct Shared {
    state: Mutex<State>,
    /// Live [`MailboxTx`]s.
    senders: AtomicUsize,
    /// The process has ended (killed, or its receiver dropped): it sends
    /// nothing more ([`SendGate`]).
    ended: AtomicBool,
    /// Sends of the process under way ([`SendGate::open`]).
    sending: AtomicUsize,
}

/// How long ending a process waits at most for a send of its own under
/// way to finish (a send takes microseconds).
const END_WAIT: Duration = Duration::from_millis(50);

std::thread_local! {
    /// The mailbox whose process this thread is sending for, as an
    /// address (0: none): a send that ends its own process (a queue
    /// bound dropping a peer it is linked to) does not wait for itself.
    static SENDING_AS: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

impl Shared {
    /// Marks the process ended, then waits until a send of its own under
    /// way has finished: after this, nothing more goes out from it.
    ///
    /// A send counts itself in `sending` and then reads `ended`; this sets
    /// `ended` and then reads `sending` (all `SeqCst`): either the send
    /// sees the end and sends nothing, or this sees the send and waits for
    /// it. At most [`END_WAIT`], and not at all from inside one of the
    /// process's own sends.
    fn end_sends(&self) {
        self.ended.store(true, Ordering::SeqCst);
        if SENDING_AS.with(|s| s.get()) == self as *const Shared as usize {
            return;
        }
        crate::util::wait_while(|| self.sending.load(Ordering::SeqCst) > 0, END_WAIT);
    }
}

#[derive(Default)]
struct State {
    queue: VecDeque<Signal>,
    waker: Option<Waker>,
    /// The receiver is gone: sends fail.
    rx_gone: bool,
    /// Every sender is gone: the receiver gets `None` once drained.
    tx_gone: bool,
    /// The process was ended by an exit signal ([`MailboxTx::kill`]),
    /// with this reason.
    killed: Option<Term>,
}

/// A new mailbox: its sender and its receiver.
pub fn mailbox() -> (MailboxTx, MailboxRx) {
    let shared = Arc::new(Shared {
        state: Mutex::new(State::default()),
        senders: AtomicUsize::new(1),
        ended: AtomicBool::new(false),
        sending: AtomicUsize::new(0),
    });
    (
        MailboxTx(shared.clone()),
        MailboxRx {
            shared,
            local: VecDeque::new(),
        },
    )
}

/// A sender into a process's mailbox.
pub struct MailboxTx(Arc<Shared>);

impl MailboxTx {
    /// Puts `s` at the end of the mailbox and wakes the process; the
    /// signal back if the process is gone.
    // The signal is handed back as it came (as tokio's `SendError<T>`
    // does), not boxed: boxing would allocate on the failure path only
    // to shrink a `Result` that lives in registers.
    #[allow(clippy::result_large_err)]
    pub fn send(&self, s: Signal) -> Result<(), Signal> {
        let mut st = self.0.state.lock();
        if st.rx_gone || st.killed.is_some() {
            return Err(s);
        }
        st.queue.push_back(s);
        let waker = st.waker.take();
        drop(st);
        if let Some(w) = waker {
            w.wake();
        }
        Ok(())
    }
}

impl MailboxTx {
    /// Ends the process at once, as an exit signal ends a BEAM process
    /// between two reductions: what its mailbox holds is dropped, later
    /// signals are refused, a send of its own under way finishes and no
    /// other starts ([`SendGate`]), and its next receive gives `reason`
    /// ([`MailboxRx::killed`]). Called before its links and monitors are
    /// told: nothing from it comes after its `'DOWN'` or `'EXIT'`.
    pub fn kill(&self, reason: Term) {
        let (queued, waker) = {
            let mut st = self.0.state.lock();
            if st.rx_gone || st.killed.is_some() {
                return;
            }
            st.killed = Some(reason);
            (std::mem::take(&mut st.queue), st.waker.take())
        };
        self.0.end_sends();
        // Dropped outside the lock (signals may own large terms).
        drop(queued);
        if let Some(w) = waker {
            w.wake();
        }
    }
}

impl Clone for MailboxTx {
    fn clone(&self) -> Self {
        self.0.senders.fetch_add(1, Ordering::Relaxed);
        MailboxTx(self.0.clone())
    }
}

impl Drop for MailboxTx {
    fn drop(&mut self) {
        if self.0.senders.fetch_sub(1, Ordering::AcqRel) == 1 {
            let mut st = self.0.state.lock();
            st.tx_gone = true;
            let waker = st.waker.take();
            drop(st);
            if let Some(w) = waker {
                w.wake();
            }
        }
    }
}

impl std::fmt::Debug for MailboxTx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MailboxTx")
    }
}

/// The receiving end of a mailbox, owned by its process.
pub struct MailboxRx {
    shared: Arc<Shared>,
    /// Signals taken from the shared queue, not yet handed out.
    local: VecDeque<Signal>,
}

impl MailboxRx {
    /// The next signal; `None` once every sender is gone and the mailbox
    /// is drained. Cancel-safe: a signal is taken only when returned.
    pub async fn recv(&mut self) -> Option<Signal> {
        poll_fn(|cx| self.poll_recv(cx)).await
    }

    /// [`MailboxRx::recv`] as a poll. `None` too once the process was
    /// killed ([`MailboxRx::killed`]), whatever was left unread.
    pub fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Option<Signal>> {
        if self.shared.ended.load(Ordering::Acquire) {
            self.local = VecDeque::new();
            return Poll::Ready(None);
        }
        if let Some(s) = self.local.pop_front() {
            return Poll::Ready(Some(s));
        }
        if self.local.capacity() > KEEP {
            self.local = VecDeque::new();
        }
        let mut st = self.shared.state.lock();
        if !st.queue.is_empty() {
            std::mem::swap(&mut st.queue, &mut self.local);
            drop(st);
            return Poll::Ready(self.local.pop_front());
        }
        if st.tx_gone {
            return Poll::Ready(None);
        }
        if !st.waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
            st.waker = Some(cx.waker().clone());
        }
        Poll::Pending
    }
}

impl MailboxRx {
    /// The reason the process was killed with ([`MailboxTx::kill`]), if
    /// it was.
    pub fn killed(&self) -> Option<Term> {
        if !self.shared.ended.load(Ordering::Acquire) {
            return None;
        }
        self.shared.state.lock().killed.clone()
    }

    /// The process's [`SendGate`].
    pub fn gate(&self) -> SendGate {
        SendGate(self.shared.clone())
    }

    /// Drops every signal already in the mailbox for which `drop_it`
    /// holds; the others keep their order (as `demonitor(Ref, [flush])`
    /// takes a `'DOWN'` out of a BEAM mailbox).
    pub fn remove_queued(&mut self, mut drop_it: impl FnMut(&Signal) -> bool) {
        self.local.retain(|s| !drop_it(s));
        self.shared.state.lock().queue.retain(|s| !drop_it(s));
    }
}

impl Drop for MailboxRx {
    fn drop(&mut self) {
        // (Ended already by `Process`'s drop, before it told the node.)
        self.shared.end_sends();
        let mut st = self.shared.state.lock();
        st.rx_gone = true;
        let queued = std::mem::take(&mut st.queue);
        drop(st);
        // Dropped outside the lock (signals may own large terms).
        drop(queued);
    }
}

impl std::fmt::Debug for MailboxRx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MailboxRx")
    }
}

/// What lets a process send, held by the process and each of its
/// [`ProcessSender`](super::ProcessSender)s: once the process has ended
/// (killed, or dropped) it sends nothing more, and ending it waits for a
/// send under way, so that none comes after its `'DOWN'` or `'EXIT'`.
#[derive(Clone)]
pub struct SendGate(Arc<Shared>);

impl SendGate {
    /// Runs `send` as a send of the process, unless it has ended
    /// ([`SendError::Ended`]).
    pub fn open<T>(&self, send: impl FnOnce() -> Result<T, SendError>) -> Result<T, SendError> {
        struct Sending<'a>(&'a Shared, usize);
        impl Drop for Sending<'_> {
            fn drop(&mut self) {
                SENDING_AS.with(|s| s.set(self.1));
                self.0.sending.fetch_sub(1, Ordering::Release);
            }
        }
        let shared = &*self.0;
        shared.sending.fetch_add(1, Ordering::SeqCst);
        let outer = SENDING_AS.with(|s| s.replace(shared as *const Shared as usize));
        let _sending = Sending(shared, outer);
        if shared.ended.load(Ordering::SeqCst) {
            return Err(SendError::Ended);
        }
        send()
    }

    /// Whether the process has ended.
    pub fn is_ended(&self) -> bool {
        self.0.ended.load(Ordering::Acquire)
    }

    /// Marks the process ended, waiting for a send of its own under way.
    pub(crate) fn end(&self) {
        self.0.end_sends();
    }
}

impl std::fmt::Debug for SendGate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SendGate")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::term::int;
    use std::time::Duration;

    fn msg(i: i32) -> Signal {
        Signal::Message {
            from: None,
            msg: int(i),
        }
    }

    fn value(s: Signal) -> i64 {
        match s {
            Signal::Message { msg, .. } => crate::term::as_int(&msg).unwrap(),
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn signals_come_out_in_order_from_many_senders() {
        let (tx, mut rx) = mailbox();
        let mut tasks = Vec::new();
        for k in 0..4 {
            let tx = tx.clone();
            tasks.push(tokio::spawn(async move {
                for i in 0..10_000 {
                    tx.send(msg(k * 100_000 + i)).unwrap();
                    if i % 100 == 0 {
                        tokio::task::yield_now().await;
                    }
                }
            }));
        }
        let mut last = [-1i64; 4];
        for _ in 0..40_000 {
            let v = value(rx.recv().await.unwrap());
            let k = (v / 100_000) as usize;
            assert!(v % 100_000 > last[k], "out of order");
            last[k] = v % 100_000;
        }
        for t in tasks {
            t.await.unwrap();
        }
        drop(tx);
        assert!(rx.recv().await.is_none(), "every sender gone: None");
    }

    #[tokio::test]
    async fn a_waiting_receiver_is_woken() {
        let (tx, mut rx) = mailbox();
        let h = tokio::spawn(async move { value(rx.recv().await.unwrap()) });
        tokio::time::sleep(Duration::from_millis(10)).await;
        tx.send(msg(7)).unwrap();
        assert_eq!(h.await.unwrap(), 7);
    }

    #[tokio::test]
    async fn the_last_sender_gone_wakes_the_receiver() {
        let (tx, mut rx) = mailbox();
        let tx2 = tx.clone();
        let h = tokio::spawn(async move { rx.recv().await.is_none() });
        tokio::time::sleep(Duration::from_millis(10)).await;
        drop(tx);
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert!(!h.is_finished(), "a sender is left");
        drop(tx2);
        assert!(h.await.unwrap());
    }

    #[tokio::test]
    async fn sends_fail_once_the_receiver_is_gone() {
        let (tx, rx) = mailbox();
        tx.send(msg(1)).unwrap();
        drop(rx);
        assert!(matches!(tx.send(msg(2)), Err(Signal::Message { .. })));
    }

    #[tokio::test]
    async fn a_timed_out_receive_loses_nothing() {
        let (tx, mut rx) = mailbox();
        let r = tokio::time::timeout(Duration::from_millis(5), rx.recv()).await;
        assert!(r.is_err());
        tx.send(msg(3)).unwrap();
        assert_eq!(value(rx.recv().await.unwrap()), 3);
    }

    #[tokio::test]
    async fn a_burst_is_given_back_once_drained() {
        let (tx, mut rx) = mailbox();
        assert_eq!(
            rx.shared.state.lock().queue.capacity(),
            0,
            "nothing before the first signal"
        );
        for i in 0..10_000 {
            tx.send(msg(i)).unwrap();
        }
        for _ in 0..10_000 {
            rx.recv().await.unwrap();
        }
        // The next receive finds both queues drained and gives back the
        // one the burst grew.
        let r = tokio::time::timeout(Duration::from_millis(1), rx.recv()).await;
        assert!(r.is_err());
        assert!(rx.local.capacity() <= KEEP);
        assert!(rx.shared.state.lock().queue.capacity() <= KEEP);
    }
}
