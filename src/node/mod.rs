//! The node: registry of local processes, peers, links and monitors, and
//! the routing of control messages between them.
//!
//! [`Node`] is a cheap handle (an `Arc`). Processes reach the node through
//! the [`crate::process::Kernel`] trait; connections deliver into it through
//! [`crate::dist::connection::Router`]. [`cluster`] keeps it connected:
//! seeds, discovery and redialling after a loss.

pub mod cluster;
pub(crate) mod supervise;

use crate::config::{NodeConfig, NodeName};
use crate::dist::connection::{
    self, ConnConfig, ConnectionError, Direction, LinkStats, Outgoing, PeerLink, Router,
};
use crate::dist::flags;
use crate::dist::handshake::{HandshakeError, Local, PeerInfo};
use crate::epmd::{self, server::EpmdServer, NodeEntry};
use crate::process::{Dest, Kernel, MailboxTx, Process, SendError, Signal};
use crate::term::{self, atom, tuple, Atom, Pid, PidOrAtom, Reference, Term};
use crate::util::shrink_sparse;
use erl_dist::message::Message;
use parking_lot::{Mutex, RwLock};
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{broadcast, mpsc, oneshot};

/// Why the node could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    /// Could not listen for distribution connections.
    #[error("cannot listen: {0}")]
    Listen(std::io::Error),
    /// EPMD failed.
    #[error(transparent)]
    Epmd(#[from] epmd::EpmdError),
    /// The configuration is refused ([`NodeConfig::check`]).
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
}

/// A connected peer, as [`Node::peer_info`] shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerStats {
    /// The peer's name.
    pub node: String,
    /// The peer's creation (its incarnation).
    pub creation: u32,
    /// The connection's counters.
    pub link: LinkStats,
}

/// A peer came or went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeEvent {
    /// A connection is up.
    Up(String),
    /// A connection went down, with the reason.
    Down(String, String),
}

struct ProcEntry {
    tx: MailboxTx,
    name: Option<String>,
    links: HashSet<Pid>,
    /// Monitors others hold on this process: ref -> (watcher, how it was
    /// named: the pid or the registered name).
    monitors: HashMap<Reference, (Pid, PidOrAtom)>,
    /// Monitors this process holds: ref -> the local target's id, or `None`
    /// for a target on another node (then in `Inner::mons_out`). Lets exit
    /// and demonitor find them without scanning every monitor on the node.
    held: HashMap<Reference, Option<u32>>,
}

/// A monitor one of our processes holds on a process elsewhere.
struct MonOut {
    watcher: Pid,
    node: String,
    item: Term,
}

/// A connected socket handed from an incoming handshake to our own dial.
type Adopted = (TcpStream, PeerInfo);

struct Peer {
    tx: mpsc::UnboundedSender<Outgoing>,
    link: Arc<PeerLink>,
    id: u64,
    /// The peer's creation once the connection is up; `None` while dialling.
    up_creation: Option<u32>,
    /// Whether the peer is hidden (did not set DFLAG_PUBLISHED), once up.
    hidden: bool,
    /// While our own dial is pending: where an incoming connection from the
    /// same node goes when it wins a simultaneous connect, so the messages
    /// already queued for the peer go out on it.
    adopt: Option<oneshot::Sender<Adopted>>,
}

struct Inner {
    me: Weak<Inner>,
    config: NodeConfig,
    name: String,
    atom: Atom,
    creation: u32,
    port: u16,
    procs: RwLock<HashMap<u32, ProcEntry>>,
    names: RwLock<HashMap<String, Pid>>,
    next_id: AtomicU32,
    next_ref: AtomicU64,
    next_conn: AtomicU64,
    peers: Mutex<HashMap<String, Peer>>,
    mons_out: Mutex<HashMap<Reference, MonOut>>,
    events: broadcast::Sender<NodeEvent>,
    tasks: Mutex<Vec<tokio::task::JoinHandle<()>>>,
    started: std::time::Instant,
    _epmd_server: Mutex<Option<EpmdServer>>,
}

/// A running node. Clone it freely.
#[derive(Clone)]
pub struct Node {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Node({})", self.inner.name)
    }
}

impl Node {
    /// Starts the node: listens for connections, registers with EPMD
    /// (starting an embedded EPMD if none answers and the config allows),
    /// and starts the `net_kernel` responder.
    pub async fn start(config: NodeConfig) -> Result<Node, StartError> {
        config.check()?;
        let listener = TcpListener::bind(("0.0.0.0", 0))
            .await
            .map_err(StartError::Listen)?;
        let port = listener.local_addr().map_err(StartError::Listen)?.port();
        let entry = NodeEntry::hidden(config.name.alive(), port);
        let mut server = None;
        let reg = match epmd::register(EPMD_HOST, config.epmd_port, entry.clone()).await {
            Ok(r) => r,
            Err(epmd::EpmdError::Io(e)) if config.embedded_epmd => {
                tracing::info!(
                    "no EPMD answers on port {} ({e}); starting an embedded EPMD server",
                    config.epmd_port
                );
                // On loopback, and where our host name points (127.0.1.1
                // on some systems): where nodes look us up. Not 0.0.0.0.
                let s = EpmdServer::start_with(epmd::server::EpmdOptions {
                    port: config.epmd_port,
                    also: epmd::server::name_addrs_of(config.name.host()).await,
                    ..Default::default()
                })
                .await
                .map_err(|e| StartError::Epmd(e.into()))?;
                server = Some(s);
                epmd::register(EPMD_HOST, config.epmd_port, entry.clone()).await?
            }
            Err(e) => return Err(e.into()),
        };
        let creation = if reg.creation < 4 {
            reg.creation + 0xE10000
        } else {
            reg.creation
        };
        let name = config.name.to_string();
        let (events, _) = broadcast::channel(1024);
        let inner = Arc::new_cyclic(|me| Inner {
            me: me.clone(),
            atom: Atom::from(name.as_str()),
            name,
            creation,
            port,
            config,
            procs: RwLock::default(),
            names: RwLock::default(),
            next_id: AtomicU32::new(100),
            next_ref: AtomicU64::new(1),
            next_conn: AtomicU64::new(1),
            peers: Mutex::default(),
            mons_out: Mutex::default(),
            events,
            tasks: Mutex::default(),
            started: std::time::Instant::now(),
            _epmd_server: Mutex::new(server),
        });
        let weak = Arc::downgrade(&inner);
        let listener = Arc::new(listener);
        let backoff = inner.config.backoff;
        let accept = supervise::supervise("the accept loop".into(), backoff, move || {
            accept_loop(weak.clone(), listener.clone())
        });
        let (node_name, epmd_port) = (inner.name.clone(), inner.config.epmd_port);
        let mut first = Some(reg);
        let keeper = supervise::supervise("the EPMD registration".into(), backoff, move || {
            keep_registered(
                node_name.clone(),
                epmd_port,
                entry.clone(),
                first.take(),
                backoff,
            )
        });
        inner.tasks.lock().extend([accept, keeper]);
        let node = Node { inner };
        node.start_net_kernel();
        tracing::info!(node = %node.name(), port, creation, "node started (hidden)");
        Ok(node)
    }

