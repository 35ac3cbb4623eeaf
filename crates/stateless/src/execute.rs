//! A block executed on any [`DatabaseRef`] through alloy-evm's Ethereum block executor with
//! kiln's EVM: what `kiln_node::execute::execute_block` does on a node's state, here on a
//! witness's sparse state or on a recording wrapper of a node's state.

use alloy_consensus::{transaction::Recovered, ReceiptEnvelope};
use alloy_evm::{
    block::{BlockExecutor, BlockExecutorFactory},
    eth::EthBlockExecutionCtx,
    EvmFactory,
};
use alloy_primitives::Address;
use kiln_node::{
    decode::EthBlock,
    execute::{block_env, KilnBlockExecutorFactory},
};
use revm::{
    database::{states::bundle_state::BundleRetention, BundleState, State},
    database_interface::DatabaseRef,
};
use std::{borrow::Cow, time::Instant};

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

/// Executes `block` (sent by `senders`) on its parent's state `db`; an error is the block
/// executor's message, with the transaction index when there is one.
pub fn execute<DB: DatabaseRef + std::fmt::Debug>(
    factory: &KilnBlockExecutorFactory,
    block: &EthBlock,
    senders: &[Address],
    db: DB,
) -> Result<Executed, String> {
    let start = Instant::now();
    let env = block_env(factory, block);
    let mut state = State::builder()
        .with_database_ref(db)
        .with_bundle_update()
        .build();
    let header = &block.header;
    let ctx = EthBlockExecutionCtx {
        parent_hash: header.parent_hash,
        parent_beacon_block_root: header.parent_beacon_block_root,
        ommers: &block.body.ommers,
        withdrawals: block
            .body
            .withdrawals
            .as_ref()
            .map(|w| Cow::Borrowed(w.as_slice())),
        extra_data: header.extra_data.clone(),
        tx_count_hint: Some(block.body.transactions.len()),
        slot_number: None,
    };
    let (receipts, gas_used, blob_gas_used) = {
        let evm = factory.evm_factory().create_evm(&mut state, env);
        let mut executor = factory.create_executor(evm, ctx);
        executor
            .apply_pre_execution_changes()
            .map_err(|e| format!("pre-execution: {e}"))?;
        for (index, (tx, sender)) in block.body.transactions.iter().zip(senders).enumerate() {
            executor
                .execute_transaction(Recovered::new_unchecked(tx, *sender))
                .map_err(|e| format!("transaction {index}: {e}"))?;
        }
        let (_evm, result) = executor
            .finish()
            .map_err(|e| format!("post-execution: {e}"))?;
        (result.receipts, result.gas_used, result.blob_gas_used)
    };
    state.merge_transitions(BundleRetention::PlainState);
    Ok(Executed {
        receipts,
        gas_used,
        blob_gas_used,
        bundle: state.take_bundle(),
        elapsed: start.elapsed(),
    })
}
