//! The registry of local processes: pids, refs, registered names and the
//! process table (each process's mailbox, links and monitors). Changes when
//! what a local process is changes.

use super::Inner;
use crate::process::{MailboxTx, Process, SendError, Signal};
use crate::term::{Pid, PidOrAtom, Reference};
use crate::util::{shrink_sparse, shrink_sparse_set, FastHashMap, SeqKeyMap, SeqKeySet};
use parking_lot::{RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering;

pub(super) struct ProcEntry {
    pub(super) tx: MailboxTx,
    pub(super) name: Option<String>,
    pub(super) links: HashSet<Pid>,
    /// Monitors others hold on this process: ref -> (watcher, how it was
    /// named: the pid or the registered name).
    pub(super) monitors: FastHashMap<Reference, (Pid, PidOrAtom)>,
    /// Monitors this process holds. Lets exit and demonitor find them
    /// without scanning every monitor on the node.
    pub(super) held: Held,
    /// The process traps exits ([`Process::trap_exit`]): an exit signal
    /// is a message to it, not its end.
    pub(super) trap_exit: bool,
    /// The process is among the node's watchers
    /// ([`Process::monitor_nodes`]).
    pub(super) watches_nodes: bool,
}

/// The monitors a process holds, by the [`RefKey`] of their ref (every
/// such ref is one this node made): on a process of this node, with its
/// id, or on one of another node (then in `Inner::mons_out`). In two
/// tables: the process that holds many monitors holds them on other
/// nodes' processes (a cpg scope: one per remote member), 8 bytes each in
/// a set where a map with room for a target id took 16.
#[derive(Default)]
pub(super) struct Held {
    local: SeqKeyMap<RefKey, u32>,
    remote: SeqKeySet<RefKey>,
}

impl Held {
    /// Holds monitor `key` on `target` (`None`: on another node).
    pub(super) fn insert(&mut self, key: RefKey, target: Option<u32>) {
        match target {
            Some(t) => {
                self.local.insert(key, t);
            }
            None => {
                self.remote.insert(key);
            }
        }
    }

    /// Holds the monitors `keys`, all on other nodes.
    pub(super) fn extend_remote(&mut self, keys: impl ExactSizeIterator<Item = RefKey>) {
        self.remote.reserve(keys.len());
        self.remote.extend(keys);
    }

    /// Drops monitor `key`: `Some(target)` if it was held (`target` as
    /// given to [`insert`](Self::insert)).
    pub(super) fn remove(&mut self, key: RefKey) -> Option<Option<u32>> {
        if self.remote.remove(&key) {
            shrink_sparse_set(&mut self.remote);
            return Some(None);
        }
        let t = self.local.remove(&key)?;
        shrink_sparse(&mut self.local);
        Some(Some(t))
    }

    /// Every monitor held, with its target as [`insert`](Self::insert)
    /// took it.
    pub(super) fn into_iter(self) -> impl Iterator<Item = (RefKey, Option<u32>)> {
        let local = self.local.into_iter().map(|(k, t)| (k, Some(t)));
        local.chain(self.remote.into_iter().map(|k| (k, None)))
    }
}

/// A ref this node made, by the counter it was made from: the
/// bookkeeping of monitors (`ProcEntry::held`, `Inner::mons_out`) is keyed
/// by it, which hashes and stores 8 bytes where a [`Reference`] is a node
/// name and a vector, each allocated.
pub(super) type RefKey = u64;

/// Shards of the process table: a process lives in shard `id % SHARDS`, so
/// sends to different processes, and a spawn or an exit beside them, do not
/// contend on one lock.
const SHARDS: usize = 16;

/// The local processes by pid id, sharded ([`SHARDS`]).
pub(super) struct ProcTable {
    shards: [RwLock<HashMap<u32, ProcEntry>>; SHARDS],
}

impl Default for ProcTable {
    fn default() -> Self {
        ProcTable {
            shards: std::array::from_fn(|_| RwLock::default()),
        }
    }
}

impl ProcTable {
    fn shard(&self, id: u32) -> &RwLock<HashMap<u32, ProcEntry>> {
        &self.shards[id as usize % SHARDS]
    }

    /// The shard holding process `id`, to read.
    pub(super) fn read(&self, id: u32) -> RwLockReadGuard<'_, HashMap<u32, ProcEntry>> {
        self.shard(id).read()
    }

    /// The shard holding process `id`, to change.
    pub(super) fn write(&self, id: u32) -> RwLockWriteGuard<'_, HashMap<u32, ProcEntry>> {
        self.shard(id).write()
    }

    /// Takes process `id` out of the table.
    pub(super) fn remove(&self, id: u32) -> Option<ProcEntry> {
        let mut shard = self.write(id);
        let e = shard.remove(&id);
        shrink_sparse(&mut shard);
        e
    }

    /// How many processes there are.
    pub(super) fn len(&self) -> usize {
        self.shards.iter().map(|s| s.read().len()).sum()
    }

    /// The ids of every process.
    pub(super) fn ids(&self) -> Vec<u32> {
        let mut ids = Vec::new();
        for s in &self.shards {
            ids.extend(s.read().keys().copied());
        }
        ids
    }

    /// Calls `f` on every process, one shard read-locked at a time.
    pub(super) fn for_each(&self, mut f: impl FnMut(u32, &ProcEntry)) {
        for s in &self.shards {
            for (&id, e) in s.read().iter() {
                f(id, e);
            }
        }
    }

    /// Calls `f` on every process, one shard locked at a time.
    pub(super) fn for_each_mut(&self, mut f: impl FnMut(u32, &mut ProcEntry)) {
        for s in &self.shards {
            for (&id, e) in s.write().iter_mut() {
                f(id, e);
            }
        }
    }
}

