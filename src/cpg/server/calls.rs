//! `gen_server:call(Scope, Request)` from other nodes, answered as cpg's
//! `handle_call` does (see the parent module's docs).

use super::task::ScopeTask;
use crate::cpg::member::MemberPid;
use crate::cpg::scope::{ReadError, WriteError};
use crate::cpg::wire::WireName;
use crate::process;
use crate::term::{self, write, Encoded, Term};

/// A reply to a call: written as bytes after its head
/// ([`process::CallFrom::reply_head`]), or a term.
enum Answer {
    /// The whole message, `{Tag, Reply}`.
    Written(Encoded),
    /// The reply, its head put before it when sent.
    Term(Term),
}

/// A call's operation and arguments: `(op, [])` for the atom `op`, `(op,
/// args)` for the tuple `{op, args...}` of at least one argument, `("",
/// [])` for anything else (`{which_groups}` is no `which_groups`: cpg
/// answers it `error`).
fn split_call(request: &Term) -> (&str, &[Term]) {
    match request {
        Term::Atom(a) => (a.name.as_str(), &[]),
        Term::Tuple(t) => match t.elements.split_first() {
            Some((Term::Atom(a), rest)) if !rest.is_empty() => (a.name.as_str(), rest),
            _ => ("", &[]),
        },
        _ => ("", &[]),
    }
}

/// The member pid `t` stands for, if a pid a scope can hold.
fn pid(t: &Term) -> Option<MemberPid> {
    term::as_pid(t).and_then(|p| MemberPid::try_from(p).ok())
}

/// `{error, {no_such_group | no_process, Name}}` with the name as asked.
fn read_error<M>(e: &ReadError<M>, name: &Term) -> Term {
    let why = match e {
        ReadError::NoSuchGroup(_) => "no_such_group",
        ReadError::NoProcess(_) => "no_process",
    };
    term::tuple(vec![
        term::atom("error"),
        term::tuple(vec![term::atom(why), name.clone()]),
    ])
}

/// A count as an Erlang integer.
fn count_term(c: usize) -> Term {
    match i32::try_from(c) {
        Ok(c) => term::int(c),
        Err(_) => Term::BigInteger(crate::term::BigInteger::from(c as u64)),
    }
}

/// cpg replies `error` to an unknown call (then stops); we log (within
/// `refusals`, shared with the scope's other refusals) and go on.
fn unknown_call(
    scope: &str,
    refusals: &std::sync::Arc<crate::util::FloodLog>,
    request: &Term,
) -> Term {
    if let Some(held_back) = refusals.event() {
        let shown = crate::util::short_text(request);
        tracing::warn!(scope = %scope, held_back, "unknown call {shown}: replied error");
    }
    term::atom("error")
}

impl<N: WireName> ScopeTask<N> {
    /// The scope's state as genuine cpg hands it out
    /// ([`Scope::genuine_state`](crate::cpg::scope::Scope::genuine_state)),
    /// written as bytes: the reply to a `cpg_data` call, and what
    /// `{cpg_data, From}` sends. `None` for a map storage, and (with a
    /// warning) for a trie too big to write
    /// ([`GenuineBounds`](crate::cpg::trie::GenuineBounds)).
    ///
    /// Written after the bytes `out` holds: the head of the message that
    /// carries it ([`Encoded::pair_head`]), so that the state is not
    /// copied again to put a head before it.
    fn genuine_state(&self, mut out: Vec<u8>) -> Option<Encoded> {
        let bounds = crate::cpg::trie::GenuineBounds::default();
        let state = self.state.read();
        // Sized for a group of one member (about 80 bytes; 8.4 MB for
        // 100,000), not grown by doubling from nothing.
        out.reserve(state.group_count().saturating_mul(80).min(64 << 20));
        let written = state.genuine_state(bounds, &mut out, |out, p: &MemberPid| {
            write::pid(out, p.node(), p.id(), p.serial(), p.creation())
        })?;
        drop(state);
        match written {
            Ok(()) => Some(Encoded::written(out)),
            Err(e) => {
                if let Some(held_back) = self.refusals.event() {
                    tracing::warn!(scope = %self.opts.name, held_back, "cpg_data: {e}, too big to hand out");
                }
                None
            }
        }
    }

