//! The state of one established connection, without IO (sans-IO, as
//! quinn-proto): framing, ticks, batching, fragment numbering, reassembly
//! and the silent-peer timeout. [`super::connection::drive`] feeds it the
//! bytes it reads and the messages queued for the peer, and writes what
//! it hands out; time is passed in, so tests run it without sockets or
//! clocks.
//!
//! Ticks follow OTP's `dist_util`: a tick (a zero length) goes out when
//! nothing was sent for a quarter of `net_ticktime` (`net_tickintensity`
//! 4); a tick received is answered when nothing went out for an eighth of
//! it (a BEAM ticks a hidden peer it has not heard from, as a primitive
//! hidden node only ticks when it receives one; answering *every* tick
//! had two cpg-nodes, or one and an `ei` node, which answers every tick,
//! tick each other at wire speed for as long as they were connected: up
//! to half a core each); any bytes received count as the peer being
//! alive, and a peer silent for `net_ticktime` is down. (OTP checks on
//! its tick timer and drops a peer after 4 silent intervals, so between 1
//! and 1.25 `net_ticktime` after the last bytes; here it is
//! `net_ticktime` exactly.)

use super::codec::{self, DecodeError, Reassembler};
use super::control;
use super::monitors::{self, MonitorBatch, MonitorHead, MonitorTarget, MONITOR_P_SIZE};
use super::raw::{RawNames, RawRegSend};
use super::send_cache::SendCache;
use crate::term::{Encoded, Limits};
use erl_dist::message::Message;
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Settings of one link.
#[derive(Debug, Clone, Copy)]
pub struct LinkConfig {
    /// `net_ticktime`.
    pub ticktime: Duration,
    /// Largest packet or reassembled message accepted.
    pub max_frame: usize,
    /// Fragment size for large outgoing messages.
    pub fragment_size: usize,
    /// Whether the peer speaks FRAGMENTS: outgoing messages then carry the
    /// distribution header (a BEAM refuses pass-through packets once
    /// FRAGMENTS is negotiated) and large ones are fragmented.
    pub fragments: bool,
    /// Whether the peer keeps an atom cache for us
    /// (`DFLAG_DIST_HDR_ATOM_CACHE`): with `fragments`, outgoing messages
    /// then name their atoms through it ([`SendCache`]).
    pub atom_cache: bool,
    /// Limits on terms received.
    pub limits: Limits,
}

/// What the link made of its input.
// A message is the common case (and erl_dist's `Message` is large): not
// boxed, to spare an allocation per message.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum Event {
    /// A control message from the peer.
    Message(Message),
    /// A large `REG_SEND` to a name that takes its payload as bytes
    /// ([`Link::set_raw_names`]).
    Raw(RawRegSend),
    /// A message refused for its content: it is dropped, the connection
    /// stays (the BEAM would have taken it).
    Dropped {
        /// Why.
        error: DecodeError,
        /// Its control term, when it could be read ([`codec::describe_control`]).
        control: Option<String>,
    },
}

/// Why a link ended.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LinkError {
    /// The byte stream can no longer be trusted.
    #[error("bad input from peer: {0}")]
    Decode(#[from] DecodeError),
    /// Nothing heard for `net_ticktime`.
    #[error("net_tick_timeout: no data from the peer for {0:?}")]
    TickTimeout(Duration),
}

/// Output buffers are written in batches of about this size.
pub const BATCH: usize = 1 << 20;
/// Buffers that grew beyond this (a burst, a large message) are given back
/// once they are empty.
pub const HIGH_WATER: usize = 256 * 1024;
/// The size buffers shrink back to.
pub const LOW_WATER: usize = 64 * 1024;

/// What waits to be written: a message, or the MONITOR_Ps of a batch not
/// yet written (one entry for them all, taken from the front one by one).
// A `Message` is large (296 bytes), but it is what the queue holds; boxing
// it would allocate once per message sent.
#[allow(clippy::large_enum_variant)]
enum Queued {
    /// A message and what it costs while queued ([`Link::queue_sized`]).
    Msg(Message, usize),
    /// A message sent with these bytes as its payload
    /// ([`Link::queue_encoded`]); boxed, so that every other queued
    /// message does not grow by its bytes' handle.
    Encoded(Box<(Message, Encoded)>, usize),
    Monitors(Arc<MonitorHead>, std::vec::IntoIter<MonitorTarget>),
}

