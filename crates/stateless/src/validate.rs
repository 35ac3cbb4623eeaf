//! Stateless validation: a block checked from its witness alone. The ancestor headers must form
//! a chain ending at the block's parent; the parent state is the witness's trie nodes under the
//! parent's state root (each node keyed by its own hash, so a node that does not hash to what
//! its parent references is simply absent); codes are keyed by their hash too. The block is
//! executed with kiln's EVM, then gas used, receipts root, logs bloom and the post-state root
//! (the execution's changes applied to sparse tries of the witness's nodes) are checked
//! against its header. Whatever execution needs that the witness lacks is an error naming it.

use crate::{
    execute::execute,
    state::{post_state_root, StateError, WitnessDb},
    trie::NodeMap,
    StatelessInput,
};
use alloy_consensus::Header;
use alloy_primitives::{keccak256, map::HashMap, B256};
use kiln_evm::KilnEvmFactory;
use kiln_node::{
    decode::{decode_block, recover_senders},
    execute::executor_factory_for,
    spec::UnsupportedSchedule,
    validate::{self, ExecutionOutcome},
    CancunSpec, Reject,
};
use kiln_runtime::Runtime;
use revm::bytecode::Bytecode;
use std::{
    sync::Arc,
    time::{Duration, Instant},
};

