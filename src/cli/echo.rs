//! The echo processes of `run` (`--register`, `--join`, `--pg-join`) and
//! `demo`: `{From, Msg}` gets `Msg` back, a gen_server call its request.
//!
//! `run`'s are kept as an OTP supervisor keeps a permanent child
//! ([`keep_echo`]): one ended by an exit signal (a link to a BEAM process
//! that crashed, `exit(Pid, kill)`) or by `gen_server:stop` is replaced by
//! a new process that takes its name or joins its groups again, so the
//! node does not stay connected with no service behind it.

use cpg_node::cpg::{CpgScope, TermName};
use cpg_node::pg::PgScope;
use cpg_node::process::{Process, Signal};
use cpg_node::term::{self, Pid, Term};
use cpg_node::Node;
use std::time::Duration;
use tokio::time::Instant;

/// What an echo process of `run` is, taken again by each new one.
#[derive(Clone)]
pub enum Role {
    /// Registered under this name (`--register`).
    Registered(String),
    /// A member of these groups in each of these cpg scopes (`--join`).
    Cpg(Vec<CpgScope>, Vec<String>),
    /// A member of these groups in each of these pg scopes (`--pg-join`).
    Pg(Vec<PgScope>, Vec<TermName>),
}

impl Role {
    /// How the log names it.
    fn what(&self) -> String {
        match self {
            Role::Registered(name) => format!("echo process {name}"),
            Role::Cpg(_, groups) => format!("the echo member of cpg groups {groups:?}"),
            Role::Pg(_, groups) => {
                let groups: Vec<String> = groups.iter().map(|g| g.to_string()).collect();
                format!("the echo member of pg groups {groups:?}")
            }
        }
    }

    /// A new process in this role: registered, or joined to every group
    /// in every scope (a failure `Err`, the process then dropped).
    async fn take(&self, node: &Node) -> Result<Process, String> {
        let p = match self {
            Role::Registered(name) => node
                .spawn_registered(name)
                .map_err(|e| format!("cannot register {name}: {e}"))?,
            _ => node.spawn_process(),
        };
        self.join(p.pid()).await?;
        Ok(p)
    }

    async fn join(&self, pid: &Pid) -> Result<(), String> {
        match self {
            Role::Registered(_) => {}
            Role::Cpg(scopes, groups) => {
                for s in scopes {
                    for g in groups {
                        s.join(g, pid)
                            .await
                            .map_err(|e| format!("joining {g:?} in scope {}: {e}", s.name()))?;
                    }
                }
            }
            Role::Pg(scopes, groups) => {
                for s in scopes {
                    for g in groups {
                        s.join(g, pid)
                            .await
                            .map_err(|e| format!("joining {g} in pg scope {}: {e}", s.name()))?;
                    }
                }
            }
        }
        Ok(())
    }
}

/// A run that lasted this long is not part of a crash loop: the restart
/// after it is made at once again (as the node's own supervisors count).
const STABLE: Duration = Duration::from_secs(60);

/// Restarts made at once before the backoff starts.
const AT_ONCE: u32 = 5;

/// `run`'s echo process in `role`: a first one taken now (its failure is
/// the command's), then served and, whenever it ends while the node runs,
/// replaced by a new one (at once the first few times, then after the
/// node's backoff, reset by a run of a minute). Each end is logged with
/// its reason.
pub async fn keep_echo(node: &Node, role: Role) -> Result<Pid, String> {
    let first = role.take(node).await?;
    let pid = first.pid().clone();
    let node = node.clone();
    tokio::spawn(async move {
        let backoff = node.config().backoff;
        let (mut p, mut attempt) = (first, 0u32);
        loop {
            let started = Instant::now();
            let reason = serve_echo(&mut p).await;
            let by_node = p.stopped_by_node();
            // (Dropped first: its links and monitors are told, its name
            // is free for the next one.)
            drop(p);
            if by_node {
                return;
            }
            if started.elapsed() >= STABLE {
                attempt = 0;
            }
            let wait = match attempt.checked_sub(AT_ONCE) {
                None => Duration::ZERO,
                Some(k) => backoff.random_delay(k),
            };
            attempt = attempt.saturating_add(1);
            tracing::warn!(
                "{} ended ({}); starting a new one in {wait:?}",
                role.what(),
                term::show(&reason)
            );
            tokio::time::sleep(wait).await;
            p = loop {
                match role.take(&node).await {
                    Ok(p) => break p,
                    Err(e) if node.is_stopping() => {
                        tracing::debug!("{}: not restarted, the node stops: {e}", role.what());
                        return;
                    }
                    Err(e) => {
                        let wait = backoff.random_delay(attempt);
                        attempt = attempt.saturating_add(1);
                        tracing::warn!("{}: {e}; trying again in {wait:?}", role.what());
                        tokio::time::sleep(wait).await;
                    }
                }
            };
            tracing::info!("{} is back as {}", role.what(), term::pid_text(p.pid()));
        }
    });
    Ok(pid)
}

/// An echo process served until it ends, not restarted (`demo`).
pub fn spawn_echo(mut p: Process) {
    tokio::spawn(async move {
        serve_echo(&mut p).await;
    });
}

/// Serves `p` as an echo until it ends; its exit reason.
async fn serve_echo(p: &mut Process) -> Term {
    let on_other = |p: &Process, s: Signal| {
        if let Signal::Message { msg, .. } = s {
            match term::as_tuple(&msg) {
                Some([Term::Pid(from), m]) => {
                    let _ = p.send(from.clone(), m.clone());
                }
                _ => tracing::debug!("echo: ignored {}", term::show(&msg)),
            }
        }
    };
    p.serve(|_, req| req.clone(), on_other).await
}