    /// Answers `sys`'s system message `request` from `caller`
    /// (`Process::answer_system`), with genuine cpg's `#state{}` record
    /// for the state, as `sys:get_state/1` of a BEAM scope gives it:
    /// `{state, NodeName, Scope, Groups, Monitors, NodeMonitors,
    /// Callbacks, Listen}`, where `Groups` is what a `cpg_data` call
    /// answers (so `cpg`'s and `cpg_data`'s own functions read it), the
    /// two monitor maps are empty (this node's monitors are its own, not
    /// BEAM references and processes), `Callbacks` is `undefined` and
    /// `Listen` `all` (the scope takes part with every node, hidden ones
    /// too). `{error, cpg_data_unavailable}` where no `cpg_data` answer
    /// can be given (a map storage, a trie too big to write). Without an
    /// answer, `sys:get_state/1` waited out its five seconds.
    pub(super) fn system(&mut self, caller: &process::CallFrom, request: &Term) {
        // `sys:terminate` (`gen_server:stop`): the scope process ends with
        // the reason, and comes back as cpg's supervisor restarts it.
        if let Some(reason) = process::terminate_request(request) {
            self.proc.terminate(caller, reason.clone());
            return;
        }
        let state = |out: &mut Vec<u8>| {
            let head = std::mem::take(out);
            match self.sys_state(head) {
                Some(state) => {
                    *out = state.into_bytes();
                    Ok(())
                }
                None => Err(term::tuple(vec![
                    term::atom("error"),
                    term::atom("cpg_data_unavailable"),
                ])),
            }
        };
        let sent = self
            .proc
            .answer_system(caller, &self.opts.name, request, state);
        if let Err(e) = sent {
            tracing::debug!(scope = %self.opts.name, "system reply to {}: {e}", term::pid_text(&caller.pid));
        }
    }

    /// The `#state{}` record of [`system`](Self::system), written after
    /// the bytes `out` holds.
    fn sys_state(&self, mut out: Vec<u8>) -> Option<Encoded> {
        write::tuple(&mut out, 8);
        write::atom(&mut out, "state");
        write::charlist(&mut out, self.node.name());
        write::atom(&mut out, &self.opts.name);
        let mut out = self.genuine_state(out)?.into_bytes();
        write::map(&mut out, 0);
        write::map(&mut out, 0);
        write::atom(&mut out, "undefined");
        write::atom(&mut out, "all");
        Some(Encoded::written(out))
    }

    /// Answers the call `request` from `caller` (see the module docs):
    /// [`answer_call`](Self::answer_call), or, written as bytes, the state
    /// for `cpg_data` and the long lists ([`long_reply`](Self::long_reply)).
    pub(super) fn reply(&mut self, caller: &process::CallFrom, request: &Term) {
        let sent = match request {
            Term::Atom(a) if a.name == "cpg_data" && N::STORAGE == crate::cpg::Storage::Trie => {
                let state = caller.reply_head(0).ok();
                match state.and_then(|head| self.genuine_state(head)) {
                    Some(reply) => self.proc.reply_headed(caller, reply),
                    None => self.proc.reply(caller, term::atom("error")),
                }
            }
            _ => match self.long_reply(request, caller) {
                Some(Answer::Written(reply)) => self.proc.reply_headed(caller, reply),
                Some(Answer::Term(reply)) => self.proc.reply(caller, reply),
                None => {
                    let reply = self.answer_call(request);
                    self.proc.reply(caller, reply)
                }
            },
        };
        if let Err(e) = sent {
            tracing::debug!(scope = %self.opts.name, "reply to {}: {e}", term::pid_text(&caller.pid));
        }
    }