    /// This node's name.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// This node's creation.
    pub fn creation(&self) -> u32 {
        self.inner.creation
    }

    /// The distribution port it listens on.
    pub fn port(&self) -> u16 {
        self.inner.port
    }

    /// The configuration it runs with.
    pub fn config(&self) -> &NodeConfig {
        &self.inner.config
    }

    /// Creates a process (its mailbox is live at once).
    pub fn spawn_process(&self) -> Process {
        self.inner.new_process()
    }

    /// Runs `body` as a process in its own task and returns its pid. If the
    /// body panics, the panic is logged with its message and the process
    /// ends with reason `{panic, rust}`, which its links and monitors see as
    /// they would see an Erlang process crash; the node carries on.
    pub fn spawn<F, Fut>(&self, body: F) -> Pid
    where
        F: FnOnce(Process) -> Fut,
        Fut: std::future::Future<Output = ()> + Send + 'static,
    {
        let p = self.inner.new_process();
        let pid = p.pid().clone();
        let inner = self.inner.clone();
        let run = supervise::CatchUnwind::new(body(p));
        let id = pid.clone();
        tokio::spawn(async move {
            if let Err(msg) = run.await {
                tracing::error!(pid = %term::pid_text(&id), "process crashed: {msg}");
                // The process, dropped while unwinding, has already ended
                // with {panic, rust}; this covers one the body moved away.
                inner.exited(&id, tuple(vec![atom("panic"), atom("rust")]));
            }
        });
        pid
    }

    /// Creates a process registered under `name`.
    pub fn spawn_registered(&self, name: &str) -> Result<Process, SendError> {
        let p = self.inner.new_process();
        p.register(name)?;
        Ok(p)
    }

    /// The pid registered under `name`.
    pub fn whereis(&self, name: &str) -> Option<Pid> {
        self.inner.names.read().get(name).cloned()
    }

    /// Whether a local pid is alive.
    pub fn is_alive(&self, pid: &Pid) -> bool {
        self.inner.is_local(pid) && self.inner.procs.read().contains_key(&pid.id)
    }

    /// Connected peers (handshake done).
    pub fn peers(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .inner
            .peers
            .lock()
            .iter()
            .filter(|(_, p)| p.up_creation.is_some())
            .map(|(n, _)| n.clone())
            .collect();
        v.sort();
        v
    }

    /// Whether the connection to `node` is up (handshake done).
    pub fn is_connected(&self, node: &str) -> bool {
        self.inner
            .peers
            .lock()
            .get(node)
            .is_some_and(|p| p.up_creation.is_some())
    }

    /// Whether `node` is connected and hidden (a `cpg-node`, a query
    /// client, an `erl -hidden`); `None` when not connected.
    pub fn is_hidden_peer(&self, node: &str) -> Option<bool> {
        self.inner
            .peers
            .lock()
            .get(node)
            .filter(|p| p.up_creation.is_some())
            .map(|p| p.hidden)
    }

    /// How long the node has been running.
    pub fn uptime(&self) -> std::time::Duration {
        self.inner.started.elapsed()
    }

    /// How many processes the node hosts (its own `net_kernel` included).
    pub fn process_count(&self) -> usize {
        self.inner.procs.read().len()
    }

    /// Every connected peer with its connection's counters, sorted by name.
    pub fn peer_info(&self) -> Vec<PeerStats> {
        let mut v: Vec<PeerStats> = self
            .inner
            .peers
            .lock()
            .iter()
            .filter_map(|(n, p)| {
                p.up_creation.map(|creation| PeerStats {
                    node: n.clone(),
                    creation,
                    link: p.link.stats(),
                })
            })
            .collect();
        v.sort_by(|a, b| a.node.cmp(&b.node));
        v
    }

    /// Subscribe to nodeup/nodedown events.
    pub fn subscribe(&self) -> broadcast::Receiver<NodeEvent> {
        self.inner.events.subscribe()
    }

    /// Connects to `node` (no-op if connected) and waits until the
    /// connection is up or has failed.
    pub async fn connect(&self, node: &str) -> Result<(), ConnectionError> {
        let mut ev = self.subscribe();
        if self.peers().iter().any(|p| p == node) {
            return Ok(());
        }
        self.inner
            .peer_tx(node)
            .map_err(|e| ConnectionError::Unreachable(e.to_string()))?;
        let wait = async {
            loop {
                if self.peers().iter().any(|p| p == node) {
                    return Ok(());
                }
                match ev.recv().await {
                    Ok(NodeEvent::Up(n)) if n == node => return Ok(()),
                    Ok(NodeEvent::Down(n, why)) if n == node => {
                        return Err(ConnectionError::Unreachable(why))
                    }
                    Err(broadcast::error::RecvError::Closed) => {
                        return Err(ConnectionError::ClosedLocally)
                    }
                    _ => {}
                }
            }
        };
        tokio::time::timeout(std::time::Duration::from_secs(15), wait)
            .await
            .map_err(|_| ConnectionError::HandshakeTimeout)?
    }