impl Inner {
    pub(super) fn pid(&self, id: u32) -> Pid {
        Pid {
            node: self.atom.clone(),
            id,
            serial: 0,
            creation: self.creation,
        }
    }

    pub(super) fn is_local(&self, pid: &Pid) -> bool {
        pid.node.name == self.name && pid.creation == self.creation
    }

    /// The process-table id of `pid` if it may name one of this node's
    /// processes: a pid of this node ([`is_local`](Self::is_local)) with
    /// serial 0, the only serial this node gives. A pid of this node with
    /// another serial names none (on BEAM, a process long gone): a message
    /// to it is dropped, a monitor of it fires at once with `noproc`, a
    /// link to it exits with `noproc`, as BEAM does. (A forged one named
    /// the live process of its number: a peer's join of it made a member
    /// that no monitor saw die.)
    pub(super) fn local_id(&self, pid: &Pid) -> Option<u32> {
        (self.is_local(pid) && pid.serial == 0).then_some(pid.id)
    }

    /// Whether `pid` is a live process of this node.
    pub(super) fn is_alive(&self, pid: &Pid) -> bool {
        self.local_id(pid)
            .is_some_and(|id| self.procs.read(id).contains_key(&id))
    }

    /// `f` on the table entry of the process `pid` names, if it lives.
    pub(super) fn with_proc<T>(&self, pid: &Pid, f: impl FnOnce(&mut ProcEntry) -> T) -> Option<T> {
        let id = self.local_id(pid)?;
        self.procs.write(id).get_mut(&id).map(f)
    }

    pub(super) fn new_process(&self) -> Process {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = crate::process::mailbox();
        self.procs.write(id).insert(
            id,
            ProcEntry {
                tx,
                name: None,
                links: HashSet::new(),
                monitors: FastHashMap::default(),
                held: Held::default(),
                trap_exit: false,
                watches_nodes: false,
            },
        );
        if self.stopping.load(Ordering::Acquire) {
            // A process made after (or while) the node shut down ends at
            // once, as those it ended did.
            self.end_now(self.pid(id), crate::term::atom("shutdown"));
        }
        Process::new(self.pid(id), self.arc(), rx)
    }

    /// Registers `name` for the local `pid`; `raw`: its large messages
    /// from other nodes come as [`Signal::Raw`] (the name joins
    /// `raw_names` under the names lock, as `exited` removes it).
    pub(super) fn register_as(&self, pid: &Pid, name: &str, raw: bool) -> Result<(), SendError> {
        let mut names = self.names.write();
        if names.contains_key(name) {
            return Err(SendError::NameTaken(name.to_string()));
        }
        match self.procs.write(pid.id).get_mut(&pid.id) {
            Some(e) => e.name = Some(name.to_string()),
            None => return Err(SendError::NoProc),
        }
        names.insert(name.to_string(), pid.clone());
        if raw {
            self.raw_names.insert(name);
        }
        Ok(())
    }

    /// Tells every process that watches nodes ([`Process::monitor_nodes`])
    /// the signal `s` makes. Called where a connection is reported up
    /// (before it reads anything) and down (after it delivered all it
    /// read), under the order lock of peers.
    pub(super) fn tell_node_watchers(&self, s: impl Fn() -> Signal) {
        let watchers = self.node_watchers.lock();
        for &id in watchers.iter() {
            if let Some(e) = self.procs.read(id).get(&id) {
                let _ = e.tx.send(s());
            }
        }
    }

    pub(super) fn deliver(&self, to: &Pid, s: Signal) -> bool {
        let Some(id) = self.local_id(to) else {
            return false;
        };
        match self.procs.read(id).get(&id) {
            Some(e) => e.tx.send(s).is_ok(),
            None => false,
        }
    }

    pub(super) fn local_target(&self, item: &PidOrAtom) -> Option<Pid> {
        match item {
            PidOrAtom::Pid(p) if self.local_id(p).is_some() => Some(p.clone()),
            PidOrAtom::Pid(_) => None,
            PidOrAtom::Atom(a) => self.names.read().get(&a.name).cloned(),
        }
    }

    pub(super) fn make_ref_inner(&self) -> Reference {
        self.ref_of(self.next_ref.fetch_add(1, Ordering::Relaxed))
    }

    /// A new ref of this node, as its [`RefKey`] (the ref itself is
    /// [`Inner::ref_of`] the key).
    pub(super) fn make_ref_key(&self) -> RefKey {
        self.next_ref.fetch_add(1, Ordering::Relaxed)
    }

    /// The key of a ref this node made ([`Inner::make_ref_inner`]), `None`
    /// for any other ref (another node's, or an older incarnation's).
    pub(super) fn ref_key(&self, r: &Reference) -> Option<RefKey> {
        match r.id[..] {
            [lo, hi, check]
                if lo <= 0x3_ffff
                    && check == self.creation ^ 0x5a5a
                    && r.creation == self.creation
                    && r.node.name == self.name =>
            {
                Some(u64::from(lo) | u64::from(hi) << 18)
            }
            _ => None,
        }
    }

    /// The ref of key `n` ([`Inner::ref_key`] of it is `Some(n)`).
    pub(super) fn ref_of(&self, n: RefKey) -> Reference {
        Reference {
            node: self.atom.clone(),
            id: self.ref_words(n).to_vec(),
            creation: self.creation,
        }
    }

    /// The words of the ref of key `n` (its `id`).
    pub(super) fn ref_words(&self, n: RefKey) -> [u32; 3] {
        [
            (n & 0x3_ffff) as u32,
            (n >> 18) as u32,
            self.creation ^ 0x5a5a,
        ]
    }
}
