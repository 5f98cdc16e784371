//! The per-peer connection task: runs the handshake over a socket, then
//! [`drive`]s the established link. The only async code in `dist/`; the
//! protocol state (framing, ticks, batching, fragments, the silent-peer
//! timeout) is [`super::link::Link`], which does no IO.
//!
//! Writes are batched: the driver takes the queued messages, the link
//! encodes them into one reused buffer, written with as few syscalls as
//! the socket allows and flushed when the queue runs empty.

use super::codec;
use super::control;
use super::flags;
use super::handshake::{self, Acceptor, HandshakeError, Initiator, Local, PeerInfo, Status, Step};
use super::link::{Event, Link, LinkConfig, LinkError, HIGH_WATER, LOW_WATER};
use super::monitors::MonitorBatch;
use super::raw::{RawNames, RawRegSend};
pub use crate::config::QueueLimit;
use crate::term::{Limits, Term};
use erl_dist::message::Message;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering::{Relaxed, SeqCst};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, AtomicUsize};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, Notify};

/// Why a connection ended.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectionError {
    /// Socket error.
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
    /// Handshake failed.
    #[error("handshake: {0}")]
    Handshake(#[from] HandshakeError),
    /// The peer sent something undecodable.
    #[error("bad input from peer: {0}")]
    Decode(#[from] codec::DecodeError),
    /// Nothing heard for `net_ticktime`.
    #[error("net_tick_timeout: no data from the peer for {0:?}")]
    TickTimeout(Duration),
    /// The peer closed the connection.
    #[error("connection closed by peer")]
    Closed,
    /// We closed it (replaced by a newer connection, or shutting down).
    #[error("connection closed locally")]
    ClosedLocally,
    /// Could not find the peer (EPMD) or reach its port.
    #[error("{0}")]
    Unreachable(String),
    /// One node has a short name, the other a long one.
    #[error("{0}")]
    MixedNames(String),
    /// The handshake took too long.
    #[error("handshake timed out")]
    HandshakeTimeout,
    /// The connection's task panicked (a bug); the connection was closed
    /// and the panic contained.
    #[error("connection task crashed: {0}")]
    Crashed(String),
}

/// Something to send to a peer.
// A `Msg` is sent as is, not boxed: a box would be one more allocation per
// message on the hot path; the channel stores the enum in blocks anyway.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum Outgoing {
    /// A control message (with payload), with its size as written
    /// ([`Outgoing::msg`] measures it): counted against the queue's byte
    /// bound by the sender, taken back by the writer.
    Msg(Message, usize),
    /// MONITOR_Ps of one process to pids of the peer, sent in this order,
    /// queued at once (one channel send, not one each) and written from
    /// their numbers ([`MonitorBatch`]).
    Monitors(MonitorBatch),
}

impl Outgoing {
    /// `msg`, measured ([`control::message_size`]).
    pub fn msg(msg: Message) -> Self {
        let size = control::message_size(&msg);
        Outgoing::Msg(msg, size)
    }

    /// How many messages this is.
    pub(crate) fn len(&self) -> usize {
        match self {
            Outgoing::Msg(..) => 1,
            Outgoing::Monitors(b) => b.targets.len(),
        }
    }

    /// What it costs while queued, in bytes as written (a MONITOR_P of a
    /// batch is counted as [`MONITOR_P_SIZE`]). The sender adds it to
    /// [`PeerLink::queued_bytes`], the writer takes it back.
    pub(crate) fn bytes(&self) -> usize {
        match self {
            Outgoing::Msg(_, size) => *size,
            Outgoing::Monitors(b) => b.targets.len() * MONITOR_P_SIZE,
        }
    }
}

/// About what one MONITOR_P of a [`MonitorBatch`] takes on the wire (two
/// pids and a reference with their node names, the packet's head).
pub const MONITOR_P_SIZE: usize = 128;

/// Which side dialled a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// The peer dialled us.
    In,
    /// We dialled the peer.
    Out,
}

impl Direction {
    /// `"in"` or `"out"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::In => "in",
            Direction::Out => "out",
        }
    }
}

