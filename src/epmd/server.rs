//! An EPMD-compatible server, run inside the node when no EPMD answers, so
//! that a Rust-only cluster (and the demo) needs nothing else. It serves
//! ALIVE2 (the entry lives as long as the registering connection),
//! PORT_PLEASE2 and NAMES, which is what `erl` and this crate use.
//!
//! It shares the process (and its file descriptors) with the distribution
//! listener, so it is guarded ([`EpmdOptions`]):
//! - it listens on loopback (127.0.0.1) unless told otherwise (a node adds
//!   the addresses its own host name resolves to, where other nodes look
//!   it up, never the wildcard address);
//! - a connection that has not sent a complete request within
//!   `request_timeout` (5 s) is closed; a connection that registered a
//!   node (ALIVE2) stays open as long as that node lives, as with real epmd;
//! - at most `max_connections` (256) connections are open at once, of any
//!   kind, so idle connections can never take the descriptors the
//!   distribution listener needs; one more closes the oldest connection
//!   that has not registered a node (a registration keeps its place), so a
//!   flood of idle connections keeps nobody out unless it opens them
//!   faster than a client's request takes.

use super::wire::{self, NodeEntry, Request};
use crate::admission::Entered;
use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// The longest node name (the part before `@`, in bytes) it registers, as
/// erl's epmd (`MAXSYMLEN`).
const MAX_NAME: usize = 255;

type Table = Arc<parking_lot::Mutex<HashMap<String, NodeEntry>>>;

/// How the embedded EPMD listens and what it puts up with.
#[derive(Debug, Clone)]
pub struct EpmdOptions {
    /// Address to bind: 127.0.0.1 by default (only nodes on this host can
    /// register or look up); `0.0.0.0` serves other hosts too.
    pub bind: IpAddr,
    /// More addresses to listen on with the same port, best effort (e.g.
    /// where the node's host name points: see [`name_addrs_of`]).
    pub also: Vec<IpAddr>,
    /// Port (4369 is EPMD's; 0 picks a free one).
    pub port: u16,
    /// Connections open at once, of any kind: 256 by default, fewer when
    /// the process may open few files ([`default_max_connections`]).
    pub max_connections: usize,
    /// How long a connection may take to send a complete request (5 s).
    pub request_timeout: Duration,
}

impl Default for EpmdOptions {
    fn default() -> Self {
        EpmdOptions {
            bind: IpAddr::V4(Ipv4Addr::LOCALHOST),
            also: Vec::new(),
            port: 4369,
            max_connections: default_max_connections(),
            request_timeout: Duration::from_secs(5),
        }
    }
}

/// 256, or an eighth of the process's open-file limit when that is lower
/// (at least 8): a flood of EPMD connections must never use up the file
/// descriptors the distribution listener and the peers' connections need
/// (under `ulimit -n 256`, 32).
pub fn default_max_connections() -> usize {
    let files = open_file_limit().unwrap_or(u64::MAX);
    (files / 8).clamp(8, 256) as usize
}

/// The soft limit on open files (`ulimit -n`), where the OS tells it.
fn open_file_limit() -> Option<u64> {
    #[cfg(unix)]
    {
        let mut l = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit only writes the struct it is given.
        let ok = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut l) } == 0;
        if ok && l.rlim_cur != libc::RLIM_INFINITY {
            #[allow(clippy::unnecessary_cast)] // rlim_t is not u64 everywhere
            return Some(l.rlim_cur as u64);
        }
    }
    None
}

/// The addresses other than 127.0.0.1 that `host` (a node name's host
/// part) resolves to. Nodes find a node's EPMD by the host in its name, so
/// the embedded EPMD of a node named `x@host` must listen there too: at
/// 127.0.1.1 where Debian-like systems map the host name, at the host's
/// own address where the name resolves to it (where the node's distribution
/// port is reachable anyway). Never the wildcard address.
pub async fn name_addrs_of(host: &str) -> Vec<IpAddr> {
    let mut v: Vec<IpAddr> = match tokio::net::lookup_host((host, 0)).await {
        Ok(addrs) => addrs
            .map(|a| a.ip())
            .filter(|ip| !ip.is_unspecified() && *ip != IpAddr::V4(Ipv4Addr::LOCALHOST))
            .collect(),
        Err(_) => Vec::new(),
    };
    v.sort();
    v.dedup();
    v
}

