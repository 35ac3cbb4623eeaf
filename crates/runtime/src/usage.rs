//! How much each code is used: lookups counted by the runtime (the tiered policy promotes by
//! them), and the gas and frames each EVM tallies per block and hands over for the hot-code
//! service to weigh against the canonical chain.

use crate::CodeKey;
use revm::primitives::{hardfork::SpecId, Address, B256};
use rustc_hash::FxHashMap;
use std::sync::{
    atomic::{AtomicBool, Ordering},
    Mutex,
};

/// Lookups per code, counted under the tiered policy (its measure of heat). There an EVM looks
/// a code up when it first runs it (and again after the store changed, or now and then while it
/// holds baseline code), not per frame. Other policies do not count: under lookup-only, code not
/// compiled yet is looked up at every frame start, where a shared lock has no place.
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

/// What identifies the block an EVM executed, from its block environment: enough to tell a
/// canonical block's execution from that of another block at the same height (a side fork, a
/// payload built and dropped) when the chain's notifications arrive.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct BlockId {
    /// Block number.
    pub number: u64,
    /// Timestamp.
    pub timestamp: u64,
    /// Fee recipient.
    pub beneficiary: Address,
    /// PREVRANDAO (the header's mix hash) after the merge.
    pub prevrandao: Option<B256>,
    /// Gas limit.
    pub gas_limit: u64,
    /// Base fee.
    pub basefee: u64,
}

impl BlockId {
    /// The identity of the block a block environment describes.
    pub fn of(block: &impl revm::context_interface::Block) -> Self {
        Self {
            number: block.number().saturating_to(),
            timestamp: block.timestamp().saturating_to(),
            beneficiary: block.beneficiary(),
            prevrandao: block.prevrandao(),
            gas_limit: block.gas_limit(),
            basefee: block.basefee(),
        }
    }
}

/// What one code's frames used in one block.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CodeUsage {
    /// Gas spent by the code's own instructions (what its frames forwarded to calls and creates
    /// counts for the callee), compiled and interpreted alike.
    pub gas: u64,
    /// Frames that ran the code.
    pub frames: u64,
    /// The part of `gas` spent in compiled code.
    pub native_gas: u64,
}

/// One EVM's usage tally for one block, by code hash.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BlockUsage {
    /// The block it executed.
    pub block: BlockId,
    /// The spec it executed under.
    pub spec: SpecId,
    /// Per code hash.
    pub codes: Vec<(B256, CodeUsage)>,
}

/// Block usage handed over by EVMs, waiting for whoever turns it into heat (the hot-code
/// service). Nothing is kept unless collection is on.
#[derive(Debug, Default)]
pub struct UsageReports {
    collect: AtomicBool,
    reports: Mutex<Vec<BlockUsage>>,
}

impl UsageReports {
    /// Turns collection on or off. EVMs read it when they are created.
    pub fn set_collecting(&self, on: bool) {
        self.collect.store(on, Ordering::Relaxed);
    }

    /// Whether EVMs created now tally their usage.
    pub fn collecting(&self) -> bool {
        self.collect.load(Ordering::Relaxed)
    }

    /// Hands over one EVM's tally for one block (once per block, not per frame).
    pub fn report(&self, usage: BlockUsage) {
        if self.collecting() && !usage.codes.is_empty() {
            self.reports
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(usage);
        }
    }

    /// Everything handed over since the last call.
    pub fn take(&self) -> Vec<BlockUsage> {
        std::mem::take(&mut *self.reports.lock().unwrap_or_else(|e| e.into_inner()))
    }
}
