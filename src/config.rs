//! Node configuration, parsed once.

use std::fmt;
use std::time::Duration;

/// A full node name `alive@host`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct NodeName {
    alive: String,
    host: String,
}

/// Why a node name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NameError {
    /// Empty alive or host part, or more than one `@`.
    #[error("bad node name {0:?}: expected alive@host with both parts non-empty")]
    Malformed(String),
    /// A name `erl` would not take as its own, and no BEAM node dials
    /// (`net_adm:ping` answers `pang` without trying): the part before `@`
    /// of anything but ASCII letters, digits, `_` and `-`, or a host part
    /// with a space, a control character or a character above U+00FF
    /// (`net_kernel`'s "Invalid node name!").
    #[error("invalid node name {name:?}: {why}")]
    Invalid {
        /// The name.
        name: String,
        /// Which part is wrong, and what it may hold.
        why: &'static str,
    },
    /// A short name whose host part has dots, or a long name whose host
    /// has none (and is not an IP address), as `erl` refuses.
    #[error("node name {name:?} does not fit {mode} names ({})", mode_hint(mode))]
    WrongMode {
        /// The name.
        name: String,
        /// "short" or "long".
        mode: &'static str,
    },
}

/// What to do about a name of the other kind ([`NameError::WrongMode`]).
fn mode_hint(mode: &str) -> &'static str {
    if mode == "short" {
        "a host with dots makes a long name: add --long-names, or give it with -name, as erl takes it"
    } else {
        "a long name's host has dots or is an IP address: give a fully qualified host, or use short names (--sname)"
    }
}

impl NodeName {
    /// Parses `alive@host`.
    pub fn parse(s: &str) -> Result<Self, NameError> {
        let mut it = s.splitn(2, '@');
        let alive = it.next().unwrap_or_default();
        let host = it.next().unwrap_or_default();
        if alive.is_empty() || host.is_empty() || host.contains('@') || s.len() > 255 {
            return Err(NameError::Malformed(s.to_string()));
        }
        Ok(NodeName {
            alive: alive.to_string(),
            host: host.to_string(),
        })
    }

    /// Builds a node name from `name` the way `erl -sname`/`-name` does: a
    /// name without `@` (or ending in it) gets this machine's short host
    /// name (or its fully qualified one with `long_names`); a name `erl`
    /// would refuse is refused ([`NodeName::check_own`]).
    pub fn from_cli(name: &str, long_names: bool) -> Result<Self, NameError> {
        let alive = name.strip_suffix('@').unwrap_or(name);
        let n = if alive.contains('@') {
            Self::parse(alive)?
        } else {
            Self::parse(&format!("{}@{}", alive, local_host(long_names)))?
        };
        n.check_own()?;
        // A host that is an IP address is taken in either mode: the node
        // is then a long-name node to every peer ([`NodeName::is_long`]),
        // as `erl -name x@127.0.0.1` is, and connects to long-name nodes
        // only (`erl -sname x@127.0.0.1` refuses to start instead; refused
        // here, `--name x@127.0.0.1` without `--long-names`, which loopback
        // clusters use, stopped working).
        let ip = n.host.parse::<std::net::IpAddr>().is_ok();
        if !long_names && n.host.contains('.') && !ip {
            return Err(NameError::WrongMode {
                name: n.to_string(),
                mode: "short",
            });
        }
        if long_names && !n.is_long() {
            return Err(NameError::WrongMode {
                name: n.to_string(),
                mode: "long",
            });
        }
        Ok(n)
    }

