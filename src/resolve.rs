//! Host names to addresses, for every connection the node makes (its EPMD
//! lookups and registrations, its dials), at most [`MAX_LOOKUPS`] at once.
//!
//! A name is looked up by the system's resolver (`getaddrinfo`), which
//! blocks a thread of tokio's blocking pool until the resolver answers or
//! gives up (10 s with glibc's defaults and a DNS server that does not
//! answer). A time-out around the lookup does not stop that thread. A peer
//! that named thousands of made-up hosts (cpg joins of their pids) had
//! the node hold 512 threads in lookups, and its own dials of its seeds
//! wait behind them. Here a lookup holds one of [`MAX_LOOKUPS`] places
//! until its thread is done, whoever still waits for it; the others wait
//! for a place (within their caller's time-out). As BEAM's `inet_gethost`
//! works through its lookups with a few workers.
//!
//! An address (`127.0.0.1`, `::1`) is not looked up. A name looked up is
//! kept, so that the hosts of the cluster's own nodes, looked up again at
//! every redial, do not wait for places that lookups of made-up names
//! hold: for [`KEEP`], and after that it is still given at once while a
//! lookup in the background brings it up to date (a redial once a minute
//! waited behind the made-up names' lookups). At most [`MAX_KEPT`] names
//! are kept; past it a new name is not kept, and the kept ones stay.
//! A connection to a name's kept addresses that fails, or is given up,
//! forgets them ([`connect`]): a node that moved (a pod restarted with a
//! new address) was dialled at its old address for a minute and more; it
//! is now found at the next attempt, as BEAM finds it.

use parking_lot::Mutex;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;

/// Most lookups under way at once.
pub const MAX_LOOKUPS: usize = 16;

/// How long a name's addresses are kept.
pub const KEEP: Duration = Duration::from_secs(60);

/// Most names kept (past it, the kept ones are dropped and kept anew).
pub const MAX_KEPT: usize = 1024;

struct Resolver {
    places: Arc<Semaphore>,
    kept: Mutex<HashMap<String, (Instant, Vec<IpAddr>)>>,
}

fn resolver() -> &'static Resolver {
    static R: OnceLock<Resolver> = OnceLock::new();
    R.get_or_init(|| Resolver {
        places: Arc::new(Semaphore::new(MAX_LOOKUPS)),
        kept: Mutex::new(HashMap::new()),
    })
}

/// The addresses of `host` at `port`: `host` itself when it is an address,
/// else what the system's resolver gives (see the module documentation).
pub async fn resolve(host: &str, port: u16) -> std::io::Result<Vec<SocketAddr>> {
    let at = |ips: &[IpAddr]| ips.iter().map(|&ip| SocketAddr::new(ip, port)).collect();
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(vec![SocketAddr::new(ip, port)]);
    }
    let r = resolver();
    // (Under one lock: an expired entry is renewed by the one asker that
    // finds it expired, so one lookup starts, not one per asker.)
    let kept = r.kept.lock().get_mut(host).map(|(when, ips)| {
        let expired = when.elapsed() >= KEEP;
        if expired {
            *when = Instant::now();
        }
        (expired, ips.clone())
    });
    if let Some((expired, ips)) = kept {
        if expired {
            // Given as it is; brought up to date meanwhile.
            let name = host.to_string();
            tokio::spawn(async move {
                let _ = look_up(&name).await;
            });
        }
        return Ok(at(&ips));
    }
    let ips = look_up(host).await?;
    Ok(at(&ips))
}

/// A TCP connection to `host:port`, trying each of its addresses in turn.
/// Where it fails, or is given up (its caller's time-out), a name's kept
/// addresses are forgotten, so that the next connection looks the name up
/// afresh: a node that moved (a container or pod restarted under its old
/// name with a new address) is dialled where it now is at the next
/// attempt, as BEAM, which looks a name up at every dial, finds it.
pub async fn connect(host: &str, port: u16) -> std::io::Result<tokio::net::TcpStream> {
    /// Forgets the name unless disarmed (a connection made).
    struct ForgetUnlessMade<'a>(Option<&'a str>);
    impl Drop for ForgetUnlessMade<'_> {
        fn drop(&mut self) {
            if let Some(host) = self.0 {
                resolver().kept.lock().remove(host);
            }
        }
    }
    let addrs = resolve(host, port).await?;
    let mut guard = ForgetUnlessMade(host.parse::<IpAddr>().is_err().then_some(host));
    let s = tokio::net::TcpStream::connect(&*addrs).await?;
    guard.0 = None;
    Ok(s)
}

