//! Input from other nodes: requests cast by their scopes, the exchange
//! merge, and member deaths (cpg's `handle_cast`s and `DOWN`s).

use super::*;

impl<P: ScopePid, N: GroupKey> Scope<P, N> {
    /// Whether [`Scope::remote_request`] would ignore `request` for asking
    /// more copies than [`Scope::max_copies`] or
    /// [`Scope::max_total_copies`] allows: the refusal, for the caller to
    /// log with the sender.
    pub fn check_remote(&self, request: &Request<P, N>) -> Result<(), WriteError<N>> {
        match request {
            Request::Join { name, pid } => {
                self.check_copies(std::slice::from_ref(&(name.clone(), 1)), pid)
            }
            Request::JoinCounts { counts, pid } => self.check_copies(counts, pid),
            _ => Ok(()),
        }
    }

    /// A request cast by the scope on `from_node`. Join/leave requests are
    /// applied to the (remote) pid they name, unvalidated as in cpg, except
    /// that requests about pids of this node, from this node, or with an
    /// empty group name are ignored; a leave for a pid or group the pid is
    /// not in is ignored. An exchange goes to [`Scope::exchange`] with the
    /// node named inside the message (trusted, as in cpg).
    pub fn remote_request(&mut self, from_node: &str, request: Request<P, N>) -> Vec<Effect<P, N>> {
        let mut effects = Vec::new();
        if let Request::Exchange { from, groups } = request {
            return self.exchange(&from, groups);
        }
        if from_node == self.node || request.pid().is_none_or(|p| self.is_local(p)) {
            return effects;
        }
        if self.check_remote(&request).is_err() {
            return effects;
        }
        match request {
            Request::Join { name, pid } => {
                let name = name.as_borrowed();
                if N::valid_remote(name) {
                    self.add_copies(name, &pid, 1, &mut effects);
                }
            }
            Request::JoinCounts { counts, pid } => {
                for (name, count) in counts {
                    let name = name.as_borrowed();
                    if N::valid_remote(name) && count > 0 {
                        self.add_copies(name, &pid, count, &mut effects);
                    }
                }
            }
            Request::Leave { name, pid } => {
                let name = name.as_borrowed();
                if self.is_member(name, &pid) {
                    self.leave_group(name, &pid, 1, &Reason::LeaveRemote, &mut effects);
                }
            }
            Request::LeaveCounts { counts, pid } => {
                if counts
                    .iter()
                    .all(|(name, _)| self.is_member(name.as_borrowed(), &pid))
                {
                    for (name, count) in counts {
                        let name = name.as_borrowed();
                        self.leave_group(name, &pid, count, &Reason::LeaveRemote, &mut effects);
                    }
                }
            }
            Request::LeaveAll { pid } => {
                self.leave_everything(&pid, &Reason::LeaveRemote, true, &mut effects);
            }
            Request::Exchange { .. } => {}
        }
        effects
    }

    /// `{exchange, FromNode, HistoryL}`: merges another scope's state.
    ///
    /// Ignored unless `from_node` is listened. Groups are merged in message
    /// order. A group we do not have is created from its history, keeping
    /// only pids of this node or of listened nodes (each copy notified, each
    /// pid monitored). For a group we have, each distinct pid of this node
    /// or of a listened node, in pid order, gets exactly the incoming number
    /// of copies: missing copies are added at the newest end, extra copies
    /// are removed from the newest end. Pids absent from the incoming
    /// history are not touched, and no group is deleted.
    ///
    /// That is cpg's merge, pids of this node included (it repairs a cpg
    /// scope that restarted empty). The scope process
    /// ([`CpgScope`](crate::cpg::CpgScope)) leaves our own pids out of an
    /// exchange before it merges: ours survive a restart, and a peer's
    /// copy of them could only undo a write of ours that crossed it.
    pub fn exchange(&mut self, from_node: &str, groups: Vec<(N, Vec<P>)>) -> Vec<Effect<P, N>> {
        self.merge_exchange(from_node, groups, false)
    }