/// A running embedded EPMD; it stops (closing its connections) when
/// dropped.
#[derive(Debug)]
pub struct EpmdServer {
    tasks: Vec<tokio::task::JoinHandle<()>>,
    /// The port it listens on.
    pub port: u16,
    /// The address it listens on.
    pub addr: SocketAddr,
}

impl Drop for EpmdServer {
    fn drop(&mut self) {
        self.tasks.iter().for_each(|t| t.abort());
    }
}

impl EpmdServer {
    /// Stops it and waits until its ports are closed (dropping it stops it
    /// too, but the ports close a moment later, on the runtime).
    pub async fn stop(mut self) {
        let tasks = std::mem::take(&mut self.tasks);
        tasks.iter().for_each(|t| t.abort());
        for t in tasks {
            let _ = t.await;
        }
    }

    /// Binds `addr:port` (port 0 picks one) and serves until dropped, with
    /// the default limits of [`EpmdOptions`].
    pub async fn start(addr: &str, port: u16) -> std::io::Result<EpmdServer> {
        let bind = addr
            .parse()
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
        EpmdServer::start_with(EpmdOptions {
            bind,
            port,
            ..EpmdOptions::default()
        })
        .await
    }

    /// Binds and serves as `opts` says until dropped.
    pub async fn start_with(opts: EpmdOptions) -> std::io::Result<EpmdServer> {
        let listener = TcpListener::bind((opts.bind, opts.port)).await?;
        let addr = listener.local_addr()?;
        let port = addr.port();
        let mut listeners = vec![listener];
        for ip in opts.also.iter().filter(|ip| **ip != opts.bind) {
            match TcpListener::bind((*ip, port)).await {
                Ok(l) => listeners.push(l),
                // IPv6's loopback is asked for wherever the system has it.
                Err(e) if *ip == IpAddr::V6(std::net::Ipv6Addr::LOCALHOST) => {
                    tracing::debug!("embedded epmd: no IPv6 loopback ({e})")
                }
                Err(e) => tracing::warn!("embedded epmd: cannot listen on {ip}:{port} too: {e}"),
            }
        }
        let shared = Arc::new(Shared {
            table: Arc::default(),
            admission: crate::admission::Admission::default(),
            creation: AtomicU32::new(rand::random::<u32>() | 0x10),
            max_connections: opts.max_connections,
            timeout: opts.request_timeout,
            port,
        });
        let tasks = listeners
            .into_iter()
            .map(|l| tokio::spawn(accept_loop(l, shared.clone())))
            .collect();
        Ok(EpmdServer { tasks, port, addr })
    }
}

/// What the accept loops of one server share.
struct Shared {
    table: Table,
    admission: crate::admission::Admission,
    creation: AtomicU32,
    max_connections: usize,
    timeout: Duration,
    port: u16,
}

/// Accepts and serves until aborted; aborting it ends its connections.
async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    let mut conns = tokio::task::JoinSet::new();
    // One warning a second about the bound, saying how many were held back
    // (and once a flood is over, how many were not logged).
    let warnings = crate::util::FloodLog::new(1, Duration::from_secs(1), |held_back| {
        tracing::warn!(
            held_back,
            "embedded epmd: {held_back} more connections closed or refused were not logged (a flood, now over)"
        );
    });
    loop {
        while conns.try_join_next().is_some() {}
        let (sock, peer) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                tracing::warn!("embedded epmd accept: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let (slot, closed) = match shared.admission.enter(shared.max_connections) {
            Entered::Admitted {
                slot,
                closed,
                evicted,
            } => {
                if let Some(held_back) = evicted.then(|| warnings.event()).flatten() {
                    tracing::warn!(
                        held_back,
                        "embedded epmd: {} connections open, closed the oldest that registered no node",
                        shared.max_connections
                    );
                }
                (slot, closed)
            }
            Entered::Full => {
                if let Some(held_back) = warnings.event() {
                    tracing::warn!(
                        held_back,
                        "embedded epmd: {} nodes registered, refused {peer}",
                        shared.max_connections
                    );
                }
                drop(sock);
                continue;
            }
        };
        let creation = shared
            .creation
            .fetch_add(1, Ordering::Relaxed)
            .wrapping_add(1)
            .max(4);
        let (table, port, timeout) = (shared.table.clone(), shared.port, shared.timeout);
        conns.spawn(async move {
            tokio::select! {
                r = serve(sock, table, creation, port, timeout, &slot) => {
                    if let Err(e) = r {
                        tracing::debug!("embedded epmd: client {peer}: {e}");
                    }
                }
                _ = closed => tracing::debug!("embedded epmd: closed {peer} for a newer connection"),
            }
            drop(slot);
        });
    }
}

