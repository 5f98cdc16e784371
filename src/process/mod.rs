//! Light processes with real pids: a task-owned mailbox with selective
//! receive, links, monitors, exit signals and gen_server call/reply.
//!
//! A [`Process`] talks to the rest of the node only through the [`Kernel`]
//! trait, which the node implements; `process` never imports `node`.

use crate::dist::connection::{PeerLink, QueueLimit};
use crate::dist::raw::RawPayload;
use crate::term::{self, atom, tuple, Encoded, Pid, Reference, Term};
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

/// Something that arrives in a mailbox.
#[derive(Debug, Clone, PartialEq)]
pub enum Signal {
    /// An ordinary message (`from` is known for SEND_SENDER and REG_SEND).
    Message {
        /// The sender, when the wire says.
        from: Option<Pid>,
        /// The message.
        msg: Term,
    },
    /// An exit signal from a linked process, or `exit(Pid, Reason)`.
    Exit {
        /// Who sent it.
        from: Pid,
        /// Why.
        reason: Term,
        /// `exit/2` (an EXIT2 signal) rather than a link breaking.
        exit2: bool,
    },
    /// A large message to a name registered with
    /// [`Process::register_raw`], its payload left as bytes (see
    /// [`crate::dist::raw`]); [`RawPayload::decode`] gives the term.
    Raw {
        /// The sender.
        from: Option<Pid>,
        /// The message, undecoded.
        payload: RawPayload,
    },
    /// A monitor fired.
    Down {
        /// The monitor reference.
        mref: Reference,
        /// The monitored pid, or `{Name, Node}` for a monitor by name.
        item: Term,
        /// Why.
        reason: Term,
    },
    /// A connection to `node` came up ([`Process::monitor_nodes`]), in
    /// order with the messages that come over it.
    NodeUp {
        /// The peer.
        node: String,
        /// It is a hidden node.
        hidden: bool,
    },
    /// The connection to `node` is gone ([`Process::monitor_nodes`]):
    /// every message that came over it is before this in the mailbox.
    NodeDown {
        /// The peer.
        node: String,
    },
}

impl Signal {
    /// The signal with a [`Signal::Raw`] payload decoded into a
    /// [`Signal::Message`] (any other signal as it is); the decoding error
    /// of a payload the link would have dropped.
    pub fn decoded(self) -> Result<Signal, term::TermError> {
        match self {
            Signal::Raw { from, payload } => Ok(Signal::Message {
                from,
                msg: payload.decode()?,
            }),
            s => Ok(s),
        }
    }

    /// The `{'EXIT', From, Reason}` or `{'DOWN', Ref, process, Item,
    /// Reason}` tuple Erlang code would see, or the message itself.
    pub fn to_term(&self) -> Term {
        match self {
            Signal::Message { msg, .. } => msg.clone(),
            // What the link would have refused is dropped there; here it
            // can only be named.
            Signal::Raw { payload, .. } => payload.decode().unwrap_or_else(|_| atom("bad_payload")),
            Signal::Exit { from, reason, .. } => {
                tuple(vec![atom("EXIT"), Term::Pid(from.clone()), reason.clone()])
            }
            Signal::Down { mref, item, reason } => tuple(vec![
                atom("DOWN"),
                Term::Reference(Box::new(mref.clone())),
                atom("process"),
                item.clone(),
                reason.clone(),
            ]),
            Signal::NodeUp { node, .. } => tuple(vec![atom("nodeup"), atom(node)]),
            Signal::NodeDown { node } => tuple(vec![atom("nodedown"), atom(node)]),
        }
    }
}

pub mod mailbox;
pub use mailbox::{mailbox, MailboxRx, MailboxTx, SendGate};
mod sender;
mod sys_debug;
pub use sender::ProcessSender;
use sys_debug::{Event, SysDebug};
pub use sys_debug::{MAX_LOGGED_BYTES, MAX_LOGGED_EVENTS};

/// Where a message goes.
#[derive(Debug, Clone, PartialEq)]
pub enum Dest {
    /// A pid, local or remote.
    Pid(Pid),
    /// A registered name on a node (`{Name, Node}`; the local node allowed).
    Name(String, String),
}

/// Where [`Kernel::send_encoded`] sends.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Target<'a> {
    /// A process or a registered name ([`Kernel::send`]).
    Dest(&'a Dest),
    /// A process alias ([`Kernel::send_alias`]).
    Alias(&'a Reference),
}

/// [`Kernel::send_encoded`] as every kernel can do it: the bytes read
/// back into a term (within [`term::Limits::default`]) and sent as one.
pub fn send_decoded(
    kernel: &(impl Kernel + ?Sized),
    from: &Pid,
    to: Target<'_>,
    msg: &Encoded,
) -> Result<(), SendError> {
    let msg = msg
        .decode(term::Limits::default())
        .map_err(|e| SendError::Encode(e.to_string()))?;
    match to {
        Target::Dest(d) => kernel.send(from, d, msg),
        Target::Alias(a) => kernel.send_alias(from, a, msg),
    }
}

impl From<Pid> for Dest {
    fn from(p: Pid) -> Self {
        Dest::Pid(p)
    }
}

/// Errors of process operations.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum SendError {
    /// No such local process or name.
    #[error("no such process")]
    NoProc,
    /// The node could not be reached.
    #[error("no connection to {0}")]
    NoConnection(String),
    /// The name is taken.
    #[error("name {0} is already registered")]
    NameTaken(String),
    /// The message could not be encoded.
    #[error("cannot encode: {0}")]
    Encode(String),
    /// The node is shut down ([`Node::shutdown`](crate::Node::shutdown)):
    /// it dials no node any more.
    #[error("the node is shut down")]
    NodeStopped,
    /// The sending process has ended (an exit signal killed it, or it was
    /// dropped): as a dead BEAM process, it sends nothing more.
    #[error("the sending process has ended")]
    Ended,
}