    /// [`Scope::exchange`] of an answer to a poll: `from_node`'s whole
    /// view, whose copies of its own pids are also in `from_node`'s order.
    /// Only `from_node`'s own pids are taken: each node we poll is read
    /// from its own answers (its view of a third node's members is at best
    /// as new as ours: a leave still on its way to it would bring a member
    /// back here until that node's next poll; the third node's are read
    /// from it, by poll or by cast). After each group's merge, that node's
    /// copies in ours are put in the order its history lists them, and
    /// where it lists them among the other nodes' copies that we hold too
    /// (`follow_order`).
    ///
    /// A node whose scope tells us nothing of its changes (a BEAM scope at
    /// `visible`) is read by polls, and the merge alone keeps counts, not
    /// order: `join A`, `join B`, then `leave A` and `join A` between two
    /// polls leave the counts as they were, where a genuine observer that
    /// got the casts holds `[A, B]` (newest first) and the merge alone kept
    /// `[B, A]`.
    pub fn exchange_polled(
        &mut self,
        from_node: &str,
        groups: Vec<(N, Vec<P>)>,
    ) -> Vec<Effect<P, N>> {
        self.merge_exchange(from_node, groups, true)
    }

    fn merge_exchange(
        &mut self,
        from_node: &str,
        groups: Vec<(N, Vec<P>)>,
        polled: bool,
    ) -> Vec<Effect<P, N>> {
        let mut effects = Vec::new();
        if !self.is_listened(from_node) {
            return effects;
        }
        let mut memo = AcceptMemo::new();
        // Room for the names the scope does not hold yet, at most: a first
        // exchange into a small scope fills the storage in one go, one of
        // names the scope holds asks for nothing.
        self.groups
            .reserve(groups.len().saturating_sub(self.groups.len()));
        for (name, mut history) in groups {
            let name = name.as_borrowed();
            if !N::valid_remote(name) {
                continue;
            }
            // A poll's answer as listed, other nodes' copies included: where
            // ours go among theirs (`follow_order`).
            let mut listed = Vec::new();
            if polled && history.iter().any(|p| p.node() != from_node) {
                listed = history.clone();
                history.retain(|p| p.node() == from_node);
                if history.is_empty() {
                    continue;
                }
            }
            // One walk of the trie to tell the two cases apart, one more
            // to store a new name (none again for a group we have).
            match self.groups.handle(name) {
                Some(h) => {
                    self.merge_conflict(name, h.clone(), &history, &mut memo, &mut effects);
                    if polled {
                        let listed = if listed.is_empty() { &history } else { &listed };
                        self.follow_order(name, &h, from_node, listed, &mut effects);
                    }
                }
                // (Built in the order listed.)
                None => self.merge_new(name, &history, &mut memo, &mut effects),
            }
        }
        effects
    }

    /// The copies of `origin`'s pids that `groups` (its whole view, as a
    /// poll of it answers) no longer lists: per pid we hold, the groups
    /// and how many copies to leave (a `leave_counts` request each).
    /// Walks the pids we hold of `origin`, not our groups: a poll of a node
    /// with few members into a large scope reads only theirs.
    pub fn unlisted(&self, origin: &str, groups: &[(N, Vec<P>)]) -> Vec<(P, Vec<(N, usize)>)> {
        let mut listed: std::collections::HashMap<(&N::Borrowed, &P), usize> =
            std::collections::HashMap::new();
        for (name, pids) in groups {
            for p in pids.iter().filter(|p| p.node() == origin) {
                *listed.entry((name.as_borrowed(), p)).or_default() += 1;
            }
        }
        self.monitored_pids()
            .filter(|p| p.node() == origin)
            .filter_map(|p| {
                let gone: Vec<(N, usize)> = self
                    .which_groups_counts(p)
                    .into_iter()
                    .filter_map(|(name, have)| {
                        let want = listed.get(&(name.as_borrowed(), p)).copied().unwrap_or(0);
                        (want < have).then(|| (name, have - want))
                    })
                    .collect();
                (!gone.is_empty()).then(|| (p.clone(), gone))
            })
            .collect()
    }

