//! The registry proper: compiled code by (code hash, spec), and an epoch that EVMs watch.

use crate::{policy::profiled::Profile, CompiledCode};
use revm::primitives::{hardfork::SpecId, B256};
use rustc_hash::FxHashMap;
use std::sync::{
    atomic::{AtomicU64, Ordering},
    Arc, RwLock, RwLockWriteGuard,
};

/// What identifies compiled code: the code's keccak256 and the spec it was compiled for.
pub type CodeKey = (B256, SpecId);

/// What the registry knows about one [`CodeKey`].
#[derive(Clone, Debug)]
pub enum Entry {
    /// Compiled and ready.
    Ready(Arc<CompiledCode>),
    /// Compilation failed or was refused; the code stays on the interpreter.
    Failed(Arc<str>),
    /// Not compiled yet: its frames run on the interpreter and record which instructions run,
    /// for a profile-guided compilation ([`crate::CompilePolicy::AfterProfile`]).
    Profiling(Arc<Profile>),
    /// New code waiting for verification: frames run the code it replaces (if any, else the
    /// interpreter), and the transactions that run them are recorded for replay
    /// ([`crate::Capture`]).
    Verifying(Option<Arc<CompiledCode>>),
}

/// Compiled code by [`CodeKey`]. Readers take a read lock for one hash-map probe; nobody holds
/// the lock while compiling.
#[derive(Debug, Default)]
pub struct Store {
    // Code hashes are already uniformly random, so Fx's cheap mixing is enough; SipHash cost
    // more than the rest of a small contract's lookup.
    map: RwLock<FxHashMap<CodeKey, Entry>>,
    /// Bumped whenever an entry changes in a way an EVM that remembers its lookups must see (an
    /// insert, a removal, a promotion, a reprofile): EVMs forget what they looked up when it
    /// moves, between transactions.
    epoch: AtomicU64,
}

impl Store {
    /// The entry for `key`, if any.
    pub fn get(&self, key: CodeKey) -> Option<Entry> {
        self.map
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&key)
            .cloned()
    }

    /// Inserts (or replaces) an entry and moves the epoch.
    pub fn insert(&self, key: CodeKey, entry: Entry) {
        self.write().insert(key, entry);
        self.bump_epoch();
    }

    /// Inserts `entry` unless `key` has one already, and returns the entry `key` has now. The
    /// epoch does not move: nobody can have remembered a lookup of a key that had no entry.
    pub fn insert_if_absent(&self, key: CodeKey, entry: Entry) -> Entry {
        self.write().entry(key).or_insert(entry).clone()
    }

    /// Removes an entry; running frames keep their `Arc` alive.
    pub fn remove(&self, key: CodeKey) -> Option<Entry> {
        let removed = self.write().remove(&key);
        if removed.is_some() {
            self.bump_epoch();
        }
        removed
    }

    /// The store's change counter: an EVM that looked functions up at one epoch looks them up
    /// again once it has moved.
    pub fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Acquire)
    }

    /// Moves the epoch after a change made through [`Self::write`].
    pub fn bump_epoch(&self) {
        self.epoch.fetch_add(1, Ordering::Release);
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.map.read().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// Whether the store is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The map, for a compare-and-replace that must see and change an entry atomically; the
    /// caller moves the epoch with [`Self::bump_epoch`] if EVMs must see the change.
    pub fn write(&self) -> RwLockWriteGuard<'_, FxHashMap<CodeKey, Entry>> {
        self.map.write().unwrap_or_else(|e| e.into_inner())
    }
}
