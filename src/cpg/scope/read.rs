//! Reads: cpg_data's `get_*` functions and the inspection helpers.

use super::*;

impl<P: ScopePid, N: GroupKey> Scope<P, N> {
    /// The storage's lookup ([`GroupStore::find`]): for the trie, a
    /// wildcard in a query finds nothing, as `trie:find_match2` exits with
    /// badarg, which `cpg_data` turns into no_such_group.
    pub(super) fn find(&self, name: &N::Borrowed) -> ReadResult<'_, &GroupData<P>, N> {
        self.groups
            .find(name)
            .ok_or_else(|| ReadError::NoSuchGroup(name.to_owned()))
    }

    pub(super) fn members(
        &self,
        name: &N::Borrowed,
        part: Part,
        exclude: Option<&P>,
    ) -> ReadResult<'_, Members<P>, N> {
        let (key, group) = self.find(name)?;
        let members = group.part_members(part, exclude);
        if members.is_empty() {
            Err(ReadError::NoSuchGroup(name.to_owned()))
        } else {
            Ok((key, members))
        }
    }

    pub(super) fn pick(
        &self,
        name: &N::Borrowed,
        parts: &[Part],
        exclude: Option<&P>,
        choose: &mut dyn FnMut(usize) -> usize,
    ) -> ReadResult<'_, P, N> {
        let (key, group) = self.find(name)?;
        for &part in parts {
            let pid = match exclude {
                None => {
                    let n = group.count(part);
                    // one copy: taken without a draw (`draw`)
                    (n > 0).then(|| group.nth(part, draw(n, choose))).flatten()
                }
                Some(x) => pick_excluding(group, part, x, choose),
            };
            if let Some(pid) = pid {
                return Ok((key, pid.clone()));
            }
        }
        Err(ReadError::NoProcess(name.to_owned()))
    }

    pub(super) fn edge(
        &self,
        name: &N::Borrowed,
        part: Part,
        exclude: Option<&P>,
        oldest: bool,
    ) -> ReadResult<'_, P, N> {
        let (key, group) = self.find(name)?;
        let pid = if oldest {
            group.oldest(part, exclude)
        } else {
            group.newest(part, exclude)
        };
        pid.map(|p| (key, p.clone()))
            .ok_or_else(|| ReadError::NoProcess(name.to_owned()))
    }

    /// `cpg:get_members`: every copy (history order, newest first, with
    /// duplicates) except `exclude`; an empty result is `NoSuchGroup`.
    ///
    /// Nothing is copied unless `exclude` is a member: the group's own
    /// immutable snapshot ([`GroupData::shared_members`]: a one-copy
    /// group's pid inline, a larger group's list shared until it changes),
    /// as BEAM hands out its list. With `exclude` in the group, the other
    /// copies are copied into a list of their own.
    pub fn get_members(
        &self,
        name: &N::Borrowed,
        exclude: Option<&P>,
    ) -> ReadResult<'_, Members<P>, N> {
        if exclude.is_some() {
            return self.members(name, Part::All, exclude);
        }
        // The usual read, without the exclusion's checks.
        let (key, group) = self.find(name)?;
        if group.is_empty() {
            return Err(ReadError::NoSuchGroup(name.to_owned()));
        }
        Ok((key, group.shared_members()))
    }

    /// `cpg:get_members(Name)` borrowed from the state (newest first): no
    /// copy, no allocation, no count bumped; for reads under
    /// [`CpgScope::read`](crate::cpg::CpgScope::read) that use the pids in
    /// place ([`GroupData::members_slice`]).
    pub fn get_members_ref(&self, name: &N::Borrowed) -> ReadResult<'_, &[P], N> {
        let (key, group) = self.find(name)?;
        if group.is_empty() {
            return Err(ReadError::NoSuchGroup(name.to_owned()));
        }
        Ok((key, group.members_slice()))
    }

    /// `cpg:get_local_members`: the copies of pids on this node, newest
    /// first; an empty result is `NoSuchGroup`. A group whose copies are
    /// all local gives its shared snapshot, as
    /// [`get_members`](Self::get_members) does (nothing copied); a mixed
    /// group, the local copies in a list of their own
    /// ([`GroupData::part_members`]).
    pub fn get_local_members(
        &self,
        name: &N::Borrowed,
        exclude: Option<&P>,
    ) -> ReadResult<'_, Members<P>, N> {
        self.members(name, Part::Local, exclude)
    }

    /// `cpg:get_remote_members`: the copies of pids on other nodes, newest
    /// first; an empty result is `NoSuchGroup`. Shared or copied as
    /// [`get_local_members`](Self::get_local_members) says.
    pub fn get_remote_members(
        &self,
        name: &N::Borrowed,
        exclude: Option<&P>,
    ) -> ReadResult<'_, Members<P>, N> {
        self.members(name, Part::Remote, exclude)
    }

    /// `cpg:get_closest_pid`: a random local copy, else a random remote one.
    /// `choose(n)` returns an index in `0..n` (taken modulo `n`) into the
    /// part's copies, `exclude`'s included, as `cpg_data` draws (an
    /// excluded copy drawn gives the next that is not); it is not called
    /// when the part holds one copy.
    pub fn get_closest_pid(
        &self,
        name: &N::Borrowed,
        exclude: Option<&P>,
        choose: &mut impl FnMut(usize) -> usize,
    ) -> ReadResult<'_, P, N> {
        self.pick(name, &[Part::Local, Part::Remote], exclude, choose)
    }

    /// `cpg:get_furthest_pid`: a random remote copy, else a random local one.
    pub fn get_furthest_pid(
        &self,
        name: &N::Borrowed,
        exclude: Option<&P>,
        choose: &mut impl FnMut(usize) -> usize,
    ) -> ReadResult<'_, P, N> {
        self.pick(name, &[Part::Remote, Part::Local], exclude, choose)
    }

    /// `cpg:get_random_pid`: a random copy (weighted by join count).
    pub fn get_random_pid(
        &self,
        name: &N::Borrowed,
        exclude: Option<&P>,
        choose: &mut impl FnMut(usize) -> usize,
    ) -> ReadResult<'_, P, N> {
        self.pick(name, &[Part::All], exclude, choose)
    }

    /// `cpg:get_local_pid`: a random local copy, else `NoProcess`.
    pub fn get_local_pid(
        &self,
        name: &N::Borrowed,
        exclude: Option<&P>,
        choose: &mut impl FnMut(usize) -> usize,
    ) -> ReadResult<'_, P, N> {
        self.pick(name, &[Part::Local], exclude, choose)
    }

    /// `cpg:get_remote_pid`: a random remote copy, else `NoProcess`.
    pub fn get_remote_pid(
        &self,
        name: &N::Borrowed,
        exclude: Option<&P>,
        choose: &mut impl FnMut(usize) -> usize,
    ) -> ReadResult<'_, P, N> {
        self.pick(name, &[Part::Remote], exclude, choose)
    }

    /// `cpg:get_oldest_pid`: the oldest copy that is not `exclude`.
    pub fn get_oldest_pid(&self, name: &N::Borrowed, exclude: Option<&P>) -> ReadResult<'_, P, N> {
        self.edge(name, Part::All, exclude, true)
    }

    /// `cpg:get_local_oldest_pid`: the oldest local copy.
    pub fn get_local_oldest_pid(
        &self,
        name: &N::Borrowed,
        exclude: Option<&P>,
    ) -> ReadResult<'_, P, N> {
        self.edge(name, Part::Local, exclude, true)
    }

    /// `cpg:get_remote_oldest_pid`: the oldest remote copy.
    pub fn get_remote_oldest_pid(
        &self,
        name: &N::Borrowed,
        exclude: Option<&P>,
    ) -> ReadResult<'_, P, N> {
        self.edge(name, Part::Remote, exclude, true)
    }

    /// `cpg:get_newest_pid`: the newest copy that is not `exclude`.
    pub fn get_newest_pid(&self, name: &N::Borrowed, exclude: Option<&P>) -> ReadResult<'_, P, N> {
        self.edge(name, Part::All, exclude, false)
    }

    /// `cpg:get_local_newest_pid`: the newest local copy.
    pub fn get_local_newest_pid(
        &self,
        name: &N::Borrowed,
        exclude: Option<&P>,
    ) -> ReadResult<'_, P, N> {
        self.edge(name, Part::Local, exclude, false)
    }

    /// `cpg:get_remote_newest_pid`: the newest remote copy.
    pub fn get_remote_newest_pid(
        &self,
        name: &N::Borrowed,
        exclude: Option<&P>,
    ) -> ReadResult<'_, P, N> {
        self.edge(name, Part::Remote, exclude, false)
    }

    /// `cpg:which_groups/0`: every group name (patterns included), in name
    /// order.
    pub fn which_groups(&self) -> Vec<N> {
        self.group_names().map(ToOwned::to_owned).collect()
    }

    /// [`which_groups`](Self::which_groups), borrowed: no name is copied.
    pub fn group_names(&self) -> impl Iterator<Item = &N::Borrowed> + '_ {
        self.groups.iter().map(|(k, _)| k)
    }

    /// `cpg:which_groups(Pid)`: the groups of `pid`, in name order; `[]` if
    /// unknown.
    pub fn which_groups_of(&self, pid: &P) -> Vec<N> {
        let names = self.group_names_of(pid);
        names.into_iter().map(ToOwned::to_owned).collect()
    }

    /// [`which_groups_of`](Self::which_groups_of), borrowed: no name is
    /// copied.
    pub fn group_names_of(&self, pid: &P) -> Vec<&N::Borrowed> {
        match self.pids.get(pid) {
            Some(entry) => self.names_of(entry.names.iter()),
            None => Vec::new(),
        }
    }

    /// `cpg:which_groups_counts(Pid)`: `(name, copies)` per group of `pid`,
    /// sorted by name; `[]` if unknown.
    pub fn which_groups_counts(&self, pid: &P) -> Vec<(N, usize)> {
        let counts = self.group_counts_of(pid);
        counts.into_iter().map(|(n, c)| (n.to_owned(), c)).collect()
    }

    /// [`which_groups_counts`](Self::which_groups_counts), borrowed: no
    /// name is copied.
    pub fn group_counts_of(&self, pid: &P) -> Vec<(&N::Borrowed, usize)> {
        let names = self.group_names_of(pid);
        names
            .into_iter()
            .filter_map(|name| {
                let count = self.groups.get(name).map_or(0, |g| g.count_of(pid));
                (count > 0).then_some((name, count))
            })
            .collect()
    }

    /// `cpg:join_count(Name, Pid)`: copies of `pid` in the group stored
    /// under exactly `name` (no pattern matching); 0 if none.
    pub fn join_count(&self, name: &N::Borrowed, pid: &P) -> usize {
        self.groups.get(name).map_or(0, |g| g.count_of(pid))
    }

    /// The group stored under exactly `name`.
    pub fn group(&self, name: &N::Borrowed) -> Option<&GroupData<P>> {
        self.groups.get(name)
    }

    /// Writes into `out` the scope's state as genuine cpg hands it out (its
    /// `cpg_data` call, `cpg_data:get_groups/1`), in the external format
    /// (no 131 byte; read it with [`Encoded`](crate::term::Encoded)): the
    /// group storage as its BEAM module holds it
    /// ([`GroupStore::genuine_write`]: `{trie, Trie}`), each group a
    /// `#cpg_data{}` record `{cpg_data, LocalCount, Local, RemoteCount,
    /// Remote, History}` of this node's view, every list newest first and
    /// each pid written by `pid`. Any BEAM node with cpg loaded reads it
    /// with `cpg_data`'s functions (`cpg_data:get_members(Name, Groups)`).
    /// `None` for a map storage; refused past `bounds`. Nothing is written
    /// unless it is `Some(Ok)`.
    pub fn genuine_state(
        &self,
        bounds: crate::cpg::trie::GenuineBounds,
        out: &mut Vec<u8>,
        pid: impl Fn(&mut Vec<u8>, &P),
    ) -> Option<Result<(), crate::cpg::trie::GenuineTooBig>> {
        use crate::term::write;
        let pids = |out: &mut Vec<u8>, it: &mut dyn Iterator<Item = &P>| {
            write::list_of(out, it, &pid);
        };
        self.groups.genuine_write(bounds, out, |out, g| {
            write::tuple(out, 6);
            write::atom(out, "cpg_data");
            write::uint(out, g.local_count() as u64);
            pids(out, &mut g.local());
            write::uint(out, g.remote_count() as u64);
            pids(out, &mut g.remote());
            pids(out, &mut g.history());
        })
    }

    /// A `#cpg_data{}` copy of the group stored under exactly `name`.
    pub fn group_data(&self, name: &N::Borrowed) -> Option<CpgData<P>> {
        self.groups.get(name).map(GroupData::to_data)
    }

    /// Number of groups.
    pub fn group_count(&self) -> usize {
        self.groups.len()
    }

    /// Totals over every group: (memberships, local memberships). A pid
    /// joined twice counts twice, as in `get_members`.
    pub fn member_totals(&self) -> (usize, usize) {
        self.groups.iter().fold((0, 0), |(all, local), (_, g)| {
            (all + g.len(), local + g.local_count())
        })
    }

    /// Number of distinct pids in at least one group.
    pub fn pid_count(&self) -> usize {
        self.pids.len()
    }

    /// True when the scope monitors `pid` (it is in at least one group).
    pub fn is_monitored(&self, pid: &P) -> bool {
        self.pids.contains_key(pid)
    }

    /// The monitored pids, in no particular order.
    pub fn monitored_pids(&self) -> impl Iterator<Item = &P> + '_ {
        self.pids.keys()
    }

    /// The handle of `pid`'s monitor recorded by
    /// [`set_monitor`](Self::set_monitor).
    pub fn monitor_of(&self, pid: &P) -> Option<MonitorTag> {
        self.pids.get(pid)?.monitor
    }
}