/// How a gen_server call failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum CallError {
    /// No reply in time.
    #[error("call timed out")]
    Timeout,
    /// The server went down (or did not exist) with this reason.
    #[error("server down: {0}")]
    Down(Term),
    /// This process was killed by an exit signal while waiting.
    #[error("caller exited: {0}")]
    Exited(Term),
    /// Sending failed.
    #[error(transparent)]
    Send(#[from] SendError),
}

/// A pid by its parts, its node's name interned: what a process keeping
/// many pids stores (a cpg scope's `MemberPid`), monitored with
/// [`Process::monitor_many_interned_keys`] without a wire [`Pid`] (and its
/// node-name `String`) built for each.
pub use crate::pid::InternedPid;

/// What the node provides to its processes.
pub trait Kernel: Send + Sync + 'static {
    /// Sends a message from `from` to `to`.
    fn send(&self, from: &Pid, to: &Dest, msg: Term) -> Result<(), SendError>;
    /// Sends a message from `from` to the process alias `alias` (`Alias !
    /// Msg`; ALIAS_SEND on the wire). A message to an alias that is no
    /// longer active is dropped by the node that made it.
    fn send_alias(&self, from: &Pid, alias: &Reference, msg: Term) -> Result<(), SendError>;
    /// Sends a message already in the external format: to another node
    /// these bytes are its payload, with no term built on the way (by
    /// default, and to a local process, it is read back into a term and
    /// sent so: [`send_decoded`]).
    fn send_encoded(&self, from: &Pid, to: Target<'_>, msg: Encoded) -> Result<(), SendError> {
        send_decoded(self, from, to, &msg)
    }
    /// `from` starts monitoring `to`; returns the reference.
    fn monitor(&self, from: &Pid, to: &Dest) -> Reference;
    /// `from` starts monitoring each pid of `to`, in order; returns the
    /// monitors' keys, in the same order. As [`Kernel::monitor`] of each,
    /// done in one go (one lock, one queueing per node).
    fn monitor_many(&self, from: &Pid, to: &[Pid]) -> Vec<MonitorKey>;
    /// [`Kernel::monitor_many`] of pids given with their node interned
    /// (by default: made wire pids and monitored so).
    fn monitor_many_interned(&self, from: &Pid, to: &[InternedPid]) -> Vec<MonitorKey> {
        let pids: Vec<Pid> = to.iter().map(InternedPid::to_pid).collect();
        self.monitor_many(from, &pids)
    }
    /// The key of `mref` if this node made it (`None` for any other ref).
    fn monitor_key(&self, mref: &Reference) -> Option<MonitorKey>;
    /// The reference of a key ([`Kernel::monitor_key`] of it is the key).
    fn monitor_ref(&self, key: MonitorKey) -> Reference;
    /// Removes a monitor; whether it was active ([`Kernel::demonitor_key`]).
    fn demonitor(&self, from: &Pid, mref: &Reference) -> bool {
        match self.monitor_key(mref) {
            Some(key) => self.demonitor_key(from, key),
            None => false,
        }
    }
    /// Removes the monitor of `key`. True if it was active: then no
    /// `'DOWN'` of it was queued, nor ever will be. False if it had fired
    /// (its `'DOWN'` is queued, or already read) or never was.
    fn demonitor_key(&self, from: &Pid, key: MonitorKey) -> bool;
    /// Makes the ref of `key` an alias of local `pid`: a message sent to
    /// it (ALIAS_SEND, or [`Kernel::send_alias`] here) reaches `pid` until
    /// [`Kernel::unalias`].
    fn alias(&self, pid: &Pid, key: MonitorKey);
    /// Ends the alias of `key`: a message to it is dropped from now on.
    fn unalias(&self, key: MonitorKey);
    /// Links `from` and `to`.
    fn link(&self, from: &Pid, to: &Pid);
    /// Removes a link.
    fn unlink(&self, from: &Pid, to: &Pid);
    /// Sends an exit signal (`exit(To, Reason)`).
    fn exit2(&self, from: &Pid, to: &Pid, reason: Term);
    /// Whether local `pid` gets [`Signal::NodeUp`] and
    /// [`Signal::NodeDown`] (`net_kernel:monitor_nodes/1`; by default:
    /// never).
    fn monitor_nodes(&self, pid: &Pid, on: bool) {
        let _ = (pid, on);
    }
    /// Whether local `pid` traps exits: one that does not is ended by the
    /// kernel as an exit signal comes (by default: at its next receive
    /// only).
    fn trap_exit(&self, pid: &Pid, on: bool) {
        let _ = (pid, on);
    }
    /// Registers a name for a local pid.
    fn register(&self, pid: &Pid, name: &str) -> Result<(), SendError>;
    /// The name local `pid` is registered under, if any (by default:
    /// none known).
    fn registered_name(&self, pid: &Pid) -> Option<String> {
        let _ = pid;
        None
    }
    /// The connection a message to `to` goes out on, if it is busy (more
    /// queued for it, messages or bytes, than the node's limit), with that
    /// limit; `None` otherwise, and for a local destination (by default:
    /// never busy).
    fn busy_link(&self, to: &Dest) -> Option<(Arc<PeerLink>, QueueLimit)> {
        let _ = to;
        None
    }
    /// Registers a name for a local pid whose large messages from other
    /// nodes may come as [`Signal::Raw`] (by default: never, a plain
    /// [`Kernel::register`]).
    fn register_raw(&self, pid: &Pid, name: &str) -> Result<(), SendError> {
        self.register(pid, name)
    }
    /// A new unique reference.
    fn make_ref(&self) -> Reference;
    /// The process ended: tell links and monitors, free the pid.
    fn exited(&self, pid: &Pid, reason: Term);
    /// This node's name.
    fn node_name(&self) -> &str;
    /// Whether the node is shutting down ([`Node::shutdown`](crate::Node::shutdown)
    /// has begun): the exit signals its processes get then are its own.
    fn stopping(&self) -> bool {
        false
    }
}