async fn serve(
    mut sock: TcpStream,
    table: Table,
    creation: u32,
    port: u16,
    timeout: Duration,
    slot: &crate::admission::Slot,
) -> Result<(), super::EpmdError> {
    let read_request = async {
        let mut buf = Vec::with_capacity(64);
        loop {
            let mut chunk = [0u8; 256];
            let n = sock.read(&mut chunk).await?;
            if n == 0 {
                return Ok(None);
            }
            buf.extend_from_slice(&chunk[..n]);
            if let Some((req, _)) = Request::decode(&buf)? {
                return Ok::<_, super::EpmdError>(Some(req));
            }
        }
    };
    let req = match tokio::time::timeout(timeout, read_request).await {
        Err(_) => return Err(super::EpmdError::Timeout),
        Ok(Ok(None)) => return Ok(()),
        Ok(Ok(Some(req))) => req,
        Ok(Err(e)) => return Err(e),
    };
    match req {
        Request::Alive2(entry) => {
            // A name erl's epmd refuses (empty, or over its MAXSYMLEN of
            // 255 bytes): refused too, as a taken name is. So is one
            // holding a control character, which no node name has: a
            // newline in it forged lines of the NAMES answer
            // (`name forged at port 1`).
            if entry.name.is_empty()
                || entry.name.len() > MAX_NAME
                || entry.name.chars().any(char::is_control)
            {
                sock.write_all(&wire::encode_alive2_resp(1, 0)).await?;
                return Ok(());
            }
            // From here the entry goes with this connection, whatever ends
            // it: a client gone before our answer (a failed write), a read
            // error, the server stopped (the task aborted).
            let Some(_entry) = Registration::insert(&table, entry) else {
                sock.write_all(&wire::encode_alive2_resp(1, 0)).await?;
                return Ok(());
            };
            // A node's registration is never closed for a newer connection.
            slot.settle();
            sock.write_all(&wire::encode_alive2_resp(0, creation))
                .await?;
            let mut sink = [0u8; 64];
            while let Ok(n) = sock.read(&mut sink).await {
                if n == 0 {
                    break;
                }
            }
        }
        Request::PortPlease2(name) => {
            let e = table.lock().get(&name).cloned();
            let out = wire::encode_port2_resp(e.as_ref());
            write_within(&mut sock, &out, timeout).await?;
        }
        Request::Names => {
            let names: Vec<(String, u16)> = table
                .lock()
                .values()
                .map(|e| (e.name.clone(), e.port))
                .collect();
            let out = wire::encode_names_resp(port, &names);
            write_within(&mut sock, &out, timeout).await?;
        }
    }
    Ok(())
}

/// A name registered by ALIVE2: removed from the table when dropped, so the
/// entry lives exactly as long as the handler of its connection, whichever
/// way that handler ends.
struct Registration {
    table: Table,
    name: String,
}

impl Registration {
    /// Registers `entry`; `None` when its name is taken.
    fn insert(table: &Table, entry: NodeEntry) -> Option<Registration> {
        let name = entry.name.clone();
        match table.lock().entry(name.clone()) {
            Entry::Occupied(_) => return None,
            Entry::Vacant(v) => v.insert(entry),
        };
        tracing::debug!("embedded epmd: registered {name}");
        Some(Registration {
            table: table.clone(),
            name,
        })
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.table.lock().remove(&self.name);
        tracing::debug!("embedded epmd: unregistered {}", self.name);
    }
}

