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
    /// A short name whose host part has dots, or a long name whose host
    /// has none (and is not an IP address), as `erl` refuses.
    #[error("node name {name:?} does not fit {mode} names")]
    WrongMode {
        /// The name.
        name: String,
        /// "short" or "long".
        mode: &'static str,
    },
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
    /// name without `@` gets this machine's short host name (or its fully
    /// qualified one with `long_names`).
    pub fn from_cli(name: &str, long_names: bool) -> Result<Self, NameError> {
        let n = if name.contains('@') {
            Self::parse(name)?
        } else {
            Self::parse(&format!("{}@{}", name, local_host(long_names)))?
        };
        let ip = n.host.parse::<std::net::IpAddr>().is_ok();
        if !long_names && n.host.contains('.') && !ip {
            return Err(NameError::WrongMode {
                name: n.to_string(),
                mode: "short",
            });
        }
        if long_names && !n.host.contains('.') && !ip {
            return Err(NameError::WrongMode {
                name: n.to_string(),
                mode: "long",
            });
        }
        Ok(n)
    }

    /// The part before `@` (what EPMD knows).
    pub fn alive(&self) -> &str {
        &self.alive
    }

    /// The part after `@`.
    pub fn host(&self) -> &str {
        &self.host
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
    /// Start an EPMD server inside the process if none answers.
    pub embedded_epmd: bool,
    /// Largest frame accepted from a peer (bytes).
    pub max_frame: usize,
    /// Messages larger than this are sent in fragments to peers that accept
    /// them.
    pub fragment_size: usize,
    /// Most messages queued for one peer; a peer that falls further behind
    /// is disconnected rather than allowed to grow memory without bound.
    pub max_peer_queue: usize,
    /// How long to wait between attempts to register with EPMD again after
    /// losing it, and the default for redialling peers
    /// ([`crate::node::cluster`]).
    pub backoff: Backoff,
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
    /// A configuration with the defaults `erl` uses.
    pub fn new(name: NodeName, cookie: Cookie) -> Self {
        NodeConfig {
            name,
            cookie,
            epmd_port: 4369,
            net_ticktime: Duration::from_secs(60),
            embedded_epmd: true,
            max_frame: 256 << 20,
            fragment_size: 64 << 10,
            max_peer_queue: 1 << 20,
            backoff: Backoff::default(),
        }
    }
}

/// Reads `$HOME/.erlang.cookie` as `erl` does.
pub fn default_cookie() -> std::io::Result<Cookie> {
    let home = std::env::var_os("HOME").ok_or_else(|| std::io::Error::other("HOME is not set"))?;
    let path = std::path::Path::new(&home).join(".erlang.cookie");
    let s = std::fs::read_to_string(&path)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if let Ok(m) = std::fs::metadata(&path) {
            if m.permissions().mode() & 0o077 != 0 {
                tracing::warn!(
                    "cookie file {} must be accessible by owner only",
                    path.display()
                );
            }
        }
    }
    Ok(Cookie::new(s.trim()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        let n = NodeName::parse("r@host").unwrap();
        assert_eq!((n.alive(), n.host()), ("r", "host"));
        assert!(NodeName::parse("r").is_err());
        assert!(NodeName::parse("@h").is_err());
        assert!(NodeName::parse("a@").is_err());
        assert!(NodeName::from_cli("r@a.b", false).is_err());
        assert!(NodeName::from_cli("r@127.0.0.1", false).is_ok());
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
    fn cookie_not_in_debug() {
        let c = Cookie::new("sekrit");
        assert!(!format!("{c:?}").contains("sekrit"));
    }
}
