//! Peers: dialling (EPMD lookup, handshake), accepting, settling a
//! simultaneous connect, admission, and dropping or removing a peer. Also the
//! EPMD registration that lets peers find us. Changes with the distribution
//! protocol's connection set-up.

use super::{supervise, DownReason, Inner, NodeEvent, StartError};
use crate::admission::Entered;
use crate::config::{NodeConfig, NodeName, PortRange};
use crate::dist::connection::{
    self, ConnConfig, ConnectionError, Direction, Outgoing, PeerLink, Router,
};
use crate::dist::flags;
use crate::dist::handshake::{HandshakeError, Local, PeerInfo, Status};
use crate::dist::monitors::MonitorBatch;
use crate::epmd::server::{EpmdOptions, EpmdServer};
use crate::epmd::{self, NodeEntry};
use crate::process::{SendError, Signal};
use erl_dist::message::Message;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};

/// A connected socket handed from an incoming handshake to our own dial.
pub(super) type Adopted = (TcpStream, PeerInfo);

pub(super) struct Peer {
    pub(super) tx: mpsc::UnboundedSender<Outgoing>,
    pub(super) link: Arc<PeerLink>,
    pub(super) id: u64,
    /// The peer's creation once the connection is up; `None` while dialling.
    pub(super) up_creation: Option<u32>,
    /// Whether the peer is hidden (did not set DFLAG_PUBLISHED), once up.
    pub(super) hidden: bool,
    /// While our own dial is pending: where an incoming connection from the
    /// same node goes when it wins a simultaneous connect, so the messages
    /// already queued for the peer go out on it.
    pub(super) adopt: Option<oneshot::Sender<Adopted>>,
}

impl Drop for Peer {
    /// A peer gone from the node's table (its connection ended, was
    /// dropped or replaced, or the node shuts down): nothing takes its
    /// queue for us any more, so senders waiting on it
    /// ([`Process::send_paced`](crate::process::Process::send_paced)) go on.
    fn drop(&mut self) {
        self.link.end();
    }
}

/// Binds the distribution listener on the first free port of `ports`
/// (trying each in turn, as `inet_dist_listen_min/max` do), at `addr`
/// (as `inet_dist_use_interface`) or, without one, every address.
pub(super) async fn listen(
    ports: PortRange,
    addr: Option<std::net::IpAddr>,
) -> Result<TcpListener, StartError> {
    let bind = |port| match addr {
        Some(ip) => bind_at(ip, port),
        None => bind_any(port),
    };
    if ports.is_any() {
        return bind(0).map_err(StartError::Listen);
    }
    for port in ports.min..=ports.max {
        match bind(port) {
            Ok(l) => return Ok(l),
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => continue,
            Err(e) => return Err(StartError::Listen(e)),
        }
    }
    Err(StartError::NoFreePort(ports))
}

/// A listener on `port` of every address, IPv4 and IPv6 alike: one
/// dual-stack socket on `[::]` (`IPV6_V6ONLY` off, whatever the system's
/// `bindv6only`), so that both `erl -proto_dist inet_tcp` nodes (the
/// default) and `inet6_tcp` ones (IPv6 clusters, e.g. Fly.io's private
/// network) can connect to us; BEAM listens on one family, as its
/// `-proto_dist` says, and a node of the other family cannot reach it.
/// Where the system has no IPv6, `0.0.0.0` alone.
fn bind_any(port: u16) -> std::io::Result<TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
    let v4_only = || bind_at(Ipv4Addr::UNSPECIFIED.into(), port);
    let dual = || -> std::io::Result<Socket> {
        let s = Socket::new(Domain::IPV6, Type::STREAM, Some(Protocol::TCP))?;
        s.set_only_v6(false)?;
        Ok(s)
    };
    // No IPv6 in this kernel (or it is turned off): IPv4 only.
    let Ok(sock) = dual() else { return v4_only() };
    // As std's and tokio's listeners (and BEAM's): a port whose last
    // connections are in TIME_WAIT can be listened on again at once.
    #[cfg(unix)]
    sock.set_reuse_address(true)?;
    sock.set_nonblocking(true)?;
    match sock.bind(&SocketAddr::from((Ipv6Addr::UNSPECIFIED, port)).into()) {
        // IPv6 sockets exist but no address can be bound (IPv6 turned off
        // on every interface, `disable_ipv6`): IPv4 only.
        Err(e) if e.kind() == std::io::ErrorKind::AddrNotAvailable => return v4_only(),
        r => r?,
    }
    sock.listen(1024)?;
    TcpListener::from_std(sock.into())
}

/// A listener on `ip:port` alone.
fn bind_at(ip: std::net::IpAddr, port: u16) -> std::io::Result<TcpListener> {
    let l = std::net::TcpListener::bind((ip, port))?;
    l.set_nonblocking(true)?;
    TcpListener::from_std(l)
}

/// A running connection, counted in `Inner::live_conns` for as long as it
/// lives.
struct LiveConn(Arc<Inner>);

impl LiveConn {
    fn new(inner: &Arc<Inner>) -> LiveConn {
        inner.live_conns.fetch_add(1, Ordering::AcqRel);
        LiveConn(inner.clone())
    }
}

impl Drop for LiveConn {
    fn drop(&mut self) {
        if self.0.live_conns.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.conn_ended.notify_waiters();
        }
    }
}

/// Where the node registers: EPMD on this host, as `erl` does.
pub(super) const EPMD_HOST: &str = "127.0.0.1";

