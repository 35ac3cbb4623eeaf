//! A block executed on any [`DatabaseRef`] by the node's block execution
//! ([`kiln_node::execute::execute_block`]): on a witness's sparse state, or on a recording
//! wrapper of a node's state.

use alloy_consensus::ReceiptEnvelope;
use alloy_primitives::Address;
use kiln_node::{
    decode::EthBlock,
    execute::{execute_block, KilnBlockExecutorFactory},
};
use revm::{database::BundleState, database_interface::DatabaseRef};
use std::time::Instant;

/// What executing a block produced.
#[derive(Debug)]
pub struct Executed {
    /// One receipt per transaction.
    pub receipts: Vec<ReceiptEnvelope>,
    /// Gas used by the block.
    pub gas_used: u64,
    /// Blob gas used by the block.
    pub blob_gas_used: u64,
    /// Every account and slot the block changed.
    pub bundle: BundleState,
    /// Time in the block executor.
    pub elapsed: std::time::Duration,
}

/// Executes `block` (sent by `senders`) on its parent's state `db` with the node's block
/// execution; an error is the executor's message, with the transaction index when there is one.
pub fn execute<DB: DatabaseRef + std::fmt::Debug>(
    factory: &KilnBlockExecutorFactory,
    block: &EthBlock,
    senders: &[Address],
    db: DB,
) -> Result<Executed, String> {
    let start = Instant::now();
    let done = execute_block(factory, block, senders, db).map_err(|e| e.to_string())?;
    Ok(Executed {
        receipts: done.receipts,
        gas_used: done.gas_used,
        blob_gas_used: done.blob_gas_used,
        bundle: done.bundle,
        elapsed: start.elapsed(),
    })
}