    /// Whether `erl` would take this name as its own, as `net_kernel`
    /// checks it at start: the part before `@` of ASCII letters, digits,
    /// `_` and `-` only; the host part of characters from `!` to U+00FF
    /// (no space or control character). A BEAM node does not dial a name
    /// that fails (`net_adm:ping` answers `pang` without trying), so a
    /// node started under one could never be reached.
    /// [`NodeConfig::check`] asks it of the node's own name; names of
    /// other nodes are taken as they come.
    pub fn check_own(&self) -> Result<(), NameError> {
        let alive_ok = self
            .alive
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        let host_ok = self.host.chars().all(|c| ('!'..='\u{ff}').contains(&c));
        let why = if !alive_ok {
            "the part before @ may hold only ASCII letters, digits, _ and - (as erl requires)"
        } else if !host_ok {
            "the host part may not hold spaces, control characters or characters above U+00FF (as erl requires)"
        } else {
            return Ok(());
        };
        Err(NameError::Invalid {
            name: self.to_string(),
            why,
        })
    }

    /// The part before `@` (what EPMD knows).
    pub fn alive(&self) -> &str {
        &self.alive
    }

    /// The part after `@`.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// Whether this is a long name, as `erl` tells them apart: the host has
    /// a dot or is an IP address. See [`mixed_names`].
    pub fn is_long(&self) -> bool {
        self.host.contains('.') || self.host.parse::<std::net::IpAddr>().is_ok()
    }

    /// "short" or "long", for messages.
    pub fn mode(&self) -> &'static str {
        if self.is_long() {
            "long"
        } else {
            "short"
        }
    }
}

/// Why `me` and `peer` cannot connect, when one has a short name and the
/// other a long one. Between two `erl` nodes this never happens: each
/// refuses to dial a node of the other kind ("System NOT running to use
/// fully qualified hostnames", and the converse). An OTP 25 `erl` does
/// accept such a dialer (only a non-BEAM node can be one); this node
/// refuses it too, so the rule holds both ways whoever dials.
pub fn mixed_names(me: &NodeName, peer: &NodeName) -> Option<String> {
    (me.is_long() != peer.is_long()).then(|| {
        format!(
            "{peer} has a {} name and this node ({me}) a {} one: Erlang never connects \
             short-name and long-name nodes (start with -name for long names, -sname for short)",
            peer.mode(),
            me.mode()
        )
    })
}

/// Why a [`NodeConfig`] was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The node's own name is one `erl` would refuse.
    #[error(transparent)]
    Name(#[from] NameError),
    /// The cookie is empty (`erl` refuses it too).
    #[error("the cookie is empty")]
    EmptyCookie,
    /// `net_ticktime` under one second (ticks would never let a connection
    /// rest; `erl` wants a positive integer too), or over
    /// [`MAX_NET_TICKTIME`] (where `erl`'s ticker exits with
    /// `timeout_value`).
    #[error("net_ticktime must be from 1 to 17179869 seconds, as erl's (got {} s)", .0.as_secs_f64())]
    TickTime(Duration),
    /// A distribution port range whose low end is above its high end.
    #[error("bad distribution port range {0}: the low end is above the high end")]
    PortRange(PortRange),
    /// The EPMD-less distribution port ([`NodeConfig::static_port`]) is 0:
    /// peers could not be dialled at it.
    #[error("the EPMD-less distribution port (erl_epmd_port) cannot be 0")]
    StaticPortZero,
}

/// The largest `net_ticktime` `erl` runs with: 17,179,869 seconds (OTP 25's
/// ticker waits a quarter of it, in milliseconds, and a timer takes at
/// most 2^32 - 1; one second more and it exits with `timeout_value`).
pub const MAX_NET_TICKTIME: Duration = Duration::from_secs(17_179_869);

/// The ports the node may listen on for distribution connections, as
/// `erl`'s `inet_dist_listen_min`/`inet_dist_listen_max`: the first free
/// one is taken. `0-0` (the default) lets the system pick any free port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PortRange {
    /// The lowest port tried.
    pub min: u16,
    /// The highest port tried.
    pub max: u16,
}

impl PortRange {
    /// Any free port, chosen by the system.
    pub const ANY: PortRange = PortRange { min: 0, max: 0 };

    /// Just `port`.
    pub fn single(port: u16) -> PortRange {
        PortRange {
            min: port,
            max: port,
        }
    }

