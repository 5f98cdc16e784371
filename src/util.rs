//! Small helpers shared by the layers.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hash};

/// A hash map for the hot paths (pids, monitor references) with `foldhash`,
/// a fast hasher randomly seeded per map, instead of std's SipHash: hashing
/// a 16-byte pid with SipHash was a fifth of an exchange merge, and the
/// monitor maps the largest cost of an ingest. The random seed keeps
/// colliding keys hard to craft from outside, as std's does.
pub(crate) type FastHashMap<K, V> = HashMap<K, V, foldhash::quality::RandomState>;

/// A hash map keyed by a counter of our own (the keys of the refs this
/// node makes, see [`SeqKeys`]).
pub(crate) type SeqKeyMap<K, V> = HashMap<K, V, SeqKeys>;

/// A hash set of keys that are a counter of our own (see [`SeqKeys`]).
pub(crate) type SeqKeySet<K> = std::collections::HashSet<K, SeqKeys>;

/// Hashes a `u64` counter so that consecutive keys land in consecutive
/// slots: the low 57 bits are the key itself (hashbrown picks the slot
/// from the low bits), the top 7 (the tag it compares first) a
/// multiplicative mix of it. A batch of 100k monitors then fills its
/// tables in order, where a random hash made each insert (and each
/// rehash move) a cache miss. Only for keys the node hands out itself
/// (nothing from outside chooses them, so no seed is needed against
/// crafted collisions).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct SeqKeys;

impl BuildHasher for SeqKeys {
    type Hasher = SeqHasher;
    fn build_hasher(&self) -> SeqHasher {
        SeqHasher(0)
    }
}

/// The hasher of [`SeqKeys`].
#[derive(Debug)]
pub(crate) struct SeqHasher(u64);

impl std::hash::Hasher for SeqHasher {
    fn finish(&self) -> u64 {
        const TAG: u64 = 0xFE00_0000_0000_0000;
        let k = self.0;
        (k.wrapping_mul(0x9E37_79B9_7F4A_7C15) & TAG) | (k & !TAG)
    }

    fn write(&mut self, bytes: &[u8]) {
        // Not used by a `u64` key; any other key still hashes, if poorly.
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }

    fn write_u64(&mut self, k: u64) {
        self.0 = k;
    }
}

/// Waits while `busy` holds, spinning a little and then yielding the
/// thread, for at most `max`: whether it stopped holding. For a wait of
/// microseconds on another thread's short step (a message being routed,
/// a send under way), bounded so that a step that needs what the waiter
/// holds cannot hang it.
pub(crate) fn wait_while(mut busy: impl FnMut() -> bool, max: std::time::Duration) -> bool {
    let until = std::time::Instant::now() + max;
    let mut spins = 0u32;
    while busy() {
        if std::time::Instant::now() >= until {
            return false;
        }
        spins += 1;
        if spins < 64 {
            std::hint::spin_loop();
        } else {
            std::thread::yield_now();
        }
    }
    true
}

/// Gives memory back from a map that has emptied out: once fewer than a
/// quarter of its slots are used it shrinks to twice its length. Called
/// after removals, this costs O(1) amortised (a map shrinks again only
/// after half of what it kept has gone), and a burst (100k monitors, 100k
/// memberships) no longer pins its peak size for the node's life.
pub(crate) fn shrink_sparse<K: Eq + Hash, V, S: BuildHasher>(m: &mut HashMap<K, V, S>) {
    if let Some(room) = sparse_room(m.len(), m.capacity()) {
        m.shrink_to(room);
    }
}

/// [`shrink_sparse`] for a set.
pub(crate) fn shrink_sparse_set<K: Eq + Hash, S: BuildHasher>(
    m: &mut std::collections::HashSet<K, S>,
) {
    if let Some(room) = sparse_room(m.len(), m.capacity()) {
        m.shrink_to(room);
    }
}

/// The rule of [`shrink_sparse`], for any hash table: the room a table of
/// `len` entries in `capacity` slots shrinks to (twice its length), or
/// `None` while it is not sparse (a quarter or more used, or 256 slots or
/// fewer).
pub(crate) fn sparse_room(len: usize, capacity: usize) -> Option<usize> {
    const MIN: usize = 256;
    (capacity > MIN && len * 4 < capacity).then(|| (len * 2).max(MIN / 4))
}

/// A term as text for a log line or an error: at most about 200 bytes,
/// at a cost bounded by that ([`crate::term::show()`]), however large the
/// term from the network.
pub(crate) fn short_text(t: &crate::term::Term) -> String {
    crate::term::show(t).to_string()
}