    /// Puts `origin`'s copies in group `name` (handle `h`) in the order
    /// `listed` (that group's history from `origin`, newest first) lists
    /// them, moving as few copies as it takes: the longest run of `listed`'s
    /// oldest copies that ours hold in the same order stays in place, and
    /// the copies before it, which must have joined again since ours were
    /// placed, go to the newest end of the group, as their casts would have
    /// put them (a leave and a join notified for each). Then, among the
    /// other nodes' copies, which stay in their order, each of `origin`'s
    /// goes where `listed` puts it among those it lists too
    /// ([`place_among`]): a node that got `origin`'s casts as they were
    /// made holds them so, up to the casts' latency, where a poll brings
    /// all of them at once, after the other nodes' that came by cast
    /// meanwhile. Nothing is done unless the merge left us the same copies
    /// of `origin`'s pids as listed (a cap may have cut them).
    pub(super) fn follow_order(
        &mut self,
        name: &N::Borrowed,
        h: &N::Handle,
        origin: &str,
        listed: &[P],
        effects: &mut Vec<Effect<P, N>>,
    ) {
        let Some((_, group)) = self.groups.by_handle_mut(h) else {
            return;
        };
        let of_origin = |p: &&P| p.node() == origin;
        let in_order = listed
            .iter()
            .filter(of_origin)
            .eq(group.history().filter(of_origin));
        let mixed = group.history().any(|p| p.node() != origin);
        // (Mostly in order already, and alone: told without a copy.)
        if in_order && !mixed {
            return;
        }
        let theirs: Vec<&P> = listed.iter().filter(of_origin).collect();
        let ours: Vec<&P> = group.history().filter(of_origin).collect();
        if theirs.len() != ours.len() {
            return;
        }
        let same_copies = in_order || {
            let (mut a, mut b) = (theirs.clone(), ours.clone());
            a.sort_unstable();
            b.sort_unstable();
            a == b
        };
        if !same_copies {
            return;
        }
        // The longest suffix of `theirs` that `ours` holds as a subsequence
        // (matched greedily from the oldest end): `theirs[..moved]` is what
        // joined again.
        let mut kept = vec![false; ours.len()];
        let (mut moved, mut j) = (theirs.len(), ours.len());
        while moved > 0 && j > 0 {
            if theirs[moved - 1] == ours[j - 1] {
                kept[j - 1] = true;
                moved -= 1;
            }
            j -= 1;
        }
        let mut order: Vec<P> = theirs[..moved].iter().map(|p| (*p).clone()).collect();
        let mut left: Vec<P> = Vec::new();
        let mut k = 0;
        for p in group.history() {
            if p.node() != origin {
                order.push(p.clone());
            } else {
                if kept[k] {
                    order.push(p.clone());
                } else {
                    left.push(p.clone());
                }
                k += 1;
            }
        }
        let placed = mixed && place_among(&mut order, listed, origin);
        if in_order && !placed {
            return;
        }
        let mut rebuilt = GroupData::with_capacity(order.len());
        for p in order.iter().rev() {
            rebuilt.join(p.clone(), p.node() == self.node, 1);
        }
        *group = rebuilt;
        for p in &left {
            let reason = if self.is_local(p) {
                Reason::LeaveLocal
            } else {
                Reason::LeaveRemote
            };
            push_notify(self.notify, effects, name, p, &reason, 1);
        }
        // (`theirs` is of `listed`: its first `moved` are the copies that
        // joined again, wherever `order` now put them.)
        for &p in &theirs[..moved] {
            push_notify(
                self.notify,
                effects,
                name,
                p,
                &join_reason(self.is_local(p)),
                1,
            );
        }
    }

    /// [`Scope::accept`], answered from `memo` when `pid` is on the node
    /// of the pid asked last.
    fn accept_memo(&self, memo: &mut AcceptMemo<P>, pid: &P) -> Option<bool> {
        if let Some((last, answer)) = &memo.last {
            if last.same_node(pid) {
                return *answer;
            }
        }
        let answer = self.accept(pid);
        memo.last = Some((pid.clone(), answer));
        answer
    }

    /// `Some(is_local)` when a pid may be taken from an exchange.
    pub(super) fn accept(&self, pid: &P) -> Option<bool> {
        if self.is_local(pid) {
            Some(true)
        } else if self.is_listened(pid.node()) {
            Some(false)
        } else {
            None
        }
    }