/// Whether a message to a [`control::Target`] would find a receiver
/// ([`Link::set_receivers`]).
pub type ReceiverCheck = dyn Fn(control::Target<'_>) -> bool + Send + Sync;

/// One connection's protocol state.
pub struct Link {
    cfg: LinkConfig,
    /// An incomplete packet (length included) carried between inputs.
    partial: Vec<u8>,
    reasm: Reassembler,
    events: VecDeque<Event>,
    queue: VecDeque<Queued>,
    /// Messages in `queue` (a batch's MONITOR_Ps count one each).
    queued: usize,
    /// What they cost ([`Link::queued_bytes`]).
    queued_bytes: usize,
    tick_due: bool,
    last_in: Instant,
    last_out: Instant,
    /// Sequence id of the next fragmented message.
    seq: u64,
    /// Names whose large `REG_SEND`s are handed over as bytes.
    raw: Option<RawNames>,
    /// Whether a message would find a receiver ([`Link::set_receivers`]).
    receivers: Option<Arc<ReceiverCheck>>,
    /// The peer's atom cache as our messages filled it.
    send_cache: Option<SendCache>,
    /// What the peer takes, as its flags tell ([`Link::set_peer_flags`]).
    peer_flags: u64,
}

impl Link {
    /// A link that came up at `now`.
    pub fn new(mut cfg: LinkConfig, now: Instant) -> Self {
        // (A longer one, which a node refuses, would overflow the clock.)
        cfg.ticktime = cfg.ticktime.min(crate::config::MAX_NET_TICKTIME);
        Link {
            cfg,
            partial: Vec::new(),
            reasm: Reassembler::new(cfg.max_frame),
            events: VecDeque::new(),
            queue: VecDeque::new(),
            queued: 0,
            queued_bytes: 0,
            tick_due: false,
            last_in: now,
            last_out: now,
            seq: 1,
            raw: None,
            receivers: None,
            send_cache: (cfg.fragments && cfg.atom_cache).then(SendCache::new),
            peer_flags: u64::MAX,
        }
    }

    /// The peer's distribution flags: a message it did not say it takes
    /// goes in the form a BEAM would send it, or not at all
    /// ([`super::compat`]). Until told, the peer takes everything.
    pub fn set_peer_flags(&mut self, peer: u64) {
        self.peer_flags = super::flags::expand(peer);
    }

    /// Hands over large `REG_SEND`s to the names of `names` with their
    /// payload as bytes ([`Event::Raw`], see [`super::raw`]).
    pub fn set_raw_names(&mut self, names: RawNames) {
        self.raw = Some(names);
    }

    /// Asks `has` whether a message (a `SEND`, `SEND_SENDER` or
    /// `REG_SEND`) would find a receiver before its payload is decoded:
    /// one that would not is dropped as it is read, without a word
    /// ([`control::decode_terms_for`]).
    pub fn set_receivers(&mut self, has: Arc<ReceiverCheck>) {
        self.receivers = Some(has);
    }

    /// Feeds bytes read from the peer. Whole packets are decoded where they
    /// lie in `data`; only a packet cut by the end of `data` is kept until
    /// the rest comes. Decoded messages wait in [`Link::poll_event`]. An
    /// error means the stream can no longer be trusted: close the link.
    pub fn handle_input(&mut self, mut data: &[u8], now: Instant) -> Result<(), LinkError> {
        if data.is_empty() {
            return Ok(());
        }
        self.last_in = now;
        if !self.partial.is_empty() {
            let mut partial = std::mem::take(&mut self.partial);
            let r = self.complete(&mut partial, &mut data);
            self.partial = partial;
            r?;
            if !self.partial.is_empty() {
                return Ok(());
            }
            if self.partial.capacity() > HIGH_WATER {
                self.partial = Vec::new();
            }
        }
        while data.len() >= 4 {
            let len = self.frame_len(data)?;
            let Some(body) = data.get(4..4 + len) else {
                break;
            };
            self.packet(body)?;
            data = &data[4 + len..];
        }
        if !data.is_empty() {
            if data.len() >= 4 {
                self.partial.reserve_exact(4 + self.frame_len(data)?);
            }
            self.partial.extend_from_slice(data);
        }
        Ok(())
    }

    /// Adds to `partial` from `data`; handles the packet once whole (and
    /// empties `partial`).
    fn complete(&mut self, partial: &mut Vec<u8>, data: &mut &[u8]) -> Result<(), LinkError> {
        if partial.len() < 4 {
            let take = (4 - partial.len()).min(data.len());
            partial.extend_from_slice(&data[..take]);
            *data = &data[take..];
            if partial.len() < 4 {
                return Ok(());
            }
        }
        let want = 4 + self.frame_len(partial)?;
        partial.reserve_exact(want - partial.len());
        let take = (want - partial.len()).min(data.len());
        partial.extend_from_slice(&data[..take]);
        *data = &data[take..];
        if partial.len() == want {
            self.packet(&partial[4..])?;
            partial.clear();
        }
        Ok(())
    }

    fn frame_len(&self, data: &[u8]) -> Result<usize, LinkError> {
        let len = u32::from_be_bytes([data[0], data[1], data[2], data[3]]) as usize;
        if len > self.cfg.max_frame {
            return Err(DecodeError::TooLarge(len).into());
        }
        Ok(len)
    }

    fn packet(&mut self, body: &[u8]) -> Result<(), LinkError> {
        if body.is_empty() {
            // A tick: answered unless we spoke lately (see the module doc).
            // (`last_in` is now: this input's time.)
            if self.last_in.saturating_duration_since(self.last_out) >= self.cfg.ticktime / 8 {
                self.tick_due = true;
            }
            return Ok(());
        }
        let whole = match self.reasm.push(body) {
            Ok(Some(w)) => w,
            Ok(None) => return Ok(()),
            Err(e) if !e.is_fatal() => {
                self.dropped(e, body);
                return Ok(());
            }
            Err(e) => return Err(e.into()),
        };
        let whole = match &self.raw {
            Some(names) => match whole.into_raw(names, self.cfg.limits) {
                Ok(r) => {
                    self.events.push_back(Event::Raw(r));
                    return Ok(());
                }
                Err(whole) => whole,
            },
            None => whole,
        };
        match whole.decode_for(self.cfg.limits, self.receivers.as_deref()) {
            Ok(m) => self.events.push_back(Event::Message(m)),
            // (As BEAM drops it: no log line a message.)
            Err(DecodeError::NoReceiver) => {}
            Err(e) if !e.is_fatal() => dropped(&mut self.events, e, whole.bytes()),
            Err(e) => return Err(e.into()),
        }
        Ok(())
    }

    fn dropped(&mut self, error: DecodeError, bytes: &[u8]) {
        dropped(&mut self.events, error, bytes);
    }

    /// The next thing the input gave.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// Queues a message for the peer.
    pub fn queue(&mut self, msg: Message) {
        let size = control::message_cost(&msg);
        self.queue_sized(msg, size);
    }

    /// [`queue`](Self::queue) of a message already measured: `size` is what
    /// it costs while queued ([`control::message_cost`]), counted in
    /// [`queued_bytes`](Self::queued_bytes) until it is written.
    pub fn queue_sized(&mut self, msg: Message, size: usize) {
        self.queue.push_back(Queued::Msg(msg, size));
        self.queued += 1;
        self.queued_bytes += size;
    }

    /// [`queue_sized`](Self::queue_sized) of a message whose payload is
    /// written as `payload`'s bytes, not as its own term (a placeholder).
    pub fn queue_encoded(&mut self, msg: Message, payload: Encoded, size: usize) {
        self.queue
            .push_back(Queued::Encoded(Box::new((msg, payload)), size));
        self.queued += 1;
        self.queued_bytes += size;
    }

    /// Queues the MONITOR_Ps of `batch`, in order (one queued message
    /// each).
    pub fn queue_monitors(&mut self, batch: MonitorBatch) {
        if !batch.targets.is_empty() {
            self.queued += batch.targets.len();
            self.queued_bytes += batch.targets.len() * MONITOR_P_SIZE;
            self.queue
                .push_back(Queued::Monitors(batch.head, batch.targets.into_iter()));
        }
    }

    /// Messages queued and not yet handed out by [`Link::poll_transmit`].
    pub fn queued(&self) -> usize {
        self.queued
    }

    /// What the queued messages cost: their sizes as given to
    /// [`queue_sized`](Self::queue_sized) (a MONITOR_P of a batch
    /// [`MONITOR_P_SIZE`]). A writer bounds what it takes in by it, as by
    /// [`queued`](Self::queued), so that what waits here, uncounted by the
    /// senders' bounds, stays small.
    pub fn queued_bytes(&self) -> usize {
        self.queued_bytes
    }

    /// Appends framed bytes to send to `buf`: queued messages, until `buf`
    /// holds about [`BATCH`] bytes, or else a tick if one is due. Returns
    /// how many messages were written (a message that cannot be encoded is
    /// logged and dropped).
    pub fn poll_transmit(&mut self, now: Instant, buf: &mut Vec<u8>) -> usize {
        let before = buf.len();
        let mut n = 0;
        let fragments = self.cfg.fragments;
        while buf.len() < BATCH {
            let start = buf.len();
            let r = if let Some(Queued::Monitors(head, targets)) = self.queue.front_mut() {
                // Popped with its last monitor (never left empty).
                let Some(t) = targets.next() else {
                    self.queue.pop_front();
                    continue;
                };
                // (None sent to a peer without monitors: see `compat`.)
                let r = super::compat::takes_monitors(self.peer_flags, false).then(|| {
                    let cache = self.send_cache.as_mut();
                    monitors::encode_monitor_p(head, &t, buf, fragments, cache)
                });
                if targets.len() == 0 {
                    self.queue.pop_front();
                }
                self.queued_bytes -= MONITOR_P_SIZE;
                let Some(r) = r else {
                    self.queued -= 1;
                    continue;
                };
                r
            } else {
                let (m, payload, size) = match self.queue.pop_front() {
                    Some(Queued::Msg(m, size)) => (m, None, size),
                    Some(Queued::Encoded(b, size)) => {
                        let (m, payload) = *b;
                        (m, Some(payload), size)
                    }
                    // (A batch at the front was taken above.)
                    Some(Queued::Monitors(..)) | None => break,
                };
                self.queued_bytes -= size;
                let Some(m) = super::compat::for_peer(m, self.peer_flags, payload.is_some()) else {
                    self.queued -= 1;
                    continue;
                };
                let payload = payload.as_ref().map(Encoded::as_bytes);
                match self.send_cache.as_mut() {
                    Some(c) => control::encode_message_cached_with(&m, payload, buf, c),
                    None => control::encode_message_with(&m, payload, buf, fragments),
                }
            };
            self.queued -= 1;
            match r {
                Ok(()) => {
                    n += 1;
                    self.fragment(buf, start);
                }
                Err(e) => tracing::warn!("dropped an outgoing message that cannot be encoded: {e}"),
            }
        }
        if buf.len() == before && self.tick_due {
            buf.extend_from_slice(&[0, 0, 0, 0]);
        }
        if buf.len() > before {
            self.tick_due = false;
            self.last_out = now;
        }
        n
    }

    /// Splits the packet written from `start` into fragments if it is
    /// larger than one.
    fn fragment(&mut self, buf: &mut Vec<u8>, start: usize) {
        if self.cfg.fragments
            && buf.len() - start > self.cfg.fragment_size + 7
            && codec::fragment_last(buf, start, self.cfg.fragment_size, self.seq)
        {
            self.seq += 1;
        }
    }

    /// When [`Link::handle_timeout`] must next be called (unless input or
    /// output comes first).
    /// A tick already due waits for [`Link::poll_transmit`], not for time.
    pub fn next_timeout(&self) -> Instant {
        let dead = self.last_in + self.cfg.ticktime;
        if self.tick_due {
            dead
        } else {
            dead.min(self.last_out + self.cfg.ticktime / 4)
        }
    }

    /// Time passed: a tick becomes due after a quarter of `net_ticktime`
    /// without output; a peer silent for `net_ticktime` is down.
    /// Also the time to give back what a burst grew: queues kept at the
    /// size of the burst would hold memory while the link idles, and
    /// shrinking them at every drain would reallocate them at every read.
    pub fn handle_timeout(&mut self, now: Instant) -> Result<(), LinkError> {
        if now >= self.last_in + self.cfg.ticktime {
            return Err(LinkError::TickTimeout(self.cfg.ticktime));
        }
        if now >= self.last_out + self.cfg.ticktime / 4 {
            self.tick_due = true;
        }
        if self.events.is_empty() && self.events.capacity() > 64 {
            self.events = VecDeque::new();
        }
        if self.queue.is_empty() && self.queue.capacity() > 64 {
            self.queue = VecDeque::new();
        }
        Ok(())
    }

    /// Whether something waits to be sent ([`Link::poll_transmit`] would
    /// write).
    pub fn wants_transmit(&self) -> bool {
        self.tick_due || !self.queue.is_empty()
    }
}

/// Records a message that was dropped, with its control term when it
/// can be read.
fn dropped(events: &mut VecDeque<Event>, error: DecodeError, bytes: &[u8]) {
    events.push_back(Event::Dropped {
        error,
        control: codec::describe_control(bytes),
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::term::{atom, binary, Pid};
    use proptest::prelude::*;

    const TICK: Duration = Duration::from_secs(8);

    fn cfg(fragments: bool) -> LinkConfig {
        LinkConfig {
            ticktime: TICK,
            max_frame: 1 << 20,
            fragment_size: 1000,
            fragments,
            atom_cache: fragments,
            limits: Limits::default(),
        }
    }

    fn msg(i: u32, size: usize) -> Message {
        Message::send(Pid::new("a@h", i, 0, 1), binary(vec![i as u8; size]))
    }

    fn drain(l: &mut Link) -> Vec<Message> {
        std::iter::from_fn(|| l.poll_event())
            .map(|e| match e {
                Event::Message(m) => m,
                e => panic!("{e:?}"),
            })
            .collect()
    }

    #[test]
    fn ticks_after_a_quarter_of_silence_and_times_out_after_ticktime() {
        let t0 = Instant::now();
        let mut l = Link::new(cfg(true), t0);
        let mut buf = vec![];
        assert_eq!(l.next_timeout(), t0 + TICK / 4);
        l.handle_timeout(t0 + TICK / 8).unwrap();
        assert_eq!(l.poll_transmit(t0 + TICK / 8, &mut buf), 0);
        assert!(buf.is_empty(), "no tick before a quarter of ticktime");
        l.handle_timeout(t0 + TICK / 4).unwrap();
        assert!(l.wants_transmit());
        l.poll_transmit(t0 + TICK / 4, &mut buf);
        assert_eq!(buf, [0, 0, 0, 0]);
        assert_eq!(l.next_timeout(), t0 + TICK / 2);
        // Ticking does not keep the peer alive: its input does.
        for q in 2..4 {
            let now = t0 + TICK / 4 * q;
            l.handle_timeout(now).unwrap();
            buf.clear();
            l.poll_transmit(now, &mut buf);
            assert_eq!(buf, [0, 0, 0, 0]);
        }
        assert_eq!(l.next_timeout(), t0 + TICK);
        assert_eq!(
            l.handle_timeout(t0 + TICK),
            Err(LinkError::TickTimeout(TICK))
        );
    }

    #[test]
    fn input_keeps_the_peer_alive_and_ticks_are_answered() {
        let t0 = Instant::now();
        let mut l = Link::new(cfg(true), t0);
        let t1 = t0 + TICK / 2;
        l.handle_input(&[0, 0, 0, 0], t1).unwrap();
        assert!(l.poll_event().is_none());
        assert!(l.wants_transmit(), "a tick received is answered");
        let mut buf = vec![];
        l.poll_transmit(t1, &mut buf);
        assert_eq!(buf, [0, 0, 0, 0]);
        assert_eq!(l.next_timeout(), t1 + TICK / 4);
        // Alive at t0 + ticktime, as it was heard at t1; a tick is due.
        l.handle_timeout(t0 + TICK).unwrap();
        assert!(l.wants_transmit());
        assert_eq!(l.next_timeout(), t1 + TICK, "a due tick waits for output");
        assert!(l.handle_timeout(t1 + TICK).is_err());
    }

    #[test]
    fn a_tick_right_after_ours_is_not_answered() {
        let t0 = Instant::now();
        let mut l = Link::new(cfg(true), t0);
        let mut buf = vec![];
        // Our own tick, after a quarter of silence.
        l.handle_timeout(t0 + TICK / 4).unwrap();
        l.poll_transmit(t0 + TICK / 4, &mut buf);
        assert_eq!(buf, [0, 0, 0, 0]);
        // The peer's answer: we just spoke, so no answer to it.
        l.handle_input(&[0, 0, 0, 0], t0 + TICK / 4 + Duration::from_millis(1))
            .unwrap();
        assert!(!l.wants_transmit(), "an answer to our tick is not answered");
    }

    /// Two links wired to each other, idle for ten tick times, as two
    /// cpg-nodes are: they tick each other a few times per quarter of
    /// `net_ticktime`, not at wire speed (each used to answer every tick
    /// of the other), and neither times out.
    #[test]
    fn two_idle_links_tick_each_other_a_few_times_a_quarter() {
        let t0 = Instant::now();
        let mut l = [Link::new(cfg(true), t0), Link::new(cfg(true), t0)];
        let lag = Duration::from_micros(50);
        let mut now = t0;
        let mut frames = 0u32;
        let end = t0 + TICK * 10;
        while now < end {
            l[0].handle_timeout(now).unwrap();
            l[1].handle_timeout(now).unwrap();
            // Whatever one wrote reaches the other `lag` later.
            let mut moved = true;
            while moved {
                moved = false;
                for from in [0, 1] {
                    let mut buf = vec![];
                    l[from].poll_transmit(now, &mut buf);
                    if !buf.is_empty() {
                        frames += 1;
                        assert!(frames < 1000, "ticking each other at wire speed");
                        now += lag;
                        l[1 - from].handle_input(&buf, now).unwrap();
                        moved = true;
                    }
                }
            }
            now = l[0].next_timeout().min(l[1].next_timeout()).max(now + lag);
        }
        // 40 quarters: one tick each way per quarter at most.
        assert!(frames <= 80, "{frames} ticks");
        assert!(frames >= 40, "{frames} ticks");
    }

    #[test]
    fn messages_batch_and_replace_the_tick() {
        let t0 = Instant::now();
        let mut l = Link::new(cfg(false), t0);
        l.handle_input(&[0, 0, 0, 0], t0).unwrap();
        for i in 0..3 {
            l.queue(msg(i, 10));
        }
        let cost = control::message_cost(&msg(0, 10));
        assert_eq!(l.queued_bytes(), 3 * cost);
        let mut buf = vec![];
        assert_eq!(l.poll_transmit(t0, &mut buf), 3);
        assert_eq!((l.queued(), l.queued_bytes()), (0, 0));
        let mut peer = Link::new(cfg(false), t0);
        peer.handle_input(&buf, t0).unwrap();
        assert_eq!(
            drain(&mut peer),
            (0..3).map(|i| msg(i, 10)).collect::<Vec<_>>()
        );
        assert!(!l.wants_transmit(), "data went out instead of the tick");
    }

    #[test]
    fn a_monitor_batch_goes_out_in_order_between_messages() {
        use crate::term::{Atom, PidOrAtom};
        let t0 = Instant::now();
        let head = Arc::new(MonitorHead {
            from: Pid::new("a@h", 9, 0, 1),
            node: Atom::from("b@h"),
            ref_node: Atom::from("a@h"),
            ref_creation: 1,
        });
        let target = |i: u32| MonitorTarget {
            id: i,
            serial: 0,
            creation: 2,
            ref_id: [i, 0, 7],
        };
        let monitor = |i: u32| {
            let t = target(i);
            Message::monitor_p(
                head.from.clone(),
                PidOrAtom::Pid(head.pid(&t)),
                head.reference(&t),
            )
        };
        for fragments in [true, false] {
            let mut l = Link::new(cfg(fragments), t0);
            l.queue(msg(0, 10));
            l.queue_monitors(MonitorBatch {
                head: head.clone(),
                targets: (1..4).map(target).collect(),
            });
            l.queue_monitors(MonitorBatch {
                head: head.clone(),
                targets: vec![],
            });
            l.queue(msg(4, 10));
            assert_eq!(l.queued(), 5);
            let mut buf = vec![];
            assert_eq!(l.poll_transmit(t0, &mut buf), 5);
            assert_eq!((l.queued(), l.wants_transmit()), (0, false));
            assert_eq!(l.queued_bytes(), 0);
            let mut peer = Link::new(cfg(fragments), t0);
            peer.handle_input(&buf, t0).unwrap();
            let mut want = vec![msg(0, 10)];
            want.extend((1..4).map(monitor));
            want.push(msg(4, 10));
            assert_eq!(drain(&mut peer), want);
        }
        // A peer without DIST_MONITOR gets the messages and no monitor
        // (see `compat`), and nothing stays counted as queued.
        let mut l = Link::new(cfg(true), t0);
        l.set_peer_flags(super::super::flags::MANDATORY_25);
        l.queue(msg(0, 10));
        l.queue_monitors(MonitorBatch {
            head: head.clone(),
            targets: (1..4).map(target).collect(),
        });
        l.queue(msg(4, 10));
        let mut buf = vec![];
        assert_eq!(l.poll_transmit(t0, &mut buf), 2);
        assert_eq!((l.queued(), l.queued_bytes()), (0, 0));
        let mut peer = Link::new(cfg(true), t0);
        peer.handle_input(&buf, t0).unwrap();
        assert_eq!(drain(&mut peer), vec![msg(0, 10), msg(4, 10)]);
    }

    #[test]
    fn a_batch_stops_near_its_size() {
        let t0 = Instant::now();
        let mut l = Link::new(cfg(true), t0);
        for i in 0..300 {
            l.queue(msg(i, 10_000));
        }
        let mut buf = vec![];
        let n = l.poll_transmit(t0, &mut buf);
        assert!(n < 300 && buf.len() >= BATCH && buf.len() < BATCH + 20_000);
        assert_eq!(l.queued(), 300 - n);
    }

    #[test]
    fn large_messages_are_fragmented_with_rising_sequence_ids() {
        let t0 = Instant::now();
        let mut l = Link::new(cfg(true), t0);
        l.queue(msg(1, 5000));
        l.queue(msg(2, 10));
        l.queue(msg(3, 2500));
        let mut buf = vec![];
        l.poll_transmit(t0, &mut buf);
        let bodies = crate::dist::codec::tests::packets(&buf);
        let kinds: Vec<(u8, u64, u64)> = bodies
            .iter()
            .map(|b| {
                let seq_id = |at: usize| u64::from_be_bytes(b[at..at + 8].try_into().unwrap());
                match b[1] {
                    68 => (68, 0, 0),
                    k => (k, seq_id(2), seq_id(10)),
                }
            })
            .collect();
        assert_eq!(
            kinds,
            [
                (69, 1, 6),
                (70, 1, 5),
                (70, 1, 4),
                (70, 1, 3),
                (70, 1, 2),
                (70, 1, 1),
                (68, 0, 0),
                (69, 2, 3),
                (70, 2, 2),
                (70, 2, 1)
            ]
        );
        let mut peer = Link::new(cfg(true), t0);
        peer.handle_input(&buf, t0).unwrap();
        assert_eq!(
            drain(&mut peer),
            vec![msg(1, 5000), msg(2, 10), msg(3, 2500)]
        );
    }

    /// A message queued with its payload as bytes arrives as the term those
    /// bytes hold, in either header form, fragmented or not, between
    /// messages written from terms.
    #[test]
    fn a_payload_queued_as_bytes_arrives_as_its_term() {
        let t0 = Instant::now();
        let to = Pid::new("a@h", 9, 0, 1);
        let payload = crate::term::tuple(vec![atom("cloudi_cpg_data"), binary(vec![3; 4000])]);
        let encoded = Encoded::of_term(&payload).unwrap();
        for fragments in [false, true] {
            let mut l = Link::new(cfg(fragments), t0);
            l.queue(msg(1, 10));
            let control = Message::send(to.clone(), crate::term::nil());
            l.queue_encoded(control, encoded.clone(), encoded.memory());
            l.queue(msg(2, 10));
            assert_eq!(l.queued(), 3);
            let mut buf = vec![];
            assert_eq!(l.poll_transmit(t0, &mut buf), 3);
            assert_eq!((l.queued(), l.queued_bytes()), (0, 0));
            let mut peer = Link::new(cfg(fragments), t0);
            peer.handle_input(&buf, t0).unwrap();
            let want = Message::send(to.clone(), payload.clone());
            assert_eq!(drain(&mut peer), vec![msg(1, 10), want, msg(2, 10)]);
        }
    }

    #[test]
    fn large_reg_sends_to_raw_names_keep_their_payload_as_bytes() {
        let t0 = Instant::now();
        let from = Pid::new("a@h", 1, 0, 1);
        let reg = |to: &str, size: usize| {
            Message::reg_send(from.clone(), to.into(), binary(vec![7; size]))
        };
        for fragments in [false, true] {
            let mut l = Link::new(cfg(fragments), t0);
            let big = crate::dist::raw::RAW_MIN + 10;
            l.queue(reg("scope", big));
            l.queue(reg("scope", 10));
            l.queue(reg("other", big));
            l.queue(reg("scope", 3 * big));
            let mut buf = vec![];
            l.poll_transmit(t0, &mut buf);
            let mut peer = Link::new(cfg(fragments), t0);
            let names = RawNames::default();
            names.insert("scope");
            peer.set_raw_names(names);
            peer.handle_input(&buf, t0).unwrap();
            let events: Vec<Event> = std::iter::from_fn(|| peer.poll_event()).collect();
            assert_eq!(events.len(), 4);
            for (e, size) in [(&events[0], big), (&events[3], 3 * big)] {
                let Event::Raw(r) = e else { panic!("{e:?}") };
                assert_eq!((&r.from, r.to_name.as_str()), (&from, "scope"));
                assert_eq!(r.payload.decode().unwrap(), binary(vec![7; size]));
            }
            assert!(matches!(&events[1], Event::Message(m) if *m == reg("scope", 10)));
            assert!(matches!(&events[2], Event::Message(m) if *m == reg("other", big)));
        }
    }

    #[test]
    fn bad_content_drops_one_message_bad_framing_ends_the_link() {
        let t0 = Instant::now();
        let mut l = Link::new(cfg(true), t0);
        // A REG_SEND whose payload has an unknown tag, then a good one.
        let mut out = vec![];
        control::encode_message(
            &Message::reg_send(Pid::new("a@h", 1, 0, 1), "x".into(), atom("ok")),
            &mut out,
            true,
        )
        .unwrap();
        let good = out.clone();
        let n = out.len();
        out[n - 4] = 200;
        out.extend_from_slice(&good);
        l.handle_input(&out, t0).unwrap();
        match l.poll_event() {
            Some(Event::Dropped { error, control }) => {
                assert!(!error.is_fatal());
                assert!(control.unwrap().contains("a@h"));
            }
            e => panic!("{e:?}"),
        }
        assert!(matches!(l.poll_event(), Some(Event::Message(_))));
        // A length over the limit.
        let err = l.handle_input(&[0xff, 0, 0, 0], t0).unwrap_err();
        assert!(matches!(err, LinkError::Decode(DecodeError::TooLarge(_))));
        // An unknown packet type.
        let mut l = Link::new(cfg(true), t0);
        assert!(l.handle_input(&[0, 0, 0, 1, 7], t0).is_err());
    }

    #[test]
    fn buffers_are_given_back_after_a_large_message() {
        let t0 = Instant::now();
        let mut l = Link::new(cfg(false), t0);
        let mut buf = vec![];
        control::encode_message(&msg(1, 600_000), &mut buf, false).unwrap();
        for chunk in buf.chunks(64 * 1024) {
            l.handle_input(chunk, t0).unwrap();
        }
        assert_eq!(drain(&mut l), vec![msg(1, 600_000)]);
        l.handle_input(&[0, 0, 0, 0], t0).unwrap();
        assert_eq!(l.partial.capacity(), 0);
        // Queues a burst grew are given back when the timer fires.
        for i in 0..5000 {
            l.queue(msg(i, 1));
        }
        let mut buf = vec![];
        l.poll_transmit(t0, &mut buf);
        l.handle_input(&buf, t0).unwrap();
        assert_eq!(drain(&mut l).len(), 5000);
        assert!(l.queue.capacity() >= 5000 && l.events.capacity() >= 5000);
        l.handle_timeout(t0 + TICK / 4).unwrap();
        assert_eq!((l.queue.capacity(), l.events.capacity()), (0, 0));
    }

    proptest! {
        /// However the stream is cut into reads, the same messages come out.
        #[test]
        fn any_split_of_the_input(
            sizes in proptest::collection::vec(0usize..3000, 1..12),
            cuts in proptest::collection::vec(1usize..700, 1..40),
            fragments in any::<bool>(),
        ) {
            let t0 = Instant::now();
            let mut tx = Link::new(cfg(fragments), t0);
            let sent: Vec<Message> =
                sizes.iter().enumerate().map(|(i, &s)| msg(i as u32, s)).collect();
            for m in &sent {
                tx.queue(m.clone());
            }
            let mut buf = vec![0, 0, 0, 0];
            tx.poll_transmit(t0, &mut buf);
            let mut rx = Link::new(cfg(fragments), t0);
            let mut rest = &buf[..];
            let mut i = 0;
            while !rest.is_empty() {
                let n = cuts[i % cuts.len()].min(rest.len());
                rx.handle_input(&rest[..n], t0).unwrap();
                rest = &rest[n..];
                i += 1;
            }
            prop_assert!(rx.partial.is_empty());
            prop_assert_eq!(drain(&mut rx), sent);
        }
    }
}