/// Lets at most `per_window` events a `window` through: a warning for each
/// message a peer sends that is refused for its content would otherwise be
/// a log line per message (2.6 MB of bad packets made 39 MB of log). Each
/// event let through carries how many were held back since the last one.
#[derive(Debug)]
pub(crate) struct RateLimit {
    per_window: u32,
    window: std::time::Duration,
    start: Option<std::time::Instant>,
    seen: u32,
    held: u64,
}

impl RateLimit {
    /// At most `per_window` events every `window`.
    pub(crate) const fn new(per_window: u32, window: std::time::Duration) -> Self {
        RateLimit {
            per_window,
            window,
            start: None,
            seen: 0,
            held: 0,
        }
    }

    /// An event at `now`: `Some(n)` when it goes through (`n` events held
    /// back since the last one that did), `None` when it is held back.
    pub(crate) fn event(&mut self, now: std::time::Instant) -> Option<u64> {
        match self.start {
            Some(s) if now.saturating_duration_since(s) < self.window => {}
            _ => {
                self.start = Some(now);
                self.seen = 0;
            }
        }
        self.seen = self.seen.saturating_add(1);
        if self.seen <= self.per_window {
            Some(std::mem::take(&mut self.held))
        } else {
            self.held += 1;
            None
        }
    }

    /// Whether events are held back, untold yet.
    pub(crate) fn holding(&self) -> bool {
        self.held > 0
    }

    /// The events held back, once the window they came in has ended with
    /// no event let through since to tell them (a flood that stopped):
    /// `Some(n)`, and the count starts again; `None` while the window is
    /// open or nothing is held back. Called now and then by an owner that
    /// has a timer, so that the count of a flood is told when it ends.
    pub(crate) fn untold(&mut self, now: std::time::Instant) -> Option<u64> {
        let ended = self
            .start
            .is_some_and(|s| now.saturating_duration_since(s) >= self.window);
        (ended && self.held > 0).then(|| std::mem::take(&mut self.held))
    }

    /// When the current window ends (`None` before the first event).
    fn window_end(&self) -> Option<std::time::Instant> {
        self.start.map(|s| s + self.window)
    }
}

/// A [`RateLimit`] for a log that other nodes can flood, which also tells
/// the count of a flood once it is over: the first event held back in a
/// window starts a task (where a tokio runtime runs) that, once the window
/// has ended and no event let through has told the count since, calls the
/// `over` given at construction with it. Without it the count of a flood
/// that stopped waited for the next event let through, perhaps for ever.
/// At most one such task runs per log; each event costs an uncontended
/// lock.
pub(crate) struct FloodLog {
    state: std::sync::Mutex<FloodState>,
    over: Box<dyn Fn(u64) + Send + Sync>,
}

struct FloodState {
    limit: RateLimit,
    /// A task is waiting to tell what is held back.
    telling: bool,
}

impl FloodLog {
    /// At most `per_window` events every `window`; `over(n)` tells the `n`
    /// events a flood held back once it is over (say "n more … were not
    /// logged").
    pub(crate) fn new(
        per_window: u32,
        window: std::time::Duration,
        over: impl Fn(u64) + Send + Sync + 'static,
    ) -> std::sync::Arc<Self> {
        std::sync::Arc::new(FloodLog {
            state: std::sync::Mutex::new(FloodState {
                limit: RateLimit::new(per_window, window),
                telling: false,
            }),
            over: Box::new(over),
        })
    }

    /// An event now: `Some(n)` when it is to be logged (`n` events held
    /// back since the last one logged or told), `None` when it is held
    /// back (and told later, by the event let through next or by `over`).
    pub(crate) fn event(self: &std::sync::Arc<Self>) -> Option<u64> {
        let mut s = self.lock();
        let passed = s.limit.event(Self::now());
        if passed.is_none() && !s.telling {
            if let Ok(rt) = tokio::runtime::Handle::try_current() {
                s.telling = true;
                rt.spawn(Self::tell_when_over(std::sync::Arc::clone(self)));
            }
        }
        passed
    }

