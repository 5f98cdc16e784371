//! A process's sending half, apart from its mailbox: what a task spawned
//! to answer one call later holds ([`Process::sender`]), and what lets a
//! server answer calls with `async` work ([`Process::serve_calls_async`]).

use super::{CallFrom, Dest, Kernel, Process, SendError, SendGate, Signal, Target};
use crate::term::{self, tuple, Encoded, Pid, Term};
use std::future::Future;
use std::sync::Arc;

/// Sends as one process, from anywhere: `Clone`, `Send` and `'static`,
/// without its mailbox. A server hands one, with the caller's [`CallFrom`], to
/// a task that works on the request and replies when it is done, as a
/// gen_server hands `From` to a worker that calls `gen_server:reply/2`.
///
/// Messages go out from the process's pid while it lives; once it has
/// ended they are refused ([`SendError::Ended`]), as a dead BEAM process
/// sends nothing, and none comes after its `'DOWN'` or `'EXIT'`.
#[derive(Clone)]
pub struct ProcessSender {
    pid: Pid,
    kernel: Arc<dyn Kernel>,
    gate: SendGate,
}

impl std::fmt::Debug for ProcessSender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ProcessSender({})", term::pid_text(&self.pid))
    }
}

impl ProcessSender {
    /// The pid messages go out from.
    pub fn pid(&self) -> &Pid {
        &self.pid
    }

    /// Whether the process still lives.
    pub fn is_alive(&self) -> bool {
        !self.gate.is_ended()
    }

    /// [`Process::send`] from the process.
    pub fn send(&self, to: impl Into<Dest>, msg: Term) -> Result<(), SendError> {
        let to = to.into();
        self.gate.open(|| self.kernel.send(&self.pid, &to, msg))
    }

    /// [`Process::send_encoded`] from the process.
    pub fn send_encoded(&self, to: impl Into<Dest>, msg: Encoded) -> Result<(), SendError> {
        let to = to.into();
        self.gate
            .open(|| self.kernel.send_encoded(&self.pid, Target::Dest(&to), msg))
    }

    /// [`Process::reply`] from the process: `{Tag, Reply}` to the caller
    /// (through its alias when the tag carries one, so that a reply after
    /// the caller gave up is dropped).
    pub fn reply(&self, from: &CallFrom, reply: Term) -> Result<(), SendError> {
        self.gate
            .open(|| reply_from(&*self.kernel, &self.pid, from, reply))
    }
}

/// `{Tag, Reply}` from `me` to the caller `from`: through its alias when
/// the tag carries one (as `gen:reply/2` sends it), else to its pid.
pub(super) fn reply_from(
    kernel: &dyn Kernel,
    me: &Pid,
    from: &CallFrom,
    reply: Term,
) -> Result<(), SendError> {
    let msg = tuple(vec![from.tag.clone(), reply]);
    match from.alias() {
        Some(alias) => kernel.send_alias(me, alias, msg),
        None => kernel.send(me, &Dest::Pid(from.pid.clone()), msg),
    }
}

impl Process {
    /// This process's sending half ([`ProcessSender`]): to reply to a
    /// call, or send, from a task of its own while this process goes on
    /// reading its mailbox.
    pub fn sender(&self) -> ProcessSender {
        ProcessSender {
            pid: self.pid.clone(),
            kernel: self.kernel.clone(),
            gate: self.gate.clone(),
        }
    }

    /// A gen_server's receive loop whose answers take `async` work (a
    /// database, a call to another server): every `{'$gen_call', From,
    /// Request}` starts `on_call(Request)` as a task of its own, and its
    /// output is the reply, sent when it is ready. Calls are worked on
    /// together, and a slow one holds up none of the others, as a
    /// gen_server that hands each request to a worker and replies with
    /// `gen_server:reply/2`. `sys`'s system messages are answered as
    /// [`Process::serve_calls`] answers them; `on_other` gets every other
    /// signal. Returns the exit reason when the process is killed. A task
    /// still running then goes on, and its reply is dropped.
    ///
    /// For a bound on the calls worked on at once, hand each task a permit
    /// of a [`tokio::sync::Semaphore`] in `on_call`.
    pub async fn serve_calls_async<F, Fut>(
        &mut self,
        mut on_call: F,
        on_other: impl FnMut(&Process, Signal),
    ) -> Term
    where
        F: FnMut(Term) -> Fut,
        Fut: Future<Output = Term> + Send + 'static,
    {
        let sender = self.sender();
        self.serve_with(
            |_, from, req| {
                let work = on_call(req.clone());
                let sender = sender.clone();
                tokio::spawn(async move {
                    let reply = work.await;
                    // A caller that has gone, or a server that has ended,
                    // is no error of the task's.
                    let _ = sender.reply(&from, reply);
                });
                None
            },
            on_other,
        )
        .await
    }
}
