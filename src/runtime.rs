//! The runtime the `cpg-node` binary runs on: tokio's multi-threaded
//! runtime, at least two workers, and a watchdog that keeps the node
//! serving while one task computes for long.
//!
//! **Why.** A tokio worker that wakes from its IO driver with a single task
//! to run does not wake the other workers; if that task then computes for
//! seconds (a cpg scope answering a lookup that genuine cpg would take as
//! long over, a merge of a huge exchange, a huge message decoded), the
//! other worker sleeps on its condition variable, nobody polls the IO
//! driver, and the whole node stops answering: ticks, echo calls, EPMD,
//! every other scope. Measured: a 4.5 s lookup in a scope task held up a
//! `gen_server:call` to an unrelated process for all of its 4.5 s, and a
//! BEAM peer dropped the node as not responding. Genuine cpg blocks only
//! the scope process doing the work.
//!
//! **What.** Each worker notes when it woke ([`Builder::on_thread_unpark`])
//! and when it went idle ([`Builder::on_thread_park`]). A watchdog thread,
//! asleep while every worker is idle, looks every [`TICK`] while one is
//! busy; when a worker has been busy for [`STUCK`] without going idle, it
//! spawns an empty task, which wakes an idle worker; that worker finds the
//! IO driver free and serves the rest of the node while the long poll goes
//! on. Under a steady load that never lets a worker idle this only adds an
//! empty task every [`STUCK`]. A library user gets the same with
//! [`build`] in place of `#[tokio::main]`.
//!
//! [`Builder::on_thread_unpark`]: tokio::runtime::Builder::on_thread_unpark
//! [`Builder::on_thread_park`]: tokio::runtime::Builder::on_thread_park

use crate::sync::now_nanos;
use std::cell::OnceCell;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::thread::Thread;
use std::time::{Duration, Instant};

/// How often the watchdog looks while a worker is busy.
pub const TICK: Duration = Duration::from_millis(5);

/// How long a worker may stay busy before the watchdog wakes another.
pub const STUCK: Duration = Duration::from_millis(20);

/// A multi-threaded tokio runtime (IO and timers enabled) with at least
/// two workers (`workers`, or one per core) and the watchdog described in
/// the [module docs](self). Its threads are named `cpg-node-worker` and
/// `cpg-node-watchdog`; the watchdog ends when the runtime is dropped.
pub fn build(workers: Option<usize>) -> std::io::Result<tokio::runtime::Runtime> {
    build_watched(workers).map(|(rt, _)| rt)
}

/// [`build`], and the watchdog thread's handle.
fn build_watched(
    workers: Option<usize>,
) -> std::io::Result<(tokio::runtime::Runtime, std::thread::JoinHandle<()>)> {
    let workers = workers
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get()))
        .max(2);
    let watch = Arc::new(Watch::default());
    let (on_start, on_park, on_unpark, on_stop) =
        (watch.clone(), watch.clone(), watch.clone(), watch.clone());
    // The watchdog holds a `Handle`, which holds these callbacks and so
    // `watch`: it ends on the flag `on_stop` sets when the runtime's last
    // thread ends, not on a count of references.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .thread_name("cpg-node-worker")
        .enable_all()
        .on_thread_start(move || on_start.thread_started())
        .on_thread_park(move || on_park.set_busy(false))
        .on_thread_unpark(move || on_unpark.set_busy(true))
        .on_thread_stop(move || on_stop.thread_stopped())
        .build()?;
    let handle = rt.handle().clone();
    let w = watch.clone();
    let thread = std::thread::Builder::new()
        .name("cpg-node-watchdog".into())
        .spawn(move || {
            let _ = w.watchdog.set(std::thread::current());
            watchdog(&w, &handle);
        })?;
    Ok((rt, thread))
}

/// What the workers tell the watchdog.
#[derive(Default)]
struct Watch {
    /// One slot per thread of the runtime: when it last woke, in
    /// nanoseconds ([`now_nanos`]) plus one, or 0 while it is idle (a
    /// blocking-pool thread, which neither parks nor wakes as a worker
    /// does, stays at 0).
    slots: Mutex<Vec<Arc<AtomicU64>>>,
    /// The watchdog is asleep until a worker wakes.
    asleep: AtomicBool,
    /// The watchdog thread, to wake it.
    watchdog: OnceLock<Thread>,
    /// Every thread of the runtime has stopped: it is shut down.
    stopped: AtomicBool,
}

thread_local! {
    /// This thread's slot in [`Watch::slots`].
    static SLOT: OnceCell<Arc<AtomicU64>> = const { OnceCell::new() };
}

impl Watch {
    /// This thread's slot, made and listed on first use.
    fn slot(&self) -> Arc<AtomicU64> {
        SLOT.with(|slot| {
            slot.get_or_init(|| {
                let s = Arc::new(AtomicU64::new(0));
                self.slots
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .push(s.clone());
                s
            })
            .clone()
        })
    }

    /// Called by every thread of the runtime as it starts.
    fn thread_started(&self) {
        self.slot();
    }