    /// Closes the connection to `node` (like `erlang:disconnect_node/1`).
    pub fn disconnect(&self, node: &str) {
        self.inner.drop_peer(node, "disconnected");
    }

    /// `net_adm:ping/1`: `true` for pong.
    pub async fn ping(&self, node: &str) -> bool {
        if self.connect(node).await.is_err() {
            return false;
        }
        let mut p = self.spawn_process();
        let req = tuple(vec![atom("is_auth"), atom(self.name())]);
        matches!(
            p.call(
                Dest::Name("net_kernel".into(), node.into()),
                req,
                std::time::Duration::from_secs(10)
            )
            .await,
            Ok(Term::Atom(a)) if a.name == "yes"
        )
    }

    /// Calls `Module:Function(Args)` on `node` through its `rex` server, the
    /// way erl_interface's `ei_rpc` does (`{Self, {call, M, F, A, user}}`,
    /// answered with `{rex, Result}`). No SPAWN or monitor flags needed.
    pub async fn rpc(
        &self,
        node: &str,
        module: &str,
        function: &str,
        args: Vec<Term>,
        timeout: std::time::Duration,
    ) -> Result<Term, crate::process::CallError> {
        let mut p = self.spawn_process();
        let req = tuple(vec![
            Term::Pid(p.pid().clone()),
            tuple(vec![
                atom("call"),
                atom(module),
                atom(function),
                term::list(args),
                atom("user"),
            ]),
        ]);
        let rex = Dest::Name("rex".into(), node.into());
        // Monitor rex: a node without one (another Rust node) answers
        // `noproc` at once instead of leaving us to the timeout.
        let mref = p.monitor(rex.clone());
        p.send(rex, req)?;
        let got = p
            .recv_match(
                |s| match s {
                    Signal::Message { msg, .. } => {
                        matches!(term::as_tuple(msg), Some([t, _]) if term::as_atom(t) == Some("rex"))
                    }
                    Signal::Down { mref: m, .. } => *m == mref,
                    _ => false,
                },
                Some(timeout),
            )
            .await;
        p.demonitor(&mref);
        match got {
            Ok(Some(Signal::Message {
                msg: Term::Tuple(mut t),
                ..
            })) => Ok(t.elements.swap_remove(1)),
            Ok(Some(Signal::Down { reason, .. })) => Err(crate::process::CallError::Down(reason)),
            Ok(_) => Err(crate::process::CallError::Timeout),
            Err(r) => Err(crate::process::CallError::Exited(r)),
        }
    }

    /// Stops the node: every process ends with reason `shutdown` (links and
    /// monitors are told), queued messages are flushed, connections close,
    /// and the EPMD entry goes.
    pub async fn shutdown(&self) {
        let pids: Vec<Pid> = self
            .inner
            .procs
            .read()
            .keys()
            .map(|&id| self.inner.pid(id))
            .collect();
        for p in pids {
            self.inner.exited(&p, atom("shutdown"));
        }
        // Dropping the queues lets each writer flush and close.
        let peers: Vec<Peer> = self.inner.peers.lock().drain().map(|(_, p)| p).collect();
        drop(peers);
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        // Aborting the EPMD keeper drops the registration: EPMD forgets us.
        for t in self.inner.tasks.lock().drain(..) {
            t.abort();
        }
        tracing::info!(node = %self.name(), "node stopped");
    }

    fn start_net_kernel(&self) {
        let mut p = match self.spawn_registered("net_kernel") {
            Ok(p) => p,
            Err(e) => {
                tracing::error!("cannot register net_kernel: {e}");
                return;
            }
        };
        tokio::spawn(async move {
            let on_call = |_: &Process, req: &Term| match term::as_tuple(req) {
                Some([t, _]) if term::as_atom(t) == Some("is_auth") => atom("yes"),
                _ => {
                    tracing::debug!("net_kernel: unexpected call {req}");
                    atom("error")
                }
            };
            let on_other = |_: &Process, s: Signal| {
                tracing::debug!("net_kernel: dropped {}", s.to_term());
            };
            p.serve(on_call, on_other).await;
        });
    }
}

/// Where the node registers: EPMD on this host, as `erl` does.
const EPMD_HOST: &str = "127.0.0.1";

/// Holds the EPMD registration for the node's life (`reg`, or a new one
/// when started without). When EPMD goes away (stopped, restarted) it
/// forgets the node, so peers could no longer find it: register again, with
/// backoff, as OTP's `erl_epmd` does. The creation the new EPMD hands out is
/// not used: pids already given out keep theirs.
async fn keep_registered(
    node: String,
    port: u16,
    entry: NodeEntry,
    reg: Option<epmd::Registration>,
    backoff: crate::config::Backoff,
) {
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
                    tracing::info!(%node, "registered with EPMD again");
                    break r;
                }
                Err(e) => {
                    if attempt == 0 {
                        tracing::warn!(%node, "cannot register with EPMD yet: {e}; retrying");
                    }
                    attempt = attempt.saturating_add(1);
                }
            }
        });
    }
}

