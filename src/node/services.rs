//! The node's own services: the `net_kernel` responder (answers
//! `net_adm:ping`) and the client side of `rex` (rpc). Changes when we serve
//! or call another system process.

use super::Node;
use crate::process::{Dest, Process, Signal};
use crate::term::{self, atom, tuple, Term};

impl Node {
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

    pub(super) fn start_net_kernel(&self) {
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
                    tracing::debug!("net_kernel: unexpected call {}", term::show(req));
                    atom("error")
                }
            };
            let on_other = |_: &Process, s: Signal| {
                tracing::debug!("net_kernel: dropped {}", term::show(&s.to_term()));
            };
            p.serve(on_call, on_other).await;
        });
    }
}
