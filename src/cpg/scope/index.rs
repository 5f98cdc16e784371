//! The pid index: which groups each monitored pid is in, and the handle of
//! its monitor, kept in step with the groups (monitor/demonitor effects).

use super::thin::ThinList;
use super::*;

/// Most group handles a pid's [`Names`] keeps in a sorted vector before it
/// moves them to a tree: 8, or as many as fit 64 bytes (16 trie
/// [`EntryId`](crate::cpg::trie::EntryId)s, where a tree node costs more
/// than a vector of 16).
const fn few_names<H>() -> usize {
    let fit = 64 / std::mem::size_of::<H>();
    if fit > 8 {
        fit
    } else {
        8
    }
}

/// The groups of one pid, as handles of their names in the group store
/// ([`GroupKey::Handle`]: a 4-byte id in the trie, so the pid index holds no
/// copy of a name), sorted by handle. Most pids are in one group: that
/// handle is kept inline (no allocation beside the map entry); a few sit in
/// a vector grown one slot at a time (a tree node would take hundreds of
/// bytes for one); a pid in many groups gets a tree, so that joining 100k
/// groups stays `O(log n)` a join. The vector and the tree are boxed so
/// that the whole is as small as one handle beside the tag (16 bytes for
/// the trie's, a pid-index entry 32 with a `MemberPid`).
#[derive(Debug, Clone)]
pub(super) enum Names<H> {
    /// None left: the pid's last group was removed (the caller forgets the
    /// pid then).
    Empty,
    /// Exactly one.
    One(H),
    /// From 2 to [`few_names`], sorted, in one block behind one pointer.
    Few(ThinList<H>),
    /// More.
    #[allow(clippy::box_collection)] // deliberate: keeps the enum small
    Many(Box<BTreeSet<H>>),
}

impl<H: Ord + Clone> Names<H> {
    /// Adds `h` (no-op if present).
    fn insert(&mut self, h: H) {
        match self {
            Names::Empty => {
                *self = Names::One(h);
                return;
            }
            Names::One(n) => {
                if *n != h {
                    let mut v = ThinList::with_capacity(2);
                    v.insert(0, n.clone());
                    let at = usize::from(*n < h);
                    v.insert(at, h);
                    *self = Names::Few(v);
                }
                return;
            }
            Names::Few(v) => {
                let Err(at) = v.as_slice().binary_search(&h) else {
                    return;
                };
                if v.len() < few_names::<H>() {
                    // Grown by a quarter (two at least), not one at a time:
                    // a pid joining its groups one by one (an exchange)
                    // would move its names at every join.
                    if v.len() == v.capacity() {
                        v.reserve_exact((v.len() / 4).max(2).min(few_names::<H>() - v.len()));
                    }
                    v.insert(at, h);
                    return;
                }
                // full: the names move to a tree (below)
            }
            Names::Many(s) => {
                s.insert(h);
                return;
            }
        }
        if let Names::Few(v) = std::mem::replace(self, Names::Empty) {
            let mut s: BTreeSet<H> = v.into_vec().into_iter().collect();
            s.insert(h);
            *self = Names::Many(Box::new(s));
        }
    }