    /// Waits for the window's end, then tells what is still held back; a
    /// flood still going on holds it back in its new window, waited for
    /// in turn.
    async fn tell_when_over(this: std::sync::Arc<Self>) {
        loop {
            let end = this.lock().limit.window_end();
            if let Some(end) = end {
                tokio::time::sleep_until(tokio::time::Instant::from_std(end)).await;
            }
            let mut s = this.lock();
            match s.limit.untold(Self::now()) {
                Some(n) => {
                    s.telling = false;
                    drop(s);
                    (this.over)(n);
                    return;
                }
                None if s.limit.holding() && end.is_some() => continue,
                None => {
                    s.telling = false;
                    return;
                }
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, FloodState> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Now, on tokio's clock where there is one (paused in tests).
    fn now() -> std::time::Instant {
        tokio::time::Instant::now().into_std()
    }
}

impl std::fmt::Debug for FloodLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FloodLog")
            .field("limit", &self.lock().limit)
            .finish_non_exhaustive()
    }
}

/// How long a process-like task (a scope) works on before it gives its
/// worker back ([`Turns`]).
pub(crate) const TURN: std::time::Duration = std::time::Duration::from_millis(2);

/// Gives a task's worker back every [`TURN`] of a run of work: tokio runs
/// the task a worker woke last next on that worker, where no other worker
/// can take it, so a task woken by a long run of work (a connection's
/// writer, after a scope's first send) would otherwise wait for the whole
/// run, and every reply to that peer with it (measured: echo calls held up
/// 1.5 s behind 60 casts of a million copies to a cpg scope). A run starts
/// when the task last waited for input or gave its worker back.
pub(crate) struct Turns {
    busy_since: std::time::Instant,
}

impl Turns {
    /// A run starting now.
    pub(crate) fn new() -> Self {
        Turns {
            busy_since: std::time::Instant::now(),
        }
    }

    /// Gives the worker back if this run of work has lasted [`TURN`].
    pub(crate) async fn turn(&mut self) {
        if self.busy_since.elapsed() >= TURN {
            tokio::task::yield_now().await;
            self.busy_since = std::time::Instant::now();
        }
    }