/// What the node and a connection's task share. The counters are updated
/// by the reader and writer with relaxed atomics (no lock on the hot path)
/// and read by [`crate::Node::peer_info`].
#[derive(Debug)]
pub struct PeerLink {
    /// Messages queued for the writer and not yet taken by it.
    pub queued: AtomicUsize,
    /// Their size as they will be written ([`control::message_size`]).
    pub queued_bytes: AtomicUsize,
    /// Notified to close the connection at once (queued messages dropped).
    pub close: Notify,
    /// Notified when the writer has taken messages from the queue, and at
    /// [`PeerLink::end`] ([`PeerLink::wait_below`]).
    drained: Notify,
    /// Set by [`PeerLink::end`].
    ended: AtomicBool,
    /// Senders in [`PeerLink::wait_below`]: the writer notifies only when
    /// there are some (a notification takes a lock).
    waiting: AtomicUsize,
    /// When this link was made; the times below count from it.
    base: Instant,
    /// Milliseconds from `base` to the connection coming up, plus one (0
    /// while handshaking).
    up_at: AtomicU64,
    /// 1 when the peer dialled us, 2 when we dialled it (0 until up).
    direction: AtomicU8,
    /// Milliseconds from `base` to the last bytes read (ticks included).
    last_in: AtomicU64,
    /// Control messages read (after reassembly) and written.
    msgs_in: AtomicU64,
    msgs_out: AtomicU64,
    /// Bytes read from and written to the socket (framing and ticks
    /// included).
    bytes_in: AtomicU64,
    bytes_out: AtomicU64,
}

impl Default for PeerLink {
    fn default() -> Self {
        PeerLink {
            queued: AtomicUsize::new(0),
            queued_bytes: AtomicUsize::new(0),
            close: Notify::new(),
            drained: Notify::new(),
            ended: AtomicBool::new(false),
            waiting: AtomicUsize::new(0),
            base: Instant::now(),
            up_at: AtomicU64::new(0),
            direction: AtomicU8::new(0),
            last_in: AtomicU64::new(0),
            msgs_in: AtomicU64::new(0),
            msgs_out: AtomicU64::new(0),
            bytes_in: AtomicU64::new(0),
            bytes_out: AtomicU64::new(0),
        }
    }
}

/// A snapshot of a connection's counters ([`PeerLink::stats`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkStats {
    /// Which side dialled; `None` while the handshake runs.
    pub direction: Option<Direction>,
    /// How long the connection has been up; `None` while handshaking.
    pub connected_for: Option<Duration>,
    /// How long ago bytes last came from the peer (a tick counts).
    pub last_heard: Duration,
    /// Control messages received.
    pub msgs_in: u64,
    /// Control messages sent.
    pub msgs_out: u64,
    /// Bytes received.
    pub bytes_in: u64,
    /// Bytes sent.
    pub bytes_out: u64,
    /// Messages queued for the writer.
    pub queued: usize,
    /// Their size in bytes, as they will be written.
    pub queued_bytes: usize,
}

impl PeerLink {
    fn ms(&self) -> u64 {
        self.base.elapsed().as_millis() as u64
    }

    /// Puts `out` on `tx`, the queue of this link's writer, counted
    /// (messages and bytes) as the writer counts it down when it takes it;
    /// how much is queued with it, or `None` when the writer is gone.
    pub fn enqueue(
        &self,
        tx: &mpsc::UnboundedSender<Outgoing>,
        out: Outgoing,
    ) -> Option<QueueLimit> {
        // Counted before the send, so the writer never sees the counters
        // below zero.
        let (n, bytes) = (out.len(), out.bytes());
        let queued = self.queued.fetch_add(n, Relaxed) + n;
        let queued_bytes = self.queued_bytes.fetch_add(bytes, Relaxed) + bytes;
        if tx.send(out).is_err() {
            self.queued.fetch_sub(n, Relaxed);
            self.queued_bytes.fetch_sub(bytes, Relaxed);
            return None;
        }
        Some(QueueLimit {
            messages: queued,
            bytes: queued_bytes,
        })
    }

    /// Whether more than `limit` is queued for the writer.
    pub fn over(&self, limit: QueueLimit) -> bool {
        self.queued.load(SeqCst) > limit.messages || self.queued_bytes.load(SeqCst) > limit.bytes
    }