/// Looks `host` up in one of the places, and keeps the answer.
async fn look_up(host: &str) -> std::io::Result<Vec<IpAddr>> {
    let r = resolver();
    let place = r
        .places
        .clone()
        .acquire_owned()
        .await
        .map_err(|_| std::io::Error::other("the resolver is closed"))?;
    let name = host.to_string();
    let ips = tokio::task::spawn_blocking(move || {
        // (The place goes when the lookup is done, not when its caller
        // stops waiting.)
        let _place = place;
        (name.as_str(), 0)
            .to_socket_addrs()
            .map(|a| a.map(|a| a.ip()).collect::<Vec<IpAddr>>())
    })
    .await
    .map_err(std::io::Error::other)??;
    let mut kept = r.kept.lock();
    if kept.len() < MAX_KEPT || kept.contains_key(host) {
        kept.insert(host.to_string(), (Instant::now(), ips.clone()));
    }
    Ok(ips)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn addresses_are_not_looked_up_and_names_are() {
        let got = resolve("127.0.0.1", 4369).await.unwrap();
        assert_eq!(got, vec!["127.0.0.1:4369".parse().unwrap()]);
        let got = resolve("::1", 1).await.unwrap();
        assert_eq!(got, vec!["[::1]:1".parse().unwrap()]);
        let got = resolve("localhost", 7).await.unwrap();
        assert!(
            got.iter().all(|a| a.port() == 7 && a.ip().is_loopback()),
            "{got:?}"
        );
        // kept, and given at another port
        let again = resolve("localhost", 8).await.unwrap();
        assert_eq!(again.len(), got.len());
        assert!(again.iter().all(|a| a.port() == 8));
    }

    /// Lookups wait for a place: with every place held, one waits (and its
    /// caller's time-out ends it), and goes once a place is free; a name
    /// already kept does not wait.
    #[tokio::test]
    async fn lookups_past_the_bound_wait_for_a_place() {
        resolve("localhost", 1).await.unwrap();
        let r = resolver();
        let held = r
            .places
            .clone()
            .acquire_many_owned(MAX_LOOKUPS as u32)
            .await
            .unwrap();
        let waiting =
            tokio::time::timeout(Duration::from_millis(200), resolve("not-kept.invalid", 1)).await;
        assert!(waiting.is_err(), "{waiting:?}");
        assert!(resolve("localhost", 2).await.is_ok());
        // Kept past `KEEP`: still given at once (brought up to date once
        // a place is free).
        let long_ago = Instant::now().checked_sub(2 * KEEP);
        if let (Some(e), Some(t)) = (r.kept.lock().get_mut("localhost"), long_ago) {
            e.0 = t;
        }
        let stale = tokio::time::timeout(Duration::from_millis(200), resolve("localhost", 3)).await;
        assert!(matches!(stale, Ok(Ok(ref a)) if !a.is_empty()), "{stale:?}");
        drop(held);
        // `.invalid` never resolves (RFC 6761): an error, not a wait.
        let done = tokio::time::timeout(Duration::from_secs(30), resolve("x.invalid", 1)).await;
        assert!(matches!(done, Ok(Err(_))), "{done:?}");
    }

    /// A connection that fails forgets the name's kept addresses (a node
    /// that moved is looked up afresh); one made keeps them.
    #[tokio::test]
    async fn a_failed_connection_forgets_the_name() {
        // This host's name (the other tests use `localhost`, and wait on
        // its being kept).
        let host = crate::config::local_host(false);
        let kept = || resolver().kept.lock().contains_key(&host);
        let l = tokio::net::TcpListener::bind("0.0.0.0:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        connect(&host, port).await.unwrap();
        assert!(kept());
        drop(l);
        // Nothing listens on `port` now.
        assert!(connect(&host, port).await.is_err());
        assert!(!kept());
    }
}
