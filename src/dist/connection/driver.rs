//! The loop of an established connection: reads fed to the link, queued
//! messages taken into it, batches written, the link's timer kept.

use super::burst::{is_call, Burst};
use super::{ConnConfig, ConnectionError, Outgoing, PeerLink, Router, MONITOR_P_SIZE};
use crate::dist::flags;
use crate::dist::handshake::PeerInfo;
use crate::dist::link::{Event, Link, LinkConfig, HIGH_WATER, LOW_WATER};
use crate::dist::sender;
use crate::term::Limits;
use crate::util::FloodLog;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering::{Relaxed, SeqCst};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::mpsc;

/// Warnings a second about messages dropped for their content, per
/// connection ([`FloodLog`]); the rest are counted in the next one, or in
/// one more once the flood is over.
const WARNINGS_A_SECOND: u32 = 10;

/// How many times [`drive`]'s loop runs before it yields to other tasks.
pub(super) const ROUNDS: usize = 32;
/// Messages taken off the queue at a time.
pub(super) const TAKE: usize = 4096;
/// Most bytes (as [`Outgoing::bytes`] counts them) in the link at a time
/// beyond one message: what the link holds is no longer counted by the
/// senders' queue bounds, so it is kept small (it held up to [`TAKE`]
/// messages of any size: a peer that never read kept gigabytes of
/// replies there).
pub(super) const TAKE_BYTES: usize = 4 << 20;
/// Most monitors an [`Outgoing::Monitors`] should hold: the writer takes a
/// batch whole, so a bigger one would take it past the number of messages
/// it takes off the queue at a time (this many).
pub const BATCH_MAX: usize = TAKE;

/// Drives an established connection until it ends; returns why.
///
/// One task, one loop: it reads into a fixed buffer and feeds
/// [`Link::handle_input`] (whose messages go to `router`), takes queued
/// messages into the link, writes one batch ([`Link::poll_transmit`]) at a
/// time and flushes when the queue runs empty, and keeps the link's timer.
/// Nothing but the link is generic: any socket will do (`tokio::io::duplex`
/// in the tests, with paused time).
pub async fn drive<S>(
    stream: S,
    peer: PeerInfo,
    rx: mpsc::UnboundedReceiver<Outgoing>,
    link: Arc<PeerLink>,
    router: Arc<dyn Router>,
    cfg: ConnConfig,
) -> ConnectionError
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    let now = tokio::time::Instant::now();
    let mut state = Link::new(
        LinkConfig {
            ticktime: cfg.ticktime,
            max_frame: cfg.max_frame,
            fragment_size: cfg.fragment_size,
            fragments: peer.flags & flags::FRAGMENTS != 0,
            atom_cache: peer.flags & flags::DIST_HDR_ATOM_CACHE != 0,
            limits: Limits {
                max_memory: cfg.max_term_memory,
                ..Limits::default()
            },
        },
        now.into_std(),
    );
    state.set_peer_flags(peer.flags);
    if let Some(names) = router.raw_names() {
        state.set_raw_names(names);
    }
    let r = router.clone();
    state.set_receivers(Arc::new(move |to| r.has_receiver(to)));
    let mut d = Driver {
        io: stream,
        state,
        rx,
        rx_open: true,
        rbuf: vec![0; LOW_WATER].into_boxed_slice(),
        wbuf: Vec::with_capacity(LOW_WATER),
        wpos: 0,
        unflushed: false,
        timer: Box::pin(tokio::time::sleep_until(now + cfg.ticktime / 4)),
        hold: cfg.read_hold,
        held: Box::pin(tokio::time::sleep_until(now)),
        holding: false,
        burst: Burst::default(),
        shared: link.clone(),
        router,
        peer: peer.name.to_string(),
        warnings: {
            let peer = peer.name.to_string();
            FloodLog::new(
                WARNINGS_A_SECOND,
                Duration::from_secs(1),
                move |held_back| {
                    tracing::warn!(
                        peer = %peer,
                        held_back,
                        "{held_back} more dropped messages from the peer were not logged (a flood, now over)"
                    );
                },
            )
        },
    };
    tokio::select! {
        e = std::future::poll_fn(|cx| d.poll(cx)) => e,
        _ = link.close.notified() => ConnectionError::ClosedLocally,
    }
}