    /// Whether the system picks the port.
    pub fn is_any(&self) -> bool {
        *self == PortRange::ANY
    }
}

impl fmt::Display for PortRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.min, self.max)
    }
}

/// Why a port range could not be parsed ([`PortRange`]'s `FromStr`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bad port range {0:?}: expected MIN-MAX or PORT (ports 0-65535, MIN <= MAX)")]
pub struct PortRangeError(pub String);

impl std::str::FromStr for PortRange {
    type Err = PortRangeError;
    /// `MIN-MAX` or a single `PORT`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || PortRangeError(s.to_string());
        let port = |p: &str| p.trim().parse::<u16>().map_err(|_| bad());
        let r = match s.split_once('-') {
            Some((min, max)) => PortRange {
                min: port(min)?,
                max: port(max)?,
            },
            None => PortRange::single(port(s)?),
        };
        if r.min > r.max {
            return Err(bad());
        }
        Ok(r)
    }
}

impl fmt::Display for NodeName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.alive, self.host)
    }
}

impl std::str::FromStr for NodeName {
    type Err = NameError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

/// This machine's host name: the short one (up to the first dot), or the
/// fully qualified one for long names (falling back to the short name plus
/// the domain from `/etc/resolv.conf`-less systems: the name as is).
pub fn local_host(long_names: bool) -> String {
    let raw = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "localhost".to_string());
    let raw = raw.trim().to_string();
    if long_names {
        if raw.contains('.') {
            raw
        } else {
            // erl would use the resolver's FQDN; with none, the loopback
            // address is the portable choice.
            "127.0.0.1".to_string()
        }
    } else {
        raw.split('.').next().unwrap_or("localhost").to_string()
    }
}

/// The secret shared by the nodes of a cluster. `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct Cookie(String);

impl Cookie {
    /// Wraps a cookie.
    pub fn new(s: impl Into<String>) -> Self {
        Cookie(s.into())
    }
    /// The cookie text, for digests only.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Cookie {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Cookie(<hidden>)")
    }
}