/// Writes an answer to a client that must take it within `timeout`.
async fn write_within(
    sock: &mut TcpStream,
    out: &[u8],
    timeout: Duration,
) -> Result<(), super::EpmdError> {
    tokio::time::timeout(timeout, sock.write_all(out))
        .await
        .map_err(|_| super::EpmdError::Timeout)??;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn register_lookup_unregister() {
        let srv = EpmdServer::start("127.0.0.1", 0).await.unwrap();
        let reg = crate::epmd::register("127.0.0.1", srv.port, NodeEntry::hidden("t1", 5555))
            .await
            .unwrap();
        assert!(reg.creation >= 4);
        // A second registration of the same name is refused.
        assert!(matches!(
            crate::epmd::register("127.0.0.1", srv.port, NodeEntry::hidden("t1", 1)).await,
            Err(crate::epmd::EpmdError::Refused(_))
        ));
        let e = crate::epmd::port_please("127.0.0.1", srv.port, "t1")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(e.port, 5555);
        assert_eq!(
            crate::epmd::names("127.0.0.1", srv.port).await.unwrap(),
            vec![("t1".to_string(), 5555)]
        );
        drop(reg);
        for _ in 0..100 {
            if crate::epmd::port_please("127.0.0.1", srv.port, "t1")
                .await
                .unwrap()
                .is_none()
            {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        panic!("entry not removed after the registering connection closed");
    }

    /// Names erl's epmd refuses (empty, over 255 bytes) are refused, and
    /// names holding a control character (which would forge lines of the
    /// NAMES answer); 255 bytes are taken.
    #[tokio::test]
    async fn names_empty_or_over_255_bytes_are_refused() {
        let srv = small(16, Duration::from_secs(5)).await;
        let forged = "evil at port 1\nname forged".to_string();
        for name in [
            String::new(),
            "n".repeat(256),
            "n".repeat(300),
            forged,
            "a\u{7f}".into(),
        ] {
            let r = crate::epmd::register("127.0.0.1", srv.port, NodeEntry::hidden(&name, 1)).await;
            assert!(
                matches!(r, Err(crate::epmd::EpmdError::Refused(1))),
                "{} bytes: {r:?}",
                name.len()
            );
        }
        let long = "n".repeat(255);
        let _reg = crate::epmd::register("127.0.0.1", srv.port, NodeEntry::hidden(&long, 1))
            .await
            .expect("255 bytes");
        assert_eq!(
            crate::epmd::names("127.0.0.1", srv.port).await.unwrap(),
            vec![(long, 1)]
        );
    }

    /// A client that sends ALIVE2 and resets its connection at once (SO_LINGER
    /// 0): our answer fails to go out, and the entry must go all the same,
    /// or the name stays taken for the server's life (2,647 of 3,000 such
    /// clients left theirs behind).
    #[tokio::test]
    async fn a_registration_reset_at_once_goes_with_its_connection() {
        let srv = small(16, Duration::from_secs(5)).await;
        let req = Request::Alive2(NodeEntry::hidden("reset", 4242)).encode();
        for _ in 0..50 {
            let mut s = TcpStream::connect(("127.0.0.1", srv.port)).await.unwrap();
            s.set_zero_linger().unwrap();
            s.write_all(&req).await.unwrap();
            drop(s);
        }
        // Each reset connection is served and ended in turn; then the name
        // is free again and nothing is listed.
        let mut again = None;
        for _ in 0..100 {
            match crate::epmd::register("127.0.0.1", srv.port, NodeEntry::hidden("reset", 1)).await
            {
                Ok(reg) => {
                    again = Some(reg);
                    break;
                }
                Err(crate::epmd::EpmdError::Refused(_)) => {
                    tokio::time::sleep(Duration::from_millis(20)).await
                }
                Err(e) => panic!("{e}"),
            }
        }
        assert!(
            again.is_some(),
            "the name stayed taken after its connections were reset"
        );
        assert_eq!(
            crate::epmd::names("127.0.0.1", srv.port).await.unwrap(),
            vec![("reset".to_string(), 1)]
        );
    }

    async fn small(max_connections: usize, request_timeout: Duration) -> EpmdServer {
        EpmdServer::start_with(EpmdOptions {
            port: 0,
            max_connections,
            request_timeout,
            ..EpmdOptions::default()
        })
        .await
        .unwrap()
    }

    /// True when the server closes `s` within `within`.
    async fn closed_within(s: &mut TcpStream, within: Duration) -> bool {
        let mut b = [0u8; 16];
        matches!(
            tokio::time::timeout(within, s.read(&mut b)).await,
            Ok(Ok(0) | Err(_))
        )
    }

    #[tokio::test]
    async fn loopback_by_default() {
        assert!(EpmdOptions::default().bind.is_loopback());
        let srv = small(4, Duration::from_secs(5)).await;
        assert!(srv.addr.ip().is_loopback());
        assert!(name_addrs_of("localhost")
            .await
            .iter()
            .all(|ip| ip.is_loopback()));
        // Another loopback address, as some systems give the host name.
        let srv = EpmdServer::start_with(EpmdOptions {
            port: 0,
            also: vec!["127.0.1.1".parse().unwrap()],
            ..EpmdOptions::default()
        })
        .await
        .unwrap();
        let _reg = crate::epmd::register("127.0.0.1", srv.port, NodeEntry::hidden("x", 9))
            .await
            .unwrap();
        let e = crate::epmd::port_please("127.0.1.1", srv.port, "x")
            .await
            .unwrap();
        assert_eq!(e.map(|e| e.port), Some(9));
    }

    #[tokio::test]
    async fn dropping_the_server_closes_its_connections() {
        let srv = small(4, Duration::from_secs(30)).await;
        let mut idle = TcpStream::connect(("127.0.0.1", srv.port)).await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        drop(srv);
        assert!(closed_within(&mut idle, Duration::from_secs(2)).await);
    }

    #[tokio::test]
    async fn idle_connections_closed_registrations_kept() {
        let srv = small(16, Duration::from_millis(300)).await;
        let reg = crate::epmd::register("127.0.0.1", srv.port, NodeEntry::hidden("kept", 7))
            .await
            .unwrap();
        // Silent, and half a request: both closed after the timeout.
        let mut silent = TcpStream::connect(("127.0.0.1", srv.port)).await.unwrap();
        let mut partial = TcpStream::connect(("127.0.0.1", srv.port)).await.unwrap();
        // A 5-byte request of which only the NAMES_REQ tag arrives.
        partial.write_all(&[0, 5, 110]).await.unwrap();
        assert!(!closed_within(&mut silent, Duration::from_millis(100)).await);
        assert!(closed_within(&mut silent, Duration::from_secs(2)).await);
        assert!(closed_within(&mut partial, Duration::from_secs(2)).await);
        // The registration outlived the timeout many times over.
        tokio::time::sleep(Duration::from_millis(700)).await;
        let e = crate::epmd::port_please("127.0.0.1", srv.port, "kept")
            .await
            .unwrap();
        assert_eq!(e.map(|e| e.port), Some(7));
        drop(reg);
    }

    #[tokio::test]
    async fn connections_bounded_registration_works_during_a_flood() {
        let max = 8;
        let srv = small(max, Duration::from_secs(30)).await;
        let reg = crate::epmd::register("127.0.0.1", srv.port, NodeEntry::hidden("a", 1))
            .await
            .unwrap();
        // The registration holds one place; a flood takes the others.
        let mut flood = Vec::new();
        for _ in 0..max - 1 {
            flood.push(TcpStream::connect(("127.0.0.1", srv.port)).await.unwrap());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        // One more closes the oldest of the flood at once, long before the
        // timeout; the registration keeps its place.
        let extra = TcpStream::connect(("127.0.0.1", srv.port)).await.unwrap();
        assert!(closed_within(&mut flood[0], Duration::from_millis(500)).await);
        assert!(!closed_within(&mut flood[1], Duration::from_millis(100)).await);
        // A registration and a lookup get through the held flood.
        let reg_b = crate::epmd::register("127.0.0.1", srv.port, NodeEntry::hidden("b", 2))
            .await
            .unwrap();
        let mut names = crate::epmd::names("127.0.0.1", srv.port).await.unwrap();
        names.sort();
        assert_eq!(names, vec![("a".to_string(), 1), ("b".to_string(), 2)]);
        drop((reg, reg_b, extra, flood));
    }

    /// With every place held by a registration, one more is refused.
    #[tokio::test]
    async fn registrations_are_never_closed_for_newer_connections() {
        let srv = small(2, Duration::from_secs(30)).await;
        let a = crate::epmd::register("127.0.0.1", srv.port, NodeEntry::hidden("a", 1))
            .await
            .unwrap();
        let b = crate::epmd::register("127.0.0.1", srv.port, NodeEntry::hidden("b", 2))
            .await
            .unwrap();
        let mut extra = TcpStream::connect(("127.0.0.1", srv.port)).await.unwrap();
        assert!(closed_within(&mut extra, Duration::from_secs(2)).await);
        drop(b);
        tokio::time::sleep(Duration::from_millis(100)).await;
        let names = crate::epmd::names("127.0.0.1", srv.port).await.unwrap();
        assert_eq!(names, vec![("a".to_string(), 1)]);
        drop(a);
    }
}