    /// [`turn`](Self::turn), then the next input from `next`; a run of
    /// work starts anew if it had to wait for it.
    pub(crate) async fn next<F: std::future::Future>(&mut self, next: F) -> F::Output {
        self.turn().await;
        let mut next = std::pin::pin!(next);
        let mut waited = false;
        let out = std::future::poll_fn(|cx| {
            let r = next.as_mut().poll(cx);
            waited |= r.is_pending();
            r
        })
        .await;
        if waited {
            self.busy_since = std::time::Instant::now();
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seq_keys_keep_consecutive_keys_in_consecutive_slots_with_varied_tags() {
        let h = |k: u64| SeqKeys.hash_one(k);
        let low = |x: u64| x & 0x01FF_FFFF_FFFF_FFFF;
        let tags: std::collections::HashSet<u64> = (1000..1128).map(|k| h(k) >> 57).collect();
        assert!((1000..1128).all(|k| low(h(k)) == k));
        assert!(tags.len() > 64, "{} distinct tags", tags.len());
        // A map keyed this way is still a map.
        let mut m: SeqKeyMap<u64, u64> = SeqKeyMap::default();
        for k in 0..10_000u64 {
            m.insert(k * 3, k);
        }
        assert!(
            (0..10_000u64).all(|k| m.get(&(k * 3)) == Some(&k) && !m.contains_key(&(k * 3 + 1)))
        );
    }

    #[test]
    fn short_text_cuts_on_a_character_boundary_without_formatting_it_all() {
        let s = short_text(&crate::term::atom(&"é".repeat(150)));
        assert!(s.len() <= 200 + '…'.len_utf8() && s.starts_with("'éé") && s.ends_with('…'));
        let big = crate::term::list((0..1_000_000).map(crate::term::int).collect());
        let s = short_text(&big);
        assert!(s.len() <= 200 + '…'.len_utf8() && s.ends_with('…'), "{s}");
    }

    #[test]
    fn a_map_that_empties_gives_its_memory_back() {
        let mut m: HashMap<u32, u64> = (0..100_000).map(|i| (i, 0)).collect();
        let peak = m.capacity();
        for i in 0..100_000 {
            m.remove(&i);
            shrink_sparse(&mut m);
        }
        assert!(m.capacity() <= 256, "{} of {peak}", m.capacity());
        let mut small: HashMap<u32, u64> = (0..10).map(|i| (i, 0)).collect();
        let cap = small.capacity();
        small.remove(&1);
        shrink_sparse(&mut small);
        assert_eq!(small.capacity(), cap, "small maps are left alone");
    }

    #[test]
    fn rate_limit_tells_what_a_flood_held_back_once_it_ended() {
        use std::time::{Duration, Instant};
        let mut l = RateLimit::new(2, Duration::from_secs(1));
        let t0 = Instant::now();
        assert_eq!(l.untold(t0), None);
        for _ in 0..5 {
            l.event(t0);
        }
        assert!(l.holding());
        assert_eq!(
            l.untold(t0 + Duration::from_millis(500)),
            None,
            "window open"
        );
        assert_eq!(l.untold(t0 + Duration::from_secs(1)), Some(3));
        assert!(!l.holding());
        assert_eq!(l.untold(t0 + Duration::from_secs(2)), None, "told once");
        // An event let through tells them first: nothing untold then.
        for _ in 0..4 {
            l.event(t0 + Duration::from_secs(3));
        }
        assert_eq!(l.event(t0 + Duration::from_secs(4)), Some(2));
        assert_eq!(l.untold(t0 + Duration::from_secs(6)), None);
    }

    #[tokio::test(start_paused = true)]
    async fn a_flood_log_tells_a_flood_once_it_is_over_once() {
        use std::sync::{Arc, Mutex};
        use std::time::Duration;
        let told = Arc::new(Mutex::new(Vec::new()));
        let t = told.clone();
        let log = FloodLog::new(2, Duration::from_secs(1), move |n| {
            t.lock().unwrap().push(n)
        });
        let passed: Vec<Option<u64>> = (0..5).map(|_| log.event()).collect();
        assert_eq!(passed, [Some(0), Some(0), None, None, None]);
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert!(told.lock().unwrap().is_empty(), "the window is open");
        // More of the same flood in the same window: one count for all.
        assert_eq!(log.event(), None);
        tokio::time::sleep(Duration::from_millis(600)).await;
        assert_eq!(*told.lock().unwrap(), [4]);
        tokio::time::sleep(Duration::from_secs(3)).await;
        assert_eq!(*told.lock().unwrap(), [4], "told once");
        // A later flood is told in turn, once its window has ended; the
        // event after that starts afresh (nothing left to tell).
        assert_eq!(log.event(), Some(0));
        assert_eq!(log.event(), Some(0));
        assert_eq!(log.event(), None);
        tokio::time::sleep(Duration::from_millis(1500)).await;
        assert_eq!(log.event(), Some(0), "told by the task already");
        assert_eq!(*told.lock().unwrap(), [4, 1]);
        let _ = (log.event(), log.event());
        tokio::time::sleep(Duration::from_millis(1100)).await;
        assert_eq!(*told.lock().unwrap(), [4, 1, 1]);
    }

    #[test]
    fn a_flood_log_outside_a_runtime_counts_in_the_next_event() {
        let log = FloodLog::new(1, std::time::Duration::from_millis(10), |_| {
            panic!("no task outside a runtime")
        });
        assert_eq!(log.event(), Some(0));
        assert_eq!((log.event(), log.event()), (None, None));
        std::thread::sleep(std::time::Duration::from_millis(20));
        assert_eq!(log.event(), Some(2));
    }

    #[test]
    fn rate_limit_lets_a_few_through_a_window_and_counts_the_rest() {
        use std::time::{Duration, Instant};
        let mut l = RateLimit::new(3, Duration::from_secs(1));
        let t0 = Instant::now();
        let got: Vec<Option<u64>> = (0..10).map(|_| l.event(t0)).collect();
        assert_eq!(got[..3], [Some(0), Some(0), Some(0)]);
        assert!(got[3..].iter().all(Option::is_none));
        // The next window: the first event through says 7 were held back.
        let t1 = t0 + Duration::from_secs(1);
        assert_eq!(l.event(t1), Some(7));
        assert_eq!(l.event(t1), Some(0));
    }

    /// A task whose inputs are always ready and whose work takes 1 ms an
    /// input lets another task on its (single) worker run during the run,
    /// about every TURN; without `Turns` it would not run until the end.
    #[test]
    fn turns_give_the_worker_back_during_a_run_of_work() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        use std::sync::Arc;
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let ran = Arc::new(AtomicUsize::new(0));
        let seen_during = rt.block_on(async {
            let r = ran.clone();
            let other = tokio::spawn(async move {
                loop {
                    r.fetch_add(1, Ordering::SeqCst);
                    tokio::task::yield_now().await;
                }
            });
            let mut turns = Turns::new();
            for _ in 0..40 {
                turns.next(async {}).await;
                let t = std::time::Instant::now();
                while t.elapsed() < std::time::Duration::from_millis(1) {
                    std::hint::spin_loop();
                }
            }
            let seen = ran.load(Ordering::SeqCst);
            other.abort();
            seen
        });
        assert!(seen_during >= 5, "the other task ran {seen_during} times");
    }
}