/// Why a block is not valid by its witness, or the witness cannot show it.
#[derive(Debug, thiserror::Error)]
pub enum StatelessError {
    /// The block does not decode.
    #[error("block: {0}")]
    Block(Reject),
    /// The chain config's fork schedule is not one kiln runs.
    #[error("chain config: {0}")]
    ChainConfig(#[from] UnsupportedSchedule),
    /// A witness header is not an RLP header.
    #[error("witness header {index}: not an RLP header: {reason}")]
    BadHeader {
        /// Its position in the witness.
        index: usize,
        /// The decoding error.
        reason: String,
    },
    /// The witness has no header (it needs at least the parent's).
    #[error("the witness has no headers (the parent's header is needed)")]
    NoHeaders,
    /// Two witness headers next to each other by number are not parent and child.
    #[error("witness headers: block {number} ({hash}) is not the parent of block {child}, which names parent {expected}")]
    BrokenChain {
        /// The older header's number.
        number: u64,
        /// Its hash.
        hash: B256,
        /// The next header's number.
        child: u64,
        /// The parent hash the next header names.
        expected: B256,
    },
    /// The newest witness header is not the block's parent.
    #[error("witness headers: the newest, block {number} ({hash}), is not the block's parent {expected}")]
    NotParent {
        /// The newest header's number.
        number: u64,
        /// Its hash.
        hash: B256,
        /// The block's parent hash.
        expected: B256,
    },
    /// The block fails a consensus check before execution.
    #[error("block {number}: {reason}")]
    Consensus {
        /// The block's number.
        number: u64,
        /// The check that failed.
        reason: Reject,
    },
    /// The witness lacks what execution or the post-state root needs, or holds a bad node.
    #[error("block {number}: witness: {error}")]
    Witness {
        /// The block's number.
        number: u64,
        /// What is missing or wrong.
        error: StateError,
    },
    /// Execution failed (an invalid transaction, a failed system call).
    #[error("block {number}: execution: {reason}")]
    Execution {
        /// The block's number.
        number: u64,
        /// The executor's message.
        reason: String,
    },
    /// The header disagrees with what execution produced.
    #[error("block {number}: {reason}")]
    PostExecution {
        /// The block's number.
        number: u64,
        /// The field that differs.
        reason: Reject,
    },
}

/// A block validated statelessly.
#[derive(Clone, Copy, Debug)]
pub struct Validated {
    /// Its number.
    pub number: u64,
    /// Its hash.
    pub hash: B256,
    /// Gas it used.
    pub gas_used: u64,
    /// Its transactions.
    pub transactions: usize,
    /// Its post-state root (checked against the header's).
    pub state_root: B256,
    /// Time in the block executor.
    pub execution: Duration,
    /// Whole time: decoding, checks, execution, roots.
    pub total: Duration,
}

/// The witness's headers checked as a chain ending at `parent_hash`: the parent's header and
/// the hashes of the blocks BLOCKHASH may read.
pub fn ancestors(
    headers: &[alloy_primitives::Bytes],
    parent_hash: B256,
) -> Result<(Header, HashMap<u64, B256>), StatelessError> {
    let mut decoded = headers
        .iter()
        .enumerate()
        .map(|(index, rlp)| {
            alloy_rlp::decode_exact::<Header>(rlp)
                .map(|h| (h, keccak256(rlp)))
                .map_err(|e| StatelessError::BadHeader {
                    index,
                    reason: e.to_string(),
                })
        })
        .collect::<Result<Vec<_>, _>>()?;
    decoded.sort_by_key(|(h, _)| h.number);
    for pair in decoded.windows(2) {
        let ((older, hash), (newer, _)) = (&pair[0], &pair[1]);
        if newer.parent_hash != *hash || newer.number != older.number + 1 {
            return Err(StatelessError::BrokenChain {
                number: older.number,
                hash: *hash,
                child: newer.number,
                expected: newer.parent_hash,
            });
        }
    }
    let hashes = decoded.iter().map(|(h, hash)| (h.number, *hash)).collect();
    let (parent, hash) = decoded.pop().ok_or(StatelessError::NoHeaders)?;
    if hash != parent_hash {
        return Err(StatelessError::NotParent {
            number: parent.number,
            hash,
            expected: parent_hash,
        });
    }
    Ok((parent, hashes))
}

/// Validates `input`'s block from its witness alone, executing with `runtime`'s code.
pub fn validate(
    input: &StatelessInput,
    runtime: &Arc<Runtime>,
) -> Result<Validated, StatelessError> {
    let start = Instant::now();
    let block = decode_block(&input.block).map_err(StatelessError::Block)?;
    let header = &block.header;
    let number = header.number;
    let consensus = |reason| StatelessError::Consensus { number, reason };
    let spec = CancunSpec::from_genesis(&input.chain_config)?;
    let factory = executor_factory_for(spec, KilnEvmFactory::new(runtime.clone()));

    let (parent, block_hashes) = ancestors(&input.witness.headers, header.parent_hash)?;
    validate::header_standalone(header).map_err(consensus)?;
    validate::header_against_parent(header, &parent).map_err(consensus)?;
    validate::body(&block).map_err(consensus)?;
    validate::transactions_root(&block).map_err(consensus)?;
    let senders = recover_senders(&block).map_err(consensus)?;

    let nodes = NodeMap::new(&input.witness.state);
    let codes: HashMap<B256, Bytecode> = input
        .witness
        .codes
        .iter()
        .map(|code| (keccak256(code), Bytecode::new_raw(code.clone())))
        .collect();
    let db = WitnessDb::new(&nodes, parent.state_root, &codes, &block_hashes);
    let executed =
        execute(&factory, &block, &senders, &db).map_err(|reason| match db.take_error() {
            Some(error) => StatelessError::Witness { number, error },
            None => StatelessError::Execution { number, reason },
        })?;
    let post = |reason| StatelessError::PostExecution { number, reason };
    validate::post_execution(
        header,
        &ExecutionOutcome {
            receipts: &executed.receipts,
            gas_used: executed.gas_used,
            blob_gas_used: executed.blob_gas_used,
        },
    )
    .map_err(post)?;
    let state_root = post_state_root(&nodes, parent.state_root, &executed.bundle)
        .map_err(|error| StatelessError::Witness { number, error })?;
    validate::state_root(header, state_root).map_err(post)?;
    Ok(Validated {
        number,
        hash: header.hash_slow(),
        gas_used: executed.gas_used,
        transactions: block.body.transactions.len(),
        state_root,
        execution: executed.elapsed,
        total: start.elapsed(),
    })
}
