//! Messages exchanged with remote cpg scopes, `Term` <-> enum.
//!
//! Casts travel as `{'$gen_cast', Request}` to the registered scope name;
//! `{new, Node}` is a plain message. How a group name travels depends on the
//! name type ([`WireName`]): with the trie (`String`) names are Erlang strings
//! on the wire (STRING_EXT, LIST_EXT of code points, or `[]`) and anything
//! else is refused; with map storage ([`TermName`]) any term is a name and
//! goes back on the wire as it came.

use super::member::MemberPid;
use super::scope::Request;
use super::storage::{GroupKey, TermName};
use crate::atom::Atom;
use crate::dist::raw::RawPayload;
use crate::term::decode::Fields;
use crate::term::{self, atom, tuple, Pid, Term};

/// A group-name type as it travels between scopes.
pub trait WireName: GroupKey {
    /// The name `t` stands for; `None` when `t` cannot be a name.
    fn from_term(t: &Term) -> Option<Self>;

    /// The term sent for this name.
    fn to_term(&self) -> Term;

    /// Appends `name` in the external format (no 131 byte), the term
    /// [`WireName::to_term`] gives: for a long reply written as bytes
    /// ([`term::write`]).
    fn write_name(name: &Self::Borrowed, out: &mut Vec<u8>) -> Result<(), term::TermError> {
        Ok(crate::dist::control::put_term(
            out,
            &name.to_owned().to_term(),
        )?)
    }

    /// The name an Erlang string of characters below 256 stands for
    /// (`bytes`, one a character: a STRING_EXT, or `[]` when empty), as
    /// [`WireName::from_term`] of that string; `None` when this type does
    /// not read names from bytes (exchanges are then read as terms).
    fn from_latin1(bytes: &[u8]) -> Option<Self> {
        let _ = bytes;
        None
    }

    /// The name an Erlang string of code points stands for (a LIST_EXT of
    /// integers), as [`WireName::from_term`] of it; `None` as for
    /// [`WireName::from_latin1`].
    fn from_chars(chars: &[char]) -> Option<Self> {
        let _ = chars;
        None
    }
}

impl WireName for String {
    /// As [`term::charlist_to_string`] of the string.
    fn from_latin1(bytes: &[u8]) -> Option<String> {
        Some(bytes.iter().map(|&c| char::from(c)).collect())
    }

    /// As [`term::charlist_to_string`] of the list.
    fn from_chars(chars: &[char]) -> Option<String> {
        Some(chars.iter().collect())
    }

    /// An Erlang string ([`term::charlist_to_string`]).
    fn from_term(t: &Term) -> Option<String> {
        term::charlist_to_string(t).ok()
    }

    /// The Erlang string BEAM itself would send ([`term::string_to_charlist`]).
    fn to_term(&self) -> Term {
        term::string_to_charlist(self)
    }

    /// The Erlang string, straight from the text ([`term::write::charlist`]).
    fn write_name(name: &str, out: &mut Vec<u8>) -> Result<(), term::TermError> {
        term::write::charlist(out, name);
        Ok(())
    }
}

impl WireName for TermName {
    /// Any term.
    fn from_term(t: &Term) -> Option<TermName> {
        Some(TermName::new(t.clone()))
    }

    /// The term as given or received.
    fn to_term(&self) -> Term {
        self.term().clone()
    }

    /// The term's bytes, with no copy of it.
    fn write_name(name: &TermName, out: &mut Vec<u8>) -> Result<(), term::TermError> {
        Ok(crate::dist::control::put_term(out, name.term())?)
    }
}

/// A message a scope process receives from another node: a cast request
/// (the payload of `{'$gen_cast', _}`, the same [`Request`] the pure scope
/// takes), or the plain `{new, Node}` message. `P` is the pid type the
/// scope uses; it converts from and to the wire's [`Pid`]. `N` is the
/// group-name type ([`WireName`]).
#[derive(Debug, Clone, PartialEq)]
pub enum WireMsg<P = Pid, N = String> {
    /// `{'$gen_cast', Request}`.
    Cast(Request<P, N>),
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
    /// A group name the name type refuses (not an Erlang string, for the
    /// trie).
    #[error("bad group name in {0}")]
    BadName(String),
    /// A pid whose node name cannot be interned (longer than an atom may
    /// be, or the node-name table is full: see [`crate::atom`]).
    #[error("bad pid in {0}")]
    BadPid(String),
}

