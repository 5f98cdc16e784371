//! Supervision of the node's own tasks: a panic in one of them (a bug) is
//! logged and contained, and the task starts again, as an OTP supervisor
//! restarts a crashed child: at once the first few times, then after a
//! growing backoff ([`before_restart`]). Nothing here is needed while
//! the code is right; it keeps one bug from taking the node out of the
//! cluster for good.

use crate::config::Backoff;
use std::any::Any;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::time::Instant;

/// A future that turns a panic while polling `F` into `Err(message)`.
pub(crate) struct CatchUnwind<F>(Pin<Box<F>>);

impl<F: Future> CatchUnwind<F> {
    /// `f`, pinned, with its panics caught.
    pub(crate) fn new(f: F) -> Self {
        CatchUnwind(Box::pin(f))
    }
}

impl<F: Future> Future for CatchUnwind<F> {
    type Output = Result<F::Output, String>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let f = self.0.as_mut();
        match std::panic::catch_unwind(AssertUnwindSafe(|| f.poll(cx))) {
            Ok(Poll::Ready(v)) => Poll::Ready(Ok(v)),
            Ok(Poll::Pending) => Poll::Pending,
            Err(payload) => Poll::Ready(Err(panic_message(payload.as_ref()))),
        }
    }
}

/// The text a panic was raised with.
pub(crate) fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "non-string panic payload".to_string()
    }
}

/// For a restarted scope task: a new process registered under `name`,
/// tried again after a backoff while that fails (the name is still held).
/// `attempt` counts the restarts and failures, for the backoff. `raw`:
/// registered with [`crate::Node::spawn_registered_raw`].
pub(crate) async fn register_again(
    node: &crate::Node,
    name: &str,
    raw: bool,
    attempt: &mut u32,
) -> crate::process::Process {
    let backoff = node.config().backoff;
    loop {
        let p = match raw {
            true => node.spawn_registered_raw(name),
            false => node.spawn_registered(name),
        };
        match p {
            Ok(p) => return p,
            Err(e) => {
                tracing::error!(scope = %name, "cannot register {name} again: {e}");
                tokio::time::sleep(backoff.random_delay(*attempt)).await;
                *attempt = attempt.saturating_add(1);
            }
        }
    }
}

/// A run that lasted at least this long resets the backoff: the crash
/// that ended it is treated as a new fault, not as part of a crash loop,
/// so the restart after it is made at once again ([`AT_ONCE`]). One
/// rule for every supervisor here: [`supervise`] and the scope supervisors
/// (through [`before_restart`]).
pub(crate) const STABLE: Duration = Duration::from_secs(60);

/// The backoff attempt for the restart after a run that lasted `ran_for`,
/// `attempt` being the count so far: 0 (the first delay) if the run was
/// stable (at least [`STABLE`]), else `attempt` unchanged.
pub(crate) fn next_attempt(attempt: u32, ran_for: Duration) -> u32 {
    if ran_for >= STABLE {
        0
    } else {
        attempt
    }
}

/// Restarts made at once after a stable run, before the backoff starts:
/// cpg's supervisor (`cpg_sup`) restarts a scope at once up to 5 times in
/// 60 s, then gives up (and cpg stops on that node); here the restarts past
/// them back off instead, so that a task that keeps crashing, or a peer
/// that keeps killing a scope, cannot keep the node busy rebuilding it.
pub(crate) const AT_ONCE: u32 = 5;

/// The wait before restart `attempt` (0 for the first since a stable run):
/// none for the first [`AT_ONCE`], then `backoff`'s delays from its first.
pub(crate) fn restart_delay(backoff: Backoff, attempt: u32) -> Duration {
    match attempt.checked_sub(AT_ONCE) {
        None => Duration::ZERO,
        Some(k) => backoff.random_delay(k),
    }
}

/// After a supervised run that began at `started` stopped (`why`): resets
/// `attempt` if that run was stable ([`next_attempt`]), logs the stop, and
/// waits [`restart_delay`] of `attempt` (then counted, so it is at least 1
/// after this) before the restart.
pub(crate) async fn before_restart(
    backoff: Backoff,
    what: &str,
    why: &str,
    attempt: &mut u32,
    started: Instant,
) {
    *attempt = next_attempt(*attempt, started.elapsed());
    let wait = restart_delay(backoff, *attempt);
    *attempt = attempt.saturating_add(1);
    tracing::error!("{what} stopped ({why}); restarting it in {wait:?}");
    tokio::time::sleep(wait).await;
}

