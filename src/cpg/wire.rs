//! Messages exchanged with remote cpg scopes, `Term` <-> enum.
//!
//! Casts travel as `{'$gen_cast', Request}` to the registered scope name;
//! `{new, Node}` is a plain message. Group names are Erlang strings on the
//! wire (STRING_EXT, LIST_EXT of code points, or `[]`) and `String`s here.

use super::scope::Request;
use crate::term::{self, atom, tuple, Pid, Term};

/// A message a scope process receives from another node: a cast request
/// (the payload of `{'$gen_cast', _}`, the same [`Request`] the pure scope
/// takes), or the plain `{new, Node}` message. `P` is the pid type the
/// scope uses; it converts from and to the wire's [`Pid`].
#[derive(Debug, Clone, PartialEq)]
pub enum WireMsg<P = Pid> {
    /// `{'$gen_cast', Request}`.
    Cast(Request<P>),
    /// `{new, Node}` (not a cast).
    New(String),
}

/// Why a message from a remote scope was not understood.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum WireError {
    /// Not one of the shapes in the cpg protocol.
    #[error("not a cpg scope message: {0}")]
    Unknown(String),
    /// A group name that is not an Erlang string.
    #[error("bad group name in {0}")]
    BadName(String),
}

fn name_of(t: &Term, whole: &Term) -> Result<String, WireError> {
    term::charlist_to_string(t).map_err(|_| WireError::BadName(short(whole)))
}

fn short(t: &Term) -> String {
    let mut s = t.to_string();
    if s.len() > 200 {
        let mut cut = 200;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
        s.push_str("...");
    }
    s
}

fn counts(t: &Term, whole: &Term) -> Result<Vec<(String, usize)>, WireError> {
    let l = term::as_list(t).ok_or_else(|| WireError::Unknown(short(whole)))?;
    l.iter()
        .map(|e| match term::as_tuple(e) {
            Some([n, c]) => {
                let c = term::as_int(c)
                    .filter(|&c| c > 0)
                    .ok_or_else(|| WireError::Unknown(short(whole)))?;
                Ok((name_of(n, whole)?, c as usize))
            }
            _ => Err(WireError::Unknown(short(whole))),
        })
        .collect()
}

fn pid_of(t: &Term, whole: &Term) -> Result<Pid, WireError> {
    term::as_pid(t)
        .cloned()
        .ok_or_else(|| WireError::Unknown(short(whole)))
}

impl<P: std::convert::From<Pid>> WireMsg<P> {
    /// Decodes a message received by a scope process.
    pub fn decode(msg: &Term) -> Result<WireMsg<P>, WireError> {
        let unknown = || WireError::Unknown(short(msg));
        let t = term::as_tuple(msg).ok_or_else(unknown)?;
        match t {
            [tag, node] if term::as_atom(tag) == Some("new") => Ok(WireMsg::New(
                term::as_atom(node).ok_or_else(unknown)?.to_string(),
            )),
            [tag, req] if term::as_atom(tag) == Some("$gen_cast") => {
                let r = term::as_tuple(req).ok_or_else(unknown)?;
                let head = r.first().and_then(term::as_atom).ok_or_else(unknown)?;
                let pid = |t: &Term| pid_of(t, msg).map(P::from);
                let request = match (head, &r[1..]) {
                    ("join", [n, p]) => Request::Join {
                        name: name_of(n, msg)?,
                        pid: pid(p)?,
                    },
                    ("join_counts", [c, p]) => Request::JoinCounts {
                        counts: counts(c, msg)?,
                        pid: pid(p)?,
                    },
                    ("leave", [n, p]) => Request::Leave {
                        name: name_of(n, msg)?,
                        pid: pid(p)?,
                    },
                    ("leave_counts", [c, p]) => Request::LeaveCounts {
                        counts: counts(c, msg)?,
                        pid: pid(p)?,
                    },
                    ("leave", [p]) => Request::LeaveAll { pid: pid(p)? },
                    ("exchange", [node, groups]) => {
                        let from = term::as_atom(node).ok_or_else(unknown)?.to_string();
                        let gl = term::as_list(groups).ok_or_else(unknown)?;
                        let mut out = Vec::with_capacity(gl.len());
                        for g in gl {
                            let [n, h] = term::as_tuple(g).ok_or_else(unknown)? else {
                                return Err(unknown());
                            };
                            let pids = term::as_list(h)
                                .ok_or_else(unknown)?
                                .iter()
                                .map(pid)
                                .collect::<Result<Vec<_>, _>>()?;
                            out.push((name_of(n, msg)?, pids));
                        }
                        Request::Exchange { from, groups: out }
                    }
                    _ => return Err(unknown()),
                };
                Ok(WireMsg::Cast(request))
            }
            _ => Err(unknown()),
        }
    }
}

