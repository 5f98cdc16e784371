//! The per-peer connection task: runs the handshake over a socket, then
//! [`drive`]s the established link. The only async code in `dist/`; the
//! protocol state (framing, ticks, batching, fragments, the silent-peer
//! timeout) is [`super::link::Link`], which does no IO.
//!
//! Writes are batched: the driver takes the queued messages, the link
//! encodes them into one reused buffer, written with as few syscalls as
//! the socket allows and flushed when the queue runs empty.

mod burst;
mod driver;
#[cfg(test)]
mod tests;

pub use burst::{is_call, Burst, BURST_MSGS, BURST_READ, BURST_WINDOW};
pub use driver::{drive, BATCH_MAX};

use super::codec;
use super::control;
use super::handshake::{self, Acceptor, HandshakeError, Initiator, Local, PeerInfo, Status, Step};
use super::link::LinkError;
use super::monitors::MonitorBatch;
use super::raw::{RawNames, RawRegSend};
pub use crate::config::QueueLimit;
use crate::term::Encoded;
use erl_dist::message::Message;
use std::sync::atomic::Ordering::{Relaxed, SeqCst};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, AtomicUsize};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
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
    /// A control message (with payload), with what it costs while queued
    /// ([`Outgoing::msg`] measures it): counted against the queue's byte
    /// bound by the sender, taken back by the writer.
    Msg(Message, usize),
    /// A control message whose payload is sent as the bytes of an
    /// [`Encoded`] term instead of its own (a placeholder), with what it
    /// costs while queued ([`Outgoing::encoded`] measures it). Boxed: the
    /// rare large reply does not make every message in the channel bigger.
    Encoded(Box<(Message, Encoded)>, usize),
    /// MONITOR_Ps of one process to pids of the peer, sent in this order,
    /// queued at once (one channel send, not one each) and written from
    /// their numbers ([`MonitorBatch`]).
    Monitors(MonitorBatch),
}

impl Outgoing {
    /// `msg`, measured ([`control::message_cost`]).
    pub fn msg(msg: Message) -> Self {
        let size = control::message_cost(&msg);
        Outgoing::Msg(msg, size)
    }

    /// `msg` with `payload` in place of its payload, measured: the
    /// control message's cost and the memory the bytes hold.
    pub fn encoded(msg: Message, payload: Encoded) -> Self {
        let size = control::message_cost(&msg) + payload.memory();
        Outgoing::Encoded(Box::new((msg, payload)), size)
    }

    /// How many messages this is.
    pub(crate) fn len(&self) -> usize {
        match self {
            Outgoing::Msg(..) | Outgoing::Encoded(..) => 1,
            Outgoing::Monitors(b) => b.targets.len(),
        }
    }

    /// What it costs while queued, in bytes (see [`Outgoing::msg`]; a
    /// MONITOR_P of a batch is counted as [`MONITOR_P_SIZE`]). The sender adds it to
    /// [`PeerLink::queued_bytes`], the writer takes it back.
    pub(crate) fn bytes(&self) -> usize {
        match self {
            Outgoing::Msg(_, size) | Outgoing::Encoded(_, size) => *size,
            Outgoing::Monitors(b) => b.targets.len() * MONITOR_P_SIZE,
        }
    }
}

pub use crate::dist::monitors::MONITOR_P_SIZE;

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
    /// What they cost ([`control::message_cost`]): their size as written, or
    /// the memory they hold where that is more.
    pub queued_bytes: AtomicUsize,
    /// Notified to close the connection at once (queued messages dropped).
    pub close: Notify,
    /// Notified when the writer has taken messages from the queue, and at
    /// [`PeerLink::end`] ([`PeerLink::wait_below`]).
    drained: Notify,
    /// Set by [`PeerLink::end`].
    ended: AtomicBool,
    /// The reader is handing what it read to the router
    /// ([`PeerLink::routing`]); [`PeerLink::let_go`] waits for it.
    routing: AtomicBool,
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

/// How long [`PeerLink::let_go`] waits at most for the reader to hand on
/// the message it is routing (routing one takes microseconds).
const LET_GO_WAIT: Duration = Duration::from_millis(50);

