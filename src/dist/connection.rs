//! The per-peer connection task: runs the handshake over a socket, then the
//! read, write and tick loops. The only async code in `dist/`.
//!
//! Writes are batched: the writer takes every queued message, encodes them
//! into one reused buffer and writes that with one syscall when its queue
//! runs empty. Ticks are sent after a quarter of `net_ticktime` without
//! output, and every tick received is answered; a peer silent for
//! `net_ticktime` is declared down.

use super::codec::{self, Packet, Reassembler};
use super::flags;
use super::handshake::{self, Acceptor, HandshakeError, Initiator, Local, PeerInfo, Step};
use crate::term::Limits;
use bytes::BytesMut;
use erl_dist::message::Message;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::atomic::{AtomicU64, AtomicU8, AtomicUsize};
use std::sync::Arc;
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
    /// Could not find or reach the peer, or (from [`crate::Node::connect`])
    /// the attempt failed for the reason given.
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
#[derive(Debug)]
pub enum Outgoing {
    /// A control message (with payload).
    Msg(Message),
}

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
    /// Notified to close the connection at once (queued messages dropped).
    pub close: Notify,
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
            close: Notify::new(),
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
}

impl PeerLink {
    fn ms(&self) -> u64 {
        self.base.elapsed().as_millis() as u64
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
        }
    }
}

/// Where a connection delivers what it reads.
pub trait Router: Send + Sync + 'static {
    /// A control message from `peer`.
    fn incoming(&self, peer: &str, msg: Message);
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
    admit: impl FnOnce(&PeerInfo) -> Result<(), &'static str>,
) -> Result<PeerInfo, ConnectionError> {
    tokio::time::timeout(HANDSHAKE_TIMEOUT, async {
        let mut hs = Acceptor::new(local, rand::random());
        let first = read_hs(s).await?;
        match hs.handle(&first) {
            Ok(Step::NameReceived(peer)) => {
                if let Err(status) = admit(&peer) {
                    let _ = write_hs(s, &[hs.refuse(status)]).await;
                    return Err(HandshakeError::Refused(status.to_string()).into());
                }
            }
            Ok(_) => return Err(HandshakeError::Malformed("unexpected step").into()),
            Err(e @ HandshakeError::MissingFlags { .. }) => {
                let _ = write_hs(s, &[hs.refuse("not_allowed")]).await;
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

/// Drives an established connection until it ends; returns why.
pub async fn drive(
    stream: TcpStream,
    peer: PeerInfo,
    mut rx: mpsc::UnboundedReceiver<Outgoing>,
    link: Arc<PeerLink>,
    router: Arc<dyn Router>,
    cfg: ConnConfig,
) -> ConnectionError {
    let _ = stream.set_nodelay(true);
    let (mut rd, mut wr) = stream.into_split();
    let echo = Arc::new(Notify::new());
    let peer_name = peer.name.to_string();
    let fragments = peer.flags & flags::FRAGMENTS != 0;

    let echo_w = echo.clone();
    let link_w = link.clone();
    let taken = {
        let link_w = link_w.clone();
        move || link_w.queued.fetch_sub(1, Relaxed)
    };
    let writer = async move {
        let tick_every = cfg.ticktime / 4;
        let mut buf: Vec<u8> = Vec::with_capacity(64 * 1024);
        let mut seq: u64 = 1;
        loop {
            let first = tokio::select! {
                m = rx.recv() => match m {
                    Some(m) => {
                        taken();
                        Some(m)
                    }
                    None => {
                        let _ = wr.shutdown().await;
                        return ConnectionError::ClosedLocally;
                    }
                },
                _ = echo_w.notified() => None,
                _ = tokio::time::sleep(tick_every) => None,
            };
            let mut msgs = 0;
            match first {
                None => buf.extend_from_slice(&[0, 0, 0, 0]),
                Some(m) => {
                    encode(m, &mut buf, fragments, cfg.fragment_size, &mut seq);
                    msgs += 1;
                }
            }
            while buf.len() < (1 << 20) {
                match rx.try_recv() {
                    Ok(m) => {
                        taken();
                        encode(m, &mut buf, fragments, cfg.fragment_size, &mut seq);
                        msgs += 1;
                    }
                    Err(_) => break,
                }
            }
            if let Err(e) = wr.write_all(&buf).await {
                return ConnectionError::Io(e);
            }
            link_w.msgs_out.fetch_add(msgs, Relaxed);
            link_w.bytes_out.fetch_add(buf.len() as u64, Relaxed);
            buf.clear();
            if buf.capacity() > (4 << 20) {
                buf.shrink_to(64 * 1024);
            }
        }
    };

    let link_r = link.clone();
    let reader = async move {
        let mut buf = BytesMut::with_capacity(64 * 1024);
        let mut reasm = Reassembler::new(cfg.max_frame);
        let limits = Limits::default();
        loop {
            match tokio::time::timeout(cfg.ticktime, rd.read_buf(&mut buf)).await {
                Err(_) => return ConnectionError::TickTimeout(cfg.ticktime),
                Ok(Err(e)) => return ConnectionError::Io(e),
                Ok(Ok(0)) => return ConnectionError::Closed,
                Ok(Ok(n)) => {
                    link_r.bytes_in.fetch_add(n as u64, Relaxed);
                    link_r.last_in.store(link_r.ms(), Relaxed);
                }
            }
            loop {
                match codec::decode_packet(&mut buf, cfg.max_frame) {
                    Ok(None) => break,
                    Ok(Some(Packet::Tick)) => echo.notify_one(),
                    Ok(Some(Packet::Data(body))) => match reasm.push(&body) {
                        Ok(None) => {}
                        Ok(Some(m)) => match codec::decode_message(&m, limits) {
                            Ok(msg) => {
                                link_r.msgs_in.fetch_add(1, Relaxed);
                                router.incoming(&peer_name, msg)
                            }
                            // One bad message costs that message, not the
                            // connection (BEAM would have taken it).
                            Err(e) if !e.is_fatal() => drop_message(&peer_name, &m, &e),
                            Err(e) => return ConnectionError::Decode(e),
                        },
                        Err(e) if !e.is_fatal() => drop_message(&peer_name, &body, &e),
                        Err(e) => return ConnectionError::Decode(e),
                    },
                    Err(e) => return ConnectionError::Decode(e),
                }
            }
        }
    };

    tokio::select! {
        e = writer => e,
        e = reader => e,
        _ = link.close.notified() => ConnectionError::ClosedLocally,
    }
}

/// Logs a message refused for its content; `msg` is the message (or the
/// packet body) whose control term names the sender when it can be read.
fn drop_message(peer: &str, msg: &[u8], e: &codec::DecodeError) {
    let control = codec::describe_control(msg);
    tracing::warn!(
        peer = %peer,
        control = control.as_deref().unwrap_or("?"),
        "dropped a message from the peer, the connection stays: {e}"
    );
}

fn encode(m: Outgoing, buf: &mut Vec<u8>, fragments: bool, frag: usize, seq: &mut u64) {
    let Outgoing::Msg(msg) = m;
    let start = buf.len();
    if let Err(e) = codec::encode_message(msg, buf, fragments) {
        tracing::warn!("dropped an outgoing message that cannot be encoded: {e}");
        return;
    }
    if fragments && buf.len() - start > frag + 7 {
        codec::fragment_last(buf, start, frag, *seq);
        *seq += 1;
    }
}
