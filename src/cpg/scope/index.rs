//! The pid index: which groups each monitored pid is in and which pids
//! each node has, kept in step with the groups (monitor/demonitor effects).

use super::*;

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
        push_notify(effects, name, pid, &join_reason(is_local), 1);
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
        push_notify(effects, name, pid, reason, removed);
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
            push_notify(effects, name, pid, reason, removed);
        }
    }

    /// Records that `pid` is in `name`; a new pid gets a monitor.
    pub(super) fn index_add(
        &mut self,
        pid: &P,
        name: &N::Borrowed,
        effects: &mut Vec<Effect<P, N>>,
    ) {
        if let Some(names) = self.pids.get_mut(pid) {
            if !names.contains(name) {
                names.insert(name.to_owned());
            }
            return;
        }
        self.pids
            .insert(pid.clone(), BTreeSet::from([name.to_owned()]));
        match self.by_node.get_mut(pid.node()) {
            Some(set) => {
                set.insert(pid.clone());
            }
            None => {
                self.by_node
                    .insert(pid.node().to_string(), BTreeSet::from([pid.clone()]));
            }
        }
        effects.push(Effect::Monitor(pid.clone()));
    }

    pub(super) fn forget_pid(&mut self, pid: &P) -> Option<BTreeSet<N>> {
        let names = self.pids.remove(pid)?;
        crate::util::shrink_sparse(&mut self.pids);
        if let Some(set) = self.by_node.get_mut(pid.node()) {
            set.remove(pid);
            if set.is_empty() {
                self.by_node.remove(pid.node());
            }
        }
        Some(names)
    }

    // ------------------------------------------------------------------
    // Reads
}