    pub(super) fn merge_new(
        &mut self,
        name: &N::Borrowed,
        history: &[P],
        memo: &mut AcceptMemo<P>,
        effects: &mut Vec<Effect<P, N>>,
    ) {
        // The name (absent: `exchange` looked) is stored first, empty, for
        // its handle, which the pid index takes; the group is built aside
        // and stored whole.
        let h = self.groups.insert_absent(name, GroupData::new());
        let mut group = GroupData::with_capacity(history.len());
        for pid in history.iter().rev() {
            let Some(is_local) = self.accept_memo(memo, pid) else {
                continue;
            };
            if group.count_of(pid) >= self.max_copies
                || self.copies + group.len() >= self.max_total_copies
            {
                continue;
            }
            group.join(pid.clone(), is_local, 1);
            push_notify(self.notify, effects, name, pid, &join_reason(is_local), 1);
            index::index_add(&mut self.pids, pid, h.clone(), effects);
        }
        if group.is_empty() {
            self.groups.remove_by_handle(&h);
            return;
        }
        if group.len() < history.len() {
            group.shrink_to_fit();
        }
        self.copies += group.len();
        if let Some((_, stored)) = self.groups.by_handle_mut(&h) {
            *stored = group;
        }
    }

    pub(super) fn merge_conflict(
        &mut self,
        name: &N::Borrowed,
        h: N::Handle,
        history: &[P],
        memo: &mut AcceptMemo<P>,
        effects: &mut Vec<Effect<P, N>>,
    ) {
        let mut wanted: BTreeMap<&P, usize> = BTreeMap::new();
        for pid in history {
            *wanted.entry(pid).or_insert(0) += 1;
        }
        for (pid, count) in wanted {
            let Some(is_local) = self.accept_memo(memo, pid) else {
                continue;
            };
            let Some((_, group)) = self.groups.by_handle_mut(&h) else {
                return;
            };
            // No more copies than the room left in the scope (the pid's
            // own count looked up only when the room is short).
            let mut count = count.min(self.max_copies);
            let room = self.max_total_copies.saturating_sub(self.copies);
            if count > room {
                count = count.min(group.count_of(pid).saturating_add(room));
            }
            let delta = group.set_count_newest(pid, is_local, count);
            self.copies = self.copies.wrapping_add_signed(delta);
            if delta > 0 {
                push_notify(
                    self.notify,
                    effects,
                    name,
                    pid,
                    &join_reason(is_local),
                    delta.unsigned_abs(),
                );
                index::index_add(&mut self.pids, pid, h.clone(), effects);
            } else if delta < 0 {
                let reason = if is_local {
                    Reason::LeaveLocal
                } else {
                    Reason::LeaveRemote
                };
                push_notify(
                    self.notify,
                    effects,
                    name,
                    pid,
                    &reason,
                    delta.unsigned_abs(),
                );
            }
        }
    }

    // ------------------------------------------------------------------
    // Deaths

    /// A monitored pid (local or remote) died with `reason` (the `Info` of
    /// its `DOWN`): every copy is removed from every group (sorted by name),
    /// one leave notification per copy with [`Reason::Exit`]. Unknown pids
    /// are ignored. No demonitor is emitted.
    pub fn member_down(&mut self, pid: &P, reason: &str) -> Vec<Effect<P, N>> {
        let mut effects = Vec::new();
        self.leave_everything(pid, &Reason::Exit(reason.to_string()), false, &mut effects);
        effects
    }

    // ------------------------------------------------------------------
    // Internal updates
}

/// What [`Scope::accept`] said for the node of the pid asked last, in one
/// exchange. An exchange's pids are nearly all of one node and the answer
/// depends on the node alone, so most pids are answered by
/// [`PidInfo::same_node`] (two interned ids compared, for a
/// [`MemberPid`](crate::cpg::MemberPid)) instead of comparing the node
/// name with ours and looking it up among the connected nodes.
pub(super) struct AcceptMemo<P> {
    last: Option<(P, Option<bool>)>,
}