/// Everything a [`crate::Node`] needs to start.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// This node's name.
    pub name: NodeName,
    /// The cluster cookie.
    pub cookie: Cookie,
    /// EPMD port (`ERL_EPMD_PORT`, default 4369).
    pub epmd_port: u16,
    /// `net_ticktime`: a peer silent this long is declared down; ticks are
    /// sent every quarter of it.
    pub net_ticktime: Duration,
    /// `net_setuptime`: how long a connection's set-up may take (default
    /// 7 s, as BEAM's): for a dial, finding the node in its EPMD, opening
    /// a TCP connection to it and the handshake together; for a peer that
    /// dials us, the handshake. A SYN sent into a silent network (a
    /// partition) is otherwise retried by the kernel for about two
    /// minutes, and holds the redial after the network is back; a peer
    /// that accepts and then stalls would hold the dial as long.
    pub net_setuptime: Duration,
    /// Start an EPMD server inside the process if none answers: at start,
    /// and later whenever the EPMD the node registered with is gone and
    /// none answers in its place (so that the node stays findable by name).
    /// It goes with the process: BEAM nodes that registered with it can no
    /// longer be found by name afterwards (BEAM does not register again).
    /// Where that matters, start `epmd -daemon` before the node, as `erl`
    /// and the CLI's `run` do.
    pub embedded_epmd: bool,
    /// Where no EPMD answers, at start and whenever the EPMD the node
    /// registered with is gone, first run `epmd -daemon` on `epmd_port`
    /// (as `erl` starts one, [`crate::epmd::start_daemon`]) and register
    /// with it: it outlives this process, so the BEAM nodes that register
    /// with it again stay findable by name after this node stops. The
    /// embedded EPMD ([`embedded_epmd`](Self::embedded_epmd)) only where
    /// `epmd` cannot be run. Off by default (a library should not start
    /// daemons unasked); the CLI's `run` sets it (`--start-epmd`).
    pub epmd_daemon: bool,
    /// Whether [`crate::Node::start`] fails when no EPMD answers and
    /// `embedded_epmd` is off (the default, as `erl -start_epmd false`
    /// without an EPMD does). Off, the node starts unregistered: it dials
    /// other nodes as usual (looking them up through the EPMD of their
    /// host), but none can find it by name until an EPMD comes up on
    /// `epmd_port`, with which it then registers. The CLI's one-shot
    /// commands (`ping`, `status`, `members`, ...) run so: they never own
    /// an EPMD, which a longer-lived node could have registered with and
    /// would lose when the command exits.
    pub epmd_required: bool,
    /// Largest frame accepted from a peer (bytes).
    pub max_frame: usize,
    /// The most memory one term from a peer may take once decoded
    /// ([`crate::term::Limits::max_memory`], 512 MiB by default): a
    /// message past it is dropped with a warning, the connection stays.
    pub max_term_memory: usize,
    /// Messages larger than this are sent in fragments to peers that accept
    /// them.
    pub fragment_size: usize,
    /// Read coalescing: when a peer streams messages one way (a read that
    /// drained the socket brought 8 or more, 64 or more came within the
    /// last millisecond, we sent it fewer than one for eight, and none
    /// was a call within the last 1–2 ms; see
    /// [`Burst`](crate::dist::connection::Burst)), wait this long before
    /// reading that connection again, so that the peer writes into the
    /// socket's buffer without waking this node for each write; what came
    /// meanwhile is then read in one go. The peer's CPU a message falls and
    /// the rate rises (a BEAM node streaming to us on loopback: 1.4–3×
    /// the messages a second; see BENCHMARKS.md). The wait is rounded up to
    /// the runtime's timer (tokio's: the next millisecond tick), so a
    /// message that arrives during it is read up to about 1 ms later; a
    /// connection that brings one message at a time, or calls (one caller
    /// beside a stream, or many at once, each waiting for its reply),
    /// never waits. `None`
    /// reads at once, always. By default 100 µs (so at most about 1.1 ms).
    pub read_hold: Option<Duration>,
    /// Most queued for one peer: a peer that falls further behind (more
    /// messages, or more bytes with more than one message) is disconnected
    /// rather than allowed to grow memory without bound. By default a
    /// million messages or 1 GiB.
    pub max_peer_queue: QueueLimit,
    /// Most queued for every peer together, in bytes as
    /// [`max_peer_queue`](Self::max_peer_queue) counts them: past it, a
    /// peer with more than 16 MiB queued that is sent more is disconnected,
    /// so that many slow peers cannot add their bounds up. By default
    /// 2 GiB.
    pub max_total_queue: usize,
    /// Most monitors and links one peer holds on this node's processes
    /// (its `erlang:monitor/2` and `link/1` of them): a peer past it is
    /// disconnected (its monitors and links go with it), as one past
    /// [`max_peer_queue`](Self::max_peer_queue) is, rather than allowed to
    /// grow memory without bound (about 200 bytes each). Counted every
    /// eighth of it (at most every 65,536) that the peer sets. BEAM sets
    /// no such bound. By default a million (a BEAM cpg or pg scope
    /// monitors each of our member pids once).
    pub max_peer_holds: usize,
    /// Most monitors and links every peer together holds on this node's
    /// processes: past it, a peer that sets more and holds more than an
    /// eighth of [`max_peer_holds`](Self::max_peer_holds) (at most 65,536)
    /// is disconnected, so that many peers cannot add their bounds up. By
    /// default 4 million.
    pub max_total_holds: usize,
    /// Queued for one peer above which it is busy:
    /// [`Process::send_paced`](crate::process::Process::send_paced) waits
    /// until its connection has taken the queue back to this. By default
    /// 1 MiB, BEAM's `dist_buf_busy_limit`, or 8,192 messages (a queue of
    /// small messages costs more memory than their bytes on the wire).
    pub busy_peer_queue: QueueLimit,
    /// How long to wait between attempts to register with EPMD again after
    /// losing it, and the default for redialling peers
    /// ([`crate::node::cluster`]).
    pub backoff: Backoff,
    /// The ports to listen on for distribution connections (default: any).
    pub listen_ports: PortRange,
    /// The address to listen on for distribution connections, as `erl`'s
    /// `inet_dist_use_interface` (e.g. a private network's, or 127.0.0.1
    /// for a node of this host only). `None` (the default): every address,
    /// IPv4 and IPv6 alike.
    pub listen_addr: Option<std::net::IpAddr>,
    /// EPMD-less distribution, as `erl -start_epmd false -erl_epmd_port
    /// PORT` (OTP 23.1+; clusters in containers use it): every node of the
    /// cluster listens on this one port, so a peer is dialled at
    /// `host:PORT` with no EPMD asked, and this node registers with no
    /// EPMD and starts none. `None` (the default): EPMD as usual.
    /// [`epmd_less`](Self::epmd_less) sets it and listens on the port too;
    /// set by hand, the node listens where
    /// [`listen_ports`](Self::listen_ports) says (a node that only asks
    /// the cluster, as the CLI's one-shot commands, listens on any port:
    /// the port is the running node's).
    pub static_port: Option<u16>,
}