    /// The reply to a call whose answer is a list as long as the scope
    /// (every group's name, a pid's groups and their counts, a group's
    /// members), as cpg's `handle_call` gives it: written as bytes
    /// ([`term::write`]) after its head, or, for an error, a term.
    /// Building the term (a few allocations an element), encoding it and
    /// dropping it took most of such a call: at 100,000 groups,
    /// `{which_groups, Pid}` took 10 ms as a BEAM caller timed it, 6
    /// written (genuine cpg's: 6), `{which_groups_counts, Pid}` 23 ms, 9
    /// written (genuine's: 25). `None` for every other call, which
    /// [`answer_call`](Self::answer_call) answers.
    ///
    /// The bytes are the whole message to `caller`, `{Tag, Reply}`
    /// ([`process::CallFrom::reply_head`]). The call's kind is looked at
    /// first: any other call costs nothing here.
    fn long_reply(&self, request: &Term, caller: &process::CallFrom) -> Option<Answer> {
        let (op, args) = split_call(request);
        let long = matches!(
            op,
            "which_groups"
                | "which_groups_counts"
                | "get_members"
                | "get_local_members"
                | "get_remote_members"
        );
        if !long {
            return None;
        }
        let unknown = || Answer::Term(unknown_call(&self.opts.name, &self.refusals, request));
        let Ok(mut out) = caller.reply_head(0) else {
            // (A tag no reply can carry: sending says so.)
            return Some(Answer::Term(term::atom("error")));
        };
        let s = self.state.read();
        let names = |out: &mut Vec<u8>, names: &mut dyn Iterator<Item = &N::Borrowed>| {
            let mut written = Ok(());
            write::list_of(out, names, |out, n| {
                if written.is_ok() {
                    written = N::write_name(n, out);
                }
            });
            written
        };
        let written = match (op, args) {
            ("which_groups", []) => {
                // About 16 bytes a name: sized once rather than grown by
                // doubling (each doubling a copy into fresh pages).
                out.reserve(s.group_count().saturating_mul(16).min(64 << 20));
                names(&mut out, &mut s.group_names())
            }
            ("which_groups", [p]) => {
                let of = pid(p).map(|p| s.group_names_of(&p)).unwrap_or_default();
                out.reserve(of.len().saturating_mul(16));
                names(&mut out, &mut of.into_iter())
            }
            ("which_groups_counts", [p]) => {
                let counts = pid(p).map(|p| s.group_counts_of(&p)).unwrap_or_default();
                out.reserve(counts.len().saturating_mul(24));
                let mut written = Ok(());
                write::list_of(&mut out, counts, |out, (n, c)| {
                    if written.is_ok() {
                        write::tuple(out, 2);
                        written = N::write_name(n, out);
                        write::uint(out, c as u64);
                    }
                });
                written
            }
            ("get_members" | "get_local_members" | "get_remote_members", [n, rest @ ..])
                if rest.len() <= 1 =>
            {
                let exclude = match rest {
                    [p] => match pid(p) {
                        Some(p) => Some(p),
                        None => return Some(unknown()),
                    },
                    _ => None,
                };
                let no_group = |e: &ReadError<_>| Some(Answer::Term(read_error(e, n)));
                let Some(name) = N::from_term(n) else {
                    return no_group(&ReadError::NoSuchGroup(()));
                };
                let (name, ex) = (name.as_borrowed(), exclude.as_ref());
                let members = match op {
                    "get_members" => s.get_members(name, ex),
                    "get_local_members" => s.get_local_members(name, ex),
                    _ => s.get_remote_members(name, ex),
                };
                let (key, pids) = match members {
                    Ok(m) => m,
                    Err(e) => return Some(Answer::Term(read_error(&e, n))),
                };
                // A pid is its node's name and 13 bytes.
                out.reserve(pids.len().saturating_mul(64));
                write::tuple(&mut out, 3);
                write::atom(&mut out, "ok");
                let written = N::write_name(key, &mut out);
                write::list_of(&mut out, pids.iter(), |out, p| {
                    write::pid(out, p.node(), p.id(), p.serial(), p.creation())
                });
                written
            }
            _ => return Some(unknown()),
        };
        drop(s);
        Some(match written {
            Ok(()) => Answer::Written(Encoded::written(out)),
            Err(e) => {
                // A name no encoder writes (the term reply could not be
                // sent either): the caller is told, not left waiting.
                if let Some(held_back) = self.refusals.event() {
                    tracing::warn!(scope = %self.opts.name, held_back, "{op}: a name not written ({e}): replied error");
                }
                Answer::Term(term::atom("error"))
            }
        })
    }

    /// A message cpg's `handle_info` takes besides the protocol's:
    /// `{cpg_data, From}` (`cpg_data:get_groups/2,3`) sends `From` the
    /// state as `{cloudi_cpg_data, Groups}`, and `{reset, From}` (the
    /// `node_type` read again) answers `{cloudi_cpg_reset, Scope}`; this
    /// scope's `node_type` is its options', which stay. `From` is a pid or
    /// a name registered on this node. False for any other message.
    pub(super) fn info(&mut self, msg: &Term) -> bool {
        let Some([tag, from]) = term::as_tuple(msg) else {
            return false;
        };
        let state = match term::as_atom(tag) {
            // (A map storage hands out no state: the message is refused.)
            Some("cpg_data") if N::STORAGE == crate::cpg::Storage::Trie => true,
            Some("reset") => false,
            _ => return false,
        };
        let to = match from {
            Term::Pid(p) => crate::process::Dest::Pid(p.clone()),
            Term::Atom(a) => {
                crate::process::Dest::Name(a.name.clone(), self.node.name().to_string())
            }
            _ => return false,
        };
        let sent = if state {
            let head = Encoded::pair_head(&term::atom("cloudi_cpg_data"), 0).ok();
            match head.and_then(|head| self.genuine_state(head)) {
                Some(msg) => self.proc.send_encoded(to, msg),
                None => return true,
            }
        } else {
            let reply = term::tuple(vec![
                term::atom("cloudi_cpg_reset"),
                term::atom(&self.opts.name),
            ]);
            self.proc.send(to, reply)
        };
        if let Err(e) = sent {
            tracing::debug!(scope = %self.opts.name, "{}: {e}", crate::util::short_text(msg));
        }
        true
    }

