//! The messages OTP `pg` scope processes exchange (OTP 23-28), as typed
//! values: [`PgMsg::encode`] builds exactly the shapes a BEAM scope accepts
//! (anything else crashes it), [`PgMsg::decode`] reads what BEAM scopes send
//! and refuses the rest with a [`WireError`] (the caller logs and drops it).
//!
//! | message | term |
//! |---|---|
//! | [`PgMsg::Discover`] | `{discover, Peer}` (`{discover, Peer, Version}` accepted, as OTP 26+ does) |
//! | [`PgMsg::Sync`] | `{'$gen_cast', {sync, Peer, [{Group, [Pid]}]}}` |
//! | [`PgMsg::Join`] | `{join, Peer, Group, Pid \| [Pid]}` |
//! | [`PgMsg::Leave`] | `{leave, Peer, Pid \| [Pid], [Group]}` |

use crate::cpg::storage::TermName;
use crate::term::{self, atom, list, tuple, Pid, Term};

/// One message between scope processes.
#[derive(Debug, Clone, PartialEq)]
pub enum PgMsg {
    /// "I am a scope, send me your state": `{discover, Peer}`.
    Discover {
        /// The sending scope process.
        peer: Pid,
    },
    /// The sender's local members, replacing all it said before.
    Sync {
        /// The sending scope process.
        peer: Pid,
        /// Each group with its local members (a pid joined twice twice).
        groups: Vec<(TermName, Vec<Pid>)>,
    },
    /// Pids of the sender's node joined a group.
    Join {
        /// The sending scope process.
        peer: Pid,
        /// The group.
        group: TermName,
        /// The pids; one pid is sent bare, as `pg:join/3` with a pid does.
        pids: Vec<Pid>,
    },
    /// Pids of the sender's node left groups (one copy each).
    Leave {
        /// The sending scope process.
        peer: Pid,
        /// The pids; one pid is sent bare.
        pids: Vec<Pid>,
        /// The groups.
        groups: Vec<TermName>,
    },
}

/// Why a received term is not a pg message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a pg scope message ({why}): {shown}")]
pub struct WireError {
    why: &'static str,
    shown: String,
}

fn bad(why: &'static str, t: &Term) -> WireError {
    WireError {
        why,
        shown: crate::util::short_text(t),
    }
}

fn pid_or_pids(pids: &[Pid]) -> Term {
    match pids {
        [one] => Term::Pid(one.clone()),
        many => list(many.iter().cloned().map(Term::Pid).collect()),
    }
}

/// A pid, or a proper list of pids (`[]` allowed).
fn read_pids(t: &Term, whole: &Term) -> Result<Vec<Pid>, WireError> {
    match t {
        Term::Pid(p) => Ok(vec![p.clone()]),
        Term::List(l) => l
            .elements
            .iter()
            .map(|e| {
                term::as_pid(e)
                    .cloned()
                    .ok_or_else(|| bad("a list element is not a pid", whole))
            })
            .collect(),
        _ => Err(bad("neither a pid nor a list of pids", whole)),
    }
}

impl PgMsg {
    /// The term to send.
    ///
    /// Empty pid lists are the caller's to avoid (a BEAM scope accepts
    /// them, but they announce nothing).
    pub fn encode(&self) -> Term {
        match self {
            PgMsg::Discover { peer } => tuple(vec![atom("discover"), Term::Pid(peer.clone())]),
            PgMsg::Sync { peer, groups } => tuple(vec![
                atom("$gen_cast"),
                tuple(vec![
                    atom("sync"),
                    Term::Pid(peer.clone()),
                    list(
                        groups
                            .iter()
                            .map(|(g, pids)| {
                                tuple(vec![
                                    g.term().clone(),
                                    list(pids.iter().cloned().map(Term::Pid).collect()),
                                ])
                            })
                            .collect(),
                    ),
                ]),
            ]),
            PgMsg::Join { peer, group, pids } => tuple(vec![
                atom("join"),
                Term::Pid(peer.clone()),
                group.term().clone(),
                pid_or_pids(pids),
            ]),
            PgMsg::Leave { peer, pids, groups } => tuple(vec![
                atom("leave"),
                Term::Pid(peer.clone()),
                pid_or_pids(pids),
                list(groups.iter().map(|g| g.term().clone()).collect()),
            ]),
        }
    }

