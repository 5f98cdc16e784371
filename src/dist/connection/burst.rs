//! Read coalescing: which peers stream to us one way, so that the driver
//! waits a little before reading again (see [`Burst`]).

use crate::term::Term;
use erl_dist::message::Message;
use std::time::{Duration, Instant};

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
