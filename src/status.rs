//! The node's status, as the node itself tells it: a process registered as
//! [`NAME`] (`cpg_node_status`) answers `gen_server:call(cpg_node_status,
//! status)` with an Erlang map, so any node of the cluster can ask (the
//! `cpg-node status` command, or an erl shell:
//! `gen_server:call({cpg_node_status, 'rust@host'}, status)`).
//!
//! ```erlang
//! #{node => 'rust@host', creation => 1700000000, version => <<"0.1.0">>,
//!   uptime_ms => 5123, processes => 4,
//!   peers => [#{node => 'app@host', creation => 1699999999,
//!               hidden => false, direction => in | out, connected_ms => 5000,
//!               last_heard_ms => 120, msgs_in => 12, msgs_out => 9,
//!               bytes_in => 2048, bytes_out => 1024, queued => 0,
//!               queued_bytes => 0}],
//!   scopes => [#{scope => cpg_default_scope, groups => 2, members => 3,
//!                local_members => 1, pids => 2,
//!                node_types => #{'app@host' => all | visible | asking}}],
//!   cluster => undefined |
//!              [#{node => 'app@host', origin => seed | discovered | seen,
//!                 connected => true, failures => 0,
//!                 next_attempt_ms => undefined | 200,
//!                 last_error => undefined | <<"...">>}]}
//! ```
//!
//! Any other request is answered `{error, {unknown_call, Request}}`.
//!
//! ```no_run
//! # async fn f(node: cpg_node::Node, scope: cpg_node::cpg::CpgScope) {
//! let status = cpg_node::status::Status::new(&node).scope(&scope);
//! status.serve().expect("the name cpg_node_status is free");
//! # }
//! ```

use crate::cpg::{CpgScope, ScopeSummary};
use crate::dist::connection::{Direction, LinkStats};
use crate::node::cluster::{Cluster, ClusterView, Origin, TargetStatus};
use crate::node::{Node, PeerStats};
use crate::process::{Process, SendError};
use crate::term::{self, atom, tuple, Pid, Term};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

/// The name the status process is registered under.
pub const NAME: &str = "cpg_node_status";

/// The request it answers.
pub const REQUEST: &str = "status";

/// A snapshot of the node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeStatus {
    /// The node's name.
    pub node: String,
    /// Its creation.
    pub creation: u32,
    /// The version of cpg-node it runs.
    pub version: String,
    /// How long it has been running.
    pub uptime: Duration,
    /// How many processes it hosts.
    pub processes: usize,
    /// Its connections.
    pub peers: Vec<PeerStats>,
    /// Its cpg scopes.
    pub scopes: Vec<ScopeSummary>,
    /// The cluster keeper's targets, when a [`Cluster`] runs.
    pub cluster: Option<Vec<TargetStatus>>,
}

/// A status reply that is not what [`NodeStatus::to_term`] makes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unexpected status reply: {0}")]
pub struct BadStatus(pub String);

/// Why [`NodeStatus::ask`] got no status.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum AskError {
    /// The call failed (`Down(noproc)`: the peer serves no status).
    #[error(transparent)]
    Call(#[from] crate::process::CallError),
    /// The reply is not a status.
    #[error(transparent)]
    Bad(#[from] BadStatus),
}

type ScopeFn = Arc<dyn Fn() -> ScopeSummary + Send + Sync>;

/// What the status reports on: the node, and the scopes and cluster keeper
/// it is given. Clone it freely.
#[derive(Clone)]
pub struct Status {
    node: Node,
    scopes: Vec<ScopeFn>,
    cluster: Option<ClusterView>,
}

impl std::fmt::Debug for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Status({}, {} scopes)",
            self.node.name(),
            self.scopes.len()
        )
    }
}

impl Status {
    /// The status of `node`, with no scope and no cluster keeper yet.
    pub fn new(node: &Node) -> Self {
        Status {
            node: node.clone(),
            scopes: Vec::new(),
            cluster: None,
        }
    }

    /// Reports on `scope` too (trie or map storage).
    pub fn scope<N>(mut self, scope: &CpgScope<N>) -> Self
    where
        N: crate::cpg::wire::WireName + Send + Sync + 'static,
        CpgScope<N>: Send + Sync,
    {
        let s = scope.clone();
        self.scopes.push(Arc::new(move || s.summary()));
        self
    }

    /// Reports on the targets of `cluster` too (while it runs).
    pub fn cluster(mut self, cluster: &Cluster) -> Self {
        self.cluster = Some(cluster.view());
        self
    }

