//! Execution witnesses made from an imported chain, in the shape of `debug_executionWitness`:
//! the block is executed on its parent's state through a recording database, then every trie
//! node a stateless validator will walk (the proof of each account and slot read or written,
//! and the siblings a deletion collapses into) is taken from the parent's tries, with the codes
//! the block runs and the ancestor headers its BLOCKHASH reads reach.

use crate::{
    execute::execute,
    state::{self, post_state_root, RecordingDb},
    trie::{NodeMap, Recorder, SparseTrie},
    StatelessInput,
};
use alloy_consensus::Header;
use alloy_genesis::ChainConfig;
use alloy_primitives::{keccak256, map::HashMap, Address, Bytes, B256, U256};
use alloy_rpc_types_debug::ExecutionWitness;
use alloy_trie::{TrieAccount, EMPTY_ROOT_HASH};
use kiln_node::{
    chain::{BlockTree, BLOCKHASH_WINDOW},
    decode::{decode_block, recover_senders, EthBlock},
    execute::KilnBlockExecutorFactory,
    source::ChainSource,
    state::{AccountState, Codes, StateSnapshot},
};
use rayon::prelude::*;
use revm::primitives::KECCAK_EMPTY;
use std::collections::BTreeSet;

/// Why a witness could not be made.
#[derive(Debug, thiserror::Error)]
pub enum WitnessError {
    /// The block's parent is not in the chain.
    #[error("block {number}: unknown parent {parent}")]
    UnknownParent {
        /// The block's number.
        number: u64,
        /// Its parent's hash.
        parent: B256,
    },
    /// The block is not a valid block on its parent.
    #[error("block {number}: {reason}")]
    Block {
        /// The block's number.
        number: u64,
        /// Why.
        reason: String,
    },
    /// The parent's state does not hash to its header's root (a bug, not an input error).
    #[error("block {number}: the parent's state hashes to {computed}, its header says {expected}")]
    ParentRoot {
        /// The block's number.
        number: u64,
        /// The root of the parent's state.
        computed: B256,
        /// The parent header's state root.
        expected: B256,
    },
    /// The witness's own walk failed (a bug, not an input error).
    #[error("block {number}: {source}")]
    State {
        /// The block's number.
        number: u64,
        /// The failure.
        source: state::StateError,
    },
    /// No block with this number on the canonical chain.
    #[error("block {0} is not on the canonical chain (or is the genesis block)")]
    NotCanonical(u64),
}

/// The blocks, headers and states a witness is made from.
pub trait ChainView {
    /// The header of the block with this hash.
    fn header(&self, hash: &B256) -> Option<&Header>;
    /// The state after the block with this hash.
    fn state(&self, hash: &B256) -> Option<&StateSnapshot>;
    /// Every code of the chain's states, by hash.
    fn codes(&self) -> &Codes;
}

impl ChainView for BlockTree {
    fn header(&self, hash: &B256) -> Option<&Header> {
        self.get(hash).map(|b| &b.header)
    }

    fn state(&self, hash: &B256) -> Option<&StateSnapshot> {
        self.get(hash).map(|b| b.state.as_ref())
    }

    fn codes(&self) -> &Codes {
        &self.codes
    }
}

fn trie_account(account: &AccountState) -> TrieAccount {
    TrieAccount {
        nonce: account.info.nonce,
        balance: account.info.balance,
        storage_root: account.storage_root,
        code_hash: account.info.code_hash,
    }
}