    /// Waits until at most `limit` is queued for the writer, or until
    /// [`end`](Self::end): what a sender does on a busy peer, as BEAM
    /// suspends a process sending to a busy distribution port.
    pub async fn wait_below(&self, limit: QueueLimit) {
        /// Counts a waiting sender while it waits (dropped on return or
        /// when the waiting future is dropped).
        struct Waiting<'a>(&'a AtomicUsize);
        impl Drop for Waiting<'_> {
            fn drop(&mut self) {
                self.0.fetch_sub(1, SeqCst);
            }
        }
        self.waiting.fetch_add(1, SeqCst);
        let _waiting = Waiting(&self.waiting);
        loop {
            let drained = self.drained.notified();
            tokio::pin!(drained);
            // Registered, and counted in `waiting`, before the check: the
            // writer lowers `queued` and then reads `waiting` (sequentially
            // consistent, both sides), so a drain after the check wakes
            // this wait.
            drained.as_mut().enable();
            if !self.over(limit) || self.ended.load(SeqCst) {
                return;
            }
            drained.await;
        }
    }

    /// Nothing will take the queue for its sender any more (the node let go
    /// of the peer: its connection ended, was dropped or replaced, or the
    /// node shuts down): the senders waiting on it go on.
    pub fn end(&self) {
        self.ended.store(true, SeqCst);
        self.drained.notify_waiters();
    }

    /// The connection is up, dialled by `direction`'s side.
    pub fn mark_up(&self, direction: Direction) {
        let now = self.ms();
        self.direction.store(
            match direction {
                Direction::In => 1,
                Direction::Out => 2,
            },
            Relaxed,
        );
        self.last_in.store(now, Relaxed);
        self.up_at.store(now + 1, Relaxed);
    }

    /// The counters now.
    pub fn stats(&self) -> LinkStats {
        let now = self.ms();
        let up_at = self.up_at.load(Relaxed);
        LinkStats {
            direction: match self.direction.load(Relaxed) {
                1 => Some(Direction::In),
                2 => Some(Direction::Out),
                _ => None,
            },
            connected_for: (up_at > 0)
                .then(|| Duration::from_millis(now.saturating_sub(up_at - 1))),
            last_heard: Duration::from_millis(now.saturating_sub(self.last_in.load(Relaxed))),
            msgs_in: self.msgs_in.load(Relaxed),
            msgs_out: self.msgs_out.load(Relaxed),
            bytes_in: self.bytes_in.load(Relaxed),
            bytes_out: self.bytes_out.load(Relaxed),
            queued: self.queued.load(Relaxed),
            queued_bytes: self.queued_bytes.load(Relaxed),
        }
    }
}

/// Where a connection delivers what it reads.
pub trait Router: Send + Sync + 'static {
    /// A control message from `peer`.
    fn incoming(&self, peer: &str, msg: Message);

    /// The names whose large `REG_SEND`s this router takes with their
    /// payload as bytes ([`Router::incoming_raw`]); none by default.
    fn raw_names(&self) -> Option<RawNames> {
        None
    }

    /// A large `REG_SEND` from `peer` to one of [`Router::raw_names`],
    /// its payload as bytes. By default it is decoded here and handed to
    /// [`Router::incoming`] as any other message (dropped, with a warning,
    /// if it does not decode, as the link drops such a message).
    fn incoming_raw(&self, peer: &str, msg: RawRegSend) {
        match msg.payload.decode() {
            Ok(t) => self.incoming(
                peer,
                Message::reg_send(msg.from, msg.to_name.as_str().into(), t),
            ),
            Err(e) => tracing::warn!(
                peer,
                to = msg.to_name,
                "dropped a message from the peer, the connection stays: {e}"
            ),
        }
    }
}

/// Settings of one connection.
#[derive(Debug, Clone, Copy)]
pub struct ConnConfig {
    /// `net_ticktime`.
    pub ticktime: Duration,
    /// Largest packet or message accepted.
    pub max_frame: usize,
    /// Fragment size for large outgoing messages.
    pub fragment_size: usize,
    /// How long to wait before reading again amid a stream ([`Burst`]);
    /// `None` reads at once (see `NodeConfig::read_hold`).
    pub read_hold: Option<Duration>,
}

const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

async fn read_hs(s: &mut TcpStream) -> Result<Vec<u8>, ConnectionError> {
    let len = s.read_u16().await? as usize;
    let mut b = vec![0; len];
    s.read_exact(&mut b).await?;
    Ok(b)
}

async fn write_hs(s: &mut TcpStream, msgs: &[Vec<u8>]) -> Result<(), ConnectionError> {
    let mut out = Vec::new();
    for m in msgs {
        out.extend_from_slice(&handshake::frame(m));
    }
    s.write_all(&out).await?;
    Ok(())
}

