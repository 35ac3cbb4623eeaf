//! Witnesses of the Ethereum `BlockchainTests` fixtures: each valid block of a Cancun test
//! executed on its parent's state (side branches included), then its witness made.

use crate::{
    execute::execute,
    witness::{cancun_config, witness, ChainView, WitnessError},
    StatelessInput,
};
use alloy_consensus::Header;
use alloy_primitives::{hex, map::HashMap, B256};
use kiln_evm::KilnEvmFactory;
use kiln_node::{
    decode::decode_and_recover,
    execute::executor_factory,
    fixture::BlockchainTest,
    genesis::genesis_tree,
    state::{Codes, StateSnapshot},
};
use kiln_runtime::Runtime;
use std::sync::Arc;

/// A test's blocks by hash, each with its post-state.
#[derive(Debug, Default)]
struct TestBlocks {
    blocks: HashMap<B256, (Header, Arc<StateSnapshot>)>,
    codes: Codes,
}

impl ChainView for TestBlocks {
    fn header(&self, hash: &B256) -> Option<&Header> {
        self.blocks.get(hash).map(|(h, _)| h)
    }

    fn state(&self, hash: &B256) -> Option<&StateSnapshot> {
        self.blocks.get(hash).map(|(_, s)| s.as_ref())
    }

    fn codes(&self) -> &Codes {
        &self.codes
    }
}

impl TestBlocks {
    fn ancestors(&self, mut hash: B256) -> HashMap<u64, B256> {
        let mut hashes = HashMap::default();
        while let Some((header, _)) = self.blocks.get(&hash) {
            hashes.insert(header.number, hash);
            if hashes.len() as u64 >= kiln_node::chain::BLOCKHASH_WINDOW || header.number == 0 {
                break;
            }
            hash = header.parent_hash;
        }
        hashes
    }
}

/// Whether kiln makes witnesses of this test: a Cancun test without a proof-of-work seal.
pub fn supported(test: &BlockchainTest) -> bool {
    test.network == "Cancun" && test.seal_engine.as_deref().unwrap_or("NoProof") == "NoProof"
}

/// The stateless inputs of every block of `test` that the fixture does not expect to be
/// rejected, in the fixture's order (a [`supported`] test).
pub fn test_inputs(test: &BlockchainTest) -> Result<Vec<StatelessInput>, WitnessError> {
    let factory = executor_factory(KilnEvmFactory::new(Runtime::interpreter()));
    let bad = |number: u64, reason: String| WitnessError::Block { number, reason };
    let tree = genesis_tree(&factory, test).map_err(|e| bad(0, e.to_string()))?;
    let genesis = tree.head();
    let mut chain = TestBlocks {
        codes: tree.codes.clone(),
        ..Default::default()
    };
    chain.blocks.insert(
        genesis.hash,
        (genesis.header.clone(), genesis.state.clone()),
    );
    let mut inputs = Vec::new();
    for fixture in test.blocks.iter().filter(|b| b.expect_exception.is_none()) {
        let decoded = decode_and_recover(&fixture.rlp).map_err(|e| bad(0, e.to_string()))?;
        let block = decoded.block;
        let number = block.header.number;
        let senders = decoded.senders.map_err(|e| bad(number, e.to_string()))?;
        let parent = block.header.parent_hash;
        let (_, parent_state) = chain
            .blocks
            .get(&parent)
            .cloned()
            .ok_or(WitnessError::UnknownParent { number, parent })?;
        let ancestors = chain.ancestors(parent);
        let executed = execute(
            &factory,
            &block,
            &senders,
            parent_state.database(&chain.codes, &ancestors),
        )
        .map_err(|e| bad(number, e))?;
        let (state, _) = parent_state.apply(&executed.bundle, &mut chain.codes);
        if state.state_root() != block.header.state_root {
            return Err(bad(
                number,
                format!(
                    "state root {} after execution, the header says {}",
                    state.state_root(),
                    block.header.state_root
                ),
            ));
        }
        let input = StatelessInput {
            block: hex::decode(&fixture.rlp)
                .map_err(|e| bad(number, e.to_string()))?
                .into(),
            witness: witness(&chain, &factory, &block)?,
            chain_config: cancun_config(kiln_node::spec::CHAIN_ID),
        };
        chain
            .blocks
            .insert(decoded.hash, (block.header, Arc::new(state)));
        inputs.push(input);
    }
    Ok(inputs)
}

/// Why a fixture file's witnesses could not be made.
#[derive(Debug, thiserror::Error)]
pub enum FixtureError {
    /// The file cannot be read.
    #[error("{path}: {cause}")]
    Io {
        /// The file.
        path: std::path::PathBuf,
        /// The cause.
        cause: std::io::Error,
    },
    /// The file is not a BlockchainTests file.
    #[error("{path}: {cause}")]
    Json {
        /// The file.
        path: std::path::PathBuf,
        /// The cause.
        cause: serde_json::Error,
    },
    /// A test's witness could not be made.
    #[error("{test}: {error}")]
    Witness {
        /// The test.
        test: String,
        /// Why.
        error: WitnessError,
    },
}

/// The inputs of every [`supported`] test of a `BlockchainTests` file, by test name.
pub fn file_inputs(
    path: &std::path::Path,
) -> Result<Vec<(String, Vec<StatelessInput>)>, FixtureError> {
    let text = std::fs::read_to_string(path).map_err(|cause| FixtureError::Io {
        path: path.to_owned(),
        cause,
    })?;
    let file: kiln_node::fixture::TestFile =
        serde_json::from_str(&text).map_err(|cause| FixtureError::Json {
            path: path.to_owned(),
            cause,
        })?;
    file.iter()
        .filter(|(_, test)| supported(test))
        .map(|(name, test)| {
            test_inputs(test)
                .map(|inputs| (name.clone(), inputs))
                .map_err(|error| FixtureError::Witness {
                    test: name.clone(),
                    error,
                })
        })
        .collect()
}
