//! Block execution through alloy-evm's Ethereum block executor, with kiln's EVM factory where
//! reth plugs its `EvmFactory`: system calls (EIP-4788, and EIP-2935 once active), the
//! transactions, withdrawals, over revm's [`State`] with bundle updates.

#[cfg(doc)]
use crate::state::SnapshotDb;
use crate::{decode::EthBlock, error::Reject, spec::CancunSpec};
use alloy_consensus::{transaction::Recovered, ReceiptEnvelope};
use alloy_eips::eip7840::BlobParams;
use alloy_evm::{
    block::{BlockExecutionError, BlockExecutor, BlockExecutorFactory, BlockValidationError},
    eth::{receipt_builder::AlloyReceiptBuilder, EthBlockExecutionCtx, EthBlockExecutorFactory},
    EvmEnv, EvmFactory,
};
use alloy_primitives::Address;
use kiln_evm::KilnEvmFactory;
use kiln_runtime::BlockId;
use revm::{
    database::{states::bundle_state::BundleRetention, BundleState, State},
    database_interface::DatabaseRef,
    primitives::hardfork::SpecId,
};
use std::borrow::Cow;

/// alloy-evm's Ethereum block executor factory with kiln's EVM.
pub type KilnBlockExecutorFactory =
    EthBlockExecutorFactory<AlloyReceiptBuilder, CancunSpec, KilnEvmFactory>;

/// The block executor factory for the fixtures' chain, with EVMs from `evm_factory`.
pub fn executor_factory(evm_factory: KilnEvmFactory) -> KilnBlockExecutorFactory {
    executor_factory_for(CancunSpec::default(), evm_factory)
}

/// The block executor factory for the chain `spec` describes, with EVMs from `evm_factory`.
pub fn executor_factory_for(
    spec: CancunSpec,
    evm_factory: KilnEvmFactory,
) -> KilnBlockExecutorFactory {
    EthBlockExecutorFactory::new(AlloyReceiptBuilder::default(), spec, evm_factory)
}

/// What executing a block produced.
#[derive(Debug)]
pub struct BlockExecution {
    /// One receipt per transaction.
    pub receipts: Vec<ReceiptEnvelope>,
    /// Gas used by the block.
    pub gas_used: u64,
    /// Blob gas used by the block.
    pub blob_gas_used: u64,
    /// Every account and slot the block changed, and the contracts it created.
    pub bundle: BundleState,
    /// The environment the block ran in.
    pub env: EvmEnv,
}

impl BlockExecution {
    /// The spec the block ran under.
    pub fn spec(&self) -> SpecId {
        self.env.cfg_env.spec
    }

    /// The identity its EVM reported usage under.
    pub fn block_id(&self) -> BlockId {
        BlockId::of(&self.env.block_env)
    }

    /// What the hot-code service is told about the block `header` (hashing to `hash`) this
    /// execution ran: its identity, spec and the code it deployed.
    pub fn record(
        &self,
        header: &alloy_consensus::Header,
        hash: alloy_primitives::B256,
    ) -> kiln_exex::BlockRecord {
        kiln_exex::BlockRecord {
            number: header.number,
            hash,
            parent_hash: header.parent_hash,
            id: self.block_id(),
            spec: self.spec(),
            deployed: self
                .bundle
                .contracts
                .iter()
                .map(|(hash, code)| (*hash, code.original_bytes()))
                .collect(),
            usage: None,
        }
    }
}

/// The environment of `block` on the factory's chain.
pub fn block_env(factory: &KilnBlockExecutorFactory, block: &EthBlock) -> EvmEnv {
    EvmEnv::for_eth_block(
        &block.header,
        factory.spec(),
        factory.spec().chain_id(),
        Some(BlobParams::cancun()),
    )
}

/// Executes `block` (whose transactions were sent by `senders`) on its parent's state `db`: a
/// node's [`SnapshotDb`], or any other [`DatabaseRef`] (a witness's sparse state, say).
pub fn execute_block<DB: DatabaseRef + std::fmt::Debug>(
    factory: &KilnBlockExecutorFactory,
    block: &EthBlock,
    senders: &[Address],
    db: DB,
) -> Result<BlockExecution, Reject> {
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
        let evm = factory.evm_factory().create_evm(&mut state, env.clone());
        let mut executor = factory.create_executor(evm, ctx);
        executor
            .apply_pre_execution_changes()
            .map_err(|e| classify(None, e))?;
        for (index, (tx, sender)) in block.body.transactions.iter().zip(senders).enumerate() {
            executor
                .execute_transaction(Recovered::new_unchecked(tx, *sender))
                .map_err(|e| classify(Some(index), e))?;
        }
        // Dropping the EVM hands its usage tally to the runtime under the block's identity.
        let (_evm, result) = executor.finish().map_err(|e| classify(None, e))?;
        (result.receipts, result.gas_used, result.blob_gas_used)
    };
    state.merge_transitions(BundleRetention::PlainState);
    Ok(BlockExecution {
        receipts,
        gas_used,
        blob_gas_used,
        bundle: state.take_bundle(),
        env,
    })
}

/// A block executor error as a rejection, with the transaction index when there is one.
fn classify(index: Option<usize>, error: BlockExecutionError) -> Reject {
    let index_or_end = index.unwrap_or(usize::MAX);
    match error {
        BlockExecutionError::Validation(BlockValidationError::InvalidTx { error, .. }) => {
            match error.as_invalid_tx_err() {
                Some(invalid) => Reject::Transaction {
                    index: index_or_end,
                    error: invalid.clone(),
                },
                None => Reject::Execution(format!("transaction {index_or_end}: {error}")),
            }
        }
        BlockExecutionError::Validation(
            BlockValidationError::TransactionGasLimitMoreThanAvailableBlockGas {
                transaction_gas_limit,
                block_available_gas,
            },
        ) => Reject::BlockGasExceeded {
            index: index_or_end,
            gas_limit: transaction_gas_limit,
            available: block_available_gas,
        },
        other => match index {
            Some(i) => Reject::Execution(format!("transaction {i}: {other}")),
            None => Reject::Execution(other.to_string()),
        },
    }
}