impl<P: Clone + Into<Pid>> WireMsg<P> {
    /// Encodes the message as sent on the wire (casts wrapped in
    /// `{'$gen_cast', _}`).
    pub fn encode(&self) -> Term {
        let request = match self {
            WireMsg::New(node) => return tuple(vec![atom("new"), atom(node)]),
            WireMsg::Cast(r) => r,
        };
        let s = term::string_to_charlist;
        let p = |p: &P| Term::Pid(p.clone().into());
        let counts = |c: &[(String, usize)]| {
            term::list(
                c.iter()
                    .map(|(n, k)| tuple(vec![s(n), term::int(*k as i32)]))
                    .collect(),
            )
        };
        let body = match request {
            Request::Join { name, pid } => tuple(vec![atom("join"), s(name), p(pid)]),
            Request::JoinCounts { counts: c, pid } => {
                tuple(vec![atom("join_counts"), counts(c), p(pid)])
            }
            Request::Leave { name, pid } => tuple(vec![atom("leave"), s(name), p(pid)]),
            Request::LeaveCounts { counts: c, pid } => {
                tuple(vec![atom("leave_counts"), counts(c), p(pid)])
            }
            Request::LeaveAll { pid } => tuple(vec![atom("leave"), p(pid)]),
            Request::Exchange { from, groups } => tuple(vec![
                atom("exchange"),
                atom(from),
                term::list(
                    groups
                        .iter()
                        .map(|(n, h)| tuple(vec![s(n), term::list(h.iter().map(p).collect())]))
                        .collect(),
                ),
            ]),
        };
        tuple(vec![atom("$gen_cast"), body])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pid() -> Pid {
        Pid::new("a@vm", 97, 0, 3)
    }

    #[test]
    fn round_trips() {
        let c = |r: Request<Pid>| WireMsg::Cast(r);
        let msgs: Vec<WireMsg> = vec![
            c(Request::Join {
                name: "g1".into(),
                pid: pid(),
            }),
            c(Request::JoinCounts {
                counts: vec![("g1".into(), 2), ("组".into(), 1)],
                pid: pid(),
            }),
            c(Request::Leave {
                name: "g1".into(),
                pid: pid(),
            }),
            c(Request::LeaveCounts {
                counts: vec![("g1".into(), 1)],
                pid: pid(),
            }),
            c(Request::LeaveAll { pid: pid() }),
            c(Request::Exchange {
                from: "a@vm".into(),
                groups: vec![
                    ("pre".into(), vec![pid()]),
                    ("/x/*".into(), vec![pid(), pid()]),
                ],
            }),
            WireMsg::New("a@vm".into()),
        ];
        for m in msgs {
            let mut b = Vec::new();
            term::encode_into(&m.encode(), &mut b).unwrap();
            let t = term::decode(&b, term::Limits::default()).unwrap();
            assert_eq!(WireMsg::decode(&t).unwrap(), m);
        }
    }

    #[test]
    fn trace_shapes() {
        // {'$gen_cast',{join,"g1",<A.97.0>}} as in wire-trace-hidden.txt
        let t = WireMsg::Cast(Request::Join {
            name: "g1".into(),
            pid: pid(),
        })
        .encode();
        assert_eq!(
            t.to_string().replace(' ', ""),
            tuple(vec![
                atom("$gen_cast"),
                tuple(vec![
                    atom("join"),
                    term::string_to_charlist("g1"),
                    Term::Pid(pid())
                ])
            ])
            .to_string()
            .replace(' ', "")
        );
    }

    #[test]
    fn junk_is_an_error_not_a_panic() {
        for t in [
            atom("x"),
            tuple(vec![atom("$gen_cast"), atom("join")]),
            tuple(vec![
                atom("$gen_cast"),
                tuple(vec![atom("join"), atom("g"), Term::Pid(pid())]),
            ]),
            tuple(vec![
                atom("$gen_cast"),
                tuple(vec![
                    atom("join_counts"),
                    term::list(vec![tuple(vec![
                        term::string_to_charlist("g"),
                        term::int(0),
                    ])]),
                    Term::Pid(pid()),
                ]),
            ]),
            tuple(vec![atom("new"), term::int(1)]),
        ] {
            assert!(WireMsg::<Pid>::decode(&t).is_err(), "{t}");
        }
    }
}