/// Runs the initiating handshake on a fresh socket.
pub async fn handshake_out(s: &mut TcpStream, local: Local) -> Result<PeerInfo, ConnectionError> {
    let _ = s.set_nodelay(true);
    tokio::time::timeout(HANDSHAKE_TIMEOUT, async {
        let (mut hs, first) = Initiator::start(local, rand::random());
        write_hs(s, &[first]).await?;
        loop {
            let m = match read_hs(s).await {
                Err(ConnectionError::Io(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                    return Err(hs.closed_by_peer().into())
                }
                m => m?,
            };
            match hs.handle(&m)? {
                Step::Continue(out) => write_hs(s, &out).await?,
                Step::Done(out, peer) => {
                    write_hs(s, &out).await?;
                    return Ok(peer);
                }
                Step::NameReceived(_) => unreachable!("initiator never yields NameReceived"),
            }
        }
    })
    .await
    .map_err(|_| ConnectionError::HandshakeTimeout)?
}

/// Runs the accepting handshake on a fresh socket. `admit` sees the peer's
/// name first and may refuse it with a status (`nok` when a simultaneous
/// connect is settled in favour of our own attempt).
pub async fn handshake_in(
    s: &mut TcpStream,
    local: Local,
    admit: impl FnOnce(&PeerInfo) -> Result<(), Status>,
) -> Result<PeerInfo, ConnectionError> {
    let _ = s.set_nodelay(true);
    tokio::time::timeout(HANDSHAKE_TIMEOUT, async {
        let mut hs = Acceptor::new(local, rand::random());
        let first = read_hs(s).await?;
        match hs.handle(&first) {
            Ok(Step::NameReceived(peer)) => {
                if let Err(status) = admit(&peer) {
                    let _ = write_hs(s, &[hs.refuse(status)]).await;
                    return Err(HandshakeError::Refused(status).into());
                }
            }
            Ok(_) => return Err(HandshakeError::Malformed("unexpected step").into()),
            Err(e @ HandshakeError::MissingFlags { .. }) => {
                let _ = write_hs(s, &[hs.refuse(Status::NotAllowed)]).await;
                return Err(e.into());
            }
            Err(e) => return Err(e.into()),
        }
        write_hs(s, &hs.accept()?).await?;
        let reply = read_hs(s).await?;
        match hs.handle(&reply)? {
            Step::Done(out, peer) => {
                write_hs(s, &out).await?;
                Ok(peer)
            }
            _ => Err(HandshakeError::Malformed("unexpected step").into()),
        }
    })
    .await
    .map_err(|_| ConnectionError::HandshakeTimeout)?
}

/// How many times [`drive`]'s loop runs before it yields to other tasks.
const ROUNDS: usize = 32;
/// Messages taken off the queue at a time.
const TAKE: usize = 4096;
/// Messages that, delivered within one [`BURST_WINDOW`], make a stream
/// ([`Burst`]): 64 in 1 ms, a rate of 64k messages a second.
pub const BURST_MSGS: u64 = 64;
/// Messages one read must deliver for a stream to be held ([`Burst`]).
pub const BURST_READ: u64 = 8;
/// The window over which [`BURST_MSGS`] are counted.
pub const BURST_WINDOW: Duration = Duration::from_millis(1);

/// Tells a peer that streams messages to us, one way (so many a
/// millisecond that waking up for each read costs more than it gains),
/// from one that calls us or sends a few at a time. After a read, the
/// driver waits `read_hold` before reading again, so that the peer's next
/// writes land in the socket's buffer without a wake-up each (on loopback,
/// waking the reader is most of what a write costs the writer) and are read
/// together, when all of these hold:
///
/// * the read drained the socket (a full buffer means more is waiting,
///   read at once);
/// * it delivered [`BURST_READ`] messages or more (a caller waiting for
///   each reply sends one or two at a time, however fast);
/// * the current [`BURST_WINDOW`] brought [`BURST_MSGS`] or more;
/// * we sent the peer fewer than one message for eight it sent in that
///   window: callers waiting for our replies (however many, each in its
///   loop) send nothing while we wait, so a hold would only slow them
///   (with 10 or 30 BEAM processes calling an echo of ours in a loop,
///   holds without this rule halved the calls a second);
/// * no call came from the peer in this window or the one before (a
///   `'$gen_call'` request, or a spawn request as `erpc` makes): its
///   caller waits for us, and one that calls beside a stream (a call every
///   100 µs beside 100 messages of 1 KiB a millisecond) sends about one
///   message for eight of ours, at the edge of the rule above, and had a
///   call in a hundred wait for a hold.
///
/// A peer that waits for something of ours that goes another way (through
/// another node) is not told apart, nor one we answer once for eight or
/// more of its messages by other means than a call.
#[derive(Debug, Clone, Copy, Default)]
pub struct Burst {
    window_end: Option<Instant>,
    msgs_in: u64,
    msgs_out: u64,
    /// Calls from the peer in this window.
    calls: u64,
    /// Calls from the peer in the window just before this one.
    calls_before: u64,
}

impl Burst {
    /// A read at `now` of `read` bytes into a buffer of `buf` delivered
    /// `msgs` messages, `calls` of them calls ([`is_call`]): whether to
    /// wait before the next.
    pub fn after_read(
        &mut self,
        now: Instant,
        read: usize,
        buf: usize,
        msgs: u64,
        calls: u64,
    ) -> bool {
        match self.window_end {
            Some(end) if now < end => {}
            end => {
                let next = end.is_some_and(|end| now < end + BURST_WINDOW);
                self.calls_before = if next { self.calls } else { 0 };
                self.window_end = Some(now + BURST_WINDOW);
                self.msgs_in = 0;
                self.msgs_out = 0;
                self.calls = 0;
            }
        }
        self.msgs_in += msgs;
        self.calls += calls;
        read < buf
            && msgs >= BURST_READ
            && self.msgs_in >= BURST_MSGS
            && self.msgs_out.saturating_mul(8) < self.msgs_in
            && self.calls == 0
            && self.calls_before == 0
    }

    /// `msgs` messages went to the peer.
    pub fn sent(&mut self, msgs: u64) {
        self.msgs_out += msgs;
    }
}

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
            limits: Limits::default(),
        },
        now.into_std(),
    );
    if let Some(names) = router.raw_names() {
        state.set_raw_names(names);
    }
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
    };
    tokio::select! {
        e = std::future::poll_fn(|cx| d.poll(cx)) => e,
        _ = link.close.notified() => ConnectionError::ClosedLocally,
    }
}