/// An index in `0..n` (`n > 0`) from `choose`, which is not called when
/// there is one.
fn draw(n: usize, choose: &mut dyn FnMut(usize) -> usize) -> usize {
    if n == 1 {
        0
    } else {
        choose(n) % n
    }
}

/// A copy of `part` that is not `exclude`, drawn as `cpg_data`'s `pick_i`
/// draws it, so that each pid comes with genuine's odds: the draw is over
/// every copy, `exclude`'s too; one of `exclude`'s copies drawn gives the
/// next copy after it that is not `exclude` (newest first), or, when none
/// is after it, the one `pick_i` takes from those before it. (An even draw
/// over the other copies once gave different odds: with the copies
/// `[X, P2, P1, P1, P1]` and `X` excluded, genuine returns `P2` 2 times in
/// 5, an even draw 1 in 4.)
fn pick_excluding<'g, P: ScopePid>(
    group: &'g GroupData<P>,
    part: Part,
    exclude: &P,
    choose: &mut dyn FnMut(usize) -> usize,
) -> Option<&'g P> {
    let left = group.count_excluding(part, Some(exclude));
    if left == 0 {
        return None;
    }
    let n = group.count(part);
    let i = draw(n, choose);
    let (before, excluded) = group.excluded_before(part, i, exclude);
    // The copies before the `i`-th that are not `exclude`: the next one
    // that is not is the `others`-th of them.
    let others = i - before;
    let j = if excluded && others == left {
        // None after it: `lists:nth((Random rem Length) + 1, Filtered)`,
        // `Filtered` being those before it, last first.
        left - 1 - (i + 1) % left
    } else {
        others
    };
    group.nth_excluding(part, j, Some(exclude))
}
