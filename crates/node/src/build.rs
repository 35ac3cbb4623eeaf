//! Building blocks, as a block producer does: transactions executed on the parent's state, then
//! the header completed with what execution determined (gas, roots, bloom) and sealed. kiln's
//! demo chain and the fork tests are made with it.

use crate::{
    chain::{BlockTree, ImportedBlock},
    decode::{recover_senders, EthBlock},
    error::Reject,
    execute::{execute_block, KilnBlockExecutorFactory},
};
use alloy_consensus::{
    constants::EMPTY_OMMER_ROOT_HASH,
    proofs::{calculate_receipt_root, calculate_transaction_root},
    BlockBody, Header, TxEnvelope, TxReceipt,
};
use alloy_eips::{eip1559::BaseFeeParams, eip7840::BlobParams};
use alloy_primitives::{Address, Bloom, Bytes, B256, B64, U256};
use alloy_trie::EMPTY_ROOT_HASH;
use std::sync::Arc;

/// What a block producer chooses for a new block.
#[derive(Clone, Debug)]
pub struct Payload {
    /// The parent (a block of the tree).
    pub parent: B256,
    /// Timestamp; must be after the parent's.
    pub timestamp: u64,
    /// Fee recipient.
    pub beneficiary: Address,
    /// PREVRANDAO.
    pub prevrandao: B256,
    /// The parent beacon block root (EIP-4788).
    pub parent_beacon_block_root: B256,
    /// Extra data (up to 32 bytes).
    pub extra_data: Bytes,
    /// The transactions, in order.
    pub transactions: Vec<TxEnvelope>,
}

/// A block built on a tree: the block, its hash and its RLP.
#[derive(Clone, Debug)]
pub struct Built {
    /// The sealed block.
    pub block: EthBlock,
    /// Its hash.
    pub hash: B256,
    /// Its RLP encoding.
    pub rlp: Bytes,
}

/// Builds `payload` on its parent in `tree` with `factory`'s EVM, adds the block to the tree
/// (the head does not move) and returns it. A transaction that cannot be included (bad nonce,
/// funds, signature) is an error: the producer chose it.
pub fn build_block(
    factory: &KilnBlockExecutorFactory,
    tree: &mut BlockTree,
    payload: Payload,
) -> Result<Built, Reject> {
    let parent = tree
        .get(&payload.parent)
        .ok_or(Reject::UnknownParent(payload.parent))?;
    let parent_header = &parent.header;
    let base_fee = parent_header
        .next_block_base_fee(BaseFeeParams::ethereum())
        .unwrap_or(alloy_eips::eip1559::INITIAL_BASE_FEE);
    let excess_blob_gas = parent_header
        .next_block_excess_blob_gas(BlobParams::cancun())
        .unwrap_or_default();
    let mut header = Header {
        parent_hash: payload.parent,
        ommers_hash: EMPTY_OMMER_ROOT_HASH,
        beneficiary: payload.beneficiary,
        state_root: B256::ZERO,
        transactions_root: calculate_transaction_root(&payload.transactions),
        receipts_root: EMPTY_ROOT_HASH,
        withdrawals_root: Some(EMPTY_ROOT_HASH),
        logs_bloom: Bloom::ZERO,
        difficulty: U256::ZERO,
        number: parent_header.number + 1,
        gas_limit: parent_header.gas_limit,
        gas_used: 0,
        timestamp: payload.timestamp,
        extra_data: payload.extra_data,
        mix_hash: payload.prevrandao,
        nonce: B64::ZERO,
        base_fee_per_gas: Some(base_fee),
        blob_gas_used: Some(0),
        excess_blob_gas: Some(excess_blob_gas),
        parent_beacon_block_root: Some(payload.parent_beacon_block_root),
        requests_hash: None,
        ..Default::default()
    };
    let mut block = EthBlock {
        header: header.clone(),
        body: BlockBody {
            transactions: payload.transactions,
            ommers: Vec::new(),
            withdrawals: Some(Default::default()),
        },
    };
    let senders = recover_senders(&block)?;
    let parent_state = parent.state.clone();
    let ancestors = tree.ancestor_hashes(payload.parent);
    let executed = execute_block(
        factory,
        &block,
        &senders,
        parent_state.database(&tree.codes, &ancestors),
    )?;
    let (state, _) = parent_state.apply(&executed.bundle, &mut tree.codes);
    header.gas_used = executed.gas_used;
    header.blob_gas_used = Some(executed.blob_gas_used);
    header.receipts_root = calculate_receipt_root(&executed.receipts);
    header.logs_bloom = executed
        .receipts
        .iter()
        .fold(Bloom::ZERO, |acc, r| acc | r.bloom());
    header.state_root = state.state_root();
    block.header = header;
    let hash = block.header.hash_slow();
    let rlp = Bytes::from(alloy_rlp::encode(&block));
    let record = executed.record(&block.header, hash);
    tree.insert(ImportedBlock {
        header: block.header.clone(),
        hash,
        state: Arc::new(state),
        record,
    });
    Ok(Built { block, hash, rlp })
}