/// The default [`NodeConfig::read_hold`].
pub const DEFAULT_READ_HOLD: Duration = Duration::from_micros(100);

/// A bound on what is queued for one peer: messages, and their bytes as
/// they will be written (the size of their encoding, which the queue holds
/// as terms).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueLimit {
    /// Messages.
    pub messages: usize,
    /// Bytes.
    pub bytes: usize,
}

/// Capped exponential backoff with jitter, for anything retried after a
/// fault: attempt `n` waits between half and all of `initial * 2^n`, at most
/// `max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// The first retry's upper bound.
    pub initial: Duration,
    /// No wait is longer than this.
    pub max: Duration,
}

impl Default for Backoff {
    /// 200 ms for the first retry (so between 100 and 200 ms), doubling up
    /// to 10 s.
    fn default() -> Self {
        Backoff {
            initial: Duration::from_millis(200),
            max: Duration::from_secs(10),
        }
    }
}

impl Backoff {
    /// The wait before retry `attempt` (0 for the first), with `jitter` in
    /// `[0, 1)` choosing where in the upper half of the window it falls
    /// ("equal jitter": retries of many nodes spread out, yet none comes
    /// sooner than half the window).
    pub fn delay(&self, attempt: u32, jitter: f64) -> Duration {
        let window = self
            .initial
            .saturating_mul(1u32 << attempt.min(20))
            .min(self.max);
        let jitter = jitter.clamp(0.0, 1.0);
        window / 2 + window.mul_f64(jitter / 2.0)
    }

    /// [`Backoff::delay`] with a random jitter.
    pub fn random_delay(&self, attempt: u32) -> Duration {
        self.delay(attempt, rand::random::<f64>())
    }
}

impl NodeConfig {
    /// Refuses a configuration `erl` would refuse: a name it would not
    /// take ([`NodeName::check_own`]), an empty cookie, a `net_ticktime`
    /// under one second or over [`MAX_NET_TICKTIME`].
    /// [`crate::Node::start`] checks it.
    pub fn check(&self) -> Result<(), ConfigError> {
        self.name.check_own()?;
        if self.cookie.expose().is_empty() {
            return Err(ConfigError::EmptyCookie);
        }
        if self.net_ticktime < Duration::from_secs(1) || self.net_ticktime > MAX_NET_TICKTIME {
            return Err(ConfigError::TickTime(self.net_ticktime));
        }
        if self.listen_ports.min > self.listen_ports.max {
            return Err(ConfigError::PortRange(self.listen_ports));
        }
        if self.static_port == Some(0) {
            return Err(ConfigError::StaticPortZero);
        }
        Ok(())
    }

