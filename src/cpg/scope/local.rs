//! Local writes: joins and leaves of this node's pids, checked, applied
//! and cast to every listened node (cpg's owner-side `handle_call`s).

use super::*;

impl<P: ScopePid, N: GroupKey> Scope<P, N> {
    /// Refuses adding `counts` copies of `pid` (names may repeat) if any
    /// group would then hold more than `max_copies` copies of it, if the
    /// request adds more than `max_copies` copies in all, or if the scope
    /// would then hold more than `max_total_copies`. Costs nothing
    /// proportional to the counts.
    pub(super) fn check_copies(&self, counts: &[(N, usize)], pid: &P) -> Result<(), WriteError<N>> {
        let over = |name: &N, count: usize| WriteError::TooManyCopies {
            name: name.clone(),
            count,
            max: self.max_copies,
        };
        let mut total: usize = 0;
        // The copies each name adds so far (the names of one request may
        // repeat): by a hash map, as a request may name many groups (a
        // scan per name cost 15 s for one cast of 80,000).
        let mut added: crate::util::FastHashMap<&N, usize> = Default::default();
        for (name, count) in counts {
            total = total.saturating_add(*count);
            if total > self.max_copies {
                return Err(over(name, *count));
            }
            let have = if counts.len() == 1 {
                *count
            } else {
                let a = added.entry(name).or_insert(0);
                *a += count;
                *a
            };
            let existing = self
                .groups
                .get(name.as_borrowed())
                .map_or(0, |g| g.count_of(pid));
            if existing.saturating_add(have) > self.max_copies {
                return Err(over(name, *count));
            }
        }
        if self.copies.saturating_add(total) > self.max_total_copies {
            return Err(WriteError::ScopeFull {
                count: total,
                max: self.max_total_copies,
            });
        }
        Ok(())
    }

    /// Joins local `pid` to `name` once (`cpg:join/2`).
    pub fn join(&mut self, name: &N::Borrowed, pid: P) -> Result<Vec<Effect<P, N>>, WriteError<N>> {
        self.check_local(&pid)?;
        check_name(name)?;
        self.check_copies(&[(name.to_owned(), 1)], &pid)?;
        let mut effects = Vec::new();
        self.add_copies(name, &pid, 1, &mut effects);
        self.cast_peers(
            || Request::Join {
                name: name.to_owned(),
                pid,
            },
            &mut effects,
        );
        Ok(effects)
    }

    /// Joins local `pid` `count` times to each name, left to right
    /// (`cpg:join_counts/2`). Every count must be > 0; `[]` does nothing.
    pub fn join_counts(
        &mut self,
        counts: &[(N, usize)],
        pid: P,
    ) -> Result<Vec<Effect<P, N>>, WriteError<N>> {
        self.check_local(&pid)?;
        if counts.is_empty() {
            return Ok(Vec::new());
        }
        for (name, count) in counts {
            check_name(name.as_borrowed())?;
            check_count(name.as_borrowed(), *count)?;
        }
        self.check_copies(counts, &pid)?;
        let mut effects = Vec::new();
        for (name, count) in counts {
            self.add_copies(name.as_borrowed(), &pid, *count, &mut effects);
        }
        self.cast_peers(
            || Request::JoinCounts {
                counts: counts.to_vec(),
                pid,
            },
            &mut effects,
        );
        Ok(effects)
    }

    /// Removes the oldest copy of local `pid` from `name` (`cpg:leave/2`).
    /// Refused unless `pid` is a member of exactly that group name.
    pub fn leave(
        &mut self,
        name: &N::Borrowed,
        pid: &P,
    ) -> Result<Vec<Effect<P, N>>, WriteError<N>> {
        self.check_local(pid)?;
        if !self.is_member(name, pid) {
            return Err(WriteError::NotMember);
        }
        let mut effects = Vec::new();
        self.leave_group(name, pid, 1, &Reason::LeaveLocal, &mut effects);
        self.cast_peers(
            || Request::Leave {
                name: name.to_owned(),
                pid: pid.clone(),
            },
            &mut effects,
        );
        Ok(effects)
    }

    /// Removes up to `count` oldest copies of local `pid` per name
    /// (`cpg:leave_counts/2`). Every name must be one of the pid's groups and
    /// every count > 0; `[]` does nothing.
    pub fn leave_counts(
        &mut self,
        counts: &[(N, usize)],
        pid: &P,
    ) -> Result<Vec<Effect<P, N>>, WriteError<N>> {
        self.check_local(pid)?;
        if counts.is_empty() {
            return Ok(Vec::new());
        }
        for (name, count) in counts {
            if !self.is_member(name.as_borrowed(), pid) {
                return Err(WriteError::NotMember);
            }
            check_count(name.as_borrowed(), *count)?;
        }
        // Each name once, in the order it first came (a hash map finds it
        // again: a request may name many groups).
        let mut merged: Vec<(N, usize)> = Vec::with_capacity(counts.len());
        let mut at: crate::util::FastHashMap<&N, usize> = Default::default();
        for (name, count) in counts {
            match at.get(name) {
                Some(&i) => merged[i].1 = merged[i].1.saturating_add(*count),
                None => {
                    at.insert(name, merged.len());
                    merged.push((name.clone(), *count));
                }
            }
        }
        let mut effects = Vec::new();
        for (name, count) in &merged {
            self.leave_group(
                name.as_borrowed(),
                pid,
                *count,
                &Reason::LeaveLocal,
                &mut effects,
            );
        }
        self.cast_peers(
            || Request::LeaveCounts {
                counts: merged,
                pid: pid.clone(),
            },
            &mut effects,
        );
        Ok(effects)
    }

    /// Removes every copy of local `pid` from every group (`cpg:leave/1`).
    /// Refused when the pid is in no group.
    pub fn leave_all(&mut self, pid: &P) -> Result<Vec<Effect<P, N>>, WriteError<N>> {
        self.check_local(pid)?;
        if !self.pids.contains_key(pid) {
            return Err(WriteError::NotMember);
        }
        let mut effects = Vec::new();
        self.leave_everything(pid, &Reason::LeaveLocal, true, &mut effects);
        self.cast_peers(|| Request::LeaveAll { pid: pid.clone() }, &mut effects);
        Ok(effects)
    }

    pub(super) fn check_local(&self, pid: &P) -> Result<(), WriteError<N>> {
        if self.is_local(pid) {
            Ok(())
        } else {
            Err(WriteError::NotLocal)
        }
    }

    pub(super) fn is_member(&self, name: &N::Borrowed, pid: &P) -> bool {
        self.groups.get(name).is_some_and(|g| g.count_of(pid) > 0)
    }

    /// Casts the request built by `make` to every listened node (cpg's
    /// abcast to hidden and visible nodes).
    pub(super) fn cast_peers(
        &self,
        make: impl FnOnce() -> Request<P, N>,
        effects: &mut Vec<Effect<P, N>>,
    ) {
        let mut peers = self.listened_nodes().peekable();
        if peers.peek().is_none() {
            return;
        }
        let request = make();
        for node in peers {
            effects.push(Effect::Cast {
                node: node.to_string(),
                request: request.clone(),
            });
        }
    }

    // ------------------------------------------------------------------
    // Requests from other nodes
}