/// A process: owns its mailbox. Dropping it ends the process (reason
/// `normal`, or a panic reason when dropped while panicking).
pub struct Process {
    pid: Pid,
    kernel: Arc<dyn Kernel>,
    rx: MailboxRx,
    /// Closed once the process has ended: it sends nothing more.
    gate: SendGate,
    /// Suspended by `sys:suspend` ([`Process::serve`]).
    suspended: bool,
    /// `sys`'s debug options ([`Process::serve`]), while any is on.
    debug: Option<Box<SysDebug>>,
    saved: VecDeque<Signal>,
    trap_exit: bool,
    exit_reason: Option<Term>,
    /// The node shut down (it closed the mailbox), as opposed to an exit
    /// signal ending the process.
    node_stopped: bool,
}

impl std::fmt::Debug for Process {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Process({})", term::pid_text(&self.pid))
    }
}

/// A monitor this node made, named by the key of its reference: 8 bytes,
/// `Copy`, nothing allocated, where a [`Reference`] holds a node name and
/// a vector. What a process keeping many monitors stores (a cpg scope,
/// one per member pid); [`Process::monitor_key`] gives the key of a
/// `'DOWN'`'s reference.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct MonitorKey(pub(crate) u64);

/// The caller of a gen_server call, as found in `{'$gen_call', From, Req}`.
#[derive(Debug, Clone, PartialEq)]
pub struct CallFrom {
    /// The caller.
    pub pid: Pid,
    /// The tag to echo (a ref, or `[alias|Ref]` in OTP 24+).
    pub tag: Term,
}

impl CallFrom {
    /// The caller's alias when the tag is `[alias|Alias]`, as OTP 24+
    /// `gen:call` makes it: the reply goes to the alias, so that once the
    /// caller has given up (timeout) it is dropped instead of landing in
    /// the caller's mailbox.
    pub fn alias(&self) -> Option<&Reference> {
        match &self.tag {
            Term::ImproperList(l) => match (l.elements.as_slice(), &*l.last) {
                ([a], Term::Reference(r)) if term::as_atom(a) == Some("alias") => Some(r),
                _ => None,
            },
            _ => None,
        }
    }

    /// The first bytes of a reply to this caller, `{Tag, Reply}`: the
    /// tuple's header and the tag, with room for `capacity` bytes more.
    /// The reply's term is written after them ([`term::write`]), and the
    /// whole sent with [`Process::reply_headed`].
    pub(crate) fn reply_head(&self, capacity: usize) -> Result<Vec<u8>, SendError> {
        Encoded::pair_head(&self.tag, capacity).map_err(|e| SendError::Encode(e.to_string()))
    }
}

/// The reason of `sys:terminate`'s request `{terminate, Reason}` (the
/// `Request` of a system message, [`parse_system`]).
pub(crate) fn terminate_request(request: &Term) -> Option<&Term> {
    match term::as_tuple(request) {
        Some([what, reason]) if term::as_atom(what) == Some("terminate") => Some(reason),
        _ => None,
    }
}

/// Matches `{'$gen_call', {Pid, Tag}, Request}`.
pub fn parse_call(msg: &Term) -> Option<(CallFrom, &Term)> {
    parse_from(msg, "$gen_call")
}

/// Matches `{system, {Pid, Tag}, Request}`: what `sys` sends
/// (`sys:get_state/1`, `sys:get_status/1`, `sys:suspend/1`, ...), which
/// [`Process::serve`] answers as a gen_server does.
pub fn parse_system(msg: &Term) -> Option<(CallFrom, &Term)> {
    parse_from(msg, "system")
}

/// The state `undefined`, for [`Process::answer_system`] of a process
/// that keeps none to show.
pub(crate) fn no_state(out: &mut Vec<u8>) -> Result<(), Term> {
    crate::term::write::atom(out, "undefined");
    Ok(())
}

fn parse_from<'a>(msg: &'a Term, tag: &str) -> Option<(CallFrom, &'a Term)> {
    let t = term::as_tuple(msg)?;
    if t.len() != 3 || term::as_atom(&t[0]) != Some(tag) {
        return None;
    }
    let f = term::as_tuple(&t[1])?;
    if f.len() != 2 {
        return None;
    }
    let pid = term::as_pid(&f[0])?.clone();
    Some((
        CallFrom {
            pid,
            tag: f[1].clone(),
        },
        &t[2],
    ))
}

/// Matches `{'$gen_cast', Request}`.
pub fn parse_cast(msg: &Term) -> Option<&Term> {
    let t = term::as_tuple(msg)?;
    (t.len() == 2 && term::as_atom(&t[0]) == Some("$gen_cast")).then(|| &t[1])
}

impl Process {
    /// Wraps a registered mailbox. Used by the node's spawn.
    pub fn new(pid: Pid, kernel: Arc<dyn Kernel>, rx: MailboxRx) -> Self {
        Process {
            pid,
            kernel,
            gate: rx.gate(),
            suspended: false,
            debug: None,
            rx,
            saved: VecDeque::new(),
            trap_exit: false,
            exit_reason: None,
            node_stopped: false,
        }
    }

