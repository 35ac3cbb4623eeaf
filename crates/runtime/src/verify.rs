//! Verification before promotion, as dispatch sees it: a transaction that ran code waiting for
//! verification is recorded ([`Capture`]) and handed to the background ([`Captures`]), which
//! replays it on the interpreter and on the new code.

use crate::CodeKey;
use revm::{
    context::{BlockEnv, CfgEnv, TxEnv},
    context_interface::result::{ExecutionResult, HaltReason},
    primitives::hardfork::SpecId,
    state::EvmState,
};
use std::sync::{
    atomic::{AtomicUsize, Ordering},
    Mutex,
};

/// One transaction that ran code waiting for verification, as it executed: its environment, the
/// accounts and slots it loaded (their values when it started are the `original_info` and
/// `original_value` of `state`), and what it did.
#[derive(Clone, Debug)]
pub struct Capture {
    /// The block it ran in.
    pub block: BlockEnv,
    /// The chain configuration and spec.
    pub cfg: CfgEnv<SpecId>,
    /// The transaction.
    pub tx: TxEnv,
    /// The codes waiting for verification that its frames ran.
    pub candidates: Vec<CodeKey>,
    /// Its result.
    pub result: ExecutionResult<HaltReason>,
    /// Every account it loaded, after it ran.
    pub state: EvmState,
}

/// Captures a queue holds at most; more are dropped (verification only needs a few per code).
pub const MAX_QUEUED_CAPTURES: usize = 64;

/// Captures on their way from EVMs to the verifier. While no code waits for verification, EVMs
/// record nothing (one relaxed load per transaction).
#[derive(Debug, Default)]
pub struct Captures {
    waiting: AtomicUsize,
    queue: Mutex<Vec<Capture>>,
}

impl Captures {
    /// Whether any code waits for verification, and so whether EVMs should record transactions.
    #[inline]
    pub fn wanted(&self) -> bool {
        self.waiting.load(Ordering::Relaxed) > 0
    }

    /// Sets how many codes wait for verification.
    pub fn set_waiting(&self, codes: usize) {
        self.waiting.store(codes, Ordering::Relaxed);
    }

    /// Queues a capture; returns false (dropping it) when [`MAX_QUEUED_CAPTURES`] are queued.
    pub fn push(&self, capture: Capture) -> bool {
        let mut queue = self.queue.lock().unwrap_or_else(|e| e.into_inner());
        if queue.len() >= MAX_QUEUED_CAPTURES {
            return false;
        }
        queue.push(capture);
        true
    }

    /// Takes the queued captures.
    pub fn take(&self) -> Vec<Capture> {
        std::mem::take(&mut *self.queue.lock().unwrap_or_else(|e| e.into_inner()))
    }
}
