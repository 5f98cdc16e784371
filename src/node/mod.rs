//! The node: a set of light processes with real pids, connected to other
//! nodes over the distribution protocol.
//!
//! [`Node`] is a cheap handle (an `Arc`). Processes reach the node through
//! the [`crate::process::Kernel`] trait; connections deliver into it through
//! [`crate::dist::connection::Router`]. [`cluster`] keeps it connected:
//! seeds, discovery and redialling after a loss.
//!
//! The parts, each in its own file because each changes for its own reason:
//!
//! ```text
//!   local processes                              peers (TCP, dist/)
//!        │  Kernel (kernel.rs)                        │
//!        ▼  send, monitor, link, exit, register       │ Router (router.rs)
//!   ┌──────────────────────────────────────────┐      │ control message
//!   │ registry.rs  pids, refs, names, procs    │◀─────┘  -> local signal
//!   │ links.rs     links, monitors, nodedown   │
//!   │ peers.rs     dial, accept, admission,    │──────▶ connection::drive
//!   │              EPMD registration           │        (one task a peer)
//!   └──────────────────────────────────────────┘
//!   mod.rs (this file): the handle, start/shutdown/spawn/connect
//!   services.rs: net_kernel responder, rex client (rpc)
//!   reason.rs: why a peer went down (NodeEvent::Down, Node::connect)
//! ```

pub mod cluster;
mod kernel;
mod links;
mod peers;
mod reason;
mod registry;
mod router;
mod services;
pub(crate) mod supervise;

use crate::config::{NodeConfig, NodeName};
use crate::dist::connection::{LinkStats, PeerLink};
use crate::dist::raw::RawNames;
use crate::epmd::{self, server::EpmdServer, NodeEntry};
use crate::process::{Kernel, Process, SendError};
use crate::term::{self, atom, tuple, Atom, Pid};
use links::MonsOut;
use parking_lot::{Mutex, RwLock};
use peers::{Dial, Peer};
pub use reason::DownReason;
use registry::ProcTable;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize};
use std::sync::{Arc, Weak};
use tokio::net::TcpListener;
use tokio::sync::{broadcast, Notify};

/// Why the node could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    /// Could not listen for distribution connections.
    #[error("cannot listen: {0}")]
    Listen(std::io::Error),
    /// Every port of [`NodeConfig::listen_ports`] is taken.
    #[error("{}", no_free_port(.0))]
    NoFreePort(crate::config::PortRange),
    /// EPMD failed.
    #[error(transparent)]
    Epmd(#[from] epmd::EpmdError),
    /// The configuration is refused ([`NodeConfig::check`]).
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
}

/// What [`StartError::NoFreePort`] says: for one port (`--erl-epmd-port`,
/// `--dist-port-range PORT`), that it is in use, as erl's `eaddrinuse`.
fn no_free_port(ports: &crate::config::PortRange) -> String {
    if ports.min == ports.max {
        format!(
            "the distribution port {} is in use (another node on this host?)",
            ports.min
        )
    } else {
        format!("no free distribution port in {ports} (inet_dist_listen_min/max)")
    }
}

/// A connected peer, as [`Node::peer_info`] shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerStats {
    /// The peer's name.
    pub node: String,
    /// The peer's creation (its incarnation).
    pub creation: u32,
    /// Whether the peer is hidden (a cpg-node, a query client, an erl
    /// started with `-hidden`): such a peer is not in `erlang:nodes()`.
    pub hidden: bool,
    /// The connection's counters.
    pub link: LinkStats,
}

/// A peer came or went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeEvent {
    /// A connection is up.
    Up {
        /// The peer.
        node: String,
        /// It is a hidden node (it did not publish itself: a C node, a
        /// `cpg-node` client, another hidden node).
        hidden: bool,
    },
    /// A connection went down, or an attempt to make one failed (a `Down`
    /// with no `Up` of its own before it: so two may come in a row).
    /// Processes that watch nodes get a `NodeDown` for the first kind only
    /// ([`Process::monitor_nodes`](crate::process::Process::monitor_nodes)).
    Down {
        /// The peer.
        node: String,
        /// Why.
        reason: DownReason,
    },
}