    /// This process's pid.
    pub fn pid(&self) -> &Pid {
        &self.pid
    }

    /// Trap exits: exit signals arrive as [`Signal::Exit`] instead of
    /// ending the process.
    ///
    /// A process that does not trap them ends when an exit signal comes
    /// (any reason but `normal`, or `kill` sent by `exit/2` whatever it
    /// traps), as a BEAM process does: at once for the node and the
    /// cluster (its pid is dead, its name free, its links and monitors
    /// told, its cpg memberships gone), and for its own code at its next
    /// receive, which returns `Err(Reason)`.
    pub fn trap_exit(&mut self, on: bool) {
        self.trap_exit = on;
        self.kernel.trap_exit(&self.pid, on);
    }

    /// Asks for [`Signal::NodeUp`] and [`Signal::NodeDown`] as this
    /// node's connections come and go, hidden nodes' too, told apart by
    /// `NodeUp`'s `hidden` (`net_kernel:monitor_nodes(true, [{node_type,
    /// all}])`; `monitor_nodes(true)` alone is told of visible nodes only),
    /// in the mailbox in order with the messages each connection brings:
    /// a peer's messages come after its `NodeUp` and before its
    /// `NodeDown`. As on BEAM, an attempt to connect that fails tells it
    /// nothing: each `NodeDown` follows the node's `NodeUp`.
    pub fn monitor_nodes(&self, on: bool) {
        self.kernel.monitor_nodes(&self.pid, on);
    }

    /// Sends a message.
    pub fn send(&self, to: impl Into<Dest>, msg: Term) -> Result<(), SendError> {
        let to = to.into();
        self.gate.open(|| self.kernel.send(&self.pid, &to, msg))
    }

    /// Sends a message already in the external format
    /// ([`Kernel::send_encoded`]): a large message made from this
    /// process's own data (written with [`term::write`]) goes to a peer
    /// without a term built, measured and dropped.
    pub fn send_encoded(&self, to: impl Into<Dest>, msg: Encoded) -> Result<(), SendError> {
        self.kernel
            .send_encoded(&self.pid, Target::Dest(&to.into()), msg)
    }

    /// Sends a message, then, if it went to a busy peer (more messages or
    /// bytes queued for its connection than
    /// [`NodeConfig::busy_peer_queue`](crate::config::NodeConfig::busy_peer_queue)),
    /// waits until the connection has taken its queue back to that limit,
    /// or has ended. As BEAM suspends a process that sends on a busy
    /// distribution port: a sender faster than the peer is held back
    /// instead of growing this node's memory until the peer is
    /// disconnected ([`NodeConfig::max_peer_queue`](crate::config::NodeConfig::max_peer_queue)).
    /// [`send`](Self::send) never waits.
    pub async fn send_paced(&self, to: impl Into<Dest>, msg: Term) -> Result<(), SendError> {
        let to = to.into();
        self.gate.open(|| self.kernel.send(&self.pid, &to, msg))?;
        if let Some((link, limit)) = self.kernel.busy_link(&to) {
            link.wait_below(limit).await;
        }
        Ok(())
    }

    /// Monitors a process or a registered name.
    pub fn monitor(&self, to: impl Into<Dest>) -> Reference {
        self.kernel.monitor(&self.pid, &to.into())
    }

    /// Monitors each pid of `to` (as [`Process::monitor`] of each, in
    /// order); returns their references in the same order. Monitors of
    /// many pids of another node are queued to it in one go.
    pub fn monitor_many(&self, to: &[Pid]) -> Vec<Reference> {
        let keys = self.kernel.monitor_many(&self.pid, to);
        keys.into_iter()
            .map(|k| self.kernel.monitor_ref(k))
            .collect()
    }

    /// As [`Process::monitor_many`], the monitors named by their keys
    /// ([`MonitorKey`]: what a process keeping many monitors stores).
    pub fn monitor_many_keys(&self, to: &[Pid]) -> Vec<MonitorKey> {
        self.kernel.monitor_many(&self.pid, to)
    }

    /// As [`Process::monitor_many_keys`], of pids whose node is interned
    /// ([`InternedPid`]): no wire pid built for each.
    pub fn monitor_many_interned_keys(&self, to: &[InternedPid]) -> Vec<MonitorKey> {
        self.kernel.monitor_many_interned(&self.pid, to)
    }

    /// The key of `mref` (a `'DOWN'`'s reference) if this node made it.
    pub fn monitor_key(&self, mref: &Reference) -> Option<MonitorKey> {
        self.kernel.monitor_key(mref)
    }

    /// Removes a monitor and flushes its `'DOWN'` if already there
    /// (`erlang:demonitor(Ref, [flush])`): no `'DOWN'` of it is received
    /// after this.
    pub fn demonitor(&mut self, mref: &Reference) {
        // The node queues a monitor's 'DOWN' in the same step as it stops
        // holding it: a monitor still active has none queued (and a
        // scope that demonitors a member per leave scans no mailbox), and
        // one that fired has its 'DOWN' queued by now.
        if self.kernel.demonitor(&self.pid, mref) {
            return;
        }
        let down = |s: &Signal| matches!(s, Signal::Down { mref: m, .. } if m == mref);
        self.saved.retain(|s| !down(s));
        self.rx.remove_queued(down);
    }

    /// Removes the monitor of `key` and flushes its `'DOWN'` if already
    /// there, as [`Process::demonitor`].
    pub fn demonitor_key(&mut self, key: MonitorKey) {
        if self.kernel.demonitor_key(&self.pid, key) {
            return;
        }
        let kernel = &self.kernel;
        let down = |s: &Signal| matches!(s, Signal::Down { mref, .. } if kernel.monitor_key(mref) == Some(key));
        self.saved.retain(|s| !down(s));
        self.rx.remove_queued(down);
    }