/// Runs `make()` and, whenever it panics, logs the panic and runs a fresh
/// `make()` after a backoff (growing while it keeps crashing, back to the
/// first delay after a run of [`STABLE`]: [`before_restart`]). Returns
/// when a run returns normally. Abort the returned task to stop it.
pub(crate) fn supervise<F, Fut>(
    what: String,
    backoff: Backoff,
    mut make: F,
) -> tokio::task::JoinHandle<()>
where
    F: FnMut() -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    tokio::spawn(async move {
        let mut attempt = 0;
        loop {
            let started = Instant::now();
            match CatchUnwind::new(make()).await {
                Ok(()) => return,
                Err(msg) => {
                    let why = format!("it crashed: {msg}");
                    before_restart(backoff, &what, &why, &mut attempt, started).await;
                }
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::sync::Arc;

    #[tokio::test(start_paused = true)]
    async fn a_crashing_task_is_restarted_until_it_returns() {
        let runs = Arc::new(AtomicU32::new(0));
        let r = runs.clone();
        let h = supervise("test task".into(), Backoff::default(), move || {
            let r = r.clone();
            async move {
                if r.fetch_add(1, Ordering::SeqCst) < 3 {
                    panic!("boom");
                }
            }
        });
        h.await.unwrap();
        assert_eq!(runs.load(Ordering::SeqCst), 4);
    }

    #[test]
    fn only_a_stable_run_resets_the_attempt() {
        assert_eq!(next_attempt(0, Duration::ZERO), 0);
        assert_eq!(next_attempt(7, Duration::ZERO), 7);
        assert_eq!(next_attempt(7, STABLE - Duration::from_millis(1)), 7);
        assert_eq!(next_attempt(7, STABLE), 0);
        assert_eq!(next_attempt(u32::MAX, STABLE * 100), 0);
    }

    /// The wait `before_restart` takes (in paused time, so exact) after a
    /// run of `ran_for`, with `attempt` restarts before; and the count after.
    async fn wait_after(attempt: u32, ran_for: Duration) -> (Duration, u32) {
        let started = Instant::now();
        tokio::time::advance(ran_for).await;
        let mut attempt = attempt;
        let before = Instant::now();
        before_restart(Backoff::default(), "test", "test", &mut attempt, started).await;
        (before.elapsed(), attempt)
    }

    #[tokio::test(start_paused = true)]
    async fn before_restart_restarts_at_once_after_a_stable_run_then_backs_off() {
        let b = Backoff::default();
        let capped = b.delay(u32::MAX, 0.0);
        // A crash loop: the wait stays at the cap, the count grows.
        let (wait, attempt) = wait_after(20, Duration::from_secs(1)).await;
        assert!(wait >= capped, "{wait:?}");
        assert_eq!(attempt, 21);
        // After a stable run: at once again, counted as the first.
        let (wait, attempt) = wait_after(20, STABLE).await;
        assert_eq!(wait, Duration::ZERO);
        assert_eq!(attempt, 1);
        // The first AT_ONCE restarts are made at once, then the backoff's
        // first delay.
        for k in 0..AT_ONCE {
            assert_eq!(wait_after(k, Duration::ZERO).await, (Duration::ZERO, k + 1));
        }
        let (wait, attempt) = wait_after(AT_ONCE, Duration::ZERO).await;
        assert!(
            wait >= b.delay(0, 0.0) && wait <= b.delay(0, 1.0),
            "{wait:?}"
        );
        assert_eq!(attempt, AT_ONCE + 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_long_stable_run_resets_the_backoff_of_supervise() {
        // Runs 0 to 7 crash at once, run 8 after a stable run, run 9 returns.
        let starts = Arc::new(parking_lot::Mutex::new(Vec::new()));
        let s = starts.clone();
        let h = supervise("test task".into(), Backoff::default(), move || {
            let s = s.clone();
            async move {
                let run = {
                    let mut starts = s.lock();
                    starts.push(Instant::now());
                    starts.len() - 1
                };
                match run {
                    0..=7 => panic!("boom"),
                    8 => {
                        tokio::time::sleep(STABLE).await;
                        panic!("boom after a while")
                    }
                    _ => {}
                }
            }
        });
        h.await.unwrap();
        let starts = starts.lock();
        assert_eq!(starts.len(), 10);
        let b = Backoff::default();
        // As cpg's supervisor, the first restarts are made at once; then
        // the crash loop backs off: the eighth restart waits delay(2).
        let n = AT_ONCE as usize;
        assert_eq!(starts[n], starts[0]);
        assert!(starts[n + 1] - starts[n] >= b.delay(0, 0.0));
        assert!(starts[8] - starts[7] >= b.delay(2, 0.0));
        // The crash after the stable run is restarted at once.
        assert_eq!(starts[9] - starts[8], STABLE);
    }

    #[tokio::test]
    async fn catch_unwind_gives_the_message() {
        let got = CatchUnwind::new(async { panic!("bad {}", 42) }).await;
        assert_eq!(got, Err("bad 42".to_string()));
        let ok = CatchUnwind::new(async { 7 }).await;
        assert_eq!(ok, Ok(7));
    }
}