    /// The reply cpg's `handle_call` gives to `request` (see the module
    /// docs); writes are carried out like local ones.
    pub(super) fn answer_call(&mut self, request: &Term) -> Term {
        let (op, args) = split_call(request);
        let write = match (op, args) {
            ("join", [n, p]) => match (N::from_term(n), pid(p)) {
                (Some(n), Some(p)) => Some(self.state_mut().join(n.as_borrowed(), p)),
                _ => Some(Err(WriteError::NotMember)),
            },
            ("join_counts", [c, p]) => match (crate::cpg::wire::counts::<N>(c, request), pid(p)) {
                (Ok(c), Some(p)) => Some(self.state_mut().join_counts(&c, p)),
                _ => Some(Err(WriteError::NotMember)),
            },
            ("leave", [p]) => match pid(p) {
                Some(p) => Some(self.state_mut().leave_all(&p)),
                None => Some(Err(WriteError::NotMember)),
            },
            ("leave", [n, p]) => match (N::from_term(n), pid(p)) {
                (Some(n), Some(p)) => Some(self.state_mut().leave(n.as_borrowed(), &p)),
                _ => Some(Err(WriteError::NotMember)),
            },
            ("leave_counts", [c, p]) => match (crate::cpg::wire::counts::<N>(c, request), pid(p)) {
                (Ok(c), Some(p)) => Some(self.state_mut().leave_counts(&c, &p)),
                _ => Some(Err(WriteError::NotMember)),
            },
            _ => None,
        };
        if let Some(result) = write {
            return match result {
                Ok(effects) => {
                    self.execute(effects);
                    term::tuple(vec![term::atom("ok"), term::nil()])
                }
                Err(_) => term::atom("error"),
            };
        }
        let s = self.state.read();
        if let ("join_count", [n, p]) = (op, args) {
            let count = match (N::from_term(n), pid(p)) {
                (Some(n), Some(p)) => s.join_count(n.as_borrowed(), &p),
                _ => 0,
            };
            return count_term(count);
        }
        let (name_term, exclude) = match args {
            [n] => (n, None),
            [n, p] => match pid(p) {
                Some(p) => (n, Some(p)),
                None => return unknown_call(&self.opts.name, &self.refusals, request),
            },
            _ => return unknown_call(&self.opts.name, &self.refusals, request),
        };
        let ex = exclude.as_ref();
        let no_group = || read_error(&ReadError::NoSuchGroup(()), name_term);
        let one = |r: Result<(&N::Borrowed, MemberPid), ReadError<N>>| match r {
            Ok((k, p)) => term::tuple(vec![
                term::atom("ok"),
                k.to_owned().to_term(),
                Term::Pid(p.to_pid()),
            ]),
            Err(e) => read_error(&e, name_term),
        };
        let choose = &mut |n: usize| rand::random_range(0..n.max(1));
        // (The long lists, `get_members` among them: `long_reply`.)
        let is_read = matches!(
            op,
            "get_closest_pid"
                | "get_furthest_pid"
                | "get_random_pid"
                | "get_local_pid"
                | "get_remote_pid"
                | "get_oldest_pid"
                | "get_local_oldest_pid"
                | "get_remote_oldest_pid"
                | "get_newest_pid"
                | "get_local_newest_pid"
                | "get_remote_newest_pid"
        );
        if !is_read {
            return unknown_call(&self.opts.name, &self.refusals, request);
        }
        let Some(name) = N::from_term(name_term) else {
            return no_group();
        };
        let n = name.as_borrowed();
        match op {
            "get_closest_pid" => one(s.get_closest_pid(n, ex, choose)),
            "get_furthest_pid" => one(s.get_furthest_pid(n, ex, choose)),
            "get_random_pid" => one(s.get_random_pid(n, ex, choose)),
            "get_local_pid" => one(s.get_local_pid(n, ex, choose)),
            "get_remote_pid" => one(s.get_remote_pid(n, ex, choose)),
            "get_oldest_pid" => one(s.get_oldest_pid(n, ex)),
            "get_local_oldest_pid" => one(s.get_local_oldest_pid(n, ex)),
            "get_remote_oldest_pid" => one(s.get_remote_oldest_pid(n, ex)),
            "get_newest_pid" => one(s.get_newest_pid(n, ex)),
            "get_local_newest_pid" => one(s.get_local_newest_pid(n, ex)),
            _ => one(s.get_remote_newest_pid(n, ex)),
        }
    }
}
