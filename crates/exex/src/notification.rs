//! What the service is told about the chain, in the shape of reth's `ExExNotification`.

use kiln_runtime::{BlockId, CodeUsage};
use revm::primitives::{hardfork::SpecId, Bytes, B256};
use std::sync::Arc;

/// One executed block as the service needs it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BlockRecord {
    /// Block number.
    pub number: u64,
    /// Block hash.
    pub hash: B256,
    /// Parent hash.
    pub parent_hash: B256,
    /// The identity its EVM reported usage under (from the header's fields).
    pub id: BlockId,
    /// The spec it executed under.
    pub spec: SpecId,
    /// Code deployed by the block: (code hash, runtime bytecode).
    pub deployed: Vec<(B256, Bytes)>,
    /// Usage per code, when the notifier measured it itself; otherwise the service matches the
    /// EVMs' reports to the block by [`BlockRecord::id`].
    pub usage: Option<Vec<(B256, CodeUsage)>>,
}

/// A contiguous run of blocks, oldest first.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Chain {
    /// The blocks.
    pub blocks: Vec<BlockRecord>,
}

impl Chain {
    /// A chain of these blocks (oldest first).
    pub fn new(blocks: Vec<BlockRecord>) -> Self {
        Self { blocks }
    }

    /// The newest block.
    pub fn tip(&self) -> Option<&BlockRecord> {
        self.blocks.last()
    }

    /// The oldest block.
    pub fn first(&self) -> Option<&BlockRecord> {
        self.blocks.first()
    }
}

/// A change of the canonical chain, as reth's ExEx manager sends it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Notification {
    /// `new` was appended to the canonical chain.
    Committed {
        /// The new blocks.
        new: Arc<Chain>,
    },
    /// `old` left the canonical chain and `new` took its place.
    Reorged {
        /// The blocks no longer canonical.
        old: Arc<Chain>,
        /// Their replacement.
        new: Arc<Chain>,
    },
    /// `old` left the canonical chain with nothing in its place (yet).
    Reverted {
        /// The blocks no longer canonical.
        old: Arc<Chain>,
    },
}

/// The service's answer once it has processed a notification: everything up to this block is
/// done with (reth's `ExExEvent::FinishedHeight`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FinishedHeight {
    /// Block number.
    pub number: u64,
    /// Block hash.
    pub hash: B256,
}