async fn accept_loop(inner: Weak<Inner>, listener: Arc<TcpListener>) {
    loop {
        let (sock, addr) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                tracing::warn!("accept: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let Some(i) = inner.upgrade() else { return };
        tokio::spawn(async move { i.incoming_connection(sock, addr).await });
    }
}

impl Inner {
    fn arc(&self) -> Arc<Inner> {
        self.me.upgrade().expect("node alive while in use")
    }

    fn local(&self) -> Local {
        Local {
            name: self.config.name.clone(),
            creation: self.creation,
            flags: flags::OFFERED,
            cookie: self.config.cookie.clone(),
        }
    }

    fn conn_config(&self) -> ConnConfig {
        ConnConfig {
            ticktime: self.config.net_ticktime,
            max_frame: self.config.max_frame,
            fragment_size: self.config.fragment_size,
        }
    }

    fn pid(&self, id: u32) -> Pid {
        Pid {
            node: self.atom.clone(),
            id,
            serial: 0,
            creation: self.creation,
        }
    }

    fn is_local(&self, pid: &Pid) -> bool {
        pid.node.name == self.name && pid.creation == self.creation
    }

    fn new_process(&self) -> Process {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = mpsc::unbounded_channel();
        self.procs.write().insert(
            id,
            ProcEntry {
                tx,
                name: None,
                links: HashSet::new(),
                monitors: HashMap::new(),
                held: HashMap::new(),
            },
        );
        Process::new(self.pid(id), self.arc(), rx)
    }

    fn deliver(&self, to: &Pid, s: Signal) -> bool {
        if !self.is_local(to) {
            return false;
        }
        match self.procs.read().get(&to.id) {
            Some(e) => e.tx.send(s).is_ok(),
            None => false,
        }
    }

    /// The outgoing queue to `node`, dialling it if needed.
    fn peer_tx(
        &self,
        node: &str,
    ) -> Result<(mpsc::UnboundedSender<Outgoing>, Arc<PeerLink>), SendError> {
        let mut peers = self.peers.lock();
        if let Some(p) = peers.get(node) {
            return Ok((p.tx.clone(), p.link.clone()));
        }
        let target = NodeName::parse(node).map_err(|_| SendError::NoConnection(node.into()))?;
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
            let dial = supervise::CatchUnwind::new(me.clone().dial(target, id, rx, adopted));
            if let Err(msg) = dial.await {
                tracing::error!(peer = %node, "the connection task crashed: {msg}");
                if me.remove_peer(&node, id) {
                    me.node_down(&node, id, &ConnectionError::Crashed(msg).to_string());
                }
            }
        });
        Ok((tx, link))
    }

    fn send_to_node(&self, node: &str, msg: Message) -> Result<(), SendError> {
        let (tx, link) = self.peer_tx(node)?;
        // Counted before the send, so the writer (which counts down as it
        // takes messages) never sees the counter below zero.
        let queued = link.queued.fetch_add(1, Ordering::Relaxed) + 1;
        if tx.send(Outgoing::Msg(msg)).is_err() {
            link.queued.fetch_sub(1, Ordering::Relaxed);
            return Err(SendError::NoConnection(node.to_string()));
        }
        if queued > self.config.max_peer_queue {
            // A peer that cannot keep up must not grow our memory without
            // bound: drop the connection (monitors and links see
            // noconnection; cpg state is exchanged again on reconnection).
            tracing::warn!(
                peer = node,
                "outgoing queue over {} messages: peer too slow, disconnecting",
                self.config.max_peer_queue
            );
            self.drop_peer(node, "outgoing queue overflow");
            return Err(SendError::NoConnection(node.to_string()));
        }
        Ok(())
    }

    /// Closes the connection to `node` at once (its queue is dropped) and
    /// reports it down.
    fn drop_peer(&self, node: &str, why: &str) {
        let removed = self.peers.lock().remove(node);
        if let Some(p) = removed {
            p.link.close.notify_one();
            self.node_down(node, p.id, why);
        }
    }

    async fn dial(
        self: Arc<Self>,
        target: NodeName,
        id: u64,
        rx: mpsc::UnboundedReceiver<Outgoing>,
        adopted: oneshot::Receiver<Adopted>,
    ) {
        let node = target.to_string();
        let result: Result<(TcpStream, PeerInfo), ConnectionError> = async {
            if let Some(why) = crate::config::mixed_names(&self.config.name, &target) {
                return Err(ConnectionError::MixedNames(why));
            }
            let entry = epmd::port_please(target.host(), self.config.epmd_port, target.alive())
                .await
                .map_err(|e| {
                    ConnectionError::Unreachable(format!("epmd on {}: {e}", target.host()))
                })?
                .ok_or_else(|| {
                    ConnectionError::Unreachable(format!(
                        "no node {} in EPMD on {} (is it running?)",
                        target.alive(),
                        target.host()
                    ))
                })?;
            let mut s = TcpStream::connect((target.host(), entry.port))
                .await
                .map_err(|e| {
                    let at = format!("{}:{}", target.host(), entry.port);
                    ConnectionError::Unreachable(format!("{at}: {e}"))
                })?;
            let peer = connection::handshake_out(&mut s, self.local()).await?;
            Ok((s, peer))
        }
        .await;
        // Lost a simultaneous connect: the peer answered `nok` and dials us;
        // its connection arrives through `adopted`.
        let result = match result {
            Err(ConnectionError::Handshake(HandshakeError::Refused(s))) if s == "nok" => {
                match tokio::time::timeout(std::time::Duration::from_secs(10), adopted).await {
                    Ok(Ok((sock, peer))) => Ok((sock, peer, Direction::In)),
                    _ => Err(ConnectionError::Handshake(HandshakeError::Refused(s))),
                }
            }
            other => other.map(|(sock, peer)| (sock, peer, Direction::Out)),
        };
        match result {
            Ok((s, peer, dir)) => self.run_connection(s, peer, id, rx, dir).await,
            Err(e) => {
                // Debug only: whoever asked for the connection (a call to
                // `connect`, the cluster keeper) reports it as it sees fit.
                tracing::debug!(peer = %node, "connection failed: {e}");
                if self.remove_peer(&node, id) {
                    self.node_down(&node, id, &e.to_string());
                }
            }
        }
    }

    async fn incoming_connection(self: Arc<Self>, mut sock: TcpStream, addr: std::net::SocketAddr) {
        let admit = |p: &PeerInfo| {
            if let Some(why) = crate::config::mixed_names(&self.config.name, &p.name) {
                tracing::warn!(%addr, "incoming connection refused: {why}");
                return Err("not_allowed");
            }
            let node = p.name.to_string();
            let state = match self.peers.lock().get(&node) {
                None => PeerState::None,
                Some(peer) => match peer.up_creation {
                    None => PeerState::Dialling,
                    Some(c) => PeerState::Up(c),
                },
            };
            admit_incoming(&self.name, p, state)
        };
        let peer = match connection::handshake_in(&mut sock, self.local(), admit).await {
            Ok(p) => p,
            Err(ConnectionError::Handshake(HandshakeError::Refused(s))) => {
                tracing::debug!(%addr, "refused at the name step ({s})");
                return;
            }
            Err(ConnectionError::Handshake(HandshakeError::CookieMismatch)) => {
                tracing::warn!(%addr, "connection attempt refused: the peer presented a wrong cookie");
                return;
            }
            Err(e) => {
                tracing::warn!(%addr, "incoming connection refused: {e}");
                return;
            }
        };
        let node = peer.name.to_string();
        // Our own dial to this node is pending: it takes this connection
        // (with the messages queued on it).
        let adopt = self
            .peers
            .lock()
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
        let old = self.peers.lock().insert(
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
        if let Some(old) = old {
            // A peer that dials while we hold a connection to it is a
            // restarted node, or won a simultaneous connect: the new one wins
            // (messages queued for our own attempt are lost with it).
            tracing::info!(peer = %node, "replacing the previous connection");
            old.link.close.notify_one();
            self.node_down(&node, old.id, "replaced by a new connection");
        }
        self.run_connection(sock, peer, id, rx, Direction::In).await;
    }

    async fn run_connection(
        self: Arc<Self>,
        s: TcpStream,
        peer: PeerInfo,
        id: u64,
        rx: mpsc::UnboundedReceiver<Outgoing>,
        direction: Direction,
    ) {
        let node = peer.name.to_string();
        let link = {
            let mut peers = self.peers.lock();
            match peers.get_mut(&node) {
                Some(p) if p.id == id => {
                    p.link.mark_up(direction);
                    p.up_creation = Some(peer.creation);
                    p.hidden = peer.flags & flags::PUBLISHED == 0;
                    p.link.clone()
                }
                _ => return, // superseded while handshaking
            }
        };
        tracing::info!(peer = %node, creation = peer.creation, "nodeup");
        let _ = self.events.send(NodeEvent::Up(node.clone()));
        let router: Arc<dyn Router> = self.clone();
        let drive = connection::drive(s, peer, rx, link, router, self.conn_config());
        let why = supervise::CatchUnwind::new(drive)
            .await
            .unwrap_or_else(ConnectionError::Crashed);
        let removed = self.remove_peer(&node, id);
        if removed || matches!(why, ConnectionError::ClosedLocally) {
            tracing::info!(peer = %node, "nodedown: {why}");
        }
        if removed {
            self.node_down(&node, id, &why.to_string());
        }
    }

    /// Removes the peer entry of connection `id` (not a newer one that
    /// replaced it); whether it was there.
    fn remove_peer(&self, node: &str, id: u64) -> bool {
        let mut peers = self.peers.lock();
        match peers.get(node) {
            Some(p) if p.id == id => peers.remove(node).is_some(),
            _ => false,
        }
    }

    /// A connection to `node` is gone: fire `noconnection` for links and
    /// monitors that cross it.
    fn node_down(&self, node: &str, _id: u64, why: &str) {
        let noconn = atom("noconnection");
        let mut signals: Vec<(Pid, Signal)> = Vec::new();
        {
            let mut procs = self.procs.write();
            for (&id, e) in procs.iter_mut() {
                let me = self.pid(id);
                e.links.retain(|l| {
                    if l.node.name == node {
                        signals.push((
                            me.clone(),
                            Signal::Exit {
                                from: l.clone(),
                                reason: noconn.clone(),
                                exit2: false,
                            },
                        ));
                        false
                    } else {
                        true
                    }
                });
                e.monitors.retain(|_, (w, _)| w.node.name != node);
                shrink_sparse(&mut e.monitors);
            }
        }
        {
            let mut mons = self.mons_out.lock();
            mons.retain(|mref, m| {
                if m.node == node {
                    signals.push((
                        m.watcher.clone(),
                        Signal::Down {
                            mref: mref.clone(),
                            item: m.item.clone(),
                            reason: noconn.clone(),
                        },
                    ));
                    false
                } else {
                    true
                }
            });
            shrink_sparse(&mut mons);
        }
        for (to, s) in signals {
            if let Signal::Down { mref, .. } = &s {
                self.forget_held(&to, mref);
            }
            self.deliver(&to, s);
        }
        let _ = self
            .events
            .send(NodeEvent::Down(node.to_string(), why.to_string()));
    }

    fn local_target(&self, item: &PidOrAtom) -> Option<Pid> {
        match item {
            PidOrAtom::Pid(p) if self.is_local(p) => Some(p.clone()),
            PidOrAtom::Pid(_) => None,
            PidOrAtom::Atom(a) => self.names.read().get(&a.name).cloned(),
        }
    }

    /// `watcher` no longer holds monitor `mref`.
    fn forget_held(&self, watcher: &Pid, mref: &Reference) {
        if let Some(e) = self.procs.write().get_mut(&watcher.id) {
            e.held.remove(mref);
            shrink_sparse(&mut e.held);
        }
    }

    /// `watcher` holds monitor `mref` on `target` (`None`: on another node).
    fn hold(&self, watcher: &Pid, mref: &Reference, target: Option<u32>) {
        if let Some(e) = self.procs.write().get_mut(&watcher.id) {
            e.held.insert(mref.clone(), target);
        }
    }

    fn add_monitor(&self, target: &Pid, mref: Reference, watcher: Pid, how: PidOrAtom) -> bool {
        match self.procs.write().get_mut(&target.id) {
            Some(e) if self.is_local(target) => {
                e.monitors.insert(mref, (watcher, how));
                true
            }
            _ => false,
        }
    }

    fn handle(&self, peer: &str, msg: Message) {
        match msg {
            Message::Send(m) => self.deliver_msg(None, &m.to_pid, m.message),
            Message::SendTt(m) => self.deliver_msg(None, &m.to_pid, m.message),
            Message::SendSender(m) => self.deliver_msg(Some(m.from_pid), &m.to_pid, m.message),
            Message::SendSenderTt(m) => self.deliver_msg(Some(m.from_pid), &m.to_pid, m.message),
            Message::RegSend(m) => self.deliver_named(m.from_pid, &m.to_name.name, m.message),
            Message::RegSendTt(m) => self.deliver_named(m.from_pid, &m.to_name.name, m.message),
            Message::Link(m) => {
                let ok = self.is_local(&m.to_pid)
                    && match self.procs.write().get_mut(&m.to_pid.id) {
                        Some(e) => {
                            e.links.insert(m.from_pid.clone());
                            true
                        }
                        None => false,
                    };
                if !ok {
                    let _ = self
                        .send_to_node(peer, Message::exit(m.to_pid, m.from_pid, atom("noproc")));
                }
            }
            Message::UnlinkId(m) => {
                if let Some(e) = self.procs.write().get_mut(&m.to_pid.id) {
                    e.links.remove(&m.from_pid);
                }
                let _ = self.send_to_node(peer, Message::unlink_id_ack(m.id, m.to_pid, m.from_pid));
            }
            Message::Unlink(m) => {
                if let Some(e) = self.procs.write().get_mut(&m.to_pid.id) {
                    e.links.remove(&m.from_pid);
                }
            }
            Message::UnlinkIdAck(_) | Message::NodeLink(_) | Message::GroupLeader(_) => {}
            Message::Exit(m) => self.link_exit(m.from_pid, m.to_pid, m.reason),
            Message::ExitTt(m) => self.link_exit(m.from_pid, m.to_pid, m.reason),
            Message::PayloadExit(m) => self.link_exit(m.from_pid, m.to_pid, m.reason),
            Message::PayloadExitTt(m) => self.link_exit(m.from_pid, m.to_pid, m.reason),
            Message::Exit2(m) => self.exit2_in(m.from_pid, m.to_pid, m.reason),
            Message::Exit2Tt(m) => self.exit2_in(m.from_pid, m.to_pid, m.reason),
            Message::PayloadExit2(m) => self.exit2_in(m.from_pid, m.to_pid, m.reason),
            Message::PayloadExit2Tt(m) => self.exit2_in(m.from_pid, m.to_pid, m.reason),
            Message::MonitorP(m) => {
                let ok = match self.local_target(&m.to_proc) {
                    Some(t) => self.add_monitor(
                        &t,
                        m.reference.clone(),
                        m.from_pid.clone(),
                        m.to_proc.clone(),
                    ),
                    None => false,
                };
                if !ok {
                    let _ = self.send_to_node(
                        peer,
                        Message::monitor_p_exit(m.to_proc, m.from_pid, m.reference, atom("noproc")),
                    );
                }
            }
            Message::DemonitorP(m) => {
                if let Some(t) = self.local_target(&m.to_proc) {
                    if let Some(e) = self.procs.write().get_mut(&t.id) {
                        e.monitors.remove(&m.reference);
                        shrink_sparse(&mut e.monitors);
                    }
                }
            }
            Message::MonitorPExit(m) => {
                self.monitor_fired(peer, m.from_proc, m.to_pid, m.reference, m.reason)
            }
            Message::PayloadMonitorPExit(m) => {
                self.monitor_fired(peer, m.from_proc, m.to_pid, m.reference, m.reason)
            }
            Message::AliasSend(m) => {
                tracing::debug!(peer, "dropped ALIAS_SEND to {}: no aliases here", m.alias)
            }
            Message::AliasSendTt(m) => {
                tracing::debug!(peer, "dropped ALIAS_SEND to {}: no aliases here", m.alias)
            }
            other => tracing::debug!(peer, "dropped control message {other:?}"),
        }
    }

    fn deliver_msg(&self, from: Option<Pid>, to: &Pid, msg: Term) {
        if !self.deliver(to, Signal::Message { from, msg }) {
            tracing::trace!(
                "message to dead or unknown pid {} dropped",
                term::pid_text(to)
            );
        }
    }

    fn deliver_named(&self, from: Pid, name: &str, msg: Term) {
        let to = self.names.read().get(name).cloned();
        match to {
            Some(p) => self.deliver_msg(Some(from), &p, msg),
            None => tracing::debug!("message to unregistered name {name} dropped: {msg}"),
        }
    }

    fn link_exit(&self, from: Pid, to: Pid, reason: Term) {
        let linked = self.is_local(&to)
            && self
                .procs
                .write()
                .get_mut(&to.id)
                .map(|e| e.links.remove(&from))
                .unwrap_or(false);
        if linked {
            self.deliver(
                &to,
                Signal::Exit {
                    from,
                    reason,
                    exit2: false,
                },
            );
        }
    }

    fn exit2_in(&self, from: Pid, to: Pid, reason: Term) {
        self.deliver(
            &to,
            Signal::Exit {
                from,
                reason,
                exit2: true,
            },
        );
    }

    fn monitor_fired(&self, peer: &str, from: PidOrAtom, to: Pid, mref: Reference, reason: Term) {
        let m = {
            let mut mons = self.mons_out.lock();
            let m = mons.remove(&mref);
            shrink_sparse(&mut mons);
            m
        };
        self.forget_held(&to, &mref);
        let item = match (m, from) {
            (Some(m), _) => m.item,
            (None, PidOrAtom::Pid(p)) => Term::Pid(p),
            (None, PidOrAtom::Atom(a)) => tuple(vec![Term::Atom(a), atom(peer)]),
        };
        self.deliver(&to, Signal::Down { mref, item, reason });
    }

    /// Drops a monitor held on a process of another node and tells that
    /// node (DEMONITOR_P).
    fn demonitor_remote(&self, from: &Pid, mref: &Reference) {
        let removed = {
            let mut mons = self.mons_out.lock();
            let m = mons.remove(mref);
            shrink_sparse(&mut mons);
            m
        };
        let Some(m) = removed else {
            return;
        };
        if let Some(target) = monitor_target(&m.item) {
            let _ = self.send_to_node(
                &m.node,
                Message::demonitor_p(from.clone(), target, mref.clone()),
            );
        }
    }

    fn make_ref_inner(&self) -> Reference {
        let n = self.next_ref.fetch_add(1, Ordering::Relaxed);
        Reference {
            node: self.atom.clone(),
            id: vec![
                (n & 0x3_ffff) as u32,
                (n >> 18) as u32,
                self.creation ^ 0x5a5a,
            ],
            creation: self.creation,
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
fn admit_incoming(me: &str, peer: &PeerInfo, state: PeerState) -> Result<(), &'static str> {
    match state {
        PeerState::Dialling if me > peer.name.to_string().as_str() => Err("nok"),
        PeerState::Up(c) if c == peer.creation => Err("nok"),
        _ => Ok(()),
    }
}

/// What a MONITOR_P/DEMONITOR_P names, from the item a `'DOWN'` reports
/// (a pid, or `{Name, Node}` for a monitor by name).
fn monitor_target(item: &Term) -> Option<PidOrAtom> {
    match item {
        Term::Pid(p) => Some(PidOrAtom::Pid(p.clone())),
        t => match term::as_tuple(t) {
            Some([Term::Atom(a), _]) => Some(PidOrAtom::Atom(a.clone())),
            _ => None,
        },
    }
}

impl Router for Inner {
    fn incoming(&self, peer: &str, msg: Message) {
        self.handle(peer, msg);
    }
}

impl Kernel for Inner {
    fn send(&self, from: &Pid, to: &Dest, msg: Term) -> Result<(), SendError> {
        match to {
            Dest::Pid(p) if p.node.name == self.name => {
                self.deliver(
                    p,
                    Signal::Message {
                        from: Some(from.clone()),
                        msg,
                    },
                );
                Ok(())
            }
            Dest::Pid(p) => self.send_to_node(&p.node.name, Message::send(p.clone(), msg)),
            Dest::Name(name, node) if *node == self.name => {
                let p = self
                    .names
                    .read()
                    .get(name)
                    .cloned()
                    .ok_or(SendError::NoProc)?;
                self.deliver(
                    &p,
                    Signal::Message {
                        from: Some(from.clone()),
                        msg,
                    },
                );
                Ok(())
            }
            Dest::Name(name, node) => self.send_to_node(
                node,
                Message::reg_send(from.clone(), Atom::from(name.as_str()), msg),
            ),
        }
    }

    fn send_alias(&self, from: &Pid, alias: &Reference, msg: Term) -> Result<(), SendError> {
        if alias.node.name == self.name {
            // Our processes make no aliases: nothing can be reached.
            return Ok(());
        }
        self.send_to_node(
            &alias.node.name,
            Message::alias_send(from.clone(), alias.clone(), msg),
        )
    }

    fn monitor(&self, from: &Pid, to: &Dest) -> Reference {
        let mref = self.make_ref_inner();
        let (node, item, target) = match to {
            Dest::Pid(p) => (
                p.node.name.clone(),
                Term::Pid(p.clone()),
                PidOrAtom::Pid(p.clone()),
            ),
            Dest::Name(n, node) => (
                node.clone(),
                tuple(vec![atom(n), atom(node)]),
                PidOrAtom::Atom(Atom::from(n.as_str())),
            ),
        };
        if node == self.name {
            let ok = match self.local_target(&target) {
                Some(t) => {
                    let added = self.add_monitor(&t, mref.clone(), from.clone(), target);
                    if added {
                        self.hold(from, &mref, Some(t.id));
                    }
                    added
                }
                None => false,
            };
            if !ok {
                self.deliver(
                    from,
                    Signal::Down {
                        mref: mref.clone(),
                        item,
                        reason: atom("noproc"),
                    },
                );
            }
            return mref;
        }
        self.mons_out.lock().insert(
            mref.clone(),
            MonOut {
                watcher: from.clone(),
                node: node.clone(),
                item: item.clone(),
            },
        );
        self.hold(from, &mref, None);
        if self
            .send_to_node(
                &node,
                Message::monitor_p(from.clone(), target, mref.clone()),
            )
            .is_err()
        {
            self.mons_out.lock().remove(&mref);
            self.forget_held(from, &mref);
            self.deliver(
                from,
                Signal::Down {
                    mref: mref.clone(),
                    item,
                    reason: atom("noconnection"),
                },
            );
        }
        mref
    }

    fn demonitor(&self, from: &Pid, mref: &Reference) {
        let held = match self.procs.write().get_mut(&from.id) {
            Some(e) => {
                let h = e.held.remove(mref);
                shrink_sparse(&mut e.held);
                h
            }
            None => None,
        };
        match held {
            Some(Some(target)) => {
                if let Some(e) = self.procs.write().get_mut(&target) {
                    e.monitors.remove(mref);
                }
            }
            Some(None) => self.demonitor_remote(from, mref),
            None => {}
        }
    }

    fn link(&self, from: &Pid, to: &Pid) {
        if let Some(e) = self.procs.write().get_mut(&from.id) {
            e.links.insert(to.clone());
        }
        if self.is_local(to) {
            let ok = match self.procs.write().get_mut(&to.id) {
                Some(e) => {
                    e.links.insert(from.clone());
                    true
                }
                None => false,
            };
            if !ok {
                self.link_exit(to.clone(), from.clone(), atom("noproc"));
            }
        } else if self
            .send_to_node(&to.node.name, Message::link(from.clone(), to.clone()))
            .is_err()
        {
            self.link_exit(to.clone(), from.clone(), atom("noconnection"));
        }
    }

    fn unlink(&self, from: &Pid, to: &Pid) {
        if let Some(e) = self.procs.write().get_mut(&from.id) {
            e.links.remove(to);
        }
        if self.is_local(to) {
            if let Some(e) = self.procs.write().get_mut(&to.id) {
                e.links.remove(from);
            }
        } else {
            let id = self.next_ref.fetch_add(1, Ordering::Relaxed);
            let _ = self.send_to_node(
                &to.node.name,
                Message::unlink_id(
                    term::int((id & 0x7ff_ffff) as i32),
                    from.clone(),
                    to.clone(),
                ),
            );
        }
    }

    fn exit2(&self, from: &Pid, to: &Pid, reason: Term) {
        if self.is_local(to) {
            self.exit2_in(from.clone(), to.clone(), reason);
        } else {
            let _ = self.send_to_node(
                &to.node.name,
                Message::exit2(from.clone(), to.clone(), reason),
            );
        }
    }

    fn register(&self, pid: &Pid, name: &str) -> Result<(), SendError> {
        let mut names = self.names.write();
        if names.contains_key(name) {
            return Err(SendError::NameTaken(name.to_string()));
        }
        match self.procs.write().get_mut(&pid.id) {
            Some(e) => e.name = Some(name.to_string()),
            None => return Err(SendError::NoProc),
        }
        names.insert(name.to_string(), pid.clone());
        Ok(())
    }

    fn make_ref(&self) -> Reference {
        self.make_ref_inner()
    }

    fn exited(&self, pid: &Pid, reason: Term) {
        let removed = {
            let mut procs = self.procs.write();
            let e = procs.remove(&pid.id);
            shrink_sparse(&mut procs);
            e
        };
        let Some(e) = removed else {
            return;
        };
        if let Some(n) = &e.name {
            self.names.write().remove(n);
        }
        for l in e.links {
            if self.is_local(&l) {
                self.link_exit(pid.clone(), l, reason.clone());
            } else {
                let node = l.node.name.clone();
                let _ = self.send_to_node(&node, Message::exit(pid.clone(), l, reason.clone()));
            }
        }
        for (mref, (watcher, how)) in e.monitors {
            if self.is_local(&watcher) {
                self.forget_held(&watcher, &mref);
                let item = match &how {
                    PidOrAtom::Pid(p) => Term::Pid(p.clone()),
                    PidOrAtom::Atom(a) => tuple(vec![Term::Atom(a.clone()), atom(&self.name)]),
                };
                self.deliver(
                    &watcher,
                    Signal::Down {
                        mref,
                        item,
                        reason: reason.clone(),
                    },
                );
            } else {
                let _ = self.send_to_node(
                    &watcher.node.name,
                    Message::monitor_p_exit(how, watcher.clone(), mref, reason.clone()),
                );
            }
        }
        // Monitors this process held on others are no longer wanted.
        for (mref, target) in e.held {
            match target {
                Some(t) => {
                    if let Some(te) = self.procs.write().get_mut(&t) {
                        te.monitors.remove(&mref);
                        shrink_sparse(&mut te.monitors);
                    }
                }
                None => self.demonitor_remote(pid, &mref),
            }
        }
    }

    fn node_name(&self) -> &str {
        &self.name
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Cookie;
    use std::time::Duration;

    async fn node() -> (Node, EpmdServer) {
        let epmd = EpmdServer::start("127.0.0.1", 0).await.unwrap();
        let mut c = NodeConfig::new(NodeName::parse("unit@localhost").unwrap(), Cookie::new("c"));
        c.epmd_port = epmd.port;
        c.embedded_epmd = false;
        (Node::start(c).await.unwrap(), epmd)
    }

    #[test]
    fn simultaneous_connect_greater_name_keeps_its_attempt() {
        let peer = |n: &str, creation| PeerInfo {
            name: NodeName::parse(n).unwrap(),
            flags: 0,
            creation,
        };
        let a = peer("a@h", 1);
        assert_eq!(admit_incoming("b@h", &a, PeerState::Dialling), Err("nok"));
        assert_eq!(
            admit_incoming("a@h", &peer("b@h", 1), PeerState::Dialling),
            Ok(())
        );
        assert_eq!(admit_incoming("b@h", &a, PeerState::None), Ok(()));
        // Already connected to that incarnation: a late duplicate.
        assert_eq!(
            admit_incoming("a@h", &peer("b@h", 1), PeerState::Up(1)),
            Err("nok")
        );
        // A restarted peer (new creation) replaces the old connection.
        assert_eq!(admit_incoming("b@h", &a, PeerState::Up(7)), Ok(()));
    }

    #[tokio::test]
    async fn a_panicking_process_ends_with_a_panic_reason_and_the_node_lives_on() {
        let (n, _epmd) = node().await;
        let mut watcher = n.spawn_process();
        let pid = n.spawn(|mut p| async move {
            let _ = p.recv().await;
            panic!("boom");
        });
        let mref = watcher.monitor(pid.clone());
        watcher.send(pid.clone(), atom("go")).unwrap();
        match watcher.recv_timeout(Duration::from_secs(2)).await.unwrap() {
            Some(Signal::Down {
                mref: m, reason, ..
            }) => {
                assert_eq!(m, mref);
                assert_eq!(reason, tuple(vec![atom("panic"), atom("rust")]));
            }
            other => panic!("{other:?}"),
        }
        assert!(!n.is_alive(&pid));
        assert!(
            n.is_alive(watcher.pid()),
            "the node and its other processes live on"
        );
        n.shutdown().await;
    }

    #[tokio::test]
    async fn peer_info_counts_each_connection_both_ways() {
        let (a, epmd) = node().await;
        let mut c = NodeConfig::new(
            NodeName::parse("unit2@localhost").unwrap(),
            Cookie::new("c"),
        );
        c.epmd_port = epmd.port;
        c.embedded_epmd = false;
        let b = Node::start(c).await.unwrap();
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
    async fn local_monitors_fire_once_and_demonitor_forgets() {
        let (n, _epmd) = node().await;
        let mut a = n.spawn_process();
        let b = n.spawn_process();
        let m1 = a.monitor(b.pid().clone());
        a.demonitor(&m1);
        let m2 = a.monitor(b.pid().clone());
        let bpid = b.pid().clone();
        b.exit(atom("bye"));
        match a.recv_timeout(Duration::from_secs(1)).await.unwrap() {
            Some(Signal::Down { mref, item, reason }) => {
                assert_eq!(mref, m2);
                assert_eq!(item, Term::Pid(bpid.clone()));
                assert_eq!(reason, atom("bye"));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            a.recv_timeout(Duration::from_millis(50)).await.unwrap(),
            None
        );
        // A monitor on a dead pid: noproc at once.
        let m3 = a.monitor(bpid);
        assert!(matches!(
            a.recv_timeout(Duration::from_secs(1)).await.unwrap(),
            Some(Signal::Down { mref, reason, .. }) if mref == m3 && reason == atom("noproc")
        ));
        // The watcher's exit drops the monitors it held on live processes.
        let c = n.spawn_process();
        let _ = a.monitor(c.pid().clone());
        drop(a);
        assert!(n.inner.procs.read()[&c.pid().id].monitors.is_empty());
        n.shutdown().await;
    }
}
