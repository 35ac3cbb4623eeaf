//! Genesis blocks: a test's (the header decoded from `genesisRLP`, its hash checked, and the
//! state of `pre`, its root checked against the header's), or a geth-format genesis file's
//! (header and state built from its fields and `alloc`).

use crate::{
    chain::{BlockTree, ImportedBlock},
    decode::EthBlock,
    error::GenesisError,
    execute::{block_env, KilnBlockExecutorFactory},
    fixture::BlockchainTest,
    state::{Codes, StateSnapshot},
};
use alloy_consensus::{constants::EMPTY_OMMER_ROOT_HASH, Header};
use alloy_eips::eip1559::INITIAL_BASE_FEE;
use alloy_genesis::Genesis;
use alloy_primitives::{B256, B64};
use alloy_rlp::Decodable;
use alloy_trie::EMPTY_ROOT_HASH;
use kiln_exex::BlockRecord;
use std::sync::Arc;

/// The block tree of a test, holding its genesis block and state.
pub fn genesis_tree(
    factory: &KilnBlockExecutorFactory,
    test: &BlockchainTest,
) -> Result<BlockTree, GenesisError> {
    let mut rlp = &test.genesis_rlp[..];
    let block = EthBlock::decode(&mut rlp)?;
    let hash = block.header.hash_slow();
    if hash != test.genesis_block_header.hash {
        return Err(GenesisError::Hash {
            computed: hash,
            expected: test.genesis_block_header.hash,
        });
    }
    let mut codes = Codes::default();
    let state = StateSnapshot::from_pre(&test.pre, &mut codes);
    // The plain state's root, as kiln-evm computes it for state tests; later roots come from
    // the cached storage roots.
    let root = kiln_evm::roots::state_root(&state.to_cache_state(&codes));
    debug_assert_eq!(root, state.state_root());
    if root != block.header.state_root {
        return Err(GenesisError::StateRoot {
            computed: root,
            expected: block.header.state_root,
        });
    }
    Ok(tree_from(factory, block, hash, state, codes))
}

/// The block tree of a geth-format genesis file (a Cancun chain: see
/// [`CancunSpec::from_genesis`](crate::spec::CancunSpec::from_genesis)), and the chain's spec.
pub fn geth_genesis_tree(
    factory: &KilnBlockExecutorFactory,
    genesis: &Genesis,
) -> Result<BlockTree, GenesisError> {
    let mut codes = Codes::default();
    let pre = genesis
        .alloc
        .iter()
        .map(|(address, account)| {
            let fixture = crate::fixture::FixtureAccount {
                balance: account.balance,
                nonce: alloy_primitives::U64::from(account.nonce.unwrap_or_default()),
                code: account.code.clone().unwrap_or_default(),
                storage: account
                    .storage
                    .iter()
                    .flatten()
                    .map(|(k, v)| ((*k).into(), (*v).into()))
                    .collect(),
            };
            (*address, fixture)
        })
        .collect();
    let state = StateSnapshot::from_pre(&pre, &mut codes);
    let header = geth_genesis_header(genesis, state.state_root());
    let block = EthBlock {
        header,
        body: Default::default(),
    };
    let hash = block.header.hash_slow();
    Ok(tree_from(factory, block, hash, state, codes))
}

/// The genesis header of a Cancun chain, as geth and reth build it from a genesis file.
pub fn geth_genesis_header(genesis: &Genesis, state_root: B256) -> Header {
    Header {
        parent_hash: genesis.parent_hash.unwrap_or_default(),
        ommers_hash: EMPTY_OMMER_ROOT_HASH,
        beneficiary: genesis.coinbase,
        state_root,
        transactions_root: EMPTY_ROOT_HASH,
        receipts_root: EMPTY_ROOT_HASH,
        withdrawals_root: Some(EMPTY_ROOT_HASH),
        logs_bloom: Default::default(),
        difficulty: genesis.difficulty,
        number: genesis.number.unwrap_or_default(),
        gas_limit: genesis.gas_limit,
        gas_used: 0,
        timestamp: genesis.timestamp,
        extra_data: genesis.extra_data.clone(),
        mix_hash: genesis.mix_hash,
        nonce: B64::from(genesis.nonce),
        base_fee_per_gas: Some(
            genesis
                .base_fee_per_gas
                .map_or(INITIAL_BASE_FEE, |fee| fee as u64),
        ),
        blob_gas_used: Some(genesis.blob_gas_used.unwrap_or_default()),
        excess_blob_gas: Some(genesis.excess_blob_gas.unwrap_or_default()),
        parent_beacon_block_root: Some(B256::ZERO),
        requests_hash: None,
        ..Default::default()
    }
}

/// A tree holding only the genesis `block` (hashing to `hash`) with its `state`.
fn tree_from(
    factory: &KilnBlockExecutorFactory,
    block: EthBlock,
    hash: B256,
    state: StateSnapshot,
    codes: Codes,
) -> BlockTree {
    let env = block_env(factory, &block);
    let record = BlockRecord {
        number: block.header.number,
        hash,
        parent_hash: block.header.parent_hash,
        id: kiln_runtime::BlockId::of(&env.block_env),
        spec: env.cfg_env.spec,
        deployed: Vec::new(),
        usage: None,
    };
    let genesis = ImportedBlock {
        header: block.header,
        hash,
        state: Arc::new(state),
        record,
    };
    BlockTree::new(genesis, codes)
}
