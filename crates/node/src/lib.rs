//! kiln's block import: Ethereum `BlockchainTests` imported the way a reth node imports blocks.
//!
//! ```text
//! fixture JSON ──> decode (RLP, hash, senders in parallel) ──> header and body checks
//!     ──> alloy-evm's Ethereum block executor with kiln's EvmFactory, on the parent's state
//!     ──> gas, receipts root, bloom ──> post-state (cached storage roots) ──> state root
//!     ──> block tree ──forkchoice──> Committed / Reorged / Reverted ──> hot-code service
//! ```
//!
//! Each valid block is "new payload" then "forkchoice updated" to it; at the end of a test the
//! head is moved to the fixture's `lastblockhash` and its state compared with `postState`.
//! A block expected invalid must be rejected with one of the exceptions the fixture names.

pub mod build;
pub mod chain;
pub mod chain_import;
pub mod decode;
pub mod error;
pub mod execute;
pub mod fixture;
pub mod genesis;
pub mod import;
pub mod node;
pub mod reexec;
pub mod source;
pub mod spec;
pub mod state;
pub mod validate;

pub use build::{build_block, Built, Payload};
pub use chain_import::{BlockImported, ChainError, ChainImport};
pub use error::{BlockError, Field, GenesisError, ImportError, Reject};
pub use import::{
    collect_files, import_files_with, import_paths, Failure, ImportMode, ImportObserver,
    ImportOptions, Importer, JitStats, Outcome, Progress, Summary, TestReport, Timings,
};
pub use source::{ChainSource, ForkchoiceUpdate, SourceError};
pub use spec::CancunSpec;