/// A pid as the decoder keeps it: the wire's [`Pid`], or a
/// [`MemberPid`] (its node name interned).
pub trait FromWirePid: Sized {
    /// The pid; `Ok(None)` when it cannot be kept for a reason that is not
    /// the message's fault (the node-name table is full of names that only
    /// came in messages: [`crate::atom`]): an exchange leaves it out and
    /// keeps the rest, a cast naming it is refused. `Err` for a pid no
    /// node could have (a node name longer than an atom).
    fn from_wire(p: &Pid) -> Result<Option<Self>, crate::atom::AtomError>;
}

impl FromWirePid for Pid {
    fn from_wire(p: &Pid) -> Result<Option<Pid>, crate::atom::AtomError> {
        Ok(Some(p.clone()))
    }
}

impl FromWirePid for MemberPid {
    fn from_wire(p: &Pid) -> Result<Option<MemberPid>, crate::atom::AtomError> {
        unless_full(MemberPid::try_from(p))
    }
}

/// What both decoding paths of an exchange make of an interning: a full
/// node-name table leaves the pid out (`Ok(None)`, see [`FromWirePid`]),
/// any other error refuses it.
fn unless_full<T>(
    r: Result<T, crate::atom::AtomError>,
) -> Result<Option<T>, crate::atom::AtomError> {
    match r {
        Ok(v) => Ok(Some(v)),
        Err(crate::atom::AtomError::TableFull) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Whether both decoding paths keep a group of `listed` pids of which
/// `kept` could be named: a group whose every pid was left out is left out
/// too (a state lists groups with members).
fn keep_group(kept: usize, listed: usize) -> bool {
    kept > 0 || listed == 0
}

/// Warns (once a second at most, saying how many warnings were held back)
/// that an exchange from node `from` (`None`: a join or leave cast) left
/// out `pids` pids whose node names the full node-name table could not
/// take, and `groups` groups whose names this scope's storage cannot hold
/// (genuine cpg's trie takes any list of integers: `[16#D800]`, a
/// surrogate, is no Rust `char`). The rest is taken: a peer whose state
/// holds one such name is not lost whole (at `visible`, a poll's answer
/// refused whole dropped every one of that node's members).
fn warn_left_out(from: Option<&str>, pids: usize, groups: usize) {
    static WARNINGS: std::sync::LazyLock<std::sync::Arc<crate::util::FloodLog>> =
        std::sync::LazyLock::new(|| {
            crate::util::FloodLog::new(1, std::time::Duration::from_secs(1), |held_back| {
                tracing::warn!(
                    held_back,
                    "{held_back} more exchanges or casts that left out pids or groups were not logged (a flood, now over)"
                );
            })
        });
    if pids == 0 && groups == 0 {
        return;
    }
    if let Some(held_back) = WARNINGS.event() {
        let what = from.map_or("a cast".into(), |n| format!("an exchange from {n}"));
        tracing::warn!(
            held_back,
            "{what}: left out {pids} pids of nodes whose names the full node-name table cannot take, \
             and {groups} groups whose names this scope cannot hold"
        );
    }
}

fn name_of<N: WireName>(t: &Term, whole: &Term) -> Result<N, WireError> {
    N::from_term(t).ok_or_else(|| WireError::BadName(short(whole)))
}

fn short(t: &Term) -> String {
    crate::util::short_text(t)
}

/// The `[{Name, Count}]` of a `join_counts` or `leave_counts` request,
/// each count above 0, each name one this storage holds (else an error).
pub(crate) fn counts<N: WireName>(t: &Term, whole: &Term) -> Result<Vec<(N, usize)>, WireError> {
    count_terms(t, whole)?
        .into_iter()
        .map(|(n, c)| Ok((name_of(n, whole)?, c)))
        .collect()
}

/// [`counts`] of a cast from another node's scope: names this storage
/// cannot hold (a surrogate code point, which genuine cpg's trie takes)
/// are left out and the rest is applied, as their groups are left out of
/// an exchange.
fn cast_counts<N: WireName>(t: &Term, whole: &Term) -> Result<Vec<(N, usize)>, WireError> {
    let terms = count_terms(t, whole)?;
    let listed = terms.len();
    let held: Vec<(N, usize)> = terms
        .into_iter()
        .filter_map(|(n, c)| Some((N::from_term(n)?, c)))
        .collect();
    if held.len() < listed {
        warn_left_out(None, 0, listed - held.len());
    }
    Ok(held)
}

/// The `(Name, Count)` terms of a counts list, each count above 0.
fn count_terms<'t>(t: &'t Term, whole: &Term) -> Result<Vec<(&'t Term, usize)>, WireError> {
    let l = term::as_list(t).ok_or_else(|| WireError::Unknown(short(whole)))?;
    l.iter()
        .map(|e| match term::as_tuple(e) {
            Some([n, c]) => {
                let c = term::as_int(c)
                    .filter(|&c| c > 0)
                    .ok_or_else(|| WireError::Unknown(short(whole)))?;
                Ok((n, c as usize))
            }
            _ => Err(WireError::Unknown(short(whole))),
        })
        .collect()
}

impl<P: FromWirePid, N: WireName> WireMsg<P, N> {
    /// Decodes a message received by a scope process.
    pub fn decode(msg: &Term) -> Result<WireMsg<P, N>, WireError> {
        let unknown = || WireError::Unknown(short(msg));
        let t = term::as_tuple(msg).ok_or_else(unknown)?;
        match t {
            [tag, node] if term::as_atom(tag) == Some("new") => Ok(WireMsg::New(
                term::as_atom(node).ok_or_else(unknown)?.to_string(),
            )),
            [tag, req] if term::as_atom(tag) == Some("$gen_cast") => {
                let r = term::as_tuple(req).ok_or_else(unknown)?;
                let head = r.first().and_then(term::as_atom).ok_or_else(unknown)?;
                let bad = || WireError::BadPid(short(msg));
                let maybe_pid = |t: &Term| {
                    let p = term::as_pid(t).ok_or_else(unknown)?;
                    P::from_wire(p).map_err(|_| bad())
                };
                let pid = |t: &Term| maybe_pid(t)?.ok_or_else(bad);
                let request = match (head, &r[1..]) {
                    ("join", [n, p]) => Request::Join {
                        name: name_of(n, msg)?,
                        pid: pid(p)?,
                    },
                    ("join_counts", [c, p]) => Request::JoinCounts {
                        counts: cast_counts(c, msg)?,
                        pid: pid(p)?,
                    },
                    ("leave", [n, p]) => Request::Leave {
                        name: name_of(n, msg)?,
                        pid: pid(p)?,
                    },
                    ("leave_counts", [c, p]) => Request::LeaveCounts {
                        counts: cast_counts(c, msg)?,
                        pid: pid(p)?,
                    },
                    ("leave", [p]) => Request::LeaveAll { pid: pid(p)? },
                    ("exchange", [node, groups]) => {
                        let from = term::as_atom(node).ok_or_else(unknown)?.to_string();
                        let gl = term::as_list(groups).ok_or_else(unknown)?;
                        let mut out = Vec::with_capacity(gl.len());
                        let (mut skipped, mut bad_names) = (0, 0);
                        for g in gl {
                            let [n, h] = term::as_tuple(g).ok_or_else(unknown)? else {
                                return Err(unknown());
                            };
                            let Some(name) = N::from_term(n) else {
                                bad_names += 1;
                                continue;
                            };
                            // Sized up front: a `Result` collect does not
                            // know the length and grows the vector.
                            let l = term::as_list(h).ok_or_else(unknown)?;
                            let mut pids = Vec::with_capacity(l.len());
                            for p in l {
                                match maybe_pid(p)? {
                                    Some(p) => pids.push(p),
                                    None => skipped += 1,
                                }
                            }
                            if keep_group(pids.len(), l.len()) {
                                out.push((name, pids));
                            }
                        }
                        warn_left_out(Some(&from), skipped, bad_names);
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

impl<N: WireName> WireMsg<MemberPid, N> {
    /// The exchange a large message to a scope process brings (a peer's
    /// whole state: 100k groups), read straight from its bytes into the
    /// message, without the 5 allocations a group takes as a [`Term`]
    /// (tuple, string, list, pid, node name) only to be converted and
    /// freed. `None` for any other message, or an exchange not plainly
    /// shaped as BEAM sends it (a LARGE_TUPLE, a name that is no string,
    /// a node name not UTF-8 or not interned, ...): the caller
    /// then decodes the term ([`RawPayload::decode`]) and
    /// [`WireMsg::decode`]s it, which handles or refuses it as always.
    /// What this returns is what that path returns (a unit test and the
    /// `cpg_raw` fuzz target hold them together).
    pub fn decode_exchange<'a>(payload: &'a RawPayload) -> Option<WireMsg<MemberPid, N>> {
        // The pids are at nesting 6; a lower limit is the term path's to
        // refuse.
        if payload.limits().max_depth < 8 {
            return None;
        }
        let (data, start, refs) = payload.body()?;
        let mut f = Fields::new(data, start, refs);
        if f.tuple()? != 2 || f.atom_str()? != "$gen_cast" {
            return None;
        }
        if f.tuple()? != 3 || f.atom_str()? != "exchange" {
            return None;
        }
        let from = f.atom_str()?.to_string();
        let mut groups = Vec::new();
        let mut chars = Vec::new();
        // The last node seen and its interned name: a state's pids come in
        // runs of one node.
        let mut last: Option<(&'a str, Option<Atom>)> = None;
        let mut skipped = 0;
        // `Some(None)`: a pid left out, as `FromWirePid` says.
        let mut pid = |f: &mut Fields<'a>| -> Option<Option<MemberPid>> {
            let (node, id, serial, creation) = f.pid_parts()?;
            let atom = match last {
                Some((n, a)) if n == node => a,
                _ => {
                    let a = unless_full(Atom::new(node)).ok()?;
                    last = Some((node, a));
                    a
                }
            };
            let Some(atom) = atom else {
                skipped += 1;
                return Some(None);
            };
            Some(Some(MemberPid::with_atom(atom, id, serial, creation)))
        };
        // A list's elements take a byte each at least (a group 9, a pid
        // 13): no more room is reserved than the bytes could fill.
        let (n, tail) = list_len(&mut f)?;
        groups.reserve_exact(n.min(f.remaining() / 9));
        for _ in 0..n {
            if f.tuple()? != 2 {
                return None;
            }
            let name = match f.peek()? {
                106 => N::from_latin1(f.nil().map(|_| &[][..])?)?,
                108 => {
                    // Code points (a name with a character above 255),
                    // read into a buffer kept for the next one.
                    chars.clear();
                    for _ in 0..f.list()? {
                        chars.push(u32::try_from(f.int()?).ok().and_then(char::from_u32)?);
                    }
                    f.nil()?;
                    N::from_chars(&chars)?
                }
                _ => N::from_latin1(f.string()?)?,
            };
            let (k, pids_tail) = list_len(&mut f)?;
            let mut pids = Vec::with_capacity(k.min(f.remaining() / 13));
            for _ in 0..k {
                if let Some(p) = pid(&mut f)? {
                    pids.push(p);
                }
            }
            if pids_tail {
                f.nil()?;
            }
            if keep_group(pids.len(), k) {
                groups.push((name, pids));
            }
        }
        if tail {
            f.nil()?;
        }
        if f.end() != data.len() {
            return None;
        }
        warn_left_out(Some(&from), skipped, 0);
        Some(WireMsg::Cast(Request::Exchange { from, groups }))
    }
}

/// A list's length, and whether a tail follows its elements: `NIL_EXT`
/// (none), or a `LIST_EXT` header (a tail, which must be `NIL_EXT`).
fn list_len(f: &mut Fields<'_>) -> Option<(usize, bool)> {
    match f.peek()? {
        106 => f.nil().map(|_| (0, false)),
        _ => f.list().map(|n| (n, true)),
    }
}

impl<P: Clone + Into<Pid>, N: WireName> WireMsg<P, N> {
    /// Encodes the message as sent on the wire (casts wrapped in
    /// `{'$gen_cast', _}`).
    pub fn encode(&self) -> Term {
        let request = match self {
            WireMsg::New(node) => return tuple(vec![atom("new"), atom(node)]),
            WireMsg::Cast(r) => r,
        };
        let s = N::to_term;
        let p = |p: &P| Term::Pid(p.clone().into());
        let counts = |c: &[(N, usize)]| {
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
    use crate::term::charlist_to_string;

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
        let t = WireMsg::<Pid>::Cast(Request::Join {
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

    fn round_trip<N: WireName + std::fmt::Debug>(m: &WireMsg<Pid, N>) -> WireMsg<Pid, N> {
        let mut b = Vec::new();
        term::encode_into(&m.encode(), &mut b).unwrap();
        let t = term::decode(&b, term::Limits::default()).unwrap();
        WireMsg::decode(&t).unwrap()
    }

    #[test]
    fn term_names_round_trip() {
        let c = |r: Request<Pid, TermName>| WireMsg::Cast(r);
        let tup = TermName::new(tuple(vec![atom("my"), atom("tuple"), atom("name")]));
        let map = TermName::new(Term::Map(term::Map {
            map: [(atom("k"), term::int(1)), (term::int(2), term::nil())]
                .into_iter()
                .collect(),
        }));
        let names = [
            tup.clone(),
            TermName::atom("some_atom"),
            TermName::binary(b"bin"),
            TermName::string(""),
            TermName::string("a/*"),
            TermName::string("组"),
            TermName::new(term::int(-5)),
            map,
        ];
        let mut msgs: Vec<WireMsg<Pid, TermName>> = names
            .iter()
            .flat_map(|n| {
                [
                    c(Request::Join {
                        name: n.clone(),
                        pid: pid(),
                    }),
                    c(Request::Leave {
                        name: n.clone(),
                        pid: pid(),
                    }),
                ]
            })
            .collect();
        msgs.push(c(Request::JoinCounts {
            counts: names.iter().map(|n| (n.clone(), 2)).collect(),
            pid: pid(),
        }));
        msgs.push(c(Request::LeaveCounts {
            counts: vec![(tup.clone(), 1)],
            pid: pid(),
        }));
        msgs.push(c(Request::Exchange {
            from: "a@vm".into(),
            groups: names.iter().map(|n| (n.clone(), vec![pid()])).collect(),
        }));
        for m in &msgs {
            let back = round_trip(m);
            assert_eq!(&back, m);
            // The very term that came is the one sent back.
            assert_eq!(back.encode(), m.encode());
        }
        // The cpg shape: {'$gen_cast',{join,{my,tuple,name},Pid}}.
        assert_eq!(
            msgs[0].encode(),
            tuple(vec![
                atom("$gen_cast"),
                tuple(vec![atom("join"), tup.term().clone(), Term::Pid(pid())])
            ])
        );
    }

    #[test]
    fn term_names_take_any_term_strings_only_strings() {
        for name in [
            atom("g"),
            tuple(vec![atom("my"), term::int(1)]),
            term::binary(b"g".to_vec()),
            term::nil(),
            term::string_to_charlist("a/*"),
        ] {
            let msg = tuple(vec![
                atom("$gen_cast"),
                tuple(vec![atom("join"), name.clone(), Term::Pid(pid())]),
            ]);
            let got = WireMsg::<Pid, TermName>::decode(&msg).unwrap();
            let WireMsg::Cast(Request::Join { name: n, .. }) = &got else {
                panic!("{got:?}");
            };
            assert_eq!(n.term(), &name);
            assert_eq!(got.encode(), msg, "sent back exactly");
            let as_string = WireMsg::<Pid>::decode(&msg);
            match charlist_to_string(&name) {
                Ok(s) => assert!(
                    matches!(as_string, Ok(WireMsg::Cast(Request::Join { name, .. })) if name == s)
                ),
                Err(_) => assert!(matches!(as_string, Err(WireError::BadName(_)))),
            }
        }
        // A string sent by BEAM (STRING_EXT) and one built as a list of code
        // points are the same name; each is sent back in its own spelling.
        let bytes = Term::ByteList(vec![b'a', b'b'].into());
        let ints = term::list(vec![term::int(97), term::int(98)]);
        let (x, y) = (TermName::new(bytes.clone()), TermName::new(ints.clone()));
        assert_eq!(x, y);
        assert_eq!(x.to_term(), bytes);
        assert_eq!(y.to_term(), ints);
        // Any name, but still the cpg shapes.
        for junk in [
            tuple(vec![atom("join"), atom("g"), atom("not_a_pid")]),
            tuple(vec![
                atom("join_counts"),
                term::list(vec![tuple(vec![atom("g"), term::int(0)])]),
                Term::Pid(pid()),
            ]),
            tuple(vec![atom("exchange"), atom("a@vm"), atom("g")]),
        ] {
            let t = tuple(vec![atom("$gen_cast"), junk]);
            assert!(WireMsg::<Pid, TermName>::decode(&t).is_err(), "{t}");
        }
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

    #[test]
    fn cast_counts_leave_out_names_a_string_cannot_hold() {
        // `join_counts` and `leave_counts` casts naming a group genuine
        // cpg's trie holds and a `String` cannot (a surrogate): the rest
        // is applied; a call's counts are refused whole.
        let odd = term::list(vec![term::int(0xD800)]);
        let list = term::list(vec![
            tuple(vec![odd, term::int(1)]),
            tuple(vec![term::string_to_charlist("ok"), term::int(2)]),
        ]);
        for tag in ["join_counts", "leave_counts"] {
            let t = tuple(vec![
                atom("$gen_cast"),
                tuple(vec![atom(tag), list.clone(), Term::Pid(pid())]),
            ]);
            let m = WireMsg::<Pid>::decode(&t).unwrap();
            let WireMsg::Cast(r) = m else { panic!("{m:?}") };
            let counts = match r {
                Request::JoinCounts { counts, .. } | Request::LeaveCounts { counts, .. } => counts,
                r => panic!("{r:?}"),
            };
            assert_eq!(counts, vec![("ok".to_string(), 2)], "{tag}");
        }
        assert!(counts::<String>(&list, &list).is_err());
    }

    /// What [`WireMsg::decode_exchange`] makes of `payload` agrees with
    /// the term path: an answer is the term path's answer. Returns it.
    pub(crate) fn check_raw<N: WireName + std::fmt::Debug>(
        payload: &RawPayload,
    ) -> Option<WireMsg<MemberPid, N>> {
        let fast = WireMsg::<MemberPid, N>::decode_exchange(payload);
        if let Some(m) = &fast {
            let t = payload.decode().expect("the fast path read it");
            assert_eq!(&WireMsg::<MemberPid, N>::decode(&t).unwrap(), m);
        }
        fast
    }

    fn exchange_term(from: &str, groups: Vec<(Term, Vec<Pid>)>) -> Term {
        tuple(vec![
            atom("$gen_cast"),
            tuple(vec![
                atom("exchange"),
                atom(from),
                term::list(
                    groups
                        .into_iter()
                        .map(|(n, pids)| {
                            tuple(vec![
                                n,
                                term::list(pids.into_iter().map(Term::Pid).collect()),
                            ])
                        })
                        .collect(),
                ),
            ]),
        ])
    }

    #[test]
    fn raw_exchanges_read_as_the_term_path_reads_them() {
        let p = |n: &str, i| Pid::new(n, i, 0, 3);
        let s = term::string_to_charlist;
        let plain = exchange_term(
            "a@vm",
            vec![
                (s("pre"), vec![p("a@vm", 96)]),
                (s("/x/*"), vec![p("a@vm", 96), p("a@vm", 96), p("b@vm", 7)]),
                (s(""), vec![p("c@vm", 1)]),
                (s("é"), vec![]),
                (s("ab"), vec![p("a@vm", 1), p("b@vm", 2), p("a@vm", 3)]),
            ],
        );
        let payload = RawPayload::of_term(&plain).unwrap();
        let m = check_raw::<String>(&payload).expect("read from its bytes");
        let WireMsg::Cast(Request::Exchange { from, groups }) = m else {
            panic!("{m:?}")
        };
        assert_eq!(from, "a@vm");
        assert_eq!(groups.len(), 5);
        assert_eq!(groups[3], ("é".to_string(), vec![]));
        assert_eq!(groups[4].1[2], MemberPid::new("a@vm", 3, 0, 3).unwrap());
        // An empty exchange.
        let empty = RawPayload::of_term(&exchange_term("a@vm", vec![])).unwrap();
        assert!(check_raw::<String>(&empty).is_some());
        // A name in code points above 255 (a list of integers).
        let unicode = exchange_term("a@vm", vec![(s("组/é"), vec![p("a@vm", 1)])]);
        let unicode = RawPayload::of_term(&unicode).unwrap();
        assert!(check_raw::<String>(&unicode).is_some());
        // Left to the term path: a list that is no string (a code point
        // out of range or a surrogate, which genuine cpg's trie takes, not
        // an integer), a map storage's names, another message, a pid list
        // that is no list. The term path leaves out the groups of names a
        // `String` cannot hold, and takes the rest.
        for bad in [
            term::list(vec![term::int(0x110000)]),
            term::list(vec![term::int(0xD800)]),
            term::list(vec![term::int(-300)]),
            term::list(vec![term::int(-1)]),
            term::list(vec![atom("a")]),
        ] {
            let groups = vec![
                (bad.clone(), vec![p("a@vm", 1)]),
                (s("ok"), vec![p("a@vm", 2)]),
            ];
            let t = exchange_term("a@vm", groups);
            let raw = RawPayload::of_term(&t).unwrap();
            assert!(check_raw::<String>(&raw).is_none(), "{bad:?}");
            let m = WireMsg::<MemberPid, String>::decode(&raw.decode().unwrap());
            let Ok(WireMsg::Cast(Request::Exchange { groups, .. })) = m else {
                panic!("{bad:?}: {m:?}")
            };
            let ok = vec![MemberPid::new("a@vm", 2, 0, 3).unwrap()];
            assert_eq!(groups, vec![("ok".to_string(), ok)], "{bad:?}");
        }
        assert!(check_raw::<TermName>(&payload).is_none());
        let join = WireMsg::<Pid>::Cast(Request::Join {
            name: "g".into(),
            pid: pid(),
        });
        assert!(check_raw::<String>(&RawPayload::of_term(&join.encode()).unwrap()).is_none());
        let odd = tuple(vec![
            atom("$gen_cast"),
            tuple(vec![
                atom("exchange"),
                atom("a@vm"),
                term::list(vec![tuple(vec![s("g"), atom("x")])]),
            ]),
        ]);
        assert!(check_raw::<String>(&RawPayload::of_term(&odd).unwrap()).is_none());
        // Every prefix and byte changed: never an answer the term path
        // does not give.
        let mut b = Vec::new();
        term::encode_into(&plain, &mut b).unwrap();
        let raw = |b: &[u8]| RawPayload::new(b.to_vec(), 0, true, vec![], term::Limits::default());
        for n in 0..b.len() {
            check_raw::<String>(&raw(&b[..n]));
        }
        for at in 0..b.len() {
            let was = b[at];
            for v in [0, 1, 2, 97, 100, 104, 106, 107, 108, 119, 255, was ^ 1] {
                b[at] = v;
                check_raw::<String>(&raw(&b));
            }
            b[at] = was;
        }
    }

    #[test]
    fn raw_exchanges_after_a_header_read_cached_atoms() {
        // {'$gen_cast', {exchange, 'a@h', [{"g", [<a@h.5.0>]}]}} as terms
        // after a distribution header listing '$gen_cast', exchange, a@h.
        let mut b = vec![104, 2, 82, 0, 104, 3, 82, 1, 82, 2, 108, 0, 0, 0, 1];
        b.extend([104, 2, 107, 0, 1, b'g', 108, 0, 0, 0, 1, 88, 82, 2]);
        b.extend([0, 0, 0, 5, 0, 0, 0, 0, 0, 0, 0, 9, 106, 106]);
        let atoms = ["$gen_cast", "exchange", "a@h"].map(|a| Some(Box::<str>::from(a)));
        let payload = RawPayload::new(b, 0, false, atoms.to_vec(), term::Limits::default());
        let m = check_raw::<String>(&payload).expect("read from its bytes");
        assert_eq!(
            m,
            WireMsg::Cast(Request::Exchange {
                from: "a@h".into(),
                groups: vec![("g".into(), vec![MemberPid::new("a@h", 5, 0, 9).unwrap()])],
            })
        );
        // A low depth limit is the term path's to apply.
        let (data, _, _) = payload.body().unwrap();
        let shallow = RawPayload::new(
            data.to_vec(),
            0,
            false,
            atoms.to_vec(),
            term::Limits {
                max_depth: 4,
                ..term::Limits::default()
            },
        );
        assert!(check_raw::<String>(&shallow).is_none());
        assert!(shallow.decode().is_err());
    }

    proptest::proptest! {
        #[test]
        fn random_exchanges_read_from_bytes(
            groups in proptest::collection::vec(
                ("[a-z/*?é组]{0,6}", proptest::collection::vec((0u8..3, 0u32..50), 0..4)),
                0..20,
            )
        ) {
            let nodes = ["a@h", "b@h", "c@h"];
            let groups = groups
                .into_iter()
                .map(|(n, pids)| {
                    let pids = pids
                        .into_iter()
                        .map(|(k, i)| Pid::new(nodes[usize::from(k)], i, 0, 1))
                        .collect();
                    (term::string_to_charlist(&n), pids)
                })
                .collect();
            let payload = RawPayload::of_term(&exchange_term("a@h", groups)).unwrap();
            proptest::prop_assert!(check_raw::<String>(&payload).is_some());
        }
    }
}