    /// A configuration with the defaults `erl` uses.
    pub fn new(name: NodeName, cookie: Cookie) -> Self {
        NodeConfig {
            name,
            cookie,
            epmd_port: 4369,
            net_ticktime: Duration::from_secs(60),
            net_setuptime: Duration::from_secs(7),
            embedded_epmd: true,
            epmd_daemon: false,
            epmd_required: true,
            max_frame: 256 << 20,
            max_term_memory: crate::term::DEFAULT_MAX_MEMORY,
            fragment_size: 64 << 10,
            read_hold: Some(DEFAULT_READ_HOLD),
            max_peer_queue: QueueLimit {
                messages: 1 << 20,
                bytes: 1 << 30,
            },
            max_total_queue: 2 << 30,
            max_peer_holds: 1 << 20,
            max_total_holds: 4 << 20,
            busy_peer_queue: QueueLimit {
                messages: 8192,
                bytes: 1 << 20,
            },
            backoff: Backoff::default(),
            listen_ports: PortRange::ANY,
            static_port: None,
            listen_addr: None,
        }
    }

    /// EPMD-less distribution on `port`, as `erl -start_epmd false
    /// -erl_epmd_port PORT`: peers dialled at that port of their host
    /// ([`static_port`](Self::static_port)), and this node listening on it
    /// ([`listen_ports`](Self::listen_ports)), where they dial it.
    pub fn epmd_less(&mut self, port: u16) -> &mut Self {
        self.static_port = Some(port);
        self.listen_ports = PortRange::single(port);
        self
    }
}

/// Why the cookie could not be had from `$HOME/.erlang.cookie`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CookieError {
    /// `HOME` is not set, so there is no cookie file to read.
    #[error("HOME is not set: give the cookie with --cookie or -setcookie")]
    NoHome,
    /// The file could not be read or created.
    #[error("cookie file {}: {source}", .path.display())]
    Io {
        /// The file.
        path: std::path::PathBuf,
        /// What failed.
        source: std::io::Error,
    },
    /// Group or others may access the file; `erl` refuses it too.
    #[error("cookie file {} must be accessible by owner only (it has mode {mode:o}; chmod 400 it)", .path.display())]
    Permissions {
        /// The file.
        path: std::path::PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// The file holds no cookie; `erl` refuses it too ("Too short cookie
    /// string").
    #[error("cookie file {} is empty", .path.display())]
    Empty {
        /// The file.
        path: std::path::PathBuf,
    },
}

/// `$HOME/.erlang.cookie`.
pub fn cookie_path() -> Result<std::path::PathBuf, CookieError> {
    Ok(home_dir()
        .ok_or(CookieError::NoHome)?
        .join(".erlang.cookie"))
}

/// `$HOME`, where it is set and not empty.
fn home_dir() -> Option<std::path::PathBuf> {
    std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(std::path::PathBuf::from)
}

/// Where `erl` (OTP 24+) looks for the cookie when `$HOME/.erlang.cookie`
/// is missing: `erlang/.erlang.cookie` in the XDG user configuration
/// folder (`$XDG_CONFIG_HOME`, or `$HOME/.config`), as
/// `filename:basedir(user_config, "erlang")` gives it.
pub fn xdg_cookie_path() -> Option<std::path::PathBuf> {
    let config = match std::env::var_os("XDG_CONFIG_HOME").filter(|x| !x.is_empty()) {
        Some(x) => std::path::PathBuf::from(x),
        None => home_dir()?.join(".config"),
    };
    Some(config.join("erlang").join(".erlang.cookie"))
}

/// The cookie file `erl` reads: `$HOME/.erlang.cookie`, or where that is
/// missing and the XDG one ([`xdg_cookie_path`]) exists, that one.
fn cookie_file_read() -> Result<std::path::PathBuf, CookieError> {
    let home = cookie_path()?;
    Ok(match xdg_cookie_path() {
        Some(xdg) if !home.exists() && xdg.exists() => xdg,
        _ => home,
    })
}

