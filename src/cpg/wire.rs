//! Messages exchanged with remote cpg scopes, `Term` <-> enum.
//!
//! Casts travel as `{'$gen_cast', Request}` to the registered scope name;
//! `{new, Node}` is a plain message. Group names are Erlang strings on the
//! wire (STRING_EXT, LIST_EXT of code points, or `[]`) and `String`s here.

use crate::term::{self, atom, tuple, Pid, Term};

/// A request between scopes (the payload of `{'$gen_cast', _}`), or the
/// plain `{new, Node}` message.
#[derive(Debug, Clone, PartialEq)]
pub enum WireMsg {
    /// `{join, Name, Pid}`
    Join(String, Pid),
    /// `{join_counts, [{Name, Count}], Pid}`
    JoinCounts(Vec<(String, usize)>, Pid),
    /// `{leave, Name, Pid}`
    Leave(String, Pid),
    /// `{leave_counts, [{Name, Count}], Pid}`
    LeaveCounts(Vec<(String, usize)>, Pid),
    /// `{leave, Pid}`: every copy of `Pid` from every group.
    LeaveAll(Pid),
    /// `{exchange, Node, [{Name, History}]}`
    Exchange(String, Vec<(String, Vec<Pid>)>),
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

impl WireMsg {
    /// Decodes a message received by a scope process.
    pub fn decode(msg: &Term) -> Result<WireMsg, WireError> {
        let unknown = || WireError::Unknown(short(msg));
        let t = term::as_tuple(msg).ok_or_else(unknown)?;
        match t {
            [tag, node] if term::as_atom(tag) == Some("new") => Ok(WireMsg::New(
                term::as_atom(node).ok_or_else(unknown)?.to_string(),
            )),
            [tag, req] if term::as_atom(tag) == Some("$gen_cast") => {
                let r = term::as_tuple(req).ok_or_else(unknown)?;
                let head = r.first().and_then(term::as_atom).ok_or_else(unknown)?;
                match (head, &r[1..]) {
                    ("join", [n, p]) => Ok(WireMsg::Join(name_of(n, msg)?, pid_of(p, msg)?)),
                    ("join_counts", [c, p]) => {
                        Ok(WireMsg::JoinCounts(counts(c, msg)?, pid_of(p, msg)?))
                    }
                    ("leave", [n, p]) => Ok(WireMsg::Leave(name_of(n, msg)?, pid_of(p, msg)?)),
                    ("leave_counts", [c, p]) => {
                        Ok(WireMsg::LeaveCounts(counts(c, msg)?, pid_of(p, msg)?))
                    }
                    ("leave", [p]) => Ok(WireMsg::LeaveAll(pid_of(p, msg)?)),
                    ("exchange", [node, groups]) => {
                        let node = term::as_atom(node).ok_or_else(unknown)?.to_string();
                        let gl = term::as_list(groups).ok_or_else(unknown)?;
                        let mut out = Vec::with_capacity(gl.len());
                        for g in gl {
                            match term::as_tuple(g) {
                                Some([n, h]) => {
                                    let pids = term::as_list(h)
                                        .ok_or_else(unknown)?
                                        .iter()
                                        .map(|p| pid_of(p, msg))
                                        .collect::<Result<Vec<_>, _>>()?;
                                    out.push((name_of(n, msg)?, pids));
                                }
                                _ => return Err(unknown()),
                            }
                        }
                        Ok(WireMsg::Exchange(node, out))
                    }
                    _ => Err(unknown()),
                }
            }
            _ => Err(unknown()),
        }
    }

    /// Encodes the message as sent on the wire (casts wrapped in
    /// `{'$gen_cast', _}`).
    pub fn encode(&self) -> Term {
        let cast = |r: Term| tuple(vec![atom("$gen_cast"), r]);
        let s = term::string_to_charlist;
        let counts = |c: &[(String, usize)]| {
            term::list(
                c.iter()
                    .map(|(n, k)| tuple(vec![s(n), term::int(*k as i32)]))
                    .collect(),
            )
        };
        match self {
            WireMsg::Join(n, p) => cast(tuple(vec![atom("join"), s(n), Term::Pid(p.clone())])),
            WireMsg::JoinCounts(c, p) => cast(tuple(vec![
                atom("join_counts"),
                counts(c),
                Term::Pid(p.clone()),
            ])),
            WireMsg::Leave(n, p) => cast(tuple(vec![atom("leave"), s(n), Term::Pid(p.clone())])),
            WireMsg::LeaveCounts(c, p) => cast(tuple(vec![
                atom("leave_counts"),
                counts(c),
                Term::Pid(p.clone()),
            ])),
            WireMsg::LeaveAll(p) => cast(tuple(vec![atom("leave"), Term::Pid(p.clone())])),
            WireMsg::Exchange(node, groups) => cast(tuple(vec![
                atom("exchange"),
                atom(node),
                term::list(
                    groups
                        .iter()
                        .map(|(n, h)| {
                            tuple(vec![
                                s(n),
                                term::list(h.iter().map(|p| Term::Pid(p.clone())).collect()),
                            ])
                        })
                        .collect(),
                ),
            ])),
            WireMsg::New(node) => tuple(vec![atom("new"), atom(node)]),
        }
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
        let msgs = vec![
            WireMsg::Join("g1".into(), pid()),
            WireMsg::JoinCounts(vec![("g1".into(), 2), ("组".into(), 1)], pid()),
            WireMsg::Leave("g1".into(), pid()),
            WireMsg::LeaveCounts(vec![("g1".into(), 1)], pid()),
            WireMsg::LeaveAll(pid()),
            WireMsg::Exchange(
                "a@vm".into(),
                vec![
                    ("pre".into(), vec![pid()]),
                    ("/x/*".into(), vec![pid(), pid()]),
                ],
            ),
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
        let t = WireMsg::Join("g1".into(), pid()).encode();
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
            assert!(WireMsg::decode(&t).is_err(), "{t}");
        }
    }
}