    /// Called by a worker as it wakes (`busy`) or goes idle.
    fn set_busy(&self, busy: bool) {
        SLOT.with(|slot| {
            let v = if busy { now_nanos() + 1 } else { 0 };
            match slot.get() {
                Some(s) => s.store(v, Ordering::Relaxed),
                None => self.slot().store(v, Ordering::Relaxed),
            }
        });
        if busy && self.asleep.load(Ordering::Relaxed) && self.asleep.swap(false, Ordering::SeqCst)
        {
            self.wake_watchdog();
        }
    }

    /// Called by every thread of the runtime as it ends: it gives its slot
    /// back, and the last one to go (the runtime shut down) stops the
    /// watchdog. (Threads also end while the runtime runs: blocking-pool
    /// threads left idle, a worker's thread that `block_in_place` handed
    /// to the blocking pool. The workers keep their slots meanwhile.)
    fn thread_stopped(&self) {
        let Some(mine) = SLOT.with(|slot| slot.get().cloned()) else {
            return;
        };
        let mut slots = self.slots.lock().unwrap_or_else(PoisonError::into_inner);
        slots.retain(|s| !Arc::ptr_eq(s, &mine));
        if slots.is_empty() {
            self.stopped.store(true, Ordering::SeqCst);
            drop(slots);
            self.wake_watchdog();
        }
    }

    fn wake_watchdog(&self) {
        if let Some(t) = self.watchdog.get() {
            t.unpark();
        }
    }

    /// The longest time a worker has been busy, if one is.
    fn busiest(&self) -> Option<Duration> {
        let now = now_nanos() + 1;
        let slots = self.slots.lock().unwrap_or_else(PoisonError::into_inner);
        slots
            .iter()
            .map(|s| s.load(Ordering::Relaxed))
            .filter(|&since| since != 0)
            .map(|since| Duration::from_nanos(now.saturating_sub(since)))
            .max()
    }
}

/// The watchdog thread's loop, until the runtime shuts down.
fn watchdog(w: &Watch, handle: &tokio::runtime::Handle) {
    let mut last_nudge: Option<Instant> = None;
    while !w.stopped.load(Ordering::SeqCst) {
        match w.busiest() {
            Some(busy) => {
                if busy >= STUCK && last_nudge.is_none_or(|t| t.elapsed() >= STUCK) {
                    // An empty task: the spawn wakes an idle worker, which
                    // takes the IO driver once it has run it.
                    drop(handle.spawn(async {}));
                    last_nudge = Some(Instant::now());
                }
                std::thread::sleep(TICK);
            }
            None => {
                w.asleep.store(true, Ordering::SeqCst);
                // A worker that woke between the look and the flag would
                // not have seen the flag: look again before sleeping.
                if w.busiest().is_some() || w.stopped.load(Ordering::SeqCst) {
                    w.asleep.store(false, Ordering::SeqCst);
                    continue;
                }
                std::thread::park();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One task computing for a second on a two-worker runtime: the other
    /// tasks go on being served (a timer and a TCP echo), where without
    /// the watchdog they wait for the whole second.
    #[test]
    fn a_long_poll_does_not_stop_the_other_tasks() {
        let rt = build(Some(2)).unwrap();
        let worst = rt.block_on(async {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            tokio::spawn(async move {
                let (mut s, _) = listener.accept().await.unwrap();
                let mut b = [0u8; 1];
                while s.read_exact(&mut b).await.is_ok() {
                    s.write_all(&b).await.unwrap();
                }
            });
            let mut c = tokio::net::TcpStream::connect(addr).await.unwrap();
            // The long poll starts on a byte from a socket, as a message
            // reaches a scope: the worker that polled the IO driver runs
            // it, and none other is woken.
            let go = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let go_addr = go.local_addr().unwrap();
            let busy = tokio::spawn(async move {
                let (mut s, _) = go.accept().await.unwrap();
                let mut b = [0u8; 1];
                s.read_exact(&mut b).await.unwrap();
                let t = Instant::now();
                while t.elapsed() < Duration::from_secs(1) {
                    std::hint::spin_loop();
                }
            });
            let mut go = tokio::net::TcpStream::connect(go_addr).await.unwrap();
            tokio::time::sleep(Duration::from_millis(50)).await;
            go.write_all(b"x").await.unwrap();
            let start = Instant::now();
            let mut worst = Duration::ZERO;
            while start.elapsed() < Duration::from_millis(900) {
                let t = Instant::now();
                c.write_all(b"x").await.unwrap();
                let mut b = [0u8; 1];
                c.read_exact(&mut b).await.unwrap();
                tokio::time::sleep(Duration::from_millis(2)).await;
                worst = worst.max(t.elapsed());
            }
            busy.await.unwrap();
            worst
        });
        assert!(worst < Duration::from_millis(500), "echo waited {worst:?}");
    }

    #[test]
    fn the_watchdog_ends_with_the_runtime() {
        let (rt, watchdog) = build_watched(Some(2)).unwrap();
        rt.block_on(async {
            // A blocking-pool thread comes and goes meanwhile.
            tokio::task::spawn_blocking(|| ()).await.unwrap();
            tokio::time::sleep(Duration::from_millis(10)).await
        });
        drop(rt);
        watchdog.join().unwrap();
        // Dropped before any worker ever went idle.
        let (rt, watchdog) = build_watched(Some(2)).unwrap();
        drop(rt);
        watchdog.join().unwrap();
    }
}
