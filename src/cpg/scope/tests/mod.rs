//! Unit tests of the pure scope, by kind of input, and a multi-node
//! simulation (`sim`) checked against a model.

mod complexity;
mod map_storage;
mod reads;
mod remote;
mod sim;
mod writes;

use super::*;
use proptest::prelude::*;
use std::collections::VecDeque;

/// Test pid: ordered by id first (like Erlang's serial-first order).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
struct T {
    id: u32,
    node: &'static str,
}

impl PidInfo for T {
    fn node(&self) -> &str {
        self.node
    }
}

fn t(node: &'static str, id: u32) -> T {
    T { id, node }
}

type E = Effect<T>;

fn notifies<N: Clone>(effects: &[Effect<T, N>]) -> Vec<(N, T, Reason)> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::Notify { name, pid, reason } => {
                Some((name.clone(), pid.clone(), reason.clone()))
            }
            _ => None,
        })
        .collect()
}

fn casts<N: Clone>(effects: &[Effect<T, N>]) -> Vec<(String, Request<T, N>)> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::Cast { node, request } => Some((node.clone(), request.clone())),
            _ => None,
        })
        .collect()
}

fn monitors<N>(effects: &[Effect<T, N>]) -> Vec<T> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::Monitor(p) => Some(p.clone()),
            _ => None,
        })
        .collect()
}

fn demonitors<N>(effects: &[Effect<T, N>]) -> Vec<T> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::Demonitor(p, _) => Some(p.clone()),
            _ => None,
        })
        .collect()
}

fn n(name: &str, pid: &T, reason: Reason) -> (String, T, Reason) {
    (name.to_string(), pid.clone(), reason)
}

fn history<N: GroupKey>(s: &Scope<T, N>, name: &N::Borrowed) -> Vec<T> {
    s.group_data(name).map(|d| d.history).unwrap_or_default()
}

fn counts(v: &[(&str, usize)]) -> Vec<(String, usize)> {
    v.iter().map(|(n, c)| (n.to_string(), *c)).collect()
}

/// Internal consistency of one scope.
fn check_invariants<N: GroupKey>(s: &Scope<T, N>) {
    assert_eq!(
        s.total_copies(),
        s.member_totals().0,
        "the scope's count of copies"
    );
    let mut seen: BTreeMap<T, BTreeSet<N>> = BTreeMap::new();
    for name in s.which_groups() {
        let g = s.group(name.as_borrowed()).unwrap();
        assert!(!g.is_empty(), "empty group {name} kept");
        let d = g.to_data();
        assert_eq!(g.members_slice(), d.history, "borrowed members of {name}");
        // a read by a pattern's own spelling finds nothing (as cpg_data)
        if let Ok((key, borrowed)) = s.get_members_ref(name.as_borrowed()) {
            if key == name.as_borrowed() {
                assert_eq!(borrowed, d.history, "get_members_ref of {name}");
            }
        }
        let local: Vec<T> = d
            .history
            .iter()
            .filter(|p| s.is_local(p))
            .cloned()
            .collect();
        let remote: Vec<T> = d
            .history
            .iter()
            .filter(|p| !s.is_local(p))
            .cloned()
            .collect();
        assert_eq!(d.local, local);
        assert_eq!(d.remote, remote);
        assert_eq!(d.local_count, local.len());
        assert_eq!(d.remote_count, remote.len());
        for p in g.pids() {
            assert!(g.count_of(p) > 0);
            seen.entry(p.clone()).or_default().insert(name.clone());
        }
    }
    assert_eq!(s.pids.len(), seen.len());
    for (p, names) in &seen {
        let handles = s.pids.get(p).map(|n| n.names.iter().collect::<Vec<_>>());
        let index = handles.as_ref().map(|h| s.names_of(h.iter().copied()));
        let want: Vec<&N::Borrowed> = names.iter().map(|n| n.as_borrowed()).collect();
        assert_eq!(index, Some(want), "index of {p:?}");
        // every handle names a stored group that holds the pid
        for h in handles.into_iter().flatten() {
            let group = s.groups.by_handle(h).map(|(_, g)| g);
            assert!(group.is_some_and(|g| g.count_of(p) > 0), "handle of {p:?}");
        }
    }
}