/// Block `block`'s witness: it must be a valid block whose parent is in `chain`.
pub fn witness(
    chain: &impl ChainView,
    factory: &KilnBlockExecutorFactory,
    block: &EthBlock,
) -> Result<ExecutionWitness, WitnessError> {
    let number = block.header.number;
    let parent_hash = block.header.parent_hash;
    let unknown = || WitnessError::UnknownParent {
        number,
        parent: parent_hash,
    };
    let parent = chain.header(&parent_hash).ok_or_else(unknown)?;
    let parent_state = chain.state(&parent_hash).ok_or_else(unknown)?;
    let bad = |reason: String| WitnessError::Block { number, reason };

    // Ancestors BLOCKHASH may read, by number, and their headers.
    let mut ancestors: Vec<(B256, &Header)> = Vec::new();
    let mut cursor = Some((parent_hash, parent));
    while let Some((hash, header)) = cursor {
        ancestors.push((hash, header));
        if ancestors.len() as u64 >= BLOCKHASH_WINDOW || header.number == 0 {
            break;
        }
        cursor = chain
            .header(&header.parent_hash)
            .map(|h| (header.parent_hash, h));
    }
    let hashes: HashMap<u64, B256> = ancestors.iter().map(|(h, hd)| (hd.number, *h)).collect();

    let senders = recover_senders(block).map_err(|e| bad(e.to_string()))?;
    let db = RecordingDb::new(parent_state.database(chain.codes(), &hashes));
    let executed = execute(factory, block, &senders, &db).map_err(bad)?;
    let reads = db.reads();

    // Every node of the parent's account trie, and of the storage tries of the accounts whose
    // storage the block reads or writes.
    let mut full = SparseTrie::empty();
    let none = NodeMap::default();
    let state_error = |source| WitnessError::State { number, source };
    for (address, account) in &parent_state.accounts {
        full.update(
            &none,
            keccak256(address).as_slice(),
            alloy_rlp::encode(trie_account(account)),
        )
        .map_err(|source| {
            state_error(state::StateError::Account {
                address: *address,
                source: Box::new(source),
            })
        })?;
    }
    let (mut nodes, root) = full.nodes();
    if root != parent.state_root {
        return Err(WitnessError::ParentRoot {
            number,
            computed: root,
            expected: parent.state_root,
        });
    }
    let storage_touched: BTreeSet<Address> = reads
        .slots
        .iter()
        .map(|(a, _)| *a)
        .chain(
            executed
                .bundle
                .state
                .iter()
                .filter(|(_, a)| !a.storage.is_empty())
                .map(|(a, _)| *a),
        )
        .collect();
    for address in &storage_touched {
        let Some(account) = parent_state.accounts.get(address) else {
            continue;
        };
        if account.storage_root == EMPTY_ROOT_HASH {
            continue;
        }
        let mut storage = SparseTrie::empty();
        for (slot, value) in account.storage.iter() {
            storage
                .update(
                    &none,
                    keccak256(slot.to_be_bytes::<32>()).as_slice(),
                    alloy_rlp::encode(*value),
                )
                .map_err(|source| {
                    state_error(state::StateError::Storage {
                        address: *address,
                        slot: *slot,
                        source: Box::new(source),
                    })
                })?;
        }
        let (storage_nodes, _) = storage.nodes();
        for node in storage_nodes.into_nodes() {
            nodes.insert(node);
        }
    }

    // The validator's walk, recorded: every read, then the post-state root.
    let recorder = Recorder::new(&nodes);
    for address in &reads.accounts {
        state::account(&recorder, root, *address).map_err(state_error)?;
    }
    for (address, slot) in &reads.slots {
        if let Some(account) = parent_state.accounts.get(address) {
            state::slot(&recorder, account.storage_root, *address, *slot).map_err(state_error)?;
        }
    }
    let post = post_state_root(&recorder, root, &executed.bundle).map_err(state_error)?;
    if post != block.header.state_root {
        return Err(bad(format!(
            "state root {post} after execution, the header says {}",
            block.header.state_root
        )));
    }

    let codes = reads
        .codes
        .iter()
        .filter(|h| **h != KECCAK_EMPTY)
        .filter_map(|h| chain.codes().get(h))
        .map(|code| code.original_bytes())
        .collect();
    let mut keys: Vec<Bytes> = reads
        .accounts
        .iter()
        .map(|a| Bytes::copy_from_slice(a.as_slice()))
        .collect();
    let slots: BTreeSet<U256> = reads.slots.iter().map(|(_, s)| *s).collect();
    keys.extend(
        slots
            .iter()
            .map(|s| Bytes::copy_from_slice(&s.to_be_bytes::<32>())),
    );
    // Headers from the oldest block BLOCKHASH read up to the parent, oldest first.
    let oldest = reads
        .block_hashes
        .iter()
        .copied()
        .filter(|n| hashes.contains_key(n))
        .min()
        .unwrap_or(parent.number)
        .min(parent.number);
    let headers = ancestors
        .iter()
        .rev()
        .filter(|(_, h)| h.number >= oldest)
        .map(|(_, h)| Bytes::from(alloy_rlp::encode(h)))
        .collect();
    Ok(ExecutionWitness {
        state: recorder.nodes(),
        codes,
        keys,
        headers,
    })
}

