//! A test's genesis: the header decoded from `genesisRLP` (its hash checked), and the state of
//! `pre` (its root checked against the header's).

use crate::{
    chain::{BlockTree, ImportedBlock},
    decode::EthBlock,
    error::GenesisError,
    execute::{block_env, KilnBlockExecutorFactory},
    fixture::BlockchainTest,
    state::{Codes, StateSnapshot},
};
use alloy_rlp::Decodable;
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
    Ok(BlockTree::new(genesis, codes))
}