    /// The status now.
    pub fn snapshot(&self) -> NodeStatus {
        NodeStatus {
            node: self.node.name().to_string(),
            creation: self.node.creation(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            uptime: self.node.uptime(),
            processes: self.node.process_count(),
            peers: self.node.peer_info(),
            scopes: self.scopes.iter().map(|f| f()).collect(),
            cluster: self.cluster.as_ref().and_then(ClusterView::targets),
        }
    }

    /// Starts the status process, registered as [`NAME`]; returns its pid.
    /// It runs until the node shuts down.
    pub fn serve(self) -> Result<Pid, SendError> {
        let mut p = self.node.spawn_registered(NAME)?;
        let pid = p.pid().clone();
        tokio::spawn(async move {
            let on_call = |_: &Process, req: &Term| {
                if term::as_atom(req) == Some(REQUEST) {
                    self.snapshot().to_term()
                } else {
                    tuple(vec![
                        atom("error"),
                        tuple(vec![atom("unknown_call"), req.clone()]),
                    ])
                }
            };
            p.serve_calls(on_call).await;
        });
        Ok(pid)
    }
}

fn ms(d: Duration) -> Term {
    term::uint(d.as_millis() as u64)
}

fn opt(t: Option<Term>) -> Term {
    t.unwrap_or_else(|| atom("undefined"))
}

fn text(s: &str) -> Term {
    term::binary(s.as_bytes().to_vec())
}

fn origin_name(o: Origin) -> &'static str {
    match o {
        Origin::Seed => "seed",
        Origin::Discovered => "discovered",
        Origin::Seen => "seen",
    }
}

fn m(pairs: Vec<(&str, Term)>) -> Term {
    term::map(pairs.into_iter().map(|(k, v)| (atom(k), v)).collect())
}

impl NodeStatus {
    /// The Erlang map the status process answers with (see the module
    /// documentation).
    pub fn to_term(&self) -> Term {
        let peers = self
            .peers
            .iter()
            .map(|p| {
                let l = &p.link;
                m(vec![
                    ("node", atom(&p.node)),
                    ("creation", term::uint(p.creation.into())),
                    ("hidden", atom(if p.hidden { "true" } else { "false" })),
                    ("direction", opt(l.direction.map(|d| atom(d.as_str())))),
                    ("connected_ms", opt(l.connected_for.map(ms))),
                    ("last_heard_ms", ms(l.last_heard)),
                    ("msgs_in", term::uint(l.msgs_in)),
                    ("msgs_out", term::uint(l.msgs_out)),
                    ("bytes_in", term::uint(l.bytes_in)),
                    ("bytes_out", term::uint(l.bytes_out)),
                    ("queued", term::uint(l.queued as u64)),
                    ("queued_bytes", term::uint(l.queued_bytes as u64)),
                ])
            })
            .collect();
        let scopes = self
            .scopes
            .iter()
            .map(|s| {
                m(vec![
                    ("scope", atom(&s.scope)),
                    ("groups", term::uint(s.groups as u64)),
                    ("members", term::uint(s.members as u64)),
                    ("local_members", term::uint(s.local_members as u64)),
                    ("pids", term::uint(s.pids as u64)),
                    (
                        "node_types",
                        m(s.node_types
                            .iter()
                            .map(|(n, t)| (n.as_str(), atom(t)))
                            .collect()),
                    ),
                ])
            })
            .collect();
        let cluster = self.cluster.as_ref().map(|ts| {
            term::list(
                ts.iter()
                    .map(|t| {
                        m(vec![
                            ("node", atom(&t.node)),
                            ("origin", atom(origin_name(t.origin))),
                            (
                                "connected",
                                atom(if t.connected { "true" } else { "false" }),
                            ),
                            ("failures", term::uint(t.failures.into())),
                            ("next_attempt_ms", opt(t.next_attempt_in.map(ms))),
                            ("last_error", opt(t.last_error.as_deref().map(text))),
                        ])
                    })
                    .collect(),
            )
        });
        m(vec![
            ("node", atom(&self.node)),
            ("creation", term::uint(self.creation.into())),
            ("version", text(&self.version)),
            ("uptime_ms", ms(self.uptime)),
            ("processes", term::uint(self.processes as u64)),
            ("peers", term::list(peers)),
            ("scopes", term::list(scopes)),
            ("cluster", opt(cluster)),
        ])
    }