/// Registers a starting node with the EPMD on `config.epmd_port`. When none
/// answers, runs `epmd -daemon` if the config says so, else (or where it
/// cannot run) starts an embedded one if the config allows (and registers
/// with it), or starts unregistered if the config does not require EPMD.
pub(super) async fn register_first(
    config: &NodeConfig,
    entry: &NodeEntry,
) -> Result<(Option<epmd::Registration>, Option<EpmdServer>), StartError> {
    if let Some(p) = config.static_port {
        tracing::debug!("EPMD-less (every node at port {p}): not registering with EPMD");
        return Ok((None, None));
    }
    let port = config.epmd_port;
    let first = match epmd::register(EPMD_HOST, port, entry.clone()).await {
        Err(epmd::EpmdError::Io(_)) if config.epmd_daemon && epmd::start_daemon(port).await => {
            epmd::register(EPMD_HOST, port, entry.clone()).await
        }
        r => r,
    };
    match first {
        Ok(r) => Ok((Some(r), None)),
        Err(epmd::EpmdError::Io(e)) if config.embedded_epmd => {
            tracing::info!(
                "no EPMD answers on port {port} ({e}); starting an embedded EPMD server"
            );
            let server = match start_embedded_epmd(config).await {
                Ok(s) => Some(s),
                // Another node started at the same moment took the port
                // first: register with its EPMD.
                Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => None,
                Err(e) => return Err(StartError::Epmd(e.into())),
            };
            let r = epmd::register(EPMD_HOST, port, entry.clone()).await?;
            Ok((Some(r), server))
        }
        Err(epmd::EpmdError::Io(e)) if !config.epmd_required => {
            tracing::debug!("no EPMD answers on port {port} ({e}); starting unregistered");
            Ok((None, None))
        }
        Err(e) => Err(e.into()),
    }
}

/// An embedded EPMD on `config.epmd_port`, listening on loopback (IPv4 and,
/// where the system has it, IPv6's `::1`, where `erl -proto_dist
/// inet6_tcp` nodes of this host register and look up) and where the
/// node's host name points (127.0.1.1 on some systems): where nodes look
/// us up. Not 0.0.0.0.
async fn start_embedded_epmd(config: &NodeConfig) -> std::io::Result<EpmdServer> {
    let mut also = epmd::server::name_addrs_of(config.name.host()).await;
    let v6_loopback = std::net::IpAddr::V6(std::net::Ipv6Addr::LOCALHOST);
    if !also.contains(&v6_loopback) {
        also.push(v6_loopback);
    }
    EpmdServer::start_with(EpmdOptions {
        port: config.epmd_port,
        also,
        ..Default::default()
    })
    .await
}

/// Holds the EPMD registration for the node's life (`reg`, or a new one
/// when started without). When EPMD goes away (stopped, restarted) it
/// forgets the node, so peers could no longer find it: register again, with
/// backoff. Where no EPMD answers any more and the config allows an
/// embedded one, start it, as at start: a node that registered with an EPMD
/// another process ran (a `cpg-node` that exited, a stopped `epmd`) stays
/// findable. The creation the new EPMD hands out is not used: pids already
/// given out keep theirs.
pub(super) async fn keep_registered(
    inner: Weak<Inner>,
    entry: NodeEntry,
    reg: Option<epmd::Registration>,
) {
    let Some((node, config)) = inner.upgrade().map(|i| (i.name.clone(), i.config.clone())) else {
        return;
    };
    if config.static_port.is_some() {
        // EPMD-less: nothing to hold.
        return;
    }
    let (port, backoff) = (config.epmd_port, config.backoff);
    // A node that may run without EPMD says little about not finding one.
    let quiet = !config.epmd_required && !config.embedded_epmd;
    let mut reg = reg;
    loop {
        if let Some(r) = reg.as_mut() {
            r.closed().await;
            tracing::warn!(%node, "lost the connection to EPMD on port {port}; registering again");
        }
        let mut attempt = 0;
        reg = Some(loop {
            tokio::time::sleep(backoff.random_delay(attempt)).await;
            match epmd::register(EPMD_HOST, port, entry.clone()).await {
                Ok(r) => {
                    tracing::info!(%node, "registered with EPMD on port {port}");
                    break r;
                }
                Err(epmd::EpmdError::Io(_))
                    if config.epmd_daemon && epmd::start_daemon(port).await =>
                {
                    // Nothing listened there: an `epmd -daemon` now does
                    // (ours, or one another node started meanwhile), with
                    // which the next attempt registers (backing off all
                    // the same, should it keep going away).
                    attempt = attempt.saturating_add(1);
                }
                Err(epmd::EpmdError::Io(e)) if config.embedded_epmd => {
                    // Nothing listens there: take the port. Another node
                    // may take it first; then we register with its EPMD.
                    match start_embedded_epmd(&config).await {
                        Ok(s) => {
                            tracing::warn!(
                                %node,
                                "no EPMD answers on port {port} ({e}); started an embedded EPMD server"
                            );
                            let Some(i) = inner.upgrade() else { return };
                            *i.epmd_server.lock() = Some(s);
                            drop(i);
                            match epmd::register(EPMD_HOST, port, entry.clone()).await {
                                Ok(r) => {
                                    tracing::info!(%node, "registered with EPMD on port {port}");
                                    break r;
                                }
                                Err(e) => tracing::warn!(
                                    %node,
                                    "cannot register with our embedded EPMD: {e}; retrying"
                                ),
                            }
                        }
                        Err(e2) => {
                            tracing::debug!(%node, "cannot start an embedded EPMD on port {port}: {e2}");
                        }
                    }
                    attempt = attempt.saturating_add(1);
                }
                Err(e) => {
                    if attempt == 0 && !quiet {
                        tracing::warn!(%node, "cannot register with EPMD yet: {e}; retrying");
                    } else {
                        tracing::debug!(%node, "cannot register with EPMD yet: {e}; retrying");
                    }
                    attempt = attempt.saturating_add(1);
                }
            }
        });
    }
}

