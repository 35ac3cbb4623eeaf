//! Every block of every Cancun `BlockchainTests/ValidBlocks` test: executed on its parent's
//! state, its witness made, then validated from the witness alone in interpreter and JIT mode.

use alloy_consensus::Header;
use alloy_primitives::{map::HashMap, B256};
use kiln_evm::KilnEvmFactory;
use kiln_node::{
    collect_files,
    decode::decode_and_recover,
    execute::executor_factory,
    fixture::TestFile,
    genesis::genesis_tree,
    state::{Codes, StateSnapshot},
};
use kiln_runtime::Runtime;
use kiln_stateless::{
    execute::execute, validate_all, witness, witness::cancun_config, ChainView, StatelessInput,
};
use kiln_testing::fixtures::fixtures_dir;
use std::{path::PathBuf, sync::Arc};

/// The ValidBlocks folder, or `None` (with the reason printed) when the fixtures are absent and
/// not required.
fn valid_blocks() -> Option<PathBuf> {
    let dir = fixtures_dir().join("BlockchainTests/ValidBlocks");
    if dir.is_dir() {
        return Some(dir);
    }
    if std::env::var("KILN_REQUIRE_FIXTURES").is_ok_and(|v| v == "1") {
        panic!(
            "fixtures not found at {} and KILN_REQUIRE_FIXTURES=1",
            dir.display()
        );
    }
    println!(
        "skipped: BlockchainTests fixtures not found at {} (set KILN_TESTS_DIR)",
        dir.display()
    );
    None
}

/// A test's blocks by hash, each with its post-state.
#[derive(Default)]
struct Blocks {
    blocks: HashMap<B256, (Header, Arc<StateSnapshot>)>,
    codes: Codes,
}

impl ChainView for Blocks {
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

impl Blocks {
    fn ancestors(&self, mut hash: B256) -> HashMap<u64, B256> {
        let mut hashes = HashMap::default();
        while let Some((header, _)) = self.blocks.get(&hash) {
            hashes.insert(header.number, hash);
            if hashes.len() >= 256 || header.number == 0 {
                break;
            }
            hash = header.parent_hash;
        }
        hashes
    }
}

#[test]
fn every_valid_block_round_trips() {
    let Some(dir) = valid_blocks() else {
        return;
    };
    let factory = executor_factory(KilnEvmFactory::new(Runtime::interpreter()));
    let mut inputs = Vec::new();
    let mut names = Vec::new();
    let mut tests = 0;
    for path in collect_files(&[dir]).expect("fixture files") {
        let text = std::fs::read_to_string(&path).expect("read");
        let file: TestFile = serde_json::from_str(&text).expect("parse");
        for (name, test) in &file {
            if test.network != "Cancun"
                || test.seal_engine.as_deref().unwrap_or("NoProof") != "NoProof"
            {
                continue;
            }
            tests += 1;
            let tree = genesis_tree(&factory, test).expect("genesis");
            let genesis = tree.head();
            let mut chain = Blocks {
                codes: tree.codes.clone(),
                ..Default::default()
            };
            chain.blocks.insert(
                genesis.hash,
                (genesis.header.clone(), genesis.state.clone()),
            );
            for fixture in test.blocks.iter().filter(|b| b.expect_exception.is_none()) {
                let decoded = decode_and_recover(&fixture.rlp).expect("a valid block decodes");
                let block = decoded.block;
                let senders = decoded.senders.expect("senders");
                let parent = block.header.parent_hash;
                let (_, parent_state) = chain.blocks.get(&parent).expect("known parent").clone();
                let ancestors = chain.ancestors(parent);
                let executed = execute(
                    &factory,
                    &block,
                    &senders,
                    parent_state.database(&chain.codes, &ancestors),
                )
                .unwrap_or_else(|e| panic!("{name}: {e}"));
                let (state, _) = parent_state.apply(&executed.bundle, &mut chain.codes);
                assert_eq!(state.state_root(), block.header.state_root, "{name}");
                let input = StatelessInput {
                    block: alloy_primitives::hex::decode(&fixture.rlp)
                        .expect("hex")
                        .into(),
                    witness: witness(&chain, &factory, &block)
                        .unwrap_or_else(|e| panic!("{name}: {e}")),
                    chain_config: cancun_config(1),
                };
                chain
                    .blocks
                    .insert(decoded.hash, (block.header, Arc::new(state)));
                inputs.push(input);
                names.push(format!(
                    "{name} block {}",
                    fixture.blocknumber.as_deref().unwrap_or("?")
                ));
            }
        }
    }
    assert!(tests > 100, "only {tests} Cancun tests");
    for runtime in [Runtime::interpreter(), Runtime::jit()] {
        let (results, _) = validate_all(&inputs, &runtime, 2);
        let failures: Vec<String> = results
            .iter()
            .zip(&names)
            .filter_map(|(r, name)| r.as_ref().err().map(|e| format!("{name}: {e}")))
            .collect();
        assert!(failures.is_empty(), "{failures:#?}");
        runtime.shutdown();
    }
    println!("{tests} tests, {} blocks round-tripped", inputs.len());
}
