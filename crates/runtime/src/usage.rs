//! How often each code has been looked up: the runtime's own measure of heat, which the tiered
//! policy promotes by and anyone may read.

use crate::CodeKey;
use rustc_hash::FxHashMap;
use std::sync::Mutex;

/// Lookups per code. An EVM looks a code up when it first runs it (and again after the store
/// changed, or now and then while it holds baseline code), not per frame, so one lock per lookup
/// stays off the per-frame path.
#[derive(Debug, Default)]
pub struct Usage {
    lookups: Mutex<FxHashMap<CodeKey, u64>>,
}

impl Usage {
    /// Counts one lookup of `key` and returns its lookups so far.
    pub fn record_lookup(&self, key: CodeKey) -> u64 {
        let mut lookups = self.lookups.lock().unwrap_or_else(|e| e.into_inner());
        let n = lookups.entry(key).or_default();
        *n += 1;
        *n
    }

    /// Lookups of `key` so far.
    pub fn lookups(&self, key: CodeKey) -> u64 {
        self.lookups
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&key)
            .copied()
            .unwrap_or(0)
    }

    /// Every code looked up, with its lookups, most looked-up first.
    pub fn ranked(&self) -> Vec<(CodeKey, u64)> {
        let mut all: Vec<_> = self
            .lookups
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|(k, n)| (*k, *n))
            .collect();
        all.sort_by_key(|(_, n)| std::cmp::Reverse(*n));
        all
    }
}