/// A peer's queue past which a send to it also checks every peer's queue
/// together against [`NodeConfig::max_total_queue`](crate::config::NodeConfig::max_total_queue).
const TOTAL_CHECKED_FROM: usize = 16 << 20;

/// Accepts distribution connections. At most [`max_handshakes`] of them
/// handshake at once, so that a flood of connections that never handshake
/// (each may take up to the handshake timeout) cannot use up the file
/// descriptors the connected peers, our own dials and the EPMD
/// registration need. One more closes the oldest of them, not the new one:
/// a flood keeps a peer out only by opening connections faster than the
/// peer's handshake takes (a few milliseconds), where refusing the new one
/// kept every peer out for as long as the flood was held. BEAM has no such
/// bound and answers under the same flood.
pub(super) async fn accept_loop(inner: Weak<Inner>, listener: Arc<TcpListener>) {
    let handshaking = crate::admission::Admission::default();
    // One warning a second about the bound, saying how many were held back
    // (and once a flood is over, how many were not logged).
    let warnings = crate::util::FloodLog::new(1, std::time::Duration::from_secs(1), |held_back| {
        tracing::warn!(
            held_back,
            "{held_back} more connections closed while handshaking were not logged (a flood, now over)"
        );
    });
    // Refused handshakes (a wrong cookie, a name of the other kind, ...):
    // BEAM logs each; here ten a second at most, then a count, so that one
    // client without the cookie cannot write thousands of lines a second.
    let refusals = crate::util::FloodLog::new(10, std::time::Duration::from_secs(1), |held_back| {
        tracing::warn!(
            held_back,
            "{held_back} more refused incoming connections were not logged (a flood, now over)"
        );
    });
    loop {
        let (sock, addr) = match listener.accept().await {
            // An IPv4 peer on the dual-stack listener comes as
            // `::ffff:a.b.c.d`: logged as a.b.c.d.
            Ok((s, a)) => (
                s,
                std::net::SocketAddr::new(a.ip().to_canonical(), a.port()),
            ),
            Err(e) => {
                tracing::warn!("accept: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let (slot, closed, evicted) = match handshaking.enter(max_handshakes()) {
            Entered::Admitted {
                slot,
                closed,
                evicted,
            } => (slot, closed, evicted),
            // (nothing here settles a place)
            Entered::Full => continue,
        };
        if let Some(held_back) = evicted.then(|| warnings.event()).flatten() {
            tracing::warn!(
                %addr,
                held_back,
                "{} connections handshaking at once: closed the oldest",
                max_handshakes()
            );
        }
        let Some(i) = inner.upgrade() else { return };
        let refusals = refusals.clone();
        tokio::spawn(async move {
            i.incoming_connection(sock, addr, slot, closed, refusals)
                .await
        });
    }
}

/// Most incoming connections handshaking at once: as many as the embedded
/// EPMD's connections (256, fewer under a low open-file limit).
pub(super) fn max_handshakes() -> usize {
    epmd::server::default_max_connections()
}

/// Most dials no one asked for ([`Dial::Unasked`]) under way at once: as
/// many as [`max_handshakes`]. A cluster's own traffic never comes near
/// it (dials of seeds and discovered nodes are asked for, and are not
/// counted).
pub(super) fn max_unasked_dials() -> usize {
    max_handshakes()
}

/// Why [`Inner::peer_tx`] may dial.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Dial {
    /// [`Node::connect`](super::Node::connect): the user, `--connect`,
    /// the cluster keeper. Never refused for the number of dials.
    Asked,
    /// A send, monitor, link or reply to a node not connected. Refused
    /// (`NoConnection`, so a monitor fires `noconnection` at once, as
    /// for a dial that failed) while [`max_unasked_dials`] are under way.
    Unasked,
}

/// An unasked dial counted in [`Inner`]'s `unasked_dials` until its
/// set-up is over (or its task ends).
struct UnaskedDial(Arc<Inner>);

impl Drop for UnaskedDial {
    fn drop(&mut self) {
        self.0.unasked_dials.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Inner {
    pub(super) fn local(&self) -> Local {
        Local {
            name: self.config.name.clone(),
            creation: self.creation,
            flags: flags::OFFERED,
            cookie: self.config.cookie.clone(),
        }
    }

    pub(super) fn conn_config(&self) -> ConnConfig {
        ConnConfig {
            ticktime: self.config.net_ticktime,
            max_frame: self.config.max_frame,
            max_term_memory: self.config.max_term_memory,
            fragment_size: self.config.fragment_size,
            read_hold: self.config.read_hold,
        }
    }

    /// The outgoing queue to `node`, dialling it if needed (see [`Dial`]).
    pub(super) fn peer_tx(
        &self,
        node: &str,
        why: Dial,
    ) -> Result<(mpsc::UnboundedSender<Outgoing>, Arc<PeerLink>), SendError> {
        if let Some(p) = self.peers.read().get(node) {
            return Ok((p.tx.clone(), p.link.clone()));
        }
        if node == self.name {
            // Never dialled: it would be a connection to ourselves (BEAM's
            // `net_kernel` has none either; local sends never come here).
            return Err(SendError::NoConnection(node.into()));
        }
        let mut peers = self.peers.write();
        // (Under the lock `shutdown` empties the peers under, after it
        // marked the node stopping: no dial starts after that.)
        if self.stopping.load(Ordering::Acquire) {
            return Err(SendError::NodeStopped);
        }
        // Looked up again: another sender may have started the dial.
        if let Some(p) = peers.get(node) {
            return Ok((p.tx.clone(), p.link.clone()));
        }
        let target = NodeName::parse(node).map_err(|_| SendError::NoConnection(node.into()))?;
        // (Counted under the peers' write lock: no two dials pass the
        // bound together.)
        let unasked = match why {
            Dial::Asked => None,
            Dial::Unasked => {
                let max = max_unasked_dials();
                if self.unasked_dials.load(Ordering::Acquire) >= max {
                    if let Some(held_back) = self.dial_refusals.event() {
                        tracing::warn!(
                            peer = node,
                            held_back,
                            "not dialled: {max} dials that no one asked for are under way \
                             (a send, monitor or reply to a node not connected); \
                             its monitors see noconnection"
                        );
                    }
                    return Err(SendError::NoConnection(node.into()));
                }
                self.unasked_dials.fetch_add(1, Ordering::AcqRel);
                Some(UnaskedDial(self.arc()))
            }
        };
        let (tx, rx) = mpsc::unbounded_channel();
        let (adopt, adopted) = oneshot::channel();
        let id = self.next_conn.fetch_add(1, Ordering::Relaxed);
        let link = Arc::new(PeerLink::default());
        peers.insert(
            node.to_string(),
            Peer {
                tx: tx.clone(),
                link: link.clone(),
                id,
                up_creation: None,
                hidden: false,
                adopt: Some(adopt),
            },
        );
        let me = self.arc();
        let node = node.to_string();
        tokio::spawn(async move {
            // A panic (a bug) must not leave a peer entry that never comes
            // up or goes down: the peer is reported down and redialled.
            let dial = me.clone().dial(target, id, rx, adopted, unasked);
            let dial = supervise::CatchUnwind::new(dial);
            if let Err(msg) = dial.await {
                tracing::error!(peer = %node, "the connection task crashed: {msg}");
                me.end_peer(&node, id, || DownReason::Crashed(msg));
            }
        });
        Ok((tx, link))
    }

    /// Queues `msg` for `node`, dialling it if needed. A peer already known
    /// is found under the peers' read lock (senders do not serialize) and
    /// nothing is cloned or allocated.
    pub(super) fn send_to_node(&self, node: &str, msg: Message) -> Result<(), SendError> {
        self.send_out(node, Outgoing::msg(msg))
    }

    /// Queues the MONITOR_Ps of `batch` for `node`, in order, with one
    /// send to its connection (as [`Inner::send_to_node`] each).
    pub(super) fn send_monitors_to_node(
        &self,
        node: &str,
        batch: MonitorBatch,
    ) -> Result<(), SendError> {
        self.send_out(node, Outgoing::Monitors(batch))
    }

    pub(super) fn send_out(&self, node: &str, out: Outgoing) -> Result<(), SendError> {
        let queued = {
            let peers = self.peers.read();
            if let Some(p) = peers.get(node) {
                p.link.enqueue(&p.tx, out)
            } else {
                drop(peers);
                let (tx, link) = self.peer_tx(node, Dial::Unasked)?;
                link.enqueue(&tx, out)
            }
        };
        let Some(queued) = queued else {
            return Err(SendError::NoConnection(node.to_string()));
        };
        let max = self.config.max_peer_queue;
        // One message alone over the byte bound goes (a large exchange to a
        // new peer): the bound is on how far a peer falls behind.
        if queued.messages > max.messages || (queued.bytes > max.bytes && queued.messages > 1) {
            // A peer that cannot keep up must not grow our memory without
            // bound: drop the connection (monitors and links see
            // noconnection; cpg state is exchanged again on reconnection).
            tracing::warn!(
                peer = node,
                "outgoing queue over {} messages or {} bytes: peer too slow, disconnecting",
                max.messages,
                max.bytes
            );
            self.drop_peer(node, DownReason::QueueOverflow);
            return Err(SendError::NoConnection(node.to_string()));
        }
        // Every peer's queue together, looked at only for a peer that has
        // fallen this far behind (a sum over the peers).
        if queued.bytes > TOTAL_CHECKED_FROM && queued.messages > 1 {
            let total: usize = (self.peers.read().values())
                .map(|p| {
                    p.link
                        .queued_bytes
                        .load(std::sync::atomic::Ordering::Relaxed)
                })
                .sum();
            if total > self.config.max_total_queue {
                tracing::warn!(
                    peer = node,
                    queued = queued.bytes,
                    total,
                    "outgoing queues of every peer together over {} bytes: disconnecting this slow peer",
                    self.config.max_total_queue
                );
                self.drop_peer(node, DownReason::QueueOverflow);
                return Err(SendError::NoConnection(node.to_string()));
            }
        }
        Ok(())
    }

    /// Closes the connection to `node` at once (its queue is dropped) and
    /// reports it down.
    pub(super) fn drop_peer(&self, node: &str, why: DownReason) {
        let ending = {
            let _order = self.peer_order.lock();
            let removed = self.peers.write().remove(node);
            match removed {
                Some(p) => {
                    p.link.close.notify_one();
                    // Its reader stops routing first: the node down comes
                    // after all it read.
                    p.link.let_go();
                    self.node_down(node, p.up_creation.is_some(), why)
                }
                None => Vec::new(),
            }
        };
        self.end_all(ending);
    }

    /// The distribution port of `target`, from the EPMD of its host, by
    /// `deadline`.
    async fn port_please(
        &self,
        target: &NodeName,
        deadline: tokio::time::Instant,
        timed_out: &impl Fn(&str) -> ConnectionError,
    ) -> Result<u16, ConnectionError> {
        let lookup = epmd::port_please(target.host(), self.config.epmd_port, target.alive());
        let entry = tokio::time::timeout_at(deadline, lookup)
            .await
            .map_err(|_| {
                timed_out(&format!(
                    "EPMD at {}:{}",
                    target.host(),
                    self.config.epmd_port
                ))
            })?
            .map_err(|e| {
                let port = self.config.epmd_port;
                let hint = match &e {
                    epmd::EpmdError::Io(io)
                        if io.kind() == std::io::ErrorKind::ConnectionRefused =>
                    {
                        " (no EPMD listens there: is the node running, and on this \
                         port? ERL_EPMD_PORT sets it, as for erl)"
                    }
                    _ => "",
                };
                ConnectionError::Unreachable(format!("EPMD at {}:{port}: {e}{hint}", target.host()))
            })?
            .ok_or_else(|| {
                ConnectionError::Unreachable(format!(
                    "no node {} in EPMD at {}:{} (is it running, with this EPMD port?)",
                    target.alive(),
                    target.host(),
                    self.config.epmd_port
                ))
            })?;
        Ok(entry.port)
    }

    async fn dial(
        self: Arc<Self>,
        target: NodeName,
        id: u64,
        rx: mpsc::UnboundedReceiver<Outgoing>,
        adopted: oneshot::Receiver<Adopted>,
        unasked: Option<UnaskedDial>,
    ) {
        let node = target.to_string();
        let result: Result<(TcpStream, PeerInfo), ConnectionError> = async {
            if let Some(why) = crate::config::mixed_names(&self.config.name, &target) {
                return Err(ConnectionError::MixedNames(why));
            }
            // The lookup, the TCP connect and the handshake bounded
            // together, as BEAM's `net_setuptime` bounds a connection's
            // set-up: a SYN into a
            // silent network (a partition) is otherwise retried by the
            // kernel for about two minutes, and the redial after the heal
            // waited that long.
            let setup = self.config.net_setuptime;
            let deadline = tokio::time::Instant::now() + setup;
            let timed_out = |what: &str| {
                ConnectionError::Unreachable(format!(
                    "{what}: no answer within net_setuptime ({} ms)",
                    setup.as_millis()
                ))
            };
            // EPMD-less: every node listens on the one port.
            let port = match self.config.static_port {
                Some(p) => p,
                None => self.port_please(&target, deadline, &timed_out).await?,
            };
            let at = format!("{}:{}", target.host(), port);
            let connect = crate::resolve::connect(target.host(), port);
            let mut s = tokio::time::timeout_at(deadline, connect)
                .await
                .map_err(|_| timed_out(&at))?
                .map_err(|e| ConnectionError::Unreachable(format!("{at}: {e}")))?;
            // (The handshake within the same bound, as BEAM's.)
            let handshake = connection::handshake_out(&mut s, self.local(), Some(&target));
            let peer = tokio::time::timeout_at(deadline, handshake)
                .await
                .map_err(|_| timed_out(&format!("the handshake with {at}")))??;
            Ok((s, peer))
        }
        .await;
        // Lost a simultaneous connect: the peer answered `nok` and dials us;
        // its connection arrives through `adopted`.
        let result = match result {
            Err(ConnectionError::Handshake(HandshakeError::Rejected(Status::Nok))) => {
                match tokio::time::timeout(std::time::Duration::from_secs(10), adopted).await {
                    Ok(Ok((sock, peer))) => Ok((sock, peer, Direction::In)),
                    _ => Err(ConnectionError::Handshake(HandshakeError::Rejected(
                        Status::Nok,
                    ))),
                }
            }
            other => other.map(|(sock, peer)| (sock, peer, Direction::Out)),
        };
        // The set-up is over: no longer an unasked dial under way.
        drop(unasked);
        match result {
            Ok((s, peer, dir)) => self.run_connection(s, peer, id, rx, dir).await,
            Err(e) => {
                // Debug only: whoever asked for the connection (a call to
                // `connect`, the cluster keeper) reports it as it sees fit.
                tracing::debug!(peer = %node, "connection failed: {e}");
                self.end_peer(&node, id, || e.into());
            }
        }
    }

    /// A connection accepted by [`accept_loop`], which holds `slot` until
    /// the handshake is over, and is closed if `closed` ends first (a
    /// newer connection took its place).
    pub(super) async fn incoming_connection(
        self: Arc<Self>,
        mut sock: TcpStream,
        addr: std::net::SocketAddr,
        slot: crate::admission::Slot,
        closed: tokio::sync::oneshot::Receiver<()>,
        refusals: std::sync::Arc<crate::util::FloodLog>,
    ) {
        // The name the peer gave, for the warnings after it.
        let claimed = std::sync::OnceLock::new();
        let admit = |p: &PeerInfo| {
            let node = p.name.to_string();
            let _ = claimed.set(node.clone());
            if node == self.name {
                // As BEAM answers a node that has its own name: `nok` (its
                // `net_kernel` cannot make a connection to itself).
                if let Some(held_back) = refusals.event() {
                    tracing::warn!(%addr, held_back, "incoming connection refused: the peer says it is {}, this node", self.name);
                }
                return Err(Status::Nok);
            }
            if let Some(why) = crate::config::mixed_names(&self.config.name, &p.name) {
                if let Some(held_back) = refusals.event() {
                    tracing::warn!(%addr, peer = %node, held_back, "incoming connection refused: {why}");
                }
                return Err(Status::NotAllowed);
            }
            let state = match self.peers.read().get(&node) {
                None => PeerState::None,
                Some(peer) => match peer.up_creation {
                    None => PeerState::Dialling,
                    Some(c) => PeerState::Up(c),
                },
            };
            admit_incoming(&self.name, p, state)
        };
        // Within `net_setuptime`, as BEAM's accepting side bounds it.
        let setup = self.config.net_setuptime;
        let handshake_in = connection::handshake_in(&mut sock, self.local(), admit);
        let handshake = tokio::select! {
            h = tokio::time::timeout(setup, handshake_in) => {
                h.unwrap_or(Err(ConnectionError::HandshakeTimeout))
            }
            _ = closed => {
                tracing::debug!(%addr, "closed before its handshake ended: the oldest of {} handshaking", max_handshakes());
                return;
            }
        };
        drop(slot);
        let peer = match handshake {
            Ok(p) => p,
            Err(ConnectionError::Handshake(HandshakeError::Refused(s))) => {
                tracing::debug!(%addr, "refused at the name step ({s})");
                return;
            }
            Err(ConnectionError::Handshake(HandshakeError::CookieMismatch)) => {
                let peer = claimed.get().map_or("?", String::as_str);
                if let Some(held_back) = refusals.event() {
                    tracing::warn!(%addr, %peer, held_back, "connection attempt refused: the peer presented a wrong cookie");
                }
                return;
            }
            Err(e) => {
                let peer = claimed.get().map_or("?", String::as_str);
                if let Some(held_back) = refusals.event() {
                    tracing::warn!(%addr, %peer, held_back, "incoming connection refused: {e}");
                }
                return;
            }
        };
        let node = peer.name.to_string();
        // Our own dial to this node is pending: it takes this connection
        // (with the messages queued on it).
        let adopt = self
            .peers
            .write()
            .get_mut(&node)
            .filter(|p| p.up_creation.is_none())
            .and_then(|p| p.adopt.take());
        let (sock, peer) = match adopt {
            Some(a) => match a.send((sock, peer)) {
                Ok(()) => return,
                Err(back) => back,
            },
            None => (sock, peer),
        };
        let (tx, rx) = mpsc::unbounded_channel();
        let id = self.next_conn.fetch_add(1, Ordering::Relaxed);
        let order = self.peer_order.lock();
        let old = self.peers.write().insert(
            node.clone(),
            Peer {
                tx,
                link: Arc::new(PeerLink::default()),
                id,
                up_creation: None,
                hidden: false,
                adopt: None,
            },
        );
        let ending = match old {
            // A peer that dials while we hold a connection to it is a
            // restarted node, or won a simultaneous connect: the new one wins
            // (messages queued for our own attempt are lost with it).
            Some(old) => {
                tracing::info!(peer = %node, "replacing the previous connection");
                old.link.close.notify_one();
                old.link.let_go();
                self.node_down(&node, old.up_creation.is_some(), DownReason::Replaced)
            }
            None => Vec::new(),
        };
        drop(order);
        self.end_all(ending);
        self.run_connection(sock, peer, id, rx, Direction::In).await;
    }

    pub(super) async fn run_connection(
        self: Arc<Self>,
        s: TcpStream,
        peer: PeerInfo,
        id: u64,
        rx: mpsc::UnboundedReceiver<Outgoing>,
        direction: Direction,
    ) {
        let node = peer.name.to_string();
        let hidden = peer.flags & flags::PUBLISHED == 0;
        // Reported up in order with the ends of this node's earlier
        // connections (`end_peer`).
        let order = self.peer_order.lock();
        // Counted under the peers lock: a shutdown that drains the peers
        // after this waits for this connection to flush.
        let (link, _live) = {
            let mut peers = self.peers.write();
            match peers.get_mut(&node) {
                Some(p) if p.id == id => {
                    p.link.mark_up(direction);
                    p.up_creation = Some(peer.creation);
                    p.hidden = hidden;
                    (p.link.clone(), LiveConn::new(&self))
                }
                _ => return, // superseded while handshaking
            }
        };
        // A visible node's name may take the places of the node-name
        // table kept for connected nodes, so its pids can be named however
        // full the table is of names that only came in messages. Not a
        // hidden one's for connecting alone: names are never given back,
        // and query clients (ours connect as `<command>_<os pid>`) would
        // use the places up, one each; a hidden peer whose cpg scope talks
        // to ours takes its place then (see `cpg::server`).
        if !hidden {
            if let Err(e) = crate::atom::Atom::new_peer(&node) {
                tracing::warn!(peer = %node, "its pids cannot be named: {e}");
            }
        }
        // A hidden node that dialled us (a `status` or `ping` probe, a
        // remote shell) comes and goes at debug: a liveness probe every
        // 10 s wrote 17,000 lines a day at info (BEAM logs no connection).
        let quiet = hidden && direction == Direction::In;
        if quiet {
            tracing::debug!(peer = %node, creation = peer.creation, "nodeup (hidden, it dialled us)");
        } else {
            tracing::info!(peer = %node, creation = peer.creation, "nodeup");
        }
        self.tell_node_watchers(|| Signal::NodeUp {
            node: node.clone(),
            hidden,
        });
        let _ = self.events.send(NodeEvent::Up {
            node: node.clone(),
            hidden,
        });
        drop(order);
        let router: Arc<dyn Router> = self.clone();
        let drive = connection::drive(s, peer, rx, link, router, self.conn_config());
        let why = supervise::CatchUnwind::new(drive)
            .await
            .unwrap_or_else(ConnectionError::Crashed);
        let closed_locally = matches!(why, ConnectionError::ClosedLocally);
        let ended = self.end_peer(&node, id, || {
            match &why {
                // As BEAM's "Node ... not responding" error: a peer gone
                // silent (or a net_ticktime that differs between nodes,
                // which drops the connection again and again).
                ConnectionError::TickTimeout(_) => {
                    tracing::warn!(peer = %node, "nodedown: {why}")
                }
                _ if quiet => tracing::debug!(peer = %node, "nodedown: {why}"),
                _ => tracing::info!(peer = %node, "nodedown: {why}"),
            }
            why.into()
        });
        if !ended && closed_locally && !quiet {
            tracing::info!(peer = %node, "nodedown: {}", ConnectionError::ClosedLocally);
        }
    }

    /// Removes the peer entry of connection `id` (not a newer one that
    /// replaced it) and, if it was there, reports the connection's end
    /// ([`node_down`](Self::node_down), with the reason `why` gives), all
    /// under `peer_order`: no connection to the node is reported up
    /// between the removal and the `Down`. Whether it was there.
    pub(super) fn end_peer(&self, node: &str, id: u64, why: impl FnOnce() -> DownReason) -> bool {
        let ending = {
            let _order = self.peer_order.lock();
            let Some(was_up) = self.remove_peer(node, id) else {
                return false;
            };
            self.node_down(node, was_up, why())
        };
        self.end_all(ending);
        true
    }

    /// Resolves once no connection is running (each has flushed its queue
    /// and closed, or failed).
    pub(super) async fn connections_ended(&self) {
        loop {
            let ended = self.conn_ended.notified();
            tokio::pin!(ended);
            ended.as_mut().enable();
            if self.live_conns.load(Ordering::Acquire) == 0 {
                return;
            }
            ended.await;
        }
    }

    /// Removes the peer entry of connection `id` (not a newer one that
    /// replaced it); if it was there, whether its connection was up.
    pub(super) fn remove_peer(&self, node: &str, id: u64) -> Option<bool> {
        let mut peers = self.peers.write();
        match peers.get(node) {
            Some(p) if p.id == id => peers.remove(node).map(|p| p.up_creation.is_some()),
            _ => None,
        }
    }
}

/// What we hold for a node that dials us.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PeerState {
    None,
    Dialling,
    /// Connected, to this creation of the node.
    Up(u32),
}

/// Whether to go on with a node that dials us. A simultaneous connect is
/// settled as `dist_util` does: the node with the greater name keeps its own
/// attempt and answers `nok`. A second connection from the incarnation we
/// are already connected to is the loser of such a race arriving late: `nok`
/// too (its dial adopts our connection). A new creation is a restarted node:
/// it replaces the old connection.
fn admit_incoming(me: &str, peer: &PeerInfo, state: PeerState) -> Result<(), Status> {
    match state {
        PeerState::Dialling if me > peer.name.to_string().as_str() => Err(Status::Nok),
        PeerState::Up(c) if c == peer.creation => Err(Status::Nok),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{config, node, node_named};
    use super::super::{Node, StartError};
    use super::*;
    use crate::epmd::server::EpmdServer;
    use crate::process::Dest;
    use crate::term::{self, atom};
    use std::time::Duration;

    #[test]
    fn simultaneous_connect_greater_name_keeps_its_attempt() {
        let peer = |n: &str, creation| PeerInfo {
            name: NodeName::parse(n).unwrap(),
            flags: 0,
            creation,
        };
        let a = peer("a@h", 1);
        assert_eq!(
            admit_incoming("b@h", &a, PeerState::Dialling),
            Err(Status::Nok)
        );
        assert_eq!(
            admit_incoming("a@h", &peer("b@h", 1), PeerState::Dialling),
            Ok(())
        );
        assert_eq!(admit_incoming("b@h", &a, PeerState::None), Ok(()));
        // Already connected to that incarnation: a late duplicate.
        assert_eq!(
            admit_incoming("a@h", &peer("b@h", 1), PeerState::Up(1)),
            Err(Status::Nok)
        );
        // A restarted peer (new creation) replaces the old connection.
        assert_eq!(admit_incoming("b@h", &a, PeerState::Up(7)), Ok(()));
    }

    /// Two nodes of ours, connected and idle, tick each other as
    /// `net_ticktime` asks (a few times a second here), not at wire speed:
    /// each used to answer every tick of the other, for as long as they
    /// were connected (up to half a core each, seen on two `cpg-node run`).
    #[tokio::test]
    async fn two_idle_nodes_of_ours_do_not_tick_each_other_at_wire_speed() {
        let epmd = EpmdServer::start("127.0.0.1", 0).await.unwrap();
        let mut c = config("ticka", epmd.port);
        c.net_ticktime = Duration::from_secs(1);
        let a = Node::start(c).await.unwrap();
        let mut c = config("tickb", epmd.port);
        c.net_ticktime = Duration::from_secs(1);
        let b = Node::start(c).await.unwrap();
        a.connect(b.name()).await.unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
        let before = a.peer_info()[0].link.bytes_in;
        tokio::time::sleep(Duration::from_secs(2)).await;
        let got = a.peer_info()[0].link.bytes_in - before;
        // Two seconds of ticks at a quarter of a second: 8 each way, and
        // as many answers at most, 4 bytes each.
        assert!(got <= 16 * 4 + 16, "{got} bytes of ticks in 2 s");
        assert!(got > 0, "no tick at all");
        assert_eq!(b.peers(), vec![a.name().to_string()]);
    }

    #[tokio::test]
    async fn peer_info_counts_each_connection_both_ways() {
        let (a, epmd) = node().await;
        let b = node_named("unit2", epmd.port).await;
        assert!(a.peer_info().is_empty());
        a.connect(b.name()).await.unwrap();
        let mut rx = b.spawn_registered("inbox").unwrap();
        let mut tx = a.spawn_process();
        for i in 0..3 {
            tx.send(Dest::Name("inbox".into(), b.name().into()), term::int(i))
                .unwrap();
        }
        for _ in 0..3 {
            rx.recv_timeout(Duration::from_secs(5))
                .await
                .unwrap()
                .unwrap();
        }
        rx.send(tx.pid().clone(), atom("thanks")).unwrap();
        tx.recv_timeout(Duration::from_secs(5))
            .await
            .unwrap()
            .unwrap();
        let out = &a.peer_info()[0];
        assert_eq!((out.node.as_str(), out.creation), (b.name(), b.creation()));
        assert_eq!(out.link.direction, Some(Direction::Out));
        assert!(out.link.msgs_out >= 3, "{out:?}");
        assert!(out.link.msgs_in >= 1, "{out:?}");
        assert!(out.link.bytes_out > 0 && out.link.bytes_in > 0, "{out:?}");
        assert!(out.link.connected_for.is_some());
        let inc = &b.peer_info()[0];
        assert_eq!(inc.node, a.name());
        assert_eq!(inc.link.direction, Some(Direction::In));
        assert!(inc.link.msgs_in >= 3, "{inc:?}");
        assert!(inc.link.last_heard < Duration::from_secs(5), "{inc:?}");
        assert!(a.uptime() > Duration::ZERO);
        assert!(b.process_count() >= 2, "net_kernel and inbox");
        a.shutdown().await;
        b.shutdown().await;
    }

    #[tokio::test]
    async fn the_listener_takes_ipv4_and_ipv6_peers() {
        let l = listen(PortRange::ANY, None).await.unwrap();
        let port = l.local_addr().unwrap().port();
        let v6 = std::net::TcpListener::bind("[::1]:0").is_ok();
        let mut addrs = vec![format!("127.0.0.1:{port}")];
        if v6 {
            addrs.push(format!("[::1]:{port}"));
        }
        for a in addrs {
            let dial = tokio::net::TcpStream::connect(a.as_str());
            let (c, accepted) = tokio::join!(dial, l.accept());
            c.unwrap_or_else(|e| panic!("{a}: {e}"));
            let from = accepted.unwrap().1.ip().to_canonical();
            assert_eq!(from.is_ipv6(), a.starts_with('['), "{a}: from {from}");
        }
        // A port taken for IPv4 only is taken for the dual-stack listener.
        let taken = TcpListener::bind(("0.0.0.0", 0)).await.unwrap();
        let p = taken.local_addr().unwrap().port();
        let e = listen(PortRange::single(p), None).await.unwrap_err();
        assert!(matches!(e, StartError::NoFreePort(_)), "{e}");
        assert!(
            e.to_string().contains(&format!("port {p} is in use")),
            "{e}"
        );
        // At one address (inet_dist_use_interface): there alone.
        let lo = std::net::IpAddr::from([127, 0, 0, 1]);
        let one = listen(PortRange::ANY, Some(lo)).await.unwrap();
        let at = one.local_addr().unwrap();
        assert_eq!(at.ip(), lo);
        if v6 {
            let six = tokio::net::TcpStream::connect(("::1", at.port())).await;
            assert!(six.is_err(), "{six:?}");
        }
    }

    #[tokio::test]
    async fn listens_on_the_first_free_port_of_the_range_or_a_given_listener() {
        let epmd = EpmdServer::start("127.0.0.1", 0).await.unwrap();
        let taken = TcpListener::bind(("0.0.0.0", 0)).await.unwrap();
        let p = taken.local_addr().unwrap().port();
        let mut c = config("ranged", epmd.port);
        c.listen_ports = PortRange::single(p);
        match Node::start(c.clone()).await {
            Err(StartError::NoFreePort(r)) => assert_eq!(r, PortRange::single(p)),
            other => panic!("{other:?}"),
        }
        c.listen_ports = PortRange {
            min: p,
            max: p.saturating_add(20),
        };
        let n = Node::start(c).await.unwrap();
        assert!(
            n.port() > p && n.port() <= p.saturating_add(20),
            "{}",
            n.port()
        );
        n.shutdown().await;

        let mine = TcpListener::bind(("0.0.0.0", 0)).await.unwrap();
        let port = mine.local_addr().unwrap().port();
        let n = Node::start_with_listener(config("handed", epmd.port), mine)
            .await
            .unwrap();
        assert_eq!(n.port(), port);
        let other = node_named("dialler", epmd.port).await;
        other.connect(n.name()).await.unwrap();
        other.shutdown().await;
        n.shutdown().await;
    }
}
