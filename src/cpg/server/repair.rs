//! Visible mode: a BEAM scope's view of our members, set right from its
//! polled state.
//!
//! A BEAM scope at `visible` learns our members only from our casts. Its
//! answer to a poll (`{new, Node}`) is its whole view, ours included, as of
//! the moment it read the question: our casts and the question travel on
//! one connection, so it has applied every cast sent before the question
//! and none after. Where that view and ours differ for a member whose
//! writes were all cast before the question, the scope lost them (its
//! `cpg:reset/1` to `visible` dropped every member of a hidden node; a
//! cast reached a scope that went away and came back): the difference is
//! cast again, so the scope holds what we hold. A member written since the
//! question is left to the next poll, which sees its casts.

use super::super::member::MemberPid;
use super::super::scope::{Effect, Request, Scope};
use super::super::storage::GroupKey;
use std::collections::HashMap;

/// The casts to `peer` that set its view of our members (`view`: its
/// polled state, empty when it sent none) to ours (`s`), for every local
/// pid not `written` since the question (sorted): the copies it lacks with
/// `join_counts`, those it holds beyond ours with `leave_counts` (each only
/// for groups it lists, as cpg takes a `leave_counts` whole or not at
/// all), a pid it holds and we do not (it left, or died before the
/// question) left whole.
pub(super) fn casts<N: GroupKey>(
    s: &Scope<MemberPid, N>,
    peer: &str,
    view: &[(N, Vec<MemberPid>)],
    written: &[MemberPid],
) -> Vec<Effect<MemberPid, N>> {
    let written_since = |p: &MemberPid| written.binary_search(p).is_ok();
    if holds_ours(s, view, written) {
        return Vec::new();
    }
    // Its copies of each of our pids, per group (maps: a pid may be in
    // many groups).
    let mut theirs: HashMap<MemberPid, HashMap<&N, usize>> = HashMap::new();
    for (name, pids) in view {
        for p in pids.iter().filter(|p| s.is_local(p)) {
            *theirs.entry(*p).or_default().entry(name).or_default() += 1;
        }
    }
    let mut effects = Vec::new();
    let mut cast = |request| {
        effects.push(Effect::Cast {
            node: peer.to_string(),
            request,
        })
    };
    let ours = s.monitored_pids().filter(|p| s.is_local(p));
    for pid in ours.filter(|p| !written_since(p)) {
        let mine = s.which_groups_counts(pid);
        let held = theirs.remove(pid).unwrap_or_default();
        let lacking: Vec<(N, usize)> = mine
            .iter()
            .filter_map(|(name, c)| {
                let have = held.get(name).copied().unwrap_or(0);
                (*c > have).then(|| (name.clone(), c - have))
            })
            .collect();
        let mine: HashMap<&N, usize> = mine.iter().map(|(n, c)| (n, *c)).collect();
        let mut extra: Vec<(N, usize)> = held
            .into_iter()
            .filter_map(|(name, c)| {
                let want = mine.get(name).copied().unwrap_or(0);
                (c > want).then(|| (name.clone(), c - want))
            })
            .collect();
        extra.sort();
        if !extra.is_empty() {
            cast(Request::LeaveCounts {
                counts: extra,
                pid: *pid,
            });
        }
        if !lacking.is_empty() {
            cast(Request::JoinCounts {
                counts: lacking,
                pid: *pid,
            });
        }
    }
    let mut gone: Vec<_> = theirs
        .into_iter()
        .filter(|(p, _)| !written_since(p))
        .collect();
    gone.sort_by_key(|a| a.0);
    for (pid, held) in gone {
        let mut counts: Vec<(N, usize)> = held.into_iter().map(|(n, c)| (n.clone(), c)).collect();
        counts.sort();
        cast(Request::LeaveCounts { counts, pid });
    }
    effects
}