    /// Links to a process.
    pub fn link(&self, to: &Pid) {
        self.kernel.link(&self.pid, to);
    }

    /// Removes a link.
    pub fn unlink(&self, to: &Pid) {
        self.kernel.unlink(&self.pid, to);
    }

    /// Sends an exit signal to another process.
    pub fn exit_other(&self, to: &Pid, reason: Term) {
        let _ = self.gate.open(|| {
            self.kernel.exit2(&self.pid, to, reason);
            Ok(())
        });
    }

    /// Registers a name for this process.
    pub fn register(&self, name: &str) -> Result<(), SendError> {
        self.kernel.register(&self.pid, name)
    }

    /// Registers a name for this process, whose large messages from other
    /// nodes (`REG_SEND`s to the name of at least
    /// [`RAW_MIN`](crate::dist::raw::RAW_MIN) bytes) may then arrive as
    /// [`Signal::Raw`], for a process that reads some of them faster from
    /// their bytes. Every other message arrives decoded, as after
    /// [`Process::register`].
    pub fn register_raw(&self, name: &str) -> Result<(), SendError> {
        self.kernel.register_raw(&self.pid, name)
    }

    /// A new unique reference.
    pub fn make_ref(&self) -> Reference {
        self.kernel.make_ref()
    }

    /// Ends the process with a reason (links and monitors are told).
    pub fn exit(mut self, reason: Term) {
        self.exit_reason = Some(reason);
    }

    /// Ends the process as `sys:terminate(Process, Reason)` (and so
    /// `gen_server:stop/1,3`, Elixir's `GenServer.stop`) ends a
    /// gen_server (`sys:handle_system_msg`): `ok` to the caller `from`,
    /// then every later receive gives `Err(reason)`; links and monitors
    /// are told `reason` when the process is dropped, and
    /// `gen_server:stop` returns `ok` once they are.
    pub(crate) fn terminate(&mut self, from: &CallFrom, reason: Term) {
        let _ = self.reply(from, atom("ok"));
        self.exit_reason = Some(reason);
        self.saved.clear();
    }

    /// Whether the process ended because its node shut down
    /// ([`Node::shutdown`](crate::Node::shutdown): a receive gave
    /// `Err(shutdown)` for it, or an exit signal came while the node was
    /// stopping), rather than by an exit signal, whatever that signal's
    /// reason (`exit(Pid, shutdown)` from any process included). A
    /// supervisor restarts its child in the second case only.
    pub fn stopped_by_node(&self) -> bool {
        // (Or by a link to a process the shutdown ended first.)
        self.node_stopped || self.kernel.stopping()
    }

    /// Whether an exit signal ends this process; sets the exit reason.
    fn kills(&mut self, s: &Signal) -> Option<Term> {
        if let Signal::Exit { reason, exit2, .. } = s {
            let r = term::as_atom(reason);
            if *exit2 && r == Some("kill") {
                return Some(atom("killed"));
            }
            if !self.trap_exit && r != Some("normal") {
                return Some(reason.clone());
            }
        }
        None
    }

    /// The reason, when an exit signal has ended this process
    /// ([`MailboxTx::kill`]): what it had set aside is dropped with its
    /// mailbox, and every later receive gives the reason.
    fn was_killed(&mut self) -> Option<Term> {
        let r = self.rx.killed()?;
        self.exit_reason = Some(r.clone());
        self.saved.clear();
        Some(r)
    }

    async fn next_raw(&mut self) -> Option<Signal> {
        self.rx.recv().await
    }

    /// Waits for the next signal. An exit signal that is not trapped ends
    /// the process: `Err(reason)` (and every later call returns it too).
    pub async fn recv(&mut self) -> Result<Signal, Term> {
        self.recv_match(|_| true, None)
            .await
            .and_then(|o| o.ok_or_else(|| atom("timeout")))
    }

    /// Like [`Process::recv`] with a timeout (`Ok(None)` when it expires).
    pub async fn recv_timeout(&mut self, t: Duration) -> Result<Option<Signal>, Term> {
        self.recv_match(|_| true, Some(t)).await
    }

    /// Selective receive: the first signal for which `pred` holds; others
    /// stay in the mailbox in order.
    pub async fn recv_match(
        &mut self,
        mut pred: impl FnMut(&Signal) -> bool,
        timeout: Option<Duration>,
    ) -> Result<Option<Signal>, Term> {
        if let Some(r) = &self.exit_reason {
            return Err(r.clone());
        }
        if let Some(r) = self.was_killed() {
            return Err(r);
        }
        if let Some(i) = self.saved.iter().position(&mut pred) {
            return Ok(self.saved.remove(i));
        }
        let deadline = timeout.map(|t| tokio::time::Instant::now() + t);
        loop {
            let s = match deadline {
                Some(d) => match tokio::time::timeout_at(d, self.next_raw()).await {
                    Ok(s) => s,
                    Err(_) => return Ok(None),
                },
                None => self.next_raw().await,
            };
            let Some(s) = s else {
                if let Some(r) = self.was_killed() {
                    return Err(r);
                }
                // The node dropped the mailbox: only its shutdown does that
                // while the process still exists.
                let r = atom("shutdown");
                self.exit_reason = Some(r.clone());
                self.node_stopped = true;
                return Err(r);
            };
            if let Some(reason) = self.kills(&s) {
                self.exit_reason = Some(reason.clone());
                return Err(reason);
            }
            if pred(&s) {
                return Ok(Some(s));
            }
            self.saved.push_back(s);
        }
    }