    /// Asks `peer`'s status process for its status (`cpg-node status`
    /// does). Where `peer` serves none (a BEAM node, or a node that never
    /// called [`Status::serve`]) the call fails with
    /// `CallError::Down(noproc)`. A cpg-node has no `rex`: this is also how
    /// another node learns its peers.
    pub async fn ask(node: &Node, peer: &str, timeout: Duration) -> Result<NodeStatus, AskError> {
        let mut p = node.spawn_process();
        let to = crate::process::Dest::Name(NAME.into(), peer.into());
        let got = p.call(to, atom(REQUEST), timeout).await?;
        Ok(NodeStatus::from_term(&got)?)
    }

    /// Reads the map [`NodeStatus::to_term`] makes (as another node's
    /// status process answered it).
    pub fn from_term(t: &Term) -> Result<NodeStatus, BadStatus> {
        let top = Fields::of(t)?;
        let peers = top
            .list("peers")?
            .iter()
            .map(|p| {
                let f = Fields::of(p)?;
                Ok(PeerStats {
                    node: f.atom("node")?,
                    creation: f.u32("creation")?,
                    // (absent from the status of a node older than it)
                    hidden: f.opt_atom("hidden")?.as_deref() == Some("true"),
                    link: LinkStats {
                        direction: match f.opt_atom("direction")?.as_deref() {
                            Some("in") => Some(Direction::In),
                            Some("out") => Some(Direction::Out),
                            _ => None,
                        },
                        connected_for: f.opt_ms("connected_ms")?,
                        last_heard: f.ms("last_heard_ms")?,
                        msgs_in: f.u64("msgs_in")?,
                        msgs_out: f.u64("msgs_out")?,
                        bytes_in: f.u64("bytes_in")?,
                        bytes_out: f.u64("bytes_out")?,
                        queued: f.u64("queued")? as usize,
                        // (absent from the status of a node older than it)
                        queued_bytes: f.opt_u64("queued_bytes")?.unwrap_or(0) as usize,
                    },
                })
            })
            .collect::<Result<_, BadStatus>>()?;
        let scopes = top
            .list("scopes")?
            .iter()
            .map(|s| {
                let f = Fields::of(s)?;
                Ok(ScopeSummary {
                    scope: f.atom("scope")?,
                    groups: f.u64("groups")? as usize,
                    members: f.u64("members")? as usize,
                    local_members: f.u64("local_members")? as usize,
                    pids: f.u64("pids")? as usize,
                    // (absent from the status of a node older than it)
                    node_types: match f.0.get("node_types") {
                        None => Vec::new(),
                        Some(t) => Fields::of(t)?
                            .0
                            .iter()
                            .map(|(n, v)| {
                                term::as_atom(v)
                                    .map(|v| (n.to_string(), v.to_string()))
                                    .ok_or_else(|| {
                                        BadStatus(format!("node_types: {}", term::show(*v)))
                                    })
                            })
                            .collect::<Result<std::collections::BTreeMap<_, _>, _>>()?
                            .into_iter()
                            .collect(),
                    },
                })
            })
            .collect::<Result<_, BadStatus>>()?;
        let cluster = match top.get("cluster")? {
            t if term::as_atom(t) == Some("undefined") => None,
            t => Some(
                term::as_list(t)
                    .ok_or_else(|| BadStatus(format!("cluster: {}", term::show(t))))?
                    .iter()
                    .map(|c| {
                        let f = Fields::of(c)?;
                        Ok(TargetStatus {
                            node: f.atom("node")?,
                            origin: match f.atom("origin")?.as_str() {
                                "seed" => Origin::Seed,
                                "discovered" => Origin::Discovered,
                                _ => Origin::Seen,
                            },
                            connected: f.atom("connected")? == "true",
                            failures: f.u32("failures")?,
                            next_attempt_in: f.opt_ms("next_attempt_ms")?,
                            last_error: f.opt_text("last_error")?,
                        })
                    })
                    .collect::<Result<_, BadStatus>>()?,
            ),
        };
        Ok(NodeStatus {
            node: top.atom("node")?,
            creation: top.u32("creation")?,
            version: top.opt_text("version")?.unwrap_or_default(),
            uptime: top.ms("uptime_ms")?,
            processes: top.u64("processes")? as usize,
            peers,
            scopes,
            cluster,
        })
    }
}

/// The atom-keyed fields of a map term.
struct Fields<'a>(HashMap<&'a str, &'a Term>);

