//! The pid index: which groups each monitored pid is in and which pids
//! each node has, kept in step with the groups (monitor/demonitor effects).

use super::*;

/// Most names a pid's [`Names`] keeps in a sorted vector before it moves
/// them to a tree.
const FEW_NAMES: usize = 8;

/// The group names of one pid, in name order. Most pids are in one group:
/// that name is kept inline (no allocation beside the map entry); a few
/// names sit in a vector grown one slot at a time (a tree node would take
/// about 300 bytes for one name); a pid in many groups gets a tree, so that
/// joining 100k groups stays `O(log n)` a join. The vector and the tree are
/// boxed so that the whole is as small as one name (24 bytes for a
/// `String`, 40 for a pid-index entry with a `MemberPid`).
#[derive(Debug, Clone)]
pub(super) enum Names<N> {
    /// None left: the pid's last name was removed (the caller forgets the
    /// pid then).
    Empty,
    /// Exactly one.
    One(N),
    /// From 2 to [`FEW_NAMES`], sorted.
    #[allow(clippy::box_collection)] // deliberate: keeps the enum small
    Few(Box<Vec<N>>),
    /// More.
    #[allow(clippy::box_collection)] // deliberate: keeps the enum small
    Many(Box<BTreeSet<N>>),
}

impl<N: GroupKey> Names<N> {
    fn one(name: N) -> Self {
        Names::One(name)
    }

    fn find(v: &[N], name: &N::Borrowed) -> Result<usize, usize> {
        v.binary_search_by(|n| n.as_borrowed().cmp(name))
    }

    /// Whether `name` is among the names.
    pub(super) fn contains(&self, name: &N::Borrowed) -> bool {
        match self {
            Names::Empty => false,
            Names::One(n) => n.as_borrowed() == name,
            Names::Few(v) => Self::find(v, name).is_ok(),
            Names::Many(s) => s.contains(name),
        }
    }

    /// Adds `name` (no-op if present).
    fn insert(&mut self, name: &N::Borrowed) {
        match self {
            Names::Empty => *self = Names::One(name.to_owned()),
            Names::One(n) => {
                if n.as_borrowed() != name {
                    let mut v = Vec::with_capacity(2);
                    v.push(n.clone());
                    let at = usize::from(n.as_borrowed() < name);
                    v.insert(at, name.to_owned());
                    *self = Names::Few(Box::new(v));
                }
            }
            Names::Few(v) => {
                let Err(at) = Self::find(v, name) else {
                    return;
                };
                if v.len() < FEW_NAMES {
                    v.reserve_exact(1);
                    v.insert(at, name.to_owned());
                } else {
                    let mut s: BTreeSet<N> = std::mem::take(&mut **v).into_iter().collect();
                    s.insert(name.to_owned());
                    *self = Names::Many(Box::new(s));
                }
            }
            Names::Many(s) => {
                if !s.contains(name) {
                    s.insert(name.to_owned());
                }
            }
        }
    }

    /// Removes `name` if present.
    fn remove(&mut self, name: &N::Borrowed) {
        match self {
            Names::Empty => {}
            Names::One(n) => {
                if n.as_borrowed() == name {
                    *self = Names::Empty;
                }
            }
            Names::Few(v) => {
                if let Ok(at) = Self::find(v, name) {
                    v.remove(at);
                    if v.len() == 1 {
                        *self = Names::One(v.remove(0));
                    }
                }
            }
            Names::Many(s) => {
                s.remove(name);
            }
        }
    }

    pub(super) fn is_empty(&self) -> bool {
        match self {
            Names::Empty => true,
            Names::One(_) | Names::Few(_) => false,
            Names::Many(s) => s.is_empty(),
        }
    }

    /// The names in order.
    pub(super) fn iter(&self) -> impl Iterator<Item = &N> + '_ {
        let (few, many) = match self {
            Names::Empty => (None, None),
            Names::One(n) => (Some(std::slice::from_ref(n).iter()), None),
            Names::Few(v) => (Some(v.iter()), None),
            Names::Many(s) => (None, Some(s.iter())),
        };
        few.into_iter().flatten().chain(many.into_iter().flatten())
    }

    /// The names in order, owned.
    pub(super) fn into_vec(self) -> Vec<N> {
        match self {
            Names::Empty => Vec::new(),
            Names::One(n) => vec![n],
            Names::Few(v) => *v,
            Names::Many(s) => (*s).into_iter().collect(),
        }
    }
}

impl<P: ScopePid, N: GroupKey> Scope<P, N> {
    /// Adds `count` copies at the newest end, creating the group; one join
    /// notification per call (as cpg's `notify_join/4`); monitors new pids.
    pub(super) fn add_copies(
        &mut self,
        name: &N::Borrowed,
        pid: &P,
        count: usize,
        effects: &mut Vec<Effect<P, N>>,
    ) {
        let is_local = self.is_local(pid);
        push_notify(self.notify, effects, name, pid, &join_reason(is_local), 1);
        self.groups
            .get_or_insert_with(name, GroupData::new)
            .join(pid.clone(), is_local, count);
        self.index_add(pid, name, effects);
    }

    /// Removes up to `count` oldest copies; erases the group when empty;
    /// drops the name (and the monitor) when the pid has no copy left.
    pub(super) fn leave_group(
        &mut self,
        name: &N::Borrowed,
        pid: &P,
        count: usize,
        reason: &Reason,
        effects: &mut Vec<Effect<P, N>>,
    ) {
        let Some(group) = self.groups.get_mut(name) else {
            return;
        };
        let removed = group.leave_oldest(pid, count);
        let still_member = group.count_of(pid) > 0;
        if group.is_empty() {
            self.groups.remove(name);
        }
        push_notify(self.notify, effects, name, pid, reason, removed);
        if !still_member {
            if let Some(names) = self.pids.get_mut(pid) {
                names.remove(name);
                if names.is_empty() {
                    self.forget_pid(pid);
                    effects.push(Effect::Demonitor(pid.clone()));
                }
            }
        }
    }

    /// Removes every copy of `pid` everywhere and forgets it.
    pub(super) fn leave_everything(
        &mut self,
        pid: &P,
        reason: &Reason,
        demonitor: bool,
        effects: &mut Vec<Effect<P, N>>,
    ) {
        let Some(names) = self.forget_pid(pid) else {
            return;
        };
        if demonitor {
            effects.push(Effect::Demonitor(pid.clone()));
        }
        for name in names {
            let name = name.as_borrowed();
            let Some(group) = self.groups.get_mut(name) else {
                continue;
            };
            let removed = group.leave_all(pid);
            if group.is_empty() {
                self.groups.remove(name);
            }
            push_notify(self.notify, effects, name, pid, reason, removed);
        }
    }

    /// Records that `pid` is in `name`; a new pid gets a monitor.
    pub(super) fn index_add(
        &mut self,
        pid: &P,
        name: &N::Borrowed,
        effects: &mut Vec<Effect<P, N>>,
    ) {
        match self.pids.entry(pid.clone()) {
            std::collections::hash_map::Entry::Occupied(mut e) => {
                e.get_mut().insert(name);
                return;
            }
            std::collections::hash_map::Entry::Vacant(e) => {
                e.insert(Names::one(name.to_owned()));
            }
        }
        effects.push(Effect::Monitor(pid.clone()));
    }

    pub(super) fn forget_pid(&mut self, pid: &P) -> Option<Vec<N>> {
        let names = self.pids.remove(pid)?;
        crate::util::shrink_sparse(&mut self.pids);
        Some(names.into_vec())
    }
}