struct Driver<S> {
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
        while self.rx_open && self.state.queued() < TAKE {
            match self.rx.poll_recv(cx) {
                Poll::Ready(Some(Outgoing::Msg(m, size))) => {
                    taken += 1;
                    bytes += size;
                    self.state.queue(m);
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
        while let Some(e) = self.state.poll_event() {
            match e {
                Event::Message(m) => {
                    n += 1;
                    calls += u64::from(is_call(&m));
                    self.router.incoming(&self.peer, m);
                }
                Event::Raw(m) => {
                    n += 1;
                    self.router.incoming_raw(&self.peer, m);
                }
                Event::Dropped { error, control } => tracing::warn!(
                    peer = %self.peer,
                    control = control.as_deref().unwrap_or("?"),
                    "dropped a message from the peer, the connection stays: {error}"
                ),
            }
        }
        if n > 0 {
            self.shared.msgs_in.fetch_add(n, Relaxed);
        }
        (n, calls)
    }
}

/// Whether a message is a call whose caller waits for our answer: a
/// `gen_server:call` (`gen:call`, as `gen_statem` and `rex` calls are too)
/// request, `{'$gen_call', From, Request}`, or a spawn request (what
/// `erpc` and `rpc:call` send).
pub fn is_call(m: &Message) -> bool {
    let payload = match m {
        Message::Send(s) => &s.message,
        Message::SendSender(s) => &s.message,
        Message::RegSend(s) => &s.message,
        Message::AliasSend(s) => &s.message,
        Message::SendTt(s) => &s.message,
        Message::SendSenderTt(s) => &s.message,
        Message::RegSendTt(s) => &s.message,
        Message::AliasSendTt(s) => &s.message,
        Message::SpawnRequest(_) | Message::SpawnRequestTt(_) => return true,
        _ => return false,
    };
    matches!(payload, Term::Tuple(t) if t.elements.len() == 3
        && matches!(&t.elements[0], Term::Atom(a) if a.name == "$gen_call"))
}

impl From<LinkError> for ConnectionError {
    fn from(e: LinkError) -> Self {
        match e {
            LinkError::Decode(e) => ConnectionError::Decode(e),
            LinkError::TickTimeout(t) => ConnectionError::TickTimeout(t),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::NodeName;
    use crate::dist::control;
    use crate::term::{atom, binary, tuple, Atom, Pid};
    use tokio::io::DuplexStream;

    const TICK: Duration = Duration::from_secs(60);

    /// Hands every message to a channel.
    struct Collect(mpsc::UnboundedSender<(String, Message)>);

    impl Router for Collect {
        fn incoming(&self, peer: &str, msg: Message) {
            let _ = self.0.send((peer.to_string(), msg));
        }
    }

    fn peer(name: &str) -> PeerInfo {
        PeerInfo {
            name: NodeName::parse(name).unwrap(),
            flags: flags::OFFERED,
            creation: 1,
        }
    }

    struct Side {
        tx: mpsc::UnboundedSender<Outgoing>,
        got: mpsc::UnboundedReceiver<(String, Message)>,
        link: Arc<PeerLink>,
        task: tokio::task::JoinHandle<ConnectionError>,
    }

    /// A driven connection over `io` to a peer called `name`.
    fn side(io: DuplexStream, name: &str) -> Side {
        side_with(io, name, None)
    }

    /// [`side`] with a [`ConnConfig::read_hold`].
    fn side_with(io: DuplexStream, name: &str, read_hold: Option<Duration>) -> Side {
        let (tx, rx) = mpsc::unbounded_channel();
        let (gtx, got) = mpsc::unbounded_channel();
        let link = Arc::new(PeerLink::default());
        let cfg = ConnConfig {
            ticktime: TICK,
            max_frame: 1 << 24,
            fragment_size: 64 * 1024,
            read_hold,
        };
        let task = tokio::spawn(drive(
            io,
            peer(name),
            rx,
            link.clone(),
            Arc::new(Collect(gtx)),
            cfg,
        ));
        Side {
            tx,
            got,
            link,
            task,
        }
    }

    fn send(s: &Side, m: Message) {
        s.link.enqueue(&s.tx, Outgoing::msg(m)).unwrap();
    }

    fn msg(i: u32, size: usize) -> Message {
        Message::send(Pid::new("a@h", i, 0, 1), binary(vec![1; size]))
    }

    const NO_LIMIT: QueueLimit = QueueLimit {
        messages: usize::MAX,
        bytes: usize::MAX,
    };

    /// A sender held by `limit` (of 3000 queued messages of 100 bytes) until
    /// the writer has taken the queue under it.
    async fn a_sender_waits_until_the_writer_takes_the_queue_under(limit: QueueLimit) {
        // a's writer blocked: b does not read yet (a small pipe)
        let (a_io, mut b_io) = tokio::io::duplex(1024);
        let a = side(a_io, "b@h");
        for i in 0..3000 {
            send(&a, msg(i, 100));
        }
        let waiter = {
            let link = a.link.clone();
            tokio::spawn(async move { link.wait_below(limit).await })
        };
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert!(!waiter.is_finished(), "waits while over the limit");
        assert!(a.link.over(limit));
        // b reads: the writer takes the queue down and the sender goes on
        let reader = tokio::spawn(async move {
            let mut buf = vec![0; 1 << 16];
            while b_io.read(&mut buf).await.is_ok_and(|n| n > 0) {}
        });
        tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .expect("the waiter goes on once the queue is taken")
            .unwrap();
        assert!(!a.link.over(limit));
        // under the limit: no wait at all
        a.link.wait_below(NO_LIMIT).await;
        drop(a.tx);
        // everything taken: the counters are back to zero
        let ended = tokio::time::timeout(Duration::from_secs(5), a.task).await;
        assert!(ended.is_ok(), "the writer ends once its queue is closed");
        let st = a.link.stats();
        assert_eq!((st.queued, st.queued_bytes), (0, 0));
        reader.abort();
    }

    #[tokio::test(start_paused = true)]
    async fn a_sender_waits_on_a_queue_of_too_many_messages() {
        let limit = QueueLimit {
            messages: 500,
            bytes: usize::MAX,
        };
        a_sender_waits_until_the_writer_takes_the_queue_under(limit).await;
    }

    #[tokio::test(start_paused = true)]
    async fn a_sender_waits_on_a_queue_of_too_many_bytes() {
        // 100-byte payloads: a message is about 130 bytes as written
        assert!((120..160).contains(&Outgoing::msg(msg(1, 100)).bytes()));
        let limit = QueueLimit {
            messages: usize::MAX,
            bytes: 64 << 10,
        };
        a_sender_waits_until_the_writer_takes_the_queue_under(limit).await;
    }

    #[tokio::test(start_paused = true)]
    async fn an_ended_connection_releases_its_waiters() {
        let link = Arc::new(PeerLink::default());
        link.queued.store(10, Relaxed);
        let none = QueueLimit {
            messages: 0,
            bytes: 0,
        };
        let w = {
            let link = link.clone();
            tokio::spawn(async move { link.wait_below(none).await })
        };
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert!(!w.is_finished());
        link.end();
        tokio::time::timeout(Duration::from_secs(1), w)
            .await
            .expect("an ended connection releases its waiters")
            .unwrap();
        link.wait_below(none).await;
    }

    #[tokio::test(start_paused = true)]
    async fn two_drivers_exchange_messages_both_ways() {
        let (a, b) = tokio::io::duplex(4096);
        let (mut a, mut b) = (side(a, "b@h"), side(b, "a@h"));
        let sizes = [0, 10, 1000, 200_000, 3];
        for (i, &n) in sizes.iter().enumerate() {
            send(&a, msg(i as u32, n));
            send(
                &b,
                Message::reg_send(Pid::new("b@h", 1, 0, 1), "x".into(), atom("hi")),
            );
        }
        for (i, &n) in sizes.iter().enumerate() {
            assert_eq!(
                b.got.recv().await.unwrap(),
                ("a@h".into(), msg(i as u32, n))
            );
            assert_eq!(a.got.recv().await.unwrap().0, "b@h");
        }
        let s = a.link.stats();
        assert_eq!((s.msgs_out, s.msgs_in, s.queued), (5, 5, 0));
        assert!(s.bytes_out > 200_000);
        assert_eq!(b.link.stats().bytes_in, s.bytes_out);
        // The node letting go of the queue closes the connection; the peer
        // sees it closed.
        drop(a.tx);
        assert!(matches!(
            a.task.await.unwrap(),
            ConnectionError::ClosedLocally
        ));
        assert!(matches!(b.task.await.unwrap(), ConnectionError::Closed));
    }

    #[test]
    fn a_stream_is_told_from_calls() {
        let t0 = Instant::now();
        let ms = |k: u64| t0 + Duration::from_millis(k);
        let buf = 64 * 1024;
        // A caller waiting for each reply: one or two messages a read,
        // however many reads a millisecond.
        let mut b = Burst::default();
        assert!((0..1000).all(|i| !b.after_read(t0, 100, buf, 1 + i % 2, 0)));
        // Reads of 8 hold once the window holds 64.
        let mut b = Burst::default();
        assert!((0..7).all(|_| !b.after_read(t0, 500, buf, 8, 0)));
        assert!(b.after_read(t0, 500, buf, 8, 0));
        // ... but not after a full buffer: more is waiting, read at once.
        assert!(!b.after_read(t0, buf, buf, 8, 0));
        assert!(b.after_read(t0, 500, buf, 8, 0));
        // A new window counts afresh: 56 in it do not hold, 64 do.
        let mut b = Burst::default();
        assert!(!b.after_read(t0, 500, buf, 60, 0));
        assert!(!b.after_read(ms(1), 500, buf, 56, 0));
        assert!(b.after_read(ms(1), 500, buf, 8, 0));
        // Reads of 7 never hold, 64 in a window or not.
        let mut b = Burst::default();
        assert!((0..100).all(|_| !b.after_read(ms(2), 500, buf, 7, 0)));
        // Many callers at once: reads of 8 and more, but we answer one
        // message of theirs in three: no hold.
        let mut b = Burst::default();
        for k in 0..100 {
            assert!(!b.after_read(ms(k / 10), 500, buf, 30, 0));
            b.sent(10);
        }
        // One answer for eight or more is a stream still.
        let mut b = Burst::default();
        assert!(!b.after_read(t0, 500, buf, 32, 0));
        b.sent(8);
        assert!(b.after_read(t0, 500, buf, 33, 0));
        // A peer that calls us beside a stream (a call a read): no hold
        // in the window of a call, nor in the next; two windows later, a
        // hold.
        let mut b = Burst::default();
        assert!(!b.after_read(t0, 500, buf, 70, 1));
        assert!(!b.after_read(t0, 500, buf, 70, 0));
        b.sent(1);
        assert!(!b.after_read(ms(1), 500, buf, 70, 0));
        assert!(!b.after_read(ms(1), 500, buf, 70, 0));
        assert!(b.after_read(ms(2), 500, buf, 70, 0));
        // After a quiet gap the last window's calls no longer count.
        let mut b = Burst::default();
        assert!(!b.after_read(t0, 500, buf, 70, 1));
        assert!(b.after_read(ms(5), 500, buf, 70, 0));
    }

    #[test]
    fn calls_are_told_from_other_messages() {
        let to = Pid::new("a@h", 1, 0, 1);
        let from = Pid::new("b@h", 2, 0, 1);
        let call = tuple(vec![
            atom("$gen_call"),
            tuple(vec![Term::Pid(from.clone()), atom("tag")]),
            atom("ping"),
        ]);
        assert!(is_call(&Message::send_sender(
            from.clone(),
            to.clone(),
            call.clone()
        )));
        assert!(is_call(&Message::reg_send(
            from.clone(),
            Atom::from("srv"),
            call.clone()
        )));
        assert!(is_call(&Message::send(to.clone(), call)));
        let cast = tuple(vec![atom("$gen_cast"), atom("ping")]);
        assert!(!is_call(&Message::send(to.clone(), cast)));
        assert!(!is_call(&Message::send(to.clone(), atom("$gen_call"))));
        assert!(!is_call(&Message::link(from, to)));
    }

    /// Read coalescing on paused time: after a read that brought a stream
    /// (100 messages at once), the next read waits `read_hold`; messages
    /// one at a time are read at once; without `read_hold`, all at once.
    #[tokio::test(start_paused = true)]
    async fn a_stream_is_read_after_the_hold() {
        const HOLD: Duration = Duration::from_millis(5);
        for hold in [Some(HOLD), None] {
            let (a, b) = tokio::io::duplex(1 << 20);
            let (a, mut b) = (side(a, "b@h"), side_with(b, "a@h", hold));
            for i in 0..100 {
                let t0 = tokio::time::Instant::now();
                send(&a, msg(i, 10));
                assert_eq!(b.got.recv().await.unwrap().1, msg(i, 10));
                assert_eq!(t0.elapsed(), Duration::ZERO, "{hold:?}");
            }
            for round in 0..3 {
                for i in 0..100 {
                    send(&a, msg(i, 10));
                }
                for i in 0..100 {
                    assert_eq!(b.got.recv().await.unwrap().1, msg(i, 10));
                }
                let t0 = tokio::time::Instant::now();
                send(&a, msg(100, 10));
                assert_eq!(b.got.recv().await.unwrap().1, msg(100, 10));
                match hold {
                    Some(h) => assert!(t0.elapsed() >= h, "round {round}: {:?}", t0.elapsed()),
                    None => assert_eq!(t0.elapsed(), Duration::ZERO),
                }
                // Quiet for a while: the next message comes at once.
                tokio::time::sleep(HOLD * 2).await;
                let t0 = tokio::time::Instant::now();
                send(&a, msg(101, 10));
                assert_eq!(b.got.recv().await.unwrap().1, msg(101, 10));
                assert_eq!(t0.elapsed(), Duration::ZERO, "{hold:?}");
            }
            assert_eq!(b.link.stats().msgs_in, 100 + 3 * 102);
        }
    }

    /// Ticks on paused time: a quarter of `net_ticktime` of silence brings a
    /// tick, a tick received is answered, and a peer silent for
    /// `net_ticktime` is down.
    #[tokio::test(start_paused = true)]
    async fn ticks_and_the_silent_peer_timeout() {
        let (ours, mut raw) = tokio::io::duplex(4096);
        let s = side(ours, "p@h");
        let t0 = tokio::time::Instant::now();
        let mut four = [9u8; 4];
        raw.read_exact(&mut four).await.unwrap();
        assert_eq!(four, [0, 0, 0, 0]);
        assert_eq!(t0.elapsed(), TICK / 4);
        // The peer ticks: answered at once.
        tokio::time::sleep(TICK / 8).await;
        raw.write_all(&[0, 0, 0, 0]).await.unwrap();
        let heard = tokio::time::Instant::now();
        raw.read_exact(&mut four).await.unwrap();
        assert_eq!((four, heard.elapsed()), ([0, 0, 0, 0], Duration::ZERO));
        // Then silence: ticks every quarter, down a ticktime after the
        // peer was last heard.
        let mut ticks = 0;
        while raw.read_exact(&mut four).await.is_ok() {
            ticks += 1;
        }
        assert_eq!(ticks, 3);
        assert_eq!(heard.elapsed(), TICK);
        assert!(matches!(s.task.await.unwrap(), ConnectionError::TickTimeout(t) if t == TICK));
    }

    /// Framing garbage ends the connection; a message refused for its
    /// content does not.
    #[tokio::test(start_paused = true)]
    async fn bad_input() {
        let (ours, mut raw) = tokio::io::duplex(4096);
        let mut s = side(ours, "p@h");
        let mut out = vec![];
        let good = Message::reg_send(Pid::new("p@h", 1, 0, 1), "x".into(), atom("ok"));
        control::encode_message(&good, &mut out, true).unwrap();
        let mut bad = out.clone();
        let n = bad.len();
        bad[n - 4] = 200; // an unknown tag in the payload
        raw.write_all(&bad).await.unwrap();
        raw.write_all(&out).await.unwrap();
        assert_eq!(s.got.recv().await.unwrap().1, good);
        raw.write_all(&[0, 0, 0, 1, 7]).await.unwrap();
        assert!(matches!(
            s.task.await.unwrap(),
            ConnectionError::Decode(codec::DecodeError::UnknownType(7))
        ));
    }

    /// A peer that reads nothing gets a burst in batches, and the writer's
    /// buffer is given back once the burst is out.
    #[tokio::test(start_paused = true)]
    async fn a_burst_to_a_slow_reader() {
        let (ours, mut raw) = tokio::io::duplex(64 * 1024);
        let s = side(ours, "p@h");
        let n = 2000;
        for i in 0..n {
            send(&s, msg(i, 1024));
        }
        let mut rx = Link::new(
            LinkConfig {
                ticktime: TICK,
                max_frame: 1 << 24,
                fragment_size: 64 * 1024,
                fragments: true,
                atom_cache: true,
                limits: Limits::default(),
            },
            Instant::now(),
        );
        let mut got = 0;
        let mut buf = vec![0; 10_000];
        while got < n {
            let k = raw.read(&mut buf).await.unwrap();
            rx.handle_input(&buf[..k], Instant::now()).unwrap();
            while let Some(Event::Message(m)) = rx.poll_event() {
                assert_eq!(m, msg(got, 1024));
                got += 1;
            }
        }
        assert_eq!(s.link.stats().queued, 0);
        assert_eq!(s.link.stats().msgs_out, n as u64);
    }
}