/// Reads the cookie as `erl` does, from `$HOME/.erlang.cookie` or, where
/// that is missing, the XDG location ([`xdg_cookie_path`]): a file that
/// group or others may access, or an empty one, is refused.
pub fn default_cookie() -> Result<Cookie, CookieError> {
    read_cookie_file(&cookie_file_read()?)
}

/// Like [`default_cookie`], but where neither file exists,
/// `$HOME/.erlang.cookie` is created as `erl` creates it: 20 random capital
/// letters, mode 0400. Returns the cookie and, when the file was created,
/// its path (so the caller can say so).
pub fn default_cookie_or_create() -> Result<(Cookie, Option<std::path::PathBuf>), CookieError> {
    cookie_file_or_create(&cookie_file_read()?)
}

/// [`default_cookie_or_create`] for a cookie file at `path`.
pub fn cookie_file_or_create(
    path: &std::path::Path,
) -> Result<(Cookie, Option<std::path::PathBuf>), CookieError> {
    let path = path.to_path_buf();
    match read_cookie_file(&path) {
        Err(CookieError::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
            let cookie: String = (0..20)
                .map(|_| char::from(b'A' + rand::random_range(0..26u8)))
                .collect();
            let io = |source| CookieError::Io {
                path: path.clone(),
                source,
            };
            let mut o = std::fs::OpenOptions::new();
            o.write(true).create_new(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut o, 0o400);
            let mut f = o.open(&path).map_err(io)?;
            std::io::Write::write_all(&mut f, cookie.as_bytes()).map_err(io)?;
            Ok((Cookie::new(cookie), Some(path)))
        }
        other => other.map(|c| (c, None)),
    }
}