pub(super) struct Driver<S> {
    io: S,
    state: Link,
    rx: mpsc::UnboundedReceiver<Outgoing>,
    rx_open: bool,
    rbuf: Box<[u8]>,
    wbuf: Vec<u8>,
    /// Bytes of `wbuf` already written.
    wpos: usize,
    unflushed: bool,
    timer: Pin<Box<tokio::time::Sleep>>,
    /// [`ConnConfig::read_hold`].
    hold: Option<Duration>,
    /// Until when reading waits after a burst (while `holding`).
    held: Pin<Box<tokio::time::Sleep>>,
    holding: bool,
    burst: Burst,
    shared: Arc<PeerLink>,
    router: Arc<dyn Router>,
    peer: String,
    /// Bounds the warnings about dropped messages (and counts a flood of
    /// them once it is over).
    warnings: Arc<FloodLog>,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Driver<S> {
    /// Runs until nothing can progress (every source has registered the
    /// waker) or the connection ends.
    fn poll(&mut self, cx: &mut Context<'_>) -> Poll<ConnectionError> {
        for _ in 0..ROUNDS {
            let mut progress = false;
            let now = tokio::time::Instant::now();
            // Input, unless waiting after a burst.
            if self.holding && self.held.as_mut().poll(cx).is_ready() {
                self.holding = false;
            }
            let mut rb = ReadBuf::new(&mut self.rbuf);
            let read = if self.holding {
                Poll::Pending
            } else {
                Pin::new(&mut self.io).poll_read(cx, &mut rb)
            };
            match read {
                Poll::Ready(Err(e)) => return Poll::Ready(ConnectionError::Io(e)),
                Poll::Ready(Ok(())) if rb.filled().is_empty() => {
                    return Poll::Ready(ConnectionError::Closed)
                }
                Poll::Ready(Ok(())) => {
                    let n = rb.filled().len();
                    self.shared.bytes_in.fetch_add(n as u64, Relaxed);
                    self.shared.last_in.store(self.shared.ms(), Relaxed);
                    if let Err(e) = self.state.handle_input(&self.rbuf[..n], now.into_std()) {
                        return Poll::Ready(e.into());
                    }
                    let (msgs, calls) = self.deliver();
                    progress = true;
                    if let Some(hold) = self.hold {
                        if self
                            .burst
                            .after_read(now.into_std(), n, self.rbuf.len(), msgs, calls)
                        {
                            self.held.as_mut().reset(now + hold);
                            self.holding = true;
                        }
                    }
                }
                Poll::Pending => {}
            }
            // Time.
            if self.timer.as_mut().poll(cx).is_ready() {
                if let Err(e) = self.state.handle_timeout(now.into_std()) {
                    return Poll::Ready(e.into());
                }
            }
            // Output: a new batch once the last one is written.
            if self.wpos == self.wbuf.len() {
                self.take(cx);
                self.wbuf.clear();
                self.wpos = 0;
                let n = self.state.poll_transmit(now.into_std(), &mut self.wbuf);
                self.shared.msgs_out.fetch_add(n as u64, Relaxed);
                self.burst.sent(n as u64);
            }
            while self.wpos < self.wbuf.len() {
                match Pin::new(&mut self.io).poll_write(cx, &self.wbuf[self.wpos..]) {
                    Poll::Ready(Ok(0)) => {
                        return Poll::Ready(ConnectionError::Io(
                            std::io::ErrorKind::WriteZero.into(),
                        ))
                    }
                    Poll::Ready(Ok(k)) => {
                        self.wpos += k;
                        self.shared.bytes_out.fetch_add(k as u64, Relaxed);
                        self.unflushed = true;
                        progress = true;
                    }
                    Poll::Ready(Err(e)) => return Poll::Ready(ConnectionError::Io(e)),
                    Poll::Pending => break,
                }
            }
            if self.wpos == self.wbuf.len() && !self.state.wants_transmit() {
                // The queue ran empty: flush, give back a buffer a burst
                // grew, and close if the node let go of the queue.
                if self.wbuf.capacity() > HIGH_WATER {
                    self.wbuf = Vec::with_capacity(LOW_WATER);
                    self.wpos = 0;
                }
                if self.unflushed {
                    match Pin::new(&mut self.io).poll_flush(cx) {
                        Poll::Ready(Ok(())) => self.unflushed = false,
                        Poll::Ready(Err(e)) => return Poll::Ready(ConnectionError::Io(e)),
                        Poll::Pending => {}
                    }
                }
                if !self.rx_open && !self.unflushed {
                    let _ = Pin::new(&mut self.io).poll_shutdown(cx);
                    return Poll::Ready(ConnectionError::ClosedLocally);
                }
            }
            // The timer, to the link's next deadline.
            let next = tokio::time::Instant::from_std(self.state.next_timeout());
            if self.timer.deadline() != next {
                self.timer.as_mut().reset(next);
            }
            if self.timer.as_mut().poll(cx).is_ready() {
                progress = true;
            }
            if !(progress || self.wpos == self.wbuf.len() && self.state.wants_transmit()) {
                return Poll::Pending;
            }
        }
        // Busy: let other tasks run, then go on.
        cx.waker().wake_by_ref();
        Poll::Pending
    }

    /// Takes queued messages into the link (a batch's worth at most).
    fn take(&mut self, cx: &mut Context<'_>) {
        // Counted down once a batch, not with two atomic operations a
        // message on the line the senders count up on.
        let (mut taken, mut bytes) = (0, 0);
        while self.rx_open && self.state.queued() < TAKE && self.state.queued_bytes() < TAKE_BYTES {
            match self.rx.poll_recv(cx) {
                Poll::Ready(Some(Outgoing::Msg(m, size))) => {
                    taken += 1;
                    bytes += size;
                    self.state.queue_sized(m, size);
                }
                Poll::Ready(Some(Outgoing::Encoded(b, size))) => {
                    taken += 1;
                    bytes += size;
                    let (m, payload) = *b;
                    self.state.queue_encoded(m, payload, size);
                }
                // Taken whole: the batch may take the link past TAKE once.
                Poll::Ready(Some(Outgoing::Monitors(b))) => {
                    taken += b.targets.len();
                    bytes += b.targets.len() * MONITOR_P_SIZE;
                    self.state.queue_monitors(b);
                }
                Poll::Ready(None) => self.rx_open = false,
                Poll::Pending => break,
            }
        }
        if taken > 0 {
            // (`SeqCst`: see `PeerLink::wait_below`; on x86-64 the same
            // locked instruction as `Relaxed`.)
            self.shared.queued.fetch_sub(taken, SeqCst);
            self.shared.queued_bytes.fetch_sub(bytes, SeqCst);
            if self.shared.waiting.load(SeqCst) > 0 {
                // senders waiting on a busy peer
                self.shared.drained.notify_waiters();
            }
        }
    }

    /// Hands the messages read to the router: how many, and how many of
    /// them are calls ([`is_call`]).
    fn deliver(&mut self) -> (u64, u64) {
        // Counted once per read, not with an atomic add per message.
        let mut n = 0;
        let mut calls = 0;
        // (Its own clone: the guard must not borrow `self`.)
        let shared = self.shared.clone();
        let _routing = shared.routing();
        while let Some(e) = self.state.poll_event() {
            if self.shared.has_ended() {
                // The node let go of the peer (dropped for its queue or
                // what it holds, or replaced): what it sent after is not
                // acted on (a monitor set now would outlive its
                // connection). The connection closes next.
                continue;
            }
            match e {
                // A message whose sender is not the peer's is dropped
                // here, before any router acts on it (see `sender`).
                Event::Message(m) => match sender::check(&m, &self.peer) {
                    Ok(()) => {
                        n += 1;
                        calls += u64::from(is_call(&m));
                        self.router.incoming(&self.peer, m);
                    }
                    Err(e) => self.dropped(e.op, &e),
                },
                Event::Raw(m) => match sender::check_reg_send(&m.from, &self.peer) {
                    Ok(()) => {
                        n += 1;
                        self.router.incoming_raw(&self.peer, m);
                    }
                    Err(e) => self.dropped(e.op, &e),
                },
                Event::Dropped { error, control } => {
                    self.dropped(control.as_deref().unwrap_or("?"), &error)
                }
            }
        }
        if n > 0 {
            self.shared.msgs_in.fetch_add(n, Relaxed);
        }
        (n, calls)
    }

    /// Warns (within [`WARNINGS_A_SECOND`]) that a message from the peer,
    /// whose control term is `control`, was dropped for `why`.
    fn dropped(&mut self, control: &str, why: &dyn std::fmt::Display) {
        if let Some(held_back) = self.warnings.event() {
            tracing::warn!(
                peer = %self.peer,
                control,
                held_back,
                "dropped a message from the peer, the connection stays: {why}"
            );
        }
    }
}