impl<P> AcceptMemo<P> {
    pub(super) fn new() -> Self {
        AcceptMemo { last: None }
    }
}

/// Moves `origin`'s copies in `order` (a group's history, newest first,
/// `origin`'s copies in the order `listed` lists them) among the other
/// nodes' copies, which keep their order, so that each of `origin`'s is
/// newer than every copy `listed` (`origin`'s view of the group, newest
/// first) lists before it and older than every one it lists after it, as
/// far as `order` holds those copies (the k-th copy of a pid from the
/// oldest end in `listed` is the k-th in `order`). A copy that meets
/// these bounds where it is stays there; one that does not goes just
/// inside the bound it missed (where the bounds cross, which a third node's
/// copies in other orders on the two nodes can make, it goes past the
/// copies listed as older).
/// Whether anything moved.
///
/// So a poll that brings `[P3, P2, P1]` from a node owning P1 and P3, when
/// P2 came by cast meanwhile (ours `[P3, P1, P2]` after the merge, which
/// adds copies at the newest end), leaves `[P3, P2, P1]`, as on every node
/// that got the three joins as they were made.
fn place_among<P: ScopePid>(order: &mut Vec<P>, listed: &[P], origin: &str) -> bool {
    use std::collections::HashMap;
    // The others, oldest first. Gap `g` (0 ..= others.len()) is the place
    // just older than `others[g]` (the newest end for the last).
    let others: Vec<&P> = order.iter().rev().filter(|p| p.node() != origin).collect();
    let mut at: HashMap<&P, Vec<usize>> = HashMap::with_capacity(others.len());
    for (i, p) in others.iter().enumerate() {
        at.entry(*p).or_default().push(i);
    }
    // Where each listed copy of another node is in `others`, oldest first.
    let mut seen: HashMap<&P, usize> = HashMap::new();
    let matched: Vec<Option<usize>> = listed
        .iter()
        .rev()
        .map(|p| {
            if p.node() == origin {
                return None;
            }
            let k = seen.entry(p).or_default();
            *k += 1;
            at.get(p).and_then(|v| v.get(*k - 1)).copied()
        })
        .collect();
    // The bounds of each of `origin`'s copies, oldest first: past every
    // matched copy listed as older, before every one listed as newer.
    let mut lo = Vec::new();
    let mut bound = 0;
    for (p, m) in listed.iter().rev().zip(&matched) {
        if p.node() == origin {
            lo.push(bound);
        } else if let Some(i) = m {
            bound = bound.max(i + 1);
        }
    }
    let mut hi = Vec::with_capacity(lo.len());
    let mut bound = others.len();
    for (p, m) in listed.iter().zip(matched.iter().rev()) {
        if p.node() == origin {
            hi.push(bound);
        } else if let Some(i) = m {
            bound = bound.min(*i);
        }
    }
    hi.reverse();
    // Where each is now, and where it goes (each sequence never decreases
    // from the oldest: so neither do the places, and `origin`'s copies keep
    // their order).
    let mut now = Vec::with_capacity(lo.len());
    let mut passed = 0;
    for p in order.iter().rev() {
        if p.node() == origin {
            now.push(passed);
        } else {
            passed += 1;
        }
    }
    if now.len() != lo.len() {
        return false;
    }
    let to: Vec<usize> = (0..now.len())
        .map(|k| lo[k].max(now[k].min(hi[k])))
        .collect();
    if to == now {
        return false;
    }
    let mine: Vec<&P> = order.iter().rev().filter(|p| p.node() == origin).collect();
    let mut placed = Vec::with_capacity(order.len());
    let mut k = 0;
    for g in 0..=others.len() {
        while k < mine.len() && to[k] == g {
            placed.push(mine[k].clone());
            k += 1;
        }
        if let Some(p) = others.get(g) {
            placed.push((*p).clone());
        }
    }
    // (Every copy placed: `to` never decreases and ends at most at the
    // newest end. Kept so whatever comes: a copy lost here would be a
    // member lost.)
    if placed.len() != order.len() {
        return false;
    }
    placed.reverse();
    *order = placed;
    true
}