impl<'a> Fields<'a> {
    fn of(t: &'a Term) -> Result<Self, BadStatus> {
        match t {
            Term::Map(m) => Ok(Fields(
                m.map
                    .iter()
                    .filter_map(|(k, v)| term::as_atom(k).map(|k| (k, v)))
                    .collect(),
            )),
            _ => Err(BadStatus(format!("not a map: {}", term::show(t)))),
        }
    }

    fn get(&self, k: &str) -> Result<&'a Term, BadStatus> {
        self.0
            .get(k)
            .copied()
            .ok_or_else(|| BadStatus(format!("no field {k}")))
    }

    fn bad(&self, k: &str) -> BadStatus {
        BadStatus(format!("field {k}: {}", term::show(self.0[k])))
    }

    fn atom(&self, k: &str) -> Result<String, BadStatus> {
        term::as_atom(self.get(k)?)
            .map(String::from)
            .ok_or_else(|| self.bad(k))
    }

    fn list(&self, k: &str) -> Result<&'a [Term], BadStatus> {
        term::as_list(self.get(k)?).ok_or_else(|| self.bad(k))
    }

    fn opt_atom(&self, k: &str) -> Result<Option<String>, BadStatus> {
        Ok(self.atom(k).ok().filter(|a| a != "undefined"))
    }

    fn u64(&self, k: &str) -> Result<u64, BadStatus> {
        match self.get(k)? {
            Term::FixInteger(i) => u64::try_from(i.value).ok(),
            Term::BigInteger(b) => u64::try_from(&b.value).ok(),
            _ => None,
        }
        .ok_or_else(|| self.bad(k))
    }

    fn opt_u64(&self, k: &str) -> Result<Option<u64>, BadStatus> {
        match self.0.get(k) {
            None => Ok(None),
            Some(_) => self.u64(k).map(Some),
        }
    }

    fn u32(&self, k: &str) -> Result<u32, BadStatus> {
        u32::try_from(self.u64(k)?).map_err(|_| self.bad(k))
    }

    fn ms(&self, k: &str) -> Result<Duration, BadStatus> {
        self.u64(k).map(Duration::from_millis)
    }

    fn opt_ms(&self, k: &str) -> Result<Option<Duration>, BadStatus> {
        match self.get(k)? {
            t if term::as_atom(t) == Some("undefined") => Ok(None),
            _ => self.ms(k).map(Some),
        }
    }

    fn opt_text(&self, k: &str) -> Result<Option<String>, BadStatus> {
        match self.0.get(k) {
            None => Ok(None),
            Some(Term::Binary(b)) => Ok(Some(String::from_utf8_lossy(&b.bytes).into_owned())),
            Some(t) if term::as_atom(t) == Some("undefined") => Ok(None),
            Some(_) => Err(self.bad(k)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_status_term_reads_back_as_it_was_made() {
        let s = NodeStatus {
            node: "rust@h".into(),
            creation: 0xE10001,
            version: "0.1.0".into(),
            uptime: Duration::from_millis(5_000_000_000),
            processes: 4,
            peers: vec![PeerStats {
                node: "app@h".into(),
                creation: 3,
                hidden: true,
                link: LinkStats {
                    direction: Some(Direction::In),
                    connected_for: Some(Duration::from_millis(1234)),
                    last_heard: Duration::from_millis(12),
                    msgs_in: 7,
                    msgs_out: u64::MAX / 2,
                    bytes_in: 100,
                    bytes_out: 200,
                    queued: 0,
                    queued_bytes: 1 << 20,
                },
            }],
            scopes: vec![ScopeSummary {
                scope: "cpg_default_scope".into(),
                groups: 2,
                members: 3,
                local_members: 1,
                pids: 2,
                node_types: vec![
                    ("app@h".into(), "visible".into()),
                    ("b@h".into(), "all".into()),
                ],
            }],
            cluster: Some(vec![TargetStatus {
                node: "app@h".into(),
                origin: Origin::Seed,
                connected: false,
                failures: 2,
                next_attempt_in: Some(Duration::from_millis(400)),
                last_error: Some("no node app in EPMD".into()),
            }]),
        };
        let t = s.to_term();
        // It survives the wire too.
        let mut buf = Vec::new();
        term::encode_into(&t, &mut buf).unwrap();
        let back = term::decode(&buf, term::Limits::default()).unwrap();
        assert_eq!(NodeStatus::from_term(&back).unwrap(), s);
        let none = NodeStatus {
            cluster: None,
            peers: vec![],
            ..s
        };
        assert_eq!(NodeStatus::from_term(&none.to_term()).unwrap(), none);
        assert!(NodeStatus::from_term(&atom("ok")).is_err());
    }
}
