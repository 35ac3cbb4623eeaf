//! kiln's stateless validation: blocks checked from an execution witness, without a node's
//! database, with kiln's EVM.
//!
//! ```text
//! imported chain ──witness::witness──> { block, witness: ExecutionWitness, chain_config }
//!     ──validate::validate──> headers chained to the parent ──> sparse state from the parent's
//!     state root ──> execution with kiln's EVM ──> gas, receipts root, bloom, post-state root
//! ```
//!
//! A witness has the shape of `debug_executionWitness`'s answer (`state`: trie node preimages,
//! `codes`, `keys`: unhashed addresses and slots, `headers`: RLP ancestor headers, oldest first),
//! and an input file bundles it with the block's RLP and the chain config as
//! `{ "block", "witness", "chain_config" }`. [`batch`] validates many inputs in parallel on one
//! runtime, with their code compiled ahead if asked.

pub mod batch;
pub mod execute;
pub mod fixture;
pub mod state;
pub mod trie;
pub mod validate;
pub mod witness;

use alloy_genesis::ChainConfig;
use alloy_primitives::Bytes;
use alloy_rpc_types_debug::ExecutionWitness;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

pub use batch::{precompile, validate_all, Precompiled};
pub use state::StateError;
pub use trie::TrieError;
pub use validate::{validate, StatelessError, Validated};
pub use witness::{
    chain_folder_inputs, chain_inputs, witness, Blocks, ChainView, ChainWitnessError, WitnessError,
};

/// One block to validate statelessly: its RLP, its witness, and its chain's config.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatelessInput {
    /// The block's RLP.
    pub block: Bytes,
    /// What executing it needs of the chain before it.
    pub witness: ExecutionWitness,
    /// The chain's config (geth format), which says its forks and chain id.
    pub chain_config: ChainConfig,
}

/// Why an input file cannot be read or written.
#[derive(Debug, thiserror::Error)]
pub enum InputError {
    /// The file could not be read or written.
    #[error("{path}: {cause}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        cause: std::io::Error,
    },
    /// The file is not an input's JSON.
    #[error("{path}: {cause}")]
    Json {
        /// The file.
        path: PathBuf,
        /// The cause.
        cause: serde_json::Error,
    },
}

impl StatelessInput {
    /// Reads an input file.
    pub fn read(path: &Path) -> Result<Self, InputError> {
        let text = std::fs::read_to_string(path).map_err(|cause| InputError::Io {
            path: path.to_owned(),
            cause,
        })?;
        serde_json::from_str(&text).map_err(|cause| InputError::Json {
            path: path.to_owned(),
            cause,
        })
    }

    /// Writes this input as a file.
    pub fn write(&self, path: &Path) -> Result<(), InputError> {
        let text = serde_json::to_string(self).map_err(|cause| InputError::Json {
            path: path.to_owned(),
            cause,
        })?;
        std::fs::write(path, text).map_err(|cause| InputError::Io {
            path: path.to_owned(),
            cause,
        })
    }
}