    /// Reads a received message.
    pub fn decode(t: &Term) -> Result<PgMsg, WireError> {
        let Some(el) = term::as_tuple(t) else {
            return Err(bad("not a tuple", t));
        };
        let peer = |p: &Term| {
            term::as_pid(p)
                .cloned()
                .ok_or_else(|| bad("the peer is not a pid", t))
        };
        match el {
            [tag, p] if term::as_atom(tag) == Some("discover") => {
                Ok(PgMsg::Discover { peer: peer(p)? })
            }
            [tag, p, _version] if term::as_atom(tag) == Some("discover") => {
                Ok(PgMsg::Discover { peer: peer(p)? })
            }
            [tag, p, g, pids] if term::as_atom(tag) == Some("join") => Ok(PgMsg::Join {
                peer: peer(p)?,
                group: TermName::new(g.clone()),
                pids: read_pids(pids, t)?,
            }),
            [tag, p, pids, groups] if term::as_atom(tag) == Some("leave") => Ok(PgMsg::Leave {
                peer: peer(p)?,
                pids: read_pids(pids, t)?,
                // (BEAM writes `[42]` or `[1,2]` as a string: read as
                // the integer groups they are.)
                groups: term::list_elements(groups)
                    .ok_or_else(|| bad("the groups are not a list", t))?
                    .iter()
                    .cloned()
                    .map(TermName::new)
                    .collect(),
            }),
            [tag, cast] if term::as_atom(tag) == Some("$gen_cast") => match term::as_tuple(cast) {
                Some([s, p, groups]) if term::as_atom(s) == Some("sync") => {
                    let groups = term::as_list(groups)
                        .ok_or_else(|| bad("the sync's groups are not a list", t))?
                        .iter()
                        .map(|e| match term::as_tuple(e) {
                            Some([g, pids]) if term::as_list(pids).is_some() => {
                                Ok((TermName::new(g.clone()), read_pids(pids, t)?))
                            }
                            _ => Err(bad("a sync entry is not {Group, [Pid]}", t)),
                        })
                        .collect::<Result<_, _>>()?;
                    Ok(PgMsg::Sync {
                        peer: peer(p)?,
                        groups,
                    })
                }
                _ => Err(bad("an unknown cast", t)),
            },
            _ => Err(bad("an unknown message", t)),
        }
    }

    /// The scope process that sent it.
    pub fn peer(&self) -> &Pid {
        match self {
            PgMsg::Discover { peer }
            | PgMsg::Sync { peer, .. }
            | PgMsg::Join { peer, .. }
            | PgMsg::Leave { peer, .. } => peer,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pid(n: u32) -> Pid {
        Pid::new("a@h", n, 0, 1)
    }

    #[test]
    fn every_message_round_trips_and_has_pg_shape() {
        let g = TermName::new(tuple(vec![atom("a"), term::int(1)]));
        let msgs = [
            PgMsg::Discover { peer: pid(1) },
            PgMsg::Sync {
                peer: pid(1),
                groups: vec![(g.clone(), vec![pid(2), pid(2)])],
            },
            PgMsg::Join {
                peer: pid(1),
                group: g.clone(),
                pids: vec![pid(2)],
            },
            PgMsg::Join {
                peer: pid(1),
                group: g.clone(),
                pids: vec![pid(2), pid(3)],
            },
            PgMsg::Leave {
                peer: pid(1),
                pids: vec![pid(2)],
                groups: vec![g.clone()],
            },
        ];
        for m in msgs {
            assert_eq!(PgMsg::decode(&m.encode()).unwrap(), m);
        }
        // One pid goes bare, as pg:join/3 with a pid sends it.
        let one = PgMsg::Join {
            peer: pid(1),
            group: g,
            pids: vec![pid(2)],
        }
        .encode();
        assert!(matches!(&term::as_tuple(&one).unwrap()[3], Term::Pid(_)));
        let d = tuple(vec![atom("discover"), Term::Pid(pid(1)), term::int(1)]);
        assert_eq!(PgMsg::decode(&d).unwrap(), PgMsg::Discover { peer: pid(1) });
    }

    /// BEAM writes a leave's groups `[42, 1]` (integers 0..=255 only) as
    /// a string (STRING_EXT), decoded as a `ByteList`: they are the
    /// integer groups, as joined (the leave was dropped, the member kept).
    #[test]
    fn a_leave_of_small_integer_groups_written_as_a_string_is_read() {
        let bytes = Term::ByteList(vec![42u8, 1].into());
        let m = tuple(vec![
            atom("leave"),
            Term::Pid(pid(1)),
            Term::Pid(pid(2)),
            bytes,
        ]);
        assert_eq!(
            PgMsg::decode(&m).unwrap(),
            PgMsg::Leave {
                peer: pid(1),
                pids: vec![pid(2)],
                groups: vec![TermName::new(term::int(42)), TermName::new(term::int(1))],
            }
        );
        // As the join of 42 named it.
        let join = tuple(vec![
            atom("join"),
            Term::Pid(pid(1)),
            term::int(42),
            Term::Pid(pid(2)),
        ]);
        let PgMsg::Join { group, .. } = PgMsg::decode(&join).unwrap() else {
            panic!("not a join");
        };
        assert_eq!(group, TermName::new(term::int(42)));
    }

    #[test]
    fn malformed_messages_are_refused_not_panicked_on() {
        let p = Term::Pid(pid(1));
        for t in [
            atom("hello"),
            tuple(vec![atom("junk")]),
            tuple(vec![atom("discover"), atom("x")]),
            tuple(vec![atom("join"), p.clone(), atom("g"), atom("notapid")]),
            tuple(vec![
                atom("join"),
                p.clone(),
                atom("g"),
                list(vec![atom("x")]),
            ]),
            tuple(vec![atom("leave"), p.clone(), p.clone(), atom("g")]),
            tuple(vec![
                atom("$gen_cast"),
                tuple(vec![atom("sync"), p.clone(), list(vec![atom("g")])]),
            ]),
            tuple(vec![atom("$gen_cast"), atom("other")]),
        ] {
            assert!(PgMsg::decode(&t).is_err(), "{t} accepted");
        }
    }
}