struct Inner {
    me: Weak<Inner>,
    config: NodeConfig,
    name: String,
    atom: Atom,
    creation: u32,
    port: u16,
    procs: ProcTable,
    names: RwLock<HashMap<String, Pid>>,
    /// The names of `names` registered with `register_raw`: changed
    /// under the `names` write lock, read by the links.
    raw_names: RawNames,
    next_id: AtomicU32,
    next_ref: AtomicU64,
    next_conn: AtomicU64,
    /// Dials under way that no one asked for by name: a send, monitor,
    /// link or reply to a node not connected (as BEAM connects on its
    /// own). At most [`peers::max_unasked_dials`] at once: each holds a
    /// socket up to `net_setuptime`, and a peer naming made-up nodes (cpg
    /// joins of their pids, calls with their pids as `From`) had this node
    /// dial thousands at once, out of file descriptors.
    unasked_dials: AtomicUsize,
    /// Warnings of unasked dials refused at that bound, rate-limited.
    dial_refusals: Arc<crate::util::FloodLog>,
    /// Peers by name: read by every remote send, written when a peer is
    /// dialled, comes up, or goes.
    peers: RwLock<HashMap<String, Peer>>,
    /// Monitors our processes hold on processes elsewhere, by the key of
    /// their ref.
    mons_out: Mutex<MonsOut>,
    /// The active aliases of our processes' calls ([`Process::call`]): the
    /// key of the call's ref, by which its reply may come (ALIAS_SEND),
    /// and the process it reaches. A reply to an alias no longer here is
    /// dropped.
    aliases: Mutex<crate::util::FastHashMap<registry::RefKey, u32>>,
    /// Processes told of connections coming and going, by id
    /// ([`Process::monitor_nodes`]).
    node_watchers: Mutex<Vec<u32>>,
    /// Monitors and links each peer set on our processes since they were
    /// last counted ([`Inner::count_hold`]).
    holds_added: Mutex<HashMap<String, usize>>,
    events: broadcast::Sender<NodeEvent>,
    /// Nodes a peer's cpg view lists members of, that this node is not
    /// connected to ([`Node::heard_of`]), for the cluster keeper.
    sightings: broadcast::Sender<String>,
    /// Held while a connection's end is reported (its peer entry removed,
    /// its links and monitors fired, [`NodeEvent::Down`] sent) and while a
    /// connection is reported up, so that a node's `Down` for one
    /// connection always comes before the `Up` of the next: a new
    /// connection that came up while the old one's end was being reported
    /// was once followed by the old one's `Down`, and the cpg scopes took
    /// the node for gone while it was connected (`peers::Inner::end_peer`).
    peer_order: Mutex<()>,
    /// [`Node::shutdown`] has begun.
    stopping: AtomicBool,
    tasks: Mutex<Vec<tokio::task::JoinHandle<()>>>,
    /// Connections running (handshake done, see `peers::LiveConn`), and
    /// their end, which shutdown waits for.
    live_conns: AtomicUsize,
    conn_ended: Notify,
    started: std::time::Instant,
    /// The embedded EPMD this node runs, if it started one (at start, or
    /// when the EPMD it registered with went away).
    epmd_server: Mutex<Option<EpmdServer>>,
}

/// How long [`Node::shutdown`] waits for the connections to write out what
/// is queued for them.
pub const SHUTDOWN_FLUSH: std::time::Duration = std::time::Duration::from_secs(5);