/// Whether `view` holds exactly our copies of every local pid not
/// `written` (sorted), checked without building anything per pid: each of
/// its copies of ours matches our count in that group, and they add up to
/// all of ours. The answer of nearly every poll, so it is the cheap path
/// (under the state's read lock, which keeps the handles' writes waiting):
/// one count lookup per membership of ours it lists.
fn holds_ours<N: GroupKey>(
    s: &Scope<MemberPid, N>,
    view: &[(N, Vec<MemberPid>)],
    written: &[MemberPid],
) -> bool {
    let untouched = |p: &MemberPid| written.binary_search(p).is_err();
    let written_copies: usize = written
        .iter()
        .flat_map(|p| s.which_groups_counts(p))
        .map(|(_, c)| c)
        .sum();
    // (`written` holds local pids only, so this never goes below zero; if
    // it did, the full comparison would run, which is right anyway.)
    let ours = s.member_totals().1.saturating_sub(written_copies);
    let mut seen = 0;
    let mut run: Vec<MemberPid> = Vec::new();
    for (name, pids) in view {
        run.clear();
        run.extend(pids.iter().filter(|p| s.is_local(p) && untouched(p)));
        run.sort_unstable();
        for same in run.chunk_by(|a, b| a == b) {
            if s.join_count(name.as_borrowed(), &same[0]) != same.len() {
                return false;
            }
            seen += same.len();
        }
    }
    seen == ours
}

#[cfg(test)]
mod tests {
    use super::*;

    const ME: &str = "rust@host";
    const PEER: &str = "beam@host";

    fn local(id: u32) -> MemberPid {
        MemberPid::new(ME, id, 0, 1).unwrap()
    }

    fn remote(id: u32) -> MemberPid {
        MemberPid::new(PEER, id, 0, 1).unwrap()
    }

    /// Ours: a in "g" twice and "h" once, b in "g" once; the peer's own
    /// member c in "g".
    fn scope() -> Scope<MemberPid, String> {
        let mut s = Scope::new(ME);
        s.node_up(PEER, true);
        for (name, pid) in [
            ("g", local(1)),
            ("g", local(1)),
            ("h", local(1)),
            ("g", local(2)),
        ] {
            s.join(name, pid).unwrap();
        }
        s.remote_request(
            PEER,
            Request::Join {
                name: "g".into(),
                pid: remote(3),
            },
        );
        s
    }

    fn view(groups: &[(&str, &[MemberPid])]) -> Vec<(String, Vec<MemberPid>)> {
        groups
            .iter()
            .map(|(n, p)| (n.to_string(), p.to_vec()))
            .collect()
    }

    fn requests(effects: Vec<Effect<MemberPid, String>>) -> Vec<Request<MemberPid, String>> {
        effects
            .into_iter()
            .map(|e| match e {
                Effect::Cast { node, request } if node == PEER => request,
                e => panic!("not a cast to the peer: {e:?}"),
            })
            .collect()
    }

    fn counts(c: &[(&str, usize)]) -> Vec<(String, usize)> {
        c.iter().map(|(n, k)| (n.to_string(), *k)).collect()
    }

    #[test]
    fn a_view_that_holds_ours_needs_nothing() {
        let s = scope();
        let v = view(&[
            ("g", &[local(2), remote(3), local(1), local(1)]),
            ("h", &[local(1)]),
        ]);
        assert!(casts(&s, PEER, &v, &[]).is_empty());
    }

    #[test]
    fn an_empty_view_gets_every_member_again() {
        let s = scope();
        let mut got = requests(casts(&s, PEER, &[], &[]));
        got.sort_by_key(|r| *r.pid().unwrap());
        assert_eq!(
            got,
            vec![
                Request::JoinCounts {
                    counts: counts(&[("g", 2), ("h", 1)]),
                    pid: local(1)
                },
                Request::JoinCounts {
                    counts: counts(&[("g", 1)]),
                    pid: local(2)
                },
            ]
        );
    }

    #[test]
    fn missing_and_extra_copies_and_a_departed_pid() {
        let s = scope();
        // a: one copy of "g" missing, "h" missing, an extra "x";
        // b: two copies where we hold one; d: left, still held there.
        let v = view(&[
            ("g", &[local(1), local(2), local(2), remote(3), local(4)]),
            ("x", &[local(1)]),
        ]);
        let got = requests(casts(&s, PEER, &v, &[]));
        let mut want = vec![
            Request::LeaveCounts {
                counts: counts(&[("x", 1)]),
                pid: local(1),
            },
            Request::JoinCounts {
                counts: counts(&[("g", 1), ("h", 1)]),
                pid: local(1),
            },
            Request::LeaveCounts {
                counts: counts(&[("g", 1)]),
                pid: local(2),
            },
            Request::LeaveCounts {
                counts: counts(&[("g", 1)]),
                pid: local(4),
            },
        ];
        let key = |r: &Request<MemberPid, String>| {
            (*r.pid().unwrap(), matches!(r, Request::JoinCounts { .. }))
        };
        let mut got_sorted = got.clone();
        got_sorted.sort_by_key(key);
        want.sort_by_key(key);
        assert_eq!(got_sorted, want);
    }