/// The stateless inputs of the canonical blocks `numbers` of an imported chain (`tree`, imported
/// from `source`), executed with `factory`; made in parallel, returned in order.
pub fn chain_inputs(
    source: &ChainSource,
    tree: &BlockTree,
    factory: &KilnBlockExecutorFactory,
    numbers: std::ops::RangeInclusive<u64>,
) -> Result<Vec<StatelessInput>, WitnessError> {
    let by_hash: HashMap<B256, (&Bytes, EthBlock)> = source
        .blocks
        .iter()
        .filter_map(|rlp| {
            let block = decode_block(rlp).ok()?;
            Some((block.header.hash_slow(), (rlp, block)))
        })
        .collect();
    let mut canonical = HashMap::<u64, B256>::default();
    let mut cursor = tree.head().hash;
    while let Some(block) = tree.get(&cursor) {
        canonical.insert(block.header.number, block.hash);
        if block.header.number == 0 {
            break;
        }
        cursor = block.header.parent_hash;
    }
    numbers
        .into_par_iter()
        .map(|number| {
            let (rlp, block) = canonical
                .get(&number)
                .filter(|_| number > 0)
                .and_then(|h| by_hash.get(h))
                .ok_or(WitnessError::NotCanonical(number))?;
            Ok(StatelessInput {
                block: (*rlp).clone(),
                witness: witness(tree, factory, block)?,
                chain_config: source.genesis.config.clone(),
            })
        })
        .collect()
}

/// A chain config with every fork up to Cancun active at genesis on chain `chain_id` (the
/// schedule of the blockchain tests kiln imports).
pub fn cancun_config(chain_id: u64) -> ChainConfig {
    ChainConfig {
        chain_id,
        homestead_block: Some(0),
        eip150_block: Some(0),
        eip155_block: Some(0),
        eip158_block: Some(0),
        byzantium_block: Some(0),
        constantinople_block: Some(0),
        petersburg_block: Some(0),
        istanbul_block: Some(0),
        berlin_block: Some(0),
        london_block: Some(0),
        terminal_total_difficulty: Some(U256::ZERO),
        terminal_total_difficulty_passed: true,
        shanghai_time: Some(0),
        cancun_time: Some(0),
        ..Default::default()
    }
}

/// Why the witnesses of a chain folder could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ChainWitnessError {
    /// The chain folder cannot be read.
    #[error(transparent)]
    Source(#[from] kiln_node::SourceError),
    /// The chain cannot be imported.
    #[error(transparent)]
    Import(#[from] kiln_node::ChainError),
    /// The import stopped before the blocks asked for.
    #[error("the chain's import stopped at block {head}: {error}")]
    Stopped {
        /// The last block imported.
        head: u64,
        /// Why.
        error: kiln_node::ChainError,
    },
    /// A witness could not be made.
    #[error(transparent)]
    Witness(#[from] WitnessError),
}

/// What [`chain_folder_inputs`] asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Blocks {
    /// Every canonical block after genesis.
    All,
    /// These canonical blocks.
    Range(u64, u64),
}

/// Imports the chain folder `dir` on the interpreter, then makes the stateless inputs of its
/// canonical `blocks`.
pub fn chain_folder_inputs(
    dir: &std::path::Path,
    blocks: Blocks,
) -> Result<Vec<StatelessInput>, ChainWitnessError> {
    let source = ChainSource::open(dir)?;
    let runtime = kiln_runtime::Runtime::interpreter();
    let mut importer = kiln_node::Importer::new(runtime.clone(), None);
    let imported = importer.import_chain(&source, &mut |_| std::ops::ControlFlow::Continue(()));
    importer.shutdown();
    let mut imported = imported?;
    let head = imported.tree.head().header.number;
    let (from, to) = match blocks {
        Blocks::All => (1, head),
        Blocks::Range(from, to) => (from, to),
    };
    if let Some(error) = imported.error.take() {
        if head < to {
            return Err(ChainWitnessError::Stopped { head, error });
        }
    }
    let spec = kiln_node::CancunSpec::from_genesis(&source.genesis.config)
        .map_err(|e| kiln_node::ChainError::Genesis(e.into()))?;
    let factory =
        kiln_node::execute::executor_factory_for(spec, kiln_evm::KilnEvmFactory::new(runtime));
    Ok(chain_inputs(&source, &imported.tree, &factory, from..=to)?)
}