/// A running node. Clone it freely.
///
/// The node runs until [`Node::shutdown`], as a BEAM node runs until it
/// is stopped: dropping every handle does not stop it (its tasks keep
/// its connections, its EPMD entry and its processes). After `shutdown`
/// it dials no node and every process made with it is dead at once.
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
    /// and starts the `net_kernel` responder. It listens on the first free
    /// port of [`NodeConfig::listen_ports`] (any port by default).
    pub async fn start(config: NodeConfig) -> Result<Node, StartError> {
        config.check()?;
        let listener = peers::listen(config.listen_ports, config.listen_addr).await?;
        Node::start_with_listener(config, listener).await
    }

    /// [`Node::start`] on a listener the caller has bound (a port chosen
    /// elsewhere, a socket handed down): distribution connections are
    /// accepted on it and EPMD is given its port.
    /// [`NodeConfig::listen_ports`] is not used.
    pub async fn start_with_listener(
        config: NodeConfig,
        listener: TcpListener,
    ) -> Result<Node, StartError> {
        config.check()?;
        let port = listener.local_addr().map_err(StartError::Listen)?.port();
        let entry = NodeEntry::hidden(config.name.alive(), port);
        let (reg, server) = peers::register_first(&config, &entry).await?;
        let creation = match &reg {
            // Creations 0-3 are the old 2-bit ones: moved out of their range
            // (as the embedded EPMD's are) so that our pids use the new form.
            Some(r) if r.creation < 4 => r.creation + 0xE10000,
            Some(r) => r.creation,
            // Unregistered: one of our own, as EPMD would have given.
            None => rand::random::<u32>() | 0x10,
        };
        let name = config.name.to_string();
        // Our own pids must be nameable however full the node-name table
        // is of names that came in messages (`crate::atom`).
        if let Err(e) = crate::atom::Atom::new_peer(&name) {
            tracing::warn!("this node's own name cannot be interned: {e}");
        }
        let (events, _) = broadcast::channel(1024);
        // (A keeper that falls behind loses some: they are told again at
        // the next exchange or poll that lists them.)
        let (sightings, _) = broadcast::channel(64);
        let inner = Arc::new_cyclic(|me| Inner {
            me: me.clone(),
            atom: Atom::from(name.as_str()),
            name,
            creation,
            port,
            config,
            procs: ProcTable::default(),
            names: RwLock::default(),
            raw_names: RawNames::default(),
            next_id: AtomicU32::new(100),
            next_ref: AtomicU64::new(1),
            next_conn: AtomicU64::new(1),
            unasked_dials: AtomicUsize::new(0),
            dial_refusals: crate::util::FloodLog::new(
                10,
                std::time::Duration::from_secs(1),
                |held_back| {
                    tracing::warn!(held_back, "{held_back} more dials refused (too many under way that no one asked for) were not logged");
                },
            ),
            peers: RwLock::default(),
            peer_order: Mutex::default(),
            stopping: AtomicBool::new(false),
            mons_out: Mutex::default(),
            aliases: Mutex::default(),
            node_watchers: Mutex::default(),
            holds_added: Mutex::default(),
            events,
            sightings,
            tasks: Mutex::default(),
            live_conns: AtomicUsize::new(0),
            conn_ended: Notify::new(),
            started: std::time::Instant::now(),
            epmd_server: Mutex::new(server),
        });
        let weak = Arc::downgrade(&inner);
        let listener = Arc::new(listener);
        let backoff = inner.config.backoff;
        let accept = supervise::supervise("the accept loop".into(), backoff, move || {
            peers::accept_loop(weak.clone(), listener.clone())
        });
        let weak = Arc::downgrade(&inner);
        let mut first = reg;
        let keeper = supervise::supervise("the EPMD registration".into(), backoff, move || {
            peers::keep_registered(weak.clone(), entry.clone(), first.take())
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
    ///
    /// The process lives as long as the body holds its [`Process`]: move
    /// it into the future (`node.spawn(|mut p| async move { ... p.recv()
    /// ... })`). A body whose future does not take it drops it at once,
    /// and the process ends with reason `normal` before the future runs.
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

    /// Creates a process registered under `name` whose large messages from
    /// other nodes may come as [`Signal::Raw`](crate::process::Signal::Raw)
    /// ([`Process::register_raw`]).
    pub fn spawn_registered_raw(&self, name: &str) -> Result<Process, SendError> {
        let p = self.inner.new_process();
        p.register_raw(name)?;
        Ok(p)
    }

    /// The pid registered under `name`.
    pub fn whereis(&self, name: &str) -> Option<Pid> {
        self.inner.names.read().get(name).cloned()
    }

    /// Whether a local pid is alive.
    pub fn is_alive(&self, pid: &Pid) -> bool {
        self.inner.is_alive(pid)
    }

    /// Connected peers (handshake done).
    pub fn peers(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .inner
            .peers
            .read()
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
            .read()
            .get(node)
            .is_some_and(|p| p.up_creation.is_some())
    }

    /// Whether `node` is connected and hidden (a `cpg-node`, a query
    /// client, an `erl -hidden`); `None` when not connected.
    pub fn is_hidden_peer(&self, node: &str) -> Option<bool> {
        self.inner
            .peers
            .read()
            .get(node)
            .filter(|p| p.up_creation.is_some())
            .map(|p| p.hidden)
    }

    /// How long the node has been running.
    pub fn uptime(&self) -> std::time::Duration {
        self.inner.started.elapsed()
    }

    /// Whether [`Node::shutdown`] has begun: a task that keeps a service
    /// running (restarts it when it ends) stops doing so then.
    pub fn is_stopping(&self) -> bool {
        self.inner
            .stopping
            .load(std::sync::atomic::Ordering::Acquire)
    }

    /// How many processes the node hosts (its own `net_kernel` included).
    pub fn process_count(&self) -> usize {
        self.inner.procs.len()
    }

    /// Every connected peer with its connection's counters, sorted by name.
    pub fn peer_info(&self) -> Vec<PeerStats> {
        let mut v: Vec<PeerStats> = self
            .inner
            .peers
            .read()
            .iter()
            .filter_map(|(n, p)| {
                p.up_creation.map(|creation| PeerStats {
                    node: n.clone(),
                    creation,
                    hidden: p.hidden,
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

    /// Tells the cluster keeper ([`crate::node::cluster::Cluster`]) that a
    /// peer's cpg view lists members of `node`: another hidden node (a
    /// second cpg-node, mostly) whose members reach this one only over a
    /// connection of their own, as each node's members are read from that
    /// node. Ignored where the keeper could not dial it: our own name, a
    /// node connected already, a name `erl` would not take as a node's or
    /// of the other name kind (a peer may list any name).
    pub(crate) fn heard_of(&self, node: &str) {
        if self.inner.sightings.receiver_count() > 0 && self.could_dial(node).is_some() {
            let _ = self.inner.sightings.send(node.to_string());
        }
    }

    /// `node` parsed, where this node could dial it and is not connected
    /// to it: not our own name, a name `erl` would take as a node's, and of
    /// our name kind. (For names a peer listed, which may be anything.)
    pub(crate) fn could_dial(&self, node: &str) -> Option<NodeName> {
        if node == self.name() || self.is_connected(node) {
            return None;
        }
        let name = NodeName::parse(node).ok()?;
        let fits = name.check_own().is_ok()
            && crate::config::mixed_names(&self.inner.config.name, &name).is_none();
        fits.then_some(name)
    }

    /// The names [`Node::heard_of`] tells of, for the cluster keeper.
    pub(crate) fn sightings(&self) -> broadcast::Receiver<String> {
        self.inner.sightings.subscribe()
    }

    /// Connects to `node` (no-op if connected) and waits until the
    /// connection is up or has failed, and why ([`DownReason`]). This
    /// node's own name is never dialled: `Ok` at once, as
    /// `net_kernel:connect_node(node())` is `true`.
    pub async fn connect(&self, node: &str) -> Result<(), DownReason> {
        if node == self.name() {
            return Ok(());
        }
        let mut ev = self.subscribe();
        if self.peers().iter().any(|p| p == node) {
            return Ok(());
        }
        self.inner
            .peer_tx(node, Dial::Asked)
            .map_err(|e| DownReason::Unreachable(e.to_string()))?;
        let wait = async {
            loop {
                if self.peers().iter().any(|p| p == node) {
                    return Ok(());
                }
                match ev.recv().await {
                    Ok(NodeEvent::Up { node: n, .. }) if n == node => return Ok(()),
                    Ok(NodeEvent::Down { node: n, reason }) if n == node => return Err(reason),
                    Err(broadcast::error::RecvError::Closed) => {
                        return Err(DownReason::ClosedLocally)
                    }
                    _ => {}
                }
            }
        };
        tokio::time::timeout(std::time::Duration::from_secs(15), wait)
            .await
            .map_err(|_| DownReason::HandshakeTimeout)?
    }

    /// Closes the connection to `node` (like `erlang:disconnect_node/1`).
    pub fn disconnect(&self, node: &str) {
        self.inner.drop_peer(node, DownReason::Disconnected);
    }

    /// Stops the node: every process ends with reason `shutdown` (links and
    /// monitors are told), the messages queued for each peer are written
    /// out (waiting at most [`SHUTDOWN_FLUSH`] for a slow peer),
    /// connections close, the EPMD entry goes, and an embedded EPMD the
    /// node runs stops.
    pub async fn shutdown(&self) {
        self.inner
            .stopping
            .store(true, std::sync::atomic::Ordering::Release);
        let pids: Vec<Pid> = self
            .inner
            .procs
            .ids()
            .into_iter()
            .map(|id| self.inner.pid(id))
            .collect();
        for p in pids {
            self.inner.exited(&p, atom("shutdown"));
        }
        // Dropping the queues lets each writer flush what is queued and
        // close; the connections' tasks end once they have.
        let links: Vec<Arc<PeerLink>> = self
            .inner
            .peers
            .write()
            .drain()
            .map(|(_, p)| p.link.clone())
            .collect();
        if tokio::time::timeout(SHUTDOWN_FLUSH, self.inner.connections_ended())
            .await
            .is_err()
        {
            tracing::warn!(
                "shutdown: peers still had messages queued after {SHUTDOWN_FLUSH:?}; closing"
            );
            for l in links {
                l.close.notify_one();
            }
        }
        // Aborting the EPMD keeper drops the registration: EPMD forgets us.
        let tasks: Vec<_> = self.inner.tasks.lock().drain(..).collect();
        for t in &tasks {
            t.abort();
        }
        // Ended, so that the EPMD keeper cannot start an EPMD after the
        // line below.
        for t in tasks {
            let _ = t.await;
        }
        // An embedded EPMD stops with its node, as it would with the
        // process; nodes registered with it find or start another.
        let epmd = self.inner.epmd_server.lock().take();
        if let Some(s) = epmd {
            s.stop().await;
        }
        tracing::info!(node = %self.name(), "node stopped");
    }
}

impl Inner {
    fn arc(&self) -> Arc<Inner> {
        self.me.upgrade().expect("node alive while in use")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Cookie, NodeName};
    use crate::process::Signal;
    use std::time::Duration;

    /// The configuration of a node named `name@localhost` registering with
    /// the EPMD on `epmd`.
    pub(super) fn config(name: &str, epmd: u16) -> NodeConfig {
        let mut c = NodeConfig::new(
            NodeName::parse(&format!("{name}@localhost")).unwrap(),
            Cookie::new("c"),
        );
        c.epmd_port = epmd;
        c.embedded_epmd = false;
        c
    }

    /// A node named `name@localhost` registered with the EPMD on `epmd`.
    pub(super) async fn node_named(name: &str, epmd: u16) -> Node {
        Node::start(config(name, epmd)).await.unwrap()
    }

    /// A node with an EPMD of its own (keep the EPMD alive as long as it).
    pub(super) async fn node() -> (Node, EpmdServer) {
        let epmd = EpmdServer::start("127.0.0.1", 0).await.unwrap();
        (node_named("unit", epmd.port).await, epmd)
    }

    /// A server on `serve_calls_async` works on its calls together: a call
    /// made after a slow one, from another node, is answered first, each
    /// caller gets its own answer, and `sys` is answered meanwhile. Once
    /// the server has ended, its sender is refused.
    #[tokio::test]
    async fn async_served_calls_run_together_and_each_caller_gets_its_reply() {
        use crate::process::Dest;
        let (a, epmd) = node().await;
        let b = node_named("b", epmd.port).await;
        let mut server = a.spawn_registered("slow").unwrap();
        let sender = server.sender();
        let served = tokio::spawn(async move {
            server
                .serve_calls_async(
                    |req| async move {
                        let ms = term::as_int(&req).unwrap_or(0) as u64;
                        tokio::time::sleep(Duration::from_millis(ms)).await;
                        tuple(vec![atom("slept"), req])
                    },
                    |_, _| {},
                )
                .await
        });
        let to = Dest::Name("slow".into(), a.name().into());
        let (done_tx, mut done_rx) = tokio::sync::mpsc::unbounded_channel();
        for ms in [3000i64, 0, 20] {
            let mut caller = b.spawn_process();
            let (to, done_tx) = (to.clone(), done_tx.clone());
            tokio::spawn(async move {
                let n = term::Term::from(term::FixInteger::from(ms as i32));
                let r = caller.call(to, n.clone(), Duration::from_secs(10)).await;
                let _ = done_tx.send((ms, r.map(|r| r == tuple(vec![atom("slept"), n]))));
            });
            // (Made in this order.)
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let first = done_rx.recv().await.unwrap();
        let second = done_rx.recv().await.unwrap();
        assert_eq!((first, second), ((0, Ok(true)), (20, Ok(true))));
        // `sys:get_state` while the slow call is worked on.
        let mut asker = b.spawn_process();
        let sys = tuple(vec![
            atom("system"),
            tuple(vec![asker.pid().clone().into(), asker.make_ref().into()]),
            atom("get_state"),
        ]);
        asker.send(to.clone(), sys).unwrap();
        let got = asker.recv_timeout(Duration::from_secs(5)).await.unwrap();
        assert!(
            matches!(&got, Some(crate::process::Signal::Message { msg, .. }) if term::as_tuple(msg).is_some_and(|t| t.len() == 2 && term::as_atom(&t[1]) == Some("undefined"))),
            "{got:?}"
        );
        assert_eq!(done_rx.recv().await.unwrap(), (3000, Ok(true)));
        // Killed: the loop returns the reason; its sender sends nothing.
        assert!(sender.is_alive());
        asker.exit_other(sender.pid(), atom("kill"));
        assert_eq!(served.await.unwrap(), atom("killed"));
        assert!(!sender.is_alive());
        assert_eq!(
            sender.send(asker.pid().clone(), atom("late")),
            Err(SendError::Ended)
        );
        b.shutdown().await;
        a.shutdown().await;
    }

    /// A process killed while messages wait in its mailbox does nothing
    /// more: no reply to any of them comes after its `'DOWN'` (on BEAM
    /// the exit ends it between two reductions), to a watcher on its node
    /// or another; its next receive gives the reason, and its sends are
    /// refused.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_killed_process_sends_nothing_after_its_down() {
        use crate::process::Dest;
        let (a, epmd) = node().await;
        let b = node_named("b", epmd.port).await;
        for watcher_node in [&a, &b] {
            let mut echo = a.spawn_process();
            let target = echo.pid().clone();
            let ended = tokio::spawn(async move {
                let reason = loop {
                    match echo.recv().await {
                        Ok(Signal::Message { msg, .. }) => {
                            if let Some([from, n]) = term::as_tuple(&msg) {
                                let to = term::as_pid(from).unwrap().clone();
                                let _ = echo.send(to, n.clone());
                            }
                        }
                        Ok(_) => {}
                        Err(r) => break r,
                    }
                };
                let late = echo.send(Dest::Pid(echo.pid().clone()), atom("late"));
                (reason, late)
            });
            let mut w = watcher_node.spawn_process();
            let mref = w.monitor(Dest::Pid(target.clone()));
            for i in 0..3000 {
                let n = term::Term::from(term::FixInteger::from(i));
                w.send(target.clone(), tuple(vec![w.pid().clone().into(), n]))
                    .unwrap();
            }
            w.exit_other(&target, atom("kill"));
            let mut before = 0;
            loop {
                match w.recv_timeout(Duration::from_secs(5)).await.unwrap() {
                    Some(Signal::Message { .. }) => before += 1,
                    Some(Signal::Down {
                        mref: m, reason, ..
                    }) if m == mref => {
                        assert_eq!(reason, atom("killed"));
                        break;
                    }
                    other => panic!("{other:?}"),
                }
            }
            let after = w.recv_timeout(Duration::from_millis(300)).await.unwrap();
            let on = watcher_node.name();
            assert!(
                after.is_none(),
                "watcher on {on}: after {before} replies and the 'DOWN': {after:?}"
            );
            let (reason, late) = ended.await.unwrap();
            assert_eq!(reason, atom("killed"));
            assert_eq!(late, Err(SendError::Ended));
        }
        b.shutdown().await;
        a.shutdown().await;
    }

    /// A process that watches nodes gets a connection's `NodeUp` before
    /// any message that came over it and its `NodeDown` after every one:
    /// a cpg scope applies a peer's last casts before its nodedown clears
    /// the peer's members, never after.
    #[tokio::test]
    async fn node_ups_and_downs_come_in_order_with_the_connections_messages() {
        let (a, epmd) = node().await;
        let b = node_named("b", epmd.port).await;
        let mut watcher = a.spawn_registered("watcher").unwrap();
        watcher.monitor_nodes(true);
        let sender = b.spawn_process();
        b.connect(a.name()).await.unwrap();
        for i in 0..100 {
            let to = crate::process::Dest::Name("watcher".into(), a.name().into());
            sender
                .send(
                    to,
                    crate::term::Term::from(crate::term::FixInteger::from(i)),
                )
                .unwrap();
        }
        // Sent before the disconnect: all come before the NodeDown.
        tokio::time::sleep(Duration::from_millis(100)).await;
        b.disconnect(a.name());
        let mut seen = Vec::new();
        loop {
            match watcher.recv_timeout(Duration::from_secs(5)).await.unwrap() {
                Some(Signal::NodeUp { node, .. }) => seen.push(format!("up {node}")),
                Some(Signal::NodeDown { node }) => {
                    seen.push(format!("down {node}"));
                    break;
                }
                Some(Signal::Message { .. }) => seen.push("msg".into()),
                other => panic!("{other:?}"),
            }
        }
        let mut want = vec![format!("up {}", b.name())];
        want.extend(std::iter::repeat_n("msg".to_string(), 100));
        want.push(format!("down {}", b.name()));
        assert_eq!(seen, want);
        // Not asked for: nothing.
        watcher.monitor_nodes(false);
        b.connect(a.name()).await.unwrap();
        assert_eq!(
            watcher
                .recv_timeout(Duration::from_millis(100))
                .await
                .unwrap(),
            None
        );
        b.shutdown().await;
        a.shutdown().await;
    }

    /// As `net_kernel:monitor_nodes(true)` on BEAM: a `NodeDown` only for
    /// a connection that was up. An attempt that fails (no such node, a
    /// peer that stalls in the handshake, a dial ended by `disconnect`)
    /// tells the watcher nothing, though [`NodeEvent::Down`] reports it to
    /// the caller.
    #[tokio::test]
    async fn a_failed_attempt_tells_a_node_watcher_nothing() {
        let epmd = EpmdServer::start("127.0.0.1", 0).await.unwrap();
        let mute = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = mute.local_addr().unwrap().port();
        let accepted = hold_accepted(mute);
        // (1.5 s: the dial ended by a disconnect below is still under way
        // then.)
        let (n, _entry) = dialer_of("mute", port, epmd.port, Duration::from_millis(1500)).await;
        let mut watcher = n.spawn_process();
        watcher.monitor_nodes(true);
        let mut ev = n.subscribe();
        // No such node; a peer that says nothing (net_setuptime).
        assert!(n.connect("nosuch@localhost").await.is_err());
        assert!(n.connect("mute@localhost").await.is_err());
        // A dial ended by a disconnect while it is under way.
        let dialling = n.clone();
        let dial = tokio::spawn(async move { dialling.connect("mute@localhost").await });
        tokio::time::sleep(Duration::from_millis(100)).await;
        n.disconnect("mute@localhost");
        assert_eq!(dial.await.unwrap(), Err(DownReason::Disconnected));
        let mut downs = 0;
        while let Ok(e) = ev.try_recv() {
            assert!(matches!(e, NodeEvent::Down { .. }), "{e:?}");
            downs += 1;
        }
        assert_eq!(downs, 3, "each failed attempt reported to the caller");
        assert_eq!(
            watcher
                .recv_timeout(Duration::from_millis(200))
                .await
                .unwrap(),
            None
        );
        accepted.abort();
        n.shutdown().await;
    }

    /// Accepts every connection to `listener` and holds it, saying nothing
    /// (a peer or an EPMD that stalls), until the task is aborted.
    fn hold_accepted(listener: tokio::net::TcpListener) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((s, _)) = listener.accept().await {
                held.push(s);
            }
        })
    }

    /// A node `dialer` whose `net_setuptime` is `setup`, and `name`
    /// registered at `port` in the EPMD at `epmd` (for as long as the
    /// entry is kept).
    async fn dialer_of(
        name: &str,
        port: u16,
        epmd: u16,
        setup: Duration,
    ) -> (Node, crate::epmd::Registration) {
        let entry = crate::epmd::register(
            "127.0.0.1",
            epmd,
            crate::epmd::NodeEntry::hidden(name, port),
        )
        .await
        .unwrap();
        let mut c = config("dialer", epmd);
        c.net_setuptime = setup;
        (Node::start(c).await.unwrap(), entry)
    }

    /// A dial whose SYN goes unanswered (a listener whose accept queue is
    /// full drops it, as a partitioned network does) ends at
    /// `net_setuptime`, not after the kernel's two minutes of retries.
    #[tokio::test]
    async fn a_dial_into_silence_ends_at_net_setuptime() {
        let epmd = EpmdServer::start("127.0.0.1", 0).await.unwrap();
        let silent = tokio::net::TcpSocket::new_v4().unwrap();
        silent.bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let silent = silent.listen(0).unwrap();
        let port = silent.local_addr().unwrap().port();
        // The accept queue filled: the next SYN is dropped.
        let mut held = Vec::new();
        loop {
            let c = tokio::net::TcpStream::connect(("127.0.0.1", port));
            match tokio::time::timeout(Duration::from_millis(300), c).await {
                Ok(c) => held.push(c.unwrap()),
                Err(_) => break,
            }
            assert!(held.len() < 64, "the listener's queue never filled");
        }
        let (n, _entry) = dialer_of("silent", port, epmd.port, Duration::from_millis(500)).await;
        let t = std::time::Instant::now();
        let got = n.connect("silent@localhost").await;
        let took = t.elapsed();
        assert!(
            matches!(&got, Err(DownReason::Unreachable(e)) if e.contains("net_setuptime")),
            "{got:?}"
        );
        assert!(took < Duration::from_secs(5), "{took:?}");
        n.shutdown().await;
    }

    /// Dials no one asked for (a monitor of a pid on a node not
    /// connected) are at most `max_unasked_dials` at once: past it, a
    /// monitor sees `noconnection` at once and nothing is dialled, while
    /// an asked `connect` still goes through. Once the dials under way end
    /// (at `net_setuptime`), unasked dials go again.
    #[tokio::test]
    async fn unasked_dials_under_way_are_bounded() {
        use crate::process::Dest;
        let epmd = EpmdServer::start("127.0.0.1", 0).await.unwrap();
        // Nodes on 127.0.0.2, whose EPMD port takes a connection and
        // answers nothing: each dial holds its socket until net_setuptime.
        let mute = match tokio::net::TcpListener::bind(("127.0.0.2", epmd.port)).await {
            Ok(l) => l,
            Err(e) => {
                eprintln!("SKIPPED: cannot listen on 127.0.0.2 ({e})");
                return;
            }
        };
        let accepted = hold_accepted(mute);
        let mut c = config("x", epmd.port);
        c.name = NodeName::parse("dialer@127.0.0.1").unwrap();
        c.net_setuptime = Duration::from_secs(2);
        let n = Node::start(c).await.unwrap();
        let max = peers::max_unasked_dials();
        let under_way = || {
            n.inner
                .unasked_dials
                .load(std::sync::atomic::Ordering::Acquire)
        };
        let extra = 20;
        let mut p = n.spawn_process();
        let ghost = |i: usize| Pid::new(format!("g{i}@127.0.0.2"), 1, 0, 1);
        for i in 0..max + extra {
            p.monitor(Dest::Pid(ghost(i)));
        }
        // The ones past the bound at once, the others not yet.
        let mut downs = 0;
        while let Ok(Some(s)) = p.recv_timeout(Duration::from_millis(500)).await {
            assert!(
                matches!(&s, Signal::Down { reason, .. } if term::as_atom(reason) == Some("noconnection")),
                "{s:?}"
            );
            downs += 1;
        }
        assert_eq!(downs, extra);
        assert_eq!(under_way(), max);
        // An asked connect is not held back.
        let mut oc = config("x", epmd.port);
        oc.name = NodeName::parse("other@127.0.0.1").unwrap();
        let other = Node::start(oc).await.unwrap();
        n.connect(other.name()).await.unwrap();
        // At net_setuptime the dials under way end: every monitor fired.
        let t = std::time::Instant::now();
        while downs < max + extra {
            let s = p.recv_timeout(Duration::from_secs(10)).await.unwrap();
            assert!(matches!(s, Some(Signal::Down { .. })), "{s:?}");
            downs += 1;
        }
        assert!(t.elapsed() < Duration::from_secs(8), "{:?}", t.elapsed());
        crate::util::wait_while(|| under_way() > 0, Duration::from_secs(5));
        assert_eq!(under_way(), 0);
        // and unasked dials go again
        p.monitor(Dest::Pid(ghost(0)));
        assert!(p
            .recv_timeout(Duration::from_millis(500))
            .await
            .unwrap()
            .is_none());
        assert_eq!(under_way(), 1);
        accepted.abort();
        other.shutdown().await;
        n.shutdown().await;
    }

    /// A peer that accepts and then says nothing holds a dial no longer
    /// than `net_setuptime` (the handshake is within it, as BEAM's), and
    /// one that dials us and says nothing is let go as soon.
    #[tokio::test]
    async fn a_handshake_that_stalls_ends_at_net_setuptime() {
        let epmd = EpmdServer::start("127.0.0.1", 0).await.unwrap();
        let mute = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = mute.local_addr().unwrap().port();
        let accepted = hold_accepted(mute);
        let (n, _entry) = dialer_of("mute", port, epmd.port, Duration::from_millis(500)).await;
        let t = std::time::Instant::now();
        let got = n.connect("mute@localhost").await;
        assert!(
            matches!(&got, Err(DownReason::Unreachable(e)) if e.contains("handshake") && e.contains("net_setuptime")),
            "{got:?}"
        );
        assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
        // Dialling us and saying nothing: closed by us at net_setuptime.
        let mut quiet = tokio::net::TcpStream::connect(("127.0.0.1", n.port()))
            .await
            .unwrap();
        let mut buf = [0u8; 1];
        let read = tokio::time::timeout(
            Duration::from_secs(5),
            tokio::io::AsyncReadExt::read(&mut quiet, &mut buf),
        )
        .await;
        assert!(matches!(read, Ok(Ok(0)) | Ok(Err(_))), "{read:?}");
        accepted.abort();
        n.shutdown().await;
    }

    /// A node that is shut down dials no node (a connect or a send to one
    /// fails at once) and starts no process: one made after is dead, its
    /// receive ending with `shutdown`.
    #[tokio::test]
    async fn a_node_shut_down_dials_nothing_and_starts_no_process() {
        let (n, epmd) = node().await;
        let other = node_named("other", epmd.port).await;
        n.shutdown().await;
        assert!(n.connect(other.name()).await.is_err());
        assert!(n.peers().is_empty());
        let mut p = n.spawn_process();
        assert!(!n.inner.is_alive(p.pid()));
        // (Dead: it sends nothing.)
        assert_eq!(
            p.send(Pid::new(other.name(), 1, 0, 1), atom("hi")),
            Err(SendError::Ended)
        );
        assert_eq!(p.recv().await, Err(atom("shutdown")));
        assert!(p.stopped_by_node());
        assert!(other.peers().is_empty());
        other.shutdown().await;
    }

    #[tokio::test]
    async fn raw_payloads_reach_only_a_process_registered_raw() {
        use crate::dist::connection::Router;
        use crate::dist::raw::{RawPayload, RawRegSend};
        let (n, _epmd) = node().await;
        let msg = tuple(vec![atom("m"), crate::term::binary(vec![1; 100])]);
        let raw = || RawRegSend {
            from: Pid::new("peer@h", 1, 0, 1),
            to_name: "s".into(),
            payload: RawPayload::of_term(&msg).unwrap(),
        };
        let mut p = n.spawn_registered_raw("s").unwrap();
        assert!(n.inner.raw_names().unwrap().contains("s"));
        n.inner.incoming_raw("peer@h", raw());
        match p.recv().await.unwrap() {
            Signal::Raw { from, payload } => {
                assert_eq!(from.unwrap().node.name, "peer@h");
                assert_eq!(payload.decode().unwrap(), msg);
            }
            s => panic!("{s:?}"),
        }
        // Its name gone with it, the next owner of the name gets the
        // message decoded.
        p.exit(atom("normal"));
        assert!(!n.inner.raw_names().unwrap().contains("s"));
        let mut q = n.spawn_registered("s").unwrap();
        n.inner.incoming_raw("peer@h", raw());
        match q.recv().await.unwrap() {
            Signal::Message { msg: m, .. } => assert_eq!(m, msg),
            s => panic!("{s:?}"),
        }
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
}