    /// Removes `h` if present.
    fn remove(&mut self, h: &H) {
        match self {
            Names::Empty => {}
            Names::One(n) => {
                if n == h {
                    *self = Names::Empty;
                }
            }
            Names::Few(v) => {
                if let Ok(at) = v.as_slice().binary_search(h) {
                    v.remove(at);
                    if v.len() == 1 {
                        *self = Names::One(v.remove(0));
                    }
                }
            }
            Names::Many(s) => {
                s.remove(h);
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

    /// The handles in order.
    pub(super) fn iter(&self) -> impl Iterator<Item = &H> + '_ {
        let (few, many) = match self {
            Names::Empty => (None, None),
            Names::One(n) => (Some(std::slice::from_ref(n).iter()), None),
            Names::Few(v) => (Some(v.as_slice().iter()), None),
            Names::Many(s) => (None, Some(s.iter())),
        };
        few.into_iter().flatten().chain(many.into_iter().flatten())
    }

    /// The handles in order, owned.
    pub(super) fn into_vec(self) -> Vec<H> {
        match self {
            Names::Empty => Vec::new(),
            Names::One(n) => vec![n],
            Names::Few(v) => v.into_vec(),
            Names::Many(s) => (*s).into_iter().collect(),
        }
    }
}

/// A pid's entry in the pid index: its groups, and the handle of the
/// monitor the caller set on it ([`Scope::set_monitor`]).
#[derive(Debug, Clone)]
pub(super) struct PidEntry<H> {
    pub(super) names: Names<H>,
    pub(super) monitor: Option<MonitorTag>,
}

/// The pid index of a scope with names of type `N`.
pub(super) type PidIndex<P, N> = FastHashMap<P, PidEntry<<N as GroupKey>::Handle>>;

/// Records that `pid` is in the group `h`; a new pid gets a monitor.
pub(super) fn index_add<P: ScopePid, N: GroupKey>(
    pids: &mut PidIndex<P, N>,
    pid: &P,
    h: N::Handle,
    effects: &mut Vec<Effect<P, N>>,
) {
    match pids.entry(pid.clone()) {
        std::collections::hash_map::Entry::Occupied(mut e) => {
            e.get_mut().names.insert(h);
            return;
        }
        std::collections::hash_map::Entry::Vacant(e) => {
            e.insert(PidEntry {
                names: Names::One(h),
                monitor: None,
            });
        }
    }
    effects.push(Effect::Monitor(pid.clone()));
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
        let (h, group) = self.groups.handle_or_insert_with(name, GroupData::new);
        group.join(pid.clone(), is_local, count);
        self.copies += count;
        index_add(&mut self.pids, pid, h, effects);
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
        let Some(h) = self.groups.handle(name) else {
            return;
        };
        let Some((_, group)) = self.groups.by_handle_mut(&h) else {
            return;
        };
        let removed = group.leave_oldest(pid, count);
        self.copies -= removed;
        let still_member = group.count_of(pid) > 0;
        if group.is_empty() {
            self.groups.remove_by_handle(&h);
        }
        push_notify(self.notify, effects, name, pid, reason, removed);
        if !still_member {
            if let Some(entry) = self.pids.get_mut(pid) {
                entry.names.remove(&h);
                if entry.names.is_empty() {
                    let monitor = self.forget_pid(pid).and_then(|(_, m)| m);
                    effects.push(Effect::Demonitor(pid.clone(), monitor));
                }
            }
        }
    }

    /// Removes every copy of `pid` everywhere and forgets it; the groups
    /// are visited in name order (as cpg folds over its groups).
    pub(super) fn leave_everything(
        &mut self,
        pid: &P,
        reason: &Reason,
        demonitor: bool,
        effects: &mut Vec<Effect<P, N>>,
    ) {
        let Some((mut handles, monitor)) = self.forget_pid(pid) else {
            return;
        };
        if demonitor {
            effects.push(Effect::Demonitor(pid.clone(), monitor));
        }
        if handles.len() > 1 {
            let groups = &self.groups;
            let name = |h: &N::Handle| groups.by_handle(h).map(|(name, _)| name);
            handles.sort_by(|a, b| name(a).cmp(&name(b)));
        }
        for h in handles {
            let Some((name, group)) = self.groups.by_handle_mut(&h) else {
                continue;
            };
            let removed = group.leave_all(pid);
            self.copies -= removed;
            let empty = group.is_empty();
            push_notify(self.notify, effects, name, pid, reason, removed);
            if empty {
                self.groups.remove_by_handle(&h);
            }
        }
    }

    /// The names of the groups `handles` name, in name order.
    pub(super) fn names_of<'a>(
        &'a self,
        handles: impl Iterator<Item = &'a N::Handle>,
    ) -> Vec<&'a N::Borrowed> {
        let mut names: Vec<&N::Borrowed> = handles
            .filter_map(|h| self.groups.by_handle(h).map(|(name, _)| name))
            .collect();
        names.sort_unstable();
        names
    }

    /// Drops `pid` from the index: its groups' handles and its monitor's.
    pub(super) fn forget_pid(&mut self, pid: &P) -> Option<(Vec<N::Handle>, Option<MonitorTag>)> {
        let entry = self.pids.remove(pid)?;
        crate::util::shrink_sparse(&mut self.pids);
        Some((entry.names.into_vec(), entry.monitor))
    }

    /// Records `tag`, the handle of the monitor the caller set on `pid` for
    /// its [`Effect::Monitor`]: [`monitor_of`](Self::monitor_of) answers it
    /// and the pid's [`Effect::Demonitor`] gives it back. Returns the handle
    /// it replaces (a monitor the caller no longer needs), or `Err(tag)`
    /// when `pid` is no longer stored (it left before its monitor was set:
    /// the caller drops that monitor).
    pub fn set_monitor(
        &mut self,
        pid: &P,
        tag: MonitorTag,
    ) -> Result<Option<MonitorTag>, MonitorTag> {
        match self.pids.get_mut(pid) {
            Some(entry) => Ok(entry.monitor.replace(tag)),
            None => Err(tag),
        }
    }
}