    /// `gen_server:call(To, Request, Timeout)`.
    ///
    /// As OTP 24+'s `gen:call` does: the callee is monitored for the
    /// call, and the monitor's ref is an alias of this process while the
    /// call runs (the request's tag is `[alias|Ref]`, and `gen_server`
    /// replies to the alias). A reply already in the mailbox when the
    /// timeout expires is still taken; one that comes later is dropped by
    /// the node. The monitor is removed with its `'DOWN'` flushed however
    /// the call ends. Dropping the future (a `select!` or `timeout` around
    /// it) removes the monitor and the alias too.
    pub async fn call(
        &mut self,
        to: impl Into<Dest>,
        request: Term,
        timeout: Duration,
    ) -> Result<Term, CallError> {
        let to = to.into();
        let mref = self.monitor(to.clone());
        // The monitor's ref is the call's alias, as OTP 24+'s gen:call
        // makes it (`[alias|Ref]` tags the request): a reply that comes
        // once the call has ended is dropped by the node.
        let key = self.kernel.monitor_key(&mref);
        if let Some(key) = key {
            self.kernel.alias(&self.pid, key);
        }
        let mut guard = CallGuard {
            kernel: self.kernel.clone(),
            pid: self.pid.clone(),
            call: Some((mref.clone(), key)),
        };
        let tag = match key {
            Some(_) => Term::ImproperList(term::ImproperList {
                elements: vec![atom("alias")],
                last: Box::new(Term::Reference(Box::new(mref.clone()))),
            }),
            None => Term::Reference(Box::new(mref.clone())),
        };
        let from = tuple(vec![Term::Pid(self.pid.clone()), tag]);
        let msg = tuple(vec![atom("$gen_call"), from, request]);
        let sent = self.send(to, msg);
        let got = match sent {
            Err(e) => Err(e),
            Ok(()) => Ok(self.call_answer(&mref, key, timeout).await),
        };
        guard.call = None;
        if let Some(key) = key {
            self.kernel.unalias(key);
        }
        // The 'DOWN' that ended the call is read; any other is flushed.
        self.demonitor(&mref);
        let got = match got {
            Err(e) => return Err(e.into()),
            Ok(got) => got,
        };
        match got {
            Err(reason) => Err(CallError::Exited(reason)),
            Ok(None) => Err(CallError::Timeout),
            Ok(Some(Signal::Down { reason, .. })) => Err(CallError::Down(reason)),
            Ok(Some(Signal::Message { msg, .. })) => match msg {
                Term::Tuple(mut t) if t.elements.len() == 2 => Ok(t.elements.swap_remove(1)),
                _ => Err(CallError::Down(atom("badreply"))),
            },
            Ok(Some(_)) => Err(CallError::Timeout),
        }
    }

    /// The reply to the call of `mref`, or its `'DOWN'`; at the timeout,
    /// a reply already in the mailbox (`gen:call` looks once more after
    /// its demonitor).
    async fn call_answer(
        &mut self,
        mref: &Reference,
        alias: Option<MonitorKey>,
        timeout: Duration,
    ) -> Result<Option<Signal>, Term> {
        let answer = |s: &Signal| match s {
            Signal::Message { msg, .. } => is_reply(msg, mref),
            Signal::Down { mref: m, .. } => m == mref,
            _ => false,
        };
        match self.recv_match(answer, Some(timeout)).await? {
            Some(s) => Ok(Some(s)),
            None => {
                // No reply comes through the alias after this; one that
                // came meanwhile is taken.
                if let Some(key) = alias {
                    self.kernel.unalias(key);
                }
                let reply = |s: &Signal| match s {
                    Signal::Message { msg, .. } => is_reply(msg, mref),
                    _ => false,
                };
                self.recv_match(reply, Some(Duration::ZERO)).await
            }
        }
    }

    /// Answers a gen_server call: `{Tag, Reply}` to the caller, through
    /// its alias when the tag carries one (as `gen:reply/2` does), else to
    /// its pid.
    pub fn reply(&self, from: &CallFrom, reply: Term) -> Result<(), SendError> {
        self.gate
            .open(|| sender::reply_from(&*self.kernel, &self.pid, from, reply))
    }

    /// [`Process::reply`] with a reply already in the external format
    /// ([`Process::send_encoded`]).
    pub fn reply_encoded(&self, from: &CallFrom, reply: Encoded) -> Result<(), SendError> {
        let msg = reply
            .tagged(&from.tag)
            .map_err(|e| SendError::Encode(e.to_string()))?;
        self.reply_headed(from, msg)
    }

    /// [`Process::reply_encoded`] of `{Tag, Reply}` whole: bytes that
    /// [`CallFrom::reply_head`] began and one whole term, the reply, ended. A
    /// large reply so written is not copied again to put its tag before it.
    pub(crate) fn reply_headed(&self, from: &CallFrom, msg: Encoded) -> Result<(), SendError> {
        let to = match from.alias() {
            Some(alias) => Target::Alias(alias),
            None => return self.send_encoded(from.pid.clone(), msg),
        };
        self.gate
            .open(|| self.kernel.send_encoded(&self.pid, to, msg))
    }