/// Reads a cookie file with [`default_cookie`]'s rules.
pub fn read_cookie_file(path: &std::path::Path) -> Result<Cookie, CookieError> {
    let io = |source| CookieError::Io {
        path: path.to_path_buf(),
        source,
    };
    let meta = std::fs::metadata(path).map_err(io)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(CookieError::Permissions {
                path: path.to_path_buf(),
                mode,
            });
        }
    }
    #[cfg(not(unix))]
    let _ = meta;
    let s = std::fs::read_to_string(path).map_err(io)?;
    let c = s.trim();
    if c.is_empty() {
        return Err(CookieError::Empty {
            path: path.to_path_buf(),
        });
    }
    Ok(Cookie::new(c))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_ranges() {
        let r = |s: &str| s.parse::<PortRange>();
        assert_eq!(
            r("9100-9105"),
            Ok(PortRange {
                min: 9100,
                max: 9105
            })
        );
        assert_eq!(r("9100"), Ok(PortRange::single(9100)));
        assert!(r("0").unwrap().is_any());
        for bad in ["9105-9100", "a-b", "1-", "-1", "70000", ""] {
            assert!(r(bad).is_err(), "{bad}");
        }
        let mut c = NodeConfig::new(NodeName::parse("a@h").unwrap(), Cookie::new("c"));
        c.listen_ports = PortRange { min: 2, max: 1 };
        assert!(matches!(c.check(), Err(ConfigError::PortRange(_))));
    }

    #[test]
    fn names() {
        let n = NodeName::parse("r@host").unwrap();
        assert_eq!((n.alive(), n.host()), ("r", "host"));
        assert!(NodeName::parse("r").is_err());
        assert!(NodeName::parse("@h").is_err());
        assert!(NodeName::parse("a@").is_err());
        assert!(NodeName::from_cli("r@a.b", false).is_err());
        // As `erl -sname` takes them (OTP 25, tried): the alive part of
        // [0-9A-Za-z_-], the host of printable Latin-1, "a@" on this host.
        for good in ["a-b", "a_b", "Ab9", "9", "_", "a@h_x", "a@b!c", "a@bä"] {
            let n = NodeName::from_cli(good, false);
            assert!(n.is_ok(), "{good}: {n:?}");
        }
        assert_eq!(
            NodeName::from_cli("a@", false).unwrap().host(),
            NodeName::from_cli("a", false).unwrap().host()
        );
        for bad in [
            "a.b", "a+b", "ä", "a b", "bad!name", "a@b c", "a@b\tc", "a@bĀ",
        ] {
            let n = NodeName::from_cli(bad, false);
            assert!(matches!(n, Err(NameError::Invalid { .. })), "{bad}: {n:?}");
        }
        // An IP host: a long-name node, with or without --long-names.
        for long_names in [false, true] {
            let n = NodeName::from_cli("r@127.0.0.1", long_names).unwrap();
            assert!(n.is_long());
        }
        assert!(NodeName::from_cli("r@host", true).is_err());
        let short = NodeName::from_cli("r", false).unwrap();
        assert!(!short.host().contains('.'));
    }

    #[test]
    fn backoff_grows_to_its_cap_with_jitter_in_the_upper_half() {
        let b = Backoff::default();
        assert_eq!(b.delay(0, 0.0), Duration::from_millis(100));
        assert_eq!(b.delay(0, 1.0), Duration::from_millis(200));
        assert_eq!(b.delay(1, 0.0), Duration::from_millis(200));
        assert_eq!(b.delay(3, 1.0), Duration::from_millis(1600));
        for attempt in [6, 7, 30, u32::MAX] {
            assert_eq!(b.delay(attempt, 1.0), Duration::from_secs(10));
            assert_eq!(b.delay(attempt, 0.0), Duration::from_secs(5));
        }
        for _ in 0..100 {
            let d = b.random_delay(0);
            assert!(d >= Duration::from_millis(100) && d <= Duration::from_millis(200));
        }
    }

    #[test]
    fn modes() {
        assert!(!NodeName::parse("a@vm").unwrap().is_long());
        assert!(NodeName::parse("a@h.example").unwrap().is_long());
        assert!(NodeName::parse("a@127.0.0.1").unwrap().is_long());
        assert!(NodeName::parse("a@::1").unwrap().is_long());
    }

    #[test]
    fn config_checks() {
        let n = NodeName::parse("a@h").unwrap();
        assert!(NodeConfig::new(n.clone(), Cookie::new("c")).check().is_ok());
        assert_eq!(
            NodeConfig::new(n.clone(), Cookie::new("")).check(),
            Err(ConfigError::EmptyCookie)
        );
        let mut c = NodeConfig::new(n, Cookie::new("c"));
        c.net_ticktime = Duration::ZERO;
        assert!(matches!(c.check(), Err(ConfigError::TickTime(_))));
        let odd = NodeName::parse("bad!name@h").unwrap();
        assert!(matches!(
            NodeConfig::new(odd, Cookie::new("c")).check(),
            Err(ConfigError::Name(NameError::Invalid { .. }))
        ));
    }

    #[test]
    fn cookie_file_created_as_erl_does_and_refused_when_others_may_read_it() {
        let dir = std::env::temp_dir().join(format!("cpg_node_cookie_{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(".erlang.cookie");
        let (c, created) = cookie_file_or_create(&path).unwrap();
        assert_eq!(created.as_deref(), Some(path.as_path()));
        assert_eq!(c.expose().len(), 20);
        assert!(c.expose().bytes().all(|b| b.is_ascii_uppercase()));
        let (again, created) = cookie_file_or_create(&path).unwrap();
        assert_eq!((again, created), (c, None));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o400);
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
            assert!(matches!(
                read_cookie_file(&path),
                Err(CookieError::Permissions { mode: 0o644, .. })
            ));
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        }
        std::fs::write(&path, "\n").unwrap();
        assert!(matches!(
            read_cookie_file(&path),
            Err(CookieError::Empty { .. })
        ));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn cookie_not_in_debug() {
        let c = Cookie::new("sekrit");
        assert!(!format!("{c:?}").contains("sekrit"));
    }
}