    #[test]
    fn a_pid_written_since_the_question_is_left_to_the_next_poll() {
        let s = scope();
        let touched = [local(1), local(4)];
        let v = view(&[("g", &[local(4)])]);
        assert_eq!(
            requests(casts(&s, PEER, &v, &touched)),
            vec![Request::JoinCounts {
                counts: counts(&[("g", 1)]),
                pid: local(2)
            }]
        );
    }

    #[test]
    fn the_peers_own_members_and_other_nodes_are_not_ours_to_set() {
        let s = scope();
        let other = MemberPid::new("third@host", 9, 0, 1).unwrap();
        let v = view(&[
            ("g", &[local(2), local(1), local(1)]),
            ("h", &[local(1)]),
            ("y", &[remote(7), other]),
        ]);
        assert!(casts(&s, PEER, &v, &[]).is_empty());
    }

    /// A BEAM scope's view of our members after `casts` (applied as cpg
    /// does: `join_counts` adds, `leave_counts` removes all or nothing).
    fn apply(
        view: &mut HashMap<(MemberPid, String), usize>,
        effects: Vec<Effect<MemberPid, String>>,
    ) {
        for r in requests(effects) {
            match r {
                Request::JoinCounts { counts, pid } => {
                    for (n, c) in counts {
                        *view.entry((pid, n)).or_default() += c;
                    }
                }
                Request::LeaveCounts { counts, pid } => {
                    if counts
                        .iter()
                        .all(|(n, _)| view.contains_key(&(pid, n.clone())))
                    {
                        for (n, c) in counts {
                            let k = view.get_mut(&(pid, n.clone())).unwrap();
                            *k = k.saturating_sub(c);
                            if *k == 0 {
                                view.remove(&(pid, n));
                            }
                        }
                    }
                }
                r => panic!("unexpected {r:?}"),
            }
        }
    }

    proptest::proptest! {
        /// Whatever the peer's view of our members and whichever of them
        /// were written since the question, the casts leave it holding
        /// exactly ours for every member not written since, and touch no
        /// other.
        #[test]
        fn the_casts_set_every_untouched_member_right(
            ours in proptest::collection::vec((0u32..6, 0usize..4, 1usize..4), 0..14),
            theirs in proptest::collection::vec((0u32..8, 0usize..5, 1usize..4), 0..14),
            written in proptest::collection::vec(0u32..8, 0..4),
        ) {
            let names = ["a", "b", "c", "d", "e"];
            let mut s: Scope<MemberPid, String> = Scope::new(ME);
            s.node_up(PEER, true);
            for (id, g, c) in &ours {
                s.join_counts(&[(names[*g].to_string(), *c)], local(*id)).unwrap();
            }
            let mut before: HashMap<(MemberPid, String), usize> = HashMap::new();
            for (id, g, c) in &theirs {
                *before.entry((local(*id), names[*g].to_string())).or_default() += c;
            }
            // As a view: one list per group, each pid as often as held,
            // copies of a pid not side by side (every other element first).
            let mut groups: HashMap<String, Vec<MemberPid>> = HashMap::new();
            for ((p, n), c) in &before {
                groups.entry(n.clone()).or_default().extend(std::iter::repeat_n(*p, *c));
            }
            let v: Vec<(String, Vec<MemberPid>)> = groups
                .into_iter()
                .map(|(n, l)| {
                    let mixed = l.iter().step_by(2).chain(l.iter().skip(1).step_by(2));
                    (n, mixed.copied().collect())
                })
                .collect();
            let mut touched: Vec<MemberPid> = written.iter().map(|w| local(*w)).collect();
            touched.sort_unstable();
            touched.dedup();
            let touched_p = |p: &MemberPid| touched.binary_search(p).is_ok();
            let mut after = before.clone();
            apply(&mut after, casts(&s, PEER, &v, &touched));
            for id in 0..8 {
                let p = local(id);
                for n in names {
                    let k = (p, n.to_string());
                    let got = after.get(&k).copied().unwrap_or(0);
                    if touched_p(&p) {
                        proptest::prop_assert_eq!(got, before.get(&k).copied().unwrap_or(0));
                    } else {
                        proptest::prop_assert_eq!(got, s.join_count(n, &p), "{:?}", k);
                    }
                }
            }
        }
    }
}