    /// Answers the system message `request` from `from` ([`parse_system`])
    /// as a gen_server named `name` answers it, its state written by
    /// `state` (or, `Err(reply)`, none to give: `reply` is sent instead):
    /// `get_state` the state, `get_status` `{status, Pid, {module,
    /// gen_server}, [PDict, running, Parent, Debug, Status]}` with the state
    /// under `{data, [{"State", State}]}` (so `sys:get_status/1` and
    /// observer show it; `suspended` in place of `running` while
    /// [`Process::serve`] is suspended; the events its debug log keeps
    /// under `"Logged events"`). `terminate` is its callers' to take
    /// first ([`terminate_request`], [`Process::terminate`]). Any other
    /// request (`suspend`, `resume` and the debug options outside
    /// [`Process::serve`], `replace_state`, `change_code`) is answered `{error,
    /// {unknown_system_msg, Request}}`: this node's processes are not
    /// changed by `sys`, and a caller is told so at once where it would
    /// otherwise wait for its timeout. Written as bytes, the state
    /// included: a scope's is as long as the scope.
    pub(crate) fn answer_system(
        &self,
        from: &CallFrom,
        name: &str,
        request: &Term,
        state: impl FnOnce(&mut Vec<u8>) -> Result<(), Term>,
    ) -> Result<(), SendError> {
        use crate::term::write;
        let mut out = from.reply_head(64)?;
        let me = |out: &mut Vec<u8>| {
            let p = &self.pid;
            write::pid(out, &p.node.name, p.id, p.serial, p.creation);
        };
        let pair = |out: &mut Vec<u8>, key: &str| {
            write::tuple(out, 2);
            write::charlist(out, key);
        };
        let sys_state = if self.suspended {
            "suspended"
        } else {
            "running"
        };
        match term::as_atom(request) {
            Some("get_state") => {
                if let Err(reply) = state(&mut out) {
                    return self.reply(from, reply);
                }
            }
            Some("get_status") => {
                write::tuple(&mut out, 4);
                write::atom(&mut out, "status");
                me(&mut out);
                write::tuple(&mut out, 2);
                write::atom(&mut out, "module");
                write::atom(&mut out, "gen_server");
                // [PDict, SysState, Parent, Debug, Status]
                write::list(&mut out, 5);
                write::nil(&mut out);
                write::atom(&mut out, sys_state);
                me(&mut out);
                write::nil(&mut out);
                write::list(&mut out, 3);
                write::tuple(&mut out, 2);
                write::atom(&mut out, "header");
                write::charlist(&mut out, &format!("Status for generic server {name}"));
                write::tuple(&mut out, 2);
                write::atom(&mut out, "data");
                write::list(&mut out, 3);
                pair(&mut out, "Status");
                write::atom(&mut out, sys_state);
                pair(&mut out, "Parent");
                me(&mut out);
                pair(&mut out, "Logged events");
                let logged: Vec<&Encoded> = self.debug.iter().flat_map(|d| d.logged()).collect();
                if !logged.is_empty() {
                    write::list(&mut out, logged.len());
                    for e in logged {
                        out.extend_from_slice(e.as_bytes());
                    }
                }
                write::nil(&mut out);
                write::nil(&mut out);
                write::tuple(&mut out, 2);
                write::atom(&mut out, "data");
                write::list(&mut out, 1);
                pair(&mut out, "State");
                if let Err(reply) = state(&mut out) {
                    return self.reply(from, reply);
                }
                write::nil(&mut out);
                write::nil(&mut out);
                write::nil(&mut out);
            }
            _ => {
                let why = tuple(vec![atom("unknown_system_msg"), request.clone()]);
                return self.reply(from, tuple(vec![atom("error"), why]));
            }
        }
        self.reply_headed(from, Encoded::written(out))
    }

    /// A gen_server's receive loop: answers every `{'$gen_call', From,
    /// Request}` with `on_call(self, Request)` (see [`Process::reply`]),
    /// and `sys`'s system messages ([`parse_system`]) as a gen_server whose
    /// state is `undefined`, and drops any other signal. Returns the exit
    /// reason when the process is killed.
    pub async fn serve_calls(&mut self, on_call: impl FnMut(&Process, &Term) -> Term) -> Term {
        self.serve(on_call, |_, _| {}).await
    }

    /// [`Process::serve_calls`], with the signals that are not calls
    /// handed to `on_other`.
    pub async fn serve(
        &mut self,
        mut on_call: impl FnMut(&Process, &Term) -> Term,
        on_other: impl FnMut(&Process, Signal),
    ) -> Term {
        self.serve_with(|p, from, req| Some((from, on_call(p, req))), on_other)
            .await
    }

    /// The receive loop of [`Process::serve`]: each call's `From` and
    /// request to `on_call`, which gives the reply to send (or `None`:
    /// another task sends it), system messages answered, any other signal
    /// to `on_other`; the exit reason when the process is killed. Each is
    /// an event of `sys`'s debug options ([`sys_debug`]).
    async fn serve_with(
        &mut self,
        mut on_call: impl FnMut(&Process, CallFrom, &Term) -> Option<(CallFrom, Term)>,
        mut on_other: impl FnMut(&Process, Signal),
    ) -> Term {
        loop {
            let s = match self.recv().await {
                Ok(s) => s,
                Err(reason) => return reason,
            };
            if let Signal::Message { msg, .. } = &s {
                if let Some((from, req)) = parse_call(msg) {
                    self.debug_event(|| Event::In(msg));
                    match on_call(self, from, req) {
                        Some((from, reply)) => {
                            self.debug_event(|| Event::Out {
                                reply: &reply,
                                to: &from,
                            });
                            // A caller that has gone is no error of the
                            // server's.
                            let _ = self.reply(&from, reply);
                        }
                        None => self.debug_event(|| Event::NoReply),
                    }
                    continue;
                }
                if let Some((from, req)) = parse_system(msg) {
                    if let Err(reason) = self.serve_system(from, req).await {
                        return reason;
                    }
                    continue;
                }
            }
            if self.debug.is_some() {
                let msg = s.to_term();
                self.debug_event(|| Event::In(&msg));
                on_other(self, s);
                self.debug_event(|| Event::NoReply);
            } else {
                on_other(self, s);
            }
        }
    }

