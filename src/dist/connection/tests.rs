//! Tests of the connection: the driver over `tokio::io::duplex` with
//! paused time, read coalescing, the queue handle.

use super::burst::{is_call, Burst};
use super::driver::drive;
use super::{ConnConfig, ConnectionError, Outgoing, PeerLink, Router};
use crate::config::{NodeName, QueueLimit};
use crate::dist::handshake::PeerInfo;
use crate::dist::link::{Event, Link, LinkConfig};
use crate::dist::{codec, control, flags};
use crate::term::{atom, binary, tuple, Atom, Limits, Pid, Term};
use erl_dist::message::Message;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};
use tokio::sync::mpsc;

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

/// The tests' connection settings, with `read_hold`.
fn conn_config(read_hold: Option<Duration>) -> ConnConfig {
    ConnConfig {
        ticktime: TICK,
        max_frame: 1 << 24,
        max_term_memory: crate::term::DEFAULT_MAX_MEMORY,
        fragment_size: 64 * 1024,
        read_hold,
    }
}

/// [`side`] with a [`ConnConfig::read_hold`].
fn side_with(io: DuplexStream, name: &str, read_hold: Option<Duration>) -> Side {
    let (tx, rx) = mpsc::unbounded_channel();
    let (gtx, got) = mpsc::unbounded_channel();
    let link = Arc::new(PeerLink::default());
    let cfg = conn_config(read_hold);
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
/// tick, a tick received an eighth or more after our last output is
/// answered, and a peer silent for `net_ticktime` is down.
#[tokio::test(start_paused = true)]
async fn ticks_and_the_silent_peer_timeout() {
    let (ours, mut raw) = tokio::io::duplex(4096);
    let s = side(ours, "p@h");
    let t0 = tokio::time::Instant::now();
    let mut four = [9u8; 4];
    raw.read_exact(&mut four).await.unwrap();
    assert_eq!(four, [0, 0, 0, 0]);
    assert_eq!(t0.elapsed(), TICK / 4);
    // The peer ticks, an eighth after ours: answered at once.
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

/// A peer that never reads: what its writer takes off the queue into the
/// link stays about [`TAKE_BYTES`] (one large message past it at most),
/// and the rest stays on the queue, counted by the senders' bounds; a
/// message of terms counts the memory they hold where that is more than
/// their bytes on the wire. (The writer took up to 4,096 messages of any
/// size, uncounted: a peer that never read held gigabytes of replies.)
#[tokio::test(start_paused = true)]
async fn a_peer_that_never_reads_holds_little_outside_the_counted_queue() {
    use super::driver::TAKE_BYTES;
    use crate::term::{list, string_to_charlist};
    let (a_io, _b_io) = tokio::io::duplex(1024);
    let a = side(a_io, "b@h");
    // A reply of 2,000 names above U+00FF: about 14 times its bytes.
    let names = list((0..2000).map(|_| string_to_charlist("€€€€€€€€")).collect());
    // (Measured on a clone, as sent: a clone's lists hold no spare room.)
    let reply = Message::send(Pid::new("b@h", 1, 0, 1), names).clone();
    let (size, cost) = (control::message_size(&reply), control::message_cost(&reply));
    assert!(cost >= 4 * size, "cost {cost}, size {size}");
    let n = 400;
    for _ in 0..n {
        send(&a, reply.clone());
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    let st = a.link.stats();
    let taken = n - st.queued;
    // In the link: TAKE_BYTES' worth, one more at most; out of it, encoded
    // into the write buffer (a batch, one more at most) and the pipe.
    let in_link = TAKE_BYTES / cost + 1;
    let written = (crate::dist::link::BATCH + 1024) / size + 1;
    assert!(
        taken >= 1 && taken <= in_link + written,
        "{taken} taken (cost {cost}, size {size})"
    );
    assert_eq!(st.queued_bytes, st.queued * cost);
}

/// Routes slowly: says when it starts a message, and counts those it has
/// handed on.
struct Slow {
    started: std::sync::mpsc::Sender<()>,
    done: Arc<std::sync::atomic::AtomicUsize>,
}

impl Router for Slow {
    fn incoming(&self, _peer: &str, _msg: Message) {
        let _ = self.started.send(());
        std::thread::sleep(Duration::from_millis(20));
        self.done.fetch_add(1, Relaxed);
    }
}

/// `let_go` returns only once the reader has handed on the message it
/// was routing, and nothing the connection reads after is routed: a node
/// down reported after it comes after everything the connection brought.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn let_go_waits_for_the_message_being_routed_and_stops_the_rest() {
    let (a, b) = tokio::io::duplex(1 << 20);
    let (started_tx, started) = std::sync::mpsc::channel();
    let done = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let link = Arc::new(PeerLink::default());
    let cfg = conn_config(None);
    let (_tx_a, rx_a) = mpsc::unbounded_channel();
    let router = Slow {
        started: started_tx,
        done: done.clone(),
    };
    let _reader = tokio::spawn(drive(
        a,
        peer("b@h"),
        rx_a,
        link.clone(),
        Arc::new(router),
        cfg,
    ));
    let writer = side(b, "a@h");
    for i in 0..50 {
        send(&writer, msg(i, 10));
    }
    // The reader is routing the first message (for 20 ms).
    tokio::task::spawn_blocking(move || {
        started.recv().unwrap();
        link.let_go();
        let at_return = done.load(Relaxed);
        assert!(at_return >= 1, "let_go returned mid-routing");
        std::thread::sleep(Duration::from_millis(100));
        assert_eq!(done.load(Relaxed), at_return, "routed after let_go");
        assert!(at_return < 50, "routed all {at_return} before let_go");
    })
    .await
    .unwrap();
}