std::thread_local! {
    /// The link whose reader this thread is routing for, as an address (0:
    /// none): [`PeerLink::let_go`] from inside that routing does not wait
    /// for itself.
    static ROUTING: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// The reader of a link is routing ([`PeerLink::routing`]) while this
/// lives.
pub struct Routing<'a>(&'a PeerLink);

impl Drop for Routing<'_> {
    fn drop(&mut self) {
        ROUTING.with(|r| r.set(0));
        self.0.routing.store(false, SeqCst);
    }
}

impl Default for PeerLink {
    fn default() -> Self {
        PeerLink {
            queued: AtomicUsize::new(0),
            queued_bytes: AtomicUsize::new(0),
            close: Notify::new(),
            drained: Notify::new(),
            ended: AtomicBool::new(false),
            routing: AtomicBool::new(false),
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

    /// Whether the node has let go of the peer ([`PeerLink::end`]).
    pub fn has_ended(&self) -> bool {
        // (`SeqCst`: against `routing`'s store, see `let_go`.)
        self.ended.load(SeqCst)
    }

    /// Marks the reader as handing messages to the router until the guard
    /// is dropped; it checks [`PeerLink::has_ended`] before each one.
    pub fn routing(&self) -> Routing<'_> {
        self.routing.store(true, SeqCst);
        ROUTING.with(|r| r.set(self as *const PeerLink as usize));
        Routing(self)
    }

    /// [`PeerLink::end`], then waits until the reader has handed on the
    /// message it was routing, if any: once this returns, nothing more
    /// that the connection read reaches a process, so a node down reported
    /// next comes after all of it (a peer's last casts are not applied
    /// after its nodedown, nor a link or monitor set that would outlive
    /// the connection). For a connection dropped or replaced while its
    /// reader runs; one whose task has ended reads nothing more anyway.
    ///
    /// The reader sets `routing` and then reads `ended`; this sets `ended`
    /// and then reads `routing` (all `SeqCst`): either the reader sees the
    /// end and routes nothing more, or this sees it routing and waits. It
    /// waits at most `LET_GO_WAIT`: a message whose routing needs what the
    /// caller holds (a send from it that drops another peer, under the
    /// peers' order lock) would otherwise never finish, and from the
    /// reader's own thread (such a send dropping this very peer) it does
    /// not wait at all.
    pub fn let_go(&self) {
        self.end();
        if ROUTING.with(|r| r.get()) == self as *const PeerLink as usize {
            return;
        }
        if !crate::util::wait_while(|| self.routing.load(SeqCst), LET_GO_WAIT) {
            tracing::debug!("let go of a peer whose reader is still routing a message");
        }
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

    /// Whether a message to `to` (a `SEND`, `SEND_SENDER` or `REG_SEND`)
    /// would find a receiver here: one that would not is dropped as it is
    /// read, its payload not decoded ([`Link::set_receivers`]), as BEAM
    /// drops a message to a name not registered or a pid not alive. Every
    /// one would by default.
    ///
    /// [`Link::set_receivers`]: crate::dist::link::Link::set_receivers
    fn has_receiver(&self, to: crate::dist::control::Target<'_>) -> bool {
        let _ = to;
        true
    }

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
    /// The most memory one received term may take decoded
    /// ([`Limits::max_memory`](crate::term::Limits::max_memory)).
    pub max_term_memory: usize,
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

/// Runs the initiating handshake on a fresh socket; with `dialled`, only
/// that node is taken ([`Initiator::dialling`]).
pub async fn handshake_out(
    s: &mut TcpStream,
    local: Local,
    dialled: Option<&crate::config::NodeName>,
) -> Result<PeerInfo, ConnectionError> {
    let _ = s.set_nodelay(true);
    tokio::time::timeout(HANDSHAKE_TIMEOUT, async {
        let (mut hs, first) = Initiator::start(local, rand::random());
        if let Some(d) = dialled {
            hs = hs.dialling(d.clone());
        }
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

impl From<LinkError> for ConnectionError {
    fn from(e: LinkError) -> Self {
        match e {
            LinkError::Decode(e) => ConnectionError::Decode(e),
            LinkError::TickTimeout(t) => ConnectionError::TickTimeout(t),
        }
    }
}