    /// Records an event of a server loop for `sys`'s debug options, if
    /// any is on (`event` is made only then).
    fn debug_event<'a>(&mut self, event: impl FnOnce() -> Event<'a>) {
        let Some(debug) = &mut self.debug else {
            return;
        };
        let (kernel, pid) = (&self.kernel, &self.pid);
        debug.record(event(), || server_name(&**kernel, pid));
    }

    /// A system message to a server loop, answered as gen_server answers
    /// it: `sys:suspend` stops the server, which then answers only system
    /// messages (the others wait in the mailbox, in order) until
    /// `sys:resume`; a debug option (`sys:statistics`, `sys:log`,
    /// `sys:trace`, `sys:no_debug`) as [`sys_debug`] says; any other
    /// request as [`Process::answer_system`]. `Err` with the exit reason
    /// when the process is killed meanwhile.
    async fn serve_system(&mut self, from: CallFrom, request: &Term) -> Result<(), Term> {
        self.answer_in_loop(&from, request)?;
        while self.suspended {
            let is_system = |s: &Signal| matches!(s, Signal::Message { msg, .. } if parse_system(msg).is_some());
            if let Some(Signal::Message { msg, .. }) = self.recv_match(is_system, None).await? {
                if let Some((from, request)) = parse_system(&msg) {
                    self.answer_in_loop(&from, request)?;
                }
            }
        }
        Ok(())
    }

    /// One system message to a server loop ([`Process::serve_system`]);
    /// `Err(reason)` when it ends the process (`sys:terminate`,
    /// [`Process::terminate`]), suspended or not, as gen_server does.
    fn answer_in_loop(&mut self, from: &CallFrom, request: &Term) -> Result<(), Term> {
        if let Some(reason) = terminate_request(request) {
            self.terminate(from, reason.clone());
            return Err(reason.clone());
        }
        match term::as_atom(request) {
            Some("suspend") => {
                self.suspended = true;
                let _ = self.reply(from, atom("ok"));
            }
            Some("resume") => {
                self.suspended = false;
                let _ = self.reply(from, atom("ok"));
            }
            _ => {
                if let Some([what, option]) = term::as_tuple(request) {
                    if term::as_atom(what) == Some("debug") {
                        let debug = self.debug.get_or_insert_with(Default::default);
                        let (kernel, pid) = (&self.kernel, &self.pid);
                        let reply = debug.command(option, || server_name(&**kernel, pid));
                        if debug.is_off() {
                            self.debug = None;
                        }
                        let _ = self.reply(from, reply);
                        return Ok(());
                    }
                }
                let name = server_name(&*self.kernel, &self.pid);
                let _ = self.answer_system(from, &name, request, no_state);
            }
        }
        Ok(())
    }
}

/// The name `sys` shows for a server, as gen_server does: its registered
/// name, else its pid.
fn server_name(kernel: &dyn Kernel, pid: &Pid) -> String {
    kernel
        .registered_name(pid)
        .unwrap_or_else(|| term::pid_text(pid).to_string())
}

/// Removes the monitor of a call whose future was dropped before it
/// ended ([`Process::call`]).
struct CallGuard {
    kernel: Arc<dyn Kernel>,
    pid: Pid,
    /// The call's monitor and alias, while it runs.
    call: Option<(Reference, Option<MonitorKey>)>,
}

impl Drop for CallGuard {
    fn drop(&mut self) {
        if let Some((mref, key)) = self.call.take() {
            if let Some(key) = key {
                self.kernel.unalias(key);
            }
            let _ = self.kernel.demonitor(&self.pid, &mref);
        }
    }
}

/// Whether `msg` is the reply `{Tag, Reply}` to the call of `mref`, its
/// tag the ref or the alias tag `[alias|Ref]`.
fn is_reply(msg: &Term, mref: &Reference) -> bool {
    match term::as_tuple(msg) {
        Some([Term::Reference(r), _]) => **r == *mref,
        Some([Term::ImproperList(l), _]) => match (l.elements.as_slice(), &*l.last) {
            ([a], Term::Reference(r)) => **r == *mref && term::as_atom(a) == Some("alias"),
            _ => false,
        },
        _ => false,
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let reason = match self.exit_reason.take() {
            Some(r) => r,
            None if std::thread::panicking() => tuple(vec![atom("panic"), atom("rust")]),
            None => atom("normal"),
        };
        // Nothing goes out from it (a `ProcessSender`'s task) after its
        // links and monitors are told.
        self.gate.end();
        self.kernel.exited(&self.pid, reason);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::term::{Atom, ImproperList};

    fn pid() -> Pid {
        Pid::new("a@h", 1, 0, 1)
    }

    #[test]
    fn alias_tags_are_recognised_and_plain_refs_are_not() {
        let r = Reference {
            node: Atom::from("b@h"),
            id: vec![1, 2, 3],
            creation: 1,
        };
        let alias_tag = Term::ImproperList(ImproperList {
            elements: vec![atom("alias")],
            last: Box::new(Term::Reference(Box::new(r.clone()))),
        });
        let msg = tuple(vec![
            atom("$gen_call"),
            tuple(vec![Term::Pid(pid()), alias_tag]),
            atom("req"),
        ]);
        let (from, req) = parse_call(&msg).unwrap();
        assert_eq!(from.alias(), Some(&r));
        assert_eq!(req, &atom("req"));
        let plain = CallFrom {
            pid: pid(),
            tag: Term::Reference(Box::new(r)),
        };
        assert_eq!(plain.alias(), None);
    }
}
